//! Deployments as a kind of job on the common runner ([`crate::jobs`]): how one
//! is claimed (one per application at a time, in order), beaten, run (the
//! pipeline) and reaped when its worker dies (failed as `interrupted`, its
//! container removed, the route back on the live version), plus the upkeep that
//! keeps the Redis wake-ups and the containers in line with the rows.

use super::pipeline;
use super::transition::{transition, Holder, Move, StaleRow, TransitionError};
use super::DeployJob;
use crate::db::schema::{applications, deployments};
use crate::docker::{self, LABEL_APP, LABEL_DEPLOYMENT, LABEL_INSTANCE};
use crate::error::StoreError;
use crate::ids::{AppId, DeploymentId};
use crate::jobs::{Beat, JobContext, JobKind};
use crate::Engine;
use diesel::prelude::*;
use diesel::sql_types::{Nullable, Text, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, RunQueryDsl};
use futures::future::BoxFuture;
use lifecycle::DeploymentStatus as Status;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use uuid::Uuid;

/// Deployments on the job runner.
#[derive(Default)]
pub struct DeployKind {
    reaps: AtomicU64,
    /// The network and the proxy are set up (nothing is claimed before).
    ready: AtomicBool,
    /// When setting them up was last tried (retried every 5 s while Docker is away).
    tried: std::sync::Mutex<Option<std::time::Instant>>,
}

impl DeployKind {
    /// Sets up the network and the managed proxy, then puts every app's route
    /// back from the database (the files are derived state and may be stale).
    async fn prepare(&self, engine: &Engine) {
        if AtomicBool::load(&self.ready, Ordering::Relaxed) {
            return;
        }
        {
            let mut tried = self.tried.lock().expect("not poisoned");
            if tried.is_some_and(|t| t.elapsed() < Duration::from_secs(5)) {
                return;
            }
            *tried = Some(std::time::Instant::now());
        }
        match crate::proxy::ensure(engine).await {
            Ok(()) => {
                pipeline::sync_routes(engine).await;
                self.ready.store(true, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(error = %e, "cannot set up the network and proxy yet; retrying in 5 s"),
        }
    }
}

#[derive(QueryableByName)]
struct Candidate {
    #[diesel(sql_type = SqlUuid)]
    id: DeploymentId,
    #[diesel(sql_type = SqlUuid)]
    application_id: AppId,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    rollback_of: Option<Uuid>,
    #[diesel(sql_type = Nullable<Text>)]
    kind: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    image: Option<String>,
}

/// Claims a queued deployment of an application that has nothing in progress
/// (and no older queued one): one deployment per app at a time, in order. Of
/// those, the organization with the fewest deployments running goes first, so
/// one organization's long queue does not starve another's; then the oldest. `SKIP LOCKED` lets workers in several processes claim side by side;
/// the partial unique index is the last word if two ever raced.
pub async fn claim(engine: &Engine, worker: &str) -> Result<Option<DeployJob>, StoreError> {
    let mut conn = engine.db.get().await?;
    let claimed = conn
        .transaction::<_, TransitionError, _>(async |conn| {
            let rows: Vec<Candidate> = diesel::sql_query(
                "SELECT d.id, d.application_id, d.rollback_of, a.source->>'type' AS kind, d.image
                 FROM deployments d JOIN applications a ON a.id = d.application_id
                 WHERE d.status = 'queued' AND NOT d.cancel_requested
                   AND NOT EXISTS (SELECT 1 FROM deployments x WHERE x.application_id = d.application_id
                                   AND x.status IN ('cloning','building','starting','health_checking','routing'))
                   AND NOT EXISTS (SELECT 1 FROM deployments y WHERE y.application_id = d.application_id
                                   AND y.status = 'queued' AND y.created_at < d.created_at)
                 ORDER BY (SELECT count(*) FROM deployments z WHERE z.organization_id = d.organization_id
                           AND z.status IN ('cloning','building','starting','health_checking','routing')),
                          d.created_at
                 LIMIT 1
                 FOR UPDATE OF d SKIP LOCKED",
            )
            .load(conn)
            .await?;
            let Some(c) = rows.into_iter().next() else {
                return Ok(None);
            };
            // Rollbacks reuse an image; image sources are pulled in `building`.
            let first = match (c.rollback_of, c.kind.as_deref()) {
                (Some(_), _) => Status::Starting,
                (None, Some("git")) => Status::Cloning,
                (None, _) => Status::Building,
            };
            transition(
                conn,
                Move::new(c.id, Status::Queued, first, Holder::Anyone).claim_for(worker),
            )
            .await?;
            Ok(Some(DeployJob {
                id: c.id,
                app: c.application_id,
                status: first,
                image: c.rollback_of.and(c.image),
            }))
        })
        .await;
    match claimed {
        Ok(job) => {
            if let Some(j) = &job {
                crate::events::deployment_changed(engine, j.id.0).await;
            }
            Ok(job)
        }
        // Lost a race on the one-active-per-app index, or the row moved: someone
        // else is deploying it.
        Err(TransitionError::Lost) => Ok(None),
        Err(TransitionError::Store(StoreError::Db(e)))
            if crate::accounts::is_unique_violation(&e, "deployments_one_active_per_app") =>
        {
            Ok(None)
        }
        Err(TransitionError::Store(e)) => Err(e),
        Err(e @ TransitionError::Illegal(_)) => Err(StoreError::Corrupt(e.to_string())),
    }
}

impl JobKind for DeployKind {
    type Job = DeployJob;
    const NAME: &'static str = "deployment";

    fn pool(&self, engine: &Engine) -> (&'static str, usize) {
        ("deploy", engine.deploy.concurrency)
    }

    fn wake_list(&self) -> Option<&'static str> {
        Some(super::QUEUE)
    }

    fn claim<'a>(
        &'a self,
        engine: &'a Engine,
        worker: &'a str,
    ) -> BoxFuture<'a, Result<Option<DeployJob>, StoreError>> {
        Box::pin(async move {
            if !AtomicBool::load(&self.ready, Ordering::Relaxed) {
                return Ok(None);
            }
            claim(engine, worker).await
        })
    }

    fn tick<'a>(&'a self, engine: &'a Engine) -> BoxFuture<'a, ()> {
        Box::pin(self.prepare(engine))
    }

    fn beat<'a>(
        &'a self,
        engine: &'a Engine,
        job: &'a DeployJob,
        worker: &'a str,
        _progress: u64,
    ) -> BoxFuture<'a, Result<Beat, StoreError>> {
        Box::pin(async move {
            let mut conn = engine.db.get().await?;
            let cancel: Option<bool> = diesel::update(
                deployments::table
                    .filter(deployments::id.eq(job.id))
                    .filter(deployments::worker_id.eq(worker))
                    .filter(deployments::status.eq_any(Status::ACTIVE)),
            )
            .set(deployments::heartbeat_at.eq(diesel::dsl::now))
            .returning(deployments::cancel_requested)
            .get_result(&mut conn)
            .await
            .optional()?;
            Ok(match cancel {
                Some(cancel) => Beat::Held { cancel },
                None => Beat::Lost,
            })
        })
    }

    fn run<'a>(&'a self, engine: &'a Engine, job: DeployJob, ctx: JobContext) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            pipeline::run(engine, job, &ctx).await;
        })
    }

    fn reap<'a>(&'a self, engine: &'a Engine) -> BoxFuture<'a, Result<usize, StoreError>> {
        Box::pin(async move {
            let n = reap_interrupted(engine).await?;
            if let Err(e) = requeue(engine).await {
                tracing::debug!(error = %e, "re-enqueueing queued deployments");
            }
            if self.reaps.fetch_add(1, Ordering::Relaxed).is_multiple_of(5) {
                if let Err(e) = sweep_orphans(engine).await {
                    tracing::debug!(error = %e, "sweeping orphan containers");
                }
            }
            Ok(n)
        })
    }
}

