//! One runner for every kind of background job: deployments, backups, restores
//! and restore drills today, and the kinds later work adds. A job is a row in
//! PostgreSQL before anything runs; the runner claims rows (each kind's claim
//! uses `FOR UPDATE SKIP LOCKED`), runs each claimed job beside a heartbeat that
//! carries cancel requests in and notices a lost lease, reaps jobs whose worker
//! stopped beating, and gives each pool of kinds its own number of slots.
//!
//! A kind implements [`JobKind`]: a stable name, its claim, heartbeat, reaper and
//! body. The body records the job's end through the kind's one transition
//! function, so the runner never writes a status itself.

use crate::error::StoreError;
use crate::Engine;
use futures::future::BoxFuture;
use lifecycle::Lifecycle;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How often a running job proves it is alive.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// How often each kind's reaper looks for jobs whose worker died.
pub const REAP_EVERY: Duration = Duration::from_secs(3);
/// How long the runner waits for new work when nothing wakes it.
pub const POLL_EVERY: Duration = Duration::from_secs(1);

/// Who must hold a job for a transition to happen: the guard each kind's one
/// transition function puts on its conditional UPDATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder<'a> {
    /// The worker running it.
    Worker(&'a str),
    /// Nobody in particular: a queued job being claimed or cancelled, a live
    /// deployment being superseded.
    Anyone,
    /// A worker whose heartbeat is older than this many seconds (the reaper).
    Stale { lease_secs: u64 },
}

impl Holder<'_> {
    /// The guard as bind values: (kind, worker, lease seconds) for the SQL
    /// `CASE $kind WHEN 'worker' THEN worker_id = $worker WHEN 'stale' THEN
    /// heartbeat_at < now() - make_interval(secs => $lease) ELSE TRUE END`.
    pub fn binds(self) -> (&'static str, Option<String>, f64) {
        match self {
            Holder::Worker(w) => ("worker", Some(w.to_owned()), 0.0),
            Holder::Anyone => ("anyone", None, 0.0),
            Holder::Stale { lease_secs } => ("stale", None, lease_secs as f64),
        }
    }
}

/// One move of one job: the input of each kind's one transition function.
#[derive(Debug, Clone, Copy)]
pub struct Move<'a, S> {
    pub id: Uuid,
    /// Where the row is believed to be (`None`: a drill never run, for queueing it).
    pub from: Option<S>,
    pub to: S,
    pub holder: Holder<'a>,
    /// Set on the claim: the worker that takes it.
    pub claim_for: Option<&'a str>,
    /// Why it failed or was cancelled, or what it found.
    pub note: Option<&'a str>,
    /// The deployment that replaced this one (to `superseded`).
    pub by: Option<Uuid>,
}

impl<'a, S: Lifecycle> Move<'a, S> {
    pub fn new(id: impl Into<Uuid>, from: S, to: S, holder: Holder<'a>) -> Self {
        Self {
            id: id.into(),
            from: Some(from),
            to,
            holder,
            claim_for: None,
            note: None,
            by: None,
        }
    }

    /// A move from no state at all (a drill's first queueing).
    pub fn first(id: impl Into<Uuid>, to: S, holder: Holder<'a>) -> Self {
        Self {
            from: None,
            ..Self::new(id, to, to, holder)
        }
    }

    pub fn claim_for(mut self, worker: &'a str) -> Self {
        self.claim_for = Some(worker);
        self
    }

    pub fn note(mut self, note: &'a str) -> Self {
        self.note = Some(note);
        self
    }

    pub fn by(mut self, id: impl Into<Uuid>) -> Self {
        self.by = Some(id.into());
        self
    }

    /// The state machine's word on the move; `first` moves may only queue.
    pub fn check(&self, queued: S) -> Result<(), lifecycle::IllegalTransition> {
        match self.from {
            Some(from) => from.transition(self.to).map(|_| ()),
            None if self.to == queued => Ok(()),
            None => Err(lifecycle::IllegalTransition {
                from: "none",
                to: self.to.as_str(),
            }),
        }
    }
}

