//! The service's side of the edge agents: what an environment should run (the desired state an agent
//! long-polls), and the phases agents report, which move deployments through `applying` to
//! `completed`, `failed` or `rolled_back`. Reports are idempotent: an agent that crashed re-sends its
//! pending report and nothing changes twice.
//!
//! With several agents on one environment, a deployment completes when every active agent (one that
//! checked in within [`AGENT_STALE_AFTER_MS`]) has completed it, and fails at the first failure. With
//! the policy's `rollout: one-at-a-time`, agents (in name order) are offered the deployment one after
//! the other: the next only once those before it completed it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::deployments::ms;
use super::{Controller, DecisionError};
use crate::deployment::wire::{self, Heartbeat};
use crate::deployment::Phase;
use crate::store::{
    AgentReport, AgentStatus, Deployment, DeploymentFilter, DeploymentState, NewAudit, Store, StoreError,
};

/// How long agents asking for the same environment share one read of the store. Decisions of this
/// process empty the memo at once; those of other replicas are seen within this (their long-polls are
/// woken every 5 s for them anyway).
const DESIRED_MEMO_FOR: Duration = Duration::from_secs(1);

/// `(repository, environment, minute)`: deployment windows are minute-grained, so an answer holds for the
/// minute it was read for.
type MemoKey = (Option<String>, String, i64);

struct Memo {
    read_at: Instant,
    answer: Arc<tokio::sync::OnceCell<Option<Deployment>>>,
}

/// What the long-polling agents are fed: the signal that wakes them after a decision or a report, and
/// what each environment should run, shared by the agents that ask within a second. Every decision of
/// this process empties the memo ([`DesiredFeed::changed`]).
#[derive(Default)]
pub struct DesiredFeed {
    woken: tokio::sync::Notify,
    memo: std::sync::Mutex<HashMap<MemoKey, Memo>>,
}

impl DesiredFeed {
    /// Signals a decision (or an agent's report) to the long-polling agents, after it is in the store.
    pub fn changed(&self) {
        self.memo.lock().expect("desired memo").clear();
        self.woken.notify_waiters();
    }

    /// Resolves at the next [`changed`](Self::changed).
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.woken.notified()
    }

    /// The shared answer for `key`: a recent read's, or a new one to fill. With `not_before`, only a
    /// read begun since then is shared.
    fn answer(&self, key: MemoKey, not_before: Option<Instant>) -> Arc<tokio::sync::OnceCell<Option<Deployment>>> {
        let mut memo = self.memo.lock().expect("desired memo");
        match memo.get(&key) {
            Some(m) if m.read_at.elapsed() < DESIRED_MEMO_FOR && not_before.is_none_or(|t| m.read_at >= t) => {
                m.answer.clone()
            }
            _ => {
                memo.retain(|_, m| m.read_at.elapsed() < DESIRED_MEMO_FOR);
                let answer = Arc::new(tokio::sync::OnceCell::new());
                memo.insert(key, Memo { read_at: Instant::now(), answer: answer.clone() });
                answer
            }
        }
    }
}

pub use crate::deployment::AGENT_STALE_AFTER_MS;

/// The agents of `environment` that checked in recently, by name.
fn active(agents: &[AgentStatus], environment: &str, now: i64) -> Vec<String> {
    agents
        .iter()
        .filter(|a| a.environment == environment && now - a.last_seen <= AGENT_STALE_AFTER_MS)
        .map(|a| a.name.clone())
        .collect()
}

/// The agents' side of the service, with what it needs: the store, the feed that wakes long-polls, and
/// the signal dashboards wait on. [`Controller::fleet`] lends one.
pub struct Fleet<'a> {
    pub store: &'a dyn Store,
    pub feed: &'a DesiredFeed,
    /// Signalled on every change a dashboard shows.
    pub events: &'a tokio::sync::Notify,
}

impl Controller {
    /// The agents' handlers, lent the controller's store, feed and dashboard signal.
    pub fn fleet(&self) -> Fleet<'_> {
        Fleet { store: &*self.store, feed: &self.feed, events: &self.events }
    }
}

/// Which look of a long-poll asks for the desired state (see `Fleet::offered`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    /// The request's first: it is answered only from a read begun since it arrived.
    First,
    /// After it was woken (by a decision, or its periodic look): it may share a read begun before.
    Woken,
}

