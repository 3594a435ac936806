//! The sampling worker: every interval it takes one pass of resource figures
//! ([`crate::metrics`]), writes them, has the alert rules look at them
//! ([`crate::alerts`]), and tells open pages that new points are in; once a
//! minute it rolls points up and drops what is past its retention; one worker
//! at a time across replicas. It sits beside both so neither imports the
//! other.

use crate::leader::Leadership;
use crate::metrics::{self, store, Subject};
use crate::Engine;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Runs until `shutdown`: one worker at a time across replicas (a
/// [`Leadership`] on `sampler`) samples every `interval`, writes the points in
/// one statement, has the alert rules look at them, and once a minute rolls
/// them up and drops old ones. The others wait to take over: every replica
/// sampling the same Docker engine would multiply its cost (dockerd's CPU per
/// pass is four times Berth's, docs/BENCHMARKS.md) and the minute's roll-up,
/// for points of which only the first written per interval stands.
pub async fn run(engine: Engine, shutdown: CancellationToken) {
    if engine.deploy.metrics.interval_secs == 0 {
        return;
    }
    let does = "samples resource figures and evaluates alert rules";
    crate::leader::run_as(&engine, "sampler", does, &shutdown, |lease| {
        lead(&engine, &shutdown, lease)
    })
    .await;
}

/// Samples until `shutdown`, or until the lock is lost (its connection went
/// away: another worker may hold it by now).
async fn lead(engine: &Engine, shutdown: &CancellationToken, mut lease: Leadership) {
    let cfg = engine.deploy.metrics.clone();
    let every = std::time::Duration::from_secs(cfg.interval_secs);
    let mut pass = metrics::Pass::default();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_roll = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        if !lease.held().await {
            tracing::warn!("sampler: lost the leadership lock (database connection gone)");
            return;
        }
        let at = metrics::interval_start(chrono::Utc::now(), cfg.interval_secs);
        match pass.sample(engine, at).await {
            Ok(points) => {
                if let Err(e) = metrics::write(engine, cfg.interval_secs as i32, &points).await {
                    tracing::warn!(error = %e, "writing metric points");
                }
                // Alert rules look at the figures just taken; open charts follow.
                if let Err(e) = crate::alerts::evaluate(engine, &points).await {
                    tracing::warn!(error = %e, "evaluating alert rules");
                }
                announce(engine, &points).await;
            }
            Err(e) => tracing::debug!(error = %e, "sampling metrics"),
        }
        if last_roll.elapsed() >= std::time::Duration::from_secs(60) {
            last_roll = std::time::Instant::now();
            if let Err(e) = metrics::maintain(engine, cfg.interval_secs as i32, &cfg).await {
                tracing::warn!(error = %e, "rolling up metric points");
            }
            if let Err(e) = crate::alerts::prune(engine).await {
                tracing::warn!(error = %e, "dropping old container events");
            }
            if let Err(e) = crate::audit::prune(engine, engine.deploy.audit_days).await {
                tracing::warn!(error = %e, "dropping audit rows past BERTH_AUDIT_DAYS");
            }
        }
    }
    lease.give_up().await;
}

/// Tells open pages that new points are in: each app's and service's
/// organization, and the instance administrators' organization for the
/// machine and Traefik (a `metrics` event; the nil ID for the machine).
async fn announce(engine: &Engine, points: &[(Subject, store::Point)]) {
    use diesel::sql_types::{Array, Nullable, Uuid as SqlUuid};
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Owner {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
        #[diesel(sql_type = Nullable<SqlUuid>)]
        organization_id: Option<Uuid>,
    }
    let ids: Vec<Uuid> = points.iter().map(|(s, _)| s.id()).filter(|id| !id.is_nil()).collect();
    let Ok(mut conn) = engine.db.get().await else { return };
    let owners: Vec<Owner> = diesel::sql_query(
        "SELECT id, organization_id FROM applications WHERE id = ANY ($1)
         UNION ALL SELECT id, organization_id FROM database_services WHERE id = ANY ($1)
         UNION ALL SELECT '00000000-0000-0000-0000-000000000000'::uuid, admin_organization_id FROM instance",
    )
    .bind::<Array<SqlUuid>, _>(&ids)
    .load(&mut conn)
    .await
    .unwrap_or_default();
    drop(conn);
    for o in owners {
        if let Some(org) = o.organization_id {
            crate::events::publish(engine, org, crate::events::Event::Metrics { id: o.id }).await;
        }
    }
}
