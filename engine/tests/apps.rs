//! Applications against real PostgreSQL: roles (host bind mounts and deletion are
//! for admins), server-wide unique names and hosts, and secrets sealed at rest.

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
    let owner = accounts::onboard(
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

#[tokio::test]
async fn members_cannot_mount_host_paths_or_delete_apps() {
    let t = TestEngine::new().await;
    let e = &t.engine;
    let (owner, member, env) = setup(e).await;
    let bind = Runtime {
        volumes: vec![Volume {
            source: "/var/run/docker.sock".into(),
            target: "/var/run/docker.sock".into(),
            bind: true,
            read_only: false,
        }],
        ..Runtime::default()
    };
    let err = apps::create(e, &member, new_app("web", env, bind.clone()))
        .await
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Forbidden(_)), "{err:?}");
    let id = apps::create(e, &member, new_app("web", env, Runtime::default()))
        .await
        .unwrap();
    assert!(matches!(
        apps::update_runtime(e, &member, id, bind.clone())
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Forbidden(_)
    ));
    assert!(matches!(
        apps::delete(e, &member, id).await.unwrap_err().kind(),
        ErrorKind::Forbidden(_)
    ));
    // An admin may.
    apps::update_runtime(e, &owner, id, bind).await.unwrap();
}

#[tokio::test]
async fn names_and_hosts_are_unique_on_the_server_and_secrets_are_sealed() {
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
            message: "an application with this name already exists on this server".into()
        }
    );

    // The generated domain exists; another app cannot take a used host.
    let detail = apps::get(e, &owner, id).await.unwrap();
    assert_eq!(detail.domains[0].host, "web.localhost");
    let other = apps::create(e, &owner, new_app("api", env, Runtime::default()))
        .await
        .unwrap();
    let taken = apps::add_domain(
        e,
        &owner,
        other,
        NewDomain {
            host: DomainName::parse("web.localhost").unwrap(),
            path_prefix: "/api".into(),
            strip_prefix: true,
            port: None,
            https: false,
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(taken, AppError::Invalid(ref v) if v.field == "host"),
        "{taken:?}"
    );

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
    assert!(values[0].starts_with("v1:"));
    let hooks = apps::hooks(e, &owner, id).await.unwrap();
    assert!(!all.contains(&hooks.github_secret) && !all.contains(&hooks.deploy_token));
    assert_eq!(
        apps::env_values(e, &owner, id).await.unwrap(),
        vec![("API_TOKEN".to_owned(), "very-secret-value".to_owned())]
    );
}
