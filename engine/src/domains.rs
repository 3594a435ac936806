//! What a user changes about an application's domains and certificates,
//! applied at once: the change stored (`crate::apps`), the pre-checks run
//! before a CA is asked (`crate::apps::tls`), and the app's routes and the
//! uploaded certificates written for Traefik (`crate::deploy::pipeline`).
//! Here, above those modules, so that none of them depends on another in a
//! circle.

use crate::accounts::Caller;
use crate::apps::{self, tls, AppError, DomainUpdate, NewDomain};
use crate::deploy::pipeline::restore_route;
use crate::ids::{AppId, DomainId};
use crate::Engine;

/// Adds a domain to an app and routes it.
pub async fn add(engine: &Engine, caller: &Caller, app: AppId, d: NewDomain) -> Result<DomainId, AppError> {
    let id = apps::add_domain(engine, caller, app, d).await?;
    tls::precheck_new(engine, id).await;
    restore_route(engine, app).await;
    Ok(id)
}

/// Changes a domain's HTTPS, certificate source and options, and routes them.
pub async fn update(engine: &Engine, caller: &Caller, id: DomainId, u: DomainUpdate) -> Result<AppId, AppError> {
    let changed = apps::update_domain(engine, caller, id, u).await?;
    if changed.recheck {
        tls::precheck_new(engine, id).await;
    }
    restore_route(engine, changed.app).await;
    Ok(changed.app)
}

/// Removes a domain (and its uploaded certificate) and routes the app without it.
pub async fn remove(engine: &Engine, caller: &Caller, id: DomainId) -> Result<AppId, AppError> {
    let app = apps::remove_domain(engine, caller, id).await?;
    tls::write_custom(engine).await;
    restore_route(engine, app).await;
    Ok(app)
}

/// Checks and stores an uploaded certificate, and serves it.
pub async fn upload_certificate(
    engine: &Engine,
    caller: &Caller,
    id: DomainId,
    chain: &str,
    key: &str,
) -> Result<AppId, AppError> {
    let app = tls::upload(engine, caller, id, chain, key).await?;
    tls::write_custom(engine).await;
    restore_route(engine, app).await;
    Ok(app)
}
