//! Containers through the Docker Engine API: the `berth` network, creating and
//! starting an application's container (labelled: labels are the truth about what
//! runs), health checks, draining and removal, and image housekeeping.

use crate::apps::spec::{HealthProbe, Runtime};
use crate::apps::Application;
use crate::docker::DockerError;
use crate::ids::AppId;
use crate::Engine;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, Mount, MountTypeEnum, NetworkCreateRequest, NetworkingConfig,
    RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveImageOptionsBuilder, StopContainerOptionsBuilder,
};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use uuid::Uuid;

pub const LABEL_APP: &str = "berth.app";
pub const LABEL_DEPLOYMENT: &str = "berth.deployment";
pub const LABEL_INSTANCE: &str = "berth.instance";

pub async fn ensure_network(engine: &Engine) -> Result<(), DockerError> {
    let docker = engine.docker.client().await?;
    let name = &engine.deploy.network;
    if docker
        .inspect_network(name, None::<bollard::query_parameters::InspectNetworkOptions>)
        .await
        .is_ok()
    {
        return Ok(());
    }
    let req = NetworkCreateRequest {
        name: name.clone(),
        driver: Some("bridge".into()),
        labels: Some(HashMap::from([(
            LABEL_INSTANCE.to_owned(),
            engine.deploy.instance.clone(),
        )])),
        ..Default::default()
    };
    match docker.create_network(req).await {
        Ok(_) => Ok(()),
        // Another replica created it meanwhile.
        Err(_)
            if docker
                .inspect_network(name, None::<bollard::query_parameters::InspectNetworkOptions>)
                .await
                .is_ok() =>
        {
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// The container name of a deployment.
pub fn container_name(engine: &Engine, app: &str, deployment: Uuid) -> String {
    format!(
        "{}-{}-{}",
        engine.deploy.instance,
        app,
        &deployment.simple().to_string()[..12]
    )
}

/// The image tag of a deployment: `berth/<app>:<deployment id>`.
pub fn image_tag(app: &str, deployment: Uuid) -> String {
    format!("berth/{app}:{}", deployment.simple())
}

/// Creates and starts the container for a deployment; returns its name.
pub async fn start(
    engine: &Engine,
    app: &Application,
    deployment: Uuid,
    image: &str,
    env: &[(String, String)],
) -> Result<String, DockerError> {
    let docker = engine.docker.client().await?;
    let name = container_name(engine, &app.name, deployment);
    let rt: &Runtime = &app.runtime;
    let labels = HashMap::from([
        (LABEL_INSTANCE.to_owned(), engine.deploy.instance.clone()),
        (LABEL_APP.to_owned(), app.id.0.to_string()),
        (LABEL_DEPLOYMENT.to_owned(), deployment.to_string()),
    ]);
    let mounts: Vec<Mount> = rt
        .volumes
        .iter()
        .map(|v| Mount {
            target: Some(v.target.clone()),
            source: Some(if v.bind {
                v.source.clone()
            } else {
                format!("{}-{}-{}", engine.deploy.instance, app.name, v.source)
            }),
            typ: Some(if v.bind {
                MountTypeEnum::BIND
            } else {
                MountTypeEnum::VOLUME
            }),
            read_only: Some(v.read_only),
            ..Default::default()
        })
        .collect();
    let restart = match rt.restart {
        crate::apps::spec::RestartPolicy::No => RestartPolicyNameEnum::NO,
        crate::apps::spec::RestartPolicy::Always => RestartPolicyNameEnum::ALWAYS,
        crate::apps::spec::RestartPolicy::UnlessStopped => RestartPolicyNameEnum::UNLESS_STOPPED,
        crate::apps::spec::RestartPolicy::OnFailure => RestartPolicyNameEnum::ON_FAILURE,
    };
    let body = ContainerCreateBody {
        image: Some(image.to_owned()),
        env: Some(env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        cmd: rt.command.clone(),
        labels: Some(labels),
        exposed_ports: Some(HashMap::from([(format!("{}/tcp", rt.port), HashMap::new())])),
        host_config: Some(HostConfig {
            network_mode: Some(engine.deploy.network.clone()),
            restart_policy: Some(RestartPolicy {
                name: Some(restart),
                maximum_retry_count: None,
            }),
            memory: rt.memory_mb.map(|m| i64::from(m) * 1024 * 1024),
            nano_cpus: rt.cpu_millis.map(|m| i64::from(m) * 1_000_000),
            mounts: (!mounts.is_empty()).then_some(mounts),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                engine.deploy.network.clone(),
                EndpointSettings {
                    aliases: Some(vec![app.name.clone(), crate::proxy::upstream_host(deployment)]),
                    ..Default::default()
                },
            )])),
        }),
        ..Default::default()
    };
    // A leftover from an interrupted attempt of this same deployment goes first.
    let _ = docker
        .remove_container(&name, Some(RemoveContainerOptionsBuilder::new().force(true).build()))
        .await;
    docker
        .create_container(Some(CreateContainerOptionsBuilder::new().name(&name).build()), body)
        .await?;
    docker
        .start_container(&name, None::<bollard::query_parameters::StartContainerOptions>)
        .await?;
    Ok(name)
}

