//! Database services and their backups against real parts: Docker running
//! PostgreSQL, Redis and MariaDB images built from the host's Debian binaries, an
//! S3-compatible server (s3s-fs) on loopback, PostgreSQL and Redis for Berth.

use diesel::sql_types::Text;
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use engine::accounts::Caller;
use engine::backups::{self, kinds, schedule, NewSchedule, RestoreInto, Subject};
use engine::ids::DestinationId;
use engine::ids::{BackupId, EnvironmentId, RestoreId, ServiceId};
use engine::services::{self, NewService};
use engine::testing::{eventually, free_port, owner_with_environment, start_backup_worker, DeployEnv, TestS3};
use engine::Engine;
use lifecycle::{BackupTrigger, DrillStatus, JobStatus, ServiceState};

async fn create(
    engine: &Engine,
    caller: &Caller,
    env: EnvironmentId,
    name: &str,
    kind: &str,
    port: Option<u16>,
) -> ServiceId {
    let port = port.map(|p| p.to_string());
    let new = NewService::parse(
        engine,
        env,
        name,
        kind,
        "",
        "",
        "",
        "",
        "",
        port.as_deref().map(|p| ("127.0.0.1", p)),
    )
    .expect("valid service");
    services::create(engine, caller, new).await.expect("create service")
}

async fn wait_ready(engine: &Engine, caller: &Caller, id: ServiceId) {
    eventually(120, "the service to be ready", || async {
        let d = services::get(engine, caller, id).await.expect("get service");
        assert_ne!(d.state, ServiceState::Failed, "service failed: {:?}", d.row.last_error);
        (d.ready == Some(true)).then_some(())
    })
    .await
}

async fn wait_backup(engine: &Engine, caller: &Caller, id: BackupId) -> backups::Backup {
    eventually(180, "the backup to finish", || async {
        let b = backups::backup_status(engine, caller, id).await.expect("backup");
        (!b.status.in_progress()).then_some(b)
    })
    .await
}

async fn wait_restore(engine: &Engine, caller: &Caller, id: RestoreId) -> backups::Restore {
    eventually(180, "the restore to finish", || async {
        let r = backups::restore_status(engine, caller, id).await.expect("restore");
        (!r.status.in_progress()).then_some(r)
    })
    .await
}

async fn wait_drill(engine: &Engine, caller: &Caller, id: BackupId) -> (DrillStatus, String) {
    eventually(180, "the drill to finish", || async {
        let b = backups::backup_status(engine, caller, id).await.expect("backup");
        match b.drill_status {
            Some(s) if !s.in_progress() => Some((s, b.drill_detail.unwrap_or_default())),
            _ => None,
        }
    })
    .await
}

#[derive(QueryableByName)]
struct Sum {
    #[diesel(sql_type = Text)]
    sum: String,
}

