//! `/api/v1/members` and `/api/v1/invites`: the organization's people, thin
//! over `engine::orgs` (its rules: admins manage, owners by owners, the last
//! owner stays).

use super::{engine_err, id, Body, Key, Problem};
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use engine::names::Role;
use engine::orgs;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Serialize, ToSchema)]
pub struct Member {
    pub user_id: Uuid,
    pub name: String,
    pub email: String,
    /// `owner`, `admin` or `member`.
    pub role: String,
    pub access: Access,
}

/// Where a member reaches: every project (`limited` false), or only the
/// projects of `grants`, each with its role. Owners and admins are never limited.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Access {
    pub limited: bool,
    #[serde(default)]
    pub grants: Vec<Grant>,
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub project_id: Uuid,
    /// `viewer` (sees, reads logs), `deployer` (also deploys, rolls back,
    /// edits variables and domains) or `admin` (also creates and deletes apps
    /// and database services, runs backups and restores).
    pub role: String,
}

impl From<orgs::Access> for Access {
    fn from(a: orgs::Access) -> Self {
        Access {
            limited: a.limited,
            grants: a
                .grants
                .into_iter()
                .map(|(p, r)| Grant {
                    project_id: p.0,
                    role: r.as_str().to_owned(),
                })
                .collect(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct MemberList {
    pub items: Vec<Member>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleIn {
    /// `owner`, `admin` or `member` (an owner's role: by owners).
    pub role: String,
}

#[derive(Serialize, ToSchema)]
pub struct Invite {
    pub id: Uuid,
    pub role: String,
    pub expires_at: String,
    pub created_by: String,
}

#[derive(Serialize, ToSchema)]
pub struct InviteList {
    pub items: Vec<Invite>,
}

#[derive(Serialize, ToSchema)]
pub struct NewInvite {
    pub id: Uuid,
    /// The one-time link to send (valid for seven days); shown once.
    pub link: String,
}

/// The organization's members.
#[utoipa::path(get, path = "/members", tag = "members", responses((status = 200, body = MemberList)))]
pub async fn list(State(s): State<AppState>, Key(c): Key) -> Result<Json<MemberList>, ApiError> {
    let rows = orgs::members(s.engine(), &c).await.map_err(engine_err)?;
    Ok(Json(MemberList {
        items: rows
            .into_iter()
            .map(|m| Member {
                user_id: m.user_id.0,
                name: m.name,
                email: m.email,
                role: m.role.as_str().to_owned(),
                access: m.access.into(),
            })
            .collect(),
    }))
}

/// Limits a member to chosen projects with a role in each, or (`limited`
/// false, no grants) gives them every project again (admins; plain members only).
#[utoipa::path(put, path = "/members/{id}/access", tag = "members", request_body = Access, params(("id" = String, Path, description = "The member's user ID")),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn set_access(
    State(s): State<AppState>,
    Key(c): Key,
    Path(uid): Path<String>,
    Body(b): Body<Access>,
) -> Result<StatusCode, ApiError> {
    let uid = id(&uid)?;
    let (projects, roles): (Vec<String>, Vec<String>) =
        b.grants.into_iter().map(|g| (g.project_id.to_string(), g.role)).unzip();
    let access = orgs::Access::parse(b.limited, &projects, &roles).map_err(engine_err)?;
    orgs::set_access(s.engine(), &c, uid, access)
        .await
        .map_err(engine_err)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Changes a member's role (admins; an owner's by owners; the last owner stays).
#[utoipa::path(patch, path = "/members/{id}", tag = "members", request_body = RoleIn, params(("id" = String, Path, description = "The member's user ID")),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn change_role(
    State(s): State<AppState>,
    Key(c): Key,
    Path(uid): Path<String>,
    Body(b): Body<RoleIn>,
) -> Result<StatusCode, ApiError> {
    let uid = id(&uid)?;
    let role = Role::parse(&b.role).map_err(engine_err)?;
    orgs::change_role(s.engine(), &c, uid, role).await.map_err(engine_err)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes a member (admins; an owner by owners; the last owner stays).
#[utoipa::path(delete, path = "/members/{id}", tag = "members", params(("id" = String, Path, description = "The member's user ID")),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn remove(State(s): State<AppState>, Key(c): Key, Path(uid): Path<String>) -> Result<StatusCode, ApiError> {
    orgs::remove_member(s.engine(), &c, id(&uid)?)
        .await
        .map_err(engine_err)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Open invites (admins).
#[utoipa::path(get, path = "/invites", tag = "members", responses((status = 200, body = InviteList), (status = 403, body = Problem)))]
pub async fn invites(State(s): State<AppState>, Key(c): Key) -> Result<Json<InviteList>, ApiError> {
    let rows = orgs::list_invites(s.engine(), &c).await.map_err(engine_err)?;
    Ok(Json(InviteList {
        items: rows
            .into_iter()
            .map(|i| Invite {
                id: i.id.0,
                role: i.role.as_str().to_owned(),
                expires_at: super::stamp(i.expires_at),
                created_by: i.created_by,
            })
            .collect(),
    }))
}

/// Makes a one-time invite link (admins).
#[utoipa::path(post, path = "/invites", tag = "members", request_body = RoleIn,
    responses((status = 201, body = NewInvite), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn invite(State(s): State<AppState>, Key(c): Key, Body(b): Body<RoleIn>) -> Result<Response, ApiError> {
    let role = Role::parse(&b.role).map_err(engine_err)?;
    let (iid, token) = orgs::create_invite(s.engine(), &c, role).await.map_err(engine_err)?;
    let base = s.config.public_url.clone().unwrap_or_default();
    Ok((
        StatusCode::CREATED,
        Json(NewInvite {
            id: iid.0,
            link: format!("{}/invite/{token}", base.trim_end_matches('/')),
        }),
    )
        .into_response())
}

/// Revokes an open invite (admins).
#[utoipa::path(delete, path = "/invites/{id}", tag = "members", params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn revoke_invite(
    State(s): State<AppState>,
    Key(c): Key,
    Path(iid): Path<String>,
) -> Result<StatusCode, ApiError> {
    orgs::revoke_invite(s.engine(), &c, id(&iid)?)
        .await
        .map_err(engine_err)?;
    Ok(StatusCode::NO_CONTENT)
}
