//! The seam between server functions and the engine (server build only): who is
//! calling (session cookie -> [`Caller`]), how engine errors become HTTP statuses
//! (mapped once, here), and the session cookie itself.

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
pub struct RequestCaller(std::sync::Arc<tokio::sync::OnceCell<Caller>>);

pub const SESSION_COOKIE: &str = "berth_session";

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

/// Maps an engine error to the wire error and the response status. Internal and
/// backend failures are logged here, once; their details never reach the client.
pub fn fail<E: Classify>(err: E) -> AppError {
    let (status, out) = match err.kind() {
        ErrorKind::NotFound => (StatusCode::NOT_FOUND, AppError::NotFound),
        ErrorKind::Validation { field, message } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            AppError::Field {
                field: field.to_owned(),
                message,
            },
        ),
        ErrorKind::Conflict { field, message } => (
            StatusCode::CONFLICT,
            AppError::Field {
                field: field.to_owned(),
                message,
            },
        ),
        ErrorKind::Unauthorized(m) => (StatusCode::UNAUTHORIZED, AppError::Unauthorized(m)),
        ErrorKind::Forbidden(m) => (StatusCode::FORBIDDEN, AppError::Forbidden(m)),
        ErrorKind::RateLimited { retry_after_secs } => {
            if let Some(res) = use_context::<ResponseOptions>() {
                res.insert_header(http::header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            (StatusCode::TOO_MANY_REQUESTS, AppError::RateLimited(retry_after_secs))
        }
        ErrorKind::Unavailable => {
            tracing::warn!(error = %err, "backend unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, AppError::Unavailable)
        }
        ErrorKind::Internal => {
            tracing::error!(error = %err, "internal error");
            (StatusCode::INTERNAL_SERVER_ERROR, AppError::Internal)
        }
    };
    set_status(status);
    out
}

/// A 404 for anything that is not a well-formed ID: a foreign ID and a garbled
/// one look the same to the caller.
pub fn id<T: From<uuid::Uuid>>(raw: &str) -> Result<T, AppError> {
    uuid::Uuid::parse_str(raw.trim()).map(T::from).map_err(|_| {
        set_status(StatusCode::NOT_FOUND);
        AppError::NotFound
    })
}

fn request_parts() -> Option<http::request::Parts> {
    use_context::<http::request::Parts>()
}

pub fn session_token() -> Option<SessionToken> {
    let parts = request_parts()?;
    parts
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .and_then(|(_, v)| SessionToken::from_cookie(v))
}

pub fn client_ip() -> String {
    request_parts()
        .and_then(|p| p.extensions.get::<ClientIp>().cloned())
        .map(|ip| ip.0)
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The signed-in caller, if the request carries a live session.
pub async fn try_caller(ctx: &ServerContext) -> Result<Option<Caller>, AppError> {
    let Some(token) = session_token() else { return Ok(None) };
    let cell = request_parts().and_then(|p| p.extensions.get::<RequestCaller>().cloned());
    let resolved = match cell {
        Some(cell) => cell
            .0
            .get_or_try_init(|| accounts::authenticate(&ctx.engine, token))
            .await
            .cloned(),
        None => accounts::authenticate(&ctx.engine, token).await,
    };
    match resolved {
        Ok(caller) => Ok(Some(caller)),
        Err(accounts::AccountError::NotSignedIn) => Ok(None),
        Err(e) => Err(fail(e)),
    }
}

/// The signed-in caller, or 401.
pub async fn caller() -> Result<(ServerContext, Caller), AppError> {
    let ctx = context()?;
    match try_caller(&ctx).await? {
        Some(caller) => Ok((ctx, caller)),
        None => Err(fail(accounts::AccountError::NotSignedIn)),
    }
}

fn cookie_header(ctx: &ServerContext, value: &str, max_age: u64) -> HeaderValue {
    let secure = if ctx.secure_cookies { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
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
