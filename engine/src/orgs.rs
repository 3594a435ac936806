//! Organizations, their members and roles, switching between them, and one-time
//! invite links. Only admins and owners manage members; only owners make or
//! unmake owners; an organization never loses its last owner.

use crate::accounts::{self, insert_org, AccountError, Caller, NewAccount, Via};
use crate::db::schema::{invites, memberships, organizations, project_grants, projects, users};
use crate::error::{Classify, ErrorKind, StoreError};
use crate::ids::{InviteId, OrgId, ProjectId, UserId};
use crate::names::{OrgName, ProjectRole, Role, ValidationError};
use crate::sessions::{self, SessionToken};
use crate::{passwords, Engine};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use rand::RngCore;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum OrgError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("this invite link is invalid, used or expired")]
    InviteInvalid,
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<diesel::result::Error> for OrgError {
    fn from(e: diesel::result::Error) -> Self {
        OrgError::Store(e.into())
    }
}

impl Classify for OrgError {
    fn kind(&self) -> ErrorKind {
        match self {
            OrgError::Invalid(v) => v.kind(),
            OrgError::NotFound | OrgError::InviteInvalid => ErrorKind::NotFound,
            OrgError::Forbidden(m) => ErrorKind::Forbidden((*m).to_owned()),
            OrgError::Account(a) => a.kind(),
            OrgError::Store(s) => s.kind(),
        }
    }
}

/// How long an invite link stays valid.
pub const INVITE_TTL_DAYS: i64 = 7;

fn require_manager(caller: &Caller) -> Result<(), OrgError> {
    if !caller.role.can_manage() {
        return Err(OrgError::Forbidden("only admins and owners can manage members"));
    }
    // A manager's key limited to projects does nothing organization-wide.
    crate::access::organization_wide(caller, "")
        .map_err(|_| OrgError::Forbidden("a key limited to projects cannot manage members"))
}

#[derive(Debug, Clone)]
pub struct OrgSummary {
    pub id: OrgId,
    pub name: String,
    pub role: Role,
}

fn role_of(raw: &str) -> Result<Role, StoreError> {
    Role::parse(raw).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The organizations the caller belongs to.
pub async fn list_mine(engine: &Engine, caller: &Caller) -> Result<Vec<OrgSummary>, OrgError> {
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let rows: Vec<(Uuid, String, String)> = memberships::table
        .inner_join(organizations::table)
        .filter(memberships::user_id.eq(caller.user_id.0))
        .order(organizations::name.asc())
        .select((organizations::id, organizations::name, memberships::role))
        .load(&mut conn)
        .await?;
    rows.into_iter()
        .map(|(id, name, role)| {
            Ok(OrgSummary {
                id: OrgId(id),
                name,
                role: role_of(&role)?,
            })
        })
        .collect()
}

/// Creates a new organization owned by the caller and switches the session to it.
/// Creates an organization owned by the caller, when the instance lets them
/// (its administrators always; anyone signed in when the setting says so).
pub async fn create(engine: &Engine, caller: &Caller, name: OrgName) -> Result<OrgId, OrgError> {
    let allowed = crate::instance::may_create_org(engine, caller)
        .await
        .map_err(|e| match e {
            crate::instance::InstanceError::Store(s) => OrgError::Store(s),
            other => OrgError::Store(StoreError::Corrupt(other.to_string())),
        })?;
    if !allowed {
        return Err(OrgError::Forbidden(
            "only instance administrators can create organizations on this instance",
        ));
    }
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let user = caller.user_id;
    let org = conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            crate::audit::within(conn).await?;
            insert_org(conn, &name, user).await
        })
        .await?;
    // A browser session moves to the new organization; an API key stays in its own.
    if let Some(token) = caller.session() {
        sessions::switch_org(&engine.kv, engine.policy, token, org).await?;
    }
    Ok(org)
}

/// Makes `org` the session's organization; a foreign organization is not found.
pub async fn switch(engine: &Engine, caller: &Caller, org: OrgId) -> Result<(), OrgError> {
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let member: bool = diesel::select(diesel::dsl::exists(memberships::table.find((org.0, caller.user_id.0))))
        .get_result(&mut conn)
        .await?;
    if !member {
        return Err(OrgError::NotFound);
    }
    let Some(token) = caller.session() else {
        return Err(OrgError::Forbidden("an API key works in its own organization only"));
    };
    sessions::switch_org(&engine.kv, engine.policy, token, org).await?;
    Ok(())
}

#[derive(Debug, Clone)]
pub struct Member {
    pub user_id: UserId,
    pub name: String,
    pub email: String,
    pub role: Role,
    /// Every project, or (a member limited to projects) the granted ones.
    pub access: Access,
}

