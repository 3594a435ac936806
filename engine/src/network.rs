//! The Docker networks tenants live on: one bridge per organization, named from
//! its ID (docs/decisions/0003-one-network-per-organization.md). Apps and
//! databases of an organization reach each other by name there and cannot
//! reach another organization's; the managed Traefik is attached to every one
//! with apps so it can route to them. The shared `BERTH_NETWORK` remains for Traefik
//! itself and for containers made before (until they are rebuilt).

use crate::db::schema::applications;
use crate::docker::{DockerError, LABEL_INSTANCE};
use crate::error::StoreError;
use crate::ids::OrgId;
use crate::Engine;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use std::collections::HashMap;

/// The label naming the organization a network belongs to.
pub const LABEL_ORG: &str = "berth.org";

/// An organization's network: `<instance>-o<org id>` (no name anyone types).
pub fn of(engine: &Engine, org: OrgId) -> String {
    format!("{}-o{}", engine.deploy.instance, org.0.simple())
}

/// The alias prefix of deployment containers (`d-<deployment id>`), which
/// Traefik resolves: no app or service may take a name of that shape.
pub fn is_reserved_alias(name: &str) -> bool {
    name.strip_prefix("d-")
        .is_some_and(|rest| rest.len() == 32 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Creates the organization's network unless it exists; returns its name.
/// Databases need no more: nothing routes to them from outside.
pub async fn ensure_org(engine: &Engine, org: OrgId) -> Result<String, DockerError> {
    let name = of(engine, org);
    let labels = HashMap::from([
        (LABEL_INSTANCE.to_owned(), engine.deploy.instance.clone()),
        (LABEL_ORG.to_owned(), org.to_string()),
    ]);
    ensure_named(engine, &name, &labels).await?;
    Ok(name)
}

/// Creates a network unless it exists, one creator at a time across every
/// replica and worker: Docker before API 1.44 does not refuse a second network
/// of the same name, and two deploys of one organization would otherwise each
/// make one (after which the name no longer resolves). The lock is a
/// transaction-scoped PostgreSQL advisory lock, so it cannot outlive a crash.
pub async fn ensure_named(engine: &Engine, name: &str, labels: &HashMap<String, String>) -> Result<(), DockerError> {
    use diesel_async::AsyncConnection;
    let store = |e: StoreError| DockerError::Stream(e.to_string());
    let mut conn = engine.db.get().await.map_err(|e| store(StoreError::from(e)))?;
    let created = conn
        .transaction::<_, LockedError, _>(async |conn| {
            diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7274))")
                .bind::<diesel::sql_types::Text, _>(format!("network:{name}"))
                .execute(conn)
                .await?;
            engine
                .docker
                .ensure_network(name, labels)
                .await
                .map_err(LockedError::Docker)
        })
        .await;
    match created {
        Ok(()) => Ok(()),
        Err(LockedError::Docker(e)) => Err(explain_pool(e)),
        Err(LockedError::Store(e)) => Err(store(StoreError::from(e))),
    }
}

enum LockedError {
    Store(diesel::result::Error),
    Docker(DockerError),
}

impl From<diesel::result::Error> for LockedError {
    fn from(e: diesel::result::Error) -> Self {
        LockedError::Store(e)
    }
}

/// Docker's address pools (by default 31 networks) running out is an operator's
/// fix, so the error says which one. (Docker 20.10 answers it with a 404.)
fn explain_pool(e: DockerError) -> DockerError {
    let message = match &e {
        DockerError::NotFound(m) | DockerError::Refused { message: m, .. } if m.contains("address pool") => m,
        _ => return e,
    };
    DockerError::Refused {
        status: 503,
        message: format!(
            "{message}: Docker has no address range left for another network; give it more with \
             `default-address-pools` in /etc/docker/daemon.json (docs/decisions/0003-one-network-per-organization.md)"
        ),
    }
}

/// [`ensure_org`], and the managed Traefik attached to it so it can route to
/// the organization's apps (and Berth's own container, when it runs in one,
/// so the worker reaches the apps it health-checks).
pub async fn ensure_routable(engine: &Engine, org: OrgId) -> Result<String, DockerError> {
    let name = ensure_org(engine, org).await?;
    let proxy = engine
        .deploy
        .proxy
        .manage
        .then_some(engine.deploy.proxy.container.as_str());
    for container in [proxy, engine.deploy.self_container.as_deref()].into_iter().flatten() {
        // Attached already (every deploy after an organization's first): no
        // connect call, which dockerd would otherwise work through (and refuse)
        // in the middle of a rollout.
        let attached = engine
            .docker
            .inspect_container(container)
            .await?
            .is_some_and(|c| c.addresses.contains_key(&name));
        if !attached {
            engine.docker.connect_network(&name, container, &[]).await?;
        }
    }
    Ok(name)
}

/// Attaches the managed Traefik to the network of every organization with apps
/// (after Traefik was created anew: a new container is on none of them).
/// Organizations with nothing deployed get their network on their first
/// deploy: networks are a limited resource of the Docker engine.
pub async fn attach_proxy_everywhere(engine: &Engine) -> Result<(), DockerError> {
    let store = |e: diesel::result::Error| DockerError::Stream(StoreError::from(e).to_string());
    let orgs: Vec<uuid::Uuid> = match engine.db.get().await {
        Ok(mut conn) => applications::table
            .select(applications::organization_id)
            .distinct()
            .load(&mut conn)
            .await
            .map_err(store)?,
        Err(e) => return Err(DockerError::Stream(StoreError::from(e).to_string())),
    };
    for org in orgs {
        ensure_routable(engine, OrgId(org)).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn deployment_aliases_are_reserved() {
        assert!(super::is_reserved_alias("d-0123456789abcdef0123456789abcdef"));
        assert!(!super::is_reserved_alias("d-web"));
        assert!(!super::is_reserved_alias("web"));
    }
}
