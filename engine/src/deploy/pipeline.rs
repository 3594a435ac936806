//! One deployment, state by state: clone → build (or pull) → start beside the live
//! container → health check → move the route and go live. There is one function
//! per state; each does that state's work and returns the state to move to, and
//! [`run`] makes each move through [`super::transition`], so a deployment this
//! worker no longer holds stops at the next step. A failure anywhere leaves the
//! live version serving: the new container is removed and the route restored.

use super::runtime::{self, Health};
use super::transition::{transition, Holder, Move, TransitionError};
use super::DeployJob;
use crate::apps::spec::Source;
use crate::apps::{self, Application};
use crate::db::schema::{applications, deployments};
use crate::docker::{self, BuildEvent, DockerError, RegistryAuth};
use crate::error::StoreError;
use crate::ids::{AppId, DeploymentId, OrgId};
use crate::jobs::JobContext;
use crate::logs::DeployLog;
use crate::proxy::{self, Upstream};
use crate::Engine;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use futures::StreamExt;
use lifecycle::DeploymentStatus as Status;
use std::path::PathBuf;
use std::time::Duration;

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

impl From<diesel::result::Error> for Stop {
    fn from(e: diesel::result::Error) -> Self {
        StoreError::from(e).into()
    }
}

impl From<TransitionError> for Stop {
    fn from(e: TransitionError) -> Self {
        match e {
            TransitionError::Lost => Stop::Lost,
            other => Stop::Failed(format!("internal error: {other}")),
        }
    }
}

/// A Docker failure as the deployment's reason: when the engine itself went
/// away, say so (the request's own error is then only a symptom).
fn docker_reason(during: &str, e: &DockerError) -> String {
    if e.engine_gone() {
        format!("the Docker engine stopped {during}: {e}")
    } else {
        format!("{during}: {e}")
    }
}

/// A deployment in the hands of this worker.
struct Deployment<'a> {
    engine: &'a Engine,
    job: DeployJob,
    ctx: &'a JobContext,
    log: &'a DeployLog,
    app: Application,
    /// Registry password or deploy key, opened.
    secret: Option<String>,
    status: Status,
    work: PathBuf,
    tag: String,
    /// The image the new container runs, once built or pulled.
    image: Option<String>,
    /// The new container, once created (removed again unless it goes live).
    container: Option<String>,
}

