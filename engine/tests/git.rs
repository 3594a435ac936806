//! Cloning against real git and a real sshd on loopback (the fake Docker engine
//! builds): repository URLs pointing inside are refused, in every spelling and
//! by name, before any connection; an ssh host key is pinned at the first clone,
//! a different key later fails the deploy with the reason, and an admin's reset
//! lets the next clone pin the new one.

use engine::accounts::Caller;
use engine::apps::spec::{Build, HealthCheck, HealthProbe, Runtime, Source};
use engine::apps::{self, NewApp};
use engine::deploy::{self, job, Status};
use engine::ids::{AppId, EnvironmentId};
use engine::jobs::run_one;
use engine::names::{Description, Role};
use engine::testing::{free_port, owner_with_environment, FakeEnv, GitRepo, KillOnDrop};
use engine::{Classify, Engine, ErrorKind};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn new_app(env: EnvironmentId, url: &str, key: Option<String>) -> NewApp {
    NewApp {
        name: apps::spec::AppName::parse(&format!("g-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])).unwrap(),
        description: Description::default(),
        environment: env,
        source: Source::Git {
            url: url.into(),
            branch: "main".into(),
            subdir: ".".into(),
        },
        source_secret: key,
        build: Build::default(),
        runtime: Runtime {
            port: 8080,
            health: HealthCheck {
                probe: HealthProbe::Tcp,
                interval_ms: 100,
                timeout_ms: 500,
                retries: 1,
                start_period_secs: 1,
            },
            drain_secs: 0,
            ..Runtime::default()
        },
    }
}

async fn deploy_now(e: &Engine, caller: &Caller, app: AppId) -> deploy::Deployment {
    let id = deploy::deploy(e, caller, app).await.unwrap();
    let claimed = job::claim(e, "w").await.unwrap().expect("claimed");
    run_one(&job::DeployKind::default(), e, claimed, "w".into()).await;
    deploy::get(e, caller, id).await.unwrap()
}

/// The engine of `env` with private targets refused (the production default).
fn strict(env: &FakeEnv) -> Engine {
    let mut cfg = (*env.engine().deploy).clone();
    cfg.host.allow_private_targets = false;
    env.engine().clone().with_deploy(cfg)
}

#[tokio::test]
async fn repositories_inside_are_refused_in_every_spelling_and_by_name() {
    let env = FakeEnv::new().await;
    let e = strict(&env);
    let (caller, env_id) = owner_with_environment(&e).await;
    for url in [
        "https://127.0.0.1:9443/x.git",
        "https://2130706433/x.git",
        "https://0x7f000001/x.git",
        "https://169.254.169.254/latest.git",
        "ssh://git@10.0.0.5/srv/x.git",
        "git@192.168.1.10:team/x.git",
    ] {
        let err = apps::create(&e, &caller, new_app(env_id, url, None)).await.unwrap_err();
        assert!(
            matches!(
                err.kind(),
                ErrorKind::Validation {
                    field: "repository",
                    ..
                }
            ),
            "{url}: {err:?}"
        );
    }
    // A name is checked when it is used (it can change): `localhost` resolves
    // inside, so the clone is refused before git runs, and says why.
    let app = apps::create(&e, &caller, new_app(env_id, "https://localhost:1/x.git", None))
        .await
        .unwrap();
    let d = deploy_now(&e, &caller, app).await;
    assert_eq!(d.status, Status::Failed);
    let reason = d.reason.unwrap_or_default();
    assert!(
        reason.starts_with("clone refused: localhost is a loopback, private"),
        "{reason}"
    );
}

/// An sshd on 127.0.0.1 serving this machine's git, for one test.
struct Sshd {
    _process: KillOnDrop,
}

fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen (openssh-client)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

impl Sshd {
    fn start(dir: &Path, port: u16, host_key: &Path) -> Self {
        assert!(
            Path::new("/usr/sbin/sshd").exists(),
            "this test needs sshd (openssh-server; make test installs it)"
        );
        std::fs::create_dir_all("/run/sshd").expect("/run/sshd (sshd's privilege separation directory)");
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nAuthorizedKeysFile {}\n\
                 StrictModes no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nAllowUsers {user}\n",
                host_key.display(),
                dir.join("sshd.pid").display(),
                dir.join("authorized_keys").display(),
            ),
        )
        .unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stderr(std::fs::File::create(dir.join(format!("sshd-{port}.log"))).unwrap())
            .spawn()
            .expect("sshd starts");
        let process = KillOnDrop(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Self { _process: process };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "sshd did not listen: {}",
            std::fs::read_to_string(dir.join(format!("sshd-{port}.log"))).unwrap_or_default()
        );
    }
}

