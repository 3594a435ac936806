//! A certificate authority of the test's own: Pebble (Let's Encrypt's test
//! CA) and pebble-challtestsrv (its DNS server), both from Debian's `pebble`
//! package, started for one test. challtestsrv answers every A query with
//! 127.0.0.1, where the test Traefik publishes its ports, and Pebble validates
//! HTTP-01 and TLS-ALPN-01 on those ports. Traefik, in a container, reaches
//! Pebble's directory and the DNS server on the Docker network's gateway, and
//! trusts Pebble's listener through `LEGO_CA_CERTIFICATES`. For DNS-01 the lab
//! runs the small HTTP endpoint lego's `httpreq` provider calls, which sets
//! the TXT record in challtestsrv.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct AcmeLab {
    pub dir: PathBuf,
    /// Pebble's directory URL, as Traefik reaches it.
    pub directory: String,
    /// The CA certificate of Pebble's own listener (for `BERTH_ACME_CA_CERTIFICATES`).
    pub listener_ca: PathBuf,
    /// challtestsrv's DNS address, as Traefik reaches it.
    pub dns: SocketAddr,
    /// The `httpreq` endpoint, as Traefik reaches it.
    pub httpreq: String,
    management: u16,
    challtest_management: u16,
    pebble_log: PathBuf,
    children: Vec<Child>,
    httpreq_task: tokio::task::JoinHandle<()>,
}

fn port() -> u16 {
    super::free_port()
}

async fn wait_listening(addr: SocketAddr, what: &str) {
    let start = Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{what} never listened on {addr}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A POST of `body` to challtestsrv's management API on 127.0.0.1.
async fn challtest(port: u16, path: &str, body: &serde_json::Value) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = body.to_string();
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.map_err(|e| e.to_string())?;
    let head = String::from_utf8_lossy(&out);
    if head.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        Err(head.lines().next().unwrap_or_default().to_owned())
    }
}

/// One request to the `httpreq` endpoint: `POST /present` or `/cleanup` with
/// `{"fqdn": ..., "value": ...}`, turned into challtestsrv's TXT calls.
async fn httpreq_one(mut s: tokio::net::TcpStream, challtest_port: u16) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head, body) = loop {
        let Ok(n) = s.read(&mut chunk).await else { return };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..at]).into_owned();
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            while buf.len() < at + 4 + len {
                let Ok(n) = s.read(&mut chunk).await else { return };
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            break (head, buf[at + 4..at + 4 + len].to_vec());
        }
    };
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let fqdn = v["fqdn"].as_str().unwrap_or_default();
    let result = if head.starts_with("POST /present") {
        challtest(
            challtest_port,
            "/set-txt",
            &serde_json::json!({"host": fqdn, "value": v["value"]}),
        )
        .await
    } else if head.starts_with("POST /cleanup") {
        challtest(challtest_port, "/clear-txt", &serde_json::json!({"host": fqdn})).await
    } else {
        Err("unknown path".into())
    };
    let status = if result.is_ok() {
        "200 OK"
    } else {
        "500 Internal Server Error"
    };
    let _ = s
        .write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes())
        .await;
}

