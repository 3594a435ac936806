//! The deploy pipeline driven end to end on the fake Docker engine (real
//! PostgreSQL, Redis and git; no Docker): success, every failure reason the
//! pipeline gives, cancel mid-build, a lost lease, the honest end states
//! (superseded, rollback provenance) and the transition check itself. Fast:
//! the whole file runs in a few seconds.

use engine::accounts::Caller;
use engine::apps::spec::{Build, HealthCheck, HealthProbe, Runtime, Source};
use engine::apps::{self, NewApp};
use engine::deploy::transition::{transition, Holder, Move, TransitionError};
use engine::deploy::{self, job, DeployError, Status, Trigger};
use engine::docker::fake::{Behaviour, BuildScript};
use engine::ids::{AppId, DeploymentId, EnvironmentId};
use engine::jobs::run_one;
use engine::names::Description;
use engine::testing::{owner_with_environment, FakeEnv, GitRepo};
use engine::Engine;
use std::time::Duration;

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

fn runtime(probe: HealthProbe) -> Runtime {
    Runtime {
        port: 8080,
        health: HealthCheck {
            probe,
            interval_ms: 100,
            timeout_ms: 500,
            retries: 1,
            start_period_secs: 1,
        },
        drain_secs: 0,
        ..Runtime::default()
    }
}

async fn image_app(e: &Engine, caller: &Caller, env: EnvironmentId, image: &str, rt: Runtime) -> AppId {
    apps::create(
        e,
        caller,
        NewApp {
            name: apps::spec::AppName::parse(&unique("img")).unwrap(),
            description: Description::default(),
            environment: env,
            source: engine::testing::image_source(image),
            source_secret: None,
            build: Build::default(),
            runtime: rt,
        },
    )
    .await
    .unwrap()
}

async fn git_app(e: &Engine, caller: &Caller, env: EnvironmentId, repo: &GitRepo) -> AppId {
    apps::create(
        e,
        caller,
        NewApp {
            name: apps::spec::AppName::parse(&unique("git")).unwrap(),
            description: Description::default(),
            environment: env,
            source: Source::Git {
                url: repo.url(),
                branch: "main".into(),
                subdir: ".".into(),
            },
            source_secret: None,
            build: Build::default(),
            runtime: runtime(HealthProbe::Http { path: "/".into() }),
        },
    )
    .await
    .unwrap()
}

fn repo() -> GitRepo {
    let repo = GitRepo::new();
    repo.commit(&[("Dockerfile", "FROM scratch\n")], "first");
    repo
}

/// Queues a deployment, claims it as a worker would, and runs it to its end
/// (with its heartbeat) on the common runner's code path.
async fn deploy_now(e: &Engine, caller: &Caller, app: AppId) -> deploy::Deployment {
    let id = deploy::deploy(e, caller, app).await.unwrap();
    run_queued(e, caller, id, "worker-a").await
}

async fn run_queued(e: &Engine, caller: &Caller, id: DeploymentId, worker: &str) -> deploy::Deployment {
    let claimed = job::claim(e, worker)
        .await
        .unwrap()
        .expect("the queued deployment is claimed");
    assert_eq!(claimed.id, id);
    run_one(&job::DeployKind::default(), e, claimed, worker.into()).await;
    deploy::get(e, caller, id).await.unwrap()
}

