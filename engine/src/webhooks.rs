//! Deploy hooks from outside: GitHub push webhooks (verified with each app's
//! secret over `X-Hub-Signature-256`) and a generic per-app deploy token. Both
//! are idempotent per delivery id: a replayed delivery never deploys twice.

use crate::apps::spec::Source;
use crate::apps::AppRow;
use crate::db::schema::applications;
use crate::deploy::{self, Accepted, DeployError, Trigger};
use crate::error::{Classify, ErrorKind, StoreError};
use crate::ids::AppId;
use crate::Engine;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use hmac::{Hmac, Mac};
use sha2::Sha256;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("the signature does not match any application")]
    BadSignature,
    #[error("unknown deploy token")]
    UnknownToken,
    #[error("malformed payload: {0}")]
    Malformed(String),
    #[error(transparent)]
    Deploy(#[from] DeployError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Too many failed calls from this address lately.
    #[error("too many failed webhook calls from this address; try again later")]
    Throttled(u64),
}

/// Failed (unsigned, unknown-token, malformed) webhook calls one client address
/// may make per window before every call from it is refused for the rest of
/// the window. Valid deliveries never count, so a busy GitHub is not slowed.
pub const FAILURE_LIMIT: crate::ratelimit::Limit = crate::ratelimit::Limit {
    max: 30,
    window_secs: 600,
};

/// Runs `call` unless `client` has failed too often lately; counts its failure.
pub async fn throttled(
    engine: &Engine,
    client: &str,
    call: impl std::future::Future<Output = Result<Outcome, WebhookError>>,
) -> Result<Outcome, WebhookError> {
    let key = format!("webhook:fail:{}", crate::ratelimit::client_key(client));
    if let Some(retry) = crate::ratelimit::check(&engine.kv, &key, FAILURE_LIMIT).await? {
        return Err(WebhookError::Throttled(retry));
    }
    let result = call.await;
    if matches!(
        result,
        Err(WebhookError::BadSignature | WebhookError::UnknownToken | WebhookError::Malformed(_))
    ) {
        crate::ratelimit::hit(&engine.kv, &key, FAILURE_LIMIT).await?;
    }
    result
}

impl Classify for WebhookError {
    fn kind(&self) -> ErrorKind {
        match self {
            WebhookError::BadSignature | WebhookError::UnknownToken => ErrorKind::Unauthorized(self.to_string()),
            WebhookError::Malformed(m) => ErrorKind::Validation {
                field: "payload",
                message: m.clone(),
            },
            WebhookError::Deploy(e) => e.kind(),
            WebhookError::Store(e) => e.kind(),
            WebhookError::Throttled(retry) => ErrorKind::RateLimited {
                retry_after_secs: *retry,
            },
        }
    }
}

/// What happened to a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Deployments queued (or found for a replayed delivery), per application.
    Deploying(Vec<(AppId, Accepted)>),
    /// Verified, but not a push to a branch any matching app deploys (or a ping).
    Ignored(String),
}

