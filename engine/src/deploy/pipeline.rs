//! One deployment, step by step: clone → build (or pull) → start beside the live
//! container → health check → move the route → drain the old container. Each step
//! is a checked transition of the state machine ([`super::status`]), conditional
//! on this worker still holding the deployment. A failure anywhere leaves the
//! live version serving: the new container is removed and the route restored.

use super::runtime::{self, Health};
use super::status::Status;
use crate::apps::spec::Source;
use crate::apps::{self, AppRow, Application};
use crate::db::schema::{applications, deployments};
use crate::error::StoreError;
use crate::ids::{AppId, DeploymentId};
use crate::logs::DeployLog;
use crate::proxy::{self, Upstream};
use crate::Engine;
use diesel::prelude::*;
use diesel_async::scoped_futures::ScopedFutureExt;
use diesel_async::{AsyncConnection, RunQueryDsl};
use std::collections::HashSet;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A deployment a worker has claimed.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: DeploymentId,
    pub app: AppId,
    pub status: Status,
    /// Set for rollbacks: the image to run again.
    pub image: Option<String>,
}

/// Why a deployment stopped short of `running`.
#[derive(Debug)]
pub enum Stop {
    Failed(String),
    Cancelled,
    /// Another process took the deployment over (this worker's lease lapsed).
    Lost,
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Stop::Failed(format!("internal error: {e}"))
    }
}

impl From<crate::docker::DockerError> for Stop {
    fn from(e: crate::docker::DockerError) -> Self {
        Stop::Failed(e.to_string())
    }
}

fn step_column(s: Status) -> &'static str {
    match s {
        Status::Cloning => "cloning_at",
        Status::Building => "building_at",
        Status::Starting => "starting_at",
        Status::HealthChecking => "health_checking_at",
        Status::Routing => "routing_at",
        _ => "finished_at",
    }
}

/// Moves the deployment from `from` to `to` if this worker still holds it.
async fn advance(engine: &Engine, job: &mut Job, worker: &str, to: Status) -> Result<(), Stop> {
    assert!(
        job.status.can_become(to),
        "illegal transition {:?} -> {:?}",
        job.status,
        to
    );
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    // The column name comes from the fixed match above, never from input.
    let sql = format!(
        "UPDATE deployments SET status = $1, {} = now(), heartbeat_at = now() WHERE id = $2 AND status = $3 AND worker_id = $4",
        step_column(to)
    );
    let n = diesel::sql_query(sql)
        .bind::<diesel::sql_types::Text, _>(to.as_str())
        .bind::<diesel::sql_types::Uuid, _>(job.id.0)
        .bind::<diesel::sql_types::Text, _>(job.status.as_str())
        .bind::<diesel::sql_types::Text, _>(worker)
        .execute(&mut conn)
        .await
        .map_err(StoreError::from)?;
    if n == 0 {
        return Err(Stop::Lost);
    }
    job.status = to;
    Ok(())
}

/// Finishes a deployment as failed or cancelled (if this worker still holds it).
pub(crate) async fn finish(
    engine: &Engine,
    job: &Job,
    worker: &str,
    to: Status,
    reason: &str,
) -> Result<bool, StoreError> {
    let mut conn = engine.db.get().await?;
    let n = diesel::update(
        deployments::table
            .filter(deployments::id.eq(job.id.0))
            .filter(deployments::status.eq(job.status.as_str()))
            .filter(deployments::worker_id.eq(worker)),
    )
    .set((
        deployments::status.eq(to.as_str()),
        deployments::reason.eq(reason),
        deployments::finished_at.eq(diesel::dsl::now),
    ))
    .execute(&mut conn)
    .await?;
    Ok(n == 1)
}

async fn load_app(engine: &Engine, id: AppId) -> Result<(Application, Option<String>), Stop> {
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let row: AppRow = applications::table
        .find(id.0)
        .select(AppRow::as_select())
        .first(&mut conn)
        .await
        .optional()
        .map_err(StoreError::from)?
        .ok_or_else(|| Stop::Failed("the application was deleted".into()))?;
    row.decode().map_err(|e| Stop::Failed(e.to_string()))
}