impl AcmeLab {
    /// Starts Pebble and challtestsrv for a Traefik whose container reaches
    /// the host at `gateway` and which publishes HTTP and HTTPS on 127.0.0.1.
    pub async fn start(gateway: IpAddr, traefik_http: u16, traefik_https: u16) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "berth-acme-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..10]
        ));
        std::fs::create_dir_all(&dir).expect("lab dir");
        // Pebble's listener certificate, from a CA of the lab's own, naming
        // the gateway (Traefik's view) and loopback (the test's).
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::new()).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Berth test listener CA");
        let ca = ca_params.self_signed(&ca_key).expect("CA");
        let leaf_key = rcgen::KeyPair::generate().expect("key");
        let mut leaf_params =
            rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into(), gateway.to_string()])
                .expect("params");
        leaf_params.distinguished_name.push(rcgen::DnType::CommonName, "pebble");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).expect("leaf");
        let listener_ca = dir.join("listener-ca.pem");
        std::fs::write(&listener_ca, ca.pem()).expect("write");
        std::fs::write(dir.join("listener.pem"), leaf.pem()).expect("write");
        std::fs::write(dir.join("listener.key"), leaf_key.serialize_pem()).expect("write");

        let (acme_port, management, dns_port, challtest_management) = (port(), port(), port(), port());
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("{gateway}:{acme_port}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": dir.join("listener.pem"),
            "privateKey": dir.join("listener.key"),
            "httpPort": traefik_http,
            "tlsPort": traefik_https,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false
        }});
        std::fs::write(dir.join("pebble.json"), config.to_string()).expect("write");
        let dns = SocketAddr::new(gateway, dns_port);
        let challtestsrv = Command::new("pebble-challtestsrv")
            .args([
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
                "-dns01",
                &format!("127.0.0.1:{dns_port},{dns}"),
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                &format!("127.0.0.1:{challtest_management}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble-challtestsrv (Debian's pebble package) starts");
        let pebble_log = dir.join("pebble.log");
        let log = std::fs::File::create(&pebble_log).expect("log");
        let pebble = Command::new("pebble")
            .args([
                "-config",
                &dir.join("pebble.json").to_string_lossy(),
                "-dnsserver",
                &format!("127.0.0.1:{dns_port}"),
            ])
            // No random sleeps before validating; no forced bad-nonce retries.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("pebble (Debian's pebble package) starts");
        wait_listening(SocketAddr::new(gateway, acme_port), "Pebble").await;
        wait_listening(([127, 0, 0, 1], challtest_management).into(), "challtestsrv").await;

        let listener = tokio::net::TcpListener::bind((gateway, 0))
            .await
            .expect("httpreq listener");
        let httpreq = format!("http://{}", listener.local_addr().expect("addr"));
        let httpreq_task = tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(httpreq_one(s, challtest_management));
            }
        });
        Self {
            directory: format!("https://{gateway}:{acme_port}/dir"),
            listener_ca,
            dns,
            httpreq,
            management,
            challtest_management,
            pebble_log,
            children: vec![challtestsrv, pebble],
            httpreq_task,
            dir,
        }
    }

    /// Makes `host` resolve to `ip` (instead of 127.0.0.1).
    pub async fn add_a(&self, host: &str, ip: &str) {
        challtest(
            self.challtest_management,
            "/add-a",
            &serde_json::json!({"host": format!("{host}."), "addresses": [ip]}),
        )
        .await
        .expect("challtestsrv /add-a");
    }

    /// How many orders Pebble has been sent.
    pub fn orders(&self) -> usize {
        std::fs::read_to_string(&self.pebble_log)
            .unwrap_or_default()
            .matches("/order-plz")
            .count()
    }

    pub fn pebble_log(&self) -> String {
        std::fs::read_to_string(&self.pebble_log).unwrap_or_default()
    }

    /// The root Pebble issues under, from its management endpoint.
    pub async fn root_pem(&self) -> String {
        let ca = std::fs::read(&self.listener_ca).expect("listener CA");
        let (status, body) = https_get(("127.0.0.1", self.management), "localhost", "/roots/0", &ca)
            .await
            .expect("Pebble's management endpoint answers");
        assert_eq!(status, 200, "{body}");
        body
    }
}

/// Starts Traefik (and its network) for `env`, a lab on the network's
/// gateway, and points the engine's Traefik at the lab's listener CA.
pub async fn lab_for(env: &mut super::DeployEnv) -> AcmeLab {
    crate::proxy::ensure(env.engine()).await.expect("Traefik starts");
    let gateway = env
        .engine()
        .docker
        .network_gateway(&env.engine().deploy.network)
        .await
        .expect("Docker answers")
        .expect("the test network has a gateway");
    let proxy = &env.engine().deploy.proxy;
    let lab = AcmeLab::start(gateway, proxy.http_port, proxy.https_port).await;
    let mut config = (*env.engine().deploy).clone();
    config.proxy.acme_ca_file = Some(lab.listener_ca.clone());
    env.t.engine = env.t.engine.clone().with_deploy(config);
    lab
}

impl AcmeLab {
    /// Where Traefik reaches the host (the lab's own servers listen there).
    pub fn gateway(&self) -> IpAddr {
        self.dns.ip()
    }
}

impl Drop for AcmeLab {
    fn drop(&mut self) {
        self.httpreq_task.abort();
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `GET path` over HTTPS to `addr` with SNI and Host `host`, trusting only
/// `roots_pem`: the status and body, or why the handshake failed.
pub async fn https_get(addr: (&str, u16), host: &str, path: &str, roots_pem: &[u8]) -> Result<(u16, String), String> {
    https_request(addr, host, path, roots_pem, None).await
}

/// As [`https_get`], with an `Authorization: Basic` header for `user:password`.
pub async fn https_request(
    addr: (&str, u16),
    host: &str,
    path: &str,
    roots_pem: &[u8],
    basic: Option<&str>,
) -> Result<(u16, String), String> {
    use rustls::pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(roots_pem) {
        roots.add(c.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let auth = basic
        .map(|b| {
            use base64::Engine as _;
            format!(
                "Authorization: Basic {}\r\n",
                base64::engine::general_purpose::STANDARD.encode(b)
            )
        })
        .unwrap_or_default();
    tls.write_all(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    // A peer that closes without close_notify is fine here: the body is read.
    let _ = tls.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no HTTP answer: {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// A self-signed certificate and its key for `names`, valid from `not_before`
/// to `not_after` (custom-certificate tests).
pub fn self_signed(names: &[&str], not_before: (i32, u8, u8), not_after: (i32, u8, u8)) -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut p = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("params");
    p.distinguished_name.push(rcgen::DnType::CommonName, names[0]);
    p.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
    p.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    let cert = p.self_signed(&key).expect("self-signed");
    (cert.pem(), key.serialize_pem())
}
