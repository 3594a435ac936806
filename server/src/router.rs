//! The router: health, Leptos pages and server functions (with the engine in
//! context), static files, and the middleware stack around all of it.

use crate::middleware::{request_context, same_origin};
use crate::routes::health;
use crate::state::AppState;
use app::{shell, App};
use axum::http::{HeaderName, Request};
use axum::routing::{get, post};
use axum::Router;
use leptos::prelude::provide_context;
use leptos_axum::{generate_route_list, LeptosRoutes};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::services::ServeDir;
use tower_http::trace::TraceLayer;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn router(state: AppState) -> Router {
    let routes = generate_route_list(App);
    let ctx = state.ctx.clone();
    let options = state.leptos_options.clone();
    let trace = TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
        let id = req
            .headers()
            .get(&REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request.id = %id)
    });
    Router::new()
        .route("/health", get(health))
        .route("/api/webhooks/github", post(crate::hooks::github))
        .route("/api/webhooks/deploy/{token}", post(crate::hooks::deploy))
        .route("/api/ws/deployments/{id}/log", get(crate::live::deployment_log))
        .route("/api/ws/apps/{id}/logs", get(crate::live::runtime_log))
        .route("/api/ws/services/{id}/logs", get(crate::live::service_log))
        .route("/api/deployments/{id}/log", get(crate::live::download_log))
        // The bundle, from the gzip copies scripts/build.sh makes: no compression
        // work per request, and a 1.2 MB module travels as 0.4 MB.
        .nest_service(
            "/pkg",
            ServeDir::new(format!("{}/pkg", state.config.site_root)).precompressed_gzip(),
        )
        .leptos_routes_with_context(
            &state,
            routes,
            move || provide_context(ctx.clone()),
            move || shell(options.clone()),
        )
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .layer(axum::middleware::from_fn_with_state(state.clone(), same_origin))
        .layer(axum::middleware::from_fn_with_state(state.clone(), request_context))
        .layer(RequestBodyLimitLayer::new(state.config.body_limit))
        .layer(trace)
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state)
}
