//! Server function for the audit log: the organization's rows for its admins
//! and owners, the instance's for instance administrators, filtered. The
//! export (JSON lines) is the server's `/api/audit/export`.

use crate::error::AppError;
use crate::types::AuditView;
use leptos::prelude::*;

#[cfg(feature = "ssr")]
use {
    super::edge::{self, fail},
    engine::audit::{self, Filter},
};

/// The newest 200 rows matching the filters: `who` and `what` are parts of
/// the actor and the action, `since` a date (`YYYY-MM-DD`); `instance` shows
/// the instance's events instead of the organization's.
#[server(endpoint = "audit/list")]
pub async fn list_audit(
    #[server(default)] who: String,
    #[server(default)] what: String,
    #[server(default)] since: String,
    instance: Option<String>,
) -> Result<Vec<AuditView>, AppError> {
    let (ctx, caller) = edge::caller().await?;
    let filter = Filter::parse(&who, &what, &since, edge::checked(&instance)).map_err(fail)?;
    let rows = audit::list(&ctx.engine, caller.audit_reader(), &filter)
        .await
        .map_err(fail)?;
    Ok(rows
        .into_iter()
        .map(|r| AuditView {
            id: r.id,
            at: crate::types::stamp(r.at),
            who: if r.actor_label.is_empty() {
                r.actor_kind.clone()
            } else {
                r.actor_label.clone()
            },
            action: r.action,
            target: match (r.target_kind, r.target_id) {
                (Some(k), Some(id)) => format!("{k} {id}"),
                _ => String::new(),
            },
            result: match r.status {
                Some(s) => format!("{} ({s})", r.result),
                None => r.result,
            },
            client: r.client_ip.unwrap_or_default(),
        })
        .collect())
}
