//! The audit layer: one `engine::audit` row for every state-changing request
//! that reaches a server function or a REST operation, with the caller the
//! request resolved (its session or API key), the operation, the target's ID
//! (never a value), the outcome and the client's address.
//!
//! A request nobody is signed in for is recorded only when it succeeds
//! (onboarding, accepting an invite): refusals of anonymous requests would
//! let anyone fill the log. Sign-in records itself (`engine::accounts`).

use crate::error::ApiError;
use crate::state::AppState;
use app::api::edge::{self, ClientIp, RequestCaller};
use axum::extract::Query;
use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::response::Response;
use engine::audit::{self, Actor, Outcome};
use uuid::Uuid;

/// Server functions that change nothing (reads), and those recorded
/// elsewhere: `login` and `login/code` by the engine with the account they
/// name, `logout`
/// ends the caller's own session only. Everything else is audited, reveals of
/// secret values included (`apps/env`, `apps/hooks`, `services/reveal`).
pub const NOT_AUDITED: &[&str] = &[
    "session",
    "login",
    "login/code",
    "logout",
    "system/status",
    "invites/preview",
    "instance/get",
    "instance/metrics",
    "orgs/members",
    "orgs/invites",
    "projects/list",
    "projects/get",
    "apps/list",
    "apps/get",
    "apps/metrics",
    "deployments/list",
    "services/list",
    "services/get",
    "services/metrics",
    "backups/destinations",
    "backups/list",
    "backups/bucket",
    "notify/list",
    "keys/list",
    "audit/list",
    "twofactor/status",
];

/// What a server function's form names as its target: the first of these
/// fields that holds an ID.
const TARGET_FIELDS: &[&str] = &[
    "id",
    "app_id",
    "project_id",
    "service_id",
    "backup_id",
    "user_id",
    "environment_id",
    "subject",
    "destination_id",
];

/// The kind of thing a server function's `id` field names.
fn kind_of_id(endpoint: &str) -> &'static str {
    match endpoint {
        "backups/remove_destination" | "backups/test_destination" => "destination",
        "backups/remove_schedule" | "backups/run_schedule" => "schedule",
        "notify/remove_rule" => "rule",
        "orgs/invites/revoke" => "invite",
        "orgs/switch" => "organization",
        e if e.starts_with("projects/") => "project",
        e if e.starts_with("environments/") => "environment",
        e if e.starts_with("apps/") => "app",
        e if e.starts_with("deployments/") => "deployment",
        e if e.starts_with("services/") => "service",
        e if e.starts_with("notify/") => "channel",
        e if e.starts_with("keys/") => "key",
        _ => "object",
    }
}

fn kind_of_field(field: &str, endpoint: &str) -> &'static str {
    match field {
        "id" => kind_of_id(endpoint),
        "app_id" => "app",
        "project_id" => "project",
        "service_id" | "subject" => "service",
        "backup_id" => "backup",
        "user_id" => "user",
        "environment_id" => "environment",
        "destination_id" => "destination",
        _ => "object",
    }
}

/// A REST path's target: the ID in it and the kind its collection names
/// (`/api/v1/apps/{id}/env` → the app).
fn rest_target(pattern: &str, path: &str) -> Option<(&'static str, Uuid)> {
    let segments: Vec<&str> = pattern.split('/').collect();
    let actual: Vec<&str> = path.split('/').collect();
    let at = segments.iter().position(|s| *s == "{id}")?;
    let id = Uuid::parse_str(actual.get(at)?).ok()?;
    let kind = match *segments.get(at.checked_sub(1)?)? {
        "projects" => "project",
        "environments" => "environment",
        "apps" => "app",
        "domains" => "domain",
        "deployments" => "deployment",
        "services" => "service",
        "destinations" => "destination",
        "backups" => "backup",
        "schedules" => "schedule",
        "members" => "user",
        "invites" => "invite",
        _ => "object",
    };
    Some((kind, id))
}

/// What an anonymous success names: the email it was given, if any.
fn anonymous_label(form: &[(String, String)]) -> String {
    form.iter()
        .find(|(k, _)| k == "email")
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default()
}

