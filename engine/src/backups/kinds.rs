//! Backups, restores and restore drills as kinds of job on the common runner
//! ([`crate::jobs`]). They share one pool of slots (each streams a dump through
//! this process), and one of each kind runs per service at a time. A job whose
//! worker stops beating is failed as interrupted by any worker's reaper, and
//! what it left is cleaned up (its multipart upload aborted, a drill's container
//! removed, a Redis service stopped for its swap started again); nothing reruns
//! on its own. The three differ only in their rows, described by [`Rows`].

use super::transition::{drill_transition, transition, DrillMove, JobMove, JobTable};
use super::{s3, work};
use crate::db::schema::{backups, restores};
use crate::error::StoreError;
use crate::jobs::{Beat, Holder, JobContext, JobKind, TransitionError};
use crate::Engine;
use chrono::Utc;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Text, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures::future::BoxFuture;
use lifecycle::{DrillStatus, JobStatus};
use std::sync::atomic::{AtomicU64, Ordering};
use uuid::Uuid;

const POOL: &str = "backup";
const INTERRUPTED: &str = "interrupted: the worker running it stopped before it finished";

/// Where a kind's jobs live: which rows are due, held, and stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rows {
    Backups,
    Restores,
    Drills,
}

impl Rows {
    /// The next due job, locked (`SKIP LOCKED`); one job per service at a time.
    /// The next job to claim: of the organization with the fewest running now
    /// (one organization's long queue does not starve another's), oldest first.
    fn due(self) -> &'static str {
        match self {
            Rows::Backups => {
                "SELECT b.id FROM backups b WHERE b.status = 'queued'
                   AND NOT EXISTS (SELECT 1 FROM backups o WHERE o.status = 'running' AND o.service_id = b.service_id)
                   AND NOT EXISTS (SELECT 1 FROM restores r WHERE r.status = 'running' AND r.service_id = b.service_id)
                 ORDER BY (SELECT count(*) FROM backups a WHERE a.status = 'running'
                            AND a.organization_id = b.organization_id), b.created_at
                 LIMIT 1 FOR UPDATE SKIP LOCKED"
            }
            Rows::Restores => {
                "SELECT r.id FROM restores r WHERE r.status = 'queued'
                   AND NOT EXISTS (SELECT 1 FROM restores o WHERE o.status = 'running' AND o.service_id = r.service_id)
                   AND NOT EXISTS (SELECT 1 FROM backups b WHERE b.status = 'running' AND b.service_id = r.service_id)
                 ORDER BY (SELECT count(*) FROM restores a WHERE a.status = 'running'
                            AND a.organization_id = r.organization_id), r.created_at
                 LIMIT 1 FOR UPDATE SKIP LOCKED"
            }
            Rows::Drills => {
                "SELECT d.id FROM backups d WHERE d.drill_status = 'queued'
                 ORDER BY (SELECT count(*) FROM backups a WHERE a.drill_status = 'running'
                            AND a.organization_id = d.organization_id), d.created_at
                 LIMIT 1 FOR UPDATE SKIP LOCKED"
            }
        }
    }

    /// Proves a held job alive ($1 id, $2 worker) with its progress ($3, where
    /// the row keeps one).
    fn beat(self) -> &'static str {
        match self {
            Rows::Backups => {
                "UPDATE backups SET heartbeat_at = now(), size_bytes = $3
                 WHERE id = $1 AND worker_id = $2 AND status = 'running'"
            }
            Rows::Restores => {
                "UPDATE restores SET heartbeat_at = now(), bytes = $3
                 WHERE id = $1 AND worker_id = $2 AND status = 'running'"
            }
            Rows::Drills => {
                "UPDATE backups SET drill_heartbeat_at = now()
                 WHERE id = $1 AND drill_worker_id = $2 AND drill_status = 'running'"
            }
        }
    }

    /// The running jobs whose heartbeat is older than the lease ($1 seconds).
    fn stale(self) -> &'static str {
        match self {
            Rows::Backups => {
                "SELECT id FROM backups WHERE status = 'running'
                   AND heartbeat_at < now() - make_interval(secs => $1)"
            }
            Rows::Restores => {
                "SELECT id FROM restores WHERE status = 'running'
                   AND heartbeat_at < now() - make_interval(secs => $1)"
            }
            Rows::Drills => {
                "SELECT id FROM backups WHERE drill_status = 'running'
                   AND drill_heartbeat_at < now() - make_interval(secs => $1)"
            }
        }
    }

    /// The one transition of this kind of row, from running (or queued) to `to`.
    async fn moves(
        self,
        conn: &mut AsyncPgConnection,
        id: Uuid,
        outcome: Outcome<'_>,
        holder: Holder<'_>,
    ) -> Result<(), TransitionError> {
        let table = match self {
            Rows::Drills => {
                let (from, to, detail) = match outcome {
                    Outcome::Claimed(_) => (DrillStatus::Queued, DrillStatus::Running, None),
                    Outcome::Done(d) => (DrillStatus::Running, DrillStatus::Verified, Some(d)),
                    Outcome::Failed(d) => (DrillStatus::Running, DrillStatus::Failed, Some(d)),
                };
                let mut m = DrillMove::new(id, from, to, holder);
                m.note = detail;
                m.claim_for = outcome.claimed_by();
                return drill_transition(conn, m).await;
            }
            Rows::Backups => JobTable::Backups,
            Rows::Restores => JobTable::Restores,
        };
        let from = JobStatus::Running;
        let m = match outcome {
            Outcome::Claimed(w) => JobMove::new(id, JobStatus::Queued, JobStatus::Running, holder).claim_for(w),
            Outcome::Done(_) => JobMove::new(id, from, JobStatus::Succeeded, holder),
            Outcome::Failed(e) => JobMove::new(id, from, JobStatus::Failed, holder).note(e),
        };
        transition(conn, table, m).await
    }
}

