//! Two-factor sign-in through the real router: enrolment is confirmed by a
//! code, sign-in then asks for one after the password, a wrong code is refused
//! and counted (the sixth wrong one is throttled), a recovery code works once,
//! a code works once, an organization's requirement holds its members to
//! enrolment, and an instance administrator's reset signs the user out.

mod common;

use axum::http::StatusCode;
use common::TestApp;
use engine::twofactor::{code_at, from_base32, step_now};

fn code(secret: &[u8], step: u64) -> String {
    format!("{:06}", code_at(secret, step))
}

/// Sets up two-factor sign-in for the holder of `cookie`: its secret and
/// recovery codes.
async fn enrol(app: &TestApp, cookie: &str) -> (Vec<u8>, Vec<String>) {
    let begun = app.call("twofactor/begin", &[], Some(cookie)).await;
    assert_eq!(begun.status, StatusCode::OK, "{}", begun.body);
    let begun = begun.json();
    assert!(begun["qr_svg"].as_str().unwrap().contains("<svg"), "{begun}");
    assert!(begun["uri"].as_str().unwrap().starts_with("otpauth://totp/Berth:"));
    let secret = from_base32(begun["secret"].as_str().unwrap()).unwrap();
    assert_eq!(secret.len(), 20);
    let wrong = app.call("twofactor/confirm", &[("code", "000000")], Some(cookie)).await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", wrong.body);
    let on = app
        .call(
            "twofactor/confirm",
            &[("code", &code(&secret, step_now()))],
            Some(cookie),
        )
        .await;
    assert_eq!(on.status, StatusCode::OK, "{}", on.body);
    let codes: Vec<String> = serde_json::from_value(on.json()).unwrap();
    assert_eq!(codes.len(), 10);
    (secret, codes)
}

/// The password step: the challenge it answers with (two-factor on).
async fn password_step(app: &TestApp, email: &str, password: &str) -> String {
    let r = app
        .call("login", &[("email", email), ("password", password)], None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        !r.headers.contains_key("set-cookie"),
        "a session before the second factor"
    );
    r.json().as_str().expect("a challenge").to_owned()
}

#[tokio::test]
async fn sign_in_asks_for_the_code_after_the_password_and_each_code_works_once() {
    let app = TestApp::new().await;
    let ada = app.onboard().await;
    let (secret, recovery) = enrol(&app, &ada).await;
    let state = app.call("twofactor/status", &[], Some(&ada)).await.json();
    assert_eq!(state["enabled"], true);
    assert_eq!(state["recovery_left"], 10);
    // The secret is sealed at rest.
    {
        use diesel_async::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Text)]
            row: String,
        }
        let mut conn = app.t.engine.db.get().await.unwrap();
        let row: Row = diesel::sql_query("SELECT row_to_json(u)::text AS row FROM users u")
            .get_result(&mut conn)
            .await
            .unwrap();
        let b32 = engine::twofactor::base32(&secret);
        assert!(
            !row.row.contains(&b32) && !row.row.contains(&recovery[0]),
            "{}",
            row.row
        );
    }

    // Password alone is not enough now.
    let challenge = password_step(&app, "ada@example.com", "correct horse battery").await;
    let wrong = app
        .call("login/code", &[("challenge", &challenge), ("code", "000000")], None)
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", wrong.body);
    // A recovery code works, once.
    let ok = app
        .call("login/code", &[("challenge", &challenge), ("code", &recovery[0])], None)
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let cookie = ok.session_cookie();
    assert_eq!(
        app.call("projects/list", &[], Some(&cookie)).await.status,
        StatusCode::OK
    );
    let challenge = password_step(&app, "ada@example.com", "correct horse battery").await;
    let again = app
        .call("login/code", &[("challenge", &challenge), ("code", &recovery[0])], None)
        .await;
    assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", again.body);
    // A code of the app works, once (the next step: the enrolment used this one).
    let next = code(&secret, step_now() + 1);
    let ok = app
        .call("login/code", &[("challenge", &challenge), ("code", &next)], None)
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let challenge = password_step(&app, "ada@example.com", "correct horse battery").await;
    let replay = app
        .call("login/code", &[("challenge", &challenge), ("code", &next)], None)
        .await;
    assert_eq!(replay.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", replay.body);

    // Wrong codes are counted per account: the limit ends the challenge.
    let mut throttled = None;
    for _ in 0..6 {
        let r = app
            .call("login/code", &[("challenge", &challenge), ("code", "111111")], None)
            .await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            throttled = Some(r);
            break;
        }
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    }
    let throttled = throttled.expect("the sixth wrong code is throttled");
    assert!(throttled.headers.contains_key("retry-after"));
    // An unknown challenge is a new sign-in, not a code check.
    let r = app
        .call(
            "login/code",
            &[("challenge", &"ab".repeat(32)), ("code", &code(&secret, step_now()))],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);

    // The instance's audit log has the sign-ins, failed and not.
    let log = app
        .call("audit/list", &[("instance", "on"), ("what", "sign-in")], Some(&cookie))
        .await
        .json();
    let results: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["result"].as_str().unwrap())
        .collect();
    assert!(results.contains(&"ok") && results.contains(&"denied"), "{log}");
}

