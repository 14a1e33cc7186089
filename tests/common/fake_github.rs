//! A stateful fake GitHub: a real HTTP server on loopback holding check runs and comments, which the
//! real octocrab client talks to. It enforces what GitHub enforces where it matters to us (an App JWT
//! for installation tokens, an installation token for repository calls, at most 50 annotations per
//! request) and signals every change so tests wait on events, not sleeps.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::Notify;

pub const INSTALLATION_TOKEN: &str = "ghs_fake_installation_token";
/// A person's token (`GITHUB_TOKEN`), which GitHub takes for repository calls as it takes an
/// installation token.
pub const USER_TOKEN: &str = "ghp_fake_user_token";

#[derive(Debug, Clone)]
pub struct CheckRun {
    pub id: u64,
    pub repo: String,
    pub name: String,
    pub head_sha: String,
    pub status: String,
    pub conclusion: Option<String>,
    pub title: Option<String>,
    pub summary: Option<String>,
    pub annotations: Vec<Value>,
    pub details_url: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Comment {
    pub id: u64,
    pub repo: String,
    pub number: u64,
    pub body: String,
    pub author_type: String,
    pub author: String,
    pub edits: u32,
    /// The App whose installation wrote it (GitHub's `performed_via_github_app`), if any.
    pub via_app: Option<u64>,
}

#[derive(Default)]
pub struct State_ {
    next_id: u64,
    /// Open pull requests: (repo, number) → (head sha, base ref).
    pub pulls: BTreeMap<(String, u64), (String, String)>,
    pub check_runs: BTreeMap<u64, CheckRun>,
    pub comments: BTreeMap<u64, Comment>,
    pub token_requests: u32,
    /// Fault injection: the next this-many check-run updates answer 502.
    pub failing_updates: u32,
    /// Branch heads: (repo, branch) → sha.
    pub branches: BTreeMap<(String, String), String>,
    /// Default branches other than `main`: repo → branch.
    pub default_branches: BTreeMap<String, String>,
    /// PR authors (default `alice`) and merges: (repo, number) → login / merge commit.
    pub pr_authors: BTreeMap<(String, u64), String>,
    pub merged: BTreeMap<(String, u64), String>,
    /// Collaborators: (repo, login) → (permission, role_name). Anyone else gets 404.
    pub permissions: BTreeMap<(String, String), (String, String)>,
    /// Active team memberships: (org, team, login).
    pub team_members: std::collections::BTreeSet<(String, String, String)>,
    /// Reactions: (comment id, content).
    pub reactions: Vec<(u64, String)>,
    /// Git data made through the API: commits (sha → body), refs (name → sha), and opened PRs.
    pub git_commits: BTreeMap<String, Value>,
    pub git_refs: BTreeMap<String, String>,
    pub opened_pulls: Vec<Value>,
    /// GitHub Deployments: id → (environment, sha, payload, statuses posted).
    pub deployments: BTreeMap<u64, GhDeployment>,
    /// Fault injection: answers given instead of (or after) the real one, first to last.
    pub injected: std::collections::VecDeque<Injected>,
    /// Injected answers given so far.
    pub injected_served: u32,
}

/// An answer GitHub gives instead of the real one: an error, a rate limit, or (with `after_work`) an
/// error after it did the work, as when its answer is lost on the way back.
impl State_ {
    fn default_branch(&self, repo: &str) -> String {
        self.default_branches.get(repo).cloned().unwrap_or_else(|| "main".into())
    }

    /// The id of the next object created: one sequence for all, as GitHub's ids never collide here.
    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

/// A request body as kept for the assertions: stamped with the repository it was sent to.
fn in_repo(mut body: Value, owner: &str, name: &str) -> Value {
    body["repo"] = json!(format!("{owner}/{name}"));
    body
}

#[derive(Debug, Clone)]
pub struct Injected {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub message: &'static str,
    pub after_work: bool,
    /// Only requests that write (POST, PATCH, PUT, DELETE) get it.
    pub writes_only: bool,
    /// Only `POST` requests whose path ends so get it.
    pub post_to: Option<&'static str>,
}

impl Injected {
    pub fn error(status: u16) -> Injected {
        Injected {
            status,
            headers: Vec::new(),
            message: "Server Error",
            after_work: false,
            writes_only: false,
            post_to: None,
        }
    }

