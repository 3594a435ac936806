//! One worker at a time for work that must not run twice across replicas
//! (the reconciler; the sampler, with the alert rules it evaluates): a
//! PostgreSQL advisory lock per role and installation. A candidate asks on a
//! pooled connection and gives it straight back when another worker leads;
//! the winner takes that connection out of the pool for as long as it leads
//! (which frees the pool's slot), so the pool's size stays for requests and
//! jobs (with a small pool, two leaders' connections held inside it left a
//! repair waiting for one), and no candidate opens a connection of its own
//! every few seconds.

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
    pub async fn take(engine: &Engine, role: &str) -> Result<Option<Self>, StoreError> {
        let mut pooled = engine.db.get().await?;
        let key = lock_key(role, &engine.deploy.instance);
        let got: Flag = diesel::sql_query("SELECT pg_try_advisory_lock($1) AS ok")
            .bind::<diesel::sql_types::BigInt, _>(key)
            .get_result(&mut pooled)
            .await?;
        if !got.ok {
            // Not ours: the connection holds nothing and goes back to the pool.
            return Ok(None);
        }
        // Ours: the connection (and the lock on it) leaves the pool, whose
        // slot is freed for another connection.
        let conn = deadpool::managed::Object::take(pooled);
        Ok(Some(Self { conn, key }))
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
