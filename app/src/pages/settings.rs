//! Settings: the user's profile and password, the organization's members and
//! invites, API keys, its notification channels, backups of Berth's own database (instance administrators only), and
//! creating another organization.

use crate::api::audit::list_audit;
use crate::api::instance::{get_instance, SetAcme, SetInstanceAdmin, SetOrgCreation};
use crate::api::keys::{list_keys, CreateKey, RevokeKey};
use crate::api::orgs::{
    list_invites, list_members, ChangeMemberRole, CreateInvite, CreateOrg, RemoveMember, RevokeInvite, SetMemberAccess,
};
use crate::api::projects::list_projects;
use crate::api::session::{ChangePassword, UpdateProfile};
use crate::api::twofactor::{
    get_two_factor, BeginTwoFactor, ConfirmTwoFactor, DisableTwoFactor, RequireTwoFactor, ResetTwoFactor,
};
use crate::components::backups::{Backups, BackupsPanel};
use crate::components::notify::{Notifications, NotificationsSection};
use crate::components::shell::Session;
use crate::components::ui::{
    action_error, hard_navigate, Field, FormError, LoadError, Loading, Submit, BUTTON_DANGER, BUTTON_QUIET, CARD, INPUT,
};
use crate::types::Me;
use leptos::form::ActionForm;
use leptos::prelude::*;

#[component]
pub fn SettingsPage() -> impl IntoView {
    // Every resource of the page is made here, outside the `Suspense` (see
    // `Shell`), whether or not the user may see its section: the server
    // answers those it may not with an error, which is not shown.
    let role = ServerAction::<ChangeMemberRole>::new();
    let remove = ServerAction::<RemoveMember>::new();
    let access = ServerAction::<SetMemberAccess>::new();
    let members = Resource::new(
        move || (role.version().get(), remove.version().get(), access.version().get()),
        |_| list_members(),
    );
    // The projects a member can be limited to (the member form's rows).
    let projects = Resource::new(|| (), |_| list_projects());
    let invite = ServerAction::<CreateInvite>::new();
    let revoke = ServerAction::<RevokeInvite>::new();
    let invites = Resource::new(
        move || (invite.version().get(), revoke.version().get()),
        |_| list_invites(),
    );
    let org_creation = ServerAction::<SetOrgCreation>::new();
    let set_admin = ServerAction::<SetInstanceAdmin>::new();
    let acme = ServerAction::<SetAcme>::new();
    let instance = Resource::new(
        move || {
            (
                org_creation.version().get(),
                set_admin.version().get(),
                acme.version().get(),
            )
        },
        |_| get_instance(),
    );
    let begin_2fa = ServerAction::<BeginTwoFactor>::new();
    let confirm_2fa = ServerAction::<ConfirmTwoFactor>::new();
    let disable_2fa = ServerAction::<DisableTwoFactor>::new();
    let require_2fa = ServerAction::<RequireTwoFactor>::new();
    let reset_2fa = ServerAction::<ResetTwoFactor>::new();
    let two_factor = Resource::new(
        move || {
            (
                confirm_2fa.version().get(),
                disable_2fa.version().get(),
                require_2fa.version().get(),
            )
        },
        |_| get_two_factor(),
    );
    let make_key = ServerAction::<CreateKey>::new();
    let revoke_key = ServerAction::<RevokeKey>::new();
    let keys = Resource::new(
        move || (make_key.version().get(), revoke_key.version().get()),
        |_| list_keys(),
    );
    // The audit log's filters (who, what, since, the instance's): changed by
    // its form's submit handler only.
    let audit_filter = RwSignal::new((String::new(), String::new(), String::new(), false));
    let audit = Resource::new(
        move || audit_filter.get(),
        |(who, what, since, instance)| list_audit(who, what, since, instance.then(|| "on".to_owned())),
    );
    let own = Backups::new(Signal::derive(|| "berth".to_owned()));
    let notifications = Notifications::new();
    let session = Session::get();
    view! {
        <div class="mx-auto max-w-4xl space-y-6">
            <h1 class="text-2xl font-semibold">"Settings"</h1>
            <Suspense fallback=|| view! { <Loading /> }>
                {move || Suspend::new(async move {
                    session.provide_me().await;
                    let me = use_context::<Me>();
                    let manage = me.as_ref().map(|m| m.can_manage()).unwrap_or(false);
                    let admin = me.as_ref().map(|m| m.instance_admin).unwrap_or(false);
                    let create_org = me.as_ref().map(|m| m.can_create_org).unwrap_or(false);
                    let name = me.map(|m| m.name).unwrap_or_default();
                    view! {
                        <Profile name />
                        <PasswordForm />
                        <TwoFactor begin=begin_2fa confirm=confirm_2fa disable=disable_2fa require=require_2fa status=two_factor manage />
                        <Members manage role remove access members projects />
                        <ApiKeys create=make_key revoke=revoke_key keys projects manage admin />
                        <Show when=move || manage>
                            <Invites create=invite revoke invites />
                            <AuditLog filter=audit_filter rows=audit admin />
                            <NotificationsSection state=notifications />
                        </Show>
                        <Show when=move || create_org>
                            <NewOrganization />
                        </Show>
                        <Show when=move || admin>
                            <Instance org_creation set_admin reset_2fa view_=instance />
                            <Certificates acme view_=instance />
                            <OwnDatabase own />
                        </Show>
                    }
                })}
            </Suspense>
        </div>
    }
}