    /// GitHub carries out a `POST` to a path ending in `path`, then its answer is lost: a 502.
    pub fn answer_lost(path: &'static str) -> Injected {
        Injected { after_work: true, writes_only: true, post_to: Some(path), ..Injected::error(502) }
    }

    /// `429 Too Many Requests` with `retry-after`.
    pub fn too_many_requests(retry_after: u64) -> Injected {
        Injected {
            headers: vec![("retry-after", retry_after.to_string())],
            message: "API rate limit exceeded",
            ..Injected::error(429)
        }
    }

    /// GitHub's secondary rate limit: a 403 with `retry-after`, on a request that writes.
    pub fn secondary_rate_limit(retry_after: u64) -> Injected {
        Injected {
            headers: vec![("retry-after", retry_after.to_string())],
            message: "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
            writes_only: true,
            ..Injected::error(403)
        }
    }
}

async fn injected_faults(
    State((state, _)): State<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let writes = request.method() != axum::http::Method::GET;
    let post = request.method() == axum::http::Method::POST;
    let path = request.uri().path().to_string();
    let fault = {
        let mut s = state.lock().unwrap();
        let due = s.injected.front().is_some_and(|f| {
            (writes || !f.writes_only) && f.post_to.is_none_or(|suffix| post && path.ends_with(suffix))
        });
        let fault = if due { s.injected.pop_front() } else { None };
        s.injected_served += u32::from(fault.is_some());
        fault
    };
    let Some(fault) = fault else { return next.run(request).await };
    if fault.after_work {
        let _ = next.run(request).await;
    }
    let mut response =
        (StatusCode::from_u16(fault.status).unwrap(), Json(json!({ "message": fault.message }))).into_response();
    for (name, value) in fault.headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

#[derive(Debug, Clone)]
pub struct GhDeployment {
    pub id: u64,
    pub environment: String,
    pub sha: String,
    pub payload: Value,
    pub statuses: Vec<String>,
}

#[derive(Clone)]
pub struct FakeGithub {
    pub addr: SocketAddr,
    state: Arc<Mutex<State_>>,
    changed: Arc<Notify>,
}

type Shared = (Arc<Mutex<State_>>, Arc<Notify>);

/// A write done: the state's lock released, waiting scenarios woken, `201 Created` with `body`.
fn created(state: std::sync::MutexGuard<'_, State_>, changed: &Notify, body: Value) -> Response {
    drop(state);
    changed.notify_waiters();
    (StatusCode::CREATED, Json(body)).into_response()
}

fn authorized(headers: &HeaderMap, expected: &str) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with(expected))
}

async fn access_token(State((state, changed)): State<Shared>, headers: HeaderMap, Path(_id): Path<u64>) -> Response {
    if let Some(refused) = app_call_refused(&headers) {
        return refused;
    }
    state.lock().unwrap().token_requests += 1;
    changed.notify_waiters();
    let expires = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    (StatusCode::CREATED, Json(json!({"token": INSTALLATION_TOKEN, "expires_at": expires, "permissions": {}})))
        .into_response()
}

/// App-level calls need an App JWT (three dot-separated parts), as GitHub requires.
fn app_call_refused(headers: &HeaderMap) -> Option<Response> {
    let jwt_like = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t.split('.').count() == 3);
    (!jwt_like).then(|| {
        (StatusCode::UNAUTHORIZED, Json(json!({"message": "A JSON web token could not be decoded"}))).into_response()
    })
}

fn repo_call_refused(headers: &HeaderMap) -> Option<Response> {
    let by =
        |token: &str| authorized(headers, &format!("Bearer {token}")) || authorized(headers, &format!("token {token}"));
    (!by(INSTALLATION_TOKEN) && !by(USER_TOKEN))
        .then(|| (StatusCode::UNAUTHORIZED, Json(json!({"message": "Bad credentials"}))).into_response())
}

/// Calls on a repository (and an installation's repository list) take an installation token or a
/// user's token, as GitHub's do; anything else is 401 before the handler runs.
async fn installation_or_user_token(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    match repo_call_refused(request.headers()) {
        Some(refused) => refused,
        None => next.run(request).await,
    }
}

fn too_many_annotations(body: &Value) -> Option<Response> {
    let n = body["output"]["annotations"].as_array().map_or(0, Vec::len);
    (n > 50).then(|| {
        (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"message": "Only 50 annotations per request"}))).into_response()
    })
}

