//! Backups of database services (and of Berth's own database) to S3: the
//! organization's destinations, backups on demand and on schedules, their
//! history, restores (into the running service or a new one) and restore drills.
//! This module is the caller-facing half: every function takes the caller and
//! scopes each query by their organization (a foreign ID is "not found"). The
//! work itself runs in the worker (`jobs`), from rows queued here.

pub mod kinds;
pub mod own;
pub mod s3;
pub mod schedule;
pub mod transition;
pub mod work;

use crate::access::{self, Target};
use crate::accounts::{is_unique_violation, Caller};
use crate::db::schema::{backup_schedules, backups, database_services, restores, s3_destinations, schedule_slots};
use crate::error::{Classify, ErrorKind, StoreError};
use crate::ids::{BackupId, DestinationId, RestoreId, ScheduleId, ServiceId};
use crate::names::ProjectRole;
use crate::names::ValidationError;
use crate::services::{self, ServiceError};
use crate::Engine;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use lifecycle::{BackupTrigger, DrillStatus, JobStatus};
use uuid::Uuid;

pub use crate::services::OWN_NAME;

/// Where a destination's sealed secret key lives.
pub(crate) fn secret_slot(destination: &str) -> crate::secrets::Slot<'_> {
    crate::secrets::Slot::new("s3_destinations", "secret_key", destination)
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Forbidden(&'static str),
    /// Not possible in the current state (e.g. restoring a failed backup).
    #[error("{0}")]
    State(String),
    /// S3 refused or could not be reached; the message names the cause.
    #[error("{0}")]
    S3(String),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::denied_into!(BackupError);

impl From<diesel::result::Error> for BackupError {
    fn from(e: diesel::result::Error) -> Self {
        if is_unique_violation(&e, "s3_destinations_organization_id_name_key") {
            return ValidationError::new("name", "a destination with this name already exists").into();
        }
        BackupError::Store(e.into())
    }
}

impl Classify for BackupError {
    fn kind(&self) -> ErrorKind {
        match self {
            BackupError::Invalid(v) => v.kind(),
            BackupError::NotFound => ErrorKind::NotFound,
            BackupError::Forbidden(m) => ErrorKind::Forbidden((*m).to_owned()),
            BackupError::State(m) => ErrorKind::Conflict {
                field: "backup",
                message: m.clone(),
            },
            BackupError::S3(m) => ErrorKind::Conflict {
                field: "destination",
                message: m.clone(),
            },
            BackupError::Service(s) => s.kind(),
            BackupError::Corrupt(_) => ErrorKind::Internal,
            BackupError::Store(s) => s.kind(),
        }
    }
}

// ---------------------------------------------------------------- destinations

/// A destination as shown (never the secret).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = s3_destinations)]
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

/// A new destination, parsed.
pub struct NewDestination {
    pub name: String,
    pub target: s3::Target,
}

impl NewDestination {
    #[allow(clippy::too_many_arguments)]
    pub fn parse(
        name: &str,
        endpoint: &str,
        region: &str,
        bucket: &str,
        prefix: &str,
        access_key: &str,
        secret_key: &str,
        path_style: bool,
    ) -> Result<Self, ValidationError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            return Err(ValidationError::new(
                "name",
                "must be 1-64 characters, no control characters",
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            target: s3::Target {
                endpoint: s3::parse_endpoint(endpoint)?,
                region: s3::parse_region(region)?,
                bucket: s3::parse_bucket(bucket)?,
                prefix: s3::parse_prefix(prefix)?,
                access_key: s3::parse_access_key(access_key)?,
                secret_key: s3::parse_secret_key(secret_key)?,
                path_style,
                // Decided where it is used, by the instance's policy.
                pinned: false,
            },
        })
    }
}

pub async fn list_destinations(engine: &Engine, caller: &Caller) -> Result<Vec<Destination>, BackupError> {
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    Ok(s3_destinations::table
        .filter(s3_destinations::organization_id.eq(caller.org_id.0))
        .order(s3_destinations::name.asc())
        .select(Destination::as_select())
        .load(&mut conn)
        .await?)
}