#[component]
fn Profile(name: String) -> impl IntoView {
    let save = ServerAction::<UpdateProfile>::new();
    let error = action_error(save);
    let saved = move || matches!(save.value().get(), Some(Ok(())));
    view! {
        <section class=CARD>
            <h2 class="mb-3 font-semibold">"Profile"</h2>
            <ActionForm action=save attr:class="space-y-4">
                <Field label="Name" name="name" value=name error />
                <FormError error />
                <div class="flex items-center gap-3">
                    <Submit label="Save" pending=save.pending() />
                    <Show when=saved><span class="text-sm text-green-600">"Saved"</span></Show>
                </div>
            </ActionForm>
        </section>
    }
}

#[component]
fn PasswordForm() -> impl IntoView {
    let change = ServerAction::<ChangePassword>::new();
    let error = action_error(change);
    let done = move || matches!(change.value().get(), Some(Ok(())));
    view! {
        <section class=CARD>
            <h2 class="mb-3 font-semibold">"Password"</h2>
            <ActionForm action=change attr:class="space-y-4" attr:id="password-form">
                <Field label="Current password" name="current_password" kind="password" autocomplete="current-password" error />
                <Field label="New password (at least 10 characters)" name="new_password" kind="password" autocomplete="new-password" error />
                <FormError error />
                <div class="flex items-center gap-3">
                    <Submit label="Change password" pending=change.pending() />
                    <Show when=done><span class="text-sm text-green-600">"Changed; your other sessions were signed out"</span></Show>
                </div>
            </ActionForm>
        </section>
    }
}