fn open_secret(engine: &Engine, sealed: Option<&str>) -> Result<Option<String>, Stop> {
    sealed
        .map(|s| {
            engine
                .secret
                .open(s)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    Stop::Failed("the stored credentials cannot be decrypted (was BERTH_SECRET_KEY changed?)".into())
                })
        })
        .transpose()
}

/// Runs a claimed deployment to its end. Never panics on the way out: every
/// outcome is recorded on the row and at the end of the log.
pub async fn run(engine: &Engine, mut job: Job, worker: &str, cancel: CancellationToken) -> Status {
    let log = match DeployLog::open(engine, job.app, job.id).await {
        Ok(l) => l,
        Err(e) => {
            let _ = finish(
                engine,
                &job,
                worker,
                Status::Failed,
                &format!("cannot write the deployment log: {e}"),
            )
            .await;
            return Status::Failed;
        }
    };
    let work = engine.deploy.data_dir.join("work").join(job.id.0.simple().to_string());
    let mut started: Option<String> = None;
    let outcome = steps(engine, &mut job, worker, &log, &cancel, &work, &mut started).await;
    let _ = tokio::fs::remove_dir_all(&work).await;
    let end = match outcome {
        Ok(()) => Status::Running,
        Err(stop) => {
            // The new container never serves: remove it and put the route back.
            if let Some(c) = &started {
                runtime::stop_and_remove(engine, c, Duration::from_secs(2)).await;
            }
            if job.status == Status::Routing {
                restore_route(engine, job.app).await;
            }
            // A build that never ran is garbage (rollbacks share an older image: keep it).
            if job.image.is_none() && !matches!(stop, Stop::Lost) {
                if let Ok((app, _)) = load_app(engine, job.app).await {
                    runtime::remove_image(engine, &runtime::image_tag(&app.name, job.id.0)).await;
                }
            }
            match stop {
                Stop::Lost => {
                    log.line("==> this worker lost the deployment (it was taken over); stopping");
                    log.flush().await;
                    return Status::Failed;
                }
                Stop::Cancelled => {
                    log.line("==> cancelled; the live version keeps serving");
                    let _ = finish(engine, &job, worker, Status::Cancelled, "cancelled").await;
                    Status::Cancelled
                }
                Stop::Failed(reason) => {
                    log.line(format!("==> failed: {reason}"));
                    let _ = finish(engine, &job, worker, Status::Failed, &reason).await;
                    tracing::info!(deployment.id = %job.id, reason, "deployment failed");
                    Status::Failed
                }
            }
        }
    };
    log.finish(end).await;
    end
}

