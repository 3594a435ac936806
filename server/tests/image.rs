//! Berth's own image, as scripts/image.sh builds it from the Dockerfile with
//! no registry (a debootstrap Debian 13 base, this host's build): it holds the
//! binary and the site, a `pg_dump` new enough for the PostgreSQL Berth
//! defaults to, git and CA certificates; it runs as an unprivileged user; and,
//! given PostgreSQL and Redis, it serves the UI and reports healthy through its
//! own health check. `make test` builds the image and names it in
//! BERTH_TEST_IMAGE.

use engine::docker::{ContainerSpec, Network};
use engine::testing::{TestEngine, TEST_POSTGRES_IMAGE, TEST_REDIS_IMAGE};
use std::time::{Duration, Instant};

fn image() -> String {
    std::env::var("BERTH_TEST_IMAGE")
        .expect("BERTH_TEST_IMAGE names Berth's image (make test builds it with scripts/image.sh)")
}

/// Runs `argv` in a new container of the image (instead of its entrypoint);
/// its exit code and output.
async fn run_once(e: &engine::Engine, argv: &[&str]) -> (i64, String) {
    use futures::StreamExt;
    let name = format!("berth-image-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let mut spec = ContainerSpec::new(&name, image());
    spec.entrypoint = Some(argv.iter().map(|s| s.to_string()).collect());
    spec.cmd = Some(Vec::new());
    e.docker.create_container(&spec).await.unwrap();
    e.docker.start_container(&name).await.unwrap();
    let code = e.docker.wait_container(&name).await.unwrap();
    let mut out = Vec::new();
    let mut logs = e.docker.logs(&name, engine::docker::LogOptions::default());
    while let Some(Ok(chunk)) = logs.next().await {
        out.extend_from_slice(&chunk.bytes);
    }
    e.docker.remove_container(&name, true).await.unwrap();
    (code, String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_holds_what_berth_needs_and_serves() {
    let t = TestEngine::new().await;
    let e = &t.engine;

    let (code, out) = run_once(e, &["/usr/local/bin/berth", "--version"]).await;
    assert_eq!(
        (code, out.trim()),
        (0, format!("berth {}", env!("CARGO_PKG_VERSION")).as_str())
    );
    // pg_dump dumps servers up to its own major version: at least the 16 Berth defaults to.
    let (code, out) = run_once(e, &["pg_dump", "--version"]).await;
    assert_eq!(code, 0, "{out}");
    let major: u32 = out
        .split_whitespace()
        .nth(2)
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("pg_dump --version: {out}"));
    assert!(major >= 17, "{out}");
    let (code, out) = run_once(e, &["id", "-u"]).await;
    assert_eq!((code, out.trim()), (0, "10001"), "not root");
    let (code, out) = run_once(e, &["git", "--version"]).await;
    assert_eq!(code, 0, "{out}");
    let (code, _) = run_once(e, &["test", "-s", "/etc/ssl/certs/ca-certificates.crt"]).await;
    assert_eq!(code, 0, "CA certificates");
    let (code, out) = run_once(e, &["ls", "/usr/share/berth/site/pkg"]).await;
    assert!(code == 0 && out.contains("BUILD"), "the built site: {out}");

    // Serving: PostgreSQL and Redis beside it on a network of the test's own.
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let network = format!("bimg{tag}");
    let labels = std::collections::HashMap::from([(engine::docker::LABEL_INSTANCE.to_owned(), network.clone())]);
    e.docker.ensure_network(&network, &labels).await.unwrap();
    let on_net = |name: &str, image: &str, env: Vec<String>| {
        let mut s = ContainerSpec::new(name, image);
        s.env = env;
        s.labels = labels.clone();
        s.network = Network::Bridge {
            name: network.clone(),
            aliases: vec![name.split('-').next_back().unwrap().to_owned()],
        };
        s
    };
    let pg = format!("{network}-pg");
    let redis = format!("{network}-redis");
    let berth = format!("{network}-berth");
    let specs = [
        on_net(&pg, TEST_POSTGRES_IMAGE, vec!["POSTGRES_PASSWORD=image-test".into()]),
        {
            // Redis refuses clients from other hosts without a password (protected mode).
            let mut r = on_net(&redis, TEST_REDIS_IMAGE, Vec::new());
            r.cmd = Some(vec!["redis-server".into(), "--requirepass".into(), "image-test".into()]);
            r
        },
        on_net(
            &berth,
            &image(),
            vec![
                "DATABASE_URL=postgres://postgres:image-test@pg:5432/postgres".into(),
                "REDIS_URL=redis://:image-test@redis:6379".into(),
                format!("BERTH_SECRET_KEY={}", engine::secrets::generate_key_string()),
                "BERTH_WORKER=off".into(),
                "BERTH_PUBLIC_URL=http://berth.test".into(),
            ],
        ),
    ];
    for s in &specs {
        e.docker.create_container(s).await.unwrap();
        e.docker.start_container(&s.name).await.unwrap();
    }
    let start = Instant::now();
    let (ip, health) = loop {
        let info = e
            .docker
            .inspect_container(&berth)
            .await
            .unwrap()
            .expect("the Berth container");
        let ip = info.addresses.get(&network).cloned();
        let health = match &ip {
            Some(ip) => engine::http1::request(ip, 3000, "GET", "berth.test", "/health", Duration::from_secs(2))
                .await
                .ok(),
            None => None,
        };
        if let (Some(ip), Some(h)) = (ip, health) {
            if h.status == 200 {
                break (ip, h.body);
            }
        }
        assert!(
            info.state.running || start.elapsed() < Duration::from_secs(5),
            "Berth's container stopped: {:?}",
            info.state
        );
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "Berth in its image never answered /health"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(health.contains("\"status\""), "{health}");
    // The UI, with the bundle from the image's site.
    let page = engine::http1::request(&ip, 3000, "GET", "berth.test", "/login", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("/pkg/"), "the page loads its bundle");
    // Its own health check (`berth healthcheck`, no shell) passes in the container.
    let exec = engine::docker::Exec::argv(["/usr/local/bin/berth", "healthcheck"]);
    let outcome = e.docker.exec(&berth, &exec, None, None).await.unwrap();
    assert_eq!(outcome.exit_code, 0, "{} {}", outcome.stdout, outcome.stderr_tail);

    for s in &specs {
        let _ = e.docker.remove_container(&s.name, true).await;
    }
    let _ = e.docker.remove_network(&network).await;
}
