//! The server through its router: onboarding, sign-in and out, the same-origin
//! rule, throttling, body limits, health and the 404 page.

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::{config, TestApp, HOST, ONBOARD, ORIGIN};

#[tokio::test]
async fn onboarding_signs_the_owner_in_and_then_closes() {
    let app = TestApp::new().await;
    let bad = app
        .onboard_with(&[
            ("name", "Ada"),
            ("email", "ada@example.com"),
            ("password", "short"),
            ("organization", "Acme"),
        ])
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.json()["Field"]["field"], "password");

    let ok = app.onboard_with(ONBOARD).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let cookie = ok.set_cookie();
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain http must not set Secure: {cookie}");

    let again = app
        .onboard_with(&[
            ("name", "Eve"),
            ("email", "eve@example.com"),
            ("password", "another long pw"),
            ("organization", "Evil"),
        ])
        .await;
    assert_eq!(again.status, StatusCode::FORBIDDEN, "{}", again.body);
    let eve = app
        .call(
            "login",
            &[("email", "eve@example.com"), ("password", "another long pw")],
            None,
        )
        .await;
    assert_eq!(eve.status, StatusCode::UNAUTHORIZED);

    // The onboarding page itself now sends visitors to sign in.
    let page = app.get("/onboarding", None).await;
    assert_eq!(page.status, StatusCode::FOUND);
    assert_eq!(page.headers[header::LOCATION], "/login");
}

