//! The API's event streams (server-sent events): a deployment's log and status
//! as it runs, and an application's output. They read the same Redis channels
//! the UI's live views read (`engine::logs::follow`, the organization's
//! status channel) and count against the same per-user stream limit. Each
//! proves its key again every few seconds and ends once it no longer holds
//! (revoked, expired, its owner removed or moved off the project).

use super::{id, Key, Presented, Problem};
use crate::error::ApiError;
use crate::live::{guarded, Reach};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use engine::access::Target;
use engine::ids::{AppId, DeploymentId};
use engine::logs::LogEvent;
use futures::StreamExt;
use serde::Deserialize;
use std::convert::Infallible;
use std::time::Duration;
use utoipa::IntoParams;

const KEEP_ALIVE: Duration = Duration::from_secs(20);

/// A line as an event's data: SSE cannot carry a carriage return (a build's
/// progress bars write them), so each becomes a line break.
fn sse_text(s: String) -> String {
    if s.contains('\r') {
        s.replace("\r\n", "\n").replace('\r', "\n")
    } else {
        s
    }
}

fn stream_slot(s: &AppState, c: &engine::accounts::Caller) -> Result<crate::sockets::Slot, ApiError> {
    s.event_streams.take(c.user_id.0).ok_or_else(|| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "at most {} streams may be open at once per user; close one",
                crate::sockets::EVENT_STREAMS_PER_USER
            ),
        )
    })
}

/// What the merged stream carries before it becomes events.
enum Item {
    Line(String),
    Status(String),
    End(lifecycle::DeploymentStatus),
}

/// Follows a deployment from its first log line: `line` events (the log's
/// text), `status` events as it moves (`building`, `running`, ...), and one
/// `end` event, `{"status": ..., "reason": ...}`, when its work is over; then
/// the stream closes. A finished deployment replays its log and ends at once.
#[utoipa::path(get, path = "/deployments/{id}/events", tag = "deployments", params(("id" = String, Path)),
    responses((status = 200, content_type = "text/event-stream", body = String), (status = 404, body = Problem)))]
pub async fn deployment_events(
    State(s): State<AppState>,
    Key(c): Key,
    Path(did): Path<String>,
    presented: Presented,
) -> Result<Response, ApiError> {
    let did: DeploymentId = id(&did)?;
    let engine = s.engine().clone();
    let (app, _) = engine::deploy::app_of(&engine, &c, did)
        .await
        .map_err(ApiError::from_engine)?;
    let slot = stream_slot(&s, &c)?;
    // Status first, then the log: neither misses what happens in between.
    let sub = engine
        .kv
        .hub()
        .subscribe(&engine::events::channel(&engine, c.org_id.0))
        .await
        .map_err(ApiError::from_engine)?;
    let log = engine::logs::follow(&engine, app, did)
        .await
        .map_err(ApiError::from_engine)?;
    let statuses = futures::stream::unfold(sub, move |mut sub| async move {
        loop {
            match sub.rx.recv().await {
                Ok(payload) => {
                    if let Ok(engine::events::Event::Deployment { id, status, .. }) = serde_json::from_str(&payload) {
                        if id == did.0 {
                            return Some((Item::Status(status), sub));
                        }
                    }
                }
                // A missed status is only freshness: the end event reads the row.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    let lines = log.map(|e| match e {
        LogEvent::Line { text, .. } => Item::Line(text),
        LogEvent::End { status } => Item::End(status),
    });
    let reach = Reach::key(&s, presented.key, presented.client, &c, Target::App(app));
    let merged = guarded(futures::stream::select(lines, statuses).boxed(), reach);
    let caller = c.clone();
    let events = futures::stream::unfold((merged, Some(slot)), move |(mut items, slot)| {
        let engine = engine.clone();
        let caller = caller.clone();
        async move {
            slot.as_ref()?;
            let event = match items.next().await? {
                Item::Line(text) => Event::default().event("line").data(sse_text(text)),
                Item::Status(status) => Event::default().event("status").data(status),
                Item::End(status) => {
                    // The row has the reason (a log line may not).
                    let reason = engine::deploy::get(&engine, &caller, did)
                        .await
                        .ok()
                        .and_then(|d| d.reason);
                    let end = serde_json::json!({"status": status.to_string(), "reason": reason});
                    return Some((
                        Ok::<_, Infallible>(Event::default().event("end").data(end.to_string())),
                        (items, None),
                    ));
                }
            };
            Some((Ok(event), (items, slot)))
        }
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OutputQuery {
    /// Lines from the end to start with (default 200, at most 10 000).
    pub tail: Option<String>,
    /// `true`: keep the stream open for what the app writes next.
    pub follow: Option<String>,
}

/// The live container's output: `stdout` and `stderr` events, one per line;
/// with `follow=true` the stream stays open for what it writes next.
#[utoipa::path(get, path = "/apps/{id}/logs", tag = "apps", params(("id" = String, Path), OutputQuery),
    responses((status = 200, content_type = "text/event-stream", body = String), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn app_output(
    State(s): State<AppState>,
    Key(c): Key,
    Path(aid): Path<String>,
    Query(q): Query<OutputQuery>,
    presented: Presented,
) -> Result<Response, ApiError> {
    let aid: AppId = id(&aid)?;
    let tail = match q.tail.as_deref().map(str::trim) {
        None | Some("") => 200,
        Some(t) => t
            .parse::<u32>()
            .ok()
            .filter(|n| *n <= 10_000)
            .ok_or_else(|| super::field_error("tail", "must be a number from 0 to 10000"))?,
    };
    let follow = super::flag("follow", q.follow.as_deref())?;
    let engine = s.engine();
    let detail = engine::apps::get(engine, &c, aid)
        .await
        .map_err(ApiError::from_engine)?;
    let Some(live) = detail.app.live_deployment_id else {
        return Err(ApiError::new(StatusCode::CONFLICT, "the application is not running"));
    };
    let container = engine::deploy::runtime::container_name(engine, &detail.app.name, live);
    let slot = stream_slot(&s, &c)?;
    let lines = crate::live::output_lines(&s, &container, tail, None, follow).await?;
    let lines = guarded(
        lines,
        Reach::key(&s, presented.key, presented.client, &c, Target::App(aid)),
    );
    let events = lines.map(move |(stream, text)| {
        let _held = &slot;
        Ok::<_, Infallible>(Event::default().event(stream).data(sse_text(text)))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}
