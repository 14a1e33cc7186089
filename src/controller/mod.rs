//! The domain side of the service. Workers take jobs from the durable queue and run the handler of their
//! event (`worker`); the poller queues what webhooks missed (`poller`). Pull requests are checked and
//! planned against their base with the base branch's policy (`pulls`); pushes to a deployment branch
//! become deployments (`deployments`), decided by the policy or by people (`decisions`); comment
//! commands plan, approve, reject and promote (`comments`, `promote`); the API rolls back and resumes
//! (`rollback`); agents' polls and reports move deployments (`agents`);
//! notifications leave through an outbox (`notify`). Git work goes through the mirrors (`mirrors`).

pub mod agents;
mod comments;
pub mod decisions;
pub mod deployments;
mod mirrors;
pub mod notify;
pub mod poller;
mod promote;
mod pulls;
pub mod pushes;
pub mod retention;
pub mod rollback;
mod sources;
pub mod tokens;
pub mod views;
mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use crate::config::ConfigRepo;
use crate::deployment::wire::PlanView;
use crate::git::mirror::Mirror;
use crate::github::client::{GithubApp, GithubError, GithubRepo};
use crate::github::webhook::RepoRef;
use crate::policy::EnvironmentPolicy;
use crate::store::Store;
pub use mirrors::Mirrors;
pub use poller::{poll_backoff, PollTarget, GIT_POLL_EVENT};
pub(crate) use pulls::PullRequests;
pub use pushes::PLANNING_HOLD_SECONDS;
pub use worker::{JobsQueued, JOBS, JOB_LEASE, JOB_SECONDS};

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

impl From<crate::config::source::SourceError> for JobError {
    fn from(e: crate::config::source::SourceError) -> Self {
        JobError::Git(e.to_string())
    }
}

impl From<git2::Error> for JobError {
    fn from(e: git2::Error) -> Self {
        JobError::Git(e.message().to_string())
    }
}

impl From<crate::git::GitError> for JobError {
    fn from(e: crate::git::GitError) -> Self {
        JobError::Git(e.to_string())
    }
}

pub use deployments::DecisionError;
pub use sources::DeploySource;

