//! Notifications: an organization's channels (Slack, Discord, Telegram, Teams,
//! Google Chat, a signed webhook, email) and the notices queued for them.
//!
//! A notice is queued by the one writer of the state it reports, in the same
//! transaction as the change: a deployment that went live or failed
//! (`deploy::transition`), a backup or drill that ended
//! (`backups::transition`), an alert ([`queue_to`]), an upgrade ([`upgraded`]). Each notice becomes one
//! delivery row per channel that chose its event; deliveries are jobs on the
//! common runner ([`delivery::DeliveryKind`]) with retries and back-off, so a
//! receiver that is down for a minute still gets the message, once.
//!
//! Settings (URLs carry their tokens, SMTP has a password, webhooks a signing
//! secret) are sealed per row; pages see only a summary.

pub mod delivery;
pub mod format;
pub mod send;

use crate::accounts::{is_unique_violation, Caller};
use crate::error::{Classify, ErrorKind, StoreError};
use crate::ids::{ChannelId, DeliveryId};
use crate::names::ValidationError;
use crate::Engine;
use diesel::sql_types::{Array, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use lifecycle::{ChannelKind, DeliveryStatus, NotifyEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::denied_into!(NotifyError);

impl From<diesel::result::Error> for NotifyError {
    fn from(e: diesel::result::Error) -> Self {
        if is_unique_violation(&e, "notification_channels_organization_id_name_key") {
            return ValidationError::new("name", "a channel with this name already exists").into();
        }
        NotifyError::Store(e.into())
    }
}

impl Classify for NotifyError {
    fn kind(&self) -> ErrorKind {
        match self {
            NotifyError::Invalid(v) => v.kind(),
            NotifyError::NotFound => ErrorKind::NotFound,
            NotifyError::Forbidden(m) => ErrorKind::Forbidden((*m).to_owned()),
            NotifyError::Corrupt(_) => ErrorKind::Internal,
            NotifyError::Store(s) => s.kind(),
        }
    }
}

/// How an SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS (port 587); refused if the server cannot.
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only where private targets are allowed (a relay on the host).
    None,
}

/// An SMTP relay and the message's addresses.
#[derive(Clone, Serialize, Deserialize)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: String,
    pub password: String,
    pub from: String,
    pub to: Vec<String>,
}

/// Where one channel sends, sealed at rest. Never `Debug`: URLs carry tokens.
#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Settings {
    /// An incoming-webhook URL (Slack, Discord, Teams, Google Chat).
    Hook {
        url: String,
    },
    Telegram {
        bot_token: String,
        chat_id: String,
    },
    /// A receiver of Berth's own JSON, signed with `secret`.
    Webhook {
        url: String,
        secret: String,
    },
    Email(Smtp),
}

/// Where a channel's settings are sealed.
fn settings_slot(channel: &str) -> crate::secrets::Slot<'_> {
    crate::secrets::Slot::new("notification_channels", "settings", channel)
}

/// What the add-channel form sends; each kind reads its own fields.
#[derive(Debug, Clone, Default)]
pub struct ChannelForm {
    pub name: String,
    pub kind: String,
    pub url: String,
    pub bot_token: String,
    pub chat_id: String,
    pub smtp_host: String,
    pub smtp_port: String,
    pub smtp_security: String,
    pub smtp_username: String,
    pub smtp_password: String,
    pub email_from: String,
    pub email_to: String,
    pub events: Vec<String>,
}

/// A new channel, parsed.
pub struct NewChannel {
    name: String,
    kind: ChannelKind,
    settings: Settings,
    summary: String,
    events: Vec<NotifyEvent>,
}

/// The events a form chose, each one a channel may choose.
pub fn parse_events(raw: &[String]) -> Result<Vec<NotifyEvent>, ValidationError> {
    let mut out = Vec::new();
    for r in raw.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let e: NotifyEvent = r
            .parse()
            .ok()
            .filter(|e| NotifyEvent::CHOOSABLE.contains(e))
            .ok_or_else(|| ValidationError::new("events", format!("{r:?} is not an event a channel can choose")))?;
        if !out.contains(&e) {
            out.push(e);
        }
    }
    Ok(out)
}

