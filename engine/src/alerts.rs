//! Alert rules: a figure (CPU or memory of an app or a database service, the
//! host's disk) above a threshold for a while, or a count of events (restarts,
//! OOM kills of an app's or a database's container, as the reconciler records
//! them) reaching a threshold within a window, or a domain's certificate
//! failing or expiring within a number of days. Evaluated after each sampling
//! pass; each breach is an incident that moves pending → firing → resolved
//! ([`lifecycle::IncidentState`]), and the rule's channels are told once when
//! it fires and once when it clears.
//!
//! The sampler evaluates, one worker at a time across replicas; two that
//! overlap (a leader whose lock was lost while it evaluated, and the next)
//! still agree: at most one open incident per rule and subject (a partial
//! unique index), and each move is a conditional UPDATE whose notice is queued
//! in the same transaction, so only the worker whose move took tells anyone.

use crate::accounts::Caller;
use crate::error::{Classify, ErrorKind, StoreError};
use crate::metrics::{store::Point, Subject};
use crate::names::ValidationError;
use crate::Engine;
use diesel::sql_types::{Array, Float4, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel::{OptionalExtension, QueryableByName};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use lifecycle::{AlertMetric, IncidentState, Lifecycle, NotifyEvent};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::denied_into!(AlertError);

impl From<diesel::result::Error> for AlertError {
    fn from(e: diesel::result::Error) -> Self {
        if crate::accounts::is_unique_violation(&e, "alert_rules_organization_id_name_key") {
            return ValidationError::new("name", "a rule with this name already exists").into();
        }
        AlertError::Store(e.into())
    }
}

impl Classify for AlertError {
    fn kind(&self) -> ErrorKind {
        match self {
            AlertError::Invalid(v) => v.kind(),
            AlertError::NotFound => ErrorKind::NotFound,
            AlertError::Forbidden(m) => ErrorKind::Forbidden((*m).to_owned()),
            AlertError::Store(s) => s.kind(),
        }
    }
}

/// A new rule, parsed.
#[derive(Debug, Clone)]
pub struct NewRule {
    name: String,
    metric: AlertMetric,
    threshold: f32,
    for_secs: i32,
    channels: Vec<Uuid>,
}

impl NewRule {
    pub fn parse(
        name: &str,
        metric: &str,
        threshold: &str,
        for_secs: &str,
        channels: &[String],
    ) -> Result<Self, ValidationError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            return Err(ValidationError::new(
                "name",
                "must be 1-64 characters, no control characters",
            ));
        }
        let metric: AlertMetric = metric
            .trim()
            .parse()
            .map_err(|_| ValidationError::new("metric", "must be cpu, memory or disk"))?;
        // CPU is a percent of one core, so a busy multi-core app goes past 100.
        let max = match metric {
            AlertMetric::Cpu => 6400.0,
            AlertMetric::Memory | AlertMetric::Disk => 100.0,
            AlertMetric::Restarts | AlertMetric::Oom => 1000.0,
            AlertMetric::Certificate => 365.0,
        };
        let threshold = threshold
            .trim()
            .parse::<f32>()
            .ok()
            .filter(|t| t.is_finite() && *t > 0.0 && *t <= max)
            .filter(|t| !(metric.counts() || metric == AlertMetric::Certificate) || t.fract() == 0.0)
            .ok_or_else(|| {
                let what = match metric {
                    AlertMetric::Certificate => "a number of days",
                    m if m.counts() => "a number of times",
                    _ => "a percent above 0",
                };
                ValidationError::new("threshold", format!("must be {what}, at most {max}"))
            })?;
        // Percents: how long they must hold. Counts: the window they are counted in.
        let (default, min) = if metric.counts() { (3600, 10) } else { (0, 0) };
        let for_secs = match for_secs.trim() {
            "" => default,
            s => s
                .parse::<i32>()
                .ok()
                .filter(|s| (min..=604_800).contains(s))
                .ok_or_else(|| ValidationError::new("for_secs", format!("must be {min}-604800 seconds")))?,
        };
        let mut ids = Vec::new();
        for c in channels.iter().map(|c| c.trim()).filter(|c| !c.is_empty()) {
            let id = Uuid::parse_str(c)
                .map_err(|_| ValidationError::new("channels", "names a channel that does not exist"))?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        if ids.is_empty() {
            return Err(ValidationError::new("channels", "choose at least one channel to tell"));
        }
        Ok(Self {
            name: name.to_owned(),
            metric,
            threshold,
            for_secs,
            channels: ids,
        })
    }
}

