//! Test support shared by engine, server and browser tests (feature `testing`):
//! a fresh PostgreSQL database per test, cloned from a migrated template, and a
//! Redis key prefix per test. Both are removed when the guard drops.
//!
//! Needs `DATABASE_URL` (a role that may create databases) and `REDIS_URL`; a test
//! without them fails with a message saying so, never skips.

pub mod acme;
pub mod receiver;

use crate::config::{DatabaseConfig, DockerConfig, RedisConfig};
use crate::docker::BollardDocker;
use crate::kv::Kv;
use crate::secrets::SecretKey;
use crate::Engine;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use std::sync::Arc;
use tokio::sync::OnceCell;

const TEMPLATE: &str = concat!("berth_test_tpl_", env!("BERTH_MIGRATIONS_HASH"));

fn required(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} must be set for integration tests: run them through `make test`, which starts PostgreSQL and Redis"
        )
    })
}

/// `url` with its database name replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[scheme_end..]
        .find('/')
        .map(|i| i + scheme_end)
        .unwrap_or(base.len());
    let mut out = format!("{}/{}", &base[..host_end], db);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

async fn admin_conn() -> AsyncPgConnection {
    let url = with_database(&required("DATABASE_URL"), "postgres");
    AsyncPgConnection::establish(&url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to PostgreSQL for tests: {e}"))
}

#[derive(QueryableByName)]
struct Exists {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    exists: bool,
}

/// Builds the template once per migrations fingerprint, across processes: an
/// advisory lock serialises parallel test binaries.
async fn ensure_template() {
    static DONE: OnceCell<()> = OnceCell::const_new();
    DONE.get_or_init(|| async {
        let mut conn = admin_conn().await;
        diesel::sql_query("SELECT pg_advisory_lock(727274)")
            .execute(&mut conn)
            .await
            .expect("advisory lock");
        let found: Exists = diesel::sql_query(format!(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = '{TEMPLATE}') AS exists"
        ))
        .get_result(&mut conn)
        .await
        .expect("query pg_database");
        if !found.exists {
            let building = format!("{TEMPLATE}_building");
            diesel::sql_query(format!("DROP DATABASE IF EXISTS {building}"))
                .execute(&mut conn)
                .await
                .expect("drop stale");
            diesel::sql_query(format!("CREATE DATABASE {building}"))
                .execute(&mut conn)
                .await
                .expect("create template");
            crate::db::migrate(&with_database(&required("DATABASE_URL"), &building))
                .await
                .expect("migrate template");
            // Renamed only when complete, so a crashed build is never used.
            diesel::sql_query(format!("ALTER DATABASE {building} RENAME TO {TEMPLATE}"))
                .execute(&mut conn)
                .await
                .expect("publish template");
        }
        diesel::sql_query("SELECT pg_advisory_unlock(727274)")
            .execute(&mut conn)
            .await
            .expect("unlock");
    })
    .await;
}

/// A database of its own for one test; dropped (forcibly) with the guard.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    /// A migrated database, cloned from the template.
    pub async fn new() -> Self {
        ensure_template().await;
        Self::create(&format!("TEMPLATE {TEMPLATE}")).await
    }

    /// An empty database with no migrations applied, for testing `berth migrate`.
    pub async fn empty() -> Self {
        Self::create("").await
    }

    async fn create(options: &str) -> Self {
        let name = format!("berth_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = admin_conn().await;
        diesel::sql_query(format!("CREATE DATABASE {name} {options}"))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let url = with_database(&required("DATABASE_URL"), &name);
        Self { name, url }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop may run inside or outside a runtime: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let mut conn = admin_conn().await;
                let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await;
            });
        })
        .join();
    }
}

/// A Redis prefix of its own for one test; its keys are deleted with the guard.
pub struct TestRedis {
    pub url: String,
    pub prefix: String,
}

impl TestRedis {
    pub fn new() -> Self {
        Self {
            url: required("REDIS_URL"),
            prefix: format!("berth-test:{}:", uuid::Uuid::new_v4().simple()),
        }
    }
}

impl Default for TestRedis {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        if let Ok(client) = redis::Client::open(self.url.as_str()) {
            if let Ok(mut conn) = client.get_connection() {
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(format!("{}*", self.prefix))
                    .query(&mut conn)
                    .unwrap_or_default();
                if !keys.is_empty() {
                    let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut conn);
                }
            }
        }
    }
}

/// An engine on a fresh database and Redis prefix, with a random secret key and the
/// real Docker engine from `DOCKER_HOST`.
pub struct TestEngine {
    pub engine: Engine,
    pub db: TestDb,
    pub redis: TestRedis,
}

