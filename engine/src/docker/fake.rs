//! An engine in memory (feature `testing`), so the code that drives Docker can be
//! tested without one: images, containers and their states, networks, volumes,
//! scripted builds, and containers that behave as a test says (answer HTTP on a
//! loopback port, stay silent, exit with a code, get OOM-killed). It is a test
//! double of [`DockerApi`], nothing more: the real-engine tests stay as they are.

use super::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;

/// What containers of an image do once started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// Listen on every exposed port and answer each HTTP request with this
    /// status and body.
    Serve { status: u16, body: String },
    /// Run, listening nowhere.
    Silent,
    /// Exit at once with this code.
    Exit(i64),
    /// Get killed by the kernel for memory.
    Oom,
}

impl Behaviour {
    /// Answers 200 "ok".
    pub fn ok() -> Self {
        Behaviour::Serve {
            status: 200,
            body: "ok".into(),
        }
    }
}

/// How the next build goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildScript {
    /// Succeeds after `steps` steps; the image's containers behave as given.
    Succeed { steps: u32, behaviour: Behaviour },
    /// Fails at step `step` of `of` with `message`.
    FailAt { step: u32, of: u32, message: String },
    /// Prints its first step, then never finishes (until the build is dropped).
    Hang,
    /// The engine goes away during the build (the connection breaks).
    EngineStops,
}

struct FakeContainer {
    spec: ContainerSpec,
    id: String,
    state: RunState,
    /// The loopback address each exposed port answers on (Serve), or a closed
    /// one (Silent).
    ports: HashMap<u16, SocketAddr>,
    server: Option<tokio::task::JoinHandle<()>>,
    started: u32,
    created: chrono::DateTime<chrono::Utc>,
}

impl Drop for FakeContainer {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.abort();
        }
    }
}

/// What a test scripts an exec to answer.
pub type ExecScript = Arc<dyn Fn(&str, &Exec) -> ExecOutcome + Send + Sync>;

#[derive(Default)]
struct State {
    images: BTreeMap<String, Behaviour>,
    pullable: BTreeMap<String, Behaviour>,
    builds: std::collections::VecDeque<BuildScript>,
    containers: BTreeMap<String, FakeContainer>,
    networks: BTreeSet<String>,
    volumes: BTreeSet<String>,
    calls: Vec<String>,
    down: bool,
    exec: Option<ExecScript>,
    next_id: u64,
}

/// The fake engine. Cheap to share: clone the `Arc`.
#[derive(Default)]
pub struct FakeDocker {
    state: Mutex<State>,
}