#[component]
fn Members(
    manage: bool,
    role: ServerAction<ChangeMemberRole>,
    remove: ServerAction<RemoveMember>,
    access: ServerAction<SetMemberAccess>,
    members: Resource<Result<Vec<crate::types::MemberView>, crate::error::AppError>>,
    projects: Resource<Result<Vec<crate::types::ProjectSummary>, crate::error::AppError>>,
) -> impl IntoView {
    let error = Signal::derive(move || {
        action_error(role)
            .get()
            .or_else(|| action_error(remove).get())
            .or_else(|| action_error(access).get())
    });
    // Whose "Project access" panel is open: a save re-reads the list, and the
    // rebuilt panel opens again rather than folding under the user's hands.
    // Nothing reacts to it, so it is stored, not a signal.
    let opened = StoredValue::new(None::<String>);
    view! {
        <section class=CARD>
            <h2 class="mb-3 font-semibold">"Members"</h2>
            <FormError error />
            <Transition fallback=|| view! { <Loading /> }>
                {move || Suspend::new(async move {
                    let all_projects = projects.await.unwrap_or_default();
                    match members.await {
                        Err(e) => view! { <LoadError error=e /> }.into_any(),
                        Ok(list) => view! {
                            <ul class="divide-y divide-slate-200 dark:divide-slate-800" id="members">
                                {list.into_iter().enumerate().map(|(row, m)| {
                                    let uid = m.user_id.to_string();
                                    let uid2 = uid.clone();
                                    let email = m.email.clone();
                                    let limits = (manage && m.role == "member").then(|| view! {
                                        <ProjectAccess row member=m.clone() projects=all_projects.clone() access opened />
                                    });
                                    let reach = if m.limited {
                                        format!("{} project(s)", m.grants.len())
                                    } else {
                                        "All projects".to_owned()
                                    };
                                    view! {
                                        <li class="flex flex-col gap-2 py-3 sm:flex-row sm:items-start sm:justify-between">
                                            <div>
                                                <p class="font-medium">{m.name}</p>
                                                <p class="text-sm text-slate-500">{m.email}</p>
                                                <p class="text-sm text-slate-500" data-reach=row>{reach}</p>
                                                {limits}
                                            </div>
                                            {if manage {
                                                view! {
                                                    <div class="flex gap-2">
                                                        <select
                                                            class=INPUT
                                                            aria-label="Role"
                                                            on:change=move |ev| {
                                                                role.dispatch(ChangeMemberRole { user_id: uid.clone(), role: event_target_value(&ev) });
                                                            }
                                                        >
                                                            {["owner", "admin", "member"].into_iter().map(|r| view! {
                                                                <option value=r selected=m.role == r>{r}</option>
                                                            }).collect_view()}
                                                        </select>
                                                        <button type="button" class=BUTTON_DANGER data-remove-member=email on:click=move |_| {
                                                            // As every removal here: asked first.
                                                            if window().confirm_with_message("Remove this member from the organization?").unwrap_or(false) {
                                                                remove.dispatch(RemoveMember { user_id: uid2.clone() });
                                                            }
                                                        }>"Remove"</button>
                                                    </div>
                                                }.into_any()
                                            } else {
                                                view! { <span class="text-sm text-slate-500">{m.role}</span> }.into_any()
                                            }}
                                        </li>
                                    }
                                }).collect_view()}
                            </ul>
                        }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

/// A plain member's reach: every project, or only the chosen ones with a role
/// in each (viewer, deployer, admin).
#[component]
fn ProjectAccess(
    row: usize,
    member: crate::types::MemberView,
    projects: Vec<crate::types::ProjectSummary>,
    access: ServerAction<SetMemberAccess>,
    opened: StoredValue<Option<String>>,
) -> impl IntoView {
    let form_id = format!("access-{row}");
    let user = member.user_id.to_string();
    let open = opened.with_value(|o| o.as_deref() == Some(user.as_str()));
    let toggled = move |ev: leptos::ev::Event| {
        use wasm_bindgen::JsCast;
        let now = ev
            .target()
            .and_then(|t| t.dyn_into::<web_sys::HtmlDetailsElement>().ok())
            .is_some_and(|d| d.open());
        // Closing another member's panel leaves the open one noted.
        opened.update_value(|o| {
            if now {
                *o = Some(user.clone());
            } else if o.as_deref() == Some(user.as_str()) {
                *o = None;
            }
        });
    };
    let limited_id = format!("access-{row}-limited");
    let rows = projects
        .into_iter()
        .enumerate()
        .map(|(j, p)| {
            let granted = member
                .grants
                .iter()
                .find(|g| g.project_id == p.id)
                .map(|g| g.role.clone())
                .unwrap_or_else(|| "none".to_owned());
            let select_id = format!("access-{row}-role-{j}");
            view! {
                <div class="flex items-center justify-between gap-3">
                    <input type="hidden" name=format!("projects[{j}]") value=p.id.to_string() />
                    <label for=select_id.clone() class="text-sm">{p.name}</label>
                    <select id=select_id class=INPUT name=format!("roles[{j}]")>
                        {["none", "viewer", "deployer", "admin"].into_iter().map(|r| view! {
                            <option value=r selected=granted == r>{r}</option>
                        }).collect_view()}
                    </select>
                </div>
            }
        })
        .collect_view();
    view! {
        <details class="mt-2" open=open on:toggle=toggled>
            <summary class="cursor-pointer text-sm text-slate-600 dark:text-slate-300">"Project access"</summary>
            <ActionForm action=access attr:id=form_id attr:class="mt-2 space-y-2">
                <input type="hidden" name="user_id" value=member.user_id.to_string() />
                <div class="flex items-center gap-2">
                    <input type="checkbox" id=limited_id.clone() name="limited" checked=member.limited />
                    <label for=limited_id class="text-sm">"Only the projects given a role below"</label>
                </div>
                {rows}
                <Submit label="Save access" pending=access.pending() />
            </ActionForm>
        </details>
    }
}

#[component]
fn Invites(
    create: ServerAction<CreateInvite>,
    revoke: ServerAction<RevokeInvite>,
    invites: Resource<Result<Vec<crate::types::InviteView>, crate::error::AppError>>,
) -> impl IntoView {
    let error = action_error(create);
    let link = move || {
        create.value().get().and_then(|r| r.ok()).map(|i| {
            // The server knows its public URL only when configured; otherwise use this page's origin.
            if i.link.starts_with('/') {
                format!("{}{}", window().location().origin().unwrap_or_default(), i.link)
            } else {
                i.link
            }
        })
    };
    view! {
        <section class=CARD>
            <h2 class="mb-3 font-semibold">"Invites"</h2>
            <ActionForm action=create attr:class="flex flex-col gap-3 sm:flex-row sm:items-end" attr:id="invite-form">
                <label class="block text-sm font-medium">
                    "Role"
                    <select name="role" class=INPUT>
                        <option value="member">"member"</option>
                        <option value="admin">"admin"</option>
                    </select>
                </label>
                <Submit label="Create invite link" pending=create.pending() id="create-invite" />
            </ActionForm>
            <FormError error />
            <Show when=move || link().is_some()>
                <p class="mt-3 text-sm">"Share this link once; it expires in 7 days:"</p>
                <input readonly class=INPUT id="invite-link" value=link />
            </Show>
            <Transition fallback=|| view! { <Loading /> }>
                {move || Suspend::new(async move {
                    match invites.await {
                        Err(e) => view! { <LoadError error=e /> }.into_any(),
                        Ok(list) => view! {
                            <ul class="mt-4 divide-y divide-slate-200 text-sm dark:divide-slate-800" id="invites">
                                {list.into_iter().map(|i| {
                                    let id = i.id.to_string();
                                    view! {
                                        <li class="flex items-center justify-between py-2" data-invite-role=i.role.clone()>
                                            <span>{format!("{} · by {} · expires {}", i.role, i.created_by, i.expires_at)}</span>
                                            <button type="button" class=BUTTON_QUIET on:click=move |_| {
                                                revoke.dispatch(RevokeInvite { id: id.clone() });
                                            }>"Revoke"</button>
                                        </li>
                                    }
                                }).collect_view()}
                            </ul>
                        }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

/// Two-factor sign-in: set up (scan, confirm with a code, keep the recovery
/// codes), turn off, and (organization admins) require it of members.
#[component]
fn TwoFactor(
    begin: ServerAction<BeginTwoFactor>,
    confirm: ServerAction<ConfirmTwoFactor>,
    disable: ServerAction<DisableTwoFactor>,
    require: ServerAction<RequireTwoFactor>,
    status: Resource<Result<crate::types::TwoFactorStatus, crate::error::AppError>>,
    manage: bool,
) -> impl IntoView {
    let error = Signal::derive(move || {
        begin
            .value()
            .get()
            .and_then(|r| r.err())
            .or_else(|| confirm.value().get().and_then(|r| r.err()))
            .or_else(|| disable.value().get().and_then(|r| r.err()))
            .or_else(|| require.value().get().and_then(|r| r.err()))
    });
    let confirm_error = action_error(confirm);
    let disable_error = action_error(disable);
    let enrolment = move || begin.value().get().and_then(|r| r.ok());
    let codes = move || confirm.value().get().and_then(|r| r.ok());
    view! {
        <section class=CARD id="two-factor">
            <h2 class="mb-3 font-semibold">"Two-factor sign-in"</h2>
            <Transition fallback=|| view! { <Loading /> }>
                {move || Suspend::new(async move {
                    match status.await {
                        Err(e) => view! { <LoadError error=e /> }.into_any(),
                        Ok(st) => {
                            let required = st.org_requires;
                            view! {
                                <p class="text-sm" id="two-factor-state">
                                    {if st.enabled {
                                        format!("On: sign-in asks for a code from your authenticator app ({} recovery codes left).", st.recovery_left)
                                    } else {
                                        "Off: sign-in asks for your password only.".to_owned()
                                    }}
                                    {required.then_some(" This organization requires it.")}
                                </p>
                                {if st.enabled {
                                    view! {
                                        <ActionForm action=disable attr:class="mt-3 flex flex-col gap-3 sm:flex-row sm:items-end" attr:id="disable-2fa-form">
                                            <div class="flex-1"><Field label="A current code, to turn it off" name="code" autocomplete="one-time-code" error=disable_error /></div>
                                            <Submit label="Turn off" pending=disable.pending() id="disable-2fa" />
                                        </ActionForm>
                                    }.into_any()
                                } else {
                                    view! {
                                        <button type="button" class=BUTTON_QUIET id="begin-2fa" on:click=move |_| { begin.dispatch(BeginTwoFactor {}); }>
                                            "Set up two-factor sign-in"
                                        </button>
                                    }.into_any()
                                }}
                                <Show when=move || manage>
                                    <ActionForm action=require attr:class="mt-4 flex items-center gap-3" attr:id="require-2fa-form">
                                        <label class="flex items-center gap-2 text-sm">
                                            <input type="checkbox" name="required" checked=required />
                                            "Require two-factor sign-in of this organization's members"
                                        </label>
                                        <Submit label="Save" pending=require.pending() id="require-2fa" />
                                    </ActionForm>
                                </Show>
                            }.into_any()
                        }
                    }
                })}
            </Transition>
            <Show when=move || enrolment().is_some() && codes().is_none()>
                <div class="mt-4 space-y-3" id="enrolment">
                    <p class="text-sm">"Scan this with your authenticator app, or type the key, then enter the code it shows."</p>
                    <div class="w-52 rounded bg-white p-2" role="img" aria-label="QR code of the two-factor key" inner_html=move || enrolment().map(|e| e.qr_svg).unwrap_or_default()></div>
                    <p class="text-sm">"Key: " <code id="totp-secret" class="break-all">{move || enrolment().map(|e| e.secret).unwrap_or_default()}</code></p>
                    <ActionForm action=confirm attr:class="flex flex-col gap-3 sm:flex-row sm:items-end" attr:id="confirm-2fa-form">
                        <div class="flex-1"><Field label="Code from the app" name="code" autocomplete="one-time-code" error=confirm_error /></div>
                        <Submit label="Turn on" pending=confirm.pending() id="confirm-2fa" />
                    </ActionForm>
                </div>
            </Show>
            <Show when=move || codes().is_some()>
                <div class="mt-4" id="recovery">
                    <p class="text-sm font-semibold">"Two-factor sign-in is on. Keep these recovery codes somewhere safe: each works once, and they are not shown again."</p>
                    <ul class="mt-2 grid grid-cols-2 gap-1 font-mono text-sm" id="recovery-codes">
                        {move || codes().unwrap_or_default().into_iter().map(|c| view! { <li>{c}</li> }).collect_view()}
                    </ul>
                </div>
            </Show>
            <FormError error />
        </section>
    }
}

/// The audit log: who did what, filtered, and its export as JSON lines.
#[component]
fn AuditLog(
    filter: RwSignal<(String, String, String, bool)>,
    rows: Resource<Result<Vec<crate::types::AuditView>, crate::error::AppError>>,
    admin: bool,
) -> impl IntoView {
    let who = NodeRef::<leptos::html::Input>::new();
    let what = NodeRef::<leptos::html::Input>::new();
    let since = NodeRef::<leptos::html::Input>::new();
    let instance = NodeRef::<leptos::html::Input>::new();
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let text = |r: NodeRef<leptos::html::Input>| r.get().map(|i| i.value()).unwrap_or_default();
        let checked = instance.get().is_some_and(|i| i.checked());
        filter.set((text(who), text(what), text(since), checked));
    };
    let export = move || {
        let (who, what, since, instance) = filter.get();
        let enc = |s: &str| js_sys_encode(s);
        format!(
            "/api/audit/export?who={}&what={}&since={}{}",
            enc(&who),
            enc(&what),
            enc(&since),
            if instance { "&instance=on" } else { "" }
        )
    };
    view! {
        <section class=CARD id="audit">
            <h2 class="mb-3 font-semibold">"Audit log"</h2>
            <form on:submit=on_submit class="grid gap-3 sm:grid-cols-4 sm:items-end" id="audit-form">
                <label class="block text-sm font-medium">"Who" <input node_ref=who name="who" class=INPUT placeholder="name, email, key" /></label>
                <label class="block text-sm font-medium">"What" <input node_ref=what name="what" class=INPUT placeholder="apps/delete, sign-in" /></label>
                <label class="block text-sm font-medium">"Since" <input node_ref=since name="since" type="date" class=INPUT /></label>
                <button type="submit" class=BUTTON_QUIET id="audit-filter">"Filter"</button>
                <Show when=move || admin>
                    <label class="flex items-center gap-2 text-sm sm:col-span-4">
                        <input node_ref=instance type="checkbox" name="instance" />
                        "This instance's events (sign-ins, organizations, settings)"
                    </label>
                </Show>
            </form>
            <p class="mt-2 text-sm"><a class="underline" href=export rel="external" download>"Export as JSON lines"</a></p>
            <Transition fallback=|| view! { <Loading /> }>
                {move || Suspend::new(async move {
                    match rows.await {
                        Err(e) => view! { <LoadError error=e /> }.into_any(),
                        Ok(list) => view! {
                            // Focusable: a keyboard can scroll it when it is wider than the screen.
                            <div class="mt-3 overflow-x-auto" tabindex="0" role="region" aria-label="Audit log rows">
                                <table class="w-full text-left text-sm" id="audit-rows">
                                    <thead><tr><th class="pr-3">"When"</th><th class="pr-3">"Who"</th><th class="pr-3">"What"</th><th class="pr-3">"Target"</th><th class="pr-3">"Result"</th><th>"From"</th></tr></thead>
                                    <tbody>
                                        {list.into_iter().map(|r| view! {
                                            <tr class="border-t border-slate-200 dark:border-slate-800">
                                                <td class="whitespace-nowrap pr-3">{r.at}</td>
                                                <td class="pr-3">{r.who}</td>
                                                <td class="pr-3"><code>{r.action}</code></td>
                                                <td class="pr-3 break-all">{r.target}</td>
                                                <td class="pr-3">{r.result}</td>
                                                <td>{r.client}</td>
                                            </tr>
                                        }).collect_view()}
                                    </tbody>
                                </table>
                            </div>
                        }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

/// A query value, percent-encoded (what `encodeURIComponent` leaves alone stays).
fn js_sys_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// API keys for the REST API (`/api/v1`, reference at `/api/v1/docs`): made
/// here, shown once, revoked here.
#[component]
fn ApiKeys(
    create: ServerAction<CreateKey>,
    revoke: ServerAction<RevokeKey>,
    keys: Resource<Result<Vec<crate::types::ApiKeyView>, crate::error::AppError>>,
    projects: Resource<Result<Vec<crate::types::ProjectSummary>, crate::error::AppError>>,
    manage: bool,
    admin: bool,
) -> impl IntoView {
    let error = action_error(create);
    let made = move || create.value().get().and_then(|r| r.ok()).map(|k| k.key);
    view! {
        <section class=CARD id="api-keys">
            <h2 class="mb-1 font-semibold">"API keys"</h2>
            <p class="mb-3 text-sm text-slate-600 dark:text-slate-400">
                "For the REST API and the command line ("<a class="underline" href="/api/v1/docs" rel="external">"reference"</a>
                "). A key acts as you, with at most the role it names, in this organization only."
            </p>
            <ActionForm action=create attr:class="grid gap-3 sm:grid-cols-4 sm:items-end" attr:id="key-form">
                // Not a `Field`: the profile's name field holds that element ID.
                <label class="block text-sm font-medium">
                    "Name"
                    <input name="name" id="key-name" class=INPUT required />
                </label>
                <label class="block text-sm font-medium">
                    "Role"
                    <select name="role" class=INPUT>
                        <option value="viewer">"viewer (reads only)"</option>
                        <option value="member" selected>"member"</option>
                        <option value="admin" disabled=!manage>"admin"</option>
                    </select>
                </label>
                <Field label="Expires in days (empty: never)" name="expires_in_days" kind="number" error />
                <Submit label="Create key" pending=create.pending() id="create-key" />
                <fieldset class="sm:col-span-4">
                    <legend class="text-sm font-medium">"Projects (none ticked: every project you reach)"</legend>
                    <Transition fallback=|| view! { <Loading /> }>
                        {move || Suspend::new(async move {
                            projects.await.unwrap_or_default().into_iter().enumerate().map(|(i, p)| {
                                let id = format!("key-project-{i}");
                                view! {
                                    <span class="mr-4 inline-flex items-center gap-2 text-sm">
                                        <input type="checkbox" id=id.clone() name=format!("projects[{i}]") value=p.id.to_string() />
                                        <label for=id>{p.name}</label>
                                    </span>
                                }
                            }).collect_view()
                        })}
                    </Transition>
                </fieldset>
                <Show when=move || admin>
                    <label class="flex items-center gap-2 text-sm sm:col-span-4">
                        <input type="checkbox" name="instance" />
                        "Instance powers (as your instance administrator role)"
                    </label>
                </Show>
            </ActionForm>
            <FormError error />
            <Show when=move || made().is_some()>
                <p class="mt-3 text-sm">"Copy this key now; it is not shown again:"</p>
                <input readonly class=INPUT id="new-key" aria-label="New API key" value=made />
            </Show>
            <Transition fallback=|| view! { <Loading /> }>
                {move || Suspend::new(async move {
                    match keys.await {
                        Err(e) => view! { <LoadError error=e /> }.into_any(),
                        Ok(list) => view! {
                            <ul class="mt-4 divide-y divide-slate-200 text-sm dark:divide-slate-800" id="key-list">
                                {list.into_iter().map(|k| {
                                    let id = k.id.to_string();
                                    let active = k.state == "active";
                                    let label = format!("Revoke {}", k.name);
                                    view! {
                                        <li class="flex items-center justify-between gap-3 py-2">
                                            <span>
                                                <span class="font-medium">{k.name}</span>
                                                {format!(" · berth_{}_… · {}{}{} · by {} · created {} · expires {} · last used {} · {}",
                                                    k.prefix, k.role, if k.instance { " + instance" } else { "" },
                                                    k.projects.map(|ps| format!(" · projects: {}", ps.join(", "))).unwrap_or_default(),
                                                    k.owner, k.created_at, k.expires, k.last_used, k.state)}
                                            </span>
                                            <Show when=move || active>
                                                <button type="button" class=BUTTON_QUIET aria-label=label.clone() on:click={
                                                    let id = id.clone();
                                                    // For good: what uses the key stops working, so asked first.
                                                    move |_| {
                                                        if window().confirm_with_message("Revoke this key? Whatever uses it stops working.").unwrap_or(false) {
                                                            revoke.dispatch(RevokeKey { id: id.clone() });
                                                        }
                                                    }
                                                }>"Revoke"</button>
                                            </Show>
                                        </li>
                                    }
                                }).collect_view()}
                            </ul>
                        }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn NewOrganization() -> impl IntoView {
    let create = ServerAction::<CreateOrg>::new();
    let error = action_error(create);
    Effect::new(move |_| {
        if let Some(Ok(_)) = create.value().get() {
            hard_navigate("/projects");
        }
    });
    view! {
        <section class=CARD>
            <h2 class="mb-3 font-semibold">"New organization"</h2>
            <ActionForm action=create attr:class="flex flex-col gap-3 sm:flex-row sm:items-end">
                <div class="flex-1"><Field label="Name" name="organization" error /></div>
                <Submit label="Create and switch" pending=create.pending() />
            </ActionForm>
            <FormError error />
        </section>
    }
}

/// The instance itself, for its administrators: who may create organizations,
/// who else administers it, and what the operator allows of the host.
#[component]
fn Instance(
    org_creation: ServerAction<SetOrgCreation>,
    set_admin: ServerAction<SetInstanceAdmin>,
    reset_2fa: ServerAction<ResetTwoFactor>,
    view_: Resource<Result<crate::types::InstanceView, crate::error::AppError>>,
) -> impl IntoView {
    let error = Signal::derive(move || {
        org_creation
            .value()
            .get()
            .and_then(|r| r.err())
            .or_else(|| set_admin.value().get().and_then(|r| r.err()))
            .or_else(|| reset_2fa.value().get().and_then(|r| r.err()))
    });
    view! {
        <section class=CARD id="instance">
            <h2 class="mb-3 font-semibold">"This instance"</h2>
            <Transition fallback=|| view! { <Loading /> }>
                {move || Suspend::new(async move {
                    match view_.await {
                        Err(e) => view! { <LoadError error=e /> }.into_any(),
                        Ok(i) => {
                            let anyone = i.org_creation == "anyone";
                            let roots = if i.bind_roots.is_empty() { "none".to_owned() } else { i.bind_roots.join(", ") };
                            view! {
                                <ActionForm action=org_creation attr:class="mb-4 flex flex-col gap-3 sm:flex-row sm:items-end">
                                    <label class="block flex-1 text-sm font-medium">"Who may create organizations"
                                        <select name="org_creation" class=INPUT id="field-org_creation">
                                            <option value="admins" selected=!anyone>"Instance administrators"</option>
                                            <option value="anyone" selected=anyone>"Anyone signed in"</option>
                                        </select>
                                    </label>
                                    <Submit label="Save" pending=org_creation.pending() />
                                </ActionForm>
                                <h3 class="mb-2 text-sm font-semibold">"Administrators"</h3>
                                <ul class="mb-4 divide-y divide-slate-200 dark:divide-slate-800">
                                    {i.users.into_iter().map(|u| {
                                        let id = u.id.to_string();
                                        let reset_id = id.clone();
                                        let next = if u.instance_admin { "false" } else { "true" };
                                        let email = u.email.clone();
                                        view! {
                                            <li class="flex items-center justify-between py-2 text-sm" data-user=email>
                                                <span>{u.name} " · " {u.email}
                                                    {u.instance_admin.then(|| view! { <span class="ml-2 rounded-full bg-indigo-100 px-2 py-0.5 text-xs text-indigo-800 dark:bg-indigo-950 dark:text-indigo-300">"administrator"</span> })}
                                                </span>
                                                <span class="flex gap-2">
                                                    <button type="button" class=BUTTON_QUIET on:click=move |_| {
                                                        reset_2fa.dispatch(ResetTwoFactor { user_id: reset_id.clone() });
                                                    }>"Reset two-factor"</button>
                                                    <button type="button" class=BUTTON_QUIET on:click=move |_| {
                                                        set_admin.dispatch(SetInstanceAdmin { user_id: id.clone(), admin: next.to_owned() });
                                                    }>{if u.instance_admin { "Remove administrator" } else { "Make administrator" }}</button>
                                                </span>
                                            </li>
                                        }
                                    }).collect_view()}
                                </ul>
                                <p class="text-xs text-slate-500">
                                    "Set by the operator: host paths that may be mounted (BERTH_BIND_ROOTS): " {roots}
                                    "; private network targets: " {if i.allow_private_targets { "allowed" } else { "refused" }}
                                    "; images only on this host: " {if i.allow_local_images { "allowed" } else { "refused" }} "."
                                </p>
                            }.into_any()
                        }
                    }
                })}
            </Transition>
            <FormError error />
        </section>
    }
}

/// The ACME account Traefik gets certificates with, for instance
/// administrators: the CA's directory, the contact, the DNS-01 provider and
/// HTTP/3. DNS credentials are shown by name; a name alone keeps its value.
#[component]
fn Certificates(
    acme: ServerAction<SetAcme>,
    view_: Resource<Result<crate::types::InstanceView, crate::error::AppError>>,
) -> impl IntoView {
    let error = action_error(acme);
    let saved = move || acme.value().get().is_some_and(|r| r.is_ok());
    view! {
        <section class=CARD id="certificates">
            <h2 class="mb-1 font-semibold">"HTTPS certificates"</h2>
            <p class="mb-3 text-sm text-slate-500">
                "Domains with HTTPS get certificates from this ACME CA through Traefik. Try the staging CA first: Let's Encrypt limits failed attempts."
            </p>
            <Transition fallback=|| view! { <Loading /> }>
                {move || Suspend::new(async move {
                    view_.await.ok().map(|i| {
                        let a = i.acme;
                        let preset = match a.directory.as_str() { "production" | "staging" => a.directory.clone(), _ => "custom".to_owned() };
                        let custom_url = if preset == "custom" { a.directory.clone() } else { String::new() };
                        view! {
                            <ActionForm action=acme attr:class="grid gap-3 sm:grid-cols-2" attr:id="acme-form">
                                <label class="block text-sm font-medium" for="field-directory">"Certificate authority"
                                    <input id="field-directory" name="directory" class=INPUT list="acme-directories"
                                        value=if preset == "custom" { custom_url } else { preset } />
                                    <datalist id="acme-directories">
                                        <option value="production">"Let's Encrypt"</option>
                                        <option value="staging">"Let's Encrypt staging"</option>
                                    </datalist>
                                    <span class="text-xs text-slate-500">"production, staging, or an ACME directory URL"</span>
                                </label>
                                <Field label="Contact e-mail" name="email" kind="email" value=a.email error />
                                <Field label="DNS provider for DNS-01 (e.g. cloudflare)" name="dns_provider" value=a.dns_provider error />
                                <Field label="Nameservers for the DNS check (host:port, comma-separated)" name="dns_resolvers" value=a.dns_resolvers error />
                                <label class="block text-sm font-medium sm:col-span-2" for="field-dns_credentials">"DNS provider credentials (NAME=value per line)"
                                    <textarea id="field-dns_credentials" name="dns_credentials" rows="3" class=INPUT autocomplete="off" spellcheck="false">{a.dns_credentials}</textarea>
                                </label>
                                <div class="flex flex-wrap items-center gap-4 text-sm sm:col-span-2">
                                    <label class="flex items-center gap-1"><input type="checkbox" name="dns_skip_propagation" checked=a.dns_skip_propagation />"Skip the DNS propagation check"</label>
                                    <label class="flex items-center gap-1"><input type="checkbox" name="http3" checked=a.http3 />"HTTP/3 (UDP 443)"</label>
                                </div>
                                <div class="flex items-center gap-3 sm:col-span-2">
                                    <Submit label="Save certificate settings" pending=acme.pending() />
                                    <Show when=saved><span class="text-sm text-green-700 dark:text-green-400" id="acme-saved">"Saved: Traefik restarted with them."</span></Show>
                                </div>
                            </ActionForm>
                        }
                    })
                })}
            </Transition>
            <FormError error />
        </section>
    }
}

/// Backups of Berth's own database: for instance administrators (the API
/// answers 404 to everyone else).
#[component]
fn OwnDatabase(own: Backups) -> impl IntoView {
    view! {
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                own.history.await.ok().map(|_| view! {
                    <h2 class="pt-4 text-xl font-semibold" id="own-database">"Berth's own database"</h2>
                    <p class="text-sm text-slate-500">"Back up Berth's PostgreSQL to S3. Restoring it is a command-line step: see docs/OPERATIONS.md."</p>
                    <BackupsPanel state=own subject="berth".to_string() service=None manage=true />
                })
            })}
        </Suspense>
    }
}
