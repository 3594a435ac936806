//! The audit log: who did what to what, when, from where, and how it ended.
//!
//! Rows are written by the edges for every state-changing server function
//! and REST operation (the server's audit layer), by sign-in itself (each
//! attempt, as an instance event), by the webhooks and repairs with the
//! deployments they queue, and by the worker when a deployment, backup,
//! restore or drill ends ([`worker_result`], in the transaction of the move).
//!
//! A request's row goes in with the change it records: the edge opens a
//! [`Pending`] row for the request ([`scoped`]), the engine writes it inside
//! the transaction of the change ([`within`], or [`audited!`](crate::audited) around a change
//! of one statement: both commit or neither, so a
//! crash after the commit cannot lose the row), and the edge settles the
//! outcome and HTTP status once the answer is known ([`settle`], which also
//! writes the row of a request that changed nothing or changed it outside a
//! transaction). A row whose status is empty is a change whose answer never
//! went out. A row names its actor (a user, an API key and its owner,
//! a webhook, the worker), never a value: the action is the operation's name
//! and the target an ID. Organization admins read their organization's rows;
//! instance administrators also the instance's (rows without an
//! organization). Rows older than `BERTH_AUDIT_DAYS` are dropped by the
//! sampler's minute pass.

use crate::error::{Classify, ErrorKind, StoreError};
use crate::ids::{ApiKeyId, OrgId, UserId};
use crate::names::ValidationError;
use crate::Engine;
use chrono::{DateTime, Utc};
use diesel::sql_types::{Bool, Int4, Int8, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("only admins and owners can read the audit log")]
    Forbidden,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<diesel::result::Error> for AuditError {
    fn from(e: diesel::result::Error) -> Self {
        AuditError::Store(e.into())
    }
}

impl Classify for AuditError {
    fn kind(&self) -> ErrorKind {
        match self {
            AuditError::Invalid(v) => v.kind(),
            AuditError::Forbidden => ErrorKind::Forbidden(self.to_string()),
            AuditError::Store(s) => s.kind(),
        }
    }
}

/// Who acted.
#[derive(Debug, Clone)]
pub enum Actor {
    /// A signed-in user, or an API key (`key`) of that user
    /// (`Caller::actor` makes one).
    User { user: UserId, key: Option<ApiKeyId> },
    /// A webhook delivery (`github push`, `deploy token`).
    Webhook(String),
    /// Berth's own worker.
    Worker,
    /// Nobody signed in yet: onboarding, accepting an invite, a sign-in; the
    /// label is what they gave (an email), never a secret.
    Anonymous(String),
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Refused: not signed in, not allowed.
    Denied,
    /// Tried and failed (bad input, a conflict, an error).
    Failed,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
            Outcome::Failed => "failed",
        }
    }

    /// The outcome an HTTP status tells.
    pub fn of_status(status: u16) -> Self {
        match status {
            200..=399 => Outcome::Ok,
            401 | 403 => Outcome::Denied,
            _ => Outcome::Failed,
        }
    }
}

