//! The `berth` binary: `serve` (default), `worker`, `migrate`, `healthcheck`,
//! `install`, `upgrade`, `uninstall` (in `host`), and the `admin` tasks.

use anyhow::Context;
use axum::serve::ListenerExt;
use clap::{Parser, Subcommand};
use engine::config::{self, DatabaseConfig, DeployConfig, DockerConfig, Mode, RedisConfig, SecretConfig};
use engine::docker::BollardDocker;
use engine::{db, kv::Kv, names::Email, Engine};
use secrecy::ExposeSecret;
use server::config::{LogConfig, ServerConfig};
use std::net::SocketAddr;
use std::sync::Arc;

/// jemalloc, with a background thread that hands freed pages back to the
/// system ~10 s after their last use (`.cargo/config.toml`). With glibc's
/// malloc a burst's memory stayed (about 70 MiB above idle a minute after
/// 15 s at 1,000 req/s: freed chunks between live ones, which only
/// `malloc_trim` returns), and each request took more server CPU (1.32
/// against 1.14 ms at 200 req/s, 1.38 against 0.95 ms at 1,000; docs/BENCHMARKS.md,
/// "Memory after load, and under overload").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod client;
mod host;
use host::{InstallArgs, UpgradeArgs};

/// Berth: a self-hosted platform-as-a-service. Configuration comes from the
/// environment (see README.md: DATABASE_URL, REDIS_URL, BERTH_SECRET_KEY, ...).
#[derive(Parser)]
#[command(name = "berth", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// How the client commands print: text, or the API's JSON.
    #[arg(long, global = true, value_enum, default_value = "text")]
    output: client::Output,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the web UI and API (the default), with the deploy worker in the same
    /// process unless BERTH_WORKER=off. Applies pending migrations first.
    Serve,
    /// Run only the workers: deployments, and backups/restores/drills with their
    /// schedules (each claims queued work and recovers interrupted work). Any
    /// number may run beside `serve`.
    Worker,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Ask the `berth serve` on BERTH_LISTEN for `/health`: exit 0 when it
    /// answers 200 (a container's health check; no shell or curl needed).
    Healthcheck,
    /// Install Berth on this Docker host: its network and volumes, PostgreSQL,
    /// Redis (with AOF) and Berth as containers with restart policies (Berth's
    /// worker then runs Traefik), secrets generated once into 0600 files under
    /// the data directory. Running it again changes nothing.
    Install(InstallArgs),
    /// Move an installed Berth to another image without downtime: its
    /// database backed up, migrations from the new image, the new Berth beside
    /// the old, the dashboard's route moved once it is healthy, the old one
    /// stopped. A failed step leaves the old Berth serving (docs/INSTALL.md).
    Upgrade(UpgradeArgs),
    /// Remove the instance's containers (apps and databases included) and
    /// networks; volumes and the data directory stay unless --purge.
    Uninstall {
        #[arg(long, default_value = "berth")]
        instance: String,
        #[arg(long, default_value = "/var/lib/berth")]
        data_dir: std::path::PathBuf,
        #[arg(long)]
        purge: bool,
    },
    /// Client: sign in to a Berth's API with an API key (read from standard
    /// input or BERTH_API_KEY) and keep both, mode 0600, in
    /// ~/.config/berth/cli.json for the commands below.
    Login {
        /// The Berth to use, e.g. https://berth.example.com
        #[arg(long)]
        url: String,
    },
    /// Client: forget the stored URL and key.
    Logout,
    /// Client: list the organization's projects.
    Projects,
    /// Client: list applications with their latest deployment's status.
    Apps {
        /// Only this project's (name or ID).
        #[arg(long)]
        project: Option<String>,
    },
    /// Client: deploy an application (by name or ID); with --wait, stream the
    /// build log and exit non-zero with the reason if it does not go live.
    Deploy {
        app: String,
        /// The project, when two projects have an app of that name.
        #[arg(long)]
        project: Option<String>,
        #[arg(long)]
        wait: bool,
    },
    /// Client: an application's variables.
    Env {
        #[command(subcommand)]
        command: client::EnvCommand,
    },
    /// Client: an application's output (its live container's stdout and stderr).
    Logs {
        app: String,
        #[arg(long)]
        project: Option<String>,
        /// Keep printing what it writes next, until interrupted.
        #[arg(long, short)]
        follow: bool,
        /// Lines from the end to start with.
        #[arg(long, default_value_t = 200)]
        tail: u32,
    },
    /// Operator tasks.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Print the one-time setup token while onboarding is open (nothing after).
    SetupToken,
    /// Set a new random password for a user, sign out all their sessions, and print it.
    ResetPassword { email: String },
    /// Dump Berth's own database (DATABASE_URL) into a new file (mode 0600),
    /// and to S3 as well when an own-database backup schedule names a
    /// destination (`berth upgrade` runs this first).
    BackupDatabase {
        #[arg(long)]
        file: std::path::PathBuf,
    },
    /// Print a fingerprint of the database's schema (migrations, tables,
    /// columns, indexes, constraints): what `berth upgrade` compares.
    SchemaState,
    /// Restore Berth's own database (DATABASE_URL) from a backup object in S3
    /// (best into an empty database; see docs/OPERATIONS.md; the S3
    /// credentials are read from S3_ACCESS_KEY and S3_SECRET_KEY, never from
    /// the command line), or with --file from a `backup-database` file, which
    /// replaces the whole schema in one transaction.
    RestoreDatabase {
        #[arg(long, conflicts_with_all = ["endpoint", "bucket", "key"])]
        file: Option<std::path::PathBuf>,
        /// e.g. https://s3.eu-west-1.amazonaws.com or http://127.0.0.1:9000
        #[arg(long, required_unless_present = "file")]
        endpoint: Option<String>,
        #[arg(long, required_unless_present = "file")]
        bucket: Option<String>,
        /// The object key, e.g. backups/berth/20261127T030000.000Z.pgdump.gz
        #[arg(long, required_unless_present = "file")]
        key: Option<String>,
        #[arg(long, default_value = "us-east-1")]
        region: String,
        /// Address the bucket in the path (MinIO and most S3-compatible servers).
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        path_style: bool,
    },
}

