//! Durable webhook ingest on loopback: signed `pull_request` deliveries (a real 25 KB payload, each with
//! its own delivery id) posted by concurrent clients to the webhook route, which verifies, parses and
//! records each one in the store before answering 202. Client and service share one process and the
//! machine's cores. Prints deliveries/s and the p50/p99 time to 202.
//!
//! `cargo run --release --example ingest_load -- [sqlite|postgres://…] [deliveries] [concurrency]`

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::{Duration, Instant};

use honua_gitops::github::webhook::{sign, WebhookSecret};
use honua_gitops::server::{router, AppState};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let backend = args.next().unwrap_or_else(|| "sqlite".into());
    let total: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5000);
    let concurrency: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(32);
    let dir = tempfile::tempdir().unwrap();
    let url = if backend == "sqlite" {
        format!("sqlite://{}", dir.path().join("ingest.db").display())
    } else {
        backend.clone()
    };
    let store = honua_gitops::store::open(&url).await.expect("store");
    let state = AppState {
        store: store.clone(),
        webhook_secrets: Arc::new(WebhookSecret::parse_list("load-secret")),
        jobs_queued: Default::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/webhooks/github", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });

    let fixtures: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string("tests/fixtures/webhooks/pull_request.json").unwrap()).unwrap();
    let body = Arc::new(serde_json::to_vec(fixtures.iter().find(|p| p["action"] == "opened").unwrap()).unwrap());
    let signature = Arc::new(sign(b"load-secret", &body));
    let run = format!("{}", chrono::Utc::now().timestamp_micros());
    let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build().unwrap();

    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (client, endpoint, body, signature, run) =
            (client.clone(), endpoint.clone(), body.clone(), signature.clone(), run.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = worker;
            while i < total {
                let t = Instant::now();
                let resp = client
                    .post(&endpoint)
                    .header("X-GitHub-Event", "pull_request")
                    .header("X-GitHub-Delivery", format!("{run}-{i}"))
                    .header("X-Hub-Signature-256", signature.as_str())
                    .body(body.as_ref().clone())
                    .send()
                    .await
                    .expect("request");
                assert_eq!(resp.status(), 202, "delivery {i}");
                latencies.push(t.elapsed());
                i += concurrency;
            }
            latencies
        }));
    }
    let mut latencies: Vec<Duration> = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let queued = store.queue_depth().await.unwrap();
    println!(
        "{} deliveries ({} KB each), {concurrency} concurrent clients, {}: {:.0} deliveries/s, time to 202 p50 {:.1} ms, p99 {:.1} ms; {queued} jobs queued",
        latencies.len(),
        body.len() / 1024,
        if backend == "sqlite" { "SQLite" } else { "PostgreSQL" },
        latencies.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0
    );
    assert_eq!(queued as usize, total, "every accepted delivery is queued");
}
