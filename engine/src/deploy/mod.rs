//! Deployments: accepting one (a `queued` row, then a wake-up on the Redis
//! queue), the history, cancelling and rolling back. Workers claim rows from
//! PostgreSQL through the common job runner ([`job::DeployKind`]); PostgreSQL
//! stays the source of truth: the Redis list only wakes workers up, and a lost
//! list is rebuilt from the `queued` rows.

pub mod build;
pub mod git;
pub mod job;
pub mod pipeline;
pub mod retire;
pub mod runtime;
pub mod transition;

use crate::access::{self, Target};
use crate::accounts::Caller;
use crate::apps::AppError;
use crate::audit::{self, Actor};
use crate::db::schema::{applications, deployments, webhook_deliveries};
use crate::error::{Classify, ErrorKind, StoreError};
use crate::ids::{AppId, DeploymentId, OrgId};
use crate::names::ProjectRole;
use crate::Engine;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use lifecycle::Lifecycle;
pub use lifecycle::{DeploymentStatus as Status, Trigger};
use transition::{transition, Holder, Move, TransitionError};

/// The Redis list workers wait on (under the configured prefix).
pub const QUEUE: &str = "deployments:queue";

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    App(#[from] AppError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<access::Denied> for DeployError {
    fn from(d: access::Denied) -> Self {
        match d {
            access::Denied::NotFound => DeployError::NotFound,
            access::Denied::Forbidden(m) => DeployError::App(AppError::Forbidden(m)),
            access::Denied::Store(s) => DeployError::Store(s),
        }
    }
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
                message: m.clone(),
            },
            DeployError::App(e) => e.kind(),
            DeployError::Store(e) => e.kind(),
        }
    }
}

/// A claimed deployment: what the pipeline needs to start.
#[derive(Debug, Clone)]
pub struct DeployJob {
    pub id: DeploymentId,
    pub app: AppId,
    /// The state it was claimed into.
    pub status: Status,
    /// Set for rollbacks: the image to run again.
    pub image: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = deployments)]
pub struct Deployment {
    pub id: DeploymentId,
    pub application_id: AppId,
    pub organization_id: OrgId,
    pub status: Status,
    pub reason: Option<String>,
    pub trigger: Trigger,
    /// For webhook deliveries: which webhook (`github`, `deploy token`).
    pub trigger_detail: Option<String>,
    pub commit_sha: Option<String>,
    pub image: Option<String>,
    /// A rollback: the deployment whose image it runs again.
    pub rollback_of: Option<DeploymentId>,
    pub cancel_requested: bool,
    pub image_pruned: bool,
    pub created_at: DateTime<Utc>,
    pub cloning_at: Option<DateTime<Utc>>,
    pub building_at: Option<DateTime<Utc>>,
    pub starting_at: Option<DateTime<Utc>>,
    pub health_checking_at: Option<DateTime<Utc>>,
    pub routing_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub superseded_at: Option<DateTime<Utc>>,
    pub superseded_by: Option<DeploymentId>,
}

/// The outcome of accepting a deployment request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    Queued(DeploymentId),
    /// The same webhook delivery was seen before: this is its deployment.
    Duplicate(Option<DeploymentId>),
}

/// What a new deployment is asked for.
#[derive(Debug, Clone)]
pub(crate) struct Request<'a> {
    pub app: AppId,
    pub org: OrgId,
    pub trigger: Trigger,
    pub trigger_detail: Option<&'a str>,
    /// A rollback: the deployment to run again (its image and commit).
    pub rollback_of: Option<&'a Deployment>,
    /// A webhook delivery id: the same delivery is accepted once.
    pub delivery: Option<&'a str>,
}

