//! Database services (PostgreSQL, MySQL, MariaDB, MongoDB, Redis): creating them
//! in a project environment, their lifecycle, connection strings, linking one to
//! an application, and their status (container state plus the engine's own
//! readiness probe). Every query is scoped by the caller's organization (a
//! foreign ID is "not found"); the generated password is sealed at rest and only
//! an explicit reveal returns it.

pub mod container;
pub mod kind;

use crate::access::{self, Target};
use crate::accounts::{is_unique_violation, Caller};
use crate::apps::spec::{parse_image, AppName};
use crate::db::schema::{applications, database_services, environments, projects};
use crate::db::RowVersion;
use crate::docker::DockerError;
use crate::error::{Classify, ErrorKind, StoreError};
use crate::ids::{AppId, EnvironmentId, ProjectId, ServiceId};
use crate::names::ProjectRole;
use crate::names::ValidationError;
use crate::Engine;
use chrono::{DateTime, Utc};
use container::{ServiceBox, State};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use kind::{parse_identifier, DbEngine, Identity};
pub use lifecycle::ServiceState;
use std::time::Duration;
use uuid::Uuid;

/// The name Berth's own database goes by in backups: no service may take it.
pub const OWN_NAME: &str = "berth";

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Forbidden(&'static str),
    /// The operation cannot happen in the service's current state.
    #[error("{0}")]
    State(String),
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A guarded update found the service changed since it was read.
    #[error("it changed since it was read")]
    Changed,
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::denied_into!(ServiceError);

impl From<diesel::result::Error> for ServiceError {
    fn from(e: diesel::result::Error) -> Self {
        if is_unique_violation(&e, "database_services_org_name_key") {
            return ValidationError::new(
                "name",
                "a database service with this name already exists in this organization",
            )
            .into();
        }
        if is_unique_violation(&e, "database_services_external_bind_external_port_key") {
            return ValidationError::new("external_port", "another service already uses this address and port").into();
        }
        ServiceError::Store(e.into())
    }
}

impl Classify for ServiceError {
    fn kind(&self) -> ErrorKind {
        match self {
            ServiceError::Invalid(v) => v.kind(),
            ServiceError::NotFound => ErrorKind::NotFound,
            ServiceError::Forbidden(m) => ErrorKind::Forbidden((*m).to_owned()),
            ServiceError::State(m) => ErrorKind::Conflict {
                field: "service",
                message: m.clone(),
            },
            // Docker answered and refused (a port already allocated, a bad image):
            // that is about this service, and its words say how to fix it.
            ServiceError::Docker(DockerError::Refused { message, .. }) => ErrorKind::Conflict {
                field: "service",
                message: format!("Docker refused: {message}"),
            },
            ServiceError::Docker(_) => ErrorKind::Unavailable,
            ServiceError::Corrupt(_) => ErrorKind::Internal,
            ServiceError::Changed => ErrorKind::Changed,
            ServiceError::Store(s) => s.kind(),
        }
    }
}

/// A database service row (password still sealed).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = database_services)]
pub struct ServiceRow {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub environment_id: Uuid,
    pub name: String,
    pub engine: String,
    pub image: String,
    pub database_name: Option<String>,
    pub username: Option<String>,
    password: String,
    pub volume: String,
    pub cpu_millis: Option<i32>,
    pub memory_mb: Option<i32>,
    pub external_bind: Option<String>,
    pub external_port: Option<i32>,
    pub desired: String,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Made before containers were named from IDs (its container keeps its name).
    pub legacy_names: bool,
    /// MySQL/MariaDB: root's own password, sealed (NULL: made before, root has
    /// the app user's).
    root_password: Option<String>,
    /// Redis: an append-only file as well as RDB snapshots.
    pub redis_aof: bool,
}

/// A service with its passwords opened: what Docker operations need.
pub struct Service {
    pub row: ServiceRow,
    pub engine: DbEngine,
    pub password: String,
    /// MySQL/MariaDB root's; the app user's password otherwise.
    pub root_password: String,
}

impl Service {
    pub fn identity(&self) -> Identity<'_> {
        Identity {
            database: self.row.database_name.as_deref().unwrap_or(""),
            user: self.row.username.as_deref().unwrap_or("default"),
            password: &self.password,
            root_password: &self.root_password,
            redis_aof: self.row.redis_aof,
        }
    }

    pub fn boxed(&self, engine: &Engine) -> ServiceBox<'_> {
        ServiceBox {
            id: self.row.id,
            org: crate::ids::OrgId(self.row.organization_id),
            container: self.container(engine),
            name: &self.row.name,
            engine: self.engine,
            image: &self.row.image,
            volume: &self.row.volume,
            identity: self.identity(),
            cpu_millis: self.row.cpu_millis,
            memory_mb: self.row.memory_mb,
            external: self.external(),
        }
    }

    /// Where the port is published, when it is.
    fn external(&self) -> Option<(&str, u16)> {
        self.row
            .external_bind
            .as_deref()
            .zip(self.row.external_port.map(|p| p as u16))
    }

    pub fn container(&self, engine: &Engine) -> String {
        container::container_name(engine, self.row.id, &self.row.name, self.row.legacy_names)
    }

    /// The connection string for apps on the Berth network (the name is the host).
    pub fn internal_url(&self) -> String {
        self.engine
            .connection_url(&self.row.name, self.engine.port(), &self.identity())
    }

    /// The connection string through the published port, when there is one.
    pub fn external_url(&self) -> Option<String> {
        let (bind, port) = self.external()?;
        let host = if bind == "0.0.0.0" || bind == "::" {
            "<server address>"
        } else {
            bind
        };
        Some(self.engine.connection_url(host, port, &self.identity()))
    }
}

