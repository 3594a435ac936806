//! One application: tabs for its source and build (General), environment
//! variables, domains, deployments with their live logs, runtime logs, and
//! container settings (Advanced).

use crate::api::apps::{
    get_app, get_hooks, list_deployments, AddDomain, CancelDeployment, DeleteApp, DeployApp, RemoveDomain,
    ResetHostKey, RevealEnv, RollbackDeployment, RotateHooks, SetEnv, UpdateDomain, UpdateRuntime, UpdateSource,
    UploadCertificate,
};
use crate::components::chart::{Metrics, MetricsPanel, Source};
use crate::components::live::refresh_on;
use crate::components::logview::LogView;
use crate::components::shell::Session;
use crate::components::status::{Badge, Repairs, StatusBadge};
use crate::components::ui::{
    action_error, CopyButton, Field, FormError, LoadError, Loading, Submit, Tabs, BUTTON, BUTTON_DANGER, BUTTON_QUIET,
    CARD, INPUT,
};
use crate::types::{AppView, DeploymentPage, DeploymentView, HooksView};
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::{use_navigate, use_params_map, use_query_map};

const TABS: [(&str, &str); 7] = [
    ("general", "General"),
    ("environment", "Environment"),
    ("domains", "Domains"),
    ("deployments", "Deployments"),
    ("logs", "Logs"),
    ("metrics", "Metrics"),
    ("advanced", "Advanced"),
];

#[derive(Clone, Copy)]
struct Actions {
    source: ServerAction<UpdateSource>,
    runtime: ServerAction<UpdateRuntime>,
    set_env: ServerAction<SetEnv>,
    add_domain: ServerAction<AddDomain>,
    remove_domain: ServerAction<RemoveDomain>,
    update_domain: ServerAction<UpdateDomain>,
    upload_cert: ServerAction<UploadCertificate>,
    deploy: ServerAction<DeployApp>,
    cancel: ServerAction<CancelDeployment>,
    rollback: ServerAction<RollbackDeployment>,
    rotate: ServerAction<RotateHooks>,
}

#[component]
pub fn AppPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let id = move || params.read().get("id").unwrap_or_default();
    // Owned by the page, not by the view that re-renders when the app reloads.
    let tab = Memo::new(move |_| query.read().get("tab").unwrap_or_else(|| "general".into()));
    let actions = Actions {
        source: ServerAction::new(),
        runtime: ServerAction::new(),
        set_env: ServerAction::new(),
        add_domain: ServerAction::new(),
        remove_domain: ServerAction::new(),
        update_domain: ServerAction::new(),
        upload_cert: ServerAction::new(),
        deploy: ServerAction::new(),
        cancel: ServerAction::new(),
        rollback: ServerAction::new(),
        rotate: ServerAction::new(),
    };
    let app = Resource::new(
        move || {
            (
                id(),
                actions.source.version().get(),
                actions.runtime.version().get(),
                actions.set_env.version().get(),
                actions.add_domain.version().get(),
                actions.remove_domain.version().get(),
                actions.update_domain.version().get(),
                actions.upload_cert.version().get(),
            )
        },
        |(id, ..)| get_app(id),
    );
    // Every resource of the page is made here, outside the `Transition` (see
    // `Shell`): the tabs only read them.
    let hooks = Resource::new(move || (id(), actions.rotate.version().get()), |(id, _)| get_hooks(id));
    let tick = RwSignal::new(0u32);
    let deployments = Resource::new(
        move || {
            (
                id(),
                tab.get() == "deployments",
                tick.get(),
                actions.deploy.version().get(),
                actions.cancel.version().get(),
                actions.rollback.version().get(),
            )
        },
        |(id, shown, ..)| async move {
            if shown {
                list_deployments(id, None).await
            } else {
                Ok(DeploymentPage::default())
            }
        },
    );
    // This app's deployments, as they move: the list (badges) follows.
    refresh_on(
        move |e| e.kind == "deployment" && e.app.as_deref() == Some(id().as_str()),
        tick,
    );
    let metrics = Metrics::new(
        Source::App,
        Signal::derive(id),
        Signal::derive(move || tab.get() == "metrics"),
    );
    let data = TabData {
        hooks,
        deployments,
        tick,
        metrics,
    };
    let session = Session::get();
    view! {
        <div class="mx-auto max-w-5xl space-y-6">
            <Transition fallback=|| view! { <Loading /> }>
                {move || Suspend::new(async move {
                    session.provide_me().await;
                    match app.await {
                        Err(e) => view! { <LoadError error=e /> }.into_any(),
                        Ok(a) => view! { <AppBody app=a tab actions data /> }.into_any(),
                    }
                })}
            </Transition>
        </div>
    }
}

/// What the tabs show besides the app itself.
#[derive(Clone, Copy)]
struct TabData {
    hooks: Resource<Result<Option<HooksView>, crate::error::AppError>>,
    /// The first page of the history (empty unless the Deployments tab is open).
    deployments: Resource<Result<DeploymentPage, crate::error::AppError>>,
    /// Bumped by this app's deployment events, and when a log ends.
    tick: RwSignal<u32>,
    /// The resource figures (read only while the Metrics tab is open).
    metrics: Metrics,
}

