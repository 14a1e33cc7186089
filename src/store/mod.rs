//! Durable state of the service behind one [`Store`] trait, with SQLite (the embedded default, WAL) and
//! PostgreSQL (several replicas on one database) implementations. One conformance suite runs against
//! both (`tests/store.rs`).
//!
//! The job queue is what makes "answer 202 at once, never lose a delivery" hold: a delivery and its job
//! are written in one transaction before the 202; a worker claims a job with a lease, so a worker that
//! dies mid-job leaves it to be claimed again when the lease runs out.

pub mod deployments;
mod postgres;
mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use deployments::{
    AgentReport, AgentStatus, ApiToken, ApiTokenHash, Approval, AuditEntry, Deployment, DeploymentFilter,
    DeploymentState, DeploymentStore, EnvironmentPause, Gate, NewAudit, NewDeployment, NewNotification, Notification,
    NotificationOutcome, PrApproval, PrMerge, Role,
};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL `{0}`: use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl(String),
}

/// A verified delivery to record.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub id: String,
    pub event: String,
    pub repository: Option<String>,
    pub payload: Vec<u8>,
    /// The pull-request head this delivery plans, remembered with it (see [`PrHead`]).
    pub pr_head: Option<PrHead>,
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

/// Milliseconds since the Unix epoch, the time unit of the store.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Everything the service keeps: the delivery queue here, deployments and the rest in
/// [`DeploymentStore`].
#[async_trait]
pub trait Store: DeploymentStore + Send + Sync {
    /// Records a delivery and queues its job atomically; a known delivery id is [`Recorded::Duplicate`],
    /// and so is a delivery whose `pr_head` is `only_if_new` and already seen.
    async fn record_delivery(&self, delivery: &NewDelivery, now: i64) -> Result<Recorded, StoreError>;

    /// Claims the oldest ready job (queued and due, or running with an expired lease) for `worker`.
    /// On PostgreSQL concurrent claimers skip each other's rows (`FOR UPDATE SKIP LOCKED`).
    async fn claim_job(&self, worker: &str, lease: Duration, now: i64) -> Result<Option<Job>, StoreError>;

    /// Marks a job done. Only its current holder may: a worker whose lease was taken over is refused.
    async fn complete_job(&self, id: i64, worker: &str, now: i64) -> Result<bool, StoreError>;

    /// Extends the lease of a job `worker` still holds to `locked_until`; `false` if it holds it no longer.
    async fn renew_job(&self, id: i64, worker: &str, locked_until: i64) -> Result<bool, StoreError>;

    /// Records a failure: with `retry_at` the job is queued again for then, without it it is failed for
    /// good (visible in [`Store::job`] and the queue metrics).
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

/// Opens the store a URL names (`sqlite://path` creates the file; `postgres://…`) and migrates it.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::open(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_string()))
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
