//! Backups of one subject (a database service, or Berth's own database):
//! S3 destinations with a connection test, back up now, schedules, the history
//! with restores and drills, and objects found in the bucket. Used by the
//! service page and by Settings.

use crate::api::services::{
    list_backups, list_destinations, AddDestination, AddSchedule, BucketObjects, DrillBackup, ImportBackup,
    RemoveDestination, RemoveSchedule, RestoreBackup, RunBackup, RunSchedule, TestDestination,
};
use crate::components::live::refresh_on;
use crate::components::status::{Badge, StatusBadge};
use crate::components::ui::{
    action_error, Field, FormError, LoadError, Loading, Submit, BUTTON_DANGER, BUTTON_QUIET, CARD, INPUT,
};
use crate::error::AppError;
use crate::types::{BackupView, BackupsView, DestinationView, Lifecycle, Me, ServiceView};
use leptos::form::ActionForm;
use leptos::prelude::*;

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

/// The panel's actions and resources, made by the page that shows it, in its
/// body rather than inside a `Suspense` (see `Shell`).
#[derive(Clone, Copy)]
pub struct Backups {
    a: BackupActions,
    pub history: History,
    destinations: Destinations,
}

impl Backups {
    /// For `subject`: a service ID, or `berth`.
    pub fn new(subject: Signal<String>) -> Self {
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
            move || {
                (
                    subject.get(),
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
            },
            |(s, ..)| list_backups(s),
        );
        let destinations: Destinations = Resource::new(
            move || (a.add_destination.version().get(), a.remove_destination.version().get()),
            |_| list_destinations(),
        );
        // Backups, restores and drills of this subject, as they move.
        refresh_on(
            move |e| {
                e.kind == "backup"
                    && match subject.get_untracked().as_str() {
                        "berth" => e.service.is_none(),
                        s => e.service.as_deref() == Some(s),
                    }
            },
            tick,
        );
        Self {
            a,
            history,
            destinations,
        }
    }
}

/// Destinations, schedules, history, restores and drills for `subject` (a
/// service ID, or `berth` for Berth's own database, then `service` is None).
///
/// The lists re-read when the server says work moved on; the forms sit outside
/// what that re-renders (they depend only on the destinations), so typing into
/// one is never wiped by a refresh.
#[component]
pub fn BackupsPanel(
    state: Backups,
    subject: String,
    service: Option<ServiceView>,
    /// Runs, restores, drills and schedules (a project admin's); without it
    /// the history and schedules are shown to read.
    manage: bool,
) -> impl IntoView {
    let Backups {
        a,
        history,
        destinations,
    } = state;
    if !manage {
        return view! {
            <p class="text-sm text-slate-500" id="backups-read-only">
                "Your role in this project shows backups; running, restoring and scheduling them needs its admin role."
            </p>
            <Schedules history destinations subject=subject.clone() a manage />
            <HistorySection history destinations service a manage />
        }
        .into_any();
    }
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
        <Schedules history destinations subject=subject.clone() a manage />
        <HistorySection history destinations service a manage />
        <FromBucket destinations subject a />
    }
    .into_any()
}

#[component]
fn DestinationsSection(destinations: Destinations, a: BackupActions) -> impl IntoView {
    let destination_form = NodeRef::<leptos::html::Form>::new();
    crate::components::ui::reset_on_success(a.add_destination, destination_form);
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
                                                <button type="button" class=BUTTON_DANGER data-remove-destination=d.name.clone() on:click=move |_| {
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
                <ActionForm action=a.add_destination node_ref=destination_form attr:class="grid gap-3 sm:grid-cols-2" attr:id="add-destination">
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
fn Schedules(
    history: History,
    destinations: Destinations,
    subject: String,
    a: BackupActions,
    manage: bool,
) -> impl IntoView {
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
                                        {manage.then(|| view! {
                                            <span class="flex gap-2">
                                                <button type="button" class=BUTTON_QUIET on:click=move |_| { a.run_schedule.dispatch(RunSchedule { id: run_id.clone() }); }>"Run now"</button>
                                                <button type="button" class=BUTTON_DANGER data-remove-schedule=s.cron.clone() on:click=move |_| {
                                                    if window().confirm_with_message("Remove this schedule? The backups it made stay.").unwrap_or(false) {
                                                        a.remove_schedule.dispatch(RemoveSchedule { id: remove_id.clone() });
                                                    }
                                                }>"Remove"</button>
                                            </span>
                                        })}
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
                        (manage && !dests.is_empty()).then(|| view! {
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
    manage: bool,
) -> impl IntoView {
    let restore_error = action_error(a.restore);
    let drill_error = action_error(a.drill);
    // Chosen here, outside the re-read list: a refresh never closes the form.
    let chosen = RwSignal::new(None::<BackupView>);
    let can_restore = manage && service.is_some();
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
                                        let can_drill = manage && b.restorable();
                                        let pick = b.clone();
                                        let drill_id = b.id.to_string();
                                        // Deleted by retention: the row stays, the object is gone.
                                        let status = if b.pruned { Badge::PRUNED } else { Badge::from(b.status) };
                                        view! {
                                            <tr data-backup=b.id.to_string() data-backup-status=b.status.as_str()>
                                                <td class="py-2 pr-3 whitespace-nowrap">{b.created_at.clone()}<span class="block text-xs text-slate-500">{b.trigger.to_string()}</span></td>
                                                <td class="pr-3"><StatusBadge status=status />
                                                    {b.error.clone().map(|e| view! { <span class="block max-w-xs text-xs text-red-700 dark:text-red-400" data-backup-error="">{e}</span> })}</td>
                                                <td class="pr-3 whitespace-nowrap">{size(b.size_bytes)}</td>
                                                <td class="pr-3">{b.duration_secs.map(|s| format!("{s} s")).unwrap_or_default()}</td>
                                                <td class="pr-3 text-xs"><span class="block">{dest_name(b.destination_id)}</span><code class="break-all">{b.key.clone().unwrap_or_default()}</code></td>
                                                <td class="pr-3 text-xs">
                                                    {b.drill_status.map(|s| view! { <StatusBadge status=Badge::from(s) /> })}
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
                                    <li class="py-1" data-restore-status=r.status.as_str()>
                                        {format!("{} · ", r.created_at)}<StatusBadge status=Badge::from(r.status) />
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