fn mask(url: &str, password: &str) -> String {
    url.replace(password, "********")
}

/// Where a service's sealed password lives.
pub(crate) fn password_slot(service: &str) -> crate::secrets::Slot<'_> {
    crate::secrets::Slot::new("database_services", "password", service)
}

/// Where a MySQL/MariaDB service's sealed root password lives.
pub(crate) fn root_password_slot(service: &str) -> crate::secrets::Slot<'_> {
    crate::secrets::Slot::new("database_services", "root_password", service)
}

/// Opens a row's sealed password.
pub(crate) fn open(engine: &Engine, row: ServiceRow) -> Result<Service, ServiceError> {
    let kind = DbEngine::parse(&row.engine).map_err(|_| ServiceError::Corrupt(format!("engine {:?}", row.engine)))?;
    let password = engine
        .secret
        .open_text(password_slot(&row.id.to_string()), &row.password)
        .map_err(|e| ServiceError::Corrupt(format!("service {} password: {e}", row.id)))?;
    let root_password = match &row.root_password {
        Some(sealed) => engine
            .secret
            .open_text(root_password_slot(&row.id.to_string()), sealed)
            .map_err(|e| ServiceError::Corrupt(format!("service {} root password: {e}", row.id)))?,
        None => password.clone(),
    };
    Ok(Service {
        row,
        engine: kind,
        password,
        root_password,
    })
}

/// The service, scoped to the organization.
pub(crate) async fn load(
    engine: &Engine,
    conn: &mut AsyncPgConnection,
    org: Uuid,
    id: ServiceId,
) -> Result<Service, ServiceError> {
    let row: ServiceRow = database_services::table
        .filter(database_services::id.eq(id.0))
        .filter(database_services::organization_id.eq(org))
        .select(ServiceRow::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(ServiceError::NotFound)?;
    open(engine, row)
}

/// The service's row (password still sealed), scoped to the caller's
/// organization: what a form needs to check against, without asking Docker.
pub async fn row(engine: &Engine, caller: &Caller, id: ServiceId) -> Result<ServiceRow, ServiceError> {
    access::check_with(engine, caller, Target::Service(id), ProjectRole::Viewer).await?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    Ok(load(engine, &mut conn, caller.org_id.0, id).await?.row)
}

/// The service by ID alone: for the worker, which acts for whoever queued the job.
pub(crate) async fn load_any(engine: &Engine, conn: &mut AsyncPgConnection, id: Uuid) -> Result<Service, ServiceError> {
    let row: ServiceRow = database_services::table
        .find(id)
        .select(ServiceRow::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(ServiceError::NotFound)?;
    open(engine, row)
}

/// An address and port to publish the service on, from the host's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct External {
    pub bind: String,
    pub port: u16,
}

impl External {
    /// `bind` is an IP address (IPv4 or IPv6, e.g. `127.0.0.1` or `0.0.0.0`);
    /// `port` is 1024–65535.
    pub fn parse(bind: &str, port: &str) -> Result<Self, ValidationError> {
        let bind = bind.trim();
        let bind = if bind.is_empty() { "127.0.0.1" } else { bind };
        bind.parse::<std::net::IpAddr>()
            .map_err(|_| ValidationError::new("external_bind", "must be an IP address such as 127.0.0.1 or 0.0.0.0"))?;
        let port: u16 = port
            .trim()
            .parse()
            .ok()
            .filter(|p| *p >= 1024)
            .ok_or_else(|| ValidationError::new("external_port", "must be a port number from 1024 to 65535"))?;
        Ok(Self {
            bind: bind.to_owned(),
            port,
        })
    }
}

/// Limits and exposure, shared by creation and the Advanced tab.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub image: String,
    pub cpu_millis: Option<i32>,
    pub memory_mb: Option<i32>,
    pub external: Option<External>,
}

