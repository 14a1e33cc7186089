//! Injected faults on every link of the loop, through a TCP fault proxy (latency, resets, blackholes,
//! slow bodies) and a fake GitHub that answers errors and rate limits on command: service ↔ GitHub,
//! agent ↔ service, agent ↔ Git, service ↔ PostgreSQL. Each scenario ends converged with nothing lost
//! and nothing done twice.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::edge::{expected_render, ledger_deployment, push, push_main, setup, Setup};
use common::fake_github::{FakeGithub, Injected};
use common::fault_proxy::{Fault, FaultProxy};
use common::git_http::GitHttp;
use common::service::{ExampleScene, Service};
use common::{Origin, REPO};
use honua_gitops::agent::{Agent, AgentConfig, PollOutcome};
use honua_gitops::store::{DeploymentFilter, DeploymentState};

const WAIT: Duration = Duration::from_secs(90);

/// Exactly one pair of check runs, both completed, and one plan comment.
fn checked_once(gh: &FakeGithub, number: u64, sha: &str) -> bool {
    let runs = gh.check_runs(sha);
    runs.len() == 2 && runs.iter().all(|r| r.status == "completed") && gh.comments(REPO, number).len() == 1
}

async fn drained(service: &Service) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while service.controller.store.queue_depth().await.unwrap() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "the job queue never drained");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A PR opened while `fault` holds; checked once the fault is lifted after `hold`.
async fn pr_through(
    github: &FakeGithub,
    origin: &Origin,
    service: &Service,
    proxy: &FaultProxy,
    number: u64,
    fault: Fault,
    hold: Duration,
) {
    let tree = if number.is_multiple_of(2) { "honua-config-pr" } else { "honua-config" };
    let head = origin.push_pr(number, &common::examples().join(tree));
    proxy.set(fault.clone());
    service.pull_request(&format!("f-{number}"), "opened", number, &head, &origin.main_sha()).await;
    tokio::time::sleep(hold).await;
    proxy.set(Fault::Pass);
    github.wait_for(WAIT, &format!("PR {number} checked after {fault:?}"), |gh| checked_once(gh, number, &head)).await;
    drained(service).await;
    assert!(checked_once(github, number, &head), "PR {number} after {fault:?}: one pair of checks, one comment");
}

/// GitHub's bad answers (5xx, a 502 after it created a check run or a comment, 429 with `retry-after`,
/// the secondary rate limit) and a bad network to it (latency, a blackhole longer than the request timeout, resets, a body
/// dribbled out): every PR ends with one pair of completed check runs and one comment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_errors_rate_limits_and_a_bad_network_end_in_one_pair_of_checks_and_one_comment() {
    let db = common::db::sqlite().await;
    let github = FakeGithub::start().await;
    let proxy = FaultProxy::for_url(&github.url()).await;
    let origin = Origin::new(&common::examples().join("honua-config"));
    let service =
        Service::start_idle_via(&proxy.rewrite(&github.url()), Duration::from_secs(2), &origin, db.store.clone()).await;
    service.start_worker("w1");

    let answers = [
        Injected::error(500),
        Injected::error(503),
        Injected::answer_lost("/check-runs"),
        Injected::too_many_requests(1),
        Injected::secondary_rate_limit(1),
        Injected::answer_lost("/comments"),
    ];
    let injected = answers.len() as u32;
    github.inject(answers);
    pr_through(&github, &origin, &service, &proxy, 1, Fault::Pass, Duration::ZERO).await;
    assert_eq!(github.injected_served(), injected, "every injected answer was given");

    let network = [
        (Fault::Latency(Duration::from_millis(150)), Duration::ZERO),
        // Longer than the 2 s request timeout: requests in flight time out, the job is retried.
        (Fault::Blackhole, Duration::from_secs(4)),
        (Fault::Reset, Duration::from_secs(3)),
        (Fault::Slow { chunk: 64, every: Duration::from_millis(2) }, Duration::ZERO),
    ];
    for (n, (fault, hold)) in network.into_iter().enumerate() {
        pr_through(&github, &origin, &service, &proxy, 2 + n as u64, fault, hold).await;
    }
    assert!(proxy.connections() > 0, "GitHub was reached through the proxy");
    db.cleanup().await;
}

