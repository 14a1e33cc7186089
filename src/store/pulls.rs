//! Pull requests: approvals given on them, bound to the plan of one head, and their merges.

use async_trait::async_trait;

use super::sql::SqlStore;
use super::StoreError;
use crate::deployment::{PrApproval, PrInvalidation, PrMerge};

pub(super) const PR_APPROVAL_COLUMNS: &str =
    "repository, number, environment, head_sha, plan_digest, change_digest, actor, breaking, at";

#[derive(sqlx::FromRow)]
pub(super) struct PrApprovalRow {
    repository: String,
    number: i64,
    environment: String,
    head_sha: String,
    plan_digest: String,
    change_digest: String,
    actor: String,
    breaking: i64,
    at: i64,
}

impl From<PrApprovalRow> for PrApproval {
    fn from(r: PrApprovalRow) -> PrApproval {
        PrApproval {
            repository: r.repository,
            number: r.number as u64,
            environment: r.environment.into(),
            head_sha: r.head_sha.into(),
            plan_digest: r.plan_digest,
            change_digest: r.change_digest,
            actor: r.actor,
            breaking: r.breaking != 0,
            at: r.at,
        }
    }
}

/// What the service remembers of open and merged pull requests: approvals bound to a plan, and merges.
#[async_trait]
pub trait PullRequestStore: Send + Sync {
    /// Records an approval given on an open PR; an earlier valid approval of the same environment by
    /// the same person is replaced.
    async fn add_pr_approval(&self, approval: &PrApproval) -> Result<(), StoreError>;

    /// The valid (not invalidated) approvals of a PR.
    async fn pr_approvals(&self, repository: &str, number: u64) -> Result<Vec<PrApproval>, StoreError>;

    /// Invalidates the PR's valid approvals that `which` names and returns them.
    async fn invalidate_pr_approvals(
        &self,
        repository: &str,
        number: u64,
        which: PrInvalidation<'_>,
        now: i64,
    ) -> Result<Vec<PrApproval>, StoreError>;

    async fn record_pr_merge(&self, repository: &str, merge: &PrMerge, now: i64) -> Result<(), StoreError>;

    /// The PR merged as `merge_sha`, if one was.
    async fn pr_merge_of(&self, repository: &str, merge_sha: &str) -> Result<Option<PrMerge>, StoreError>;
}

#[async_trait]
impl PullRequestStore for SqlStore {
    async fn add_pr_approval(&self, a: &PrApproval) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE pr_approvals SET invalidated_at = $1, invalidated_by = 'replaced' \
             WHERE repository = $2 AND number = $3 AND environment = $4 AND actor = $5 AND invalidated_at IS NULL",
        )
        .bind(a.at)
        .bind(&a.repository)
        .bind(a.number as i64)
        .bind(a.environment.as_str())
        .bind(&a.actor)
        .execute(tx.db())
        .await?;
        sqlx::query(&format!(
            "INSERT INTO pr_approvals ({PR_APPROVAL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(&a.repository)
        .bind(a.number as i64)
        .bind(a.environment.as_str())
        .bind(a.head_sha.as_str())
        .bind(&a.plan_digest)
        .bind(&a.change_digest)
        .bind(&a.actor)
        .bind(a.breaking as i64)
        .bind(a.at)
        .execute(tx.db())
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn pr_approvals(&self, repository: &str, number: u64) -> Result<Vec<PrApproval>, StoreError> {
        let rows: Vec<PrApprovalRow> = sqlx::query_as(&format!(
            "SELECT {PR_APPROVAL_COLUMNS} FROM pr_approvals WHERE repository = $1 AND number = $2 AND invalidated_at IS NULL ORDER BY id"
        ))
        .bind(repository)
        .bind(number as i64)
        .fetch_all(self.db())
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn invalidate_pr_approvals(
        &self,
        repository: &str,
        number: u64,
        which: PrInvalidation<'_>,
        now: i64,
    ) -> Result<Vec<PrApproval>, StoreError> {
        let (keep_head, environment) = match which {
            PrInvalidation::Pushed { head } => (Some(head), None),
            PrInvalidation::Rejected { environment } => (None, Some(environment)),
        };
        let mut tx = self.begin().await?;
        let rows: Vec<PrApprovalRow> = sqlx::query_as(&format!(
            "SELECT {PR_APPROVAL_COLUMNS} FROM pr_approvals WHERE repository = $1 AND number = $2 AND invalidated_at IS NULL \
             AND ($3 IS NULL OR head_sha <> $3) AND ($4 IS NULL OR environment = $4) ORDER BY id{}",
            self.dialect.lock()
        ))
        .bind(repository)
        .bind(number as i64)
        .bind(keep_head)
        .bind(environment)
        .fetch_all(tx.db())
        .await?;
        sqlx::query(
            "UPDATE pr_approvals SET invalidated_at = $1, invalidated_by = $2 WHERE repository = $3 AND number = $4 \
             AND invalidated_at IS NULL AND ($5 IS NULL OR head_sha <> $5) AND ($6 IS NULL OR environment = $6)",
        )
        .bind(now)
        .bind(which.why())
        .bind(repository)
        .bind(number as i64)
        .bind(keep_head)
        .bind(environment)
        .execute(tx.db())
        .await?;
        tx.commit().await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn record_pr_merge(&self, repository: &str, m: &PrMerge, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO pr_merges (repository, number, merge_sha, head_sha, at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (repository, number) DO UPDATE SET merge_sha = excluded.merge_sha, head_sha = excluded.head_sha, at = excluded.at",
        )
        .bind(repository)
        .bind(m.number as i64)
        .bind(m.merge_sha.as_str())
        .bind(m.head_sha.as_str())
        .bind(now)
        .execute(self.db())
        .await?;
        Ok(())
    }

    async fn pr_merge_of(&self, repository: &str, merge_sha: &str) -> Result<Option<PrMerge>, StoreError> {
        let row: Option<(i64, String, String)> = sqlx::query_as(
            "SELECT number, merge_sha, head_sha FROM pr_merges WHERE repository = $1 AND merge_sha = $2 ORDER BY at DESC LIMIT 1",
        )
        .bind(repository)
        .bind(merge_sha)
        .fetch_optional(self.db())
        .await?;
        Ok(row.map(|(number, merge_sha, head_sha)| PrMerge {
            number: number as u64,
            merge_sha: merge_sha.into(),
            head_sha: head_sha.into(),
        }))
    }
}
