//! Accounts against real PostgreSQL and Redis: onboarding closes for good, login
//! throttles without permanent lockout, sessions are revoked on logout and
//! password change.

use engine::accounts::{self, AccountError, NewAccount};
use engine::names::{Email, OrgName, Password};
use engine::testing::TestEngine;
use engine::{ratelimit, sessions, Classify, ErrorKind};

fn owner() -> NewAccount {
    NewAccount::parse("Ada Lovelace", "ada@example.com", "correct horse battery").unwrap()
}

#[tokio::test]
async fn onboarding_creates_the_owner_once_and_then_closes_for_good() {
    let t = TestEngine::new().await;
    let e = &t.engine;
    assert!(accounts::onboarding_open(e).await.unwrap());
    let (caller, _) = engine::testing::onboard(e, owner(), OrgName::parse("Acme").unwrap())
        .await
        .unwrap();
    assert_eq!(caller.role, engine::names::Role::Owner);
    assert!(!accounts::onboarding_open(e).await.unwrap());

    let again = NewAccount::parse("Mallory", "mallory@example.com", "another long pw").unwrap();
    let err = engine::testing::onboard(e, again, OrgName::parse("Evil").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, AccountError::OnboardingClosed), "{err:?}");
    assert!(matches!(err.kind(), ErrorKind::Forbidden(_)));
    // Nothing half-written: Mallory does not exist.
    let login = accounts::login(e, "mallory@example.com", "another long pw", "10.0.0.1").await;
    assert!(matches!(login, Err(AccountError::InvalidCredentials)));
}

#[tokio::test]
async fn concurrent_onboarding_has_exactly_one_winner() {
    let t = TestEngine::new().await;
    let mut tasks = Vec::new();
    for i in 0..4 {
        let e = t.engine.clone();
        tasks.push(tokio::spawn(async move {
            let a = NewAccount::parse("Racer", &format!("r{i}@example.com"), "long enough pw").unwrap();
            engine::testing::onboard(&e, a, OrgName::parse("Race").unwrap())
                .await
                .is_ok()
        }));
    }
    let mut wins = 0;
    for task in tasks {
        wins += task.await.unwrap() as usize;
    }
    assert_eq!(wins, 1);
}

#[tokio::test]
async fn login_logout_and_session_lookup() {
    let t = TestEngine::new().await;
    let e = &t.engine;
    engine::testing::onboard(e, owner(), OrgName::parse("Acme").unwrap())
        .await
        .unwrap();
    let caller = accounts::login(e, " ADA@example.com ", "correct horse battery", "10.0.0.1")
        .await
        .unwrap();
    let again = accounts::authenticate(e, caller.session().unwrap().clone())
        .await
        .unwrap();
    assert_eq!(again.user_id, caller.user_id);
    assert_eq!(again.org_id, caller.org_id);

    accounts::logout(e, &caller.session().unwrap().clone()).await.unwrap();
    assert!(matches!(
        accounts::authenticate(e, caller.session().unwrap().clone()).await,
        Err(AccountError::NotSignedIn)
    ));
    assert!(matches!(
        accounts::login(e, "ada@example.com", "wrong password!", "10.0.0.1").await,
        Err(AccountError::InvalidCredentials)
    ));
    assert!(matches!(
        accounts::login(e, "nobody@example.com", "correct horse battery", "10.0.0.1").await,
        Err(AccountError::InvalidCredentials)
    ));
}

#[tokio::test]
async fn sessions_are_stored_hashed_and_expire_absolutely() {
    let t = TestEngine::new().await;
    let e = &t.engine;
    let (caller, _) = engine::testing::onboard(e, owner(), OrgName::parse("Acme").unwrap())
        .await
        .unwrap();
    let mut conn = e.kv.conn().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", e.kv.prefix()))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!keys.is_empty());
    assert!(
        keys.iter().all(|k| !k.contains(caller.session().unwrap().as_str())),
        "raw token must not be a key: {keys:?}"
    );

    // A policy whose absolute lifetime has passed rejects the session.
    let expired = sessions::SessionPolicy {
        idle_secs: 60,
        absolute_secs: 0,
    };
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert!(sessions::get(&e.kv, expired, &caller.session().unwrap().clone())
        .await
        .unwrap()
        .is_none());
    assert!(
        sessions::get(&e.kv, e.policy, &caller.session().unwrap().clone())
            .await
            .unwrap()
            .is_none(),
        "revoked on expiry"
    );
}

