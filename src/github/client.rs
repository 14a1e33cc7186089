//! The GitHub App client: one App-authenticated octocrab client (RS256 JWTs, made by octocrab with
//! `iat` 60 s in the past and a 10-minute expiry), and one long-lived client per installation so its
//! installation token is cached and shared by every job of that installation. [`GithubRepo`] offers
//! the typed operations the PR flow needs; handlers never build URLs.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::Method;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use octocrab::models::InstallationId;
use octocrab::service::middleware::retry::RetryConfig;
use octocrab::Octocrab;
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::checks::{plan_comment_part, CheckOutput};
use crate::deployment::DeploymentState;
use crate::store::{Store, WriteBudget};

#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    #[error("GitHub App private key: {0}; give the PEM file the App settings page generated")]
    Key(String),
    #[error("GitHub API URL `{url}`: {message}")]
    ApiUrl { url: String, message: String },
    #[error("GitHub API ({what}): {}", describe(source))]
    Api { what: String, source: octocrab::Error },
    #[error("GitHub API ({what}): unexpected response: {message}")]
    Decode { what: String, message: String },
}

/// octocrab's own messages end in the backtrace of where the error was made ("Found at …"). With
/// `RUST_BACKTRACE` set, formatting one resolves it: the binary's debug info is read and kept (about
/// 250 MB of memory, measured under `benches/load.sh webhooks-faults`) and every log line and job error
/// carries a page of frames. The message here is the error's causes alone.
fn describe(error: &octocrab::Error) -> String {
    use std::error::Error as _;
    let kind = match error {
        octocrab::Error::GitHub { source, .. } => {
            return format!("{} ({})", source.message, source.status_code.as_u16());
        }
        octocrab::Error::Hyper { .. } | octocrab::Error::Service { .. } => "request failed",
        octocrab::Error::Http { .. } | octocrab::Error::InvalidHeaderValue { .. } => "bad request",
        octocrab::Error::Serde { .. } | octocrab::Error::Json { .. } => "unexpected answer",
        octocrab::Error::JWT { .. } => "App key",
        octocrab::Error::Installation { .. } | octocrab::Error::InstallationTokenInvalidAuth { .. } => {
            "installation token"
        }
        _ => "client",
    };
    let mut text = kind.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

fn api(what: impl Into<String>) -> impl FnOnce(octocrab::Error) -> GithubError {
    let what = what.into();
    move |source| GithubError::Api { what, source }
}

/// Retries of one request after GitHub refused or failed it.
const MAX_RETRIES: u32 = 3;
/// A wait GitHub asks for beyond this fails the request instead (its job is retried later with backoff)
/// rather than holding a worker.
const LONGEST_WAIT: Duration = Duration::from_secs(60);

/// Whether, and after how long, a request is sent again (`attempt` counts from 1). Rate limits (429, or
/// 403 with `retry-after` or an exhausted `x-ratelimit-remaining`) are waited out for any request: GitHub
/// did nothing. Server errors and network failures (timeouts, resets) are retried only for requests that
/// are safe to repeat: a `POST` may have been carried out before its answer was lost, so it fails instead,
/// and the job's retry looks up what was made before it creates anything.
fn retry_wait<B>(
    method: &Method,
    sent: &Result<axum::http::Response<B>, octocrab::Error>,
    attempt: u32,
) -> Option<Duration> {
    if attempt > MAX_RETRIES {
        return None;
    }
    let repeatable = *method != Method::POST;
    let backoff = Duration::from_millis(500 << attempt.min(4));
    let response = match sent {
        Err(_) => return repeatable.then_some(backoff),
        Ok(response) => response,
    };
    let status = response.status().as_u16();
    if status == 429 || status == 403 {
        let number = |name: &str| {
            response.headers().get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<i64>().ok())
        };
        let seconds = match (number("retry-after"), number("x-ratelimit-remaining"), number("x-ratelimit-reset")) {
            (Some(seconds), _, _) => seconds.max(0),
            (None, Some(0), Some(reset)) => (reset - chrono::Utc::now().timestamp()).max(1),
            // GitHub's advice for a limit announced without headers: a minute at least.
            (None, _, _) if status == 429 => 60,
            // A 403 without them is a real refusal (a missing permission): repeating it changes nothing.
            _ => return None,
        };
        let wait = Duration::from_secs(seconds as u64);
        return (wait <= LONGEST_WAIT).then_some(wait);
    }
    (response.status().is_server_error() && repeatable).then_some(backoff)
}

