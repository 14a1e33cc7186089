//! The service's side of the edge agents: what an environment should run (the desired state an agent
//! long-polls), and the phases agents report, which move deployments through `applying` to
//! `completed`, `failed` or `rolled_back`. Reports are idempotent: an agent that crashed re-sends its
//! pending report and nothing changes twice.

use chrono::{DateTime, Utc};

use super::deployments::ms;
use super::{Controller, DecisionError};
use crate::store::{AgentReport, Deployment, DeploymentFilter, DeploymentState, StoreError};

/// Phases an agent reports. The last three end a deployment; any other moves it to `applying`.
pub const PHASES: [&str; 10] = [
    "fetching",
    "rendering",
    "writing",
    "swapping",
    "reloading",
    "verifying",
    "applying",
    "completed",
    "failed",
    "rolled_back",
];

fn target_state(phase: &str) -> DeploymentState {
    match phase {
        "completed" => DeploymentState::Completed,
        "failed" => DeploymentState::Failed,
        "rolled_back" => DeploymentState::RolledBack,
        _ => DeploymentState::Applying,
    }
}

impl Controller {
    /// What `environment` should run now: the newest approved deployment whose windows are open, or else
    /// the newest one being applied or completed (what runs). `None` before anything was approved.
    pub async fn desired(
        &self,
        repository: Option<&str>,
        environment: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<Deployment>, StoreError> {
        let list = |states: Vec<DeploymentState>| DeploymentFilter {
            repository: repository.map(str::to_string),
            environment: Some(environment.to_string()),
            states,
            limit: 1,
        };
        let approved = self.store.deployments(&list(vec![DeploymentState::Approved])).await?;
        if let Some(d) = approved.into_iter().next().filter(|d| d.windows.at(at).allowed_now) {
            return Ok(Some(d));
        }
        let running =
            self.store.deployments(&list(vec![DeploymentState::Applying, DeploymentState::Completed])).await?;
        Ok(running.into_iter().next())
    }

    /// Records `agent`'s report of `phase` for `deployment` and moves the deployment accordingly.
    pub async fn agent_report(
        &self,
        agent: &str,
        environment: &str,
        deployment: &str,
        phase: &str,
        message: &str,
        at: DateTime<Utc>,
    ) -> Result<Deployment, DecisionError> {
        if !PHASES.contains(&phase) {
            return Err(DecisionError::BadReport(format!(
                "`{phase}` is not a phase; use one of {}",
                PHASES.join(", ")
            )));
        }
        let d = self.store.deployment(deployment).await?.ok_or_else(|| DecisionError::NotFound(deployment.into()))?;
        if d.environment != environment {
            return Err(DecisionError::Forbidden(format!(
                "{} deploys `{}`; this agent serves `{environment}`",
                d.id, d.environment
            )));
        }
        let report = AgentReport {
            deployment: d.id.clone(),
            agent: agent.into(),
            environment: environment.into(),
            phase: phase.into(),
            // Bounded: a report is a line, not a log.
            message: message.chars().take(2000).collect(),
            at: ms(at),
        };
        let target = target_state(phase);
        if d.state != target {
            let from: &[DeploymentState] = match target {
                DeploymentState::Applying => &[DeploymentState::Approved],
                _ => &[DeploymentState::Approved, DeploymentState::Applying],
            };
            let text = if report.message.is_empty() {
                format!("{agent}: {phase}")
            } else {
                format!("{agent}: {phase}: {}", report.message)
            };
            if !self.store.transition(&d.id, from, target, agent, &text, ms(at)).await? {
                let now = self.store.deployment(&d.id).await?.map_or(d.state, |d| d.state);
                // A re-sent report of a phase already passed is fine; anything else is refused.
                let passed = now == target || (target == DeploymentState::Applying && !now.is_unstarted());
                if !passed {
                    return Err(DecisionError::WrongState {
                        id: d.id,
                        state: now,
                        hint: "it is not approved for this agent to apply; ask for the desired state again",
                    });
                }
            }
        }
        // Recorded once accepted: a refused report leaves no phase behind.
        self.store.record_agent_report(&report).await?;
        self.publish_decisions(&d.repository).await;
        self.store.deployment(&d.id).await?.ok_or(DecisionError::NotFound(d.id))
    }
}
