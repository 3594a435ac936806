//! Traefik, the reverse proxy. Berth runs it as the managed container
//! `berth-traefik` on the `berth` network and routes through its file provider:
//! one dynamic file per application, replaced atomically (write + rename), naming
//! the live container's address. Why files and not labels: docs/decisions/0002.
//! Traefik's API and dashboard are never enabled.

use crate::docker::{self, ContainerSpec, DockerError, Mount, MountSource, Network, Proto, Publish, Restart};
use crate::Engine;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// Where the dynamic files appear inside the Traefik container.
const DYNAMIC_IN_CONTAINER: &str = "/etc/berth/dynamic";
/// The response header Traefik adds for each app: the deploy pipeline reads it
/// through the proxy to know when traffic has really moved to a new container.
/// Its value is a [`route_token`], never the deployment's ID (IDs stay internal).
pub const DEPLOYMENT_HEADER: &str = "x-berth-deployment";

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

/// One host (and path) routed to an application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub host: String,
    pub path_prefix: String,
    pub strip_prefix: bool,
    /// The container port, when not the application's.
    pub port: Option<u16>,
    pub https: bool,
}

/// What a route points at: the deployment and the container's address.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub deployment: uuid::Uuid,
    pub port: u16,
    /// The container's IP on its organization's network, when known. Traefik
    /// then connects without asking Docker's DNS, which is served by dockerd
    /// itself and answers late while dockerd is busy starting and stopping
    /// containers (a rollout): the main source of the rollout tail
    /// (docs/BENCHMARKS.md). A container that comes back with another address
    /// is routed again by the reconciler. Without it, the DNS alias.
    pub address: Option<String>,
}

/// The DNS name a deployment's container answers to on the Berth network. Traefik
/// resolves it through Docker's DNS, so a container that restarts with a new
/// address stays routed (container names can exceed a DNS label; this cannot).
pub fn upstream_host(deployment: uuid::Uuid) -> String {
    format!("d-{}", deployment.simple())
}

fn file_for(engine: &Engine, app: &str) -> PathBuf {
    // `app` is an [`app_key`]: IDs only.
    engine.deploy.proxy.dynamic_dir.join(format!("app-{app}.yml"))
}

/// Traefik's static configuration, as container arguments.
fn traefik_args() -> Vec<String> {
    vec![
        "--entrypoints.web.address=:80".into(),
        "--entrypoints.websecure.address=:443".into(),
        format!("--providers.file.directory={DYNAMIC_IN_CONTAINER}"),
        "--providers.file.watch=true".into(),
        // Routes switch right after a file change (default: 2 s of throttling).
        // Berth writes one file per deployment step, never bursts.
        "--providers.providersThrottleDuration=10ms".into(),
        "--api=false".into(),
        "--ping=false".into(),
        "--global.checkNewVersion=false".into(),
        "--global.sendAnonymousUsage=false".into(),
        "--log.level=WARN".into(),
    ]
}

/// The labels on everything this instance creates that is not an app's or a service's.
fn instance_labels(engine: &Engine) -> HashMap<String, String> {
    HashMap::from([(docker::LABEL_INSTANCE.to_owned(), engine.deploy.instance.clone())])
}

/// The managed Traefik container, as configured. Its fingerprint label changes
/// whenever anything here does, which is how a changed configuration is noticed.
fn traefik_spec(engine: &Engine) -> ContainerSpec {
    use sha2::{Digest, Sha256};
    let cfg = &engine.deploy.proxy;
    let mut spec = ContainerSpec::new(&cfg.container, &cfg.image);
    spec.cmd = Some(traefik_args());
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
    spec.network = Network::Bridge {
        name: engine.deploy.network.clone(),
        aliases: Vec::new(),
    };
    spec.restart = Restart::UnlessStopped;
    spec.mounts = vec![Mount {
        source: MountSource::Bind(cfg.dynamic_dir.to_string_lossy().into_owned()),
        target: DYNAMIC_IN_CONTAINER.into(),
        read_only: true,
    }];
    let mut labels = instance_labels(engine);
    labels.insert(docker::LABEL_ROLE.to_owned(), "proxy".to_owned());
    spec.labels = labels;
    // Everything but the labels' HashMap (whose order varies) plus the labels sorted.
    let mut h = Sha256::new();
    let sorted: std::collections::BTreeMap<_, _> = spec.labels.iter().collect();
    h.update(
        format!(
            "{:?}{:?}{:?}{:?}{:?}{:?}{:?}{sorted:?}",
            spec.image, spec.cmd, spec.exposed, spec.publish, spec.network, spec.restart, spec.mounts
        )
        .as_bytes(),
    );
    spec.labels
        .insert(FINGERPRINT.to_owned(), hex::encode(&h.finalize()[..8]));
    spec
}

