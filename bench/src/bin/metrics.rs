//! Metrics budgets for docs/BENCHMARKS.md: the CPU one sampling pass costs
//! this process (and the Docker engine) with 100 running containers, as a
//! share of one core at the default 10 s interval; and the bytes PostgreSQL
//! keeps per container per day (raw points at 10 s for a day, plus the
//! minute and hour roll-ups). Run by `make bench`.

use engine::docker::{ContainerSpec, LABEL_APP, LABEL_INSTANCE};
use engine::metrics::{store, Pass, Subject};
use engine::testing::{TestEngine, TEST_BASE_IMAGE};
use std::time::{Duration, Instant};

const CONTAINERS: usize = 100;
const PASSES: u32 = 5;

/// CPU seconds (user + system) of a process, from /proc.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces, in parentheses).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line: 12 and 13 after ")".
    (ticks(11) + ticks(12)) / 100.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let t = TestEngine::new().await;
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let mut deploy = (*t.engine.deploy).clone();
    deploy.instance = format!("bm{tag}");
    let e = t.engine.clone().with_deploy(deploy);
    let names: Vec<String> = (0..CONTAINERS).map(|i| format!("bm{tag}-{i}")).collect();
    for n in &names {
        let mut spec = ContainerSpec::new(n, TEST_BASE_IMAGE);
        spec.cmd = Some(vec!["sleep".into(), "3600".into()]);
        spec.labels.insert(LABEL_INSTANCE.into(), e.deploy.instance.clone());
        spec.labels.insert(LABEL_APP.into(), uuid::Uuid::new_v4().to_string());
        e.docker.create_container(&spec).await?;
        e.docker.start_container(n).await?;
    }
    let dockerd = std::env::var("BERTH_BENCH_DOCKERD_PID").ok();
    let mut pass = Pass::default();
    pass.sample(&e, chrono::Utc::now()).await?;
    let (ours, theirs, start) = (cpu_seconds("self"), dockerd.as_deref().map(cpu_seconds), Instant::now());
    let mut points = 0;
    for _ in 0..PASSES {
        let p = pass.sample(&e, chrono::Utc::now()).await?;
        points = p.len();
        let mut conn = e.db.get().await?;
        store::insert(&mut conn, 10, &p).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let wall = start.elapsed().as_secs_f64() / f64::from(PASSES);
    let per_pass = (cpu_seconds("self") - ours) / f64::from(PASSES);
    println!("metrics sampling: {CONTAINERS} containers, {points} points per pass, {PASSES} passes");
    println!(
        "  berth: {:.1} ms CPU per pass ({:.2} % of one core at a 10 s interval); a pass takes {:.0} ms",
        per_pass * 1000.0,
        per_pass / 10.0 * 100.0,
        (wall - 0.2) * 1000.0
    );
    if let (Some(pid), Some(before)) = (&dockerd, theirs) {
        let d = (cpu_seconds(pid) - before) / f64::from(PASSES);
        println!(
            "  dockerd: {:.1} ms CPU per pass ({:.2} % of one core at 10 s)",
            d * 1000.0,
            d / 10.0 * 100.0
        );
    }
    for n in &names {
        let _ = e.docker.remove_container(n, false).await;
    }

    // A day of one container: raw points every 10 s, then the roll-ups.
    let mut conn = e.db.get().await?;
    let subject = Subject::App(uuid::Uuid::new_v4());
    let day_ago = chrono::Utc::now() - chrono::Duration::days(1);
    let raw: Vec<(Subject, store::Point)> = (0..8640)
        .map(|i| {
            (
                subject,
                store::Point {
                    at: day_ago + chrono::Duration::seconds(i * 10),
                    cpu_percent: (i % 100) as f32,
                    memory_bytes: 100_000_000 + i,
                    memory_limit: 1 << 30,
                    rx_bytes: i * 7,
                    tx_bytes: i * 3,
                    read_bytes: 0,
                    write_bytes: i,
                    load1: None,
                    disk_used: None,
                    disk_total: None,
                    docker_disk_used: None,
                    docker_disk_total: None,
                },
            )
        })
        .collect();
    use diesel_async::RunQueryDsl;
    diesel::sql_query("TRUNCATE metric_points").execute(&mut conn).await?;
    for chunk in raw.chunks(2000) {
        store::insert(&mut conn, 10, chunk).await?;
    }
    store::roll_up(&mut conn, 10, 60, day_ago - chrono::Duration::minutes(1)).await?;
    store::roll_up(&mut conn, 60, 3600, day_ago - chrono::Duration::hours(1)).await?;
    diesel::sql_query("VACUUM ANALYZE metric_points")
        .execute(&mut conn)
        .await?;
    #[derive(diesel::QueryableByName)]
    struct Size {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        bytes: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        points: i64,
    }
    let s: Size = diesel::sql_query(
        "SELECT pg_total_relation_size('metric_points') AS bytes, (SELECT count(*) FROM metric_points) AS points",
    )
    .get_result(&mut conn)
    .await?;
    println!(
        "metrics storage: one container's day = {} points, {:.2} MiB in PostgreSQL (table and indexes), {:.0} bytes per point",
        s.points,
        s.bytes as f64 / 1048576.0,
        s.bytes as f64 / s.points as f64
    );
    Ok(())
}
