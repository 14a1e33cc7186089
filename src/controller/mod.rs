//! The domain side of the service: workers take jobs from the durable queue and run the handler of
//! their event. Pull requests (here): fetch base and head into the mirror, validate the head, plan base →
//! head with the BASE branch's policy, complete the `honua/validate` and `honua/diff` check runs and
//! keep one sticky plan comment up to date. Pushes to a deployment branch become deployments
//! (`deployments`), comment commands approve, reject and roll back (`comments`, `rollback`), agents'
//! polls and reports move deployments (`agents`), and notifications leave through an outbox (`notify`).

pub mod agents;
mod comments;
pub mod deployments;
pub mod notify;
mod promote;
mod rollback;
pub mod tokens;
pub mod views;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Mutex};
use tracing::Instrument;

use crate::config::ConfigRepo;
use crate::git::mirror::Mirror;
use crate::github::checks::{diff_check, plan_comment, quarantined_check, validate_check, DIFF_CHECK, VALIDATE_CHECK};
use crate::github::client::{GithubApp, GithubError, GithubRepo};
use crate::github::webhook::{parse_job, polled_job, Event, PullRequestAction, RepoRef};
use crate::store::{now_ms, retry_delay, Job, Store};

/// Jobs run, by event and outcome (`honua_jobs_total`), and how long they took.
pub const JOBS: &str = "honua_jobs_total";
pub const JOB_SECONDS: &str = "honua_job_duration_seconds";

fn record_job(event: &str, outcome: &'static str, seconds: f64) {
    metrics::counter!(JOBS, "event" => event.to_string(), "outcome" => outcome).increment(1);
    metrics::histogram!(JOB_SECONDS, "event" => event.to_string()).record(seconds);
}

/// How long a claimed job is ours before another worker may take it over.
pub const JOB_LEASE: Duration = Duration::from_secs(120);

tokio::task_local! {
    /// Whether the job being handled is a retry (an earlier attempt may have done part of its work).
    static RETRY: bool;
}
/// How long an idle worker waits before looking at the queue again, unless woken: jobs queued by
/// other replicas, and retries coming due, are found this way.
const IDLE_POLL: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth retrying: GitHub or the Git remote may answer next time.
    #[error(transparent)]
    Github(#[from] GithubError),
    #[error("git: {0}")]
    Git(String),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// Retrying cannot help (a payload that no longer parses, a missing installation).
    #[error("{0}")]
    Permanent(String),
}

pub use deployments::{DecisionError, DeploySource};

/// The internal event of plain-Git mode: the poller saw a new head on a configured remote.
pub const GIT_POLL_EVENT: &str = "honua.git_poll";

pub struct Controller {
    pub store: Arc<dyn Store>,
    /// The GitHub App; `None` in plain-Git mode (no PR features, approvals by API only).
    pub github: Option<Arc<GithubApp>>,
    /// Plain-Git mode: the remotes polled for their deployment branch.
    pub repositories: Vec<DeploySource>,
    /// Signs approved deployments (see [`deployments::service_signer`]).
    pub signer: crate::plan::signing::Signer,
    /// In GitHub mode, a rollback opens a revert pull request (default true).
    pub revert_pull_requests: bool,
    /// Mirroring to GitHub's Deployments API runs one at a time, so no deployment is mirrored twice.
    github_sync: Mutex<()>,
    /// Slack-compatible incoming webhook for `type: slack` entries that name only a channel.
    pub slack_webhook: Option<String>,
    /// For notifications.
    http: reqwest::Client,
    /// Signalled after decisions and agent reports: long-polling agents look at their desired state.
    /// Signal it with [`Controller::decisions_changed`], which also empties the memo below.
    pub decisions: Arc<tokio::sync::Notify>,
    /// What each environment should run, shared by the agents that ask within a second (see
    /// [`Controller::desired`]): `(repository, environment, minute)` → the answer being or been read.
    /// Emptied by every decision of this process.
    desired_memo: std::sync::Mutex<HashMap<agents::MemoKey, agents::Memo>>,
    /// Signalled on every change a dashboard shows: decisions, agent reports and heartbeats.
    pub events: Arc<tokio::sync::Notify>,
    /// Base of clone URLs: `owner/name` is fetched from `{git_url}/owner/name.git`.
    pub git_url: String,
    pub mirrors: PathBuf,
    /// Base of the service's public URL, for the check runs' `details_url`.
    pub public_url: Option<String>,
    /// Signalled by the webhook route when it queues a job, so an idle worker starts at once.
    pub jobs_queued: Arc<tokio::sync::Notify>,
    repo_locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// How long a claimed job is a worker's before another replica may take it over (default
    /// [`JOB_LEASE`]; a job longer than this must fit in it).
    pub job_lease: Duration,
    /// Repositories whose decisions the background publisher (started with the first worker) is to
    /// publish; `None` before it runs, and then publishing happens inline.
    publisher: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedSender<String>>>,
}

