//! Database services and backups through Berth's HTTP edges: hostile names,
//! cron expressions, S3 settings and confirmations are refused with a 422 naming
//! the field, and nothing is created or run.

mod common;

use axum::http::StatusCode;
use common::TestApp;

fn field_of(r: &common::Reply) -> String {
    r.json()["Field"]["field"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn hostile_inputs_are_422_naming_the_field_and_change_nothing() {
    let app = TestApp::new().await;
    let ada = app.onboard().await;
    let project = app
        .call("projects/create", &[("name", "Shop"), ("description", "")], Some(&ada))
        .await
        .json()
        .as_str()
        .unwrap()
        .to_owned();
    let detail = app.call("projects/get", &[("id", &project)], Some(&ada)).await.json();
    let env = detail["environments"][0]["id"].as_str().unwrap().to_owned();
    let marker = std::env::temp_dir().join(format!("berth-marker-{}", uuid::Uuid::new_v4().simple()));
    let touch = format!("$(touch {})", marker.display());

    let service = |name: String, engine: &'static str, database: String, user: String, port: String| {
        let env = env.clone();
        let ada = ada.clone();
        let app = &app;
        async move {
            app.call(
                "services/create",
                &[
                    ("environment_id", env.as_str()),
                    ("name", &name),
                    ("engine", engine),
                    ("image", ""),
                    ("database", &database),
                    ("user", &user),
                    ("cpu_millis", ""),
                    ("memory_mb", ""),
                    ("external_bind", "127.0.0.1"),
                    ("external_port", &port),
                ],
                Some(&ada),
            )
            .await
        }
    };
    // field, then (name, engine, database, user, external port)
    type Case = (&'static str, (String, &'static str, String, String, String));
    let cases: Vec<Case> = vec![
        (
            "name",
            (
                format!("db;{touch}"),
                "postgres",
                "app".into(),
                "app".into(),
                String::new(),
            ),
        ),
        (
            "name",
            ("db\nx".into(), "postgres", "app".into(), "app".into(), String::new()),
        ),
        (
            "engine",
            ("db1".into(), "postgres;ls", "app".into(), "app".into(), String::new()),
        ),
        (
            "database",
            (
                "db2".into(),
                "postgres",
                format!("app{touch}"),
                "app".into(),
                String::new(),
            ),
        ),
        (
            "database",
            ("db3".into(), "mysql", "app\ndrop".into(), "app".into(), String::new()),
        ),
        (
            "user",
            (
                "db4".into(),
                "postgres",
                "app".into(),
                "a'; DROP ROLE x; --".into(),
                String::new(),
            ),
        ),
        (
            "user",
            ("db5".into(), "mariadb", "app".into(), "root\n".repeat(3), String::new()),
        ),
        (
            "external_port",
            (
                "db6".into(),
                "redis",
                String::new(),
                String::new(),
                "6379; rm -rf /".into(),
            ),
        ),
    ];
    for (field, (name, engine, database, user, port)) in cases {
        let r = service(name.clone(), engine, database.clone(), user.clone(), port).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{field} {name:?} {database:?} {user:?}: {}",
            r.body
        );
        assert_eq!(field_of(&r), field, "{}", r.body);
    }
    let listed = app
        .call("services/list", &[("project_id", &project)], Some(&ada))
        .await
        .json();
    assert_eq!(listed, serde_json::json!([]), "nothing was created");

    let destination = |endpoint: &str, bucket: &str, prefix: &str, access: &str| {
        let (endpoint, bucket, prefix, access) = (
            endpoint.to_owned(),
            bucket.to_owned(),
            prefix.to_owned(),
            access.to_owned(),
        );
        let ada = ada.clone();
        let app = &app;
        async move {
            app.call(
                "backups/add_destination",
                &[
                    ("name", "Backups"),
                    ("endpoint", &endpoint),
                    ("region", ""),
                    ("bucket", &bucket),
                    ("prefix", &prefix),
                    ("access_key", &access),
                    ("secret_key", "secret"),
                    ("path_style", "on"),
                ],
                Some(&ada),
            )
            .await
        }
    };
    for (field, (endpoint, bucket, prefix, access)) in [
        (
            "prefix",
            ("http://127.0.0.1:9000", "backups", format!("db/{touch}"), "AK"),
        ),
        (
            "prefix",
            ("http://127.0.0.1:9000", "backups", "db\n/x".to_owned(), "AK"),
        ),
        (
            "prefix",
            ("http://127.0.0.1:9000", "backups", "../../etc".to_owned(), "AK"),
        ),
        (
            "prefix",
            ("http://127.0.0.1:9000", "backups", "a;b|c&d".to_owned(), "AK"),
        ),
        ("bucket", ("http://127.0.0.1:9000", "b;ls", String::new(), "AK")),
        (
            "endpoint",
            ("http://127.0.0.1:9000/$(id)", "backups", String::new(), "AK"),
        ),
        (
            "access_key",
            ("http://127.0.0.1:9000", "backups", String::new(), "AK 1\n"),
        ),
    ] {
        let r = destination(endpoint, bucket, &prefix, access).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{field} {prefix:?}: {}",
            r.body
        );
        assert_eq!(field_of(&r), field, "{}", r.body);
    }
    assert_eq!(
        app.call("backups/destinations", &[], Some(&ada)).await.json(),
        serde_json::json!([])
    );

    // A valid service and destination, then hostile schedules and confirmations.
    let svc = service("orders-db".into(), "redis", String::new(), String::new(), String::new()).await;
    assert_eq!(svc.status, StatusCode::OK, "{}", svc.body);
    let svc = svc.json().as_str().unwrap().to_owned();
    let dest = destination("http://127.0.0.1:9000", "backups", "", "AK")
        .await
        .json()
        .as_str()
        .unwrap()
        .to_owned();
    for (field, cron, tz, keep) in [
        ("cron", format!("0 3 * * * {touch}"), "UTC", "3"),
        ("cron", "0 3 * * *; reboot".to_owned(), "UTC", "3"),
        ("cron", "0 3 * * *\n* * * * *".to_owned(), "UTC", "3"),
        ("cron", "0 3 * *".to_owned(), "UTC", "3"),
        ("cron", "99 3 * * *".to_owned(), "UTC", "3"),
        ("timezone", "0 3 * * *".to_owned(), "UTC;ls", "3"),
        ("timezone", "0 3 * * *".to_owned(), "../../etc/passwd", "3"),
        ("keep_last", "0 3 * * *".to_owned(), "UTC", "0"),
        ("keep_last", "0 3 * * *".to_owned(), "UTC", "3; rm"),
    ] {
        let r = app
            .call(
                "backups/add_schedule",
                &[
                    ("subject", &svc),
                    ("destination_id", &dest),
                    ("cron", &cron),
                    ("timezone", tz),
                    ("keep_last", keep),
                ],
                Some(&ada),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{field} {cron:?}: {}",
            r.body
        );
        assert_eq!(field_of(&r), field, "{}", r.body);
    }
    let list = app.call("backups/list", &[("subject", &svc)], Some(&ada)).await.json();
    assert_eq!(list["schedules"], serde_json::json!([]), "no schedule was added");

    // Deleting needs the name typed back; a wrong one changes nothing.
    let r = app
        .call(
            "services/delete",
            &[("id", &svc), ("confirm", "orders-db; rm -rf /")],
            Some(&ada),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(field_of(&r), "confirm");
    let r = app
        .call("services/action", &[("id", &svc), ("action", "stop;ls")], Some(&ada))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(field_of(&r), "action");
    let r = app
        .call(
            "services/link",
            &[
                ("id", &svc),
                ("app_id", &uuid::Uuid::new_v4().to_string()),
                ("env_name", "BAD-NAME"),
            ],
            Some(&ada),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(field_of(&r), "env");
    assert_eq!(
        app.call("services/list", &[("project_id", &project)], Some(&ada))
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(!marker.exists(), "a hostile input ran a command");
}
