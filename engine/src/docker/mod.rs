//! The Docker engine, behind one trait. This module is the only place that knows
//! the Engine API: [`engine_api::BollardDocker`] speaks it through bollard, and
//! [`fake::FakeDocker`] (feature `testing`) plays an engine in memory so the
//! deploy pipeline can be driven without one. Everything else asks for images,
//! containers, execs, logs, networks and volumes in Berth's own types below.

mod engine_api;
#[cfg(any(test, feature = "testing"))]
pub mod fake;

pub use engine_api::BollardDocker;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::StreamExt;
use serde::Serialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// `berth.instance=<instance>` is on everything Berth runs, so installations
/// sharing an engine never touch each other's things.
pub const LABEL_INSTANCE: &str = "berth.instance";
/// The application a container runs (its ID).
pub const LABEL_APP: &str = "berth.app";
/// The deployment a container runs (its ID).
pub const LABEL_DEPLOYMENT: &str = "berth.deployment";
/// The database service a container or volume belongs to (its ID).
pub const LABEL_SERVICE: &str = "berth.service";
/// The backup a restore drill's throwaway container restores.
pub const LABEL_DRILL: &str = "berth.drill";
/// What a container is to Berth when it is none of the above (`proxy`, `oneoff`).
pub const LABEL_ROLE: &str = "berth.role";

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("cannot connect to the Docker engine at {host}: {reason}")]
    Unreachable { host: String, reason: String },
    #[error("the Docker engine did not answer within {0} s")]
    Timeout(u64),
    #[error("{0} does not exist")]
    NotFound(String),
    /// The engine answered and said no, in its own words (a port already in use,
    /// a name taken, a bad image).
    #[error("Docker refused: {message}")]
    Refused { status: u16, message: String },
    /// A stream (pull, build, logs, exec) broke off.
    #[error("docker: {0}")]
    Stream(String),
}

impl DockerError {
    /// The engine itself is gone (stopped, restarting, unreachable), as opposed
    /// to the engine refusing one request.
    pub fn engine_gone(&self) -> bool {
        matches!(self, DockerError::Unreachable { .. } | DockerError::Timeout(_))
    }
}

impl crate::Classify for DockerError {
    fn kind(&self) -> crate::ErrorKind {
        match self {
            DockerError::Unreachable { .. } | DockerError::Timeout(_) => crate::ErrorKind::Unavailable,
            DockerError::NotFound(_) => crate::ErrorKind::NotFound,
            DockerError::Refused { message, .. } => crate::ErrorKind::Conflict {
                field: "docker",
                message: format!("Docker refused: {message}"),
            },
            DockerError::Stream(_) => crate::ErrorKind::Internal,
        }
    }
}

/// What the engine says about itself.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DockerInfo {
    pub version: String,
    pub api_version: String,
}

/// Registry credentials for one pull.
#[derive(Clone)]
pub struct RegistryAuth {
    pub username: String,
    pub password: Option<String>,
    /// The registry host, e.g. `ghcr.io` (Docker Hub when `None`).
    pub server: Option<String>,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// How Docker restarts a container when it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    No,
    Always,
    UnlessStopped,
    OnFailure,
}

/// Where a mount comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSource {
    /// A named volume (created by Docker when missing).
    Volume(String),
    /// A path on the Docker host.
    Bind(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub source: MountSource,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

/// A container port published on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub container_port: u16,
    pub proto: Proto,
    pub host_ip: String,
    pub host_port: u16,
}

/// Which network a new container joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    /// No network at all (exec only).
    None,
    /// A user-defined bridge, with the DNS names other containers there resolve it by.
    Bridge { name: String, aliases: Vec<String> },
}

/// Everything a new container is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub env: Vec<String>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub labels: HashMap<String, String>,
    pub exposed: Vec<(u16, Proto)>,
    pub publish: Vec<Publish>,
    pub network: Network,
    pub restart: Restart,
    pub memory_bytes: Option<i64>,
    pub nano_cpus: Option<i64>,
    /// The container's CPU weight against its neighbours when the cores are
    /// contended (Docker's `CpuShares`; 1024 is everyone's default): not a
    /// limit, only who waits when all want to run.
    pub cpu_shares: Option<i64>,
    pub mounts: Vec<Mount>,
    /// Written into the container after it is created and before it starts
    /// (through Docker's archive API, so into its volumes too).
    pub files: Vec<FileSpec>,
    /// Extra groups (numeric IDs) the process runs with: the Docker socket's
    /// group for Berth's own container, and nothing else.
    pub group_add: Vec<String>,
    /// Docker's own health check (`docker ps` shows it): for the containers
    /// `berth install` runs; apps are probed by the worker instead.
    pub healthcheck: Option<HealthCheck>,
}