impl TestEngine {
    /// This engine as an installation of its own (a fresh instance name: its
    /// containers, labels and leadership locks are its alone) whose sampler
    /// takes a pass every second.
    pub fn sampling_every_second(&self) -> Engine {
        let mut d = (*self.engine.deploy).clone();
        d.instance = format!("bt{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        d.metrics.interval_secs = 1;
        std::fs::create_dir_all(&d.data_dir).expect("the data directory");
        self.engine.clone().with_deploy(d)
    }

    pub async fn new() -> Self {
        let docker = Arc::new(BollardDocker::new(&DockerConfig::from_env().expect("docker config")));
        Self::with_docker(docker).await
    }

    /// The same on this Docker engine (a [`crate::docker::fake::FakeDocker`] in
    /// tests that need no real one).
    pub async fn with_docker(docker: Arc<dyn crate::docker::DockerApi>) -> Self {
        let db = TestDb::new().await;
        let redis = TestRedis::new();
        let engine = Engine::new(
            crate::db::pool(&DatabaseConfig {
                url: db.url.clone().into(),
                pool_size: 4,
            })
            .expect("pool"),
            Kv::new(&RedisConfig {
                url: redis.url.clone().into(),
                prefix: redis.prefix.clone(),
                pool_size: 4,
            })
            .expect("kv"),
            docker,
            SecretKey::generate(),
        );
        // A data directory of its own (deployment logs, checkouts, route files),
        // not `.berth` under whatever directory the test runs in.
        let mut deploy = (*engine.deploy).clone();
        deploy.data_dir = std::env::temp_dir().join(format!("berth-test-data-{}", db.name));
        deploy.proxy.dynamic_dir = deploy.data_dir.join("traefik");
        // No Traefik runs for it (a [`DeployEnv`] has one): an unmanaged proxy,
        // so health does not report a missing one and nothing waits for it.
        deploy.proxy.manage = false;
        deploy.proxy.unmanaged_settle = std::time::Duration::ZERO;
        let engine = engine.with_deploy(deploy);
        Self { engine, db, redis }
    }
}

/// An engine on the fake Docker engine, for fast tests of what drives Docker (the
/// deploy pipeline): a fresh database and Redis prefix, a data directory of its
/// own, an unmanaged proxy (its files are written, nothing is asked) that needs
/// no settling time.
pub struct FakeEnv {
    pub t: TestEngine,
    pub docker: Arc<crate::docker::fake::FakeDocker>,
    pub dir: std::path::PathBuf,
}

impl FakeEnv {
    pub async fn new() -> Self {
        let docker = crate::docker::fake::FakeDocker::new();
        let mut t = TestEngine::with_docker(docker.clone()).await;
        let tag = &uuid::Uuid::new_v4().simple().to_string()[..10];
        let dir = std::env::temp_dir().join(format!("berth-fake-{tag}"));
        std::fs::create_dir_all(&dir).expect("test data dir");
        let mut config = crate::config::DeployConfig {
            data_dir: dir.clone(),
            instance: format!("bf{tag}"),
            network: format!("bf{tag}"),
            allow_local_sources: true,
            lease_secs: 5,
            build_timeout_secs: 60,
            host: test_host_policy(),
            ..crate::config::DeployConfig::default()
        };
        config.proxy.manage = false;
        config.proxy.dynamic_dir = dir.join("traefik");
        config.proxy.unmanaged_settle = std::time::Duration::ZERO;
        t.engine = t.engine.clone().with_deploy(config);
        Self { t, docker, dir }
    }