/// Inserts the `queued` row (and, for webhooks, the delivery record in the same
/// transaction), then wakes a worker. The row is the promise: if the wake-up is
/// lost, the reaper re-pushes it.
pub(crate) async fn enqueue(
    engine: &Engine,
    conn: &mut AsyncPgConnection,
    req: Request<'_>,
) -> Result<Accepted, DeployError> {
    let (app, trigger) = (req.app, req.trigger);
    let accepted = insert_queued(conn, req).await?;
    if let Accepted::Queued(id) = accepted {
        queued_now(engine, app, trigger, id).await;
    }
    Ok(accepted)
}

/// The rows of [`enqueue`], alone: a caller with rows of its own to write in
/// the same transaction (the reconciler's repair history) calls this inside
/// it, and [`queued_now`] once it has committed.
pub(crate) async fn insert_queued(conn: &mut AsyncPgConnection, req: Request<'_>) -> Result<Accepted, DeployError> {
    conn.transaction::<_, DeployError, _>(async |conn| {
        if let Some(d) = req.delivery {
            let fresh = diesel::insert_into(webhook_deliveries::table)
                .values((
                    webhook_deliveries::application_id.eq(req.app),
                    webhook_deliveries::delivery_id.eq(d),
                ))
                .on_conflict_do_nothing()
                .execute(conn)
                .await?;
            if fresh == 0 {
                let prior: Option<DeploymentId> = webhook_deliveries::table
                    .find((req.app, d))
                    .select(webhook_deliveries::deployment_id)
                    .first(conn)
                    .await?;
                return Ok(Accepted::Duplicate(prior));
            }
        }
        let id: DeploymentId = diesel::insert_into(deployments::table)
            .values((
                deployments::application_id.eq(req.app),
                deployments::organization_id.eq(req.org),
                deployments::trigger.eq(req.trigger),
                deployments::trigger_detail.eq(req.trigger_detail),
                deployments::rollback_of.eq(req.rollback_of.map(|d| d.id)),
                deployments::image.eq(req.rollback_of.and_then(|d| d.image.clone())),
                deployments::commit_sha.eq(req.rollback_of.and_then(|d| d.commit_sha.clone())),
            ))
            .returning(deployments::id)
            .get_result(conn)
            .await?;
        if let Some(d) = req.delivery {
            diesel::update(webhook_deliveries::table.find((req.app, d)))
                .set(webhook_deliveries::deployment_id.eq(id))
                .execute(conn)
                .await?;
        }
        // Who asked, in the audit log with the deployment it queued: a
        // request's own row, or (no request) the webhook's or the
        // worker's. A duplicate delivery returned above queues nothing
        // and is not recorded again.
        let actor = match req.trigger {
            Trigger::Webhook => Some(Actor::Webhook(req.trigger_detail.unwrap_or("webhook").to_owned())),
            Trigger::Repair => Some(Actor::Worker),
            _ => None,
        };
        match actor {
            Some(actor) => {
                audit::insert(
                    conn,
                    &audit::Entry {
                        org: Some(req.org.0),
                        actor,
                        action: format!("{} deploy", req.trigger),
                        target: Some(("deployment", id.0)),
                        outcome: audit::Outcome::Ok,
                        status: None,
                        client: None,
                    },
                )
                .await?
            }
            None => audit::within(conn).await?,
        }
        Ok(Accepted::Queued(id))
    })
    .await
}

/// What follows a committed `queued` row: the pages told, a worker woken.
pub(crate) async fn queued_now(engine: &Engine, app: AppId, trigger: Trigger, id: DeploymentId) {
    tracing::info!(deployment.id = %id, app.id = %app, trigger = %trigger, "deployment queued");
    crate::events::deployment_changed(engine, id.0).await;
    wake(engine, id).await;
}

/// Pushes a wake-up for the workers. Failure is only logged: the row is queued,
/// and the reaper re-pushes it.
pub(crate) async fn wake(engine: &Engine, id: DeploymentId) {
    let push = async {
        let mut kv = engine.kv.conn().await?;
        redis::cmd("LPUSH")
            .arg(engine.kv.key(QUEUE))
            .arg(id.to_string())
            .query_async::<()>(&mut kv)
            .await?;
        Ok::<_, StoreError>(())
    };
    if let Err(e) = push.await {
        tracing::warn!(error = %e, deployment.id = %id, "could not push the queue wake-up; the reaper will");
    }
}

