//! Where each repository the service deploys lives and how to reach it: a plain-Git remote configured
//! with its branch, or a GitHub repository of the App's installations, cloned from the configured Git
//! host and deployed from its default branch.

use super::{JobError, Mirrors};
use crate::github::client::{GithubApp, GithubRepo};

/// Where a deployment branch lives: the repository's name in the service (`owner/name` on GitHub, the
/// remote URL in plain-Git mode), its clone URL, and the branch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeploySource {
    pub repository: String,
    pub url: String,
    pub branch: String,
}

/// The configured remotes, the App and the mirrors, as one dependency of the handlers that need to
/// reach a repository (publishing the ledger, mirroring to GitHub, rollback and resume).
#[derive(Clone, Copy)]
pub struct Sources<'a> {
    /// `None` in plain-Git mode.
    pub github: Option<&'a GithubApp>,
    /// Plain-Git mode: the remotes polled for their deployment branch.
    pub repositories: &'a [DeploySource],
    pub mirrors: &'a Mirrors,
}

impl<'a> Sources<'a> {
    /// The token Git needs to fetch or push `repository`: the App's installation token for a GitHub
    /// repository, none for a plain-Git remote (its URL carries what it needs).
    pub async fn git_token_for(&self, repository: &str) -> Result<Option<String>, JobError> {
        match (self.github, crate::deployment::RepoId::parse(repository).github()) {
            (Some(_), Some(_)) => Ok(Some(self.github_repo_of(repository).await?.git_token().await?)),
            _ => Ok(None),
        }
    }

    /// The clone URL of `repository`: the plain-Git remote it was configured with, or its GitHub URL.
    pub fn url_for(&self, repository: &str) -> String {
        match self.configured(repository) {
            Some(source) => source.url.clone(),
            None => self.mirrors.url_of(repository),
        }
    }

    /// The plain-Git remote `repository` names, if it is one the service polls.
    fn configured(&self, repository: &str) -> Option<&'a DeploySource> {
        self.repositories.iter().find(|r| r.repository == repository)
    }

    /// Where `repository` deploys from: a plain-Git remote's configured branch, or a GitHub repository's
    /// default branch (a rollback's revert pull request targets it, `resume` plans its head). That is
    /// the branch the mirror's last fetch recorded as the remote's HEAD; a mirror that has not recorded
    /// it yet (made by an earlier version) asks GitHub.
    pub async fn source_for(&self, repository: &str) -> Result<DeploySource, JobError> {
        if let Some(source) = self.configured(repository) {
            return Ok(source.clone());
        }
        let url = self.mirrors.url_of(repository);
        let recorded = match self.mirrors.exists(&url) {
            true => self.mirrors.run(&url, |mirror| Ok::<_, JobError>(mirror.default_branch())).await?,
            false => None,
        };
        let branch = match recorded.as_deref().and_then(|r| r.strip_prefix("refs/heads/")) {
            Some(branch) => branch.to_string(),
            None => self.github_repo_of(repository).await?.default_branch().await?,
        };
        Ok(DeploySource { repository: repository.to_string(), url, branch })
    }

    /// The GitHub client of `repository` (`owner/name`), through the App's installation on it.
    pub async fn github_repo_of(&self, repository: &str) -> Result<GithubRepo, JobError> {
        let not_github = || {
            JobError::Permanent(format!(
                "{repository} is neither a configured plain-Git repository nor a GitHub repository of the App; add it to `repositories` or install the App on it"
            ))
        };
        let github = self.github.ok_or_else(not_github)?;
        let (owner, name) = crate::deployment::RepoId::parse(repository).github().ok_or_else(not_github)?;
        let installation = github.repo_installation(owner, name).await?;
        Ok(github.repo(installation, owner, name)?)
    }
}
