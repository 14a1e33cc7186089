//! The service's HTTP edge (axum): the webhook ingest and the health routes here, the API in `api`, the
//! pages in `pages`, the server loop and its timeouts in `http`. `POST /webhooks/github` verifies, parses
//! at the edge and records the delivery durably before answering 202; the work happens later, in a
//! worker that claims the queued job.

use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::controller::Controller;
use crate::github::client::{GithubApp, GithubError};
use crate::github::webhook::{parse_event, verify_signature, Event, PullRequestAction, WebhookSecret};
use crate::store::{now_ms, NewDelivery, PrHead, Recorded, Store, StoreError};
use settings::Settings;

/// GitHub caps webhook payloads at 25 MB.
pub mod api;
pub mod http;
pub mod metrics;
pub mod pages;
pub mod settings;

pub const MAX_WEBHOOK_BYTES: usize = 25 * 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub webhook_secrets: Arc<Vec<WebhookSecret>>,
    /// Wakes this process's workers when a job is queued (other replicas find it by polling).
    pub jobs_queued: Arc<crate::controller::JobsQueued>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/webhooks/github", post(github_webhook))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(prometheus))
        // The webhook route reads the body itself with its own limit (413 past it).
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

fn reply(status: StatusCode, error: &str, message: impl Into<String>) -> Response {
    let body = crate::deployment::wire::ErrorBody { error: error.into(), message: message.into() };
    (status, Json(body)).into_response()
}

