//! The shared vocabulary for classifying domain errors. Each module has its own
//! `thiserror` enum; each implements [`Classify`] so that the web edge maps every
//! error to a status exactly once, without knowing the modules.

use crate::names::ValidationError;

/// What kind of failure an error is, as far as a caller outside the engine cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The thing does not exist, or belongs to another organization (never say which).
    NotFound,
    /// A field failed validation; `field` names it.
    Validation { field: &'static str, message: String },
    /// A unique value is already used; `field` names it.
    Conflict { field: &'static str, message: String },
    /// It changed since the caller read it (a guarded update was refused:
    /// read it again).
    Changed,
    /// No valid session, or wrong credentials.
    Unauthorized(String),
    /// Signed in, but the role does not allow this.
    Forbidden(String),
    /// Too many attempts; retry after this many seconds.
    RateLimited { retry_after_secs: u64 },
    /// A backend (PostgreSQL, Redis) is unreachable.
    Unavailable,
    /// A bug or unexpected state; logged once at the edge, shown generically.
    Internal,
}

/// Implemented by every module error.
pub trait Classify: std::error::Error {
    fn kind(&self) -> ErrorKind;
}

/// A backend failure shared by the modules that talk to PostgreSQL and Redis.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database pool: {0}")]
    Pool(#[from] diesel_async::pooled_connection::deadpool::PoolError),
    #[error("database: {0}")]
    Db(#[from] diesel::result::Error),
    #[error("redis pool: {0}")]
    RedisPool(#[from] deadpool_redis::PoolError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl Classify for StoreError {
    fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Pool(_) | StoreError::RedisPool(_) => ErrorKind::Unavailable,
            StoreError::Redis(e) if e.is_io_error() || e.is_connection_dropped() => ErrorKind::Unavailable,
            StoreError::Db(diesel::result::Error::NotFound) => ErrorKind::NotFound,
            _ => ErrorKind::Internal,
        }
    }
}

impl Classify for ValidationError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Validation {
            field: self.field,
            message: self.message.clone(),
        }
    }
}
