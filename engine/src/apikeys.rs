//! API keys: a user's bearer credential for the REST API in one organization.
//!
//! A key reads `berth_<prefix>_<secret>`: the prefix finds the row and is what
//! lists show; the whole key is 256 random bits, stored only as its SHA-256
//! (no slow hash is needed for a secret nobody chose). A key acts with the
//! lesser of its own role and its owner's current role in the organization, so
//! demoting or removing a member demotes or ends their keys at once. Instance
//! powers need both the key's `instance` flag and an owner who is still an
//! instance administrator. Keys are counted per minute ([`KEY_LIMIT`]).

use crate::accounts::{Caller, Via};
use crate::error::{Classify, ErrorKind, StoreError};
use crate::ids::{ApiKeyId, OrgId, ProjectId, UserId};
use crate::names::{Role, ValidationError};
use crate::ratelimit::{self, Limit};
use crate::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use diesel::sql_types::{Bool, Bytea, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel::{OptionalExtension, QueryableByName};
use diesel_async::RunQueryDsl;
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Requests one key may make per window; past it, 429 with `Retry-After`.
pub const KEY_LIMIT: Limit = Limit {
    max: 1200,
    window_secs: 60,
};

/// Keys one user may hold (not revoked) in one organization.
const MAX_KEYS: i64 = 100;

/// How often a key's last-used time and address are written at most (one write
/// per request would make every API call a write).
const TOUCH_SECS: i64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("too many requests with this key, retry in {0} s")]
    RateLimited(u64),
    #[error("no such API key")]
    NotFound,
    #[error("you hold {MAX_KEYS} API keys in this organization: revoke one first")]
    TooMany,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<diesel::result::Error> for KeyError {
    fn from(e: diesel::result::Error) -> Self {
        KeyError::Store(e.into())
    }
}

impl Classify for KeyError {
    fn kind(&self) -> ErrorKind {
        match self {
            KeyError::Invalid(v) => v.kind(),
            KeyError::Unauthorized(m) => ErrorKind::Unauthorized((*m).to_owned()),
            KeyError::Forbidden(m) => ErrorKind::Forbidden((*m).to_owned()),
            KeyError::RateLimited(s) => ErrorKind::RateLimited { retry_after_secs: *s },
            KeyError::NotFound => ErrorKind::NotFound,
            KeyError::TooMany => ErrorKind::Conflict {
                field: "name",
                message: self.to_string(),
            },
            KeyError::Store(s) => s.kind(),
        }
    }
}

/// The most a key may do, least first. `Viewer` reads only; the others are the
/// organization roles of the same names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeyRole {
    Viewer,
    Member,
    Admin,
    Owner,
}

impl KeyRole {
    pub const FIELD: &'static str = "role";
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        match raw.trim() {
            "viewer" => Ok(KeyRole::Viewer),
            "member" => Ok(KeyRole::Member),
            "admin" => Ok(KeyRole::Admin),
            "owner" => Ok(KeyRole::Owner),
            _ => Err(ValidationError::new(
                Self::FIELD,
                "must be viewer, member, admin or owner",
            )),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            KeyRole::Viewer => "viewer",
            KeyRole::Member => "member",
            KeyRole::Admin => "admin",
            KeyRole::Owner => "owner",
        }
    }
    fn of(role: Role) -> Self {
        match role {
            Role::Member => KeyRole::Member,
            Role::Admin => KeyRole::Admin,
            Role::Owner => KeyRole::Owner,
        }
    }
}

/// A key's label: 1–64 printable characters.
#[derive(Debug, Clone)]
pub struct KeyName(String);

impl KeyName {
    pub const FIELD: &'static str = "name";
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let s = raw.trim();
        if s.is_empty() || s.chars().count() > 64 {
            return Err(ValidationError::new(Self::FIELD, "must be 1 to 64 characters"));
        }
        if s.chars().any(char::is_control) {
            return Err(ValidationError::new(Self::FIELD, "must not contain control characters"));
        }
        Ok(Self(s.to_owned()))
    }
}