#[tokio::test]
async fn failed_logins_are_throttled_per_account_and_per_address() {
    let t = TestEngine::new().await;
    let e = &t.engine;
    engine::testing::onboard(e, owner(), OrgName::parse("Acme").unwrap())
        .await
        .unwrap();
    const RIGHT: &str = "correct horse battery";

    // One address guessing one account: PAIR_LIMIT attempts, then refused even
    // with the right password (so guessing cannot continue by getting lucky).
    for i in 0..accounts::PAIR_LIMIT.max {
        let r = accounts::login(e, "ada@example.com", "wrong password!", "10.3.0.1").await;
        assert!(matches!(r, Err(AccountError::InvalidCredentials)), "attempt {i}: {r:?}");
    }
    let r = accounts::login(e, "ada@example.com", RIGHT, "10.3.0.1").await;
    let Err(AccountError::RateLimited(retry)) = r else {
        panic!("expected throttling, got {r:?}")
    };
    assert!(retry > 0 && retry <= accounts::PAIR_LIMIT.window_secs);
    // ... while the owner, at their own address, is not slowed by it.
    accounts::login(e, "ada@example.com", RIGHT, "10.4.0.1").await.unwrap();

    // Many addresses guessing one account put it under attack: an address that
    // has failed PAIR_LIMIT_UNDER_ATTACK times is stopped sooner, a fresh one is not.
    for i in 0..accounts::ACCOUNT_LIMIT.max {
        let r = accounts::login(e, "ada@example.com", "wrong password!", &format!("10.1.0.{i}")).await;
        assert!(matches!(r, Err(AccountError::InvalidCredentials)), "attempt {i}: {r:?}");
    }
    for _ in 0..accounts::PAIR_LIMIT_UNDER_ATTACK {
        let r = accounts::login(e, "ada@example.com", "wrong password!", "10.5.0.1").await;
        assert!(matches!(r, Err(AccountError::InvalidCredentials)), "{r:?}");
    }
    let r = accounts::login(e, "ada@example.com", RIGHT, "10.5.0.1").await;
    assert!(matches!(r, Err(AccountError::RateLimited(_))), "under attack: {r:?}");
    accounts::login(e, "ada@example.com", RIGHT, "10.6.0.1").await.unwrap();

    // The limit is a window, not a ban: when it lapses the address gets in again.
    let mut conn = e.kv.conn().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}login:pair:*:10.3.0.1", e.kv.prefix()))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let ttl: i64 = redis::cmd("TTL").arg(&keys[0]).query_async(&mut conn).await.unwrap();
    assert!(
        ttl > 0 && ttl <= accounts::PAIR_LIMIT.window_secs as i64,
        "window expires: ttl {ttl}"
    );
    let _: () = redis::cmd("EXPIRE")
        .arg(&keys[0])
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    accounts::login(e, "ada@example.com", RIGHT, "10.3.0.1").await.unwrap();

    // Per address: one client trying many accounts is stopped too, and an IPv6
    // client is one client across its whole /64.
    for i in 0..accounts::IP_LIMIT.max {
        let _ = accounts::login(
            e,
            &format!("x{i}@example.com"),
            "whatever pw",
            &format!("2001:db8::{i:x}"),
        )
        .await;
    }
    let r = accounts::login(e, "ada@example.com", RIGHT, "2001:db8::ffff").await;
    assert!(matches!(r, Err(AccountError::RateLimited(_))), "{r:?}");
    assert!(ratelimit::check(&e.kv, "login:ip:10.9.9.10", accounts::IP_LIMIT)
        .await
        .unwrap()
        .is_none());
}

/// Attempts in flight at once are each counted before they are tried, so a
/// burst cannot slip more guesses past the limit than it allows.
#[tokio::test]
async fn parallel_wrong_logins_are_all_counted() {
    let t = TestEngine::new().await;
    let e = &t.engine;
    engine::testing::onboard(e, owner(), OrgName::parse("Acme").unwrap())
        .await
        .unwrap();
    let attempts = (0..20).map(|_| accounts::login(e, "ada@example.com", "wrong password!", "10.7.0.1"));
    let results = futures::future::join_all(attempts).await;
    let tried = results
        .iter()
        .filter(|r| matches!(r, Err(AccountError::InvalidCredentials)))
        .count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(AccountError::RateLimited(_))))
        .count();
    assert_eq!(
        (tried, refused),
        (
            accounts::PAIR_LIMIT.max as usize,
            20 - accounts::PAIR_LIMIT.max as usize
        ),
        "{results:?}"
    );
}

#[tokio::test]
async fn password_change_revokes_other_sessions_and_checks_the_current_one() {
    let t = TestEngine::new().await;
    let e = &t.engine;
    let (first, _) = engine::testing::onboard(e, owner(), OrgName::parse("Acme").unwrap())
        .await
        .unwrap();
    let second = accounts::login(e, "ada@example.com", "correct horse battery", "10.0.0.1")
        .await
        .unwrap();

    let new = Password::parse("new_password", "a brand new passphrase").unwrap();
    let err = accounts::change_password(e, &second, "not it at all", new.clone())
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Validation {
            field: "current_password",
            message: "is not your current password".into()
        }
    );

    accounts::change_password(e, &second, "correct horse battery", new)
        .await
        .unwrap();
    assert!(
        accounts::authenticate(e, second.session().unwrap().clone())
            .await
            .is_ok(),
        "the changing session stays"
    );
    assert!(matches!(
        accounts::authenticate(e, first.session().unwrap().clone()).await,
        Err(AccountError::NotSignedIn)
    ));
    assert!(
        accounts::login(e, "ada@example.com", "correct horse battery", "10.0.0.2")
            .await
            .is_err()
    );
    accounts::login(e, "ada@example.com", "a brand new passphrase", "10.0.0.2")
        .await
        .unwrap();
}

#[tokio::test]
async fn operator_reset_sets_a_new_password_and_signs_everyone_out() {
    let t = TestEngine::new().await;
    let e = &t.engine;
    let (caller, _) = engine::testing::onboard(e, owner(), OrgName::parse("Acme").unwrap())
        .await
        .unwrap();
    let new = accounts::reset_password(e, &Email::parse("ada@example.com").unwrap())
        .await
        .unwrap();
    assert!(new.len() >= Password::MIN);
    assert!(accounts::authenticate(e, caller.session().unwrap().clone())
        .await
        .is_err());
    accounts::login(e, "ada@example.com", &new, "10.0.0.1").await.unwrap();
    assert!(matches!(
        accounts::reset_password(e, &Email::parse("ghost@example.com").unwrap()).await,
        Err(AccountError::NotFound)
    ));
}