async fn checksum(conn: &mut AsyncPgConnection) -> String {
    diesel::sql_query("SELECT md5(string_agg(t::text, ',' ORDER BY id)) AS sum FROM items t")
        .get_result::<Sum>(conn)
        .await
        .expect("checksum")
        .sum
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_backup_restore_drill_and_link_round_trip() {
    let env = DeployEnv::new().await;
    let engine = env.engine();
    let (caller, env_id) = owner_with_environment(engine).await;
    let port = free_port();
    let svc = create(engine, &caller, env_id, "orders-db", "postgres", Some(port)).await;
    wait_ready(engine, &caller, svc).await;

    // Rows written through the published port.
    let secrets = services::reveal(engine, &caller, svc).await.expect("reveal");
    let url = secrets.external_url.clone().expect("exposed");
    assert_eq!(url, format!("postgres://app:{}@127.0.0.1:{port}/app", secrets.password));
    let detail = services::get(engine, &caller, svc).await.unwrap();
    assert!(!detail.internal_url_masked.contains(&secrets.password), "masked");
    assert_eq!(detail.internal_url_masked, "postgres://app:********@orders-db:5432/app");
    let mut conn = AsyncPgConnection::establish(&url)
        .await
        .expect("connect through the port");
    diesel::sql_query("CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL, qty int NOT NULL)")
        .execute(&mut conn)
        .await
        .unwrap();
    diesel::sql_query("INSERT INTO items (name, qty) SELECT 'item ' || g || ' ' || md5(g::text), g % 17 FROM generate_series(1, 1500) g")
        .execute(&mut conn)
        .await
        .unwrap();
    let before = checksum(&mut conn).await;

    let s3 = TestS3::new().await;
    let dest = s3.destination(engine, &caller, "prod/db").await;
    backups::test_destination(engine, &caller, dest)
        .await
        .expect("the bucket works");
    let (stop, worker) = start_backup_worker(engine);

    let backup = backups::backup_now(engine, &caller, Subject::Service(svc), dest)
        .await
        .unwrap();
    let b = wait_backup(engine, &caller, backup).await;
    assert_eq!(b.status, JobStatus::Succeeded, "{:?}", b.error);
    let key = b.object_key.clone().unwrap();
    assert!(
        key.starts_with("prod/db/orders-db/") && key.ends_with(".pgdump.gz"),
        "{key}"
    );
    assert_eq!(s3.keys().await, vec![key.clone()]);
    assert!(b.size_bytes > 1000, "size recorded: {}", b.size_bytes);
    assert_eq!(s3.get(&key).await.len() as i64, b.size_bytes);

    // Lose the table, restore, and get the same rows back.
    diesel::sql_query("DROP TABLE items").execute(&mut conn).await.unwrap();
    drop(conn);
    let (restore, target) = backups::restore(engine, &caller, backup, RestoreInto::Existing(svc))
        .await
        .unwrap();
    assert_eq!(target, svc);
    let r = wait_restore(engine, &caller, restore).await;
    assert_eq!(r.status, JobStatus::Succeeded, "{:?}", r.error);
    assert!(r.bytes > 0, "progress recorded");
    let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
    assert_eq!(checksum(&mut conn).await, before, "identical rows after the restore");

    // The drill restores into a throwaway container and counts rows.
    backups::drill(engine, &caller, backup).await.unwrap();
    let (status, detail) = wait_drill(engine, &caller, backup).await;
    assert_eq!(status, DrillStatus::Verified, "{detail}");
    assert!(detail.contains("public.items 1500"), "{detail}");

    // A corrupted object in the bucket fails its drill, and says why.
    let bad_key = "prod/db/orders-db/20260101T000000.000Z.pgdump.gz".to_owned();
    let mut corrupt = s3.get(&key).await;
    let mid = corrupt.len() / 2;
    for b in &mut corrupt[mid..mid + 64] {
        *b ^= 0x5a;
    }
    s3.put(&bad_key, &corrupt).await;
    let listed = backups::bucket_objects(engine, &caller, Subject::Service(svc), dest)
        .await
        .unwrap();
    assert!(listed.iter().any(|o| o.key == bad_key), "listed from the bucket");
    let imported = backups::import_object(engine, &caller, Subject::Service(svc), dest, &bad_key)
        .await
        .unwrap();
    backups::drill(engine, &caller, imported).await.unwrap();
    let (status, detail) = wait_drill(engine, &caller, imported).await;
    assert_eq!(status, DrillStatus::Failed, "{detail}");
    assert!(
        detail.contains("cannot be read") || detail.contains("restore failed"),
        "{detail}"
    );
    // Each end is the worker's row in the audit log, written with its move.
    {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Text)]
            action: String,
            #[diesel(sql_type = diesel::sql_types::Text)]
            result: String,
        }
        let mut conn = engine.db.get().await.unwrap();
        let rows: Vec<Row> = diesel::sql_query(
            "SELECT action, result FROM audit_log WHERE actor_kind = 'worker' AND target_id = ANY($1) ORDER BY at",
        )
        .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(vec![backup.0, restore.0, imported.0])
        .load(&mut conn)
        .await
        .unwrap();
        let rows: Vec<(String, String)> = rows.into_iter().map(|r| (r.action, r.result)).collect();
        for want in [
            ("backup succeeded", "ok"),
            ("restore succeeded", "ok"),
            ("drill verified", "ok"),
            ("drill failed", "failed"),
        ] {
            assert!(
                rows.contains(&(want.0.to_owned(), want.1.to_owned())),
                "{want:?} in {rows:?}"
            );
        }
    }

    // Restore into a new service of the same engine.
    let new = NewService::parse(engine, env_id, "orders-copy", "postgres", "", "", "", "", "", None).unwrap();
    let (restore, copy) = backups::restore(engine, &caller, backup, RestoreInto::New(new))
        .await
        .unwrap();
    let r = wait_restore(engine, &caller, restore).await;
    assert_eq!(r.status, JobStatus::Succeeded, "{:?}", r.error);
    let copy_detail = services::get(engine, &caller, copy).await.unwrap();
    assert_eq!(copy_detail.row.name, "orders-copy");

    // "Link to app" puts the internal connection string in the app's environment.
    let app = engine::apps::create(
        engine,
        &caller,
        engine::apps::NewApp {
            name: engine::apps::spec::AppName::parse("shop").unwrap(),
            description: Default::default(),
            environment: env_id,
            source: engine::testing::image_source(engine::testing::TEST_BASE_IMAGE),
            source_secret: None,
            build: Default::default(),
            runtime: Default::default(),
        },
    )
    .await
    .unwrap();
    services::link(engine, &caller, svc, app, "DATABASE_URL").await.unwrap();
    let vars = engine::apps::env_values(engine, &caller, app).await.unwrap();
    assert_eq!(vars, vec![("DATABASE_URL".to_owned(), secrets.internal_url.clone())]);
    assert_eq!(
        services::link(engine, &caller, svc, app, "BAD NAME")
            .await
            .unwrap_err()
            .to_string(),
        engine::apps::spec::parse_env_name("BAD NAME").unwrap_err().to_string()
    );

    stop.cancel();
    let _ = worker.await;
}

/// Both persistence modes: AOF (the default for new services: Redis then
/// loads only its append-only directory at start, so a restored RDB file must
/// become that directory's base) and RDB snapshots only. Each restore is
/// checked again after a restart, which reads what is on the volume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_backup_restore_and_drill_keep_every_key_with_and_without_aof() {
    let env = DeployEnv::new().await;
    let engine = env.engine();
    let (caller, env_id) = owner_with_environment(engine).await;
    let s3 = TestS3::new().await;
    let dest = s3.destination(engine, &caller, "").await;
    let (stop, worker) = start_backup_worker(engine);
    for (name, persistence) in [("cache-aof", ""), ("cache-rdb", "rdb")] {
        redis_round_trip(engine, &caller, env_id, dest, name, persistence).await;
    }
    stop.cancel();
    let _ = worker.await;
}