/// `sha256=<hex>` over the raw body with the app's secret, compared in constant time.
pub fn verify_github(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else { return false };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// Whether two repository URLs name the same repository ([`crate::apps::spec::repo_key`]).
pub fn same_repo(a: &str, b: &str) -> bool {
    crate::apps::spec::repo_key(a) == crate::apps::spec::repo_key(b)
}

/// Handles `POST /api/webhooks/github`. The body is parsed only to find candidate
/// apps; nothing is trusted until one app's secret verifies the signature.
pub async fn github(
    engine: &Engine,
    event: &str,
    delivery: &str,
    signature: &str,
    body: &[u8],
) -> Result<Outcome, WebhookError> {
    let payload: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
    let repo = &payload["repository"];
    let urls: Vec<&str> = ["clone_url", "ssh_url", "html_url", "git_url", "url"]
        .iter()
        .filter_map(|k| repo[*k].as_str())
        .collect();
    // Only the apps of this repository are loaded (an indexed key), so an
    // anonymous caller costs one index lookup, not a scan of every git app.
    let keys: Vec<String> = urls.iter().map(|u| crate::apps::spec::repo_key(u)).collect();
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let rows: Vec<(AppRow, String)> = applications::table
        .filter(applications::repo_key.eq_any(&keys))
        .select((AppRow::as_select(), applications::webhook_secret))
        .limit(100)
        .load(&mut conn)
        .await
        .map_err(StoreError::from)?;
    let mut verified = Vec::new();
    for (row, sealed) in rows {
        let Ok((app, _)) = row.decode() else { continue };
        let Source::Git { url, branch, .. } = &app.source else {
            continue;
        };
        if !urls.iter().any(|u| same_repo(u, url)) {
            continue;
        }
        let Ok(secret) = engine
            .secret
            .open(crate::apps::slot::webhook_secret(&app.id.to_string()), &sealed)
        else {
            continue;
        };
        if verify_github(&secret, body, signature) {
            verified.push((app.id, app.organization_id, branch.clone()));
        }
    }
    if verified.is_empty() {
        return Err(WebhookError::BadSignature);
    }
    if event == "ping" {
        return Ok(Outcome::Ignored("pong".into()));
    }
    if event != "push" {
        return Ok(Outcome::Ignored(format!("event {event:?} does not deploy")));
    }
    let pushed = payload["ref"].as_str().unwrap_or("");
    if payload["deleted"].as_bool() == Some(true) {
        return Ok(Outcome::Ignored("branch deleted".into()));
    }
    let mut out = Vec::new();
    for (app, org, branch) in verified {
        if pushed != format!("refs/heads/{branch}") {
            continue;
        }
        let req = deploy::Request {
            app,
            org: crate::ids::OrgId(org),
            trigger: Trigger::Webhook,
            trigger_detail: Some("github push"),
            rollback_of: None,
            delivery: Some(delivery),
        };
        let accepted = deploy::enqueue(engine, &mut conn, req).await?;
        out.push((app, accepted));
    }
    if out.is_empty() {
        return Ok(Outcome::Ignored(format!("{pushed} is not a deployed branch")));
    }
    Ok(Outcome::Deploying(out))
}

/// Handles `POST /api/webhooks/deploy/<token>`; `delivery` (from an
/// `Idempotency-Key` or `X-Delivery-Id` header) makes retries safe.
pub async fn deploy_token(engine: &Engine, token: &str, delivery: Option<&str>) -> Result<Outcome, WebhookError> {
    if token.len() != 64 || !token.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(WebhookError::UnknownToken);
    }
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let found: Option<(uuid::Uuid, uuid::Uuid)> = applications::table
        .filter(applications::deploy_token_hash.eq(crate::secrets::token_hash(token)))
        .select((applications::id, applications::organization_id))
        .first(&mut conn)
        .await
        .optional()
        .map_err(StoreError::from)?;
    let (app, org) = found.ok_or(WebhookError::UnknownToken)?;
    let req = deploy::Request {
        app: AppId(app),
        org: crate::ids::OrgId(org),
        trigger: Trigger::Webhook,
        trigger_detail: Some("deploy token"),
        rollback_of: None,
        delivery,
    };
    let accepted = deploy::enqueue(engine, &mut conn, req).await?;
    Ok(Outcome::Deploying(vec![(AppId(app), accepted)]))
}

/// A delivery id from a header: printable ASCII, at most 200 characters.
pub fn delivery_id(raw: Option<&str>) -> Option<String> {
    raw.map(str::trim)
        .filter(|s| !s.is_empty() && s.len() <= 200 && s.bytes().all(|c| c.is_ascii_graphic()))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_signatures() {
        // The example from GitHub's documentation.
        let secret = b"It's a Secret to Everybody";
        let body = b"Hello, World!";
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(verify_github(secret, body, sig));
        assert!(!verify_github(b"other", body, sig));
        assert!(!verify_github(secret, b"Hello, World?", sig));
        assert!(!verify_github(secret, body, "sha1=abc"));
        assert!(!verify_github(secret, body, "sha256=zz"));
    }

    #[test]
    fn repository_urls_compare_loosely() {
        assert!(same_repo(
            "https://github.com/Org/Repo.git",
            "git@github.com:Org/Repo.git"
        ));
        assert!(same_repo("https://GitHub.com/o/r", "ssh://git@github.com/o/r.git"));
        assert!(!same_repo("https://github.com/o/r", "https://github.com/o/r2"));
        assert!(same_repo("file:///tmp/x/repo", "file:///tmp/x/repo.git"));
    }
}
