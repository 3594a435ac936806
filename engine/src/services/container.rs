//! A database service's Docker side: its volume, its container on the `berth`
//! network (the service name is its hostname there), lifecycle, readiness, and
//! the throwaway containers of restore drills and one-off helpers. Docker itself
//! is reached only through [`crate::docker`].

use super::kind::{DbEngine, Identity};
use crate::docker::{
    self, ContainerSpec, DockerError, Exec, FileSpec, Mount, MountSource, Network, Proto, Publish, Restart,
    LABEL_DRILL, LABEL_INSTANCE, LABEL_ROLE, LABEL_SERVICE,
};
use crate::ids::OrgId;
use crate::Engine;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// What the container needs to know about a service.
pub struct ServiceBox<'a> {
    pub id: Uuid,
    pub org: OrgId,
    /// Its container's name ([`container_name`]).
    pub container: String,
    pub name: &'a str,
    pub engine: DbEngine,
    pub image: &'a str,
    pub volume: &'a str,
    pub identity: Identity<'a>,
    pub cpu_millis: Option<i32>,
    pub memory_mb: Option<i32>,
    pub external: Option<(&'a str, u16)>,
}

/// The container of a service: `<instance>-db_<service id>`, from the ID with a
/// separator no name contains (names are unique per organization only).
/// Services made before are `<instance>-db.<name>` (their names were unique on
/// the server then).
pub fn container_name(engine: &Engine, id: Uuid, name: &str, legacy: bool) -> String {
    if legacy {
        format!("{}-db.{name}", engine.deploy.instance)
    } else {
        format!("{}-db_{}", engine.deploy.instance, id.simple())
    }
}

/// The named volume of a new service, from its ID: a volume kept when its
/// service was deleted is never picked up by a new service (whose generated
/// password would not match the data's), and no two tenants share one.
pub fn volume_name(engine: &Engine, id: Uuid) -> String {
    format!("{}-dbv_{}", engine.deploy.instance, id.simple())
}

fn labels(engine: &Engine, service: Uuid) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_INSTANCE.to_owned(), engine.deploy.instance.clone()),
        (LABEL_SERVICE.to_owned(), service.to_string()),
    ])
}

/// What a service's container is made of.
pub fn container_spec(engine: &Engine, svc: &ServiceBox<'_>) -> ContainerSpec {
    let port = svc.engine.port();
    let mut spec = ContainerSpec::new(&svc.container, svc.image);
    spec.env = svc.engine.container_env(&svc.identity);
    spec.cmd = svc.engine.command(&svc.identity);
    spec.files = svc.engine.container_files(&svc.identity);
    spec.labels = labels(engine, svc.id);
    spec.exposed = vec![(port, Proto::Tcp)];
    spec.publish = svc
        .external
        .map(|(bind, host_port)| Publish {
            container_port: port,
            proto: Proto::Tcp,
            host_ip: bind.to_owned(),
            host_port,
        })
        .into_iter()
        .collect();
    spec.network = Network::Bridge {
        name: crate::network::of(engine, svc.org),
        aliases: vec![svc.name.to_owned()],
    };
    spec.restart = Restart::UnlessStopped;
    spec.memory_bytes = svc.memory_mb.map(|m| i64::from(m) * 1024 * 1024);
    spec.nano_cpus = svc.cpu_millis.map(|m| i64::from(m) * 1_000_000);
    spec.mounts = vec![Mount {
        source: MountSource::Volume(svc.volume.to_owned()),
        target: svc.engine.data_dir().to_owned(),
        read_only: false,
    }];
    spec
}

/// Pulls the image unless it is present.
pub async fn ensure_image(engine: &Engine, image: &str) -> Result<(), String> {
    docker::ensure_image(&*engine.docker, image, None, |_| {})
        .await
        .map_err(|e| e.to_string())
}

/// Creates the volume (if missing) and the container (if missing), and starts
/// it, on its organization's network (a container made before, on the shared
/// network, is attached to it too, under its name).
pub async fn ensure_running(engine: &Engine, svc: &ServiceBox<'_>) -> Result<(), DockerError> {
    let d = &*engine.docker;
    let network = crate::network::ensure_org(engine, svc.org).await?;
    match d.inspect_container(&svc.container).await? {
        Some(c) => {
            if !c.addresses.contains_key(&network) && !c.state.restarting {
                d.connect_network(&network, &svc.container, &[svc.name.to_owned()])
                    .await?;
            }
            if c.state.is_up() {
                return Ok(());
            }
        }
        None => {
            d.ensure_volume(svc.volume, &self::labels(engine, svc.id)).await?;
            d.create_container(&container_spec(engine, svc)).await?;
        }
    }
    d.start_container(&svc.container).await
}