#[tokio::test]
async fn sign_in_session_and_sign_out() {
    let app = TestApp::new().await;
    app.onboard().await;
    let wrong = app
        .call(
            "login",
            &[("email", "ada@example.com"), ("password", "not the password")],
            None,
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.headers.get(header::SET_COOKIE).is_none());

    let ok = app
        .call(
            "login",
            &[("email", "ada@example.com"), ("password", "correct horse battery")],
            None,
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    let cookie = ok.session_cookie();
    let state = app.call("session", &[], Some(&cookie)).await;
    assert_eq!(state.json()["SignedIn"]["email"], "ada@example.com");
    assert_eq!(app.get("/projects", Some(&cookie)).await.status, StatusCode::OK);

    let out = app.call("logout", &[], Some(&cookie)).await;
    assert_eq!(out.status, StatusCode::OK);
    assert!(out.set_cookie().contains("Max-Age=0"));
    let after = app.call("projects/list", &[], Some(&cookie)).await;
    assert_eq!(
        after.status,
        StatusCode::UNAUTHORIZED,
        "the old cookie is dead server-side"
    );
    let page = app.get("/projects", Some(&cookie)).await;
    assert_eq!(
        (page.status, page.headers[header::LOCATION].to_str().unwrap()),
        (StatusCode::FOUND, "/login")
    );
}

#[tokio::test]
async fn password_change_signs_out_other_sessions() {
    let app = TestApp::new().await;
    let first = app.onboard().await;
    let second = app
        .call(
            "login",
            &[("email", "ada@example.com"), ("password", "correct horse battery")],
            None,
        )
        .await
        .session_cookie();
    let short = app
        .call(
            "account/password",
            &[("current_password", "correct horse battery"), ("new_password", "short")],
            Some(&second),
        )
        .await;
    assert_eq!(
        (short.status, short.json()["Field"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("new_password"))
    );
    let ok = app
        .call(
            "account/password",
            &[
                ("current_password", "correct horse battery"),
                ("new_password", "an even longer one"),
            ],
            Some(&second),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(
        app.call("projects/list", &[], Some(&first)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.call("projects/list", &[], Some(&second)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn state_changing_requests_must_be_same_origin() {
    let app = TestApp::new().await;
    let cookie = app.onboard().await;
    let post = |origin: Option<(&'static str, &'static str)>| {
        let mut req = Request::post("/api/projects/create")
            .header(header::HOST, HOST)
            .header(header::COOKIE, cookie.clone())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some((name, value)) = origin {
            req = req.header(name, value);
        }
        req.body(Body::from("name=Forged&description=")).unwrap()
    };
    assert_eq!(app.send(post(None)).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.send(post(Some(("origin", "http://evil.example")))).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.send(post(Some(("origin", "null")))).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.send(post(Some(("referer", "http://evil.example/berth.test"))))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let list = app.call("projects/list", &[], Some(&cookie)).await;
    assert_eq!(
        list.json().as_array().unwrap().len(),
        0,
        "no forged project was created"
    );

    assert_eq!(
        app.send(post(Some(("referer", "http://berth.test/projects"))))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.send(post(Some(("origin", ORIGIN)))).await.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "duplicate name"
    );
}

#[tokio::test]
async fn logins_are_rate_limited_per_address() {
    let app = TestApp::new().await;
    app.onboard().await;
    let mut last = StatusCode::OK;
    for i in 0..=engine::accounts::IP_LIMIT.max {
        let email = format!("user{i}@example.com");
        last = app
            .call("login", &[("email", &email), ("password", "not the password")], None)
            .await
            .status;
        if last == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(i, engine::accounts::IP_LIMIT.max, "throttled too early");
        }
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
    let r = app
        .call(
            "login",
            &[("email", "ada@example.com"), ("password", "correct horse battery")],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= engine::accounts::IP_LIMIT.window_secs);
}

#[tokio::test]
async fn oversized_bodies_get_413_and_change_nothing() {
    let app = TestApp::new().await;
    let cookie = app.onboard().await;
    let body = format!("name=Big&description={}", "x".repeat(2 * 1024 * 1024));
    let req = Request::post("/api/projects/create")
        .header(header::HOST, HOST)
        .header(header::ORIGIN, ORIGIN)
        .header(header::COOKIE, cookie.clone())
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::CONTENT_LENGTH, body.len())
        .body(Body::from(body))
        .unwrap();
    assert_eq!(app.send(req).await.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        app.call("projects/list", &[], Some(&cookie))
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

#[tokio::test]
async fn health_tells_anyone_the_status_and_administrators_the_details() {
    let app = TestApp::new().await;
    let r = app.get("/health", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.json(),
        serde_json::json!({"status": "ok"}),
        "no versions, no backend errors"
    );
    assert!(r.headers.contains_key("x-request-id"));
    // Any host name: load balancers ask by address.
    let by_ip = app
        .send(
            Request::get("/health")
                .header(header::HOST, "10.1.2.3:3000")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(by_ip.status, StatusCode::OK);

    assert_eq!(
        app.get("/api/admin/health", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let ada = app.onboard().await;
    let d = app.get("/api/admin/health", Some(&ada)).await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.body);
    let j = d.json();
    assert_eq!(j["db"]["status"], "up");
    assert_eq!(j["redis"]["status"], "up");
    assert_eq!(j["docker"]["status"], "up", "the test dockerd should answer: {j}");
    assert!(j["docker"]["version"].is_string());
}

#[tokio::test]
async fn health_is_503_when_redis_is_down() {
    let t = engine::testing::TestEngine::new().await;
    let mut engine = t.engine.clone();
    engine.kv = engine::kv::Kv::new(&engine::config::RedisConfig {
        url: "redis://127.0.0.1:1".to_owned().into(),
        prefix: "x:".into(),
        pool_size: 1,
    })
    .unwrap();
    let router = server::router(server::AppState::new(engine, config()));
    let res = tower::ServiceExt::oneshot(router, Request::get("/health").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
    let j: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(j, serde_json::json!({"status": "unavailable"}));
}

#[tokio::test]
async fn unknown_routes_render_the_404_page() {
    let app = TestApp::new().await;
    let r = app.get("/no/such/page", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.body.contains("Page not found"), "{}", r.body);
}

#[tokio::test]
async fn cookies_are_secure_behind_https() {
    let mut cfg = config();
    cfg.public_url = Some("https://berth.example.com".into());
    let app = TestApp::with_config(cfg).await;
    let r = app.onboard_with(ONBOARD).await;
    assert!(r.set_cookie().contains("; Secure"), "{}", r.set_cookie());
}

#[tokio::test]
async fn invites_create_accounts_through_the_api() {
    let app = TestApp::new().await;
    let ada = app.onboard().await;
    let invite = app.call("orgs/invites/create", &[("role", "member")], Some(&ada)).await;
    assert_eq!(invite.status, StatusCode::OK, "{}", invite.body);
    let link = invite.json()["link"].as_str().unwrap().to_owned();
    let token = link.rsplit('/').next().unwrap().to_owned();
    assert_eq!(app.get(&link, None).await.status, StatusCode::OK);

    let bad = app
        .call(
            "invites/accept",
            &[
                ("token", &token),
                ("name", "Bob"),
                ("email", "nope"),
                ("password", "long enough pw"),
            ],
            None,
        )
        .await;
    assert_eq!(
        (bad.status, bad.json()["Field"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("email"))
    );
    let ok = app
        .call(
            "invites/accept",
            &[
                ("token", &token),
                ("name", "Bob"),
                ("email", "bob@example.com"),
                ("password", "long enough pw"),
            ],
            None,
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let bob = ok.session_cookie();
    let me = app.call("session", &[], Some(&bob)).await.json();
    assert_eq!(
        (me["SignedIn"]["org_name"].as_str(), me["SignedIn"]["role"].as_str()),
        (Some("Acme"), Some("member"))
    );
    let reuse = app
        .call(
            "invites/accept",
            &[
                ("token", &token),
                ("name", "Eve"),
                ("email", "eve@example.com"),
                ("password", "long enough pw"),
            ],
            None,
        )
        .await;
    assert_eq!(reuse.status, StatusCode::NOT_FOUND);
    // Members cannot invite.
    assert_eq!(
        app.call("orgs/invites/create", &[("role", "member")], Some(&bob))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn pages_say_plainly_when_docker_is_unreachable() {
    let t = engine::testing::TestEngine::new().await;
    let mut engine = t.engine.clone();
    engine.docker = std::sync::Arc::new(engine::docker::BollardDocker::new(&engine::config::DockerConfig {
        host: Some("unix:///nonexistent/docker.sock".into()),
        timeout_secs: 2,
    }));
    let app = TestApp::on(t, engine, config());
    let health = app.get("/health", None).await;
    assert_eq!(health.status, StatusCode::OK, "Docker is reported, not required");
    assert_eq!(health.json()["status"], "degraded");
    let cookie = app.onboard().await;
    let page = app.get("/projects", Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Docker is unreachable"), "{}", page.body);
    assert!(page.body.contains("/nonexistent/docker.sock"));
    assert!(page.body.contains("DOCKER_HOST"), "the banner says how to fix it");
}

/// The bundle goes out precompressed: Brotli to browsers that accept it, gzip
/// to those that accept only gzip, raw otherwise; always revalidated
/// (`no-cache`), since its file names stay the same across releases. A lazy
/// route's chunk is served the same way.
#[tokio::test]
async fn the_bundle_is_served_compressed_and_revalidated() {
    let app = TestApp::new().await;
    let get = |path: &str, enc: Option<&str>| {
        let mut r = Request::get(path).header(header::HOST, &app.host);
        if let Some(e) = enc {
            r = r.header(header::ACCEPT_ENCODING, e);
        }
        tower::ServiceExt::oneshot(app.router.clone(), r.body(Body::empty()).unwrap())
    };
    let body =
        |res: axum::response::Response| async move { axum::body::to_bytes(res.into_body(), 64 << 20).await.unwrap() };
    let res = get("/pkg/berth_bg.wasm", Some("gzip, deflate, br")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_ENCODING], "br");
    assert_eq!(res.headers()[header::CACHE_CONTROL], "no-cache");
    let br = body(res).await;
    let res = get("/pkg/berth_bg.wasm", Some("gzip")).await.unwrap();
    assert_eq!(res.headers()[header::CONTENT_ENCODING], "gzip");
    let gz = body(res).await;
    let res = get("/pkg/berth_bg.wasm", None).await.unwrap();
    assert!(res.headers().get(header::CONTENT_ENCODING).is_none());
    let raw = body(res).await;
    assert!(raw.starts_with(b"\0asm"), "a WebAssembly module");
    assert!(gz.len() * 2 < raw.len(), "gzip {} vs raw {}", gz.len(), raw.len());
    assert!(br.len() < gz.len(), "Brotli {} vs gzip {}", br.len(), gz.len());

    // The split manifest names each lazy route's chunks; one of them is served too.
    let manifest: serde_json::Value =
        serde_json::from_slice(&body(get("/pkg/__wasm_split_manifest.json", None).await.unwrap()).await).unwrap();
    let chunk = manifest
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, _)| k.starts_with("__app_route_view_"))
        .and_then(|(_, v)| v.as_array()?.last()?.as_str().map(str::to_owned))
        .expect("the application page is a lazy route");
    let res = get(&format!("/pkg/{chunk}.wasm"), Some("br")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{chunk}");
    assert_eq!(res.headers()[header::CONTENT_ENCODING], "br");

    // Under this build's id the same files are kept for good, and the pages
    // point there; another id is a 404 that is not cached.
    let site = std::env::var("BERTH_SITE_ROOT").unwrap_or_else(|_| "../target/site".into());
    let id = std::fs::read_to_string(format!("{site}/pkg/BUILD")).expect("scripts/build.sh writes pkg/BUILD");
    let id = id.trim();
    let res = get(&format!("/pkg/{id}/{chunk}.wasm"), Some("br")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()[header::CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(
        body(res).await.len(),
        std::fs::metadata(format!("{site}/pkg/{chunk}.wasm.br")).unwrap().len() as usize
    );
    let res = get("/pkg/0123456789abcdef/berth_bg.wasm", None).await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(res.headers()[header::CACHE_CONTROL], "no-cache");
    let cookie = app.onboard().await;
    let page = app.get("/projects", Some(&cookie)).await;
    assert!(
        page.body.contains(&format!("/pkg/{id}/berth_bg.wasm")),
        "the page loads this build's bundle"
    );
}

/// A fresh instance is claimed with the setup token it printed, not by the
/// first visitor: without it (or with another) onboarding is a 422 on
/// `setup_token` and makes nothing.
#[tokio::test]
async fn onboarding_needs_the_setup_token() {
    let app = TestApp::new().await;
    for token in ["", "not-the-token"] {
        let mut form = ONBOARD.to_vec();
        form.push(("setup_token", token));
        let r = app.call("onboard", &form, None).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{token:?}: {}", r.body);
        assert_eq!(r.json()["Field"]["field"], "setup_token");
    }
    let login = app
        .call(
            "login",
            &[("email", "ada@example.com"), ("password", "correct horse battery")],
            None,
        )
        .await;
    assert_eq!(login.status, StatusCode::UNAUTHORIZED, "no account was made");
    let ok = app.onboard_with(ONBOARD).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(
        engine::accounts::setup_token(&app.t.engine).await.unwrap(),
        None,
        "used up"
    );
}

/// Behind https the session cookie is `__Host-` prefixed, so an app on a
/// sibling subdomain cannot plant one Berth reads: a planted `berth_session`
/// (another user's, scoped to `/api`) does not change where a write lands.
#[tokio::test]
async fn a_sibling_subdomains_cookie_does_not_steer_writes() {
    let mut cfg = config();
    cfg.public_url = Some("https://berth.example.com".into());
    let app = TestApp::with_config(cfg).await;
    let r = app.onboard_with(ONBOARD).await;
    let set = r.set_cookie();
    assert!(
        set.starts_with("__Host-berth_session=") && set.contains("; Secure") && set.contains("Path=/"),
        "{set}"
    );
    assert!(!set.contains("Domain="), "{set}");
    let ada = r.session_cookie();
    // Mallory, with an organization of her own (the session an attacker plants).
    let mallory_caller = {
        let e = &app.t.engine;
        let admin = engine::accounts::authenticate(
            e,
            engine::sessions::SessionToken::from_cookie(ada.split_once('=').unwrap().1).unwrap(),
        )
        .await
        .unwrap();
        let (_, token) = engine::orgs::create_invite(e, &admin, engine::names::Role::Member)
            .await
            .unwrap();
        let account = engine::accounts::NewAccount::parse("Mallory", "m@example.com", "long enough pw").unwrap();
        let session = engine::orgs::accept_invite(e, &token, engine::orgs::Acceptor::New(account))
            .await
            .unwrap();
        let m = engine::accounts::authenticate(e, session).await.unwrap();
        engine::orgs::create(e, &admin, engine::names::OrgName::parse("Mallory Inc").unwrap())
            .await
            .unwrap();
        m
    };
    let planted = format!("berth_session={}", mallory_caller.session().unwrap().as_str());
    let both = format!("{planted}; {ada}");
    let r = app
        .call(
            "projects/create",
            &[("name", "Landed"), ("description", "")],
            Some(&both),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let mine = app.call("projects/list", &[], Some(&ada)).await;
    assert!(
        mine.body.contains("Landed"),
        "the write landed in the cookie owner's organization: {}",
        mine.body
    );
    // The planted cookie alone is no session at all here.
    let alone = app.call("projects/list", &[], Some(&planted)).await;
    assert_eq!(alone.status, StatusCode::UNAUTHORIZED);
}

/// DNS rebinding: a request whose Host is none of Berth's names is refused
/// (421) before anything runs; `/health` answers any Host (probes use IPs).
/// Every response carries the security headers; pages a nonce-based CSP.
#[tokio::test]
async fn foreign_hosts_are_refused_and_responses_carry_security_headers() {
    let app = TestApp::new().await;
    let evil = Request::get("/login")
        .header(header::HOST, "rebound.attacker.example")
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.send(evil).await.status, StatusCode::MISDIRECTED_REQUEST);
    let form = Request::post("/api/onboard")
        .header(header::HOST, "rebound.attacker.example:3000")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(
            "name=E&email=e%40x.io&password=long+enough+pw&organization=E&setup_token=x",
        ))
        .unwrap();
    assert_eq!(app.send(form).await.status, StatusCode::MISDIRECTED_REQUEST);
    let health = Request::get("/health")
        .header(header::HOST, "10.0.0.7:3000")
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.send(health).await.status, StatusCode::OK);

    app.onboard().await;
    let page = app.get("/login", None).await;
    assert_eq!(page.status, StatusCode::OK);
    let csp = page.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("'nonce-"),
        "{csp}"
    );
    let nonce = csp.split("'nonce-").nth(1).unwrap().split('\'').next().unwrap();
    assert!(
        page.body.contains(&format!("nonce=\"{nonce}\"")),
        "inline scripts carry the nonce"
    );
    for (name, want) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "strict-origin-when-cross-origin"),
    ] {
        assert_eq!(page.headers[&name], want, "{name}");
    }
    let api = app.call("session", &[], None).await;
    let csp = api.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
}
