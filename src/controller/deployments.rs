//! Deployments once planned ([`super::pushes`] plans them): the deployment ids, the service's signing
//! key, what happens after a decision (agents woken, the Git ledger published, GitHub's Deployments API
//! mirrored, notifications queued), the sweep that expires what waited too long for its approval, and
//! which approved deployment an agent may start now. Every step is in the audit log (the store writes a
//! transition and its audit entry in one transaction).

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{Controller, JobError};
use crate::config::{ConfigRepo, EnvName};
use crate::deployment::short_sha as short;
use crate::deployment::DeploymentId;
use crate::git::ledger::LedgerEntry;
use crate::plan::signing::Signer;
use crate::store::{Deployment, DeploymentFilter, DeploymentState, Store, StoreError};

/// How often the service looks for deployments whose approval timed out (an approval that comes late is
/// refused whenever it comes, so this only decides how soon `expired` shows).
pub const EXPIRY_SWEEP: std::time::Duration = std::time::Duration::from_secs(30);

/// Why an approval or rejection was refused, in words for the person who asked.
#[derive(Debug, thiserror::Error)]
pub enum DecisionError {
    #[error("no deployment `{0}`; list them with `honua deployments ENV`")]
    NotFound(DeploymentId),
    #[error("deployment {id} is {state}: {hint}")]
    WrongState { id: DeploymentId, state: DeploymentState, hint: &'static str },
    #[error("deployment {id} cannot be approved: {reasons}; push a fix, which plans a new deployment")]
    Closed { id: DeploymentId, reasons: String },
    #[error("deployment {id} has breaking changes and the policy does not allow them: approve again acknowledging them (`--breaking`)")]
    NeedsBreaking { id: DeploymentId },
    #[error("deployment {id} expired at {at}: no approval came within the environment's approvalTimeout; push again to plan it anew (an empty commit will do: `git commit --allow-empty`)")]
    Expired { id: DeploymentId, at: String },
    #[error("{0}")]
    Rollback(String),
    #[error("{0}")]
    NotPaused(String),
    #[error("{0}")]
    BadReport(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<crate::git::GitError> for DecisionError {
    fn from(e: crate::git::GitError) -> Self {
        DecisionError::Failed(e.to_string())
    }
}

impl From<JobError> for DecisionError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::Store(e) => DecisionError::Store(e),
            other => DecisionError::Failed(other.to_string()),
        }
    }
}

impl DecisionError {
    /// A stable name for API errors.
    pub fn code(&self) -> &'static str {
        match self {
            DecisionError::NotFound(_) => "not_found",
            DecisionError::WrongState { .. } => "wrong_state",
            DecisionError::Closed { .. } => "not_approvable",
            DecisionError::NeedsBreaking { .. } => "breaking_not_acknowledged",
            DecisionError::Expired { .. } => "expired",
            DecisionError::Rollback(_) => "no_rollback_target",
            DecisionError::NotPaused(_) => "not_paused",
            DecisionError::BadReport(_) => "bad_report",
            DecisionError::Forbidden(_) => "forbidden",
            DecisionError::Failed(_) => "failed",
            DecisionError::Store(_) => "store_unavailable",
        }
    }
}

/// `<env-short>-<yyyymmddHHMMSS>-<sha7>`, e.g. `prod-20241004123456-abc1234`.
pub fn deployment_id(env: &EnvName, at: DateTime<Utc>, sha: &str) -> DeploymentId {
    DeploymentId::new(format!("{}-{}-{}", env.short(), at.format("%Y%m%d%H%M%S"), short(sha)))
}

/// The signing key of the service: generated on first start and kept in the store, so every replica
/// (and every restart) signs with the same key.
pub async fn service_signer(store: &dyn Store) -> Result<Signer, JobError> {
    let candidate = Signer::generate_secret().map_err(|e| JobError::Permanent(e.to_string()))?;
    let secret = store.service_key("deployment-signing-ed25519", &candidate, crate::store::now_ms()).await?;
    Signer::from_secret(&secret).map_err(|e| JobError::Permanent(format!("stored signing key: {e}")))
}