const FINGERPRINT: &str = "berth.proxy-config";

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
    let spec = traefik_spec(engine);
    if let Some(existing) = engine.docker.inspect_container(&cfg.container).await? {
        if existing.labels.get(FINGERPRINT) == spec.labels.get(FINGERPRINT) {
            if !existing.state.is_up() {
                engine.docker.start_container(&cfg.container).await?;
            }
            return Ok(());
        }
        tracing::info!(container = %cfg.container, "replacing Traefik: its configuration changed");
        engine.docker.remove_container(&cfg.container, false).await?;
    }
    docker::ensure_image(&*engine.docker, &cfg.image, None, |_| {}).await?;
    engine.docker.create_container(&spec).await?;
    engine.docker.start_container(&cfg.container).await?;
    // A new container is on no organization's network yet.
    crate::network::attach_proxy_everywhere(engine).await?;
    tracing::info!(container = %cfg.container, image = %cfg.image, "Traefik started");
    Ok(())
}

/// The dynamic configuration for one application.
pub fn app_config(app: &str, routes: &[Route], up: &Upstream, token: &str) -> Value {
    let mut routers = Map::new();
    let mut services = Map::new();
    let mut middlewares = Map::new();
    let id_mw = format!("{app}-id");
    middlewares.insert(
        id_mw.clone(),
        json!({"headers": {"customResponseHeaders": {"X-Berth-Deployment": token}}}),
    );
    for (i, d) in routes.iter().enumerate() {
        let port = d.port.unwrap_or(up.port);
        let service = format!("{app}-{port}");
        services.entry(service.clone()).or_insert_with(|| {
            let host = up.address.clone().unwrap_or_else(|| upstream_host(up.deployment));
            json!({"loadBalancer": {"servers": [{"url": format!("http://{host}:{port}")}], "passHostHeader": true}})
        });
        let rule = if d.path_prefix == "/" {
            format!("Host(`{}`)", d.host)
        } else {
            format!("Host(`{}`) && PathPrefix(`{}`)", d.host, d.path_prefix)
        };
        let mut mws = vec![Value::from(id_mw.clone())];
        if d.strip_prefix && d.path_prefix != "/" {
            let strip = format!("{app}-strip-{i}");
            middlewares.insert(strip.clone(), json!({"stripPrefix": {"prefixes": [d.path_prefix]}}));
            mws.push(strip.into());
        }
        if d.https {
            // ACME arrives later: the router takes `tls.certResolver` then.
            routers.insert(
                format!("{app}-{i}-tls"),
                json!({"rule": rule, "entryPoints": ["websecure"], "service": service, "middlewares": mws, "tls": {}}),
            );
            let redirect = format!("{app}-to-https");
            middlewares.insert(
                redirect.clone(),
                json!({"redirectScheme": {"scheme": "https", "permanent": true}}),
            );
            routers.insert(
                format!("{app}-{i}"),
                json!({"rule": rule, "entryPoints": ["web"], "service": service, "middlewares": [redirect]}),
            );
        } else {
            routers.insert(
                format!("{app}-{i}"),
                json!({"rule": rule, "entryPoints": ["web"], "service": service, "middlewares": mws}),
            );
        }
    }
    json!({"http": {"routers": routers, "services": services, "middlewares": middlewares}})
}

/// Writes (or, with no upstream, removes) an application's routes. JSON is YAML,
/// so the file is serde_json output: every value is quoted correctly by
/// construction. Written to a temporary file and renamed: Traefik never reads a
/// half-written file.
pub async fn write_app(
    engine: &Engine,
    app: crate::ids::AppId,
    routes: &[Route],
    up: Option<&Upstream>,
) -> std::io::Result<()> {
    let app = &app_key(app);
    let path = file_for(engine, app);
    match up {
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
            let tmp = engine.deploy.proxy.dynamic_dir.join(format!(".app-{app}.yml.tmp"));
            tokio::fs::write(&tmp, body).await?;
            tokio::fs::rename(&tmp, &path).await
        }
    }
}