impl Fleet<'_> {
    /// An agent asked for its desired state: it is alive.
    pub async fn agent_seen(&self, agent: &str, environment: &str) -> Result<(), StoreError> {
        self.store.agent_seen(agent, environment, crate::store::now_ms()).await
    }

    /// What `environment` should run now: the newest approved deployment whose windows are open, or else
    /// the newest one being applied or completed (what runs). `None` before anything was approved. With
    /// `agent` named and a one-at-a-time rollout, an agent whose turn has not come gets what runs.
    pub async fn desired(
        &self,
        repository: Option<&str>,
        environment: &str,
        agent: Option<&str>,
        at: DateTime<Utc>,
        look: Look,
    ) -> Result<Option<Deployment>, StoreError> {
        let not_before = match look {
            Look::First => Some(Instant::now()),
            Look::Woken => None,
        };
        let Some(d) = self.offered(repository, environment, at, not_before).await? else { return Ok(None) };
        let one_at_a_time = d.safety.as_ref().is_some_and(|s| s.one_at_a_time());
        let (Some(agent), true, false) = (agent, one_at_a_time, d.state == DeploymentState::Completed) else {
            return Ok(Some(d));
        };
        if self.turn_of(&d, agent, ms(at)).await? {
            return Ok(Some(d));
        }
        let completed = self
            .store
            .deployments(&DeploymentFilter::environment(repository, environment, &[DeploymentState::Completed], 1))
            .await?;
        Ok(completed.into_iter().next())
    }

    /// [`Fleet::read_offered`], shared: a decision wakes every long-polling agent of the environment
    /// at once; one of them reads the store, the others share its answer (until the next decision, for a
    /// second at most). With `not_before`, only a read begun since then is shared: a request's first look
    /// never gets an answer older than the request.
    async fn offered(
        &self,
        repository: Option<&str>,
        environment: &str,
        at: DateTime<Utc>,
        not_before: Option<Instant>,
    ) -> Result<Option<Deployment>, StoreError> {
        let key: MemoKey = (repository.map(str::to_string), environment.to_string(), at.timestamp().div_euclid(60));
        let answer = self.feed.answer(key, not_before);
        answer.get_or_try_init(|| self.read_offered(repository, environment, at)).await.cloned()
    }

    /// The newest approved deployment whose windows are open, or else the newest one applying or
    /// completed.
    async fn read_offered(
        &self,
        repository: Option<&str>,
        environment: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<Deployment>, StoreError> {
        let list = |states: &[DeploymentState]| DeploymentFilter::environment(repository, environment, states, 1);
        let approved = self.store.deployments(&list(&[DeploymentState::Approved])).await?;
        if let Some(d) = approved.into_iter().next().filter(|d| d.windows.at(at).allowed_now) {
            return Ok(Some(d));
        }
        let running = self.store.deployments(&list(&[DeploymentState::Applying, DeploymentState::Completed])).await?;
        Ok(running.into_iter().next())
    }

    /// The agents that reported `completed` for deployment `id`.
    async fn completed_by(&self, id: &str) -> Result<Vec<String>, StoreError> {
        let reports = self.store.agent_reports(id).await?;
        Ok(reports.into_iter().filter(|r| r.phase == Phase::Completed).map(|r| r.agent).collect())
    }

    /// Whether every active agent before `agent` (by name) completed `d`.
    async fn turn_of(&self, d: &Deployment, agent: &str, now: i64) -> Result<bool, StoreError> {
        let agents = self.store.agents(Some(&d.environment)).await?;
        let done = self.completed_by(&d.id).await?;
        Ok(active(&agents, &d.environment, now).iter().filter(|a| a.as_str() < agent).all(|a| done.contains(a)))
    }

    /// An agent's heartbeat: kept for the environment's view; drift and its repair are audited when
    /// they start (not on every beat).
    pub async fn agent_heartbeat(
        &self,
        agent: &str,
        environment: &str,
        heartbeat: &Heartbeat,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let previous = self.store.agent_heartbeat(agent, environment, heartbeat, ms(at)).await?;
        self.events.notify_waiters();
        let drifted = heartbeat.sync == wire::Sync::Drifted || heartbeat.restored.is_some();
        let news = drifted
            && previous.as_ref().is_none_or(|p| p.sync != wire::Sync::Drifted || p.drifted != heartbeat.drifted);
        if !news {
            return Ok(());
        }
        let mut message = format!(
            "{agent}: the live configuration differs from the release of {} ({})",
            heartbeat.deployment.as_deref().unwrap_or("?"),
            heartbeat.drifted.join(", ")
        );
        if let Some(restored) = &heartbeat.restored {
            message.push_str(&format!("; {restored}"));
        }
        let entry = NewAudit {
            actor: agent.into(),
            action: "agent.drift".into(),
            repository: None,
            environment: Some(environment.into()),
            deployment: heartbeat.deployment.clone(),
            message,
        };
        self.store.record_audit(&entry, ms(at)).await
    }

    /// Records `agent`'s report of `phase` for `deployment` and moves the deployment accordingly.
    pub async fn agent_report(
        &self,
        agent: &str,
        environment: &str,
        deployment: &str,
        phase: Phase,
        message: &str,
        at: DateTime<Utc>,
    ) -> Result<Deployment, DecisionError> {
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
            phase,
            // Bounded: a report is a line, not a log.
            message: message.chars().take(2000).collect(),
            at: ms(at),
        };
        let mut target = phase.target_state();
        if target == DeploymentState::Completed {
            // Complete only when every active agent of the environment has.
            let agents = self.store.agents(Some(environment)).await?;
            let mut done = self.completed_by(&d.id).await?;
            done.push(agent.to_string());
            let waiting: Vec<String> =
                active(&agents, environment, ms(at)).into_iter().filter(|a| !done.contains(a)).collect();
            if !waiting.is_empty() {
                tracing::info!(deployment = %d.id, agent, waiting = ?waiting, "completed by one agent; waiting for the others");
                target = DeploymentState::Applying;
            }
        }
        if d.state != target {
            let text = if report.message.is_empty() {
                format!("{agent}: {phase}")
            } else {
                format!("{agent}: {phase}: {}", report.message)
            };
            if !self.store.transition(&d.id, target, agent, &text, ms(at)).await? {
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
        // Other agents of the environment may be waiting for this (one-at-a-time); the ledger, GitHub
        // and notifications follow from the caller, after the answer (`publish_decisions`).
        self.feed.changed();
        self.events.notify_waiters();
        self.store.deployment(&d.id).await?.ok_or(DecisionError::NotFound(d.id))
    }
}
