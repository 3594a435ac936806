//! Server functions for applications and their deployments.

// Server functions mirror their forms field for field.
#![allow(clippy::too_many_arguments)]

use crate::error::AppError;
use crate::types::{AppSummaryView, AppView, DeploymentPage, HooksView, MetricsView};
use leptos::prelude::*;
use uuid::Uuid;

#[cfg(feature = "ssr")]
use {
    super::edge::{self, fail},
    crate::types::{CertView, DeploymentView, DomainOptionsView, DomainView},
    engine::apps::domain_options::{CertSource, DomainOptions, OptionsForm},
    engine::apps::form::{RuntimeForm, SourceForm},
    engine::apps::spec::{self, AppName, HealthProbe},
    engine::apps::{self, NewApp, NewDomain},
    engine::deploy,
};

#[server(endpoint = "apps/list")]
pub async fn list_apps(project_id: String) -> Result<Vec<AppSummaryView>, AppError> {
    let (ctx, caller) = edge::caller().await?;
    let rows = apps::list_in_project(&ctx.engine, &caller, edge::id(&project_id)?)
        .await
        .map_err(fail)?;
    Ok(rows
        .into_iter()
        .map(|a| AppSummaryView {
            id: a.id.0,
            name: a.name,
            environment_id: a.environment_id.0,
            source: a.source_kind.to_owned(),
            status: a.status,
            domain: a.domain,
        })
        .collect())
}

#[allow(clippy::too_many_arguments)]
#[server(endpoint = "apps/create")]
pub async fn create_app(
    environment_id: String,
    name: String,
    source: String,
    image: String,
    repository: String,
    branch: String,
    build: String,
) -> Result<Uuid, AppError> {
    let (ctx, caller) = edge::caller().await?;
    let environment = edge::id(&environment_id)?;
    let name = AppName::parse(&name).map_err(fail)?;
    let form = SourceForm {
        kind: source,
        image,
        repository,
        branch,
        build_kind: build,
        ..Default::default()
    };
    let (source, _, build) = form.parse(ctx.engine.deploy.allow_local_sources).map_err(fail)?;
    let id = apps::create(
        &ctx.engine,
        &caller,
        NewApp::from_source(name, environment, source, build),
    )
    .await
    .map_err(fail)?;
    Ok(id.0)
}

#[server(endpoint = "apps/get")]
pub async fn get_app(id: String) -> Result<AppView, AppError> {
    let (ctx, caller) = edge::caller().await?;
    let app_id = edge::id(&id)?;
    let d = apps::get(&ctx.engine, &caller, app_id).await.map_err(fail)?;
    let host_key_pinned = apps::host_key_pinned(&ctx.engine, &caller, app_id)
        .await
        .map_err(fail)?;
    let a = d.app;
    let mut v = AppView {
        may: engine::access::powers(&caller, d.project_id.0).into(),
        id: a.id.0,
        name: a.name,
        project_id: d.project_id.0,
        project_name: d.project_name,
        environment_name: d.environment_name,
        has_secret: a.has_source_secret,
        host_key_pinned,
        domains: d.domains.into_iter().map(|x| domain_view(&ctx.engine, x)).collect(),
        env_names: d.env_names,
        live_deployment: a.live_deployment_id.map(|x| x.0),
        latest_deployment: deploy::list(&ctx.engine, &caller, a.id, 1)
            .await
            .map_err(fail)?
            .deployments
            .first()
            .map(|d| d.id.0),
        ..Default::default()
    };
    // The page's source form, filled in as the REST API's PATCH fills it.
    let f = engine::apps::form::SourceForm::of(&a.source, &a.build);
    (v.source, v.image, v.registry_user) = (f.kind, f.image, f.registry_user);
    (v.repository, v.branch, v.subdir) = (f.repository, f.branch, f.subdir);
    (v.build, v.dockerfile, v.context, v.target) = (f.build_kind, f.dockerfile, f.context, f.target);
    (v.build_args, v.static_dir) = (f.build_args, f.static_dir);
    let rt = a.runtime;
    v.port = rt.port;
    v.command = rt.command.map(|c| c.join("\n")).unwrap_or_default();
    v.cpu_millis = rt.cpu_millis.map(|x| x.to_string()).unwrap_or_default();
    v.memory_mb = rt.memory_mb.map(|x| x.to_string()).unwrap_or_default();
    v.restart = rt.restart.as_str().into();
    match rt.health.probe {
        HealthProbe::Tcp => v.health = "tcp".into(),
        HealthProbe::Http { path } => {
            v.health = "http".into();
            v.health_path = path;
        }
        HealthProbe::Command { argv } => {
            v.health = "command".into();
            v.health_command = argv.join("\n");
        }
    }
    v.health_interval_ms = rt.health.interval_ms;
    v.health_timeout_ms = rt.health.timeout_ms;
    v.health_retries = rt.health.retries;
    v.health_start_period_secs = rt.health.start_period_secs;
    v.volumes = rt
        .volumes
        .iter()
        .map(|x| format!("{}:{}{}\n", x.source, x.target, if x.read_only { ":ro" } else { "" }))
        .collect();
    v.drain_secs = rt.drain_secs;
    (v.problem, v.repairs) = super::repairs(&ctx.engine, &caller, Some(app_id.0), None).await?;
    Ok(v)
}

