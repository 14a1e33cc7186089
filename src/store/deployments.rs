//! Deployments: their creation (superseding what has not started), transitions as the domain's table
//! allows them, approvals, the deployed branch heads, and the pauses a rollback leaves.

use async_trait::async_trait;

use super::sql::{placeholders, Dialect, SqlStore, Tx};
use super::StoreError;
use crate::deployment::{Approval, Cause, Deployment, DeploymentState, EnvironmentPause, Gate, Via};
use crate::plan::signing::Signed;

/// A deployment to create: the deployment as it starts (the caller assigned its id and sequence, see
/// [`DeploymentStore::next_sequence`], so an auto-approved one is created already signed; its
/// `created_at` and `updated_at` are the store's `now`), and what is written with it.
#[derive(Debug, Clone)]
pub struct NewDeployment {
    pub deployment: Deployment,
    /// The policy's `notifications` block for the environment, kept for delivery.
    pub notifications: crate::policy::Notifications,
    pub approvals: Vec<Approval>,
    /// Who caused it and why, for the audit log.
    pub actor: String,
    pub message: String,
}

/// What [`DeploymentStore::create_deployment`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// Created; the ids of the environment's deployments it superseded.
    New { superseded: Vec<String> },
    /// Not created: this unstarted deployment plans the same commit and plan already.
    AlreadyPlanned(String),
}

impl Created {
    /// The deployments superseded (none when nothing was created).
    pub fn superseded(&self) -> &[String] {
        match self {
            Created::New { superseded } => superseded,
            Created::AlreadyPlanned(_) => &[],
        }
    }
}

/// Which deployments to list.
#[derive(Debug, Clone, Default)]
pub struct DeploymentFilter {
    pub repository: Option<String>,
    pub environment: Option<String>,
    pub states: Vec<DeploymentState>,
    pub limit: i64,
}

impl DeploymentFilter {
    /// `environment`'s deployments in `states`, at most `limit` (newest first); only `repository`'s when
    /// it is named.
    pub fn environment(repository: Option<&str>, environment: &str, states: &[DeploymentState], limit: i64) -> Self {
        DeploymentFilter {
            repository: repository.map(str::to_string),
            environment: Some(environment.to_string()),
            states: states.to_vec(),
            limit,
        }
    }
}

