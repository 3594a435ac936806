//! Berth's own metrics at `GET /metrics`, in Prometheus' text format: requests
//! by route and status with their latency, open WebSockets and event streams
//! of this process, and from PostgreSQL (so every replica says the same) the
//! job queues' depth and the last hour's job durations. Off unless
//! `BERTH_METRICS_TOKEN` is set; then a scrape needs `Authorization: Bearer
//! <token>`.

use crate::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Instant;

/// Latency buckets, in seconds.
const BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Default)]
struct Series {
    /// Requests per status.
    statuses: BTreeMap<u16, u64>,
    /// Cumulative counts per bucket, then the sum and count.
    buckets: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// Requests seen by this process, per route.
#[derive(Default)]
pub struct Recorder {
    routes: Mutex<BTreeMap<String, Series>>,
}

impl Recorder {
    pub fn observe(&self, route: &str, status: u16, seconds: f64) {
        let mut routes = self.routes.lock().expect("recorder");
        // The route's name is allocated once, on its first request.
        let s = match routes.get_mut(route) {
            Some(s) => s,
            None => routes.entry(route.to_owned()).or_default(),
        };
        *s.statuses.entry(status).or_default() += 1;
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                s.buckets[i] += 1;
            }
        }
        s.sum += seconds;
        s.count += 1;
    }

    fn write(&self, out: &mut String) {
        let routes = self.routes.lock().expect("recorder");
        out.push_str("# HELP berth_http_requests_total HTTP requests answered, by route and status.\n");
        out.push_str("# TYPE berth_http_requests_total counter\n");
        for (route, s) in routes.iter() {
            for (status, n) in &s.statuses {
                let _ = writeln!(
                    out,
                    "berth_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP berth_http_request_duration_seconds Time to answer, by route.\n");
        out.push_str("# TYPE berth_http_request_duration_seconds histogram\n");
        for (route, s) in routes.iter() {
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "berth_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{b}\"}} {}",
                    s.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "berth_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "berth_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                s.sum
            );
            let _ = writeln!(
                out,
                "berth_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                s.count
            );
        }
    }
}

/// The route a request is counted under: its pattern (`/apps/{id}`), a
/// server function's fixed endpoint, or one of a few buckets, so no request
/// can add a series of its own (a scanner's random paths all count as
/// `unmatched`).
fn route_label(matched: Option<&str>, path: &str, status: u16) -> String {
    if status == 404 {
        return "unmatched".into();
    }
    if path.starts_with("/pkg/") {
        return "/pkg".into();
    }
    match matched {
        // Server functions share one wildcard route; their endpoints are fixed
        // names (`/api/apps/get`), and an unknown one is a 404 above.
        Some(m) if m.contains('*') && path.starts_with("/api/") => {
            let ok = path.len() <= 64 && path.bytes().all(|c| c.is_ascii_lowercase() || b"/_".contains(&c));
            if ok {
                path.to_owned()
            } else {
                "/api/other".into()
            }
        }
        Some(m) => m.to_owned(),
        None => "other".into(),
    }
}

/// Counts each request under its route, with its status and latency.
pub async fn record(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let matched = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned());
    let path = req.uri().path().to_owned();
    let started = Instant::now();
    let res = next.run(req).await;
    let status = res.status().as_u16();
    let label = route_label(matched.as_deref(), &path, status);
    state.recorder.observe(&label, status, started.elapsed().as_secs_f64());
    res
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let Some(want) = state.config.metrics_token_hash.as_deref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(engine::secrets::token_hash);
    // Hashes compared, so the comparison's timing says nothing of the token.
    if given.as_deref() != Some(want) {
        return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")]).into_response();
    }
    let mut out = String::with_capacity(8 * 1024);
    state.recorder.write(&mut out);
    out.push_str("# HELP berth_websockets_open Log WebSockets open in this process.\n");
    out.push_str("# TYPE berth_websockets_open gauge\n");
    let _ = writeln!(out, "berth_websockets_open {}", state.sockets.total());
    out.push_str("# HELP berth_event_streams_open Status event streams open in this process.\n");
    out.push_str("# TYPE berth_event_streams_open gauge\n");
    let _ = writeln!(out, "berth_event_streams_open {}", state.event_streams.total());
    match engine::jobs::figures(&state.ctx.engine).await {
        Ok(figures) => {
            out.push_str("# HELP berth_jobs_queued Jobs waiting for a worker, by kind (all replicas).\n");
            out.push_str("# TYPE berth_jobs_queued gauge\n");
            for f in figures.iter().filter(|f| f.what == "queued") {
                let _ = writeln!(out, "berth_jobs_queued{{kind=\"{}\"}} {}", f.kind, f.value);
            }
            out.push_str(
                "# HELP berth_job_duration_seconds Jobs finished in the last hour: median and 95th percentile, by kind.\n",
            );
            out.push_str("# TYPE berth_job_duration_seconds gauge\n");
            for f in figures.iter().filter(|f| f.what != "queued") {
                let _ = writeln!(
                    out,
                    "berth_job_duration_seconds{{kind=\"{}\",quantile=\"{}\"}} {}",
                    f.kind, f.what, f.value
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "reading job figures for /metrics"),
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        out,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_patterns_or_a_few_buckets() {
        assert_eq!(route_label(Some("/apps/{id}"), "/apps/1", 200), "/apps/{id}");
        assert_eq!(
            route_label(Some("/api/{*fn_name}"), "/api/apps/get", 200),
            "/api/apps/get"
        );
        assert_eq!(
            route_label(Some("/api/{*fn_name}"), "/api/Weird%20path", 400),
            "/api/other"
        );
        assert_eq!(route_label(Some("/apps/{id}"), "/apps/1", 404), "unmatched");
        assert_eq!(route_label(None, "/pkg/abc/app.wasm", 200), "/pkg");
        assert_eq!(route_label(None, "/favicon.ico", 200), "other");
    }

    #[test]
    fn histograms_are_cumulative() {
        let r = Recorder::default();
        r.observe("/health", 200, 0.003);
        r.observe("/health", 200, 0.2);
        r.observe("/health", 503, 20.0);
        let mut out = String::new();
        r.write(&mut out);
        assert!(
            out.contains("berth_http_requests_total{route=\"/health\",status=\"200\"} 2"),
            "{out}"
        );
        assert!(
            out.contains("berth_http_requests_total{route=\"/health\",status=\"503\"} 1"),
            "{out}"
        );
        assert!(out.contains("le=\"0.005\"} 1\n"), "{out}");
        assert!(out.contains("le=\"0.25\"} 2\n"), "{out}");
        assert!(out.contains("le=\"10\"} 2\n"), "{out}");
        assert!(out.contains("le=\"+Inf\"} 3\n"), "{out}");
        assert!(
            out.contains("berth_http_request_duration_seconds_count{route=\"/health\"} 3"),
            "{out}"
        );
    }
}
