//! A live log over a WebSocket: replayed from the start, then followed; ANSI
//! colours become CSS classes on text nodes (log text is never parsed as HTML);
//! auto-scroll that pauses on request; a download link.

use leptos::html::Div;
use leptos::prelude::*;

/// At most this many lines are kept in the page (the download has them all).
#[cfg(feature = "hydrate")]
const MAX_LINES: usize = 5_000;

/// A run of text with one style.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub text: String,
    pub class: &'static str,
}

fn colour(code: u32) -> Option<&'static str> {
    Some(match code {
        30 | 90 => "text-slate-400",
        31 | 91 => "text-red-400",
        32 | 92 => "text-emerald-400",
        33 | 93 => "text-amber-300",
        34 | 94 => "text-sky-400",
        35 | 95 => "text-fuchsia-400",
        36 | 96 => "text-cyan-300",
        37 | 97 => "text-slate-100",
        _ => return None,
    })
}

/// Splits a line at SGR escape sequences (`ESC [ ... m`); other escape sequences
/// are dropped. The result is plain text plus a class per run.
pub fn ansi_spans(line: &str) -> Vec<Span> {
    let mut out = Vec::new();
    let mut class: &'static str = "";
    let mut bold = false;
    let mut text = String::new();
    let mut chars = line.chars().peekable();
    let style = |c: &'static str, b: bool| -> &'static str {
        match (c, b) {
            ("", false) => "",
            ("", true) => "font-bold",
            (c, false) => c,
            ("text-red-400", true) => "font-bold text-red-400",
            ("text-emerald-400", true) => "font-bold text-emerald-400",
            ("text-amber-300", true) => "font-bold text-amber-300",
            (c, true) => c,
        }
    };
    while let Some(ch) = chars.next() {
        if ch != '\u{1b}' {
            if !ch.is_control() || ch == '\t' {
                text.push(ch);
            }
            continue;
        }
        if chars.peek() != Some(&'[') {
            continue;
        }
        chars.next();
        let mut params = String::new();
        let mut terminator = None;
        for c in chars.by_ref() {
            if c.is_ascii_digit() || c == ';' {
                params.push(c);
            } else {
                terminator = Some(c);
                break;
            }
        }
        if terminator != Some('m') {
            continue;
        }
        if !text.is_empty() {
            out.push(Span {
                text: std::mem::take(&mut text),
                class: style(class, bold),
            });
        }
        for p in params.split(';') {
            let n: u32 = p.parse().unwrap_or(0);
            match n {
                0 => {
                    class = "";
                    bold = false;
                }
                1 => bold = true,
                22 => bold = false,
                39 => class = "",
                n => {
                    if let Some(c) = colour(n) {
                        class = c;
                    }
                }
            }
        }
    }
    if !text.is_empty() || out.is_empty() {
        out.push(Span {
            text,
            class: style(class, bold),
        });
    }
    out
}

#[derive(Clone)]
struct Line {
    n: usize,
    spans: Vec<Span>,
}

