//! The signed-in app shell: sidebar (navigation, organization switcher, theme,
//! sign-out), the Docker banner, and the page outlet. Visitors who are not
//! signed in are sent to login (or to onboarding while no owner exists).

use crate::api::orgs::SwitchOrg;
use crate::api::session::{get_session_state, get_system_status, Logout};
use crate::components::theme::ThemeToggle;
use crate::components::ui::{hard_navigate, LoadError};
use crate::types::{Me, SessionState};
use leptos::prelude::*;
use leptos_router::components::{Outlet, Redirect, A};

/// The signed-in session, for pages: await it inside their `Suspend` (see
/// [`Session::provide_me`]).
#[derive(Clone, Copy)]
pub struct Session(pub SessionResource);

impl Session {
    /// The session from the shell's context.
    pub fn get() -> Self {
        expect_context::<Session>()
    }

    /// Waits for the session and provides its [`Me`] to what is built next (the
    /// components that show owner-only controls read it with `use_context`).
    pub async fn provide_me(self) {
        if let Ok(SessionState::SignedIn(me)) = self.0.await {
            provide_context(me);
        }
    }
}

type SessionResource = Resource<Result<SessionState, crate::error::AppError>>;
type StatusResource = Resource<Result<crate::types::SystemStatus, crate::error::AppError>>;

/// What every page in the shell shares: the session and the system status
/// (resources, made here in a component body) and the status event stream.
fn shell_context() -> (SessionResource, StatusResource) {
    let state = Resource::new(|| (), |_| get_session_state());
    let status = Resource::new(|| (), |_| get_system_status());
    provide_context(Session(state));
    crate::components::live::provide_live();
    (state, status)
}

/// Everything behind sign-in.
///
/// Why the page is not inside a `Suspense` here: on the server, a `Suspense`
/// walks its children again (`dry_resolve`) until no resource is pending, and
/// each walk re-runs their closures. A resource created in there is created
/// once per walk, so the server's resource IDs drift from the browser's (which
/// builds each once) and hydration finds the wrong data, or none, and panics.
/// So every resource is created in a component's body, outside any
/// `Suspense`/`Transition` closure: the pages' own, and the shell's here.
#[component]
pub fn Shell() -> impl IntoView {
    let (state, status) = shell_context();
    view! {
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                match state.await {
                    Ok(SessionState::Onboarding) => Some(view! { <Redirect path="/onboarding" /> }.into_any()),
                    Ok(SessionState::SignedOut) => Some(view! { <Redirect path="/login" /> }.into_any()),
                    Ok(SessionState::SignedIn(_)) => None,
                    Err(e) => Some(view! { <div class="p-8"><LoadError error=e /></div> }.into_any()),
                }
            })}
        </Suspense>
        <Frame state status>
            <Outlet />
        </Frame>
    }
}

