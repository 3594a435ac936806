//! What a notice says, and how each channel kind wants it: Slack's and Google
//! Chat's `text`, Discord's embed, Telegram's `sendMessage`, a Teams Adaptive
//! Card, Berth's own signed JSON, an email's subject and body. Pure functions of
//! the delivery's facts, so each format is tested without a network.

use lifecycle::{ChannelKind, NotifyEvent};
use serde_json::{json, Value};

/// A notice in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub event: NotifyEvent,
    pub title: String,
    /// One or more lines: the reason, the detail.
    pub text: String,
    /// Where to look in Berth (absent without `BERTH_PUBLIC_URL`).
    pub link: Option<String>,
    /// Good news (green), bad news (red), or neither.
    pub good: Option<bool>,
}

fn s<'a>(facts: &'a Value, key: &str) -> &'a str {
    facts.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Words for `event` from its facts; `base` is Berth's public URL.
pub fn notice(event: NotifyEvent, facts: &Value, base: Option<&str>) -> Notice {
    let link = |path: String| base.map(|b| format!("{}{path}", b.trim_end_matches('/')));
    let (title, text, link, good) = match event {
        NotifyEvent::DeploymentSucceeded => (
            format!("Deployment of {} succeeded", s(facts, "app")),
            format!("{} is live in {}.", s(facts, "app"), s(facts, "project")),
            link(format!("/apps/{}", s(facts, "app_id"))),
            Some(true),
        ),
        NotifyEvent::DeploymentFailed => (
            format!("Deployment of {} failed", s(facts, "app")),
            format!("Reason: {}", s(facts, "reason")),
            link(format!("/apps/{}", s(facts, "app_id"))),
            Some(false),
        ),
        NotifyEvent::BackupSucceeded => (
            format!("Backup of {} succeeded", s(facts, "service")),
            format!(
                "{} bytes written to {}.",
                facts["size_bytes"].as_i64().unwrap_or(0),
                s(facts, "destination")
            ),
            link(format!("/services/{}", s(facts, "service_id"))),
            Some(true),
        ),
        NotifyEvent::BackupFailed => (
            format!("Backup of {} failed", s(facts, "service")),
            format!("Reason: {}", s(facts, "reason")),
            link(format!("/services/{}", s(facts, "service_id"))),
            Some(false),
        ),
        NotifyEvent::DrillFailed => (
            format!("Restore drill of {} failed", s(facts, "service")),
            format!("Reason: {}", s(facts, "reason")),
            link(format!("/services/{}", s(facts, "service_id"))),
            Some(false),
        ),
        NotifyEvent::Upgraded => (
            format!("Berth upgraded to {}", s(facts, "to")),
            format!("Was {}.", s(facts, "from")),
            base.map(str::to_owned),
            Some(true),
        ),
        NotifyEvent::Alert => {
            let firing = s(facts, "state") == "firing";
            (
                format!("{}: {}", if firing { "Alert" } else { "Resolved" }, s(facts, "rule")),
                s(facts, "detail").to_owned(),
                match s(facts, "link") {
                    "" => base.map(str::to_owned),
                    path => link(path.to_owned()),
                },
                Some(!firing),
            )
        }
        NotifyEvent::Test => (
            "Test notification from Berth".to_owned(),
            format!("The channel {} works.", s(facts, "channel")),
            base.map(str::to_owned),
            None,
        ),
    };
    Notice {
        event,
        title,
        text,
        link,
        good,
    }
}

/// The plain-text form: title, text, link.
pub fn plain(n: &Notice) -> String {
    let mut out = format!("{}\n{}", n.title, n.text);
    if let Some(l) = &n.link {
        out.push_str(&format!("\n{l}"));
    }
    out
}

fn color(n: &Notice) -> u32 {
    match n.good {
        Some(true) => 0x16a34a,
        Some(false) => 0xdc2626,
        None => 0x2563eb,
    }
}

