//! The outboxes: what must still leave the service, written before it is sent so a crash loses
//! nothing. GitHub deployment statuses, ledger records and notifications.

use async_trait::async_trait;
use serde::Serialize;

use super::deployments::{DeploymentRow, DEPLOYMENT_COLUMNS};
use super::sql::SqlStore;
use super::StoreError;
use crate::deployment::{Deployment, DeploymentId, DeploymentState};
use crate::policy::Notifications;

/// A message to queue.
#[derive(Debug, Clone)]
pub struct NewNotification {
    pub event: String,
    pub kind: String,
    pub url: Option<String>,
    pub payload: serde_json::Value,
    /// `Some(why)`: no transport for it; recorded as undeliverable instead of being dropped.
    pub undeliverable: Option<String>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Notification {
    pub id: i64,
    #[sqlx(rename = "deployment_id")]
    pub deployment: String,
    pub event: String,
    pub kind: String,
    pub url: Option<String>,
    pub payload: String,
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
}

pub enum NotificationOutcome<'a> {
    Sent,
    Retry { at: i64, error: &'a str },
    Failed { error: &'a str },
}

#[derive(sqlx::FromRow)]
pub(super) struct GithubSyncRow {
    #[sqlx(flatten)]
    pub(super) deployment: DeploymentRow,
    pub(super) github_id: Option<i64>,
}

#[derive(sqlx::FromRow)]
pub(super) struct UnnotifiedRow {
    #[sqlx(flatten)]
    pub(super) deployment: DeploymentRow,
    pub(super) notifications: Option<String>,
}

pub(super) const NOTIFICATION_COLUMNS: &str =
    "id, deployment_id, event, kind, url, payload, state, attempts, last_error";

/// What still has to leave the service, each written before it is sent: GitHub deployment statuses,
/// ledger records and notifications.
#[async_trait]
pub trait Outboxes: Send + Sync {
    /// Deployments of `repository` whose state GitHub has not been told yet, oldest first, with their
    /// GitHub deployment id if one was created.
    async fn unsynced_github_deployments(
        &self,
        repository: &str,
        limit: i64,
    ) -> Result<Vec<(Deployment, Option<i64>)>, StoreError>;

    /// Records that GitHub deployment `github_id` shows `state` for deployment `id`.
    async fn set_github_sync(&self, id: &str, github_id: i64, state: DeploymentState) -> Result<(), StoreError>;

    /// Signed deployments of `repository` whose record is not in the Git ledger yet, in sequence order.
    async fn unpublished_records(&self, repository: &str, limit: i64) -> Result<Vec<Deployment>, StoreError>;

    async fn set_ledger_published(&self, ids: &[DeploymentId], now: i64) -> Result<(), StoreError>;

    /// Deployments of `repository` whose current state has not been considered for notifications,
    /// with the policy's `notifications` block they were planned under.
    async fn unnotified(&self, repository: &str, limit: i64) -> Result<Vec<(Deployment, Notifications)>, StoreError>;

    /// Queues `messages` for deployment `id` and marks `state` as notified, in one transaction.
    async fn queue_notifications(
        &self,
        id: &str,
        state: DeploymentState,
        messages: &[NewNotification],
        now: i64,
    ) -> Result<(), StoreError>;

    /// Claims up to `limit` due messages for `lease_ms` (another sender skips them meanwhile).
    async fn claim_notifications(&self, now: i64, lease_ms: i64, limit: i64) -> Result<Vec<Notification>, StoreError>;

    /// Records a delivery attempt: sent, or retry at `retry_at`, or failed for good.
    async fn notification_attempted(
        &self,
        id: i64,
        outcome: NotificationOutcome<'_>,
        now: i64,
    ) -> Result<(), StoreError>;

    async fn notifications_of(&self, deployment: &str) -> Result<Vec<Notification>, StoreError>;
}

#[async_trait]
impl Outboxes for SqlStore {
    async fn unsynced_github_deployments(
        &self,
        repository: &str,
        limit: i64,
    ) -> Result<Vec<(Deployment, Option<i64>)>, StoreError> {
        let sql = format!(
            "SELECT {DEPLOYMENT_COLUMNS}, github_id FROM deployments WHERE repository = $1 \
             AND (github_state IS NULL OR github_state <> state) ORDER BY created_at, seq LIMIT $2"
        );
        let rows: Vec<GithubSyncRow> = sqlx::query_as(&sql).bind(repository).bind(limit).fetch_all(self.db()).await?;
        Ok(rows.into_iter().map(|r| (r.deployment.into(), r.github_id)).collect())
    }

    async fn set_github_sync(&self, id: &str, github_id: i64, state: DeploymentState) -> Result<(), StoreError> {
        sqlx::query("UPDATE deployments SET github_id = $1, github_state = $2 WHERE id = $3")
            .bind(github_id)
            .bind(state.as_str())
            .bind(id)
            .execute(self.db())
            .await?;
        Ok(())
    }

    async fn unpublished_records(&self, repository: &str, limit: i64) -> Result<Vec<Deployment>, StoreError> {
        let sql = format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE repository = $1 AND record IS NOT NULL \
             AND ledger_at IS NULL ORDER BY environment, seq LIMIT $2"
        );
        let rows: Vec<DeploymentRow> = sqlx::query_as(&sql).bind(repository).bind(limit).fetch_all(self.db()).await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn set_ledger_published(&self, ids: &[DeploymentId], now: i64) -> Result<(), StoreError> {
        for id in ids {
            sqlx::query("UPDATE deployments SET ledger_at = $1 WHERE id = $2 AND ledger_at IS NULL")
                .bind(now)
                .bind(id.as_str())
                .execute(self.db())
                .await?;
        }
        Ok(())
    }

    async fn unnotified(&self, repository: &str, limit: i64) -> Result<Vec<(Deployment, Notifications)>, StoreError> {
        let sql = format!(
            "SELECT {DEPLOYMENT_COLUMNS}, notifications FROM deployments WHERE repository = $1 \
             AND (notified_state IS NULL OR notified_state <> state) ORDER BY created_at, seq LIMIT $2"
        );
        let rows: Vec<UnnotifiedRow> = sqlx::query_as(&sql).bind(repository).bind(limit).fetch_all(self.db()).await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                // Rows written before the block was typed hold it as the policy wrote it: the same keys.
                let block = r
                    .notifications
                    .and_then(|n| serde_json::from_str(&n).ok())
                    .map(Notifications::from_json)
                    .unwrap_or_default();
                (r.deployment.into(), block)
            })
            .collect())
    }

    async fn queue_notifications(
        &self,
        id: &str,
        state: DeploymentState,
        messages: &[NewNotification],
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        for m in messages {
            let (state, error) = match &m.undeliverable {
                Some(why) => ("undeliverable", Some(why.as_str())),
                None => ("pending", None),
            };
            sqlx::query(
                "INSERT INTO notifications (deployment_id, event, kind, url, payload, state, next_at, last_error, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $7, $7)",
            )
            .bind(id)
            .bind(&m.event)
            .bind(&m.kind)
            .bind(&m.url)
            .bind(m.payload.to_string())
            .bind(state)
            .bind(now)
            .bind(error)
            .execute(tx.db())
            .await?;
        }
        sqlx::query("UPDATE deployments SET notified_state = $1 WHERE id = $2")
            .bind(state.as_str())
            .bind(id)
            .execute(tx.db())
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn claim_notifications(&self, now: i64, lease_ms: i64, limit: i64) -> Result<Vec<Notification>, StoreError> {
        let mut tx = self.begin().await?;
        let sql = format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE state = 'pending' AND next_at <= $1 ORDER BY id LIMIT $2{}",
            self.dialect.skip_locked()
        );
        let due: Vec<Notification> = sqlx::query_as(&sql).bind(now).bind(limit).fetch_all(tx.db()).await?;
        for n in &due {
            sqlx::query("UPDATE notifications SET next_at = $1 WHERE id = $2")
                .bind(now + lease_ms)
                .bind(n.id)
                .execute(tx.db())
                .await?;
        }
        tx.commit().await?;
        Ok(due)
    }

    async fn notification_attempted(
        &self,
        id: i64,
        outcome: NotificationOutcome<'_>,
        now: i64,
    ) -> Result<(), StoreError> {
        let (state, next_at, error) = match outcome {
            NotificationOutcome::Sent => ("sent", now, None),
            NotificationOutcome::Retry { at, error } => ("pending", at, Some(error)),
            NotificationOutcome::Failed { error } => ("failed", now, Some(error)),
        };
        sqlx::query(
            "UPDATE notifications SET state = $1, next_at = $2, last_error = $3, attempts = attempts + 1, updated_at = $4 WHERE id = $5",
        )
        .bind(state)
        .bind(next_at)
        .bind(error)
        .bind(now)
        .bind(id)
        .execute(self.db())
        .await?;
        Ok(())
    }

    async fn notifications_of(&self, deployment: &str) -> Result<Vec<Notification>, StoreError> {
        let sql = format!("SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE deployment_id = $1 ORDER BY id");
        Ok(sqlx::query_as(&sql).bind(deployment).fetch_all(self.db()).await?)
    }
}
