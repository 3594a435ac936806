//! Redis access: a pool plus the key prefix every key carries, so several Berth
//! installations (or parallel tests) can share one Redis without seeing each other.

use crate::config::RedisConfig;
use crate::error::StoreError;
use deadpool_redis::{Config, Connection, Pool, Runtime};
use secrecy::ExposeSecret;

#[derive(Clone)]
pub struct Kv {
    pool: Pool,
    /// For connections of their own (blocking commands, below).
    client: redis::Client,
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
            client: client.clone(),
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

    /// A connection outside the pool, for a blocking command (`BRPOP`) that
    /// waits up to `longest`. Never a pooled one: the client gives up on a reply
    /// after 500 ms by default, but Redis keeps the command blocking the
    /// connection, so the next borrower of a pooled connection would wait
    /// behind it (docs/BENCHMARKS.md: the 500 ms stalls every 1.5 s).
    pub async fn dedicated(
        &self,
        longest: std::time::Duration,
    ) -> Result<redis::aio::MultiplexedConnection, StoreError> {
        let config =
            redis::AsyncConnectionConfig::new().set_response_timeout(Some(longest + std::time::Duration::from_secs(5)));
        Ok(self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?)
    }
}

impl Kv {
    /// The shared subscriber ([`crate::fanout`]).
    pub fn hub(&self) -> &crate::fanout::Hub {
        &self.hub
    }
}
