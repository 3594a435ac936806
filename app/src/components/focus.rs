//! Keyboard focus kept through a page's rebuilds. A save re-reads what the
//! page shows, and a page built from what it read (an app's tabs, the members
//! list) builds its controls again: the control that had the focus is gone,
//! and the focus falls to the document's body, so a keyboard user starts over
//! from the top of the page after every save. Rather than every page keeping
//! its elements, the shell's `<main>` keeps the focus: it notes the control
//! that last had it and, once that control is gone or disabled and nothing
//! else has the focus, gives it to the control's copy (the same ID, or the
//! same kind of control with the same name and words at the same place among
//! as many controls in the copy of the nearest element around it with an ID,
//! its form or row), without scrolling. When that copy, or the focused
//! control itself, is hidden in a disclosure the save closed (an edit in
//! place: its Save button), the focus goes to the disclosure's summary,
//! which opens it again.
//!
//! When its form closed and a control stands in for it (names the form's ID
//! in `data-focus-for`: "Reveal and edit" for the editor it opens), the
//! focus goes to that control.
//!
//! When the control went away for good with its row (a list item removed),
//! the focus goes to the same control in the row that took its place, or in
//! the row before when the last one went. When the list's only row went (the
//! list is empty or gone), or the row stayed without it and with no other
//! control (an API key revoked), it goes to the heading of the list's
//! section, which is made focusable for that (`tabindex="-1"`, out of the tab
//! order): a reader hears where they are, and the next Tab goes on from there.
//!
//! What it does not do: keep a focus the user moved away (a click on the
//! page's background, a control outside `<main>`); and it forgets everything
//! when the path changes.

use leptos::prelude::*;

/// Keeps the focus inside `main` (call in the component that renders it).
pub fn keep_focus(main: NodeRef<leptos::html::Main>) {
    #[cfg(feature = "hydrate")]
    {
        let installed = StoredValue::new(false);
        Effect::new(move |_| {
            if let Some(el) = main.get() {
                if !installed.get_value() {
                    installed.set_value(true);
                    keeper::install(el);
                }
            }
        });
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = main;
}

/// Gives the focus to the element with ID `id` when `shown` turns true: a
/// control that swaps itself for what it opens ("Reveal and edit" for the
/// editor it reveals) is gone when its work is done, and the keeper has no
/// copy of it to go back to; the user came for what it opened.
pub fn focus_when_shown(shown: impl Fn() -> bool + Send + Sync + 'static, id: &'static str) {
    #[cfg(feature = "hydrate")]
    Effect::new(move |was: Option<bool>| {
        let now = shown();
        if now && was == Some(false) {
            // After this update's DOM work: the element is there by then.
            request_animation_frame(move || {
                use wasm_bindgen::JsCast;
                if let Some(el) = document()
                    .get_element_by_id(id)
                    .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok())
                {
                    let _ = el.focus();
                }
            });
        }
        now
    });
    #[cfg(not(feature = "hydrate"))]
    let _ = (shown, id);
}

#[cfg(feature = "hydrate")]
mod keeper {
    use send_wrapper::SendWrapper;
    use std::cell::RefCell;
    use std::rc::Rc;
    use wasm_bindgen::closure::Closure;
    use wasm_bindgen::JsCast;
    use web_sys::{Element, HtmlElement};

    /// What can hold the keyboard's focus, as the page's controls are.
    const CONTROLS: &str = "a[href], button, input, select, textarea, summary, [tabindex]";

    /// The control that last had the focus, and how to know its copy.
    struct Noted {
        el: Element,
        id: String,
        looks: String,
        /// The ID of the nearest element around it inside `main` that has
        /// one (its form, its row), or empty for `main` itself: the place
        /// its copy is looked for, so that a list elsewhere on the page
        /// growing meanwhile (a delivery arriving) does not lose it.
        scope: String,
        /// Its place among the scope's controls, and how many there are.
        index: u32,
        count: u32,
        /// Its row, when it sits in one: for a neighbour when the row goes.
        row: Option<Row>,
        path: String,
    }

    /// Where a control's row (an `<li>`) sat in its list (a list with an ID).
    struct Row {
        list: String,
        index: u32,
        count: u32,
        /// The words of the first heading of the `<section>` around the
        /// list: where the focus goes when the list is emptied.
        heading: String,
    }

    /// What a section's heading is looked for as (its first of these).
    const HEADINGS: &str = "h2, h3";