async fn steps(
    engine: &Engine,
    job: &mut Job,
    worker: &str,
    log: &DeployLog,
    cancel: &CancellationToken,
    work: &std::path::Path,
    started: &mut Option<String>,
) -> Result<(), Stop> {
    let (app, sealed) = load_app(engine, job.app).await?;
    let tag = runtime::image_tag(&app.name, job.id.0);
    log.line(format!(
        "==> deployment {} of {} ({})",
        job.id,
        app.name,
        job.status.as_str()
    ));
    let check = |c: &CancellationToken| if c.is_cancelled() { Err(Stop::Cancelled) } else { Ok(()) };

    let image = if let Some(image) = job.image.clone() {
        log.line(format!("==> rollback: reusing image {image} (no build)"));
        if !runtime::image_exists(engine, &image).await? {
            return Err(Stop::Failed(format!("the image {image} no longer exists")));
        }
        image
    } else {
        match &app.source {
            Source::Image { image, registry_user } => {
                let password = open_secret(engine, sealed.as_deref())?;
                let creds = registry_user.as_ref().map(|u| bollard::auth::DockerCredentials {
                    username: Some(u.clone()),
                    password: password.clone(),
                    serveraddress: image
                        .split('/')
                        .next()
                        .filter(|h| h.contains('.') || h.contains(':'))
                        .map(str::to_owned),
                    ..Default::default()
                });
                let local = runtime::image_exists(engine, image).await?;
                let floating = !image.contains('@')
                    && (image.ends_with(":latest") || !image.rsplit('/').next().unwrap_or("").contains(':'));
                if !local || floating {
                    log.line(format!("==> pulling {image}"));
                    if let Err(e) = super::build::pull(engine, image, creds, log, cancel).await {
                        check(cancel)?;
                        if !local {
                            return Err(Stop::Failed(e));
                        }
                        log.line(format!("==> {e}; using the local copy"));
                    }
                } else {
                    log.line(format!("==> using local image {image}"));
                }
                let docker = engine.docker.client().await?;
                let (repo, t) = tag.split_once(':').expect("tag has a colon");
                docker
                    .tag_image(
                        image,
                        Some(
                            bollard::query_parameters::TagImageOptionsBuilder::new()
                                .repo(repo)
                                .tag(t)
                                .build(),
                        ),
                    )
                    .await
                    .map_err(|e| Stop::Failed(format!("tagging the image: {e}")))?;
                tag.clone()
            }
            Source::Git { url, branch, subdir } => {
                let key = open_secret(engine, sealed.as_deref())?;
                let _ = tokio::fs::remove_dir_all(work).await;
                tokio::fs::create_dir_all(work)
                    .await
                    .map_err(|e| Stop::Failed(format!("work directory: {e}")))?;
                log.line(format!("==> cloning {url} ({branch})"));
                let limit = Duration::from_secs(engine.deploy.build_timeout_secs);
                let checkout = tokio::time::timeout(
                    limit,
                    super::git::clone(
                        url,
                        branch,
                        key.as_deref(),
                        engine.deploy.allow_local_sources,
                        &work.join("src"),
                        log,
                        cancel,
                    ),
                )
                .await
                .map_err(|_| Stop::Failed(format!("clone timed out after {} s", limit.as_secs())))?
                .map_err(|e| {
                    if cancel.is_cancelled() {
                        Stop::Cancelled
                    } else {
                        Stop::Failed(e)
                    }
                })?;
                log.line(format!("==> commit {}", checkout.commit));
                record(engine, job.id, |conn, id| {
                    Box::pin(async move {
                        diesel::update(deployments::table.find(id))
                            .set(deployments::commit_sha.eq(checkout.commit))
                            .execute(conn)
                            .await
                    })
                })
                .await?;
                check(cancel)?;
                advance(engine, job, worker, Status::Building).await?;
                let root = super::git::confined(&checkout.dir, subdir, "subdir").map_err(Stop::Failed)?;
                log.line(format!("==> building {tag}"));
                tokio::time::timeout(
                    limit,
                    super::build::build(engine, &app.build, &root, work, &tag, log, cancel),
                )
                .await
                .map_err(|_| Stop::Failed(format!("build timed out after {} s", limit.as_secs())))?
                .map_err(|e| {
                    if cancel.is_cancelled() {
                        Stop::Cancelled
                    } else {
                        Stop::Failed(e)
                    }
                })?;
                tag.clone()
            }
        }
    };
    check(cancel)?;
    let img = image.clone();
    record(engine, job.id, |conn, id| {
        Box::pin(async move {
            diesel::update(deployments::table.find(id))
                .set(deployments::image.eq(img))
                .execute(conn)
                .await
        })
    })
    .await?;
    if job.status != Status::Starting {
        advance(engine, job, worker, Status::Starting).await?;
    }

    let env = {
        let mut conn = engine.db.get().await.map_err(StoreError::from)?;
        apps::decrypt_env(engine, &mut conn, app.id)
            .await
            .map_err(|e| Stop::Failed(e.to_string()))?
    };
    log.line(format!("==> starting a container from {image}"));
    let container = runtime::start(engine, &app, job.id.0, &image, &env)
        .await
        .map_err(|e| Stop::Failed(format!("starting the container: {e}")))?;
    *started = Some(container.clone());
    check(cancel)?;

    advance(engine, job, worker, Status::HealthChecking).await?;
    log.line(format!(
        "==> health check ({:?}) on port {}",
        app.runtime.health.probe, app.runtime.port
    ));
    match runtime::wait_healthy(engine, &app.runtime, &container, log, cancel).await? {
        Health::Healthy => log.line("==> healthy"),
        Health::Unhealthy(_) if cancel.is_cancelled() => return Err(Stop::Cancelled),
        Health::Unhealthy(why) => {
            tail_container_logs(engine, &container, log).await;
            return Err(Stop::Failed(why));
        }
    }
    check(cancel)?;

    advance(engine, job, worker, Status::Routing).await?;
    let domains = {
        let mut conn = engine.db.get().await.map_err(StoreError::from)?;
        apps::domains_of(&mut conn, app.id)
            .await
            .map_err(|e| Stop::Failed(e.to_string()))?
    };
    let up = Upstream {
        deployment: job.id.0,
        port: app.runtime.port,
    };
    proxy::write_app(engine, &app.name, &domains, Some(&up))
        .await
        .map_err(|e| Stop::Failed(format!("writing the route: {e}")))?;
    if let Some(d) = domains.as_slice().first() {
        log.line(format!(
            "==> routing {}{} to the new container",
            d.host,
            if d.path_prefix == "/" { "" } else { &d.path_prefix }
        ));
        let path = if d.path_prefix == "/" {
            "/".to_owned()
        } else {
            format!("{}/", d.path_prefix)
        };
        if !proxy::wait_routed(engine, &d.host, &path, job.id.0, Duration::from_secs(20)).await {
            return Err(Stop::Failed(
                "the proxy did not route to the new container within 20 s".into(),
            ));
        }
    }

    // Live: the row, the app's pointer, in one transaction, still conditional on holding it.
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let (id, app_id, w) = (job.id.0, app.id.0, worker.to_owned());
    let went_live = conn
        .transaction::<_, diesel::result::Error, _>(|conn| {
            async move {
                let n = diesel::update(
                    deployments::table
                        .filter(deployments::id.eq(id))
                        .filter(deployments::status.eq(Status::Routing.as_str()))
                        .filter(deployments::worker_id.eq(&w)),
                )
                .set((
                    deployments::status.eq(Status::Running.as_str()),
                    deployments::finished_at.eq(diesel::dsl::now),
                ))
                .execute(conn)
                .await?;
                if n == 1 {
                    diesel::update(applications::table.find(app_id))
                        .set(applications::live_deployment_id.eq(id))
                        .execute(conn)
                        .await?;
                }
                Ok(n == 1)
            }
            .scope_boxed()
        })
        .await
        .map_err(StoreError::from)?;
    if !went_live {
        return Err(Stop::Lost);
    }
    job.status = Status::Running;
    *started = None;
    log.line(format!(
        "==> running; old containers drain for {} s",
        app.runtime.drain_secs
    ));
    tracing::info!(deployment.id = %job.id, app = %app.name, "deployment running");
    let engine2 = engine.clone();
    let drain = Duration::from_secs(app.runtime.drain_secs);
    tokio::spawn(async move {
        tokio::time::sleep(drain).await;
        retire_old(&engine2, app.id).await;
    });
    prune_images(engine, app.id).await;
    Ok(())
}

