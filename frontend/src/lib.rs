//! The browser entry point: hydrates the server-rendered page. Nothing else.

#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    // Hydration waits for the lazy route on screen to load its chunk (the page
    // already asked for it through a preload), so it walks the same tree the
    // server rendered. `hydrate_lazy` does the same, without telling us when.
    _ = any_spawner::Executor::init_wasm_bindgen();
    leptos::task::spawn_local(async {
        let owner =
            leptos::mount::hydrate_from_async(leptos::prelude::document().body().expect("a body"), app::App).await;
        owner.forget();
        // Event handlers are attached now: mark the document so tests and
        // scripts can tell a hydrated page from server HTML.
        if let Some(el) = leptos::prelude::document().document_element() {
            let _ = el.set_attribute("data-hydrated", "true");
        }
    });
}