impl FakeDocker {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().expect("not poisoned"))
    }

    /// An image the engine has.
    pub fn add_image(&self, image: &str, behaviour: Behaviour) {
        self.with(|s| s.images.insert(image.to_owned(), behaviour));
    }

    /// An image a pull succeeds for (any other pull fails as a registry would).
    pub fn add_pullable(&self, image: &str, behaviour: Behaviour) {
        self.with(|s| s.pullable.insert(image.to_owned(), behaviour));
    }

    /// How the next build goes (builds not scripted succeed in 3 steps with a
    /// container that answers 200).
    pub fn script_build(&self, script: BuildScript) {
        self.with(|s| s.builds.push_back(script));
    }

    /// How every exec answers (exit 0 with no output when not scripted).
    pub fn script_exec(&self, f: impl Fn(&str, &Exec) -> ExecOutcome + Send + Sync + 'static) {
        self.with(|s| s.exec = Some(Arc::new(f)));
    }

    /// The engine stops answering (`true`) or comes back.
    pub fn set_down(&self, down: bool) {
        self.with(|s| s.down = down);
    }

    /// The operations asked so far, e.g. `create web-1`, `remove web-1`.
    pub fn calls(&self) -> Vec<String> {
        self.with(|s| s.calls.clone())
    }

    /// Names of the containers that exist.
    pub fn container_names(&self) -> Vec<String> {
        self.with(|s| s.containers.keys().cloned().collect())
    }

    pub fn has_image(&self, image: &str) -> bool {
        self.with(|s| s.images.contains_key(image))
    }

    /// Makes a running container exit (as if it crashed) with this code.
    pub fn kill(&self, name: &str, code: i64) {
        self.with(|s| {
            if let Some(c) = s.containers.get_mut(name) {
                c.state.running = false;
                c.state.status = "exited".into();
                c.state.exit_code = Some(code);
                if let Some(srv) = c.server.take() {
                    srv.abort();
                }
            }
        });
    }

    fn check(&self, call: String) -> Result<(), DockerError> {
        self.with(|s| {
            s.calls.push(call);
            if s.down {
                Err(DockerError::Unreachable {
                    host: "fake".into(),
                    reason: "the fake engine is down".into(),
                })
            } else {
                Ok(())
            }
        })
    }

    fn boot(&self, name: &str) {
        self.with(|s| {
            let Some(behaviour) = s
                .containers
                .get(name)
                .and_then(|c| s.images.get(&c.spec.image).cloned())
            else {
                return;
            };
            let c = s.containers.get_mut(name).expect("checked");
            c.started += 1;
            c.state.status = "running".into();
            c.state.running = true;
            c.state.exit_code = None;
            c.state.oom_killed = false;
            match behaviour {
                Behaviour::Exit(code) => {
                    c.state.running = false;
                    c.state.status = "exited".into();
                    c.state.exit_code = Some(code);
                }
                Behaviour::Oom => {
                    c.state.running = false;
                    c.state.status = "exited".into();
                    c.state.exit_code = Some(137);
                    c.state.oom_killed = true;
                }
                Behaviour::Silent => {
                    for (port, _) in c.spec.exposed.clone() {
                        c.ports.insert(port, closed_port());
                    }
                }
                Behaviour::Serve { status, body } => {
                    let mut listeners = Vec::new();
                    for (port, _) in c.spec.exposed.clone() {
                        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
                        l.set_nonblocking(true).expect("nonblocking");
                        c.ports.insert(port, l.local_addr().expect("addr"));
                        listeners.push(l);
                    }
                    let answer = format!(
                        "HTTP/1.1 {status} Fake\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    c.server = Some(tokio::spawn(serve(listeners, answer)));
                }
            }
        });
    }
}

/// A loopback address nothing listens on.
fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    l.local_addr().expect("addr")
}

