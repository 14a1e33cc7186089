//! Time from a PR webhook to both check runs completed and the plan comment posted, for the example
//! repository, against the fake GitHub of the tests (real HTTP, real octocrab), SQLite store, one
//! worker. PRs are opened one after another; prints p50 and p99.
//!
//! `cargo bench --bench pr_feedback` (set PR_FEEDBACK_RUNS to change the number of PRs, default 40).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::fake_github::FakeGithub;
use common::service::Service;
use common::{Origin, REPO};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; this harness takes no arguments of its own.
    let runs: u64 = std::env::var("PR_FEEDBACK_RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(40);
    let github = FakeGithub::start().await;
    let origin = Origin::new(&common::examples().join("honua-config"));
    let data = tempfile::tempdir().unwrap();
    let store = honua_gitops::store::open(&format!("sqlite://{}", data.path().join("h.db").display())).await.unwrap();
    let service = Service::start(&github, &origin, store).await;

    let mut times = Vec::new();
    for n in 1..=runs {
        let head =
            origin.push_pr(n, &common::examples().join(if n % 2 == 0 { "honua-config" } else { "honua-config-pr" }));
        let started = Instant::now();
        service.pull_request(&format!("pr-{n}"), "opened", n, &head, &origin.main_sha()).await;
        github
            .wait_for(Duration::from_secs(60), "PR feedback", |gh| {
                let runs = gh.check_runs(&head);
                runs.len() == 2 && runs.iter().all(|r| r.status == "completed") && gh.comments(REPO, n).len() == 1
            })
            .await;
        times.push(started.elapsed());
    }
    times.sort();
    let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)].as_secs_f64() * 1000.0;
    println!(
        "PR feedback over {runs} PRs (webhook → 2 check runs completed + plan comment): p50 {:.0} ms, p99 {:.0} ms",
        pct(0.5),
        pct(0.99)
    );
}
