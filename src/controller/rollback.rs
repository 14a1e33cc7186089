//! Rollback: a deployment back to the last completed earlier commit of an environment (or one named),
//! approved by whoever asked, then a pause of automatic deployments until a newer commit lands, so
//! the broken commit is not re-deployed by itself. In GitHub mode a revert pull request is opened so
//! that Git matches what runs again (never a force push).

use chrono::{DateTime, Utc};

use super::decisions::Decisions;
use super::deployments::{deployment_id, load, ms};
use super::pushes::Pushes;
use super::sources::Sources;
use super::{DecisionError, DeploySource, JobError, Mirrors};
use crate::config::EnvName;
use crate::deployment::{Cause, CommitSha, DeploymentId, Via};
use crate::markdown;
use crate::store::{
    Approval, Deployment, DeploymentFilter, DeploymentState, EnvironmentPause, Gate, NewAudit, NewDeployment, Store,
};

/// A rollback before it is made: see [`Rollbacks::plan_rollback`].
pub struct RollbackPlan {
    pub repository: String,
    pub source: DeploySource,
    /// What runs now.
    pub current: Deployment,
    /// What the rollback restores.
    pub target: Deployment,
    /// The change back, planned with the policy of what runs.
    pub plan: crate::plan::Plan,
    /// The repository at what runs.
    pub running: std::sync::Arc<crate::config::ConfigRepo>,
}

/// What ran in an environment, oldest first, as a stack: each completed deployment is pushed, and a
/// completed rollback pops what it rolled back, down to the deployment whose commit it restored. The
/// last entry runs now; the one before it is what a rollback restores. So rolling back twice goes
/// further back, never forward to the commit just rolled back.
fn what_ran(mut completed: Vec<Deployment>) -> Vec<Deployment> {
    completed.sort_by_key(|d| (d.created_at, d.sequence));
    let mut stack: Vec<Deployment> = Vec::new();
    for d in completed {
        if d.cause == Cause::Rollback {
            if let Some(at) = stack.iter().rposition(|earlier| earlier.commit == d.commit) {
                stack.truncate(at);
            }
        }
        stack.push(d);
    }
    stack
}

/// What rollback and resume work with.
pub struct Rollbacks<'a> {
    pub(crate) store: &'a dyn Store,
    /// What ran is read from the repository's mirror; the revert pull request's tree too.
    pub(crate) mirrors: &'a Mirrors,
    /// Where the repository deploys from, and its GitHub client for the revert pull request.
    pub(crate) sources: Sources<'a>,
    /// Signs the rollback, approved by whoever asked for it.
    pub(crate) decisions: Decisions<'a>,
    /// `resume` plans the branch head as a push would.
    pub(crate) pushes: Pushes<'a>,
    /// Whether a rollback opens a revert pull request (GitHub mode, unless turned off).
    pub(crate) revert_pull_requests: bool,
}

