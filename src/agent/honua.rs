//! Honua's own HTTP surface as the agent uses it, read from Honua's source (JSON era, Honua.Server
//! `f210059`; `../shared/honua/REAL-SERVER.md` §1-3):
//!
//! - `Middleware/CsrfValidationMiddleware.cs`: every non-GET request needs an antiforgery token unless it
//!   carries an `X-API-Key` header (any value): the agent always sends one, else a POST is 403.
//! - `Extensions/AuthenticationExtensions.cs`, `Authentication/LocalAuthController.cs`,
//!   `Authentication/LocalBasicAuthenticationHandler.cs`: the admin routes want an administrator by a
//!   bearer JWT or HTTP Basic (`HonuaBasic`, accepted over HTTPS only). A local JWT comes from
//!   `POST /api/auth/local/login` and expires after 30 minutes: it is renewed before it expires, and
//!   once after a 401.
//! - `Middleware/LegacyApiRedirectMiddleware.cs`: un-versioned `/admin`, `/ogc`, `/api` … paths answer
//!   308 to `/v1…`: followed with the method, body and credentials, to the same origin only.
//! - `Metadata/MetadataAdministrationEndpointRouteBuilderExtensions.cs`: `POST /v1/admin/metadata/reload`
//!   (200; invalid metadata is a 500 problem+json and Honua keeps its previous snapshot), `POST
//!   /v1/admin/metadata/snapshots` (201). In QuickStart mode every admin route answers 401, without a
//!   challenge: that is how it is told apart from wrong credentials (401 with `WWW-Authenticate`).
//! - `Ogc/OgcSharedHandlers.Collections.cs`: `GET /v1/ogc/collections/{id}` answers 200 or 404 and is
//!   not cached (the list is, for ten minutes, on later builds).

use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::header::{HeaderMap, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// How the agent authenticates to Honua's admin routes.
#[derive(Clone, PartialEq, Eq)]
pub enum AdminAuth {
    /// No credentials (Honua without `honua:authentication:enforce`).
    None,
    /// `Authorization: Bearer TOKEN`: a token from Honua's identity provider.
    Bearer(String),
    /// HTTP Basic with a local administrator; Honua accepts it only over HTTPS.
    Basic { user: String, password: String },
    /// Honua's local login: its token is cached and renewed.
    Login { user: String, password: String },
}

impl std::fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets.
        match self {
            AdminAuth::None => f.write_str("none"),
            AdminAuth::Bearer(_) => f.write_str("bearer token"),
            AdminAuth::Basic { user, .. } => write!(f, "HTTP Basic as `{user}`"),
            AdminAuth::Login { user, .. } => write!(f, "local login as `{user}`"),
        }
    }
}

/// What answered, in words an operator can act on.
#[derive(Debug, thiserror::Error)]
pub enum HonuaError {
    #[error("Honua is not running: {url} refused the connection")]
    NotRunning { url: String },
    #[error("{url} is unreachable: {message}")]
    Unreachable { url: String, message: String },
    #[error("Honua runs in QuickStart mode: its admin routes answer 401 to everyone ({url}); set HONUA_AGENT_RELOAD_COMMAND (and HONUA_AGENT_RESTART_COMMAND), e.g. `systemctl restart honua`, to reload without the admin API, or run Honua in Local or OIDC authentication mode")]
    QuickStart { url: String },
    #[error("Honua refused the agent's credentials at {url} (HTTP 401): {advice}")]
    Unauthorized { url: String, advice: String },
    #[error("Honua's CSRF check refused {url} (HTTP 403 \"CSRF Token Validation Failed\"): a request without an antiforgery token needs an `X-API-Key` header; set HONUA_AGENT_API_KEY to any non-empty value")]
    Csrf { url: String },
    #[error("Honua refused {url} (HTTP 403{detail}): the admin user needs the `administrator` role")]
    Forbidden { url: String, detail: String },
    #[error("Honua refused the new metadata (HTTP 500 at {url}{detail}); it keeps serving what it loaded before, and its log names the cause (`honua validate` checks the same rules)")]
    Refused { url: String, detail: String },
    #[error("{url} answered HTTP {status}{detail}: this Honua has no snapshot store there (Configuration 2.0 builds removed it; JSON-era builds serve it at /v1/admin/metadata/snapshots). Point HONUA_AGENT_SNAPSHOT_URL at it, or set it empty to rely on the agent's previous release, which is always kept")]
    NoSnapshotStore { url: String, status: u16, detail: String },
    #[error("Honua's local login at {url} failed: {message}")]
    Login { url: String, message: String },
    #[error("{url} redirects to {location}, another origin: not followed (the agent sends its credentials to Honua only); point the setting at the final address")]
    CrossOrigin { url: String, location: String },
    #[error("{url} answered HTTP {status}{detail}")]
    Status { url: String, status: u16, detail: String },
}

