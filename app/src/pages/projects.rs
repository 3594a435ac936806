//! The project list of the current organization, with the create form.

use crate::api::projects::{list_projects, CreateProject};
use crate::components::ui::{action_error, Field, FormError, LoadError, Loading, Submit, CARD};
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_router::components::Redirect;

/// `/` goes to the project list.
#[component]
pub fn Home() -> impl IntoView {
    view! { <Redirect path="/projects" /> }
}

#[component]
pub fn ProjectsPage() -> impl IntoView {
    let create = ServerAction::<CreateProject>::new();
    let error = action_error(create);
    let projects = Resource::new(move || create.version().get(), |_| list_projects());
    let form = NodeRef::<leptos::html::Form>::new();
    crate::components::ui::reset_on_success(create, form);
    view! {
        <div class="mx-auto max-w-4xl space-y-6">
            <h1 class="text-2xl font-semibold">"Projects"</h1>
            <section class=CARD>
                <h2 class="mb-3 font-semibold">"New project"</h2>
                <ActionForm action=create node_ref=form attr:class="grid gap-4 sm:grid-cols-[1fr_2fr_auto] sm:items-end" attr:id="create-project">
                    <div><Field label="Name" name="name" error /></div>
                    <div><Field label="Description" name="description" error /></div>
                    <Submit label="Create" pending=create.pending() id="create-project-submit" />
                </ActionForm>
                <div class="mt-3"><FormError error /></div>
            </section>
            <Transition fallback=|| view! { <Loading /> }>
                {move || Suspend::new(async move {
                    match projects.await {
                        Err(e) => view! { <LoadError error=e /> }.into_any(),
                        Ok(list) if list.is_empty() => view! {
                            <div class="rounded-lg border-2 border-dashed border-slate-300 p-10 text-center dark:border-slate-700" id="projects-empty">
                                <p class="font-medium">"No projects yet"</p>
                                <p class="mt-1 text-sm text-slate-500">"A project groups the apps and databases of one product, with an environment for each stage."</p>
                            </div>
                        }.into_any(),
                        Ok(list) => view! {
                            <ul class="grid gap-4 sm:grid-cols-2" id="project-list">
                                {list.into_iter().map(|p| view! {
                                    <li>
                                        // A plain link (the router still navigates in place): `<A>`
                                        // costs a memo and an attribute list per card, a tenth of the
                                        // page's server time with 50 projects.
                                        <a href=format!("/projects/{}", p.id) class=format!("{CARD} block hover:border-indigo-400")>
                                            <p class="font-semibold" data-project-name="">{p.name}</p>
                                            <p class="mt-1 line-clamp-2 text-sm text-slate-500">{p.description}</p>
                                            <p class="mt-3 text-xs text-slate-500 dark:text-slate-400">
                                                {format!("{} environment{}", p.environments, if p.environments == 1 { "" } else { "s" })}
                                            </p>
                                        </a>
                                    </li>
                                }).collect_view()}
                            </ul>
                        }.into_any(),
                    }
                })}
            </Transition>
        </div>
    }
}
