//! `/api/v1/apps`, `/api/v1/domains` and `/api/v1/deployments`: thin over
//! `engine::apps`, `engine::domains` and `engine::deploy`, as the server
//! functions are. A change of some runtime fields goes through the same form
//! parse as the page's whole form ([`RuntimeForm::of`]).

use super::{
    engine_err, field_error, id, if_match, merging, stamp, tagged, Body, Created, Key, PageQuery, Problem, Revealer,
};
use crate::error::ApiError;
use crate::rest::projects::Removal;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use engine::accounts::Caller;
use engine::apps::domain_options::{CertSource, DomainOptions};
use engine::apps::form::{RuntimeForm, SourceForm};
use engine::apps::spec::{self, AppName, Build, Source};
use engine::apps::{self, AppDetail, NewApp, NewDomain};
use engine::deploy;
use engine::ids::{AppId, DeploymentId};
use lifecycle::Trigger;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;
use uuid::Uuid;

/// An application in a list, with its latest deployment's status.
#[derive(Serialize, ToSchema)]
pub struct AppItem {
    pub id: Uuid,
    pub name: String,
    pub environment_id: Uuid,
    /// `image` or `git`.
    pub source: String,
    /// The latest deployment's status, if any.
    pub status: Option<String>,
    pub domain: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AppPage {
    pub items: Vec<AppItem>,
    pub next: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AppSource {
    /// `image` or `git`.
    pub kind: String,
    pub image: Option<String>,
    pub repository: Option<String>,
    pub branch: Option<String>,
    /// `dockerfile` or `static`.
    pub build: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Runtime {
    pub port: u16,
    /// Replaces the image's command (one argument per item).
    pub command: Option<Vec<String>>,
    pub cpu_millis: Option<u32>,
    pub memory_mb: Option<u32>,
    /// `no`, `always`, `on-failure` or `unless-stopped`.
    pub restart: String,
    /// Seconds the replaced container keeps running after traffic moved.
    pub drain_secs: u64,
}

#[derive(Serialize, ToSchema)]
pub struct Domain {
    pub id: Uuid,
    pub host: String,
    pub path_prefix: String,
    pub https: bool,
    /// Made by Berth (the instance's wildcard domain).
    pub generated: bool,
    /// Where its certificate comes from: `http`, `tls`, `dns` or `custom`.
    pub cert: String,
    /// The certificate's state (`pending`, `issued`, `failed`, ...).
    pub cert_status: String,
    pub options: DomainOptionsOut,
}

/// A domain's proxy options as they are now (passwords never: users only).
#[derive(Serialize, ToSchema)]
pub struct DomainOptionsOut {
    pub redirect_https: bool,
    pub hsts_max_age: Option<u32>,
    pub hsts_subdomains: bool,
    /// `none`, `to_www` or `to_apex`.
    pub www: String,
    pub basic_auth_users: Vec<String>,
    pub headers: BTreeMap<String, String>,
    pub compress: bool,
    pub rate_average: Option<u32>,
    pub rate_burst: Option<u32>,
}

fn domain_out(x: apps::Domain) -> Domain {
    let o = x.options();
    Domain {
        id: x.id,
        host: x.host,
        path_prefix: x.path_prefix,
        https: x.https,
        generated: x.generated,
        cert: x.cert,
        cert_status: x.cert_status,
        options: DomainOptionsOut {
            redirect_https: o.redirect_https,
            hsts_max_age: o.hsts.map(|h| h.max_age),
            hsts_subdomains: o.hsts.is_some_and(|h| h.include_subdomains),
            www: match o.www.as_str() {
                "" => "none".to_owned(),
                w => w.to_owned(),
            },
            basic_auth_users: o.basic_auth.iter().map(|u| u.user.clone()).collect(),
            headers: o.headers.into_iter().collect(),
            compress: o.compress,
            rate_average: o.rate_limit.map(|r| r.average),
            rate_burst: o.rate_limit.map(|r| r.burst),
        },
    }
}

/// Fields left out stay as they are.
#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DomainChange {
    pub https: Option<bool>,
    /// `http` (HTTP-01), `tls` (TLS-ALPN-01), `dns` (DNS-01) or `custom` (uploaded).
    pub cert: Option<String>,
    pub redirect_https: Option<bool>,
    /// Seconds; 0 or null turns HSTS off.
    pub hsts_max_age: Option<u32>,
    pub hsts_subdomains: Option<bool>,
    /// `none`, `to_www` or `to_apex`.
    pub www: Option<String>,
    /// `user:password` items replace the users; a `user` alone keeps that
    /// user's current password.
    pub basic_auth: Option<Vec<String>>,
    /// Response headers added to every answer (replaces them).
    pub headers: Option<BTreeMap<String, String>>,
    pub compress: Option<bool>,
    /// Requests per second on average; 0 turns the limit off.
    pub rate_average: Option<u32>,
    pub rate_burst: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct App {
    pub id: Uuid,
    pub name: String,
    pub project_id: Uuid,
    pub environment_id: Uuid,
    pub environment: String,
    pub source: AppSource,
    pub runtime: Runtime,
    pub domains: Vec<Domain>,
    /// Variable names; values through `GET /apps/{id}/env`.
    pub env: Vec<String>,
    pub live_deployment: Option<Uuid>,
    pub created_at: String,
}

impl From<AppDetail> for App {
    fn from(d: AppDetail) -> Self {
        let a = d.app;
        let (kind, image, repository, branch) = match a.source {
            Source::Image { image, .. } => ("image", Some(image), None, None),
            Source::Git { url, branch, .. } => ("git", None, Some(url), Some(branch)),
        };
        App {
            id: a.id.0,
            name: a.name,
            project_id: d.project_id.0,
            environment_id: a.environment_id.0,
            environment: d.environment_name,
            source: AppSource {
                kind: kind.into(),
                image,
                repository,
                branch,
                build: match a.build {
                    Build::Dockerfile { .. } => "dockerfile".into(),
                    Build::Static { .. } => "static".into(),
                },
            },
            runtime: Runtime {
                port: a.runtime.port,
                command: a.runtime.command,
                cpu_millis: a.runtime.cpu_millis,
                memory_mb: a.runtime.memory_mb,
                restart: a.runtime.restart.as_str().into(),
                drain_secs: a.runtime.drain_secs,
            },
            domains: d.domains.into_iter().map(domain_out).collect(),
            env: d.env_names,
            live_deployment: a.live_deployment_id.map(|x| x.0),
            created_at: stamp(a.created_at),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAppIn {
    pub environment_id: String,
    /// A DNS label: lowercase letters, digits and `-`.
    pub name: String,
    /// `image` or `git`.
    pub source: String,
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub repository: String,
    #[serde(default)]
    pub branch: String,
    /// `dockerfile` (default) or `static`.
    #[serde(default)]
    pub build: String,
}

/// Fields left out stay as they are.
#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuntimeChange {
    pub port: Option<u16>,
    /// An empty list runs the image's own command.
    pub command: Option<Vec<String>>,
    pub cpu_millis: Option<u32>,
    pub memory_mb: Option<u32>,
    pub restart: Option<String>,
    pub drain_secs: Option<u64>,
}

/// Where the app comes from and how it is built; fields left out stay as they
/// are (taking effect at the next deploy).
#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceChange {
    /// `image` or `git`.
    pub kind: Option<String>,
    pub image: Option<String>,
    pub registry_user: Option<String>,
    /// The registry password (image) or deploy key (git); write-only. Moving
    /// to another registry or git host drops the stored one unless given.
    pub secret: Option<String>,
    /// Forget the stored password or deploy key.
    #[serde(default)]
    pub clear_secret: bool,
    pub repository: Option<String>,
    pub branch: Option<String>,
    pub subdir: Option<String>,
    /// `dockerfile` or `static`.
    pub build: Option<String>,
    pub dockerfile: Option<String>,
    pub context: Option<String>,
    /// A build stage; empty for the last.
    pub target: Option<String>,
    /// Replaces every build argument.
    pub build_args: Option<BTreeMap<String, String>>,
    pub static_dir: Option<String>,
}

#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppChange {
    pub runtime: Option<RuntimeChange>,
    pub source: Option<SourceChange>,
}

/// An application's variables, values included.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvVars {
    pub vars: BTreeMap<String, String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDomainIn {
    pub host: String,
    #[serde(default)]
    pub path_prefix: String,
    #[serde(default)]
    pub strip_prefix: bool,
    /// The container port this domain reaches (default: the app's).
    pub port: Option<u16>,
    #[serde(default)]
    pub https: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Deployment {
    pub id: Uuid,
    pub app_id: Uuid,
    /// `queued`, `cloning`, `building`, `starting`, `health_checking`,
    /// `routing`, `running`, `superseded`, `failed` or `cancelled`.
    pub status: String,
    /// Why it failed or was cancelled.
    pub reason: Option<String>,
    /// `manual`, `webhook`, `rollback`, `api` or `repair`.
    pub trigger: String,
    pub commit: Option<String>,
    pub rollback_of: Option<Uuid>,
    /// Serving now (the app's live deployment).
    pub live: bool,
    /// Ended: `running`, `superseded`, `failed` or `cancelled`.
    pub finished: bool,
    pub created_at: String,
    pub finished_at: Option<String>,
}

fn deployment_out(d: deploy::Deployment, live: Option<DeploymentId>) -> Deployment {
    Deployment {
        id: d.id.0,
        app_id: d.application_id.0,
        status: d.status.to_string(),
        reason: d.reason,
        trigger: d.trigger.to_string(),
        commit: d.commit_sha,
        rollback_of: d.rollback_of.map(|r| r.0),
        live: live == Some(d.id),
        finished: d.status.is_finished(),
        created_at: stamp(d.created_at),
        finished_at: d.finished_at.map(stamp),
    }
}

#[derive(Serialize, ToSchema)]
pub struct DeploymentPage {
    pub items: Vec<Deployment>,
    pub next: Option<String>,
}

/// The applications of a project (all its environments), by name.
#[utoipa::path(get, path = "/projects/{id}/apps", tag = "apps", params(("id" = String, Path), PageQuery),
    responses((status = 200, body = AppPage), (status = 404, body = Problem)))]
pub async fn list(
    State(s): State<AppState>,
    Key(c): Key,
    Path(pid): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Json<AppPage>, ApiError> {
    let rows = apps::list_in_project(s.engine(), &c, id(&pid)?)
        .await
        .map_err(engine_err)?;
    let (rows, next) = q.page(rows, |a| format!("{}\u{1f}{}", a.name, a.id.0))?;
    Ok(Json(AppPage {
        items: rows
            .into_iter()
            .map(|a| AppItem {
                id: a.id.0,
                name: a.name,
                environment_id: a.environment_id.0,
                source: a.source_kind.into(),
                status: a.status.map(|s| s.to_string()),
                domain: a.domain,
            })
            .collect(),
        next,
    }))
}

/// Creates an application from an image or a git repository (not deployed yet).
#[utoipa::path(post, path = "/apps", tag = "apps", request_body = NewAppIn,
    responses((status = 201, body = App), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn create(State(s): State<AppState>, Key(c): Key, Body(b): Body<NewAppIn>) -> Result<Response, ApiError> {
    let environment = id(&b.environment_id)?;
    let name = AppName::parse(&b.name).map_err(engine_err)?;
    let form = SourceForm {
        kind: b.source,
        image: b.image,
        repository: b.repository,
        branch: b.branch,
        build_kind: b.build,
        ..Default::default()
    };
    let engine = s.engine();
    let (source, _, build) = form.parse(engine.deploy.allow_local_sources).map_err(engine_err)?;
    let aid = apps::create(engine, &c, NewApp::from_source(name, environment, source, build))
        .await
        .map_err(engine_err)?;
    let d = apps::get(engine, &c, aid).await.map_err(engine_err)?;
    Ok(tagged(StatusCode::CREATED, App::from(d)))
}

/// An application: source, runtime, domains and variable names.
#[utoipa::path(get, path = "/apps/{id}", tag = "apps", params(("id" = String, Path)),
    responses((status = 200, body = App, headers(("ETag" = String))), (status = 404, body = Problem)))]
pub async fn get(State(s): State<AppState>, Key(c): Key, Path(aid): Path<String>) -> Result<Response, ApiError> {
    let d = apps::get(s.engine(), &c, id(&aid)?).await.map_err(engine_err)?;
    Ok(tagged(StatusCode::OK, App::from(d)))
}

/// Changes where the app comes from, how it is built and its runtime
/// settings (taking effect at the next deploy); both parts are checked before
/// either is written.
#[utoipa::path(patch, path = "/apps/{id}", tag = "apps", request_body = AppChange,
    params(("id" = String, Path), ("If-Match" = Option<String>, Header, description = "The ETag last read")),
    responses((status = 200, body = App), (status = 412, body = Problem), (status = 422, body = Problem)))]
