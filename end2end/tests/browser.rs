//! The browser test: the real `berth` binary on a fresh database, driven through
//! headless Chromium. Onboarding → sign out → sign in → create a project →
//! rename it → see it listed → toggle dark mode; it proves hydration (client
//! state changes without a reload, validation errors appear in place) and saves
//! screenshots under target/screenshots/. Every route (each tab of the app and
//! service pages too) is also hard-loaded, as F5 does, in light and dark mode:
//! no console error or panic, a click still works, and axe-core finds no
//! serious or critical accessibility violation.

use engine::testing::{free_port, httpd_dockerfile, wait_for_200, DeployEnv, GitRepo, TestDb, TestRedis, TestS3};
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::{elements::Element, Client, ClientBuilder, Locator};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

struct Berth {
    _child: Child,
    port: u16,
    /// The one-time setup token it printed (onboarding needs it).
    token: String,
    _db: TestDb,
    _redis: TestRedis,
}

async fn start_berth() -> Berth {
    start_berth_with_site(site_root()).await
}

async fn start_berth_with_site(site: PathBuf) -> Berth {
    let db = TestDb::new().await;
    let redis = TestRedis::new();
    let port = free_port();
    let bin = berth_bin();
    assert!(
        bin.exists(),
        "{} missing: run `make test`, which builds it",
        bin.display()
    );
    assert!(
        site.join("pkg/berth_bg.wasm").exists(),
        "{} has no WASM bundle: run `make test`",
        site.display()
    );
    let log = std::env::temp_dir().join(format!("berth-e2e-{}.log", uuid::Uuid::new_v4().simple()));
    let child = Command::new(bin)
        .arg("serve")
        .env("DATABASE_URL", &db.url)
        .env("REDIS_URL", &redis.url)
        .env("BERTH_REDIS_PREFIX", &redis.prefix)
        .env("BERTH_LISTEN", format!("127.0.0.1:{port}"))
        .env("BERTH_SITE_ROOT", site)
        .env("BERTH_SECRET_KEY", engine::secrets::generate_key_string())
        .env("BERTH_MODE", "production")
        .env("BERTH_WORKER", "off")
        .stdout(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn berth");
    wait_for_200(port, "/health").await;
    Berth {
        _child: child,
        port,
        token: printed_setup_token(&log).await,
        _db: db,
        _redis: redis,
    }
}

fn berth_bin() -> PathBuf {
    std::env::var("BERTH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace().join("target/debug/berth"))
}

fn site_root() -> PathBuf {
    std::env::var("BERTH_SITE_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace().join("target/site"))
}

/// `berth serve` as the deploy environment's engine: same database, Redis prefix,
/// key, Docker network and Traefik.
async fn start_berth_for(env: &DeployEnv) -> (Child, u16, String) {
    let port = free_port();
    let log = env.dir.join("berth-e2e.log");
    let mut cmd = Command::new(berth_bin());
    cmd.arg("serve")
        .env("BERTH_LISTEN", format!("127.0.0.1:{port}"))
        .env("BERTH_SITE_ROOT", site_root())
        .stdout(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true);
    for (k, v) in env.berth_env() {
        cmd.env(k, v);
    }
    // Metric points every 2 s, so the Metrics tab has some soon.
    cmd.env("BERTH_METRICS_INTERVAL_SECS", "2");
    let child = cmd.spawn().expect("spawn berth");
    wait_for_200(port, "/health").await;
    (child, port, printed_setup_token(&log).await)
}

/// The setup token a fresh `berth` prints to its log (as an operator reads it).
async fn printed_setup_token(log: &std::path::Path) -> String {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(rest) = text.split("setup token: ").nth(1) {
            return rest.split_whitespace().next().unwrap().to_owned();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "berth printed no setup token: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn start_browser() -> (Child, Client) {
    let port = free_port();
    let driver = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver (apt-get install chromium-driver)");
    wait_for_200(port, "/status").await;
    let profile = std::env::temp_dir().join(format!("berth-chrome-{}", uuid::Uuid::new_v4()));
    let caps = serde_json::json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                "--window-size=1280,900", format!("--user-data-dir={}", profile.display()),
            ]
        },
        // Every console message, so a hard load can be checked for errors and panics.
        "goog:loggingPrefs": { "browser": "ALL" }
    });
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps.as_object().unwrap().clone())
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("WebDriver session");
    (driver, client)
}

async fn find(c: &Client, css: &str) -> Element {
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("element {css} did not appear: {e}"))
}

/// Clicks what `css` finds. The page may replace the element between the
/// find and the click (a resource re-read after a save, or a status event):
/// it is found again, as a person would simply click the new one.
async fn click(c: &Client, css: &str) {
    for _ in 0..20 {
        match find(c, css).await.click().await {
            Ok(()) => return,
            Err(fantoccini::error::CmdError::Standard(e))
                if e.error == fantoccini::error::ErrorStatus::StaleElementReference =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("clicking {css}: {e}"),
        }
    }
    panic!("{css} was replaced again and again");
}

async fn displayed(c: &Client, css: &str) -> bool {
    find(c, css).await.is_displayed().await.unwrap()
}

async fn fill(c: &Client, css: &str, value: &str) {
    let el = find(c, css).await;
    el.clear().await.unwrap();
    el.send_keys(value).await.unwrap();
}