/// A command Docker runs in the container to judge its health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// The argument vector (Docker's `CMD` form: no shell).
    pub argv: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
}

/// A file a container is created with: configuration that carries a secret,
/// kept off the command line and out of the environment `docker inspect` shows.
#[derive(Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// Absolute path inside the container; its directory exists in the image
    /// (or is a mount point).
    pub path: String,
    pub contents: Vec<u8>,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
}

impl std::fmt::Debug for FileSpec {
    /// The contents are secret: only their size is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSpec")
            .field("path", &self.path)
            .field("bytes", &self.contents.len())
            .field("mode", &format_args!("{:o}", self.mode))
            .finish()
    }
}

impl FileSpec {
    /// A tar archive holding this file alone, by its base name, to extract in
    /// its directory; `None` for a path that is not absolute or has no name.
    pub fn archive(&self) -> Option<(String, Vec<u8>)> {
        let (dir, name) = self.path.rsplit_once('/')?;
        if !self.path.starts_with('/') || name.is_empty() {
            return None;
        }
        let mut header = tar::Header::new_gnu();
        header.set_size(self.contents.len() as u64);
        header.set_mode(self.mode);
        header.set_uid(self.uid);
        header.set_gid(self.gid);
        header.set_mtime(0);
        let mut b = tar::Builder::new(Vec::new());
        b.append_data(&mut header, name, self.contents.as_slice()).ok()?;
        let bytes = b.into_inner().ok()?;
        Some((if dir.is_empty() { "/".into() } else { dir.into() }, bytes))
    }
}

impl ContainerSpec {
    /// A container of `image` named `name` with nothing else set.
    pub fn new(name: impl Into<String>, image: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            image: image.into(),
            env: Vec::new(),
            entrypoint: None,
            cmd: None,
            labels: HashMap::new(),
            exposed: Vec::new(),
            publish: Vec::new(),
            network: Network::None,
            restart: Restart::No,
            memory_bytes: None,
            nano_cpus: None,
            cpu_shares: None,
            mounts: Vec::new(),
            files: Vec::new(),
            group_add: Vec::new(),
            healthcheck: None,
        }
    }
}

/// One reading of a container's counters (Docker's stats API, one shot):
/// cumulative, so figures per second come from two readings
/// (`crate::metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContainerStats {
    /// CPU time the container used, and the host's, in nanoseconds since boot.
    pub cpu_total_ns: u64,
    pub system_total_ns: u64,
    pub online_cpus: u32,
    /// The cgroup's memory usage (page cache included), its inactive file
    /// cache (cgroup v2 `inactive_file`, v1 `total_inactive_file`), and the
    /// limit (the host's memory when none is set).
    pub memory_usage: u64,
    pub memory_inactive_file: u64,
    pub memory_limit: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
}

impl ContainerStats {
    /// Memory in use as `docker stats` shows it: the usage less the inactive
    /// file cache, which the kernel drops under pressure (counting it makes
    /// a container that only read files look like it leaks).
    pub fn memory_used(&self) -> u64 {
        self.memory_usage.saturating_sub(self.memory_inactive_file)
    }
}

/// A container's state as Docker reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunState {
    /// Docker's word: `created`, `running`, `restarting`, `exited`, `dead` ...
    pub status: String,
    pub running: bool,
    pub restarting: bool,
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    /// Docker's health check verdict (`starting`, `healthy`, `unhealthy`),
    /// for containers that have one.
    pub health: Option<String>,
}

impl RunState {
    /// Running, and not between two restarts of a crash loop.
    pub fn is_up(&self) -> bool {
        self.running && !self.restarting
    }

    /// Why it is not up, in words for a person.
    pub fn down_reason(&self) -> String {
        if self.oom_killed {
            "the container was OOM-killed (raise its memory limit)".to_owned()
        } else {
            format!("the container exited with code {}", self.exit_code.unwrap_or(-1))
        }
    }
}

/// One container, inspected.
#[derive(Clone, Default)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub image: String,
    pub labels: HashMap<String, String>,
    /// `NAME=value` as the container was created with (secrets among them).
    pub env: Vec<String>,
    /// Its command's arguments (`Config.Cmd`), as created.
    pub cmd: Vec<String>,
    pub state: RunState,
    /// Its address on each network it is attached to.
    pub addresses: HashMap<String, String>,
    /// How often Docker's restart policy restarted it.
    pub restart_count: i64,
    /// When it was made (absent if Docker's date did not parse).
    pub created: Option<chrono::DateTime<chrono::Utc>>,
    /// Its CPU weight (`HostConfig.CpuShares`; 0 is Docker's default, 1024).
    pub cpu_shares: i64,
}

