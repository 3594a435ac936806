//! `berth`'s client commands: a command line over the REST API of any Berth
//! (`login`, `projects`, `apps`, `deploy`, `env`, `logs`). Each is one or a
//! few API calls; what a name means (an app by name or ID) is resolved from
//! the API's own lists. `--output json` prints what the API answered.

mod api;

use anyhow::{bail, Context};
use api::{Api, Stored};
use clap::{Subcommand, ValueEnum};
use futures::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use std::io::Write;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    /// For people.
    #[default]
    Text,
    /// The API's JSON, one document (or one event per line when streaming).
    Json,
}

#[derive(Subcommand)]
pub enum EnvCommand {
    /// Print an application's variables with their values (`.env` lines).
    Get {
        /// The application's name or ID.
        app: String,
        /// The project, when two projects have an app of that name.
        #[arg(long)]
        project: Option<String>,
    },
    /// Set variables from a `.env` file (`-`: standard input), keeping the
    /// others; with --replace, the file's become the only ones. Applied at the
    /// next deploy.
    Set {
        app: String,
        #[arg(long)]
        project: Option<String>,
        /// The `.env` file (NAME=value lines; quotes, `export ` and comments as usual).
        #[arg(long)]
        file: std::path::PathBuf,
        /// Remove the variables the file does not name.
        #[arg(long)]
        replace: bool,
    },
}

/// Signs in for the other client commands: checks the key against `url` and
/// stores both, readable by you only. The key is read from standard input (or
/// BERTH_API_KEY), never from the command line.
pub async fn login(url: &str) -> anyhow::Result<()> {
    let key = match std::env::var("BERTH_API_KEY").ok().filter(|k| !k.trim().is_empty()) {
        Some(k) => k,
        None => {
            eprint!("API key (Settings → API keys): ");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line
        }
    };
    let key = key.trim().to_owned();
    let api = Api::new(url, &key)?;
    api.get("/projects?limit=1")
        .await
        .context("the key does not work there")?;
    let path = api::store(&Stored {
        url: url.trim().trim_end_matches('/').to_owned(),
        key,
    })?;
    println!("logged in to {url} (stored in {})", path.display());
    Ok(())
}

