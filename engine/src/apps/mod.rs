//! Applications: what runs, where its image comes from, its environment variables
//! and domains. Every query is scoped by the caller's organization (a foreign ID
//! is "not found"); secrets (registry password, deploy key, env values, webhook
//! secret, deploy token) are sealed with the instance key before they are stored.

pub mod domain_options;
pub mod form;
pub mod spec;
pub mod tls;

use crate::access::{self, Target};
use crate::accounts::{is_unique_violation, Caller};
use crate::db::schema::{app_env_vars, applications, deployments, domains, environments, projects};
use crate::db::RowVersion;
use crate::error::{Classify, ErrorKind, StoreError};
use crate::ids::{AppId, DeploymentId, DomainId, EnvironmentId, ProjectId};
use crate::names::ProjectRole;
use crate::names::{Description, ValidationError};
use crate::Engine;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use spec::{AppName, Build, DomainName, Runtime, Source};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A guarded update found the app (or domain) changed since it was read.
    #[error("it changed since it was read")]
    Changed,
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::denied_into!(AppError);

impl From<diesel::result::Error> for AppError {
    fn from(e: diesel::result::Error) -> Self {
        if is_unique_violation(&e, "applications_org_name_key") {
            return ValidationError::new(
                AppName::FIELD,
                "an application with this name already exists in this organization",
            )
            .into();
        }
        if is_unique_violation(&e, "domains_host_path_prefix_key") {
            return ValidationError::new(
                DomainName::FIELD,
                "this host and path are already routed to an application",
            )
            .into();
        }
        AppError::Store(e.into())
    }
}

impl Classify for AppError {
    fn kind(&self) -> ErrorKind {
        match self {
            AppError::Invalid(v) => v.kind(),
            AppError::NotFound => ErrorKind::NotFound,
            AppError::Forbidden(m) => ErrorKind::Forbidden((*m).to_owned()),
            AppError::Corrupt(_) => ErrorKind::Internal,
            AppError::Changed => ErrorKind::Changed,
            AppError::Store(s) => s.kind(),
        }
    }
}

/// An application row, with its JSON columns decoded.
#[derive(Debug, Clone)]
pub struct Application {
    pub id: AppId,
    pub organization_id: Uuid,
    pub environment_id: EnvironmentId,
    pub name: String,
    pub description: String,
    pub source: Source,
    pub has_source_secret: bool,
    pub build: Build,
    pub runtime: Runtime,
    pub live_deployment_id: Option<DeploymentId>,
    pub created_at: DateTime<Utc>,
    /// Made before resources were named from IDs: its volumes keep their old
    /// names (the data lives there).
    pub legacy_names: bool,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = applications)]
pub(crate) struct AppRow {
    id: Uuid,
    organization_id: Uuid,
    environment_id: Uuid,
    name: String,
    description: String,
    source: serde_json::Value,
    source_secret: Option<String>,
    build: serde_json::Value,
    runtime: serde_json::Value,
    live_deployment_id: Option<Uuid>,
    created_at: DateTime<Utc>,
    legacy_names: bool,
}

impl AppRow {
    pub(crate) fn decode(self) -> Result<(Application, Option<String>), AppError> {
        let corrupt =
            |what: &str, e: serde_json::Error| AppError::Corrupt(format!("application {} {what}: {e}", self.id));
        let source = serde_json::from_value(self.source.clone()).map_err(|e| corrupt("source", e))?;
        let build = serde_json::from_value(self.build.clone()).map_err(|e| corrupt("build", e))?;
        let runtime = serde_json::from_value(self.runtime.clone()).map_err(|e| corrupt("runtime", e))?;
        Ok((
            Application {
                id: AppId(self.id),
                organization_id: self.organization_id,
                environment_id: EnvironmentId(self.environment_id),
                name: self.name,
                description: self.description,
                source,
                has_source_secret: self.source_secret.is_some(),
                build,
                runtime,
                live_deployment_id: self.live_deployment_id.map(DeploymentId),
                created_at: self.created_at,
                legacy_names: self.legacy_names,
            },
            self.source_secret,
        ))
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = domains)]
pub struct Domain {
    pub id: Uuid,
    pub host: String,
    pub path_prefix: String,
    pub strip_prefix: bool,
    pub port: Option<i32>,
    pub https: bool,
    pub generated: bool,
    pub cert: String,
    pub options: serde_json::Value,
    pub cert_status: String,
    pub cert_issuer: Option<String>,
    pub cert_not_after: Option<DateTime<Utc>>,
    pub cert_error: Option<String>,
    pub cert_failures: i32,
    pub cert_retry_at: Option<DateTime<Utc>>,
}

impl Domain {
    pub fn cert_source(&self) -> domain_options::CertSource {
        domain_options::CertSource::parse(&self.cert).unwrap_or_default()
    }
    /// Its options; stored ones that no longer parse fall back to the defaults
    /// (logged), so one bad row cannot take the app's routes down.
    pub fn options(&self) -> domain_options::DomainOptions {
        serde_json::from_value(self.options.clone()).unwrap_or_else(|e| {
            tracing::warn!(domain.id = %self.id, error = %e, "domain options do not parse; using the defaults");
            domain_options::DomainOptions::default()
        })
    }
    /// Asking the CA waits out a backoff.
    pub fn acme_paused(&self, now: DateTime<Utc>) -> bool {
        self.cert_retry_at.is_some_and(|t| t > now)
    }
}

/// One application in a list, with its latest deployment's status.
#[derive(Debug, Clone)]
pub struct AppSummary {
    pub id: AppId,
    pub name: String,
    pub environment_id: EnvironmentId,
    pub source_kind: &'static str,
    pub status: Option<lifecycle::DeploymentStatus>,
    pub live: bool,
    pub domain: Option<String>,
}