impl Settings {
    /// Parses the form's strings: empty limits mean none.
    pub fn parse(
        image: &str,
        cpu_millis: &str,
        memory_mb: &str,
        external: Option<(&str, &str)>,
    ) -> Result<Self, ValidationError> {
        let limit = |field: &'static str, raw: &str, min: i32, max: i32| -> Result<Option<i32>, ValidationError> {
            let raw = raw.trim();
            if raw.is_empty() {
                return Ok(None);
            }
            raw.parse::<i32>()
                .ok()
                .filter(|v| (min..=max).contains(v))
                .map(Some)
                .ok_or_else(|| ValidationError::new(field, format!("must be a whole number from {min} to {max}")))
        };
        Ok(Self {
            image: parse_image("image", image)?,
            cpu_millis: limit("cpu_millis", cpu_millis, 10, 256_000)?,
            memory_mb: limit("memory_mb", memory_mb, 16, 1_048_576)?,
            external: external.map(|(b, p)| External::parse(b, p)).transpose()?,
        })
    }
}

/// A new service, parsed.
pub struct NewService {
    pub name: AppName,
    pub engine: DbEngine,
    pub environment: EnvironmentId,
    /// Empty for Redis.
    pub database: String,
    pub user: String,
    pub settings: Settings,
    /// Redis: persist with an append-only file too (the default).
    pub redis_aof: bool,
}

impl NewService {
    /// Parses the creation form. An empty image means the engine's default; empty
    /// database and user names mean the engine's defaults.
    #[allow(clippy::too_many_arguments)]
    pub fn parse(
        engine: &Engine,
        environment: EnvironmentId,
        name: &str,
        kind: &str,
        image: &str,
        database: &str,
        user: &str,
        cpu_millis: &str,
        memory_mb: &str,
        external: Option<(&str, &str)>,
    ) -> Result<Self, ValidationError> {
        let name = AppName::parse(name)?;
        if name.as_str() == OWN_NAME {
            // Backups of Berth's own database are filed under this name.
            return Err(ValidationError::new(
                "name",
                "\"berth\" is reserved for Berth's own database",
            ));
        }
        let kind = DbEngine::parse(kind)?;
        let image = if image.trim().is_empty() {
            kind.default_image(&engine.deploy.services.images).to_owned()
        } else {
            image.to_owned()
        };
        let (database, user) = if kind.has_database() {
            let d = if database.trim().is_empty() {
                kind.default_database()
            } else {
                database
            };
            let u = if user.trim().is_empty() {
                kind.default_user()
            } else {
                user
            };
            (parse_identifier("database", d)?, parse_identifier("user", u)?)
        } else {
            (String::new(), kind.default_user().to_owned())
        };
        Ok(Self {
            name,
            engine: kind,
            environment,
            database,
            user,
            settings: Settings::parse(&image, cpu_millis, memory_mb, external)?,
            redis_aof: true,
        })
    }

