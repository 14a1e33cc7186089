//! A change becomes a review: one commit on a new branch `honua/<kind>-<slug>` on top of the base, pushed
//! to the repository's remote, and a pull request opened through the GitHub App's installation token
//! (`HONUA_GITHUB_APP_ID` + `HONUA_GITHUB_PRIVATE_KEY_PATH`) or a user token (`GITHUB_TOKEN`). Without
//! either, the branch is pushed and the way to open the review is printed. The work tree is never
//! touched: the commit is built from the base commit's tree.

use std::path::Path;
use std::time::Duration;

use git2::{Repository, Signature};

use super::change::FileChange;

/// GitHub caps a pull request body at 65,536 characters.
pub const MAX_BODY: usize = 60_000;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{path}: {message}")]
    Git { path: String, message: String },
    #[error("pushing `{branch}` to `{remote}` failed: {message}")]
    Push { branch: String, remote: String, message: String },
    #[error("opening the pull request failed: {0}")]
    Github(String),
}

/// Where the review lives.
#[derive(Debug, Clone)]
pub struct Published {
    pub branch: String,
    pub commit: String,
    /// The remote's URL, without credentials.
    pub remote_url: Option<String>,
    pub pull_request: Option<PullRequest>,
}

#[derive(Debug, Clone)]
pub struct PullRequest {
    pub number: u64,
    pub url: String,
}

/// `add layer bike_lanes` → `add-layer-bike-lanes`, at most 48 characters.
pub fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
        if out.len() >= 48 {
            break;
        }
    }
    out.trim_end_matches('-').to_string()
}

fn git_err(path: &Path) -> impl Fn(git2::Error) -> PublishError + '_ {
    move |e| PublishError::Git { path: path.display().to_string(), message: e.message().to_string() }
}

/// Commits `changes` on top of `base` (a commit SHA) in a new branch named `branch` (or `branch-2`, …
/// when taken, locally or on the remote as last fetched). Returns the branch and the commit.
pub fn commit(
    repo_dir: &Path,
    base: &str,
    branch: &str,
    message: &str,
    changes: &[FileChange],
) -> Result<(String, String), PublishError> {
    let err = git_err(repo_dir);
    let repo = Repository::open(repo_dir).map_err(&err)?;
    let oid = build_commit(&repo, base, message, changes).map_err(&err)?;
    let taken = |name: &str| {
        repo.find_branch(name, git2::BranchType::Local).is_ok()
            || repo.find_reference(&format!("refs/remotes/origin/{name}")).is_ok()
    };
    let mut name = branch.to_string();
    let mut n = 2;
    while taken(&name) {
        name = format!("{branch}-{n}");
        n += 1;
    }
    repo.branch(&name, &repo.find_commit(oid).map_err(&err)?, false).map_err(&err)?;
    Ok((name, oid.to_string()))
}

/// A commit of `changes` on top of `base` (a commit SHA), on no branch: the base's tree with each
/// changed file's blob put in. Works in a bare repository (the service's mirror) as in a clone.
pub fn build_commit(
    repo: &Repository,
    base: &str,
    message: &str,
    changes: &[FileChange],
) -> Result<git2::Oid, git2::Error> {
    let base = repo.find_commit(git2::Oid::from_str(base)?)?;
    let mut tree = base.tree()?;
    for change in changes {
        let blob = repo.blob(change.after.as_bytes())?;
        tree = put(repo, &tree, &change.path, blob)?;
    }
    let signature =
        repo.signature().or_else(|_| Signature::now("Honua GitOps", "honua-gitops@users.noreply.github.com"))?;
    repo.commit(None, &signature, &signature, message, &tree, &[&base])
}

/// `tree` with the file at `path` (`a/b/c.yaml`) set to `blob`, directories made as needed.
fn put<'r>(
    repo: &'r Repository,
    tree: &git2::Tree<'r>,
    path: &str,
    blob: git2::Oid,
) -> Result<git2::Tree<'r>, git2::Error> {
    let (head, rest) = match path.split_once('/') {
        Some((dir, rest)) => (dir, Some(rest)),
        None => (path, None),
    };
    let mut builder = repo.treebuilder(Some(tree))?;
    match rest {
        None => {
            builder.insert(head, blob, 0o100644)?;
        }
        Some(rest) => {
            let sub = match tree.get_name(head) {
                Some(entry) if entry.kind() == Some(git2::ObjectType::Tree) => repo.find_tree(entry.id())?,
                Some(_) => return Err(git2::Error::from_str(&format!("`{head}` is not a directory"))),
                None => repo.find_tree(repo.treebuilder(None)?.write()?)?,
            };
            let sub = put(repo, &sub, rest, blob)?;
            builder.insert(head, sub.id(), 0o040000)?;
        }
    }
    repo.find_tree(builder.write()?)
}