/// A rule as a page shows it.
#[derive(Debug, Clone, QueryableByName)]
pub struct Rule {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub organization_id: Uuid,
    #[diesel(sql_type = Text)]
    pub name: String,
    #[diesel(sql_type = Text)]
    pub metric: AlertMetric,
    #[diesel(sql_type = Float4)]
    pub threshold: f32,
    #[diesel(sql_type = Integer)]
    pub for_secs: i32,
    #[diesel(sql_type = Array<SqlUuid>)]
    pub channels: Vec<Uuid>,
}

/// An incident as a page shows it.
#[derive(Debug, Clone, QueryableByName)]
pub struct Incident {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = Text)]
    pub rule: String,
    #[diesel(sql_type = Text)]
    pub subject_name: String,
    #[diesel(sql_type = Text)]
    pub state: IncidentState,
    #[diesel(sql_type = Float4)]
    pub value: f32,
    #[diesel(sql_type = Timestamptz)]
    pub started_at: chrono::DateTime<chrono::Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub resolved_at: Option<chrono::DateTime<chrono::Utc>>,
}

const RULE_COLUMNS: &str = "id, organization_id, name, metric, threshold, for_secs, channels";

pub async fn list_rules(engine: &Engine, caller: &Caller) -> Result<Vec<Rule>, AlertError> {
    // The organization's rules: not shown to a caller limited to projects.
    if crate::access::visible(caller).is_some() {
        return Ok(Vec::new());
    }
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    Ok(diesel::sql_query(format!(
        "SELECT {RULE_COLUMNS} FROM alert_rules WHERE organization_id = $1 ORDER BY name"
    ))
    .bind::<SqlUuid, _>(caller.org_id.0)
    .load(&mut conn)
    .await?)
}

/// The organization's latest 50 incidents that fired (open ones first).
pub async fn list_incidents(engine: &Engine, caller: &Caller) -> Result<Vec<Incident>, AlertError> {
    // Incidents name apps and databases of every project: not a feed for a
    // caller limited to some of them.
    if crate::access::visible(caller).is_some() {
        return Ok(Vec::new());
    }
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    Ok(diesel::sql_query(
        "SELECT i.id, r.name AS rule, i.subject_name, i.state, i.value, i.started_at, i.resolved_at
         FROM alert_incidents i JOIN alert_rules r ON r.id = i.rule_id
         WHERE i.organization_id = $1 AND i.state <> 'pending'
         ORDER BY i.state = 'firing' DESC, i.started_at DESC LIMIT 50",
    )
    .bind::<SqlUuid, _>(caller.org_id.0)
    .load(&mut conn)
    .await?)
}

/// Rules are the organization's: its admins and owners change them, not
/// through a key limited to projects.
fn managers_only(caller: &Caller) -> Result<(), AlertError> {
    if !caller.role.can_manage() {
        return Err(AlertError::Forbidden("only admins and owners can change alert rules"));
    }
    Ok(crate::access::organization_wide(
        caller,
        "a key limited to projects cannot change alert rules",
    )?)
}

