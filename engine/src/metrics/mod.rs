//! Resource figures for what Berth runs and for the host: CPU, memory as the
//! kernel can not take back, network and block I/O. Docker's counters and
//! `/proc` are cumulative, so a figure per interval comes from two readings;
//! a [`Sampler`] keeps the previous one of each container (and of the host)
//! and turns every new reading into a [`Usage`].
//!
//! Memory is the cgroup's usage less its inactive file cache, as `docker
//! stats` shows it: a container that wrote and read 500 MiB of files while
//! holding 100 MiB of its own shows about 100 MiB, not 600 (Dokploy counts the
//! cache, and its users chase leaks that are not there). File cache read a
//! second time turns active and counts, in `docker stats` as here: the kernel
//! keeps it longer, though it can still take it back.

pub mod store;

use crate::access::{self, Target};
use crate::docker::{self, ContainerStats, DockerApi, DockerError};
use crate::names::ProjectRole;
use std::collections::HashMap;
use uuid::Uuid;

/// What a series of points is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subject {
    /// An application: its containers added up, across deployments.
    App(Uuid),
    /// A database service.
    Service(Uuid),
    /// The managed Traefik.
    Proxy,
    /// Berth's own container, when it runs in one.
    Berth,
    /// The machine.
    Host,
}

impl Subject {
    pub fn kind(&self) -> &'static str {
        match self {
            Subject::App(_) => "app",
            Subject::Service(_) => "service",
            Subject::Proxy => "proxy",
            Subject::Berth => "berth",
            Subject::Host => "host",
        }
    }
    /// The application's or service's ID; nil for the others.
    pub fn id(&self) -> Uuid {
        match self {
            Subject::App(id) | Subject::Service(id) => *id,
            _ => Uuid::nil(),
        }
    }
    /// What a container of this installation is a part of, by its labels
    /// (`self_container`: Berth's own name, when it runs in a container).
    /// Restore drills and builds are not followed.
    pub fn of(c: &docker::ContainerSummary, self_container: Option<&str>) -> Option<Subject> {
        if c.label(docker::LABEL_DRILL).is_some() {
            return None;
        }
        if let Some(app) = c.label(docker::LABEL_APP).and_then(|a| a.parse().ok()) {
            return Some(Subject::App(app));
        }
        if let Some(svc) = c.label(docker::LABEL_SERVICE).and_then(|s| s.parse().ok()) {
            return Some(Subject::Service(svc));
        }
        if c.label(docker::LABEL_ROLE) == Some("proxy") {
            return Some(Subject::Proxy);
        }
        (Some(c.name.as_str()) == self_container).then_some(Subject::Berth)
    }
}

/// Readings asked of Docker at once in a pass. Each waits on Docker (about
/// 0.1 s alone, longer under load) rather than on this process, so they are
/// asked together: in chunks of 8, a pass over 100 containers took 13.4 s,
/// longer than the interval (docs/BENCHMARKS.md).
const READING_CONCURRENCY: usize = 128;

/// A container's use over the interval between two readings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// Percent of one core (200 = two cores busy), as `docker stats` shows.
    pub cpu_percent: f64,
    /// Bytes in use, inactive file cache not counted ([`ContainerStats::memory_used`]).
    pub memory_bytes: u64,
    /// The container's limit (the host's memory when it has none).
    pub memory_limit: u64,
    /// Bytes since the previous reading: network received and sent, block
    /// devices read and written.
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
}

/// CPU between two readings: the container's share of the host's CPU time,
/// times the host's cores (Docker's formula).
pub fn cpu_percent(before: &ContainerStats, now: &ContainerStats) -> f64 {
    let used = now.cpu_total_ns.saturating_sub(before.cpu_total_ns) as f64;
    let host = now.system_total_ns.saturating_sub(before.system_total_ns) as f64;
    if host <= 0.0 {
        return 0.0;
    }
    used / host * f64::from(now.online_cpus) * 100.0
}

