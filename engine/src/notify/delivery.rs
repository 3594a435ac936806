//! Deliveries as jobs on the common runner: claimed with `FOR UPDATE SKIP
//! LOCKED`, sent once per attempt, retried with back-off (1, 2, 4, 8, 16 s) up
//! to [`MAX_ATTEMPTS`], failed at once when the receiver refuses the message
//! itself. Every move goes through [`transition`], the one writer of
//! `notification_deliveries.status`, asked of [`DeliveryStatus`] first.
//!
//! Delivery is at least once: a worker that dies after the receiver took the
//! message but before recording it sends again; receivers can tell by the
//! delivery ID (`X-Berth-Delivery` on signed webhooks).

use super::{format, send};
use crate::error::StoreError;
use crate::jobs::{Beat, Holder, JobContext, JobKind, TransitionError};
use crate::Engine;
use diesel::sql_types::{Double, Integer, Jsonb, Nullable, Text, Uuid as SqlUuid};
use diesel::{OptionalExtension, QueryableByName};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures::future::BoxFuture;
use lifecycle::{DeliveryStatus, NotifyEvent};
use std::time::Duration;
use uuid::Uuid;

/// Attempts before a delivery fails for good.
pub const MAX_ATTEMPTS: i32 = 6;
/// The Redis list whose pushes wake the runner.
const QUEUE: &str = "queue:deliveries";

/// The wait before attempt `attempts + 1` (after `attempts` failed ones).
pub fn backoff(attempts: i32) -> Duration {
    Duration::from_secs(1 << (attempts.clamp(1, 5) - 1))
}

/// One move of one delivery; `retry_in` is set when it goes back to the queue.
pub type DeliveryMove<'a> = crate::jobs::Move<'a, DeliveryStatus>;

/// Makes the move, or says why not. A claim counts an attempt; going back to
/// the queue sets when it is due again.
pub async fn transition(
    conn: &mut AsyncPgConnection,
    m: DeliveryMove<'_>,
    retry_in: Duration,
) -> Result<(), TransitionError> {
    m.check(DeliveryStatus::Queued)?;
    let (holder, worker, lease) = m.holder.binds();
    let n = diesel::sql_query(
        "UPDATE notification_deliveries SET
            status = $1,
            worker_id = COALESCE($4, worker_id),
            heartbeat_at = CASE WHEN $1 = 'sending' THEN now() ELSE heartbeat_at END,
            attempts = attempts + CASE WHEN $1 = 'sending' THEN 1 ELSE 0 END,
            next_at = CASE WHEN $1 = 'queued' THEN now() + make_interval(secs => $9) ELSE next_at END,
            finished_at = CASE WHEN $1 IN ('succeeded', 'failed') THEN now() ELSE finished_at END,
            error = CASE WHEN $1 = 'succeeded' THEN NULL ELSE COALESCE($5, error) END
         WHERE id = $2 AND status = $3
           AND CASE $6 WHEN 'worker' THEN worker_id = $7
                       WHEN 'stale' THEN heartbeat_at < now() - make_interval(secs => $8)
                       ELSE TRUE END",
    )
    .bind::<Text, _>(m.to)
    .bind::<SqlUuid, _>(m.id)
    .bind::<Nullable<Text>, _>(m.from)
    .bind::<Nullable<Text>, _>(m.claim_for)
    .bind::<Nullable<Text>, _>(m.note)
    .bind::<Text, _>(holder)
    .bind::<Nullable<Text>, _>(worker)
    .bind::<Double, _>(lease)
    .bind::<Double, _>(retry_in.as_secs_f64())
    .execute(conn)
    .await?;
    if n == 1 {
        Ok(())
    } else {
        Err(TransitionError::Lost)
    }
}

/// A claimed delivery.
#[derive(Debug, Clone, QueryableByName)]
pub struct Job {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub organization_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub channel_id: Uuid,
    #[diesel(sql_type = Text)]
    pub event: String,
    #[diesel(sql_type = Jsonb)]
    pub facts: serde_json::Value,
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
}

