//! Backups, restores and restore drills as kinds of job on the common runner
//! ([`crate::jobs`]). They share one pool of slots (each streams a dump through
//! this process), and one of each kind runs per service at a time. A job whose
//! worker stops beating is failed as interrupted by any worker's reaper, and
//! what it left is cleaned up (its multipart upload aborted, a drill's container
//! removed, a Redis service stopped for its swap started again); nothing reruns
//! on its own.

use super::transition::{drill_transition, transition, DrillMove, JobMove, JobTable};
use super::{s3, work};
use crate::db::schema::{backups, restores};
use crate::error::StoreError;
use crate::jobs::{Beat, Holder, JobContext, JobKind, TransitionError};
use crate::Engine;
use chrono::Utc;
use diesel::prelude::*;
use diesel::sql_types::Uuid as SqlUuid;
use diesel_async::{AsyncConnection, RunQueryDsl};
use futures::future::BoxFuture;
use lifecycle::{DrillStatus, JobStatus};
use std::sync::atomic::{AtomicU64, Ordering};
use uuid::Uuid;

const POOL: &str = "backup";
const INTERRUPTED: &str = "interrupted: the worker running it stopped before it finished";

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

/// Which kind of job a claim takes.
#[derive(Clone, Copy)]
enum Claim {
    Backup,
    Restore,
    Drill,
}

/// Selects one candidate (`select` locks it with `SKIP LOCKED`) and moves it to
/// running for `worker`, in one transaction. Losing a race is "nothing to claim".
async fn claim_one(engine: &Engine, select: &'static str, kind: Claim, worker: &str) -> Result<Option<Uuid>, StoreError> {
    let mut conn = engine.db.get().await?;
    let claimed = conn
        .transaction::<_, TransitionError, _>(async |conn| {
            let Some(Id { id }) = diesel::sql_query(select).get_result::<Id>(conn).await.optional()? else {
                return Ok(None);
            };
            match kind {
                Claim::Backup => {
                    let m = JobMove::new(JobTable::Backups, id, JobStatus::Queued, JobStatus::Running, Holder::Anyone);
                    transition(conn, m.claim_for(worker)).await?
                }
                Claim::Restore => {
                    let m = JobMove::new(JobTable::Restores, id, JobStatus::Queued, JobStatus::Running, Holder::Anyone);
                    transition(conn, m.claim_for(worker)).await?
                }
                Claim::Drill => {
                    let m = DrillMove::new(id, Some(DrillStatus::Queued), DrillStatus::Running, Holder::Anyone);
                    drill_transition(conn, m.claim_for(worker)).await?
                }
            }
            Ok(Some(id))
        })
        .await;
    match claimed {
        Ok(id) => Ok(id),
        // Another worker started a job on the same service in between.
        Err(TransitionError::Lost) => Ok(None),
        Err(e) if unique_violation(&e) => Ok(None),
        Err(TransitionError::Store(e)) => Err(e),
        Err(e @ TransitionError::Illegal(_)) => Err(StoreError::Corrupt(e.to_string())),
    }
}