/// The use between `before` and `now`.
pub fn usage(before: &ContainerStats, now: &ContainerStats) -> Usage {
    Usage {
        cpu_percent: cpu_percent(before, now),
        memory_bytes: now.memory_used(),
        memory_limit: now.memory_limit,
        rx_bytes: now.rx_bytes.saturating_sub(before.rx_bytes),
        tx_bytes: now.tx_bytes.saturating_sub(before.tx_bytes),
        read_bytes: now.read_bytes.saturating_sub(before.read_bytes),
        write_bytes: now.write_bytes.saturating_sub(before.write_bytes),
    }
}

/// Turns successive readings of containers into their use. The first
/// reading of a container gives no figure (there is nothing to compare it
/// with); a container that restarted starts its counters again.
#[derive(Debug, Default)]
pub struct Sampler {
    previous: HashMap<String, ContainerStats>,
}

impl Sampler {
    /// Reads `containers` (one Docker call each) and gives the use of each
    /// that has a previous reading. Containers gone since are forgotten.
    pub async fn sample(
        &mut self,
        docker: &dyn DockerApi,
        containers: &[String],
    ) -> Result<Vec<(String, Usage)>, DockerError> {
        use futures::StreamExt;
        // Boxed, owned futures: a stream borrowing the names is not `Send`
        // for every lifetime, which the spawned sampler needs.
        let asks: Vec<futures::future::BoxFuture<'_, (String, Result<ContainerStats, DockerError>)>> = containers
            .iter()
            .cloned()
            .map(|n| -> futures::future::BoxFuture<'_, _> {
                Box::pin(async move {
                    let r = docker.stats(&n).await;
                    (n, r)
                })
            })
            .collect();
        let readings: Vec<(String, Result<ContainerStats, DockerError>)> = futures::stream::iter(asks)
            .buffer_unordered(READING_CONCURRENCY)
            .collect()
            .await;
        let mut out = Vec::new();
        let mut seen = HashMap::new();
        for (name, reading) in readings {
            let name = &name;
            let now = match reading {
                Ok(s) => s,
                // Removed between the list and the reading.
                Err(DockerError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            if let Some(before) = self.previous.get(name) {
                // A restart resets the counters: no figure this time.
                if now.cpu_total_ns >= before.cpu_total_ns {
                    out.push((name.clone(), usage(before, &now)));
                }
            }
            seen.insert(name.clone(), now);
        }
        self.previous = seen;
        Ok(out)
    }

    /// The running containers of `instance` (everything Berth runs).
    pub async fn running(docker: &dyn DockerApi, instance: &str) -> Result<Vec<String>, DockerError> {
        Ok(docker
            .list_containers(&[(docker::LABEL_INSTANCE, Some(instance))])
            .await?
            .into_iter()
            .filter(|c| c.state == "running")
            .map(|c| c.name)
            .collect())
    }
}

/// The use of each subject: its containers' figures added up (an app has two
/// during a rollout), the largest limit.
pub fn by_subject(figures: &[(String, Usage)], subjects: &HashMap<String, Subject>) -> HashMap<Subject, Usage> {
    let mut out: HashMap<Subject, Usage> = HashMap::new();
    for (name, u) in figures {
        let Some(s) = subjects.get(name) else { continue };
        out.entry(*s)
            .and_modify(|t| {
                t.cpu_percent += u.cpu_percent;
                t.memory_bytes += u.memory_bytes;
                t.memory_limit = t.memory_limit.max(u.memory_limit);
                t.rx_bytes += u.rx_bytes;
                t.tx_bytes += u.tx_bytes;
                t.read_bytes += u.read_bytes;
                t.write_bytes += u.write_bytes;
            })
            .or_insert(*u);
    }
    out
}

/// Used and total bytes of the file system holding `path`.
pub fn disk(path: &std::path::Path) -> std::io::Result<(u64, u64)> {
    let v = rustix::fs::statvfs(path)?;
    let total = v.f_blocks * v.f_frsize;
    let free = v.f_bavail * v.f_frsize;
    Ok((total.saturating_sub(free), total))
}

/// What the sampling worker remembers between passes.
#[derive(Debug, Default)]
pub struct Pass {
    containers: Sampler,
    host: Option<HostReading>,
    /// A path on the file system under Docker's data root, once known.
    docker_root: Option<std::path::PathBuf>,
}

/// Where to measure the file system under Docker's data root. Beside the
/// engine, its `DockerRootDir`. Inside a container Berth runs in (as `berth
/// install` sets it up), the container's own `/`: its root is an overlay
/// whose upper layer lives under the data root, and statfs of an overlay
/// answers for the upper layer's file system, so no part of Docker's data is
/// mounted into Berth for this.
async fn docker_root(engine: &crate::Engine) -> Option<std::path::PathBuf> {
    if engine.deploy.self_container.is_some() {
        return Some("/".into());
    }
    match engine.docker.data_root().await {
        Ok(root) => Some(root.into()),
        Err(e) => {
            tracing::debug!(error = %e, "asking Docker for its data root");
            None
        }
    }
}

impl Pass {
    /// One sampling pass: every running container of the installation and the
    /// host, as points for `at` (none for what has no previous reading yet).
    pub async fn sample(
        &mut self,
        engine: &crate::Engine,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<(Subject, store::Point)>, DockerError> {
        let list = engine
            .docker
            .list_containers(&[(docker::LABEL_INSTANCE, Some(engine.deploy.instance.as_str()))])
            .await?;
        let self_container = engine.deploy.self_container.as_deref();
        let subjects: HashMap<String, Subject> = list
            .iter()
            .filter(|c| c.state == "running")
            .filter_map(|c| Subject::of(c, self_container).map(|s| (c.name.clone(), s)))
            .collect();
        let names: Vec<String> = subjects.keys().cloned().collect();
        let figures = self.containers.sample(&*engine.docker, &names).await?;
        let signed = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let mut points: Vec<(Subject, store::Point)> = by_subject(&figures, &subjects)
            .into_iter()
            .map(|(s, u)| {
                let p = store::Point {
                    at,
                    cpu_percent: u.cpu_percent as f32,
                    memory_bytes: signed(u.memory_bytes),
                    memory_limit: signed(u.memory_limit),
                    rx_bytes: signed(u.rx_bytes),
                    tx_bytes: signed(u.tx_bytes),
                    read_bytes: signed(u.read_bytes),
                    write_bytes: signed(u.write_bytes),
                    load1: None,
                    disk_used: None,
                    disk_total: None,
                    docker_disk_used: None,
                    docker_disk_total: None,
                };
                (s, p)
            })
            .collect();
        if self.docker_root.is_none() {
            self.docker_root = docker_root(engine).await;
        }
        if let Ok(now) = HostReading::read(std::path::Path::new("/proc")) {
            if let Some(before) = self.host.replace(now) {
                let (used, total) = disk(&engine.deploy.data_dir).unwrap_or((0, 0));
                // Not seen (a data root on another host): no figure, not a zero.
                let docker = self.docker_root.as_deref().and_then(|root| disk(root).ok());
                points.push((
                    Subject::Host,
                    store::Point {
                        at,
                        cpu_percent: host_cpu_percent(&before, &now) as f32,
                        memory_bytes: signed(now.memory_total.saturating_sub(now.memory_available)),
                        memory_limit: signed(now.memory_total),
                        rx_bytes: 0,
                        tx_bytes: 0,
                        read_bytes: 0,
                        write_bytes: 0,
                        load1: Some(now.load[0] as f32),
                        disk_used: Some(signed(used)),
                        disk_total: Some(signed(total)),
                        docker_disk_used: docker.map(|d| signed(d.0)),
                        docker_disk_total: docker.map(|d| signed(d.1)),
                    },
                ));
            }
        }
        Ok(points)
    }
}

/// The start of the `secs`-long interval `at` falls in.
pub fn interval_start(at: chrono::DateTime<chrono::Utc>, secs: u64) -> chrono::DateTime<chrono::Utc> {
    let secs = secs.max(1) as i64;
    chrono::DateTime::from_timestamp(at.timestamp().div_euclid(secs) * secs, 0).unwrap_or(at)
}

/// Writes one pass's points.
pub async fn write(
    engine: &crate::Engine,
    resolution: i32,
    points: &[(Subject, store::Point)],
) -> Result<usize, crate::error::StoreError> {
    let mut conn = engine.db.get().await?;
    store::insert(&mut conn, resolution, points).await
}

/// Minutes from raw points and hours from minutes (the last two periods
/// again, in case a pass was late), then retention.
pub async fn maintain(
    engine: &crate::Engine,
    raw: i32,
    cfg: &crate::config::MetricsConfig,
) -> Result<(), crate::error::StoreError> {
    let mut conn = engine.db.get().await?;
    let now = chrono::Utc::now();
    store::roll_up(&mut conn, raw, 60, now - chrono::Duration::minutes(2)).await?;
    store::roll_up(&mut conn, 60, 3600, now - chrono::Duration::hours(2)).await?;
    store::prune(&mut conn, raw, cfg).await?;
    Ok(())
}

/// One reading of the host from `/proc`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HostReading {
    /// CPU time in clock ticks since boot: all of it, and the idle part
    /// (idle and I/O wait).
    pub cpu_total: u64,
    pub cpu_idle: u64,
    pub load: [f64; 3],
    pub memory_total: u64,
    /// What the kernel can hand out without swapping (`MemAvailable`).
    pub memory_available: u64,
}

impl HostReading {
    /// Reads `/proc/stat`, `/proc/loadavg` and `/proc/meminfo` under `proc`.
    pub fn read(proc: &std::path::Path) -> std::io::Result<Self> {
        let stat = std::fs::read_to_string(proc.join("stat"))?;
        let loadavg = std::fs::read_to_string(proc.join("loadavg"))?;
        let meminfo = std::fs::read_to_string(proc.join("meminfo"))?;
        Self::parse(&stat, &loadavg, &meminfo)
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "unreadable /proc"))
    }

    fn parse(stat: &str, loadavg: &str, meminfo: &str) -> Option<Self> {
        // cpu  user nice system idle iowait irq softirq steal guest guest_nice
        let ticks: Vec<u64> = stat
            .lines()
            .find(|l| l.starts_with("cpu "))?
            .split_whitespace()
            .skip(1)
            .map(|t| t.parse().ok())
            .collect::<Option<_>>()?;
        // guest time is already in user and nice.
        let cpu_total = ticks.iter().take(8).sum();
        let cpu_idle = ticks.get(3)? + ticks.get(4).copied().unwrap_or(0);
        let mut load = [0.0; 3];
        for (slot, v) in load.iter_mut().zip(loadavg.split_whitespace()) {
            *slot = v.parse().ok()?;
        }
        let kib = |name: &str| -> Option<u64> {
            let line = meminfo.lines().find(|l| l.starts_with(name))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|k| k * 1024)
        };
        Some(Self {
            cpu_total,
            cpu_idle,
            load,
            memory_total: kib("MemTotal:")?,
            memory_available: kib("MemAvailable:")?,
        })
    }
}