/// Pushes `branch` to `remote` (a remote's name), with `token` as the HTTPS password when given.
pub fn push(repo_dir: &Path, remote: &str, branch: &str, token: Option<&str>) -> Result<String, PublishError> {
    let fail = |message: String| PublishError::Push { branch: branch.into(), remote: remote.into(), message };
    let repo = Repository::open(repo_dir).map_err(|e| fail(e.message().to_string()))?;
    let mut handle = repo
        .find_remote(remote)
        .map_err(|e| fail(format!("{} (add it with `git remote add {remote} URL`, or give --remote)", e.message())))?;
    let url = crate::git::mirror::redact(handle.url().unwrap_or_default());
    crate::git::mirror::set_network_timeout(Duration::from_secs(60));
    let refused = std::cell::RefCell::new(None);
    let mut options = git2::PushOptions::new();
    let mut callbacks = crate::git::mirror::credentials(token);
    callbacks.push_update_reference(|_name, status| {
        if let Some(s) = status {
            *refused.borrow_mut() = Some(s.to_string());
        }
        Ok(())
    });
    options.remote_callbacks(callbacks);
    let refspec = format!("refs/heads/{branch}:refs/heads/{branch}");
    handle.push(&[refspec.as_str()], Some(&mut options)).map_err(|e| fail(e.message().to_string()))?;
    drop(options);
    if let Some(why) = refused.take() {
        return Err(fail(format!("the remote refused it: {why}")));
    }
    Ok(url)
}

/// `owner/name` of a GitHub remote URL (`https://github.com/o/n.git`, `git@github.com:o/n.git`).
pub fn github_repo_of(url: &str) -> Option<(String, String)> {
    let rest = url
        .strip_prefix("https://github.com/")
        .or_else(|| url.strip_prefix("git@github.com:"))
        .or_else(|| url.strip_prefix("ssh://git@github.com/"))
        .or_else(|| url.split_once("@github.com/").map(|(_, r)| r))?;
    let rest = rest.trim_end_matches('/').trim_end_matches(".git");
    let (owner, name) = rest.split_once('/')?;
    (!owner.is_empty() && !name.is_empty() && !name.contains('/')).then(|| (owner.to_string(), name.to_string()))
}

/// How to reach GitHub for the pull request.
pub enum GithubAccess {
    App { app_id: u64, key_pem: Vec<u8>, api_url: String },
    Token { token: String, api_url: String },
}

impl GithubAccess {
    /// From the environment: the App (`HONUA_GITHUB_APP_ID` + `HONUA_GITHUB_PRIVATE_KEY_PATH`) first,
    /// else `GITHUB_TOKEN`; the API at `HONUA_GITHUB_API_URL` (default `https://api.github.com`).
    pub fn from_env() -> Result<Option<GithubAccess>, PublishError> {
        let var = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
        let api_url = var("HONUA_GITHUB_API_URL").unwrap_or_else(|| "https://api.github.com".into());
        if let Some(id) = var("HONUA_GITHUB_APP_ID") {
            let app_id = id
                .trim()
                .parse()
                .map_err(|_| PublishError::Github(format!("HONUA_GITHUB_APP_ID `{id}` is not a number")))?;
            let path = var("HONUA_GITHUB_PRIVATE_KEY_PATH").ok_or_else(|| {
                PublishError::Github("HONUA_GITHUB_APP_ID is set but HONUA_GITHUB_PRIVATE_KEY_PATH is not: give the App's private key (PEM)".into())
            })?;
            let key_pem = std::fs::read(&path).map_err(|e| PublishError::Github(format!("cannot read {path}: {e}")))?;
            return Ok(Some(GithubAccess::App { app_id, key_pem, api_url }));
        }
        Ok(var("GITHUB_TOKEN").map(|token| GithubAccess::Token { token, api_url }))
    }

    /// A client for `owner/name`, and the token to push over HTTPS with.
    pub async fn repo(
        &self,
        owner: &str,
        name: &str,
    ) -> Result<(crate::github::client::GithubRepo, String), PublishError> {
        let gh = |e: crate::github::client::GithubError| PublishError::Github(e.to_string());
        match self {
            GithubAccess::App { app_id, key_pem, api_url } => {
                let app = crate::github::client::GithubApp::new(*app_id, key_pem, api_url, Duration::from_secs(30))
                    .map_err(gh)?;
                let installation = app.repo_installation(owner, name).await.map_err(gh)?;
                let repo = app.repo(installation, owner, name).map_err(gh)?;
                let token = repo.git_token().await.map_err(gh)?;
                Ok((repo, token))
            }
            GithubAccess::Token { token, api_url } => {
                let repo =
                    crate::github::client::GithubRepo::with_token(api_url, token, owner, name, Duration::from_secs(30))
                        .map_err(gh)?;
                Ok((repo, token.clone()))
            }
        }
    }
}

/// `body`, cut to fit GitHub's limit with a line that says so.
pub fn bounded_body(body: &str) -> String {
    if body.len() <= MAX_BODY {
        return body.to_string();
    }
    let mut cut = MAX_BODY;
    while !body.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}\n\n*(cut at {MAX_BODY} characters; `honua plan` shows it whole)*\n", &body[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_and_remotes() {
        assert_eq!(slug("add layer bike_lanes"), "add-layer-bike-lanes");
        assert_eq!(slug("set title of roads!!"), "set-title-of-roads");
        assert_eq!(
            github_repo_of("https://github.com/city/gis-config.git"),
            Some(("city".into(), "gis-config".into()))
        );
        assert_eq!(github_repo_of("git@github.com:city/gis-config.git"), Some(("city".into(), "gis-config".into())));
        assert_eq!(github_repo_of("https://x-access-token:t@github.com/city/c"), Some(("city".into(), "c".into())));
        assert_eq!(github_repo_of("/srv/git/config.git"), None);
    }
}