/// The service fetches PR heads over smart HTTP (the App's installation token as credentials) through
/// the proxy: blackholed longer than the Git timeout, reset, then slow. Each PR ends checked once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_fetches_pr_heads_through_a_blackholed_reset_and_slow_git_remote() {
    honua_gitops::git::mirror::set_network_timeout(Duration::from_secs(2));
    let db = common::db::sqlite().await;
    let github = FakeGithub::start().await;
    let origin = Origin::new(&common::examples().join("honua-config"));
    let git = GitHttp::start(origin.git_root.clone(), common::fake_github::INSTALLATION_TOKEN).await;
    let proxy = FaultProxy::for_url(&git.url).await;
    let service =
        Service::start_idle_with(&github.url(), &proxy.rewrite(&git.url), Duration::from_secs(30), db.store.clone())
            .await;
    service.start_worker("w1");
    let faults = [
        (Fault::Blackhole, Duration::from_secs(5)),
        (Fault::Reset, Duration::from_secs(3)),
        (Fault::Slow { chunk: 256, every: Duration::from_millis(1) }, Duration::ZERO),
    ];
    for (n, (fault, hold)) in faults.into_iter().enumerate() {
        pr_through(&github, &origin, &service, &proxy, 11 + n as u64, fault, hold).await;
    }
    assert!(git.authorised_requests() > 0, "the checks fetched over HTTP");
    db.cleanup().await;
}

/// The signed records in the Git ledger of `origin`, by environment.
fn ledger_records(origin: &Origin) -> Vec<(String, String)> {
    let Ok(head) = origin.repo.refname_to_id(honua_gitops::git::ledger::LEDGER_REF) else { return Vec::new() };
    let entries = honua_gitops::git::ledger::read(&origin.repo, head).unwrap();
    entries.into_iter().map(|e| (e.environment, e.deployment)).collect()
}

/// Plain-Git mode over smart HTTP, credentials in the remote's URL, through the proxy. An approval given
/// while the remote is blackholed stands, signed, but its record cannot reach the Git ledger (the push
/// gives up after the Git timeout); a poll while the remote resets connections fails and loses nothing;
/// the first poll after the remote answers again publishes the record, although the branch brought
/// nothing new (no decision follows to publish it). Agents cut off from the service read that ledger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_record_the_remote_refused_is_published_by_the_next_poll() {
    use honua_gitops::controller::{deployments::service_signer, Controller, DeploySource};
    honua_gitops::git::mirror::set_network_timeout(Duration::from_secs(2));
    let db = common::db::sqlite().await;
    let store = db.store.clone();
    let origin = Origin::new(&common::examples().join("honua-config"));
    let secret = "plain-git-password";
    let git = GitHttp::start(origin.git_root.clone(), secret).await;
    let proxy = FaultProxy::for_url(&git.url).await;
    let repository = format!("{}/city/gis-config.git", proxy.rewrite(&git.url));
    let url = repository.replacen("http://", &format!("http://x-access-token:{secret}@"), 1);
    let source = DeploySource { repository: repository.clone(), url, branch: "main".into() };
    let data = tempfile::tempdir().unwrap();
    let signer = service_signer(store.as_ref()).await.unwrap();
    // No worker, so no background publisher: each decision publishes inline, and the test knows when
    // an attempt is over.
    let mut controller = Controller::new(store.clone(), None, signer, String::new(), data.path().join("m"), None);
    controller.repositories = vec![source.clone()];
    let controller = Arc::new(controller);

    let all = controller.pushes().deploy_head(&source, None, "poller", chrono::Utc::now()).await.unwrap();
    let production = all.iter().find(|d| d.environment == "production").unwrap().id.clone();
    let published = ledger_records(&origin);
    assert_eq!(published.len(), 2, "development and staging, approved by the policy: {published:?}");
    assert!(git.authorised_requests() > 0, "the fetch and the ledger push went over HTTP");

    proxy.set(Fault::Blackhole);
    let decisions = controller.decisions();
    let approved = decisions
        .approve(&production, "oncall", honua_gitops::deployment::Via::Api, true, chrono::Utc::now())
        .await
        .unwrap();
    controller.decided(&repository).await;
    assert_eq!(approved.state, DeploymentState::Approved);
    assert!(approved.signed.is_some(), "the approval stands, signed");
    let pending = store.unpublished_records(&repository, 10).await.unwrap();
    assert_eq!(pending.iter().map(|d| d.id.to_string()).collect::<Vec<_>>(), [production.to_string()]);
    assert!(!ledger_records(&origin).iter().any(|(env, _)| env == "production"), "the remote took nothing");

    proxy.set(Fault::Reset);
    assert!(controller.poll_once().await.is_err(), "the poll could not fetch");
    assert_eq!(store.unpublished_records(&repository, 10).await.unwrap().len(), 1, "still to publish");

    proxy.set(Fault::Pass);
    assert_eq!(controller.poll_once().await.unwrap(), 0, "the branch brought nothing new");
    let published = ledger_records(&origin);
    assert!(
        published.contains(&("production".to_string(), production.to_string())),
        "the poll published production's record: {published:?}"
    );
    assert_eq!(published.len(), 3, "each record once: {published:?}");
    assert!(store.unpublished_records(&repository, 10).await.unwrap().is_empty());
    db.cleanup().await;
}