    pub fn engine(&self) -> &Engine {
        &self.t.engine
    }
}

impl Drop for FakeEnv {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Onboards with a setup token minted for the purpose (as the one a starting
/// Berth prints).
pub async fn onboard(
    engine: &Engine,
    account: crate::accounts::NewAccount,
    org: crate::names::OrgName,
) -> Result<(crate::accounts::Caller, crate::ids::UserId), crate::accounts::AccountError> {
    let token = crate::accounts::setup_token(engine)
        .await?
        .ok_or(crate::accounts::AccountError::OnboardingClosed)?;
    crate::accounts::onboard(engine, &token, account, org).await
}

/// A TCP port on 127.0.0.1 that was free a moment ago, for a server under test.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("addr")
        .port()
}

/// The status code of `GET path` on 127.0.0.1:`port`, or 0 when nothing answers.
/// Reads only the status line: some servers (chromedriver) keep the connection open.
pub async fn http_status(port: u16, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return 0;
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return 0;
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 256];
    while !buf.windows(2).any(|w| w == b"\r\n") {
        match tokio::time::timeout(std::time::Duration::from_secs(2), s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&buf)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Waits up to 30 s for `GET path` on the port to answer 200.
pub async fn wait_for_200(port: u16, path: &str) {
    let start = std::time::Instant::now();
    while http_status(port, path).await != 200 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "127.0.0.1:{port}{path} never answered 200"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A deploy environment of its own for one test: an engine whose instance label,
/// Docker network, Traefik container (on free loopback ports) and data directory
/// are unique, using the locally built test images. Everything it started in
/// Docker is removed when it drops.
pub struct DeployEnv {
    pub t: TestEngine,
    pub dir: std::path::PathBuf,
    /// The engine's secret key, for a `berth` process that must share it.
    pub secret_key: String,
}

/// The locally built images the tests use instead of registry images.
pub const TEST_BASE_IMAGE: &str = "berth-test/busybox:1";
/// PostgreSQL, Redis and MariaDB built from the host's Debian binaries
/// (scripts/services.sh), with the official images' environment contract.
pub const TEST_POSTGRES_IMAGE: &str = "berth-test/postgres:15";
pub const TEST_REDIS_IMAGE: &str = "berth-test/redis:7";
pub const TEST_MARIADB_IMAGE: &str = "berth-test/mariadb:10";
pub fn test_traefik_image() -> String {
    std::env::var("BERTH_TEST_TRAEFIK_IMAGE").unwrap_or_else(|_| "berth-test/traefik:3".into())
}

/// Tests use images built on this machine and servers on 127.0.0.1, which a
/// production instance refuses (see [`crate::config::HostPolicy`]).
pub fn test_host_policy() -> crate::config::HostPolicy {
    crate::config::HostPolicy {
        allow_local_images: true,
        allow_private_targets: true,
        bind_roots: Vec::new(),
    }
}

impl DeployEnv {
    pub async fn new() -> Self {
        let t = TestEngine::new().await;
        let tag = &uuid::Uuid::new_v4().simple().to_string()[..10];
        let instance = format!("bt{tag}");
        let dir = std::env::temp_dir().join(format!("berth-deploy-{instance}"));
        std::fs::create_dir_all(&dir).expect("test data dir");
        let config = crate::config::DeployConfig {
            data_dir: dir.clone(),
            instance: instance.clone(),
            self_container: None,
            network: instance.clone(),
            proxy: crate::config::ProxyConfig {
                manage: true,
                container: format!("{instance}-traefik"),
                image: test_traefik_image(),
                bind: "127.0.0.1".into(),
                http_port: free_port(),
                https_port: free_port(),
                dynamic_dir: dir.join("traefik"),
                dashboard_host: None,
                dashboard_upstream: None,
                dashboard_cert: None,
                acme_ca_file: None,
                public_ips: Vec::new(),
                unmanaged_settle: std::time::Duration::from_secs(3),
            },
            base_domain: "localhost".into(),
            static_image: TEST_BASE_IMAGE.into(),
            allow_local_sources: true,
            keep_images: 5,
            concurrency: 2,
            lease_secs: 8,
            audit_days: 365,
            build_timeout_secs: 600,
            log_cap_bytes: 50 * 1024 * 1024,
            services: crate::config::ServicesConfig {
                images: crate::config::DbImages {
                    postgres: TEST_POSTGRES_IMAGE.into(),
                    redis: TEST_REDIS_IMAGE.into(),
                    mariadb: TEST_MARIADB_IMAGE.into(),
                    ..crate::config::ServicesConfig::default().images
                },
                database_url: Some(t.db.url.clone().into()),
                ..crate::config::ServicesConfig::default()
            },
            host: test_host_policy(),
            metrics: crate::config::MetricsConfig::default(),
            public_url: None,
            telegram_api: crate::config::TELEGRAM_API.to_owned(),
        };
        let secret_key = crate::secrets::generate_key_string();
        let mut t = t;
        t.engine = t.engine.clone().with_deploy(config);
        t.engine.secret = SecretKey::from_config(&secret_key).expect("generated key is strong");
        Self { t, dir, secret_key }
    }

    /// The environment a `berth` process needs to be this engine (same database,
    /// Redis prefix, key, instance, network, proxy and data directory).
    pub fn berth_env(&self) -> Vec<(&'static str, String)> {
        let d = &self.t.engine.deploy;
        vec![
            ("DATABASE_URL", self.t.db.url.clone()),
            ("REDIS_URL", self.t.redis.url.clone()),
            ("BERTH_REDIS_PREFIX", self.t.redis.prefix.clone()),
            ("BERTH_SECRET_KEY", self.secret_key.clone()),
            ("BERTH_MODE", "production".into()),
            ("BERTH_DATA_DIR", d.data_dir.display().to_string()),
            ("BERTH_INSTANCE", d.instance.clone()),
            ("BERTH_NETWORK", d.network.clone()),
            ("BERTH_PROXY_NAME", d.proxy.container.clone()),
            ("BERTH_TRAEFIK_IMAGE", d.proxy.image.clone()),
            ("BERTH_PROXY_BIND", d.proxy.bind.clone()),
            ("BERTH_HTTP_PORT", d.proxy.http_port.to_string()),
            ("BERTH_HTTPS_PORT", d.proxy.https_port.to_string()),
            ("BERTH_TRAEFIK_DIR", d.proxy.dynamic_dir.display().to_string()),
            ("BERTH_STATIC_IMAGE", d.static_image.clone()),
            ("BERTH_ALLOW_LOCAL_SOURCES", "true".into()),
            // As [`test_host_policy`]: local images, servers on 127.0.0.1.
            ("BERTH_ALLOW_LOCAL_IMAGES", "on".into()),
            ("BERTH_ALLOW_PRIVATE_TARGETS", "on".into()),
            ("BERTH_WORKER_LEASE_SECS", d.lease_secs.to_string()),
            ("BERTH_WORKER", "on".into()),
            ("BERTH_IMAGE_POSTGRES", TEST_POSTGRES_IMAGE.into()),
            ("BERTH_IMAGE_REDIS", TEST_REDIS_IMAGE.into()),
            ("BERTH_IMAGE_MARIADB", TEST_MARIADB_IMAGE.into()),
        ]
    }

    pub fn engine(&self) -> &Engine {
        &self.t.engine
    }

    pub fn http_port(&self) -> u16 {
        self.t.engine.deploy.proxy.http_port
    }

    /// Starts a worker in this process; cancel the token to stop it.
    pub fn start_worker(&self) -> (tokio_util::sync::CancellationToken, tokio::task::JoinHandle<()>) {
        let token = tokio_util::sync::CancellationToken::new();
        let handle = tokio::spawn(crate::worker::run(self.t.engine.clone(), token.clone()));
        (token, handle)
    }
}

impl Drop for DeployEnv {
    fn drop(&mut self) {
        let instance = self.t.engine.deploy.instance.clone();
        let dir = self.dir.clone();
        let db_url = self.t.db.url.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                // The apps' images are known by their `berth/<app>` tags.
                let names: Vec<String> = match AsyncPgConnection::establish(&db_url).await {
                    Ok(mut conn) => crate::db::schema::applications::table
                        .select(crate::db::schema::applications::name)
                        .load(&mut conn)
                        .await
                        .unwrap_or_default(),
                    Err(_) => Vec::new(),
                };
                cleanup_instance(&instance, &names).await
            });
            let _ = std::fs::remove_dir_all(dir);
        })
        .join();
    }
}

