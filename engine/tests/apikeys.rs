//! API keys against real PostgreSQL and Redis: a key acts with the lesser of
//! its role and its owner's role now, instance powers need both the key's flag
//! and an owner who is still an instance administrator, a key cannot mint
//! another, and each key is counted against its own limit.

use engine::accounts::{Caller, Via};
use engine::apikeys::{self, ExpiryDays, KeyError, KeyName, KeyRole, NewKey, KEY_LIMIT};
use engine::names::Role;
use engine::orgs;
use engine::testing::TestEngine;
use engine::{Classify, Engine, ErrorKind};

async fn setup(e: &Engine) -> Caller {
    engine::testing::ada(e).await
}

async fn join(e: &Engine, owner: &Caller, email: &str, role: Role) -> Caller {
    engine::testing::join(e, owner, email, role).await
}

fn new(role: KeyRole, instance: bool) -> NewKey {
    NewKey {
        name: KeyName::parse("test").unwrap(),
        role,
        expires: ExpiryDays::parse("").unwrap(),
        instance,
        projects: None,
    }
}

#[tokio::test]
async fn a_key_acts_with_the_lesser_of_its_role_and_its_owners_role_now() {
    let t = TestEngine::new().await;
    let e = &t.engine;
    let ada = setup(e).await;
    let bob = join(e, &ada, "bob@example.com", Role::Admin).await;
    let key = apikeys::create(e, &bob, new(KeyRole::Admin, false)).await.unwrap();
    let caller = apikeys::authenticate(e, &key.key, "192.0.2.1").await.unwrap();
    assert_eq!(
        (caller.org_id, caller.role, caller.instance_admin),
        (ada.org_id, Role::Admin, false)
    );
    assert!(matches!(caller.via, Via::Key { read_only: false, .. }));
    // A key cannot make keys.
    let err = apikeys::create(e, &caller, new(KeyRole::Member, false))
        .await
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Forbidden(_)), "{err:?}");

    // Bob demoted: his admin key is a member's key at once.
    orgs::change_role(e, &ada, bob.user_id, Role::Member).await.unwrap();
    let caller = apikeys::authenticate(e, &key.key, "192.0.2.1").await.unwrap();
    assert_eq!(caller.role, Role::Member);

    // A viewer key reads only (the REST API holds it to that).
    let viewer = apikeys::create(e, &ada, new(KeyRole::Viewer, false)).await.unwrap();
    let caller = apikeys::authenticate(e, &viewer.key, "192.0.2.1").await.unwrap();
    assert!(matches!(caller.via, Via::Key { read_only: true, .. }));
    assert_eq!(caller.role, Role::Member);

    // Bob removed: his key ends.
    orgs::remove_member(e, &ada, bob.user_id).await.unwrap();
    let err = apikeys::authenticate(e, &key.key, "192.0.2.1").await.unwrap_err();
    assert!(matches!(err, KeyError::Unauthorized(_)), "{err:?}");
}

#[tokio::test]
async fn instance_powers_need_the_keys_flag_and_an_owner_who_still_has_them() {
    let t = TestEngine::new().await;
    let e = &t.engine;
    let ada = setup(e).await;
    assert!(ada.instance_admin);
    let plain = apikeys::create(e, &ada, new(KeyRole::Owner, false)).await.unwrap();
    assert!(
        !apikeys::authenticate(e, &plain.key, "::1")
            .await
            .unwrap()
            .instance_admin
    );
    let powered = apikeys::create(e, &ada, new(KeyRole::Owner, true)).await.unwrap();
    assert!(
        apikeys::authenticate(e, &powered.key, "::1")
            .await
            .unwrap()
            .instance_admin
    );

    // Ada promotes Bob, who makes such a key, then is demoted: the key loses them.
    let bob = join(e, &ada, "bob@example.com", Role::Admin).await;
    engine::instance::set_admin(e, &ada, bob.user_id, true).await.unwrap();
    let bob = Caller {
        instance_admin: true,
        ..bob
    };
    let bobs = apikeys::create(e, &bob, new(KeyRole::Admin, true)).await.unwrap();
    assert!(apikeys::authenticate(e, &bobs.key, "::1").await.unwrap().instance_admin);
    engine::instance::set_admin(e, &ada, bob.user_id, false).await.unwrap();
    assert!(!apikeys::authenticate(e, &bobs.key, "::1").await.unwrap().instance_admin);
}

#[tokio::test]
async fn each_key_is_counted_against_its_own_limit() {
    let t = TestEngine::new().await;
    let e = &t.engine;
    let ada = setup(e).await;
    let busy = apikeys::create(e, &ada, new(KeyRole::Member, false)).await.unwrap();
    let quiet = apikeys::create(e, &ada, new(KeyRole::Member, false)).await.unwrap();
    for _ in 0..KEY_LIMIT.max {
        apikeys::authenticate(e, &busy.key, "192.0.2.1").await.unwrap();
    }
    let err = apikeys::authenticate(e, &busy.key, "192.0.2.1").await.unwrap_err();
    match err.kind() {
        ErrorKind::RateLimited { retry_after_secs } => assert!((1..=KEY_LIMIT.window_secs).contains(&retry_after_secs)),
        other => panic!("{other:?}"),
    }
    // Another key of the same user is not affected.
    apikeys::authenticate(e, &quiet.key, "192.0.2.1").await.unwrap();
}
