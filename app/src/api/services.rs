//! Server functions for database services and their backups: thin edges over
//! `engine::services` and `engine::backups`.

// Server functions mirror their forms field for field.
#![allow(clippy::too_many_arguments)]

use crate::error::AppError;
use crate::types::{
    BackupsView, BucketObjectView, DestinationView, MetricsView, RevealedView, ServiceSummaryView, ServiceView,
};
use leptos::prelude::*;
use uuid::Uuid;

#[cfg(feature = "ssr")]
use {
    super::edge::{self, fail},
    crate::types::{BackupView, RestoreView, ScheduleView},
    engine::backups::{self, NewDestination, NewSchedule, RestoreInto, Subject},
    engine::ids::ServiceId,
    engine::services::{self, Action, NewService, Settings},
};

#[cfg(feature = "ssr")]
use crate::types::stamp as time;

/// An external port from the form: none when the port is empty.
#[cfg(feature = "ssr")]
fn external<'a>(bind: &'a str, port: &'a str) -> Option<(&'a str, &'a str)> {
    (!port.trim().is_empty()).then_some((bind, port))
}

/// `berth` (Berth's own database) or a service ID.
#[cfg(feature = "ssr")]
fn subject(raw: &str) -> Result<Subject, AppError> {
    if raw == "berth" {
        Ok(Subject::Own)
    } else {
        Ok(Subject::Service(edge::id(raw)?))
    }
}

#[server(endpoint = "services/list")]
pub async fn list_services(project_id: String) -> Result<Vec<ServiceSummaryView>, AppError> {
    let (ctx, caller) = edge::caller().await?;
    let rows = services::list_in_project(&ctx.engine, &caller, edge::id(&project_id)?)
        .await
        .map_err(fail)?;
    Ok(rows
        .into_iter()
        .map(|s| ServiceSummaryView {
            id: s.id.0,
            name: s.name,
            engine: s.engine.as_str().to_owned(),
            environment_id: s.environment_id.0,
            state: s.state,
        })
        .collect())
}

#[server(endpoint = "services/create")]
pub async fn create_service(
    environment_id: String,
    name: String,
    engine: String,
    image: String,
    database: String,
    user: String,
    cpu_millis: String,
    memory_mb: String,
    external_bind: String,
    external_port: String,
    #[server(default)] persistence: String,
) -> Result<Uuid, AppError> {
    let (ctx, caller) = edge::caller().await?;
    let new = NewService::parse(
        &ctx.engine,
        edge::id(&environment_id)?,
        &name,
        &engine,
        &image,
        &database,
        &user,
        &cpu_millis,
        &memory_mb,
        external(&external_bind, &external_port),
    )
    .and_then(|n| n.with_persistence(&persistence))
    .map_err(fail)?;
    let id = services::create(&ctx.engine, &caller, new).await.map_err(fail)?;
    Ok(id.0)
}

#[server(endpoint = "services/get")]
pub async fn get_service(id: String) -> Result<ServiceView, AppError> {
    let (ctx, caller) = edge::caller().await?;
    let d = services::get(&ctx.engine, &caller, edge::id(&id)?)
        .await
        .map_err(fail)?;
    let (problem, repairs) = super::repairs(&ctx.engine, &caller, None, Some(d.row.id)).await?;
    let project_apps = engine::apps::list_in_project(&ctx.engine, &caller, d.project_id)
        .await
        .map_err(fail)?
        .into_iter()
        .map(|a| (a.id.0, a.name))
        .collect();
    Ok(ServiceView {
        may: engine::access::powers(&caller, d.project_id.0).into(),
        project_apps,
        problem,
        repairs,
        id: d.row.id,
        name: d.row.name,
        engine: d.engine.as_str().to_owned(),
        engine_label: d.engine.label().to_owned(),
        project_id: d.project_id.0,
        project_name: d.project_name,
        environment_name: d.environment_name,
        image: d.row.image,
        database: d.row.database_name,
        user: d.row.username,
        volume: d.row.volume,
        cpu_millis: d.row.cpu_millis,
        memory_mb: d.row.memory_mb,
        external_bind: d.row.external_bind,
        external_port: d.row.external_port,
        persistence: (d.engine == engine::services::kind::DbEngine::Redis).then(|| {
            if d.row.redis_aof {
                "AOF and RDB snapshots"
            } else {
                "RDB snapshots"
            }
            .to_owned()
        }),
        state: d.state,
        ready: d.ready,
        internal_url: d.internal_url_masked,
        external_url: d.external_url_masked,
        last_error: d.row.last_error,
    })
}