pub async fn remove_app(engine: &Engine, app: crate::ids::AppId) {
    if let Err(e) = write_app(engine, app, &[], None).await {
        tracing::warn!(error = %e, app.id = %app, "removing routes");
    }
}

/// The Berth dashboard through Traefik, when a host is configured.
fn write_dashboard(engine: &Engine) {
    let cfg = &engine.deploy.proxy;
    let path = cfg.dynamic_dir.join("berth-dashboard.yml");
    let (Some(host), Some(upstream)) = (&cfg.dashboard_host, &cfg.dashboard_upstream) else {
        let _ = std::fs::remove_file(path);
        return;
    };
    let conf = dashboard_config(host, upstream);
    let tmp = cfg.dynamic_dir.join(".berth-dashboard.yml.tmp");
    if std::fs::write(&tmp, serde_json::to_vec_pretty(&conf).expect("serializes")).is_ok() {
        let _ = std::fs::rename(tmp, path);
    }
}

/// The route that serves Berth's own UI through Traefik.
pub fn dashboard_config(host: &str, upstream: &str) -> Value {
    json!({"http": {
        "routers": {"berth-dashboard": {"rule": format!("Host(`{host}`)"), "entryPoints": ["web"], "service": "berth-dashboard"}},
        "services": {"berth-dashboard": {"loadBalancer": {"servers": [{"url": upstream}], "passHostHeader": true}}}
    }})
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
    while start.elapsed() < limit {
        let answer = crate::http1::request(
            "127.0.0.1",
            engine.deploy.proxy.http_port,
            "HEAD",
            host,
            path,
            Duration::from_secs(2),
        )
        .await;
        if answer.is_ok_and(|r| r.header(DEPLOYMENT_HEADER) == Some(want.as_str())) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dashboard_route_names_its_host_and_upstream() {
        let c = dashboard_config("berth.example.com", "http://172.17.0.1:3000");
        assert_eq!(
            c["http"]["routers"]["berth-dashboard"]["rule"],
            "Host(`berth.example.com`)"
        );
        assert_eq!(
            c["http"]["services"]["berth-dashboard"]["loadBalancer"]["servers"][0]["url"],
            "http://172.17.0.1:3000"
        );
    }

    fn domain(host: &str, prefix: &str, strip: bool, https: bool) -> Route {
        Route {
            host: host.into(),
            path_prefix: prefix.into(),
            strip_prefix: strip,
            port: None,
            https,
        }
    }

    #[test]
    fn routes_name_the_upstream_and_mark_the_deployment() {
        let mut up = Upstream {
            deployment: uuid::Uuid::nil(),
            port: 8080,
            address: None,
        };
        let c = app_config(
            "web",
            &[
                domain("web.localhost", "/", false, false),
                domain("example.com", "/api", true, true),
            ],
            &up,
            "0f1e2d3c4b5a69788796a5b4",
        );
        let http = &c["http"];
        assert_eq!(http["routers"]["web-0"]["rule"], "Host(`web.localhost`)");
        assert_eq!(
            http["routers"]["web-1-tls"]["rule"],
            "Host(`example.com`) && PathPrefix(`/api`)"
        );
        assert_eq!(http["routers"]["web-1-tls"]["entryPoints"][0], "websecure");
        assert_eq!(http["routers"]["web-1"]["middlewares"][0], "web-to-https");
        assert_eq!(http["middlewares"]["web-strip-1"]["stripPrefix"]["prefixes"][0], "/api");
        assert_eq!(
            http["services"]["web-8080"]["loadBalancer"]["servers"][0]["url"],
            format!("http://d-{}:8080", uuid::Uuid::nil().simple())
        );
        assert_eq!(
            http["middlewares"]["web-id"]["headers"]["customResponseHeaders"]["X-Berth-Deployment"],
            "0f1e2d3c4b5a69788796a5b4",
            "the public header carries the opaque token, not the deployment id"
        );
        // With the container's address known, Traefik skips Docker's DNS.
        up.address = Some("10.213.4.7".into());
        let c = app_config("web", &[domain("web.localhost", "/", false, false)], &up, "t");
        assert_eq!(
            c["http"]["services"]["web-8080"]["loadBalancer"]["servers"][0]["url"],
            "http://10.213.4.7:8080"
        );
    }
}
