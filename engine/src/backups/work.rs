//! The work of backup jobs, once claimed ([`super::kinds`]): a backup streams
//! `exec` of the engine's dump → a bounded pipe → gzip → S3 parts of 8 MiB and
//! commits nothing until the dump program exited 0; a restore streams the
//! object back into the service; a drill restores into a throwaway container
//! and counts what came back.

use super::s3;
use super::transition::{drill_transition, transition, DrillMove, JobMove, JobTable};
use crate::db::schema::{backup_schedules, backups, restores};
use crate::docker::{self, StreamError};
use crate::jobs::Holder;
use crate::services::container::{self, State};
use crate::services::kind::{generate_password, DbEngine, Identity, RestorePlan};
use crate::Engine;
use async_compression::tokio::bufread::{GzipDecoder, GzipEncoder};
use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use lifecycle::{DrillStatus, JobStatus};
use secrecy::ExposeSecret;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, ReadBuf};
use uuid::Uuid;

const READY_TIMEOUT: Duration = Duration::from_secs(180);

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

pub(super) async fn run_backup(engine: &Engine, id: Uuid, progress: &AtomicU64) -> Result<(String, u64), String> {
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
            let produce = bounded(engine, "the backup", async move {
                super::own::dump(&pg_dump, &url, &mut writer).await
            });
            pump(&bucket, &key, progress, &initiated, reader, produce).await?
        }
        Some(sid) => {
            let svc = {
                let mut conn = engine.db.get().await.map_err(|e| e.to_string())?;
                crate::services::load_any(engine, &mut conn, sid)
                    .await
                    .map_err(|e| format!("the service is gone: {e}"))?
            };
            match container::state(engine, &svc.container(engine))
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
            // Bounded: a dump that never ends (a custom image, a stuck server)
            // fails, its upload is aborted, and the slot is free again.
            let produce = bounded(engine, "the backup", async move {
                match engine.docker.exec(&name, &dump, None, Some(&mut writer)).await {
                    Ok(o) if o.exit_code == 0 => Ok(()),
                    Ok(o) => Err(format!("{program} exited with code {}: {}", o.exit_code, o.said())),
                    Err(e) => Err(format!("{program}: {e}")),
                }
            });
            pump(&bucket, &key, progress, &initiated, reader, produce).await?
        }
    };
    Ok((key, size))
}

/// `work` with the backup time limit (`BERTH_BACKUP_TIMEOUT_SECS`): past it,
/// an error naming the limit (and `work` is dropped, which stops its exec).
pub(super) async fn bounded<T>(
    engine: &Engine,
    what: &str,
    work: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    bounded_for(engine.deploy.services.job_timeout_secs, what, work).await
}

async fn bounded_for<T>(
    secs: u64,
    what: &str,
    work: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    match tokio::time::timeout(Duration::from_secs(secs), work).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "{what} was still running after {secs} s (BERTH_BACKUP_TIMEOUT_SECS) and was stopped"
        )),
    }
}

