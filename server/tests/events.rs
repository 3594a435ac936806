//! Status pushed across processes: two real `berth serve` processes on one
//! PostgreSQL and one Redis. A page's event stream (`/api/events`) is open on
//! B; deployments queued and cancelled through A reach it, in order, as they
//! commit; another organization's stream hears nothing of them, a member
//! limited to another project hears only that project's, stops hearing it
//! once the grant is revoked, and loses the stream once removed.

use engine::testing::{
    call_via as call, create_app, free_port, json_string, owner_with_environment, wait_for_200, DeployEnv,
    EventStream as Events, TEST_BASE_IMAGE,
};
use std::process::{Command, Stdio};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_berth");

fn spawn(env: &DeployEnv, port: u16) -> engine::testing::KillOnDrop {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve").stdout(Stdio::null()).stderr(Stdio::inherit());
    for (k, v) in env.berth_env() {
        cmd.env(k, v);
    }
    // No worker: the deployment stays queued, so it can be cancelled.
    cmd.env("BERTH_LISTEN", format!("127.0.0.1:{port}"))
        .env("BERTH_WORKER", "off")
        .env("RUST_LOG", "warn");
    engine::testing::KillOnDrop(cmd.spawn().expect("spawn berth"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_changes_through_one_process_reach_pages_on_another() {
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
    let token = engine::sessions::create(&e.kv, e.policy, caller.user_id, caller.org_id)
        .await
        .unwrap();
    // A page on B signed in to another organization (the same person's second one).
    let other_org = engine::orgs::create(&e, &caller, engine::names::OrgName::parse("Elsewhere").unwrap())
        .await
        .unwrap();
    let outsider_token = engine::sessions::create(&e.kv, e.policy, caller.user_id, other_org)
        .await
        .unwrap();

    // A member limited to another project ("Open", as its viewer), with an
    // app there.
    let open = engine::projects::create(
        &e,
        &caller,
        engine::names::ProjectName::parse("Open").unwrap(),
        Default::default(),
    )
    .await
    .unwrap();
    let open_env = engine::projects::get(&e, &caller, open).await.unwrap().environments[0].id;
    let open_app = create_app(
        &e,
        &caller,
        engine::ids::EnvironmentId(open_env),
        "theirs",
        engine::testing::image_source(TEST_BASE_IMAGE),
        Default::default(),
    )
    .await;
    let viewer = engine::testing::join(&e, &caller, "viewer@example.com", engine::names::Role::Member).await;
    engine::orgs::set_access(
        &e,
        &caller,
        viewer.user_id,
        engine::orgs::Access {
            limited: true,
            grants: vec![(open, engine::names::ProjectRole::Viewer)],
        },
    )
    .await
    .unwrap();
    let viewer_token = engine::sessions::create(&e.kv, e.policy, viewer.user_id, viewer.org_id)
        .await
        .unwrap();

    let (port_a, port_b) = (free_port(), free_port());
    let _a = spawn(&env, port_a);
    let _b = spawn(&env, port_b);
    wait_for_200(port_a, "/health").await;
    wait_for_200(port_b, "/health").await;
    // A deployment of `app` queued through A: its ID.
    let queue = |app: engine::ids::AppId| {
        let token = token.as_str();
        async move {
            let (status, body) = call(port_a, token, "deployments/create", &format!("app_id={}", app.0)).await;
            assert_eq!(status, 200, "{body}");
            json_string(&body).expect("the deployment id")
        }
    };

    let mut page = Events::open(port_b, token.as_str()).await;
    let mut other = Events::open(port_b, outsider_token.as_str()).await;
    let mut limited = Events::open(port_b, viewer_token.as_str()).await;
    // Without a session, no stream.
    let (status, _) = {
        let mut tcp = TcpStream::connect(("127.0.0.1", port_b)).await.unwrap();
        tcp.write_all(
            format!("GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:{port_b}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        tcp.read_to_string(&mut out).await.unwrap();
        (out.split_whitespace().nth(1).unwrap_or("").to_owned(), ())
    };
    assert_eq!(status, "401");

    // Queued through A: B's page hears it.
    let id = queue(app).await;
    let queued = page.next(10).await.expect("the queued deployment's event");
    assert_eq!(queued["kind"], "deployment");
    assert_eq!(queued["id"], id.as_str());
    assert_eq!(queued["app"], app.0.to_string());
    assert_eq!(queued["status"], "queued");

    // Cancelled through A: next, in order.
    let (status, body) = call(port_a, token.as_str(), "deployments/cancel", &format!("id={id}")).await;
    assert_eq!(status, 200, "{body}");
    let cancelled = page.next(10).await.expect("the cancelled deployment's event");
    assert_eq!(
        (cancelled["id"].as_str(), cancelled["status"].as_str()),
        (Some(id.as_str()), Some("cancelled"))
    );

    // The other organization heard nothing.
    assert_eq!(other.next(1).await, None, "another organization's page hears nothing");

    // The limited member heard nothing of "Shop"; a deployment in "Open"
    // reaches them.
    queue(open_app).await;
    let theirs = limited.next(10).await.expect("their project's deployment");
    assert_eq!(
        (theirs["app"].as_str(), theirs["status"].as_str()),
        (Some(open_app.0.to_string().as_str()), Some("queued")),
        "the first event a limited member hears is of their project: {theirs}"
    );

    // Their grant revoked while the page stays open: within the stream's
    // re-check period (10 s) they hear nothing more of that project either.
    engine::orgs::set_access(
        &e,
        &caller,
        viewer.user_id,
        engine::orgs::Access {
            limited: true,
            grants: Vec::new(),
        },
    )
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(11)).await;
    queue(open_app).await;
    assert_eq!(page.next(10).await.map(|v| v["status"].clone()), Some("queued".into()));
    assert_eq!(limited.next(2).await, None, "a revoked grant still carried events");

    // Removed from the organization: their open stream ends.
    engine::orgs::remove_member(&e, &caller, viewer.user_id).await.unwrap();
    assert!(limited.ends(15).await, "a removed member's stream stayed open");
}