#[server(endpoint = "services/reveal")]
pub async fn reveal_service(id: String) -> Result<RevealedView, AppError> {
    let (ctx, caller) = edge::caller().await?;
    let r = services::reveal(&ctx.engine, &caller, edge::id(&id)?)
        .await
        .map_err(fail)?;
    Ok(RevealedView {
        password: r.password,
        root_password: r.root_password,
        internal_url: r.internal_url,
        external_url: r.external_url,
    })
}

#[server(endpoint = "services/action")]
pub async fn service_action(id: String, action: String) -> Result<(), AppError> {
    let (ctx, caller) = edge::caller().await?;
    let action = Action::parse(&action).map_err(fail)?;
    services::act(&ctx.engine, &caller, edge::id(&id)?, action)
        .await
        .map_err(fail)
}

#[server(endpoint = "services/update")]
pub async fn update_service(
    id: String,
    image: String,
    cpu_millis: String,
    memory_mb: String,
    external_bind: String,
    external_port: String,
) -> Result<(), AppError> {
    let (ctx, caller) = edge::caller().await?;
    let settings = Settings::parse(
        &image,
        &cpu_millis,
        &memory_mb,
        external(&external_bind, &external_port),
    )
    .map_err(fail)?;
    services::update(&ctx.engine, &caller, edge::id(&id)?, settings, None)
        .await
        .map_err(fail)
}

/// Deletes the service; `confirm` must repeat its name. The data volume is
/// removed only with `remove_volume` ticked (a second, explicit choice).
#[server(endpoint = "services/delete")]
pub async fn delete_service(id: String, confirm: String, remove_volume: Option<String>) -> Result<(), AppError> {
    let (ctx, caller) = edge::caller().await?;
    services::delete_confirmed(
        &ctx.engine,
        &caller,
        edge::id(&id)?,
        &confirm,
        edge::checked(&remove_volume),
    )
    .await
    .map_err(fail)
}

/// Adds the service's internal connection string to an application's environment.
#[server(endpoint = "services/link")]
pub async fn link_service(id: String, app_id: String, env_name: String) -> Result<(), AppError> {
    let (ctx, caller) = edge::caller().await?;
    services::link(&ctx.engine, &caller, edge::id(&id)?, edge::id(&app_id)?, &env_name)
        .await
        .map_err(fail)
}

/// The service's CPU, memory and network over `window` (`hour`, `day`, `week`).
#[server(endpoint = "services/metrics")]
pub async fn service_metrics(id: String, window: String) -> Result<MetricsView, AppError> {
    let (ctx, caller) = edge::caller().await?;
    let window = engine::metrics::Window::parse(&window).map_err(fail)?;
    let series = engine::metrics::service_series(&ctx.engine, &caller, edge::id(&id)?, window)
        .await
        .map_err(fail)?;
    Ok(series.into())
}

#[server(endpoint = "backups/destinations")]
pub async fn list_destinations() -> Result<Vec<DestinationView>, AppError> {
    let (ctx, caller) = edge::caller().await?;
    let rows = backups::list_destinations(&ctx.engine, &caller).await.map_err(fail)?;
    Ok(rows.into_iter().map(destination_view).collect())
}

