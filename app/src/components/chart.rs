//! A line chart drawn as SVG by the page itself (no chart library in the
//! WASM bundle): one series, its latest value and, when there is one, its
//! limit as a dashed line, with the container's restarts and OOM kills marked
//! where they fell. Colours follow the theme through `currentColor`.
//! And the panel that charts an app, a database service, the machine or
//! Traefik over an hour, a day or a week, following new points live.

use crate::components::live::refresh_on;
use crate::components::ui::{LoadError, Loading, CARD};
use crate::error::AppError;
use crate::types::{MetricMark, MetricPoint, MetricsView};
use leptos::prelude::*;

const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 120.0;

/// The polyline's points for `values` (oldest first) spread over the width
/// and scaled to `top` (the value at the top edge).
pub fn polyline(values: &[f64], top: f64) -> String {
    let n = values.len();
    if n == 0 || top <= 0.0 {
        return String::new();
    }
    let step = if n > 1 { WIDTH / (n - 1) as f64 } else { 0.0 };
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let y = HEIGHT - (v / top).clamp(0.0, 1.0) * HEIGHT;
            format!("{:.1},{:.1}", i as f64 * step, y)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Where a moment `at` falls across the width, on the same scale as
/// [`polyline`] (which spreads points evenly): between the two points around
/// it, in proportion; at an edge when it is before the first or after the
/// last (a restart after the newest point is still shown, at the right).
pub fn mark_x(ats: &[i64], at: i64) -> f64 {
    let n = ats.len();
    if n < 2 || at >= ats[n - 1] {
        return WIDTH;
    }
    if at <= ats[0] {
        return 0.0;
    }
    let step = WIDTH / (n - 1) as f64;
    let i = ats.partition_point(|t| *t <= at) - 1;
    let span = (ats[i + 1] - ats[i]).max(1) as f64;
    (i as f64 + (at - ats[i]) as f64 / span) * step
}

/// A restart or an OOM kill as drawn: where across the width, and its words.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    pub x: f64,
    pub oom: bool,
    pub when: String,
}

/// The marks of `marks` on a chart of `points`.
pub fn marks_on(points: &[MetricPoint], marks: &[MetricMark]) -> Vec<Mark> {
    let ats: Vec<i64> = points.iter().map(|p| p.at).collect();
    marks
        .iter()
        .map(|m| Mark {
            x: mark_x(&ats, m.at),
            oom: m.oom,
            when: m.when.clone(),
        })
        .collect()
}

/// A chart titled `title`; `show` formats a value for people.
#[component]
pub fn LineChart(
    title: &'static str,
    /// Marks the chart for tests (`data-chart`).
    key: &'static str,
    values: Vec<f64>,
    /// The limit, drawn dashed and the chart's top when there is one.
    limit: Option<f64>,
    show: fn(f64) -> String,
    /// Restarts and OOM kills, drawn as upright lines (OOM kills in red).
    #[prop(optional)]
    marks: Vec<Mark>,
) -> impl IntoView {
    let peak = values.iter().copied().fold(0.0_f64, f64::max);
    let top = limit.filter(|l| *l > 0.0).unwrap_or(peak * 1.2).max(1e-9);
    let latest = values.last().copied();
    let line = polyline(&values, top);
    let summary = match (latest, limit) {
        (Some(v), Some(l)) => format!("{} of {}", show(v), show(l)),
        (Some(v), None) => show(v),
        (None, _) => "no figures yet".to_owned(),
    };
    let label = format!("{title}: {summary}");
    view! {
        <figure class="space-y-1" data-chart=key data-points=values.len()>
            <figcaption class="flex justify-between text-sm">
                <span class="font-medium">{title}</span>
                <span class="text-slate-600 dark:text-slate-400" data-latest>{summary}</span>
            </figcaption>
            <svg
                viewBox=format!("0 0 {WIDTH} {HEIGHT}")
                preserveAspectRatio="none"
                role="img"
                aria-label=label
                class="h-28 w-full rounded border border-slate-200 text-sky-600 dark:border-slate-800 dark:text-sky-400"
            >
                {limit.map(|_| view! {
                    <line x1="0" y1="1" x2=WIDTH y2="1" stroke="currentColor" stroke-dasharray="4 4" stroke-opacity="0.5" vector-effect="non-scaling-stroke" />
                })}
                {marks.into_iter().map(|m| {
                    let (kind, class, words) = if m.oom {
                        ("oom", "text-red-600 dark:text-red-400", "OOM-killed")
                    } else {
                        ("restart", "text-amber-600 dark:text-amber-400", "Restarted")
                    };
                    let x = format!("{:.1}", m.x);
                    view! {
                        <line x1=x.clone() y1="0" x2=x y2=HEIGHT class=class stroke="currentColor" stroke-width="2" vector-effect="non-scaling-stroke" data-mark=kind>
                            <title>{format!("{words} at {}", m.when)}</title>
                        </line>
                    }
                }).collect_view()}
                <polyline points=line fill="none" stroke="currentColor" stroke-width="2" vector-effect="non-scaling-stroke" />
            </svg>
        </figure>
    }
}

