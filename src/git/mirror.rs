//! One bare mirror per config repository, fetched incrementally: the service reads any commit of a PR
//! (base and head) from it without a work tree. Credentials (the App installation token) are given per
//! fetch as `x-access-token` and never stored in the mirror's config or logged.

use std::path::{Path, PathBuf};

use git2::{Cred, FetchOptions, RemoteCallbacks, Repository};
use sha2::{Digest, Sha256};

use super::GitError;

pub struct Mirror {
    path: PathBuf,
    url: String,
    repo: Repository,
}

/// What one fetch transferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchStats {
    pub received_objects: usize,
    pub received_bytes: usize,
}

impl Mirror {
    /// Whether `url` has a mirror in `cache_dir` already (nothing is created).
    pub fn exists(cache_dir: &Path, url: &str) -> bool {
        cache_dir.join(mirror_dir_name(url)).join("HEAD").exists()
    }

    /// Opens the mirror of `url` under `cache_dir`, creating a bare repository on first use. The
    /// directory name is derived from the URL (readable tail + hash), so no URL can steer it elsewhere.
    pub fn open(cache_dir: &Path, url: &str) -> Result<Mirror, GitError> {
        let path = cache_dir.join(mirror_dir_name(url));
        let err = |e: git2::Error| GitError::Open { path: path.clone(), message: e.message().to_string() };
        let repo = if path.join("HEAD").exists() {
            Repository::open_bare(&path).map_err(err)?
        } else {
            Repository::init_bare(&path).map_err(err)?
        };
        Ok(Mirror { path, url: url.to_string(), repo })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Fetches `refs` (e.g. `refs/heads/main`, `refs/pull/42/head`) into the same names locally, forced,
    /// so rewritten PR branches follow. Only missing objects are transferred.
    pub fn fetch(&self, refs: &[&str], token: Option<&str>) -> Result<FetchStats, GitError> {
        bound_network_time();
        let refspecs: Vec<String> = refs.iter().map(|r| format!("+{r}:{r}")).collect();
        let mut options = FetchOptions::new();
        options.remote_callbacks(credentials(token));
        // An anonymous remote: the URL (which may carry nothing secret, but could) is not written to config.
        let mut remote = self.repo.remote_anonymous(&self.url).map_err(|e| self.fetch_error(refs, e))?;
        remote.fetch(&refspecs, Some(&mut options), None).map_err(|e| self.fetch_error(refs, e))?;
        // The remote's HEAD, as it advertised it: what its default branch is, remembered for readers
        // that need "what should run" without asking GitHub. A remote that does not say keeps the last.
        if let Some(head) = remote.default_branch().ok().and_then(|b| b.as_str().map(str::to_string)) {
            if head.starts_with("refs/heads/") {
                let _ = self.repo.reference_symbolic(DEFAULT_BRANCH_REF, &head, true, "the remote's HEAD");
            }
        }
        let stats = remote.stats();
        Ok(FetchStats { received_objects: stats.received_objects(), received_bytes: stats.received_bytes() })
    }

    pub(crate) fn repo(&self) -> &Repository {
        &self.repo
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Pushes `refspec` (`src:dst`, not forced) to the remote. `Ok(false)` when the remote refused the
    /// update (it moved on: someone else pushed first).
    pub(crate) fn push(&self, refspec: &str, token: Option<&str>) -> Result<bool, GitError> {
        bound_network_time();
        let rejected = std::cell::Cell::new(false);
        let mut callbacks = credentials(token);
        callbacks.push_update_reference(|_name, status| {
            if status.is_some() {
                rejected.set(true);
            }
            Ok(())
        });
        let mut options = git2::PushOptions::new();
        options.remote_callbacks(callbacks);
        let mut remote = self.repo.remote_anonymous(&self.url).map_err(|e| self.fetch_error(&[refspec], e))?;
        match remote.push(&[refspec], Some(&mut options)) {
            Ok(()) => Ok(!rejected.get()),
            // Local transports report a non-fast-forward as an error rather than a refused update.
            Err(e) if e.code() == git2::ErrorCode::NotFastForward => Ok(false),
            Err(e) => Err(GitError::Read {
                path: self.path.clone(),
                rev: refspec.to_string(),
                what: format!("push to {}", redact(&self.url)),
                message: e.message().to_string(),
            }),
        }
    }
}

/// Credentials for a fetch or push: the token (or password) offered once, as the URL's user when it
/// names one (`https://deploy@host/…`), else as `x-access-token` (a GitHub installation token).
pub(crate) fn credentials(token: Option<&str>) -> RemoteCallbacks<'static> {
    let mut callbacks = RemoteCallbacks::new();
    if let Some(token) = token {
        let token = token.to_string();
        let mut offered = false;
        // libgit2 asks again after every refusal: offer the token once, or a revoked token loops forever.
        callbacks.credentials(move |_url, user, _allowed| {
            let user = user.filter(|u| !u.is_empty()).unwrap_or("x-access-token");
            if std::mem::replace(&mut offered, true) {
                return Err(git2::Error::from_str(&format!(
                    "the Git server refused the credentials of `{user}`; check the token's (or password's) access to this repository"
                )));
            }
            Cred::userpass_plaintext(user, &token)
        });
    }
    callbacks
}

impl Mirror {
    fn fetch_error(&self, refs: &[&str], e: git2::Error) -> GitError {
        GitError::Read {
            path: self.path.clone(),
            rev: refs.join(", "),
            what: format!("fetch from {}", redact(&self.url)),
            message: e.message().to_string(),
        }
    }

