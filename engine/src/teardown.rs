//! Deleting an environment or a whole project. Everything in it goes through
//! the application and database delete paths (containers, routes, images and,
//! when asked, volumes), never a bare foreign-key cascade: the database refuses
//! to delete an environment that still holds either (`ON DELETE RESTRICT`), so
//! nothing can be left running without a row. Admins and owners only.

use crate::access::{self, Target};
use crate::accounts::Caller;
use crate::apps::{self, AppError};
use crate::db::schema::{applications, database_services, environments, projects};
use crate::error::{Classify, ErrorKind, StoreError};
use crate::ids::{AppId, EnvironmentId, ProjectId, ServiceId};
use crate::names::ProjectRole;
use crate::projects::ProjectError;
use crate::services::{self, ServiceError};
use crate::Engine;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum TeardownError {
    #[error(transparent)]
    Project(#[from] ProjectError),
    #[error(transparent)]
    App(#[from] AppError),
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// Something was created in it while it was being emptied, again and again.
    #[error("new applications or databases keep appearing in it; try again")]
    Busy,
}

impl From<access::Denied> for TeardownError {
    fn from(d: access::Denied) -> Self {
        TeardownError::Project(d.into())
    }
}

impl From<StoreError> for TeardownError {
    fn from(e: StoreError) -> Self {
        TeardownError::Project(ProjectError::Store(e))
    }
}

impl From<diesel::result::Error> for TeardownError {
    fn from(e: diesel::result::Error) -> Self {
        TeardownError::Project(ProjectError::from(e))
    }
}

impl Classify for TeardownError {
    fn kind(&self) -> ErrorKind {
        match self {
            TeardownError::Project(e) => e.kind(),
            TeardownError::App(e) => e.kind(),
            TeardownError::Service(e) => e.kind(),
            TeardownError::Busy => ErrorKind::Conflict {
                field: "id",
                message: self.to_string(),
            },
        }
    }
}

/// How often an environment is emptied before giving up: a member creating
/// apps in it as fast as they are deleted.
const ROUNDS: usize = 3;

/// Deletes an environment (not the protected production one) with its apps and
/// databases; their volumes only when `remove_volumes`.
pub async fn delete_environment(
    engine: &Engine,
    caller: &Caller,
    id: EnvironmentId,
    remove_volumes: bool,
) -> Result<(), TeardownError> {
    access::check_with(engine, caller, Target::Environment(id), ProjectRole::Viewer).await?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let protected: bool = environments::table
        .filter(environments::id.eq(id.0))
        .filter(environments::organization_id.eq(caller.org_id.0))
        .select(environments::protected)
        .first(&mut conn)
        .await
        .optional()?
        .ok_or(ProjectError::NotFound)?;
    // Existence first, so a foreign ID is "not found" to everyone.
    require_manager(caller)?;
    if protected {
        return Err(ProjectError::Forbidden("the production environment cannot be renamed or deleted").into());
    }
    drop(conn);
    emptied_then_deleted(|| async {
        empty(engine, caller, &[id.0], remove_volumes).await?;
        let mut conn = engine.db.get().await.map_err(StoreError::from)?;
        Ok(crate::projects::delete_environment_row(&mut conn, caller, id).await)
    })
    .await?;
    tracing::info!(environment.id = %id, remove_volumes, "environment deleted");
    Ok(())
}

/// Deletes a project: every environment's apps and databases (volumes only when
/// `remove_volumes`), then the project.
pub async fn delete_project(
    engine: &Engine,
    caller: &Caller,
    id: ProjectId,
    remove_volumes: bool,
) -> Result<(), TeardownError> {
    access::check_with(engine, caller, Target::Project(id), ProjectRole::Viewer).await?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let mine: bool = diesel::select(diesel::dsl::exists(
        projects::table
            .filter(projects::id.eq(id.0))
            .filter(projects::organization_id.eq(caller.org_id.0)),
    ))
    .get_result(&mut conn)
    .await?;
    if !mine {
        return Err(ProjectError::NotFound.into());
    }
    require_manager(caller)?;
    drop(conn);
    emptied_then_deleted(|| async {
        let mut conn = engine.db.get().await.map_err(StoreError::from)?;
        let envs: Vec<Uuid> = environments::table
            .filter(environments::project_id.eq(id.0))
            .filter(environments::organization_id.eq(caller.org_id.0))
            .select(environments::id)
            .load(&mut conn)
            .await?;
        empty(engine, caller, &envs, remove_volumes).await?;
        Ok(crate::projects::delete_project_row(&mut conn, caller, id).await)
    })
    .await?;
    tracing::info!(project.id = %id, remove_volumes, "project deleted");
    Ok(())
}

/// Runs `round` (empty, then delete the row) until the row goes; again while
/// the database refuses because something new appeared in it meanwhile.
async fn emptied_then_deleted<F, Fut>(mut round: F) -> Result<(), TeardownError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Result<(), ProjectError>, TeardownError>>,
{
    for _ in 0..ROUNDS {
        match round().await? {
            Ok(()) => return Ok(()),
            Err(ProjectError::Store(StoreError::Db(e))) if is_restrict(&e) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(TeardownError::Busy)
}

fn require_manager(caller: &Caller) -> Result<(), TeardownError> {
    if caller.role.can_manage() {
        Ok(())
    } else {
        Err(ProjectError::Forbidden("only admins and owners can delete environments and projects").into())
    }
}

/// Deletes every app and database in these environments through their own
/// delete paths.
async fn empty(engine: &Engine, caller: &Caller, envs: &[Uuid], remove_volumes: bool) -> Result<(), TeardownError> {
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let apps: Vec<Uuid> = applications::table
        .filter(applications::environment_id.eq_any(envs))
        .filter(applications::organization_id.eq(caller.org_id.0))
        .select(applications::id)
        .load(&mut conn)
        .await?;
    let dbs: Vec<Uuid> = database_services::table
        .filter(database_services::environment_id.eq_any(envs))
        .filter(database_services::organization_id.eq(caller.org_id.0))
        .select(database_services::id)
        .load(&mut conn)
        .await?;
    drop(conn);
    for app in apps {
        match apps::delete(engine, caller, AppId(app), remove_volumes).await {
            // Deleted meanwhile by someone else: the goal is reached.
            Ok(()) | Err(AppError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    for db in dbs {
        match services::delete(engine, caller, ServiceId(db), remove_volumes).await {
            Ok(()) | Err(ServiceError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The database refused because rows still reference the environment.
fn is_restrict(e: &diesel::result::Error) -> bool {
    matches!(
        e,
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::ForeignKeyViolation, _)
    )
}
