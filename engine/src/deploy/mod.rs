//! Deployments: accepting one (a `queued` row, then a wake-up on the Redis queue),
//! listing, cancelling and rolling back. The worker ([`worker`]) claims rows from
//! PostgreSQL, which stays the source of truth: the Redis list only wakes workers
//! up, and a lost list is rebuilt from the `queued` rows.

pub mod build;
pub mod git;
pub mod pipeline;
pub mod runtime;
pub mod status;
pub mod worker;

use crate::accounts::Caller;
use crate::apps::AppError;
use crate::db::schema::{applications, deployments, webhook_deliveries};
use crate::error::{Classify, ErrorKind, StoreError};
use crate::ids::{AppId, DeploymentId};
use crate::Engine;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::scoped_futures::ScopedFutureExt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
pub use status::Status;
use uuid::Uuid;

/// The Redis list workers wait on (under the configured prefix).
pub const QUEUE: &str = "deployments:queue";

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(&'static str),
    #[error(transparent)]
    App(#[from] AppError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<diesel::result::Error> for DeployError {
    fn from(e: diesel::result::Error) -> Self {
        DeployError::Store(e.into())
    }
}

impl Classify for DeployError {
    fn kind(&self) -> ErrorKind {
        match self {
            DeployError::NotFound => ErrorKind::NotFound,
            DeployError::Conflict(m) => ErrorKind::Conflict {
                field: "deployment",
                message: (*m).to_owned(),
            },
            DeployError::App(e) => e.kind(),
            DeployError::Store(e) => e.kind(),
        }
    }
}

/// What started a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Manual,
    Webhook,
    Rollback,
    Api,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Webhook => "webhook",
            Trigger::Rollback => "rollback",
            Trigger::Api => "api",
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = deployments)]
pub struct Deployment {
    pub id: Uuid,
    pub application_id: Uuid,
    pub organization_id: Uuid,
    pub status: String,
    pub reason: Option<String>,
    pub trigger: String,
    pub commit_sha: Option<String>,
    pub image: Option<String>,
    pub rollback_of: Option<Uuid>,
    pub cancel_requested: bool,
    pub image_pruned: bool,
    pub created_at: DateTime<Utc>,
    pub cloning_at: Option<DateTime<Utc>>,
    pub building_at: Option<DateTime<Utc>>,
    pub starting_at: Option<DateTime<Utc>>,
    pub health_checking_at: Option<DateTime<Utc>>,
    pub routing_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl Deployment {
    pub fn status(&self) -> Status {
        Status::parse(&self.status).unwrap_or(Status::Failed)
    }
}

/// The outcome of accepting a deployment request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    Queued(DeploymentId),
    /// The same webhook delivery was seen before: this is its deployment.
    Duplicate(Option<DeploymentId>),
}

/// Inserts the `queued` row (and, for webhooks, the delivery record in the same
/// transaction), then wakes a worker. The row is the promise: if the wake-up is
/// lost, the worker's reconciler finds the row anyway.
pub(crate) async fn enqueue(
    engine: &Engine,
    conn: &mut AsyncPgConnection,
    app: AppId,
    org: Uuid,
    trigger: Trigger,
    rollback_of: Option<(Uuid, String)>,
    delivery: Option<&str>,
) -> Result<Accepted, DeployError> {
    let delivery = delivery.map(str::to_owned);
    let accepted = conn
        .transaction::<_, DeployError, _>(|conn| {
            async move {
                if let Some(d) = &delivery {
                    let fresh = diesel::insert_into(webhook_deliveries::table)
                        .values((
                            webhook_deliveries::application_id.eq(app.0),
                            webhook_deliveries::delivery_id.eq(d),
                        ))
                        .on_conflict_do_nothing()
                        .execute(conn)
                        .await?;
                    if fresh == 0 {
                        let prior: Option<Uuid> = webhook_deliveries::table
                            .find((app.0, d))
                            .select(webhook_deliveries::deployment_id)
                            .first(conn)
                            .await?;
                        return Ok(Accepted::Duplicate(prior.map(DeploymentId)));
                    }
                }
                let (rollback_id, image) = match rollback_of {
                    Some((id, image)) => (Some(id), Some(image)),
                    None => (None, None),
                };
                let id: Uuid = diesel::insert_into(deployments::table)
                    .values((
                        deployments::application_id.eq(app.0),
                        deployments::organization_id.eq(org),
                        deployments::trigger.eq(trigger.as_str()),
                        deployments::rollback_of.eq(rollback_id),
                        deployments::image.eq(image),
                    ))
                    .returning(deployments::id)
                    .get_result(conn)
                    .await?;
                if let Some(d) = &delivery {
                    diesel::update(webhook_deliveries::table.find((app.0, d)))
                        .set(webhook_deliveries::deployment_id.eq(id))
                        .execute(conn)
                        .await?;
                }
                Ok(Accepted::Queued(DeploymentId(id)))
            }
            .scope_boxed()
        })
        .await?;
    if let Accepted::Queued(id) = accepted {
        tracing::info!(deployment.id = %id, app.id = %app, trigger = trigger.as_str(), "deployment queued");
        wake(engine, id).await;
    }
    Ok(accepted)
}

