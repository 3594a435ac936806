//! Server functions for notification channels, their deliveries, and alert
//! rules: thin edges over `engine::notify` and `engine::alerts`.

// Server functions mirror their forms field for field.
#![allow(clippy::too_many_arguments)]

use crate::error::AppError;
use crate::types::NotificationsView;
use leptos::prelude::*;
use uuid::Uuid;

#[cfg(feature = "ssr")]
use {
    super::edge::{self, fail},
    crate::types::{ChannelFields, ChannelView, DeliveryView, IncidentView, RuleView},
    engine::alerts::{self, NewRule},
    engine::notify::{self, ChannelForm, NewChannel},
    engine::outbound::Policy,
};

/// The organization's channels, its last 50 deliveries, its alert rules and
/// its latest incidents.
#[server(endpoint = "notify/list")]
pub async fn list_notifications() -> Result<NotificationsView, AppError> {
    let (ctx, caller) = edge::caller().await?;
    let channels = notify::list_channels(&ctx.engine, &caller).await.map_err(fail)?;
    let deliveries = notify::list_deliveries(&ctx.engine, &caller).await.map_err(fail)?;
    let rules = alerts::list_rules(&ctx.engine, &caller).await.map_err(fail)?;
    let incidents = alerts::list_incidents(&ctx.engine, &caller).await.map_err(fail)?;
    let mut editable = notify::editable(&ctx.engine, &caller).await.map_err(fail)?;
    let time = crate::types::stamp;
    let rules = rules
        .into_iter()
        .map(|r| RuleView {
            id: r.id,
            name: r.name,
            metric: r.metric,
            threshold: r.threshold,
            for_secs: r.for_secs,
            channels: channels
                .iter()
                .filter(|c| r.channels.contains(&c.id))
                .map(|c| c.name.clone())
                .collect(),
            channel_ids: r.channels,
        })
        .collect();
    let incidents = incidents
        .into_iter()
        .map(|i| IncidentView {
            id: i.id,
            rule: i.rule,
            subject: i.subject_name,
            state: i.state,
            value: i.value,
            started_at: time(i.started_at),
            resolved_at: i.resolved_at.map(time),
        })
        .collect();
    let name = |id: Uuid| {
        channels
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.name.clone())
            .unwrap_or_default()
    };
    let deliveries = deliveries
        .into_iter()
        .map(|d| DeliveryView {
            id: d.id,
            channel: name(d.channel_id),
            event: d
                .event
                .parse::<lifecycle::NotifyEvent>()
                .map(|e| e.words().to_owned())
                .unwrap_or(d.event),
            status: d.status,
            attempts: d.attempts,
            error: d.error,
            at: crate::types::stamp(d.created_at),
        })
        .collect();
    let channels = channels
        .into_iter()
        .map(|c| ChannelView {
            id: c.id,
            name: c.name,
            kind: c.kind,
            summary: c.summary,
            events: c.events.iter().filter_map(|e| e.parse().ok()).collect(),
            editable: editable
                .iter()
                .position(|(id, _)| id.0 == c.id)
                .map(|i| ChannelFields::from(editable.swap_remove(i).1)),
        })
        .collect();
    Ok(NotificationsView {
        channels,
        deliveries,
        rules,
        incidents,
    })
}

/// Adds a channel; answers a signed webhook's secret (shown once), else nothing.
#[server(endpoint = "notify/add")]
pub async fn add_channel(
    name: String,
    kind: String,
    #[server(default)] url: String,
    #[server(default)] bot_token: String,
    #[server(default)] chat_id: String,
    #[server(default)] smtp_host: String,
    #[server(default)] smtp_port: String,
    #[server(default)] smtp_security: String,
    #[server(default)] smtp_username: String,
    #[server(default)] smtp_password: String,
    #[server(default)] email_from: String,
    #[server(default)] email_to: String,
    #[server(default)] events: Vec<String>,
) -> Result<Option<String>, AppError> {
    let (ctx, caller) = edge::caller().await?;
    let form = ChannelForm {
        name,
        kind,
        url,
        bot_token,
        chat_id,
        smtp_host,
        smtp_port,
        smtp_security,
        smtp_username,
        smtp_password,
        email_from,
        email_to,
        events,
    };
    let new = NewChannel::parse(&form, Policy::of(&ctx.engine)).map_err(fail)?;
    let (_, secret) = notify::add_channel(&ctx.engine, &caller, new).await.map_err(fail)?;
    Ok(secret)
}

