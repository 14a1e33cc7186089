//! The PR flow end to end, on real parts: a signed webhook over HTTP into the service, the durable
//! queue (SQLite), a worker, a bare mirror fetched over `file://`, and the fake GitHub driven through
//! the real octocrab client.

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::fake_github::FakeGithub;
use common::service::{ExampleScene, Service};
use common::{Origin, REPO};
use honua_gitops::store::Store;

const WAIT: Duration = Duration::from_secs(60);

fn completed(gh: &FakeGithub, sha: &str) -> bool {
    let runs = gh.check_runs(sha);
    runs.len() == 2 && runs.iter().all(|r| r.status == "completed")
}

fn run<'a>(runs: &'a [common::fake_github::CheckRun], name: &str) -> &'a common::fake_github::CheckRun {
    runs.iter().find(|r| r.name == name).unwrap_or_else(|| panic!("no {name} check run"))
}

async fn opening_a_pr_gives_two_checks_and_one_plan_comment_which_a_push_edits(store: Arc<dyn Store>) {
    let github = FakeGithub::start().await;
    let origin = Origin::new(&common::examples().join("honua-config"));
    // Installs the metrics recorder before the first GitHub call.
    let _ = honua_gitops::server::metrics::handle();
    let service = Service::start(&github, &origin, store).await;
    // Someone quotes our marker: that comment must be left alone.
    github.post_comment(REPO, 1, "<!-- honua-gitops:plan -->\nI copied the bot's comment here");

    let head = origin.push_pr(1, &common::examples().join("honua-config-pr"));
    service.pull_request("d-open", "opened", 1, &head, &origin.main_sha()).await;
    github
        .wait_for(WAIT, "both checks completed on the head", |gh| {
            completed(gh, &head) && gh.comments(REPO, 1).len() == 2
        })
        .await;

    let runs = github.check_runs(&head);
    let validate = run(&runs, "honua/validate");
    assert_eq!(validate.conclusion.as_deref(), Some("success"));
    assert_eq!(validate.title.as_deref(), Some("Configuration is valid"));
    let diff = run(&runs, "honua/diff");
    assert_eq!(diff.conclusion.as_deref(), Some("action_required"), "production is blocked by a breaking change");
    assert!(diff.summary.as_deref().unwrap().contains("caching.ttl"));
    assert!(diff.details_url.as_deref().unwrap().starts_with("https://honua.example.org/plans/city/gis-config/1/"));

    let comments = github.comments(REPO, 1);
    let ours: Vec<_> = comments.iter().filter(|c| c.author_type == "Bot").collect();
    assert_eq!(ours.len(), 1, "one plan comment");
    assert!(ours[0].body.contains("### ⛔ production — BLOCKED"));
    assert!(ours[0].body.contains("`caching.ttl`: `3600` → `7200`"));

    // A new push: new check runs on the new head, the same comment edited in place.
    let fixed = tempfile::tempdir().unwrap();
    common::copy_tree(&common::examples().join("honua-config-pr"), fixed.path());
    let meta = fixed.path().join("environments/common/base-metadata.yaml");
    let text = std::fs::read_to_string(&meta).unwrap();
    // Keep owner_name after all: the breaking change is gone.
    let text = text.replace("      - {name: zoning_type, type: string, nullable: true}\n      - {name: area_sqft", "      - {name: owner_name, type: string, nullable: true}\n      - {name: zoning_type, type: string, nullable: true}\n      - {name: area_sqft");
    std::fs::write(&meta, text).unwrap();
    let head2 = origin.push_pr(1, fixed.path());
    service.pull_request("d-sync", "synchronize", 1, &head2, &origin.main_sha()).await;
    github
        .wait_for(WAIT, "both checks completed on the new head", |gh| {
            completed(gh, &head2) && gh.comments(REPO, 1).iter().any(|c| c.author_type == "Bot" && c.edits == 1)
        })
        .await;
    let runs = github.check_runs(&head2);
    assert_eq!(run(&runs, "honua/diff").conclusion.as_deref(), Some("success"), "{:?}", run(&runs, "honua/diff").title);
    let ours: Vec<_> = github.comments(REPO, 1).into_iter().filter(|c| c.author_type == "Bot").collect();
    assert_eq!(ours.len(), 1, "still one plan comment");
    assert_eq!(ours[0].id, comments.iter().find(|c| c.author_type == "Bot").unwrap().id, "edited, not re-posted");
    assert!(ours[0].body.contains("### 🟡 production — needs approval"), "{}", ours[0].body);
    assert_eq!(github.check_runs(&head).len(), 2, "the old head's checks are untouched");

    // Every GitHub call was counted by method and status, and GitHub's remaining budget recorded.
    let metrics = honua_gitops::server::metrics::handle().render();
    for line in [
        "honua_github_api_calls_total{method=\"POST\",status=\"201\"}",
        "honua_github_api_calls_total{method=\"PATCH\",status=\"200\"}",
        "honua_github_rate_limit_remaining{resource=\"core\"}",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
    let human = github.comments(REPO, 1).into_iter().find(|c| c.author_type == "User").unwrap();
    assert_eq!(human.edits, 0);
}

async fn an_invalid_config_fails_validation_with_every_annotation(store: Arc<dyn Store>) {
    let ExampleScene { github, origin, service } = ExampleScene::start(store).await;

    // 60 layers lose their geometry type (an error, and a warning on the misspelt key each), more than
    // two requests' worth of annotations.
    let broken = tempfile::tempdir().unwrap();
    common::copy_tree(&common::examples().join("honua-config"), broken.path());
    let meta = broken.path().join("environments/common/base-metadata.yaml");
    let mut text = std::fs::read_to_string(&meta).unwrap().replace("    geometryType: ", "    geometryKind: ");
    for i in 0..47 {
        text.push_str(&format!(
            "  - id: extra{i}\n    serviceId: utilities\n    idField: id\n    geometryField: geom\n"
        ));
    }
    std::fs::write(&meta, text).unwrap();
    let head = origin.push_pr(2, broken.path());
    service.pull_request("d-broken", "opened", 2, &head, &origin.main_sha()).await;
    github.wait_for(WAIT, "checks completed", |gh| completed(gh, &head)).await;

    let runs = github.check_runs(&head);
    let validate = run(&runs, "honua/validate");
    assert_eq!(validate.conclusion.as_deref(), Some("failure"));
    let expected = honua_gitops::validate::validate_repo(
        &honua_gitops::config::ConfigRepo::load_dir(broken.path()).unwrap(),
        None,
    );
    assert!(expected.len() > 100, "{}", expected.len());
    assert_eq!(validate.annotations.len(), expected.len(), "all annotations arrive, 50 per request");
    let first = validate
        .annotations
        .iter()
        .find(|a| a["message"].as_str().unwrap().contains("Layer 'parcels' is missing geometryType."))
        .unwrap();
    assert_eq!(first["path"], "environments/common/base-metadata.yaml");
    assert_eq!(first["annotation_level"], "failure");
    assert!(first["start_line"].as_u64().unwrap() > 1);
    assert_eq!(
        run(&runs, "honua/diff").conclusion.as_deref(),
        Some("action_required"),
        "validation errors block every plan"
    );
}

async fn rerunning_the_checks_plans_the_pr_again(store: Arc<dyn Store>) {
    let ExampleScene { github, origin, service } = ExampleScene::start(store).await;
    let head = origin.push_pr(3, &common::examples().join("honua-config-pr"));
    github.open_pr(REPO, 3, &head, "main");
    service.pull_request("d-first", "opened", 3, &head, &origin.main_sha()).await;
    github.wait_for(WAIT, "first checks", |gh| completed(gh, &head) && !gh.comments(REPO, 3).is_empty()).await;

    service.deliver("check_suite", "d-rerun", common::check_suite_rerequested(&head, 3)).await;
    github
        .wait_for(WAIT, "a second pair of checks on the same head", |gh| {
            let runs = gh.check_runs(&head);
            runs.len() == 4 && runs.iter().all(|r| r.status == "completed")
        })
        .await;
    let bot: Vec<_> = github.comments(REPO, 3).into_iter().filter(|c| c.author_type == "Bot").collect();
    assert_eq!(bot.len(), 1, "still one plan comment");
}

async fn a_pr_whose_webhook_never_arrived_is_caught_up_by_polling(store: Arc<dyn Store>) {
    let ExampleScene { github, origin, service } = ExampleScene::start(store).await;
    let head = origin.push_pr(4, &common::examples().join("honua-config-pr"));
    github.open_pr(REPO, 4, &head, "main");
    // No webhook at all: one poll finds the PR and the checks follow.
    assert_eq!(service.controller.poll_once().await.unwrap(), 1);
    github
        .wait_for(WAIT, "checks produced by polling", |gh| completed(gh, &head) && gh.comments(REPO, 4).len() == 1)
        .await;
    assert_eq!(run(&github.check_runs(&head), "honua/diff").conclusion.as_deref(), Some("action_required"));
    // The next poll finds nothing new, and a PR whose webhook did arrive is not polled again.
    assert_eq!(service.controller.poll_once().await.unwrap(), 0);
    let head5 = origin.push_pr(5, &common::examples().join("honua-config-pr"));
    github.open_pr(REPO, 5, &head5, "main");
    service.pull_request("d-5", "opened", 5, &head5, &origin.main_sha()).await;
    assert_eq!(service.controller.poll_once().await.unwrap(), 0);
    github.wait_for(WAIT, "checks of the delivered PR", |gh| completed(gh, &head5)).await;
    assert_eq!(github.check_runs(&head5).len(), 2, "planned once");
}

async fn github_errors_are_retried_without_a_second_pair_of_checks(store: Arc<dyn Store>) {
    let ExampleScene { github, origin, service } = ExampleScene::start(store).await;
    // One 502: octocrab retries the request at once. Five: the job fails and is retried with backoff,
    // and the retry reuses the check runs the first attempt created.
    for (number, failures) in [(6, 1), (7, 5)] {
        let tree = if number == 6 { "honua-config-pr" } else { "honua-config" };
        let head = origin.push_pr(number, &common::examples().join(tree));
        github.fail_check_run_updates(failures);
        service.pull_request(&format!("d-{number}"), "opened", number, &head, &origin.main_sha()).await;
        github
            .wait_for(WAIT, "checks completed despite GitHub errors", |gh| {
                completed(gh, &head) && gh.comments(REPO, number).len() == 1
            })
            .await;
        assert_eq!(github.check_runs(&head).len(), 2, "PR {number}: one pair of check runs");
    }
}

async fn a_burst_of_pushes_plans_only_the_newest_head(store: Arc<dyn Store>) {
    let ExampleScene { github, origin, service } = ExampleScene::start_idle(store).await;
    // Three pushes arrive before any worker is free: only the last head is worth GitHub's requests.
    let first = origin.push_pr(8, &common::examples().join("honua-config-pr"));
    let second = origin.push_pr(8, &common::examples().join("honua-config"));
    let third = origin.push_pr(8, &common::examples().join("honua-config-pr"));
    service.pull_request("d-8a", "opened", 8, &first, &origin.main_sha()).await;
    service.pull_request("d-8b", "synchronize", 8, &second, &origin.main_sha()).await;
    service.pull_request("d-8c", "synchronize", 8, &third, &origin.main_sha()).await;
    service.start_worker("w1");
    github.wait_for(WAIT, "checks on the newest head", |gh| completed(gh, &third)).await;
    // Every job has finished once the queue is empty; the older heads got nothing.
    service.wait_until_idle().await;
    assert!(github.check_runs(&first).is_empty(), "superseded head planned");
    assert!(github.check_runs(&second).is_empty(), "superseded head planned");
    assert_eq!(github.comments(REPO, 8).len(), 1);

    // A force-push back to an older head makes that head current again: it is planned.
    let oid = git2::Oid::from_str(&first).unwrap();
    origin.repo.reference("refs/pull/8/head", oid, true, "force-push").unwrap();
    service.pull_request("d-8d", "synchronize", 8, &first, &origin.main_sha()).await;
    github.wait_for(WAIT, "checks on the head pushed again", |gh| completed(gh, &first)).await;
}

/// GitHub does not promise the order of its deliveries: when the newer push of a PR arrives first and
/// the older one after it, the PR's head as it is now is what gets the checks and the plan comment,
/// never the older head (whose plan reviewers would read as current).
async fn pushes_delivered_out_of_order_check_the_head_the_pr_has(store: Arc<dyn Store>) {
    let ExampleScene { github, origin, service } = ExampleScene::start_idle(store).await;
    let older = origin.push_pr(10, &common::examples().join("honua-config-pr"));
    let newer = origin.push_pr(10, &common::examples().join("honua-config"));
    service.pull_request("d-10b", "synchronize", 10, &newer, &origin.main_sha()).await;
    service.pull_request("d-10a", "opened", 10, &older, &origin.main_sha()).await;
    service.start_worker("w1");
    github.wait_for(WAIT, "checks on the PR's head", |gh| completed(gh, &newer)).await;
    service.wait_until_idle().await;
    assert!(github.check_runs(&older).is_empty(), "the older head was checked");
    let comments = github.comments(REPO, 10);
    assert_eq!(comments.len(), 1, "{comments:#?}");
    assert!(!comments[0].body.contains("bike_lanes"), "the comment shows the older head's plan: {}", comments[0].body);
}

async fn a_pr_from_a_fork_is_checked_from_the_base_repository_alone(store: Arc<dyn Store>) {
    let ExampleScene { github, origin, service } = ExampleScene::start(store).await;
    let head = origin.push_pr(9, &common::examples().join("honua-config-pr"));
    // The head lives in a stranger's fork, which does not exist at the Git URL: the service must read
    // the head from the base repository's `refs/pull/9/head`, never fetch from (or send the
    // installation token to) the fork, and never run anything from it.
    let mut payload: serde_json::Value =
        serde_json::from_slice(&common::pull_request_payload("opened", 9, &head, &origin.main_sha())).unwrap();
    payload["pull_request"]["head"]["repo"] = serde_json::json!({"name": "gis-config", "full_name": "mallory/gis-config", "owner": {"login": "mallory"}, "fork": true});
    payload["pull_request"]["user"]["login"] = "mallory".into();
    service.deliver("pull_request", "d-fork", serde_json::to_vec(&payload).unwrap()).await;
    github
        .wait_for(WAIT, "checks on the fork's head", |gh| completed(gh, &head) && gh.comments(REPO, 9).len() == 1)
        .await;
    let runs = github.check_runs(&head);
    assert_eq!(run(&runs, "honua/validate").conclusion.as_deref(), Some("success"));
    assert_eq!(run(&runs, "honua/diff").conclusion.as_deref(), Some("action_required"));
}

on_both_stores!(
    a_burst_of_pushes_plans_only_the_newest_head,
    pushes_delivered_out_of_order_check_the_head_the_pr_has,
    a_pr_from_a_fork_is_checked_from_the_base_repository_alone,
    opening_a_pr_gives_two_checks_and_one_plan_comment_which_a_push_edits,
    an_invalid_config_fails_validation_with_every_annotation,
    rerunning_the_checks_plans_the_pr_again,
    a_pr_whose_webhook_never_arrived_is_caught_up_by_polling,
    github_errors_are_retried_without_a_second_pair_of_checks
);