/// An `https://` URL (plain `http://` only where private targets are allowed)
/// whose host is not a private address literal; names are checked when sent.
fn parse_url(raw: &str, policy: crate::outbound::Policy) -> Result<(String, String), ValidationError> {
    let invalid = |m: String| ValidationError::new("url", m);
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(invalid("is required".into()));
    }
    if raw.len() > 2048 || raw.chars().any(char::is_control) {
        return Err(invalid("must be at most 2048 characters, no control characters".into()));
    }
    let url = url::Url::parse(raw).map_err(|e| invalid(format!("is not a URL: {e}")))?;
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_private => {}
        _ => {
            return Err(invalid(
                "must be https:// (plain http only where BERTH_ALLOW_PRIVATE_TARGETS allows private targets)".into(),
            ))
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("must not carry a user name or password".into()));
    }
    let host = url.host_str().ok_or_else(|| invalid("has no host".into()))?.to_owned();
    policy.check_literal(&host).map_err(|e| invalid(e.to_string()))?;
    Ok((url.to_string(), host))
}

/// A host name (or address literal) for SMTP.
fn parse_host(raw: &str, policy: crate::outbound::Policy) -> Result<String, ValidationError> {
    let h = raw.trim().to_ascii_lowercase();
    let ok = !h.is_empty()
        && h.len() <= 253
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if !ok {
        return Err(ValidationError::new("smtp_host", "must be a host name or address"));
    }
    policy
        .check_literal(&h)
        .map_err(|e| ValidationError::new("smtp_host", e.to_string()))?;
    Ok(h)
}

fn parse_mailbox(field: &'static str, raw: &str) -> Result<String, ValidationError> {
    let s = raw.trim();
    s.parse::<lettre::message::Mailbox>()
        .map_err(|e| ValidationError::new(field, format!("{s:?} is not an email address: {e}")))?;
    Ok(s.to_owned())
}

