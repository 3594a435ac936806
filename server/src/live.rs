//! Live logs over WebSockets, status events as server-sent events, and the
//! deployment log download. Each socket
//! authenticates with the session cookie, checks the organization of what it
//! follows (a foreign ID is a 404 before the upgrade), refuses other origins,
//! and pings every 20 s so proxies keep it open.

// A ready-made response is the natural error of an axum handler step.
#![allow(clippy::result_large_err)]

use crate::error::ApiError;
use crate::sockets::{Slot, SOCKETS_PER_USER};
use crate::state::AppState;
use app::api::edge;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use engine::access::{self, Target};
use engine::accounts::Caller;
use engine::docker::{LogOptions, Output};
use engine::ids::{AppId, DeploymentId};
use engine::names::ProjectRole;
use futures::StreamExt;
use serde::Deserialize;
use std::time::Duration;

const PING_EVERY: Duration = Duration::from_secs(20);

/// How often an open stream (a log socket, the page's event stream, an API
/// stream) proves its caller again: someone signed out, removed, moved off the
/// project or whose key was revoked hears no more than this long of what they
/// no longer may (one session or key lookup per open stream per period).
const ACCESS_RECHECK: Duration = Duration::from_secs(10);

/// The timer of a stream's [`ACCESS_RECHECK`]s, the first one period after it opens.
fn recheck() -> tokio::time::Interval {
    tokio::time::interval_at(tokio::time::Instant::now() + ACCESS_RECHECK, ACCESS_RECHECK)
}

/// A place for one more socket of the caller, or 429.
fn slot(state: &AppState, caller: &Caller) -> Result<Slot, Response> {
    state.sockets.take(caller.user_id.0).ok_or_else(|| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("at most {SOCKETS_PER_USER} log views may be open at once; close one"),
        )
        .into_response()
    })
}

/// The signed-in caller, resolved as server functions resolve theirs.
async fn caller(state: &AppState, headers: &HeaderMap) -> Result<Caller, Response> {
    match edge::caller_from(&state.ctx, headers).await {
        Ok(Some(caller)) => Ok(caller),
        Ok(None) => Err(ApiError::new(StatusCode::UNAUTHORIZED, "sign in first").into_response()),
        Err(e) => Err(ApiError::from_engine(e).into_response()),
    }
}

/// An engine error as the socket's (or download's) answer before the upgrade.
fn engine_error<E: engine::Classify>(e: E) -> Response {
    ApiError::from_engine(e).into_response()
}

/// WebSockets are not covered by the same-origin rule for POSTs: check `Origin`.
fn same_origin(state: &AppState, headers: &HeaderMap) -> Result<(), Response> {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Ok(()); // Not a browser: the cookie is the credential.
    };
    let src = origin.split_once("://").map(|(_, r)| r).unwrap_or(origin);
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let public = state
        .config
        .public_url
        .as_deref()
        .and_then(|u| u.split_once("://").map(|(_, r)| r.trim_end_matches('/')));
    if Some(src) == host || Some(src) == public {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::FORBIDDEN, "cross-origin WebSocket refused").into_response())
    }
}

fn parse_id<T: From<uuid::Uuid>>(raw: &str) -> Result<T, Response> {
    uuid::Uuid::parse_str(raw)
        .map(T::from)
        .map_err(|_| ApiError::not_found().into_response())
}

/// What every route here checks first: a same-origin request from a signed-in
/// caller, about a well-formed ID (whose organization the route checks next).
async fn admit<T: From<uuid::Uuid>>(
    state: &AppState,
    headers: &HeaderMap,
    raw_id: &str,
) -> Result<(Caller, T), Response> {
    same_origin(state, headers)?;
    let caller = caller(state, headers).await?;
    Ok((caller, parse_id(raw_id)?))
}

/// `GET /api/ws/deployments/<id>/log`: replay from the first line, then live
/// lines, then an `end` event. Messages are JSON [`engine::logs::LogEvent`]s.
pub async fn deployment_log(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let run = async {
        let (caller, id): (_, DeploymentId) = admit(&state, &headers, &id).await?;
        let (app, _) = engine::deploy::app_of(state.engine(), &caller, id)
            .await
            .map_err(engine_error)?;
        let slot = slot(&state, &caller)?;
        let stream = engine::logs::follow(state.engine(), app, id)
            .await
            .map_err(engine_error)?;
        let guard = Reach::session(&state, headers, &caller, Target::App(app));
        Ok::<_, Response>(ws.on_upgrade(move |socket| async move {
            pump(socket, stream.map(|e| serde_json::to_string(&e).expect("json")), guard).await;
            drop(slot);
        }))
    };
    run.await.unwrap_or_else(|r| r)
}