/// Wakes a runner at once (otherwise it finds the row within a second).
pub async fn wake(engine: &Engine) {
    let push = async {
        let mut kv = engine.kv.conn().await?;
        redis::cmd("LPUSH")
            .arg(engine.kv.key(QUEUE))
            .arg("1")
            .query_async::<()>(&mut kv)
            .await?;
        Ok::<_, StoreError>(())
    };
    if let Err(e) = push.await {
        tracing::debug!(error = %e, "could not push the delivery wake-up");
    }
}

/// Tells `org`'s open pages that delivery `id` moved to `status` (the mover
/// knows where it put it: nothing is read back).
pub async fn changed(engine: &Engine, org: Uuid, id: Uuid, status: DeliveryStatus) {
    let event = crate::events::Event::Delivery {
        id,
        status: status.name().to_owned(),
    };
    crate::events::publish(engine, org, event).await;
}

/// Sends what is queued.
pub struct DeliveryKind;

async fn claim(engine: &Engine, worker: &str) -> Result<Option<Job>, StoreError> {
    let mut conn = engine.db.get().await?;
    let claimed = conn
        .transaction::<_, TransitionError, _>(async |conn| {
            let Some(job) = diesel::sql_query(
                "SELECT id, organization_id, channel_id, event, facts, attempts FROM notification_deliveries
                 WHERE status = 'queued' AND next_at <= now()
                 ORDER BY next_at LIMIT 1 FOR UPDATE SKIP LOCKED",
            )
            .get_result::<Job>(conn)
            .await
            .optional()?
            else {
                return Ok(None);
            };
            let m = DeliveryMove::new(job.id, DeliveryStatus::Queued, DeliveryStatus::Sending, Holder::Anyone)
                .claim_for(worker);
            transition(conn, m, Duration::ZERO).await?;
            Ok(Some(Job {
                attempts: job.attempts + 1,
                ..job
            }))
        })
        .await;
    match claimed {
        Ok(job) => {
            if let Some(j) = &job {
                changed(engine, j.organization_id, j.id, DeliveryStatus::Sending).await;
            }
            Ok(job)
        }
        Err(TransitionError::Lost) => Ok(None),
        Err(TransitionError::Store(e)) => Err(e),
        Err(e @ TransitionError::Illegal(_)) => Err(StoreError::Corrupt(e.to_string())),
    }
}

/// Where an attempt leaves the delivery.
fn after(attempts: i32, result: &Result<(), send::SendError>) -> (DeliveryStatus, Option<String>, Duration) {
    match result {
        Ok(()) => (DeliveryStatus::Succeeded, None, Duration::ZERO),
        Err(send::SendError::Transient(e)) if attempts < MAX_ATTEMPTS => {
            (DeliveryStatus::Queued, Some(e.clone()), backoff(attempts))
        }
        Err(send::SendError::Transient(e)) => (
            DeliveryStatus::Failed,
            Some(format!("{e} (gave up after {attempts} attempts)")),
            Duration::ZERO,
        ),
        Err(send::SendError::Permanent(e)) => (DeliveryStatus::Failed, Some(e.clone()), Duration::ZERO),
    }
}

async fn run(engine: &Engine, job: Job, worker: &str) {
    let result = async {
        let event: NotifyEvent = job.event.parse().map_err(|e: String| send::SendError::Permanent(e))?;
        let mut conn = engine
            .db
            .get()
            .await
            .map_err(|e| send::SendError::Transient(e.to_string()))?;
        let (kind, settings) = super::settings(engine, &mut conn, job.organization_id, job.channel_id)
            .await
            .map_err(|e| send::SendError::Permanent(e.to_string()))?;
        drop(conn);
        let notice = format::notice(event, &job.facts, engine.deploy.public_url.as_deref());
        let policy = crate::outbound::Policy::of(engine);
        let telegram = &engine.deploy.telegram_api;
        send::send(policy, telegram, kind, &settings, &notice, &job.id.to_string()).await
    }
    .await;
    let (to, note, retry_in) = after(job.attempts, &result);
    match &result {
        Ok(()) => tracing::info!(delivery.id = %job.id, attempts = job.attempts, "notification delivered"),
        Err(e) => {
            tracing::warn!(delivery.id = %job.id, attempts = job.attempts, error = %e, "notification not delivered")
        }
    }
    let Ok(mut conn) = engine.db.get().await else { return };
    let mut m = DeliveryMove::new(job.id, DeliveryStatus::Sending, to, Holder::Worker(worker));
    if let Some(n) = &note {
        m = m.note(n);
    }
    match transition(&mut conn, m, retry_in).await {
        Ok(()) => {
            drop(conn);
            // A retry is due again after its back-off: the runner polls every second.
            changed(engine, job.organization_id, job.id, to).await;
        }
        Err(e) => tracing::warn!(delivery.id = %job.id, error = %e, "recording a delivery's attempt"),
    }
}

