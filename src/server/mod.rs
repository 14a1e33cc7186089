//! The service's HTTP edge (axum). This slice holds the webhook ingest and the health routes:
//! `POST /webhooks/github` verifies, parses at the edge and records the delivery durably before
//! answering 202; the work happens later, in a worker that claims the queued job.

use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::github::webhook::{parse_event, verify_signature, Event, WebhookSecret};
use crate::store::{now_ms, NewDelivery, Recorded, Store};

/// GitHub caps webhook payloads at 25 MB.
pub const MAX_WEBHOOK_BYTES: usize = 25 * 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub webhook_secrets: Arc<Vec<WebhookSecret>>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/webhooks/github", post(github_webhook))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        // The webhook route reads the body itself with its own limit (413 past it).
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

fn reply(status: StatusCode, error: &str, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": error, "message": message.into() }))).into_response()
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
    let Ok(body) = to_bytes(body, MAX_WEBHOOK_BYTES).await else {
        return reply(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "webhook bodies are limited to 25 MB");
    };
    let (Some(event), Some(delivery)) = (header(&headers, "x-github-event"), header(&headers, "x-github-delivery"))
    else {
        return reply(StatusCode::BAD_REQUEST, "missing_headers", "X-GitHub-Event and X-GitHub-Delivery are required");
    };
    if delivery.is_empty() || delivery.len() > 128 {
        return reply(StatusCode::BAD_REQUEST, "bad_delivery_id", "X-GitHub-Delivery must be 1 to 128 characters");
    }
    if let Err(e) = verify_signature(&state.webhook_secrets, &body, header(&headers, "x-hub-signature-256")) {
        tracing::warn!(delivery, event, reason = %e, "webhook refused");
        return reply(StatusCode::UNAUTHORIZED, "bad_signature", e.to_string());
    }
    let parsed = match parse_event(event, &body) {
        Ok(parsed) => parsed,
        Err(e) => {
            tracing::warn!(delivery, event, error = %e, "webhook payload refused");
            return reply(StatusCode::BAD_REQUEST, "malformed_payload", e.to_string());
        }
    };
    if !parsed.is_actionable() {
        let what = match &parsed {
            Event::Ignored(kind) => kind.clone(),
            _ => event.to_string(),
        };
        tracing::debug!(delivery, event = %what, "webhook ignored");
        return (StatusCode::ACCEPTED, Json(json!({ "status": "ignored", "event": what }))).into_response();
    }
    let record = NewDelivery {
        id: delivery.to_string(),
        event: event.to_string(),
        repository: parsed.repository(),
        payload: body.to_vec(),
    };
    match state.store.record_delivery(&record, now_ms()).await {
        Ok(Recorded::New(job)) => {
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
            (StatusCode::ACCEPTED, Json(json!({ "status": "duplicate" }))).into_response()
        }
        Err(e) => {
            // Not accepted: GitHub shows the failure and the delivery can be redelivered.
            tracing::error!(delivery, event, error = %e, "could not record webhook");
            reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the delivery could not be stored; redeliver it",
            )
        }
    }
}
