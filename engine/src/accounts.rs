//! Users and their sessions: onboarding of the first owner, login with throttling,
//! logout, resolving a session to a [`Caller`], profile and password changes, and
//! the operator's password reset.

use crate::db::schema::{instance, memberships, organizations, setup_tokens, users};
use crate::error::{Classify, ErrorKind, StoreError};
use crate::ids::{OrgId, UserId};
use crate::names::{Email, OrgName, Password, PersonName, ProjectRole, Role, ValidationError};
use crate::ratelimit::{self, Limit};
use crate::sessions::{self, SessionToken};
use crate::{passwords, Engine};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use sha2::{Digest, Sha256};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("onboarding is closed: an owner already exists")]
    OnboardingClosed,
    #[error("the setup token is missing or wrong (Berth printed it to its log when it started)")]
    BadSetupToken,
    #[error("wrong email or password")]
    InvalidCredentials,
    #[error("not signed in")]
    NotSignedIn,
    #[error("too many attempts, retry in {0} s")]
    RateLimited(u64),
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("no such user")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Hash(#[from] passwords::HashError),
    #[error("this account signs in with a second factor: give its code")]
    CodeRequired,
}

impl From<diesel::result::Error> for AccountError {
    fn from(e: diesel::result::Error) -> Self {
        AccountError::Store(e.into())
    }
}

impl Classify for AccountError {
    fn kind(&self) -> ErrorKind {
        match self {
            AccountError::Invalid(v) => v.kind(),
            AccountError::OnboardingClosed => ErrorKind::Forbidden(self.to_string()),
            AccountError::BadSetupToken => ErrorKind::Validation {
                field: "setup_token",
                message: self.to_string(),
            },
            AccountError::InvalidCredentials | AccountError::NotSignedIn => ErrorKind::Unauthorized(self.to_string()),
            AccountError::RateLimited(s) => ErrorKind::RateLimited { retry_after_secs: *s },
            AccountError::EmailTaken => ErrorKind::Conflict {
                field: Email::FIELD,
                message: self.to_string(),
            },
            AccountError::NotFound => ErrorKind::NotFound,
            AccountError::Store(s) => s.kind(),
            AccountError::Hash(_) => ErrorKind::Internal,
            AccountError::CodeRequired => ErrorKind::Unauthorized(self.to_string()),
        }
    }
}

/// Who is making a request: a signed-in user acting in one organization with a role.
/// Every domain call that touches tenant data takes one, and scopes by `org_id`.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: UserId,
    pub org_id: OrgId,
    pub role: Role,
    /// An instance administrator: the powers over the host itself (bind mounts,
    /// ports beyond loopback, Berth's own database, instance settings).
    pub instance_admin: bool,
    /// How the caller proved who they are.
    pub via: Via,
    /// The organization requires two-factor sign-in and this user has not
    /// set it up: the edges let such a session reach enrolment only.
    pub needs_second_factor: bool,
    /// Which projects the caller reaches, and as what ([`crate::access`]).
    pub projects: Projects,
}

/// The projects a caller reaches: every project of the organization with the
/// organization role's powers, or (a limited member) only the granted ones,
/// each with its own role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Projects {
    #[default]
    All,
    /// A limited member (or their key): the granted projects, each with its role.
    Only(std::sync::Arc<std::collections::BTreeMap<Uuid, ProjectRole>>),
    /// A key limited to chosen projects, of an unlimited owner: those projects
    /// only, with the organization role's powers in them.
    Within(std::sync::Arc<std::collections::BTreeSet<Uuid>>),
}

impl Projects {
    /// What is left of this reach within `chosen` projects (a key's limit).
    pub fn within(self, chosen: &[Uuid]) -> Projects {
        match self {
            Projects::All => Projects::Within(std::sync::Arc::new(chosen.iter().copied().collect())),
            Projects::Only(grants) => Projects::Only(std::sync::Arc::new(
                grants
                    .iter()
                    .filter(|(p, _)| chosen.contains(p))
                    .map(|(p, r)| (*p, *r))
                    .collect(),
            )),
            Projects::Within(set) => Projects::Within(std::sync::Arc::new(
                set.iter().filter(|p| chosen.contains(p)).copied().collect(),
            )),
        }
    }
}