async fn wait_path(c: &Client, path: &str) {
    let start = Instant::now();
    loop {
        let url = c.current_url().await.unwrap();
        if url.path() == path {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "expected {path}, still at {url}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_text(c: &Client, css: &str, text: &str) {
    let start = Instant::now();
    loop {
        if let Ok(el) = c.find(Locator::Css(css)).await {
            if el.text().await.map(|t| t.contains(text)).unwrap_or(false) {
                return;
            }
        }
        if start.elapsed() > Duration::from_secs(20) {
            // The console usually says why (a failed chunk load, a panic).
            let url = c.current_url().await.map(|u| u.to_string()).unwrap_or_default();
            panic!(
                "{css} never showed {text:?} (at {url}; console errors: {:#?})",
                console_errors(c).await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Presses and releases one key, wherever the focus is.
async fn press(c: &Client, key: Key) {
    let keys = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: key.into() })
        .then(KeyAction::Up { value: key.into() });
    c.perform_actions(keys).await.unwrap();
}

/// Types text into whatever has the focus.
async fn type_keys(c: &Client, text: &str) {
    let mut keys = KeyActions::new("keyboard".into());
    for ch in text.chars() {
        keys = keys
            .then(KeyAction::Down { value: ch })
            .then(KeyAction::Up { value: ch });
    }
    c.perform_actions(keys).await.unwrap();
}

/// Presses Tab until the focus is on an element matching `css` (at most 40
/// times, so a control Tab cannot reach fails the test), and checks that the
/// focus shows: an outline or a ring (box-shadow) on the focused element.
async fn tab_to(c: &Client, css: &str) {
    find(c, css).await;
    for _ in 0..40 {
        press(c, Key::Tab).await;
        let script = format!(
            "return document.activeElement.matches({})",
            serde_json::to_string(css).unwrap()
        );
        if js(c, &script).await == true {
            let visible = js(
                c,
                "const s = getComputedStyle(document.activeElement);\
                 return (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0) || s.boxShadow !== 'none'",
            )
            .await;
            assert_eq!(visible, true, "the focus on {css} is not visible");
            return;
        }
    }
    panic!("Tab never reached {css}");
}

/// After a save, the keyboard's focus is on `css` (the control pressed, its
/// copy once the page rebuilt it, or the summary of the disclosure the save
/// closed over it), not dropped to the body: waits up to
/// 3 s for the page to settle, then names where the focus is.
async fn focus_kept(c: &Client, css: &str) {
    let script = format!(
        "const a = document.activeElement; return a && a.matches({}) ? '' : (a ? a.outerHTML.slice(0, 120) : 'nothing')",
        serde_json::to_string(css).unwrap()
    );
    let start = Instant::now();
    loop {
        let at = js(c, &script).await;
        if at == "" {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "the focus left {css} after the save: it is on {at}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn screenshot(c: &Client, name: &str) {
    let file = workspace().join("target/screenshots").join(name);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let png = c.screenshot().await.unwrap();
    assert!(png.len() > 1000, "screenshot is empty");
    std::fs::write(file, png).unwrap();
}

async fn js(c: &Client, script: &str) -> serde_json::Value {
    c.execute(script, vec![]).await.unwrap()
}

/// Which of `selectors` match something on the page now.
async fn present(c: &Client, selectors: &[&str]) -> Vec<String> {
    let found = c
        .execute(
            "return arguments[0].filter(s => document.querySelector(s))",
            vec![serde_json::json!(selectors)],
        )
        .await
        .unwrap();
    serde_json::from_value(found).unwrap()
}

/// ChromeDriver's browser log (an extension it serves beside W3C WebDriver):
/// the console messages since the last read.
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.into()))
    }
}

/// The console's errors since the last call (a WASM panic is one: the panic
/// hook writes it with `console.error`), and any message naming a panic.
///
/// One message is set aside, loudly: Chromium aborts requests in flight with
/// `net::ERR_NETWORK_CHANGED` whenever the host's interfaces change, and the
/// tests' own Docker engine adds bridges and veth pairs as the deployments and
/// databases beside this page start (chromium issue 41465264). It says nothing
/// about Berth; what the page does next (a lazy chunk's reload, a retried
/// request) is still checked by the waits that follow.
async fn console_errors(c: &Client) -> Vec<String> {
    let log = c.issue_cmd(BrowserLog).await.expect("the browser log");
    log.as_array()
        .into_iter()
        .flatten()
        .filter(|e| {
            let message = e["message"].as_str().unwrap_or_default();
            e["level"] == "SEVERE" || message.contains("panicked")
        })
        .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
        .filter(|m| {
            let host_network = is_host_network_change(m);
            if host_network {
                eprintln!("set aside (the host's network changed under Chromium): {m}");
            }
            !host_network
        })
        .collect()
}

/// A resource load Chromium aborted because the host's interfaces changed.
fn is_host_network_change(message: &str) -> bool {
    message.ends_with("Failed to load resource: net::ERR_NETWORK_CHANGED")
}

#[test]
fn only_network_changes_are_set_aside() {
    assert!(is_host_network_change(
        "http://127.0.0.1:39543/pkg/a1/__wasm_split.js - Failed to load resource: net::ERR_NETWORK_CHANGED"
    ));
    for other in [
        "http://127.0.0.1:1/pkg/x.js - Failed to load resource: net::ERR_CONNECTION_REFUSED",
        "http://127.0.0.1:1/api/x - Failed to load resource: the server responded with a status of 500",
        "panicked at app/src/lib.rs:1:1: net::ERR_NETWORK_CHANGED",
    ] {
        assert!(!is_host_network_change(other), "{other}");
    }
}

/// A hard load, as typing the address or pressing F5 does, in the given theme:
/// the server's page hydrates without a console error or panic, shows `ready`,
/// and then reacts to a click without a reload (the theme toggle, when the page
/// has the app's shell; a dead page, whose hydration broke, would not).
async fn hard_load(c: &Client, url: &str, ready: &str, dark: bool) {
    js(
        c,
        &format!(
            "localStorage.setItem('berth-theme', '{}'); return null",
            if dark { "dark" } else { "light" }
        ),
    )
    .await;
    console_errors(c).await;
    c.goto(url).await.unwrap();
    // The browser reports the document's own status when it is 404 (the
    // not-found page is served as one); `ready` then tells the pages apart.
    let own_404 = format!("{url} - Failed to load resource: the server responded with a status of 404 (Not Found)");
    let start = Instant::now();
    loop {
        let mut errors = console_errors(c).await;
        errors.retain(|e| *e != own_404);
        assert!(errors.is_empty(), "{url}: console errors on a hard load: {errors:#?}");
        if c.find(Locator::Css("html[data-hydrated=true]")).await.is_ok() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{url} never hydrated");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    find(c, ready).await;
    // Resources that resolve after hydration, and their effects.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let errors = console_errors(c).await;
    assert!(errors.is_empty(), "{url}: console errors after hydrating: {errors:#?}");
    assert_eq!(
        js(c, "return document.documentElement.classList.contains('dark')").await,
        dark,
        "{url}: the theme"
    );
    let violations = accessibility_violations(c).await;
    assert!(
        violations.is_empty(),
        "{url} ({}): accessibility: {violations:#?}",
        if dark { "dark" } else { "light" }
    );
    // A picture of every page, per theme and width, for review.
    let width = js(c, "return window.innerWidth").await.as_i64().unwrap_or(0);
    let page: String = url
        .split_once("://")
        .map(|(_, r)| r.split_once('/').map(|(_, p)| p).unwrap_or(""))
        .unwrap_or("")
        .chars()
        .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '-' })
        .take(60)
        .collect();
    let page = if page.is_empty() { "root".to_owned() } else { page };
    screenshot(
        c,
        &format!("pages/{page}.{}.{width}.png", if dark { "dark" } else { "light" }),
    )
    .await;
    // At phone width the toggle sits in the folded menu: open it first.
    if let Ok(menu) = c.find(Locator::Css("#menu-toggle")).await {
        if menu.is_displayed().await.unwrap_or(false) {
            menu.click().await.unwrap();
        }
    }
    if c.find(Locator::Css("#theme-toggle")).await.is_ok() {
        js(c, "window.__berthMarker = 11; return null").await;
        click(c, "#theme-toggle").await;
        let after = js(
            c,
            "return [document.documentElement.classList.contains('dark'), window.__berthMarker]",
        )
        .await;
        assert_eq!(after[0], !dark, "{url}: the page did not react after a hard load");
        assert_eq!(after[1], 11, "{url}: the page reloaded");
        click(c, "#theme-toggle").await;
    }
    let errors = console_errors(c).await;
    assert!(errors.is_empty(), "{url}: console errors after a click: {errors:#?}");
}

/// axe-core's serious and critical findings on the page (the npm package
/// `scripts/tools.sh test` installs, injected into the page): WCAG 2.1 A and
/// AA rules and axe's best practices, contrast included.
async fn accessibility_violations(c: &Client) -> Vec<String> {
    let path = workspace().join(".tools/npm/node_modules/axe-core/axe.min.js");
    let axe = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (scripts/tools.sh test installs it)", path.display()));
    c.execute(&axe, vec![]).await.expect("axe-core loads");
    let found = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, { resultTypes: ['violations'] }).then(r => done(
               r.violations
                 .filter(v => v.impact === 'serious' || v.impact === 'critical')
                 .map(v => v.id + ' (' + v.impact + '): ' + v.help + ' at '
                   + v.nodes.slice(0, 5).map(n => n.target.join(' ')).join(', '))));",
            vec![],
        )
        .await
        .expect("axe-core runs");
    found
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

/// Hard-loads each `(path, ready)` in both themes.
async fn hard_load_all(c: &Client, base: &str, routes: &[(String, &str)]) {
    for (path, ready) in routes {
        for dark in [false, true] {
            hard_load(c, &format!("{base}{path}"), ready, dark).await;
        }
    }
}

