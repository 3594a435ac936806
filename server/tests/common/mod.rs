//! `TestApp`: the real router over a fresh database and Redis prefix, driven
//! in-process with `tower::ServiceExt::oneshot`.

#![allow(dead_code)]

pub mod matrix;

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use engine::testing::TestEngine;
use server::config::ServerConfig;
use tower::ServiceExt;

pub const HOST: &str = "berth.test";
pub const ORIGIN: &str = "http://berth.test";

/// The onboarding form for Ada, owner of "Acme".
pub const ONBOARD: &[(&str, &str)] = &[
    ("name", "Ada"),
    ("email", "ada@example.com"),
    ("password", "correct horse battery"),
    ("organization", "Acme"),
];

pub struct TestApp {
    pub router: Router,
    pub t: TestEngine,
    /// The `Host` (and `Origin`) requests carry: the public URL's.
    pub host: String,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    /// The session's `name=value` pair from Set-Cookie, ready for a Cookie header.
    pub fn session_cookie(&self) -> String {
        self.set_cookie().split(';').next().unwrap().to_owned()
    }
    pub fn set_cookie(&self) -> String {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|c| c.starts_with("berth_session=") || c.starts_with("__Host-berth_session="))
            .unwrap_or_else(|| panic!("no session cookie; status {} body {}", self.status, self.body))
    }
}

pub fn config() -> ServerConfig {
    ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        site_root: std::env::var("BERTH_SITE_ROOT").unwrap_or_else(|_| "../target/site".into()),
        public_url: Some(ORIGIN.into()),
        trust_proxy: false,
        body_limit: 1024 * 1024,
        max_requests: 64,
        max_queued: 1024,
        worker: false,
        release: None,
        metrics_token_hash: None,
    }
}

impl TestApp {
    pub async fn new() -> Self {
        Self::with_config(config()).await
    }

    /// On an engine with the tests' host policy (servers on 127.0.0.1 and local
    /// images allowed, as `make run` has it); perimeter tests that need the
    /// production policy build theirs with [`TestApp::on`].
    pub async fn with_config(config: ServerConfig) -> Self {
        let t = TestEngine::new().await;
        let mut deploy = (*t.engine.deploy).clone();
        deploy.host = engine::testing::test_host_policy();
        let engine = t.engine.clone().with_deploy(deploy);
        Self::on(t, engine, config)
    }

    /// The router of `engine` (usually `t`'s, perhaps changed) with this configuration.
    pub fn on(t: TestEngine, engine: engine::Engine, config: ServerConfig) -> Self {
        let host = config
            .public_url
            .as_deref()
            .and_then(|u| u.split_once("://"))
            .map(|(_, h)| h.to_owned())
            .unwrap_or_else(|| HOST.to_owned());
        let router = server::router(server::AppState::new(engine, config));
        Self { router, t, host }
    }

    fn origin(&self) -> String {
        if self.host == HOST {
            ORIGIN.to_owned()
        } else {
            format!("https://{}", self.host)
        }
    }

