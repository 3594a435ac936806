//! Berth's own dashboard over HTTPS, end to end: a real `berth serve` listens
//! on the Docker network's gateway (where the test Traefik can reach it), with
//! `BERTH_DASHBOARD_HOST`; its worker starts Traefik with the instance's ACME
//! settings (Pebble, `engine::testing::acme`), and a client that trusts only
//! Pebble's root gets Berth's answers over HTTPS for that name, while HTTP
//! redirects there. `/health` reports Traefik's own `/ping`.

use engine::proxy::acme::AcmeForm;
use engine::testing::acme::https_get;
use engine::testing::{free_port, DeployEnv};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_berth");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_is_served_over_https_with_a_certificate_from_the_ca() {
    let mut env = DeployEnv::new().await;
    let lab = engine::testing::acme::lab_for(&mut env).await;
    let gateway = lab.gateway();
    let (http_port, https_port) = (env.http_port(), env.engine().deploy.proxy.https_port);
    let e = env.engine();
    let (caller, _) = engine::testing::owner_with_environment(e).await;
    engine::proxy::acme::update(
        e,
        &caller,
        &AcmeForm {
            directory: lab.directory.clone(),
            email: "ops@example.com".into(),
            ..AcmeForm::default()
        },
    )
    .await
    .unwrap();

    let port = free_port();
    let upstream = format!("http://{gateway}:{port}");
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .env("BERTH_LISTEN", format!("{gateway}:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in env.berth_env() {
        cmd.env(k, v);
    }
    cmd.env("BERTH_DASHBOARD_HOST", "berth.test")
        .env("BERTH_DASHBOARD_UPSTREAM", &upstream)
        .env("BERTH_ACME_CA_CERTIFICATES", &lab.listener_ca);
    let _berth = engine::testing::KillOnDrop(cmd.spawn().expect("spawn berth"));

    let root = lab.root_pem().await;
    let start = Instant::now();
    let body = loop {
        match https_get(("127.0.0.1", https_port), "berth.test", "/health", root.as_bytes()).await {
            Ok((200, body)) => break body,
            other => assert!(
                start.elapsed() < Duration::from_secs(90),
                "the dashboard is not served over HTTPS: {other:?}\nPebble:\n{}",
                lab.pebble_log()
            ),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let health: serde_json::Value = serde_json::from_str(&body).expect("JSON health");
    assert!(health["status"] == "ok" || health["status"] == "degraded", "{health}");
    // The route names its upstream in a header, read over TLS as `berth
    // upgrade` reads it to see the route moved.
    let token = engine::proxy::dashboard_route_token(([127, 0, 0, 1], https_port).into(), "berth.test", true)
        .await
        .unwrap();
    assert_eq!(token, Some(engine::proxy::dashboard_token(&upstream)));
    // Traefik's own /ping, as the health view reads it.
    let report = engine::health::check(e).await;
    assert_eq!(
        report.proxy,
        Some(engine::health::Component::Up { version: None }),
        "{report:?}"
    );
    // HTTP goes to HTTPS.
    let plain = engine::http1::request(
        "127.0.0.1",
        http_port,
        "POST",
        "berth.test",
        "/",
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(plain.status, 308);
    assert_eq!(plain.header("location"), Some("https://berth.test/"));
}
