//! What a new live deployment leaves behind: the containers it replaced (drained,
//! then stopped and removed) and images beyond the rollback window.

use crate::db::schema::deployments;
use crate::docker::{LABEL_APP, LABEL_DEPLOYMENT, LABEL_INSTANCE};
use crate::error::StoreError;
use crate::ids::{AppId, DeploymentId};
use crate::Engine;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use lifecycle::DeploymentStatus as Status;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// After the drain time, retires the app's containers that neither serve nor
/// belong to a deployment in progress, unless a newer deployment of the app went
/// live meanwhile: that one's retirement, a drain time after it, takes these
/// containers too. So a burst of redeploys ends its replaced containers once,
/// after the burst, instead of among its container starts (a container's end
/// and a start on the same small host delay every app's requests; measured in
/// docs/BENCHMARKS.md, "Retirement after a burst"). A retirement falling due
/// [`MAX_DEFER`] or more after the first one so left runs all the same, so a
/// steady stream of redeploys still ends what it replaced.
pub(crate) fn after_go_live(engine: &Engine, app: AppId, went_live: DeploymentId, drain: Duration) {
    let engine = engine.clone();
    tokio::spawn(async move {
        tokio::time::sleep(drain).await;
        if superseded(&engine, app, went_live).await && defer(app, Instant::now()) {
            tracing::debug!(app.id = %app, "retirement left to the newer live deployment");
            return;
        }
        retire(&engine, app, drain).await;
    });
}

/// How long after the first retirement left to a newer deployment the app's
/// next one due runs regardless, while newer deployments keep going live.
const MAX_DEFER: Duration = Duration::from_secs(30);

/// Apps whose retirement was left to a newer deployment, since when. In this
/// process, as [`RETIRING`]: a deployment's retirement runs in the worker that
/// made it live, and a newer one made live by another replica is retired there.
static DEFERRED: std::sync::LazyLock<Mutex<HashMap<AppId, Instant>>> = std::sync::LazyLock::new(Default::default);

/// Whether the app's retirement may wait for its newer live deployment's: yes
/// until the first such wait is [`MAX_DEFER`] old.
fn defer(app: AppId, now: Instant) -> bool {
    let mut deferred = DEFERRED.lock().expect("deferral registry");
    let since = *deferred.entry(app).or_insert(now);
    if now.duration_since(since) < MAX_DEFER {
        return true;
    }
    deferred.remove(&app);
    false
}

/// Whether another deployment than `went_live` is the app's live one now (a
/// newer one: a rollback is a new deployment too). An app with none (stopped)
/// or a failed read is retired as usual.
async fn superseded(engine: &Engine, app: AppId, went_live: DeploymentId) -> bool {
    let Ok(mut conn) = engine.db.get().await else {
        return false;
    };
    matches!(super::live_of(&mut conn, app).await, Ok(Some(live)) if live != went_live)
}

/// Apps with a retirement running in this process, and whether another was
/// asked for meanwhile. Twenty redeploys in a row ask twenty times; one
/// retirement runs, and once more if asked while it ran, so no two work the
/// same list (each would stop, and then fail to remove, what the other has).
static RETIRING: std::sync::LazyLock<Mutex<HashMap<AppId, bool>>> = std::sync::LazyLock::new(Default::default);

/// One retirement per app at a time: in this process through [`RETIRING`],
/// across replicas through a PostgreSQL advisory lock on the app.
pub(crate) async fn retire(engine: &Engine, app: AppId, grace: Duration) {
    {
        let mut busy = RETIRING.lock().expect("retirement registry");
        if let Some(again) = busy.get_mut(&app) {
            *again = true;
            return;
        }
        busy.insert(app, false);
    }
    DEFERRED.lock().expect("deferral registry").remove(&app);
    loop {
        retire_once(engine, app, grace).await;
        let mut busy = RETIRING.lock().expect("retirement registry");
        if busy.get(&app) == Some(&true) {
            busy.insert(app, false);
            continue;
        }
        busy.remove(&app);
        return;
    }
}

async fn retire_once(engine: &Engine, app: AppId, grace: Duration) {
    // Across replicas: a lock held on one connection for the retirement (it
    // is released when the connection returns, or closes with a crash).
    let Ok(mut lock) = engine.db.get().await else { return };
    let key = format!("retire:{app}");
    if diesel::sql_query("SELECT pg_advisory_lock(hashtextextended($1, 7274))")
        .bind::<diesel::sql_types::Text, _>(&key)
        .execute(&mut lock)
        .await
        .is_err()
    {
        return;
    }
    retire_old(engine, app, grace).await;
    let _ = diesel::sql_query("SELECT pg_advisory_unlock(hashtextextended($1, 7274))")
        .bind::<diesel::sql_types::Text, _>(&key)
        .execute(&mut lock)
        .await;
}