pub async fn create_rule(engine: &Engine, caller: &Caller, new: NewRule) -> Result<Uuid, AlertError> {
    managers_only(caller)?;
    // The disk is the host's: a power over the machine itself.
    if new.metric == AlertMetric::Disk && !caller.instance_admin {
        return Err(ValidationError::new(
            "metric",
            "disk rules are for instance administrators (the disk is the host's)",
        )
        .into());
    }
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
    }
    // Only this organization's channels (another's IDs are as unknown as garbage).
    let row: Option<Id> = crate::audited!(conn, AlertError, {
        Ok(diesel::sql_query(
            "INSERT INTO alert_rules (organization_id, name, metric, threshold, for_secs, channels)
         SELECT $1, $2, $3, $4, $5, $6
         WHERE (SELECT count(*) FROM notification_channels WHERE organization_id = $1 AND id = ANY ($6))
               = cardinality($6)
         RETURNING id",
        )
        .bind::<SqlUuid, _>(caller.org_id.0)
        .bind::<Text, _>(&new.name)
        .bind::<Text, _>(new.metric)
        .bind::<Float4, _>(new.threshold)
        .bind::<Integer, _>(new.for_secs)
        .bind::<Array<SqlUuid>, _>(&new.channels)
        .get_result(conn)
        .await
        .optional()?)
    })
    .await?;
    // Another organization's channel is not found, as every foreign ID is.
    let row = row.ok_or(AlertError::NotFound)?;
    tracing::info!(rule.id = %row.id, org.id = %caller.org_id, metric = %new.metric, "alert rule added");
    Ok(row.id)
}

/// Changes a rule's name, threshold, time and channels; its figure stays (a
/// rule about another figure is a new rule). Open incidents stay open and
/// are judged by the changed rule from the next sampling pass on: one that
/// no longer breaches it clears, and is told so.
pub async fn update_rule(engine: &Engine, caller: &Caller, id: Uuid, new: NewRule) -> Result<(), AlertError> {
    managers_only(caller)?;
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        metric: AlertMetric,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        known_channels: i64,
    }
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    crate::audited!(conn, AlertError, {
        // Locked, so the channels counted are the ones the update keeps.
        let row: Row = diesel::sql_query(
            "SELECT r.metric,
                    (SELECT count(*) FROM notification_channels
                     WHERE organization_id = $2 AND id = ANY ($3)) AS known_channels
             FROM alert_rules r WHERE r.id = $1 AND r.organization_id = $2 FOR UPDATE",
        )
        .bind::<SqlUuid, _>(id)
        .bind::<SqlUuid, _>(caller.org_id.0)
        .bind::<Array<SqlUuid>, _>(&new.channels)
        .get_result(conn)
        .await
        .optional()?
        .ok_or(AlertError::NotFound)?;
        if row.metric != new.metric {
            return Err(ValidationError::new(
                "metric",
                "cannot change: add a rule about the other figure and remove this one",
            )
            .into());
        }
        if row.metric == AlertMetric::Disk && !caller.instance_admin {
            return Err(AlertError::Forbidden(
                "disk rules are for instance administrators (the disk is the host's)",
            ));
        }
        // Another organization's channel is not found, as every foreign ID is.
        if row.known_channels != new.channels.len() as i64 {
            return Err(AlertError::NotFound);
        }
        diesel::sql_query(
            "UPDATE alert_rules SET name = $3, threshold = $4, for_secs = $5, channels = $6
             WHERE id = $1 AND organization_id = $2",
        )
        .bind::<SqlUuid, _>(id)
        .bind::<SqlUuid, _>(caller.org_id.0)
        .bind::<Text, _>(&new.name)
        .bind::<Float4, _>(new.threshold)
        .bind::<Integer, _>(new.for_secs)
        .bind::<Array<SqlUuid>, _>(&new.channels)
        .execute(conn)
        .await?;
        Ok(())
    })
    .await?;
    tracing::info!(rule.id = %id, org.id = %caller.org_id, "alert rule changed");
    Ok(())
}

pub async fn delete_rule(engine: &Engine, caller: &Caller, id: Uuid) -> Result<(), AlertError> {
    managers_only(caller)?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let n = crate::audited!(conn, AlertError, {
        Ok(
            diesel::sql_query("DELETE FROM alert_rules WHERE id = $1 AND organization_id = $2")
                .bind::<SqlUuid, _>(id)
                .bind::<SqlUuid, _>(caller.org_id.0)
                .execute(conn)
                .await?,
        )
    })
    .await?;
    if n == 0 {
        return Err(AlertError::NotFound);
    }
    Ok(())
}

