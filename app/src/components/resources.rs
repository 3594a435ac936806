//! The applications and databases of a project, grouped under their
//! environments: one list shape for both.

use crate::components::status::{Badge, StatusBadge};
use crate::types::{DeploymentStatus, EnvironmentView, ServiceState};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// The state a row shows: an application's latest deployment or a database's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RowState {
    Deployment(DeploymentStatus),
    Service(ServiceState),
}

impl From<RowState> for Badge {
    fn from(s: RowState) -> Badge {
        match s {
            RowState::Deployment(d) => d.into(),
            RowState::Service(v) => v.into(),
        }
    }
}

/// One application or database in a project's lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceRow {
    pub environment_id: uuid::Uuid,
    pub name: String,
    /// Its page.
    pub href: String,
    /// A short line beside the name (source and domain, engine).
    pub detail: String,
    /// Its state; `None` shows `none_label` instead.
    pub state: Option<RowState>,
    /// What it is, on `data-kind` (`app`, `service`).
    pub marker: String,
}

/// Rows grouped under their environment's name, in the environments' order
/// (environments with none are skipped); `empty` when there are no rows at all.
/// `list_attr` marks each list for tests.
#[component]
pub fn EnvironmentGroups(
    envs: Vec<EnvironmentView>,
    rows: Vec<ResourceRow>,
    list_attr: &'static str,
    empty: &'static str,
    none_label: &'static str,
) -> impl IntoView {
    if rows.is_empty() {
        return view! { <p class="text-sm text-slate-500">{empty}</p> }.into_any();
    }
    envs.into_iter()
        .map(|env| {
            let here: Vec<&ResourceRow> = rows.iter().filter(|r| r.environment_id == env.id).collect();
            (!here.is_empty()).then(|| {
                let items = here
                    .into_iter()
                    .map(|r| {
                        let row = r.clone();
                        let name = row.name.clone();
                        let marker = row.marker.clone();
                        view! {
                            <li class="flex items-start justify-between gap-2 rounded-lg border border-slate-200 p-3 dark:border-slate-800" data-name=name data-kind=marker>
                                <div class="min-w-0">
                                    <a href=row.href.clone() class="font-medium text-indigo-700 hover:underline dark:text-indigo-300">{row.name.clone()}</a>
                                    <p class="truncate text-xs text-slate-500">{row.detail.clone()}</p>
                                </div>
                                {match row.state {
                                    Some(s) => view! { <StatusBadge status=Badge::from(s) /> }.into_any(),
                                    None => view! { <span class="text-xs text-slate-500">{none_label}</span> }.into_any(),
                                }}
                            </li>
                        }
                    })
                    .collect_view();
                view! {
                    <h3 class="mt-2 text-xs font-semibold uppercase tracking-wide text-slate-500">{env.name.clone()}</h3>
                    <ul class="mt-2 grid gap-3 sm:grid-cols-2" data-list=list_attr data-env=env.name.clone()>
                        {items}
                    </ul>
                }
            })
        })
        .collect_view()
        .into_any()
}
