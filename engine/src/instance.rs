//! The instance itself: its administrators (who hold the powers over the host:
//! bind mounts, ports beyond loopback, Berth's own database, these settings)
//! and the settings they change from the UI. Host-level policy an operator sets
//! in the environment (mountable host paths, private targets, local images) is
//! in [`crate::config::HostPolicy`].

use crate::accounts::Caller;
use crate::db::schema::{instance_settings, users};
use crate::error::{Classify, ErrorKind, StoreError};
use crate::ids::UserId;
use crate::Engine;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    /// Not an instance administrator: these powers do not exist for the caller.
    #[error("only instance administrators can do this")]
    Forbidden,
    #[error("not found")]
    NotFound,
    #[error("an instance needs at least one administrator")]
    LastAdmin,
    #[error(transparent)]
    Invalid(#[from] crate::names::ValidationError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<diesel::result::Error> for InstanceError {
    fn from(e: diesel::result::Error) -> Self {
        InstanceError::Store(e.into())
    }
}

impl Classify for InstanceError {
    fn kind(&self) -> ErrorKind {
        match self {
            InstanceError::Forbidden => ErrorKind::Forbidden(self.to_string()),
            InstanceError::NotFound => ErrorKind::NotFound,
            InstanceError::LastAdmin => ErrorKind::Conflict {
                field: "instance_admin",
                message: self.to_string(),
            },
            InstanceError::Invalid(v) => v.kind(),
            InstanceError::Store(e) => e.kind(),
        }
    }
}

/// Who may create organizations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrgCreation {
    /// Instance administrators only (the default).
    Admins,
    /// Anyone signed in.
    Anyone,
}

impl OrgCreation {
    pub fn as_str(self) -> &'static str {
        match self {
            OrgCreation::Admins => "admins",
            OrgCreation::Anyone => "anyone",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, crate::names::ValidationError> {
        match raw.trim() {
            "admins" => Ok(OrgCreation::Admins),
            "anyone" => Ok(OrgCreation::Anyone),
            _ => Err(crate::names::ValidationError::new(
                "org_creation",
                "must be admins or anyone",
            )),
        }
    }
}

/// The settings instance administrators change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub org_creation: OrgCreation,
}

/// Refuses anyone but an instance administrator.
pub fn require_admin(caller: &Caller) -> Result<(), InstanceError> {
    if caller.instance_admin {
        Ok(())
    } else {
        Err(InstanceError::Forbidden)
    }
}

pub async fn settings(engine: &Engine) -> Result<Settings, InstanceError> {
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let raw: Option<String> = instance_settings::table
        .select(instance_settings::org_creation)
        .first(&mut conn)
        .await
        .optional()?;
    Ok(Settings {
        org_creation: raw
            .map(|r| OrgCreation::parse(&r).map_err(|e| StoreError::Corrupt(e.message)))
            .transpose()?
            .unwrap_or(OrgCreation::Admins),
    })
}

pub async fn update_settings(engine: &Engine, caller: &Caller, s: Settings) -> Result<(), InstanceError> {
    require_admin(caller)?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    crate::audited!(conn, InstanceError, {
        Ok(diesel::insert_into(instance_settings::table)
            .values((
                instance_settings::singleton.eq(true),
                instance_settings::org_creation.eq(s.org_creation.as_str()),
            ))
            .on_conflict(instance_settings::singleton)
            .do_update()
            .set((
                instance_settings::org_creation.eq(s.org_creation.as_str()),
                instance_settings::updated_at.eq(diesel::dsl::now),
            ))
            .execute(conn)
            .await?)
    })
    .await?;
    tracing::info!(user.id = %caller.user_id, org_creation = s.org_creation.as_str(), "instance settings changed");
    Ok(())
}

/// May the caller create an organization?
pub async fn may_create_org(engine: &Engine, caller: &Caller) -> Result<bool, InstanceError> {
    Ok(caller.instance_admin || settings(engine).await?.org_creation == OrgCreation::Anyone)
}

/// A user as the administrators' list shows it.
#[derive(Debug, Clone)]
pub struct User {
    pub id: UserId,
    pub name: String,
    pub email: String,
    pub instance_admin: bool,
}

/// Every user of the instance (administrators only).
pub async fn users(engine: &Engine, caller: &Caller) -> Result<Vec<User>, InstanceError> {
    require_admin(caller)?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let rows: Vec<(uuid::Uuid, String, String, bool)> = users::table
        .order(users::created_at.asc())
        .select((users::id, users::name, users::email, users::instance_admin))
        .load(&mut conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, name, email, instance_admin)| User {
            id: UserId(id),
            name,
            email,
            instance_admin,
        })
        .collect())
}

/// Makes a user an instance administrator, or no longer one. The last one
/// cannot step down: an instance always has an administrator.
pub async fn set_admin(engine: &Engine, caller: &Caller, user: UserId, admin: bool) -> Result<(), InstanceError> {
    require_admin(caller)?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    conn.transaction::<_, InstanceError, _>(async |conn| {
        crate::audit::within(conn).await?;
        // Serialise concurrent demotions on the administrators' rows.
        let admins: Vec<uuid::Uuid> = users::table
            .filter(users::instance_admin.eq(true))
            .select(users::id)
            .for_update()
            .load(conn)
            .await?;
        if !admin && admins.len() <= 1 && admins.contains(&user.0) {
            return Err(InstanceError::LastAdmin);
        }
        let n = diesel::update(users::table.find(user.0))
            .set(users::instance_admin.eq(admin))
            .execute(conn)
            .await?;
        if n == 0 {
            return Err(InstanceError::NotFound);
        }
        Ok(())
    })
    .await?;
    tracing::info!(by = %caller.user_id, user.id = %user, admin, "instance administrator changed");
    Ok(())
}