#[derive(Deserialize)]
pub struct RuntimeQuery {
    tail: Option<u32>,
    since: Option<i64>,
}

/// `GET /api/ws/apps/<id>/logs?tail=N&since=UNIX`: the live container's
/// stdout/stderr, followed. Messages are JSON `{"stream": "stdout"|"stderr", "text": ...}`.
pub async fn runtime_log(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<RuntimeQuery>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let run = async {
        let (caller, id): (_, AppId) = admit(&state, &headers, &id).await?;
        let detail = engine::apps::get(state.engine(), &caller, id)
            .await
            .map_err(engine_error)?;
        let Some(live) = detail.app.live_deployment_id else {
            return Err(ApiError::new(StatusCode::CONFLICT, "the application is not running").into_response());
        };
        let container = engine::deploy::runtime::container_name(state.engine(), &detail.app.name, live);
        let slot = slot(&state, &caller)?;
        let stream = container_log(&state, &container, &q).await?;
        let guard = Reach::session(&state, headers, &caller, Target::App(id));
        Ok::<_, Response>(ws.on_upgrade(move |socket| async move {
            pump(socket, stream, guard).await;
            drop(slot);
        }))
    };
    run.await.unwrap_or_else(|r| r)
}

/// `GET /api/ws/services/<id>/logs?tail=N&since=UNIX`: a database service's
/// container output, followed (same messages as an application's).
pub async fn service_log(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<RuntimeQuery>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let run = async {
        let (caller, id): (_, engine::ids::ServiceId) = admit(&state, &headers, &id).await?;
        let detail = engine::services::get(state.engine(), &caller, id)
            .await
            .map_err(engine_error)?;
        let container = engine::services::container::container_name(
            state.engine(),
            detail.row.id,
            &detail.row.name,
            detail.row.legacy_names,
        );
        let slot = slot(&state, &caller)?;
        let stream = container_log(&state, &container, &q).await?;
        let guard = Reach::session(&state, headers, &caller, Target::Service(id));
        Ok::<_, Response>(ws.on_upgrade(move |socket| async move {
            pump(socket, stream, guard).await;
            drop(slot);
        }))
    };
    run.await.unwrap_or_else(|r| r)
}

/// A container's stdout/stderr from Docker, followed, as JSON messages.
async fn container_log(
    state: &AppState,
    container: &str,
    q: &RuntimeQuery,
) -> Result<futures::stream::BoxStream<'static, String>, Response> {
    let lines = output_lines(state, container, q.tail.unwrap_or(200), q.since, true)
        .await
        .map_err(IntoResponse::into_response)?;
    Ok(lines
        .map(|(stream, text)| serde_json::json!({"stream": stream, "text": text}).to_string())
        .boxed())
}

/// A container's output as (`stdout` | `stderr`, line): the last `tail`
/// lines (at most 10 000), then, when `follow`, what it writes next. Shared
/// by the log sockets and the REST API's log stream.
pub(crate) async fn output_lines(
    state: &AppState,
    container: &str,
    tail: u32,
    since: Option<i64>,
    follow: bool,
) -> Result<futures::stream::BoxStream<'static, (&'static str, String)>, ApiError> {
    state.engine().docker.info().await.map_err(ApiError::from_engine)?;
    let options = LogOptions {
        follow,
        tail: Some(tail.min(10_000)),
        since,
    };
    Ok(state
        .engine()
        .docker
        .logs(container, options)
        .filter_map(|chunk| async move {
            let chunk = chunk.ok()?;
            let stream = match chunk.output {
                Output::Stderr => "stderr",
                Output::Stdout => "stdout",
            };
            let text = String::from_utf8_lossy(&chunk.bytes);
            Some((stream, engine::lines::capped(text.trim_end_matches('\n')).into_owned()))
        })
        .boxed())
}

