//! The public REST API, `/api/v1`: JSON in and out over the same engine
//! functions the server functions call (no rule lives here), authenticated
//! with API keys only (`Authorization: Bearer`; cookies are never read, so a
//! browser's session cannot be ridden across sites). Its OpenAPI 3.1 document
//! is generated from the handlers (`utoipa`) and served at
//! `/api/v1/openapi.json`, with a reference page at `/api/v1/docs`.
//!
//! What is common to every handler lives here: the caller ([`Key`]), the JSON
//! body ([`Body`]: a bad field is a 422 naming it), errors (one shape:
//! [`ApiError`]), cursor pagination ([`PageQuery`]) and `ETag`/`If-Match`.

pub mod apps;
mod docs;
pub mod members;
pub mod projects;
pub mod services;
pub mod streams;

use crate::error::ApiError;
use crate::state::AppState;
use app::api::edge::{ClientIp, RequestCaller};
use app::error::AppError;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use engine::accounts::{Caller, Via};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Where the API lives.
pub const BASE: &str = "/api/v1";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Berth API",
        version = "1",
        description = "Projects, environments, applications (variables, domains, deployments), database services and their backups, and members, with event streams of a deployment's log and status and of an application's output. \
Send an API key (Settings → API keys) as `Authorization: Bearer <key>`. Errors are \
`{\"error\": message, \"field\": name}` (the field only when one is at fault). Lists take \
`limit` (1–100, default 50) and `cursor` (the `next` of the previous page). A read answers \
with an `ETag`; send it back as `If-Match` with an update to refuse it (412) if someone \
changed the resource in between. Without `If-Match`, a `PATCH` changes the fields it sends \
and no others, even when another writer changes other fields at the same moment."
    ),
    modifiers(&BearerAuth),
    security(("api_key" = [])),
    tags(
        (name = "projects", description = "Projects and their environments"),
        (name = "apps", description = "Applications, their variables and domains"),
        (name = "deployments", description = "Deploy, cancel, roll back; history and logs"),
        (name = "services", description = "Database services"),
        (name = "backups", description = "S3 destinations, backups, restores, drills and schedules"),
        (name = "members", description = "The organization's members and invites"),
    )
)]
struct Doc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The API's routes (under [`BASE`]) and their document, built from the same
/// registrations: a route cannot exist without its entry.
fn parts() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let v1 = OpenApiRouter::new()
        .routes(routes!(projects::list, projects::create))
        .routes(routes!(projects::get, projects::update, projects::delete))
        .routes(routes!(projects::add_environment))
        .routes(routes!(projects::rename_environment, projects::delete_environment))
        .routes(routes!(apps::list))
        .routes(routes!(apps::create))
        .routes(routes!(apps::get, apps::update, apps::delete))
        .routes(routes!(apps::get_env, apps::set_env))
        .routes(routes!(apps::add_domain))
        .routes(routes!(apps::get_domain, apps::update_domain, apps::remove_domain))
        .routes(routes!(apps::deploy, apps::deployments))
        .routes(routes!(apps::deployment))
        .routes(routes!(apps::cancel))
        .routes(routes!(apps::rollback))
        .routes(routes!(apps::log))
        .routes(routes!(streams::deployment_events))
        .routes(routes!(streams::app_output))
        .routes(routes!(services::list))
        .routes(routes!(services::create))
        .routes(routes!(services::get, services::update, services::delete))
        .routes(routes!(services::act))
        .routes(routes!(services::connection))
        .routes(routes!(services::destinations, services::add_destination))
        .routes(routes!(services::remove_destination))
        .routes(routes!(services::test_destination))
        .routes(routes!(services::history, services::backup_now))
        .routes(routes!(services::restore))
        .routes(routes!(services::drill))
        .routes(routes!(services::add_schedule))
        .routes(routes!(services::remove_schedule))
        .routes(routes!(services::run_schedule))
        .routes(routes!(members::list))
        .routes(routes!(members::change_role, members::remove))
        .routes(routes!(members::set_access))
        .routes(routes!(members::invites, members::invite))
        .routes(routes!(members::revoke_invite));
    OpenApiRouter::with_openapi(Doc::openapi())
        .nest(BASE, v1)
        .split_for_parts()
}

