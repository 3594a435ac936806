//! Request middleware: the client address (for login throttling) and the
//! same-origin rule for every state-changing request (CSRF defence).

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

/// `scheme://host[:port]` → `host[:port]`.
fn authority(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    Some(rest.split(['/', '?', '#']).next().unwrap_or(rest))
}

/// Refuses state-changing requests whose `Origin` (or, failing that, `Referer`)
/// is not this server. Browsers always send `Origin` on cross-site POSTs, so a
/// forged form or fetch from another site never reaches a server function.
pub async fn same_origin(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    // Webhooks come from other sites by design; they carry a signature or token
    // instead of a session cookie.
    if req.uri().path().starts_with("/api/webhooks/") {
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

#[cfg(test)]
mod tests {
    use super::authority;

    #[test]
    fn authority_strips_scheme_and_path() {
        assert_eq!(authority("http://127.0.0.1:3000/projects?x=1"), Some("127.0.0.1:3000"));
        assert_eq!(authority("https://berth.example.com"), Some("berth.example.com"));
        assert_eq!(authority("null"), None);
    }
}
