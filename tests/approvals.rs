//! Approvals by comment, through the fake GitHub and the real webhook route: who may approve, how an
//! approval binds to a plan, carries at merge or is withdrawn by a push, and the refusal table of the
//! issue, one test each, each answered on the PR with its reason and nothing approved.

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::fake_github::FakeGithub;
use common::service::{ExampleScene, Service};
use common::{Origin, REPO};
use honua_gitops::store::{Deployment, DeploymentFilter, DeploymentState, Store};

const WAIT: Duration = Duration::from_secs(60);
const MARKER: &str = "<!-- honua-gitops:reply -->";

struct World {
    github: FakeGithub,
    origin: Origin,
    service: Service,
    store: Arc<dyn Store>,
    deliveries: std::sync::atomic::AtomicU32,
}

impl World {
    /// The service on the example repository, with every environment running `main` already.
    async fn new(store: Arc<dyn Store>) -> World {
        let ExampleScene { github, origin, service } = ExampleScene::start(store.clone()).await;
        let w = World { github, origin, service, store, deliveries: 0.into() };
        let base = w.origin.main_sha();
        w.push(&"0".repeat(40), &base).await;
        let all = w.wait_deployments("bootstrap", |all| all.len() == 3).await;
        for d in &all {
            if d.state != DeploymentState::Approved {
                w.service.approve(&d.id, "bootstrap", false).await;
            }
            w.complete(&d.id).await;
        }
        // bob writes, mike is a named approver with read access, carol is in city-gis/platform-team.
        w.github.grant(REPO, "bob", "write", "write");
        w.github.grant(REPO, "mike", "read", "read");
        w.github.grant(REPO, "carol", "read", "read");
        w.github.add_team_member("city-gis", "platform-team", "carol");
        w.github.grant(REPO, "alice", "admin", "admin");
        w
    }

