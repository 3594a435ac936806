//! Docker itself dies: the test's dockerd is killed with SIGKILL while an app
//! runs, a database service runs and a build is in progress, then started
//! again with the same arguments. With no user action the app answers through
//! Traefik again and the database is ready; the app's history records the
//! repair; health said Docker was down while it was; the build failed saying
//! Docker stopped, and its step container is swept.
//!
//! The only test in this binary (cargo runs test binaries one at a time, so no
//! other test sees Docker go away). It kills only a dockerd that
//! `scripts/services.sh` started (its pidfile beside the socket in
//! `DOCKER_HOST`), never a system daemon.

use engine::apps::spec::{RestartPolicy, Runtime, Source};
use engine::deploy::{self, Status};
use engine::docker::LABEL_APP;
use engine::services::{self, NewService};
use engine::testing::{
    create_app, eventually, get_via, httpd_dockerfile, httpd_runtime, DeployEnv, GitRepo, TEST_BASE_IMAGE,
};
use lifecycle::ServiceState;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The dockerd this test may kill: its pid and the exact command line that
/// started it.
fn our_dockerd() -> (i32, Vec<String>) {
    let host = std::env::var("DOCKER_HOST").unwrap_or_default();
    let socket = host.strip_prefix("unix://").map(PathBuf::from);
    let pidfile = socket.as_ref().and_then(|s| s.parent()).map(|d| d.join("dockerd.pid"));
    let found = pidfile.as_ref().and_then(|p| std::fs::read_to_string(p).ok());
    let Some(pid) = found.and_then(|p| p.trim().parse::<i32>().ok()) else {
        panic!(
            "this test kills and restarts the Docker daemon, so it needs one started by scripts/services.sh \
             (make test starts it under target/test-services when no DOCKER_HOST is given); DOCKER_HOST={host:?} has no dockerd.pid beside its socket"
        );
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("the dockerd process");
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    assert!(args[0].ends_with("dockerd"), "pid {pid} is not dockerd: {args:?}");
    assert!(
        args.iter().any(|a| a.contains(&host[7..])),
        "pid {pid} does not serve {host}: {args:?}"
    );
    (pid, args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_dockerd_is_killed_and_restarted_what_should_run_runs_again() {
    let (pid, args) = our_dockerd();
    let env = DeployEnv::new().await;
    let e = env.engine();
    let (caller, envid) = engine::testing::owner_with_environment(e).await;
    let (stop, worker) = env.start_worker();

    // An app Docker will not restart on its own (restart policy "no"): the
    // reconciler has to.
    let rt = Runtime {
        restart: RestartPolicy::No,
        ..httpd_runtime(1)
    };
    let image = engine::testing::image_source(TEST_BASE_IMAGE);
    let app = create_app(e, &caller, envid, "crash", image, rt).await;
    let host = engine::testing::generated_host(e, &caller, app).await;
    let first = deploy::deploy(e, &caller, app).await.unwrap();
    eventually(120, "the app to go live", || async {
        let d = deploy::get(e, &caller, first).await.unwrap();
        assert_ne!(d.status, Status::Failed, "{:?}", d.reason);
        (d.status == Status::Running).then_some(())
    })
    .await;

    let new = NewService::parse(
        e,
        envid,
        &format!("db-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
        "postgres",
        "",
        "",
        "",
        "",
        "",
        None,
    )
    .expect("valid service");
    let db = services::create(e, &caller, new).await.expect("create service");
    let ready = || async {
        let d = services::get(e, &caller, db).await.expect("get service");
        (d.state == ServiceState::Running && d.ready == Some(true)).then_some(())
    };
    eventually(120, "the database to be ready", ready).await;

    // A build in progress: a step that sleeps.
    let repo = GitRepo::new();
    let dockerfile = format!("{}RUN sleep 120\n", httpd_dockerfile());
    repo.commit(&[("Dockerfile", &dockerfile), ("index.html", "built\n")], "slow");
    let git = Source::Git {
        url: repo.url(),
        branch: "main".into(),
        subdir: ".".into(),
    };
    // The image's own CMD serves /www; the same health check and drain.
    let rt = Runtime {
        command: None,
        ..httpd_runtime(1)
    };
    let builder = create_app(e, &caller, envid, "build", git, rt).await;
    let build_started = chrono::Utc::now().timestamp();
    let building = deploy::deploy(e, &caller, builder).await.unwrap();
    eventually(120, "the build to reach its sleeping step", || async {
        let d = deploy::get(e, &caller, building).await.unwrap();
        let on_step = d
            .building_at
            .is_some_and(|t| (chrono::Utc::now() - t).num_seconds() >= 3);
        (d.status == Status::Building && on_step).then_some(())
    })
    .await;

    // Docker dies.
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    eventually(20, "dockerd to exit", || async {
        (!std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(())
    })
    .await;
    // Its containerd dies with it (parent-death signal), but not always at
    // once; a dockerd started while the old one's pid file still names a
    // live process waits for it and gives up. As after a real crash, wait for
    // it to be gone.
    let exec_root = args
        .iter()
        .position(|a| a == "--exec-root")
        .map(|i| args[i + 1].clone());
    let pidfile = exec_root.map(|root| format!("{root}/containerd/containerd.pid"));
    if let Some(pid) = pidfile
        .as_ref()
        .and_then(|f| std::fs::read_to_string(f).ok())
        .and_then(|p| p.trim().parse::<u32>().ok())
    {
        let gone = || async {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            // Gone, or a zombie nobody reaps yet (it no longer holds anything).
            (status.is_empty() || status.contains("State:\tZ")).then_some(())
        };
        for _ in 0..40 {
            if gone().await.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        // Still there after 10 s: this test's own daemon's containerd, ended
        // the way the crash would have.
        if gone().await.is_none() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        eventually(10, "the old containerd to exit", gone).await;
        // A zombie still answers `kill -0`: where nothing reaps orphans (a
        // container's pid 1 may not), dockerd would take it for a running
        // containerd and wait on its dead socket. Its pid file is stale now.
        if let Some(f) = &pidfile {
            let _ = std::fs::remove_file(f);
        }
    }
    let report = eventually(20, "health to say Docker is down", || async {
        let r = engine::health::check(e).await;
        (!r.docker.is_up()).then_some(r)
    })
    .await;
    assert!(report.ready() && report.degraded(), "serving, degraded: {report:?}");
    eventually(20, "the reconciler to publish that Docker is unreachable", || async {
        let p = engine::reconcile::problems(e).await;
        p.iter().any(|p| p.text.starts_with("Docker unreachable")).then_some(())
    })
    .await;
    let failed = eventually(30, "the build to fail", || async {
        let d = deploy::get(e, &caller, building).await.unwrap();
        d.status.is_finished().then_some(d)
    })
    .await;
    assert_eq!(failed.status, Status::Failed);
    let reason = failed.reason.unwrap_or_default();
    assert!(
        reason.starts_with("the Docker engine stopped during the build"),
        "{reason}"
    );
    let build_ended = chrono::Utc::now().timestamp();

    // Docker comes back, started as before; nobody touches Berth.
    let log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(PathBuf::from(&std::env::var("DOCKER_HOST").unwrap()[7..]).with_file_name("dockerd.log"))
        .unwrap();
    // `setsid --fork`: dockerd runs on in a session of its own (it outlives
    // this test, as the first one did); setsid itself returns at once.
    let started = std::process::Command::new("setsid")
        .arg("--fork")
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .status()
        .expect("starting dockerd again");
    assert!(started.success());
    eventually(60, "dockerd to answer again", || async {
        e.docker.info().await.ok().map(|_| ())
    })
    .await;
    let back = Instant::now();

    eventually(30, "the app to answer through Traefik", || async {
        (get_via(env.http_port(), &host, "/").await.map(|r| r.0) == Some(200)).then_some(())
    })
    .await;
    eventually(30, "the database to be ready", ready).await;
    let within = back.elapsed();
    assert!(within <= Duration::from_secs(30), "{within:?}");
    let (_, history) = engine::reconcile::of(e, caller.org_id, Some(app.0), None)
        .await
        .unwrap();
    let repair = history.first().expect("the app's history records the repair");
    assert!(
        repair.problem.starts_with("the container exited with code"),
        "{}",
        repair.problem
    );
    assert_eq!(repair.action, "started the container again");
    eventually(30, "health to say ok", || async {
        let r = engine::health::check(e).await;
        (!r.degraded()).then_some(())
    })
    .await;

    // The interrupted build's step container is swept.
    eventually(30, "the build's step container to be removed", || async {
        let all = e.docker.list_containers(&[]).await.unwrap();
        let left: Vec<_> = all
            .iter()
            .filter(|c| {
                c.labels.keys().all(|k| !k.starts_with("berth."))
                    && c.created >= build_started
                    && c.created <= build_ended
            })
            .collect();
        left.is_empty().then_some(())
    })
    .await;
    let running = e
        .docker
        .list_containers(&[(LABEL_APP, Some(app.to_string().as_str()))])
        .await
        .unwrap();
    assert_eq!(running.len(), 1, "{running:?}");
    stop.cancel();
    worker.await.unwrap();
}
