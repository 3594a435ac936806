//! [`DockerApi`] over the Docker Engine API, through bollard: the only file in
//! Berth that imports it. Each call gets the version negotiated once with the
//! engine, every error is mapped once ([`map`]), and "already so" answers (304,
//! a 404 on removal) become successes.

use super::*;
use crate::config::DockerConfig;
use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, Mount as BMount, MountType, NetworkConnectRequest,
    NetworkCreateRequest, NetworkingConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters as q;
use futures::FutureExt;
use std::sync::Mutex;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long an answer about the engine's reachability is reused: every page
/// shows Docker's state, and asking the engine on each view is waste
/// (docs/BENCHMARKS.md).
const STATUS_TTL: Duration = Duration::from_secs(2);
/// How long the engine's version is reused while it keeps answering pings.
/// Docker 20.10's `GET /version` runs `runc --version` and `docker-init
/// --version` each time (7.6 ms of dockerd's CPU against under 0.4 ms for
/// `GET /_ping`, docs/BENCHMARKS.md), and the reconciler asks on every pass;
/// an engine upgraded in place shows its new version within this time.
const VERSION_TTL: Duration = Duration::from_secs(60);
const STDOUT_KEEP: usize = 1 << 20;
const STDERR_KEEP: usize = 4096;

/// The real engine, over `DOCKER_HOST` or the default local socket.
pub struct BollardDocker {
    client: Result<bollard::Docker, String>,
    host: String,
    timeout: Duration,
    last: Mutex<Option<(Instant, Result<DockerInfo, String>)>>,
    /// The version read at the last `GET /version`, forgotten when a ping fails.
    version: Mutex<Option<(Instant, DockerInfo)>>,
    negotiated: tokio::sync::OnceCell<bollard::Docker>,
}

/// The one place a bollard error becomes Berth's.
fn map(e: BollardError) -> DockerError {
    match e {
        BollardError::DockerResponseServerError {
            status_code: 404,
            message,
        } => DockerError::NotFound(message),
        BollardError::DockerResponseServerError { status_code, message } => DockerError::Refused {
            status: status_code,
            message,
        },
        BollardError::DockerStreamError { error } => DockerError::Stream(error),
        BollardError::RequestTimeoutError => DockerError::Timeout(0),
        e @ (BollardError::HyperResponseError { .. }
        | BollardError::IOError { .. }
        | BollardError::HyperLegacyError { .. }
        | BollardError::SocketNotFoundError(_)) => DockerError::Unreachable {
            host: String::new(),
            reason: e.to_string(),
        },
        other => DockerError::Stream(other.to_string()),
    }
}

/// Treats "not found" as done (removing what is gone, stopping what is gone).
fn gone_is_fine(r: Result<(), BollardError>) -> Result<(), DockerError> {
    match r.map_err(map) {
        Err(DockerError::NotFound(_)) => Ok(()),
        // 304: already in the asked state.
        Err(DockerError::Refused { status: 304, .. }) => Ok(()),
        // Someone else is removing it already: the outcome asked for is coming.
        Err(DockerError::Refused { status: 409, message }) if message.contains("already in progress") => Ok(()),
        other => other,
    }
}

/// A container's address on each network it is attached to (Docker lists a
/// stopped container's networks with empty addresses).
fn addresses(networks: Option<HashMap<String, EndpointSettings>>) -> HashMap<String, String> {
    networks
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(net, e)| e.ip_address.filter(|ip| !ip.is_empty()).map(|ip| (net, ip)))
        .collect()
}

fn label_filters(labels: LabelFilter<'_>) -> HashMap<String, Vec<String>> {
    let list = labels
        .iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{k}={v}"),
            None => (*k).to_owned(),
        })
        .collect();
    HashMap::from([("label".to_owned(), list)])
}

type Tx<T> = tokio::sync::mpsc::Sender<Result<T, DockerError>>;

/// Runs `work` on a task of its own, which hands items over a channel, so the
/// stream returned to callers owns everything it needs (bollard's streams borrow
/// the client). Dropping that stream closes the channel, and [`forward`] drops
/// the request at once: that is how a build or a pull is stopped.
fn detach<T, F, Fut>(
    docker: BoxFuture<'static, Result<bollard::Docker, DockerError>>,
    work: F,
) -> BoxStream<'static, Result<T, DockerError>>
where
    T: Send + 'static,
    F: FnOnce(bollard::Docker, Tx<T>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        match docker.await {
            Ok(d) => work(d, tx).await,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
            }
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|i| (i, rx)) }).boxed()
}

/// Sends the stream's items until it ends or the receiver is gone.
async fn forward<T, S>(stream: S, tx: &Tx<T>)
where
    S: futures::Stream<Item = Result<T, DockerError>>,
{
    futures::pin_mut!(stream);
    loop {
        tokio::select! {
            item = stream.next() => match item {
                Some(item) => if tx.send(item).await.is_err() { return },
                None => return,
            },
            _ = tx.closed() => return,
        }
    }
}

