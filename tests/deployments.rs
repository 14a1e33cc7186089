//! Deployments end to end: a push to the default branch (webhook, GitHub polling, or plain-Git polling)
//! becomes one deployment per changed environment, decided by the policy; approvals through the real
//! HTTP API are checked, signed and audited. The agent is not part of this suite: where a deployment
//! must have run, the test moves it through `applying` to `completed` as the agent's report will.

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::fake_github::FakeGithub;
use common::service::{wait_for_deployments, ExampleScene, Service};
use common::{Origin, REPO};
use honua_gitops::controller::{Controller, DeploySource};
use honua_gitops::git::GitError;
use honua_gitops::plan::signing::{parse_public_key, verify, Via};
use honua_gitops::store::{Deployment, DeploymentFilter, DeploymentState, Gate, Role, Store};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

/// The deployment of `env` at `commit` among `all`.
fn of<'a>(all: &'a [Deployment], env: &str, commit: &str) -> &'a Deployment {
    all.iter()
        .find(|d| d.environment == env && d.commit == commit)
        .unwrap_or_else(|| panic!("no {env} deployment of {commit} in {all:#?}"))
}

/// What the agent will report: applying, then completed.
async fn complete(store: &Arc<dyn Store>, id: &str) {
    let now = honua_gitops::store::now_ms();
    assert!(store.transition(id, DeploymentState::Applying, "agent-test", "applying", now).await.unwrap());
    assert!(store.transition(id, DeploymentState::Completed, "agent-test", "healthy", now).await.unwrap());
}

struct Api {
    url: String,
    client: reqwest::Client,
}

impl Api {
    /// A token of `role` named after it.
    async fn token(store: &Arc<dyn Store>, name: &str, role: Role, environment: Option<&str>) -> String {
        common::api_token(store, name, role, environment).await
    }

    async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.url);
        let mut req = match method {
            "GET" => self.client.get(url),
            _ => self.client.post(url),
        };
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

