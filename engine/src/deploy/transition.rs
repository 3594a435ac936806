//! The one writer of `deployments.status`. Every move of a deployment (the
//! claim, each pipeline step, go-live, superseding the previous live one, a
//! cancel, a failure, the reaper) is one call of [`transition`]: the state
//! machine ([`Status::can_become`]) is asked first, and the UPDATE is conditional
//! on the row still being where the caller believes it is and held by whom the
//! caller says. Two processes can never both move the same deployment.

pub use crate::jobs::{Holder, TransitionError};
use diesel::sql_types::{Bool, Double, Nullable, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use lifecycle::DeploymentStatus as Status;
use lifecycle::NotifyEvent;
use uuid::Uuid;

/// One move of one deployment: its `note` is the reason, `by` the deployment
/// that replaced it.
pub type Move<'a> = crate::jobs::Move<'a, Status>;

/// Makes the move, or says why not. Stamps the step's column, the worker, the
/// heartbeat, the reason and the end time as the target state requires.
pub async fn transition(conn: &mut AsyncPgConnection, m: Move<'_>) -> Result<(), TransitionError> {
    m.check(Status::Queued)?;
    // Going live and failing are told to the channels that chose them, and
    // written to the audit log, in the transaction of the move: told exactly
    // when it happened.
    let event = match m.to {
        Status::Running => Some(NotifyEvent::DeploymentSucceeded),
        Status::Failed => Some(NotifyEvent::DeploymentFailed),
        _ => None,
    };
    match event {
        None => update(conn, m).await,
        Some(event) => {
            use diesel_async::AsyncConnection;
            conn.transaction::<_, TransitionError, _>(async |conn| {
                update(conn, m).await?;
                diesel::sql_query(
                    "INSERT INTO notification_deliveries (organization_id, channel_id, event, facts)
                     SELECT c.organization_id, c.id, $2,
                            jsonb_build_object('app', a.name, 'app_id', a.id, 'project', p.name,
                                               'deployment_id', d.id, 'reason', d.reason)
                     FROM deployments d
                     JOIN applications a ON a.id = d.application_id
                     JOIN environments e ON e.id = a.environment_id
                     JOIN projects p ON p.id = e.project_id
                     JOIN notification_channels c ON c.organization_id = d.organization_id AND $2 = ANY (c.events)
                     WHERE d.id = $1",
                )
                .bind::<SqlUuid, _>(m.id)
                .bind::<Text, _>(event.name())
                .execute(conn)
                .await?;
                // The worker's result, in the audit log with the move itself.
                let action = format!("deployment {}", m.to);
                crate::audit::worker_result(
                    conn,
                    crate::audit::Job::Deployment,
                    m.id,
                    &action,
                    m.to == Status::Running,
                )
                .await?;
                Ok(())
            })
            .await
        }
    }
}

async fn update(conn: &mut AsyncPgConnection, m: Move<'_>) -> Result<(), TransitionError> {
    let (holder, worker, lease) = m.holder.binds();
    let n = diesel::sql_query(
        "UPDATE deployments SET
            status = $1,
            worker_id = COALESCE($4, worker_id),
            heartbeat_at = CASE WHEN $5 THEN now() ELSE heartbeat_at END,
            cloning_at = CASE WHEN $1 = 'cloning' THEN now() ELSE cloning_at END,
            building_at = CASE WHEN $1 = 'building' THEN now() ELSE building_at END,
            starting_at = CASE WHEN $1 = 'starting' THEN now() ELSE starting_at END,
            health_checking_at = CASE WHEN $1 = 'health_checking' THEN now() ELSE health_checking_at END,
            routing_at = CASE WHEN $1 = 'routing' THEN now() ELSE routing_at END,
            finished_at = CASE WHEN $1 IN ('running', 'failed', 'cancelled') THEN now() ELSE finished_at END,
            superseded_at = CASE WHEN $1 = 'superseded' THEN now() ELSE superseded_at END,
            superseded_by = COALESCE($6, superseded_by),
            reason = COALESCE($7, reason),
            cancel_requested = cancel_requested OR $1 = 'cancelled'
         WHERE id = $2 AND status = $3
           AND CASE $8 WHEN 'worker' THEN worker_id = $9
                       WHEN 'stale' THEN heartbeat_at < now() - make_interval(secs => $10)
                       ELSE TRUE END",
    )
    .bind::<Text, _>(m.to)
    .bind::<SqlUuid, _>(m.id)
    .bind::<Nullable<Text>, _>(m.from)
    .bind::<Nullable<Text>, _>(m.claim_for)
    .bind::<Bool, _>(m.to.is_active())
    .bind::<Nullable<SqlUuid>, _>(m.by)
    .bind::<Nullable<Text>, _>(m.note)
    .bind::<Text, _>(holder)
    .bind::<Nullable<Text>, _>(worker)
    .bind::<Double, _>(lease)
    .execute(conn)
    .await?;
    if n == 1 {
        Ok(())
    } else {
        Err(TransitionError::Lost)
    }
}

/// A deployment held by a worker whose heartbeat is older than the lease, for
/// the reaper (which moves each through [`transition`]).
#[derive(diesel::QueryableByName, Debug)]
pub struct StaleRow {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub application_id: Uuid,
    #[diesel(sql_type = Text)]
    pub status: Status,
}
