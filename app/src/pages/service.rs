//! One database service: General (status, connection strings, password reveal,
//! lifecycle, link to an app, delete), Backups (destinations, schedules,
//! history, restore, drills), Logs (the container, live) and Advanced
//! (image, limits, external port).

use crate::api::apps::list_apps;
use crate::api::services::{
    get_service, list_backups, list_destinations, AddDestination, AddSchedule, BucketObjects, DeleteService,
    DrillBackup, ImportBackup, LinkService, RemoveDestination, RemoveSchedule, RestoreBackup, RevealService, RunBackup,
    RunSchedule, ServiceAction, TestDestination, UpdateService,
};
use crate::components::logview::LogView;
use crate::components::status::StatusBadge;
use crate::components::ui::{
    action_error, poll_while, Field, FormError, LoadError, Loading, Submit, Tabs, BUTTON_DANGER, BUTTON_QUIET, CARD,
    INPUT,
};
use crate::error::AppError;
use crate::types::{BackupView, BackupsView, DestinationView, Me, ServiceView};
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::{use_navigate, use_params_map, use_query_map};

const TABS: [(&str, &str); 4] = [
    ("general", "General"),
    ("backups", "Backups"),
    ("logs", "Logs"),
    ("advanced", "Advanced"),
];

/// Bytes as a short human size.
pub fn size(n: i64) -> String {
    let n = n.max(0) as f64;
    if n >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} GiB", n / 1024.0 / 1024.0 / 1024.0)
    } else if n >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", n / 1024.0 / 1024.0)
    } else if n >= 1024.0 {
        format!("{:.1} KiB", n / 1024.0)
    } else {
        format!("{n} B")
    }
}

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
    // error) follows the polling, so forms on the page keep what is typed.
    let service = Resource::new(
        move || (id(), actions.act.version().get(), actions.update.version().get()),
        |(id, ..)| get_service(id),
    );
    // The first render has the status already; later ones come from the polls,
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
    poll_while(
        move || {
            status
                .get_untracked()
                .flatten()
                .or_else(|| service.get_untracked().and_then(|r| r.ok()))
                .is_some_and(|s| {
                    matches!(s.state.as_str(), "starting" | "restarting" | "created")
                        || (s.state == "running" && s.ready != Some(true))
                })
        },
        tick,
    );
    view! {
        <div class="mx-auto max-w-5xl space-y-6">
            <Transition fallback=|| view! { <Loading /> }>
                {move || Suspend::new(async move {
                    match service.await {
                        Err(e) => view! { <LoadError error=e /> }.into_any(),
                        Ok(s) => view! { <ServiceBody service=s status tab actions /> }.into_any(),
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
) -> impl IntoView {
    let path = format!("/services/{}", service.id);
    let tabs = view! { <Tabs base=path.clone() tabs=&TABS current=tab /> };
    let latest = move || status.get().flatten();
    let first = (service.state.clone(), service.ready, service.last_error.clone());
    let state = Signal::derive({
        let first = first.0.clone();
        move || latest().map(|s| s.state).unwrap_or_else(|| first.clone())
    });
    let ready = Signal::derive(move || latest().map(|s| s.ready).unwrap_or(first.1));
    let last_error = Signal::derive(move || latest().map(|s| s.last_error).unwrap_or_else(|| first.2.clone()));
    let body = {
        let service = service.clone();
        move || match tab.get().as_str() {
            "backups" => {
                view! { <BackupsPanel subject=service.id.to_string() service=Some(service.clone()) /> }.into_any()
            }
            "logs" => {
                let ws = format!("/api/ws/services/{}/logs?tail=200", service.id);
                view! { <section class=CARD><LogView ws_path=ws /></section> }.into_any()
            }
            "advanced" => view! { <Advanced service=service.clone() actions /> }.into_any(),
            _ => view! { <General service=service.clone() actions last_error /> }.into_any(),
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
            <StatusBadge status=state />
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
    let me = use_context::<Me>();
    let can_delete = me.map(|m| m.can_manage()).unwrap_or(false);
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
                    <button type="button" class="ml-3 text-xs text-indigo-700 hover:underline dark:text-indigo-300" id="reveal-password"
                        on:click=move |_| { reveal.dispatch(RevealService { id: reveal_id.clone() }); }>"Reveal"</button>
                </dd>
                <dt class="text-slate-500">"Volume"</dt>
                <dd><code>{service.volume.clone()}</code></dd>
            </dl>
            {move || last_error.get().map(|e| view! {
                <p role="alert" class="mt-3 rounded-md bg-red-50 px-3 py-2 text-sm text-red-700 dark:bg-red-950 dark:text-red-300">{format!("Last start failed: {e}")}</p>
            })}
        </section>
        <section class=CARD>
            <h2 class="mb-3 font-semibold">"Lifecycle"</h2>
            <div class="flex flex-wrap gap-2">{buttons}</div>
            <p class="mt-2 text-xs text-slate-500">"Rebuild makes a new container from the image and settings, on the same volume."</p>
            <FormError error=act_error />
        </section>
        <LinkToApp service_id=id.clone() project_id=service.project_id.to_string() engine=service.engine.clone() />
        <Show when=move || can_delete>
            <DeleteService id=id.clone() name=service.name.clone() />
        </Show>
    }
}

#[component]
fn LinkToApp(service_id: String, project_id: String, engine: String) -> impl IntoView {
    let link = ServerAction::<LinkService>::new();
    let error = action_error(link);
    let apps = Resource::new(|| (), move |_| list_apps(project_id.clone()));
    let default_name = if engine == "redis" { "REDIS_URL" } else { "DATABASE_URL" };
    view! {
        <section class=CARD>
            <h2 class="mb-3 font-semibold">"Link to an application"</h2>
            <p class="mb-3 text-sm text-slate-500">"Adds the internal connection string to the application's environment (redeploy it to apply)."</p>
            <ActionForm action=link attr:class="grid gap-3 sm:grid-cols-3 sm:items-end" attr:id="link-app">
                <input type="hidden" name="id" value=service_id />
                <label class="block text-sm font-medium">"Application"
                    <select name="app_id" class=INPUT id="field-app_id">
                        <Suspense fallback=|| ()>
                            {move || Suspend::new(async move {
                                apps.await.unwrap_or_default().into_iter().map(|a| view! { <option value=a.id.to_string()>{a.name}</option> }).collect_view()
                            })}
                        </Suspense>
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
        </section>
    }
}

#[derive(Clone, Copy)]
struct BackupActions {
    add_destination: ServerAction<AddDestination>,
    remove_destination: ServerAction<RemoveDestination>,
    test_destination: ServerAction<TestDestination>,
    run: ServerAction<RunBackup>,
    add_schedule: ServerAction<AddSchedule>,
    remove_schedule: ServerAction<RemoveSchedule>,
    run_schedule: ServerAction<RunSchedule>,
    restore: ServerAction<RestoreBackup>,
    drill: ServerAction<DrillBackup>,
    import: ServerAction<ImportBackup>,
    bucket: ServerAction<BucketObjects>,
}

type Destinations = Resource<Result<Vec<DestinationView>, AppError>>;
type History = Resource<Result<BackupsView, AppError>>;

/// Destinations, schedules, history, restores and drills for `subject` (a
/// service ID, or `berth` for Berth's own database, then `service` is None).
///
/// The lists poll while work is in progress; the forms sit outside what the
/// polling re-renders (they depend only on the destinations), so typing into
/// one is never wiped by a refresh.
#[component]
pub fn BackupsPanel(subject: String, service: Option<ServiceView>) -> impl IntoView {
    let a = BackupActions {
        add_destination: ServerAction::new(),
        remove_destination: ServerAction::new(),
        test_destination: ServerAction::new(),
        run: ServerAction::new(),
        add_schedule: ServerAction::new(),
        remove_schedule: ServerAction::new(),
        run_schedule: ServerAction::new(),
        restore: ServerAction::new(),
        drill: ServerAction::new(),
        import: ServerAction::new(),
        bucket: ServerAction::new(),
    };
    let tick = RwSignal::new(0u32);
    let history: History = Resource::new(
        {
            let subject = subject.clone();
            move || {
                (
                    subject.clone(),
                    a.remove_destination.version().get(),
                    a.run.version().get(),
                    a.add_schedule.version().get(),
                    a.remove_schedule.version().get(),
                    a.run_schedule.version().get(),
                    a.restore.version().get(),
                    a.drill.version().get(),
                    a.import.version().get(),
                    tick.get(),
                )
            }
        },
        |(s, ..)| list_backups(s),
    );
    let destinations: Destinations = Resource::new(
        move || (a.add_destination.version().get(), a.remove_destination.version().get()),
        |_| list_destinations(),
    );
    poll_while(
        move || history.get_untracked().and_then(|r| r.ok()).is_some_and(|d| d.busy()),
        tick,
    );
    let run_error = action_error(a.run);
    let run_subject = subject.clone();
    view! {
        <DestinationsSection destinations a />
        <section class=CARD>
            <h2 class="mb-3 font-semibold">"Back up now"</h2>
            <Transition fallback=|| view! { <Loading /> }>
                {move || {
                    let subject = run_subject.clone();
                    Suspend::new(async move {
                        let dests = destinations.await.unwrap_or_default();
                        if dests.is_empty() {
                            return view! { <p class="text-sm text-slate-500">"Add an S3 destination first."</p> }.into_any();
                        }
                        view! {
                            <ActionForm action=a.run attr:class="flex flex-col gap-3 sm:flex-row sm:items-end" attr:id="run-backup">
                                <input type="hidden" name="subject" value=subject />
                                <label class="block flex-1 text-sm font-medium">"Destination"
                                    <select name="destination_id" class=INPUT id="field-backup-destination">
                                        {dests.into_iter().map(|d| view! { <option value=d.id.to_string()>{format!("{} ({})", d.name, d.bucket)}</option> }).collect_view()}
                                    </select>
                                </label>
                                <Submit label="Back up now" pending=a.run.pending() id="run-backup-submit" />
                            </ActionForm>
                        }.into_any()
                    })
                }}
            </Transition>
            <FormError error=run_error />
        </section>
        <Schedules history destinations subject=subject.clone() a />
        <HistorySection history destinations service a />
        <FromBucket destinations subject a />
    }
}

#[component]
fn DestinationsSection(destinations: Destinations, a: BackupActions) -> impl IntoView {
    let add_error = action_error(a.add_destination);
    let test_error = action_error(a.test_destination);
    let tested = move || a.test_destination.value().get().and_then(|r| r.ok());
    let me = use_context::<Me>();
    let can_manage = me.map(|m| m.can_manage()).unwrap_or(false);
    view! {
        <section class=CARD>
            <h2 class="mb-3 font-semibold">"S3 destinations"</h2>
            <Transition fallback=|| view! { <Loading /> }>
                {move || Suspend::new(async move {
                    match destinations.await {
                        Err(e) => view! { <LoadError error=e /> }.into_any(),
                        Ok(list) => view! {
                            <ul class="divide-y divide-slate-200 text-sm dark:divide-slate-800" id="destinations">
                                {list.into_iter().map(|d| {
                                    let (test_id, remove_id) = (d.id.to_string(), d.id.to_string());
                                    view! {
                                        <li class="flex flex-col gap-2 py-2 sm:flex-row sm:items-center sm:justify-between" data-destination=d.name.clone()>
                                            <span><span class="font-medium">{d.name.clone()}</span>
                                                <span class="ml-2 text-slate-500">{format!("{}/{}/{} · key {}", d.endpoint, d.bucket, d.prefix, d.access_key)}</span></span>
                                            <span class="flex gap-2">
                                                <button type="button" class=BUTTON_QUIET data-test-destination=d.name.clone() on:click=move |_| {
                                                    a.test_destination.dispatch(TestDestination { id: test_id.clone() });
                                                }>"Test connection"</button>
                                                <button type="button" class=BUTTON_DANGER on:click=move |_| {
                                                    if window().confirm_with_message("Remove this destination? Its backups stay in the bucket but leave Berth's history.").unwrap_or(false) {
                                                        a.remove_destination.dispatch(RemoveDestination { id: remove_id.clone() });
                                                    }
                                                }>"Remove"</button>
                                            </span>
                                        </li>
                                    }
                                }).collect_view()}
                            </ul>
                        }.into_any(),
                    }
                })}
            </Transition>
            <Show when=move || a.test_destination.pending().get()>
                <p class="mt-2 text-sm text-slate-500">"Testing…"</p>
            </Show>
            <Show when=move || tested().is_some()>
                <p class="mt-2 text-sm text-emerald-700 dark:text-emerald-400" id="destination-test-ok">{tested}</p>
            </Show>
            <div class="mt-2" id="destination-test-error"><FormError error=test_error /></div>
            <Show when=move || can_manage>
                <h3 class="mb-2 mt-4 text-sm font-semibold">"Add a destination"</h3>
                <ActionForm action=a.add_destination attr:class="grid gap-3 sm:grid-cols-2" attr:id="add-destination">
                    <Field label="Name" name="name" error=add_error />
                    <Field label="Endpoint (https://s3.example.com)" name="endpoint" error=add_error />
                    <Field label="Region" name="region" value="us-east-1".to_string() error=add_error />
                    <Field label="Bucket" name="bucket" error=add_error />
                    <Field label="Prefix (optional)" name="prefix" error=add_error />
                    <Field label="Access key" name="access_key" error=add_error />
                    <Field label="Secret key" name="secret_key" kind="password" autocomplete="off" error=add_error />
                    <label class="flex items-center gap-2 text-sm"><input type="checkbox" name="path_style" checked=true />"Path-style addressing"</label>
                    <div class="sm:col-span-2"><Submit label="Add destination" pending=a.add_destination.pending() id="add-destination-submit" /></div>
                    <div class="sm:col-span-2"><FormError error=add_error /></div>
                </ActionForm>
            </Show>
        </section>
    }
}

#[component]
fn Schedules(history: History, destinations: Destinations, subject: String, a: BackupActions) -> impl IntoView {
    let error = action_error(a.add_schedule);
    view! {
        <section class=CARD>
            <h2 class="mb-3 font-semibold">"Schedules"</h2>
            <Transition fallback=|| view! { <Loading /> }>
                {move || Suspend::new(async move {
                    let schedules = history.await.map(|h| h.schedules).unwrap_or_default();
                    view! {
                        <ul class="divide-y divide-slate-200 text-sm dark:divide-slate-800" id="schedules">
                            {schedules.into_iter().map(|s| {
                                let (run_id, remove_id) = (s.id.to_string(), s.id.to_string());
                                let missed = (s.last_missed > 0).then(|| format!(" · {} earlier run(s) missed while Berth was down", s.last_missed));
                                view! {
                                    <li class="flex flex-col gap-2 py-2 sm:flex-row sm:items-center sm:justify-between" data-schedule=s.cron.clone()>
                                        <span>
                                            <code>{s.cron.clone()}</code>{format!(" ({}) · keep {}{}", s.timezone, s.keep_last, if s.drill { " · drill after each" } else { "" })}
                                            <span class="block text-xs text-slate-500">{format!("next: {}", s.next_runs.join(", "))}</span>
                                            <span class="block text-xs text-slate-500">{s.last_slot.clone().map(|l| format!("last slot {l}")).unwrap_or_else(|| "not run yet".into())}{missed}</span>
                                        </span>
                                        <span class="flex gap-2">
                                            <button type="button" class=BUTTON_QUIET on:click=move |_| { a.run_schedule.dispatch(RunSchedule { id: run_id.clone() }); }>"Run now"</button>
                                            <button type="button" class=BUTTON_DANGER on:click=move |_| { a.remove_schedule.dispatch(RemoveSchedule { id: remove_id.clone() }); }>"Remove"</button>
                                        </span>
                                    </li>
                                }
                            }).collect_view()}
                        </ul>
                    }
                })}
            </Transition>
            <Transition fallback=|| ()>
                {move || {
                    let subject = subject.clone();
                    Suspend::new(async move {
                        let dests = destinations.await.unwrap_or_default();
                        (!dests.is_empty()).then(|| view! {
                            <ActionForm action=a.add_schedule attr:class="mt-4 grid gap-3 sm:grid-cols-2" attr:id="add-schedule">
                                <input type="hidden" name="subject" value=subject />
                                <label class="block text-sm font-medium">"Destination"
                                    <select name="destination_id" class=INPUT>
                                        {dests.iter().map(|d| view! { <option value=d.id.to_string()>{d.name.clone()}</option> }).collect_view()}
                                    </select>
                                </label>
                                <Field label="Cron (minute hour day month weekday)" name="cron" value="0 3 * * *".to_string() error />
                                <Field label="Time zone" name="timezone" value="UTC".to_string() error />
                                <Field label="Keep the last" name="keep_last" value="7".to_string() error />
                                <label class="flex items-center gap-2 text-sm"><input type="checkbox" name="drill" />"Run a restore drill after each backup"</label>
                                <div class="sm:col-span-2"><Submit label="Add schedule" pending=a.add_schedule.pending() /></div>
                            </ActionForm>
                        })
                    })
                }}
            </Transition>
            <FormError error />
        </section>
    }
}

#[component]
fn HistorySection(
    history: History,
    destinations: Destinations,
    service: Option<ServiceView>,
    a: BackupActions,
) -> impl IntoView {
    let restore_error = action_error(a.restore);
    let drill_error = action_error(a.drill);
    // Chosen here, outside the polled list: a refresh never closes the form.
    let chosen = RwSignal::new(None::<BackupView>);
    let can_restore = service.is_some();
    view! {
        <section class=CARD>
            <h2 class="mb-3 font-semibold">"History"</h2>
            <Transition fallback=|| view! { <Loading /> }>
                {move || Suspend::new(async move {
                    let h = history.await.unwrap_or_default();
                    let dests = destinations.await.unwrap_or_default();
                    let dest_name = move |id: uuid::Uuid| dests.iter().find(|d| d.id == id).map(|d| d.name.clone()).unwrap_or_default();
                    if h.backups.is_empty() {
                        return view! { <p class="text-sm text-slate-500">"No backups yet."</p> }.into_any();
                    }
                    view! {
                        <div class="overflow-x-auto">
                            <table class="w-full text-left text-sm" id="backup-history">
                                <thead class="text-xs uppercase text-slate-500"><tr>
                                    <th class="py-1 pr-3">"When"</th><th class="pr-3">"Status"</th><th class="pr-3">"Size"</th>
                                    <th class="pr-3">"Took"</th><th class="pr-3">"Where"</th><th class="pr-3">"Drill"</th><th></th>
                                </tr></thead>
                                <tbody class="divide-y divide-slate-200 dark:divide-slate-800">
                                    {h.backups.into_iter().map(|b| {
                                        let restorable = b.restorable() && can_restore;
                                        let can_drill = b.restorable();
                                        let pick = b.clone();
                                        let drill_id = b.id.to_string();
                                        let status = if b.pruned { "pruned".to_string() } else { b.status.clone() };
                                        view! {
                                            <tr data-backup=b.id.to_string() data-backup-status=b.status.clone()>
                                                <td class="py-2 pr-3 whitespace-nowrap">{b.created_at.clone()}<span class="block text-xs text-slate-500">{b.trigger.clone()}</span></td>
                                                <td class="pr-3"><StatusBadge status=status />
                                                    {b.error.clone().map(|e| view! { <span class="block max-w-xs text-xs text-red-700 dark:text-red-400" data-backup-error="">{e}</span> })}</td>
                                                <td class="pr-3 whitespace-nowrap">{size(b.size_bytes)}</td>
                                                <td class="pr-3">{b.duration_secs.map(|s| format!("{s} s")).unwrap_or_default()}</td>
                                                <td class="pr-3 text-xs"><span class="block">{dest_name(b.destination_id)}</span><code class="break-all">{b.key.clone().unwrap_or_default()}</code></td>
                                                <td class="pr-3 text-xs">
                                                    {b.drill_status.clone().map(|s| view! { <StatusBadge status=s /> })}
                                                    <span class="block max-w-xs">{b.drill_detail.clone()}</span>
                                                </td>
                                                <td class="whitespace-nowrap">
                                                    {restorable.then(|| view! { <button type="button" class=BUTTON_QUIET on:click=move |_| chosen.set(Some(pick.clone()))>"Restore…"</button> })}
                                                    {can_drill.then(|| view! { <button type="button" class="ml-1 text-xs text-indigo-700 hover:underline dark:text-indigo-300" on:click=move |_| {
                                                        a.drill.dispatch(DrillBackup { backup_id: drill_id.clone() });
                                                    }>"Drill"</button> })}
                                                </td>
                                            </tr>
                                        }
                                    }).collect_view()}
                                </tbody>
                            </table>
                        </div>
                        {(!h.restores.is_empty()).then(|| view! {
                            <h3 class="mb-2 mt-4 text-sm font-semibold">"Restores"</h3>
                            <ul class="text-sm" id="restores">
                                {h.restores.into_iter().map(|r| view! {
                                    <li class="py-1" data-restore-status=r.status.clone()>
                                        {format!("{} · ", r.created_at)}<StatusBadge status=r.status.clone() />
                                        {if r.total > 0 {
                                            format!(" · {} % ({} of {})", (r.bytes * 100 / r.total).min(100), size(r.bytes), size(r.total))
                                        } else {
                                            format!(" · {} read", size(r.bytes))
                                        }}
                                        {r.error.map(|e| view! { <span class="block text-xs text-red-700 dark:text-red-400">{e}</span> })}
                                    </li>
                                }).collect_view()}
                            </ul>
                        })}
                    }.into_any()
                })}
            </Transition>
            <FormError error=drill_error />
            {service.map(|svc| {
                let (svc_id, svc_name) = (svc.id.to_string(), svc.name.clone());
                move || chosen.get().map(|picked| {
                    let (svc_id, svc_name) = (svc_id.clone(), svc_name.clone());
                    view! {
                        <div class="mt-4 rounded-md border border-amber-300 p-4 dark:border-amber-800" id="restore-form">
                            <h3 class="mb-2 font-semibold">{format!("Restore the backup of {}", picked.created_at)}</h3>
                            <ActionForm action=a.restore attr:class="grid gap-3 sm:grid-cols-2">
                                <input type="hidden" name="backup_id" value=picked.id.to_string() />
                                <input type="hidden" name="service_id" value=svc_id />
                                <label class="block text-sm font-medium">"Into"
                                    <select name="target" class=INPUT>
                                        <option value="existing">{format!("{svc_name} (replaces its data)")}</option>
                                        <option value="new">"a new service"</option>
                                    </select>
                                </label>
                                <Field label="Type the service's name to confirm (existing)" name="confirm" error=restore_error />
                                <Field label="New service name (new)" name="new_name" error=restore_error />
                                <div class="flex gap-2 sm:col-span-2">
                                    <Submit label="Restore" pending=a.restore.pending() id="restore-submit" />
                                    <button type="button" class=BUTTON_QUIET on:click=move |_| chosen.set(None)>"Cancel"</button>
                                </div>
                                <div class="sm:col-span-2"><FormError error=restore_error /></div>
                            </ActionForm>
                        </div>
                    }
                })
            })}
        </section>
    }
}

#[component]
fn FromBucket(destinations: Destinations, subject: String, a: BackupActions) -> impl IntoView {
    let listed = move || a.bucket.value().get();
    let error = action_error(a.import);
    let chosen_destination = RwSignal::new(String::new());
    let list_subject = subject.clone();
    view! {
        <section class=CARD>
            <h2 class="mb-3 font-semibold">"From the bucket"</h2>
            <p class="mb-3 text-sm text-slate-500">"Objects under this database's folder, including backups Berth has no record of."</p>
            <div class="flex flex-col gap-3 sm:flex-row sm:items-end">
                <label class="block flex-1 text-sm font-medium">"Destination"
                    <select class=INPUT on:change=move |ev| chosen_destination.set(event_target_value(&ev))>
                        <option value="">"choose…"</option>
                        <Transition fallback=|| ()>
                            {move || Suspend::new(async move {
                                destinations.await.unwrap_or_default().into_iter().map(|d| view! { <option value=d.id.to_string()>{d.name}</option> }).collect_view()
                            })}
                        </Transition>
                    </select>
                </label>
                <button type="button" class=BUTTON_QUIET on:click=move |_| {
                    a.bucket.dispatch(BucketObjects { subject: list_subject.clone(), destination_id: chosen_destination.get_untracked() });
                }>"List objects"</button>
            </div>
            {move || match listed() {
                None => ().into_any(),
                Some(Err(e)) => view! { <LoadError error=e /> }.into_any(),
                Some(Ok(objects)) if objects.is_empty() => view! { <p class="mt-3 text-sm text-slate-500">"Nothing there."</p> }.into_any(),
                Some(Ok(objects)) => {
                    let subject = subject.clone();
                    view! {
                        <ul class="mt-3 divide-y divide-slate-200 text-sm dark:divide-slate-800">
                            {objects.into_iter().map(|o| {
                                let (subject, key) = (subject.clone(), o.key.clone());
                                view! {
                                    <li class="flex items-center justify-between py-1">
                                        <span><code class="break-all">{o.key.clone()}</code>{format!(" · {}", size(o.size as i64))}</span>
                                        <button type="button" class=BUTTON_QUIET on:click=move |_| {
                                            a.import.dispatch(ImportBackup { subject: subject.clone(), destination_id: chosen_destination.get_untracked(), key: key.clone() });
                                        }>"Add to history"</button>
                                    </li>
                                }
                            }).collect_view()}
                        </ul>
                    }.into_any()
                }
            }}
            <FormError error />
        </section>
    }
}
