//! Notification channels (Slack, Discord, Telegram, Teams, Google Chat, a
//! signed webhook, email) with the events each is told about, "send test",
//! the latest deliveries with their status, updated as they move, and alert
//! rules with their incidents. Shown in Settings to organization admins and
//! owners.

use crate::api::notify::{
    list_notifications, AddChannel, AddRule, EditChannel, EditRule, RemoveChannel, RemoveRule, ResendDelivery,
    SetChannelEvents, TestChannel,
};
use crate::components::live::refresh_on;
use crate::components::status::{Badge, StatusBadge};
use crate::components::ui::{
    action_error, Field, FormError, LoadError, Loading, Submit, When, BUTTON_DANGER, BUTTON_QUIET, CARD, INPUT,
};
use crate::error::AppError;
use crate::types::{
    AlertMetric, ChannelFields, ChannelKind, ChannelView, DeliveryStatus, NotificationsView, NotifyEvent, RuleView,
};
use leptos::form::ActionForm;
use leptos::prelude::*;

type List = Resource<Result<NotificationsView, AppError>>;

/// The section's actions and list, made in the page's body (not inside a
/// `Suspense`, see `Shell`).
#[derive(Clone, Copy)]
pub struct Notifications {
    add: ServerAction<AddChannel>,
    edit: ServerAction<EditChannel>,
    remove: ServerAction<RemoveChannel>,
    events: ServerAction<SetChannelEvents>,
    test: ServerAction<TestChannel>,
    resend: ServerAction<ResendDelivery>,
    add_rule: ServerAction<AddRule>,
    edit_rule: ServerAction<EditRule>,
    remove_rule: ServerAction<RemoveRule>,
    list: List,
    /// The channel and the rule whose edit form was sent last (their errors
    /// show there only): owned here, as the list re-renders after each edit.
    editing: RwSignal<Option<uuid::Uuid>>,
    editing_rule: RwSignal<Option<uuid::Uuid>>,
    /// The channels for the rule form: re-read only when channels change, so
    /// a delivery moving on never wipes what is being typed.
    setup: List,
}

impl Notifications {
    pub fn new() -> Self {
        let (add, remove, events, test) = (
            ServerAction::<AddChannel>::new(),
            ServerAction::<RemoveChannel>::new(),
            ServerAction::<SetChannelEvents>::new(),
            ServerAction::<TestChannel>::new(),
        );
        let (add_rule, remove_rule) = (ServerAction::<AddRule>::new(), ServerAction::<RemoveRule>::new());
        let (edit, edit_rule) = (ServerAction::<EditChannel>::new(), ServerAction::<EditRule>::new());
        let resend = ServerAction::<ResendDelivery>::new();
        let tick = RwSignal::new(0u32);
        let list: List = Resource::new(
            move || {
                (
                    add.version().get(),
                    edit.version().get(),
                    remove.version().get(),
                    events.version().get(),
                    test.version().get(),
                    resend.version().get(),
                    add_rule.version().get(),
                    edit_rule.version().get(),
                    remove_rule.version().get(),
                    tick.get(),
                )
            },
            |_| list_notifications(),
        );
        let setup: List = Resource::new(
            move || (add.version().get(), edit.version().get(), remove.version().get()),
            |_| list_notifications(),
        );
        // Deliveries move on their own (sending, retried, delivered).
        refresh_on(|e| e.kind == "delivery", tick);
        Self {
            add,
            edit,
            remove,
            events,
            test,
            resend,
            add_rule,
            edit_rule,
            remove_rule,
            editing: RwSignal::new(None),
            editing_rule: RwSignal::new(None),
            list,
            setup,
        }
    }
}

impl Default for Notifications {
    fn default() -> Self {
        Self::new()
    }
}

/// Which of the form's field groups a kind uses.
fn uses_url(kind: &str) -> bool {
    matches!(kind, "slack" | "discord" | "teams" | "google_chat" | "webhook")
}

