//! Limits that keep one client from hurting the server or others, against the
//! real router (in-process) and the real `berth` binary: bodies over the limit
//! are 413 also when chunked, a NUL in a form field is a 422 naming it, an
//! address whose webhook calls keep failing is throttled, deploy and invite
//! tokens never reach the logs, a log download streams (the server's memory
//! does not grow with the file), one user's open log sockets are capped, and
//! a process full of work refuses the next request at once.

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::{TestApp, ORIGIN};
use engine::apps::spec::{Build, Runtime, Source};
use engine::apps::{self, NewApp};
use engine::names::Description;
use engine::testing::{free_port, owner_with_environment, wait_for_200, DeployEnv, KillOnDrop};
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_berth");

fn image_app(env: engine::ids::EnvironmentId) -> NewApp {
    NewApp {
        name: apps::spec::AppName::parse(&format!("lim-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])).unwrap(),
        description: Description::default(),
        environment: env,
        source: engine::testing::image_source("registry.test/web:1"),
        source_secret: None,
        build: Build::default(),
        runtime: Runtime::default(),
    }
}

#[tokio::test]
async fn oversized_chunked_bodies_are_413_and_nul_fields_are_422() {
    let app = TestApp::new().await;
    let cookie = app.onboard().await;

    // 2 MB in chunks, with no Content-Length for the limit layer to see.
    let chunks = futures::stream::iter((0..32).map(|_| Ok::<_, std::io::Error>(vec![b'a'; 64 * 1024])));
    let req = Request::post("/api/projects/create")
        .header(header::HOST, &app.host)
        .header(header::ORIGIN, ORIGIN)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, &cookie)
        .body(Body::from_stream(chunks))
        .unwrap();
    let r = app.send(req).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);

    // A NUL in build arguments: 422 naming the field, and nothing changes.
    let token = engine::sessions::SessionToken::from_cookie(cookie.split_once('=').unwrap().1).unwrap();
    let caller = engine::accounts::authenticate(&app.t.engine, token).await.unwrap();
    let p = engine::projects::create(
        &app.t.engine,
        &caller,
        engine::names::ProjectName::parse("Shop").unwrap(),
        Description::default(),
    )
    .await
    .unwrap();
    let env = engine::ids::EnvironmentId(
        engine::projects::get(&app.t.engine, &caller, p)
            .await
            .unwrap()
            .environments[0]
            .id,
    );
    let id = apps::create(&app.t.engine, &caller, image_app(env)).await.unwrap();
    let before = apps::get(&app.t.engine, &caller, id).await.unwrap().app.build;
    let form: Vec<(&str, String)> = vec![
        ("id", id.0.to_string()),
        ("source", "image".into()),
        ("image", "registry.test/web:2".into()),
        ("registry_user", String::new()),
        ("secret", String::new()),
        ("repository", String::new()),
        ("branch", "main".into()),
        ("subdir", String::new()),
        ("build", "dockerfile".into()),
        ("dockerfile", "Dockerfile".into()),
        ("context", ".".into()),
        ("target", String::new()),
        ("build_args", "A=1\0B".into()),
        ("static_dir", String::new()),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = app.call("apps/update_source", &form, Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.json()["Field"]["field"], "build_args", "{}", r.body);
    let after = apps::get(&app.t.engine, &caller, id).await.unwrap();
    assert_eq!(after.app.build, before);
    assert!(matches!(after.app.source, Source::Image { ref image, .. } if image == "registry.test/web:1"));
}

#[tokio::test]
async fn an_address_whose_webhook_calls_keep_failing_is_throttled() {
    let app = TestApp::new().await;
    let post = |sig: &str| {
        Request::post("/api/webhooks/github")
            .header(header::HOST, &app.host)
            .header(header::CONTENT_TYPE, "application/json")
            .header("x-github-event", "push")
            .header("x-github-delivery", uuid::Uuid::new_v4().to_string())
            .header("x-hub-signature-256", sig.to_owned())
            .body(Body::from(
                r#"{"repository":{"clone_url":"https://github.com/o/r.git"},"ref":"refs/heads/main"}"#,
            ))
            .unwrap()
    };
    for i in 0..engine::webhooks::FAILURE_LIMIT.max {
        let r = app.send(post("sha256=00")).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "call {i}: {}", r.body);
    }
    let r = app.send(post("sha256=00")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert!(r.headers.get(header::RETRY_AFTER).is_some());
}

/// A `berth serve` (no worker) on a free port, its log in `log`.
fn spawn(env: &DeployEnv, port: u16, log: &std::path::Path) -> KillOnDrop {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .env("BERTH_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "debug,tower_http=trace,hyper=info,h2=info,bollard=info")
        // Logs go to standard output.
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(Stdio::null());
    for (k, v) in env.berth_env() {
        cmd.env(k, v);
    }
    cmd.env("BERTH_WORKER", "off");
    KillOnDrop(cmd.spawn().expect("spawn berth"))
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// One raw HTTP/1.1 request; the status and the body's length, read as it streams.
async fn fetch(port: u16, method: &str, path: &str, cookie: Option<&str>) -> (u16, u64) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let cookie = cookie.map(|c| format!("Cookie: {c}\r\n")).unwrap_or_default();
    s.write_all(
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{cookie}Content-Length: 0\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut head = Vec::new();
    let mut body = 0u64;
    loop {
        let n = s.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        if body == 0 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            head.extend_from_slice(&buf[..n]);
            if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                body = (head.len() - i - 4) as u64;
            }
        } else {
            body += n as u64;
        }
    }
    let status = std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_stay_out_of_logs_downloads_stream_and_sockets_are_capped() {
    let env = DeployEnv::new().await;
    let e = env.engine().clone();
    let (caller, env_id) = owner_with_environment(&e).await;
    let app = apps::create(&e, &caller, image_app(env_id)).await.unwrap();
    let hooks = apps::hooks(&e, &caller, app).await.unwrap();
    // A queued deployment (no worker runs here) with a 40 MB log.
    let dep = engine::deploy::deploy(&e, &caller, app).await.unwrap();
    let path = engine::logs::log_path(&e, app, dep);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let line = format!("  {}\n", "l".repeat(1000));
        for _ in 0..40_000 {
            f.write_all(line.as_bytes()).unwrap();
        }
    }
    let size = std::fs::metadata(&path).unwrap().len();

    let port = free_port();
    let log = env.dir.join("berth.log");
    let berth = spawn(&env, port, &log);
    wait_for_200(port, "/health").await;
    let cookie = format!("berth_session={}", caller.session().unwrap().as_str());

    // Tokens in paths: used, then looked for in the log.
    let (status, _) = fetch(
        port,
        "POST",
        &format!("/api/webhooks/deploy/{}", hooks.deploy_token),
        None,
    )
    .await;
    assert!(status == 200 || status == 202, "deploy webhook: {status}");
    let (_, invite) = engine::orgs::create_invite(&e, &caller, engine::names::Role::Member)
        .await
        .unwrap();
    fetch(port, "GET", &format!("/invite/{invite}"), None).await;

    // The download streams: the server's peak memory does not grow with the file.
    fetch(port, "GET", &format!("/api/deployments/{}/log", dep.0), Some(&cookie)).await;
    let before = vm_hwm_kib(berth.id());
    let (status, got) = fetch(port, "GET", &format!("/api/deployments/{}/log", dep.0), Some(&cookie)).await;
    assert_eq!((status, got), (200, size));
    let grew = vm_hwm_kib(berth.id()).saturating_sub(before);
    assert!(
        grew < 16 * 1024,
        "peak memory grew {grew} KiB for a {size} byte download"
    );

    // Log sockets: SOCKETS_PER_USER at once, then 429 until one closes.
    let open = |n: usize| {
        let cookie = cookie.clone();
        async move {
            let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
                "ws://127.0.0.1:{port}/api/ws/deployments/{}/log",
                dep.0
            ))
            .unwrap();
            req.headers_mut().insert("cookie", cookie.parse().unwrap());
            let r = tokio_tungstenite::connect_async(req).await;
            (n, r)
        }
    };
    let mut sockets = Vec::new();
    for n in 0..server::sockets::SOCKETS_PER_USER {
        let (_, r) = open(n).await;
        sockets.push(r.unwrap_or_else(|e| panic!("socket {n}: {e}")).0);
    }
    match open(99).await.1 {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => assert_eq!(res.status(), 429),
        other => panic!("expected 429, got {:?}", other.map(|(_, r)| r.status())),
    }
    let mut first = sockets.remove(0);
    first.close(None).await.unwrap();
    drop(first);
    let mut reopened = false;
    for _ in 0..50 {
        if open(100).await.1.is_ok() {
            reopened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reopened, "a closed socket frees its place");
    drop(sockets);

    // A socket whose session ends (signed out elsewhere) is closed by the
    // server within its re-check period (10 s); one on a live session stays.
    let other = engine::sessions::create(&e.kv, e.policy, caller.user_id, caller.org_id)
        .await
        .unwrap();
    let socket = |cookie: String| async move {
        let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://127.0.0.1:{port}/api/ws/deployments/{}/log",
            dep.0
        ))
        .unwrap();
        req.headers_mut().insert("cookie", cookie.parse().unwrap());
        tokio_tungstenite::connect_async(req).await.expect("socket").0
    };
    let mut ending = socket(format!("berth_session={}", other.as_str())).await;
    let mut staying = socket(cookie.clone()).await;
    engine::sessions::revoke(&e.kv, &other).await.unwrap();
    assert!(
        closes_within(&mut ending, 15).await,
        "a signed-out session's log socket stayed open"
    );
    assert!(
        !closes_within(&mut staying, 1).await,
        "the live session's socket was closed too"
    );
    drop(staying);
    drop(berth);

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("/api/webhooks/deploy/<redacted>"),
        "the request was logged: {}",
        &text[..text.len().min(2000)]
    );
    assert!(!text.contains(&hooks.deploy_token), "the deploy token is in the log");
    assert!(!text.contains(&invite), "the invite token is in the log");
}

