//! Helpers shared by the integration tests: in-memory repositories, the real binary, Git fixtures and
//! the fake GitHub.
#![allow(dead_code, unused_macros)]

/// Runs each named `async fn(Arc<dyn Store>)` as two tests: on SQLite, and on PostgreSQL when
/// `HONUA_TEST_DATABASE_URL` is set (otherwise that half prints a notice and passes).
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite_store {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let db = $crate::common::db::sqlite().await;
                super::$name(db.store.clone()).await;
                db.cleanup().await;
            })*
        }
        mod postgres_store {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                if let Some(db) = $crate::common::db::postgres().await {
                    super::$name(db.store.clone()).await;
                    db.cleanup().await;
                }
            })*
        }
    };
}

pub mod db;
pub mod edge;
pub mod fake_github;
pub mod fault_proxy;
pub mod git_http;
pub mod service;

use std::path::{Path, PathBuf};

use std::process::{Command, Output};

use honua_gitops::config::source::RepoFiles;
use honua_gitops::config::ConfigRepo;

/// `../shared/honua` from the crate root.
pub fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/honua")
}

pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// A repository built from `(path, content)` pairs, as if read from disk.
pub fn repo(files: &[(&str, &str)]) -> ConfigRepo {
    let mut rf = RepoFiles::default();
    for (path, content) in files {
        rf.files.insert(path.to_string(), content.as_bytes().to_vec());
        if let Some(env) = path.strip_prefix("environments/").and_then(|p| p.split('/').next()) {
            if !rf.env_dirs.iter().any(|e| e == env) {
                rf.env_dirs.push(env.to_string());
            }
        }
    }
    ConfigRepo::from_files(rf, "test".into())
}

/// Runs the `honua` binary.
pub fn honua(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_honua")).args(args).env("COLUMNS", "200").output().expect("runs honua")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn code(o: &Output) -> i32 {
    o.status.code().expect("exited")
}

/// Makes `repo`'s work tree exactly `tree_dir` and commits it on the current branch.
pub fn commit_tree(repo: &git2::Repository, tree_dir: &Path, message: &str) -> git2::Oid {
    let workdir = repo.workdir().expect("a repository with a work tree");
    for entry in std::fs::read_dir(workdir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != ".git" {
            let p = entry.path();
            if p.is_dir() {
                std::fs::remove_dir_all(p).unwrap()
            } else {
                std::fs::remove_file(p).unwrap()
            }
        }
    }
    copy_tree(tree_dir, workdir);
    let mut index = repo.index().unwrap();
    index.add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None).unwrap();
    index.update_all(["*"].iter(), None).unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let sig = git2::Signature::now("Test", "test@example.org").unwrap();
    let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents).unwrap()
}

pub fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// `environment:decision` for each plan of a change, in promotion order.
pub fn decisions(from: &ConfigRepo, to: &ConfigRepo) -> Vec<String> {
    let at = chrono::DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z").unwrap().with_timezone(&chrono::Utc);
    honua_gitops::plan::build(from, to, None, at)
        .plans
        .iter()
        .map(|p| format!("{}:{}", p.environment, p.decision.label()))
        .collect()
}

pub const REPO: &str = "city/gis-config";

/// A config repository "on GitHub": a bare Git repository at `{git_root}/city/gis-config.git` (bare, as
/// on GitHub, so the service can push its ledger to it), with `main` and PR heads published as
/// `refs/pull/N/head`, as GitHub does.
pub struct Origin {
    pub repo: git2::Repository,
    _dir: tempfile::TempDir,
    pub git_root: PathBuf,
}

/// Writes the files under `dir` as a tree of `repo` (no index, no work tree).
fn write_tree(repo: &git2::Repository, dir: &Path) -> git2::Oid {
    let mut builder = repo.treebuilder(None).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let path = entry.path();
        if path.is_dir() {
            builder.insert(&name, write_tree(repo, &path), 0o040000).unwrap();
        } else {
            let blob = repo.blob(&std::fs::read(&path).unwrap()).unwrap();
            builder.insert(&name, blob, 0o100644).unwrap();
        }
    }
    builder.write().unwrap()
}

impl Origin {
    pub fn new(base: &Path) -> Origin {
        let dir = tempfile::tempdir().unwrap();
        let git_root = dir.path().to_path_buf();
        let repo = git2::Repository::init_bare(git_root.join("city/gis-config.git")).unwrap();
        let origin = Origin { repo, _dir: dir, git_root };
        origin.commit("refs/heads/main", None, base, "base");
        origin.repo.set_head("refs/heads/main").unwrap();
        origin
    }

    fn commit(&self, refname: &str, parent: Option<git2::Oid>, tree: &Path, message: &str) -> String {
        let tree = self.repo.find_tree(write_tree(&self.repo, tree)).unwrap();
        let sig = git2::Signature::now("Test", "test@example.org").unwrap();
        let parent = parent.map(|p| self.repo.find_commit(p).unwrap());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        let oid = self.repo.commit(None, &sig, &sig, message, &tree, &parents).unwrap();
        self.repo.reference(refname, oid, true, message).unwrap();
        oid.to_string()
    }

