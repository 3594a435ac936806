//! The seam between the web and the engine (server build only): who is calling
//! (session cookie -> [`Caller`]), how an engine error becomes an HTTP status
//! and a wire error ([`status_of`] and [`wire`]: the one mapping, used by server
//! functions here and by the server's webhooks and WebSockets), and the session
//! cookie itself.

use crate::error::AppError;
use engine::accounts::{self, Caller};
use engine::sessions::SessionToken;
use engine::{Classify, Engine, ErrorKind};
use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderValue, StatusCode};
use leptos::prelude::*;
use leptos_axum::ResponseOptions;

/// What server functions get from the server process: provided as context.
#[derive(Clone)]
pub struct ServerContext {
    pub engine: Engine,
    /// Mark the cookie `Secure` (Berth is served over HTTPS).
    pub secure_cookies: bool,
    /// The external base URL for links in invites, e.g. `https://berth.example.com`.
    pub public_url: Option<String>,
}

/// The client's address as the server's middleware determined it (a request
/// extension), used to throttle logins per address.
#[derive(Clone, Debug)]
pub struct ClientIp(pub String);

/// The caller of one HTTP request, resolved at most once: a page render runs
/// several server functions in-process, and each would otherwise look the
/// session up again. The server's middleware puts a fresh one in every request.
#[derive(Clone, Default)]
pub struct RequestCaller(std::sync::Arc<tokio::sync::OnceCell<Option<Caller>>>);

impl RequestCaller {
    /// The caller, once something in the request resolved it.
    pub fn resolved(&self) -> Option<Caller> {
        self.0.get().cloned().flatten()
    }

    /// What the request knows of its caller so far: `None` until something
    /// resolved it, then the caller or `Some(None)` for nobody signed in.
    pub fn known(&self) -> Option<Option<Caller>> {
        self.0.get().cloned()
    }

    /// Records the caller another door resolved (the REST API's key).
    pub fn resolve(&self, caller: &Caller) {
        let _ = self.0.set(Some(caller.clone()));
    }
}

/// The session cookie's name over plain HTTP (development).
pub const SESSION_COOKIE: &str = "berth_session";
/// Its name behind https: the `__Host-` prefix makes browsers refuse it from any
/// other host (a sibling subdomain, where apps run, cannot plant or shadow it)
/// and demands `Secure`, `Path=/` and no `Domain`.
pub const SECURE_SESSION_COOKIE: &str = "__Host-berth_session";

/// The session cookie's name for this server.
pub fn cookie_name(secure: bool) -> &'static str {
    if secure {
        SECURE_SESSION_COOKIE
    } else {
        SESSION_COOKIE
    }
}

pub fn context() -> Result<ServerContext, AppError> {
    use_context::<ServerContext>().ok_or_else(|| {
        tracing::error!("ServerContext missing from server function context");
        AppError::Internal
    })
}

fn set_status(status: StatusCode) {
    if let Some(res) = use_context::<ResponseOptions>() {
        res.set_status(status);
    }
}

/// The HTTP status for a kind of engine error: the one mapping every edge uses.
/// An unreachable database or Redis is 503 everywhere, never 404.
pub fn status_of(kind: &ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Conflict { .. } => StatusCode::CONFLICT,
        ErrorKind::Changed => StatusCode::PRECONDITION_FAILED,
        ErrorKind::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden(_) => StatusCode::FORBIDDEN,
        ErrorKind::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The engine error as the wire error and its status. Internal and backend
/// failures are logged here, once; their details never reach the client.
pub fn wire<E: Classify>(err: &E) -> (StatusCode, AppError) {
    let kind = err.kind();
    let status = status_of(&kind);
    let out = match kind {
        ErrorKind::NotFound => AppError::NotFound,
        ErrorKind::Validation { field, message } | ErrorKind::Conflict { field, message } => AppError::Field {
            field: field.to_owned(),
            message,
        },
        ErrorKind::Changed => AppError::Changed,
        ErrorKind::Unauthorized(m) => AppError::Unauthorized(m),
        ErrorKind::Forbidden(m) => AppError::Forbidden(m),
        ErrorKind::RateLimited { retry_after_secs } => AppError::RateLimited(retry_after_secs),
        ErrorKind::Unavailable => {
            tracing::warn!(error = %err, "backend unavailable");
            AppError::Unavailable
        }
        ErrorKind::Internal => {
            tracing::error!(error = %err, "internal error");
            AppError::Internal
        }
    };
    (status, out)
}

/// For server functions: the wire error, with the response's status (and
/// `Retry-After`) set.
pub fn fail<E: Classify>(err: E) -> AppError {
    let (status, out) = wire(&err);
    if let (AppError::RateLimited(secs), Some(res)) = (&out, use_context::<ResponseOptions>()) {
        res.insert_header(http::header::RETRY_AFTER, HeaderValue::from(*secs));
    }
    set_status(status);
    out
}

/// A 404 for anything that is not a well-formed ID: a foreign ID and a garbled
/// one look the same to the caller.
/// A checkbox: present (`on`, as browsers send it, or `true`) means checked.
pub fn checked(v: &Option<String>) -> bool {
    matches!(v.as_deref(), Some("on" | "true"))
}

pub fn id<T: From<uuid::Uuid>>(raw: &str) -> Result<T, AppError> {
    uuid::Uuid::parse_str(raw.trim()).map(T::from).map_err(|_| {
        set_status(StatusCode::NOT_FOUND);
        AppError::NotFound
    })
}

fn request_parts() -> Option<http::request::Parts> {
    use_context::<http::request::Parts>()
}

/// The session token in a request's cookies: only the cookie of this server's
/// name counts (behind https, only the `__Host-` one).
pub fn token_in(headers: &http::HeaderMap, secure: bool) -> Option<SessionToken> {
    let name = cookie_name(secure);
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| SessionToken::from_cookie(v))
}