/// Where a member reaches: every project with their organization role, or
/// (`limited`, plain members only) the projects of `grants`, each with its role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    pub limited: bool,
    pub grants: Vec<(ProjectId, ProjectRole)>,
}

impl Access {
    /// The member form's choice: `limited`, and per project (`projects[i]`)
    /// a role or `none` (`roles[i]`).
    pub fn parse(limited: bool, projects: &[String], roles: &[String]) -> Result<Self, ValidationError> {
        if projects.len() != roles.len() {
            return Err(ValidationError::new("roles", "give one role (or none) per project"));
        }
        let mut grants = Vec::new();
        for (p, r) in projects.iter().zip(roles) {
            if r.trim() == "none" || r.trim().is_empty() {
                continue;
            }
            let project = p
                .trim()
                .parse::<Uuid>()
                .map_err(|_| ValidationError::new("projects", "must be project IDs"))?;
            let role = ProjectRole::parse_as("roles", r)?;
            if grants.iter().any(|(q, _): &(ProjectId, ProjectRole)| q.0 == project) {
                return Err(ValidationError::new("projects", "each project at most once"));
            }
            grants.push((ProjectId(project), role));
        }
        if !limited && !grants.is_empty() {
            return Err(ValidationError::new(
                "limited",
                "roles per project apply to a member limited to chosen projects",
            ));
        }
        Ok(Self { limited, grants })
    }
}

/// The organization's members, each with their access. A caller limited to
/// projects (a member, or a key) sees their own row only: the others' names,
/// addresses and grants are the organization's, not their projects'.
pub async fn members(engine: &Engine, caller: &Caller) -> Result<Vec<Member>, OrgError> {
    let only_self = crate::access::visible(caller).is_some();
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let rows: Vec<(Uuid, String, String, String, bool)> = memberships::table
        .inner_join(users::table)
        .filter(memberships::organization_id.eq(caller.org_id.0))
        .order(users::name.asc())
        .select((
            users::id,
            users::name,
            users::email,
            memberships::role,
            memberships::limited,
        ))
        .load(&mut conn)
        .await?;
    let grants: Vec<(Uuid, Uuid, String)> = project_grants::table
        .filter(project_grants::organization_id.eq(caller.org_id.0))
        .order(project_grants::created_at.asc())
        .select((
            project_grants::user_id,
            project_grants::project_id,
            project_grants::role,
        ))
        .load(&mut conn)
        .await?;
    rows.into_iter()
        .filter(|(id, ..)| !only_self || *id == caller.user_id.0)
        .map(|(id, name, email, role, limited)| {
            let role = role_of(&role)?;
            let limited = limited && !role.can_manage();
            let grants = grants
                .iter()
                .filter(|(u, _, _)| limited && *u == id)
                .map(|(_, p, r)| {
                    Ok((
                        ProjectId(*p),
                        ProjectRole::parse(r).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    ))
                })
                .collect::<Result<_, StoreError>>()?;
            Ok(Member {
                user_id: UserId(id),
                name,
                email,
                role,
                access: Access { limited, grants },
            })
        })
        .collect()
}

/// Replaces a member's limit and grants (inside the caller's transaction).
async fn write_access(conn: &mut AsyncPgConnection, org: OrgId, user: UserId, access: &Access) -> Result<(), OrgError> {
    diesel::update(memberships::table.find((org.0, user.0)))
        .set(memberships::limited.eq(access.limited))
        .execute(conn)
        .await?;
    diesel::delete(
        project_grants::table
            .filter(project_grants::organization_id.eq(org.0))
            .filter(project_grants::user_id.eq(user.0)),
    )
    .execute(conn)
    .await?;
    let rows: Vec<_> = access
        .grants
        .iter()
        .map(|(p, r)| {
            (
                project_grants::organization_id.eq(org.0),
                project_grants::user_id.eq(user.0),
                project_grants::project_id.eq(p.0),
                project_grants::role.eq(r.as_str()),
            )
        })
        .collect();
    diesel::insert_into(project_grants::table)
        .values(&rows)
        .execute(conn)
        .await?;
    Ok(())
}

/// Limits a plain member to chosen projects with a role in each, or gives
/// them every project again. Admins and owners manage it; owners and admins
/// themselves always reach every project. The grants are replaced whole, in
/// one transaction with the membership's flag.
pub async fn set_access(engine: &Engine, caller: &Caller, target: UserId, access: Access) -> Result<(), OrgError> {
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let org = caller.org_id;
    conn.transaction::<_, OrgError, _>(async |conn| {
        crate::audit::within(conn).await?;
        let current = member_role_for_update(conn, org, target).await?;
        require_manager(caller)?;
        if access.limited && current.can_manage() {
            return Err(OrgError::Forbidden(
                "owners and admins reach every project: make them a member to limit them",
            ));
        }
        let ids: Vec<Uuid> = access.grants.iter().map(|(p, _)| p.0).collect();
        let known: i64 = projects::table
            .filter(projects::organization_id.eq(org.0))
            .filter(projects::id.eq_any(&ids))
            .count()
            .get_result(conn)
            .await?;
        if known != ids.len() as i64 {
            return Err(OrgError::NotFound);
        }
        write_access(conn, org, target, &access).await
    })
    .await?;
    tracing::info!(org.id = %org, user.id = %target, limited = access.limited, projects = access.grants.len(), "member's project access set");
    Ok(())
}

