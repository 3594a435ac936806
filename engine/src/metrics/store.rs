//! Metric points in PostgreSQL: written in one statement per sampling pass,
//! rolled up into minutes and hours, dropped when past their retention, and
//! read back as a series for one subject.

use super::Subject;
use crate::config::MetricsConfig;
use crate::error::StoreError;
use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, BigInt, Float4, Integer, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

/// One point of one subject.
#[derive(Debug, Clone, PartialEq, diesel::QueryableByName)]
pub struct Point {
    #[diesel(sql_type = Timestamptz)]
    pub at: DateTime<Utc>,
    #[diesel(sql_type = Float4)]
    pub cpu_percent: f32,
    #[diesel(sql_type = BigInt)]
    pub memory_bytes: i64,
    #[diesel(sql_type = BigInt)]
    pub memory_limit: i64,
    #[diesel(sql_type = BigInt)]
    pub rx_bytes: i64,
    #[diesel(sql_type = BigInt)]
    pub tx_bytes: i64,
    #[diesel(sql_type = BigInt)]
    pub read_bytes: i64,
    #[diesel(sql_type = BigInt)]
    pub write_bytes: i64,
    #[diesel(sql_type = Nullable<Float4>)]
    pub load1: Option<f32>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub disk_used: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub disk_total: Option<i64>,
    /// The host only: the file system under Docker's data root (images,
    /// layers, volumes), when Berth can see it.
    #[diesel(sql_type = Nullable<BigInt>)]
    pub docker_disk_used: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub docker_disk_total: Option<i64>,
}

/// Writes one pass's points at `resolution` seconds (a pass run twice for the
/// same instant writes once).
pub async fn insert(
    conn: &mut AsyncPgConnection,
    resolution: i32,
    points: &[(Subject, Point)],
) -> Result<usize, StoreError> {
    if points.is_empty() {
        return Ok(0);
    }
    let col = |f: &dyn Fn(&(Subject, Point)) -> i64| points.iter().map(f).collect::<Vec<i64>>();
    let n = diesel::sql_query(
        "INSERT INTO metric_points (kind, subject, resolution, at, cpu_percent, memory_bytes, memory_limit,
                                    rx_bytes, tx_bytes, read_bytes, write_bytes, load1, disk_used, disk_total,
                                    docker_disk_used, docker_disk_total)
         SELECT kind, subject, $3, at, cpu, mem, lim, rx, tx, rd, wr, load1, du, dt, ddu, ddt
         FROM UNNEST($1::text[], $2::uuid[], $4::timestamptz[], $5::real[], $6::bigint[], $7::bigint[],
                     $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::real[], $13::bigint[], $14::bigint[],
                     $15::bigint[], $16::bigint[])
              AS p(kind, subject, at, cpu, mem, lim, rx, tx, rd, wr, load1, du, dt, ddu, ddt)
         ON CONFLICT DO NOTHING",
    )
    .bind::<Array<Text>, _>(points.iter().map(|(s, _)| s.kind()).collect::<Vec<_>>())
    .bind::<Array<diesel::sql_types::Uuid>, _>(points.iter().map(|(s, _)| s.id()).collect::<Vec<Uuid>>())
    .bind::<Integer, _>(resolution)
    .bind::<Array<Timestamptz>, _>(points.iter().map(|(_, p)| p.at).collect::<Vec<_>>())
    .bind::<Array<Float4>, _>(points.iter().map(|(_, p)| p.cpu_percent).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(col(&|(_, p)| p.memory_bytes))
    .bind::<Array<BigInt>, _>(col(&|(_, p)| p.memory_limit))
    .bind::<Array<BigInt>, _>(col(&|(_, p)| p.rx_bytes))
    .bind::<Array<BigInt>, _>(col(&|(_, p)| p.tx_bytes))
    .bind::<Array<BigInt>, _>(col(&|(_, p)| p.read_bytes))
    .bind::<Array<BigInt>, _>(col(&|(_, p)| p.write_bytes))
    .bind::<Array<Nullable<Float4>>, _>(points.iter().map(|(_, p)| p.load1).collect::<Vec<_>>())
    .bind::<Array<Nullable<BigInt>>, _>(points.iter().map(|(_, p)| p.disk_used).collect::<Vec<_>>())
    .bind::<Array<Nullable<BigInt>>, _>(points.iter().map(|(_, p)| p.disk_total).collect::<Vec<_>>())
    .bind::<Array<Nullable<BigInt>>, _>(points.iter().map(|(_, p)| p.docker_disk_used).collect::<Vec<_>>())
    .bind::<Array<Nullable<BigInt>>, _>(points.iter().map(|(_, p)| p.docker_disk_total).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(n)
}

/// Rolls the points of `from` seconds up into points of `to` seconds for
/// every whole `to`-period that ended after `since` (averages for CPU,
/// memory and load, sums for bytes moved, the largest limit and disk).
/// Idempotent: a period rolled up again is rewritten from the same points.
pub async fn roll_up(
    conn: &mut AsyncPgConnection,
    from: i32,
    to: i32,
    since: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let n = diesel::sql_query(
        "INSERT INTO metric_points AS m (kind, subject, resolution, at, cpu_percent, memory_bytes, memory_limit,
                                         rx_bytes, tx_bytes, read_bytes, write_bytes, load1, disk_used, disk_total,
                                         docker_disk_used, docker_disk_total, samples)
         SELECT kind, subject, $2, period, avg(cpu_percent)::real, avg(memory_bytes)::bigint, max(memory_limit),
                sum(rx_bytes)::bigint, sum(tx_bytes)::bigint, sum(read_bytes)::bigint, sum(write_bytes)::bigint,
                avg(load1)::real, max(disk_used), max(disk_total), max(docker_disk_used), max(docker_disk_total),
                sum(samples)::int
         FROM (SELECT *, to_timestamp(floor(extract(epoch FROM at) / $2) * $2) AS period
               FROM metric_points WHERE resolution = $1 AND at >= to_timestamp(floor(extract(epoch FROM $3::timestamptz) / $2) * $2)) p
         WHERE period + make_interval(secs => $2) <= now()
         GROUP BY kind, subject, period
         ON CONFLICT (kind, subject, resolution, at) DO UPDATE SET
             cpu_percent = EXCLUDED.cpu_percent, memory_bytes = EXCLUDED.memory_bytes,
             memory_limit = EXCLUDED.memory_limit, rx_bytes = EXCLUDED.rx_bytes, tx_bytes = EXCLUDED.tx_bytes,
             read_bytes = EXCLUDED.read_bytes, write_bytes = EXCLUDED.write_bytes, load1 = EXCLUDED.load1,
             disk_used = EXCLUDED.disk_used, disk_total = EXCLUDED.disk_total,
             docker_disk_used = EXCLUDED.docker_disk_used, docker_disk_total = EXCLUDED.docker_disk_total,
             samples = EXCLUDED.samples",
    )
    .bind::<Integer, _>(from)
    .bind::<Integer, _>(to)
    .bind::<Timestamptz, _>(since)
    .execute(conn)
    .await?;
    Ok(n)
}

