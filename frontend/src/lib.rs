//! The browser entry point: hydrates the server-rendered page. Nothing else.

#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
    // Event handlers are attached now: mark the document so tests and scripts
    // can tell a hydrated page from server HTML.
    if let Some(el) = leptos::prelude::document().document_element() {
        let _ = el.set_attribute("data-hydrated", "true");
    }
}