/// One row to write.
#[derive(Debug, Clone)]
pub struct Entry {
    /// `None`: an instance event.
    pub org: Option<Uuid>,
    pub actor: Actor,
    /// The operation: a server function's endpoint (`apps/delete`), a REST
    /// operation (`DELETE /api/v1/apps/{id}`), or an event (`sign-in`).
    pub action: String,
    pub target: Option<(&'static str, Uuid)>,
    pub outcome: Outcome,
    pub status: Option<u16>,
    pub client: Option<String>,
}

/// Writes a row. The change it records is already made (or refused), so a
/// failure here is logged, loudly, and does not undo it.
pub async fn record(engine: &Engine, e: Entry) {
    if let Err(err) = write(engine, Uuid::new_v4(), &e).await {
        tracing::error!(error = %err, action = %e.action, "the audit log could not be written");
    }
}

/// Writes a row inside the caller's transaction (a change the engine makes
/// for no request, such as a webhook's deployment): it commits with it.
pub async fn insert(conn: &mut AsyncPgConnection, e: &Entry) -> Result<(), diesel::result::Error> {
    upsert(conn, Uuid::new_v4(), e).await
}

/// A job the worker finished, by its table.
#[derive(Debug, Clone, Copy)]
pub enum Job {
    Deployment,
    Backup,
    Restore,
}

/// The worker's result of a job (`action`, such as `deployment failed`),
/// written in the transaction of the job's final move: the row and the move
/// commit together. The organization is the job's own.
pub async fn worker_result(
    conn: &mut AsyncPgConnection,
    job: Job,
    id: Uuid,
    action: &str,
    ok: bool,
) -> Result<(), diesel::result::Error> {
    let (table, kind) = match job {
        Job::Deployment => ("deployments", "deployment"),
        Job::Backup => ("backups", "backup"),
        Job::Restore => ("restores", "restore"),
    };
    diesel::sql_query(format!(
        "INSERT INTO audit_log (organization_id, actor_kind, actor_label, action, target_kind, target_id, result)
         SELECT organization_id, 'worker', 'worker', $2, '{kind}', id, $3 FROM {table} WHERE id = $1"
    ))
    .bind::<SqlUuid, _>(id)
    .bind::<Text, _>(action)
    .bind::<Text, _>(if ok { "ok" } else { "failed" })
    .execute(conn)
    .await?;
    Ok(())
}

/// The row of the request being served, opened by the edge before the
/// request runs: what is done, to what, from where, and who does it (known
/// once the request has resolved its caller).
pub struct Pending {
    id: Uuid,
    action: String,
    target: Option<(&'static str, Uuid)>,
    client: Option<String>,
    who: Box<dyn Fn() -> Option<(Option<Uuid>, Actor)> + Send + Sync>,
    /// A transaction wrote the row (it may have rolled back since).
    written: AtomicBool,
}

impl Pending {
    /// `who` answers the row's organization (`None`: an instance event) and
    /// actor, or `None` while the request does not yet know its caller.
    pub fn new(
        action: String,
        target: Option<(&'static str, Uuid)>,
        client: Option<String>,
        who: impl Fn() -> Option<(Option<Uuid>, Actor)> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            id: Uuid::new_v4(),
            action,
            target,
            client,
            who: Box::new(who),
            written: AtomicBool::new(false),
        })
    }

    /// Whether a change's transaction wrote the row (committed or not).
    pub fn written(&self) -> bool {
        AtomicBool::load(&self.written, Ordering::Relaxed)
    }