/// GitHub's secondary rate limits allow no more than 80 content-creating requests (POST, PATCH, PUT,
/// DELETE) a minute and 500 an hour. Two token buckets per installation keep every window under both:
/// 20 at once then one a second (20 + 60 ≤ 80 in any minute), and 100 at once then one every 9 s
/// (100 + 400 ≤ 500 in any hour). A request waits for both; the waits are counted in the metrics.
///
/// With several replicas the budget is shared through the store ([`GithubApp::share_write_budget`]): the
/// same two buckets, kept in one database row per installation, so the replicas together stay under
/// GitHub's ceilings, which count per App installation, not per process.
pub struct ContentLimits {
    minute: DefaultDirectRateLimiter,
    hour: DefaultDirectRateLimiter,
    shared: Option<(Arc<dyn Store>, u64)>,
}

/// The two buckets above, as the store keeps them for every replica.
pub const WRITE_BUDGET: WriteBudget =
    WriteBudget { minute_period_ms: 1_000, minute_burst: 20, hour_period_ms: 9_000, hour_burst: 100 };

impl ContentLimits {
    pub fn minute_quota() -> Quota {
        Quota::with_period(Duration::from_secs(1)).expect("non-zero period").allow_burst(nz(20))
    }

    pub fn hour_quota() -> Quota {
        Quota::with_period(Duration::from_secs(9)).expect("non-zero period").allow_burst(nz(100))
    }

    fn new(shared: Option<(Arc<dyn Store>, u64)>) -> Self {
        ContentLimits {
            minute: RateLimiter::direct(Self::minute_quota()),
            hour: RateLimiter::direct(Self::hour_quota()),
            shared,
        }
    }

    async fn acquire(&self) {
        let started = std::time::Instant::now();
        let mut refused = false;
        let waited = match &self.shared {
            Some((store, installation)) => loop {
                match store.take_write_budget(*installation, WRITE_BUDGET, crate::store::now_ms()).await {
                    Ok(None) => break refused,
                    Ok(Some(wait_ms)) => {
                        refused = true;
                        tokio::time::sleep(Duration::from_millis(wait_ms as u64)).await
                    }
                    Err(e) => {
                        // Better this replica's own limit than none, or than no write at all.
                        tracing::warn!(error = %e, "the shared GitHub write budget is unreadable; this replica's own limit applies");
                        break self.acquire_here().await;
                    }
                }
            },
            None => self.acquire_here().await,
        };
        if waited {
            metrics::counter!("honua_github_content_limit_waits_total").increment(1);
            tracing::info!(
                waited_ms = started.elapsed().as_millis() as u64,
                "GitHub content-creation limit: request delayed"
            );
        }
    }

    /// This process's buckets; `true` if the write had to wait.
    async fn acquire_here(&self) -> bool {
        if self.minute.check().is_ok() && self.hour.check().is_ok() {
            return false;
        }
        self.minute.until_ready().await;
        self.hour.until_ready().await;
        true
    }
}

/// At most `max` characters, ending in `…` when cut.
/// The state GitHub's Deployments API knows our deployment state by.
fn deployment_status_state(state: DeploymentState) -> &'static str {
    match state {
        DeploymentState::Pending | DeploymentState::AwaitingApproval | DeploymentState::Blocked => "pending",
        DeploymentState::Approved => "queued",
        DeploymentState::Applying => "in_progress",
        DeploymentState::Completed => "success",
        DeploymentState::Failed | DeploymentState::RolledBack => "failure",
        DeploymentState::Rejected | DeploymentState::Superseded | DeploymentState::Expired => "inactive",
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("non-zero")
}