#[cfg(feature = "ssr")]
fn destination_view(d: backups::Destination) -> DestinationView {
    DestinationView {
        id: d.id,
        name: d.name,
        endpoint: d.endpoint,
        region: d.region,
        bucket: d.bucket,
        prefix: d.prefix,
        access_key: d.access_key,
        path_style: d.path_style,
    }
}

#[server(endpoint = "backups/add_destination")]
pub async fn add_destination(
    name: String,
    endpoint: String,
    region: String,
    bucket: String,
    prefix: String,
    access_key: String,
    secret_key: String,
    path_style: Option<String>,
) -> Result<Uuid, AppError> {
    let (ctx, caller) = edge::caller().await?;
    let new = NewDestination::parse(
        &name,
        &endpoint,
        &region,
        &bucket,
        &prefix,
        &access_key,
        &secret_key,
        edge::checked(&path_style),
    )
    .map_err(fail)?;
    let id = backups::create_destination(&ctx.engine, &caller, new)
        .await
        .map_err(fail)?;
    Ok(id.0)
}

#[server(endpoint = "backups/remove_destination")]
pub async fn remove_destination(id: String) -> Result<(), AppError> {
    let (ctx, caller) = edge::caller().await?;
    backups::delete_destination(&ctx.engine, &caller, edge::id(&id)?)
        .await
        .map_err(fail)
}

/// Lists, writes and deletes a small object; fails with S3's exact words.
#[server(endpoint = "backups/test_destination")]
pub async fn test_destination(id: String) -> Result<String, AppError> {
    let (ctx, caller) = edge::caller().await?;
    backups::test_destination(&ctx.engine, &caller, edge::id(&id)?)
        .await
        .map_err(fail)?;
    Ok("Connected: listed, wrote and deleted a test object.".into())
}

/// Backups, restores and schedules of a service (or `berth`: Berth's own database).
#[server(endpoint = "backups/list")]
pub async fn list_backups(subject: String) -> Result<BackupsView, AppError> {
    let (ctx, caller) = edge::caller().await?;
    let s = self::subject(&subject)?;
    let h = backups::history(&ctx.engine, &caller, s).await.map_err(fail)?;
    let size_of = |backup: Uuid| {
        h.backups
            .iter()
            .find(|b| b.id == backup)
            .map(|b| b.size_bytes)
            .unwrap_or(0)
    };
    let restores = h
        .restores
        .iter()
        .map(|r| RestoreView {
            id: r.id,
            backup_id: r.backup_id,
            status: r.status,
            bytes: r.bytes,
            total: size_of(r.backup_id),
            error: r.error.clone(),
            created_at: time(r.created_at),
        })
        .collect();
    let destinations = backups::list_destinations(&ctx.engine, &caller).await.map_err(fail)?;
    Ok(BackupsView {
        destinations: destinations.into_iter().map(destination_view).collect(),
        backups: h
            .backups
            .into_iter()
            .map(|b| BackupView {
                id: b.id,
                destination_id: b.destination_id,
                trigger: b.trigger,
                status: b.status,
                key: b.object_key,
                size_bytes: b.size_bytes,
                error: b.error,
                created_at: time(b.created_at),
                duration_secs: b.started_at.zip(b.finished_at).map(|(s, f)| (f - s).num_seconds()),
                pruned: b.pruned_at.is_some(),
                drill_status: b.drill_status,
                drill_detail: b.drill_detail,
                drill_at: b.drill_at.map(time),
            })
            .collect(),
        restores,
        schedules: h
            .schedules
            .into_iter()
            .map(|s| ScheduleView {
                id: s.row.id,
                destination_id: s.row.destination_id,
                cron: s.row.cron,
                timezone: s.row.timezone,
                keep_last: s.row.keep_last,
                drill: s.row.drill,
                next_runs: s.next_runs.into_iter().map(time).collect(),
                last_slot: s.last_taken.map(|t| time(t.0)),
                last_taken: s.last_taken.map(|t| time(t.1)),
                last_missed: s.last_taken.map(|t| t.2).unwrap_or(0),
            })
            .collect(),
    })
}

