//! Deployments, approvals, the append-only audit log, API tokens, the signing key and deployed branch
//! heads. The SQL is the same on both backends (`$N` placeholders work on SQLite too), so one macro
//! implements [`DeploymentStore`] for each; only locking differs: `FOR UPDATE` on PostgreSQL, and on
//! SQLite `BEGIN IMMEDIATE`, which takes the write lock up front (a transaction that reads first and
//! writes later would fail with SQLITE_BUSY_SNAPSHOT when another writer committed in between).

use serde::Serialize;

use super::StoreError;

pub use crate::deployment::{AgentReport, AgentStatus, Approval, AuditEntry, Deployment, DeploymentState, Gate, Role};

/// A deployment to create. The caller assigned its id and sequence (see
/// [`DeploymentStore::next_sequence`]) so an auto-approved one is created already signed.
#[derive(Debug, Clone)]
pub struct NewDeployment {
    pub id: String,
    pub repository: String,
    pub environment: String,
    pub sequence: i64,
    pub commit: String,
    pub from_commit: Option<String>,
    pub plan_digest: String,
    pub plan: serde_json::Value,
    pub state: DeploymentState,
    pub gate: Gate,
    pub reasons: Vec<String>,
    pub windows: crate::policy::window::Rules,
    /// The policy's `notifications` block for the environment, as written.
    pub notifications: serde_json::Value,
    pub safety: Option<crate::plan::signing::ApplySafety>,
    pub cause: String,
    pub approvals: Vec<Approval>,
    pub record: Option<String>,
    pub signature: Option<String>,
    /// Who caused it and why, for the audit log.
    pub actor: String,
    pub message: String,
}

/// An audit entry that is not a state transition (a refused approval, a token created).
#[derive(Debug, Clone, Default)]
pub struct NewAudit {
    pub actor: String,
    pub action: String,
    pub repository: Option<String>,
    pub environment: Option<String>,
    pub deployment: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct ApiToken {
    pub name: String,
    pub role: Role,
    pub environment: Option<String>,
}

#[derive(sqlx::FromRow)]
pub(super) struct DeploymentRow {
    id: String,
    repository: String,
    environment: String,
    seq: i64,
    commit_sha: String,
    from_sha: Option<String>,
    plan_digest: String,
    plan: String,
    state: String,
    gate: String,
    reasons: String,
    windows: String,
    safety: String,
    cause: String,
    record: Option<String>,
    signature: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl From<DeploymentRow> for Deployment {
    fn from(r: DeploymentRow) -> Deployment {
        Deployment {
            id: r.id,
            repository: r.repository,
            environment: r.environment,
            sequence: r.seq,
            commit: r.commit_sha,
            from_commit: r.from_sha,
            plan_digest: r.plan_digest,
            plan: serde_json::from_str(&r.plan).unwrap_or(serde_json::Value::Null),
            // The column's CHECK constraint admits only known states.
            state: DeploymentState::parse(&r.state).unwrap_or(DeploymentState::Failed),
            gate: Gate::parse(&r.gate),
            reasons: serde_json::from_str(&r.reasons).unwrap_or_default(),
            windows: serde_json::from_str(&r.windows).unwrap_or_default(),
            safety: serde_json::from_str(&r.safety).ok(),
            cause: r.cause,
            record: r.record,
            signature: r.signature,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct GithubSyncRow {
    #[sqlx(flatten)]
    pub(super) deployment: DeploymentRow,
    pub(super) github_id: Option<i64>,
}

#[derive(sqlx::FromRow)]
pub(super) struct ApprovalRow {
    actor: String,
    via: String,
    plan_digest: String,
    breaking: i64,
    at: i64,
}

impl From<ApprovalRow> for Approval {
    fn from(r: ApprovalRow) -> Approval {
        Approval { actor: r.actor, via: r.via, plan_digest: r.plan_digest, breaking: r.breaking != 0, at: r.at }
    }
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
            environment: r.environment,
            deployment: r.deployment_id,
            from_state: r.from_state,
            to_state: r.to_state,
            message: r.message,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct TokenRow {
    name: String,
    role: String,
    environment: Option<String>,
}

impl TokenRow {
    pub(super) fn into_token(self) -> Option<ApiToken> {
        Some(ApiToken { name: self.name, role: Role::parse(&self.role)?, environment: self.environment })
    }
}

/// An approval given on an open pull request for one environment, bound to the plan of one head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrApproval {
    pub repository: String,
    pub number: u64,
    pub environment: String,
    pub head_sha: String,
    pub plan_digest: String,
    /// Digest of the environment, changes and decision (no revisions): what must match at merge.
    pub change_digest: String,
    pub actor: String,
    pub breaking: bool,
    pub at: i64,
}

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
            environment: r.environment,
            head_sha: r.head_sha,
            plan_digest: r.plan_digest,
            change_digest: r.change_digest,
            actor: r.actor,
            breaking: r.breaking != 0,
            at: r.at,
        }
    }
}

/// A merged pull request: its merge commit and the head it was merged at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrMerge {
    pub number: u64,
    pub merge_sha: String,
    pub head_sha: String,
}

pub(super) const PR_APPROVAL_COLUMNS: &str =
    "repository, number, environment, head_sha, plan_digest, change_digest, actor, breaking, at";

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
pub(super) struct UnnotifiedRow {
    #[sqlx(flatten)]
    pub(super) deployment: DeploymentRow,
    pub(super) notifications: Option<String>,
}

pub(super) const NOTIFICATION_COLUMNS: &str =
    "id, deployment_id, event, kind, url, payload, state, attempts, last_error";

/// Which deployments to list.
#[derive(Debug, Clone, Default)]
pub struct DeploymentFilter {
    pub repository: Option<String>,
    pub environment: Option<String>,
    pub states: Vec<DeploymentState>,
    pub limit: i64,
}

#[async_trait::async_trait]
pub trait DeploymentStore: Send + Sync {
    /// The next sequence number of `environment` in `repository` (1, 2, …); never handed out twice.
    async fn next_sequence(&self, repository: &str, environment: &str) -> Result<i64, StoreError>;