/// The target member's role in the caller's organization, locked for the
/// transaction; not found when they are not a member of it.
async fn member_role_for_update(conn: &mut AsyncPgConnection, org: OrgId, user: UserId) -> Result<Role, OrgError> {
    let role: Option<String> = memberships::table
        .find((org.0, user.0))
        .select(memberships::role)
        .for_update()
        .first(conn)
        .await
        .optional()?;
    Ok(role_of(&role.ok_or(OrgError::NotFound)?)?)
}

async fn owner_count(conn: &mut AsyncPgConnection, org: OrgId) -> Result<i64, OrgError> {
    // Lock the owners' rows so two demotions cannot both see "another owner left".
    let owners: Vec<Uuid> = memberships::table
        .filter(memberships::organization_id.eq(org.0))
        .filter(memberships::role.eq(Role::Owner.as_str()))
        .select(memberships::user_id)
        .for_update()
        .load(conn)
        .await?;
    Ok(owners.len() as i64)
}

/// Checks that the caller may move `target` from `current` to `next` (None = remove).
fn check_role_change(caller: &Caller, current: Role, next: Option<Role>) -> Result<(), OrgError> {
    require_manager(caller)?;
    let touches_owner = current == Role::Owner || next == Some(Role::Owner);
    if touches_owner && caller.role != Role::Owner {
        return Err(OrgError::Forbidden("only owners can make, change or remove owners"));
    }
    Ok(())
}

pub async fn change_role(engine: &Engine, caller: &Caller, target: UserId, role: Role) -> Result<(), OrgError> {
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let org = caller.org_id;
    conn.transaction::<_, OrgError, _>(async |conn| {
        crate::audit::within(conn).await?;
        let current = member_role_for_update(conn, org, target).await?;
        check_role_change(caller, current, Some(role))?;
        if current == Role::Owner && role != Role::Owner && owner_count(conn, org).await? <= 1 {
            return Err(OrgError::Forbidden("an organization needs at least one owner"));
        }
        diesel::update(memberships::table.find((org.0, target.0)))
            .set(memberships::role.eq(role.as_str()))
            .execute(conn)
            .await?;
        // Admins and owners reach every project: a promotion ends any limit
        // (a later demotion does not bring old grants back).
        if role.can_manage() {
            write_access(conn, org, target, &Access::default()).await?;
        }
        Ok(())
    })
    .await
}

pub async fn remove_member(engine: &Engine, caller: &Caller, target: UserId) -> Result<(), OrgError> {
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let org = caller.org_id;
    conn.transaction::<_, OrgError, _>(async |conn| {
        crate::audit::within(conn).await?;
        let current = member_role_for_update(conn, org, target).await?;
        check_role_change(caller, current, None)?;
        if current == Role::Owner && owner_count(conn, org).await? <= 1 {
            return Err(OrgError::Forbidden("an organization needs at least one owner"));
        }
        diesel::delete(memberships::table.find((org.0, target.0)))
            .execute(conn)
            .await?;
        Ok(())
    })
    .await
}

/// A pending invite, as listed to admins.
#[derive(Debug, Clone)]
pub struct Invite {
    pub id: InviteId,
    pub role: Role,
    pub expires_at: DateTime<Utc>,
    pub created_by: String,
}

/// Creates a one-time invite and returns its secret token, which is shown once.
pub async fn create_invite(engine: &Engine, caller: &Caller, role: Role) -> Result<(InviteId, String), OrgError> {
    require_manager(caller)?;
    if role == Role::Owner {
        return Err(ValidationError::new(Role::FIELD, "invites are for admins or members").into());
    }
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let id: Uuid = crate::audited!(conn, OrgError, {
        Ok(diesel::insert_into(invites::table)
            .values((
                invites::organization_id.eq(caller.org_id.0),
                invites::token_hash.eq(crate::secrets::token_hash(&token)),
                invites::role.eq(role.as_str()),
                invites::created_by.eq(caller.user_id.0),
                invites::expires_at.eq(Utc::now() + Duration::days(INVITE_TTL_DAYS)),
            ))
            .returning(invites::id)
            .get_result(conn)
            .await?)
    })
    .await?;
    Ok((InviteId(id), token))
}