/// Unknown addresses (the router's fallback), answered 404: inside the shell
/// for a signed-in user, the bare page for anyone else (no redirect to sign-in
/// for an address that does not exist).
#[component]
pub fn ShellNotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(res) = use_context::<leptos_axum::ResponseOptions>() {
        // Now, before anything streams.
        res.set_status(http::StatusCode::NOT_FOUND);
    }
    let (state, status) = shell_context();
    view! {
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                match state.await {
                    Ok(SessionState::SignedIn(_)) => view! {
                        <Frame state status><crate::pages::not_found::NotFound /></Frame>
                    }.into_any(),
                    _ => view! { <main><crate::pages::not_found::NotFound /></main> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn Frame(state: SessionResource, status: StatusResource, children: Children) -> impl IntoView {
    let nav = "block rounded-md px-3 py-2 text-sm font-medium hover:bg-slate-100 dark:hover:bg-slate-800 aria-[current=page]:bg-indigo-50 aria-[current=page]:text-indigo-700 dark:aria-[current=page]:bg-indigo-950 dark:aria-[current=page]:text-indigo-300";
    // On a phone the sidebar folds into a bar with a menu button.
    let menu = RwSignal::new(false);
    // A save that rebuilds a page's controls keeps the keyboard's place.
    let main = NodeRef::<leptos::html::Main>::new();
    crate::components::focus::keep_focus(main);
    view! {
        <div class="flex min-h-screen flex-col md:flex-row">
            <aside class="border-b border-slate-200 bg-white px-4 py-3 md:w-64 md:shrink-0 md:border-b-0 md:border-r md:p-4 dark:border-slate-800 dark:bg-slate-900">
                <div class="flex items-center justify-between md:block">
                    <A href="/projects" attr:class="text-xl font-bold tracking-tight text-indigo-600 dark:text-indigo-400">"⚓ Berth"</A>
                    <button type="button" id="menu-toggle" class="rounded-md border border-slate-300 px-3 py-1 text-sm md:hidden dark:border-slate-700"
                        aria-controls="sidebar-menu" aria-expanded=move || menu.get().to_string()
                        on:click=move |_| menu.update(|m| *m = !*m)>
                        "Menu"
                    </button>
                </div>
                <div id="sidebar-menu" class=move || if menu.get() { "mt-3 md:block" } else { "hidden md:block" }
                    on:click=move |ev| {
                        // A link followed closes the menu (the page changes under it).
                        use wasm_bindgen::JsCast;
                        let link = ev.target()
                            .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
                            .and_then(|el| el.closest("a").ok().flatten());
                        if link.is_some() {
                            menu.set(false);
                        }
                    }>
                    <Suspense fallback=|| ()>
                        {move || Suspend::new(async move {
                            match state.await {
                                Ok(SessionState::SignedIn(me)) => Some(view! {
                                    <p class="mb-3 text-xs text-slate-500 md:mt-1" id="whoami">{me.email.clone()}</p>
                                    <OrgSwitcher me />
                                }),
                                _ => None,
                            }
                        })}
                    </Suspense>
                    <nav class="mt-4 flex gap-1 md:flex-col">
                        <A href="/projects" attr:class=nav>"Projects"</A>
                        <A href="/settings" attr:class=nav>"Settings"</A>
                        // The machine is the instance administrators' alone.
                        <Suspense fallback=|| ()>
                            {move || Suspend::new(async move {
                                match state.await {
                                    Ok(SessionState::SignedIn(me)) if me.instance_admin => {
                                        Some(view! { <A href="/server" attr:class=nav>"Server"</A> })
                                    }
                                    _ => None,
                                }
                            })}
                        </Suspense>
                    </nav>
                    <div class="mt-4 flex gap-1 border-t border-slate-200 pt-4 md:flex-col dark:border-slate-800">
                        <ThemeToggle />
                        <LogoutButton />
                    </div>
                </div>
            </aside>
            <main class="flex-1 p-4 sm:p-8" node_ref=main>
                <DockerBanner status />
                {children()}
            </main>
        </div>
    }
}

#[component]
fn OrgSwitcher(me: Me) -> impl IntoView {
    let switch = ServerAction::<SwitchOrg>::new();
    Effect::new(move |_| {
        if let Some(Ok(())) = switch.value().get() {
            hard_navigate("/projects");
        }
    });
    let current = me.org_id;
    view! {
        <label class="block text-xs font-medium uppercase tracking-wide text-slate-500">
            "Organization"
            <select
                id="org-switcher"
                class="mt-1 block w-full rounded-md border border-slate-300 bg-white px-2 py-1.5 text-sm dark:border-slate-700 dark:bg-slate-900"
                on:change=move |ev| {
                    switch.dispatch(SwitchOrg { id: event_target_value(&ev) });
                }
            >
                {me.orgs.into_iter().map(|o| {
                    let selected = o.id == current;
                    view! { <option value=o.id.to_string() selected=selected>{o.name}</option> }
                }).collect_view()}
            </select>
        </label>
    }
}

#[component]
fn LogoutButton() -> impl IntoView {
    let logout = ServerAction::<Logout>::new();
    Effect::new(move |_| {
        if let Some(Ok(())) = logout.value().get() {
            hard_navigate("/login");
        }
    });
    view! {
        <button
            id="logout"
            type="button"
            class="w-full rounded-md px-3 py-2 text-left text-sm hover:bg-slate-100 dark:hover:bg-slate-800"
            on:click=move |_| { logout.dispatch(Logout {}); }
        >
            "Sign out"
        </button>
    }
}

/// Says plainly when Docker is unreachable and how to fix it, and (to
/// instance administrators) what the reconciler is repairing.
#[component]
fn DockerBanner(status: StatusResource) -> impl IntoView {
    view! {
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                match status.await {
                    Ok(s) if s.needs_second_factor => Some(view! {
                        <div role="status" id="second-factor-banner" class="mb-6 rounded-md border border-amber-300 bg-amber-50 p-4 text-sm text-amber-900 dark:border-amber-800 dark:bg-amber-950 dark:text-amber-200">
                            <p class="font-semibold">"This organization requires two-factor sign-in."</p>
                            <p class="mt-1">"Set it up in " <a class="underline" href="/settings#two-factor">"Settings → Two-factor sign-in"</a> "; until then nothing else opens."</p>
                        </div>
                    }.into_any()),
                    Ok(s) if s.docker_error.is_none() => (!s.problems.is_empty()).then(|| view! {
                        <div role="status" id="runtime-banner" class="mb-6 rounded-md border border-amber-300 bg-amber-50 p-4 text-sm text-amber-900 dark:border-amber-800 dark:bg-amber-950 dark:text-amber-200">
                            <p class="font-semibold">"Something that should run is down; Berth is repairing it."</p>
                            <ul class="mt-1 list-disc pl-5">{s.problems.into_iter().map(|p| view! { <li class="break-words">{p}</li> }).collect_view()}</ul>
                        </div>
                    }.into_any()),
                    Ok(s) => s.docker_error.map(|err| view! {
                        <div role="status" id="docker-banner" class="mb-6 rounded-md border border-amber-300 bg-amber-50 p-4 text-sm text-amber-900 dark:border-amber-800 dark:bg-amber-950 dark:text-amber-200">
                            <p class="font-semibold">"Docker is unreachable, so apps cannot be deployed yet."</p>
                            {if s.docker_host.is_empty() {
                                view! { <p class="mt-1 break-words">{err}</p> }.into_any()
                            } else {
                                view! {
                                    <p class="mt-1 break-words">"Berth tried " <code>{s.docker_host}</code> ": " {err}</p>
                                    <p class="mt-1">
                                        "Start the Docker engine (" <code>"systemctl start docker"</code>
                                        ", or run " <code>"make run"</code> " as root with docker.io installed), or point "
                                        <code>"DOCKER_HOST"</code> " at a reachable engine, then reload."
                                    </p>
                                }.into_any()
                            }}
                        </div>
                    }.into_any()),
                    Err(_) => None,
                }
            })}
        </Suspense>
    }
}