#[component]
fn AppBody(app: AppView, tab: Memo<String>, actions: Actions, data: TabData) -> impl IntoView {
    let id = app.id.to_string();
    let navigate = use_navigate();
    let deploy_error = action_error(actions.deploy);
    let app_path = format!("/apps/{}", app.id);
    Effect::new({
        let app_path = app_path.clone();
        move |_| {
            if let Some(Ok(_)) = actions.deploy.value().get() {
                navigate(&format!("{app_path}?tab=deployments"), Default::default());
            }
        }
    });
    let deploy_id = id.clone();
    let url = app.domains.first().map(|d| d.url.clone());
    let tabs = view! { <Tabs base=app_path.clone() tabs=&TABS current=tab /> };
    let body = {
        let app = app.clone();
        move || match tab.get().as_str() {
            "environment" => view! { <EnvTab app=app.clone() actions /> }.into_any(),
            "domains" => view! { <DomainsTab app=app.clone() actions /> }.into_any(),
            "deployments" => view! { <DeploymentsTab app=app.clone() actions data /> }.into_any(),
            "logs" => view! { <RuntimeLogsTab app=app.clone() /> }.into_any(),
            "metrics" => view! { <MetricsTab data /> }.into_any(),
            "advanced" => view! { <AdvancedTab app=app.clone() actions /> }.into_any(),
            _ => view! { <GeneralTab app=app.clone() actions hooks=data.hooks /> }.into_any(),
        }
    };
    view! {
        <div class="flex flex-col gap-3 sm:flex-row sm:items-start sm:justify-between">
            <div>
                <p class="text-sm text-slate-500">
                    <A href=format!("/projects/{}", app.project_id) attr:id="app-project-link">{app.project_name.clone()}</A>
                    " / " {app.environment_name.clone()}
                </p>
                <h1 class="text-2xl font-semibold" id="app-title">{app.name.clone()}</h1>
                {url.map(|u| view! {
                    <p class="text-sm"><a id="app-domain" class="text-indigo-700 hover:underline dark:text-indigo-300" href=u.clone() target="_blank" rel="noopener">{u.clone()}</a></p>
                })}
            </div>
            <div class="flex flex-col items-end gap-1">
                <Show when=move || app.may.deploy>
                    <button type="button" class=BUTTON id="deploy" disabled=move || actions.deploy.pending().get()
                        on:click={
                            let deploy_id = deploy_id.clone();
                            move |_| { actions.deploy.dispatch(DeployApp { app_id: deploy_id.clone() }); }
                        }>
                        {move || if actions.deploy.pending().get() { "Queuing…" } else { "Deploy" }}
                    </button>
                </Show>
                <FormError error=deploy_error />
            </div>
        </div>
        <Repairs problem=app.problem.clone() repairs=app.repairs.clone() />
        {tabs}
        {body}
    }
}

fn select(name: &'static str, options: &[(&'static str, &'static str)], current: &str) -> impl IntoView {
    let current = current.to_owned();
    let opts = options
        .iter()
        .map(|(value, label)| view! { <option value=*value selected=current == *value>{*label}</option> })
        .collect_view();
    view! { <select name=name id=format!("field-{name}") class=INPUT>{opts}</select> }
}

#[component]
fn TextArea(
    label: &'static str,
    name: &'static str,
    #[prop(into)] value: String,
    #[prop(default = 4)] rows: u32,
    #[prop(into)] error: Signal<Option<crate::error::AppError>>,
) -> impl IntoView {
    let message = move || error.get().and_then(|e| e.for_field(name));
    view! {
        <label class="block text-sm font-medium">
            {label}
            <textarea name=name id=format!("field-{name}") rows=rows class=format!("{INPUT} font-mono")>{value}</textarea>
        </label>
        <Show when=move || message().is_some()>
            <p class="mt-1 text-sm text-red-600 dark:text-red-400" data-error-for=name>{message}</p>
        </Show>
    }
}