/// Drops points past their retention: raw ones (`raw` seconds each) after
/// `raw_hours`, minutes after `minute_days`, hours after `hour_days`.
pub async fn prune(conn: &mut AsyncPgConnection, raw: i32, keep: &MetricsConfig) -> Result<usize, StoreError> {
    let n = diesel::sql_query(
        "DELETE FROM metric_points WHERE
            (resolution = $1 AND at < now() - make_interval(hours => $2))
         OR (resolution = 60 AND at < now() - make_interval(days => $3))
         OR (resolution = 3600 AND at < now() - make_interval(days => $4))",
    )
    .bind::<Integer, _>(raw)
    .bind::<Integer, _>(keep.raw_hours as i32)
    .bind::<Integer, _>(keep.minute_days as i32)
    .bind::<Integer, _>(keep.hour_days as i32)
    .execute(conn)
    .await?;
    Ok(n)
}

/// The points of `subject` at `resolution` since `since`, oldest first. The
/// caller has checked that the subject is the caller's to see.
pub async fn series(
    conn: &mut AsyncPgConnection,
    subject: Subject,
    resolution: i32,
    since: DateTime<Utc>,
) -> Result<Vec<Point>, StoreError> {
    Ok(diesel::sql_query(
        "SELECT at, cpu_percent, memory_bytes, memory_limit, rx_bytes, tx_bytes, read_bytes, write_bytes,
                load1, disk_used, disk_total, docker_disk_used, docker_disk_total
         FROM metric_points WHERE kind = $1 AND subject = $2 AND resolution = $3 AND at >= $4 ORDER BY at",
    )
    .bind::<Text, _>(subject.kind())
    .bind::<diesel::sql_types::Uuid, _>(subject.id())
    .bind::<Integer, _>(resolution)
    .bind::<Timestamptz, _>(since)
    .load(conn)
    .await?)
}