#[tokio::test]
async fn an_image_deploys_goes_live_and_the_previous_one_is_superseded() {
    let env = FakeEnv::new().await;
    let e = env.engine();
    env.docker.add_pullable("registry.test/web:1", Behaviour::ok());
    let (caller, env_id) = owner_with_environment(e).await;
    let app = image_app(e, &caller, env_id, "registry.test/web:1", runtime(HealthProbe::Tcp)).await;

    let first = deploy_now(e, &caller, app).await;
    assert_eq!(first.status, Status::Running, "{:?}", first.reason);
    assert_eq!(first.trigger, Trigger::Manual);
    for step in [
        first.building_at,
        first.starting_at,
        first.health_checking_at,
        first.routing_at,
        first.finished_at,
    ] {
        assert!(step.is_some(), "every step is stamped: {first:?}");
    }
    assert!(env.docker.calls().iter().any(|c| c == "pull registry.test/web:1"));
    let route = std::fs::read_dir(&e.deploy.proxy.dynamic_dir).unwrap().count();
    assert_eq!(route, 1, "the app's route file was written");

    let second = deploy_now(e, &caller, app).await;
    assert_eq!(second.status, Status::Running);
    let first = deploy::get(e, &caller, first.id).await.unwrap();
    assert_eq!(first.status, Status::Superseded, "a replaced deployment is not running");
    assert_eq!(first.superseded_by, Some(second.id));
    assert!(first.superseded_at.is_some());
    let history = deploy::list(e, &caller, app, 10).await.unwrap();
    assert_eq!(history.live, Some(second.id));

    // A rollback to the superseded one records what it restores.
    let back = deploy::rollback(e, &caller, first.id).await.unwrap();
    let back = run_queued(e, &caller, back, "worker-b").await;
    assert_eq!(back.status, Status::Running, "{:?}", back.reason);
    assert_eq!((back.trigger, back.rollback_of), (Trigger::Rollback, Some(first.id)));
    assert_eq!(back.image, first.image);
    assert_eq!(
        deploy::get(e, &caller, second.id).await.unwrap().status,
        Status::Superseded
    );
}

#[tokio::test]
async fn a_build_failing_at_step_n_says_so_and_leaves_nothing() {
    let env = FakeEnv::new().await;
    let e = env.engine();
    let (caller, env_id) = owner_with_environment(e).await;
    let repo = repo();
    let app = git_app(e, &caller, env_id, &repo).await;
    env.docker.script_build(BuildScript::FailAt {
        step: 3,
        of: 5,
        message: "The command '/bin/sh -c make' returned a non-zero code: 2".into(),
    });
    let d = deploy_now(e, &caller, app).await;
    assert_eq!(d.status, Status::Failed);
    assert_eq!(
        d.reason.as_deref(),
        Some("build failed at step 3/5: The command '/bin/sh -c make' returned a non-zero code: 2")
    );
    assert!(d.commit_sha.is_some(), "the clone recorded its commit");
    assert!(env.docker.container_names().is_empty());
    assert!(!e
        .deploy
        .data_dir
        .join("work")
        .join(d.id.0.simple().to_string())
        .exists());
}

#[tokio::test]
async fn a_container_that_exits_or_is_oom_killed_fails_with_its_reason() {
    let env = FakeEnv::new().await;
    let e = env.engine();
    let (caller, env_id) = owner_with_environment(e).await;
    env.docker.add_image("local/exits:1", Behaviour::Exit(3));
    env.docker.add_image("local/oom:1", Behaviour::Oom);
    // Local images with a fixed tag are used as they are (no pull).
    let exits = image_app(e, &caller, env_id, "local/exits:1", runtime(HealthProbe::Tcp)).await;
    let d = deploy_now(e, &caller, exits).await;
    assert_eq!(
        (d.status, d.reason.as_deref()),
        (Status::Failed, Some("the container exited with code 3"))
    );
    let oom = image_app(e, &caller, env_id, "local/oom:1", runtime(HealthProbe::Tcp)).await;
    let d = deploy_now(e, &caller, oom).await;
    assert_eq!(d.status, Status::Failed);
    assert!(d.reason.as_deref().unwrap().contains("OOM-killed"), "{:?}", d.reason);
    assert!(env.docker.container_names().is_empty(), "failed containers are removed");
}

#[tokio::test]
async fn health_checks_fail_with_the_body_or_with_nothing_listening() {
    let env = FakeEnv::new().await;
    let e = env.engine();
    let (caller, env_id) = owner_with_environment(e).await;
    env.docker.add_image(
        "local/notfound:1",
        Behaviour::Serve {
            status: 404,
            body: "no such page".into(),
        },
    );
    env.docker.add_image("local/silent:1", Behaviour::Silent);
    let http = runtime(HealthProbe::Http {
        path: "/healthz".into(),
    });
    let app = image_app(e, &caller, env_id, "local/notfound:1", http).await;
    let d = deploy_now(e, &caller, app).await;
    assert_eq!(d.status, Status::Failed);
    assert_eq!(
        d.reason.as_deref(),
        Some("health check failed after 1 s: GET /healthz answered 404: \"no such page\"")
    );
    let app = image_app(e, &caller, env_id, "local/silent:1", runtime(HealthProbe::Tcp)).await;
    let d = deploy_now(e, &caller, app).await;
    assert_eq!(
        (d.status, d.reason.as_deref()),
        (
            Status::Failed,
            Some("health check failed after 1 s: nothing listening on port 8080")
        )
    );
}

