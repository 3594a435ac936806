//! `berth`'s client commands against a running `berth serve` (worker on,
//! real Docker): login stores the key 0600, `deploy --wait` streams the build
//! log and exits non-zero with the reason when the build fails (and zero once
//! a fixed commit goes live), `env set` from a file then `env get` returns the
//! values byte for byte, and the lists answer as text and JSON.

use engine::apikeys::{self, ExpiryDays, KeyName, KeyRole, NewKey};
use engine::apps::spec::{AppName, Build, HealthCheck, HealthProbe, Runtime, Source};
use engine::apps::{self, NewApp};
use engine::names::Description;
use engine::testing::{free_port, httpd_dockerfile, wait_for_200, DeployEnv, GitRepo, TEST_BASE_IMAGE};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_berth");

fn spawn(env: &DeployEnv, port: u16) -> engine::testing::KillOnDrop {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .env("BERTH_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in env.berth_env() {
        cmd.env(k, v);
    }
    engine::testing::KillOnDrop(cmd.spawn().expect("spawn berth"))
}

/// Runs a client command as a user whose config directory is `home`.
async fn client(home: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::task::spawn_blocking(move || cmd.output().expect("run berth"))
        .await
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_command_line_deploys_waits_and_sets_variables_over_the_api() {
    let env = DeployEnv::new().await;
    let e = env.engine().clone();
    let (caller, envid) = engine::testing::owner_with_environment(&e).await;
    let repo = GitRepo::new();
    repo.commit(
        &[(
            "Dockerfile",
            &format!("FROM {TEST_BASE_IMAGE}\nRUN echo about to fail && exit 3\n"),
        )],
        "broken",
    );
    let name = format!("cli-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    apps::create(
        &e,
        &caller,
        NewApp {
            name: AppName::parse(&name).unwrap(),
            description: Description::default(),
            environment: envid,
            source: Source::Git {
                url: repo.url(),
                branch: "main".into(),
                subdir: ".".into(),
            },
            source_secret: None,
            build: Build::default(),
            runtime: Runtime {
                port: 8080,
                health: HealthCheck {
                    probe: HealthProbe::Http { path: "/".into() },
                    interval_ms: 200,
                    ..HealthCheck::default()
                },
                drain_secs: 1,
                ..Runtime::default()
            },
        },
    )
    .await
    .unwrap();
    let key = apikeys::create(
        &e,
        &caller,
        NewKey {
            name: KeyName::parse("laptop").unwrap(),
            role: KeyRole::Member,
            expires: ExpiryDays::parse("30").unwrap(),
            instance: false,
            projects: None,
        },
    )
    .await
    .unwrap()
    .key;

    let port = free_port();
    let _berth = spawn(&env, port);
    wait_for_200(port, "/health").await;
    let url = format!("http://127.0.0.1:{port}");
    let home = tempdir();

    // Not logged in: says how.
    let out = client(&home, &["projects"], &[]).await;
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("berth login"), "{}", text(&out.stderr));
    // A wrong key is refused and nothing is stored.
    let out = client(&home, &["login", "--url", &url], &[("BERTH_API_KEY", "berth_nope")]).await;
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert!(!home.join("config/berth/cli.json").exists());
    // The right one is kept, for this user only.
    let out = client(&home, &["login", "--url", &url], &[("BERTH_API_KEY", &key)]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stored = home.join("config/berth/cli.json");
    assert_eq!(std::fs::metadata(&stored).unwrap().permissions().mode() & 0o777, 0o600);

    // Lists, as text and JSON.
    let out = client(&home, &["projects"], &[]).await;
    assert!(text(&out.stdout).contains("Shop"), "{}", text(&out.stdout));
    let out = client(&home, &["apps", "--output", "json"], &[]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let apps: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(apps[0]["name"], name.as_str());
    assert_eq!(apps[0]["project"], "Shop");

    // A failing build: the log streams, the exit is non-zero with the reason.
    let out = client(&home, &["deploy", &name, "--wait"], &[]).await;
    assert!(!out.status.success(), "{}", text(&out.stdout));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        stdout.contains("about to fail"),
        "the build log was not streamed: {stdout}"
    );
    assert!(stderr.contains("failed"), "{stderr}");
    assert!(stderr.contains("non-zero code: 3"), "the reason is missing: {stderr}");
    // The audit log has the key's request and the worker's result.
    {
        use diesel_async::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Text)]
            actor_kind: String,
            #[diesel(sql_type = diesel::sql_types::Text)]
            action: String,
        }
        let mut conn = e.db.get().await.unwrap();
        let rows: Vec<Row> = diesel::sql_query("SELECT actor_kind, action FROM audit_log ORDER BY at")
            .load(&mut conn)
            .await
            .unwrap();
        let seen: Vec<(String, String)> = rows.into_iter().map(|r| (r.actor_kind, r.action)).collect();
        assert!(
            seen.contains(&("key".into(), "POST /api/v1/apps/{id}/deployments".into())),
            "{seen:?}"
        );
        assert!(
            seen.contains(&("worker".into(), "deployment failed".into())),
            "{seen:?}"
        );
    }

    // Fixed: the same command waits until it is live and exits 0.
    repo.commit(
        &[("Dockerfile", &httpd_dockerfile()), ("index.html", "fixed\n")],
        "fixed",
    );
    let out = client(&home, &["deploy", &name, "--wait"], &[]).await;
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stderr).contains("is live"), "{}", text(&out.stderr));
    let out = client(&home, &["logs", &name, "--tail", "10"], &[]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Variables from a file, back byte for byte.
    let file = home.join("app.env");
    std::fs::write(
        &file,
        "# settings\nexport PLAIN=value\nSPACES=a b  c\nQUOTED=\"  padded  \"\nSYMBOLS=p@ss=w0rd#not-a-comment $HOME\nUNICODE=héllo ✓\nEMPTY=\n",
    )
    .unwrap();
    let out = client(&home, &["env", "set", &name, "--file", file.to_str().unwrap()], &[]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = client(&home, &["env", "get", &name, "--output", "json"], &[]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        got["vars"],
        serde_json::json!({
            "PLAIN": "value",
            "SPACES": "a b  c",
            "QUOTED": "  padded  ",
            "SYMBOLS": "p@ss=w0rd#not-a-comment $HOME",
            "UNICODE": "héllo ✓",
            "EMPTY": "",
        })
    );
    // The text form reads back the same through `env set --replace`.
    let out = client(&home, &["env", "get", &name], &[]).await;
    let again = home.join("again.env");
    std::fs::write(&again, &out.stdout).unwrap();
    let out = client(
        &home,
        &["env", "set", &name, "--replace", "--file", again.to_str().unwrap()],
        &[],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = client(&home, &["env", "get", &name, "--output", "json"], &[]).await;
    let back: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(back, got);
    // A bad file names the line and changes nothing.
    std::fs::write(&file, "1BAD=x\n").unwrap();
    let out = client(&home, &["env", "set", &name, "--file", file.to_str().unwrap()], &[]).await;
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("line 1"), "{}", text(&out.stderr));

    // Logged out: the stored key is gone.
    let out = client(&home, &["logout"], &[]).await;
    assert!(out.status.success());
    assert!(!stored.exists());
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("berth-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
