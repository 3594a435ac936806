//! The `berth` binary as an operator meets it: its commands, its refusal to run
//! in production without a strong secret key, development key generation,
//! migrations, the password reset, and graceful shutdown.

use engine::accounts::{self, NewAccount};
use engine::names::OrgName;
use engine::testing::{free_port, wait_for_200, TestDb, TestEngine, TestRedis};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_berth");

fn berth(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("BERTH_SECRET_KEY")
        .env_remove("BERTH_MODE")
        .env("BERTH_WORKER", "off");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run berth")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn help_lists_the_commands() {
    let out = berth(&["--help"], &[]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for cmd in ["serve", "worker", "migrate", "admin"] {
        assert!(help.contains(cmd), "{help}");
    }
    let admin = text(&berth(&["admin", "--help"], &[]).stdout);
    assert!(admin.contains("reset-password"), "{admin}");
}

#[tokio::test]
async fn production_refuses_a_missing_or_weak_secret_key() {
    let db = TestDb::new().await;
    let redis = TestRedis::new();
    let base = [
        ("DATABASE_URL", db.url.as_str()),
        ("REDIS_URL", redis.url.as_str()),
        ("BERTH_LISTEN", "127.0.0.1:0"),
    ];
    let out = berth(&["serve"], &base);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("BERTH_SECRET_KEY is not set"),
        "{}",
        text(&out.stderr)
    );

    // A passphrase is not a key; a key of the right length must still be random.
    let pattern = "ab".repeat(32);
    for (key, says) in [
        ("changeme-changeme-changeme-changeme", "must be 32 random bytes"),
        (pattern.as_str(), "is not random"),
    ] {
        let mut weak = base.to_vec();
        weak.push(("BERTH_SECRET_KEY", key));
        let out = berth(&["serve"], &weak);
        assert!(!out.status.success());
        let err = text(&out.stderr);
        assert!(err.contains(says), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert_eq!(err.matches(says).count(), 1, "said once: {err}");
    }
}

#[tokio::test]
async fn development_mode_generates_a_private_key_once_and_sigterm_stops_gracefully() {
    let db = TestDb::new().await;
    let redis = TestRedis::new();
    let data = std::env::temp_dir().join(format!("berth-data-{}", uuid::Uuid::new_v4()));
    let port = free_port();
    let spawn = || {
        Command::new(BIN)
            .arg("serve")
            .env("BERTH_WORKER", "off")
            .env_remove("BERTH_SECRET_KEY")
            .env("BERTH_MODE", "development")
            .env("BERTH_DATA_DIR", &data)
            .env("DATABASE_URL", &db.url)
            .env("REDIS_URL", &redis.url)
            .env("BERTH_REDIS_PREFIX", &redis.prefix)
            .env("BERTH_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(engine::testing::KillOnDrop)
            .unwrap()
    };
    let mut child = spawn();
    wait_for_200(port, "/health").await;
    let key_path = data.join("secret.key");
    let key = std::fs::read_to_string(&key_path).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(engine::secrets::SecretKey::from_config(&key).is_ok());

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "graceful shutdown exits 0, got {exit:?}");

    // The next start reuses the same key.
    let mut child = spawn();
    wait_for_200(port, "/health").await;
    assert_eq!(std::fs::read_to_string(&key_path).unwrap(), key);
    child.kill().unwrap();
    let _ = child.wait();
    std::fs::remove_dir_all(&data).unwrap();
}

#[tokio::test]
async fn migrate_applies_everything_to_an_empty_database_once() {
    let db = TestDb::empty().await;
    let first = berth(&["migrate"], &[("DATABASE_URL", &db.url)]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(text(&first.stdout).contains("applied migration") || text(&first.stderr).contains("applied migration"));
    let second = berth(&["migrate"], &[("DATABASE_URL", &db.url)]);
    assert!(second.status.success());
    assert!(!text(&second.stdout).contains("applied migration") && !text(&second.stderr).contains("applied migration"));
}

#[tokio::test]
async fn admin_reset_password_prints_a_working_password_and_signs_out_sessions() {
    let t = TestEngine::new().await;
    let e = &t.engine;
    let owner = NewAccount::parse("Ada", "ada@example.com", "correct horse battery").unwrap();
    let (caller, _) = engine::testing::onboard(e, owner, OrgName::parse("Acme").unwrap())
        .await
        .unwrap();
    let env = [
        ("DATABASE_URL", t.db.url.as_str()),
        ("REDIS_URL", t.redis.url.as_str()),
        ("BERTH_REDIS_PREFIX", t.redis.prefix.as_str()),
        (
            "BERTH_SECRET_KEY",
            "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0",
        ),
    ];
    let out = berth(&["admin", "reset-password", "ada@example.com"], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let password = stdout
        .lines()
        .find_map(|l| l.strip_prefix("New password for ada@example.com: "))
        .unwrap()
        .trim();
    assert!(
        accounts::authenticate(e, caller.session().unwrap().clone())
            .await
            .is_err(),
        "old sessions are revoked"
    );
    accounts::login(e, "ada@example.com", password, "10.0.0.1")
        .await
        .unwrap();

    let missing = berth(&["admin", "reset-password", "ghost@example.com"], &env);
    assert!(!missing.status.success());
    let bad = berth(&["admin", "reset-password", "not an email"], &env);
    assert!(!bad.status.success());
    assert!(text(&bad.stderr).contains("email"), "{}", text(&bad.stderr));
}