impl std::fmt::Debug for ContainerInfo {
    // The environment carries secrets: only its names are printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.env.iter().map(|e| e.split('=').next().unwrap_or("")).collect();
        f.debug_struct("ContainerInfo")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("image", &self.image)
            .field("labels", &self.labels)
            .field("env", &names)
            .field("cmd", &self.cmd.len())
            .field("state", &self.state)
            .field("addresses", &self.addresses)
            .field("restart_count", &self.restart_count)
            .field("created", &self.created)
            .field("cpu_shares", &self.cpu_shares)
            .finish()
    }
}

/// One container in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSummary {
    pub id: String,
    pub name: String,
    pub labels: HashMap<String, String>,
    /// Docker's status word (`running`, `exited` ...).
    pub state: String,
    /// The image as Docker lists it: a name, or an ID when untagged (the
    /// legacy builder's step containers).
    pub image: String,
    /// When it was created (Unix seconds).
    pub created: i64,
    /// Its address on each network it is attached to.
    pub addresses: HashMap<String, String>,
}

impl ContainerSummary {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }
}

/// A label filter: the key must be present, with this value when one is given.
pub type LabelFilter<'a> = &'a [(&'a str, Option<&'a str>)];

/// An argument vector to run in a container, with extra environment (how secrets
/// reach client programs: never in argv).
#[derive(Clone, PartialEq, Eq)]
pub struct Exec {
    pub argv: Vec<String>,
    pub env: Vec<String>,
}

impl Exec {
    pub fn argv<I: IntoIterator<Item = S>, S: Into<String>>(argv: I) -> Self {
        Self {
            argv: argv.into_iter().map(Into::into).collect(),
            env: Vec::new(),
        }
    }
}

impl std::fmt::Debug for Exec {
    // The environment carries passwords: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exec")
            .field("argv", &self.argv)
            .field("env", &format!("<{} variables>", self.env.len()))
            .finish()
    }
}

/// How an exec ended.
#[derive(Debug, Default)]
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
        let tail: Vec<&str> = s.trim().lines().rev().take(3).collect();
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

/// Standard input for an exec.
pub type Stdin<'a> = Option<&'a mut (dyn AsyncRead + Unpin + Send)>;
/// Where an exec's standard output goes (kept in [`ExecOutcome::stdout`] when `None`).
pub type Sink<'a> = Option<&'a mut (dyn AsyncWrite + Unpin + Send)>;

/// An image build from a tar context on disk.
#[derive(Debug, Clone)]
pub struct BuildSpec {
    /// The build context, packed as a tar file.
    pub context: PathBuf,
    /// The Dockerfile's path inside the context.
    pub dockerfile: String,
    pub tag: String,
    pub target: Option<String>,
    pub args: Vec<(String, String)>,
    /// Pull every base image afresh rather than use a copy on this host (which
    /// may be another tenant's private image).
    pub pull: bool,
    /// The build's CPU weight (Docker's `cpushares` for its step containers;
    /// 1024 is a container's default), `None` for Docker's default.
    pub cpu_shares: Option<i32>,
}

/// What a build says as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildEvent {
    /// Output of the builder (`Step 2/5 : RUN make`, the commands' output).
    Output(String),
    /// The build failed with this message.
    Failed(String),
}

/// Which of a container's outputs a log chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Output {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogChunk {
    pub output: Output,
    pub bytes: Vec<u8>,
}

/// Which of a container's logs to read.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogOptions {
    pub follow: bool,
    /// The last N lines (all when `None`).
    pub tail: Option<u32>,
    /// Only lines since this UNIX time.
    pub since: Option<i64>,
}

/// A change Docker reports on its event stream (containers only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    /// `start`, `die`, `oom`, `destroy` ...
    pub action: String,
    pub container: String,
    pub labels: HashMap<String, String>,
}

/// Everything Berth asks of a Docker engine. Methods take and return Berth's
/// types; "already so" answers (starting a running container, removing a
/// missing one) are successes, so every caller is idempotent without checking.
pub trait DockerApi: Send + Sync {
    /// Pings the engine and reads its version (answers may be a couple of seconds old).
    fn info(&self) -> BoxFuture<'_, Result<DockerInfo, DockerError>>;
    /// Where the engine is expected, for messages.
    fn host(&self) -> String;
    /// The engine's data root (`DockerRootDir`: images, layers, volumes), as
    /// a path on its host.
    fn data_root(&self) -> BoxFuture<'_, Result<String, DockerError>>;