async fn create_check_run(
    State((state, changed)): State<Shared>,
    Path((o, r)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Response {
    if let Some(refused) = too_many_annotations(&body) {
        return refused;
    }
    let mut s = state.lock().unwrap();
    let id = s.new_id();
    s.check_runs.insert(
        id,
        CheckRun {
            id,
            repo: format!("{o}/{r}"),
            name: body["name"].as_str().unwrap_or_default().to_string(),
            head_sha: body["head_sha"].as_str().unwrap_or_default().to_string(),
            status: body["status"].as_str().unwrap_or("queued").to_string(),
            conclusion: None,
            title: None,
            summary: None,
            annotations: Vec::new(),
            details_url: body["details_url"].as_str().map(str::to_string),
        },
    );
    created(s, &changed, json!({"id": id}))
}

async fn update_check_run(
    State((state, changed)): State<Shared>,
    Path((_o, _r, id)): Path<(String, String, u64)>,
    Json(body): Json<Value>,
) -> Response {
    if let Some(refused) = too_many_annotations(&body) {
        return refused;
    }
    let mut s = state.lock().unwrap();
    if s.failing_updates > 0 {
        s.failing_updates -= 1;
        return (StatusCode::BAD_GATEWAY, Json(json!({"message": "Server Error"}))).into_response();
    }
    let Some(run) = s.check_runs.get_mut(&id) else { return StatusCode::NOT_FOUND.into_response() };
    if let Some(status) = body["status"].as_str() {
        run.status = status.to_string();
    }
    if let Some(c) = body["conclusion"].as_str() {
        run.conclusion = Some(c.to_string());
    }
    if let Some(t) = body["output"]["title"].as_str() {
        run.title = Some(t.to_string());
    }
    if let Some(t) = body["output"]["summary"].as_str() {
        run.summary = Some(t.to_string());
    }
    run.annotations.extend(body["output"]["annotations"].as_array().cloned().unwrap_or_default());
    drop(s);
    changed.notify_waiters();
    Json(json!({"id": id})).into_response()
}

async fn get_pull(State((state, _)): State<Shared>, Path((o, r, n)): Path<(String, String, u64)>) -> Response {
    let s = state.lock().unwrap();
    match s.pulls.get(&(format!("{o}/{r}"), n)) {
        Some((head, base)) => Json(pull_json(&s, &format!("{o}/{r}"), n, head, base)).into_response(),
        None => (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"}))).into_response(),
    }
}

/// `GET /repos/{owner}/{repo}`: the few fields of GitHub's repository object the service reads.
async fn get_repository(State((state, _)): State<Shared>, Path((o, r)): Path<(String, String)>) -> Response {
    let full_name = format!("{o}/{r}");
    let branch = state.lock().unwrap().default_branch(&full_name);
    Json(json!({"name": r, "full_name": full_name, "owner": {"login": o}, "default_branch": branch})).into_response()
}

async fn get_branch(State((state, _)): State<Shared>, Path((o, r, b)): Path<(String, String, String)>) -> Response {
    match state.lock().unwrap().branches.get(&(format!("{o}/{r}"), b.clone())) {
        Some(sha) => Json(json!({"name": b, "commit": {"sha": sha}})).into_response(),
        None => (StatusCode::NOT_FOUND, Json(json!({"message": "Branch not found"}))).into_response(),
    }
}

async fn create_deployment(
    State((state, changed)): State<Shared>,
    Path((o, r)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Response {
    let mut s = state.lock().unwrap();
    let id = s.new_id();
    let body = in_repo(body, &o, &r);
    let d = GhDeployment {
        id,
        environment: body["environment"].as_str().unwrap_or_default().into(),
        sha: body["ref"].as_str().unwrap_or_default().into(),
        payload: body["payload"].clone(),
        statuses: Vec::new(),
    };
    s.deployments.insert(id, d);
    created(s, &changed, json!({"id": id}))
}

async fn create_deployment_status(
    State((state, changed)): State<Shared>,
    Path((_o, _r, id)): Path<(String, String, u64)>,
    Json(body): Json<Value>,
) -> Response {
    let mut s = state.lock().unwrap();
    let Some(d) = s.deployments.get_mut(&id) else { return StatusCode::NOT_FOUND.into_response() };
    d.statuses.push(body["state"].as_str().unwrap_or_default().into());
    created(s, &changed, json!({"id": 1, "state": body["state"]}))
}

async fn repo_installation(headers: HeaderMap) -> Response {
    if let Some(refused) = app_call_refused(&headers) {
        return refused;
    }
    Json(json!({"id": 7, "account": {"login": "city"}})).into_response()
}

async fn create_git_commit(
    State((state, changed)): State<Shared>,
    Path((o, r)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Response {
    let mut s = state.lock().unwrap();
    let sha = format!("{:040x}", s.new_id());
    s.git_commits.insert(sha.clone(), in_repo(body, &o, &r));
    created(s, &changed, json!({"sha": sha}))
}

async fn create_git_ref(
    State((state, changed)): State<Shared>,
    Path((_o, _r)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Response {
    let name = body["ref"].as_str().unwrap_or_default().to_string();
    let sha = body["sha"].as_str().unwrap_or_default().to_string();
    state.lock().unwrap().git_refs.insert(name.clone(), sha.clone());
    changed.notify_waiters();
    (StatusCode::CREATED, Json(json!({"ref": name, "object": {"sha": sha}}))).into_response()
}

async fn create_pull(
    State((state, changed)): State<Shared>,
    Path((o, r)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Response {
    let mut s = state.lock().unwrap();
    let number = s.new_id();
    let body = in_repo(body, &o, &r);
    s.opened_pulls.push(body.clone());
    drop(s);
    changed.notify_waiters();
    let head = body["head"].as_str().unwrap_or_default();
    let base = body["base"].as_str().unwrap_or_default();
    (
        StatusCode::CREATED,
        Json(
            json!({"number": number, "state": "open", "html_url": format!("https://github.com/{o}/{r}/pull/{number}"),
            "head": {"sha": "", "ref": head}, "base": {"sha": "", "ref": base}}),
        ),
    )
        .into_response()
}

async fn list_installations(headers: HeaderMap) -> Response {
    if let Some(refused) = app_call_refused(&headers) {
        return refused;
    }
    Json(json!([{"id": 7, "account": {"login": "city"}}])).into_response()
}

async fn installation_repositories(State((state, _)): State<Shared>) -> Response {
    let s = state.lock().unwrap();
    let mut repos: Vec<String> =
        s.pulls.keys().map(|(repo, _)| repo.clone()).chain(s.branches.keys().map(|(repo, _)| repo.clone())).collect();
    repos.sort();
    repos.dedup();
    let list: Vec<Value> = repos
        .iter()
        .map(|r| {
            let (owner, name) = r.split_once('/').unwrap();
            json!({"name": name, "full_name": r, "owner": {"login": owner}, "default_branch": s.default_branch(r)})
        })
        .collect();
    Json(json!({"total_count": list.len(), "repositories": list})).into_response()
}

async fn list_pulls(State((state, _)): State<Shared>, Path((o, r)): Path<(String, String)>) -> Response {
    let s = state.lock().unwrap();
    let repo = format!("{o}/{r}");
    let list: Vec<Value> = s
        .pulls
        .iter()
        .filter(|((rp, n), _)| *rp == repo && !s.merged.contains_key(&(rp.clone(), *n)))
        .map(|((_, n), (head, base))| pull_json(&s, &repo, *n, head, base))
        .collect();
    Json(list).into_response()
}

/// The App the fake GitHub reports as the author of check runs (the tests' App id).
pub const APP_ID: u64 = 4242;

async fn list_commit_check_runs(
    State((state, _)): State<Shared>,
    Path((o, r, sha)): Path<(String, String, String)>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let s = state.lock().unwrap();
    let runs: Vec<Value> = s
        .check_runs
        .values()
        .filter(|c| {
            c.repo == format!("{o}/{r}") && c.head_sha == sha && q.get("check_name").is_none_or(|n| *n == c.name)
        })
        .map(|c| json!({"id": c.id, "name": c.name, "status": c.status, "app": {"id": APP_ID}}))
        .collect();
    Json(json!({"total_count": runs.len(), "check_runs": runs})).into_response()
}

fn comment_json(c: &Comment) -> Value {
    let via = c.via_app.map(|id| json!({"id": id, "slug": APP_SLUG}));
    json!({"id": c.id, "body": c.body, "user": {"login": c.author, "type": c.author_type}, "performed_via_github_app": via})
}

/// The App's slug: its bot user is `honua-gitops[bot]`.
pub const APP_SLUG: &str = "honua-gitops";

/// `GET /app`: the authenticated App (a JWT is required, as on GitHub).
async fn get_app(headers: HeaderMap) -> Response {
    if let Some(refused) = app_call_refused(&headers) {
        return refused;
    }
    Json(json!({"id": APP_ID, "slug": APP_SLUG, "name": "Honua GitOps", "owner": {"login": "city"}})).into_response()
}

/// GitHub's manifest flow, last step: a code (here, any but `used`) becomes the App's credentials. No
/// authentication, as on GitHub: the code is the secret.
async fn convert_manifest(Path(code): Path<String>) -> Response {
    if code == "used" {
        return (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"}))).into_response();
    }
    let pem = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/test-app-key.pem")).unwrap();
    let body = json!({"id": APP_ID, "slug": APP_SLUG, "name": "Honua GitOps", "html_url": format!("https://github.com/apps/{APP_SLUG}"),
        "client_id": "Iv1.test", "client_secret": "client-secret-test", "webhook_secret": "whsec-test", "pem": pem});
    (StatusCode::CREATED, Json(body)).into_response()
}

fn pull_json(s: &State_, repo: &str, n: u64, head: &str, base: &str) -> Value {
    let key = (repo.to_string(), n);
    let merge = s.merged.get(&key);
    json!({
        "number": n,
        "state": if merge.is_some() { "closed" } else { "open" },
        "head": {"sha": head, "ref": format!("feature-{n}")},
        "base": {"sha": "0".repeat(40), "ref": base},
        "user": {"login": s.pr_authors.get(&key).map_or("alice", String::as_str)},
        "merged": merge.is_some(),
        "merge_commit_sha": merge,
    })
}

async fn get_permission(
    State((state, _)): State<Shared>,
    Path((o, r, user)): Path<(String, String, String)>,
) -> Response {
    match state.lock().unwrap().permissions.get(&(format!("{o}/{r}"), user.clone())) {
        Some((permission, role)) => {
            Json(json!({"permission": permission, "role_name": role, "user": {"login": user}})).into_response()
        }
        None => (StatusCode::NOT_FOUND, Json(json!({"message": format!("{user} is not a user")}))).into_response(),
    }
}

async fn get_membership(
    State((state, _)): State<Shared>,
    Path((org, team, user)): Path<(String, String, String)>,
) -> Response {
    if state.lock().unwrap().team_members.contains(&(org, team, user)) {
        Json(json!({"state": "active", "role": "member"})).into_response()
    } else {
        (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"}))).into_response()
    }
}

async fn create_reaction(
    State((state, changed)): State<Shared>,
    Path((_o, _r, id)): Path<(String, String, u64)>,
    Json(body): Json<Value>,
) -> Response {
    let content = body["content"].as_str().unwrap_or_default().to_string();
    state.lock().unwrap().reactions.push((id, content.clone()));
    changed.notify_waiters();
    (StatusCode::CREATED, Json(json!({"id": 1, "content": content}))).into_response()
}

async fn list_comments(
    State((state, _)): State<Shared>,
    Path((o, r, n)): Path<(String, String, u64)>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let per_page: usize = q.get("per_page").and_then(|p| p.parse().ok()).unwrap_or(30);
    let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let s = state.lock().unwrap();
    let all: Vec<Value> =
        s.comments.values().filter(|c| c.repo == format!("{o}/{r}") && c.number == n).map(comment_json).collect();
    Json(all.into_iter().skip((page - 1) * per_page).take(per_page).collect::<Vec<_>>()).into_response()
}

async fn create_comment(
    State((state, changed)): State<Shared>,
    Path((o, r, n)): Path<(String, String, u64)>,
    Json(body): Json<Value>,
) -> Response {
    let mut s = state.lock().unwrap();
    let c = Comment {
        id: s.new_id(),
        repo: format!("{o}/{r}"),
        number: n,
        body: body["body"].as_str().unwrap_or_default().to_string(),
        author_type: "Bot".into(),
        author: format!("{APP_SLUG}[bot]"),
        edits: 0,
        via_app: Some(APP_ID),
    };
    let out = comment_json(&c);
    s.comments.insert(c.id, c);
    created(s, &changed, out)
}

async fn edit_comment(
    State((state, changed)): State<Shared>,
    Path((_o, _r, id)): Path<(String, String, u64)>,
    Json(body): Json<Value>,
) -> Response {
    let mut s = state.lock().unwrap();
    let Some(c) = s.comments.get_mut(&id) else { return StatusCode::NOT_FOUND.into_response() };
    c.body = body["body"].as_str().unwrap_or_default().to_string();
    c.edits += 1;
    let out = comment_json(c);
    drop(s);
    changed.notify_waiters();
    Json(out).into_response()
}

async fn delete_comment(
    State((state, changed)): State<Shared>,
    Path((_o, _r, id)): Path<(String, String, u64)>,
) -> Response {
    state.lock().unwrap().comments.remove(&id);
    changed.notify_waiters();
    StatusCode::NO_CONTENT.into_response()
}

/// GitHub reports the caller's remaining budget on every answer; the fake counts down from 5,000.
async fn rate_limit_headers(mut response: Response) -> Response {
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let calls = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    let headers = response.headers_mut();
    headers.insert("x-ratelimit-limit", "5000".parse().unwrap());
    headers.insert("x-ratelimit-remaining", 5000u64.saturating_sub(calls).to_string().parse().unwrap());
    headers.insert("x-ratelimit-resource", "core".parse().unwrap());
    response
}

impl FakeGithub {
    pub async fn start() -> FakeGithub {
        let state = Arc::new(Mutex::new(State_::default()));
        let changed = Arc::new(Notify::new());
        let token_routes = Router::new()
            .route("/repos/{o}/{r}/check-runs", post(create_check_run))
            .route("/repos/{o}/{r}/check-runs/{id}", patch(update_check_run))
            .route("/repos/{o}/{r}/pulls/{n}", get(get_pull))
            .route("/repos/{o}/{r}/pulls", get(list_pulls).post(create_pull))
            .route("/repos/{o}/{r}/deployments", post(create_deployment))
            .route("/repos/{o}/{r}/deployments/{id}/statuses", post(create_deployment_status))
            .route("/repos/{o}/{r}/git/commits", post(create_git_commit))
            .route("/repos/{o}/{r}/git/refs", post(create_git_ref))
            .route("/repos/{o}/{r}/commits/{sha}/check-runs", get(list_commit_check_runs))
            .route("/repos/{o}/{r}", get(get_repository))
            .route("/repos/{o}/{r}/branches/{b}", get(get_branch))
            .route("/repos/{o}/{r}/collaborators/{u}/permission", get(get_permission))
            .route("/orgs/{org}/teams/{team}/memberships/{u}", get(get_membership))
            .route("/repos/{o}/{r}/issues/comments/{id}/reactions", post(create_reaction))
            .route("/installation/repositories", get(installation_repositories))
            .route("/repos/{o}/{r}/issues/{n}/comments", get(list_comments).post(create_comment))
            .route("/repos/{o}/{r}/issues/comments/{id}", patch(edit_comment).delete(delete_comment))
            .route_layer(axum::middleware::from_fn(installation_or_user_token));
        let app = Router::new()
            .route("/app/installations/{id}/access_tokens", post(access_token))
            .route("/repos/{o}/{r}/installation", get(repo_installation))
            .route("/app/installations", get(list_installations))
            .route("/app", get(get_app))
            .route("/app-manifests/{code}/conversions", post(convert_manifest))
            .merge(token_routes)
            .layer(axum::middleware::from_fn_with_state((state.clone(), changed.clone()), injected_faults))
            .with_state((state.clone(), changed.clone()))
            .layer(axum::middleware::map_response(rate_limit_headers));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeGithub { addr, state, changed }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next `n` check-run updates fail with 502 (GitHub having a bad minute).
    pub fn fail_check_run_updates(&self, n: u32) {
        self.state.lock().unwrap().failing_updates = n;
    }

    /// The next requests get these answers instead of their own, in order.
    pub fn inject(&self, faults: impl IntoIterator<Item = Injected>) {
        self.state.lock().unwrap().injected.extend(faults);
    }

    /// Injected answers given so far.
    pub fn injected_served(&self) -> u32 {
        self.state.lock().unwrap().injected_served
    }

    /// Records an open pull request, as GitHub knows it.
    pub fn open_pr(&self, repo: &str, number: u64, head_sha: &str, base_ref: &str) {
        self.state.lock().unwrap().pulls.insert((repo.into(), number), (head_sha.into(), base_ref.into()));
    }

    /// Makes `branch` the default branch of `repo` (GitHub's `default_branch`; `main` otherwise).
    pub fn set_default_branch(&self, repo: &str, branch: &str) {
        self.state.lock().unwrap().default_branches.insert(repo.to_string(), branch.to_string());
    }

    pub fn set_branch(&self, repo: &str, branch: &str, sha: &str) {
        self.state.lock().unwrap().branches.insert((repo.to_string(), branch.to_string()), sha.to_string());
    }

    /// A person's comment (not ours, even if it quotes our marker).
    pub fn post_comment(&self, repo: &str, number: u64, body: &str) -> u64 {
        self.post_comment_as(repo, number, body, "someone", "User")
    }

    pub fn post_comment_as(&self, repo: &str, number: u64, body: &str, login: &str, kind: &str) -> u64 {
        let mut s = self.state.lock().unwrap();
        let id = s.new_id();
        let comment = Comment {
            id,
            repo: repo.into(),
            number,
            body: body.into(),
            author_type: kind.into(),
            author: login.into(),
            edits: 0,
            via_app: None,
        };
        s.comments.insert(id, comment);
        id
    }

    /// Gives `login` a role on `repo`: `("write", "write")`, `("read", "triage")`, …
    pub fn grant(&self, repo: &str, login: &str, permission: &str, role_name: &str) {
        self.state
            .lock()
            .unwrap()
            .permissions
            .insert((repo.into(), login.into()), (permission.into(), role_name.into()));
    }

    pub fn add_team_member(&self, org: &str, team: &str, login: &str) {
        self.state.lock().unwrap().team_members.insert((org.into(), team.into(), login.into()));
    }

    pub fn set_pr_author(&self, repo: &str, number: u64, login: &str) {
        self.state.lock().unwrap().pr_authors.insert((repo.into(), number), login.into());
    }

    /// The PR is merged as `merge_sha` (closed, `merged: true`).
    pub fn merge_pr(&self, repo: &str, number: u64, merge_sha: &str) {
        self.state.lock().unwrap().merged.insert((repo.into(), number), merge_sha.into());
    }

    /// Pull requests the service opened, with the commit their branch points at.
    pub fn opened_pulls(&self) -> Vec<(Value, Value)> {
        let s = self.state.lock().unwrap();
        s.opened_pulls
            .iter()
            .map(|p| {
                let branch = format!("refs/heads/{}", p["head"].as_str().unwrap_or_default());
                let commit =
                    s.git_refs.get(&branch).and_then(|sha| s.git_commits.get(sha)).cloned().unwrap_or(Value::Null);
                (p.clone(), commit)
            })
            .collect()
    }

    pub fn deployments(&self) -> Vec<GhDeployment> {
        self.state.lock().unwrap().deployments.values().cloned().collect()
    }

    /// The last status GitHub holds for the deployment mirroring ours (`payload.honua_deployment`).
    pub fn deployment_status(&self, ours: &str) -> Option<String> {
        let state = self.state.lock().unwrap();
        let mirror = state.deployments.values().find(|d| d.payload["honua_deployment"] == ours)?;
        mirror.statuses.last().cloned()
    }

    pub fn reactions(&self, comment_id: u64) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .reactions
            .iter()
            .filter(|(id, _)| *id == comment_id)
            .map(|(_, c)| c.clone())
            .collect()
    }

    pub fn check_runs(&self, head_sha: &str) -> Vec<CheckRun> {
        self.state.lock().unwrap().check_runs.values().filter(|c| c.head_sha == head_sha).cloned().collect()
    }

    pub fn comments(&self, repo: &str, number: u64) -> Vec<Comment> {
        self.state.lock().unwrap().comments.values().filter(|c| c.repo == repo && c.number == number).cloned().collect()
    }

    /// Waits (at most `timeout`) until `done` holds, re-checking after every change the fake records.
    pub async fn wait_for(&self, timeout: Duration, what: &str, done: impl Fn(&FakeGithub) -> bool) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            if done(self) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("timed out waiting for: {what}");
            }
        }
    }
}
