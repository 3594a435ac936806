//! `berth install` and `berth uninstall`: Berth and what it needs as
//! containers on one Docker host. The install is a plan of steps, each of
//! which says what it would do (`--dry-run` prints them) and does nothing when
//! its object is already as planned, so a second run changes nothing (every
//! container carries a fingerprint of its specification and is kept while it
//! matches). Secrets are generated once into files under the data directory
//! (mode 0600) and reach the containers as files, never as environment values
//! `docker inspect` would show. Traefik is not made here: Berth's worker runs
//! it, as on any instance; the dashboard's route in it is written here, since
//! only the installer knows which Berth container is live ([`upgrade`] moves it).
//!
//! Berth's container has a *slot* (`blue` or `green`): its network alias
//! `<instance>-<slot>` is what the dashboard's route names, and it survives the
//! rename an upgrade ends with, so the route never names a container by a name
//! that is about to change.

pub mod upgrade;

use crate::docker::{
    self, ContainerSpec, DockerApi, DockerError, FileSpec, HealthCheck, Mount, MountSource, Network, Restart,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The label on everything `berth install` makes (besides `berth.instance`).
pub const LABEL_INSTALL: &str = "berth.install";
const FINGERPRINT: &str = "berth.install-spec";
/// Berth's container's slot (`blue` or `green`).
const LABEL_SLOT: &str = "berth.install-slot";
/// The port Berth listens on in its container (the image's `BERTH_LISTEN`).
const BERTH_PORT: u16 = 3000;
/// The user Berth's image runs as.
pub const BERTH_UID: u32 = 10001;
/// PostgreSQL's and Redis's user in their official images.
const DB_UID: u64 = 999;

/// What `berth install` was given; kept in `install/options.json` so that
/// `berth upgrade` makes the new Berth exactly as the install made the old one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InstallOptions {
    /// Names the containers, network and volumes (`berth`, `berth-postgres`, ...).
    pub instance: String,
    pub image: String,
    pub postgres_image: String,
    pub redis_image: String,
    pub traefik_image: String,
    /// A path on the Docker host, mounted into Berth at the same path.
    pub data_dir: PathBuf,
    /// The Docker socket on the host, mounted into Berth.
    pub docker_socket: PathBuf,
    /// The dashboard's host name, served through Traefik.
    pub host: String,
    /// `http`, `tls`, `dns` or `none` (`BERTH_DASHBOARD_CERT`).
    pub dashboard_cert: String,
    pub bind: String,
    pub http_port: u16,
    pub https_port: u16,
    /// More `NAME=value` for Berth's container (e.g. `BERTH_ALLOW_LOCAL_IMAGES=on`).
    pub env: Vec<String>,
}