/// The host Berth generated for an app (`<name>-<id prefix>.<base domain>`).
pub async fn generated_host(e: &Engine, caller: &crate::accounts::Caller, app: crate::ids::AppId) -> String {
    let d = crate::apps::get(e, caller, app).await.expect("the app");
    let host = d
        .domains
        .iter()
        .find(|d| d.generated)
        .expect("a generated domain")
        .host
        .clone();
    assert!(host.starts_with(d.app.name.as_str()), "{host}");
    host
}

/// A child process killed when the test that spawned it ends, also by a panic:
/// a failed assertion must not leave a `berth` running against the next test.
pub struct KillOnDrop(pub std::process::Child);

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Removes every container and network labelled with a test instance, its
/// volumes, and the `berth/<app>` images of its applications.
pub async fn cleanup_instance(instance: &str, apps: &[String]) {
    use crate::docker::DockerApi;
    let Ok(config) = DockerConfig::from_env() else { return };
    let docker = BollardDocker::new(&config);
    let filter = [(crate::docker::LABEL_INSTANCE, Some(instance))];
    if let Ok(list) = docker.list_containers(&filter).await {
        for c in list {
            let _ = docker.remove_container(&c.name, true).await;
        }
    }
    for app in apps {
        if let Ok(tags) = docker.image_tags(&format!("berth/{app}")).await {
            for tag in tags {
                let _ = docker.remove_image(&tag).await;
            }
        }
    }
    // The shared network and every organization's (all carry the label).
    let _ = docker.remove_network(instance).await;
    if let Ok(networks) = docker.list_networks(&filter).await {
        for n in networks {
            let _ = docker.remove_network(&n).await;
        }
    }
    // Database services' volumes carry the instance label too.
    if let Ok(volumes) = docker.list_volumes(&filter).await {
        for v in volumes {
            let _ = docker.remove_volume(&v).await;
        }
    }
}

