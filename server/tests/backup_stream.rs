//! A ~200 MB PostgreSQL dump through the real `berth worker` binary:
//! - `kill -9` of the worker mid-upload: the next worker fails the backup as
//!   interrupted and aborts its multipart upload; nothing is left in the bucket;
//! - a full backup streams while the worker's peak RSS (VmHWM) stays bounded:
//!   the dump never sits in memory. The figure goes to docs/BENCHMARKS.md.

use engine::backups::{self, Subject};
use engine::services::{self, NewService};
use engine::testing::{owner_with_environment, DeployEnv, TestS3};
use lifecycle::JobStatus;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_berth");
/// The bound on the worker's peak memory while it streams the dump. The dump is
/// ~200 MB; the pipeline holds one 8 MiB part (plus what the HTTP client copies).
const RSS_BOUND_MIB: u64 = 128;

fn spawn_worker(env: &DeployEnv) -> engine::testing::KillOnDrop {
    let mut cmd = Command::new(BIN);
    cmd.arg("worker")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in env.berth_env() {
        cmd.env(k, v);
    }
    engine::testing::KillOnDrop(cmd.spawn().expect("spawn berth worker"))
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

async fn backup(
    engine: &engine::Engine,
    caller: &engine::accounts::Caller,
    id: engine::ids::BackupId,
) -> backups::Backup {
    backups::backup_status(engine, caller, id).await.expect("backup")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mb_dump_streams_in_bounded_memory_and_survives_kill_9() {
    let env = DeployEnv::new().await;
    let e = env.engine().clone();
    let (caller, env_id) = owner_with_environment(&e).await;
    let new = NewService::parse(&e, env_id, "big-db", "postgres", "", "", "", "", "", None).unwrap();
    let svc = services::create(&e, &caller, new).await.unwrap();
    let start = Instant::now();
    loop {
        if services::get(&e, &caller, svc).await.unwrap().ready == Some(true) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the service never became ready"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let table_bytes = engine::testing::seed_blobs(&e, &caller, svc).await;
    assert!(table_bytes > 190_000_000, "{table_bytes}");

    let s3 = TestS3::new().await;
    let dest = s3.destination(&e, &caller, "").await;
    let uploads_before = s3.pending_uploads();

    // 1. kill -9 in the middle of the upload.
    let mut first = spawn_worker(&env);
    let b1 = backups::backup_now(&e, &caller, Subject::Service(svc), dest)
        .await
        .unwrap();
    let start = Instant::now();
    loop {
        let b = backup(&e, &caller, b1).await;
        assert_ne!(
            b.status,
            JobStatus::Succeeded,
            "the backup finished before it could be interrupted"
        );
        assert_ne!(b.status, JobStatus::Failed, "{:?}", b.error);
        // Two parts (16 MiB compressed) are up: the multipart upload is open.
        if b.status == JobStatus::Running && b.size_bytes > 16 * 1024 * 1024 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(180), "the backup never got going");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    first.kill().expect("kill -9");
    first.wait().unwrap();
    assert!(
        s3.pending_uploads() > uploads_before,
        "an upload was left open by the killed worker"
    );

    // 2. The next worker fails it as interrupted and aborts the upload.
    let mut second = spawn_worker(&env);
    let start = Instant::now();
    let interrupted = loop {
        let b = backup(&e, &caller, b1).await;
        if b.status == JobStatus::Failed {
            break b;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "not reaped: {}", b.status);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        interrupted.error.as_deref().unwrap().contains("interrupted"),
        "{:?}",
        interrupted.error
    );
    assert!(s3.keys().await.is_empty(), "no object from the killed backup");
    // The reaper fails the row first, then aborts the upload: wait for it, bounded.
    let start = Instant::now();
    while s3.pending_uploads() != uploads_before {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "its multipart upload was aborted: {} open, {uploads_before} before",
            s3.pending_uploads()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // 3. A whole backup, with the worker's peak memory measured.
    let b2 = backups::backup_now(&e, &caller, Subject::Service(svc), dest)
        .await
        .unwrap();
    let start = Instant::now();
    let done = loop {
        let b = backup(&e, &caller, b2).await;
        if b.status == JobStatus::Succeeded || b.status == JobStatus::Failed {
            break b;
        }
        assert!(start.elapsed() < Duration::from_secs(600), "the backup did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let took = start.elapsed();
    assert_eq!(done.status, JobStatus::Succeeded, "{:?}", done.error);
    let hwm_mib = vm_hwm_kib(second.id()) / 1024;
    println!(
        "backup of a {} MB table: {} MB object in {:.1} s; worker peak RSS {hwm_mib} MiB",
        table_bytes / 1_000_000,
        done.size_bytes / 1_000_000,
        took.as_secs_f64()
    );
    second.kill().unwrap();
    second.wait().unwrap();
    assert!(
        done.size_bytes > 100_000_000,
        "a big object went up: {}",
        done.size_bytes
    );
    assert_eq!(s3.keys().await, vec![done.object_key.clone().unwrap()]);
    assert!(
        hwm_mib < RSS_BOUND_MIB,
        "the worker's peak RSS was {hwm_mib} MiB streaming a {} MB dump (bound {RSS_BOUND_MIB} MiB)",
        table_bytes / 1_000_000
    );
}

/// The documented restore of Berth's own database (docs/OPERATIONS.md), run as
/// written: `berth admin restore-database` into an empty database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn berths_own_database_is_restored_by_the_cli() {
    use diesel::sql_types::BigInt;
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let env = DeployEnv::new().await;
    let e = env.engine().clone();
    let (caller, _) = owner_with_environment(&e).await;
    let s3 = TestS3::new().await;
    let dest = s3.destination(&e, &caller, "instance").await;
    let (stop, worker) = engine::testing::start_backup_worker(&e);
    let b = backups::backup_now(&e, &caller, Subject::Own, dest).await.unwrap();
    let start = Instant::now();
    let done = loop {
        let b = backup(&e, &caller, b).await;
        if b.status == JobStatus::Succeeded || b.status == JobStatus::Failed {
            break b;
        }
        assert!(start.elapsed() < Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    stop.cancel();
    let _ = worker.await;
    assert_eq!(done.status, JobStatus::Succeeded, "{:?}", done.error);

    let fresh = engine::testing::TestDb::empty().await;
    let out = Command::new(BIN)
        .args([
            "admin",
            "restore-database",
            "--endpoint",
            &s3.url,
            "--bucket",
            &s3.bucket,
            "--key",
            done.object_key.as_deref().unwrap(),
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("DATABASE_URL", &fresh.url)
        .env("S3_ACCESS_KEY", &s3.access_key)
        .env("S3_SECRET_KEY", &s3.secret_key)
        .output()
        .expect("run berth admin restore-database");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Restored"));
    let mut restored = AsyncPgConnection::establish(&fresh.url).await.unwrap();
    let mut original = e.db.get().await.unwrap();
    for table in [
        "users",
        "organizations",
        "memberships",
        "projects",
        "s3_destinations",
        "backups",
    ] {
        let q = format!("SELECT count(*) AS n FROM {table}");
        let a = diesel::sql_query(&q)
            .get_result::<Count>(&mut original)
            .await
            .unwrap()
            .n;
        let r = diesel::sql_query(&q)
            .get_result::<Count>(&mut restored)
            .await
            .unwrap()
            .n;
        assert!(a > 0, "{table} has rows");
        assert_eq!(a, r, "{table}");
    }
    // Berth starts on the restored database: its migrations are all there.
    let status = Command::new(BIN)
        .arg("migrate")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("DATABASE_URL", &fresh.url)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Every table's rows as a checksum per table, and the tables' names.
async fn table_sums(e: &engine::Engine) -> String {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Sums {
        #[diesel(sql_type = diesel::sql_types::Text)]
        sums: String,
    }
    let mut conn = e.db.get().await.unwrap();
    let row: Sums = diesel::sql_query(
        "SELECT string_agg(c.relname || ' ' || (xpath('/row/s/text()', query_to_xml(format(
           'SELECT md5(coalesce(string_agg(t::text, ''|'' ORDER BY t::text), '''')) AS s FROM public.%I t',
           c.relname), false, true, '')))[1]::text, E'\\n' ORDER BY c.relname) AS sums
         FROM pg_class c WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    row.sums
}

/// What `berth upgrade` runs in the installed Berth: `admin backup-database
/// --file` writes a 0600 dump and, with an own-database schedule, a copy to
/// S3 through the worker; `admin restore-database --file` puts back every
/// table as it was and removes what was added since (a failed upgrade's
/// half-applied migration), with the schema fingerprint as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upgrade_backup_goes_to_a_file_and_s3_and_the_file_restores_every_table() {
    use diesel_async::RunQueryDsl;
    let env = DeployEnv::new().await;
    let e = env.engine().clone();
    let (caller, _) = owner_with_environment(&e).await;
    let s3 = TestS3::new().await;
    let dest = s3.destination(&e, &caller, "instance").await;
    backups::create_schedule(
        &e,
        &caller,
        Subject::Own,
        backups::NewSchedule::parse(dest, "0 3 * * *", "UTC", "3", false).unwrap(),
    )
    .await
    .unwrap();
    let (stop, worker) = engine::testing::start_backup_worker(&e);
    let dir = std::env::temp_dir().join(format!("berth-own-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("before.pgdump");
    let file_s = file.display().to_string();
    let berth = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .env("RUST_LOG", "warn")
            .envs(env.berth_env())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let state = || async {
        let (ok, out) = berth(&["admin", "schema-state"]);
        assert!(ok, "{out}");
        out.trim().to_owned()
    };
    let schema = state().await;
    let sums = table_sums(&e).await;

    let (ok, out) = berth(&["admin", "backup-database", "--file", &file_s]);
    stop.cancel();
    let _ = worker.await;
    assert!(ok, "{out}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let keys = s3.keys().await;
    assert_eq!(keys.len(), 1, "{out}");
    assert!(out.contains(&format!("and to S3: {}", keys[0])), "{out}");
    // Never over an existing file.
    let (ok, out) = berth(&["admin", "backup-database", "--file", &file_s]);
    assert!(!ok && out.contains("creating"), "{out}");

    // What a half-done upgrade leaves: a table, a migration row, a changed row.
    let mut conn = e.db.get().await.unwrap();
    for sql in [
        "CREATE TABLE upgrade_half (id int)",
        "INSERT INTO __diesel_schema_migrations (version) VALUES ('29990101000001')",
        "UPDATE projects SET description = 'changed'",
    ] {
        diesel::sql_query(sql).execute(&mut conn).await.unwrap();
    }
    drop(conn);
    assert_ne!(state().await, schema);
    assert_ne!(table_sums(&e).await, sums);

    let (ok, out) = berth(&["admin", "restore-database", "--file", &file_s]);
    assert!(ok, "{out}");
    assert_eq!(state().await, schema);
    assert_eq!(table_sums(&e).await, sums);
    // The engine's pooled connections go on working.
    assert_eq!(engine::projects::list(&e, &caller).await.unwrap().len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}
