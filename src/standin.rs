//! A stand-in Honua server for tests and `honua demo`: `POST /admin/metadata/reload` loads and
//! validates the rendered file for real (422 when invalid), `GET /healthz/ready`, `GET /ogc/collections`
//! listing the `service::layer` ids of what is loaded, `POST /admin/snapshots` (counted); switches make
//! it fail reloads, turn unhealthy, hang, or hide a collection.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

#[derive(Default)]
pub struct Honua {
    /// The metadata loaded by the last successful reload, as parsed.
    pub loaded: Option<Value>,
    pub reloads: u32,
    pub fail_reloads: bool,
    pub unhealthy: bool,
    pub hide_collection: Option<String>,
    /// Every request waits this long before it is answered (a hung server).
    pub hang: Option<std::time::Duration>,
    pub snapshots: u32,
}

#[derive(Clone)]
pub struct StandIn {
    pub url: String,
    pub state: Arc<Mutex<Honua>>,
}

type Shared = (Arc<Mutex<Honua>>, PathBuf);

async fn hang(state: &Mutex<Honua>) {
    let delay = state.lock().unwrap().hang;
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
}

async fn reload(State((state, dir)): State<Shared>) -> axum::response::Response {
    hang(&state).await;
    let mut s = state.lock().unwrap();
    s.reloads += 1;
    if s.fail_reloads {
        return (StatusCode::INTERNAL_SERVER_ERROR, "reload failed").into_response();
    }
    let path = dir.join("current/metadata.json");
    let file = match crate::config::load_single_file(&path) {
        Ok(f) => f,
        Err(e) => return (StatusCode::UNPROCESSABLE_ENTITY, e.to_string()).into_response(),
    };
    let errors: Vec<String> =
        crate::validate::validate_single(&file).into_iter().filter(|d| d.is_error()).map(|d| d.message).collect();
    if !errors.is_empty() {
        return (StatusCode::UNPROCESSABLE_ENTITY, errors.join("\n")).into_response();
    }
    match std::fs::read(&path).map(|b| serde_json::from_slice(&b)) {
        Ok(Ok(value)) => s.loaded = Some(value),
        _ => return (StatusCode::UNPROCESSABLE_ENTITY, "metadata.json is not JSON").into_response(),
    }
    StatusCode::OK.into_response()
}

async fn snapshot(State((state, _)): State<Shared>) -> StatusCode {
    hang(&state).await;
    state.lock().unwrap().snapshots += 1;
    StatusCode::CREATED
}

async fn ready(State((state, _)): State<Shared>) -> StatusCode {
    hang(&state).await;
    let s = state.lock().unwrap();
    if s.loaded.is_some() && !s.unhealthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn collections(State((state, _)): State<Shared>) -> Json<Value> {
    hang(&state).await;
    let s = state.lock().unwrap();
    let ids: Vec<Value> = s
        .loaded
        .as_ref()
        .and_then(|m| m["layers"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|l| Some(format!("{}::{}", l["serviceId"].as_str()?, l["id"].as_str()?)))
        .filter(|id| s.hide_collection.as_deref() != Some(id.as_str()))
        .map(|id| json!({ "id": id }))
        .collect();
    Json(json!({ "collections": ids }))
}

impl StandIn {
    /// `config` pointed at this stand-in: reload, readiness, collections and snapshots.
    pub fn serving(&self, config: crate::agent::AgentConfig) -> crate::agent::AgentConfig {
        crate::agent::AgentConfig {
            reload_url: format!("{}/admin/metadata/reload", self.url),
            health_url: format!("{}/healthz/ready", self.url),
            collections_url: Some(format!("{}/ogc/collections", self.url)),
            snapshot_url: Some(format!("{}/admin/snapshots", self.url)),
            ..config
        }
    }

    /// Serves Honua whose config directory is `dir` (it reads `dir/current/metadata.json`).
    pub async fn start(dir: PathBuf) -> StandIn {
        StandIn::start_on("127.0.0.1:0", dir).await.expect("loopback binds")
    }

    /// [`StandIn::start`] on a chosen address.
    pub async fn start_on(addr: &str, dir: PathBuf) -> std::io::Result<StandIn> {
        let state = Arc::new(Mutex::new(Honua::default()));
        let app = Router::new()
            .route("/admin/metadata/reload", post(reload))
            .route("/healthz/ready", get(ready))
            .route("/ogc/collections", get(collections))
            .route("/admin/snapshots", post(snapshot))
            .with_state((state.clone(), dir));
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let url = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "the stand-in Honua stopped");
            }
        });
        Ok(StandIn { url, state })
    }
}
