//! Sending one notice to one channel: an HTTPS POST to a hook (the address
//! resolved, checked against the outbound policy and pinned, no redirects
//! followed) or one email through an SMTP relay (lettre, STARTTLS or TLS,
//! connected to the checked address and verified against the relay's name).
//! Errors never carry the URL: hook URLs hold their tokens.

use super::format::{self, Notice};
use super::{Settings, Smtp, SmtpSecurity};
use crate::outbound::{OutboundError, Policy};
use hmac::{Hmac, Mac};
use lifecycle::ChannelKind;
use sha2::Sha256;
use std::time::Duration;

/// How long one attempt may take.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);

/// Why an attempt failed: worth retrying, or not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The receiver refused the message itself, or the channel can never work
    /// as set (a private address): retrying will not help.
    #[error("{0}")]
    Permanent(String),
    /// Down, slow, rate-limited: try again later.
    #[error("{0}")]
    Transient(String),
}

/// The signature header of a signed webhook: HMAC-SHA256 of the body, in hex.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Sends `n` as delivery `delivery` through a channel of `kind`
/// (`telegram_api`: the Bot API's base URL, `BERTH_TELEGRAM_API_URL`).
pub async fn send(
    policy: Policy,
    telegram_api: &str,
    kind: ChannelKind,
    settings: &Settings,
    n: &Notice,
    delivery: &str,
) -> Result<(), SendError> {
    match settings {
        Settings::Hook { url } => {
            let body = serde_json::to_vec(&format::hook_body(kind, n, delivery, "")).expect("JSON");
            post(policy, url, body, vec![]).await
        }
        Settings::Telegram { bot_token, chat_id } => {
            let body = serde_json::to_vec(&format::hook_body(kind, n, delivery, chat_id)).expect("JSON");
            post(
                policy,
                &format!("{telegram_api}/bot{bot_token}/sendMessage"),
                body,
                vec![],
            )
            .await
        }
        Settings::Webhook { url, secret } => {
            let body = serde_json::to_vec(&format::hook_body(kind, n, delivery, "")).expect("JSON");
            let headers = vec![
                ("x-berth-signature", signature(secret, &body)),
                ("x-berth-event", n.event.name().to_owned()),
                ("x-berth-delivery", delivery.to_owned()),
            ];
            post(policy, url, body, headers).await
        }
        Settings::Email(smtp) => email(policy, smtp, n).await,
    }
}

fn outbound(e: OutboundError) -> SendError {
    match e {
        OutboundError::Private { .. } => SendError::Permanent(e.to_string()),
        OutboundError::Unresolvable { .. } => SendError::Transient(e.to_string()),
    }
}

async fn post(policy: Policy, url: &str, body: Vec<u8>, headers: Vec<(&str, String)>) -> Result<(), SendError> {
    let parsed = url::Url::parse(url).map_err(|e| SendError::Permanent(format!("the URL is not valid: {e}")))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| SendError::Permanent("the URL has no host".into()))?
        .to_owned();
    let port = parsed.port_or_known_default().unwrap_or(443);
    let addrs = policy.resolve(&host, port).await.map_err(outbound)?;
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(ATTEMPT_TIMEOUT)
        .user_agent(concat!("Berth/", env!("CARGO_PKG_VERSION")));
    if parsed.domain().is_some() {
        // Only the checked addresses: the name is not resolved again.
        builder = builder.resolve_to_addrs(&host, &addrs);
    }
    let client = builder
        .build()
        .map_err(|e| SendError::Transient(format!("HTTP client: {}", e.without_url())))?;
    let mut req = client
        .post(parsed)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| SendError::Transient(format!("{host}: {}", e.without_url())))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let text = resp.text().await.unwrap_or_default();
    let text: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
    let msg = format!(
        "{host} answered {status}{}",
        if text.is_empty() {
            String::new()
        } else {
            format!(": {text}")
        }
    );
    // A refusal of the message itself will be refused again; a busy or
    // broken receiver may take it later.
    if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
        Err(SendError::Transient(msg))
    } else {
        Err(SendError::Permanent(msg))
    }
}

async fn email(policy: Policy, smtp: &Smtp, n: &Notice) -> Result<(), SendError> {
    use lettre::message::header::ContentType;
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    let addrs = policy.resolve(&smtp.host, smtp.port).await.map_err(outbound)?;
    let ip = addrs[0].ip().to_string();
    let tls = |p: TlsParameters| match smtp.security {
        SmtpSecurity::Starttls => Tls::Required(p),
        SmtpSecurity::Tls => Tls::Wrapper(p),
        SmtpSecurity::None => Tls::None,
    };
    let params = TlsParameters::new(smtp.host.clone())
        .map_err(|e| SendError::Permanent(format!("TLS settings for {}: {e}", smtp.host)))?;
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(ip)
        .port(smtp.port)
        .tls(tls(params))
        .timeout(Some(ATTEMPT_TIMEOUT));
    if !smtp.username.is_empty() {
        builder = builder.credentials(Credentials::new(smtp.username.clone(), smtp.password.clone()));
    }
    let transport = builder.build();
    let bad = |e: String| SendError::Permanent(e);
    let mut msg = Message::builder()
        .from(smtp.from.parse().map_err(|e| bad(format!("from: {e}")))?)
        .subject(format::subject(n))
        .header(ContentType::TEXT_PLAIN);
    for to in &smtp.to {
        msg = msg.to(to.parse().map_err(|e| bad(format!("to: {e}")))?);
    }
    let msg = msg.body(format::plain(n)).map_err(|e| bad(e.to_string()))?;
    match transport.send(msg).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_permanent() => Err(SendError::Permanent(format!("{}: {e}", smtp.host))),
        Err(e) => Err(SendError::Transient(format!("{}: {e}", smtp.host))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        let s = signature("Jefe", b"what do ya want for nothing?");
        assert_eq!(
            s,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