/// What an open log socket or API stream asks every [`ACCESS_RECHECK`]:
/// whether its credential still reaches its application or service (same
/// organization, a viewer at least). Logs can carry secrets: a member removed,
/// signed out, moved off the project, or a key revoked stops receiving them
/// then, not when the client lets go.
pub(crate) struct Reach {
    state: AppState,
    credential: Credential,
    org: engine::ids::OrgId,
    target: Target,
}

/// How the caller proved who they are, kept to prove it again.
enum Credential {
    /// A page's session cookie (in the request's headers).
    Session(HeaderMap),
    /// An API key as presented, and the address it came from.
    Key { presented: String, client: String },
}

impl Reach {
    /// For a page's socket or stream, signed in by its session cookie.
    fn session(state: &AppState, headers: HeaderMap, caller: &Caller, target: Target) -> Self {
        Self {
            state: state.clone(),
            credential: Credential::Session(headers),
            org: caller.org_id,
            target,
        }
    }

    /// For an API stream, authenticated by the key it presented (`key`) from
    /// `client`'s address (the API's `Presented`, taken apart here so this
    /// module does not import the API's).
    pub(crate) fn key(state: &AppState, key: String, client: String, caller: &Caller, target: Target) -> Self {
        Self {
            state: state.clone(),
            credential: Credential::Key { presented: key, client },
            org: caller.org_id,
            target,
        }
    }

    /// `false` once the caller no longer reaches the target; a store that
    /// cannot answer now (or a key over its rate) is asked again at the next
    /// period.
    async fn holds(&self) -> bool {
        match self.credential.caller_now(&self.state).await {
            Now::Is(now) => {
                now.org_id == self.org
                    && !matches!(
                        access::check_with(self.state.engine(), &now, self.target, ProjectRole::Viewer).await,
                        Err(access::Denied::NotFound | access::Denied::Forbidden(_))
                    )
            }
            Now::Gone => false,
            Now::Unknown => true,
        }
    }
}

/// Who a stream's credential stands for now.
enum Now {
    Is(Caller),
    /// Signed out, expired, revoked, no longer a member.
    Gone,
    /// The store cannot say now (or the key is over its rate): ask again later.
    Unknown,
}

impl Credential {
    async fn caller_now(&self, state: &AppState) -> Now {
        use engine::{Classify, ErrorKind};
        match self {
            Credential::Session(headers) => match edge::caller_from(&state.ctx, headers).await {
                Ok(Some(now)) => Now::Is(now),
                Ok(None) => Now::Gone,
                Err(_) => Now::Unknown,
            },
            Credential::Key { presented, client } => {
                match engine::apikeys::authenticate(state.engine(), presented, client).await {
                    Ok(now) => Now::Is(now),
                    Err(e) if matches!(e.kind(), ErrorKind::Unauthorized(_) | ErrorKind::Forbidden(_)) => Now::Gone,
                    Err(_) => Now::Unknown,
                }
            }
        }
    }
}

/// `stream`, ended once `reach` no longer holds (asked every
/// [`ACCESS_RECHECK`]).
pub(crate) fn guarded<S>(stream: S, reach: Reach) -> futures::stream::BoxStream<'static, S::Item>
where
    S: futures::Stream + Send + Unpin + 'static,
    S::Item: Send,
{
    let recheck = recheck();
    futures::stream::unfold(
        (stream, reach, recheck),
        |(mut stream, reach, mut recheck)| async move {
            loop {
                tokio::select! {
                    item = stream.next() => return item.map(|i| (i, (stream, reach, recheck))),
                    _ = recheck.tick() => if !reach.holds().await { return None },
                }
            }
        },
    )
    .boxed()
}

/// Forwards messages to the socket with keep-alive pings, until either side
/// ends or the caller no longer reaches what it shows (`reach`). Messages
/// that are already waiting go out together, with one flush.
async fn pump(
    mut socket: WebSocket,
    messages: impl futures::Stream<Item = String> + Unpin + Send + 'static,
    reach: Reach,
) {
    use futures::{FutureExt, SinkExt};
    let mut messages = guarded(messages, reach);
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        tokio::select! {
            m = messages.next() => match m {
                Some(text) => {
                    let mut ended = false;
                    if socket.feed(Message::Text(text.into())).await.is_err() { return }
                    for _ in 0..512 {
                        match messages.next().now_or_never() {
                            Some(Some(more)) => if socket.feed(Message::Text(more.into())).await.is_err() { return },
                            Some(None) => { ended = true; break }
                            None => break,
                        }
                    }
                    if socket.flush().await.is_err() { return }
                    if ended {
                        let _ = socket.send(Message::Close(None)).await;
                        return;
                    }
                }
                None => {
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
            },
            _ = ping.tick() => if socket.send(Message::Ping(Default::default())).await.is_err() { return },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                _ => {}
            },
        }
    }
}