/// The S3-compatible server the tests use (s3s-fs, started by scripts/test.sh
/// and .ci/run), with a fresh bucket of this test's own.
pub struct TestS3 {
    pub url: String,
    pub access_key: String,
    pub secret_key: String,
    pub bucket: String,
}

impl TestS3 {
    pub async fn new() -> Self {
        let s = Self {
            url: required("BERTH_TEST_S3_URL"),
            access_key: required("BERTH_TEST_S3_ACCESS_KEY"),
            secret_key: required("BERTH_TEST_S3_SECRET_KEY"),
            bucket: format!("berth-test-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
        };
        let region = s3::Region::Custom {
            region: "us-east-1".into(),
            endpoint: s.url.clone(),
        };
        let creds = s3::creds::Credentials::new(Some(&s.access_key), Some(&s.secret_key), None, None, None)
            .expect("credentials");
        s3::Bucket::create_with_path_style(&s.bucket, region, creds, s3::BucketConfiguration::default())
            .await
            .expect("create the test bucket");
        s
    }

    pub fn target(&self, prefix: &str) -> crate::backups::s3::Target {
        crate::backups::s3::Target {
            endpoint: self.url.clone(),
            region: "us-east-1".into(),
            bucket: self.bucket.clone(),
            prefix: prefix.to_owned(),
            access_key: self.access_key.clone(),
            secret_key: self.secret_key.clone(),
            path_style: true,
            pinned: false,
        }
    }

    /// Adds this bucket as a destination of the caller's organization.
    pub async fn destination(
        &self,
        engine: &Engine,
        caller: &crate::accounts::Caller,
        prefix: &str,
    ) -> crate::ids::DestinationId {
        let new = crate::backups::NewDestination::parse(
            "test bucket",
            &self.url,
            "",
            &self.bucket,
            prefix,
            &self.access_key,
            &self.secret_key,
            true,
        )
        .expect("valid destination");
        crate::backups::create_destination(engine, caller, new)
            .await
            .expect("destination")
    }

    /// Every object key in the bucket, sorted.
    pub async fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = crate::backups::s3::list(&self.target(""), "")
            .await
            .expect("list the bucket")
            .into_iter()
            .map(|o| o.key)
            .collect();
        keys.sort();
        keys
    }

    /// Multipart uploads started and neither completed nor aborted, on the whole
    /// server. s3s-fs does not implement ListMultipartUploads; it keeps one
    /// `.upload-<id>.json` per open upload in its root (`BERTH_TEST_S3_DIR`).
    pub fn pending_uploads(&self) -> usize {
        let dir = required("BERTH_TEST_S3_DIR");
        std::fs::read_dir(&dir)
            .expect("read the S3 server's directory")
            .filter_map(Result::ok)
            .filter(|e| {
                let n = e.file_name();
                let n = n.to_string_lossy();
                n.starts_with(".upload-") && n.ends_with(".json")
            })
            .count()
    }

    pub async fn put(&self, key: &str, body: &[u8]) {
        let bucket = self.target("").bucket().expect("bucket");
        bucket.put_object(key, body).await.expect("put object");
    }

    pub async fn get(&self, key: &str) -> Vec<u8> {
        let bucket = self.target("").bucket().expect("bucket");
        bucket.get_object(key).await.expect("get object").to_vec()
    }
}

/// Starts the backup worker in this process; cancel the token to stop it.
pub fn start_backup_worker(engine: &Engine) -> (tokio_util::sync::CancellationToken, tokio::task::JoinHandle<()>) {
    let token = tokio_util::sync::CancellationToken::new();
    use crate::backups::kinds::{BackupKind, DrillKind, RestoreKind};
    let runner = crate::jobs::Runner::new(engine.clone(), token.clone())
        .kind(RestoreKind)
        .kind(BackupKind)
        .kind(DrillKind)
        // Their notices, too.
        .kind(crate::notify::delivery::DeliveryKind);
    let handle = tokio::spawn(runner.run());
    (token, handle)
}

/// A git repository in a temporary directory, committed to with the `git` program.
pub struct GitRepo {
    pub dir: std::path::PathBuf,
}