pub async fn trail(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let path = req.uri().path().to_owned();
    let rest = path.starts_with("/api/v1/");
    let endpoint = path.strip_prefix("/api/").unwrap_or("").to_owned();
    let function = !rest
        && !endpoint.is_empty()
        && !endpoint.starts_with("webhooks/")
        && !endpoint.starts_with("ws/")
        && !NOT_AUDITED.contains(&endpoint.as_str());
    if !rest && !function {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    // `bounded_body` has read the body already: this is a copy in memory.
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    let form: Vec<(String, String)> = if function {
        url::form_urlencoded::parse(&bytes).into_owned().collect()
    } else {
        Vec::new()
    };
    let (action, target) = if rest {
        let pattern = parts
            .extensions
            .get::<MatchedPath>()
            .map(|m| m.as_str().to_owned())
            .unwrap_or_else(|| path.clone());
        (format!("{} {pattern}", parts.method), rest_target(&pattern, &path))
    } else {
        let target = TARGET_FIELDS.iter().find_map(|f| {
            let v = form.iter().find(|(k, _)| k == f)?.1.trim().to_owned();
            Uuid::parse_str(&v).ok().map(|id| (kind_of_field(f, &endpoint), id))
        });
        (endpoint.clone(), target)
    };
    let cell = parts.extensions.get::<RequestCaller>().cloned();
    let headers = parts.headers.clone();
    let client = parts.extensions.get::<ClientIp>().map(|c| c.0.clone());
    // The instance's own settings and new organizations are instance events.
    let instance_event = endpoint.starts_with("instance/") || endpoint == "orgs/create";
    let label = anonymous_label(&form);
    // A row's organization and actor, from the caller the request resolved.
    let acting = move |c: &engine::accounts::Caller| ((!instance_event).then_some(c.org_id.0), c.actor());
    let who = {
        let cell = cell.clone();
        let label = label.clone();
        move || match cell.as_ref()?.known()? {
            Some(c) => Some(acting(&c)),
            None => Some((None, Actor::Anonymous(label.clone()))),
        }
    };
    let pending = audit::Pending::new(action, target, client, who);
    let req = Request::from_parts(parts, axum::body::Body::from(bytes));
    let res = audit::scoped(pending.clone(), next.run(req)).await;
    let status = res.status().as_u16();
    // A function that failed before asking who calls (its arguments did not
    // decode) still has a caller: the session the request carries.
    let caller = match cell.and_then(|c| c.resolved()) {
        Some(c) => Some(c),
        None if !rest => edge::caller_from(&state.ctx, &headers).await.ok().flatten(),
        None => None,
    };
    let who = match caller {
        Some(c) => acting(&c),
        None if Outcome::of_status(status) == Outcome::Ok || pending.written() => (None, Actor::Anonymous(label)),
        None => return res,
    };
    audit::settle(state.engine(), &pending, who, status).await;
    res
}

#[derive(serde::Deserialize)]
pub struct ExportQuery {
    #[serde(default)]
    who: String,
    #[serde(default)]
    what: String,
    #[serde(default)]
    since: String,
    instance: Option<String>,
}

/// `GET /api/audit/export`: the rows the filters match (at most 10 000,
/// newest first) as JSON lines, a download.
pub async fn export(State(state): State<AppState>, Query(q): Query<ExportQuery>, headers: HeaderMap) -> Response {
    let run = async {
        let caller = match edge::caller_from(&state.ctx, &headers).await {
            Ok(Some(c)) => c,
            Ok(None) => return Err(ApiError::new(StatusCode::UNAUTHORIZED, "sign in first")),
            Err(e) => return Err(ApiError::from_engine(e)),
        };
        let mut filter = audit::Filter::parse(&q.who, &q.what, &q.since, edge::checked(&q.instance))
            .map_err(ApiError::from_engine)?;
        filter.limit = 10_000;
        let rows = audit::list(state.engine(), caller.audit_reader(), &filter)
            .await
            .map_err(ApiError::from_engine)?;
        let mut body = String::new();
        for r in rows {
            body.push_str(&serde_json::to_string(&r).unwrap_or_default());
            body.push('\n');
        }
        Ok((
            [
                (header::CONTENT_TYPE, "application/x-ndjson"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"berth-audit.jsonl\"",
                ),
            ],
            body,
        )
            .into_response())
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_targets_come_from_the_path() {
        let id = Uuid::new_v4();
        assert_eq!(
            rest_target("/api/v1/apps/{id}/env", &format!("/api/v1/apps/{id}/env")),
            Some(("app", id))
        );
        assert_eq!(rest_target("/api/v1/projects", "/api/v1/projects"), None);
        assert_eq!(rest_target("/api/v1/apps/{id}", "/api/v1/apps/nope"), None);
    }

    #[test]
    fn server_function_ids_name_their_kind() {
        assert_eq!(kind_of_field("id", "backups/run_schedule"), "schedule");
        assert_eq!(kind_of_field("id", "apps/delete"), "app");
        assert_eq!(kind_of_field("app_id", "deployments/create"), "app");
    }
}
