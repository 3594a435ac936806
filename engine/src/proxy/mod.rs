//! Traefik, the reverse proxy. Berth runs it as the managed container
//! `berth-traefik` on the `berth` network and routes through its file provider:
//! one dynamic file per application, replaced atomically (write + rename), naming
//! the live container's address. Why files and not labels: docs/decisions/0002.
//! Traefik's API and dashboard are never enabled; `/ping` answers on an
//! entrypoint of its own that is not published. Certificates: [`acme`],
//! [`certs`] and docs/decisions/0005.

pub mod acme;
pub mod certs;
pub mod precheck;
pub mod routes;

pub use routes::{app_config, dashboard_config, dashboard_token, upstream_host, Route, Upstream};

use crate::config::DeployConfig;
use crate::docker::{self, ContainerSpec, DockerError, Mount, MountSource, Network, Proto, Publish, Restart};
use crate::Engine;
use acme::AcmeSettings;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// The port of Traefik's `ping` entrypoint inside its container.
pub const PING_PORT: u16 = 8082;

/// Where the dynamic files appear inside the Traefik container.
const DYNAMIC_IN_CONTAINER: &str = "/etc/berth/dynamic";
/// The response header Traefik adds for each app: the deploy pipeline reads it
/// through the proxy to know when traffic has really moved to a new container.
/// Its value is a [`route_token`], never the deployment's ID (IDs stay internal).
pub const DEPLOYMENT_HEADER: &str = "x-berth-deployment";
/// On the dashboard's answers through Traefik: [`dashboard_token`] of its upstream.
pub const DASHBOARD_ROUTE_HEADER: &str = "x-berth-route";

/// An opaque token for a deployment's route: an HMAC of its ID under the
/// instance key, so it says nothing about the ID and cannot be forged.
pub fn route_token(engine: &Engine, deployment: uuid::Uuid) -> String {
    use hmac::{Hmac, Mac};
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(&engine.secret.derive("route-token-v1")).expect("any key length");
    mac.update(deployment.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..12])
}

/// An application's key in Traefik's configuration (its file and router names):
/// from its ID, since names are unique per organization only.
pub fn app_key(app: crate::ids::AppId) -> String {
    format!("a{}", app.0.simple())
}

/// Where an application's routes are written (for tests and tools that read
/// them; the name is this module's to choose).
pub fn route_file(engine: &Engine, app: crate::ids::AppId) -> PathBuf {
    file_for(engine, &app_key(app))
}

fn file_for(engine: &Engine, app: &str) -> PathBuf {
    engine.deploy.proxy.dynamic_dir.join(file_name(app))
}

/// An app's route file's name (`app` is an [`app_key`]: IDs only).
fn file_name(app: &str) -> String {
    format!("app-{app}.yml")
}

/// Whether a file in the dynamic directory is an app's route file
/// ([`file_name`]'s form).
fn is_route_file(name: &str) -> bool {
    name.starts_with("app-") && name.ends_with(".yml")
}

/// Traefik's static configuration, as container arguments.
fn traefik_args(acme: &AcmeSettings) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--entrypoints.web.address=:80".into(),
        "--entrypoints.websecure.address=:443".into(),
        format!("--entrypoints.ping.address=:{PING_PORT}"),
        format!("--providers.file.directory={DYNAMIC_IN_CONTAINER}"),
        "--providers.file.watch=true".into(),
        // Routes switch right after a file change (default: 2 s of throttling).
        // Berth writes one file per deployment step, never bursts.
        "--providers.providersThrottleDuration=10ms".into(),
        "--api=false".into(),
        "--ping=true".into(),
        "--ping.entrypoint=ping".into(),
        "--global.checkNewVersion=false".into(),
        "--global.sendAnonymousUsage=false".into(),
        "--log.level=WARN".into(),
        // One JSON object per line: Berth reads ACME failures from it (`certs::acme_failures`).
        "--log.format=json".into(),
    ];
    args.extend(acme.traefik_args());
    args
}

