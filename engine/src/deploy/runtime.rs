//! An application's containers: what one is made of (a [`ContainerSpec`] from the
//! app's runtime settings: labels are the truth about what runs), starting it,
//! health checks, and the housekeeping of containers and images when an app
//! goes away. Docker itself is reached only through [`crate::docker`].

use crate::apps::spec::{HealthProbe, RestartPolicy, Runtime};
use crate::docker::{
    self, ContainerSpec, DockerError, Exec, LogOptions, Mount, MountSource, Network, Proto, Restart, LABEL_APP,
    LABEL_DEPLOYMENT, LABEL_INSTANCE,
};
use crate::ids::{AppId, DeploymentId, OrgId};
use crate::logs::DeployLog;
use crate::Engine;
use futures::StreamExt;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The container name of a deployment.
pub fn container_name(engine: &Engine, app: &str, deployment: DeploymentId) -> String {
    format!(
        "{}-{}-{}",
        engine.deploy.instance,
        app,
        &deployment.0.simple().to_string()[..12]
    )
}

/// The image repository of an application's builds: `berth/<app id>`. From the
/// ID, never the name: names are unique per organization only.
pub fn image_repo(app: AppId) -> String {
    format!("berth/{}", app.0.simple())
}

/// The image tag of a deployment: `berth/<app id>:<deployment id>`.
pub fn image_tag(app: AppId, deployment: DeploymentId) -> String {
    format!("{}:{}", image_repo(app), deployment.0.simple())
}

/// The Docker name of an application's named volume. From the app's ID, with a
/// separator (`_`) no name can contain, so no two apps ever share a volume;
/// apps made before keep their volumes' old names (their data is there).
pub fn volume_name(engine: &Engine, app: AppRef<'_>, volume: &str) -> String {
    if app.legacy_names {
        format!("{}-{}-{}", engine.deploy.instance, app.name, volume)
    } else {
        format!("{}_{}_{volume}", engine.deploy.instance, app.id.0.simple())
    }
}

/// The application a container runs, as its container needs to know it.
#[derive(Debug, Clone, Copy)]
pub struct AppRef<'a> {
    pub id: AppId,
    pub org: OrgId,
    pub name: &'a str,
    pub runtime: &'a Runtime,
    pub legacy_names: bool,
}

/// What a deployment's container is made of.
pub fn container_spec(
    engine: &Engine,
    app: AppRef<'_>,
    deployment: DeploymentId,
    image: &str,
    env: &[(String, String)],
) -> ContainerSpec {
    let rt = app.runtime;
    let mut spec = ContainerSpec::new(container_name(engine, app.name, deployment), image);
    spec.labels = HashMap::from([
        (LABEL_INSTANCE.to_owned(), engine.deploy.instance.clone()),
        (LABEL_APP.to_owned(), app.id.to_string()),
        (LABEL_DEPLOYMENT.to_owned(), deployment.to_string()),
    ]);
    spec.env = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    spec.cmd = rt.command.clone();
    spec.exposed = vec![(rt.port, Proto::Tcp)];
    spec.network = Network::Bridge {
        name: crate::network::of(engine, app.org),
        aliases: vec![app.name.to_owned(), crate::proxy::upstream_host(deployment.0)],
    };
    spec.restart = match rt.restart {
        RestartPolicy::No => Restart::No,
        RestartPolicy::Always => Restart::Always,
        RestartPolicy::UnlessStopped => Restart::UnlessStopped,
        RestartPolicy::OnFailure => Restart::OnFailure,
    };
    spec.memory_bytes = rt.memory_mb.map(|m| i64::from(m) * 1024 * 1024);
    spec.nano_cpus = rt.cpu_millis.map(|m| i64::from(m) * 1_000_000);
    spec.mounts = rt
        .volumes
        .iter()
        .map(|v| Mount {
            source: if v.bind {
                MountSource::Bind(v.source.clone())
            } else {
                MountSource::Volume(volume_name(engine, app, &v.source))
            },
            target: v.target.clone(),
            read_only: v.read_only,
        })
        .collect();
    spec
}

/// Creates and starts the container (a leftover of an interrupted attempt of the
/// same deployment goes first).
pub async fn start(engine: &Engine, spec: &ContainerSpec) -> Result<(), DockerError> {
    engine.docker.remove_container(&spec.name, false).await?;
    engine.docker.create_container(spec).await?;
    engine.docker.start_container(&spec.name).await
}

/// The container's address on its network, once it has one.
pub async fn address(engine: &Engine, container: &str) -> Result<Option<String>, DockerError> {
    Ok(engine
        .docker
        .inspect_container(container)
        .await?
        .and_then(|c| c.addresses.into_values().next()))
}

/// Health-check outcome.
pub enum Health {
    Healthy,
    Unhealthy(String),
}