impl NewChannel {
    pub fn parse(f: &ChannelForm, policy: crate::outbound::Policy) -> Result<Self, ValidationError> {
        let name = f.name.trim();
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            return Err(ValidationError::new(
                "name",
                "must be 1-64 characters, no control characters",
            ));
        }
        let kind: ChannelKind = f
            .kind
            .parse()
            .map_err(|_| ValidationError::new("kind", "must be one of the listed kinds"))?;
        let events = parse_events(&f.events)?;
        let (settings, summary) = match kind {
            ChannelKind::Slack | ChannelKind::Discord | ChannelKind::Teams | ChannelKind::GoogleChat => {
                let (url, host) = parse_url(&f.url, policy)?;
                (Settings::Hook { url }, host)
            }
            ChannelKind::Webhook => {
                let (url, host) = parse_url(&f.url, policy)?;
                let secret = format!("whsec_{}", crate::secrets::random_token());
                (Settings::Webhook { url, secret }, host)
            }
            ChannelKind::Telegram => {
                let token = f.bot_token.trim();
                let ok = token.split_once(':').is_some_and(|(id, rest)| {
                    !id.is_empty()
                        && id.chars().all(|c| c.is_ascii_digit())
                        && (20..=100).contains(&rest.len())
                        && rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                });
                if !ok {
                    return Err(ValidationError::new(
                        "bot_token",
                        "must be a bot token from @BotFather (digits:letters)",
                    ));
                }
                let chat = f.chat_id.trim();
                let ok = match chat.strip_prefix('@') {
                    Some(n) => (5..=32).contains(&n.len()) && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    None => {
                        let d = chat.strip_prefix('-').unwrap_or(chat);
                        !d.is_empty() && d.len() <= 20 && d.chars().all(|c| c.is_ascii_digit())
                    }
                };
                if !ok {
                    return Err(ValidationError::new(
                        "chat_id",
                        "must be a chat ID (digits, may start with -) or @channel",
                    ));
                }
                (
                    Settings::Telegram {
                        bot_token: token.to_owned(),
                        chat_id: chat.to_owned(),
                    },
                    format!("chat {chat}"),
                )
            }
            ChannelKind::Email => {
                let host = parse_host(&f.smtp_host, policy)?;
                let security = match f.smtp_security.trim() {
                    "starttls" | "" => SmtpSecurity::Starttls,
                    "tls" => SmtpSecurity::Tls,
                    "none" if policy.allow_private => SmtpSecurity::None,
                    "none" => {
                        return Err(ValidationError::new(
                            "smtp_security",
                            "an unencrypted connection is allowed only where BERTH_ALLOW_PRIVATE_TARGETS allows private targets",
                        ))
                    }
                    _ => return Err(ValidationError::new("smtp_security", "must be starttls, tls or none")),
                };
                let port = match f.smtp_port.trim() {
                    "" => match security {
                        SmtpSecurity::Tls => 465,
                        _ => 587,
                    },
                    p => p
                        .parse::<u16>()
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| ValidationError::new("smtp_port", "must be a port number (1-65535)"))?,
                };
                let username = f.smtp_username.trim();
                if username.len() > 256 || username.chars().any(char::is_control) {
                    return Err(ValidationError::new("smtp_username", "must be at most 256 characters"));
                }
                if f.smtp_password.len() > 256 || f.smtp_password.chars().any(char::is_control) {
                    return Err(ValidationError::new("smtp_password", "must be at most 256 characters"));
                }
                if username.is_empty() != f.smtp_password.is_empty() {
                    return Err(ValidationError::new(
                        "smtp_password",
                        "give both a user name and a password, or neither",
                    ));
                }
                let from = parse_mailbox("email_from", &f.email_from)?;
                let to = f
                    .email_to
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| parse_mailbox("email_to", s))
                    .collect::<Result<Vec<_>, _>>()?;
                if to.is_empty() || to.len() > 10 {
                    return Err(ValidationError::new(
                        "email_to",
                        "must be 1-10 addresses, separated by commas",
                    ));
                }
                let summary = format!("{} via {host}", to.join(", "));
                (
                    Settings::Email(Smtp {
                        host,
                        port,
                        security,
                        username: username.to_owned(),
                        password: f.smtp_password.clone(),
                        from,
                        to,
                    }),
                    summary,
                )
            }
        };
        Ok(Self {
            name: name.to_owned(),
            kind,
            settings,
            summary,
            events,
        })
    }
}

/// A channel as a page shows it (never its settings).
#[derive(Debug, Clone, QueryableByName)]
pub struct Channel {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = Text)]
    pub name: String,
    #[diesel(sql_type = Text)]
    pub kind: ChannelKind,
    #[diesel(sql_type = Text)]
    pub summary: String,
    #[diesel(sql_type = Array<Text>)]
    pub events: Vec<String>,
}

/// One delivery as a page shows it.
#[derive(Debug, Clone, QueryableByName)]
pub struct Delivery {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub channel_id: Uuid,
    #[diesel(sql_type = Text)]
    pub event: String,
    #[diesel(sql_type = Text)]
    pub status: DeliveryStatus,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pub attempts: i32,
    #[diesel(sql_type = Nullable<Text>)]
    pub error: Option<String>,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: chrono::DateTime<chrono::Utc>,
}

pub async fn list_channels(engine: &Engine, caller: &Caller) -> Result<Vec<Channel>, NotifyError> {
    // The organization's channels: not shown to a caller limited to projects.
    if crate::access::visible(caller).is_some() {
        return Ok(Vec::new());
    }
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    Ok(diesel::sql_query(
        "SELECT id, name, kind, summary, events FROM notification_channels
         WHERE organization_id = $1 ORDER BY name",
    )
    .bind::<SqlUuid, _>(caller.org_id.0)
    .load(&mut conn)
    .await?)
}

/// The organization's last 50 deliveries, newest first.
pub async fn list_deliveries(engine: &Engine, caller: &Caller) -> Result<Vec<Delivery>, NotifyError> {
    // Deliveries (and their errors) are about every project: not a feed for
    // a caller limited to some of them.
    if crate::access::visible(caller).is_some() {
        return Ok(Vec::new());
    }
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    Ok(diesel::sql_query(
        "SELECT id, channel_id, event, status, attempts, error, created_at FROM notification_deliveries
         WHERE organization_id = $1 ORDER BY created_at DESC, id LIMIT 50",
    )
    .bind::<SqlUuid, _>(caller.org_id.0)
    .load(&mut conn)
    .await?)
}