/// The labels on everything this instance creates that is not an app's or a service's.
fn instance_labels(engine: &Engine) -> HashMap<String, String> {
    labels_of(&engine.deploy)
}

fn labels_of(deploy: &DeployConfig) -> HashMap<String, String> {
    HashMap::from([(docker::LABEL_INSTANCE.to_owned(), deploy.instance.clone())])
}

/// The named volume holding `acme.json`: it outlives Traefik's container, so
/// a restart or an upgrade asks the CA for nothing it already has.
pub fn acme_volume(deploy: &DeployConfig) -> String {
    format!("{}-acme", deploy.proxy.container)
}

/// The host directory of the DNS provider's credential files (mode 0700, files 0600).
fn dns_secrets_dir(deploy: &DeployConfig) -> PathBuf {
    deploy.data_dir.join("traefik-dns")
}

/// Writes the DNS provider's credentials as files Traefik reads, removing any
/// that are no longer set.
fn write_dns_secrets(engine: &Engine, acme: &AcmeSettings) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = dns_secrets_dir(&engine.deploy);
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // Another writer's temporary file (a replica writing the same files
        // now) is left alone; one left by a crash goes after a minute.
        let in_flight = name.starts_with('.')
            && name.ends_with(".tmp")
            && entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().unwrap_or_default() < Duration::from_secs(60));
        if !in_flight && !acme.dns_credentials.iter().any(|(n, _)| *n == name) {
            // Gone already is fine: another replica cleaning up at once.
            match std::fs::remove_file(entry.path()) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    for (name, value) in &acme.dns_credentials {
        certs::write_private(&dir, name, value.as_bytes())?;
    }
    Ok(())
}

