//! Configuration of the engine, read from the environment once in `main` and passed
//! down. One struct per concern; each documents the variables it reads.

use crate::secrets::{SecretKey, SecretKeyError};
use secrecy::SecretString;
use std::path::{Path, PathBuf};

/// What is wrong with the configuration: one line that names the variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
    // Not a `source`: the message already says it all, and printing the chain
    // would say it twice.
    #[error("BERTH_SECRET_KEY: {0}")]
    SecretKey(SecretKeyError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl From<SecretKeyError> for ConfigError {
    fn from(e: SecretKeyError) -> Self {
        ConfigError::SecretKey(e)
    }
}

/// A variable's value, `None` when unset or blank.
pub fn var(name: &'static str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// A secret from `NAME`, or from the file `NAME_FILE` names (trimmed): how
/// `berth install` hands the container its database and Redis URLs and its
/// key without putting them where `docker inspect` shows them.
pub fn secret_var(name: &'static str) -> Result<Option<String>, ConfigError> {
    if let Some(v) = var(name) {
        return Ok(Some(v));
    }
    let Ok(file) = std::env::var(format!("{name}_FILE")) else {
        return Ok(None);
    };
    let path = PathBuf::from(file.trim());
    let raw = std::fs::read_to_string(&path).map_err(|source| ConfigError::Io { path, source })?;
    Ok(Some(raw.trim().to_owned()).filter(|v| !v.is_empty()))
}

/// A number (or anything `FromStr`), or `default` when unset.
pub fn parse_var<T: std::str::FromStr>(name: &'static str, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match var(name) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|e: T::Err| ConfigError::Invalid {
            name,
            reason: format!("{:?}: {e}", v.trim()),
        }),
    }
}

/// The words every on/off variable takes, in either case.
pub const FLAG_WORDS: &str = "1/0, true/false, on/off or yes/no";

/// An on/off value in the one grammar every boolean variable shares.
pub fn parse_flag(raw: &str) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "on" | "yes" => Some(true),
        "0" | "false" | "off" | "no" => Some(false),
        _ => None,
    }
}

/// An on/off variable, or `default` when unset.
pub fn flag(name: &'static str, default: bool) -> Result<bool, ConfigError> {
    match var(name) {
        None => Ok(default),
        Some(v) => parse_flag(&v).ok_or_else(|| ConfigError::Invalid {
            name,
            reason: format!("{:?} is not one of {FLAG_WORDS}", v.trim()),
        }),
    }
}

/// Production refuses to start without an explicit secret key; development may
/// generate one (see [`SecretConfig::from_env`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Production,
    Development,
}

impl Mode {
    /// `BERTH_MODE`: `production` (default) or `development`.
    pub fn from_env() -> Result<Self, ConfigError> {
        match var("BERTH_MODE").as_deref().map(str::trim) {
            None | Some("production") | Some("prod") => Ok(Mode::Production),
            Some("development") | Some("dev") => Ok(Mode::Development),
            Some(other) => Err(ConfigError::Invalid {
                name: "BERTH_MODE",
                reason: format!("{other:?} is not production or development"),
            }),
        }
    }
}

/// PostgreSQL, the source of truth.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// `DATABASE_URL` (required).
    pub url: SecretString,
    /// `BERTH_DB_POOL_SIZE` (default 16).
    pub pool_size: usize,
}

impl DatabaseConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            url: secret_var("DATABASE_URL")?
                .ok_or(ConfigError::Missing("DATABASE_URL"))?
                .into(),
            pool_size: parse_var("BERTH_DB_POOL_SIZE", 16)?,
        })
    }
}

/// Redis: sessions, rate limits, and (later) the queue, locks and live logs.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `REDIS_URL` (required).
    pub url: SecretString,
    /// `BERTH_REDIS_PREFIX` (default `berth:`): every key starts with it, so
    /// several installations (or tests) can share one Redis.
    pub prefix: String,
    /// `BERTH_REDIS_POOL_SIZE` (default 16).
    pub pool_size: usize,
}