/// Days until a new key expires: 1–3650, or none (never).
#[derive(Debug, Clone, Copy)]
pub struct ExpiryDays(Option<u16>);

impl ExpiryDays {
    pub const FIELD: &'static str = "expires_in_days";
    /// Empty or `never`: no expiry.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let s = raw.trim();
        if s.is_empty() || s == "never" {
            return Ok(Self(None));
        }
        match s.parse::<u16>() {
            Ok(d @ 1..=3650) => Ok(Self(Some(d))),
            _ => Err(ValidationError::new(
                Self::FIELD,
                "must be a number of days from 1 to 3650, or never",
            )),
        }
    }
}

/// What a new key is: its label, role, lifetime and whether it carries the
/// owner's instance powers.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub name: KeyName,
    pub role: KeyRole,
    pub expires: ExpiryDays,
    pub instance: bool,
    /// Limited to these projects (`None`: whatever the owner reaches).
    pub projects: Option<Vec<ProjectId>>,
}

impl NewKey {
    /// The chosen projects of the key form (`projects[i]`); none chosen: no limit.
    pub fn parse_projects(raw: &[String]) -> Result<Option<Vec<ProjectId>>, ValidationError> {
        let mut out: Vec<ProjectId> = Vec::new();
        for r in raw.iter().map(|r| r.trim()).filter(|r| !r.is_empty()) {
            let id = r
                .parse::<Uuid>()
                .map_err(|_| ValidationError::new("projects", "must be project IDs"))?;
            if !out.iter().any(|p| p.0 == id) {
                out.push(ProjectId(id));
            }
        }
        Ok((!out.is_empty()).then_some(out))
    }
}

/// A key as lists show it: never its secret.
#[derive(Debug, Clone)]
pub struct KeySummary {
    pub id: ApiKeyId,
    pub name: String,
    pub prefix: String,
    pub role: String,
    pub instance: bool,
    pub owner: String,
    pub own: bool,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub last_used_ip: Option<String>,
    /// Limited to these projects' names (`None`: no limit).
    pub projects: Option<Vec<String>>,
}

