//! A config repository's files read from a commit's tree, straight from the object database (git2,
//! no work tree): revisions resolved, symbolic links, submodules and unsafe names reported as the
//! directory reader reports them.

use std::path::{Path, PathBuf};

use git2::{ObjectType, Repository, Tree};

use super::source::{is_config_file, EntryKind, RepoFiles, ENVIRONMENTS_DIR, POLICY_DIR};

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("{path}: not a Git repository ({message}); pass --repo with the repository's path")]
    Open { path: PathBuf, message: String },
    #[error(
        "{path}: revision `{rev}` not found ({message}); check the branch, tag or SHA (and fetch it if it is remote)"
    )]
    Revision { path: PathBuf, rev: String, message: String },
    #[error("{path}: could not read `{what}` at {rev}: {message}")]
    Read { path: PathBuf, rev: String, what: String, message: String },
    /// Git work run off the async threads did not finish: its thread panicked, or the runtime shut down.
    #[error("mirror task: {0}")]
    Interrupted(String),
}

/// A commit resolved from a user-given revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedCommit {
    pub sha: String,
}

const GIT_SYMLINK_MODE: i32 = 0o120000;
const GIT_COMMIT_MODE: i32 = 0o160000;

/// Reads the known layout (`environments/*/…`, `.gitops/…`) from the tree of `rev`.
pub fn read_commit(repo_path: &Path, rev: &str) -> Result<(ResolvedCommit, RepoFiles), GitError> {
    let repo = Repository::open(repo_path)
        .map_err(|e| GitError::Open { path: repo_path.to_path_buf(), message: e.message().to_string() })?;
    let commit = resolve(&repo, rev).map_err(|unresolved| unresolved.at(repo_path, rev))?;
    let sha = commit.id().to_string();
    let read_err = |what: &str, e: git2::Error| GitError::Read {
        path: repo_path.to_path_buf(),
        rev: rev.to_string(),
        what: what.to_string(),
        message: e.message().to_string(),
    };
    let tree = commit.tree().map_err(|e| read_err("tree", e))?;
    let mut out = RepoFiles::default();
    if let Some(envs) = subtree(&repo, &tree, ENVIRONMENTS_DIR, &mut out).map_err(|e| read_err(ENVIRONMENTS_DIR, e))? {
        for entry in envs.iter() {
            let name = String::from_utf8_lossy(entry.name_bytes()).into_owned();
            let rel = format!("{ENVIRONMENTS_DIR}/{name}");
            let kind = kind_of(&repo, &entry);
            let is_dir = matches!(kind, EntryKind::Dir);
            // `admit` reports a symlinked or badly named environment; plain files here are ignored.
            if !out.admit(&rel, &name, kind, 0) || !is_dir {
                continue;
            }
            out.env_dirs.push(name.clone());
            let env_tree = repo.find_tree(entry.id()).map_err(|e| read_err(&rel, e))?;
            read_files(&repo, &env_tree, &rel, is_config_file, &mut out).map_err(|e| read_err(&rel, e))?;
        }
    }
    if let Some(policy) = subtree(&repo, &tree, POLICY_DIR, &mut out).map_err(|e| read_err(POLICY_DIR, e))? {
        let is_policy = |n: &str| n.starts_with("deployment-policy.");
        read_files(&repo, &policy, POLICY_DIR, is_policy, &mut out).map_err(|e| read_err(POLICY_DIR, e))?;
    }
    Ok((ResolvedCommit { sha }, out))
}

/// `rev` as Git resolves it, else as the remote-tracking branch of `origin` (CI checkouts often have
/// only the remote's branches: `main` is `origin/main` there), else a pull request's ref as GitHub's
/// checkout writes it (`pull/123/merge`). When nothing matches, the message says how to make it resolve,
/// knowing a shallow clone (what `actions/checkout` makes by default) when it sees one.
fn resolve<'r>(repo: &'r Repository, rev: &str) -> Result<git2::Commit<'r>, Unresolved> {
    let first = match repo.revparse_single(rev).and_then(|o| o.peel_to_commit()) {
        Ok(commit) => return Ok(commit),
        Err(e) => e.message().to_string(),
    };
    let plain = !rev.is_empty() && !rev.starts_with('-') && !rev.contains(['~', '^', ':', '@', '{', ' ']);
    if plain {
        for candidate in [format!("refs/remotes/origin/{rev}"), format!("refs/remotes/{rev}")] {
            if let Ok(commit) = repo.revparse_single(&candidate).and_then(|o| o.peel_to_commit()) {
                return Ok(commit);
            }
        }
    }
    let branch = rev.strip_prefix("origin/").unwrap_or(rev);
    let fetch = format!("git fetch --no-tags origin {branch}:refs/remotes/origin/{branch}");
    Err(Unresolved(if repo.is_shallow() {
        format!(
            "{first}. This is a shallow clone (actions/checkout fetches one commit by default), which holds \
             only what was checked out: fetch the branch with `{fetch}`, or check out with `fetch-depth: 0`"
        )
    } else {
        format!("{first}; it is neither a local branch nor `origin/{branch}`: fetch it with `{fetch}`")
    }))
}

/// Why a revision did not resolve, before it is placed in a repository ([`Unresolved::at`]).
struct Unresolved(String);

impl Unresolved {
    fn at(self, repo_path: &Path, rev: &str) -> GitError {
        GitError::Revision { path: repo_path.to_path_buf(), rev: rev.to_string(), message: self.0 }
    }
}

fn subtree<'r>(
    repo: &'r Repository,
    tree: &Tree,
    name: &str,
    out: &mut RepoFiles,
) -> Result<Option<Tree<'r>>, git2::Error> {
    let Some(entry) = tree.get_name(name) else {
        return Ok(None);
    };
    if entry.filemode() == GIT_SYMLINK_MODE {
        out.admit(name, name, kind_of(repo, &entry), 0);
        return Ok(None);
    }
    if entry.kind() != Some(ObjectType::Tree) {
        return Ok(None);
    }
    repo.find_tree(entry.id()).map(Some)
}

fn read_files(
    repo: &Repository,
    tree: &Tree,
    dir: &str,
    wanted: impl Fn(&str) -> bool,
    out: &mut RepoFiles,
) -> Result<(), git2::Error> {
    let odb = repo.odb()?;
    for entry in tree.iter() {
        let name = String::from_utf8_lossy(entry.name_bytes()).into_owned();
        if !wanted(&name) {
            continue;
        }
        let rel = format!("{dir}/{name}");
        let kind = kind_of(repo, &entry);
        // The header gives the size without inflating the blob: a 50 MB file is refused unread.
        let size = match kind {
            EntryKind::File => odb.read_header(entry.id())?.0 as u64,
            _ => 0,
        };
        if out.admit_file(&rel, &name, kind, size) {
            let blob = repo.find_blob(entry.id())?;
            out.files.insert(rel, blob.content().to_vec());
        }
    }
    Ok(())
}

fn kind_of(repo: &Repository, entry: &git2::TreeEntry) -> EntryKind {
    match entry.filemode() {
        GIT_SYMLINK_MODE => {
            let target = repo
                .find_blob(entry.id())
                .ok()
                .map(|b| PathBuf::from(String::from_utf8_lossy(b.content()).into_owned()));
            EntryKind::Symlink(target)
        }
        GIT_COMMIT_MODE => EntryKind::Other,
        _ => match entry.kind() {
            Some(ObjectType::Tree) => EntryKind::Dir,
            Some(ObjectType::Blob) => EntryKind::File,
            _ => EntryKind::Other,
        },
    }
}
