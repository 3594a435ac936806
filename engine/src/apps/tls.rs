//! Each HTTPS domain's certificate as Berth keeps track of it: uploads
//! (checked, key sealed, handed to Traefik), the pre-checks before a CA is
//! asked, and the watch the reconciler's leader runs, which records what
//! Traefik really serves for each name (issuer, not-after), reads the CA's
//! refusals from Traefik's log, and backs off before asking again.

use super::{AppError, Domain};
use crate::access::{self, Target};
use crate::accounts::Caller;
use crate::apps::domain_options::CertSource;
use crate::db::schema::{certificates, domains};
use crate::error::StoreError;
use crate::ids::{AppId, DomainId};
use crate::names::ProjectRole;
use crate::proxy::certs;
use crate::Engine;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use std::time::Duration;
use uuid::Uuid;

fn key_slot(domain: &str) -> crate::secrets::Slot<'_> {
    crate::secrets::Slot::new("certificates", "key", domain)
}

/// Checks an uploaded certificate and key for the domain (`certs::check_custom`:
/// each failed check names its field and nothing changes) and stores them (the
/// key sealed): the domain turns to HTTPS with `custom`
/// (`crate::domains::upload_certificate` serves them).
pub async fn upload(
    engine: &Engine,
    caller: &Caller,
    domain: DomainId,
    chain: &str,
    key: &str,
) -> Result<AppId, AppError> {
    access::check_with(engine, caller, Target::Domain(domain), ProjectRole::Deployer).await?;
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    let (app, host): (Uuid, String) = domains::table
        .filter(domains::id.eq(domain.0))
        .filter(domains::organization_id.eq(caller.org_id.0))
        .select((domains::application_id, domains::host))
        .first(&mut conn)
        .await
        .optional()?
        .ok_or(AppError::NotFound)?;
    let checked = certs::check_custom(&host, chain, key, Utc::now())?;
    let sealed = engine
        .secret
        .seal(key_slot(&domain.0.to_string()), checked.key_pem.as_bytes());
    let f = &checked.facts;
    let values = (
        certificates::organization_id.eq(caller.org_id.0),
        certificates::chain.eq(&checked.chain_pem),
        certificates::key.eq(&sealed),
        certificates::subject.eq(&f.subject),
        certificates::issuer.eq(&f.issuer),
        certificates::not_after.eq(f.not_after),
    );
    use diesel_async::AsyncConnection;
    conn.transaction::<_, AppError, _>(async |conn| {
        crate::audit::within(conn).await?;
        diesel::insert_into(certificates::table)
            .values((certificates::domain_id.eq(domain.0), values))
            .on_conflict(certificates::domain_id)
            .do_update()
            .set((values, certificates::created_at.eq(diesel::dsl::now)))
            .execute(conn)
            .await?;
        diesel::update(domains::table.filter(domains::id.eq(domain.0)))
            .set((domains::https.eq(true), domains::cert.eq(CertSource::Custom.as_str())))
            .execute(conn)
            .await?;
        start_over(conn, domain.0).await?;
        Ok(())
    })
    .await?;
    drop(conn);
    tracing::info!(domain.id = %domain, subject = %f.subject, not_after = %f.not_after, "certificate uploaded");
    Ok(AppId(app))
}

/// Writes Traefik's file of uploaded certificates from the database (no
/// tenancy: every organization's, for the one proxy).
pub(crate) async fn write_custom(engine: &Engine) {
    let result = async {
        let mut conn = engine.db.get().await.map_err(|e| e.to_string())?;
        let rows: Vec<(Uuid, String, String)> = certificates::table
            .order(certificates::domain_id)
            .select((certificates::domain_id, certificates::chain, certificates::key))
            .load(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        let mut pairs = Vec::new();
        for (id, chain, sealed) in rows {
            match engine.secret.open_text(key_slot(&id.to_string()), &sealed) {
                Ok(key) => pairs.push((chain, key)),
                Err(e) => tracing::error!(domain.id = %id, error = %e, "an uploaded key does not open: not served"),
            }
        }
        certs::write_tls_file(&engine.deploy.proxy.dynamic_dir, &pairs).map_err(|e| e.to_string())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "writing the uploaded certificates for Traefik");
    }
}

