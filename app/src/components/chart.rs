//! A line chart drawn as SVG by the page itself (no chart library in the
//! WASM bundle): one series, its latest value and, when there is one, its
//! limit as a dashed line. Colours follow the theme through `currentColor`.

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
    fn sizes_read_as_people_write_them() {
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(100.0 * 1024.0 * 1024.0), "100.0 MiB");
        assert_eq!(percent(99.44), "99.4 %");
    }
}
