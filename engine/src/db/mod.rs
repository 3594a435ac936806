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

/// The version of a row as last read: PostgreSQL's `xmin`, the transaction
/// that last wrote it, which every `UPDATE` of the row changes. An update
/// given one applies only while the row is still that version, checked under
/// the row's lock in the update's own transaction, so "read, compare, write"
/// (HTTP's `If-Match`) has no window for another writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RowVersion(i64);

impl RowVersion {
    /// Selects the version of the (one) table a query reads.
    pub fn column() -> diesel::expression::SqlLiteral<diesel::sql_types::BigInt> {
        // xid has no integer cast of its own; its text form is the number.
        diesel::dsl::sql("xmin::text::bigint")
    }

    pub fn of(raw: i64) -> Self {
        Self(raw)
    }
}
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

/// A fingerprint of the database's schema: the migrations applied and every
/// table, column, index and constraint in `public`. Equal before and after a
/// step: the step changed no schema (`berth upgrade` restores its backup only
/// when a migration did).
pub async fn schema_state(url: &str) -> Result<String, DbSetupError> {
    use diesel_async::{AsyncConnection, RunQueryDsl};
    #[derive(diesel::QueryableByName)]
    struct State {
        #[diesel(sql_type = diesel::sql_types::Text)]
        state: String,
    }
    let mut conn = AsyncPgConnection::establish(url)
        .await
        .map_err(|e| DbSetupError::Migrate(e.to_string()))?;
    let row: State = diesel::sql_query(
        "SELECT md5(coalesce(string_agg(x, E'\\n' ORDER BY x), '')) AS state FROM (
           SELECT 'migration ' || version AS x FROM __diesel_schema_migrations
           UNION ALL SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type || ' '
                            || is_nullable || ' ' || coalesce(column_default, '')
             FROM information_schema.columns WHERE table_schema = 'public'
           UNION ALL SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'public'
           UNION ALL SELECT 'constraint ' || conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
             FROM pg_constraint WHERE connamespace = 'public'::regnamespace
           UNION ALL SELECT 'type ' || typname FROM pg_type
             WHERE typnamespace = 'public'::regnamespace AND typtype IN ('e', 'd', 'c') AND typrelid = 0
         ) s",
    )
    .get_result(&mut conn)
    .await
    .map_err(|e| DbSetupError::Migrate(e.to_string()))?;
    Ok(row.state)
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
