//! `/api/v1/projects` and `/api/v1/environments`: thin over `engine::projects`
//! and `engine::teardown`, as the server functions are.

use super::{id, if_match, merging, stamp, tagged, Body, Key, PageQuery, Problem};
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use engine::names::{Description, EnvironmentName, ProjectName};
use engine::projects::{self, ProjectDetail};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// A project in a list.
#[derive(Serialize, ToSchema)]
pub struct ProjectItem {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    /// How many environments it has.
    pub environments: i64,
}

#[derive(Serialize, ToSchema)]
pub struct ProjectPage {
    pub items: Vec<ProjectItem>,
    /// The cursor of the next page; absent on the last.
    pub next: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Environment {
    pub id: Uuid,
    pub name: String,
    /// `production`: cannot be renamed or deleted.
    pub protected: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Project {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub environments: Vec<Environment>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<ProjectDetail> for Project {
    fn from(d: ProjectDetail) -> Self {
        Project {
            id: d.project.id,
            name: d.project.name,
            description: d.project.description,
            environments: d
                .environments
                .into_iter()
                .map(|e| Environment {
                    id: e.id,
                    name: e.name,
                    protected: e.protected,
                })
                .collect(),
            created_at: stamp(d.project.created_at),
            updated_at: stamp(d.project.updated_at),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProject {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectChange {
    pub name: Option<String>,
    pub description: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentIn {
    pub name: String,
}

/// Whether a delete takes the volumes of the apps and databases with it.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Removal {
    /// `true` removes their volumes too (data is gone); default `false` keeps them.
    pub remove_volumes: Option<String>,
}

impl Removal {
    pub fn volumes(&self) -> Result<bool, ApiError> {
        super::flag("remove_volumes", self.remove_volumes.as_deref())
    }
}

/// The organization's projects, by name.
#[utoipa::path(get, path = "/projects", tag = "projects", params(PageQuery),
    responses((status = 200, body = ProjectPage), (status = 401, body = Problem)))]
pub async fn list(
    State(s): State<AppState>,
    Key(c): Key,
    Query(q): Query<PageQuery>,
) -> Result<Json<ProjectPage>, ApiError> {
    let rows = projects::list(s.engine(), &c).await.map_err(ApiError::from_engine)?;
    let (rows, next) = q.page(rows, |p| format!("{}\u{1f}{}", p.project.name, p.project.id))?;
    Ok(Json(ProjectPage {
        items: rows
            .into_iter()
            .map(|p| ProjectItem {
                id: p.project.id,
                name: p.project.name,
                description: p.project.description,
                environments: p.environments,
            })
            .collect(),
        next,
    }))
}

/// Creates a project with its `production` environment.
#[utoipa::path(post, path = "/projects", tag = "projects", request_body = NewProject,
    responses((status = 201, body = Project), (status = 422, body = Problem)))]
pub async fn create(State(s): State<AppState>, Key(c): Key, Body(b): Body<NewProject>) -> Result<Response, ApiError> {
    let name = ProjectName::parse(&b.name).map_err(ApiError::from_engine)?;
    let description = Description::parse(&b.description).map_err(ApiError::from_engine)?;
    let pid = projects::create(s.engine(), &c, name, description)
        .await
        .map_err(ApiError::from_engine)?;
    let d = projects::get(s.engine(), &c, pid)
        .await
        .map_err(ApiError::from_engine)?;
    Ok(tagged(StatusCode::CREATED, Project::from(d)))
}

/// A project and its environments.
#[utoipa::path(get, path = "/projects/{id}", tag = "projects", params(("id" = String, Path)),
    responses((status = 200, body = Project, headers(("ETag" = String))), (status = 404, body = Problem)))]
pub async fn get(State(s): State<AppState>, Key(c): Key, Path(pid): Path<String>) -> Result<Response, ApiError> {
    let d = projects::get(s.engine(), &c, id(&pid)?)
        .await
        .map_err(ApiError::from_engine)?;
    Ok(tagged(StatusCode::OK, Project::from(d)))
}

/// Renames or re-describes a project (fields left out stay as they are).
#[utoipa::path(patch, path = "/projects/{id}", tag = "projects", request_body = ProjectChange,
    params(("id" = String, Path), ("If-Match" = Option<String>, Header, description = "The ETag last read")),
    responses((status = 200, body = Project), (status = 412, body = Problem), (status = 422, body = Problem)))]
