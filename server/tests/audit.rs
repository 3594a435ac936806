//! The audit log through the real router: every state-changing server
//! function writes exactly one row naming its caller (whatever the outcome),
//! sign-ins are the instance's events, no secret value reaches a row
//! (canaries), and only admins read the organization's rows (instance
//! administrators the instance's), filtered and exported as JSON lines.

mod common;

use axum::http::StatusCode;
use common::matrix::{fixture, form, Fixture};
use common::TestApp;
use diesel::sql_types::{BigInt, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(diesel::QueryableByName)]
struct Dump {
    #[diesel(sql_type = Text)]
    row: String,
}

async fn rows_of(app: &TestApp, action: &str, user: uuid::Uuid) -> i64 {
    let mut conn = app.t.engine.db.get().await.unwrap();
    diesel::sql_query(
        "SELECT count(*) AS n FROM audit_log
         WHERE action = $1 AND actor_user = $2 AND actor_label LIKE '%<bob@example.com>%'",
    )
    .bind::<Text, _>(action)
    .bind::<SqlUuid, _>(user)
    .get_result::<Count>(&mut conn)
    .await
    .unwrap()
    .n
}

#[tokio::test]
async fn every_state_changing_function_writes_one_row_naming_its_caller_and_no_secret() {
    let app = TestApp::new().await;
    let Fixture { ada, bob, ids } = fixture(&app).await;
    let bob_user = ids.member.clone();
    let bob_id = uuid::Uuid::parse_str(&bob_user).unwrap();

    // Canaries: secret values given to functions that take them.
    let canaries = ["canary-env-7f3a", "canary-password-9c1d", "canary-s3-secret-2b8e"];
    let r = app
        .call(
            "apps/set_env",
            &[("id", &ids.app), ("dotenv", &format!("CANARY={}\n", canaries[0]))],
            Some(&ada),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    let mut functions: Vec<String> = server_fn::axum::server_fn_paths()
        .map(|(p, _)| p.trim_start_matches("/api/").to_owned())
        .filter(|p| !server::audit::NOT_AUDITED.contains(&p.as_str()))
        // Nobody is signed in for these: recorded on success only (below).
        .filter(|p| !matches!(p.as_str(), "onboard" | "invites/accept"))
        .collect();
    functions.sort();
    assert!(functions.len() > 50, "{}", functions.len());
    for f in &functions {
        let mut fields = form(&format!("/api/{f}"), &ids, &bob_user);
        match f.as_str() {
            "account/password" => {
                fields = vec![
                    ("current_password", "wrong".into()),
                    ("new_password", canaries[1].into()),
                ]
            }
            "backups/add_destination" => {
                for (k, v) in fields.iter_mut() {
                    if *k == "secret_key" {
                        *v = canaries[2].into();
                    }
                }
            }
            _ => {}
        }
        let before = rows_of(&app, f, bob_id).await;
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = app.call(f, &fields, Some(&bob)).await;
        let after = rows_of(&app, f, bob_id).await;
        assert_eq!(
            after - before,
            1,
            "{f} ({}) wrote {} rows naming Bob: {}",
            r.status,
            after - before,
            r.body
        );
    }

    // Reads write nothing.
    let mut conn = app.t.engine.db.get().await.unwrap();
    let reads: i64 = diesel::sql_query("SELECT count(*) AS n FROM audit_log WHERE action = ANY($1)")
        .bind::<diesel::sql_types::Array<Text>, _>(
            ["projects/list", "apps/get", "services/get", "audit/list"]
                .map(str::to_owned)
                .to_vec(),
        )
        .get_result::<Count>(&mut conn)
        .await
        .unwrap()
        .n;
    assert_eq!(reads, 0);

    // No row holds a secret value.
    let all: Vec<Dump> = diesel::sql_query("SELECT row_to_json(a)::text AS row FROM audit_log a")
        .load(&mut conn)
        .await
        .unwrap();
    assert!(all.len() > 50);
    for row in &all {
        for c in canaries {
            assert!(!row.row.contains(c), "a secret in the audit log: {}", row.row);
        }
    }
}

#[tokio::test]
async fn sign_ins_are_instance_events_and_only_admins_read_the_log() {
    let app = TestApp::new().await;
    let ada = app.onboard().await;
    let (_, carl) = app.join(&ada, "admin", "Carl", "carl@example.com").await;
    let (_, bob) = app.join(&ada, "member", "Bob", "bob@example.com").await;
    let r = app
        .call(
            "login",
            &[("email", "carl@example.com"), ("password", "not the password")],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = app
        .call(
            "login",
            &[("email", "carl@example.com"), ("password", "long enough pw")],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app
        .call(
            "projects/create",
            &[("name", "Audited"), ("description", "")],
            Some(&carl),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);

    // The organization's log, for its admins: Carl's project, with his name.
    let rows = app
        .call("audit/list", &[("what", "projects/create")], Some(&carl))
        .await;
    assert_eq!(rows.status, StatusCode::OK, "{}", rows.body);
    let rows = rows.json();
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    assert!(
        rows[0]["who"].as_str().unwrap().contains("Carl <carl@example.com>"),
        "{rows}"
    );
    assert!(rows[0]["result"].as_str().unwrap().starts_with("ok"), "{rows}");
    // Filters narrow.
    let none = app
        .call("audit/list", &[("who", "nobody-like-this")], Some(&carl))
        .await
        .json();
    assert_eq!(none.as_array().unwrap().len(), 0);
    let r = app.call("audit/list", &[("since", "yesterday")], Some(&carl)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Members do not read it; organization admins do not read the instance's.
    assert_eq!(
        app.call("audit/list", &[], Some(&bob)).await.status,
        StatusCode::FORBIDDEN
    );
    let r = app.call("audit/list", &[("instance", "on")], Some(&carl)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // The instance's: sign-ins (failed with the address tried), onboarding.
    let inst = app
        .call("audit/list", &[("instance", "on"), ("what", "sign-in")], Some(&ada))
        .await
        .json();
    let list = inst.as_array().unwrap();
    assert!(
        list.iter()
            .any(|r| r["who"] == "carl@example.com" && r["result"].as_str().unwrap().starts_with("denied")),
        "{inst}"
    );
    assert!(
        list.iter()
            .any(|r| r["who"].as_str().unwrap().starts_with("Carl <") && r["result"] == "ok"),
        "{inst}"
    );
    let onboarding = app
        .call("audit/list", &[("instance", "on"), ("what", "onboard")], Some(&ada))
        .await
        .json();
    assert_eq!(onboarding[0]["who"], "ada@example.com", "{onboarding}");

    // The export: JSON lines, one row each, as filtered.
    let r = app.get("/api/audit/export?what=projects%2Fcreate", Some(&carl)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let lines: Vec<serde_json::Value> = r.body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1, "{}", r.body);
    assert_eq!(lines[0]["action"], "projects/create");
    assert_eq!(lines[0]["actor_kind"], "user");

    // Carl's row went in with his project, in its transaction (the same
    // `now()`), and the answer's status was added to it afterwards.
    #[derive(diesel::QueryableByName)]
    struct Same {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        with_it: bool,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Integer>)]
        status: Option<i32>,
    }
    let mut conn = app.t.engine.db.get().await.unwrap();
    let same: Same = diesel::sql_query(
        "SELECT a.at = p.created_at AS with_it, a.status
         FROM audit_log a, projects p WHERE a.action = 'projects/create' AND p.name = 'Audited'",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!((same.with_it, same.status), (true, Some(200)));
}