/// Bytes for people (KiB, MiB, GiB).
pub fn bytes(v: f64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = v;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Percent of one core.
pub fn percent(v: f64) -> String {
    format!("{v:.1} %")
}

/// Whose figures a panel shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// An application: its containers added up.
    App,
    /// A database service.
    Service,
    /// The machine (instance administrators).
    Host,
    /// The managed Traefik (instance administrators).
    Proxy,
}

type Points = Resource<Result<MetricsView, AppError>>;

/// A panel's window and points, made by the page in its body (not inside a
/// `Suspense`, see `Shell`). New points are pushed on the page's status
/// stream (`metrics` events), so the charts follow without polling.
#[derive(Clone, Copy)]
pub struct Metrics {
    source: Source,
    window: RwSignal<String>,
    points: Points,
}

impl Metrics {
    /// For `source` (`id`: the app's or service's; empty for the machine),
    /// read only while `shown`.
    pub fn new(source: Source, id: Signal<String>, shown: Signal<bool>) -> Self {
        let window = RwSignal::new("hour".to_owned());
        let tick = RwSignal::new(0u32);
        let points: Points = Resource::new(
            move || (id.get(), shown.get(), window.get(), tick.get()),
            move |(id, shown, window, _)| async move {
                if !shown {
                    return Ok(MetricsView::default());
                }
                match source {
                    Source::App => crate::api::apps::app_metrics(id, window).await,
                    Source::Service => crate::api::services::service_metrics(id, window).await,
                    Source::Host => crate::api::instance::machine_metrics("host".into(), window).await,
                    Source::Proxy => crate::api::instance::machine_metrics("proxy".into(), window).await,
                }
            },
        );
        refresh_on(
            move |e| {
                e.kind == "metrics"
                    && match source {
                        Source::App | Source::Service => e.id == id.get_untracked(),
                        Source::Host | Source::Proxy => e.id == uuid::Uuid::nil().to_string(),
                    }
            },
            tick,
        );
        Self { source, window, points }
    }
}

/// CPU, memory and network (the machine: CPU, memory, disk and load) over the
/// last hour, day or week, with the current value and the limit.
#[component]
pub fn MetricsPanel(state: Metrics, title: &'static str, note: &'static str, key: &'static str) -> impl IntoView {
    let Metrics { source, window, points } = state;
    let select_id = format!("{key}-window");
    let for_id = select_id.clone();
    view! {
        <section class=CARD id=key>
            <div class="mb-1 flex flex-wrap items-center justify-between gap-2">
                <h2 class="font-semibold">{title}</h2>
                <label class="text-sm" for=for_id>"Window "
                    <select id=select_id class="rounded-md border border-slate-300 bg-white px-2 py-1 text-sm dark:border-slate-700 dark:bg-slate-900"
                        on:change=move |ev| window.set(event_target_value(&ev))>
                        <option value="hour">"Last hour"</option>
                        <option value="day">"Last day"</option>
                        <option value="week">"Last week"</option>
                    </select>
                </label>
            </div>
            <p class="mb-3 text-sm text-slate-600 dark:text-slate-400">{note}</p>
            <Transition fallback=|| view! { <Loading /> }>
                {move || Suspend::new(async move {
                    match points.await {
                        Err(e) => view! { <LoadError error=e /> }.into_any(),
                        Ok(v) => {
                            let marked = !v.marks.is_empty();
                            let events = v.restarts.zip(v.oom_kills).map(|(restarts, ooms)| view! {
                                <p class="mb-3 text-sm" data-restarts=restarts data-oom-kills=ooms>
                                    {format!(
                                        "In this window: restarted {restarts} {}, OOM-killed {ooms} {}.",
                                        if restarts == 1 { "time" } else { "times" },
                                        if ooms == 1 { "time" } else { "times" },
                                    )}
                                    {marked.then(|| view! {
                                        " Marked on the charts: "
                                        <span class="text-amber-700 dark:text-amber-400">"restarts"</span>
                                        " and "
                                        <span class="text-red-700 dark:text-red-400">"OOM kills"</span>
                                        "."
                                    })}
                                </p>
                            });
                            let body = if v.points.is_empty() {
                                view! {
                                    <p class="text-sm text-slate-600 dark:text-slate-400" data-chart-empty>"No figures yet: they appear while it runs."</p>
                                }.into_any()
                            } else {
                                charts(source, &v.points, &v.marks).into_any()
                            };
                            view! { {events} {body} }.into_any()
                        }
                    }
                })}
            </Transition>
        </section>
    }
}

