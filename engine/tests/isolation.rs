//! Tenant isolation on a real Docker engine: each organization's containers
//! live on a network of their own (an app reaches its own database by name, and
//! another organization's not even by address); volumes are named from IDs, so
//! names that spell the same string never share one; an environment goes only
//! through the app and database delete paths (members may not); and another
//! app's build, or an image only on this host, is never run in its place.

use engine::accounts::Caller;
use engine::apps::spec::{Build, HealthCheck, HealthProbe, Runtime, Source, Volume};
use engine::apps::{self, NewApp};
use engine::deploy::{self, Deployment, Status};
use engine::ids::{AppId, DeploymentId, EnvironmentId, ServiceId};
use engine::names::{Description, EnvironmentName, OrgName, ProjectName, Role};
use engine::services::{self, NewService};
use engine::testing::{owner_with_environment, DeployEnv, GitRepo, TEST_BASE_IMAGE};
use engine::{Classify, Engine, ErrorKind};
use std::time::{Duration, Instant};

/// A busybox httpd on 8080 (the test base image), with `volumes`.
fn web(env: EnvironmentId, name: &str, volumes: Vec<Volume>) -> NewApp {
    NewApp {
        name: apps::spec::AppName::parse(name).unwrap(),
        description: Description::default(),
        environment: env,
        source: engine::testing::image_source(TEST_BASE_IMAGE),
        source_secret: None,
        build: Build::default(),
        runtime: Runtime {
            port: 8080,
            command: Some(vec!["httpd".into(), "-f".into(), "-p".into(), "8080".into()]),
            health: HealthCheck {
                probe: HealthProbe::Tcp,
                interval_ms: 200,
                timeout_ms: 1000,
                retries: 3,
                start_period_secs: 10,
            },
            volumes,
            drain_secs: 0,
            ..Runtime::default()
        },
    }
}

fn volume(source: &str) -> Volume {
    Volume {
        source: source.into(),
        target: "/data".into(),
        bind: false,
        read_only: false,
    }
}