/// Follows `ws_path` (a path on this server). Each message is JSON with either
/// `{"line": {"text": ...}}` / `{"end": {"status": ...}}` (deployment logs) or
/// `{"text": ...}` (runtime logs).
#[component]
pub fn LogView(
    #[prop(into)] ws_path: Signal<String>,
    #[prop(optional, into)] download: Option<String>,
    /// Called with the final status when a deployment log ends.
    #[prop(optional)]
    on_end: Option<Callback<String>>,
) -> impl IntoView {
    let lines = RwSignal::new(Vec::<Line>::new());
    let ended = RwSignal::new(None::<String>);
    let paused = RwSignal::new(false);
    let connected = RwSignal::new(false);
    let area = NodeRef::<Div>::new();
    // The socket exists only in the browser.
    #[cfg(not(feature = "hydrate"))]
    let _ = (ws_path, on_end);

    #[cfg(feature = "hydrate")]
    {
        use send_wrapper::SendWrapper;
        use wasm_bindgen::closure::Closure;
        use wasm_bindgen::JsCast;
        let current: StoredValue<Option<SendWrapper<web_sys::WebSocket>>, LocalStorage> = StoredValue::new_local(None);
        Effect::new(move |_| {
            let path = ws_path.get();
            if let Some(old) = current.get_value() {
                let _ = old.close();
            }
            lines.set(Vec::new());
            ended.set(None);
            let loc = window().location();
            let scheme = if loc.protocol().unwrap_or_default() == "https:" {
                "wss"
            } else {
                "ws"
            };
            let url = format!("{scheme}://{}{}", loc.host().unwrap_or_default(), path);
            let Ok(ws) = web_sys::WebSocket::new(&url) else { return };
            let counter = std::rc::Rc::new(std::cell::Cell::new(0usize));
            let onmessage = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |ev: web_sys::MessageEvent| {
                let Some(text) = ev.data().as_string() else { return };
                let Ok(v) = js_sys::JSON::parse(&text) else { return };
                let get = |o: &wasm_bindgen::JsValue, k: &str| {
                    js_sys::Reflect::get(o, &k.into()).ok().filter(|x| !x.is_undefined())
                };
                let (line, end) = if let Some(l) = get(&v, "line") {
                    (get(&l, "text").and_then(|t| t.as_string()), None)
                } else if let Some(e) = get(&v, "end") {
                    (None, get(&e, "status").and_then(|s| s.as_string()))
                } else {
                    (get(&v, "text").and_then(|t| t.as_string()), None)
                };
                if let Some(text) = line {
                    let n = counter.get() + 1;
                    counter.set(n);
                    // The socket may outlive the view for a moment: never touch a
                    // disposed signal (`try_*` instead of panicking).
                    lines.try_update(|ls| {
                        ls.push(Line {
                            n,
                            spans: ansi_spans(&text),
                        });
                        if ls.len() > MAX_LINES {
                            ls.drain(..ls.len() - MAX_LINES);
                        }
                    });
                }
                if let Some(status) = end {
                    if ended.try_set(Some(status.clone())).is_some() {
                        return;
                    }
                    if let Some(cb) = on_end {
                        cb.run(status);
                    }
                }
            });
            ws.set_onmessage(Some(onmessage.as_ref().unchecked_ref()));
            onmessage.forget();
            let onopen = Closure::<dyn FnMut()>::new(move || {
                connected.try_set(true);
            });
            ws.set_onopen(Some(onopen.as_ref().unchecked_ref()));
            onopen.forget();
            let onclose = Closure::<dyn FnMut()>::new(move || {
                connected.try_set(false);
            });
            ws.set_onclose(Some(onclose.as_ref().unchecked_ref()));
            onclose.forget();
            current.set_value(Some(SendWrapper::new(ws)));
        });
        on_cleanup(move || {
            if let Some(ws) = current.get_value() {
                let _ = ws.close();
            }
        });
        // Follow the bottom unless paused.
        Effect::new(move |_| {
            lines.track();
            if !paused.get_untracked() {
                if let Some(el) = area.get_untracked() {
                    el.set_scroll_top(el.scroll_height());
                }
            }
        });
    }

    view! {
        <div class="space-y-2">
            <div class="flex flex-wrap items-center gap-3 text-sm">
                <span class="text-slate-500" data-log-state=move || if ended.get().is_some() { "ended" } else if connected.get() { "live" } else { "connecting" }>
                    {move || match ended.get() {
                        Some(s) => format!("finished: {s}"),
                        None if connected.get() => "live".to_owned(),
                        None => "connecting…".to_owned(),
                    }}
                </span>
                <label class="flex items-center gap-1">
                    <input type="checkbox" prop:checked=move || paused.get() on:change=move |ev| paused.set(event_target_checked(&ev)) />
                    "Pause auto-scroll"
                </label>
                {download.map(|href| view! { <a class="text-indigo-700 hover:underline dark:text-indigo-300" href=href download="">"Download"</a> })}
            </div>
            <div
                node_ref=area
                class="h-96 overflow-auto rounded-md bg-slate-950 p-3 font-mono text-xs leading-5 text-slate-200 focus:outline-2 focus:outline-indigo-400"
                data-log=""
                // Scrollable by keyboard too, and announced as a log.
                tabindex="0"
                role="log"
                aria-label="Log output"
            >
                <For each=move || lines.get() key=|l| l.n let:line>
                    <div class="whitespace-pre-wrap break-all">
                        {line.spans.into_iter().map(|s| view! { <span class=s.class>{s.text}</span> }).collect_view()}
                    </div>
                </For>
            </div>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansi_colours_become_classes_and_markup_stays_text() {
        let spans = ansi_spans("\u{1b}[31merror\u{1b}[0m <b>&amp;</b>");
        assert_eq!(
            spans[0],
            Span {
                text: "error".into(),
                class: "text-red-400"
            }
        );
        assert_eq!(
            spans[1],
            Span {
                text: " <b>&amp;</b>".into(),
                class: ""
            }
        );
        assert_eq!(ansi_spans("\u{1b}[2Kplain")[0].text, "plain");
        assert_eq!(ansi_spans("")[0].text, "");
        assert_eq!(ansi_spans("\u{1b}[1;32mok")[0].class, "font-bold text-emerald-400");
    }
}