/// A subject a rule can look at, with its organization and name.
#[derive(Debug, Clone, QueryableByName)]
struct Known {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    organization_id: Uuid,
    #[diesel(sql_type = Text)]
    name: String,
}

/// Percent of a file system in use, when its figures are there.
fn used(used: Option<i64>, total: Option<i64>) -> Option<f32> {
    match (used, total) {
        (Some(u), Some(t)) if t > 0 => Some((u as f64 * 100.0 / t as f64) as f32),
        _ => None,
    }
}

/// Which of the host's file systems a disk figure is of: the fuller one.
fn fuller_disk(p: &Point) -> &'static str {
    match (
        used(p.disk_used, p.disk_total),
        used(p.docker_disk_used, p.docker_disk_total),
    ) {
        (Some(a), Some(b)) if b > a => "Docker's data root",
        (None, Some(_)) => "Docker's data root",
        _ => "Berth's data directory",
    }
}

/// The figure a rule looks at in a point, in percent (`None`: not this rule's kind of subject).
pub fn figure(metric: AlertMetric, subject: &Subject, p: &Point) -> Option<f32> {
    match (metric, subject) {
        (AlertMetric::Cpu, Subject::App(_) | Subject::Service(_)) => Some(p.cpu_percent),
        (AlertMetric::Memory, Subject::App(_) | Subject::Service(_)) if p.memory_limit > 0 => {
            Some((p.memory_bytes as f64 * 100.0 / p.memory_limit as f64) as f32)
        }
        // The fuller of the two file systems: Berth's data directory's and
        // Docker's data root's (the same one on most hosts).
        (AlertMetric::Disk, Subject::Host) => {
            match (
                used(p.disk_used, p.disk_total),
                used(p.docker_disk_used, p.docker_disk_total),
            ) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            }
        }
        _ => None,
    }
}

/// Evaluates every rule against one pass's points.
pub async fn evaluate(engine: &Engine, points: &[(Subject, Point)]) -> Result<(), StoreError> {
    let mut conn = engine.db.get().await?;
    let rules: Vec<Rule> = diesel::sql_query(format!("SELECT {RULE_COLUMNS} FROM alert_rules"))
        .load(&mut conn)
        .await?;
    if rules.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = points.iter().map(|(s, _)| s.id()).filter(|id| !id.is_nil()).collect();
    let known: Vec<Known> = diesel::sql_query(
        "SELECT id, organization_id, name FROM applications WHERE id = ANY ($1)
         UNION ALL SELECT id, organization_id, name FROM database_services WHERE id = ANY ($1)",
    )
    .bind::<Array<SqlUuid>, _>(&ids)
    .load(&mut conn)
    .await?;
    for rule in rules.iter().filter(|r| r.metric == AlertMetric::Certificate) {
        if let Err(e) = certificates(&mut conn, engine, rule).await {
            tracing::warn!(rule.id = %rule.id, error = %e, "evaluating an alert rule");
        }
    }
    for rule in rules
        .iter()
        .filter(|r| !r.metric.counts() && r.metric != AlertMetric::Certificate)
    {
        for (subject, p) in points {
            let Some(value) = figure(rule.metric, subject, p) else {
                continue;
            };
            // An app or service is watched by its own organization's rules only;
            // the host by the disk rules of instance administrators.
            let name = match subject {
                Subject::Host if rule.metric == AlertMetric::Disk => format!("this server ({})", fuller_disk(p)),
                Subject::Host => "this server".to_owned(),
                _ => match known.iter().find(|k| k.id == subject.id()) {
                    Some(k) if k.organization_id == rule.organization_id => k.name.clone(),
                    _ => continue,
                },
            };
            let what = rule.metric.words();
            let check = Check {
                breach: value > rule.threshold,
                hold_secs: rule.for_secs,
                value,
                firing: format!(
                    "{what} of {name} is {} (above {} for {} s)",
                    percent(value),
                    percent(rule.threshold),
                    rule.for_secs
                ),
                resolved: format!(
                    "{what} of {name} is back to {} (threshold {})",
                    percent(value),
                    percent(rule.threshold)
                ),
            };
            if let Err(e) = step(&mut conn, engine, rule, &Target::of(subject, &name), check).await {
                tracing::warn!(rule.id = %rule.id, error = %e, "evaluating an alert rule");
            }
        }
    }
    for rule in rules.iter().filter(|r| r.metric.counts()) {
        if let Err(e) = count(&mut conn, engine, rule).await {
            tracing::warn!(rule.id = %rule.id, error = %e, "evaluating an alert rule");
        }
    }
    Ok(())
}