pub async fn list_invites(engine: &Engine, caller: &Caller) -> Result<Vec<Invite>, OrgError> {
    require_manager(caller)?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let rows: Vec<(Uuid, String, DateTime<Utc>, String)> = invites::table
        .inner_join(users::table.on(users::id.eq(invites::created_by)))
        .filter(invites::organization_id.eq(caller.org_id.0))
        .filter(invites::accepted_at.is_null())
        .filter(invites::expires_at.gt(diesel::dsl::now))
        .order(invites::created_at.desc())
        .select((invites::id, invites::role, invites::expires_at, users::name))
        .load(&mut conn)
        .await?;
    rows.into_iter()
        .map(|(id, role, expires_at, created_by)| {
            Ok(Invite {
                id: InviteId(id),
                role: role_of(&role)?,
                expires_at,
                created_by,
            })
        })
        .collect()
}

pub async fn revoke_invite(engine: &Engine, caller: &Caller, id: InviteId) -> Result<(), OrgError> {
    require_manager(caller)?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let n = crate::audited!(conn, OrgError, {
        Ok(diesel::delete(
            invites::table
                .filter(invites::id.eq(id.0))
                .filter(invites::organization_id.eq(caller.org_id.0))
                .filter(invites::accepted_at.is_null()),
        )
        .execute(conn)
        .await?)
    })
    .await?;
    if n == 0 {
        return Err(OrgError::NotFound);
    }
    Ok(())
}

/// What an invite link offers, shown before accepting.
#[derive(Debug, Clone)]
pub struct InvitePreview {
    pub org_name: String,
    pub role: Role,
}

pub async fn preview_invite(engine: &Engine, token: &str) -> Result<InvitePreview, OrgError> {
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let row: Option<(String, String)> = invites::table
        .inner_join(organizations::table)
        .filter(invites::token_hash.eq(crate::secrets::token_hash(token)))
        .filter(invites::accepted_at.is_null())
        .filter(invites::expires_at.gt(diesel::dsl::now))
        .select((organizations::name, invites::role))
        .first(&mut conn)
        .await
        .optional()?;
    let (org_name, role) = row.ok_or(OrgError::InviteInvalid)?;
    Ok(InvitePreview {
        org_name,
        role: role_of(&role)?,
    })
}

/// Who accepts an invite: a signed-in user, or a new account made on the spot.
pub enum Acceptor<'a> {
    Existing(&'a Caller),
    New(NewAccount),
}

/// Accepts an invite exactly once (the row is locked and marked in one
/// transaction), and returns a session working in the invited organization.
pub async fn accept_invite(engine: &Engine, token: &str, who: Acceptor<'_>) -> Result<SessionToken, OrgError> {
    let hash = crate::secrets::token_hash(token);
    let new_hash = match &who {
        Acceptor::New(account) => Some(passwords::hash(&account.password).await.map_err(AccountError::from)?),
        Acceptor::Existing(_) => None,
    };
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let who_ref = &who;
    let (user, org) = conn
        .transaction::<_, OrgError, _>(async |conn| {
            crate::audit::within(conn).await?;
            let invite: Option<(Uuid, Uuid, String)> = invites::table
                .filter(invites::token_hash.eq(&hash))
                .filter(invites::accepted_at.is_null())
                .filter(invites::expires_at.gt(diesel::dsl::now))
                .select((invites::id, invites::organization_id, invites::role))
                .for_update()
                .first(conn)
                .await
                .optional()?;
            let (invite_id, org, role) = invite.ok_or(OrgError::InviteInvalid)?;
            let user = match who_ref {
                Acceptor::Existing(caller) => caller.user_id,
                Acceptor::New(account) => {
                    accounts::insert_user(conn, account, new_hash.as_deref().unwrap_or_default()).await?
                }
            };
            diesel::insert_into(memberships::table)
                .values((
                    memberships::organization_id.eq(org),
                    memberships::user_id.eq(user.0),
                    memberships::role.eq(&role),
                ))
                .on_conflict_do_nothing()
                .execute(conn)
                .await?;
            diesel::update(invites::table.find(invite_id))
                .set((
                    invites::accepted_by.eq(user.0),
                    invites::accepted_at.eq(diesel::dsl::now),
                ))
                .execute(conn)
                .await?;
            Ok((user, OrgId(org)))
        })
        .await?;
    let token = match who {
        Acceptor::Existing(Caller {
            via: Via::Session(token),
            ..
        }) => {
            sessions::switch_org(&engine.kv, engine.policy, token, org).await?;
            token.clone()
        }
        // A new account, or (never through the UI) a key's caller: a fresh session.
        Acceptor::Existing(_) | Acceptor::New(_) => sessions::create(&engine.kv, engine.policy, user, org).await?,
    };
    Ok(token)
}
