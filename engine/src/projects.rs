//! Projects and their environments. Every query is scoped by the caller's
//! organization: an ID from another organization behaves exactly like an ID that
//! does not exist.

use crate::access::{self, Target};
use crate::accounts::{is_unique_violation, Caller};
use crate::db::schema::{environments, projects};
use crate::db::RowVersion;
use crate::error::{Classify, ErrorKind, StoreError};
use crate::ids::{EnvironmentId, ProjectId};
use crate::names::ProjectRole;
use crate::names::{Description, EnvironmentName, ProjectName, ValidationError};
use crate::Engine;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Forbidden(&'static str),
    /// A guarded update found the project changed since it was read.
    #[error("it changed since it was read")]
    Changed,
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::denied_into!(ProjectError);

impl From<diesel::result::Error> for ProjectError {
    fn from(e: diesel::result::Error) -> Self {
        if is_unique_violation(&e, "projects_organization_id_name_key") {
            return ValidationError::new(ProjectName::FIELD, "a project with this name already exists").into();
        }
        if is_unique_violation(&e, "environments_project_id_name_key") {
            return ValidationError::new(EnvironmentName::FIELD, "an environment with this name already exists").into();
        }
        ProjectError::Store(e.into())
    }
}

impl Classify for ProjectError {
    fn kind(&self) -> ErrorKind {
        match self {
            ProjectError::Invalid(v) => v.kind(),
            ProjectError::NotFound => ErrorKind::NotFound,
            ProjectError::Forbidden(m) => ErrorKind::Forbidden((*m).to_owned()),
            ProjectError::Changed => ErrorKind::Changed,
            ProjectError::Store(s) => s.kind(),
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = projects)]
pub struct Project {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = environments)]
pub struct Environment {
    pub id: Uuid,
    pub name: String,
    pub protected: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct ProjectSummary {
    pub project: Project,
    pub environments: i64,
}

#[derive(Debug, Clone)]
pub struct ProjectDetail {
    pub project: Project,
    pub environments: Vec<Environment>,
    /// The project row's version as read here, for [`update_guarded`].
    pub version: RowVersion,
}

/// Not found unless the project exists in the caller's organization.
async fn require_project(
    conn: &mut diesel_async::AsyncPgConnection,
    caller: &Caller,
    id: ProjectId,
) -> Result<(), ProjectError> {
    let exists: bool = diesel::select(diesel::dsl::exists(
        projects::table
            .filter(projects::id.eq(id.0))
            .filter(projects::organization_id.eq(caller.org_id.0)),
    ))
    .get_result(conn)
    .await?;
    if exists {
        Ok(())
    } else {
        Err(ProjectError::NotFound)
    }
}

fn not_found_if_zero(n: usize) -> Result<(), ProjectError> {
    if n == 0 {
        Err(ProjectError::NotFound)
    } else {
        Ok(())
    }
}

pub async fn list(engine: &Engine, caller: &Caller) -> Result<Vec<ProjectSummary>, ProjectError> {
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let envs = environments::table
        .filter(environments::project_id.eq(projects::id))
        .count()
        .single_value();
    let mut q = projects::table
        .filter(projects::organization_id.eq(caller.org_id.0))
        .into_boxed();
    // A member limited to projects sees the granted ones only.
    if let Some(granted) = access::visible(caller) {
        q = q.filter(projects::id.eq_any(granted));
    }
    let rows: Vec<(Project, Option<i64>)> = q
        .order(projects::name.asc())
        .select((Project::as_select(), envs))
        .load(&mut conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(project, n)| ProjectSummary {
            project,
            environments: n.unwrap_or(0),
        })
        .collect())
}

/// Creates a project and its `production` environment in one transaction.
pub async fn create(
    engine: &Engine,
    caller: &Caller,
    name: ProjectName,
    description: Description,
) -> Result<ProjectId, ProjectError> {
    access::organization_wide(caller, "a member limited to projects cannot create projects")?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let org = caller.org_id;
    let id = conn
        .transaction::<_, ProjectError, _>(async |conn| {
            crate::audit::within(conn).await?;
            let id: Uuid = diesel::insert_into(projects::table)
                .values((
                    projects::organization_id.eq(org.0),
                    projects::name.eq(name.as_str()),
                    projects::description.eq(description.as_str()),
                ))
                .returning(projects::id)
                .get_result(conn)
                .await?;
            diesel::insert_into(environments::table)
                .values((
                    environments::project_id.eq(id),
                    environments::organization_id.eq(org.0),
                    environments::name.eq(EnvironmentName::PRODUCTION),
                    environments::protected.eq(true),
                ))
                .execute(conn)
                .await?;
            Ok(id)
        })
        .await?;
    tracing::info!(project.id = %id, org.id = %org, "project created");
    Ok(ProjectId(id))
}

pub async fn get(engine: &Engine, caller: &Caller, id: ProjectId) -> Result<ProjectDetail, ProjectError> {
    access::check_with(engine, caller, Target::Project(id), ProjectRole::Viewer).await?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let (project, version): (Project, i64) = projects::table
        .filter(projects::id.eq(id.0))
        .filter(projects::organization_id.eq(caller.org_id.0))
        .select((Project::as_select(), RowVersion::column()))
        .first(&mut conn)
        .await
        .optional()?
        .ok_or(ProjectError::NotFound)?;
    let environments = environments::table
        .filter(environments::project_id.eq(id.0))
        .filter(environments::organization_id.eq(caller.org_id.0))
        .order((environments::protected.desc(), environments::name.asc()))
        .select(Environment::as_select())
        .load(&mut conn)
        .await?;
    Ok(ProjectDetail {
        project,
        environments,
        version: RowVersion::of(version),
    })
}

pub async fn update(
    engine: &Engine,
    caller: &Caller,
    id: ProjectId,
    name: ProjectName,
    description: Description,
) -> Result<(), ProjectError> {
    update_guarded(engine, caller, id, name, description, None).await
}

/// [`update`], only while the project is still the version the caller read
/// (compared under the row's lock; [`ProjectError::Changed`] otherwise, and
/// nothing changes).
pub async fn update_guarded(
    engine: &Engine,
    caller: &Caller,
    id: ProjectId,
    name: ProjectName,
    description: Description,
    expect: Option<RowVersion>,
) -> Result<(), ProjectError> {
    access::check_with(engine, caller, Target::Project(id), ProjectRole::Admin).await?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let n = crate::audited!(conn, ProjectError, {
        if let Some(expect) = expect {
            let now: Option<i64> = projects::table
                .filter(projects::id.eq(id.0))
                .filter(projects::organization_id.eq(caller.org_id.0))
                .select(RowVersion::column())
                .for_update()
                .first(conn)
                .await
                .optional()?;
            if now.is_some_and(|v| RowVersion::of(v) != expect) {
                return Err(ProjectError::Changed);
            }
        }
        Ok(diesel::update(
            projects::table
                .filter(projects::id.eq(id.0))
                .filter(projects::organization_id.eq(caller.org_id.0)),
        )
        .set((
            projects::name.eq(name.as_str()),
            projects::description.eq(description.as_str()),
            projects::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?)
    })
    .await?;
    not_found_if_zero(n)
}

/// Deletes the project's row (its environments cascade). Only
/// [`crate::teardown`] calls this, after emptying every environment: the
/// database refuses while an app or database is left.
pub(crate) async fn delete_project_row(
    conn: &mut diesel_async::AsyncPgConnection,
    caller: &Caller,
    id: ProjectId,
) -> Result<(), ProjectError> {
    let n = crate::audited!(conn, ProjectError, {
        Ok(diesel::delete(
            projects::table
                .filter(projects::id.eq(id.0))
                .filter(projects::organization_id.eq(caller.org_id.0)),
        )
        .execute(conn)
        .await?)
    })
    .await?;
    not_found_if_zero(n)
}

pub async fn add_environment(
    engine: &Engine,
    caller: &Caller,
    project: ProjectId,
    name: EnvironmentName,
) -> Result<EnvironmentId, ProjectError> {
    access::check_with(engine, caller, Target::Project(project), ProjectRole::Admin).await?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    require_project(&mut conn, caller, project).await?;
    let id: Uuid = crate::audited!(conn, ProjectError, {
        Ok(diesel::insert_into(environments::table)
            .values((
                environments::project_id.eq(project.0),
                environments::organization_id.eq(caller.org_id.0),
                environments::name.eq(name.as_str()),
            ))
            .returning(environments::id)
            .get_result(conn)
            .await?)
    })
    .await?;
    Ok(EnvironmentId(id))
}

/// The environment, scoped and locked; protected ones refuse renames and deletes.
async fn unprotected_env(
    conn: &mut diesel_async::AsyncPgConnection,
    caller: &Caller,
    id: EnvironmentId,
) -> Result<(), ProjectError> {
    let protected: Option<bool> = environments::table
        .filter(environments::id.eq(id.0))
        .filter(environments::organization_id.eq(caller.org_id.0))
        .select(environments::protected)
        .for_update()
        .first(conn)
        .await
        .optional()?;
    match protected {
        None => Err(ProjectError::NotFound),
        Some(true) => Err(ProjectError::Forbidden(
            "the production environment cannot be renamed or deleted",
        )),
        Some(false) => Ok(()),
    }
}

pub async fn rename_environment(
    engine: &Engine,
    caller: &Caller,
    id: EnvironmentId,
    name: EnvironmentName,
) -> Result<(), ProjectError> {
    access::check_with(engine, caller, Target::Environment(id), ProjectRole::Admin).await?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    conn.transaction::<_, ProjectError, _>(async |conn| {
        crate::audit::within(conn).await?;
        unprotected_env(conn, caller, id).await?;
        diesel::update(environments::table.find(id.0))
            .set(environments::name.eq(name.as_str()))
            .execute(conn)
            .await?;
        Ok(())
    })
    .await
}

/// Deletes the environment's row (not the protected one). Only
/// [`crate::teardown`] calls this, after emptying it.
pub(crate) async fn delete_environment_row(
    conn: &mut diesel_async::AsyncPgConnection,
    caller: &Caller,
    id: EnvironmentId,
) -> Result<(), ProjectError> {
    conn.transaction::<_, ProjectError, _>(async |conn| {
        crate::audit::within(conn).await?;
        unprotected_env(conn, caller, id).await?;
        diesel::delete(environments::table.find(id.0)).execute(conn).await?;
        Ok(())
    })
    .await
}