/// What one evaluation found for one rule and subject.
struct Check {
    breach: bool,
    /// How long a breach must last before it fires.
    hold_secs: i32,
    value: f32,
    /// The notice's words when it fires, and when it clears.
    firing: String,
    resolved: String,
}

/// A subject counted by a count rule.
#[derive(QueryableByName)]
struct Counted {
    #[diesel(sql_type = SqlUuid)]
    subject: Uuid,
    #[diesel(sql_type = Text)]
    subject_kind: String,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Float4)]
    n: f32,
}

/// A count rule: every subject of the organization with events in the window,
/// or with an open incident (which may now clear), checked at once.
async fn count(conn: &mut AsyncPgConnection, engine: &Engine, rule: &Rule) -> Result<(), StoreError> {
    let event = match rule.metric {
        AlertMetric::Restarts => "restart",
        _ => "oom",
    };
    let counted: Vec<Counted> = diesel::sql_query(
        "WITH n AS (
             SELECT subject, subject_kind, count(*)::float4 AS n FROM container_events
             WHERE organization_id = $1 AND event = $2 AND at > now() - make_interval(secs => $3)
             GROUP BY subject, subject_kind
         ), open AS (
             SELECT subject, subject_kind FROM alert_incidents
             WHERE rule_id = $4 AND state IN ('pending', 'firing')
         )
         SELECT s.subject, s.subject_kind,
                COALESCE(a.name, d.name, '(removed)') AS name, COALESCE(n.n, 0)::float4 AS n
         FROM (SELECT subject, subject_kind FROM n UNION SELECT subject, subject_kind FROM open) s
         LEFT JOIN n ON n.subject = s.subject
         LEFT JOIN applications a ON s.subject_kind = 'app' AND a.id = s.subject
         LEFT JOIN database_services d ON s.subject_kind = 'service' AND d.id = s.subject",
    )
    .bind::<SqlUuid, _>(rule.organization_id)
    .bind::<Text, _>(event)
    .bind::<Integer, _>(rule.for_secs)
    .bind::<SqlUuid, _>(rule.id)
    .load(conn)
    .await?;
    let what = match rule.metric {
        AlertMetric::Restarts => "restarted",
        _ => "OOM-killed",
    };
    let times = |n: f32| {
        if n == 1.0 {
            "once".to_owned()
        } else {
            format!("{n} times")
        }
    };
    for c in counted {
        let subject = match c.subject_kind.as_str() {
            "app" => Subject::App(c.subject),
            _ => Subject::Service(c.subject),
        };
        let check = Check {
            breach: c.n >= rule.threshold,
            hold_secs: 0,
            value: c.n,
            firing: format!(
                "{} was {what} {} in the last {} s (rule: {})",
                c.name,
                times(c.n),
                rule.for_secs,
                times(rule.threshold)
            ),
            resolved: format!(
                "{} was {what} {} in the last {} s now",
                c.name,
                times(c.n),
                rule.for_secs
            ),
        };
        step(conn, engine, rule, &Target::of(&subject, &c.name), check).await?;
    }
    Ok(())
}

/// A domain a certificate rule looks at.
#[derive(QueryableByName)]
struct Domain {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    application_id: Uuid,
    #[diesel(sql_type = Text)]
    host: String,
    #[diesel(sql_type = Nullable<Text>)]
    error: Option<String>,
    /// Days left (`None`: no certificate yet).
    #[diesel(sql_type = Nullable<Float4>)]
    days: Option<f32>,
}

