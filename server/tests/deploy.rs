//! The deploy engine through Berth's HTTP edges: hostile inputs are refused with
//! a 422 naming the field before anything runs, and webhooks authenticate by
//! signature or token (bad ones: 401, nothing queued; replays: one deployment).

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::{TestApp, HOST};
use hmac::Mac;

async fn project_env(app: &TestApp, cookie: &str) -> (String, String) {
    let project = app
        .call(
            "projects/create",
            &[("name", "Shop"), ("description", "")],
            Some(cookie),
        )
        .await
        .json()
        .as_str()
        .unwrap()
        .to_owned();
    let detail = app.call("projects/get", &[("id", &project)], Some(cookie)).await.json();
    let env = detail["environments"][0]["id"].as_str().unwrap().to_owned();
    (project, env)
}

fn field_of(r: &common::Reply) -> String {
    r.json()["Field"]["field"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn hostile_inputs_are_422_naming_the_field_and_start_nothing() {
    let app = TestApp::new().await;
    let ada = app.onboard().await;
    let (_, env) = project_env(&app, &ada).await;
    let marker = std::env::temp_dir().join(format!("berth-marker-{}", uuid::Uuid::new_v4().simple()));
    let m = marker.display().to_string();
    let touch = format!("touch {m}");
    let cases: Vec<(&str, String, &str, String, &str)> = vec![
        // (field under test, repository, branch, image, expected field)
        (
            "ext transport",
            format!("ext::sh -c {touch}"),
            "main",
            String::new(),
            "repository",
        ),
        (
            "option as url",
            format!("--upload-pack={touch}"),
            "main",
            String::new(),
            "repository",
        ),
        (
            "metachar url",
            format!("https://github.com/a/b;{touch}"),
            "main",
            String::new(),
            "repository",
        ),
        (
            "subshell url",
            format!("https://github.com/a/$({touch})"),
            "main",
            String::new(),
            "repository",
        ),
        (
            "local file url",
            "file:///etc".into(),
            "main",
            String::new(),
            "repository",
        ),
        (
            "dash branch",
            "https://github.com/a/b.git".into(),
            "--upload-pack=touch",
            String::new(),
            "branch",
        ),
        (
            "metachar branch",
            "https://github.com/a/b.git".into(),
            "main;touch",
            String::new(),
            "branch",
        ),
        (
            "dotdot branch",
            "https://github.com/a/b.git".into(),
            "a/../b",
            String::new(),
            "branch",
        ),
        (
            "backtick branch",
            "https://github.com/a/b.git".into(),
            "`touch`",
            String::new(),
            "branch",
        ),
    ];
    for (what, repository, branch, image, field) in &cases {
        let r = app
            .call(
                "apps/create",
                &[
                    ("environment_id", &env),
                    ("name", "web"),
                    ("source", "git"),
                    ("image", image),
                    ("repository", repository),
                    ("branch", branch),
                    ("build", "dockerfile"),
                ],
                Some(&ada),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {}", r.body);
        assert_eq!(field_of(&r), *field, "{what}: {}", r.body);
    }
    for (image, field) in [
        (format!("busybox;{touch}"), "image"),
        (format!("$({touch})"), "image"),
        ("--privileged".to_owned(), "image"),
        ("../etc/passwd".to_owned(), "image"),
    ] {
        let r = app
            .call(
                "apps/create",
                &[
                    ("environment_id", &env),
                    ("name", "img"),
                    ("source", "image"),
                    ("image", &image),
                    ("repository", ""),
                    ("branch", "main"),
                    ("build", "dockerfile"),
                ],
                Some(&ada),
            )
            .await;
        assert_eq!(
            (r.status, field_of(&r).as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, field),
            "{image}"
        );
    }
    for name in ["-web", "web;x", "Web", "a..b", "$(x)"] {
        let r = app
            .call(
                "apps/create",
                &[
                    ("environment_id", &env),
                    ("name", name),
                    ("source", "image"),
                    ("image", "nginx"),
                    ("repository", ""),
                    ("branch", "main"),
                    ("build", "dockerfile"),
                ],
                Some(&ada),
            )
            .await;
        assert_eq!(
            (r.status, field_of(&r).as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, "name"),
            "{name}"
        );
    }

    // A valid app, then hostile updates of its paths and variables.
    let id = app
        .call(
            "apps/create",
            &[
                ("environment_id", &env),
                (
                    "name",
                    &format!("ok-{}", &uuid::Uuid::new_v4().simple().to_string()[..6]),
                ),
                ("source", "git"),
                ("image", ""),
                ("repository", "https://github.com/acme/shop.git"),
                ("branch", "main"),
                ("build", "dockerfile"),
            ],
            Some(&ada),
        )
        .await
        .json()
        .as_str()
        .unwrap()
        .to_owned();
    let before = app.call("apps/get", &[("id", &id)], Some(&ada)).await.body;
    for (key, value, field) in [
        ("subdir", "../../etc", "subdir"),
        ("subdir", "-rf", "subdir"),
        ("dockerfile", "../Dockerfile", "dockerfile"),
        ("context", "a/../../b", "context"),
        ("context", "/etc", "context"),
        ("target", "--output=/tmp", "target"),
        ("build_args", "A-B=1", "build_args"),
    ] {
        let mut form = vec![
            ("id", id.as_str()),
            ("source", "git"),
            ("image", ""),
            ("registry_user", ""),
            ("secret", ""),
            ("repository", "https://github.com/acme/shop.git"),
            ("branch", "main"),
            ("subdir", ""),
            ("build", "dockerfile"),
            ("dockerfile", "Dockerfile"),
            ("context", "."),
            ("target", ""),
            ("build_args", ""),
            ("static_dir", ""),
        ];
        form.retain(|(k, _)| *k != key);
        form.push((key, value));
        let r = app.call("apps/update_source", &form, Some(&ada)).await;
        assert_eq!(
            (r.status, field_of(&r).as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, field),
            "{key}={value}"
        );
    }
    for dotenv in ["1A=x", "A B=x", "A;touch=x", "$(x)=1"] {
        let r = app
            .call("apps/set_env", &[("id", &id), ("dotenv", dotenv)], Some(&ada))
            .await;
        assert_eq!(
            (r.status, field_of(&r).as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, "env"),
            "{dotenv}"
        );
    }
    for (host, field) in [
        ("a;b.example.com", "host"),
        ("-x.example.com", "host"),
        ("localhost", "host"),
    ] {
        let r = app
            .call(
                "apps/add_domain",
                &[("id", &id), ("host", host), ("path_prefix", "/"), ("port", "")],
                Some(&ada),
            )
            .await;
        assert_eq!(
            (r.status, field_of(&r).as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, field),
            "{host}"
        );
    }
    let r = app
        .call(
            "apps/add_domain",
            &[
                ("id", &id),
                ("host", "x.example.com"),
                ("path_prefix", "/a/../b"),
                ("port", ""),
            ],
            Some(&ada),
        )
        .await;
    assert_eq!(field_of(&r), "path_prefix");
    // Nothing changed, nothing was queued, nothing ran.
    assert_eq!(app.call("apps/get", &[("id", &id)], Some(&ada)).await.body, before);
    let deployments = app
        .call("deployments/list", &[("app_id", &id)], Some(&ada))
        .await
        .json();
    assert_eq!(deployments["deployments"].as_array().unwrap().len(), 0);
    assert!(!marker.exists(), "a hostile input ran a command");
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn github(app: &TestApp, delivery: &str, signature: &str, body: &[u8]) -> common::Reply {
    // A cross-site POST: no Origin of ours, no cookie.
    let req = Request::post("/api/webhooks/github")
        .header(header::HOST, HOST)
        .header(header::ORIGIN, "https://github.com")
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-github-event", "push")
        .header("x-github-delivery", delivery)
        .header("x-hub-signature-256", signature)
        .body(Body::from(body.to_vec()))
        .unwrap();
    app.send(req).await
}

#[tokio::test]
async fn webhooks_verify_signatures_and_deliveries_deploy_once() {
    let app = TestApp::new().await;
    let ada = app.onboard().await;
    let (_, env) = project_env(&app, &ada).await;
    let repo = format!("https://github.com/acme/shop-{}.git", uuid::Uuid::new_v4().simple());
    let id = app
        .call(
            "apps/create",
            &[
                ("environment_id", &env),
                (
                    "name",
                    &format!("hook-{}", &uuid::Uuid::new_v4().simple().to_string()[..6]),
                ),
                ("source", "git"),
                ("image", ""),
                ("repository", &repo),
                ("branch", "main"),
                ("build", "dockerfile"),
            ],
            Some(&ada),
        )
        .await
        .json()
        .as_str()
        .unwrap()
        .to_owned();
    let hooks = app.call("apps/hooks", &[("id", &id)], Some(&ada)).await.json();
    let secret = hooks["github_secret"].as_str().unwrap().to_owned();
    let body = serde_json::to_vec(&serde_json::json!({
        "ref": "refs/heads/main",
        "repository": {"clone_url": repo, "ssh_url": "git@github.com:acme/other.git"},
    }))
    .unwrap();
    let count = || async {
        app.call("deployments/list", &[("app_id", &id)], Some(&ada))
            .await
            .json()["deployments"]
            .as_array()
            .unwrap()
            .len()
    };

    let r = github(&app, "d-1", &sign("not the secret", &body), &body).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    let r = github(&app, "d-1", "", &body).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert_eq!(count().await, 0, "a bad signature queued nothing");

    let good = sign(&secret, &body);
    let r = github(&app, "d-1", &good, &body).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let first = r.json()["deployments"][0]["deployment"].clone();
    let r = github(&app, "d-1", &good, &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["deployments"][0]["duplicate"], true);
    assert_eq!(r.json()["deployments"][0]["deployment"], first);
    assert_eq!(count().await, 1, "a replayed delivery deploys once");

    // The generic deploy URL, with an idempotency key; a rotated token stops working.
    let url = hooks["deploy_url"].as_str().unwrap().to_owned();
    let post = |url: String, key: &'static str| {
        Request::post(url)
            .header(header::HOST, HOST)
            .header("idempotency-key", key)
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(app.send(post(url.clone(), "ci-1")).await.status, StatusCode::ACCEPTED);
    assert_eq!(app.send(post(url.clone(), "ci-1")).await.status, StatusCode::OK);
    assert_eq!(count().await, 2);
    // The history says who started each: a webhook, and which one.
    let listed = app
        .call("deployments/list", &[("app_id", &id)], Some(&ada))
        .await
        .json();
    let triggers: Vec<(String, String)> = listed["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["trigger"].as_str().unwrap().to_owned(),
                d["trigger_detail"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        triggers,
        [
            ("webhook".to_owned(), "deploy token".to_owned()),
            ("webhook".to_owned(), "github push".to_owned())
        ],
        "{listed}"
    );
    // The audit log has one row per deployment queued (replays none), each
    // written in the deployment's own transaction (the same `now()`).
    {
        use diesel_async::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Text)]
            actor_label: String,
            #[diesel(sql_type = diesel::sql_types::Bool)]
            with_it: bool,
        }
        let mut conn = app.t.engine.db.get().await.unwrap();
        let rows: Vec<Row> = diesel::sql_query(
            "SELECT a.actor_label, a.at = d.created_at AS with_it
             FROM audit_log a JOIN deployments d ON d.id = a.target_id
             WHERE a.actor_kind = 'webhook' AND a.action = 'webhook deploy' ORDER BY a.at",
        )
        .load(&mut conn)
        .await
        .unwrap();
        let rows: Vec<(String, bool)> = rows.into_iter().map(|r| (r.actor_label, r.with_it)).collect();
        assert_eq!(
            rows,
            [("github push".to_owned(), true), ("deploy token".to_owned(), true)]
        );
    }
    let r = app
        .send(post(format!("/api/webhooks/deploy/{}", "0".repeat(64)), "x"))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    app.call("apps/rotate_hooks", &[("id", &id)], Some(&ada)).await;
    assert_eq!(app.send(post(url, "ci-2")).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(count().await, 2);
}