    /// Redis's persistence, from the form's `persistence` field: `aof` (an
    /// append-only file and RDB snapshots; the default when empty) or `rdb`
    /// (snapshots only). Chosen at creation: switching a server with data
    /// would start it from the other, empty kind of file.
    pub fn with_persistence(mut self, raw: &str) -> Result<Self, ValidationError> {
        self.redis_aof = match raw.trim() {
            "" | "aof" => true,
            "rdb" => false,
            _ => return Err(ValidationError::new("persistence", "must be aof or rdb")),
        };
        Ok(self)
    }
}

/// Publishing a port beyond loopback opens the host to the network: it is an
/// instance administrator's power.
fn check_exposure(caller: &Caller, s: &Settings) -> Result<(), ServiceError> {
    let beyond_loopback = s
        .external
        .as_ref()
        .is_some_and(|e| e.bind != "127.0.0.1" && e.bind != "::1");
    if beyond_loopback && !caller.instance_admin {
        return Err(ServiceError::Forbidden(
            "only instance administrators can expose a database beyond this host",
        ));
    }
    Ok(())
}

pub async fn create(engine: &Engine, caller: &Caller, new: NewService) -> Result<ServiceId, ServiceError> {
    access::check_with(engine, caller, Target::Environment(new.environment), ProjectRole::Admin).await?;
    check_exposure(caller, &new.settings)?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let env_ok: bool = diesel::select(diesel::dsl::exists(
        environments::table
            .filter(environments::id.eq(new.environment.0))
            .filter(environments::organization_id.eq(caller.org_id.0)),
    ))
    .get_result(&mut conn)
    .await?;
    if !env_ok {
        return Err(ServiceError::NotFound);
    }
    if crate::network::is_reserved_alias(new.name.as_str()) {
        return Err(ValidationError::new("name", "names of the form d-<32 hex digits> are reserved").into());
    }
    // Apps and services share their organization's network's names (hostnames).
    let app_taken: bool = diesel::select(diesel::dsl::exists(
        applications::table
            .filter(applications::organization_id.eq(caller.org_id.0))
            .filter(applications::name.eq(new.name.as_str())),
    ))
    .get_result(&mut conn)
    .await?;
    if app_taken {
        return Err(ValidationError::new("name", "an application in this organization already has this name").into());
    }
    let password = kind::generate_password();
    let s = &new.settings;
    let id = Uuid::new_v4();
    // Root gets a password of its own: the app user's connection string (which
    // apps are linked with) then does not carry the server's root password.
    let root_password = matches!(new.engine, DbEngine::Mysql | DbEngine::Mariadb).then(|| {
        engine.secret.seal(
            root_password_slot(&id.to_string()),
            kind::generate_password().as_bytes(),
        )
    });
    crate::audited!(conn, ServiceError, {
        Ok(diesel::insert_into(database_services::table)
            .values((
                database_services::id.eq(id),
                database_services::organization_id.eq(caller.org_id.0),
                database_services::environment_id.eq(new.environment.0),
                database_services::name.eq(new.name.as_str()),
                database_services::engine.eq(new.engine.as_str()),
                database_services::image.eq(&s.image),
                database_services::database_name.eq(new.engine.has_database().then_some(&new.database)),
                database_services::username.eq(Some(&new.user)),
                database_services::password.eq(engine.secret.seal(password_slot(&id.to_string()), password.as_bytes())),
                database_services::volume.eq(container::volume_name(engine, id)),
                database_services::cpu_millis.eq(s.cpu_millis),
                database_services::memory_mb.eq(s.memory_mb),
                database_services::external_bind.eq(s.external.as_ref().map(|e| e.bind.clone())),
                database_services::external_port.eq(s.external.as_ref().map(|e| i32::from(e.port))),
                database_services::root_password.eq(root_password),
                database_services::redis_aof.eq(new.engine == DbEngine::Redis && new.redis_aof),
            ))
            .execute(conn)
            .await?)
    })
    .await?;
    tracing::info!(service.id = %id, org.id = %caller.org_id, engine = new.engine.as_str(), "database service created");
    bring_up(engine, ServiceId(id));
    Ok(ServiceId(id))
}