/// Asks Redis for a fresh snapshot and waits until it is written. With AOF on,
/// Redis refuses a BGSAVE while it rewrites the append-only file ("another
/// child process is active"): it is asked again until the rewrite is over.
async fn redis_bgsave(engine: &Engine, container_name: &str, id: &Identity<'_>) -> Result<(), String> {
    let refused_until = std::time::Instant::now() + Duration::from_secs(600);
    loop {
        let out = docker::exec_capture(
            &*engine.docker,
            container_name,
            &DbEngine::redis_bgsave(id),
            Duration::from_secs(30),
        )
        .await
        .map_err(|e| e.to_string())?;
        if out.exit_code == 0 && (out.stdout.contains("started") || out.stdout.contains("in progress")) {
            break;
        }
        let said = out.said();
        let busy = said.contains("child process") || said.contains("AOF");
        if !busy || std::time::Instant::now() > refused_until {
            return Err(format!("redis BGSAVE failed: {}", out.said()));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(3600);
    loop {
        let info = docker::exec_capture(
            &*engine.docker,
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

pub(super) async fn finish_backup(engine: &Engine, id: Uuid, worker: &str, result: Result<(String, u64), String>) {
    let Ok(mut conn) = engine.db.get().await else { return };
    let held = Holder::Worker(worker);
    let (key, size) = match result {
        Err(e) => {
            tracing::warn!(backup.id = %id, error = %e, "backup failed");
            let m = JobMove::new(id, JobStatus::Running, JobStatus::Failed, held).note(&e);
            match transition(&mut conn, JobTable::Backups, m).await {
                Ok(()) => {
                    drop(conn);
                    crate::events::backup_changed(engine, id).await;
                }
                Err(e) => tracing::warn!(backup.id = %id, error = %e, "recording a backup's end"),
            }
            return;
        }
        Ok(done) => done,
    };
    tracing::info!(backup.id = %id, key, size, "backup succeeded");
    // The object and the status change together; a drill the schedule asks for
    // is queued in the same transaction.
    let recorded = conn
        .transaction::<_, crate::jobs::TransitionError, _>(async |conn| {
            let m = JobMove::new(id, JobStatus::Running, JobStatus::Succeeded, held);
            transition(conn, JobTable::Backups, m).await?;
            diesel::update(backups::table.find(id))
                .set((backups::object_key.eq(Some(&key)), backups::size_bytes.eq(size as i64)))
                .execute(conn)
                .await?;
            let schedule: Option<(Uuid, i32, bool)> = backups::table
                .inner_join(backup_schedules::table.on(backup_schedules::id.nullable().eq(backups::schedule_id)))
                .filter(backups::id.eq(id))
                .select((
                    backup_schedules::id,
                    backup_schedules::keep_last,
                    backup_schedules::drill,
                ))
                .first(conn)
                .await
                .optional()?;
            if let Some((_, _, true)) = schedule {
                drill_transition(conn, DrillMove::first(id, DrillStatus::Queued, Holder::Anyone)).await?;
            }
            Ok(schedule)
        })
        .await;
    drop(conn);
    if recorded.is_ok() {
        crate::events::backup_changed(engine, id).await;
    }
    match recorded {
        Ok(Some((schedule, keep, _))) => {
            if let Err(e) = retention(engine, schedule, keep).await {
                tracing::warn!(schedule.id = %schedule, error = %e, "retention");
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(backup.id = %id, error = %e, "recording a backup's end"),
    }
}

/// Deletes the objects of a schedule's successful backups beyond the newest
/// `keep`, oldest first, and marks them pruned.
pub async fn retention(engine: &Engine, schedule: Uuid, keep: i32) -> Result<usize, String> {
    let mut conn = engine.db.get().await.map_err(|e| e.to_string())?;
    let old: Vec<(Uuid, Uuid, Uuid, Option<String>)> = backups::table
        .filter(backups::schedule_id.eq(schedule))
        .filter(backups::status.eq(JobStatus::Succeeded))
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

fn feed_error(e: &StreamError) -> String {
    match e {
        StreamError::Input(io) => format!("the backup cannot be read: {io}"),
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
        JobStatus,
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
    if r.3 != JobStatus::Succeeded || r.6.is_some() {
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

pub(super) async fn run_restore(engine: &Engine, id: Uuid, progress: &Arc<AtomicU64>) -> Result<(), String> {
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
    while container::state(engine, &svc.container(engine))
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
            let out = engine
                .docker
                .exec(&name, &exec, Some(&mut input), None)
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
            let aof = svc.row.redis_aof;
            for (step, fixed) in DbEngine::redis_stage(aof) {
                let out = match fixed {
                    None => engine.docker.exec(&name, &step, Some(&mut input), None).await,
                    Some(bytes) => {
                        let mut bytes = bytes.as_slice();
                        engine.docker.exec(&name, &step, Some(&mut bytes), None).await
                    }
                }
                .map_err(|e| feed_error(&e))?;
                if out.exit_code != 0 {
                    return Err(format!(
                        "staging the RDB file failed ({}): {}",
                        step.argv[0],
                        out.said()
                    ));
                }
            }
            container::stop(engine, &svc.container(engine))
                .await
                .map_err(|e| e.to_string())?;
            // Whatever happens, the server starts again afterwards.
            let mut swapped = Ok(());
            for argv in DbEngine::redis_swap(aof) {
                let program = argv[0].clone();
                match container::run_oneoff(engine, &svc.row.image, &svc.row.volume, "/data", argv).await {
                    Ok(0) => {}
                    Ok(code) => {
                        swapped = Err(format!(
                            "swapping the backup in failed ({program} exited with code {code})"
                        ));
                        break;
                    }
                    Err(e) => {
                        swapped = Err(e.to_string());
                        break;
                    }
                }
            }
            container::start(engine, &svc.container(engine))
                .await
                .map_err(|e| e.to_string())?;
            swapped?;
            container::wait_ready(engine, &name, &svc.engine.readiness(&identity), READY_TIMEOUT).await?;
        }
    }
    Ok(())
}

/// The drill's throwaway container for a backup.
pub(super) fn drill_container(engine: &Engine, backup: Uuid) -> String {
    format!(
        "{}-drill-{}",
        engine.deploy.instance,
        &backup.simple().to_string()[..12]
    )
}

pub(super) async fn run_drill(engine: &Engine, backup: Uuid) -> Result<String, String> {
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
    let root_password = generate_password();
    let identity = Identity {
        database: if src.engine.has_database() { "drill" } else { "" },
        user: if src.engine.has_database() { "drill" } else { "default" },
        password: &password,
        root_password: &root_password,
        redis_aof: false,
    };
    let progress = Arc::new(AtomicU64::new(0));
    match src.engine.restore(&identity) {
        RestorePlan::Stdin(exec) => {
            container::start_throwaway(
                engine,
                &name,
                &image,
                container::Throwaway {
                    env: src.engine.container_env(&identity),
                    entrypoint: None,
                    cmd: src.engine.command(&identity),
                    files: src.engine.container_files(&identity),
                },
                backup,
            )
            .await
            .map_err(|e| e.to_string())?;
            container::wait_ready(engine, &name, &src.engine.readiness(&identity), READY_TIMEOUT).await?;
            let mut input = open_backup(&src.target, &src.key, progress.clone()).await?;
            let out = engine
                .docker
                .exec(&name, &exec, Some(&mut input), None)
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
                container::Throwaway {
                    env: Vec::new(),
                    entrypoint: Some(vec!["sleep".into()]),
                    cmd: Some(vec!["86400".into()]),
                    // The password in a file, as the service's own: an
                    // argument would show in the host's process list.
                    files: src.engine.container_files(&identity),
                },
                backup,
            )
            .await
            .map_err(|e| e.to_string())?;
            let mut input = open_backup(&src.target, &src.key, progress.clone()).await?;
            let out = engine
                .docker
                .exec(&name, &DbEngine::redis_receive(), Some(&mut input), None)
                .await
                .map_err(|e| feed_error(&e))?;
            if out.exit_code != 0 {
                return Err(format!("writing the RDB file failed: {}", out.said()));
            }
            let serve = docker::Exec {
                argv: [
                    "redis-server",
                    crate::services::kind::REDIS_CONF,
                    "--dbfilename",
                    "berth-restore.rdb",
                    "--daemonize",
                    "yes",
                ]
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
                env: Vec::new(),
            };
            let started = docker::exec_capture(&*engine.docker, &name, &serve, Duration::from_secs(30))
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
    let out = docker::exec_capture(&*engine.docker, &name, &check, Duration::from_secs(600))
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

    /// The tests below count the S3 server's open multipart uploads, which
    /// s3s-fs keeps for the whole server, so one test's upload in flight would
    /// show in the other's count: they take turns.
    static OPEN_UPLOADS_COUNTED: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    /// A dump that fails after several parts went up: the upload is aborted and
    /// nothing of it remains (no object, no open multipart upload).
    #[tokio::test]
    async fn a_failed_dump_leaves_nothing_in_the_bucket() {
        let _turn = OPEN_UPLOADS_COUNTED.lock().await;
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

    /// A dump that stops producing (a custom image that never exits) fails at
    /// the time limit, naming it, and leaves nothing in the bucket.
    #[tokio::test]
    async fn a_dump_that_never_ends_fails_at_the_limit_and_leaves_nothing() {
        let _turn = OPEN_UPLOADS_COUNTED.lock().await;
        let s3 = TestS3::new().await;
        let before = s3.pending_uploads();
        let bucket = s3.target("").bucket().unwrap();
        let key = "svc/20260101T000000.000Z.pgdump.gz";
        let (mut writer, reader) = tokio::io::duplex(PIPE);
        let produce = bounded_for(1, "the backup", async move {
            writer
                .write_all(b"a few bytes, then nothing")
                .await
                .map_err(|e| e.to_string())?;
            std::future::pending::<()>().await;
            Ok(())
        });
        let e = pump(&bucket, key, &AtomicU64::new(0), &|_| {}, reader, produce)
            .await
            .unwrap_err();
        assert_eq!(
            e,
            "the backup was still running after 1 s (BERTH_BACKUP_TIMEOUT_SECS) and was stopped"
        );
        assert!(s3.keys().await.is_empty());
        assert_eq!(s3.pending_uploads(), before);
    }
}