/// One GitHub API request: waits for the content-creation limit when it writes, counts the call by
/// method and status, records the rate limit GitHub reports, and decodes the JSON answer.
async fn call<T: DeserializeOwned>(
    client: &Octocrab,
    limits: Option<&ContentLimits>,
    method: Method,
    route: &str,
    body: Option<&Value>,
    what: &str,
) -> Result<T, GithubError> {
    let mut attempt = 0;
    let sent = loop {
        attempt += 1;
        if method != Method::GET {
            if let Some(limits) = limits {
                limits.acquire().await;
            }
        }
        let sent = match method {
            Method::GET => client._get(route).await,
            Method::POST => client._post(route, body).await,
            Method::PATCH => client._patch(route, body).await,
            Method::PUT => client._put(route, body).await,
            Method::DELETE => client._delete(route, body).await,
            _ => unreachable!("the client sends GET, POST, PATCH, PUT and DELETE only"),
        };
        let status = match &sent {
            Ok(response) => response.status().as_u16().to_string(),
            Err(_) => "error".to_string(),
        };
        metrics::counter!("honua_github_api_calls_total", "method" => method.as_str().to_string(), "status" => status.clone())
            .increment(1);
        let Some(wait) = retry_wait(&method, &sent, attempt) else { break sent };
        let rate_limited = status == "403" || status == "429";
        let counter = if rate_limited { "honua_github_rate_limited_total" } else { "honua_github_retries_total" };
        metrics::counter!(counter, "status" => status.clone()).increment(1);
        tracing::warn!(what, status, attempt, wait_ms = wait.as_millis() as u64, "GitHub request not done; retrying");
        tokio::time::sleep(wait).await;
    };
    let response = sent.map_err(api(what))?;
    if let Some(left) = response
        .headers()
        .get("x-ratelimit-remaining")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<f64>().ok())
    {
        let resource =
            response.headers().get("x-ratelimit-resource").and_then(|v| v.to_str().ok()).unwrap_or("core").to_string();
        metrics::gauge!("honua_github_rate_limit_remaining", "resource" => resource).set(left);
    }
    let response = octocrab::map_github_error(response).await.map_err(api(what))?;
    let text = client.body_to_string(response).await.map_err(api(what))?;
    let text = if text.trim().is_empty() { "null" } else { text.as_str() };
    serde_json::from_str(text).map_err(|e| GithubError::Decode { what: what.to_string(), message: e.to_string() })
}

/// Who this App is on GitHub: its id, and the login of its bot user (`<slug>[bot]`), asked of
/// `GET /app` once. Comments are ours only when this bot wrote them.
struct AppIdentity {
    id: u64,
    app: Octocrab,
    bot_login: tokio::sync::OnceCell<String>,
}

impl AppIdentity {
    async fn bot_login(&self) -> Result<&str, GithubError> {
        #[derive(Deserialize)]
        struct App {
            slug: String,
        }
        let login = self
            .bot_login
            .get_or_try_init(|| async {
                let app: App = call(&self.app, None, Method::GET, "/app", None, "this App's identity").await?;
                Ok::<_, GithubError>(format!("{}[bot]", app.slug))
            })
            .await?;
        Ok(login)
    }
}

pub struct GithubApp {
    identity: Arc<AppIdentity>,
    app: Octocrab,
    installations: Mutex<HashMap<u64, (Octocrab, Arc<ContentLimits>)>>,
    /// Where the content-creation budget is shared with other replicas (none: this process only).
    budget: Option<Arc<dyn Store>>,
}

impl GithubApp {
    /// `timeout` bounds connecting, and each read and write: a GitHub that stops answering fails the
    /// request (and the job is retried) instead of holding a worker forever.
    pub fn new(app_id: u64, private_key_pem: &[u8], api_url: &str, timeout: Duration) -> Result<Self, GithubError> {
        let key =
            jsonwebtoken::EncodingKey::from_rsa_pem(private_key_pem).map_err(|e| GithubError::Key(e.to_string()))?;
        // Retries are `call`'s, which knows which requests are safe to repeat.
        let app = Octocrab::builder()
            .add_retry_config(RetryConfig::None)
            .set_connect_timeout(Some(timeout))
            .set_read_timeout(Some(timeout))
            .set_write_timeout(Some(timeout))
            .app(app_id.into(), key)
            .base_uri(api_url)
            .map_err(|e| GithubError::ApiUrl { url: api_url.to_string(), message: e.to_string() })?
            .build()
            .map_err(|e| GithubError::ApiUrl { url: api_url.to_string(), message: e.to_string() })?;
        let identity = Arc::new(AppIdentity { id: app_id, app: app.clone(), bot_login: Default::default() });
        Ok(GithubApp { identity, app, installations: Mutex::new(HashMap::new()), budget: None })
    }

    /// Shares GitHub's content-creation budget with every replica on `store`.
    pub fn share_write_budget(mut self, store: Arc<dyn Store>) -> Self {
        self.budget = Some(store);
        self
    }

    fn installation(&self, id: u64) -> Result<(Octocrab, Arc<ContentLimits>), GithubError> {
        let mut cache = self.installations.lock().expect("installation cache");
        if let Some(entry) = cache.get(&id) {
            return Ok(entry.clone());
        }
        let client = self.app.installation(InstallationId(id)).map_err(api("installation client"))?;
        let shared = self.budget.clone().map(|store| (store, id));
        let entry = (client, Arc::new(ContentLimits::new(shared)));
        cache.insert(id, entry.clone());
        Ok(entry)
    }