#[derive(Debug, Clone)]
pub struct AppDetail {
    pub app: Application,
    pub project_id: ProjectId,
    pub project_name: String,
    pub environment_name: String,
    pub domains: Vec<Domain>,
    /// Variable names only; values are revealed on request.
    pub env_names: Vec<String>,
    /// The application row's version as read here, for a guarded [`update`].
    pub version: RowVersion,
}

/// What a new application is made of (all parsed already).
pub struct NewApp {
    pub name: AppName,
    pub description: Description,
    pub environment: EnvironmentId,
    pub source: Source,
    /// Registry password (image source) or deploy key (git source).
    pub source_secret: Option<String>,
    pub build: Build,
    pub runtime: Runtime,
}

impl NewApp {
    /// A new application as the page's and the API's create forms make it:
    /// no description or stored secret yet, and the runtime a build starts
    /// with ([`crate::deploy::build::default_runtime`]).
    pub fn from_source(name: AppName, environment: EnvironmentId, source: Source, build: Build) -> Self {
        let runtime = crate::deploy::build::default_runtime(&build);
        NewApp {
            name,
            description: Description::default(),
            environment,
            source,
            source_secret: None,
            build,
            runtime,
        }
    }
}

/// Where an application's sealed values live (each opens only in its own slot).
pub(crate) mod slot {
    use crate::secrets::Slot;

    pub fn source_secret(app: &str) -> Slot<'_> {
        Slot::new("applications", "source_secret", app)
    }

    pub fn webhook_secret(app: &str) -> Slot<'_> {
        Slot::new("applications", "webhook_secret", app)
    }

    pub fn deploy_token(app: &str) -> Slot<'_> {
        Slot::new("applications", "deploy_token", app)
    }

    /// `row` is `<app id>/<NAME>`.
    pub fn env(row: &str) -> Slot<'_> {
        Slot::new("app_env_vars", "value", row)
    }
}

fn json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).expect("spec types serialize")
}

/// Checks what depends on the caller's role: host bind mounts are admin-only.
/// Host bind mounts are a power over the host: instance administrators only, and
/// only under the host paths the operator allows (`BERTH_BIND_ROOTS`).
fn check_runtime(engine: &Engine, caller: &Caller, runtime: &Runtime) -> Result<(), AppError> {
    for v in runtime.volumes.iter().filter(|v| v.bind) {
        if !caller.instance_admin {
            return Err(AppError::Forbidden("only instance administrators can mount host paths"));
        }
        if !bind_allowed(&engine.deploy.host.bind_roots, std::path::Path::new(&v.source)) {
            return Err(ValidationError::new(
                "volumes",
                format!(
                    "{} is not under a host path this instance allows mounting (BERTH_BIND_ROOTS)",
                    v.source
                ),
            )
            .into());
        }
    }
    Ok(())
}

/// Whether `path` may be bind-mounted under `roots`: it must lie under one of
/// them (by whole path components). The Docker socket and `/` are allowed only
/// when a root names them exactly: mounting either hands over the host.
pub fn bind_allowed(roots: &[std::path::PathBuf], path: &std::path::Path) -> bool {
    let clean = path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, std::path::Component::RootDir | std::path::Component::Normal(_)));
    if !clean {
        return false;
    }
    let named = roots.iter().any(|r| r == path);
    let dangerous = path == std::path::Path::new("/") || path.file_name().is_some_and(|n| n == "docker.sock");
    if dangerous {
        return named;
    }
    roots
        .iter()
        .any(|r| path.starts_with(r) && !(r == std::path::Path::new("/") && path.ends_with("docker.sock")))
}

pub async fn create(engine: &Engine, caller: &Caller, new: NewApp) -> Result<AppId, AppError> {
    access::check_with(engine, caller, Target::Environment(new.environment), ProjectRole::Admin).await?;
    check_runtime(engine, caller, &new.runtime)?;
    check_source(engine, &new.source)?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let org = caller.org_id.0;
    let env_ok: bool = diesel::select(diesel::dsl::exists(
        environments::table
            .filter(environments::id.eq(new.environment.0))
            .filter(environments::organization_id.eq(org)),
    ))
    .get_result(&mut conn)
    .await?;
    if !env_ok {
        return Err(AppError::NotFound);
    }
    if crate::network::is_reserved_alias(new.name.as_str()) {
        return Err(ValidationError::new(AppName::FIELD, "names of the form d-<32 hex digits> are reserved").into());
    }
    // Apps and database services share their organization's network's names.
    let taken: bool = diesel::select(diesel::dsl::exists(
        crate::db::schema::database_services::table
            .filter(crate::db::schema::database_services::organization_id.eq(org))
            .filter(crate::db::schema::database_services::name.eq(new.name.as_str())),
    ))
    .get_result(&mut conn)
    .await?;
    if taken {
        return Err(ValidationError::new(
            AppName::FIELD,
            "a database service in this organization already has this name",
        )
        .into());
    }
    // The id is made here: the secrets are sealed for this row, and the
    // generated domain carries part of it (names are unique per organization
    // only; generated hosts stay unique on the server).
    let id = Uuid::new_v4();
    // A DNS label is at most 63 characters: the name's part is cut to fit.
    let name_part = new.name.as_str();
    let name_part = name_part[..name_part.len().min(54)].trim_end_matches('-');
    let default_host = format!(
        "{name_part}-{}.{}",
        &id.simple().to_string()[..8],
        engine.deploy.base_domain
    );
    let default_host = DomainName::parse(&default_host)?;
    let webhook_secret = crate::secrets::random_token();
    let deploy_token = crate::secrets::random_token();
    let row = id.to_string();
    let sealed_source_secret = new
        .source_secret
        .as_deref()
        .map(|s| engine.secret.seal(slot::source_secret(&row), s.as_bytes()));
    let id = conn
        .transaction::<_, AppError, _>(async |conn| {
            crate::audit::within(conn).await?;
            let id: Uuid = diesel::insert_into(applications::table)
                .values((
                    applications::id.eq(id),
                    applications::organization_id.eq(org),
                    applications::environment_id.eq(new.environment.0),
                    applications::name.eq(new.name.as_str()),
                    applications::description.eq(new.description.as_str()),
                    applications::source.eq(json(&new.source)),
                    applications::repo_key.eq(new.source.repo_key()),
                    applications::source_secret.eq(sealed_source_secret),
                    applications::build.eq(json(&new.build)),
                    applications::runtime.eq(json(&new.runtime)),
                    applications::webhook_secret.eq(engine
                        .secret
                        .seal(slot::webhook_secret(&row), webhook_secret.as_bytes())),
                    applications::deploy_token_hash.eq(crate::secrets::token_hash(&deploy_token)),
                    applications::deploy_token
                        .eq(engine.secret.seal(slot::deploy_token(&row), deploy_token.as_bytes())),
                ))
                .returning(applications::id)
                .get_result(conn)
                .await?;
            diesel::insert_into(domains::table)
                .values((
                    domains::application_id.eq(id),
                    domains::organization_id.eq(org),
                    domains::host.eq(default_host.as_str()),
                    domains::generated.eq(true),
                ))
                .execute(conn)
                .await?;
            Ok(id)
        })
        .await?;
    tracing::info!(app.id = %id, org.id = %caller.org_id, "application created");
    Ok(AppId(id))
}