    /// Sends `req` through the router; a request that has not answered within
    /// 60 s fails the test, naming it (a hang is a failure, not a stall).
    pub async fn send(&self, req: Request<Body>) -> Reply {
        let what = format!("{} {}", req.method(), req.uri());
        let res = tokio::time::timeout(std::time::Duration::from_secs(60), self.router.clone().oneshot(req))
            .await
            .unwrap_or_else(|_| panic!("{what} did not answer within 60 s"))
            .unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = axum::body::to_bytes(res.into_body(), 16 * 1024 * 1024).await.unwrap();
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// Calls a server function as the browser's form post would, same-origin.
    pub async fn call(&self, path: &str, form: &[(&str, &str)], cookie: Option<&str>) -> Reply {
        let body = form
            .iter()
            .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut req = Request::post(format!("/api/{path}"))
            .header(header::HOST, &self.host)
            .header(header::ORIGIN, self.origin())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        self.send(req.body(Body::from(body)).unwrap()).await
    }

    pub async fn get(&self, path: &str, cookie: Option<&str>) -> Reply {
        let mut req = Request::get(path)
            .header(header::HOST, &self.host)
            .header(header::ACCEPT, "text/html");
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        self.send(req.body(Body::empty()).unwrap()).await
    }

    /// A REST API request (`/api/v1` + `path`) with an API key and a JSON body.
    pub async fn api(&self, method: &str, path: &str, key: Option<&str>, body: Option<serde_json::Value>) -> Reply {
        self.api_with(method, path, key, body, &[]).await
    }

    /// As [`TestApp::api`], with extra headers.
    pub async fn api_with(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<serde_json::Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("/api/v1{path}"))
            .header(header::HOST, &self.host);
        if let Some(k) = key {
            req = req.header(header::AUTHORIZATION, format!("Bearer {k}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let body = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        self.send(req.body(body).unwrap()).await
    }

    /// A REST API request's status and headers only (an event stream's body
    /// may never end); the body is dropped unread.
    pub async fn api_head(&self, method: &str, path: &str, key: Option<&str>) -> (StatusCode, HeaderMap) {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("/api/v1{path}"))
            .header(header::HOST, &self.host);
        if let Some(k) = key {
            req = req.header(header::AUTHORIZATION, format!("Bearer {k}"));
        }
        let res = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            self.router.clone().oneshot(req.body(Body::empty()).unwrap()),
        )
        .await
        .expect("answered within 60 s")
        .unwrap();
        (res.status(), res.headers().clone())
    }

    /// Makes an API key through Settings' server function as the holder of
    /// `cookie`; returns the key itself.
    pub async fn key(&self, cookie: &str, role: &str) -> String {
        let r = self
            .call(
                "keys/create",
                &[("name", &format!("{role} key")), ("role", role)],
                Some(cookie),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.json()["key"].as_str().unwrap().to_owned()
    }

    /// Onboards Ada (owner of "Acme") and returns her session cookie.
    pub async fn onboard(&self) -> String {
        let r = self.onboard_with(ONBOARD).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.session_cookie()
    }

    /// Calls onboarding with this form and a setup token (as the one a
    /// starting Berth prints).
    pub async fn onboard_with(&self, form: &[(&str, &str)]) -> Reply {
        let token = engine::accounts::setup_token(&self.t.engine)
            .await
            .unwrap()
            .unwrap_or_default();
        let mut form = form.to_vec();
        form.push(("setup_token", &token));
        self.call("onboard", &form, None).await
    }
}

impl TestApp {
    /// `by` invites someone with `role`; they accept as a new account. The
    /// invite's reply (for its id) and the newcomer's session cookie.
    pub async fn join(&self, by: &str, role: &str, name: &str, email: &str) -> (serde_json::Value, String) {
        let invite = self
            .call("orgs/invites/create", &[("role", role)], Some(by))
            .await
            .json();
        let link = invite["link"].as_str().expect("an invite link").to_owned();
        let token = link.rsplit('/').next().unwrap();
        let accepted = self
            .call(
                "invites/accept",
                &[
                    ("token", token),
                    ("name", name),
                    ("email", email),
                    ("password", "long enough pw"),
                ],
                None,
            )
            .await;
        (invite, accepted.session_cookie())
    }
}

pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Whether `stream` ends within `secs`: it runs out, or yields what `last`
/// calls its last item (a close frame, an error); whatever comes before is
/// skipped.
pub async fn ends_within<S>(stream: &mut S, secs: u64, last: impl Fn(&S::Item) -> bool) -> bool
where
    S: futures::Stream + Unpin,
{
    use futures::StreamExt;
    tokio::time::timeout(std::time::Duration::from_secs(secs), async {
        while let Some(item) = stream.next().await {
            if last(&item) {
                return;
            }
        }
    })
    .await
    .is_ok()
}