pub async fn update(
    State(s): State<AppState>,
    Key(c): Key,
    Path(aid): Path<String>,
    headers: HeaderMap,
    Body(b): Body<AppChange>,
) -> Result<Response, ApiError> {
    let aid: AppId = id(&aid)?;
    merging(&headers, || update_once(&s, &c, aid, &headers, b.clone())).await
}

/// One read, merge and guarded write of [`update`].
async fn update_once(
    s: &AppState,
    c: &Caller,
    aid: AppId,
    headers: &HeaderMap,
    b: AppChange,
) -> Result<Response, ApiError> {
    let engine = s.engine();
    let now = apps::get(engine, c, aid).await.map_err(engine_err)?;
    let read = now.version;
    let app_now = now.app.clone();
    let mut form = RuntimeForm::of(&now.app.runtime);
    if_match(headers, &super::etag(&App::from(now)))?;
    let changes_runtime = b.runtime.is_some();
    if let Some(r) = b.runtime {
        let text = |v: Option<u32>| v.map(|x| x.to_string()).unwrap_or_default();
        if let Some(p) = r.port {
            form.port = p.to_string();
        }
        if let Some(cmd) = r.command {
            if cmd.iter().any(|a| a.contains(['\n', '\r'])) {
                return Err(field_error("runtime.command", "an argument cannot hold a line break"));
            }
            form.command = cmd.join("\n");
        }
        if r.cpu_millis.is_some() {
            form.cpu_millis = text(r.cpu_millis);
        }
        if r.memory_mb.is_some() {
            form.memory_mb = text(r.memory_mb);
        }
        if let Some(x) = r.restart {
            form.restart = x;
        }
        if let Some(x) = r.drain_secs {
            form.drain_secs = x.to_string();
        }
    }
    let runtime = form.parse().map_err(engine_err)?;
    // Both parts are parsed before either is written: a bad field changes nothing.
    let source = match b.source {
        None => None,
        Some(x) => {
            let mut f = SourceForm::of(&app_now.source, &app_now.build);
            let set = |slot: &mut String, v: Option<String>| {
                if let Some(v) = v {
                    *slot = v;
                }
            };
            set(&mut f.kind, x.kind);
            set(&mut f.image, x.image);
            set(&mut f.registry_user, x.registry_user);
            set(&mut f.secret, x.secret);
            f.clear_secret = x.clear_secret;
            set(&mut f.repository, x.repository);
            set(&mut f.branch, x.branch);
            set(&mut f.subdir, x.subdir);
            set(&mut f.build_kind, x.build);
            set(&mut f.dockerfile, x.dockerfile);
            set(&mut f.context, x.context);
            set(&mut f.target, x.target);
            set(&mut f.static_dir, x.static_dir);
            if let Some(args) = x.build_args {
                if args.values().any(|v| v.contains(['\n', '\r'])) {
                    return Err(field_error("source.build_args", "a value cannot hold a line break"));
                }
                f.build_args = args.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
            }
            let parsed = f.parse(engine.deploy.allow_local_sources).map_err(|e| {
                // The form's names, as this body spells them.
                let field = match e.field {
                    "source" => "kind",
                    other => other,
                };
                field_error(format!("source.{field}"), e.message)
            })?;
            Some(parsed)
        }
    };
    let change = apps::AppChange {
        source,
        runtime: changes_runtime.then_some(runtime),
    };
    // Written only while the app is still as read (and merged) above.
    apps::update(engine, c, aid, change, Some(read))
        .await
        .map_err(engine_err)?;
    let d = apps::get(engine, c, aid).await.map_err(engine_err)?;
    Ok(tagged(StatusCode::OK, App::from(d)))
}

