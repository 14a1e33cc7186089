//! The delivery queue. It is what makes "answer 202 at once, never lose a delivery" hold: a delivery and
//! its job are written in one transaction before the 202; a worker claims a job with a lease, so a worker
//! that dies mid-job leaves it to be claimed again when the lease runs out, and a job that outlived its
//! worker twice is quarantined instead of run again.

use std::time::Duration;

use async_trait::async_trait;

use super::sql::{placeholders, Dialect, SqlStore};
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

    /// Deletes up to `limit` jobs that ended (done, or failed for good) before `ended_before`, with their
    /// deliveries (the verified bodies, the bulk of the queue's size), in one transaction; returns how
    /// many. Queued and running jobs are never deleted. A delivery id that is deleted is no longer known
    /// as a duplicate; GitHub redelivers only the last three days' deliveries, and the poller's heads are
    /// known by `pr_heads` and the branch heads, which stay.
    async fn prune_jobs(&self, ended_before: i64, limit: u32) -> Result<u64, StoreError>;

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

    async fn prune_jobs(&self, ended_before: i64, limit: u32) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        // No ORDER BY: the walk of `jobs_in_order` meets the oldest ids first anyway, without a sort.
        let pruned: Vec<(String,)> = sqlx::query_as(
            "DELETE FROM jobs WHERE id IN \
             (SELECT id FROM jobs WHERE state IN ('done', 'failed') AND updated_at < $1 LIMIT $2) RETURNING delivery_id",
        )
        .bind(ended_before)
        .bind(i64::from(limit))
        .fetch_all(tx.db())
        .await?;
        if !pruned.is_empty() {
            let statement = format!("DELETE FROM deliveries WHERE id IN ({})", placeholders(1, pruned.len()));
            let mut delete = sqlx::query(&statement);
            for (delivery,) in &pruned {
                delete = delete.bind(delivery.as_str());
            }
            delete.execute(tx.db()).await?;
        }
        tx.commit().await?;
        Ok(pruned.len() as u64)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        // The schema is there and answers; counting the table would read every job ever run.
        sqlx::query("SELECT id FROM jobs LIMIT 1").fetch_optional(self.db()).await?;
        Ok(())
    }
}

/// The ready jobs of the claims below, each found by walking an index in id order from its first entry
/// (`jobs_in_order`, or `jobs_lane_in_order` for the deployment lane), so a claim costs the same with
/// 50,000 jobs queued as with one. One condition with an `OR` over both kinds made the planner collect
/// every due row and sort them per claim: a backlog made each claim slower, and the backlog grew.
/// `only` narrows the ready jobs (`… AND `, or empty).
fn ready_queued(only: &str) -> String {
    format!("SELECT id FROM jobs WHERE {only}state = 'queued' AND run_after <= $3 ORDER BY id LIMIT 1")
}

/// See [`ready_queued`]: a running job whose holder's lease ran out, for another worker to take over.
fn ready_expired(only: &str) -> String {
    format!("SELECT id FROM jobs WHERE {only}state = 'running' AND locked_until < $3 ORDER BY id LIMIT 1")
}

/// Claims on SQLite: one `UPDATE` statement; SQLite serializes writers, so two claimers cannot take the
/// same row. The oldest of the first due job and the first expired one.
fn claim_sqlite(only: &str) -> String {
    format!(
        "UPDATE jobs SET state = 'running', locked_by = $1, locked_until = $2, attempts = attempts + 1, updated_at = $3, \
           takeovers = takeovers + (CASE WHEN state = 'running' THEN 1 ELSE 0 END) \
         WHERE id = (SELECT MIN(id) FROM (SELECT id FROM ({queued}) UNION ALL SELECT id FROM ({expired}))) \
         RETURNING id, delivery_id, attempts, takeovers, \
           (SELECT event FROM deliveries WHERE deliveries.id = jobs.delivery_id) AS event, \
           (SELECT repository FROM deliveries WHERE deliveries.id = jobs.delivery_id) AS repository, \
           (SELECT payload FROM deliveries WHERE deliveries.id = jobs.delivery_id) AS payload, \
           (SELECT received_at FROM deliveries WHERE deliveries.id = jobs.delivery_id) AS received_at",
        queued = ready_queued(only),
        expired = ready_expired(only),
    )
}

