//! One database service: General (status, connection strings, password reveal,
//! lifecycle, link to an app, delete), Backups (destinations, schedules,
//! history, restore, drills), Logs (the container, live) and Advanced
//! (image, limits, external port).

use crate::api::services::{get_service, DeleteService, LinkService, RevealService, ServiceAction, UpdateService};
use crate::components::backups::{Backups, BackupsPanel};
use crate::components::chart::{Metrics, MetricsPanel, Source};
use crate::components::live::refresh_on;
use crate::components::logview::LogView;
use crate::components::shell::Session;
use crate::components::status::{Badge, StatusBadge};
use crate::components::ui::{
    action_error, Field, FormError, LoadError, Loading, Submit, Tabs, BUTTON_DANGER, BUTTON_QUIET, CARD, INPUT,
};
use crate::types::ServiceView;
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::{use_navigate, use_params_map, use_query_map};

const TABS: [(&str, &str); 5] = [
    ("general", "General"),
    ("backups", "Backups"),
    ("logs", "Logs"),
    ("metrics", "Metrics"),
    ("advanced", "Advanced"),
];

#[derive(Clone, Copy)]
struct Actions {
    act: ServerAction<ServiceAction>,
    update: ServerAction<UpdateService>,
}

#[component]
pub fn ServicePage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let id = move || params.read().get("id").unwrap_or_default();
    let tab = Memo::new(move |_| query.read().get("tab").unwrap_or_else(|| "general".into()));
    let actions = Actions {
        act: ServerAction::new(),
        update: ServerAction::new(),
    };
    let tick = RwSignal::new(0u32);
    // The page renders once per action; only the status (badge, readiness, last
    // error) follows status events, so forms on the page keep what is typed.
    let service = Resource::new(
        move || (id(), actions.act.version().get(), actions.update.version().get()),
        |(id, ..)| get_service(id),
    );
    // The first render has the status already; later ones come from status events,
    // and an action asks for one at once.
    let status = Resource::new(
        move || (id(), tick.get()),
        |(id, tick)| async move {
            if tick == 0 {
                None
            } else {
                get_service(id).await.ok()
            }
        },
    );
    Effect::watch(
        move || (actions.act.version().get(), actions.update.version().get()),
        move |_, _, _| tick.update(|t| *t += 1),
        false,
    );
    // The server says when this service starts, stops or becomes ready.
    refresh_on(move |e| e.kind == "service" && e.id == id(), tick);
    // Made here, outside the `Transition` (see `Shell`).
    let backups = Backups::new(Signal::derive(id));
    let metrics = Metrics::new(
        Source::Service,
        Signal::derive(id),
        Signal::derive(move || tab.get() == "metrics"),
    );
    let session = Session::get();
    view! {
        <div class="mx-auto max-w-5xl space-y-6">
            <Transition fallback=|| view! { <Loading /> }>
                {move || Suspend::new(async move {
                    session.provide_me().await;
                    match service.await {
                        Err(e) => view! { <LoadError error=e /> }.into_any(),
                        Ok(s) => view! { <ServiceBody service=s status tab actions backups metrics /> }.into_any(),
                    }
                })}
            </Transition>
        </div>
    }
}

