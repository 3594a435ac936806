//! Applications against real PostgreSQL: roles (host bind mounts are for instance
//! administrators, deletion for organization admins), names unique per
//! organization and hosts per server, and secrets sealed at rest.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use engine::accounts::{self, Caller, NewAccount};
use engine::apps::spec::{AppName, Build, DomainName, Runtime, Source, Volume};
use engine::apps::{self, AppError, NewApp, NewDomain};
use engine::ids::EnvironmentId;
use engine::names::{Description, OrgName, ProjectName, Role};
use engine::orgs::{self, Acceptor};
use engine::testing::TestEngine;
use engine::{projects, Classify, Engine, ErrorKind};

async fn setup(e: &Engine) -> (Caller, Caller, EnvironmentId) {
    let owner = engine::testing::onboard(
        e,
        NewAccount::parse("Ada", "ada@example.com", "correct horse battery").unwrap(),
        OrgName::parse("Acme").unwrap(),
    )
    .await
    .unwrap()
    .0;
    let (_, token) = orgs::create_invite(e, &owner, Role::Member).await.unwrap();
    let account = NewAccount::parse("Bob", "bob@example.com", "long enough pw").unwrap();
    let session = orgs::accept_invite(e, &token, Acceptor::New(account)).await.unwrap();
    let member = accounts::authenticate(e, session).await.unwrap();
    let p = projects::create(e, &owner, ProjectName::parse("Shop").unwrap(), Description::default())
        .await
        .unwrap();
    let env = EnvironmentId(projects::get(e, &owner, p).await.unwrap().environments[0].id);
    (owner, member, env)
}

fn new_app(name: &str, env: EnvironmentId, runtime: Runtime) -> NewApp {
    NewApp {
        name: AppName::parse(name).unwrap(),
        description: Description::default(),
        environment: env,
        source: Source::Image {
            image: "nginx:1.27".into(),
            registry_user: Some("robot".into()),
        },
        source_secret: Some("registry-password-123".into()),
        build: Build::default(),
        runtime,
    }
}

fn bind(source: &str) -> Runtime {
    Runtime {
        volumes: vec![Volume {
            source: source.into(),
            target: "/mnt/host".into(),
            bind: true,
            read_only: false,
        }],
        ..Runtime::default()
    }
}

/// Host bind mounts are a power over the host: only instance administrators
/// have it, only under BERTH_BIND_ROOTS, and the Docker socket never comes with
/// a parent directory. Owning an organization one made oneself is not enough.
#[tokio::test]
async fn only_instance_admins_mount_host_paths_and_members_cannot_delete_apps() {
    let t = TestEngine::new().await;
    let root = std::env::temp_dir().join(format!("berth-binds-{}", uuid::Uuid::new_v4().simple()));
    let mut deploy = (*t.engine.deploy).clone();
    deploy.host.bind_roots = vec![root.clone(), "/var/run".into()];
    let e = &t.engine.clone().with_deploy(deploy);
    let (admin, member, env) = setup(e).await;
    let inside = root.join("data");
    let inside = inside.to_str().unwrap();

    // A stranger signs up, and (the operator allowing it) makes an organization.
    engine::instance::update_settings(
        e,
        &admin,
        engine::instance::Settings {
            org_creation: engine::instance::OrgCreation::Anyone,
        },
    )
    .await
    .unwrap();
    let (_, token) = orgs::create_invite(e, &admin, Role::Member).await.unwrap();
    let session = orgs::accept_invite(
        e,
        &token,
        Acceptor::New(NewAccount::parse("Eve", "eve@example.com", "long enough pw").unwrap()),
    )
    .await
    .unwrap();
    let eve = accounts::authenticate(e, session).await.unwrap();
    let own = orgs::create(e, &eve, OrgName::parse("Eve Inc").unwrap()).await.unwrap();
    orgs::switch(e, &eve, own).await.unwrap();
    let eve = accounts::authenticate(e, eve.session().unwrap().clone()).await.unwrap();
    assert_eq!((eve.role, eve.instance_admin), (Role::Owner, false));
    let p = projects::create(e, &eve, ProjectName::parse("Mine").unwrap(), Description::default())
        .await
        .unwrap();
    let eve_env = EnvironmentId(projects::get(e, &eve, p).await.unwrap().environments[0].id);
    for path in ["/var/run/docker.sock", inside] {
        let err = apps::create(e, &eve, new_app("web", eve_env, bind(path)))
            .await
            .unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::Forbidden(_)), "{path}: {err:?}");
    }

    // A member of the admin's organization: neither.
    let err = apps::create(e, &member, new_app("web", env, bind(inside)))
        .await
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Forbidden(_)), "{err:?}");
    let id = apps::create(e, &member, new_app("web", env, Runtime::default()))
        .await
        .unwrap();
    assert!(matches!(
        apps::update_runtime(e, &member, id, bind(inside))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Forbidden(_)
    ));
    assert!(matches!(
        apps::delete(e, &member, id, false).await.unwrap_err().kind(),
        ErrorKind::Forbidden(_)
    ));

    // The instance administrator: under a root, yes; the socket or outside, no.
    for path in ["/var/run/docker.sock", "/etc", "/", "/var/run/../etc"] {
        let err = apps::update_runtime(e, &admin, id, bind(path)).await.unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::Validation { field: "volumes", .. }),
            "{path}: {err:?}"
        );
    }
    apps::update_runtime(e, &admin, id, bind(inside)).await.unwrap();
    apps::update_runtime(e, &admin, id, bind("/var/run/postgresql"))
        .await
        .unwrap();
}