#[tokio::test]
async fn a_build_can_be_cancelled_and_a_lost_lease_stops_the_worker() {
    let env = FakeEnv::new().await;
    let e = env.engine();
    let (caller, env_id) = owner_with_environment(e).await;
    let repo = repo();

    // Cancel mid-build: the heartbeat carries the request in, the build stops.
    let app = git_app(e, &caller, env_id, &repo).await;
    env.docker.script_build(BuildScript::Hang);
    let id = deploy::deploy(e, &caller, app).await.unwrap();
    let claimed = job::claim(e, "worker-a").await.unwrap().unwrap();
    let run = tokio::spawn({
        let e = e.clone();
        async move { run_one(&job::DeployKind::default(), &e, claimed, "worker-a".into()).await }
    });
    wait_for(e, &caller, id, Status::Building).await;
    deploy::cancel(e, &caller, id).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap()
        .unwrap();
    let d = deploy::get(e, &caller, id).await.unwrap();
    assert_eq!((d.status, d.reason.as_deref()), (Status::Cancelled, Some("cancelled")));

    // Lease lost: another process took the deployment over; this worker stops
    // at once and writes nothing more.
    let app = git_app(e, &caller, env_id, &repo).await;
    env.docker.script_build(BuildScript::Hang);
    let id = deploy::deploy(e, &caller, app).await.unwrap();
    let claimed = job::claim(e, "worker-a").await.unwrap().unwrap();
    let run = tokio::spawn({
        let e = e.clone();
        async move { run_one(&job::DeployKind::default(), &e, claimed, "worker-a".into()).await }
    });
    wait_for(e, &caller, id, Status::Building).await;
    take_over(e, id, "worker-z").await;
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap()
        .unwrap();
    let d = deploy::get(e, &caller, id).await.unwrap();
    assert_eq!(d.status, Status::Building, "the new holder's deployment is left alone");
    assert_eq!(d.reason, None);
}

#[tokio::test]
async fn docker_going_away_during_a_build_is_the_reason() {
    let env = FakeEnv::new().await;
    let e = env.engine();
    let (caller, env_id) = owner_with_environment(e).await;
    let repo = repo();
    let app = git_app(e, &caller, env_id, &repo).await;
    env.docker.script_build(BuildScript::EngineStops);
    let d = deploy_now(e, &caller, app).await;
    assert_eq!(d.status, Status::Failed);
    let reason = d.reason.unwrap();
    assert!(
        reason.starts_with("the Docker engine stopped during the build (at step 1/2)"),
        "{reason}"
    );
}

/// The state machine is asked before every write: a live deployment cannot be
/// cancelled, neither through `cancel` nor by a direct transition, and the row
/// stays as it was.
#[tokio::test]
async fn illegal_transitions_are_refused_and_change_nothing() {
    let env = FakeEnv::new().await;
    let e = env.engine();
    env.docker.add_image("local/ok:1", Behaviour::ok());
    let (caller, env_id) = owner_with_environment(e).await;
    let app = image_app(e, &caller, env_id, "local/ok:1", runtime(HealthProbe::Tcp)).await;
    let live = deploy_now(e, &caller, app).await;
    assert_eq!(live.status, Status::Running);

    let refused = deploy::cancel(e, &caller, live.id).await.unwrap_err();
    assert!(matches!(refused, DeployError::Conflict(_)), "{refused:?}");
    let mut conn = e.db.get().await.unwrap();
    let direct = transition(
        &mut conn,
        Move::new(live.id, Status::Running, Status::Cancelled, Holder::Anyone).note("nope"),
    )
    .await;
    assert!(matches!(direct, Err(TransitionError::Illegal(_))), "{direct:?}");
    let after = deploy::get(e, &caller, live.id).await.unwrap();
    assert_eq!(
        (after.status, after.reason, after.cancel_requested),
        (Status::Running, None, false)
    );

    // A move from a state the row is not in is refused by the database's check.
    let stale = transition(
        &mut conn,
        Move::new(live.id, Status::Routing, Status::Running, Holder::Worker("worker-a")),
    )
    .await;
    assert!(matches!(stale, Err(TransitionError::Lost)), "{stale:?}");
}

