//! Load and hostile traffic against a real `honua serve` process (SQLite, GitHub App mode against the
//! tests' fake GitHub, which runs in this process). The driver is a separate process from the service, so
//! each side has its own descriptors and the figures are the service's alone.
//!
//! ```text
//! cargo build --release --bin honua --example load
//! target/release/examples/load agents [--agents 10000] [--wait 30]
//! target/release/examples/load webhooks [--rate 1000] [--seconds 60] [--faults] [--history 0]
//! target/release/examples/load slowloris [--connections 10000] [--seconds 30]
//! ```
//!
//! - `agents`: simulated agents, each with its own token, heartbeat and long-poll for production's
//!   desired state as `honua agent` does; once all wait, production's deployment is approved through the
//!   API and the time until each agent has the signed record is measured (fan-out). Pass: every agent got it.
//! - `webhooks`: signed deliveries sent open-loop at a fixed rate (pushes to feature branches, and a few
//!   PRs whose checks run against the fake GitHub); time to 202, then the time for the queue to drain.
//!   `--faults` puts a fault proxy between the service and GitHub (latency, resets, 502s and rate limits).
//!   `--history N` writes N jobs that ended 40 days ago (each with a 4 KB delivery) into the database
//!   before the service starts, for its retention sweep to delete while the deliveries come.
//!   Pass: every delivery accepted, every job done once, the queue drained, the PRs checked.
//! - `slowloris`: connections that send part of a request header and trickle the rest, re-opened as the
//!   service cuts them, while real deliveries and a PR keep coming. Pass: all of those answered.
//!
//! Each prints its figures (with the service's RSS and CPU time from /proc) and exits 1 if it failed.
//!
//! With `HONUA_LOAD_DATABASE_URL=postgres://USER@HOST/DB` the service runs on PostgreSQL instead, in a
//! schema of its own (`honua_load_<pid>`); the schemas of earlier runs are dropped when a run starts.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[allow(dead_code)]
#[path = "../tests/common/fake_github.rs"]
mod fake_github;
#[allow(dead_code)]
#[path = "../tests/common/fault_proxy.rs"]
mod fault_proxy;
#[allow(dead_code)]
#[path = "../tests/common/origin.rs"]
mod origin;
#[allow(dead_code)]
#[path = "../tests/common/processes.rs"]
mod processes;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use fake_github::{FakeGithub, Injected};
use fault_proxy::{Fault, FaultProxy};
use honua_gitops::github::webhook::sign;
use honua_gitops::store::{ApiTokenHash, Role, Store};
use origin::Origin;
use processes::Running;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "load-secret";

#[derive(Parser)]
#[command(about = "Load and hostile traffic against a real `honua serve` (see the source's header)")]
struct Args {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Simulated agents long-polling one service; the time for an approval to reach all of them.
    Agents {
        #[arg(long, default_value_t = 10_000)]
        agents: usize,
        /// The long-poll's `wait` in seconds (`honua agent`'s default is 30).
        #[arg(long, default_value_t = 30)]
        wait: u64,
    },
    /// Signed deliveries at a fixed rate; time to 202 and queue drain.
    Webhooks {
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// A fault proxy between the service and GitHub, and GitHub errors and rate limits.
        #[arg(long)]
        faults: bool,
        /// The service's workers (`HONUA_WORKERS`, default 8).
        #[arg(long, default_value_t = 8)]
        workers: usize,
        /// Jobs that ended 40 days ago, in the database before the service starts (for the retention
        /// sweep to delete during the run).
        #[arg(long, default_value_t = 0)]
        history: u64,
    },
    /// Stalled connections while real deliveries keep coming.
    Slowloris {
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let passed = match Args::parse().scenario {
        Scenario::Agents { agents: n, wait } => agents(n, wait).await,
        Scenario::Webhooks { rate, seconds, faults, workers, history } => {
            webhooks(rate, seconds, faults, workers, history).await
        }
        Scenario::Slowloris { connections, seconds } => slowloris(connections, seconds).await,
    };
    if passed {
        println!("PASS");
        ExitCode::SUCCESS
    } else {
        println!("FAIL");
        ExitCode::FAILURE
    }
}

/// `honua serve` as a child process, with its database and data directory.
struct Service {
    url: String,
    pid: u32,
    db_url: String,
    dir: tempfile::TempDir,
    _process: Running,
}

fn honua_binary() -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/honua");
    assert!(bin.exists(), "{} is missing: run `cargo build --release --bin honua` first", bin.display());
    bin
}