#[component]
pub fn NotificationsSection(state: Notifications) -> impl IntoView {
    let Notifications {
        add,
        edit,
        remove,
        events,
        test,
        resend,
        add_rule,
        edit_rule,
        remove_rule,
        editing,
        editing_rule,
        list,
        setup,
    } = state;
    let form = NodeRef::<leptos::html::Form>::new();
    crate::components::ui::reset_on_success(add, form);
    let add_error = action_error(add);
    let change_error = Signal::derive(move || {
        events
            .value()
            .get()
            .and_then(|r| r.err())
            .or_else(|| test.value().get().and_then(|r| r.err()))
            .or_else(|| resend.value().get().and_then(|r| r.err()))
            .or_else(|| remove.value().get().and_then(|r| r.err()))
            .or_else(|| remove_rule.value().get().and_then(|r| r.err()))
    });
    // A signing secret from the latest add or edit that answered one.
    let shown = RwSignal::new(None::<String>);
    Effect::new(move |_| {
        if let Some(r) = add.value().get() {
            shown.set(r.ok().flatten());
        }
    });
    Effect::new(move |_| {
        if let Some(r) = edit.value().get() {
            shown.set(r.ok().flatten());
        }
    });
    let secret = move || shown.get();
    // Shapes the form: changed only by the kind select's handler.
    let kind = RwSignal::new("slack".to_owned());
    view! {
        <section class=CARD id="notifications">
            <h2 class="mb-1 font-semibold">"Notifications"</h2>
            <p class="mb-3 text-sm text-slate-600 dark:text-slate-400">
                "Where Berth tells your team about deployments, backups, restore drills and upgrades."
            </p>
            <Transition fallback=|| view! { <Loading /> }>
                {move || Suspend::new(async move {
                    match list.await {
                        Err(e) => view! { <LoadError error=e /> }.into_any(),
                        Ok(v) => view! { <Channels v edit remove events test resend edit_rule remove_rule editing editing_rule /> }.into_any(),
                    }
                })}
            </Transition>
            <FormError error=change_error />
            <Show when=move || secret().is_some()>
                <p role="status" class="mt-3 rounded-md bg-amber-50 px-3 py-2 text-sm text-amber-900 dark:bg-amber-950 dark:text-amber-100">
                    "Signing secret (shown once; receivers check X-Berth-Signature with it): "
                    <code id="channel-secret" class="break-all font-mono">{secret}</code>
                </p>
            </Show>
            <h3 class="mb-2 mt-5 text-sm font-semibold">"Add a channel"</h3>
            <ActionForm action=add node_ref=form attr:class="space-y-3" attr:id="add-channel">
                <div class="grid gap-3 sm:grid-cols-2">
                    <Field label="Name" name="name" error=add_error />
                    <label class="block text-sm font-medium">"Kind"
                        <select name="kind" id="field-kind" class=INPUT on:change=move |ev| kind.set(event_target_value(&ev))>
                            {ChannelKind::VARIANTS.iter().map(|k| view! { <option value=k.name()>{k.words()}</option> }).collect_view()}
                        </select>
                    </label>
                </div>
                <Show when=move || uses_url(&kind.get())>
                    <Field label="Incoming webhook URL" name="url" kind="url" error=add_error />
                </Show>
                <Show when=move || kind.get() == "telegram">
                    <div class="grid gap-3 sm:grid-cols-2">
                        <Field label="Bot token" name="bot_token" kind="password" error=add_error />
                        <Field label="Chat ID" name="chat_id" error=add_error />
                    </div>
                </Show>
                <Show when=move || kind.get() == "email">
                    <div class="grid gap-3 sm:grid-cols-2">
                        <Field label="SMTP host" name="smtp_host" error=add_error />
                        <Field label="Port (587 STARTTLS, 465 TLS)" name="smtp_port" error=add_error />
                        <label class="block text-sm font-medium">"Security"
                            <select name="smtp_security" id="field-smtp_security" class=INPUT>
                                <option value="starttls">"STARTTLS"</option>
                                <option value="tls">"TLS"</option>
                                <option value="none">"None (local relay)"</option>
                            </select>
                        </label>
                        <Field label="User name" name="smtp_username" autocomplete="off" error=add_error />
                        <Field label="Password" name="smtp_password" kind="password" autocomplete="new-password" error=add_error />
                        <Field label="From" name="email_from" error=add_error />
                        <Field label="To (comma-separated)" name="email_to" error=add_error />
                    </div>
                </Show>
                <EventChoices chosen=vec![NotifyEvent::DeploymentFailed, NotifyEvent::BackupFailed, NotifyEvent::DrillFailed] prefix="new" />
                <FormError error=add_error />
                <Submit label="Add channel" pending=add.pending() id="add-channel-submit" />
            </ActionForm>
            <RuleForm add_rule setup />
        </section>
    }
}

