//! Server functions: the UI's only door to the engine. Each gets the caller,
//! parses its inputs into validated types, calls one engine function and maps
//! the result. Endpoints are fixed (`/api/<endpoint>`) so tests and scripts can
//! call them; the cross-organization test enumerates them all.

pub mod apps;
pub mod audit;
#[cfg(feature = "ssr")]
pub mod edge;
pub mod instance;
pub mod keys;
pub mod notify;
pub mod orgs;
pub mod projects;
pub mod services;
pub mod session;
pub mod twofactor;

/// What an app's or a service's page says about its running state: what is
/// wrong now and the reconciler's latest repairs (access already checked).
#[cfg(feature = "ssr")]
pub(crate) async fn repairs(
    engine: &engine::Engine,
    caller: &engine::accounts::Caller,
    app: Option<uuid::Uuid>,
    service: Option<uuid::Uuid>,
) -> Result<(Option<String>, Vec<crate::types::RepairView>), crate::error::AppError> {
    let (now, list) = engine::reconcile::of(engine, caller.org_id, app, service)
        .await
        .map_err(edge::fail)?;
    Ok((
        now,
        list.into_iter()
            .map(|r| crate::types::RepairView {
                problem: r.problem,
                action: r.action,
                at: crate::types::stamp(r.at),
            })
            .collect(),
    ))
}