impl BollardDocker {
    /// Never fails: an engine that cannot even be addressed is reported by
    /// [`DockerApi::info`], so Berth starts and the UI can explain the problem.
    pub fn new(config: &DockerConfig) -> Self {
        let host = config
            .host
            .clone()
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned());
        let t = config.timeout_secs;
        let client = match config.host.as_deref() {
            Some(h) if h.starts_with("unix://") => {
                bollard::Docker::connect_with_unix(h, t, bollard::API_DEFAULT_VERSION)
            }
            Some(h) if h.starts_with("tcp://") || h.starts_with("http://") => {
                bollard::Docker::connect_with_http(h, t, bollard::API_DEFAULT_VERSION)
            }
            Some(h) => Err(BollardError::UnsupportedURISchemeError { uri: h.to_owned() }),
            None => bollard::Docker::connect_with_defaults().map(|d| d.with_timeout(Duration::from_secs(t))),
        }
        .map_err(|e| e.to_string());
        Self {
            client,
            host,
            timeout: Duration::from_secs(t),
            last: Mutex::new(None),
            version: Mutex::new(None),
            negotiated: tokio::sync::OnceCell::new(),
        }
    }

    fn unreachable(&self, reason: impl std::fmt::Display) -> DockerError {
        DockerError::Unreachable {
            host: self.host.clone(),
            reason: reason.to_string(),
        }
    }

    /// Names the host in connection errors, and the configured timeout in timeouts.
    fn fix(&self, e: DockerError) -> DockerError {
        match e {
            DockerError::Unreachable { reason, .. } => self.unreachable(reason),
            DockerError::Timeout(_) => DockerError::Timeout(self.timeout.as_secs()),
            other => other,
        }
    }

    fn err(&self, e: BollardError) -> DockerError {
        self.fix(map(e))
    }

    /// bollard defaults to a newer API than older engines (Debian's 20.10 speaks
    /// 1.41) accept, and newest engines drop old versions: ask the engine once.
    async fn docker(&self) -> Result<bollard::Docker, DockerError> {
        let base = self.client.as_ref().map_err(|r| self.unreachable(r))?.clone();
        let docker = self
            .negotiated
            .get_or_try_init(|| async {
                tokio::time::timeout(self.timeout, base.negotiate_version())
                    .await
                    .map_err(|_| DockerError::Timeout(self.timeout.as_secs()))?
                    .map_err(|e| self.unreachable(e))
            })
            .await?;
        Ok(docker.clone())
    }

    /// The client for a detached stream (owned, so the stream can be `'static`).
    fn docker_owned(&self) -> BoxFuture<'static, Result<bollard::Docker, DockerError>> {
        let ready = self.negotiated.get().cloned();
        let base = self.client.clone();
        let host = self.host.clone();
        let timeout = self.timeout;
        async move {
            if let Some(d) = ready {
                return Ok(d);
            }
            let base = base.map_err(|reason| DockerError::Unreachable {
                host: host.clone(),
                reason,
            })?;
            tokio::time::timeout(timeout, base.negotiate_version())
                .await
                .map_err(|_| DockerError::Timeout(timeout.as_secs()))?
                .map_err(|e| DockerError::Unreachable {
                    host,
                    reason: e.to_string(),
                })
        }
        .boxed()
    }

    /// Whether the engine answers (a ping), and its version (read again only
    /// after [`VERSION_TTL`], or after the engine stopped answering).
    async fn ask(&self) -> Result<DockerInfo, DockerError> {
        let client = self.client.as_ref().map_err(|r| self.unreachable(r))?;
        let late = |_| DockerError::Timeout(self.timeout.as_secs());
        let pinged = tokio::time::timeout(self.timeout, client.ping())
            .await
            .map_err(late)
            .and_then(|r| r.map_err(|e| self.unreachable(e)));
        if let Err(e) = pinged {
            *self.version.lock().expect("not poisoned") = None;
            return Err(e);
        }
        if let Some((at, known)) = self.version.lock().expect("not poisoned").as_ref() {
            if at.elapsed() < VERSION_TTL {
                return Ok(known.clone());
            }
        }
        let version = tokio::time::timeout(self.timeout, client.version())
            .await
            .map_err(late)?
            .map_err(|e| self.unreachable(e))?;
        let info = DockerInfo {
            version: version.version.unwrap_or_default(),
            api_version: version.api_version.unwrap_or_default(),
        };
        *self.version.lock().expect("not poisoned") = Some((Instant::now(), info.clone()));
        Ok(info)
    }

    async fn exec_inner(
        &self,
        container: &str,
        exec: &Exec,
        stdin: Stdin<'_>,
        mut sink: Sink<'_>,
    ) -> Result<ExecOutcome, StreamError> {
        use bollard::exec::{CreateExecOptions, StartExecResults};
        let docker = self.docker().await?;
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
            .map_err(|e| self.err(e))?;
        let mut stdout = Vec::new();
        let mut stderr: Vec<u8> = Vec::new();
        let mut fed = 0u64;
        let mut cut = false;
        let has_stdin = stdin.is_some();
        if let StartExecResults::Attached { mut output, mut input } =
            docker.start_exec(&created.id, None).await.map_err(|e| self.err(e))?
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
                    match item.map_err(|e| self.err(e))? {
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
        // The stream can end a moment before Docker records the exit code.
        let mut exit_code = -1;
        for _ in 0..50 {
            let info = docker.inspect_exec(&created.id).await.map_err(|e| self.err(e))?;
            if info.running != Some(true) {
                exit_code = info.exit_code.unwrap_or(-1);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
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
}

fn create_body(spec: &ContainerSpec) -> ContainerCreateBody {
    let proto = |p: Proto| match p {
        Proto::Tcp => "tcp",
        Proto::Udp => "udp",
    };
    let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in &spec.publish {
        port_bindings
            .entry(format!("{}/{}", p.container_port, proto(p.proto)))
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: Some(p.host_ip.clone()),
                host_port: Some(p.host_port.to_string()),
            });
    }
    let mut exposed: Vec<String> = spec
        .exposed
        .iter()
        .map(|(port, p)| format!("{port}/{}", proto(*p)))
        .collect();
    exposed.extend(port_bindings.keys().cloned());
    exposed.sort();
    exposed.dedup();
    let mounts: Vec<BMount> = spec
        .mounts
        .iter()
        .map(|m| {
            let (typ, source) = match &m.source {
                MountSource::Volume(v) => (MountType::VOLUME, v.clone()),
                MountSource::Bind(p) => (MountType::BIND, p.clone()),
            };
            BMount {
                target: Some(m.target.clone()),
                source: Some(source),
                typ: Some(typ),
                read_only: Some(m.read_only),
                ..Default::default()
            }
        })
        .collect();
    let restart = match spec.restart {
        Restart::No => RestartPolicyNameEnum::NO,
        Restart::Always => RestartPolicyNameEnum::ALWAYS,
        Restart::UnlessStopped => RestartPolicyNameEnum::UNLESS_STOPPED,
        Restart::OnFailure => RestartPolicyNameEnum::ON_FAILURE,
    };
    let (network_mode, networking_config) = match &spec.network {
        Network::None => ("none".to_owned(), None),
        Network::Bridge { name, aliases } => (
            name.clone(),
            Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    name.clone(),
                    EndpointSettings {
                        aliases: (!aliases.is_empty()).then(|| aliases.clone()),
                        ..Default::default()
                    },
                )])),
            }),
        ),
    };
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        env: (!spec.env.is_empty()).then(|| spec.env.clone()),
        entrypoint: spec.entrypoint.clone(),
        cmd: spec.cmd.clone(),
        labels: Some(spec.labels.clone()),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        host_config: Some(HostConfig {
            network_mode: Some(network_mode),
            restart_policy: Some(RestartPolicy {
                name: Some(restart),
                maximum_retry_count: None,
            }),
            memory: spec.memory_bytes,
            nano_cpus: spec.nano_cpus,
            cpu_shares: spec.cpu_shares,
            mounts: (!mounts.is_empty()).then_some(mounts),
            port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
            group_add: (!spec.group_add.is_empty()).then(|| spec.group_add.clone()),
            ..Default::default()
        }),
        networking_config,
        healthcheck: spec.healthcheck.as_ref().map(|h| {
            let nanos = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
            bollard::models::HealthConfig {
                test: Some(
                    std::iter::once("CMD".to_owned())
                        .chain(h.argv.iter().cloned())
                        .collect(),
                ),
                interval: Some(nanos(h.interval)),
                timeout: Some(nanos(h.timeout)),
                retries: Some(i64::from(h.retries)),
                start_period: Some(nanos(h.start_period)),
                ..Default::default()
            }
        }),
        ..Default::default()
    }
}