    /// Commits `tree` on top of the PR's previous head (or of main's tip) and publishes it as PR `number`.
    pub fn push_pr(&self, number: u64, tree: &Path) -> String {
        let refname = format!("refs/pull/{number}/head");
        let parent = self.repo.refname_to_id(&refname).or_else(|_| self.repo.refname_to_id("refs/heads/main")).ok();
        self.commit(&refname, parent, tree, &format!("PR {number}"))
    }

    /// Commits `tree` on `main` (a merge, as far as the service can tell) and returns the new head.
    pub fn merge(&self, tree: &Path) -> String {
        let parent = self.repo.refname_to_id("refs/heads/main").ok();
        self.commit("refs/heads/main", parent, tree, "merge")
    }

    pub fn main_sha(&self) -> String {
        self.repo.refname_to_id("refs/heads/main").unwrap().to_string()
    }
}

/// The body of GitHub's `pull_request` delivery for `REPO`, installation 7.
pub fn pull_request_payload(action: &str, number: u64, head_sha: &str, base_sha: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "action": action,
        "number": number,
        "pull_request": {
            "head": {"sha": head_sha, "ref": format!("feature-{number}"), "repo": {"name": "gis-config", "full_name": REPO, "owner": {"login": "city"}}},
            "base": {"sha": base_sha, "ref": "main", "repo": {"name": "gis-config", "full_name": REPO, "owner": {"login": "city"}}},
            "user": {"login": "alice", "type": "User"},
            "merged": false
        },
        "repository": {"name": "gis-config", "full_name": REPO, "owner": {"login": "city"}, "default_branch": "main"},
        "installation": {"id": 7}
    }))
    .unwrap()
}

/// The body of GitHub's `push` delivery to `main` of `REPO`, installation 7.
pub fn push_payload(before: &str, after: &str, pusher: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "ref": "refs/heads/main",
        "before": before,
        "after": after,
        "deleted": false,
        "repository": {"name": "gis-config", "full_name": REPO, "owner": {"login": "city"}, "default_branch": "main"},
        "installation": {"id": 7},
        "sender": {"login": pusher, "type": "User"}
    }))
    .unwrap()
}

/// The body of an `issue_comment` delivery on PR `number` of `REPO`.
pub fn comment_payload(action: &str, number: u64, comment_id: u64, body: &str, login: &str, kind: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "action": action,
        "issue": {"number": number, "pull_request": {"url": format!("https://api.github.com/repos/{REPO}/pulls/{number}")}},
        "comment": {"id": comment_id, "body": body, "user": {"login": login, "type": kind}},
        "repository": {"name": "gis-config", "full_name": REPO, "owner": {"login": "city"}, "default_branch": "main"},
        "installation": {"id": 7}
    }))
    .unwrap()
}

/// The body of a `pull_request` `closed` delivery of a merged PR.
pub fn merged_payload(number: u64, head_sha: &str, merge_sha: &str) -> Vec<u8> {
    let mut p: serde_json::Value =
        serde_json::from_slice(&pull_request_payload("closed", number, head_sha, "")).unwrap();
    p["pull_request"]["merged"] = true.into();
    p["pull_request"]["merge_commit_sha"] = merge_sha.into();
    serde_json::to_vec(&p).unwrap()
}

/// The body of a `check_suite` `rerequested` delivery for `head_sha`, naming PR `number`.
pub fn check_suite_rerequested(head_sha: &str, number: u64) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "action": "rerequested",
        "check_suite": {"head_sha": head_sha, "pull_requests": [{"number": number}]},
        "repository": {"name": "gis-config", "full_name": REPO, "owner": {"login": "city"}, "default_branch": "main"},
        "installation": {"id": 7}
    }))
    .unwrap()
}

pub fn test_app_key() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/test-app-key.pem")
}

/// An API token of `role` (an agent's serves `environment`), stored hashed as `honua token create` does.
pub async fn api_token(
    store: &std::sync::Arc<dyn honua_gitops::store::Store>,
    name: &str,
    role: honua_gitops::store::Role,
    environment: Option<&str>,
) -> String {
    let token = honua_gitops::server::api::new_token().unwrap();
    let hash = honua_gitops::server::api::token_hash(&token);
    let stored = honua_gitops::store::ApiTokenHash { role, environment, hash: &hash };
    assert!(store.create_token(name, &stored, 0).await.unwrap(), "token `{name}` exists already");
    token
}

/// A child process (a `honua serve` replica) killed and reaped however the test ends.
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until `honua serve` at `url` answers `/readyz`.
pub async fn wait_ready(client: &reqwest::Client, url: &str) {
    for _ in 0..400 {
        if let Ok(r) = client.get(format!("{url}/readyz")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("honua serve did not become ready at {url}");
}
