//! The commands that manage Berth on its Docker host: `install`, `upgrade`,
//! and the database steps an upgrade runs inside the running Berth
//! (`admin backup-database`, `admin restore-database --file`). The work is
//! `engine::install`'s; this checks the arguments and reports.

use anyhow::Context;
use engine::config::{self, DatabaseConfig, DockerConfig};
use engine::docker::BollardDocker;
use secrecy::ExposeSecret;
use std::path::Path;
use std::time::Duration;

#[derive(clap::Args)]
pub struct InstallArgs {
    /// The dashboard's host name (DNS pointing at this server), served through Traefik.
    #[arg(long)]
    host: String,
    #[arg(long, default_value = concat!("berth:", env!("CARGO_PKG_VERSION")))]
    image: String,
    #[arg(long, default_value = "postgres:16")]
    postgres_image: String,
    #[arg(long, default_value = "redis:7")]
    redis_image: String,
    #[arg(long, default_value = "traefik:v3.3")]
    traefik_image: String,
    /// Names the containers, network and volumes.
    #[arg(long, default_value = "berth")]
    instance: String,
    /// A directory on this host, mounted into Berth at the same path.
    #[arg(long, default_value = "/var/lib/berth")]
    data_dir: std::path::PathBuf,
    #[arg(long, default_value = "/var/run/docker.sock")]
    docker_socket: std::path::PathBuf,
    /// How the dashboard gets its certificate: http, tls, dns, or none (HTTP only).
    #[arg(long, default_value = "http")]
    dashboard_cert: String,
    #[arg(long, default_value = "0.0.0.0")]
    bind: String,
    #[arg(long, default_value_t = 80)]
    http_port: u16,
    #[arg(long, default_value_t = 443)]
    https_port: u16,
    /// More configuration for Berth's container, NAME=value (repeatable).
    #[arg(long = "env")]
    env: Vec<String>,
    /// Print what would be done, and do nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(clap::Args)]
pub struct UpgradeArgs {
    /// The image to move to (its migrations run first).
    #[arg(long)]
    image: String,
    /// The installation's data directory (where `berth install` keeps its options).
    #[arg(long, default_value = "/var/lib/berth")]
    data_dir: std::path::PathBuf,
    /// Seconds the new Berth may take to report healthy.
    #[arg(long, default_value_t = 180)]
    health_timeout: u64,
    /// Seconds the old Berth gets to finish what it serves.
    #[arg(long, default_value_t = 30)]
    drain: u64,
}

/// `berth install`: the arguments checked by their grammars, the plan applied
/// (or printed), then Berth's health awaited and the URL and setup token shown.
pub async fn install(a: InstallArgs) -> anyhow::Result<()> {
    let bad = |field: &str, why: String| anyhow::anyhow!("--{field}: {why}");
    let name_ok = a.instance.len() <= 40
        && a.instance.starts_with(|c: char| c.is_ascii_lowercase())
        && a.instance
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-');
    anyhow::ensure!(
        name_ok,
        bad("instance", "lower-case letters, digits and '-' (at most 40)".into())
    );
    let host = engine::apps::spec::DomainName::parse(&a.host).map_err(|e| bad("host", e.message))?;
    for (field, image) in [
        ("image", &a.image),
        ("postgres-image", &a.postgres_image),
        ("redis-image", &a.redis_image),
        ("traefik-image", &a.traefik_image),
    ] {
        engine::apps::spec::parse_image("image", image).map_err(|e| bad(field, e.message))?;
    }
    anyhow::ensure!(
        ["http", "tls", "dns", "none"].contains(&a.dashboard_cert.as_str()),
        bad("dashboard-cert", "http, tls, dns or none".into())
    );
    anyhow::ensure!(a.data_dir.is_absolute(), bad("data-dir", "an absolute path".into()));
    let _: std::net::IpAddr = a.bind.parse().map_err(|_| bad("bind", "an IP address".into()))?;
    for e in &a.env {
        let ok = e.split_once('=').is_some_and(|(n, v)| {
            !n.is_empty()
                && n.bytes()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_')
                && !v.contains('\0')
        });
        anyhow::ensure!(ok, bad("env", format!("{e:?} is not NAME=value")));
    }
    let o = engine::install::InstallOptions {
        instance: a.instance,
        image: a.image,
        postgres_image: a.postgres_image,
        redis_image: a.redis_image,
        traefik_image: a.traefik_image,
        data_dir: a.data_dir,
        docker_socket: a.docker_socket,
        host: host.as_str().to_owned(),
        dashboard_cert: a.dashboard_cert,
        bind: a.bind,
        http_port: a.http_port,
        https_port: a.https_port,
        env: a.env,
    };
    let docker = BollardDocker::new(&DockerConfig::from_env()?);
    let done = engine::install::install(&docker, &o, a.dry_run).await?;
    for d in &done {
        println!("{}: {}", d.what, d.outcome);
    }
    if a.dry_run {
        return Ok(());
    }
    engine::install::wait_healthy(&docker, &o.instance, std::time::Duration::from_secs(180))
        .await
        .map_err(|e| anyhow::anyhow!("waiting for Berth to be healthy: {e}"))?;
    println!("Berth is up: {}", o.public_url());
    match engine::install::setup_token(&docker, &o).await? {
        Some(token) => println!("Setup token (for the first account, once): {token}"),
        None => println!("Onboarding is done: sign in with an existing account."),
    }
    Ok(())
}

/// `berth upgrade`: each step said as it starts; a failure names its step,
/// what was undone, and exits non-zero.
pub async fn upgrade(a: UpgradeArgs) -> anyhow::Result<()> {
    engine::apps::spec::parse_image("image", &a.image).map_err(|e| anyhow::anyhow!("--image: {}", e.message))?;
    anyhow::ensure!(a.data_dir.is_absolute(), "--data-dir: an absolute path");
    let u = engine::install::upgrade::UpgradeOptions {
        data_dir: a.data_dir,
        image: a.image,
        health_timeout: Duration::from_secs(a.health_timeout),
        drain: Duration::from_secs(a.drain),
    };
    let docker = BollardDocker::new(&DockerConfig::from_env()?);
    let done = engine::install::upgrade::upgrade(&docker, &u, &mut |step| println!("... {step}")).await?;
    println!("Berth's database was backed up to {}", done.backup.display());
    if done.migrated {
        println!("Migrations changed the schema.");
    }
    println!("Upgraded from {} to {}.", done.from, done.to);
    Ok(())
}

/// `berth admin backup-database --file`: a new 0600 file (never over an
/// existing one), removed again when the dump fails.
pub async fn backup_database(file: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let url = DatabaseConfig::from_env()?.url;
    let pg_dump = config::ServicesConfig::from_env()?.pg_dump;
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .with_context(|| format!("creating {}", file.display()))?;
    let mut out = tokio::fs::File::from_std(out);
    let dumped = engine::backups::own::dump(&pg_dump, url.expose_secret(), &mut out).await;
    let synced = out.sync_all().await;
    if let Err(e) = dumped.map_err(|e| anyhow::anyhow!(e)).and(synced.map_err(Into::into)) {
        let _ = std::fs::remove_file(file);
        return Err(e.context("dumping Berth's database"));
    }
    let bytes = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    println!("Berth's database: {bytes} bytes in {}", file.display());
    Ok(())
}

/// `berth admin restore-database --file`.
pub async fn restore_file(file: &Path) -> anyhow::Result<()> {
    let url = DatabaseConfig::from_env()?.url;
    let pg_restore = config::ServicesConfig::from_env()?.pg_restore;
    engine::backups::own::restore_file(&pg_restore, url.expose_secret(), file)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    println!("Restored Berth's database from {}.", file.display());
    Ok(())
}

/// The S3 copy of `backup-database`, when a schedule names a destination.
pub async fn backup_to_s3(engine: &engine::Engine) -> anyhow::Result<()> {
    match engine::backups::own_to_s3_now(engine, Duration::from_secs(1800)).await {
        Ok(Some(key)) => println!("and to S3: {key}"),
        Ok(None) => {}
        Err(e) => anyhow::bail!(e),
    }
    Ok(())
}