/// Escapes Telegram's HTML parse mode.
fn html(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Escapes Slack's mrkdwn control characters.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The JSON body a hook of `kind` expects (`chat_id` for Telegram).
pub fn hook_body(kind: ChannelKind, n: &Notice, delivery: &str, chat_id: &str) -> Value {
    match kind {
        ChannelKind::Slack => {
            let mut text = format!("*{}*\n{}", slack_escape(&n.title), slack_escape(&n.text));
            if let Some(l) = &n.link {
                text.push_str(&format!("\n<{l}|Open in Berth>"));
            }
            json!({ "text": text })
        }
        ChannelKind::Discord => {
            let mut embed = json!({
                "title": n.title,
                "description": n.text,
                "color": color(n),
            });
            if let Some(l) = &n.link {
                embed["url"] = json!(l);
            }
            json!({ "content": n.title, "embeds": [embed], "allowed_mentions": { "parse": [] } })
        }
        ChannelKind::Telegram => {
            let mut text = format!("<b>{}</b>\n{}", html(&n.title), html(&n.text));
            if let Some(l) = &n.link {
                text.push_str(&format!("\n<a href=\"{}\">Open in Berth</a>", html(l)));
            }
            json!({ "chat_id": chat_id, "text": text, "parse_mode": "HTML", "disable_web_page_preview": true })
        }
        ChannelKind::Teams => {
            let mut card = json!({
                "type": "AdaptiveCard",
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "version": "1.4",
                "body": [
                    { "type": "TextBlock", "text": n.title, "weight": "Bolder", "size": "Medium", "wrap": true,
                      "color": match n.good { Some(true) => "Good", Some(false) => "Attention", None => "Default" } },
                    { "type": "TextBlock", "text": n.text, "wrap": true },
                ],
            });
            if let Some(l) = &n.link {
                card["actions"] = json!([{ "type": "Action.OpenUrl", "title": "Open in Berth", "url": l }]);
            }
            json!({
                "type": "message",
                "attachments": [{ "contentType": "application/vnd.microsoft.card.adaptive", "content": card }],
            })
        }
        ChannelKind::GoogleChat => json!({ "text": plain(n) }),
        ChannelKind::Webhook | ChannelKind::Email => json!({
            "delivery": delivery,
            "event": n.event.name(),
            "title": n.title,
            "text": n.text,
            "link": n.link,
        }),
    }
}

/// An email's subject.
pub fn subject(n: &Notice) -> String {
    format!("[Berth] {}", n.title)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed() -> Notice {
        notice(
            NotifyEvent::DeploymentFailed,
            &json!({ "app": "shop", "app_id": "a1", "reason": "build failed: <RUN false> & more" }),
            Some("https://berth.example.com/"),
        )
    }

    #[test]
    fn a_failed_deployment_says_why_and_links_to_the_app() {
        let n = failed();
        assert_eq!(n.title, "Deployment of shop failed");
        assert!(n.text.contains("build failed: <RUN false>"));
        assert_eq!(n.link.as_deref(), Some("https://berth.example.com/apps/a1"));
        assert_eq!(notice(NotifyEvent::Test, &json!({}), None).link, None);
    }

    #[test]
    fn each_kind_gets_its_format() {
        let n = failed();
        let slack = hook_body(ChannelKind::Slack, &n, "d", "");
        let t = slack["text"].as_str().unwrap();
        assert!(t.starts_with("*Deployment of shop failed*"));
        assert!(t.contains("&lt;RUN false&gt; &amp; more"), "{t}");
        assert!(t.ends_with("<https://berth.example.com/apps/a1|Open in Berth>"));

        let discord = hook_body(ChannelKind::Discord, &n, "d", "");
        assert_eq!(discord["embeds"][0]["title"], "Deployment of shop failed");
        assert_eq!(discord["embeds"][0]["color"], 0xdc2626);
        assert_eq!(discord["allowed_mentions"]["parse"], json!([]));

        let tg = hook_body(ChannelKind::Telegram, &n, "d", "-100123");
        assert_eq!(tg["chat_id"], "-100123");
        assert_eq!(tg["parse_mode"], "HTML");
        assert!(tg["text"].as_str().unwrap().contains("&lt;RUN false&gt;"));

        let teams = hook_body(ChannelKind::Teams, &n, "d", "");
        let card = &teams["attachments"][0];
        assert_eq!(card["contentType"], "application/vnd.microsoft.card.adaptive");
        assert_eq!(card["content"]["type"], "AdaptiveCard");
        assert_eq!(card["content"]["body"][0]["text"], "Deployment of shop failed");
        assert_eq!(
            card["content"]["actions"][0]["url"],
            "https://berth.example.com/apps/a1"
        );

        let chat = hook_body(ChannelKind::GoogleChat, &n, "d", "");
        assert_eq!(chat["text"], plain(&n));

        let hook = hook_body(ChannelKind::Webhook, &n, "d1", "");
        assert_eq!(hook["delivery"], "d1");
        assert_eq!(hook["event"], "deployment_failed");
        assert_eq!(subject(&n), "[Berth] Deployment of shop failed");
    }

    #[test]
    fn alerts_say_firing_or_resolved() {
        let f = notice(
            NotifyEvent::Alert,
            &json!({ "rule": "mem", "state": "firing", "detail": "x" }),
            None,
        );
        assert_eq!(f.title, "Alert: mem");
        assert_eq!(f.good, Some(false));
        let r = notice(NotifyEvent::Alert, &json!({ "rule": "mem", "state": "resolved" }), None);
        assert_eq!(r.title, "Resolved: mem");
    }
}