/// The application, scoped to the caller's organization, with its sealed source secret.
pub(crate) async fn load(
    conn: &mut AsyncPgConnection,
    org: Uuid,
    id: AppId,
) -> Result<(Application, Option<String>), AppError> {
    let row: AppRow = applications::table
        .filter(applications::id.eq(id.0))
        .filter(applications::organization_id.eq(org))
        .select(AppRow::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(AppError::NotFound)?;
    row.decode()
}

/// The application with its sealed source secret, unscoped (worker use).
pub(crate) async fn load_any(
    conn: &mut AsyncPgConnection,
    id: AppId,
) -> Result<(Application, Option<String>), AppError> {
    let row: AppRow = applications::table
        .find(id.0)
        .select(AppRow::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(AppError::NotFound)?;
    row.decode()
}

pub async fn get(engine: &Engine, caller: &Caller, id: AppId) -> Result<AppDetail, AppError> {
    access::check_with(engine, caller, Target::App(id), ProjectRole::Viewer).await?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let (row, version): (AppRow, i64) = applications::table
        .filter(applications::id.eq(id.0))
        .filter(applications::organization_id.eq(caller.org_id.0))
        .select((AppRow::as_select(), RowVersion::column()))
        .first(&mut conn)
        .await
        .optional()?
        .ok_or(AppError::NotFound)?;
    let (app, _) = row.decode()?;
    let (project_id, project_name, environment_name): (Uuid, String, String) = environments::table
        .inner_join(projects::table)
        .filter(environments::id.eq(app.environment_id.0))
        .filter(environments::organization_id.eq(caller.org_id.0))
        .select((projects::id, projects::name, environments::name))
        .first(&mut conn)
        .await?;
    let domains = domains::table
        .filter(domains::application_id.eq(id.0))
        .filter(domains::organization_id.eq(caller.org_id.0))
        .order((domains::generated.desc(), domains::host.asc()))
        .select(Domain::as_select())
        .load(&mut conn)
        .await?;
    let env_names = app_env_vars::table
        .filter(app_env_vars::application_id.eq(id.0))
        .filter(app_env_vars::organization_id.eq(caller.org_id.0))
        .order(app_env_vars::name.asc())
        .select(app_env_vars::name)
        .load(&mut conn)
        .await?;
    Ok(AppDetail {
        app,
        project_id: ProjectId(project_id),
        project_name,
        environment_name,
        domains,
        env_names,
        version: RowVersion::of(version),
    })
}

/// Applications of a project (all its environments), with their latest status.
pub async fn list_in_project(
    engine: &Engine,
    caller: &Caller,
    project: ProjectId,
) -> Result<Vec<AppSummary>, AppError> {
    access::check_with(engine, caller, Target::Project(project), ProjectRole::Viewer).await?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let mine: bool = diesel::select(diesel::dsl::exists(
        projects::table
            .filter(projects::id.eq(project.0))
            .filter(projects::organization_id.eq(caller.org_id.0)),
    ))
    .get_result(&mut conn)
    .await?;
    if !mine {
        return Err(AppError::NotFound);
    }
    let latest_status = deployments::table
        .filter(deployments::application_id.eq(applications::id))
        .order(deployments::created_at.desc())
        .select(deployments::status)
        .limit(1)
        .single_value();
    let first_domain = domains::table
        .filter(domains::application_id.eq(applications::id))
        .order((domains::generated.desc(), domains::host.asc()))
        .select(domains::host)
        .limit(1)
        .single_value();
    // id, name, environment, source, latest status, live deployment, first domain
    type Row = (
        Uuid,
        String,
        Uuid,
        serde_json::Value,
        Option<lifecycle::DeploymentStatus>,
        Option<Uuid>,
        Option<String>,
    );
    let rows: Vec<Row> = applications::table
        .inner_join(environments::table)
        .filter(environments::project_id.eq(project.0))
        .filter(applications::organization_id.eq(caller.org_id.0))
        .order(applications::name.asc())
        .select((
            applications::id,
            applications::name,
            applications::environment_id,
            applications::source,
            latest_status,
            applications::live_deployment_id,
            first_domain,
        ))
        .load(&mut conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, name, env, source, status, live, domain)| AppSummary {
            id: AppId(id),
            name,
            environment_id: EnvironmentId(env),
            source_kind: if source.get("type").and_then(|t| t.as_str()) == Some("git") {
                "git"
            } else {
                "image"
            },
            status,
            live: live.is_some(),
            domain,
        })
        .collect())
}

/// How a stored secret changes on update.
pub enum SecretChange {
    Keep,
    Clear,
    Set(String),
}