/// The OpenAPI document, built once per process, on first use: the router
/// built at start makes one too and drops it, so an idle server holds neither
/// it nor the JSON and page below (about 0.2 MB of text, and the document's
/// own structures) until someone asks.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOC: std::sync::OnceLock<utoipa::openapi::OpenApi> = std::sync::OnceLock::new();
    DOC.get_or_init(|| parts().1)
}

/// The document as served at `openapi.json`.
fn document_json() -> &'static str {
    static JSON: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    JSON.get_or_init(|| document().to_pretty_json().expect("the OpenAPI document serialises"))
}

/// The reference page served at `docs`.
fn reference_page() -> &'static str {
    static PAGE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PAGE.get_or_init(|| docs::render(document()))
}

/// The API's router: its operations, the document and the reference page.
pub fn router() -> Router<AppState> {
    parts()
        .0
        .route(
            &format!("{BASE}/openapi.json"),
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], document_json()) }),
        )
        .route(
            &format!("{BASE}/docs"),
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                        // No scripts at all; its one stylesheet is inline.
                        (
                            header::CONTENT_SECURITY_POLICY,
                            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
                        ),
                    ],
                    reference_page(),
                )
            }),
        )
}

/// The error body every operation answers with.
#[derive(Serialize, ToSchema)]
pub struct Problem {
    /// What went wrong, for a person.
    pub error: String,
    /// The input field at fault, when one is.
    pub field: Option<String>,
}

/// What an operation that makes something answers: its ID.
#[derive(Serialize, ToSchema)]
pub struct Created {
    pub id: uuid::Uuid,
}

/// An engine error as the API's answer (the one mapping, `edge::wire`).
fn engine_err<E: engine::Classify>(e: E) -> ApiError {
    ApiError::from_engine(e)
}

/// A `true`/`false` query value (absent or empty: `false`), or a 422 naming it.
fn flag(field: &'static str, raw: Option<&str>) -> Result<bool, ApiError> {
    match raw.map(str::trim) {
        None | Some("" | "false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(field_error(field, "must be true or false")),
    }
}

fn field_error(field: impl Into<String>, message: impl Into<String>) -> ApiError {
    ApiError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        error: AppError::Field {
            field: field.into(),
            message: message.into(),
        },
    }
}

/// The API key a request presents and the address it came from, as [`Key`]
/// reads them: what a stream keeps to prove its key again while it is open.
pub struct Presented {
    pub key: String,
    pub client: String,
}

impl FromRequestParts<AppState> for Presented {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        let key = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "send an API key as `Authorization: Bearer <key>`",
                )
            })?
            .to_owned();
        let client = parts
            .extensions
            .get::<ClientIp>()
            .map(|c| c.0.clone())
            .unwrap_or_else(|| "unknown".to_owned());
        Ok(Self { key, client })
    }
}

/// The caller of an operation, from its API key. A viewer key is refused
/// anything but reading, here, for every operation at once.
pub struct Key(pub Caller);

impl FromRequestParts<AppState> for Key {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let presented = Presented::from_request_parts(parts, state).await?;
        let caller = engine::apikeys::authenticate(state.engine(), &presented.key, &presented.client)
            .await
            .map_err(ApiError::from_engine)?;
        // The audit layer names this caller as the actor.
        if let Some(cell) = parts.extensions.get::<RequestCaller>() {
            cell.resolve(&caller);
        }
        let reading = matches!(parts.method, Method::GET | Method::HEAD);
        if matches!(caller.via, Via::Key { read_only: true, .. }) && !reading {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "this is a viewer key: it can only read",
            ));
        }
        Ok(Key(caller))
    }
}

