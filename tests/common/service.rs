//! The service in-process, as the PR-flow tests and the PR-feedback benchmark run it: the webhook route
//! on loopback, one worker, a SQLite or PostgreSQL store, the fake GitHub and a `file://` origin.

use std::sync::Arc;
use std::time::Duration;

use honua_gitops::controller::Controller;
use honua_gitops::github::client::GithubApp;
use honua_gitops::github::webhook::{sign, WebhookSecret};
use honua_gitops::server::{router, AppState};
use honua_gitops::store::{Deployment, DeploymentFilter, JobState, JobStatus, Store};
use tokio::sync::watch;

use super::fake_github::FakeGithub;
use super::Origin;

const SECRET: &str = "pr-flow-secret";

/// What most service tests start from: the fake GitHub, an origin holding the example repository, and
/// the service on `store` with one worker.
pub struct ExampleScene {
    pub github: FakeGithub,
    pub origin: Origin,
    pub service: Service,
}

impl ExampleScene {
    pub async fn start(store: Arc<dyn Store>) -> ExampleScene {
        let github = FakeGithub::start().await;
        let origin = Origin::new(&super::examples().join("honua-config"));
        let service = Service::start(&github, &origin, store).await;
        ExampleScene { github, origin, service }
    }

    /// As [`start`](Self::start), with no worker yet: deliveries queue until the test starts one.
    pub async fn start_idle(store: Arc<dyn Store>) -> ExampleScene {
        let github = FakeGithub::start().await;
        let origin = Origin::new(&super::examples().join("honua-config"));
        let service = Service::start_idle(&github, &origin, store).await;
        ExampleScene { github, origin, service }
    }
}