/// `GET /api/deployments/<id>/log`: the whole log as a text download.
pub async fn download_log(State(state): State<AppState>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let run = async {
        let (caller, id): (_, DeploymentId) = admit(&state, &headers, &id).await?;
        let (app, _) = engine::deploy::app_of(state.engine(), &caller, id)
            .await
            .map_err(engine_error)?;
        let path = engine::logs::log_path(state.engine(), app, id);
        // Streamed from the file: the server holds one buffer, whatever the
        // log's size (up to BERTH_LOG_CAP_MB).
        let (body, length) = match tokio::fs::File::open(&path).await {
            Ok(f) => {
                let length = f.metadata().await.map(|m| m.len()).unwrap_or(0);
                let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::with_capacity(f, 64 * 1024));
                (body, length)
            }
            Err(_) => (axum::body::Body::empty(), 0),
        };
        Ok::<_, Response>(
            (
                [
                    (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_owned()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"deployment-{}.log\"", id.0.simple()),
                    ),
                    // Read once: a log still being written sends what was there.
                    (header::CONTENT_LENGTH, length.to_string()),
                ],
                body,
            )
                .into_response(),
        )
    };
    run.await.unwrap_or_else(|r| r)
}

/// `GET /api/events`: status changes of the caller's organization
/// ([`engine::events::Event`] as JSON, one per message) as server-sent events,
/// for as long as the page is open and its session and grants allow. A page
/// opens one and re-reads what an event names; the browser reconnects by
/// itself when the stream drops, and a page that fell behind is told `resync`
/// (re-read everything).
pub async fn events(State(state): State<AppState>, headers: HeaderMap) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let run = async {
        same_origin(&state, &headers)?;
        let caller = caller(&state, &headers).await?;
        let slot = state.event_streams.take(caller.user_id.0).ok_or_else(|| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "at most {} pages may follow status at once; close one",
                    crate::sockets::EVENT_STREAMS_PER_USER
                ),
            )
            .into_response()
        })?;
        let channel = engine::events::channel(state.engine(), caller.org_id.0);
        let sub = state
            .engine()
            .kv
            .hub()
            .subscribe(&channel)
            .await
            .map_err(engine_error)?;
        // A caller limited to projects hears only theirs.
        let sieve = engine::events::Sieve::new(caller);
        let recheck = recheck();
        let credential = Credential::Session(headers);
        let carry = (sub, slot, sieve, state.clone(), credential, recheck);
        let stream = futures::stream::unfold(
            carry,
            |(mut sub, slot, mut sieve, state, credential, mut recheck)| async move {
                use tokio::sync::broadcast::error::RecvError;
                let event = loop {
                    tokio::select! {
                        got = sub.rx.recv() => match got {
                            Ok(payload) if sieve.admits(state.engine(), &payload).await => {
                                break Event::default().data(payload)
                            }
                            Ok(_) => continue,
                            Err(RecvError::Lagged(_)) => break Event::default().event("resync").data("{}"),
                            // The Redis connection went: end; the browser reconnects.
                            Err(RecvError::Closed) => return None,
                        },
                        _ = recheck.tick() => match credential.caller_now(&state).await {
                            Now::Is(now) if now.org_id == sieve.org() => sieve.refresh(now),
                            // Signed out, removed from the organization, or
                            // switched to another one: the stream ends, and the
                            // page's reconnect is answered as who they are now.
                            Now::Is(_) | Now::Gone => return None,
                            Now::Unknown => continue,
                        },
                    }
                };
                Some((
                    Ok::<_, std::convert::Infallible>(event),
                    (sub, slot, sieve, state, credential, recheck),
                ))
            },
        );
        Ok::<_, Response>(
            Sse::new(stream)
                .keep_alive(KeepAlive::new().interval(PING_EVERY))
                .into_response(),
        )
    };
    run.await.unwrap_or_else(|r| r)
}