/// The caller of an operation that reveals secret values (an app's
/// variables, a database's password): as [`Key`], but never a viewer key,
/// which reads everything else.
pub struct Revealer(pub Caller);

impl FromRequestParts<AppState> for Revealer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Key(caller) = Key::from_request_parts(parts, state).await?;
        if matches!(caller.via, Via::Key { read_only: true, .. }) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "this is a viewer key: it cannot read secret values",
            ));
        }
        Ok(Revealer(caller))
    }
}

/// A JSON request body. Anything wrong with it is a 422 naming the field (its
/// path, e.g. `runtime.port`), and a NUL character (which PostgreSQL cannot
/// store) is refused before anything runs.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the body as application/json",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| field_error("body", format!("is not JSON: {e}")))?;
        if let Some(at) = nul_at(&value, "") {
            return Err(field_error(at, "must not contain NUL characters"));
        }
        serde_path_to_error::deserialize(value).map(Body).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." { "body".to_owned() } else { path };
            // serde names a missing field in its message, not its path.
            let message = e.inner().to_string();
            let field = message
                .strip_prefix("missing field `")
                .and_then(|m| m.split('`').next())
                .map(str::to_owned)
                .unwrap_or(field);
            field_error(field, message)
        })
    }
}

/// The path of the first string (or key) holding a NUL character.
fn nul_at(v: &serde_json::Value, at: &str) -> Option<String> {
    let join = |k: &str| {
        if at.is_empty() {
            k.to_owned()
        } else {
            format!("{at}.{k}")
        }
    };
    match v {
        serde_json::Value::String(s) if s.contains('\0') => Some(if at.is_empty() { "body".into() } else { at.into() }),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, x)| nul_at(x, &format!("{}[{i}]", if at.is_empty() { "body" } else { at }))),
        serde_json::Value::Object(map) => map.iter().find_map(|(k, x)| {
            if k.contains('\0') {
                Some(if at.is_empty() { "body".into() } else { at.into() })
            } else {
                nul_at(x, &join(k))
            }
        }),
        _ => None,
    }
}

/// `limit` and `cursor` of a list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1–100 (default 50).
    pub limit: Option<String>,
    /// The `next` of the previous page; absent for the first.
    pub cursor: Option<String>,
}

impl PageQuery {
    fn limit(&self) -> Result<usize, ApiError> {
        match self.limit.as_deref().map(str::trim) {
            None | Some("") => Ok(50),
            Some(raw) => raw
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=100).contains(n))
                .ok_or_else(|| field_error("limit", "must be a number from 1 to 100")),
        }
    }

    /// One page of `items`, in the order of `key` (unique per item): every
    /// item once across pages, whatever is added or removed in between.
    pub fn page<T>(&self, items: Vec<T>, key: impl Fn(&T) -> String) -> Result<(Vec<T>, Option<String>), ApiError> {
        let limit = self.limit()?;
        let after = match self.cursor.as_deref().filter(|c| !c.is_empty()) {
            None => None,
            Some(c) => Some(
                URL_SAFE_NO_PAD
                    .decode(c)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| field_error("cursor", "is not a cursor this API gave"))?,
            ),
        };
        // Each item's key is made once (a sort compares many times).
        let mut keyed: Vec<(String, T)> = items.into_iter().map(|x| (key(&x), x)).collect();
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        let mut rest: Vec<(String, T)> = keyed
            .into_iter()
            .filter(|(k, _)| after.as_ref().is_none_or(|a| k > a))
            .collect();
        let more = rest.len() > limit;
        rest.truncate(limit);
        let next = more
            .then(|| rest.last().map(|(k, _)| URL_SAFE_NO_PAD.encode(k)))
            .flatten();
        Ok((rest.into_iter().map(|(_, x)| x).collect(), next))
    }
}

