//! Form controls and shared styles: one design language for every page.

use crate::error::AppError;
use leptos::prelude::*;

pub const INPUT: &str = "mt-1 block w-full rounded-md border border-slate-300 bg-white px-3 py-2 text-sm shadow-sm focus:border-indigo-500 focus:outline-none focus:ring-1 focus:ring-indigo-500 dark:border-slate-700 dark:bg-slate-900";
pub const BUTTON: &str = "inline-flex items-center justify-center rounded-md bg-indigo-600 px-4 py-2 text-sm font-semibold text-white shadow-sm hover:bg-indigo-500 disabled:opacity-50";
pub const BUTTON_QUIET: &str = "inline-flex items-center justify-center rounded-md border border-slate-300 px-3 py-1.5 text-sm font-medium hover:bg-slate-100 dark:border-slate-700 dark:hover:bg-slate-800";
pub const BUTTON_DANGER: &str = "inline-flex items-center justify-center rounded-md border border-red-300 px-3 py-1.5 text-sm font-medium text-red-700 hover:bg-red-50 dark:border-red-800 dark:text-red-400 dark:hover:bg-red-950";
pub const CARD: &str =
    "rounded-lg border border-slate-200 bg-white p-4 shadow-sm sm:p-6 dark:border-slate-800 dark:bg-slate-900";

/// The error of the last run of a server action, if it failed.
pub fn action_error<S>(action: ServerAction<S>) -> Signal<Option<AppError>>
where
    S: server_fn::ServerFn<Error = AppError> + Clone + Send + Sync + 'static,
    S::Output: Clone + Send + Sync + 'static,
{
    Signal::derive(move || action.value().get().and_then(|r| r.err()))
}

/// A labelled input with its server-side validation message underneath.
#[component]
pub fn Field(
    label: &'static str,
    name: &'static str,
    #[prop(default = "text")] kind: &'static str,
    #[prop(optional, into)] value: Option<String>,
    #[prop(optional)] autocomplete: Option<&'static str>,
    #[prop(optional)] placeholder: Option<&'static str>,
    /// Where the same form is on the page more than once (one per row): what
    /// keeps each input's ID its own.
    #[prop(optional)]
    id_prefix: Option<String>,
    #[prop(into)] error: Signal<Option<AppError>>,
) -> impl IntoView {
    let id = match id_prefix {
        Some(p) => format!("{p}-field-{name}"),
        None => format!("field-{name}"),
    };
    let for_id = id.clone();
    let message = move || error.get().and_then(|e| e.for_field(name));
    // One element, so a grid of fields keeps each message under its input.
    view! {
        <div>
        <label class="block text-sm font-medium" for=for_id>
            {label}
            <input
                id=id
                name=name
                type=kind
                class=INPUT
                value=value
                autocomplete=autocomplete
                placeholder=placeholder
                aria-invalid=move || message().is_some().to_string()
            />
        </label>
        <Show when=move || message().is_some()>
            <p class="mt-1 text-sm text-red-600 dark:text-red-400" data-error-for=name>
                {message}
            </p>
        </Show>
        </div>
    }
}

/// A message for errors not tied to one field (wrong password, rate limit, 503 ...).
#[component]
pub fn FormError(#[prop(into)] error: Signal<Option<AppError>>) -> impl IntoView {
    let message = move || error.get().and_then(|e| e.general());
    view! {
        <Show when=move || message().is_some()>
            <p role="alert" class="rounded-md bg-red-50 px-3 py-2 text-sm text-red-700 dark:bg-red-950 dark:text-red-300">
                {message}
            </p>
        </Show>
    }
}

/// A submit button that says when its action is running.
#[component]
pub fn Submit(
    label: &'static str,
    #[prop(into)] pending: Signal<bool>,
    #[prop(optional)] id: Option<&'static str>,
) -> impl IntoView {
    view! {
        <button type="submit" id=id class=BUTTON disabled=move || pending.get()>
            {move || if pending.get() { "Working…" } else { label }}
        </button>
    }
}

/// Shown while a resource loads.
#[component]
pub fn Loading() -> impl IntoView {
    view! { <p class="text-sm text-slate-500" aria-busy="true">"Loading…"</p> }
}

/// Shown when a resource failed to load.
#[component]
pub fn LoadError(error: AppError) -> impl IntoView {
    // What was asked for does not exist here: say it in a sentence, with a way on.
    if matches!(error, AppError::NotFound) {
        return view! {
            <div role="alert" class="rounded-md border border-slate-200 bg-white p-6 text-center dark:border-slate-800 dark:bg-slate-900" data-not-found="">
                <p class="font-semibold">"Not found"</p>
                <p class="mt-1 text-sm text-slate-600 dark:text-slate-400">"It does not exist, or it belongs to another organization."</p>
                <a href="/projects" class="mt-3 inline-block text-sm text-indigo-700 hover:underline dark:text-indigo-300">"Back to projects"</a>
            </div>
        }
        .into_any();
    }
    view! {
        <p role="alert" class="rounded-md bg-red-50 px-3 py-2 text-sm text-red-700 dark:bg-red-950 dark:text-red-300">
            {error.to_string()}
        </p>
    }
    .into_any()
}