async fn serve(listeners: Vec<std::net::TcpListener>, answer: String) {
    let mut tasks = Vec::new();
    for l in listeners {
        let answer = answer.clone();
        tasks.push(tokio::spawn(async move {
            let Ok(l) = tokio::net::TcpListener::from_std(l) else {
                return;
            };
            while let Ok((mut conn, _)) = l.accept().await {
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = tokio::io::AsyncReadExt::read(&mut conn, &mut buf).await;
                    let _ = conn.write_all(answer.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        }));
    }
    struct AbortAll(Vec<tokio::task::JoinHandle<()>>);
    impl Drop for AbortAll {
        fn drop(&mut self) {
            for t in &self.0 {
                t.abort();
            }
        }
    }
    let _guard = AbortAll(tasks);
    futures::future::pending::<()>().await;
}

/// A running fake container answers on loopback, on its one network.
fn addresses(c: &FakeContainer) -> HashMap<String, String> {
    match &c.spec.network {
        Network::Bridge { name, .. } if c.state.running => HashMap::from([(name.clone(), "127.0.0.1".to_owned())]),
        _ => HashMap::new(),
    }
}

fn matches(labels: &HashMap<String, String>, filter: LabelFilter<'_>) -> bool {
    filter.iter().all(|(k, v)| match (labels.get(*k), v) {
        (Some(have), Some(want)) => have == want,
        (Some(_), None) => true,
        (None, _) => false,
    })
}

impl DockerApi for FakeDocker {
    fn info(&self) -> BoxFuture<'_, Result<DockerInfo, DockerError>> {
        Box::pin(async move {
            self.check("info".into())?;
            Ok(DockerInfo {
                version: "fake".into(),
                api_version: "1.41".into(),
            })
        })
    }

    fn data_root(&self) -> BoxFuture<'_, Result<String, DockerError>> {
        Box::pin(async move {
            self.check("info".into())?;
            Ok(std::env::temp_dir().display().to_string())
        })
    }

    fn host(&self) -> String {
        "fake://".into()
    }

    fn image_exists<'a>(&'a self, image: &'a str) -> BoxFuture<'a, Result<bool, DockerError>> {
        Box::pin(async move {
            self.check(format!("inspect image {image}"))?;
            Ok(self.has_image(image))
        })
    }

    fn pull(&self, image: &str, _auth: Option<RegistryAuth>) -> BoxStream<'static, Result<String, DockerError>> {
        let result = self.check(format!("pull {image}")).and_then(|()| {
            self.with(|s| match s.pullable.get(image).cloned() {
                Some(b) => {
                    s.images.insert(image.to_owned(), b);
                    Ok(format!("Status: Downloaded newer image for {image}"))
                }
                None => Err(DockerError::Stream(format!(
                    "pulling {image} failed: pull access denied for {image}, repository does not exist"
                ))),
            })
        });
        futures::stream::iter(vec![result]).boxed()
    }

    fn tag_image<'a>(&'a self, source: &'a str, target: &'a str) -> BoxFuture<'a, Result<(), DockerError>> {
        Box::pin(async move {
            self.check(format!("tag {source} {target}"))?;
            self.with(|s| match s.images.get(source).cloned() {
                Some(b) => {
                    s.images.insert(target.to_owned(), b);
                    Ok(())
                }
                None => Err(DockerError::NotFound(format!("No such image: {source}"))),
            })
        })
    }

    fn remove_image<'a>(&'a self, image: &'a str) -> BoxFuture<'a, Result<(), DockerError>> {
        Box::pin(async move {
            self.check(format!("remove image {image}"))?;
            self.with(|s| s.images.remove(image));
            Ok(())
        })
    }

    fn image_tags<'a>(&'a self, repo: &'a str) -> BoxFuture<'a, Result<Vec<String>, DockerError>> {
        Box::pin(async move {
            self.check(format!("list images {repo}"))?;
            Ok(self.with(|s| s.images.keys().filter(|i| split_tag(i).0 == repo).cloned().collect()))
        })
    }

    fn build(&self, spec: BuildSpec) -> BoxStream<'static, Result<BuildEvent, DockerError>> {
        if let Err(e) = self.check(format!("build {}", spec.tag)) {
            return futures::stream::iter(vec![Err(e)]).boxed();
        }
        let script = self.with(|s| s.builds.pop_front()).unwrap_or(BuildScript::Succeed {
            steps: 3,
            behaviour: Behaviour::ok(),
        });
        let step = |n: u32, of: u32| Ok(BuildEvent::Output(format!("Step {n}/{of} : RUN step {n}")));
        match script {
            BuildScript::Succeed { steps, behaviour } => {
                let mut events: Vec<_> = (1..=steps).map(|n| step(n, steps)).collect();
                events.push(Ok(BuildEvent::Output(format!("Successfully tagged {}", spec.tag))));
                self.with(|s| s.images.insert(spec.tag.clone(), behaviour));
                futures::stream::iter(events).boxed()
            }
            BuildScript::FailAt { step: at, of, message } => {
                let mut events: Vec<_> = (1..=at).map(|n| step(n, of)).collect();
                events.push(Ok(BuildEvent::Failed(message)));
                futures::stream::iter(events).boxed()
            }
            BuildScript::Hang => futures::stream::iter(vec![step(1, 2)])
                .chain(futures::stream::pending())
                .boxed(),
            BuildScript::EngineStops => {
                self.set_down(true);
                futures::stream::iter(vec![
                    step(1, 2),
                    Err(DockerError::Unreachable {
                        host: "fake".into(),
                        reason: "connection reset by peer".into(),
                    }),
                ])
                .boxed()
            }
        }
    }

    fn create_container<'a>(&'a self, spec: &'a ContainerSpec) -> BoxFuture<'a, Result<(), DockerError>> {
        Box::pin(async move {
            self.check(format!("create {}", spec.name))?;
            self.with(|s| {
                if s.containers.contains_key(&spec.name) {
                    return Err(DockerError::Refused {
                        status: 409,
                        message: format!("Conflict. The container name \"/{}\" is already in use", spec.name),
                    });
                }
                if !s.images.contains_key(&spec.image) {
                    return Err(DockerError::NotFound(format!("No such image: {}", spec.image)));
                }
                s.next_id += 1;
                let id = format!("{:064x}", s.next_id);
                s.containers.insert(
                    spec.name.clone(),
                    FakeContainer {
                        spec: spec.clone(),
                        id,
                        state: RunState {
                            status: "created".into(),
                            ..Default::default()
                        },
                        ports: HashMap::new(),
                        server: None,
                        started: 0,
                        created: chrono::Utc::now(),
                    },
                );
                Ok(())
            })
        })
    }

    fn start_container<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), DockerError>> {
        Box::pin(async move {
            self.check(format!("start {name}"))?;
            let running = self.with(|s| s.containers.get(name).map(|c| c.state.running));
            match running {
                None => Err(DockerError::NotFound(format!("No such container: {name}"))),
                Some(true) => Ok(()),
                Some(false) => {
                    self.boot(name);
                    Ok(())
                }
            }
        })
    }

    fn set_cpu_shares<'a>(&'a self, name: &'a str, shares: i64) -> BoxFuture<'a, Result<(), DockerError>> {
        Box::pin(async move {
            self.check(format!("update {name}"))?;
            self.with(|s| match s.containers.get_mut(name) {
                None => Err(DockerError::NotFound(format!("No such container: {name}"))),
                Some(c) => {
                    c.spec.cpu_shares = Some(shares);
                    Ok(())
                }
            })
        })
    }

    /// The fake's servers end on SIGTERM, as well-behaved servers do.
    fn terminate_container<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), DockerError>> {
        self.stop_container(name, Duration::ZERO)
    }

    fn stop_container<'a>(&'a self, name: &'a str, _grace: Duration) -> BoxFuture<'a, Result<(), DockerError>> {
        Box::pin(async move {
            self.check(format!("stop {name}"))?;
            self.with(|s| {
                if let Some(c) = s.containers.get_mut(name) {
                    if c.state.running {
                        c.state.running = false;
                        c.state.status = "exited".into();
                        c.state.exit_code = Some(0);
                    }
                    if let Some(srv) = c.server.take() {
                        srv.abort();
                    }
                }
            });
            Ok(())
        })
    }

    fn stats<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<ContainerStats, DockerError>> {
        Box::pin(async move {
            self.check(format!("stats {name}"))?;
            match self.with(|s| s.containers.contains_key(name)) {
                true => Ok(ContainerStats::default()),
                false => Err(DockerError::NotFound(format!("No such container: {name}"))),
            }
        })
    }

    fn rename_container<'a>(&'a self, name: &'a str, to: &'a str) -> BoxFuture<'a, Result<(), DockerError>> {
        Box::pin(async move {
            self.check(format!("rename {name} {to}"))?;
            self.with(|s| {
                let c = s
                    .containers
                    .remove(name)
                    .ok_or_else(|| DockerError::NotFound(format!("No such container: {name}")))?;
                s.containers.insert(to.to_owned(), c);
                Ok(())
            })
        })
    }

    fn remove_container<'a>(&'a self, name: &'a str, _volumes: bool) -> BoxFuture<'a, Result<(), DockerError>> {
        Box::pin(async move {
            self.check(format!("remove {name}"))?;
            self.with(|s| s.containers.remove(name));
            Ok(())
        })
    }

    fn inspect_container<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<ContainerInfo>, DockerError>> {
        Box::pin(async move {
            self.check(format!("inspect {name}"))?;
            Ok(self.with(|s| {
                s.containers.get(name).map(|c| ContainerInfo {
                    id: c.id.clone(),
                    name: name.to_owned(),
                    image: c.spec.image.clone(),
                    labels: c.spec.labels.clone(),
                    env: c.spec.env.clone(),
                    cmd: c.spec.cmd.clone().unwrap_or_default(),
                    state: c.state.clone(),
                    addresses: addresses(c),
                    restart_count: i64::from(c.started.saturating_sub(1)),
                    created: Some(c.created),
                    cpu_shares: c.spec.cpu_shares.unwrap_or(0),
                })
            }))
        })
    }

    fn list_containers<'a>(
        &'a self,
        labels: LabelFilter<'a>,
    ) -> BoxFuture<'a, Result<Vec<ContainerSummary>, DockerError>> {
        Box::pin(async move {
            self.check("list containers".into())?;
            Ok(self.with(|s| {
                s.containers
                    .iter()
                    .filter(|(_, c)| matches(&c.spec.labels, labels))
                    .map(|(name, c)| ContainerSummary {
                        id: c.id.clone(),
                        name: name.clone(),
                        labels: c.spec.labels.clone(),
                        state: c.state.status.clone(),
                        image: c.spec.image.clone(),
                        created: 0,
                        addresses: addresses(c),
                    })
                    .collect()
            }))
        })
    }

    fn wait_container<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<i64, DockerError>> {
        Box::pin(async move {
            self.check(format!("wait {name}"))?;
            loop {
                match self.with(|s| s.containers.get(name).map(|c| (c.state.running, c.state.exit_code))) {
                    None => return Err(DockerError::NotFound(format!("No such container: {name}"))),
                    Some((false, code)) => return Ok(code.unwrap_or(0)),
                    Some((true, _)) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        })
    }

    fn exec<'a>(
        &'a self,
        container: &'a str,
        exec: &'a Exec,
        stdin: Stdin<'a>,
        sink: Sink<'a>,
    ) -> BoxFuture<'a, Result<ExecOutcome, StreamError>> {
        Box::pin(async move {
            self.check(format!("exec {container} {}", exec.argv.join(" ")))?;
            let up = self.with(|s| s.containers.get(container).map(|c| c.state.is_up()));
            match up {
                None => return Err(DockerError::NotFound(format!("No such container: {container}")).into()),
                Some(false) => {
                    return Err(DockerError::Refused {
                        status: 409,
                        message: format!("Container {container} is not running"),
                    }
                    .into())
                }
                Some(true) => {}
            }
            let mut fed = 0;
            if let Some(r) = stdin {
                fed = tokio::io::copy(r, &mut tokio::io::sink())
                    .await
                    .map_err(StreamError::Input)?;
            }
            let script = self.with(|s| s.exec.clone());
            let mut out = script.map(|f| f(container, exec)).unwrap_or_default();
            out.fed = fed;
            if let Some(w) = sink {
                w.write_all(out.stdout.as_bytes()).await.map_err(StreamError::Output)?;
                w.shutdown().await.map_err(StreamError::Output)?;
                out.stdout.clear();
            }
            Ok(out)
        })
    }

    fn logs(&self, container: &str, _options: LogOptions) -> BoxStream<'static, Result<LogChunk, DockerError>> {
        let result = self.check(format!("logs {container}")).map(|()| LogChunk {
            output: Output::Stdout,
            bytes: format!("fake container {container} says hello\n").into_bytes(),
        });
        futures::stream::iter(vec![result]).boxed()
    }

    fn events(&self, _instance: &str) -> BoxStream<'static, Result<ContainerEvent, DockerError>> {
        futures::stream::pending().boxed()
    }

    fn endpoint(&self, info: &ContainerInfo, _network: &str, port: u16) -> Option<SocketAddr> {
        self.with(|s| s.containers.get(&info.name).and_then(|c| c.ports.get(&port).copied()))
    }

    fn ensure_network<'a>(
        &'a self,
        name: &'a str,
        _labels: &'a HashMap<String, String>,
    ) -> BoxFuture<'a, Result<(), DockerError>> {
        Box::pin(async move {
            self.check(format!("network {name}"))?;
            self.with(|s| s.networks.insert(name.to_owned()));
            Ok(())
        })
    }

    fn connect_network<'a>(
        &'a self,
        network: &'a str,
        container: &'a str,
        _aliases: &'a [String],
    ) -> BoxFuture<'a, Result<(), DockerError>> {
        Box::pin(async move {
            self.check(format!("connect {network} {container}"))?;
            Ok(())
        })
    }

    fn remove_network<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), DockerError>> {
        Box::pin(async move {
            self.check(format!("remove network {name}"))?;
            self.with(|s| s.networks.remove(name));
            Ok(())
        })
    }

    fn list_networks<'a>(&'a self, _labels: LabelFilter<'a>) -> BoxFuture<'a, Result<Vec<String>, DockerError>> {
        Box::pin(async move {
            self.check("list networks".into())?;
            Ok(self.with(|s| s.networks.iter().cloned().collect()))
        })
    }

    fn ensure_volume<'a>(
        &'a self,
        name: &'a str,
        _labels: &'a HashMap<String, String>,
    ) -> BoxFuture<'a, Result<(), DockerError>> {
        Box::pin(async move {
            self.check(format!("volume {name}"))?;
            self.with(|s| s.volumes.insert(name.to_owned()));
            Ok(())
        })
    }

    fn remove_volume<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), DockerError>> {
        Box::pin(async move {
            self.check(format!("remove volume {name}"))?;
            self.with(|s| s.volumes.remove(name));
            Ok(())
        })
    }

    fn list_volumes<'a>(&'a self, _labels: LabelFilter<'a>) -> BoxFuture<'a, Result<Vec<String>, DockerError>> {
        Box::pin(async move {
            self.check("list volumes".into())?;
            Ok(self.with(|s| s.volumes.iter().cloned().collect()))
        })
    }
}