pub async fn create_destination(
    engine: &Engine,
    caller: &Caller,
    new: NewDestination,
) -> Result<DestinationId, BackupError> {
    access::organization_wide(caller, DESTINATIONS_ARE_THE_ORGS)?;
    if !caller.role.can_manage() {
        return Err(BackupError::Forbidden(
            "only admins and owners can add backup destinations",
        ));
    }
    check_endpoint(engine, &new.target.endpoint).await?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let t = &new.target;
    // The id is made here: the secret key is sealed for this row.
    let id = Uuid::new_v4();
    let id: Uuid = crate::audited!(conn, BackupError, {
        Ok(diesel::insert_into(s3_destinations::table)
            .values((
                s3_destinations::id.eq(id),
                s3_destinations::organization_id.eq(caller.org_id.0),
                s3_destinations::name.eq(&new.name),
                s3_destinations::endpoint.eq(&t.endpoint),
                s3_destinations::region.eq(&t.region),
                s3_destinations::bucket.eq(&t.bucket),
                s3_destinations::prefix.eq(&t.prefix),
                s3_destinations::access_key.eq(&t.access_key),
                s3_destinations::secret_key.eq(engine
                    .secret
                    .seal(secret_slot(&id.to_string()), t.secret_key.as_bytes())),
                s3_destinations::path_style.eq(t.path_style),
            ))
            .returning(s3_destinations::id)
            .get_result(conn)
            .await?)
    })
    .await?;
    tracing::info!(destination.id = %id, org.id = %caller.org_id, "backup destination added");
    Ok(DestinationId(id))
}

pub async fn delete_destination(engine: &Engine, caller: &Caller, id: DestinationId) -> Result<(), BackupError> {
    access::organization_wide(caller, DESTINATIONS_ARE_THE_ORGS)?;
    if !caller.role.can_manage() {
        return Err(BackupError::Forbidden(
            "only admins and owners can remove backup destinations",
        ));
    }
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let n = crate::audited!(conn, BackupError, {
        Ok(diesel::delete(
            s3_destinations::table
                .filter(s3_destinations::id.eq(id.0))
                .filter(s3_destinations::organization_id.eq(caller.org_id.0)),
        )
        .execute(conn)
        .await?)
    })
    .await?;
    if n == 0 {
        return Err(BackupError::NotFound);
    }
    Ok(())
}

/// The destination's settings with the secret opened (scoped by `org`).
pub(crate) async fn target(
    engine: &Engine,
    conn: &mut AsyncPgConnection,
    org: Uuid,
    id: Uuid,
) -> Result<s3::Target, BackupError> {
    type Row = (String, String, String, String, String, String, bool);
    let row: Row = s3_destinations::table
        .filter(s3_destinations::id.eq(id))
        .filter(s3_destinations::organization_id.eq(org))
        .select((
            s3_destinations::endpoint,
            s3_destinations::region,
            s3_destinations::bucket,
            s3_destinations::prefix,
            s3_destinations::access_key,
            s3_destinations::secret_key,
            s3_destinations::path_style,
        ))
        .first(conn)
        .await
        .optional()?
        .ok_or(BackupError::NotFound)?;
    let secret = engine
        .secret
        .open_text(secret_slot(&id.to_string()), &row.5)
        .map_err(|e| BackupError::Corrupt(format!("destination {id} secret: {e}")))?;
    Ok(s3::Target {
        endpoint: row.0,
        region: row.1,
        bucket: row.2,
        prefix: row.3,
        access_key: row.4,
        secret_key: secret,
        path_style: row.6,
        pinned: !engine.deploy.host.allow_private_targets,
    })
}

/// Writes and deletes a small object; the error names S3's answer.
pub async fn test_destination(engine: &Engine, caller: &Caller, id: DestinationId) -> Result<(), BackupError> {
    access::organization_wide(caller, DESTINATIONS_ARE_THE_ORGS)?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let t = target(engine, &mut conn, caller.org_id.0, id.0).await?;
    drop(conn);
    check_endpoint(engine, &t.endpoint).await?;
    s3::test_connection(&t).await.map_err(BackupError::S3)
}