/// Ends and removes the app's containers that are not live and not in progress:
/// their stop signal (SIGTERM unless the image says otherwise) to each in turn,
/// [`SIGNAL_PACE`] apart, each then given the whole `grace` to end; then, one
/// after another, SIGKILL for any still running, and removal.
///
/// One after another because a container's end is kernel work (its processes,
/// network namespace and cgroup torn down) that takes every core of a small host
/// for tens of milliseconds when several end together, stalling the requests of
/// every other container: three busybox servers removed together delayed a
/// neighbour's requests by up to 22 ms, one after another by up to 9 ms
/// (docs/BENCHMARKS.md, "The rollout tail, re-examined").
pub(crate) async fn retire_old(engine: &Engine, app: AppId, grace: Duration) {
    let keep = match keepers(engine, app).await {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(error = %e, "reading live deployments");
            return;
        }
    };
    let app_label = app.to_string();
    let filter = [
        (LABEL_INSTANCE, Some(engine.deploy.instance.as_str())),
        (LABEL_APP, Some(app_label.as_str())),
    ];
    let Ok(list) = engine.docker.list_containers(&filter).await else {
        return;
    };
    let doomed: Vec<String> = list
        .into_iter()
        .filter(|c| {
            !c.label(LABEL_DEPLOYMENT)
                .and_then(|d| d.parse().ok())
                .is_some_and(|d| keep.contains(&d))
        })
        .map(|c| c.name)
        .collect();
    if doomed.is_empty() {
        return;
    }
    tracing::info!(app.id = %app, containers = ?doomed, "retiring replaced containers");
    let grace = grace.max(Duration::from_secs(1));
    futures::future::join_all(doomed.iter().enumerate().map(|(i, name)| async move {
        tokio::time::sleep(SIGNAL_PACE * i as u32).await;
        if let Err(e) = engine.docker.terminate_container(name).await {
            tracing::warn!(error = %e, container = %name, "asking a replaced container to stop");
        }
        // Done waiting when it ends, or when the grace is over.
        let _ = tokio::time::timeout(grace, engine.docker.wait_container(name)).await;
    }))
    .await;
    for name in &doomed {
        // A forced removal: SIGKILL for what ignored the stop signal, then the
        // removal, in one call (a separate `stop` first would cost another
        // round of `runc kill`, measured in docs/BENCHMARKS.md).
        if let Err(e) = engine.docker.remove_container(name, false).await {
            tracing::warn!(error = %e, container = %name, "removing a replaced container");
        }
    }
}

/// The gap between two replaced containers' stop signals: those that stop on
/// it end apart, as those killed at their removal do (a burst's retirement can
/// hold twenty).
const SIGNAL_PACE: Duration = Duration::from_millis(100);

async fn keepers(engine: &Engine, app: AppId) -> Result<HashSet<DeploymentId>, StoreError> {
    let mut conn = engine.db.get().await?;
    let mut keep: HashSet<DeploymentId> = deployments::table
        .filter(deployments::application_id.eq(app))
        .filter(deployments::status.eq_any(Status::ACTIVE))
        .select(deployments::id)
        .load::<DeploymentId>(&mut conn)
        .await?
        .into_iter()
        .collect();
    if let Some(live) = super::live_of(&mut conn, app).await? {
        keep.insert(live);
    }
    Ok(keep)
}

/// Keeps the images of the newest `keep_images` deployments that went live (and
/// the live one); removes older `berth/<app>:*` images and marks them pruned.
pub(crate) async fn prune_images(engine: &Engine, app: AppId) {
    let result = async {
        let mut conn = engine.db.get().await?;
        let live = super::live_of(&mut conn, app).await?;
        let rows: Vec<(DeploymentId, Option<String>)> = deployments::table
            .filter(deployments::application_id.eq(app))
            .filter(deployments::status.eq_any([Status::Running, Status::Superseded]))
            .filter(deployments::image_pruned.eq(false))
            .filter(deployments::image.is_not_null())
            .order(deployments::created_at.desc())
            .select((deployments::id, deployments::image))
            .load(&mut conn)
            .await?;
        let mut kept: Vec<String> = Vec::new();
        let mut doomed: Vec<String> = Vec::new();
        for (id, image) in rows {
            let Some(image) = image else { continue };
            if !image.starts_with("berth/") {
                continue;
            }
            if kept.contains(&image) || Some(id) == live {
                if !kept.contains(&image) {
                    kept.push(image);
                }
                continue;
            }
            if kept.len() < engine.deploy.keep_images {
                kept.push(image);
            } else if !doomed.contains(&image) {
                doomed.push(image);
            }
        }
        doomed.retain(|d| !kept.contains(d));
        for image in doomed {
            match engine.docker.remove_image(&image).await {
                Ok(()) => {
                    diesel::update(
                        deployments::table
                            .filter(deployments::application_id.eq(app))
                            .filter(deployments::image.eq(&image)),
                    )
                    .set(deployments::image_pruned.eq(true))
                    .execute(&mut conn)
                    .await?;
                }
                Err(e) => tracing::warn!(error = %e, image, "removing image"),
            }
        }
        Ok::<_, StoreError>(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "pruning images");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retirement_waits_for_newer_deployments_at_most_max_defer() {
        let app = AppId(uuid::Uuid::new_v4());
        let t0 = Instant::now();
        assert!(defer(app, t0), "the first newer deployment takes it over");
        assert!(defer(app, t0 + MAX_DEFER - Duration::from_millis(1)));
        assert!(!defer(app, t0 + MAX_DEFER), "past the bound it runs");
        // And the next burst starts its own bound.
        assert!(defer(app, t0 + MAX_DEFER * 2));
        assert!(!defer(app, t0 + MAX_DEFER * 3));
    }
}
