//! Backup schedules: 5-field cron expressions in a named time zone, their next
//! run times, and the tick that turns a due slot into a queued backup exactly
//! once. The `schedule_slots` primary key (schedule, slot) is the guarantee: any
//! number of workers, restarted any number of times, insert the same slot, and
//! only the one whose insert lands queues the backup. Slots that passed while no
//! worker ran are not replayed one by one: the newest runs (late) and the others
//! are counted as missed on its row, which the UI reports.

use crate::db::schema::{backup_schedules, backups, database_services, schedule_slots};
use crate::error::StoreError;
use crate::names::ValidationError;
use crate::Engine;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use uuid::Uuid;

/// A 5-field cron expression (minute hour day-of-month month day-of-week), with
/// numbers, names (`MON`, `JAN`), `*`, `,`, `-` and `/` only.
pub fn parse_cron(raw: &str) -> Result<String, ValidationError> {
    const FIELD: &str = "cron";
    let s = raw.trim();
    let fields: Vec<&str> = s.split_ascii_whitespace().collect();
    if fields.len() != 5 {
        return Err(ValidationError::new(
            FIELD,
            "must have 5 fields: minute hour day-of-month month day-of-week (e.g. 0 3 * * *)",
        ));
    }
    if !fields.iter().all(|f| {
        f.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'*' | b',' | b'-' | b'/'))
    }) {
        return Err(ValidationError::new(
            FIELD,
            "may only contain digits, names, '*', ',', '-' and '/'",
        ));
    }
    let normal = fields.join(" ");
    compile(&normal).map_err(|e| ValidationError::new(FIELD, format!("is not a valid cron expression: {e}")))?;
    Ok(normal)
}

fn compile(expr: &str) -> Result<Cron, croner::errors::CronError> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .build()
        .parse(expr)
}

/// An IANA time zone name such as `Europe/Paris` or `UTC`.
pub fn parse_timezone(raw: &str) -> Result<String, ValidationError> {
    let s = raw.trim();
    let s = if s.is_empty() { "UTC" } else { s };
    s.parse::<Tz>()
        .map(|tz| tz.name().to_owned())
        .map_err(|_| ValidationError::new("timezone", "must be an IANA time zone such as UTC or Europe/Paris"))
}

/// Keep the last N backups: 1–1000.
pub fn parse_keep(raw: &str) -> Result<i32, ValidationError> {
    raw.trim()
        .parse::<i32>()
        .ok()
        .filter(|n| (1..=1000).contains(n))
        .ok_or_else(|| ValidationError::new("keep_last", "must be a whole number from 1 to 1000"))
}

/// A schedule's expression and zone, compiled.
pub struct Clock {
    cron: Cron,
    tz: Tz,
}

impl Clock {
    pub fn new(expr: &str, tz: &str) -> Result<Self, String> {
        Ok(Self {
            cron: compile(expr).map_err(|e| e.to_string())?,
            tz: tz.parse::<Tz>().map_err(|e| e.to_string())?,
        })
    }

    /// The next `n` run times strictly after `after`.
    pub fn next_runs(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n);
        let mut t = after.with_timezone(&self.tz);
        while out.len() < n {
            match self.cron.find_next_occurrence(&t, false) {
                Ok(next) => {
                    out.push(next.with_timezone(&Utc));
                    t = next;
                }
                Err(_) => break,
            }
        }
        out
    }

    /// The slot to run now, if one is due: the newest occurrence in
    /// `(last, now]`, with how many older ones in that window are skipped.
    pub fn due(&self, last: DateTime<Utc>, now: DateTime<Utc>) -> Option<(DateTime<Utc>, u32)> {
        let mut newest = None;
        let mut count = 0u32;
        let mut t = last.with_timezone(&self.tz);
        // Bounded: a schedule every minute down for a week is ~10k occurrences.
        for _ in 0..20_000 {
            match self.cron.find_next_occurrence(&t, false) {
                Ok(next) if next.with_timezone(&Utc) <= now => {
                    newest = Some(next.with_timezone(&Utc));
                    count += 1;
                    t = next;
                }
                _ => break,
            }
        }
        newest.map(|slot| (slot, count - 1))
    }
}

