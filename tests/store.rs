//! One conformance suite for both `Store` implementations. SQLite always runs; PostgreSQL runs when
//! `HONUA_TEST_DATABASE_URL` is set (`.ci/run` sets it), each test in a schema of its own.

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use honua_gitops::store::{JobState, NewDelivery, PrHead, Recorded, Store};

fn delivery(id: &str) -> NewDelivery {
    NewDelivery {
        id: id.into(),
        event: "pull_request".into(),
        repository: Some("city/gis-config".into()),
        payload: br#"{"n":1}"#.to_vec(),
        pr_head: None,
    }
}

fn with_head(id: &str, number: u64, sha: &str, only_if_new: bool) -> NewDelivery {
    NewDelivery { pr_head: Some(PrHead { number, sha: sha.into(), only_if_new }), ..delivery(id) }
}

const LEASE: Duration = Duration::from_secs(30);

async fn a_delivery_is_recorded_once_and_its_job_claimed_once(s: Arc<dyn Store>) {
    let Recorded::New(job) = s.record_delivery(&delivery("d-1"), 1_000).await.unwrap() else { panic!("new") };
    assert_eq!(s.record_delivery(&delivery("d-1"), 2_000).await.unwrap(), Recorded::Duplicate);
    assert_eq!(s.queue_depth().await.unwrap(), 1);
    let claimed = s.claim_job("w1", LEASE, 3_000).await.unwrap().expect("a job");
    assert_eq!((claimed.id, claimed.delivery_id.as_str(), claimed.attempts), (job, "d-1", 1));
    assert_eq!(claimed.payload, br#"{"n":1}"#);
    assert_eq!(claimed.repository.as_deref(), Some("city/gis-config"));
    assert!(s.claim_job("w2", LEASE, 3_001).await.unwrap().is_none(), "a running job is not claimed twice");
    assert!(s.complete_job(job, "w1", 4_000).await.unwrap());
    assert_eq!(s.job(job).await.unwrap().unwrap().state, JobState::Done);
    assert_eq!(s.queue_depth().await.unwrap(), 0);
    assert!(s.claim_job("w2", LEASE, 5_000).await.unwrap().is_none());
}

async fn an_expired_lease_is_taken_over_and_the_old_holder_refused(s: Arc<dyn Store>) {
    s.record_delivery(&delivery("d-2"), 0).await.unwrap();
    let first = s.claim_job("dead-worker", LEASE, 1_000).await.unwrap().unwrap();
    assert!(s.claim_job("w2", LEASE, 1_000 + 29_000).await.unwrap().is_none());
    let again = s.claim_job("w2", LEASE, 1_000 + 31_000).await.unwrap().expect("lease expired");
    assert_eq!((again.id, again.attempts), (first.id, 2));
    assert!(!s.complete_job(first.id, "dead-worker", 40_000).await.unwrap(), "the old holder no longer owns it");
    assert!(s.complete_job(first.id, "w2", 40_000).await.unwrap());
}

async fn failures_retry_later_then_fail_visibly(s: Arc<dyn Store>) {
    s.record_delivery(&delivery("d-3"), 0).await.unwrap();
    let job = s.claim_job("w", LEASE, 0).await.unwrap().unwrap();
    assert!(s.fail_job(job.id, "w", "GitHub 502", Some(10_000), 1).await.unwrap());
    assert!(s.claim_job("w", LEASE, 9_999).await.unwrap().is_none(), "not before its retry time");
    let job = s.claim_job("w", LEASE, 10_000).await.unwrap().unwrap();
    assert_eq!(job.attempts, 2);
    assert!(s.fail_job(job.id, "w", "payload no longer valid", None, 10_001).await.unwrap());
    let status = s.job(job.id).await.unwrap().unwrap();
    assert_eq!(status.state, JobState::Failed);
    assert_eq!(status.last_error.as_deref(), Some("payload no longer valid"));
    assert_eq!(s.queue_depth().await.unwrap(), 0);
    assert!(s.claim_job("w", LEASE, 99_999_999).await.unwrap().is_none());
}

async fn concurrent_claimers_never_share_a_job(s: Arc<dyn Store>) {
    for i in 0..40 {
        s.record_delivery(&delivery(&format!("c-{i}")), 0).await.unwrap();
    }
    let mut tasks = Vec::new();
    for w in 0..4 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some(job) = s.claim_job(&format!("w{w}"), LEASE, 1).await.unwrap() {
                assert!(s.complete_job(job.id, &format!("w{w}"), 2).await.unwrap());
                mine.push(job.id);
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let n = all.len();
    all.dedup();
    assert_eq!((n, all.len()), (40, 40), "every job exactly once");
}

async fn a_polled_head_is_queued_only_if_never_seen(s: Arc<dyn Store>) {
    // The webhook for head `a` arrived: polling must not queue it again, but a new head `b` it must.
    assert!(matches!(s.record_delivery(&with_head("gh-1", 5, "a", false), 0).await.unwrap(), Recorded::New(_)));
    assert_eq!(s.record_delivery(&with_head("poll:5@a", 5, "a", true), 1).await.unwrap(), Recorded::Duplicate);
    assert!(matches!(s.record_delivery(&with_head("poll:5@b", 5, "b", true), 2).await.unwrap(), Recorded::New(_)));
    assert_eq!(s.record_delivery(&with_head("poll:5@b-again", 5, "b", true), 3).await.unwrap(), Recorded::Duplicate);
    // A webhook for a head already seen (reopened, redelivered by hand) is still processed.
    assert!(matches!(s.record_delivery(&with_head("gh-2", 5, "b", false), 4).await.unwrap(), Recorded::New(_)));
    assert_eq!(s.queue_depth().await.unwrap(), 3);
}

async fn readiness(s: Arc<dyn Store>) {
    s.ping().await.unwrap();
}

on_both_stores!(
    a_delivery_is_recorded_once_and_its_job_claimed_once,
    an_expired_lease_is_taken_over_and_the_old_holder_refused,
    failures_retry_later_then_fail_visibly,
    concurrent_claimers_never_share_a_job,
    a_polled_head_is_queued_only_if_never_seen,
    readiness
);
