//! The bare mirror: fetched over `file://`, incremental, following rewritten branches, and read
//! without a work tree to plan a PR.

mod common;

use git2::Repository;
use honua_gitops::config::ConfigRepo;
use honua_gitops::git::mirror::Mirror;

#[test]
fn a_mirror_fetches_incrementally_and_plans_a_pr_without_a_work_tree() {
    let source_dir = tempfile::tempdir().unwrap();
    let source = Repository::init(source_dir.path()).unwrap();
    let base = common::commit_tree(&source, &common::examples().join("honua-config"), "base");
    source.branch("main", &source.find_commit(base).unwrap(), true).unwrap();
    let pr = source.branch("pr-42", &source.find_commit(base).unwrap(), true).unwrap();
    source.set_head(pr.get().name().unwrap()).unwrap();
    let head = common::commit_tree(&source, &common::examples().join("honua-config-pr"), "PR");
    let url = format!("file://{}", source_dir.path().display());

    let cache = tempfile::tempdir().unwrap();
    let mirror = Mirror::open(cache.path(), &url).unwrap();
    let first = mirror.fetch(&["refs/heads/main", "refs/heads/pr-42"], Some("ghs_not_used_by_file_transport")).unwrap();
    assert!(first.received_objects > 10, "{first:?}");
    assert_eq!(mirror.resolve("refs/heads/main").unwrap(), base.to_string());
    assert_eq!(mirror.resolve("refs/heads/pr-42").unwrap(), head.to_string());
    assert!(!mirror.path().join("environments").exists(), "bare: no work tree");

    let again = mirror.fetch(&["refs/heads/main", "refs/heads/pr-42"], None).unwrap();
    assert_eq!(again.received_objects, 0, "nothing new, nothing transferred");

    let from = ConfigRepo::load_git(mirror.path(), &base.to_string()).unwrap();
    let to = ConfigRepo::load_git(mirror.path(), &head.to_string()).unwrap();
    assert_eq!(common::decisions(&from, &to), ["development:auto", "staging:auto", "production:blocked"]);

    // The PR branch is rewritten (force-pushed): the mirror follows, fetching only what is new.
    // HEAD is pr-42: a hard reset to the base moves the branch back, as a rewrite before a force push does.
    source.reset(source.find_commit(base).unwrap().as_object(), git2::ResetType::Hard, None).unwrap();
    let rewritten = common::commit_tree(&source, &common::examples().join("honua-config"), "rewritten");
    let third = mirror.fetch(&["refs/heads/pr-42"], None).unwrap();
    assert!(third.received_objects < first.received_objects, "{third:?} vs {first:?}");
    assert_eq!(mirror.resolve("refs/heads/pr-42").unwrap(), rewritten.to_string());

    // Reopening the same URL reuses the same mirror.
    let reopened = Mirror::open(cache.path(), &url).unwrap();
    assert_eq!(reopened.path(), mirror.path());
    assert_eq!(reopened.resolve("refs/heads/main").unwrap(), base.to_string());
}

#[test]
fn a_missing_remote_is_a_clear_error() {
    let cache = tempfile::tempdir().unwrap();
    let mirror = Mirror::open(cache.path(), "file:///nonexistent/honua-config").unwrap();
    let err = mirror.fetch(&["refs/heads/main"], None).unwrap_err().to_string();
    assert!(err.contains("fetch from file:///nonexistent/honua-config"), "{err}");
}

#[test]
fn the_mirror_can_fetch_over_https() {
    // github.com and GitHub Enterprise are reached over HTTPS: libgit2 must be built with it.
    assert!(git2::Version::get().https(), "git2 was built without HTTPS support (feature `https`)");
}