    /// The installations of this App (as the App, with a JWT).
    pub async fn installations(&self) -> Result<Vec<u64>, GithubError> {
        #[derive(Deserialize)]
        struct Installation {
            id: u64,
        }
        let mut ids = Vec::new();
        for page in 1.. {
            let route = format!("/app/installations?per_page=100&page={page}");
            let list: Vec<Installation> =
                call(&self.app, None, Method::GET, &route, None, "list installations").await?;
            let last = list.len() < 100;
            ids.extend(list.into_iter().map(|i| i.id));
            if last {
                break;
            }
        }
        Ok(ids)
    }

    /// The repositories an installation gives access to, as `(owner, name, default branch)`.
    pub async fn installation_repositories(
        &self,
        installation: u64,
    ) -> Result<Vec<(String, String, String)>, GithubError> {
        #[derive(Deserialize)]
        struct Page {
            repositories: Vec<Repo>,
        }
        #[derive(Deserialize)]
        struct Repo {
            name: String,
            owner: Owner,
            #[serde(default)]
            default_branch: Option<String>,
        }
        #[derive(Deserialize)]
        struct Owner {
            login: String,
        }
        let (client, _) = self.installation(installation)?;
        let mut out = Vec::new();
        for page in 1.. {
            let route = format!("/installation/repositories?per_page=100&page={page}");
            let list: Page = call(&client, None, Method::GET, &route, None, "list installation repositories").await?;
            let last = list.repositories.len() < 100;
            out.extend(
                list.repositories
                    .into_iter()
                    .map(|r| (r.owner.login, r.name, r.default_branch.unwrap_or_else(|| "main".into()))),
            );
            if last {
                break;
            }
        }
        Ok(out)
    }

    /// The installation of this App on `owner/name` (as the App).
    pub async fn repo_installation(&self, owner: &str, name: &str) -> Result<u64, GithubError> {
        #[derive(Deserialize)]
        struct Installation {
            id: u64,
        }
        let route = format!("/repos/{owner}/{name}/installation");
        let i: Installation = call(&self.app, None, Method::GET, &route, None, "repository installation").await?;
        Ok(i.id)
    }

    pub fn repo(&self, installation: u64, owner: &str, name: &str) -> Result<GithubRepo, GithubError> {
        let (client, limits) = self.installation(installation)?;
        Ok(GithubRepo {
            client,
            limits,
            identity: self.identity.clone(),
            owner: owner.to_string(),
            name: name.to_string(),
        })
    }
}

/// One repository, as one installation sees it.
pub struct GithubRepo {
    client: Octocrab,
    limits: Arc<ContentLimits>,
    identity: Arc<AppIdentity>,
    owner: String,
    name: String,
}

#[derive(Deserialize)]
struct Created {
    id: u64,
}

/// What the PR flow needs to know of an open pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequestHeads {
    pub number: u64,
    pub head_sha: String,
    pub base_ref: String,
    pub open: bool,
    /// Who opened it (for `preventSelfApproval`).
    pub author: String,
    pub merged: bool,
    pub merge_commit_sha: Option<String>,
}

/// A person's access to a repository, as the collaborator-permission API reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Permission {
    /// `admin`, `write`, `read` or `none` (custom roles map to one of these).
    pub permission: String,
    /// `admin`, `maintain`, `write`, `triage`, `read`, or a custom role's name.
    #[serde(default)]
    pub role_name: String,
}

impl Permission {
    /// Write access or above. `role_name` is honoured: triage and read never approve, whatever the
    /// base permission; a custom role approves when its base permission is write or admin.
    pub fn can_approve(&self) -> bool {
        match self.role_name.as_str() {
            "admin" | "maintain" | "write" => true,
            "triage" | "read" | "none" => false,
            _ => matches!(self.permission.as_str(), "admin" | "write"),
        }
    }
}

#[derive(Deserialize)]
struct PullBranch {
    sha: String,
    #[serde(rename = "ref")]
    git_ref: String,
}

#[derive(Deserialize)]
struct Pull {
    number: u64,
    #[serde(default)]
    html_url: Option<String>,
    state: String,
    head: PullBranch,
    base: PullBranch,
    #[serde(default)]
    user: Option<PullUser>,
    #[serde(default)]
    merged: Option<bool>,
    #[serde(default)]
    merged_at: Option<String>,
    #[serde(default)]
    merge_commit_sha: Option<String>,
}