async fn prometheus(State(state): State<AppState>) -> Response {
    let handle = metrics::handle();
    if let Ok(depth) = state.store.queue_depth().await {
        ::metrics::gauge!(metrics::QUEUE_DEPTH).set(depth as f64);
    }
    ([("content-type", "text/plain; version=0.0.4")], handle.render()).into_response()
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            reply(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "the database is not reachable or not migrated")
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Order matters: size and signature are checked before anything is parsed, and nothing is stored
/// unless every check passed. Headers are never logged (they carry the signature).
async fn github_webhook(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let _ = metrics::handle();
    let event_name = header(&headers, "x-github-event").unwrap_or("none").to_string();
    let body = match to_bytes(body, MAX_WEBHOOK_BYTES).await {
        Ok(body) => body,
        Err(e) if http::is_body_timeout(&e) => {
            metrics::delivery(&event_name, "body_timeout");
            return reply(StatusCode::REQUEST_TIMEOUT, "body_timeout", e.to_string());
        }
        Err(_) => {
            metrics::delivery(&event_name, "too_large");
            return reply(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "webhook bodies are limited to 25 MB");
        }
    };
    let (Some(event), Some(delivery)) = (header(&headers, "x-github-event"), header(&headers, "x-github-delivery"))
    else {
        metrics::delivery(&event_name, "bad_request");
        return reply(StatusCode::BAD_REQUEST, "missing_headers", "X-GitHub-Event and X-GitHub-Delivery are required");
    };
    if delivery.is_empty() || delivery.len() > 128 {
        return reply(StatusCode::BAD_REQUEST, "bad_delivery_id", "X-GitHub-Delivery must be 1 to 128 characters");
    }
    if let Err(e) = verify_signature(&state.webhook_secrets, &body, header(&headers, "x-hub-signature-256")) {
        tracing::warn!(delivery, event, reason = %e, "webhook refused");
        metrics::delivery(event, "bad_signature");
        return reply(StatusCode::UNAUTHORIZED, "bad_signature", e.to_string());
    }
    let parsed = match parse_event(event, &body) {
        Ok(parsed) => parsed,
        Err(e) => {
            tracing::warn!(delivery, event, error = %e, "webhook payload refused");
            metrics::delivery(event, "bad_request");
            return reply(StatusCode::BAD_REQUEST, "malformed_payload", e.to_string());
        }
    };
    if !parsed.is_actionable() {
        let what = match &parsed {
            Event::Ignored(kind) => kind.clone(),
            _ => event.to_string(),
        };
        tracing::debug!(delivery, event = %what, "webhook ignored");
        metrics::delivery(event, "ignored");
        return (StatusCode::ACCEPTED, Json(json!({ "status": "ignored", "event": what }))).into_response();
    }
    let pr_head = match &parsed {
        Event::PullRequest { number, head_sha, action, .. } if *action != PullRequestAction::Closed => {
            Some(PrHead { number: *number, sha: head_sha.clone(), only_if_new: false })
        }
        _ => None,
    };
    let record = NewDelivery {
        id: delivery.to_string(),
        event: event.to_string(),
        repository: parsed.repository(),
        payload: body.to_vec(),
        pr_head,
        deploys: parsed.deploys(),
    };
    match state.store.record_delivery(&record, now_ms()).await {
        Ok(Recorded::New(job)) => {
            state.jobs_queued.queued(record.deploys);
            metrics::delivery(event, "queued");
            tracing::info!(
                delivery,
                event,
                repository = record.repository.as_deref().unwrap_or("-"),
                job,
                "webhook queued"
            );
            (StatusCode::ACCEPTED, Json(json!({ "status": "queued", "job": job }))).into_response()
        }
        Ok(Recorded::Duplicate) => {
            tracing::info!(delivery, event, "webhook redelivered; already recorded");
            metrics::delivery(event, "duplicate");
            (StatusCode::ACCEPTED, Json(json!({ "status": "duplicate" }))).into_response()
        }
        Err(e) => {
            // Not accepted: GitHub shows the failure and the delivery can be redelivered.
            tracing::error!(delivery, event, error = %e, "could not record webhook");
            metrics::delivery(event, "store_error");
            reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the delivery could not be stored; redeliver it",
            )
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("database {url}: {source}")]
    Store { url: String, source: StoreError },
    #[error(transparent)]
    Github(#[from] GithubError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("deployment signing key: {0}")]
    Signing(String),
}

/// Runs the service until SIGINT or SIGTERM: HTTP stops accepting, running jobs finish, then it exits.
pub async fn run(settings: Settings) -> Result<(), ServeError> {
    start(settings, shutdown_signal()).await?.finished().await
}

/// A started service: where it listens, its controller, and the task that ends after `shutdown`.
pub struct Running {
    pub addr: std::net::SocketAddr,
    pub controller: Arc<Controller>,
    task: tokio::task::JoinHandle<Result<(), ServeError>>,
}

impl Running {
    /// Waits until the service has shut down (HTTP closed, running jobs finished).
    pub async fn finished(self) -> Result<(), ServeError> {
        self.task.await.map_err(|e| ServeError::Io(std::io::Error::other(e)))?
    }
}

/// Starts the service (store, workers, poller, HTTP) and returns once it listens; it stops when
/// `shutdown` completes. `honua serve` and `honua demo` both run it.
pub async fn start(
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Running, ServeError> {
    // The recorder first: what the workers, the poller and the sweeps count before the first scrape or
    // webhook (jobs left queued by a previous run, a retention sweep) would otherwise go uncounted.
    let _ = metrics::handle();
    let store = crate::store::open_with(&settings.database_url, settings.database_timeout)
        .await
        .map_err(|source| ServeError::Store { url: settings.database_url.clone(), source })?;
    let github = match &settings.github {
        Some(g) => Some(Arc::new(
            GithubApp::new(g.app_id, &g.private_key, &g.api_url, g.timeout)?.share_write_budget(store.clone()),
        )),
        None => None,
    };
    let signer = crate::controller::deployments::service_signer(store.as_ref())
        .await
        .map_err(|e| ServeError::Signing(e.to_string()))?;
    tracing::info!(public_key = %signer.public_key(), "deployment records are signed with this key");
    std::fs::create_dir_all(settings.data_dir.join("mirrors"))?;
    let mut controller = Controller::new(
        store.clone(),
        github,
        signer,
        settings.git_url.clone(),
        settings.data_dir.join("mirrors"),
        settings.public_url.clone(),
    );
    controller.repositories = settings.repositories.clone();
    controller.revert_pull_requests = settings.revert_pull_requests;
    controller.notifier =
        crate::controller::notify::Notifier::new(settings.slack_webhook_url.clone(), controller.github.is_some());
    controller.job_lease = settings.job_lease;
    let controller = Arc::new(controller);
    let jobs_queued = controller.jobs_queued.clone();
    let (stop_workers, stop) = tokio::sync::watch::channel(false);
    let mut workers = tokio::task::JoinSet::new();
    // Unique per process: a replica restarted after a crash must not pass for the holder of old leases.
    let instance = format!("{}-{}", std::process::id(), now_ms());
    for i in 0..settings.workers {
        let (worker, stop) = (format!("{instance}-{i}"), stop.clone());
        // One is kept for deployment work, so PR checks waiting on GitHub never hold back a deployment.
        if i == 0 && settings.workers > 1 {
            workers.spawn(controller.clone().run_deployment_worker(worker, stop));
        } else {
            workers.spawn(controller.clone().run_worker(worker, stop));
        }
    }
    if let Some(interval) = settings.poll_interval {
        workers.spawn(controller.clone().run_poller(interval, stop.clone()));
    }
    if let Some(retention) = settings.job_retention {
        workers.spawn(controller.clone().run_retention(retention, stop.clone()));
    }
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|source| ServeError::Listen { addr: settings.listen, source })?;
    let addr = listener.local_addr()?;
    tracing::info!(listen = %addr, workers = settings.workers, "honua serve: ready");
    let state = AppState { store, webhook_secrets: Arc::new(settings.webhook_secrets), jobs_queued };
    let pages = pages::Pages { controller: controller.clone(), public: settings.public_pages };
    let app = router(state).merge(api::router(controller.clone())).merge(pages::router(pages));
    let timeouts = http::Timeouts { header: settings.header_read_timeout, body: settings.body_read_timeout };
    let task = tokio::spawn(async move {
        http::serve(listener, app, timeouts, shutdown).await?;
        tracing::info!("shutting down: finishing running jobs");
        let _ = stop_workers.send(true);
        while workers.join_next().await.is_some() {}
        Ok(())
    });
    Ok(Running { addr, controller, task })
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
