//! The public health answer's sharing, against real PostgreSQL and Redis and
//! an in-memory Docker that counts what it is asked: many requests at once
//! cost one check, and a stale answer is checked again.

use engine::docker::fake::FakeDocker;
use engine::health::Recent;
use engine::testing::TestEngine;
use std::time::Duration;

#[tokio::test]
async fn many_requests_at_once_cost_one_check() {
    let docker = FakeDocker::new();
    let t = TestEngine::with_docker(docker.clone()).await;
    let e = &t.engine;
    let infos = || docker.calls().iter().filter(|c| *c == "info").count();

    let shared = Recent::new(Duration::from_secs(3600));
    let answers = futures::future::join_all((0..50).map(|_| shared.get(e))).await;
    assert!(answers.iter().all(|r| r.ready() && r.docker.is_up()));
    assert_eq!(infos(), 1, "fifty requests, one check");

    // Docker goes away: a fresh answer says so; one kept for an hour does not yet.
    docker.set_down(true);
    assert!(shared.get(e).await.docker.is_up());
    let every_time = Recent::new(Duration::ZERO);
    assert!(!every_time.get(e).await.docker.is_up());
    assert_eq!(infos(), 2);
}