/// Deletes an application: its containers, routes and image (admins).
#[utoipa::path(delete, path = "/apps/{id}", tag = "apps", params(("id" = String, Path), Removal),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn delete(
    State(s): State<AppState>,
    Key(c): Key,
    Path(aid): Path<String>,
    Query(r): Query<Removal>,
) -> Result<StatusCode, ApiError> {
    apps::delete(s.engine(), &c, id(&aid)?, r.volumes()?)
        .await
        .map_err(engine_err)?;
    Ok(StatusCode::NO_CONTENT)
}

/// The variables with their values (an explicit reveal: not for viewer keys).
#[utoipa::path(get, path = "/apps/{id}/env", tag = "apps", params(("id" = String, Path)),
    responses((status = 200, body = EnvVars), (status = 404, body = Problem)))]
pub async fn get_env(
    State(s): State<AppState>,
    Revealer(c): Revealer,
    Path(aid): Path<String>,
) -> Result<Json<EnvVars>, ApiError> {
    let vars = apps::env_values(s.engine(), &c, id(&aid)?).await.map_err(engine_err)?;
    Ok(Json(EnvVars {
        vars: vars.into_iter().collect(),
    }))
}

/// Replaces all variables (taking effect at the next deploy).
#[utoipa::path(put, path = "/apps/{id}/env", tag = "apps", request_body = EnvVars, params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn set_env(
    State(s): State<AppState>,
    Key(c): Key,
    Path(aid): Path<String>,
    Body(b): Body<EnvVars>,
) -> Result<StatusCode, ApiError> {
    let aid: AppId = id(&aid)?;
    let vars = spec::parse_vars(b.vars.into_iter().collect()).map_err(engine_err)?;
    apps::set_env(s.engine(), &c, aid, vars).await.map_err(engine_err)?;
    Ok(StatusCode::NO_CONTENT)
}

