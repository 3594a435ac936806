//! Certificates as Traefik serves them: the checks an uploaded certificate
//! must pass, the dynamic file that hands uploaded ones to Traefik (mode 0600),
//! the certificate Traefik actually presents for a name (read over TLS, never
//! guessed), and the reasons Traefik gives in its log when a CA refused one.

use crate::names::ValidationError;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;

/// Uploads larger than this are refused before any parsing.
pub const MAX_CHAIN_BYTES: usize = 64 * 1024;
pub const MAX_KEY_BYTES: usize = 16 * 1024;
/// The subject of the certificate Traefik presents when it has none for a name
/// and none was given to it (a proxy Berth does not manage).
pub const TRAEFIK_DEFAULT_CN: &str = "TRAEFIK DEFAULT CERT";
/// The subject of the fallback certificate Berth gives the Traefik it manages.
pub const BERTH_DEFAULT_CN: &str = "Berth default certificate";

/// Whether a served certificate is a fallback: the proxy has none for the name.
pub fn is_fallback(subject: &str) -> bool {
    subject == TRAEFIK_DEFAULT_CN || subject == BERTH_DEFAULT_CN
}

/// The dynamic file holding the fallback certificate.
pub const DEFAULT_FILE: &str = "tls-default.yml";

/// Gives Traefik a fallback certificate for names it has none for, once
/// (`tls-default.yml`, mode 0600, kept across restarts): a self-signed
/// ECDSA P-256 one. Without it Traefik generates a 2048-bit RSA key for its
/// default certificate on every configuration change, which was 96 % of the
/// CPU a reload costs (75 ms on average on 2 cores; a random prime search, so
/// up to ~150 ms), once per redeploy, on the cores serving every request
/// (docs/BENCHMARKS.md, "Traefik's reload, profiled").
pub fn ensure_default(dir: &std::path::Path) -> std::io::Result<()> {
    if dir.join(DEFAULT_FILE).exists() {
        return Ok(());
    }
    let failed = |e: rcgen::Error| std::io::Error::other(format!("making the default certificate: {e}"));
    let key = rcgen::KeyPair::generate().map_err(failed)?;
    let mut params = rcgen::CertificateParams::new(Vec::new()).map_err(failed)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, BERTH_DEFAULT_CN);
    let year = chrono::Datelike::year(&Utc::now());
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + 20, 1, 1);
    let cert = params.self_signed(&key).map_err(failed)?;
    // Traefik takes the PEM itself where a file path goes.
    let body = serde_json::json!({"tls": {"stores": {"default": {"defaultCertificate": {
        "certFile": cert.pem(),
        "keyFile": key.serialize_pem(),
    }}}}});
    std::fs::create_dir_all(dir)?;
    let body = serde_json::to_vec_pretty(&body).expect("serializes");
    // Two replicas making it in the same instant each write a whole file;
    // the last rename stands, and either certificate serves.
    write_private(dir, DEFAULT_FILE, &body)
}

/// One PEM block: its label and decoded contents.
#[derive(Debug)]
struct Block {
    label: String,
    der: Vec<u8>,
}

/// PEM blocks, strictly: nothing but blank lines between them.
fn pem_blocks(field: &'static str, text: &str) -> Result<Vec<Block>, ValidationError> {
    use base64::Engine as _;
    let junk = || ValidationError::new(field, "must be PEM blocks only (no other text)");
    let mut blocks = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines().map(str::trim) {
        match &mut current {
            None if line.is_empty() => {}
            None => {
                let label = line
                    .strip_prefix("-----BEGIN ")
                    .and_then(|l| l.strip_suffix("-----"))
                    .ok_or_else(junk)?;
                current = Some((label.to_owned(), String::new()));
            }
            Some((label, body)) => {
                if let Some(end) = line.strip_prefix("-----END ").and_then(|l| l.strip_suffix("-----")) {
                    if end != label {
                        return Err(junk());
                    }
                    let der = base64::engine::general_purpose::STANDARD
                        .decode(body.as_bytes())
                        .map_err(|_| ValidationError::new(field, format!("a {label} block is not valid base64")))?;
                    blocks.push(Block {
                        label: label.clone(),
                        der,
                    });
                    current = None;
                } else if line
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'='))
                {
                    body.push_str(line);
                } else {
                    return Err(junk());
                }
            }
        }
    }
    if current.is_some() {
        return Err(ValidationError::new(field, "a PEM block is not closed"));
    }
    Ok(blocks)
}

