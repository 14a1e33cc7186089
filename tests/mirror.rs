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

/// Smart HTTP, as github.com serves it: Git's own `http-backend` behind a server that wants the
/// installation token as `x-access-token` basic credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_fetches_over_smart_http_with_the_installation_token() {
    let origin = common::Origin::new(&common::examples().join("honua-config"));
    let head = origin.push_pr(42, &common::examples().join("honua-config-pr"));
    let server = common::git_http::GitHttp::start(origin.git_root.clone(), "ghs_test_token").await;
    let url = format!("{}/city/gis-config.git", server.url);
    let cache = tempfile::tempdir().unwrap();

    let (main, fetched_head, refused) = tokio::task::spawn_blocking({
        let url = url.clone();
        let cache = cache.path().to_path_buf();
        move || {
            let mirror = Mirror::open(&cache, &url).unwrap();
            // Without the token, and with a wrong one, the server refuses: a clear error, no secret in it.
            let refused = mirror.fetch(&["refs/heads/main"], None).unwrap_err().to_string();
            let wrong = mirror.fetch(&["refs/heads/main"], Some("ghs_wrong")).unwrap_err().to_string();
            assert!(!wrong.contains("ghs_wrong"), "{wrong}");
            let stats = mirror.fetch(&["refs/heads/main", "refs/pull/42/head"], Some("ghs_test_token")).unwrap();
            assert!(stats.received_objects > 10, "{stats:?}");
            (mirror.resolve("refs/heads/main").unwrap(), mirror.resolve("refs/pull/42/head").unwrap(), refused)
        }
    })
    .await
    .unwrap();
    assert!(refused.contains(&format!("fetch from {url}")), "{refused}");
    assert_eq!(main, origin.main_sha());
    assert_eq!(fetched_head, head);
    assert!(server.authorised_requests() >= 2, "the fetch went over HTTP with the token");
}
