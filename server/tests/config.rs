//! The README's configuration table and the configuration loaders cannot drift
//! apart: every variable in the table is read by a loader, and its example value
//! parses (alone and all together). Booleans share one grammar, and a bad value
//! stops `berth` with one line naming the variable, exit status 2, no backtrace.

use engine::config::{data_dir_from_env, DatabaseConfig, DeployConfig, DockerConfig, Mode, RedisConfig, SecretConfig};
use server::config::{LogConfig, ServerConfig};

/// (variable, example) for every row of the README's configuration table.
fn readme_examples() -> Vec<(String, String)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let table = readme
        .split("| variable | default | example | meaning |")
        .nth(1)
        .expect("the README has the configuration table")
        .split("\n\n")
        .next()
        .unwrap();
    let ticked = |cell: &str| -> Vec<String> {
        cell.split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 1)
            .map(|(_, s)| s.to_owned())
            .collect()
    };
    let mut out = Vec::new();
    for row in table.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split(" | ").collect();
        let names = ticked(cells[0]);
        let examples = ticked(cells[2]);
        // `BERTH_IMAGE_POSTGRES`, `_MYSQL`: a name starting with `_` continues
        // the first one's prefix.
        let prefix = names[0].rsplit_once('_').map(|(p, _)| p).unwrap_or("").to_owned();
        for (i, name) in names.iter().enumerate() {
            let name = if name.starts_with('_') {
                format!("{prefix}{name}")
            } else {
                name.clone()
            };
            let example = if cells[2].starts_with("(`openssl rand -hex 32`)") {
                hex::encode(rand_bytes())
            } else {
                examples.get(i).or(examples.first()).cloned().expect("an example")
            };
            out.push((name, example));
        }
    }
    out
}

fn rand_bytes() -> [u8; 32] {
    use sha2::Digest;
    let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
    sha2::Sha256::digest(seed.as_bytes()).into()
}

/// Every loader, in the order `berth serve` runs them; the first error.
fn load_everything() -> Result<(), String> {
    let e = |x: engine::config::ConfigError| x.to_string();
    LogConfig::from_env().map_err(e)?;
    DatabaseConfig::from_env().map_err(e)?;
    RedisConfig::from_env().map_err(e)?;
    let mode = Mode::from_env().map_err(e)?;
    let data_dir = data_dir_from_env();
    if std::env::var("BERTH_SECRET_KEY").is_ok() || mode == Mode::Development {
        let _ = std::fs::create_dir_all(&data_dir);
        SecretConfig::from_env(mode, &data_dir).map_err(e)?;
    }
    DockerConfig::from_env().map_err(e)?;
    DeployConfig::from_env().map_err(e)?;
    ServerConfig::from_env().map_err(e)?;
    Ok(())
}

const LOADER_SOURCES: [&str; 2] = [
    include_str!("../../engine/src/config.rs"),
    include_str!("../src/config.rs"),
];

