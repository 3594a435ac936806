//! Status pushed from the server: the shell opens one server-sent event stream
//! per page (`/api/events`, the organization's status changes) and pages
//! re-read what an event names, instead of polling. Postgres stays the truth:
//! an event only says "look again".

use leptos::prelude::*;

/// One status change, as `engine::events::Event` serializes it (`kind`:
/// `deployment`, `service`, `backup`; `resync` when the page fell behind and
/// should re-read everything).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusEvent {
    pub kind: String,
    pub id: String,
    /// Deployments: their application.
    pub app: Option<String>,
    /// Backups and restores: their service (none: Berth's own database).
    pub service: Option<String>,
    /// Deployments: the status now.
    pub status: Option<String>,
}

impl StatusEvent {
    /// Reads the JSON of one event (`None`: not one).
    pub fn parse(kind_hint: Option<&str>, json: &str) -> Option<Self> {
        if kind_hint == Some("resync") {
            return Some(Self {
                kind: "resync".into(),
                ..Self::default()
            });
        }
        let v = js_sys::JSON::parse(json).ok()?;
        let get = |k: &str| js_sys::Reflect::get(&v, &k.into()).ok().and_then(|x| x.as_string());
        Some(Self {
            kind: get("kind")?,
            id: get("id").unwrap_or_default(),
            app: get("app"),
            service: get("service"),
            status: get("status"),
        })
    }
}

/// The page's latest event, numbered so two equal events are two changes.
#[derive(Clone, Copy)]
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
pub struct Live(RwSignal<Option<(u64, StatusEvent)>>);

/// Made by the shell: the stream opens in the browser, once per page load (the
/// browser reconnects it by itself when it drops).
pub fn provide_live() {
    let latest = RwSignal::new(None::<(u64, StatusEvent)>);
    provide_context(Live(latest));
    #[cfg(feature = "hydrate")]
    Effect::new(move |opened: Option<()>| {
        if opened.is_none() {
            stream::open(latest);
        }
    });
}

/// The page's one `EventSource`. It is closed when the page is hidden (left,
/// or put in the back/forward cache, where an open stream would hold one of
/// the browser's six connections to this server) and opened again if the page
/// comes back.
#[cfg(feature = "hydrate")]
mod stream {
    use super::StatusEvent;
    use leptos::prelude::*;
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;
    use wasm_bindgen::closure::Closure;
    use wasm_bindgen::JsCast;

    type Latest = RwSignal<Option<(u64, StatusEvent)>>;

    pub fn open(latest: Latest) {
        let current: Rc<RefCell<Option<web_sys::EventSource>>> = Rc::new(RefCell::new(None));
        let counter = Rc::new(Cell::new(0u64));
        connect(&current, latest, &counter);
        let on_hide = {
            let current = current.clone();
            Closure::<dyn FnMut()>::new(move || {
                if let Some(s) = current.borrow_mut().take() {
                    s.close();
                }
            })
        };
        let on_show = Closure::<dyn FnMut(web_sys::Event)>::new(move |_: web_sys::Event| {
            if current.borrow().is_none() {
                connect(&current, latest, &counter);
                // What changed while it was away: re-read everything.
                counter.set(counter.get() + 1);
                latest.try_set(Some((
                    counter.get(),
                    StatusEvent {
                        kind: "resync".into(),
                        ..StatusEvent::default()
                    },
                )));
            }
        });
        let w = window();
        let _ = w.add_event_listener_with_callback("pagehide", on_hide.as_ref().unchecked_ref());
        let _ = w.add_event_listener_with_callback("pageshow", on_show.as_ref().unchecked_ref());
        on_hide.forget();
        on_show.forget();
    }

    fn connect(current: &Rc<RefCell<Option<web_sys::EventSource>>>, latest: Latest, counter: &Rc<Cell<u64>>) {
        let Ok(source) = web_sys::EventSource::new("/api/events") else {
            return;
        };
        let deliver = {
            let counter = counter.clone();
            move |kind: Option<&str>, ev: web_sys::MessageEvent| {
                let data = ev.data().as_string().unwrap_or_default();
                if let Some(e) = StatusEvent::parse(kind, &data) {
                    counter.set(counter.get() + 1);
                    latest.try_set(Some((counter.get(), e)));
                }
            }
        };
        let on_message = {
            let deliver = deliver.clone();
            Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |ev| deliver(None, ev))
        };
        source.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        on_message.forget();
        let on_resync = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |ev| deliver(Some("resync"), ev));
        let _ = source.add_event_listener_with_callback("resync", on_resync.as_ref().unchecked_ref());
        on_resync.forget();
        *current.borrow_mut() = Some(source);
    }
}

/// Bumps `tick` whenever an event `matches` (or a resync comes): resources
/// keyed on `tick` re-read.
#[allow(unused_variables)]
pub fn refresh_on(matches: impl Fn(&StatusEvent) -> bool + Send + Sync + 'static, tick: RwSignal<u32>) {
    #[cfg(feature = "hydrate")]
    if let Some(Live(latest)) = use_context::<Live>() {
        Effect::watch(
            move || latest.get(),
            move |event, _, _| {
                if let Some((_, e)) = event {
                    if e.kind == "resync" || matches(e) {
                        tick.update(|t| *t += 1);
                    }
                }
            },
            false,
        );
    }
}
