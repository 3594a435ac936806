//! One project: rename it, manage its environments, delete it.

use crate::api::apps::{list_apps, CreateApp};
use crate::api::projects::{
    get_project, AddEnvironment, DeleteEnvironment, DeleteProject, RenameEnvironment, UpdateProject,
};
use crate::api::services::{list_services, CreateService};
use crate::components::live::refresh_on;
use crate::components::resources::{EnvironmentGroups, ResourceRow, RowState};
use crate::components::shell::Session;
use crate::components::ui::{
    action_error, Field, FormError, LoadError, Loading, Submit, BUTTON_DANGER, BUTTON_QUIET, CARD, INPUT,
};
use crate::types::{EnvironmentView, Me, ProjectDetail};
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_router::hooks::{use_navigate, use_params_map};

#[component]
pub fn ProjectPage() -> impl IntoView {
    super::preload_detail_routes();
    let params = use_params_map();
    let id = move || params.read().get("id").unwrap_or_default();
    let update = ServerAction::<UpdateProject>::new();
    let add_env = ServerAction::<AddEnvironment>::new();
    let rename_env = ServerAction::<RenameEnvironment>::new();
    let delete_env = ServerAction::<DeleteEnvironment>::new();
    let project = Resource::new(
        move || {
            (
                id(),
                update.version().get(),
                add_env.version().get(),
                rename_env.version().get(),
                delete_env.version().get(),
            )
        },
        |(id, ..)| get_project(id),
    );
    let actions = EnvActions {
        add: add_env,
        rename: rename_env,
        delete: delete_env,
    };
    // The lists' resources live here, outside the `Transition` (see `Shell`).
    let lists = Lists {
        apps: apps_section(Signal::derive(id)),
        services: services_section(Signal::derive(id)),
    };
    let session = Session::get();
    view! {
        <div class="mx-auto max-w-4xl space-y-6">
            <Transition fallback=|| view! { <Loading /> }>
                {move || Suspend::new(async move {
                    session.provide_me().await;
                    match project.await {
                        Err(e) => view! { <LoadError error=e /> }.into_any(),
                        Ok(p) => view! { <ProjectView project=p update actions lists /> }.into_any(),
                    }
                })}
            </Transition>
        </div>
    }
}

/// A list of the project's applications or databases: its resource, the
/// creation action it follows (events re-read it: `refresh_on`).
struct Section<A: server_fn::ServerFn + 'static> {
    create: ServerAction<A>,
    rows: Resource<Result<Vec<ResourceRow>, crate::error::AppError>>,
}

impl<A: server_fn::ServerFn + 'static> Clone for Section<A> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A: server_fn::ServerFn + 'static> Copy for Section<A> {}

#[derive(Clone, Copy)]
struct Lists {
    apps: Section<CreateApp>,
    services: Section<CreateService>,
}

fn apps_section(project_id: Signal<String>) -> Section<CreateApp> {
    let create = ServerAction::<CreateApp>::new();
    let tick = RwSignal::new(0u32);
    let rows = Resource::new(
        move || (project_id.get(), create.version().get(), tick.get()),
        move |(project_id, ..)| async move {
            let apps = list_apps(project_id).await?;
            Ok(apps
                .into_iter()
                .map(|a| ResourceRow {
                    environment_id: a.environment_id,
                    href: format!("/apps/{}", a.id),
                    detail: match a.domain {
                        Some(d) => format!("{} · {d}", a.source),
                        None => a.source,
                    },
                    state: a.status.map(RowState::Deployment),
                    name: a.name,
                    marker: "app".into(),
                })
                .collect())
        },
    );
    refresh_on(|e| e.kind == "deployment", tick);
    Section { create, rows }
}

fn services_section(project_id: Signal<String>) -> Section<CreateService> {
    let create = ServerAction::<CreateService>::new();
    let tick = RwSignal::new(0u32);
    let rows = Resource::new(
        move || (project_id.get(), create.version().get(), tick.get()),
        move |(project_id, ..)| async move {
            let services = list_services(project_id).await?;
            Ok(services
                .into_iter()
                .map(|s| ResourceRow {
                    environment_id: s.environment_id,
                    href: format!("/services/{}", s.id),
                    detail: s.engine,
                    state: Some(RowState::Service(s.state)),
                    name: s.name,
                    marker: "service".into(),
                })
                .collect())
        },
    );
    refresh_on(|e| e.kind == "service", tick);
    Section { create, rows }
}