#[server(endpoint = "backups/run")]
pub async fn run_backup(subject: String, destination_id: String) -> Result<Uuid, AppError> {
    let (ctx, caller) = edge::caller().await?;
    let id = backups::backup_now(
        &ctx.engine,
        &caller,
        self::subject(&subject)?,
        edge::id(&destination_id)?,
    )
    .await
    .map_err(fail)?;
    Ok(id.0)
}

/// Restores a backup into its service (`target` = `existing`, after `confirm`
/// repeats the service's name) or into a new service named `new_name`.
#[server(endpoint = "backups/restore")]
pub async fn restore_backup(
    backup_id: String,
    service_id: String,
    target: String,
    confirm: String,
    new_name: String,
) -> Result<Uuid, AppError> {
    let (ctx, caller) = edge::caller().await?;
    let sid: ServiceId = edge::id(&service_id)?;
    let into = RestoreInto::choose(&ctx.engine, &caller, sid, &target, &confirm, &new_name)
        .await
        .map_err(fail)?;
    let (rid, _) = backups::restore(&ctx.engine, &caller, edge::id(&backup_id)?, into)
        .await
        .map_err(fail)?;
    Ok(rid.0)
}

#[server(endpoint = "backups/drill")]
pub async fn drill_backup(backup_id: String) -> Result<(), AppError> {
    let (ctx, caller) = edge::caller().await?;
    backups::drill(&ctx.engine, &caller, edge::id(&backup_id)?)
        .await
        .map_err(fail)
}

/// The objects under the service's folder in a destination (newest first).
#[server(endpoint = "backups/bucket")]
pub async fn bucket_objects(subject: String, destination_id: String) -> Result<Vec<BucketObjectView>, AppError> {
    let (ctx, caller) = edge::caller().await?;
    let list = backups::bucket_objects(
        &ctx.engine,
        &caller,
        self::subject(&subject)?,
        edge::id(&destination_id)?,
    )
    .await
    .map_err(fail)?;
    Ok(list
        .into_iter()
        .map(|o| BucketObjectView {
            key: o.key,
            size: o.size,
            last_modified: o.last_modified,
        })
        .collect())
}

/// Records an object from the bucket as a backup of the service (to restore or drill it).
#[server(endpoint = "backups/import")]
pub async fn import_backup(subject: String, destination_id: String, key: String) -> Result<Uuid, AppError> {
    let (ctx, caller) = edge::caller().await?;
    let id = backups::import_object(
        &ctx.engine,
        &caller,
        self::subject(&subject)?,
        edge::id(&destination_id)?,
        &key,
    )
    .await
    .map_err(fail)?;
    Ok(id.0)
}

#[server(endpoint = "backups/add_schedule")]
pub async fn add_schedule(
    subject: String,
    destination_id: String,
    cron: String,
    timezone: String,
    keep_last: String,
    drill: Option<String>,
) -> Result<Uuid, AppError> {
    let (ctx, caller) = edge::caller().await?;
    let new = NewSchedule::parse(
        edge::id(&destination_id)?,
        &cron,
        &timezone,
        &keep_last,
        edge::checked(&drill),
    )
    .map_err(fail)?;
    let id = backups::create_schedule(&ctx.engine, &caller, self::subject(&subject)?, new)
        .await
        .map_err(fail)?;
    Ok(id.0)
}

#[server(endpoint = "backups/remove_schedule")]
pub async fn remove_schedule(id: String) -> Result<(), AppError> {
    let (ctx, caller) = edge::caller().await?;
    backups::delete_schedule(&ctx.engine, &caller, edge::id(&id)?)
        .await
        .map_err(fail)
}

#[server(endpoint = "backups/run_schedule")]
pub async fn run_schedule(id: String) -> Result<Uuid, AppError> {
    let (ctx, caller) = edge::caller().await?;
    let b = backups::run_schedule_now(&ctx.engine, &caller, edge::id(&id)?)
        .await
        .map_err(fail)?;
    Ok(b.0)
}