async fn wait_for(e: &Engine, caller: &Caller, id: DeploymentId, want: Status) {
    for _ in 0..200 {
        if deploy::get(e, caller, id).await.unwrap().status == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("deployment {id} never reached {want}");
}

async fn take_over(e: &Engine, id: DeploymentId, worker: &str) {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use engine::db::schema::deployments;
    let mut conn = e.db.get().await.unwrap();
    diesel::update(deployments::table.find(id))
        .set(deployments::worker_id.eq(worker))
        .execute(&mut conn)
        .await
        .unwrap();
}

/// One organization queueing many deployments does not starve another: with
/// one of its deployments running, the next claim goes to the other
/// organization's newer deployment before its own older ones.
#[tokio::test]
async fn claiming_is_fair_across_organizations() {
    let env = FakeEnv::new().await;
    let e = env.engine();
    let (busy, busy_env) = owner_with_environment(e).await;
    let org = engine::orgs::create(e, &busy, engine::names::OrgName::parse("Quiet").unwrap())
        .await
        .unwrap();
    let quiet = Caller {
        org_id: org,
        ..busy.clone()
    };
    let p = engine::projects::create(
        e,
        &quiet,
        engine::names::ProjectName::parse("Q").unwrap(),
        Description::default(),
    )
    .await
    .unwrap();
    let quiet_env = EnvironmentId(engine::projects::get(e, &quiet, p).await.unwrap().environments[0].id);
    env.docker
        .add_pullable("registry.test/web:1", engine::docker::fake::Behaviour::ok());
    let mut queued = Vec::new();
    for _ in 0..3 {
        let app = image_app(e, &busy, busy_env, "registry.test/web:1", runtime(HealthProbe::Tcp)).await;
        queued.push(deploy::deploy(e, &busy, app).await.unwrap());
    }
    let other = image_app(e, &quiet, quiet_env, "registry.test/web:1", runtime(HealthProbe::Tcp)).await;
    let late = deploy::deploy(e, &quiet, other).await.unwrap();

    let first = job::claim(e, "w1").await.unwrap().unwrap();
    assert_eq!(first.id, queued[0], "the oldest goes first when nothing runs");
    let second = job::claim(e, "w2").await.unwrap().unwrap();
    assert_eq!(second.id, late, "the organization with nothing running is next");
    let third = job::claim(e, "w3").await.unwrap().unwrap();
    assert_eq!(third.id, queued[1]);
}

/// A host bind mount saved while its directory was allowed is not mounted once
/// the operator's allow-list no longer covers it: the deploy fails, naming it.
#[tokio::test]
async fn a_bind_mount_outside_the_allowed_roots_is_never_mounted() {
    let env = FakeEnv::new().await;
    env.docker
        .add_pullable("registry.test/web:1", engine::docker::fake::Behaviour::ok());
    let mut open = (*env.engine().deploy).clone();
    open.host.bind_roots = vec!["/srv/shared".into()];
    let allowed = env.engine().clone().with_deploy(open);
    let (caller, env_id) = owner_with_environment(&allowed).await;
    let mut rt = runtime(HealthProbe::Tcp);
    rt.volumes = vec![engine::apps::spec::Volume {
        source: "/srv/shared/uploads".into(),
        target: "/uploads".into(),
        bind: true,
        read_only: false,
    }];
    let app = image_app(&allowed, &caller, env_id, "registry.test/web:1", rt).await;
    let d = deploy_now(&allowed, &caller, app).await;
    assert_eq!(d.status, Status::Running, "{:?}", d.reason);

    // The operator narrows BERTH_BIND_ROOTS (here: to nothing).
    let narrowed = env.engine();
    let d = deploy_now(narrowed, &caller, app).await;
    assert_eq!(d.status, Status::Failed);
    assert!(
        d.reason
            .as_deref()
            .unwrap_or("")
            .contains("/srv/shared/uploads is not under BERTH_BIND_ROOTS"),
        "{:?}",
        d.reason
    );
}