/// What one inspection says about a started container.
pub struct Observed {
    /// Why it is not (or no longer) running, if it is not.
    pub exited: Option<String>,
    /// Its address on the Berth network, once it has one.
    pub ip: Option<String>,
}

/// Inspects the container once.
pub async fn observe(engine: &Engine, container: &str) -> Result<Observed, DockerError> {
    let docker = engine.docker.client().await?;
    let info = docker
        .inspect_container(container, None::<bollard::query_parameters::InspectContainerOptions>)
        .await?;
    let exited = info.state.and_then(|state| {
        // A crash-looping container shows `running` between restarts: its exit code tells.
        if state.running == Some(true) && state.restarting != Some(true) {
            None
        } else if state.oom_killed == Some(true) {
            Some("the container was OOM-killed (raise its memory limit)".to_owned())
        } else {
            Some(format!(
                "the container exited with code {}",
                state.exit_code.unwrap_or(-1)
            ))
        }
    });
    let ip = info
        .network_settings
        .and_then(|n| n.networks)
        .and_then(|mut n| n.remove(&engine.deploy.network))
        .and_then(|e| e.ip_address)
        .filter(|ip| !ip.is_empty());
    Ok(Observed { exited, ip })
}

/// The container's address on the Berth network.
pub async fn address(engine: &Engine, container: &str) -> Result<Option<String>, DockerError> {
    Ok(observe(engine, container).await?.ip)
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
    log: &crate::logs::DeployLog,
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
        let Observed { exited, ip } = observe(engine, container).await?;
        if let Some(why) = exited {
            return Ok(Health::Unhealthy(why));
        }
        let outcome = match (&hc.probe, ip) {
            (_, None) => Err("the container has no address on the network yet".to_owned()),
            (HealthProbe::Tcp, Some(ip)) => {
                match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((ip.as_str(), rt.port))).await {
                    Ok(Ok(_)) => Ok(()),
                    _ => Err(format!("nothing listening on port {}", rt.port)),
                }
            }
            (HealthProbe::Http { path }, Some(ip)) => {
                let host = format!("{ip}:{}", rt.port);
                match crate::http1::request(&ip, rt.port, "GET", &host, path, timeout).await {
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
            (HealthProbe::Command { argv }, Some(_)) => match exec(engine, container, argv, timeout).await {
                Ok(0) => Ok(()),
                Ok(code) => Err(format!("health command exited with {code}")),
                Err(e) => Err(format!("health command: {e}")),
            },
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

/// Runs an argument vector in the container (no shell) and returns its exit code.
pub async fn exec(engine: &Engine, container: &str, argv: &[String], timeout: Duration) -> Result<i64, DockerError> {
    let exec = crate::services::kind::Exec {
        argv: argv.to_vec(),
        env: Vec::new(),
    };
    Ok(
        crate::services::container::exec_capture(engine, container, &exec, timeout)
            .await?
            .exit_code,
    )
}

/// Stops (after `grace`) and removes a container; missing containers are fine.
pub async fn stop_and_remove(engine: &Engine, container: &str, grace: Duration) {
    let Ok(docker) = engine.docker.client().await else {
        return;
    };
    let _ = docker
        .stop_container(
            container,
            Some(StopContainerOptionsBuilder::new().t(grace.as_secs() as i32).build()),
        )
        .await;
    if let Err(e) = docker
        .remove_container(
            container,
            Some(RemoveContainerOptionsBuilder::new().force(true).v(false).build()),
        )
        .await
    {
        if !matches!(
            e,
            bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }
        ) {
            tracing::warn!(error = %e, container, "removing container");
        }
    }
}

/// A container Berth started, as its labels describe it.
#[derive(Debug, Clone)]
pub struct Managed {
    pub name: String,
    pub app: Option<Uuid>,
    pub deployment: Option<Uuid>,
}

/// Every container of this instance that belongs to an application.
pub async fn list_managed(engine: &Engine) -> Result<Vec<Managed>, DockerError> {
    let docker = engine.docker.client().await?;
    let filters = HashMap::from([(
        "label".to_owned(),
        vec![
            format!("{LABEL_INSTANCE}={}", engine.deploy.instance),
            LABEL_APP.to_owned(),
        ],
    )]);
    let list = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::new().all(true).filters(&filters).build(),
        ))
        .await?;
    Ok(list
        .into_iter()
        .map(|c| {
            let labels = c.labels.unwrap_or_default();
            Managed {
                name: c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .map(|n| n.trim_start_matches('/').to_owned())
                    .unwrap_or_default(),
                app: labels.get(LABEL_APP).and_then(|s| s.parse().ok()),
                deployment: labels.get(LABEL_DEPLOYMENT).and_then(|s| s.parse().ok()),
            }
        })
        .collect())
}