const INTERRUPTED: &str = "interrupted: the worker running it stopped";

/// Deployments whose worker stopped reporting: failed with reason `interrupted`,
/// their container removed, the route back on the live version.
pub async fn reap_interrupted(engine: &Engine) -> Result<usize, StoreError> {
    let mut conn = engine.db.get().await?;
    let lease = engine.deploy.lease_secs;
    let stale: Vec<StaleRow> = diesel::sql_query(
        "SELECT id, application_id, status FROM deployments
         WHERE status IN ('cloning','building','starting','health_checking','routing')
           AND heartbeat_at < now() - make_interval(secs => $1)",
    )
    .bind::<diesel::sql_types::Double, _>(lease as f64)
    .load(&mut conn)
    .await?;
    let mut reaped = 0;
    for row in stale {
        let id = DeploymentId(row.id);
        let m = Move::new(id, row.status, Status::Failed, Holder::Stale { lease_secs: lease }).note(INTERRUPTED);
        match transition(&mut conn, m).await {
            Ok(()) => crate::events::deployment_changed(engine, row.id).await,
            // It beat (or finished) in between: alive after all.
            Err(TransitionError::Lost) => continue,
            Err(TransitionError::Store(e)) => return Err(e),
            Err(e @ TransitionError::Illegal(_)) => return Err(StoreError::Corrupt(e.to_string())),
        }
        reaped += 1;
        let app = AppId(row.application_id);
        tracing::warn!(deployment.id = %id, "deployment interrupted (its worker stopped); cleaning up");
        // The route first (the row no longer says `routing`, so the live
        // version is chosen), so no request goes to a container on its way out.
        pipeline::restore_route(engine, app).await;
        let dep = id.to_string();
        let filter = [
            (LABEL_INSTANCE, Some(engine.deploy.instance.as_str())),
            (LABEL_DEPLOYMENT, Some(dep.as_str())),
        ];
        if let Ok(list) = engine.docker.list_containers(&filter).await {
            for c in list {
                docker::stop_and_remove(&*engine.docker, &c.name, Duration::from_secs(2)).await;
            }
        }
        let _ = tokio::fs::remove_dir_all(engine.deploy.data_dir.join("work").join(id.0.simple().to_string())).await;
        crate::logs::close(
            engine,
            app,
            id,
            Some("==> interrupted: the worker running this deployment stopped; the live version kept serving"),
            Status::Failed,
        )
        .await;
        // The app's next queued deployment may run now: wake a slot.
        super::wake(engine, id).await;
    }
    Ok(reaped)
}

