//! The deploy worker: slots that claim queued deployments from PostgreSQL (woken by
//! the Redis list), a heartbeat per running deployment, and a reaper that makes the
//! whole thing crash-safe across processes and restarts:
//! - a deployment whose worker stopped reporting (killed, crashed) is marked
//!   `failed` with reason `interrupted`, its container removed and the route put
//!   back on the live version;
//! - `queued` rows are pushed to Redis again if the list was lost;
//! - containers no deployment accounts for (labels are the truth) are removed.

use super::pipeline::{self, Job};
use super::status::{Status, ACTIVE};
use crate::db::schema::{applications, deployments};
use crate::error::StoreError;
use crate::ids::{AppId, DeploymentId};
use crate::Engine;
use diesel::prelude::*;
use diesel_async::scoped_futures::ScopedFutureExt;
use diesel_async::{AsyncConnection, RunQueryDsl};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const REAP_EVERY: Duration = Duration::from_secs(3);
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// Starts the worker: `concurrency` slots plus the reaper. Returns when `shutdown`
/// fires and the slots have finished what they were running (the caller bounds
/// how long it waits).
pub async fn run(engine: Engine, shutdown: CancellationToken) {
    let id = format!(
        "{}-{}-{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "berth".into()),
        std::process::id(),
        &crate::apps::random_token()[..8]
    );
    tracing::info!(worker = %id, slots = engine.deploy.concurrency, "deploy worker starting");
    // The network and proxy first (slots need them); keep retrying while Docker
    // is unreachable.
    loop {
        match crate::proxy::ensure(&engine).await {
            Ok(()) => {
                pipeline::sync_routes(&engine).await;
                break;
            }
            Err(e) => tracing::warn!(error = %e, "cannot set up the network and proxy yet; retrying in 5 s"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
    let reaper = tokio::spawn(reaper(engine.clone(), shutdown.clone()));
    let mut slots = Vec::new();
    for n in 0..engine.deploy.concurrency.max(1) {
        slots.push(tokio::spawn(slot(
            engine.clone(),
            format!("{id}/{n}"),
            shutdown.clone(),
        )));
    }
    for s in slots {
        let _ = s.await;
    }
    let _ = reaper.await;
}

async fn slot(engine: Engine, worker: String, shutdown: CancellationToken) {
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        match claim(&engine, &worker).await {
            Ok(Some(job)) => run_job(&engine, job, &worker).await,
            Ok(None) => {
                tokio::select! {
                    _ = wait_for_wakeup(&engine) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "claiming a deployment");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        }
    }
}

/// Blocks on the Redis list for up to a second (the list is only a wake-up; the
/// claim reads PostgreSQL, so a lost wake-up costs at most that second).
async fn wait_for_wakeup(engine: &Engine) {
    let popped = async {
        let mut c = engine.kv.conn().await?;
        redis::cmd("BRPOP")
            .arg(engine.kv.key(super::QUEUE))
            .arg(1)
            .query_async::<Option<(String, String)>>(&mut c)
            .await?;
        Ok::<_, StoreError>(())
    };
    if popped.await.is_err() {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[derive(QueryableByName)]
struct Claimed {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    application_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Text)]
    status: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    image: Option<String>,
}

/// Claims the oldest queued deployment of an application that has nothing in
/// progress (and no older queued one): one deployment per app at a time, in order.
/// `SKIP LOCKED` lets workers in several processes claim side by side; the partial
/// unique index is the last word if two ever raced.
pub(crate) async fn claim(engine: &Engine, worker: &str) -> Result<Option<Job>, StoreError> {
    let mut conn = engine.db.get().await?;
    let worker = worker.to_owned();
    let claimed = conn
        .transaction::<_, diesel::result::Error, _>(|conn| {
            async move {
                let rows: Vec<Claimed> = diesel::sql_query(
                    "WITH next AS (
                        SELECT d.id, d.rollback_of, a.source->>'type' AS kind
                        FROM deployments d JOIN applications a ON a.id = d.application_id
                        WHERE d.status = 'queued' AND NOT d.cancel_requested
                          AND NOT EXISTS (SELECT 1 FROM deployments x WHERE x.application_id = d.application_id
                                          AND x.status IN ('cloning','building','starting','health_checking','routing'))
                          AND NOT EXISTS (SELECT 1 FROM deployments y WHERE y.application_id = d.application_id
                                          AND y.status = 'queued' AND y.created_at < d.created_at)
                        ORDER BY d.created_at
                        LIMIT 1
                        FOR UPDATE OF d SKIP LOCKED
                    )
                    UPDATE deployments SET
                        status = CASE WHEN next.rollback_of IS NOT NULL THEN 'starting'
                                      WHEN next.kind = 'git' THEN 'cloning' ELSE 'building' END,
                        cloning_at = CASE WHEN next.rollback_of IS NULL AND next.kind = 'git' THEN now() END,
                        building_at = CASE WHEN next.rollback_of IS NULL AND next.kind <> 'git' THEN now() END,
                        starting_at = CASE WHEN next.rollback_of IS NOT NULL THEN now() END,
                        worker_id = $1, heartbeat_at = now()
                    FROM next WHERE deployments.id = next.id
                    RETURNING deployments.id, deployments.application_id, deployments.status, deployments.image",
                )
                .bind::<diesel::sql_types::Text, _>(&worker)
                .load(conn)
                .await?;
                Ok(rows.into_iter().next())
            }
            .scope_boxed()
        })
        .await;
    match claimed {
        Ok(Some(c)) => Ok(Some(Job {
            id: DeploymentId(c.id),
            app: AppId(c.application_id),
            status: Status::parse(&c.status).unwrap_or(Status::Cloning),
            image: c.image,
        })),
        Ok(None) => Ok(None),
        // Lost a race on the one-active-per-app index: someone else is deploying it.
        Err(e) if crate::accounts::is_unique_violation(&e, "deployments_one_active_per_app") => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Runs a job with its heartbeat beside it. The heartbeat also carries cancel
/// requests in, and notices when the deployment was taken away from this worker.
async fn run_job(engine: &Engine, job: Job, worker: &str) {
    tracing::info!(deployment.id = %job.id, worker, "deployment claimed");
    let cancel = CancellationToken::new();
    let beat = {
        let engine = engine.clone();
        let cancel = cancel.clone();
        let id = job.id;
        let worker = worker.to_owned();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(HEARTBEAT_EVERY).await;
                match heartbeat(&engine, id, &worker).await {
                    Ok(Some(false)) => {}
                    Ok(Some(true)) => cancel.cancel(),
                    Ok(None) => {
                        cancel.cancel();
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "heartbeat"),
                }
            }
        })
    };
    pipeline::run(engine, job, worker, cancel).await;
    beat.abort();
}

/// `Some(cancel_requested)` while this worker holds the deployment.
async fn heartbeat(engine: &Engine, id: DeploymentId, worker: &str) -> Result<Option<bool>, StoreError> {
    let mut conn = engine.db.get().await?;
    Ok(diesel::update(
        deployments::table
            .filter(deployments::id.eq(id.0))
            .filter(deployments::worker_id.eq(worker))
            .filter(deployments::status.eq_any(ACTIVE)),
    )
    .set(deployments::heartbeat_at.eq(diesel::dsl::now))
    .returning(deployments::cancel_requested)
    .get_result(&mut conn)
    .await
    .optional()?)
}

async fn reaper(engine: Engine, shutdown: CancellationToken) {
    let mut n: u64 = 0;
    loop {
        if let Err(e) = reap_interrupted(&engine).await {
            tracing::warn!(error = %e, "reaping interrupted deployments");
        }
        if let Err(e) = requeue(&engine).await {
            tracing::debug!(error = %e, "re-enqueueing queued deployments");
        }
        if n.is_multiple_of(5) {
            if let Err(e) = sweep_orphans(&engine).await {
                tracing::debug!(error = %e, "sweeping orphan containers");
            }
        }
        n += 1;
        tokio::select! {
            _ = tokio::time::sleep(REAP_EVERY) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Deployments whose worker stopped reporting: failed with reason `interrupted`,
/// their container removed, the route back on the live version.
pub async fn reap_interrupted(engine: &Engine) -> Result<usize, StoreError> {
    let mut conn = engine.db.get().await?;
    // A number from configuration, never input.
    let stale = format!("heartbeat_at < now() - interval '{} seconds'", engine.deploy.lease_secs);
    let reaped: Vec<(Uuid, Uuid, String)> = diesel::update(
        deployments::table
            .filter(deployments::status.eq_any(ACTIVE))
            .filter(diesel::dsl::sql::<diesel::sql_types::Bool>(&stale)),
    )
    .set((
        deployments::status.eq(Status::Failed.as_str()),
        deployments::reason.eq("interrupted: the worker running it stopped"),
        deployments::finished_at.eq(diesel::dsl::now),
    ))
    .returning((deployments::id, deployments::application_id, deployments::status))
    .get_results(&mut conn)
    .await?;
    for (id, app, _) in &reaped {
        tracing::warn!(deployment.id = %id, "deployment interrupted (its worker stopped); cleaning up");
        if let Ok(list) = super::runtime::list_managed(engine).await {
            for c in list.into_iter().filter(|c| c.deployment == Some(*id)) {
                super::runtime::stop_and_remove(engine, &c.name, Duration::from_secs(2)).await;
            }
        }
        pipeline::restore_route(engine, AppId(*app)).await;
        crate::logs::close(
            engine,
            AppId(*app),
            DeploymentId(*id),
            Some("==> interrupted: the worker running this deployment stopped; the live version kept serving"),
            Status::Failed,
        )
        .await;
        // The app's next queued deployment may run now: wake a slot.
        super::wake(engine, DeploymentId(*id)).await;
    }
    Ok(reaped.len())
}

/// Pushes wake-ups for queued rows when the Redis list is empty (it was flushed,
/// or Redis restarted without persistence).
async fn requeue(engine: &Engine) -> Result<(), StoreError> {
    let mut conn = engine.db.get().await?;
    let queued: Vec<Uuid> = deployments::table
        .filter(deployments::status.eq(Status::Queued.as_str()))
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

/// Removes this instance's containers that no deployment accounts for: not live,
/// not in progress, and past the drain window of the app's last change.
pub async fn sweep_orphans(engine: &Engine) -> Result<usize, StoreError> {
    let Ok(list) = super::runtime::list_managed(engine).await else {
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
        .filter(deployments::status.eq_any(ACTIVE))
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
        let (Some(app), Some(dep)) = (c.app, c.deployment) else {
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
            super::runtime::stop_and_remove(engine, &c.name, Duration::from_secs(5)).await;
            removed += 1;
        }
    }
    Ok(removed)
}

#[derive(QueryableByName)]
struct Age {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    application_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Double)]
    age: f64,
}
