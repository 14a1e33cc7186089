//! The delivery queue. It is what makes "answer 202 at once, never lose a delivery" hold: a delivery and
//! its job are written in one transaction before the 202; a worker claims a job with a lease, so a worker
//! that dies mid-job leaves it to be claimed again when the lease runs out, and a job that outlived its
//! worker twice is quarantined instead of run again.

use std::time::Duration;

use async_trait::async_trait;

use super::sql::{Dialect, SqlStore};
use super::StoreError;

/// A verified delivery to record.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub id: String,
    pub event: String,
    pub repository: Option<String>,
    pub payload: Vec<u8>,
    /// The pull-request head this delivery plans, remembered with it (see [`PrHead`]).
    pub pr_head: Option<PrHead>,
    /// Its job is deployment work (a deployment branch's commit to plan, a merged pull request's
    /// approvals to carry): the deployment lane's worker takes it, besides any other.
    pub deploys: bool,
}

/// A pull request at one head commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrHead {
    pub number: u64,
    pub sha: String,
    /// Record the delivery only if this head was never seen (the poller's catch-up); a webhook is
    /// always recorded.
    pub only_if_new: bool,
}

/// Outcome of recording a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Stored, with the id of its job.
    New(i64),
    /// The same delivery id was recorded before: GitHub redelivered it. Nothing new is queued.
    Duplicate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Queued,
    Running,
    Done,
    Failed,
}

impl JobState {
    fn parse(s: &str) -> JobState {
        match s {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "done" => JobState::Done,
            _ => JobState::Failed,
        }
    }
}

/// A job claimed by a worker, with the delivery it processes.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub delivery_id: String,
    pub event: String,
    pub repository: Option<String>,
    pub payload: Vec<u8>,
    /// Including this one.
    pub attempts: i32,
    /// How often the job was claimed again after its worker vanished mid-job (see [`QUARANTINE_AFTER`]).
    pub takeovers: i32,
    /// When its delivery was received (Unix ms): what the service knew by then, whenever the job runs.
    pub received_at: i64,
}

/// Takeovers after which a job is not run again: a job whose worker vanished this many times probably
/// stops the process that runs it (a crash, an abort), and running it again would crash-loop the
/// service. It is failed as quarantined instead.
pub const QUARANTINE_AFTER: i32 = 2;

impl Job {
    /// Whether this claim should quarantine the job instead of running it.
    pub fn quarantined(&self) -> bool {
        self.takeovers >= QUARANTINE_AFTER
    }
}

/// A job as monitoring sees it.
#[derive(Debug, Clone)]
pub struct JobStatus {
    pub id: i64,
    pub delivery_id: String,
    pub state: JobState,
    pub attempts: i32,
    pub last_error: Option<String>,
}

/// A claimed job as both backends return it.
#[derive(sqlx::FromRow)]
struct ClaimRow {
    id: i64,
    delivery_id: String,
    attempts: i32,
    takeovers: i32,
    event: String,
    repository: Option<String>,
    payload: Vec<u8>,
    received_at: i64,
}