impl RedisConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            url: secret_var("REDIS_URL")?
                .ok_or(ConfigError::Missing("REDIS_URL"))?
                .into(),
            prefix: var("BERTH_REDIS_PREFIX").unwrap_or_else(|| "berth:".into()),
            pool_size: parse_var("BERTH_REDIS_POOL_SIZE", 16)?,
        })
    }
}

/// The master key that seals secrets at rest.
pub struct SecretConfig {
    pub key: SecretKey,
    /// `BERTH_PREVIOUS_SECRET_KEY` (default unset): the key values were sealed
    /// with before `BERTH_SECRET_KEY` changed. At start every value still under
    /// it is re-sealed under the current key; then it can be removed.
    pub previous: Option<SecretKey>,
}

impl SecretConfig {
    /// `BERTH_SECRET_KEY`: required in production; at least 32 bytes of real entropy
    /// (e.g. `openssl rand -hex 32`). In development, when unset, a key is generated
    /// once and kept 0600 in `<data dir>/secret.key`. There is no built-in fallback.
    pub fn from_env(mode: Mode, data_dir: &Path) -> Result<Self, ConfigError> {
        let previous = match var("BERTH_PREVIOUS_SECRET_KEY") {
            Some(raw) => Some(SecretKey::from_previous_config(&raw).map_err(|e| ConfigError::Invalid {
                name: "BERTH_PREVIOUS_SECRET_KEY",
                reason: e.to_string(),
            })?),
            None => None,
        };
        if let Some(raw) = secret_var("BERTH_SECRET_KEY")? {
            return Ok(Self {
                key: SecretKey::from_config(&raw)?,
                previous,
            });
        }
        match mode {
            Mode::Production => Err(ConfigError::Missing("BERTH_SECRET_KEY")),
            Mode::Development => {
                let path = data_dir.join("secret.key");
                let raw = crate::secrets::load_or_create_key_file(&path).map_err(|source| ConfigError::Io {
                    path: path.clone(),
                    source,
                })?;
                Ok(Self {
                    key: SecretKey::from_config(&raw)?,
                    previous,
                })
            }
        }
    }
}

/// Where Berth keeps files of its own (development secret key, later build logs).
/// `BERTH_DATA_DIR` (default `.berth`).
pub fn data_dir_from_env() -> PathBuf {
    var("BERTH_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".berth"))
}

/// The Docker engine. `DOCKER_HOST` (default the local socket) is read by the
/// client itself; `BERTH_DOCKER_TIMEOUT_SECS` (default 10) bounds each API call.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    pub host: Option<String>,
    pub timeout_secs: u64,
}

impl DockerConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            host: var("DOCKER_HOST"),
            timeout_secs: parse_var("BERTH_DOCKER_TIMEOUT_SECS", 10)?,
        })
    }
}