type Update<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<usize, diesel::result::Error>> + Send + 'a>>;

async fn record<F>(engine: &Engine, id: DeploymentId, f: F) -> Result<(), Stop>
where
    F: for<'a> FnOnce(&'a mut diesel_async::AsyncPgConnection, Uuid) -> Update<'a>,
{
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    f(&mut conn, id.0).await.map_err(StoreError::from)?;
    Ok(())
}

/// The last lines a failed container printed, for the log.
async fn tail_container_logs(engine: &Engine, container: &str, log: &DeployLog) {
    use futures::StreamExt;
    let Ok(docker) = engine.docker.client().await else {
        return;
    };
    let opts = bollard::query_parameters::LogsOptionsBuilder::new()
        .stdout(true)
        .stderr(true)
        .tail("30")
        .build();
    let mut s = docker.logs(container, Some(opts));
    log.line("==> the container's last output:");
    while let Some(Ok(chunk)) = s.next().await {
        log.output(String::from_utf8_lossy(&chunk.into_bytes()).trim_end());
    }
}

/// Points the app's route at its live deployment again (or removes it when there
/// is none): used after a failure in `routing` and by the reaper.
pub(crate) async fn restore_route(engine: &Engine, app: AppId) {
    let result = async {
        let mut conn = engine.db.get().await.map_err(StoreError::from)?;
        let row: Option<(String, serde_json::Value, Option<Uuid>)> = applications::table
            .find(app.0)
            .select((
                applications::name,
                applications::runtime,
                applications::live_deployment_id,
            ))
            .first(&mut conn)
            .await
            .optional()
            .map_err(StoreError::from)?;
        let Some((name, rt, live)) = row else {
            return Ok::<_, Stop>(());
        };
        let port = serde_json::from_value::<crate::apps::spec::Runtime>(rt)
            .map(|r| r.port)
            .unwrap_or(80);
        let domains = apps::domains_of(&mut conn, app)
            .await
            .map_err(|e| Stop::Failed(e.to_string()))?;
        let up = live.map(|d| Upstream { deployment: d, port });
        proxy::write_app(engine, &name, &domains, up.as_ref())
            .await
            .map_err(|e| Stop::Failed(e.to_string()))?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(?e, app.id = %app, "restoring the route");
    }
}