/// The agent's link to the service gets latency, a blackhole, resets and a slow body while deployments
/// are decided: each one is applied once (from the service, or from the Git ledger while the service is
/// out of reach), and the service hears every outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_converges_through_latency_a_blackhole_resets_and_a_slow_link_to_the_service() {
    let s = setup("development").await;
    let proxy = FaultProxy::for_url(&s.service.url).await;
    let config = AgentConfig {
        server: proxy.rewrite(&s.service.url),
        // Long enough that the agent is nearly always inside a long-poll when a fault begins.
        long_poll: Duration::from_secs(5),
        ..s.config.clone()
    };
    let agent = Arc::new(Agent::new(config).unwrap());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let runner = agent.clone();
    let task = tokio::spawn(async move { runner.run(stopped).await });

    let faults = [
        (Fault::Latency(Duration::from_millis(200)), Duration::ZERO),
        // The long-poll in flight dies; the agent gives it up after its 5 s wait plus the 10 s grace.
        (Fault::Blackhole, Duration::from_secs(3)),
        (Fault::Reset, Duration::from_secs(3)),
        (Fault::Slow { chunk: 32, every: Duration::from_millis(1) }, Duration::ZERO),
    ];
    let mut before = "0".repeat(40);
    let mut head = s.origin.main_sha();
    for (n, (fault, hold)) in faults.into_iter().enumerate() {
        // Into its next long-poll (after the report and heartbeat of the last apply).
        tokio::time::sleep(Duration::from_secs(1)).await;
        proxy.set(fault.clone());
        push(&s, &before, &head, &format!("a-{n}")).await;
        tokio::time::sleep(hold).await;
        proxy.set(Fault::Pass);
        applied_and_reported(&s, &head, &format!("{fault:?}")).await;
        before = head.clone();
        let tree = if n.is_multiple_of(2) { "honua-config-pr" } else { "honua-config" };
        head = s.origin.merge(&common::examples().join(tree));
    }
    stop.send(true).unwrap();
    task.await.unwrap();
    assert_eq!(s.honua.state.lock().unwrap().reloads, 4, "each deployment applied once");
    assert!(proxy.connections() > 0);
}

