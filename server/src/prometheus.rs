//! Berth's own metrics at `GET /metrics`, in Prometheus' text format: requests
//! by route and status with their latency, open WebSockets and event streams
//! of this process, and from PostgreSQL (so every replica says the same) the
//! job queues' depth and the last hour's job durations. Off unless
//! `BERTH_METRICS_TOKEN` is set; then a scrape needs `Authorization: Bearer
//! <token>`. The counting itself is [`crate::recorder`].

use crate::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::borrow::Cow;
use std::fmt::Write;
use std::time::Instant;

/// The route a request is counted under: its pattern (`/apps/{id}`), a
/// server function's fixed endpoint, or one of a few buckets, so no request
/// can add a series of its own (a scanner's random paths all count as
/// `unmatched`).
fn route_label<'a>(matched: Option<&'a str>, path: &'a str, status: u16) -> Cow<'a, str> {
    if status == 404 {
        return Cow::Borrowed("unmatched");
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
                path.into()
            } else {
                "/api/other".into()
            }
        }
        Some(m) => m.into(),
        None => "other".into(),
    }
}

/// Counts each request under its route, with its status and latency.
pub async fn record(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // Both are cheap to keep (a shared string, a reference-counted buffer):
    // nothing is allocated per request unless a route is new.
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let uri = req.uri().clone();
    let started = Instant::now();
    let res = next.run(req).await;
    let status = res.status().as_u16();
    let label = route_label(matched.as_ref().map(MatchedPath::as_str), uri.path(), status);
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
}