pub fn session_token() -> Option<SessionToken> {
    let secure = use_context::<ServerContext>().is_some_and(|c| c.secure_cookies);
    token_in(&request_parts()?.headers, secure)
}

/// Who is calling, from a request's headers: `None` without a live session.
/// Server functions ([`try_caller`]) and the server's WebSockets resolve callers
/// through this one function.
pub async fn caller_from(
    ctx: &ServerContext,
    headers: &http::HeaderMap,
) -> Result<Option<Caller>, accounts::AccountError> {
    let Some(token) = token_in(headers, ctx.secure_cookies) else {
        return Ok(None);
    };
    match accounts::authenticate(&ctx.engine, token).await {
        Ok(caller) => Ok(Some(caller)),
        Err(accounts::AccountError::NotSignedIn) => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn client_ip() -> String {
    request_parts()
        .and_then(|p| p.extensions.get::<ClientIp>().cloned())
        .map(|ip| ip.0)
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The signed-in caller, if the request carries a live session (resolved once
/// per request: a page render runs several server functions in-process).
pub async fn try_caller(ctx: &ServerContext) -> Result<Option<Caller>, AppError> {
    let Some(parts) = request_parts() else { return Ok(None) };
    let resolved = match parts.extensions.get::<RequestCaller>().cloned() {
        Some(cell) => cell
            .0
            .get_or_try_init(|| caller_from(ctx, &parts.headers))
            .await
            .cloned(),
        None => caller_from(ctx, &parts.headers).await,
    };
    resolved.map_err(fail)
}

/// What a session that still owes its organization a second factor may
/// reach: who it is, enrolment, signing out, another organization.
const SECOND_FACTOR_SETUP: &[&str] = &[
    "/api/twofactor/status",
    "/api/twofactor/begin",
    "/api/twofactor/confirm",
    "/api/orgs/switch",
    "/api/system/status",
];

/// The signed-in caller, or 401; 403 for a session whose organization
/// requires two-factor sign-in it has not set up, outside enrolment.
pub async fn caller() -> Result<(ServerContext, Caller), AppError> {
    let ctx = context()?;
    match try_caller(&ctx).await? {
        Some(caller) if caller.needs_second_factor => {
            let path = request_parts().map(|p| p.uri.path().to_owned()).unwrap_or_default();
            if SECOND_FACTOR_SETUP.contains(&path.as_str()) {
                Ok((ctx, caller))
            } else {
                set_status(StatusCode::FORBIDDEN);
                Err(AppError::Forbidden(
                    "this organization requires two-factor sign-in: set it up in Settings first".into(),
                ))
            }
        }
        Some(caller) => Ok((ctx, caller)),
        None => Err(fail(accounts::AccountError::NotSignedIn)),
    }
}

fn cookie_header(ctx: &ServerContext, value: &str, max_age: u64) -> HeaderValue {
    let secure = if ctx.secure_cookies { "; Secure" } else { "" };
    let name = cookie_name(ctx.secure_cookies);
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .expect("cookie is ASCII")
}

pub fn set_session_cookie(ctx: &ServerContext, token: &SessionToken) {
    if let Some(res) = use_context::<ResponseOptions>() {
        res.append_header(
            SET_COOKIE,
            cookie_header(ctx, token.as_str(), ctx.engine.policy.absolute_secs),
        );
    }
}

pub fn clear_session_cookie(ctx: &ServerContext) {
    if let Some(res) = use_context::<ResponseOptions>() {
        res.append_header(SET_COOKIE, cookie_header(ctx, "", 0));
    }
}

/// Where this instance is reached, for links shown to users: `BERTH_PUBLIC_URL`
/// when set, else the origin this request came to (`https` when a proxy in
/// front says so; only the signed-in viewer sees what it shapes).
pub fn public_base(ctx: &ServerContext) -> String {
    if let Some(u) = &ctx.public_url {
        return u.trim_end_matches('/').to_owned();
    }
    let Some(parts) = use_context::<http::request::Parts>() else {
        return String::new();
    };
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let Some(host) = header("host") else {
        return String::new();
    };
    let scheme = if header("x-forwarded-proto") == Some("https") {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{host}")
}