#[derive(Clone, Copy)]
struct EnvActions {
    add: ServerAction<AddEnvironment>,
    rename: ServerAction<RenameEnvironment>,
    delete: ServerAction<DeleteEnvironment>,
}

#[component]
fn ProjectView(
    project: ProjectDetail,
    update: ServerAction<UpdateProject>,
    actions: EnvActions,
    lists: Lists,
) -> impl IntoView {
    let error = action_error(update);
    let me = use_context::<Me>();
    let can_delete = me.map(|m| m.can_manage()).unwrap_or(false);
    let id = project.id.to_string();
    let delete_id = id.clone();
    view! {
        <h1 class="text-2xl font-semibold" id="project-title">{project.name.clone()}</h1>
        <p class="text-sm text-slate-500">{project.description.clone()}</p>
        {project.may.manage.then(|| view! {
        <section class=CARD>
            <h2 class="mb-3 font-semibold">"General"</h2>
            <ActionForm action=update attr:class="space-y-4" attr:id="rename-project">
                <input type="hidden" name="id" value=project.id.to_string() />
                <Field label="Name" name="name" value=project.name.clone() error />
                <Field label="Description" name="description" value=project.description.clone() error />
                <FormError error />
                <Submit label="Save" pending=update.pending() id="rename-project-submit" />
            </ActionForm>
        </section>
        })}
        <Applications environments=project.environments.clone() manage=project.may.manage section=lists.apps />
        <Databases environments=project.environments.clone() manage=project.may.manage section=lists.services />
        <Show when=move || project.may.manage>
            <Environments project_id=id.clone() environments=project.environments.clone() actions />
        </Show>
        <Show when=move || can_delete>
            <DeleteProjectButton id=delete_id.clone() />
        </Show>
    }
}

#[component]
fn Environments(project_id: String, environments: Vec<EnvironmentView>, actions: EnvActions) -> impl IntoView {
    let add_error = action_error(actions.add);
    let (rename_error, delete_error) = (action_error(actions.rename), action_error(actions.delete));
    let row_error = Signal::derive(move || rename_error.get().or_else(|| delete_error.get()));
    view! {
        <section class=CARD>
            <h2 class="mb-3 font-semibold">"Environments"</h2>
            <ul class="divide-y divide-slate-200 dark:divide-slate-800" id="environments">
                {environments.into_iter().map(|env| view! { <EnvironmentRow env actions /> }).collect_view()}
            </ul>
            <div class="mt-2"><FormError error=row_error /></div>
            <details class="mt-4" id="new-environment">
                <summary class="cursor-pointer font-semibold text-indigo-700 dark:text-indigo-300">"New environment"</summary>
                <ActionForm action=actions.add attr:class="mt-3 flex flex-col gap-3 sm:flex-row sm:items-end" attr:id="add-environment">
                    <input type="hidden" name="project_id" value=project_id />
                    <div class="flex-1"><Field label="Name" name="name" error=add_error /></div>
                    <Submit label="Add" pending=actions.add.pending() />
                </ActionForm>
                <FormError error=add_error />
            </details>
        </section>
    }
}

#[component]
fn EnvironmentRow(env: EnvironmentView, actions: EnvActions) -> impl IntoView {
    let id = env.id.to_string();
    let name = env.name.clone();
    view! {
        <li class="flex flex-col gap-2 py-3 sm:flex-row sm:items-center sm:justify-between" data-environment=env.name.clone()>
            {if env.protected {
                view! {
                    <span class="font-medium">{name}</span>
                    <span class="text-xs text-slate-500">"default · cannot be renamed or deleted"</span>
                }.into_any()
            } else {
                let delete_id = id.clone();
                let label = name.clone();
                view! {
                    <details class="flex-1">
                        <summary class="cursor-pointer font-medium">{label}</summary>
                        <ActionForm action=actions.rename attr:class="mt-2 flex gap-2">
                            <input type="hidden" name="id" value=id />
                            <input name="name" value=name class=INPUT aria-label="Environment name" />
                            <button type="submit" class=BUTTON_QUIET>"Rename"</button>
                        </ActionForm>
                    </details>
                    <button
                        type="button"
                        class=BUTTON_DANGER
                        data-delete-environment=env.name.clone()
                        on:click=move |_| {
                            let w = window();
                            if w.confirm_with_message("Delete this environment with its applications and databases?").unwrap_or(false) {
                                let remove_volumes = w
                                    .confirm_with_message("Also delete their data volumes? Cancel keeps them.")
                                    .unwrap_or(false)
                                    .then(|| "on".to_owned());
                                actions.delete.dispatch(DeleteEnvironment { id: delete_id.clone(), remove_volumes });
                            }
                        }
                    >
                        "Delete"
                    </button>
                }.into_any()
            }}
        </li>
    }
}

