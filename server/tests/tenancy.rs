//! The cross-organization matrix. Every server function and every page route
//! with a parameter is enumerated from the running router's registries and must
//! be classified below: a new one that is not fails this test until someone
//! decides how it is scoped. Each ID-taking one is called by a member of
//! another organization with this organization's IDs and must answer 404 and
//! change nothing.

mod common;

use axum::http::StatusCode;
use common::TestApp;
use std::collections::BTreeMap;

/// How a server function relates to tenant IDs.
enum Class {
    /// Takes no ID: works on the caller's own session or organization.
    NoId,
    /// Takes IDs of the victim's organization: form fields to send, given the IDs.
    Scoped(fn(&Ids) -> Vec<(&'static str, String)>),
}

struct Ids {
    project: String,
    environment: String,
    member: String,
    invite: String,
    org: String,
    app: String,
    deployment: String,
    domain: String,
    service: String,
    destination: String,
    schedule: String,
    backup: String,
}

fn source_form(i: &Ids) -> Vec<(&'static str, String)> {
    let mut f = vec![("id", i.app.clone())];
    for (k, v) in [
        ("source", "image"),
        ("image", "nginx:1.27"),
        ("registry_user", ""),
        ("secret", ""),
        ("repository", ""),
        ("branch", "main"),
        ("subdir", ""),
        ("build", "dockerfile"),
        ("dockerfile", "Dockerfile"),
        ("context", "."),
        ("target", ""),
        ("build_args", ""),
        ("static_dir", ""),
    ] {
        f.push((k, v.to_owned()));
    }
    f
}

fn runtime_form(i: &Ids) -> Vec<(&'static str, String)> {
    let mut f = vec![("id", i.app.clone())];
    for k in [
        "port",
        "command",
        "cpu_millis",
        "memory_mb",
        "restart",
        "health",
        "health_path",
        "health_command",
        "health_interval_ms",
        "health_timeout_ms",
        "health_retries",
        "health_start_period_secs",
        "volumes",
        "drain_secs",
    ] {
        f.push((k, String::new()));
    }
    f
}

fn classes() -> BTreeMap<&'static str, Class> {
    use Class::*;
    BTreeMap::from([
        ("/api/session", NoId),
        ("/api/onboard", NoId),
        ("/api/login", NoId),
        ("/api/logout", NoId),
        ("/api/account/profile", NoId),
        ("/api/account/password", NoId),
        ("/api/system/status", NoId),
        ("/api/projects/list", NoId),
        ("/api/projects/create", NoId),
        ("/api/orgs/create", NoId),
        ("/api/orgs/members", NoId),
        ("/api/orgs/invites", NoId),
        ("/api/orgs/invites/create", NoId),
        // Invite tokens are bearer secrets, not IDs: holding one is the permission.
        ("/api/invites/preview", NoId),
        ("/api/invites/accept", NoId),
        ("/api/projects/get", Scoped(|i| vec![("id", i.project.clone())])),
        (
            "/api/projects/update",
            Scoped(|i| {
                vec![
                    ("id", i.project.clone()),
                    ("name", "Pwned".into()),
                    ("description", String::new()),
                ]
            }),
        ),
        ("/api/projects/delete", Scoped(|i| vec![("id", i.project.clone())])),
        (
            "/api/environments/create",
            Scoped(|i| vec![("project_id", i.project.clone()), ("name", "pwned".into())]),
        ),
        (
            "/api/environments/rename",
            Scoped(|i| vec![("id", i.environment.clone()), ("name", "pwned".into())]),
        ),
        (
            "/api/environments/delete",
            Scoped(|i| vec![("id", i.environment.clone())]),
        ),
        ("/api/orgs/switch", Scoped(|i| vec![("id", i.org.clone())])),
        (
            "/api/orgs/members/role",
            Scoped(|i| vec![("user_id", i.member.clone()), ("role", "member".into())]),
        ),
        (
            "/api/orgs/members/remove",
            Scoped(|i| vec![("user_id", i.member.clone())]),
        ),
        ("/api/orgs/invites/revoke", Scoped(|i| vec![("id", i.invite.clone())])),
        ("/api/apps/list", Scoped(|i| vec![("project_id", i.project.clone())])),
        (
            "/api/apps/create",
            Scoped(|i| {
                vec![
                    ("environment_id", i.environment.clone()),
                    ("name", "pwned".into()),
                    ("source", "image".into()),
                    ("image", "nginx".into()),
                    ("repository", String::new()),
                    ("branch", "main".into()),
                    ("build", "dockerfile".into()),
                ]
            }),
        ),
        ("/api/apps/get", Scoped(|i| vec![("id", i.app.clone())])),
        ("/api/apps/update_source", Scoped(source_form)),
        ("/api/apps/update_runtime", Scoped(runtime_form)),
        ("/api/apps/env", Scoped(|i| vec![("id", i.app.clone())])),
        (
            "/api/apps/set_env",
            Scoped(|i| vec![("id", i.app.clone()), ("dotenv", "PWNED=1".into())]),
        ),
        (
            "/api/apps/add_domain",
            Scoped(|i| {
                vec![
                    ("id", i.app.clone()),
                    ("host", "pwned.example.com".into()),
                    ("path_prefix", "/".into()),
                    ("port", String::new()),
                ]
            }),
        ),
        ("/api/apps/remove_domain", Scoped(|i| vec![("id", i.domain.clone())])),
        ("/api/apps/hooks", Scoped(|i| vec![("id", i.app.clone())])),
        ("/api/apps/rotate_hooks", Scoped(|i| vec![("id", i.app.clone())])),
        ("/api/apps/delete", Scoped(|i| vec![("id", i.app.clone())])),
        ("/api/deployments/create", Scoped(|i| vec![("app_id", i.app.clone())])),
        (
            "/api/services/list",
            Scoped(|i| vec![("project_id", i.project.clone())]),
        ),
        (
            "/api/services/create",
            Scoped(|i| {
                vec![
                    ("environment_id", i.environment.clone()),
                    ("name", "pwned-db".into()),
                    ("engine", "redis".into()),
                    ("image", String::new()),
                    ("database", String::new()),
                    ("user", String::new()),
                    ("cpu_millis", String::new()),
                    ("memory_mb", String::new()),
                    ("external_bind", String::new()),
                    ("external_port", String::new()),
                ]
            }),
        ),
        ("/api/services/get", Scoped(|i| vec![("id", i.service.clone())])),
        ("/api/services/reveal", Scoped(|i| vec![("id", i.service.clone())])),
        (
            "/api/services/action",
            Scoped(|i| vec![("id", i.service.clone()), ("action", "stop".into())]),
        ),
        (
            "/api/services/update",
            Scoped(|i| {
                vec![
                    ("id", i.service.clone()),
                    ("image", "redis:7".into()),
                    ("cpu_millis", String::new()),
                    ("memory_mb", String::new()),
                    ("external_bind", "0.0.0.0".into()),
                    ("external_port", "16379".into()),
                ]
            }),
        ),
        (
            "/api/services/delete",
            Scoped(|i| {
                vec![
                    ("id", i.service.clone()),
                    ("confirm", "x".into()),
                    ("remove_volume", "on".into()),
                ]
            }),
        ),
        (
            "/api/services/link",
            Scoped(|i| {
                vec![
                    ("id", i.service.clone()),
                    ("app_id", i.app.clone()),
                    ("env_name", "PWNED".into()),
                ]
            }),
        ),
        // The caller's own organization's destinations, or a new one in it.
        ("/api/backups/destinations", NoId),
        ("/api/backups/add_destination", NoId),
        (
            "/api/backups/remove_destination",
            Scoped(|i| vec![("id", i.destination.clone())]),
        ),
        (
            "/api/backups/test_destination",
            Scoped(|i| vec![("id", i.destination.clone())]),
        ),
        ("/api/backups/list", Scoped(|i| vec![("subject", i.service.clone())])),
        (
            "/api/backups/run",
            Scoped(|i| {
                vec![
                    ("subject", i.service.clone()),
                    ("destination_id", i.destination.clone()),
                ]
            }),
        ),
        (
            "/api/backups/restore",
            Scoped(|i| {
                vec![
                    ("backup_id", i.backup.clone()),
                    ("service_id", i.service.clone()),
                    ("target", "existing".into()),
                    ("confirm", "x".into()),
                    ("new_name", String::new()),
                ]
            }),
        ),
        ("/api/backups/drill", Scoped(|i| vec![("backup_id", i.backup.clone())])),
        (
            "/api/backups/bucket",
            Scoped(|i| {
                vec![
                    ("subject", i.service.clone()),
                    ("destination_id", i.destination.clone()),
                ]
            }),
        ),
        (
            "/api/backups/import",
            Scoped(|i| {
                vec![
                    ("subject", i.service.clone()),
                    ("destination_id", i.destination.clone()),
                    ("key", "x/y.rdb.gz".into()),
                ]
            }),
        ),
        (
            "/api/backups/add_schedule",
            Scoped(|i| {
                vec![
                    ("subject", i.service.clone()),
                    ("destination_id", i.destination.clone()),
                    ("cron", "* * * * *".into()),
                    ("timezone", "UTC".into()),
                    ("keep_last", "1".into()),
                ]
            }),
        ),
        (
            "/api/backups/remove_schedule",
            Scoped(|i| vec![("id", i.schedule.clone())]),
        ),
        (
            "/api/backups/run_schedule",
            Scoped(|i| vec![("id", i.schedule.clone())]),
        ),
        ("/api/deployments/list", Scoped(|i| vec![("app_id", i.app.clone())])),
        (
            "/api/deployments/cancel",
            Scoped(|i| vec![("id", i.deployment.clone())]),
        ),
        (
            "/api/deployments/rollback",
            Scoped(|i| vec![("id", i.deployment.clone())]),
        ),
    ])
}

/// Page routes with parameters, and the URL to try as the intruder.
fn page_routes() -> BTreeMap<&'static str, fn(&Ids) -> Option<String>> {
    BTreeMap::from([
        (
            "/projects/:id",
            (|i: &Ids| Some(format!("/projects/{}", i.project))) as fn(&Ids) -> Option<String>,
        ),
        // A token route: an unknown token renders "invalid", there is nothing to leak.
        ("/invite/:token", |_| None),
        ("/apps/:id", |i| Some(format!("/apps/{}", i.app))),
        ("/services/:id", |i| Some(format!("/services/{}", i.service))),
    ])
}

