//! Crash safety with the real binary: `kill -9` of a `berth` process in the middle
//! of a build. After a restart the deployment is marked failed (`interrupted`)
//! within 60 s, no container or route of it remains, the live version never
//! stopped serving, and the app deploys again (its lock was released).

use engine::accounts;
use engine::apps::spec::{Build, HealthCheck, HealthProbe, Runtime, Source};
use engine::apps::{self, NewApp};
use engine::deploy::{self, Status};
use engine::names::Description;
use engine::testing::{free_port, get_via, httpd_dockerfile, wait_for_200, DeployEnv, GitRepo, TEST_BASE_IMAGE};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_berth");

fn spawn(env: &DeployEnv, port: u16) -> engine::testing::KillOnDrop {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .env("BERTH_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in env.berth_env() {
        cmd.env(k, v);
    }
    engine::testing::KillOnDrop(cmd.spawn().expect("spawn berth"))
}

async fn wait_status(
    e: &engine::Engine,
    caller: &accounts::Caller,
    id: engine::ids::DeploymentId,
    want: &[Status],
    limit: Duration,
) -> deploy::Deployment {
    let start = Instant::now();
    loop {
        let d = deploy::get(e, caller, id).await.unwrap();
        if want.contains(&d.status) {
            return d;
        }
        assert!(
            start.elapsed() < limit,
            "deployment still {} after {limit:?}: {:?}",
            d.status,
            d.reason
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_build_is_recovered_and_the_live_version_keeps_serving() {
    let env = DeployEnv::new().await;
    let e = env.engine().clone();
    let (caller, envid) = engine::testing::owner_with_environment(&e).await;
    let repo = GitRepo::new();
    repo.commit(&[("Dockerfile", &httpd_dockerfile()), ("index.html", "live\n")], "one");
    let name = format!("crash-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let app = apps::create(
        &e,
        &caller,
        NewApp {
            name: apps::spec::AppName::parse(&name).unwrap(),
            description: Description::default(),
            environment: envid,
            source: Source::Git {
                url: repo.url(),
                branch: "main".into(),
                subdir: ".".into(),
            },
            source_secret: None,
            build: Build::default(),
            runtime: Runtime {
                port: 8080,
                health: HealthCheck {
                    probe: HealthProbe::Http { path: "/".into() },
                    interval_ms: 200,
                    ..HealthCheck::default()
                },
                drain_secs: 1,
                ..Runtime::default()
            },
        },
    )
    .await
    .unwrap();
    let host = engine::testing::generated_host(&e, &caller, app).await;

    let port = free_port();
    let mut berth = spawn(&env, port);
    wait_for_200(port, "/health").await;
    let first = deploy::deploy(&e, &caller, app).await.unwrap();
    let d = wait_status(
        &e,
        &caller,
        first,
        &[Status::Running, Status::Failed],
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(d.status, Status::Running, "{:?}", d.reason);

    // Watch the live version for the rest of the test.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let watcher = tokio::spawn({
        let (stop, served, failures, host, port) = (
            stop.clone(),
            served.clone(),
            failures.clone(),
            host.clone(),
            env.http_port(),
        );
        async move {
            let start = Instant::now();
            while !stop.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(180) {
                match get_via(port, &host, "/").await {
                    Some((200, b)) if b == "live\n" => {
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                    other => failures.lock().unwrap().push(format!("{other:?}")),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });

    // A slow build, killed in the middle.
    repo.commit(
        &[("Dockerfile", &format!("FROM {TEST_BASE_IMAGE}\nCOPY index.html /www/index.html\nRUN sleep 30\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n"))],
        "slow",
    );
    let second = deploy::deploy(&e, &caller, app).await.unwrap();
    wait_status(&e, &caller, second, &[Status::Building], Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    berth.kill().expect("kill -9");
    berth.wait().unwrap();
    let killed_at = Instant::now();

    let mut berth = spawn(&env, port);
    let d = wait_status(&e, &caller, second, &[Status::Failed], Duration::from_secs(60)).await;
    assert!(killed_at.elapsed() < Duration::from_secs(60));
    assert!(
        d.reason.as_deref().unwrap_or("").starts_with("interrupted"),
        "{:?}",
        d.reason
    );

    // Its work directory (checkout, and a deploy key had it one) is gone. The
    // reaper claims the row (Failed) first, then stops its containers and
    // removes the directory: wait for that, bounded.
    let work = e.deploy.data_dir.join("work").join(second.0.simple().to_string());
    engine::testing::eventually(30, "the interrupted deployment's work directory to go", || async {
        (!work.exists()).then_some(())
    })
    .await;
    // No container of the interrupted deployment; the route still names the live one.
    let containers: Vec<_> = deploy::runtime::list_managed(&e)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.app == Some(app))
        .collect();
    assert_eq!(containers.len(), 1, "{containers:?}");
    assert_eq!(containers[0].deployment, Some(first));
    let route = std::fs::read_to_string(engine::proxy::route_file(&e, app)).unwrap();
    assert!(
        route.contains(&engine::proxy::route_token(&e, first.0))
            && !route.contains(&engine::proxy::route_token(&e, second.0)),
        "{route}"
    );

    // The lock is free: the next deployment runs.
    repo.commit(
        &[("Dockerfile", &httpd_dockerfile()), ("index.html", "live\n")],
        "fixed",
    );
    let third = deploy::deploy(&e, &caller, app).await.unwrap();
    let d = wait_status(
        &e,
        &caller,
        third,
        &[Status::Running, Status::Failed],
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(d.status, Status::Running, "{:?}", d.reason);

    stop.store(true, Ordering::Relaxed);
    watcher.await.unwrap();
    let failed = failures.lock().unwrap().clone();
    assert!(failed.is_empty(), "the live version stopped serving: {failed:?}");
    assert!(served.load(Ordering::Relaxed) > 20);
    let _ = Command::new("kill").arg(berth.id().to_string()).status();
    let _ = berth.wait();
}