#[component]
fn DeleteProjectButton(id: String) -> impl IntoView {
    let delete = ServerAction::<DeleteProject>::new();
    let volumes = RwSignal::new(false);
    let error = action_error(delete);
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(())) = delete.value().get() {
            navigate("/projects", Default::default());
        }
    });
    view! {
        <section class=CARD>
            <h2 class="mb-2 font-semibold text-red-700 dark:text-red-400">"Danger zone"</h2>
            <p class="mb-3 text-sm text-slate-500">"Deleting a project deletes its environments, with their applications and databases."</p>
            <label class="mb-3 flex items-center gap-2 text-sm">
                <input type="checkbox" id="delete-project-volumes" on:change=move |ev| volumes.set(event_target_checked(&ev)) />
                "Also delete their data volumes (gone for good)"
            </label>
            <button
                type="button"
                class=BUTTON_DANGER
                id="delete-project"
                on:click=move |_| {
                    if window().confirm_with_message("Delete this project, its environments, applications and databases?").unwrap_or(false) {
                        let remove_volumes = volumes.get_untracked().then(|| "on".to_owned());
                        delete.dispatch(DeleteProject { id: id.clone(), remove_volumes });
                    }
                }
            >
                "Delete project"
            </button>
            <FormError error />
        </section>
    }
}

/// Opens the page of what `action` just created (`prefix` + its id).
fn open_created<A>(action: ServerAction<A>, prefix: &'static str)
where
    A: leptos::server_fn::ServerFn<Output = uuid::Uuid, Error = crate::error::AppError> + Clone + Send + Sync + 'static,
{
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(id)) = action.value().get() {
            navigate(&format!("{prefix}{id}"), Default::default());
        }
    });
}

fn env_options(environments: &[EnvironmentView]) -> impl IntoView {
    environments
        .iter()
        .map(|e| view! { <option value=e.id.to_string()>{e.name.clone()}</option> })
        .collect_view()
}

/// A project's applications or databases, grouped by environment; the list
/// follows work in progress (re-read on status events), and the
/// form that adds one sits below, outside what that re-renders.
#[component]
fn ResourceSection(
    title: &'static str,
    environments: Vec<EnvironmentView>,
    rows: Resource<Result<Vec<ResourceRow>, crate::error::AppError>>,
    list_attr: &'static str,
    empty: &'static str,
    none_label: &'static str,
    children: Children,
) -> impl IntoView {
    view! {
        <section class=CARD>
            <h2 class="mb-3 font-semibold">{title}</h2>
            <Transition fallback=|| view! { <Loading /> }>
                {move || {
                    let envs = environments.clone();
                    Suspend::new(async move {
                        match rows.await {
                            Err(e) => view! { <LoadError error=e /> }.into_any(),
                            Ok(rows) => view! { <EnvironmentGroups envs rows list_attr empty none_label /> }.into_any(),
                        }
                    })
                }}
            </Transition>
            {children()}
        </section>
    }
}

