//! HTTPS end to end against a real ACME CA: Pebble and its DNS server from
//! Debian's `pebble` package (`engine::testing::acme`), the test Traefik and a
//! running app. Certificates come through HTTP-01, TLS-ALPN-01 and DNS-01 (a
//! wildcard, through lego's `httpreq` provider), a refused challenge shows the
//! CA's reason and backs off, a Traefik restart asks for nothing new, and the
//! per-domain options (308 redirect, basic auth) and uploaded certificates are
//! served as set.

use engine::apps::domain_options::{CertSource, DomainOptions, OptionsForm};
use engine::apps::spec::DomainName;
use engine::apps::{self, NewDomain};
use engine::deploy::{self, Status};
use engine::ids::{AppId, DomainId};
use engine::proxy::acme::AcmeForm;
use engine::testing::acme::{https_get, https_request, self_signed, AcmeLab};
use engine::testing::{create_app, get_via, httpd_runtime, settle, DeployEnv, TEST_BASE_IMAGE};
use engine::Engine;
use std::time::{Duration, Instant};

async fn add(
    e: &Engine,
    caller: &engine::accounts::Caller,
    app: AppId,
    host: &str,
    cert: CertSource,
    options: DomainOptions,
) -> DomainId {
    engine::domains::add(
        e,
        caller,
        app,
        NewDomain {
            host: DomainName::parse_route(host).unwrap(),
            path_prefix: "/".into(),
            strip_prefix: false,
            port: None,
            https: true,
            cert,
            options,
        },
    )
    .await
    .unwrap()
}

/// The domain as the app page shows it.
async fn domain(e: &Engine, caller: &engine::accounts::Caller, app: AppId, id: DomainId) -> apps::Domain {
    apps::get(e, caller, app)
        .await
        .unwrap()
        .domains
        .into_iter()
        .find(|d| d.id == id.0)
        .expect("the domain")
}

