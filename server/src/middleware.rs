//! Request middleware: the Host allow-list (DNS rebinding defence), security
//! headers on every response, the client address (for login throttling), and
//! the same-origin rule for every state-changing request (CSRF defence).

use crate::hosts::authority;
use crate::state::AppState;
use app::api::edge::{ClientIp, RequestCaller};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;

/// Adds what server functions need to know about the request as extensions: the
/// client address (behind a trusted proxy, the last `X-Forwarded-For` entry, i.e.
/// the address the proxy itself saw), and an empty per-request caller cache.
pub async fn request_context(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let forwarded = state
        .config
        .trust_proxy
        .then(|| req.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok()))
        .flatten()
        .and_then(|v| v.rsplit(',').next())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    let ip = forwarded
        .or_else(|| {
            req.extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_string())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    req.extensions_mut().insert(ClientIp(ip));
    req.extensions_mut().insert(RequestCaller::default());
    next.run(req).await
}

/// Refuses requests whose `Host` Berth does not answer to (421), so a web page
/// on another name that resolves to Berth (DNS rebinding) cannot drive it.
/// `/health` answers whatever the name: load balancers use addresses.
pub async fn allowed_host(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if req.uri().path() == "/health" || state.hosts.allows(host) {
        return next.run(req).await;
    }
    tracing::warn!(host, path = %req.uri().path(), "request for a host Berth does not serve");
    (
        StatusCode::MISDIRECTED_REQUEST,
        "this server does not answer to that host name",
    )
        .into_response()
}

/// Certificate uploads may be larger than other forms, so that an oversized
/// certificate is refused by its own check (a 422 naming the field) rather
/// than by the transport; the upload's own limits are far below this.
pub const UPLOAD_BODY_LIMIT: usize = 8 * 1024 * 1024;

/// The body limit for a path: `BERTH_BODY_LIMIT`, or [`UPLOAD_BODY_LIMIT`]
/// for the certificate upload when that is larger.
pub fn body_limit(state: &AppState, path: &str) -> usize {
    if path.ends_with("/apps/upload_certificate") {
        state.config.body_limit.max(UPLOAD_BODY_LIMIT)
    } else {
        state.config.body_limit
    }
}

/// Reads a state-changing request's body up front, within `BERTH_BODY_LIMIT`:
/// a chunked body over the limit is a 413 here (it has no length for the limit
/// layer to check, and would otherwise fail deep inside a handler as a 500), and
/// a form field holding a NUL character (which PostgreSQL cannot store) or
/// given twice is a 422 naming the field, before anything runs.
pub async fn bounded_body(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let limit = body_limit(&state, parts.uri.path());
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            axum::Json(app::error::AppError::Transport(format!(
                "the request body is larger than {limit} bytes (BERTH_BODY_LIMIT)"
            ))),
        )
            .into_response();
    };
    let form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if form {
        let nul = url::form_urlencoded::parse(&bytes).find(|(k, v)| k.contains('\0') || v.contains('\0'));
        if let Some((field, _)) = nul {
            let field: String = field.chars().filter(|c| !c.is_control()).take(64).collect();
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                axum::Json(app::error::AppError::Field {
                    field,
                    message: "must not contain NUL characters".into(),
                }),
            )
                .into_response();
        }
        // No server function takes a list: a repeated field would fail in
        // argument decoding as a 500. It is the caller's mistake: a 422.
        let mut seen = std::collections::HashSet::new();
        let repeated = url::form_urlencoded::parse(&bytes).find(|(k, _)| !seen.insert(k.clone()));
        if let Some((field, _)) = repeated {
            let field: String = field.chars().filter(|c| !c.is_control()).take(64).collect();
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                axum::Json(app::error::AppError::Field {
                    field,
                    message: "is given more than once".into(),
                }),
            )
                .into_response();
        }
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

/// Headers every response carries: no sniffing, no referrer beyond the origin,
/// never framed. Pages set their own Content-Security-Policy (with the
/// per-request nonce of their inline scripts); everything else gets a strict one.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("strict-origin-when-cross-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, header::HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            header::HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'; base-uri 'none'"),
        );
    }
    res
}

/// How long the browser may keep a bundle file (inside `/pkg`, so paths here
/// lack that prefix). Under `/<build id>/` a file never changes (the id comes
/// from the files' content, and pages of a release ask only for their own
/// id's files), so it is kept for a year without asking again. Anything else
/// (`/berth.css`, an unversioned path, a 404) is revalidated on every use, so
/// a page never mixes files of two releases.
pub async fn bundle_caching(State(build): State<Option<std::sync::Arc<str>>>, req: Request, next: Next) -> Response {
    let versioned = build.as_deref().is_some_and(|id| {
        req.uri()
            .path()
            .strip_prefix('/')
            .and_then(|p| p.strip_prefix(id))
            .is_some_and(|rest| rest.starts_with('/'))
    });
    let mut res = next.run(req).await;
    let value = if versioned && res.status().is_success() {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    res.headers_mut()
        .insert(header::CACHE_CONTROL, header::HeaderValue::from_static(value));
    res
}

/// Refuses state-changing requests whose `Origin` (or, failing that, `Referer`)
/// is not this server. Browsers always send `Origin` on cross-site POSTs, so a
/// forged form or fetch from another site never reaches a server function.
pub async fn same_origin(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    // Webhooks come from other sites by design; they carry a signature or token
    // instead of a session cookie. The REST API never reads cookies (only an
    // API key in the Authorization header, which no other site can make a
    // browser send).
    if req.uri().path().starts_with("/api/webhooks/") || req.uri().path().starts_with("/api/v1/") {
        return next.run(req).await;
    }
    let headers = req.headers();
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let source = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok())
        .and_then(authority);
    let public = state.config.public_url.as_deref().and_then(authority);
    let ok = match source {
        Some(src) => Some(src) == host || Some(src) == public,
        None => false,
    };
    if !ok {
        tracing::warn!(origin = ?source, host = ?host, path = %req.uri().path(), "cross-origin request refused");
        return (StatusCode::FORBIDDEN, "cross-origin request refused").into_response();
    }
    next.run(req).await
}
