//! `/metrics`: off without `BERTH_METRICS_TOKEN`, refused without the token,
//! and with it Prometheus text counting the requests this process answered by
//! route pattern and status, with latency histograms, open sockets, and the
//! job queues read from PostgreSQL.

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::TestApp;

const TOKEN: &str = "scrape-4f1c9e2b7a6d8e03";

async fn scrape(app: &TestApp, bearer: Option<&str>) -> common::Reply {
    let mut req = Request::get("/metrics").header(header::HOST, &app.host);
    if let Some(t) = bearer {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    app.send(req.body(Body::empty()).unwrap()).await
}

/// The value of the sample line starting with `series ` (0 when absent).
fn value(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .map(|v| v.parse().unwrap())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_need_their_token_and_count_requests_by_route() {
    // Off by default: there is no such page.
    let off = TestApp::new().await;
    assert_eq!(scrape(&off, Some(TOKEN)).await.status, StatusCode::NOT_FOUND);

    let mut config = common::config();
    config.metrics_token_hash = Some(engine::secrets::token_hash(TOKEN));
    let app = TestApp::with_config(config).await;
    let r = scrape(&app, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers.get(header::WWW_AUTHENTICATE).unwrap(), "Bearer");
    assert_eq!(
        scrape(&app, Some("scrape-0000000000000000")).await.status,
        StatusCode::UNAUTHORIZED
    );

    for _ in 0..3 {
        assert_eq!(app.get("/health", None).await.status, StatusCode::OK);
    }
    let cookie = app.onboard().await;
    assert_eq!(
        app.call("projects/list", &[], Some(&cookie)).await.status,
        StatusCode::OK
    );
    // A scanner's made-up paths share one series.
    for junk in ["/wp-admin/x1", "/api/zz-not-a-function", "/.env"] {
        app.get(junk, None).await;
    }

    let r = scrape(&app, Some(TOKEN)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let b = &r.body;
    assert_eq!(
        value(b, "berth_http_requests_total{route=\"/health\",status=\"200\"}"),
        3.0,
        "{b}"
    );
    assert_eq!(
        value(b, "berth_http_request_duration_seconds_count{route=\"/health\"}"),
        3.0,
        "{b}"
    );
    assert_eq!(
        value(
            b,
            "berth_http_request_duration_seconds_bucket{route=\"/health\",le=\"+Inf\"}"
        ),
        3.0
    );
    assert_eq!(
        value(
            b,
            "berth_http_requests_total{route=\"/api/projects/list\",status=\"200\"}"
        ),
        1.0,
        "{b}"
    );
    assert!(
        value(b, "berth_http_requests_total{route=\"unmatched\",status=\"404\"}") >= 3.0,
        "{b}"
    );
    assert!(
        !b.contains("wp-admin") && !b.contains("zz-not-a-function") && !b.contains(".env"),
        "{b}"
    );
    assert!(b.contains("berth_websockets_open 0\n"), "{b}");
    assert!(b.contains("berth_event_streams_open 0\n"), "{b}");
    for kind in ["deployment", "backup", "restore", "drill", "delivery"] {
        assert!(
            b.contains(&format!("berth_jobs_queued{{kind=\"{kind}\"}} 0\n")),
            "{kind}: {b}"
        );
    }
    // Every sample line is `name{labels} number` or `name number`.
    for line in b.lines().filter(|l| !l.starts_with('#')) {
        let (_, v) = line.rsplit_once(' ').unwrap();
        assert!(v.parse::<f64>().is_ok(), "{line}");
    }
}