/// Pulls the image and starts the container in the background (a pull can take
/// minutes); a failure is recorded on the row and shown with the status.
fn bring_up(engine: &Engine, id: ServiceId) {
    let engine = engine.clone();
    tokio::spawn(async move {
        let result = async {
            let mut conn = engine.db.get().await.map_err(|e| e.to_string())?;
            let svc = load_any(&engine, &mut conn, id.0).await.map_err(|e| e.to_string())?;
            drop(conn);
            container::ensure_image(&engine, &svc.row.image).await?;
            container::ensure_running(&engine, &svc.boxed(&engine))
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        let error = result.err();
        if let Some(e) = &error {
            tracing::warn!(service.id = %id, error = %e, "starting a database service");
        }
        if let Ok(mut conn) = engine.db.get().await {
            let _ = diesel::update(database_services::table.find(id.0))
                .set(database_services::last_error.eq(error))
                .execute(&mut conn)
                .await;
        }
        announce_until_ready(&engine, id.0);
    });
}

/// A service in a list, with what Docker says of it.
#[derive(Debug, Clone)]
pub struct ServiceSummary {
    pub id: ServiceId,
    pub name: String,
    pub engine: DbEngine,
    pub environment_id: EnvironmentId,
    pub state: ServiceState,
}

/// What Docker reports, read against what the operator asked for.
fn service_state(state: &State, desired: &str, last_error: Option<&str>) -> ServiceState {
    match state {
        State::Running => ServiceState::Running,
        // The last start or rebuild failed, and nothing runs: say so.
        _ if last_error.is_some() => ServiceState::Failed,
        State::Missing if desired == "running" => ServiceState::Starting,
        State::Missing => ServiceState::Stopped,
        State::Down(s) if s == "restarting" => ServiceState::Restarting,
        State::Down(_) if desired == "stopped" => ServiceState::Stopped,
        State::Down(s) if s == "created" => ServiceState::Starting,
        State::Down(_) => ServiceState::Failed,
    }
}

/// The services of a project (all its environments).
pub async fn list_in_project(
    engine: &Engine,
    caller: &Caller,
    project: ProjectId,
) -> Result<Vec<ServiceSummary>, ServiceError> {
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
        return Err(ServiceError::NotFound);
    }
    #[allow(clippy::type_complexity)] // One row of a seven-column select, read once below.
    let rows: Vec<(Uuid, String, String, Uuid, String, Option<String>, bool)> = database_services::table
        .inner_join(environments::table)
        .filter(environments::project_id.eq(project.0))
        .filter(database_services::organization_id.eq(caller.org_id.0))
        .order(database_services::name.asc())
        .select((
            database_services::id,
            database_services::name,
            database_services::engine,
            database_services::environment_id,
            database_services::desired,
            database_services::last_error,
            database_services::legacy_names,
        ))
        .load(&mut conn)
        .await?;
    drop(conn);
    let mut out = Vec::with_capacity(rows.len());
    for (id, name, kind, env, desired, last_error, legacy) in rows {
        let container = container::container_name(engine, id, &name, legacy);
        let state = match container::state(engine, &container).await {
            Ok(state) => service_state(&state, &desired, last_error.as_deref()),
            Err(_) => ServiceState::Unknown,
        };
        out.push(ServiceSummary {
            id: ServiceId(id),
            engine: DbEngine::parse(&kind).map_err(|_| ServiceError::Corrupt(kind.clone()))?,
            state,
            name,
            environment_id: EnvironmentId(env),
        });
    }
    Ok(out)
}

/// Everything the service page shows (the password masked).
#[derive(Debug, Clone)]
pub struct ServiceDetail {
    pub row: ServiceRow,
    pub engine: DbEngine,
    pub project_id: ProjectId,
    pub project_name: String,
    pub environment_name: String,
    pub state: ServiceState,
    /// The engine's readiness probe answered (only asked while running).
    pub ready: Option<bool>,
    pub internal_url_masked: String,
    pub external_url_masked: Option<String>,
    /// The row's version as read here, for a guarded [`update`].
    pub version: RowVersion,
}