impl From<ClaimRow> for Job {
    fn from(r: ClaimRow) -> Job {
        Job {
            id: r.id,
            delivery_id: r.delivery_id,
            event: r.event,
            repository: r.repository,
            payload: r.payload,
            attempts: r.attempts,
            takeovers: r.takeovers,
            received_at: r.received_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct StatusRow {
    id: i64,
    delivery_id: String,
    state: String,
    attempts: i32,
    last_error: Option<String>,
}

impl From<StatusRow> for JobStatus {
    fn from(r: StatusRow) -> JobStatus {
        JobStatus {
            id: r.id,
            delivery_id: r.delivery_id,
            state: JobState::parse(&r.state),
            attempts: r.attempts,
            last_error: r.last_error,
        }
    }
}

/// The delivery queue: verified deliveries and their jobs, claimed by workers under a lease, and the
/// GitHub write budget the workers share.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Records a delivery and queues its job atomically; a known delivery id is [`Recorded::Duplicate`],
    /// and so is a delivery whose `pr_head` is `only_if_new` and already seen.
    async fn record_delivery(&self, delivery: &NewDelivery, now: i64) -> Result<Recorded, StoreError>;

    /// Claims the oldest ready job (queued and due, or running with an expired lease) for `worker`, of
    /// the deployment lane alone ([`NewDelivery::deploys`]) with `deploys_only`.
    /// On PostgreSQL concurrent claimers skip each other's rows (`FOR UPDATE SKIP LOCKED`).
    async fn claim_job(
        &self,
        worker: &str,
        lease: Duration,
        now: i64,
        deploys_only: bool,
    ) -> Result<Option<Job>, StoreError>;

    /// Marks a job done. Only its current holder may: a worker whose lease was taken over is refused.
    async fn complete_job(&self, id: i64, worker: &str, now: i64) -> Result<bool, StoreError>;

    /// Extends the lease of a job `worker` still holds to `locked_until`; `false` if it holds it no longer.
    async fn renew_job(&self, id: i64, worker: &str, locked_until: i64) -> Result<bool, StoreError>;

    /// Records a failure: with `retry_at` the job is queued again for then, without it it is failed for
    /// good (visible in [`JobQueue::job`] and the queue metrics).
    async fn fail_job(
        &self,
        id: i64,
        worker: &str,
        error: &str,
        retry_at: Option<i64>,
        now: i64,
    ) -> Result<bool, StoreError>;

    async fn job(&self, id: i64) -> Result<Option<JobStatus>, StoreError>;

    /// The head most recently queued for a pull request (a push after it supersedes it; a force-push back
    /// to an older head makes that head the latest again).
    async fn latest_pr_head(&self, repository: &str, number: u64) -> Result<Option<String>, StoreError>;

    /// Jobs queued or running.
    async fn queue_depth(&self) -> Result<i64, StoreError>;

    /// Takes one write from `installation`'s GitHub budget, shared by every replica, if both of its
    /// buckets allow one at `now`; otherwise leaves it untouched and says how many ms to wait.
    async fn take_write_budget(
        &self,
        installation: u64,
        budget: WriteBudget,
        now: i64,
    ) -> Result<Option<i64>, StoreError>;

    /// Database reachable and migrated (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;
}

#[async_trait]
impl JobQueue for SqlStore {
    async fn record_delivery(&self, d: &NewDelivery, now: i64) -> Result<Recorded, StoreError> {
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO deliveries (id, event, repository, payload, received_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
        )
        .bind(d.id.as_str())
        .bind(&d.event)
        .bind(&d.repository)
        .bind(&d.payload)
        .bind(now)
        .execute(tx.db())
        .await?
        .rows_affected();
        if inserted == 0 {
            tx.rollback().await?;
            return Ok(Recorded::Duplicate);
        }
        if let Some(head) = &d.pr_head {
            let new_head = sqlx::query(if head.only_if_new { "INSERT INTO pr_heads (repository, number, head_sha, seen_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING" } else { "INSERT INTO pr_heads (repository, number, head_sha, seen_at) VALUES ($1, $2, $3, $4) ON CONFLICT (repository, number, head_sha) DO UPDATE SET seen_at = excluded.seen_at" })
                .bind(d.repository.as_deref().unwrap_or_default())
                .bind(head.number as i64)
                .bind(&head.sha)
                .bind(now)
                .execute(tx.db())
                .await?
                .rows_affected()
                == 1;
            if head.only_if_new && !new_head {
                tx.rollback().await?;
                return Ok(Recorded::Duplicate);
            }
        }
        let (job,): (i64,) = sqlx::query_as(
            "INSERT INTO jobs (delivery_id, state, run_after, created_at, updated_at, deploys) VALUES ($1, 'queued', $2, $2, $2, $3) RETURNING id",
        )
        .bind(d.id.as_str())
        .bind(now)
        .bind(i32::from(d.deploys))
        .fetch_one(tx.db())
        .await?;
        tx.commit().await?;
        Ok(Recorded::New(job))
    }

    async fn claim_job(
        &self,
        worker: &str,
        lease: Duration,
        now: i64,
        deploys_only: bool,
    ) -> Result<Option<Job>, StoreError> {
        let only = if deploys_only { "deploys = 1 AND " } else { "" };
        let statement = match self.dialect {
            Dialect::Sqlite => claim_sqlite(only),
            Dialect::Postgres => claim_postgres(only),
        };
        let row: Option<ClaimRow> = sqlx::query_as(&statement)
            .bind(worker)
            .bind(now + lease.as_millis() as i64)
            .bind(now)
            .fetch_optional(self.db())
            .await?;
        Ok(row.map(Job::from))
    }

    async fn take_write_budget(
        &self,
        installation: u64,
        budget: WriteBudget,
        now: i64,
    ) -> Result<Option<i64>, StoreError> {
        let installation = installation as i64;
        loop {
            // One statement takes from both buckets or from neither, whichever replica runs it.
            let greatest = self.dialect.greatest();
            let taken = sqlx::query(&format!(
                "UPDATE write_budgets SET minute_tat = {greatest}(minute_tat, $1) + $2, hour_tat = {greatest}(hour_tat, $1) + $3 \
                 WHERE installation = $4 AND minute_tat - $5 <= $1 AND hour_tat - $6 <= $1",
            ))
            .bind(now)
            .bind(budget.minute_period_ms)
            .bind(budget.hour_period_ms)
            .bind(installation)
            .bind(budget.minute_tolerance())
            .bind(budget.hour_tolerance())
            .execute(self.db())
            .await?;
            if taken.rows_affected() == 1 {
                return Ok(None);
            }
            let tats: Option<(i64, i64)> =
                sqlx::query_as("SELECT minute_tat, hour_tat FROM write_budgets WHERE installation = $1")
                    .bind(installation)
                    .fetch_optional(self.db())
                    .await?;
            match tats {
                Some((minute_tat, hour_tat)) => return Ok(Some(budget.wait(minute_tat, hour_tat, now))),
                // The installation's first write: its row is made, then taken from like any other.
                None => {
                    sqlx::query("INSERT INTO write_budgets (installation, minute_tat, hour_tat) VALUES ($1, 0, 0) ON CONFLICT (installation) DO NOTHING")
                        .bind(installation)
                        .execute(self.db())
                        .await?;
                }
            }
        }
    }

    async fn renew_job(&self, id: i64, worker: &str, locked_until: i64) -> Result<bool, StoreError> {
        let renewed =
            sqlx::query("UPDATE jobs SET locked_until = $1 WHERE id = $2 AND state = 'running' AND locked_by = $3")
                .bind(locked_until)
                .bind(id)
                .bind(worker)
                .execute(self.db())
                .await?;
        Ok(renewed.rows_affected() == 1)
    }

    async fn complete_job(&self, id: i64, worker: &str, now: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET state = 'done', locked_by = NULL, locked_until = NULL, updated_at = $1 \
             WHERE id = $2 AND state = 'running' AND locked_by = $3",
        )
        .bind(now)
        .bind(id)
        .bind(worker)
        .execute(self.db())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn fail_job(
        &self,
        id: i64,
        worker: &str,
        error: &str,
        retry_at: Option<i64>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let state = if retry_at.is_some() { "queued" } else { "failed" };
        let done = sqlx::query(
            "UPDATE jobs SET state = $1, run_after = COALESCE($2, run_after), last_error = $3, locked_by = NULL, locked_until = NULL, updated_at = $4 \
             WHERE id = $5 AND state = 'running' AND locked_by = $6",
        )
        .bind(state)
        .bind(retry_at)
        .bind(error)
        .bind(now)
        .bind(id)
        .bind(worker)
        .execute(self.db())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn job(&self, id: i64) -> Result<Option<JobStatus>, StoreError> {
        let row: Option<StatusRow> =
            sqlx::query_as("SELECT id, delivery_id, state, attempts, last_error FROM jobs WHERE id = $1")
                .bind(id)
                .fetch_optional(self.db())
                .await?;
        Ok(row.map(JobStatus::from))
    }

    async fn latest_pr_head(&self, repository: &str, number: u64) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT head_sha FROM pr_heads WHERE repository = $1 AND number = $2 ORDER BY seen_at DESC LIMIT 1",
        )
        .bind(repository)
        .bind(number as i64)
        .fetch_optional(self.db())
        .await?;
        Ok(row.map(|(sha,)| sha))
    }

    async fn queue_depth(&self) -> Result<i64, StoreError> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running')")
            .fetch_one(self.db())
            .await?;
        Ok(n)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT COUNT(*) FROM jobs").fetch_one(self.db()).await?;
        Ok(())
    }
}