/// A certificate rule: every HTTPS domain of the organization whose
/// certificate failed or expires within the rule's days, and every one with
/// an open incident (which may now clear).
async fn certificates(conn: &mut AsyncPgConnection, engine: &Engine, rule: &Rule) -> Result<(), StoreError> {
    let domains: Vec<Domain> = diesel::sql_query(
        "SELECT d.id, d.application_id, d.host,
                CASE WHEN d.cert_status = 'failed' THEN COALESCE(d.cert_error, 'the certificate could not be obtained') END AS error,
                (EXTRACT(EPOCH FROM d.cert_not_after - now()) / 86400)::float4 AS days
         FROM domains d
         WHERE d.organization_id = $1 AND d.https
           AND (d.cert_status = 'failed'
                OR d.cert_not_after < now() + make_interval(days => $2)
                OR d.id IN (SELECT subject FROM alert_incidents WHERE rule_id = $3 AND state IN ('pending', 'firing')))",
    )
    .bind::<SqlUuid, _>(rule.organization_id)
    .bind::<Integer, _>(rule.threshold as i32)
    .bind::<SqlUuid, _>(rule.id)
    .load(conn)
    .await?;
    for d in domains {
        let expiring = d.days.is_some_and(|days| days < rule.threshold);
        let firing = match (&d.error, d.days) {
            (Some(e), _) => format!("the certificate of {} failed: {e}", d.host),
            (None, Some(days)) if days <= 0.0 => format!("the certificate of {} has expired", d.host),
            (None, Some(days)) => format!("the certificate of {} expires in {:.0} days", d.host, days.floor()),
            (None, None) => format!("{} has no certificate", d.host),
        };
        let check = Check {
            breach: d.error.is_some() || expiring,
            hold_secs: 0,
            value: d.days.unwrap_or(0.0),
            firing,
            resolved: format!("the certificate of {} is valid again", d.host),
        };
        let target = Target {
            kind: "domain",
            id: d.id,
            name: d.host.clone(),
            link: format!("/apps/{}?tab=domains", d.application_id),
        };
        step(conn, engine, rule, &target, check).await?;
    }
    Ok(())
}

/// Drops restarts and OOM kills past any window a rule can have (a week).
pub async fn prune(engine: &Engine) -> Result<(), StoreError> {
    let mut conn = engine.db.get().await?;
    diesel::sql_query("DELETE FROM container_events WHERE at < now() - interval '8 days'")
        .execute(&mut conn)
        .await?;
    Ok(())
}

/// Records that an app's (`Subject::App`) or a database's container restarted
/// (`restart`) or was OOM-killed (`oom`), in its organization. An OOM kill
/// seen twice within 10 s (Docker's event, then the repair of the container
/// it killed) is recorded once.
pub async fn record_event(engine: &Engine, subject: Subject, event: &'static str) -> Result<(), StoreError> {
    let kind = subject.kind();
    if !matches!(kind, "app" | "service") {
        return Ok(());
    }
    let mut conn = engine.db.get().await?;
    diesel::sql_query(
        "INSERT INTO container_events (organization_id, subject_kind, subject, event)
         SELECT organization_id, $2, id, $3 FROM (
             SELECT organization_id, id FROM applications WHERE id = $1 AND $2 = 'app'
             UNION ALL SELECT organization_id, id FROM database_services WHERE id = $1 AND $2 = 'service'
         ) s
         WHERE $3 <> 'oom' OR NOT EXISTS (
             SELECT 1 FROM container_events
             WHERE subject = $1 AND event = 'oom' AND at > now() - interval '10 seconds')",
    )
    .bind::<SqlUuid, _>(subject.id())
    .bind::<Text, _>(kind)
    .bind::<Text, _>(event)
    .execute(&mut conn)
    .await?;
    Ok(())
}

#[derive(QueryableByName)]
struct Open {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    state: IncidentState,
    #[diesel(sql_type = diesel::sql_types::Double)]
    held_secs: f64,
}

fn percent(v: f32) -> String {
    format!("{:.1} %", v)
}

/// What an incident is about: its kind and ID, its name, and where to look.
struct Target {
    kind: &'static str,
    id: Uuid,
    name: String,
    link: String,
}

