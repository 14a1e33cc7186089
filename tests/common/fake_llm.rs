//! A fake LLM over real HTTP, speaking each provider's wire format as its documentation gives it:
//! Anthropic's Messages API (`POST /v1/messages`, `x-api-key`, `anthropic-version`, answer in
//! `content[].text`), OpenAI's chat completions (`POST /chat/completions`, bearer key, answer in
//! `choices[0].message.content`), Azure OpenAI's (`POST /openai/deployments/{d}/chat/completions?api-version=…`,
//! `api-key`), and Ollama's chat (`POST /api/chat`, answer in `message.content`). It refuses a request
//! without the provider's credentials, records every body it is sent (to prove what never leaves the
//! machine) and answers as the test scripts it: helpfully, with broken JSON, about another table, or
//! obeying an instruction planted in a table comment.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

pub const KEY: &str = "sk-fake-llm-key";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Reads the request and answers what it asks.
    Helpful,
    /// Answers text that is not the JSON asked for.
    WrongJson,
    /// Answers an intent about another table than the request names.
    OtherTable,
    /// Does what a table comment tells it: answers the proposal with an action.
    ObeysComments,
    /// Chooses a service that was not offered.
    OtherService,
}

#[derive(Clone)]
pub struct FakeLlm {
    pub addr: SocketAddr,
    state: Shared,
    forbidden: Forbidden,
}

/// Texts that must never reach the LLM: a request holding one is answered 400 and counted.
type Forbidden = Arc<Mutex<(Vec<String>, u32)>>;

impl FakeLlm {
    pub async fn start(mode: Mode) -> FakeLlm {
        let state = Arc::new(Mutex::new((mode, Vec::new())));
        let forbidden: Forbidden = Arc::new(Mutex::new((Vec::new(), 0)));
        let guard = forbidden.clone();
        let app = Router::new()
            .route("/v1/messages", post(anthropic))
            .route("/chat/completions", post(openai))
            .route("/openai/deployments/{deployment}/chat/completions", post(azure))
            .route("/api/chat", post(ollama))
            .with_state(state.clone())
            .layer(axum::middleware::from_fn(move |request: axum::extract::Request, next: axum::middleware::Next| {
                let guard = guard.clone();
                async move {
                    let (parts, body) = request.into_parts();
                    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
                    let text = String::from_utf8_lossy(&bytes).to_string();
                    {
                        let mut g = guard.lock().unwrap();
                        if g.0.iter().any(|f| text.contains(f.as_str())) {
                            g.1 += 1;
                            return (StatusCode::BAD_REQUEST, "a secret was sent to the LLM").into_response();
                        }
                    }
                    next.run(axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes))).await
                }
            }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeLlm { addr, state, forbidden }
    }

    /// Refuses (400) any request whose body holds one of `texts`, and counts it.
    pub fn forbid(&self, texts: &[&str]) {
        self.forbidden.lock().unwrap().0.extend(texts.iter().map(|t| t.to_string()));
    }

    /// How many requests held a forbidden text.
    pub fn leaks(&self) -> u32 {
        self.forbidden.lock().unwrap().1
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request body received, with its path.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap().1.clone()
    }
}

/// The scripted mode and every `(path, body)` received.
type Shared = Arc<Mutex<(Mode, Vec<(String, String)>)>>;

/// Keeps the request for the test to read and returns how to answer it.
fn record(state: &Shared, path: &str, body: &str) -> Mode {
    let mut s = state.lock().unwrap();
    s.1.push((path.to_string(), body.to_string()));
    s.0
}

fn unauthorized() -> Response {
    (StatusCode::UNAUTHORIZED, Json(json!({"error": {"message": "invalid api key"}}))).into_response()
}

/// The answer's text for a system prompt and a user message.
fn answer(mode: Mode, system: &str, user: &str) -> String {
    let request: Value = serde_json::from_str(user).unwrap_or(Value::Null);
    let proposal = system.contains("propose a title");
    match (mode, proposal) {
        (Mode::WrongJson, _) => "Sure! I would add a layer called bike lanes, it will look great.".into(),
        (Mode::ObeysComments, true) => json!({"action": "remove_layer", "layer": "roads"}).to_string(),
        (_, true) => {
            let mut proposal = json!({
                "title": "Bike Lanes (proposed)",
                "description": "Cycle lanes of the city network.",
                "keywords": ["cycling", "transportation"],
            });
            if let Some(offered) = request["services"].as_array() {
                let names: Vec<&str> = offered.iter().filter_map(Value::as_str).collect();
                let pick =
                    names.iter().find(|s| s.contains("transport")).or(names.first()).copied().unwrap_or_default();
                proposal["service"] = json!(if mode == Mode::OtherService { "admin-only" } else { pick });
            }
            proposal.to_string()
        }
        (Mode::OtherTable, false) => json!({"action": "add_layer", "table": "public.parcels"}).to_string(),
        (_, false) => {
            let text = request["request"].as_str().unwrap_or_default();
            let table = text
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                .find(|w| w.contains('.') && !w.starts_with('.') && !w.ends_with('.'))
                .unwrap_or("public.unknown");
            json!({"action": "add_layer", "table": table}).to_string()
        }
    }
}

async fn anthropic(State(state): State<Shared>, headers: HeaderMap, body: String) -> Response {
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(KEY) || headers.get("anthropic-version").is_none()
    {
        return unauthorized();
    }
    let json: Value = serde_json::from_str(&body).unwrap();
    assert!(json["max_tokens"].is_u64(), "the Messages API requires max_tokens");
    let mode = record(&state, "/v1/messages", &body);
    let text = answer(
        mode,
        json["system"].as_str().unwrap_or_default(),
        json["messages"][0]["content"].as_str().unwrap_or_default(),
    );
    Json(json!({"id": "msg_1", "type": "message", "role": "assistant", "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn"}))
    .into_response()
}

fn chat_answer(mode: Mode, json: &Value) -> Value {
    let messages = json["messages"].as_array().cloned().unwrap_or_default();
    let system =
        messages.iter().find(|m| m["role"] == "system").and_then(|m| m["content"].as_str()).unwrap_or_default();
    let user = messages.iter().find(|m| m["role"] == "user").and_then(|m| m["content"].as_str()).unwrap_or_default();
    json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": answer(mode, system, user)}, "finish_reason": "stop"}]})
}

async fn openai(State(state): State<Shared>, headers: HeaderMap, body: String) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {KEY}")) {
        return unauthorized();
    }
    let json: Value = serde_json::from_str(&body).unwrap();
    assert!(json["model"].is_string(), "chat completions require a model");
    let mode = record(&state, "/chat/completions", &body);
    Json(chat_answer(mode, &json)).into_response()
}

async fn azure(
    State(state): State<Shared>,
    Path(deployment): Path<String>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if headers.get("api-key").and_then(|v| v.to_str().ok()) != Some(KEY) {
        return unauthorized();
    }
    if !query.contains_key("api-version") {
        return (StatusCode::NOT_FOUND, "api-version is required").into_response();
    }
    let json: Value = serde_json::from_str(&body).unwrap();
    let mode = record(&state, &format!("/openai/deployments/{deployment}/chat/completions"), &body);
    Json(chat_answer(mode, &json)).into_response()
}

async fn ollama(State(state): State<Shared>, body: String) -> Response {
    let json: Value = serde_json::from_str(&body).unwrap();
    let mode = record(&state, "/api/chat", &body);
    let content = chat_answer(mode, &json)["choices"][0]["message"]["content"].clone();
    Json(json!({"model": json["model"], "message": {"role": "assistant", "content": content}, "done": true}))
        .into_response()
}