#[component]
fn Applications(environments: Vec<EnvironmentView>, manage: bool, section: Section<CreateApp>) -> impl IntoView {
    let Section { create, rows } = section;
    let error = action_error(create);
    open_created(create, "/apps/");
    let env_options = env_options(&environments);
    // The fields follow the chosen source: a repository and a build for git, an
    // image for an image (hidden fields still post, empty).
    let source = RwSignal::new("git".to_owned());
    let git = move || source.get() == "git";
    view! {
        <ResourceSection title="Applications" environments rows list_attr="data-apps-env" empty="No applications yet." none_label="never deployed">
            {manage.then(move || view! {
            <details class="mt-6" id="new-app">
            <summary class="cursor-pointer font-semibold text-indigo-700 dark:text-indigo-300">"New application"</summary>
            <ActionForm action=create attr:class="mt-3 grid gap-3 sm:grid-cols-2" attr:id="create-app">
                <label class="block text-sm font-medium">"Environment"
                    <select name="environment_id" id="field-environment_id" class=INPUT>{env_options}</select>
                </label>
                <Field label="Name (lower-case, digits, -)" name="name" error />
                <label class="block text-sm font-medium">"Source"
                    <select name="source" id="field-source" class=INPUT on:change=move |ev| source.set(event_target_value(&ev))>
                        <option value="git">"Git repository"</option>
                        <option value="image">"Docker image"</option>
                    </select>
                </label>
                <label class="block text-sm font-medium" class:hidden=move || !git()>"Build"
                    <select name="build" id="field-build" class=INPUT>
                        <option value="dockerfile">"Dockerfile"</option>
                        <option value="static">"Static site"</option>
                    </select>
                </label>
                <div class:hidden=move || !git()><Field label="Repository URL" name="repository" error /></div>
                <div class:hidden=move || !git()><Field label="Branch" name="branch" value="main".to_string() error /></div>
                <div class:hidden=git><Field label="Image (e.g. nginx:1.27)" name="image" error /></div>
                <div class="sm:col-span-2"><Submit label="Create application" pending=create.pending() id="create-app-submit" /></div>
            </ActionForm>
            <FormError error />
            </details>
            })}
        </ResourceSection>
    }
}

/// Database services, listed per environment beside the applications.
#[component]
fn Databases(environments: Vec<EnvironmentView>, manage: bool, section: Section<CreateService>) -> impl IntoView {
    let Section { create, rows } = section;
    let error = action_error(create);
    open_created(create, "/services/");
    let env_options = env_options(&environments);
    // Redis has no database or user, and has a persistence mode.
    let engine = RwSignal::new("postgres".to_owned());
    let redis = move || engine.get() == "redis";
    view! {
        <ResourceSection title="Databases" environments rows list_attr="data-services-env" empty="No databases yet." none_label="">
            {manage.then(move || view! {
            <details class="mt-6" id="new-service">
            <summary class="cursor-pointer font-semibold text-indigo-700 dark:text-indigo-300">"New database"</summary>
            <ActionForm action=create attr:class="mt-3 grid gap-3 sm:grid-cols-2" attr:id="create-service">
                <label class="block text-sm font-medium">"Environment"
                    <select name="environment_id" class=INPUT>{env_options}</select>
                </label>
                <Field label="Name (lower-case, digits, -)" name="name" error />
                <label class="block text-sm font-medium">"Engine"
                    <select name="engine" id="field-engine" class=INPUT on:change=move |ev| engine.set(event_target_value(&ev))>
                        <option value="postgres">"PostgreSQL"</option>
                        <option value="mysql">"MySQL"</option>
                        <option value="mariadb">"MariaDB"</option>
                        <option value="mongo">"MongoDB"</option>
                        <option value="redis">"Redis"</option>
                    </select>
                </label>
                <label class="block text-sm font-medium" class:hidden=move || !redis()>"Redis persistence"
                    <select name="persistence" id="field-persistence" class=INPUT>
                        <option value="aof">"Append-only file and RDB snapshots"</option>
                        <option value="rdb">"RDB snapshots only"</option>
                    </select>
                </label>
                <Field label="Image (empty = the engine's default)" name="image" error />
                <div class:hidden=redis><Field label="Database name (default app)" name="database" error /></div>
                <div class:hidden=redis><Field label="User (default app)" name="user" error /></div>
                <Field label="CPU (millicores, optional)" name="cpu_millis" error />
                <Field label="Memory (MiB, optional)" name="memory_mb" error />
                <Field label="External address" name="external_bind" value="127.0.0.1".to_string() error />
                <Field label="External port (optional; off by default)" name="external_port" error />
                <div class="sm:col-span-2"><Submit label="Create database" pending=create.pending() id="create-service-submit" /></div>
            </ActionForm>
            <FormError error />
            </details>
            })}
        </ResourceSection>
    }
}