async fn serve(github_url: &str, origin: &Origin, extra: &[(&str, &str)], history: u64) -> Service {
    let dir = tempfile::tempdir().unwrap();
    let port = processes::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let db_url = match std::env::var("HONUA_LOAD_DATABASE_URL") {
        Ok(postgres) => postgres_schema(&postgres).await,
        Err(_) => format!("sqlite://{}", dir.path().join("honua.db").display()),
    };
    if history > 0 {
        fill_history(&db_url, history).await;
    }
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let key = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/test-app-key.pem");
    let child = std::process::Command::new(honua_binary())
        .arg("serve")
        .env("HONUA_LISTEN", format!("127.0.0.1:{port}"))
        .env("HONUA_DATABASE_URL", &db_url)
        .env("HONUA_GITHUB_APP_ID", fake_github::APP_ID.to_string())
        .env("HONUA_GITHUB_PRIVATE_KEY_PATH", key)
        .env("HONUA_GITHUB_WEBHOOK_SECRET", SECRET)
        .env("HONUA_GITHUB_API_URL", github_url)
        .env("HONUA_GIT_URL", format!("file://{}", origin.git_root.display()))
        .env("HONUA_DATA_DIR", dir.path().join("data"))
        .env("HONUA_POLL_INTERVAL", "0")
        .env("HONUA_LOG", "warn")
        // As the service runs in production (a backtrace per error is a debugging aid, not the default).
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .envs(extra.iter().copied())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("honua serve starts");
    let pid = child.id();
    let process = Running(child);
    processes::wait_ready(&reqwest::Client::new(), &url).await;
    Service { url, pid, db_url, dir, _process: process }
}

/// `n` jobs that ended 40 days ago, each with a 4 KB delivery, written straight into the database before
/// the service starts: what more than a month of webhooks leaves for the retention sweep.
async fn fill_history(db_url: &str, n: u64) {
    honua_gitops::store::SqlStore::open(db_url).await.expect("the service's database migrates");
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(db_url).await.expect("the service's database opens");
    let payload = if db_url.starts_with("postgres") {
        "convert_to(repeat(md5(i::text), 128), 'UTF8')"
    } else {
        "randomblob(4096)"
    };
    let at = honua_gitops::store::now_ms() - 40 * 86_400_000;
    let started = Instant::now();
    sqlx::query(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) \
         INSERT INTO deliveries (id, event, repository, payload, received_at) \
         SELECT 'history-' || i, 'push', 'city/gis-config', {payload}, {at} FROM n"
    ))
    .execute(&pool)
    .await
    .expect("history deliveries");
    sqlx::query(
        "INSERT INTO jobs (delivery_id, state, attempts, run_after, created_at, updated_at) \
         SELECT id, 'done', 1, received_at, received_at, received_at FROM deliveries WHERE id LIKE 'history-%'",
    )
    .execute(&pool)
    .await
    .expect("history jobs");
    pool.close().await;
    println!("{n} jobs that ended 40 days ago written in {:.1} s", started.elapsed().as_secs_f64());
}

/// A fresh schema in the PostgreSQL database at `url` (earlier runs' schemas dropped), as the service's
/// database URL.
async fn postgres_schema(url: &str) -> String {
    use sqlx::{Connection, Row};
    let mut conn = sqlx::PgConnection::connect(url).await.expect("HONUA_LOAD_DATABASE_URL is reachable");
    let old = sqlx::query("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'honua\\_load\\_%'")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    for row in old {
        let name: String = row.get(0);
        sqlx::query(&format!("DROP SCHEMA {name} CASCADE")).execute(&mut conn).await.unwrap();
    }
    let schema = format!("honua_load_{}", std::process::id());
    sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&mut conn).await.unwrap();
    let mut with_schema = url::Url::parse(url).expect("HONUA_LOAD_DATABASE_URL is a URL");
    with_schema.query_pairs_mut().append_pair("options", &format!("-c search_path={schema}"));
    println!("PostgreSQL, schema {schema}");
    with_schema.to_string()
}