/// A new alert rule: the figure, the threshold, how long, and whom to tell.
#[component]
fn RuleForm(add_rule: ServerAction<AddRule>, setup: List) -> impl IntoView {
    let form = NodeRef::<leptos::html::Form>::new();
    crate::components::ui::reset_on_success(add_rule, form);
    let error = action_error(add_rule);
    view! {
        <h3 class="mb-2 mt-6 text-sm font-semibold">"Add an alert rule"</h3>
        <ActionForm action=add_rule node_ref=form attr:class="space-y-3" attr:id="add-rule">
            <div class="grid gap-3 sm:grid-cols-2">
                // The channel form above has a "name" field too: IDs of their own.
                <Field label="Name" name="name" id_prefix="rule".to_owned() error />
                <label class="block text-sm font-medium">"When"
                    <select name="metric" id="rule-field-metric" class=INPUT>
                        {AlertMetric::VARIANTS.iter().map(|m| view! { <option value=m.name()>{m.words()}</option> }).collect_view()}
                    </select>
                </label>
                <Field label="Above (percent; restarts, OOM kills: times; certificate: days)" name="threshold" id_prefix="rule".to_owned() error />
                <Field label="For at least (seconds; counts: within)" name="for_secs" value="300".to_owned() id_prefix="rule".to_owned() error />
            </div>
            <Transition fallback=|| view! { <Loading /> }>
                {move || Suspend::new(async move {
                    let channels = setup.await.map(|v| v.channels).unwrap_or_default();
                    if channels.is_empty() {
                        return view! { <p class="text-sm text-slate-500">"Add a channel first: a rule tells channels."</p> }.into_any();
                    }
                    view! {
                        <fieldset class="flex flex-wrap gap-x-4 gap-y-1 text-sm">
                            <legend class="mb-1 font-medium">"Tell"</legend>
                            {channels.into_iter().enumerate().map(|(i, c)| {
                                let id = format!("rule-channel-{i}");
                                let for_id = id.clone();
                                view! {
                                    <label class="inline-flex items-center gap-1" for=for_id>
                                        <input type="checkbox" id=id name=format!("channels[{i}]") value=c.id.to_string() />
                                        {c.name}
                                    </label>
                                }
                            }).collect_view()}
                        </fieldset>
                    }.into_any()
                })}
            </Transition>
            <FormError error />
            <Submit label="Add rule" pending=add_rule.pending() id="add-rule-submit" />
        </ActionForm>
    }
}

/// One checkbox per event a channel can choose (`events[i]`).
#[component]
fn EventChoices(chosen: Vec<NotifyEvent>, #[prop(into)] prefix: String) -> impl IntoView {
    view! {
        <fieldset class="flex flex-wrap gap-x-4 gap-y-1 text-sm">
            <legend class="sr-only">"Events"</legend>
            {NotifyEvent::CHOOSABLE.iter().enumerate().map(|(i, e)| {
                let id = format!("{prefix}-event-{}", e.name());
                let for_id = id.clone();
                view! {
                    <label class="inline-flex items-center gap-1" for=for_id>
                        <input type="checkbox" id=id name=format!("events[{i}]") value=e.name() checked=chosen.contains(e) />
                        {e.words()}
                    </label>
                }
            }).collect_view()}
        </fieldset>
    }
}

