//! Alert rules: a figure (CPU or memory of an app or a database service, the
//! host's disk) above a threshold for a while. Evaluated after each sampling
//! pass against the points just taken; each breach is an incident that moves
//! pending → firing → resolved ([`lifecycle::IncidentState`]), and the rule's
//! channels are told once when it fires and once when it clears.
//!
//! Every replica that samples evaluates, and agrees: at most one open incident
//! per rule and subject (a partial unique index), and each move is a
//! conditional UPDATE whose notice is queued in the same transaction, so only
//! the replica whose move took tells anyone.

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
        };
        let threshold = threshold
            .trim()
            .parse::<f32>()
            .ok()
            .filter(|t| t.is_finite() && *t > 0.0 && *t <= max)
            .ok_or_else(|| ValidationError::new("threshold", format!("must be a percent above 0, at most {max}")))?;
        let for_secs = match for_secs.trim() {
            "" => 0,
            s => s
                .parse::<i32>()
                .ok()
                .filter(|s| (0..=86_400).contains(s))
                .ok_or_else(|| ValidationError::new("for_secs", "must be 0-86400 seconds"))?,
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

pub async fn create_rule(engine: &Engine, caller: &Caller, new: NewRule) -> Result<Uuid, AlertError> {
    if !caller.role.can_manage() {
        return Err(AlertError::Forbidden("only admins and owners can change alert rules"));
    }
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
    let row: Option<Id> = diesel::sql_query(
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
    .get_result(&mut conn)
    .await
    .optional()?;
    // Another organization's channel is not found, as every foreign ID is.
    let row = row.ok_or(AlertError::NotFound)?;
    tracing::info!(rule.id = %row.id, org.id = %caller.org_id, metric = %new.metric, "alert rule added");
    Ok(row.id)
}

pub async fn delete_rule(engine: &Engine, caller: &Caller, id: Uuid) -> Result<(), AlertError> {
    if !caller.role.can_manage() {
        return Err(AlertError::Forbidden("only admins and owners can change alert rules"));
    }
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let n = diesel::sql_query("DELETE FROM alert_rules WHERE id = $1 AND organization_id = $2")
        .bind::<SqlUuid, _>(id)
        .bind::<SqlUuid, _>(caller.org_id.0)
        .execute(&mut conn)
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

/// The figure a rule looks at in a point, in percent (`None`: not this rule's kind of subject).
pub fn figure(metric: AlertMetric, subject: &Subject, p: &Point) -> Option<f32> {
    match (metric, subject) {
        (AlertMetric::Cpu, Subject::App(_) | Subject::Service(_)) => Some(p.cpu_percent),
        (AlertMetric::Memory, Subject::App(_) | Subject::Service(_)) if p.memory_limit > 0 => {
            Some((p.memory_bytes as f64 * 100.0 / p.memory_limit as f64) as f32)
        }
        (AlertMetric::Disk, Subject::Host) => match (p.disk_used, p.disk_total) {
            (Some(u), Some(t)) if t > 0 => Some((u as f64 * 100.0 / t as f64) as f32),
            _ => None,
        },
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
    for rule in &rules {
        for (subject, p) in points {
            let Some(value) = figure(rule.metric, subject, p) else {
                continue;
            };
            // An app or service is watched by its own organization's rules only;
            // the host by the disk rules of instance administrators.
            let name = match subject {
                Subject::Host => "this server".to_owned(),
                _ => match known.iter().find(|k| k.id == subject.id()) {
                    Some(k) if k.organization_id == rule.organization_id => k.name.clone(),
                    _ => continue,
                },
            };
            if let Err(e) = step(&mut conn, engine, rule, subject, &name, value).await {
                tracing::warn!(rule.id = %rule.id, error = %e, "evaluating an alert rule");
            }
        }
    }
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

/// One rule, one subject, one figure: opens, fires, clears or resolves.
async fn step(
    conn: &mut AsyncPgConnection,
    engine: &Engine,
    rule: &Rule,
    subject: &Subject,
    name: &str,
    value: f32,
) -> Result<(), StoreError> {
    let link = match subject {
        Subject::App(id) => format!("/apps/{id}"),
        Subject::Service(id) => format!("/services/{id}"),
        _ => "/settings".to_owned(),
    };
    let what = rule.metric.words();
    if value > rule.threshold {
        let open: Open = diesel::sql_query(
            "INSERT INTO alert_incidents (rule_id, organization_id, subject_kind, subject, subject_name, state, value)
             VALUES ($1, $2, $3, $4, $5, 'pending', $6)
             ON CONFLICT (rule_id, subject) WHERE state IN ('pending', 'firing')
             DO UPDATE SET value = EXCLUDED.value
             RETURNING id, state, EXTRACT(EPOCH FROM now() - started_at)::float8 AS held_secs",
        )
        .bind::<SqlUuid, _>(rule.id)
        .bind::<SqlUuid, _>(rule.organization_id)
        .bind::<Text, _>(subject.kind())
        .bind::<SqlUuid, _>(subject.id())
        .bind::<Text, _>(name)
        .bind::<Float4, _>(value)
        .get_result(conn)
        .await?;
        if open.state == IncidentState::Pending && open.held_secs >= rule.for_secs as f64 {
            let facts = serde_json::json!({
                "rule": rule.name,
                "state": "firing",
                "detail": format!(
                    "{what} of {name} is {} (above {} for {} s)",
                    percent(value), percent(rule.threshold), rule.for_secs
                ),
                "link": link,
            });
            if moved(conn, rule, open.id, IncidentState::Firing, &facts).await? {
                tracing::warn!(rule.id = %rule.id, subject = %subject.id(), value, "alert firing");
                crate::notify::delivery::wake(engine).await;
            }
        }
    } else {
        // A breach that did not last is forgotten; one that fired is resolved.
        diesel::sql_query("DELETE FROM alert_incidents WHERE rule_id = $1 AND subject = $2 AND state = 'pending'")
            .bind::<SqlUuid, _>(rule.id)
            .bind::<SqlUuid, _>(subject.id())
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
        .bind::<SqlUuid, _>(subject.id())
        .get_result(conn)
        .await
        .optional()?;
        if let Some(Id { id }) = firing {
            let facts = serde_json::json!({
                "rule": rule.name,
                "state": "resolved",
                "detail": format!("{what} of {name} is back to {} (threshold {})", percent(value), percent(rule.threshold)),
                "link": link,
            });
            if moved(conn, rule, id, IncidentState::Resolved, &facts).await? {
                tracing::info!(rule.id = %rule.id, subject = %subject.id(), value, "alert resolved");
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
