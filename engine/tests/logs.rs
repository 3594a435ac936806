//! Deployment logs keep bounded sizes: every line is cut at the line cap, a
//! deployment's log stops growing at `BERTH_LOG_CAP_MB` (with one note, and
//! Berth's own lines still added so the end marker arrives), and replaying a log
//! written before lines were capped costs the cap, not the line.

use engine::ids::{AppId, DeploymentId};
use engine::lines::MAX_LINE;
use engine::logs::{self, DeployLog, LogEvent};
use engine::testing::TestEngine;
use futures::StreamExt;
use lifecycle::DeploymentStatus as Status;

/// The test's engine with a data directory of its own (where logs go), changed by `tune`.
fn own_data_dir(t: &TestEngine, tune: impl FnOnce(&mut engine::config::DeployConfig)) -> engine::Engine {
    let mut cfg = (*t.engine.deploy).clone();
    cfg.data_dir = std::env::temp_dir().join(format!("berth-logs-{}", uuid::Uuid::new_v4().simple()));
    tune(&mut cfg);
    t.engine.clone().with_deploy(cfg)
}

fn ids() -> (AppId, DeploymentId) {
    (AppId(uuid::Uuid::new_v4()), DeploymentId(uuid::Uuid::new_v4()))
}

#[tokio::test]
async fn a_log_stops_at_its_cap_and_lines_are_cut() {
    let t = TestEngine::new().await;
    let e = own_data_dir(&t, |cfg| cfg.log_cap_bytes = 1024 * 1024);
    let (app, id) = ids();
    let log = DeployLog::open(&e, app, id).await.unwrap();
    log.line("==> building");
    // One 20 MB line, then 4 MB of ordinary ones.
    log.output("x".repeat(20 * 1024 * 1024));
    let line = "y".repeat(100);
    for _ in 0..40_000 {
        log.output(&line);
    }
    log.line("==> healthy");
    log.finish(Status::Running).await;

    let path = logs::log_path(&e, app, id);
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size <= 1024 * 1024 + 1024, "the file stays at the cap: {size} bytes");
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[1].len() < MAX_LINE + 64 && lines[1].ends_with("bytes cut]"),
        "{}",
        &lines[1][..80]
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("==> the log reached its cap of 1 MB")),
        "one note says so"
    );
    assert_eq!(lines.iter().filter(|l| l.contains("reached its cap")).count(), 1);
    // Berth's own lines still arrive after the cap: the end marker ends a follower.
    assert_eq!(&lines[lines.len() - 2..], ["==> healthy", "==> deployment running"]);
    let mut follow = logs::follow(&e, app, id).await.unwrap();
    let mut last = None;
    while let Some(ev) = follow.next().await {
        last = Some(ev);
    }
    assert_eq!(
        last,
        Some(LogEvent::End {
            status: Status::Running
        })
    );
    let _ = std::fs::remove_dir_all(&e.deploy.data_dir);
}

#[tokio::test]
async fn replaying_an_uncapped_old_log_costs_the_cap_not_the_line() {
    let t = TestEngine::new().await;
    let e = own_data_dir(&t, |_| {});
    let (app, id) = ids();
    let path = logs::log_path(&e, app, id);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    // As an earlier Berth could have written it: one 30 MB line.
    let mut old = String::from("==> building\n  ");
    old.push_str(&"z".repeat(30 * 1024 * 1024));
    old.push_str("\n==> deployment failed\n");
    std::fs::write(&path, old).unwrap();
    let events: Vec<LogEvent> = logs::follow(&e, app, id).await.unwrap().collect().await;
    assert_eq!(events.len(), 4, "three lines and the end");
    let LogEvent::Line { seq: 2, text } = &events[1] else {
        panic!("{:?}", &events[1])
    };
    assert!(text.len() < MAX_LINE + 64 && text.ends_with("bytes cut]"));
    assert_eq!(events[3], LogEvent::End { status: Status::Failed });
    let _ = std::fs::remove_dir_all(&e.deploy.data_dir);
}

/// Followers share the process's one subscription connection: fifty viewers of
/// one deployment are one subscriber in Redis, each still gets every line, and
/// the channel is let go when the last one leaves.
#[tokio::test]
async fn followers_share_one_redis_subscription() {
    let t = TestEngine::new().await;
    let e = own_data_dir(&t, |_| {});
    let (app, id) = ids();
    let log = DeployLog::open(&e, app, id).await.unwrap();
    log.line("==> first");
    log.flush().await;
    let mut followers = Vec::new();
    for _ in 0..50 {
        followers.push(logs::follow(&e, app, id).await.unwrap());
    }
    let channel = e.kv.key(&format!("logs:deployment:{}", id.0.simple()));
    let mut conn = e.kv.conn().await.unwrap();
    let (_, subscribers): (String, u64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(&channel)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(subscribers, 1, "fifty followers, one Redis subscriber");
    assert_eq!(e.kv.hub().stats(), (1, 1));

    for i in 0..200 {
        log.output(format!("line {i}"));
    }
    log.finish(Status::Running).await;
    for f in followers.iter_mut() {
        let mut lines = 0;
        let mut end = None;
        while let Some(ev) = f.next().await {
            match ev {
                LogEvent::Line { .. } => lines += 1,
                LogEvent::End { status } => end = Some(status),
            }
        }
        assert_eq!((lines, end), (202, Some(Status::Running)));
    }
    drop(followers);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(e.kv.hub().stats().0, 0, "the channel was let go");
    let (_, subscribers): (String, u64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(&channel)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(subscribers, 0);
    let _ = std::fs::remove_dir_all(&e.deploy.data_dir);
}
