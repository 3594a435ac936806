//! One worker at a time for work that must not run twice across replicas
//! (the reconciler; the sampler, with the alert rules it evaluates): a
//! PostgreSQL advisory lock per role and installation, held on a connection of
//! its own, made outside the pool: a leader holds it for as long as it leads,
//! and the pool's connections stay for requests and jobs (with a small pool,
//! two leaders' connections left a repair waiting for one).

use crate::error::StoreError;
use crate::Engine;
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use tokio_util::sync::CancellationToken;

/// The advisory lock that makes one worker the one doing a `role`, held on a
/// connection of its own for as long as it leads. A crashed worker's
/// connection closes, and with it the lock.
pub struct Leadership {
    conn: diesel_async::AsyncPgConnection,
    key: i64,
}

#[derive(QueryableByName)]
struct Flag {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    ok: bool,
}

impl Leadership {
    /// The lock for `role` in this installation, when no other worker holds it.
    /// A worker that is not the leader asks again every few seconds: one
    /// short connection each time.
    pub async fn take(engine: &Engine, role: &str) -> Result<Option<Self>, StoreError> {
        use deadpool::managed::Manager;
        // Made by the pool's manager (its address and settings), not counted by the pool.
        let mut conn = engine
            .db
            .manager()
            .create()
            .await
            .map_err(|e| StoreError::Pool(deadpool::managed::PoolError::Backend(e)))?;
        let key = lock_key(role, &engine.deploy.instance);
        let got: Flag = diesel::sql_query("SELECT pg_try_advisory_lock($1) AS ok")
            .bind::<diesel::sql_types::BigInt, _>(key)
            .get_result(&mut conn)
            .await?;
        Ok(got.ok.then_some(Self { conn, key }))
    }

    /// Still the leader (the connection, and so the lock, survived).
    pub async fn held(&mut self) -> bool {
        diesel::sql_query(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
               AND pid = pg_backend_pid() AND ((classid::bigint << 32) | objid::bigint) = $1) AS ok",
        )
        .bind::<diesel::sql_types::BigInt, _>(self.key)
        .get_result::<Flag>(&mut self.conn)
        .await
        .is_ok_and(|f| f.ok)
    }

    pub async fn give_up(mut self) {
        let _ = diesel::sql_query("SELECT pg_advisory_unlock($1)")
            .bind::<diesel::sql_types::BigInt, _>(self.key)
            .execute(&mut self.conn)
            .await;
    }
}

/// Runs `lead` whenever this worker holds `role`'s lock, until `shutdown`;
/// a worker that does not hold it asks again every [`RETRY`]. `lead` returns
/// when it lost the lock or `shutdown` came.
pub async fn run_as<F, Fut>(
    engine: &Engine,
    role: &'static str,
    does: &'static str,
    shutdown: &CancellationToken,
    mut lead: F,
) where
    F: FnMut(Leadership) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    loop {
        match Leadership::take(engine, role).await {
            Ok(Some(lease)) => {
                tracing::info!("this worker {does}");
                lead(lease).await;
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, role, "cannot ask for leadership"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(RETRY) => {}
        }
    }
}

/// How long a worker that does not lead waits before asking again.
pub const RETRY: std::time::Duration = std::time::Duration::from_secs(10);

/// A lock key per role and installation (several may share one PostgreSQL server).
pub fn lock_key(role: &str, instance: &str) -> i64 {
    use sha2::Digest;
    let h = sha2::Sha256::digest(format!("berth-{role}:{instance}").as_bytes());
    i64::from_be_bytes(h[..8].try_into().expect("8 bytes")) & 0x7fff_ffff_ffff_ffff
}