/// A domain, with its HTTPS settings and proxy options.
#[utoipa::path(get, path = "/domains/{id}", tag = "apps", params(("id" = String, Path)),
    responses((status = 200, body = Domain, headers(("ETag" = String))), (status = 404, body = Problem)))]
pub async fn get_domain(State(s): State<AppState>, Key(c): Key, Path(did): Path<String>) -> Result<Response, ApiError> {
    let d = apps::domain(s.engine(), &c, id(&did)?).await.map_err(engine_err)?;
    Ok(tagged(StatusCode::OK, domain_out(d)))
}

/// Changes a domain's HTTPS, certificate source and proxy options (routed at
/// once), through the page's own form parse: fields left out stay.
#[utoipa::path(patch, path = "/domains/{id}", tag = "apps", request_body = DomainChange,
    params(("id" = String, Path), ("If-Match" = Option<String>, Header, description = "The ETag last read")),
    responses((status = 200, body = Domain), (status = 404, body = Problem), (status = 412, body = Problem), (status = 422, body = Problem)))]
pub async fn update_domain(
    State(s): State<AppState>,
    Key(c): Key,
    Path(did): Path<String>,
    headers: HeaderMap,
    Body(b): Body<DomainChange>,
) -> Result<Response, ApiError> {
    let did: engine::ids::DomainId = id(&did)?;
    merging(&headers, || update_domain_once(&s, &c, did, &headers, b.clone())).await
}

