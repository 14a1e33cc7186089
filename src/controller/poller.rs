//! The polling fallback: every plain-Git remote and every installation of the App is polled on its own
//! schedule, so one that fails or hangs delays no other. What a poll finds is queued as the event a
//! webhook would have brought (a push, a PR head), and goes through the same handlers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{Controller, DeploySource, JobError};
use crate::github::webhook::{polled_job, Event, PullRequestAction, RepoRef};
use crate::store::now_ms;

/// The internal event of plain-Git mode: the poller saw a new head on a configured remote.
pub const GIT_POLL_EVENT: &str = "honua.git_poll";

impl Controller {
    /// Everything the poller polls now: each plain-Git remote, and each installation of the App. Listing
    /// the installations may fail; the remotes are polled all the same.
    async fn poll_targets(&self) -> (Vec<PollTarget>, Option<JobError>) {
        let mut targets: Vec<PollTarget> = self.repositories.iter().cloned().map(PollTarget::Remote).collect();
        let Some(github) = &self.github else { return (targets, None) };
        match github.installations().await {
            Ok(ids) => {
                targets.extend(ids.into_iter().map(PollTarget::Installation));
                (targets, None)
            }
            Err(e) => {
                tracing::warn!(error = %e, "polling: the App's installations could not be listed");
                (targets, Some(e.into()))
            }
        }
    }

    /// The polling fallback, once: every target is polled at the same time and on its own, so one that
    /// fails or hangs delays no other. A plain-Git remote gets a job for a head not yet deployed from;
    /// an installation, for every open PR whose head the service never saw and a default-branch head
    /// whose push was not processed, exactly as if the webhook had arrived. Returns how many were
    /// queued, or the first failure once every target has been polled.
    pub async fn poll_once(&self) -> Result<usize, JobError> {
        let (targets, mut first_error) = self.poll_targets().await;
        let results = futures_util::future::join_all(targets.iter().map(|t| self.poll_target(t))).await;
        let mut queued = 0;
        for (target, result) in targets.iter().zip(results) {
            match result {
                Ok(n) => queued += n,
                Err(e) => {
                    tracing::warn!(target = %target, error = %e, "polling failed");
                    first_error.get_or_insert(e);
                }
            }
        }
        if queued > 0 {
            // Some may be deployment work: both lanes look.
            self.jobs_queued.queued(true);
        }
        if self.github.is_some() {
            if let Err(e) = self.notifier.deliver(&*self.store).await {
                tracing::warn!(error = %e, "notifications not delivered yet; the next poll retries");
            }
        }
        first_error.map_or(Ok(queued), Err)
    }

    async fn poll_target(&self, target: &PollTarget) -> Result<usize, JobError> {
        match target {
            PollTarget::Remote(source) => self.poll_git_remote(source).await,
            PollTarget::Installation(id) => self.poll_installation(*id).await,
        }
    }

