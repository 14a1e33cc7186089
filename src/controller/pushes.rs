//! A commit on a repository's deployment branch (a push webhook, a plain-Git poll, or `honua resume`)
//! becomes one Deployment per environment whose effective config differs from what that environment
//! last completed. The policy decides its state: what the policy lets through is approved and signed at
//! once, the rest waits for its gate. A newer plan supersedes what no agent picked up yet; a commit heard
//! of after a rollback (its push delivered later) lifts the pause the rollback left.
//!
//! The handler takes what it works with explicitly ([`Pushes`]), as the pull-request handlers and the
//! comment commands do.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::decisions::{AfterDecision, Decisions};
use super::deployments::{deployment_id, env_policy, load, ms};
use super::{DeploySource, JobError, Mirrors};
use crate::config::source::RepoFiles;
use crate::config::{ConfigRepo, EnvName};
use crate::deployment::short_sha as short;
use crate::deployment::{Cause, DeploymentId, Via};
use crate::diff::{diff_environment, values};
use crate::policy::Decision;
use crate::store::{
    Approval, Created, Deployment, DeploymentFilter, DeploymentState, Gate, NewAudit, NewDeployment, Store,
};

/// How long a plan waited for another replica's plan of its repository (a histogram).
pub const PLANNING_HOLD_SECONDS: &str = "honua_planning_hold_wait_seconds";

/// One plan of a commit: when the service heard of the commit (Unix ms; see
/// [`Pushes::deploy_commit`]), who plans it, and when.
#[derive(Clone, Copy)]
struct Planning<'a> {
    heard: i64,
    actor: &'a str,
    at: DateTime<Utc>,
}

/// What planning a deployment branch's commit works with.
pub struct Pushes<'a> {
    pub(crate) store: &'a dyn Store,
    /// The commit is read from the repository's mirror, under the repository's lock.
    pub(crate) mirrors: &'a Mirrors,
    /// Signs what the policy approves, and carries a merged pull request's approvals.
    pub(crate) decisions: Decisions<'a>,
    /// Told once the deployments are created (agents are woken, the ledger and GitHub follow).
    pub(crate) after: &'a dyn AfterDecision,
}