#[component]
fn GeneralTab(
    app: AppView,
    actions: Actions,
    hooks: Resource<Result<Option<HooksView>, crate::error::AppError>>,
) -> impl IntoView {
    let error = action_error(actions.source);
    let saved = move || matches!(actions.source.value().get(), Some(Ok(())));
    let can_delete = app.may.delete;
    let id = app.id.to_string();
    let secret_label = if app.source == "git" {
        "Deploy key (private, optional)"
    } else {
        "Registry password (optional)"
    };
    let rotate_id = id.clone();
    let pin_id = id.clone();
    view! {
        <section class=CARD>
            <h2 class="mb-3 font-semibold">"Source and build"</h2>
            <ActionForm action=actions.source attr:class="grid gap-4 sm:grid-cols-2" attr:id="source-form">
                <fieldset class="contents" disabled=!app.may.manage>
                <input type="hidden" name="id" value=app.id.to_string() />
                <label class="block text-sm font-medium">"Source" {select("source", &[("git", "Git repository"), ("image", "Docker image")], &app.source)}</label>
                <label class="block text-sm font-medium">"Build" {select("build", &[("dockerfile", "Dockerfile"), ("static", "Static site")], &app.build)}</label>
                <Field label="Repository" name="repository" value=app.repository.clone() error />
                <Field label="Branch" name="branch" value=app.branch.clone() error />
                <Field label="Subdirectory" name="subdir" value=app.subdir.clone() error />
                <Field label="Image" name="image" value=app.image.clone() error />
                <Field label="Registry user" name="registry_user" value=app.registry_user.clone() error />
                <div>
                    <TextArea label=secret_label name="secret" value="" rows=2 error />
                    <p class="mt-1 text-xs text-slate-500">
                        {if app.has_secret { "A secret is stored (encrypted). Leave empty to keep it." } else { "None stored." }}
                    </p>
                    <label class="mt-1 flex items-center gap-2 text-xs"><input type="checkbox" name="clear_secret" />"Remove the stored secret"</label>
                    <p class="mt-1 text-xs text-slate-500">"Moving to another registry or git host removes a stored secret unless you enter one."</p>
                </div>
                <Field label="Dockerfile" name="dockerfile" value=app.dockerfile.clone() error />
                <Field label="Build context" name="context" value=app.context.clone() error />
                <Field label="Target stage" name="target" value=app.target.clone() error />
                <Field label="Static directory" name="static_dir" value=app.static_dir.clone() error />
                <div class="sm:col-span-2"><TextArea label="Build arguments (NAME=value per line; not secret)" name="build_args" value=app.build_args.clone() rows=3 error /></div>
                <div class="sm:col-span-2 flex items-center gap-3">
                    <Submit label="Save" pending=actions.source.pending() id="source-save" />
                    <Show when=saved><span class="text-sm text-emerald-600">"Saved. Deploy to apply."</span></Show>
                </div>
                <div class="sm:col-span-2"><FormError error /></div>
                </fieldset>
            </ActionForm>
        </section>
        <section class=CARD>
            <h2 class="mb-3 font-semibold">"Webhooks"</h2>
            <Transition fallback=|| view! { <Loading /> }>
                {move || Suspend::new(async move {
                    match hooks.await {
                        Err(e) => view! { <LoadError error=e /> }.into_any(),
                        Ok(None) => view! {
                            <p class="text-sm text-slate-500" id="hooks-hidden">"Your role in this project does not show the webhook URLs."</p>
                        }.into_any(),
                        Ok(Some(h)) => view! {
                            <dl class="space-y-2 text-sm">
                                <div><dt class="font-medium">"GitHub (push events, content type application/json)"</dt>
                                    <dd class="flex items-start gap-2"><span class="break-all font-mono text-xs" id="github-url">{h.github_url.clone()}</span><CopyButton text=h.github_url label="Copy the GitHub webhook URL" /></dd></div>
                                <div><dt class="font-medium">"GitHub secret"</dt>
                                    <dd class="flex items-start gap-2"><span class="break-all font-mono text-xs">{h.github_secret.clone()}</span><CopyButton text=h.github_secret label="Copy the GitHub secret" /></dd></div>
                                <div><dt class="font-medium">"Deploy URL (POST; optional Idempotency-Key header)"</dt>
                                    <dd class="flex items-start gap-2"><span class="break-all font-mono text-xs" id="deploy-url">{h.deploy_url.clone()}</span><CopyButton text=h.deploy_url label="Copy the deploy URL" /></dd></div>
                            </dl>
                        }.into_any(),
                    }
                })}
            </Transition>
            {app.may.deploy.then(|| view! {
                <button type="button" class=format!("{BUTTON_QUIET} mt-3") on:click=move |_| { actions.rotate.dispatch(RotateHooks { id: rotate_id.clone() }); }>
                    "Rotate secret and token"
                </button>
            })}
        </section>
        {app.host_key_pinned.then(|| view! { <HostKeyPin id=pin_id can_reset=can_delete /> })}
        <Show when=move || can_delete>
            <DeleteApp id=id.clone() project=app.project_id.to_string() />
        </Show>
    }
}

/// The ssh host key pinned at the first clone, and (for admins) its reset.
#[component]
fn HostKeyPin(id: String, can_reset: bool) -> impl IntoView {
    let reset = ServerAction::<ResetHostKey>::new();
    let error = action_error(reset);
    let done = move || matches!(reset.value().get(), Some(Ok(())));
    view! {
        <section class=CARD id="host-key">
            <h2 class="mb-2 font-semibold">"ssh host key"</h2>
            <p class="mb-3 text-sm text-slate-500">
                "The repository server's host key was pinned at the first clone; a clone that meets another key fails. \
                 Reset only if you know the server's key changed."
            </p>
            <Show when=move || can_reset>
                <button type="button" class=BUTTON_QUIET id="reset-host-key" on:click={
                    let id = id.clone();
                    move |_| { reset.dispatch(ResetHostKey { id: id.clone() }); }
                }>"Reset the pinned key"</button>
            </Show>
            <Show when=done><span class="ml-3 text-sm text-emerald-600">"Reset: the next clone pins the current key."</span></Show>
            <FormError error />
        </section>
    }
}