    // Images.
    fn image_exists<'a>(&'a self, image: &'a str) -> BoxFuture<'a, Result<bool, DockerError>>;
    /// Pulls `image`; the stream carries progress lines and ends when it is done.
    fn pull(&self, image: &str, auth: Option<RegistryAuth>) -> BoxStream<'static, Result<String, DockerError>>;
    /// Gives `source` the extra name `target` (`repo:tag`).
    fn tag_image<'a>(&'a self, source: &'a str, target: &'a str) -> BoxFuture<'a, Result<(), DockerError>>;
    /// Removes an image by name (a missing one is fine).
    fn remove_image<'a>(&'a self, image: &'a str) -> BoxFuture<'a, Result<(), DockerError>>;
    /// The `repo:tag` names of the images whose repository is `repo`.
    fn image_tags<'a>(&'a self, repo: &'a str) -> BoxFuture<'a, Result<Vec<String>, DockerError>>;
    /// Builds an image; the stream ends after success or a [`BuildEvent::Failed`].
    /// Dropping it stops the build.
    fn build(&self, spec: BuildSpec) -> BoxStream<'static, Result<BuildEvent, DockerError>>;

    // Containers.
    fn create_container<'a>(&'a self, spec: &'a ContainerSpec) -> BoxFuture<'a, Result<(), DockerError>>;
    fn start_container<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), DockerError>>;
    /// Changes a container's CPU weight in place (running, it keeps running).
    fn set_cpu_shares<'a>(&'a self, name: &'a str, shares: i64) -> BoxFuture<'a, Result<(), DockerError>>;
    /// One reading of a container's counters.
    fn stats<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<ContainerStats, DockerError>>;
    /// Gives a container a new name (its network aliases stay).
    fn rename_container<'a>(&'a self, name: &'a str, to: &'a str) -> BoxFuture<'a, Result<(), DockerError>>;
    /// Stops with SIGTERM, then SIGKILL after `grace` (whole seconds).
    fn stop_container<'a>(&'a self, name: &'a str, grace: Duration) -> BoxFuture<'a, Result<(), DockerError>>;
    /// Sends the container's stop signal (its image's STOPSIGNAL, else SIGTERM)
    /// and returns at once; a container already gone or ended is fine.
    fn terminate_container<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), DockerError>>;
    /// Removes (forcibly), with its anonymous volumes when `volumes`.
    fn remove_container<'a>(&'a self, name: &'a str, volumes: bool) -> BoxFuture<'a, Result<(), DockerError>>;
    /// `None` when there is no such container.
    fn inspect_container<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<ContainerInfo>, DockerError>>;
    /// Every container (running or not) carrying these labels.
    fn list_containers<'a>(
        &'a self,
        labels: LabelFilter<'a>,
    ) -> BoxFuture<'a, Result<Vec<ContainerSummary>, DockerError>>;
    /// Waits for the container to stop; its exit code.
    fn wait_container<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<i64, DockerError>>;
    /// Runs `exec` in the container: feeds `stdin` (then closes it), writes standard
    /// output to `sink` (or keeps it), and returns the exit code.
    fn exec<'a>(
        &'a self,
        container: &'a str,
        exec: &'a Exec,
        stdin: Stdin<'a>,
        sink: Sink<'a>,
    ) -> BoxFuture<'a, Result<ExecOutcome, StreamError>>;
    fn logs(&self, container: &str, options: LogOptions) -> BoxStream<'static, Result<LogChunk, DockerError>>;
    /// Container events for this instance's containers, from now on.
    fn events(&self, instance: &str) -> BoxStream<'static, Result<ContainerEvent, DockerError>>;
    /// Where a process on this host reaches `port` of a container attached to `network`.
    fn endpoint(&self, info: &ContainerInfo, network: &str, port: u16) -> Option<SocketAddr> {
        let ip: std::net::IpAddr = info.addresses.get(network)?.parse().ok()?;
        Some(SocketAddr::new(ip, port))
    }

    // Networks and volumes.
    /// Creates a bridge network unless it exists.
    fn ensure_network<'a>(
        &'a self,
        name: &'a str,
        labels: &'a HashMap<String, String>,
    ) -> BoxFuture<'a, Result<(), DockerError>>;
    /// Attaches a container to a network (already attached is fine).
    fn connect_network<'a>(
        &'a self,
        network: &'a str,
        container: &'a str,
        aliases: &'a [String],
    ) -> BoxFuture<'a, Result<(), DockerError>>;
    fn remove_network<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), DockerError>>;
    /// The names of the networks carrying these labels.
    fn list_networks<'a>(&'a self, labels: LabelFilter<'a>) -> BoxFuture<'a, Result<Vec<String>, DockerError>>;
    /// The host's address on a bridge network (its gateway): where a container
    /// on it reaches a server on the Docker host. `None` when unknown.
    fn network_gateway<'a>(&'a self, _name: &'a str) -> BoxFuture<'a, Result<Option<std::net::IpAddr>, DockerError>> {
        Box::pin(async { Ok(None) })
    }
    /// Creates a named volume unless it exists.
    fn ensure_volume<'a>(
        &'a self,
        name: &'a str,
        labels: &'a HashMap<String, String>,
    ) -> BoxFuture<'a, Result<(), DockerError>>;
    fn remove_volume<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), DockerError>>;
    /// The names of the volumes carrying these labels.
    fn list_volumes<'a>(&'a self, labels: LabelFilter<'a>) -> BoxFuture<'a, Result<Vec<String>, DockerError>>;
}