/// The managed Traefik container, as configured. Its fingerprint label changes
/// whenever anything here does (the credentials' values included, by hash),
/// which is how a changed configuration is noticed; all but the CPU weight,
/// which Docker changes in place (`ensure`).
fn traefik_spec(deploy: &DeployConfig, acme: &AcmeSettings) -> ContainerSpec {
    use sha2::{Digest, Sha256};
    let cfg = &deploy.proxy;
    let mut spec = ContainerSpec::new(&cfg.container, &cfg.image);
    spec.cmd = Some(traefik_args(acme));
    spec.exposed = vec![(80, Proto::Tcp), (443, Proto::Tcp)];
    spec.publish = [(80, cfg.http_port), (443, cfg.https_port)]
        .into_iter()
        .map(|(container_port, host_port)| Publish {
            container_port,
            proto: Proto::Tcp,
            host_ip: cfg.bind.clone(),
            host_port,
        })
        .collect();
    if acme.http3 {
        spec.exposed.push((443, Proto::Udp));
        spec.publish.push(Publish {
            container_port: 443,
            proto: Proto::Udp,
            host_ip: cfg.bind.clone(),
            host_port: cfg.https_port,
        });
    }
    spec.network = Network::Bridge {
        name: deploy.network.clone(),
        aliases: Vec::new(),
    };
    spec.restart = Restart::UnlessStopped;
    spec.cpu_shares = Some(PROXY_CPU_SHARES);
    spec.mounts = vec![
        Mount {
            source: MountSource::Bind(cfg.dynamic_dir.to_string_lossy().into_owned()),
            target: DYNAMIC_IN_CONTAINER.into(),
            read_only: true,
        },
        Mount {
            source: MountSource::Volume(acme_volume(deploy)),
            target: acme::ACME_DIR.into(),
            read_only: false,
        },
    ];
    spec.env = acme.traefik_env();
    if !acme.dns_credentials.is_empty() {
        spec.mounts.push(Mount {
            source: MountSource::Bind(dns_secrets_dir(deploy).to_string_lossy().into_owned()),
            target: acme::DNS_SECRETS_DIR.into(),
            read_only: true,
        });
    }
    if let Some(ca) = &cfg.acme_ca_file {
        spec.mounts.push(Mount {
            source: MountSource::Bind(ca.to_string_lossy().into_owned()),
            target: acme::CA_FILE.into(),
            read_only: true,
        });
        spec.env.push(format!("LEGO_CA_CERTIFICATES={}", acme::CA_FILE));
    }
    let mut labels = labels_of(deploy);
    labels.insert(docker::LABEL_ROLE.to_owned(), "proxy".to_owned());
    spec.labels = labels;
    // Everything but the labels' HashMap (whose order varies) plus the labels sorted.
    let mut h = Sha256::new();
    let sorted: std::collections::BTreeMap<_, _> = spec.labels.iter().collect();
    h.update(
        format!(
            "{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{sorted:?}",
            spec.image, spec.cmd, spec.exposed, spec.publish, spec.network, spec.restart, spec.mounts, spec.env
        )
        .as_bytes(),
    );
    for (n, v) in &acme.dns_credentials {
        h.update(n.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    spec.labels
        .insert(FINGERPRINT.to_owned(), hex::encode(&h.finalize()[..8]));
    spec
}

const FINGERPRINT: &str = "berth.proxy-config";

/// Traefik's CPU weight, four times a container's default (1024): every
/// request to every app waits on it, so when a rollout's container starts and
/// ends fill the cores, it runs before the apps and builds beside it
/// (docs/BENCHMARKS.md, "The rollout tail"). A weight, not a reservation: an
/// idle Traefik leaves the cores to the others.
pub const PROXY_CPU_SHARES: i64 = 4096;

/// Makes sure the network and dynamic directory exist, and that the managed
/// Traefik runs with the configured settings (replaced when they changed).
pub async fn ensure(engine: &Engine) -> Result<(), DockerError> {
    let cfg = &engine.deploy.proxy;
    std::fs::create_dir_all(&cfg.dynamic_dir).map_err(|e| DockerError::Unreachable {
        host: cfg.dynamic_dir.display().to_string(),
        reason: e.to_string(),
    })?;
    crate::network::ensure_named(engine, &engine.deploy.network, &instance_labels(engine)).await?;
    write_dashboard(engine);
    if !cfg.manage {
        return Ok(());
    }
    let acme = acme::settings(engine).await.map_err(|e| DockerError::Unreachable {
        host: "the database".into(),
        reason: e.to_string(),
    })?;
    write_dns_secrets(engine, &acme).map_err(|e| DockerError::Unreachable {
        host: dns_secrets_dir(&engine.deploy).display().to_string(),
        reason: e.to_string(),
    })?;
    certs::ensure_default(&cfg.dynamic_dir).map_err(|e| DockerError::Unreachable {
        host: cfg.dynamic_dir.display().to_string(),
        reason: e.to_string(),
    })?;
    let spec = traefik_spec(&engine.deploy, &acme);
    if let Some(existing) = engine.docker.inspect_container(&cfg.container).await? {
        if existing.labels.get(FINGERPRINT) == spec.labels.get(FINGERPRINT) {
            // A Traefik made before it had its weight (or given another by
            // hand) gets it without a restart: no request is dropped for it.
            if let Some(shares) = spec.cpu_shares.filter(|s| *s != existing.cpu_shares) {
                tracing::info!(container = %cfg.container, shares, "setting Traefik's CPU weight");
                engine.docker.set_cpu_shares(&cfg.container, shares).await?;
            }
            if !existing.state.is_up() {
                engine.docker.start_container(&cfg.container).await?;
            }
            return Ok(());
        }
        tracing::info!(container = %cfg.container, "replacing Traefik: its configuration changed");
        engine.docker.remove_container(&cfg.container, false).await?;
    }
    docker::ensure_image(&*engine.docker, &cfg.image, None, |_| {}).await?;
    engine
        .docker
        .ensure_volume(&acme_volume(&engine.deploy), &instance_labels(engine))
        .await?;
    match engine.docker.create_container(&spec).await {
        Ok(()) => {}
        // Made meanwhile by another caller (the deploy worker and the
        // reconciler both make it at first start): theirs is this one.
        Err(DockerError::Refused { status: 409, .. })
            if engine
                .docker
                .inspect_container(&cfg.container)
                .await?
                .is_some_and(|c| c.labels.get(FINGERPRINT) == spec.labels.get(FINGERPRINT)) =>
        {
            tracing::debug!(container = %cfg.container, "Traefik was made meanwhile by another caller");
        }
        Err(e) => return Err(e),
    }
    engine.docker.start_container(&cfg.container).await?;
    // A new container is on no organization's network yet.
    crate::network::attach_proxy_everywhere(engine).await?;
    tracing::info!(container = %cfg.container, image = %cfg.image, "Traefik started");
    Ok(())
}

/// Writes (or, with no upstream or no domain, removes) an application's routes.
/// JSON is YAML, so the file is serde_json output: every value is quoted
/// correctly by construction. Written to a temporary file and renamed: Traefik
/// never reads a half-written file.
pub async fn write_app(
    engine: &Engine,
    app: crate::ids::AppId,
    routes: &[Route],
    up: Option<&Upstream>,
) -> std::io::Result<()> {
    let app = &app_key(app);
    let path = file_for(engine, app);
    // An app with no domain has nothing to route, and its file would hold
    // empty `routers` and `services`, which Traefik's file provider rejects
    // ("routers cannot be a standalone element") together with every other
    // file in the directory: every app's routes would stop changing, and after
    // Traefik restarts none would be served.
    match up.filter(|_| !routes.is_empty()) {
        None => match tokio::fs::remove_file(&path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
        Some(up) => {
            tokio::fs::create_dir_all(&engine.deploy.proxy.dynamic_dir).await?;
            let token = route_token(engine, up.deployment);
            let body = serde_json::to_vec_pretty(&app_config(app, routes, up, &token)).expect("serializes");
            // Unchanged: no write, so Traefik does not reload for nothing.
            if tokio::fs::read(&path).await.is_ok_and(|old| old == body) {
                return Ok(());
            }
            // A deployment and the reconciler (or two replicas) may route one
            // app at once: each replaces the file whole.
            certs::replace_file(&engine.deploy.proxy.dynamic_dir, &file_name(app), &body, false)
        }
    }
}

/// Removes the route files of apps not in `apps` (deleted while no worker ran,
/// or named otherwise by an earlier Berth): at worker start, after every
/// existing app's route was rewritten.
pub async fn remove_stale_routes(engine: &Engine, apps: &[crate::ids::AppId]) {
    let current: std::collections::HashSet<String> = apps.iter().map(|id| file_name(&app_key(*id))).collect();
    let Ok(mut dir) = tokio::fs::read_dir(&engine.deploy.proxy.dynamic_dir).await else {
        return;
    };
    while let Ok(Some(entry)) = dir.next_entry().await {
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_route_file(&name) && !current.contains(&name) {
            tracing::info!(file = %name, "removing a stale route file");
            let _ = tokio::fs::remove_file(entry.path()).await;
        }
    }
}

/// The files in Traefik's dynamic directory (and below it) that Traefik reads
/// and Berth did not write, as paths relative to it, sorted. Traefik's file
/// provider refuses the whole directory when one file in it does not parse,
/// so one such file with a typo stops every app's route from changing; a
/// deployment that waited for its route in vain names them (they may well be
/// an operator's own middlewares, or a Traefik not managed by Berth sharing
/// the directory, and fine).
pub fn foreign_files(engine: &Engine) -> Vec<String> {
    let root = &engine.deploy.proxy.dynamic_dir;
    let ours =
        |name: &str| is_route_file(name) || [DASHBOARD_FILE, certs::DEFAULT_FILE, certs::CUSTOM_FILE].contains(&name);
    let mut found = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(path);
            } else if [".yml", ".yaml", ".toml"].iter().any(|x| name.ends_with(x)) && !(dir == *root && ours(&name)) {
                found.push(path.strip_prefix(root).unwrap_or(&path).to_string_lossy().into_owned());
            }
        }
    }
    found.sort();
    found
}