#[component]
fn DeleteApp(id: String, project: String) -> impl IntoView {
    let delete = ServerAction::<DeleteApp>::new();
    let volumes = RwSignal::new(false);
    let error = action_error(delete);
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(())) = delete.value().get() {
            navigate(&format!("/projects/{project}"), Default::default());
        }
    });
    view! {
        <section class=CARD>
            <h2 class="mb-2 font-semibold text-red-700 dark:text-red-400">"Danger zone"</h2>
            <label class="mb-3 flex items-center gap-2 text-sm">
                <input type="checkbox" id="delete-app-volumes" on:change=move |ev| volumes.set(event_target_checked(&ev)) />
                "Also delete its named volumes (their data is gone for good)"
            </label>
            <button type="button" class=BUTTON_DANGER id="delete-app" on:click=move |_| {
                if window().confirm_with_message("Delete this application, its containers, route and images?").unwrap_or(false) {
                    let remove_volumes = volumes.get_untracked().then(|| "on".to_owned());
                    delete.dispatch(DeleteApp { id: id.clone(), remove_volumes });
                }
            }>"Delete application"</button>
            <FormError error />
        </section>
    }
}

#[component]
fn EnvTab(app: AppView, actions: Actions) -> impl IntoView {
    let reveal = ServerAction::<RevealEnv>::new();
    let error = action_error(actions.set_env);
    let reveal_error = action_error(reveal);
    let revealed = move || reveal.value().get().and_then(|r| r.ok());
    let saved = move || matches!(actions.set_env.value().get(), Some(Ok(())));
    // "Reveal and edit" gives way to the editor: the keyboard goes there too.
    crate::components::focus::focus_when_shown(move || revealed().is_some(), "field-dotenv");
    let id = app.id.to_string();
    let names = app.env_names.clone();
    view! {
        <section class=CARD>
            <h2 class="mb-1 font-semibold">"Environment variables"</h2>
            <p class="mb-3 text-sm text-slate-500">"Encrypted at rest; values reach the container exactly as written. Changes apply on the next deployment."</p>
            <ul class="mb-3 space-y-1 font-mono text-sm" id="env-names">
                {names.into_iter().map(|n| view! { <li>{n}"=••••••"</li> }).collect_view()}
            </ul>
            <Show
                when=move || revealed().is_some()
                fallback={
                    let id = id.clone();
                    let deploy = app.may.deploy;
                    move || {
                        let id = id.clone();
                        if !deploy {
                            return view! {
                                <p class="text-sm text-slate-500" id="env-names-only">"Your role in this project shows the names only."</p>
                            }
                            .into_any();
                        }
                        view! {
                            <button type="button" class=BUTTON_QUIET id="reveal-env" data-focus-for="env-form" on:click=move |_| { reveal.dispatch(RevealEnv { id: id.clone() }); }>
                                "Reveal and edit"
                            </button>
                            // The save closed the editor: its word is said here.
                            <Show when=saved><span class="ml-3 text-sm text-emerald-600" role="status">"Saved."</span></Show>
                            <FormError error=reveal_error />
                        }
                        .into_any()
                    }
                }
            >
                <ActionForm action=actions.set_env attr:class="space-y-3" attr:id="env-form">
                    <input type="hidden" name="id" value=app.id.to_string() />
                    <TextArea label=".env (NAME=value per line)" name="dotenv" value=revealed().unwrap_or_default() rows=10 error />
                    <div class="flex items-center gap-3">
                        <Submit label="Save variables" pending=actions.set_env.pending() id="env-save" />
                        <Show when=saved><span class="text-sm text-emerald-600">"Saved."</span></Show>
                    </div>
                    <FormError error />
                </ActionForm>
            </Show>
        </section>
    }
}

/// The line under an HTTPS domain: its certificate as Traefik serves it.
fn cert_line(c: &crate::types::CertView) -> impl IntoView {
    let source = match c.source.as_str() {
        "tls" => "TLS-ALPN-01",
        "dns" => "DNS-01",
        "custom" => "uploaded",
        _ => "HTTP-01",
    };
    let (tone, text) = match c.status.as_str() {
        "issued" => (
            if c.expiring {
                "text-amber-700 dark:text-amber-400"
            } else {
                "text-green-700 dark:text-green-400"
            },
            format!(
                "Certificate issued by {} · valid until {}{}",
                c.issuer.clone().unwrap_or_default(),
                c.not_after.clone().unwrap_or_default(),
                if c.expiring { " · expires soon" } else { "" }
            ),
        ),
        "failed" => (
            "text-red-700 dark:text-red-400",
            format!(
                "Certificate not issued: {}{}",
                c.error.clone().unwrap_or_default(),
                c.retry_at
                    .as_ref()
                    .map(|t| format!(" · next try {t}"))
                    .unwrap_or_default()
            ),
        ),
        _ => (
            "text-slate-500",
            match (&c.error, &c.retry_at) {
                (Some(e), _) => format!("Certificate pending (last attempt: {e})"),
                _ => "Certificate pending".to_owned(),
            },
        ),
    };
    view! {
        <p class=format!("text-xs {tone}") data-cert-status=c.status.clone()>{format!("{source}: {text}")}</p>
    }
}