/// Polls the health check until it passes, the container dies, or the start period ends.
pub async fn wait_healthy(
    engine: &Engine,
    rt: &Runtime,
    container: &str,
    log: &DeployLog,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<Health, DockerError> {
    let hc = &rt.health;
    let start = Instant::now();
    let deadline = Duration::from_secs(hc.start_period_secs.max(1));
    let interval = Duration::from_millis(hc.interval_ms.max(100));
    let timeout = Duration::from_millis(hc.timeout_ms.max(100));
    let mut last;
    let mut announced = false;
    loop {
        if cancel.is_cancelled() {
            return Ok(Health::Unhealthy("cancelled".into()));
        }
        let Some(info) = engine.docker.inspect_container(container).await? else {
            return Ok(Health::Unhealthy("the container disappeared".into()));
        };
        if !info.state.is_up() {
            return Ok(Health::Unhealthy(info.state.down_reason()));
        }
        // Its organization's network (containers made before: the shared one).
        let network = info
            .addresses
            .keys()
            .find(|n| n.starts_with(&format!("{}-o", engine.deploy.instance)))
            .cloned()
            .unwrap_or_else(|| engine.deploy.network.clone());
        let endpoint = engine.docker.endpoint(&info, &network, rt.port);
        let outcome = match (&hc.probe, endpoint) {
            (_, None) => Err("the container has no address on the network yet".to_owned()),
            (HealthProbe::Tcp, Some(addr)) => {
                match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
                    Ok(Ok(_)) => Ok(()),
                    _ => Err(format!("nothing listening on port {}", rt.port)),
                }
            }
            (HealthProbe::Http { path }, Some(addr)) => {
                let ip = addr.ip().to_string();
                let host = format!("{ip}:{}", rt.port);
                match crate::http1::request(&ip, addr.port(), "GET", &host, path, timeout).await {
                    Ok(r) if (200..400).contains(&r.status) => Ok(()),
                    Ok(r) => {
                        let body: String = r.body.chars().take(200).collect();
                        Err(format!("GET {path} answered {}: {body:?}", r.status))
                    }
                    Err(crate::http1::Http1Error::Refused) => Err(format!("nothing listening on port {}", rt.port)),
                    Err(crate::http1::Http1Error::Timeout) => {
                        Err(format!("GET {path} timed out after {} ms", timeout.as_millis()))
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
            (HealthProbe::Command { argv }, Some(_)) => {
                match docker::exec_capture(&*engine.docker, container, &Exec::argv(argv.clone()), timeout).await {
                    Ok(o) if o.exit_code == 0 => Ok(()),
                    Ok(o) => Err(format!("health command exited with {}", o.exit_code)),
                    Err(e) => Err(format!("health command: {e}")),
                }
            }
        };
        match outcome {
            Ok(()) => return Ok(Health::Healthy),
            Err(why) => {
                if !announced && start.elapsed() > Duration::from_secs(5) {
                    log.line(format!("==> waiting for the health check: {why}"));
                    announced = true;
                }
                last = why;
            }
        }
        if start.elapsed() >= deadline {
            return Ok(Health::Unhealthy(format!(
                "health check failed after {} s: {last}",
                deadline.as_secs()
            )));
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = cancel.cancelled() => {}
        }
    }
}

/// The last lines a failed container printed, into the deployment log.
pub async fn tail_logs(engine: &Engine, container: &str, log: &DeployLog) {
    let mut s = engine.docker.logs(
        container,
        LogOptions {
            follow: false,
            tail: Some(30),
            since: None,
        },
    );
    log.line("==> the container's last output:");
    while let Some(Ok(chunk)) = s.next().await {
        log.output(String::from_utf8_lossy(&chunk.bytes).trim_end());
    }
}

/// A container Berth started for an application, as its labels describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Managed {
    pub name: String,
    pub app: Option<AppId>,
    pub deployment: Option<DeploymentId>,
    /// Docker's status word (`running`, `exited` ...).
    pub state: String,
}

/// Every container of this instance that belongs to an application.
pub async fn list_managed(engine: &Engine) -> Result<Vec<Managed>, DockerError> {
    let filter = [
        (LABEL_INSTANCE, Some(engine.deploy.instance.as_str())),
        (LABEL_APP, None),
    ];
    Ok(engine
        .docker
        .list_containers(&filter)
        .await?
        .into_iter()
        .map(|c| Managed {
            app: c.label(LABEL_APP).and_then(|s| s.parse().ok()),
            deployment: c.label(LABEL_DEPLOYMENT).and_then(|s| s.parse().ok()),
            name: c.name,
            state: c.state,
        })
        .collect())
}

/// Removes every container of the application (any deployment).
pub async fn remove_app_containers(engine: &Engine, app: AppId) {
    match list_managed(engine).await {
        Ok(list) => {
            for c in list.into_iter().filter(|c| c.app == Some(app)) {
                docker::stop_and_remove(&*engine.docker, &c.name, Duration::from_secs(5)).await;
            }
        }
        Err(e) => tracing::warn!(error = %e, "listing containers to remove"),
    }
}

/// Removes the application's images: its `berth/<app id>:*` builds, and the
/// images its deployments ran that Berth built (older builds were tagged by name).
pub async fn remove_app_images(engine: &Engine, app: AppId, deployed: &[String]) {
    let mut tags = engine.docker.image_tags(&image_repo(app)).await.unwrap_or_default();
    tags.extend(deployed.iter().filter(|i| i.starts_with("berth/")).cloned());
    tags.sort();
    tags.dedup();
    for tag in tags {
        if let Err(e) = engine.docker.remove_image(&tag).await {
            tracing::warn!(error = %e, image = tag, "removing image");
        }
    }
}
