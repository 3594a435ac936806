//! The reconciler and retirement against a real Docker engine and Traefik: a
//! container removed by hand comes back (and the history says so), and ten
//! redeploys in a row leave exactly one container once the drain has passed,
//! with no overlapping retirements (no "already in progress" warnings), a
//! redeploy going live within the previous one's drain takes over its
//! retirement (one, after the last), and apps and a database service the
//! kernel OOM-kills come back, counted once.

use engine::accounts::Caller;
use engine::apps::spec::Runtime;
use engine::deploy::{self, Status};
use engine::docker::{LABEL_APP, LABEL_INSTANCE};
use engine::ids::{AppId, EnvironmentId};
use engine::testing::{create_app, get_via, httpd_runtime, settle, DeployEnv, TEST_BASE_IMAGE};
use engine::Engine;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Everything this test binary logs, kept for the assertions on warnings.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture() -> Captured {
    static LOGS: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Captured::default();
        let w = logs.clone();
        tracing_subscriber::fmt()
            .with_env_filter("info")
            .with_ansi(false)
            .with_writer(move || w.clone())
            .init();
        logs
    })
    .clone()
}

/// The busybox app from the local image.
async fn image_app(e: &Engine, caller: &Caller, env: EnvironmentId, rt: Runtime) -> AppId {
    let image = engine::testing::image_source(TEST_BASE_IMAGE);
    create_app(e, caller, env, "heal", image, rt).await
}

async fn containers_of(e: &Engine, app: AppId) -> Vec<String> {
    let label = app.to_string();
    e.docker
        .list_containers(&[
            (LABEL_INSTANCE, Some(e.deploy.instance.as_str())),
            (LABEL_APP, Some(label.as_str())),
        ])
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect()
}

