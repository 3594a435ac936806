//! The one writer of `backups.status`, `restores.status` and `backups.drill_status`.
//! Each move asks the state machine first ([`lifecycle::JobStatus`],
//! [`lifecycle::DrillStatus`]), then runs one UPDATE conditional on the row's
//! current state and holder; the claim, the end of a job, queueing a drill and
//! the reaper all go through here.

use crate::jobs::{Holder, TransitionError};
use diesel::sql_types::{Double, Nullable, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use lifecycle::{DrillStatus, JobStatus, Lifecycle};
use uuid::Uuid;

/// The tables whose rows are jobs with a [`JobStatus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobTable {
    Backups,
    Restores,
}

/// One move of a backup or a restore.
#[derive(Debug, Clone, Copy)]
pub struct JobMove<'a> {
    pub table: JobTable,
    pub id: Uuid,
    pub from: JobStatus,
    pub to: JobStatus,
    pub holder: Holder<'a>,
    /// Set on the claim: the worker that takes it.
    pub claim_for: Option<&'a str>,
    /// Why it failed.
    pub error: Option<&'a str>,
}

impl<'a> JobMove<'a> {
    pub fn new(table: JobTable, id: Uuid, from: JobStatus, to: JobStatus, holder: Holder<'a>) -> Self {
        Self {
            table,
            id,
            from,
            to,
            holder,
            claim_for: None,
            error: None,
        }
    }

    pub fn claim_for(mut self, worker: &'a str) -> Self {
        self.claim_for = Some(worker);
        self
    }

    pub fn error(mut self, error: &'a str) -> Self {
        self.error = Some(error);
        self
    }
}

// Two statements with the same shape: the table name cannot be a bind value.
const BACKUPS: &str = "UPDATE backups SET
        status = $1,
        worker_id = COALESCE($4, worker_id),
        heartbeat_at = CASE WHEN $1 = 'running' THEN now() ELSE heartbeat_at END,
        started_at = CASE WHEN $1 = 'running' THEN now() ELSE started_at END,
        finished_at = CASE WHEN $1 IN ('succeeded', 'failed') THEN now() ELSE finished_at END,
        error = COALESCE($5, error)
     WHERE id = $2 AND status = $3
       AND CASE $6 WHEN 'worker' THEN worker_id = $7
                   WHEN 'stale' THEN heartbeat_at < now() - make_interval(secs => $8)
                   ELSE TRUE END";
const RESTORES: &str = "UPDATE restores SET
        status = $1,
        worker_id = COALESCE($4, worker_id),
        heartbeat_at = CASE WHEN $1 = 'running' THEN now() ELSE heartbeat_at END,
        started_at = CASE WHEN $1 = 'running' THEN now() ELSE started_at END,
        finished_at = CASE WHEN $1 IN ('succeeded', 'failed') THEN now() ELSE finished_at END,
        error = COALESCE($5, error)
     WHERE id = $2 AND status = $3
       AND CASE $6 WHEN 'worker' THEN worker_id = $7
                   WHEN 'stale' THEN heartbeat_at < now() - make_interval(secs => $8)
                   ELSE TRUE END";

/// Moves a backup or a restore, or says why not.
pub async fn transition(conn: &mut AsyncPgConnection, m: JobMove<'_>) -> Result<(), TransitionError> {
    m.from.transition(m.to)?;
    let (holder, worker, lease) = m.holder.binds();
    let sql = match m.table {
        JobTable::Backups => BACKUPS,
        JobTable::Restores => RESTORES,
    };
    let n = diesel::sql_query(sql)
        .bind::<Text, _>(m.to)
        .bind::<SqlUuid, _>(m.id)
        .bind::<Text, _>(m.from)
        .bind::<Nullable<Text>, _>(m.claim_for)
        .bind::<Nullable<Text>, _>(m.error)
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

/// One move of a backup's restore drill. `from` is `None` for a backup never
/// drilled (only queueing starts there).
#[derive(Debug, Clone, Copy)]
pub struct DrillMove<'a> {
    pub backup: Uuid,
    pub from: Option<DrillStatus>,
    pub to: DrillStatus,
    pub holder: Holder<'a>,
    pub claim_for: Option<&'a str>,
    /// What the drill found (counts), or why it failed.
    pub detail: Option<&'a str>,
}

impl<'a> DrillMove<'a> {
    pub fn new(backup: Uuid, from: Option<DrillStatus>, to: DrillStatus, holder: Holder<'a>) -> Self {
        Self {
            backup,
            from,
            to,
            holder,
            claim_for: None,
            detail: None,
        }
    }

    pub fn claim_for(mut self, worker: &'a str) -> Self {
        self.claim_for = Some(worker);
        self
    }

    pub fn detail(mut self, detail: &'a str) -> Self {
        self.detail = Some(detail);
        self
    }
}

/// Moves a drill, or says why not.
pub async fn drill_transition(conn: &mut AsyncPgConnection, m: DrillMove<'_>) -> Result<(), TransitionError> {
    match m.from {
        Some(from) => {
            from.transition(m.to)?;
        }
        None if m.to == DrillStatus::Queued => {}
        None => {
            return Err(lifecycle::IllegalTransition {
                from: "none",
                to: m.to.as_str(),
            }
            .into())
        }
    }
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
    .bind::<SqlUuid, _>(m.backup)
    .bind::<Nullable<Text>, _>(m.from)
    .bind::<Nullable<Text>, _>(m.claim_for)
    .bind::<Nullable<Text>, _>(m.detail)
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
