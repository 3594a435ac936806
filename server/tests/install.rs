//! `berth install` into the test Docker engine with local images (Berth's own
//! from scripts/image.sh, BERTH_TEST_IMAGE): `--dry-run` changes nothing; the
//! install brings up PostgreSQL, Redis and Berth, whose worker starts Traefik;
//! the dashboard answers through Traefik and onboarding takes the printed setup
//! token; a second install changes nothing (same container IDs); uninstall
//! keeps the volumes unless --purge.

use engine::testing::{free_port, test_traefik_image, TestEngine, TEST_POSTGRES_IMAGE, TEST_REDIS_IMAGE};
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_berth");

fn berth(args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run berth");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn ids(e: &engine::Engine, instance: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = e
        .docker
        .list_containers(&[(engine::docker::LABEL_INSTANCE, Some(instance))])
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.name, c.id))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_serves_through_traefik_is_idempotent_and_uninstalls() {
    let image =
        std::env::var("BERTH_TEST_IMAGE").expect("BERTH_TEST_IMAGE (make test builds it with scripts/image.sh)");
    let socket = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_owned))
        .unwrap_or_else(|| "/var/run/docker.sock".into());
    let t = TestEngine::new().await;
    let e = &t.engine;
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let instance = format!("bi{tag}");
    let dir = std::env::temp_dir().join(format!("berth-install-{instance}"));
    let (http_port, https_port) = (free_port(), free_port());
    let (http, https) = (http_port.to_string(), https_port.to_string());
    let dir_s = dir.display().to_string();
    let traefik = test_traefik_image();
    let args = |dry: bool| {
        let mut a = vec![
            "install",
            "--host",
            "berth.test",
            "--image",
            &image,
            "--postgres-image",
            TEST_POSTGRES_IMAGE,
            "--redis-image",
            TEST_REDIS_IMAGE,
            "--traefik-image",
            &traefik,
            "--instance",
            &instance,
            "--data-dir",
            &dir_s,
            "--docker-socket",
            &socket,
            "--dashboard-cert",
            "none",
            "--bind",
            "127.0.0.1",
            "--http-port",
            &http,
            "--https-port",
            &https,
            "--env",
            "BERTH_ALLOW_LOCAL_IMAGES=on",
        ];
        if dry {
            a.push("--dry-run");
        }
        a.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let run = |a: Vec<String>| berth(&a.iter().map(String::as_str).collect::<Vec<_>>());

    // Hostile arguments are refused before anything is done.
    let (ok, out) = berth(&[
        "install",
        "--host",
        "berth.test`x",
        "--instance",
        &instance,
        "--dry-run",
    ]);
    assert!(!ok && out.contains("--host"), "{out}");

    let (ok, out) = run(args(true));
    assert!(ok, "{out}");
    assert!(out.contains("Berth container") && out.contains("would create"), "{out}");
    assert!(ids(e, &instance).await.is_empty(), "a dry run makes nothing");
    assert!(!dir.exists(), "a dry run writes nothing");

    let (ok, out) = run(args(false));
    assert!(ok, "{out}");
    let token = out
        .lines()
        .find_map(|l| l.strip_prefix("Setup token (for the first account, once): "))
        .unwrap_or_else(|| panic!("no setup token printed: {out}"))
        .trim()
        .to_owned();
    assert!(
        out.contains(&format!("Berth is up: http://berth.test:{http_port}")),
        "{out}"
    );
    // Secrets in 0600 files, not in the containers' environment.
    use std::os::unix::fs::PermissionsExt;
    for f in [
        "secret.key",
        "postgres.password",
        "redis.password",
        "database.url",
        "redis.url",
    ] {
        let mode = std::fs::metadata(dir.join("install").join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    let password = std::fs::read_to_string(dir.join("install/postgres.password")).unwrap();
    let berth_info = e
        .docker
        .inspect_container(&instance)
        .await
        .unwrap()
        .expect("Berth's container");
    assert!(
        !berth_info.env.iter().any(|v| v.contains(password.trim())),
        "no password in the environment"
    );

    // The dashboard through Traefik (Berth's worker started it).
    let host = format!("berth.test:{http_port}");
    let start = Instant::now();
    loop {
        let r = engine::http1::request("127.0.0.1", http_port, "GET", &host, "/login", Duration::from_secs(5)).await;
        if r.as_ref().is_ok_and(|r| r.status == 200) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "the dashboard never answered through Traefik: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Onboarding with the printed token, through Traefik.
    let form = format!(
        "setup_token={token}&name=Ada&email=ada%40example.com&password=correct+horse+battery&organization=Acme"
    );
    let answer = post(http_port, &host, "/api/onboard", &form).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let cookie = answer
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .and_then(|c| c.split(';').next())
        .filter(|c| c.starts_with("berth_session="))
        .unwrap_or_else(|| panic!("no session cookie: {answer}"))
        .to_owned();

    // An app deployed through the installed Berth (its worker builds nothing
    // here: a local image) and reached through Traefik by its generated host.
    let call = |path: &'static str, form: Vec<(&'static str, String)>| {
        let (host, cookie) = (host.clone(), cookie.clone());
        async move {
            let body: String = form
                .iter()
                .map(|(k, v)| format!("{k}={}", urlencode(v)))
                .collect::<Vec<_>>()
                .join("&");
            let answer = post_with(http_port, &host, path, &body, Some(&cookie)).await;
            assert!(answer.starts_with("HTTP/1.1 200"), "{path}: {answer}");
            json_body(&answer)
        }
    };
    let project = call(
        "/api/projects/create",
        vec![("name", "Shop".into()), ("description", String::new())],
    )
    .await;
    let environment = call(
        "/api/environments/create",
        vec![
            ("project_id", project.as_str().unwrap().to_owned()),
            ("name", "live".into()),
        ],
    )
    .await;
    let app = call(
        "/api/apps/create",
        vec![
            ("environment_id", environment.as_str().unwrap().to_owned()),
            ("name", "web".into()),
            ("source", "image".into()),
            ("image", engine::testing::TEST_BASE_IMAGE.into()),
            ("repository", String::new()),
            ("branch", "main".into()),
            ("build", "dockerfile".into()),
        ],
    )
    .await;
    let app = app.as_str().unwrap().to_owned();
    let mut runtime: Vec<(&'static str, String)> = vec![("id", app.clone())];
    for (k, v) in runtime_fields("sh\n-c\necho up > /index.html && exec httpd -f -p 8080 -h /") {
        runtime.push((k, v));
    }
    call("/api/apps/update_runtime", runtime).await;
    call("/api/deployments/create", vec![("app_id", app.clone())]).await;
    let detail = call("/api/apps/get", vec![("id", app.clone())]).await;
    let app_host = detail["domains"][0]["host"]
        .as_str()
        .expect("a generated domain")
        .to_owned();
    let start = Instant::now();
    loop {
        let r = engine::http1::request("127.0.0.1", http_port, "GET", &app_host, "/", Duration::from_secs(5)).await;
        if r.as_ref().is_ok_and(|r| r.status == 200 && r.body.trim() == "up") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the app never answered through Traefik: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Berth's process killed in the middle of a deployment: Docker restarts
    // the container, the deployment is reported interrupted, and the live
    // version keeps serving.
    let mut slow: Vec<(&'static str, String)> = vec![("id", app.clone())];
    for (k, v) in runtime_fields("sh\n-c\nsleep 600") {
        slow.push((k, v));
    }
    call("/api/apps/update_runtime", slow).await;
    let deployment = call("/api/deployments/create", vec![("app_id", app.clone())]).await;
    let deployment = deployment.as_str().expect("a deployment id").to_owned();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let restarts = e
        .docker
        .inspect_container(&instance)
        .await
        .unwrap()
        .unwrap()
        .restart_count;
    let kill = engine::docker::Exec::argv([
        "bash",
        "-c",
        "for p in /proc/[0-9]*; do [ \"$(cat $p/comm 2>/dev/null)\" = berth ] && kill -9 ${p#/proc/}; done; true",
    ]);
    let _ = e.docker.exec(&instance, &kill, None, None).await;
    let start = Instant::now();
    loop {
        let info = e.docker.inspect_container(&instance).await.unwrap().unwrap();
        if info.restart_count > restarts && info.state.is_up() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "Docker did not restart Berth: {:?}",
            info.state
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let start = Instant::now();
    loop {
        let answer = post_with(
            http_port,
            &host,
            "/api/deployments/list",
            &format!("app_id={app}"),
            Some(&cookie),
        )
        .await;
        let page = if answer.starts_with("HTTP/1.1 200") {
            Some(json_body(&answer))
        } else {
            None
        };
        let this = page.as_ref().and_then(|p| {
            p["deployments"]
                .as_array()?
                .iter()
                .find(|d| d["id"] == deployment.as_str())
                .cloned()
        });
        if let Some(d) = &this {
            if d["status"] == "failed" {
                assert!(d["reason"].as_str().is_some_and(|r| r.contains("interrupted")), "{d}");
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "the deployment was not reported interrupted: {this:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let r = engine::http1::request("127.0.0.1", http_port, "GET", &app_host, "/", Duration::from_secs(5)).await;
    assert!(
        r.as_ref().is_ok_and(|r| r.status == 200),
        "the live version still serves: {r:?}"
    );

    // Again: nothing changes.
    let before = ids(e, &instance).await;
    let (ok, out) = run(args(false));
    assert!(ok, "{out}");
    assert!(!out.contains(": created") && !out.contains(": replaced"), "{out}");
    assert!(out.contains("Onboarding is done"), "{out}");
    assert_eq!(ids(e, &instance).await, before, "the same containers");

    // Uninstall: containers and networks go, the data stays.
    let (ok, out) = berth(&["uninstall", "--instance", &instance, "--data-dir", &dir_s]);
    assert!(ok, "{out}");
    assert!(ids(e, &instance).await.is_empty(), "{out}");
    let volumes = e
        .docker
        .list_volumes(&[(engine::docker::LABEL_INSTANCE, Some(instance.as_str()))])
        .await
        .unwrap();
    assert!(volumes.contains(&format!("{instance}-postgres-data")), "{volumes:?}");
    let (ok, out) = berth(&["uninstall", "--instance", &instance, "--data-dir", &dir_s, "--purge"]);
    assert!(ok, "{out}");
    let volumes = e
        .docker
        .list_volumes(&[(engine::docker::LABEL_INSTANCE, Some(instance.as_str()))])
        .await
        .unwrap();
    assert!(volumes.is_empty(), "{volumes:?}");
    assert!(!dir.exists());
}

/// A form POST through Traefik as a browser on the dashboard's origin sends it.
async fn post(port: u16, host: &str, path: &str, form: &str) -> String {
    post_with(port, host, path, form, None).await
}

async fn post_with(port: u16, host: &str, path: &str, form: &str, cookie: Option<&str>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let cookie = cookie.map(|c| format!("Cookie: {c}\r\n")).unwrap_or_default();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         {cookie}Content-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A server function's JSON answer (its body may be chunked: the value is
/// then on a line of its own).
fn json_body(answer: &str) -> serde_json::Value {
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    serde_json::from_str(body.trim())
        .ok()
        .or_else(|| body.lines().find_map(|l| serde_json::from_str(l.trim()).ok()))
        .unwrap_or_else(|| panic!("no JSON in {answer}"))
}

/// The runtime form for the busybox app: `command` one argument per line.
fn runtime_fields(command: &str) -> Vec<(&'static str, String)> {
    [
        ("port", "8080"),
        ("command", command),
        ("cpu_millis", ""),
        ("memory_mb", ""),
        ("restart", ""),
        ("health", "http"),
        ("health_path", "/"),
        ("health_command", ""),
        ("health_interval_ms", ""),
        ("health_timeout_ms", ""),
        ("health_retries", ""),
        ("health_start_period_secs", ""),
        ("volumes", ""),
        ("drain_secs", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_owned()))
    .collect()
}
