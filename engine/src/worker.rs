//! The worker: what `berth worker` runs, and `berth serve` beside its web server:
//! every kind of job on one runner, and the reconciler, until shutdown. (Deployments wait for the
//! network and the managed proxy, which their kind sets up first.)

use crate::jobs::Runner;
use crate::Engine;
use tokio_util::sync::CancellationToken;

/// Runs until `shutdown`, then waits for the jobs in hand (the caller bounds how
/// long; whatever is left is recovered by the next worker's reaper).
pub async fn run(engine: Engine, shutdown: CancellationToken) {
    // Beside the jobs: bringing back what should run (one worker at a time).
    let reconciler = tokio::spawn(crate::reconcile::run(engine.clone(), shutdown.clone()));
    // Resource figures of everything Berth runs, and the alert rules on them
    // (one worker at a time too).
    let metrics = tokio::spawn(crate::sampling::run(engine.clone(), shutdown.clone()));
    Runner::new(engine, shutdown)
        .kind(crate::deploy::job::DeployKind::default())
        .kind(crate::backups::kinds::RestoreKind)
        .kind(crate::backups::kinds::BackupKind)
        .kind(crate::backups::kinds::DrillKind)
        .kind(crate::notify::delivery::DeliveryKind)
        .run()
        .await;
    let _ = reconciler.await;
    let _ = metrics.await;
}