/// A local login's token, and when to get a new one.
struct Session {
    token: String,
    renew_at: Instant,
}

/// Honua as the agent talks to it: one HTTP client (redirects: same origin only), the `X-API-Key`, the
/// admin credentials and, with the local login, the current session.
pub struct HonuaClient {
    http: reqwest::Client,
    api_key: Option<String>,
    auth: AdminAuth,
    login_url: String,
    session: tokio::sync::Mutex<Option<Session>>,
}

/// Bounds one request to Honua (a reload of a large catalogue takes seconds).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// A login token is renewed this long before it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(60);
/// Longest answer body read (Honua's errors are problem+json of a few hundred bytes).
const MAX_DETAIL: usize = 300;

fn same_origin(a: &url::Url, b: &url::Url) -> bool {
    a.scheme() == b.scheme() && a.host_str() == b.host_str() && a.port_or_known_default() == b.port_or_known_default()
}

impl HonuaClient {
    pub fn new(api_key: Option<String>, auth: AdminAuth, login_url: String) -> Result<HonuaClient, reqwest::Error> {
        let policy = reqwest::redirect::Policy::custom(|attempt| {
            let first = attempt.previous().first().cloned();
            match first {
                _ if attempt.previous().len() > 5 => attempt.error("more than 5 redirects"),
                Some(first) if !same_origin(&first, attempt.url()) => attempt.stop(),
                _ => attempt.follow(),
            }
        });
        let http =
            reqwest::Client::builder().redirect(policy).timeout(REQUEST_TIMEOUT).user_agent("honua-agent").build()?;
        Ok(HonuaClient {
            http,
            api_key: api_key.filter(|k| !k.is_empty()),
            auth,
            login_url,
            session: Default::default(),
        })
    }

    pub fn auth(&self) -> &AdminAuth {
        &self.auth
    }

    /// `POST` to the reload URL: Honua re-reads its metadata file.
    pub async fn reload(&self, url: &str) -> Result<(), HonuaError> {
        match self.admin(Method::POST, url, None).await {
            Ok(_) => Ok(()),
            Err(HonuaError::Status { url, status: 500, detail }) => Err(HonuaError::Refused { url, detail }),
            Err(e) => Err(e),
        }
    }

    /// Asks Honua for a snapshot of the metadata it runs; the label it gave, on success.
    pub async fn snapshot(&self, url: &str, label: &str, notes: &str) -> Result<String, HonuaError> {
        let body = json!({ "label": label, "notes": notes });
        match self.admin(Method::POST, url, Some(&body)).await {
            Ok(response) => {
                let answer: SnapshotAnswer = response.json().await.unwrap_or_default();
                Ok(answer.snapshot.and_then(|s| s.label).unwrap_or_else(|| label.to_string()))
            }
            Err(HonuaError::Status { url, status: status @ (400 | 404 | 405), detail }) => {
                Err(HonuaError::NoSnapshotStore { url, status, detail })
            }
            Err(e) => Err(e),
        }
    }

