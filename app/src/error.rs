//! The one error type every server function returns. It crosses the wire as JSON,
//! so the browser can put a validation message next to the field that caused it.

use serde::{Deserialize, Serialize};
use server_fn::codec::JsonEncoding;
use server_fn::error::{FromServerFnError, ServerFnErrorErr};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    #[error("not found")]
    NotFound,
    /// A field was rejected (422) or collides with an existing value (409).
    #[error("{message}")]
    Field { field: String, message: String },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    /// A guarded update found the thing changed since it was read (412).
    #[error("it changed since you read it: read it again")]
    Changed,
    #[error("too many attempts; try again in {0} seconds")]
    RateLimited(u64),
    #[error("a service Berth depends on is unavailable; try again shortly")]
    Unavailable,
    #[error("something went wrong on the server; it has been logged")]
    Internal,
    /// The request never reached the function (network, encoding).
    #[error("{0}")]
    Transport(String),
}

impl AppError {
    /// The message for `field`, when this error is about that field.
    pub fn for_field(&self, name: &str) -> Option<String> {
        match self {
            AppError::Field { field, message } if field == name => Some(message.clone()),
            _ => None,
        }
    }
    /// A message for errors that are not about a single field.
    pub fn general(&self) -> Option<String> {
        match self {
            AppError::Field { .. } => None,
            other => Some(other.to_string()),
        }
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;
    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        AppError::Transport(value.to_string())
    }
}