impl Deployment<'_> {
    fn worker(&self) -> &str {
        &self.ctx.worker
    }

    /// Stops when the job was cancelled or taken away.
    fn check(&self) -> Result<(), Stop> {
        if self.ctx.lost() {
            Err(Stop::Lost)
        } else if self.ctx.cancel.is_cancelled() {
            Err(Stop::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Runs `work` within the build time limit; a cancel or a lost lease wins over
    /// whatever error the interrupted work reports.
    async fn bounded<T>(
        &self,
        what: &str,
        work: impl std::future::Future<Output = Result<T, String>>,
    ) -> Result<T, Stop> {
        let limit = Duration::from_secs(self.engine.deploy.build_timeout_secs);
        let outcome = tokio::select! {
            r = tokio::time::timeout(limit, work) => r,
            _ = self.ctx.cancel.cancelled() => return Err(self.check().err().unwrap_or(Stop::Cancelled)),
        };
        match outcome {
            Err(_) => Err(Stop::Failed(format!("{what} timed out after {} s", limit.as_secs()))),
            Ok(Err(e)) => {
                self.check()?;
                Err(Stop::Failed(e))
            }
            Ok(Ok(v)) => Ok(v),
        }
    }

    /// A build step that failed because Docker was stopping (its container
    /// killed, code 137) reads like the app's own failure: when the engine no
    /// longer answers, the reason says what happened.
    async fn engine_stopped(&self, reason: String) -> String {
        if reason.starts_with("the Docker engine stopped") {
            return reason;
        }
        if reason.contains("code: 137") {
            // Docker kills the step's container first, then stops answering.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        match tokio::time::timeout(Duration::from_secs(5), self.engine.docker.info()).await {
            Ok(Ok(_)) => reason,
            _ => format!("the Docker engine stopped during the build ({reason})"),
        }
    }

    async fn record(&self, column: Recorded) -> Result<(), Stop> {
        let mut conn = self.engine.db.get().await.map_err(StoreError::from)?;
        let row = deployments::table.find(self.job.id);
        match column {
            Recorded::Commit(c) => {
                diesel::update(row)
                    .set(deployments::commit_sha.eq(c))
                    .execute(&mut conn)
                    .await?
            }
            Recorded::Image(i) => {
                diesel::update(row)
                    .set(deployments::image.eq(i))
                    .execute(&mut conn)
                    .await?
            }
        };
        Ok(())
    }

    /// The work of the current state; returns the state to move to.
    async fn step(&mut self) -> Result<Status, Stop> {
        self.check()?;
        tracing::debug!(deployment.id = %self.job.id, step = %self.status, "deployment step");
        match self.status {
            Status::Cloning => self.cloning().await,
            Status::Building => self.building().await,
            Status::Starting => self.starting().await,
            Status::HealthChecking => self.health_checking().await,
            Status::Routing => self.routing().await,
            other => Err(Stop::Failed(format!(
                "internal error: no work for a deployment in {other}"
            ))),
        }
    }

    /// `cloning`: a shallow clone of the branch; the commit is recorded.
    async fn cloning(&mut self) -> Result<Status, Stop> {
        let Source::Git { url, branch, .. } = &self.app.source else {
            return Err(Stop::Failed("internal error: only git sources are cloned".into()));
        };
        let _ = tokio::fs::remove_dir_all(&self.work).await;
        tokio::fs::create_dir_all(&self.work)
            .await
            .map_err(|e| Stop::Failed(format!("work directory: {e}")))?;
        self.log.line(format!("==> cloning {url} ({branch})"));
        // The remote's host is resolved and checked here, and git connects to
        // that address only (crate::outbound): never loopback, a private network
        // or a metadata service, unless the operator allows private targets.
        let ep = super::git::endpoint(url)
            .ok_or_else(|| Stop::Failed(format!("clone failed: {url} is not a repository URL")))?;
        let pin = match ep.transport {
            super::git::Transport::File => None,
            _ => {
                let addrs = crate::outbound::Policy::of(self.engine)
                    .resolve(&ep.host, ep.port)
                    .await
                    .map_err(|e| Stop::Failed(format!("clone refused: {e}")))?;
                Some((ep.clone(), addrs[0].ip()))
            }
        };
        let known_hosts: Option<String> = match ep.transport {
            super::git::Transport::Ssh => {
                let mut conn = self
                    .engine
                    .db
                    .get()
                    .await
                    .map_err(|e| Stop::Failed(format!("database: {e}")))?;
                applications::table
                    .find(self.app.id.0)
                    .select(applications::ssh_known_hosts)
                    .first(&mut conn)
                    .await
                    .map_err(|e| Stop::Failed(format!("database: {e}")))?
            }
            _ => None,
        };
        let remote = super::git::Remote {
            url,
            branch,
            deploy_key: self.secret.as_deref(),
            allow_local: self.engine.deploy.allow_local_sources,
            pin,
            known_hosts: known_hosts.as_deref(),
        };
        let checkout = self
            .bounded(
                "clone",
                super::git::clone(remote, &self.work.join("src"), self.log, &self.ctx.cancel),
            )
            .await?;
        if let Some(keys) = &checkout.learned_host_keys {
            // First clone over ssh: the host keys seen now are the ones accepted
            // from here on (unless an admin resets the pin).
            let mut conn = self
                .engine
                .db
                .get()
                .await
                .map_err(|e| Stop::Failed(format!("database: {e}")))?;
            diesel::update(
                applications::table
                    .find(self.app.id.0)
                    .filter(applications::ssh_known_hosts.is_null()),
            )
            .set(applications::ssh_known_hosts.eq(keys))
            .execute(&mut conn)
            .await
            .map_err(|e| Stop::Failed(format!("database: {e}")))?;
            self.log
                .line(format!("==> pinned the ssh host key of {} (first clone)", ep.host));
        }
        self.log.line(format!("==> commit {}", checkout.commit));
        self.record(Recorded::Commit(checkout.commit)).await?;
        Ok(Status::Building)
    }

    /// `building`: the image from the checkout (git), or pulled and tagged (image).
    async fn building(&mut self) -> Result<Status, Stop> {
        let image = match self.app.source.clone() {
            Source::Git { subdir, .. } => {
                let root = super::git::confined(&self.work.join("src"), &subdir, "subdir").map_err(Stop::Failed)?;
                self.log.line(format!("==> building {}", self.tag));
                let spec = super::build::prepare(self.engine, &self.app.build, &root, &self.work, &self.tag, self.log)
                    .await
                    .map_err(Stop::Failed)?;
                let stream = self.engine.docker.build(spec);
                match self.bounded("build", follow_build(stream, self.log)).await {
                    Err(Stop::Failed(reason)) => return Err(Stop::Failed(self.engine_stopped(reason).await)),
                    other => other?,
                }
                self.tag.clone()
            }
            Source::Image { image, registry_user } => {
                self.pull(&image, registry_user).await?;
                self.engine
                    .docker
                    .tag_image(&image, &self.tag)
                    .await
                    .map_err(|e| Stop::Failed(docker_reason("tagging the image", &e)))?;
                self.tag.clone()
            }
        };
        self.record(Recorded::Image(image.clone())).await?;
        self.image = Some(image);
        Ok(Status::Starting)
    }

    /// An image source: pulled before every deploy, with the app's own
    /// credentials (an image on this host may be another tenant's private one).
    /// A copy that is only on this host is used only where the operator allows
    /// it (`BERTH_ALLOW_LOCAL_IMAGES`: development and tests).
    async fn pull(&mut self, image: &str, user: Option<String>) -> Result<(), Stop> {
        if let Err(why) = super::build::refuse_app_image(image) {
            return Err(Stop::Failed(format!("image {image}: {why}")));
        }
        let auth = user.map(|username| RegistryAuth {
            username,
            password: self.secret.clone(),
            server: image
                .split('/')
                .next()
                .filter(|h| image.contains('/') && (h.contains('.') || h.contains(':')))
                .map(str::to_owned),
        });
        self.log.line(format!("==> pulling {image}"));
        let log = self.log;
        let pulled = self
            .bounded("pull", async {
                docker::pull(&*self.engine.docker, image, auth, &mut |l| log.output(l))
                    .await
                    .map_err(|e| docker_reason("pulling the image", &e))
            })
            .await;
        match pulled {
            Err(Stop::Failed(e)) if self.engine.deploy.host.allow_local_images => {
                let local = self
                    .engine
                    .docker
                    .image_exists(image)
                    .await
                    .map_err(|e| Stop::Failed(docker_reason("inspecting the image", &e)))?;
                if !local {
                    return Err(Stop::Failed(e));
                }
                self.log.line(format!(
                    "==> {e}; using the copy on this host (BERTH_ALLOW_LOCAL_IMAGES)"
                ));
                Ok(())
            }
            other => other,
        }
    }

    /// `starting`: the new container beside the live one.
    async fn starting(&mut self) -> Result<Status, Stop> {
        let image = match (&self.image, &self.job.image) {
            (Some(i), _) => i.clone(),
            (None, Some(rollback)) => {
                self.log
                    .line(format!("==> rollback: reusing image {rollback} (no build)"));
                let exists = self
                    .engine
                    .docker
                    .image_exists(rollback)
                    .await
                    .map_err(|e| Stop::Failed(docker_reason("inspecting the image", &e)))?;
                if !exists {
                    return Err(Stop::Failed(format!("the image {rollback} no longer exists")));
                }
                rollback.clone()
            }
            (None, None) => return Err(Stop::Failed("internal error: no image to start".into())),
        };
        let env = {
            let mut conn = self.engine.db.get().await.map_err(StoreError::from)?;
            apps::decrypt_env(self.engine, &mut conn, self.app.id)
                .await
                .map_err(|e| Stop::Failed(e.to_string()))?
        };
        // Saved before the operator's allow-list existed, or before it shrank:
        // a host path outside it is never mounted, whoever saved it.
        for v in self.app.runtime.volumes.iter().filter(|v| v.bind) {
            if !apps::bind_allowed(&self.engine.deploy.host.bind_roots, std::path::Path::new(&v.source)) {
                return Err(Stop::Failed(format!(
                    "the host path {} is not under BERTH_BIND_ROOTS; an instance administrator can allow its \
                     directory or remove the mount",
                    v.source
                )));
            }
        }
        self.log.line(format!("==> starting a container from {image}"));
        let app = runtime::AppRef {
            id: self.app.id,
            org: OrgId(self.app.organization_id),
            name: &self.app.name,
            runtime: &self.app.runtime,
            legacy_names: self.app.legacy_names,
        };
        crate::network::ensure_routable(self.engine, app.org)
            .await
            .map_err(|e| Stop::Failed(docker_reason("preparing the organization's network", &e)))?;
        let spec = runtime::container_spec(self.engine, app, self.job.id, &image, &env);
        self.container = Some(spec.name.clone());
        runtime::start(self.engine, &spec)
            .await
            .map_err(|e| Stop::Failed(docker_reason("starting the container", &e)))?;
        Ok(Status::HealthChecking)
    }

    /// `health_checking`: until healthy, exited, or out of time.
    async fn health_checking(&mut self) -> Result<Status, Stop> {
        let container = self.container.clone().expect("started before the health check");
        let rt = &self.app.runtime;
        self.log
            .line(format!("==> health check ({:?}) on port {}", rt.health.probe, rt.port));
        match runtime::wait_healthy(self.engine, rt, &container, self.log, &self.ctx.cancel)
            .await
            .map_err(|e| Stop::Failed(docker_reason("checking the container's health", &e)))?
        {
            Health::Healthy => {
                self.log.line("==> healthy");
                Ok(Status::Routing)
            }
            Health::Unhealthy(_) if self.ctx.cancel.is_cancelled() => {
                Err(self.check().err().unwrap_or(Stop::Cancelled))
            }
            Health::Unhealthy(why) => {
                runtime::tail_logs(self.engine, &container, self.log).await;
                Err(Stop::Failed(why))
            }
        }
    }

    /// `routing`: the route moves to the new container, Berth confirms through the
    /// proxy that it answers, then the deployment goes live in one transaction
    /// with the app's pointer and the end of the one it replaces.
    async fn routing(&mut self) -> Result<Status, Stop> {
        let to = RouteTo::Deploying {
            id: self.job.id,
            port: self.app.runtime.port,
        };
        // Traefik's log from here on says whether it refused the change.
        let began = chrono::Utc::now().timestamp() - 1;
        let routes = write_route(self.engine, self.app.id, to).await?;
        if let Some(r) = <[_]>::first(&routes) {
            self.log.line(format!(
                "==> routing {}{} to the new container",
                r.host,
                if r.path_prefix == "/" { "" } else { &r.path_prefix }
            ));
            let path = if r.path_prefix == "/" {
                "/".to_owned()
            } else {
                format!("{}/", r.path_prefix)
            };
            if !proxy::wait_routed(self.engine, &r.host, &path, self.job.id.0, Duration::from_secs(20)).await {
                let mut reason = "the proxy did not route to the new container within 20 s".to_owned();
                // Traefik says which file it refused, when it is Berth's to ask.
                let refused = if self.engine.deploy.proxy.manage {
                    let log = proxy::recent_log(self.engine, began).await;
                    proxy::refused_config(&log, &self.engine.deploy.proxy.dynamic_dir)
                } else {
                    None
                };
                // File names for the operator's log only: the directory is the
                // instance's, and its files are no tenant's business.
                if let Some(refused) = refused {
                    tracing::warn!(
                        error = %refused,
                        "a route did not take effect: Traefik refuses its dynamic configuration directory while a \
                         file in it does not parse"
                    );
                    reason.push_str(
                        "; Traefik refuses its dynamic configuration directory while a file in it does not parse \
                         (Berth's log names the file and the line for an instance administrator)",
                    );
                } else if let foreign @ [_, ..] = proxy::foreign_files(self.engine).as_slice() {
                    tracing::warn!(
                        files = ?foreign,
                        "a route did not take effect; Traefik's dynamic directory holds files Berth did not write, \
                         and one that does not parse stops every route change"
                    );
                    reason.push_str(&format!(
                        "; Traefik's dynamic configuration directory holds {} file(s) Berth did not write, and \
                         Traefik ignores every route change while one of them does not parse (Berth's log names \
                         them for an instance administrator)",
                        foreign.len()
                    ));
                }
                return Err(Stop::Failed(reason));
            }
        }
        self.go_live().await?;
        Ok(Status::Running)
    }

    async fn go_live(&mut self) -> Result<(), Stop> {
        let mut conn = self.engine.db.get().await.map_err(StoreError::from)?;
        let (id, app, worker) = (self.job.id, self.app.id, self.worker().to_owned());
        let replaced = conn
            .transaction::<_, TransitionError, _>(async |conn| {
                transition(
                    conn,
                    Move::new(id, Status::Routing, Status::Running, Holder::Worker(&worker)),
                )
                .await?;
                let previous: Option<DeploymentId> = applications::table
                    .find(app)
                    .select(applications::live_deployment_id)
                    .for_update()
                    .first(conn)
                    .await?;
                let mut replaced = None;
                if let Some(prev) = previous.filter(|p| *p != id) {
                    let superseded = Move::new(prev, Status::Running, Status::Superseded, Holder::Anyone).by(id);
                    match transition(conn, superseded).await {
                        Ok(()) => replaced = Some(prev),
                        // It was not running any more (its row tells why): nothing to supersede.
                        Err(TransitionError::Lost) => {}
                        Err(e) => return Err(e),
                    }
                }
                diesel::update(applications::table.find(app))
                    .set(applications::live_deployment_id.eq(id))
                    .execute(conn)
                    .await?;
                Ok(replaced)
            })
            .await?;
        drop(conn);
        // Committed: now the pages may hear of it.
        crate::events::deployment_changed(self.engine, id.0).await;
        if let Some(prev) = replaced {
            crate::events::deployment_changed(self.engine, prev.0).await;
        }
        self.status = Status::Running;
        self.container = None;
        Ok(())
    }

    /// Undoes what a failed attempt left: its container, its route, its image.
    async fn clean_up(&self, stop: &Stop) {
        // The route first, so that no request is sent to a container on its way out.
        if self.status == Status::Routing {
            restore_route_except(self.engine, self.app.id, Some(self.job.id)).await;
        }
        if let Some(c) = &self.container {
            docker::stop_and_remove(&*self.engine.docker, c, Duration::from_secs(2)).await;
        }
        // A build that never went live is garbage (rollbacks share an older image: keep it).
        if self.job.image.is_none() && !matches!(stop, Stop::Lost) {
            let _ = self.engine.docker.remove_image(&self.tag).await;
        }
    }
}

enum Recorded {
    Commit(String),
    Image(String),
}

/// Follows a build to its end: output to the log, `Step N` tracked for the reason.
async fn follow_build(
    mut stream: futures::stream::BoxStream<'static, Result<BuildEvent, DockerError>>,
    log: &DeployLog,
) -> Result<(), String> {
    let mut step = String::from("0");
    while let Some(event) = stream.next().await {
        match event {
            Ok(BuildEvent::Output(line)) => {
                if let Some(rest) = line.strip_prefix("Step ") {
                    step = rest.split(' ').next().unwrap_or("?").to_owned();
                }
                log.output(&line);
            }
            Ok(BuildEvent::Failed(e)) => {
                log.output(&e);
                return Err(format!("build failed at step {step}: {e}"));
            }
            Err(e) if e.engine_gone() => {
                return Err(format!(
                    "the Docker engine stopped during the build (at step {step}): {e}"
                ))
            }
            Err(e) => return Err(format!("build failed at step {step}: {e}")),
        }
    }
    Ok(())
}

fn open_secret(engine: &Engine, app: AppId, sealed: Option<&str>) -> Result<Option<String>, Stop> {
    sealed
        .map(|s| {
            engine
                .secret
                .open_text(apps::slot::source_secret(&app.to_string()), s)
                .map_err(|e| {
                    Stop::Failed(format!(
                        "the stored credentials cannot be decrypted (was BERTH_SECRET_KEY changed?): {e}"
                    ))
                })
        })
        .transpose()
}

/// Runs a claimed deployment to its end. Never panics on the way out: every
/// outcome is recorded on the row (through the transition function) and at the
/// end of the log.
pub async fn run(engine: &Engine, job: DeployJob, ctx: &JobContext) -> Status {
    let worker = ctx.worker.clone();
    let fail = |reason: String, from: Status| {
        let worker = worker.clone();
        async move {
            if let Ok(mut conn) = engine.db.get().await {
                let m = Move::new(job.id, from, Status::Failed, Holder::Worker(&worker)).note(&reason);
                match transition(&mut conn, m).await {
                    Ok(()) => crate::events::deployment_changed(engine, job.id.0).await,
                    Err(e) => tracing::warn!(deployment.id = %job.id, error = %e, "recording a failure"),
                }
            }
        }
    };
    let log = match DeployLog::open(engine, job.app, job.id).await {
        Ok(l) => l,
        Err(e) => {
            fail(format!("cannot write the deployment log: {e}"), job.status).await;
            return Status::Failed;
        }
    };
    let loaded = async {
        let mut conn = engine.db.get().await.map_err(StoreError::from)?;
        let (app, sealed) = apps::load_any(&mut conn, job.app)
            .await
            .map_err(|e| Stop::Failed(format!("the application cannot be loaded: {e}")))?;
        let secret = open_secret(engine, job.app, sealed.as_deref())?;
        Ok::<_, Stop>((app, secret))
    }
    .await;
    let (app, secret) = match loaded {
        Ok(x) => x,
        Err(Stop::Failed(reason)) => {
            log.line(format!("==> failed: {reason}"));
            fail(reason, job.status).await;
            log.finish(Status::Failed).await;
            return Status::Failed;
        }
        Err(_) => return Status::Failed,
    };
    log.line(format!("==> deployment {} of {} ({})", job.id, app.name, job.status));
    let mut d = Deployment {
        engine,
        tag: runtime::image_tag(job.app, job.id),
        work: engine.deploy.data_dir.join("work").join(job.id.0.simple().to_string()),
        status: job.status,
        job: job.clone(),
        ctx,
        log: &log,
        app,
        secret,
        image: None,
        container: None,
    };
    let outcome = loop {
        let next = match d.step().await {
            Ok(Status::Running) => break Ok(()),
            Ok(next) => next,
            Err(stop) => break Err(stop),
        };
        let m = Move::new(job.id, d.status, next, Holder::Worker(&worker));
        let mut conn = match engine.db.get().await {
            Ok(c) => c,
            Err(e) => break Err(StoreError::from(e).into()),
        };
        if let Err(e) = transition(&mut conn, m).await {
            break Err(e.into());
        }
        drop(conn);
        crate::events::deployment_changed(engine, job.id.0).await;
        d.status = next;
    };
    let _ = tokio::fs::remove_dir_all(&d.work).await;
    let end = match outcome {
        Ok(()) => {
            log.line(format!(
                "==> running; old containers drain for {} s",
                d.app.runtime.drain_secs
            ));
            tracing::info!(deployment.id = %job.id, app = %d.app.name, "deployment running");
            super::retire::after_go_live(engine, d.app.id, job.id, Duration::from_secs(d.app.runtime.drain_secs));
            super::retire::prune_images(engine, d.app.id).await;
            Status::Running
        }
        Err(stop) => {
            d.clean_up(&stop).await;
            let (to, reason) = match stop {
                Stop::Lost => {
                    log.line("==> this worker lost the deployment (it was taken over); stopping");
                    log.flush().await;
                    return Status::Failed;
                }
                Stop::Cancelled => {
                    log.line("==> cancelled; the live version keeps serving");
                    (Status::Cancelled, "cancelled".to_owned())
                }
                Stop::Failed(reason) => {
                    log.line(format!("==> failed: {reason}"));
                    tracing::info!(deployment.id = %job.id, reason, "deployment failed");
                    (Status::Failed, reason)
                }
            };
            if let Ok(mut conn) = engine.db.get().await {
                let m = Move::new(job.id, d.status, to, Holder::Worker(&worker)).note(&reason);
                match transition(&mut conn, m).await {
                    Ok(()) => crate::events::deployment_changed(engine, job.id.0).await,
                    Err(e) => tracing::warn!(deployment.id = %job.id, error = %e, "recording the end"),
                }
            }
            // A route restored by someone else (a domain edited, the certificate
            // watch) between this deployment's failure and the row leaving
            // `routing` chose this deployment, whose container is gone: once
            // the row says so, the route is chosen again.
            if d.status == Status::Routing {
                restore_route(engine, d.app.id).await;
            }
            to
        }
    };
    log.finish(end).await;
    end
}

/// Whose container an app's route names when it is written.
#[derive(Clone, Copy, Debug)]
enum RouteTo {
    /// The deployment in its `routing` step that writes it, its app on `port`.
    Deploying { id: DeploymentId, port: u16 },
    /// What should serve now: a deployment in its `routing` step whose worker
    /// still holds it (its heartbeat within the lease), else the live one;
    /// never `except`, a deployment undoing its own routing.
    Current { except: Option<DeploymentId> },
}

#[derive(diesel::QueryableByName)]
struct RoutingRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: uuid::Uuid,
}

/// Chooses the app's upstream and writes its route file as one step, one writer
/// per app at a time across every replica (a transaction-scoped PostgreSQL
/// advisory lock, so it cannot outlive a crash). Without it a writer that read
/// the live deployment just before a rollout's `routing` step wrote its route
/// could land its file after that step's, sending the traffic back to the
/// replaced container: the rollout then failed waiting for the proxy. With it,
/// and with writers preferring a deployment in `routing`, the last file written
/// names the container that should serve. Returns the routes written.
async fn write_route(engine: &Engine, app: AppId, to: RouteTo) -> Result<Vec<proxy::Route>, Stop> {
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    conn.transaction::<_, Stop, _>(async |conn| {
        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7274))")
            .bind::<diesel::sql_types::Text, _>(format!("route:{app}"))
            .execute(conn)
            .await?;
        let row = match apps::load_any(conn, app).await {
            Ok((row, _)) => row,
            // Deleted meanwhile: its route went with it.
            Err(apps::AppError::NotFound) => return Ok(Vec::new()),
            Err(e) => return Err(Stop::Failed(format!("the application cannot be loaded: {e}"))),
        };
        let routes = apps::routes_of(conn, app)
            .await
            .map_err(|e| Stop::Failed(e.to_string()))?;
        let chosen = match to {
            RouteTo::Deploying { id, port } => Some((id, port)),
            RouteTo::Current { except } => {
                let routing: Option<RoutingRow> = diesel::sql_query(
                    "SELECT id FROM deployments
                     WHERE application_id = $1 AND status = 'routing' AND id <> $2
                       AND heartbeat_at >= now() - make_interval(secs => $3)
                     ORDER BY routing_at DESC LIMIT 1",
                )
                .bind::<diesel::sql_types::Uuid, _>(app.0)
                .bind::<diesel::sql_types::Uuid, _>(except.map_or(uuid::Uuid::nil(), |d| d.0))
                .bind::<diesel::sql_types::Double, _>(engine.deploy.lease_secs as f64)
                .get_result(conn)
                .await
                .optional()?;
                routing
                    .map(|r| DeploymentId(r.id))
                    .or(row.live_deployment_id)
                    .map(|d| (d, row.runtime.port))
            }
        };
        let up = match chosen {
            Some((d, port)) => {
                let container = runtime::container_name(engine, &row.name, d);
                Some(Upstream {
                    deployment: d.0,
                    port,
                    address: runtime::address(engine, &container).await.ok().flatten(),
                })
            }
            None => None,
        };
        proxy::write_app(engine, app, &routes, up.as_ref())
            .await
            .map_err(|e| Stop::Failed(format!("writing the route: {e}")))?;
        Ok(routes)
    })
    .await
}

