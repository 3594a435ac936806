//! Secrets at rest, through the real database: each sealed value opens only in
//! the row and column it was sealed for, and a database sealed by an earlier
//! Berth (unbound `v1:` values) is resealed at start and keeps working.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use engine::apps::spec::{Build, Runtime, Source};
use engine::apps::{self, NewApp};
use engine::db::schema::{app_env_vars, applications};
use engine::ids::AppId;
use engine::names::Description;
use engine::testing::{owner_with_environment, TestEngine};

async fn app(t: &TestEngine, caller: &engine::accounts::Caller, env: engine::ids::EnvironmentId, name: &str) -> AppId {
    apps::create(
        &t.engine,
        caller,
        NewApp {
            name: apps::spec::AppName::parse(&format!("{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..6]))
                .unwrap(),
            description: Description::default(),
            environment: env,
            source: Source::Image {
                image: "registry.test/app:1".into(),
                registry_user: Some("deployer".into()),
            },
            source_secret: Some("registry-password".into()),
            build: Build::default(),
            runtime: Runtime::default(),
        },
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_sealed_value_moved_to_another_row_does_not_open() {
    let t = TestEngine::new().await;
    let e = &t.engine;
    let (caller, env) = owner_with_environment(e).await;
    let a = app(&t, &caller, env, "a").await;
    let b = app(&t, &caller, env, "b").await;
    apps::put_env(e, &caller, a, "SECRET", "only-for-a").await.unwrap();
    apps::put_env(e, &caller, b, "SECRET", "for-b").await.unwrap();
    assert_eq!(
        apps::env_values(e, &caller, a).await.unwrap(),
        vec![("SECRET".to_owned(), "only-for-a".to_owned())]
    );

    // Someone with write access to the database copies a's ciphertext into b's row.
    let mut conn = AsyncPgConnection::establish(&t.db.url).await.unwrap();
    let sealed: String = app_env_vars::table
        .filter(app_env_vars::application_id.eq(a.0))
        .select(app_env_vars::value)
        .first(&mut conn)
        .await
        .unwrap();
    assert!(sealed.starts_with("v2:") && !sealed.contains("only-for-a"));
    diesel::update(app_env_vars::table.filter(app_env_vars::application_id.eq(b.0)))
        .set(app_env_vars::value.eq(&sealed))
        .execute(&mut conn)
        .await
        .unwrap();
    let moved = apps::env_values(e, &caller, b).await.unwrap_err();
    assert!(moved.to_string().contains("SECRET"), "{moved}");

    // Nor does a value moved to another column of the same row.
    let token: String = applications::table
        .find(a.0)
        .select(applications::deploy_token)
        .first(&mut conn)
        .await
        .unwrap();
    diesel::update(applications::table.find(a.0))
        .set(applications::webhook_secret.eq(&token))
        .execute(&mut conn)
        .await
        .unwrap();
    assert!(apps::hooks(e, &caller, a).await.is_err());
}

#[tokio::test]
async fn a_database_sealed_by_an_earlier_berth_is_resealed_and_keeps_working() {
    let t = TestEngine::new().await;
    let e = &t.engine;
    let (caller, env) = owner_with_environment(e).await;
    let a = app(&t, &caller, env, "old").await;
    apps::put_env(e, &caller, a, "DATABASE_URL", "postgres://u:p@db/app")
        .await
        .unwrap();
    let hooks = apps::hooks(e, &caller, a).await.unwrap();

    // Rewrite every sealed value as an earlier Berth stored it (unbound `v1:`).
    let mut conn = AsyncPgConnection::establish(&t.db.url).await.unwrap();
    let old = |plain: &str| e.secret.seal_unbound(plain.as_bytes());
    diesel::update(applications::table.find(a.0))
        .set((
            applications::source_secret.eq(old("registry-password")),
            applications::webhook_secret.eq(old(&hooks.github_secret)),
            applications::deploy_token.eq(old(&hooks.deploy_token)),
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    diesel::update(app_env_vars::table.filter(app_env_vars::application_id.eq(a.0)))
        .set(app_env_vars::value.eq(old("postgres://u:p@db/app")))
        .execute(&mut conn)
        .await
        .unwrap();
    assert!(
        apps::env_values(e, &caller, a).await.is_err(),
        "unbound values are not opened in use"
    );

    let moved = engine::reseal::reseal(&mut conn, &e.secret, None).await.unwrap();
    assert_eq!(moved, 4);
    assert_eq!(
        engine::reseal::reseal(&mut conn, &e.secret, None).await.unwrap(),
        0,
        "once"
    );
    assert_eq!(
        apps::env_values(e, &caller, a).await.unwrap(),
        vec![("DATABASE_URL".to_owned(), "postgres://u:p@db/app".to_owned())]
    );
    let after = apps::hooks(e, &caller, a).await.unwrap();
    assert_eq!(
        (after.github_secret, after.deploy_token),
        (hooks.github_secret, hooks.deploy_token)
    );
    let stored: Option<String> = applications::table
        .find(a.0)
        .select(applications::source_secret)
        .first(&mut conn)
        .await
        .unwrap();
    assert!(stored.unwrap().starts_with("v2:"));

    // A value sealed under another key is reported with its place, not skipped.
    diesel::update(app_env_vars::table.filter(app_env_vars::application_id.eq(a.0)))
        .set(app_env_vars::value.eq(engine::secrets::SecretKey::generate().seal_unbound(b"x")))
        .execute(&mut conn)
        .await
        .unwrap();
    let e2 = engine::reseal::reseal(&mut conn, &e.secret, None).await.unwrap_err();
    assert!(e2.to_string().contains("app_env_vars.value"), "{e2}");
}

/// An installation whose key an earlier Berth accepted (any 32+ characters)
/// moves to a proper 32-byte key by naming the old one
/// BERTH_PREVIOUS_SECRET_KEY: everything is re-sealed once, then opens under
/// the new key alone.
#[tokio::test]
async fn a_rotated_key_reseals_everything_under_the_new_one() {
    let legacy = "correct-horse-battery-staple-and-then-some";
    assert!(
        engine::secrets::SecretKey::from_config(legacy)
            .unwrap_err()
            .to_string()
            .contains("BERTH_PREVIOUS_SECRET_KEY"),
        "the refusal says what to do"
    );
    let old = engine::secrets::SecretKey::from_previous_config(legacy).unwrap();
    let mut t = TestEngine::new().await;
    t.engine.secret = old.clone();
    let (caller, env) = owner_with_environment(&t.engine).await;
    let a = app(&t, &caller, env, "rot").await;
    apps::put_env(&t.engine, &caller, a, "TOKEN", "s3cr3t").await.unwrap();
    let hooks = apps::hooks(&t.engine, &caller, a).await.unwrap();

    let new = engine::secrets::SecretKey::generate();
    let mut e = t.engine.clone();
    e.secret = new.clone();
    assert!(
        apps::env_values(&e, &caller, a).await.is_err(),
        "the new key alone cannot open them yet"
    );

    let mut conn = AsyncPgConnection::establish(&t.db.url).await.unwrap();
    let moved = engine::reseal::reseal(&mut conn, &new, Some(&old)).await.unwrap();
    assert_eq!(
        moved, 4,
        "registry password, webhook secret, deploy token, one variable"
    );
    assert_eq!(
        engine::reseal::reseal(&mut conn, &new, Some(&old)).await.unwrap(),
        0,
        "once"
    );
    assert_eq!(engine::reseal::reseal(&mut conn, &new, None).await.unwrap(), 0);
    assert_eq!(
        apps::env_values(&e, &caller, a).await.unwrap(),
        vec![("TOKEN".to_owned(), "s3cr3t".to_owned())]
    );
    let after = apps::hooks(&e, &caller, a).await.unwrap();
    assert_eq!(
        (after.github_secret, after.deploy_token),
        (hooks.github_secret, hooks.deploy_token)
    );
}
