//! Retention: jobs that ended long ago are deleted with the deliveries they ran. Without it the queue's
//! tables keep every webhook ever received (each with its body), and on PostgreSQL every vacuum of the
//! queue reads all of them.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Controller;
use crate::store::{now_ms, StoreError};

/// Jobs deleted by the retention sweep, with their deliveries.
pub const JOBS_PRUNED: &str = "honua_jobs_pruned_total";

/// How often `honua serve` sweeps (the first sweep runs at start).
pub const RETENTION_SWEEP: Duration = Duration::from_secs(3600);

/// Jobs deleted per transaction, and the pause after each: a sweep that has a year to catch up on after
/// an upgrade leaves the database to webhooks and claims between its batches instead of holding it.
const BATCH: u32 = 1000;
const BATCH_PAUSE: Duration = Duration::from_millis(20);

impl Controller {
    /// Deletes the jobs that ended (done, or failed for good) before `ended_before` (Unix ms), with their
    /// deliveries, a batch at a time until none is left or `shutdown` is signalled; returns how many.
    pub async fn prune_jobs(&self, ended_before: i64, shutdown: &watch::Receiver<bool>) -> Result<u64, StoreError> {
        let mut pruned = 0;
        while !*shutdown.borrow() {
            let batch = self.store.prune_jobs(ended_before, BATCH).await?;
            pruned += batch;
            metrics::counter!(JOBS_PRUNED).increment(batch);
            if batch < u64::from(BATCH) {
                break;
            }
            tokio::time::sleep(BATCH_PAUSE).await;
        }
        Ok(pruned)
    }

    /// Every [`RETENTION_SWEEP`] until `shutdown`, from the start: deletes the jobs that ended more than
    /// `retention` ago. Replicas may sweep at once; a job is deleted once.
    pub async fn run_retention(self: Arc<Self>, retention: Duration, mut shutdown: watch::Receiver<bool>) {
        let mut sweep = tokio::time::interval(RETENTION_SWEEP);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let days = retention.as_secs() / 86_400;
        loop {
            tokio::select! {
                _ = sweep.tick() => {
                    let ended_before = now_ms().saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
                    match self.prune_jobs(ended_before, &shutdown).await {
                        Ok(0) => {}
                        Ok(jobs) => tracing::info!(jobs, days, "retention: deleted the jobs that ended more than the retention ago, with their deliveries"),
                        Err(e) => tracing::warn!(error = %e, "retention: could not delete old jobs; the next sweep retries"),
                    }
                }
                _ = shutdown.changed() => break,
            }
        }
    }
}