/// The service's domain side as one value the workers, the poller and the API share. Its parts are
/// what the handlers take: the store, the mirrors (`Mirrors`), the notifier (`Notifier`), the agents'
/// feed (`DesiredFeed`), the GitHub App; the pull-request handlers, the comment commands, the
/// decisions, the planning of a deployment branch's commits, rollback and resume get theirs explicitly
/// (`PullRequests`, `Comments`, `Decisions`, `Pushes`, `Rollbacks`, over `Sources`).
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
    /// Queues and delivers the policy's notifications.
    pub notifier: notify::Notifier,
    /// Wakes the long-polling agents after decisions and reports, and shares what each environment
    /// should run among the agents that ask within a second.
    pub feed: agents::DesiredFeed,
    /// Signalled on every change a dashboard shows: decisions, agent reports and heartbeats.
    pub events: Arc<tokio::sync::Notify>,
    /// The Git mirrors of the repositories, and the lock that serialises Git work on each.
    pub mirrors: Arc<Mirrors>,
    /// Base of the service's public URL, for the check runs' `details_url`.
    pub public_url: Option<String>,
    /// Signalled by the webhook route and the poller when they queue a job, so an idle worker starts at
    /// once.
    pub jobs_queued: Arc<worker::JobsQueued>,
    /// How long a claimed job is a worker's before another replica may take it over (default
    /// [`JOB_LEASE`]; a job longer than this must fit in it).
    pub job_lease: Duration,
    /// Repositories whose decisions the background publisher (started with the first worker) is to
    /// publish; `None` before it runs, and then publishing happens inline.
    publisher: std::sync::Mutex<Option<deployments::Publisher>>,
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
        let notifier = notify::Notifier::new(None, github.is_some());
        Controller {
            store,
            github,
            repositories: Vec::new(),
            signer,
            revert_pull_requests: true,
            github_sync: Mutex::new(()),
            notifier,
            feed: agents::DesiredFeed::default(),
            events: Arc::new(tokio::sync::Notify::new()),
            mirrors: Arc::new(Mirrors::new(mirrors, &git_url)),
            public_url,
            jobs_queued: Default::default(),
            publisher: std::sync::Mutex::new(None),
            job_lease: JOB_LEASE,
        }
    }

    /// The pull-request handlers' dependencies, for the repository `gh` speaks to.
    pub(crate) fn pull_requests<'a>(&'a self, gh: &'a GithubRepo) -> PullRequests<'a> {
        PullRequests { store: &*self.store, mirrors: &self.mirrors, gh, public_url: self.public_url.as_deref() }
    }

    /// The comment commands' dependencies, for the repository `gh` speaks to.
    fn comments<'a>(&'a self, gh: &'a GithubRepo) -> comments::Comments<'a> {
        comments::Comments {
            store: &*self.store,
            mirrors: &self.mirrors,
            gh,
            public_url: self.public_url.as_deref(),
            decisions: self.decisions(),
            after: self,
        }
    }

    /// Rollback and resume, over what they use.
    pub fn rollbacks(&self) -> rollback::Rollbacks<'_> {
        rollback::Rollbacks {
            store: &*self.store,
            mirrors: &self.mirrors,
            sources: self.sources(),
            decisions: self.decisions(),
            pushes: self.pushes(),
            revert_pull_requests: self.revert_pull_requests && self.github.is_some(),
        }
    }

    /// Where each repository lives and how to reach it.
    pub(crate) fn sources(&self) -> sources::Sources<'_> {
        sources::Sources { github: self.github.as_deref(), repositories: &self.repositories, mirrors: &self.mirrors }
    }

    /// The handler of a deployment branch's commits and its dependencies.
    pub fn pushes(&self) -> pushes::Pushes<'_> {
        pushes::Pushes { store: &*self.store, mirrors: &self.mirrors, decisions: self.decisions(), after: self }
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

    /// The plans of a PR head already fetched into the mirror (the check runs' details page), against
    /// the default branch as the mirror has it now, as a stored plan reads. Nothing is fetched: a page
    /// view costs no Git traffic.
    pub async fn plan_of_head(&self, owner: &str, name: &str, sha: &str) -> Result<Vec<PlanView>, PlanOfHeadError> {
        let sha = sha.to_string();
        self.on_default_branch(owner, name, move |mirror, from| {
            let to = ConfigRepo::load_git(mirror.path(), &sha).map_err(|_| PlanOfHeadError::NotFetched)?;
            let set = crate::plan::build(&from, &to, None, chrono::Utc::now());
            Ok(set.plans.iter().map(|p| PlanView::of(&serde_json::to_value(p).expect("plans encode"))).collect())
        })
        .await
    }

    /// The policy of each environment of `owner/name` by the default branch, as the mirror has it (who
    /// may decide, and whether a PR's author may). Nothing is fetched.
    pub async fn environment_policies(
        &self,
        owner: &str,
        name: &str,
    ) -> Result<std::collections::BTreeMap<String, EnvironmentPolicy>, PlanOfHeadError> {
        self.on_default_branch(owner, name, |_, repo| Ok(crate::policy::Policy::of(&repo).environments)).await
    }

    /// Runs `read` on the repository's mirror and its default branch as the mirror has it (no fetch),
    /// holding the repository's lock, off the async threads.
    async fn on_default_branch<T: Send + 'static>(
        &self,
        owner: &str,
        name: &str,
        read: impl FnOnce(&Mirror, ConfigRepo) -> Result<T, PlanOfHeadError> + Send + 'static,
    ) -> Result<T, PlanOfHeadError> {
        let url = self.mirrors.url_of(&format!("{owner}/{name}"));
        let _held = self.mirrors.lock(&format!("{owner}/{name}")).await;
        if !self.mirrors.exists(&url) {
            return Err(PlanOfHeadError::NoMirror);
        }
        self.mirrors
            .run(&url, move |mirror| {
                // The remote's own HEAD, as the last fetch recorded it; a mirror from before that was
                // recorded is read at `main` or `master`.
                let base = mirror
                    .default_branch()
                    .into_iter()
                    .chain(["refs/heads/main".to_string(), "refs/heads/master".to_string()])
                    .find_map(|r| mirror.resolve(&r).ok())
                    .ok_or(PlanOfHeadError::NoDefaultBranch)?;
                let repo =
                    ConfigRepo::load_git(mirror.path(), &base).map_err(|e| PlanOfHeadError::Git(e.to_string()))?;
                read(&mirror, repo)
            })
            .await
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

impl From<crate::git::GitError> for PlanOfHeadError {
    fn from(e: crate::git::GitError) -> Self {
        PlanOfHeadError::Git(e.to_string())
    }
}