impl InstallOptions {
    /// The address users open: HTTPS unless the dashboard has no certificate.
    pub fn public_url(&self) -> String {
        let (scheme, port, default) = if self.dashboard_cert == "none" {
            ("http", self.http_port, 80)
        } else {
            ("https", self.https_port, 443)
        };
        if port == default {
            format!("{scheme}://{}", self.host)
        } else {
            format!("{scheme}://{}:{port}", self.host)
        }
    }
    fn postgres(&self) -> String {
        format!("{}-postgres", self.instance)
    }
    fn redis(&self) -> String {
        format!("{}-redis", self.instance)
    }
    fn labels(&self) -> HashMap<String, String> {
        HashMap::from([
            (docker::LABEL_INSTANCE.to_owned(), self.instance.clone()),
            (LABEL_INSTALL.to_owned(), "true".to_owned()),
        ])
    }
    fn secret(&self, name: &str) -> PathBuf {
        self.data_dir.join("install").join(name)
    }
    /// Traefik's dynamic directory (Berth's default under its data directory).
    fn traefik_dir(&self) -> PathBuf {
        self.data_dir.join("traefik")
    }
    /// Where Traefik's published entrypoint is reached from this host.
    fn entry(&self) -> std::net::SocketAddr {
        let tls = self.resolver().is_some();
        crate::proxy::reach(&self.bind, if tls { self.https_port } else { self.http_port })
    }
    fn resolver(&self) -> Option<&'static str> {
        if self.dashboard_cert == "none" {
            return None;
        }
        crate::apps::domain_options::CertSource::parse(&self.dashboard_cert)
            .ok()
            .and_then(|c| c.resolver())
    }
    /// The dashboard's upstream while Berth runs in `slot`.
    fn upstream(&self, slot: Slot) -> String {
        format!("http://{}:{BERTH_PORT}", slot.alias(&self.instance))
    }
    /// Writes the dashboard's route to `slot` (Traefik's directory made as
    /// Berth's, which writes the apps' routes beside it); whether it changed.
    fn write_route(&self, slot: Slot) -> std::io::Result<bool> {
        let dir = self.traefik_dir();
        if !dir.exists() {
            std::fs::create_dir_all(&dir)?;
            std::os::unix::fs::chown(&dir, Some(BERTH_UID), Some(BERTH_UID))?;
        }
        crate::proxy::write_dashboard_route(&dir, &self.host, &self.upstream(slot), self.resolver())
    }
    fn options_file(data_dir: &Path) -> PathBuf {
        data_dir.join("install").join("options.json")
    }
    /// The options `berth install` kept for this data directory.
    pub fn load(data_dir: &Path) -> Result<Self, InstallError> {
        let path = Self::options_file(data_dir);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            step_err(
                "reading the installation",
                format!("{}: {e} (was this instance made by `berth install`?)", path.display()),
            )
        })?;
        serde_json::from_str(&text)
            .map_err(|e| step_err("reading the installation", format!("{}: {e}", path.display())))
    }
    fn save(&self) -> std::io::Result<bool> {
        let body = serde_json::to_vec_pretty(self).expect("serializes");
        let path = Self::options_file(&self.data_dir);
        if std::fs::read(&path).is_ok_and(|old| old == body) {
            return Ok(false);
        }
        crate::proxy::certs::write_private(&self.data_dir.join("install"), "options.json", &body)?;
        Ok(true)
    }
}

/// Which of two network aliases Berth's container answers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Blue,
    Green,
}

impl Slot {
    fn of(c: &docker::ContainerInfo) -> Slot {
        match c.labels.get(LABEL_SLOT).map(String::as_str) {
            Some("green") => Slot::Green,
            _ => Slot::Blue,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Slot::Blue => "blue",
            Slot::Green => "green",
        }
    }
    fn other(self) -> Slot {
        match self {
            Slot::Blue => Slot::Green,
            Slot::Green => Slot::Blue,
        }
    }
    fn alias(self, instance: &str) -> String {
        format!("{instance}-{}", self.name())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{step}: {reason}")]
    Step { step: String, reason: String },
}

fn step_err(step: &str, reason: impl std::fmt::Display) -> InstallError {
    InstallError::Step {
        step: step.to_owned(),
        reason: reason.to_string(),
    }
}

/// What one step found or did, for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub what: String,
    /// `unchanged`, `created`, `replaced`, `started`, or with `--dry-run` `would create` ...
    pub outcome: String,
}

/// The secret in `path`, made once (mode 0600, owned by `uid`) from
/// `contents` when missing (`crate::secrets::load_or_create_secret_file`); with
/// `dry`, a missing one is only reported. The value (`None`: not made, dry) and
/// what was done.
fn ensure_secret_file(
    path: &Path,
    uid: u32,
    contents: impl FnOnce() -> String,
    dry: bool,
) -> std::io::Result<(Option<String>, &'static str)> {
    if dry && !path.exists() {
        return Ok((None, "would create"));
    }
    let (value, made) = crate::secrets::load_or_create_secret_file(path, contents)?;
    if made {
        std::os::unix::fs::chown(path, Some(uid), Some(uid))?;
    }
    Ok((Some(value), if made { "created" } else { "unchanged" }))
}