/// Where a move takes a job.
#[derive(Debug, Clone, Copy)]
enum Outcome<'a> {
    /// Claimed by this worker.
    Claimed(&'a str),
    /// Finished well (a drill's counts).
    Done(&'a str),
    /// Finished badly, with the reason.
    Failed(&'a str),
}

impl<'a> Outcome<'a> {
    fn claimed_by(self) -> Option<&'a str> {
        match self {
            Outcome::Claimed(w) => Some(w),
            _ => None,
        }
    }
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

fn unique_violation(e: &TransitionError) -> bool {
    matches!(
        e,
        TransitionError::Store(StoreError::Db(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _
        )))
    )
}

/// Selects one due job and moves it to running for `worker`, in one
/// transaction. Losing a race is "nothing to claim".
async fn claim(engine: &Engine, rows: Rows, worker: &str) -> Result<Option<Uuid>, StoreError> {
    let mut conn = engine.db.get().await?;
    let claimed = conn
        .transaction::<_, TransitionError, _>(async |conn| {
            let Some(Id { id }) = diesel::sql_query(rows.due()).get_result::<Id>(conn).await.optional()? else {
                return Ok(None);
            };
            rows.moves(conn, id, Outcome::Claimed(worker), Holder::Anyone).await?;
            Ok(Some(id))
        })
        .await;
    match claimed {
        Ok(id) => {
            if let Some(id) = id {
                crate::events::backup_changed(engine, id).await;
            }
            Ok(id)
        }
        // Another worker started a job on the same service in between.
        Err(TransitionError::Lost) => Ok(None),
        Err(e) if unique_violation(&e) => Ok(None),
        Err(TransitionError::Store(e)) => Err(e),
        Err(e @ TransitionError::Illegal(_)) => Err(StoreError::Corrupt(e.to_string())),
    }
}

async fn beat(engine: &Engine, rows: Rows, id: Uuid, worker: &str, progress: u64) -> Result<Beat, StoreError> {
    let mut conn = engine.db.get().await?;
    let mut q = diesel::sql_query(rows.beat())
        .into_boxed()
        .bind::<SqlUuid, _>(id)
        .bind::<Text, _>(worker);
    if rows != Rows::Drills {
        q = q.bind::<BigInt, _>(progress as i64);
    }
    let n = q.execute(&mut conn).await?;
    Ok(if n == 1 {
        Beat::Held { cancel: false }
    } else {
        Beat::Lost
    })
}

/// Fails the jobs whose worker stopped beating; their ids, for the clean-up.
async fn reap(engine: &Engine, rows: Rows) -> Result<Vec<Uuid>, StoreError> {
    let lease = engine.deploy.lease_secs;
    let mut conn = engine.db.get().await?;
    let stale: Vec<Id> = diesel::sql_query(rows.stale())
        .bind::<Double, _>(lease as f64)
        .load(&mut conn)
        .await?;
    let mut reaped = Vec::new();
    for Id { id } in stale {
        let holder = Holder::Stale { lease_secs: lease };
        // It beat (or finished) in between: alive after all.
        if rows
            .moves(&mut conn, id, Outcome::Failed(INTERRUPTED), holder)
            .await
            .is_ok()
        {
            tracing::warn!(?rows, id = %id, "job interrupted (its worker stopped)");
            crate::events::backup_changed(engine, id).await;
            reaped.push(id);
        }
    }
    Ok(reaped)
}

/// Records a job's end (logged when someone else moved it meanwhile).
async fn finish(engine: &Engine, rows: Rows, id: Uuid, worker: &str, to: Outcome<'_>) {
    let Ok(mut conn) = engine.db.get().await else { return };
    match rows.moves(&mut conn, id, to, Holder::Worker(worker)).await {
        Ok(()) => {
            drop(conn);
            crate::events::backup_changed(engine, id).await;
        }
        Err(e) => tracing::warn!(?rows, id = %id, error = %e, "recording a job's end"),
    }
}

/// Backups: a dump streamed through gzip into an S3 multipart upload.
pub struct BackupKind;

impl JobKind for BackupKind {
    type Job = Uuid;
    const NAME: &'static str = "backup";

    fn pool(&self, engine: &Engine) -> (&'static str, usize) {
        (POOL, engine.deploy.services.concurrency)
    }

    fn claim<'a>(&'a self, engine: &'a Engine, worker: &'a str) -> BoxFuture<'a, Result<Option<Uuid>, StoreError>> {
        Box::pin(claim(engine, Rows::Backups, worker))
    }

    fn beat<'a>(
        &'a self,
        engine: &'a Engine,
        job: &'a Uuid,
        worker: &'a str,
        progress: u64,
    ) -> BoxFuture<'a, Result<Beat, StoreError>> {
        Box::pin(beat(engine, Rows::Backups, *job, worker, progress))
    }

    fn run<'a>(&'a self, engine: &'a Engine, id: Uuid, ctx: JobContext) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let result = work::run_backup(engine, id, &ctx.progress).await;
            work::finish_backup(engine, id, &ctx.worker, result).await;
        })
    }

    /// Interrupted backups' multipart uploads are aborted by the upload id
    /// recorded when they opened.
    fn reap<'a>(&'a self, engine: &'a Engine) -> BoxFuture<'a, Result<usize, StoreError>> {
        Box::pin(async move {
            let reaped = reap(engine, Rows::Backups).await?;
            let mut conn = engine.db.get().await?;
            for id in &reaped {
                type Row = (Uuid, Uuid, Option<String>, Option<String>);
                let Ok((org, destination, Some(key), Some(upload))) = backups::table
                    .find(id)
                    .select((
                        backups::organization_id,
                        backups::destination_id,
                        backups::object_key,
                        backups::upload_id,
                    ))
                    .first::<Row>(&mut conn)
                    .await
                else {
                    continue;
                };
                let Ok(target) = super::target(engine, &mut conn, org, destination).await else {
                    continue;
                };
                if let Ok(bucket) = target.bucket() {
                    if let Err(e) = bucket.abort_upload(&key, &upload).await {
                        tracing::warn!(key, error = %s3::describe(&e), "aborting an interrupted backup's upload");
                    }
                }
            }
            Ok(reaped.len())
        })
    }

    fn tick<'a>(&'a self, engine: &'a Engine) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Err(e) = super::schedule::tick(engine, Utc::now()).await {
                tracing::warn!(error = %e, "queueing scheduled backups");
            }
        })
    }
}

