//! The server's own configuration (the engine's is in `engine::config`).

use engine::config::{flag, parse_var, var, ConfigError};
use std::net::SocketAddr;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `BERTH_LISTEN` (default `127.0.0.1:3000`).
    pub listen: SocketAddr,
    /// `BERTH_SITE_ROOT` (default `target/site`): the built CSS, WASM and assets.
    pub site_root: String,
    /// `BERTH_PUBLIC_URL`, e.g. `https://berth.example.com`: used for invite links,
    /// accepted as a same-origin `Origin`, and makes cookies `Secure` when https.
    pub public_url: Option<String>,
    /// `BERTH_TRUST_PROXY=1`: take the client address from `X-Forwarded-For`
    /// (only behind a proxy such as Traefik that sets it).
    pub trust_proxy: bool,
    /// `BERTH_BODY_LIMIT` in bytes (default 1 MiB): larger request bodies get 413.
    pub body_limit: usize,
    /// `BERTH_MAX_REQUESTS` (default 64, at least 1): requests one process
    /// works on at once; `BERTH_MAX_QUEUED` (default 1024): how many more wait
    /// for a turn before the next gets a 503 (`crate::admission`).
    pub max_requests: usize,
    pub max_queued: usize,
    /// `BERTH_WORKER` (default on): run the job runner inside `berth serve`.
    pub worker: bool,
    /// `BERTH_RELEASE`: what this build is, beside its version (the image sets
    /// it: scripts/image.sh puts the git commit); administrators see it in
    /// `/api/admin/health`.
    pub release: Option<String>,
    /// `BERTH_METRICS_TOKEN` (at least 16 characters), kept as its hash:
    /// `/metrics` answers a scrape that sends it as a bearer token. Unset:
    /// `/metrics` does not exist.
    pub metrics_token_hash: Option<String>,
}

impl ServerConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let listen = var("BERTH_LISTEN").unwrap_or_else(|| "127.0.0.1:3000".into());
        let listen = listen
            .parse()
            .map_err(|e: std::net::AddrParseError| ConfigError::Invalid {
                name: "BERTH_LISTEN",
                reason: e.to_string(),
            })?;
        let public_url = var("BERTH_PUBLIC_URL").map(|u| u.trim_end_matches('/').to_owned());
        if let Some(u) = &public_url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(ConfigError::Invalid {
                    name: "BERTH_PUBLIC_URL",
                    reason: "must start with http:// or https://".into(),
                });
            }
        }
        let body_limit = match var("BERTH_BODY_LIMIT") {
            None => 1024 * 1024,
            Some(v) => v.parse().map_err(|e: std::num::ParseIntError| ConfigError::Invalid {
                name: "BERTH_BODY_LIMIT",
                reason: e.to_string(),
            })?,
        };
        Ok(Self {
            listen,
            site_root: var("BERTH_SITE_ROOT").unwrap_or_else(|| "target/site".into()),
            public_url,
            trust_proxy: flag("BERTH_TRUST_PROXY", false)?,
            body_limit,
            // Zero turns would refuse everything: NonZeroUsize refuses it.
            max_requests: parse_var("BERTH_MAX_REQUESTS", std::num::NonZeroUsize::new(64).unwrap())?.get(),
            max_queued: parse_var("BERTH_MAX_QUEUED", 1024)?,
            worker: flag("BERTH_WORKER", true)?,
            release: var("BERTH_RELEASE")
                .map(|r| {
                    let ok = !r.is_empty()
                        && r.len() <= 64
                        && r.bytes().all(|c| c.is_ascii_alphanumeric() || b"._+-".contains(&c));
                    if ok {
                        Ok(r)
                    } else {
                        Err(ConfigError::Invalid {
                            name: "BERTH_RELEASE",
                            reason: "letters, digits, '.', '_', '+' and '-' (at most 64)".into(),
                        })
                    }
                })
                .transpose()?,
            metrics_token_hash: var("BERTH_METRICS_TOKEN")
                .map(|t| {
                    if t.len() >= 16 && t.bytes().all(|c| c.is_ascii_graphic()) {
                        Ok(engine::secrets::token_hash(&t))
                    } else {
                        Err(ConfigError::Invalid {
                            name: "BERTH_METRICS_TOKEN",
                            reason: "at least 16 printable characters, no spaces".into(),
                        })
                    }
                })
                .transpose()?,
        })
    }

    pub fn secure_cookies(&self) -> bool {
        self.public_url.as_deref().is_some_and(|u| u.starts_with("https://"))
    }
}

/// How the process logs. `RUST_LOG` (default `info`) is the filter;
/// `BERTH_LOG_FORMAT` is `text` (default) or `json`.
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub filter: String,
    pub json: bool,
}

impl LogConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let filter = var("RUST_LOG").unwrap_or_else(|| "info,tokio_postgres=warn".into());
        tracing_subscriber::EnvFilter::try_new(&filter).map_err(|e| ConfigError::Invalid {
            name: "RUST_LOG",
            reason: e.to_string(),
        })?;
        let json = match var("BERTH_LOG_FORMAT").as_deref().map(str::trim) {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "BERTH_LOG_FORMAT",
                    reason: format!("{other:?} is not text or json"),
                })
            }
        };
        Ok(Self { filter, json })
    }
}