/// Changes where the app comes from (see [`update`]).
pub async fn update_source(
    engine: &Engine,
    caller: &Caller,
    id: AppId,
    source: Source,
    secret: SecretChange,
    build: Build,
) -> Result<(), AppError> {
    let change = AppChange {
        source: Some((source, secret, build)),
        runtime: None,
    };
    update(engine, caller, id, change, None).await
}

/// What an update of an application changes: where it comes from (with its
/// stored secret and how it is built), its runtime settings, or both.
pub struct AppChange {
    pub source: Option<(Source, SecretChange, Build)>,
    pub runtime: Option<Runtime>,
}

/// Changes an application's source and runtime settings in one transaction
/// (taking effect at the next deploy): both are checked before either is
/// written. With `expect`, only while the row is still the version the caller
/// read, compared under the row's lock ([`AppError::Changed`] otherwise, and
/// nothing changes). Moving to another registry or git host drops the stored
/// password or key unless a new one is given (it must never be sent to a host
/// it was not meant for), and a new git host drops the pinned ssh host key.
pub async fn update(
    engine: &Engine,
    caller: &Caller,
    id: AppId,
    change: AppChange,
    expect: Option<RowVersion>,
) -> Result<(), AppError> {
    access::check_with(engine, caller, Target::App(id), ProjectRole::Admin).await?;
    if let Some((source, _, _)) = &change.source {
        check_source(engine, source)?;
    }
    if let Some(runtime) = &change.runtime {
        check_runtime(engine, caller, runtime)?;
    }
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let org = caller.org_id.0;
    conn.transaction::<_, AppError, _>(async |conn| {
        crate::audit::within(conn).await?;
        let (current, version): (serde_json::Value, i64) = applications::table
            .filter(applications::id.eq(id.0))
            .filter(applications::organization_id.eq(org))
            .select((applications::source, RowVersion::column()))
            .for_update()
            .first(conn)
            .await
            .optional()?
            .ok_or(AppError::NotFound)?;
        if expect.is_some_and(|v| v != RowVersion::of(version)) {
            return Err(AppError::Changed);
        }
        let scoped = applications::table.filter(applications::id.eq(id.0));
        if let Some((source, secret, build)) = change.source {
            let current: Source =
                serde_json::from_value(current).map_err(|e| AppError::Corrupt(format!("source: {e}")))?;
            write_source(engine, conn, id, &current, source, secret, build).await?;
        }
        if let Some(runtime) = change.runtime {
            diesel::update(scoped)
                .set((
                    applications::runtime.eq(json(&runtime)),
                    applications::updated_at.eq(diesel::dsl::now),
                ))
                .execute(conn)
                .await?;
        }
        Ok(())
    })
    .await
}