/// Channels are the organization's: its admins and owners change them, not
/// through a key limited to projects.
fn managers_only(caller: &Caller) -> Result<(), NotifyError> {
    if !caller.role.can_manage() {
        return Err(NotifyError::Forbidden(
            "only admins and owners can change notification channels",
        ));
    }
    Ok(crate::access::organization_wide(
        caller,
        "a key limited to projects cannot change notification channels",
    )?)
}

/// Adds a channel. Returns its ID and, for a signed webhook, the signing secret
/// (shown once: pages never see it again).
pub async fn add_channel(
    engine: &Engine,
    caller: &Caller,
    new: NewChannel,
) -> Result<(ChannelId, Option<String>), NotifyError> {
    managers_only(caller)?;
    let id = Uuid::new_v4();
    let json = serde_json::to_vec(&new.settings).map_err(|e| NotifyError::Corrupt(e.to_string()))?;
    let sealed = engine.secret.seal(settings_slot(&id.to_string()), &json);
    let events: Vec<&str> = new.events.iter().map(|e| e.name()).collect();
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    crate::audited!(conn, NotifyError, {
        Ok(diesel::sql_query(
            "INSERT INTO notification_channels (id, organization_id, name, kind, settings, summary, events)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind::<SqlUuid, _>(id)
        .bind::<SqlUuid, _>(caller.org_id.0)
        .bind::<Text, _>(&new.name)
        .bind::<Text, _>(new.kind)
        .bind::<Text, _>(&sealed)
        .bind::<Text, _>(&new.summary)
        .bind::<Array<Text>, _>(&events)
        .execute(conn)
        .await?)
    })
    .await?;
    tracing::info!(channel.id = %id, org.id = %caller.org_id, kind = %new.kind, "notification channel added");
    let secret = match new.settings {
        Settings::Webhook { secret, .. } => Some(secret),
        _ => None,
    };
    Ok((ChannelId(id), secret))
}

pub async fn remove_channel(engine: &Engine, caller: &Caller, id: ChannelId) -> Result<(), NotifyError> {
    managers_only(caller)?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let n = crate::audited!(conn, NotifyError, {
        Ok(
            diesel::sql_query("DELETE FROM notification_channels WHERE id = $1 AND organization_id = $2")
                .bind::<SqlUuid, _>(id.0)
                .bind::<SqlUuid, _>(caller.org_id.0)
                .execute(conn)
                .await?,
        )
    })
    .await?;
    if n == 0 {
        return Err(NotifyError::NotFound);
    }
    Ok(())
}

/// Replaces the events a channel is told about.
pub async fn set_events(
    engine: &Engine,
    caller: &Caller,
    id: ChannelId,
    events: Vec<NotifyEvent>,
) -> Result<(), NotifyError> {
    managers_only(caller)?;
    let events: Vec<&str> = events.iter().map(|e| e.name()).collect();
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let n = crate::audited!(conn, NotifyError, {
        Ok(
            diesel::sql_query("UPDATE notification_channels SET events = $3 WHERE id = $1 AND organization_id = $2")
                .bind::<SqlUuid, _>(id.0)
                .bind::<SqlUuid, _>(caller.org_id.0)
                .bind::<Array<Text>, _>(&events)
                .execute(conn)
                .await?,
        )
    })
    .await?;
    if n == 0 {
        return Err(NotifyError::NotFound);
    }
    Ok(())
}

/// What a channel's edit form shows of its settings: everything but the
/// secrets (a hook's URL carries its token, a bot has its token, SMTP its
/// password), which the form leaves blank to keep.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Editable {
    pub chat_id: String,
    pub smtp_host: String,
    pub smtp_port: String,
    pub smtp_security: String,
    pub smtp_username: String,
    pub email_from: String,
    pub email_to: String,
}

