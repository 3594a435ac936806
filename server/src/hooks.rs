//! Deploy webhooks (`/api/webhooks/*`). They are authenticated by signature or
//! token instead of a session, which is why the same-origin rule exempts them.

use crate::error::ApiError;
use crate::state::AppState;
use app::api::edge::ClientIp;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use engine::deploy::Accepted;
use engine::webhooks::{self, Outcome, WebhookError};
use serde_json::json;

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn reply(result: Result<Outcome, WebhookError>) -> Response {
    match result {
        Ok(Outcome::Deploying(list)) => {
            let queued = list.iter().any(|(_, a)| matches!(a, Accepted::Queued(_)));
            let items: Vec<_> = list
                .iter()
                .map(|(app, a)| match a {
                    Accepted::Queued(d) => json!({"app": app.0, "deployment": d.0, "duplicate": false}),
                    Accepted::Duplicate(d) => json!({"app": app.0, "deployment": d.map(|d| d.0), "duplicate": true}),
                })
                .collect();
            let status = if queued { StatusCode::ACCEPTED } else { StatusCode::OK };
            (status, Json(json!({ "deployments": items }))).into_response()
        }
        Ok(Outcome::Ignored(why)) => (StatusCode::OK, Json(json!({ "ignored": why }))).into_response(),
        Err(e) => ApiError::from_engine(e).into_response(),
    }
}

/// `POST /api/webhooks/github`: push events for apps whose repository and branch
/// match. An address whose calls keep failing is throttled.
pub async fn github(
    State(state): State<AppState>,
    Extension(client): Extension<ClientIp>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let event = header(&headers, "x-github-event").unwrap_or("");
    let signature = header(&headers, "x-hub-signature-256").unwrap_or("");
    let Some(delivery) = webhooks::delivery_id(header(&headers, "x-github-delivery")) else {
        return ApiError::from_engine(engine::names::ValidationError::new("X-GitHub-Delivery", "is required"))
            .into_response();
    };
    let call = webhooks::github(state.engine(), event, &delivery, signature, &body);
    reply(webhooks::throttled(state.engine(), &client.0, call).await)
}

/// `POST /api/webhooks/deploy/<token>`: deploy one app (CI, scripts). An
/// `Idempotency-Key` (or `X-Delivery-Id`) header makes retries safe.
pub async fn deploy(
    State(state): State<AppState>,
    Extension(client): Extension<ClientIp>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let delivery = webhooks::delivery_id(header(&headers, "idempotency-key").or(header(&headers, "x-delivery-id")));
    let call = webhooks::deploy_token(state.engine(), &token, delivery.as_deref());
    reply(webhooks::throttled(state.engine(), &client.0, call).await)
}