/// One read, merge and guarded write of [`update_domain`].
async fn update_domain_once(
    s: &AppState,
    c: &Caller,
    did: engine::ids::DomainId,
    headers: &HeaderMap,
    b: DomainChange,
) -> Result<Response, ApiError> {
    let engine = s.engine();
    let (now, read) = apps::domain_versioned(engine, c, did).await.map_err(engine_err)?;
    let mut form = now.options().to_form();
    let cert = now.cert_source();
    let https = now.https;
    if_match(headers, &super::etag(&domain_out(now)))?;
    let text = |v: u32| if v == 0 { String::new() } else { v.to_string() };
    if let Some(v) = b.redirect_https {
        form.redirect_https = v;
    }
    if let Some(v) = b.hsts_max_age {
        form.hsts_max_age = text(v);
    }
    if let Some(v) = b.hsts_subdomains {
        form.hsts_subdomains = v;
    }
    if let Some(v) = b.www {
        form.www = v;
    }
    if let Some(users) = b.basic_auth {
        if users.iter().any(|u| u.contains(['\n', '\r'])) {
            return Err(field_error("basic_auth", "an item cannot hold a line break"));
        }
        form.basic_auth = users.iter().map(|u| format!("{u}\n")).collect();
    }
    if let Some(h) = b.headers {
        if h.iter()
            .any(|(k, v)| k.contains(['\n', '\r', ':']) || v.contains(['\n', '\r']))
        {
            return Err(field_error(
                "headers",
                "names and values cannot hold line breaks (or a name a colon)",
            ));
        }
        form.headers = h.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
    }
    if let Some(v) = b.compress {
        form.compress = v;
    }
    if let Some(v) = b.rate_average {
        form.rate_average = text(v);
        if v == 0 {
            form.rate_burst = String::new();
        }
    }
    if let Some(v) = b.rate_burst {
        form.rate_burst = text(v);
    }
    let update = apps::DomainUpdate {
        https: b.https.unwrap_or(https),
        cert: match b.cert {
            Some(raw) => CertSource::parse(&raw).map_err(engine_err)?,
            None => cert,
        },
        options: form,
        expect: Some(read),
    };
    engine::domains::update(engine, c, did, update)
        .await
        .map_err(engine_err)?;
    let d = apps::domain(engine, c, did).await.map_err(engine_err)?;
    Ok(tagged(StatusCode::OK, domain_out(d)))
}