fn queued(a: Accepted) -> DeploymentId {
    match a {
        Accepted::Queued(id) => id,
        // Only webhook deliveries can be duplicates, and these callers have none.
        Accepted::Duplicate(id) => id.expect("a request without a delivery id is never a duplicate"),
    }
}

/// Queues a deployment of the application's current settings (the Deploy button).
pub async fn deploy(engine: &Engine, caller: &Caller, app: AppId) -> Result<DeploymentId, DeployError> {
    deploy_as(engine, caller, app, Trigger::Manual).await
}

/// Queues a deployment, recording what started it.
pub async fn deploy_as(
    engine: &Engine,
    caller: &Caller,
    app: AppId,
    trigger: Trigger,
) -> Result<DeploymentId, DeployError> {
    access::check_with(engine, caller, Target::App(app), ProjectRole::Deployer).await?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    crate::apps::load(&mut conn, caller.org_id.0, app).await?;
    let req = Request {
        app,
        org: caller.org_id,
        trigger,
        trigger_detail: None,
        rollback_of: None,
        delivery: None,
    };
    Ok(queued(enqueue(engine, &mut conn, req).await?))
}

/// Redeploys an earlier deployment's image (one that went live): no clone, no
/// build. The new row records which deployment and commit it restores.
pub async fn rollback(engine: &Engine, caller: &Caller, to: DeploymentId) -> Result<DeploymentId, DeployError> {
    access::check_with(engine, caller, Target::Deployment(to), ProjectRole::Deployer).await?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let target = get_scoped(&mut conn, caller, to).await?;
    if !target.status.went_live() {
        return Err(DeployError::Conflict(
            "only a deployment that went live can be rolled back to".into(),
        ));
    }
    if target.image.is_none() || target.image_pruned {
        return Err(DeployError::Conflict("this deployment's image has been pruned".into()));
    }
    let req = Request {
        app: target.application_id,
        org: caller.org_id,
        trigger: Trigger::Rollback,
        trigger_detail: None,
        rollback_of: Some(&target),
        delivery: None,
    };
    Ok(queued(enqueue(engine, &mut conn, req).await?))
}

async fn get_scoped(
    conn: &mut AsyncPgConnection,
    caller: &Caller,
    id: DeploymentId,
) -> Result<Deployment, DeployError> {
    deployments::table
        .filter(deployments::id.eq(id))
        .filter(deployments::organization_id.eq(caller.org_id))
        .select(Deployment::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(DeployError::NotFound)
}

pub async fn get(engine: &Engine, caller: &Caller, id: DeploymentId) -> Result<Deployment, DeployError> {
    access::check_with(engine, caller, Target::Deployment(id), ProjectRole::Viewer).await?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    get_scoped(&mut conn, caller, id).await
}

/// Where a page of the history starts: the last row of the previous page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: DeploymentId,
}

impl Cursor {
    /// `<unix micros>.<id>`: opaque to clients, parsed back exactly.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.created_at.timestamp_micros(), self.id)
    }

    pub fn decode(raw: &str) -> Option<Self> {
        let (micros, id) = raw.split_once('.')?;
        Some(Self {
            created_at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
            id: DeploymentId(id.parse().ok()?),
        })
    }
}

/// A page of an application's deployments, newest first, and which one is live.
#[derive(Debug, Clone)]
pub struct History {
    pub live: Option<DeploymentId>,
    pub deployments: Vec<Deployment>,
    /// Where the next (older) page starts, when there is one.
    pub next: Option<Cursor>,
}

/// The most rows one page of history returns.
pub const PAGE_MAX: i64 = 100;

/// The newest page of the application's deployments.
pub async fn list(engine: &Engine, caller: &Caller, app: AppId, limit: i64) -> Result<History, DeployError> {
    list_page(engine, caller, app, None, limit).await
}