/// Claims on SQLite: one `UPDATE` statement; SQLite serializes writers, so two claimers cannot take the
/// same row. `only` narrows the ready jobs (`… AND `, or empty).
fn claim_sqlite(only: &str) -> String {
    format!(
        "UPDATE jobs SET state = 'running', locked_by = $1, locked_until = $2, attempts = attempts + 1, updated_at = $3, \
           takeovers = takeovers + (CASE WHEN state = 'running' THEN 1 ELSE 0 END) \
         WHERE id = (SELECT id FROM jobs WHERE {only}((state = 'queued' AND run_after <= $3) OR (state = 'running' AND locked_until < $3)) \
                     ORDER BY id LIMIT 1) \
         RETURNING id, delivery_id, attempts, takeovers, \
           (SELECT event FROM deliveries WHERE deliveries.id = jobs.delivery_id) AS event, \
           (SELECT repository FROM deliveries WHERE deliveries.id = jobs.delivery_id) AS repository, \
           (SELECT payload FROM deliveries WHERE deliveries.id = jobs.delivery_id) AS payload, \
           (SELECT received_at FROM deliveries WHERE deliveries.id = jobs.delivery_id) AS received_at"
    )
}

/// Claims on PostgreSQL: concurrent claimers skip each other's rows (`FOR UPDATE SKIP LOCKED`). `only` as
/// on SQLite.
fn claim_postgres(only: &str) -> String {
    format!(
        "WITH next AS ( \
           SELECT id FROM jobs WHERE {only}((state = 'queued' AND run_after <= $3) OR (state = 'running' AND locked_until < $3)) \
           ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) \
         UPDATE jobs SET state = 'running', locked_by = $1, locked_until = $2, attempts = jobs.attempts + 1, updated_at = $3, \
           takeovers = jobs.takeovers + (CASE WHEN jobs.state = 'running' THEN 1 ELSE 0 END) \
         FROM next, deliveries d WHERE jobs.id = next.id AND d.id = jobs.delivery_id \
         RETURNING jobs.id, jobs.delivery_id, jobs.attempts, jobs.takeovers, d.event, d.repository, d.payload, d.received_at"
    )
}