/// Waits until the domain's certificate status is `want`.
async fn wait_status(
    e: &Engine,
    caller: &engine::accounts::Caller,
    app: AppId,
    id: DomainId,
    want: &str,
    lab: &AcmeLab,
) -> apps::Domain {
    let start = Instant::now();
    loop {
        let d = domain(e, caller, app, id).await;
        if d.cert_status == want {
            return d;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{}: status {} ({:?}), wanted {want}\nPebble's log:\n{}",
            d.host,
            d.cert_status,
            d.cert_error,
            lab.pebble_log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn certificates_come_from_the_acme_ca_and_the_proxy_features_hold() {
    let mut env = DeployEnv::new().await;
    let lab = engine::testing::acme::lab_for(&mut env).await;
    let (http_port, https_port) = (env.http_port(), env.engine().deploy.proxy.https_port);
    let e = env.engine();
    let (caller, envid) = engine::testing::owner_with_environment(e).await;
    assert!(caller.instance_admin, "the first account administers the instance");

    // The instance's ACME account: Pebble, and DNS-01 through httpreq.
    engine::proxy::acme::update(
        e,
        &caller,
        &AcmeForm {
            directory: lab.directory.clone(),
            email: "ops@example.com".into(),
            dns_provider: "httpreq".into(),
            dns_credentials: format!("HTTPREQ_ENDPOINT={}\n", lab.httpreq),
            dns_resolvers: lab.dns.to_string(),
            // Pebble's DNS answers no SOA queries, which the check needs.
            dns_skip_propagation: true,
            http3: false,
        },
    )
    .await
    .unwrap();
    // The credential is a file in Traefik, not an argument or a label.
    let traefik = e
        .docker
        .inspect_container(&e.deploy.proxy.container)
        .await
        .unwrap()
        .unwrap();
    assert!(traefik
        .env
        .iter()
        .any(|v| v == "HTTPREQ_ENDPOINT_FILE=/etc/berth/dns/HTTPREQ_ENDPOINT"));
    assert!(
        !traefik.env.iter().any(|v| v.contains(&lab.httpreq)),
        "the endpoint is not in the environment"
    );
    assert!(!traefik.labels.values().any(|v| v.contains(&lab.httpreq)));

    let image = engine::testing::image_source(TEST_BASE_IMAGE);
    let app = create_app(e, &caller, envid, "tls", image, httpd_runtime(1)).await;
    let (stop, worker) = env.start_worker();
    let first = deploy::deploy(e, &caller, app).await.unwrap();
    assert_eq!(settle(e, &caller, first).await.status, Status::Running);

    let orders_before = lab.orders();
    let with_auth = DomainOptions {
        basic_auth: vec![engine::apps::domain_options::BasicUser {
            user: "alice".into(),
            hash: engine::apps::domain_options::bcrypt_hash("open sesame"),
        }],
        ..DomainOptions::default()
    };
    let ok = add(e, &caller, app, "ok.test", CertSource::Http, with_auth).await;
    let alpn = add(e, &caller, app, "alpn.test", CertSource::Tls, DomainOptions::default()).await;
    let wild = add(
        e,
        &caller,
        app,
        "*.wild.test",
        CertSource::Dns,
        DomainOptions::default(),
    )
    .await;
    lab.add_a("fail.test", "127.0.0.2").await;
    let no_redirect = DomainOptions {
        redirect_https: false,
        ..DomainOptions::default()
    };
    let fail = add(e, &caller, app, "fail.test", CertSource::Http, no_redirect).await;

    // Issued, as read from what Traefik serves for the name.
    let issued = wait_status(e, &caller, app, ok, "issued", &lab).await;
    assert!(
        issued.cert_issuer.as_deref().is_some_and(|i| i.contains("Pebble")),
        "{:?}",
        issued.cert_issuer
    );
    let not_after = issued.cert_not_after.expect("a not-after date");
    assert!(not_after > chrono::Utc::now() + chrono::Duration::days(7));
    let root = lab.root_pem().await;
    let (status, _) = https_get(("127.0.0.1", https_port), "ok.test", "/", root.as_bytes())
        .await
        .unwrap();
    assert_eq!(status, 401, "basic auth asks for credentials");
    let (status, body) = https_request(
        ("127.0.0.1", https_port),
        "ok.test",
        "/",
        root.as_bytes(),
        Some("alice:open sesame"),
    )
    .await
    .unwrap();
    assert_eq!((status, body.trim()), (200, "up"));
    let (status, _) = https_request(
        ("127.0.0.1", https_port),
        "ok.test",
        "/",
        root.as_bytes(),
        Some("alice:wrong"),
    )
    .await
    .unwrap();
    assert_eq!(status, 401);
    // HTTP redirects permanently to the HTTPS URL: 308 (method and body kept);
    // Traefik answers a GET with 301, which for a GET means the same.
    let plain = engine::http1::request(
        "127.0.0.1",
        http_port,
        "POST",
        "ok.test",
        "/x?y=1",
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(plain.status, 308);
    assert!(
        plain
            .header("location")
            .is_some_and(|l| l.starts_with("https://ok.test")),
        "{:?}",
        plain.header("location")
    );
    let plain = engine::http1::request("127.0.0.1", http_port, "GET", "ok.test", "/", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(plain.status, 301);

    wait_status(e, &caller, app, alpn, "issued", &lab).await;
    let (status, _) = https_get(("127.0.0.1", https_port), "alpn.test", "/", root.as_bytes())
        .await
        .unwrap();
    assert_eq!(status, 200);

    // The wildcard through DNS-01 covers any one label.
    wait_status(e, &caller, app, wild, "issued", &lab).await;
    let (status, body) = https_get(("127.0.0.1", https_port), "shop.wild.test", "/", root.as_bytes())
        .await
        .unwrap();
    assert_eq!((status, body.trim()), (200, "up"));

    // A challenge that cannot pass: failed with the CA's reason, backing off,
    // and the app still answers over HTTP.
    let failed = wait_status(e, &caller, app, fail, "failed", &lab).await;
    let reason = failed.cert_error.clone().unwrap_or_default();
    assert!(
        reason.contains("127.0.0.2"),
        "the CA's reason names what it could not reach: {reason}"
    );
    assert!(failed
        .cert_retry_at
        .is_some_and(|t| t > chrono::Utc::now() + chrono::Duration::minutes(4)));
    assert_eq!(get_via(http_port, "fail.test", "/").await.map(|r| r.0), Some(200));
    let orders_after_failure = lab.orders();
    // The app's routes changing does not make Traefik ask again while it backs off.
    engine::domains::add(
        e,
        &caller,
        app,
        NewDomain {
            host: DomainName::parse("plain.test").unwrap(),
            path_prefix: "/".into(),
            strip_prefix: false,
            port: None,
            https: false,
            cert: CertSource::Http,
            options: DomainOptions::default(),
        },
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(lab.orders(), orders_after_failure, "no new order during the backoff");

    // Restarted, Traefik serves the same certificate from acme.json: no new order.
    let orders = lab.orders();
    assert!(orders > orders_before);
    e.docker
        .stop_container(&e.deploy.proxy.container, Duration::from_secs(5))
        .await
        .unwrap();
    e.docker.start_container(&e.deploy.proxy.container).await.unwrap();
    let start = Instant::now();
    let again = loop {
        if let Ok(f) =
            engine::proxy::certs::served(([127, 0, 0, 1], https_port).into(), "ok.test", Duration::from_secs(2)).await
        {
            if !engine::proxy::certs::is_fallback(&f.subject) {
                break f;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the certificate is not served after a restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(again.not_after, not_after, "the same certificate");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(lab.orders(), orders, "no new order after a restart");

    // An uploaded certificate: checked, then served for its name.
    let custom = add(
        e,
        &caller,
        app,
        "custom.test",
        CertSource::Custom,
        DomainOptions::default(),
    )
    .await;
    let (good_cert, good_key) = self_signed(&["custom.test"], (2025, 1, 1), (2035, 1, 1));
    let (_, other_key) = self_signed(&["custom.test"], (2025, 1, 1), (2035, 1, 1));
    let (old_cert, old_key) = self_signed(&["custom.test"], (2020, 1, 1), (2021, 1, 1));
    let refused = engine::domains::upload_certificate(e, &caller, custom, &good_cert, &other_key)
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, apps::AppError::Invalid(v) if v.field == "key" && v.message.contains("does not match")),
        "{refused:?}"
    );
    let refused = engine::domains::upload_certificate(e, &caller, custom, &old_cert, &old_key)
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, apps::AppError::Invalid(v) if v.field == "certificate" && v.message.contains("expired")),
        "{refused:?}"
    );
    let stored: i64 = {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        let mut conn = e.db.get().await.unwrap();
        engine::db::schema::certificates::table
            .count()
            .get_result(&mut conn)
            .await
            .unwrap()
    };
    let file = e.deploy.proxy.dynamic_dir.join("tls-custom.yml");
    assert!(stored == 0 && !file.exists(), "nothing stored or served");
    engine::domains::upload_certificate(e, &caller, custom, &good_cert, &good_key)
        .await
        .unwrap();
    let d = wait_status(e, &caller, app, custom, "issued", &lab).await;
    assert_eq!(d.cert_issuer.as_deref(), Some("custom.test"));
    let (status, _) = https_get(("127.0.0.1", https_port), "custom.test", "/", good_cert.as_bytes())
        .await
        .unwrap();
    assert_eq!(status, 200, "served with the uploaded certificate");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);

    // Another organization cannot see or replace it.
    let mut stranger = caller.clone();
    stranger.org_id = engine::ids::OrgId(uuid::Uuid::new_v4());
    assert!(matches!(
        engine::domains::upload_certificate(e, &stranger, custom, &good_cert, &good_key).await,
        Err(apps::AppError::NotFound)
    ));

    // The options form round-trips what is stored.
    let form: OptionsForm = domain(e, &caller, app, ok).await.options().to_form();
    assert_eq!(form.basic_auth, "alice\n");

    stop.cancel();
    worker.await.unwrap();
}