/// Whether a service's container was made with a password among its
/// command's arguments: Redis services made before the password moved into a
/// 0600 configuration file on the volume ran `redis-server --requirepass …`,
/// which `docker inspect` and the host's process list show.
pub fn password_on_command_line(info: &crate::docker::ContainerInfo) -> bool {
    info.cmd.iter().any(|a| a == "--requirepass")
}

/// Makes the service's container again from its current specification (its
/// data volume kept), and starts it.
pub async fn recreate(engine: &Engine, svc: &ServiceBox<'_>) -> Result<(), DockerError> {
    engine.docker.remove_container(&svc.container, false).await?;
    ensure_running(engine, svc).await
}

pub async fn stop(engine: &Engine, container: &str) -> Result<(), DockerError> {
    engine.docker.stop_container(container, Duration::from_secs(30)).await
}

pub async fn start(engine: &Engine, container: &str) -> Result<(), DockerError> {
    engine.docker.start_container(container).await
}

/// Removes the container (and the volume when asked). Missing things are fine.
pub async fn remove(engine: &Engine, container: &str, volume: Option<&str>) -> Result<(), DockerError> {
    engine.docker.remove_container(container, false).await?;
    if let Some(v) = volume {
        engine.docker.remove_volume(v).await?;
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

pub async fn state(engine: &Engine, container: &str) -> Result<State, DockerError> {
    Ok(match engine.docker.inspect_container(container).await? {
        None => State::Missing,
        Some(c) if c.state.is_up() => State::Running,
        Some(c) if c.state.restarting => State::Down("restarting".into()),
        Some(c) => State::Down(c.state.status),
    })
}

/// Polls the engine's readiness probe until it succeeds or `timeout` passes.
pub async fn wait_ready(engine: &Engine, container: &str, probe: &Exec, timeout: Duration) -> Result<(), String> {
    let started = Instant::now();
    let mut last;
    loop {
        match docker::exec_capture(&*engine.docker, container, probe, Duration::from_secs(10)).await {
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

/// What a drill's throwaway container runs: the engine's environment, command
/// and files for a random identity, or another program (Redis idles first).
pub struct Throwaway {
    pub env: Vec<String>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub files: Vec<FileSpec>,
}

/// A throwaway container for a restore drill: the service's image, a random
/// password, no volume (anonymous, removed with it), no network (exec only).
pub async fn start_throwaway(
    engine: &Engine,
    name: &str,
    image: &str,
    run: Throwaway,
    drill_of: Uuid,
) -> Result<(), DockerError> {
    let Throwaway {
        env,
        entrypoint,
        cmd,
        files,
    } = run;
    let mut spec = ContainerSpec::new(name, image);
    spec.env = env;
    spec.files = files;
    spec.entrypoint = entrypoint;
    spec.cmd = cmd;
    spec.labels = HashMap::from([
        (LABEL_INSTANCE.to_owned(), engine.deploy.instance.clone()),
        (LABEL_DRILL.to_owned(), drill_of.to_string()),
        (LABEL_ROLE.to_owned(), "drill".to_owned()),
    ]);
    engine.docker.remove_container(name, true).await?;
    engine.docker.create_container(&spec).await?;
    engine.docker.start_container(name).await
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
    let name = format!(
        "{}-oneoff-{}",
        engine.deploy.instance,
        &Uuid::new_v4().simple().to_string()[..12]
    );
    let (entry, args) = argv
        .split_first()
        .map(|(a, b)| (a.clone(), b.to_vec()))
        .unwrap_or_default();
    let mut spec = ContainerSpec::new(&name, image);
    spec.entrypoint = Some(vec![entry]);
    spec.cmd = Some(args);
    spec.labels = HashMap::from([
        (LABEL_INSTANCE.to_owned(), engine.deploy.instance.clone()),
        (LABEL_ROLE.to_owned(), "oneoff".to_owned()),
    ]);
    spec.mounts = vec![Mount {
        source: MountSource::Volume(volume.to_owned()),
        target: mount.to_owned(),
        read_only: false,
    }];
    engine.docker.create_container(&spec).await?;
    let result = async {
        engine.docker.start_container(&name).await?;
        engine.docker.wait_container(&name).await
    }
    .await;
    let _ = engine.docker.remove_container(&name, false).await;
    result
}
