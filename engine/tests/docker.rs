//! Smoke test: the test setup reaches a real Docker engine (started by `.ci/run`
//! or `make test`) and can run a container from the locally built base image.

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder, WaitContainerOptions,
};
use engine::config::DockerConfig;
use engine::docker::{BollardDocker, DockerApi};
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

    let client = docker.client().await.unwrap();
    let name = format!("berth-smoke-{}", uuid::Uuid::new_v4().simple());
    let marker = uuid::Uuid::new_v4().to_string();
    client
        .create_container(
            Some(CreateContainerOptionsBuilder::new().name(&name).build()),
            ContainerCreateBody {
                image: Some("berth-test/busybox:1".to_owned()),
                cmd: Some(vec!["echo".to_owned(), marker.clone()]),
                labels: Some([("berth.test".to_owned(), "smoke".to_owned())].into()),
                ..Default::default()
            },
        )
        .await
        .expect("create container (is berth-test/busybox:1 built? make test builds it)");
    client
        .start_container(&name, None::<bollard::query_parameters::StartContainerOptions>)
        .await
        .unwrap();
    let exit = client
        .wait_container(&name, None::<WaitContainerOptions>)
        .next()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.status_code, 0);
    let mut logs = client.logs(&name, Some(LogsOptionsBuilder::new().stdout(true).build()));
    let mut out = String::new();
    while let Some(chunk) = logs.next().await {
        out.push_str(&chunk.unwrap().to_string());
    }
    client
        .remove_container(&name, Some(RemoveContainerOptionsBuilder::new().force(true).build()))
        .await
        .unwrap();
    assert_eq!(out.trim(), marker);
}

#[tokio::test]
async fn an_unreachable_engine_is_reported_with_its_address() {
    let docker = BollardDocker::new(&DockerConfig {
        host: Some("unix:///nonexistent/docker.sock".into()),
        timeout_secs: 2,
    });
    let err = docker.info().await.unwrap_err().to_string();
    assert!(err.contains("/nonexistent/docker.sock"), "{err}");
}