/// A certificate's facts Berth shows and checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    pub subject: String,
    pub issuer: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// DNS names it covers (subject alternative names).
    pub names: Vec<String>,
}

fn common_name(name: &x509_parser::x509::X509Name<'_>) -> String {
    name.iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| name.to_string())
}

/// Parses one DER certificate (nothing may follow it).
pub fn facts(der: &[u8]) -> Result<CertFacts, String> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        return Err("trailing data after the certificate".into());
    }
    let names = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let time = |t: x509_parser::time::ASN1Time| DateTime::<Utc>::from_timestamp(t.timestamp(), 0).unwrap_or_default();
    Ok(CertFacts {
        subject: common_name(cert.subject()),
        issuer: common_name(cert.issuer()),
        not_before: time(cert.validity().not_before),
        not_after: time(cert.validity().not_after),
        names,
    })
}

/// Does a certificate name cover `host`? A `*.` name covers one label; a
/// wildcard host needs the same wildcard name.
pub fn covers(names: &[String], host: &str) -> bool {
    names.iter().any(|n| {
        n == host
            || (!host.starts_with("*.")
                && n.strip_prefix("*.").is_some_and(|base| {
                    host.split_once('.')
                        .is_some_and(|(label, rest)| !label.is_empty() && rest == base)
                }))
    })
}

/// An uploaded certificate that passed every check.
#[derive(Clone)]
pub struct CheckedCert {
    /// The chain, as PEM certificates only.
    pub chain_pem: String,
    /// The key as uploaded (one PEM block).
    pub key_pem: String,
    pub facts: CertFacts,
}

impl std::fmt::Debug for CheckedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckedCert")
            .field("facts", &self.facts)
            .finish_non_exhaustive()
    }
}

