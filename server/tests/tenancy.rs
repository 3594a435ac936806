//! The cross-organization matrix. Every server function and every page route
//! with a parameter is enumerated from the running router's registries and must
//! be classified below: a new one that is not fails this test until someone
//! decides how it is scoped. Each ID-taking one is called by a member of
//! another organization with this organization's IDs and must answer 404 and
//! change nothing.

mod common;

use axum::http::StatusCode;
use common::matrix::{classes, fixture, page_routes, snapshot, Class, Fixture};
use common::TestApp;

#[tokio::test]
async fn another_organizations_ids_are_404_everywhere_and_change_nothing() {
    let app = TestApp::new().await;

    // Victim: Ada's organization, with one of everything (common/matrix.rs).
    let Fixture {
        ada,
        bob: bob_cookie,
        ids,
    } = fixture(&app).await;

    // Intruder: Mallory joins through an invite, makes her own organization (where
    // she is owner, so roles never mask tenancy), and is then removed from Ada's.
    let (_, mallory) = app.join(&ada, "member", "Mallory", "m@example.com").await;
    // Making organizations is for instance administrators until one opens it.
    assert_eq!(
        app.call("orgs/create", &[("organization", "Evil")], Some(&mallory))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.call("instance/settings", &[("org_creation", "anyone")], Some(&mallory))
            .await
            .status,
        StatusCode::FORBIDDEN,
        "only an instance administrator changes it"
    );
    assert_eq!(
        app.call("instance/settings", &[("org_creation", "anyone")], Some(&ada))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.call("orgs/create", &[("organization", "Evil")], Some(&mallory))
            .await
            .status,
        StatusCode::OK
    );
    let m_members = app.call("orgs/members", &[], Some(&ada)).await.json();
    let m_id = m_members
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == "m@example.com")
        .unwrap()["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.call("orgs/members/remove", &[("user_id", &m_id)], Some(&ada))
            .await
            .status,
        StatusCode::OK
    );
    let m_me = app.call("session", &[], Some(&mallory)).await.json();
    assert_eq!(m_me["SignedIn"]["role"], "owner");
    assert_ne!(m_me["SignedIn"]["org_id"].as_str(), Some(ids.org.as_str()));

    let before = snapshot(&app, &ada, &ids).await;
    assert!(
        before.contains("staging") && before.contains("bob@example.com") && before.contains("admin"),
        "{before}"
    );

    // Every registered server function must be classified.
    let classes = classes();
    let registered: Vec<String> = server_fn::axum::server_fn_paths().map(|(p, _)| p.to_owned()).collect();
    assert!(
        registered.len() >= classes.len(),
        "server functions not registered: {registered:?}"
    );
    let unclassified: Vec<_> = registered
        .iter()
        .filter(|p| !classes.contains_key(p.as_str()))
        .collect();
    assert!(
        unclassified.is_empty(),
        "classify these server functions in tests/tenancy.rs: {unclassified:?}"
    );

    let mut scoped = 0;
    for (path, class) in &classes {
        assert!(
            registered.iter().any(|r| r == path),
            "{path} is classified but no longer exists"
        );
        let Class::Scoped(args) = class else { continue };
        scoped += 1;
        let form = args(&ids);
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = app.call(path.trim_start_matches("/api/"), &form, Some(&mallory)).await;
        assert_eq!(
            r.status,
            StatusCode::NOT_FOUND,
            "{path} with a foreign ID: {} {}",
            r.status,
            r.body
        );
        assert_eq!(
            r.json(),
            serde_json::json!("NotFound"),
            "{path} must not say more than not found"
        );
    }
    assert!(scoped >= 9);

    // Page routes with parameters, from the router's own list.
    let pages = page_routes();
    let routes = server::router::route_list();
    for route in routes
        .iter()
        .map(|r| r.path().to_owned())
        .filter(|p| p.contains(':') || p.contains('{'))
    {
        let normalized = route.replace('{', ":").replace('}', "");
        let try_url = pages
            .get(normalized.as_str())
            .unwrap_or_else(|| panic!("classify page route {route} in tests/tenancy.rs"));
        if let Some(url) = try_url(&ids) {
            let r = app.get(&url, Some(&mallory)).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "page {url} as an intruder");
            assert!(!r.body.contains("Secret"), "page {url} leaked the project name");
        }
    }

    // The organization-wide lists show the intruder only her own organization's.
    let theirs = app.call("backups/destinations", &[], Some(&mallory)).await;
    assert_eq!(theirs.status, StatusCode::OK);
    assert!(
        !theirs.body.contains("secret-bucket") && !theirs.body.contains("AKSECRET"),
        "{}",
        theirs.body
    );
    // Berth's own database belongs to the onboarding organization's admins only.
    let own = app.call("backups/list", &[("subject", "berth")], Some(&mallory)).await;
    assert_eq!(own.status, StatusCode::NOT_FOUND, "{}", own.body);
    assert_eq!(
        app.call("backups/list", &[("subject", "berth")], Some(&ada))
            .await
            .status,
        StatusCode::OK
    );
    // No secret key ever comes back from the API, even to its owner.
    let mine = app.call("backups/destinations", &[], Some(&ada)).await.body;
    assert!(
        mine.contains("secret-bucket") && !mine.contains("very-secret-key"),
        "{mine}"
    );

    // Channels likewise; and their URLs (which carry tokens) never come back,
    // even to their owner.
    let theirs = app.call("notify/list", &[], Some(&mallory)).await;
    assert_eq!(theirs.status, StatusCode::OK);
    assert!(!theirs.body.contains("Secret channel"), "{}", theirs.body);
    let mine = app.call("notify/list", &[], Some(&ada)).await.body;
    assert!(
        mine.contains("Secret channel") && !mine.contains("secret-hook"),
        "{mine}"
    );

    assert_eq!(snapshot(&app, &ada, &ids).await, before, "the victim's data changed");
    // And Bob, still a member, sees the project: the checks are tenancy, not breakage.
    assert_eq!(
        app.call("projects/get", &[("id", &ids.project)], Some(&bob_cookie))
            .await
            .status,
        StatusCode::OK
    );
}
