//! The real engine through Berth's Docker seam: the test setup reaches the
//! Docker engine (started by `make test`), and `BollardDocker` creates, starts,
//! waits for, reads the logs of, and removes a container from the locally
//! built base image, answering "already so" calls as successes.

use engine::config::DockerConfig;
use engine::docker::{BollardDocker, ContainerSpec, DockerApi, LogOptions};
use futures::StreamExt;

#[tokio::test]
async fn reaches_the_engine_and_runs_a_container() {
    assert!(
        std::env::var("DOCKER_HOST").is_ok(),
        "DOCKER_HOST must point at the test dockerd (make test sets it)"
    );
    let docker = BollardDocker::new(&DockerConfig::from_env().unwrap());
    let info = docker.info().await.expect("Docker engine reachable");
    assert!(!info.version.is_empty());

    let name = format!("berth-smoke-{}", uuid::Uuid::new_v4().simple());
    let marker = uuid::Uuid::new_v4().to_string();
    let mut spec = ContainerSpec::new(&name, "berth-test/busybox:1");
    spec.cmd = Some(vec!["echo".to_owned(), marker.clone()]);
    spec.labels = [("berth.test".to_owned(), "smoke".to_owned())].into();
    docker
        .create_container(&spec)
        .await
        .expect("create container (is berth-test/busybox:1 built? make test builds it)");
    docker.start_container(&name).await.unwrap();
    assert_eq!(docker.wait_container(&name).await.unwrap(), 0);
    let info = docker.inspect_container(&name).await.unwrap().expect("exists");
    assert_eq!(info.state.exit_code, Some(0));
    assert!(!info.state.is_up());
    let listed = docker.list_containers(&[("berth.test", Some("smoke"))]).await.unwrap();
    assert!(listed.iter().any(|c| c.name == name), "{listed:?}");
    let mut logs = docker.logs(&name, LogOptions::default());
    let mut out = Vec::new();
    while let Some(chunk) = logs.next().await {
        out.extend(chunk.unwrap().bytes);
    }
    assert_eq!(String::from_utf8_lossy(&out).trim(), marker);
    docker.remove_container(&name, true).await.unwrap();
    assert!(docker.inspect_container(&name).await.unwrap().is_none());
    // Gone is gone: removing or stopping it again is not an error.
    docker.remove_container(&name, true).await.unwrap();
    docker
        .stop_container(&name, std::time::Duration::from_secs(1))
        .await
        .unwrap();
    assert!(!docker.image_exists("berth-test/no-such-image:0").await.unwrap());
    assert!(docker.image_exists("berth-test/busybox:1").await.unwrap());
}

#[tokio::test]
async fn an_unreachable_engine_is_reported_with_its_address() {
    let docker = BollardDocker::new(&DockerConfig {
        host: Some("unix:///nonexistent/docker.sock".into()),
        timeout_secs: 2,
    });
    let err = docker.info().await.unwrap_err();
    assert!(err.to_string().contains("/nonexistent/docker.sock"), "{err}");
    assert!(err.engine_gone());
}