impl GitRepo {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("berth-repo-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("repo dir");
        let repo = Self { dir };
        repo.git(&["init", "-q", "-b", "main"]);
        repo
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.dir.display())
    }

    pub fn git(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .args([
                "-c",
                "user.name=Berth Test",
                "-c",
                "user.email=test@berth.invalid",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Writes the files and commits them; returns the commit id.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        for (path, contents) in files {
            let p = self.dir.join(path);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).expect("dirs");
            }
            std::fs::write(p, contents).expect("write file");
        }
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }
}

impl Default for GitRepo {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for GitRepo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Builds `tag` from `dockerfile` and `files` (path in the context, contents,
/// mode) with the engine's Docker; panics with the builder's words on failure.
pub async fn build_image(engine: &Engine, tag: &str, dockerfile: &str, files: &[(&str, &[u8], u32)]) {
    use futures::StreamExt;
    let dir = std::env::temp_dir().join(format!("berth-image-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("context dir");
    let context = dir.join("context.tar");
    {
        let mut b = tar::Builder::new(std::fs::File::create(&context).expect("context"));
        let mut add = |name: &str, bytes: &[u8], mode: u32| {
            let mut h = tar::Header::new_gnu();
            h.set_size(bytes.len() as u64);
            h.set_mode(mode);
            h.set_mtime(0);
            b.append_data(&mut h, name, bytes).expect("tar");
        };
        add("Dockerfile", dockerfile.as_bytes(), 0o644);
        for (name, bytes, mode) in files {
            add(name, bytes, *mode);
        }
        b.finish().expect("tar");
    }
    let mut events = engine.docker.build(crate::docker::BuildSpec {
        context,
        dockerfile: "Dockerfile".into(),
        tag: tag.into(),
        target: None,
        args: Vec::new(),
        pull: false,
        cpu_shares: None,
    });
    let mut said = Vec::new();
    while let Some(ev) = events.next().await {
        match ev {
            Ok(crate::docker::BuildEvent::Output(l)) => said.push(l),
            Ok(crate::docker::BuildEvent::Failed(m)) => panic!("building {tag}: {m}\n{}", said.join("")),
            Err(e) => panic!("building {tag}: {e}"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A domain for `host` (a name or a wildcard) over plain HTTP, at `/`, with
/// default options.
pub fn plain_domain(host: &str) -> crate::apps::NewDomain {
    crate::apps::NewDomain {
        host: crate::apps::spec::DomainName::parse_route(host).expect("a valid host"),
        path_prefix: "/".into(),
        strip_prefix: false,
        port: None,
        https: false,
        cert: Default::default(),
        options: Default::default(),
    }
}

/// A busybox httpd app serving `index.html` on port 8080.
pub fn httpd_dockerfile() -> String {
    format!("FROM {TEST_BASE_IMAGE}\nCOPY index.html /www/index.html\nEXPOSE 8080\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n")
}

/// `GET path` through the proxy on 127.0.0.1:`port` with `Host: host`: status and body.
pub async fn get_via(port: u16, host: &str, path: &str) -> Option<(u16, String)> {
    crate::http1::request("127.0.0.1", port, "GET", host, path, std::time::Duration::from_secs(10))
        .await
        .ok()
        .map(|r| (r.status, r.body))
}

/// Onboards Ada, owner of "Acme": her caller.
pub async fn ada(engine: &Engine) -> crate::accounts::Caller {
    let account = crate::accounts::NewAccount::parse("Ada", "ada@example.com", "correct horse battery").expect("valid");
    onboard(engine, account, crate::names::OrgName::parse("Acme").expect("valid"))
        .await
        .expect("onboard")
        .0
}

/// A new account ("Someone", `email`) that accepts `owner`'s invite with
/// `role`: its caller in `owner`'s organization.
pub async fn join(
    engine: &Engine,
    owner: &crate::accounts::Caller,
    email: &str,
    role: crate::names::Role,
) -> crate::accounts::Caller {
    let (_, token) = crate::orgs::create_invite(engine, owner, role).await.expect("invite");
    let account = crate::accounts::NewAccount::parse("Someone", email, "long enough pw").expect("valid");
    let session = crate::orgs::accept_invite(engine, &token, crate::orgs::Acceptor::New(account))
        .await
        .expect("accept");
    crate::accounts::authenticate(engine, session).await.expect("signed in")
}

/// Onboards Ada, owner of "Acme", with a project "Shop": her caller and the
/// project's `production` environment (where deploy tests put their apps).
pub async fn owner_with_environment(engine: &Engine) -> (crate::accounts::Caller, crate::ids::EnvironmentId) {
    use crate::names::{Description, OrgName, ProjectName};
    let account = crate::accounts::NewAccount::parse("Ada", "ada@example.com", "correct horse battery").expect("valid");
    let caller = onboard(engine, account, OrgName::parse("Acme").expect("valid"))
        .await
        .expect("onboard")
        .0;
    let project = crate::projects::create(
        engine,
        &caller,
        ProjectName::parse("Shop").expect("valid"),
        Description::default(),
    )
    .await
    .expect("project");
    let env = crate::projects::get(engine, &caller, project)
        .await
        .expect("project")
        .environments[0]
        .id;
    (caller, crate::ids::EnvironmentId(env))
}

/// The same person acting in a new organization "Other" that `caller` creates
/// (cross-organization checks: what belongs to `caller`'s organization must
/// be invisible to it).
pub async fn in_other_org(engine: &Engine, caller: &crate::accounts::Caller) -> crate::accounts::Caller {
    let other = crate::orgs::create(engine, caller, crate::names::OrgName::parse("Other").expect("valid"))
        .await
        .expect("organization");
    crate::accounts::Caller {
        org_id: other,
        ..caller.clone()
    }
}

/// Runs one SQL statement with `psql` inside a PostgreSQL service's container,
/// as its user, and returns what it printed (unaligned, tuples only). Panics
/// when psql fails: tests and benchmarks seed data with it.
pub async fn psql(
    engine: &Engine,
    caller: &crate::accounts::Caller,
    service: crate::ids::ServiceId,
    sql: &str,
) -> String {
    let svc = crate::services::get(engine, caller, service).await.expect("service");
    let secrets = crate::services::reveal(engine, caller, service).await.expect("reveal");
    let exec = crate::services::kind::Exec {
        argv: [
            "psql",
            "-h",
            "127.0.0.1",
            "-U",
            svc.row.username.as_deref().unwrap_or("app"),
            "-d",
            svc.row.database_name.as_deref().unwrap_or("app"),
            "-v",
            "ON_ERROR_STOP=1",
            "-At",
            "-c",
            sql,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect(),
        env: vec![format!("PGPASSWORD={}", secrets.password)],
    };
    let container = crate::services::container::container_name(engine, svc.row.id, &svc.row.name, svc.row.legacy_names);
    let out = crate::docker::exec_capture(&*engine.docker, &container, &exec, std::time::Duration::from_secs(900))
        .await
        .expect("exec psql");
    assert_eq!(out.exit_code, 0, "psql: {}", out.said());
    out.stdout
}

/// ~210 MB of table data (1.6 M rows of 128 hex characters) in `blobs`; returns
/// the table's size in bytes.
pub async fn seed_blobs(engine: &Engine, caller: &crate::accounts::Caller, service: crate::ids::ServiceId) -> u64 {
    psql(
        engine,
        caller,
        service,
        "CREATE TABLE blobs AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text) \
         || md5((g * 31)::text) AS body FROM generate_series(1, 1600000) g",
    )
    .await;
    psql(engine, caller, service, "SELECT pg_total_relation_size('blobs')")
        .await
        .trim()
        .parse()
        .expect("table size")
}

/// Polls `check` until it returns `Some`, for at most `secs` seconds (a test
/// that waits on something asynchronous: a service, a backup, Docker).
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out ({secs} s) waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// Waits (up to 3 minutes) for the deployment to finish; returns its row.
pub async fn settle(
    e: &Engine,
    caller: &crate::accounts::Caller,
    id: crate::ids::DeploymentId,
) -> crate::deploy::Deployment {
    eventually(180, "the deployment to finish", || async {
        let d = crate::deploy::get(e, caller, id).await.expect("the deployment");
        d.status.is_finished().then_some(d)
    })
    .await
}

/// busybox httpd (the test base image) answering `up` on `/` at 8080, with an
/// HTTP health check; Docker's restart policy as the default (`unless-stopped`).
pub fn httpd_runtime(drain_secs: u64) -> crate::apps::spec::Runtime {
    use crate::apps::spec::{HealthCheck, HealthProbe, Runtime};
    Runtime {
        port: 8080,
        command: Some(vec![
            "sh".into(),
            "-c".into(),
            "echo up > /index.html && exec httpd -f -p 8080 -h /".into(),
        ]),
        health: HealthCheck {
            probe: HealthProbe::Http { path: "/".into() },
            interval_ms: 200,
            timeout_ms: 1000,
            retries: 3,
            start_period_secs: 20,
        },
        drain_secs,
        ..Runtime::default()
    }
}

/// An app source of `image` with no registry credentials (e.g.
/// [`TEST_BASE_IMAGE`], which exists only on the test engine).
pub fn image_source(image: &str) -> crate::apps::spec::Source {
    crate::apps::spec::Source::Image {
        image: image.into(),
        registry_user: None,
    }
}

/// An application named `<prefix>-<random>` from `source` with `runtime`.
pub async fn create_app(
    e: &Engine,
    caller: &crate::accounts::Caller,
    env: crate::ids::EnvironmentId,
    prefix: &str,
    source: crate::apps::spec::Source,
    runtime: crate::apps::spec::Runtime,
) -> crate::ids::AppId {
    let name = format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    crate::apps::create(
        e,
        caller,
        crate::apps::NewApp {
            name: crate::apps::spec::AppName::parse(&name).expect("a valid name"),
            description: crate::names::Description::default(),
            environment: env,
            source,
            source_secret: None,
            build: crate::apps::spec::Build::default(),
            runtime,
        },
    )
    .await
    .expect("create the app")
}

/// The session cookie for `token`, under both names (plain and `__Host-`), so a
/// request carries it whichever the server expects.
pub fn session_cookie(token: &str) -> String {
    format!("berth_session={token}; __Host-berth_session={token}")
}

/// A server function on `127.0.0.1:port`, called as the browser's same-origin
/// form post does, signed in with `token`: the status and the body.
pub async fn call_via(port: u16, token: &str, path: &str, form: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let req = format!(
        "POST /api/{path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nCookie: {}\r\n\
         Connection: close\r\n\r\n{form}",
        form.len(),
        session_cookie(token)
    );
    tcp.write_all(req.as_bytes()).await.expect("send");
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.expect("read");
    let status = out.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, out.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned())
}

/// The JSON string a server function answered (its body may be chunked: the
/// value is then on a line of its own).
pub fn json_string(body: &str) -> Option<String> {
    serde_json::from_str(body.trim())
        .ok()
        .or_else(|| body.lines().find_map(|l| serde_json::from_str(l.trim()).ok()))
}

/// An open `/api/events` stream of a page on `127.0.0.1:port`, signed in with
/// `token`: its events, one JSON value each.
pub struct EventStream {
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::net::TcpStream>>,
}

impl EventStream {
    /// Opens it and checks it was accepted (200).
    pub async fn open(port: u16, token: &str) -> Self {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let req = format!(
            "GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\nCookie: {}\r\n\r\n",
            session_cookie(token)
        );
        tcp.write_all(req.as_bytes()).await.expect("send");
        let mut lines = tokio::io::BufReader::new(tcp).lines();
        let status = lines.next_line().await.expect("read").unwrap_or_default();
        assert!(status.contains(" 200 "), "the stream opens: {status}");
        Self { lines }
    }

    /// Whether the server ends the stream within `secs` (its last chunk, or
    /// the connection closed), skipping whatever events come before.
    pub async fn ends(&mut self, secs: u64) -> bool {
        tokio::time::timeout(std::time::Duration::from_secs(secs), async {
            loop {
                match self.lines.next_line().await {
                    // Chunked encoding's last chunk: the body is over.
                    Ok(Some(line)) if line.trim() == "0" => return true,
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => return true,
                }
            }
        })
        .await
        .unwrap_or(false)
    }

    /// The next event within `secs`; `None` if none came (or the stream ended).
    pub async fn next(&mut self, secs: u64) -> Option<serde_json::Value> {
        tokio::time::timeout(std::time::Duration::from_secs(secs), async {
            loop {
                let line = self.lines.next_line().await.ok()??;
                if let Some(data) = line.strip_prefix("data:") {
                    return serde_json::from_str(data.trim()).ok();
                }
            }
        })
        .await
        .ok()
        .flatten()
    }
}

/// The container specification Berth makes for database service `id` today
/// (for tests that put an older one in its place).
pub async fn service_container_spec(engine: &Engine, id: crate::ids::ServiceId) -> crate::docker::ContainerSpec {
    let mut conn = engine.db.get().await.expect("a database connection");
    let svc = crate::services::load_any(engine, &mut conn, id.0)
        .await
        .expect("the service");
    crate::services::container::container_spec(engine, &svc.boxed(engine))
}

/// A notification channel's stored settings, opened, as JSON: what tests
/// check an edit kept (pages never see them).
pub async fn channel_settings(engine: &Engine, caller: &crate::accounts::Caller, id: crate::ids::ChannelId) -> String {
    let mut conn = engine.db.get().await.expect("a connection");
    let (_, settings) = crate::notify::settings(engine, &mut conn, caller.org_id.0, id.0)
        .await
        .expect("the channel's settings");
    serde_json::to_string(&settings).expect("JSON")
}