/// The host's busy CPU between two readings, in percent of all its cores.
pub fn host_cpu_percent(before: &HostReading, now: &HostReading) -> f64 {
    let total = now.cpu_total.saturating_sub(before.cpu_total) as f64;
    let idle = now.cpu_idle.saturating_sub(before.cpu_idle) as f64;
    if total <= 0.0 {
        return 0.0;
    }
    ((total - idle) / total * 100.0).clamp(0.0, 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_the_share_of_host_time_times_the_cores() {
        let before = ContainerStats {
            cpu_total_ns: 1_000,
            system_total_ns: 10_000,
            online_cpus: 2,
            ..Default::default()
        };
        // One core busy on a two-core host: half of the host's time, 100 %.
        let now = ContainerStats {
            cpu_total_ns: 6_000,
            system_total_ns: 20_000,
            online_cpus: 2,
            ..Default::default()
        };
        assert!((cpu_percent(&before, &now) - 100.0).abs() < 1e-9);
        assert_eq!(cpu_percent(&now, &now), 0.0);
    }

    #[test]
    fn memory_leaves_out_the_inactive_file_cache() {
        let s = ContainerStats {
            memory_usage: 600,
            memory_inactive_file: 500,
            ..Default::default()
        };
        assert_eq!(s.memory_used(), 100);
        let odd = ContainerStats {
            memory_usage: 10,
            memory_inactive_file: 20,
            ..Default::default()
        };
        assert_eq!(odd.memory_used(), 0);
    }

    #[test]
    fn the_host_reads_from_proc_text() {
        let stat = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3\n";
        let meminfo = "MemTotal:       16000 kB\nMemFree:  1 kB\nMemAvailable:    8000 kB\n";
        let r = HostReading::parse(stat, "0.50 0.25 0.10 1/100 42\n", meminfo).unwrap();
        assert_eq!((r.cpu_total, r.cpu_idle), (1000, 850));
        assert_eq!(r.load, [0.5, 0.25, 0.1]);
        assert_eq!((r.memory_total, r.memory_available), (16_000 * 1024, 8000 * 1024));
        let later = HostReading {
            cpu_total: 2000,
            cpu_idle: 1350,
            ..r
        };
        assert!((host_cpu_percent(&r, &later) - 50.0).abs() < 1e-9);
        assert!(HostReading::parse("nothing", "", "").is_none());
    }

    #[test]
    fn points_are_stamped_with_their_intervals_start() {
        let at = chrono::DateTime::from_timestamp(1_000_007, 500).unwrap();
        assert_eq!(interval_start(at, 10).timestamp(), 1_000_000);
        assert_eq!(interval_start(at, 0).timestamp(), 1_000_007);
    }

    #[test]
    fn the_real_proc_parses() {
        let r = HostReading::read(std::path::Path::new("/proc")).unwrap();
        assert!(r.memory_total > 0 && r.cpu_total > 0);
    }
}

/// How far back a chart looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Hour,
    Day,
    Week,
}