fn charts(source: Source, points: &[MetricPoint], marks: &[MetricMark]) -> impl IntoView {
    let marks = marks_on(points, marks);
    let cpu: Vec<f64> = points.iter().map(|p| f64::from(p.cpu)).collect();
    let memory: Vec<f64> = points.iter().map(|p| p.memory as f64).collect();
    let limit = points.last().map(|p| p.limit as f64);
    let second = match source {
        Source::Host => {
            let disk: Vec<f64> = points.iter().map(|p| p.disk.unwrap_or(0) as f64).collect();
            let total = points.last().and_then(|p| p.disk_total).map(|t| t as f64);
            let load: Vec<f64> = points.iter().map(|p| f64::from(p.load.unwrap_or(0.0))).collect();
            // Shown once Berth has seen it (a Docker engine on another host: never).
            let docker = points.iter().any(|p| p.docker_disk.is_some()).then(|| {
                let used: Vec<f64> = points.iter().map(|p| p.docker_disk.unwrap_or(0) as f64).collect();
                let total = points.iter().rev().find_map(|p| p.docker_disk_total).map(|t| t as f64);
                view! { <LineChart title="Disk (Docker's data root: images, containers, volumes)" key="docker-disk" values=used limit=total show=bytes /> }
            });
            view! {
                <LineChart title="Disk (Berth's data directory)" key="disk" values=disk limit=total show=bytes />
                {docker}
                <LineChart title="Load (1 min)" key="load" values=load limit=None show=decimal />
            }
            .into_any()
        }
        _ => {
            let network: Vec<f64> = points.iter().map(|p| (p.rx + p.tx) as f64).collect();
            view! { <LineChart title="Network (in + out per point)" key="network" values=network limit=None show=bytes marks=marks.clone() /> }.into_any()
        }
    };
    let cpu_title = if source == Source::Host {
        "CPU (all cores)"
    } else {
        "CPU (of one core)"
    };
    view! {
        <div class="grid gap-4 md:grid-cols-2">
            <LineChart title=cpu_title key="cpu" values=cpu limit=(source == Source::Host).then_some(100.0) show=percent marks=marks.clone() />
            <LineChart title="Memory" key="memory" values=memory limit show=bytes marks />
            {second}
        </div>
    }
}

/// A plain number with two decimals.
pub fn decimal(v: f64) -> String {
    format!("{v:.2}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_spread_over_the_width_scaled_to_the_top() {
        assert_eq!(polyline(&[0.0, 50.0, 100.0], 100.0), "0.0,120.0 300.0,60.0 600.0,0.0");
        assert_eq!(polyline(&[], 100.0), "");
        assert_eq!(polyline(&[200.0], 100.0), "0.0,0.0");
    }

    #[test]
    fn a_mark_falls_between_the_points_around_its_moment() {
        // Points 10 s apart, then a gap of 30 s (the line spreads points
        // evenly: the mark follows the line, not the clock).
        let ats = [100, 110, 120, 150];
        assert_eq!(mark_x(&ats, 100), 0.0);
        assert_eq!(mark_x(&ats, 105), 100.0);
        assert_eq!(mark_x(&ats, 110), 200.0);
        assert_eq!(mark_x(&ats, 135), 500.0);
        // Before the first point, after the last, or with one point: an edge.
        assert_eq!(mark_x(&ats, 50), 0.0);
        assert_eq!(mark_x(&ats, 400), WIDTH);
        assert_eq!(mark_x(&[100], 100), WIDTH);
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(100.0 * 1024.0 * 1024.0), "100.0 MiB");
        assert_eq!(percent(99.44), "99.4 %");
    }
}