#[tokio::test]
async fn an_ssh_host_key_is_pinned_at_the_first_clone_and_a_change_fails_until_an_admin_resets_it() {
    let env = FakeEnv::new().await;
    let e = env.engine();
    let (owner, env_id) = owner_with_environment(e).await;
    let dir = std::env::temp_dir().join(format!("berth-sshd-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    keygen(&dir.join("host_a"));
    keygen(&dir.join("host_b"));
    keygen(&dir.join("deploy"));
    std::fs::copy(dir.join("deploy.pub"), dir.join("authorized_keys")).unwrap();
    let deploy_key = std::fs::read_to_string(dir.join("deploy")).unwrap();
    let repo = GitRepo::new();
    repo.commit(&[("Dockerfile", "FROM scratch\n")], "first");
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let port = free_port();
    let url = format!("ssh://{user}@127.0.0.1:{port}{}", repo.dir.display());
    let app = apps::create(e, &owner, new_app(env_id, &url, Some(deploy_key)))
        .await
        .unwrap();

    // First clone: the key is learned and pinned.
    let sshd = Sshd::start(&dir, port, &dir.join("host_a"));
    assert!(!apps::host_key_pinned(e, &owner, app).await.unwrap());
    let d = deploy_now(e, &owner, app).await;
    assert_eq!(d.status, Status::Running, "{:?}", d.reason);
    assert!(apps::host_key_pinned(e, &owner, app).await.unwrap());
    let log = std::fs::read_to_string(engine::logs::log_path(e, app, d.id)).unwrap();
    assert!(log.contains("==> pinned the ssh host key of 127.0.0.1"), "{log}");
    // The deploy key never outlives the clone.
    assert!(!e
        .deploy
        .data_dir
        .join("work")
        .join(d.id.0.simple().to_string())
        .join("deploy_key")
        .exists());

    // The same server again: fine.
    let d = deploy_now(e, &owner, app).await;
    assert_eq!(d.status, Status::Running, "{:?}", d.reason);

    // Another host key at the same address (a replaced server, or someone in
    // the middle): refused, with the reason.
    drop(sshd);
    let sshd = Sshd::start(&dir, port, &dir.join("host_b"));
    let d = deploy_now(e, &owner, app).await;
    assert_eq!(d.status, Status::Failed);
    assert!(
        d.reason
            .as_deref()
            .unwrap_or("")
            .contains("not the one pinned at the first clone"),
        "{:?}",
        d.reason
    );

    // A member may not reset the pin; an admin may, and the next clone pins the new key.
    let member = Caller {
        role: Role::Member,
        ..owner.clone()
    };
    let refused = apps::reset_host_key(e, &member, app).await.unwrap_err();
    assert!(matches!(refused.kind(), ErrorKind::Forbidden(_)), "{refused:?}");
    apps::reset_host_key(e, &owner, app).await.unwrap();
    let d = deploy_now(e, &owner, app).await;
    assert_eq!(d.status, Status::Running, "{:?}", d.reason);
    assert!(apps::host_key_pinned(e, &owner, app).await.unwrap());
    drop(sshd);
    let _ = std::fs::remove_dir_all(&dir);
}