pub(super) fn ms(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

/// The policy `repo` carries for `env` (the cautious default when it has none).
pub(super) fn env_policy(repo: &ConfigRepo, env: &str) -> crate::policy::EnvironmentPolicy {
    crate::policy::Policy::of(repo).for_env(env).0
}

pub(super) async fn load(mirror: &Path, rev: &str) -> Result<Arc<ConfigRepo>, JobError> {
    let (path, rev) = (mirror.to_path_buf(), rev.to_string());
    tokio::task::spawn_blocking(move || ConfigRepo::load_git(&path, &rev).map(Arc::new))
        .await
        .map_err(|e| JobError::Git(format!("loading task: {e}")))?
        .map_err(|e| JobError::Git(e.to_string()))
}

/// `first` and every repository queued behind it, each once: a burst of decisions of one repository is
/// published once.
fn burst(
    first: String,
    queue: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
) -> std::collections::BTreeSet<String> {
    let mut batch = std::collections::BTreeSet::from([first]);
    while let Ok(more) = queue.try_recv() {
        batch.insert(more);
    }
    batch
}

/// How many repositories the publisher brings to their Git ledgers at once. A remote that accepts
/// connections and then says nothing costs its own repository the Git timeouts, not the others.
pub const LEDGERS_AT_ONCE: usize = 8;

/// The repositories whose ledger and notifications are being published, one task each, and those
/// waiting for a turn. A repository is never published twice at once (its mirror is one), and one
/// queued while its publication runs is published again after it: the decision may have come after that
/// run read the store.
#[derive(Default)]
struct LedgerTasks {
    running: tokio::task::JoinSet<()>,
    busy: std::collections::HashMap<tokio::task::Id, String>,
    waiting: std::collections::BTreeSet<String>,
}

impl LedgerTasks {
    fn queue(&mut self, repository: String, controller: &Arc<Controller>) {
        self.waiting.insert(repository);
        self.start(controller);
    }

    /// A task ended (its publication done, or panicked): its repository is free again.
    fn ended(&mut self, task: tokio::task::Id, controller: &Arc<Controller>) {
        self.busy.remove(&task);
        self.start(controller);
    }

    fn start(&mut self, controller: &Arc<Controller>) {
        let free = LEDGERS_AT_ONCE.saturating_sub(self.busy.len());
        let ready: Vec<String> =
            self.waiting.iter().filter(|r| !self.busy.values().any(|b| b == *r)).take(free).cloned().collect();
        for repository in ready {
            self.waiting.remove(&repository);
            let (controller, name) = (controller.clone(), repository.clone());
            let task = self.running.spawn(async move { controller.publish_ledger_and_notifications(&name).await }).id();
            self.busy.insert(task, repository);
        }
    }
}

/// The background publisher's queues of repositories: the Git ledger and the notifications on one,
/// GitHub's Deployments mirror on the other (see [`Controller::start_publisher`]).
pub(crate) struct Publisher {
    ledger: tokio::sync::mpsc::UnboundedSender<String>,
    github: tokio::sync::mpsc::UnboundedSender<String>,
}

impl Controller {
    /// Brings GitHub's Deployments API up to date with our deployments of `repository`: creates the
    /// mirror of each new one (environment, commit, our id in the payload) and posts a status for each
    /// state GitHub has not seen. Plain-Git repositories and the service without an App have none.
    pub async fn sync_github_deployments(&self, repository: &str) -> Result<(), JobError> {
        if self.github.is_none() || crate::deployment::RepoId::parse(repository).github().is_none() {
            return Ok(());
        }
        let _one_at_a_time = self.github_sync.lock().await;
        let pending = self.store.unsynced_github_deployments(repository, 100).await?;
        if pending.is_empty() {
            return Ok(());
        }
        let gh = self.sources().github_repo_of(repository).await?;
        for (d, github_id) in pending {
            let github_id = match github_id {
                Some(id) => id as u64,
                None => {
                    let description = format!("{} of {}", d.id, d.commit.short());
                    gh.create_deployment(&d.commit, &d.environment, &d.id, &description).await?
                }
            };
            let description = match d.reasons.first() {
                Some(reason) if d.state.is_unstarted() && d.state != DeploymentState::Approved => {
                    format!("{}: {reason}", d.state)
                }
                _ => d.state.to_string(),
            };
            let log_url =
                self.public_url.as_ref().map(|base| format!("{}/deployments/{}", base.trim_end_matches('/'), d.id));
            gh.create_deployment_status(github_id, d.state, &description, log_url.as_deref()).await?;
            self.store.set_github_sync(&d.id, github_id as i64, d.state).await?;
        }
        Ok(())
    }

    /// After decisions: agents are woken at once; the ledger, GitHub's Deployments mirror (rate-limited
    /// by GitHub) and notifications follow in the background publisher, so neither the job that decided
    /// nor the next one waits for them. Without a running publisher (no worker) they follow inline.
    pub async fn decided(&self, repository: &str) {
        self.feed.changed();
        self.events.notify_waiters();
        self.catch_up(repository).await;
    }

    /// Brings `repository`'s Git ledger, GitHub's Deployments mirror and its notifications up to the
    /// store, in the background publisher (inline without one), waking no one: nothing was decided. The
    /// poller calls it on every poll, so what could not be published after a decision (the remote or
    /// GitHub out of reach) follows once they answer, even when no decision comes after it.
    pub async fn catch_up(&self, repository: &str) {
        let queued = match self.publisher.lock().expect("publisher lock").as_ref() {
            Some(p) => p.ledger.send(repository.to_string()).is_ok() && p.github.send(repository.to_string()).is_ok(),
            None => false,
        };
        if !queued {
            self.publish_decisions(repository).await;
        }
    }

    /// Expires the deployments that waited for their approval past their environment's `approvalTimeout`
    /// (at most 1,000 a call; the next call takes the rest), then publishes the decisions as any other.
    /// Returns how many expired. Replicas may race for one: the transition is a compare-and-set.
    pub async fn expire_overdue(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let overdue = self.store.overdue_for_approval(ms(now), 1000).await?;
        let mut repositories = std::collections::BTreeSet::new();
        let mut expired = 0;
        for d in overdue {
            let d = self.decisions().expire(d, now).await?;
            if d.state == DeploymentState::Expired {
                tracing::info!(deployment = %d.id, environment = %d.environment, "expired: no approval in time");
                expired += 1;
                repositories.insert(d.repository);
            }
        }
        for repository in repositories {
            self.decided(&repository).await;
        }
        Ok(expired)
    }

    /// Starts the background publisher once (with the first worker), until `shutdown`. One loop publishes
    /// each queued repository's ledger and notifications, up to [`LEDGERS_AT_ONCE`] repositories at once
    /// (a burst of decisions of one repository once), and every [`EXPIRY_SWEEP`] expires what waited too
    /// long for its approval. Another mirrors the deployments to GitHub: a GitHub that makes writes wait
    /// (its content-creation limits, a slow answer) holds back only that mirror, never the ledger agents
    /// fall back on or the notifications.
    pub(super) fn start_publisher(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut slot = self.publisher.lock().expect("publisher lock");
        if slot.is_some() {
            return;
        }
        let (queue, mut pending) = tokio::sync::mpsc::unbounded_channel::<String>();
        let (github, mut github_pending) = tokio::sync::mpsc::unbounded_channel::<String>();
        *slot = Some(Publisher { ledger: queue, github });
        drop(slot);
        let this = self.clone();
        // Ends once the senders are dropped (at shutdown, below) and what it took is mirrored.
        tokio::spawn(async move {
            while let Some(first) = github_pending.recv().await {
                for repository in burst(first, &mut github_pending) {
                    this.publish_github(&repository).await;
                }
            }
        });
        tokio::spawn(async move {
            let mut sweep = tokio::time::interval_at(tokio::time::Instant::now() + EXPIRY_SWEEP, EXPIRY_SWEEP);
            sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut tasks = LedgerTasks::default();
            loop {
                tokio::select! {
                    queued = pending.recv() => match queued {
                        Some(repository) => tasks.queue(repository, &self),
                        None => break,
                    },
                    Some(ended) = tasks.running.join_next_with_id() => {
                        let task = match ended {
                            Ok((task, ())) => task,
                            Err(e) => {
                                tracing::error!(error = %e, "a ledger publication ended abnormally; the next decision or poll retries");
                                e.id()
                            }
                        };
                        tasks.ended(task, &self);
                    }
                    _ = sweep.tick() => {
                        // What expires is queued for publishing here like any other decision.
                        if let Err(e) = self.expire_overdue(Utc::now()).await {
                            tracing::warn!(error = %e, "could not expire overdue deployments; the next sweep retries");
                        }
                    }
                    _ = shutdown.changed() => break,
                }
            }
            // What is being published finishes; whatever else was queued at shutdown is published on the
            // next decision or poll.
            while tasks.running.join_next().await.is_some() {}
            *self.publisher.lock().expect("publisher lock") = None;
        });
    }

    /// After decisions: the Git ledger, GitHub's Deployments mirror and the notifications catch up.
    /// Failing must not fail the caller (the decision is recorded); each catches up on the next
    /// decision or poll.
    pub async fn publish_decisions(&self, repository: &str) {
        self.publish_ledger_and_notifications(repository).await;
        self.publish_github(repository).await;
    }

    async fn publish_github(&self, repository: &str) {
        if let Err(e) = self.sync_github_deployments(repository).await {
            tracing::warn!(repository, error = %e, "GitHub deployments not updated yet; the next poll retries");
        }
    }

    async fn publish_ledger_and_notifications(&self, repository: &str) {
        if let Err(e) = self.publish_ledger(repository).await {
            tracing::warn!(repository, error = %e, "ledger not published yet; the next decision or poll retries");
        }
        if let Err(e) = self.notifier.queue(&*self.store, repository).await {
            tracing::warn!(repository, error = %e, "notifications not queued yet; the next decision or poll retries");
        }
        if let Err(e) = self.notifier.deliver(&*self.store).await {
            tracing::warn!(error = %e, "notifications not delivered yet; the next poll retries");
        }
    }

    /// Publishes every signed record of `repository` not in its Git ledger yet.
    pub async fn publish_ledger(&self, repository: &str) -> Result<(), JobError> {
        let pending = self.store.unpublished_records(repository, 500).await?;
        if pending.is_empty() {
            return Ok(());
        }
        let entries: Vec<LedgerEntry> = pending
            .iter()
            .filter_map(|d| {
                Some(LedgerEntry {
                    environment: d.environment.to_string(),
                    sequence: d.sequence,
                    deployment: d.id.to_string(),
                    signed: d.signed.clone()?,
                    windows: d.windows.clone(),
                })
            })
            .collect();
        let token = self.sources().git_token_for(repository).await?;
        let url = self.sources().url_for(repository);
        let _held = self.mirrors.lock(repository).await;
        self.mirrors
            .run(&url, move |mirror| {
                crate::git::ledger::publish(&mirror, &entries, token.as_deref())
                    .map_err(|e| JobError::Git(e.to_string()))
            })
            .await?;
        let ids: Vec<DeploymentId> = pending.into_iter().map(|d| d.id).collect();
        self.store.set_ledger_published(&ids, crate::store::now_ms()).await?;
        Ok(())
    }

    /// The deployment an agent of `environment` should run now: the newest approved one, if its
    /// deployment windows are open (and no blackout holds) at `at`. One outside its window waits, and is
    /// returned once it opens.
    pub async fn startable(
        &self,
        repository: &str,
        environment: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<Deployment>, StoreError> {
        let approved = self
            .store
            .deployments(&DeploymentFilter::environment(Some(repository), environment, &[DeploymentState::Approved], 1))
            .await?;
        Ok(approved.into_iter().next().filter(|d| d.windows.at(at).allowed_now))
    }
}

#[async_trait::async_trait]
impl super::decisions::AfterDecision for Controller {
    async fn decided(&self, repository: &str) {
        Controller::decided(self, repository).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_ids_follow_the_documented_form() {
        let at = DateTime::parse_from_rfc3339("2024-10-04T12:34:56Z").unwrap().with_timezone(&Utc);
        let sha = "abc1234def5678abc1234def5678abc1234def56";
        assert_eq!(deployment_id(&EnvName::new("production"), at, sha), "prod-20241004123456-abc1234");
        assert_eq!(deployment_id(&EnvName::new("staging"), at, sha), "stage-20241004123456-abc1234");
        assert_eq!(deployment_id(&EnvName::new("qa"), at, sha), "qa-20241004123456-abc1234");
    }
}