/// The credential behind a [`Caller`].
#[derive(Debug, Clone)]
pub enum Via {
    /// A browser session (the cookie's token).
    Session(SessionToken),
    /// An API key ([`crate::apikeys`]); `read_only` for a viewer key, which the
    /// REST API holds to reading.
    Key { id: crate::ids::ApiKeyId, read_only: bool },
}

impl Caller {
    /// Who this caller is in the audit log: the user, and the key if one.
    pub fn actor(&self) -> crate::audit::Actor {
        crate::audit::Actor::User {
            user: self.user_id,
            key: match &self.via {
                Via::Session(_) => None,
                Via::Key { id, .. } => Some(*id),
            },
        }
    }

    /// What the audit log needs to know of a reader.
    pub fn audit_reader(&self) -> crate::audit::Reader {
        crate::audit::Reader {
            org: self.org_id,
            manages: self.role.can_manage(),
            instance_admin: self.instance_admin,
        }
    }

    /// The session token, for a caller signed in through the browser.
    pub fn session(&self) -> Option<&SessionToken> {
        match &self.via {
            Via::Session(t) => Some(t),
            Via::Key { .. } => None,
        }
    }
}

/// A new user's details, parsed.
#[derive(Debug)]
pub struct NewAccount {
    pub name: PersonName,
    pub email: Email,
    pub password: Password,
}

impl NewAccount {
    pub fn parse(name: &str, email: &str, password: &str) -> Result<Self, ValidationError> {
        Ok(Self {
            name: PersonName::parse(name)?,
            email: Email::parse(email)?,
            password: Password::parse("password", password)?,
        })
    }
}

pub(crate) fn is_unique_violation(e: &diesel::result::Error, constraint: &str) -> bool {
    matches!(e, diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, info)
        if info.constraint_name() == Some(constraint))
}

/// Inserts a user; maps a duplicate email to [`AccountError::EmailTaken`].
pub(crate) async fn insert_user(
    conn: &mut diesel_async::AsyncPgConnection,
    account: &NewAccount,
    password_hash: &str,
) -> Result<UserId, AccountError> {
    diesel::insert_into(users::table)
        .values((
            users::email.eq(account.email.as_str()),
            users::name.eq(account.name.as_str()),
            users::password_hash.eq(password_hash),
        ))
        .returning(users::id)
        .get_result::<Uuid>(conn)
        .await
        .map(UserId)
        .map_err(|e| {
            if is_unique_violation(&e, "users_email_key") {
                AccountError::EmailTaken
            } else {
                e.into()
            }
        })
}

/// True until the first owner has been created.
pub async fn onboarding_open(engine: &Engine) -> Result<bool, AccountError> {
    use std::sync::atomic::{AtomicBool, Ordering};
    if AtomicBool::load(engine.onboarded(), Ordering::Relaxed) {
        return Ok(false);
    }
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let done: bool = diesel::select(diesel::dsl::exists(instance::table.select(instance::singleton)))
        .get_result(&mut conn)
        .await?;
    AtomicBool::store(engine.onboarded(), done, Ordering::Relaxed);
    Ok(!done)
}

/// A new one-time setup token, while onboarding is open: every process that
/// starts before onboarding makes one and prints it to its log, and onboarding
/// needs one of them (so the first stranger to reach a fresh instance cannot
/// claim it). `None` once onboarding is done.
pub async fn setup_token(engine: &Engine) -> Result<Option<String>, AccountError> {
    if !onboarding_open(engine).await? {
        return Ok(None);
    }
    let token = crate::secrets::random_token();
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    diesel::insert_into(setup_tokens::table)
        .values(setup_tokens::token_hash.eq(crate::secrets::token_hash(&token)))
        .execute(&mut conn)
        .await?;
    Ok(Some(token))
}