/// The managed Traefik's log since `since` (UNIX seconds), at most 4 MiB:
/// the CA's refusals (`certs::acme_failures`), a dynamic file it refuses
/// ([`refused_config`]).
pub async fn recent_log(engine: &Engine, since: i64) -> String {
    use futures::StreamExt;
    let mut stream = engine.docker.logs(
        &engine.deploy.proxy.container,
        crate::docker::LogOptions {
            follow: false,
            tail: None,
            since: Some(since),
        },
    );
    let mut out = Vec::new();
    while let Some(Ok(chunk)) = stream.next().await {
        out.extend_from_slice(&chunk.bytes);
        if out.len() > 4 << 20 {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Why Traefik's file provider last refused its dynamic directory, from its
/// log lines (the newest refusal): its own words, which name the file and the
/// line (`collecting file configs: <file>: yaml: line 3: ...`), with the
/// directory as this host sees it (`dynamic_dir`) instead of its path in the
/// container. Bounded, without control characters: it goes to the log.
pub fn refused_config(log: &str, dynamic_dir: &std::path::Path) -> Option<String> {
    let v = log
        .lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line.trim()).ok())
        .find(|v| v["providerName"] == "file" && v["level"] == "error")?;
    let error = v["error"].as_str()?;
    Some(quoted(
        &error.replace(DYNAMIC_IN_CONTAINER, &dynamic_dir.to_string_lossy()),
    ))
}

/// Traefik's words as Berth passes them on (a deployment's or domain's
/// reason, its own log): without control characters, at most 400 characters.
fn quoted(text: &str) -> String {
    let mut out: String = text.chars().filter(|c| !c.is_control()).take(400).collect();
    if text.chars().count() > 400 {
        out.push('…');
    }
    out
}

pub async fn remove_app(engine: &Engine, app: crate::ids::AppId) {
    if let Err(e) = write_app(engine, app, &[], None).await {
        tracing::warn!(error = %e, app.id = %app, "removing routes");
    }
}

/// The Berth dashboard through Traefik, when a host is configured. With no
/// upstream configured the route is not Berth's to write: `berth install` and
/// `berth upgrade` write it, since only they know which Berth container is live.
fn write_dashboard(engine: &Engine) {
    let cfg = &engine.deploy.proxy;
    let path = cfg.dynamic_dir.join(DASHBOARD_FILE);
    let Some(host) = &cfg.dashboard_host else {
        let _ = std::fs::remove_file(path);
        return;
    };
    if let Some(upstream) = &cfg.dashboard_upstream {
        let resolver = cfg.dashboard_cert.and_then(|c| c.resolver());
        if let Err(e) = write_dashboard_route(&cfg.dynamic_dir, host, upstream, resolver) {
            tracing::warn!(error = %e, "writing the dashboard's route");
        }
    }
}

/// The dashboard's route file in Traefik's dynamic directory.
pub const DASHBOARD_FILE: &str = "berth-dashboard.yml";

/// Writes the dashboard's route (temporary file, then rename: Traefik never
/// reads half a file); whether it changed.
pub fn write_dashboard_route(
    dir: &std::path::Path,
    host: &str,
    upstream: &str,
    resolver: Option<&str>,
) -> std::io::Result<bool> {
    let body = serde_json::to_vec_pretty(&dashboard_config(host, upstream, resolver)).expect("serializes");
    let path = dir.join(DASHBOARD_FILE);
    if std::fs::read(&path).is_ok_and(|old| old == body) {
        return Ok(false);
    }
    std::fs::create_dir_all(dir)?;
    // `berth install` and a running Berth may write it at once.
    certs::replace_file(dir, DASHBOARD_FILE, &body, false)?;
    Ok(true)
}

/// Which upstream Traefik sends the dashboard's `/health` to now: the
/// [`DASHBOARD_ROUTE_HEADER`] of its answer, asked at `addr` over HTTPS when
/// `tls` (any certificate accepted: this reads the route, it sends nothing).
pub async fn dashboard_route_token(
    addr: std::net::SocketAddr,
    host: &str,
    tls: bool,
) -> Result<Option<String>, String> {
    let timeout = Duration::from_secs(3);
    if tls {
        let head = certs::head_over_tls(addr, host, "/health", timeout).await?;
        return Ok(head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(DASHBOARD_ROUTE_HEADER)
                .then(|| v.trim().to_owned())
        }));
    }
    let r = crate::http1::request(&addr.ip().to_string(), addr.port(), "HEAD", host, "/health", timeout)
        .await
        .map_err(|e| e.to_string())?;
    Ok(r.header(DASHBOARD_ROUTE_HEADER).map(str::to_owned))
}