    /// Creates a deployment with its approvals and audit entries, and supersedes the environment's
    /// older deployments that have not started. Returns the ids superseded.
    async fn create_deployment(&self, new: &NewDeployment, now: i64) -> Result<Vec<String>, StoreError>;

    async fn deployment(&self, id: &str) -> Result<Option<Deployment>, StoreError>;

    /// Newest first.
    async fn deployments(&self, filter: &DeploymentFilter) -> Result<Vec<Deployment>, StoreError>;

    async fn approvals(&self, id: &str) -> Result<Vec<Approval>, StoreError>;

    /// Moves a deployment to `to` if the transition table allows it from where it is
    /// ([`DeploymentState::comes_from`]), recording who and why. `false` (nothing changed) otherwise:
    /// someone else moved it first.
    async fn transition(
        &self,
        id: &str,
        to: DeploymentState,
        actor: &str,
        message: &str,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// Approves a deployment that may be approved (awaiting approval, or blocked): records the approval,
    /// the signed record and the transition to `approved` together. `false` when it moved on meanwhile.
    async fn approve(
        &self,
        id: &str,
        approval: &Approval,
        record: &str,
        signature: &str,
        message: &str,
    ) -> Result<bool, StoreError>;

    /// Entries with an id above `after`, oldest first; of one deployment if given.
    async fn audit(&self, after: i64, deployment: Option<&str>, limit: i64) -> Result<Vec<AuditEntry>, StoreError>;

    async fn record_audit(&self, entry: &NewAudit, now: i64) -> Result<(), StoreError>;

    /// The last commit of `branch` the service deployed from (webhook or poll).
    async fn branch_head(&self, repository: &str, branch: &str) -> Result<Option<String>, StoreError>;

    async fn set_branch_head(&self, repository: &str, branch: &str, sha: &str, now: i64) -> Result<(), StoreError>;

    /// Stores a token's hash; `false` if the name is taken.
    async fn create_token(&self, name: &str, token: &ApiTokenHash<'_>, now: i64) -> Result<bool, StoreError>;

    async fn token(&self, hash: &str) -> Result<Option<ApiToken>, StoreError>;

    /// The secret stored under `name`, storing `candidate` first if there is none (the first replica to
    /// start wins; every replica then signs with the same key).
    async fn service_key(&self, name: &str, candidate: &[u8], now: i64) -> Result<Vec<u8>, StoreError>;

    /// Records an approval given on an open PR; an earlier valid approval of the same environment by
    /// the same person is replaced.
    async fn add_pr_approval(&self, approval: &PrApproval) -> Result<(), StoreError>;

    /// The valid (not invalidated) approvals of a PR.
    async fn pr_approvals(&self, repository: &str, number: u64) -> Result<Vec<PrApproval>, StoreError>;

    /// Invalidates the PR's valid approvals given at another head than `head_sha` (or, with
    /// `environment`, that environment's approvals at any head) and returns them.
    async fn invalidate_pr_approvals(
        &self,
        repository: &str,
        number: u64,
        keep_head: Option<&str>,
        environment: Option<&str>,
        why: &str,
        now: i64,
    ) -> Result<Vec<PrApproval>, StoreError>;

    async fn record_pr_merge(&self, repository: &str, merge: &PrMerge, now: i64) -> Result<(), StoreError>;

    /// The PR merged as `merge_sha`, if one was.
    async fn pr_merge_of(&self, repository: &str, merge_sha: &str) -> Result<Option<PrMerge>, StoreError>;

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

    async fn set_ledger_published(&self, ids: &[String], now: i64) -> Result<(), StoreError>;

    /// Deployments of `repository` whose current state has not been considered for notifications,
    /// with the policy's `notifications` block they were planned under.
    async fn unnotified(
        &self,
        repository: &str,
        limit: i64,
    ) -> Result<Vec<(Deployment, serde_json::Value)>, StoreError>;

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

    /// Records an agent's report of a phase (and its check-in). `false` when the same agent already
    /// reported that phase of that deployment: a re-sent report changes nothing.
    async fn record_agent_report(&self, report: &AgentReport) -> Result<bool, StoreError>;

    /// An agent's check-in without a report (it asked for its desired state).
    async fn agent_seen(&self, name: &str, environment: &str, now: i64) -> Result<(), StoreError>;

    /// Records an agent's heartbeat (and check-in); returns the heartbeat it replaces.
    async fn agent_heartbeat(
        &self,
        name: &str,
        environment: &str,
        heartbeat: &str,
        now: i64,
    ) -> Result<Option<String>, StoreError>;

    async fn agents(&self, environment: Option<&str>) -> Result<Vec<AgentStatus>, StoreError>;

    async fn agent_reports(&self, deployment: &str) -> Result<Vec<AgentReport>, StoreError>;

    /// Pauses automatic deployments of an environment while the branch head is `commit_sha`.
    async fn pause_environment(&self, pause: &EnvironmentPause) -> Result<(), StoreError>;

    async fn environment_pause(
        &self,
        repository: &str,
        environment: &str,
    ) -> Result<Option<EnvironmentPause>, StoreError>;

    async fn resume_environment(&self, repository: &str, environment: &str) -> Result<(), StoreError>;
}

/// Automatic deployments of an environment are paused after a rollback, until the branch moves past
/// `commit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct EnvironmentPause {
    pub repository: String,
    pub environment: String,
    #[sqlx(rename = "commit_sha")]
    pub commit: String,
    pub deployment: String,
    pub actor: String,
    pub at: i64,
}

/// A token to store: its role, environment and SHA-256.
#[derive(Debug, Clone)]
pub struct ApiTokenHash<'a> {
    pub role: Role,
    pub environment: Option<&'a str>,
    pub hash: &'a str,
}

pub(super) const DEPLOYMENT_COLUMNS: &str = "id, repository, environment, seq, commit_sha, from_sha, plan_digest, plan, state, gate, reasons, windows, safety, cause, record, signature, created_at, updated_at";

/// `$first, $first+1, …` for `n` values.
pub(super) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

macro_rules! impl_deployment_store {
    ($store:ident, $db:ty, $begin:literal, $lock:literal) => {
        mod deployment_store {
            use super::$store;
            use $crate::store::deployments::*;
            use $crate::store::StoreError;

        #[async_trait::async_trait]
        impl DeploymentStore for $store {
            async fn next_sequence(&self, repository: &str, environment: &str) -> Result<i64, StoreError> {
                let (last,): (i64,) = sqlx::query_as(
                    "INSERT INTO deployment_sequences (repository, environment, last) VALUES ($1, $2, 1) \
                     ON CONFLICT (repository, environment) DO UPDATE SET last = deployment_sequences.last + 1 RETURNING last",
                )
                .bind(repository)
                .bind(environment)
                .fetch_one(&self.pool)
                .await?;
                Ok(last)
            }

            async fn create_deployment(&self, d: &NewDeployment, now: i64) -> Result<Vec<String>, StoreError> {
                use DeploymentState as S;
                let mut tx = self.pool.begin_with($begin).await?;
                sqlx::query(
                    "INSERT INTO deployments (id, repository, environment, seq, commit_sha, from_sha, plan_digest, plan, state, gate, \
                     reasons, windows, cause, record, signature, created_at, updated_at, notifications, safety) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $16, $17, $18)",
                )
                .bind(&d.id)
                .bind(&d.repository)
                .bind(&d.environment)
                .bind(d.sequence)
                .bind(&d.commit)
                .bind(&d.from_commit)
                .bind(&d.plan_digest)
                .bind(d.plan.to_string())
                .bind(d.state.as_str())
                .bind(d.gate.as_str())
                .bind(serde_json::to_string(&d.reasons).expect("strings encode"))
                .bind(serde_json::to_string(&d.windows).expect("windows encode"))
                .bind(&d.cause)
                .bind(&d.record)
                .bind(&d.signature)
                .bind(now)
                .bind(d.notifications.to_string())
                .bind(d.safety.as_ref().map_or_else(|| "{}".to_string(), |s| serde_json::to_string(s).expect("safety encodes")))
                .execute(&mut *tx)
                .await?;
                for a in &d.approvals {
                    sqlx::query("INSERT INTO approvals (deployment_id, actor, via, plan_digest, breaking, at) VALUES ($1, $2, $3, $4, $5, $6)")
                        .bind(&d.id)
                        .bind(&a.actor)
                        .bind(&a.via)
                        .bind(&a.plan_digest)
                        .bind(a.breaking as i64)
                        .bind(a.at)
                        .execute(&mut *tx)
                        .await?;
                }
                let audit = "INSERT INTO audit (at, actor, action, repository, environment, deployment_id, from_state, to_state, message) \
                             VALUES ($1, $2, 'transition', $3, $4, $5, $6, $7, $8)";
                let steps = [
                    (None, S::Pending, d.actor.as_str(), d.message.clone()),
                    (Some(S::Pending), d.state, "policy", d.reasons.join("; ")),
                ];
                for (from, to, actor, message) in steps {
                    let message = if message.is_empty() { "the policy approves it automatically".to_string() } else { message };
                    sqlx::query(audit)
                        .bind(now)
                        .bind(actor)
                        .bind(&d.repository)
                        .bind(&d.environment)
                        .bind(&d.id)
                        .bind(from.map(S::as_str))
                        .bind(to.as_str())
                        .bind(message)
                        .execute(&mut *tx)
                        .await?;
                }
                let unstarted = placeholders(4, S::UNSTARTED.len());
                let sql = format!(
                    "SELECT id, state FROM deployments WHERE repository = $1 AND environment = $2 AND id <> $3 AND state IN ({unstarted}) ORDER BY seq{}",
                    $lock
                );
                let mut older = sqlx::query_as::<_, (String, String)>(&sql)
                .bind(&d.repository)
                .bind(&d.environment)
                .bind(&d.id);
                for s in S::UNSTARTED {
                    older = older.bind(s.as_str());
                }
                let older = older.fetch_all(&mut *tx).await?;
                for (id, state) in &older {
                    sqlx::query("UPDATE deployments SET state = 'superseded', updated_at = $1 WHERE id = $2")
                        .bind(now)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(audit)
                        .bind(now)
                        .bind("policy")
                        .bind(&d.repository)
                        .bind(&d.environment)
                        .bind(id)
                        .bind(state)
                        .bind(S::Superseded.as_str())
                        .bind(format!("superseded by {} (commit {})", d.id, crate::deployment::short_sha(&d.commit)))
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(older.into_iter().map(|(id, _)| id).collect())
            }

            async fn deployment(&self, id: &str) -> Result<Option<Deployment>, StoreError> {
                let sql = format!("SELECT {} FROM deployments WHERE id = $1", DEPLOYMENT_COLUMNS);
                let row: Option<DeploymentRow> =
                    sqlx::query_as(&sql).bind(id).fetch_optional(&self.pool).await?;
                Ok(row.map(Into::into))
            }

            async fn deployments(&self, f: &DeploymentFilter) -> Result<Vec<Deployment>, StoreError> {
                let mut sql = format!(
                    "SELECT {} FROM deployments WHERE ($1 IS NULL OR repository = $1) AND ($2 IS NULL OR environment = $2)",
                    DEPLOYMENT_COLUMNS
                );
                if !f.states.is_empty() {
                    sql += &format!(" AND state IN ({})", placeholders(3, f.states.len()));
                }
                sql += &format!(" ORDER BY created_at DESC, seq DESC LIMIT {}", f.limit.clamp(1, 1000));
                let mut q = sqlx::query_as::<_, DeploymentRow>(&sql)
                    .bind(&f.repository)
                    .bind(&f.environment);
                for s in &f.states {
                    q = q.bind(s.as_str());
                }
                Ok(q.fetch_all(&self.pool).await?.into_iter().map(Into::into).collect())
            }

            async fn approvals(&self, id: &str) -> Result<Vec<Approval>, StoreError> {
                let rows: Vec<ApprovalRow> = sqlx::query_as(
                    "SELECT actor, via, plan_digest, breaking, at FROM approvals WHERE deployment_id = $1 ORDER BY id",
                )
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn transition(
                &self,
                id: &str,
                to: DeploymentState,
                actor: &str,
                message: &str,
                now: i64,
            ) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin_with($begin).await?;
                let Some(d) = lock_deployment(&mut tx, id).await? else { return Ok(false) };
                if !to.comes_from().contains(&d.state) {
                    return Ok(false);
                }
                sqlx::query("UPDATE deployments SET state = $1, updated_at = $2 WHERE id = $3")
                    .bind(to.as_str())
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                insert_transition(&mut tx, &d, to, actor, message, now).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn approve(
                &self,
                id: &str,
                a: &Approval,
                record: &str,
                signature: &str,
                message: &str,
            ) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin_with($begin).await?;
                let Some(d) = lock_deployment(&mut tx, id).await? else { return Ok(false) };
                if !DeploymentState::Approved.comes_from().contains(&d.state) {
                    return Ok(false);
                }
                sqlx::query("UPDATE deployments SET state = 'approved', record = $1, signature = $2, updated_at = $3 WHERE id = $4")
                    .bind(record)
                    .bind(signature)
                    .bind(a.at)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("INSERT INTO approvals (deployment_id, actor, via, plan_digest, breaking, at) VALUES ($1, $2, $3, $4, $5, $6)")
                    .bind(id)
                    .bind(&a.actor)
                    .bind(&a.via)
                    .bind(&a.plan_digest)
                    .bind(a.breaking as i64)
                    .bind(a.at)
                    .execute(&mut *tx)
                    .await?;
                insert_transition(&mut tx, &d, DeploymentState::Approved, &a.actor, message, a.at).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn audit(&self, after: i64, deployment: Option<&str>, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
                let rows: Vec<AuditRow> = sqlx::query_as(
                    "SELECT id, at, actor, action, repository, environment, deployment_id, from_state, to_state, message FROM audit \
                     WHERE id > $1 AND ($2 IS NULL OR deployment_id = $2) ORDER BY id LIMIT $3",
                )
                .bind(after)
                .bind(deployment)
                .bind(limit.clamp(1, 10_000))
                .fetch_all(&self.pool)
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
                .bind(&e.environment)
                .bind(&e.deployment)
                .bind(&e.message)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn branch_head(&self, repository: &str, branch: &str) -> Result<Option<String>, StoreError> {
                let row: Option<(String,)> =
                    sqlx::query_as("SELECT sha FROM branch_heads WHERE repository = $1 AND branch = $2")
                        .bind(repository)
                        .bind(branch)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(row.map(|(sha,)| sha))
            }

            async fn set_branch_head(&self, repository: &str, branch: &str, sha: &str, now: i64) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO branch_heads (repository, branch, sha, seen_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (repository, branch) DO UPDATE SET sha = excluded.sha, seen_at = excluded.seen_at",
                )
                .bind(repository)
                .bind(branch)
                .bind(sha)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn create_token(&self, name: &str, t: &ApiTokenHash<'_>, now: i64) -> Result<bool, StoreError> {
                let inserted = sqlx::query(
                    "INSERT INTO api_tokens (name, role, environment, token_hash, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                )
                .bind(name)
                .bind(t.role.as_str())
                .bind(t.environment)
                .bind(t.hash)
                .bind(now)
                .execute(&self.pool)
                .await?
                .rows_affected();
                Ok(inserted == 1)
            }

            async fn token(&self, hash: &str) -> Result<Option<ApiToken>, StoreError> {
                let row: Option<TokenRow> = sqlx::query_as(
                    "SELECT name, role, environment FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
                )
                .bind(hash)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.and_then(|r| r.into_token()))
            }

            async fn service_key(&self, name: &str, candidate: &[u8], now: i64) -> Result<Vec<u8>, StoreError> {
                sqlx::query("INSERT INTO service_keys (name, secret, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                    .bind(name)
                    .bind(candidate)
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                let (secret,): (Vec<u8>,) = sqlx::query_as("SELECT secret FROM service_keys WHERE name = $1")
                    .bind(name)
                    .fetch_one(&self.pool)
                    .await?;
                Ok(secret)
            }

            async fn add_pr_approval(&self, a: &PrApproval) -> Result<(), StoreError> {
                let mut tx = self.pool.begin_with($begin).await?;
                sqlx::query(
                    "UPDATE pr_approvals SET invalidated_at = $1, invalidated_by = 'replaced' \
                     WHERE repository = $2 AND number = $3 AND environment = $4 AND actor = $5 AND invalidated_at IS NULL",
                )
                .bind(a.at)
                .bind(&a.repository)
                .bind(a.number as i64)
                .bind(&a.environment)
                .bind(&a.actor)
                .execute(&mut *tx)
                .await?;
                sqlx::query(&format!(
                    "INSERT INTO pr_approvals ({PR_APPROVAL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                ))
                .bind(&a.repository)
                .bind(a.number as i64)
                .bind(&a.environment)
                .bind(&a.head_sha)
                .bind(&a.plan_digest)
                .bind(&a.change_digest)
                .bind(&a.actor)
                .bind(a.breaking as i64)
                .bind(a.at)
                .execute(&mut *tx)
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
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn invalidate_pr_approvals(
                &self,
                repository: &str,
                number: u64,
                keep_head: Option<&str>,
                environment: Option<&str>,
                why: &str,
                now: i64,
            ) -> Result<Vec<PrApproval>, StoreError> {
                let mut tx = self.pool.begin_with($begin).await?;
                let rows: Vec<PrApprovalRow> = sqlx::query_as(&format!(
                    "SELECT {PR_APPROVAL_COLUMNS} FROM pr_approvals WHERE repository = $1 AND number = $2 AND invalidated_at IS NULL \
                     AND ($3 IS NULL OR head_sha <> $3) AND ($4 IS NULL OR environment = $4) ORDER BY id{}",
                    $lock
                ))
                .bind(repository)
                .bind(number as i64)
                .bind(keep_head)
                .bind(environment)
                .fetch_all(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE pr_approvals SET invalidated_at = $1, invalidated_by = $2 WHERE repository = $3 AND number = $4 \
                     AND invalidated_at IS NULL AND ($5 IS NULL OR head_sha <> $5) AND ($6 IS NULL OR environment = $6)",
                )
                .bind(now)
                .bind(why)
                .bind(repository)
                .bind(number as i64)
                .bind(keep_head)
                .bind(environment)
                .execute(&mut *tx)
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
                .bind(&m.merge_sha)
                .bind(&m.head_sha)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn pr_merge_of(&self, repository: &str, merge_sha: &str) -> Result<Option<PrMerge>, StoreError> {
                let row: Option<(i64, String, String)> = sqlx::query_as(
                    "SELECT number, merge_sha, head_sha FROM pr_merges WHERE repository = $1 AND merge_sha = $2 ORDER BY at DESC LIMIT 1",
                )
                .bind(repository)
                .bind(merge_sha)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|(number, merge_sha, head_sha)| PrMerge { number: number as u64, merge_sha, head_sha }))
            }

            async fn unsynced_github_deployments(
                &self,
                repository: &str,
                limit: i64,
            ) -> Result<Vec<(Deployment, Option<i64>)>, StoreError> {
                let sql = format!(
                    "SELECT {DEPLOYMENT_COLUMNS}, github_id FROM deployments WHERE repository = $1 \
                     AND (github_state IS NULL OR github_state <> state) ORDER BY created_at, seq LIMIT $2"
                );
                let rows: Vec<GithubSyncRow> =
                    sqlx::query_as(&sql).bind(repository).bind(limit).fetch_all(&self.pool).await?;
                Ok(rows.into_iter().map(|r| (r.deployment.into(), r.github_id)).collect())
            }

            async fn set_github_sync(&self, id: &str, github_id: i64, state: DeploymentState) -> Result<(), StoreError> {
                sqlx::query("UPDATE deployments SET github_id = $1, github_state = $2 WHERE id = $3")
                    .bind(github_id)
                    .bind(state.as_str())
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn unpublished_records(&self, repository: &str, limit: i64) -> Result<Vec<Deployment>, StoreError> {
                let sql = format!(
                    "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE repository = $1 AND record IS NOT NULL \
                     AND ledger_at IS NULL ORDER BY environment, seq LIMIT $2"
                );
                let rows: Vec<DeploymentRow> =
                    sqlx::query_as(&sql).bind(repository).bind(limit).fetch_all(&self.pool).await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn set_ledger_published(&self, ids: &[String], now: i64) -> Result<(), StoreError> {
                for id in ids {
                    sqlx::query("UPDATE deployments SET ledger_at = $1 WHERE id = $2 AND ledger_at IS NULL")
                        .bind(now)
                        .bind(id)
                        .execute(&self.pool)
                        .await?;
                }
                Ok(())
            }

            async fn unnotified(
                &self,
                repository: &str,
                limit: i64,
            ) -> Result<Vec<(Deployment, serde_json::Value)>, StoreError> {
                let sql = format!(
                    "SELECT {DEPLOYMENT_COLUMNS}, notifications FROM deployments WHERE repository = $1 \
                     AND (notified_state IS NULL OR notified_state <> state) ORDER BY created_at, seq LIMIT $2"
                );
                let rows: Vec<UnnotifiedRow> = sqlx::query_as(&sql).bind(repository).bind(limit).fetch_all(&self.pool).await?;
                Ok(rows
                    .into_iter()
                    .map(|r| {
                        let block = r.notifications.and_then(|n| serde_json::from_str(&n).ok()).unwrap_or(serde_json::Value::Null);
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
                let mut tx = self.pool.begin_with($begin).await?;
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
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query("UPDATE deployments SET notified_state = $1 WHERE id = $2")
                    .bind(state.as_str())
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn claim_notifications(&self, now: i64, lease_ms: i64, limit: i64) -> Result<Vec<Notification>, StoreError> {
                let mut tx = self.pool.begin_with($begin).await?;
                let sql = format!(
                    "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE state = 'pending' AND next_at <= $1 ORDER BY id LIMIT $2{}",
                    if $lock.is_empty() { "" } else { " FOR UPDATE SKIP LOCKED" }
                );
                let due: Vec<Notification> = sqlx::query_as(&sql).bind(now).bind(limit).fetch_all(&mut *tx).await?;
                for n in &due {
                    sqlx::query("UPDATE notifications SET next_at = $1 WHERE id = $2")
                        .bind(now + lease_ms)
                        .bind(n.id)
                        .execute(&mut *tx)
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
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn notifications_of(&self, deployment: &str) -> Result<Vec<Notification>, StoreError> {
                let sql = format!("SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE deployment_id = $1 ORDER BY id");
                Ok(sqlx::query_as(&sql).bind(deployment).fetch_all(&self.pool).await?)
            }

            async fn record_agent_report(&self, r: &AgentReport) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin_with($begin).await?;
                let inserted = sqlx::query(
                    "INSERT INTO agent_reports (deployment_id, agent, phase, message, at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (agent, deployment_id, phase) DO NOTHING",
                )
                .bind(&r.deployment)
                .bind(&r.agent)
                .bind(&r.phase)
                .bind(&r.message)
                .bind(r.at)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                sqlx::query(
                    "INSERT INTO agents (name, environment, last_seen, last_deployment, last_phase, last_message) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (name) DO UPDATE SET environment = excluded.environment, last_seen = excluded.last_seen, \
                     last_deployment = excluded.last_deployment, last_phase = excluded.last_phase, last_message = excluded.last_message",
                )
                .bind(&r.agent)
                .bind(&r.environment)
                .bind(r.at)
                .bind(&r.deployment)
                .bind(&r.phase)
                .bind(&r.message)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(inserted)
            }

            async fn agent_seen(&self, name: &str, environment: &str, now: i64) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO agents (name, environment, last_seen) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE SET environment = excluded.environment, last_seen = excluded.last_seen",
                )
                .bind(name)
                .bind(environment)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn agent_heartbeat(&self, name: &str, environment: &str, heartbeat: &str, now: i64) -> Result<Option<String>, StoreError> {
                let mut tx = self.pool.begin_with($begin).await?;
                let previous: Option<(Option<String>,)> =
                    sqlx::query_as(&format!("SELECT heartbeat FROM agents WHERE name = $1{}", $lock))
                        .bind(name)
                        .fetch_optional(&mut *tx)
                        .await?;
                sqlx::query(
                    "INSERT INTO agents (name, environment, last_seen, heartbeat) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (name) DO UPDATE SET environment = excluded.environment, last_seen = excluded.last_seen, \
                     heartbeat = excluded.heartbeat",
                )
                .bind(name)
                .bind(environment)
                .bind(now)
                .bind(heartbeat)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(previous.and_then(|(h,)| h))
            }

            async fn agents(&self, environment: Option<&str>) -> Result<Vec<AgentStatus>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT name, environment, last_seen, last_deployment, last_phase, last_message, heartbeat FROM agents \
                     WHERE ($1 IS NULL OR environment = $1) ORDER BY environment, name",
                )
                .bind(environment)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn agent_reports(&self, deployment: &str) -> Result<Vec<AgentReport>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT r.deployment_id, r.agent, d.environment, r.phase, r.message, r.at FROM agent_reports r \
                     JOIN deployments d ON d.id = r.deployment_id WHERE r.deployment_id = $1 ORDER BY r.id",
                )
                .bind(deployment)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn pause_environment(&self, p: &EnvironmentPause) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO environment_pauses (repository, environment, commit_sha, deployment, actor, at) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (repository, environment) DO UPDATE SET commit_sha = excluded.commit_sha, deployment = excluded.deployment, \
                     actor = excluded.actor, at = excluded.at",
                )
                .bind(&p.repository)
                .bind(&p.environment)
                .bind(&p.commit)
                .bind(&p.deployment)
                .bind(&p.actor)
                .bind(p.at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn environment_pause(
                &self,
                repository: &str,
                environment: &str,
            ) -> Result<Option<EnvironmentPause>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT repository, environment, commit_sha, deployment, actor, at FROM environment_pauses WHERE repository = $1 AND environment = $2",
                )
                .bind(repository)
                .bind(environment)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn resume_environment(&self, repository: &str, environment: &str) -> Result<(), StoreError> {
                sqlx::query("DELETE FROM environment_pauses WHERE repository = $1 AND environment = $2")
                    .bind(repository)
                    .bind(environment)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }
        }

        async fn lock_deployment(
            tx: &mut sqlx::Transaction<'_, $db>,
            id: &str,
        ) -> Result<Option<Deployment>, StoreError> {
            let sql = format!("SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE id = $1{}", $lock);
            let row: Option<DeploymentRow> = sqlx::query_as(&sql).bind(id).fetch_optional(&mut **tx).await?;
            Ok(row.map(Into::into))
        }

        async fn insert_transition(
            tx: &mut sqlx::Transaction<'_, $db>,
            d: &Deployment,
            to: DeploymentState,
            actor: &str,
            message: &str,
            now: i64,
        ) -> Result<(), StoreError> {
            sqlx::query(
                "INSERT INTO audit (at, actor, action, repository, environment, deployment_id, from_state, to_state, message) \
                 VALUES ($1, $2, 'transition', $3, $4, $5, $6, $7, $8)",
            )
            .bind(now)
            .bind(actor)
            .bind(&d.repository)
            .bind(&d.environment)
            .bind(&d.id)
            .bind(d.state.as_str())
            .bind(to.as_str())
            .bind(message)
            .execute(&mut **tx)
            .await?;
            Ok(())
        }
        }
    };
}

pub(super) use impl_deployment_store;