/// A key just made: `key` is shown once and never again.
#[derive(Debug, Clone)]
pub struct CreatedKey {
    pub id: ApiKeyId,
    pub prefix: String,
    pub key: String,
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Compares two digests in time independent of where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Splits a presented key into its prefix, or `None` when it is not shaped
/// like a Berth key (so nothing is looked up for garbage).
fn prefix_of(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("berth_")?;
    let (prefix, secret) = rest.split_once('_')?;
    let ok = prefix.len() == 12
        && prefix.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        && secret.len() == 43
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then_some(prefix)
}

/// Makes a key for the caller in the caller's organization. Only a signed-in
/// session makes keys (a key cannot mint another); the role is at most the
/// caller's own, and `instance` only for an instance administrator.
pub async fn create(engine: &Engine, caller: &Caller, new: NewKey) -> Result<CreatedKey, KeyError> {
    if caller.session().is_none() {
        return Err(KeyError::Forbidden("API keys are made from a signed-in session"));
    }
    if new.role > KeyRole::of(caller.role) {
        return Err(KeyError::Invalid(ValidationError::new(
            KeyRole::FIELD,
            "cannot be more than your own role in this organization",
        )));
    }
    if new.instance && !caller.instance_admin {
        return Err(KeyError::Forbidden(
            "only instance administrators can give a key instance powers",
        ));
    }
    // A key's projects are among those its owner reaches in this organization.
    if let Some(chosen) = &new.projects {
        let reach = crate::access::visible(caller);
        let mut conn = engine.db.get().await.map_err(StoreError::from)?;
        let ids: Vec<Uuid> = chosen.iter().map(|p| p.0).collect();
        let known: i64 = {
            use crate::db::schema::projects;
            use diesel::{ExpressionMethods, QueryDsl};
            projects::table
                .filter(projects::organization_id.eq(caller.org_id.0))
                .filter(projects::id.eq_any(&ids))
                .count()
                .get_result(&mut conn)
                .await?
        };
        let reachable = reach.is_none_or(|r| ids.iter().all(|p| r.contains(p)));
        if known != ids.len() as i64 || !reachable {
            return Err(KeyError::Invalid(ValidationError::new(
                "projects",
                "must be projects of this organization that you reach",
            )));
        }
    }
    let mut raw = [0u8; 6];
    rand::thread_rng().fill_bytes(&mut raw);
    let prefix = hex::encode(raw);
    let mut secret = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut secret);
    let key = format!("berth_{prefix}_{}", URL_SAFE_NO_PAD.encode(secret));
    let id = Uuid::new_v4();
    let expires_at = new.expires.0.map(|d| Utc::now() + chrono::Duration::days(i64::from(d)));
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    // One statement: the cap is checked and the row written together.
    let n = crate::audited!(conn, KeyError, {
        Ok(diesel::sql_query(
        "INSERT INTO api_keys (id, organization_id, user_id, name, prefix, secret_hash, role, instance, expires_at, projects)
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $11
         WHERE (SELECT count(*) FROM api_keys
                WHERE organization_id = $2 AND user_id = $3 AND revoked_at IS NULL) < $10",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<SqlUuid, _>(caller.org_id.0)
    .bind::<SqlUuid, _>(caller.user_id.0)
    .bind::<Text, _>(&new.name.0)
    .bind::<Text, _>(&prefix)
    .bind::<Bytea, _>(digest(&key).to_vec())
    .bind::<Text, _>(new.role.as_str())
    .bind::<Bool, _>(new.instance)
    .bind::<Nullable<Timestamptz>, _>(expires_at)
    .bind::<diesel::sql_types::Int8, _>(MAX_KEYS)
    .bind::<Nullable<diesel::sql_types::Array<SqlUuid>>, _>(
        new.projects.as_ref().map(|ps| ps.iter().map(|p| p.0).collect::<Vec<Uuid>>()),
    )
    .execute(conn)
    .await?)
    })
    .await?;
    if n == 0 {
        return Err(KeyError::TooMany);
    }
    tracing::info!(key.id = %id, key.prefix = %prefix, user.id = %caller.user_id, org.id = %caller.org_id, role = new.role.as_str(), "API key created");
    Ok(CreatedKey {
        id: ApiKeyId(id),
        prefix,
        key,
    })
}

#[derive(QueryableByName)]
struct SummaryRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    prefix: String,
    #[diesel(sql_type = Text)]
    role: String,
    #[diesel(sql_type = Bool)]
    instance: bool,
    #[diesel(sql_type = SqlUuid)]
    user_id: Uuid,
    #[diesel(sql_type = Text)]
    owner: String,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    expires_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    revoked_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    last_used_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Text>)]
    last_used_ip: Option<String>,
    #[diesel(sql_type = Nullable<diesel::sql_types::Array<Text>>)]
    projects: Option<Vec<String>>,
}

/// The organization's keys: all of them for its admins and owners, the
/// caller's own for anyone else. Newest first.
pub async fn list(engine: &Engine, caller: &Caller) -> Result<Vec<KeySummary>, KeyError> {
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let rows: Vec<SummaryRow> = diesel::sql_query(
        "SELECT k.id, k.name, k.prefix, k.role, k.instance, k.user_id, u.name AS owner,
                k.created_at, k.expires_at, k.revoked_at, k.last_used_at, k.last_used_ip,
                CASE WHEN k.projects IS NULL THEN NULL ELSE
                  ARRAY(SELECT p.name FROM projects p WHERE p.id = ANY(k.projects) ORDER BY p.name) END AS projects
         FROM api_keys k JOIN users u ON u.id = k.user_id
         WHERE k.organization_id = $1 AND ($2 OR k.user_id = $3)
         ORDER BY k.created_at DESC, k.id",
    )
    .bind::<SqlUuid, _>(caller.org_id.0)
    .bind::<Bool, _>(caller.role.can_manage())
    .bind::<SqlUuid, _>(caller.user_id.0)
    .load(&mut conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| KeySummary {
            id: ApiKeyId(r.id),
            name: r.name,
            prefix: r.prefix,
            role: r.role,
            instance: r.instance,
            own: r.user_id == caller.user_id.0,
            owner: r.owner,
            created_at: r.created_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
            last_used_at: r.last_used_at,
            last_used_ip: r.last_used_ip,
            projects: r.projects,
        })
        .collect())
}