/// Routes a domain (and path) to the application.
#[utoipa::path(post, path = "/apps/{id}/domains", tag = "apps", request_body = NewDomainIn, params(("id" = String, Path)),
    responses((status = 201, body = Created), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn add_domain(
    State(s): State<AppState>,
    Key(c): Key,
    Path(aid): Path<String>,
    Body(b): Body<NewDomainIn>,
) -> Result<Response, ApiError> {
    let aid: AppId = id(&aid)?;
    let host = spec::DomainName::parse_route(&b.host).map_err(engine_err)?;
    let path_prefix = spec::parse_path_prefix(&b.path_prefix).map_err(engine_err)?;
    if b.port == Some(0) {
        return Err(field_error("port", "must be a port number from 1 to 65535"));
    }
    let did = engine::domains::add(
        s.engine(),
        &c,
        aid,
        NewDomain {
            host,
            path_prefix,
            strip_prefix: b.strip_prefix,
            port: b.port,
            https: b.https,
            cert: CertSource::parse("").map_err(engine_err)?,
            options: DomainOptions::default(),
        },
    )
    .await
    .map_err(engine_err)?;
    Ok((StatusCode::CREATED, Json(Created { id: did.0 })).into_response())
}

/// Removes a domain from its application.
#[utoipa::path(delete, path = "/domains/{id}", tag = "apps", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn remove_domain(
    State(s): State<AppState>,
    Key(c): Key,
    Path(did): Path<String>,
) -> Result<StatusCode, ApiError> {
    engine::domains::remove(s.engine(), &c, id(&did)?)
        .await
        .map_err(engine_err)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Queues a deployment of the application's current settings (trigger `api`).
#[utoipa::path(post, path = "/apps/{id}/deployments", tag = "deployments", params(("id" = String, Path)),
    responses((status = 202, body = Created), (status = 404, body = Problem)))]