pub async fn get(engine: &Engine, caller: &Caller, id: ServiceId) -> Result<ServiceDetail, ServiceError> {
    access::check_with(engine, caller, Target::Service(id), ProjectRole::Viewer).await?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    // The version read with the row it belongs to: a guarded [`update`] then
    // refuses any change made since this read, and only those.
    let (row, version): (ServiceRow, i64) = database_services::table
        .filter(database_services::id.eq(id.0))
        .filter(database_services::organization_id.eq(caller.org_id.0))
        .select((ServiceRow::as_select(), RowVersion::column()))
        .first(&mut conn)
        .await
        .optional()?
        .ok_or(ServiceError::NotFound)?;
    let svc = open(engine, row)?;
    let (project_id, project_name, environment_name): (Uuid, String, String) = environments::table
        .inner_join(projects::table)
        .filter(environments::id.eq(svc.row.environment_id))
        .filter(environments::organization_id.eq(caller.org_id.0))
        .select((projects::id, projects::name, environments::name))
        .first(&mut conn)
        .await?;
    drop(conn);
    let state = container::state(engine, &svc.container(engine)).await?;
    let ready = if state == State::Running {
        let probe = svc.engine.readiness(&svc.identity());
        Some(matches!(
            crate::docker::exec_capture(&*engine.docker, &svc.container(engine), &probe, Duration::from_secs(5)).await,
            Ok(o) if o.exit_code == 0
        ))
    } else {
        None
    };
    Ok(ServiceDetail {
        state: service_state(&state, &svc.row.desired, svc.row.last_error.as_deref()),
        ready,
        internal_url_masked: mask(&svc.internal_url(), &svc.password),
        external_url_masked: svc.external_url().map(|u| mask(&u, &svc.password)),
        engine: svc.engine,
        row: svc.row,
        project_id: ProjectId(project_id),
        project_name,
        environment_name,
        version: RowVersion::of(version),
    })
}

/// The secrets, on an explicit request: password and both connection strings.
pub struct Revealed {
    pub password: String,
    /// MySQL/MariaDB root's, when it has its own.
    pub root_password: Option<String>,
    pub internal_url: String,
    pub external_url: Option<String>,
}

impl std::fmt::Debug for Revealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets, even in a panic message.
        f.write_str("Revealed { .. }")
    }
}

