//! Backup budgets for docs/BENCHMARKS.md: a ~200 MB PostgreSQL dump streamed by a
//! separate release `berth worker` process into S3 (s3s-fs on loopback). It prints
//! the duration, throughput and the worker's peak RSS (VmHWM) for a backup, a
//! restore into the running service and a restore drill. Run by `make bench`.

use engine::backups::{self, RestoreInto, Subject};
use engine::services::{self, NewService};
use engine::testing::{owner_with_environment, DeployEnv, TestS3};
use lifecycle::{DrillStatus, JobStatus};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn vm_hwm_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = DeployEnv::new().await;
    let e = env.engine().clone();
    let (caller, env_id) = owner_with_environment(&e).await;
    let new = NewService::parse(&e, env_id, "bench-db", "postgres", "", "", "", "", "", None)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let svc = services::create(&e, &caller, new).await?;
    let start = Instant::now();
    while services::get(&e, &caller, svc).await?.ready != Some(true) {
        anyhow::ensure!(start.elapsed() < Duration::from_secs(120), "service never ready");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let table = engine::testing::seed_blobs(&e, &caller, svc).await;
    let s3 = TestS3::new().await;
    let dest = s3.destination(&e, &caller, "bench").await;

    let bin = std::env::var("BERTH_BIN").unwrap_or_else(|_| "target/release/berth".into());
    let mut cmd = Command::new(bin);
    cmd.arg("worker").env("RUST_LOG", "warn").stdout(Stdio::null());
    for (k, v) in env.berth_env() {
        cmd.env(k, v);
    }
    let mut worker = cmd.spawn()?;
    let idle = {
        tokio::time::sleep(Duration::from_secs(2)).await;
        vm_hwm_mib(worker.id())
    };

    println!(
        "\n### Backups: {} MB table, separate release worker\n",
        table / 1_000_000
    );
    println!("| run | backup | object | table MB/s | restore | drill | worker peak RSS |");
    println!("|---|---|---|---|---|---|---|");
    for run in 1..=3 {
        let t = Instant::now();
        let id = backups::backup_now(&e, &caller, Subject::Service(svc), dest).await?;
        let b = loop {
            let b = backups::backup_status(&e, &caller, id).await?;
            if b.status == JobStatus::Succeeded || b.status == JobStatus::Failed {
                break b;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let backup_secs = t.elapsed().as_secs_f64();
        anyhow::ensure!(b.status == JobStatus::Succeeded, "backup failed: {:?}", b.error);
        let t = Instant::now();
        let (rid, _) = backups::restore(&e, &caller, id, RestoreInto::Existing(svc)).await?;
        loop {
            let r = backups::restore_status(&e, &caller, rid).await?;
            if r.status == JobStatus::Succeeded {
                break;
            }
            anyhow::ensure!(r.status != JobStatus::Failed, "restore failed: {:?}", r.error);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let restore_secs = t.elapsed().as_secs_f64();
        let t = Instant::now();
        backups::drill(&e, &caller, id).await?;
        let drill = loop {
            let b = backups::backup_status(&e, &caller, id).await?;
            if b.drill_status.is_some_and(|d| !d.in_progress()) {
                break b;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let drill_secs = t.elapsed().as_secs_f64();
        anyhow::ensure!(
            drill.drill_status == Some(DrillStatus::Verified),
            "{:?}",
            drill.drill_detail
        );
        println!(
            "| {run} | {backup_secs:.1} s | {:.0} MB | {:.0} | {restore_secs:.1} s | {drill_secs:.1} s | {:.0} MiB |",
            b.size_bytes as f64 / 1e6,
            table as f64 / 1e6 / backup_secs,
            vm_hwm_mib(worker.id())
        );
    }
    println!("\nworker RSS 2 s after start, before any backup: {idle:.0} MiB");
    worker.kill()?;
    worker.wait()?;
    Ok(())
}
