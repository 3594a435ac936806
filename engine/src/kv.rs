//! Redis access: a pool plus the key prefix every key carries, so several Berth
//! installations (or parallel tests) can share one Redis without seeing each other.

use crate::config::RedisConfig;
use crate::error::StoreError;
use deadpool_redis::{Config, Connection, Pool, Runtime};
use secrecy::ExposeSecret;

#[derive(Clone)]
pub struct Kv {
    pool: Pool,
    prefix: String,
    /// The process's one subscription connection, shared by live-log followers.
    hub: crate::fanout::Hub,
}

#[derive(Debug, thiserror::Error)]
#[error("building the redis pool: {0}")]
pub struct KvSetupError(String);

impl Kv {
    /// Connects lazily, like the database pool.
    pub fn new(config: &RedisConfig) -> Result<Self, KvSetupError> {
        let mut cfg = Config::from_url(config.url.expose_secret());
        cfg.pool = Some(deadpool_redis::PoolConfig {
            max_size: config.pool_size,
            timeouts: deadpool_redis::Timeouts {
                wait: Some(std::time::Duration::from_secs(5)),
                create: Some(std::time::Duration::from_secs(5)),
                recycle: Some(std::time::Duration::from_secs(5)),
            },
            ..Default::default()
        });
        let pool = cfg
            .create_pool(Some(Runtime::Tokio1))
            .map_err(|e| KvSetupError(e.to_string()))?;
        let client = redis::Client::open(config.url.expose_secret()).map_err(|e| KvSetupError(e.to_string()))?;
        Ok(Self {
            pool,
            prefix: config.prefix.clone(),
            hub: crate::fanout::Hub::new(client),
        })
    }

    /// The full key for a logical key such as `session:abc`.
    pub fn key(&self, logical: &str) -> String {
        format!("{}{}", self.prefix, logical)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub async fn conn(&self) -> Result<Connection, StoreError> {
        Ok(self.pool.get().await?)
    }
}

impl Kv {
    /// The shared subscriber ([`crate::fanout`]).
    pub fn hub(&self) -> &crate::fanout::Hub {
        &self.hub
    }
}