#[derive(Deserialize)]
struct PullUser {
    login: String,
}

impl From<Pull> for PullRequestHeads {
    fn from(p: Pull) -> Self {
        let merged = p.merged.unwrap_or(p.merged_at.is_some());
        PullRequestHeads {
            number: p.number,
            head_sha: p.head.sha,
            base_ref: p.base.git_ref,
            open: p.state == "open",
            author: p.user.map(|u| u.login).unwrap_or_default(),
            merged,
            merge_commit_sha: p.merge_commit_sha.filter(|_| merged),
        }
    }
}

#[derive(Deserialize)]
struct IssueComment {
    id: u64,
    #[serde(default)]
    body: Option<String>,
    user: CommentUser,
    /// The App that wrote the comment through its installation, where GitHub says.
    #[serde(default)]
    performed_via_github_app: Option<CommentApp>,
}

#[derive(Deserialize)]
struct CommentUser {
    #[serde(default)]
    login: String,
    #[serde(rename = "type", default)]
    kind: String,
}

#[derive(Deserialize)]
struct CommentApp {
    id: u64,
}

impl IssueComment {
    /// Written by this App's bot user (and, where GitHub names the App, by this App): another bot, or a
    /// workflow echoing our marker, never passes for us.
    fn is_ours(&self, bot_login: &str, app_id: u64) -> bool {
        self.user.kind == "Bot"
            && self.user.login.eq_ignore_ascii_case(bot_login)
            && self.performed_via_github_app.as_ref().is_none_or(|a| a.id == app_id)
    }
}

impl GithubRepo {
    /// One repository through a user's token (`GITHUB_TOKEN`), for `honua ai` and `honua promote`
    /// outside the App. The App identity is then unknown, so no comment passes for the App's own.
    pub fn with_token(
        api_url: &str,
        token: &str,
        owner: &str,
        name: &str,
        timeout: Duration,
    ) -> Result<Self, GithubError> {
        let client = Octocrab::builder()
            .add_retry_config(RetryConfig::None)
            .set_connect_timeout(Some(timeout))
            .set_read_timeout(Some(timeout))
            .set_write_timeout(Some(timeout))
            .personal_token(token.to_string())
            .base_uri(api_url)
            .map_err(|e| GithubError::ApiUrl { url: api_url.to_string(), message: e.to_string() })?
            .build()
            .map_err(|e| GithubError::ApiUrl { url: api_url.to_string(), message: e.to_string() })?;
        let identity = Arc::new(AppIdentity { id: 0, app: client.clone(), bot_login: Default::default() });
        Ok(GithubRepo {
            client,
            limits: Arc::new(ContentLimits::new(None)),
            identity,
            owner: owner.to_string(),
            name: name.to_string(),
        })
    }

    fn route(&self, rest: &str) -> String {
        format!("/repos/{}/{}/{rest}", self.owner, self.name)
    }

    async fn get<T: DeserializeOwned>(&self, rest: &str, what: &str) -> Result<T, GithubError> {
        call(&self.client, Some(&self.limits), Method::GET, &self.route(rest), None, what).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        rest: &str,
        body: &Value,
        what: &str,
    ) -> Result<T, GithubError> {
        call(&self.client, Some(&self.limits), method, &self.route(rest), Some(body), what).await
    }

    /// The installation token, for `git fetch` over HTTPS as `x-access-token` (cached by octocrab).
    pub async fn git_token(&self) -> Result<String, GithubError> {
        let token = self.client.installation_token().await.map_err(api("installation token"))?;
        Ok(token.expose_secret().to_string())
    }

    /// Every open pull request of the repository.
    pub async fn open_pull_requests(&self) -> Result<Vec<PullRequestHeads>, GithubError> {
        let mut out = Vec::new();
        for page in 1.. {
            let pulls: Vec<Pull> =
                self.get(&format!("pulls?state=open&per_page=100&page={page}"), "list open pull requests").await?;
            let last = pulls.len() < 100;
            out.extend(pulls.into_iter().map(PullRequestHeads::from));
            if last {
                break;
            }
        }
        Ok(out)
    }

