//! Configuration of the engine, read from the environment once in `main` and passed
//! down. One struct per concern; each documents the variables it reads.

use crate::secrets::{SecretKey, SecretKeyError};
use secrecy::SecretString;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("BERTH_SECRET_KEY: {0}")]
    SecretKey(#[from] SecretKeyError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

fn var(name: &'static str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn parse_var<T: std::str::FromStr>(name: &'static str, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match var(name) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|e: T::Err| ConfigError::Invalid {
            name,
            reason: e.to_string(),
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
            url: var("DATABASE_URL").ok_or(ConfigError::Missing("DATABASE_URL"))?.into(),
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
            url: var("REDIS_URL").ok_or(ConfigError::Missing("REDIS_URL"))?.into(),
            prefix: var("BERTH_REDIS_PREFIX").unwrap_or_else(|| "berth:".into()),
            pool_size: parse_var("BERTH_REDIS_POOL_SIZE", 16)?,
        })
    }
}

/// The master key that seals secrets at rest.
pub struct SecretConfig {
    pub key: SecretKey,
}

impl SecretConfig {
    /// `BERTH_SECRET_KEY`: required in production; at least 32 bytes of real entropy
    /// (e.g. `openssl rand -hex 32`). In development, when unset, a key is generated
    /// once and kept 0600 in `<data dir>/secret.key`. There is no built-in fallback.
    pub fn from_env(mode: Mode, data_dir: &Path) -> Result<Self, ConfigError> {
        if let Some(raw) = var("BERTH_SECRET_KEY") {
            return Ok(Self {
                key: SecretKey::from_config(&raw)?,
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