/// The entity tag of a representation: a digest of its JSON.
pub fn etag<T: Serialize>(v: &T) -> String {
    let json = serde_json::to_vec(v).unwrap_or_default();
    format!("\"{}\"", &hex::encode(Sha256::digest(&json))[..32])
}

/// Holds an update to `If-Match`, when the request sends one: the resource
/// must still be as the caller last read it (412 otherwise).
pub fn if_match(headers: &HeaderMap, current: &str) -> Result<(), ApiError> {
    let Some(wanted) = headers.get(header::IF_MATCH) else {
        return Ok(());
    };
    let wanted = wanted.to_str().unwrap_or("");
    let ok = wanted
        .split(',')
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == current);
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "the resource changed since you read it: read it again (If-Match does not match its ETag)",
        ))
    }
}

/// Runs a PATCH's read, merge and guarded write again when another writer
/// changed the resource between its read and its write (the write refused:
/// 412) and the request set no `If-Match` of its own: the fields it sends are
/// then merged into what is there now, and nobody's change is undone. With an
/// `If-Match` the 412 is the answer.
pub async fn merging<F, Fut>(headers: &HeaderMap, mut attempt: F) -> Result<Response, ApiError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Response, ApiError>>,
{
    let guarded = headers.contains_key(header::IF_MATCH);
    for _ in 0..3 {
        match attempt().await {
            Err(e) if e.status == StatusCode::PRECONDITION_FAILED && !guarded => continue,
            other => return other,
        }
    }
    attempt().await
}

/// A JSON answer with its `ETag`.
pub fn tagged<T: Serialize>(status: StatusCode, v: T) -> Response {
    let tag = etag(&v);
    tagged_as(status, v, &tag)
}

/// A JSON answer with a given `ETag` (of the part an update can change, when
/// the rest moves on its own).
pub fn tagged_as<T: Serialize>(status: StatusCode, v: T, tag: &str) -> Response {
    let mut res = (status, Json(v)).into_response();
    if let Ok(h) = HeaderValue::from_str(tag) {
        res.headers_mut().insert(header::ETAG, h);
    }
    res
}

/// A 404 for anything that is not a well-formed ID: a foreign ID and a garbled
/// one look the same.
pub fn id<T: From<uuid::Uuid>>(raw: &str) -> Result<T, ApiError> {
    uuid::Uuid::parse_str(raw.trim())
        .map(T::from)
        .map_err(|_| ApiError::not_found())
}

/// A time as the API writes it: RFC 3339, UTC, seconds.
pub fn stamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_give_every_item_once() {
        let items: Vec<u32> = (0..23).collect();
        let key = |x: &u32| format!("{x:04}");
        let mut q = PageQuery {
            limit: Some("10".into()),
            cursor: None,
        };
        let mut seen = vec![];
        loop {
            let (page, next) = q.page(items.clone(), key).unwrap();
            seen.extend(page);
            match next {
                Some(n) => q.cursor = Some(n),
                None => break,
            }
        }
        assert_eq!(seen, items);
        q.limit = Some("0".into());
        assert!(q.page(items.clone(), key).is_err());
        q.limit = None;
        q.cursor = Some("%%%".into());
        assert!(q.page(items, key).is_err());
    }

    #[test]
    fn nul_characters_are_found_by_path() {
        let v = serde_json::json!({"a": {"b": ["x", "y\u{0}"]}});
        assert_eq!(nul_at(&v, "").as_deref(), Some("a.b[1]"));
        assert_eq!(nul_at(&serde_json::json!({"a": "ok"}), ""), None);
    }

    #[test]
    fn if_match_holds_updates_to_the_tag() {
        let mut h = HeaderMap::new();
        assert!(if_match(&h, "\"a\"").is_ok());
        h.insert(header::IF_MATCH, HeaderValue::from_static("\"b\", \"a\""));
        assert!(if_match(&h, "\"a\"").is_ok());
        assert_eq!(
            if_match(&h, "\"c\"").unwrap_err().status,
            StatusCode::PRECONDITION_FAILED
        );
    }
}