/// One domain's settings: HTTPS, the certificate's source and the proxy
/// options; and for uploaded certificates, the upload. Field ids carry the
/// row's index: several domains' forms share one page.
#[component]
fn DomainSettings(d: crate::types::DomainView, n: usize, actions: Actions) -> impl IntoView {
    let o = d.options.clone();
    let id = d.id.to_string();
    let id2 = id.clone();
    let cert = d
        .cert
        .as_ref()
        .map(|c| c.source.clone())
        .unwrap_or_else(|| "http".into());
    let fid = move |name: &str| format!("domain-{n}-{name}");
    let upload_error = action_error(actions.upload_cert);
    let options = [
        ("http", "HTTP-01 (port 80)"),
        ("tls", "TLS-ALPN-01 (port 443)"),
        ("dns", "DNS-01 (wildcards)"),
        ("custom", "Uploaded certificate"),
    ];
    let www = [
        ("", "No www redirect"),
        ("to_www", "Redirect to www."),
        ("to_apex", "Redirect www. to the bare domain"),
    ];
    view! {
        <details class="mt-2 text-sm" data-domain-settings=d.host.clone()>
            <summary class="cursor-pointer text-indigo-700 dark:text-indigo-300">"HTTPS and proxy settings"</summary>
            <ActionForm action=actions.update_domain attr:class="mt-2 grid gap-3 sm:grid-cols-2">
                <input type="hidden" name="id" value=id.clone() />
                <div class="flex flex-wrap items-center gap-4 sm:col-span-2">
                    <label class="flex items-center gap-1"><input type="checkbox" name="https" checked=d.https />"HTTPS"</label>
                    <label class="flex items-center gap-1"><input type="checkbox" name="redirect_https" checked=o.redirect_https />"Redirect HTTP to HTTPS"</label>
                    <label class="flex items-center gap-1"><input type="checkbox" name="compress" checked=o.compress />"Compress responses"</label>
                </div>
                <label class="block font-medium" for=fid("cert")>"Certificate"
                    <select id=fid("cert") name="cert" class=INPUT>
                        {options.into_iter().map(|(v, l)| view! { <option value=v selected=cert == v>{l}</option> }).collect_view()}
                    </select>
                </label>
                <label class="block font-medium" for=fid("www")>"www"
                    <select id=fid("www") name="www" class=INPUT>
                        {www.into_iter().map(|(v, l)| view! { <option value=v selected=o.www == v>{l}</option> }).collect_view()}
                    </select>
                </label>
                <label class="block font-medium" for=fid("hsts")>"HSTS max-age in seconds (empty: off)"
                    <input id=fid("hsts") name="hsts_max_age" class=INPUT inputmode="numeric" value=o.hsts_max_age.clone() />
                </label>
                <label class="flex items-center gap-1 self-end"><input type="checkbox" name="hsts_subdomains" checked=o.hsts_subdomains />"HSTS includes subdomains"</label>
                <label class="block font-medium" for=fid("rate")>"Rate limit: requests per second (empty: off)"
                    <input id=fid("rate") name="rate_average" class=INPUT inputmode="numeric" value=o.rate_average.clone() />
                </label>
                <label class="block font-medium" for=fid("burst")>"Burst"
                    <input id=fid("burst") name="rate_burst" class=INPUT inputmode="numeric" value=o.rate_burst.clone() />
                </label>
                <label class="block font-medium" for=fid("auth")>"Basic auth (user:password per line; a name alone keeps its password)"
                    <textarea id=fid("auth") name="basic_auth" rows="2" class=INPUT autocomplete="off" spellcheck="false">{o.basic_auth_users.clone()}</textarea>
                </label>
                <label class="block font-medium" for=fid("headers")>"Response headers (Name: value per line)"
                    <textarea id=fid("headers") name="headers" rows="2" class=INPUT spellcheck="false">{o.headers.clone()}</textarea>
                </label>
                <div class="sm:col-span-2"><Submit label="Save domain settings" pending=actions.update_domain.pending() /></div>
            </ActionForm>
            <ActionForm action=actions.upload_cert attr:class="mt-4 grid gap-3 sm:grid-cols-2">
                <input type="hidden" name="id" value=id2 />
                <label class="block font-medium" for=fid("chain")>"Certificate chain (PEM, the certificate first)"
                    <textarea id=fid("chain") name="certificate" rows="3" class=INPUT spellcheck="false"></textarea>
                </label>
                <label class="block font-medium" for=fid("key")>"Private key (PEM)"
                    <textarea id=fid("key") name="key" rows="3" class=INPUT autocomplete="off" spellcheck="false"></textarea>
                </label>
                <div class="sm:col-span-2"><Submit label="Upload certificate" pending=actions.upload_cert.pending() /></div>
            </ActionForm>
            <FormError error=upload_error />
        </details>
    }
}

