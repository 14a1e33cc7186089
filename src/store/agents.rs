//! Agents: their check-ins and heartbeats, and the phases they report.

use async_trait::async_trait;

use super::sql::SqlStore;
use super::StoreError;
use crate::deployment::wire::Heartbeat;
use crate::deployment::{AgentReport, AgentStatus, Phase};

#[derive(sqlx::FromRow)]
struct AgentRow {
    name: String,
    environment: String,
    last_seen: i64,
    last_deployment: Option<String>,
    last_phase: Option<String>,
    last_message: Option<String>,
    heartbeat: Option<String>,
}

impl From<AgentRow> for AgentStatus {
    fn from(r: AgentRow) -> AgentStatus {
        AgentStatus {
            name: r.name,
            environment: r.environment.into(),
            last_seen: r.last_seen,
            last_deployment: r.last_deployment.map(Into::into),
            last_phase: r.last_phase.as_deref().and_then(Phase::parse),
            last_message: r.last_message,
            heartbeat: r.heartbeat.as_deref().and_then(read_heartbeat),
        }
    }
}

/// A stored heartbeat; one that no longer reads (written by another version) counts as none.
fn read_heartbeat(text: &str) -> Option<Heartbeat> {
    serde_json::from_str(text).ok()
}

#[derive(sqlx::FromRow)]
struct ReportRow {
    deployment_id: String,
    agent: String,
    environment: String,
    phase: String,
    message: String,
    at: i64,
}

impl ReportRow {
    /// The report, if its phase is one this version knows (the service records only those).
    fn report(self) -> Option<AgentReport> {
        Some(AgentReport {
            deployment: self.deployment_id.into(),
            agent: self.agent,
            environment: self.environment.into(),
            phase: Phase::parse(&self.phase)?,
            message: self.message,
            at: self.at,
        })
    }
}

/// Agents: their check-ins, heartbeats and the phases they report.
#[async_trait]
pub trait AgentStore: Send + Sync {
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
        heartbeat: &Heartbeat,
        now: i64,
    ) -> Result<Option<Heartbeat>, StoreError>;

    async fn agents(&self, environment: Option<&str>) -> Result<Vec<AgentStatus>, StoreError>;

    async fn agent_reports(&self, deployment: &str) -> Result<Vec<AgentReport>, StoreError>;
}

#[async_trait]
impl AgentStore for SqlStore {
    async fn record_agent_report(&self, r: &AgentReport) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO agent_reports (deployment_id, agent, phase, message, at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (agent, deployment_id, phase) DO NOTHING",
        )
        .bind(r.deployment.as_str())
        .bind(&r.agent)
        .bind(r.phase.as_str())
        .bind(&r.message)
        .bind(r.at)
        .execute(tx.db())
        .await?
        .rows_affected()
            == 1;
        sqlx::query(
            "INSERT INTO agents (name, environment, last_seen, last_deployment, last_phase, last_message) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (name) DO UPDATE SET environment = excluded.environment, last_seen = excluded.last_seen, \
             last_deployment = excluded.last_deployment, last_phase = excluded.last_phase, last_message = excluded.last_message",
        )
        .bind(&r.agent)
        .bind(r.environment.as_str())
        .bind(r.at)
        .bind(r.deployment.as_str())
        .bind(r.phase.as_str())
        .bind(&r.message)
        .execute(tx.db())
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
        .execute(self.db())
        .await?;
        Ok(())
    }

    async fn agent_heartbeat(
        &self,
        name: &str,
        environment: &str,
        heartbeat: &Heartbeat,
        now: i64,
    ) -> Result<Option<Heartbeat>, StoreError> {
        let mut tx = self.begin().await?;
        let previous: Option<(Option<String>,)> =
            sqlx::query_as(&format!("SELECT heartbeat FROM agents WHERE name = $1{}", self.dialect.lock()))
                .bind(name)
                .fetch_optional(tx.db())
                .await?;
        sqlx::query(
            "INSERT INTO agents (name, environment, last_seen, heartbeat) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET environment = excluded.environment, last_seen = excluded.last_seen, \
             heartbeat = excluded.heartbeat",
        )
        .bind(name)
        .bind(environment)
        .bind(now)
        .bind(serde_json::to_string(heartbeat).expect("heartbeats encode"))
        .execute(tx.db())
        .await?;
        tx.commit().await?;
        Ok(previous.and_then(|(h,)| h).as_deref().and_then(read_heartbeat))
    }

    async fn agents(&self, environment: Option<&str>) -> Result<Vec<AgentStatus>, StoreError> {
        let rows: Vec<AgentRow> = sqlx::query_as(
            "SELECT name, environment, last_seen, last_deployment, last_phase, last_message, heartbeat FROM agents \
             WHERE ($1 IS NULL OR environment = $1) ORDER BY environment, name",
        )
        .bind(environment)
        .fetch_all(self.db())
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn agent_reports(&self, deployment: &str) -> Result<Vec<AgentReport>, StoreError> {
        let rows: Vec<ReportRow> = sqlx::query_as(
            "SELECT r.deployment_id, r.agent, d.environment, r.phase, r.message, r.at FROM agent_reports r \
             JOIN deployments d ON d.id = r.deployment_id WHERE r.deployment_id = $1 ORDER BY r.id",
        )
        .bind(deployment)
        .fetch_all(self.db())
        .await?;
        Ok(rows.into_iter().filter_map(ReportRow::report).collect())
    }
}