/// The addresses the pre-check resolves with: the instance's nameservers.
async fn nameservers(engine: &Engine) -> Vec<std::net::SocketAddr> {
    crate::proxy::acme::settings(engine)
        .await
        .map(|a| a.dns_resolvers.iter().filter_map(|r| r.parse().ok()).collect())
        .unwrap_or_default()
}

/// The pre-checks for a domain about to ask a CA through HTTP-01 or
/// TLS-ALPN-01 (DNS-01 and uploads need neither). `Err`: the reason.
async fn precheck(engine: &Engine, d: &Domain) -> Result<(), String> {
    if !d.https || !matches!(d.cert_source(), CertSource::Http | CertSource::Tls) || !engine.deploy.proxy.manage {
        return Ok(());
    }
    let proxy = &engine.deploy.proxy;
    let resolved = crate::proxy::precheck::resolve(&d.host, &nameservers(engine).await).await?;
    crate::proxy::precheck::judge(
        &d.host,
        &resolved,
        &proxy.public_ips,
        engine.deploy.host.allow_private_targets,
    )?;
    if d.cert_source() == CertSource::Http {
        let at = crate::proxy::entry(engine, false).await;
        let answer = crate::http1::request(
            &at.ip().to_string(),
            at.port(),
            "GET",
            &d.host,
            "/.well-known/acme-challenge/berth-precheck",
            Duration::from_secs(2),
        )
        .await;
        if answer.is_err() {
            return Err(format!(
                "Traefik does not answer on its HTTP port ({}), which HTTP-01 needs",
                proxy.http_port
            ));
        }
    }
    Ok(())
}

/// A failure to record: the reason, and the backoff before the next try.
async fn record_failure(engine: &Engine, d: &Domain, reason: &str) -> Result<(), StoreError> {
    let failures = d.cert_failures.saturating_add(1);
    let retry = Utc::now() + certs::backoff(failures as u32);
    let mut conn = engine.db.get().await?;
    diesel::update(domains::table.filter(domains::id.eq(d.id)))
        .set((
            domains::cert_status.eq("failed"),
            domains::cert_error.eq(reason),
            domains::cert_failures.eq(failures),
            domains::cert_retry_at.eq(Some(retry)),
            domains::cert_checked_at.eq(diesel::dsl::now),
        ))
        .execute(&mut conn)
        .await
        .map_err(StoreError::from)?;
    tracing::warn!(domain = %d.host, failures, retry_at = %retry, reason, "certificate not issued");
    Ok(())
}

/// Runs the pre-checks for a domain just added or changed: a failure is
/// recorded (with its backoff) before its route is written, so Traefik does
/// not ask the CA for a name that cannot pass.
pub(crate) async fn precheck_new(engine: &Engine, id: DomainId) {
    let Ok(mut conn) = engine.db.get().await else { return };
    let Ok(d) = domains::table
        .filter(domains::id.eq(id.0))
        .select(Domain::as_select())
        .first::<Domain>(&mut conn)
        .await
    else {
        return;
    };
    drop(conn);
    if let Err(reason) = precheck(engine, &d).await {
        if let Err(e) = record_failure(engine, &d, &reason).await {
            tracing::warn!(error = %e, "recording a pre-check failure");
        }
    }
}

/// What the watch keeps between passes.
#[derive(Debug, Default)]
pub struct Watch {
    /// Traefik's log is read from here on (UNIX seconds).
    log_since: Option<i64>,
}

/// How often a domain whose certificate is served is looked at again.
const ISSUED_RECHECK: chrono::Duration = chrono::Duration::minutes(10);