/// Forgets the stored URL and key.
pub fn logout() -> anyhow::Result<()> {
    let path = api::config_path()?;
    match std::fs::remove_file(&path) {
        Ok(()) => println!("logged out ({} removed)", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => println!("not logged in"),
        Err(e) => return Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
    Ok(())
}

fn print_json(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Lists the organization's projects.
pub async fn projects(output: Output) -> anyhow::Result<()> {
    let api = Api::from_env()?;
    let items = api.all("/projects").await?;
    if output == Output::Json {
        return print_json(&Value::Array(items));
    }
    println!("{:<32} {:>12}  ID", "PROJECT", "ENVIRONMENTS");
    for p in items {
        println!(
            "{:<32} {:>12}  {}",
            p["name"].as_str().unwrap_or(""),
            p["environments"],
            p["id"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

/// Every app (of one project, or of all), each with its project's name.
async fn all_apps(api: &Api, project: Option<&str>) -> anyhow::Result<Vec<(String, Value)>> {
    let projects = api.all("/projects").await?;
    let chosen: Vec<&Value> = projects
        .iter()
        .filter(|p| project.is_none_or(|want| p["name"] == want || p["id"] == want))
        .collect();
    if let (Some(want), true) = (project, chosen.is_empty()) {
        bail!("no project named {want}");
    }
    let mut out = vec![];
    for p in chosen {
        let pid = p["id"].as_str().unwrap_or_default();
        for a in api.all(&format!("/projects/{pid}/apps")).await? {
            out.push((p["name"].as_str().unwrap_or_default().to_owned(), a));
        }
    }
    Ok(out)
}

/// Lists applications with their latest deployment's status.
pub async fn apps(project: Option<&str>, output: Output) -> anyhow::Result<()> {
    let api = Api::from_env()?;
    let apps = all_apps(&api, project).await?;
    if output == Output::Json {
        let list: Vec<Value> = apps
            .into_iter()
            .map(|(p, mut a)| {
                a["project"] = json!(p);
                a
            })
            .collect();
        return print_json(&Value::Array(list));
    }
    println!("{:<24} {:<24} {:<16} {:<32} ID", "PROJECT", "APP", "STATUS", "DOMAIN");
    for (p, a) in apps {
        println!(
            "{:<24} {:<24} {:<16} {:<32} {}",
            p,
            a["name"].as_str().unwrap_or(""),
            a["status"].as_str().unwrap_or("never deployed"),
            a["domain"].as_str().unwrap_or("-"),
            a["id"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

/// An app's ID from its ID or its name (unique, or within `project`).
async fn app_id(api: &Api, app: &str, project: Option<&str>) -> anyhow::Result<String> {
    if uuid::Uuid::parse_str(app).is_ok() {
        return Ok(app.to_owned());
    }
    let found: Vec<(String, Value)> = all_apps(api, project)
        .await?
        .into_iter()
        .filter(|(_, a)| a["name"] == app)
        .collect();
    match found.as_slice() {
        [] => bail!("no application named {app}"),
        [(_, a)] => Ok(a["id"].as_str().unwrap_or_default().to_owned()),
        many => bail!(
            "{app} is in {} projects ({}): add --project",
            many.len(),
            many.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// Queues a deployment; with `wait`, streams its log and ends when it does:
/// successfully when it went live, with its reason otherwise.
pub async fn deploy(app: &str, project: Option<&str>, wait: bool, output: Output) -> anyhow::Result<()> {
    let api = Api::from_env()?;
    let aid = app_id(&api, app, project).await?;
    let queued = api
        .call(Method::POST, &format!("/apps/{aid}/deployments"), None)
        .await?;
    let did = queued["id"].as_str().unwrap_or_default().to_owned();
    if !wait {
        return match output {
            Output::Json => print_json(&queued),
            Output::Text => {
                println!("deployment {did} queued");
                Ok(())
            }
        };
    }
    if output == Output::Text {
        eprintln!("deployment {did} queued; following its log");
    }
    let mut end: Option<Value> = None;
    let mut events = std::pin::pin!(api.events(&format!("/deployments/{did}/events")).await?);
    while let Some(event) = events.next().await {
        let (name, data) = event?;
        if output == Output::Json {
            println!("{}", json!({"event": name, "data": data}));
        }
        match name.as_str() {
            "line" if output == Output::Text => {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{data}")?;
            }
            "end" => {
                end = Some(serde_json::from_str(&data).unwrap_or(Value::Null));
                break;
            }
            _ => {}
        }
    }
    // The stream ended early (a proxy, a restart): the deployment's row says.
    let end = match end {
        Some(e) => e,
        None => loop {
            let d = api.get(&format!("/deployments/{did}")).await?;
            if d["finished"] == true {
                break d;
            }
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        },
    };
    let status = end["status"].as_str().unwrap_or("unknown");
    if status == "running" {
        if output == Output::Text {
            eprintln!("deployment {did} is live");
        }
        Ok(())
    } else {
        let reason = end["reason"].as_str().unwrap_or("no reason recorded");
        bail!("deployment {did} {status}: {reason}")
    }
}

pub async fn env(cmd: EnvCommand, output: Output) -> anyhow::Result<()> {
    let api = Api::from_env()?;
    match cmd {
        EnvCommand::Get { app, project } => {
            let aid = app_id(&api, &app, project.as_deref()).await?;
            let vars = api.get(&format!("/apps/{aid}/env")).await?;
            if output == Output::Json {
                return print_json(&vars);
            }
            for (k, v) in vars["vars"].as_object().into_iter().flatten() {
                println!("{}", engine::apps::spec::dotenv_line(k, v.as_str().unwrap_or("")));
            }
            Ok(())
        }
        EnvCommand::Set {
            app,
            project,
            file,
            replace,
        } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?
            };
            // The same parser as the application page's variables field.
            let given = engine::apps::spec::parse_dotenv(&text)
                .map_err(|e| anyhow::anyhow!("{}: {}", file.display(), e.message))?;
            let aid = app_id(&api, &app, project.as_deref()).await?;
            let mut vars = if replace {
                serde_json::Map::new()
            } else {
                api.get(&format!("/apps/{aid}/env")).await?["vars"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default()
            };
            let n = given.len();
            for (k, v) in given {
                vars.insert(k, Value::String(v));
            }
            api.call(Method::PUT, &format!("/apps/{aid}/env"), Some(&json!({ "vars": vars })))
                .await?;
            match output {
                Output::Json => print_json(&json!({"set": n, "total": vars.len()})),
                Output::Text => {
                    println!(
                        "{n} variables set ({} in all); they apply at the next deploy",
                        vars.len()
                    );
                    Ok(())
                }
            }
        }
    }
}

/// Prints the live container's output (the last `tail` lines), and with
/// `follow` what it writes next, until interrupted.
pub async fn logs(app: &str, project: Option<&str>, follow: bool, tail: u32, output: Output) -> anyhow::Result<()> {
    let api = Api::from_env()?;
    let aid = app_id(&api, app, project).await?;
    let mut events = std::pin::pin!(
        api.events(&format!("/apps/{aid}/logs?tail={tail}&follow={follow}"))
            .await?
    );
    while let Some(event) = events.next().await {
        let (stream, text) = event?;
        match output {
            Output::Json => println!("{}", json!({"stream": stream, "text": text})),
            Output::Text if stream == "stderr" => eprintln!("{text}"),
            Output::Text => println!("{text}"),
        }
    }
    Ok(())
}
