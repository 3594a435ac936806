//! The real engine through Berth's Docker seam: the test setup reaches the
//! Docker engine (started by `make test`), and `BollardDocker` creates, starts,
//! waits for, reads the logs of, and removes a container from the locally
//! built base image, answering "already so" calls as successes; SIGTERM alone
//! ends a server that handles it (how a replaced container is asked to drain).

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

/// Waits for the container's shell to print "ready" (its traps are set then).
async fn wait_until_ready(docker: &BollardDocker, name: &str) {
    let start = std::time::Instant::now();
    loop {
        let mut logs = docker.logs(name, LogOptions::default());
        let mut out = Vec::new();
        while let Some(chunk) = logs.next().await {
            out.extend(chunk.unwrap().bytes);
        }
        if String::from_utf8_lossy(&out).contains("ready") {
            return;
        }
        assert!(start.elapsed().as_secs() < 20, "the shell never started");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn terminate_sends_sigterm_and_returns_at_once() {
    let docker = BollardDocker::new(&DockerConfig::from_env().unwrap());
    let name = format!("berth-term-{}", uuid::Uuid::new_v4().simple());
    let mut spec = ContainerSpec::new(&name, "berth-test/busybox:1");
    // A shell that exits 7 on SIGTERM (and would otherwise run for an hour).
    spec.cmd = Some(
        ["sh", "-c", "trap 'exit 7' TERM; echo ready; sleep 3600 & wait"]
            .map(str::to_owned)
            .to_vec(),
    );
    spec.labels = [("berth.test".to_owned(), "term".to_owned())].into();
    docker.create_container(&spec).await.unwrap();
    docker.start_container(&name).await.unwrap();
    // The trap is set once the shell has printed.
    wait_until_ready(&docker, &name).await;
    docker.terminate_container(&name).await.unwrap();
    // Its own exit code: the trap ran (a SIGKILL would give 137).
    let code = tokio::time::timeout(std::time::Duration::from_secs(20), docker.wait_container(&name))
        .await
        .expect("ended by SIGTERM")
        .unwrap();
    assert_eq!(code, 7);
    // Ended or gone: asking again is not an error.
    docker.terminate_container(&name).await.unwrap();
    docker.remove_container(&name, true).await.unwrap();
    docker.terminate_container(&name).await.unwrap();
}

#[tokio::test]
async fn terminate_sends_the_images_stop_signal_and_nothing_restarts_it() {
    let docker = BollardDocker::new(&DockerConfig::from_env().unwrap());
    let name = format!("berth-stopsig-{}", uuid::Uuid::new_v4().simple());
    // An image's STOPSIGNAL (as nginx's SIGQUIT), set here by the CLI's flag; a
    // shell that ignores SIGTERM, exits 9 on SIGUSR1, under a restart policy.
    let out = std::process::Command::new("docker")
        .args([
            "run",
            "-d",
            "--name",
            &name,
            "--label",
            "berth.test=stopsig",
            "--stop-signal",
            "SIGUSR1",
            "--restart",
            "unless-stopped",
            "berth-test/busybox:1",
            "sh",
            "-c",
            "trap '' TERM; trap 'exit 9' USR1; echo ready; sleep 3600 & wait",
        ])
        .output()
        .expect("the docker CLI");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_until_ready(&docker, &name).await;
    docker.terminate_container(&name).await.unwrap();
    let code = tokio::time::timeout(std::time::Duration::from_secs(20), docker.wait_container(&name))
        .await
        .expect("ended by its stop signal")
        .unwrap();
    assert_eq!(code, 9);
    // A stop, not a crash: the restart policy leaves it down.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let info = docker.inspect_container(&name).await.unwrap().expect("exists");
    assert!(!info.state.is_up(), "restarted after its stop signal: {:?}", info.state);
    docker.remove_container(&name, true).await.unwrap();
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