impl Window {
    pub const FIELD: &'static str = "window";
    pub fn parse(raw: &str) -> Result<Self, crate::names::ValidationError> {
        match raw.trim() {
            "" | "hour" => Ok(Window::Hour),
            "day" => Ok(Window::Day),
            "week" => Ok(Window::Week),
            _ => Err(crate::names::ValidationError::new(
                Self::FIELD,
                "must be hour, day or week",
            )),
        }
    }
    /// The points it reads: raw for an hour, minutes for a day, hours for a week.
    fn resolution(self, raw: i32) -> i32 {
        match self {
            Window::Hour => raw,
            Window::Day => 60,
            Window::Week => 3600,
        }
    }
    fn span(self) -> chrono::Duration {
        match self {
            Window::Hour => chrono::Duration::hours(1),
            Window::Day => chrono::Duration::days(1),
            Window::Week => chrono::Duration::weeks(1),
        }
    }
}

/// `subject`'s points over `window`, at the window's resolution (once the
/// caller may see them).
async fn over(
    engine: &crate::Engine,
    conn: &mut diesel_async::AsyncPgConnection,
    subject: Subject,
    window: Window,
) -> Result<Vec<store::Point>, crate::error::StoreError> {
    let raw = engine.deploy.metrics.interval_secs.max(1) as i32;
    store::series(
        conn,
        subject,
        window.resolution(raw),
        chrono::Utc::now() - window.span(),
    )
    .await
}