/// Revokes a key of the organization: the caller's own, or anyone's for its
/// admins and owners. Revoking a revoked key changes nothing.
pub async fn revoke(engine: &Engine, caller: &Caller, id: ApiKeyId) -> Result<(), KeyError> {
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let n = crate::audited!(conn, KeyError, {
        Ok(diesel::sql_query(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now())
         WHERE id = $1 AND organization_id = $2 AND ($3 OR user_id = $4)",
        )
        .bind::<SqlUuid, _>(id.0)
        .bind::<SqlUuid, _>(caller.org_id.0)
        .bind::<Bool, _>(caller.role.can_manage())
        .bind::<SqlUuid, _>(caller.user_id.0)
        .execute(conn)
        .await?)
    })
    .await?;
    if n == 0 {
        return Err(KeyError::NotFound);
    }
    tracing::info!(key.id = %id, by = %caller.user_id, "API key revoked");
    Ok(())
}

#[derive(QueryableByName)]
struct AuthRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    organization_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    user_id: Uuid,
    #[diesel(sql_type = Bytea)]
    secret_hash: Vec<u8>,
    #[diesel(sql_type = Text)]
    role: String,
    #[diesel(sql_type = Bool)]
    instance: bool,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    expires_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    revoked_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    last_used_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Text>)]
    last_used_ip: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    member_role: Option<String>,
    #[diesel(sql_type = Bool)]
    instance_admin: bool,
    #[diesel(sql_type = Bool)]
    member_limited: bool,
    #[diesel(sql_type = Bool)]
    second_factor_missing: bool,
    #[diesel(sql_type = Nullable<diesel::sql_types::Array<SqlUuid>>)]
    projects: Option<Vec<Uuid>>,
}