/// The containers, as planned from the options and the secrets.
struct Specs {
    postgres: ContainerSpec,
    redis: ContainerSpec,
    berth: ContainerSpec,
}

fn on_network(o: &InstallOptions, mut spec: ContainerSpec, alias: &str) -> ContainerSpec {
    spec.network = Network::Bridge {
        name: o.instance.clone(),
        aliases: vec![alias.to_owned()],
    };
    spec.restart = Restart::UnlessStopped;
    spec.labels = o.labels();
    spec
}

/// A health check Docker runs every few seconds, patient at start.
fn check(argv: &[&str]) -> Option<HealthCheck> {
    Some(HealthCheck {
        argv: argv.iter().map(|a| (*a).to_owned()).collect(),
        interval: Duration::from_secs(5),
        timeout: Duration::from_secs(3),
        retries: 5,
        start_period: Duration::from_secs(30),
    })
}

fn specs(o: &InstallOptions, pg_password: &str, redis_password: &str, socket_gid: Option<u32>, slot: Slot) -> Specs {
    let mut postgres = on_network(o, ContainerSpec::new(o.postgres(), &o.postgres_image), "postgres");
    postgres.healthcheck = check(&["pg_isready", "-q", "-h", "127.0.0.1", "-U", "berth", "-d", "berth"]);
    postgres.env = vec![
        "POSTGRES_USER=berth".into(),
        "POSTGRES_DB=berth".into(),
        "POSTGRES_PASSWORD_FILE=/var/lib/postgresql/berth-password".into(),
    ];
    postgres.mounts = vec![Mount {
        source: MountSource::Volume(format!("{}-data", o.postgres())),
        target: "/var/lib/postgresql/data".into(),
        read_only: false,
    }];
    postgres.files = vec![FileSpec {
        path: "/var/lib/postgresql/berth-password".into(),
        contents: pg_password.as_bytes().to_vec(),
        mode: 0o600,
        uid: DB_UID,
        gid: DB_UID,
    }];

    let mut redis = on_network(o, ContainerSpec::new(o.redis(), &o.redis_image), "redis");
    // Unauthenticated, PING is refused with NOAUTH, which redis-cli reports
    // and exits 0 on: the server answers, which is what liveness asks (and no
    // password lands on an argument vector).
    redis.healthcheck = check(&["redis-cli", "-h", "127.0.0.1", "ping"]);
    // AOF as well as snapshots: a crash loses at most a second of queue state.
    redis.cmd = Some(vec!["redis-server".into(), "/data/berth-redis.conf".into()]);
    redis.mounts = vec![Mount {
        source: MountSource::Volume(format!("{}-data", o.redis())),
        target: "/data".into(),
        read_only: false,
    }];
    redis.files = vec![FileSpec {
        path: "/data/berth-redis.conf".into(),
        contents: format!("requirepass {redis_password}\nappendonly yes\nappendfsync everysec\ndir /data\n")
            .into_bytes(),
        mode: 0o600,
        uid: DB_UID,
        gid: DB_UID,
    }];

    let mut berth = on_network(o, ContainerSpec::new(&o.instance, &o.image), &slot.alias(&o.instance));
    berth.labels.insert(LABEL_SLOT.to_owned(), slot.name().to_owned());
    // The image's HEALTHCHECK, said here too: an image built without it is checked all the same.
    berth.healthcheck = check(&["/usr/local/bin/berth", "healthcheck"]);
    let dir = o.data_dir.display().to_string();
    berth.env = vec![
        format!("DATABASE_URL_FILE={}", o.secret("database.url").display()),
        format!("REDIS_URL_FILE={}", o.secret("redis.url").display()),
        format!("BERTH_SECRET_KEY_FILE={}", o.secret("secret.key").display()),
        format!("BERTH_DATA_DIR={dir}"),
        format!("BERTH_INSTANCE={}", o.instance),
        format!("BERTH_SELF_CONTAINER={}", o.instance),
        format!("BERTH_NETWORK={}", o.instance),
        format!("BERTH_PROXY_NAME={}-traefik", o.instance),
        format!("BERTH_TRAEFIK_IMAGE={}", o.traefik_image),
        format!("BERTH_PROXY_BIND={}", o.bind),
        format!("BERTH_HTTP_PORT={}", o.http_port),
        format!("BERTH_HTTPS_PORT={}", o.https_port),
        // No BERTH_DASHBOARD_UPSTREAM: the route is the installer's (module docs).
        format!("BERTH_DASHBOARD_HOST={}", o.host),
        format!("BERTH_DASHBOARD_CERT={}", o.dashboard_cert),
        format!("BERTH_PUBLIC_URL={}", o.public_url()),
        "BERTH_TRUST_PROXY=on".into(),
        "DOCKER_HOST=unix:///var/run/docker.sock".into(),
    ];
    berth.env.extend(o.env.iter().cloned());
    berth.mounts = vec![
        Mount {
            source: MountSource::Bind(dir.clone()),
            target: dir,
            read_only: false,
        },
        Mount {
            source: MountSource::Bind(o.docker_socket.display().to_string()),
            target: "/var/run/docker.sock".into(),
            read_only: false,
        },
    ];
    berth.group_add = socket_gid.map(|g| vec![g.to_string()]).unwrap_or_default();
    let mut s = Specs { postgres, redis, berth };
    for spec in [&mut s.postgres, &mut s.redis, &mut s.berth] {
        let fp = fingerprint(spec);
        spec.labels.insert(FINGERPRINT.to_owned(), fp);
    }
    s
}