/// Queues a backup for every schedule with a due slot; returns how many it queued.
pub async fn tick(engine: &Engine, now: DateTime<Utc>) -> Result<usize, StoreError> {
    let mut conn = engine.db.get().await?;
    type Row = (Uuid, Uuid, Option<Uuid>, Uuid, String, String, DateTime<Utc>, bool);
    let schedules: Vec<Row> = backup_schedules::table
        .filter(backup_schedules::enabled.eq(true))
        .select((
            backup_schedules::id,
            backup_schedules::organization_id,
            backup_schedules::service_id,
            backup_schedules::destination_id,
            backup_schedules::cron,
            backup_schedules::timezone,
            backup_schedules::last_slot,
            backup_schedules::drill,
        ))
        .load(&mut conn)
        .await?;
    let mut queued = 0;
    for (id, org, service, destination, expr, tz, last, _drill) in schedules {
        let clock = match Clock::new(&expr, &tz) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(schedule.id = %id, error = %e, "a stored schedule does not compile");
                continue;
            }
        };
        let Some((slot, missed)) = clock.due(last, now) else {
            continue;
        };
        let (name, engine_kind) = match service {
            Some(s) => {
                let found: Option<(String, String)> = database_services::table
                    .find(s)
                    .select((database_services::name, database_services::engine))
                    .first(&mut conn)
                    .await
                    .optional()?;
                match found {
                    Some(f) => f,
                    None => continue,
                }
            }
            None => (super::OWN_NAME.to_owned(), "postgres".to_owned()),
        };
        let took = conn
            .transaction::<_, StoreError, _>(async |conn| {
                let inserted = diesel::insert_into(schedule_slots::table)
                    .values((
                        schedule_slots::schedule_id.eq(id),
                        schedule_slots::slot.eq(slot),
                        schedule_slots::missed.eq(missed as i32),
                    ))
                    .on_conflict_do_nothing()
                    .execute(conn)
                    .await?;
                if inserted == 0 {
                    return Ok(false);
                }
                diesel::update(
                    backup_schedules::table
                        .filter(backup_schedules::id.eq(id))
                        .filter(backup_schedules::last_slot.lt(slot)),
                )
                .set(backup_schedules::last_slot.eq(slot))
                .execute(conn)
                .await?;
                let backup: Uuid = diesel::insert_into(backups::table)
                    .values((
                        backups::organization_id.eq(org),
                        backups::service_id.eq(service),
                        backups::service_name.eq(&name),
                        backups::engine.eq(&engine_kind),
                        backups::destination_id.eq(destination),
                        backups::schedule_id.eq(Some(id)),
                        backups::trigger.eq(lifecycle::BackupTrigger::Schedule),
                    ))
                    .returning(backups::id)
                    .get_result(conn)
                    .await?;
                diesel::update(
                    schedule_slots::table
                        .filter(schedule_slots::schedule_id.eq(id))
                        .filter(schedule_slots::slot.eq(slot)),
                )
                .set(schedule_slots::backup_id.eq(backup))
                .execute(conn)
                .await?;
                Ok(true)
            })
            .await?;
        if took {
            queued += 1;
            if missed > 0 {
                tracing::warn!(schedule.id = %id, %slot, missed, "backup slots were missed while no worker ran");
            }
            tracing::info!(schedule.id = %id, %slot, "scheduled backup queued");
        }
    }
    Ok(queued)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn cron_expressions_are_five_allow_listed_fields() {
        assert_eq!(parse_cron(" 0  3 * * * ").unwrap(), "0 3 * * *");
        assert_eq!(parse_cron("*/15 * * * MON-FRI").unwrap(), "*/15 * * * MON-FRI");
        for bad in [
            "",
            "0 3 * *",
            "0 0 3 * * *",
            "0 3 * * *; rm -rf /",
            "0 3 * * $(id)",
            "0 3 * * *\n0 4 * * *",
            "61 3 * * *",
            "@daily",
            "0 3 ? * *",
        ] {
            assert_eq!(parse_cron(bad).unwrap_err().field, "cron", "{bad:?}");
        }
    }

    #[test]
    fn time_zones_are_iana_names() {
        assert_eq!(parse_timezone("").unwrap(), "UTC");
        assert_eq!(parse_timezone("Europe/Paris").unwrap(), "Europe/Paris");
        assert_eq!(parse_timezone("Mars/Base").unwrap_err().field, "timezone");
        assert_eq!(parse_timezone("UTC\nx").unwrap_err().field, "timezone");
    }

    #[test]
    fn next_runs_follow_the_zone() {
        let clock = Clock::new("0 3 * * *", "Europe/Paris").unwrap();
        let from = Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap();
        let runs = clock.next_runs(from, 2);
        // 03:00 in Paris in winter is 02:00 UTC.
        assert_eq!(runs[0], Utc.with_ymd_and_hms(2026, 11, 28, 2, 0, 0).unwrap());
        assert_eq!(runs[1], Utc.with_ymd_and_hms(2026, 11, 29, 2, 0, 0).unwrap());
    }

    #[test]
    fn due_takes_the_newest_slot_and_counts_the_missed() {
        let clock = Clock::new("0 * * * *", "UTC").unwrap();
        let last = Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0).unwrap();
        assert_eq!(clock.due(last, last + chrono::Duration::minutes(59)), None);
        let now = Utc.with_ymd_and_hms(2026, 11, 27, 3, 30, 0).unwrap();
        assert_eq!(
            clock.due(last, now),
            Some((Utc.with_ymd_and_hms(2026, 11, 27, 3, 0, 0).unwrap(), 2))
        );
        // The slot itself is due at its exact instant.
        let exact = Utc.with_ymd_and_hms(2026, 11, 27, 1, 0, 0).unwrap();
        assert_eq!(clock.due(last, exact), Some((exact, 0)));
    }
}