#[allow(clippy::too_many_arguments)]
#[server(endpoint = "apps/update_source")]
pub async fn update_source(
    id: String,
    source: String,
    image: String,
    registry_user: String,
    secret: String,
    clear_secret: Option<String>,
    repository: String,
    branch: String,
    subdir: String,
    build: String,
    dockerfile: String,
    context: String,
    target: String,
    build_args: String,
    static_dir: String,
) -> Result<(), AppError> {
    let (ctx, caller) = edge::caller().await?;
    let id = edge::id(&id)?;
    let form = SourceForm {
        kind: source,
        image,
        registry_user,
        secret,
        clear_secret: clear_secret.is_some(),
        repository,
        branch,
        subdir,
        build_kind: build,
        dockerfile,
        context,
        target,
        build_args,
        static_dir,
    };
    let (source, secret, build) = form.parse(ctx.engine.deploy.allow_local_sources).map_err(fail)?;
    apps::update_source(&ctx.engine, &caller, id, source, secret, build)
        .await
        .map_err(fail)
}

#[allow(clippy::too_many_arguments)]
#[server(endpoint = "apps/update_runtime")]
pub async fn update_runtime(
    id: String,
    port: String,
    command: String,
    cpu_millis: String,
    memory_mb: String,
    restart: String,
    health: String,
    health_path: String,
    health_command: String,
    health_interval_ms: String,
    health_timeout_ms: String,
    health_retries: String,
    health_start_period_secs: String,
    volumes: String,
    drain_secs: String,
) -> Result<(), AppError> {
    let (ctx, caller) = edge::caller().await?;
    let id = edge::id(&id)?;
    let runtime = RuntimeForm {
        port,
        command,
        cpu_millis,
        memory_mb,
        restart,
        health,
        health_path,
        health_command,
        health_interval_ms,
        health_timeout_ms,
        health_retries,
        health_start_period_secs,
        volumes,
        drain_secs,
    }
    .parse()
    .map_err(fail)?;
    apps::update_runtime(&ctx.engine, &caller, id, runtime)
        .await
        .map_err(fail)
}

/// The variables as `.env` text, values included (an explicit reveal).
#[server(endpoint = "apps/env")]
pub async fn reveal_env(id: String) -> Result<String, AppError> {
    let (ctx, caller) = edge::caller().await?;
    let vars = apps::env_values(&ctx.engine, &caller, edge::id(&id)?)
        .await
        .map_err(fail)?;
    Ok(vars
        .into_iter()
        .map(|(k, v)| spec::dotenv_line(&k, &v) + "\n")
        .collect())
}

/// The application's CPU, memory and network over `window` (`hour`, `day`, `week`).
#[server(endpoint = "apps/metrics")]
pub async fn app_metrics(id: String, window: String) -> Result<MetricsView, AppError> {
    let (ctx, caller) = edge::caller().await?;
    let window = engine::metrics::Window::parse(&window).map_err(fail)?;
    let series = engine::metrics::app_series(&ctx.engine, &caller, edge::id(&id)?, window)
        .await
        .map_err(fail)?;
    Ok(series.into())
}

#[server(endpoint = "apps/set_env")]
pub async fn set_env(id: String, dotenv: String) -> Result<(), AppError> {
    let (ctx, caller) = edge::caller().await?;
    let id = edge::id(&id)?;
    let vars = spec::parse_dotenv(&dotenv).map_err(fail)?;
    apps::set_env(&ctx.engine, &caller, id, vars).await.map_err(fail)
}

