//! The one writer of `backups.status`, `restores.status` and `backups.drill_status`.
//! Each move asks the state machine first ([`lifecycle::JobStatus`],
//! [`lifecycle::DrillStatus`]), then runs one UPDATE conditional on the row's
//! current state and holder; the claim, the end of a job, queueing a drill and
//! the reaper all go through here.

use crate::jobs::TransitionError;
use diesel::sql_types::{Double, Nullable, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use lifecycle::{DrillStatus, JobStatus, NotifyEvent};

/// The tables whose rows are jobs with a [`JobStatus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobTable {
    Backups,
    Restores,
}

/// One move of a backup or a restore (`note`: why it failed).
pub type JobMove<'a> = crate::jobs::Move<'a, JobStatus>;

/// The one UPDATE of a job table's status (the table name cannot be a bind value).
macro_rules! job_update {
    ($table:literal) => {
        concat!(
            "UPDATE ",
            $table,
            " SET
                status = $1,
                worker_id = COALESCE($4, worker_id),
                heartbeat_at = CASE WHEN $1 = 'running' THEN now() ELSE heartbeat_at END,
                started_at = CASE WHEN $1 = 'running' THEN now() ELSE started_at END,
                finished_at = CASE WHEN $1 IN ('succeeded', 'failed') THEN now() ELSE finished_at END,
                error = COALESCE($5, error)
             WHERE id = $2 AND status = $3
               AND CASE $6 WHEN 'worker' THEN worker_id = $7
                           WHEN 'stale' THEN heartbeat_at < now() - make_interval(secs => $8)
                           ELSE TRUE END"
        )
    };
}

/// What a backup's notice says: its service, destination, size and error.
const BACKUP_NOTICE: &str = "INSERT INTO notification_deliveries (organization_id, channel_id, event, facts)
     SELECT c.organization_id, c.id, $2,
            jsonb_build_object('service', b.service_name, 'service_id', b.service_id, 'backup_id', b.id,
                               'destination', s.name, 'size_bytes', b.size_bytes,
                               'reason', COALESCE(CASE WHEN $2 = 'drill_failed' THEN b.drill_detail END, b.error))
     FROM backups b
     JOIN s3_destinations s ON s.id = b.destination_id
     JOIN notification_channels c ON c.organization_id = b.organization_id AND $2 = ANY (c.events)
     WHERE b.id = $1";

/// Queues a backup's notice (on the caller's transaction).
async fn notice(conn: &mut AsyncPgConnection, id: uuid::Uuid, event: NotifyEvent) -> Result<(), TransitionError> {
    diesel::sql_query(BACKUP_NOTICE)
        .bind::<SqlUuid, _>(id)
        .bind::<Text, _>(event.name())
        .execute(conn)
        .await?;
    Ok(())
}

/// Moves a backup or a restore, or says why not. An end is written to the
/// audit log, and a backup's told to the channels that chose it, in the
/// transaction of the move.
pub async fn transition(conn: &mut AsyncPgConnection, table: JobTable, m: JobMove<'_>) -> Result<(), TransitionError> {
    m.check(JobStatus::Queued)?;
    if !matches!(m.to, JobStatus::Succeeded | JobStatus::Failed) {
        return job_move(conn, table, m).await;
    }
    let event = match (table, m.to) {
        (JobTable::Backups, JobStatus::Succeeded) => Some(NotifyEvent::BackupSucceeded),
        (JobTable::Backups, _) => Some(NotifyEvent::BackupFailed),
        (JobTable::Restores, _) => None,
    };
    let (job, noun) = match table {
        JobTable::Backups => (crate::audit::Job::Backup, "backup"),
        JobTable::Restores => (crate::audit::Job::Restore, "restore"),
    };
    use diesel_async::AsyncConnection;
    conn.transaction::<_, TransitionError, _>(async |conn| {
        job_move(conn, table, m).await?;
        let action = format!("{noun} {}", m.to);
        crate::audit::worker_result(conn, job, m.id, &action, m.to == JobStatus::Succeeded).await?;
        match event {
            Some(event) => notice(conn, m.id, event).await,
            None => Ok(()),
        }
    })
    .await
}

async fn job_move(conn: &mut AsyncPgConnection, table: JobTable, m: JobMove<'_>) -> Result<(), TransitionError> {
    let (holder, worker, lease) = m.holder.binds();
    let sql = match table {
        JobTable::Backups => job_update!("backups"),
        JobTable::Restores => job_update!("restores"),
    };
    let n = diesel::sql_query(sql)
        .bind::<Text, _>(m.to)
        .bind::<SqlUuid, _>(m.id)
        .bind::<Nullable<Text>, _>(m.from)
        .bind::<Nullable<Text>, _>(m.claim_for)
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

/// One move of a backup's restore drill (`id` is the backup's; `note`: what it
/// found or why it failed). `from` is `None` for a backup never drilled.
pub type DrillMove<'a> = crate::jobs::Move<'a, DrillStatus>;

/// Moves a drill, or says why not.
pub async fn drill_transition(conn: &mut AsyncPgConnection, m: DrillMove<'_>) -> Result<(), TransitionError> {
    m.check(DrillStatus::Queued)?;
    if !matches!(m.to, DrillStatus::Verified | DrillStatus::Failed) {
        return drill_move(conn, m).await;
    }
    use diesel_async::AsyncConnection;
    conn.transaction::<_, TransitionError, _>(async |conn| {
        drill_move(conn, m).await?;
        let (action, ok) = (format!("drill {}", m.to), m.to == DrillStatus::Verified);
        crate::audit::worker_result(conn, crate::audit::Job::Backup, m.id, &action, ok).await?;
        if ok {
            return Ok(());
        }
        notice(conn, m.id, NotifyEvent::DrillFailed).await
    })
    .await
}

async fn drill_move(conn: &mut AsyncPgConnection, m: DrillMove<'_>) -> Result<(), TransitionError> {
    let (holder, worker, lease) = m.holder.binds();
    let n = diesel::sql_query(
        "UPDATE backups SET
            drill_status = $1,
            drill_worker_id = COALESCE($4, drill_worker_id),
            drill_heartbeat_at = CASE WHEN $1 = 'running' THEN now() ELSE drill_heartbeat_at END,
            drill_at = CASE WHEN $1 IN ('verified', 'failed') THEN now() ELSE drill_at END,
            drill_detail = CASE WHEN $1 = 'queued' THEN NULL ELSE COALESCE($5, drill_detail) END
         WHERE id = $2 AND drill_status IS NOT DISTINCT FROM $3
           AND CASE $6 WHEN 'worker' THEN drill_worker_id = $7
                       WHEN 'stale' THEN drill_heartbeat_at < now() - make_interval(secs => $8)
                       ELSE TRUE END",
    )
    .bind::<Text, _>(m.to)
    .bind::<SqlUuid, _>(m.id)
    .bind::<Nullable<Text>, _>(m.from)
    .bind::<Nullable<Text>, _>(m.claim_for)
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