impl Controller {
    pub fn new(
        store: Arc<dyn Store>,
        github: Option<Arc<GithubApp>>,
        signer: crate::plan::signing::Signer,
        git_url: String,
        mirrors: PathBuf,
        public_url: Option<String>,
    ) -> Self {
        Controller {
            store,
            github,
            repositories: Vec::new(),
            signer,
            revert_pull_requests: true,
            github_sync: Mutex::new(()),
            slack_webhook: None,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .user_agent("honua-gitops")
                .build()
                .expect("the HTTP client builds"),
            decisions: Arc::new(tokio::sync::Notify::new()),
            desired_memo: Default::default(),
            events: Arc::new(tokio::sync::Notify::new()),
            git_url: git_url.trim_end_matches('/').to_string(),
            mirrors,
            public_url,
            jobs_queued: Arc::new(tokio::sync::Notify::new()),
            repo_locks: Mutex::new(HashMap::new()),
            publisher: std::sync::Mutex::new(None),
            job_lease: JOB_LEASE,
        }
    }

    /// Runs one worker until `shutdown` turns true; a job in progress is finished first.
    pub async fn run_worker(self: Arc<Self>, worker: String, mut shutdown: watch::Receiver<bool>) {
        self.clone().start_publisher(shutdown.clone());
        loop {
            if *shutdown.borrow() {
                return;
            }
            // Registered before looking at the queue, so a job queued in between is not missed.
            let woken = self.jobs_queued.notified();
            match self.store.claim_job(&worker, self.job_lease, now_ms()).await {
                Ok(Some(job)) => {
                    // Every line logged while the job runs (GitHub client and Git included) names it.
                    let span = tracing::info_span!("job", delivery = %job.delivery_id, repository = job.repository.as_deref().unwrap_or("-"));
                    self.run_job(&worker, job).instrument(span).await
                }
                Ok(None) => {
                    tokio::select! {
                        _ = woken => {}
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                        _ = shutdown.changed() => {}
                    }
                }
                Err(e) => {
                    tracing::error!(worker, error = %e, "could not claim a job; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    async fn run_job(&self, worker: &str, job: Job) {
        if job.quarantined() {
            return self.quarantine(worker, job).await;
        }
        let repository = job.repository.clone().unwrap_or_default();
        let started = std::time::Instant::now();
        // The lease is renewed while the job runs (GitHub's content limits can make a job outlast it), so
        // another replica takes a job over only when its worker is really gone.
        let renew = async {
            let every = self.job_lease / 3;
            loop {
                tokio::time::sleep(every).await;
                let until = now_ms() + self.job_lease.as_millis() as i64;
                match self.store.renew_job(job.id, worker, until).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(delivery = %job.delivery_id, "the job's lease was taken over"),
                    Err(e) => {
                        tracing::warn!(delivery = %job.delivery_id, error = %e, "could not renew the job's lease")
                    }
                }
            }
        };
        let outcome = tokio::select! {
            outcome = RETRY.scope(job.attempts > 1, self.handle(&job)) => outcome,
            _ = renew => unreachable!("the renewal loop never ends"),
        };
        let now = now_ms();
        let seconds = started.elapsed().as_secs_f64();
        let recorded = match &outcome {
            Ok(()) => {
                tracing::info!(delivery = %job.delivery_id, repository, event = %job.event, ms = started.elapsed().as_millis() as u64, "job done");
                record_job(&job.event, "done", seconds);
                self.store.complete_job(job.id, worker, now).await
            }
            Err(e) => {
                let retry_at = match e {
                    JobError::Permanent(_) => None,
                    _ => retry_delay(job.attempts).map(|d| now + d.as_millis() as i64),
                };
                tracing::warn!(delivery = %job.delivery_id, repository, event = %job.event, attempt = job.attempts, error = %e, retry = retry_at.is_some(), "job failed");
                record_job(&job.event, if retry_at.is_some() { "retry" } else { "failed" }, seconds);
                self.store.fail_job(job.id, worker, &e.to_string(), retry_at, now).await
            }
        };
        if let Err(e) = recorded {
            // The lease runs out and another worker takes the job again: at-least-once, never lost.
            tracing::error!(delivery = %job.delivery_id, error = %e, "could not record the job's outcome");
        }
    }

    /// A job whose worker vanished [`crate::store::QUARANTINE_AFTER`] times (it most likely crashes the
    /// process) is failed without running it again, so one bad delivery cannot crash-loop the service.
    /// A pull request's checks are completed as neutral with the reason; nothing else of the job runs
    /// (its payload was parsed at the edge before it was queued, so reading it again is safe).
    async fn quarantine(&self, worker: &str, job: Job) {
        let reason = format!("the job stopped its worker {} times; quarantined", job.takeovers);
        tracing::error!(delivery = %job.delivery_id, event = %job.event, takeovers = job.takeovers, "{reason}");
        record_job(&job.event, "quarantined", 0.0);
        let shown = match parse_job(&job.event, &job.payload) {
            Ok(Event::PullRequest { repo, number, head_sha, action, .. }) if action != PullRequestAction::Closed => {
                self.report_quarantine(&repo, number, &head_sha, &reason).await
            }
            _ => Ok(()),
        };
        if let Err(e) = &shown {
            tracing::warn!(delivery = %job.delivery_id, error = %e, "could not mark the quarantined PR's checks");
        }
        if let Err(e) = self.store.fail_job(job.id, worker, &reason, None, now_ms()).await {
            tracing::error!(delivery = %job.delivery_id, error = %e, "could not record the quarantine");
        }
    }

    async fn report_quarantine(
        &self,
        repo: &RepoRef,
        number: u64,
        head_sha: &str,
        reason: &str,
    ) -> Result<(), JobError> {
        let gh = self.github_repo(repo)?;
        let details = self.details_url(repo, number, head_sha);
        for name in [VALIDATE_CHECK, DIFF_CHECK] {
            // The runs the crashed attempts left in progress are completed, not doubled.
            let id = gh.create_check_run(name, head_sha, details.as_deref(), true).await?;
            gh.complete_check_run(id, &quarantined_check(name, reason)).await?;
        }
        Ok(())
    }

    async fn handle(&self, job: &Job) -> Result<(), JobError> {
        if job.event == GIT_POLL_EVENT {
            let polled: PolledHead =
                serde_json::from_slice(&job.payload).map_err(|e| JobError::Permanent(e.to_string()))?;
            let source = DeploySource { repository: polled.repository, url: polled.url, branch: polled.branch };
            self.deploy_commit(&source, &polled.sha, None, "poller", chrono::Utc::now()).await?;
            return Ok(());
        }
        let event = parse_job(&job.event, &job.payload).map_err(|e| JobError::Permanent(e.to_string()))?;
        match event {
            Event::PullRequest { repo, number, action, head_sha, base_ref, merged, merge_commit_sha, .. } => {
                match action {
                    PullRequestAction::Opened | PullRequestAction::Synchronize | PullRequestAction::Reopened => {
                        // Coalescing: of a burst of pushes only the newest head is planned. The older
                        // heads' checks would be outdated at once, and every one of them costs requests
                        // from GitHub's content-creation budget.
                        let latest = self.store.latest_pr_head(&repo.full_name(), number).await?;
                        if latest.as_deref().is_some_and(|latest| latest != head_sha) {
                            tracing::info!(repository = %repo.full_name(), number, head = %head_sha, "a newer push to the PR is queued; this head is skipped");
                            metrics::counter!("honua_pr_heads_coalesced_total").increment(1);
                            return Ok(());
                        }
                        self.check_pull_request(&repo, number, &head_sha, &base_ref).await
                    }
                    PullRequestAction::Closed => match (merged, merge_commit_sha) {
                        (true, Some(merge_sha)) => self.pull_request_merged(&repo, number, &merge_sha, &head_sha).await,
                        _ => Ok(()),
                    },
                }
            }
            Event::ChecksRequested { repo, head_sha, pull_requests } => {
                self.recheck(&repo, &head_sha, &pull_requests).await
            }
            Event::Push { repo, git_ref, after, pusher, deleted, .. } => {
                if deleted || git_ref != format!("refs/heads/{}", repo.default_branch) {
                    return Ok(());
                }
                let gh = self.github_repo(&repo)?;
                let source = DeploySource {
                    repository: repo.full_name(),
                    url: format!("{}/{}/{}.git", self.git_url, repo.owner, repo.name),
                    branch: repo.default_branch.clone(),
                };
                let actor = if pusher.is_empty() { "github" } else { pusher.as_str() };
                self.deploy_commit(&source, &after, gh.git_token().await.ok(), actor, chrono::Utc::now()).await?;
                Ok(())
            }
            Event::Comment { repo, number, on_pull_request, comment_id, body, author, author_is_bot, edited } => {
                let comment = comments::CommentEvent {
                    repo,
                    number,
                    on_pull_request,
                    comment_id,
                    body,
                    author,
                    author_is_bot,
                    edited,
                };
                self.handle_comment(comment).await
            }
            _ => Ok(()),
        }
    }

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
            self.jobs_queued.notify_waiters();
        }
        if self.github.is_some() {
            if let Err(e) = self.deliver_notifications().await {
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
        self.decided(&full_name).await;
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
        if let Some(head) = head.filter(|head| known.as_deref() != Some(head.as_str())) {
            let repo = RepoRef {
                owner: owner.to_string(),
                name: name.to_string(),
                default_branch: default_branch.to_string(),
                installation: Some(installation),
            };
            let push = Event::Push {
                repo,
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
            };
            if let crate::store::Recorded::New(_) = self.store.record_delivery(&delivery, now_ms()).await? {
                tracing::info!(repository = %full_name, head = %head, "polling: queued a default-branch head whose push was not processed");
                queued += 1;
            }
        }
        for pr in gh.open_pull_requests().await? {
            let repo = RepoRef {
                owner: owner.to_string(),
                name: name.to_string(),
                default_branch: default_branch.to_string(),
                installation: Some(installation),
            };
            let synchronize = Event::PullRequest {
                repo,
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
            };
            if let crate::store::Recorded::New(_) = self.store.record_delivery(&delivery, now_ms()).await? {
                tracing::info!(repository = %full_name, number = pr.number, head = %pr.head_sha, "polling: queued a PR whose webhook never arrived");
                queued += 1;
            }
        }
        Ok(queued)
    }

    /// Plain-Git mode: fetches one remote's branch and queues a job for a head not yet deployed from.
    /// The delivery id names the head, so replicas polling together queue it once.
    async fn poll_git_remote(&self, source: &DeploySource) -> Result<usize, JobError> {
        let (_, head) = self.fetch_branch(source, None).await?;
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
                if let Err(e) = self.deliver_notifications().await {
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
                        self.jobs_queued.notify_waiters();
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

    /// "Re-run" on a check run or suite: plan again every open PR whose head is that commit.
    async fn recheck(&self, repo: &RepoRef, head_sha: &str, pull_requests: &[u64]) -> Result<(), JobError> {
        let gh = self.github_repo(repo)?;
        for &number in pull_requests {
            let pr = gh.pull_request(number).await?;
            if pr.open && pr.head_sha == head_sha {
                self.check_pull_request(repo, number, head_sha, &pr.base_ref).await?;
            } else {
                tracing::info!(repository = %repo.full_name(), number, "re-run skipped: the PR moved on or is closed");
            }
        }
        Ok(())
    }

    fn github_repo(&self, repo: &RepoRef) -> Result<GithubRepo, JobError> {
        let github = self.github.as_ref().ok_or_else(|| {
            JobError::Permanent(format!("{}: a GitHub event, but no GitHub App is configured", repo.full_name()))
        })?;
        let installation = repo.installation.ok_or_else(|| {
            JobError::Permanent(format!("{}: the delivery names no App installation", repo.full_name()))
        })?;
        Ok(github.repo(installation, &repo.owner, &repo.name)?)
    }

    fn details_url(&self, repo: &RepoRef, number: u64, head_sha: &str) -> Option<String> {
        self.public_url.as_ref().map(|base| {
            format!("{}/plans/{}/{}/{number}/{head_sha}", base.trim_end_matches('/'), repo.owner, repo.name)
        })
    }

    /// The PR flow: both checks go `in_progress` at once, then complete with the validation of the
    /// head and the plan base → head; the plan comment is edited in place.
    pub async fn check_pull_request(
        &self,
        repo: &RepoRef,
        number: u64,
        head_sha: &str,
        base_ref: &str,
    ) -> Result<(), JobError> {
        let gh = self.github_repo(repo)?;
        let details = self.details_url(repo, number, head_sha);
        // A retried job (its worker died, maybe after completing the checks) reuses whatever runs of ours
        // the head has; a new request (a push, a re-run from the Checks tab) gets runs of its own.
        let retry = RETRY.try_with(|r| *r).unwrap_or(false);
        let validate_id = gh.create_check_run(VALIDATE_CHECK, head_sha, details.as_deref(), retry).await?;
        let diff_id = gh.create_check_run(DIFF_CHECK, head_sha, details.as_deref(), retry).await?;
        let planned = self.plan_pull_request(&gh, repo, number, head_sha, base_ref).await?;

        gh.complete_check_run(validate_id, &validate_check(&planned.diagnostics)).await?;
        gh.complete_check_run(diff_id, &diff_check(&planned.plans)).await?;
        let approvals = self.approval_lines(&repo.full_name(), number, head_sha, &planned).await?;
        gh.upsert_plan_comment(number, &plan_comment(&planned.plans, details.as_deref(), &approvals)).await?;
        self.invalidate_stale_approvals(&gh, repo, number, head_sha).await?;
        Ok(())
    }

    /// Fetches the PR's base branch and head into the mirror and plans head against base, with the
    /// base's policy.
    pub(crate) async fn plan_pull_request(
        &self,
        gh: &GithubRepo,
        repo: &RepoRef,
        number: u64,
        head_sha: &str,
        base_ref: &str,
    ) -> Result<PlannedPr, JobError> {
        let token = gh.git_token().await.ok();
        let lock = self.repo_lock(&repo.full_name()).await;
        let _held = lock.lock().await;
        let url = format!("{}/{}/{}.git", self.git_url, repo.owner, repo.name);
        let mirrors = self.mirrors.clone();
        let (head, base_ref, head_sha) =
            (format!("refs/pull/{number}/head"), format!("refs/heads/{base_ref}"), head_sha.to_string());
        tokio::task::spawn_blocking(move || -> Result<_, JobError> {
            let git = |e: crate::git::GitError| JobError::Git(e.to_string());
            let mirror = Mirror::open(&mirrors, &url).map_err(git)?;
            mirror.fetch(&[&base_ref, &head], token.as_deref()).map_err(git)?;
            let base_sha = mirror.resolve(&base_ref).map_err(git)?;
            // The policy comes from the base: `from` is the base branch as it is now.
            let from = ConfigRepo::load_git(mirror.path(), &base_sha).map_err(|e| JobError::Git(e.to_string()))?;
            let to = ConfigRepo::load_git(mirror.path(), &head_sha).map_err(|e| JobError::Git(e.to_string()))?;
            let set = crate::plan::build(&from, &to, None, chrono::Utc::now());
            Ok(PlannedPr { diagnostics: set.diagnostics, plans: set.plans, base: Arc::new(from) })
        })
        .await
        .map_err(|e| JobError::Git(format!("planning task: {e}")))?
    }

    /// The plans of a PR head already fetched into the mirror (the check runs' details page), against
    /// the default branch as the mirror has it now. Nothing is fetched: a page view costs no Git traffic.
    pub async fn plan_of_head(
        &self,
        owner: &str,
        name: &str,
        sha: &str,
    ) -> Result<Vec<serde_json::Value>, PlanOfHeadError> {
        let sha = sha.to_string();
        self.on_default_branch(owner, name, move |mirror, from| {
            let to = ConfigRepo::load_git(mirror.path(), &sha).map_err(|_| PlanOfHeadError::NotFetched)?;
            let set = crate::plan::build(&from, &to, None, chrono::Utc::now());
            Ok(set.plans.iter().map(|p| serde_json::to_value(p).expect("plans encode")).collect())
        })
        .await
    }

    /// Who may decide for each environment of `owner/name` by the default branch's policy, as the mirror
    /// has it: `(approvers, preventSelfApproval)` per environment. Nothing is fetched.
    pub async fn approvers(
        &self,
        owner: &str,
        name: &str,
    ) -> Result<std::collections::BTreeMap<String, (Vec<String>, bool)>, PlanOfHeadError> {
        self.on_default_branch(owner, name, |_, repo| {
            let policy = crate::policy::Policy::of(&repo);
            Ok(policy.environments.into_iter().map(|(env, p)| (env, (p.approvers, p.prevent_self_approval))).collect())
        })
        .await
    }

    /// Runs `read` on the repository's mirror and its default branch as the mirror has it (no fetch),
    /// holding the repository's lock, off the async threads.
    async fn on_default_branch<T: Send + 'static>(
        &self,
        owner: &str,
        name: &str,
        read: impl FnOnce(&Mirror, ConfigRepo) -> Result<T, PlanOfHeadError> + Send + 'static,
    ) -> Result<T, PlanOfHeadError> {
        let url = format!("{}/{owner}/{name}.git", self.git_url);
        let mirrors = self.mirrors.clone();
        let lock = self.repo_lock(&format!("{owner}/{name}")).await;
        let _held = lock.lock().await;
        tokio::task::spawn_blocking(move || {
            if !Mirror::exists(&mirrors, &url) {
                return Err(PlanOfHeadError::NoMirror);
            }
            let mirror = Mirror::open(&mirrors, &url).map_err(|e| PlanOfHeadError::Git(e.to_string()))?;
            // The remote's own HEAD, as the last fetch recorded it; a mirror from before that was
            // recorded is read at `main` or `master`.
            let base = mirror
                .default_branch()
                .into_iter()
                .chain(["refs/heads/main".to_string(), "refs/heads/master".to_string()])
                .find_map(|r| mirror.resolve(&r).ok())
                .ok_or(PlanOfHeadError::NoDefaultBranch)?;
            let repo = ConfigRepo::load_git(mirror.path(), &base).map_err(|e| PlanOfHeadError::Git(e.to_string()))?;
            read(&mirror, repo)
        })
        .await
        .map_err(|e| PlanOfHeadError::Git(format!("mirror task: {e}")))?
    }

    /// The plan comment's approvals table: for each environment that needs an approval, who approved its
    /// plan at `head_sha` on the pull request, and who may, by the base branch's policy.
    pub(crate) async fn approval_lines(
        &self,
        repository: &str,
        number: u64,
        head_sha: &str,
        planned: &PlannedPr,
    ) -> Result<Vec<crate::github::checks::ApprovalLine>, JobError> {
        let given = self.store.pr_approvals(repository, number).await?;
        let policy = crate::policy::Policy::of(&planned.base);
        Ok(planned
            .plans
            .iter()
            .filter(|p| p.has_changes() && p.decision != crate::policy::Decision::Auto)
            .map(|p| {
                let env = p.environment.as_str();
                let (env_policy, _) = policy.for_env(env);
                crate::github::checks::ApprovalLine {
                    environment: env.to_string(),
                    approved: given
                        .iter()
                        .filter(|a| a.environment == env && a.head_sha == head_sha)
                        .map(|a| (a.actor.clone(), a.plan_digest.clone(), a.breaking))
                        .collect(),
                    approvers: env_policy.approvers,
                    prevent_self_approval: env_policy.prevent_self_approval,
                }
            })
            .collect())
    }

    /// Git work on one repository is serialized: two jobs must not fetch into one mirror at once.
    async fn repo_lock(&self, repo: &str) -> Arc<Mutex<()>> {
        self.repo_locks.lock().await.entry(repo.to_string()).or_default().clone()
    }
}

/// Why the plan of a PR head cannot be shown.
#[derive(Debug, thiserror::Error)]
pub enum PlanOfHeadError {
    #[error("the repository has no mirror on this service yet")]
    NoMirror,
    #[error("the default branch was not fetched yet")]
    NoDefaultBranch,
    #[error("this commit was not fetched")]
    NotFetched,
    #[error("{0}")]
    Git(String),
}

/// A pull request planned against its base.
pub(crate) struct PlannedPr {
    pub diagnostics: Vec<crate::diagnostic::Diagnostic>,
    pub plans: Vec<crate::plan::Plan>,
    /// The base branch's config, whose policy judges the PR (and who may approve it).
    pub base: Arc<ConfigRepo>,
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
struct PolledHead {
    repository: String,
    url: String,
    branch: String,
    sha: String,
}