/// The victim's state, read as the victim, to prove nothing changed.
async fn snapshot(app: &TestApp, cookie: &str, ids: &Ids) -> String {
    let project = app
        .call("projects/get", &[("id", &ids.project)], Some(cookie))
        .await
        .body;
    let members = app.call("orgs/members", &[], Some(cookie)).await.body;
    let invites = app.call("orgs/invites", &[], Some(cookie)).await.body;
    let application = app.call("apps/get", &[("id", &ids.app)], Some(cookie)).await.body;
    let env = app.call("apps/env", &[("id", &ids.app)], Some(cookie)).await.body;
    let hooks = app.call("apps/hooks", &[("id", &ids.app)], Some(cookie)).await.body;
    let deployments = app
        .call("deployments/list", &[("app_id", &ids.app)], Some(cookie))
        .await
        .body;
    let service = app
        .call("services/reveal", &[("id", &ids.service)], Some(cookie))
        .await
        .body;
    let backups = app
        .call("backups/list", &[("subject", &ids.service)], Some(cookie))
        .await
        .body;
    format!("{project}\n{members}\n{invites}\n{application}\n{env}\n{hooks}\n{deployments}\n{service}\n{backups}")
}

#[tokio::test]
async fn another_organizations_ids_are_404_everywhere_and_change_nothing() {
    let app = TestApp::new().await;

    // Victim: Ada's organization, with a project, an extra environment, a member and an invite.
    let ada = app.onboard().await;
    let project = app
        .call(
            "projects/create",
            &[("name", "Secret"), ("description", "")],
            Some(&ada),
        )
        .await
        .json();
    let project = project.as_str().unwrap().to_owned();
    let environment = app
        .call(
            "environments/create",
            &[("project_id", &project), ("name", "staging")],
            Some(&ada),
        )
        .await;
    let environment = environment.json().as_str().unwrap().to_owned();
    let invite = |role: &'static str| {
        let ada = ada.clone();
        let app = &app;
        async move {
            app.call("orgs/invites/create", &[("role", role)], Some(&ada))
                .await
                .json()
        }
    };
    let bob_link = invite("member").await["link"].as_str().unwrap().to_owned();
    let bob_token = bob_link.rsplit('/').next().unwrap();
    let bob = app
        .call(
            "invites/accept",
            &[
                ("token", bob_token),
                ("name", "Bob"),
                ("email", "bob@example.com"),
                ("password", "long enough pw"),
            ],
            None,
        )
        .await;
    let bob_cookie = bob.session_cookie();
    let pending_invite = invite("admin").await["id"].as_str().unwrap().to_owned();
    let me = app.call("session", &[], Some(&ada)).await.json();
    let org = me["SignedIn"]["org_id"].as_str().unwrap().to_owned();
    let members = app.call("orgs/members", &[], Some(&ada)).await.json();
    let member = members
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == "bob@example.com")
        .unwrap()["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let application = app
        .call(
            "apps/create",
            &[
                ("environment_id", &environment),
                (
                    "name",
                    &format!("secret-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
                ),
                ("source", "image"),
                ("image", "nginx:1.27"),
                ("repository", ""),
                ("branch", "main"),
                ("build", "dockerfile"),
            ],
            Some(&ada),
        )
        .await;
    let application = application.json().as_str().unwrap().to_owned();
    let r = app
        .call(
            "apps/set_env",
            &[("id", &application), ("dotenv", "TOKEN=s3cret")],
            Some(&ada),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app
        .call(
            "apps/add_domain",
            &[
                ("id", &application),
                ("host", "secret.example.com"),
                ("path_prefix", "/"),
                ("port", ""),
            ],
            Some(&ada),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let detail = app.call("apps/get", &[("id", &application)], Some(&ada)).await.json();
    let domain = detail["domains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["host"] == "secret.example.com")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deployment = app
        .call("deployments/create", &[("app_id", &application)], Some(&ada))
        .await
        .json()
        .as_str()
        .unwrap()
        .to_owned();
    let service = app
        .call(
            "services/create",
            &[
                ("environment_id", &environment),
                (
                    "name",
                    &format!("secret-db-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
                ),
                ("engine", "redis"),
                ("image", ""),
                ("database", ""),
                ("user", ""),
                ("cpu_millis", ""),
                ("memory_mb", ""),
                ("external_bind", ""),
                ("external_port", ""),
            ],
            Some(&ada),
        )
        .await;
    assert_eq!(service.status, StatusCode::OK, "{}", service.body);
    let service = service.json().as_str().unwrap().to_owned();
    let destination = app
        .call(
            "backups/add_destination",
            &[
                ("name", "Secret bucket"),
                ("endpoint", "http://127.0.0.1:9"),
                ("region", ""),
                ("bucket", "secret-bucket"),
                ("prefix", "secret"),
                ("access_key", "AKSECRET"),
                ("secret_key", "very-secret-key"),
                ("path_style", "on"),
            ],
            Some(&ada),
        )
        .await;
    assert_eq!(destination.status, StatusCode::OK, "{}", destination.body);
    let destination = destination.json().as_str().unwrap().to_owned();
    let schedule = app
        .call(
            "backups/add_schedule",
            &[
                ("subject", &service),
                ("destination_id", &destination),
                ("cron", "0 3 * * *"),
                ("timezone", "Europe/Paris"),
                ("keep_last", "3"),
            ],
            Some(&ada),
        )
        .await;
    assert_eq!(schedule.status, StatusCode::OK, "{}", schedule.body);
    let schedule = schedule.json().as_str().unwrap().to_owned();
    // Queued (no worker runs in this test): a backup row to aim at.
    let backup = app
        .call(
            "backups/run",
            &[("subject", &service), ("destination_id", &destination)],
            Some(&ada),
        )
        .await;
    assert_eq!(backup.status, StatusCode::OK, "{}", backup.body);
    let backup = backup.json().as_str().unwrap().to_owned();
    let ids = Ids {
        project,
        environment,
        member,
        invite: pending_invite,
        org,
        app: application,
        deployment,
        domain,
        service,
        destination,
        schedule,
        backup,
    };

    // Intruder: Mallory joins through an invite, makes her own organization (where
    // she is owner, so roles never mask tenancy), and is then removed from Ada's.
    let m_link = invite("member").await["link"].as_str().unwrap().to_owned();
    let m_token = m_link.rsplit('/').next().unwrap();
    let mallory = app
        .call(
            "invites/accept",
            &[
                ("token", m_token),
                ("name", "Mallory"),
                ("email", "m@example.com"),
                ("password", "long enough pw"),
            ],
            None,
        )
        .await
        .session_cookie();
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
    let routes = leptos_axum::generate_route_list(app::App);
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

    assert_eq!(snapshot(&app, &ada, &ids).await, before, "the victim's data changed");
    // And Bob, still a member, sees the project: the checks are tenancy, not breakage.
    assert_eq!(
        app.call("projects/get", &[("id", &ids.project)], Some(&bob_cookie))
            .await
            .status,
        StatusCode::OK
    );
}
