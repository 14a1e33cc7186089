//! Prometheus metrics at `GET /metrics`: webhook deliveries by event and outcome, jobs by event and
//! outcome, job duration, and the queue depth (read from the store at each scrape). The GitHub client
//! adds `honua_github_api_calls_total{method,status}`, `honua_github_rate_limit_remaining{resource}`,
//! `honua_github_retries_total`, `honua_github_rate_limited_total` and
//! `honua_github_content_limit_waits_total`; the controller `honua_pr_heads_coalesced_total`,
//! `honua_push_heads_coalesced_total`, `honua_planning_hold_wait_seconds` and `honua_jobs_pruned_total`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub const DELIVERIES: &str = "honua_webhook_deliveries_total";
pub use crate::controller::{JOBS, JOB_SECONDS, PLANNING_HOLD_SECONDS};
pub const QUEUE_DEPTH: &str = "honua_queue_depth";

/// The process-wide recorder, installed on first use. If another recorder is already installed (an
/// embedding application's), ours still renders what it records through this handle: nothing.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(JOB_SECONDS.into()),
                &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0],
            )
            .expect("static buckets are valid")
            // Mostly zero (nobody else plans the repository); otherwise as long as another replica's plan.
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(PLANNING_HOLD_SECONDS.into()),
                &[0.001, 0.01, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 300.0],
            )
            .expect("static buckets are valid")
            .build_recorder();
        let handle = recorder.handle();
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

pub fn delivery(event: &str, outcome: &'static str) {
    // The event label comes from a header: bounded to the names GitHub sends, so a client cannot
    // create unbounded label values.
    let event = if event.len() <= 40 && event.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        event.to_string()
    } else {
        "other".into()
    };
    metrics::counter!(DELIVERIES, "event" => event, "outcome" => outcome).increment(1);
}
