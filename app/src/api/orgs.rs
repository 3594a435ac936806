//! Server functions for organizations: switching, creating, members, invites.

use crate::error::AppError;
use crate::types::{InvitePreview, InviteView, MemberView, NewInvite};
use leptos::prelude::*;
use uuid::Uuid;

#[cfg(feature = "ssr")]
use {
    super::edge::{self, fail},
    engine::accounts::NewAccount,
    engine::names::{OrgName, Role},
    engine::orgs::{self, Acceptor},
};

#[server(endpoint = "orgs/switch")]
pub async fn switch_org(id: String) -> Result<(), AppError> {
    let (ctx, caller) = edge::caller().await?;
    orgs::switch(&ctx.engine, &caller, edge::id(&id)?).await.map_err(fail)
}

#[server(endpoint = "orgs/create")]
pub async fn create_org(organization: String) -> Result<Uuid, AppError> {
    let (ctx, caller) = edge::caller().await?;
    let name = OrgName::parse(&organization).map_err(fail)?;
    Ok(orgs::create(&ctx.engine, &caller, name).await.map_err(fail)?.0)
}

#[server(endpoint = "orgs/members")]
pub async fn list_members() -> Result<Vec<MemberView>, AppError> {
    let (ctx, caller) = edge::caller().await?;
    let members = orgs::members(&ctx.engine, &caller).await.map_err(fail)?;
    Ok(members
        .into_iter()
        .map(|m| MemberView {
            user_id: m.user_id.0,
            name: m.name,
            email: m.email,
            role: m.role.as_str().to_owned(),
            limited: m.access.limited,
            grants: m
                .access
                .grants
                .into_iter()
                .map(|(p, r)| crate::types::GrantView {
                    project_id: p.0,
                    role: r.as_str().to_owned(),
                })
                .collect(),
        })
        .collect())
}

/// Limits a member to chosen projects with a role in each (`projects[i]`,
/// `roles[i]`: viewer, deployer, admin or none), or (`limited` off) gives them
/// every project again.
#[server(endpoint = "orgs/members/access")]
pub async fn set_member_access(
    user_id: String,
    limited: Option<String>,
    #[server(default)] projects: Vec<String>,
    #[server(default)] roles: Vec<String>,
) -> Result<(), AppError> {
    let (ctx, caller) = edge::caller().await?;
    let user = edge::id(&user_id)?;
    let access = orgs::Access::parse(edge::checked(&limited), &projects, &roles).map_err(fail)?;
    orgs::set_access(&ctx.engine, &caller, user, access).await.map_err(fail)
}

#[server(endpoint = "orgs/members/role")]
pub async fn change_member_role(user_id: String, role: String) -> Result<(), AppError> {
    let (ctx, caller) = edge::caller().await?;
    let user = edge::id(&user_id)?;
    let role = Role::parse(&role).map_err(fail)?;
    orgs::change_role(&ctx.engine, &caller, user, role).await.map_err(fail)
}

#[server(endpoint = "orgs/members/remove")]
pub async fn remove_member(user_id: String) -> Result<(), AppError> {
    let (ctx, caller) = edge::caller().await?;
    orgs::remove_member(&ctx.engine, &caller, edge::id(&user_id)?)
        .await
        .map_err(fail)
}

#[server(endpoint = "orgs/invites")]
pub async fn list_invites() -> Result<Vec<InviteView>, AppError> {
    let (ctx, caller) = edge::caller().await?;
    let invites = orgs::list_invites(&ctx.engine, &caller).await.map_err(fail)?;
    Ok(invites
        .into_iter()
        .map(|i| InviteView {
            id: i.id.0,
            role: i.role.as_str().to_owned(),
            expires_at: i.expires_at.format("%Y-%m-%d %H:%M UTC").to_string(),
            created_by: i.created_by,
        })
        .collect())
}

/// Makes a one-time invite link, valid for seven days; the link is shown once.
#[server(endpoint = "orgs/invites/create")]
pub async fn create_invite(role: String) -> Result<NewInvite, AppError> {
    let (ctx, caller) = edge::caller().await?;
    let role = Role::parse(&role).map_err(fail)?;
    let (id, token) = orgs::create_invite(&ctx.engine, &caller, role).await.map_err(fail)?;
    let base = ctx.public_url.clone().unwrap_or_default();
    Ok(NewInvite {
        id: id.0,
        link: format!("{}/invite/{token}", base.trim_end_matches('/')),
    })
}

#[server(endpoint = "orgs/invites/revoke")]
pub async fn revoke_invite(id: String) -> Result<(), AppError> {
    let (ctx, caller) = edge::caller().await?;
    orgs::revoke_invite(&ctx.engine, &caller, edge::id(&id)?)
        .await
        .map_err(fail)
}

#[server(endpoint = "invites/preview")]
pub async fn preview_invite(token: String) -> Result<InvitePreview, AppError> {
    let ctx = edge::context()?;
    let p = orgs::preview_invite(&ctx.engine, &token).await.map_err(fail)?;
    let signed_in = edge::try_caller(&ctx).await?.is_some();
    Ok(InvitePreview {
        org_name: p.org_name,
        role: p.role.as_str().to_owned(),
        signed_in,
    })
}

/// Accepts an invite: as the signed-in user, or by creating an account when
/// `name`, `email` and `password` are given and nobody is signed in.
#[server(endpoint = "invites/accept")]
pub async fn accept_invite(
    token: String,
    name: Option<String>,
    email: Option<String>,
    password: Option<String>,
) -> Result<(), AppError> {
    let ctx = edge::context()?;
    let signed_in = edge::try_caller(&ctx).await?;
    let session = match &signed_in {
        Some(caller) => orgs::accept_invite(&ctx.engine, &token, Acceptor::Existing(caller)).await,
        None => {
            let account = NewAccount::parse(
                name.as_deref().unwrap_or_default(),
                email.as_deref().unwrap_or_default(),
                password.as_deref().unwrap_or_default(),
            )
            .map_err(fail)?;
            orgs::accept_invite(&ctx.engine, &token, Acceptor::New(account)).await
        }
    }
    .map_err(fail)?;
    edge::set_session_cookie(&ctx, &session);
    Ok(())
}