/// Two GCRA buckets ("generic cell rate algorithm", as the `governor` crate uses in one process): each
/// allows `burst` writes at once, then one every `period_ms`. A bucket's state is the theoretical arrival
/// time (TAT) of the next write; a write conforms when `now >= tat - period * (burst - 1)`, and moves the
/// TAT to `max(tat, now) + period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteBudget {
    pub minute_period_ms: i64,
    pub minute_burst: i64,
    pub hour_period_ms: i64,
    pub hour_burst: i64,
}

impl WriteBudget {
    pub fn minute_tolerance(&self) -> i64 {
        self.minute_period_ms * (self.minute_burst - 1)
    }

    pub fn hour_tolerance(&self) -> i64 {
        self.hour_period_ms * (self.hour_burst - 1)
    }

    /// The wait before a write conforms to both buckets, given their TATs.
    pub fn wait(&self, minute_tat: i64, hour_tat: i64, now: i64) -> i64 {
        (minute_tat - self.minute_tolerance() - now).max(hour_tat - self.hour_tolerance() - now).max(1)
    }
}

/// Exponential backoff for a job that failed after `attempts` tries: 2 s, 4 s, 8 s … capped at 10 minutes;
/// after [`MAX_ATTEMPTS`] the job fails for good.
pub const MAX_ATTEMPTS: i32 = 8;

pub fn retry_delay(attempts: i32) -> Option<Duration> {
    (attempts < MAX_ATTEMPTS).then(|| Duration::from_secs((1u64 << attempts.clamp(1, 20)).min(600)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_cap_then_gives_up() {
        assert_eq!(retry_delay(1), Some(Duration::from_secs(2)));
        assert_eq!(retry_delay(2), Some(Duration::from_secs(4)));
        assert!(retry_delay(7).unwrap() <= Duration::from_secs(600));
        assert_eq!(retry_delay(MAX_ATTEMPTS), None);
    }
}