/// Resident memory (MB) and CPU time used so far (s) of a process, from /proc.
fn usage(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks: f64 = [11, 12].iter().filter_map(|&i| fields.get(i)).filter_map(|v| v.parse::<f64>().ok()).sum();
    (rss_kb / 1024.0, ticks / 100.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn summary(label: &str, mut times: Vec<Duration>) -> String {
    times.sort();
    format!(
        "{label}: n={} p50={:.1} ms p99={:.1} ms max={:.1} ms",
        times.len(),
        percentile(&times, 0.5).as_secs_f64() * 1000.0,
        percentile(&times, 0.99).as_secs_f64() * 1000.0,
        times.last().copied().unwrap_or_default().as_secs_f64() * 1000.0
    )
}

async fn token(store: &Arc<dyn Store>, name: &str, role: Role, environment: Option<&str>) -> String {
    let token = honua_gitops::server::api::new_token().unwrap();
    let hash = honua_gitops::server::api::token_hash(&token);
    store.create_token(name, &ApiTokenHash { role, environment, hash: &hash }, 0).await.unwrap();
    token
}

/// Posts a signed delivery; the status (0 when the request failed) and the time to the answer.
async fn deliver(client: &reqwest::Client, url: &str, event: &str, id: &str, body: Vec<u8>) -> (u16, Duration) {
    let started = Instant::now();
    let status = client
        .post(format!("{url}/webhooks/github"))
        .header("X-GitHub-Event", event)
        .header("X-GitHub-Delivery", id)
        .header("X-Hub-Signature-256", sign(SECRET.as_bytes(), &body))
        .body(body)
        .send()
        .await
        .map_or(0, |r| r.status().as_u16());
    (status, started.elapsed())
}

/// A push to a feature branch: accepted, queued and handled without any GitHub request.
fn feature_push(n: u64) -> Vec<u8> {
    let mut body: serde_json::Value =
        serde_json::from_slice(&origin::push_payload(&"1".repeat(40), &format!("{n:040x}"), "alice")).unwrap();
    body["ref"] = format!("refs/heads/feature-{}", n % 50).into();
    serde_json::to_vec(&body).unwrap()
}

async fn agents(n: usize, wait: u64) -> bool {
    let github = FakeGithub::start().await;
    let tree = origin::without_windows(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/honua-config"));
    let origin = Origin::new(tree.path());
    let service = serve(&github.url(), &origin, &[], 0).await;
    let store = honua_gitops::store::open(&service.db_url).await.unwrap();
    let approver = token(&store, "mike", Role::Approver, None).await;
    let mut tokens = Vec::with_capacity(n);
    for i in 0..n {
        tokens.push(token(&store, &format!("edge-{i:05}"), Role::Agent, Some("production")).await);
    }
    println!("{n} agent tokens created");

    let client = reqwest::Client::new();
    let push = origin::push_payload(&"0".repeat(40), &origin.main_sha(), "alice");
    assert_eq!(deliver(&client, &service.url, "push", "load-push", push).await.0, 202);
    let deployment = loop {
        let list: serde_json::Value = client
            .get(format!("{}/api/v1/deployments?environment=production&state=awaiting_approval", service.url))
            .bearer_auth(&approver)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(id) = list["deployments"][0]["id"].as_str() {
            break id.to_string();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("production deployment {deployment} awaits approval");

    let waiting = Arc::new(AtomicUsize::new(0));
    let errors: Arc<Mutex<std::collections::BTreeMap<String, usize>>> = Default::default();
    let approved_at: Arc<std::sync::OnceLock<Instant>> = Default::default();
    let received: Arc<Mutex<Vec<Duration>>> = Default::default();
    let agents_client = reqwest::Client::builder().pool_max_idle_per_host(usize::MAX).build().unwrap();
    for (i, token) in tokens.into_iter().enumerate() {
        let (client, url) = (agents_client.clone(), service.url.clone());
        let (waiting, errors, approved_at, received) =
            (waiting.clone(), errors.clone(), approved_at.clone(), received.clone());
        tokio::spawn(async move {
            let mut etag: Option<String> = None;
            let mut counted = false;
            loop {
                let heartbeat = serde_json::json!({"health": "healthy", "version": "load", "sync": "unknown"});
                let _ = client
                    .post(format!("{url}/api/v1/agent/heartbeat"))
                    .bearer_auth(&token)
                    .json(&heartbeat)
                    .send()
                    .await;
                let mut request = client
                    .get(format!("{url}/api/v1/agent/desired?environment=production&wait={wait}"))
                    .bearer_auth(&token)
                    .timeout(Duration::from_secs(wait + 10));
                if let Some(tag) = &etag {
                    request = request.header("If-None-Match", tag);
                    if !counted {
                        counted = true;
                        waiting.fetch_add(1, Ordering::SeqCst);
                    }
                }
                match request.send().await {
                    Ok(r) if r.status() == 200 && approved_at.get().is_some() => {
                        let took = approved_at.get().unwrap().elapsed();
                        received.lock().unwrap().push(took);
                        return;
                    }
                    Ok(r) if r.status().is_success() || r.status() == 304 => {
                        if let Some(tag) = r.headers().get("etag").and_then(|v| v.to_str().ok()) {
                            etag = Some(tag.to_string());
                        }
                    }
                    failed => {
                        let kind = match failed {
                            Ok(r) => format!("HTTP {}", r.status().as_u16()),
                            Err(e) if e.is_timeout() => "timeout".into(),
                            Err(e) if e.is_connect() => "connect".into(),
                            Err(_) => "other".into(),
                        };
                        *errors.lock().unwrap().entry(kind).or_default() += 1;
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        if i % 500 == 499 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while waiting.load(Ordering::SeqCst) < n {
        if Instant::now() > deadline {
            println!("only {} of {n} agents reached their long-poll", waiting.load(Ordering::SeqCst));
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Into the long-poll they just sent, then a whole long-poll period at rest (renewals, heartbeats).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, cpu_before) = usage(service.pid);
    let idle = Instant::now();
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let (rss_idle, cpu_idle_end) = usage(service.pid);
    let idle_cpu = (cpu_idle_end - cpu_before) / idle.elapsed().as_secs_f64() * 100.0;
    println!("{n} agents long-polling: service RSS {rss_idle:.1} MB, CPU {idle_cpu:.1}% of one core over {wait} s");

    approved_at.set(Instant::now()).unwrap();
    let approved = client
        .post(format!("{}/api/v1/deployments/{deployment}/approve", service.url))
        .bearer_auth(&approver)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    if !approved.status().is_success() {
        println!("approval refused: {} {}", approved.status(), approved.text().await.unwrap_or_default());
        return false;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while received.lock().unwrap().len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (rss_after, cpu_after) = usage(service.pid);
    let times = received.lock().unwrap().clone();
    println!("{}", summary("approval -> agent has the signed record", times.clone()));
    println!(
        "fan-out: service CPU {:.2} s, RSS {rss_after:.1} MB; failed polls (retried after 1 s): {:?}",
        cpu_after - cpu_idle_end,
        errors.lock().unwrap()
    );
    drop(service.dir);
    times.len() == n
}

/// The service's `/metrics`: `honua_queue_depth`, and the sum of `honua_jobs_total` with `outcome`.
async fn metrics(client: &reqwest::Client, url: &str) -> (f64, f64, f64) {
    let text = match client.get(format!("{url}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let value = |line: &str| line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let sum = |outcome: &str| {
        text.lines()
            .filter(|l| l.starts_with("honua_jobs_total{") && l.contains(&format!("outcome=\"{outcome}\"")))
            .map(value)
            .sum::<f64>()
    };
    let depth = text.lines().find(|l| l.starts_with("honua_queue_depth")).map(value).unwrap_or(f64::NAN);
    (depth, sum("done"), sum("failed"))
}

/// Polls `honua_jobs_pruned_total` until it reaches `n`; how long that took from the call.
async fn swept(client: reqwest::Client, url: String, n: u64) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(1800) {
        let text = match client.get(format!("{url}/metrics")).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let pruned = text
            .lines()
            .find_map(|l| l.strip_prefix("honua_jobs_pruned_total "))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        if pruned as u64 >= n {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

fn checked(github: &FakeGithub, sha: &str) -> bool {
    let runs = github.check_runs(sha);
    runs.len() == 2 && runs.iter().all(|r| r.status == "completed")
}

async fn webhooks(rate: u64, seconds: u64, faults: bool, workers: usize, history: u64) -> bool {
    let github = FakeGithub::start().await;
    let origin = Origin::new(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/honua-config"));
    let proxy = FaultProxy::for_url(&github.url()).await;
    let workers = workers.to_string();
    let extra = [("HONUA_GITHUB_TIMEOUT", "2"), ("HONUA_WORKERS", workers.as_str())];
    let service = serve(&proxy.rewrite(&github.url()), &origin, &extra, history).await;
    let client = reqwest::Client::builder().pool_max_idle_per_host(usize::MAX).build().unwrap();
    let sweep = (history > 0).then(|| tokio::spawn(swept(client.clone(), service.url.clone(), history)));
    let prs: Vec<(u64, String)> = (1..=5)
        .map(|n| {
            let tree = if n % 2 == 0 { "examples/honua-config-pr" } else { "examples/honua-config" };
            (n, origin.push_pr(n, &Path::new(env!("CARGO_MANIFEST_DIR")).join(tree)))
        })
        .collect();
    let total = rate * seconds;
    let pr_every = (total / prs.len() as u64).max(1);
    let answers: Arc<Mutex<Vec<Duration>>> = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
    let refused = Arc::new(AtomicUsize::new(0));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(4096));
    let mut ticker = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let (_, cpu_start) = usage(service.pid);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..total {
        ticker.tick().await;
        if faults && n % (rate * 10) == rate * 5 {
            // Every 10 s: GitHub answers errors and a rate limit, and the network to it resets for 2 s.
            github.inject([Injected::error(502), Injected::too_many_requests(1), Injected::error(500)]);
            proxy.set(Fault::Reset);
        } else if faults && n % (rate * 10) == rate * 7 {
            proxy.set(Fault::Latency(Duration::from_millis(50)));
        }
        let (event, body) = match n % pr_every {
            0 => {
                let (number, head) = &prs[(n / pr_every) as usize % prs.len()];
                ("pull_request", origin::pull_request_payload("opened", *number, head, &origin.main_sha()))
            }
            _ => ("push", feature_push(n)),
        };
        let permit = in_flight.clone().acquire_owned().await.unwrap();
        let (client, url, answers, refused) = (client.clone(), service.url.clone(), answers.clone(), refused.clone());
        tasks.spawn(async move {
            let (status, took) = deliver(&client, &url, event, &format!("load-{n}"), body).await;
            if status == 202 {
                answers.lock().unwrap().push(took);
            } else {
                refused.fetch_add(1, Ordering::SeqCst);
            }
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let sent_in = started.elapsed();
    proxy.set(Fault::Pass);
    let (rss_sent, cpu_sent) = usage(service.pid);
    let times = answers.lock().unwrap().clone();
    println!(
        "{} deliveries in {:.1} s ({:.0}/s offered {rate}/s){}",
        total,
        sent_in.as_secs_f64(),
        total as f64 / sent_in.as_secs_f64(),
        if faults { ", GitHub behind faults" } else { "" }
    );
    println!("{}", summary("time to 202", times.clone()));
    println!(
        "while sending: service CPU {:.0}% of one core, RSS {rss_sent:.1} MB",
        (cpu_sent - cpu_start) / sent_in.as_secs_f64() * 100.0
    );
    let drain_started = Instant::now();
    let deadline = drain_started + Duration::from_secs(1800);
    let (mut depth, mut done, mut failed) = metrics(&client, &service.url).await;
    println!("queue after the last delivery: {depth}");
    while depth != 0.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        (depth, done, failed) = metrics(&client, &service.url).await;
    }
    let all_checked = prs.iter().all(|(_, head)| checked(&github, head));
    let (rss_drained, _) = usage(service.pid);
    println!(
        "queue drained in {:.1} s after the last delivery (service RSS then {rss_drained:.1} MB); jobs done {}, failed {}; PRs checked: {all_checked}",
        drain_started.elapsed().as_secs_f64(),
        done as u64,
        failed as u64
    );
    let refused = refused.load(Ordering::SeqCst);
    if refused > 0 {
        println!("{refused} deliveries were not accepted");
    }
    let swept = match sweep {
        Some(sweep) => match sweep.await.unwrap() {
            Some(took) => {
                println!(
                    "retention sweep: {history} ended jobs deleted {:.1} s after the service was ready",
                    took.as_secs_f64()
                );
                true
            }
            None => {
                println!("retention sweep: not every ended job was deleted in 30 minutes");
                false
            }
        },
        None => true,
    };
    refused == 0 && depth == 0.0 && done as u64 == total && failed == 0.0 && all_checked && swept
}

/// Opens connections that send part of a request header, then one more byte every 5 s; each one the
/// service cuts is opened again at once. Counts connections open now and cut so far.
fn stalled_connections(addr: std::net::SocketAddr, n: usize, open: Arc<AtomicUsize>, cut: Arc<AtomicUsize>) {
    for i in 0..n {
        let (open, cut) = (open.clone(), cut.clone());
        tokio::spawn(async move {
            // Spread out so the listen backlog is not the thing being measured.
            tokio::time::sleep(Duration::from_millis((i / 500) as u64 * 50)).await;
            loop {
                let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                if stream.write_all(b"POST /webhooks/github HTTP/1.1\r\nHost: honua\r\nX-Slow: ").await.is_err() {
                    continue;
                }
                open.fetch_add(1, Ordering::SeqCst);
                let mut byte = [0u8; 1];
                loop {
                    tokio::select! {
                        read = stream.read(&mut byte) => {
                            if matches!(read, Ok(0) | Err(_)) {
                                break;
                            }
                        }
                        _ = tokio::time::sleep(Duration::from_secs(5)) => {
                            if stream.write_all(b"a").await.is_err() {
                                break;
                            }
                        }
                    }
                }
                open.fetch_sub(1, Ordering::SeqCst);
                cut.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
}

async fn slowloris(connections: usize, seconds: u64) -> bool {
    let github = FakeGithub::start().await;
    let origin = Origin::new(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/honua-config"));
    let service = serve(&github.url(), &origin, &[], 0).await;
    let addr: std::net::SocketAddr = service.url.trim_start_matches("http://").parse().unwrap();
    let (open, cut) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    stalled_connections(addr, connections, open.clone(), cut.clone());
    let deadline = Instant::now() + Duration::from_secs(120);
    while open.load(Ordering::SeqCst) < connections * 95 / 100 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("{} stalled connections open", open.load(Ordering::SeqCst));
    let (rss_before, cpu_before) = usage(service.pid);

    let client = reqwest::Client::new();
    let head = origin.push_pr(1, &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/honua-config-pr"));
    let pr = origin::pull_request_payload("opened", 1, &head, &origin.main_sha());
    let (pr_status, _) = deliver(&client, &service.url, "pull_request", "loris-pr", pr).await;
    let mut times = Vec::new();
    let mut failures = 0;
    let mut least_open = usize::MAX;
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        let (status, took) = deliver(&client, &service.url, "push", &format!("loris-{n}"), feature_push(n)).await;
        if status == 202 {
            times.push(took);
        } else {
            failures += 1;
        }
        least_open = least_open.min(open.load(Ordering::SeqCst));
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pr_checked = {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !checked(&github, &head) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        checked(&github, &head)
    };
    let (rss, cpu) = usage(service.pid);
    println!(
        "during {seconds} s: at least {least_open} stalled connections open at any time, {} cut by the header timeout and re-opened",
        cut.load(Ordering::SeqCst)
    );
    println!("{}", summary("real deliveries, time to 202", times));
    println!(
        "real deliveries refused or failed: {failures}; PR delivery {pr_status}, its checks completed: {pr_checked}"
    );
    println!(
        "service: RSS {rss_before:.1} -> {rss:.1} MB, CPU {:.0}% of one core",
        (cpu - cpu_before) / started.elapsed().as_secs_f64() * 100.0
    );
    failures == 0 && pr_status == 202 && pr_checked
}