    type Slot = Rc<RefCell<Option<Noted>>>;

    /// A control's kind, name and words: what a copy of it shares.
    fn looks(el: &Element) -> String {
        let words: String = el.text_content().unwrap_or_default().trim().chars().take(80).collect();
        format!(
            "{}|{}|{}|{}",
            el.tag_name(),
            el.get_attribute("type").unwrap_or_default(),
            el.get_attribute("name").unwrap_or_default(),
            words
        )
    }

    fn controls(main: &Element) -> Vec<Element> {
        let Ok(list) = main.query_selector_all(CONTROLS) else {
            return Vec::new();
        };
        (0..list.length())
            .filter_map(|i| list.item(i))
            .filter_map(|n| n.dyn_into::<Element>().ok())
            .collect()
    }

    fn path() -> String {
        leptos::prelude::window().location().pathname().unwrap_or_default()
    }

    /// An element's ID, read as the attribute: a form's `id` property is
    /// its control named `id` when it has one (an edit form's hidden
    /// `<input name="id">`), which `Element::id` hands on as if it were a
    /// string: the module traps ("memory access out of bounds").
    fn id_of(el: &Element) -> String {
        el.get_attribute("id").unwrap_or_default()
    }

    /// The nearest element around `el` inside `main` with an ID.
    fn scope_of(main: &Element, el: &Element) -> Option<Element> {
        let around = el.parent_element()?.closest("[id]").ok()??;
        (!around.is_same_node(Some(main)) && main.contains(Some(&around))).then_some(around)
    }

    /// The row around `el`, if its list has an ID.
    fn row_of(el: &Element) -> Option<Row> {
        let item = el.closest("li").ok()??;
        let list = item.parent_element()?;
        let id = id_of(&list);
        if id.is_empty() {
            return None;
        }
        let rows = list.children();
        let index = (0..rows.length()).find(|&i| rows.item(i).is_some_and(|r| r.is_same_node(Some(&item))))?;
        let heading = list
            .closest("section")
            .ok()
            .flatten()
            .and_then(|s| s.query_selector(HEADINGS).ok().flatten())
            .map(|h| words(&h))
            .unwrap_or_default();
        Some(Row {
            list: id,
            index,
            count: rows.length(),
            heading,
        })
    }

    fn words(el: &Element) -> String {
        el.text_content().unwrap_or_default().trim().to_owned()
    }

    /// The heading with these words that opens a section in `main`, made
    /// focusable by script (not by Tab) if it is not already.
    fn section_heading(main: &Element, words_were: &str) -> Option<Element> {
        if words_were.is_empty() {
            return None;
        }
        let sections = main.query_selector_all("section").ok()?;
        let heading = (0..sections.length())
            .filter_map(|i| sections.item(i)?.dyn_into::<Element>().ok())
            .filter_map(|s| s.query_selector(HEADINGS).ok().flatten())
            .find(|h| words(h) == words_were)?;
        if !heading.has_attribute("tabindex") {
            let _ = heading.set_attribute("tabindex", "-1");
        }
        Some(heading)
    }

    fn note(main: &Element, el: Element) -> Noted {
        let scope = scope_of(main, &el);
        let row = row_of(&el);
        let all = controls(scope.as_ref().unwrap_or(main));
        let index = all.iter().position(|c| c.is_same_node(Some(&el))).unwrap_or(usize::MAX);
        Noted {
            id: id_of(&el),
            looks: looks(&el),
            scope: scope.map(|s| id_of(&s)).unwrap_or_default(),
            index: u32::try_from(index).unwrap_or(u32::MAX),
            count: u32::try_from(all.len()).unwrap_or(u32::MAX),
            row,
            path: path(),
            el,
        }
    }

    /// The noted control if it is still here, else its copy.
    fn copy_of(main: &Element, noted: &Noted) -> Option<Element> {
        if noted.el.is_connected() {
            return Some(noted.el.clone());
        }
        let doc = leptos::prelude::document();
        if !noted.id.is_empty() {
            if let Some(el) = doc.get_element_by_id(&noted.id) {
                return main.contains(Some(&el)).then_some(el);
            }
        }
        // No ID: the same kind of control at the same place among as many
        // in its scope's copy.
        let scope = if noted.scope.is_empty() {
            main.clone()
        } else {
            doc.get_element_by_id(&noted.scope).filter(|s| main.contains(Some(s)))?
        };
        let all = controls(&scope);
        let same_shape = u32::try_from(all.len()).ok() == Some(noted.count);
        let at = all.get(noted.index as usize)?;
        (same_shape && looks(at) == noted.looks).then(|| at.clone())
    }