/// Creates the owner (an instance administrator) and their organization, and
/// signs them in. Closing onboarding is the first write of the transaction: two
/// racing requests cannot both win; the setup tokens go with it.
pub async fn onboard(
    engine: &Engine,
    setup_token: &str,
    account: NewAccount,
    org: OrgName,
) -> Result<(Caller, UserId), AccountError> {
    let token_hash = crate::secrets::token_hash(setup_token.trim());
    let hash = passwords::hash(&account.password).await?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let (user_id, org_id) = conn
        .transaction::<_, AccountError, _>(async |conn| {
            crate::audit::within(conn).await?;
            let known: bool = diesel::select(diesel::dsl::exists(
                setup_tokens::table.filter(setup_tokens::token_hash.eq(&token_hash)),
            ))
            .get_result(conn)
            .await?;
            if !known {
                return Err(
                    if diesel::select(diesel::dsl::exists(instance::table.select(instance::singleton)))
                        .get_result::<bool>(conn)
                        .await?
                    {
                        AccountError::OnboardingClosed
                    } else {
                        AccountError::BadSetupToken
                    },
                );
            }
            let claimed = diesel::insert_into(instance::table)
                .values(instance::singleton.eq(true))
                .on_conflict_do_nothing()
                .execute(conn)
                .await?;
            if claimed == 0 {
                return Err(AccountError::OnboardingClosed);
            }
            let user_id = insert_user(conn, &account, &hash).await?;
            diesel::update(users::table.find(user_id.0))
                .set(users::instance_admin.eq(true))
                .execute(conn)
                .await?;
            let org_id = insert_org(conn, &org, user_id).await?;
            diesel::update(instance::table)
                .set(instance::admin_organization_id.eq(org_id.0))
                .execute(conn)
                .await?;
            diesel::delete(setup_tokens::table).execute(conn).await?;
            Ok((user_id, org_id))
        })
        .await?;
    tracing::info!(user.id = %user_id, org.id = %org_id, "onboarding complete: owner created");
    let token = sessions::create(&engine.kv, engine.policy, user_id, org_id).await?;
    Ok((
        Caller {
            user_id,
            org_id,
            role: Role::Owner,
            instance_admin: true,
            via: Via::Session(token),
            needs_second_factor: false,
            projects: Projects::All,
        },
        user_id,
    ))
}

/// At most this many login attempts per client address (an IPv6 /64) per window.
pub const IP_LIMIT: Limit = Limit {
    max: 30,
    window_secs: 300,
};
/// At most this many attempts on one account from one address per window (a
/// success resets it). A stranger's failures never count against the real user
/// at their own address.
pub const PAIR_LIMIT: Limit = Limit {
    max: 10,
    window_secs: 900,
};
/// Failures on one account from all addresses per window: past this, the
/// account is under attack, and each address that has already failed gets
/// only [`PAIR_LIMIT_UNDER_ATTACK`] attempts. An address with no recent
/// failures is never slowed: the owner's correct password always works.
pub const ACCOUNT_LIMIT: Limit = Limit {
    max: 30,
    window_secs: 3600,
};
pub const PAIR_LIMIT_UNDER_ATTACK: u64 = 3;

/// A password that checked out: whose, the organization to work in (the one
/// joined first; the sidebar switches), and whether a code must follow.
#[derive(Debug, Clone, Copy)]
pub struct Verified {
    pub user: UserId,
    pub org: OrgId,
    pub second_factor: bool,
}

/// Signs in a user without a second factor (tools and tests); one with a
/// second factor is [`AccountError::CodeRequired`]. The dashboard signs in
/// through [`crate::signin`], which also keeps the audit log.
pub async fn login(engine: &Engine, email: &str, password: &str, client: &str) -> Result<Caller, AccountError> {
    let v = check_password(engine, email, password, client).await?;
    if v.second_factor {
        return Err(AccountError::CodeRequired);
    }
    open_session(engine, v.user, v.org).await
}

