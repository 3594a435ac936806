//! The role matrix: docs/ROLES.md lists every server function and every route
//! outside Leptos with its least role. This test reads that table and holds
//! every row against the running router: the lists match (a new function must
//! be given a role there), the role just below is refused (401 or 403) and
//! changes nothing, and the role named is not refused (for rows that do not
//! destroy the fixture; deletes are held from below, and their success paths
//! are tested where they are implemented).

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::matrix::{fixture, form, snapshot, Fixture};
use common::{TestApp, HOST, ORIGIN};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Least {
    Anyone,
    Member,
    Admin,
    InstanceAdmin,
}

/// (endpoint, least role) for every row of docs/ROLES.md.
fn table() -> BTreeMap<String, Least> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/ROLES.md")).unwrap();
    let mut rows = BTreeMap::new();
    for line in doc.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split(" | ").collect();
        let path = cells[0].trim_start_matches("| ").trim_matches('`').to_owned();
        let least = match cells[1].trim() {
            "anyone" => Least::Anyone,
            "member" => Least::Member,
            "admin" => Least::Admin,
            "instance admin" => Least::InstanceAdmin,
            other => panic!("{path}: unknown role {other:?} in docs/ROLES.md"),
        };
        assert!(rows.insert(path.clone(), least).is_none(), "{path} is listed twice");
    }
    rows
}

/// Rows whose success would take apart what later rows need (or the caller's
/// own session): held from below only.
fn destroys(path: &str) -> bool {
    [
        "delete",
        "remove",
        "revoke",
        "logout",
        "switch",
        "members/role",
        // Limiting Bob to one project as a viewer would refuse him the later rows.
        "members/access",
        "instance/",
        "orgs/create",
        // Requiring a second factor would lock the later rows' callers out.
        "twofactor/require",
    ]
    .iter()
    .any(|w| path.contains(w))
}