async fn redis_round_trip(
    engine: &Engine,
    caller: &Caller,
    env_id: EnvironmentId,
    dest: DestinationId,
    name: &str,
    persistence: &str,
) {
    let aof = persistence != "rdb";
    let port = free_port();
    let new = NewService::parse(
        engine,
        env_id,
        name,
        "redis",
        "",
        "",
        "",
        "",
        "",
        Some(("127.0.0.1", &port.to_string())),
    )
    .and_then(|n| n.with_persistence(persistence))
    .unwrap();
    let svc = services::create(engine, caller, new).await.unwrap();
    wait_ready(engine, caller, svc).await;
    let detail = services::get(engine, caller, svc).await.unwrap();
    assert_eq!(detail.row.redis_aof, aof);
    // The password is in the configuration file on the volume: not in the
    // container's environment or command line.
    let secrets = services::reveal(engine, caller, svc).await.unwrap();
    let container = engine::services::container::container_name(engine, detail.row.id, name, false);
    let inspected = docker_inspect(
        engine,
        &container,
        "{{json .Config.Cmd}} {{json .Config.Env}} {{json .Args}}",
    );
    assert!(!inspected.contains(&secrets.password), "{name}: {inspected}");
    let conf = exec_out(engine, &container, &["cat", "/data/berth-redis.conf"]).await;
    assert!(
        conf.contains(&format!("appendonly {}", if aof { "yes" } else { "no" })),
        "{conf}"
    );
    let listing = exec_out(engine, &container, &["ls", "-ln", "/data"]).await;
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("-rw-------") && l.contains(" 999 ") && l.ends_with("berth-redis.conf")),
        "{listing}"
    );
    assert_eq!(listing.contains("appendonlydir"), aof, "{listing}");

    let url = secrets.external_url.unwrap();
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to the service");
    for i in 0..500 {
        let _: () = redis::cmd("SET")
            .arg(format!("key:{i}"))
            .arg(format!("value {i}"))
            .query_async(&mut c)
            .await
            .unwrap();
    }
    let backup = backups::backup_now(engine, caller, Subject::Service(svc), dest)
        .await
        .unwrap();
    let b = wait_backup(engine, caller, backup).await;
    assert_eq!(b.status, JobStatus::Succeeded, "{name}: {:?}", b.error);
    let key = b.object_key.as_deref().unwrap();
    assert!(
        key.starts_with(&format!("{name}/")) && key.ends_with(".rdb.gz"),
        "{key}"
    );

    let _: () = redis::cmd("FLUSHALL").query_async(&mut c).await.unwrap();
    let _: () = redis::cmd("SET")
        .arg("written-after")
        .arg("x")
        .query_async(&mut c)
        .await
        .unwrap();
    drop(c);
    let (restore, _) = backups::restore(engine, caller, backup, RestoreInto::Existing(svc))
        .await
        .unwrap();
    let r = wait_restore(engine, caller, restore).await;
    assert_eq!(r.status, JobStatus::Succeeded, "{name}: {:?}", r.error);
    let check = |when: &'static str| {
        let client = client.clone();
        async move {
            let mut c = client.get_multiplexed_async_connection().await.unwrap();
            let n: i64 = redis::cmd("DBSIZE").query_async(&mut c).await.unwrap();
            assert_eq!(n, 500, "{name} {when}: exactly the backed-up keys");
            let v: String = redis::cmd("GET").arg("key:321").query_async(&mut c).await.unwrap();
            assert_eq!(v, "value 321");
        }
    };
    check("after the restore").await;
    if aof {
        let dir = exec_out(
            engine,
            &container,
            &["cat", "/data/appendonlydir/appendonly.aof.manifest"],
        )
        .await;
        assert!(dir.contains("appendonly.aof.1.base.rdb seq 1 type b"), "{dir}");
    }
    // What the server reads at start is the restored data, and stays so.
    services::act(engine, caller, svc, services::Action::Restart)
        .await
        .unwrap();
    wait_ready(engine, caller, svc).await;
    check("after a restart").await;

    backups::drill(engine, caller, backup).await.unwrap();
    let (status, detail) = wait_drill(engine, caller, backup).await;
    assert_eq!(status, DrillStatus::Verified, "{detail}");
    assert!(detail.contains("500 keys"), "{detail}");
}