impl JobKind for DeliveryKind {
    type Job = Job;
    const NAME: &'static str = "delivery";

    /// Sending is waiting on the network: its own pool, beside the builds and dumps.
    fn pool(&self, _engine: &Engine) -> (&'static str, usize) {
        ("deliveries", 8)
    }

    fn wake_list(&self) -> Option<&'static str> {
        Some(QUEUE)
    }

    fn claim<'a>(&'a self, engine: &'a Engine, worker: &'a str) -> BoxFuture<'a, Result<Option<Job>, StoreError>> {
        Box::pin(claim(engine, worker))
    }

    fn beat<'a>(
        &'a self,
        engine: &'a Engine,
        job: &'a Job,
        worker: &'a str,
        _progress: u64,
    ) -> BoxFuture<'a, Result<Beat, StoreError>> {
        Box::pin(async move {
            let mut conn = engine.db.get().await?;
            let n = diesel::sql_query(
                "UPDATE notification_deliveries SET heartbeat_at = now()
                 WHERE id = $1 AND status = 'sending' AND worker_id = $2",
            )
            .bind::<SqlUuid, _>(job.id)
            .bind::<Text, _>(worker)
            .execute(&mut conn)
            .await?;
            Ok(if n == 1 {
                Beat::Held { cancel: false }
            } else {
                Beat::Lost
            })
        })
    }

    fn run<'a>(&'a self, engine: &'a Engine, job: Job, ctx: JobContext) -> BoxFuture<'a, ()> {
        Box::pin(async move { run(engine, job, &ctx.worker).await })
    }

    /// A delivery whose worker died goes back to the queue (its attempt
    /// counted), or fails when that was its last.
    fn reap<'a>(&'a self, engine: &'a Engine) -> BoxFuture<'a, Result<usize, StoreError>> {
        Box::pin(async move {
            let lease = engine.deploy.lease_secs;
            let mut conn = engine.db.get().await?;
            let stale: Vec<Job> = diesel::sql_query(
                "SELECT id, organization_id, channel_id, event, facts, attempts FROM notification_deliveries
                 WHERE status = 'sending' AND heartbeat_at < now() - make_interval(secs => $1)",
            )
            .bind::<Double, _>(lease as f64)
            .load(&mut conn)
            .await?;
            let mut n = 0;
            for job in stale {
                let interrupted = Err(send::SendError::Transient("the worker sending it stopped".into()));
                let (to, note, retry_in) = after(job.attempts, &interrupted);
                let m = DeliveryMove::new(job.id, DeliveryStatus::Sending, to, Holder::Stale { lease_secs: lease })
                    .note(note.as_deref().unwrap_or_default());
                if transition(&mut conn, m, retry_in).await.is_ok() {
                    tracing::warn!(delivery.id = %job.id, "delivery interrupted (its worker stopped)");
                    n += 1;
                }
            }
            Ok(n)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use send::SendError;

    #[test]
    fn backoff_doubles_up_to_sixteen_seconds() {
        let waits: Vec<u64> = (1..=6).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 16]);
    }

    #[test]
    fn transient_failures_retry_until_the_last_attempt_and_refusals_fail_at_once() {
        let t = Err(SendError::Transient("503".into()));
        assert_eq!(after(1, &t).0, DeliveryStatus::Queued);
        assert_eq!(after(MAX_ATTEMPTS - 1, &t).0, DeliveryStatus::Queued);
        let (to, note, _) = after(MAX_ATTEMPTS, &t);
        assert_eq!(to, DeliveryStatus::Failed);
        assert!(note.unwrap().contains("gave up after 6 attempts"));
        assert_eq!(
            after(1, &Err(SendError::Permanent("404".into()))).0,
            DeliveryStatus::Failed
        );
        assert_eq!(after(3, &Ok(())).0, DeliveryStatus::Succeeded);
    }
}
