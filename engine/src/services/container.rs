//! A database service's Docker side: its volume, its container on the `berth`
//! network (the service name is its hostname there), lifecycle, throwaway
//! containers for restore drills and one-off helpers, and `exec` with streamed
//! standard input and output, all through the Engine API: no shell, no CLI.

use super::kind::{DbEngine, Exec, Identity};
use crate::docker::DockerError;
use crate::Engine;
use bollard::container::LogOutput;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, Mount, MountTypeEnum, NetworkingConfig, PortBinding,
    RestartPolicy, RestartPolicyNameEnum, VolumeCreateOptions,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveVolumeOptionsBuilder, StartContainerOptions, StopContainerOptionsBuilder, WaitContainerOptions,
};
use futures::StreamExt;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use uuid::Uuid;

pub const LABEL_SERVICE: &str = "berth.service";
pub const LABEL_DRILL: &str = "berth.drill";

/// What the container needs to know about a service.
pub struct ServiceBox<'a> {
    pub id: Uuid,
    pub name: &'a str,
    pub engine: DbEngine,
    pub image: &'a str,
    pub volume: &'a str,
    pub identity: Identity<'a>,
    pub cpu_millis: Option<i32>,
    pub memory_mb: Option<i32>,
    pub external: Option<(&'a str, u16)>,
}

/// The container of a service: `<instance>-db.<name>` (a `.` no app container has).
pub fn container_name(engine: &Engine, service: &str) -> String {
    format!("{}-db.{service}", engine.deploy.instance)
}

/// The named volume of a new service. The service's ID is part of it: a volume
/// kept when its service was deleted is never picked up by a new service of the
/// same name (whose generated password would not match the data's).
pub fn volume_name(engine: &Engine, service: &str, id: Uuid) -> String {
    format!(
        "{}-db.{service}-{}",
        engine.deploy.instance,
        &id.simple().to_string()[..8]
    )
}

fn labels(engine: &Engine, service: Uuid) -> HashMap<String, String> {
    HashMap::from([
        (
            crate::deploy::runtime::LABEL_INSTANCE.to_owned(),
            engine.deploy.instance.clone(),
        ),
        (LABEL_SERVICE.to_owned(), service.to_string()),
    ])
}

fn is_404(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }
    )
}

/// Pulls the image unless it is present.
pub async fn ensure_image(engine: &Engine, image: &str) -> Result<(), String> {
    if crate::deploy::runtime::image_exists(engine, image)
        .await
        .map_err(|e| e.to_string())?
    {
        return Ok(());
    }
    let docker = engine.docker.client().await.map_err(|e| e.to_string())?;
    let (from, tag) = crate::deploy::build::split_tag(image);
    let options = CreateImageOptionsBuilder::new().from_image(from).tag(tag).build();
    let mut stream = docker.create_image(Some(options), None, None);
    while let Some(item) = stream.next().await {
        item.map_err(|e| format!("pulling {image} failed: {e}"))?;
    }
    Ok(())
}

/// Creates the volume (if missing) and the container (if missing), and starts it.
pub async fn ensure_running(engine: &Engine, svc: &ServiceBox<'_>) -> Result<(), DockerError> {
    let docker = engine.docker.client().await?;
    crate::deploy::runtime::ensure_network(engine).await?;
    let name = container_name(engine, svc.name);
    match docker
        .inspect_container(&name, None::<bollard::query_parameters::InspectContainerOptions>)
        .await
    {
        Ok(c) => {
            if c.state.and_then(|s| s.running) == Some(true) {
                return Ok(());
            }
        }
        Err(e) if is_404(&e) => {
            if docker.inspect_volume(svc.volume).await.is_err() {
                docker
                    .create_volume(VolumeCreateOptions {
                        name: Some(svc.volume.to_owned()),
                        labels: Some(labels(engine, svc.id)),
                        ..Default::default()
                    })
                    .await?;
            }
            create(engine, svc, &name).await?;
        }
        Err(e) => return Err(e.into()),
    }
    docker.start_container(&name, None::<StartContainerOptions>).await?;
    Ok(())
}