/// Points the app's route at what should serve it now (a deployment in its
/// `routing` step, else the live one; no route when there is neither): after a
/// domain or certificate changed, after a failure in `routing`, by the reaper
/// and the reconciler, and at worker start.
pub(crate) async fn restore_route(engine: &Engine, app: AppId) {
    restore_route_except(engine, app, None).await;
}

async fn restore_route_except(engine: &Engine, app: AppId, except: Option<DeploymentId>) {
    if let Err(e) = write_route(engine, app, RouteTo::Current { except }).await {
        tracing::warn!(?e, app.id = %app, "restoring the route");
    }
}

/// Rewrites every application's route from the database (at worker start: the
/// files are derived state and may be stale or lost), and removes the files of
/// apps that no longer exist (or that an earlier Berth named otherwise).
pub(crate) async fn sync_routes(engine: &Engine) {
    crate::apps::tls::write_custom(engine).await;
    let ids: Vec<AppId> = match engine.db.get().await {
        Ok(mut conn) => match applications::table.select(applications::id).load(&mut conn).await {
            Ok(ids) => ids,
            Err(_) => return,
        },
        Err(_) => return,
    };
    for id in &ids {
        restore_route(engine, *id).await;
    }
    proxy::remove_stale_routes(engine, &ids).await;
}