/// Seconds since the UNIX epoch: in the browser from JavaScript's clock
/// (`wasm32-unknown-unknown` has no system time: chrono's `Utc::now` panics there).
pub fn now_unix() -> i64 {
    #[cfg(feature = "hydrate")]
    {
        (js_sys::Date::now() / 1000.0) as i64
    }
    #[cfg(not(feature = "hydrate"))]
    {
        chrono::Utc::now().timestamp()
    }
}

/// Sends the browser to `path` with a full load, so every resource starts fresh
/// (after sign-in, sign-out and organization switches).
pub fn hard_navigate(path: &str) {
    #[cfg(feature = "hydrate")]
    {
        let _ = window().location().set_href(path);
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = path;
}

/// A row of tabs, each a link to `<base>?tab=<key>`; the current one underlined.
#[component]
pub fn Tabs(base: String, tabs: &'static [(&'static str, &'static str)], current: Memo<String>) -> impl IntoView {
    use leptos_router::components::A;
    let links = tabs
        .iter()
        .map(|(key, label)| {
            let href = format!("{base}?tab={key}");
            let key = *key;
            view! {
                <A href=href attr:data-tab=key attr:class=move || {
                    if current.get() == key {
                        "border-b-2 border-indigo-600 px-2 py-2 text-sm font-semibold text-indigo-700 sm:px-3 dark:text-indigo-300"
                    } else {
                        "px-2 py-2 text-sm text-slate-600 hover:text-slate-900 sm:px-3 dark:text-slate-400 dark:hover:text-white"
                    }
                }>{*label}</A>
            }
        })
        .collect_view();
    // Wraps rather than scrolling sideways on a phone.
    view! { <nav class="flex flex-wrap gap-x-1 border-b border-slate-200 dark:border-slate-800" aria-label="Sections">{links}</nav> }
}

/// Copies `text` to the clipboard; says so for two seconds.
#[component]
pub fn CopyButton(text: String, label: &'static str) -> impl IntoView {
    let copied = RwSignal::new(false);
    let copy = move |_| {
        #[cfg(feature = "hydrate")]
        {
            use wasm_bindgen::JsCast;
            let w: wasm_bindgen::JsValue = window().into();
            let clip = js_sys::Reflect::get(&w, &"navigator".into())
                .and_then(|n| js_sys::Reflect::get(&n, &"clipboard".into()));
            if let Ok(clip) = clip {
                if let Ok(f) = js_sys::Reflect::get(&clip, &"writeText".into()) {
                    if let Some(f) = f.dyn_ref::<js_sys::Function>() {
                        let _ = f.call1(&clip, &text.clone().into());
                        copied.set(true);
                        set_timeout(move || copied.set(false), std::time::Duration::from_secs(2));
                    }
                }
            }
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = &text;
    };
    view! {
        <button type="button" class="shrink-0 rounded border border-slate-300 px-2 py-0.5 text-xs hover:bg-slate-100 dark:border-slate-700 dark:hover:bg-slate-800"
            aria-label=label on:click=copy>
            {move || if copied.get() { "Copied" } else { "Copy" }}
        </button>
    }
}

/// Clears `form` after `action` succeeds, so the next entry starts empty
/// (hidden inputs keep their values: `reset` restores defaults).
pub fn reset_on_success<S>(action: ServerAction<S>, form: NodeRef<leptos::html::Form>)
where
    S: server_fn::ServerFn<Error = AppError> + Clone + Send + Sync + 'static,
    S::Output: Clone + Send + Sync + 'static,
{
    Effect::watch(
        move || action.version().get(),
        move |_, _, _| {
            if matches!(action.value().get_untracked(), Some(Ok(_))) {
                if let Some(f) = form.get_untracked() {
                    f.reset();
                }
            }
        },
        false,
    );
}

/// A moment as the pages show it (`2026-12-04 13:45:11 UTC`, from
/// `types::stamp`) in a `<time>` element, with the machine-readable form
/// HTML asks for in `datetime` (`2026-12-04T13:45:11Z`).
#[component]
pub fn When(#[prop(into)] at: String, #[prop(optional)] class: &'static str) -> impl IntoView {
    let machine = machine_time(&at);
    view! { <time datetime=machine class=class>{at}</time> }
}

/// `2026-12-04 13:45:11 UTC` → `2026-12-04T13:45:11Z` (anything else as it is).
pub fn machine_time(shown: &str) -> String {
    match shown.strip_suffix(" UTC").and_then(|s| s.split_once(' ')) {
        Some((date, time)) => format!("{date}T{time}Z"),
        None => shown.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::machine_time;

    #[test]
    fn a_shown_moment_has_its_machine_form() {
        assert_eq!(machine_time("2026-12-04 13:45:11 UTC"), "2026-12-04T13:45:11Z");
        assert_eq!(machine_time("2026-12-04 13:45 UTC"), "2026-12-04T13:45Z");
        assert_eq!(machine_time("yesterday"), "yesterday");
    }
}