/// Restores: a backup streamed from S3 into a running service.
pub struct RestoreKind;

impl JobKind for RestoreKind {
    type Job = Uuid;
    const NAME: &'static str = "restore";

    fn pool(&self, engine: &Engine) -> (&'static str, usize) {
        (POOL, engine.deploy.services.concurrency)
    }

    fn claim<'a>(&'a self, engine: &'a Engine, worker: &'a str) -> BoxFuture<'a, Result<Option<Uuid>, StoreError>> {
        Box::pin(claim(engine, Rows::Restores, worker))
    }

    fn beat<'a>(
        &'a self,
        engine: &'a Engine,
        job: &'a Uuid,
        worker: &'a str,
        progress: u64,
    ) -> BoxFuture<'a, Result<Beat, StoreError>> {
        Box::pin(beat(engine, Rows::Restores, *job, worker, progress))
    }

    fn run<'a>(&'a self, engine: &'a Engine, id: Uuid, ctx: JobContext) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let result = work::bounded(engine, "the restore", work::run_restore(engine, id, &ctx.progress)).await;
            if let Ok(mut conn) = engine.db.get().await {
                let _ = diesel::update(restores::table.find(id))
                    .set(restores::bytes.eq(AtomicU64::load(&ctx.progress, Ordering::Relaxed) as i64))
                    .execute(&mut conn)
                    .await;
            }
            let to = match &result {
                Ok(()) => Outcome::Done(""),
                Err(e) => {
                    tracing::warn!(restore.id = %id, error = %e, "restore failed");
                    Outcome::Failed(e)
                }
            };
            finish(engine, Rows::Restores, id, &ctx.worker, to).await;
        })
    }

    /// A Redis restore stops the server for its swap: an interrupted one's
    /// service is started again.
    fn reap<'a>(&'a self, engine: &'a Engine) -> BoxFuture<'a, Result<usize, StoreError>> {
        Box::pin(async move {
            let reaped = reap(engine, Rows::Restores).await?;
            let mut conn = engine.db.get().await?;
            for id in &reaped {
                let Ok(service) = restores::table
                    .find(id)
                    .select(restores::service_id)
                    .first::<Uuid>(&mut conn)
                    .await
                else {
                    continue;
                };
                if let Ok(svc) = crate::services::load_any(engine, &mut conn, service).await {
                    if svc.row.desired == "running" {
                        let _ = engine.docker.start_container(&svc.container(engine)).await;
                    }
                }
            }
            Ok(reaped.len())
        })
    }
}