/// Docker's statistics as [`ContainerStats`], as the `docker stats` command
/// reads them.
fn stats_of(r: bollard::models::ContainerStatsResponse) -> ContainerStats {
    let cpu = r.cpu_stats.unwrap_or_default();
    let memory = r.memory_stats.unwrap_or_default();
    let usage = memory.usage.unwrap_or(0);
    let detail = memory.stats.unwrap_or_default();
    // cgroup v2 names it inactive_file; v1 total_inactive_file (and counts
    // it in usage only below it).
    let inactive = detail
        .get("inactive_file")
        .or_else(|| detail.get("total_inactive_file"))
        .copied()
        .filter(|i| *i < usage)
        .unwrap_or(0);
    let (mut rx, mut tx) = (0, 0);
    for n in r.networks.unwrap_or_default().values() {
        rx += n.rx_bytes.unwrap_or(0);
        tx += n.tx_bytes.unwrap_or(0);
    }
    let (mut read, mut write) = (0, 0);
    for e in r
        .blkio_stats
        .and_then(|b| b.io_service_bytes_recursive)
        .unwrap_or_default()
    {
        match e.op.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("read") => read += e.value.unwrap_or(0),
            Some("write") => write += e.value.unwrap_or(0),
            _ => {}
        }
    }
    ContainerStats {
        cpu_total_ns: cpu.cpu_usage.and_then(|u| u.total_usage).unwrap_or(0),
        system_total_ns: cpu.system_cpu_usage.unwrap_or(0),
        online_cpus: cpu.online_cpus.unwrap_or(1).max(1),
        memory_usage: usage,
        memory_inactive_file: inactive,
        memory_limit: memory.limit.unwrap_or(0),
        rx_bytes: rx,
        tx_bytes: tx,
        read_bytes: read,
        write_bytes: write,
    }
}