/// The deploy engine: where it keeps files, how it names what it runs in Docker,
/// the Traefik it manages, and the worker's limits.
#[derive(Debug, Clone)]
pub struct DeployConfig {
    /// `BERTH_SELF_CONTAINER`: when Berth itself runs in a container (`berth
    /// install` sets it), that container's name. It joins each organization's
    /// network as Traefik does, so the worker reaches the apps it health-checks.
    pub self_container: Option<String>,
    /// `BERTH_DATA_DIR`: deployment logs, checkouts, Traefik's dynamic files.
    pub data_dir: PathBuf,
    /// `BERTH_INSTANCE` (default `berth`): the `berth.instance` label on everything
    /// Berth runs, so two installations on one engine never touch each other's containers.
    pub instance: String,
    /// `BERTH_NETWORK` (default `berth`): the bridge network apps and Traefik share.
    pub network: String,
    pub proxy: ProxyConfig,
    /// `BERTH_BASE_DOMAIN` (default `localhost`): every app gets `<app>.<base domain>`.
    pub base_domain: String,
    /// `BERTH_STATIC_IMAGE` (default `busybox:1.36`): the image static sites are
    /// served from (its `httpd` applet serves the files).
    pub static_image: String,
    /// `BERTH_ALLOW_LOCAL_SOURCES` (default false): allow `file://` git repositories.
    pub allow_local_sources: bool,
    /// `BERTH_KEEP_IMAGES` (default 5): images kept per app for rollback.
    pub keep_images: usize,
    /// `BERTH_WORKER_CONCURRENCY` (default 2): deployments run at once per process.
    pub concurrency: usize,
    /// `BERTH_WORKER_LEASE_SECS` (default 20): a running deployment whose worker has
    /// not reported for this long is considered abandoned (its worker died).
    pub lease_secs: u64,
    /// `BERTH_AUDIT_DAYS` (default 365): how long audit log rows are kept.
    pub audit_days: u32,
    /// `BERTH_BUILD_TIMEOUT_SECS` (default 3600): clone + build longer than this fails.
    pub build_timeout_secs: u64,
    /// `BERTH_LOG_CAP_MB` (default 50): a deployment's log keeps this much; past
    /// it a note says so and only Berth's own lines are added.
    pub log_cap_bytes: u64,
    pub services: ServicesConfig,
    pub host: HostPolicy,
    pub metrics: MetricsConfig,
    /// `BERTH_PUBLIC_URL` (the server checks its form): links in notifications.
    pub public_url: Option<String>,
    /// `BERTH_TELEGRAM_API_URL` (default `https://api.telegram.org`): where
    /// Telegram channels send, e.g. a self-hosted Bot API server
    /// (`telegram-bot-api`); the outbound address rules apply to it too.
    pub telegram_api: String,
}

/// Telegram's own Bot API.
pub const TELEGRAM_API: &str = "https://api.telegram.org";

/// `BERTH_TELEGRAM_API_URL`: an http(s) URL without query or fragment, kept
/// without its trailing slash (Berth appends `/bot<token>/sendMessage`).
fn telegram_api() -> Result<String, ConfigError> {
    let Some(raw) = var("BERTH_TELEGRAM_API_URL") else {
        return Ok(TELEGRAM_API.to_owned());
    };
    let invalid = |reason: &str| ConfigError::Invalid {
        name: "BERTH_TELEGRAM_API_URL",
        reason: reason.to_owned(),
    };
    let url = url::Url::parse(raw.trim()).map_err(|e| invalid(&format!("is not a URL: {e}")))?;
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
        return Err(invalid("must be an http:// or https:// URL with a host"));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("must not carry a query, a fragment or credentials"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// How often the worker samples resource use, and how long points are kept
/// (`crate::metrics`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// `BERTH_METRICS_INTERVAL_SECS` (default 10; 0 turns sampling off).
    pub interval_secs: u64,
    /// `BERTH_METRICS_RAW_HOURS` (default 24): points at the sampling interval.
    pub raw_hours: u32,
    /// `BERTH_METRICS_MINUTE_DAYS` (default 7): one point a minute.
    pub minute_days: u32,
    /// `BERTH_METRICS_HOUR_DAYS` (default 90): one point an hour.
    pub hour_days: u32,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            interval_secs: 10,
            raw_hours: 24,
            minute_days: 7,
            hour_days: 90,
        }
    }
}

impl MetricsConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let d = Self::default();
        Ok(Self {
            interval_secs: parse_var("BERTH_METRICS_INTERVAL_SECS", d.interval_secs)?,
            raw_hours: parse_var("BERTH_METRICS_RAW_HOURS", d.raw_hours)?.max(1),
            minute_days: parse_var("BERTH_METRICS_MINUTE_DAYS", d.minute_days)?.max(1),
            hour_days: parse_var("BERTH_METRICS_HOUR_DAYS", d.hour_days)?.max(1),
        })
    }
}