impl Settings {
    fn editable(&self) -> Editable {
        match self {
            Settings::Hook { .. } | Settings::Webhook { .. } => Editable::default(),
            Settings::Telegram { chat_id, .. } => Editable {
                chat_id: chat_id.clone(),
                ..Editable::default()
            },
            Settings::Email(m) => Editable {
                smtp_host: m.host.clone(),
                smtp_port: m.port.to_string(),
                smtp_security: match m.security {
                    SmtpSecurity::Starttls => "starttls",
                    SmtpSecurity::Tls => "tls",
                    SmtpSecurity::None => "none",
                }
                .to_owned(),
                smtp_username: m.username.clone(),
                email_from: m.from.clone(),
                email_to: m.to.join(", "),
                ..Editable::default()
            },
        }
    }

    /// Fills the secrets a form left blank with this channel's own, so an
    /// edit that does not retype them keeps them. A stored SMTP password goes
    /// only to the relay and user name it was given for: with either changed
    /// it must be typed again.
    fn keep_secrets(&self, form: &mut ChannelForm) -> Result<(), ValidationError> {
        match self {
            Settings::Hook { url } | Settings::Webhook { url, .. } if form.url.trim().is_empty() => {
                form.url = url.clone();
            }
            Settings::Telegram { bot_token, .. } if form.bot_token.trim().is_empty() => {
                form.bot_token = bot_token.clone();
            }
            // A password is kept only while there is a user name for it:
            // clearing the name signs in with neither.
            Settings::Email(m) if form.smtp_password.is_empty() && !form.smtp_username.trim().is_empty() => {
                let moved =
                    !form.smtp_host.trim().eq_ignore_ascii_case(&m.host) || form.smtp_username.trim() != m.username;
                if moved && !m.password.is_empty() {
                    return Err(ValidationError::new(
                        "smtp_password",
                        "type the password again: the SMTP host or user name changed, and the stored password is \
                         sent only to the one it was given for",
                    ));
                }
                form.smtp_password = m.password.clone();
            }
            _ => {}
        }
        Ok(())
    }
}

/// The organization's channels' editable settings, for its admins and
/// owners; nothing for anyone else (members see summaries only).
pub async fn editable(engine: &Engine, caller: &Caller) -> Result<Vec<(ChannelId, Editable)>, NotifyError> {
    if managers_only(caller).is_err() {
        return Ok(Vec::new());
    }
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
        #[diesel(sql_type = Text)]
        settings: String,
    }
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let rows: Vec<Row> = diesel::sql_query("SELECT id, settings FROM notification_channels WHERE organization_id = $1")
        .bind::<SqlUuid, _>(caller.org_id.0)
        .load(&mut conn)
        .await?;
    rows.into_iter()
        .map(|r| Ok((ChannelId(r.id), open_settings(engine, r.id, &r.settings)?.editable())))
        .collect()
}

/// Changes a channel's name and settings; its kind stays (a channel of
/// another kind is a new channel) and its events have their own form.
/// Secrets the form leaves blank are kept, a signed webhook's signing secret
/// too unless `new_secret` asks for another, which is then returned (shown
/// once). Deliveries still queued or waiting for a retry go to the new
/// settings: they are read when sent.
pub async fn edit_channel(
    engine: &Engine,
    caller: &Caller,
    id: ChannelId,
    form: &ChannelForm,
    new_secret: bool,
    policy: crate::outbound::Policy,
) -> Result<Option<String>, NotifyError> {
    managers_only(caller)?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let shown = crate::audited!(conn, NotifyError, {
        // Locked: two edits at once apply one after the other, each over
        // the settings the other left.
        let (kind, old) = settings_of(engine, conn, caller.org_id.0, id.0, true).await?;
        if !form.kind.trim().is_empty() && form.kind.trim() != kind.name() {
            return Err(ValidationError::new(
                "kind",
                "cannot change: add a channel of the other kind and remove this one",
            )
            .into());
        }
        let mut merged = ChannelForm {
            kind: kind.name().to_owned(),
            events: Vec::new(),
            ..form.clone()
        };
        old.keep_secrets(&mut merged)?;
        let mut new = NewChannel::parse(&merged, policy)?;
        let mut shown = None;
        if let (Settings::Webhook { secret, .. }, Settings::Webhook { secret: kept, .. }) = (&mut new.settings, &old) {
            if new_secret {
                shown = Some(secret.clone());
            } else {
                secret.clone_from(kept);
            }
        }
        let json = serde_json::to_vec(&new.settings).map_err(|e| NotifyError::Corrupt(e.to_string()))?;
        let sealed = engine.secret.seal(settings_slot(&id.0.to_string()), &json);
        diesel::sql_query(
            "UPDATE notification_channels SET name = $3, settings = $4, summary = $5
             WHERE id = $1 AND organization_id = $2",
        )
        .bind::<SqlUuid, _>(id.0)
        .bind::<SqlUuid, _>(caller.org_id.0)
        .bind::<Text, _>(&new.name)
        .bind::<Text, _>(&sealed)
        .bind::<Text, _>(&new.summary)
        .execute(conn)
        .await?;
        Ok(shown)
    })
    .await?;
    tracing::info!(channel.id = %id, org.id = %caller.org_id, new_secret = shown.is_some(), "notification channel changed");
    Ok(shown)
}