pub async fn update(
    State(s): State<AppState>,
    Key(c): Key,
    Path(pid): Path<String>,
    headers: HeaderMap,
    Body(b): Body<ProjectChange>,
) -> Result<Response, ApiError> {
    let pid = id(&pid)?;
    merging(&headers, || async {
        let detail = projects::get(s.engine(), &c, pid)
            .await
            .map_err(ApiError::from_engine)?;
        let read = detail.version;
        let now = Project::from(detail);
        if_match(&headers, &super::etag(&now))?;
        let name = ProjectName::parse(b.name.as_deref().unwrap_or(&now.name)).map_err(ApiError::from_engine)?;
        let description =
            Description::parse(b.description.as_deref().unwrap_or(&now.description)).map_err(ApiError::from_engine)?;
        // Written only while the project is still as read (and merged) above.
        projects::update_guarded(s.engine(), &c, pid, name, description, Some(read))
            .await
            .map_err(ApiError::from_engine)?;
        let d = projects::get(s.engine(), &c, pid)
            .await
            .map_err(ApiError::from_engine)?;
        Ok(tagged(StatusCode::OK, Project::from(d)))
    })
    .await
}

/// Deletes a project with every app and database in it (admins).
#[utoipa::path(delete, path = "/projects/{id}", tag = "projects", params(("id" = String, Path), Removal),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn delete(
    State(s): State<AppState>,
    Key(c): Key,
    Path(pid): Path<String>,
    Query(r): Query<Removal>,
) -> Result<StatusCode, ApiError> {
    engine::teardown::delete_project(s.engine(), &c, id(&pid)?, r.volumes()?)
        .await
        .map_err(ApiError::from_engine)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Adds an environment to a project.
#[utoipa::path(post, path = "/projects/{id}/environments", tag = "projects", request_body = EnvironmentIn,
    params(("id" = String, Path)),
    responses((status = 201, body = Environment), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn add_environment(
    State(s): State<AppState>,
    Key(c): Key,
    Path(pid): Path<String>,
    Body(b): Body<EnvironmentIn>,
) -> Result<Response, ApiError> {
    let pid = id(&pid)?;
    let name = EnvironmentName::parse(&b.name).map_err(ApiError::from_engine)?;
    let eid = projects::add_environment(s.engine(), &c, pid, name)
        .await
        .map_err(ApiError::from_engine)?;
    let d = projects::get(s.engine(), &c, pid)
        .await
        .map_err(ApiError::from_engine)?;
    let env = d
        .environments
        .into_iter()
        .find(|e| e.id == eid.0)
        .ok_or_else(ApiError::not_found)?;
    Ok((
        StatusCode::CREATED,
        Json(Environment {
            id: env.id,
            name: env.name,
            protected: env.protected,
        }),
    )
        .into_response())
}

/// Renames an environment (not `production`).
#[utoipa::path(patch, path = "/environments/{id}", tag = "projects", request_body = EnvironmentIn,
    params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn rename_environment(
    State(s): State<AppState>,
    Key(c): Key,
    Path(eid): Path<String>,
    Body(b): Body<EnvironmentIn>,
) -> Result<StatusCode, ApiError> {
    let eid = id(&eid)?;
    let name = EnvironmentName::parse(&b.name).map_err(ApiError::from_engine)?;
    projects::rename_environment(s.engine(), &c, eid, name)
        .await
        .map_err(ApiError::from_engine)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes an environment with every app and database in it (admins; not `production`).
#[utoipa::path(delete, path = "/environments/{id}", tag = "projects", params(("id" = String, Path), Removal),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn delete_environment(
    State(s): State<AppState>,
    Key(c): Key,
    Path(eid): Path<String>,
    Query(r): Query<Removal>,
) -> Result<StatusCode, ApiError> {
    engine::teardown::delete_environment(s.engine(), &c, id(&eid)?, r.volumes()?)
        .await
        .map_err(ApiError::from_engine)?;
    Ok(StatusCode::NO_CONTENT)
}