/// One page of the application's deployments, newest first, older than `after`.
pub async fn list_page(
    engine: &Engine,
    caller: &Caller,
    app: AppId,
    after: Option<Cursor>,
    limit: i64,
) -> Result<History, DeployError> {
    access::check_with(engine, caller, Target::App(app), ProjectRole::Viewer).await?;
    let limit = limit.clamp(1, PAGE_MAX);
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let (application, _) = crate::apps::load(&mut conn, caller.org_id.0, app).await?;
    let mut q = deployments::table
        .filter(deployments::application_id.eq(app))
        .filter(deployments::organization_id.eq(caller.org_id))
        .into_boxed();
    if let Some(c) = after {
        // (created_at, id) < cursor: the index on (application_id, created_at DESC, id DESC) serves it.
        q = q.filter(
            deployments::created_at
                .lt(c.created_at)
                .or(deployments::created_at.eq(c.created_at).and(deployments::id.lt(c.id))),
        );
    }
    let mut deployments = q
        .order((deployments::created_at.desc(), deployments::id.desc()))
        .limit(limit + 1)
        .select(Deployment::as_select())
        .load(&mut conn)
        .await?;
    let next = if deployments.len() as i64 > limit {
        deployments.truncate(limit as usize);
        deployments.last().map(|d| Cursor {
            created_at: d.created_at,
            id: d.id,
        })
    } else {
        None
    };
    Ok(History {
        live: application.live_deployment_id,
        deployments,
        next,
    })
}

/// Cancels a deployment: a queued one at once; a running one is flagged and its
/// worker stops the clone/build/start and cleans up (the live version keeps
/// serving). One that already finished cannot be cancelled (the state machine says so).
pub async fn cancel(engine: &Engine, caller: &Caller, id: DeploymentId) -> Result<(), DeployError> {
    access::check_with(engine, caller, Target::Deployment(id), ProjectRole::Deployer).await?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let d = get_scoped(&mut conn, caller, id).await?;
    let m = Move::new(id, d.status, Status::Cancelled, Holder::Anyone).note("cancelled before it started");
    if d.status == Status::Queued {
        match crate::audited!(conn, TransitionError, { transition(conn, m).await }).await {
            Ok(()) => {
                crate::events::deployment_changed(engine, id.0).await;
                crate::logs::close(engine, d.application_id, id, None, Status::Cancelled).await;
                return Ok(());
            }
            // Claimed in between: flag it for its worker below.
            Err(TransitionError::Lost) => {}
            Err(TransitionError::Illegal(_)) => unreachable!("queued can always be cancelled"),
            Err(TransitionError::Store(e)) => return Err(e.into()),
        }
    } else if let Err(e) = d.status.transition(Status::Cancelled) {
        return Err(DeployError::Conflict(format!(
            "this deployment has already finished ({}): it {e}",
            d.status
        )));
    }
    crate::audited!(conn, DeployError, {
        Ok(diesel::update(deployments::table.filter(deployments::id.eq(id)))
            .set(deployments::cancel_requested.eq(true))
            .execute(conn)
            .await?)
    })
    .await?;
    Ok(())
}

/// The application a deployment belongs to, for edges (WebSockets) that check access.
pub async fn app_of(engine: &Engine, caller: &Caller, id: DeploymentId) -> Result<(AppId, Status), DeployError> {
    access::check_with(engine, caller, Target::Deployment(id), ProjectRole::Viewer).await?;
    let d = get(engine, caller, id).await?;
    Ok((d.application_id, d.status))
}

/// The live deployment of an application, unscoped (worker use).
pub(crate) async fn live_of(conn: &mut AsyncPgConnection, app: AppId) -> Result<Option<DeploymentId>, StoreError> {
    Ok(applications::table
        .find(app)
        .select(applications::live_deployment_id)
        .first::<Option<DeploymentId>>(conn)
        .await
        .optional()?
        .flatten())
}
