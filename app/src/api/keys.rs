//! Server functions for API keys (the REST API's credentials): list, make
//! (the key is shown once) and revoke.

use crate::error::AppError;
use crate::types::{ApiKeyView, NewApiKey};
use leptos::prelude::*;

#[cfg(feature = "ssr")]
use {
    super::edge::{self, fail},
    engine::apikeys::{self, ExpiryDays, KeyName, KeyRole, NewKey},
};

/// The organization's keys: everyone's for its admins and owners, the
/// caller's own for a member.
#[server(endpoint = "keys/list")]
pub async fn list_keys() -> Result<Vec<ApiKeyView>, AppError> {
    let (ctx, caller) = edge::caller().await?;
    let stamp = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
    let now = chrono::Utc::now();
    Ok(apikeys::list(&ctx.engine, &caller)
        .await
        .map_err(fail)?
        .into_iter()
        .map(|k| ApiKeyView {
            id: k.id.0,
            name: k.name,
            prefix: k.prefix,
            role: k.role,
            instance: k.instance,
            owner: k.owner,
            own: k.own,
            created_at: stamp(k.created_at),
            expires: match k.expires_at {
                None => "never".into(),
                Some(at) if at <= now => format!("expired {}", stamp(at)),
                Some(at) => stamp(at),
            },
            state: k
                .revoked_at
                .map(|at| format!("revoked {}", stamp(at)))
                .unwrap_or_else(|| "active".into()),
            last_used: match (k.last_used_at, k.last_used_ip) {
                (Some(at), Some(ip)) => format!("{} from {ip}", stamp(at)),
                (Some(at), None) => stamp(at),
                _ => "never".into(),
            },
            projects: k.projects,
        })
        .collect())
}

/// Makes a key for the caller in the current organization, acting with at
/// most `role`; `instance` (instance administrators only) lets it use their
/// instance powers. The key is in the answer, once.
#[server(endpoint = "keys/create")]
pub async fn create_key(
    name: String,
    role: String,
    #[server(default)] expires_in_days: String,
    instance: Option<String>,
    #[server(default)] projects: Vec<String>,
) -> Result<NewApiKey, AppError> {
    let (ctx, caller) = edge::caller().await?;
    let new = NewKey {
        name: KeyName::parse(&name).map_err(fail)?,
        role: KeyRole::parse(&role).map_err(fail)?,
        expires: ExpiryDays::parse(&expires_in_days).map_err(fail)?,
        instance: edge::checked(&instance),
        projects: NewKey::parse_projects(&projects).map_err(fail)?,
    };
    let made = apikeys::create(&ctx.engine, &caller, new).await.map_err(fail)?;
    Ok(NewApiKey {
        id: made.id.0,
        key: made.key,
    })
}

/// Revokes a key: the caller's own, or any of the organization's for its
/// admins and owners.
#[server(endpoint = "keys/revoke")]
pub async fn revoke_key(id: String) -> Result<(), AppError> {
    let (ctx, caller) = edge::caller().await?;
    apikeys::revoke(&ctx.engine, &caller, edge::id(&id)?)
        .await
        .map_err(fail)
}