#[component]
fn DomainsTab(app: AppView, actions: Actions) -> impl IntoView {
    let error = action_error(actions.add_domain);
    let domain_form = NodeRef::<leptos::html::Form>::new();
    crate::components::ui::reset_on_success(actions.add_domain, domain_form);
    let remove_error = action_error(actions.remove_domain);
    let update_error = action_error(actions.update_domain);
    let deploy = app.may.deploy;
    let rows = app
        .domains
        .iter()
        .enumerate()
        .map(|(n, d)| {
            let did = d.id.to_string();
            let host = d.host.clone();
            let generated = d.generated;
            let cert = d.cert.as_ref().map(cert_line);
            view! {
                <li class="py-2" data-domain=d.host.clone() data-generated=generated.then_some("true")>
                    <div class="flex items-center justify-between gap-2">
                        <span class="font-mono text-sm"><a class="text-indigo-700 hover:underline dark:text-indigo-300" href=d.url.clone() target="_blank" rel="noopener">{d.url.clone()}</a>
                            {d.port.map(|p| format!(" → :{p}"))}
                            {if d.strip_prefix { " (prefix stripped)" } else { "" }}
                            {if generated { " · generated" } else { "" }}
                        </span>
                        {deploy.then(|| view! {
                            <button type="button" class=BUTTON_DANGER data-remove-domain=host.clone() on:click=move |_| {
                                // Requests to it stop being routed at once: asked first.
                                if window().confirm_with_message("Remove this domain? Requests to it stop reaching the app at once.").unwrap_or(false) {
                                    actions.remove_domain.dispatch(RemoveDomain { id: did.clone() });
                                }
                            }>
                                "Remove"
                            </button>
                        })}
                    </div>
                    {cert}
                    {deploy.then(|| view! { <DomainSettings d=d.clone() n actions /> })}
                </li>
            }
        })
        .collect_view();
    view! {
        <section class=CARD>
            <h2 class="mb-3 font-semibold">"Domains"</h2>
            <p class="mb-2 text-sm text-slate-500">"Changes are routed at once. An HTTPS domain needs a DNS record pointing at this server and ports 80 and 443 open."</p>
            <ul class="divide-y divide-slate-200 dark:divide-slate-800" id="domains">{rows}</ul>
            <FormError error=remove_error />
            <FormError error=update_error />
            {deploy.then(|| view! {
            <ActionForm action=actions.add_domain node_ref=domain_form attr:class="mt-4 grid gap-3 sm:grid-cols-2" attr:id="add-domain">
                <input type="hidden" name="id" value=app.id.to_string() />
                <Field label="Host" name="host" error />
                <Field label="Path prefix" name="path_prefix" value="/".to_string() error />
                <Field label="Container port (default: the app's)" name="port" error />
                <label class="block text-sm font-medium" for="field-cert">"Certificate"
                    <select id="field-cert" name="cert" class=INPUT>
                        <option value="http">"HTTP-01 (port 80)"</option>
                        <option value="tls">"TLS-ALPN-01 (port 443)"</option>
                        <option value="dns">"DNS-01 (wildcards)"</option>
                        <option value="custom">"Uploaded certificate"</option>
                    </select>
                </label>
                <div class="flex items-center gap-4 text-sm">
                    <label class="flex items-center gap-1"><input type="checkbox" name="strip_prefix" />"Strip prefix"</label>
                    <label class="flex items-center gap-1"><input type="checkbox" name="https" />"HTTPS"</label>
                </div>
                <div class="sm:col-span-2"><Submit label="Add domain" pending=actions.add_domain.pending() /></div>
                <div class="sm:col-span-2"><FormError error /></div>
            </ActionForm>
            })}
        </section>
    }
}

