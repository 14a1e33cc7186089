//! The service's Git mirrors, as one dependency: where they live, where GitHub repositories are cloned
//! from, and the lock that serialises Git work on each repository (two jobs must not fetch into one
//! mirror at once). Git is blocking, so every piece of work on a mirror runs off the async threads
//! through [`Mirrors::run`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio::task::JoinError;

use super::DeploySource;
use crate::git::mirror::Mirror;
use crate::git::GitError;

pub struct Mirrors {
    root: PathBuf,
    /// Base of clone URLs: `owner/name` is fetched from `{git_url}/owner/name.git`.
    git_url: String,
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl Mirrors {
    pub fn new(root: PathBuf, git_url: &str) -> Self {
        Mirrors { root, git_url: git_url.trim_end_matches('/').to_string(), locks: Mutex::default() }
    }

    /// The clone URL of `repository` (`owner/name`) on the Git host the service was configured with.
    pub fn url_of(&self, repository: &str) -> String {
        format!("{}/{repository}.git", self.git_url)
    }

    /// Holds `repository`'s lock until the guard is dropped.
    pub async fn lock(&self, repository: &str) -> OwnedMutexGuard<()> {
        let lock = self.locks.lock().await.entry(repository.to_string()).or_default().clone();
        lock.lock_owned().await
    }

    /// Whether `url` has a mirror already (nothing is created).
    pub fn exists(&self, url: &str) -> bool {
        Mirror::exists(&self.root, url)
    }

    /// Opens (or creates) the mirror of `url` and runs `work` on it on a blocking thread. The caller
    /// holds the repository's [`lock`](Self::lock) when the work writes, or reads what a fetch may move.
    pub async fn run<T, E>(&self, url: &str, work: impl FnOnce(Mirror) -> Result<T, E> + Send + 'static) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<GitError> + Send + 'static,
    {
        let (root, url) = (self.root.clone(), url.to_string());
        tokio::task::spawn_blocking(move || work(Mirror::open(&root, &url)?))
            .await
            .map_err(|e: JoinError| GitError::Interrupted(e.to_string()))?
    }

    /// Fetches `source`'s branch into its mirror, holding the repository's lock; returns the branch's
    /// head.
    pub async fn fetch_branch(&self, source: &DeploySource, token: Option<String>) -> Result<String, GitError> {
        let branch = format!("refs/heads/{}", source.branch);
        let _held = self.lock(&source.repository).await;
        self.run(&source.url, move |mirror| {
            mirror.fetch(&[&branch], token.as_deref())?;
            mirror.resolve(&branch)
        })
        .await
    }
}