/// What the operator allows of the host itself, beyond what any tenant may do.
#[derive(Debug, Clone, Default)]
pub struct HostPolicy {
    /// `BERTH_BIND_ROOTS` (default none): host paths under which instance
    /// administrators may bind-mount, comma-separated absolute paths. The Docker
    /// socket and `/` itself are never mountable unless named here exactly.
    pub bind_roots: Vec<PathBuf>,
    /// `BERTH_ALLOW_PRIVATE_TARGETS` (default off): let S3 endpoints, git URLs and
    /// other user-given addresses be loopback, private, link-local or metadata
    /// addresses (development and tests; `make run` turns it on).
    pub allow_private_targets: bool,
    /// `BERTH_ALLOW_LOCAL_IMAGES` (default off): run an app image that exists
    /// only on this Docker engine when its pull fails (development and tests;
    /// `make run` turns it on). Otherwise every deploy pulls with the app's own
    /// credentials, and a failed pull fails the deploy.
    pub allow_local_images: bool,
}

impl HostPolicy {
    pub fn from_env() -> Result<Self, ConfigError> {
        let bind_roots = var("BERTH_BIND_ROOTS")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let path = PathBuf::from(p);
                        let clean = path.is_absolute()
                            && path
                                .components()
                                .all(|c| matches!(c, std::path::Component::RootDir | std::path::Component::Normal(_)));
                        if clean {
                            Ok(path)
                        } else {
                            Err(ConfigError::Invalid {
                                name: "BERTH_BIND_ROOTS",
                                reason: format!("{p:?} must be an absolute path without . or .."),
                            })
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();
        Ok(Self {
            bind_roots,
            allow_private_targets: flag("BERTH_ALLOW_PRIVATE_TARGETS", false)?,
            allow_local_images: flag("BERTH_ALLOW_LOCAL_IMAGES", false)?,
        })
    }
}

/// Database services and their backups.
#[derive(Debug, Clone)]
pub struct ServicesConfig {
    /// `BERTH_IMAGE_POSTGRES` (default `postgres:16`), `BERTH_IMAGE_MYSQL` (`mysql:8`),
    /// `BERTH_IMAGE_MARIADB` (`mariadb:11`), `BERTH_IMAGE_MONGO` (`mongo:7`),
    /// `BERTH_IMAGE_REDIS` (`redis:7`): the image a new service of each engine gets
    /// unless the form names another.
    pub images: DbImages,
    /// `BERTH_PG_DUMP` (default `pg_dump`) and `BERTH_PG_RESTORE` (default
    /// `pg_restore`): the client programs that back up and restore Berth's own
    /// database. They must be at least as new as that PostgreSQL server.
    pub pg_dump: String,
    pub pg_restore: String,
    /// `BERTH_BACKUP_CONCURRENCY` (default 1): backups, restores and drills run at
    /// once per process (each is a dump streaming through this process).
    pub concurrency: usize,
    /// `BERTH_BACKUP_TIMEOUT_SECS` (default 21600, six hours): a backup, restore
    /// or drill still running after this long fails and frees its slot (one
    /// custom image cannot hold the backup worker for every organization).
    pub job_timeout_secs: u64,
    /// `DATABASE_URL`: Berth's own database, for its scheduled backups.
    pub database_url: Option<SecretString>,
}

#[derive(Debug, Clone)]
pub struct DbImages {
    pub postgres: String,
    pub mysql: String,
    pub mariadb: String,
    pub mongo: String,
    pub redis: String,
}

impl Default for ServicesConfig {
    fn default() -> Self {
        Self {
            images: DbImages {
                postgres: "postgres:16".into(),
                mysql: "mysql:8".into(),
                mariadb: "mariadb:11".into(),
                mongo: "mongo:7".into(),
                redis: "redis:7".into(),
            },
            pg_dump: "pg_dump".into(),
            pg_restore: "pg_restore".into(),
            concurrency: 1,
            job_timeout_secs: 6 * 3600,
            database_url: None,
        }
    }
}

impl ServicesConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let d = Self::default();
        let program = |name: &'static str, default: &str| -> Result<String, ConfigError> {
            let v = var(name).unwrap_or_else(|| default.to_owned());
            if v.starts_with('-') || v.contains(|c: char| c.is_control()) {
                return Err(ConfigError::Invalid {
                    name,
                    reason: "must be a program name or path".into(),
                });
            }
            Ok(v)
        };
        Ok(Self {
            images: DbImages {
                postgres: image_var("BERTH_IMAGE_POSTGRES", &d.images.postgres)?,
                mysql: image_var("BERTH_IMAGE_MYSQL", &d.images.mysql)?,
                mariadb: image_var("BERTH_IMAGE_MARIADB", &d.images.mariadb)?,
                mongo: image_var("BERTH_IMAGE_MONGO", &d.images.mongo)?,
                redis: image_var("BERTH_IMAGE_REDIS", &d.images.redis)?,
            },
            pg_dump: program("BERTH_PG_DUMP", &d.pg_dump)?,
            pg_restore: program("BERTH_PG_RESTORE", &d.pg_restore)?,
            concurrency: parse_var("BERTH_BACKUP_CONCURRENCY", d.concurrency)?.max(1),
            job_timeout_secs: parse_var("BERTH_BACKUP_TIMEOUT_SECS", d.job_timeout_secs)?.max(1),
            database_url: secret_var("DATABASE_URL")?.map(SecretString::from),
        })
    }
}

