//! What a new live deployment leaves behind: the containers it replaced (drained,
//! then stopped and removed) and images beyond the rollback window.

use crate::db::schema::deployments;
use crate::docker::{self, LABEL_APP, LABEL_DEPLOYMENT, LABEL_INSTANCE};
use crate::error::StoreError;
use crate::ids::{AppId, DeploymentId};
use crate::Engine;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use lifecycle::DeploymentStatus as Status;
use std::collections::HashSet;
use std::time::Duration;

/// After the drain time, retires the app's containers that neither serve nor
/// belong to a deployment in progress.
pub(crate) fn after_go_live(engine: &Engine, app: AppId, drain: Duration) {
    let engine = engine.clone();
    tokio::spawn(async move {
        tokio::time::sleep(drain).await;
        retire_old(&engine, app).await;
    });
}

/// Stops and removes the app's containers that are not live and not in progress.
pub(crate) async fn retire_old(engine: &Engine, app: AppId) {
    let keep = match keepers(engine, app).await {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(error = %e, "reading live deployments");
            return;
        }
    };
    let app_label = app.to_string();
    let filter = [
        (LABEL_INSTANCE, Some(engine.deploy.instance.as_str())),
        (LABEL_APP, Some(app_label.as_str())),
    ];
    let Ok(list) = engine.docker.list_containers(&filter).await else {
        return;
    };
    for c in list {
        let dep = c.label(LABEL_DEPLOYMENT).and_then(|d| d.parse().ok());
        if dep.is_some_and(|d| keep.contains(&d)) {
            continue;
        }
        tracing::info!(container = %c.name, "retiring old container");
        docker::stop_and_remove(&*engine.docker, &c.name, Duration::from_secs(10)).await;
    }
}

async fn keepers(engine: &Engine, app: AppId) -> Result<HashSet<DeploymentId>, StoreError> {
    let mut conn = engine.db.get().await?;
    let mut keep: HashSet<DeploymentId> = deployments::table
        .filter(deployments::application_id.eq(app))
        .filter(deployments::status.eq_any(Status::ACTIVE))
        .select(deployments::id)
        .load::<DeploymentId>(&mut conn)
        .await?
        .into_iter()
        .collect();
    if let Some(live) = super::live_of(&mut conn, app).await? {
        keep.insert(live);
    }
    Ok(keep)
}

/// Keeps the images of the newest `keep_images` deployments that went live (and
/// the live one); removes older `berth/<app>:*` images and marks them pruned.
pub(crate) async fn prune_images(engine: &Engine, app: AppId) {
    let result = async {
        let mut conn = engine.db.get().await?;
        let live = super::live_of(&mut conn, app).await?;
        let rows: Vec<(DeploymentId, Option<String>)> = deployments::table
            .filter(deployments::application_id.eq(app))
            .filter(deployments::status.eq_any([Status::Running, Status::Superseded]))
            .filter(deployments::image_pruned.eq(false))
            .filter(deployments::image.is_not_null())
            .order(deployments::created_at.desc())
            .select((deployments::id, deployments::image))
            .load(&mut conn)
            .await?;
        let mut kept: Vec<String> = Vec::new();
        let mut doomed: Vec<String> = Vec::new();
        for (id, image) in rows {
            let Some(image) = image else { continue };
            if !image.starts_with("berth/") {
                continue;
            }
            if kept.contains(&image) || Some(id) == live {
                if !kept.contains(&image) {
                    kept.push(image);
                }
                continue;
            }
            if kept.len() < engine.deploy.keep_images {
                kept.push(image);
            } else if !doomed.contains(&image) {
                doomed.push(image);
            }
        }
        doomed.retain(|d| !kept.contains(d));
        for image in doomed {
            match engine.docker.remove_image(&image).await {
                Ok(()) => {
                    diesel::update(
                        deployments::table
                            .filter(deployments::application_id.eq(app))
                            .filter(deployments::image.eq(&image)),
                    )
                    .set(deployments::image_pruned.eq(true))
                    .execute(&mut conn)
                    .await?;
                }
                Err(e) => tracing::warn!(error = %e, image, "removing image"),
            }
        }
        Ok::<_, StoreError>(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "pruning images");
    }
}