/// Queues a test notice to one channel; its delivery shows how it went.
pub async fn send_test(engine: &Engine, caller: &Caller, id: ChannelId) -> Result<DeliveryId, NotifyError> {
    managers_only(caller)?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
    }
    let row: Option<Row> = crate::audited!(conn, NotifyError, {
        Ok(diesel::sql_query(
            "INSERT INTO notification_deliveries (organization_id, channel_id, event, facts)
         SELECT organization_id, id, 'test', jsonb_build_object('channel', name)
         FROM notification_channels WHERE id = $1 AND organization_id = $2
         RETURNING id",
        )
        .bind::<SqlUuid, _>(id.0)
        .bind::<SqlUuid, _>(caller.org_id.0)
        .get_result(conn)
        .await
        .optional()?)
    })
    .await?;
    let row = row.ok_or(NotifyError::NotFound)?;
    delivery::wake(engine).await;
    delivery::changed(engine, caller.org_id.0, row.id, DeliveryStatus::Queued).await;
    Ok(DeliveryId(row.id))
}

use diesel::OptionalExtension;

/// Queues a failed delivery's notice again, to the same channel as it is now
/// (after its address was fixed, say): a new delivery, so the failed one
/// keeps its history. Only a failed delivery is sent again.
pub async fn resend(engine: &Engine, caller: &Caller, id: DeliveryId) -> Result<DeliveryId, NotifyError> {
    managers_only(caller)?;
    #[derive(QueryableByName)]
    struct Status {
        #[diesel(sql_type = Text)]
        status: DeliveryStatus,
    }
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
    }
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let row: Row = crate::audited!(conn, NotifyError, {
        let found: Status =
            diesel::sql_query("SELECT status FROM notification_deliveries WHERE id = $1 AND organization_id = $2")
                .bind::<SqlUuid, _>(id.0)
                .bind::<SqlUuid, _>(caller.org_id.0)
                .get_result(conn)
                .await
                .optional()?
                .ok_or(NotifyError::NotFound)?;
        if found.status != DeliveryStatus::Failed {
            return Err(ValidationError::new("id", "only a failed delivery is sent again").into());
        }
        Ok(diesel::sql_query(
            "INSERT INTO notification_deliveries (organization_id, channel_id, event, facts)
             SELECT organization_id, channel_id, event, facts FROM notification_deliveries
             WHERE id = $1 AND organization_id = $2
             RETURNING id",
        )
        .bind::<SqlUuid, _>(id.0)
        .bind::<SqlUuid, _>(caller.org_id.0)
        .get_result(conn)
        .await?)
    })
    .await?;
    delivery::wake(engine).await;
    delivery::changed(engine, caller.org_id.0, row.id, DeliveryStatus::Queued).await;
    Ok(DeliveryId(row.id))
}

