//! The router: health, Leptos pages and server functions (with the engine in
//! context), the REST API, static files, and the middleware stack around all of it.

use crate::middleware::{allowed_host, bounded_body, bundle_caching, request_context, same_origin, security_headers};
use crate::routes::{health, health_details};
use crate::state::AppState;
use app::{shell, App};
use axum::http::{HeaderName, Request};
use axum::routing::{get, post};
use axum::Router;
use leptos::prelude::provide_context;
use leptos_axum::{generate_route_list, AxumRouteListing, LeptosRoutes};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::services::ServeDir;
use tower_http::trace::TraceLayer;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A request path as logs show it: bearer secrets that travel in paths (deploy
/// tokens, invite tokens) replaced, so no log line can be replayed as one.
pub fn logged_path(path: &str) -> std::borrow::Cow<'_, str> {
    for prefix in ["/api/webhooks/deploy/", "/invite/"] {
        if path.starts_with(prefix) && path.len() > prefix.len() {
            return format!("{prefix}<redacted>").into();
        }
    }
    path.into()
}

/// The routes outside Leptos (server functions and pages are listed by their
/// own registries): each is in docs/ROLES.md, which `tests/roles.rs` holds.
pub const ROUTES: [&str; 11] = [
    "/health",
    "/api/admin/health",
    "/api/webhooks/github",
    "/api/webhooks/deploy/{token}",
    "/api/ws/deployments/{id}/log",
    "/api/ws/apps/{id}/logs",
    "/api/ws/services/{id}/logs",
    "/api/deployments/{id}/log",
    "/api/events",
    "/metrics",
    "/api/audit/export",
];

/// The Leptos page routes, listed once per process. Listing renders the app
/// with leptos' process-global "do not load resources" flag raised
/// (leptos#4773): a page rendered by another router in that window would wait
/// on a resource that never loads. Production lists once before serving;
/// tests build a router each, in parallel, so they share this one list.
pub fn route_list() -> Vec<AxumRouteListing> {
    static LIST: std::sync::OnceLock<Vec<AxumRouteListing>> = std::sync::OnceLock::new();
    LIST.get_or_init(|| generate_route_list(App)).clone()
}

pub fn router(state: AppState) -> Router {
    let routes = route_list();
    let ctx = state.ctx.clone();
    let options = state.leptos_options.clone();
    let trace = TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
        let id = req
            .headers()
            .get(&REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        tracing::info_span!("request", method = %req.method(), path = %logged_path(req.uri().path()), request.id = %id)
    });
    Router::new()
        .route(ROUTES[0], get(health))
        .route(ROUTES[1], get(health_details))
        .route(ROUTES[2], post(crate::hooks::github))
        .route(ROUTES[3], post(crate::hooks::deploy))
        .route(ROUTES[4], get(crate::live::deployment_log))
        .route(ROUTES[5], get(crate::live::runtime_log))
        .route(ROUTES[6], get(crate::live::service_log))
        .route(ROUTES[7], get(crate::live::download_log))
        .route(ROUTES[8], get(crate::live::events))
        .route(ROUTES[9], get(crate::prometheus::metrics))
        .route(ROUTES[10], get(crate::audit::export))
        // The REST API: its routes are listed by its OpenAPI document.
        .merge(crate::rest::router())
        // The bundle, from the Brotli and gzip copies scripts/build.sh makes:
        // no compression work per request, Brotli to browsers that accept it.
        .nest_service(
            "/pkg",
            Router::new()
                .fallback_service(
                    ServeDir::new(format!("{}/pkg", state.config.site_root))
                        .precompressed_br()
                        .precompressed_gzip(),
                )
                .layer(axum::middleware::from_fn_with_state(
                    state.build.clone(),
                    bundle_caching,
                )),
        )
        .leptos_routes_with_context(
            &state,
            routes,
            move || provide_context(ctx.clone()),
            move || shell(options.clone()),
        )
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .layer(axum::middleware::from_fn_with_state(state.clone(), same_origin))
        // Inside `request_context` (the caller's cell and address are there),
        // outside what it records.
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::audit::trail))
        .layer(axum::middleware::from_fn_with_state(state.clone(), request_context))
        .layer(axum::middleware::from_fn_with_state(state.clone(), allowed_host))
        .layer(axum::middleware::from_fn(security_headers))
        .layer(axum::middleware::from_fn_with_state(state.clone(), bounded_body))
        // Extractors (server functions read their body with one) take what
        // `bounded_body` let through: it holds each path to its own limit.
        .layer(axum::extract::DefaultBodyLimit::max(
            crate::middleware::UPLOAD_BODY_LIMIT,
        ))
        // The largest limit any path has; `bounded_body` holds each path to its own.
        .layer(RequestBodyLimitLayer::new(
            state.config.body_limit.max(crate::middleware::UPLOAD_BODY_LIMIT),
        ))
        // Inside the trace and the timing, so a request's wait for a turn is
        // in its logged and measured time, and a 503 is logged and counted.
        .layer(axum::middleware::from_fn_with_state(
            state.admission.clone(),
            crate::admission::admit,
        ))
        .layer(trace)
        // Outermost of the per-route layers: the whole answer is timed, and
        // the route's pattern is known (axum has matched it by then).
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::prometheus::record,
        ))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state)
}
