//! Two-factor sign-in: TOTP (RFC 6238: HMAC-SHA1, 30 s steps, 6 digits, one
//! step of clock drift either way) with ten one-time recovery codes.
//!
//! Enrolment makes a secret and keeps it sealed as *pending* until a code from
//! it confirms it; then it is the user's, and the recovery codes are shown
//! once (stored as SHA-256: they are random, not chosen). A time step is used
//! at most once (`totp_last_step`), so a code seen over a shoulder cannot be
//! replayed. Sign-in with a second factor goes through a short-lived challenge
//! in Redis ([`challenge`], [`finish`]), throttled per account like passwords.
//! An organization can require it of its members: their sessions then reach
//! nothing but enrolment (`Caller::needs_second_factor`).

use crate::accounts::{Caller, Via};
use crate::db::schema::{organizations, recovery_codes, users};
use crate::error::{Classify, ErrorKind, StoreError};
use crate::ids::{OrgId, UserId};
use crate::names::ValidationError;
use crate::ratelimit::{self, Limit};
use crate::secrets::Slot;
use crate::Engine;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Wrong codes allowed per account per window at the code step.
const CODE_LIMIT: Limit = Limit {
    max: 5,
    window_secs: 300,
};
/// How long a password-verified sign-in waits for its code.
const CHALLENGE_SECS: u64 = 300;
const STEP_SECS: u64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum TwoFactorError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("two-factor sign-in is already on")]
    AlreadyOn,
    #[error("start the set-up again: nothing is waiting for a code")]
    NothingPending,
    #[error("two-factor sign-in is not on")]
    NotOn,
    #[error("the sign-in expired: enter your password again")]
    ChallengeGone,
    #[error("too many wrong codes, retry in {0} s")]
    RateLimited(u64),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("no such user")]
    NotFound,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<diesel::result::Error> for TwoFactorError {
    fn from(e: diesel::result::Error) -> Self {
        TwoFactorError::Store(e.into())
    }
}

impl Classify for TwoFactorError {
    fn kind(&self) -> ErrorKind {
        match self {
            TwoFactorError::Invalid(v) => v.kind(),
            TwoFactorError::AlreadyOn | TwoFactorError::NothingPending | TwoFactorError::NotOn => ErrorKind::Conflict {
                field: "code",
                message: self.to_string(),
            },
            TwoFactorError::ChallengeGone => ErrorKind::Unauthorized(self.to_string()),
            TwoFactorError::RateLimited(s) => ErrorKind::RateLimited { retry_after_secs: *s },
            TwoFactorError::Forbidden(m) => ErrorKind::Forbidden((*m).to_owned()),
            TwoFactorError::NotFound => ErrorKind::NotFound,
            TwoFactorError::Corrupt(_) => ErrorKind::Internal,
            TwoFactorError::Store(s) => s.kind(),
        }
    }
}

fn wrong_code() -> TwoFactorError {
    ValidationError::new("code", "that code is not right (or was already used)").into()
}