/// The networks named exactly `name`, through the list: inspecting by name
/// fails once two share it (Docker before API 1.44 lets that happen).
async fn networks_named(
    docker: &bollard::Docker,
    name: &str,
) -> Result<Vec<bollard::models::Network>, bollard::errors::Error> {
    let filters = HashMap::from([("name".to_owned(), vec![name.to_owned()])]);
    let list = docker
        .list_networks(Some(q::ListNetworksOptionsBuilder::new().filters(&filters).build()))
        .await?;
    Ok(list.into_iter().filter(|n| n.name.as_deref() == Some(name)).collect())
}

impl DockerApi for BollardDocker {
    fn info(&self) -> BoxFuture<'_, Result<DockerInfo, DockerError>> {
        Box::pin(async move {
            if let Some((at, answer)) = self.last.lock().expect("not poisoned").as_ref() {
                if at.elapsed() < STATUS_TTL {
                    return answer.clone().map_err(|reason| self.unreachable(reason));
                }
            }
            let answer = self.ask().await;
            let remembered = match &answer {
                Ok(info) => Ok(info.clone()),
                Err(DockerError::Unreachable { reason, .. }) => Err(reason.clone()),
                Err(other) => Err(other.to_string()),
            };
            *self.last.lock().expect("not poisoned") = Some((Instant::now(), remembered));
            answer
        })
    }

    fn host(&self) -> String {
        self.host.clone()
    }

    fn data_root(&self) -> BoxFuture<'_, Result<String, DockerError>> {
        Box::pin(async move {
            let info = self.docker().await?.info().await.map_err(|e| self.err(e))?;
            info.docker_root_dir
                .filter(|d| !d.is_empty())
                .ok_or_else(|| DockerError::NotFound("the engine's data root".into()))
        })
    }

    fn image_exists<'a>(&'a self, image: &'a str) -> BoxFuture<'a, Result<bool, DockerError>> {
        Box::pin(async move {
            match self.docker().await?.inspect_image(image).await.map_err(|e| self.err(e)) {
                Ok(_) => Ok(true),
                Err(DockerError::NotFound(_)) => Ok(false),
                Err(e) => Err(e),
            }
        })
    }

    fn pull(&self, image: &str, auth: Option<RegistryAuth>) -> BoxStream<'static, Result<String, DockerError>> {
        let image = image.to_owned();
        detach(self.docker_owned(), move |docker, tx| async move {
            let (from, tag) = split_tag(&image);
            let options = q::CreateImageOptionsBuilder::new().from_image(from).tag(tag).build();
            let creds = auth.map(|a| bollard::auth::DockerCredentials {
                username: Some(a.username),
                password: a.password,
                serveraddress: a.server,
                ..Default::default()
            });
            let stream = docker.create_image(Some(options), None, creds).map(|item| match item {
                Ok(info) => Ok(info.status.unwrap_or_default()),
                Err(e) => Err(match map(e) {
                    DockerError::Stream(m) | DockerError::Refused { message: m, .. } | DockerError::NotFound(m) => {
                        DockerError::Stream(format!("pulling {image} failed: {m}"))
                    }
                    other => other,
                }),
            });
            forward(stream, &tx).await;
        })
    }

    fn tag_image<'a>(&'a self, source: &'a str, target: &'a str) -> BoxFuture<'a, Result<(), DockerError>> {
        Box::pin(async move {
            let (repo, tag) = split_tag(target);
            self.docker()
                .await?
                .tag_image(
                    source,
                    Some(q::TagImageOptionsBuilder::new().repo(repo).tag(tag).build()),
                )
                .await
                .map_err(|e| self.err(e))
        })
    }

    fn remove_image<'a>(&'a self, image: &'a str) -> BoxFuture<'a, Result<(), DockerError>> {
        Box::pin(async move {
            let r = self
                .docker()
                .await?
                .remove_image(
                    image,
                    Some(q::RemoveImageOptionsBuilder::new().force(true).build()),
                    None,
                )
                .await
                .map(|_| ());
            gone_is_fine(r).map_err(|e| self.fix(e))
        })
    }

    fn image_tags<'a>(&'a self, repo: &'a str) -> BoxFuture<'a, Result<Vec<String>, DockerError>> {
        Box::pin(async move {
            let filters = HashMap::from([("reference".to_owned(), vec![repo.to_owned()])]);
            let images = self
                .docker()
                .await?
                .list_images(Some(q::ListImagesOptionsBuilder::new().filters(&filters).build()))
                .await
                .map_err(|e| self.err(e))?;
            Ok(images.into_iter().flat_map(|i| i.repo_tags).collect())
        })
    }

    fn build(&self, spec: BuildSpec) -> BoxStream<'static, Result<BuildEvent, DockerError>> {
        detach(self.docker_owned(), move |docker, tx| async move {
            let file = match tokio::fs::File::open(&spec.context).await {
                Ok(f) => f,
                Err(e) => {
                    let _ = tx
                        .send(Err(DockerError::Stream(format!("reading the build context: {e}"))))
                        .await;
                    return;
                }
            };
            let body = bollard::body_try_stream(tokio_util::io::ReaderStream::new(file));
            let options = q::BuildImageOptions {
                dockerfile: spec.dockerfile,
                t: Some(spec.tag),
                target: spec.target.unwrap_or_default(),
                buildargs: Some(spec.args.into_iter().collect()),
                pull: spec.pull.then(|| "1".to_owned()),
                cpushares: spec.cpu_shares,
                rm: true,
                forcerm: true,
                // No labels: the legacy builder turns each into an extra step with
                // an intermediate container (~0.1 s each, docs/BENCHMARKS.md).
                version: q::BuilderVersion::BuilderV1,
                ..Default::default()
            };
            // The engine sends output in chunks that need not end at a line: the
            // splitter joins them, ends lines at \n or \r and caps each, so a
            // step printing one endless line costs bounded memory.
            let mut splitter = crate::lines::Splitter::default();
            let stream = docker.build_image(options, None, Some(body)).flat_map(move |item| {
                let events: Vec<Result<BuildEvent, DockerError>> = match item {
                    Ok(info) => {
                        let mut out = Vec::new();
                        if let Some(text) = info.stream {
                            splitter.push(text.as_bytes(), &mut |p: crate::lines::Piece| {
                                if !p.repaint && !p.text.is_empty() {
                                    out.push(Ok(BuildEvent::Output(p.text)));
                                }
                            });
                        }
                        if let Some(s) = info.status {
                            out.push(Ok(BuildEvent::Output(s)));
                        }
                        if let Some(e) = info.error_detail.and_then(|d| d.message) {
                            out.push(Ok(BuildEvent::Failed(e.trim().to_owned())));
                        }
                        out
                    }
                    Err(BollardError::DockerStreamError { error }) => vec![Ok(BuildEvent::Failed(error))],
                    Err(e) => vec![Err(map(e))],
                };
                futures::stream::iter(events)
            });
            forward(stream, &tx).await;
        })
    }

    fn create_container<'a>(&'a self, spec: &'a ContainerSpec) -> BoxFuture<'a, Result<(), DockerError>> {
        Box::pin(async move {
            let docker = self.docker().await?;
            docker
                .create_container(
                    Some(q::CreateContainerOptionsBuilder::new().name(&spec.name).build()),
                    create_body(spec),
                )
                .await
                .map_err(|e| self.err(e))?;
            // Its files before anything starts it; a container without them
            // would start without its configuration, so it goes again.
            for file in &spec.files {
                let written = match file.archive() {
                    None => Err(DockerError::Refused {
                        status: 400,
                        message: format!("{:?} is not an absolute file path", file.path),
                    }),
                    Some((dir, tar)) => docker
                        .upload_to_container(
                            &spec.name,
                            Some(q::UploadToContainerOptionsBuilder::new().path(&dir).build()),
                            bollard::body_full(tar.into()),
                        )
                        .await
                        .map_err(|e| self.err(e)),
                };
                if let Err(e) = written {
                    let _ = docker
                        .remove_container(
                            &spec.name,
                            Some(q::RemoveContainerOptionsBuilder::new().force(true).build()),
                        )
                        .await;
                    return Err(e);
                }
            }
            Ok(())
        })
    }

    fn start_container<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), DockerError>> {
        Box::pin(async move {
            match self
                .docker()
                .await?
                .start_container(name, None::<q::StartContainerOptions>)
                .await
                .map_err(|e| self.err(e))
            {
                Err(DockerError::Refused { status: 304, .. }) => Ok(()),
                other => other,
            }
        })
    }

    fn set_cpu_shares<'a>(&'a self, name: &'a str, shares: i64) -> BoxFuture<'a, Result<(), DockerError>> {
        Box::pin(async move {
            let update = bollard::models::ContainerUpdateBody {
                cpu_shares: Some(shares),
                ..Default::default()
            };
            self.docker()
                .await?
                .update_container(name, update)
                .await
                .map_err(|e| self.err(e))
        })
    }

    fn stats<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<ContainerStats, DockerError>> {
        Box::pin(async move {
            use futures::StreamExt;
            let docker = self.docker().await?;
            // One shot: no second reading a second later (the sampler keeps
            // its own previous reading).
            let options = q::StatsOptionsBuilder::new().stream(false).one_shot(true).build();
            let mut readings = docker.stats(name, Some(options));
            let r = readings
                .next()
                .await
                .ok_or_else(|| DockerError::Stream(format!("no statistics for {name}")))?
                .map_err(|e| self.err(e))?;
            Ok(stats_of(r))
        })
    }

    fn rename_container<'a>(&'a self, name: &'a str, to: &'a str) -> BoxFuture<'a, Result<(), DockerError>> {
        Box::pin(async move {
            self.docker()
                .await?
                .rename_container(name, q::RenameContainerOptionsBuilder::new().name(to).build())
                .await
                .map_err(|e| self.err(e))
        })
    }

    fn stop_container<'a>(&'a self, name: &'a str, grace: Duration) -> BoxFuture<'a, Result<(), DockerError>> {
        Box::pin(async move {
            let secs = grace.as_secs().min(i32::MAX as u64) as i32;
            let r = self
                .docker()
                .await?
                .stop_container(name, Some(q::StopContainerOptionsBuilder::new().t(secs).build()))
                .await;
            gone_is_fine(r).map_err(|e| self.fix(e))
        })
    }

    fn terminate_container<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), DockerError>> {
        Box::pin(async move {
            let docker = self.docker().await?;
            // The image's STOPSIGNAL, as `docker stop` sends: Docker treats only
            // that signal as a stop, and restarts (by the restart policy) a
            // container that ends on any other (nginx's images stop on SIGQUIT).
            let signal = match docker.inspect_container(name, None::<q::InspectContainerOptions>).await {
                Ok(info) => info
                    .config
                    .and_then(|c| c.stop_signal)
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "SIGTERM".to_owned()),
                Err(e) => return gone_is_fine(Err(e)).map_err(|e| self.fix(e)),
            };
            let r = docker
                .kill_container(
                    name,
                    Some(q::KillContainerOptionsBuilder::new().signal(&signal).build()),
                )
                .await;
            match r {
                // 409: not running (it ended already), which is what was asked for.
                Err(BollardError::DockerResponseServerError { status_code: 409, .. }) => Ok(()),
                r => gone_is_fine(r).map_err(|e| self.fix(e)),
            }
        })
    }

    fn remove_container<'a>(&'a self, name: &'a str, volumes: bool) -> BoxFuture<'a, Result<(), DockerError>> {
        Box::pin(async move {
            let r = self
                .docker()
                .await?
                .remove_container(
                    name,
                    Some(q::RemoveContainerOptionsBuilder::new().force(true).v(volumes).build()),
                )
                .await;
            gone_is_fine(r).map_err(|e| self.fix(e))
        })
    }

    fn inspect_container<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<ContainerInfo>, DockerError>> {
        Box::pin(async move {
            let info = match self
                .docker()
                .await?
                .inspect_container(name, None::<q::InspectContainerOptions>)
                .await
                .map_err(|e| self.err(e))
            {
                Ok(i) => i,
                Err(DockerError::NotFound(_)) => return Ok(None),
                Err(e) => return Err(e),
            };
            let s = info.state.unwrap_or_default();
            let addresses = addresses(info.network_settings.and_then(|n| n.networks));
            let config = info.config.unwrap_or_default();
            Ok(Some(ContainerInfo {
                id: info.id.unwrap_or_default(),
                name: info.name.unwrap_or_default().trim_start_matches('/').to_owned(),
                image: config.image.unwrap_or_default(),
                labels: config.labels.unwrap_or_default(),
                env: config.env.unwrap_or_default(),
                cmd: config.cmd.unwrap_or_default(),
                state: RunState {
                    status: s.status.map(|s| s.to_string()).unwrap_or_else(|| "unknown".into()),
                    running: s.running == Some(true),
                    restarting: s.restarting == Some(true),
                    exit_code: s.exit_code,
                    oom_killed: s.oom_killed == Some(true),
                    health: s
                        .health
                        .and_then(|h| h.status)
                        .map(|h| h.to_string())
                        .filter(|h| !h.is_empty() && h != "none"),
                },
                addresses,
                restart_count: info.restart_count.unwrap_or(0),
                created: info
                    .created
                    .and_then(|c| chrono::DateTime::parse_from_rfc3339(&c).ok())
                    .map(|c| c.to_utc()),
                cpu_shares: info.host_config.and_then(|h| h.cpu_shares).unwrap_or(0),
            }))
        })
    }

    fn list_containers<'a>(
        &'a self,
        labels: LabelFilter<'a>,
    ) -> BoxFuture<'a, Result<Vec<ContainerSummary>, DockerError>> {
        Box::pin(async move {
            let filters = label_filters(labels);
            let list = self
                .docker()
                .await?
                .list_containers(Some(
                    q::ListContainersOptionsBuilder::new()
                        .all(true)
                        .filters(&filters)
                        .build(),
                ))
                .await
                .map_err(|e| self.err(e))?;
            Ok(list
                .into_iter()
                .map(|c| ContainerSummary {
                    id: c.id.unwrap_or_default(),
                    name: c
                        .names
                        .and_then(|n| n.into_iter().next())
                        .map(|n| n.trim_start_matches('/').to_owned())
                        .unwrap_or_default(),
                    labels: c.labels.unwrap_or_default(),
                    state: c.state.map(|s| s.to_string()).unwrap_or_default(),
                    image: c.image.unwrap_or_default(),
                    created: c.created.unwrap_or_default(),
                    addresses: addresses(c.network_settings.and_then(|n| n.networks)),
                })
                .collect())
        })
    }

    fn wait_container<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<i64, DockerError>> {
        Box::pin(async move {
            let docker = self.docker().await?;
            let mut wait = docker.wait_container(name, None::<q::WaitContainerOptions>);
            let mut code = -1;
            while let Some(r) = wait.next().await {
                match r {
                    Ok(w) => code = w.status_code,
                    // bollard reports a non-zero exit as an error carrying the code.
                    Err(BollardError::DockerContainerWaitError { code: c, .. }) => code = c,
                    Err(e) => return Err(self.err(e)),
                }
            }
            Ok(code)
        })
    }

    fn exec<'a>(
        &'a self,
        container: &'a str,
        exec: &'a Exec,
        stdin: Stdin<'a>,
        sink: Sink<'a>,
    ) -> BoxFuture<'a, Result<ExecOutcome, StreamError>> {
        Box::pin(self.exec_inner(container, exec, stdin, sink))
    }

    fn logs(&self, container: &str, options: LogOptions) -> BoxStream<'static, Result<LogChunk, DockerError>> {
        let container = container.to_owned();
        detach(self.docker_owned(), move |docker, tx| async move {
            let tail = options.tail.map(|t| t.to_string()).unwrap_or_else(|| "all".into());
            let mut opts = q::LogsOptionsBuilder::new()
                .follow(options.follow)
                .stdout(true)
                .stderr(true)
                .tail(&tail);
            if let Some(since) = options.since {
                opts = opts.since(since.clamp(0, i32::MAX as i64) as i32);
            }
            let stream = docker.logs(&container, Some(opts.build())).map(|chunk| {
                let chunk = chunk.map_err(map)?;
                let output = match &chunk {
                    LogOutput::StdErr { .. } => Output::Stderr,
                    _ => Output::Stdout,
                };
                Ok(LogChunk {
                    output,
                    bytes: chunk.into_bytes().to_vec(),
                })
            });
            forward(stream, &tx).await;
        })
    }

    fn events(&self, instance: &str) -> BoxStream<'static, Result<ContainerEvent, DockerError>> {
        let filters = HashMap::from([
            ("type".to_owned(), vec!["container".to_owned()]),
            ("label".to_owned(), vec![format!("{LABEL_INSTANCE}={instance}")]),
        ]);
        detach(self.docker_owned(), move |docker, tx| async move {
            let stream = docker
                .events(Some(q::EventsOptionsBuilder::new().filters(&filters).build()))
                .map(|e| {
                    let e = e.map_err(map)?;
                    let actor = e.actor.unwrap_or_default();
                    let mut labels = actor.attributes.unwrap_or_default();
                    let container = labels.remove("name").unwrap_or_default();
                    Ok(ContainerEvent {
                        action: e.action.unwrap_or_default(),
                        container,
                        labels,
                    })
                });
            forward(stream, &tx).await;
        })
    }

    fn ensure_network<'a>(
        &'a self,
        name: &'a str,
        labels: &'a HashMap<String, String>,
    ) -> BoxFuture<'a, Result<(), DockerError>> {
        Box::pin(async move {
            let docker = self.docker().await?;
            // By exact name, through the list: inspecting by name fails once two
            // share it (Docker before API 1.44 lets that happen), and a failed
            // check would then make a third, and so on.
            let found = networks_named(&docker, name).await.map_err(|e| self.err(e))?;
            if !found.is_empty() {
                // Heal an earlier race: keep the oldest, remove empty extras.
                let mut found = found;
                found.sort_by(|a, b| a.created.cmp(&b.created));
                for extra in found.iter().skip(1) {
                    if let Some(id) = &extra.id {
                        let idle = docker
                            .inspect_network(id, None::<q::InspectNetworkOptions>)
                            .await
                            .is_ok_and(|n| n.containers.is_none_or(|c| c.is_empty()));
                        if idle {
                            tracing::warn!(network = name, id, "removing a duplicate network");
                            let _ = docker.remove_network(id).await;
                        }
                    }
                }
                return Ok(());
            }
            let req = NetworkCreateRequest {
                name: name.to_owned(),
                driver: Some("bridge".into()),
                labels: Some(labels.clone()),
                ..Default::default()
            };
            match docker.create_network(req).await {
                Ok(_) => Ok(()),
                // Another replica created it meanwhile.
                Err(_) if networks_named(&docker, name).await.is_ok_and(|l| !l.is_empty()) => Ok(()),
                Err(e) => Err(self.err(e)),
            }
        })
    }

    fn connect_network<'a>(
        &'a self,
        network: &'a str,
        container: &'a str,
        aliases: &'a [String],
    ) -> BoxFuture<'a, Result<(), DockerError>> {
        Box::pin(async move {
            let req = NetworkConnectRequest {
                container: container.to_owned(),
                endpoint_config: Some(EndpointSettings {
                    aliases: (!aliases.is_empty()).then(|| aliases.to_vec()),
                    ..Default::default()
                }),
            };
            match self
                .docker()
                .await?
                .connect_network(network, req)
                .await
                .map_err(|e| self.err(e))
            {
                // "endpoint with name … already exists in network": attached already.
                Err(DockerError::Refused { message, .. }) if message.contains("already exists") => Ok(()),
                other => other,
            }
        })
    }

    fn remove_network<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), DockerError>> {
        Box::pin(async move {
            let r = self.docker().await?.remove_network(name).await;
            gone_is_fine(r).map_err(|e| self.fix(e))
        })
    }

    fn list_networks<'a>(&'a self, labels: LabelFilter<'a>) -> BoxFuture<'a, Result<Vec<String>, DockerError>> {
        Box::pin(async move {
            let filters = label_filters(labels);
            let list = self
                .docker()
                .await?
                .list_networks(Some(q::ListNetworksOptionsBuilder::new().filters(&filters).build()))
                .await
                .map_err(|e| self.err(e))?;
            Ok(list.into_iter().filter_map(|n| n.name).collect())
        })
    }

    fn network_gateway<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<std::net::IpAddr>, DockerError>> {
        Box::pin(async move {
            let docker = self.docker().await?;
            let list = networks_named(&docker, name).await.map_err(|e| self.err(e))?;
            Ok(list
                .into_iter()
                .flat_map(|n| n.ipam.and_then(|i| i.config).unwrap_or_default())
                .find_map(|c| c.gateway.and_then(|g| g.parse().ok())))
        })
    }

    fn ensure_volume<'a>(
        &'a self,
        name: &'a str,
        labels: &'a HashMap<String, String>,
    ) -> BoxFuture<'a, Result<(), DockerError>> {
        Box::pin(async move {
            let docker = self.docker().await?;
            if docker.inspect_volume(name).await.is_ok() {
                return Ok(());
            }
            docker
                .create_volume(VolumeCreateRequest {
                    name: Some(name.to_owned()),
                    labels: Some(labels.clone()),
                    ..Default::default()
                })
                .await
                .map(|_| ())
                .map_err(|e| self.err(e))
        })
    }

    fn remove_volume<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), DockerError>> {
        Box::pin(async move {
            let r = self
                .docker()
                .await?
                .remove_volume(name, Some(q::RemoveVolumeOptionsBuilder::new().force(true).build()))
                .await;
            gone_is_fine(r).map_err(|e| self.fix(e))
        })
    }

    fn list_volumes<'a>(&'a self, labels: LabelFilter<'a>) -> BoxFuture<'a, Result<Vec<String>, DockerError>> {
        Box::pin(async move {
            let filters = label_filters(labels);
            let list = self
                .docker()
                .await?
                .list_volumes(Some(q::ListVolumesOptionsBuilder::new().filters(&filters).build()))
                .await
                .map_err(|e| self.err(e))?;
            Ok(list.volumes.unwrap_or_default().into_iter().map(|v| v.name).collect())
        })
    }
}