    /// The remote's default branch (`refs/heads/main`) as its last fetch advertised it; `None` before a
    /// fetch recorded it.
    pub fn default_branch(&self) -> Option<String> {
        self.repo.find_reference(DEFAULT_BRANCH_REF).ok()?.symbolic_target().map(str::to_string)
    }

    /// The commit a local ref or revision names.
    pub fn resolve(&self, rev: &str) -> Result<String, GitError> {
        self.repo.revparse_single(rev).and_then(|o| o.peel_to_commit()).map(|c| c.id().to_string()).map_err(|e| {
            GitError::Revision { path: self.path.clone(), rev: rev.to_string(), message: e.message().to_string() }
        })
    }
}

/// Where a mirror remembers its remote's HEAD: a symbolic ref of its own, outside what is fetched.
const DEFAULT_BRANCH_REF: &str = "refs/mirror/default-branch";

/// `<tail>-<hash>.git`: the tail (`gis-config`) keeps the cache readable, the hash keeps names unique.
fn mirror_dir_name(url: &str) -> String {
    let tail: String = url
        .trim_end_matches('/')
        .trim_end_matches(".git")
        .rsplit(['/', ':'])
        .next()
        .unwrap_or("repo")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .take(40)
        .collect();
    let hash = hex::encode(&Sha256::digest(url.as_bytes())[..6]);
    format!("{}-{hash}.git", if tail.is_empty() { "repo" } else { &tail })
}

/// A URL without userinfo, for messages.
pub(crate) fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((_, host))
                if !rest.split('/').next().unwrap_or_default().is_empty() && rest.find('@') < rest.find('/') =>
            {
                format!("{scheme}://***@{host}")
            }
            _ => url.to_string(),
        },
        None => url.to_string(),
    }
}

static NETWORK_TIMEOUT_MS: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);
static NETWORK_TIMEOUT_SET: std::sync::Once = std::sync::Once::new();

/// Bounds every Git network operation of this process: connecting, and each read and write, fail after
/// `timeout`, so a remote that goes silent mid-fetch fails the fetch (which is retried) instead of holding
/// a worker or the agent forever. libgit2's setting is process-wide.
pub fn set_network_timeout(timeout: std::time::Duration) {
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX).max(1);
    NETWORK_TIMEOUT_MS.store(ms, std::sync::atomic::Ordering::SeqCst);
    apply_network_timeout();
}

fn apply_network_timeout() {
    let ms = NETWORK_TIMEOUT_MS.load(std::sync::atomic::Ordering::SeqCst);
    // SAFETY: libgit2 reads these options when it opens a connection; writing an int while another
    // thread connects at worst gives that connection the old timeout.
    unsafe {
        let _ = git2::opts::set_server_connect_timeout_in_milliseconds(ms);
        let _ = git2::opts::set_server_timeout_in_milliseconds(ms);
    }
}

/// The first network operation applies `HONUA_GIT_TIMEOUT` (seconds, default 60) unless a timeout was
/// set already.
pub(crate) fn bound_network_time() {
    NETWORK_TIMEOUT_SET.call_once(|| {
        if NETWORK_TIMEOUT_MS.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            let seconds = std::env::var("HONUA_GIT_TIMEOUT").ok().and_then(|v| v.parse::<u64>().ok()).unwrap_or(60);
            set_network_timeout(std::time::Duration::from_secs(seconds.max(1)));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_names_cannot_escape_the_cache() {
        for url in
            ["https://github.com/city/gis-config.git", "file:///tmp/../../etc", "../../x", "git@github.com:o/r.git"]
        {
            let name = mirror_dir_name(url);
            assert!(!name.contains('/') && !name.contains(".."), "{url} -> {name}");
            assert!(name.ends_with(".git"));
        }
        assert!(mirror_dir_name("https://github.com/city/gis-config.git").starts_with("gis-config-"));
    }

    #[test]
    fn a_fetch_remembers_the_remotes_default_branch() {
        let dir = tempfile::tempdir().unwrap();
        let origin = Repository::init_bare(dir.path().join("origin.git")).unwrap();
        let sig = git2::Signature::now("t", "t@example.org").unwrap();
        let tree = origin.find_tree(origin.treebuilder(None).unwrap().write().unwrap()).unwrap();
        origin.commit(Some("refs/heads/trunk"), &sig, &sig, "first", &tree, &[]).unwrap();
        origin.commit(Some("refs/heads/main"), &sig, &sig, "not the default", &tree, &[]).unwrap();
        origin.set_head("refs/heads/trunk").unwrap();
        let url = format!("file://{}", dir.path().join("origin.git").display());
        let mirror = Mirror::open(&dir.path().join("mirrors"), &url).unwrap();
        assert_eq!(mirror.default_branch(), None, "nothing known before a fetch");
        mirror.fetch(&["refs/heads/*"], None).unwrap();
        assert_eq!(mirror.default_branch().as_deref(), Some("refs/heads/trunk"));
    }

    #[test]
    fn urls_are_redacted_in_messages() {
        assert_eq!(redact("https://x-access-token:ghs_abc@github.com/o/r.git"), "https://***@github.com/o/r.git");
        assert_eq!(redact("file:///tmp/r"), "file:///tmp/r");
    }
}
