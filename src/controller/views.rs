//! Read models: what the API, the pages and `watch` show of deployments and environments, built from the
//! store in one place (the HTTP layer asks these and does not read the store for them).

use super::{Controller, PlanOfHeadError};
use crate::deployment::wire::{
    AgentView, DeploymentDetail, DeploymentSummary, DeploymentView, EnvironmentApprovals, EnvironmentView,
    PullApproval, PullApprovals,
};
use crate::deployment::EnvironmentStatus;
use crate::store::{AuditEntry, Deployment, DeploymentFilter, DeploymentState, Store, StoreError};

/// The read models, built from the store alone. [`Controller::views`] lends them.
pub struct Views<'a> {
    pub store: &'a dyn Store,
}

impl Controller {
    /// The read models over the controller's store.
    pub fn views(&self) -> Views<'_> {
        Views { store: &*self.store }
    }
}

impl Views<'_> {
    /// A deployment with when it ran and who is behind it: `started_at`/`finished_at` (entering
    /// `applying`, reaching an end), `duration_ms` between them, and `by`: its approvers (not the
    /// policy), else who caused it (the pusher, the operator who rolled back).
    pub async fn deployment_view(&self, d: &Deployment) -> Result<DeploymentView, StoreError> {
        let transitions = self.store.audit(0, Some(&d.id), 1000).await?;
        let approvals = self.store.approvals(&d.id).await?;
        let at = |states: &[DeploymentState]| {
            transitions.iter().find(|e| e.to_state.is_some_and(|s| states.contains(&s))).map(|e| e.at)
        };
        use DeploymentState::{Applying, Completed, Failed, RolledBack};
        let (started, finished) = (at(&[Applying]), at(&[Completed, Failed, RolledBack]));
        let approvers: Vec<&str> = approvals.iter().filter(|a| a.via.by_a_person()).map(|a| a.actor.as_str()).collect();
        let by = if approvers.is_empty() {
            transitions.first().map(|e| e.actor.clone())
        } else {
            Some(approvers.join(", "))
        };
        Ok(DeploymentView {
            summary: DeploymentSummary::of(d, chrono::Utc::now()),
            started_at: started.and_then(chrono::DateTime::from_timestamp_millis),
            finished_at: finished.and_then(chrono::DateTime::from_timestamp_millis),
            duration_ms: started.zip(finished).map(|(s, f)| f - s),
            by,
        })
    }

    async fn optional_view(&self, d: Option<&&Deployment>) -> Result<Option<DeploymentView>, StoreError> {
        match d {
            Some(d) => self.deployment_view(d).await.map(Some),
            None => Ok(None),
        }
    }

    /// The deployments `filter` selects, newest first, each with its timing.
    pub async fn deployment_views(&self, filter: &DeploymentFilter) -> Result<Vec<DeploymentView>, StoreError> {
        let list = self.store.deployments(filter).await?;
        let mut out = Vec::with_capacity(list.len());
        for d in &list {
            out.push(self.deployment_view(d).await?);
        }
        Ok(out)
    }

    /// One deployment with its plan (literal secrets masked), approvals, transitions, signed record and
    /// the agents' reports; `None` when there is no such deployment.
    pub async fn deployment_detail(&self, id: &str) -> Result<Option<DeploymentDetail>, StoreError> {
        let Some(d) = self.store.deployment(id).await? else { return Ok(None) };
        let mut plan = d.plan.clone();
        if let Some(changes) = plan.get_mut("changes") {
            crate::diff::values::mask_stored_changes(changes);
        }
        Ok(Some(DeploymentDetail {
            view: self.deployment_view(&d).await?,
            plan,
            approvals: self.store.approvals(id).await?,
            transitions: self.store.audit(0, Some(id), 10_000).await?,
            signed: d.signed.clone(),
            reports: self.store.agent_reports(id).await?,
        }))
    }

    /// The agents (of one environment, or all), as the API shows them.
    pub async fn agent_views(&self, environment: Option<&str>) -> Result<Vec<AgentView>, StoreError> {
        let now = crate::store::now_ms();
        Ok(self.store.agents(environment).await?.iter().map(|a| AgentView::of(a, now)).collect())
    }

    /// Per repository and environment (all, or `only`): status, the deployment that runs (`current`),
    /// the one pending, the last, and its agents.
    pub async fn environment_views(&self, only: Option<&str>) -> Result<Vec<EnvironmentView>, StoreError> {
        let filter = DeploymentFilter { environment: only.map(str::to_string), limit: 1000, ..Default::default() };
        let all = self.store.deployments(&filter).await?;
        let mut seen = std::collections::BTreeMap::new();
        for d in &all {
            seen.entry((d.repository.clone(), d.environment.clone())).or_insert_with(Vec::new).push(d);
        }
        let agents = self.store.agents(only).await?;
        let now = crate::store::now_ms();
        let mut out = Vec::new();
        for ((repository, environment), list) in seen {
            let current = list.iter().find(|d| d.state == DeploymentState::Completed);
            let pending = list.iter().find(|d| d.state.is_unstarted());
            let last = list.first();
            let agents: Vec<AgentView> =
                agents.iter().filter(|a| a.environment == environment).map(|a| AgentView::of(a, now)).collect();
            let (sync, health) = EnvironmentView::sync_and_health(&agents);
            let paused = self.store.environment_pause(&repository, &environment).await?;
            out.push(EnvironmentView {
                paused,
                status: EnvironmentStatus::of(pending.map(|d| d.state), last.map(|d| d.state)),
                sync,
                health,
                current: self.optional_view(current).await?,
                pending: self.optional_view(pending).await?,
                last: self.optional_view(last).await?,
                recent: list.iter().take(10).map(|d| DeploymentSummary::of(d, chrono::Utc::now())).collect(),
                agents,
                repository,
                environment,
            });
        }
        Ok(out)
    }

    pub async fn deployment(&self, id: &str) -> Result<Option<Deployment>, StoreError> {
        self.store.deployment(id).await
    }

    /// Audit entries with an id above `after`, oldest first (of one deployment if given).
    pub async fn audit_log(
        &self,
        after: i64,
        deployment: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.store.audit(after, deployment, limit).await
    }
}