/// Rewrites every application's route from the database (at worker start: the
/// files are derived state and may be stale or lost).
pub(crate) async fn sync_routes(engine: &Engine) {
    let ids: Vec<Uuid> = match engine.db.get().await {
        Ok(mut conn) => applications::table
            .select(applications::id)
            .load(&mut conn)
            .await
            .unwrap_or_default(),
        Err(_) => return,
    };
    for id in ids {
        restore_route(engine, AppId(id)).await;
    }
}

/// Stops the app's containers that neither serve (live) nor belong to a
/// deployment in progress.
pub(crate) async fn retire_old(engine: &Engine, app: AppId) {
    let keep: HashSet<Uuid> = match keepers(engine, app).await {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(error = %e, "reading live deployments");
            return;
        }
    };
    let Ok(list) = runtime::list_managed(engine).await else {
        return;
    };
    for c in list.into_iter().filter(|c| c.app == Some(app.0)) {
        if c.deployment.is_some_and(|d| keep.contains(&d)) {
            continue;
        }
        tracing::info!(container = %c.name, "retiring old container");
        runtime::stop_and_remove(engine, &c.name, Duration::from_secs(10)).await;
    }
}

async fn keepers(engine: &Engine, app: AppId) -> Result<HashSet<Uuid>, StoreError> {
    let mut conn = engine.db.get().await?;
    let mut keep: HashSet<Uuid> = deployments::table
        .filter(deployments::application_id.eq(app.0))
        .filter(deployments::status.eq_any(super::status::ACTIVE))
        .select(deployments::id)
        .load::<Uuid>(&mut conn)
        .await?
        .into_iter()
        .collect();
    if let Some(live) = super::live_of(&mut conn, app).await? {
        keep.insert(live);
    }
    Ok(keep)
}

/// Keeps the images of the newest `keep_images` successful deployments (and the
/// live one); removes older `berth/<app>:*` images and marks them pruned.
async fn prune_images(engine: &Engine, app: AppId) {
    let result = async {
        let mut conn = engine.db.get().await?;
        let live = super::live_of(&mut conn, app).await?;
        let rows: Vec<(Uuid, Option<String>)> = deployments::table
            .filter(deployments::application_id.eq(app.0))
            .filter(deployments::status.eq(Status::Running.as_str()))
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
            if runtime::remove_image(engine, &image).await {
                diesel::update(
                    deployments::table
                        .filter(deployments::application_id.eq(app.0))
                        .filter(deployments::image.eq(&image)),
                )
                .set(deployments::image_pruned.eq(true))
                .execute(&mut conn)
                .await?;
            }
        }
        Ok::<_, StoreError>(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "pruning images");
    }
}