/// The managed Traefik container.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// `BERTH_PROXY_MANAGE` (default true): run and update `berth-traefik`. When
    /// false, Berth only writes the dynamic files for a Traefik run elsewhere.
    pub manage: bool,
    /// `BERTH_PROXY_NAME` (default `berth-traefik`).
    pub container: String,
    /// `BERTH_TRAEFIK_IMAGE` (default `traefik:v3.3`).
    pub image: String,
    /// `BERTH_PROXY_BIND` (default `0.0.0.0`): the host address the ports are published on.
    pub bind: String,
    /// `BERTH_HTTP_PORT` (default 80) and `BERTH_HTTPS_PORT` (default 443).
    pub http_port: u16,
    pub https_port: u16,
    /// `BERTH_TRAEFIK_DIR` (default `<data dir>/traefik`): the dynamic configuration
    /// directory, bind-mounted read-only into Traefik. It must be a path on the
    /// Docker host (when Berth itself runs in a container, mount it at the same path).
    pub dynamic_dir: PathBuf,
    /// `BERTH_DASHBOARD_HOST`: serve the Berth dashboard through Traefik on this host.
    pub dashboard_host: Option<String>,
    /// `BERTH_DASHBOARD_UPSTREAM`: where Traefik reaches Berth for that host
    /// (e.g. `http://172.17.0.1:3000`).
    pub dashboard_upstream: Option<String>,
    /// With an unmanaged Traefik there is nothing to ask whether a route moved:
    /// the pipeline waits this long for it to reload its files (3 s; tests that
    /// run no proxy set 0).
    /// `BERTH_DASHBOARD_CERT` (default `http`): how the dashboard host gets its
    /// certificate, `http`, `tls` or `dns` (the instance's resolvers), or `none`
    /// to serve it over HTTP only.
    pub dashboard_cert: Option<crate::apps::domain_options::CertSource>,
    /// `BERTH_ACME_CA_CERTIFICATES`: a PEM bundle on the Docker host that Traefik
    /// trusts, besides the system's, for the ACME directory (a private CA such as
    /// step-ca, or Pebble in tests).
    pub acme_ca_file: Option<PathBuf>,
    /// `BERTH_PUBLIC_IPS`: this server's public addresses, comma-separated. When
    /// set, a domain must resolve to one of them before a certificate is asked for.
    pub public_ips: Vec<std::net::IpAddr>,
    pub unmanaged_settle: std::time::Duration,
}

