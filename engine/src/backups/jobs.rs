//! The backup worker: runs in every worker process beside the deploy worker. Each
//! second it queues due schedule slots (exactly once, see `schedule`), claims
//! queued backups, restores and drills from PostgreSQL with `FOR UPDATE SKIP
//! LOCKED`, and runs them with a heartbeat. A job whose worker stops reporting
//! is failed as interrupted by any worker's reaper (and its half-done multipart
//! upload aborted), never silently run twice.
//!
//! A backup streams: `exec` of the engine's dump → a bounded pipe → gzip → S3
//! parts of 8 MiB. Nothing is committed until the dump program has exited 0.

use super::s3;
use crate::db::schema::{backup_schedules, backups, restores};
use crate::error::StoreError;
use crate::services::container::{self, State};
use crate::services::kind::{generate_password, DbEngine, Identity, RestorePlan};
use crate::Engine;
use async_compression::tokio::bufread::{GzipDecoder, GzipEncoder};
use chrono::Utc;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use secrecy::ExposeSecret;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const TICK: Duration = Duration::from_secs(1);
const HEARTBEAT: Duration = Duration::from_secs(2);
const READY_TIMEOUT: Duration = Duration::from_secs(180);

#[derive(Debug, Clone, Copy)]
enum Job {
    Backup(Uuid),
    Restore(Uuid),
    Drill(Uuid),
}