/// A job's end, recorded through the transition (logged when someone else moved it).
async fn finish(engine: &Engine, m: JobMove<'_>) {
    let Ok(mut conn) = engine.db.get().await else { return };
    if let Err(e) = transition(&mut conn, m).await {
        tracing::warn!(id = %m.id, error = %e, "recording a backup job's end");
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
        Box::pin(claim_one(
            engine,
            "SELECT b.id FROM backups b WHERE b.status = 'queued'
               AND NOT EXISTS (SELECT 1 FROM backups o WHERE o.status = 'running' AND o.service_id = b.service_id)
               AND NOT EXISTS (SELECT 1 FROM restores r WHERE r.status = 'running' AND r.service_id = b.service_id)
             ORDER BY b.created_at LIMIT 1 FOR UPDATE SKIP LOCKED",
            Claim::Backup,
            worker,
        ))
    }

    fn beat<'a>(&'a self, engine: &'a Engine, job: &'a Uuid, worker: &'a str, progress: u64) -> BoxFuture<'a, Result<Beat, StoreError>> {
        Box::pin(async move {
            let mut conn = engine.db.get().await?;
            let n = diesel::update(
                backups::table
                    .filter(backups::id.eq(job))
                    .filter(backups::worker_id.eq(worker))
                    .filter(backups::status.eq(JobStatus::Running)),
            )
            .set((
                backups::heartbeat_at.eq(diesel::dsl::now),
                backups::size_bytes.eq(progress as i64),
            ))
            .execute(&mut conn)
            .await?;
            Ok(if n == 1 { Beat::Held { cancel: false } } else { Beat::Lost })
        })
    }

    fn run<'a>(&'a self, engine: &'a Engine, id: Uuid, ctx: JobContext) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let result = work::run_backup(engine, id, &ctx.progress).await;
            work::finish_backup(engine, id, &ctx.worker, result).await;
        })
    }

    fn reap<'a>(&'a self, engine: &'a Engine) -> BoxFuture<'a, Result<usize, StoreError>> {
        Box::pin(async move {
            let lease = engine.deploy.lease_secs;
            let mut conn = engine.db.get().await?;
            let stale: Vec<Id> = diesel::sql_query(
                "SELECT id FROM backups WHERE status = 'running'
                   AND heartbeat_at < now() - make_interval(secs => $1)",
            )
            .bind::<diesel::sql_types::Double, _>(lease as f64)
            .load(&mut conn)
            .await?;
            let mut n = 0;
            for Id { id } in stale {
                let m = JobMove::new(JobTable::Backups, id, JobStatus::Running, JobStatus::Failed, Holder::Stale { lease_secs: lease })
                    .error(INTERRUPTED);
                if transition(&mut conn, m).await.is_err() {
                    continue;
                }
                n += 1;
                tracing::warn!(backup.id = %id, "backup interrupted (its worker stopped)");
                type Row = (Uuid, Uuid, Option<String>, Option<String>);
                let Ok((org, destination, key, upload)) = backups::table
                    .find(id)
                    .select((backups::organization_id, backups::destination_id, backups::object_key, backups::upload_id))
                    .first::<Row>(&mut conn)
                    .await
                else {
                    continue;
                };
                let (Some(key), Some(upload)) = (key, upload) else { continue };
                if let Ok(t) = super::target(engine, &mut conn, org, destination).await {
                    if let Ok(bucket) = t.bucket() {
                        if let Err(e) = bucket.abort_upload(&key, &upload).await {
                            tracing::warn!(key, error = %s3::describe(&e), "aborting an interrupted backup's upload");
                        }
                    }
                }
            }
            Ok(n)
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
        Box::pin(claim_one(
            engine,
            "SELECT r.id FROM restores r WHERE r.status = 'queued'
               AND NOT EXISTS (SELECT 1 FROM restores o WHERE o.status = 'running' AND o.service_id = r.service_id)
               AND NOT EXISTS (SELECT 1 FROM backups b WHERE b.status = 'running' AND b.service_id = r.service_id)
             ORDER BY r.created_at LIMIT 1 FOR UPDATE SKIP LOCKED",
            Claim::Restore,
            worker,
        ))
    }

    fn beat<'a>(&'a self, engine: &'a Engine, job: &'a Uuid, worker: &'a str, progress: u64) -> BoxFuture<'a, Result<Beat, StoreError>> {
        Box::pin(async move {
            let mut conn = engine.db.get().await?;
            let n = diesel::update(
                restores::table
                    .filter(restores::id.eq(job))
                    .filter(restores::worker_id.eq(worker))
                    .filter(restores::status.eq(JobStatus::Running)),
            )
            .set((restores::heartbeat_at.eq(diesel::dsl::now), restores::bytes.eq(progress as i64)))
            .execute(&mut conn)
            .await?;
            Ok(if n == 1 { Beat::Held { cancel: false } } else { Beat::Lost })
        })
    }

    fn run<'a>(&'a self, engine: &'a Engine, id: Uuid, ctx: JobContext) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let result = work::run_restore(engine, id, &ctx.progress).await;
            if let Err(e) = &result {
                tracing::warn!(restore.id = %id, error = %e, "restore failed");
            }
            if let Ok(mut conn) = engine.db.get().await {
                let _ = diesel::update(restores::table.find(id))
                    .set(restores::bytes.eq(AtomicU64::load(&ctx.progress, Ordering::Relaxed) as i64))
                    .execute(&mut conn)
                    .await;
            }
            let (to, error) = match &result {
                Ok(()) => (JobStatus::Succeeded, None),
                Err(e) => (JobStatus::Failed, Some(e.as_str())),
            };
            let mut m = JobMove::new(JobTable::Restores, id, JobStatus::Running, to, Holder::Worker(&ctx.worker));
            m.error = error;
            finish(engine, m).await;
        })
    }

    fn reap<'a>(&'a self, engine: &'a Engine) -> BoxFuture<'a, Result<usize, StoreError>> {
        Box::pin(async move {
            let lease = engine.deploy.lease_secs;
            let mut conn = engine.db.get().await?;
            let stale: Vec<Id> = diesel::sql_query(
                "SELECT id FROM restores WHERE status = 'running'
                   AND heartbeat_at < now() - make_interval(secs => $1)",
            )
            .bind::<diesel::sql_types::Double, _>(lease as f64)
            .load(&mut conn)
            .await?;
            let mut n = 0;
            for Id { id } in stale {
                let m = JobMove::new(JobTable::Restores, id, JobStatus::Running, JobStatus::Failed, Holder::Stale { lease_secs: lease })
                    .error(INTERRUPTED);
                if transition(&mut conn, m).await.is_err() {
                    continue;
                }
                n += 1;
                tracing::warn!(restore.id = %id, "restore interrupted (its worker stopped)");
                // A Redis restore stops the server for its swap: bring it back.
                let Ok(service) = restores::table.find(id).select(restores::service_id).first::<Uuid>(&mut conn).await else {
                    continue;
                };
                if let Ok(svc) = crate::services::load_any(engine, &mut conn, service).await {
                    if svc.row.desired == "running" {
                        let _ = engine.docker.start_container(&svc.container(engine)).await;
                    }
                }
            }
            Ok(n)
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
        Box::pin(claim_one(
            engine,
            "SELECT id FROM backups WHERE drill_status = 'queued'
             ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED",
            Claim::Drill,
            worker,
        ))
    }

    fn beat<'a>(&'a self, engine: &'a Engine, job: &'a Uuid, worker: &'a str, _progress: u64) -> BoxFuture<'a, Result<Beat, StoreError>> {
        Box::pin(async move {
            let mut conn = engine.db.get().await?;
            let n = diesel::update(
                backups::table
                    .filter(backups::id.eq(job))
                    .filter(backups::drill_worker_id.eq(worker))
                    .filter(backups::drill_status.eq(DrillStatus::Running)),
            )
            .set(backups::drill_heartbeat_at.eq(diesel::dsl::now))
            .execute(&mut conn)
            .await?;
            Ok(if n == 1 { Beat::Held { cancel: false } } else { Beat::Lost })
        })
    }

    fn run<'a>(&'a self, engine: &'a Engine, id: Uuid, ctx: JobContext) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let result = work::run_drill(engine, id).await;
            let _ = engine.docker.remove_container(&work::drill_container(engine, id), true).await;
            if let Err(e) = &result {
                tracing::warn!(backup.id = %id, error = %e, "restore drill failed");
            }
            let (to, detail) = match &result {
                Ok(d) => (DrillStatus::Verified, d.as_str()),
                Err(e) => (DrillStatus::Failed, e.as_str()),
            };
            let m = DrillMove::new(id, Some(DrillStatus::Running), to, Holder::Worker(&ctx.worker)).detail(detail);
            if let Ok(mut conn) = engine.db.get().await {
                if let Err(e) = drill_transition(&mut conn, m).await {
                    tracing::warn!(backup.id = %id, error = %e, "recording a drill's end");
                }
            }
        })
    }

    fn reap<'a>(&'a self, engine: &'a Engine) -> BoxFuture<'a, Result<usize, StoreError>> {
        Box::pin(async move {
            let lease = engine.deploy.lease_secs;
            let mut conn = engine.db.get().await?;
            let stale: Vec<Id> = diesel::sql_query(
                "SELECT id FROM backups WHERE drill_status = 'running'
                   AND drill_heartbeat_at < now() - make_interval(secs => $1)",
            )
            .bind::<diesel::sql_types::Double, _>(lease as f64)
            .load(&mut conn)
            .await?;
            let mut n = 0;
            for Id { id } in stale {
                let m = DrillMove::new(id, Some(DrillStatus::Running), DrillStatus::Failed, Holder::Stale { lease_secs: lease })
                    .detail(INTERRUPTED);
                if drill_transition(&mut conn, m).await.is_err() {
                    continue;
                }
                n += 1;
                tracing::warn!(backup.id = %id, "restore drill interrupted (its worker stopped)");
                let _ = engine.docker.remove_container(&work::drill_container(engine, id), true).await;
            }
            Ok(n)
        })
    }
}

/// Runs the reapers of backups, restores and drills once (what every worker does
/// every few seconds); the number of jobs failed as interrupted.
pub async fn reap_all(engine: &Engine) -> Result<usize, StoreError> {
    Ok(BackupKind.reap(engine).await? + RestoreKind.reap(engine).await? + DrillKind.reap(engine).await?)
}
