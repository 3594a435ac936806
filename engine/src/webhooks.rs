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

/// Compares repository URLs the way a person would: scheme, credentials, `.git`
/// and case of the host aside (`git@github.com:o/r.git` = `https://github.com/o/r`).
pub fn same_repo(a: &str, b: &str) -> bool {
    fn norm(u: &str) -> String {
        let u = u.trim().trim_end_matches('/');
        let u = u.strip_suffix(".git").unwrap_or(u);
        let rest = match u.split_once("://") {
            Some((_, r)) => r.to_owned(),
            // scp-like user@host:path
            None => u.replacen(':', "/", 1),
        };
        let rest = rest.rsplit_once('@').map(|(_, r)| r.to_owned()).unwrap_or(rest);
        let (host, path) = rest.split_once('/').unwrap_or((&rest, ""));
        let host = host.split(':').next().unwrap_or(host);
        format!("{}/{}", host.to_ascii_lowercase(), path)
    }
    norm(a) == norm(b)
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
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let rows: Vec<(AppRow, String)> = applications::table
        .filter(diesel::dsl::sql::<diesel::sql_types::Bool>("source->>'type' = 'git'"))
        .select((AppRow::as_select(), applications::webhook_secret))
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
        let Ok(secret) = engine.secret.open(&sealed) else {
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
        .filter(applications::deploy_token_hash.eq(crate::apps::token_hash(token)))
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