/// Pulls `image` unless the engine has it, reporting progress lines to `progress`.
pub async fn ensure_image(
    docker: &dyn DockerApi,
    image: &str,
    auth: Option<RegistryAuth>,
    mut progress: impl FnMut(&str) + Send,
) -> Result<(), DockerError> {
    if docker.image_exists(image).await? {
        return Ok(());
    }
    pull(docker, image, auth, &mut progress).await
}

/// Pulls `image` (always), reporting each new progress line once.
pub async fn pull(
    docker: &dyn DockerApi,
    image: &str,
    auth: Option<RegistryAuth>,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<(), DockerError> {
    let mut stream = docker.pull(image, auth);
    let mut last = String::new();
    while let Some(step) = stream.next().await {
        let line = step?;
        if line != last {
            progress(&line);
            last = line;
        }
    }
    Ok(())
}

/// Stops (after `grace`) and removes a container, logging what goes wrong; a
/// missing container is fine.
pub async fn stop_and_remove(docker: &dyn DockerApi, name: &str, grace: Duration) {
    tracing::debug!(container = name, "stopping");
    let _ = docker.stop_container(name, grace).await;
    tracing::debug!(container = name, "stopped; removing");
    if let Err(e) = docker.remove_container(name, false).await {
        tracing::warn!(error = %e, container = name, "removing container");
    }
    tracing::debug!(container = name, "removed");
}

/// Runs `exec` with no input and keeps its output, bounded by `timeout`.
pub async fn exec_capture(
    docker: &dyn DockerApi,
    container: &str,
    exec: &Exec,
    timeout: Duration,
) -> Result<ExecOutcome, DockerError> {
    match tokio::time::timeout(timeout, docker.exec(container, exec, None, None)).await {
        Err(_) => Err(DockerError::Timeout(timeout.as_secs())),
        Ok(Ok(o)) => Ok(o),
        Ok(Err(StreamError::Docker(e))) => Err(e),
        Ok(Err(StreamError::Input(e) | StreamError::Output(e))) => Err(DockerError::Stream(e.to_string())),
    }
}

/// `repo[:tag]` → (`repo`, `tag`); a digest reference keeps its digest in `repo`.
pub fn split_tag(image: &str) -> (&str, &str) {
    if image.contains('@') {
        return (image, "");
    }
    let slash = image.rfind('/').map(|i| i + 1).unwrap_or(0);
    match image[slash..].rfind(':') {
        Some(i) => (&image[..slash + i], &image[slash + i + 1..]),
        None => (image, "latest"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_split_after_the_last_slash() {
        assert_eq!(split_tag("nginx"), ("nginx", "latest"));
        assert_eq!(split_tag("localhost:5000/app:v1"), ("localhost:5000/app", "v1"));
        assert_eq!(split_tag("localhost:5000/app"), ("localhost:5000/app", "latest"));
        assert_eq!(split_tag("app@sha256:abc"), ("app@sha256:abc", ""));
    }

    #[test]
    fn exec_debug_never_prints_the_environment() {
        let e = Exec {
            argv: vec!["psql".into()],
            env: vec!["PGPASSWORD=hunter2".into()],
        };
        assert!(!format!("{e:?}").contains("hunter2"));
    }
}