/// Polls the app's containers until one is left or `within` has passed, with
/// `each` run before every look; returns the last list.
async fn until_one_left(e: &Engine, app: AppId, within: Duration, mut each: impl FnMut()) -> Vec<String> {
    let deadline = Instant::now() + within;
    loop {
        each();
        let left = containers_of(e, app).await;
        if left.len() == 1 || Instant::now() > deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_container_removed_by_hand_comes_back_and_the_history_says_so() {
    let _logs = capture();
    let env = DeployEnv::new().await;
    let e = env.engine();
    let (caller, envid) = engine::testing::owner_with_environment(e).await;
    let app = image_app(e, &caller, envid, httpd_runtime(1)).await;
    let (stop, worker) = env.start_worker();
    let host = engine::testing::generated_host(e, &caller, app).await;
    let first = deploy::deploy(e, &caller, app).await.unwrap();
    assert_eq!(settle(e, &caller, first).await.status, Status::Running);
    assert_eq!(get_via(env.http_port(), &host, "/").await.map(|r| r.0), Some(200));

    let [container] = containers_of(e, app).await.try_into().expect("one container");
    e.docker.remove_container(&container, false).await.unwrap();

    // Back through Traefik, with no user action: a repair deployment went live.
    let start = Instant::now();
    loop {
        let newest = deploy::list(e, &caller, app, 1).await.unwrap().deployments.remove(0);
        if newest.id != first
            && newest.status == Status::Running
            && get_via(env.http_port(), &host, "/").await.map(|r| r.0) == Some(200)
        {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "the app did not come back");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (_, history) = engine::reconcile::of(e, caller.org_id, Some(app.0), None)
        .await
        .unwrap();
    let repair = history.first().expect("the repair is in the app's history");
    assert_eq!(repair.problem, "the container was missing");
    assert!(
        repair.action.contains("redeploying the live version"),
        "{}",
        repair.action
    );
    let list = deploy::list(e, &caller, app, 5).await.unwrap();
    let newest = &list.deployments[0];
    assert_eq!(newest.trigger, lifecycle::Trigger::Repair);
    assert_eq!(newest.status, Status::Running, "{:?}", newest.reason);
    assert_eq!(newest.trigger_detail.as_deref(), Some("the container was missing"));
    // The repair counts as a restart for the alert rules that count them.
    {
        use diesel_async::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut conn = e.db.get().await.unwrap();
        let n: N = diesel::sql_query(
            "SELECT count(*) AS n FROM container_events WHERE subject = $1 AND subject_kind = 'app' AND event = 'restart'",
        )
        .bind::<diesel::sql_types::Uuid, _>(app.0)
        .get_result(&mut conn)
        .await
        .unwrap();
        assert!(n.n >= 1, "the repair is counted as a restart");
        // And it is the worker's, in the audit log: the repair and the
        // deployment it queued.
        let n: N = diesel::sql_query(
            "SELECT count(*) AS n FROM audit_log WHERE actor_kind = 'worker' AND organization_id = $1
               AND ((action = 'repair' AND target_id = $2) OR (action = 'repair deploy' AND target_id = $3))",
        )
        .bind::<diesel::sql_types::Uuid, _>(caller.org_id.0)
        .bind::<diesel::sql_types::Uuid, _>(app.0)
        .bind::<diesel::sql_types::Uuid, _>(newest.id.0)
        .get_result(&mut conn)
        .await
        .unwrap();
        assert!(n.n >= 2, "the repair and its deployment are in the audit log");
    }
    // Asked as another organization, the app's history is empty.
    let other = engine::ids::OrgId(uuid::Uuid::new_v4());
    let (_, theirs) = engine::reconcile::of(e, other, Some(app.0), None).await.unwrap();
    assert!(theirs.is_empty());
    stop.cancel();
    worker.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_redeploys_leave_one_container_and_retire_each_once() {
    let logs = capture();
    let env = DeployEnv::new().await;
    let e = env.engine();
    let (caller, envid) = engine::testing::owner_with_environment(e).await;
    let drain = 2;
    let app = image_app(e, &caller, envid, httpd_runtime(drain)).await;
    let (stop, worker) = env.start_worker();
    let mut last = None;
    for _ in 0..10 {
        let id = deploy::deploy(e, &caller, app).await.unwrap();
        let d = settle(e, &caller, id).await;
        assert_eq!(d.status, Status::Running, "{:?}", d.reason);
        last = Some(id);
    }
    // Drain, then SIGTERM and SIGKILL after the drain time (httpd as PID 1
    // ignores SIGTERM: this waits for the kill), plus a margin for removal.
    let left = until_one_left(e, app, Duration::from_secs(2 * drain + 20), || {}).await;
    assert_eq!(left.len(), 1, "exactly the live container remains: {left:?}");
    let live = &last.unwrap().0.simple().to_string()[..12];
    assert!(left[0].ends_with(live), "the live deployment's container: {left:?}");
    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(
        !text.contains("already in progress"),
        "overlapping removals were logged"
    );
    assert!(!text.contains("removing container"), "a removal failed: {text}");
    stop.cancel();
    worker.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redeploys_within_the_drain_time_are_retired_once_after_the_last() {
    let logs = capture();
    let env = DeployEnv::new().await;
    let e = env.engine();
    let (caller, envid) = engine::testing::owner_with_environment(e).await;
    // The third deployment goes live `pause` after the second, well inside
    // the second's drain even on a loaded machine (a deployment takes about a
    // second); retired when the second's drain ends, the replaced containers
    // would be seen going that much before the third's drain is over.
    let (drain, pause) = (8, Duration::from_secs(3));
    let app = image_app(e, &caller, envid, httpd_runtime(drain)).await;
    let (stop, worker) = env.start_worker();
    let mut ids = Vec::new();
    let mut live_at = Vec::new();
    for i in 0..3 {
        if i == 2 {
            tokio::time::sleep(pause).await;
        }
        let id = deploy::deploy(e, &caller, app).await.unwrap();
        let d = settle(e, &caller, id).await;
        assert_eq!(d.status, Status::Running, "{:?}", d.reason);
        ids.push(id);
        live_at.push(Instant::now());
    }
    let drain = Duration::from_secs(drain);
    let apart = live_at[2] - live_at[1];
    assert!(
        apart < drain,
        "the premise: the third went live within the second's drain ({apart:?})"
    );
    let app_id = app.to_string();
    let retirements = || -> Vec<String> {
        String::from_utf8_lossy(&logs.0.lock().unwrap())
            .lines()
            .filter(|l| l.contains("retiring replaced containers") && l.contains(&app_id))
            .map(str::to_owned)
            .collect()
    };
    let mut began = None;
    let left = until_one_left(e, app, 2 * drain + Duration::from_secs(20), || {
        if began.is_none() && !retirements().is_empty() {
            began = Some(Instant::now());
        }
    })
    .await;
    let short = |i: usize| ids[i].0.simple().to_string()[..12].to_owned();
    assert_eq!(left.len(), 1, "exactly the live container remains: {left:?}");
    assert!(
        left[0].ends_with(&short(2)),
        "the live deployment's container: {left:?}"
    );
    // The second's retirement was left to the third's: one retirement ended
    // both replaced containers, once the third's drain was over (`settle`
    // sees a deployment live up to a poll after it went live: a second's
    // margin).
    let began = began.expect("a retirement was logged");
    assert!(
        began + Duration::from_secs(1) >= live_at[2] + drain,
        "the retirement began {:?} after the third went live, before its drain of {drain:?} was over",
        began - live_at[2]
    );
    let retirements = retirements();
    assert_eq!(retirements.len(), 1, "one retirement for the three: {retirements:?}");
    assert!(
        retirements[0].contains(&short(0)) && retirements[0].contains(&short(1)),
        "it ended both replaced containers: {retirements:?}"
    );
    stop.cancel();
    worker.await.unwrap();
}

/// Runs `sh -c SCRIPT` inside a container with the test engine's CLI.
fn exec_in(e: &Engine, container: &str, script: &str) {
    let out = std::process::Command::new("docker")
        .env("DOCKER_HOST", e.docker.host())
        .args(["exec", container, "sh", "-c", script])
        .output()
        .expect("docker exec");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A real kernel OOM kill, not a fake engine's: each app's own process (PID 1)
/// grows past its 32 MiB limit once the test drops a file in, as a leaking
/// server would. Docker brings back the one with a restart policy (Berth counts
/// the kill from Docker's `oom` event and the restart from the container's
/// count); the one without stays exited with Docker's OOM flag until the
/// reconciler starts it again and says why. Each kill is counted once on its
/// app's Metrics tab, though Docker's event and the repair both report it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn apps_oom_killed_by_the_kernel_come_back_and_each_kill_is_counted_once() {
    use engine::apps::spec::RestartPolicy;
    use engine::metrics::{app_series, Window};
    let _logs = capture();
    let env = DeployEnv::new().await;
    let e = env.engine();
    let (caller, envid) = engine::testing::owner_with_environment(e).await;
    let runtime = |restart| {
        let mut rt = httpd_runtime(1);
        rt.memory_mb = Some(32);
        rt.restart = restart;
        // httpd in the background; the shell then waits for the test's file
        // and becomes a process that grows without end (`sort` of a line that
        // never ends). The file goes first, so a restart serves again.
        rt.command = Some(vec![
            "sh".into(),
            "-c".into(),
            "echo up > /index.html && httpd -p 8080 -h / && \
             while [ ! -e /grow ]; do sleep 1; done; rm /grow; exec busybox sort /dev/zero"
                .into(),
        ]);
        rt
    };
    let source = || engine::testing::image_source(TEST_BASE_IMAGE);
    let kept = create_app(
        e,
        &caller,
        envid,
        "kept",
        source(),
        runtime(RestartPolicy::UnlessStopped),
    )
    .await;
    let bare = create_app(e, &caller, envid, "bare", source(), runtime(RestartPolicy::No)).await;
    let (stop, worker) = env.start_worker();
    let mut containers = Vec::new();
    let mut hosts = Vec::new();
    for app in [kept, bare] {
        let id = deploy::deploy(e, &caller, app).await.unwrap();
        let d = settle(e, &caller, id).await;
        assert_eq!(d.status, Status::Running, "{:?}", d.reason);
        let series = app_series(e, &caller, app, Window::Hour).await.unwrap();
        assert_eq!((series.restarts, series.oom_kills), (0, 0));
        let [c] = containers_of(e, app).await.try_into().expect("one container");
        containers.push(c);
        hosts.push(engine::testing::generated_host(e, &caller, app).await);
    }
    for c in &containers {
        exec_in(e, c, ": > /grow");
    }

    let start = Instant::now();
    loop {
        let k = app_series(e, &caller, kept, Window::Hour).await.unwrap();
        let b = app_series(e, &caller, bare, Window::Hour).await.unwrap();
        let mut up = 0;
        for host in &hosts {
            if get_via(env.http_port(), host, "/").await.map(|r| r.0) == Some(200) {
                up += 1;
            }
        }
        if (k.oom_kills, k.restarts, b.oom_kills, b.restarts) == (1, 1, 1, 1) && up == 2 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not back and counted: kept {:?}, bare {:?} (OOM kills, restarts), {up} of 2 answering",
            (k.oom_kills, k.restarts),
            (b.oom_kills, b.restarts),
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The same containers came back; the reconciler's repair of the one
    // without a policy names the kernel's reason; Docker's own restart of the
    // other needed no repair.
    for (app, c) in [kept, bare].into_iter().zip(&containers) {
        assert_eq!(&containers_of(e, app).await, std::slice::from_ref(c));
        assert_eq!(deploy::list(e, &caller, app, 5).await.unwrap().deployments.len(), 1);
    }
    let (_, history) = engine::reconcile::of(e, caller.org_id, Some(bare.0), None)
        .await
        .unwrap();
    let repair = history.first().expect("the repair is in the history");
    assert_eq!(repair.problem, "the container was OOM-killed");
    assert_eq!(repair.action, "started the container again");
    let (_, history) = engine::reconcile::of(e, caller.org_id, Some(kept.0), None)
        .await
        .unwrap();
    assert!(
        history.is_empty(),
        "Docker restarted it: {:?}",
        history.first().map(|r| &r.problem)
    );
    // Still once each a few seconds on (the passes that follow count nothing more).
    tokio::time::sleep(Duration::from_secs(3)).await;
    for app in [kept, bare] {
        let s = app_series(e, &caller, app, Window::Hour).await.unwrap();
        assert_eq!((s.oom_kills, s.restarts), (1, 1), "{app:?}");
        let mut kinds: Vec<&str> = s.events.iter().map(|e| e.event.as_str()).collect();
        kinds.sort_unstable();
        assert_eq!(kinds, ["oom", "restart"], "marked on the charts");
    }
    stop.cancel();
    worker.await.unwrap();
}

/// A database service the kernel OOM-kills comes back by itself: a Redis
/// service under a 48 MiB limit is asked for one 256 MiB string (`SETRANGE`
/// pads with zeros up to the offset); the kernel kills redis-server (PID 1),
/// Docker's restart policy brings the same container back, the service is
/// ready again with no user action, and its Metrics tab counts one OOM kill
/// and one restart, each marked once. Before the kill, while the service was
/// being made and once it was ready, nothing was counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_service_oom_killed_by_the_kernel_comes_back_ready_counted_once() {
    use engine::metrics::{service_series, Window};
    use engine::services::{self, NewService};
    let _logs = capture();
    let env = DeployEnv::new().await;
    let e = env.engine();
    let (caller, envid) = engine::testing::owner_with_environment(e).await;
    let (stop, worker) = env.start_worker();
    let new = NewService::parse(e, envid, "oomcache", "redis", "", "", "", "", "48", None).unwrap();
    let svc = services::create(e, &caller, new).await.unwrap();
    let ready = || async {
        let d = services::get(e, &caller, svc).await.unwrap();
        (d.ready == Some(true)).then_some(d)
    };
    let detail = engine::testing::eventually(120, "the service to be ready", ready).await;
    let container = engine::services::container::container_name(e, detail.row.id, "oomcache", false);
    let inspected = |e: &Engine| {
        let c = container.clone();
        let docker = e.docker.clone();
        async move { docker.inspect_container(&c).await.unwrap().expect("the container") }
    };
    let before = inspected(e).await;
    // A few reconciler passes over the ready service: still nothing counted.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let s = service_series(e, &caller, svc, Window::Hour).await.unwrap();
    assert_eq!((s.oom_kills, s.restarts), (0, 0), "counted before any kill");
    assert!(s.events.is_empty());
    let (_, history) = engine::reconcile::of(e, caller.org_id, None, Some(svc.0))
        .await
        .unwrap();
    assert!(
        history.is_empty(),
        "a repair it never needed: {:?}",
        history.first().map(|r| &r.problem)
    );

    // The exec dies with the container: its outcome is not the test's.
    let password = services::reveal(e, &caller, svc).await.unwrap().password;
    let _ = std::process::Command::new("docker")
        .env("DOCKER_HOST", e.docker.host())
        .args(["exec", &container, "redis-cli", "-a", &password, "--no-auth-warning"])
        .args(["SETRANGE", "big", "268435455", "x"])
        .output()
        .expect("docker exec");

    let start = Instant::now();
    loop {
        let s = service_series(e, &caller, svc, Window::Hour).await.unwrap();
        let d = services::get(e, &caller, svc).await.unwrap();
        if (s.oom_kills, s.restarts) == (1, 1) && d.ready == Some(true) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not back and counted: {:?} (OOM kills, restarts), ready {:?}",
            (s.oom_kills, s.restarts),
            d.ready
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let after = inspected(e).await;
    assert_eq!(after.id, before.id, "Docker restarted the same container");
    assert_eq!(after.restart_count, before.restart_count + 1);
    assert!(after.state.is_up());
    // Still once each a few seconds on, each marked on the charts once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s = service_series(e, &caller, svc, Window::Hour).await.unwrap();
    assert_eq!((s.oom_kills, s.restarts), (1, 1));
    let mut kinds: Vec<&str> = s.events.iter().map(|e| e.event.as_str()).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["oom", "restart"], "marked on the charts");
    // Docker's restart policy did it: no repair was needed.
    let (_, history) = engine::reconcile::of(e, caller.org_id, None, Some(svc.0))
        .await
        .unwrap();
    assert!(history.is_empty(), "{:?}", history.first().map(|r| &r.problem));
    stop.cancel();
    worker.await.unwrap();
}