    /// The repository's default branch (`main`, `trunk`, …), as GitHub names it now.
    pub async fn default_branch(&self) -> Result<String, GithubError> {
        #[derive(Deserialize)]
        struct Repository {
            default_branch: String,
        }
        let route = format!("/repos/{}/{}", self.owner, self.name);
        let r: Repository = call(&self.client, Some(&self.limits), Method::GET, &route, None, "repository").await?;
        Ok(r.default_branch)
    }

    /// The commit a branch points at.
    pub async fn branch_head(&self, branch: &str) -> Result<String, GithubError> {
        #[derive(Deserialize)]
        struct Branch {
            commit: Commit,
        }
        #[derive(Deserialize)]
        struct Commit {
            sha: String,
        }
        let b: Branch = self.get(&format!("branches/{branch}"), &format!("branch {branch}")).await?;
        Ok(b.commit.sha)
    }

    /// A pull request's current head and base branch.
    pub async fn pull_request(&self, number: u64) -> Result<PullRequestHeads, GithubError> {
        let pull: Pull = self.get(&format!("pulls/{number}"), &format!("pull request #{number}")).await?;
        Ok(pull.into())
    }

    /// A person's permission on the repository (`none` for a stranger: GitHub answers 404 then).
    pub async fn permission(&self, user: &str) -> Result<Permission, GithubError> {
        let route = format!("collaborators/{user}/permission");
        match self.get::<Permission>(&route, &format!("permission of {user}")).await {
            Err(GithubError::Api { source: octocrab::Error::GitHub { source, .. }, .. })
                if source.status_code.as_u16() == 404 =>
            {
                Ok(Permission { permission: "none".into(), role_name: "none".into() })
            }
            other => other,
        }
    }