async fn a_merge_deploys_development_and_staging_and_production_waits_for_an_approver(store: Arc<dyn Store>) {
    let ExampleScene { github, origin, service } = ExampleScene::start(store.clone()).await;
    let api = Api { url: service.url.clone(), client: reqwest::Client::new() };
    let approver = Api::token(&store, "release-bot", Role::Approver, None).await;
    let viewer = Api::token(&store, "dashboard", Role::Viewer, None).await;
    let agent = Api::token(&store, "prod-agent", Role::Agent, Some("production")).await;

    // The first push deploys what `main` holds: development and staging by policy, production waits.
    let (base, all) = service.push_main(&origin, "d-push-1").await;
    assert_eq!(of(&all, "development", &base).state, DeploymentState::Approved);
    assert_eq!(of(&all, "staging", &base).state, DeploymentState::Approved);
    let first_prod = of(&all, "production", &base).clone();
    assert_eq!(first_prod.state, DeploymentState::AwaitingApproval);
    assert!(first_prod.reasons.contains(&"autoApprove is false for this environment".to_string()));
    assert!(first_prod.id.starts_with("prod-") && first_prod.id.ends_with(&base[..7]), "{}", first_prod.id);
    complete(&store, &of(&all, "development", &base).id).await;
    complete(&store, &of(&all, "staging", &base).id).await;
    let (status, body) =
        api.call("POST", &format!("/api/v1/deployments/{}/approve", first_prod.id), Some(&approver), None).await;
    assert_eq!(status, 200, "{body}");
    complete(&store, &first_prod.id).await;

    // The PR merges: a layer added, a TTL raised, a field dropped (breaking).
    let merged = origin.merge(&common::examples().join("honua-config-pr"));
    service.deliver("push", "d-push-2", common::push_payload(&base, &merged, "bob")).await;
    let all = wait_for_deployments(&store, "the merge's deployments", |all| {
        all.iter().filter(|d| d.commit == merged).count() == 3
    })
    .await;
    let dev = of(&all, "development", &merged);
    assert_eq!((dev.state, dev.gate), (DeploymentState::Approved, Gate::Auto));
    assert_eq!(dev.from_commit.as_deref(), Some(base.as_str()), "planned from what development runs");
    assert_eq!(of(&all, "staging", &merged).state, DeploymentState::Approved);
    let prod = of(&all, "production", &merged).clone();
    assert_eq!((prod.state, prod.gate), (DeploymentState::Blocked, Gate::Breaking));
    assert!(
        prod.reasons.iter().any(|r| r.contains("breaking change(s) and allowBreakingChanges is false")),
        "{:?}",
        prod.reasons
    );

    // The signing key is public; the auto-approved record verifies with it.
    let (status, key) = api.call("GET", "/api/v1/signing-key", None, None).await;
    assert_eq!(status, 200);
    let key = parse_public_key(key["public_key"].as_str().unwrap()).unwrap();
    let record = verify(&key, dev.signed.as_ref().unwrap()).unwrap();
    assert_eq!((record.environment.as_str(), record.commit.as_str()), ("development", merged.as_str()));
    assert_eq!(record.approvals[0].by, "policy");

    // Refusals: no token, a viewer, an agent, an unknown id, and an approval that ignores the breaking change.
    let approve = format!("/api/v1/deployments/{}/approve", prod.id);
    assert_eq!(api.call("POST", &approve, None, None).await.0, 401);
    assert_eq!(api.call("POST", &approve, Some("honua_not-a-token"), None).await.0, 401);
    let (status, body) = api.call("POST", &approve, Some(&viewer), None).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")), "{body}");
    assert_eq!(api.call("POST", &approve, Some(&agent), Some(json!({"breaking": true}))).await.0, 403);
    let (status, body) = api.call("POST", "/api/v1/deployments/prod-0-nothing/approve", Some(&approver), None).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    let (status, body) = api.call("POST", &approve, Some(&approver), None).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("breaking_not_acknowledged")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("--breaking"));
    assert_eq!(store.deployment(&prod.id).await.unwrap().unwrap().state, DeploymentState::Blocked);

    // An approver acknowledging the breaking change: approved, bound to the plan digest, signed.
    let (status, body) = api.call("POST", &approve, Some(&approver), Some(json!({"breaking": true}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "approved");
    assert_eq!(body["approvals"][0]["actor"], "release-bot");
    assert_eq!(body["approvals"][0]["plan_digest"], prod.plan_digest.as_str());
    let signed = &body["signed"];
    let record = verify(&key, &serde_json::from_value(signed.clone()).unwrap()).unwrap();
    assert_eq!(record.deployment, prod.id);
    assert_eq!(record.plan_digest, prod.plan_digest);
    assert_eq!(record.sequence, 2, "production's second deployment");
    assert!(record.approvals[0].breaking);
    // GitHub's Deployments mirror follows: production of the merge is `queued` once approved, the
    // development deployments have ours in their payload.
    let prod_id = prod.id.clone();
    github
        .wait_for(WAIT, "production queued on GitHub", |gh| gh.deployment_status(&prod_id).as_deref() == Some("queued"))
        .await;
    let mirrored = github.deployments();
    let gh_prod = mirrored.iter().find(|d| d.payload["honua_deployment"] == prod_id.as_str()).unwrap();
    assert_eq!((gh_prod.environment.as_str(), gh_prod.sha.as_str()), ("production", merged.as_str()));
    // Each status GitHub got is the state at the time of the sync; the last is the current one.
    assert!(gh_prod.statuses.iter().all(|s| s == "pending" || s == "queued"), "{:?}", gh_prod.statuses);
    let first_dev = of(&all, "development", &base).id.clone();
    let gh_dev = mirrored.iter().find(|d| d.payload["honua_deployment"] == first_dev.as_str()).unwrap();
    assert_eq!(gh_dev.statuses.last().map(String::as_str), Some("success"), "{gh_dev:?}");
    assert_eq!(
        mirrored.iter().filter(|d| d.payload["honua_deployment"] == prod_id.as_str()).count(),
        1,
        "mirrored once"
    );
    // The Git ledger of the repository holds the signed record, verifiable with the same key.
    let deadline = tokio::time::Instant::now() + WAIT;
    let ledger = loop {
        let entries = origin
            .repo
            .refname_to_id(honua_gitops::git::ledger::LEDGER_REF)
            .ok()
            .map(|oid| honua_gitops::git::ledger::read(&origin.repo, oid).unwrap())
            .unwrap_or_default();
        if entries.iter().any(|e| e.deployment == prod_id) {
            break entries;
        }
        assert!(tokio::time::Instant::now() < deadline, "the ledger never got {prod_id}: {entries:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let entry = ledger.iter().find(|e| e.deployment == prod_id).unwrap();
    assert_eq!((entry.environment.as_str(), entry.sequence), ("production", 2));
    assert_eq!(entry.path(), format!("production/0000000002-{prod_id}.json"));
    assert_eq!(verify(&key, &entry.signed).unwrap().deployment, prod_id);
    let signed_count = store
        .deployments(&DeploymentFilter { limit: 100, ..Default::default() })
        .await
        .unwrap()
        .iter()
        .filter(|d| d.signed.is_some())
        .count();
    assert_eq!(ledger.len(), signed_count, "one ledger entry per signed decision");
    // Approving twice is refused.
    assert_eq!(api.call("POST", &approve, Some(&approver), Some(json!({"breaking": true}))).await.0, 409);

    // The same delivery replayed: nothing new.
    service.deliver("push", "d-push-2", common::push_payload(&base, &merged, "bob")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(store.deployments(&DeploymentFilter { limit: 100, ..Default::default() }).await.unwrap().len(), 6);

    // Every transition is in the audit log with actor and time, and so are the refusals.
    let (status, audit) = api.call("GET", &format!("/api/v1/audit?deployment={}", prod.id), Some(&viewer), None).await;
    assert_eq!(status, 200);
    let entries = audit["entries"].as_array().unwrap();
    let steps: Vec<(String, String, String)> = entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["to_state"].as_str().unwrap_or("-").to_string(),
                e["actor"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let step = |a: &str, s: &str, who: &str| (a.to_string(), s.to_string(), who.to_string());
    assert_eq!(steps[0], step("transition", "pending", "bob"));
    assert_eq!(steps[1], step("transition", "blocked", "policy"));
    assert!(steps.contains(&step("approve.forbidden", "-", "dashboard")), "{steps:?}");
    assert!(steps.contains(&step("approve.refused", "-", "release-bot")), "{steps:?}");
    assert!(steps.contains(&step("transition", "approved", "release-bot")), "{steps:?}");
    assert!(entries.iter().all(|e| e["at"].as_i64().unwrap() > 0));
    let (_, all_audit) = api.call("GET", "/api/v1/audit", Some(&viewer), None).await;
    let superseded_or_started =
        all_audit["entries"].as_array().unwrap().iter().filter(|e| e["to_state"] == "completed").count();
    assert_eq!(superseded_or_started, 3, "the three completions are audited too");

    // The list and detail views.
    let (status, list) = api.call("GET", "/api/v1/deployments?environment=production", Some(&viewer), None).await;
    assert_eq!(status, 200);
    assert_eq!(list["deployments"][0]["id"], prod.id.as_str(), "newest first");
    let (status, detail) = api.call("GET", &format!("/api/v1/deployments/{}", prod.id), Some(&viewer), None).await;
    assert_eq!(status, 200);
    assert!(detail["plan"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["breaking"].as_array().is_some_and(|b| !b.is_empty())));
    let (status, envs) = api.call("GET", "/api/v1/environments", Some(&viewer), None).await;
    assert_eq!(status, 200);
    let production =
        envs["environments"].as_array().unwrap().iter().find(|e| e["environment"] == "production").unwrap();
    assert_eq!(production["status"], "approved");
    assert_eq!(production["current"]["commit"], base.as_str());
}

async fn a_newer_merge_supersedes_a_deployment_that_has_not_started(store: Arc<dyn Store>) {
    let ExampleScene { github: _github, origin, service } = ExampleScene::start(store.clone()).await;
    let api = Api { url: service.url.clone(), client: reqwest::Client::new() };
    let approver = Api::token(&store, "mike", Role::Approver, None).await;
    let (base, all) = service.push_main(&origin, "d-1").await;
    let waiting = of(&all, "production", &base).id.clone();

    let merged = origin.merge(&common::examples().join("honua-config-pr"));
    service.deliver("push", "d-2", common::push_payload(&base, &merged, "bob")).await;
    wait_for_deployments(&store, "second production deployment", |all| {
        all.iter().any(|d| d.environment == "production" && d.commit == merged)
    })
    .await;
    let old = store.deployment(&waiting).await.unwrap().unwrap();
    assert_eq!(old.state, DeploymentState::Superseded);
    let (status, body) =
        api.call("POST", &format!("/api/v1/deployments/{waiting}/approve"), Some(&approver), None).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("wrong_state")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("newer deployment"), "{body}");
    let trail = store.audit(0, Some(&waiting), 100).await.unwrap();
    let last = trail.iter().rev().find(|e| e.action == "transition").unwrap();
    assert_eq!(last.to_state, Some(DeploymentState::Superseded));
    assert!(last.message.contains("superseded by prod-"), "{}", last.message);

    // A rejection of the new one is recorded with its reason.
    let newest = store
        .deployments(&DeploymentFilter { environment: Some("production".into()), limit: 1, ..Default::default() })
        .await
        .unwrap()
        .remove(0);
    let (status, body) = api
        .call(
            "POST",
            &format!("/api/v1/deployments/{}/reject", newest.id),
            Some(&approver),
            Some(json!({"reason": "not this week"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "rejected");
    assert!(body["transitions"].as_array().unwrap().iter().any(|t| t["message"] == "rejected by mike: not this week"));
}

/// GitHub does not promise the order of its deliveries, and a push whose job failed is retried later: a
/// push processed after a newer commit landed on the branch plans nothing, so an environment never goes
/// back to an older commit by itself (a rollback does that, on purpose).
async fn a_late_push_of_an_older_commit_never_supersedes_a_newer_one(store: Arc<dyn Store>) {
    let ExampleScene { github: _github, origin, service } = ExampleScene::start(store.clone()).await;
    service.push_main(&origin, "l-1").await;
    let older = origin.merge(&common::examples().join("honua-config-pr"));
    let tree = common::retitled(&common::examples().join("honua-config-pr"), "development", "Newer");
    let newer = origin.merge(tree.path());

    service.deliver("push", "l-3", common::push_payload(&older, &newer, "bob")).await;
    let all = wait_for_deployments(&store, "the newer commit in development", |all| {
        all.iter().any(|d| d.environment == "development" && d.commit == newer)
    })
    .await;
    let planned = of(&all, "development", &newer).clone();

    // The older commit's push comes last.
    let job = service.deliver_and_wait("push", "l-2", common::push_payload(&newer, &older, "bob")).await;
    assert_eq!(job.state, honua_gitops::store::JobState::Done, "{job:?}");
    let all = store.deployments(&DeploymentFilter { limit: 1000, ..Default::default() }).await.unwrap();
    assert!(!all.iter().any(|d| d.commit == older), "the older commit was planned after the newer: {all:#?}");
    let still = store.deployment(&planned.id).await.unwrap().unwrap();
    assert_eq!(still.state, planned.state, "{still:#?}");
}

/// Replicas plan one repository one at a time: a push that arrives while another replica plans the
/// repository (here the test holds it, as that replica would) waits, then fetches and plans what the
/// branch holds. Without the hold, a replica that fetched an older commit could create its deployments
/// after another replica fetched and planned a newer one, and take the environments back.
async fn a_push_waits_while_another_replica_plans_the_repository(store: Arc<dyn Store>) {
    let ExampleScene { github: _github, origin, service } = ExampleScene::start(store.clone()).await;
    let (base, _) = service.push_main(&origin, "h-1").await;
    let other_replica = store.hold_repository(REPO).await.unwrap();
    let merged = origin.merge(&common::examples().join("honua-config-pr"));
    service.deliver("push", "h-2", common::push_payload(&base, &merged, "bob")).await;
    // Time for a plan that ignored the hold to create its deployments; one that waits creates nothing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = store.deployments(&DeploymentFilter { limit: 1000, ..Default::default() }).await.unwrap();
    assert!(!all.iter().any(|d| d.commit == merged), "planned while another replica held the repository: {all:#?}");
    assert_eq!(store.branch_head(REPO, "main").await.unwrap().as_deref(), Some(base.as_str()));

    other_replica.release().await.unwrap();
    wait_for_deployments(&store, "the merge's deployments once the hold is released", |all| {
        all.iter().any(|d| d.commit == merged)
    })
    .await;
    wait_for_branch_head(&store, REPO, &merged).await;
}

/// A rollback is planned and created while no push of its repository is (here or on another replica):
/// a push planned at the same time would otherwise create its deployment after the rollback's and
/// supersede it before any agent took it.
async fn a_rollback_waits_while_a_push_of_its_repository_is_planned(store: Arc<dyn Store>) {
    let ExampleScene { github: _github, origin, service } = ExampleScene::start(store.clone()).await;
    let (base, all) = service.push_main(&origin, "w-1").await;
    complete(&store, &of(&all, "development", &base).id).await;
    let merged = origin.merge(&common::examples().join("honua-config-pr"));
    service.deliver("push", "w-2", common::push_payload(&base, &merged, "bob")).await;
    let all = wait_for_deployments(&store, "the merge in development", |all| {
        all.iter().any(|d| d.environment == "development" && d.commit == merged)
    })
    .await;
    complete(&store, &of(&all, "development", &merged).id).await;

    let push_being_planned = store.hold_repository(REPO).await.unwrap();
    let rollback = tokio::spawn({
        let controller = service.controller.clone();
        async move { controller.rollbacks().rollback(None, "development", None, "oncall", Utc::now()).await }
    });
    // Time for a rollback that ignored the hold to be created; one that waits creates nothing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = store.deployments(&DeploymentFilter { limit: 1000, ..Default::default() }).await.unwrap();
    assert!(
        !all.iter().any(|d| d.cause == honua_gitops::deployment::Cause::Rollback),
        "created while a push was being planned: {all:#?}"
    );
    push_being_planned.release().await.unwrap();
    let rolled_back = rollback.await.unwrap().unwrap();
    assert_eq!((rolled_back.commit.as_str(), rolled_back.state), (base.as_str(), DeploymentState::Approved));
}

async fn a_push_whose_webhook_was_lost_is_deployed_by_polling(store: Arc<dyn Store>) {
    let ExampleScene { github, origin, service } = ExampleScene::start(store.clone()).await;
    github.set_branch(REPO, "main", &origin.main_sha());
    assert_eq!(service.controller.poll_once().await.unwrap(), 1);
    wait_for_deployments(&store, "deployments from polling", |all| all.len() == 3).await;
    // Processed heads are remembered: the next poll queues nothing.
    wait_for_branch_head(&store, REPO, &origin.main_sha()).await;
    assert_eq!(service.controller.poll_once().await.unwrap(), 0);
}

async fn wait_for_branch_head(store: &Arc<dyn Store>, repository: &str, sha: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while store.branch_head(repository, "main").await.unwrap().as_deref() != Some(sha) {
        assert!(tokio::time::Instant::now() < deadline, "branch head never recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// GitHub's content-creation budget of the installation is spent for the next hour (another replica's
/// burst, say): every pull-request job waits for it, holding its worker. A merge's push queued behind
/// them is planned all the same, by the worker `honua serve` keeps for deployment work.
async fn pull_requests_waiting_on_github_never_hold_back_a_merges_deployments(store: Arc<dyn Store>) {
    use honua_gitops::store::{now_ms, WriteBudget};
    let ExampleScene { github, origin, service } = ExampleScene::start_idle(store.clone()).await;
    let hour = 3_600_000;
    let spent = WriteBudget { minute_period_ms: hour, minute_burst: 1, hour_period_ms: hour, hour_burst: 1 };
    assert_eq!(store.take_write_budget(7, spent, now_ms()).await.unwrap(), None);
    let heads: Vec<String> = (1..=2).map(|n| origin.push_pr(n, &common::examples().join("honua-config-pr"))).collect();
    for (n, head) in (1..=2).zip(&heads) {
        service.pull_request(&format!("held-pr-{n}"), "opened", n, head, &origin.main_sha()).await;
    }
    let base = origin.main_sha();
    service.deliver("push", "held-push", common::push_payload(&"0".repeat(40), &base, "alice")).await;

    // Two workers, as `honua serve --workers 2` runs them: the queue holds the two PRs, then the push.
    let (_stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(service.controller.clone().run_deployment_worker("deploy".into(), rx));
    service.start_worker("w1");
    let all = wait_for_deployments(&store, "the push's deployments", |all| all.len() == 3).await;
    assert!(all.iter().all(|d| d.commit == base));
    for head in &heads {
        assert!(github.check_runs(head).is_empty(), "the PR jobs still wait for GitHub's budget");
    }
    // The push's job finishes; both PR jobs are still to.
    let deadline = tokio::time::Instant::now() + WAIT;
    while store.queue_depth().await.unwrap() != 2 {
        assert!(tokio::time::Instant::now() < deadline, "the push's job never finished");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The deployments of `origin`'s Git ledger.
fn in_ledger(origin: &Origin) -> Vec<String> {
    let Ok(head) = origin.repo.refname_to_id(honua_gitops::git::ledger::LEDGER_REF) else { return Vec::new() };
    honua_gitops::git::ledger::read(&origin.repo, head).unwrap().into_iter().map(|e| e.deployment).collect()
}

/// GitHub's content-creation budget of the installation is spent for the next hour: mirroring the
/// deployments to GitHub's Deployments API waits for it. The Git ledger does not: production's record,
/// approved after the mirror started waiting, reaches it all the same.
async fn a_github_that_makes_writes_wait_never_holds_back_the_ledger(store: Arc<dyn Store>) {
    use honua_gitops::store::{now_ms, WriteBudget};
    let ExampleScene { github, origin, service } = ExampleScene::start(store.clone()).await;
    let hour = 3_600_000;
    let spent = WriteBudget { minute_period_ms: hour, minute_burst: 1, hour_period_ms: hour, hour_burst: 1 };
    assert_eq!(store.take_write_budget(7, spent, now_ms()).await.unwrap(), None);
    let (base, all) = service.push_main(&origin, "w-1").await;
    let development = of(&all, "development", &base).id.to_string();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !in_ledger(&origin).contains(&development) {
        assert!(tokio::time::Instant::now() < deadline, "development's record never reached the ledger");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let production = of(&all, "production", &base).id.to_string();
    service.approve(&production, "oncall", true).await;
    service.controller.decided(REPO).await;
    while !in_ledger(&origin).contains(&production) {
        assert!(tokio::time::Instant::now() < deadline, "production's record never reached the ledger");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(github.deployments().is_empty(), "GitHub's Deployments mirror still waits for the budget");
}

async fn plain_git_mode_polls_a_remote_without_any_app(store: Arc<dyn Store>) {
    let origin = Origin::new(&common::examples().join("honua-config"));
    let data = tempfile::tempdir().unwrap();
    let url = format!("file://{}/city/gis-config.git", origin.git_root.display());
    let signer = honua_gitops::controller::deployments::service_signer(store.as_ref()).await.unwrap();
    let mut controller = Controller::new(store.clone(), None, signer, String::new(), data.path().join("m"), None);
    controller.repositories = vec![DeploySource { repository: url.clone(), url: url.clone(), branch: "main".into() }];
    let controller = Arc::new(controller);
    let (_stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(controller.clone().run_worker("w".into(), rx));

    assert_eq!(controller.poll_once().await.unwrap(), 1);
    let all = wait_for_deployments(&store, "deployments from the remote", |all| all.len() == 3).await;
    assert!(all.iter().all(|d| d.repository == url));
    wait_for_branch_head(&store, &url, &origin.main_sha()).await;
    assert_eq!(controller.poll_once().await.unwrap(), 0, "nothing new");

    let merged = origin.merge(&common::examples().join("honua-config-pr"));
    assert_eq!(controller.poll_once().await.unwrap(), 1);
    wait_for_deployments(&store, "the new head's deployments", |all| all.iter().any(|d| d.commit == merged)).await;
}

/// Plain-Git mode with three remotes: one refuses connections, one accepts and never answers (a
/// firewall that drops), one works. Each is polled on its own: the working one is deployed at once,
/// without waiting for the Git timeout of the silent one, and the failures are counted per remote.
async fn one_failing_remote_never_delays_another(store: Arc<dyn Store>) {
    let origin = Origin::new(&common::examples().join("honua-config"));
    let data = tempfile::tempdir().unwrap();
    let good = format!("file://{}/city/gis-config.git", origin.git_root.display());
    // Bound and never listening: the port stays this test's (a port freed for the test could be taken by
    // another test's server meanwhile, which answers, or never does), and a connection to it is refused.
    let refusing = tokio::net::TcpSocket::new_v4().unwrap();
    refusing.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let refused = format!("http://{}/city/refused.git", refusing.local_addr().unwrap());
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}/city/silent.git", silent.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let signer = honua_gitops::controller::deployments::service_signer(store.as_ref()).await.unwrap();
    let mut controller = Controller::new(store.clone(), None, signer, String::new(), data.path().join("m"), None);
    let remote = |url: &str| DeploySource { repository: url.to_string(), url: url.to_string(), branch: "main".into() };
    controller.repositories = vec![remote(&refused), remote(&silent_url), remote(&good)];
    let controller = Arc::new(controller);
    let (_stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(controller.clone().run_worker("w".into(), rx.clone()));
    let _ = honua_gitops::server::metrics::handle();
    tokio::spawn(controller.clone().run_poller(Duration::from_secs(1), rx));
    let started = std::time::Instant::now();
    let all = wait_for_deployments(&store, "deployments from the working remote", |all| all.len() == 3).await;
    assert!(all.iter().all(|d| d.repository == good), "{all:?}");
    assert!(started.elapsed() < Duration::from_secs(30), "waited {:?}: behind the silent remote", started.elapsed());
    let metrics = honua_gitops::server::metrics::handle().render();
    let failures = format!("honua_poll_failures_total{{target=\"git:{refused}#main\"}}");
    assert!(metrics.contains(&failures), "{failures} missing from:\n{metrics}");
    held.abort();
    drop(refusing);
}

async fn a_rollback_redeploys_the_previous_commit_pauses_and_opens_a_revert_pr(store: Arc<dyn Store>) {
    let ExampleScene { github, origin, service } = ExampleScene::start(store.clone()).await;
    let api = Api { url: service.url.clone(), client: reqwest::Client::new() };
    let approver = Api::token(&store, "oncall", Role::Approver, None).await;
    let viewer = Api::token(&store, "dashboard", Role::Viewer, None).await;
    let (base, all) = service.push_main(&origin, "r-1").await;
    complete(&store, &of(&all, "development", &base).id).await;
    let rollback = "/api/v1/environments/development/rollback";
    let (status, body) = api.call("POST", rollback, Some(&approver), None).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("no_rollback_target")), "{body}");

    // A change lands and completes in development; it turns out bad.
    let merged = origin.merge(&common::examples().join("honua-config-pr"));
    service.deliver("push", "r-2", common::push_payload(&base, &merged, "bob")).await;
    let all = wait_for_deployments(&store, "the merge in development", |all| {
        all.iter().any(|d| d.environment == "development" && d.commit == merged)
    })
    .await;
    let bad = of(&all, "development", &merged).id.clone();
    complete(&store, &bad).await;

    assert_eq!(api.call("POST", rollback, Some(&viewer), None).await.0, 403);
    let (status, body) = api.call("POST", rollback, Some(&approver), Some(json!({}))).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!((body["commit"].as_str(), body["state"].as_str()), (Some(base.as_str()), Some("approved")));
    assert_eq!((body["cause"].as_str(), body["from_commit"].as_str()), (Some("rollback"), Some(merged.as_str())));
    assert_eq!(body["approvals"][0]["actor"], "oncall");
    let (_, key) = api.call("GET", "/api/v1/signing-key", None, None).await;
    let key = parse_public_key(key["public_key"].as_str().unwrap()).unwrap();
    verify(&key, &serde_json::from_value(body["signed"].clone()).unwrap()).unwrap();
    let rollback_id = body["id"].as_str().unwrap().to_string();

    // GitHub is brought back to match: a revert PR whose commit carries the old tree, on top of main.
    let failed =
        store.audit(0, None, 1000).await.unwrap().into_iter().find(|e| e.action == "rollback.revert_pr_failed");
    assert!(failed.is_none(), "{failed:?}");
    github.wait_for(WAIT, "the revert pull request", |gh| !gh.opened_pulls().is_empty()).await;
    let (pull, commit) = github.opened_pulls().remove(0);
    assert_eq!(pull["base"], "main");
    assert_eq!(pull["head"], format!("honua/rollback-{rollback_id}").as_str());
    let body = pull["body"].as_str().unwrap_or_default();
    assert!(body.contains(&format!("by `oncall`: deployment `{rollback_id}`")), "{body}");
    let base_tree = origin.repo.find_commit(git2::Oid::from_str(&base).unwrap()).unwrap().tree_id().to_string();
    assert_eq!(commit["tree"], base_tree.as_str());
    assert_eq!(commit["parents"][0], merged.as_str());

    // The broken commit is not re-deployed by itself: the same head again plans nothing for development.
    complete(&store, &rollback_id).await;
    service.deliver("push", "r-3", common::push_payload(&merged, &merged, "bob")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dev: Vec<_> = store
        .deployments(&DeploymentFilter { environment: Some("development".into()), limit: 100, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(dev.len(), 3, "{dev:#?}");

    // A newer commit lands: automatic deployments resume.
    let fixed = common::retitled(&common::examples().join("honua-config"), "development", "Fixed");
    let newer = origin.merge(fixed.path());
    service.deliver("push", "r-4", common::push_payload(&merged, &newer, "bob")).await;
    wait_for_deployments(&store, "development resumes", |all| {
        all.iter().any(|d| d.environment == "development" && d.commit == newer)
    })
    .await;
    let audit = store.audit(0, None, 1000).await.unwrap();
    assert!(audit.iter().any(|e| e.action == "environment.pause"), "{audit:#?}");
    assert!(audit.iter().any(|e| e.action == "environment.resume"), "{audit:#?}");
}

/// A push GitHub delivered before the rollback was asked for, whose job runs only after it (a busy
/// queue, a retry), is not the newer commit that lifts the pause: development stays on the rollback
/// while the other environments plan the commit. A push delivered after the rollback lifts it.
async fn a_push_delivered_before_a_rollback_leaves_its_pause_in_place(store: Arc<dyn Store>) {
    let ExampleScene { github: _github, origin, service } = ExampleScene::start_idle(store.clone()).await;
    let controller = service.controller.clone();
    let source = DeploySource { repository: REPO.into(), url: controller.mirrors.url_of(REPO), branch: "main".into() };
    let plan = |sha: String| {
        let (controller, source) = (controller.clone(), source.clone());
        async move {
            let now = Utc::now();
            controller.pushes().deploy_commit(&source, &sha, now.timestamp_millis(), None, "bob", now).await.unwrap()
        }
    };
    let base = origin.main_sha();
    complete(&store, &of(&plan(base.clone()).await, "development", &base).id).await;
    let merged = origin.merge(&common::examples().join("honua-config-pr"));
    complete(&store, &of(&plan(merged.clone()).await, "development", &merged).id).await;

    // Another commit lands and GitHub delivers its push; no worker has taken it yet when the rollback
    // is asked for.
    let landed = common::retitled(&common::examples().join("honua-config"), "development", "Landed");
    let landed = origin.merge(landed.path());
    service.deliver("push", "b-1", common::push_payload(&merged, &landed, "bob")).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let rollback = controller.rollbacks().rollback(None, "development", None, "oncall", Utc::now()).await.unwrap();
    assert_eq!(rollback.commit.as_str(), base);

    service.start_worker("w1");
    let all = wait_for_deployments(&store, "the landed commit in staging", |all| {
        all.iter().any(|d| d.environment == "staging" && d.commit == landed)
    })
    .await;
    assert!(
        !all.iter().any(|d| d.environment == "development" && d.commit == landed),
        "a push delivered before the rollback lifted its pause: {all:#?}"
    );
    assert!(store.environment_pause(REPO, "development").await.unwrap().is_some(), "still paused");

    // A commit whose push comes after the rollback is the newer one: development deploys it.
    let fixed = common::retitled(&common::examples().join("honua-config"), "development", "Fixed");
    let fixed = origin.merge(fixed.path());
    service.deliver("push", "b-2", common::push_payload(&landed, &fixed, "bob")).await;
    wait_for_deployments(&store, "development resumes", |all| {
        all.iter().any(|d| d.environment == "development" && d.commit == fixed)
    })
    .await;
    assert!(store.environment_pause(REPO, "development").await.unwrap().is_none(), "the pause is lifted");
}

/// Three commits completed in development, then two rollbacks: the first restores the middle one, the
/// second the first (never forward to the commit just rolled back), a third finds nothing earlier. The
/// preview says what each restores before it is asked for; the pause is in the environment's view
/// until `resume` lifts it, which plans the branch head again and is audited.
async fn rolling_back_twice_goes_further_back_and_resume_lifts_the_pause(store: Arc<dyn Store>) {
    let ExampleScene { github: _github, origin, service } = ExampleScene::start(store.clone()).await;
    let api = Api { url: service.url.clone(), client: reqwest::Client::new() };
    let approver = Api::token(&store, "oncall", Role::Approver, None).await;
    let viewer = Api::token(&store, "dashboard", Role::Viewer, None).await;
    let in_dev = |all: &[Deployment], commit: &str| {
        all.iter().find(|d| d.environment == "development" && d.commit == commit).map(|d| d.id.to_string())
    };
    let c0 = origin.main_sha();
    service.deliver("push", "t-1", common::push_payload(&"0".repeat(40), &c0, "alice")).await;
    let all = wait_for_deployments(&store, "c0", |all| in_dev(all, &c0).is_some()).await;
    complete(&store, &in_dev(&all, &c0).unwrap()).await;
    let c1 = origin.merge(&common::examples().join("honua-config-pr"));
    service.deliver("push", "t-2", common::push_payload(&c0, &c1, "bob")).await;
    let all = wait_for_deployments(&store, "c1", |all| in_dev(all, &c1).is_some()).await;
    complete(&store, &in_dev(&all, &c1).unwrap()).await;
    let newer = common::retitled(&common::examples().join("honua-config-pr"), "development", "Newer");
    let c2 = origin.merge(newer.path());
    service.deliver("push", "t-3", common::push_payload(&c1, &c2, "bob")).await;
    let all = wait_for_deployments(&store, "c2", |all| in_dev(all, &c2).is_some()).await;
    let d2 = in_dev(&all, &c2).unwrap();
    complete(&store, &d2).await;

    let path = "/api/v1/environments/development/rollback";
    let (status, preview) = api.call("GET", path, Some(&viewer), None).await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(
        (preview["current"]["id"].as_str(), preview["target"]["commit"].as_str()),
        (Some(d2.as_str()), Some(c1.as_str()))
    );
    assert!(preview["plan"].as_str().unwrap().contains("development"), "{preview}");
    let (status, first) = api.call("POST", path, Some(&approver), None).await;
    assert_eq!((status, first["commit"].as_str()), (201, Some(c1.as_str())), "{first}");
    complete(&store, first["id"].as_str().unwrap()).await;

    // The second rollback goes to c0: c2 was rolled back, and going there would roll forward.
    let (_, preview) = api.call("GET", path, Some(&viewer), None).await;
    assert_eq!(preview["target"]["commit"].as_str(), Some(c0.as_str()), "{preview}");
    let (status, second) = api.call("POST", path, Some(&approver), None).await;
    assert_eq!((status, second["commit"].as_str()), (201, Some(c0.as_str())), "{second}");
    let second_id = second["id"].as_str().unwrap().to_string();
    complete(&store, &second_id).await;
    let (status, third) = api.call("POST", path, Some(&approver), None).await;
    assert_eq!((status, third["error"].as_str()), (409, Some("no_rollback_target")), "{third}");
    assert!(third["message"].as_str().unwrap().contains("nothing earlier"), "{third}");

    // The pause is part of the environment, not only of the audit log.
    let (_, views) = api.call("GET", "/api/v1/environments", Some(&viewer), None).await;
    let dev = views["environments"].as_array().unwrap().iter().find(|e| e["environment"] == "development").unwrap();
    assert_eq!(dev["paused"]["deployment"].as_str(), Some(second_id.as_str()), "{dev:#}");
    // And on the overview page.
    let request = reqwest::Client::new().get(format!("{}/", service.url));
    let page = common::text_of(request.header("cookie", format!("honua_session={viewer}"))).await;
    assert!(
        page.contains("after the rollback") && page.contains(&second_id) && page.contains("honua resume development"),
        "{page}"
    );

    assert_eq!(api.call("POST", "/api/v1/environments/development/resume", Some(&viewer), None).await.0, 403);
    let (status, resumed) = api.call("POST", "/api/v1/environments/development/resume", Some(&approver), None).await;
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(resumed["paused"]["deployment"].as_str(), Some(second_id.as_str()));
    assert_eq!(resumed["deployment"]["commit"].as_str(), Some(c2.as_str()), "the head is planned again: {resumed}");
    let (_, views) = api.call("GET", "/api/v1/environments", Some(&viewer), None).await;
    let dev = views["environments"].as_array().unwrap().iter().find(|e| e["environment"] == "development").unwrap();
    assert!(dev["paused"].is_null(), "{dev:#}");
    let (status, again) = api.call("POST", "/api/v1/environments/development/resume", Some(&approver), None).await;
    assert_eq!((status, again["error"].as_str()), (409, Some("not_paused")), "{again}");
    let audit = store.audit(0, None, 1000).await.unwrap();
    assert!(audit.iter().any(|e| e.action == "environment.resume" && e.actor == "oncall"), "{audit:#?}");
}

/// A repository whose default branch is `trunk`: its pushes deploy, a rollback's revert pull request
/// targets `trunk`, and `resume` plans `trunk`'s head, the branch the mirror recorded as the remote's
/// HEAD. A mirror that has not recorded it (one made by an earlier version) asks GitHub; a branch that
/// cannot be fetched leaves the environment paused.
async fn a_repository_whose_default_branch_is_not_main_rolls_back_and_resumes_on_that_branch(store: Arc<dyn Store>) {
    let github = FakeGithub::start().await;
    github.set_default_branch(REPO, "trunk");
    let origin = Origin::on_branch(&common::examples().join("honua-config"), "trunk");
    let service = Service::start(&github, &origin, store.clone()).await;
    let api = Api { url: service.url.clone(), client: reqwest::Client::new() };
    let approver = Api::token(&store, "oncall", Role::Approver, None).await;
    let base = origin.main_sha();
    service.deliver("push", "b-1", common::push_payload_on("trunk", &"0".repeat(40), &base, "alice")).await;
    let all = wait_for_deployments(&store, "the first push's three deployments", |all| all.len() == 3).await;
    complete(&store, &of(&all, "development", &base).id).await;
    let merged = origin.merge(&common::examples().join("honua-config-pr"));
    service.deliver("push", "b-2", common::push_payload_on("trunk", &base, &merged, "bob")).await;
    let all = wait_for_deployments(&store, "the merge in development", |all| {
        all.iter().any(|d| d.environment == "development" && d.commit == merged)
    })
    .await;
    complete(&store, &of(&all, "development", &merged).id).await;

    let (status, rollback) = api.call("POST", "/api/v1/environments/development/rollback", Some(&approver), None).await;
    assert_eq!((status, rollback["commit"].as_str()), (201, Some(base.as_str())), "{rollback}");
    let failed =
        store.audit(0, None, 1000).await.unwrap().into_iter().find(|e| e.action == "rollback.revert_pr_failed");
    assert!(failed.is_none(), "{failed:?}");
    github.wait_for(WAIT, "the revert pull request", |gh| !gh.opened_pulls().is_empty()).await;
    let (pull, commit) = github.opened_pulls().remove(0);
    assert_eq!(pull["base"], "trunk", "{pull}");
    assert_eq!(commit["parents"][0], merged.as_str(), "on top of trunk's head");
    complete(&store, rollback["id"].as_str().unwrap()).await;
    // The rollback's record reaches the Git ledger in the background, through a fetch that records the
    // default branch again (a CI run failed so: resume found `trunk` recorded again and answered 200): the
    // mirror forgets it once that is done.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !store.unpublished_records(REPO, 10).await.unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the rollback's record never reached the ledger");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    service.wait_until_idle().await;

    // The mirror forgets which branch is the default, as a mirror made before it was recorded.
    let url = service.controller.mirrors.url_of(REPO);
    let mirror = service.controller.mirrors.run(&url, |m| Ok::<_, GitError>(m.path().to_path_buf())).await.unwrap();
    let bare = git2::Repository::open_bare(&mirror).unwrap();
    bare.find_reference("refs/mirror/default-branch").unwrap().delete().unwrap();
    // GitHub first names a branch the remote does not have: nothing is lifted, the operator can ask again.
    github.set_default_branch(REPO, "renamed");
    let resume = "/api/v1/environments/development/resume";
    let (status, refused) = api.call("POST", resume, Some(&approver), None).await;
    assert_eq!(status, 502, "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("refs/heads/renamed"), "{refused}");
    assert!(store.environment_pause(REPO, "development").await.unwrap().is_some(), "still paused");
    github.set_default_branch(REPO, "trunk");
    let (status, resumed) = api.call("POST", resume, Some(&approver), None).await;
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(resumed["deployment"]["commit"].as_str(), Some(merged.as_str()), "trunk's head again: {resumed}");
}

/// A webhook receiver: records every JSON body; answers 500 to the first `fail_first` requests.
async fn receiver(fail_first: usize) -> (String, Arc<std::sync::Mutex<Vec<Value>>>) {
    let got = Arc::new(std::sync::Mutex::new(Vec::new()));
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (g, c) = (got.clone(), calls.clone());
    let app = axum::Router::new().fallback(move |axum::Json(body): axum::Json<Value>| {
        let (g, c) = (g.clone(), c.clone());
        async move {
            if c.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < fail_first {
                return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
            }
            g.lock().unwrap().push(body);
            axum::http::StatusCode::OK
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

async fn the_policy_notifies_approvals_required_and_completions_and_records_what_it_cannot_send(store: Arc<dyn Store>) {
    let (slack, slack_got) = receiver(0).await;
    let (hook, hook_got) = receiver(1).await;
    let tree = tempfile::tempdir().unwrap();
    common::copy_tree(&common::examples().join("honua-config"), tree.path());
    let policy = tree.path().join(".gitops/deployment-policy.yaml");
    let text = std::fs::read_to_string(&policy).unwrap();
    let text = text.replace(
        "      onApprovalRequired:\n        - {type: slack, channel: \"#deployments\"}\n",
        &format!("      onApprovalRequired:\n        - {{type: slack, channel: \"#deployments\", webhookUrl: \"{slack}/hook\"}}\n        - {{type: email, recipients: [ops@example.org]}}\n"),
    );
    let text = text.replace(
        "  development:\n    autoApprove: true\n",
        &format!("  development:\n    autoApprove: true\n    notifications:\n      onDeploymentCompleted:\n        - {{type: webhook, url: \"{hook}/events\"}}\n"),
    );
    assert!(text.contains(&slack) && text.contains(&hook), "the example policy changed: {text}");
    std::fs::write(&policy, text).unwrap();
    let origin = Origin::new(tree.path());
    let github = FakeGithub::start().await;
    let service = Service::start(&github, &origin, store.clone()).await;
    let (base, all) = service.push_main(&origin, "n-1").await;
    let prod = of(&all, "production", &base).id.clone();

    // Production awaits approval: Slack hears of it, in its channel.
    let deadline = tokio::time::Instant::now() + WAIT;
    while slack_got.lock().unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "Slack was never called");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let message = slack_got.lock().unwrap()[0].clone();
    assert_eq!(message["channel"], "#deployments");
    let text = message["text"].as_str().unwrap();
    assert!(
        text.contains(prod.as_str()) && text.contains("awaits approval") && text.contains("/honua approve production"),
        "{text}"
    );
    // E-mail has no transport here: recorded, with the reason, not dropped.
    let sent = store.notifications_of(&prod).await.unwrap();
    let email = sent.iter().find(|n| n.kind == "email").unwrap();
    assert_eq!(email.state, "undeliverable");
    assert!(email.last_error.as_deref().unwrap().contains("no transport configured for `email`"));
    assert!(store.audit(0, Some(&prod), 100).await.unwrap().iter().any(|e| e.action == "notification.undeliverable"));

    // Development completes: the generic webhook gets it; its first answer is a 500, so the message
    // waits for a retry with the error recorded, and is not lost.
    let dev = of(&all, "development", &base).id.clone();
    complete(&store, &dev).await;
    service.controller.publish_decisions(REPO).await;
    let queued = store.notifications_of(&dev).await.unwrap();
    let completed: Vec<_> = queued.iter().filter(|n| n.event == "onDeploymentCompleted").collect();
    assert_eq!(completed.len(), 1, "{queued:?}");
    assert_eq!((completed[0].state.as_str(), completed[0].attempts), ("pending", 1));
    assert_eq!(completed[0].last_error.as_deref(), Some("HTTP 500"));
    assert!(hook_got.lock().unwrap().is_empty());
    // Nothing else was queued twice by the second pass.
    service.controller.publish_decisions(REPO).await;
    assert_eq!(store.notifications_of(&dev).await.unwrap().len(), 1);
    assert_eq!(store.notifications_of(&prod).await.unwrap().len(), 2);
}

async fn agents_long_poll_their_desired_state_and_report_phases(store: Arc<dyn Store>) {
    let ExampleScene { github: _github, origin, service } = ExampleScene::start(store.clone()).await;
    let api = Api { url: service.url.clone(), client: reqwest::Client::new() };
    let dev_agent = Api::token(&store, "dev-agent-1", Role::Agent, Some("development")).await;
    let prod_agent = Api::token(&store, "prod-agent-1", Role::Agent, Some("production")).await;
    let approver = Api::token(&store, "oncall", Role::Approver, None).await;
    let desired = "/api/v1/agent/desired?environment=development";

    // Nothing approved yet; an agent of another environment is refused.
    assert_eq!(api.call("GET", desired, Some(&dev_agent), None).await.0, 204);
    assert_eq!(api.call("GET", desired, Some(&prod_agent), None).await.0, 403);
    assert_eq!(api.call("GET", desired, Some(&approver), None).await.0, 403);

    // An agent waits; the push's approval reaches it without waiting out the timeout.
    let waiting = {
        let (url, token) = (format!("{}{desired}&wait=30", service.url), dev_agent.clone());
        tokio::spawn(async move {
            let resp = reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .header("If-None-Match", "\"none\"")
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap_or(Value::Null))
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let base = origin.main_sha();
    service.deliver("push", "a-1", common::push_payload(&"0".repeat(40), &base, "alice")).await;
    // Had nothing changed within the wait, the answer would be 304: the body is the decision.
    let (status, body) = waiting.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["commit"], base.as_str());
    let id = body["deployment"].as_str().unwrap().to_string();
    let (_, key) = api.call("GET", "/api/v1/signing-key", None, None).await;
    let key = parse_public_key(key["public_key"].as_str().unwrap()).unwrap();
    verify(&key, &serde_json::from_value(body.clone()).unwrap()).unwrap();

    // Unchanged: 304 with the same ETag at once when not waiting.
    let resp = api.client.get(format!("{}{desired}", service.url)).bearer_auth(&dev_agent).send().await.unwrap();
    let etag = resp.headers()["etag"].to_str().unwrap().to_string();
    let resp = api
        .client
        .get(format!("{}{desired}", service.url))
        .bearer_auth(&dev_agent)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 304);

    // Phases: applying, then completed; a re-sent report changes nothing; prod's agent cannot report dev.
    let report = |phase: &str| json!({"deployment": id, "phase": phase, "message": format!("{phase} ok")});
    for phase in ["fetching", "swapping", "completed", "completed"] {
        let (status, body) = api.call("POST", "/api/v1/agent/report", Some(&dev_agent), Some(report(phase))).await;
        assert_eq!(status, 200, "{phase}: {body}");
    }
    assert_eq!(api.call("POST", "/api/v1/agent/report", Some(&prod_agent), Some(report("failed"))).await.0, 403);
    assert_eq!(api.call("POST", "/api/v1/agent/report", Some(&approver), Some(report("failed"))).await.0, 403);
    let (status, body) = api.call("POST", "/api/v1/agent/report", Some(&dev_agent), Some(report("exploded"))).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("bad_report")));
    let (status, body) = api.call("POST", "/api/v1/agent/report", Some(&dev_agent), Some(report("failed"))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("wrong_state")),
        "a completed deployment does not fail later"
    );
    let d = store.deployment(&id).await.unwrap().unwrap();
    assert_eq!(d.state, DeploymentState::Completed);
    let states: Vec<_> = store
        .audit(0, Some(&id), 100)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| e.to_state.map(|s| s.as_str()))
        .collect();
    assert_eq!(states, ["pending", "approved", "applying", "completed"]);
    let (_, detail) = api.call("GET", &format!("/api/v1/deployments/{id}"), Some(&approver), None).await;
    let phases: Vec<_> =
        detail["reports"].as_array().unwrap().iter().map(|r| r["phase"].as_str().unwrap().to_string()).collect();
    assert_eq!(phases, ["fetching", "swapping", "completed"], "one record per phase");
    // Heartbeats carry commit, health, version and sync status; health and sync are separate axes.
    let beat = |health: &str, sync: &str, drifted: serde_json::Value| {
        serde_json::json!({
            "deployment": id, "commit": d.commit, "sequence": d.sequence, "health": health,
            "version": "0.1.0", "sync": sync, "drifted": drifted, "last_result": format!("{id} completed"),
        })
    };
    let (status, _) =
        api.call("POST", "/api/v1/agent/heartbeat", Some(&dev_agent), Some(beat("healthy", "synced", json!([])))).await;
    assert_eq!(status, 204);
    let (_, agents) = api.call("GET", "/api/v1/agents", Some(&approver), None).await;
    let agent = agents["agents"].as_array().unwrap().iter().find(|a| a["name"] == "dev-agent-1").unwrap().clone();
    assert_eq!((agent["environment"].as_str(), agent["last_phase"].as_str()), (Some("development"), Some("completed")));
    assert_eq!((agent["stale"].as_bool(), agent["healthy"].as_bool()), (Some(false), Some(true)));
    assert_eq!((agent["commit"].as_str(), agent["version"].as_str()), (Some(d.commit.as_str()), Some("0.1.0")));
    // A hand edit: healthy but drifted, audited once with the paths, whatever the number of beats.
    for _ in 0..2 {
        let drifted = beat("healthy", "drifted", json!(["metadata.json"]));
        let (status, _) = api.call("POST", "/api/v1/agent/heartbeat", Some(&dev_agent), Some(drifted)).await;
        assert_eq!(status, 204);
    }
    let (status, env) = api.call("GET", "/api/v1/environments/development", Some(&approver), None).await;
    assert_eq!(status, 200, "{env}");
    let view = &env["repositories"][0];
    assert_eq!((view["sync"].as_str(), view["health"].as_str()), (Some("drifted"), Some("healthy")), "{env}");
    assert_eq!(view["agents"][0]["drifted"], json!(["metadata.json"]));
    assert_eq!(view["current"]["id"].as_str(), Some(id.as_str()));
    let drift: Vec<_> =
        store.audit(0, None, 500).await.unwrap().into_iter().filter(|e| e.action == "agent.drift").collect();
    assert_eq!(drift.len(), 1, "{drift:?}");
    assert!(drift[0].message.contains("metadata.json"), "{}", drift[0].message);
    let (status, _) = api.call("GET", "/api/v1/environments/nowhere", Some(&approver), None).await;
    assert_eq!(status, 404);
    let (status, _) =
        api.call("POST", "/api/v1/agent/heartbeat", Some(&approver), Some(beat("healthy", "synced", json!([])))).await;
    assert_eq!(status, 403, "only agents send heartbeats");
    // An agent not heard of for more than three check-ins is stale, and never shown healthy.
    let long_ago = honua_gitops::store::now_ms() - honua_gitops::server::api::AGENT_STALE_AFTER_MS - 1_000;
    store.agent_seen("dev-agent-2", "development", long_ago).await.unwrap();
    let (_, envs) = api.call("GET", "/api/v1/environments", Some(&approver), None).await;
    let development =
        envs["environments"].as_array().unwrap().iter().find(|e| e["environment"] == "development").unwrap();
    let quiet = development["agents"].as_array().unwrap().iter().find(|a| a["name"] == "dev-agent-2").unwrap();
    assert_eq!((quiet["stale"].as_bool(), quiet["healthy"].as_bool()), (Some(true), Some(false)));
}

/// The example with production's `approvalTimeout` set, served, and main pushed: production waits for
/// its approval.
struct Waiting {
    github: FakeGithub,
    origin: Origin,
    service: Service,
    api: Api,
    /// An approver's token.
    approver: String,
    base: String,
    prod: Deployment,
    /// Every deployment of the push.
    all: Vec<Deployment>,
    _tree: tempfile::TempDir,
}

async fn production_waiting(store: &Arc<dyn Store>, timeout: &str) -> Waiting {
    let tree = common::example_with_policy("production", &format!("    approvalTimeout: {timeout}\n"));
    let github = FakeGithub::start().await;
    let origin = Origin::new(tree.path());
    let service = Service::start(&github, &origin, store.clone()).await;
    let api = Api { url: service.url.clone(), client: reqwest::Client::new() };
    let approver = Api::token(store, "mike", Role::Approver, None).await;
    let (base, all) = service.push_main(&origin, "first-push").await;
    let prod = of(&all, "production", &base).clone();
    Waiting { github, origin, service, api, approver, base, prod, all, _tree: tree }
}

/// The approver approves `d` through the API, acknowledging breaking changes.
async fn approve_by_api(api: &Api, approver: &str, d: &Deployment) -> (u16, Value) {
    let path = format!("/api/v1/deployments/{}/approve", d.id);
    api.call("POST", &path, Some(approver), Some(json!({"breaking": true}))).await
}

/// Waits until GitHub's mirror of deployment `id` is `inactive` (as an expired one becomes).
async fn inactive_on_github(github: &FakeGithub, id: &str) {
    let inactive = |gh: &FakeGithub| gh.deployment_status(id).as_deref() == Some("inactive");
    github.wait_for(WAIT, &format!("{id} inactive on GitHub"), inactive).await;
}

/// Through the API, on the service's own clock: an approval after the deadline is refused with `expired`,
/// and the expiry reaches GitHub's mirror without waiting for another decision.
async fn a_late_approval_through_the_api_is_refused_and_the_expiry_published(store: Arc<dyn Store>) {
    let Waiting { github, service: _service, origin: _origin, api, approver, prod, _tree, .. } =
        production_waiting(&store, "1s").await;
    let deadline = prod.expires_at.expect("production waits for an approval");
    while Utc::now().timestamp_millis() <= deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = approve_by_api(&api, &approver, &prod).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("expired")), "{body}");
    assert!(body["message"].as_str().unwrap_or_default().contains("push again"), "{body}");
    assert_eq!(store.deployment(&prod.id).await.unwrap().unwrap().state, DeploymentState::Expired);
    inactive_on_github(&github, &prod.id).await;
}

/// A deployment that waits for its approval past the environment's `approvalTimeout` expires: an approval
/// that comes late expires it on the spot and is refused (`expired`, saying how to plan it anew), the sweep
/// expires the others (audited; GitHub's mirror goes inactive), and what needs no approval never expires.
async fn a_deployment_waiting_past_its_approval_timeout_expires(store: Arc<dyn Store>) {
    let Waiting { github, origin, service, api, approver, base, prod, all, _tree: tree } =
        production_waiting(&store, "1h").await;
    let since = |ms: i64| DateTime::from_timestamp_millis(ms).unwrap();
    assert_eq!((prod.state, prod.expires_at), (DeploymentState::AwaitingApproval, Some(prod.created_at + 3_600_000)));
    assert!(all.iter().filter(|d| d.environment != "production").all(|d| d.expires_at.is_none()), "{all:#?}");
    let (_, shown) = api.call("GET", &format!("/api/v1/deployments/{}", prod.id), Some(&approver), None).await;
    assert_eq!(shown["expires_at"].as_str().map(|t| at(t).timestamp_millis()), prod.expires_at, "{shown}");

    // Not before its time; then a late approval expires it, and is refused.
    assert_eq!(service.controller.expire_overdue(since(prod.created_at + 3_599_000)).await.unwrap(), 0);
    let decisions = service.controller.decisions();
    let late = decisions.approve(&prod.id, "mike", Via::Api, true, since(prod.created_at + 7_200_000)).await;
    let refused = late.unwrap_err().to_string();
    assert!(refused.contains("expired at") && refused.contains("push again"), "{refused}");
    assert_eq!(store.deployment(&prod.id).await.unwrap().unwrap().state, DeploymentState::Expired);
    let (status, body) = approve_by_api(&api, &approver, &prod).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("expired")), "{body}");
    let trail = store.audit(0, Some(&prod.id), 100).await.unwrap();
    let expiry = trail.iter().find(|e| e.to_state == Some(DeploymentState::Expired)).expect("the expiry is audited");
    assert_eq!(expiry.actor, "service");
    assert!(expiry.message.contains("approvalTimeout"), "{}", expiry.message);

    // A newer commit waits again; the sweep expires it once its hour is up, and only then.
    let later = common::retitled(tree.path(), "production", "Later");
    let newer = origin.merge(later.path());
    service.deliver("push", "x-2", common::push_payload(&base, &newer, "alice")).await;
    let all = wait_for_deployments(&store, "the newer production deployment", |all| {
        all.iter().any(|d| d.environment == "production" && d.commit == newer)
    })
    .await;
    let waiting = of(&all, "production", &newer).clone();
    let deadline = waiting.expires_at.expect("it waits for an approval, so it may expire");
    assert_eq!(service.controller.expire_overdue(since(deadline - 1)).await.unwrap(), 0);
    assert_eq!(service.controller.expire_overdue(since(deadline)).await.unwrap(), 1);
    assert_eq!(service.controller.expire_overdue(since(deadline + 60_000)).await.unwrap(), 0, "once");
    assert_eq!(store.deployment(&waiting.id).await.unwrap().unwrap().state, DeploymentState::Expired);
    inactive_on_github(&github, &waiting.id).await;
}

on_both_stores!(
    one_failing_remote_never_delays_another,
    agents_long_poll_their_desired_state_and_report_phases,
    the_policy_notifies_approvals_required_and_completions_and_records_what_it_cannot_send,
    a_rollback_redeploys_the_previous_commit_pauses_and_opens_a_revert_pr,
    a_push_delivered_before_a_rollback_leaves_its_pause_in_place,
    rolling_back_twice_goes_further_back_and_resume_lifts_the_pause,
    a_repository_whose_default_branch_is_not_main_rolls_back_and_resumes_on_that_branch,
    a_merge_deploys_development_and_staging_and_production_waits_for_an_approver,
    a_newer_merge_supersedes_a_deployment_that_has_not_started,
    a_late_push_of_an_older_commit_never_supersedes_a_newer_one,
    a_push_waits_while_another_replica_plans_the_repository,
    a_rollback_waits_while_a_push_of_its_repository_is_planned,
    a_push_whose_webhook_was_lost_is_deployed_by_polling,
    plain_git_mode_polls_a_remote_without_any_app,
    pull_requests_waiting_on_github_never_hold_back_a_merges_deployments,
    a_github_that_makes_writes_wait_never_holds_back_the_ledger,
    a_deployment_waiting_past_its_approval_timeout_expires,
    a_late_approval_through_the_api_is_refused_and_the_expiry_published,
);

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Production's windows: weekdays from 09:00 UTC, and a holiday blackout (examples/honua-config).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_deployment_outside_its_window_starts_when_the_window_opens() {
    let db = common::db::sqlite().await;
    let store = db.store.clone();
    let origin = Origin::new(&common::examples().join("honua-config"));
    let data = tempfile::tempdir().unwrap();
    let url = format!("file://{}/city/gis-config.git", origin.git_root.display());
    let signer = honua_gitops::controller::deployments::service_signer(store.as_ref()).await.unwrap();
    let controller = Controller::new(store.clone(), None, signer, String::new(), data.path().join("m"), None);
    let source = DeploySource { repository: url.clone(), url, branch: "main".into() };

    let saturday = at("2026-11-28T10:00:00Z");
    let created =
        controller.pushes().deploy_commit(&source, &origin.main_sha(), 0, None, "alice", saturday).await.unwrap();
    let prod = created.iter().find(|d| d.environment == "production").unwrap();
    controller.decisions().approve(&prod.id, "mike", Via::Api, false, saturday).await.unwrap();
    assert!(controller.startable(&source.repository, "production", saturday).await.unwrap().is_none(), "waits");
    assert!(controller
        .startable(&source.repository, "production", at("2026-11-30T08:59:00Z"))
        .await
        .unwrap()
        .is_none());
    let monday = controller.startable(&source.repository, "production", at("2026-11-30T09:00:00Z")).await.unwrap();
    assert_eq!(monday.map(|d| d.id), Some(prod.id.clone()), "starts when the window opens");
    let holidays = at("2026-12-22T10:00:00Z");
    assert!(controller.startable(&source.repository, "production", holidays).await.unwrap().is_none(), "blackout");
    // Development has no windows: it may start at once, any day.
    assert!(controller.startable(&source.repository, "development", saturday).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_every_route_with_its_errors() {
    let db = common::db::sqlite().await;
    let ExampleScene { github: _github, origin: _origin, service } = ExampleScene::start(db.store.clone()).await;
    let api = Api { url: service.url.clone(), client: reqwest::Client::new() };
    let (status, doc) = api.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for (path, method) in [
        ("/api/v1/signing-key", "get"),
        ("/api/v1/environments", "get"),
        ("/api/v1/deployments", "get"),
        ("/api/v1/deployments/{id}", "get"),
        ("/api/v1/deployments/{id}/approve", "post"),
        ("/api/v1/deployments/{id}/reject", "post"),
        ("/api/v1/environments/{env}/rollback", "post"),
        ("/api/v1/environments/{env}/rollback", "get"),
        ("/api/v1/environments/{env}/resume", "post"),
        ("/api/v1/tokens", "get"),
        ("/api/v1/tokens/{name}/revoke", "post"),
        ("/api/v1/tokens/{name}/rotate", "post"),
        ("/api/v1/audit", "get"),
        ("/api/v1/agents", "get"),
        ("/api/v1/agent/desired", "get"),
        ("/api/v1/agent/report", "post"),
    ] {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} missing from the document");
        if path != "/api/v1/signing-key" {
            assert!(op["responses"]["401"].is_object(), "{method} {path}: 401 undocumented");
        }
    }
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    // Every documented path answers (no route is documented without existing): unauthenticated calls
    // are refused, not 404.
    for path in ["/api/v1/environments", "/api/v1/deployments", "/api/v1/audit"] {
        assert_eq!(api.call("GET", path, None, None).await.0, 401, "{path}");
    }
}

/// The schema the OpenAPI document gives for `method path`'s `status` answer, with the document's
/// components beside it so that its `$ref`s resolve.
fn documented(doc: &Value, path: &str, method: &str, status: &str) -> Value {
    let schema = doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"].clone();
    assert!(schema["$ref"].is_string(), "{method} {path} {status}: documented as {schema}, not a named schema");
    json!({ "$ref": schema["$ref"], "components": doc["components"] })
}

fn conforms(schema: &Value, answer: &Value) -> Result<(), String> {
    let validator = jsonschema::validator_for(schema).map_err(|e| format!("the schema does not compile: {e}"))?;
    let errors: Vec<String> = validator.iter_errors(answer).map(|e| format!("{e} at {}", e.instance_path())).collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// The example scene after main's first push, with the API's OpenAPI document: what the API contract
/// tests start from.
struct Pushed {
    scene: ExampleScene,
    api: Api,
    doc: Value,
    /// Main's commit, and its development and production deployments.
    base: String,
    dev: String,
    prod: String,
}

impl Pushed {
    async fn start(store: &Arc<dyn Store>) -> Pushed {
        let scene = ExampleScene::start(store.clone()).await;
        let api = Api { url: scene.service.url.clone(), client: reqwest::Client::new() };
        let (_, doc) = api.call("GET", "/api/v1/openapi.json", None, None).await;
        let (base, all) = scene.service.push_main(&scene.origin, "first-push").await;
        let dev = of(&all, "development", &base).id.to_string();
        let prod = of(&all, "production", &base).id.to_string();
        Pushed { scene, api, doc, base, dev, prod }
    }
}

/// Every body the API answers is what its OpenAPI document says, checked with a JSON Schema validator
/// on real answers: environments with a completed deployment, its agent's heartbeat, an approval, the
/// audit log. A body that breaks the contract (a required key gone, a wrong type) is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_matches_its_documented_schema() {
    let db = common::db::sqlite().await;
    let store = db.store.clone();
    let Pushed { scene: _scene, api, doc, base, dev, prod } = Pushed::start(&store).await;
    let viewer = Api::token(&store, "viewer", Role::Viewer, None).await;
    let approver = Api::token(&store, "oncall", Role::Approver, None).await;
    let agent = Api::token(&store, "dev-agent-1", Role::Agent, Some("development")).await;
    let heartbeat = json!({"deployment": dev, "commit": base, "sequence": 1, "health": "healthy",
        "version": "test", "sync": "drifted", "drifted": ["metadata.json"], "restored": null, "last_result": "ok"});
    assert_eq!(api.call("POST", "/api/v1/agent/heartbeat", Some(&agent), Some(heartbeat)).await.0, 204);

    let mut checked = Vec::new();
    let mut check = |path: &str, status: &str, answer: &Value| {
        let method = if path.ends_with("/approve") || path.ends_with("/report") { "post" } else { "get" };
        let schema = documented(&doc, path, method, status);
        conforms(&schema, answer).unwrap_or_else(|e| panic!("{method} {path}: {e}\n{answer:#}"));
        checked.push(path.to_string());
        schema
    };
    let (status, body) = api.call("GET", "/api/v1/agent/desired?environment=development", Some(&agent), None).await;
    assert_eq!(status, 200, "{body}");
    check("/api/v1/agent/desired", "200", &body);
    let report = json!({"deployment": dev, "phase": "completed", "message": "done"});
    let (status, body) = api.call("POST", "/api/v1/agent/report", Some(&agent), Some(report)).await;
    assert_eq!(status, 200, "{body}");
    check("/api/v1/agent/report", "200", &body);
    let (status, body) = api
        .call("POST", &format!("/api/v1/deployments/{prod}/approve"), Some(&approver), Some(json!({"breaking": true})))
        .await;
    assert!(status == 200, "{body}");
    check("/api/v1/deployments/{id}/approve", "200", &body);

    let (_, key) = api.call("GET", "/api/v1/signing-key", None, None).await;
    check("/api/v1/signing-key", "200", &key);
    let (_, environments) = api.call("GET", "/api/v1/environments", Some(&viewer), None).await;
    assert!(environments["environments"].as_array().is_some_and(|e| e.len() == 3), "{environments}");
    let environments_schema = check("/api/v1/environments", "200", &environments);
    let (_, environment) = api.call("GET", "/api/v1/environments/development", Some(&viewer), None).await;
    assert_eq!(environment["repositories"][0]["current"]["id"], dev.as_str(), "{environment}");
    assert_eq!(environment["agents"][0]["sync"], "drifted");
    check("/api/v1/environments/{env}", "200", &environment);
    let admin = Api::token(&store, "root", Role::Admin, None).await;
    assert_eq!(api.call("GET", "/api/v1/tokens", Some(&viewer), None).await.0, 403);
    let (status, tokens) = api.call("GET", "/api/v1/tokens", Some(&admin), None).await;
    assert_eq!(status, 200, "{tokens}");
    assert!(tokens["tokens"].as_array().is_some_and(|t| t.len() == 4) && !tokens.to_string().contains("honua_"));
    check("/api/v1/tokens", "200", &tokens);
    let (status, rotated) =
        api.call("POST", "/api/v1/tokens/viewer/rotate", Some(&admin), Some(json!({"grace_seconds": 60}))).await;
    assert_eq!(status, 200, "{rotated}");
    assert!(rotated["token"].as_str().unwrap().starts_with("honua_"));
    assert_eq!(api.call("GET", "/api/v1/deployments", Some(&viewer), None).await.0, 200, "the old secret, in grace");
    let fresh = rotated["token"].as_str().unwrap().to_string();
    assert_eq!(api.call("GET", "/api/v1/deployments", Some(&fresh), None).await.0, 200);
    assert_eq!(api.call("POST", "/api/v1/tokens/viewer/revoke", Some(&admin), None).await.0, 204);
    assert_eq!(api.call("GET", "/api/v1/deployments", Some(&fresh), None).await.0, 401);
    assert_eq!(api.call("POST", "/api/v1/tokens/viewer/revoke", Some(&admin), None).await.0, 404);
    let viewer = Api::token(&store, "viewer-2", Role::Viewer, None).await;
    let (_, list) = api.call("GET", "/api/v1/deployments", Some(&viewer), None).await;
    check("/api/v1/deployments", "200", &list);
    let (_, detail) = api.call("GET", &format!("/api/v1/deployments/{dev}"), Some(&viewer), None).await;
    assert!(detail["signed"]["record"].is_string() && !detail["reports"].as_array().unwrap().is_empty(), "{detail}");
    let detail_schema = check("/api/v1/deployments/{id}", "200", &detail);
    let (_, audit) = api.call("GET", "/api/v1/audit", Some(&viewer), None).await;
    check("/api/v1/audit", "200", &audit);
    let (_, agents) = api.call("GET", "/api/v1/agents", Some(&viewer), None).await;
    check("/api/v1/agents", "200", &agents);
    assert_eq!(checked.len(), 11);

    // The check can fail: a required key gone, or a value of the wrong type, breaks the contract.
    let mut broken = detail.clone();
    broken.as_object_mut().unwrap().remove("plan_digest");
    assert!(conforms(&detail_schema, &broken).is_err(), "a missing key passes");
    let mut broken = environments.clone();
    broken["environments"][0]["agents"] = json!([{"name": "x"}]);
    assert!(conforms(&environments_schema, &broken).is_err(), "an agent without its fields passes");
    let mut broken = detail.clone();
    broken["state"] = json!("exploded");
    assert!(conforms(&detail_schema, &broken).is_err(), "a state outside the enum passes");
    // The plan's changes are checked too: their kinds and actions are the enums this version writes.
    assert!(detail["plan"]["changes"].as_array().is_some_and(|c| !c.is_empty()), "{detail}");
    let mut broken = detail;
    broken["plan"]["changes"][0]["type"] = json!("tile_matrix");
    assert!(conforms(&detail_schema, &broken).is_err(), "a change kind outside the enum passes");
}

/// A refused request: the method, the path called, the token, the body, and the status it is refused
/// with.
type Refusal<'a> = (&'a str, String, &'a str, Option<String>, u16);

/// The documented route `path` is an instance of (`/api/v1/deployments/{id}` of
/// `/api/v1/deployments/x`; the query is not part of it).
fn route_of(doc: &Value, path: &str) -> String {
    let path: Vec<&str> = path.split('?').next().unwrap().split('/').collect();
    let fits = |route: &str| {
        let route: Vec<&str> = route.split('/').collect();
        route.len() == path.len() && route.iter().zip(&path).all(|(r, p)| r == p || r.starts_with('{'))
    };
    let mut routes: Vec<&String> = doc["paths"].as_object().unwrap().keys().filter(|r| fits(r)).collect();
    // A literal segment is more specific than a parameter (`/environments/{env}/rollback` over none).
    routes.sort_by_key(|r| r.matches('{').count());
    routes.first().unwrap_or_else(|| panic!("no documented route fits {}", path.join("/"))).to_string()
}

/// The statuses `method path` documents.
fn documented_statuses(doc: &Value, path: &str, method: &str) -> Vec<String> {
    let responses = doc["paths"][path][method]["responses"].as_object();
    let responses = responses.unwrap_or_else(|| panic!("{method} {path} is not in the document"));
    responses.keys().cloned().collect()
}

/// Every error the API answers is in its OpenAPI document: each route's refusals on real requests (a
/// query, path or body that does not parse, a body over the limit, a role that may not, an unknown id, a
/// wrong state) and every route while the database is gone are documented for that route, each as the
/// one error body, so a client generated from the document knows every answer it can get.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_the_api_answers_is_documented_for_its_route() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("honua.db").display());
    let sql = Arc::new(honua_gitops::store::SqlStore::open(&url).await.unwrap());
    let store: Arc<dyn Store> = sql.clone();
    let Pushed { scene: _scene, api, doc, base: _, dev, prod } = Pushed::start(&store).await;
    let viewer = Api::token(&store, "viewer", Role::Viewer, None).await;
    let admin = Api::token(&store, "root", Role::Admin, None).await;
    let agent = Api::token(&store, "dev-agent-1", Role::Agent, Some("development")).await;

    let answer = |method: &str, path: String, token: &str, body: Option<String>| {
        let (client, url, token) = (api.client.clone(), format!("{}{path}", api.url), token.to_string());
        let get = method == "get";
        async move {
            let req = if get { client.get(url) } else { client.post(url) };
            let mut req = req.bearer_auth(token);
            if let Some(body) = body {
                req = req.header("content-type", "application/json").body(body);
            }
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    let check = |method: &str, route: &str, status: u16, text: &str| {
        let statuses = documented_statuses(&doc, route, method);
        assert!(
            statuses.contains(&status.to_string()),
            "{method} {route} answered {status}, which its documentation ({statuses:?}) does not list: {text}"
        );
        let body: Value = serde_json::from_str(text).unwrap_or_else(|_| panic!("{method} {route} {status}: {text}"));
        let schema = documented(&doc, route, method, &status.to_string());
        conforms(&schema, &body).unwrap_or_else(|e| panic!("{method} {route} {status}: {e}\n{body:#}"));
    };

    let big = format!("{{\"reason\": \"{}\"}}", "x".repeat(70 * 1024));
    let refusals: Vec<Refusal> = vec![
        ("get", "/api/v1/environments/nowhere".into(), &viewer, None, 404),
        ("get", "/api/v1/deployments?limit=many".into(), &viewer, None, 400),
        ("get", "/api/v1/deployments/nope".into(), &viewer, None, 404),
        ("get", "/api/v1/pulls/o/r/first".into(), &viewer, None, 400),
        ("get", "/api/v1/pulls/o/r/1".into(), &viewer, None, 404),
        ("post", format!("/api/v1/deployments/{prod}/approve"), &viewer, None, 403),
        ("post", format!("/api/v1/deployments/{prod}/approve"), &admin, Some("{".into()), 400),
        ("post", format!("/api/v1/deployments/{dev}/approve"), &admin, None, 409),
        ("post", format!("/api/v1/deployments/{prod}/reject"), &admin, Some(big.clone()), 413),
        ("post", format!("/api/v1/deployments/{prod}/reject"), &admin, Some("{\"why\": 1}".into()), 400),
        ("post", "/api/v1/environments/development/rollback".into(), &admin, None, 409),
        ("get", "/api/v1/environments/development/rollback".into(), &viewer, None, 409),
        ("post", "/api/v1/environments/development/resume".into(), &admin, None, 409),
        ("get", "/api/v1/tokens".into(), &viewer, None, 403),
        ("post", "/api/v1/tokens/nobody/revoke".into(), &admin, None, 404),
        ("post", "/api/v1/tokens/viewer/rotate".into(), &admin, Some("[".into()), 400),
        ("get", "/api/v1/audit?after=yesterday".into(), &viewer, None, 400),
        ("get", "/api/v1/agent/desired?environment=development".into(), &viewer, None, 403),
        ("get", "/api/v1/agent/desired".into(), &agent, None, 400),
        ("post", "/api/v1/agent/report".into(), &agent, Some("{}".into()), 400),
        ("post", "/api/v1/agent/heartbeat".into(), &agent, Some("\"up\"".into()), 400),
    ];
    for (method, path, token, body, expected) in refusals {
        let (status, text) = answer(method, path.clone(), token, body).await;
        assert_eq!(status, expected, "{method} {path}: {text}");
        check(method, &route_of(&doc, &path), status, &text);
    }

    // The database gone: every route behind a token answers 503, documented as such.
    sql.close().await;
    let mut routes = 0;
    for (route, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post"].into_iter().filter(|m| item[*m]["security"].is_array()) {
            let path = route
                .replace("{id}", &prod)
                .replace("{env}", "development")
                .replace("{name}", "viewer")
                .replace("{owner}/{repo}/{number}", "o/r/1");
            let (status, text) = answer(method, path, &admin, None).await;
            assert_eq!(status, 503, "{method} {route} with the database gone: {text}");
            check(method, route, status, &text);
            routes += 1;
        }
    }
    assert!(routes >= 19, "only {routes} routes behind a token were called");
}

/// Plain-Git mode with two repositories. The remote of one goes silent (blackholed: connected, nothing
/// answers) after its deployments were made, and production is approved there: publishing that record to
/// its Git ledger waits on the silent remote. Production of the other repository, approved next, reaches
/// its own ledger meanwhile. Once the silent remote's connections are reset and it answers again, a poll
/// publishes the record that waited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_remote_never_holds_back_another_repositorys_ledger() {
    use common::fault_proxy::{Fault, FaultProxy};
    use common::git_http::GitHttp;
    let db = common::db::sqlite().await;
    let store = db.store.clone();
    let quiet = Origin::new(&common::examples().join("honua-config"));
    let git = GitHttp::start(quiet.git_root.clone(), "secret").await;
    let proxy = FaultProxy::for_url(&git.url).await;
    let silent = format!("{}/city/gis-config.git", proxy.rewrite(&git.url));
    let with_credentials = silent.replacen("http://", "http://x-access-token:secret@", 1);
    let origin = Origin::new(&common::examples().join("honua-config"));
    let good = format!("file://{}/city/gis-config.git", origin.git_root.display());
    let data = tempfile::tempdir().unwrap();
    let signer = honua_gitops::controller::deployments::service_signer(store.as_ref()).await.unwrap();
    let mut controller = Controller::new(store.clone(), None, signer, String::new(), data.path().join("m"), None);
    controller.repositories = vec![
        DeploySource { repository: silent.clone(), url: with_credentials, branch: "main".into() },
        DeploySource { repository: good.clone(), url: good.clone(), branch: "main".into() },
    ];
    let controller = Arc::new(controller);
    // The worker starts the background publisher.
    let (_stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(controller.clone().run_worker("w".into(), rx));
    assert_eq!(controller.poll_once().await.unwrap(), 2);
    let all = wait_for_deployments(&store, "both repositories' deployments", |all| all.len() == 6).await;
    let production = |repository: &str| {
        all.iter().find(|d| d.repository == repository && d.environment == "production").unwrap().id.to_string()
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    // Until the publisher has its answers too: the remote shows a pushed record before the push's answer
    // reaches the publisher, and a blackhole set in between holds that push (and the repository's next
    // publication behind it) for the Git timeout (a CI run failed so).
    while in_ledger(&quiet).len() < 2
        || in_ledger(&origin).len() < 2
        || !store.unpublished_records(&silent, 10).await.unwrap().is_empty()
        || !store.unpublished_records(&good, 10).await.unwrap().is_empty()
    {
        assert!(tokio::time::Instant::now() < deadline, "development's and staging's records never published");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    proxy.set(Fault::Blackhole);
    let connections = proxy.connections();
    let decisions = controller.decisions();
    let approve = |id: String| {
        let decisions = &decisions;
        async move { decisions.approve(&id, "oncall", Via::Api, true, Utc::now()).await.unwrap() }
    };
    approve(production(&silent)).await;
    controller.decided(&silent).await;
    while proxy.connections() == connections {
        assert!(tokio::time::Instant::now() < deadline, "the silent remote's ledger was never tried");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    approve(production(&good)).await;
    controller.decided(&good).await;
    while !in_ledger(&origin).contains(&production(&good)) {
        assert!(tokio::time::Instant::now() < deadline, "the other repository's record waited on the silent remote");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!in_ledger(&quiet).contains(&production(&silent)), "the silent remote took nothing");

    proxy.set(Fault::Pass);
    proxy.cut();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !in_ledger(&quiet).contains(&production(&silent)) {
        assert!(tokio::time::Instant::now() < deadline, "the record that waited was never published");
        let _ = controller.poll_once().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(in_ledger(&quiet).len(), 3, "each record once");
}