/// A user-given endpoint must be one this instance may reach: https, on a
/// public address, unless private targets are allowed (then anything). Checked
/// at the form for a clear 422; the connection itself is pinned as well
/// ([`crate::outbound::Pinning`]), so a name that changes later cannot get in.
async fn check_endpoint(engine: &Engine, endpoint: &str) -> Result<(), BackupError> {
    let policy = crate::outbound::Policy::of(engine);
    let invalid = |m: String| BackupError::Invalid(ValidationError::new("endpoint", m));
    let url = url::Url::parse(endpoint).map_err(|e| invalid(e.to_string()))?;
    if !policy.allow_private && url.scheme() != "https" {
        return Err(invalid(
            "must be https:// (plain http only where BERTH_ALLOW_PRIVATE_TARGETS allows private targets)".into(),
        ));
    }
    let host = url.host_str().ok_or_else(|| invalid("has no host".into()))?;
    let port = url.port_or_known_default().unwrap_or(443);
    policy.resolve(host, port).await.map_err(|e| invalid(e.to_string()))?;
    Ok(())
}

// ---------------------------------------------------------------------- backups

/// One backup in a history, with its drill.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = backups)]
pub struct Backup {
    pub id: Uuid,
    pub service_id: Option<Uuid>,
    pub service_name: String,
    pub engine: String,
    pub destination_id: Uuid,
    pub schedule_id: Option<Uuid>,
    pub trigger: BackupTrigger,
    pub status: JobStatus,
    pub object_key: Option<String>,
    pub size_bytes: i64,
    pub error: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub pruned_at: Option<DateTime<Utc>>,
    pub drill_status: Option<DrillStatus>,
    pub drill_detail: Option<String>,
    pub drill_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl Backup {
    /// A backup of Berth's own database (no service, filed under its name).
    pub fn is_own(&self) -> bool {
        self.service_id.is_none() && self.service_name == OWN_NAME
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = restores)]
pub struct Restore {
    pub id: Uuid,
    pub backup_id: Uuid,
    pub service_id: Uuid,
    pub status: JobStatus,
    pub bytes: i64,
    pub error: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = backup_schedules)]
pub struct ScheduleRow {
    pub id: Uuid,
    pub service_id: Option<Uuid>,
    pub destination_id: Uuid,
    pub cron: String,
    pub timezone: String,
    pub keep_last: i32,
    pub drill: bool,
    pub enabled: bool,
    pub last_slot: DateTime<Utc>,
}

/// A schedule with its next runs and its newest slot taken.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub row: ScheduleRow,
    pub next_runs: Vec<DateTime<Utc>>,
    /// (slot, when it was taken, slots missed before it)
    pub last_taken: Option<(DateTime<Utc>, DateTime<Utc>, i32)>,
}

/// Backups, restores and schedules of one service (or of Berth's own database).
#[derive(Debug, Clone)]
pub struct History {
    pub backups: Vec<Backup>,
    pub restores: Vec<Restore>,
    pub schedules: Vec<Schedule>,
}

/// Which database a backup API call is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Service(ServiceId),
    /// Berth's own database: only owners and admins of the organization that
    /// onboarded the instance (it holds every organization's data).
    Own,
}

/// What a member limited to projects is told about the organization's S3 destinations.
const DESTINATIONS_ARE_THE_ORGS: &str =
    "S3 destinations belong to the whole organization: a member limited to projects cannot change them";

/// Whether the caller's role in the subject's project is at least `need`
/// (Berth's own database is in no project: its own rule is in [`subject`]).
async fn may(engine: &Engine, caller: &Caller, s: &Subject, need: ProjectRole) -> Result<(), BackupError> {
    match s {
        Subject::Service(id) => Ok(access::check_with(engine, caller, Target::Service(*id), need).await?),
        Subject::Own => Ok(access::organization_wide(
            caller,
            "Berth's own database is not in a project",
        )?),
    }
}

