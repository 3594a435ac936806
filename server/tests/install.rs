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

/// Berth's image for the tests (BERTH_TEST_IMAGE) and the test engine's socket.
fn image_and_socket() -> (String, String) {
    let image =
        std::env::var("BERTH_TEST_IMAGE").expect("BERTH_TEST_IMAGE (make test builds it with scripts/image.sh)");
    let socket = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_owned))
        .unwrap_or_else(|| "/var/run/docker.sock".into());
    (image, socket)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_serves_through_traefik_is_idempotent_and_uninstalls() {
    let (image, socket) = image_and_socket();
    let t = TestEngine::new().await;
    let e = &t.engine;
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let instance = format!("bi{tag}");
    let dir = std::env::temp_dir().join(format!("berth-install-{instance}"));
    let (http_port, https_port) = (free_port(), free_port());
    let dir_s = dir.display().to_string();
    let args = |dry: bool| install_args(&image, &instance, &dir_s, &socket, http_port, https_port, dry);
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
    // Docker's own health checks judge PostgreSQL, Redis and Berth healthy.
    let start = Instant::now();
    for c in [
        format!("{instance}-postgres"),
        format!("{instance}-redis"),
        instance.clone(),
    ] {
        loop {
            let health = e.docker.inspect_container(&c).await.unwrap().unwrap().state.health;
            if health.as_deref() == Some("healthy") {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(90), "{c}: {health:?}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    // Onboarding with the printed token, through Traefik.
    let api = Dashboard::onboard(http_port, &host, &token).await;
    let call = |path: &'static str, form: Vec<(&'static str, String)>| api.call(path, form);

    // An app deployed through the installed Berth (its worker builds nothing
    // here: a local image) and reached through Traefik by its generated host.
    let app = api.app_in_new_project().await;
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
            Some(&api.cookie),
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

/// `berth install`'s arguments for a test instance (local images, HTTP only,
/// Traefik on loopback ports).
fn install_args(
    image: &str,
    instance: &str,
    dir: &str,
    socket: &str,
    http_port: u16,
    https_port: u16,
    dry: bool,
) -> Vec<String> {
    let mut a: Vec<String> = [
        "install",
        "--host",
        "berth.test",
        "--image",
        image,
        "--postgres-image",
        TEST_POSTGRES_IMAGE,
        "--redis-image",
        TEST_REDIS_IMAGE,
        "--traefik-image",
        &test_traefik_image(),
        "--instance",
        instance,
        "--data-dir",
        dir,
        "--docker-socket",
        socket,
        "--dashboard-cert",
        "none",
        "--bind",
        "127.0.0.1",
        "--http-port",
        &http_port.to_string(),
        "--https-port",
        &https_port.to_string(),
        "--env",
        "BERTH_ALLOW_LOCAL_IMAGES=on",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    if dry {
        a.push("--dry-run".into());
    }
    a
}

/// The installed Berth's server functions through Traefik, signed in.
struct Dashboard {
    port: u16,
    host: String,
    cookie: String,
}

impl Dashboard {
    /// Onboards Ada (owner of Acme) with the setup token.
    async fn onboard(port: u16, host: &str, token: &str) -> Self {
        let form = format!(
            "setup_token={token}&name=Ada&email=ada%40example.com&password=correct+horse+battery&organization=Acme"
        );
        let answer = post(port, host, "/api/onboard", &form).await;
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
        Self {
            port,
            host: host.to_owned(),
            cookie,
        }
    }

    /// A server function's JSON answer; anything but 200 fails the test.
    async fn call(&self, path: &str, form: Vec<(&str, String)>) -> serde_json::Value {
        let body: String = form
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let answer = post_with(self.port, &self.host, path, &body, Some(&self.cookie)).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{path}: {answer}");
        json_body(&answer)
    }

    /// Project Shop, environment live, app web (the busybox image): its ID.
    async fn app_in_new_project(&self) -> String {
        let project = self
            .call(
                "/api/projects/create",
                vec![("name", "Shop".into()), ("description", "the shop".into())],
            )
            .await;
        let environment = self
            .call(
                "/api/environments/create",
                vec![
                    ("project_id", project.as_str().unwrap().to_owned()),
                    ("name", "live".into()),
                ],
            )
            .await;
        let app = self
            .call(
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
        app.as_str().unwrap().to_owned()
    }
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

/// Requests to the dashboard's `/health` through Traefik, each on a new
/// connection, every 20 ms until stopped (at most 15 000): how many were
/// sent and which failed (anything but 200).
struct LoadLoop {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<(u32, Vec<String>)>,
}

impl LoadLoop {
    fn start(port: u16, host: &str) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, host) = (stop.clone(), host.to_owned());
        let task = tokio::spawn(async move {
            let (mut sent, mut failed) = (0u32, Vec::new());
            while !flag.load(std::sync::atomic::Ordering::Relaxed) && sent < 15_000 {
                sent += 1;
                match engine::http1::request("127.0.0.1", port, "GET", &host, "/health", Duration::from_secs(10)).await
                {
                    Ok(r) if r.status == 200 => {}
                    Ok(r) => failed.push(format!("{} {}", r.status, r.body.trim())),
                    Err(e) => failed.push(e.to_string()),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (sent, failed)
        });
        Self { stop, task }
    }
    async fn stop(self) -> (u32, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

/// Every table's rows, as a checksum per table, read with psql in the
/// installation's PostgreSQL container.
async fn checksums(e: &engine::Engine, instance: &str) -> String {
    let sql = "SELECT string_agg(c.relname || ' ' || (xpath('/row/s/text()', query_to_xml(format(
        'SELECT md5(coalesce(string_agg(t::text, ''|'' ORDER BY t::text), '''')) AS s FROM public.%I t',
        c.relname), false, true, '')))[1]::text, E'\\n' ORDER BY c.relname)
        FROM pg_class c WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace";
    let out = e
        .docker
        .exec(
            &format!("{instance}-postgres"),
            &engine::docker::Exec::argv(["psql", "-X", "-At", "-U", "berth", "-d", "berth", "-c", sql]),
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(out.exit_code, 0, "{}", out.stderr_tail);
    out.stdout.trim().to_owned()
}

/// `berth upgrade` on an installed instance: to an image whose Berth never
/// becomes healthy (the old one serves on, no request fails, the command
/// names the step), to an image whose migrations fail halfway (the database
/// is back as it was, table by table), then to a newer build (no request
/// fails, the data is intact, the new release answers, and a second
/// `berth install` changes nothing).
///
/// The half-failing migration is the new image's `migrate` doing what a
/// second migration failing after a first one committed leaves behind: a
/// table, a version row and a changed row, then exit 1. `berth upgrade`
/// only sees the image, as with any release.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_move_without_failed_requests_and_failed_ones_roll_back() {
    let (image, socket) = image_and_socket();
    let t = TestEngine::new().await;
    let e = &t.engine;
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let newer = format!("berth-test/berth-upgrade:{tag}-newer");
    let sick = format!("berth-test/berth-upgrade:{tag}-sick");
    let half = format!("berth-test/berth-upgrade:{tag}-half");
    engine::testing::build_image(
        e,
        &newer,
        &format!("FROM {image}\nENV BERTH_RELEASE=upgrade-{tag}\n"),
        &[],
    )
    .await;
    engine::testing::build_image(
        e,
        &sick,
        &format!("FROM {image}\nCMD [\"serve\", \"--no-such-flag\"]\n"),
        &[],
    )
    .await;
    let script = b"#!/bin/sh\n\
        if [ \"$1\" = migrate ]; then\n\
          /usr/local/bin/berth migrate || exit 1\n\
          psql -X -q -v ON_ERROR_STOP=1 \"$(cat \"$DATABASE_URL_FILE\")\" -c \"CREATE TABLE upgrade_half (id int); \
        INSERT INTO __diesel_schema_migrations (version) VALUES ('29990101000001'); \
        UPDATE projects SET description = 'changed by a half-done upgrade'\" || exit 1\n\
          echo 'migration 2999-01-01-000002 failed: column \"nope\" does not exist' >&2\n\
          exit 1\n\
        fi\n\
        exec /usr/local/bin/berth \"$@\"\n";
    engine::testing::build_image(
        e,
        &half,
        &format!("FROM {image}\nCOPY half /usr/local/bin/half\nENTRYPOINT [\"/usr/bin/tini\", \"--\", \"/usr/local/bin/half\"]\nCMD [\"serve\"]\n"),
        &[("half", script, 0o755)],
    )
    .await;

    let instance = format!("bu{tag}");
    let dir = std::env::temp_dir().join(format!("berth-install-{instance}"));
    let dir_s = dir.display().to_string();
    let (http_port, https_port) = (free_port(), free_port());
    let install = install_args(&image, &instance, &dir_s, &socket, http_port, https_port, false);
    let (ok, out) = berth(&install.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{out}");
    let token = out
        .lines()
        .find_map(|l| l.strip_prefix("Setup token (for the first account, once): "))
        .unwrap_or_else(|| panic!("no setup token printed: {out}"))
        .trim()
        .to_owned();
    let host = format!("berth.test:{http_port}");
    let start = Instant::now();
    while engine::http1::request("127.0.0.1", http_port, "GET", &host, "/health", Duration::from_secs(5))
        .await
        .map_or(true, |r| r.status != 200)
    {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "the dashboard never answered"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let api = Dashboard::onboard(http_port, &host, &token).await;
    let call = |path: &'static str, form: Vec<(&'static str, String)>| api.call(path, form);
    let app = api.app_in_new_project().await;
    call(
        "/api/apps/set_env",
        vec![("id", app.clone()), ("dotenv", "GREETING=hello\nTOKEN=s3cr3t\n".into())],
    )
    .await;
    let data = || async {
        (
            call("/api/projects/list", vec![]).await,
            call("/api/apps/get", vec![("id", app.clone())]).await,
            call("/api/apps/env", vec![("id", app.clone())]).await,
        )
    };
    let before = data().await;
    assert_eq!(before.2, "GREETING=hello\nTOKEN=s3cr3t\n");
    let original = e.docker.inspect_container(&instance).await.unwrap().unwrap();
    let upgrade = |to: &str, timeout: &str| {
        berth(&[
            "upgrade",
            "--image",
            to,
            "--data-dir",
            &dir_s,
            "--health-timeout",
            timeout,
            "--drain",
            "5",
        ])
    };
    let next = format!("{instance}-next");

    // An image whose Berth never becomes healthy.
    let load = LoadLoop::start(http_port, &host);
    let (ok, out) = upgrade(&sick, "40");
    let (sent, failed) = load.stop().await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("waiting for the new Berth to be healthy") && out.contains("keeps serving"),
        "{out}"
    );
    assert!(sent > 20 && failed.is_empty(), "{sent} sent, failed: {failed:?}");
    let now = e.docker.inspect_container(&instance).await.unwrap().unwrap();
    assert_eq!(
        (now.id.as_str(), now.image.as_str()),
        (original.id.as_str(), image.as_str())
    );
    assert!(e.docker.inspect_container(&next).await.unwrap().is_none(), "{out}");

    // An image whose migrations fail halfway: the database as it was.
    let sums = checksums(e, &instance).await;
    let (ok, out) = upgrade(&half, "40");
    assert!(!ok, "{out}");
    assert!(
        out.contains("running migrations") && out.contains("does not exist") && out.contains("restored from"),
        "{out}"
    );
    assert_eq!(checksums(e, &instance).await, sums, "every table as before the upgrade");
    assert_eq!(data().await, before);
    let now = e.docker.inspect_container(&instance).await.unwrap().unwrap();
    assert_eq!(now.id, original.id);

    // A newer build: no request fails, the data is intact, it answers.
    let load = LoadLoop::start(http_port, &host);
    let (ok, out) = upgrade(&newer, "120");
    let (sent, failed) = load.stop().await;
    eprintln!("upgrade: {sent} requests through Traefik during it\n{out}");
    assert!(ok, "{out}");
    assert!(sent > 20 && failed.is_empty(), "{sent} sent, failed: {failed:?}\n{out}");
    let now = e.docker.inspect_container(&instance).await.unwrap().unwrap();
    assert_eq!(now.image, newer);
    assert_ne!(now.id, original.id);
    assert!(e.docker.inspect_container(&next).await.unwrap().is_none());
    assert_eq!(data().await, before, "projects, apps and env values intact");
    let answer = engine::http1::request("127.0.0.1", http_port, "GET", &host, "/health", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    let health = get_with(http_port, &host, "/api/admin/health", &api.cookie).await;
    assert!(health.contains(&format!("\"release\":\"upgrade-{tag}\"")), "{health}");

    // The install again: the upgraded Berth stays as it is.
    let ids_before = ids(e, &instance).await;
    let (ok, out) = berth(&install.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{out}");
    assert!(!out.contains(": created") && !out.contains(": replaced"), "{out}");
    assert_eq!(ids(e, &instance).await, ids_before);

    let (ok, out) = berth(&["uninstall", "--instance", &instance, "--data-dir", &dir_s, "--purge"]);
    assert!(ok, "{out}");
    for i in [&newer, &sick, &half] {
        let _ = e.docker.remove_image(i).await;
    }
}

async fn get_with(port: u16, host: &str, path: &str, cookie: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}
