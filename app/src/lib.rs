//! Berth's user interface: the HTML shell, the routes, the pages and components,
//! and the `#[server]` functions that are the UI's only door to the engine.
//! Compiled twice: with `ssr` into the server, with `hydrate` into the WASM bundle.
#![recursion_limit = "256"]

pub mod api;
pub mod components;
pub mod error;
pub mod pages;
pub mod types;

use components::shell::Shell;
use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::components::{ParentRoute, Route, Router, Routes};
use leptos_router::{path, Lazy, SsrMode};
use pages::{
    login::LoginPage, projects::ProjectsPage, AppRoute, InviteRoute, OnboardingRoute, ProjectRoute, ServerRoute,
    ServiceRoute, SettingsRoute,
};

/// Applies the saved or system colour scheme before first paint, so dark mode never flashes.
const THEME_SCRIPT: &str = "try{var t=localStorage.getItem('berth-theme');if(t==='dark'||(!t&&matchMedia('(prefers-color-scheme: dark)').matches))document.documentElement.classList.add('dark')}catch(e){}";

/// Sets the page's Content-Security-Policy: scripts only from this origin or
/// inline with this response's nonce (Leptos puts it on its own inline scripts),
/// WebAssembly allowed, never framed.
#[cfg(feature = "ssr")]
fn content_security_policy() {
    use leptos::nonce::use_nonce;
    let (Some(nonce), Some(res)) = (use_nonce(), use_context::<leptos_axum::ResponseOptions>()) else {
        return;
    };
    let csp = format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    );
    if let Ok(v) = http::HeaderValue::from_str(&csp) {
        res.insert_header(http::header::CONTENT_SECURITY_POLICY, v);
    }
}

/// The HTML document the server renders around the app.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    #[cfg(feature = "ssr")]
    content_security_policy();
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <link rel="icon" href="/favicon.svg" type="image/svg+xml" />
                <script nonce=leptos::nonce::use_nonce() inner_html=THEME_SCRIPT></script>
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body class="bg-slate-50 text-slate-900 antialiased dark:bg-slate-950 dark:text-slate-100">
                <App />
            </body>
        </html>
    }
}

/// The application: routes and the shared page chrome.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Stylesheet id="berth" href="/pkg/berth.css" />
        <Title text="Berth" />
        <Router>
            <Routes fallback=|| view! { <components::shell::ShellNotFound /> }>
                <Route path=path!("/onboarding") view={Lazy::<OnboardingRoute>::new()} ssr=SsrMode::Async />
                <Route path=path!("/login") view=LoginPage ssr=SsrMode::Async />
                <Route path=path!("/invite/:token") view={Lazy::<InviteRoute>::new()} ssr=SsrMode::Async />
                <ParentRoute path=path!("") view=Shell ssr=SsrMode::Async>
                    <Route path=path!("") view=pages::projects::Home />
                    <Route path=path!("projects") view=ProjectsPage />
                    <Route path=path!("projects/:id") view={Lazy::<ProjectRoute>::new()} />
                    <Route path=path!("apps/:id") view={Lazy::<AppRoute>::new()} />
                    <Route path=path!("services/:id") view={Lazy::<ServiceRoute>::new()} />
                    <Route path=path!("settings") view={Lazy::<SettingsRoute>::new()} />
                    <Route path=path!("server") view={Lazy::<ServerRoute>::new()} />
                </ParentRoute>
            </Routes>
        </Router>
    }
}