/// What the charts of an app or a database service show over a window: its
/// points, and how often its container was restarted or OOM-killed in the
/// same window (as the reconciler's leader recorded them for alert rules).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub points: Vec<store::Point>,
    pub restarts: i64,
    pub oom_kills: i64,
    /// The restarts and OOM kills themselves, oldest first, for marks on the
    /// charts: the last [`MARKS`] of the window (a crash loop's thousands
    /// would say no more than its count).
    pub events: Vec<ContainerEvent>,
}

/// One restart or OOM kill of a subject's container, when it was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    pub at: chrono::DateTime<chrono::Utc>,
    /// `restart` or `oom`.
    pub event: String,
}

/// How many of a window's container events a series lists.
pub const MARKS: i64 = 200;

/// `subject`'s points and container events over `window`, in `org`.
async fn series_of(
    engine: &crate::Engine,
    conn: &mut diesel_async::AsyncPgConnection,
    org: uuid::Uuid,
    subject: Subject,
    window: Window,
) -> Result<Series, crate::error::StoreError> {
    use diesel::sql_types::{BigInt, Text, Timestamptz, Uuid as SqlUuid};
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Timestamptz)]
        at: chrono::DateTime<chrono::Utc>,
        #[diesel(sql_type = Text)]
        event: String,
        #[diesel(sql_type = BigInt)]
        restarts: i64,
        #[diesel(sql_type = BigInt)]
        oom_kills: i64,
    }
    let points = over(engine, conn, subject, window).await?;
    // One read of the window's events: the newest MARKS of them, each row
    // carrying the counts of all of them (window aggregates are taken
    // before the LIMIT).
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT at, event,
                count(*) FILTER (WHERE event = 'restart') OVER () AS restarts,
                count(*) FILTER (WHERE event = 'oom') OVER () AS oom_kills
         FROM container_events WHERE organization_id = $1 AND subject = $2 AND at > $3
         ORDER BY at DESC LIMIT $4",
    )
    .bind::<SqlUuid, _>(org)
    .bind::<SqlUuid, _>(subject.id())
    .bind::<Timestamptz, _>(chrono::Utc::now() - window.span())
    .bind::<BigInt, _>(MARKS)
    .load(conn)
    .await?;
    let (restarts, oom_kills) = rows.first().map_or((0, 0), |r| (r.restarts, r.oom_kills));
    Ok(Series {
        points,
        restarts,
        oom_kills,
        events: rows
            .into_iter()
            .rev()
            .map(|r| ContainerEvent {
                at: r.at,
                event: r.event,
            })
            .collect(),
    })
}