/// Whether the server closes a WebSocket within `secs` (its close frame, or
/// the end of the connection), whatever it sends before.
async fn closes_within<S>(socket: &mut S, secs: u64) -> bool
where
    S: futures::Stream<Item = Result<tokio_tungstenite::tungstenite::Message, tokio_tungstenite::tungstenite::Error>>
        + Unpin,
{
    common::ends_within(socket, secs, |m| !matches!(m, Ok(m) if !m.is_close())).await
}

/// A process full of work (`BERTH_MAX_REQUESTS` turns busy, `BERTH_MAX_QUEUED`
/// places taken) answers the next request at once with a 503 and
/// `Retry-After`, while `/health` still answers; once the turn frees, pages
/// are served again. The turn is held by a form post whose body has not
/// finished arriving: the body is read inside the turn.
#[tokio::test]
async fn a_full_process_refuses_at_once_with_retry_after_and_health_still_answers() {
    use tower::ServiceExt;
    let mut config = common::config();
    config.max_requests = 1;
    config.max_queued = 0;
    let app = TestApp::with_config(config).await;

    let (mut tx, rx) = futures::channel::mpsc::channel::<Result<axum::body::Bytes, std::io::Error>>(1);
    let slow = Request::post("/api/onboard")
        .header(header::HOST, &app.host)
        .header(header::ORIGIN, ORIGIN)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from_stream(rx))
        .unwrap();
    tx.try_send(Ok("name=Ada".into())).unwrap();
    let held = tokio::spawn(app.router.clone().oneshot(slow));
    // On this test's one-thread runtime the spawned post runs at this yield
    // until it waits for the rest of its body, holding the turn by then.
    tokio::task::yield_now().await;
    assert!(!held.is_finished(), "the post was answered before its body ended");

    let refused = app.get("/login", None).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE, "{}", refused.body);
    assert_eq!(refused.headers[header::RETRY_AFTER], "1");
    assert!(refused.body.contains("BERTH_MAX_REQUESTS"), "{}", refused.body);
    assert_eq!(app.get("/health", None).await.status, StatusCode::OK);
    assert!(!held.is_finished());

    // The body ends: the post is answered (an incomplete sign-up form) and
    // the turn is free again.
    drop(tx);
    let answered = tokio::time::timeout(Duration::from_secs(30), held)
        .await
        .expect("the held request answered")
        .unwrap()
        .unwrap();
    assert_ne!(answered.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_ne!(app.get("/login", None).await.status, StatusCode::SERVICE_UNAVAILABLE);
}