/// The source part of [`update`], in its transaction, the row locked.
async fn write_source(
    engine: &Engine,
    conn: &mut AsyncPgConnection,
    id: AppId,
    current: &Source,
    source: Source,
    secret: SecretChange,
    build: Build,
) -> Result<(), AppError> {
    let moved = current.credential_host() != source.credential_host();
    let secret = match secret {
        SecretChange::Keep if moved => SecretChange::Clear,
        other => other,
    };
    let scoped = applications::table.filter(applications::id.eq(id.0));
    diesel::update(scoped)
        .set((
            applications::source.eq(json(&source)),
            applications::repo_key.eq(source.repo_key()),
            applications::build.eq(json(&build)),
            applications::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    match secret {
        SecretChange::Keep => {}
        SecretChange::Clear => {
            diesel::update(scoped)
                .set(applications::source_secret.eq(None::<String>))
                .execute(conn)
                .await?;
        }
        SecretChange::Set(s) => {
            let sealed = engine.secret.seal(slot::source_secret(&id.to_string()), s.as_bytes());
            diesel::update(scoped)
                .set(applications::source_secret.eq(sealed))
                .execute(conn)
                .await?;
        }
    }
    if moved {
        diesel::update(scoped)
            .set(applications::ssh_known_hosts.eq(None::<String>))
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Forgets the ssh host key pinned at the app's first clone, so the next clone
/// accepts (and pins) the server's current one. Admins and owners only: a
/// changed host key is also what an attacker in the middle looks like.
pub async fn reset_host_key(engine: &Engine, caller: &Caller, id: AppId) -> Result<(), AppError> {
    access::check_with(engine, caller, Target::App(id), ProjectRole::Admin).await?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    load(&mut conn, caller.org_id.0, id).await?;
    if !access::manages(caller) {
        return Err(AppError::Forbidden(
            "only admins and owners can reset a pinned host key",
        ));
    }
    crate::audited!(conn, AppError, {
        Ok(diesel::update(
            applications::table
                .filter(applications::id.eq(id.0))
                .filter(applications::organization_id.eq(caller.org_id.0)),
        )
        .set(applications::ssh_known_hosts.eq(None::<String>))
        .execute(conn)
        .await?)
    })
    .await?;
    tracing::info!(app.id = %id, "pinned ssh host key reset");
    Ok(())
}

/// Whether an ssh host key is pinned for the app.
pub async fn host_key_pinned(engine: &Engine, caller: &Caller, id: AppId) -> Result<bool, AppError> {
    access::check_with(engine, caller, Target::App(id), ProjectRole::Viewer).await?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let pinned: Option<Option<String>> = applications::table
        .filter(applications::id.eq(id.0))
        .filter(applications::organization_id.eq(caller.org_id.0))
        .select(applications::ssh_known_hosts)
        .first(&mut conn)
        .await
        .optional()?;
    Ok(pinned.ok_or(AppError::NotFound)?.is_some())
}

/// What a source may name: not another app's build or a bare image ID (they
/// name whatever is on this host), and not a repository host that is an
/// address this instance may not reach (names are checked when cloning: they
/// can change). The deploy checks again: rows made before stay safe.
fn check_source(engine: &Engine, source: &Source) -> Result<(), AppError> {
    match source {
        Source::Image { image, .. } => {
            crate::deploy::build::refuse_app_image(image).map_err(|why| ValidationError::new("image", why).into())
        }
        Source::Git { url, .. } => {
            if let Some(ep) = crate::deploy::git::endpoint(url) {
                crate::outbound::Policy::of(engine)
                    .check_literal(&ep.host)
                    .map_err(|e| ValidationError::new("repository", e.to_string()))?;
            }
            Ok(())
        }
    }
}

/// Sets `repo_key` where an earlier Berth left it empty (git apps made before
/// webhooks looked apps up by it); returns how many. Run at start.
pub async fn backfill_repo_keys(conn: &mut AsyncPgConnection) -> Result<usize, StoreError> {
    let rows: Vec<(Uuid, serde_json::Value)> = applications::table
        .filter(applications::repo_key.is_null())
        .filter(diesel::dsl::sql::<diesel::sql_types::Bool>("source->>'type' = 'git'"))
        .select((applications::id, applications::source))
        .load(conn)
        .await?;
    let mut n = 0;
    for (id, source) in rows {
        let Ok(source) = serde_json::from_value::<Source>(source) else {
            continue;
        };
        n += diesel::update(applications::table.find(id).filter(applications::repo_key.is_null()))
            .set(applications::repo_key.eq(source.repo_key()))
            .execute(conn)
            .await?;
    }
    Ok(n)
}

pub async fn update_runtime(engine: &Engine, caller: &Caller, id: AppId, runtime: Runtime) -> Result<(), AppError> {
    let change = AppChange {
        source: None,
        runtime: Some(runtime),
    };
    update(engine, caller, id, change, None).await
}

/// Replaces all environment variables (the bulk `.env` edit). Takes effect on the
/// next deployment.
pub async fn set_env(engine: &Engine, caller: &Caller, id: AppId, vars: Vec<(String, String)>) -> Result<(), AppError> {
    access::check_with(engine, caller, Target::App(id), ProjectRole::Deployer).await?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let org = caller.org_id.0;
    conn.transaction::<_, AppError, _>(async |conn| {
        crate::audit::within(conn).await?;
        load(conn, org, id).await?;
        diesel::delete(app_env_vars::table.filter(app_env_vars::application_id.eq(id.0)))
            .execute(conn)
            .await?;
        let rows: Vec<_> = vars
            .iter()
            .map(|(n, v)| {
                (
                    app_env_vars::application_id.eq(id.0),
                    app_env_vars::organization_id.eq(org),
                    app_env_vars::name.eq(n.as_str()),
                    app_env_vars::value.eq(engine.secret.seal(slot::env(&format!("{id}/{n}")), v.as_bytes())),
                )
            })
            .collect();
        if !rows.is_empty() {
            diesel::insert_into(app_env_vars::table)
                .values(rows)
                .execute(conn)
                .await?;
        }
        Ok(())
    })
    .await
}

/// Sets one variable (added, or replaced), keeping the others.
pub async fn put_env(engine: &Engine, caller: &Caller, id: AppId, name: &str, value: &str) -> Result<(), AppError> {
    access::check_with(engine, caller, Target::App(id), ProjectRole::Deployer).await?;
    let name = spec::parse_env_name(name)?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    load(&mut conn, caller.org_id.0, id).await?;
    let sealed = engine.secret.seal(slot::env(&format!("{id}/{name}")), value.as_bytes());
    crate::audited!(conn, AppError, {
        Ok(diesel::insert_into(app_env_vars::table)
            .values((
                app_env_vars::application_id.eq(id.0),
                app_env_vars::organization_id.eq(caller.org_id.0),
                app_env_vars::name.eq(&name),
                app_env_vars::value.eq(&sealed),
            ))
            .on_conflict((app_env_vars::application_id, app_env_vars::name))
            .do_update()
            .set(app_env_vars::value.eq(&sealed))
            .execute(conn)
            .await?)
    })
    .await?;
    Ok(())
}

/// The variables with their values (an explicit reveal, or the worker starting a container).
pub async fn env_values(engine: &Engine, caller: &Caller, id: AppId) -> Result<Vec<(String, String)>, AppError> {
    access::check_with(engine, caller, Target::App(id), ProjectRole::Deployer).await?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    load(&mut conn, caller.org_id.0, id).await?;
    decrypt_env(engine, &mut conn, id).await
}

pub(crate) async fn decrypt_env(
    engine: &Engine,
    conn: &mut AsyncPgConnection,
    id: AppId,
) -> Result<Vec<(String, String)>, AppError> {
    let rows: Vec<(String, String)> = app_env_vars::table
        .filter(app_env_vars::application_id.eq(id.0))
        .order(app_env_vars::name.asc())
        .select((app_env_vars::name, app_env_vars::value))
        .load(conn)
        .await?;
    rows.into_iter()
        .map(|(n, sealed)| {
            let v = engine
                .secret
                .open_text(slot::env(&format!("{id}/{n}")), &sealed)
                .map_err(|e| AppError::Corrupt(format!("env {n}: {e}")))?;
            Ok((n, v))
        })
        .collect()
}

/// A domain to add, parsed.
pub struct NewDomain {
    pub host: DomainName,
    pub path_prefix: String,
    pub strip_prefix: bool,
    pub port: Option<u16>,
    pub https: bool,
    pub cert: domain_options::CertSource,
    pub options: domain_options::DomainOptions,
}

/// What HTTPS and the certificate source allow for a host.
async fn check_tls_choice(
    engine: &Engine,
    host: &DomainName,
    https: bool,
    cert: domain_options::CertSource,
) -> Result<(), AppError> {
    use domain_options::CertSource;
    if host.is_wildcard() && https && !matches!(cert, CertSource::Dns | CertSource::Custom) {
        return Err(ValidationError::new(
            CertSource::FIELD,
            "a wildcard certificate comes only through DNS-01 (dns) or an upload (custom)",
        )
        .into());
    }
    if https && cert == CertSource::Dns {
        let acme = crate::proxy::acme::settings(engine)
            .await
            .map_err(|e| AppError::Store(StoreError::Corrupt(e.to_string())))?;
        if acme.dns_provider.is_none() {
            return Err(ValidationError::new(
                CertSource::FIELD,
                "DNS-01 needs a DNS provider: an instance administrator sets one in Settings",
            )
            .into());
        }
    }
    Ok(())
}

pub async fn add_domain(engine: &Engine, caller: &Caller, id: AppId, d: NewDomain) -> Result<DomainId, AppError> {
    access::check_with(engine, caller, Target::App(id), ProjectRole::Deployer).await?;
    if engine
        .deploy
        .proxy
        .dashboard_host
        .as_deref()
        .is_some_and(|h| h.eq_ignore_ascii_case(d.host.as_str()))
    {
        return Err(ValidationError::new(DomainName::FIELD, "this host serves the Berth dashboard").into());
    }
    if let Some(why) = reserved_wildcard(
        &d.host,
        &engine.deploy.base_domain,
        engine.deploy.proxy.dashboard_host.as_deref(),
    ) {
        return Err(ValidationError::new(DomainName::FIELD, why).into());
    }
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    load(&mut conn, caller.org_id.0, id).await?;
    check_tls_choice(engine, &d.host, d.https, d.cert).await?;
    let did: Uuid = crate::audited!(conn, AppError, {
        // Checked and inserted under one lock: two requests at once cannot
        // both find a host free.
        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtext('berth.domains.hosts'))")
            .execute(conn)
            .await?;
        if let Some(why) = host_conflict(conn, caller.org_id.0, id.0, &d.host).await? {
            return Err(ValidationError::new(DomainName::FIELD, why).into());
        }
        Ok(diesel::insert_into(domains::table)
            .values((
                domains::application_id.eq(id.0),
                domains::organization_id.eq(caller.org_id.0),
                domains::host.eq(d.host.as_str()),
                domains::path_prefix.eq(&d.path_prefix),
                domains::strip_prefix.eq(d.strip_prefix),
                domains::port.eq(d.port.map(i32::from)),
                domains::https.eq(d.https),
                domains::cert.eq(d.cert.as_str()),
                domains::options.eq(json(&d.options)),
            ))
            .returning(domains::id)
            .get_result(conn)
            .await?)
    })
    .await?;
    Ok(DomainId(did))
}

/// Why a wildcard `host` is the instance's, not any organization's: it would
/// cover every app's generated host (a name under the base domain) or the
/// dashboard's host.
fn reserved_wildcard(host: &DomainName, base: &str, dashboard: Option<&str>) -> Option<&'static str> {
    let parent = host.as_str().strip_prefix("*.")?;
    if parent.eq_ignore_ascii_case(base) {
        return Some("a wildcard over the base domain would cover every application's generated host");
    }
    dashboard
        .and_then(|h| h.split_once('.'))
        .is_some_and(|(_, p)| p.eq_ignore_ascii_case(parent))
        .then_some("this wildcard covers the Berth dashboard's host")
}

/// Why `host` cannot be routed to `app`: another application has it, or it
/// lies under another organization's wildcard, or (a wildcard) it covers a
/// host another organization has. Within one organization an exact host
/// outranks a wildcard over it (`crate::proxy::routes`), which is that
/// organization's own arrangement; across organizations either would take one
/// tenant's requests for another.
async fn host_conflict(
    conn: &mut AsyncPgConnection,
    org: Uuid,
    app: Uuid,
    host: &DomainName,
) -> QueryResult<Option<&'static str>> {
    // A host belongs to one application: another app may not add a path under it.
    let taken: bool = diesel::select(diesel::dsl::exists(
        domains::table
            .filter(domains::host.eq(host.as_str()))
            .filter(domains::application_id.ne(app)),
    ))
    .get_result(conn)
    .await?;
    if taken {
        return Ok(Some("this host is already used by another application"));
    }
    let others = || domains::table.filter(domains::organization_id.ne(org));
    match host.as_str().strip_prefix("*.") {
        // `*.X` matches one label before X (the rule is anchored).
        Some(parent) => {
            let suffix = format!(".{parent}");
            // Host names hold only letters, digits, '-' and '.': nothing LIKE-special.
            let under: Vec<String> = others()
                .filter(domains::host.like(format!("%{suffix}")))
                .select(domains::host)
                .load(conn)
                .await?;
            let covered = under.iter().any(|h| {
                h.strip_suffix(&suffix)
                    .is_some_and(|label| !label.contains('.') && !label.starts_with('*'))
            });
            Ok(covered.then_some("this wildcard covers a host another organization uses"))
        }
        None => {
            let Some((_, parent)) = host.as_str().split_once('.') else {
                return Ok(None);
            };
            let wild: bool = diesel::select(diesel::dsl::exists(
                others().filter(domains::host.eq(format!("*.{parent}"))),
            ))
            .get_result(conn)
            .await?;
            Ok(wild.then_some("this host is under a wildcard another organization uses"))
        }
    }
}

/// One domain of the caller's organization, by its ID.
pub async fn domain(engine: &Engine, caller: &Caller, id: DomainId) -> Result<Domain, AppError> {
    Ok(domain_versioned(engine, caller, id).await?.0)
}

/// A domain with its row's version, for a guarded update (`DomainUpdate::expect`).
pub async fn domain_versioned(
    engine: &Engine,
    caller: &Caller,
    id: DomainId,
) -> Result<(Domain, RowVersion), AppError> {
    access::check_with(engine, caller, Target::Domain(id), ProjectRole::Viewer).await?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let (d, v): (Domain, i64) = domains::table
        .filter(domains::id.eq(id.0))
        .filter(domains::organization_id.eq(caller.org_id.0))
        .select((Domain::as_select(), RowVersion::column()))
        .first(&mut conn)
        .await
        .optional()?
        .ok_or(AppError::NotFound)?;
    Ok((d, RowVersion::of(v)))
}

/// A domain's HTTPS settings and proxy options, as changed from the UI.
pub struct DomainUpdate {
    pub https: bool,
    pub cert: domain_options::CertSource,
    pub options: domain_options::OptionsForm,
    /// Only while the domain is still this version ([`AppError::Changed`]
    /// otherwise); `None` for "as it is now".
    pub expect: Option<RowVersion>,
}

/// What changing a domain asks of the proxy.
pub struct DomainChanged {
    pub app: AppId,
    /// HTTPS or the certificate's source changed: the pre-checks run again.
    pub recheck: bool,
}

/// Changes a domain's HTTPS, certificate source and options (stored only:
/// `crate::domains::update` routes them).
pub async fn update_domain(
    engine: &Engine,
    caller: &Caller,
    id: DomainId,
    u: DomainUpdate,
) -> Result<DomainChanged, AppError> {
    access::check_with(engine, caller, Target::Domain(id), ProjectRole::Deployer).await?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let (app, current, read): (Uuid, Domain, i64) = domains::table
        .filter(domains::id.eq(id.0))
        .filter(domains::organization_id.eq(caller.org_id.0))
        .select((domains::application_id, Domain::as_select(), RowVersion::column()))
        .first(&mut conn)
        .await
        .optional()?
        .ok_or(AppError::NotFound)?;
    if u.expect.is_some_and(|v| v != RowVersion::of(read)) {
        return Err(AppError::Changed);
    }
    let host = DomainName::parse_route(&current.host).map_err(|e| AppError::Corrupt(e.message))?;
    check_tls_choice(engine, &host, u.https, u.cert).await?;
    let options = u.options.parse(host.as_str(), &current.options())?;
    let source_changed = u.cert.as_str() != current.cert || u.https != current.https;
    crate::audited!(conn, AppError, {
        // The options were merged into the row as read above: written only
        // while it is still that row, or a concurrent change would be undone.
        let now: i64 = domains::table
            .find(id.0)
            .select(RowVersion::column())
            .for_update()
            .first(conn)
            .await?;
        if now != read {
            return Err(AppError::Changed);
        }
        diesel::update(domains::table.find(id.0))
            .set((
                domains::https.eq(u.https),
                domains::cert.eq(u.cert.as_str()),
                domains::options.eq(json(&options)),
            ))
            .execute(conn)
            .await?;
        if source_changed {
            tls::start_over(conn, id.0).await?;
        }
        Ok(())
    })
    .await?;
    Ok(DomainChanged {
        app: AppId(app),
        recheck: source_changed,
    })
}

pub async fn remove_domain(engine: &Engine, caller: &Caller, id: DomainId) -> Result<AppId, AppError> {
    access::check_with(engine, caller, Target::Domain(id), ProjectRole::Deployer).await?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let app: Uuid = crate::audited!(conn, AppError, {
        diesel::delete(
            domains::table
                .filter(domains::id.eq(id.0))
                .filter(domains::organization_id.eq(caller.org_id.0)),
        )
        .returning(domains::application_id)
        .get_result(conn)
        .await
        .optional()?
        .ok_or(AppError::NotFound)
    })
    .await?;
    Ok(AppId(app))
}

/// The routes the proxy serves for an application (no tenancy: worker use).
pub(crate) async fn routes_of(conn: &mut AsyncPgConnection, id: AppId) -> Result<Vec<crate::proxy::Route>, AppError> {
    let domains: Vec<Domain> = domains::table
        .filter(domains::application_id.eq(id.0))
        .order((
            domains::generated.desc(),
            domains::host.asc(),
            domains::path_prefix.asc(),
        ))
        .select(Domain::as_select())
        .load(conn)
        .await?;
    Ok(domains.into_iter().map(Domain::into_route).collect())
}

impl Domain {
    pub fn into_route(self) -> crate::proxy::Route {
        let (cert, options, acme_paused) = (self.cert_source(), self.options(), self.acme_paused(Utc::now()));
        crate::proxy::Route {
            id: self.id,
            host: self.host,
            path_prefix: self.path_prefix,
            strip_prefix: self.strip_prefix,
            port: self.port.and_then(|p| u16::try_from(p).ok()),
            https: self.https,
            cert,
            acme_paused,
            options,
        }
    }
}

/// The webhook secret and the generic deploy token, for the settings the user
/// copies into GitHub or CI.
pub struct Hooks {
    pub github_secret: String,
    pub deploy_token: String,
}

pub async fn hooks(engine: &Engine, caller: &Caller, id: AppId) -> Result<Hooks, AppError> {
    access::check_with(engine, caller, Target::App(id), ProjectRole::Deployer).await?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let (secret, token): (String, String) = applications::table
        .filter(applications::id.eq(id.0))
        .filter(applications::organization_id.eq(caller.org_id.0))
        .select((applications::webhook_secret, applications::deploy_token))
        .first(&mut conn)
        .await
        .optional()?
        .ok_or(AppError::NotFound)?;
    let row = id.to_string();
    let open = |slot, s: &str| {
        engine
            .secret
            .open_text(slot, s)
            .map_err(|e| AppError::Corrupt(format!("webhook settings: {e}")))
    };
    Ok(Hooks {
        github_secret: open(slot::webhook_secret(&row), &secret)?,
        deploy_token: open(slot::deploy_token(&row), &token)?,
    })
}

/// New webhook secret and deploy token; the old ones stop working at once.
pub async fn rotate_hooks(engine: &Engine, caller: &Caller, id: AppId) -> Result<(), AppError> {
    access::check_with(engine, caller, Target::App(id), ProjectRole::Deployer).await?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let secret = crate::secrets::random_token();
    let token = crate::secrets::random_token();
    let n = crate::audited!(conn, AppError, {
        Ok(diesel::update(
            applications::table
                .filter(applications::id.eq(id.0))
                .filter(applications::organization_id.eq(caller.org_id.0)),
        )
        .set((
            applications::webhook_secret.eq(engine
                .secret
                .seal(slot::webhook_secret(&id.to_string()), secret.as_bytes())),
            applications::deploy_token_hash.eq(crate::secrets::token_hash(&token)),
            applications::deploy_token.eq(engine
                .secret
                .seal(slot::deploy_token(&id.to_string()), token.as_bytes())),
        ))
        .execute(conn)
        .await?)
    })
    .await?;
    if n == 0 {
        return Err(AppError::NotFound);
    }
    Ok(())
}

/// Deletes the application: its containers, route and images go first (best
/// effort, logged), then the rows; its named volumes only when asked. Admins
/// and owners only.
pub async fn delete(engine: &Engine, caller: &Caller, id: AppId, remove_volumes: bool) -> Result<(), AppError> {
    access::check_with(engine, caller, Target::App(id), ProjectRole::Admin).await?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let (app, _) = load(&mut conn, caller.org_id.0, id).await?;
    if !access::manages(caller) {
        return Err(AppError::Forbidden("only admins and owners can delete applications"));
    }
    // Stop new deployments from starting, then remove what runs.
    let in_progress: Vec<_> = <lifecycle::DeploymentStatus as lifecycle::Lifecycle>::ALL
        .iter()
        .copied()
        .filter(|s| s.in_progress())
        .collect();
    // The audit row goes in with this first change: a deletion cut short is
    // still on record.
    crate::audited!(conn, AppError, {
        diesel::update(
            deployments::table
                .filter(deployments::application_id.eq(id.0))
                .filter(deployments::status.eq_any(in_progress)),
        )
        .set(deployments::cancel_requested.eq(true))
        .execute(conn)
        .await?;
        // Nothing live any more: the reconciler must not bring back the
        // container about to be removed.
        diesel::update(applications::table.filter(applications::id.eq(id.0)))
            .set(applications::live_deployment_id.eq(None::<uuid::Uuid>))
            .execute(conn)
            .await?;
        Ok(())
    })
    .await?;
    crate::proxy::remove_app(engine, id).await;
    crate::deploy::runtime::remove_app_containers(engine, id).await;
    let images: Vec<String> = deployments::table
        .filter(deployments::application_id.eq(id.0))
        .filter(deployments::image.is_not_null())
        .select(deployments::image.assume_not_null())
        .distinct()
        .load(&mut conn)
        .await?;
    diesel::delete(applications::table.filter(applications::id.eq(id.0)))
        .execute(&mut conn)
        .await?;
    crate::deploy::runtime::remove_app_images(engine, id, &images).await;
    if remove_volumes {
        let app_ref = crate::deploy::runtime::AppRef {
            id,
            org: caller.org_id,
            name: &app.name,
            runtime: &app.runtime,
            legacy_names: app.legacy_names,
        };
        for v in app.runtime.volumes.iter().filter(|v| !v.bind) {
            let name = crate::deploy::runtime::volume_name(engine, app_ref, &v.source);
            if let Err(e) = engine.docker.remove_volume(&name).await {
                tracing::warn!(error = %e, volume = %name, "removing an application volume");
            }
        }
    }
    tracing::info!(app.id = %id, remove_volumes, "application deleted");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::bind_allowed;
    use std::path::{Path, PathBuf};

    #[test]
    fn wildcards_over_the_base_domain_or_the_dashboard_are_the_instances() {
        use super::{reserved_wildcard, DomainName};
        let w = |h: &str| DomainName::parse_route(h).unwrap();
        let base = "apps.example.com";
        let dash = Some("berth.example.com");
        assert!(reserved_wildcard(&w("*.apps.example.com"), base, dash).is_some());
        assert!(reserved_wildcard(&w("*.example.com"), base, dash).is_some());
        assert!(reserved_wildcard(&w("*.example.com"), base, None).is_none());
        assert!(reserved_wildcard(&w("*.team.example.com"), base, dash).is_none());
        assert!(reserved_wildcard(&w("*.x.apps.example.com"), base, dash).is_none());
        assert!(reserved_wildcard(&w("shop.apps.example.com"), base, dash).is_none());
    }

    #[test]
    fn bind_mounts_stay_under_the_allowed_roots_and_never_reach_the_socket_or_root() {
        let roots = vec![PathBuf::from("/srv/data"), PathBuf::from("/")];
        assert!(
            !bind_allowed(&[], Path::new("/srv/data/x")),
            "nothing is allowed by default"
        );
        let srv = vec![PathBuf::from("/srv/data")];
        assert!(bind_allowed(&srv, Path::new("/srv/data")));
        assert!(bind_allowed(&srv, Path::new("/srv/data/app/uploads")));
        assert!(!bind_allowed(&srv, Path::new("/srv/database")), "whole components only");
        assert!(!bind_allowed(&srv, Path::new("/srv/data/../../etc")), "no ..");
        assert!(!bind_allowed(&srv, Path::new("srv/data")), "absolute only");
        assert!(!bind_allowed(&srv, Path::new("/srv/data/docker.sock")));
        // `/` as a root opens everything but the socket; `/` itself must be named.
        assert!(bind_allowed(&roots, Path::new("/etc")));
        assert!(bind_allowed(&roots, Path::new("/")));
        assert!(!bind_allowed(&roots, Path::new("/var/run/docker.sock")));
        assert!(!bind_allowed(
            &[PathBuf::from("/var/run")],
            Path::new("/var/run/docker.sock")
        ));
        assert!(bind_allowed(
            &[PathBuf::from("/var/run/docker.sock")],
            Path::new("/var/run/docker.sock")
        ));
        assert!(!bind_allowed(&srv, Path::new("/")));
    }
}