fn init_tracing(log: &LogConfig) {
    let filter = tracing_subscriber::EnvFilter::new(&log.filter);
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if log.json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// The engine, and the previous secret key when the operator is rotating it.
fn build_engine(db_config: &DatabaseConfig) -> anyhow::Result<(Engine, Option<engine::secrets::SecretKey>)> {
    let mode = Mode::from_env()?;
    let data_dir = config::data_dir_from_env();
    let secrets = SecretConfig::from_env(mode, &data_dir)?;
    let engine = Engine::new(
        db::pool(db_config)?,
        Kv::new(&RedisConfig::from_env()?)?,
        Arc::new(BollardDocker::new(&DockerConfig::from_env()?)),
        secrets.key,
    )
    .with_deploy(DeployConfig::from_env()?);
    Ok((engine, secrets.previous))
}

/// Runs the job runner (deployments, backups, restores, drills) until
/// `shutdown`, then gives running jobs up to 30 s to finish (whatever is left
/// is recovered by the next worker's reaper).
async fn worker(engine: Engine, shutdown: tokio_util::sync::CancellationToken) {
    let jobs = tokio::spawn(engine::worker::run(engine, shutdown.clone()));
    shutdown.cancelled().await;
    if tokio::time::timeout(std::time::Duration::from_secs(30), jobs)
        .await
        .is_err()
    {
        tracing::warn!("jobs still running at shutdown; the next worker will recover them");
    }
}

async fn restore_database(
    endpoint: &str,
    bucket: &str,
    key: &str,
    region: &str,
    path_style: bool,
) -> anyhow::Result<()> {
    use engine::backups::{own, s3};
    let invalid = |e: engine::names::ValidationError| anyhow::anyhow!("{}: {}", e.field, e.message);
    let env = |name: &str| std::env::var(name).with_context(|| format!("{name} is not set"));
    let target = s3::Target {
        endpoint: s3::parse_endpoint(endpoint).map_err(invalid)?,
        region: s3::parse_region(region).map_err(invalid)?,
        bucket: s3::parse_bucket(bucket).map_err(invalid)?,
        prefix: String::new(),
        access_key: s3::parse_access_key(&env("S3_ACCESS_KEY")?).map_err(invalid)?,
        secret_key: s3::parse_secret_key(&env("S3_SECRET_KEY")?).map_err(invalid)?,
        path_style,
        // The operator's own command line: any endpoint they name.
        pinned: false,
    };
    let url = env("DATABASE_URL")?;
    let pg_restore = config::ServicesConfig::from_env()?.pg_restore;
    let bytes = own::restore(&pg_restore, &url, &target, key)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    println!("Restored {bytes} bytes of dump from s3://{}/{key}.", target.bucket);
    println!("Start Berth with the same BERTH_SECRET_KEY: sealed secrets need it.");
    Ok(())
}

/// Migrations need PostgreSQL; wait for it briefly (it may be starting beside us).
async fn migrate(db_config: &DatabaseConfig) -> anyhow::Result<()> {
    let mut attempt = 0;
    loop {
        match db::migrate(db_config.url.expose_secret()).await {
            Ok(applied) => {
                for v in &applied {
                    tracing::info!(migration = %v, "applied migration");
                }
                return Ok(());
            }
            Err(e) if attempt < 30 => {
                attempt += 1;
                tracing::warn!(error = %e, "database not ready; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e).context("applying migrations"),
        }
    }
}

/// What every long-running process does after the migrations: reseal values an
/// earlier Berth sealed unbound, or under the previous key (once; a later start
/// finds none).
async fn prepare(engine: &Engine, previous: Option<&engine::secrets::SecretKey>) -> anyhow::Result<()> {
    let mut conn = engine.db.get().await.context("connecting to PostgreSQL")?;
    engine::reseal::reseal(&mut conn, &engine.secret, previous)
        .await
        .context("resealing secrets")?;
    engine::apps::backfill_repo_keys(&mut conn)
        .await
        .context("indexing git repositories for webhooks")?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: finishing in-flight requests");
}

async fn serve() -> anyhow::Result<()> {
    let db_config = DatabaseConfig::from_env()?;
    let server_config = ServerConfig::from_env()?;
    let (engine, previous) = build_engine(&db_config)?;
    migrate(&db_config).await?;
    prepare(&engine, previous.as_ref()).await?;
    // A new version or release is told to the channels that chose upgrades, once.
    let running = match &server_config.release {
        Some(r) => format!("{} ({r})", env!("CARGO_PKG_VERSION")),
        None => env!("CARGO_PKG_VERSION").to_owned(),
    };
    match engine::notify::upgraded(&engine, &running).await {
        Ok(Some(from)) => tracing::info!(from, to = running, "Berth upgraded"),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "recording the running release"),
    }
    let listen = server_config.listen;
    let stop = tokio_util::sync::CancellationToken::new();
    let worker_task = server_config
        .worker
        .then(|| tokio::spawn(worker(engine.clone(), stop.clone())));
    let state_engine = engine.clone();
    let server_config_public = server_config.public_url.clone();
    let state = server::AppState::new(engine, server_config);
    let app = server::router(state);
    // TCP_NODELAY: pages stream in several chunks, and Nagle's algorithm would hold
    // the later ones for the client's delayed ACK (a ~40 ms stall; docs/BENCHMARKS.md).
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?
        .tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::warn!(error = %e, "could not set TCP_NODELAY");
            }
        });
    tracing::info!("Berth listening on http://{listen}");
    // A fresh instance is claimed with a token only whoever reads this log has.
    if let Some(token) = engine::accounts::setup_token(&state_engine).await? {
        let base = server_config_public.unwrap_or_else(|| format!("http://{listen}"));
        tracing::warn!("setup token: {token} (onboarding needs it: {base}/onboarding?token={token})");
    }
    let stopping = stop.clone();
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            stopping.cancel();
        })
        .await?;
    stop.cancel();
    if let Some(w) = worker_task {
        let _ = w.await;
    }
    Ok(())
}