#[component]
fn ServiceBody(
    service: ServiceView,
    status: Resource<Option<ServiceView>>,
    tab: Memo<String>,
    actions: Actions,
    backups: Backups,
    metrics: Metrics,
) -> impl IntoView {
    let path = format!("/services/{}", service.id);
    let tabs = view! { <Tabs base=path.clone() tabs=&TABS current=tab /> };
    let latest = move || status.get().flatten();
    let first = (service.state, service.ready, service.last_error.clone());
    let state = Signal::derive({
        let first = first.0;
        move || latest().map(|s| s.state).unwrap_or_else(|| first)
    });
    let ready = Signal::derive(move || latest().map(|s| s.ready).unwrap_or(first.1));
    let last_error = Signal::derive(move || latest().map(|s| s.last_error).unwrap_or_else(|| first.2.clone()));
    let body = {
        let service = service.clone();
        move || {
            match tab.get().as_str() {
            "backups" => {
                view! { <BackupsPanel state=backups subject=service.id.to_string() service=Some(service.clone()) manage=service.may.manage /> }
                    .into_any()
            }
            "logs" => {
                let ws = format!("/api/ws/services/{}/logs?tail=200", service.id);
                view! { <section class=CARD><LogView ws_path=ws /></section> }.into_any()
            }
            "metrics" => view! {
                <MetricsPanel
                    state=metrics
                    title="Resources"
                    key="metrics"
                    note="The database's container. Memory leaves out file cache the kernel can take back, as docker stats does."
                />
            }
            .into_any(),
            "advanced" => view! { <Advanced service=service.clone() actions /> }.into_any(),
            _ => view! { <General service=service.clone() actions last_error /> }.into_any(),
        }
        }
    };
    view! {
        <div class="flex flex-wrap items-center gap-3">
            <A href=format!("/projects/{}", service.project_id) attr:class="text-sm text-indigo-700 hover:underline dark:text-indigo-300">
                {format!("{} / {}", service.project_name, service.environment_name)}
            </A>
        </div>
        <div class="flex flex-wrap items-center gap-3">
            <h1 class="text-2xl font-semibold" id="service-title">{service.name.clone()}</h1>
            <span class="text-sm text-slate-500">{service.engine_label.clone()}</span>
            <StatusBadge status=Signal::derive(move || Badge::from(state.get())) />
            <span class="text-xs text-slate-500" id="service-ready" data-ready=move || (ready.get() == Some(true)).to_string()>
                {move || match ready.get() {
                    Some(true) => "ready",
                    Some(false) => "not ready yet",
                    None => "",
                }}
            </span>
        </div>
        {tabs}
        {body}
    }
}

#[component]
fn General(service: ServiceView, actions: Actions, last_error: Signal<Option<String>>) -> impl IntoView {
    let id = service.id.to_string();
    let reveal = ServerAction::<RevealService>::new();
    let act_error = action_error(actions.act);
    let revealed = move || reveal.value().get().and_then(|r| r.ok());
    let buttons = ["start", "stop", "restart", "rebuild"]
        .into_iter()
        .map(|a| {
            let id = id.clone();
            view! {
                <button type="button" class=BUTTON_QUIET data-action=a on:click=move |_| {
                    actions.act.dispatch(ServiceAction { id: id.clone(), action: a.to_owned() });
                }>{a}</button>
            }
        })
        .collect_view();
    let reveal_id = id.clone();
    let can_delete = service.may.delete;
    let deploy = service.may.deploy;
    view! {
        <section class=CARD>
            <h2 class="mb-3 font-semibold">"Connection"</h2>
            <dl class="grid gap-2 text-sm sm:grid-cols-[10rem_1fr]">
                <dt class="text-slate-500">"Internal (apps on the Berth network)"</dt>
                <dd><code class="break-all" id="internal-url">{move || revealed().map(|r| r.internal_url).unwrap_or_else(|| service.internal_url.clone())}</code></dd>
                <dt class="text-slate-500">"External"</dt>
                <dd><code class="break-all" id="external-url">{move || match revealed() {
                    Some(r) => r.external_url.unwrap_or_else(|| "not exposed".into()),
                    None => service.external_url.clone().unwrap_or_else(|| "not exposed (Advanced tab)".into()),
                }}</code></dd>
                <dt class="text-slate-500">"Database / user"</dt>
                <dd>{format!("{} / {}", service.database.clone().unwrap_or_else(|| "-".into()), service.user.clone().unwrap_or_else(|| "-".into()))}</dd>
                <dt class="text-slate-500">"Password"</dt>
                <dd>
                    <code id="service-password">{move || revealed().map(|r| r.password).unwrap_or_else(|| "********".into())}</code>
                    {deploy.then(|| view! {
                        <button type="button" class="ml-3 text-xs text-indigo-700 hover:underline dark:text-indigo-300" id="reveal-password"
                            on:click=move |_| { reveal.dispatch(RevealService { id: reveal_id.clone() }); }>"Reveal"</button>
                    })}
                </dd>
                {move || revealed().and_then(|r| r.root_password).map(|p| view! {
                    <dt class="text-slate-500">"Root password"</dt>
                    <dd><code id="service-root-password">{p}</code></dd>
                })}
                {service.persistence.clone().map(|p| view! {
                    <dt class="text-slate-500">"Persistence"</dt>
                    <dd id="service-persistence">{p}</dd>
                })}
                <dt class="text-slate-500">"Volume"</dt>
                <dd><code>{service.volume.clone()}</code></dd>
            </dl>
            {move || last_error.get().map(|e| view! {
                <p role="alert" class="mt-3 rounded-md bg-red-50 px-3 py-2 text-sm text-red-700 dark:bg-red-950 dark:text-red-300">{format!("Last start failed: {e}")}</p>
            })}
        </section>
        {deploy.then(|| view! {
            <section class=CARD>
                <h2 class="mb-3 font-semibold">"Lifecycle"</h2>
                <div class="flex flex-wrap gap-2">{buttons}</div>
                <p class="mt-2 text-xs text-slate-500">"Rebuild makes a new container from the image and settings, on the same volume."</p>
                <FormError error=act_error />
            </section>
        })}
        <crate::components::status::Repairs problem=service.problem.clone() repairs=service.repairs.clone() />
        {deploy.then(|| view! {
            <LinkToApp service_id=id.clone() apps=service.project_apps.clone() engine=service.engine.clone() />
        })}
        <Show when=move || can_delete>
            <DeleteService id=id.clone() name=service.name.clone() />
        </Show>
    }
}