/// Checks the caller may act on the subject; returns (service id, name, engine).
async fn subject(
    conn: &mut AsyncPgConnection,
    caller: &Caller,
    s: Subject,
) -> Result<(Option<Uuid>, String, String), BackupError> {
    match s {
        Subject::Service(id) => {
            let (name, kind): (String, String) = database_services::table
                .filter(database_services::id.eq(id.0))
                .filter(database_services::organization_id.eq(caller.org_id.0))
                .select((database_services::name, database_services::engine))
                .first(conn)
                .await
                .optional()?
                .ok_or(BackupError::NotFound)?;
            Ok((Some(id.0), name, kind))
        }
        Subject::Own => {
            // Berth's own database holds every organization's data: an instance
            // administrator's power. Not "forbidden": to anyone else it does not exist.
            if !caller.instance_admin {
                return Err(BackupError::NotFound);
            }
            Ok((None, OWN_NAME.to_owned(), "postgres".to_owned()))
        }
    }
}

type BackupFilter = Box<
    dyn BoxableExpression<
        backups::table,
        diesel::pg::Pg,
        SqlType = diesel::sql_types::Nullable<diesel::sql_types::Bool>,
    >,
>;

fn service_filter(service: Option<Uuid>) -> BackupFilter {
    match service {
        Some(s) => Box::new(backups::service_id.eq(s)),
        None => Box::new(
            backups::service_id
                .is_null()
                .and(backups::service_name.eq(OWN_NAME))
                .nullable(),
        ),
    }
}

pub async fn history(engine: &Engine, caller: &Caller, s: Subject) -> Result<History, BackupError> {
    may(engine, caller, &s, ProjectRole::Viewer).await?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let (service, _, _) = subject(&mut conn, caller, s).await?;
    let org = caller.org_id.0;
    let backups_list = backups::table
        .filter(backups::organization_id.eq(org))
        .filter(service_filter(service))
        .order(backups::created_at.desc())
        .limit(100)
        .select(Backup::as_select())
        .load(&mut conn)
        .await?;
    let restores_list = match service {
        Some(sid) => {
            restores::table
                .filter(restores::organization_id.eq(org))
                .filter(restores::service_id.eq(sid))
                .order(restores::created_at.desc())
                .limit(20)
                .select(Restore::as_select())
                .load(&mut conn)
                .await?
        }
        None => Vec::new(),
    };
    let mut rows = backup_schedules::table
        .filter(backup_schedules::organization_id.eq(org))
        .order(backup_schedules::created_at.asc())
        .select(ScheduleRow::as_select())
        .into_boxed();
    rows = match service {
        Some(sid) => rows.filter(backup_schedules::service_id.eq(sid)),
        None => rows.filter(backup_schedules::service_id.is_null()),
    };
    let rows: Vec<ScheduleRow> = rows.load(&mut conn).await?;
    let now = Utc::now();
    let mut schedules = Vec::with_capacity(rows.len());
    for row in rows {
        let last_taken = schedule_slots::table
            .filter(schedule_slots::schedule_id.eq(row.id))
            .order(schedule_slots::slot.desc())
            .select((schedule_slots::slot, schedule_slots::taken_at, schedule_slots::missed))
            .first(&mut conn)
            .await
            .optional()?;
        let next_runs = schedule::Clock::new(&row.cron, &row.timezone)
            .map(|c| c.next_runs(now, 3))
            .unwrap_or_default();
        schedules.push(Schedule {
            row,
            next_runs,
            last_taken,
        });
    }
    Ok(History {
        backups: backups_list,
        restores: restores_list,
        schedules,
    })
}

/// Queues a backup now; returns its id. The worker runs it.
pub async fn backup_now(
    engine: &Engine,
    caller: &Caller,
    s: Subject,
    destination: DestinationId,
) -> Result<BackupId, BackupError> {
    may(engine, caller, &s, ProjectRole::Admin).await?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let (service, name, kind) = subject(&mut conn, caller, s).await?;
    target(engine, &mut conn, caller.org_id.0, destination.0).await?;
    let id: Uuid = crate::audited!(conn, BackupError, {
        Ok(diesel::insert_into(backups::table)
            .values((
                backups::organization_id.eq(caller.org_id.0),
                backups::service_id.eq(service),
                backups::service_name.eq(&name),
                backups::engine.eq(&kind),
                backups::destination_id.eq(destination.0),
                backups::trigger.eq(BackupTrigger::Manual),
            ))
            .returning(backups::id)
            .get_result(conn)
            .await?)
    })
    .await?;
    tracing::info!(backup.id = %id, service = %name, "backup queued");
    crate::events::backup_changed(engine, id).await;
    Ok(BackupId(id))
}