    fn entry(&self, org: Option<Uuid>, actor: Actor, outcome: Outcome, status: Option<u16>) -> Entry {
        Entry {
            org,
            actor,
            action: self.action.clone(),
            target: self.target,
            outcome,
            status,
            client: self.client.clone(),
        }
    }
}

tokio::task_local! {
    // The request's pending row. A task-local rather than an argument because
    // it crosses every engine function between the edge and the transaction;
    // work spawned off the request (the worker's jobs) does not inherit it.
    static PENDING: Arc<Pending>;
}

/// Runs a request with its pending row.
pub async fn scoped<F: Future>(pending: Arc<Pending>, f: F) -> F::Output {
    PENDING.scope(pending, f).await
}

/// Inside the transaction of a change a request asked for: writes the
/// request's row (outcome `ok`, no status yet) so that it commits with the
/// change. Once per request (later calls find it written); nothing outside a
/// request or before the request knows its caller.
pub async fn within(conn: &mut AsyncPgConnection) -> Result<(), diesel::result::Error> {
    let Ok(pending) = PENDING.try_with(Arc::clone) else {
        return Ok(());
    };
    let Some((org, actor)) = (pending.who)() else {
        return Ok(());
    };
    pending.written.store(true, Ordering::Relaxed);
    upsert(conn, pending.id, &pending.entry(org, actor, Outcome::Ok, None)).await
}

/// A request's change as a transaction that writes the request's row first
/// ([`within`]): `audited!(conn, Error, { ...; Ok(value) })` on a pooled or
/// plain connection `conn`, which the block uses as the transaction's. For a
/// change of one statement this is what makes its row commit with it.
#[macro_export]
macro_rules! audited {
    ($conn:ident, $error:ty, $body:block) => {
        diesel_async::AsyncConnection::transaction::<_, $error, _>(&mut *$conn, async |$conn| {
            $crate::audit::within($conn).await?;
            $body
        })
    };
}

/// After the answer: the row with its outcome and status (written now if the
/// request changed nothing in a transaction, amended if it did). `who`
/// overrides the pending row's organization and actor (the edge's last word:
/// a caller resolved late).
pub async fn settle(engine: &Engine, pending: &Pending, who: (Option<Uuid>, Actor), status: u16) {
    let e = pending.entry(who.0, who.1, Outcome::of_status(status), Some(status));
    if let Err(err) = write(engine, pending.id, &e).await {
        tracing::error!(error = %err, action = %e.action, "the audit log could not be written");
    }
}

async fn write(engine: &Engine, id: Uuid, e: &Entry) -> Result<(), StoreError> {
    let mut conn = engine.db.get().await?;
    Ok(upsert(&mut conn, id, e).await?)
}

/// Inserts the row, or (the same request's row written in its transaction)
/// amends its outcome and status: the time, actor and target stay as the
/// change wrote them.
async fn upsert(conn: &mut AsyncPgConnection, id: Uuid, e: &Entry) -> Result<(), diesel::result::Error> {
    let (kind, user, key, label) = match &e.actor {
        Actor::User { user, key: None } => ("user", Some(user.0), None, String::new()),
        Actor::User { user, key: Some(k) } => ("key", Some(user.0), Some(k.0), String::new()),
        Actor::Webhook(which) => ("webhook", None, None, which.chars().take(200).collect()),
        Actor::Worker => ("worker", None, None, "worker".to_owned()),
        Actor::Anonymous(label) => ("anonymous", None, None, label.chars().take(200).collect()),
    };
    // The label of a user or key is taken as it is now, in the same statement.
    diesel::sql_query(
        "INSERT INTO audit_log (id, organization_id, actor_kind, actor_user, actor_key, actor_label,
                                action, target_kind, target_id, result, status, client_ip)
         SELECT $12, $1, $2, $3, $4,
                CASE WHEN $2 IN ('user', 'key') THEN
                     COALESCE((SELECT u.name || ' <' || u.email || '>' FROM users u WHERE u.id = $3), '')
                     || COALESCE((SELECT ' via key ' || k.name || ' (berth_' || k.prefix || '_…)'
                                  FROM api_keys k WHERE k.id = $4), '')
                ELSE $5 END,
                $6, $7, $8, $9, $10, $11
         ON CONFLICT (id) DO UPDATE SET result = EXCLUDED.result, status = EXCLUDED.status",
    )
    .bind::<Nullable<SqlUuid>, _>(e.org)
    .bind::<Text, _>(kind)
    .bind::<Nullable<SqlUuid>, _>(user)
    .bind::<Nullable<SqlUuid>, _>(key)
    .bind::<Text, _>(label)
    .bind::<Text, _>(&e.action)
    .bind::<Nullable<Text>, _>(e.target.map(|t| t.0))
    .bind::<Nullable<SqlUuid>, _>(e.target.map(|t| t.1))
    .bind::<Text, _>(e.outcome.as_str())
    .bind::<Nullable<Int4>, _>(e.status.map(i32::from))
    .bind::<Nullable<Text>, _>(e.client.as_deref())
    .bind::<SqlUuid, _>(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// What to show: each filter narrows; `before` pages back (the `at` of the
/// last row seen).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Part of the actor's label (name, email, key name or prefix, webhook).
    pub who: Option<String>,
    /// Part of the action (`apps/`, `delete`, `sign-in`).
    pub what: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub before: Option<DateTime<Utc>>,
    /// The instance's events instead of the organization's (instance administrators).
    pub instance: bool,
    pub limit: i64,
}

impl Filter {
    /// From the filter form: text filters of up to 200 characters, `since` a
    /// date (`YYYY-MM-DD`, UTC) or empty.
    pub fn parse(who: &str, what: &str, since: &str, instance: bool) -> Result<Self, ValidationError> {
        let text = |field: &'static str, raw: &str| -> Result<Option<String>, ValidationError> {
            let s = raw.trim();
            if s.chars().count() > 200 || s.chars().any(char::is_control) {
                return Err(ValidationError::new(field, "must be up to 200 characters"));
            }
            Ok((!s.is_empty()).then(|| s.to_owned()))
        };
        let since = match since.trim() {
            "" => None,
            d => Some(
                chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
                    .map_err(|_| ValidationError::new("since", "must be a date, YYYY-MM-DD"))?
                    .and_hms_opt(0, 0, 0)
                    .expect("midnight exists")
                    .and_utc(),
            ),
        };
        Ok(Self {
            who: text("who", who)?,
            what: text("what", what)?,
            since,
            before: None,
            instance,
            limit: 200,
        })
    }
}