async fn create(engine: &Engine, svc: &ServiceBox<'_>, name: &str) -> Result<(), DockerError> {
    let docker = engine.docker.client().await?;
    let port = format!("{}/tcp", svc.engine.port());
    let port_bindings = svc.external.map(|(bind, p)| {
        HashMap::from([(
            port.clone(),
            Some(vec![PortBinding {
                host_ip: Some(bind.to_owned()),
                host_port: Some(p.to_string()),
            }]),
        )])
    });
    let body = ContainerCreateBody {
        image: Some(svc.image.to_owned()),
        env: Some(svc.engine.container_env(&svc.identity)),
        cmd: svc.engine.command(&svc.identity),
        labels: Some(labels(engine, svc.id)),
        exposed_ports: Some(HashMap::from([(port.clone(), HashMap::new())])),
        host_config: Some(HostConfig {
            network_mode: Some(engine.deploy.network.clone()),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            memory: svc.memory_mb.map(|m| i64::from(m) * 1024 * 1024),
            nano_cpus: svc.cpu_millis.map(|m| i64::from(m) * 1_000_000),
            mounts: Some(vec![Mount {
                target: Some(svc.engine.data_dir().to_owned()),
                source: Some(svc.volume.to_owned()),
                typ: Some(MountTypeEnum::VOLUME),
                ..Default::default()
            }]),
            port_bindings,
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                engine.deploy.network.clone(),
                EndpointSettings {
                    aliases: Some(vec![svc.name.to_owned()]),
                    ..Default::default()
                },
            )])),
        }),
        ..Default::default()
    };
    docker
        .create_container(Some(CreateContainerOptionsBuilder::new().name(name).build()), body)
        .await?;
    Ok(())
}

