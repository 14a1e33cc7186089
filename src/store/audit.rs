//! The append-only audit log.

use async_trait::async_trait;

use super::sql::SqlStore;
use super::StoreError;
use crate::deployment::{AuditEntry, DeploymentId, DeploymentState, EnvName};

/// An audit entry that is not a state transition (a refused approval, a token created).
#[derive(Debug, Clone, Default)]
pub struct NewAudit {
    pub actor: String,
    pub action: String,
    pub repository: Option<String>,
    pub environment: Option<EnvName>,
    pub deployment: Option<DeploymentId>,
    pub message: String,
}

#[derive(sqlx::FromRow)]
pub(super) struct AuditRow {
    id: i64,
    at: i64,
    actor: String,
    action: String,
    repository: Option<String>,
    environment: Option<String>,
    deployment_id: Option<String>,
    from_state: Option<String>,
    to_state: Option<String>,
    message: String,
}

impl From<AuditRow> for AuditEntry {
    fn from(r: AuditRow) -> AuditEntry {
        AuditEntry {
            id: r.id,
            at: r.at,
            actor: r.actor,
            action: r.action,
            repository: r.repository,
            environment: r.environment.map(Into::into),
            deployment: r.deployment_id.map(Into::into),
            from_state: r.from_state.as_deref().and_then(DeploymentState::parse),
            to_state: r.to_state.as_deref().and_then(DeploymentState::parse),
            message: r.message,
        }
    }
}

/// The append-only audit log.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Entries with an id above `after`, oldest first; of one deployment if given.
    async fn audit(&self, after: i64, deployment: Option<&str>, limit: i64) -> Result<Vec<AuditEntry>, StoreError>;

    async fn record_audit(&self, entry: &NewAudit, now: i64) -> Result<(), StoreError>;
}

#[async_trait]
impl AuditLog for SqlStore {
    async fn audit(&self, after: i64, deployment: Option<&str>, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT id, at, actor, action, repository, environment, deployment_id, from_state, to_state, message FROM audit \
             WHERE id > $1 AND ($2 IS NULL OR deployment_id = $2) ORDER BY id LIMIT $3",
        )
        .bind(after)
        .bind(deployment)
        .bind(limit.clamp(1, 10_000))
        .fetch_all(self.db())
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn record_audit(&self, e: &NewAudit, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit (at, actor, action, repository, environment, deployment_id, message) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(now)
        .bind(&e.actor)
        .bind(&e.action)
        .bind(&e.repository)
        .bind(e.environment.as_deref())
        .bind(e.deployment.as_deref())
        .bind(&e.message)
        .execute(self.db())
        .await?;
        Ok(())
    }
}
