//! `make bench` (status push part): how long a status change takes to reach an
//! open page on another Berth process. Two release `berth serve` processes (A
//! and B) on one PostgreSQL and one Redis; a page's `/api/events` stream is
//! open on B; through A, a deployment is queued and cancelled, over and over
//! (no worker runs, so nothing else happens). Each latency is from sending the
//! request to A until its event arrives on B's stream: A's request handling and
//! commit, the Redis publish and B's relay. Printed as Markdown for
//! docs/BENCHMARKS.md.
//!
//! Needs DATABASE_URL, REDIS_URL, DOCKER_HOST and BERTH_BIN (a release build).
//! Traffic goes to 127.0.0.1 only; the loop is bounded (ROUNDS).

use anyhow::{bail, Context, Result};
use engine::testing::{
    call_via, create_app, free_port, json_string, owner_with_environment, wait_for_200, DeployEnv, EventStream,
    TEST_BASE_IMAGE,
};
use std::process::Stdio;
use std::time::Instant;

/// Queue + cancel pairs: 2 × ROUNDS events.
const ROUNDS: usize = 250;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() -> Result<()> {
    let bin = std::env::var("BERTH_BIN").context("BERTH_BIN (a release berth)")?;
    let env = DeployEnv::new().await;
    let e = env.engine().clone();
    let (caller, env_id) = owner_with_environment(&e).await;
    let app = create_app(
        &e,
        &caller,
        env_id,
        "pushed",
        engine::testing::image_source(TEST_BASE_IMAGE),
        Default::default(),
    )
    .await;
    let token = engine::sessions::create(&e.kv, e.policy, caller.user_id, caller.org_id).await?;
    let token = token.as_str().to_owned();
    let spawn = |port: u16| {
        let mut cmd = tokio::process::Command::new(&bin);
        cmd.arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        for (k, v) in env.berth_env() {
            cmd.env(k, v);
        }
        cmd.env("BERTH_LISTEN", format!("127.0.0.1:{port}"))
            .env("BERTH_WORKER", "off")
            .env("RUST_LOG", "warn");
        cmd.spawn()
    };
    let (port_a, port_b) = (free_port(), free_port());
    let _a = spawn(port_a)?;
    let _b = spawn(port_b)?;
    wait_for_200(port_a, "/health").await;
    wait_for_200(port_b, "/health").await;

    let mut page = EventStream::open(port_b, &token).await;
    let mut next_event = async || page.next(10).await.context("no event within 10 s");
    /// A server function on A; an error unless it answered 200.
    async fn call(port: u16, token: &str, path: &str, form: &str) -> Result<String> {
        match call_via(port, token, path, form).await {
            (200, body) => Ok(body),
            (status, body) => bail!("{path}: {status} {body}"),
        }
    }

    let mut latencies = Vec::with_capacity(2 * ROUNDS);
    for _ in 0..ROUNDS {
        let sent = Instant::now();
        let body = call(port_a, &token, "deployments/create", &format!("app_id={}", app.0)).await?;
        let id = json_string(&body).context("the deployment id")?;
        let ev = next_event().await?;
        if ev["status"] != "queued" || ev["id"] != id.as_str() {
            bail!("expected {id} queued, got {ev}");
        }
        latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
        let sent = Instant::now();
        call(port_a, &token, "deployments/cancel", &format!("id={id}")).await?;
        let ev = next_event().await?;
        if ev["status"] != "cancelled" {
            bail!("expected {id} cancelled, got {ev}");
        }
        latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!("| Status change on process A → event on a page of process B | n | p50 | p99 | max |");
    println!("|---|---|---|---|---|");
    println!(
        "| deployment queued / cancelled through A's server functions | {} | {:.1} ms | {:.1} ms | {:.1} ms |",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1]
    );
    Ok(())
}