/// Traefik's answer to `/ping` on its own entrypoint, reached at its address
/// on the Berth network (the entrypoint is never published).
pub async fn ping(engine: &Engine) -> Result<(), String> {
    let info = engine
        .docker
        .inspect_container(&engine.deploy.proxy.container)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("Traefik's container does not exist")?;
    if !info.state.is_up() {
        return Err("Traefik is not running".into());
    }
    let addr = engine
        .docker
        .endpoint(&info, &engine.deploy.network, PING_PORT)
        .ok_or("Traefik has no address on the Berth network")?;
    let reply = crate::http1::request(
        &addr.ip().to_string(),
        PING_PORT,
        "GET",
        "traefik",
        "/ping",
        Duration::from_secs(2),
    )
    .await
    .map_err(|e| format!("/ping: {e}"))?;
    if reply.status == 200 {
        Ok(())
    } else {
        Err(format!("/ping answered {}", reply.status))
    }
}

/// Where Berth itself reaches Traefik's `web` (or, with `tls`, `websecure`)
/// entrypoint: its published port on this host, or, when Berth runs in a
/// container of its own, Traefik's address on the Berth network (the host's
/// loopback is not Berth's there).
pub async fn entry(engine: &Engine, tls: bool) -> std::net::SocketAddr {
    let cfg = &engine.deploy.proxy;
    if engine.deploy.self_container.is_some() {
        if let Ok(Some(info)) = engine.docker.inspect_container(&cfg.container).await {
            if let Some(addr) = engine
                .docker
                .endpoint(&info, &engine.deploy.network, if tls { 443 } else { 80 })
            {
                return addr;
            }
        }
    }
    reach(&cfg.bind, if tls { cfg.https_port } else { cfg.http_port })
}

