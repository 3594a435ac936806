//! Dark mode: follows the system until toggled, then remembers the choice in
//! localStorage (read before first paint by the script in the HTML shell).

use leptos::prelude::*;

/// A button that switches between light and dark mode.
#[component]
pub fn ThemeToggle() -> impl IntoView {
    let dark = RwSignal::new(false);
    // Runs in the browser only: the server cannot know the visitor's choice.
    Effect::new(move |_| {
        if let Some(el) = document().document_element() {
            dark.set(el.class_list().contains("dark"));
        }
    });
    let toggle = move |_| {
        let now = !dark.get_untracked();
        if let Some(el) = document().document_element() {
            let _ = el.class_list().toggle_with_force("dark", now);
        }
        if let Ok(Some(storage)) = window().local_storage() {
            let _ = storage.set_item("berth-theme", if now { "dark" } else { "light" });
        }
        dark.set(now);
    };
    view! {
        <button
            id="theme-toggle"
            type="button"
            on:click=toggle
            aria-pressed=move || dark.get().to_string()
            class="w-full rounded-md px-3 py-2 text-left text-sm hover:bg-slate-100 dark:hover:bg-slate-800"
        >
            {move || if dark.get() { "☀ Light mode" } else { "☾ Dark mode" }}
        </button>
    }
}
