//! The Server page (instance administrators): the machine's CPU, memory, disk
//! and load, and Traefik's CPU, memory and network, over an hour, a day or a
//! week, following new points live. Anyone else is told it is not theirs.

use crate::components::chart::{Metrics, MetricsPanel, Source};
use leptos::prelude::*;

#[component]
pub fn ServerPage() -> impl IntoView {
    // Made here, outside any `Suspense` (see `Shell`).
    let shown = Signal::derive(|| true);
    let host = Metrics::new(Source::Host, Signal::derive(String::new), shown);
    let proxy = Metrics::new(Source::Proxy, Signal::derive(String::new), shown);
    view! {
        <div class="mx-auto max-w-5xl space-y-6">
            <h1 class="text-2xl font-semibold" id="server-title">"Server"</h1>
            <MetricsPanel
                state=host
                title="This machine"
                key="host-metrics"
                note="CPU of all cores; memory in use (what the kernel cannot take back); the disks of Berth's data directory and of Docker's data root."
            />
            <MetricsPanel
                state=proxy
                title="Traefik"
                key="proxy-metrics"
                note="The proxy every app's traffic passes through."
            />
        </div>
    }
}
