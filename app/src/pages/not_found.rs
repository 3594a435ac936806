//! The page for any unknown route, served with status 404.

use leptos::prelude::*;
use leptos_router::components::A;

/// Rendered for every path no route matches.
#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    {
        if let Some(res) = use_context::<leptos_axum::ResponseOptions>() {
            res.set_status(http::StatusCode::NOT_FOUND);
        }
    }
    view! {
        <div class="mx-auto max-w-md p-8 text-center">
            <h1 class="text-3xl font-bold">"Page not found"</h1>
            <p class="mt-2 text-slate-600 dark:text-slate-400">"Nothing lives at this address."</p>
            <A href="/projects" attr:class="mt-6 inline-block text-indigo-700 hover:underline dark:text-indigo-300">"Back to projects"</A>
        </div>
    }
}