#[tokio::test]
async fn every_function_and_route_is_listed_with_its_least_role_and_held() {
    let app = TestApp::new().await;
    let Fixture { ada, bob, ids } = fixture(&app).await;
    // Carl: an admin of Ada's organization, but not an instance administrator.
    let (_, carl) = app.join(&ada, "admin", "Carl", "carl@example.com").await;
    let bob_user = ids.member.clone();

    // The table and the router list the same things.
    let rows = table();
    let mut listed: BTreeSet<String> = server_fn::axum::server_fn_paths().map(|(p, _)| p.to_owned()).collect();
    listed.extend(server::router::ROUTES.iter().map(|r| (*r).to_owned()));
    let documented: BTreeSet<String> = rows.keys().cloned().collect();
    let missing: Vec<_> = listed.difference(&documented).collect();
    let gone: Vec<_> = documented.difference(&listed).collect();
    assert!(missing.is_empty(), "give these a row in docs/ROLES.md: {missing:?}");
    assert!(gone.is_empty(), "docs/ROLES.md lists what no longer exists: {gone:?}");

    let before = snapshot(&app, &ada, &ids).await;
    let below = |least: Least| match least {
        Least::Anyone => None,
        Least::Member => Some(None),
        Least::Admin => Some(Some(bob.as_str())),
        Least::InstanceAdmin => Some(Some(carl.as_str())),
    };
    let at = |least: Least| match least {
        Least::Anyone => None,
        Least::Member => Some(bob.as_str()),
        Least::Admin => Some(carl.as_str()),
        Least::InstanceAdmin => Some(ada.as_str()),
    };

    let functions: Vec<(&String, &Least)> = rows
        .iter()
        .filter(|(p, _)| p.starts_with("/api/") && !server::router::ROUTES.contains(&p.as_str()))
        .collect();
    let call = |path: &str, who: Option<&str>| {
        let f = form(path, &ids, &bob_user);
        let app = &app;
        let who = who.map(str::to_owned);
        let name = path.trim_start_matches("/api/").to_owned();
        async move {
            let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
            app.call(&name, &f, who.as_deref()).await
        }
    };

    // From below: refused, and nothing changes.
    let mut held = 0;
    for (path, least) in &functions {
        let Some(who) = below(**least) else { continue };
        let r = call(path, who).await;
        let want = if who.is_none() {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::FORBIDDEN
        };
        // Berth's own database is hidden, not forbidden, from non-administrators.
        let hidden = r.status == StatusCode::NOT_FOUND && path.starts_with("/api/backups/");
        assert!(
            r.status == want || hidden,
            "{path} as the role below {least:?}: {} {}",
            r.status,
            r.body
        );
        held += 1;
    }
    assert!(held > 50, "{held}");
    assert_eq!(
        before,
        snapshot(&app, &ada, &ids).await,
        "a refused call changed something"
    );
    assert!(before.contains("bob@example.com"), "Bob is still a member");

    // At the role named: not refused.
    for (path, least) in functions.iter().filter(|(p, _)| !destroys(p)) {
        let r = call(path, at(**least)).await;
        // For `anyone` rows the credential is in the form (a wrong one is a
        // 401 of its own); what must not happen is asking for a session.
        let refused = if **least == Least::Anyone {
            r.body.contains("not signed in")
        } else {
            r.status == StatusCode::UNAUTHORIZED || r.status == StatusCode::FORBIDDEN
        };
        assert!(!refused, "{path} as {least:?}: {} {}", r.status, r.body);
    }

    // The routes outside Leptos.
    let get = |path: String, cookie: Option<&str>| {
        let mut req = Request::get(path).header(header::HOST, HOST);
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        req.body(Body::empty()).unwrap()
    };
    assert_eq!(app.send(get("/health".into(), None)).await.status, StatusCode::OK);
    for (who, want) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some(carl.as_str()), StatusCode::FORBIDDEN),
        (Some(ada.as_str()), StatusCode::OK),
    ] {
        let r = app.send(get("/api/admin/health".into(), who)).await;
        assert_eq!(r.status, want, "/api/admin/health: {}", r.body);
    }
    for (who, want) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some(bob.as_str()), StatusCode::FORBIDDEN),
        (Some(carl.as_str()), StatusCode::OK),
    ] {
        let r = app.send(get("/api/audit/export".into(), who)).await;
        assert_eq!(r.status, want, "/api/audit/export: {}", r.body);
    }
    let download = format!("/api/deployments/{}/log", ids.deployment);
    assert_eq!(
        app.send(get(download.clone(), None)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.send(get(download, Some(&bob))).await.status, StatusCode::OK);
    // Sockets, over a real connection (an upgrade needs one).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let router = app.router.clone();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap()
    });
    let socket = |path: String, cookie: Option<String>| async move {
        let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://127.0.0.1:{port}{path}"
        ))
        .unwrap();
        req.headers_mut().insert("host", HOST.parse().unwrap());
        req.headers_mut().insert("origin", ORIGIN.parse().unwrap());
        if let Some(c) = cookie {
            req.headers_mut().insert("cookie", c.parse().unwrap());
        }
        match tokio_tungstenite::connect_async(req).await {
            Ok(_) => 101,
            Err(tokio_tungstenite::tungstenite::Error::Http(res)) => res.status().as_u16(),
            Err(e) => panic!("{path}: {e}"),
        }
    };
    let deployment_log = format!("/api/ws/deployments/{}/log", ids.deployment);
    assert_eq!(socket(deployment_log.clone(), None).await, 401);
    assert_eq!(socket(deployment_log, Some(bob.clone())).await, 101);
    for path in [
        format!("/api/ws/apps/{}/logs", ids.app),
        format!("/api/ws/services/{}/logs", ids.service),
    ] {
        assert_eq!(socket(path.clone(), None).await, 401, "{path}");
        let as_member = socket(path.clone(), Some(bob.clone())).await;
        assert!(as_member != 401 && as_member != 403, "{path} as a member: {as_member}");
    }
    // Webhooks need no session: their own credential.
    let hooks = app.call("apps/hooks", &[("id", &ids.app)], Some(&ada)).await.json();
    let token = hooks["deploy_url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let r = app
        .send(
            Request::post(format!("/api/webhooks/deploy/{token}"))
                .header(header::HOST, HOST)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert!(
        r.status.is_success(),
        "deploy token without a session: {} {}",
        r.status,
        r.body
    );
}
