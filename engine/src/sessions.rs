//! Login sessions in Redis. The browser holds an opaque random token; Redis holds
//! the session under the token's SHA-256, so a leaked Redis dump cannot be replayed
//! as cookies. A per-user set indexes sessions so logout-everywhere and password
//! changes can revoke them all.

use crate::error::StoreError;
use crate::ids::{OrgId, UserId};
use crate::kv::Kv;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How long sessions live.
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    /// A session unused this long expires (default 7 days).
    pub idle_secs: u64,
    /// No session outlives this, however active (default 30 days).
    pub absolute_secs: u64,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            idle_secs: 7 * 24 * 3600,
            absolute_secs: 30 * 24 * 3600,
        }
    }
}

/// What Redis stores for a session.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Session {
    pub user_id: UserId,
    /// The organization the user is working in; switched from the sidebar.
    pub org_id: OrgId,
    /// Unix seconds.
    pub created_at: i64,
}

/// The cookie value. Debug output never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionToken(***)")
    }
}

impl SessionToken {
    pub fn from_cookie(raw: &str) -> Option<Self> {
        // 32 random bytes, base64url: anything else cannot be ours.
        (raw.len() == 43 && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
            .then(|| Self(raw.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    fn digest(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }
}

fn session_key(digest: &str) -> String {
    format!("session:{digest}")
}

fn user_index_key(user: UserId) -> String {
    format!("user-sessions:{user}")
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

pub async fn create(
    kv: &Kv,
    policy: SessionPolicy,
    user_id: UserId,
    org_id: OrgId,
) -> Result<SessionToken, StoreError> {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    let token = SessionToken(URL_SAFE_NO_PAD.encode(bytes));
    let digest = token.digest();
    let session = Session {
        user_id,
        org_id,
        created_at: now(),
    };
    let body = serde_json::to_string(&session).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let mut conn = kv.conn().await?;
    let index = kv.key(&user_index_key(user_id));
    let _: () = redis::pipe()
        .atomic()
        .set_ex(kv.key(&session_key(&digest)), body, policy.idle_secs)
        .ignore()
        .sadd(&index, &digest)
        .ignore()
        .expire(&index, policy.absolute_secs as i64)
        .ignore()
        .query_async(&mut conn)
        .await?;
    Ok(token)
}

/// The live session for a token, sliding its idle expiry; `None` if it expired,
/// was revoked, or passed its absolute lifetime.
pub async fn get(kv: &Kv, policy: SessionPolicy, token: &SessionToken) -> Result<Option<Session>, StoreError> {
    let mut conn = kv.conn().await?;
    let key = kv.key(&session_key(&token.digest()));
    let raw: Option<String> = redis::cmd("GETEX")
        .arg(&key)
        .arg("EX")
        .arg(policy.idle_secs)
        .query_async(&mut conn)
        .await?;
    let Some(raw) = raw else { return Ok(None) };
    let session: Session = serde_json::from_str(&raw).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    if now() - session.created_at > policy.absolute_secs as i64 {
        revoke(kv, token).await?;
        return Ok(None);
    }
    Ok(Some(session))
}

/// Points the session at another organization (membership is checked by the caller).
pub async fn switch_org(kv: &Kv, policy: SessionPolicy, token: &SessionToken, org_id: OrgId) -> Result<(), StoreError> {
    let Some(mut session) = get(kv, policy, token).await? else {
        return Ok(());
    };
    session.org_id = org_id;
    let body = serde_json::to_string(&session).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let mut conn = kv.conn().await?;
    // XX: never resurrect a session revoked in the meantime.
    let _: Option<String> = redis::cmd("SET")
        .arg(kv.key(&session_key(&token.digest())))
        .arg(body)
        .arg("EX")
        .arg(policy.idle_secs)
        .arg("XX")
        .query_async(&mut conn)
        .await?;
    Ok(())
}

pub async fn revoke(kv: &Kv, token: &SessionToken) -> Result<(), StoreError> {
    let mut conn = kv.conn().await?;
    let _: () = redis::cmd("DEL")
        .arg(kv.key(&session_key(&token.digest())))
        .query_async(&mut conn)
        .await?;
    Ok(())
}

/// Revokes every session of a user except `keep` (the one making the change).
pub async fn revoke_all(kv: &Kv, user: UserId, keep: Option<&SessionToken>) -> Result<(), StoreError> {
    let mut conn = kv.conn().await?;
    let index = kv.key(&user_index_key(user));
    let digests: Vec<String> = redis::cmd("SMEMBERS").arg(&index).query_async(&mut conn).await?;
    let keep = keep.map(SessionToken::digest);
    let mut pipe = redis::pipe();
    for d in digests.iter().filter(|d| Some(*d) != keep.as_ref()) {
        pipe.del(kv.key(&session_key(d))).ignore();
        pipe.srem(&index, d).ignore();
    }
    let _: () = pipe.query_async(&mut conn).await?;
    Ok(())
}