    /// Probes the admin API without changing anything (`GET` the snapshot list): credentials, mode.
    pub async fn probe_admin(&self, url: &str) -> Result<(), HonuaError> {
        self.admin(Method::GET, url, None).await.map(|_| ())
    }

    /// Whether Honua serves OGC collection `id` (`GET {collections}/{id}`: 200 or 404).
    pub async fn serves_collection(&self, collections_url: &str, id: &str) -> Result<bool, HonuaError> {
        let mut url = url::Url::parse(collections_url).map_err(|e| HonuaError::Unreachable {
            url: collections_url.to_string(),
            message: format!("not a URL: {e}"),
        })?;
        url.path_segments_mut()
            .map_err(|_| HonuaError::Unreachable { url: collections_url.into(), message: "not a base URL".into() })?
            .pop_if_empty()
            .push(id);
        let shown = url.to_string();
        let response = self.http.get(url).send().await.map_err(|e| transport(&shown, &e))?;
        match response.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            s => Err(HonuaError::Status { url: shown, status: s.as_u16(), detail: detail(response).await }),
        }
    }

    /// Honua's readiness (`/healthz/ready`: 200 when healthy or degraded, 503 when not).
    pub async fn healthy(&self, url: &str) -> bool {
        self.http.get(url).timeout(Duration::from_secs(10)).send().await.is_ok_and(|r| r.status().is_success())
    }

    /// One admin request: `X-API-Key`, the credentials, same-origin redirects; with the local login a
    /// 401 renews the token once and sends the request again.
    async fn admin(&self, method: Method, url: &str, body: Option<&Value>) -> Result<reqwest::Response, HonuaError> {
        for attempt in 0..2 {
            let mut request = self.http.request(method.clone(), url);
            if let Some(key) = &self.api_key {
                request = request.header("X-API-Key", key);
            }
            request = match &self.auth {
                AdminAuth::None => request,
                AdminAuth::Bearer(token) => request.bearer_auth(token),
                AdminAuth::Basic { user, password } => request.basic_auth(user, Some(password)),
                AdminAuth::Login { .. } => request.bearer_auth(self.session_token().await?),
            };
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request.send().await.map_err(|e| transport(url, &e))?;
            let renew = response.status() == StatusCode::UNAUTHORIZED
                && challenged(response.headers())
                && matches!(self.auth, AdminAuth::Login { .. })
                && attempt == 0;
            if renew {
                tracing::info!(url, "Honua refused the login token; logging in again");
                *self.session.lock().await = None;
                continue;
            }
            return self.checked(url, response).await;
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// The answer as Honua means it: success, or the error that says what to do.
    async fn checked(&self, url: &str, response: reqwest::Response) -> Result<reqwest::Response, HonuaError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let url = url.to_string();
        if status.is_redirection() {
            let location = response.headers().get(LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("?").to_string();
            return Err(HonuaError::CrossOrigin { url, location });
        }
        if status == StatusCode::UNAUTHORIZED {
            // QuickStart answers every admin route with a bare 401; an authentication scheme challenges.
            if !challenged(response.headers()) {
                return Err(HonuaError::QuickStart { url });
            }
            let advice = self.unauthorized_advice(&url);
            return Err(HonuaError::Unauthorized { url, advice });
        }
        let detail = detail(response).await;
        if status == StatusCode::FORBIDDEN {
            return Err(if detail.contains("CSRF") {
                HonuaError::Csrf { url }
            } else if detail.contains("QuickStart") {
                HonuaError::QuickStart { url }
            } else {
                HonuaError::Forbidden { url, detail }
            });
        }
        Err(HonuaError::Status { url, status: status.as_u16(), detail })
    }

    fn unauthorized_advice(&self, url: &str) -> String {
        match &self.auth {
            AdminAuth::None => "no admin credentials are configured: set HONUA_AGENT_ADMIN_USER and HONUA_AGENT_ADMIN_PASSWORD of a local administrator, or HONUA_AGENT_ADMIN_TOKEN".into(),
            AdminAuth::Bearer(_) => "the bearer token (HONUA_AGENT_ADMIN_TOKEN) is unknown, expired or not an administrator's; local tokens expire after 30 minutes, so prefer HONUA_AGENT_ADMIN_USER and HONUA_AGENT_ADMIN_PASSWORD with the local login".into(),
            AdminAuth::Basic { user, .. } if url.starts_with("http://") => format!("Honua accepts HTTP Basic only over HTTPS, so `{user}` was not even checked: reach Honua over https, or use its local login (HONUA_AGENT_ADMIN_AUTH=login)"),
            AdminAuth::Basic { user, .. } => format!("the password of `{user}` is wrong, or the account is locked, disabled or expired (HONUA_AGENT_ADMIN_USER, HONUA_AGENT_ADMIN_PASSWORD)"),
            AdminAuth::Login { user, .. } => format!("a fresh login token of `{user}` was refused too: is the user an administrator?"),
        }
    }

    /// The local login's token, logging in when there is none or it is about to expire.
    async fn session_token(&self) -> Result<String, HonuaError> {
        let mut session = self.session.lock().await;
        if let Some(s) = session.as_ref().filter(|s| Instant::now() < s.renew_at) {
            return Ok(s.token.clone());
        }
        let fresh = self.login().await?;
        let token = fresh.token.clone();
        *session = Some(fresh);
        Ok(token)
    }

    async fn login(&self) -> Result<Session, HonuaError> {
        let AdminAuth::Login { user, password } = &self.auth else { unreachable!("only the local login logs in") };
        let url = self.login_url.clone();
        let fail = |message: String| HonuaError::Login { url: url.clone(), message };
        let mut request = self.http.post(&url).json(&json!({ "username": user, "password": password }));
        // The login is a POST like any other to Honua's CSRF check.
        if let Some(key) = &self.api_key {
            request = request.header("X-API-Key", key);
        }
        let response = request.send().await.map_err(|e| transport(&url, &e))?;
        let status = response.status();
        let final_url = response.url().to_string();
        if status.is_success() {
            let answer: LoginAnswer = response.json().await.map_err(|e| fail(format!("unexpected answer: {e}")))?;
            let token = answer.token.ok_or_else(|| fail("the answer has no token".into()))?;
            let roles = answer.roles;
            if !roles.is_empty() && !roles.iter().any(|r| r.eq_ignore_ascii_case("administrator")) {
                return Err(fail(format!(
                    "`{user}` is not an administrator (roles: {}); the admin routes need the `administrator` role",
                    roles.join(", ")
                )));
            }
            tracing::info!(user = %user, "logged in to Honua");
            return Ok(Session { renew_at: renew_at(&token), token });
        }
        if status.is_redirection() {
            let location = response.headers().get(LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("?").to_string();
            return Err(HonuaError::CrossOrigin { url, location });
        }
        let detail = detail(response).await;
        if status == StatusCode::FORBIDDEN && detail.contains("CSRF") {
            return Err(HonuaError::Csrf { url });
        }
        Err(fail(match status.as_u16() {
            401 => format!("Honua refused `{user}` (HTTP 401): wrong password, or a locked, disabled or expired account (HONUA_AGENT_ADMIN_USER, HONUA_AGENT_ADMIN_PASSWORD)"),
            404 if final_url != url => format!(
                "it was redirected to {final_url}, where Honua has no route (HTTP 404): Honua redirects every `/api` path to `/v1` (`ApiVersioning:AllowLegacyUrls`, on by default) but its local login is not versioned. Set `ApiVersioning:AllowLegacyUrls` to false in Honua's appsettings, or use HTTP Basic over HTTPS (HONUA_AGENT_ADMIN_AUTH=basic)"
            ),
            503 => format!("local authentication is not enabled on this Honua (HTTP 503{detail}): it runs in QuickStart or OIDC mode; use HONUA_AGENT_ADMIN_TOKEN, or the reload command"),
            status => format!("HTTP {status}{detail}"),
        }))
    }
}

/// A 401 that names an authentication scheme (`WWW-Authenticate`), as Honua's JWT and Basic handlers
/// answer; QuickStart's bare 401 has none.
fn challenged(headers: &HeaderMap) -> bool {
    headers.contains_key(WWW_AUTHENTICATE)
}

/// When to renew a JWT: a minute before its `exp`, read without verifying (Honua verifies it; the agent
/// only needs to know when it ends). Honua's default lifetime, 30 minutes, when it cannot be read.
fn renew_at(token: &str) -> Instant {
    let fallback = Instant::now() + Duration::from_secs(30 * 60) - RENEW_BEFORE;
    let Some(payload) = token.split('.').nth(1) else { return fallback };
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')) else {
        return fallback;
    };
    let Some(exp) = serde_json::from_slice::<Claims>(&bytes).ok().and_then(|c| c.exp) else {
        return fallback;
    };
    let left = exp - chrono::Utc::now().timestamp();
    Instant::now() + Duration::from_secs(left.max(0) as u64).saturating_sub(RENEW_BEFORE)
}

fn transport(url: &str, e: &reqwest::Error) -> HonuaError {
    if e.is_connect() {
        return HonuaError::NotRunning { url: url.to_string() };
    }
    let message = if e.is_timeout() { "no answer in time".to_string() } else { e.to_string() };
    HonuaError::Unreachable { url: url.to_string(), message }
}

/// What Honua answers to `POST /admin/metadata/snapshots` (only the label is read).
#[derive(Debug, Default, serde::Deserialize)]
struct SnapshotAnswer {
    snapshot: Option<SnapshotLabel>,
}

#[derive(Debug, serde::Deserialize)]
struct SnapshotLabel {
    label: Option<String>,
}

/// What Honua's local login answers.
#[derive(Debug, serde::Deserialize)]
struct LoginAnswer {
    token: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
}

/// The one claim of Honua's JWT the agent reads.
#[derive(Debug, serde::Deserialize)]
struct Claims {
    exp: Option<i64>,
}

/// A problem+json answer (RFC 9457), or the `{error}` some of Honua's routes answer.
#[derive(Debug, Default, serde::Deserialize)]
struct Problem {
    title: Option<String>,
    detail: Option<String>,
    error: Option<String>,
}

/// `: <title: detail>` of a problem+json (or `{error}`) answer, for messages; empty when there is none.
async fn detail(response: reqwest::Response) -> String {
    let text = response.text().await.unwrap_or_default();
    let text: String = text.chars().take(4 * 1024).collect();
    let parsed: Problem = serde_json::from_str(&text).unwrap_or_default();
    let given = |s: Option<String>| s.filter(|s| !s.is_empty());
    let said = match (given(parsed.title), given(parsed.detail).or_else(|| given(parsed.error))) {
        (Some(t), Some(d)) => format!("{t}: {d}"),
        (Some(t), None) => t,
        (None, Some(d)) => d,
        (None, None) => text.trim().to_string(),
    };
    if said.is_empty() {
        return String::new();
    }
    let said: String = said.chars().take(MAX_DETAIL).collect();
    format!(": {said}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_token_is_renewed_a_minute_before_it_expires() {
        let claims = json!({ "sub": "admin", "exp": chrono::Utc::now().timestamp() + 600 });
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
        let at = renew_at(&format!("e30.{payload}.sig"));
        let left = at.saturating_duration_since(Instant::now()).as_secs();
        assert!((530..=540).contains(&left), "{left}");
        // Unreadable: Honua's default lifetime.
        let left = renew_at("opaque").saturating_duration_since(Instant::now()).as_secs();
        assert!((1730..=1740).contains(&left), "{left}");
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let auth = AdminAuth::Login { user: "admin".into(), password: "hunter2-hunter2".into() };
        assert_eq!(format!("{auth:?}"), "local login as `admin`");
        assert!(!format!("{:?}", AdminAuth::Bearer("s3cr3t-xyz".into())).contains("s3cr3t"));
    }
}