pub async fn remove_app_containers(engine: &Engine, app: AppId) {
    match list_managed(engine).await {
        Ok(list) => {
            for c in list.into_iter().filter(|c| c.app == Some(app.0)) {
                stop_and_remove(engine, &c.name, Duration::from_secs(5)).await;
            }
        }
        Err(e) => tracing::warn!(error = %e, "listing containers to remove"),
    }
}

pub async fn remove_image(engine: &Engine, image: &str) -> bool {
    let Ok(docker) = engine.docker.client().await else {
        return false;
    };
    match docker
        .remove_image(image, Some(RemoveImageOptionsBuilder::new().force(true).build()), None)
        .await
    {
        Ok(_) => true,
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => true,
        Err(e) => {
            tracing::warn!(error = %e, image, "removing image");
            false
        }
    }
}

/// Removes every `berth/<app>:*` image.
pub async fn remove_app_images(engine: &Engine, app: &str) {
    let Ok(docker) = engine.docker.client().await else {
        return;
    };
    let filters = HashMap::from([("reference".to_owned(), vec![format!("berth/{app}")])]);
    let Ok(images) = docker
        .list_images(Some(
            bollard::query_parameters::ListImagesOptionsBuilder::new()
                .filters(&filters)
                .build(),
        ))
        .await
    else {
        return;
    };
    for img in images {
        for tag in img.repo_tags {
            remove_image(engine, &tag).await;
        }
    }
}

pub async fn image_exists(engine: &Engine, image: &str) -> Result<bool, DockerError> {
    let docker = engine.docker.client().await?;
    match docker.inspect_image(image).await {
        Ok(_) => Ok(true),
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}
