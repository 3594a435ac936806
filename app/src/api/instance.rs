//! Server functions for instance administrators: the instance's settings and
//! who else administers it.

use crate::error::AppError;
use crate::types::{InstanceView, MetricsView};
use leptos::prelude::*;

#[cfg(feature = "ssr")]
use {
    super::edge::{self, fail},
    crate::types::InstanceUserView,
    engine::instance::{self, OrgCreation},
};

#[server(endpoint = "instance/get")]
pub async fn get_instance() -> Result<InstanceView, AppError> {
    let (ctx, caller) = edge::caller().await?;
    let users = instance::users(&ctx.engine, &caller).await.map_err(fail)?;
    let settings = instance::settings(&ctx.engine).await.map_err(fail)?;
    let host = &ctx.engine.deploy.host;
    let acme = engine::proxy::acme::settings(&ctx.engine)
        .await
        .map_err(fail)?
        .to_form();
    Ok(InstanceView {
        acme: crate::types::AcmeView {
            directory: acme.directory,
            email: acme.email,
            dns_provider: acme.dns_provider,
            dns_credentials: acme.dns_credentials,
            dns_resolvers: acme.dns_resolvers,
            dns_skip_propagation: acme.dns_skip_propagation,
            http3: acme.http3,
        },
        org_creation: settings.org_creation.as_str().to_owned(),
        users: users
            .into_iter()
            .map(|u| InstanceUserView {
                id: u.id.0,
                name: u.name,
                email: u.email,
                instance_admin: u.instance_admin,
            })
            .collect(),
        bind_roots: host.bind_roots.iter().map(|p| p.display().to_string()).collect(),
        allow_private_targets: host.allow_private_targets,
        allow_local_images: host.allow_local_images,
    })
}

#[server(endpoint = "instance/settings")]
pub async fn set_org_creation(org_creation: String) -> Result<(), AppError> {
    let (ctx, caller) = edge::caller().await?;
    let org_creation = OrgCreation::parse(&org_creation).map_err(fail)?;
    instance::update_settings(&ctx.engine, &caller, instance::Settings { org_creation })
        .await
        .map_err(fail)
}

/// The ACME account and resolvers Traefik gets certificates with (Traefik
/// restarts with them; `acme.json` is kept).
#[server(endpoint = "instance/acme")]
pub async fn set_acme(
    #[server(default)] directory: String,
    #[server(default)] email: String,
    #[server(default)] dns_provider: String,
    #[server(default)] dns_credentials: String,
    #[server(default)] dns_resolvers: String,
    dns_skip_propagation: Option<String>,
    http3: Option<String>,
) -> Result<(), AppError> {
    let (ctx, caller) = edge::caller().await?;
    let form = engine::proxy::acme::AcmeForm {
        directory,
        email,
        dns_provider,
        dns_credentials,
        dns_resolvers,
        dns_skip_propagation: dns_skip_propagation.is_some(),
        http3: http3.is_some(),
    };
    engine::proxy::acme::update(&ctx.engine, &caller, &form)
        .await
        .map_err(fail)
}

#[server(endpoint = "instance/admin")]
pub async fn set_instance_admin(user_id: String, admin: String) -> Result<(), AppError> {
    let (ctx, caller) = edge::caller().await?;
    let admin = engine::config::parse_flag(&admin).ok_or_else(|| {
        fail(engine::names::ValidationError::new(
            "admin",
            "must be one of 1/0, true/false, on/off or yes/no",
        ))
    })?;
    instance::set_admin(&ctx.engine, &caller, edge::id(&user_id)?, admin)
        .await
        .map_err(fail)
}

/// The machine's (`host`) or Traefik's (`proxy`) figures over `window`:
/// instance administrators only.
#[server(endpoint = "instance/metrics")]
pub async fn machine_metrics(which: String, window: String) -> Result<MetricsView, AppError> {
    use engine::metrics::Subject;
    let (ctx, caller) = edge::caller().await?;
    let window = engine::metrics::Window::parse(&window).map_err(fail)?;
    let subject = match which.as_str() {
        "host" => Subject::Host,
        "proxy" => Subject::Proxy,
        _ => {
            return Err(fail(engine::names::ValidationError::new(
                "which",
                "must be host or proxy",
            )))
        }
    };
    let points = engine::metrics::machine_series(&ctx.engine, &caller, subject, window)
        .await
        .map_err(fail)?;
    Ok(MetricsView {
        points: points.into_iter().map(crate::types::MetricPoint::from).collect(),
        ..MetricsView::default()
    })
}
