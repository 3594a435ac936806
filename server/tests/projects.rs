//! Project-level roles, through the real router over a real database and
//! Redis. The cross-project matrix is the cross-organization matrix's twin
//! (`tenancy.rs`), derived from the same registries: a member limited to one
//! project calls every server function, page route and REST operation with the
//! IDs of another project of the same organization and must get 404 and change
//! nothing. Then the roles inside a granted project: a viewer sees but cannot
//! read variable values or deploy, a deployer deploys and edits variables but
//! cannot delete an app, an admin creates and deletes.

mod common;

use axum::http::StatusCode;
use common::matrix::{
    body, classes, fixture, operations, page_routes, redis_service, snapshot, victim, Class, Fixture, Ids,
};
use common::TestApp;

/// Ada's second project, "Open", with an app (variable `TOKEN`) in its
/// production environment: (project, environment, app).
async fn open_project(app: &TestApp, ada: &str) -> (String, String, String) {
    let project = app
        .call("projects/create", &[("name", "Open"), ("description", "")], Some(ada))
        .await;
    assert_eq!(project.status, StatusCode::OK, "{}", project.body);
    let project = project.json().as_str().unwrap().to_owned();
    let detail = app.call("projects/get", &[("id", &project)], Some(ada)).await.json();
    let environment = detail["environments"][0]["id"].as_str().unwrap().to_owned();
    let created = app
        .call(
            "apps/create",
            &[
                ("environment_id", &environment),
                ("name", "open-web"),
                ("source", "image"),
                ("image", "nginx:1.27"),
                ("repository", ""),
                ("branch", "main"),
                ("build", "dockerfile"),
            ],
            Some(ada),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let application = created.json().as_str().unwrap().to_owned();
    let r = app
        .call(
            "apps/set_env",
            &[("id", &application), ("dotenv", "TOKEN=open-s3cret")],
            Some(ada),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    (project, environment, application)
}

/// Ada limits Bob to `project` with `role` (or gives him every project: `None`).
async fn limit(app: &TestApp, ada: &str, bob_user: &str, project: &str, role: Option<&str>) {
    let form: Vec<(&str, &str)> = match role {
        Some(role) => vec![
            ("user_id", bob_user),
            ("limited", "on"),
            ("projects[0]", project),
            ("roles[0]", role),
        ],
        None => vec![("user_id", bob_user)],
    };
    let r = app.call("orgs/members/access", &form, Some(ada)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

/// The fixture's IDs that live inside its project ("Secret").
fn inside(i: &Ids) -> Vec<String> {
    vec![
        i.project.clone(),
        i.environment.clone(),
        i.app.clone(),
        i.deployment.clone(),
        i.domain.clone(),
        i.service.clone(),
        i.schedule.clone(),
        i.backup.clone(),
    ]
}

#[tokio::test]
async fn a_member_limited_to_one_project_finds_nothing_of_another_and_changes_nothing() {
    let app = TestApp::new().await;
    let Fixture { ada, bob, ids } = fixture(&app).await;
    let (open, _, _) = open_project(&app, &ada).await;
    limit(&app, &ada, &ids.member, &open, Some("admin")).await;
    // Bob's key reaches what Bob reaches.
    let bob_key = app.key(&bob, "member").await;
    assert_eq!(
        app.api("GET", "/projects", Some(&bob_key), None).await.status,
        StatusCode::OK
    );
    let inside = inside(&ids);
    let before = snapshot(&app, &ada, &ids).await;

    // Every server function that takes an ID inside "Secret".
    let mut scoped = 0;
    for (path, class) in classes() {
        let Class::Scoped(args) = class else { continue };
        // Managing members is an organization admin's (roles.rs), and admins
        // reach every project: its project ID is a grant, not a target.
        if path == "/api/orgs/members/access" {
            continue;
        }
        let form = args(&ids);
        if !form.iter().any(|(_, v)| inside.contains(v)) {
            continue;
        }
        scoped += 1;
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = app.call(path.trim_start_matches("/api/"), &form, Some(&bob)).await;
        assert_eq!(
            r.status,
            StatusCode::NOT_FOUND,
            "{path} with another project's ID: {} {}",
            r.status,
            r.body
        );
        assert_eq!(r.json(), serde_json::json!("NotFound"), "{path} must say no more");
    }
    assert!(scoped >= 40, "{scoped}");

    // Page routes with parameters.
    for (route, url) in page_routes() {
        let Some(url) = url(&ids) else { continue };
        let r = app.get(&url, Some(&bob)).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "page {route} ({url})");
        // The organization's S3 destination ("Secret bucket") is everyone's
        // to see; the project's name and its service's are not.
        let leaks = [">Secret<", "\\\"Secret\\\"", "secret-db-"];
        for leak in leaks {
            assert!(!r.body.contains(leak), "page {url} leaked {leak}");
        }
        // The same page, to Ada, shows them: the markers are the right ones.
        let own = app.get(&url, Some(&ada)).await;
        assert!(leaks.iter().any(|l| own.body.contains(l)), "page {url} as Ada");
    }

    // Every REST operation whose ID (or body's environment) is inside "Secret".
    let (_, ops) = operations(&app).await;
    let mut rest_ops = 0;
    for (method, path) in &ops {
        let kind = path.split('/').nth(1).unwrap_or_default();
        let project_scoped = [
            "projects",
            "environments",
            "apps",
            "domains",
            "deployments",
            "services",
            "backups",
            "schedules",
        ]
        .contains(&kind);
        let by_id = path.contains("{id}") && project_scoped;
        let by_body = method == "POST" && (path == "/apps" || path == "/services");
        if !(by_id || by_body) {
            continue;
        }
        rest_ops += 1;
        let target = if by_id { victim(path, &ids) } else { path.clone() };
        let r = app.api(method, &target, Some(&bob_key), body(method, path, &ids)).await;
        assert_eq!(
            r.status,
            StatusCode::NOT_FOUND,
            "{method} {path} with another project's ID: {}",
            r.body
        );
    }
    assert!(rest_ops >= 35, "{rest_ops}");

    // Lists show Bob his project only.
    let listed = app.call("projects/list", &[], Some(&bob)).await;
    assert!(
        listed.body.contains("Open") && !listed.body.contains("Secret"),
        "{}",
        listed.body
    );
    let listed = app.api("GET", "/projects", Some(&bob_key), None).await;
    assert!(
        listed.body.contains("Open") && !listed.body.contains("Secret"),
        "{}",
        listed.body
    );
    // Organization-wide acts are not a limited member's.
    let made = app
        .call("projects/create", &[("name", "Mine"), ("description", "")], Some(&bob))
        .await;
    assert_eq!(made.status, StatusCode::FORBIDDEN, "{}", made.body);

    assert_eq!(
        snapshot(&app, &ada, &ids).await,
        before,
        "another project's data changed"
    );
    // And the checks are access, not breakage: Bob reaches his own project,
    // and reaches "Secret" again once no longer limited.
    assert_eq!(
        app.call("projects/get", &[("id", &open)], Some(&bob)).await.status,
        StatusCode::OK
    );
    limit(&app, &ada, &ids.member, &open, None).await;
    assert_eq!(
        app.call("projects/get", &[("id", &ids.project)], Some(&bob))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn viewers_see_deployers_deploy_and_admins_create_and_delete_in_their_project() {
    let app = TestApp::new().await;
    let ada = app.onboard().await;
    let (_, bob) = app.join(&ada, "member", "Bob", "bob@example.com").await;
    let members = app.call("orgs/members", &[], Some(&ada)).await.json();
    let bob_user = members
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == "bob@example.com")
        .unwrap()["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (open, environment, web) = open_project(&app, &ada).await;
    let status = |r: &common::Reply| r.status;

    // A viewer: sees the app and its history, not its variables' values; no deploys.
    limit(&app, &ada, &bob_user, &open, Some("viewer")).await;
    let members = app.call("orgs/members", &[], Some(&ada)).await.json();
    let row = members
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == "bob@example.com")
        .unwrap()
        .clone();
    assert_eq!(row["limited"], true);
    assert_eq!(row["grants"][0]["role"], "viewer");
    assert_eq!(
        status(&app.call("apps/get", &[("id", &web)], Some(&bob)).await),
        StatusCode::OK
    );
    assert_eq!(
        status(&app.call("deployments/list", &[("app_id", &web)], Some(&bob)).await),
        StatusCode::OK
    );
    let env = app.call("apps/env", &[("id", &web)], Some(&bob)).await;
    assert_eq!(env.status, StatusCode::FORBIDDEN, "{}", env.body);
    assert!(!env.body.contains("open-s3cret"));
    for (f, form) in [
        ("deployments/create", vec![("app_id", web.as_str())]),
        ("apps/set_env", vec![("id", web.as_str()), ("dotenv", "X=1")]),
        ("apps/rotate_hooks", vec![("id", web.as_str())]),
    ] {
        let r = app.call(f, &form, Some(&bob)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{f} as a viewer: {}", r.body);
    }
    // Webhook URLs carry deploy tokens: not a viewer's (the app page still loads).
    let hooks = app.call("apps/hooks", &[("id", &web)], Some(&bob)).await;
    assert_eq!(hooks.status, StatusCode::OK, "{}", hooks.body);
    assert_eq!(hooks.json(), serde_json::Value::Null);
    let db = redis_service(&app, &ada, &environment, "open-cache").await;
    // The pages offer a viewer none of it (and the owner all of it).
    for (url, theirs, mine) in [
        (
            format!("/services/{db}"),
            "id=\"internal-url\"",
            "id=\"reveal-password\"",
        ),
        (format!("/services/{db}"), "id=\"internal-url\"", "data-action=\"stop\""),
        (
            format!("/services/{db}?tab=backups"),
            "id=\"backups-read-only\"",
            "S3 destinations",
        ),
        (format!("/apps/{web}"), "id=\"deploy\"", "id=\"deploy\""),
        (
            format!("/apps/{web}"),
            "<fieldset disabled",
            "<fieldset class=\"contents\">",
        ),
        (
            format!("/apps/{web}?tab=environment"),
            "id=\"env-names-only\"",
            "id=\"reveal-env\"",
        ),
        (format!("/projects/{open}"), "id=\"project-title\"", "id=\"new-app\""),
    ] {
        let page = app.get(&url, Some(&bob)).await;
        assert_eq!(page.status, StatusCode::OK, "{url}");
        let own = app.get(&url, Some(&ada)).await;
        assert!(own.body.contains(mine), "{url} as the owner offers {mine}");
        if theirs == mine {
            assert!(!page.body.contains(mine), "{url} offers a viewer {mine}");
        } else {
            assert!(page.body.contains(theirs), "{url} as a viewer: {theirs}");
            assert!(!page.body.contains(mine), "{url} offers a viewer {mine}");
        }
    }
    // Through a key as well: the key reaches what its owner reaches now.
    let key = app.key(&bob, "member").await;
    let r = app.api("GET", &format!("/apps/{web}/env"), Some(&key), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);

    // A deployer: reads and edits variables, deploys; cannot delete the app
    // or create one.
    limit(&app, &ada, &bob_user, &open, Some("deployer")).await;
    let env = app.call("apps/env", &[("id", &web)], Some(&bob)).await;
    assert_eq!(env.status, StatusCode::OK, "{}", env.body);
    assert!(env.body.contains("open-s3cret"), "{}", env.body);
    let r = app
        .call("apps/set_env", &[("id", &web), ("dotenv", "TOKEN=changed")], Some(&bob))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app.call("deployments/create", &[("app_id", &web)], Some(&bob)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app.call("apps/delete", &[("id", &web)], Some(&bob)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "a deployer deleted an app: {}", r.body);
    let r = app.api("DELETE", &format!("/apps/{web}"), Some(&key), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let new_app = [
        ("environment_id", environment.as_str()),
        ("name", "bobs-app"),
        ("source", "image"),
        ("image", "nginx:1.27"),
        ("repository", ""),
        ("branch", "main"),
        ("build", "dockerfile"),
    ];
    let r = app.call("apps/create", &new_app, Some(&bob)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(
        status(&app.call("apps/get", &[("id", &web)], Some(&ada)).await),
        StatusCode::OK,
        "the app is still there"
    );

    // A project admin: creates and deletes apps in it (where a plain
    // organization member may not delete).
    limit(&app, &ada, &bob_user, &open, Some("admin")).await;
    let r = app.call("apps/create", &new_app, Some(&bob)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let made = r.json().as_str().unwrap().to_owned();
    let r = app.call("apps/delete", &[("id", &made)], Some(&bob)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        status(&app.call("apps/get", &[("id", &made)], Some(&ada)).await),
        StatusCode::NOT_FOUND
    );

    // Only plain members are limited; promoting Bob ends the limit.
    let r = app
        .call(
            "orgs/members/role",
            &[("user_id", &bob_user), ("role", "admin")],
            Some(&ada),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app
        .call(
            "orgs/members/access",
            &[
                ("user_id", &bob_user),
                ("limited", "on"),
                ("projects[0]", &open),
                ("roles[0]", "viewer"),
            ],
            Some(&ada),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    // A bad role names its field and changes nothing.
    let r = app
        .call(
            "orgs/members/access",
            &[
                ("user_id", &bob_user),
                ("limited", "on"),
                ("projects[0]", &open),
                ("roles[0]", "owner"),
            ],
            Some(&ada),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body.contains("roles"), "{}", r.body);
    // Through the API too.
    let ada_key = app.key(&ada, "owner").await;
    let r = app
        .api(
            "PUT",
            &format!("/members/{bob_user}/access"),
            Some(&ada_key),
            Some(serde_json::json!({"limited": false, "grants": []})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let listed = app.api("GET", "/members", Some(&ada_key), None).await;
    assert!(listed.body.contains("\"limited\":false"), "{}", listed.body);
}

#[tokio::test]
async fn a_key_limited_to_a_project_reaches_that_project_only() {
    let app = TestApp::new().await;
    let Fixture { ada, bob, ids } = fixture(&app).await;
    let (open, environment, web) = open_project(&app, &ada).await;
    let made = app
        .call(
            "keys/create",
            &[("name", "open only"), ("role", "admin"), ("projects[0]", &open)],
            Some(&ada),
        )
        .await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.body);
    let key = made.json()["key"].as_str().unwrap().to_owned();
    let listed = app.call("keys/list", &[], Some(&ada)).await;
    assert!(listed.body.contains("\"projects\":[\"Open\"]"), "{}", listed.body);

    let projects = app.api("GET", "/projects", Some(&key), None).await;
    assert!(
        projects.body.contains("Open") && !projects.body.contains("Secret"),
        "{}",
        projects.body
    );
    let r = app
        .api("GET", &format!("/projects/{}", ids.project), Some(&key), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    let r = app
        .api("GET", &format!("/apps/{}/env", ids.app), Some(&key), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    // Inside its project the key has its (owner-capped) role's powers.
    let r = app.api("GET", &format!("/apps/{web}/env"), Some(&key), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app
        .api(
            "POST",
            "/apps",
            Some(&key),
            Some(serde_json::json!({"environment_id": environment, "name": "from-key", "source": "image", "image": "nginx:1.27"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    // Organization-wide acts are not a project key's.
    let r = app
        .api(
            "POST",
            "/projects",
            Some(&key),
            Some(serde_json::json!({"name": "Another"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = app
        .api(
            "PATCH",
            &format!("/members/{}", ids.member),
            Some(&key),
            Some(serde_json::json!({"role": "admin"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);

    // A key's projects are among those its owner reaches.
    limit(&app, &ada, &ids.member, &open, Some("viewer")).await;
    let r = app
        .call(
            "keys/create",
            &[("name", "sneaky"), ("role", "member"), ("projects[0]", &ids.project)],
            Some(&bob),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body.contains("projects"), "{}", r.body);
}