#[server(endpoint = "apps/add_domain")]
pub async fn add_domain(
    id: String,
    host: String,
    path_prefix: String,
    port: String,
    strip_prefix: Option<String>,
    https: Option<String>,
    #[server(default)] cert: String,
) -> Result<(), AppError> {
    let (ctx, caller) = edge::caller().await?;
    let id = edge::id(&id)?;
    let host = spec::DomainName::parse_route(&host).map_err(fail)?;
    let path_prefix = spec::parse_path_prefix(&path_prefix).map_err(fail)?;
    let cert = CertSource::parse(&cert).map_err(fail)?;
    let port = match port.trim() {
        "" => None,
        p => Some(p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
            fail(engine::names::ValidationError::new(
                "port",
                "must be a port number from 1 to 65535",
            ))
        })?),
    };
    engine::domains::add(
        &ctx.engine,
        &caller,
        id,
        NewDomain {
            host,
            path_prefix,
            strip_prefix: strip_prefix.is_some(),
            port,
            https: https.is_some(),
            cert,
            options: DomainOptions::default(),
        },
    )
    .await
    .map_err(fail)?;
    Ok(())
}

/// A domain's HTTPS and proxy options (the domain's settings form).
#[allow(clippy::too_many_arguments)]
#[server(endpoint = "apps/update_domain")]
pub async fn update_domain(
    id: String,
    https: Option<String>,
    #[server(default)] cert: String,
    redirect_https: Option<String>,
    #[server(default)] hsts_max_age: String,
    hsts_subdomains: Option<String>,
    #[server(default)] www: String,
    #[server(default)] basic_auth: String,
    #[server(default)] headers: String,
    compress: Option<String>,
    #[server(default)] rate_average: String,
    #[server(default)] rate_burst: String,
) -> Result<(), AppError> {
    let (ctx, caller) = edge::caller().await?;
    let id = edge::id(&id)?;
    let update = apps::DomainUpdate {
        https: https.is_some(),
        cert: CertSource::parse(&cert).map_err(fail)?,
        options: OptionsForm {
            redirect_https: redirect_https.is_some(),
            hsts_max_age,
            hsts_subdomains: hsts_subdomains.is_some(),
            www,
            basic_auth,
            headers,
            compress: compress.is_some(),
            rate_average,
            rate_burst,
        },
        // The page's form holds every field: what it sends is the whole state.
        expect: None,
    };
    engine::domains::update(&ctx.engine, &caller, id, update)
        .await
        .map_err(fail)?;
    Ok(())
}

/// Uploads a certificate chain and key for a domain; each failed check is a
/// 422 naming `certificate` or `key`, and nothing changes.
#[server(endpoint = "apps/upload_certificate")]
pub async fn upload_certificate(id: String, certificate: String, key: String) -> Result<(), AppError> {
    let (ctx, caller) = edge::caller().await?;
    let id = edge::id(&id)?;
    engine::domains::upload_certificate(&ctx.engine, &caller, id, &certificate, &key)
        .await
        .map_err(fail)?;
    Ok(())
}

#[server(endpoint = "apps/remove_domain")]
pub async fn remove_domain(id: String) -> Result<(), AppError> {
    let (ctx, caller) = edge::caller().await?;
    engine::domains::remove(&ctx.engine, &caller, edge::id(&id)?)
        .await
        .map_err(fail)?;
    Ok(())
}

/// The app's webhook URLs and secret; `None` to a caller whose role in the
/// project does not show them (a viewer), so the app page still loads.
#[server(endpoint = "apps/hooks")]
pub async fn get_hooks(id: String) -> Result<Option<HooksView>, AppError> {
    let (ctx, caller) = edge::caller().await?;
    let h = match apps::hooks(&ctx.engine, &caller, edge::id(&id)?).await {
        Err(apps::AppError::Forbidden(_)) => return Ok(None),
        other => other.map_err(fail)?,
    };
    let base = edge::public_base(&ctx);
    Ok(Some(HooksView {
        github_url: format!("{base}/api/webhooks/github"),
        github_secret: h.github_secret,
        deploy_url: format!("{base}/api/webhooks/deploy/{}", h.deploy_token),
    }))
}

#[server(endpoint = "apps/rotate_hooks")]
pub async fn rotate_hooks(id: String) -> Result<(), AppError> {
    let (ctx, caller) = edge::caller().await?;
    apps::rotate_hooks(&ctx.engine, &caller, edge::id(&id)?)
        .await
        .map_err(fail)
}

/// Forgets the ssh host key pinned at the first clone (admins and owners).
#[server(endpoint = "apps/reset_host_key")]
pub async fn reset_host_key(id: String) -> Result<(), AppError> {
    let (ctx, caller) = edge::caller().await?;
    apps::reset_host_key(&ctx.engine, &caller, edge::id(&id)?)
        .await
        .map_err(fail)
}

/// Deletes the app; its named volumes too when `remove_volumes` is checked.
#[server(endpoint = "apps/delete")]
pub async fn delete_app(id: String, remove_volumes: Option<String>) -> Result<(), AppError> {
    let (ctx, caller) = edge::caller().await?;
    apps::delete(&ctx.engine, &caller, edge::id(&id)?, edge::checked(&remove_volumes))
        .await
        .map_err(fail)
}