/// Pushes a wake-up for the workers. Failure is only logged: the row is queued,
/// and the reconciler re-enqueues it.
pub(crate) async fn wake(engine: &Engine, id: DeploymentId) {
    let push = async {
        let mut kv = engine.kv.conn().await?;
        redis::cmd("LPUSH")
            .arg(engine.kv.key(QUEUE))
            .arg(id.0.to_string())
            .query_async::<()>(&mut kv)
            .await?;
        Ok::<_, StoreError>(())
    };
    if let Err(e) = push.await {
        tracing::warn!(error = %e, deployment.id = %id, "could not push the queue wake-up; the reconciler will");
    }
}

/// Queues a deployment of the application's current settings.
pub async fn deploy(engine: &Engine, caller: &Caller, app: AppId) -> Result<DeploymentId, DeployError> {
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    crate::apps::load(&mut conn, caller.org_id.0, app).await?;
    match enqueue(engine, &mut conn, app, caller.org_id.0, Trigger::Manual, None, None).await? {
        Accepted::Queued(id) => Ok(id),
        Accepted::Duplicate(_) => unreachable!("no delivery id"),
    }
}

/// Redeploys an earlier successful deployment's image: no clone, no build.
pub async fn rollback(engine: &Engine, caller: &Caller, to: DeploymentId) -> Result<DeploymentId, DeployError> {
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let target = get_scoped(&mut conn, caller, to).await?;
    if target.status() != Status::Running {
        return Err(DeployError::Conflict(
            "only a deployment that reached running can be rolled back to",
        ));
    }
    let image = match (&target.image, target.image_pruned) {
        (Some(image), false) => image.clone(),
        _ => return Err(DeployError::Conflict("this deployment's image has been pruned")),
    };
    let app = AppId(target.application_id);
    match enqueue(
        engine,
        &mut conn,
        app,
        caller.org_id.0,
        Trigger::Rollback,
        Some((target.id, image)),
        None,
    )
    .await?
    {
        Accepted::Queued(id) => Ok(id),
        Accepted::Duplicate(_) => unreachable!("no delivery id"),
    }
}

async fn get_scoped(
    conn: &mut AsyncPgConnection,
    caller: &Caller,
    id: DeploymentId,
) -> Result<Deployment, DeployError> {
    deployments::table
        .filter(deployments::id.eq(id.0))
        .filter(deployments::organization_id.eq(caller.org_id.0))
        .select(Deployment::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(DeployError::NotFound)
}

pub async fn get(engine: &Engine, caller: &Caller, id: DeploymentId) -> Result<Deployment, DeployError> {
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    get_scoped(&mut conn, caller, id).await
}

/// The application's deployments, newest first.
pub async fn list(engine: &Engine, caller: &Caller, app: AppId, limit: i64) -> Result<History, DeployError> {
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let (application, _) = crate::apps::load(&mut conn, caller.org_id.0, app).await?;
    let deployments = deployments::table
        .filter(deployments::application_id.eq(app.0))
        .filter(deployments::organization_id.eq(caller.org_id.0))
        .order(deployments::created_at.desc())
        .limit(limit)
        .select(Deployment::as_select())
        .load(&mut conn)
        .await?;
    Ok(History {
        live: application.live_deployment_id,
        deployments,
    })
}

/// An application's deployments, newest first, and which one is live.
#[derive(Debug, Clone)]
pub struct History {
    pub live: Option<DeploymentId>,
    pub deployments: Vec<Deployment>,
}

/// Cancels a queued deployment at once; a running one is flagged and its worker
/// stops the clone/build/start and cleans up (the live version keeps serving).
pub async fn cancel(engine: &Engine, caller: &Caller, id: DeploymentId) -> Result<(), DeployError> {
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let d = get_scoped(&mut conn, caller, id).await?;
    if d.status().is_terminal() {
        return Err(DeployError::Conflict("this deployment has already finished"));
    }
    let n = diesel::update(
        deployments::table
            .filter(deployments::id.eq(id.0))
            .filter(deployments::status.eq("queued")),
    )
    .set((
        deployments::status.eq("cancelled"),
        deployments::reason.eq("cancelled before it started"),
        deployments::cancel_requested.eq(true),
        deployments::finished_at.eq(diesel::dsl::now),
    ))
    .execute(&mut conn)
    .await?;
    if n == 1 {
        crate::logs::close(engine, AppId(d.application_id), id, None, Status::Cancelled).await;
        return Ok(());
    }
    diesel::update(deployments::table.filter(deployments::id.eq(id.0)))
        .set(deployments::cancel_requested.eq(true))
        .execute(&mut conn)
        .await?;
    Ok(())
}

/// The org a deployment belongs to, for edges (WebSockets) that check access.
pub async fn app_of(engine: &Engine, caller: &Caller, id: DeploymentId) -> Result<(AppId, Status), DeployError> {
    let d = get(engine, caller, id).await?;
    Ok((AppId(d.application_id), d.status()))
}

/// Unscoped status read for the worker and log followers.
pub(crate) async fn status_of(engine: &Engine, id: DeploymentId) -> Result<Option<Status>, StoreError> {
    let mut conn = engine.db.get().await?;
    let s: Option<String> = deployments::table
        .find(id.0)
        .select(deployments::status)
        .first(&mut conn)
        .await
        .optional()?;
    Ok(s.and_then(|s| Status::parse(&s)))
}

/// The live deployment of an application, unscoped (worker use).
pub(crate) async fn live_of(conn: &mut AsyncPgConnection, app: AppId) -> Result<Option<Uuid>, StoreError> {
    Ok(applications::table
        .find(app.0)
        .select(applications::live_deployment_id)
        .first::<Option<Uuid>>(conn)
        .await
        .optional()?
        .flatten())
}
