//! Plain HTTP routes outside Leptos: health for load balancers and monitors.

use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use engine::health::HealthReport;

/// `GET /health`: the state of PostgreSQL, Redis and Docker. 200 when PostgreSQL
/// and Redis answer (Docker is reported, not required), 503 otherwise.
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<HealthReport>) {
    let report = engine::health::check(state.engine()).await;
    let status = if report.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report))
}