#[server(endpoint = "deployments/create")]
pub async fn deploy_app(app_id: String) -> Result<Uuid, AppError> {
    let (ctx, caller) = edge::caller().await?;
    Ok(deploy::deploy(&ctx.engine, &caller, edge::id(&app_id)?)
        .await
        .map_err(fail)?
        .0)
}

/// A page of the deployment history (`after`: the `next` of the previous page).
#[server(endpoint = "deployments/list")]
pub async fn list_deployments(app_id: String, after: Option<String>) -> Result<DeploymentPage, AppError> {
    let (ctx, caller) = edge::caller().await?;
    let app = edge::id(&app_id)?;
    // A cursor that does not parse is a bad request for the first page's sake, not an error.
    let after = after.as_deref().and_then(deploy::Cursor::decode);
    let history = deploy::list_page(&ctx.engine, &caller, app, after, 30)
        .await
        .map_err(fail)?;
    let live = history.live;
    let stamp = crate::types::stamp;
    Ok(DeploymentPage {
        next: history.next.map(|c| c.encode()),
        deployments: history
            .deployments
            .into_iter()
            .map(|d| {
                let live = live == Some(d.id);
                DeploymentView {
                    id: d.id.0,
                    can_rollback: d.status.went_live() && !live && !d.image_pruned && d.image.is_some(),
                    live,
                    reason: d.reason,
                    trigger: d.trigger,
                    trigger_detail: d.trigger_detail,
                    commit: d.commit_sha,
                    created_at: stamp(d.created_at),
                    duration_secs: d.finished_at.map(|f| (f - d.created_at).num_seconds()),
                    rollback_of: d.rollback_of.map(|r| r.0),
                    superseded: d.superseded_at.map(|at| (stamp(at), d.superseded_by.map(|b| b.0))),
                    status: d.status,
                }
            })
            .collect(),
    })
}

#[server(endpoint = "deployments/cancel")]
pub async fn cancel_deployment(id: String) -> Result<(), AppError> {
    let (ctx, caller) = edge::caller().await?;
    deploy::cancel(&ctx.engine, &caller, edge::id(&id)?).await.map_err(fail)
}

#[server(endpoint = "deployments/rollback")]
pub async fn rollback_deployment(id: String) -> Result<Uuid, AppError> {
    let (ctx, caller) = edge::caller().await?;
    Ok(deploy::rollback(&ctx.engine, &caller, edge::id(&id)?)
        .await
        .map_err(fail)?
        .0)
}

/// A domain as the app page shows it.
#[cfg(feature = "ssr")]
fn domain_view(engine: &engine::Engine, x: apps::Domain) -> DomainView {
    let now = chrono::Utc::now();
    let date = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
    let form = x.options().to_form();
    let options = DomainOptionsView {
        redirect_https: form.redirect_https,
        hsts_max_age: form.hsts_max_age,
        hsts_subdomains: form.hsts_subdomains,
        www: form.www,
        basic_auth_users: form.basic_auth,
        headers: form.headers,
        compress: form.compress,
        rate_average: form.rate_average,
        rate_burst: form.rate_burst,
    };
    let cert = x.https.then(|| CertView {
        source: x.cert.clone(),
        status: x.cert_status.clone(),
        issuer: x.cert_issuer.clone(),
        not_after: x.cert_not_after.map(date),
        // Let's Encrypt renews 30 days ahead: 21 days left means renewal failed.
        expiring: x.cert_not_after.is_some_and(|t| t - now < chrono::Duration::days(21)),
        error: x.cert_error.clone(),
        retry_at: x.cert_retry_at.filter(|t| *t > now).map(date),
    });
    DomainView {
        url: public_url(engine, &x.host, x.https, &x.path_prefix),
        id: x.id,
        host: x.host,
        path_prefix: x.path_prefix,
        strip_prefix: x.strip_prefix,
        port: x.port,
        https: x.https,
        generated: x.generated,
        cert,
        options,
    }
}

/// The address a domain is served at through the proxy, as a browser opens it.
#[cfg(feature = "ssr")]
fn public_url(engine: &engine::Engine, host: &str, https: bool, path_prefix: &str) -> String {
    let proxy = &engine.deploy.proxy;
    let (scheme, port, default) = if https {
        ("https", proxy.https_port, 443)
    } else {
        ("http", proxy.http_port, 80)
    };
    let port = if port == default {
        String::new()
    } else {
        format!(":{port}")
    };
    let path = if path_prefix == "/" { "/" } else { path_prefix };
    format!("{scheme}://{host}{port}{path}")
}
