//! Status badges for deployments, database services, backups and drills: one
//! colour per tone of the lifecycle state (shared with the engine), a pulse
//! while work is in progress. The stored name is on `data-status` for tests.

use crate::components::ui::When;
use crate::types::Lifecycle;
use leptos::prelude::*;
use lifecycle::Tone;

/// What a badge shows: the state's stored name, its words and its tone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Badge {
    pub name: &'static str,
    pub label: &'static str,
    pub tone: Tone,
}

impl Badge {
    /// A backup whose object retention deleted.
    pub const PRUNED: Badge = Badge {
        name: "pruned",
        label: "pruned",
        tone: Tone::Idle,
    };
}

impl<S: Lifecycle> From<S> for Badge {
    fn from(s: S) -> Self {
        Badge {
            name: s.as_str(),
            label: s.label(),
            tone: s.tone(),
        }
    }
}

fn classes(tone: Tone) -> &'static str {
    match tone {
        Tone::Good => "bg-emerald-100 text-emerald-800 dark:bg-emerald-950 dark:text-emerald-300",
        Tone::Bad => "bg-red-100 text-red-800 dark:bg-red-950 dark:text-red-300",
        Tone::Idle => "bg-slate-100 text-slate-700 dark:bg-slate-800 dark:text-slate-300",
        Tone::Busy => "animate-pulse bg-amber-100 text-amber-800 dark:bg-amber-950 dark:text-amber-300",
    }
}

/// A state as a coloured pill (it follows the signal when given one).
#[component]
pub fn StatusBadge(#[prop(into)] status: Signal<Badge>) -> impl IntoView {
    view! {
        <span
            class=move || format!("inline-flex rounded-full px-2 py-0.5 text-xs font-medium {}", classes(status.get().tone))
            data-status=move || status.get().name
        >
            {move || status.get().label}
        </span>
    }
}

/// What the reconciler found wrong with a running app or service now, and
/// what it repaired lately (nothing at all when both are empty).
#[component]
pub fn Repairs(problem: Option<String>, repairs: Vec<crate::types::RepairView>) -> impl IntoView {
    (problem.is_some() || !repairs.is_empty()).then(|| {
        view! {
            <section class="mt-4 rounded-lg border border-amber-300 bg-amber-50 p-4 text-sm text-amber-950 dark:border-amber-800 dark:bg-amber-950 dark:text-amber-100" id="repairs">
                <h2 class="mb-2 font-semibold">"Runtime"</h2>
                {problem.map(|p| view! { <p role="status" class="font-medium" id="runtime-problem">{p}</p> })}
                {(!repairs.is_empty()).then(|| view! {
                    <ul class="mt-2 space-y-1" id="repair-history">
                        {repairs.into_iter().map(|r| view! {
                            <li><When at=r.at class="text-xs opacity-80" /> " " {r.problem} ": " {r.action}</li>
                        }).collect_view()}
                    </ul>
                })}
            </section>
        }
    })
}