/// The 6-digit code of `secret` at time step `step`.
pub fn code_at(secret: &[u8], step: u64) -> u32 {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(&step.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let offset = (h[19] & 0x0f) as usize;
    let bin = u32::from_be_bytes([h[offset] & 0x7f, h[offset + 1], h[offset + 2], h[offset + 3]]);
    bin % 1_000_000
}

/// The time step now.
pub fn step_now() -> u64 {
    (chrono::Utc::now().timestamp().max(0) as u64) / STEP_SECS
}

const B32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 base32 without padding (what authenticator apps read).
pub fn base32(bytes: &[u8]) -> String {
    let mut out = String::new();
    let (mut buf, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buf = (buf << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            out.push(B32[((buf >> (bits - 5)) & 31) as usize] as char);
            bits -= 5;
        }
    }
    if bits > 0 {
        out.push(B32[((buf << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// The inverse of [`base32`] (case and spaces ignored), for tests and tools.
pub fn from_base32(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u32, 0u32);
    for c in text.chars().filter(|c| !c.is_whitespace()) {
        let v = B32.iter().position(|&x| x as char == c.to_ascii_uppercase())? as u32;
        buf = (buf << 5) | v;
        bits += 5;
        if bits >= 8 {
            out.push((buf >> (bits - 8)) as u8);
            bits -= 8;
        }
    }
    Some(out)
}

fn secret_slot(user: &str) -> Slot<'_> {
    Slot::new("users", "totp_secret", user)
}

fn pending_slot(user: &str) -> Slot<'_> {
    Slot::new("users", "totp_pending", user)
}

fn code_hash(code: &str) -> Vec<u8> {
    let normal: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    Sha256::digest(normal.as_bytes()).to_vec()
}

/// A code as typed: six digits (spaces allowed), or a recovery code.
enum Given {
    Totp(u32),
    Recovery(String),
}

fn parse_code(raw: &str) -> Result<Given, TwoFactorError> {
    let s: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
    if s.len() == 6 && s.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(Given::Totp(s.parse().expect("six digits")));
    }
    if (10..=24).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Ok(Given::Recovery(s));
    }
    Err(ValidationError::new("code", "enter the 6 digits your app shows, or a recovery code").into())
}

/// The step `code` matches within one step of `now`, if any.
fn matching_step(secret: &[u8], code: u32, now: u64) -> Option<u64> {
    [now, now.saturating_sub(1), now + 1]
        .into_iter()
        .find(|s| code_at(secret, *s) == code)
}

/// Where a user stands.
#[derive(Debug, Clone)]
pub struct Status {
    pub enabled: bool,
    /// Recovery codes not used yet.
    pub recovery_left: i64,
    /// The caller's organization requires it of its members.
    pub org_requires: bool,
}

pub async fn status(engine: &Engine, caller: &Caller) -> Result<Status, TwoFactorError> {
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let enabled: bool = users::table
        .find(caller.user_id.0)
        .select(users::totp_secret.is_not_null())
        .first(&mut conn)
        .await?;
    let recovery_left: i64 = recovery_codes::table
        .filter(recovery_codes::user_id.eq(caller.user_id.0))
        .filter(recovery_codes::used_at.is_null())
        .count()
        .get_result(&mut conn)
        .await?;
    let org_requires: bool = organizations::table
        .find(caller.org_id.0)
        .select(organizations::require_2fa)
        .first(&mut conn)
        .await?;
    Ok(Status {
        enabled,
        recovery_left,
        org_requires,
    })
}

/// A set-up in progress: the secret to scan (as an `otpauth://` URI and its QR
/// code as SVG) or to type.
#[derive(Debug, Clone)]
pub struct Enrolment {
    pub secret: String,
    pub uri: String,
    pub qr_svg: String,
}

fn only_sessions(caller: &Caller) -> Result<(), TwoFactorError> {
    match caller.via {
        Via::Session(_) => Ok(()),
        Via::Key { .. } => Err(TwoFactorError::Forbidden(
            "two-factor sign-in is set up from a signed-in session",
        )),
    }
}

/// Starts (or restarts) enrolment: a new secret, kept sealed until confirmed.
pub async fn begin(engine: &Engine, caller: &Caller) -> Result<Enrolment, TwoFactorError> {
    only_sessions(caller)?;
    let mut secret = [0u8; 20];
    rand::thread_rng().fill_bytes(&mut secret);
    let uid = caller.user_id.0.to_string();
    let sealed = engine.secret.seal(pending_slot(&uid), &secret);
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let (email, n): (String, usize) = {
        let email: String = users::table
            .find(caller.user_id.0)
            .select(users::email)
            .first(&mut conn)
            .await?;
        let n = crate::audited!(conn, TwoFactorError, {
            Ok(
                diesel::update(users::table.find(caller.user_id.0).filter(users::totp_secret.is_null()))
                    .set(users::totp_pending.eq(Some(sealed)))
                    .execute(conn)
                    .await?,
            )
        })
        .await?;
        (email, n)
    };
    if n == 0 {
        return Err(TwoFactorError::AlreadyOn);
    }
    let b32 = base32(&secret);
    let label = format!("Berth:{email}");
    let uri = format!(
        "otpauth://totp/{}?secret={b32}&issuer=Berth&algorithm=SHA1&digits=6&period=30",
        url_encode(&label)
    );
    let qr = qrcode::QrCode::new(uri.as_bytes()).map_err(|e| TwoFactorError::Corrupt(e.to_string()))?;
    let qr_svg = qr
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build();
    Ok(Enrolment {
        secret: b32,
        uri,
        qr_svg,
    })
}

fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' | b'@' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Confirms enrolment with a code from the new secret: it becomes the user's,
/// and ten recovery codes are made and returned (the only time they are shown).
pub async fn confirm(engine: &Engine, caller: &Caller, code: &str) -> Result<Vec<String>, TwoFactorError> {
    only_sessions(caller)?;
    let Given::Totp(code) = parse_code(code)? else {
        return Err(wrong_code());
    };
    let uid = caller.user_id.0.to_string();
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let pending: Option<String> = users::table
        .find(caller.user_id.0)
        .select(users::totp_pending)
        .first(&mut conn)
        .await?;
    let pending = pending.ok_or(TwoFactorError::NothingPending)?;
    let secret = engine
        .secret
        .open(pending_slot(&uid), &pending)
        .map_err(|e| TwoFactorError::Corrupt(e.to_string()))?;
    let step = matching_step(&secret, code, step_now()).ok_or_else(wrong_code)?;
    let sealed = engine.secret.seal(secret_slot(&uid), &secret);
    let codes: Vec<String> = (0..10).map(|_| recovery_code()).collect();
    let hashes: Vec<Vec<u8>> = codes.iter().map(|c| code_hash(c)).collect();
    let user = caller.user_id.0;
    conn.transaction::<_, TwoFactorError, _>(async |conn| {
        crate::audit::within(conn).await?;
        let n = diesel::update(
            users::table
                .find(user)
                .filter(users::totp_pending.eq(&pending))
                .filter(users::totp_secret.is_null()),
        )
        .set((
            users::totp_secret.eq(Some(&sealed)),
            users::totp_pending.eq(None::<String>),
            users::totp_last_step.eq(step as i64),
        ))
        .execute(conn)
        .await?;
        if n == 0 {
            return Err(TwoFactorError::NothingPending);
        }
        diesel::delete(recovery_codes::table.filter(recovery_codes::user_id.eq(user)))
            .execute(conn)
            .await?;
        let rows: Vec<_> = hashes
            .iter()
            .map(|h| (recovery_codes::user_id.eq(user), recovery_codes::code_hash.eq(h)))
            .collect();
        diesel::insert_into(recovery_codes::table)
            .values(rows)
            .execute(conn)
            .await?;
        Ok(())
    })
    .await?;
    tracing::info!(user.id = %caller.user_id, "two-factor sign-in turned on");
    Ok(codes)
}

/// `xxxxx-xxxxx`: 50 random bits in an unambiguous alphabet.
fn recovery_code() -> String {
    let mut bytes = [0u8; 10];
    rand::thread_rng().fill_bytes(&mut bytes);
    let alphabet = b"abcdefghjkmnpqrstuvwxyz23456789";
    let chars: String = bytes
        .iter()
        .map(|b| alphabet[(*b as usize) % alphabet.len()] as char)
        .collect();
    format!("{}-{}", &chars[..5], &chars[5..])
}

/// Checks a code of a user with two-factor sign-in on: a TOTP code of a step
/// not used before (then that step is used), or an unused recovery code (then
/// it is used up).
async fn check(engine: &Engine, user: Uuid, code: &str) -> Result<(), TwoFactorError> {
    let given = parse_code(code)?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    match given {
        Given::Totp(code) => {
            let sealed: Option<String> = users::table
                .find(user)
                .select(users::totp_secret)
                .first(&mut conn)
                .await?;
            let sealed = sealed.ok_or(TwoFactorError::NotOn)?;
            let secret = engine
                .secret
                .open(secret_slot(&user.to_string()), &sealed)
                .map_err(|e| TwoFactorError::Corrupt(e.to_string()))?;
            let step = matching_step(&secret, code, step_now()).ok_or_else(wrong_code)?;
            // Used once: only a later step than the last one counts.
            let n = diesel::update(users::table.find(user).filter(users::totp_last_step.lt(step as i64)))
                .set(users::totp_last_step.eq(step as i64))
                .execute(&mut conn)
                .await?;
            if n == 0 {
                return Err(wrong_code());
            }
        }
        Given::Recovery(c) => {
            let n = diesel::update(
                recovery_codes::table
                    .filter(recovery_codes::user_id.eq(user))
                    .filter(recovery_codes::code_hash.eq(code_hash(&c)))
                    .filter(recovery_codes::used_at.is_null()),
            )
            .set(recovery_codes::used_at.eq(diesel::dsl::now))
            .execute(&mut conn)
            .await?;
            if n == 0 {
                return Err(wrong_code());
            }
        }
    }
    Ok(())
}

/// Turns two-factor sign-in off, with a current code (or a recovery code).
pub async fn disable(engine: &Engine, caller: &Caller, code: &str) -> Result<(), TwoFactorError> {
    only_sessions(caller)?;
    check(engine, caller.user_id.0, code).await?;
    clear(engine, caller.user_id).await?;
    tracing::info!(user.id = %caller.user_id, "two-factor sign-in turned off");
    Ok(())
}

async fn clear(engine: &Engine, user: UserId) -> Result<(), TwoFactorError> {
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    conn.transaction::<_, TwoFactorError, _>(async |conn| {
        crate::audit::within(conn).await?;
        diesel::update(users::table.find(user.0))
            .set((
                users::totp_secret.eq(None::<String>),
                users::totp_pending.eq(None::<String>),
            ))
            .execute(conn)
            .await?;
        diesel::delete(recovery_codes::table.filter(recovery_codes::user_id.eq(user.0)))
            .execute(conn)
            .await?;
        Ok(())
    })
    .await
}

/// An instance administrator turns a user's two-factor sign-in off (a lost
/// phone and lost codes) and signs the user out everywhere.
pub async fn reset(engine: &Engine, caller: &Caller, user: UserId) -> Result<(), TwoFactorError> {
    if !caller.instance_admin {
        return Err(TwoFactorError::Forbidden(
            "only instance administrators can reset two-factor sign-in",
        ));
    }
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let exists: bool = diesel::select(diesel::dsl::exists(users::table.find(user.0)))
        .get_result(&mut conn)
        .await?;
    if !exists {
        return Err(TwoFactorError::NotFound);
    }
    clear(engine, user).await?;
    crate::sessions::revoke_all(&engine.kv, user, None).await?;
    tracing::warn!(user.id = %user, by = %caller.user_id, "two-factor sign-in reset by an instance administrator");
    Ok(())
}

/// Requires (or stops requiring) two-factor sign-in of the organization's members.
pub async fn set_required(engine: &Engine, caller: &Caller, required: bool) -> Result<(), TwoFactorError> {
    if !caller.role.can_manage() {
        return Err(TwoFactorError::Forbidden("only admins and owners can change this"));
    }
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    crate::audited!(conn, TwoFactorError, {
        Ok(diesel::update(organizations::table.find(caller.org_id.0))
            .set(organizations::require_2fa.eq(required))
            .execute(conn)
            .await?)
    })
    .await?;
    Ok(())
}

/// A password-verified sign-in waiting for its code: an opaque token (256
/// random bits) naming the user and organization, for [`CHALLENGE_SECS`].
pub async fn challenge(engine: &Engine, user: UserId, org: OrgId) -> Result<String, StoreError> {
    let mut raw = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut raw);
    let token = hex::encode(raw);
    let mut conn = engine.kv.conn().await?;
    let _: () = redis::cmd("SET")
        .arg(engine.kv.key(&challenge_key(&token)))
        .arg(format!("{}/{}", user.0, org.0))
        .arg("EX")
        .arg(CHALLENGE_SECS)
        .query_async(&mut conn)
        .await?;
    Ok(token)
}

fn challenge_key(token: &str) -> String {
    // Hashed: Redis never holds the token itself in a key name.
    format!("2fa:challenge:{}", hex::encode(Sha256::digest(token.as_bytes())))
}

/// The second step of a sign-in: the challenge's user gives a code. Wrong
/// codes are counted per account (and end the challenge at the limit); the
/// right one ends it and names who signed in.
pub async fn finish(engine: &Engine, token: &str, code: &str) -> Result<(UserId, OrgId), TwoFactorError> {
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(TwoFactorError::ChallengeGone);
    }
    let key = engine.kv.key(&challenge_key(token));
    let mut conn = engine.kv.conn().await?;
    let held: Option<String> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .map_err(StoreError::from)?;
    let held = held.ok_or(TwoFactorError::ChallengeGone)?;
    let (user, org) = held
        .split_once('/')
        .and_then(|(u, o)| Some((Uuid::parse_str(u).ok()?, Uuid::parse_str(o).ok()?)))
        .ok_or_else(|| TwoFactorError::Corrupt("a sign-in challenge".into()))?;
    let limit_key = format!("login:code:{user}");
    if let Some(retry) = ratelimit::check(&engine.kv, &limit_key, CODE_LIMIT).await? {
        let _: () = redis::cmd("DEL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .map_err(StoreError::from)?;
        return Err(TwoFactorError::RateLimited(retry));
    }
    if let Err(e) = check(engine, user, code).await {
        ratelimit::hit(&engine.kv, &limit_key, CODE_LIMIT).await?;
        return Err(e);
    }
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .map_err(StoreError::from)?;
    Ok((UserId(user), OrgId(org)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_rfc_6238() {
        // RFC 6238 appendix B, SHA-1, the 8-digit values' last six digits.
        let secret = b"12345678901234567890";
        for (time, eight) in [
            (59u64, 94287082u32),
            (1111111109, 7081804),
            (1234567890, 89005924),
            (2000000000, 69279037),
        ] {
            assert_eq!(code_at(secret, time / 30), eight % 1_000_000, "t = {time}");
        }
    }

    #[test]
    fn base32_round_trips() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        let secret = [7u8; 20];
        assert_eq!(from_base32(&base32(&secret)).unwrap(), secret);
        assert_eq!(base32(&secret).len(), 32);
    }

    #[test]
    fn codes_parse_or_name_the_field() {
        assert!(matches!(parse_code("123 456").unwrap(), Given::Totp(123456)));
        assert!(matches!(parse_code("abcde-fghjk").unwrap(), Given::Recovery(_)));
        for bad in ["", "12345", "1234567", "nope"] {
            assert!(parse_code(bad).is_err(), "{bad}");
        }
        assert_eq!(code_hash("ABCDE-fghjk"), code_hash("abcdefghjk"));
    }

    #[test]
    fn drift_of_one_step_is_allowed_and_no_more() {
        let secret = b"12345678901234567890";
        let now = 1000;
        assert_eq!(matching_step(secret, code_at(secret, 999), now), Some(999));
        assert_eq!(matching_step(secret, code_at(secret, 1001), now), Some(1001));
        assert_eq!(matching_step(secret, code_at(secret, 998), now), None);
    }
}
