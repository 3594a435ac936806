//! What every request handler shares: the Leptos options, the engine (pools) and
//! the server configuration. Built once in `main` (or by a test).

use crate::config::ServerConfig;
use app::api::edge::ServerContext;
use axum::extract::FromRef;
use engine::Engine;
use leptos::config::LeptosOptions;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub ctx: ServerContext,
    pub config: Arc<ServerConfig>,
    /// The `Host` names Berth answers to.
    pub hosts: Arc<crate::hosts::AllowedHosts>,
    /// Open log sockets per user.
    pub sockets: crate::sockets::SocketSlots,
    /// Open status event streams per user.
    pub event_streams: crate::sockets::SocketSlots,
    /// The bundle's build id, when `scripts/build.sh` wrote one: pages load
    /// the bundle from `/pkg/<id>/`, which can be cached for good.
    pub build: Option<Arc<str>>,
    /// Requests seen by this process, for `/metrics`.
    pub recorder: Arc<crate::recorder::Recorder>,
    /// The public `/health` answer, checked at most once a second.
    pub health: Arc<engine::health::Recent>,
    /// Requests worked on at once and waiting (`BERTH_MAX_REQUESTS`, `BERTH_MAX_QUEUED`).
    pub admission: Arc<crate::admission::Admission>,
}

/// The id `scripts/build.sh` writes to `pkg/BUILD` (16 hex digits, from the
/// files' content), if the site has one.
fn build_id(site_root: &str) -> Option<Arc<str>> {
    let id = std::fs::read_to_string(format!("{site_root}/pkg/BUILD")).ok()?;
    let id = id.trim();
    (id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| Arc::from(id))
}

impl AppState {
    pub fn new(engine: Engine, config: ServerConfig) -> Self {
        let build = build_id(&config.site_root);
        let pkg_dir = match &build {
            Some(id) => format!("pkg/{id}"),
            None => "pkg".to_owned(),
        };
        let leptos_options = LeptosOptions::builder()
            .output_name("berth")
            .site_root(config.site_root.clone())
            .site_pkg_dir(pkg_dir)
            .site_addr(config.listen)
            .build();
        let ctx = ServerContext {
            engine,
            secure_cookies: config.secure_cookies(),
            public_url: config.public_url.clone(),
        };
        let admission = crate::admission::Admission::new(config.max_requests, config.max_queued);
        let hosts = crate::hosts::AllowedHosts::new(&config, ctx.engine.deploy.proxy.dashboard_host.as_deref());
        Self {
            leptos_options,
            ctx,
            config: Arc::new(config),
            hosts: Arc::new(hosts),
            sockets: Default::default(),
            event_streams: crate::sockets::SocketSlots::with_limit(crate::sockets::EVENT_STREAMS_PER_USER),
            build,
            recorder: Default::default(),
            health: Default::default(),
            admission,
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.ctx.engine
    }
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}
