//! PostgreSQL access: the async connection pool, the embedded migrations, and the
//! schema. Domain modules write their queries against [`schema`] with a
//! connection from [`DbPool`].

pub mod schema;

use crate::config::DatabaseConfig;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::AsyncPgConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use secrecy::ExposeSecret;

pub type DbPool = Pool<AsyncPgConnection>;
pub type DbConn = Object<AsyncPgConnection>;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations");

#[derive(Debug, thiserror::Error)]
pub enum DbSetupError {
    #[error("building the database pool: {0}")]
    Pool(String),
    #[error("running migrations: {0}")]
    Migrate(String),
}

/// A pool that connects lazily: the server starts (and `/health` reports) even
/// while PostgreSQL is down.
pub fn pool(config: &DatabaseConfig) -> Result<DbPool, DbSetupError> {
    // No `SELECT 1` per checkout (the default, `Verified`, costs one round trip
    // each time a request borrows a connection): a connection PostgreSQL closed
    // is still dropped at checkout, since `is_broken` asks the client whether
    // its socket closed, and open transactions are still checked.
    let mut manager = diesel_async::pooled_connection::ManagerConfig::default();
    manager.recycling_method = diesel_async::pooled_connection::RecyclingMethod::Fast;
    let mgr = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(config.url.expose_secret(), manager);
    Pool::builder(mgr)
        .max_size(config.pool_size)
        .wait_timeout(Some(std::time::Duration::from_secs(5)))
        .create_timeout(Some(std::time::Duration::from_secs(5)))
        .runtime(deadpool_redis::Runtime::Tokio1)
        .build()
        .map_err(|e| DbSetupError::Pool(e.to_string()))
}

/// Applies every pending migration; returns the versions it applied. Runs on a
/// blocking thread because diesel's migration harness is synchronous.
pub async fn migrate(url: &str) -> Result<Vec<String>, DbSetupError> {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        use diesel::Connection;
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&url)
            .map_err(|e| DbSetupError::Migrate(e.to_string()))?;
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map_err(|e| DbSetupError::Migrate(e.to_string()))?;
        Ok(applied.into_iter().map(|v| v.to_string()).collect())
    })
    .await
    .map_err(|e| DbSetupError::Migrate(e.to_string()))?
}