pub(super) const DEPLOYMENT_COLUMNS: &str = "id, repository, environment, seq, commit_sha, from_sha, plan_digest, plan, state, gate, reasons, windows, safety, cause, record, signature, expires_at, created_at, updated_at";

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
    expires_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl From<DeploymentRow> for Deployment {
    fn from(r: DeploymentRow) -> Deployment {
        Deployment {
            id: r.id.into(),
            repository: r.repository,
            environment: r.environment.into(),
            sequence: r.seq,
            commit: r.commit_sha.into(),
            from_commit: r.from_sha.map(Into::into),
            plan_digest: r.plan_digest,
            plan: serde_json::from_str(&r.plan).unwrap_or(serde_json::Value::Null),
            // The column's CHECK constraint admits only known states.
            state: DeploymentState::parse(&r.state).unwrap_or(DeploymentState::Failed),
            gate: Gate::parse(&r.gate).unwrap_or(Gate::Closed),
            reasons: serde_json::from_str(&r.reasons).unwrap_or_default(),
            windows: serde_json::from_str(&r.windows).unwrap_or_default(),
            safety: serde_json::from_str(&r.safety).ok(),
            // Written from the enum; a name another version wrote reads as a push.
            cause: Cause::parse(&r.cause).unwrap_or(Cause::Push),
            signed: r.record.zip(r.signature).map(|(record, signature)| Signed { record, signature }),
            expires_at: r.expires_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
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
        Approval {
            actor: r.actor,
            // Written from the enum; a name another version wrote reads as a person's approval by API.
            via: Via::parse(&r.via).unwrap_or(Via::Api),
            plan_digest: r.plan_digest,
            breaking: r.breaking != 0,
            at: r.at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct PauseRow {
    repository: String,
    environment: String,
    commit_sha: String,
    deployment: String,
    actor: String,
    at: i64,
}

impl From<PauseRow> for EnvironmentPause {
    fn from(r: PauseRow) -> EnvironmentPause {
        EnvironmentPause {
            repository: r.repository,
            environment: r.environment.into(),
            commit: r.commit_sha.into(),
            deployment: r.deployment.into(),
            actor: r.actor,
            at: r.at,
        }
    }
}

/// Deployments with and transitions, the deployed branch heads, and the pauses a
/// rollback leaves on an environment.
#[async_trait]
pub trait DeploymentStore: Send + Sync {
    /// The next sequence number of `environment` in `repository` (1, 2, …); never handed out twice.
    async fn next_sequence(&self, repository: &str, environment: &str) -> Result<i64, StoreError>;

    /// Creates a deployment with its approvals and audit entries, and supersedes the environment's
    /// older deployments that have not started; unless it is a push's and one of the same commit and
    /// plan has not started either (another replica, or a webhook and a poll, planned the commit at
    /// the same time): then nothing is written. Creations of one environment are serialised.
    async fn create_deployment(&self, new: &NewDeployment, now: i64) -> Result<Created, StoreError>;

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
    async fn approve(&self, id: &str, approval: &Approval, signed: &Signed, message: &str) -> Result<bool, StoreError>;

    /// Deployments still waiting for their approval (awaiting it, or blocked) whose `expires_at` is not
    /// after `now`, oldest first, at most `limit`.
    async fn overdue_for_approval(&self, now: i64, limit: i64) -> Result<Vec<Deployment>, StoreError>;

    /// The last commit of `branch` the service deployed from (webhook or poll).
    async fn branch_head(&self, repository: &str, branch: &str) -> Result<Option<String>, StoreError>;

    async fn set_branch_head(&self, repository: &str, branch: &str, sha: &str, now: i64) -> Result<(), StoreError>;

    /// Pauses automatic deployments of an environment while the branch head is `commit_sha`.
    async fn pause_environment(&self, pause: &EnvironmentPause) -> Result<(), StoreError>;

    async fn environment_pause(
        &self,
        repository: &str,
        environment: &str,
    ) -> Result<Option<EnvironmentPause>, StoreError>;

    async fn resume_environment(&self, repository: &str, environment: &str) -> Result<(), StoreError>;
}

#[async_trait]
impl DeploymentStore for SqlStore {
    async fn next_sequence(&self, repository: &str, environment: &str) -> Result<i64, StoreError> {
        let (last,): (i64,) = sqlx::query_as(
            "INSERT INTO deployment_sequences (repository, environment, last) VALUES ($1, $2, 1) \
             ON CONFLICT (repository, environment) DO UPDATE SET last = deployment_sequences.last + 1 RETURNING last",
        )
        .bind(repository)
        .bind(environment)
        .fetch_one(self.db())
        .await?;
        Ok(last)
    }

    async fn create_deployment(&self, new: &NewDeployment, now: i64) -> Result<Created, StoreError> {
        use DeploymentState as S;
        let d = &new.deployment;
        let mut tx = self.begin().await?;
        // The environment's sequence row is the lock that serialises its creations across replicas
        // (SQLite's write transaction is one already), so the look below sees what a concurrent
        // creation committed.
        let lock = format!(
            "SELECT last FROM deployment_sequences WHERE repository = $1 AND environment = $2{}",
            self.dialect.lock()
        );
        sqlx::query(&lock).bind(&d.repository).bind(d.environment.as_str()).fetch_optional(tx.db()).await?;
        if d.cause == crate::deployment::Cause::Push {
            let unstarted = placeholders(6, S::UNSTARTED.len());
            let sql = format!(
                "SELECT id FROM deployments WHERE repository = $1 AND environment = $2 AND commit_sha = $3 \
                 AND plan_digest = $4 AND cause = $5 AND state IN ({unstarted}) LIMIT 1"
            );
            let mut same = sqlx::query_as::<_, (String,)>(&sql)
                .bind(&d.repository)
                .bind(d.environment.as_str())
                .bind(d.commit.as_str())
                .bind(&d.plan_digest)
                .bind(d.cause.as_str());
            for state in S::UNSTARTED {
                same = same.bind(state.as_str());
            }
            if let Some((id,)) = same.fetch_optional(tx.db()).await? {
                tx.rollback().await?;
                return Ok(Created::AlreadyPlanned(id));
            }
        }
        sqlx::query(
            "INSERT INTO deployments (id, repository, environment, seq, commit_sha, from_sha, plan_digest, plan, state, gate, \
             reasons, windows, cause, record, signature, created_at, updated_at, notifications, safety, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $16, $17, $18, $19)",
        )
        .bind(d.id.as_str())
        .bind(&d.repository)
        .bind(d.environment.as_str())
        .bind(d.sequence)
        .bind(d.commit.as_str())
        .bind(d.from_commit.as_deref())
        .bind(&d.plan_digest)
        .bind(d.plan.to_string())
        .bind(d.state.as_str())
        .bind(d.gate.as_str())
        .bind(serde_json::to_string(&d.reasons).expect("strings encode"))
        .bind(serde_json::to_string(&d.windows).expect("windows encode"))
        .bind(d.cause.as_str())
        .bind(d.signed.as_ref().map(|s| &s.record))
        .bind(d.signed.as_ref().map(|s| &s.signature))
        .bind(now)
        .bind(serde_json::to_string(&new.notifications).expect("a notifications block encodes"))
        .bind(d.safety.as_ref().map_or_else(|| "{}".to_string(), |s| serde_json::to_string(s).expect("safety encodes")))
        .bind(d.expires_at)
        .execute(tx.db())
        .await?;
        for a in &new.approvals {
            sqlx::query("INSERT INTO approvals (deployment_id, actor, via, plan_digest, breaking, at) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(d.id.as_str())
                .bind(&a.actor)
                .bind(a.via.as_str())
                .bind(&a.plan_digest)
                .bind(a.breaking as i64)
                .bind(a.at)
                .execute(tx.db())
                .await?;
        }
        let audit = "INSERT INTO audit (at, actor, action, repository, environment, deployment_id, from_state, to_state, message) \
                     VALUES ($1, $2, 'transition', $3, $4, $5, $6, $7, $8)";
        let steps = [
            (None, S::Pending, new.actor.as_str(), new.message.clone()),
            (Some(S::Pending), d.state, "policy", crate::deployment::decision_message(&d.reasons)),
        ];
        for (from, to, actor, message) in steps {
            sqlx::query(audit)
                .bind(now)
                .bind(actor)
                .bind(&d.repository)
                .bind(d.environment.as_str())
                .bind(d.id.as_str())
                .bind(from.map(S::as_str))
                .bind(to.as_str())
                .bind(message)
                .execute(tx.db())
                .await?;
        }
        let unstarted = placeholders(4, S::UNSTARTED.len());
        let sql = format!(
            "SELECT id, state FROM deployments WHERE repository = $1 AND environment = $2 AND id <> $3 AND state IN ({unstarted}) ORDER BY seq{}",
            self.dialect.lock()
        );
        let mut older = sqlx::query_as::<_, (String, String)>(&sql)
            .bind(&d.repository)
            .bind(d.environment.as_str())
            .bind(d.id.as_str());
        for s in S::UNSTARTED {
            older = older.bind(s.as_str());
        }
        let older = older.fetch_all(tx.db()).await?;
        for (id, state) in &older {
            sqlx::query("UPDATE deployments SET state = 'superseded', updated_at = $1 WHERE id = $2")
                .bind(now)
                .bind(id)
                .execute(tx.db())
                .await?;
            sqlx::query(audit)
                .bind(now)
                .bind("policy")
                .bind(&d.repository)
                .bind(d.environment.as_str())
                .bind(id)
                .bind(state)
                .bind(S::Superseded.as_str())
                .bind(crate::deployment::superseded_message(&d.id, &d.commit))
                .execute(tx.db())
                .await?;
        }
        tx.commit().await?;
        Ok(Created::New { superseded: older.into_iter().map(|(id, _)| id).collect() })
    }

    async fn deployment(&self, id: &str) -> Result<Option<Deployment>, StoreError> {
        let sql = format!("SELECT {} FROM deployments WHERE id = $1", DEPLOYMENT_COLUMNS);
        let row: Option<DeploymentRow> = sqlx::query_as(&sql).bind(id).fetch_optional(self.db()).await?;
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
        let mut q = sqlx::query_as::<_, DeploymentRow>(&sql).bind(&f.repository).bind(&f.environment);
        for s in &f.states {
            q = q.bind(s.as_str());
        }
        Ok(q.fetch_all(self.db()).await?.into_iter().map(Into::into).collect())
    }

    async fn overdue_for_approval(&self, now: i64, limit: i64) -> Result<Vec<Deployment>, StoreError> {
        let waiting = DeploymentState::Expired.comes_from();
        let sql = format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE expires_at <= $1 AND state IN ({}) ORDER BY expires_at LIMIT {}",
            placeholders(2, waiting.len()),
            limit.clamp(1, 1000)
        );
        let mut q = sqlx::query_as::<_, DeploymentRow>(&sql).bind(now);
        for s in waiting {
            q = q.bind(s.as_str());
        }
        Ok(q.fetch_all(self.db()).await?.into_iter().map(Into::into).collect())
    }

    async fn approvals(&self, id: &str) -> Result<Vec<Approval>, StoreError> {
        let rows: Vec<ApprovalRow> = sqlx::query_as(
            "SELECT actor, via, plan_digest, breaking, at FROM approvals WHERE deployment_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(self.db())
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
        let mut tx = self.begin().await?;
        let Some(d) = lock_deployment(self.dialect, &mut tx, id).await? else { return Ok(false) };
        if !to.comes_from().contains(&d.state) {
            return Ok(false);
        }
        sqlx::query("UPDATE deployments SET state = $1, updated_at = $2 WHERE id = $3")
            .bind(to.as_str())
            .bind(now)
            .bind(id)
            .execute(tx.db())
            .await?;
        insert_transition(&mut tx, &d, to, actor, message, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn approve(&self, id: &str, a: &Approval, signed: &Signed, message: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let Some(d) = lock_deployment(self.dialect, &mut tx, id).await? else { return Ok(false) };
        if !DeploymentState::Approved.comes_from().contains(&d.state) {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE deployments SET state = 'approved', record = $1, signature = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(&signed.record)
        .bind(&signed.signature)
        .bind(a.at)
        .bind(id)
        .execute(tx.db())
        .await?;
        sqlx::query("INSERT INTO approvals (deployment_id, actor, via, plan_digest, breaking, at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(id)
            .bind(&a.actor)
            .bind(a.via.as_str())
            .bind(&a.plan_digest)
            .bind(a.breaking as i64)
            .bind(a.at)
            .execute(tx.db())
            .await?;
        insert_transition(&mut tx, &d, DeploymentState::Approved, &a.actor, message, a.at).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn branch_head(&self, repository: &str, branch: &str) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT sha FROM branch_heads WHERE repository = $1 AND branch = $2")
                .bind(repository)
                .bind(branch)
                .fetch_optional(self.db())
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
        .execute(self.db())
        .await?;
        Ok(())
    }

    async fn pause_environment(&self, p: &EnvironmentPause) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO environment_pauses (repository, environment, commit_sha, deployment, actor, at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (repository, environment) DO UPDATE SET commit_sha = excluded.commit_sha, deployment = excluded.deployment, \
             actor = excluded.actor, at = excluded.at",
        )
        .bind(&p.repository)
        .bind(p.environment.as_str())
        .bind(p.commit.as_str())
        .bind(p.deployment.as_str())
        .bind(&p.actor)
        .bind(p.at)
        .execute(self.db())
        .await?;
        Ok(())
    }

    async fn environment_pause(
        &self,
        repository: &str,
        environment: &str,
    ) -> Result<Option<EnvironmentPause>, StoreError> {
        let row: Option<PauseRow> = sqlx::query_as(
            "SELECT repository, environment, commit_sha, deployment, actor, at FROM environment_pauses WHERE repository = $1 AND environment = $2",
        )
        .bind(repository)
        .bind(environment)
        .fetch_optional(self.db())
        .await?;
        Ok(row.map(Into::into))
    }

    async fn resume_environment(&self, repository: &str, environment: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM environment_pauses WHERE repository = $1 AND environment = $2")
            .bind(repository)
            .bind(environment)
            .execute(self.db())
            .await?;
        Ok(())
    }
}

async fn lock_deployment(dialect: Dialect, tx: &mut Tx, id: &str) -> Result<Option<Deployment>, StoreError> {
    let sql = format!("SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE id = $1{}", dialect.lock());
    let row: Option<DeploymentRow> = sqlx::query_as(&sql).bind(id).fetch_optional(tx.db()).await?;
    Ok(row.map(Into::into))
}

async fn insert_transition(
    tx: &mut Tx,
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
    .bind(d.environment.as_str())
    .bind(d.id.as_str())
    .bind(d.state.as_str())
    .bind(to.as_str())
    .bind(message)
    .execute(tx.db())
    .await?;
    Ok(())
}