/// A Docker object name from configuration: `[a-z0-9][a-z0-9_.-]*`, at most 63.
fn docker_name(name: &'static str, default: &str) -> Result<String, ConfigError> {
    let v = var(name).unwrap_or_else(|| default.to_owned());
    let ok = v.len() <= 63
        && v.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && v.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'.' | b'-'));
    if ok {
        Ok(v)
    } else {
        Err(ConfigError::Invalid {
            name,
            reason: format!("{v:?} must be lower-case letters, digits, '_', '.', '-' (at most 63)"),
        })
    }
}

fn image_var(name: &'static str, default: &str) -> Result<String, ConfigError> {
    let v = var(name).unwrap_or_else(|| default.to_owned());
    crate::apps::spec::parse_image("image", &v).map_err(|e| ConfigError::Invalid {
        name,
        reason: e.message,
    })
}

impl DeployConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let data_dir = data_dir_from_env();
        let abs = std::path::absolute(&data_dir).unwrap_or_else(|_| data_dir.clone());
        let http_port = parse_var("BERTH_HTTP_PORT", 80)?;
        Ok(Self {
            instance: docker_name("BERTH_INSTANCE", "berth")?,
            self_container: match var("BERTH_SELF_CONTAINER") {
                Some(_) => Some(docker_name("BERTH_SELF_CONTAINER", "")?),
                None => None,
            },
            network: docker_name("BERTH_NETWORK", "berth")?,
            proxy: ProxyConfig {
                manage: flag("BERTH_PROXY_MANAGE", true)?,
                container: docker_name("BERTH_PROXY_NAME", "berth-traefik")?,
                image: image_var("BERTH_TRAEFIK_IMAGE", "traefik:v3.3")?,
                bind: var("BERTH_PROXY_BIND").unwrap_or_else(|| "0.0.0.0".into()),
                http_port,
                https_port: parse_var("BERTH_HTTPS_PORT", 443)?,
                dynamic_dir: var("BERTH_TRAEFIK_DIR")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| abs.join("traefik")),
                dashboard_host: var("BERTH_DASHBOARD_HOST")
                    .map(|h| {
                        crate::apps::spec::DomainName::parse(&h)
                            .map(|d| d.as_str().to_owned())
                            .map_err(|e| ConfigError::Invalid {
                                name: "BERTH_DASHBOARD_HOST",
                                reason: e.message,
                            })
                    })
                    .transpose()?,
                dashboard_upstream: var("BERTH_DASHBOARD_UPSTREAM")
                    .map(|u| {
                        let ok = (u.starts_with("http://") || u.starts_with("https://"))
                            && !u.contains(|c: char| c.is_whitespace() || c == '`' || c.is_control());
                        if ok {
                            Ok(u)
                        } else {
                            Err(ConfigError::Invalid {
                                name: "BERTH_DASHBOARD_UPSTREAM",
                                reason: "must be an http:// or https:// URL".into(),
                            })
                        }
                    })
                    .transpose()?,
                dashboard_cert: match var("BERTH_DASHBOARD_CERT").as_deref().map(str::trim) {
                    Some("none") => None,
                    Some(raw) => Some(
                        crate::apps::domain_options::CertSource::parse(raw)
                            .ok()
                            .filter(|c| c.resolver().is_some())
                            .ok_or_else(|| ConfigError::Invalid {
                                name: "BERTH_DASHBOARD_CERT",
                                reason: "must be http, tls, dns or none".into(),
                            })?,
                    ),
                    None => Some(crate::apps::domain_options::CertSource::Http),
                },
                acme_ca_file: var("BERTH_ACME_CA_CERTIFICATES")
                    .map(|p| {
                        let path = PathBuf::from(&p);
                        if path.is_absolute() && path.is_file() {
                            Ok(path)
                        } else {
                            Err(ConfigError::Invalid {
                                name: "BERTH_ACME_CA_CERTIFICATES",
                                reason: format!("{p:?} must be the absolute path of a PEM file"),
                            })
                        }
                    })
                    .transpose()?,
                public_ips: var("BERTH_PUBLIC_IPS")
                    .unwrap_or_default()
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| {
                        s.parse().map_err(|_| ConfigError::Invalid {
                            name: "BERTH_PUBLIC_IPS",
                            reason: format!("{s:?} is not an IP address"),
                        })
                    })
                    .collect::<Result<_, _>>()?,
                unmanaged_settle: std::time::Duration::from_secs(3),
            },
            base_domain: {
                let base = var("BERTH_BASE_DOMAIN").unwrap_or_else(|| "localhost".into());
                crate::apps::spec::DomainName::parse(&format!("app.{base}")).map_err(|e| ConfigError::Invalid {
                    name: "BERTH_BASE_DOMAIN",
                    reason: e.message,
                })?;
                base.to_ascii_lowercase()
            },
            static_image: image_var("BERTH_STATIC_IMAGE", "busybox:1.36")?,
            allow_local_sources: flag("BERTH_ALLOW_LOCAL_SOURCES", false)?,
            keep_images: parse_var("BERTH_KEEP_IMAGES", 5)?,
            concurrency: parse_var("BERTH_WORKER_CONCURRENCY", 2)?,
            lease_secs: parse_var("BERTH_WORKER_LEASE_SECS", 20)?,
            audit_days: parse_var::<u32>("BERTH_AUDIT_DAYS", 365)?.max(1),
            build_timeout_secs: parse_var("BERTH_BUILD_TIMEOUT_SECS", 3600)?,
            log_cap_bytes: parse_var::<u64>("BERTH_LOG_CAP_MB", 50)?.max(1) * 1024 * 1024,
            services: ServicesConfig::from_env()?,
            host: HostPolicy::from_env()?,
            metrics: MetricsConfig::from_env()?,
            public_url: var("BERTH_PUBLIC_URL").map(|u| u.trim_end_matches('/').to_owned()),
            telegram_api: telegram_api()?,
            data_dir: abs,
        })
    }

    /// Where a deployment's log lives: derived from IDs only.
    pub fn deployment_log(&self, app: uuid::Uuid, deployment: uuid::Uuid) -> PathBuf {
        self.data_dir
            .join("logs")
            .join(app.simple().to_string())
            .join(format!("{}.log", deployment.simple()))
    }
}