async fn worker_only() -> anyhow::Result<()> {
    let db_config = DatabaseConfig::from_env()?;
    let (engine, previous) = build_engine(&db_config)?;
    migrate(&db_config).await?;
    prepare(&engine, previous.as_ref()).await?;
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(worker(engine, stop.clone()));
    shutdown_signal().await;
    stop.cancel();
    let _ = task.await;
    Ok(())
}

/// `GET /health` on this host's `berth serve` (an unspecified listen address
/// is asked on loopback), with the Host it answers to.
async fn healthcheck() -> anyhow::Result<()> {
    let config = ServerConfig::from_env()?;
    let mut addr = config.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            [127, 0, 0, 1].into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let host = addr.to_string();
    let reply = engine::http1::request(
        &addr.ip().to_string(),
        addr.port(),
        "GET",
        &host,
        "/health",
        std::time::Duration::from_secs(3),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{addr}/health: {e}"))?;
    anyhow::ensure!(
        reply.status == 200,
        "{addr}/health answered {}: {}",
        reply.status,
        reply.body.trim()
    );
    println!("{}", reply.body.trim());
    Ok(())
}

/// Errors end the process with one line on standard error (the variable or step
/// at fault, never a backtrace) and a non-zero status: 2 for configuration.
fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let log = match LogConfig::from_env() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("berth: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    init_tracing(&log);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {e:#}");
            if e.downcast_ref::<config::ConfigError>().is_some() {
                std::process::ExitCode::from(2)
            } else {
                std::process::ExitCode::FAILURE
            }
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let output = cli.output;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Login { url } => client::login(&url).await,
        Command::Logout => client::logout(),
        Command::Projects => client::projects(output).await,
        Command::Apps { project } => client::apps(project.as_deref(), output).await,
        Command::Deploy { app, project, wait } => client::deploy(&app, project.as_deref(), wait, output).await,
        Command::Env { command } => client::env(command, output).await,
        Command::Logs {
            app,
            project,
            follow,
            tail,
        } => client::logs(&app, project.as_deref(), follow, tail, output).await,
        Command::Serve => serve().await,
        Command::Worker => worker_only().await,
        Command::Migrate => migrate(&DatabaseConfig::from_env()?).await,
        Command::Healthcheck => healthcheck().await,
        Command::Install(args) => host::install(args).await,
        Command::Upgrade(args) => host::upgrade(args).await,
        Command::Uninstall {
            instance,
            data_dir,
            purge,
        } => {
            let docker = BollardDocker::new(&DockerConfig::from_env()?);
            let done = engine::install::uninstall(&docker, &instance, Some(&data_dir), purge).await?;
            for d in done {
                println!("{}: {}", d.what, d.outcome);
            }
            Ok(())
        }
        Command::Admin {
            command: AdminCommand::SetupToken,
        } => {
            let (engine, _) = build_engine(&DatabaseConfig::from_env()?)?;
            if let Some(token) = engine::accounts::setup_token(&engine).await? {
                println!("{token}");
            }
            Ok(())
        }
        Command::Admin {
            command: AdminCommand::ResetPassword { email },
        } => {
            let email = Email::parse(&email).map_err(|e| anyhow::anyhow!("{e}"))?;
            let (engine, _) = build_engine(&DatabaseConfig::from_env()?)?;
            let password = engine::accounts::reset_password(&engine, &email).await?;
            println!("New password for {email}: {password}");
            println!("All of their sessions were signed out.");
            Ok(())
        }
        Command::Admin {
            command: AdminCommand::BackupDatabase { file },
        } => {
            host::backup_database(&file).await?;
            let (engine, _) = build_engine(&DatabaseConfig::from_env()?)?;
            host::backup_to_s3(&engine).await
        }
        Command::Admin {
            command: AdminCommand::SchemaState,
        } => {
            let url = DatabaseConfig::from_env()?.url;
            println!("{}", db::schema_state(url.expose_secret()).await?);
            Ok(())
        }
        Command::Admin {
            command: AdminCommand::RestoreDatabase { file: Some(file), .. },
        } => host::restore_file(&file).await,
        Command::Admin {
            command:
                AdminCommand::RestoreDatabase {
                    endpoint: Some(endpoint),
                    bucket: Some(bucket),
                    key: Some(key),
                    region,
                    path_style,
                    ..
                },
        } => restore_database(&endpoint, &bucket, &key, &region, path_style).await,
        Command::Admin {
            command: AdminCommand::RestoreDatabase { .. },
        } => anyhow::bail!("restore-database: --file, or --endpoint, --bucket and --key"),
    }
}