/// Restore drills: the backup restored into a throwaway container and counted.
pub struct DrillKind;

impl JobKind for DrillKind {
    type Job = Uuid;
    const NAME: &'static str = "drill";

    fn pool(&self, engine: &Engine) -> (&'static str, usize) {
        (POOL, engine.deploy.services.concurrency)
    }

    fn claim<'a>(&'a self, engine: &'a Engine, worker: &'a str) -> BoxFuture<'a, Result<Option<Uuid>, StoreError>> {
        Box::pin(claim(engine, Rows::Drills, worker))
    }

    fn beat<'a>(
        &'a self,
        engine: &'a Engine,
        job: &'a Uuid,
        worker: &'a str,
        progress: u64,
    ) -> BoxFuture<'a, Result<Beat, StoreError>> {
        Box::pin(beat(engine, Rows::Drills, *job, worker, progress))
    }

    fn run<'a>(&'a self, engine: &'a Engine, id: Uuid, ctx: JobContext) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let result = work::bounded(engine, "the drill", work::run_drill(engine, id)).await;
            let _ = engine
                .docker
                .remove_container(&work::drill_container(engine, id), true)
                .await;
            let to = match &result {
                Ok(counts) => Outcome::Done(counts),
                Err(e) => {
                    tracing::warn!(backup.id = %id, error = %e, "restore drill failed");
                    Outcome::Failed(e)
                }
            };
            finish(engine, Rows::Drills, id, &ctx.worker, to).await;
        })
    }

    /// An interrupted drill's throwaway container is removed.
    fn reap<'a>(&'a self, engine: &'a Engine) -> BoxFuture<'a, Result<usize, StoreError>> {
        Box::pin(async move {
            let reaped = reap(engine, Rows::Drills).await?;
            for id in &reaped {
                let _ = engine
                    .docker
                    .remove_container(&work::drill_container(engine, *id), true)
                    .await;
            }
            Ok(reaped.len())
        })
    }
}

/// Runs the reapers of backups, restores and drills once (what every worker does
/// every few seconds); the number of jobs failed as interrupted.
pub async fn reap_all(engine: &Engine) -> Result<usize, StoreError> {
    Ok(BackupKind.reap(engine).await? + RestoreKind.reap(engine).await? + DrillKind.reap(engine).await?)
}
