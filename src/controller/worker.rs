//! The workers: each takes jobs from the durable queue, renews its lease while the job runs, runs the
//! handler of the job's event, and records the outcome (done, retry later, failed). A job whose worker
//! vanished twice is quarantined instead of run again.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tracing::Instrument;

use super::comments::CommentEvent;
use super::poller::{PolledHead, GIT_POLL_EVENT};
use super::{Controller, DeploySource, JobError};
use crate::github::commands;
use crate::github::webhook::{parse_job, Event, PullRequestAction};
use crate::store::{now_ms, retry_delay, Job, PrMerge};

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

/// Whether the job this task runs is a retry; false outside a job.
pub(super) fn retrying() -> bool {
    RETRY.try_with(|r| *r).unwrap_or(false)
}

/// How long an idle worker waits before looking at the queue again, unless woken: jobs queued by
/// other replicas, and retries coming due, are found this way.
const IDLE_POLL: Duration = Duration::from_millis(500);

/// Wakes idle workers when a job is queued: every worker for any job, the deployment worker
/// ([`Controller::run_deployment_worker`]) only for deployment work, so a busy queue of other jobs does
/// not keep it looking.
#[derive(Default)]
pub struct JobsQueued {
    any: Notify,
    deployments: Notify,
}

impl JobsQueued {
    /// A job was queued; `deploys`: of the deployment lane ([`crate::store::NewDelivery::deploys`]).
    pub fn queued(&self, deploys: bool) {
        self.any.notify_waiters();
        if deploys {
            self.deployments.notify_waiters();
        }
    }
}

impl Controller {
    /// Runs one worker, for any job, until `shutdown` turns true; a job in progress is finished first.
    pub async fn run_worker(self: Arc<Self>, worker: String, shutdown: watch::Receiver<bool>) {
        self.work(worker, false, shutdown).await
    }

    /// Runs one worker for deployment work only (a default-branch commit to plan, a merged pull
    /// request's approvals to carry), oldest first: pull-request checks waiting on GitHub (its
    /// content-creation limits, a slow answer) can hold every other worker, never a merge's deployments.
    /// `honua serve` keeps one when it runs two workers or more.
    pub async fn run_deployment_worker(self: Arc<Self>, worker: String, shutdown: watch::Receiver<bool>) {
        self.work(worker, true, shutdown).await
    }

    async fn work(self: Arc<Self>, worker: String, deploys_only: bool, mut shutdown: watch::Receiver<bool>) {
        self.clone().start_publisher(shutdown.clone());
        loop {
            if *shutdown.borrow() {
                return;
            }
            // Registered before looking at the queue, so a job queued in between is not missed.
            let woken =
                if deploys_only { self.jobs_queued.deployments.notified() } else { self.jobs_queued.any.notified() };
            match self.store.claim_job(&worker, self.job_lease, now_ms(), deploys_only).await {
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
            outcome = RETRY.scope(job.attempts > 1, self.handle(&job, job.attempts > 1)) => outcome,
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
                let report = async {
                    let gh = self.github_repo(&repo)?;
                    self.pull_requests(&gh).report_quarantine(&repo, number, &head_sha, &reason).await
                };
                report.await
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

    /// Runs the handler of the job's event. `retry`: an earlier attempt may have done part of its work.
    async fn handle(&self, job: &Job, retry: bool) -> Result<(), JobError> {
        if job.event == GIT_POLL_EVENT {
            let polled: PolledHead =
                serde_json::from_slice(&job.payload).map_err(|e| JobError::Permanent(e.to_string()))?;
            let source = DeploySource { repository: polled.repository, url: polled.url, branch: polled.branch };
            self.pushes()
                .deploy_commit(&source, &polled.sha, job.received_at, None, "poller", chrono::Utc::now())
                .await?;
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
                        let gh = self.github_repo(&repo)?;
                        self.pull_requests(&gh).check(&repo, number, &head_sha, &base_ref, retry).await
                    }
                    PullRequestAction::Closed => match (merged, merge_commit_sha) {
                        (true, Some(merge_sha)) => {
                            let merge = PrMerge { number, merge_sha: merge_sha.into(), head_sha: head_sha.into() };
                            self.decisions().pull_request_merged(&repo.full_name(), &merge).await?;
                            self.decided(&repo.full_name()).await;
                            Ok(())
                        }
                        _ => Ok(()),
                    },
                }
            }
            Event::ChecksRequested { repo, head_sha, pull_requests } => {
                let gh = self.github_repo(&repo)?;
                self.pull_requests(&gh).recheck(&repo, &head_sha, &pull_requests, retry).await
            }
            Event::Push { repo, git_ref, after, pusher, deleted, .. } => {
                if deleted || git_ref != format!("refs/heads/{}", repo.default_branch) {
                    return Ok(());
                }
                let gh = self.github_repo(&repo)?;
                let source = DeploySource {
                    repository: repo.full_name(),
                    url: self.mirrors.url_of(&repo.full_name()),
                    branch: repo.default_branch.clone(),
                };
                let actor = if pusher.is_empty() { "github" } else { pusher.as_str() };
                self.pushes()
                    .deploy_commit(
                        &source,
                        &after,
                        job.received_at,
                        gh.git_token().await.ok(),
                        actor,
                        chrono::Utc::now(),
                    )
                    .await?;
                Ok(())
            }
            Event::Comment { repo, number, on_pull_request, comment_id, body, author, author_is_bot, edited } => {
                // Most comments are conversation: only a command needs the repository's GitHub client.
                let Some(command) = commands::parse(&body) else { return Ok(()) };
                let gh = self.github_repo(&repo)?;
                let comment = CommentEvent { repo, number, on_pull_request, comment_id, author, author_is_bot, edited };
                self.comments(&gh).handle(comment, command).await
            }
            _ => Ok(()),
        }
    }
}