/// Where this host reaches a port published on `bind` (an unspecified or
/// unreadable address: loopback).
pub fn reach(bind: &str, port: u16) -> std::net::SocketAddr {
    let ip: std::net::IpAddr = bind
        .parse()
        .ok()
        .filter(|ip: &std::net::IpAddr| !ip.is_unspecified())
        .unwrap_or([127, 0, 0, 1].into());
    std::net::SocketAddr::new(ip, port)
}

/// Waits until a request through Traefik for `host` + `path` is answered by
/// `deployment` (Traefik adds [`DEPLOYMENT_HEADER`]). Returns whether it was seen.
/// With an unmanaged proxy there is nothing to ask: wait out its reload instead
/// (`ProxyConfig::unmanaged_settle`).
pub async fn wait_routed(engine: &Engine, host: &str, path: &str, deployment: uuid::Uuid, limit: Duration) -> bool {
    if !engine.deploy.proxy.manage {
        tokio::time::sleep(engine.deploy.proxy.unmanaged_settle).await;
        return true;
    }
    let want = route_token(engine, deployment);
    let start = std::time::Instant::now();
    let mut at = entry(engine, false).await;
    while start.elapsed() < limit {
        let answer = crate::http1::request(
            &at.ip().to_string(),
            at.port(),
            "HEAD",
            host,
            path,
            Duration::from_secs(2),
        )
        .await;
        match answer {
            Ok(r) if r.header(DEPLOYMENT_HEADER) == Some(want.as_str()) => return true,
            // Traefik may have been recreated with another address.
            Err(_) => at = entry(engine, false).await,
            Ok(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fingerprint(spec: &ContainerSpec) -> String {
        spec.labels[FINGERPRINT].clone()
    }

    #[test]
    fn a_refused_dynamic_file_is_read_from_traefiks_log() {
        // As Traefik 3 logs it (JSON), between lines about other things.
        let log = concat!(
            r#"{"level":"warn","time":"2026-12-04T11:19:32Z","message":"Traefik can reject some encoded characters"}"#,
            "\n",
            r#"{"level":"error","providerName":"file","error":"collecting file configs: /etc/berth/dynamic/old.yml: yaml: line 1: x","time":"2026-12-04T11:19:40Z","message":"Error while building configuration (for the first time)"}"#,
            "\n",
            r#"{"level":"error","providerName":"http01.acme","error":"acme: error","message":"Unable to obtain ACME certificate for domains"}"#,
            "\n",
            r#"{"level":"error","providerName":"file","error":"collecting file configs: /etc/berth/dynamic/custom.yml: yaml: line 3: did not find expected node content","time":"2026-12-04T11:19:42Z","message":"Error occurred during watcher callback"}"#,
            "\n",
        );
        let dir = std::path::Path::new("/var/lib/berth/traefik/dynamic");
        assert_eq!(
            refused_config(log, dir).as_deref(),
            Some(
                "collecting file configs: /var/lib/berth/traefik/dynamic/custom.yml: yaml: line 3: did not find expected node content"
            )
        );
        assert_eq!(refused_config(&log.lines().take(1).collect::<String>(), dir), None);
        assert_eq!(refused_config("not json\n", dir), None);
    }

    #[test]
    fn traefik_keeps_acme_json_on_a_volume_and_credentials_in_files() {
        let deploy = DeployConfig::default();
        let plain = traefik_spec(&deploy, &AcmeSettings::default());
        assert!(plain
            .mounts
            .iter()
            .any(|m| m.source == MountSource::Volume("berth-traefik-acme".into())
                && m.target == acme::ACME_DIR
                && !m.read_only));
        assert!(plain.env.is_empty());
        assert!(!plain.publish.iter().any(|p| p.proto == Proto::Udp));
        let cmd = plain.cmd.clone().unwrap();
        assert!(cmd.contains(&"--ping.entrypoint=ping".to_owned()));
        assert!(cmd.contains(&"--log.format=json".to_owned()));

        let mut acme = AcmeSettings {
            dns_provider: Some("cloudflare".into()),
            dns_credentials: vec![("CF_DNS_API_TOKEN".into(), "tok-1".into())],
            http3: true,
            ..AcmeSettings::default()
        };
        let with = traefik_spec(&deploy, &acme);
        assert_eq!(with.env, ["CF_DNS_API_TOKEN_FILE=/etc/berth/dns/CF_DNS_API_TOKEN"]);
        assert!(with
            .mounts
            .iter()
            .any(|m| m.target == acme::DNS_SECRETS_DIR && m.read_only));
        assert!(
            !format!("{with:?}").contains("tok-1"),
            "the value is in no part of the spec"
        );
        // HTTP/3: UDP 443 published on the HTTPS port, `http3` on websecure.
        assert!(with.exposed.contains(&(443, Proto::Udp)));
        assert!(with
            .publish
            .iter()
            .any(|p| p.proto == Proto::Udp && p.container_port == 443 && p.host_port == 443));
        assert!(with
            .cmd
            .as_ref()
            .unwrap()
            .contains(&"--entrypoints.websecure.http3=true".to_owned()));
        // A new credential value recreates Traefik (lego reads it at start).
        let before = fingerprint(&with);
        acme.dns_credentials[0].1 = "tok-2".into();
        assert_ne!(fingerprint(&traefik_spec(&deploy, &acme)), before);
        assert_ne!(fingerprint(&plain), before);
    }
}
