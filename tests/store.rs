//! One conformance suite for both `Store` implementations. SQLite always runs; PostgreSQL runs when
//! `HONUA_TEST_DATABASE_URL` is set (`.ci/run` sets it), each test in a schema of its own.

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use honua_gitops::plan::signing::{Signed, Via};
use honua_gitops::store::{
    ApiTokenHash, Approval, AuditLog, Deployment, DeploymentFilter, DeploymentState, Gate, JobState, NewAudit,
    NewDelivery, NewDeployment, PrHead, Recorded, Role, Store,
};

fn delivery(id: &str) -> NewDelivery {
    NewDelivery {
        id: id.into(),
        event: "pull_request".into(),
        repository: Some("city/gis-config".into()),
        payload: br#"{"n":1}"#.to_vec(),
        pr_head: None,
        deploys: false,
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
    let claimed = s.claim_job("w1", LEASE, 3_000, false).await.unwrap().expect("a job");
    assert_eq!((claimed.id, claimed.delivery_id.as_str(), claimed.attempts), (job, "d-1", 1));
    assert_eq!(claimed.payload, br#"{"n":1}"#);
    assert_eq!(claimed.repository.as_deref(), Some("city/gis-config"));
    assert!(s.claim_job("w2", LEASE, 3_001, false).await.unwrap().is_none(), "a running job is not claimed twice");
    assert!(s.complete_job(job, "w1", 4_000).await.unwrap());
    assert_eq!(s.job(job).await.unwrap().unwrap().state, JobState::Done);
    assert_eq!(s.queue_depth().await.unwrap(), 0);
    assert!(s.claim_job("w2", LEASE, 5_000, false).await.unwrap().is_none());
}

async fn an_expired_lease_is_taken_over_and_the_old_holder_refused(s: Arc<dyn Store>) {
    s.record_delivery(&delivery("d-2"), 0).await.unwrap();
    let first = s.claim_job("dead-worker", LEASE, 1_000, false).await.unwrap().unwrap();
    assert!(s.claim_job("w2", LEASE, 1_000 + 29_000, false).await.unwrap().is_none());
    let again = s.claim_job("w2", LEASE, 1_000 + 31_000, false).await.unwrap().expect("lease expired");
    assert_eq!((again.id, again.attempts), (first.id, 2));
    assert!(!s.complete_job(first.id, "dead-worker", 40_000).await.unwrap(), "the old holder no longer owns it");
    assert!(s.complete_job(first.id, "w2", 40_000).await.unwrap());
}

/// The deployment lane's claim takes the oldest ready job of deployment work, past older jobs of other
/// work, and one whose lease ran out too; none of it ready is `None`. An unnarrowed claim still takes
/// the oldest of all.
async fn the_deployment_lane_claims_deployment_work_only(s: Arc<dyn Store>) {
    s.record_delivery(&delivery("pr-1"), 0).await.unwrap();
    let push = NewDelivery { event: "push".into(), deploys: true, ..delivery("push-1") };
    let Recorded::New(push_job) = s.record_delivery(&push, 1).await.unwrap() else { panic!("new") };
    s.record_delivery(&delivery("pr-2"), 2).await.unwrap();
    let merged = NewDelivery { deploys: true, ..delivery("merged-1") };
    let Recorded::New(merged_job) = s.record_delivery(&merged, 3).await.unwrap() else { panic!("new") };

    let first = s.claim_job("deploy", LEASE, 1_000, true).await.unwrap().expect("the push");
    assert_eq!((first.id, first.event.as_str()), (push_job, "push"));
    let second = s.claim_job("deploy", LEASE, 1_000, true).await.unwrap().expect("the merged pull request");
    assert_eq!((second.id, second.delivery_id.as_str()), (merged_job, "merged-1"));
    assert!(s.claim_job("deploy", LEASE, 1_000, true).await.unwrap().is_none(), "only PR checks are left");
    assert!(s.complete_job(second.id, "deploy", 1_000).await.unwrap());

    // The push's worker vanished: its lease runs out, and the lane takes it over.
    let again = s.claim_job("deploy-2", LEASE, 1_000 + 31_000, true).await.unwrap().expect("taken over");
    assert_eq!((again.id, again.attempts), (push_job, 2));
    let any = s.claim_job("w", LEASE, 32_000, false).await.unwrap().expect("a PR job");
    assert_eq!((any.delivery_id.as_str(), any.event.as_str()), ("pr-1", "pull_request"));
}

/// A job whose worker vanished twice (its lease ran out while running, twice) is claimed as quarantined;
/// retries after failures are not takeovers.
async fn takeovers_are_counted_and_the_second_quarantines(s: Arc<dyn Store>) {
    s.record_delivery(&delivery("d-q"), 0).await.unwrap();
    let first = s.claim_job("w1", LEASE, 0, false).await.unwrap().unwrap();
    assert_eq!((first.takeovers, first.quarantined()), (0, false));
    // A failure with a retry is not a takeover.
    assert!(s.fail_job(first.id, "w1", "GitHub 502", Some(1_000), 1).await.unwrap());
    let retried = s.claim_job("w1", LEASE, 1_000, false).await.unwrap().unwrap();
    assert_eq!((retried.attempts, retried.takeovers), (2, 0));
    // The worker dies: its lease runs out and another takes the job over, twice.
    let once = s.claim_job("w2", LEASE, 1_000 + 31_000, false).await.unwrap().unwrap();
    assert_eq!((once.takeovers, once.quarantined()), (1, false));
    let twice = s.claim_job("w3", LEASE, 1_000 + 62_000, false).await.unwrap().unwrap();
    assert_eq!((twice.id, twice.takeovers, twice.quarantined()), (first.id, 2, true));
    assert!(s.fail_job(twice.id, "w3", "the job stopped its worker 2 times; quarantined", None, 70_000).await.unwrap());
    let status = s.job(twice.id).await.unwrap().unwrap();
    assert_eq!(status.state, JobState::Failed);
    assert!(s.claim_job("w4", LEASE, 99_999_999, false).await.unwrap().is_none(), "never run again");
}

async fn failures_retry_later_then_fail_visibly(s: Arc<dyn Store>) {
    s.record_delivery(&delivery("d-3"), 0).await.unwrap();
    let job = s.claim_job("w", LEASE, 0, false).await.unwrap().unwrap();
    assert!(s.fail_job(job.id, "w", "GitHub 502", Some(10_000), 1).await.unwrap());
    assert!(s.claim_job("w", LEASE, 9_999, false).await.unwrap().is_none(), "not before its retry time");
    let job = s.claim_job("w", LEASE, 10_000, false).await.unwrap().unwrap();
    assert_eq!(job.attempts, 2);
    assert!(s.fail_job(job.id, "w", "payload no longer valid", None, 10_001).await.unwrap());
    let status = s.job(job.id).await.unwrap().unwrap();
    assert_eq!(status.state, JobState::Failed);
    assert_eq!(status.last_error.as_deref(), Some("payload no longer valid"));
    assert_eq!(s.queue_depth().await.unwrap(), 0);
    assert!(s.claim_job("w", LEASE, 99_999_999, false).await.unwrap().is_none());
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
            while let Some(job) = s.claim_job(&format!("w{w}"), LEASE, 1, false).await.unwrap() {
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

/// Jobs that ended before the cut are deleted with their deliveries, a batch at a time; a job that ended
/// later, or has not ended (queued, running, even if older), stays with its delivery.
async fn ended_jobs_are_pruned_with_their_deliveries(s: Arc<dyn Store>) {
    async fn claimed(s: &Arc<dyn Store>, id: &str) -> i64 {
        let Recorded::New(job) = s.record_delivery(&delivery(id), 100).await.unwrap() else { panic!("new") };
        assert_eq!(s.claim_job("w", LEASE, 100, false).await.unwrap().unwrap().id, job);
        job
    }
    let mut ended_early = Vec::new();
    for i in 0..5 {
        let job = claimed(&s, &format!("e-{i}")).await;
        if i % 2 == 0 {
            assert!(s.complete_job(job, "w", 200).await.unwrap());
        } else {
            assert!(s.fail_job(job, "w", "for good", None, 200).await.unwrap());
        }
        ended_early.push(job);
    }
    let ended_late = claimed(&s, "late").await;
    assert!(s.complete_job(ended_late, "w", 5_000).await.unwrap());
    let running = claimed(&s, "running").await;
    let Recorded::New(queued) = s.record_delivery(&delivery("queued"), 100).await.unwrap() else { panic!("new") };

    assert_eq!(s.prune_jobs(1_000, 3).await.unwrap(), 3, "a batch at most");
    assert_eq!(s.prune_jobs(1_000, 3).await.unwrap(), 2, "then the rest");
    assert_eq!(s.prune_jobs(1_000, 3).await.unwrap(), 0);
    for job in ended_early {
        assert!(s.job(job).await.unwrap().is_none(), "job {job} ended before the cut");
    }
    for job in [ended_late, running, queued] {
        assert!(s.job(job).await.unwrap().is_some(), "job {job} stays");
    }
    assert_eq!(s.queue_depth().await.unwrap(), 2);
    // The deliveries went with their jobs (their ids are new again); the others' are still known.
    assert!(matches!(s.record_delivery(&delivery("e-0"), 6_000).await.unwrap(), Recorded::New(_)));
    for kept in ["late", "running", "queued"] {
        assert_eq!(s.record_delivery(&delivery(kept), 6_000).await.unwrap(), Recorded::Duplicate, "{kept}");
    }
}

async fn readiness(s: Arc<dyn Store>) {
    s.ping().await.unwrap();
}

fn new_deployment(id: &str, env: &str, sequence: i64, state: DeploymentState) -> NewDeployment {
    NewDeployment {
        deployment: Deployment {
            id: id.into(),
            repository: "city/gis-config".into(),
            environment: env.into(),
            sequence,
            commit: format!("{sequence:040}").into(),
            from_commit: None,
            plan_digest: format!("sha256:{sequence}"),
            plan: serde_json::json!({"environment": env}),
            state,
            gate: Gate::Approval,
            reasons: vec!["autoApprove is false for this environment".into()],
            windows: Default::default(),
            safety: None,
            cause: honua_gitops::deployment::Cause::Push,
            signed: None,
            expires_at: None,
            created_at: 0,
            updated_at: 0,
        },
        notifications: honua_gitops::policy::Notifications::default(),
        approvals: Vec::new(),
        actor: "alice".into(),
        message: "planned".into(),
    }
}

/// Creates a deployment awaiting approval (`new_deployment`) at `at`; returns what it superseded.
async fn superseding(s: &Arc<dyn Store>, id: &str, env: &str, sequence: i64, at: i64) -> Vec<String> {
    let new = new_deployment(id, env, sequence, DeploymentState::AwaitingApproval);
    s.create_deployment(&new, at).await.unwrap().superseded().to_vec()
}

/// A commit planned twice at once (a webhook and a poll, or two replicas) makes one deployment per
/// environment: a push deployment of a commit and plan that has not started is not created again,
/// however many try at once. A rollback to that commit is (it is asked for).
async fn a_commit_planned_twice_at_once_makes_one_deployment(s: Arc<dyn Store>) {
    use honua_gitops::store::Created;
    let awaiting = DeploymentState::AwaitingApproval;
    s.next_sequence("city/gis-config", "production").await.unwrap();
    let attempts = (0..8).map(|i| {
        let s = s.clone();
        let mut new = new_deployment(&format!("prod-{i}"), "production", 7, awaiting);
        new.deployment.sequence = 7 + i;
        tokio::spawn(async move { s.create_deployment(&new, 10).await.unwrap() })
    });
    let outcomes: Vec<Created> =
        futures_util::future::join_all(attempts).await.into_iter().map(Result::unwrap).collect();
    let created = outcomes.iter().filter(|o| matches!(o, Created::New { .. })).count();
    assert_eq!(created, 1, "{outcomes:?}");
    let all = s.deployments(&DeploymentFilter { limit: 100, ..Default::default() }).await.unwrap();
    let live: Vec<_> = all.iter().filter(|d| d.state == awaiting).collect();
    assert_eq!(live.len(), 1, "{all:#?}");
    assert!(outcomes.iter().all(|o| match o {
        Created::AlreadyPlanned(id) => id == live[0].id.as_str(),
        Created::New { superseded } => superseded.is_empty(),
    }));

    let mut rollback = new_deployment("prod-rollback", "production", 7, DeploymentState::Approved);
    rollback.deployment.cause = honua_gitops::deployment::Cause::Rollback;
    rollback.deployment.sequence = 20;
    assert_eq!(
        s.create_deployment(&rollback, 20).await.unwrap(),
        Created::New { superseded: vec![live[0].id.to_string()] }
    );
}

/// One planner at a time per repository: a second hold waits until the first is released, or dropped
/// (a task cancelled, a replica gone); another repository's hold does not wait.
async fn a_repository_is_held_by_one_planner_at_a_time(s: Arc<dyn Store>) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let repo = "city/gis-config".to_string();
    let first = s.hold_repository(&repo).await.unwrap();
    s.hold_repository(&format!("{repo}-other")).await.unwrap().release().await.unwrap();

    let released = Arc::new(AtomicBool::new(false));
    let second = tokio::spawn({
        let (s, repo, released) = (s.clone(), repo.clone(), released.clone());
        async move {
            let hold = s.hold_repository(&repo).await.unwrap();
            (hold, released.load(Ordering::SeqCst))
        }
    });
    // Time for a hold that does not wait to be taken; one that waits is not.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!second.is_finished(), "the second planner waits for the first");
    released.store(true, Ordering::SeqCst);
    first.release().await.unwrap();
    let (hold, after_release) = second.await.unwrap();
    assert!(after_release, "taken only once the first was released");

    drop(hold);
    let third = tokio::time::timeout(Duration::from_secs(60), s.hold_repository(&repo)).await;
    third.expect("a dropped hold lets go").unwrap().release().await.unwrap();
}

async fn deployments_supersede_unstarted_ones_and_transitions_are_compare_and_set(s: Arc<dyn Store>) {
    let seq = [
        s.next_sequence("city/gis-config", "production").await.unwrap(),
        s.next_sequence("city/gis-config", "production").await.unwrap(),
        s.next_sequence("city/gis-config", "staging").await.unwrap(),
    ];
    assert_eq!(seq, [1, 2, 1], "per environment, never handed out twice");

    let awaiting = DeploymentState::AwaitingApproval;
    assert!(superseding(&s, "prod-1", "production", 1, 10).await.is_empty());
    assert!(superseding(&s, "stage-1", "staging", 1, 10).await.is_empty());
    // A started one is never superseded; an unstarted one is.
    assert!(s.transition("prod-1", DeploymentState::Rejected, "bob", "no", 11).await.unwrap());
    assert!(!s.transition("prod-1", DeploymentState::Approved, "bob", "late", 12).await.unwrap(), "CAS");
    assert!(superseding(&s, "prod-2", "production", 2, 20).await.is_empty());
    assert_eq!(superseding(&s, "prod-3", "production", 3, 30).await, ["prod-2"]);
    assert_eq!(s.deployment("prod-2").await.unwrap().unwrap().state, DeploymentState::Superseded);
    assert_eq!(s.deployment("prod-1").await.unwrap().unwrap().state, DeploymentState::Rejected);
    assert_eq!(s.deployment("stage-1").await.unwrap().unwrap().state, awaiting, "other environments untouched");

    // Approval: recorded with the signed record in one step, only from the expected states.
    let approval =
        Approval { actor: "mike".into(), via: Via::Api, plan_digest: "sha256:3".into(), breaking: false, at: 40 };
    let signed = Signed { record: "{}".into(), signature: "ab".into() };
    assert!(s.approve("prod-3", &approval, &signed, "approved by mike").await.unwrap());
    assert!(!s.approve("prod-3", &approval, &signed, "again").await.unwrap());
    let d = s.deployment("prod-3").await.unwrap().unwrap();
    assert_eq!((d.state, d.signed), (DeploymentState::Approved, Some(signed)));
    assert_eq!(s.approvals("prod-3").await.unwrap(), [approval]);
    assert!(s.deployment("nope").await.unwrap().is_none());

    let listed = s
        .deployments(&DeploymentFilter {
            environment: Some("production".into()),
            states: DeploymentState::UNSTARTED.to_vec(),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["prod-3"]);

    // The audit trail of prod-2: created, decided by the policy, superseded, each with actor and time.
    let trail: Vec<_> = s
        .audit(0, Some("prod-2"), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.from_state, e.to_state, e.actor, e.at))
        .collect();
    use DeploymentState::{AwaitingApproval, Pending, Superseded};
    assert_eq!(
        trail,
        [
            (None, Some(Pending), "alice".into(), 20),
            (Some(Pending), Some(AwaitingApproval), "policy".into(), 20),
            (Some(AwaitingApproval), Some(Superseded), "policy".into(), 30),
        ]
    );
    let after = s.audit(0, None, 1000).await.unwrap();
    assert!(after.windows(2).all(|w| w[0].id < w[1].id), "oldest first");
    assert_eq!(s.audit(after[3].id, None, 1000).await.unwrap().len(), after.len() - 4, "paged by id");
}

async fn tokens_keys_and_branch_heads(s: Arc<dyn Store>) {
    let t = ApiTokenHash { role: Role::Approver, environment: None, hash: "h1" };
    assert!(s.create_token("release-bot", &t, 1).await.unwrap());
    assert!(
        !s.create_token("release-bot", &ApiTokenHash { hash: "h2", ..t.clone() }, 1).await.unwrap(),
        "names are unique"
    );
    let found = s.token("h1", 1).await.unwrap().unwrap();
    assert_eq!((found.name.as_str(), found.role), ("release-bot", Role::Approver));
    assert!(s.token("h2", 1).await.unwrap().is_none());

    // Last used, to the minute: a use within a minute of the last is not written again.
    s.token("h1", 100_000).await.unwrap().unwrap();
    s.token("h1", 130_000).await.unwrap().unwrap();
    let listed = s.tokens().await.unwrap();
    assert_eq!((listed.len(), listed[0].last_used_at, listed[0].created_at), (1, Some(100_000), 1));
    // Rotation: the new secret works, the old one until the end of its grace period.
    assert!(s.rotate_token("release-bot", "h3", 200_000).await.unwrap());
    assert!(!s.rotate_token("nobody", "h4", 200_000).await.unwrap());
    assert_eq!(s.token("h3", 150_000).await.unwrap().unwrap().name, "release-bot");
    assert!(s.token("h1", 150_000).await.unwrap().is_some(), "the old secret within its grace");
    assert!(s.token("h1", 200_001).await.unwrap().is_none(), "the old secret after it");
    assert_eq!(s.tokens().await.unwrap()[0].previous_valid_until, Some(200_000));
    // Revocation ends both secrets at once, and a revoked token cannot be revoked or rotated again.
    assert!(s.rotate_token("release-bot", "h5", 900_000).await.unwrap());
    assert!(s.revoke_token("release-bot", 160_000).await.unwrap());
    assert!(s.token("h5", 160_001).await.unwrap().is_none() && s.token("h3", 160_001).await.unwrap().is_none());
    assert!(!s.revoke_token("release-bot", 170_000).await.unwrap());
    assert!(!s.rotate_token("release-bot", "h6", 900_000).await.unwrap());
    assert_eq!(s.tokens().await.unwrap()[0].revoked_at, Some(160_000));

    // The first key stored wins: every replica signs with it.
    let first = s.service_key("signing", &[1u8; 32], 1).await.unwrap();
    let second = s.service_key("signing", &[2u8; 32], 2).await.unwrap();
    assert_eq!((first, second), (vec![1u8; 32], vec![1u8; 32]));

    assert_eq!(s.branch_head("city/gis-config", "main").await.unwrap(), None);
    s.set_branch_head("city/gis-config", "main", "abc", 1).await.unwrap();
    s.set_branch_head("city/gis-config", "main", "def", 2).await.unwrap();
    assert_eq!(s.branch_head("city/gis-config", "main").await.unwrap().as_deref(), Some("def"));
}

/// On PostgreSQL a hold is a session advisory lock, and such locks are re-entrant within a session: a
/// connection that went back to the pool still holding one would let its next user of the pool take
/// the "same" hold again. So the server's lock table is read directly: held while the hold lives, gone
/// once it is released (its connection back in the pool) or dropped (its connection closed).
#[tokio::test]
async fn on_postgresql_a_released_or_dropped_hold_leaves_no_advisory_lock() {
    use sqlx::Connection;
    let Some(db) = common::db::postgres().await else { return };
    let (url, schema) = db.postgres_schema().unwrap();
    let mut watcher = sqlx::PgConnection::connect(url).await.unwrap();
    let repo = "city/gis-config";
    // The key as `store::holds` derives it for this schema; the first count proves it is the one held.
    let locks = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 AND granted \
                 AND ((classid::bigint << 32) | objid::bigint) \
                   = hashtextextended('honua-gitops/plan/' || $1 || '/' || $2, 0)";
    let mut held =
        async || -> i64 { sqlx::query_scalar(locks).bind(schema).bind(repo).fetch_one(&mut watcher).await.unwrap() };
    let hold = db.store.hold_repository(repo).await.unwrap();
    assert_eq!(held().await, 1, "a hold is an advisory lock on the repository's key");
    hold.release().await.unwrap();
    assert_eq!(held().await, 0, "a released hold is unlocked before its connection goes back to the pool");

    let hold = db.store.hold_repository(repo).await.unwrap();
    assert_eq!(held().await, 1);
    drop(hold);
    // The connection is closed as the pool drops it: the server lets go once it sees the session end.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while held().await != 0 {
        assert!(std::time::Instant::now() < deadline, "a dropped hold's session still holds its lock");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(watcher);
    db.cleanup().await;
}

/// The audit table refuses changes at the database level, not only in our code.
#[tokio::test]
async fn the_audit_log_is_append_only_in_sqlite() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("honua.db").display());
    let store = honua_gitops::store::SqlStore::open(&url).await.unwrap();
    let entry =
        NewAudit { actor: "a".into(), action: "token.create".into(), message: "m".into(), ..Default::default() };
    store.record_audit(&entry, 1).await.unwrap();
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let update = sqlx::query("UPDATE audit SET actor = 'mallory'").execute(&mut conn).await.unwrap_err();
    assert!(update.to_string().contains("append-only"), "{update}");
    let delete = sqlx::query("DELETE FROM audit").execute(&mut conn).await.unwrap_err();
    assert!(delete.to_string().contains("append-only"), "{delete}");
}

/// Writers taking greedily from one installation's shared budget (every replica's writes go through this
/// one row) over two simulated hours, at 1 s ticks: never more than GitHub's per-installation ceilings
/// of 80 writes in any minute and 500 in any hour, and not starved. Another installation has its own.
async fn replicas_share_one_github_write_budget_per_installation(store: Arc<dyn Store>) {
    use honua_gitops::github::client::WRITE_BUDGET;
    let start = 1_800_000_000_000i64;
    let mut sent_at = Vec::new();
    for tick in 0..(2 * 3600) {
        let now = start + tick * 1000;
        while store.take_write_budget(7, WRITE_BUDGET, now).await.unwrap().is_none() {
            sent_at.push(now);
        }
    }
    let most_within = |window_ms: i64| {
        let (mut most, mut first) = (0, 0);
        for last in 0..sent_at.len() {
            while sent_at[last] - sent_at[first] >= window_ms {
                first += 1;
            }
            most = most.max(last - first + 1);
        }
        most
    };
    assert!(most_within(60_000) <= 80, "{} in a minute", most_within(60_000));
    assert!(most_within(3_600_000) <= 500, "{} in an hour", most_within(3_600_000));
    assert!(sent_at.len() > 800, "starved: {}", sent_at.len());
    // A refused write says how long to wait, and is allowed once that has passed.
    let now = start + 2 * 3600 * 1000;
    while store.take_write_budget(7, WRITE_BUDGET, now).await.unwrap().is_none() {}
    let wait = store.take_write_budget(7, WRITE_BUDGET, now).await.unwrap().expect("exhausted");
    assert!(wait > 0);
    assert_eq!(store.take_write_budget(7, WRITE_BUDGET, now + wait).await.unwrap(), None);
    assert_eq!(store.take_write_budget(8, WRITE_BUDGET, now).await.unwrap(), None, "installation 8 is untouched");
}

on_both_stores!(
    the_deployment_lane_claims_deployment_work_only,
    takeovers_are_counted_and_the_second_quarantines,
    replicas_share_one_github_write_budget_per_installation,
    deployments_supersede_unstarted_ones_and_transitions_are_compare_and_set,
    a_commit_planned_twice_at_once_makes_one_deployment,
    a_repository_is_held_by_one_planner_at_a_time,
    tokens_keys_and_branch_heads,
    a_delivery_is_recorded_once_and_its_job_claimed_once,
    an_expired_lease_is_taken_over_and_the_old_holder_refused,
    failures_retry_later_then_fail_visibly,
    concurrent_claimers_never_share_a_job,
    a_polled_head_is_queued_only_if_never_seen,
    ended_jobs_are_pruned_with_their_deliveries,
    readiness
);