    /// One installation: every repository is polled even when another fails (the first failure is
    /// returned at the end).
    async fn poll_installation(&self, installation: u64) -> Result<usize, JobError> {
        let github = self.github.as_ref().ok_or_else(|| JobError::Permanent("no GitHub App".into()))?;
        let mut queued = 0;
        let mut first_error = None;
        for (owner, name, default_branch) in github.installation_repositories(installation).await? {
            match self.poll_repository(installation, &owner, &name, &default_branch).await {
                Ok(n) => queued += n,
                Err(e) => {
                    tracing::warn!(repository = %format!("{owner}/{name}"), error = %e, "polling a repository failed");
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(queued), Err)
    }

    async fn poll_repository(
        &self,
        installation: u64,
        owner: &str,
        name: &str,
        default_branch: &str,
    ) -> Result<usize, JobError> {
        let github = self.github.as_ref().ok_or_else(|| JobError::Permanent("no GitHub App".into()))?;
        let mut queued = 0;
        let gh = github.repo(installation, owner, name)?;
        let full_name = format!("{owner}/{name}");
        self.catch_up(&full_name).await;
        // The default branch: a push whose webhook was lost still becomes deployments.
        let head = match gh.branch_head(default_branch).await {
            Ok(head) => Some(head),
            Err(e) => {
                // An empty repository has no default branch yet; its PRs are still polled.
                tracing::warn!(repository = %full_name, branch = %default_branch, error = %e, "polling: no default-branch head");
                None
            }
        };
        let known = self.store.branch_head(&full_name, default_branch).await?;
        let repo = RepoRef {
            owner: owner.to_string(),
            name: name.to_string(),
            default_branch: default_branch.to_string(),
            installation: Some(installation),
        };
        if let Some(head) = head.filter(|head| known.as_deref() != Some(head.as_str())) {
            let push = Event::Push {
                repo: repo.clone(),
                git_ref: format!("refs/heads/{default_branch}"),
                before: String::new(),
                after: head.clone(),
                pusher: "poller".into(),
                deleted: false,
            };
            let (event, payload) = polled_job("push", &push);
            let delivery = crate::store::NewDelivery {
                id: format!("poll:push:{full_name}@{head}"),
                event,
                repository: Some(full_name.clone()),
                payload,
                pr_head: None,
                deploys: push.deploys(),
            };
            if let crate::store::Recorded::New(_) = self.store.record_delivery(&delivery, now_ms()).await? {
                tracing::info!(repository = %full_name, head = %head, "polling: queued a default-branch head whose push was not processed");
                queued += 1;
            }
        }
        for pr in gh.open_pull_requests().await? {
            let synchronize = Event::PullRequest {
                repo: repo.clone(),
                number: pr.number,
                action: PullRequestAction::Synchronize,
                head_sha: pr.head_sha.clone(),
                head_ref: String::new(),
                base_sha: String::new(),
                base_ref: pr.base_ref.clone(),
                author: String::new(),
                merged: false,
                merge_commit_sha: None,
                from_fork: false,
            };
            let (event, payload) = polled_job("pull_request", &synchronize);
            let delivery = crate::store::NewDelivery {
                id: format!("poll:{full_name}#{}@{}", pr.number, pr.head_sha),
                event,
                repository: Some(full_name.clone()),
                payload,
                pr_head: Some(crate::store::PrHead { number: pr.number, sha: pr.head_sha.clone(), only_if_new: true }),
                deploys: false,
            };
            if let crate::store::Recorded::New(_) = self.store.record_delivery(&delivery, now_ms()).await? {
                tracing::info!(repository = %full_name, number = pr.number, head = %pr.head_sha, "polling: queued a PR whose webhook never arrived");
                queued += 1;
            }
        }
        Ok(queued)
    }

    /// Plain-Git mode: fetches one remote's branch and queues a job for a head not yet deployed from.
    /// The delivery id names the head, so replicas polling together queue it once. Once the remote
    /// answers, what it could not take after a decision (ledger records) follows, as on GitHub.
    async fn poll_git_remote(&self, source: &DeploySource) -> Result<usize, JobError> {
        let head = self.mirrors.fetch_branch(source, None).await?;
        self.catch_up(&source.repository).await;
        if self.store.branch_head(&source.repository, &source.branch).await?.as_deref() == Some(head.as_str()) {
            return Ok(0);
        }
        let polled = PolledHead {
            repository: source.repository.clone(),
            url: source.url.clone(),
            branch: source.branch.clone(),
            sha: head.clone(),
        };
        let delivery = crate::store::NewDelivery {
            id: format!("poll:git:{}@{head}", source.repository),
            event: GIT_POLL_EVENT.into(),
            repository: Some(source.repository.clone()),
            payload: serde_json::to_vec(&polled).expect("JSON encodes"),
            pr_head: None,
            deploys: true,
        };
        if let crate::store::Recorded::New(_) = self.store.record_delivery(&delivery, now_ms()).await? {
            tracing::info!(repository = %source.repository, head = %head, "polling: new head on the deployment branch");
            return Ok(1);
        }
        Ok(0)
    }

    /// Polls until `shutdown`: each target in a task of its own, every `interval`, backing off on its own
    /// failures ([`poll_backoff`]); the App's installations are listed again every interval, so a new one
    /// gets its task and a removed one loses it.
    pub async fn run_poller(self: Arc<Self>, interval: Duration, mut shutdown: watch::Receiver<bool>) {
        let mut tasks: HashMap<PollTarget, tokio::task::JoinHandle<()>> = HashMap::new();
        loop {
            let (targets, _) = self.poll_targets().await;
            // An installation that failed to list keeps its task; one that is gone loses it.
            let listed_installations =
                self.github.is_none() || targets.iter().any(|t| matches!(t, PollTarget::Installation(_)));
            tasks.retain(|target, task| {
                let keep = !task.is_finished() && (targets.contains(target) || !listed_installations);
                if !keep {
                    task.abort();
                }
                keep
            });
            for target in targets {
                if let std::collections::hash_map::Entry::Vacant(slot) = tasks.entry(target) {
                    let target = slot.key().clone();
                    slot.insert(tokio::spawn(self.clone().poll_forever(target, interval, shutdown.clone())));
                }
            }
            if self.github.is_some() {
                if let Err(e) = self.notifier.deliver(&*self.store).await {
                    tracing::warn!(error = %e, "notifications not delivered yet; the next poll retries");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.changed() => break,
            }
        }
        for (_, task) in tasks {
            task.abort();
        }
    }

    /// Polls one target every `interval` until `shutdown`; after a failure it waits longer each time
    /// (see [`poll_backoff`]), and says so once per failure with the target's name.
    async fn poll_forever(
        self: Arc<Self>,
        target: PollTarget,
        interval: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut failures = 0u32;
        let label = target.to_string();
        loop {
            let wait = match self.poll_target(&target).await {
                Ok(queued) => {
                    if failures > 0 {
                        tracing::info!(target = %label, after = failures, "polling works again");
                    }
                    failures = 0;
                    if queued > 0 {
                        self.jobs_queued.queued(true);
                    }
                    interval
                }
                Err(e) => {
                    failures += 1;
                    let wait = poll_backoff(interval, failures);
                    metrics::counter!("honua_poll_failures_total", "target" => label.clone()).increment(1);
                    tracing::warn!(target = %label, failures, retry_in_s = wait.as_secs(), error = %e, "polling failed; this target backs off, the others go on");
                    wait
                }
            };
            metrics::gauge!("honua_poll_consecutive_failures", "target" => label.clone()).set(failures as f64);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// One thing the poller polls, on its own schedule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PollTarget {
    /// A plain-Git remote and its deployment branch.
    Remote(DeploySource),
    /// An installation of the GitHub App: its repositories' default branches and open PRs.
    Installation(u64),
}

impl std::fmt::Display for PollTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PollTarget::Remote(source) => write!(f, "git:{}#{}", source.repository, source.branch),
            PollTarget::Installation(id) => write!(f, "installation:{id}"),
        }
    }
}

/// The wait after `failures` failures in a row: the interval doubled with each, up to ten minutes (or
/// ten intervals, when that is longer).
pub fn poll_backoff(interval: Duration, failures: u32) -> Duration {
    let most = (interval * 10).max(Duration::from_secs(600));
    interval.saturating_mul(1 << failures.min(16)).min(most)
}

/// The payload of [`GIT_POLL_EVENT`].
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct PolledHead {
    pub repository: String,
    pub url: String,
    pub branch: String,
    pub sha: String,
}