    /// When the noted control went with its row, or from it:
    /// - the row was removed (its list is here with fewer rows): the same
    ///   control in the row that took its place, else in the one before (the
    ///   last row went), else that row's first control, else (a row with no
    ///   control: the default environment) the section's heading;
    /// - it was the list's only row and the list is empty or gone: the
    ///   heading of the list's section;
    /// - the row is still there without it (an API key revoked: its button
    ///   goes, its row stays to say so): the row's first control, else the
    ///   section's heading.
    ///
    /// Not while a list is missing that had more rows: it may be on its way.
    /// (A section's content being loaded again keeps what it showed until
    /// the new one is ready: `Transition`.)
    fn neighbour_of(main: &Element, noted: &Noted) -> Option<Element> {
        let row = noted.row.as_ref()?;
        let list = leptos::prelude::document()
            .get_element_by_id(&row.list)
            .filter(|l| main.contains(Some(l)));
        let left = list.as_ref().map_or(0, |l| l.children().length());
        if left == 0 {
            return (row.count == 1).then(|| section_heading(main, &row.heading)).flatten();
        }
        let list = list.filter(|_| left <= row.count)?;
        let item = list.children().item(row.index.min(left - 1))?;
        let all = controls(&item);
        all.iter()
            .find(|c| looks(c) == noted.looks)
            .or_else(|| all.first())
            .cloned()
            .or_else(|| section_heading(main, &row.heading))
    }

    /// The control that stands in for the noted control's closed form (or
    /// other scope) and opens it again: `data-focus-for` names the scope's
    /// ID ("Reveal and edit" for the variables' editor, which a save closes).
    fn stand_in(main: &Element, noted: &Noted) -> Option<Element> {
        if noted.scope.is_empty() {
            return None;
        }
        controls(main)
            .into_iter()
            .find(|c| c.get_attribute("data-focus-for").as_deref() == Some(noted.scope.as_str()))
    }

    /// Nothing has the focus (it fell to the body when its control went).
    fn focus_lost() -> bool {
        let doc = leptos::prelude::document();
        match doc.active_element() {
            None => true,
            Some(a) => doc.body().is_some_and(|b| a.is_same_node(Some(&b))),
        }
    }

    /// After a change under `main`: gives a lost focus back (cheap questions
    /// first: a streaming log changes `main` many times a second).
    fn restore(main: &Element, slot: &Slot) {
        if slot.borrow().is_none() {
            return;
        }
        if !focus_lost() {
            // A disclosure closed over the focused control (a save that
            // changed only words, so no control was built again): the
            // browser drops that focus at its next rendering, with nothing
            // here to notice; the summary takes it now.
            let doc = leptos::prelude::document();
            if let Some(active) = doc.active_element().filter(|a| main.contains(Some(a))) {
                if let Some(summary) = summary_hiding(&active).filter(|s| !s.is_same_node(Some(&active))) {
                    focus(&summary);
                }
            }
            return;
        }
        let mut noted = slot.borrow_mut();
        let Some(n) = noted.as_ref() else { return };
        if n.path != path() {
            *noted = None;
            return;
        }
        let Some(target) = copy_of(main, n)
            .or_else(|| neighbour_of(main, n))
            .or_else(|| stand_in(main, n))
        else {
            return;
        };
        if target.matches(":disabled").unwrap_or(true) {
            // A Save button disabled while its request runs: kept, for when
            // it is enabled again.
            return;
        }
        drop(noted);
        focus(&target);
        if focus_lost() {
            // The copy is hidden in a disclosure the save closed (an edit
            // in place, done): its summary, which opens it again, is the
            // control's visible place.
            if let Some(summary) = summary_hiding(&target) {
                focus(&summary);
            }
        }
    }

    fn focus(el: &Element) {
        if let Some(el) = el.dyn_ref::<HtmlElement>() {
            let options = web_sys::FocusOptions::new();
            options.set_prevent_scroll(true);
            let _ = el.focus_with_options(&options);
        }
    }