/// Why a transition did not happen.
#[derive(Debug, thiserror::Error)]
pub enum TransitionError {
    /// The state machine forbids the move (a bug in the caller, or a user asking
    /// for something the job's state no longer allows).
    #[error("the job {0}")]
    Illegal(#[from] lifecycle::IllegalTransition),
    /// The row is no longer in the expected state under that holder: someone
    /// else moved it (another worker, the reaper, a cancel).
    #[error("the job was moved by someone else")]
    Lost,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<diesel::result::Error> for TransitionError {
    fn from(e: diesel::result::Error) -> Self {
        TransitionError::Store(e.into())
    }
}

/// What a heartbeat learned about the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    /// Still held by this worker; `cancel` when a user asked to stop it.
    Held { cancel: bool },
    /// No longer held by this worker (reaped, or taken over): stop at once.
    Lost,
}

/// What a running job is given besides its row.
#[derive(Clone)]
pub struct JobContext {
    /// This worker's id (the holder written on the rows it claims).
    pub worker: Arc<str>,
    /// Fires when a user cancels the job or its lease is lost.
    pub cancel: CancellationToken,
    lost: Arc<AtomicBool>,
    /// The job's progress (bytes, steps: the kind decides), reported by heartbeats.
    pub progress: Arc<AtomicU64>,
}

impl JobContext {
    fn new(worker: Arc<str>) -> Self {
        Self {
            worker,
            cancel: CancellationToken::new(),
            lost: Arc::new(AtomicBool::new(false)),
            progress: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The heartbeat found the job taken away from this worker.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    pub fn set_progress(&self, n: u64) {
        self.progress.store(n, Ordering::Relaxed);
    }
}

/// A kind of background job.
pub trait JobKind: Send + Sync + 'static {
    /// A claimed job: what the body needs to start.
    type Job: Clone + Send + Sync + std::fmt::Debug + 'static;

    /// A stable name, for logs.
    const NAME: &'static str;

    /// The pool of slots the kind draws from, and the pool's size. Kinds sharing
    /// a pool share its slots (backups, restores and drills all stream through
    /// this process, so they share one).
    fn pool(&self, engine: &Engine) -> (&'static str, usize);

    /// The Redis list whose pushes wake the runner at once (otherwise it polls).
    fn wake_list(&self) -> Option<&'static str> {
        None
    }

    /// Claims the next job for `worker`, or `None` when nothing is due.
    fn claim<'a>(&'a self, engine: &'a Engine, worker: &'a str)
        -> BoxFuture<'a, Result<Option<Self::Job>, StoreError>>;

    /// Proves the job alive (with its progress) while `worker` holds it.
    fn beat<'a>(
        &'a self,
        engine: &'a Engine,
        job: &'a Self::Job,
        worker: &'a str,
        progress: u64,
    ) -> BoxFuture<'a, Result<Beat, StoreError>>;

    /// Runs the job to its end and records the end.
    fn run<'a>(&'a self, engine: &'a Engine, job: Self::Job, ctx: JobContext) -> BoxFuture<'a, ()>;

    /// Fails jobs whose worker stopped beating, and cleans up after them.
    fn reap<'a>(&'a self, engine: &'a Engine) -> BoxFuture<'a, Result<usize, StoreError>>;

    /// Housekeeping each poll (queue due schedule slots, re-push lost wake-ups).
    fn tick<'a>(&'a self, _engine: &'a Engine) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// A unique id for this process's workers: host, pid and a random part.
pub fn worker_id() -> String {
    format!(
        "{}-{}-{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "berth".into()),
        std::process::id(),
        &crate::secrets::random_token()[..8]
    )
}

/// The runner: add kinds, then [`Runner::run`] until shutdown.
pub struct Runner {
    engine: Engine,
    worker: Arc<str>,
    shutdown: CancellationToken,
    pools: HashMap<&'static str, Arc<Semaphore>>,
    sizes: HashMap<&'static str, usize>,
    loops: Vec<BoxFuture<'static, ()>>,
}

impl Runner {
    pub fn new(engine: Engine, shutdown: CancellationToken) -> Self {
        Self {
            engine,
            worker: worker_id().into(),
            shutdown,
            pools: HashMap::new(),
            sizes: HashMap::new(),
            loops: Vec::new(),
        }
    }

    pub fn worker(&self) -> &str {
        &self.worker
    }

    /// Adds a kind: it will be claimed, run, beaten and reaped by this runner.
    pub fn kind<K: JobKind>(mut self, kind: K) -> Self {
        let (pool, size) = kind.pool(&self.engine);
        let size = size.max(1);
        let slots = self
            .pools
            .entry(pool)
            .or_insert_with(|| Arc::new(Semaphore::new(size)))
            .clone();
        self.sizes.insert(pool, size);
        let (engine, worker, shutdown) = (self.engine.clone(), self.worker.clone(), self.shutdown.clone());
        tracing::info!(kind = K::NAME, pool, slots = size, worker = %worker, "job kind registered");
        self.loops
            .push(Box::pin(kind_loop(Arc::new(kind), engine, worker, slots, shutdown)));
        self
    }