/// Waits (60 s at most) until the deployments in `store` satisfy `done`; returns them all.
pub async fn wait_for_deployments(
    store: &Arc<dyn Store>,
    what: &str,
    done: impl Fn(&[Deployment]) -> bool,
) -> Vec<Deployment> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let all = store.deployments(&DeploymentFilter { limit: 1000, ..Default::default() }).await.unwrap();
        if done(&all) {
            return all;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}; have {all:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub struct Service {
    pub url: String,
    pub controller: Arc<Controller>,
    client: reqwest::Client,
    shutdown: watch::Sender<bool>,
    _data: tempfile::TempDir,
}

impl Service {
    /// The branch's first push: `origin`'s main as it stands is delivered and planned for the example's
    /// three environments. Returns main's commit and the deployments.
    pub async fn push_main(&self, origin: &Origin, delivery: &str) -> (String, Vec<Deployment>) {
        let base = origin.main_sha();
        self.deliver("push", delivery, super::push_payload(&"0".repeat(40), &base, "alice")).await;
        let store = &self.controller.store;
        let all = wait_for_deployments(store, "the first push's three deployments", |all| all.len() == 3).await;
        (base, all)
    }

    /// Approves deployment `id` as `actor` through the API would, now, and returns it approved.
    pub async fn approve(&self, id: &str, actor: &str, breaking: bool) -> Deployment {
        let decisions = self.controller.decisions();
        decisions.approve(id, actor, honua_gitops::deployment::Via::Api, breaking, chrono::Utc::now()).await.unwrap()
    }

    pub async fn start(github: &FakeGithub, origin: &Origin, store: Arc<dyn Store>) -> Service {
        let service = Service::start_idle(github, origin, store).await;
        service.start_worker("w1");
        service
    }

    /// Webhooks are accepted and queued, but no worker runs until [`Service::start_worker`].
    pub async fn start_idle(github: &FakeGithub, origin: &Origin, store: Arc<dyn Store>) -> Service {
        Service::start_idle_via(&github.url(), Duration::from_secs(30), origin, store).await
    }

    /// The service reaching GitHub at `github_url` (a fault proxy in front of the fake GitHub), each
    /// request bounded by `timeout`; no worker runs until [`Service::start_worker`].
    pub async fn start_idle_via(
        github_url: &str,
        timeout: Duration,
        origin: &Origin,
        store: Arc<dyn Store>,
    ) -> Service {
        let git_url = format!("file://{}", origin.git_root.display());
        Service::start_idle_with(github_url, &git_url, timeout, store).await
    }

    /// As [`Service::start_idle_via`], fetching repositories from `{git_url}/owner/name.git`.
    pub async fn start_idle_with(github_url: &str, git_url: &str, timeout: Duration, store: Arc<dyn Store>) -> Service {
        let data = tempfile::tempdir().unwrap();
        let key = std::fs::read(super::test_app_key()).unwrap();
        let app = Arc::new(
            GithubApp::new(super::fake_github::APP_ID, &key, github_url, timeout)
                .unwrap()
                .share_write_budget(store.clone()),
        );
        let signer = honua_gitops::controller::deployments::service_signer(store.as_ref()).await.unwrap();
        let controller = Arc::new(Controller::new(
            store.clone(),
            Some(app),
            signer,
            git_url.to_string(),
            data.path().join("mirrors"),
            Some("https://honua.example.org".into()),
        ));
        let jobs_queued = controller.jobs_queued.clone();
        let (shutdown, _) = watch::channel(false);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = AppState { store, webhook_secrets: Arc::new(WebhookSecret::parse_list(SECRET)), jobs_queued };
        let pages = honua_gitops::server::pages::Pages { controller: controller.clone(), public: false };
        let app = router(state)
            .merge(honua_gitops::server::api::router(controller.clone()))
            .merge(honua_gitops::server::pages::router(pages));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Service { url, controller, client: reqwest::Client::new(), shutdown, _data: data }
    }

    pub fn start_worker(&self, name: &str) {
        tokio::spawn(self.controller.clone().run_worker(name.into(), self.shutdown.subscribe()));
    }

    /// GitHub's `pull_request` delivery, signed.
    pub async fn pull_request(&self, delivery: &str, action: &str, number: u64, head_sha: &str, base_sha: &str) {
        self.deliver("pull_request", delivery, super::pull_request_payload(action, number, head_sha, base_sha)).await;
    }

    pub async fn deliver(&self, event: &str, delivery: &str, body: Vec<u8>) {
        assert_eq!(self.try_deliver(event, delivery, body).await, 202);
    }

    /// Waits (30 s at most) until every queued job has finished.
    pub async fn wait_until_idle(&self) {
        for _ in 0..600 {
            if self.controller.store.queue_depth().await.unwrap() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("jobs still queued after 30 s: {}", self.controller.store.queue_depth().await.unwrap());
    }

    /// Delivers, and waits (60 s at most) until the service has processed the delivery's job; returns
    /// how the job ended.
    pub async fn deliver_and_wait(&self, event: &str, delivery: &str, body: Vec<u8>) -> JobStatus {
        let resp = webhook(&self.client, &self.url, SECRET, event, delivery, body).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 202);
        let answer: serde_json::Value = resp.json().await.unwrap();
        let id = answer["job"].as_i64().unwrap_or_else(|| panic!("no job in {answer}"));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let job = self.controller.store.job(id).await.unwrap().expect("the queued job");
            if matches!(job.state, JobState::Done | JobState::Failed) {
                return job;
            }
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for job {id}: {job:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Delivers and returns the status (0 when the request failed), as GitHub sees it.
    pub async fn try_deliver(&self, event: &str, delivery: &str, body: Vec<u8>) -> u16 {
        let resp = webhook(&self.client, &self.url, SECRET, event, delivery, body).send().await;
        resp.map_or(0, |r| r.status().as_u16())
    }
}

/// GitHub's delivery of `event` to the webhook route of the service at `url`, signed with `secret`
/// as GitHub signs it; ready to send.
pub fn webhook(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    event: &str,
    delivery: &str,
    body: Vec<u8>,
) -> reqwest::RequestBuilder {
    client
        .post(format!("{url}/webhooks/github"))
        .header("X-GitHub-Event", event)
        .header("X-GitHub-Delivery", delivery)
        .header("X-Hub-Signature-256", sign(secret.as_bytes(), &body))
        .body(body)
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}