pub async fn reveal(engine: &Engine, caller: &Caller, id: ServiceId) -> Result<Revealed, ServiceError> {
    access::check_with(engine, caller, Target::Service(id), ProjectRole::Deployer).await?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let svc = load(engine, &mut conn, caller.org_id.0, id).await?;
    tracing::info!(service.id = %id, user.id = %caller.user_id, "database password revealed");
    Ok(Revealed {
        internal_url: svc.internal_url(),
        external_url: svc.external_url(),
        root_password: svc.row.root_password.is_some().then_some(svc.root_password),
        password: svc.password,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Stop,
    Restart,
    /// A new container from the (possibly new) image and settings, on the same volume.
    Rebuild,
}

impl Action {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        match raw {
            "start" => Ok(Action::Start),
            "stop" => Ok(Action::Stop),
            "restart" => Ok(Action::Restart),
            "rebuild" => Ok(Action::Rebuild),
            _ => Err(ValidationError::new(
                "action",
                "must be start, stop, restart or rebuild",
            )),
        }
    }
}

pub async fn act(engine: &Engine, caller: &Caller, id: ServiceId, action: Action) -> Result<(), ServiceError> {
    access::check_with(engine, caller, Target::Service(id), ProjectRole::Deployer).await?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let svc = load(engine, &mut conn, caller.org_id.0, id).await?;
    let desired = if action == Action::Stop { "stopped" } else { "running" };
    crate::audited!(conn, ServiceError, {
        Ok(diesel::update(database_services::table.find(id.0))
            .set((
                database_services::desired.eq(desired),
                database_services::last_error.eq(None::<String>),
                database_services::updated_at.eq(diesel::dsl::now),
            ))
            .execute(conn)
            .await?)
    })
    .await?;
    drop(conn);
    match action {
        Action::Stop => container::stop(engine, &svc.container(engine)).await?,
        Action::Start => match container::state(engine, &svc.container(engine)).await? {
            State::Missing => bring_up(engine, id),
            _ => container::start(engine, &svc.container(engine)).await?,
        },
        Action::Restart => {
            container::stop(engine, &svc.container(engine)).await?;
            container::start(engine, &svc.container(engine)).await?;
        }
        Action::Rebuild => {
            container::remove(engine, &svc.container(engine), None).await?;
            bring_up(engine, id);
        }
    }
    tracing::info!(service.id = %id, ?action, "database service action");
    announce_until_ready(engine, id.0);
    Ok(())
}

/// Tells the service's open pages it changed now, and again once its readiness
/// probe answers (up to two minutes): readiness is asked of the server, not
/// written anywhere, so this is how "ready" reaches a page without polling.
pub(crate) fn announce_until_ready(engine: &Engine, id: Uuid) {
    let engine = engine.clone();
    tokio::spawn(async move {
        crate::events::service_changed(&engine, id).await;
        let Ok(mut conn) = engine.db.get().await else { return };
        let Ok(svc) = load_any(&engine, &mut conn, id).await else {
            return;
        };
        drop(conn);
        if svc.row.desired != "running" {
            return;
        }
        let name = svc.container(&engine);
        let probe = svc.engine.readiness(&svc.identity());
        // Starting, or still pulling its image: the probe fails until it runs.
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_secs(120) {
            if container::wait_ready(&engine, &name, &probe, Duration::from_secs(5))
                .await
                .is_ok()
            {
                crate::events::service_changed(&engine, id).await;
                return;
            }
        }
    });
}

/// Changes image, limits and exposure, then rebuilds the container (same volume).
///
/// With `expect`, only while the row is still the version the caller read,
/// compared under the row's lock ([`ServiceError::Changed`] otherwise, and
/// nothing changes).
pub async fn update(
    engine: &Engine,
    caller: &Caller,
    id: ServiceId,
    s: Settings,
    expect: Option<RowVersion>,
) -> Result<(), ServiceError> {
    access::check_with(engine, caller, Target::Service(id), ProjectRole::Admin).await?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    // Existence first: a foreign ID is "not found", whatever the request asks.
    load(engine, &mut conn, caller.org_id.0, id).await?;
    check_exposure(caller, &s)?;
    crate::audited!(conn, ServiceError, {
        let now: i64 = database_services::table
            .find(id.0)
            .select(RowVersion::column())
            .for_update()
            .first(conn)
            .await?;
        if expect.is_some_and(|v| v != RowVersion::of(now)) {
            return Err(ServiceError::Changed);
        }
        Ok(diesel::update(database_services::table.find(id.0))
            .set((
                database_services::image.eq(&s.image),
                database_services::cpu_millis.eq(s.cpu_millis),
                database_services::memory_mb.eq(s.memory_mb),
                database_services::external_bind.eq(s.external.as_ref().map(|e| e.bind.clone())),
                database_services::external_port.eq(s.external.as_ref().map(|e| i32::from(e.port))),
                database_services::updated_at.eq(diesel::dsl::now),
            ))
            .execute(conn)
            .await?)
    })
    .await?;
    drop(conn);
    act(engine, caller, id, Action::Rebuild).await
}

/// Deletes the service and its container; the data volume only when asked
/// (a separate, explicit confirmation in the UI). Backups in S3 are kept.
/// Deleting a service is for admins and owners.
pub fn may_delete(caller: &Caller) -> Result<(), ServiceError> {
    if access::manages(caller) {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(
            "only admins and owners can delete database services",
        ))
    }
}

/// Deletes the service once `confirm` repeats its name. The role is checked
/// before the confirmation: a member learns nothing by typing.
pub async fn delete_confirmed(
    engine: &Engine,
    caller: &Caller,
    id: ServiceId,
    confirm: &str,
    remove_volume: bool,
) -> Result<(), ServiceError> {
    access::check_with(engine, caller, Target::Service(id), ProjectRole::Admin).await?;
    let row = row(engine, caller, id).await?;
    may_delete(caller)?;
    if confirm.trim() != row.name {
        return Err(ValidationError::new("confirm", "type the service's name to confirm").into());
    }
    delete(engine, caller, id, remove_volume).await
}