#[component]
fn Channels(
    v: NotificationsView,
    edit: ServerAction<EditChannel>,
    remove: ServerAction<RemoveChannel>,
    events: ServerAction<SetChannelEvents>,
    test: ServerAction<TestChannel>,
    resend: ServerAction<ResendDelivery>,
    edit_rule: ServerAction<EditRule>,
    remove_rule: ServerAction<RemoveRule>,
    editing: RwSignal<Option<uuid::Uuid>>,
    editing_rule: RwSignal<Option<uuid::Uuid>>,
) -> impl IntoView {
    // Every channel, for the rules' edit forms.
    let all: Vec<(uuid::Uuid, String)> = v.channels.iter().map(|c| (c.id, c.name.clone())).collect();
    let NotificationsView {
        channels,
        deliveries,
        rules,
        incidents,
    } = v;
    view! {
        {channels.is_empty().then(|| view! { <p class="text-sm text-slate-500">"No channels yet."</p> })}
        <ul class="divide-y divide-slate-200 text-sm dark:divide-slate-800" id="channels">
            {channels.into_iter().enumerate().map(|(row, c)| {
                let (test_id, remove_id) = (c.id.to_string(), c.id.to_string());
                let prefix = format!("channel{row}");
                let editor = c.editable.clone().map(|fields| view! { <EditForm c=c.clone() fields row edit editing /> });
                view! {
                    <li class="space-y-2 py-3" data-channel=c.name.clone()>
                        <div class="flex flex-col gap-2 sm:flex-row sm:items-center sm:justify-between">
                            <span><span class="font-medium">{c.name.clone()}</span>
                                <span class="ml-2 text-slate-500">{format!("{} · {}", c.kind.words(), c.summary)}</span></span>
                            <span class="flex gap-2">
                                <button type="button" class=BUTTON_QUIET data-test-channel=c.name.clone() on:click=move |_| {
                                    test.dispatch(TestChannel { id: test_id.clone() });
                                }>"Send test"</button>
                                <button type="button" class=BUTTON_DANGER data-remove-channel=c.name.clone() on:click=move |_| {
                                    if window().confirm_with_message("Remove this channel?").unwrap_or(false) {
                                        remove.dispatch(RemoveChannel { id: remove_id.clone() });
                                    }
                                }>"Remove"</button>
                            </span>
                        </div>
                        <ActionForm action=events attr:class="flex flex-col gap-2 sm:flex-row sm:items-center" attr:id=format!("channel-events-{row}")>
                            <input type="hidden" name="id" value=c.id.to_string() />
                            <EventChoices chosen=c.events.clone() prefix />
                            <button type="submit" class=BUTTON_QUIET>"Save events"</button>
                        </ActionForm>
                        {editor}
                    </li>
                }
            }).collect_view()}
        </ul>
        {(!rules.is_empty()).then(|| view! {
            <h3 class="mb-2 mt-5 text-sm font-semibold">"Alert rules"</h3>
            <ul class="divide-y divide-slate-200 text-sm dark:divide-slate-800" id="rules">
                {rules.into_iter().enumerate().map(|(row, r)| {
                    let id = r.id.to_string();
                    let editor = view! { <RuleEditForm r=r.clone() all=all.clone() row edit_rule editing=editing_rule /> };
                    view! {
                        <li class="py-2" data-rule=r.name.clone()>
                        <div class="flex flex-col gap-2 sm:flex-row sm:items-center sm:justify-between">
                            <span><span class="font-medium">{r.name.clone()}</span>
                                <span class="ml-2 text-slate-500">{if r.metric == AlertMetric::Certificate {
                                    format!("{} within {} days → {}", r.metric.words(), r.threshold, r.channels.join(", "))
                                } else if r.metric.counts() {
                                    format!("{} {} times within {} s → {}", r.metric.words(), r.threshold, r.for_secs, r.channels.join(", "))
                                } else {
                                    format!("{} above {} % for {} s → {}", r.metric.words(), r.threshold, r.for_secs, r.channels.join(", "))
                                }}</span></span>
                            <button type="button" class=BUTTON_DANGER data-remove-rule=r.name.clone() on:click=move |_| {
                                if window().confirm_with_message("Remove this rule?").unwrap_or(false) {
                                    remove_rule.dispatch(RemoveRule { id: id.clone() });
                                }
                            }>"Remove"</button>
                        </div>
                        {editor}
                        </li>
                    }
                }).collect_view()}
            </ul>
        })}
        {(!incidents.is_empty()).then(|| view! {
            <h3 class="mb-2 mt-5 text-sm font-semibold">"Incidents"</h3>
            <ul class="space-y-1 text-sm" id="incidents">
                {incidents.into_iter().map(|i| view! {
                    <li class="flex flex-wrap items-center gap-2" data-incident=i.id.to_string()>
                        <StatusBadge status=Badge::from(i.state) />
                        <span class="font-medium">{i.rule}</span>
                        <span>{format!("{} at {}", i.subject, i.value)}</span>
                        <When at=i.started_at class="text-xs text-slate-500" />
                        {i.resolved_at.map(|t| view! { <span class="text-xs text-slate-500">"resolved " <When at=t /></span> })}
                    </li>
                }).collect_view()}
            </ul>
        })}
        {(!deliveries.is_empty()).then(|| view! {
            <h3 class="mb-2 mt-5 text-sm font-semibold">"Latest deliveries"</h3>
            // Focusable, so the table scrolls from the keyboard at phone width.
            <div class="overflow-x-auto" tabindex="0" role="region" aria-label="Latest deliveries">
                <table class="w-full text-left text-sm" id="deliveries">
                    <thead class="text-slate-500"><tr>
                        <th class="py-1 pr-3 font-medium">"When"</th>
                        <th class="py-1 pr-3 font-medium">"Channel"</th>
                        <th class="py-1 pr-3 font-medium">"Event"</th>
                        <th class="py-1 pr-3 font-medium">"Status"</th>
                        <th class="py-1 pr-3 font-medium">"Attempts"</th>
                        <th class="py-1 pr-3 font-medium">"Last error"</th>
                        <th class="py-1 font-medium"><span class="sr-only">"Actions"</span></th>
                    </tr></thead>
                    <tbody class="divide-y divide-slate-200 dark:divide-slate-800">
                        {deliveries.into_iter().map(|d| {
                            let failed = d.status == DeliveryStatus::Failed;
                            let again = d.id.to_string();
                            view! {
                            <tr data-delivery=d.id.to_string()>
                                <td class="py-1 pr-3 whitespace-nowrap"><When at=d.at /></td>
                                <td class="py-1 pr-3">{d.channel}</td>
                                <td class="py-1 pr-3">{d.event}</td>
                                <td class="py-1 pr-3"><StatusBadge status=Badge::from(d.status) /></td>
                                <td class="py-1 pr-3">{d.attempts}</td>
                                <td class="py-1 pr-3 break-all text-slate-600 dark:text-slate-400">{d.error.unwrap_or_default()}</td>
                                <td class="py-1">
                                    {failed.then(|| view! {
                                        <button type="button" class=BUTTON_QUIET data-resend=again.clone() on:click=move |_| {
                                            resend.dispatch(ResendDelivery { id: again.clone() });
                                        }>"Send again"</button>
                                    })}
                                </td>
                            </tr>
                        }}).collect_view()}
                    </tbody>
                </table>
            </div>
        })}
    }
}