/// The checks an uploaded certificate for `host` must pass, each failure
/// naming its field: the chain parses (certificates only, each issued by the
/// next), the key is one private key that matches the first certificate, the
/// names cover `host`, and it is valid now.
pub fn check_custom(host: &str, chain: &str, key: &str, now: DateTime<Utc>) -> Result<CheckedCert, ValidationError> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer};
    const C: &str = "certificate";
    const K: &str = "key";
    if chain.len() > MAX_CHAIN_BYTES {
        return Err(ValidationError::new(
            C,
            format!("is too large (at most {} KiB)", MAX_CHAIN_BYTES / 1024),
        ));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(ValidationError::new(
            K,
            format!("is too large (at most {} KiB)", MAX_KEY_BYTES / 1024),
        ));
    }
    let blocks = pem_blocks(C, chain)?;
    if blocks.is_empty() {
        return Err(ValidationError::new(
            C,
            "is required (PEM, the certificate first, then its chain)",
        ));
    }
    if let Some(b) = blocks.iter().find(|b| b.label != "CERTIFICATE") {
        return Err(ValidationError::new(
            C,
            format!("holds a {} block; only certificates belong here", b.label),
        ));
    }
    let mut all = Vec::new();
    for (i, b) in blocks.iter().enumerate() {
        let f =
            facts(&b.der).map_err(|e| ValidationError::new(C, format!("certificate {} does not parse: {e}", i + 1)))?;
        all.push(f);
    }
    for (i, pair) in blocks.windows(2).enumerate() {
        let (_, child) = x509_parser::parse_x509_certificate(&pair[0].der).expect("parsed above");
        let (_, parent) = x509_parser::parse_x509_certificate(&pair[1].der).expect("parsed above");
        if child.issuer() != parent.subject() {
            return Err(ValidationError::new(
                C,
                format!(
                    "certificate {} is not issued by certificate {}: the chain is out of order",
                    i + 1,
                    i + 2
                ),
            ));
        }
    }
    let key_blocks = pem_blocks(K, key)?;
    let [kb] = key_blocks.as_slice() else {
        return Err(ValidationError::new(K, "must be exactly one PEM private key"));
    };
    let der: PrivateKeyDer<'static> = match kb.label.as_str() {
        "PRIVATE KEY" => PrivatePkcs8KeyDer::from(kb.der.clone()).into(),
        "RSA PRIVATE KEY" => PrivatePkcs1KeyDer::from(kb.der.clone()).into(),
        "EC PRIVATE KEY" => PrivateSec1KeyDer::from(kb.der.clone()).into(),
        other => {
            return Err(ValidationError::new(
                K,
                format!("a {other} block is not an unencrypted private key"),
            ))
        }
    };
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider.key_provider.load_private_key(der).map_err(|_| {
        ValidationError::new(
            K,
            "is not a private key Berth can read (RSA, ECDSA P-256/P-384 or Ed25519)",
        )
    })?;
    let certs: Vec<CertificateDer<'static>> = blocks.iter().map(|b| CertificateDer::from(b.der.clone())).collect();
    if rustls::sign::CertifiedKey::new(certs, signing).keys_match().is_err() {
        return Err(ValidationError::new(K, "does not match the certificate"));
    }
    let leaf = all[0].clone();
    if !covers(&leaf.names, host) {
        return Err(ValidationError::new(
            C,
            format!(
                "does not cover {host} (it names {})",
                if leaf.names.is_empty() {
                    "no DNS names".into()
                } else {
                    leaf.names.join(", ")
                }
            ),
        ));
    }
    if leaf.not_after <= now {
        return Err(ValidationError::new(
            C,
            format!("expired on {}", leaf.not_after.format("%Y-%m-%d %H:%M UTC")),
        ));
    }
    if leaf.not_before > now {
        return Err(ValidationError::new(
            C,
            format!("is not valid before {}", leaf.not_before.format("%Y-%m-%d %H:%M UTC")),
        ));
    }
    let chain_pem = blocks.iter().map(|b| pem("CERTIFICATE", &b.der)).collect();
    Ok(CheckedCert {
        chain_pem,
        key_pem: pem(&kb.label, &kb.der),
        facts: leaf,
    })
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Traefik's dynamic configuration for uploaded certificates: its TLS store
/// picks one by SNI. Traefik takes the PEM itself where a file path goes.
pub fn tls_config(certs: &[(String, String)]) -> serde_json::Value {
    let list: Vec<serde_json::Value> = certs
        .iter()
        .map(|(chain, key)| serde_json::json!({"certFile": chain, "keyFile": key}))
        .collect();
    serde_json::json!({"tls": {"certificates": list}})
}

/// The dynamic file naming the uploaded certificates.
pub const CUSTOM_FILE: &str = "tls-custom.yml";

/// Writes (or with none, removes) the file of uploaded certificates, mode 0600:
/// it holds private keys.
pub fn write_tls_file(dir: &std::path::Path, certs: &[(String, String)]) -> std::io::Result<()> {
    let path = dir.join(CUSTOM_FILE);
    if certs.is_empty() {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    let body = serde_json::to_vec_pretty(&tls_config(certs)).expect("serializes");
    if std::fs::read(&path).is_ok_and(|old| old == body) {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    write_private(dir, CUSTOM_FILE, &body)
}

/// Writes `dir/name` with mode 0600 from its first byte, synced before it
/// replaces the old one: for files that hold secrets ([`replace_file`]).
pub(crate) fn write_private(dir: &std::path::Path, name: &str, body: &[u8]) -> std::io::Result<()> {
    replace_file(dir, name, body, true)
}

/// Replaces `dir/name` whole: a temporary file, then renamed over it, so a
/// reader (Traefik) never sees half a file. Each writer's temporary file has
/// a name of its own, so writers of one file at once (a deployment and the
/// reconciler, replicas sharing the data directory) each replace it whole,
/// the last one standing, and none fails on another's temporary file.
/// `private`: mode 0600 from the first byte, and synced before the rename.
pub(crate) fn replace_file(dir: &std::path::Path, name: &str, body: &[u8], private: bool) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let written = (|| {
        let mut open = std::fs::OpenOptions::new();
        open.write(true).create_new(true);
        if private {
            open.mode(0o600);
        }
        let mut f = open.open(&tmp)?;
        f.write_all(body)?;
        if private {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, dir.join(name))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Accepts any certificate: the probe reads what is served, it trusts nothing.
#[derive(Debug)]
struct ReadOnly(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for ReadOnly {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS connection to `addr` for `sni` that accepts whatever certificate is
/// presented: for reading, never for sending anything secret.
async fn read_only_tls(
    addr: std::net::SocketAddr,
    sni: &str,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ReadOnly(provider)))
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(sni.to_owned()).map_err(|e| e.to_string())?;
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())
}

/// The head of the answer to `HEAD path` at `addr` over TLS for `host`
/// (whose certificate is not checked: see [`read_only_tls`]).
pub async fn head_over_tls(
    addr: std::net::SocketAddr,
    host: &str,
    path: &str,
    limit: Duration,
) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut tls = read_only_tls(addr, host).await?;
        let req = format!("HEAD {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        tls.write_all(req.as_bytes()).await.map_err(|e| e.to_string())?;
        let mut head = Vec::new();
        // A HEAD answer is its head alone; bounded all the same.
        (&mut tls)
            .take(64 * 1024)
            .read_to_end(&mut head)
            .await
            .map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&head).into_owned())
    };
    tokio::time::timeout(limit, exchange)
        .await
        .map_err(|_| format!("no TLS answer within {} s", limit.as_secs()))?
}