/// Waits until Honua runs `commit`'s development config and its deployment is `completed`.
async fn applied_and_reported(s: &Setup, commit: &str, after: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let filter = DeploymentFilter { environment: Some("development".into()), limit: 100, ..Default::default() };
        let deployment = s.store.deployments(&filter).await.unwrap().into_iter().find(|d| d.commit == commit);
        let loaded = s.honua.state.lock().unwrap().loaded.clone();
        if loaded == Some(expected_render(s, commit, "development"))
            && deployment.as_ref().is_some_and(|d| d.state == DeploymentState::Completed)
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "after {after}: {commit} not applied and reported ({:?})",
            deployment.map(|d| d.state)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// With the service unreachable, the agent reads the signed Git ledger over smart HTTP; that link is
/// blackholed (the fetch fails after the Git timeout instead of hanging), reset, then slow: Honua keeps
/// its config through the failures and gets the approved one once a fetch completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_reads_the_git_ledger_through_a_blackholed_reset_and_slow_remote() {
    honua_gitops::git::mirror::set_network_timeout(Duration::from_secs(2));
    let s = setup("development").await;
    let base = push_main(&s, "l-1").await;
    let deployment = ledger_deployment(&s, "development").await;
    let git = GitHttp::start(s.origin.git_root.clone(), "ghs_agent_read_token").await;
    let proxy = FaultProxy::for_url(&git.url).await;
    let agent = Agent::new(AgentConfig {
        server: "http://127.0.0.1:9".into(),
        git_url: proxy.rewrite(&format!("{}/city/gis-config.git", git.url)),
        git_token: Some("ghs_agent_read_token".into()),
        ..s.config.clone()
    })
    .unwrap();

    for fault in [Fault::Blackhole, Fault::Reset] {
        proxy.set(fault.clone());
        let polled = tokio::time::timeout(Duration::from_secs(60), agent.poll_once(0))
            .await
            .unwrap_or_else(|_| panic!("a {fault:?} Git remote held the agent"));
        assert!(polled.is_err(), "{fault:?}: {polled:?}");
        assert!(s.honua.state.lock().unwrap().loaded.is_none(), "nothing applied from a failed fetch");
    }
    proxy.set(Fault::Slow { chunk: 512, every: Duration::from_millis(1) });
    assert_eq!(agent.poll_once(0).await.unwrap(), PollOutcome::Applied { deployment });
    assert_eq!(s.honua.state.lock().unwrap().loaded.clone().unwrap(), expected_render(&s, &base, "development"));
    proxy.set(Fault::Pass);
    assert_eq!(agent.poll_once(0).await.unwrap(), PollOutcome::Unchanged, "applied once");
    assert_eq!(s.honua.state.lock().unwrap().reloads, 1);
}

/// PostgreSQL restarts (every connection reset, the port closed for 3 s) in the middle of a burst of
/// webhooks, with jobs in flight. A delivery refused meanwhile is redelivered, as an operator (or the
/// poller) would; every PR ends with one pair of checks and one comment, and the queue drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_restart_mid_burst_loses_nothing_and_doubles_nothing() {
    let proxy = FaultProxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let Some(db) = common::db::postgres_through(Some(proxy.addr.port()), honua_gitops::store::STATEMENT_TIMEOUT).await
    else {
        return;
    };
    let ExampleScene { github, origin, service } = ExampleScene::start(db.store.clone()).await;
    let base = origin.main_sha();
    let heads: Vec<String> = (1..=12)
        .map(|n| {
            origin.push_pr(
                n,
                &common::examples().join(if n.is_multiple_of(2) { "honua-config-pr" } else { "honua-config" }),
            )
        })
        .collect();
    let deliver = |number: u64| {
        let body = common::pull_request_payload("opened", number, &heads[number as usize - 1], &base);
        let service = &service;
        async move { service.try_deliver("pull_request", &format!("pg-{number}"), body).await }
    };

    let mut refused = Vec::new();
    for number in 1..=4 {
        assert_eq!(deliver(number).await, 202);
    }
    let burst = async {
        let mut refused = Vec::new();
        for number in 5..=12 {
            let status = deliver(number).await;
            if status != 202 {
                assert!(status == 0 || status >= 500, "PR {number}: {status}");
                refused.push(number);
            }
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        refused
    };
    let ((), during) = tokio::join!(proxy.restart(Duration::from_secs(3)), burst);
    refused.extend(during);
    for &number in &refused {
        let deadline = tokio::time::Instant::now() + WAIT;
        while deliver(number).await != 202 {
            assert!(tokio::time::Instant::now() < deadline, "PR {number}'s redelivery never accepted");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    for (i, head) in heads.iter().enumerate() {
        let number = i as u64 + 1;
        github.wait_for(WAIT, &format!("PR {number} after the restart"), |gh| checked_once(gh, number, head)).await;
    }
    drained(&service).await;
    for (i, head) in heads.iter().enumerate() {
        assert!(checked_once(&github, i as u64 + 1, head), "PR {}: one pair of checks, one comment", i + 1);
    }
    assert!(proxy.connections() > 1, "PostgreSQL was reached through the proxy, and again after the restart");
    drop(service);
    db.cleanup().await;
}

/// What a statement may take in [`a_silent_postgresql_costs_a_statement_its_limit_and_the_store_recovers`].
const LIMIT: Duration = Duration::from_secs(1);

/// Runs `call`, which must give up by itself: far sooner than this bound, which only catches a call
/// waiting for the operating system's TCP timeouts (about 15 minutes).
async fn given_up<T>(what: &str, call: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), call)
        .await
        .unwrap_or_else(|_| panic!("{what}: still waiting on a silent database after 60 s"))
}