/// A channel's name and settings, changed in place. Secrets are not shown:
/// left blank they are kept.
#[component]
fn EditForm(
    c: ChannelView,
    fields: ChannelFields,
    row: usize,
    edit: ServerAction<EditChannel>,
    editing: RwSignal<Option<uuid::Uuid>>,
) -> impl IntoView {
    let (id, name) = (c.id, c.name.clone());
    let error = Signal::derive(move || {
        if editing.get() == Some(id) {
            edit.value().get().and_then(|r| r.err())
        } else {
            None
        }
    });
    let p = format!("channel{row}-edit");
    let kind = c.kind.name();
    let keep = "Leave blank to keep";
    let settings = if uses_url(kind) {
        let label = if kind == "webhook" {
            "Receiver URL"
        } else {
            "Incoming webhook URL"
        };
        view! {
            <Field label name="url" kind="url" placeholder=keep id_prefix=p.clone() error />
            {(kind == "webhook").then(|| {
                let box_id = format!("{p}-new-secret");
                let for_id = box_id.clone();
                view! {
                    <label class="inline-flex items-center gap-1 text-sm" for=for_id>
                        <input type="checkbox" id=box_id name="new_secret" value="true" />
                        "Make a new signing secret (the old one stops working)"
                    </label>
                }
            })}
        }
        .into_any()
    } else if kind == "telegram" {
        view! {
            <div class="grid gap-3 sm:grid-cols-2">
                <Field label="Bot token" name="bot_token" kind="password" placeholder=keep autocomplete="new-password" id_prefix=p.clone() error />
                <Field label="Chat ID" name="chat_id" value=fields.chat_id id_prefix=p.clone() error />
            </div>
        }
        .into_any()
    } else {
        let security_id = format!("{p}-field-smtp_security");
        let chosen = fields.smtp_security.clone();
        view! {
            <div class="grid gap-3 sm:grid-cols-2">
                <Field label="SMTP host" name="smtp_host" value=fields.smtp_host id_prefix=p.clone() error />
                <Field label="Port" name="smtp_port" value=fields.smtp_port id_prefix=p.clone() error />
                <label class="block text-sm font-medium">"Security"
                    <select name="smtp_security" id=security_id class=INPUT>
                        {[("starttls", "STARTTLS"), ("tls", "TLS"), ("none", "None (local relay)")].into_iter().map(|(v, words)| {
                            view! { <option value=v selected=chosen == v>{words}</option> }
                        }).collect_view()}
                    </select>
                </label>
                <Field label="User name" name="smtp_username" value=fields.smtp_username autocomplete="off" id_prefix=p.clone() error />
                <Field label="Password" name="smtp_password" kind="password" placeholder=keep autocomplete="new-password" id_prefix=p.clone() error />
                <Field label="From" name="email_from" value=fields.email_from id_prefix=p.clone() error />
                <Field label="To (comma-separated)" name="email_to" value=fields.email_to id_prefix=p.clone() error />
            </div>
        }
        .into_any()
    };
    view! {
        // `submit` bubbles from the form: this row is the one being edited.
        <details
            class="text-sm"
            data-edit-channel=c.name
            // The list is read again after every edit: a refused one stays open with its errors.
            open=move || editing.get() == Some(id) && edit.value().get().is_some_and(|r| r.is_err())
            on:submit=move |_| editing.set(Some(id))
        >
            <summary class="cursor-pointer text-slate-600 dark:text-slate-400">"Edit settings"</summary>
            <ActionForm action=edit attr:class="mt-2 space-y-3" attr:id=format!("channel-edit-{row}")>
                <input type="hidden" name="id" value=id.to_string() />
                <Field label="Name" name="name" value=name id_prefix=p.clone() error />
                {settings}
                <FormError error />
                <button type="submit" class=BUTTON_QUIET>"Save settings"</button>
            </ActionForm>
        </details>
    }
}

