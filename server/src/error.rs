//! Errors of the plain routes (webhooks, WebSockets, downloads) as responses:
//! the status comes from the one mapping in `app::api::edge`, the body is one
//! JSON shape `{"error": ..., "field": ...}` (the field only when one is at fault).

use app::api::edge;
use app::error::AppError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use engine::Classify;
use serde_json::json;

/// An error a plain route answers with.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: AppError,
}

impl ApiError {
    /// An engine error, mapped (and logged once when it is the server's fault).
    pub fn from_engine<E: Classify>(e: E) -> Self {
        let (status, error) = edge::wire(&e);
        Self { status, error }
    }

    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        let message = message.into();
        let error = match status {
            StatusCode::NOT_FOUND => AppError::NotFound,
            StatusCode::UNAUTHORIZED => AppError::Unauthorized(message),
            StatusCode::FORBIDDEN => AppError::Forbidden(message),
            StatusCode::SERVICE_UNAVAILABLE => AppError::Unavailable,
            _ => AppError::Transport(message),
        };
        Self { status, error }
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not found")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match &self.error {
            AppError::Field { field, message } => json!({ "error": message, "field": field }),
            other => json!({ "error": other.to_string() }),
        };
        let mut res = (self.status, Json(body)).into_response();
        if let AppError::RateLimited(secs) = self.error {
            res.headers_mut().insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        res
    }
}