/// The caller a presented key stands for, counted against [`KEY_LIMIT`].
/// Unknown, revoked and expired keys, and keys whose owner left the
/// organization, are 401 (the message says which of the last three: the
/// presenter holds the key, so nothing is given away).
pub async fn authenticate(engine: &Engine, presented: &str, client: &str) -> Result<Caller, KeyError> {
    const UNKNOWN: &str = "not a valid API key";
    let prefix = prefix_of(presented.trim()).ok_or(KeyError::Unauthorized(UNKNOWN))?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let row: Option<AuthRow> = diesel::sql_query(
        "SELECT k.id, k.organization_id, k.user_id, k.secret_hash, k.role, k.instance, k.expires_at,
                k.revoked_at, k.last_used_at, k.last_used_ip, m.role AS member_role, u.instance_admin,
                coalesce(m.limited, false) AS member_limited,
                (o.require_2fa AND u.totp_secret IS NULL) AS second_factor_missing, k.projects
         FROM api_keys k
         JOIN users u ON u.id = k.user_id
         JOIN organizations o ON o.id = k.organization_id
         LEFT JOIN memberships m ON m.organization_id = k.organization_id AND m.user_id = k.user_id
         WHERE k.prefix = $1",
    )
    .bind::<Text, _>(prefix)
    .get_result(&mut conn)
    .await
    .optional()?;
    let Some(row) = row.filter(|r| same(&r.secret_hash, &digest(presented.trim()))) else {
        return Err(KeyError::Unauthorized(UNKNOWN));
    };
    if row.revoked_at.is_some() {
        return Err(KeyError::Unauthorized("this API key has been revoked"));
    }
    if row.expires_at.is_some_and(|at| at <= Utc::now()) {
        return Err(KeyError::Unauthorized("this API key has expired"));
    }
    let Some(member_role) = row.member_role else {
        return Err(KeyError::Unauthorized(
            "this API key's owner is no longer a member of its organization",
        ));
    };
    // A key stands for its owner: where the organization requires a second
    // factor, an owner without one is held back here as their sessions are.
    if row.second_factor_missing {
        return Err(KeyError::Unauthorized(
            "this organization requires two-factor sign-in and this API key's owner has not set it up",
        ));
    }
    if let Some(secs) = ratelimit::take(&engine.kv, &format!("apikey:{}", row.id), KEY_LIMIT).await? {
        return Err(KeyError::RateLimited(secs));
    }
    let stale = row
        .last_used_at
        .is_none_or(|at| (Utc::now() - at).num_seconds() >= TOUCH_SECS)
        || row.last_used_ip.as_deref() != Some(client);
    if stale {
        diesel::sql_query("UPDATE api_keys SET last_used_at = now(), last_used_ip = $2 WHERE id = $1")
            .bind::<SqlUuid, _>(row.id)
            .bind::<Text, _>(client)
            .execute(&mut conn)
            .await?;
    }
    let member = Role::parse(&member_role).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let key_role = KeyRole::parse(&row.role).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let acting = key_role.min(KeyRole::of(member));
    let role = match acting {
        KeyRole::Viewer | KeyRole::Member => Role::Member,
        KeyRole::Admin => Role::Admin,
        KeyRole::Owner => Role::Owner,
    };
    let projects = crate::accounts::projects_of(
        &mut conn,
        OrgId(row.organization_id),
        UserId(row.user_id),
        member,
        row.member_limited,
    )
    .await?;
    let projects = match &row.projects {
        Some(chosen) => projects.within(chosen),
        None => projects,
    };
    Ok(Caller {
        projects,
        user_id: UserId(row.user_id),
        org_id: OrgId(row.organization_id),
        role,
        instance_admin: row.instance && row.instance_admin,
        via: Via::Key {
            id: ApiKeyId(row.id),
            read_only: acting == KeyRole::Viewer,
        },
        // A key is made from a session that passed the organization's rule.
        needs_second_factor: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_shaped_keys_are_looked_up() {
        let good = format!("berth_0123456789ab_{}", "A".repeat(43));
        assert_eq!(prefix_of(&good), Some("0123456789ab"));
        assert_eq!(prefix_of(&good.replace("berth_", "birth_")), None);
        assert_eq!(prefix_of(&format!("berth_0123456789AB_{}", "A".repeat(43))), None);
        assert_eq!(prefix_of(&format!("berth_0123456789ab_{}", "A".repeat(42))), None);
        assert_eq!(prefix_of(&format!("berth_0123456789ab_{}!", "A".repeat(42))), None);
        assert_eq!(prefix_of(""), None);
    }

    #[test]
    fn names_roles_and_expiry_parse_or_name_their_field() {
        assert_eq!(KeyName::parse(" ").unwrap_err().field, "name");
        assert_eq!(KeyName::parse(&"x".repeat(65)).unwrap_err().field, "name");
        assert!(KeyName::parse("ci deploys").is_ok());
        assert_eq!(KeyRole::parse("root").unwrap_err().field, "role");
        assert!(KeyRole::Viewer < KeyRole::Member && KeyRole::Admin < KeyRole::Owner);
        assert!(ExpiryDays::parse("").unwrap().0.is_none());
        assert_eq!(ExpiryDays::parse("90").unwrap().0, Some(90));
        for bad in ["0", "3651", "-1", "soon"] {
            assert_eq!(ExpiryDays::parse(bad).unwrap_err().field, "expires_in_days");
        }
    }

    #[test]
    fn digests_compare_whole() {
        let a = digest("one");
        assert!(same(&a, &digest("one")));
        assert!(!same(&a, &digest("two")));
        assert!(!same(&a, &a[..31]));
    }
}
