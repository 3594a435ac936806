//! One module per page. Pages compose components and call server functions.
//!
//! The pages a first visit meets (sign-in, the project list, the shell) are in
//! the main browser bundle. The others are lazy routes: their code, and the
//! server-function stubs only they call, are split into chunks the browser loads
//! when the route is first opened (and, on a hard load, before hydration, from
//! the preloads the server puts in the page). `docs/BENCHMARKS.md` records the
//! bytes per route.

pub mod app;
pub mod invite;
pub mod login;
pub mod not_found;
pub mod onboarding;
pub mod project;
pub mod projects;
pub mod service;
pub mod settings;

use leptos::prelude::*;
use leptos_router::{lazy_route, LazyRoute};

/// `/apps/:id`, loaded on demand.
pub struct AppRoute;

#[lazy_route]
impl LazyRoute for AppRoute {
    fn data() -> Self {
        AppRoute
    }
    fn view(_this: Self) -> AnyView {
        app::AppPage().into_any()
    }
}

/// `/services/:id`, loaded on demand.
pub struct ServiceRoute;

#[lazy_route]
impl LazyRoute for ServiceRoute {
    fn data() -> Self {
        ServiceRoute
    }
    fn view(_this: Self) -> AnyView {
        service::ServicePage().into_any()
    }
}

/// `/projects/:id`, loaded on demand.
pub struct ProjectRoute;

#[lazy_route]
impl LazyRoute for ProjectRoute {
    fn data() -> Self {
        ProjectRoute
    }
    fn view(_this: Self) -> AnyView {
        project::ProjectPage().into_any()
    }
}

/// `/settings`, loaded on demand.
pub struct SettingsRoute;

#[lazy_route]
impl LazyRoute for SettingsRoute {
    fn data() -> Self {
        SettingsRoute
    }
    fn view(_this: Self) -> AnyView {
        settings::SettingsPage().into_any()
    }
}

/// `/onboarding`, met once per instance.
pub struct OnboardingRoute;

#[lazy_route]
impl LazyRoute for OnboardingRoute {
    fn data() -> Self {
        OnboardingRoute
    }
    fn view(_this: Self) -> AnyView {
        onboarding::OnboardingPage().into_any()
    }
}

/// `/invite/:token`, met once per member.
pub struct InviteRoute;

#[lazy_route]
impl LazyRoute for InviteRoute {
    fn data() -> Self {
        InviteRoute
    }
    fn view(_this: Self) -> AnyView {
        invite::InvitePage().into_any()
    }
}

/// Loads the application and database pages' code in the background, from a
/// page that links to them. Navigation is then instant, and it does not depend
/// on a fetch at the moment the user creates an app or a database, when the
/// server may be creating Docker networks: a browser on the same host sees its
/// network change and aborts requests in flight, and a lazy route whose chunk
/// fails to load cannot recover (the split loader's failure is a panic).
pub fn preload_detail_routes() {
    Effect::new(|_| {
        leptos::task::spawn_local(async {
            <AppRoute as LazyRoute>::preload().await;
            <ServiceRoute as LazyRoute>::preload().await;
        });
    });
}
