//! Webhook ingest over real HTTP: GitHub's real payloads parse into domain events, and the endpoint
//! answers with the right status, storing a delivery only when every check passed.

use std::net::SocketAddr;
use std::sync::Arc;

use honua_gitops::github::webhook::{parse_event, sign, Event, PullRequestAction, WebhookSecret};
use honua_gitops::server::{router, AppState};
use honua_gitops::store::{SqlStore, Store};

fn fixtures(event: &str) -> Vec<serde_json::Value> {
    let path = format!("{}/tests/fixtures/webhooks/{event}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn every_real_payload_of_a_handled_event_parses() {
    for event in [
        "pull_request",
        "push",
        "issue_comment",
        "check_run",
        "check_suite",
        "installation",
        "installation_repositories",
        "ping",
    ] {
        for payload in fixtures(event) {
            let body = serde_json::to_vec(&payload).unwrap();
            let action = payload["action"].as_str().unwrap_or("-").to_string();
            let parsed = parse_event(event, &body).unwrap_or_else(|e| panic!("{event}.{action}: {e}"));
            let expected_actionable = match event {
                "pull_request" => matches!(action.as_str(), "opened" | "synchronize" | "reopened" | "closed"),
                "issue_comment" => action == "created",
                "check_run" => matches!(action.as_str(), "rerequested" | "requested_action"),
                "check_suite" => action == "rerequested",
                "ping" => false,
                _ => true,
            };
            assert_eq!(parsed.is_actionable(), expected_actionable, "{event}.{action}: {parsed:?}");
        }
    }
}

#[test]
fn a_real_pull_request_opened_payload_carries_what_the_flow_needs() {
    let payload = fixtures("pull_request").into_iter().find(|p| p["action"] == "opened").unwrap();
    let Event::PullRequest { repo, number, action, head_sha, base_ref, author, from_fork, .. } =
        parse_event("pull_request", &serde_json::to_vec(&payload).unwrap()).unwrap()
    else {
        panic!("not a pull request")
    };
    assert_eq!(action, PullRequestAction::Opened);
    assert_eq!(number, payload["number"].as_u64().unwrap());
    assert_eq!(head_sha, payload["pull_request"]["head"]["sha"].as_str().unwrap());
    assert_eq!(base_ref, payload["pull_request"]["base"]["ref"].as_str().unwrap());
    assert_eq!(author, payload["pull_request"]["user"]["login"].as_str().unwrap());
    assert_eq!(repo.full_name(), payload["repository"]["full_name"].as_str().unwrap());
    assert!(!from_fork);
    let comment = fixtures("issue_comment").into_iter().find(|p| p["action"] == "created").unwrap();
    let Event::Comment { author_is_bot, body, .. } =
        parse_event("issue_comment", &serde_json::to_vec(&comment).unwrap()).unwrap()
    else {
        panic!("not a comment")
    };
    assert!(!author_is_bot);
    assert_eq!(body, comment["comment"]["body"].as_str().unwrap());
}

const SECRET: &str = "webhook-secret";

struct Service {
    addr: SocketAddr,
    store: Arc<dyn Store>,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn service() -> Service {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqlStore::open(&format!("sqlite://{}", dir.path().join("h.db").display())).await.unwrap());
    let state = AppState {
        store: store.clone(),
        webhook_secrets: Arc::new(WebhookSecret::parse_list(&format!("old,{SECRET}"))),
        jobs_queued: Default::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
    Service { addr, store, client: reqwest::Client::new(), _dir: dir }
}

impl Service {
    async fn post(
        &self,
        event: Option<&str>,
        delivery: Option<&str>,
        signature: Option<String>,
        body: Vec<u8>,
    ) -> (u16, serde_json::Value) {
        let mut req = self.client.post(format!("http://{}/webhooks/github", self.addr)).body(body);
        if let Some(e) = event {
            req = req.header("X-GitHub-Event", e);
        }
        if let Some(d) = delivery {
            req = req.header("X-GitHub-Delivery", d);
        }
        if let Some(s) = signature {
            req = req.header("X-Hub-Signature-256", s);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    async fn signed(&self, event: &str, delivery: &str, body: &[u8]) -> (u16, serde_json::Value) {
        self.post(Some(event), Some(delivery), Some(sign(SECRET.as_bytes(), body)), body.to_vec()).await
    }
}

fn opened() -> Vec<u8> {
    serde_json::to_vec(&fixtures("pull_request").into_iter().find(|p| p["action"] == "opened").unwrap()).unwrap()
}

#[tokio::test]
async fn a_signed_delivery_is_queued_once_and_a_redelivery_is_not() {
    let s = service().await;
    let (status, body) = s.signed("pull_request", "d-1", &opened()).await;
    assert_eq!((status, body["status"].as_str()), (202, Some("queued")));
    let (status, body) = s.signed("pull_request", "d-1", &opened()).await;
    assert_eq!((status, body["status"].as_str()), (202, Some("duplicate")));
    assert_eq!(s.store.queue_depth().await.unwrap(), 1);
}

#[tokio::test]
async fn refused_deliveries_store_nothing() {
    let s = service().await;
    let body = opened();
    let wrong = sign(b"not-the-secret", &body);
    assert_eq!(s.post(Some("pull_request"), Some("d-2"), Some(wrong), body.clone()).await.0, 401);
    assert_eq!(s.post(Some("pull_request"), Some("d-2"), None, body.clone()).await.0, 401);
    assert_eq!(s.post(None, Some("d-2"), Some(sign(SECRET.as_bytes(), &body)), body.clone()).await.0, 400);
    assert_eq!(s.post(Some("pull_request"), None, Some(sign(SECRET.as_bytes(), &body)), body.clone()).await.0, 400);
    let (status, reply) = s.signed("pull_request", "d-2", b"{\"action\": \"opened\", \"number\": ").await;
    assert_eq!(status, 400);
    assert_eq!(reply["error"], "malformed_payload");
    let too_big = vec![b' '; 25 * 1024 * 1024 + 1];
    assert_eq!(
        s.post(Some("pull_request"), Some("d-2"), Some(sign(SECRET.as_bytes(), &too_big)), too_big).await.0,
        413
    );
    assert_eq!(s.store.queue_depth().await.unwrap(), 0);
    // Nothing was recorded under d-2: the first good delivery with that id is new.
    assert_eq!(s.signed("pull_request", "d-2", &body).await.1["status"], "queued");
}

#[tokio::test]
async fn unhandled_events_are_accepted_and_ignored() {
    let s = service().await;
    let (status, body) = s.signed("star", "d-3", br#"{"action":"created"}"#).await;
    assert_eq!((status, body["status"].as_str(), body["event"].as_str()), (202, Some("ignored"), Some("star.created")));
    let edited = fixtures("issue_comment").into_iter().find(|p| p["action"] == "edited").unwrap();
    let (status, body) = s.signed("issue_comment", "d-4", &serde_json::to_vec(&edited).unwrap()).await;
    assert_eq!((status, body["event"].as_str()), (202, Some("issue_comment.edited")));
    let ping = serde_json::to_vec(&fixtures("ping")[0]).unwrap();
    assert_eq!(s.signed("ping", "d-5", &ping).await.0, 202);
    assert_eq!(s.store.queue_depth().await.unwrap(), 0);
}

#[tokio::test]
async fn metrics_count_deliveries_by_outcome_and_show_the_queue() {
    let s = service().await;
    s.signed("pull_request", "m-1", &opened()).await;
    s.signed("pull_request", "m-1", &opened()).await;
    s.post(Some("pull_request"), Some("m-2"), Some("sha256=00".into()), opened()).await;
    let text = s.client.get(format!("http://{}/metrics", s.addr)).send().await.unwrap().text().await.unwrap();
    for outcome in ["queued", "duplicate", "bad_signature"] {
        let line = format!("honua_webhook_deliveries_total{{event=\"pull_request\",outcome=\"{outcome}\"}}");
        assert!(text.contains(&line), "{line} missing from:\n{text}");
    }
    assert!(text.contains("honua_queue_depth 1"), "{text}");
}

#[tokio::test]
async fn health_and_readiness() {
    let s = service().await;
    let get = |path: &str| s.client.get(format!("http://{}{path}", s.addr)).send();
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    assert_eq!(get("/readyz").await.unwrap().status(), 200);
}