/// PostgreSQL goes silent (blackholed: connected, nothing answers or resets, as when its host is
/// powered off or a failover moves its name elsewhere). A webhook is refused, a store call fails and a
/// held repository's release returns, each after the store's statement limit instead of the TCP
/// timeouts; once the database answers again the same store works without a restart, the refused
/// delivery is accepted on redelivery, and each PR is checked once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_postgresql_costs_a_statement_its_limit_and_the_store_recovers() {
    let proxy = FaultProxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let Some(db) = common::db::postgres_through(Some(proxy.addr.port()), LIMIT).await else { return };
    let ExampleScene { github, origin, service } = ExampleScene::start(db.store.clone()).await;
    let base = origin.main_sha();
    let first = origin.push_pr(1, &common::examples().join("honua-config"));
    service.pull_request("silent-1", "opened", 1, &first, &base).await;
    github.wait_for(WAIT, "PR 1 before the silence", |gh| checked_once(gh, 1, &first)).await;
    drained(&service).await;

    // A connection in use when the database goes silent: the hold's own, which its release unlocks on.
    let hold = db.store.hold_repository("silent/repository").await.unwrap();
    proxy.set(Fault::Blackhole);
    given_up("the hold's release", hold.release()).await.unwrap();
    let second = origin.push_pr(2, &common::examples().join("honua-config-pr"));
    let body = common::pull_request_payload("opened", 2, &second, &base);
    let refused = given_up("a webhook", service.try_deliver("pull_request", "silent-2", body.clone())).await;
    assert!(refused == 0 || refused >= 500, "a delivery the database cannot record is refused: {refused}");
    let failed = given_up("a store call", db.store.queue_depth()).await;
    assert!(failed.is_err(), "a silent database answers nothing: {failed:?}");
    let failed = given_up("planning hold", db.store.hold_repository("silent/repository")).await;
    assert!(failed.is_err(), "a hold cannot be taken on a silent database");

    proxy.set(Fault::Pass);
    let deadline = tokio::time::Instant::now() + WAIT;
    while given_up("redelivery", service.try_deliver("pull_request", "silent-2", body.clone())).await != 202 {
        assert!(tokio::time::Instant::now() < deadline, "the redelivery was never accepted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    github.wait_for(WAIT, "PR 2 after the silence", |gh| checked_once(gh, 2, &second)).await;
    drained(&service).await;
    assert!(checked_once(&github, 1, &first) && checked_once(&github, 2, &second), "each PR checked once");
    let hold = db.store.hold_repository("silent/repository").await.expect("the hold of the silent connection let go");
    hold.release().await.unwrap();
    drop(service);
    db.cleanup().await;
}