/// Runs until `shutdown`; then waits for the jobs in hand.
pub async fn run(engine: Engine, shutdown: CancellationToken) {
    let worker = format!(
        "{}-{}-{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "berth".into()),
        std::process::id(),
        &crate::apps::random_token()[..8]
    );
    let slots = engine.deploy.services.concurrency.max(1);
    let permits = Arc::new(tokio::sync::Semaphore::new(slots));
    tracing::info!(worker = %worker, slots, "backup worker starting");
    let mut reaped_at = std::time::Instant::now() - Duration::from_secs(60);
    loop {
        if let Err(e) = super::schedule::tick(&engine, Utc::now()).await {
            tracing::warn!(error = %e, "queueing scheduled backups");
        }
        if reaped_at.elapsed() >= Duration::from_secs(3) {
            reaped_at = std::time::Instant::now();
            if let Err(e) = reap(&engine).await {
                tracing::warn!(error = %e, "reaping interrupted backup jobs");
            }
        }
        while let Ok(permit) = permits.clone().try_acquire_owned() {
            match claim(&engine, &worker).await {
                Ok(Some(job)) => {
                    let engine = engine.clone();
                    let worker = worker.clone();
                    tokio::spawn(async move {
                        run_job(&engine, job, &worker).await;
                        drop(permit);
                    });
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming a backup job");
                    break;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    // Jobs in hand finish (the caller bounds how long it waits).
    let _ = permits.acquire_many(slots as u32).await;
}

#[derive(QueryableByName)]
struct Claimed {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
}

fn unique_violation(e: &diesel::result::Error) -> bool {
    matches!(
        e,
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)
    )
}

async fn claim(engine: &Engine, worker: &str) -> Result<Option<Job>, StoreError> {
    let mut conn = engine.db.get().await?;
    // Restores first: someone is waiting on them.
    type Claim = (&'static str, fn(Uuid) -> Job);
    const CLAIMS: [Claim; 3] = [
        (
            "UPDATE restores SET status = 'running', worker_id = $1, heartbeat_at = now(), started_at = now()
             WHERE id = (SELECT r.id FROM restores r WHERE r.status = 'queued'
                         AND NOT EXISTS (SELECT 1 FROM restores o WHERE o.status = 'running' AND o.service_id = r.service_id)
                         AND NOT EXISTS (SELECT 1 FROM backups b WHERE b.status = 'running' AND b.service_id = r.service_id)
                         ORDER BY r.created_at FOR UPDATE SKIP LOCKED LIMIT 1)
             RETURNING id",
            Job::Restore,
        ),
        (
            "UPDATE backups SET status = 'running', worker_id = $1, heartbeat_at = now(), started_at = now()
             WHERE id = (SELECT b.id FROM backups b WHERE b.status = 'queued'
                         AND NOT EXISTS (SELECT 1 FROM backups o WHERE o.status = 'running' AND o.service_id = b.service_id)
                         AND NOT EXISTS (SELECT 1 FROM restores r WHERE r.status = 'running' AND r.service_id = b.service_id)
                         ORDER BY b.created_at FOR UPDATE SKIP LOCKED LIMIT 1)
             RETURNING id",
            Job::Backup,
        ),
        (
            "UPDATE backups SET drill_status = 'running', drill_worker_id = $1, drill_heartbeat_at = now()
             WHERE id = (SELECT id FROM backups WHERE drill_status = 'queued'
                         ORDER BY created_at FOR UPDATE SKIP LOCKED LIMIT 1)
             RETURNING id",
            Job::Drill,
        ),
    ];
    for (sql, job) in CLAIMS {
        let got = diesel::sql_query(sql)
            .bind::<diesel::sql_types::Text, _>(worker)
            .get_result::<Claimed>(&mut conn)
            .await
            .optional();
        match got {
            Ok(Some(c)) => return Ok(Some(job(c.id))),
            Ok(None) => {}
            // Another worker started a job on the same service in between.
            Err(e) if unique_violation(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

/// Marks jobs whose worker stopped reporting as failed, and cleans after them.
pub async fn reap(engine: &Engine) -> Result<usize, StoreError> {
    let mut conn = engine.db.get().await?;
    let lease = engine.deploy.lease_secs as f64;
    #[derive(QueryableByName)]
    struct Reaped {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        organization_id: Uuid,
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        destination_id: Uuid,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        object_key: Option<String>,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        upload_id: Option<String>,
    }
    let backups_reaped: Vec<Reaped> = diesel::sql_query(
        "UPDATE backups SET status = 'failed', finished_at = now(),
                error = 'interrupted: the worker running it stopped before it finished'
         WHERE status = 'running' AND heartbeat_at < now() - make_interval(secs => $1)
         RETURNING organization_id, destination_id, object_key, upload_id",
    )
    .bind::<diesel::sql_types::Double, _>(lease)
    .load(&mut conn)
    .await?;
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: Uuid,
    }
    let drills: Vec<Id> = diesel::sql_query(
        "UPDATE backups SET drill_status = 'failed', drill_at = now(),
                drill_detail = 'interrupted: the worker running it stopped before it finished'
         WHERE drill_status = 'running' AND drill_heartbeat_at < now() - make_interval(secs => $1)
         RETURNING id",
    )
    .bind::<diesel::sql_types::Double, _>(lease)
    .load(&mut conn)
    .await?;
    #[derive(QueryableByName)]
    struct ReapedRestore {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        service_id: Uuid,
    }
    let restores_reaped: Vec<ReapedRestore> = diesel::sql_query(
        "UPDATE restores SET status = 'failed', finished_at = now(),
                error = 'interrupted: the worker running it stopped before it finished'
         WHERE status = 'running' AND heartbeat_at < now() - make_interval(secs => $1)
         RETURNING service_id",
    )
    .bind::<diesel::sql_types::Double, _>(lease)
    .load(&mut conn)
    .await?;
    for r in &backups_reaped {
        let (Some(key), Some(upload)) = (&r.object_key, &r.upload_id) else {
            continue;
        };
        if let Ok(t) = super::target(engine, &mut conn, r.organization_id, r.destination_id).await {
            if let Ok(bucket) = t.bucket() {
                if let Err(e) = bucket.abort_upload(key, upload).await {
                    tracing::warn!(key, error = %s3::describe(&e), "aborting an interrupted backup's upload");
                }
            }
        }
    }
    for d in &drills {
        container::remove_throwaway(engine, &drill_container(engine, d.id)).await;
    }
    for r in &restores_reaped {
        // A Redis restore stops the server for its swap: bring it back.
        if let Ok(svc) = crate::services::load_any(engine, &mut conn, r.service_id).await {
            if svc.row.desired == "running" {
                let _ = container::start(engine, &svc.row.name).await;
            }
        }
    }
    let n = backups_reaped.len() + drills.len() + restores_reaped.len();
    if n > 0 {
        tracing::warn!(
            backups = backups_reaped.len(),
            drills = drills.len(),
            restores = restores_reaped.len(),
            "failed interrupted backup jobs"
        );
    }
    Ok(n)
}

/// Counts bytes read through it into a shared counter (progress for heartbeats).
struct Counting<R> {
    inner: R,
    n: Arc<AtomicU64>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counting<R> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r {
            self.n
                .fetch_add((buf.filled().len() - before) as u64, Ordering::Relaxed);
        }
        r
    }
}

/// Reports the job alive (with its progress) until dropped.
struct Heartbeat(CancellationToken);

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

fn heartbeat(engine: &Engine, job: Job, worker: &str, progress: Arc<AtomicU64>) -> Heartbeat {
    let token = CancellationToken::new();
    let (engine, worker, stop) = (engine.clone(), worker.to_owned(), token.clone());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(HEARTBEAT) => {}
                _ = stop.cancelled() => return,
            }
            let Ok(mut conn) = engine.db.get().await else { continue };
            let n = AtomicU64::load(&progress, Ordering::Relaxed) as i64;
            let _ = match job {
                Job::Backup(id) => {
                    diesel::update(
                        backups::table
                            .filter(backups::id.eq(id))
                            .filter(backups::worker_id.eq(&worker)),
                    )
                    .set((backups::heartbeat_at.eq(diesel::dsl::now), backups::size_bytes.eq(n)))
                    .execute(&mut conn)
                    .await
                }
                Job::Drill(id) => {
                    diesel::update(
                        backups::table
                            .filter(backups::id.eq(id))
                            .filter(backups::drill_worker_id.eq(&worker)),
                    )
                    .set(backups::drill_heartbeat_at.eq(diesel::dsl::now))
                    .execute(&mut conn)
                    .await
                }
                Job::Restore(id) => {
                    diesel::update(
                        restores::table
                            .filter(restores::id.eq(id))
                            .filter(restores::worker_id.eq(&worker)),
                    )
                    .set((restores::heartbeat_at.eq(diesel::dsl::now), restores::bytes.eq(n)))
                    .execute(&mut conn)
                    .await
                }
            };
        }
    });
    Heartbeat(token)
}

async fn run_job(engine: &Engine, job: Job, worker: &str) {
    let progress = Arc::new(AtomicU64::new(0));
    let _beat = heartbeat(engine, job, worker, progress.clone());
    tracing::info!(?job, "backup job started");
    match job {
        Job::Backup(id) => {
            let result = run_backup(engine, id, &progress).await;
            finish_backup(engine, id, worker, result).await;
        }
        Job::Restore(id) => {
            let result = run_restore(engine, id, &progress).await;
            if let Err(e) = &result {
                tracing::warn!(restore.id = %id, error = %e, "restore failed");
            }
            if let Ok(mut conn) = engine.db.get().await {
                let (status, error) = match &result {
                    Ok(()) => ("succeeded", None),
                    Err(e) => ("failed", Some(e.clone())),
                };
                let _ = diesel::update(
                    restores::table
                        .filter(restores::id.eq(id))
                        .filter(restores::worker_id.eq(worker)),
                )
                .set((
                    restores::status.eq(status),
                    restores::error.eq(error),
                    restores::bytes.eq(AtomicU64::load(&progress, Ordering::Relaxed) as i64),
                    restores::finished_at.eq(diesel::dsl::now),
                ))
                .execute(&mut conn)
                .await;
            }
        }
        Job::Drill(id) => {
            let result = run_drill(engine, id).await;
            container::remove_throwaway(engine, &drill_container(engine, id)).await;
            if let Err(e) = &result {
                tracing::warn!(backup.id = %id, error = %e, "restore drill failed");
            }
            if let Ok(mut conn) = engine.db.get().await {
                let (status, detail) = match result {
                    Ok(d) => ("verified", d),
                    Err(e) => ("failed", e),
                };
                let _ = diesel::update(
                    backups::table
                        .filter(backups::id.eq(id))
                        .filter(backups::drill_worker_id.eq(worker)),
                )
                .set((
                    backups::drill_status.eq(Some(status)),
                    backups::drill_detail.eq(Some(detail)),
                    backups::drill_at.eq(Some(Utc::now())),
                ))
                .execute(&mut conn)
                .await;
            }
        }
    }
}

/// What a backup job needs from its row.
struct BackupJob {
    service: Option<Uuid>,
    name: String,
    engine: DbEngine,
}

async fn load_backup_job(engine: &Engine, id: Uuid) -> Result<(BackupJob, s3::Target), String> {
    let mut conn = engine.db.get().await.map_err(|e| e.to_string())?;
    type Row = (Uuid, Option<Uuid>, String, String, Uuid);
    let r: Row = backups::table
        .find(id)
        .select((
            backups::organization_id,
            backups::service_id,
            backups::service_name,
            backups::engine,
            backups::destination_id,
        ))
        .first(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    let t = super::target(engine, &mut conn, r.0, r.4)
        .await
        .map_err(|e| e.to_string())?;
    Ok((
        BackupJob {
            service: r.1,
            name: r.2,
            engine: DbEngine::parse(&r.3).map_err(|e| e.message)?,
        },
        t,
    ))
}

/// Streams what `produce` writes through gzip into a staged upload, then
/// commits it only if `produce` succeeded; aborts it otherwise.
async fn pump<F>(
    bucket: &::s3::Bucket,
    key: &str,
    progress: &AtomicU64,
    initiated: &(dyn Fn(&str) + Send + Sync),
    reader: tokio::io::DuplexStream,
    produce: F,
) -> Result<u64, String>
where
    F: std::future::Future<Output = Result<(), String>>,
{
    let consume = async {
        let mut gz = GzipEncoder::with_quality(tokio::io::BufReader::new(reader), async_compression::Level::Fastest);
        s3::stage(bucket, key, &mut gz, progress, initiated).await
    };
    let (produced, staged) = tokio::join!(produce, consume);
    match (produced, staged) {
        (Ok(()), Ok(staged)) => s3::commit(bucket, key, staged).await,
        (Err(e), Ok(staged)) => {
            s3::abort(bucket, key, staged).await;
            Err(e)
        }
        // The upload failed first; the dump then only saw its pipe closed.
        (_, Err(e)) => Err(e),
    }
}

/// Pipe capacity between the dump and the compressor.
const PIPE: usize = 256 * 1024;

async fn run_backup(engine: &Engine, id: Uuid, progress: &AtomicU64) -> Result<(String, u64), String> {
    let (job, t) = load_backup_job(engine, id).await?;
    let stamp = Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let key = t.key(&format!("{}/{stamp}.{}", job.name, job.engine.dump_extension()));
    {
        // Recorded first, so a reaper can abort the upload if this worker dies.
        let mut conn = engine.db.get().await.map_err(|e| e.to_string())?;
        diesel::update(backups::table.find(id))
            .set(backups::object_key.eq(Some(&key)))
            .execute(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
    }
    s3::preflight(&t).await?;
    let bucket = t.bucket()?;
    let initiated = {
        let engine = engine.clone();
        move |upload: &str| {
            let (engine, upload) = (engine.clone(), upload.to_owned());
            tokio::spawn(async move {
                if let Ok(mut conn) = engine.db.get().await {
                    let _ = diesel::update(backups::table.find(id))
                        .set(backups::upload_id.eq(Some(upload)))
                        .execute(&mut conn)
                        .await;
                }
            });
        }
    };
    let (mut writer, reader) = tokio::io::duplex(PIPE);
    let size = match job.service {
        None => {
            let url = engine
                .deploy
                .services
                .database_url
                .as_ref()
                .ok_or("DATABASE_URL is not set in this worker: it cannot back up Berth's database")?
                .expose_secret()
                .to_owned();
            let pg_dump = engine.deploy.services.pg_dump.clone();
            let produce = async move { super::own::dump(&pg_dump, &url, &mut writer).await };
            pump(&bucket, &key, progress, &initiated, reader, produce).await?
        }
        Some(sid) => {
            let svc = {
                let mut conn = engine.db.get().await.map_err(|e| e.to_string())?;
                crate::services::load_any(engine, &mut conn, sid)
                    .await
                    .map_err(|e| format!("the service is gone: {e}"))?
            };
            match container::state(engine, &svc.row.name)
                .await
                .map_err(|e| e.to_string())?
            {
                State::Running => {}
                State::Missing => {
                    return Err(format!(
                        "the database service {} has no container: start it first",
                        svc.row.name
                    ))
                }
                State::Down(s) => {
                    return Err(format!(
                        "the database service {} is not running ({s}): start it before backing up",
                        svc.row.name
                    ))
                }
            }
            let name = svc.container(engine);
            let identity = svc.identity();
            if svc.engine == DbEngine::Redis {
                redis_bgsave(engine, &name, &identity).await?;
            }
            let dump = svc.engine.dump(&identity);
            let program = dump.argv[0].clone();
            let produce = async move {
                match container::exec_stream(engine, &name, &dump, None, Some(&mut writer)).await {
                    Ok(o) if o.exit_code == 0 => Ok(()),
                    Ok(o) => Err(format!("{program} exited with code {}: {}", o.exit_code, o.said())),
                    Err(e) => Err(format!("{program}: {e}")),
                }
            };
            pump(&bucket, &key, progress, &initiated, reader, produce).await?
        }
    };
    Ok((key, size))
}

/// Asks Redis for a fresh snapshot and waits until it is written.
async fn redis_bgsave(engine: &Engine, container_name: &str, id: &Identity<'_>) -> Result<(), String> {
    let out = container::exec_capture(
        engine,
        container_name,
        &DbEngine::redis_bgsave(id),
        Duration::from_secs(30),
    )
    .await
    .map_err(|e| e.to_string())?;
    if out.exit_code != 0 || !(out.stdout.contains("started") || out.stdout.contains("in progress")) {
        return Err(format!("redis BGSAVE failed: {}", out.said()));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(3600);
    loop {
        let info = container::exec_capture(
            engine,
            container_name,
            &DbEngine::redis_persistence_info(id),
            Duration::from_secs(30),
        )
        .await
        .map_err(|e| e.to_string())?;
        if info.stdout.contains("rdb_bgsave_in_progress:0") {
            if info.stdout.contains("rdb_last_bgsave_status:ok") {
                return Ok(());
            }
            return Err("redis BGSAVE did not succeed (rdb_last_bgsave_status is not ok)".into());
        }
        if std::time::Instant::now() > deadline {
            return Err("redis BGSAVE did not finish within an hour".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn finish_backup(engine: &Engine, id: Uuid, worker: &str, result: Result<(String, u64), String>) {
    let Ok(mut conn) = engine.db.get().await else { return };
    let scoped = backups::table
        .filter(backups::id.eq(id))
        .filter(backups::worker_id.eq(worker))
        .filter(backups::status.eq("running"));
    match result {
        Err(e) => {
            tracing::warn!(backup.id = %id, error = %e, "backup failed");
            let _ = diesel::update(scoped)
                .set((
                    backups::status.eq("failed"),
                    backups::error.eq(Some(e)),
                    backups::finished_at.eq(Some(Utc::now())),
                ))
                .execute(&mut conn)
                .await;
        }
        Ok((key, size)) => {
            tracing::info!(backup.id = %id, key, size, "backup succeeded");
            let updated = diesel::update(scoped)
                .set((
                    backups::status.eq("succeeded"),
                    backups::object_key.eq(Some(&key)),
                    backups::size_bytes.eq(size as i64),
                    backups::finished_at.eq(Some(Utc::now())),
                ))
                .execute(&mut conn)
                .await
                .unwrap_or(0);
            if updated == 0 {
                return;
            }
            let Ok(Some(schedule)) = backups::table
                .find(id)
                .select(backups::schedule_id)
                .first::<Option<Uuid>>(&mut conn)
                .await
            else {
                return;
            };
            let Ok((keep, drill)) = backup_schedules::table
                .find(schedule)
                .select((backup_schedules::keep_last, backup_schedules::drill))
                .first::<(i32, bool)>(&mut conn)
                .await
            else {
                return;
            };
            if drill {
                let _ = diesel::update(backups::table.find(id))
                    .set(backups::drill_status.eq(Some("queued")))
                    .execute(&mut conn)
                    .await;
            }
            drop(conn);
            if let Err(e) = retention(engine, schedule, keep).await {
                tracing::warn!(schedule.id = %schedule, error = %e, "retention");
            }
        }
    }
}

/// Deletes the objects of a schedule's successful backups beyond the newest
/// `keep`, oldest first, and marks them pruned.
pub async fn retention(engine: &Engine, schedule: Uuid, keep: i32) -> Result<usize, String> {
    let mut conn = engine.db.get().await.map_err(|e| e.to_string())?;
    let old: Vec<(Uuid, Uuid, Uuid, Option<String>)> = backups::table
        .filter(backups::schedule_id.eq(schedule))
        .filter(backups::status.eq("succeeded"))
        .filter(backups::pruned_at.is_null())
        .order(backups::created_at.desc())
        .offset(i64::from(keep))
        .select((
            backups::id,
            backups::organization_id,
            backups::destination_id,
            backups::object_key,
        ))
        .load(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    let mut pruned = 0;
    for (id, org, destination, key) in old.into_iter().rev() {
        let Some(key) = key else { continue };
        let t = super::target(engine, &mut conn, org, destination)
            .await
            .map_err(|e| e.to_string())?;
        s3::delete(&t, &key).await?;
        diesel::update(backups::table.find(id))
            .set(backups::pruned_at.eq(Some(Utc::now())))
            .execute(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        pruned += 1;
        tracing::info!(backup.id = %id, key, "retention deleted a backup");
    }
    Ok(pruned)
}

/// The backup's object as decompressed bytes. `progress` counts the compressed
/// bytes read from S3, so against the object's size it is a true percentage.
async fn open_backup(
    t: &s3::Target,
    key: &str,
    progress: Arc<AtomicU64>,
) -> Result<GzipDecoder<tokio::io::BufReader<Counting<impl AsyncRead + Unpin + Send + 'static>>>, String> {
    let body = s3::download(t, key).await?;
    Ok(GzipDecoder::new(tokio::io::BufReader::new(Counting {
        inner: body,
        n: progress,
    })))
}

fn feed_error(e: &container::StreamError) -> String {
    match e {
        container::StreamError::Input(io) => format!("the backup cannot be read: {io}"),
        other => other.to_string(),
    }
}

struct SourceBackup {
    engine: DbEngine,
    key: String,
    target: s3::Target,
    service: Option<Uuid>,
}

async fn source_backup(engine: &Engine, backup: Uuid) -> Result<SourceBackup, String> {
    let mut conn = engine.db.get().await.map_err(|e| e.to_string())?;
    type Row = (
        Uuid,
        Uuid,
        String,
        String,
        Option<String>,
        Option<Uuid>,
        Option<chrono::DateTime<Utc>>,
    );
    let r: Row = backups::table
        .find(backup)
        .select((
            backups::organization_id,
            backups::destination_id,
            backups::engine,
            backups::status,
            backups::object_key,
            backups::service_id,
            backups::pruned_at,
        ))
        .first(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    if r.3 != "succeeded" || r.6.is_some() {
        return Err("the backup is not available (failed, or deleted by retention)".into());
    }
    let target = super::target(engine, &mut conn, r.0, r.1)
        .await
        .map_err(|e| e.to_string())?;
    Ok(SourceBackup {
        engine: DbEngine::parse(&r.2).map_err(|e| e.message)?,
        key: r.4.ok_or("the backup has no object")?,
        target,
        service: r.5,
    })
}

async fn run_restore(engine: &Engine, id: Uuid, progress: &Arc<AtomicU64>) -> Result<(), String> {
    let (backup, service): (Uuid, Uuid) = {
        let mut conn = engine.db.get().await.map_err(|e| e.to_string())?;
        restores::table
            .find(id)
            .select((restores::backup_id, restores::service_id))
            .first(&mut conn)
            .await
            .map_err(|e| e.to_string())?
    };
    let src = source_backup(engine, backup).await?;
    let svc = {
        let mut conn = engine.db.get().await.map_err(|e| e.to_string())?;
        crate::services::load_any(engine, &mut conn, service)
            .await
            .map_err(|e| e.to_string())?
    };
    if svc.engine != src.engine {
        return Err(format!(
            "a {} backup cannot be restored into a {} service",
            src.engine.as_str(),
            svc.engine.as_str()
        ));
    }
    let name = svc.container(engine);
    let identity = svc.identity();
    // A service created for this restore may still be pulling or initialising.
    let started = std::time::Instant::now();
    while container::state(engine, &svc.row.name)
        .await
        .map_err(|e| e.to_string())?
        != State::Running
    {
        if started.elapsed() > READY_TIMEOUT {
            return Err(format!("the database service {} is not running", svc.row.name));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    container::wait_ready(engine, &name, &svc.engine.readiness(&identity), READY_TIMEOUT).await?;
    let mut input = open_backup(&src.target, &src.key, progress.clone()).await?;
    match svc.engine.restore(&identity) {
        RestorePlan::Stdin(exec) => {
            let out = container::exec_stream(engine, &name, &exec, Some(&mut input), None)
                .await
                .map_err(|e| feed_error(&e))?;
            if out.exit_code != 0 {
                return Err(format!(
                    "{} exited with code {}: {}",
                    exec.argv[0],
                    out.exit_code,
                    out.said()
                ));
            }
        }
        RestorePlan::RedisRdb => {
            let out = container::exec_stream(engine, &name, &DbEngine::redis_receive(), Some(&mut input), None)
                .await
                .map_err(|e| feed_error(&e))?;
            if out.exit_code != 0 {
                return Err(format!("writing the RDB file failed: {}", out.said()));
            }
            container::stop(engine, &svc.row.name)
                .await
                .map_err(|e| e.to_string())?;
            let swapped =
                container::run_oneoff(engine, &svc.row.image, &svc.row.volume, "/data", DbEngine::redis_swap())
                    .await
                    .map_err(|e| e.to_string());
            container::start(engine, &svc.row.name)
                .await
                .map_err(|e| e.to_string())?;
            match swapped? {
                0 => {}
                code => return Err(format!("swapping the RDB file in failed (exit code {code})")),
            }
            container::wait_ready(engine, &name, &svc.engine.readiness(&identity), READY_TIMEOUT).await?;
        }
    }
    Ok(())
}

/// The drill's throwaway container for a backup.
fn drill_container(engine: &Engine, backup: Uuid) -> String {
    format!(
        "{}-drill-{}",
        engine.deploy.instance,
        &backup.simple().to_string()[..12]
    )
}

async fn run_drill(engine: &Engine, backup: Uuid) -> Result<String, String> {
    let src = source_backup(engine, backup).await?;
    let image = match src.service {
        Some(sid) => {
            let mut conn = engine.db.get().await.map_err(|e| e.to_string())?;
            match crate::services::load_any(engine, &mut conn, sid).await {
                Ok(svc) => svc.row.image,
                Err(_) => src.engine.default_image(&engine.deploy.services.images).to_owned(),
            }
        }
        None => src.engine.default_image(&engine.deploy.services.images).to_owned(),
    };
    container::ensure_image(engine, &image).await?;
    let name = drill_container(engine, backup);
    let password = generate_password();
    let identity = Identity {
        database: if src.engine.has_database() { "drill" } else { "" },
        user: if src.engine.has_database() { "drill" } else { "default" },
        password: &password,
    };
    let progress = Arc::new(AtomicU64::new(0));
    match src.engine.restore(&identity) {
        RestorePlan::Stdin(exec) => {
            container::start_throwaway(
                engine,
                &name,
                &image,
                src.engine.container_env(&identity),
                None,
                src.engine.command(&identity),
                backup,
            )
            .await
            .map_err(|e| e.to_string())?;
            container::wait_ready(engine, &name, &src.engine.readiness(&identity), READY_TIMEOUT).await?;
            let mut input = open_backup(&src.target, &src.key, progress.clone()).await?;
            let out = container::exec_stream(engine, &name, &exec, Some(&mut input), None)
                .await
                .map_err(|e| feed_error(&e))?;
            if out.exit_code != 0 {
                return Err(format!(
                    "the restore failed: {} exited with code {}: {}",
                    exec.argv[0],
                    out.exit_code,
                    out.said()
                ));
            }
        }
        RestorePlan::RedisRdb => {
            // Idle first, so the file is in place before the server starts.
            container::start_throwaway(
                engine,
                &name,
                &image,
                Vec::new(),
                Some(vec!["sleep".into()]),
                Some(vec!["86400".into()]),
                backup,
            )
            .await
            .map_err(|e| e.to_string())?;
            let mut input = open_backup(&src.target, &src.key, progress.clone()).await?;
            let out = container::exec_stream(engine, &name, &DbEngine::redis_receive(), Some(&mut input), None)
                .await
                .map_err(|e| feed_error(&e))?;
            if out.exit_code != 0 {
                return Err(format!("writing the RDB file failed: {}", out.said()));
            }
            let serve = crate::services::kind::Exec {
                argv: [
                    "redis-server",
                    "--dir",
                    "/data",
                    "--dbfilename",
                    "berth-restore.rdb",
                    "--daemonize",
                    "yes",
                    "--requirepass",
                    &password,
                ]
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
                env: Vec::new(),
            };
            let started = container::exec_capture(engine, &name, &serve, Duration::from_secs(30))
                .await
                .map_err(|e| e.to_string())?;
            if started.exit_code != 0 {
                return Err(format!("redis-server did not start on the backup: {}", started.said()));
            }
            container::wait_ready(engine, &name, &src.engine.readiness(&identity), READY_TIMEOUT)
                .await
                .map_err(|e| format!("the backup did not load: {e}"))?;
        }
    }
    let check = src.engine.drill_check(&identity);
    let out = container::exec_capture(engine, &name, &check, Duration::from_secs(600))
        .await
        .map_err(|e| e.to_string())?;
    if out.exit_code != 0 {
        return Err(format!("the check failed: {}", out.said()));
    }
    let counts = src.engine.parse_counts(&out.stdout)?;
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    let listed: Vec<String> = counts.iter().take(10).map(|(t, n)| format!("{t} {n}")).collect();
    let more = if counts.len() > 10 { ", ..." } else { "" };
    Ok(if src.engine == DbEngine::Redis {
        format!("verified: {total} keys ({}{more})", listed.join(", "))
    } else {
        format!(
            "verified: {} tables, {total} rows ({}{more})",
            counts.len(),
            listed.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestS3;
    use tokio::io::AsyncWriteExt;

    /// A dump that fails after several parts went up: the upload is aborted and
    /// nothing of it remains (no object, no open multipart upload).
    #[tokio::test]
    async fn a_failed_dump_leaves_nothing_in_the_bucket() {
        let s3 = TestS3::new().await;
        let before = s3.pending_uploads();
        let bucket = s3.target("").bucket().unwrap();
        let key = "svc/20260101T000000.000Z.pgdump.gz";
        let (mut writer, reader) = tokio::io::duplex(PIPE);
        let produce = async move {
            // 20 MiB that gzip cannot shrink: at least two parts go up first.
            let mut block = vec![0u8; 1 << 20];
            for _ in 0..20 {
                rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut block);
                writer.write_all(&block).await.map_err(|e| e.to_string())?;
            }
            Err::<(), _>("pg_dump exited with code 1: out of disk".to_owned())
        };
        let progress = AtomicU64::new(0);
        let e = pump(&bucket, key, &progress, &|_| {}, reader, produce)
            .await
            .unwrap_err();
        assert_eq!(e, "pg_dump exited with code 1: out of disk");
        assert!(
            AtomicU64::load(&progress, Ordering::Relaxed) > 2 * s3::PART_SIZE as u64,
            "parts were uploaded before the failure"
        );
        assert!(s3.keys().await.is_empty());
        assert_eq!(s3.pending_uploads(), before, "the multipart upload was aborted");
    }
}
