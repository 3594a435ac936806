//! Plain HTTP routes outside Leptos: health for load balancers and monitors, and
//! its detailed form for instance administrators.

use crate::error::ApiError;
use crate::state::AppState;
use app::api::edge;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use engine::health::HealthReport;
use serde_json::json;

/// `GET /health`: whether Berth can serve (PostgreSQL and Redis answer) and
/// whether anything it runs is degraded (Docker unreachable, or something that
/// should run is down and being repaired), as one word. No
/// versions, no backend errors: anyone can ask, so nothing here helps an attacker;
/// and the answer is shared for a second, so asking often costs the backends nothing.
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let report = state.health.get(state.engine()).await;
    let (status, word) = if !report.ready() {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    } else if report.degraded() {
        (StatusCode::OK, "degraded")
    } else {
        (StatusCode::OK, "ok")
    };
    (status, Json(json!({ "status": word })))
}

/// `GET /api/admin/health`: each backend with its version or its error, and
/// Berth's own version and release, for instance administrators (anyone
/// else: 403).
pub async fn health_details(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let caller = match edge::caller_from(&state.ctx, &headers).await {
        Ok(Some(c)) => c,
        Ok(None) => return ApiError::new(StatusCode::UNAUTHORIZED, "sign in first").into_response(),
        Err(e) => return ApiError::from_engine(e).into_response(),
    };
    if !caller.instance_admin {
        return ApiError::new(StatusCode::FORBIDDEN, "for instance administrators").into_response();
    }
    let report: HealthReport = engine::health::check(state.engine()).await;
    let status = if report.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = serde_json::to_value(&report).unwrap_or_default();
    body["berth"] = json!({"version": env!("CARGO_PKG_VERSION"), "release": state.config.release});
    (status, Json(body)).into_response()
}