#[tokio::test]
async fn names_are_unique_per_organization_hosts_per_server_and_secrets_are_sealed() {
    let t = TestEngine::new().await;
    let e = &t.engine;
    let (owner, _, env) = setup(e).await;
    let id = apps::create(e, &owner, new_app("web", env, Runtime::default()))
        .await
        .unwrap();
    let dup = apps::create(e, &owner, new_app("web", env, Runtime::default()))
        .await
        .unwrap_err();
    assert_eq!(
        dup.kind(),
        ErrorKind::Validation {
            field: "name",
            message: "an application with this name already exists in this organization".into()
        }
    );

    // Another organization may use the same name: nothing on the server is
    // named by it alone (containers, volumes and images go by the app's ID).
    let other_org = orgs::create(e, &owner, OrgName::parse("Other").unwrap()).await.unwrap();
    orgs::switch(e, &owner, other_org).await.unwrap();
    let there = accounts::authenticate(e, owner.session().unwrap().clone())
        .await
        .unwrap();
    let p = projects::create(e, &there, ProjectName::parse("Shop").unwrap(), Description::default())
        .await
        .unwrap();
    let there_env = EnvironmentId(projects::get(e, &there, p).await.unwrap().environments[0].id);
    let twin = apps::create(e, &there, new_app("web", there_env, Runtime::default()))
        .await
        .unwrap();
    let twin_host = apps::get(e, &there, twin).await.unwrap().domains[0].host.clone();
    orgs::switch(e, &owner, owner.org_id).await.unwrap();

    // The generated domain exists; another app cannot take a used host.
    let detail = apps::get(e, &owner, id).await.unwrap();
    let host = detail.domains[0].host.clone();
    let suffix = &id.0.simple().to_string()[..8];
    assert_eq!(host, format!("web-{suffix}.localhost"));
    assert_ne!(host, twin_host);
    let other = apps::create(e, &owner, new_app("api", env, Runtime::default()))
        .await
        .unwrap();
    let taken = apps::add_domain(
        e,
        &owner,
        other,
        NewDomain {
            host: DomainName::parse(&twin_host).unwrap(),
            path_prefix: "/api".into(),
            strip_prefix: true,
            port: None,
            https: false,
            cert: Default::default(),
            options: Default::default(),
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(taken, AppError::Invalid(ref v) if v.field == "host"),
        "{taken:?}"
    );

    // Wildcards never reach across organizations: one over another
    // organization's host, and a host under another organization's wildcard,
    // are refused (naming the host); within one organization both may stand.
    let route = engine::testing::plain_domain;
    let refused = |err: &AppError| matches!(err, AppError::Invalid(v) if v.field == "host" && v.message.contains("another organization"));
    apps::add_domain(e, &owner, other, route("a.shop.test")).await.unwrap();
    orgs::switch(e, &owner, other_org).await.unwrap();
    let there = accounts::authenticate(e, owner.session().unwrap().clone())
        .await
        .unwrap();
    let err = apps::add_domain(e, &there, twin, route("*.shop.test"))
        .await
        .unwrap_err();
    assert!(refused(&err), "{err:?}");
    orgs::switch(e, &owner, owner.org_id).await.unwrap();
    apps::add_domain(e, &owner, id, route("*.shop.test")).await.unwrap();
    orgs::switch(e, &owner, other_org).await.unwrap();
    let err = apps::add_domain(e, &there, twin, route("b.shop.test"))
        .await
        .unwrap_err();
    assert!(refused(&err), "{err:?}");
    // Deeper or beside: not covered.
    apps::add_domain(e, &there, twin, route("*.x.shop.test")).await.unwrap();
    apps::add_domain(e, &there, twin, route("*.team.test")).await.unwrap();
    orgs::switch(e, &owner, owner.org_id).await.unwrap();
    let err = apps::add_domain(e, &owner, other, route("c.team.test"))
        .await
        .unwrap_err();
    assert!(matches!(err, AppError::Invalid(ref v) if v.field == "host"), "{err:?}");
    let hosts: Vec<String> = apps::get(e, &owner, other)
        .await
        .unwrap()
        .domains
        .into_iter()
        .map(|d| d.host)
        .collect();
    assert!(!hosts.contains(&"c.team.test".to_owned()), "nothing changed: {hosts:?}");

    // Env values and the registry password never sit in the database in the clear.
    apps::set_env(e, &owner, id, vec![("API_TOKEN".into(), "very-secret-value".into())])
        .await
        .unwrap();
    let mut conn = e.db.get().await.unwrap();
    let dump: Vec<(String, Option<String>)> = engine::db::schema::applications::table
        .select((
            diesel::dsl::sql::<diesel::sql_types::Text>("row_to_json(applications)::text"),
            engine::db::schema::applications::source_secret,
        ))
        .load(&mut conn)
        .await
        .unwrap();
    let values: Vec<String> = engine::db::schema::app_env_vars::table
        .select(engine::db::schema::app_env_vars::value)
        .load(&mut conn)
        .await
        .unwrap();
    let all = format!("{dump:?} {values:?}");
    assert!(
        !all.contains("very-secret-value") && !all.contains("registry-password-123"),
        "{all}"
    );
    assert!(values[0].starts_with("v2:"));
    let hooks = apps::hooks(e, &owner, id).await.unwrap();
    assert!(!all.contains(&hooks.github_secret) && !all.contains(&hooks.deploy_token));
    assert_eq!(
        apps::env_values(e, &owner, id).await.unwrap(),
        vec![("API_TOKEN".to_owned(), "very-secret-value".to_owned())]
    );
}

/// A stored registry password is for one registry: moving the image to another
/// registry drops it (Docker would send it there), unless a new one is given;
/// a new tag on the same registry keeps it.
#[tokio::test]
async fn moving_to_another_registry_drops_the_stored_password() {
    let t = TestEngine::new().await;
    let e = &t.engine;
    let (owner, _, env) = setup(e).await;
    let mut app = new_app("web", env, Runtime::default());
    app.source = Source::Image {
        image: "registry.test/team/web:1".into(),
        registry_user: Some("robot".into()),
    };
    let id = apps::create(e, &owner, app).await.unwrap();
    let stored = |e: &Engine, id| {
        let owner = owner.clone();
        let e = e.clone();
        async move { apps::get(&e, &owner, id).await.unwrap().app.has_source_secret }
    };
    assert!(stored(e, id).await);
    let image = |image: &str| Source::Image {
        image: image.into(),
        registry_user: Some("robot".into()),
    };
    apps::update_source(
        e,
        &owner,
        id,
        image("registry.test/team/web:2"),
        apps::SecretChange::Keep,
        Build::default(),
    )
    .await
    .unwrap();
    assert!(stored(e, id).await, "same registry, new tag: kept");
    apps::update_source(
        e,
        &owner,
        id,
        image("evil.example/team/web:2"),
        apps::SecretChange::Keep,
        Build::default(),
    )
    .await
    .unwrap();
    assert!(!stored(e, id).await, "another registry: dropped");
    apps::update_source(
        e,
        &owner,
        id,
        image("evil.example/team/web:3"),
        apps::SecretChange::Set("its-own-password".into()),
        Build::default(),
    )
    .await
    .unwrap();
    assert!(stored(e, id).await, "a new one given with the move is stored");
    apps::update_source(
        e,
        &owner,
        id,
        image("nginx:1.27"),
        apps::SecretChange::Keep,
        Build::default(),
    )
    .await
    .unwrap();
    assert!(!stored(e, id).await, "Docker Hub is another registry too");
}