pub async fn deploy(State(s): State<AppState>, Key(c): Key, Path(aid): Path<String>) -> Result<Response, ApiError> {
    let did = deploy::deploy_as(s.engine(), &c, id(&aid)?, Trigger::Api)
        .await
        .map_err(engine_err)?;
    Ok((StatusCode::ACCEPTED, Json(Created { id: did.0 })).into_response())
}

/// The application's deployments, newest first.
#[utoipa::path(get, path = "/apps/{id}/deployments", tag = "deployments", params(("id" = String, Path), PageQuery),
    responses((status = 200, body = DeploymentPage), (status = 404, body = Problem)))]
pub async fn deployments(
    State(s): State<AppState>,
    Key(c): Key,
    Path(aid): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Json<DeploymentPage>, ApiError> {
    let limit = q.limit()? as i64;
    let after = match q.cursor.as_deref().filter(|x| !x.is_empty()) {
        None => None,
        Some(raw) => {
            Some(deploy::Cursor::decode(raw).ok_or_else(|| field_error("cursor", "is not a cursor this API gave"))?)
        }
    };
    let h = deploy::list_page(s.engine(), &c, id(&aid)?, after, limit)
        .await
        .map_err(engine_err)?;
    let live = h.live;
    Ok(Json(DeploymentPage {
        items: h.deployments.into_iter().map(|d| deployment_out(d, live)).collect(),
        next: h.next.map(|n| n.encode()),
    }))
}

/// One deployment: its status now.
#[utoipa::path(get, path = "/deployments/{id}", tag = "deployments", params(("id" = String, Path)),
    responses((status = 200, body = Deployment), (status = 404, body = Problem)))]
pub async fn deployment(
    State(s): State<AppState>,
    Key(c): Key,
    Path(did): Path<String>,
) -> Result<Json<Deployment>, ApiError> {
    let engine = s.engine();
    let d = deploy::get(engine, &c, id(&did)?).await.map_err(engine_err)?;
    let live = apps::get(engine, &c, d.application_id)
        .await
        .map_err(engine_err)?
        .app
        .live_deployment_id;
    Ok(Json(deployment_out(d, live)))
}

/// Cancels a deployment that has not gone live.
#[utoipa::path(post, path = "/deployments/{id}/cancel", tag = "deployments", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn cancel(State(s): State<AppState>, Key(c): Key, Path(did): Path<String>) -> Result<StatusCode, ApiError> {
    deploy::cancel(s.engine(), &c, id(&did)?).await.map_err(engine_err)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deploys an earlier deployment's image again (one that went live).
#[utoipa::path(post, path = "/deployments/{id}/rollback", tag = "deployments", params(("id" = String, Path)),
    responses((status = 202, body = Created), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn rollback(State(s): State<AppState>, Key(c): Key, Path(did): Path<String>) -> Result<Response, ApiError> {
    let new = deploy::rollback(s.engine(), &c, id(&did)?).await.map_err(engine_err)?;
    Ok((StatusCode::ACCEPTED, Json(Created { id: new.0 })).into_response())
}

/// The deployment's build and start log as it is now (plain text).
#[utoipa::path(get, path = "/deployments/{id}/log", tag = "deployments", params(("id" = String, Path)),
    responses((status = 200, content_type = "text/plain", body = String), (status = 404, body = Problem)))]
pub async fn log(State(s): State<AppState>, Key(c): Key, Path(did): Path<String>) -> Result<Response, ApiError> {
    let did: DeploymentId = id(&did)?;
    let engine = s.engine();
    let (app, _) = deploy::app_of(engine, &c, did).await.map_err(engine_err)?;
    let path = engine::logs::log_path(engine, app, did);
    let body = match tokio::fs::File::open(&path).await {
        Ok(f) => axum::body::Body::from_stream(tokio_util::io::ReaderStream::with_capacity(f, 64 * 1024)),
        Err(_) => axum::body::Body::empty(),
    };
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response())
}