/// Changes a channel's name and settings (not its kind or events); blank
/// secrets are kept. Answers a signed webhook's new signing secret when
/// `new_secret` asked for one (shown once), else nothing.
#[server(endpoint = "notify/edit")]
pub async fn edit_channel(
    id: String,
    name: String,
    #[server(default)] url: String,
    #[server(default)] bot_token: String,
    #[server(default)] chat_id: String,
    #[server(default)] smtp_host: String,
    #[server(default)] smtp_port: String,
    #[server(default)] smtp_security: String,
    #[server(default)] smtp_username: String,
    #[server(default)] smtp_password: String,
    #[server(default)] email_from: String,
    #[server(default)] email_to: String,
    #[server(default)] new_secret: bool,
) -> Result<Option<String>, AppError> {
    let (ctx, caller) = edge::caller().await?;
    let form = ChannelForm {
        name,
        url,
        bot_token,
        chat_id,
        smtp_host,
        smtp_port,
        smtp_security,
        smtp_username,
        smtp_password,
        email_from,
        email_to,
        ..ChannelForm::default()
    };
    notify::edit_channel(
        &ctx.engine,
        &caller,
        edge::id(&id)?,
        &form,
        new_secret,
        Policy::of(&ctx.engine),
    )
    .await
    .map_err(fail)
}

#[server(endpoint = "notify/remove")]
pub async fn remove_channel(id: String) -> Result<(), AppError> {
    let (ctx, caller) = edge::caller().await?;
    notify::remove_channel(&ctx.engine, &caller, edge::id(&id)?)
        .await
        .map_err(fail)
}

/// Replaces the events a channel is told about.
#[server(endpoint = "notify/events")]
pub async fn set_channel_events(id: String, #[server(default)] events: Vec<String>) -> Result<(), AppError> {
    let (ctx, caller) = edge::caller().await?;
    let events = notify::parse_events(&events).map_err(fail)?;
    notify::set_events(&ctx.engine, &caller, edge::id(&id)?, events)
        .await
        .map_err(fail)
}

/// Queues a test message; the delivery list shows how it went.
#[server(endpoint = "notify/test")]
pub async fn test_channel(id: String) -> Result<Uuid, AppError> {
    let (ctx, caller) = edge::caller().await?;
    let d = notify::send_test(&ctx.engine, &caller, edge::id(&id)?)
        .await
        .map_err(fail)?;
    Ok(d.0)
}

/// Queues a failed delivery's notice again (a new delivery).
#[server(endpoint = "notify/resend")]
pub async fn resend_delivery(id: String) -> Result<Uuid, AppError> {
    let (ctx, caller) = edge::caller().await?;
    let d = notify::resend(&ctx.engine, &caller, edge::id(&id)?)
        .await
        .map_err(fail)?;
    Ok(d.0)
}

/// Adds an alert rule telling the chosen channels (`channels[i]`: their IDs).
#[server(endpoint = "notify/add_rule")]
pub async fn add_rule(
    name: String,
    metric: String,
    threshold: String,
    #[server(default)] for_secs: String,
    #[server(default)] channels: Vec<String>,
) -> Result<Uuid, AppError> {
    let (ctx, caller) = edge::caller().await?;
    let new = NewRule::parse(&name, &metric, &threshold, &for_secs, &channels).map_err(fail)?;
    alerts::create_rule(&ctx.engine, &caller, new).await.map_err(fail)
}

/// Changes an alert rule's name, threshold, time and channels (`metric`
/// names its figure, which stays).
#[server(endpoint = "notify/edit_rule")]
pub async fn edit_rule(
    id: String,
    name: String,
    metric: String,
    threshold: String,
    #[server(default)] for_secs: String,
    #[server(default)] channels: Vec<String>,
) -> Result<(), AppError> {
    let (ctx, caller) = edge::caller().await?;
    let id: Uuid = edge::id(&id)?;
    let new = NewRule::parse(&name, &metric, &threshold, &for_secs, &channels).map_err(fail)?;
    alerts::update_rule(&ctx.engine, &caller, id, new).await.map_err(fail)
}

#[server(endpoint = "notify/remove_rule")]
pub async fn remove_rule(id: String) -> Result<(), AppError> {
    let (ctx, caller) = edge::caller().await?;
    let id: Uuid = edge::id(&id)?;
    alerts::delete_rule(&ctx.engine, &caller, id).await.map_err(fail)
}