#[test]
fn the_readme_table_parses_and_every_variable_is_read() {
    let examples = readme_examples();
    assert!(examples.len() >= 40, "the table was read: {examples:?}");
    let clear = || {
        for (name, _) in &examples {
            std::env::remove_var(name);
        }
    };
    let required = [
        ("DATABASE_URL", "postgres://berth:pw@db:5432/berth"),
        ("REDIS_URL", "redis://redis:6379"),
        ("BERTH_MODE", "development"),
    ];
    let dir = std::env::temp_dir().join(format!("berth-config-{}", std::process::id()));

    // Every variable a loader reads is documented ...
    for src in LOADER_SOURCES {
        let is_name = |s: &&str| s.starts_with("BERTH_") && s.bytes().all(|b| b.is_ascii_uppercase() || b == b'_');
        for read in src.split('"').skip(1).step_by(2).filter(is_name) {
            assert!(
                examples.iter().any(|(n, _)| n == read),
                "{read} is read but not in the README's configuration table"
            );
        }
    }
    for (name, example) in &examples {
        // ... and every documented one is read by a loader.
        assert!(
            LOADER_SOURCES.iter().any(|src| src.contains(&format!("\"{name}\""))),
            "{name} is in the README but no configuration loader reads it"
        );
        // Its example parses on its own.
        clear();
        for (k, v) in required {
            std::env::set_var(k, v);
        }
        std::env::set_var("BERTH_DATA_DIR", &dir);
        std::env::set_var(name, example);
        if let Err(e) = load_everything() {
            panic!("{name}={example:?} (the README's example) is refused: {e}");
        }
    }

    // All of them together, and they mean what they say.
    clear();
    for (name, example) in &examples {
        std::env::set_var(name, example);
    }
    std::env::set_var("BERTH_DATA_DIR", &dir);
    load_everything().expect("the README's examples together");
    let server = ServerConfig::from_env().unwrap();
    assert!(!server.worker && server.trust_proxy);
    assert_eq!(server.release.as_deref(), Some("0.1.0+3f2a9c1"));
    let deploy = DeployConfig::from_env().unwrap();
    assert!(!deploy.proxy.manage && deploy.allow_local_sources);
    assert_eq!(deploy.telegram_api, "http://telegram-bot-api:8081");
    assert!(deploy.host.allow_private_targets && deploy.host.allow_local_images);
    assert_eq!(
        deploy.host.bind_roots,
        vec![std::path::PathBuf::from("/srv/berth-mounts"), "/mnt/data".into()]
    );
    assert_eq!(deploy.proxy.http_port, 8000);
    assert!(LogConfig::from_env().unwrap().json);
    let _ = std::fs::remove_dir_all(&dir);

    // One grammar for every flag; a bad value names the variable and the words.
    clear();
    for (k, v) in required {
        std::env::set_var(k, v);
    }
    std::env::set_var("BERTH_DATA_DIR", &dir);
    for flag in [
        "BERTH_WORKER",
        "BERTH_TRUST_PROXY",
        "BERTH_PROXY_MANAGE",
        "BERTH_ALLOW_LOCAL_SOURCES",
        "BERTH_ALLOW_PRIVATE_TARGETS",
        "BERTH_ALLOW_LOCAL_IMAGES",
    ] {
        for word in ["1", "0", "true", "false", "on", "off", "yes", "no"] {
            std::env::set_var(flag, word);
            load_everything().unwrap_or_else(|e| panic!("{flag}={word}: {e}"));
        }
        std::env::set_var(flag, "maybe");
        let e = load_everything().unwrap_err();
        assert!(e.contains(flag) && e.contains("on/off"), "{e}");
        std::env::remove_var(flag);
    }
    // Host paths: absolute and plain, or refused naming the variable.
    for bad in ["relative/dir", "/srv/../etc"] {
        std::env::set_var("BERTH_BIND_ROOTS", bad);
        let e = load_everything().unwrap_err();
        assert!(e.contains("BERTH_BIND_ROOTS"), "{e}");
    }
    std::env::remove_var("BERTH_BIND_ROOTS");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The binary itself: a bad value is one line on standard error naming the
/// variable, exit status 2, and no backtrace even when one is asked for.
#[test]
fn a_bad_value_stops_berth_with_one_line() {
    let bin = std::env::var("BERTH_BIN").expect("BERTH_BIN (make test sets it)");
    let dir = std::env::temp_dir().join(format!("berth-badconfig-{}", std::process::id()));
    let run = |vars: &[(&str, &str)]| {
        // A clean environment: the other test changes this process's.
        let out = std::process::Command::new(&bin)
            .arg("serve")
            .env_clear()
            .env("RUST_BACKTRACE", "1")
            .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
            .env("REDIS_URL", "redis://127.0.0.1:1")
            .env("BERTH_MODE", "development")
            .env("BERTH_DATA_DIR", &dir)
            .envs(vars.iter().copied())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        )
    };
    for (name, value) in [
        ("BERTH_ALLOW_LOCAL_SOURCES", "sometimes"),
        ("BERTH_LOG_FORMAT", "xml"),
        ("BERTH_TELEGRAM_API_URL", "ftp://bots.example.com"),
        ("BERTH_TELEGRAM_API_URL", "https://api.telegram.org/?token=x"),
    ] {
        let (code, stderr) = run(&[(name, value)]);
        assert_eq!(code, Some(2), "{name}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("berth: ") && stderr.contains(name), "{stderr}");
        assert!(
            !stderr.contains("backtrace") && !stderr.contains("panicked"),
            "{stderr}"
        );
    }
    // A secret given as a file that is not there: one line naming the file.
    // (Given as files that are, the secrets run the installed Berth: install.rs.)
    let out = std::process::Command::new(&bin)
        .arg("serve")
        .env_clear()
        .env("DATABASE_URL_FILE", "/nonexistent/berth/database.url")
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .env("BERTH_MODE", "development")
        .env("BERTH_DATA_DIR", &dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("/nonexistent/berth/database.url"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