/// Queues `facts` for the given channels of `org` (an alert rule's), whatever
/// events they chose.
pub async fn queue_to(
    conn: &mut AsyncPgConnection,
    org: Uuid,
    channels: &[Uuid],
    event: NotifyEvent,
    facts: &serde_json::Value,
) -> Result<usize, diesel::result::Error> {
    diesel::sql_query(
        "INSERT INTO notification_deliveries (organization_id, channel_id, event, facts)
         SELECT organization_id, id, $2, $3 FROM notification_channels
         WHERE organization_id = $1 AND id = ANY ($4)",
    )
    .bind::<SqlUuid, _>(org)
    .bind::<Text, _>(event.name())
    .bind::<Jsonb, _>(facts)
    .bind::<Array<SqlUuid>, _>(channels)
    .execute(conn)
    .await
}

/// A channel's settings, opened (scoped by `org`).
pub(crate) async fn settings(
    engine: &Engine,
    conn: &mut AsyncPgConnection,
    org: Uuid,
    id: Uuid,
) -> Result<(ChannelKind, Settings), NotifyError> {
    settings_of(engine, conn, org, id, false).await
}

/// A channel's kind and settings, the row locked for a change when `lock`.
async fn settings_of(
    engine: &Engine,
    conn: &mut AsyncPgConnection,
    org: Uuid,
    id: Uuid,
    lock: bool,
) -> Result<(ChannelKind, Settings), NotifyError> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        kind: ChannelKind,
        #[diesel(sql_type = Text)]
        settings: String,
    }
    let sql = if lock {
        "SELECT kind, settings FROM notification_channels WHERE id = $1 AND organization_id = $2 FOR UPDATE"
    } else {
        "SELECT kind, settings FROM notification_channels WHERE id = $1 AND organization_id = $2"
    };
    let row: Row = diesel::sql_query(sql)
        .bind::<SqlUuid, _>(id)
        .bind::<SqlUuid, _>(org)
        .get_result(conn)
        .await
        .optional()?
        .ok_or(NotifyError::NotFound)?;
    Ok((row.kind, open_settings(engine, id, &row.settings)?))
}

fn open_settings(engine: &Engine, id: Uuid, sealed: &str) -> Result<Settings, NotifyError> {
    let json = engine
        .secret
        .open(settings_slot(&id.to_string()), sealed)
        .map_err(|e| NotifyError::Corrupt(format!("channel {id} settings: {e}")))?;
    serde_json::from_slice(&json).map_err(|e| NotifyError::Corrupt(format!("channel {id} settings: {e}")))
}

/// Records the release this process runs (`version` and `release`, e.g.
/// `0.1.0 (2026-12-02)`) and, when it differs from the one recorded before,
/// tells every channel that chose upgrades, once: the first replica to start
/// on the new release records it; the others find it already recorded.
/// Returns the previous release when this call told.
pub async fn upgraded(engine: &Engine, running: &str) -> Result<Option<String>, StoreError> {
    use diesel_async::AsyncConnection;
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Nullable<Text>)]
        running_release: Option<String>,
    }
    let mut conn = engine.db.get().await?;
    let told = conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            // Not onboarded yet: there is no instance row, and nobody to tell.
            let Some(row) = diesel::sql_query("SELECT running_release FROM instance WHERE singleton FOR UPDATE")
                .get_result::<Row>(conn)
                .await
                .optional()?
            else {
                return Ok(None);
            };
            if row.running_release.as_deref() == Some(running) {
                return Ok(None);
            }
            diesel::sql_query("UPDATE instance SET running_release = $1 WHERE singleton")
                .bind::<Text, _>(running)
                .execute(conn)
                .await?;
            // The first release recorded is an installation, not an upgrade.
            let Some(previous) = row.running_release else {
                return Ok(None);
            };
            let facts = serde_json::json!({ "from": previous, "to": running });
            diesel::sql_query(
                "INSERT INTO notification_deliveries (organization_id, channel_id, event, facts)
                 SELECT organization_id, id, 'upgraded', $1 FROM notification_channels
                 WHERE 'upgraded' = ANY (events)",
            )
            .bind::<Jsonb, _>(&facts)
            .execute(conn)
            .await?;
            Ok(Some(previous))
        })
        .await?;
    if told.is_some() {
        delivery::wake(engine).await;
    }
    Ok(told)
}
