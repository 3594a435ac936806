//! `/api/v1/services`, `/api/v1/destinations`, `/api/v1/backups` and
//! `/api/v1/schedules`: database services and their backups, thin over
//! `engine::services` and `engine::backups`, as the server functions are.
//! Connection details with the password come only on explicit request
//! (`POST .../connection`, not for viewer keys).

use super::{
    engine_err, flag, id, if_match, merging, stamp, tagged_as, Body, Created, Key, PageQuery, Problem, Revealer,
};
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use engine::accounts::Caller;
use engine::backups::{self, NewDestination, NewSchedule, RestoreInto, Subject};
use engine::ids::ServiceId;
use engine::services::{self, Action, NewService, ServiceDetail, Settings};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

#[derive(Serialize, ToSchema)]
pub struct ServiceItem {
    pub id: Uuid,
    pub name: String,
    /// `postgres`, `mysql`, `mariadb`, `mongo` or `redis`.
    pub engine: String,
    pub environment_id: Uuid,
    pub state: String,
}

#[derive(Serialize, ToSchema)]
pub struct ServicePage {
    pub items: Vec<ServiceItem>,
    pub next: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Service {
    pub id: Uuid,
    pub name: String,
    pub engine: String,
    pub image: String,
    pub project_id: Uuid,
    pub environment_id: Uuid,
    pub environment: String,
    pub database: Option<String>,
    pub user: Option<String>,
    pub cpu_millis: Option<i32>,
    pub memory_mb: Option<i32>,
    pub external_bind: Option<String>,
    pub external_port: Option<i32>,
    /// `running`, `stopped`, ... (what Docker says now).
    pub state: String,
    /// Whether it accepts connections (absent while not known).
    pub ready: Option<bool>,
    /// The connection URL inside the project's network, password masked.
    pub internal_url: String,
    pub external_url: Option<String>,
    pub last_error: Option<String>,
    pub created_at: String,
}

impl From<ServiceDetail> for Service {
    fn from(d: ServiceDetail) -> Self {
        Service {
            id: d.row.id,
            name: d.row.name,
            engine: d.engine.as_str().to_owned(),
            image: d.row.image,
            project_id: d.project_id.0,
            environment_id: d.row.environment_id,
            environment: d.environment_name,
            database: d.row.database_name,
            user: d.row.username,
            cpu_millis: d.row.cpu_millis,
            memory_mb: d.row.memory_mb,
            external_bind: d.row.external_bind,
            external_port: d.row.external_port,
            state: d.state.to_string(),
            ready: d.ready,
            internal_url: d.internal_url_masked,
            external_url: d.external_url_masked,
            last_error: d.row.last_error,
            created_at: stamp(d.row.created_at),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewServiceIn {
    pub environment_id: String,
    /// A DNS label.
    pub name: String,
    /// `postgres`, `mysql`, `mariadb`, `mongo` or `redis`.
    pub engine: String,
    /// Default: the engine's default image.
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub database: String,
    #[serde(default)]
    pub user: String,
    pub cpu_millis: Option<u32>,
    pub memory_mb: Option<u32>,
    /// A port on the host (instance administrators beyond loopback).
    pub external_port: Option<u16>,
    /// The host address for `external_port` (default 127.0.0.1).
    #[serde(default)]
    pub external_bind: String,
    /// Redis: `aof` (default) or `rdb`.
    #[serde(default)]
    pub persistence: String,
}

/// Fields left out stay as they are; `external_port: 0` unpublishes.
#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceChange {
    pub image: Option<String>,
    pub cpu_millis: Option<u32>,
    pub memory_mb: Option<u32>,
    pub external_port: Option<u16>,
    pub external_bind: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionIn {
    /// `start`, `stop` or `restart`.
    pub action: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ServiceRemoval {
    /// The service's name again: deleting cannot be undone.
    pub confirm: Option<String>,
    /// `true` removes its data volume too.
    pub remove_volume: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Connection {
    pub password: String,
    pub root_password: Option<String>,
    pub internal_url: String,
    pub external_url: Option<String>,
}

impl Service {
    /// The tag of what an update changes: its state and readiness move on
    /// their own and must not fail an `If-Match`.
    fn tag(&self) -> String {
        super::etag(&(
            &self.image,
            self.cpu_millis,
            self.memory_mb,
            &self.external_bind,
            self.external_port,
        ))
    }

    fn answer(self, status: StatusCode) -> Response {
        let tag = self.tag();
        tagged_as(status, self, &tag)
    }
}

fn text(v: Option<u32>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

/// The database services of a project, by name.
#[utoipa::path(get, path = "/projects/{id}/services", tag = "services", params(("id" = String, Path), PageQuery),
    responses((status = 200, body = ServicePage), (status = 404, body = Problem)))]
pub async fn list(
    State(s): State<AppState>,
    Key(c): Key,
    Path(pid): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Json<ServicePage>, ApiError> {
    let rows = services::list_in_project(s.engine(), &c, id(&pid)?)
        .await
        .map_err(engine_err)?;
    let (rows, next) = q.page(rows, |x| format!("{}\u{1f}{}", x.name, x.id.0))?;
    Ok(Json(ServicePage {
        items: rows
            .into_iter()
            .map(|x| ServiceItem {
                id: x.id.0,
                name: x.name,
                engine: x.engine.as_str().to_owned(),
                environment_id: x.environment_id.0,
                state: x.state.to_string(),
            })
            .collect(),
        next,
    }))
}

/// Creates a database service and starts it (its password is generated).
#[utoipa::path(post, path = "/services", tag = "services", request_body = NewServiceIn,
    responses((status = 201, body = Service), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn create(State(s): State<AppState>, Key(c): Key, Body(b): Body<NewServiceIn>) -> Result<Response, ApiError> {
    let engine = s.engine();
    let port = b.external_port.map(|p| p.to_string());
    let new = NewService::parse(
        engine,
        id(&b.environment_id)?,
        &b.name,
        &b.engine,
        &b.image,
        &b.database,
        &b.user,
        &text(b.cpu_millis),
        &text(b.memory_mb),
        port.as_deref().map(|p| (b.external_bind.as_str(), p)),
    )
    .and_then(|n| n.with_persistence(&b.persistence))
    .map_err(engine_err)?;
    let sid = services::create(engine, &c, new).await.map_err(engine_err)?;
    let d = services::get(engine, &c, sid).await.map_err(engine_err)?;
    Ok(Service::from(d).answer(StatusCode::CREATED))
}

/// A database service: its settings and state, the password masked.
#[utoipa::path(get, path = "/services/{id}", tag = "services", params(("id" = String, Path)),
    responses((status = 200, body = Service, headers(("ETag" = String))), (status = 404, body = Problem)))]
pub async fn get(State(s): State<AppState>, Key(c): Key, Path(sid): Path<String>) -> Result<Response, ApiError> {
    let d = services::get(s.engine(), &c, id(&sid)?).await.map_err(engine_err)?;
    Ok(Service::from(d).answer(StatusCode::OK))
}

/// Changes the image, limits or published port (the container is recreated).
#[utoipa::path(patch, path = "/services/{id}", tag = "services", request_body = ServiceChange,
    params(("id" = String, Path), ("If-Match" = Option<String>, Header, description = "The ETag last read")),
    responses((status = 200, body = Service), (status = 412, body = Problem), (status = 422, body = Problem)))]
pub async fn update(
    State(s): State<AppState>,
    Key(c): Key,
    Path(sid): Path<String>,
    headers: HeaderMap,
    Body(b): Body<ServiceChange>,
) -> Result<Response, ApiError> {
    let sid: ServiceId = id(&sid)?;
    merging(&headers, || update_once(&s, &c, sid, &headers, b.clone())).await
}

/// One read, merge and guarded write of [`update`].
async fn update_once(
    s: &AppState,
    c: &Caller,
    sid: ServiceId,
    headers: &HeaderMap,
    b: ServiceChange,
) -> Result<Response, ApiError> {
    let engine = s.engine();
    let detail = services::get(engine, c, sid).await.map_err(engine_err)?;
    let read = detail.version;
    let now = Service::from(detail);
    if_match(headers, &now.tag())?;
    let image = b.image.unwrap_or_else(|| now.image.clone());
    let keep = |v: Option<u32>, old: Option<i32>| match v {
        Some(x) => x.to_string(),
        None => old.map(|x| x.to_string()).unwrap_or_default(),
    };
    let cpu = keep(b.cpu_millis, now.cpu_millis);
    let mem = keep(b.memory_mb, now.memory_mb);
    let port = match b.external_port {
        Some(0) => None,
        Some(p) => Some(p.to_string()),
        None => now.external_port.map(|p| p.to_string()),
    };
    let bind = b.external_bind.or(now.external_bind).unwrap_or_default();
    let settings =
        Settings::parse(&image, &cpu, &mem, port.as_deref().map(|p| (bind.as_str(), p))).map_err(engine_err)?;
    services::update(engine, c, sid, settings, Some(read))
        .await
        .map_err(engine_err)?;
    let d = services::get(engine, c, sid).await.map_err(engine_err)?;
    Ok(Service::from(d).answer(StatusCode::OK))
}

/// Deletes a database service (admins): `confirm` must repeat its name.
#[utoipa::path(delete, path = "/services/{id}", tag = "services", params(("id" = String, Path), ServiceRemoval),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn delete(
    State(s): State<AppState>,
    Key(c): Key,
    Path(sid): Path<String>,
    Query(q): Query<ServiceRemoval>,
) -> Result<StatusCode, ApiError> {
    let remove_volume = flag("remove_volume", q.remove_volume.as_deref())?;
    services::delete_confirmed(
        s.engine(),
        &c,
        id(&sid)?,
        q.confirm.as_deref().unwrap_or(""),
        remove_volume,
    )
    .await
    .map_err(engine_err)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Starts, stops or restarts a database service.
#[utoipa::path(post, path = "/services/{id}/actions", tag = "services", request_body = ActionIn, params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn act(
    State(s): State<AppState>,
    Key(c): Key,
    Path(sid): Path<String>,
    Body(b): Body<ActionIn>,
) -> Result<StatusCode, ApiError> {
    let sid: ServiceId = id(&sid)?;
    let action = Action::parse(&b.action).map_err(engine_err)?;
    services::act(s.engine(), &c, sid, action).await.map_err(engine_err)?;
    Ok(StatusCode::NO_CONTENT)
}

/// The connection details with the password (an explicit request; not for viewer keys).
#[utoipa::path(post, path = "/services/{id}/connection", tag = "services", params(("id" = String, Path)),
    responses((status = 200, body = Connection), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn connection(
    State(s): State<AppState>,
    Revealer(c): Revealer,
    Path(sid): Path<String>,
) -> Result<Json<Connection>, ApiError> {
    let r = services::reveal(s.engine(), &c, id(&sid)?).await.map_err(engine_err)?;
    Ok(Json(Connection {
        password: r.password,
        root_password: r.root_password,
        internal_url: r.internal_url,
        external_url: r.external_url,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct Destination {
    pub id: Uuid,
    pub name: String,
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub prefix: String,
    pub access_key: String,
    pub path_style: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDestinationIn {
    pub name: String,
    /// `https://...` (a public address, unless the instance allows private ones).
    pub endpoint: String,
    #[serde(default)]
    pub region: String,
    pub bucket: String,
    #[serde(default)]
    pub prefix: String,
    pub access_key: String,
    pub secret_key: String,
    #[serde(default)]
    pub path_style: bool,
}

#[derive(Serialize, ToSchema)]
pub struct DestinationList {
    pub items: Vec<Destination>,
}

/// The organization's S3 destinations (secret keys are never shown).
#[utoipa::path(get, path = "/destinations", tag = "backups",
    responses((status = 200, body = DestinationList)))]
pub async fn destinations(State(s): State<AppState>, Key(c): Key) -> Result<Json<DestinationList>, ApiError> {
    let rows = backups::list_destinations(s.engine(), &c).await.map_err(engine_err)?;
    Ok(Json(DestinationList {
        items: rows
            .into_iter()
            .map(|d| Destination {
                id: d.id,
                name: d.name,
                endpoint: d.endpoint,
                region: d.region,
                bucket: d.bucket,
                prefix: d.prefix,
                access_key: d.access_key,
                path_style: d.path_style,
            })
            .collect(),
    }))
}

/// Adds an S3 destination (admins).
#[utoipa::path(post, path = "/destinations", tag = "backups", request_body = NewDestinationIn,
    responses((status = 201, body = Created), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn add_destination(
    State(s): State<AppState>,
    Key(c): Key,
    Body(b): Body<NewDestinationIn>,
) -> Result<Response, ApiError> {
    let new = NewDestination::parse(
        &b.name,
        &b.endpoint,
        &b.region,
        &b.bucket,
        &b.prefix,
        &b.access_key,
        &b.secret_key,
        b.path_style,
    )
    .map_err(engine_err)?;
    let did = backups::create_destination(s.engine(), &c, new)
        .await
        .map_err(engine_err)?;
    Ok((StatusCode::CREATED, Json(Created { id: did.0 })).into_response())
}

/// Removes an S3 destination (admins).
#[utoipa::path(delete, path = "/destinations/{id}", tag = "backups", params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn remove_destination(
    State(s): State<AppState>,
    Key(c): Key,
    Path(did): Path<String>,
) -> Result<StatusCode, ApiError> {
    backups::delete_destination(s.engine(), &c, id(&did)?)
        .await
        .map_err(engine_err)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lists, writes and deletes a small object in the destination; fails with S3's words.
#[utoipa::path(post, path = "/destinations/{id}/test", tag = "backups", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn test_destination(
    State(s): State<AppState>,
    Key(c): Key,
    Path(did): Path<String>,
) -> Result<StatusCode, ApiError> {
    backups::test_destination(s.engine(), &c, id(&did)?)
        .await
        .map_err(engine_err)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct Backup {
    pub id: Uuid,
    pub destination_id: Uuid,
    pub trigger: String,
    pub status: String,
    /// The object's key in the bucket.
    pub key: Option<String>,
    pub size_bytes: i64,
    pub error: Option<String>,
    pub created_at: String,
    pub pruned: bool,
    /// The latest restore drill's result, if any.
    pub drill_status: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Restore {
    pub id: Uuid,
    pub backup_id: Uuid,
    pub status: String,
    pub bytes: i64,
    pub error: Option<String>,
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct Schedule {
    pub id: Uuid,
    pub destination_id: Uuid,
    pub cron: String,
    pub timezone: String,
    pub keep_last: i32,
    /// A restore drill after each backup.
    pub drill: bool,
    pub next_runs: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct BackupHistory {
    pub backups: Vec<Backup>,
    pub restores: Vec<Restore>,
    pub schedules: Vec<Schedule>,
}

/// A service's backups, restores and schedules, newest first.
#[utoipa::path(get, path = "/services/{id}/backups", tag = "backups", params(("id" = String, Path)),
    responses((status = 200, body = BackupHistory), (status = 404, body = Problem)))]
pub async fn history(
    State(s): State<AppState>,
    Key(c): Key,
    Path(sid): Path<String>,
) -> Result<Json<BackupHistory>, ApiError> {
    let h = backups::history(s.engine(), &c, Subject::Service(id(&sid)?))
        .await
        .map_err(engine_err)?;
    Ok(Json(BackupHistory {
        backups: h
            .backups
            .into_iter()
            .map(|b| Backup {
                id: b.id,
                destination_id: b.destination_id,
                trigger: b.trigger.to_string(),
                status: b.status.to_string(),
                key: b.object_key,
                size_bytes: b.size_bytes,
                error: b.error,
                created_at: stamp(b.created_at),
                pruned: b.pruned_at.is_some(),
                drill_status: b.drill_status.map(|d| d.to_string()),
            })
            .collect(),
        restores: h
            .restores
            .into_iter()
            .map(|r| Restore {
                id: r.id,
                backup_id: r.backup_id,
                status: r.status.to_string(),
                bytes: r.bytes,
                error: r.error,
                created_at: stamp(r.created_at),
            })
            .collect(),
        schedules: h
            .schedules
            .into_iter()
            .map(|x| Schedule {
                id: x.row.id,
                destination_id: x.row.destination_id,
                cron: x.row.cron,
                timezone: x.row.timezone,
                keep_last: x.row.keep_last,
                drill: x.row.drill,
                next_runs: x.next_runs.into_iter().map(stamp).collect(),
            })
            .collect(),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupIn {
    pub destination_id: String,
}

/// Backs the service up now, to a destination (a queued job).
#[utoipa::path(post, path = "/services/{id}/backups", tag = "backups", request_body = BackupIn, params(("id" = String, Path)),
    responses((status = 202, body = Created), (status = 404, body = Problem)))]
pub async fn backup_now(
    State(s): State<AppState>,
    Key(c): Key,
    Path(sid): Path<String>,
    Body(b): Body<BackupIn>,
) -> Result<Response, ApiError> {
    let sid: ServiceId = id(&sid)?;
    let bid = backups::backup_now(s.engine(), &c, Subject::Service(sid), id(&b.destination_id)?)
        .await
        .map_err(engine_err)?;
    Ok((StatusCode::ACCEPTED, Json(Created { id: bid.0 })).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreIn {
    /// The service the backup is of (or another of the same engine).
    pub service_id: String,
    /// `existing` (replaces its data; `confirm` repeats its name) or `new`.
    pub target: String,
    #[serde(default)]
    pub confirm: String,
    /// For `new`: the new service's name.
    #[serde(default)]
    pub new_name: String,
}

/// Restores a backup into its service or into a new one (a queued job).
#[utoipa::path(post, path = "/backups/{id}/restore", tag = "backups", request_body = RestoreIn, params(("id" = String, Path)),
    responses((status = 202, body = Created), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn restore(
    State(s): State<AppState>,
    Key(c): Key,
    Path(bid): Path<String>,
    Body(b): Body<RestoreIn>,
) -> Result<Response, ApiError> {
    let bid = id(&bid)?;
    let sid: ServiceId = id(&b.service_id)?;
    let engine = s.engine();
    let into = RestoreInto::choose(engine, &c, sid, &b.target, &b.confirm, &b.new_name)
        .await
        .map_err(engine_err)?;
    let (rid, _) = backups::restore(engine, &c, bid, into).await.map_err(engine_err)?;
    Ok((StatusCode::ACCEPTED, Json(Created { id: rid.0 })).into_response())
}

/// Restores a backup into a throwaway container and checks it (a queued job).
#[utoipa::path(post, path = "/backups/{id}/drill", tag = "backups", params(("id" = String, Path)),
    responses((status = 202), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn drill(State(s): State<AppState>, Key(c): Key, Path(bid): Path<String>) -> Result<StatusCode, ApiError> {
    backups::drill(s.engine(), &c, id(&bid)?).await.map_err(engine_err)?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleIn {
    pub destination_id: String,
    /// Five fields, e.g. `0 3 * * *`.
    pub cron: String,
    /// An IANA zone, e.g. `Europe/Paris` (default UTC).
    #[serde(default)]
    pub timezone: String,
    /// Backups kept (older ones are pruned).
    pub keep_last: u32,
    #[serde(default)]
    pub drill: bool,
}

/// Backs the service up on a schedule.
#[utoipa::path(post, path = "/services/{id}/schedules", tag = "backups", request_body = ScheduleIn, params(("id" = String, Path)),
    responses((status = 201, body = Created), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn add_schedule(
    State(s): State<AppState>,
    Key(c): Key,
    Path(sid): Path<String>,
    Body(b): Body<ScheduleIn>,
) -> Result<Response, ApiError> {
    let sid: ServiceId = id(&sid)?;
    let new = NewSchedule::parse(
        id(&b.destination_id)?,
        &b.cron,
        &b.timezone,
        &b.keep_last.to_string(),
        b.drill,
    )
    .map_err(engine_err)?;
    let scid = backups::create_schedule(s.engine(), &c, Subject::Service(sid), new)
        .await
        .map_err(engine_err)?;
    Ok((StatusCode::CREATED, Json(Created { id: scid.0 })).into_response())
}

/// Removes a backup schedule (its backups stay).
#[utoipa::path(delete, path = "/schedules/{id}", tag = "backups", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn remove_schedule(
    State(s): State<AppState>,
    Key(c): Key,
    Path(scid): Path<String>,
) -> Result<StatusCode, ApiError> {
    backups::delete_schedule(s.engine(), &c, id(&scid)?)
        .await
        .map_err(engine_err)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Runs a schedule's backup now (a queued job).
#[utoipa::path(post, path = "/schedules/{id}/run", tag = "backups", params(("id" = String, Path)),
    responses((status = 202, body = Created), (status = 404, body = Problem)))]
pub async fn run_schedule(
    State(s): State<AppState>,
    Key(c): Key,
    Path(scid): Path<String>,
) -> Result<Response, ApiError> {
    let bid = backups::run_schedule_now(s.engine(), &c, id(&scid)?)
        .await
        .map_err(engine_err)?;
    Ok((StatusCode::ACCEPTED, Json(Created { id: bid.0 })).into_response())
}