    /// Whether `user` is an active member of the team `org/team`.
    pub async fn team_member(&self, org: &str, team: &str, user: &str) -> Result<bool, GithubError> {
        #[derive(Deserialize)]
        struct Membership {
            state: String,
        }
        let route = format!("/orgs/{org}/teams/{team}/memberships/{user}");
        let what = format!("membership of {user} in {org}/{team}");
        match call::<Membership>(&self.client, Some(&self.limits), Method::GET, &route, None, &what).await {
            Ok(m) => Ok(m.state == "active"),
            Err(GithubError::Api { source: octocrab::Error::GitHub { source, .. }, .. })
                if source.status_code.as_u16() == 404 =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Reacts to a comment (`+1`, `-1`, `confused`, `eyes`, …).
    pub async fn react(&self, comment_id: u64, content: &str) -> Result<(), GithubError> {
        let route = format!("issues/comments/{comment_id}/reactions");
        let _: Value = self.send(Method::POST, &route, &json!({ "content": content }), "react to a comment").await?;
        Ok(())
    }

    /// Mirrors one of our deployments in GitHub's Deployments API; returns GitHub's id.
    pub async fn create_deployment(
        &self,
        sha: &str,
        environment: &str,
        deployment_id: &str,
        description: &str,
    ) -> Result<u64, GithubError> {
        let body = json!({
            "ref": sha,
            "environment": environment,
            "auto_merge": false,
            "required_contexts": [],
            "payload": { "honua_deployment": deployment_id },
            "description": truncate(description, 140),
            "production_environment": environment == "production",
        });
        let created: Created = self.send(Method::POST, "deployments", &body, "create a deployment").await?;
        Ok(created.id)
    }

    /// `state`: pending, queued, in_progress, success, failure, error or inactive.
    pub async fn create_deployment_status(
        &self,
        github_id: u64,
        state: DeploymentState,
        description: &str,
        log_url: Option<&str>,
    ) -> Result<(), GithubError> {
        let state = deployment_status_state(state);
        let mut body = json!({ "state": state, "description": truncate(description, 140), "auto_inactive": false });
        if let Some(url) = log_url {
            body["log_url"] = json!(url);
        }
        let route = format!("deployments/{github_id}/statuses");
        let _: Value = self.send(Method::POST, &route, &body, "post a deployment status").await?;
        Ok(())
    }

    /// A commit with `tree` on top of `parent`; returns its SHA.
    pub async fn create_commit(&self, message: &str, tree: &str, parent: &str) -> Result<String, GithubError> {
        #[derive(Deserialize)]
        struct Commit {
            sha: String,
        }
        let body = json!({ "message": message, "tree": tree, "parents": [parent] });
        let c: Commit = self.send(Method::POST, "git/commits", &body, "create a commit").await?;
        Ok(c.sha)
    }

    pub async fn create_branch(&self, branch: &str, sha: &str) -> Result<(), GithubError> {
        let body = json!({ "ref": format!("refs/heads/{branch}"), "sha": sha });
        let _: Value = self.send(Method::POST, "git/refs", &body, &format!("create branch {branch}")).await?;
        Ok(())
    }

    /// Opens a pull request; returns its number and its page (`html_url`, or the usual address when
    /// GitHub does not say).
    pub async fn open_pull_request(
        &self,
        title: &str,
        head: &str,
        base: &str,
        body: &str,
    ) -> Result<(u64, String), GithubError> {
        let request = json!({ "title": title, "head": head, "base": base, "body": body });
        let pull: Pull = self.send(Method::POST, "pulls", &request, "open a pull request").await?;
        let url = pull
            .html_url
            .clone()
            .unwrap_or_else(|| format!("https://github.com/{}/{}/pull/{}", self.owner, self.name, pull.number));
        Ok((pull.number, url))
    }

    /// Posts a comment on a PR or issue.
    pub async fn comment(&self, number: u64, body: &str) -> Result<(), GithubError> {
        let route = format!("issues/{number}/comments");
        let _: Created = self.send(Method::POST, &route, &json!({ "body": body }), "post a comment").await?;
        Ok(())
    }

    /// Creates a check run on `head_sha`, already `in_progress` so the PR shows work has started. A run
    /// of ours with that name still in progress on that head (left by an attempt that failed midway) is
    /// reused, and with `retry` a completed one too (a replica that died after completing it): a retried
    /// job never shows a second pair of checks.
    pub async fn create_check_run(
        &self,
        name: &str,
        head_sha: &str,
        details_url: Option<&str>,
        retry: bool,
    ) -> Result<u64, GithubError> {
        #[derive(Deserialize)]
        struct Runs {
            check_runs: Vec<Run>,
        }
        #[derive(Deserialize)]
        struct Run {
            id: u64,
            status: String,
            app: Option<RunApp>,
        }
        #[derive(Deserialize)]
        struct RunApp {
            id: u64,
        }
        let route = format!("commits/{head_sha}/check-runs?check_name={}&filter=latest", name.replace('/', "%2F"));
        let existing: Runs = self.get(&route, &format!("list check runs {name}")).await?;
        if let Some(run) = existing
            .check_runs
            .iter()
            .find(|r| (retry || r.status != "completed") && r.app.as_ref().is_some_and(|a| a.id == self.identity.id))
        {
            if run.status == "completed" {
                tracing::info!(check = name, head = head_sha, "reusing our completed check run on this head");
            }
            return Ok(run.id);
        }
        let mut body = json!({
            "name": name,
            "head_sha": head_sha,
            "status": "in_progress",
            "started_at": chrono::Utc::now().to_rfc3339(),
        });
        if let Some(url) = details_url {
            body["details_url"] = json!(url);
        }
        let created: Created =
            self.send(Method::POST, "check-runs", &body, &format!("create check run {name}")).await?;
        Ok(created.id)
    }

    /// Completes a check run. The first 50 annotations go with the completion; GitHub appends the
    /// annotations of each following update, 50 per request.
    pub async fn complete_check_run(&self, id: u64, output: &CheckOutput) -> Result<(), GithubError> {
        let route = format!("check-runs/{id}");
        let mut batches = output.annotation_batches();
        let first = batches.next().unwrap_or_default();
        let body = json!({
            "status": "completed",
            "conclusion": output.conclusion,
            "completed_at": chrono::Utc::now().to_rfc3339(),
            "output": { "title": output.title, "summary": output.summary, "annotations": first },
        });
        let _: Value = self.send(Method::PATCH, &route, &body, &format!("complete check run {}", output.name)).await?;
        for batch in batches {
            let body = json!({ "output": { "title": output.title, "summary": output.summary, "annotations": batch } });
            let _: Value =
                self.send(Method::PATCH, &route, &body, &format!("annotate check run {}", output.name)).await?;
        }
        Ok(())
    }

    async fn our_plan_comments(&self, number: u64) -> Result<Vec<(usize, IssueComment)>, GithubError> {
        let bot = self.identity.bot_login().await?.to_string();
        let mut ours = Vec::new();
        for page in 1.. {
            let route = format!("issues/{number}/comments?per_page=100&page={page}");
            let comments: Vec<IssueComment> = self.get(&route, "list comments").await?;
            let last = comments.len() < 100;
            for c in comments {
                // Only our bot's comment with our marker is ours: a person quoting the marker, or another
                // bot echoing it, is left alone.
                let part = c.body.as_deref().and_then(plan_comment_part);
                if let Some((part, _)) = part.filter(|_| c.is_ours(&bot, self.identity.id)) {
                    ours.push((part, c));
                }
            }
            if last {
                break;
            }
        }
        ours.sort_by_key(|(part, c)| (*part, c.id));
        Ok(ours)
    }

    /// Makes the PR show exactly `bodies` as its plan comment(s): existing parts are edited in place
    /// (and left alone when unchanged, to spare GitHub's content-creation limit), missing parts are
    /// created, surplus parts deleted. Never a second copy of the plan.
    pub async fn upsert_plan_comment(&self, number: u64, bodies: &[String]) -> Result<(), GithubError> {
        let existing = self.our_plan_comments(number).await?;
        let mut slots = existing.into_iter().map(|(_, c)| c).collect::<Vec<_>>().into_iter();
        for body in bodies {
            match slots.next() {
                Some(c) if c.body.as_deref() == Some(body.as_str()) => {}
                Some(c) => {
                    let route = format!("issues/comments/{}", c.id);
                    let _: Value =
                        self.send(Method::PATCH, &route, &json!({ "body": body }), "edit plan comment").await?;
                }
                None => {
                    let route = format!("issues/{number}/comments");
                    let _: Created =
                        self.send(Method::POST, &route, &json!({ "body": body }), "create plan comment").await?;
                }
            }
        }
        for surplus in slots {
            let route = format!("issues/comments/{}", surplus.id);
            let what = "delete surplus plan comment";
            let _: Value =
                call(&self.client, Some(&self.limits), Method::DELETE, &self.route(&route), None, what).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message names the causes, never a backtrace: octocrab's own ("Found at …") is resolved, read
    /// from the binary's debug info, whenever `RUST_BACKTRACE` is set.
    #[tokio::test]
    async fn a_network_error_reads_without_a_backtrace() {
        let key = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/test-app-key.pem")).unwrap();
        // Port 9 (discard) on loopback: nothing listens.
        let app = GithubApp::new(1, &key, "http://127.0.0.1:9", Duration::from_secs(2)).unwrap();
        let message = app.installations().await.unwrap_err().to_string();
        assert!(message.starts_with("GitHub API (list installations): request failed: "), "{message}");
        assert!(!message.contains("Found at") && !message.contains("backtrace"), "{message}");
    }
    use governor::clock::FakeRelativeClock;

    #[test]
    fn write_maintain_and_admin_approve_and_role_name_is_honoured() {
        let p = |permission: &str, role: &str| Permission { permission: permission.into(), role_name: role.into() };
        for (permission, role, can) in [
            ("admin", "admin", true),
            ("admin", "maintain", true),
            ("write", "write", true),
            ("read", "triage", false),
            ("read", "read", false),
            ("none", "none", false),
            // A role name wins over the base permission it maps to.
            ("write", "triage", false),
            // Custom roles: their base permission decides.
            ("write", "release-manager", true),
            ("read", "auditor", false),
        ] {
            assert_eq!(p(permission, role).can_approve(), can, "{permission}/{role}");
        }
    }

    /// Greedy writers taking every request the two buckets allow, over two simulated hours: no
    /// 60-second window may hold more than 80 requests, no hour more than 500.
    #[test]
    fn content_limits_keep_every_window_under_githubs_ceilings() {
        let clock = FakeRelativeClock::default();
        let minute = RateLimiter::direct_with_clock(ContentLimits::minute_quota(), clock.clone());
        let hour = RateLimiter::direct_with_clock(ContentLimits::hour_quota(), clock.clone());
        let step = Duration::from_millis(250);
        let mut sent_at = Vec::new();
        for tick in 0..(2 * 3600 * 4) {
            while minute.check().is_ok() && hour.check().is_ok() {
                sent_at.push(tick as u64 * 250);
            }
            clock.advance(step);
        }
        let most_within = |window_ms: u64| {
            let mut most = 0;
            let mut start = 0;
            for end in 0..sent_at.len() {
                while sent_at[end] - sent_at[start] >= window_ms {
                    start += 1;
                }
                most = most.max(end - start + 1);
            }
            most
        };
        assert!(most_within(60_000) <= 80, "{} in a minute", most_within(60_000));
        assert!(most_within(3_600_000) <= 500, "{} in an hour", most_within(3_600_000));
        // And the limits do not starve: a steady writer still gets hundreds through in two hours.
        assert!(sent_at.len() > 800, "{}", sent_at.len());
    }
}