    fn delivery(&self) -> String {
        format!("d-{}", self.deliveries.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
    }

    async fn push(&self, before: &str, after: &str) {
        self.service.deliver("push", &self.delivery(), common::push_payload(before, after, "alice")).await;
    }

    async fn complete(&self, id: &str) {
        let now = honua_gitops::store::now_ms();
        let s = &self.store;
        assert!(s.transition(id, DeploymentState::Applying, "agent", "", now).await.unwrap());
        assert!(s.transition(id, DeploymentState::Completed, "agent", "", now).await.unwrap());
    }

    async fn wait_deployments(&self, what: &str, done: impl Fn(&[Deployment]) -> bool) -> Vec<Deployment> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let all = self.store.deployments(&DeploymentFilter { limit: 1000, ..Default::default() }).await.unwrap();
            if done(&all) {
                return all;
            }
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}: {all:#?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Opens PR `number` with `tree` (webhook included) and returns its head.
    async fn open_pr(&self, number: u64, tree: &std::path::Path) -> String {
        let head = self.origin.push_pr(number, tree);
        self.github.open_pr(REPO, number, &head, "main");
        self.service.pull_request(&self.delivery(), "opened", number, &head, &self.origin.main_sha()).await;
        head
    }

    /// `login` comments `body` on PR `number` (a new comment, delivered); returns the service's reply.
    async fn comment(&self, number: u64, body: &str, login: &str) -> String {
        self.comment_with(number, body, login, "User", "created", None).await
    }

    async fn comment_with(
        &self,
        number: u64,
        body: &str,
        login: &str,
        kind: &str,
        action: &str,
        delivery: Option<&str>,
    ) -> String {
        let id = self.github.post_comment_as(REPO, number, body, login, kind);
        let delivery = delivery.map(str::to_string).unwrap_or_else(|| self.delivery());
        let payload = common::comment_payload(action, number, id, body, login, kind);
        self.service.deliver("issue_comment", &delivery, payload).await;
        let mention = format!("@{login}:");
        self.github
            .wait_for(WAIT, "a reaction and a reply", |gh| {
                !gh.reactions(id).is_empty()
                    && gh.comments(REPO, number).iter().any(|c| c.id > id && c.body.contains(&mention))
            })
            .await;
        let comments = self.github.comments(REPO, number);
        comments.into_iter().rfind(|c| c.id > id && c.body.starts_with(MARKER)).unwrap().body
    }

    fn reaction_of_last_command(&self, number: u64, login: &str) -> Vec<String> {
        let id = self.github.comments(REPO, number).iter().filter(|c| c.author == login).map(|c| c.id).max().unwrap();
        self.github.reactions(id)
    }

    async fn merge(&self, number: u64, head: &str, tree: &std::path::Path) -> String {
        let before = self.origin.main_sha();
        let merged = self.origin.merge(tree);
        self.github.merge_pr(REPO, number, &merged);
        self.service.deliver("pull_request", &self.delivery(), common::merged_payload(number, head, &merged)).await;
        self.push(&before, &merged).await;
        merged
    }

    async fn nothing_approved(&self, number: u64) {
        assert!(self.store.pr_approvals(REPO, number).await.unwrap().is_empty(), "an approval was recorded");
    }
}

fn pr_tree() -> std::path::PathBuf {
    common::examples().join("honua-config-pr")
}

async fn a_writer_approves_production_on_the_pr_and_the_approval_carries_at_merge(store: Arc<dyn Store>) {
    let w = World::new(store).await;
    let head = w.open_pr(10, &pr_tree()).await;
    let reply = w.comment(10, "Looks right.\n\n/honua approve production --breaking", "bob").await;
    assert!(reply.contains(&format!("✅ `production` approved at {}", &head[..7])), "{reply}");
    assert_eq!(w.reaction_of_last_command(10, "bob"), ["+1"]);
    assert_eq!(w.store.pr_approvals(REPO, 10).await.unwrap().len(), 1);

    let merged = w.merge(10, &head, &pr_tree()).await;
    let all = w
        .wait_deployments("production approved by the carried approval", |all| {
            all.iter()
                .any(|d| d.environment == "production" && d.commit == merged && d.state == DeploymentState::Approved)
        })
        .await;
    let prod = all.iter().find(|d| d.environment == "production" && d.commit == merged).unwrap();
    let approvals = w.store.approvals(&prod.id).await.unwrap();
    assert_eq!(
        (approvals[0].actor.as_str(), approvals[0].via.as_str(), approvals[0].breaking),
        ("bob", "comment", true)
    );
    assert_eq!(approvals[0].plan_digest, prod.plan_digest, "bound to the deployment's own plan");
    assert!(prod.signed.as_ref().unwrap().record.contains("\"by\":\"bob\""));
}

/// Where reviewers look: the API shows, per environment, who approved which plan of the PR's head and
/// who may still approve (the base branch's policy); a push clears what no longer holds.
async fn a_prs_approvals_are_shown_per_environment_with_who_may_still_approve(store: Arc<dyn Store>) {
    let w = World::new(store).await;
    let head = w.open_pr(12, &pr_tree()).await;
    let plan_comment = || {
        let comments = w.github.comments(REPO, 12);
        comments.into_iter().find(|c| c.body.starts_with(honua_gitops::github::checks::PLAN_MARKER)).unwrap().body
    };
    w.github
        .wait_for(WAIT, "the plan comment", |gh| {
            gh.comments(REPO, 12).iter().any(|c| c.body.starts_with(honua_gitops::github::checks::PLAN_MARKER))
        })
        .await;
    let before = plan_comment();
    assert!(
        before.contains("| `production` | none yet | repository writers, `city-gis/platform-team`, `mike`"),
        "{before}"
    );
    w.comment(12, "/honua approve production --breaking", "bob").await;
    // The sticky plan comment shows who approved which plan, naming nobody with an @.
    let after = plan_comment();
    let digest = &w.store.pr_approvals(REPO, 12).await.unwrap()[0].plan_digest;
    let row = format!("| `production` | `bob` for plan `{}…` (breaking changes acknowledged) |", &digest[..19]);
    assert!(after.contains(&row), "{row} missing:\n{after}");
    assert!(!after.contains("@bob"), "{after}");
    let viewer = common::api_token(&w.store, "reviewer", honua_gitops::store::Role::Viewer, None).await;
    let get = |path: String| {
        let (url, token) = (format!("{}{path}", w.service.url), viewer.clone());
        async move {
            let resp = reqwest::Client::new().get(url).bearer_auth(token).send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    let (status, body) = get(format!("/api/v1/pulls/{REPO}/12")).await;
    assert_eq!(status, 200, "{body}");
    let pull: honua_gitops::deployment::wire::PullApprovals = serde_json::from_str(&body).unwrap();
    assert_eq!((pull.number, pull.head.as_deref()), (12, Some(head.as_str())));
    let envs: Vec<&str> = pull.environments.iter().map(|e| e.environment.as_str()).collect();
    assert_eq!(envs, ["development", "production", "staging"], "every environment of the base policy");
    let prod = pull.environments.iter().find(|e| e.environment == "production").unwrap();
    assert_eq!(prod.approvers, ["city-gis/platform-team", "mike"]);
    assert_eq!(prod.approvals.len(), 1);
    let given = &prod.approvals[0];
    assert_eq!((given.actor.as_str(), given.head_sha.as_str(), given.breaking), ("bob", head.as_str(), true));
    let stored = w.store.pr_approvals(REPO, 12).await.unwrap();
    assert_eq!(given.plan_digest, stored[0].plan_digest, "the plan the approval binds to");
    assert!(pull.environments.iter().filter(|e| e.environment != "production").all(|e| e.approvals.is_empty()));

    // A new commit: the approval no longer holds, and the API shows the new head without it.
    let head2 = w.origin.push_pr(12, &pr_tree());
    w.github.open_pr(REPO, 12, &head2, "main");
    w.service.pull_request(&w.delivery(), "synchronize", 12, &head2, &w.origin.main_sha()).await;
    w.github
        .wait_for(WAIT, "the PR is told", |gh| gh.comments(REPO, 12).iter().any(|c| c.body.contains("no longer hold")))
        .await;
    let (_, body) = get(format!("/api/v1/pulls/{REPO}/12")).await;
    let pull: honua_gitops::deployment::wire::PullApprovals = serde_json::from_str(&body).unwrap();
    assert_eq!(pull.head.as_deref(), Some(head2.as_str()));
    assert!(pull.environments.iter().all(|e| e.approvals.is_empty()), "{body}");

    // A pull request nobody knows here is a 404 that says why.
    let (status, body) = get("/api/v1/pulls/someone/else/1".to_string()).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("is the App installed on someone/else?"), "{body}");
}

/// The issue's scenario: a merge deploys development and staging by policy, production waits with
/// its reasons, a writer's `/honua approve production` approves and signs it, the ledger gets the
/// record and GitHub shows the deployment `queued`.
async fn a_writer_approves_the_merged_change_for_production_by_comment(store: Arc<dyn Store>) {
    let w = World::new(store).await;
    // A non-breaking change every environment shares: a title in the common layer.
    let tree = tempfile::tempdir().unwrap();
    common::copy_tree(&common::examples().join("honua-config"), tree.path());
    let meta = tree.path().join("environments/common/base-metadata.yaml");
    let text = std::fs::read_to_string(&meta).unwrap();
    assert!(text.contains("title: Land and Property\n"), "the example changed");
    std::fs::write(&meta, text.replace("title: Land and Property\n", "title: Land and Property Records\n")).unwrap();
    let head = w.open_pr(12, tree.path()).await;
    let merged = w.merge(12, &head, tree.path()).await;
    let all = w
        .wait_deployments("the merge's deployments", |all| all.iter().filter(|d| d.commit == merged).count() == 3)
        .await;
    let of = |env: &str| all.iter().find(|d| d.environment == env && d.commit == merged).unwrap().clone();
    assert_eq!(of("development").state, DeploymentState::Approved);
    assert_eq!(of("staging").state, DeploymentState::Approved);
    let prod = of("production");
    assert_eq!(prod.state, DeploymentState::AwaitingApproval);
    assert_eq!(prod.reasons, ["autoApprove is false for this environment"]);

    let reply = w.comment(12, "/honua approve production", "bob").await;
    assert!(reply.contains(&format!("✅ `production`: deployment {} is approved", prod.id)), "{reply}");
    let approved = w.store.deployment(&prod.id).await.unwrap().unwrap();
    assert_eq!(approved.state, DeploymentState::Approved);
    let key = honua_gitops::plan::signing::parse_public_key(&w.service.controller.signer.public_key()).unwrap();
    let record = honua_gitops::plan::signing::verify(&key, approved.signed.as_ref().unwrap()).unwrap();
    assert_eq!((record.approvals[0].by.as_str(), record.approvals[0].via.as_str()), ("bob", "comment"));
    // The ledger and GitHub's mirror follow in the background publisher.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let in_ledger = w.origin.repo.refname_to_id(honua_gitops::git::ledger::LEDGER_REF).ok().is_some_and(|head| {
            let entries = honua_gitops::git::ledger::read(&w.origin.repo, head).unwrap();
            entries.iter().any(|e| e.deployment == prod.id && Some(&e.signed) == approved.signed.as_ref())
        });
        let queued = w.github.deployment_status(&prod.id).as_deref() == Some("queued");
        if in_ledger && queued {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "ledger {in_ledger}, GitHub queued {queued}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let trail = w.store.audit(0, Some(&prod.id), 100).await.unwrap();
    let states: Vec<_> = trail.iter().filter_map(|e| e.to_state.map(|s| s.as_str())).collect();
    assert_eq!(states, ["pending", "awaiting_approval", "approved"]);
    // (The publisher's own entries, such as the ledger's, may follow the transition.)
    let approved_by = trail.iter().rfind(|e| e.to_state.is_some()).unwrap();
    assert_eq!(approved_by.actor, "bob");
}

async fn a_named_approver_or_team_member_approves_after_merge(store: Arc<dyn Store>) {
    let w = World::new(store).await;
    let head = w.open_pr(11, &pr_tree()).await;
    let merged = w.merge(11, &head, &pr_tree()).await;
    w.wait_deployments("the merge's deployments", |all| all.iter().filter(|d| d.commit == merged).count() == 3).await;
    // carol has read access only, but is in city-gis/platform-team, listed in production's approvers.
    let reply = w.comment(11, "/honua approve production --breaking", "carol").await;
    assert!(reply.contains("✅ `production`: deployment prod-"), "{reply}");
    assert!(reply.contains("is approved"), "{reply}");
    let prod = w
        .store
        .deployments(&DeploymentFilter { environment: Some("production".into()), limit: 1, ..Default::default() })
        .await
        .unwrap()
        .remove(0);
    assert_eq!(prod.state, DeploymentState::Approved);
    // Asking again says why not.
    let reply = w.comment(11, "/honua approve production --breaking", "mike").await;
    assert!(reply.contains("approved already"), "{reply}");
}

/// Approvals by comment that are refused for who asks or how: each on its own PR of one world, with the
/// reply that says why and the reaction on the command. None of them records an approval.
async fn refused_approvals_by_comment(store: Arc<dyn Store>) {
    struct Refusal {
        pr: u64,
        login: &'static str,
        /// Permission and role granted on the repository (none: no access at all).
        access: Option<(&'static str, &'static str)>,
        kind: &'static str,
        action: &'static str,
        reply: &'static str,
        reaction: &'static str,
    }
    let refusal =
        |pr, login, reply| Refusal { pr, login, access: None, kind: "User", action: "created", reply, reaction: "-1" };
    let rows = [
        refusal(20, "eve", "❌ `production`: your role on city/gis-config is `none`"),
        Refusal { access: Some(("read", "read")), ..refusal(21, "rita", "your role on city/gis-config is `read`") },
        Refusal { access: Some(("read", "triage")), ..refusal(22, "tom", "is `triage`") },
        // alice opened the PR and is an admin: production still refuses her own approval.
        refusal(23, "alice", "you opened this pull request, and `production` has `preventSelfApproval`"),
        Refusal {
            access: Some(("write", "write")),
            kind: "Bot",
            ..refusal(24, "release-bot[bot]", "bots cannot approve")
        },
        Refusal {
            action: "edited",
            reaction: "confused",
            ..refusal(25, "bob", "an edited comment is never a command")
        },
    ];
    let w = World::new(store).await;
    for r in rows {
        if let Some((permission, role)) = r.access {
            w.github.grant(REPO, r.login, permission, role);
        }
        w.open_pr(r.pr, &pr_tree()).await;
        let reply = w.comment_with(r.pr, "/honua approve production --breaking", r.login, r.kind, r.action, None).await;
        assert!(reply.contains(r.reply), "{}: {reply}", r.login);
        assert_eq!(w.reaction_of_last_command(r.pr, r.login), [r.reaction], "{}", r.login);
        w.nothing_approved(r.pr).await;
    }
}

async fn refused_an_approval_followed_by_a_push(store: Arc<dyn Store>) {
    let w = World::new(store).await;
    let head = w.open_pr(26, &pr_tree()).await;
    let reply = w.comment(26, "/honua approve production --breaking", "bob").await;
    assert!(reply.contains("✅"), "{reply}");
    // A new commit on the PR: the approval no longer holds, and the PR is told.
    let head2 = w.origin.push_pr(26, &pr_tree());
    w.github.open_pr(REPO, 26, &head2, "main");
    w.service.pull_request(&w.delivery(), "synchronize", 26, &head2, &w.origin.main_sha()).await;
    w.github
        .wait_for(WAIT, "the PR is told", |gh| gh.comments(REPO, 26).iter().any(|c| c.body.contains("no longer hold")))
        .await;
    let notice = w.github.comments(REPO, 26).into_iter().find(|c| c.body.contains("no longer hold")).unwrap().body;
    assert!(notice.contains(&format!("`production` by @bob at {}", &head[..7])), "{notice}");
    w.nothing_approved(26).await;
    // At merge, nothing carries: production waits for an approver.
    let merged = w.merge(26, &head2, &pr_tree()).await;
    let all = w
        .wait_deployments("the merge's deployments", |all| all.iter().filter(|d| d.commit == merged).count() == 3)
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let prod = all.iter().find(|d| d.environment == "production" && d.commit == merged).unwrap();
    assert_eq!(w.store.deployment(&prod.id).await.unwrap().unwrap().state, DeploymentState::Blocked);
}

/// `/honua reject ENV` on an open pull request withdraws the environment's approvals of it; a second one
/// finds none left.
async fn a_reject_on_the_pr_withdraws_the_environments_approvals(store: Arc<dyn Store>) {
    let w = World::new(store).await;
    w.open_pr(29, &pr_tree()).await;
    let reply = w.comment(29, "/honua approve production --breaking", "bob").await;
    assert!(reply.contains("✅"), "{reply}");
    assert_eq!(w.store.pr_approvals(REPO, 29).await.unwrap().len(), 1);
    let reply = w.comment(29, "/honua reject production", "bob").await;
    assert!(reply.contains("`production`: 1 approval(s) of this pull request withdrawn"), "{reply}");
    w.nothing_approved(29).await;
    let reply = w.comment(29, "/honua reject production", "bob").await;
    assert!(reply.contains("`production`: 0 approval(s) of this pull request withdrawn"), "{reply}");
}

async fn refused_the_approval_of_a_superseded_deployment(store: Arc<dyn Store>) {
    let w = World::new(store).await;
    let head = w.open_pr(27, &pr_tree()).await;
    let merged = w.merge(27, &head, &pr_tree()).await;
    w.wait_deployments("first merge", |all| all.iter().filter(|d| d.commit == merged).count() == 3).await;
    // Another change lands on main before anyone approved production.
    let later = common::retitled(&pr_tree(), "production", "Later");
    let before = w.origin.main_sha();
    let newer = w.origin.merge(later.path());
    w.push(&before, &newer).await;
    w.wait_deployments("the newer deployment", |all| {
        all.iter().any(|d| d.environment == "production" && d.commit == newer)
    })
    .await;
    let reply = w.comment(27, "/honua approve production --breaking", "bob").await;
    assert!(reply.contains("is superseded: a newer deployment of the environment replaced it"), "{reply}");
}

async fn refused_a_replayed_delivery(store: Arc<dyn Store>) {
    let w = World::new(store).await;
    w.open_pr(28, &pr_tree()).await;
    let reply = w.comment_with(28, "/honua help", "bob", "User", "created", Some("d-replayed")).await;
    assert!(reply.contains("/honua approve [ENV...] [--breaking]"), "{reply}");
    let id = w.github.comments(REPO, 28).iter().filter(|c| c.author == "bob").map(|c| c.id).max().unwrap();
    let replies = || w.github.comments(REPO, 28).iter().filter(|c| c.body.starts_with(MARKER)).count();
    let before = replies();
    // GitHub redelivers the same delivery: recorded once, answered once.
    let payload = common::comment_payload("created", 28, id, "/honua help", "bob", "User");
    w.service.deliver("issue_comment", "d-replayed", payload).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(replies(), before);
    assert_eq!(w.github.reactions(id).len(), 1);
}

async fn refused_a_blocked_plan_without_breaking(store: Arc<dyn Store>) {
    let w = World::new(store).await;
    w.open_pr(29, &pr_tree()).await;
    let reply = w.comment(29, "/honua approve production", "bob").await;
    assert!(reply.contains("approve with `/honua approve production --breaking`"), "{reply}");
    w.nothing_approved(29).await;
}

async fn refused_a_pr_that_loosens_its_own_policy(store: Arc<dyn Store>) {
    let w = World::new(store).await;
    let loose = tempfile::tempdir().unwrap();
    common::copy_tree(&pr_tree(), loose.path());
    let policy = loose.path().join(".gitops/deployment-policy.yaml");
    let text = std::fs::read_to_string(&policy)
        .unwrap()
        .replace("    autoApprove: false\n", "    autoApprove: true\n")
        .replace("    allowBreakingChanges: false\n", "    allowBreakingChanges: true\n");
    std::fs::write(&policy, text).unwrap();
    let head = w.open_pr(30, loose.path()).await;
    w.github
        .wait_for(WAIT, "checks", |gh| gh.check_runs(&head).iter().filter(|r| r.status == "completed").count() == 2)
        .await;
    let diff = w.github.check_runs(&head).into_iter().find(|r| r.name == "honua/diff").unwrap();
    assert_eq!(diff.conclusion.as_deref(), Some("action_required"), "judged by the base policy: still blocked");
    // Merged without an approval: production does not deploy itself.
    let merged = w.merge(30, &head, loose.path()).await;
    let all = w
        .wait_deployments("the merge's deployments", |all| all.iter().filter(|d| d.commit == merged).count() == 3)
        .await;
    let prod = all.iter().find(|d| d.environment == "production" && d.commit == merged).unwrap();
    assert_ne!(prod.state, DeploymentState::Approved, "{prod:#?}");
    assert!(prod.reasons.iter().any(|r| r.contains("deployment-policy.yaml")), "{:?}", prod.reasons);
}

async fn commands_in_quotes_or_code_are_not_commands_and_help_is_answered(store: Arc<dyn Store>) {
    let w = World::new(store).await;
    w.open_pr(31, &pr_tree()).await;
    let quoted =
        "> /honua approve production --breaking\n\n```\n/honua approve production --breaking\n```\n/honua frobnicate";
    let reply = w.comment(31, quoted, "bob").await;
    assert!(reply.contains("unknown command `frobnicate`"), "{reply}");
    assert_eq!(w.reaction_of_last_command(31, "bob"), ["confused"]);
    w.nothing_approved(31).await;
}

/// `/honua promote staging production` on a merged PR opens a pull request that carries staging's
/// configuration to production (its connections kept), and the reply links it; a reader is refused.
async fn a_writer_promotes_staging_to_production_by_comment(store: Arc<dyn Store>) {
    let w = World::new(store).await;
    let tree = tempfile::tempdir().unwrap();
    common::copy_tree(&common::examples().join("honua-config"), tree.path());
    let staging = tree.path().join("environments/staging/metadata.yaml");
    let text = std::fs::read_to_string(&staging).unwrap();
    std::fs::write(&staging, text.replace("ttl: 600", "ttl: 900")).unwrap();
    let head = w.open_pr(31, tree.path()).await;
    let reply = w.comment(31, "/honua promote staging production", "bob").await;
    assert!(reply.contains("runs on a merged pull request"), "{reply}");
    w.merge(31, &head, tree.path()).await;

    let reply = w.comment(31, "/honua promote staging production", "carol").await;
    assert!(reply.contains("a promotion needs write"), "{reply}");
    assert!(w.github.opened_pulls().is_empty());

    let reply = w.comment(31, "/honua promote staging production", "bob").await;
    assert!(reply.contains("✅ opened #") && reply.contains("https://github.com/city/gis-config/pull/"), "{reply}");
    let pulls = w.github.opened_pulls();
    assert_eq!(pulls.len(), 1);
    let pull = &pulls[0].0;
    let branch = pull["head"].as_str().unwrap().to_string();
    assert!(branch.starts_with("honua/promote-staging-to-production-"), "{branch}");
    assert_eq!(pull["base"], "main");
    let body = pull["body"].as_str().unwrap();
    assert!(body.contains("`layer parcels`") && body.contains("Kept as they are"), "{body}");
    assert!(!body.contains("prod-db.internal") && !body.contains("staging-db.internal"), "{body}");
    let promoted = honua_gitops::config::ConfigRepo::load_git(w.origin.repo.path(), &branch).unwrap();
    let parcels = |env: &str| {
        let eff = promoted.effective(&honua_gitops::config::EnvName::new(env)).unwrap().metadata.to_json();
        eff["layers"].as_array().unwrap().iter().find(|l| l["id"] == "parcels").unwrap()["caching"]["ttl"].clone()
    };
    assert_eq!(parcels("production"), 900);
    let datasources = "environments/production/datasources.yaml";
    let before = std::fs::read(common::examples().join("honua-config").join(datasources)).unwrap();
    let tree = w.origin.repo.revparse_single(&branch).unwrap().peel_to_tree().unwrap();
    let blob = tree.get_path(std::path::Path::new(datasources)).unwrap().to_object(&w.origin.repo).unwrap();
    assert_eq!(blob.as_blob().unwrap().content(), before.as_slice(), "connections are never promoted");
}

on_both_stores!(
    a_writer_promotes_staging_to_production_by_comment,
    a_writer_approves_the_merged_change_for_production_by_comment,
    a_writer_approves_production_on_the_pr_and_the_approval_carries_at_merge,
    a_named_approver_or_team_member_approves_after_merge,
    refused_approvals_by_comment,
    a_reject_on_the_pr_withdraws_the_environments_approvals,
    refused_an_approval_followed_by_a_push,
    refused_the_approval_of_a_superseded_deployment,
    refused_a_replayed_delivery,
    refused_a_blocked_plan_without_breaking,
    refused_a_pr_that_loosens_its_own_policy,
    commands_in_quotes_or_code_are_not_commands_and_help_is_answered,
    a_prs_approvals_are_shown_per_environment_with_who_may_still_approve,
);