/// A backup of the caller's organization.
async fn load_backup(conn: &mut AsyncPgConnection, org: Uuid, id: BackupId) -> Result<Backup, BackupError> {
    backups::table
        .filter(backups::id.eq(id.0))
        .filter(backups::organization_id.eq(org))
        .select(Backup::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(BackupError::NotFound)
}

fn restorable(b: &Backup) -> Result<(), BackupError> {
    if b.status != JobStatus::Succeeded || b.object_key.is_none() {
        return Err(BackupError::State("only a successful backup can be restored".into()));
    }
    if b.pruned_at.is_some() {
        return Err(BackupError::State("this backup was deleted by retention".into()));
    }
    Ok(())
}

/// Queues a restore drill of a backup.
pub async fn drill(engine: &Engine, caller: &Caller, id: BackupId) -> Result<(), BackupError> {
    access::check_with(engine, caller, Target::Backup(id), ProjectRole::Admin).await?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let b = load_backup(&mut conn, caller.org_id.0, id).await?;
    if b.is_own() {
        subject(&mut conn, caller, Subject::Own).await?;
    }
    restorable(&b)?;
    if b.drill_status.is_some_and(DrillStatus::in_progress) {
        return Ok(());
    }
    let holder = crate::jobs::Holder::Anyone;
    let m = match b.drill_status {
        Some(from) => transition::DrillMove::new(id, from, DrillStatus::Queued, holder),
        None => transition::DrillMove::first(id, DrillStatus::Queued, holder),
    };
    match transition::drill_transition(&mut conn, m).await {
        Ok(()) => {
            drop(conn);
            crate::events::backup_changed(engine, id.0).await;
            Ok(())
        }
        // Queued by someone else in between: the same outcome.
        Err(crate::jobs::TransitionError::Lost) => Ok(()),
        Err(crate::jobs::TransitionError::Store(e)) => Err(e.into()),
        Err(e @ crate::jobs::TransitionError::Illegal(_)) => Err(BackupError::State(e.to_string())),
    }
}

/// Where a restore goes.
pub enum RestoreInto {
    /// The backup's own service (or another service of the same engine).
    Existing(ServiceId),
    /// A new service of the backup's engine, created for it in `environment`.
    New(services::NewService),
}

impl RestoreInto {
    /// Where a restore goes as its form (and the API) say it: `existing`,
    /// once `confirm` repeats the service's name (its data is replaced), or
    /// `new`: a service named `new_name` like `service` (engine, image,
    /// database, user, persistence), in its environment.
    pub async fn choose(
        engine: &Engine,
        caller: &Caller,
        service: ServiceId,
        target: &str,
        confirm: &str,
        new_name: &str,
    ) -> Result<Self, BackupError> {
        match target {
            "existing" => {
                let row = services::row(engine, caller, service).await?;
                if confirm.trim() != row.name {
                    return Err(ValidationError::new(
                        "confirm",
                        "type the service's name to confirm: its data will be replaced",
                    )
                    .into());
                }
                Ok(RestoreInto::Existing(service))
            }
            "new" => {
                let row = services::row(engine, caller, service).await?;
                let new = services::NewService::parse(
                    engine,
                    crate::ids::EnvironmentId(row.environment_id),
                    new_name,
                    &row.engine,
                    &row.image,
                    row.database_name.as_deref().unwrap_or(""),
                    row.username.as_deref().unwrap_or(""),
                    "",
                    "",
                    None,
                )
                .and_then(|n| n.with_persistence(if row.redis_aof { "aof" } else { "rdb" }))
                .map_err(|e| {
                    if e.field == "name" {
                        ValidationError::new("new_name", e.message)
                    } else {
                        e
                    }
                })?;
                Ok(RestoreInto::New(new))
            }
            _ => Err(ValidationError::new("target", "must be existing or new").into()),
        }
    }
}

/// Queues a restore; returns its id and the target service.
pub async fn restore(
    engine: &Engine,
    caller: &Caller,
    id: BackupId,
    into: RestoreInto,
) -> Result<(RestoreId, ServiceId), BackupError> {
    access::check_with(engine, caller, Target::Backup(id), ProjectRole::Admin).await?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let b = load_backup(&mut conn, caller.org_id.0, id).await?;
    restorable(&b)?;
    if b.is_own() {
        return Err(BackupError::State(
            "Berth's own database is restored with `berth admin restore-database` (docs/OPERATIONS.md)".into(),
        ));
    }
    let into_project = match &into {
        RestoreInto::Existing(sid) => Target::Service(*sid),
        RestoreInto::New(new) => Target::Environment(new.environment),
    };
    access::check(&mut conn, caller, into_project, ProjectRole::Admin).await?;
    let target_service = match into {
        RestoreInto::Existing(sid) => {
            let kind: String = database_services::table
                .filter(database_services::id.eq(sid.0))
                .filter(database_services::organization_id.eq(caller.org_id.0))
                .select(database_services::engine)
                .first(&mut conn)
                .await
                .optional()?
                .ok_or(BackupError::NotFound)?;
            if kind != b.engine {
                return Err(BackupError::State(format!(
                    "a {} backup cannot be restored into a {kind} service",
                    b.engine
                )));
            }
            sid
        }
        RestoreInto::New(new) => {
            if new.engine.as_str() != b.engine {
                return Err(BackupError::State(format!(
                    "a {} backup needs a {} service",
                    b.engine, b.engine
                )));
            }
            drop(conn);
            let sid = services::create(engine, caller, new).await?;
            conn = engine.db.get().await.map_err(StoreError::from)?;
            sid
        }
    };
    let rid: Uuid = crate::audited!(conn, BackupError, {
        Ok(diesel::insert_into(restores::table)
            .values((
                restores::organization_id.eq(caller.org_id.0),
                restores::backup_id.eq(id.0),
                restores::service_id.eq(target_service.0),
            ))
            .returning(restores::id)
            .get_result(conn)
            .await?)
    })
    .await?;
    tracing::info!(restore.id = %rid, backup.id = %id, service.id = %target_service, "restore queued");
    crate::events::backup_changed(engine, rid).await;
    Ok((RestoreId(rid), target_service))
}

/// The objects in the destination under the service's folder, newest first.
pub async fn bucket_objects(
    engine: &Engine,
    caller: &Caller,
    s: Subject,
    destination: DestinationId,
) -> Result<Vec<s3::Listed>, BackupError> {
    may(engine, caller, &s, ProjectRole::Admin).await?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let (_, name, _) = subject(&mut conn, caller, s).await?;
    let t = target(engine, &mut conn, caller.org_id.0, destination.0).await?;
    drop(conn);
    s3::list(&t, &t.key(&format!("{name}/"))).await.map_err(BackupError::S3)
}

/// Records an object found in the bucket as a backup of the service, so it can
/// be restored or drilled like one Berth made.
pub async fn import_object(
    engine: &Engine,
    caller: &Caller,
    s: Subject,
    destination: DestinationId,
    key: &str,
) -> Result<BackupId, BackupError> {
    may(engine, caller, &s, ProjectRole::Admin).await?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let (service, name, kind) = subject(&mut conn, caller, s).await?;
    let t = target(engine, &mut conn, caller.org_id.0, destination.0).await?;
    let folder = t.key(&format!("{name}/"));
    let rest = key
        .strip_prefix(&folder)
        .filter(|r| {
            !r.is_empty()
                && r.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        })
        .ok_or_else(|| ValidationError::new("key", format!("must be an object under {folder}")))?;
    drop(conn);
    let listed = s3::list(&t, &format!("{folder}{rest}"))
        .await
        .map_err(BackupError::S3)?;
    let found = listed
        .into_iter()
        .find(|o| o.key == key)
        .ok_or_else(|| ValidationError::new("key", "no such object in the bucket"))?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let id: Uuid = crate::audited!(conn, BackupError, {
        Ok(diesel::insert_into(backups::table)
            .values((
                backups::organization_id.eq(caller.org_id.0),
                backups::service_id.eq(service),
                backups::service_name.eq(&name),
                backups::engine.eq(&kind),
                backups::destination_id.eq(destination.0),
                backups::trigger.eq(BackupTrigger::Bucket),
                backups::status.eq(JobStatus::Succeeded),
                backups::object_key.eq(Some(key)),
                backups::size_bytes.eq(found.size as i64),
                backups::finished_at.eq(Some(Utc::now())),
            ))
            .returning(backups::id)
            .get_result(conn)
            .await?)
    })
    .await?;
    crate::events::backup_changed(engine, id).await;
    Ok(BackupId(id))
}

// -------------------------------------------------------------------- schedules

/// A new schedule, parsed.
pub struct NewSchedule {
    pub destination: DestinationId,
    pub cron: String,
    pub timezone: String,
    pub keep_last: i32,
    pub drill: bool,
}

impl NewSchedule {
    pub fn parse(
        destination: DestinationId,
        cron: &str,
        timezone: &str,
        keep_last: &str,
        drill: bool,
    ) -> Result<Self, ValidationError> {
        Ok(Self {
            destination,
            cron: schedule::parse_cron(cron)?,
            timezone: schedule::parse_timezone(timezone)?,
            keep_last: schedule::parse_keep(keep_last)?,
            drill,
        })
    }
}

pub async fn create_schedule(
    engine: &Engine,
    caller: &Caller,
    s: Subject,
    new: NewSchedule,
) -> Result<ScheduleId, BackupError> {
    may(engine, caller, &s, ProjectRole::Admin).await?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let (service, _, _) = subject(&mut conn, caller, s).await?;
    target(engine, &mut conn, caller.org_id.0, new.destination.0).await?;
    let id: Uuid = crate::audited!(conn, BackupError, {
        Ok(diesel::insert_into(backup_schedules::table)
            .values((
                backup_schedules::organization_id.eq(caller.org_id.0),
                backup_schedules::service_id.eq(service),
                backup_schedules::destination_id.eq(new.destination.0),
                backup_schedules::cron.eq(&new.cron),
                backup_schedules::timezone.eq(&new.timezone),
                backup_schedules::keep_last.eq(new.keep_last),
                backup_schedules::drill.eq(new.drill),
            ))
            .returning(backup_schedules::id)
            .get_result(conn)
            .await?)
    })
    .await?;
    Ok(ScheduleId(id))
}

async fn load_schedule(
    conn: &mut AsyncPgConnection,
    caller: &Caller,
    id: ScheduleId,
) -> Result<ScheduleRow, BackupError> {
    let row: ScheduleRow = backup_schedules::table
        .filter(backup_schedules::id.eq(id.0))
        .filter(backup_schedules::organization_id.eq(caller.org_id.0))
        .select(ScheduleRow::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(BackupError::NotFound)?;
    if row.service_id.is_none() {
        subject(conn, caller, Subject::Own).await?;
    }
    Ok(row)
}

pub async fn delete_schedule(engine: &Engine, caller: &Caller, id: ScheduleId) -> Result<(), BackupError> {
    access::check_with(engine, caller, Target::Schedule(id), ProjectRole::Admin).await?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    load_schedule(&mut conn, caller, id).await?;
    crate::audited!(conn, BackupError, {
        Ok(diesel::delete(
            backup_schedules::table
                .filter(backup_schedules::id.eq(id.0))
                .filter(backup_schedules::organization_id.eq(caller.org_id.0)),
        )
        .execute(conn)
        .await?)
    })
    .await?;
    Ok(())
}

/// Runs a schedule's backup now (its retention and drill apply).
pub async fn run_schedule_now(engine: &Engine, caller: &Caller, id: ScheduleId) -> Result<BackupId, BackupError> {
    access::check_with(engine, caller, Target::Schedule(id), ProjectRole::Admin).await?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let row = load_schedule(&mut conn, caller, id).await?;
    let s = match row.service_id {
        Some(sid) => Subject::Service(ServiceId(sid)),
        None => Subject::Own,
    };
    let (service, name, kind) = subject(&mut conn, caller, s).await?;
    let bid: Uuid = crate::audited!(conn, BackupError, {
        Ok(diesel::insert_into(backups::table)
            .values((
                backups::organization_id.eq(caller.org_id.0),
                backups::service_id.eq(service),
                backups::service_name.eq(&name),
                backups::engine.eq(&kind),
                backups::destination_id.eq(row.destination_id),
                backups::schedule_id.eq(Some(row.id)),
                backups::trigger.eq(BackupTrigger::Manual),
            ))
            .returning(backups::id)
            .get_result(conn)
            .await?)
    })
    .await?;
    crate::events::backup_changed(engine, bid).await;
    Ok(BackupId(bid))
}

/// Berth's own database to S3 now, for `berth upgrade`: queued for the first
/// enabled own-database schedule's destination (the worker of the running
/// Berth takes it) and waited for, up to `limit`. `None`: no schedule names
/// a destination, so the local file is the only copy.
pub async fn own_to_s3_now(engine: &Engine, limit: std::time::Duration) -> Result<Option<String>, String> {
    let mut conn = engine.db.get().await.map_err(|e| e.to_string())?;
    let schedule: Option<(Uuid, Uuid, Uuid)> = backup_schedules::table
        .filter(backup_schedules::service_id.is_null())
        .filter(backup_schedules::enabled.eq(true))
        .order(backup_schedules::created_at)
        .select((
            backup_schedules::id,
            backup_schedules::organization_id,
            backup_schedules::destination_id,
        ))
        .first(&mut conn)
        .await
        .optional()
        .map_err(|e| e.to_string())?;
    let Some((schedule, org, destination)) = schedule else {
        return Ok(None);
    };
    let id: Uuid = diesel::insert_into(backups::table)
        .values((
            backups::organization_id.eq(org),
            backups::service_id.eq(None::<Uuid>),
            backups::service_name.eq(OWN_NAME),
            backups::engine.eq("postgres"),
            backups::destination_id.eq(destination),
            backups::schedule_id.eq(Some(schedule)),
            backups::trigger.eq(BackupTrigger::Manual),
        ))
        .returning(backups::id)
        .get_result(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    drop(conn);
    crate::events::backup_changed(engine, id).await;
    let start = std::time::Instant::now();
    loop {
        let mut conn = engine.db.get().await.map_err(|e| e.to_string())?;
        let b: Backup = backups::table
            .find(id)
            .select(Backup::as_select())
            .first(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        match b.status {
            JobStatus::Succeeded => return Ok(b.object_key),
            JobStatus::Failed => return Err(format!("the S3 backup failed: {}", b.error.unwrap_or_default())),
            _ if start.elapsed() > limit => {
                return Err(format!("the S3 backup did not finish within {} s", limit.as_secs()))
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
        }
    }
}

/// A backup's status, for callers that wait on it (tests, the CLI).
pub async fn backup_status(engine: &Engine, caller: &Caller, id: BackupId) -> Result<Backup, BackupError> {
    access::check_with(engine, caller, Target::Backup(id), ProjectRole::Viewer).await?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    load_backup(&mut conn, caller.org_id.0, id).await
}

pub async fn restore_status(engine: &Engine, caller: &Caller, id: RestoreId) -> Result<Restore, BackupError> {
    access::check_with(engine, caller, Target::Restore(id), ProjectRole::Viewer).await?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    restores::table
        .filter(restores::id.eq(id.0))
        .filter(restores::organization_id.eq(caller.org_id.0))
        .select(Restore::as_select())
        .first(&mut conn)
        .await
        .optional()?
        .ok_or(BackupError::NotFound)
}
