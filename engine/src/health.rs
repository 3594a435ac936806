//! The health of Berth's backends, checked concurrently with a short timeout each.
//! Ready means PostgreSQL and Redis answer; Docker is reported but not required,
//! so the UI can stay up and explain how to fix it.

use crate::Engine;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Component {
    Up {
        #[serde(skip_serializing_if = "Option::is_none")]
        version: Option<String>,
    },
    Down {
        error: String,
    },
}

impl Component {
    pub fn is_up(&self) -> bool {
        matches!(self, Component::Up { .. })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct HealthReport {
    pub db: Component,
    pub redis: Component,
    pub docker: Component,
    /// Traefik's `/ping` (absent when Berth does not manage Traefik).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<Component>,
    /// What should run and does not, as the reconciler last saw it
    /// ("Traefik not running: restarting", "app shop: …, restarted 3 times").
    pub problems: Vec<crate::reconcile::Problem>,
}

impl HealthReport {
    /// PostgreSQL and Redis are required to serve; Docker is not.
    pub fn ready(&self) -> bool {
        self.db.is_up() && self.redis.is_up()
    }

    /// Serving, but something Berth runs is down.
    pub fn degraded(&self) -> bool {
        !self.docker.is_up() || self.proxy.as_ref().is_some_and(|p| !p.is_up()) || !self.problems.is_empty()
    }
}

const TIMEOUT: Duration = Duration::from_secs(3);

async fn within<F, E: std::fmt::Display>(f: F) -> Component
where
    F: std::future::Future<Output = Result<Option<String>, E>>,
{
    match tokio::time::timeout(TIMEOUT, f).await {
        Ok(Ok(version)) => Component::Up { version },
        Ok(Err(e)) => Component::Down { error: e.to_string() },
        Err(_) => Component::Down {
            error: format!("no answer within {} s", TIMEOUT.as_secs()),
        },
    }
}

pub async fn check(engine: &Engine) -> HealthReport {
    let db = within(async {
        use diesel_async::RunQueryDsl;
        let mut conn = engine.db.get().await.map_err(|e| e.to_string())?;
        diesel::sql_query("SELECT 1")
            .execute(&mut conn)
            .await
            .map(|_| None)
            .map_err(|e| e.to_string())
    });
    let redis = within(async {
        let mut conn = engine.kv.conn().await.map_err(|e| e.to_string())?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| None)
            .map_err(|e| e.to_string())
    });
    let docker = within(async { engine.docker.info().await.map(|i| Some(i.version)) });
    let proxy = async {
        if engine.deploy.proxy.manage {
            Some(within(async { crate::proxy::ping(engine).await.map(|()| None) }).await)
        } else {
            None
        }
    };
    let problems = tokio::time::timeout(TIMEOUT, crate::reconcile::problems(engine));
    let (db, redis, docker, proxy, problems) = tokio::join!(db, redis, docker, proxy, problems);
    HealthReport {
        db,
        redis,
        docker,
        proxy,
        problems: problems.unwrap_or_default(),
    }
}

/// A health report shared for a moment: at most one [`check`] per `fresh`
/// period in a process, whatever the rate of requests, so that the public,
/// unauthenticated `/health` cannot turn a flood into as many PostgreSQL,
/// Redis, Docker and Traefik calls. Requests that arrive while a check runs
/// wait for it and share its answer.
pub struct Recent {
    fresh: Duration,
    last: tokio::sync::Mutex<Option<(Instant, Arc<HealthReport>)>>,
}

impl Recent {
    pub fn new(fresh: Duration) -> Self {
        Self {
            fresh,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// The last report if it is fresh, else a new one.
    pub async fn get(&self, engine: &Engine) -> Arc<HealthReport> {
        let mut last = self.last.lock().await;
        if let Some((at, report)) = &*last {
            if at.elapsed() < self.fresh {
                return report.clone();
            }
        }
        let report = Arc::new(check(engine).await);
        *last = Some((Instant::now(), report.clone()));
        report
    }
}

impl Default for Recent {
    /// One second: a monitor polling every few seconds sees every change.
    fn default() -> Self {
        Self::new(Duration::from_secs(1))
    }
}