/// A hash of everything in a specification (files by content hash): equal
/// specifications, equal fingerprints.
fn fingerprint(spec: &ContainerSpec) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let labels: std::collections::BTreeMap<_, _> = spec.labels.iter().filter(|(k, _)| *k != FINGERPRINT).collect();
    h.update(
        format!(
            "{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{labels:?}",
            spec.image, spec.env, spec.entrypoint, spec.cmd, spec.network, spec.restart, spec.mounts, spec.group_add
        )
        .as_bytes(),
    );
    h.update(format!("{:?}", spec.healthcheck).as_bytes());
    for f in &spec.files {
        h.update(f.path.as_bytes());
        h.update(Sha256::digest(&f.contents));
        h.update(format!("{:o}{}{}", f.mode, f.uid, f.gid).as_bytes());
    }
    hex::encode(&h.finalize()[..8])
}

/// Makes (or keeps) one container as specified.
async fn ensure_container(
    docker: &dyn DockerApi,
    spec: &ContainerSpec,
    dry: bool,
) -> Result<&'static str, DockerError> {
    let existing = docker.inspect_container(&spec.name).await?;
    if let Some(c) = &existing {
        if c.labels.get(FINGERPRINT) == spec.labels.get(FINGERPRINT) {
            if c.state.is_up() {
                return Ok("unchanged");
            }
            if dry {
                return Ok("would start");
            }
            docker.start_container(&spec.name).await?;
            return Ok("started");
        }
    }
    if dry {
        return Ok(if existing.is_some() {
            "would replace"
        } else {
            "would create"
        });
    }
    docker::ensure_image(docker, &spec.image, None, |_| {}).await?;
    if existing.is_some() {
        docker.stop_container(&spec.name, Duration::from_secs(30)).await?;
        docker.remove_container(&spec.name, false).await?;
    }
    docker.create_container(spec).await?;
    docker.start_container(&spec.name).await?;
    Ok(if existing.is_some() { "replaced" } else { "created" })
}

