//! Helpers shared by the integration tests: in-memory repositories, the real binary, Git fixtures and
//! the fake GitHub.
#![allow(dead_code, unused_macros, unused_imports)]

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
pub mod fake_llm;
pub mod fault_proxy;
pub mod git_http;
mod origin;
mod processes;
pub mod service;

pub use origin::*;
pub use processes::*;

use std::path::{Path, PathBuf};

use std::process::{Command, Output};

use honua_gitops::config::source::RepoFiles;
use honua_gitops::config::ConfigRepo;

/// `../shared/honua` from the crate root.
pub fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/honua")
}

/// A file under `deploy/`.
pub fn deploy_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(rel)
}

pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// A copy of the example config repository with `lines` added to `environment`'s policy block (each line
/// indented four spaces, ending in a newline).
pub fn example_with_policy(environment: &str, lines: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&examples().join("honua-config"), dir.path());
    let policy = dir.path().join(".gitops/deployment-policy.yaml");
    let text = std::fs::read_to_string(&policy).unwrap();
    let block = format!("  {environment}:\n");
    assert!(text.contains(&block), "the example's policy has no `{environment}` block");
    std::fs::write(&policy, text.replacen(&block, &format!("{block}{lines}"), 1)).unwrap();
    dir
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

/// `environment:decision` for each plan of a change, in promotion order.
pub fn decisions(from: &ConfigRepo, to: &ConfigRepo) -> Vec<String> {
    let at = chrono::DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z").unwrap().with_timezone(&chrono::Utc);
    honua_gitops::plan::build(from, to, None, at)
        .plans
        .iter()
        .map(|p| format!("{}:{}", p.environment, p.decision.label()))
        .collect()
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

/// Runs the git CLI in `dir` (what CI runs, not git2), with a fixed identity.
/// The answer to `request` as text (the request must reach the server).
pub async fn text_of(request: reqwest::RequestBuilder) -> String {
    request.send().await.unwrap().text().await.unwrap()
}

/// The answer to `request` as JSON (the request must reach the server and answer JSON).
pub async fn json_of(request: reqwest::RequestBuilder) -> serde_json::Value {
    request.send().await.unwrap().json().await.unwrap()
}

pub fn git(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.org")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.org")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A pull request as GitHub Actions checks it out: an origin whose `main` is the example and whose
/// `feature` branch is the example PR, cloned at depth 1 on `feature` (the base is not in the clone).
/// Returns the origin, the workspace, and the clone (`<workspace>/ci`).
pub fn ci_clone() -> (tempfile::TempDir, tempfile::TempDir, PathBuf) {
    let origin = tempfile::tempdir().unwrap();
    git(origin.path(), &["init", "-q", "-b", "main"]);
    copy_tree(&examples().join("honua-config"), origin.path());
    git(origin.path(), &["add", "-A"]);
    git(origin.path(), &["commit", "-qm", "base"]);
    git(origin.path(), &["checkout", "-qb", "feature"]);
    for entry in std::fs::read_dir(origin.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() != ".git" {
            if path.is_dir() {
                std::fs::remove_dir_all(&path).unwrap()
            } else {
                std::fs::remove_file(&path).unwrap()
            }
        }
    }
    copy_tree(&examples().join("honua-config-pr"), origin.path());
    git(origin.path(), &["add", "-A"]);
    git(origin.path(), &["commit", "-qm", "bike lanes"]);
    let work = tempfile::tempdir().unwrap();
    let url = format!("file://{}", origin.path().display());
    git(work.path(), &["clone", "-q", "--depth", "1", "--branch", "feature", &url, "ci"]);
    let ci = work.path().join("ci");
    (origin, work, ci)
}

/// The settings of a `honua serve` process in GitHub mode on loopback: listening on `port`, the fake
/// GitHub at `github_url` (its App, webhooks signed with `secret`), repositories fetched from `origin`,
/// the database at `database`, mirrors under `data`, no polling. A test adds what it needs (a setting given
/// twice takes the later value).
pub fn github_mode(
    port: u16,
    database: &str,
    data: &std::path::Path,
    github_url: &str,
    origin: &Origin,
    secret: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("HONUA_LISTEN", format!("127.0.0.1:{port}")),
        ("HONUA_DATABASE_URL", database.to_string()),
        ("HONUA_GITHUB_APP_ID", fake_github::APP_ID.to_string()),
        ("HONUA_GITHUB_PRIVATE_KEY_PATH", test_app_key().display().to_string()),
        ("HONUA_GITHUB_WEBHOOK_SECRET", secret.to_string()),
        ("HONUA_GITHUB_API_URL", github_url.to_string()),
        ("HONUA_GIT_URL", format!("file://{}", origin.git_root.display())),
        ("HONUA_DATA_DIR", data.display().to_string()),
        ("HONUA_POLL_INTERVAL", "0".into()),
    ]
}