#[component]
fn DeploymentsTab(app: AppView, actions: Actions, data: TabData) -> impl IntoView {
    let TabData {
        deployments: list,
        tick,
        ..
    } = data;
    // Which log is open: from the app (the same on the server and in the
    // browser, so hydration agrees), then the newest once there is one, and a
    // deployment just asked for. Changed only by effects, which run after
    // hydration: a signal set while rendering would differ between the two.
    let just_asked = actions.deploy.value().get_untracked().and_then(|r| r.ok());
    let selected = RwSignal::new(just_asked.or(app.latest_deployment));
    #[cfg(feature = "hydrate")]
    if just_asked.is_some() {
        // Opened by Deploy: its log, in view once drawn.
        request_animation_frame(|| {
            if let Some(el) = document().get_element_by_id("deployment-log") {
                el.scroll_into_view();
            }
        });
    }
    Effect::watch(
        move || {
            list.get()
                .and_then(|r| r.ok())
                .and_then(|p| p.deployments.first().map(|d| d.id))
        },
        move |first, _, _| {
            if selected.get_untracked().is_none() {
                selected.set(*first);
            }
        },
        false,
    );
    Effect::watch(
        move || actions.deploy.value().get(),
        move |v, _, _| {
            if let Some(Ok(id)) = v {
                selected.set(Some(*id));
                // The new deployment's log, in view (once it is drawn).
                #[cfg(feature = "hydrate")]
                request_animation_frame(|| {
                    if let Some(el) = document().get_element_by_id("deployment-log") {
                        el.scroll_into_view();
                    }
                });
            }
        },
        false,
    );
    let app_id = app.id;
    // Older pages, appended by "Show older" (finished deployments: they do not change).
    let older = RwSignal::new(Vec::<DeploymentView>::new());
    let next = RwSignal::new(None::<String>);
    // Where "Show older" starts, once the first page is in (an effect, as above).
    Effect::watch(
        move || list.get().and_then(|r| r.ok()).map(|p| p.next),
        move |first_next, _, _| {
            if let Some(n) = first_next {
                if older.get_untracked().is_empty() {
                    next.set(n.clone());
                }
            }
        },
        false,
    );
    let more_id = app.id.to_string();
    let show_older = move |_| {
        let (app_id, after) = (more_id.clone(), next.get_untracked());
        leptos::task::spawn_local(async move {
            if let Ok(page) = list_deployments(app_id, after).await {
                older.update(|o| o.extend(page.deployments));
                next.set(page.next);
            }
        });
    };
    let error = Signal::derive(move || {
        let failed = |v: Option<Result<(), crate::error::AppError>>| v.and_then(|r| r.err());
        failed(actions.cancel.value().get()).or_else(|| actions.rollback.value().get().and_then(|r| r.err()))
    });
    view! {
        <section class=CARD>
            <h2 class="mb-3 font-semibold">"Deployments"</h2>
            <FormError error />
            <Transition fallback=|| view! { <Loading /> }>
                {move || Suspend::new(async move {
                    match list.await {
                        Err(e) => view! { <LoadError error=e /> }.into_any(),
                        Ok(page) if page.deployments.is_empty() => view! { <p class="text-sm text-slate-500">"No deployments yet. Press Deploy."</p> }.into_any(),
                        Ok(page) => {
                            view! {
                                <ul class="divide-y divide-slate-200 dark:divide-slate-800" id="deployments">
                                    {page.deployments.into_iter().map(|d| view! { <DeploymentRow d app_id selected actions /> }).collect_view()}
                                    {move || older.get().into_iter().map(|d| view! { <DeploymentRow d app_id selected actions /> }).collect_view()}
                                </ul>
                            }.into_any()
                        }
                    }
                })}
            </Transition>
            {move || next.get().is_some().then(|| view! {
                <button type="button" class=BUTTON_QUIET id="older-deployments" on:click=show_older.clone()>"Show older"</button>
            })}
        </section>
        {move || selected.get().map(|d| view! {
            <section class=CARD id="deployment-log">
                <h2 class="mb-3 font-semibold">"Deployment log"</h2>
                <LogView
                    ws_path=format!("/api/ws/deployments/{d}/log")
                    download=format!("/api/deployments/{d}/log")
                    on_end=Callback::new(move |_| tick.update(|t| *t += 1))
                />
            </section>
        })}
    }
}

/// CPU, memory and network of the app's containers over the last hour,
/// fetched again every ten seconds while the tab is open.
#[component]
fn MetricsTab(data: TabData) -> impl IntoView {
    view! {
        <MetricsPanel
            state=data.metrics
            title="Resources"
            key="metrics"
            note="All of the app's containers together. Memory leaves out file cache the kernel can take back, as docker stats does."
        />
    }
}

#[component]
fn DeploymentRow(
    d: DeploymentView,
    app_id: uuid::Uuid,
    selected: RwSignal<Option<uuid::Uuid>>,
    actions: Actions,
) -> impl IntoView {
    let id = d.id;
    let finished = d.finished();
    let sid = id.to_string();
    let rid = id.to_string();
    view! {
        <li class="flex flex-col gap-2 py-3 sm:flex-row sm:items-center sm:justify-between" data-deployment=id.to_string()>
            <div class="space-y-1">
                <div class="flex items-center gap-2">
                    <StatusBadge status=Badge::from(d.status) />
                    {d.live.then(|| view! { <span class="rounded-full bg-indigo-100 px-2 py-0.5 text-xs font-medium text-indigo-800 dark:bg-indigo-950 dark:text-indigo-300" data-live="">"live"</span> })}
                    <span class="text-sm">{match &d.trigger_detail {
                        Some(detail) => format!("{} ({detail})", d.trigger),
                        None => d.trigger.to_string(),
                    }}</span>
                    {d.commit.clone().map(|c| view! { <code class="text-xs">{c.chars().take(8).collect::<String>()}</code> })}
                </div>
                <p class="text-xs text-slate-500">{d.created_at.clone()} {d.duration_secs.map(|s| format!(" · {s} s"))}</p>
                {d.rollback_of.map(|r| view! {
                    <p class="text-xs text-slate-500" data-rollback-of=r.to_string()>{format!("restores deployment {}", &r.simple().to_string()[..8])}</p>
                })}
                {d.superseded.clone().map(|(at, by)| view! {
                    <p class="text-xs text-slate-500" data-superseded="">{match by {
                        Some(by) => format!("replaced by {} at {at}", &by.simple().to_string()[..8]),
                        None => format!("replaced at {at}"),
                    }}</p>
                })}
                {d.reason.clone().map(|r| view! { <p class="text-sm text-red-700 dark:text-red-400" data-reason="">{r}</p> })}
            </div>
            <div class="flex gap-2">
                <button type="button" class=BUTTON_QUIET data-show-log="" on:click=move |_| selected.set(Some(id))>
                    {move || if selected.get() == Some(id) { "Showing log" } else { "Log" }}
                </button>
                {(!finished).then(|| view! {
                    <button type="button" class=BUTTON_DANGER on:click=move |_| { actions.cancel.dispatch(CancelDeployment { id: sid.clone() }); }>"Cancel"</button>
                })}
                {(d.status == lifecycle::DeploymentStatus::Failed).then(|| {
                    let app_id = app_id.to_string();
                    view! {
                        <button type="button" class=BUTTON_QUIET data-retry="" on:click=move |_| { actions.deploy.dispatch(DeployApp { app_id: app_id.clone() }); }>"Retry"</button>
                    }
                })}
                {d.can_rollback.then(|| view! {
                    <button type="button" class=BUTTON_QUIET on:click=move |_| { actions.rollback.dispatch(RollbackDeployment { id: rid.clone() }); }>"Roll back to this"</button>
                })}
            </div>
        </li>
    }
}