/// The group of the Docker socket, which Berth's user joins to use it.
fn socket_gid(path: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.gid())
}

/// Plans and (unless `dry`) applies the install; what each step found or did.
pub async fn install(docker: &dyn DockerApi, o: &InstallOptions, dry: bool) -> Result<Vec<Done>, InstallError> {
    let mut done = Vec::new();
    let mut note = |what: String, outcome: &str| {
        done.push(Done {
            what,
            outcome: outcome.to_owned(),
        })
    };
    let secrets_dir = o.data_dir.join("install");
    let dir_existed = secrets_dir.exists();
    if !dry {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(&secrets_dir)
            .map_err(|e| step_err("data directory", e))?;
        for d in [&o.data_dir, &secrets_dir] {
            std::os::unix::fs::chown(d, Some(BERTH_UID), Some(BERTH_UID)).map_err(|e| step_err("data directory", e))?;
        }
    }
    note(
        format!("data directory {}", o.data_dir.display()),
        if dir_existed {
            "unchanged"
        } else if dry {
            "would create"
        } else {
            "created"
        },
    );
    // Secrets, generated once.
    let mut secret = |file: &str, what: &str, uid: u32, contents: &dyn Fn() -> String| {
        let (value, outcome) =
            ensure_secret_file(&o.secret(file), uid, contents, dry).map_err(|e| step_err(what, e))?;
        note(format!("{what} (install/{file}, 0600)"), outcome);
        Ok::<_, InstallError>(value.unwrap_or_else(|| "(generated)".to_owned()))
    };
    let random = &crate::secrets::generate_key_string;
    secret("secret.key", "BERTH_SECRET_KEY", BERTH_UID, random)?;
    let pg_password = secret("postgres.password", "PostgreSQL password", 0, random)?;
    let redis_password = secret("redis.password", "Redis password", 0, random)?;
    secret("database.url", "database URL", BERTH_UID, &|| {
        format!("postgres://berth:{pg_password}@postgres:5432/berth")
    })?;
    secret("redis.url", "Redis URL", BERTH_UID, &|| {
        format!("redis://:{redis_password}@redis:6379")
    })?;

    let labels = o.labels();
    let network_exists = docker
        .list_networks(&[(docker::LABEL_INSTANCE, Some(o.instance.as_str()))])
        .await
        .map_err(|e| step_err("Docker", e))?
        .contains(&o.instance);
    if !dry {
        docker
            .ensure_network(&o.instance, &labels)
            .await
            .map_err(|e| step_err("network", e))?;
    }
    note(
        format!("network {}", o.instance),
        if network_exists {
            "unchanged"
        } else if dry {
            "would create"
        } else {
            "created"
        },
    );
    let volumes = docker
        .list_volumes(&[(docker::LABEL_INSTANCE, Some(o.instance.as_str()))])
        .await
        .map_err(|e| step_err("Docker", e))?;
    for v in [format!("{}-data", o.postgres()), format!("{}-data", o.redis())] {
        let exists = volumes.contains(&v);
        if !dry {
            docker
                .ensure_volume(&v, &labels)
                .await
                .map_err(|e| step_err("volumes", e))?;
        }
        note(
            format!("volume {v}"),
            if exists {
                "unchanged"
            } else if dry {
                "would create"
            } else {
                "created"
            },
        );
    }
    // Berth's running container keeps its image and slot: moving to another
    // image is `berth upgrade`'s, which does it without downtime.
    let running = docker
        .inspect_container(&o.instance)
        .await
        .map_err(|e| step_err("Docker", e))?
        .filter(|c| c.labels.contains_key(LABEL_INSTALL));
    let slot = running.as_ref().map(Slot::of).unwrap_or(Slot::Blue);
    let mut o = o.clone();
    if let Some(c) = &running {
        if c.image != o.image {
            note(
                format!(
                    "Berth's image: {} kept (`berth upgrade --image {}` moves to it)",
                    c.image, o.image
                ),
                "unchanged",
            );
            o.image = c.image.clone();
        }
    }
    let o = &o;
    if !dry {
        let saved = o.save().map_err(|e| step_err("options", e))?;
        note(
            "options (install/options.json)".into(),
            if saved { "written" } else { "unchanged" },
        );
    }
    let s = specs(o, &pg_password, &redis_password, socket_gid(&o.docker_socket), slot);
    for (what, spec) in [("PostgreSQL", &s.postgres), ("Redis", &s.redis), ("Berth", &s.berth)] {
        let outcome = ensure_container(docker, spec, dry)
            .await
            .map_err(|e| step_err(&format!("{what} container {}", spec.name), e))?;
        note(format!("{what} container {} ({})", spec.name, spec.image), outcome);
    }
    // The dashboard's route, to the slot Berth runs in.
    let route = if dry {
        "would write"
    } else {
        match o.write_route(slot) {
            Ok(true) => "written",
            Ok(false) => "unchanged",
            Err(e) => return Err(step_err("the dashboard's route", e)),
        }
    };
    note(
        format!("dashboard route {} -> {}", o.host, slot.alias(&o.instance)),
        route,
    );
    Ok(done)
}