/// Checks an email and password from the address `client`, throttled per
/// address, per account and per pair.
pub async fn check_password(
    engine: &Engine,
    email: &str,
    password: &str,
    client: &str,
) -> Result<Verified, AccountError> {
    // A malformed email can never match: treat it as wrong credentials, not a
    // validation error, so the form does not reveal which half was wrong.
    let email_key = email.trim().to_ascii_lowercase();
    let client = ratelimit::client_key(client);
    // Hashed, so Redis never holds the email in a key name.
    let account = hex::encode(Sha256::digest(email_key.as_bytes()));
    let ip_key = format!("login:ip:{client}");
    let pair_key = format!("login:pair:{account}:{client}");
    let acct_key = format!("login:account:{account}");
    // Every attempt is counted before it is tried (atomically), so parallel
    // attempts cannot exceed a limit.
    if let Some(retry) = ratelimit::take(&engine.kv, &ip_key, IP_LIMIT).await? {
        return Err(AccountError::RateLimited(retry));
    }
    if let Some(retry) = ratelimit::take(&engine.kv, &pair_key, PAIR_LIMIT).await? {
        return Err(AccountError::RateLimited(retry));
    }
    // Under attack, addresses that have failed before get fewer attempts; one
    // with no recent failures (the owner, elsewhere) is not slowed at all.
    let tried_here = ratelimit::count(&engine.kv, &pair_key).await?;
    if tried_here > PAIR_LIMIT_UNDER_ATTACK && ratelimit::count(&engine.kv, &acct_key).await? >= ACCOUNT_LIMIT.max {
        return Err(AccountError::RateLimited(PAIR_LIMIT.window_secs));
    }

    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let user: Option<(Uuid, String, bool)> = users::table
        .filter(users::email.eq(&email_key))
        .select((users::id, users::password_hash, users::totp_secret.is_not_null()))
        .first(&mut conn)
        .await
        .optional()?;
    let ok = match &user {
        Some((_, hash, _)) => passwords::verify(password, hash).await,
        None => {
            passwords::verify(password, passwords::dummy_hash()).await;
            false
        }
    };
    let Some((user_id, _, second_factor)) = user.filter(|_| ok) else {
        ratelimit::hit(&engine.kv, &acct_key, ACCOUNT_LIMIT).await?;
        return Err(AccountError::InvalidCredentials);
    };
    ratelimit::reset(&engine.kv, &pair_key).await?;
    // Work in the organization joined first; the sidebar switches.
    let org: Option<Uuid> = memberships::table
        .filter(memberships::user_id.eq(user_id))
        .order(memberships::created_at.asc())
        .select(memberships::organization_id)
        .first(&mut conn)
        .await
        .optional()?;
    // A user removed from every organization has nothing to sign in to.
    let org = org.ok_or(AccountError::InvalidCredentials)?;
    Ok(Verified {
        user: UserId(user_id),
        org: OrgId(org),
        second_factor,
    })
}

/// A new session of `user` in `org`, as the caller it makes.
pub async fn open_session(engine: &Engine, user: UserId, org: OrgId) -> Result<Caller, AccountError> {
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let m = membership(&mut conn, org, user)
        .await?
        .ok_or(AccountError::InvalidCredentials)?;
    drop(conn);
    let token = sessions::create(&engine.kv, engine.policy, user, org).await?;
    Ok(m.caller(user, org, Via::Session(token)))
}

/// What a member is in an organization, read once per request.
struct Membership {
    role: Role,
    instance_admin: bool,
    needs_second_factor: bool,
    projects: Projects,
}

impl Membership {
    fn caller(self, user_id: UserId, org_id: OrgId, via: Via) -> Caller {
        Caller {
            user_id,
            org_id,
            role: self.role,
            instance_admin: self.instance_admin,
            via,
            needs_second_factor: self.needs_second_factor,
            projects: self.projects,
        }
    }
}

/// The user's role in the organization, whether they administer the instance,
/// and whether the organization's two-factor rule holds them: `None` when they
/// are not a member.
async fn membership(
    conn: &mut AsyncPgConnection,
    org: OrgId,
    user: UserId,
) -> Result<Option<Membership>, AccountError> {
    let found: Option<(String, bool, bool, bool, bool)> = memberships::table
        .inner_join(users::table)
        .inner_join(organizations::table)
        .filter(memberships::organization_id.eq(org.0))
        .filter(memberships::user_id.eq(user.0))
        .select((
            memberships::role,
            users::instance_admin,
            organizations::require_2fa,
            users::totp_secret.is_not_null(),
            memberships::limited,
        ))
        .first(conn)
        .await
        .optional()?;
    let Some((role, instance_admin, required, enabled, limited)) = found else {
        return Ok(None);
    };
    let role = Role::parse(&role).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(Some(Membership {
        role,
        instance_admin,
        needs_second_factor: required && !enabled,
        projects: projects_of(conn, org, user, role, limited).await?,
    }))
}