pub async fn delete(engine: &Engine, caller: &Caller, id: ServiceId, remove_volume: bool) -> Result<(), ServiceError> {
    access::check_with(engine, caller, Target::Service(id), ProjectRole::Admin).await?;
    may_delete(caller)?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let svc = load(engine, &mut conn, caller.org_id.0, id).await?;
    // Not wanted running any more: the reconciler must not bring back the
    // container about to be removed (put back if the removal fails).
    let set_desired = |desired: &str| {
        diesel::update(database_services::table.filter(database_services::id.eq(id.0)))
            .set(database_services::desired.eq(desired.to_owned()))
    };
    // The audit row goes in with this first change: a deletion cut short is
    // still on record.
    crate::audited!(conn, ServiceError, { Ok(set_desired("stopped").execute(conn).await?) }).await?;
    if let Err(e) = container::remove(
        engine,
        &svc.container(engine),
        remove_volume.then_some(svc.row.volume.as_str()),
    )
    .await
    {
        set_desired(&svc.row.desired).execute(&mut conn).await?;
        return Err(e.into());
    }
    crate::audited!(conn, ServiceError, {
        Ok(diesel::delete(
            database_services::table
                .filter(database_services::id.eq(id.0))
                .filter(database_services::organization_id.eq(caller.org_id.0)),
        )
        .execute(conn)
        .await?)
    })
    .await?;
    tracing::info!(service.id = %id, remove_volume, "database service deleted");
    Ok(())
}

/// Adds the internal connection string to an application as the variable `name`
/// (e.g. `DATABASE_URL`). Both must be the caller's organization's.
pub async fn link(engine: &Engine, caller: &Caller, id: ServiceId, app: AppId, name: &str) -> Result<(), ServiceError> {
    access::check_with(engine, caller, Target::Service(id), ProjectRole::Deployer).await?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let svc = load(engine, &mut conn, caller.org_id.0, id).await?;
    drop(conn);
    crate::apps::put_env(engine, caller, app, name, &svc.internal_url())
        .await
        .map_err(|e| match e {
            crate::apps::AppError::Invalid(v) => ServiceError::Invalid(v),
            crate::apps::AppError::NotFound => ServiceError::NotFound,
            crate::apps::AppError::Forbidden(m) => ServiceError::Forbidden(m),
            crate::apps::AppError::Store(s) => ServiceError::Store(s),
            other => ServiceError::Corrupt(other.to_string()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_addresses_and_ports_are_checked() {
        assert_eq!(
            External::parse("", "15432").unwrap(),
            External {
                bind: "127.0.0.1".into(),
                port: 15432
            }
        );
        assert_eq!(External::parse("0.0.0.0", "5432").unwrap().bind, "0.0.0.0");
        assert_eq!(
            External::parse("localhost; rm", "5432").unwrap_err().field,
            "external_bind"
        );
        for p in ["80", "0", "70000", "x", "5432; rm", "54\n32"] {
            assert_eq!(
                External::parse("127.0.0.1", p).unwrap_err().field,
                "external_port",
                "{p:?}"
            );
        }
        // Surrounding whitespace is trimmed, as everywhere in forms.
        assert_eq!(External::parse("127.0.0.1", " 5432\n").unwrap().port, 5432);
    }

    #[test]
    fn limits_are_bounded() {
        assert_eq!(Settings::parse("postgres:16", "", "", None).unwrap().cpu_millis, None);
        assert_eq!(
            Settings::parse("postgres:16", "500", "256", None).unwrap().memory_mb,
            Some(256)
        );
        assert_eq!(
            Settings::parse("postgres:16", "-1", "", None).unwrap_err().field,
            "cpu_millis"
        );
        assert_eq!(
            Settings::parse("postgres:16", "", "1e9", None).unwrap_err().field,
            "memory_mb"
        );
        assert_eq!(Settings::parse("bad image!", "", "", None).unwrap_err().field, "image");
    }

    #[test]
    fn docker_refusals_are_shown_unreachable_docker_is_unavailable() {
        let refused = ServiceError::Docker(DockerError::Refused {
            status: 500,
            message: "port is already allocated".into(),
        });
        assert_eq!(
            refused.kind(),
            ErrorKind::Conflict {
                field: "service",
                message: "Docker refused: port is already allocated".into()
            }
        );
        assert_eq!(
            ServiceError::Docker(DockerError::Timeout(10)).kind(),
            ErrorKind::Unavailable
        );
    }

    #[test]
    fn masking_hides_the_password_only() {
        assert_eq!(
            mask("postgres://app:s3cr3t@db:5432/app", "s3cr3t"),
            "postgres://app:********@db:5432/app"
        );
    }
}