/// The secrets `berth install` generated (PostgreSQL's and Redis's passwords).
fn read_secrets(o: &InstallOptions) -> Result<(String, String), InstallError> {
    let read = |f: &str| {
        std::fs::read_to_string(o.secret(f))
            .map(|s| s.trim().to_owned())
            .map_err(|e| step_err("reading the installation", format!("install/{f}: {e}")))
    };
    Ok((read("postgres.password")?, read("redis.password")?))
}

/// Waits until Berth's container `container` reports itself healthy
/// (`berth healthcheck` in it), up to `limit`; a container that stopped is
/// not waited for.
pub async fn wait_healthy(docker: &dyn DockerApi, container: &str, limit: Duration) -> Result<(), String> {
    let start = std::time::Instant::now();
    let check = docker::Exec::argv(["/usr/local/bin/berth", "healthcheck"]);
    let mut last = String::from("no answer yet");
    while start.elapsed() < limit {
        match docker.exec(container, &check, None, None).await {
            Ok(out) if out.exit_code == 0 => return Ok(()),
            Ok(out) => last = out.stderr_tail.trim().to_owned(),
            Err(e) => last = e.to_string(),
        }
        if let Ok(Some(c)) = docker.inspect_container(container).await {
            if !c.state.is_up() && c.restart_count > 2 {
                return Err(format!("it keeps exiting ({}), last: {last}", c.state.status));
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(format!("not healthy within {} s: {last}", limit.as_secs()))
}

/// The one-time setup token, read by Berth in its container.
pub async fn setup_token(docker: &dyn DockerApi, o: &InstallOptions) -> Result<Option<String>, InstallError> {
    let ask = docker::Exec::argv(["/usr/local/bin/berth", "admin", "setup-token"]);
    let out = docker
        .exec(&o.instance, &ask, None, None)
        .await
        .map_err(|e| step_err("reading the setup token", e))?;
    if out.exit_code != 0 {
        return Err(step_err("reading the setup token", out.stderr_tail.trim()));
    }
    Ok(Some(out.stdout.trim().to_owned()).filter(|t| !t.is_empty()))
}

/// Removes every container and network of the instance (the apps' and
/// databases' too, and the Traefik Berth ran); volumes and the data
/// directory only with `purge`.
pub async fn uninstall(
    docker: &dyn DockerApi,
    instance: &str,
    data_dir: Option<&Path>,
    purge: bool,
) -> Result<Vec<Done>, InstallError> {
    let mut done = Vec::new();
    let by_instance = [(docker::LABEL_INSTANCE, Some(instance))];
    // Berth first: its worker would otherwise repair what goes next; then one
    // more look for anything started while Berth was stopping.
    for pass in 0..2 {
        let mut containers = docker
            .list_containers(&by_instance)
            .await
            .map_err(|e| step_err("Docker", e))?;
        if pass == 0 {
            containers.sort_by_key(|c| c.name != instance);
        }
        for c in containers {
            docker
                .remove_container(&c.name, false)
                .await
                .map_err(|e| step_err(&format!("removing container {}", c.name), e))?;
            done.push(Done {
                what: format!("container {}", c.name),
                outcome: "removed".into(),
            });
        }
    }
    for n in docker
        .list_networks(&by_instance)
        .await
        .map_err(|e| step_err("Docker", e))?
    {
        docker
            .remove_network(&n)
            .await
            .map_err(|e| step_err(&format!("removing network {n}"), e))?;
        done.push(Done {
            what: format!("network {n}"),
            outcome: "removed".into(),
        });
    }
    let volumes = docker
        .list_volumes(&by_instance)
        .await
        .map_err(|e| step_err("Docker", e))?;
    for v in volumes {
        if purge {
            docker
                .remove_volume(&v)
                .await
                .map_err(|e| step_err(&format!("removing volume {v}"), e))?;
        }
        done.push(Done {
            what: format!("volume {v}"),
            outcome: if purge { "removed" } else { "kept (--purge removes it)" }.into(),
        });
    }
    if let (true, Some(dir)) = (purge, data_dir) {
        std::fs::remove_dir_all(dir).map_err(|e| step_err("removing the data directory", e))?;
        done.push(Done {
            what: format!("data directory {}", dir.display()),
            outcome: "removed".into(),
        });
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> InstallOptions {
        InstallOptions {
            instance: "berth".into(),
            image: "berth:1".into(),
            postgres_image: "postgres:16".into(),
            redis_image: "redis:7".into(),
            traefik_image: "traefik:v3.3".into(),
            data_dir: "/var/lib/berth".into(),
            docker_socket: "/var/run/docker.sock".into(),
            host: "berth.example.com".into(),
            dashboard_cert: "http".into(),
            bind: "0.0.0.0".into(),
            http_port: 80,
            https_port: 443,
            env: Vec::new(),
        }
    }

    #[test]
    fn secrets_reach_the_containers_as_files_only() {
        let s = specs(&options(), "pg-secret", "redis-secret", Some(998), Slot::Blue);
        for spec in [&s.postgres, &s.redis, &s.berth] {
            let shown = format!("{:?} {:?} {:?} {:?}", spec.env, spec.cmd, spec.labels, spec.mounts);
            assert!(
                !shown.contains("pg-secret") && !shown.contains("redis-secret"),
                "{shown}"
            );
        }
        assert!(s
            .berth
            .env
            .contains(&"DATABASE_URL_FILE=/var/lib/berth/install/database.url".to_owned()));
        assert_eq!(s.berth.group_add, ["998"]);
        assert!(s
            .berth
            .env
            .contains(&"BERTH_PUBLIC_URL=https://berth.example.com".to_owned()));
        assert_eq!(s.redis.files[0].mode, 0o600);
    }

    #[test]
    fn the_same_options_give_the_same_fingerprints() {
        let a = specs(&options(), "p", "r", None, Slot::Blue);
        let b = specs(&options(), "p", "r", None, Slot::Blue);
        assert_eq!(a.berth.labels[FINGERPRINT], b.berth.labels[FINGERPRINT]);
        let mut other = options();
        other.image = "berth:2".into();
        assert_ne!(
            specs(&other, "p", "r", None, Slot::Blue).berth.labels[FINGERPRINT],
            a.berth.labels[FINGERPRINT]
        );
        assert_ne!(
            specs(&options(), "p2", "r", None, Slot::Blue).postgres.labels[FINGERPRINT],
            a.postgres.labels[FINGERPRINT]
        );
    }
}
