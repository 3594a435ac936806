//! The Docker Engine connection. Everything Berth asks of Docker goes through the
//! [`DockerApi`] trait, so unit tests can use a fake while integration tests use
//! the real engine through [`BollardDocker`].

use crate::config::DockerConfig;
use futures::future::BoxFuture;
use serde::Serialize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("cannot connect to the Docker engine at {host}: {reason}")]
    Unreachable { host: String, reason: String },
    #[error("the Docker engine did not answer within {0} s")]
    Timeout(u64),
    #[error("docker: {0}")]
    Api(#[from] bollard::errors::Error),
}

/// What the engine says about itself.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DockerInfo {
    pub version: String,
    pub api_version: String,
}

pub trait DockerApi: Send + Sync {
    /// Pings the engine and reads its version (answers may be up to a couple of
    /// seconds old).
    fn info(&self) -> BoxFuture<'_, Result<DockerInfo, DockerError>>;
    /// Where the engine is expected, for messages.
    fn host(&self) -> String;
    /// The Engine API client for the modules that drive containers, speaking the
    /// newest API version both sides support.
    fn client(&self) -> BoxFuture<'_, Result<bollard::Docker, DockerError>>;
}

/// How long an answer about the engine's reachability is reused: every page
/// shows Docker's state, and asking the engine on each view is waste
/// (docs/BENCHMARKS.md).
const STATUS_TTL: Duration = Duration::from_secs(2);

/// The real engine, over `DOCKER_HOST` or the default local socket.
pub struct BollardDocker {
    client: Result<bollard::Docker, String>,
    host: String,
    timeout: Duration,
    last: Mutex<Option<(Instant, Result<DockerInfo, String>)>>,
    negotiated: tokio::sync::OnceCell<bollard::Docker>,
}

impl BollardDocker {
    /// Never fails: an engine that cannot even be addressed is reported by
    /// [`DockerApi::info`], so Berth starts and the UI can explain the problem.
    pub fn new(config: &DockerConfig) -> Self {
        let host = config
            .host
            .clone()
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned());
        let t = config.timeout_secs;
        let client = match config.host.as_deref() {
            Some(h) if h.starts_with("unix://") => {
                bollard::Docker::connect_with_unix(h, t, bollard::API_DEFAULT_VERSION)
            }
            Some(h) if h.starts_with("tcp://") || h.starts_with("http://") => {
                bollard::Docker::connect_with_http(h, t, bollard::API_DEFAULT_VERSION)
            }
            Some(h) => Err(bollard::errors::Error::UnsupportedURISchemeError { uri: h.to_owned() }),
            None => bollard::Docker::connect_with_defaults().map(|d| d.with_timeout(Duration::from_secs(t))),
        }
        .map_err(|e| e.to_string());
        Self {
            client,
            host,
            timeout: Duration::from_secs(t),
            last: Mutex::new(None),
            negotiated: tokio::sync::OnceCell::new(),
        }
    }

    fn unnegotiated(&self) -> Result<&bollard::Docker, DockerError> {
        self.client.as_ref().map_err(|reason| DockerError::Unreachable {
            host: self.host.clone(),
            reason: reason.clone(),
        })
    }

    /// bollard defaults to a newer API than older engines (Debian's 20.10 speaks
    /// 1.41) accept, and newest engines drop old versions: ask the engine once.
    async fn negotiated(&self) -> Result<bollard::Docker, DockerError> {
        let base = self.unnegotiated()?.clone();
        let docker = self
            .negotiated
            .get_or_try_init(|| async {
                tokio::time::timeout(self.timeout, base.negotiate_version())
                    .await
                    .map_err(|_| DockerError::Timeout(self.timeout.as_secs()))?
                    .map_err(|e| DockerError::Unreachable {
                        host: self.host.clone(),
                        reason: e.to_string(),
                    })
            })
            .await?;
        Ok(docker.clone())
    }

    async fn ask(&self) -> Result<DockerInfo, DockerError> {
        let client = self.unnegotiated()?;
        let call = async {
            client.ping().await?;
            client.version().await
        };
        let version = tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| DockerError::Timeout(self.timeout.as_secs()))?
            .map_err(|e| DockerError::Unreachable {
                host: self.host.clone(),
                reason: e.to_string(),
            })?;
        Ok(DockerInfo {
            version: version.version.unwrap_or_default(),
            api_version: version.api_version.unwrap_or_default(),
        })
    }
}

impl DockerApi for BollardDocker {
    fn info(&self) -> BoxFuture<'_, Result<DockerInfo, DockerError>> {
        Box::pin(async move {
            if let Some((at, answer)) = self.last.lock().expect("not poisoned").as_ref() {
                if at.elapsed() < STATUS_TTL {
                    return answer.clone().map_err(|reason| DockerError::Unreachable {
                        host: self.host.clone(),
                        reason,
                    });
                }
            }
            let answer = self.ask().await;
            let remembered = match &answer {
                Ok(info) => Ok(info.clone()),
                Err(DockerError::Unreachable { reason, .. }) => Err(reason.clone()),
                Err(other) => Err(other.to_string()),
            };
            *self.last.lock().expect("not poisoned") = Some((Instant::now(), remembered));
            answer
        })
    }

    fn host(&self) -> String {
        self.host.clone()
    }

    fn client(&self) -> BoxFuture<'_, Result<bollard::Docker, DockerError>> {
        Box::pin(self.negotiated())
    }
}