/// A database service's points and container events over `window`, for a
/// caller of its organization (another organization's service: not found).
pub async fn service_series(
    engine: &crate::Engine,
    caller: &crate::accounts::Caller,
    service: crate::ids::ServiceId,
    window: Window,
) -> Result<Series, crate::services::ServiceError> {
    let mut conn = engine.db.get().await.map_err(crate::error::StoreError::from)?;
    access::check(&mut conn, caller, Target::Service(service), ProjectRole::Viewer).await?;
    crate::services::load(engine, &mut conn, caller.org_id.0, service).await?;
    Ok(series_of(engine, &mut conn, caller.org_id.0, Subject::Service(service.0), window).await?)
}

/// The machine's or Traefik's points over `window`: instance administrators
/// only (the machine is theirs).
pub async fn machine_series(
    engine: &crate::Engine,
    caller: &crate::accounts::Caller,
    subject: Subject,
    window: Window,
) -> Result<Vec<store::Point>, crate::instance::InstanceError> {
    if !caller.instance_admin || !matches!(subject, Subject::Host | Subject::Proxy) {
        return Err(crate::instance::InstanceError::Forbidden);
    }
    let mut conn = engine.db.get().await.map_err(crate::error::StoreError::from)?;
    Ok(over(engine, &mut conn, subject, window).await?)
}

/// An application's points and container events over `window`, for a
/// caller of its organization (another organization's application: not
/// found).
pub async fn app_series(
    engine: &crate::Engine,
    caller: &crate::accounts::Caller,
    app: crate::ids::AppId,
    window: Window,
) -> Result<Series, crate::apps::AppError> {
    let mut conn = engine.db.get().await.map_err(crate::error::StoreError::from)?;
    access::check(&mut conn, caller, Target::App(app), ProjectRole::Viewer).await?;
    crate::apps::load(&mut conn, caller.org_id.0, app).await?;
    Ok(series_of(engine, &mut conn, caller.org_id.0, Subject::App(app.0), window).await?)
}