#[component]
fn LinkToApp(service_id: String, apps: Vec<(uuid::Uuid, String)>, engine: String) -> impl IntoView {
    let link = ServerAction::<LinkService>::new();
    let error = action_error(link);
    let default_name = if engine == "redis" { "REDIS_URL" } else { "DATABASE_URL" };
    view! {
        <section class=CARD>
            <h2 class="mb-3 font-semibold">"Link to an application"</h2>
            <p class="mb-3 text-sm text-slate-500">"Adds the internal connection string to the application's environment (redeploy it to apply)."</p>
            <ActionForm action=link attr:class="grid gap-3 sm:grid-cols-3 sm:items-end" attr:id="link-app">
                <input type="hidden" name="id" value=service_id />
                <label class="block text-sm font-medium">"Application"
                    <select name="app_id" class=INPUT id="field-app_id">
                        {apps.into_iter().map(|(id, name)| view! { <option value=id.to_string()>{name}</option> }).collect_view()}
                    </select>
                </label>
                <Field label="Variable" name="env_name" value=default_name.to_string() error />
                <Submit label="Link" pending=link.pending() id="link-submit" />
            </ActionForm>
            <FormError error />
            <Show when=move || matches!(link.value().get(), Some(Ok(())))>
                <p class="mt-2 text-sm text-emerald-700 dark:text-emerald-400" id="link-done">"Linked."</p>
            </Show>
        </section>
    }
}

#[component]
fn DeleteService(id: String, name: String) -> impl IntoView {
    let delete = ServerAction::<DeleteService>::new();
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
            <p class="mb-3 text-sm text-slate-500">"Deleting the service removes its container. Its backups stay in S3."</p>
            <ActionForm action=delete attr:class="space-y-3" attr:id="delete-service">
                <input type="hidden" name="id" value=id />
                <Field label="Type the service's name to confirm" name="confirm" error />
                <label class="flex items-center gap-2 text-sm">
                    <input type="checkbox" name="remove_volume" />
                    {format!("Also delete the data volume (every row of {name} is lost)")}
                </label>
                <button type="submit" class=BUTTON_DANGER>"Delete service"</button>
            </ActionForm>
            <FormError error />
        </section>
    }
}

#[component]
fn Advanced(service: ServiceView, actions: Actions) -> impl IntoView {
    let error = action_error(actions.update);
    view! {
        <section class=CARD>
            <h2 class="mb-3 font-semibold">"Image, resources and exposure"</h2>
            <p class="mb-3 text-sm text-slate-500">"Saving rebuilds the container on the same volume."</p>
            {service.may.manage.then(|| view! {
            <ActionForm action=actions.update attr:class="grid gap-3 sm:grid-cols-2" attr:id="service-advanced">
                <input type="hidden" name="id" value=service.id.to_string() />
                <Field label="Image" name="image" value=service.image.clone() error />
                <Field label="CPU (millicores, empty = no limit)" name="cpu_millis" value=service.cpu_millis.map(|v| v.to_string()).unwrap_or_default() error />
                <Field label="Memory (MiB, empty = no limit)" name="memory_mb" value=service.memory_mb.map(|v| v.to_string()).unwrap_or_default() error />
                <Field label="External address (e.g. 127.0.0.1)" name="external_bind" value=service.external_bind.clone().unwrap_or_else(|| "127.0.0.1".into()) error />
                <Field label="External port (empty = not exposed)" name="external_port" value=service.external_port.map(|v| v.to_string()).unwrap_or_default() error />
                <div class="sm:col-span-2"><Submit label="Save and rebuild" pending=actions.update.pending() /></div>
                <div class="sm:col-span-2"><FormError error /></div>
            </ActionForm>
            })}
        </section>
    }
}