/// Standard output of `argv` run in the container.
async fn exec_out(engine: &Engine, container: &str, argv: &[&str]) -> String {
    let exec = engine::docker::Exec {
        argv: argv.iter().map(|s| (*s).to_owned()).collect(),
        env: Vec::new(),
    };
    let out = engine::docker::exec_capture(&*engine.docker, container, &exec, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(out.exit_code, 0, "{argv:?}: {}", out.said());
    out.stdout
}

/// What `docker inspect` shows anyone with access to the Docker API.
fn docker_inspect(engine: &Engine, container: &str, format: &str) -> String {
    let out = std::process::Command::new("docker")
        .env("DOCKER_HOST", engine.docker.host())
        .args(["inspect", "--format", format, container])
        .output()
        .expect("docker CLI");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A Redis service whose container was made before the password moved into a
/// file (`redis-server --requirepass …`) is made again by the reconciler, once,
/// without the password on its command line, keeping its data; the history
/// says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_container_with_its_password_on_the_command_line_is_made_again_without_it() {
    let env = DeployEnv::new().await;
    let engine = env.engine();
    let (caller, env_id) = owner_with_environment(engine).await;
    let new = NewService::parse(engine, env_id, "oldcache", "redis", "", "", "", "", "", None).unwrap();
    let svc = services::create(engine, &caller, new).await.unwrap();
    wait_ready(engine, &caller, svc).await;
    let password = services::reveal(engine, &caller, svc).await.unwrap().password;
    let detail = services::get(engine, &caller, svc).await.unwrap();
    let container = engine::services::container::container_name(engine, detail.row.id, "oldcache", false);
    exec_out(
        engine,
        &container,
        &["redis-cli", "-a", &password, "--no-auth-warning", "SET", "kept", "yes"],
    )
    .await;
    exec_out(
        engine,
        &container,
        &["redis-cli", "-a", &password, "--no-auth-warning", "SAVE"],
    )
    .await;

    // The container as Berth made it before: the password among the arguments.
    let mut old = engine::testing::service_container_spec(engine, svc).await;
    old.cmd = Some(
        [
            "redis-server",
            "--requirepass",
            password.as_str(),
            "--appendonly",
            "yes",
            "--dir",
            "/data",
        ]
        .map(String::from)
        .to_vec(),
    );
    old.files.clear();
    engine.docker.remove_container(&container, false).await.unwrap();
    engine.docker.create_container(&old).await.unwrap();
    engine.docker.start_container(&container).await.unwrap();
    assert!(docker_inspect(engine, &container, "{{json .Config.Cmd}}").contains(&password));

    let stop = tokio_util::sync::CancellationToken::new();
    let reconciler = tokio::spawn(engine::reconcile::run(engine.clone(), stop.clone()));
    eventually(90, "the container made again without the password", || async {
        let info = engine.docker.inspect_container(&container).await.ok()??;
        (info.state.is_up() && !engine::services::container::password_on_command_line(&info)).then_some(())
    })
    .await;
    let inspected = docker_inspect(
        engine,
        &container,
        "{{json .Config.Cmd}} {{json .Config.Env}} {{json .Args}}",
    );
    assert!(!inspected.contains(&password), "{inspected}");
    wait_ready(engine, &caller, svc).await;
    let got = exec_out(
        engine,
        &container,
        &["redis-cli", "-a", &password, "--no-auth-warning", "GET", "kept"],
    )
    .await;
    assert_eq!(got.trim(), "yes", "the data volume is kept");
    let (_, history) = engine::reconcile::of(engine, caller.org_id, None, Some(svc.0))
        .await
        .unwrap();
    let repair = history
        .iter()
        .find(|r| r.problem.contains("command line"))
        .expect("the repair is in the service's history");
    assert!(repair.action.contains("0600 file"), "{}", repair.action);
    assert!(!repair.problem.contains(&password) && !repair.action.contains(&password));
    // Once: the next passes leave the new container alone.
    let id_now = engine.docker.inspect_container(&container).await.unwrap().unwrap().id;
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    assert_eq!(
        engine.docker.inspect_container(&container).await.unwrap().unwrap().id,
        id_now
    );
    stop.cancel();
    reconciler.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_backups_name_their_cause_and_leave_no_object() {
    let env = DeployEnv::new().await;
    let engine = env.engine();
    let (caller, env_id) = owner_with_environment(engine).await;
    let svc = create(engine, &caller, env_id, "billing-db", "postgres", Some(free_port())).await;
    wait_ready(engine, &caller, svc).await;
    let s3 = TestS3::new().await;
    let uploads_before = s3.pending_uploads();
    let (stop, worker) = start_backup_worker(engine);
    // The team hears of each failure, with its cause.
    let hook = engine::testing::receiver::Receiver::start(vec![]).await;
    let channel = engine::notify::NewChannel::parse(
        &engine::notify::ChannelForm {
            name: "ops".into(),
            kind: "discord".into(),
            url: hook.url.clone(),
            events: vec!["backup_failed".into()],
            ..Default::default()
        },
        engine::outbound::Policy::of(engine),
    )
    .unwrap();
    engine::notify::add_channel(engine, &caller, channel).await.unwrap();

    // Wrong secret key: S3 refuses the signature.
    let wrong = backups::NewDestination::parse(
        "wrong",
        &s3.url,
        "",
        &s3.bucket,
        "",
        &s3.access_key,
        "not-the-secret",
        true,
    )
    .unwrap();
    let wrong = backups::create_destination(engine, &caller, wrong).await.unwrap();
    let e = backups::test_destination(engine, &caller, wrong)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("SignatureDoesNotMatch") || e.contains("AccessDenied") || e.contains("InvalidAccessKeyId"),
        "{e}"
    );
    let b = backups::backup_now(engine, &caller, Subject::Service(svc), wrong)
        .await
        .unwrap();
    let b = wait_backup(engine, &caller, b).await;
    assert_eq!(b.status, JobStatus::Failed);
    let err = b.error.unwrap();
    assert!(err.contains("S3 answered HTTP 403"), "{err}");
    let told = hook.wait_for(1, std::time::Duration::from_secs(30)).await;
    let embed = &told[0].json()["embeds"][0];
    assert_eq!(embed["title"], "Backup of billing-db failed");
    assert!(
        embed["description"].as_str().unwrap().contains("S3 answered HTTP 403"),
        "{embed}"
    );

    // A bucket that does not exist.
    let missing = backups::NewDestination::parse(
        "missing",
        &s3.url,
        "",
        "no-such-bucket-here",
        "",
        &s3.access_key,
        &s3.secret_key,
        true,
    )
    .unwrap();
    let missing = backups::create_destination(engine, &caller, missing).await.unwrap();
    let e = backups::test_destination(engine, &caller, missing)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("NoSuchBucket"), "{e}");
    let b = backups::backup_now(engine, &caller, Subject::Service(svc), missing)
        .await
        .unwrap();
    let b = wait_backup(engine, &caller, b).await;
    assert_eq!(b.status, JobStatus::Failed);
    assert!(b.error.as_deref().unwrap().contains("NoSuchBucket"), "{:?}", b.error);

    // A stopped database.
    let good = s3.destination(engine, &caller, "").await;
    services::act(engine, &caller, svc, services::Action::Stop)
        .await
        .unwrap();
    let b = backups::backup_now(engine, &caller, Subject::Service(svc), good)
        .await
        .unwrap();
    let b = wait_backup(engine, &caller, b).await;
    assert_eq!(b.status, JobStatus::Failed);
    assert!(b.error.as_deref().unwrap().contains("is not running"), "{:?}", b.error);
    assert_eq!(
        services::get(engine, &caller, svc).await.unwrap().state,
        ServiceState::Stopped
    );

    // A dump that fails inside the container (its database is gone): the error
    // carries pg_dump's own words, and nothing reaches the bucket.
    services::act(engine, &caller, svc, services::Action::Start)
        .await
        .unwrap();
    wait_ready(engine, &caller, svc).await;
    let url = services::reveal(engine, &caller, svc)
        .await
        .unwrap()
        .external_url
        .unwrap();
    let mut conn = AsyncPgConnection::establish(&format!("{}/postgres", url.rsplit_once('/').unwrap().0))
        .await
        .unwrap();
    diesel::sql_query("ALTER DATABASE app RENAME TO app_moved")
        .execute(&mut conn)
        .await
        .unwrap();
    let b = backups::backup_now(engine, &caller, Subject::Service(svc), good)
        .await
        .unwrap();
    let b = wait_backup(engine, &caller, b).await;
    assert_eq!(b.status, JobStatus::Failed);
    let err = b.error.unwrap();
    assert!(
        err.contains("pg_dump exited with code 1") && err.contains("does not exist"),
        "{err}"
    );
    assert!(s3.keys().await.is_empty(), "no object left: {:?}", s3.keys().await);
    assert_eq!(s3.pending_uploads(), uploads_before, "no multipart upload left");
    stop.cancel();
    let _ = worker.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_the_newest_and_slots_run_once() {
    let env = DeployEnv::new().await;
    let engine = env.engine();
    let (caller, env_id) = owner_with_environment(engine).await;
    let svc = create(engine, &caller, env_id, "ledger", "redis", None).await;
    wait_ready(engine, &caller, svc).await;
    let s3 = TestS3::new().await;
    let dest = s3.destination(engine, &caller, "keep").await;
    let sched = backups::create_schedule(
        engine,
        &caller,
        Subject::Service(svc),
        NewSchedule::parse(dest, "0 3 * * *", "Europe/Paris", "2", false).unwrap(),
    )
    .await
    .unwrap();
    let (stop, worker) = start_backup_worker(engine);
    let mut made = Vec::new();
    for _ in 0..4 {
        let b = backups::run_schedule_now(engine, &caller, sched).await.unwrap();
        let b = wait_backup(engine, &caller, b).await;
        assert_eq!(b.status, JobStatus::Succeeded, "{:?}", b.error);
        made.push(b);
    }
    // Retention ran after each: exactly the two newest remain, the two oldest are gone.
    // It runs once a backup's success is recorded (and seen here), so the last
    // one's may still be deleting or marking: wait for it, within bounds.
    let mut newest: Vec<String> = made[2..].iter().map(|b| b.object_key.clone().unwrap()).collect();
    newest.sort();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (keys, history, pruned) = loop {
        let keys = s3.keys().await;
        let history = backups::history(engine, &caller, Subject::Service(svc)).await.unwrap();
        let pruned: Vec<_> = history
            .backups
            .iter()
            .filter(|b| b.pruned_at.is_some())
            .map(|b| b.id)
            .collect();
        if (keys == newest && pruned.len() == 2) || std::time::Instant::now() > deadline {
            break (keys, history, pruned);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(keys, newest);
    assert_eq!(pruned.len(), 2);
    assert!(pruned.contains(&made[0].id) && pruned.contains(&made[1].id));
    assert_eq!(history.schedules[0].next_runs.len(), 3);
    stop.cancel();
    let _ = worker.await;

    // A schedule that was due three times while no worker ran: one backup for
    // the newest slot, two reported missed, and never again for the same slot,
    // however many workers tick at once.
    let every_minute = backups::create_schedule(
        engine,
        &caller,
        Subject::Service(svc),
        NewSchedule::parse(dest, "* * * * *", "UTC", "5", true).unwrap(),
    )
    .await
    .unwrap();
    // One clock for both: the slots due are exactly the three minutes after `last`.
    let now = chrono::Utc::now();
    let last = chrono::DurationRound::duration_trunc(now, chrono::Duration::minutes(1)).unwrap()
        - chrono::Duration::minutes(3);
    let mut conn = engine.db.get().await.unwrap();
    diesel::sql_query("UPDATE backup_schedules SET last_slot = $1 WHERE id = $2")
        .bind::<diesel::sql_types::Timestamptz, _>(last)
        .bind::<diesel::sql_types::Uuid, _>(every_minute.0)
        .execute(&mut conn)
        .await
        .unwrap();
    let ticks = futures::future::join_all((0..4).map(|_| schedule::tick(engine, now))).await;
    let queued: usize = ticks.into_iter().map(|t| t.unwrap()).sum();
    assert_eq!(queued, 1, "one backup for the due slot across concurrent ticks");
    assert_eq!(
        schedule::tick(engine, now).await.unwrap(),
        0,
        "a slot taken is never taken again"
    );
    let history = backups::history(engine, &caller, Subject::Service(svc)).await.unwrap();
    let s = history.schedules.iter().find(|s| s.row.id == every_minute.0).unwrap();
    let (_, _, missed) = s.last_taken.expect("slot recorded");
    assert_eq!(missed, 2, "the older slots are reported missed");

    // A worker runs the slot's backup, then the drill this schedule asks for.
    let slot_backup = history
        .backups
        .iter()
        .find(|b| b.schedule_id == Some(every_minute.0) && b.trigger == BackupTrigger::Schedule)
        .expect("the slot's backup is in the history")
        .id;
    let (stop, worker) = start_backup_worker(engine);
    let b = wait_backup(engine, &caller, BackupId(slot_backup)).await;
    assert_eq!(b.status, JobStatus::Succeeded, "{:?}", b.error);
    let (status, detail) = wait_drill(engine, &caller, BackupId(slot_backup)).await;
    assert_eq!(status, DrillStatus::Verified, "{detail}");
    stop.cancel();
    let _ = worker.await;
    assert_eq!(kinds::reap_all(engine).await.unwrap(), 0, "nothing was left running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_organization_sees_nothing() {
    let env = DeployEnv::new().await;
    let engine = env.engine();
    let (caller, env_id) = owner_with_environment(engine).await;
    let s3 = TestS3::new().await;
    let dest = s3.destination(engine, &caller, "").await;
    let svc = create(engine, &caller, env_id, "private-db", "redis", None).await;
    let backup = backups::backup_now(engine, &caller, Subject::Service(svc), dest)
        .await
        .unwrap();

    // Another organization (the same person owns it: roles are no help, only tenancy).
    let eve = engine::testing::in_other_org(engine, &caller).await;
    let nf = |e: &dyn engine::Classify| assert_eq!(e.kind(), engine::ErrorKind::NotFound);
    assert!(backups::list_destinations(engine, &eve).await.unwrap().is_empty());
    nf(&backups::test_destination(engine, &eve, dest).await.unwrap_err());
    nf(&backups::delete_destination(engine, &eve, dest).await.unwrap_err());
    nf(&backups::history(engine, &eve, Subject::Service(svc)).await.unwrap_err());
    nf(&backups::backup_now(engine, &eve, Subject::Service(svc), dest)
        .await
        .unwrap_err());
    nf(&backups::backup_status(engine, &eve, backup).await.unwrap_err());
    nf(&backups::drill(engine, &eve, backup).await.unwrap_err());
    nf(&backups::restore(engine, &eve, backup, RestoreInto::Existing(svc))
        .await
        .unwrap_err());
    nf(&backups::bucket_objects(engine, &eve, Subject::Service(svc), dest)
        .await
        .unwrap_err());
    // Berth's own database: Eve is an instance administrator, but its backups
    // made in the first organization are not listed in hers ...
    assert!(backups::history(engine, &eve, Subject::Own)
        .await
        .unwrap()
        .backups
        .is_empty());
    // ... and to anyone who is not an administrator it does not exist.
    let plain = Caller {
        instance_admin: false,
        ..caller.clone()
    };
    nf(&backups::history(engine, &plain, Subject::Own).await.unwrap_err());
    nf(&backups::backup_now(engine, &plain, Subject::Own, dest)
        .await
        .unwrap_err());
    nf(&backups::backup_now(engine, &eve, Subject::Own, dest).await.unwrap_err());
    nf(&services::get(engine, &eve, svc).await.unwrap_err());
    nf(&services::reveal(engine, &eve, svc).await.unwrap_err());
    nf(&services::act(engine, &eve, svc, services::Action::Stop)
        .await
        .unwrap_err());
    nf(&services::delete(engine, &eve, svc, true).await.unwrap_err());
    // And the owner's things are untouched (and started, so cleanup finds them).
    assert_eq!(backups::list_destinations(engine, &caller).await.unwrap().len(), 1);
    wait_ready(engine, &caller, svc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_keeps_the_volume_unless_asked_and_a_new_service_starts_fresh() {
    let env = DeployEnv::new().await;
    let engine = env.engine();
    let (caller, env_id) = owner_with_environment(engine).await;
    let volumes = || async {
        engine
            .docker
            .list_volumes(&[("berth.instance", Some(engine.deploy.instance.as_str()))])
            .await
            .unwrap()
    };
    let port = free_port();
    let first = create(engine, &caller, env_id, "reborn", "postgres", Some(port)).await;
    wait_ready(engine, &caller, first).await;
    let old_volume = services::get(engine, &caller, first).await.unwrap().row.volume;
    let url = services::reveal(engine, &caller, first)
        .await
        .unwrap()
        .external_url
        .unwrap();
    let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
    diesel::sql_query("CREATE TABLE kept (id int)")
        .execute(&mut conn)
        .await
        .unwrap();
    drop(conn);

    services::delete(engine, &caller, first, false).await.unwrap();
    assert!(
        volumes().await.contains(&old_volume),
        "the data volume is kept by default"
    );

    // The same name again: a new volume, a new password that works, no old data.
    let second = create(engine, &caller, env_id, "reborn", "postgres", Some(port)).await;
    wait_ready(engine, &caller, second).await;
    let new_volume = services::get(engine, &caller, second).await.unwrap().row.volume;
    assert_ne!(new_volume, old_volume);
    let url = services::reveal(engine, &caller, second)
        .await
        .unwrap()
        .external_url
        .unwrap();
    let mut conn = AsyncPgConnection::establish(&url)
        .await
        .expect("the new password works");
    let gone = diesel::sql_query("SELECT count(*) AS n FROM kept")
        .execute(&mut conn)
        .await;
    assert!(gone.is_err(), "a new service does not inherit a kept volume's data");
    drop(conn);

    services::delete(engine, &caller, second, true).await.unwrap();
    assert!(!volumes().await.contains(&new_volume), "removed when asked");
    assert!(volumes().await.contains(&old_volume));
}

/// Feeding standard input: a program that fails early is reported by its exit
/// code, not as an unreadable backup; one that exits 0 without reading it all
/// is not taken for a success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_input_that_the_program_stops_reading_is_never_a_success() {
    use engine::docker::{Exec, StreamError};
    use engine::services::container::start_throwaway;
    let env = DeployEnv::new().await;
    let engine = env.engine();
    let name = format!("{}-stdin-test", engine.deploy.instance);
    start_throwaway(
        engine,
        &name,
        engine::testing::TEST_BASE_IMAGE,
        engine::services::container::Throwaway {
            env: Vec::new(),
            entrypoint: Some(vec!["sleep".into()]),
            cmd: Some(vec!["60".into()]),
            files: Vec::new(),
        },
        uuid::Uuid::new_v4(),
    )
    .await
    .unwrap();
    let run = |argv: &[&str]| Exec {
        argv: argv.iter().map(|s| (*s).to_owned()).collect(),
        env: Vec::new(),
    };
    let big = vec![7u8; 8 << 20];

    let mut input: &[u8] = &big;
    let all = engine
        .docker
        .exec(&name, &run(&["wc", "-c"]), Some(&mut input), None)
        .await
        .unwrap();
    assert_eq!(
        (all.exit_code, all.stdout.trim()),
        (0, "8388608"),
        "every byte arrives, then EOF"
    );
    assert_eq!(all.fed, 8 << 20);

    let mut input: &[u8] = &big;
    let missing = engine
        .docker
        .exec(&name, &run(&["no-such-program"]), Some(&mut input), None)
        .await
        .unwrap();
    assert_eq!(
        missing.exit_code,
        126,
        "a program that never started fails at once: {}",
        missing.said()
    );

    let mut input: &[u8] = &big;
    let failed = engine
        .docker
        .exec(
            &name,
            &run(&["sh", "-c", "echo bad input >&2; exit 3"]),
            Some(&mut input),
            None,
        )
        .await
        .expect("a failing program is an outcome, not an input error");
    assert_eq!(failed.exit_code, 3);
    assert_eq!(failed.said(), "bad input");

    let mut input: &[u8] = &big;
    let quit = engine.docker.exec(&name, &run(&["true"]), Some(&mut input), None).await;
    assert!(
        matches!(quit, Err(StreamError::Input(_))),
        "exit 0 before the end of the input is not a success: {quit:?}"
    );
    engine.docker.remove_container(&name, true).await.unwrap();
}

/// With private targets refused (the production default), a destination on
/// loopback, a metadata address or any numeric spelling of them is a 422 on
/// `endpoint` and nothing is stored; one stored while they were allowed cannot
/// be reached afterwards either (the connection goes through the pinning proxy).
#[tokio::test]
async fn private_s3_endpoints_are_refused_unless_the_instance_allows_them() {
    let t = engine::testing::TestEngine::new().await;
    let mut open = (*t.engine.deploy).clone();
    open.host.allow_private_targets = true;
    let strict = t.engine.clone();
    assert!(!strict.deploy.host.allow_private_targets, "the default refuses");
    let (caller, _) = owner_with_environment(&strict).await;
    let s3 = TestS3::new().await;
    let port = s3.url.rsplit(':').next().unwrap().to_owned();
    for endpoint in [
        s3.url.clone(),
        format!("https://127.0.0.1:{port}"),
        "https://169.254.169.254".into(),
        "https://2130706433".into(),
        "https://localhost".into(),
        "https://[::1]:9000".into(),
    ] {
        let new = backups::NewDestination::parse("evil", &endpoint, "", "bucket", "", "key", "secret", true).unwrap();
        let err = backups::create_destination(&strict, &caller, new).await.unwrap_err();
        assert!(
            matches!(
                engine::Classify::kind(&err),
                engine::ErrorKind::Validation { field: "endpoint", .. }
            ),
            "{endpoint}: {err:?}"
        );
    }
    assert!(backups::list_destinations(&strict, &caller).await.unwrap().is_empty());

    // Allowed (development and tests), the same endpoint works; once the
    // operator turns it off, the stored destination is refused when used.
    let relaxed = strict.clone().with_deploy(open);
    let dest = s3.destination(&relaxed, &caller, "").await;
    backups::test_destination(&relaxed, &caller, dest).await.unwrap();
    let err = backups::test_destination(&strict, &caller, dest).await.unwrap_err();
    assert!(
        matches!(
            engine::Classify::kind(&err),
            engine::ErrorKind::Validation { field: "endpoint", .. }
        ),
        "{err:?}"
    );
    // Even past the form check, a pinned connection to loopback is refused by
    // the proxy (a name that resolved publicly once may not later).
    let mut pinned = s3.target("");
    pinned.endpoint = format!("https://localhost:{port}");
    pinned.pinned = true;
    let refused = backups::s3::preflight(&pinned).await.unwrap_err();
    // "tunnel error": the proxy said no (a direct attempt would fail at TLS).
    assert!(refused.contains("tunnel error"), "{refused}");
}

/// `sql` through the host's `mariadb` client, over TCP to the published port
/// (tab-separated rows, no column names). Fails the test on an error.
fn mariadb_sql(port: u16, user: &str, password: &str, database: &str, sql: &str) -> String {
    let out = std::process::Command::new("mariadb")
        .args([
            "--no-defaults",
            "-h",
            "127.0.0.1",
            "-P",
            &port.to_string(),
            "-u",
            user,
            "-N",
            "-B",
        ])
        .args([database, "-e", sql])
        .env("MYSQL_PWD", password)
        .output()
        .expect("the mariadb client (Debian's mariadb-client)");
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// An md5 over every row in id order: equal only for identical rows.
const MARIADB_CHECKSUM: &str = "SET SESSION group_concat_max_len = 16777216; \
SELECT MD5(GROUP_CONCAT(CONCAT_WS(',', id, name, qty) ORDER BY id SEPARATOR ';')) FROM items";

/// MariaDB through everything Berth does with a database, against a real
/// server (an image of Debian's MariaDB 10.11 with the official image's
/// environment contract): create, readiness, rows through the published port,
/// backup to S3, drop, restore, identical rows, a drill with exact counts,
/// restore into a new service, link, live logs, rebuild on the same volume,
/// delete with and without the volume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_through_everything() {
    let env = DeployEnv::new().await;
    let engine = env.engine();
    let (caller, env_id) = owner_with_environment(engine).await;
    let port = free_port();
    let svc = create(engine, &caller, env_id, "shop-db", "mariadb", Some(port)).await;
    wait_ready(engine, &caller, svc).await;

    // The app user and root have passwords of their own.
    let secrets = services::reveal(engine, &caller, svc).await.unwrap();
    let root = secrets.root_password.clone().expect("root has its own password");
    assert_ne!(root, secrets.password);
    assert_eq!(
        secrets.external_url.as_deref(),
        Some(format!("mysql://app:{}@127.0.0.1:{port}/app", secrets.password).as_str())
    );
    let detail = services::get(engine, &caller, svc).await.unwrap();
    assert_eq!(detail.internal_url_masked, "mysql://app:********@shop-db:3306/app");
    let container = engine::services::container::container_name(engine, detail.row.id, "shop-db", false);
    let volume = detail.row.volume.clone();

    // 1,500 rows (and a table whose name needs quoting) through the published port.
    let pw = secrets.password.clone();
    let app_sql = |sql: &str| mariadb_sql(port, "app", &pw, "app", sql);
    app_sql(
        "CREATE TABLE items (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(100) NOT NULL, qty INT NOT NULL); \
         SET SESSION max_recursive_iterations = 10000; \
         INSERT INTO items (name, qty) SELECT CONCAT('item ', n, ' ', MD5(n)), n % 17 \
         FROM (WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 1500) SELECT n FROM g) AS s; \
         CREATE TABLE `order-lines` (id INT PRIMARY KEY); \
         INSERT INTO `order-lines` VALUES (1), (2), (3), (4), (5), (6), (7)",
    );
    assert_eq!(app_sql("SELECT COUNT(*) FROM items"), "1500");
    let before = app_sql(MARIADB_CHECKSUM);
    assert_eq!(before.len(), 32, "{before}");
    // The app user is not root: it cannot reach the server's own tables.
    assert!(std::process::Command::new("mariadb")
        .args([
            "--no-defaults",
            "-h",
            "127.0.0.1",
            "-P",
            &port.to_string(),
            "-u",
            "app",
            "mysql",
            "-e",
            "SELECT 1"
        ])
        .env("MYSQL_PWD", &pw)
        .output()
        .map(|o| !o.status.success())
        .unwrap());

    let s3 = TestS3::new().await;
    let dest = s3.destination(engine, &caller, "maria").await;
    let (stop, worker) = start_backup_worker(engine);
    let backup = backups::backup_now(engine, &caller, Subject::Service(svc), dest)
        .await
        .unwrap();
    let b = wait_backup(engine, &caller, backup).await;
    assert_eq!(b.status, JobStatus::Succeeded, "{:?}", b.error);
    let key = b.object_key.clone().unwrap();
    assert!(key.starts_with("maria/shop-db/") && key.ends_with(".sql.gz"), "{key}");
    assert_eq!(s3.get(&key).await.len() as i64, b.size_bytes);

    // Lose the table, restore, and get the same rows back.
    app_sql("DROP TABLE items");
    let (restore, _) = backups::restore(engine, &caller, backup, RestoreInto::Existing(svc))
        .await
        .unwrap();
    let r = wait_restore(engine, &caller, restore).await;
    assert_eq!(r.status, JobStatus::Succeeded, "{:?}", r.error);
    assert_eq!(app_sql(MARIADB_CHECKSUM), before, "identical rows after the restore");

    // The drill restores into a throwaway server and counts every row.
    backups::drill(engine, &caller, backup).await.unwrap();
    let (status, detail) = wait_drill(engine, &caller, backup).await;
    assert_eq!(status, DrillStatus::Verified, "{detail}");
    assert_eq!(
        detail, "verified: 2 tables, 1507 rows (items 1500, order-lines 7)",
        "exact counts"
    );

    // Restore into a new service: the rows arrive in its own database.
    let new = NewService::parse(engine, env_id, "shop-copy", "mariadb", "", "", "", "", "", None).unwrap();
    let (restore, copy) = backups::restore(engine, &caller, backup, RestoreInto::New(new))
        .await
        .unwrap();
    let r = wait_restore(engine, &caller, restore).await;
    assert_eq!(r.status, JobStatus::Succeeded, "{:?}", r.error);
    let copy_root = services::reveal(engine, &caller, copy)
        .await
        .unwrap()
        .root_password
        .unwrap();
    assert_ne!(copy_root, root);
    let copy_row = services::get(engine, &caller, copy).await.unwrap().row;
    let copy_container = engine::services::container::container_name(engine, copy_row.id, "shop-copy", false);
    let counted = engine::docker::exec_capture(
        &*engine.docker,
        &copy_container,
        &engine::docker::Exec {
            argv: [
                "mariadb",
                "-h",
                "127.0.0.1",
                "-u",
                "root",
                "-N",
                "-B",
                "app",
                "-e",
                "SELECT COUNT(*) FROM items",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
            env: vec![format!("MYSQL_PWD={copy_root}")],
        },
        std::time::Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert_eq!(counted.stdout.trim(), "1500", "{}", counted.said());

    // "Link to app" puts the internal connection string in the app's environment.
    let app = engine::testing::create_app(
        engine,
        &caller,
        env_id,
        "storefront",
        engine::testing::image_source(engine::testing::TEST_BASE_IMAGE),
        Default::default(),
    )
    .await;
    services::link(engine, &caller, svc, app, "DATABASE_URL").await.unwrap();
    let vars = engine::apps::env_values(engine, &caller, app).await.unwrap();
    assert_eq!(vars, vec![("DATABASE_URL".to_owned(), secrets.internal_url.clone())]);

    // Live logs: the server's start from the tail, then its shutdown as it happens.
    let mut logs = engine.docker.logs(
        &container,
        engine::docker::LogOptions {
            follow: true,
            tail: Some(200),
            since: None,
        },
    );
    let mut seen = String::new();
    read_until(&mut logs, &mut seen, "ready for connections").await;
    services::act(engine, &caller, svc, services::Action::Stop)
        .await
        .unwrap();
    read_until(&mut logs, &mut seen, "Shutdown complete").await;
    drop(logs);
    services::act(engine, &caller, svc, services::Action::Start)
        .await
        .unwrap();
    wait_ready(engine, &caller, svc).await;

    // Rebuild: a new container on the same volume keeps the data and passwords.
    let old_id = engine.docker.inspect_container(&container).await.unwrap().unwrap().id;
    services::act(engine, &caller, svc, services::Action::Rebuild)
        .await
        .unwrap();
    wait_ready(engine, &caller, svc).await;
    let new_id = engine.docker.inspect_container(&container).await.unwrap().unwrap().id;
    assert_ne!(new_id, old_id, "a new container");
    assert_eq!(app_sql(MARIADB_CHECKSUM), before, "the data survived the rebuild");

    // Delete: the volume stays unless asked.
    let volumes = || async {
        engine
            .docker
            .list_volumes(&[("berth.instance", Some(engine.deploy.instance.as_str()))])
            .await
            .unwrap()
    };
    services::delete(engine, &caller, svc, false).await.unwrap();
    assert!(engine.docker.inspect_container(&container).await.unwrap().is_none());
    assert!(volumes().await.contains(&volume), "kept by default");
    services::delete(engine, &caller, copy, true).await.unwrap();
    assert!(!volumes().await.contains(&copy_row.volume), "removed when asked");
    stop.cancel();
    let _ = worker.await;
}

/// Reads a followed log into `seen` until it holds `needle` (at most 60 s).
async fn read_until(
    logs: &mut (impl futures::Stream<Item = Result<engine::docker::LogChunk, engine::docker::DockerError>> + Unpin),
    seen: &mut String,
    needle: &str,
) {
    use futures::StreamExt;
    let read = async {
        while !seen.contains(needle) {
            let chunk = logs.next().await.expect("the log goes on").expect("a log chunk");
            seen.push_str(&String::from_utf8_lossy(&chunk.bytes));
        }
    };
    if tokio::time::timeout(std::time::Duration::from_secs(60), read)
        .await
        .is_err()
    {
        panic!("{needle:?} never came: {seen}");
    }
}