async fn settle(e: &Engine, caller: &Caller, id: DeploymentId) -> Deployment {
    let start = Instant::now();
    loop {
        let d = deploy::get(e, caller, id).await.unwrap();
        if d.status.is_finished() {
            return d;
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "deployment stuck in {}",
            d.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn deployed(e: &Engine, caller: &Caller, app: AppId) -> (Deployment, String) {
    let d = settle(e, caller, deploy::deploy(e, caller, app).await.unwrap()).await;
    assert_eq!(d.status, Status::Running, "{:?}", d.reason);
    let name = apps::get(e, caller, app).await.unwrap().app.name;
    let container = deploy::runtime::container_name(e, &name, d.id);
    (d, container)
}

/// Runs `argv` in `container`; its exit code and output.
async fn exec(e: &Engine, container: &str, argv: &[&str]) -> (i64, String) {
    let exec = engine::docker::Exec {
        argv: argv.iter().map(|s| (*s).to_owned()).collect(),
        env: Vec::new(),
    };
    let out = engine::docker::exec_capture(&*e.docker, container, &exec, Duration::from_secs(30))
        .await
        .expect("exec");
    (out.exit_code, out.said())
}

/// A second organization owned by the same (instance administrator) person.
async fn other_org(e: &Engine, owner: &Caller, name: &str) -> (Caller, EnvironmentId) {
    let org = engine::orgs::create(e, owner, OrgName::parse(name).unwrap())
        .await
        .unwrap();
    let caller = Caller {
        org_id: org,
        role: Role::Owner,
        ..owner.clone()
    };
    let p = engine::projects::create(e, &caller, ProjectName::parse("P").unwrap(), Description::default())
        .await
        .unwrap();
    let env = EnvironmentId(engine::projects::get(e, &caller, p).await.unwrap().environments[0].id);
    (caller, env)
}

async fn postgres(e: &Engine, caller: &Caller, env: EnvironmentId, name: &str) -> ServiceId {
    let new = NewService::parse(e, env, name, "postgres", "", "", "", "", "", None).expect("valid service");
    let id = services::create(e, caller, new).await.expect("create service");
    let start = Instant::now();
    loop {
        let d = services::get(e, caller, id).await.unwrap();
        if d.ready == Some(true) {
            return id;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{name} never became ready: {:?}",
            d.row.last_error
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn organizations_cannot_reach_each_others_containers_or_volumes() {
    let env = DeployEnv::new().await;
    let e = env.engine();
    let (a, a_env) = owner_with_environment(e).await;
    let (b, b_env) = other_org(e, &a, "Beta").await;
    let (stop, worker) = env.start_worker();

    let a_db = postgres(e, &a, a_env, "shared-name").await;
    let b_db = postgres(e, &b, b_env, "shared-name").await;
    // `blog` + `api-uploads` and `blog-api` + `uploads`: once the same volume.
    let a_app = apps::create(e, &a, web(a_env, "blog", vec![volume("api-uploads")]))
        .await
        .unwrap();
    let b_app = apps::create(e, &b, web(b_env, "blog-api", vec![volume("uploads")]))
        .await
        .unwrap();
    let (_, a_box) = deployed(e, &a, a_app).await;
    let (_, b_box) = deployed(e, &b, b_app).await;

    // A's app reaches A's database by its name ...
    let (code, said) = exec(e, &a_box, &["sh", "-c", "echo | nc -w 3 shared-name 5432"]).await;
    assert_eq!(code, 0, "A reaches its own database: {said}");
    // ... and not B's: the same name is A's own, and B's address is unroutable.
    let b_container = services::get(e, &b, b_db).await.unwrap();
    let b_name = services::container::container_name(e, b_container.row.id, &b_container.row.name, false);
    let info = e
        .docker
        .inspect_container(&b_name)
        .await
        .unwrap()
        .expect("B's database container");
    let b_network = engine::network::of(e, b.org_id);
    let b_ip = info
        .addresses
        .get(&b_network)
        .expect("B's database is on B's network")
        .clone();
    let (code, said) = exec(e, &a_box, &["sh", "-c", &format!("echo | nc -w 3 {b_ip} 5432")]).await;
    assert_ne!(code, 0, "A's app connected to B's database at {b_ip}: {said}");
    // B's app reaches B's own at that address (the check above is not vacuous).
    let (code, said) = exec(e, &b_box, &["sh", "-c", &format!("echo | nc -w 3 {b_ip} 5432")]).await;
    assert_eq!(code, 0, "B reaches its database by address: {said}");
    let _ = a_db;

    // The two volumes are two: A's file is not in B's.
    let (code, said) = exec(e, &a_box, &["sh", "-c", "echo a-secret > /data/f"]).await;
    assert_eq!(code, 0, "{said}");
    let (code, said) = exec(e, &b_box, &["sh", "-c", "cat /data/f"]).await;
    assert_ne!(code, 0, "B read A's file: {said}");

    // Containers are on their organization's network only.
    let a_info = e.docker.inspect_container(&a_box).await.unwrap().unwrap();
    assert_eq!(
        a_info.addresses.keys().collect::<Vec<_>>(),
        vec![&engine::network::of(e, a.org_id)]
    );

    stop.cancel();
    let _ = worker.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_environment_goes_through_the_delete_paths_and_only_admins_may() {
    let env = DeployEnv::new().await;
    let e = env.engine();
    let (owner, _) = owner_with_environment(e).await;
    let project = engine::projects::list(e, &owner).await.unwrap()[0].project.id;
    let staging = engine::projects::add_environment(
        e,
        &owner,
        engine::ids::ProjectId(project),
        EnvironmentName::parse("staging").unwrap(),
    )
    .await
    .unwrap();
    let (stop, worker) = env.start_worker();
    let app = apps::create(e, &owner, web(staging, "stage-web", vec![volume("cache")]))
        .await
        .unwrap();
    let (_, app_box) = deployed(e, &owner, app).await;
    let db = postgres(e, &owner, staging, "stage-db").await;
    let db_row = services::get(e, &owner, db).await.unwrap().row;
    let db_box = services::container::container_name(e, db_row.id, &db_row.name, false);

    let member = Caller {
        role: Role::Member,
        ..owner.clone()
    };
    let refused = engine::teardown::delete_environment(e, &member, staging, true)
        .await
        .unwrap_err();
    assert!(matches!(refused.kind(), ErrorKind::Forbidden(_)), "{refused:?}");
    assert!(
        e.docker.inspect_container(&app_box).await.unwrap().is_some(),
        "nothing changed"
    );

    engine::teardown::delete_environment(e, &owner, staging, false)
        .await
        .unwrap();
    assert!(
        e.docker.inspect_container(&app_box).await.unwrap().is_none(),
        "the app's container is gone"
    );
    assert!(
        e.docker.inspect_container(&db_box).await.unwrap().is_none(),
        "the database's container is gone"
    );
    let route = engine::proxy::route_file(e, app);
    assert!(!route.exists(), "the route is gone");
    assert!(matches!(apps::get(e, &owner, app).await, Err(apps::AppError::NotFound)));
    // Volumes stay unless asked (the database's data is there).
    let volumes = e
        .docker
        .list_volumes(&[(engine::docker::LABEL_INSTANCE, Some(e.deploy.instance.as_str()))])
        .await
        .unwrap();
    assert!(volumes.iter().any(|v| v == &db_row.volume), "{volumes:?}");

    stop.cancel();
    let _ = worker.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_apps_build_and_images_only_on_this_host_are_refused() {
    let env = DeployEnv::new().await;
    let e = env.engine();
    let (a, a_env) = owner_with_environment(e).await;
    let (b, b_env) = other_org(e, &a, "Beta").await;
    let (stop, worker) = env.start_worker();
    let a_app = apps::create(e, &a, web(a_env, "victim", Vec::new())).await.unwrap();
    let (a_dep, _) = deployed(e, &a, a_app).await;
    let a_image = deploy::runtime::image_tag(a_app, a_dep.id);

    // As B's app image: refused at the form, in every spelling.
    for image in [
        a_image.clone(),
        format!("docker.io/{a_image}"),
        deploy::runtime::image_repo(a_app),
    ] {
        let mut new = web(b_env, "thief", Vec::new());
        new.source = engine::testing::image_source(&image);
        let err = apps::create(e, &b, new).await.unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::Validation { field: "image", .. }),
            "{image}: {err:?}"
        );
    }

    // As the base of B's Dockerfile (an ARG default spelling it): the build is
    // refused with the reason, before anything is built.
    let repo = GitRepo::new();
    repo.commit(
        &[(
            "Dockerfile",
            &format!("ARG BASE={a_image}\nFROM busybox AS first\nFROM ${{BASE}}\n"),
        )],
        "steal",
    );
    let mut new = web(b_env, "thief-git", Vec::new());
    new.source = Source::Git {
        url: repo.url(),
        branch: "main".into(),
        subdir: ".".into(),
    };
    let b_app = apps::create(e, &b, new).await.unwrap();
    let d = settle(e, &b, deploy::deploy(e, &b, b_app).await.unwrap()).await;
    assert_eq!(d.status, Status::Failed);
    assert!(d.reason.as_deref().unwrap_or("").contains("berth/"), "{:?}", d.reason);

    // An image only on this host: with BERTH_ALLOW_LOCAL_IMAGES off it is pulled
    // (and there is no registry here), never run from the local copy.
    stop.cancel();
    let _ = worker.await;
    let mut strict = (*e.deploy).clone();
    strict.host.allow_local_images = false;
    let strict = e.clone().with_deploy(strict);
    let (stop, worker) = {
        let token = tokio_util::sync::CancellationToken::new();
        (token.clone(), tokio::spawn(engine::worker::run(strict.clone(), token)))
    };
    let local = apps::create(&strict, &b, web(b_env, "local-only", Vec::new()))
        .await
        .unwrap();
    let d = settle(&strict, &b, deploy::deploy(&strict, &b, local).await.unwrap()).await;
    assert_eq!(d.status, Status::Failed, "a local-only image ran");
    assert!(d.reason.as_deref().unwrap_or("").contains("pull"), "{:?}", d.reason);
    stop.cancel();
    let _ = worker.await;
}