impl Controller {
    /// A pull request's approvals: per environment, who approved which plan of its newest head, and who
    /// may still approve by the default branch's policy (as the mirror has it). `None` when nothing of
    /// the pull request is known and the repository has no mirror here.
    pub async fn pull_approvals(
        &self,
        owner: &str,
        repo: &str,
        number: u64,
    ) -> Result<Option<PullApprovals>, StoreError> {
        let repository = format!("{owner}/{repo}");
        let head = self.store.latest_pr_head(&repository, number).await?;
        let given = self.store.pr_approvals(&repository, number).await?;
        // Without a mirror yet (no PR of this repository was checked here) nobody is listed.
        let policy = match self.environment_policies(owner, repo).await {
            Ok(policy) => policy,
            Err(PlanOfHeadError::NoMirror) if head.is_none() && given.is_empty() => return Ok(None),
            Err(_) => Default::default(),
        };
        let mut names: Vec<String> = policy.keys().cloned().collect();
        for a in &given {
            if !names.iter().any(|n| *n == a.environment) {
                names.push(a.environment.to_string());
            }
        }
        let environments = names
            .into_iter()
            .map(|environment| {
                let (approvers, prevent_self_approval) = policy
                    .get(&environment)
                    .map_or((Vec::new(), false), |p| (p.approvers.clone(), p.prevent_self_approval));
                let approvals = given
                    .iter()
                    .filter(|a| a.environment == environment)
                    .map(|a| PullApproval {
                        actor: a.actor.clone(),
                        head_sha: a.head_sha.clone(),
                        plan_digest: a.plan_digest.clone(),
                        breaking: a.breaking,
                        at: a.at,
                    })
                    .collect();
                EnvironmentApprovals { environment: environment.into(), approvals, approvers, prevent_self_approval }
            })
            .collect();
        Ok(Some(PullApprovals { repository, number, head: head.map(Into::into), environments }))
    }
}
