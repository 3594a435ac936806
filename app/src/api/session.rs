//! Server functions for signing up, in and out, the caller's own account, and
//! the system status banner.

use crate::error::AppError;
#[cfg(feature = "ssr")]
use crate::types::{Me, OrgView};
use crate::types::{SessionState, SystemStatus};
use leptos::prelude::*;

#[cfg(feature = "ssr")]
use {
    super::edge::{self, fail},
    engine::accounts::{self, NewAccount},
    engine::names::{OrgName, Password, PersonName},
    engine::orgs,
};

#[cfg(feature = "ssr")]
async fn me(ctx: &edge::ServerContext, caller: &engine::accounts::Caller) -> Result<Me, AppError> {
    let profile = accounts::profile(&ctx.engine, caller).await.map_err(fail)?;
    let orgs = orgs::list_mine(&ctx.engine, caller).await.map_err(fail)?;
    // The current organization's name is in the list already: no second query.
    let org_name = orgs
        .iter()
        .find(|o| o.id == caller.org_id)
        .map(|o| o.name.clone())
        .unwrap_or_default();
    Ok(Me {
        name: profile.name,
        email: profile.email,
        org_id: caller.org_id.0,
        org_name,
        role: caller.role.as_str().to_owned(),
        instance_admin: caller.instance_admin,
        can_create_org: engine::instance::may_create_org(&ctx.engine, caller)
            .await
            .map_err(fail)?,
        orgs: orgs
            .into_iter()
            .map(|o| OrgView {
                id: o.id.0,
                name: o.name,
                role: o.role.as_str().to_owned(),
            })
            .collect(),
    })
}

/// Onboarding, signed out, or signed in (with who and where).
#[server(endpoint = "session")]
pub async fn get_session_state() -> Result<SessionState, AppError> {
    let ctx = edge::context()?;
    if accounts::onboarding_open(&ctx.engine).await.map_err(fail)? {
        return Ok(SessionState::Onboarding);
    }
    match edge::try_caller(&ctx).await? {
        Some(caller) => Ok(SessionState::SignedIn(me(&ctx, &caller).await?)),
        None => Ok(SessionState::SignedOut),
    }
}

/// Creates the first owner (an instance administrator) and their organization,
/// with the setup token Berth printed at start; refused once an owner exists.
#[server(endpoint = "onboard")]
pub async fn onboard(
    setup_token: String,
    name: String,
    email: String,
    password: String,
    organization: String,
) -> Result<(), AppError> {
    let ctx = edge::context()?;
    let account = NewAccount::parse(&name, &email, &password).map_err(fail)?;
    let org = OrgName::parse(&organization).map_err(fail)?;
    let (caller, _) = accounts::onboard(&ctx.engine, &setup_token, account, org)
        .await
        .map_err(fail)?;
    if let Some(token) = caller.session() {
        edge::set_session_cookie(&ctx, token);
    }
    Ok(())
}

/// Signs in with a password: `None` when signed in (the cookie is set), or
/// the challenge to send back with a code (`login/code`) when the account
/// uses two-factor sign-in.
#[server(endpoint = "login")]
pub async fn login(email: String, password: String) -> Result<Option<String>, AppError> {
    let ctx = edge::context()?;
    match engine::signin::sign_in(&ctx.engine, &email, &password, &edge::client_ip())
        .await
        .map_err(fail)?
    {
        engine::signin::SignIn::Done(caller) => {
            if let Some(token) = caller.session() {
                edge::set_session_cookie(&ctx, token);
            }
            Ok(None)
        }
        engine::signin::SignIn::NeedsCode(challenge) => Ok(Some(challenge)),
    }
}

/// The second step of a sign-in: a code from the authenticator app (or a
/// recovery code) for the challenge the password step gave.
#[server(endpoint = "login/code")]
pub async fn login_code(challenge: String, code: String) -> Result<(), AppError> {
    let ctx = edge::context()?;
    let caller = engine::signin::sign_in_code(&ctx.engine, &challenge, &code, &edge::client_ip())
        .await
        .map_err(fail)?;
    if let Some(token) = caller.session() {
        edge::set_session_cookie(&ctx, token);
    }
    Ok(())
}

#[server(endpoint = "logout")]
pub async fn logout() -> Result<(), AppError> {
    let ctx = edge::context()?;
    if let Some(token) = edge::session_token() {
        accounts::logout(&ctx.engine, &token).await.map_err(fail)?;
    }
    edge::clear_session_cookie(&ctx);
    Ok(())
}

#[server(endpoint = "account/profile")]
pub async fn update_profile(name: String) -> Result<(), AppError> {
    let (ctx, caller) = edge::caller().await?;
    let name = PersonName::parse(&name).map_err(fail)?;
    accounts::update_name(&ctx.engine, &caller, name).await.map_err(fail)
}

/// Changes the password and signs out every other session.
#[server(endpoint = "account/password")]
pub async fn change_password(current_password: String, new_password: String) -> Result<(), AppError> {
    let (ctx, caller) = edge::caller().await?;
    let new = Password::parse("new_password", &new_password).map_err(fail)?;
    accounts::change_password(&ctx.engine, &caller, &current_password, new)
        .await
        .map_err(fail)
}

/// Whether Docker answers, for the banner in the app shell.
#[server(endpoint = "system/status")]
pub async fn get_system_status() -> Result<SystemStatus, AppError> {
    let (ctx, caller) = edge::caller().await?;
    let docker_error = ctx.engine.docker.info().await.err();
    // Where Docker is and what it said are the host's business: the
    // operator's. Everyone else learns only that deploys cannot run.
    Ok(if caller.instance_admin {
        SystemStatus {
            docker_error: docker_error.map(|e| e.to_string()),
            docker_host: ctx.engine.docker.host(),
            problems: engine::reconcile::problems(&ctx.engine)
                .await
                .into_iter()
                .map(|p| p.text)
                .filter(|t| !t.starts_with("Docker unreachable"))
                .collect(),
            needs_second_factor: caller.needs_second_factor,
        }
    } else {
        SystemStatus {
            docker_error: docker_error
                .map(|_| "the Docker engine does not answer; tell this instance's administrator".to_owned()),
            docker_host: String::new(),
            problems: Vec::new(),
            needs_second_factor: caller.needs_second_factor,
        }
    })
}
