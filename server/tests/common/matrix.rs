//! The fixture and the table of every server function that the cross-organization
//! matrix (`tenancy.rs`) and the role matrix (`roles.rs`) share: Ada's organization
//! with one of everything, the form each function takes, and a snapshot of
//! Ada's state to prove a refused call changed nothing.

#![allow(dead_code)]

use super::TestApp;
use axum::http::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// How a server function relates to tenant IDs.
pub enum Class {
    /// Takes no ID: works on the caller's own session or organization.
    NoId,
    /// Takes IDs of the victim's organization: form fields to send, given the IDs.
    Scoped(fn(&Ids) -> Vec<(&'static str, String)>),
}

pub struct Ids {
    pub project: String,
    pub environment: String,
    pub member: String,
    pub invite: String,
    pub org: String,
    pub app: String,
    pub deployment: String,
    pub domain: String,
    pub service: String,
    pub destination: String,
    pub schedule: String,
    pub backup: String,
    pub channel: String,
    /// A delivery of the channel (queued: no worker runs in these tests).
    pub delivery: String,
    pub rule: String,
    pub key: String,
}

pub fn source_form(i: &Ids) -> Vec<(&'static str, String)> {
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

pub fn runtime_form(i: &Ids) -> Vec<(&'static str, String)> {
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

pub fn classes() -> BTreeMap<&'static str, Class> {
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
        // Instance-wide, not per organization: instance administrators only
        // (held by the role matrix, roles.rs).
        ("/api/instance/get", NoId),
        ("/api/instance/metrics", NoId),
        ("/api/instance/settings", NoId),
        ("/api/instance/admin", NoId),
        ("/api/instance/acme", NoId),
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
        (
            "/api/orgs/members/access",
            Scoped(|i| {
                vec![
                    ("user_id", i.member.clone()),
                    ("limited", "on".into()),
                    ("projects[0]", i.project.clone()),
                    ("roles[0]", "viewer".into()),
                ]
            }),
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
            "/api/apps/metrics",
            Scoped(|i| vec![("id", i.app.clone()), ("window", "hour".into())]),
        ),
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
        (
            "/api/apps/update_domain",
            Scoped(|i| {
                vec![
                    ("id", i.domain.clone()),
                    ("https", "on".into()),
                    ("cert", "tls".into()),
                    ("basic_auth", "eve:pwned".into()),
                ]
            }),
        ),
        (
            "/api/apps/upload_certificate",
            Scoped(|i| {
                let (certificate, key) =
                    engine::testing::acme::self_signed(&["pwned.example.com"], (2025, 1, 1), (2035, 1, 1));
                vec![("id", i.domain.clone()), ("certificate", certificate), ("key", key)]
            }),
        ),
        ("/api/apps/hooks", Scoped(|i| vec![("id", i.app.clone())])),
        ("/api/apps/rotate_hooks", Scoped(|i| vec![("id", i.app.clone())])),
        ("/api/apps/reset_host_key", Scoped(|i| vec![("id", i.app.clone())])),
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
        // The caller's own organization's channels, or a new one in it.
        (
            "/api/services/metrics",
            Scoped(|i| vec![("id", i.service.clone()), ("window", "hour".into())]),
        ),
        ("/api/notify/list", NoId),
        ("/api/notify/add", NoId),
        ("/api/notify/remove", Scoped(|i| vec![("id", i.channel.clone())])),
        (
            "/api/notify/edit",
            Scoped(|i| vec![("id", i.channel.clone()), ("name", "Sneaky channel".into())]),
        ),
        (
            "/api/notify/events",
            Scoped(|i| vec![("id", i.channel.clone()), ("events[0]", "upgraded".into())]),
        ),
        ("/api/notify/test", Scoped(|i| vec![("id", i.channel.clone())])),
        ("/api/notify/resend", Scoped(|i| vec![("id", i.delivery.clone())])),
        (
            "/api/notify/add_rule",
            Scoped(|i| {
                vec![
                    ("name", "Sneaky rule".into()),
                    ("metric", "cpu".into()),
                    ("threshold", "90".into()),
                    ("for_secs", "60".into()),
                    ("channels[0]", i.channel.clone()),
                ]
            }),
        ),
        (
            "/api/notify/edit_rule",
            Scoped(|i| {
                vec![
                    ("id", i.rule.clone()),
                    ("name", "Sneaky rule".into()),
                    ("metric", "memory".into()),
                    ("threshold", "99".into()),
                    ("for_secs", "60".into()),
                    ("channels[0]", i.channel.clone()),
                ]
            }),
        ),
        ("/api/notify/remove_rule", Scoped(|i| vec![("id", i.rule.clone())])),
        ("/api/keys/list", NoId),
        ("/api/audit/list", NoId),
        // A sign-in challenge is a bearer secret, not an ID.
        ("/api/login/code", NoId),
        // The caller's own two-factor sign-in, and the organization's rule.
        ("/api/twofactor/status", NoId),
        ("/api/twofactor/begin", NoId),
        ("/api/twofactor/confirm", NoId),
        ("/api/twofactor/disable", NoId),
        ("/api/twofactor/require", NoId),
        // Instance-wide: instance administrators only (roles.rs).
        ("/api/instance/reset_2fa", NoId),
        ("/api/keys/create", NoId),
        ("/api/keys/revoke", Scoped(|i| vec![("id", i.key.clone())])),
    ])
}

/// The form each function takes (the cross-organization matrix's, where it has
/// one), so a refusal is the role's and not a missing field's.
pub fn form(path: &str, i: &Ids, bob_user: &str) -> Vec<(&'static str, String)> {
    if path == "/api/services/update" {
        // The matrix's form publishes a port beyond loopback, a field that
        // needs an instance administrator (its own row in the notes).
        return vec![
            ("id", i.service.clone()),
            ("image", "redis:7".into()),
            ("cpu_millis", String::new()),
            ("memory_mb", String::new()),
            ("external_bind", String::new()),
            ("external_port", String::new()),
        ];
    }
    if let Some(Class::Scoped(f)) = classes().get(path) {
        return f(i);
    }
    let s = |v: &[(&'static str, &str)]| v.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    match path {
        "/api/onboard" => s(&[
            ("setup_token", "x"),
            ("name", "Eve"),
            ("email", "eve@example.com"),
            ("password", "long enough pw"),
            ("organization", "Evil"),
        ]),
        "/api/login" => s(&[("email", "nobody@example.com"), ("password", "wrong password")]),
        "/api/login/code" => s(&[("challenge", "00"), ("code", "123456")]),
        "/api/twofactor/confirm" | "/api/twofactor/disable" => s(&[("code", "123456")]),
        "/api/twofactor/require" => s(&[("required", "on")]),
        "/api/instance/reset_2fa" => vec![("user_id", bob_user.to_owned())],
        "/api/invites/preview" | "/api/invites/accept" => s(&[("token", "not-a-token")]),
        "/api/account/profile" => s(&[("name", "Renamed")]),
        "/api/account/password" => s(&[
            ("current_password", "not it"),
            ("new_password", "a brand new passphrase"),
        ]),
        "/api/instance/settings" => s(&[("org_creation", "anyone")]),
        "/api/instance/admin" => vec![("user_id", bob_user.to_owned()), ("admin", "true".into())],
        "/api/instance/acme" => s(&[("directory", "staging"), ("email", "ops@example.com")]),
        "/api/orgs/create" => s(&[("organization", "Another")]),
        "/api/orgs/invites/create" => s(&[("role", "member")]),
        "/api/projects/create" => s(&[("name", "Made"), ("description", "")]),
        "/api/keys/create" => s(&[("name", "Made key"), ("role", "member")]),
        "/api/backups/add_destination" => s(&[
            ("name", "Another bucket"),
            ("endpoint", "http://127.0.0.1:9"),
            ("region", ""),
            ("bucket", "another-bucket"),
            ("prefix", ""),
            ("access_key", "AK"),
            ("secret_key", "secret-key"),
            ("path_style", "on"),
        ]),
        "/api/instance/metrics" => s(&[("which", "host"), ("window", "hour")]),
        "/api/notify/add" => s(&[
            ("name", "Another channel"),
            ("kind", "slack"),
            ("url", "http://127.0.0.1:9/hook"),
            ("events[0]", "deployment_failed"),
        ]),
        _ => Vec::new(),
    }
}

/// Page routes with parameters, and the URL to try as the intruder.
pub fn page_routes() -> BTreeMap<&'static str, fn(&Ids) -> Option<String>> {
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
pub async fn snapshot(app: &TestApp, cookie: &str, ids: &Ids) -> String {
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
    let notifications = app.call("notify/list", &[], Some(cookie)).await.body;
    let keys = app.call("keys/list", &[], Some(cookie)).await.body;
    format!(
        "{project}\n{members}\n{invites}\n{application}\n{env}\n{hooks}\n{deployments}\n{service}\n{backups}\n{notifications}\n{keys}"
    )
}

/// Ada's organization with one of everything, and Bob, a member of it.
pub struct Fixture {
    pub ada: String,
    pub bob: String,
    pub ids: Ids,
}

/// A Redis database service made through its server function: its ID.
pub async fn redis_service(app: &TestApp, cookie: &str, environment: &str, name: &str) -> String {
    let r = app
        .call(
            "services/create",
            &[
                ("environment_id", environment),
                ("name", name),
                ("engine", "redis"),
                ("image", ""),
                ("database", ""),
                ("user", ""),
                ("cpu_millis", ""),
                ("memory_mb", ""),
                ("external_bind", ""),
                ("external_port", ""),
            ],
            Some(cookie),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.json().as_str().unwrap().to_owned()
}

pub async fn fixture(app: &TestApp) -> Fixture {
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
    let (_, bob_cookie) = app.join(&ada, "member", "Bob", "bob@example.com").await;
    let pending_invite = app
        .call("orgs/invites/create", &[("role", "admin")], Some(&ada))
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
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
    let name = format!("secret-db-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let service = redis_service(app, &ada, &environment, &name).await;
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
    let channel = app
        .call(
            "notify/add",
            &[
                ("name", "Secret channel"),
                ("kind", "webhook"),
                ("url", "http://127.0.0.1:9/secret-hook"),
                ("events[0]", "deployment_failed"),
            ],
            Some(&ada),
        )
        .await;
    assert_eq!(channel.status, StatusCode::OK, "{}", channel.body);
    let listed = app.call("notify/list", &[], Some(&ada)).await;
    let channel = listed.json()["channels"][0]["id"].as_str().unwrap().to_owned();
    let delivery = app.call("notify/test", &[("id", &channel)], Some(&ada)).await;
    assert_eq!(delivery.status, StatusCode::OK, "{}", delivery.body);
    let delivery = delivery.json().as_str().unwrap().to_owned();
    let rule = app
        .call(
            "notify/add_rule",
            &[
                ("name", "Secret rule"),
                ("metric", "memory"),
                ("threshold", "80"),
                ("for_secs", "300"),
                ("channels[0]", &channel),
            ],
            Some(&ada),
        )
        .await;
    assert_eq!(rule.status, StatusCode::OK, "{}", rule.body);
    let rule = rule.json().as_str().unwrap().to_owned();
    let key = app
        .call("keys/create", &[("name", "Secret key"), ("role", "admin")], Some(&ada))
        .await;
    assert_eq!(key.status, StatusCode::OK, "{}", key.body);
    let key = key.json()["id"].as_str().unwrap().to_owned();
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
        channel,
        delivery,
        rule,
        key,
    };

    Fixture {
        ada,
        bob: bob_cookie,
        ids,
    }
}

/// Every operation of the document, as (method, path under /api/v1).
pub async fn operations(app: &TestApp) -> (Value, Vec<(String, String)>) {
    let r = app.api("GET", "/openapi.json", None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let doc = r.json();
    let mut ops = vec![];
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item[method].is_object() {
                let path = path.strip_prefix("/api/v1").expect("under /api/v1").to_owned();
                ops.push((method.to_uppercase(), path));
            }
        }
    }
    (doc, ops)
}

/// The body a REST operation takes (in the victim's terms), if any.
pub fn body(method: &str, path: &str, i: &Ids) -> Option<Value> {
    match (method, path) {
        ("POST", "/projects") => Some(json!({"name": "Pwned"})),
        ("PATCH", "/projects/{id}") => Some(json!({"name": "Pwned"})),
        ("POST", "/projects/{id}/environments") => Some(json!({"name": "pwned"})),
        ("PATCH", "/environments/{id}") => Some(json!({"name": "pwned"})),
        ("POST", "/apps") => {
            Some(json!({"environment_id": i.environment, "name": "pwned", "source": "image", "image": "nginx:1.27"}))
        }
        ("PATCH", "/apps/{id}") => Some(json!({"runtime": {"port": 8081}})),
        ("PATCH", "/domains/{id}") => Some(json!({"compress": true})),
        ("PUT", "/apps/{id}/env") => Some(json!({"vars": {"PWNED": "1"}})),
        ("POST", "/apps/{id}/domains") => Some(json!({"host": "pwned.example.com"})),
        ("POST", "/services") => Some(json!({"environment_id": i.environment, "name": "pwned-db", "engine": "redis"})),
        ("PATCH", "/services/{id}") => Some(json!({"memory_mb": 64})),
        ("POST", "/services/{id}/actions") => Some(json!({"action": "stop"})),
        ("POST", "/destinations") => Some(
            json!({"name": "Pwned", "endpoint": "http://127.0.0.1:9", "bucket": "pwned", "access_key": "AK", "secret_key": "SK"}),
        ),
        ("POST", "/services/{id}/backups") => Some(json!({"destination_id": i.destination})),
        ("POST", "/backups/{id}/restore") => {
            Some(json!({"service_id": i.service, "target": "new", "new_name": "pwned-copy"}))
        }
        ("POST", "/services/{id}/schedules") => {
            Some(json!({"destination_id": i.destination, "cron": "0 4 * * *", "keep_last": 2}))
        }
        ("PATCH", "/members/{id}") => Some(json!({"role": "admin"})),
        ("POST", "/invites") => Some(json!({"role": "member"})),
        ("PUT", "/members/{id}/access") => {
            Some(json!({"limited": true, "grants": [{"project_id": i.project, "role": "viewer"}]}))
        }
        _ => None,
    }
}

/// The victim's ID a path's `{id}` stands for.
pub fn victim(path: &str, i: &Ids) -> String {
    let id = match path.split('/').nth(1) {
        Some("projects") => &i.project,
        Some("environments") => &i.environment,
        Some("apps") => &i.app,
        Some("domains") => &i.domain,
        Some("deployments") => &i.deployment,
        Some("services") => &i.service,
        Some("destinations") => &i.destination,
        Some("backups") => &i.backup,
        Some("schedules") => &i.schedule,
        Some("members") => &i.member,
        Some("invites") => &i.invite,
        other => panic!("{path}: which ID does {other:?} take? (add it here)"),
    };
    path.replace("{id}", id)
}

/// `path` with its `{id}` the victim's, if it has one.
pub fn victim_or_plain(path: &str, i: &Ids) -> String {
    if path.contains("{id}") {
        victim(path, i)
    } else {
        path.to_owned()
    }
}
