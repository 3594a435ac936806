//! Status changes pushed to open pages. Postgres stays the truth: a change is
//! committed first, then announced on the organization's Redis channel, and
//! every Berth process relays its channel to the pages it serves (one stream
//! per page, [`crate::fanout`] sharing one Redis connection per process). A
//! page that hears an event re-reads what it shows; an event lost (Redis
//! down, a dropped stream) costs freshness until the next one, never truth.

use crate::access::{self, Target};
use crate::accounts::{Caller, Projects};
use crate::ids::{AppId, ServiceId};
use crate::names::ProjectRole;
use crate::Engine;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use uuid::Uuid;

/// What changed. The page decides whether it shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A deployment was queued or moved to `status`.
    Deployment { id: Uuid, app: Uuid, status: String },
    /// A database service started, stopped, became ready, was repaired ...
    Service { id: Uuid },
    /// A backup, restore or drill of `service` (none: Berth's own database)
    /// moved on.
    Backup { id: Uuid, service: Option<Uuid> },
    /// A notification delivery was queued or moved to `status`.
    Delivery { id: Uuid, status: String },
    /// New resource figures of an app or a service (the nil ID: the machine
    /// and Traefik).
    Metrics { id: Uuid },
}

/// The organization's channel (a full Redis channel name).
pub fn channel(engine: &Engine, org: Uuid) -> String {
    engine.kv.key(&format!("events:{org}"))
}

/// Announces `event` to `org`'s open pages. Best effort: the change is already
/// committed, so a failure only delays pages until their next event.
pub async fn publish(engine: &Engine, org: Uuid, event: Event) {
    let Ok(payload) = serde_json::to_string(&event) else {
        return;
    };
    let sent = async {
        let mut conn = engine.kv.conn().await?;
        redis::cmd("PUBLISH")
            .arg(channel(engine, org))
            .arg(payload)
            .query_async::<i64>(&mut *conn)
            .await
            .map_err(crate::error::StoreError::from)
    }
    .await;
    if let Err(e) = sent {
        tracing::debug!(error = %e, "publishing a status event");
    }
}

/// A deployment's committed change, as its row says now.
pub async fn deployment_changed(engine: &Engine, id: Uuid) {
    use crate::db::schema::deployments;
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    let Ok(mut conn) = engine.db.get().await else { return };
    let row: Option<(Uuid, Uuid, String)> = deployments::table
        .find(id)
        .select((
            deployments::organization_id,
            deployments::application_id,
            deployments::status,
        ))
        .first(&mut conn)
        .await
        .optional()
        .ok()
        .flatten();
    drop(conn);
    if let Some((org, app, status)) = row {
        publish(engine, org, Event::Deployment { id, app, status }).await;
    }
}

/// A backup's, restore's or drill's committed change (`id` of a backup or a
/// restore).
pub async fn backup_changed(engine: &Engine, id: Uuid) {
    use crate::db::schema::{backups, restores};
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    let Ok(mut conn) = engine.db.get().await else { return };
    let backup: Option<(Uuid, Option<Uuid>)> = backups::table
        .find(id)
        .select((backups::organization_id, backups::service_id))
        .first(&mut conn)
        .await
        .optional()
        .ok()
        .flatten();
    let row = match backup {
        Some(b) => Some(b),
        None => restores::table
            .find(id)
            .select((restores::organization_id, restores::service_id.nullable()))
            .first(&mut conn)
            .await
            .optional()
            .ok()
            .flatten(),
    };
    drop(conn);
    if let Some((org, service)) = row {
        publish(engine, org, Event::Backup { id, service }).await;
    }
}

/// A service's change, for its organization (looked up by the service).
pub async fn service_changed(engine: &Engine, service: Uuid) {
    use crate::db::schema::database_services;
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    let Ok(mut conn) = engine.db.get().await else { return };
    let org: Option<Uuid> = database_services::table
        .find(service)
        .select(database_services::organization_id)
        .first(&mut conn)
        .await
        .optional()
        .ok()
        .flatten();
    drop(conn);
    if let Some(org) = org {
        publish(engine, org, Event::Service { id: service }).await;
    }
}

/// What of the organization's events one caller's stream may carry: all of
/// them for a caller who reaches every project; for one limited to projects,
/// the deployments, services, backups and figures of the projects they reach
/// (each ID resolved once per stream, then remembered), and no notification
/// deliveries or machine figures (organization-wide, like the pages that show
/// them). The stream's owner re-reads the caller now and then
/// ([`Sieve::refresh`]): changed grants apply from then on, and a caller who
/// is no longer one (signed out, removed) ends the stream.
pub struct Sieve {
    caller: Caller,
    seen: HashMap<Uuid, bool>,
}

/// How many IDs a stream remembers before it starts again.
const SIEVE_MEMORY: usize = 4096;

impl Sieve {
    pub fn new(caller: Caller) -> Self {
        Self {
            caller,
            seen: HashMap::new(),
        }
    }

    /// The organization whose channel this stream hears.
    pub fn org(&self) -> crate::ids::OrgId {
        self.caller.org_id
    }

    /// The caller as they are now (re-read from their session): what was
    /// admitted under other grants or another role is judged again.
    pub fn refresh(&mut self, caller: Caller) {
        if caller.projects != self.caller.projects || caller.role != self.caller.role {
            self.seen.clear();
        }
        self.caller = caller;
    }

    /// Whether `payload` (an [`Event`] as published) goes to this stream.
    pub async fn admits(&mut self, engine: &Engine, payload: &str) -> bool {
        if self.caller.projects == Projects::All {
            return true;
        }
        let Ok(event) = serde_json::from_str::<Event>(payload) else {
            return false;
        };
        let (id, targets) = match event {
            Event::Deployment { app, .. } => (app, vec![Target::App(AppId(app))]),
            Event::Service { id } | Event::Backup { service: Some(id), .. } => {
                (id, vec![Target::Service(ServiceId(id))])
            }
            // Figures are of an app or of a service: whichever the ID is.
            Event::Metrics { id } if !id.is_nil() => (id, vec![Target::App(AppId(id)), Target::Service(ServiceId(id))]),
            Event::Backup { service: None, .. } | Event::Delivery { .. } | Event::Metrics { .. } => return false,
        };
        if let Some(known) = self.seen.get(&id) {
            return *known;
        }
        let mut admitted = false;
        for t in targets {
            match access::check_with(engine, &self.caller, t, ProjectRole::Viewer).await {
                Ok(()) => {
                    admitted = true;
                    break;
                }
                Err(access::Denied::NotFound | access::Denied::Forbidden(_)) => {}
                // Not remembered: the next event asks again.
                Err(access::Denied::Store(_)) => return false,
            }
        }
        if self.seen.len() >= SIEVE_MEMORY {
            self.seen.clear();
        }
        self.seen.insert(id, admitted);
        admitted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_tagged_json() {
        let id = Uuid::nil();
        let e = Event::Deployment {
            id,
            app: id,
            status: "building".into(),
        };
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.starts_with(r#"{"kind":"deployment","#), "{json}");
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), e);
        let b = serde_json::to_string(&Event::Backup { id, service: None }).unwrap();
        assert!(
            b.contains(r#""kind":"backup""#) && b.contains(r#""service":null"#),
            "{b}"
        );
    }
}
