//! Organizations, members and invites against real PostgreSQL and Redis.

use engine::accounts::{self, Caller, NewAccount};
use engine::names::{OrgName, Role};
use engine::orgs::{self, Acceptor, OrgError};
use engine::testing::TestEngine;
use engine::Engine;

async fn setup(e: &Engine) -> Caller {
    engine::testing::ada(e).await
}

async fn join(e: &Engine, owner: &Caller, email: &str, role: Role) -> Caller {
    engine::testing::join(e, owner, email, role).await
}

#[tokio::test]
async fn invite_links_work_once_and_give_the_role() {
    let t = TestEngine::new().await;
    let e = &t.engine;
    let owner = setup(e).await;
    let (_, token) = orgs::create_invite(e, &owner, Role::Admin).await.unwrap();
    let preview = orgs::preview_invite(e, &token).await.unwrap();
    assert_eq!((preview.org_name.as_str(), preview.role), ("Acme", Role::Admin));

    let bob = NewAccount::parse("Bob", "bob@example.com", "long enough pw").unwrap();
    let session = orgs::accept_invite(e, &token, Acceptor::New(bob)).await.unwrap();
    let bob = accounts::authenticate(e, session).await.unwrap();
    assert_eq!((bob.org_id, bob.role), (owner.org_id, Role::Admin));

    // Used: neither preview nor a second acceptance works.
    assert!(matches!(
        orgs::preview_invite(e, &token).await,
        Err(OrgError::InviteInvalid)
    ));
    let eve = NewAccount::parse("Eve", "eve@example.com", "long enough pw").unwrap();
    assert!(matches!(
        orgs::accept_invite(e, &token, Acceptor::New(eve)).await,
        Err(OrgError::InviteInvalid)
    ));
    // ... and Eve's account was not left behind.
    assert!(accounts::login(e, "eve@example.com", "long enough pw", "10.0.0.1")
        .await
        .is_err());
}

#[tokio::test]
async fn expired_and_revoked_invites_are_refused() {
    let t = TestEngine::new().await;
    let e = &t.engine;
    let owner = setup(e).await;
    let (id, token) = orgs::create_invite(e, &owner, Role::Member).await.unwrap();
    orgs::revoke_invite(e, &owner, id).await.unwrap();
    assert!(matches!(
        orgs::preview_invite(e, &token).await,
        Err(OrgError::InviteInvalid)
    ));

    let (_, token) = orgs::create_invite(e, &owner, Role::Member).await.unwrap();
    {
        use diesel_async::RunQueryDsl;
        let mut conn = e.db.get().await.unwrap();
        diesel::sql_query("UPDATE invites SET expires_at = now() - interval '1 second'")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let who = NewAccount::parse("Late", "late@example.com", "long enough pw").unwrap();
    assert!(matches!(
        orgs::accept_invite(e, &token, Acceptor::New(who)).await,
        Err(OrgError::InviteInvalid)
    ));
    assert!(orgs::list_invites(e, &owner).await.unwrap().is_empty());
}

#[tokio::test]
async fn members_cannot_manage_and_admins_cannot_touch_owners() {
    let t = TestEngine::new().await;
    let e = &t.engine;
    let owner = setup(e).await;
    let admin = join(e, &owner, "admin@example.com", Role::Admin).await;
    let member = join(e, &owner, "member@example.com", Role::Member).await;

    assert!(matches!(
        orgs::create_invite(e, &member, Role::Member).await,
        Err(OrgError::Forbidden(_))
    ));
    assert!(matches!(
        orgs::remove_member(e, &member, admin.user_id).await,
        Err(OrgError::Forbidden(_))
    ));
    assert!(matches!(
        orgs::change_role(e, &admin, owner.user_id, Role::Member).await,
        Err(OrgError::Forbidden(_))
    ));
    assert!(matches!(
        orgs::change_role(e, &admin, member.user_id, Role::Owner).await,
        Err(OrgError::Forbidden(_))
    ));
    orgs::change_role(e, &admin, member.user_id, Role::Admin).await.unwrap();

    // The last owner can neither be demoted nor removed.
    assert!(matches!(
        orgs::change_role(e, &owner, owner.user_id, Role::Admin).await,
        Err(OrgError::Forbidden(_))
    ));
    assert!(matches!(
        orgs::remove_member(e, &owner, owner.user_id).await,
        Err(OrgError::Forbidden(_))
    ));

    // Removal takes effect at once: the removed member's session no longer resolves.
    orgs::remove_member(e, &owner, member.user_id).await.unwrap();
    assert!(accounts::authenticate(e, member.session().unwrap().clone())
        .await
        .is_err());
    let names: Vec<_> = orgs::members(e, &owner)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.email)
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[tokio::test]
async fn a_user_switches_between_their_organizations_only() {
    let t = TestEngine::new().await;
    let e = &t.engine;
    let owner = setup(e).await;
    let second = orgs::create(e, &owner, OrgName::parse("Side project").unwrap())
        .await
        .unwrap();
    let now = accounts::authenticate(e, owner.session().unwrap().clone())
        .await
        .unwrap();
    assert_eq!(now.org_id, second);
    assert_eq!(orgs::list_mine(e, &now).await.unwrap().len(), 2);
    orgs::switch(e, &now, owner.org_id).await.unwrap();
    assert_eq!(
        accounts::authenticate(e, owner.session().unwrap().clone())
            .await
            .unwrap()
            .org_id,
        owner.org_id
    );

    // Someone else's organization is "not found", and the session is unchanged.
    let stranger = join(e, &owner, "s@example.com", Role::Member).await;
    // By default only instance administrators make organizations; the
    // operator can open it to anyone signed in.
    let refused = orgs::create(e, &stranger, OrgName::parse("Theirs").unwrap()).await;
    assert!(matches!(refused, Err(OrgError::Forbidden(_))), "{refused:?}");
    assert_eq!(
        orgs::list_mine(e, &stranger).await.unwrap().len(),
        1,
        "nothing was made"
    );
    engine::instance::update_settings(
        e,
        &owner,
        engine::instance::Settings {
            org_creation: engine::instance::OrgCreation::Anyone,
        },
    )
    .await
    .unwrap();
    let theirs = orgs::create(e, &stranger, OrgName::parse("Theirs").unwrap())
        .await
        .unwrap();
    assert!(matches!(orgs::switch(e, &now, theirs).await, Err(OrgError::NotFound)));
    assert_eq!(
        accounts::authenticate(e, owner.session().unwrap().clone())
            .await
            .unwrap()
            .org_id,
        owner.org_id
    );
}