    /// Runs every kind until shutdown, then waits for the jobs in hand (the
    /// caller bounds how long).
    pub async fn run(self) {
        let handles: Vec<_> = self.loops.into_iter().map(tokio::spawn).collect();
        for h in handles {
            let _ = h.await;
        }
        for (pool, slots) in &self.pools {
            let _ = slots.acquire_many(self.sizes[pool] as u32).await;
        }
    }
}

async fn kind_loop<K: JobKind>(
    kind: Arc<K>,
    engine: Engine,
    worker: Arc<str>,
    slots: Arc<Semaphore>,
    shutdown: CancellationToken,
) {
    let mut reaped_at = tokio::time::Instant::now() - REAP_EVERY;
    let mut waiter = None;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        kind.tick(&engine).await;
        if reaped_at.elapsed() >= REAP_EVERY {
            reaped_at = tokio::time::Instant::now();
            if let Err(e) = kind.reap(&engine).await {
                tracing::warn!(kind = K::NAME, error = %e, "reaping interrupted jobs");
            }
        }
        while let Ok(permit) = slots.clone().try_acquire_owned() {
            match kind.claim(&engine, &worker).await {
                Ok(Some(job)) => {
                    let (kind, engine, worker) = (kind.clone(), engine.clone(), worker.clone());
                    tokio::spawn(async move {
                        run_one(&*kind, &engine, job, worker).await;
                        drop(permit);
                    });
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(kind = K::NAME, error = %e, "claiming a job");
                    break;
                }
            }
        }
        tokio::select! {
            _ = wait_for_work(&engine, kind.wake_list(), &mut waiter) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Blocks on the kind's Redis list for up to [`POLL_EVERY`] (the list is only a
/// wake-up; claims read PostgreSQL, so a lost wake-up costs at most that long),
/// on this runner's own connection ([`crate::kv::Kv::dedicated`]), made again
/// after an error.
async fn wait_for_work(
    engine: &Engine,
    list: Option<&'static str>,
    conn: &mut Option<redis::aio::MultiplexedConnection>,
) {
    let Some(list) = list else {
        tokio::time::sleep(POLL_EVERY).await;
        return;
    };
    let popped = async {
        if conn.is_none() {
            *conn = Some(engine.kv.dedicated(POLL_EVERY).await?);
        }
        let c = conn.as_mut().expect("just made");
        redis::cmd("BRPOP")
            .arg(engine.kv.key(list))
            .arg(POLL_EVERY.as_secs().max(1))
            .query_async::<Option<(String, String)>>(c)
            .await?;
        Ok::<_, StoreError>(())
    };
    if popped.await.is_err() {
        *conn = None;
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Runs one claimed job with its heartbeat beside it.
pub async fn run_one<K: JobKind>(kind: &K, engine: &Engine, job: K::Job, worker: Arc<str>) {
    tracing::info!(kind = K::NAME, ?job, worker = %worker, "job claimed");
    let ctx = JobContext::new(worker.clone());
    let beating = CancellationToken::new();
    let beat = async {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(HEARTBEAT_EVERY) => {}
                _ = beating.cancelled() => return,
            }
            match kind
                .beat(engine, &job, &worker, ctx.progress.load(Ordering::Relaxed))
                .await
            {
                Ok(Beat::Held { cancel: false }) => {}
                Ok(Beat::Held { cancel: true }) => ctx.cancel.cancel(),
                Ok(Beat::Lost) => {
                    ctx.lost.store(true, Ordering::Relaxed);
                    ctx.cancel.cancel();
                    return;
                }
                Err(e) => tracing::warn!(kind = K::NAME, error = %e, "heartbeat"),
            }
        }
    };
    let body = async {
        kind.run(engine, job.clone(), ctx.clone()).await;
        beating.cancel();
    };
    tokio::join!(beat, body);
}

/// A figure of the job queues: `what` is `queued`, or a quantile (`0.5`,
/// `0.95`) of the last hour's durations in seconds.
#[derive(Debug, Clone, diesel::QueryableByName)]
pub struct Figure {
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub kind: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub what: String,
    #[diesel(sql_type = diesel::sql_types::Double)]
    pub value: f64,
}

/// Every kind's queue depth and the last hour's durations, from PostgreSQL
/// (so every replica reports the same), for `/metrics`.
pub async fn figures(engine: &Engine) -> Result<Vec<Figure>, StoreError> {
    use diesel_async::RunQueryDsl;
    let mut conn = engine.db.get().await?;
    Ok(diesel::sql_query(
        "SELECT 'deployment' AS kind, 'queued' AS what, count(*)::float8 AS value FROM deployments WHERE status = 'queued'
         UNION ALL SELECT 'backup', 'queued', count(*)::float8 FROM backups WHERE status = 'queued'
         UNION ALL SELECT 'restore', 'queued', count(*)::float8 FROM restores WHERE status = 'queued'
         UNION ALL SELECT 'drill', 'queued', count(*)::float8 FROM backups WHERE drill_status = 'queued'
         UNION ALL SELECT 'delivery', 'queued', count(*)::float8 FROM notification_deliveries WHERE status = 'queued'
         UNION ALL SELECT kind, q, COALESCE(percentile_cont(p) WITHIN GROUP (ORDER BY secs), 0)::float8
         FROM (SELECT 'deployment' AS kind, EXTRACT(EPOCH FROM finished_at - created_at) AS secs
               FROM deployments WHERE finished_at > now() - interval '1 hour'
               UNION ALL SELECT 'backup', EXTRACT(EPOCH FROM finished_at - started_at)
               FROM backups WHERE finished_at > now() - interval '1 hour' AND started_at IS NOT NULL
               UNION ALL SELECT 'restore', EXTRACT(EPOCH FROM finished_at - started_at)
               FROM restores WHERE finished_at > now() - interval '1 hour' AND started_at IS NOT NULL
               UNION ALL SELECT 'delivery', EXTRACT(EPOCH FROM finished_at - created_at)
               FROM notification_deliveries WHERE finished_at > now() - interval '1 hour') d,
              (VALUES ('0.5', 0.5::float8), ('0.95', 0.95::float8)) AS q(q, p)
         GROUP BY kind, q, p",
    )
    .load(&mut conn)
    .await?)
}