/// Pushes wake-ups for queued rows when the Redis list is empty (it was flushed,
/// or Redis restarted without persistence).
async fn requeue(engine: &Engine) -> Result<(), StoreError> {
    let mut conn = engine.db.get().await?;
    let queued: Vec<DeploymentId> = deployments::table
        .filter(deployments::status.eq(Status::Queued))
        .order(deployments::created_at.asc())
        .select(deployments::id)
        .load(&mut conn)
        .await?;
    if queued.is_empty() {
        return Ok(());
    }
    let mut kv = engine.kv.conn().await?;
    let len: i64 = redis::cmd("LLEN")
        .arg(engine.kv.key(super::QUEUE))
        .query_async(&mut kv)
        .await?;
    if len == 0 {
        let mut cmd = redis::cmd("LPUSH");
        cmd.arg(engine.kv.key(super::QUEUE));
        for id in &queued {
            cmd.arg(id.to_string());
        }
        cmd.query_async::<()>(&mut kv).await?;
        tracing::info!(count = queued.len(), "re-enqueued queued deployments");
    }
    Ok(())
}

#[derive(QueryableByName)]
struct Age {
    #[diesel(sql_type = SqlUuid)]
    application_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Double)]
    age: f64,
}

/// Removes this instance's app containers that no deployment accounts for: not
/// live, not in progress, and past the drain window of the app's last change.
pub async fn sweep_orphans(engine: &Engine) -> Result<usize, StoreError> {
    let filter = [
        (LABEL_INSTANCE, Some(engine.deploy.instance.as_str())),
        (LABEL_APP, None),
    ];
    let Ok(list) = engine.docker.list_containers(&filter).await else {
        return Ok(0);
    };
    if list.is_empty() {
        return Ok(0);
    }
    let mut conn = engine.db.get().await?;
    let apps: HashMap<Uuid, (Option<Uuid>, serde_json::Value)> = applications::table
        .select((
            applications::id,
            applications::live_deployment_id,
            applications::runtime,
        ))
        .load::<(Uuid, Option<Uuid>, serde_json::Value)>(&mut conn)
        .await?
        .into_iter()
        .map(|(id, live, rt)| (id, (live, rt)))
        .collect();
    let active: HashSet<Uuid> = deployments::table
        .filter(deployments::status.eq_any(Status::ACTIVE))
        .select(deployments::id)
        .load::<Uuid>(&mut conn)
        .await?
        .into_iter()
        .collect();
    let settled: HashMap<Uuid, f64> = diesel::sql_query(
        "SELECT application_id, EXTRACT(EPOCH FROM now() - max(finished_at))::float8 AS age
         FROM deployments WHERE finished_at IS NOT NULL GROUP BY application_id",
    )
    .load::<Age>(&mut conn)
    .await?
    .into_iter()
    .map(|a| (a.application_id, a.age))
    .collect();
    let mut removed = 0;
    for c in list {
        let (Some(app), Some(dep)) = (
            c.label(LABEL_APP).and_then(|s| s.parse::<Uuid>().ok()),
            c.label(LABEL_DEPLOYMENT).and_then(|s| s.parse::<Uuid>().ok()),
        ) else {
            continue;
        };
        let orphan = match apps.get(&app) {
            None => true,
            Some((live, rt)) => {
                let drain = rt.get("drain_secs").and_then(|v| v.as_u64()).unwrap_or(10) as f64;
                Some(dep) != *live
                    && !active.contains(&dep)
                    && settled
                        .get(&app)
                        .is_none_or(|age| *age > drain + engine.deploy.lease_secs as f64)
            }
        };
        if orphan {
            tracing::info!(container = %c.name, "removing orphan container");
            docker::stop_and_remove(&*engine.docker, &c.name, Duration::from_secs(5)).await;
            removed += 1;
        }
    }
    Ok(removed)
}
