//! Status badges for deployments, database services, backups and drills: one
//! colour per phase, a pulse while work is in progress.

use leptos::prelude::*;

pub fn label(status: &str) -> &'static str {
    match status {
        "queued" => "queued",
        "cloning" => "cloning",
        "building" => "building",
        "starting" => "starting",
        "health_checking" => "health check",
        "routing" => "routing",
        "running" => "running",
        "failed" => "failed",
        "cancelled" => "cancelled",
        "stopped" => "stopped",
        "exited" => "exited",
        "restarting" => "restarting",
        "created" => "created",
        "dead" => "dead",
        "succeeded" => "succeeded",
        "verified" => "verified",
        "pruned" => "pruned",
        _ => "unknown",
    }
}

fn classes(status: &str) -> &'static str {
    match status {
        "running" | "succeeded" | "verified" => {
            "bg-emerald-100 text-emerald-800 dark:bg-emerald-950 dark:text-emerald-300"
        }
        "failed" | "dead" | "exited" => "bg-red-100 text-red-800 dark:bg-red-950 dark:text-red-300",
        "queued" | "cancelled" | "stopped" | "pruned" => {
            "bg-slate-100 text-slate-700 dark:bg-slate-800 dark:text-slate-300"
        }
        _ => "animate-pulse bg-amber-100 text-amber-800 dark:bg-amber-950 dark:text-amber-300",
    }
}

#[component]
pub fn StatusBadge(#[prop(into)] status: Signal<String>) -> impl IntoView {
    view! {
        <span
            class=move || format!("inline-flex rounded-full px-2 py-0.5 text-xs font-medium {}", classes(&status.get()))
            data-status=move || status.get()
        >
            {move || label(&status.get())}
        </span>
    }
}
