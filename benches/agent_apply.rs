//! Edge-agent figures, in-process against the parts the tests use (the service with the fake GitHub on
//! loopback, SQLite, a `file://` origin, the stand-in Honua over real HTTP):
//!
//! 1. Apply time of a 1,000-layer configuration, excluding Honua's reload: from the agent's `fetching`
//!    report to its `reloading` report (fetch, render with validation, secrets, write + fsync, swap).
//! 2. Merge-to-applied latency with webhooks: a push is delivered, the agent (long-polling, as
//!    `honua agent` runs) applies it; until the stand-in has loaded the new release.
//! 3. The same with polling only: no webhook; the service's poller every `AGENT_POLL_INTERVAL` s.
//!
//! `cargo bench --bench agent_apply` (AGENT_APPLY_RUNS, default 10; AGENT_LATENCY_RUNS, default 20;
//! AGENT_POLL_INTERVAL, default 5).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::edge::Setup;
use honua_gitops::agent::{Agent, PollOutcome};
use honua_gitops::store::{DeploymentFilter, Store};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn summary(label: &str, mut ms: Vec<f64>) {
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{label}: n={} p50 {:.0} ms, p90 {:.0} ms, min {:.0} ms, max {:.0} ms",
        ms.len(),
        percentile(&ms, 0.5),
        percentile(&ms, 0.9),
        ms[0],
        ms[ms.len() - 1]
    );
}

/// `tree` committed as the origin's main, the service and a stand-in Honua, and an agent of `environment`
/// (the tests' set-up), with a health timeout a 1,000-layer reload fits in.
async fn rig(tree: &std::path::Path, environment: &str) -> Setup {
    let mut rig = common::edge::setup_from(environment, tree).await;
    rig.config.health_timeout = Duration::from_secs(30);
    rig
}

async fn wait_planned(store: &Arc<dyn Store>, commit: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !store
        .deployments(&DeploymentFilter { limit: 10, ..Default::default() })
        .await
        .unwrap()
        .iter()
        .any(|d| d.commit == commit)
    {
        assert!(Instant::now() < deadline, "{commit} never planned");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Two trees that differ, alternately committed: every merge is a change.
fn variants(base: &std::path::Path) -> [tempfile::TempDir; 2] {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    common::copy_tree(base, a.path());
    common::copy_tree(base, b.path());
    let meta = b.path().join("environments/common/base-metadata.yaml");
    let text = std::fs::read_to_string(&meta).unwrap();
    // A layer title every environment shares (the catalog's would be masked by the environments' own).
    assert!(text.contains("title: Land and Property\n"), "the example changed");
    std::fs::write(&meta, text.replace("title: Land and Property\n", "title: Land and Property Records\n")).unwrap();
    [a, b]
}

async fn apply_time() {
    let runs = env_or("AGENT_APPLY_RUNS", 10);
    let synth = tempfile::tempdir().unwrap();
    use honua_gitops::config::synthetic;
    synthetic::write(&synthetic::generate(1000, false), &synth.path().join("a")).unwrap();
    synthetic::write(&synthetic::generate(1000, true), &synth.path().join("b")).unwrap();
    for side in ["a", "b"] {
        let policy = synth.path().join(side).join(".gitops/deployment-policy.yaml");
        std::fs::write(&policy, "environments:\n  production:\n    autoApprove: true\n").unwrap();
    }
    let r = rig(&synth.path().join("a"), "production").await;
    let agent = Agent::new(r.config.clone()).unwrap();
    let mut before = "0".repeat(40);
    let mut head = r.origin.main_sha();
    let mut phases = Vec::new();
    let mut whole = Vec::new();
    for n in 0..=runs {
        r.service.deliver("push", &format!("apply-{n}"), common::push_payload(&before, &head, "bench")).await;
        wait_planned(&r.store, &head).await;
        let started = Instant::now();
        let PollOutcome::Applied { deployment } = agent.poll_once(0).await.unwrap() else { panic!("not applied") };
        let elapsed = started.elapsed().as_secs_f64() * 1000.0;
        let reports = r.store.agent_reports(&deployment).await.unwrap();
        let at = |phase: &str| reports.iter().find(|p| p.phase.as_str() == phase).unwrap().at as f64;
        // The first apply warms the mirror (a full clone); it is not counted.
        if n > 0 {
            phases.push(at("reloading") - at("fetching"));
            whole.push(elapsed);
            println!(
                "  run {n}: fetch {:.0} ms, render {:.0} ms, write {:.0} ms, swap {:.0} ms",
                at("rendering") - at("fetching"),
                at("writing") - at("rendering"),
                at("swapping") - at("writing"),
                at("reloading") - at("swapping")
            );
        }
        before = head.clone();
        head = r.origin.merge(&synth.path().join(if n % 2 == 0 { "b" } else { "a" }));
    }
    let layers = r.honua.state.lock().unwrap().loaded.as_ref().unwrap()["layers"].as_array().unwrap().len();
    summary(&format!("apply of {layers} layers, fetch to swap (excluding Honua's reload)"), phases);
    summary(&format!("apply of {layers} layers, whole poll incl. the stand-in's reload + checks"), whole);
}

/// Merge → applied, with the agent long-polling as `honua agent` does; `webhooks` or the poller only.
async fn latency(webhooks: bool) {
    let runs = env_or("AGENT_LATENCY_RUNS", 20);
    let interval = env_or("AGENT_POLL_INTERVAL", 5);
    let trees = variants(&common::examples().join("honua-config"));
    let r = rig(trees[0].path(), "development").await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    if !webhooks {
        tokio::spawn(r.service.controller.clone().run_poller(Duration::from_secs(interval), stopped.clone()));
    }
    let agent = Arc::new(Agent::new(r.config.clone()).unwrap());
    let runner = agent.clone();
    tokio::spawn(async move { runner.run(stopped).await });
    let mut before = "0".repeat(40);
    let mut head = r.origin.main_sha();
    let mut times = Vec::new();
    for n in 0..=runs {
        let reloads = r.honua.state.lock().unwrap().reloads;
        let started = Instant::now();
        if webhooks || n == 0 {
            r.service.deliver("push", &format!("lat-{n}"), common::push_payload(&before, &head, "bench")).await;
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while r.honua.state.lock().unwrap().reloads == reloads {
            if Instant::now() > deadline {
                let all = r.store.deployments(&DeploymentFilter { limit: 10, ..Default::default() }).await.unwrap();
                let states: Vec<_> = all.iter().map(|d| (&d.environment, d.state, &d.commit[..7])).collect();
                panic!("merge {n} ({}) never applied: {states:?}", &head[..7]);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if n > 0 {
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        before = head.clone();
        head = r.origin.merge(trees[(n as usize + 1) % 2].path());
        // What GitHub's API reports as the branch head, for the poller (no webhook in that mode).
        r.github.set_branch(common::REPO, "main", &head);
    }
    let _ = stop.send(true);
    let how = if webhooks { "webhooks".to_string() } else { format!("polling only, every {interval} s") };
    summary(&format!("merge to applied ({how})"), times);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Ok(filter) = std::env::var("HONUA_LOG") {
        tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::new(filter)).init();
    }
    if env_or("AGENT_APPLY_RUNS", 10) > 0 {
        apply_time().await;
    }
    latency(true).await;
    latency(false).await;
}
