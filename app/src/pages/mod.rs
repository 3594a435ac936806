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
pub mod server;
pub mod service;
pub mod settings;

use leptos::prelude::*;
use leptos_router::{lazy_route, LazyRoute};

/// A page as a lazy route: `data` makes nothing (each page makes its own
/// resources in its body, as the hydration rules in docs/ARCHITECTURE.md
/// require), `view` renders the page.
macro_rules! lazy_page {
    ($(#[$doc:meta])* $route:ident => $page:path) => {
        $(#[$doc])*
        pub struct $route;

        #[lazy_route]
        impl LazyRoute for $route {
            fn data() -> Self {
                $route
            }
            fn view(_this: Self) -> AnyView {
                $page().into_any()
            }
        }
    };
}

lazy_page!(/// `/apps/:id`, loaded on demand.
    AppRoute => app::AppPage);
lazy_page!(/// `/services/:id`, loaded on demand.
    ServiceRoute => service::ServicePage);
lazy_page!(/// `/projects/:id`, loaded on demand.
    ProjectRoute => project::ProjectPage);
lazy_page!(/// `/settings`, loaded on demand.
    SettingsRoute => settings::SettingsPage);
lazy_page!(/// `/server`, instance administrators only, loaded on demand.
    ServerRoute => server::ServerPage);
lazy_page!(/// `/onboarding`, met once per instance.
    OnboardingRoute => onboarding::OnboardingPage);
lazy_page!(/// `/invite/:token`, met once per member.
    InviteRoute => invite::InvitePage);

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