/// A row as it is read.
#[derive(Debug, Clone, Serialize, QueryableByName)]
pub struct Row {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = Timestamptz)]
    pub at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    pub organization_id: Option<Uuid>,
    #[diesel(sql_type = Text)]
    pub actor_kind: String,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    pub actor_user: Option<Uuid>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    pub actor_key: Option<Uuid>,
    #[diesel(sql_type = Text)]
    pub actor_label: String,
    #[diesel(sql_type = Text)]
    pub action: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub target_kind: Option<String>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    pub target_id: Option<Uuid>,
    #[diesel(sql_type = Text)]
    pub result: String,
    #[diesel(sql_type = Nullable<Int4>)]
    pub status: Option<i32>,
    #[diesel(sql_type = Nullable<Text>)]
    pub client_ip: Option<String>,
}

/// Who reads the log: their organization, whether they manage it, whether
/// they administer the instance (`Caller::audit_reader` makes one).
#[derive(Debug, Clone, Copy)]
pub struct Reader {
    pub org: OrgId,
    pub manages: bool,
    pub instance_admin: bool,
}

/// Rows, newest first: the reader's organization's (admins and owners), or
/// with `instance` the instance's (instance administrators).
pub async fn list(engine: &Engine, reader: Reader, f: &Filter) -> Result<Vec<Row>, AuditError> {
    if f.instance && !reader.instance_admin {
        return Err(AuditError::Forbidden);
    }
    if !f.instance && !reader.manages {
        return Err(AuditError::Forbidden);
    }
    let like = |s: &Option<String>| {
        s.as_ref().map(|x| {
            let escaped = x.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
            format!("%{escaped}%")
        })
    };
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let rows = diesel::sql_query(
        "SELECT id, at, organization_id, actor_kind, actor_user, actor_key, actor_label, action,
                target_kind, target_id, result, status, client_ip
         FROM audit_log
         WHERE (CASE WHEN $1 THEN organization_id IS NULL ELSE organization_id = $2 END)
           AND ($3::text IS NULL OR actor_label ILIKE $3)
           AND ($4::text IS NULL OR action ILIKE $4)
           AND ($5::timestamptz IS NULL OR at >= $5)
           AND ($6::timestamptz IS NULL OR at < $6)
         ORDER BY at DESC, id DESC
         LIMIT $7",
    )
    .bind::<Bool, _>(f.instance)
    .bind::<SqlUuid, _>(reader.org.0)
    .bind::<Nullable<Text>, _>(like(&f.who))
    .bind::<Nullable<Text>, _>(like(&f.what))
    .bind::<Nullable<Timestamptz>, _>(f.since)
    .bind::<Nullable<Timestamptz>, _>(f.before)
    .bind::<Int8, _>(f.limit.clamp(1, 10_000))
    .load(&mut conn)
    .await?;
    Ok(rows)
}

/// Drops rows older than `days`.
pub async fn prune(engine: &Engine, days: u32) -> Result<usize, StoreError> {
    let mut conn = engine.db.get().await?;
    Ok(
        diesel::sql_query("DELETE FROM audit_log WHERE at < now() - make_interval(days => $1)")
            .bind::<Int4, _>(days.min(36_500) as i32)
            .execute(&mut conn)
            .await?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_or_name_their_field() {
        let f = Filter::parse(" ada ", "", "2026-12-01", false).unwrap();
        assert_eq!(f.who.as_deref(), Some("ada"));
        assert!(f.what.is_none());
        assert_eq!(f.since.unwrap().to_rfc3339(), "2026-12-01T00:00:00+00:00");
        assert_eq!(Filter::parse("", "", "yesterday", false).unwrap_err().field, "since");
        assert_eq!(Filter::parse(&"x".repeat(201), "", "", false).unwrap_err().field, "who");
    }

    #[test]
    fn statuses_tell_the_outcome() {
        assert_eq!(Outcome::of_status(204), Outcome::Ok);
        assert_eq!(Outcome::of_status(403), Outcome::Denied);
        assert_eq!(Outcome::of_status(401), Outcome::Denied);
        assert_eq!(Outcome::of_status(422), Outcome::Failed);
        assert_eq!(Outcome::of_status(500), Outcome::Failed);
    }
}
