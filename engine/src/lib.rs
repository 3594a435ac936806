//! Berth's orchestration domain. It owns the data model (accounts, organizations,
//! projects, applications, deployments, database services, backups), tenancy,
//! sessions, secrets, the Docker engine, Traefik, the deploy and backup workers,
//! S3, and live logs, and knows nothing
//! of HTTP: the `app` server functions and the `server` routes are thin edges over it.

pub mod access;
pub mod accounts;
pub mod alerts;
pub mod apikeys;
pub mod apps;
pub mod audit;
pub mod backups;
pub mod config;
pub mod db;
pub mod deploy;
pub mod docker;
pub mod domains;
pub mod error;
pub mod events;
pub mod fanout;
pub mod health;
pub mod http1;
pub mod ids;
pub mod install;
pub mod instance;
pub mod jobs;
pub mod kv;
pub mod leader;
pub mod lines;
pub mod logs;
pub mod metrics;
pub mod names;
pub mod network;
pub mod notify;
pub mod orgs;
pub mod outbound;
pub mod passwords;
pub mod projects;
pub mod proxy;
pub mod ratelimit;
pub mod reconcile;
pub mod reseal;
pub mod sampling;
pub mod secrets;
pub mod services;
pub mod sessions;
pub mod signin;
pub mod teardown;
#[cfg(feature = "testing")]
pub mod testing;
pub mod twofactor;
pub mod webhooks;
pub mod worker;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub use error::{Classify, ErrorKind};

/// Everything a domain operation needs: cheap to clone, shared by every request
/// and worker in a process. Each process holds only pools; all state lives in
/// PostgreSQL and Redis, so any number of replicas can run side by side.
#[derive(Clone)]
pub struct Engine {
    pub db: db::DbPool,
    pub kv: kv::Kv,
    pub docker: Arc<dyn docker::DockerApi>,
    pub secret: secrets::SecretKey,
    pub policy: sessions::SessionPolicy,
    pub deploy: Arc<config::DeployConfig>,
    /// Set once onboarding is seen closed. It never reopens, so this process
    /// stops asking PostgreSQL on every page view.
    onboarded: Arc<AtomicBool>,
}

impl Engine {
    pub fn new(db: db::DbPool, kv: kv::Kv, docker: Arc<dyn docker::DockerApi>, secret: secrets::SecretKey) -> Self {
        Self {
            db,
            kv,
            docker,
            secret,
            policy: sessions::SessionPolicy::default(),
            deploy: Arc::new(config::DeployConfig::default()),
            onboarded: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The same engine with this deploy configuration.
    pub fn with_deploy(mut self, config: config::DeployConfig) -> Self {
        self.deploy = Arc::new(config);
        self
    }

    pub(crate) fn onboarded(&self) -> &AtomicBool {
        &self.onboarded
    }
}
