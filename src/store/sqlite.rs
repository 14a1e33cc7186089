//! SQLite: the embedded default. WAL journal so readers never block the writer; `synchronous=NORMAL`,
//! which in WAL mode survives a crash of the process (the durability that "answer 202, then work" needs)
//! and loses at most the last transactions on a power cut.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use super::{ClaimRow, Job, JobStatus, NewDelivery, Recorded, StatusRow, Store, StoreError, WriteBudget};

pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) and migrates the database at `url` (`sqlite://honua.db`).
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(SqliteStore { pool })
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn record_delivery(&self, d: &NewDelivery, now: i64) -> Result<Recorded, StoreError> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO deliveries (id, event, repository, payload, received_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&d.id)
        .bind(&d.event)
        .bind(&d.repository)
        .bind(&d.payload)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            tx.rollback().await?;
            return Ok(Recorded::Duplicate);
        }
        if let Some(head) = &d.pr_head {
            let new_head = sqlx::query(if head.only_if_new { "INSERT INTO pr_heads (repository, number, head_sha, seen_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING" } else { "INSERT INTO pr_heads (repository, number, head_sha, seen_at) VALUES (?, ?, ?, ?) ON CONFLICT (repository, number, head_sha) DO UPDATE SET seen_at = excluded.seen_at" })
                .bind(d.repository.as_deref().unwrap_or_default())
                .bind(head.number as i64)
                .bind(&head.sha)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            if head.only_if_new && !new_head {
                tx.rollback().await?;
                return Ok(Recorded::Duplicate);
            }
        }
        let (job,): (i64,) = sqlx::query_as(
            "INSERT INTO jobs (delivery_id, state, run_after, created_at, updated_at) VALUES (?, 'queued', ?, ?, ?) RETURNING id",
        )
        .bind(&d.id)
        .bind(now)
        .bind(now)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Recorded::New(job))
    }

    async fn claim_job(&self, worker: &str, lease: Duration, now: i64) -> Result<Option<Job>, StoreError> {
        // One UPDATE statement: SQLite serializes writers, so two claimers cannot take the same row.
        let row: Option<ClaimRow> = sqlx::query_as(
            "UPDATE jobs SET state = 'running', locked_by = ?, locked_until = ?, attempts = attempts + 1, updated_at = ?, \
               takeovers = takeovers + (CASE WHEN state = 'running' THEN 1 ELSE 0 END) \
             WHERE id = (SELECT id FROM jobs WHERE (state = 'queued' AND run_after <= ?) OR (state = 'running' AND locked_until < ?) \
                         ORDER BY id LIMIT 1) \
             RETURNING id, delivery_id, attempts, takeovers, \
               (SELECT event FROM deliveries WHERE deliveries.id = jobs.delivery_id) AS event, \
               (SELECT repository FROM deliveries WHERE deliveries.id = jobs.delivery_id) AS repository, \
               (SELECT payload FROM deliveries WHERE deliveries.id = jobs.delivery_id) AS payload",
        )
        .bind(worker)
        .bind(now + lease.as_millis() as i64)
        .bind(now)
        .bind(now)
        .bind(now)
        .fetch_optional(&self.pool)
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
            let taken = sqlx::query(
                "UPDATE write_budgets SET minute_tat = MAX(minute_tat, $1) + $2, hour_tat = MAX(hour_tat, $1) + $3 \
                 WHERE installation = $4 AND minute_tat - $5 <= $1 AND hour_tat - $6 <= $1",
            )
            .bind(now)
            .bind(budget.minute_period_ms)
            .bind(budget.hour_period_ms)
            .bind(installation)
            .bind(budget.minute_tolerance())
            .bind(budget.hour_tolerance())
            .execute(&self.pool)
            .await?;
            if taken.rows_affected() == 1 {
                return Ok(None);
            }
            let tats: Option<(i64, i64)> =
                sqlx::query_as("SELECT minute_tat, hour_tat FROM write_budgets WHERE installation = $1")
                    .bind(installation)
                    .fetch_optional(&self.pool)
                    .await?;
            match tats {
                Some((minute_tat, hour_tat)) => return Ok(Some(budget.wait(minute_tat, hour_tat, now))),
                // The installation's first write: its row is made, then taken from like any other.
                None => {
                    sqlx::query("INSERT INTO write_budgets (installation, minute_tat, hour_tat) VALUES ($1, 0, 0) ON CONFLICT (installation) DO NOTHING")
                        .bind(installation)
                        .execute(&self.pool)
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
                .execute(&self.pool)
                .await?;
        Ok(renewed.rows_affected() == 1)
    }

    async fn complete_job(&self, id: i64, worker: &str, now: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET state = 'done', locked_by = NULL, locked_until = NULL, updated_at = ? \
             WHERE id = ? AND state = 'running' AND locked_by = ?",
        )
        .bind(now)
        .bind(id)
        .bind(worker)
        .execute(&self.pool)
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
            "UPDATE jobs SET state = ?, run_after = COALESCE(?, run_after), last_error = ?, locked_by = NULL, locked_until = NULL, updated_at = ? \
             WHERE id = ? AND state = 'running' AND locked_by = ?",
        )
        .bind(state)
        .bind(retry_at)
        .bind(error)
        .bind(now)
        .bind(id)
        .bind(worker)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn job(&self, id: i64) -> Result<Option<JobStatus>, StoreError> {
        let row: Option<StatusRow> =
            sqlx::query_as("SELECT id, delivery_id, state, attempts, last_error FROM jobs WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(JobStatus::from))
    }

    async fn latest_pr_head(&self, repository: &str, number: u64) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT head_sha FROM pr_heads WHERE repository = ? AND number = ? ORDER BY seen_at DESC LIMIT 1",
        )
        .bind(repository)
        .bind(number as i64)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(sha,)| sha))
    }

    async fn queue_depth(&self) -> Result<i64, StoreError> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running')")
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT COUNT(*) FROM jobs").fetch_one(&self.pool).await?;
        Ok(())
    }
}

super::deployments::impl_deployment_store!(SqliteStore, sqlx::Sqlite, "BEGIN IMMEDIATE", "");