#[component]
fn RuntimeLogsTab(app: AppView) -> impl IntoView {
    let tail = RwSignal::new("200".to_owned());
    let since = RwSignal::new(String::new());
    let id = app.id;
    let path = Signal::derive(move || {
        let since = since.get();
        let since = if since.is_empty() {
            String::new()
        } else {
            format!("&since={since}")
        };
        format!("/api/ws/apps/{id}/logs?tail={}{since}", tail.get())
    });
    view! {
        <section class=CARD>
            <h2 class="mb-3 font-semibold">"Runtime logs"</h2>
            {if app.live_deployment.is_none() {
                view! { <p class="text-sm text-slate-500">"The application is not running yet."</p> }.into_any()
            } else {
                view! {
                    <div class="mb-3 flex gap-3 text-sm">
                        <label>"Last lines "
                            <select class=INPUT on:change=move |ev| tail.set(event_target_value(&ev))>
                                <option value="100">"100"</option>
                                <option value="200" selected=true>"200"</option>
                                <option value="1000">"1000"</option>
                                <option value="5000">"5000"</option>
                            </select>
                        </label>
                        <label>"Since "
                            <select class=INPUT id="log-since" on:change=move |ev| {
                                let secs: i64 = event_target_value(&ev).parse().unwrap_or(0);
                                since.set(if secs == 0 { String::new() } else { (crate::components::ui::now_unix() - secs).to_string() });
                            }>
                                <option value="0">"any time"</option>
                                <option value="300">"5 minutes"</option>
                                <option value="3600">"1 hour"</option>
                                <option value="86400">"1 day"</option>
                            </select>
                        </label>
                    </div>
                    <LogView ws_path=path />
                }.into_any()
            }}
        </section>
    }
}

#[component]
fn AdvancedTab(app: AppView, actions: Actions) -> impl IntoView {
    let error = action_error(actions.runtime);
    let saved = move || matches!(actions.runtime.value().get(), Some(Ok(())));
    view! {
        <section class=CARD>
            <h2 class="mb-3 font-semibold">"Container"</h2>
            <ActionForm action=actions.runtime attr:class="grid gap-4 sm:grid-cols-2" attr:id="runtime-form">
                <fieldset class="contents" disabled=!app.may.manage>
                <input type="hidden" name="id" value=app.id.to_string() />
                <Field label="Container port" name="port" value=app.port.to_string() error />
                <label class="block text-sm font-medium">"Restart policy" {select("restart", &[("unless-stopped", "unless stopped"), ("always", "always"), ("on-failure", "on failure"), ("no", "never")], &app.restart)}</label>
                <Field label="CPU limit (thousandths of a CPU)" name="cpu_millis" value=app.cpu_millis.clone() error />
                <Field label="Memory limit (MB)" name="memory_mb" value=app.memory_mb.clone() error />
                <div class="sm:col-span-2"><TextArea label="Command override (one argument per line)" name="command" value=app.command.clone() rows=3 error /></div>
                <div class="sm:col-span-2"><TextArea label="Volumes (name:/path or /host/path:/path, optional :ro; host paths need admin)" name="volumes" value=app.volumes.clone() rows=3 error /></div>
                <label class="block text-sm font-medium">"Health check" {select("health", &[("tcp", "TCP port open"), ("http", "HTTP GET"), ("command", "Command")], &app.health)}</label>
                <Field label="HTTP path" name="health_path" value=app.health_path.clone() error />
                <div class="sm:col-span-2"><TextArea label="Health command (one argument per line)" name="health_command" value=app.health_command.clone() rows=2 error /></div>
                <Field label="Interval (ms)" name="health_interval_ms" value=app.health_interval_ms.to_string() error />
                <Field label="Timeout (ms)" name="health_timeout_ms" value=app.health_timeout_ms.to_string() error />
                <Field label="Retries" name="health_retries" value=app.health_retries.to_string() error />
                <Field label="Start period (s)" name="health_start_period_secs" value=app.health_start_period_secs.to_string() error />
                <Field label="Drain old container (s)" name="drain_secs" value=app.drain_secs.to_string() error />
                <div class="sm:col-span-2 flex items-center gap-3">
                    <Submit label="Save" pending=actions.runtime.pending() id="runtime-save" />
                    <Show when=saved><span class="text-sm text-emerald-600">"Saved. Deploy to apply."</span></Show>
                </div>
                <div class="sm:col-span-2"><FormError error /></div>
                </fieldset>
            </ActionForm>
        </section>
    }
}
