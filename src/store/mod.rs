//! Durable state of the service. One trait per aggregate, each small enough to read in one sitting:
//! the delivery queue ([`JobQueue`]), deployments ([`DeploymentStore`]), pull requests
//! ([`PullRequestStore`]), agents ([`AgentStore`]), tokens ([`TokenStore`]), the audit log ([`AuditLog`])
//! the outboxes ([`Outboxes`]), and the holds that let one replica at a time plan a repository
//! ([`PlanningHolds`]). [`Store`] is all of them. One implementation, [`SqlStore`], serves
//! SQLite (the embedded default, WAL) and PostgreSQL (several replicas on one database); one conformance
//! suite runs against both (`tests/store.rs`). The store maps rows to the domain types of
//! [`crate::deployment`] and writes no wording of its own.

mod agents;
mod audit;
mod deployments;
mod holds;
mod outbox;
mod pulls;
mod queue;
mod sql;
mod tokens;

use std::sync::Arc;

pub use agents::AgentStore;
pub use audit::{AuditLog, NewAudit};
pub use deployments::{Created, DeploymentFilter, DeploymentStore, NewDeployment};
pub use holds::{PlanningHolds, RepositoryHold, HOLD_WAIT};
pub use outbox::{NewNotification, Notification, NotificationOutcome, Outboxes};
pub use pulls::PullRequestStore;
pub use queue::{
    retry_delay, Job, JobQueue, JobState, JobStatus, NewDelivery, PrHead, Recorded, WriteBudget, MAX_ATTEMPTS,
    QUARANTINE_AFTER,
};
pub use sql::{Dialect, SqlStore, STATEMENT_TIMEOUT};
pub use tokens::{ApiTokenHash, TokenStore};

pub use crate::deployment::{
    AgentReport, AgentStatus, ApiToken, Approval, AuditEntry, Deployment, DeploymentState, EnvironmentPause, Gate,
    PrApproval, PrMerge, Role,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL `{0}`: use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl(String),
    /// [`PlanningHolds::hold_repository`] waited [`HOLD_WAIT`] in vain.
    #[error("another plan of {repository} (a push or a rollback, here or on another replica) has held it for {}s; a job retries by itself, a rollback can be asked for again", waited.as_secs())]
    Held { repository: String, waited: std::time::Duration },
}

/// Everything the service keeps.
pub trait Store:
    JobQueue
    + DeploymentStore
    + PlanningHolds
    + PullRequestStore
    + AgentStore
    + TokenStore
    + AuditLog
    + Outboxes
    + Send
    + Sync
{
}

impl<T> Store for T where
    T: JobQueue
        + DeploymentStore
        + PlanningHolds
        + PullRequestStore
        + AgentStore
        + TokenStore
        + AuditLog
        + Outboxes
        + Send
        + Sync
{
}

/// Milliseconds since the Unix epoch, the time unit of the store.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Opens the store a URL names (`sqlite://path` creates the file; `postgres://…`) and migrates it.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    open_with(url, STATEMENT_TIMEOUT).await
}

/// As [`open`], every statement given up after `limit` (see [`SqlStore::open_with`]).
pub async fn open_with(url: &str, limit: std::time::Duration) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(SqlStore::open_with(url, limit).await?))
}