    /// The summary of the outermost closed `<details>` around `el`.
    fn summary_hiding(el: &Element) -> Option<Element> {
        const CLOSED: &str = "details:not([open])";
        let mut closed = el.parent_element()?.closest(CLOSED).ok()??;
        while let Some(outer) = closed.parent_element().and_then(|p| p.closest(CLOSED).ok().flatten()) {
            closed = outer;
        }
        closed.query_selector(":scope > summary").ok()?
    }

    /// The element an event was sent to.
    fn element_of(target: Option<web_sys::EventTarget>) -> Option<Element> {
        target.and_then(|t| t.dyn_into::<Element>().ok())
    }

    /// What the keeper holds for as long as `main` is there.
    struct Installed {
        main: Element,
        observer: web_sys::MutationObserver,
        on_focusin: Closure<dyn FnMut(web_sys::FocusEvent)>,
        on_focusout: Closure<dyn FnMut(web_sys::FocusEvent)>,
        on_pointerdown: Closure<dyn FnMut(web_sys::Event)>,
        _on_change: Closure<dyn FnMut(js_sys::Array, web_sys::MutationObserver)>,
    }

    impl Drop for Installed {
        fn drop(&mut self) {
            self.observer.disconnect();
            let m = &self.main;
            let _ = m.remove_event_listener_with_callback("focusin", self.on_focusin.as_ref().unchecked_ref());
            let _ = m.remove_event_listener_with_callback("focusout", self.on_focusout.as_ref().unchecked_ref());
            let _ = leptos::prelude::document()
                .remove_event_listener_with_callback("pointerdown", self.on_pointerdown.as_ref().unchecked_ref());
        }
    }

    pub fn install(main: HtmlElement) {
        let main: Element = main.into();
        let slot: Slot = Rc::new(RefCell::new(None));
        let on_focusin = {
            let (main, slot) = (main.clone(), slot.clone());
            Closure::<dyn FnMut(web_sys::FocusEvent)>::new(move |ev: web_sys::FocusEvent| {
                if let Some(el) = element_of(ev.target()).filter(|e| e.matches(CONTROLS).unwrap_or(false)) {
                    *slot.borrow_mut() = Some(note(&main, el));
                }
            })
        };
        // The focus went to something outside `main`: the user moved it.
        let on_focusout = {
            let (main, slot) = (main.clone(), slot.clone());
            Closure::<dyn FnMut(web_sys::FocusEvent)>::new(move |ev: web_sys::FocusEvent| {
                let to = element_of(ev.related_target());
                if to.is_some_and(|t| !main.contains(Some(&t))) {
                    *slot.borrow_mut() = None;
                }
            })
        };
        // A press on what takes no focus (the page's background): the user
        // let the focus go.
        let on_pointerdown = {
            let slot = slot.clone();
            Closure::<dyn FnMut(web_sys::Event)>::new(move |ev: web_sys::Event| {
                let on_control = element_of(ev.target())
                    .and_then(|e| e.closest(&format!("{CONTROLS}, label")).ok().flatten())
                    .is_some();
                if !on_control {
                    *slot.borrow_mut() = None;
                }
            })
        };
        let on_change = {
            let (main, slot) = (main.clone(), slot.clone());
            Closure::<dyn FnMut(js_sys::Array, web_sys::MutationObserver)>::new(
                move |_: js_sys::Array, _: web_sys::MutationObserver| restore(&main, &slot),
            )
        };
        let Ok(observer) = web_sys::MutationObserver::new(on_change.as_ref().unchecked_ref()) else {
            return;
        };
        let init = web_sys::MutationObserverInit::new();
        init.set_child_list(true);
        init.set_subtree(true);
        init.set_attributes(true);
        // `open`: a disclosure closing hides the control in it.
        init.set_attribute_filter(&js_sys::Array::of2(&"disabled".into(), &"open".into()));
        let _ = observer.observe_with_options(&main, &init);
        let _ = main.add_event_listener_with_callback("focusin", on_focusin.as_ref().unchecked_ref());
        let _ = main.add_event_listener_with_callback("focusout", on_focusout.as_ref().unchecked_ref());
        let _ = leptos::prelude::document()
            .add_event_listener_with_callback("pointerdown", on_pointerdown.as_ref().unchecked_ref());
        let installed = SendWrapper::new(Installed {
            main,
            observer,
            on_focusin,
            on_focusout,
            on_pointerdown,
            _on_change: on_change,
        });
        leptos::prelude::on_cleanup(move || drop(installed));
    }
}