impl Rollbacks<'_> {
    /// What a rollback of `environment` would do, without doing it: what runs, what it restores, and the
    /// plan of the change back. `honua rollback` shows it before asking.
    pub async fn plan_rollback(
        &self,
        repository: Option<&str>,
        environment: &str,
        to: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<RollbackPlan, DecisionError> {
        let repository = match repository {
            Some(r) => r.to_string(),
            None => self.only_repository_of(environment).await?,
        };
        let completed = self
            .store
            .deployments(&DeploymentFilter::environment(
                Some(&repository),
                environment,
                &[DeploymentState::Completed],
                200,
            ))
            .await?;
        let history = what_ran(completed);
        let Some(current) = history.last().cloned() else {
            return Err(DecisionError::Rollback(format!(
                "nothing has completed in `{environment}` of {repository}: there is nothing to roll back"
            )));
        };
        let target = match to {
            Some(id) => {
                let d = self.store.deployment(id).await?.ok_or_else(|| DecisionError::NotFound(id.into()))?;
                if d.repository != repository || d.environment != environment || d.state != DeploymentState::Completed {
                    return Err(DecisionError::Rollback(format!(
                        "{id} is not a completed deployment of `{environment}` in {repository}; name one from `honua deployments {environment}`"
                    )));
                }
                if d.commit == current.commit {
                    return Err(DecisionError::Rollback(format!("{id} deployed the commit `{environment}` runs now")));
                }
                d
            }
            None => history.iter().rev().find(|d| d.commit != current.commit).cloned().ok_or_else(|| {
                DecisionError::Rollback(format!(
                    "`{environment}` has nothing earlier than {} (commit {}) to roll back to: what ran before it was rolled back already, or never completed",
                    current.id,
                    current.commit.short()
                ))
            })?,
        };

        let source = self.sources.source_for(&repository).await?;
        let mirror =
            self.mirrors.run(&source.url, |mirror| Ok::<_, DecisionError>(mirror.path().to_path_buf())).await?;
        let from = load(&mirror, &current.commit).await?;
        let to_repo = load(&mirror, &target.commit).await?;
        let env = EnvName::new(environment);
        let (f, t, e) = (from.clone(), to_repo.clone(), env.clone());
        let plan = tokio::task::spawn_blocking(move || {
            crate::plan::build_with_policy(&f, &t, &f, Some(&e), at).plans.into_iter().find(|p| p.environment == e)
        })
        .await
        .map_err(|e| DecisionError::Failed(format!("planning task: {e}")))?
        .ok_or_else(|| {
            DecisionError::Rollback(format!("`{environment}` does not exist at {}", target.commit.short()))
        })?;
        Ok(RollbackPlan { repository, source, current, target, plan, running: from })
    }

    pub async fn rollback(
        &self,
        repository: Option<&str>,
        environment: &str,
        to: Option<&str>,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<Deployment, DecisionError> {
        let repository = match repository {
            Some(r) => r.to_string(),
            None => self.only_repository_of(environment).await?,
        };
        // Planned and created while no push is planned (here or on another replica): a push planned at
        // the same time would otherwise create its deployment after this one and supersede it.
        let hold = self.store.hold_repository(&repository).await?;
        let RollbackPlan { repository, source, current, target, plan, running: from } =
            self.plan_rollback(Some(&repository), environment, to, at).await?;
        let env = EnvName::new(environment);

        let sequence = self.store.next_sequence(&repository, environment).await?;
        let mut id = deployment_id(&env, at, &target.commit);
        if self.store.deployment(&id).await?.is_some() {
            id = DeploymentId::new(format!("{id}-{sequence}"));
        }
        // The policy of what runs now decides how the rollback is applied.
        let policy = super::deployments::env_policy(&from, environment);
        let safety = crate::plan::signing::ApplySafety::of(&policy);
        // Asking for a rollback is the approval, breaking changes included: it restores what ran.
        let approval = Approval {
            actor: actor.into(),
            via: Via::Api,
            plan_digest: plan.digest.clone(),
            breaking: true,
            at: ms(at),
        };
        let message = format!(
            "rollback of {} to {} (commit {}) requested by {actor}",
            current.id,
            target.id,
            target.commit.short()
        );
        let new = self.decisions.signed(NewDeployment {
            deployment: Deployment {
                id: id.clone(),
                repository: repository.clone(),
                environment: environment.into(),
                sequence,
                commit: target.commit.clone(),
                from_commit: Some(current.commit.clone()),
                plan_digest: plan.digest.clone(),
                plan: serde_json::to_value(&plan).expect("plans encode"),
                state: DeploymentState::Approved,
                gate: Gate::Approval,
                reasons: vec![message.clone()],
                // An incident response is not held back by deployment windows.
                windows: Default::default(),
                safety: Some(safety),
                cause: Cause::Rollback,
                signed: None,
                expires_at: None,
                created_at: ms(at),
                updated_at: ms(at),
            },
            notifications: policy.notifications,
            approvals: vec![approval],
            actor: actor.into(),
            message: message.clone(),
        });
        self.store.create_deployment(&new, ms(at)).await?;
        // The newest commit known on the branch (what would otherwise deploy next); at least the commit
        // rolled back from, which the branch head may not show yet while its push is being processed.
        let head = match self.store.branch_head(&repository, &source.branch).await? {
            Some(head) if head != target.commit => CommitSha::from(head),
            _ => current.commit.clone(),
        };
        let pause = EnvironmentPause {
            repository: repository.clone(),
            environment: environment.into(),
            commit: head.clone(),
            deployment: id.clone(),
            actor: actor.into(),
            at: ms(at),
        };
        self.store.pause_environment(&pause).await?;
        self.store
            .record_audit(
                &NewAudit {
                    actor: actor.into(),
                    action: "environment.pause".into(),
                    repository: Some(repository.clone()),
                    environment: Some(environment.into()),
                    deployment: Some(id.clone()),
                    message: format!("automatic deployments paused until a commit newer than {} lands", head.short()),
                },
                ms(at),
            )
            .await?;
        hold.release().await?;
        if self.revert_pull_requests && head != target.commit {
            if let Err(e) = self.open_revert_pull_request(&source, &head, &target, &id, actor).await {
                // The rollback stands; Git is brought back by hand.
                tracing::warn!(deployment = %id, error = %e, "could not open the revert pull request");
                let entry = NewAudit {
                    actor: "service".into(),
                    action: "rollback.revert_pr_failed".into(),
                    repository: Some(repository.clone()),
                    environment: Some(environment.into()),
                    deployment: Some(id.clone()),
                    message: format!("the revert pull request could not be opened: {e}"),
                };
                self.store.record_audit(&entry, ms(at)).await?;
            }
        }
        self.store.deployment(&id).await?.ok_or(DecisionError::NotFound(id))
    }

    /// Lifts the pause a rollback left on `environment` and plans the branch head again, as a push
    /// would: the operator says the rolled-back commit may run after all (a fix that lands lifts the
    /// pause by itself). Returns the pause lifted and the deployment planned, if the head changes
    /// anything.
    pub async fn resume(
        &self,
        repository: Option<&str>,
        environment: &str,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<(EnvironmentPause, Option<Deployment>), DecisionError> {
        let repository = match repository {
            Some(r) => r.to_string(),
            None => self.only_repository_of(environment).await?,
        };
        let Some(pause) = self.store.environment_pause(&repository, environment).await? else {
            return Err(DecisionError::NotPaused(format!(
                "`{environment}` of {repository} is not paused: automatic deployments run"
            )));
        };
        // The branch is fetched before the pause is lifted: a remote that cannot be reached (or a branch
        // that is gone) leaves the environment paused, and the operator can ask again.
        let source = self.sources.source_for(&repository).await?;
        let token = self.sources.git_token_for(&repository).await?;
        self.mirrors.fetch_branch(&source, token.clone()).await?;
        self.store.resume_environment(&repository, environment).await?;
        let entry = NewAudit {
            actor: actor.into(),
            action: "environment.resume".into(),
            repository: Some(repository.clone()),
            environment: Some(environment.into()),
            deployment: None,
            message: format!(
                "automatic deployments resumed by {actor} (paused at commit {} after the rollback {})",
                pause.commit.short(),
                pause.deployment
            ),
        };
        self.store.record_audit(&entry, ms(at)).await?;
        // Planning tells the dashboards and the agents, the pause lifted included.
        let created = self.pushes.deploy_head(&source, token, actor, at).await?;
        Ok((pause, created.into_iter().find(|d| d.environment == environment)))
    }

    async fn only_repository_of(&self, environment: &str) -> Result<String, DecisionError> {
        let all = self
            .store
            .deployments(&DeploymentFilter { environment: Some(environment.into()), limit: 1000, ..Default::default() })
            .await?;
        let mut repos: Vec<&str> = all.iter().map(|d| d.repository.as_str()).collect();
        repos.sort();
        repos.dedup();
        match repos.as_slice() {
            [one] => Ok(one.to_string()),
            [] => Err(DecisionError::Rollback(format!(
                "no deployments of `{environment}`: there is nothing to roll back"
            ))),
            many => Err(DecisionError::Rollback(format!(
                "`{environment}` is deployed from several repositories ({}): name one with `repository`",
                many.join(", ")
            ))),
        }
    }

    /// A commit on top of the branch head whose tree is the target's, on a branch of its own, and a
    /// pull request from it: merging it makes Git match what runs (the pause then lifts by itself,
    /// and the merge plans nothing new for this environment).
    async fn open_revert_pull_request(
        &self,
        source: &DeploySource,
        head: &str,
        target: &Deployment,
        rollback_id: &str,
        actor: &str,
    ) -> Result<(), JobError> {
        let gh = self.sources.github_repo_of(&source.repository).await?;
        let commit = target.commit.clone();
        let tree = self
            .mirrors
            .run(&source.url, move |mirror| -> Result<String, JobError> {
                let repo = git2::Repository::open_bare(mirror.path())?;
                let oid = git2::Oid::from_str(&commit)?;
                let c = repo.find_commit(oid)?;
                Ok(c.tree_id().to_string())
            })
            .await?;
        let branch = format!("honua/rollback-{rollback_id}");
        let message = format!(
            "Roll back to {} ({})\n\nReverts the configuration to what deployment {} ran. Requested by {actor}; the rollback {rollback_id} is already deployed.",
            target.commit.short(),
            target.id,
            target.id
        );
        let commit = gh.create_commit(&message, &tree, head).await?;
        gh.create_branch(&branch, &commit).await?;
        let restored = (target.environment.as_str(), target.commit.short(), target.id.as_str());
        let body = revert_body(restored, rollback_id, actor, &source.branch);
        gh.open_pull_request(
            &format!("Roll back {} to {}", target.environment, target.commit.short()),
            &branch,
            &source.branch,
            &body,
        )
        .await?;
        Ok(())
    }
}

/// The revert pull request's description, for `restored` (environment, short commit, deployment). The
/// requester is a token's name and the branch a Git ref: values, quoted so that neither becomes a
/// mention, a link or markup in the pull request.
fn revert_body(restored: (&str, &str, &str), rollback_id: &str, actor: &str, branch: &str) -> String {
    let (environment, commit, target) = restored;
    let (environment, branch) = (markdown::code(environment), markdown::code(branch));
    format!(
        "{environment} was rolled back to commit {commit} (deployment {}) by {}: deployment {}.\n\n\
         Merging this pull request makes {branch} match what runs again. Automatic deployments of {environment} \
         are paused until a newer commit lands on {branch}.",
        markdown::code(target),
        markdown::code(actor),
        markdown::code(rollback_id),
    )
}

#[cfg(test)]
mod tests {
    use super::revert_body;

    #[test]
    fn the_revert_pull_request_quotes_the_requester_and_the_branch() {
        let restored = ("production", "abc1234", "prod-20261202010000-abc1234");
        let body = revert_body(restored, "prod-20261202020000-abc1234", "@city/ops [docs](https://x.example)", "main");
        assert!(body.contains("by `@city/ops [docs](https://x.example)`:"), "{body}");
        assert!(body.starts_with("`production` was rolled back to commit abc1234"), "{body}");
        assert!(body.contains("makes `main` match"), "{body}");
        // A name with a backtick cannot close its code span.
        let body = revert_body(restored, "r", "a`b", "main");
        assert!(body.contains("by ``a`b``:"), "{body}");
    }
}