/// Claims on PostgreSQL: concurrent claimers skip each other's rows (`FOR UPDATE SKIP LOCKED`; a locking
/// clause is not allowed on a `UNION`, so each kind is locked in a CTE of its own). `only` as on SQLite.
fn claim_postgres(only: &str) -> String {
    format!(
        "WITH queued AS ({queued} FOR UPDATE SKIP LOCKED), expired AS ({expired} FOR UPDATE SKIP LOCKED), \
           next AS (SELECT MIN(id) AS id FROM (SELECT id FROM queued UNION ALL SELECT id FROM expired) AS ready) \
         UPDATE jobs SET state = 'running', locked_by = $1, locked_until = $2, attempts = jobs.attempts + 1, updated_at = $3, \
           takeovers = jobs.takeovers + (CASE WHEN jobs.state = 'running' THEN 1 ELSE 0 END) \
         FROM next, deliveries d WHERE jobs.id = next.id AND d.id = jobs.delivery_id \
         RETURNING jobs.id, jobs.delivery_id, jobs.attempts, jobs.takeovers, d.event, d.repository, d.payload, d.received_at",
        queued = ready_queued(only),
        expired = ready_expired(only),
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

    /// 2,000 jobs done and 2,000 queued, one in 50 of them deployment work, as a store under load has them.
    async fn backlog(store: &SqlStore) {
        let numbers = match store.dialect {
            Dialect::Sqlite => {
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 4000) SELECT i FROM n"
            }
            Dialect::Postgres => "SELECT i FROM generate_series(1, 4000) AS n(i)",
        };
        for statement in [
            format!("INSERT INTO deliveries (id, event, payload, received_at) SELECT 'd' || i, 'push', '', i FROM ({numbers}) AS n"),
            format!(
                "INSERT INTO jobs (delivery_id, state, run_after, created_at, updated_at, deploys) \
                 SELECT 'd' || i, CASE WHEN i <= 2000 THEN 'done' ELSE 'queued' END, i, i, i, CASE WHEN i % 50 = 0 THEN 1 ELSE 0 END FROM ({numbers}) AS n"
            ),
            "ANALYZE".to_string(),
        ] {
            sqlx::query(&statement).execute(store.db()).await.unwrap();
        }
    }

    /// The planner's plan of a claim, one line per step.
    async fn claim_plan(store: &SqlStore, only: &str) -> Vec<String> {
        let (explain, claim) = match store.dialect {
            Dialect::Sqlite => ("EXPLAIN QUERY PLAN", claim_sqlite(only)),
            Dialect::Postgres => ("EXPLAIN", claim_postgres(only)),
        };
        let rows = sqlx::query(&format!("{explain} {claim}"))
            .bind("w")
            .bind(10_000i64)
            .bind(5_000i64)
            .fetch_all(store.db())
            .await
            .unwrap();
        let column = match store.dialect {
            Dialect::Sqlite => "detail",
            Dialect::Postgres => "QUERY PLAN",
        };
        rows.iter().map(|row| sqlx::Row::get::<String, _>(row, column)).collect()
    }

    /// A claim finds its job at the front of an index in id order, on either backend: no sort of every
    /// due job, no scan of the jobs done, so a backlog does not make each claim slower (which grew it).
    async fn claims_walk_an_index_in_order(store: SqlStore) {
        backlog(&store).await;
        for only in ["", "deploys = 1 AND "] {
            let plan = claim_plan(&store, only).await;
            // Either index, as the planner weighs them: both walk a state's entries in id order.
            let walks = |line: &&String| {
                ["jobs_in_order", "jobs_lane_in_order"].iter().any(|index| match store.dialect {
                    Dialect::Sqlite => line.contains(&format!("SEARCH jobs USING INDEX {index} (")),
                    Dialect::Postgres => line.contains(&format!("Index Scan using {index} on jobs")),
                })
            };
            assert_eq!(plan.iter().filter(walks).count(), 2, "{only}: {plan:#?}");
            for refused in ["TEMP B-TREE", "MULTI-INDEX", "SCAN jobs", "Sort", "Seq Scan on jobs", "Bitmap"] {
                assert!(!plan.iter().any(|line| line.contains(refused)), "{only}: {refused} in {plan:#?}");
            }
        }
    }

    #[tokio::test]
    async fn claims_walk_an_index_in_order_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("honua.db").display());
        claims_walk_an_index_in_order(SqlStore::open(&url).await.unwrap()).await;
    }

    #[tokio::test]
    async fn claims_walk_an_index_in_order_on_postgresql() {
        let Ok(url) = std::env::var("HONUA_TEST_DATABASE_URL") else {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "notice: HONUA_TEST_DATABASE_URL is not set; the PostgreSQL claim plan is not checked"
            );
            return;
        };
        let schema = format!("honua_claim_plan_{}_{}", std::process::id(), chrono::Utc::now().timestamp_micros());
        // Not a store: opening one migrates, and this connection is to the database's own schema.
        let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await.unwrap();
        sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&mut admin).await.unwrap();
        let mut in_schema = url::Url::parse(&url).unwrap();
        in_schema.query_pairs_mut().append_pair("options", &format!("-c search_path={schema}"));
        let store = SqlStore::open(in_schema.as_str()).await.unwrap();
        // The dead versions a claim walks past are vacuumed after a fixed number, not a fifth of the table.
        let (options,): (String,) =
            sqlx::query_as("SELECT array_to_string(reloptions, ',') FROM pg_class WHERE oid = 'jobs'::regclass")
                .fetch_one(store.db())
                .await
                .unwrap();
        for option in ["autovacuum_vacuum_scale_factor=0", "autovacuum_vacuum_threshold=5000"] {
            assert!(options.split(',').any(|o| o == option), "{option} not in {options}");
        }
        claims_walk_an_index_in_order(store).await;
        sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&mut admin).await.unwrap();
    }
}