#[tokio::test]
async fn an_organizations_requirement_holds_members_to_enrolment_and_an_admin_can_reset() {
    let app = TestApp::new().await;
    let ada = app.onboard().await;
    let (_, bob) = app.join(&ada, "member", "Bob", "bob@example.com").await;
    // A key Bob made before the rule.
    let bob_key = app.key(&bob, "member").await;
    assert_eq!(
        app.api("GET", "/projects", Some(&bob_key), None).await.status,
        StatusCode::OK
    );
    // Only admins set the rule.
    let r = app.call("twofactor/require", &[("required", "on")], Some(&bob)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Ada turns it on (the rule holds her too, until she sets it up).
    let r = app.call("twofactor/require", &[("required", "on")], Some(&ada)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // Bob reaches enrolment only.
    let r = app.call("projects/list", &[], Some(&bob)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    // His key stands for him: held back until he sets it up.
    let r = app.api("GET", "/projects", Some(&bob_key), None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert!(r.body.contains("two-factor"), "{}", r.body);
    assert!(r.body.contains("requires two-factor sign-in"), "{}", r.body);
    let status = app.call("system/status", &[], Some(&bob)).await;
    assert_eq!(status.json()["needs_second_factor"], true);
    enrol(&app, &bob).await;
    assert_eq!(app.call("projects/list", &[], Some(&bob)).await.status, StatusCode::OK);
    assert_eq!(
        app.api("GET", "/projects", Some(&bob_key), None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.call("system/status", &[], Some(&bob)).await.json()["needs_second_factor"],
        false
    );

    // A lost phone: the instance administrator resets Bob's, and his sessions end.
    let members = app.call("orgs/members", &[], Some(&ada)).await;
    assert_eq!(members.status, StatusCode::FORBIDDEN, "Ada is held to the rule too");
    let (_, ada_codes) = enrol(&app, &ada).await;
    assert_eq!(ada_codes.len(), 10);
    let members = app.call("orgs/members", &[], Some(&ada)).await.json();
    let bob_id = members.as_array().unwrap().iter().find(|m| m["name"] == "Bob").unwrap()["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .call("instance/reset_2fa", &[("user_id", &bob_id)], Some(&bob))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app
        .call("instance/reset_2fa", &[("user_id", &bob_id)], Some(&ada))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        app.call("projects/list", &[], Some(&bob)).await.status,
        StatusCode::UNAUTHORIZED
    );
    // His password alone signs him in again, into enrolment only.
    let r = app
        .call(
            "login",
            &[("email", "bob@example.com"), ("password", "long enough pw")],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.json().is_null(), "no second step after a reset: {}", r.body);
    let bob = r.session_cookie();
    assert_eq!(
        app.call("projects/list", &[], Some(&bob)).await.status,
        StatusCode::FORBIDDEN
    );
    // The reset is in the instance's audit log, naming Ada.
    let log = app
        .call("audit/list", &[("instance", "on"), ("what", "reset_2fa")], Some(&ada))
        .await
        .json();
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .any(|r| r["who"].as_str().unwrap().starts_with("Ada") && r["result"].as_str().unwrap().starts_with("ok")),
        "{log}"
    );
}