impl Pushes<'_> {
    /// Fetches `source`'s branch into its mirror and plans every environment of `sha`, creating the
    /// deployments the changes call for. Safe to run twice for one commit (a retried job, a webhook
    /// and a poll): an environment whose newest unstarted deployment already plans this config gets
    /// nothing new. A commit that is no longer the branch's head plans nothing: GitHub does not promise
    /// the order of its deliveries and a failed job is retried later, and planning an older commit
    /// after a newer one would take the environments back by themselves. The head's own push (or the
    /// poller, when that push is lost) plans what the branch holds.
    ///
    /// `heard` (Unix ms) is when the service learned of the commit: its push delivery was received, or
    /// the poller saw it. A rollback's pause taken after that stays: the commit was on the branch
    /// before anyone asked for the rollback, so it is not the newer commit that lifts the pause, even
    /// when its job runs (or is retried) after the rollback.
    pub async fn deploy_commit(
        &self,
        source: &DeploySource,
        sha: &str,
        heard: i64,
        token: Option<String>,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<Deployment>, JobError> {
        self.plan(source, Some(sha), heard, token, actor, at).await
    }

    /// Fetches `source`'s branch and plans its head, as [`deploy_commit`](Self::deploy_commit) plans a
    /// commit.
    pub async fn deploy_head(
        &self,
        source: &DeploySource,
        token: Option<String>,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<Deployment>, JobError> {
        self.plan(source, None, ms(at), token, actor, at).await
    }

    /// Fetches the branch and plans `wanted` (else the branch's head) while holding the repository, in
    /// this process (its mirror's lock) and across replicas ([`crate::store::PlanningHolds`]): two plans
    /// never race to create one commit's deployments, and a plan never creates what it fetched after
    /// another replica planned something it fetched later.
    async fn plan(
        &self,
        source: &DeploySource,
        wanted: Option<&str>,
        heard: i64,
        token: Option<String>,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<Deployment>, JobError> {
        let created = {
            let _held = self.mirrors.lock(&source.repository).await;
            let waiting = std::time::Instant::now();
            let hold = self.store.hold_repository(&source.repository).await?;
            metrics::histogram!(PLANNING_HOLD_SECONDS).record(waiting.elapsed().as_secs_f64());
            let (branch, wanted_owned) = (format!("refs/heads/{}", source.branch), wanted.map(str::to_string));
            let (mirror, head, known) = self
                .mirrors
                .run(&source.url, move |m| {
                    m.fetch(&[&branch], token.as_deref())?;
                    let head = m.resolve(&branch)?;
                    // A commit the fetch did not bring is not known to be older: it fails below, and is
                    // retried.
                    let known = wanted_owned.is_some_and(|w| m.resolve(&w).is_ok());
                    Ok::<_, JobError>((m.path().to_path_buf(), head, known))
                })
                .await?;
            let sha = wanted.unwrap_or(&head);
            if sha != head && known {
                tracing::info!(repository = %source.repository, commit = %sha, head = %head, branch = %source.branch, "the branch has moved on from this commit; its head is planned instead");
                metrics::counter!("honua_push_heads_coalesced_total").increment(1);
                hold.release().await?;
                return Ok(Vec::new());
            }
            let to = load(&mirror, sha).await?;
            let mut created = Vec::new();
            for env in to.environments().cloned().collect::<Vec<_>>() {
                if let Some(d) =
                    self.deploy_environment(source, &mirror, &to, &env, Planning { heard, actor, at }).await?
                {
                    created.push(d);
                }
            }
            self.store.set_branch_head(&source.repository, &source.branch, sha, ms(at)).await?;
            hold.release().await?;
            created
        };
        self.after.decided(&source.repository).await;
        Ok(created)
    }

    async fn deploy_environment(
        &self,
        source: &DeploySource,
        mirror: &Path,
        to: &Arc<ConfigRepo>,
        env: &EnvName,
        planning: Planning<'_>,
    ) -> Result<Option<Deployment>, JobError> {
        let Planning { heard, actor, at } = planning;
        let filter =
            |states: &[DeploymentState]| DeploymentFilter::environment(Some(&source.repository), env, states, 50);
        if let Some(pause) = self.store.environment_pause(&source.repository, env.as_str()).await? {
            if pause.commit == to.revision {
                tracing::info!(environment = %env, commit = %to.revision, rollback = %pause.deployment, "automatic deployments paused after a rollback");
                return Ok(None);
            }
            if heard < pause.at {
                tracing::info!(environment = %env, commit = %to.revision, rollback = %pause.deployment, "a commit heard of before the rollback leaves its pause in place");
                return Ok(None);
            }
            self.store.resume_environment(&source.repository, env.as_str()).await?;
            let entry = NewAudit {
                actor: actor.to_string(),
                action: "environment.resume".into(),
                repository: Some(source.repository.clone()),
                environment: Some(env.clone()),
                deployment: None,
                message: format!(
                    "commit {} landed after the rollback {}: automatic deployments resume",
                    short(&to.revision),
                    pause.deployment
                ),
            };
            self.store.record_audit(&entry, ms(at)).await?;
        }
        let last = self.store.deployments(&filter(&[DeploymentState::Completed])).await?.into_iter().next();
        let unstarted = self.store.deployments(&filter(&DeploymentState::UNSTARTED)).await?;
        let from = match &last {
            Some(d) => load(mirror, &d.commit).await?,
            None => Arc::new(ConfigRepo::from_files(RepoFiles::default(), String::new())),
        };
        // The policy of what runs judges the change; nothing runs yet: the merged commit's own policy.
        let policy_source = if last.is_some() { from.clone() } else { to.clone() };
        let unchanged = |base: &ConfigRepo| {
            diff_environment(env, base.effective(env), to.effective(env)).is_empty() && same_policy(base, to)
        };
        if last.is_some() && unchanged(&from) {
            for d in &unstarted {
                self.store
                    .transition(
                        &d.id,
                        DeploymentState::Superseded,
                        actor,
                        &format!("commit {} brings {env} back to what it runs", short(&to.revision)),
                        ms(at),
                    )
                    .await?;
            }
            return Ok(None);
        }
        if let Some(newest) = unstarted.first() {
            if newest.commit == to.revision || unchanged(&*load(mirror, &newest.commit).await?) {
                return Ok(None);
            }
        }

        let (from2, to2, policy2, env2) = (from.clone(), to.clone(), policy_source.clone(), env.clone());
        let plan = tokio::task::spawn_blocking(move || {
            crate::plan::build_with_policy(&from2, &to2, &policy2, Some(&env2), at)
                .plans
                .into_iter()
                .find(|p| p.environment == env2)
        })
        .await
        .map_err(|e| JobError::Git(format!("planning task: {e}")))?;
        let Some(plan) = plan else { return Ok(None) };

        let sequence = self.store.next_sequence(&source.repository, env.as_str()).await?;
        let mut id = deployment_id(env, at, &to.revision);
        if self.store.deployment(&id).await?.is_some() {
            id = DeploymentId::new(format!("{id}-{sequence}"));
        }
        let (state, gate) = match &plan.decision {
            Decision::Auto => (DeploymentState::Approved, Gate::Auto),
            Decision::NeedsApproval(_) => (DeploymentState::AwaitingApproval, Gate::Approval),
            Decision::Blocked(_) if plan.acknowledgeable => (DeploymentState::Blocked, Gate::Breaking),
            Decision::Blocked(_) => (DeploymentState::Blocked, Gate::Closed),
        };
        let reasons = plan.decision.reasons().to_vec();
        let env_policy = env_policy(&policy_source, env.as_str());
        let windows = crate::policy::window::Rules {
            windows: env_policy.safety.deployment_windows.clone(),
            blackouts: env_policy.safety.blackout_periods.clone(),
        };
        let mut new = NewDeployment {
            deployment: Deployment {
                id,
                repository: source.repository.clone(),
                environment: env.clone(),
                sequence,
                commit: to.revision.clone().into(),
                from_commit: last.map(|d| d.commit),
                plan_digest: plan.digest.clone(),
                plan: serde_json::to_value(&plan).expect("plans encode"),
                state,
                gate,
                reasons,
                windows,
                safety: Some(crate::plan::signing::ApplySafety::of(&env_policy)),
                cause: Cause::Push,
                signed: None,
                // Only what an approval can start waits for one, and so may wait too long.
                expires_at: env_policy
                    .approval_timeout
                    .filter(|_| matches!(gate, Gate::Approval | Gate::Breaking))
                    .map(|secs| ms(at) + secs as i64 * 1000),
                created_at: ms(at),
                updated_at: ms(at),
            },
            notifications: env_policy.notifications.clone(),
            approvals: Vec::new(),
            actor: actor.to_string(),
            message: format!("planned from commit {} of {}", short(&to.revision), source.branch),
        };
        if gate == Gate::Auto {
            let approval = Approval {
                actor: "policy".into(),
                via: Via::Policy,
                plan_digest: plan.digest.clone(),
                breaking: false,
                at: ms(at),
            };
            new.approvals.push(approval);
            new = self.decisions.signed(new);
        }
        match self.store.create_deployment(&new, ms(at)).await? {
            Created::New { superseded } => {
                tracing::info!(deployment = %new.deployment.id, state = %new.deployment.state, superseded = superseded.len(), "deployment created");
            }
            Created::AlreadyPlanned(id) => {
                tracing::info!(deployment = %id, commit = %to.revision, environment = %env, "planned at the same time elsewhere; nothing new");
                return Ok(None);
            }
        }
        let created = self.store.deployment(&new.deployment.id).await?;
        if let Some(d) = &created {
            // The merged PR's approval, given on its final head, carries if the plan is the same.
            self.decisions.carry_pr_approvals(d).await?;
        }
        Ok(self.store.deployment(&new.deployment.id).await?)
    }
}

/// Whether two commits carry the same policy (a policy change alone is a change to plan).
fn same_policy(a: &ConfigRepo, b: &ConfigRepo) -> bool {
    match (&a.policy, &b.policy) {
        (Some(x), Some(y)) => values::same(&x.root, &y.root),
        (None, None) => true,
        _ => false,
    }
}