impl Target {
    fn of(subject: &Subject, name: &str) -> Self {
        Self {
            kind: subject.kind(),
            id: subject.id(),
            name: name.to_owned(),
            link: match subject {
                Subject::App(id) => format!("/apps/{id}"),
                Subject::Service(id) => format!("/services/{id}"),
                _ => "/server".to_owned(),
            },
        }
    }
}

/// One rule, one subject, one finding: opens, fires, clears or resolves.
async fn step(
    conn: &mut AsyncPgConnection,
    engine: &Engine,
    rule: &Rule,
    target: &Target,
    check: Check,
) -> Result<(), StoreError> {
    let (link, name) = (&target.link, &target.name);
    if check.breach {
        let open: Open = diesel::sql_query(
            "INSERT INTO alert_incidents (rule_id, organization_id, subject_kind, subject, subject_name, state, value)
             VALUES ($1, $2, $3, $4, $5, 'pending', $6)
             ON CONFLICT (rule_id, subject) WHERE state IN ('pending', 'firing')
             DO UPDATE SET value = EXCLUDED.value
             RETURNING id, state, EXTRACT(EPOCH FROM now() - started_at)::float8 AS held_secs",
        )
        .bind::<SqlUuid, _>(rule.id)
        .bind::<SqlUuid, _>(rule.organization_id)
        .bind::<Text, _>(target.kind)
        .bind::<SqlUuid, _>(target.id)
        .bind::<Text, _>(name)
        .bind::<Float4, _>(check.value)
        .get_result(conn)
        .await?;
        if open.state == IncidentState::Pending && open.held_secs >= check.hold_secs as f64 {
            let facts = serde_json::json!({
                "rule": rule.name,
                "state": "firing",
                "detail": check.firing,
                "link": link,
            });
            if moved(conn, rule, open.id, IncidentState::Firing, &facts).await? {
                tracing::warn!(rule.id = %rule.id, subject = %target.id, value = check.value, "alert firing");
                crate::notify::delivery::wake(engine).await;
            }
        }
    } else {
        // A breach that did not last is forgotten; one that fired is resolved.
        diesel::sql_query("DELETE FROM alert_incidents WHERE rule_id = $1 AND subject = $2 AND state = 'pending'")
            .bind::<SqlUuid, _>(rule.id)
            .bind::<SqlUuid, _>(target.id)
            .execute(conn)
            .await?;
        #[derive(QueryableByName)]
        struct Id {
            #[diesel(sql_type = SqlUuid)]
            id: Uuid,
        }
        let firing: Option<Id> = diesel::sql_query(
            "SELECT id FROM alert_incidents WHERE rule_id = $1 AND subject = $2 AND state = 'firing'",
        )
        .bind::<SqlUuid, _>(rule.id)
        .bind::<SqlUuid, _>(target.id)
        .get_result(conn)
        .await
        .optional()?;
        if let Some(Id { id }) = firing {
            let facts = serde_json::json!({
                "rule": rule.name,
                "state": "resolved",
                "detail": check.resolved,
                "link": link,
            });
            if moved(conn, rule, id, IncidentState::Resolved, &facts).await? {
                tracing::info!(rule.id = %rule.id, subject = %target.id, value = check.value, "alert resolved");
                crate::notify::delivery::wake(engine).await;
            }
        }
    }
    Ok(())
}