/// One pass: for each HTTPS domain, what Traefik serves for its name, the
/// CA's refusals since the last pass, and the backoff. Returns the apps whose
/// routes must be written again (a paused resolver is left out, a due retry
/// puts it back).
pub async fn watch(engine: &Engine, state: &mut Watch) -> Vec<AppId> {
    if !engine.deploy.proxy.manage {
        return Vec::new();
    }
    let now = Utc::now();
    let Ok(mut conn) = engine.db.get().await else {
        return Vec::new();
    };
    let Ok(rows) = domains::table
        .filter(domains::https.eq(true))
        .select((domains::application_id, domains::cert_checked_at, Domain::as_select()))
        .load::<(Uuid, Option<DateTime<Utc>>, Domain)>(&mut conn)
        .await
    else {
        return Vec::new();
    };
    drop(conn);
    // Issued and looked at lately: nothing to do for it this pass.
    let due: Vec<_> = rows
        .into_iter()
        .filter(|(_, checked, d)| !(d.cert_status == "issued" && checked.is_some_and(|c| now - c < ISSUED_RECHECK)))
        .collect();
    let since = state.log_since.unwrap_or(now.timestamp() - 3600);
    // Overlap one second: a line in the second of the last read is read twice
    // (harmless: a failure already recorded is not recorded again while paused).
    state.log_since = Some(now.timestamp() - 1);
    if due.is_empty() {
        // No Docker log read on a pass with nothing waiting for a certificate.
        return Vec::new();
    }
    let failures = certs::acme_failures(&crate::proxy::recent_log(engine, since).await);
    let addr = crate::proxy::entry(engine, true).await;
    let mut reroute = std::collections::BTreeSet::new();
    for (app, _, d) in due {
        let served = certs::served(addr, &certs::probe_name(&d.host), Duration::from_secs(3)).await;
        let issued = served
            .as_ref()
            .ok()
            .filter(|f| !certs::is_fallback(&f.subject) && certs::covers(&f.names, &d.host));
        let result = if let Some(f) = issued {
            let changed = d.cert_status != "issued" || d.cert_not_after != Some(f.not_after);
            set_issued(engine, &d, f).await.map(|()| changed)
        } else if d.acme_paused(now) {
            Ok(false)
        } else if let Some(f) = failures.iter().find(|f| f.domains.contains(&d.host)) {
            record_failure(engine, &d, &f.reason).await.map(|()| true)
        } else if d.cert_retry_at.is_some() {
            // The backoff is over: check again, then let Traefik ask.
            match precheck(engine, &d).await {
                Err(reason) => record_failure(engine, &d, &reason).await.map(|()| false),
                Ok(()) => set_pending(engine, &d).await.map(|()| true),
            }
        } else if d.cert_status == "issued" {
            // Served before, not now (e.g. an upload removed).
            set_pending(engine, &d).await.map(|()| true)
        } else {
            Ok(false)
        };
        match result {
            Ok(true) => {
                reroute.insert(app);
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(domain = %d.host, error = %e, "recording a certificate's state"),
        }
    }
    reroute.into_iter().map(AppId).collect()
}

async fn set_issued(engine: &Engine, d: &Domain, f: &certs::CertFacts) -> Result<(), StoreError> {
    let mut conn = engine.db.get().await?;
    diesel::update(domains::table.filter(domains::id.eq(d.id)))
        .set((
            domains::cert_status.eq("issued"),
            domains::cert_issuer.eq(&f.issuer),
            domains::cert_not_after.eq(f.not_after),
            domains::cert_error.eq(None::<String>),
            domains::cert_failures.eq(0),
            domains::cert_retry_at.eq(None::<DateTime<Utc>>),
            domains::cert_checked_at.eq(diesel::dsl::now),
        ))
        .execute(&mut conn)
        .await?;
    if d.cert_status != "issued" {
        tracing::info!(domain = %d.host, issuer = %f.issuer, not_after = %f.not_after, "certificate served");
    }
    Ok(())
}

/// A domain's certificate, now to come another way (an upload, another
/// source, HTTPS turned on): pending again, without the old way's failures,
/// error or back-off.
pub(crate) async fn start_over(conn: &mut diesel_async::AsyncPgConnection, domain: uuid::Uuid) -> QueryResult<usize> {
    diesel::update(domains::table.filter(domains::id.eq(domain)))
        .set((
            domains::cert_status.eq("pending"),
            domains::cert_error.eq(None::<String>),
            domains::cert_failures.eq(0),
            domains::cert_retry_at.eq(None::<DateTime<Utc>>),
        ))
        .execute(conn)
        .await
}

async fn set_pending(engine: &Engine, d: &Domain) -> Result<(), StoreError> {
    let mut conn = engine.db.get().await?;
    diesel::update(domains::table.filter(domains::id.eq(d.id)))
        .set((
            domains::cert_status.eq("pending"),
            domains::cert_retry_at.eq(None::<DateTime<Utc>>),
            domains::cert_checked_at.eq(diesel::dsl::now),
        ))
        .execute(&mut conn)
        .await?;
    Ok(())
}