impl Default for DeployConfig {
    /// The production defaults, with the data directory `.berth`.
    fn default() -> Self {
        let data_dir = std::path::absolute(".berth").unwrap_or_else(|_| PathBuf::from(".berth"));
        Self {
            instance: "berth".into(),
            self_container: None,
            network: "berth".into(),
            proxy: ProxyConfig {
                manage: true,
                container: "berth-traefik".into(),
                image: "traefik:v3.3".into(),
                bind: "0.0.0.0".into(),
                http_port: 80,
                https_port: 443,
                dynamic_dir: data_dir.join("traefik"),
                dashboard_host: None,
                dashboard_upstream: None,
                dashboard_cert: Some(crate::apps::domain_options::CertSource::Http),
                acme_ca_file: None,
                public_ips: Vec::new(),
                unmanaged_settle: std::time::Duration::from_secs(3),
            },
            base_domain: "localhost".into(),
            static_image: "busybox:1.36".into(),
            allow_local_sources: false,
            keep_images: 5,
            concurrency: 2,
            lease_secs: 20,
            audit_days: 365,
            build_timeout_secs: 3600,
            log_cap_bytes: 50 * 1024 * 1024,
            services: ServicesConfig::default(),
            host: HostPolicy::default(),
            metrics: MetricsConfig::default(),
            public_url: None,
            telegram_api: TELEGRAM_API.to_owned(),
            data_dir,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_takes_the_same_words() {
        for yes in ["1", "true", "on", "yes", "TRUE", " On "] {
            assert_eq!(parse_flag(yes), Some(true), "{yes:?}");
        }
        for no in ["0", "false", "off", "no", "No"] {
            assert_eq!(parse_flag(no), Some(false), "{no:?}");
        }
        for bad in ["", "2", "enabled", "y"] {
            assert_eq!(parse_flag(bad), None, "{bad:?}");
        }
    }
}
