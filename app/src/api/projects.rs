//! Server functions for projects and their environments.

use crate::error::AppError;
#[cfg(feature = "ssr")]
use crate::types::EnvironmentView;
use crate::types::{ProjectDetail, ProjectSummary};
use leptos::prelude::*;
use uuid::Uuid;

#[cfg(feature = "ssr")]
use {
    super::edge::{self, fail},
    engine::names::{Description, EnvironmentName, ProjectName},
    engine::projects,
};

#[server(endpoint = "projects/list")]
pub async fn list_projects() -> Result<Vec<ProjectSummary>, AppError> {
    let (ctx, caller) = edge::caller().await?;
    let rows = projects::list(&ctx.engine, &caller).await.map_err(fail)?;
    Ok(rows
        .into_iter()
        .map(|s| ProjectSummary {
            id: s.project.id,
            name: s.project.name,
            description: s.project.description,
            environments: s.environments,
        })
        .collect())
}

#[server(endpoint = "projects/create")]
pub async fn create_project(name: String, description: String) -> Result<Uuid, AppError> {
    let (ctx, caller) = edge::caller().await?;
    let name = ProjectName::parse(&name).map_err(fail)?;
    let description = Description::parse(&description).map_err(fail)?;
    Ok(projects::create(&ctx.engine, &caller, name, description)
        .await
        .map_err(fail)?
        .0)
}

#[server(endpoint = "projects/get")]
pub async fn get_project(id: String) -> Result<ProjectDetail, AppError> {
    let (ctx, caller) = edge::caller().await?;
    let d = projects::get(&ctx.engine, &caller, edge::id(&id)?)
        .await
        .map_err(fail)?;
    Ok(ProjectDetail {
        may: engine::access::powers(&caller, d.project.id).into(),
        id: d.project.id,
        name: d.project.name,
        description: d.project.description,
        environments: d
            .environments
            .into_iter()
            .map(|e| EnvironmentView {
                id: e.id,
                name: e.name,
                protected: e.protected,
            })
            .collect(),
    })
}

#[server(endpoint = "projects/update")]
pub async fn update_project(id: String, name: String, description: String) -> Result<(), AppError> {
    let (ctx, caller) = edge::caller().await?;
    let id = edge::id(&id)?;
    let name = ProjectName::parse(&name).map_err(fail)?;
    let description = Description::parse(&description).map_err(fail)?;
    projects::update(&ctx.engine, &caller, id, name, description)
        .await
        .map_err(fail)
}

/// Deletes the project with every app and database in it; their volumes too
/// when `remove_volumes` is checked.
#[server(endpoint = "projects/delete")]
pub async fn delete_project(id: String, remove_volumes: Option<String>) -> Result<(), AppError> {
    let (ctx, caller) = edge::caller().await?;
    engine::teardown::delete_project(&ctx.engine, &caller, edge::id(&id)?, edge::checked(&remove_volumes))
        .await
        .map_err(fail)
}

#[server(endpoint = "environments/create")]
pub async fn add_environment(project_id: String, name: String) -> Result<Uuid, AppError> {
    let (ctx, caller) = edge::caller().await?;
    let project = edge::id(&project_id)?;
    let name = EnvironmentName::parse(&name).map_err(fail)?;
    Ok(projects::add_environment(&ctx.engine, &caller, project, name)
        .await
        .map_err(fail)?
        .0)
}

#[server(endpoint = "environments/rename")]
pub async fn rename_environment(id: String, name: String) -> Result<(), AppError> {
    let (ctx, caller) = edge::caller().await?;
    let id = edge::id(&id)?;
    let name = EnvironmentName::parse(&name).map_err(fail)?;
    projects::rename_environment(&ctx.engine, &caller, id, name)
        .await
        .map_err(fail)
}

/// Deletes the environment with every app and database in it; their volumes
/// too when `remove_volumes` is checked.
#[server(endpoint = "environments/delete")]
pub async fn delete_environment(id: String, remove_volumes: Option<String>) -> Result<(), AppError> {
    let (ctx, caller) = edge::caller().await?;
    engine::teardown::delete_environment(&ctx.engine, &caller, edge::id(&id)?, edge::checked(&remove_volumes))
        .await
        .map_err(fail)
}