/// An alert rule's name, threshold, time and channels, changed in place (its
/// figure stays).
#[component]
fn RuleEditForm(
    r: RuleView,
    all: Vec<(uuid::Uuid, String)>,
    row: usize,
    edit_rule: ServerAction<EditRule>,
    editing: RwSignal<Option<uuid::Uuid>>,
) -> impl IntoView {
    let (id, marker) = (r.id, r.name.clone());
    let error = Signal::derive(move || {
        if editing.get() == Some(id) {
            edit_rule.value().get().and_then(|r| r.err())
        } else {
            None
        }
    });
    let p = format!("rule{row}-edit");
    let threshold_label = if r.metric == AlertMetric::Certificate {
        "Within (days)"
    } else if r.metric.counts() {
        "At least (times)"
    } else {
        "Above (percent)"
    };
    let for_label = if r.metric.counts() {
        "Within (seconds)"
    } else {
        "For at least (seconds)"
    };
    view! {
        <details
            class="mt-1 text-sm"
            data-edit-rule=marker
            // The list is read again after every edit: a refused one stays open with its errors.
            open=move || editing.get() == Some(id) && edit_rule.value().get().is_some_and(|r| r.is_err())
            on:submit=move |_| editing.set(Some(id))
        >
            <summary class="cursor-pointer text-slate-600 dark:text-slate-400">"Edit rule"</summary>
            <ActionForm action=edit_rule attr:class="mt-2 space-y-3" attr:id=format!("rule-edit-{row}")>
                <input type="hidden" name="id" value=id.to_string() />
                <input type="hidden" name="metric" value=r.metric.name() />
                <div class="grid gap-3 sm:grid-cols-3">
                    <Field label="Name" name="name" value=r.name.clone() id_prefix=p.clone() error />
                    <Field label=threshold_label name="threshold" value=r.threshold.to_string() id_prefix=p.clone() error />
                    {(r.metric != AlertMetric::Certificate).then(|| view! {
                        <Field label=for_label name="for_secs" value=r.for_secs.to_string() id_prefix=p.clone() error />
                    })}
                </div>
                <fieldset class="flex flex-wrap gap-x-4 gap-y-1">
                    <legend class="mb-1 font-medium">"Tell"</legend>
                    {all.into_iter().enumerate().map(|(i, (cid, name))| {
                        let box_id = format!("{p}-channel-{i}");
                        let for_id = box_id.clone();
                        view! {
                            <label class="inline-flex items-center gap-1" for=for_id>
                                <input type="checkbox" id=box_id name=format!("channels[{i}]") value=cid.to_string() checked=r.channel_ids.contains(&cid) />
                                {name}
                            </label>
                        }
                    }).collect_view()}
                </fieldset>
                <FormError error />
                <button type="submit" class=BUTTON_QUIET>"Save rule"</button>
            </ActionForm>
        </details>
    }
}