/// The certificate served at `addr` for `sni`, as the TLS handshake presents it.
pub async fn served(addr: std::net::SocketAddr, sni: &str, limit: Duration) -> Result<CertFacts, String> {
    let connect = async {
        let tls = read_only_tls(addr, sni).await?;
        let (_, session) = tls.get_ref();
        let leaf = session
            .peer_certificates()
            .and_then(|c| c.first())
            .ok_or("no certificate presented")?;
        facts(leaf.as_ref())
    };
    tokio::time::timeout(limit, connect)
        .await
        .map_err(|_| format!("no TLS answer within {} s", limit.as_secs()))?
}

/// The name to ask for a host: a wildcard's certificate is asked for with one
/// label in place of the `*`.
pub fn probe_name(host: &str) -> String {
    match host.strip_prefix("*.") {
        Some(base) => format!("berth-probe.{base}"),
        None => host.to_owned(),
    }
}

/// A CA's refusal, as Traefik logs it (JSON log format).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeFailure {
    pub domains: Vec<String>,
    pub reason: String,
}

/// The ACME failures in Traefik's log lines. The reason is the CA's own
/// words for the domain where Traefik quotes them (`[host] acme: error: ...`).
pub fn acme_failures(log: &str) -> Vec<AcmeFailure> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line.trim()).ok())
        .filter(|v| {
            v["message"].as_str().is_some_and(|m| {
                m.contains("Unable to obtain ACME certificate") || m.contains("Error renewing certificate")
            })
        })
        .filter_map(|v| {
            let domains: Vec<String> = v["domains"]
                .as_array()?
                .iter()
                .filter_map(|d| d.as_str().map(str::to_owned))
                .collect();
            let error = v["error"].as_str()?.to_owned();
            Some(AcmeFailure {
                reason: readable_reason(&error, &domains),
                domains,
            })
        })
        .collect()
}

/// The part of lego's error a person can act on: the CA's detail for the
/// domain (after its `::` problem type), else the whole error, bounded.
fn readable_reason(error: &str, domains: &[String]) -> String {
    let for_domain = domains
        .iter()
        .find_map(|d| error.split_once(&format!("[{d}] ")).map(|(_, rest)| rest))
        .unwrap_or(error);
    let detail = for_domain.rsplit(" :: ").next().unwrap_or(for_domain).trim();
    super::quoted(if detail.is_empty() { error.trim() } else { detail })
}