async fn journey(c: &Client, base: &str, token: &str) {
    // A first visit with no users goes to onboarding.
    c.goto(base).await.unwrap();
    wait_path(c, "/onboarding").await;
    // The page hydrates: a marker set now survives everything that follows
    // until we navigate on purpose, proving no reload happened.
    find(c, "#onboarding-form").await;
    find(c, "html[data-hydrated=true]").await;
    let errors = console_errors(c).await;
    assert!(errors.is_empty(), "onboarding: {errors:#?}");
    let violations = accessibility_violations(c).await;
    assert!(violations.is_empty(), "onboarding: accessibility: {violations:#?}");
    fill(c, "#field-setup_token", token).await;
    fill(c, "#field-name", "Ada Lovelace").await;
    fill(c, "#field-email", "ada@example.com").await;
    fill(c, "#field-password", "short").await;
    fill(c, "#field-organization", "Analytical Engines").await;
    // The app marks <html> once hydrated; then mark the document ourselves.
    find(c, "html[data-hydrated=true]").await;
    js(c, "window.__berthMarker = 42; return null").await;
    click(c, "#onboarding-submit").await;
    // The server's validation message appears next to the password field, in place.
    wait_text(c, "[data-error-for=password]", "at least 10 characters").await;
    assert_eq!(
        js(c, "return window.__berthMarker").await,
        42,
        "the page reloaded: hydration did not take"
    );
    fill(c, "#field-password", "correct horse battery").await;
    click(c, "#onboarding-submit").await;
    wait_path(c, "/projects").await;
    find(c, "#projects-empty").await;

    // Sign out, then back in, then make a project and open its "New
    // application" form, with the keyboard only: Tab reaches each control in
    // order, its focus is visible, Enter submits and follows links.
    click(c, "#logout").await;
    wait_path(c, "/login").await;
    find(c, "html[data-hydrated=true]").await;
    tab_to(c, "#field-email").await;
    type_keys(c, "ada@example.com").await;
    tab_to(c, "#field-password").await;
    type_keys(c, "correct horse battery").await;
    press(c, Key::Enter).await;
    wait_path(c, "/projects").await;
    wait_text(c, "#whoami", "ada@example.com").await;
    find(c, "html[data-hydrated=true]").await;
    tab_to(c, "#create-project input[name=name]").await;
    type_keys(c, "Keyboard").await;
    press(c, Key::Enter).await;
    wait_text(c, "#project-list", "Keyboard").await;
    tab_to(c, "#project-list a").await;
    press(c, Key::Enter).await;
    wait_text(c, "#project-title", "Keyboard").await;
    tab_to(c, "#new-app summary").await;
    press(c, Key::Enter).await;
    assert_eq!(
        js(c, "return document.querySelector('#new-app').open").await,
        true,
        "Enter opened the form"
    );
    tab_to(c, "#create-app input[name=name]").await;
    c.find(Locator::LinkText("Projects"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_path(c, "/projects").await;

    // Create a project and open it.
    fill(c, "#create-project input[name=name]", "Website").await;
    fill(c, "#create-project input[name=description]", "The public site").await;
    click(c, "#create-project-submit").await;
    wait_text(c, "#project-list", "Website").await;
    // The form is empty again for the next one.
    assert_eq!(
        js(
            c,
            "return document.querySelector('#create-project input[name=name]').value"
        )
        .await,
        ""
    );
    c.find(Locator::XPath("//*[@id='project-list']//a[contains(., 'Website')]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(c, "#project-title", "Website").await;
    wait_text(c, "#environments", "production").await;

    // Rename it.
    fill(c, "#rename-project input[name=name]", "Website v2").await;
    click(c, "#rename-project-submit").await;
    wait_text(c, "#project-title", "Website v2").await;
    focus_kept(c, "#rename-project-submit").await;
    // An environment added, renamed in its row and deleted: the keyboard's
    // place holds through each, and goes to the section's heading when the
    // row before has no control (the default environment's).
    click(c, "#new-environment summary").await;
    fill(c, "#add-environment input[name=name]", "staging").await;
    click(c, "#add-environment button[type=submit]").await;
    wait_text(c, "#environments", "staging").await;
    // The page was built again with the form folded: its summary has the
    // focus, and opens it again.
    focus_kept(c, "#new-environment > summary").await;
    click(c, "[data-environment=staging] summary").await;
    fill(c, "[data-environment=staging] input[name=name]", "preview").await;
    click(c, "[data-environment=staging] button[type=submit]").await;
    find(c, "[data-environment=preview]").await;
    focus_kept(c, "[data-environment=preview] summary").await;
    click(c, "[data-delete-environment=preview]").await;
    c.accept_alert().await.expect("the deletion asks first");
    c.dismiss_alert().await.expect("and asks about the volumes");
    find(c, "#environments:not(:has([data-environment=preview]))").await;
    focus_kept(c, "section:has(> #environments) > h2").await;

    // Dark mode: a click flips the theme without a reload and is remembered.
    js(c, "window.__berthMarker = 7; return null").await;
    let before = js(c, "return document.documentElement.classList.contains('dark')").await;
    click(c, "#theme-toggle").await;
    let after = js(c, "return [document.documentElement.classList.contains('dark'), window.__berthMarker, localStorage.getItem('berth-theme')]").await;
    assert_eq!(
        after[0],
        serde_json::Value::Bool(!before.as_bool().unwrap()),
        "theme did not toggle"
    );
    assert_eq!(after[1], 7, "the page reloaded");
    assert_eq!(after[2], if before == true { "light" } else { "dark" });
    screenshot(c, "project-page.png").await;

    // Every page of the shell, hard-loaded (typed address or F5), in both themes.
    let project_path = c.current_url().await.unwrap().path().to_owned();
    let shell_routes = [
        ("/projects".into(), "#project-list"),
        (project_path.clone(), "#project-title"),
        ("/settings".into(), "#members"),
        ("/server".into(), "#server-title"),
        ("/".into(), "#project-list"),
        // Unknown addresses and IDs: inside the shell, said in words.
        ("/no-such-page".into(), "main h1"),
        (format!("/apps/{}", uuid::Uuid::new_v4()), "main [data-not-found]"),
        (format!("/projects/{}", uuid::Uuid::new_v4()), "main [data-not-found]"),
        (format!("/services/{}", uuid::Uuid::new_v4()), "main [data-not-found]"),
    ];
    hard_load_all(c, base, &shell_routes).await;
    // And at phone width.
    c.set_window_size(390, 844).await.unwrap();
    hard_load_all(c, base, &shell_routes).await;
    c.set_window_size(1280, 900).await.unwrap();
    c.goto(&format!("{base}{project_path}")).await.unwrap();
    find(c, "html[data-hydrated=true]").await;

    // Back to the list: the new name is there.
    c.find(Locator::LinkText("Projects"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_path(c, "/projects").await;
    wait_text(c, "#project-list", "Website v2").await;

    // Settings: make an invite link, then accept it as a new user in a fresh session.
    c.find(Locator::LinkText("Settings"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_path(c, "/settings").await;
    wait_text(c, "#members", "ada@example.com").await;
    // Ada administers the instance: the certificate settings are hers.
    let directory = find(c, "#certificates #field-directory")
        .await
        .prop("value")
        .await
        .unwrap();
    assert_eq!(directory.as_deref(), Some("production"));
    // An API key made, then revoked: its row stays to say so, without a
    // control, and the focus goes to the heading of the keys' section.
    fill(c, "#key-name", "deploy bot").await;
    click(c, "#create-key").await;
    find(c, "#new-key").await;
    wait_text(c, "#key-list", "deploy bot").await;
    click(c, "[aria-label='Revoke deploy bot']").await;
    c.accept_alert().await.expect("revoking asks first");
    wait_text(c, "#key-list", "revoked").await;
    focus_kept(c, "#api-keys > h2").await;
    click(c, "#create-invite").await;
    find(c, "#invite-link").await;
    let link = js(c, "return document.getElementById('invite-link').value").await;
    let link = link.as_str().unwrap().to_owned();
    assert!(link.starts_with(base) && link.contains("/invite/"), "{link}");
    // A second invite, for an admin, revoked from its row: the focus goes to
    // the same button in the other invite's row.
    click(c, "#invite-form select[name=role] option[value=admin]").await;
    click(c, "#create-invite").await;
    click(c, "#invites [data-invite-role=admin] button").await;
    find(c, "#invites:not(:has([data-invite-role=admin]))").await;
    focus_kept(c, "#invites [data-invite-role=member] button").await;
    click(c, "#logout").await;
    wait_path(c, "/login").await;
    // The signed-out pages, hard-loaded.
    hard_load_all(
        c,
        base,
        &[
            ("/login".into(), "#login-submit"),
            (link.trim_start_matches(base).to_owned(), "#accept-invite"),
        ],
    )
    .await;
    c.goto(&link).await.unwrap();
    find(c, "html[data-hydrated=true]").await;
    fill(c, "#field-name", "Bob Babbage").await;
    fill(c, "#field-email", "bob@example.com").await;
    fill(c, "#field-password", "difference engine").await;
    click(c, "#accept-invite").await;
    wait_path(c, "/projects").await;
    wait_text(c, "#whoami", "bob@example.com").await;
    wait_text(c, "#project-list", "Website v2").await;

    // Phone width: the layout fits without sideways scrolling.
    c.set_window_size(390, 844).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let overflow = js(c, "return document.documentElement.scrollWidth - window.innerWidth").await;
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "horizontal overflow at phone width: {overflow}"
    );
    // The sidebar folds into a bar with a menu button; the menu opens on a click.
    let bar = js(
        c,
        "return document.querySelector('aside').getBoundingClientRect().height",
    )
    .await;
    assert!(bar.as_f64().unwrap() < 100.0, "the phone header is a bar: {bar}");
    assert!(!displayed(c, "#logout").await);
    click(c, "#menu-toggle").await;
    assert!(displayed(c, "#logout").await, "the menu opened");
    screenshot(c, "projects-phone.png").await;
}

#[tokio::test]
async fn onboarding_login_projects_and_dark_mode_in_a_real_browser() {
    let berth = start_berth().await;
    let (_driver, client) = start_browser().await;
    let base = format!("http://127.0.0.1:{}", berth.port);
    // Always close the session, even when the journey fails, or Chromium lingers.
    let outcome = tokio::spawn({
        let c = client.clone();
        let token = berth.token.clone();
        async move { journey(&c, &base, &token).await }
    })
    .await;
    if outcome.is_err() {
        let _ = screenshot(&client, "failure.png").await;
    }
    client.close().await.unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn wait_text_long(c: &Client, css: &str, text: &str, limit: Duration) {
    let start = Instant::now();
    loop {
        if let Ok(el) = c.find(Locator::Css(css)).await {
            if el.text().await.map(|t| t.contains(text)).unwrap_or(false) {
                return;
            }
        }
        assert!(start.elapsed() < limit, "{css} never showed {text:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Onboards Ada and opens a new project "Shop".
/// Claims the instance through the link berth printed, as an operator would
/// open it (the token filled in), and lands on the project list.
async fn onboard(c: &Client, base: &str, token: &str) {
    c.goto(&format!("{base}/onboarding?token={token}")).await.unwrap();
    wait_path(c, "/onboarding").await;
    find(c, "html[data-hydrated=true]").await;
    fill(c, "#field-name", "Ada Lovelace").await;
    fill(c, "#field-email", "ada@example.com").await;
    fill(c, "#field-password", "correct horse battery").await;
    fill(c, "#field-organization", "Analytical Engines").await;
    click(c, "#onboarding-submit").await;
    wait_path(c, "/projects").await;
}

async fn onboard_into_project(c: &Client, base: &str, token: &str) {
    onboard(c, base, token).await;
    fill(c, "#create-project input[name=name]", "Shop").await;
    click(c, "#create-project-submit").await;
    wait_text(c, "#project-list", "Shop").await;
    click(c, "#project-list a").await;
    wait_text(c, "#project-title", "Shop").await;
}

async fn deploy_journey(c: &Client, base: &str, token: &str, repo: &str, name: &str, proxy_port: u16) {
    onboard_into_project(c, base, token).await;

    // A new application from a git repository (a Dockerfile app on port 8080).
    // The form opens on request; its fields follow the source.
    click(c, "#new-app summary").await;
    assert!(displayed(c, "#create-app input[name=repository]").await);
    assert!(!displayed(c, "#create-app input[name=image]").await);
    find(c, "#field-source option[value=image]")
        .await
        .click()
        .await
        .unwrap();
    assert!(displayed(c, "#create-app input[name=image]").await);
    assert!(!displayed(c, "#create-app input[name=repository]").await);
    click(c, "#field-source option[value=git]").await;
    fill(c, "#create-app input[name=name]", name).await;
    fill(c, "#create-app input[name=repository]", repo).await;
    fill(c, "#create-app input[name=branch]", "main").await;
    click(c, "#create-app-submit").await;
    wait_text(c, "#app-title", name).await;
    click(c, "[data-tab=advanced]").await;
    fill(c, "#runtime-form input[name=port]", "8080").await;
    // Marks the form so its rebuild can be seen: "Saved" shows before the
    // page has read the app back, and a rebuild landing later would replace
    // the next tab's controls under the test's hands.
    js(
        c,
        "document.getElementById('runtime-form').dataset.before = 'save'; return null",
    )
    .await;
    click(c, "#runtime-save").await;
    wait_text(c, "#runtime-form", "Saved").await;
    find(c, "#runtime-form:not([data-before])").await;
    // The tab was built again from what was saved; the keyboard's place held.
    focus_kept(c, "#runtime-save").await;
    // A variable: "Reveal and edit" gives way to the editor, which takes the
    // keyboard; the save hides the values again, and the focus goes back to
    // the button that reveals them.
    click(c, "[data-tab=environment]").await;
    click(c, "#reveal-env").await;
    focus_kept(c, "#field-dotenv").await;
    fill(c, "#field-dotenv", "GREETING=hello").await;
    click(c, "#env-save").await;
    wait_text(c, "#env-names", "GREETING").await;
    focus_kept(c, "#reveal-env").await;
    wait_text(c, "#reveal-env ~ [role=status]", "Saved.").await;

    // Deploy, and watch the live log until the deployment runs.
    click(c, "#deploy").await;
    find(c, "#deployments").await;
    let app_path = c.current_url().await.unwrap().path().to_owned();
    wait_text_long(c, "[data-log]", "==> cloning", Duration::from_secs(30)).await;
    wait_text_long(c, "[data-log]", "==> deployment running", Duration::from_secs(120)).await;
    find(c, "[data-log-state=ended]").await;
    wait_text_long(c, "#deployments", "running", Duration::from_secs(20)).await;
    screenshot(c, "deployment-log.png").await;
    // Log text is shown as text: the markup the build printed is visible, and no
    // element came from it.
    wait_text(c, "[data-log]", "<b>not bold</b>").await;
    let injected = js(
        c,
        "return document.querySelectorAll('[data-log] b, [data-log] script').length",
    )
    .await;
    assert_eq!(injected, 0);

    // Every tab of the app's page, and the project with an app, hard-loaded.
    let project_path = find(c, "#app-project-link").await.attr("href").await.unwrap().unwrap();
    let mut routes: Vec<(String, &str)> = [
        "general",
        "environment",
        "domains",
        "deployments",
        "logs",
        "metrics",
        "advanced",
    ]
    .iter()
    .map(|t| (format!("{app_path}?tab={t}"), "#app-title"))
    .collect();
    routes.push((project_path, "#project-title"));
    hard_load_all(c, base, &routes).await;
    // And at phone width.
    c.set_window_size(390, 844).await.unwrap();
    hard_load_all(c, base, &routes).await;
    c.set_window_size(1280, 900).await.unwrap();
    // The Deployments tab, loaded fresh, is alive: its log opens on a click.
    c.goto(&format!("{base}{app_path}?tab=deployments")).await.unwrap();
    find(c, "html[data-hydrated=true]").await;
    click(c, "#deployments [data-show-log]").await;
    wait_text_long(c, "[data-log]", "==> deployment running", Duration::from_secs(20)).await;
    // The runtime log's "Since" filter works in the browser (time comes from JavaScript).
    c.goto(&format!("{base}{app_path}?tab=logs")).await.unwrap();
    find(c, "html[data-hydrated=true]").await;
    click(c, "#log-since option[value='300']").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let errors = console_errors(c).await;
    assert!(errors.is_empty(), "choosing \"Since\": {errors:#?}");
    find(c, "[data-log]").await;
    // The Metrics tab draws the app's figures, and new points arrive while it is open.
    c.goto(&format!("{base}{app_path}?tab=metrics")).await.unwrap();
    find(c, "html[data-hydrated=true]").await;
    live_points(c, "#metrics [data-chart=memory]").await;
    let latest = find(c, "[data-chart=memory] [data-latest]").await.text().await.unwrap();
    assert!(latest.contains("iB of "), "memory and its limit: {latest}");
    // How often its container was restarted or OOM-killed in the window.
    wait_text(c, "#metrics [data-restarts]", "restarted 0 times, OOM-killed 0 times").await;
    let errors = console_errors(c).await;
    assert!(errors.is_empty(), "the Metrics tab: {errors:#?}");

    // The app itself, through Traefik, by its generated domain (*.localhost is
    // loopback), as the Domains tab shows it.
    // The webhook URLs are whole addresses, with a copy button.
    click(c, "[data-tab=general]").await;
    wait_text(c, "#deploy-url", &format!("{base}/api/webhooks/deploy/")).await;
    click(c, "[data-tab=domains]").await;
    let host = find(c, "#domains li[data-generated]")
        .await
        .attr("data-domain")
        .await
        .unwrap()
        .unwrap();
    assert!(
        host.starts_with(&format!("{name}-")) && host.ends_with(".localhost"),
        "{host}"
    );
    // The link shows where it is really served: the proxy's port included.
    let url = format!("http://{host}:{proxy_port}/");
    let href = find(c, "#domains li[data-generated] a")
        .await
        .attr("href")
        .await
        .unwrap();
    assert_eq!(href.as_deref(), Some(url.as_str()));
    let header = find(c, "#app-domain").await.attr("href").await.unwrap();
    assert_eq!(header.as_deref(), Some(url.as_str()));
    // The domain's proxy settings: a response header, saved and shown again,
    // and routed at once (the app still answers through its domain).
    find(c, "#domains li[data-generated] details summary")
        .await
        .click()
        .await
        .unwrap();
    fill(c, "#domain-0-headers", "X-Team: blue").await;
    c.find(Locator::XPath(
        "//li[@data-generated]//button[contains(., 'Save domain settings')]",
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    let start = Instant::now();
    loop {
        let v = js(c, "return document.getElementById('domain-0-headers')?.value || ''").await;
        if v.as_str().is_some_and(|v| v.contains("X-Team: blue")) && v.as_str().is_some_and(|v| v.ends_with('\n')) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the saved header is not shown: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Traefik reloads its files within moments.
    let start = Instant::now();
    loop {
        let through = engine::http1::request("127.0.0.1", proxy_port, "GET", &host, "/", Duration::from_secs(10))
            .await
            .unwrap();
        if (through.status, through.header("x-team")) == (200, Some("blue")) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the header is not served: {}",
            through.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A second domain, then removed from its row (the list's last): the
    // focus goes to the same button in the row before, not to the page's top.
    fill(c, "#add-domain input[name=host]", "extra.localhost").await;
    click(c, "#add-domain button[type=submit]").await;
    wait_text(c, "#domains", "extra.localhost").await;
    click(c, "[data-remove-domain='extra.localhost']").await;
    c.accept_alert().await.expect("the removal asks first");
    find(c, "#domains:not(:has([data-domain='extra.localhost']))").await;
    focus_kept(c, &format!("[data-remove-domain='{host}']")).await;
    c.goto(&url).await.unwrap();
    wait_text(c, "body", "hello from git").await;
    screenshot(c, "app-through-domain.png").await;

    // What the app itself made the console say (busybox httpd has no
    // favicon) is not Berth's: read and set aside before Berth's pages again.
    let _ = console_errors(c).await;

    // The container stopped behind Berth's back (as `docker stop` would): the
    // reconciler starts it again, the app answers again, and the app's page,
    // hard-loaded, shows the repair in its Runtime panel.
    let listed = tokio::process::Command::new("docker")
        .args(["ps", "-q", "--filter", &format!("name=-{name}-")])
        .output()
        .await
        .expect("docker ps");
    let live = String::from_utf8(listed.stdout).unwrap().trim().to_owned();
    assert!(!live.is_empty() && !live.contains('\n'), "one live container: {live:?}");
    let stopped = tokio::process::Command::new("docker")
        .args(["stop", "-t", "0", &live])
        .status()
        .await
        .expect("docker stop");
    assert!(stopped.success());
    let start = Instant::now();
    loop {
        c.goto(&format!("{base}{app_path}")).await.unwrap();
        find(c, "html[data-hydrated=true]").await;
        let shown = js(c, "return document.getElementById('repair-history')?.textContent || ''").await;
        if shown
            .as_str()
            .is_some_and(|t| t.contains("started the container again"))
        {
            // Started again, it runs: nothing is said to be down any more.
            let problem = js(
                c,
                "return document.getElementById('runtime-problem')?.textContent || ''",
            )
            .await;
            assert_eq!(problem, "", "a repaired app is not \"down\"");
            // Its time, for people and (in `datetime`) for machines.
            let when = js(
                c,
                "const t = document.querySelector('#repair-history time'); return [t.textContent, t.getAttribute('datetime')]",
            )
            .await;
            let (shown, machine) = (when[0].as_str().unwrap(), when[1].as_str().unwrap());
            assert!(shown.ends_with(" UTC") && shown.len() == 23, "{when}");
            assert_eq!(machine, format!("{}T{}Z", &shown[..10], &shown[11..19]), "{when}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "the repair is not shown: {shown}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    screenshot(c, "app-repaired.png").await;
    let errors = console_errors(c).await;
    assert!(errors.is_empty(), "the app page with a repair: {errors:#?}");
    let start = Instant::now();
    loop {
        let through = engine::http1::request("127.0.0.1", proxy_port, "GET", &host, "/", Duration::from_secs(10)).await;
        if through.is_ok_and(|r| r.status == 200) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the repaired app does not answer"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The Metrics tab counts that restart and marks it on the charts, with
    // its time.
    c.goto(&format!("{base}{app_path}?tab=metrics")).await.unwrap();
    find(c, "html[data-hydrated=true]").await;
    wait_text(c, "#metrics [data-restarts]", "restarted 1 time, OOM-killed 0 times").await;
    wait_text(c, "#metrics [data-restarts]", "Marked on the charts").await;
    let mark = js(
        c,
        "return document.querySelector('#metrics [data-chart=memory] [data-mark=restart] title')?.textContent || ''",
    )
    .await;
    assert!(
        mark.as_str()
            .is_some_and(|t| t.starts_with("Restarted at ") && t.ends_with(" UTC")),
        "the restart's mark: {mark}"
    );
    screenshot(c, "app-metrics-restart.png").await;
    let errors = console_errors(c).await;
    assert!(errors.is_empty(), "the Metrics tab with a restart: {errors:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_from_git_deploys_with_a_live_log_in_a_real_browser() {
    let env = DeployEnv::new().await;
    let (_berth, port, token) = start_berth_for(&env).await;
    let repo = GitRepo::new();
    repo.commit(
        &[
            (
                "Dockerfile",
                &httpd_dockerfile().replacen("\n", "\nRUN echo '<b>not bold</b>'\n", 1),
            ),
            ("index.html", "<p>hello from git</p>\n"),
        ],
        "first",
    );
    let (_driver, client) = start_browser().await;
    let base = format!("http://127.0.0.1:{port}");
    let name = format!("shop-{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
    let outcome = tokio::spawn({
        let c = client.clone();
        let url = repo.url();
        let proxy = env.http_port();
        async move { deploy_journey(&c, &base, &token, &url, &name, proxy).await }
    })
    .await;
    if outcome.is_err() {
        let _ = screenshot(&client, "deploy-failure.png").await;
    }
    client.close().await.unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Adds an S3 destination on the open backups tab, the test S3 server's
/// bucket under `prefix`, and waits for its row.
async fn add_destination(c: &Client, s3: &TestS3, name: &str, prefix: &str) {
    fill(c, "#add-destination input[name=name]", name).await;
    fill(c, "#add-destination input[name=endpoint]", &s3.url).await;
    fill(c, "#add-destination input[name=bucket]", &s3.bucket).await;
    fill(c, "#add-destination input[name=prefix]", prefix).await;
    fill(c, "#add-destination input[name=access_key]", &s3.access_key).await;
    fill(c, "#add-destination input[name=secret_key]", &s3.secret_key).await;
    click(c, "#add-destination-submit").await;
    wait_text(c, "#destinations", name).await;
}

async fn database_journey(c: &Client, base: &str, token: &str, s3: &TestS3) {
    onboard_into_project(c, base, token).await;

    // A PostgreSQL service (the engine's default image comes from configuration).
    click(c, "#new-service summary").await;
    assert!(!displayed(c, "#field-persistence").await, "Redis only");
    fill(c, "#create-service input[name=name]", "shop-db").await;
    click(c, "#create-service-submit").await;
    wait_text(c, "#service-title", "shop-db").await;
    c.wait()
        .at_most(Duration::from_secs(90))
        .for_element(Locator::Css("#service-ready[data-ready=true]"))
        .await
        .expect("the service became ready");
    wait_text(c, "#internal-url", "postgres://app:********@shop-db:5432/app").await;
    click(c, "#reveal-password").await;
    let start = Instant::now();
    let revealed = loop {
        let shown = find(c, "#service-password").await.text().await.unwrap();
        if shown != "********" {
            break shown;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the password was never revealed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        revealed.len(),
        32,
        "the generated password is shown on request: {revealed:?}"
    );
    wait_text(
        c,
        "#internal-url",
        &format!("postgres://app:{revealed}@shop-db:5432/app"),
    )
    .await;

    // An S3 destination, tested, then a backup that shows in the history.
    click(c, "[data-tab=backups]").await;
    add_destination(c, s3, "Local S3", "berth").await;
    focus_kept(c, "#add-destination-submit").await;
    find(c, "[data-test-destination='Local S3']")
        .await
        .click()
        .await
        .unwrap();
    wait_text_long(c, "#destination-test-ok", "Connected", Duration::from_secs(20)).await;
    click(c, "#run-backup-submit").await;
    wait_text_long(c, "#backup-history", "succeeded", Duration::from_secs(90)).await;
    focus_kept(c, "#run-backup-submit").await;
    wait_text(c, "#backup-history", "berth/shop-db/").await;
    // A nightly schedule to that destination, then removed (asked first):
    // the list is empty, and the focus goes to the section's heading.
    click(c, "#add-schedule button[type=submit]").await;
    wait_text(c, "#schedules", "0 3 * * *").await;
    focus_kept(c, "#add-schedule button[type=submit]").await;
    click(c, "[data-remove-schedule='0 3 * * *']").await;
    c.accept_alert().await.expect("the removal asks first");
    find(c, "#schedules:not(:has(li))").await;
    focus_kept(c, "section:has(#schedules) > h2").await;
    // A second destination, then removed from its row (asked first): the
    // focus goes to the same button in the row before.
    add_destination(c, s3, "Spare S3", "spare").await;
    click(c, "[data-remove-destination='Spare S3']").await;
    c.accept_alert().await.expect("the removal asks first");
    find(c, "#destinations:not(:has([data-destination='Spare S3']))").await;
    focus_kept(c, "[data-remove-destination='Local S3']").await;
    js(c, "document.querySelector('#backup-history').scrollIntoView()").await;
    screenshot(c, "database-backup.png").await;
    let keys = s3.keys().await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(
        keys[0].starts_with("berth/shop-db/") && keys[0].ends_with(".pgdump.gz"),
        "{keys:?}"
    );

    // The container's own log, live.
    click(c, "[data-tab=logs]").await;
    wait_text_long(c, "[data-log]", "ready to accept connections", Duration::from_secs(20)).await;

    // The database's figures, and new ones arriving while the tab is open.
    click(c, "[data-tab=metrics]").await;
    live_points(c, "#metrics [data-chart=memory]").await;
    let latest = find(c, "#metrics [data-chart=memory] [data-latest]")
        .await
        .text()
        .await
        .unwrap();
    assert!(latest.contains("iB"), "the database's memory: {latest}");
    find(c, "#metrics [data-restarts]").await;
    let errors = console_errors(c).await;
    assert!(errors.is_empty(), "the database's Metrics tab: {errors:#?}");

    // Every tab of the service's page, hard-loaded.
    let service_path = c.current_url().await.unwrap().path().to_owned();
    let routes: Vec<(String, &str)> = ["general", "backups", "logs", "metrics", "advanced"]
        .iter()
        .map(|t| (format!("{service_path}?tab={t}"), "#service-title"))
        .collect();
    hard_load_all(c, base, &routes).await;
    c.set_window_size(390, 844).await.unwrap();
    hard_load_all(c, base, &routes).await;
    c.set_window_size(1280, 900).await.unwrap();

    // The Server page (Ada administers the instance): the machine and Traefik,
    // live; reached from the sidebar.
    click(c, "nav a[href='/server']").await;
    wait_path(c, "/server").await;
    live_points(c, "#host-metrics [data-chart=cpu]").await;
    find(c, "#host-metrics [data-chart=disk]").await;
    // Docker's data root too, with its size as the limit.
    let docker = find(c, "#host-metrics [data-chart=docker-disk] [data-latest]")
        .await
        .text()
        .await
        .unwrap();
    assert!(docker.contains("iB of "), "Docker's data root: {docker}");
    live_points(c, "#proxy-metrics [data-chart=memory]").await;
    assert!(
        c.find(Locator::Css("#host-metrics [data-restarts]")).await.is_err(),
        "the machine has no container events to count"
    );
    // Another window: a day (points per minute; none may be rolled up yet).
    find(c, "#host-metrics-window option[value=day]")
        .await
        .click()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let errors = console_errors(c).await;
    assert!(errors.is_empty(), "the Server page: {errors:#?}");
    screenshot(c, "server.png").await;
    hard_load_all(c, base, &[("/server".into(), "#server-title")]).await;
}

/// Waits for the chart `css` to have points, then for more to arrive on the
/// open page (pushed by the server's `metrics` events: nothing polls).
async fn live_points(c: &Client, css: &str) {
    let script = format!("const f = document.querySelector('{css}'); return f ? Number(f.dataset.points) : 0");
    let points = || async { js(c, &script).await.as_f64().unwrap_or(0.0) };
    let start = Instant::now();
    let first = loop {
        let n = points().await;
        if n > 0.0 {
            break n;
        }
        assert!(start.elapsed() < Duration::from_secs(40), "no points on {css}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let start = Instant::now();
    while points().await <= first {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no new points arrived on {css}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Settings' notification channels: a signed webhook added (its secret shown
/// once), a test sent, and its delivery turning "succeeded" on the open page.
/// Adds an alert rule on the form's first figure (CPU), telling the first
/// channel.
async fn add_cpu_rule(c: &Client, name: &str, threshold: &str) {
    fill(c, "#add-rule input[name=name]", name).await;
    fill(c, "#add-rule input[name=threshold]", threshold).await;
    click(c, "#rule-channel-0").await;
    click(c, "#add-rule-submit").await;
}

async fn notifications_journey(c: &Client, base: &str) {
    let hook = engine::testing::receiver::Receiver::start(vec![]).await;
    c.goto(&format!("{base}/settings")).await.unwrap();
    find(c, "html[data-hydrated=true]").await;
    fill(c, "#add-channel input[name=name]", "Ops hook").await;
    find(c, "#field-kind option[value=webhook]")
        .await
        .click()
        .await
        .unwrap();
    fill(c, "#add-channel input[name=url]", &hook.url).await;
    click(c, "#new-event-backup_succeeded").await;
    click(c, "#add-channel-submit").await;
    wait_text(c, "#channels", "Ops hook").await;
    focus_kept(c, "#add-channel-submit").await;
    wait_text(c, "#channels", "Signed webhook · 127.0.0.1").await;
    let secret = find(c, "#channel-secret").await.text().await.unwrap();
    assert!(secret.starts_with("whsec_"), "{secret:?}");
    let chosen = find(c, "#channel0-event-backup_succeeded")
        .await
        .prop("checked")
        .await
        .unwrap();
    assert_eq!(chosen.as_deref(), Some("true"), "the chosen event is saved");
    click(c, "[data-test-channel='Ops hook']").await;
    // Pushed to the open page as the delivery moves: no reload.
    c.wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css("#deliveries [data-status=succeeded]"))
        .await
        .expect("the test delivery shows as succeeded");
    let got = hook.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(got[0].json()["title"], "Test notification from Berth");
    assert!(got[0]
        .header("x-berth-signature")
        .is_some_and(|s| s.starts_with("sha256=")));

    // Edited in place: a refused address is named in the row, which stays
    // open; then a new name, receiver and signing secret.
    // The new receiver refuses its first message (404): it fails, once.
    let moved = engine::testing::receiver::Receiver::start(vec![404]).await;
    click(c, "[data-edit-channel='Ops hook'] summary").await;
    fill(c, "#channel-edit-0 input[name=url]", "ftp://example.com/hook").await;
    click(c, "#channel-edit-0 button[type=submit]").await;
    wait_text(c, "#channel-edit-0 [data-error-for=url]", "https://").await;
    focus_kept(c, "#channel-edit-0 button[type=submit]").await;
    only_refusals(c).await;
    fill(c, "#channel-edit-0 input[name=name]", "Ops receiver").await;
    fill(c, "#channel-edit-0 input[name=url]", &moved.url).await;
    click(c, "#channel0-edit-new-secret").await;
    click(c, "#channel-edit-0 button[type=submit]").await;
    wait_text(c, "#channels", "Ops receiver").await;
    // Saved, the row's settings fold away: the focus is on what opens them.
    focus_kept(c, "[data-edit-channel='Ops receiver'] > summary").await;
    let start = Instant::now();
    let rotated = loop {
        let shown = find(c, "#channel-secret").await.text().await.unwrap();
        if shown != secret {
            break shown;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no new signing secret was shown"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(rotated.starts_with("whsec_"), "{rotated:?}");
    click(c, "[data-test-channel='Ops receiver']").await;
    moved.wait_for(1, Duration::from_secs(30)).await;
    // Sent again from its row: a new delivery, which succeeds.
    c.wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css("#deliveries [data-status=failed]"))
        .await
        .expect("the refused delivery shows as failed");
    click(c, "#deliveries [data-resend]").await;
    let got = moved.wait_for(2, Duration::from_secs(30)).await;
    assert_eq!(got[1].json()["title"], "Test notification from Berth");
    assert_eq!(got[1].answered, 200);
    assert_eq!(hook.received().len(), 1, "the old receiver is not told again");

    // An alert rule telling it, then its threshold changed in place.
    add_cpu_rule(c, "CPU high", "90").await;
    wait_text(c, "#rules", "above 90 % for 300 s → Ops receiver").await;
    focus_kept(c, "#add-rule-submit").await;
    click(c, "[data-edit-rule='CPU high'] summary").await;
    fill(c, "#rule-edit-0 input[name=threshold]", "95").await;
    fill(c, "#rule-edit-0 input[name=for_secs]", "120").await;
    click(c, "#rule-edit-0 button[type=submit]").await;
    wait_text(c, "#rules", "above 95 % for 120 s → Ops receiver").await;
    focus_kept(c, "[data-edit-rule='CPU high'] > summary").await;
    // A second rule, removed from its row (the list's last): the focus goes
    // to the same button in the row before, not to the page's top.
    add_cpu_rule(c, "CPU very high", "99").await;
    wait_text(c, "#rules", "CPU very high").await;
    click(c, "[data-remove-rule='CPU very high']").await;
    c.accept_alert().await.expect("the removal asks first");
    // The rule's row goes.
    find(c, "#rules:not(:has([data-rule='CPU very high']))").await;
    focus_kept(c, "[data-remove-rule='CPU high']").await;
    // The only rule left, removed: its list goes, and the focus goes to the
    // heading of the section the list was in.
    click(c, "[data-remove-rule='CPU high']").await;
    c.accept_alert().await.expect("the removal asks first");
    find(c, "#notifications:not(:has(#rules))").await;
    focus_kept(c, "#notifications > h2").await;

    let errors = console_errors(c).await;
    assert!(errors.is_empty(), "notifications: {errors:#?}");
    screenshot(c, "notifications.png").await;
    hard_load_all(c, base, &[("/settings".into(), "#notifications")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_service_is_backed_up_to_s3_from_a_real_browser() {
    let env = DeployEnv::new().await;
    let (_berth, port, token) = start_berth_for(&env).await;
    let s3 = TestS3::new().await;
    let (_driver, client) = start_browser().await;
    let base = format!("http://127.0.0.1:{port}");
    let outcome = tokio::spawn({
        let c = client.clone();
        async move {
            database_journey(&c, &base, &token, &s3).await;
            notifications_journey(&c, &base).await;
        }
    })
    .await;
    if outcome.is_err() {
        let _ = screenshot(&client, "database-failure.png").await;
    }
    client.close().await.unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// A lazy route whose chunk cannot be loaded (here it is gone, as when an
/// upgrade replaced the files under an open page) reloads the page the user is
/// on, rather than leaving a page whose WASM has stopped.
#[tokio::test]
async fn a_chunk_that_cannot_load_reloads_the_page() {
    let site = std::env::temp_dir().join(format!("berth-site-{}", uuid::Uuid::new_v4().simple()));
    // `cp -a` keeps the pkg/<build id> link.
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(site_root())
        .arg(&site)
        .status()
        .unwrap();
    assert!(copied.success());
    let mut removed = 0;
    for entry in std::fs::read_dir(site.join("pkg")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("split___settings_route_view_") {
            std::fs::remove_file(&path).unwrap();
            removed += 1;
        }
    }
    assert!(removed > 0, "the settings page is a lazy route with a chunk of its own");
    let berth = start_berth_with_site(site.clone()).await;
    let (_driver, client) = start_browser().await;
    let base = format!("http://127.0.0.1:{}", berth.port);
    let outcome = tokio::spawn({
        let c = client.clone();
        let token = berth.token.clone();
        async move {
            onboard(&c, &base, &token).await;
            find(&c, "html[data-hydrated=true]").await;
            js(&c, "window.__berthMarker = 5; return null").await;
            c.find(Locator::LinkText("Settings"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            let start = Instant::now();
            while js(&c, "return window.__berthMarker === 5").await == true {
                assert!(start.elapsed() < Duration::from_secs(20), "the page did not reload");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let stamp = js(&c, "return sessionStorage.getItem('berth-chunk-reload')").await;
            assert!(stamp.is_string(), "the loader reloaded the page: {stamp}");
            // The router changes the address once the new page has loaded, so
            // the reload is of the page the user was on: alive again (hydrated,
            // with the current release's bundle), not the dead page of before.
            wait_path(&c, "/projects").await;
            find(&c, "html[data-hydrated=true]").await;
            find(&c, "#create-project").await;
        }
    })
    .await;
    client.close().await.unwrap();
    let _ = std::fs::remove_dir_all(&site);
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// The current code of a two-factor key as the page showed it (`step_offset`
/// 1: the next step's, which the server's one-step drift allowance accepts).
fn totp(secret_b32: &str, step_offset: u64) -> String {
    let secret = engine::twofactor::from_base32(secret_b32).expect("base32");
    format!(
        "{:06}",
        engine::twofactor::code_at(&secret, engine::twofactor::step_now() + step_offset)
    )
}

/// Drains the console after a code the test gave wrong on purpose: only the
/// refusal's 422 may be there.
async fn only_refusals(c: &Client) {
    let errors = console_errors(c).await;
    assert!(
        errors.iter().all(|e| e.contains("status of 422")),
        "besides the refused code: {errors:#?}"
    );
}

async fn sign_in_with_password(c: &Client, base: &str) {
    c.goto(&format!("{base}/login")).await.unwrap();
    find(c, "html[data-hydrated=true]").await;
    fill(c, "#field-email", "ada@example.com").await;
    fill(c, "#field-password", "correct horse battery").await;
    click(c, "#login-submit").await;
}

#[tokio::test]
async fn two_factor_sign_in_is_set_up_and_used_in_a_real_browser() {
    let berth = start_berth().await;
    let (_driver, c) = start_browser().await;
    let base = format!("http://127.0.0.1:{}", berth.port);
    onboard(&c, &base, &berth.token).await;

    // Enrol in Settings: a QR code and the key to type, confirmed by a code.
    c.goto(&format!("{base}/settings")).await.unwrap();
    find(&c, "html[data-hydrated=true]").await;
    wait_text(&c, "#two-factor-state", "Off").await;
    find(&c, "#begin-2fa").await.click().await.unwrap();
    find(&c, "#enrolment svg").await;
    let secret = find(&c, "#totp-secret").await.text().await.unwrap();
    assert_eq!(secret.len(), 32, "{secret}");
    let errors = console_errors(&c).await;
    assert!(errors.is_empty(), "enrolment: {errors:#?}");
    let violations = accessibility_violations(&c).await;
    assert!(violations.is_empty(), "enrolment: accessibility: {violations:#?}");
    fill(&c, "#field-code", "000000").await;
    find(&c, "#confirm-2fa").await.click().await.unwrap();
    wait_text(&c, "#two-factor [data-error-for=code]", "not right").await;
    only_refusals(&c).await;
    fill(&c, "#field-code", &totp(&secret, 0)).await;
    find(&c, "#confirm-2fa").await.click().await.unwrap();
    find(&c, "#recovery-codes li").await;
    let codes = js(
        &c,
        "return [...document.querySelectorAll('#recovery-codes li')].map(li => li.textContent)",
    )
    .await;
    let codes: Vec<String> = serde_json::from_value(codes).unwrap();
    assert_eq!(codes.len(), 10);
    wait_text(&c, "#two-factor-state", "On").await;

    // Sign out, then in: the password, then a code; a wrong one is refused.
    find(&c, "#logout").await.click().await.unwrap();
    wait_path(&c, "/login").await;
    sign_in_with_password(&c, &base).await;
    find(&c, "#code-form").await;
    let violations = accessibility_violations(&c).await;
    assert!(violations.is_empty(), "code step: accessibility: {violations:#?}");
    fill(&c, "#field-code", "000000").await;
    find(&c, "#code-submit").await.click().await.unwrap();
    wait_text(&c, "#code-form", "not right").await;
    only_refusals(&c).await;
    // A recovery code works, once.
    fill(&c, "#field-code", &codes[0]).await;
    find(&c, "#code-submit").await.click().await.unwrap();
    wait_path(&c, "/projects").await;
    wait_text(&c, "#whoami", "ada@example.com").await;
    find(&c, "#logout").await.click().await.unwrap();
    wait_path(&c, "/login").await;
    sign_in_with_password(&c, &base).await;
    find(&c, "#code-form").await;
    fill(&c, "#field-code", &codes[0]).await;
    find(&c, "#code-submit").await.click().await.unwrap();
    wait_text(&c, "#code-form", "not right").await;
    only_refusals(&c).await;
    // The app's code (the next step's: the enrolment used this one).
    fill(&c, "#field-code", &totp(&secret, 1)).await;
    find(&c, "#code-submit").await.click().await.unwrap();
    wait_path(&c, "/projects").await;
    let errors = console_errors(&c).await;
    assert!(errors.is_empty(), "after sign-in: {errors:#?}");
}

#[tokio::test]
async fn a_member_is_limited_to_one_project_as_a_viewer_in_a_real_browser() {
    let berth = start_berth().await;
    let (_driver, c) = start_browser().await;
    let base = format!("http://127.0.0.1:{}", berth.port);
    onboard_into_project(&c, &base, &berth.token).await;
    // A database in Shop, whose backups tab Bob will read.
    click(&c, "#new-service summary").await;
    fill(&c, "#create-service input[name=name]", "shop-db").await;
    click(&c, "#create-service-submit").await;
    wait_text(&c, "#service-title", "shop-db").await;
    let service = c.current_url().await.unwrap().path().to_owned();
    c.goto(&format!("{base}/projects")).await.unwrap();
    find(&c, "html[data-hydrated=true]").await;
    fill(&c, "#create-project input[name=name]", "Back office").await;
    find(&c, "#create-project-submit").await.click().await.unwrap();
    wait_text(&c, "#project-list", "Back office").await;

    // Ada invites Bob, who joins as a member.
    c.goto(&format!("{base}/settings")).await.unwrap();
    find(&c, "html[data-hydrated=true]").await;
    find(&c, "#create-invite").await.click().await.unwrap();
    let link = find(&c, "#invite-link")
        .await
        .prop("value")
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(link.contains("/invite/"), "{link}");
    find(&c, "#logout").await.click().await.unwrap();
    wait_path(&c, "/login").await;
    c.goto(&link).await.unwrap();
    find(&c, "html[data-hydrated=true]").await;
    fill(&c, "#field-name", "Bob").await;
    fill(&c, "#field-email", "bob@example.com").await;
    fill(&c, "#field-password", "long enough pw").await;
    find(&c, "#accept-invite").await.click().await.unwrap();
    wait_path(&c, "/projects").await;
    wait_text(&c, "#project-list", "Back office").await;
    find(&c, "#logout").await.click().await.unwrap();
    wait_path(&c, "/login").await;

    // Ada limits him to Shop as a viewer (members by name: Ada, Bob; projects:
    // Back office, Shop).
    sign_in_with_password(&c, &base).await;
    wait_path(&c, "/projects").await;
    c.goto(&format!("{base}/settings")).await.unwrap();
    find(&c, "html[data-hydrated=true]").await;
    wait_text(&c, "[data-reach='1']", "All projects").await;
    find(&c, "#members li:nth-child(2) summary")
        .await
        .click()
        .await
        .unwrap();
    find(&c, "#access-1-limited").await.click().await.unwrap();
    find(&c, "#access-1-role-1")
        .await
        .select_by_value("viewer")
        .await
        .unwrap();
    let violations = accessibility_violations(&c).await;
    assert!(violations.is_empty(), "project access: accessibility: {violations:#?}");
    find(&c, "#access-1 button[type=submit]").await.click().await.unwrap();
    wait_text(&c, "[data-reach='1']", "1 project(s)").await;
    // The list was read again: the panel stays open with the saved role, and
    // the keyboard's place is its Save button.
    let open = js(
        &c,
        "return document.querySelector('#members li:nth-child(2) details').open",
    )
    .await;
    assert_eq!(open, true, "the project access panel folded after the save");
    let role = js(&c, "return document.querySelector('#access-1-role-1').value").await;
    assert_eq!(role, "viewer");
    focus_kept(&c, "#access-1 button[type=submit]").await;
    let errors = console_errors(&c).await;
    assert!(errors.is_empty(), "setting access: {errors:#?}");
    find(&c, "#logout").await.click().await.unwrap();
    wait_path(&c, "/login").await;

    // Bob sees Shop only, without the forms a viewer cannot use.
    c.goto(&format!("{base}/login")).await.unwrap();
    find(&c, "html[data-hydrated=true]").await;
    fill(&c, "#field-email", "bob@example.com").await;
    fill(&c, "#field-password", "long enough pw").await;
    find(&c, "#login-submit").await.click().await.unwrap();
    wait_path(&c, "/projects").await;
    wait_text(&c, "#project-list", "Shop").await;
    let listed = find(&c, "#project-list").await.text().await.unwrap();
    assert!(!listed.contains("Back office"), "{listed}");
    find(&c, "#project-list a").await.click().await.unwrap();
    wait_text(&c, "#project-title", "Shop").await;
    let project = c.current_url().await.unwrap().path().to_owned();
    hard_load(&c, &format!("{base}{project}"), "#project-title", false).await;
    let forms = present(&c, &["#new-app", "#new-service", "#add-environment"]).await;
    assert!(forms.is_empty(), "a viewer is offered no create forms: {forms:?}");
    let errors = console_errors(&c).await;
    assert!(errors.is_empty(), "a viewer's project page: {errors:#?}");
    // The database's backups tab reads: history, no run or restore controls.
    hard_load(&c, &format!("{base}{service}?tab=backups"), "#backups-read-only", false).await;
    let controls = present(&c, &["#run-backup", "#add-schedule", "#restore-form"]).await;
    assert!(
        controls.is_empty(),
        "a viewer is offered no backup controls: {controls:?}"
    );
    // Ada removes Bob (asked first): his row goes, and the focus goes to the
    // same button in the row before, hers.
    find(&c, "#logout").await.click().await.unwrap();
    wait_path(&c, "/login").await;
    sign_in_with_password(&c, &base).await;
    wait_path(&c, "/projects").await;
    c.goto(&format!("{base}/settings")).await.unwrap();
    find(&c, "html[data-hydrated=true]").await;
    click(&c, "[data-remove-member='bob@example.com']").await;
    c.accept_alert().await.expect("the removal asks first");
    find(&c, "#members:not(:has([data-remove-member='bob@example.com']))").await;
    focus_kept(&c, "[data-remove-member='ada@example.com']").await;
    let errors = console_errors(&c).await;
    assert!(errors.is_empty(), "removing a member: {errors:#?}");
}