pub async fn stop(engine: &Engine, service: &str) -> Result<(), DockerError> {
    let docker = engine.docker.client().await?;
    match docker
        .stop_container(
            &container_name(engine, service),
            Some(StopContainerOptionsBuilder::new().t(30).build()),
        )
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if is_404(&e) => Ok(()),
        // 304: already stopped.
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

pub async fn start(engine: &Engine, service: &str) -> Result<(), DockerError> {
    let docker = engine.docker.client().await?;
    match docker
        .start_container(&container_name(engine, service), None::<StartContainerOptions>)
        .await
    {
        Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes the container (and the volume when asked). Missing things are fine.
pub async fn remove(engine: &Engine, service: &str, volume: Option<&str>) -> Result<(), DockerError> {
    let docker = engine.docker.client().await?;
    match docker
        .remove_container(
            &container_name(engine, service),
            Some(RemoveContainerOptionsBuilder::new().force(true).build()),
        )
        .await
    {
        Ok(()) => {}
        Err(e) if is_404(&e) => {}
        Err(e) => return Err(e.into()),
    }
    if let Some(v) = volume {
        match docker
            .remove_volume(v, Some(RemoveVolumeOptionsBuilder::new().force(true).build()))
            .await
        {
            Ok(()) => {}
            Err(e) if is_404(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// What Docker says about a service's container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Missing,
    Running,
    /// Not running: Docker's status word (`exited`, `restarting`, `created`, ...).
    Down(String),
}

pub async fn state(engine: &Engine, service: &str) -> Result<State, DockerError> {
    let docker = engine.docker.client().await?;
    match docker
        .inspect_container(
            &container_name(engine, service),
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
    {
        Ok(c) => {
            let s = c.state.unwrap_or_default();
            if s.running == Some(true) && s.restarting != Some(true) {
                Ok(State::Running)
            } else {
                Ok(State::Down(
                    s.status.map(|s| s.to_string()).unwrap_or_else(|| "unknown".into()),
                ))
            }
        }
        Err(e) if is_404(&e) => Ok(State::Missing),
        Err(e) => Err(e.into()),
    }
}

/// How an exec ended.
#[derive(Debug)]
pub struct ExecOutcome {
    pub exit_code: i64,
    /// Standard output when it was not streamed to a sink (at most 1 MiB kept).
    pub stdout: String,
    /// The last 4 KiB of standard error.
    pub stderr_tail: String,
    /// Bytes fed to standard input.
    pub fed: u64,
}

impl ExecOutcome {
    /// The most useful line(s) of what the program said, for an error message.
    pub fn said(&self) -> String {
        let s = if self.stderr_tail.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr_tail
        };
        let s = s.trim();
        let tail: Vec<&str> = s.lines().rev().take(3).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
    }
}

/// Why an exec with streams did not complete.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// Reading what was fed to standard input failed (the source, e.g. S3 or the
    /// decompressor): the program saw its input cut, so its result is void.
    #[error("{0}")]
    Input(std::io::Error),
    /// Writing standard output to the sink failed.
    #[error("{0}")]
    Output(std::io::Error),
}

const STDOUT_KEEP: usize = 1 << 20;
const STDERR_KEEP: usize = 4096;

/// Runs `exec` in the container: feeds `stdin` (then closes it), writes standard
/// output to `sink` (or keeps it), and returns the exit code.
pub async fn exec_stream(
    engine: &Engine,
    container: &str,
    exec: &Exec,
    stdin: Option<&mut (dyn AsyncRead + Unpin + Send)>,
    mut sink: Option<&mut (dyn AsyncWrite + Unpin + Send)>,
) -> Result<ExecOutcome, StreamError> {
    use bollard::exec::{CreateExecOptions, StartExecResults};
    let docker = engine.docker.client().await?;
    let created = docker
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(exec.argv.clone()),
                env: Some(exec.env.clone()),
                attach_stdin: Some(stdin.is_some()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .map_err(DockerError::from)?;
    let mut stdout = Vec::new();
    let mut stderr: Vec<u8> = Vec::new();
    let mut fed = 0u64;
    let mut cut = false;
    let has_stdin = stdin.is_some();
    if let StartExecResults::Attached { mut output, mut input } =
        docker.start_exec(&created.id, None).await.map_err(DockerError::from)?
    {
        let feed = async {
            let Some(r) = stdin else {
                drop(input);
                return Ok((0, false));
            };
            // A read error is the source's (S3, the decompressor): it voids the
            // result. A write error means the program stopped reading: its exit
            // code says why. Either way standard input is closed at the end.
            let mut buf = vec![0u8; 64 * 1024];
            let mut n = 0u64;
            let mut cut = false;
            let read_error = loop {
                match r.read(&mut buf).await {
                    Ok(0) => break None,
                    Ok(k) => {
                        if input.write_all(&buf[..k]).await.is_err() {
                            cut = true;
                            break None;
                        }
                        n += k as u64;
                    }
                    Err(e) => break Some(e),
                }
            };
            let _ = input.shutdown().await;
            drop(input);
            match read_error {
                Some(e) => Err(StreamError::Input(e)),
                None => Ok((n, cut)),
            }
        };
        let drain = async {
            while let Some(item) = output.next().await {
                match item.map_err(DockerError::from)? {
                    LogOutput::StdOut { message } => match sink.as_mut() {
                        Some(w) => w.write_all(&message).await.map_err(StreamError::Output)?,
                        None if stdout.len() < STDOUT_KEEP => stdout.extend_from_slice(&message),
                        None => {}
                    },
                    LogOutput::StdErr { message } => {
                        stderr.extend_from_slice(&message);
                        if stderr.len() > 2 * STDERR_KEEP {
                            stderr.drain(..stderr.len() - STDERR_KEEP);
                        }
                    }
                    _ => {}
                }
            }
            if let Some(w) = sink.as_mut() {
                w.flush().await.map_err(StreamError::Output)?;
                w.shutdown().await.map_err(StreamError::Output)?;
            }
            Ok::<_, StreamError>(())
        };
        let (fed_result, drained) = if has_stdin {
            tokio::pin!(feed);
            tokio::pin!(drain);
            tokio::select! {
                f = &mut feed => (f, drain.await),
                // The output ended first: the program exited (or never started)
                // while input remained. Stop feeding: nothing reads it any more.
                d = &mut drain => (Ok((0, true)), d),
            }
        } else {
            let f = feed.await;
            (f, drain.await)
        };
        let (n, was_cut) = fed_result?;
        fed = n;
        cut = was_cut;
        drained?;
    }
    let exit_code = wait_exit(engine, &created.id).await?;
    if cut && exit_code == 0 {
        return Err(StreamError::Input(std::io::Error::other(
            "the program exited before reading all of its input",
        )));
    }
    if stderr.len() > STDERR_KEEP {
        stderr.drain(..stderr.len() - STDERR_KEEP);
    }
    Ok(ExecOutcome {
        exit_code,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr_tail: String::from_utf8_lossy(&stderr).into_owned(),
        fed,
    })
}

/// The exit code of a finished exec (the stream can end a moment before Docker
/// records the code).
async fn wait_exit(engine: &Engine, exec_id: &str) -> Result<i64, DockerError> {
    let docker = engine.docker.client().await?;
    for _ in 0..50 {
        let info = docker.inspect_exec(exec_id).await?;
        if info.running != Some(true) {
            return Ok(info.exit_code.unwrap_or(-1));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(-1)
}

/// Runs `exec` with no input and keeps its output, bounded by `timeout`.
pub async fn exec_capture(
    engine: &Engine,
    container: &str,
    exec: &Exec,
    timeout: Duration,
) -> Result<ExecOutcome, DockerError> {
    match tokio::time::timeout(timeout, exec_stream(engine, container, exec, None, None)).await {
        Err(_) => Err(DockerError::Timeout(timeout.as_secs())),
        Ok(Ok(o)) => Ok(o),
        Ok(Err(StreamError::Docker(e))) => Err(e),
        Ok(Err(StreamError::Input(e) | StreamError::Output(e))) => Err(DockerError::Unreachable {
            host: container.to_owned(),
            reason: e.to_string(),
        }),
    }
}

/// Polls the engine's readiness probe until it succeeds or `timeout` passes.
pub async fn wait_ready(engine: &Engine, container: &str, probe: &Exec, timeout: Duration) -> Result<(), String> {
    let started = Instant::now();
    let mut last;
    loop {
        match exec_capture(engine, container, probe, Duration::from_secs(10)).await {
            Ok(o) if o.exit_code == 0 => return Ok(()),
            Ok(o) => last = o.said(),
            Err(e) => last = e.to_string(),
        }
        if started.elapsed() > timeout {
            return Err(format!(
                "not ready after {} s: {}",
                timeout.as_secs(),
                if last.is_empty() { "no answer".into() } else { last }
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A throwaway container for a restore drill: the service's image, a random
/// password, no volume (anonymous, removed with it), no network (exec only).
pub async fn start_throwaway(
    engine: &Engine,
    name: &str,
    image: &str,
    env: Vec<String>,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    drill_of: Uuid,
) -> Result<(), DockerError> {
    let docker = engine.docker.client().await?;
    let mut labels = HashMap::from([
        (
            crate::deploy::runtime::LABEL_INSTANCE.to_owned(),
            engine.deploy.instance.clone(),
        ),
        (LABEL_DRILL.to_owned(), drill_of.to_string()),
    ]);
    labels.insert("berth.throwaway".into(), "true".into());
    let _ = docker
        .remove_container(
            name,
            Some(RemoveContainerOptionsBuilder::new().force(true).v(true).build()),
        )
        .await;
    docker
        .create_container(
            Some(CreateContainerOptionsBuilder::new().name(name).build()),
            ContainerCreateBody {
                image: Some(image.to_owned()),
                env: Some(env),
                entrypoint,
                cmd,
                labels: Some(labels),
                host_config: Some(HostConfig {
                    network_mode: Some("none".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await?;
    docker.start_container(name, None::<StartContainerOptions>).await?;
    Ok(())
}

/// Removes a throwaway container with its anonymous volumes.
pub async fn remove_throwaway(engine: &Engine, name: &str) {
    if let Ok(docker) = engine.docker.client().await {
        let _ = docker
            .remove_container(
                name,
                Some(RemoveContainerOptionsBuilder::new().force(true).v(true).build()),
            )
            .await;
    }
}

/// Runs `argv` once in a container from `image` with `volume` at `mount`, waits
/// for it, removes it, and returns its exit code.
pub async fn run_oneoff(
    engine: &Engine,
    image: &str,
    volume: &str,
    mount: &str,
    argv: Vec<String>,
) -> Result<i64, DockerError> {
    let docker = engine.docker.client().await?;
    let name = format!(
        "{}-oneoff-{}",
        engine.deploy.instance,
        &Uuid::new_v4().simple().to_string()[..12]
    );
    let (entry, args) = argv
        .split_first()
        .map(|(a, b)| (a.clone(), b.to_vec()))
        .unwrap_or_default();
    docker
        .create_container(
            Some(CreateContainerOptionsBuilder::new().name(&name).build()),
            ContainerCreateBody {
                image: Some(image.to_owned()),
                entrypoint: Some(vec![entry]),
                cmd: Some(args),
                labels: Some(HashMap::from([(
                    crate::deploy::runtime::LABEL_INSTANCE.to_owned(),
                    engine.deploy.instance.clone(),
                )])),
                host_config: Some(HostConfig {
                    network_mode: Some("none".into()),
                    mounts: Some(vec![Mount {
                        target: Some(mount.to_owned()),
                        source: Some(volume.to_owned()),
                        typ: Some(MountTypeEnum::VOLUME),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await?;
    let result = async {
        docker.start_container(&name, None::<StartContainerOptions>).await?;
        let mut wait = docker.wait_container(&name, None::<WaitContainerOptions>);
        let mut code = -1;
        while let Some(r) = wait.next().await {
            match r {
                Ok(w) => code = w.status_code,
                // bollard reports a non-zero exit as an error carrying the code.
                Err(bollard::errors::Error::DockerContainerWaitError { code: c, .. }) => code = c,
                Err(e) => return Err(DockerError::from(e)),
            }
        }
        Ok(code)
    }
    .await;
    let _ = docker
        .remove_container(&name, Some(RemoveContainerOptionsBuilder::new().force(true).build()))
        .await;
    result
}