/// The one writer of `alert_incidents.state` past its opening: moves it to
/// `to` if it is still where the state machine allows, and queues the rule's
/// notice in the same transaction. False when another replica moved it first.
async fn moved(
    conn: &mut AsyncPgConnection,
    rule: &Rule,
    id: Uuid,
    to: IncidentState,
    facts: &serde_json::Value,
) -> Result<bool, StoreError> {
    let from: Vec<&str> = IncidentState::ALL
        .iter()
        .filter(|s| s.can_become(to))
        .map(|s| s.as_str())
        .collect();
    let result = conn
        .transaction::<bool, diesel::result::Error, _>(async |conn| {
            let n = diesel::sql_query(
                "UPDATE alert_incidents SET state = $2,
                    fired_at = CASE WHEN $2 = 'firing' THEN now() ELSE fired_at END,
                    resolved_at = CASE WHEN $2 = 'resolved' THEN now() ELSE resolved_at END
                 WHERE id = $1 AND state = ANY ($3)",
            )
            .bind::<SqlUuid, _>(id)
            .bind::<Text, _>(to)
            .bind::<Array<Text>, _>(&from)
            .execute(conn)
            .await?;
            if n == 1 {
                crate::notify::queue_to(conn, rule.organization_id, &rule.channels, NotifyEvent::Alert, facts).await?;
            }
            Ok(n == 1)
        })
        .await?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(cpu: f32, mem: i64, limit: i64) -> Point {
        Point {
            at: chrono::Utc::now(),
            cpu_percent: cpu,
            memory_bytes: mem,
            memory_limit: limit,
            rx_bytes: 0,
            tx_bytes: 0,
            read_bytes: 0,
            write_bytes: 0,
            load1: None,
            disk_used: Some(90),
            disk_total: Some(100),
            docker_disk_used: None,
            docker_disk_total: None,
        }
    }

    #[test]
    fn figures_are_percents_of_what_the_rule_watches() {
        let app = Subject::App(Uuid::new_v4());
        assert_eq!(figure(AlertMetric::Memory, &app, &point(0.0, 32, 64)), Some(50.0));
        assert_eq!(
            figure(AlertMetric::Memory, &app, &point(0.0, 32, 0)),
            None,
            "no limit, no percent"
        );
        assert_eq!(figure(AlertMetric::Cpu, &app, &point(150.0, 0, 0)), Some(150.0));
        assert_eq!(figure(AlertMetric::Disk, &app, &point(0.0, 0, 0)), None);
        assert_eq!(figure(AlertMetric::Disk, &Subject::Host, &point(0.0, 0, 0)), Some(90.0));
        // With Docker's data root on a file system of its own: the fuller one.
        let two = |used| Point {
            docker_disk_used: Some(used),
            docker_disk_total: Some(1000),
            ..point(0.0, 0, 0)
        };
        assert_eq!(figure(AlertMetric::Disk, &Subject::Host, &two(950)), Some(95.0));
        assert_eq!(figure(AlertMetric::Disk, &Subject::Host, &two(100)), Some(90.0));
        let docker_only = Point {
            disk_total: None,
            ..two(500)
        };
        assert_eq!(figure(AlertMetric::Disk, &Subject::Host, &docker_only), Some(50.0));
        // And the notice names it.
        assert_eq!(fuller_disk(&point(0.0, 0, 0)), "Berth's data directory");
        assert_eq!(fuller_disk(&two(950)), "Docker's data root");
        assert_eq!(fuller_disk(&two(100)), "Berth's data directory");
        assert_eq!(fuller_disk(&docker_only), "Docker's data root");
        assert_eq!(figure(AlertMetric::Cpu, &Subject::Proxy, &point(99.0, 0, 0)), None);
    }

    #[test]
    fn rules_parse_with_their_fields_named() {
        let ch = vec![Uuid::new_v4().to_string()];
        assert!(NewRule::parse("mem", "memory", "50", "10", &ch).is_ok());
        for (args, field) in [
            (("", "memory", "50", "10"), "name"),
            (("m", "load", "50", "10"), "metric"),
            (("m", "memory", "150", "10"), "threshold"),
            (("m", "memory", "-1", "10"), "threshold"),
            (("m", "memory", "NaN", "10"), "threshold"),
            (("m", "memory", "50", "x"), "for_secs"),
        ] {
            let e = NewRule::parse(args.0, args.1, args.2, args.3, &ch).unwrap_err();
            assert_eq!(e.field, field, "{args:?}");
        }
        assert_eq!(
            NewRule::parse("m", "cpu", "150", "", &[]).unwrap_err().field,
            "channels"
        );
        assert_eq!(
            NewRule::parse("m", "cpu", "150", "", &["x".into()]).unwrap_err().field,
            "channels"
        );
    }
}
