//! A stand-in Honua server for agent tests: `POST /admin/metadata/reload` loads and validates the
//! rendered file for real (422 when invalid), `GET /healthz/ready`, `GET /ogc/collections` listing the
//! `service::layer` ids of what is loaded; switches make it fail reloads, turn unhealthy or hide a
//! collection.

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
}

#[derive(Clone)]
pub struct StandIn {
    pub url: String,
    pub state: Arc<Mutex<Honua>>,
}

type Shared = (Arc<Mutex<Honua>>, PathBuf);

async fn reload(State((state, dir)): State<Shared>) -> impl IntoResponse {
    let mut s = state.lock().unwrap();
    s.reloads += 1;
    if s.fail_reloads {
        return (StatusCode::INTERNAL_SERVER_ERROR, "reload failed").into_response();
    }
    let path = dir.join("current/metadata.json");
    let file = match honua_gitops::config::load_single_file(&path) {
        Ok(f) => f,
        Err(e) => return (StatusCode::UNPROCESSABLE_ENTITY, e.to_string()).into_response(),
    };
    let errors: Vec<String> = honua_gitops::validate::validate_single(&file)
        .into_iter()
        .filter(|d| d.is_error())
        .map(|d| d.message)
        .collect();
    if !errors.is_empty() {
        return (StatusCode::UNPROCESSABLE_ENTITY, errors.join("\n")).into_response();
    }
    s.loaded = Some(serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap());
    StatusCode::OK.into_response()
}

async fn ready(State((state, _)): State<Shared>) -> StatusCode {
    let s = state.lock().unwrap();
    if s.loaded.is_some() && !s.unhealthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn collections(State((state, _)): State<Shared>) -> Json<Value> {
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
    /// Serves Honua whose config directory is `dir` (it reads `dir/current/metadata.json`).
    pub async fn start(dir: PathBuf) -> StandIn {
        let state = Arc::new(Mutex::new(Honua::default()));
        let app = Router::new()
            .route("/admin/metadata/reload", post(reload))
            .route("/healthz/ready", get(ready))
            .route("/ogc/collections", get(collections))
            .with_state((state.clone(), dir));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        StandIn { url, state }
    }
}