/// What a member reaches: all projects, unless a plain member is limited to
/// granted ones (a second query, only then: unlimited callers pay nothing).
pub(crate) async fn projects_of(
    conn: &mut AsyncPgConnection,
    org: OrgId,
    user: UserId,
    role: Role,
    limited: bool,
) -> Result<Projects, StoreError> {
    if !limited || role.can_manage() {
        return Ok(Projects::All);
    }
    use crate::db::schema::project_grants;
    let rows: Vec<(Uuid, String)> = project_grants::table
        .filter(project_grants::organization_id.eq(org.0))
        .filter(project_grants::user_id.eq(user.0))
        .select((project_grants::project_id, project_grants::role))
        .load(conn)
        .await?;
    let grants = rows
        .into_iter()
        .map(|(p, r)| {
            Ok((
                p,
                ProjectRole::parse(&r).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            ))
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(Projects::Only(std::sync::Arc::new(grants)))
}

pub async fn logout(engine: &Engine, token: &SessionToken) -> Result<(), AccountError> {
    Ok(sessions::revoke(&engine.kv, token).await?)
}

/// Resolves a session cookie to a caller. Membership is read from PostgreSQL on
/// every request, so removing a member takes effect at once.
pub async fn authenticate(engine: &Engine, token: SessionToken) -> Result<Caller, AccountError> {
    let session = sessions::get(&engine.kv, engine.policy, &token)
        .await?
        .ok_or(AccountError::NotSignedIn)?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let m = membership(&mut conn, session.org_id, session.user_id)
        .await?
        .ok_or(AccountError::NotSignedIn)?;
    Ok(m.caller(session.user_id, session.org_id, Via::Session(token)))
}

/// The signed-in user's own details.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    pub email: String,
}

pub async fn profile(engine: &Engine, caller: &Caller) -> Result<Profile, AccountError> {
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let (name, email): (String, String) = users::table
        .find(caller.user_id.0)
        .select((users::name, users::email))
        .first(&mut conn)
        .await?;
    Ok(Profile { name, email })
}

pub async fn update_name(engine: &Engine, caller: &Caller, name: PersonName) -> Result<(), AccountError> {
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    crate::audited!(conn, AccountError, {
        Ok(diesel::update(users::table.find(caller.user_id.0))
            .set((users::name.eq(name.as_str()), users::updated_at.eq(diesel::dsl::now)))
            .execute(conn)
            .await?)
    })
    .await?;
    Ok(())
}

/// Changes the password after checking the current one, and signs out every
/// other session of the user.
pub async fn change_password(
    engine: &Engine,
    caller: &Caller,
    current: &str,
    new: Password,
) -> Result<(), AccountError> {
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let hash: String = users::table
        .find(caller.user_id.0)
        .select(users::password_hash)
        .first(&mut conn)
        .await?;
    if !passwords::verify(current, &hash).await {
        return Err(ValidationError::new("current_password", "is not your current password").into());
    }
    let new_hash = passwords::hash(&new).await?;
    crate::audited!(conn, AccountError, {
        Ok(diesel::update(users::table.find(caller.user_id.0))
            .set((
                users::password_hash.eq(new_hash),
                users::updated_at.eq(diesel::dsl::now),
            ))
            .execute(conn)
            .await?)
    })
    .await?;
    sessions::revoke_all(&engine.kv, caller.user_id, caller.session()).await?;
    tracing::info!(user.id = %caller.user_id, "password changed; other sessions revoked");
    Ok(())
}

/// The operator's reset (`berth admin reset-password`): sets a new random password,
/// revokes every session, and returns the password to show once.
pub async fn reset_password(engine: &Engine, email: &Email) -> Result<String, AccountError> {
    let new = crate::secrets::generate_key_string()[..24].to_owned();
    let hash = passwords::hash(&Password::parse("password", &new)?).await?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let user: Option<Uuid> = diesel::update(users::table.filter(users::email.eq(email.as_str())))
        .set((users::password_hash.eq(hash), users::updated_at.eq(diesel::dsl::now)))
        .returning(users::id)
        .get_result(&mut conn)
        .await
        .optional()?;
    let user = UserId(user.ok_or(AccountError::NotFound)?);
    sessions::revoke_all(&engine.kv, user, None).await?;
    Ok(new)
}

/// Creates an organization with `owner` as its owner (inside the caller's
/// transaction). An organization is born with its owner: onboarding makes the
/// first one here, and `orgs::create` every later one.
pub(crate) async fn insert_org(
    conn: &mut AsyncPgConnection,
    name: &OrgName,
    owner: UserId,
) -> Result<OrgId, diesel::result::Error> {
    let org: Uuid = diesel::insert_into(organizations::table)
        .values(organizations::name.eq(name.as_str()))
        .returning(organizations::id)
        .get_result(conn)
        .await?;
    diesel::insert_into(memberships::table)
        .values((
            memberships::organization_id.eq(org),
            memberships::user_id.eq(owner.0),
            memberships::role.eq(Role::Owner.as_str()),
        ))
        .execute(conn)
        .await?;
    Ok(OrgId(org))
}