/// How long to wait before asking the CA again after `failures` failures in a
/// row: 5 minutes, doubling, at most a day (Let's Encrypt allows 5 failed
/// validations per hostname an hour).
pub fn backoff(failures: u32) -> chrono::Duration {
    let secs = 300u64.saturating_mul(1 << failures.saturating_sub(1).min(10));
    chrono::Duration::seconds(secs.min(86_400) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_names_cover_one_label() {
        let names = vec!["*.example.com".to_owned(), "example.com".to_owned()];
        assert!(covers(&names, "a.example.com"));
        assert!(covers(&names, "example.com"));
        assert!(covers(&names, "*.example.com"));
        assert!(!covers(&names, "a.b.example.com"));
        assert!(!covers(&["a.example.com".to_owned()], "*.example.com"));
        assert_eq!(probe_name("*.example.com"), "berth-probe.example.com");
    }

    #[test]
    fn traefik_log_lines_give_the_ca_reason() {
        let log = concat!(
            "{\"level\":\"info\",\"message\":\"Starting provider\"}\n",
            "not json\n",
            r#"{"level":"error","providerName":"http01.acme","domains":["fail.test"],"error":"unable to generate a certificate for the domains [fail.test]: error: one or more domains had a problem:\n[fail.test] acme: error: 400 :: urn:ietf:params:acme:error:connection :: 127.0.0.2: Connection refused\n","time":"2026-12-02T01:00:00Z","message":"Unable to obtain ACME certificate for domains"}"#,
            "\n"
        );
        let f = acme_failures(log);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].domains, ["fail.test"]);
        assert_eq!(f[0].reason, "127.0.0.2: Connection refused");
    }

    #[test]
    fn backoff_doubles_to_a_day() {
        assert_eq!(backoff(1).num_seconds(), 300);
        assert_eq!(backoff(2).num_seconds(), 600);
        assert_eq!(backoff(9).num_seconds(), 76_800);
        assert_eq!(backoff(10).num_seconds(), 86_400);
        assert_eq!(backoff(40).num_seconds(), 86_400);
    }

    #[test]
    fn pem_junk_is_refused() {
        assert_eq!(pem_blocks("certificate", "hello\n").unwrap_err().field, "certificate");
        let block = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert_eq!(pem_blocks("certificate", block).unwrap().len(), 1);
        assert!(pem_blocks("certificate", &format!("{block}junk after\n")).is_err());
        assert!(pem_blocks(
            "certificate",
            "-----BEGIN CERTIFICATE-----\nAA`A\n-----END CERTIFICATE-----\n"
        )
        .is_err());
        assert!(pem_blocks("certificate", "-----BEGIN CERTIFICATE-----\nAAAA\n").is_err());
    }

    #[test]
    fn the_default_certificate_is_made_once_and_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("berth-default-cert-{}", uuid::Uuid::new_v4().simple()));
        ensure_default(&dir).unwrap();
        let path = dir.join(DEFAULT_FILE);
        let first = std::fs::read(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let body: serde_json::Value = serde_json::from_slice(&first).unwrap();
        let pair = &body["tls"]["stores"]["default"]["defaultCertificate"];
        let cert = pem_blocks("certificate", pair["certFile"].as_str().unwrap()).unwrap();
        let f = facts(&cert[0].der).unwrap();
        assert_eq!(f.subject, BERTH_DEFAULT_CN);
        assert!(is_fallback(&f.subject) && f.names.is_empty());
        assert!(f.not_before < Utc::now() && f.not_after > Utc::now() + chrono::Duration::days(3650));
        let key = pem_blocks("key", pair["keyFile"].as_str().unwrap()).unwrap();
        assert_eq!(key[0].label, "PRIVATE KEY");
        // Kept as it is: a new one would make Traefik reload for nothing.
        ensure_default(&dir).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), first);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Writers of one secret file at the same instant (replicas sharing the
    /// data directory) all succeed, the file is one of theirs whole, 0600,
    /// and no temporary file is left. (With one shared temporary name, one
    /// writer removed or renamed away the other's and failed.)
    #[test]
    fn private_files_written_at_once_by_many_writers_are_whole() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("berth-private-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let bodies: Vec<Vec<u8>> = (0..8u8).map(|i| vec![b'a' + i; 256 * 1024]).collect();
        for _ in 0..20 {
            let start = std::sync::Barrier::new(bodies.len());
            std::thread::scope(|s| {
                let handles: Vec<_> = bodies
                    .iter()
                    .map(|b| {
                        let (dir, start) = (&dir, &start);
                        s.spawn(move || {
                            start.wait();
                            write_private(dir, "secret.yml", b)
                        })
                    })
                    .collect();
                for h in handles {
                    h.join().unwrap().expect("every writer succeeds");
                }
            });
            let path = dir.join("secret.yml");
            let got = std::fs::read(&path).unwrap();
            assert!(bodies.contains(&got), "the file is one writer's, whole");
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
            let names: Vec<_> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            assert_eq!(names, vec!["secret.yml".to_owned()], "temporary files left");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
