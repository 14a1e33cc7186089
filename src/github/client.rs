//! The GitHub App client: one App-authenticated octocrab client (RS256 JWTs, made by octocrab with
//! `iat` 60 s in the past and a 10-minute expiry), and one long-lived client per installation so its
//! installation token is cached and shared by every job of that installation. [`GithubRepo`] offers
//! the typed operations the PR flow needs; handlers never build URLs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use octocrab::models::InstallationId;
use octocrab::service::middleware::retry::{RateLimitMetrics, RetryConfig};
use octocrab::{OctoBody, Octocrab};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::json;

use super::checks::{plan_comment_part, CheckOutput};

#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    #[error("GitHub App private key: {0}; give the PEM file the App settings page generated")]
    Key(String),
    #[error("GitHub API URL `{url}`: {message}")]
    ApiUrl { url: String, message: String },
    #[error("GitHub API ({what}): {source}")]
    Api { what: String, source: octocrab::Error },
}

fn api(what: impl Into<String>) -> impl FnOnce(octocrab::Error) -> GithubError {
    let what = what.into();
    move |source| GithubError::Api { what, source }
}

/// Counts GitHub's refusals that octocrab retries.
struct RetryMetrics;

impl RateLimitMetrics for RetryMetrics {
    fn retry_after_error(&self, _req: &axum::http::Request<OctoBody>, status: axum::http::StatusCode, _left: usize) {
        metrics::counter!("honua_github_retries_total", "status" => status.as_u16().to_string()).increment(1);
    }

    fn rate_limited(
        &self,
        _req: &axum::http::Request<OctoBody>,
        status: axum::http::StatusCode,
        _left: usize,
        wait: u64,
    ) {
        tracing::warn!(status = status.as_u16(), wait_seconds = wait, "GitHub rate limit: waiting before retrying");
        metrics::counter!("honua_github_rate_limited_total", "status" => status.as_u16().to_string()).increment(1);
    }
}

pub struct GithubApp {
    app_id: u64,
    app: Octocrab,
    installations: Mutex<HashMap<u64, Octocrab>>,
}

impl GithubApp {
    pub fn new(app_id: u64, private_key_pem: &[u8], api_url: &str) -> Result<Self, GithubError> {
        let key =
            jsonwebtoken::EncodingKey::from_rsa_pem(private_key_pem).map_err(|e| GithubError::Key(e.to_string()))?;
        // Retries 5xx at once and 403/429 after GitHub's `retry-after` / `x-ratelimit-reset` (secondary
        // rate limits included), three times at most; each wait is counted in the metrics.
        let retries =
            RetryConfig::HandleRateLimits { metrics: Arc::new(RetryMetrics), max_retries: 3, min_wait_seconds: 5 };
        let app = Octocrab::builder()
            .add_retry_config(retries)
            .app(app_id.into(), key)
            .base_uri(api_url)
            .map_err(|e| GithubError::ApiUrl { url: api_url.to_string(), message: e.to_string() })?
            .build()
            .map_err(|e| GithubError::ApiUrl { url: api_url.to_string(), message: e.to_string() })?;
        Ok(GithubApp { app_id, app, installations: Mutex::new(HashMap::new()) })
    }

    fn installation(&self, id: u64) -> Result<Octocrab, GithubError> {
        let mut cache = self.installations.lock().expect("installation cache");
        if let Some(client) = cache.get(&id) {
            return Ok(client.clone());
        }
        let client = self.app.installation(InstallationId(id)).map_err(api("installation client"))?;
        cache.insert(id, client.clone());
        Ok(client)
    }

    /// The installations of this App (as the App, with a JWT).
    pub async fn installations(&self) -> Result<Vec<u64>, GithubError> {
        #[derive(Deserialize)]
        struct Installation {
            id: u64,
        }
        let mut ids = Vec::new();
        for page in 1.. {
            let list: Vec<Installation> = self
                .app
                .get(format!("/app/installations?per_page=100&page={page}"), None::<&()>)
                .await
                .map_err(api("list installations"))?;
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
        let client = self.installation(installation)?;
        let mut out = Vec::new();
        for page in 1.. {
            let list: Page = client
                .get(format!("/installation/repositories?per_page=100&page={page}"), None::<&()>)
                .await
                .map_err(api("list installation repositories"))?;
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

    pub fn repo(&self, installation: u64, owner: &str, name: &str) -> Result<GithubRepo, GithubError> {
        Ok(GithubRepo {
            client: self.installation(installation)?,
            app_id: self.app_id,
            owner: owner.to_string(),
            name: name.to_string(),
        })
    }
}

/// One repository, as one installation sees it.
pub struct GithubRepo {
    client: Octocrab,
    app_id: u64,
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
    state: String,
    head: PullBranch,
    base: PullBranch,
}

#[derive(Deserialize)]
struct IssueComment {
    id: u64,
    #[serde(default)]
    body: Option<String>,
    user: CommentUser,
}

#[derive(Deserialize)]
struct CommentUser {
    #[serde(rename = "type", default)]
    kind: String,
}

impl GithubRepo {
    fn route(&self, rest: &str) -> String {
        format!("/repos/{}/{}/{rest}", self.owner, self.name)
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
            let pulls: Vec<Pull> = self
                .client
                .get(self.route(&format!("pulls?state=open&per_page=100&page={page}")), None::<&()>)
                .await
                .map_err(api("list open pull requests"))?;
            let last = pulls.len() < 100;
            out.extend(pulls.into_iter().map(|p| PullRequestHeads {
                number: p.number,
                head_sha: p.head.sha,
                base_ref: p.base.git_ref,
                open: p.state == "open",
            }));
            if last {
                break;
            }
        }
        Ok(out)
    }

    /// A pull request's current head and base branch.
    pub async fn pull_request(&self, number: u64) -> Result<PullRequestHeads, GithubError> {
        let pull: Pull = self
            .client
            .get(self.route(&format!("pulls/{number}")), None::<&()>)
            .await
            .map_err(api(format!("pull request #{number}")))?;
        Ok(PullRequestHeads {
            number: pull.number,
            head_sha: pull.head.sha,
            base_ref: pull.base.git_ref,
            open: pull.state == "open",
        })
    }

    /// Creates a check run on `head_sha`, already `in_progress` so the PR shows work has started. A run
    /// of ours with that name still in progress on that head (left by an attempt that failed midway) is
    /// reused, so a retried job never shows a second pair of checks.
    pub async fn create_check_run(
        &self,
        name: &str,
        head_sha: &str,
        details_url: Option<&str>,
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
        let route =
            self.route(&format!("commits/{head_sha}/check-runs?check_name={}&filter=latest", name.replace('/', "%2F")));
        let existing: Runs =
            self.client.get(route, None::<&()>).await.map_err(api(format!("list check runs {name}")))?;
        if let Some(run) = existing
            .check_runs
            .iter()
            .find(|r| r.status != "completed" && r.app.as_ref().is_some_and(|a| a.id == self.app_id))
        {
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
        let created: Created = self
            .client
            .post(self.route("check-runs"), Some(&body))
            .await
            .map_err(api(format!("create check run {name}")))?;
        Ok(created.id)
    }

    /// Completes a check run. The first 50 annotations go with the completion; GitHub appends the
    /// annotations of each following update, 50 per request.
    pub async fn complete_check_run(&self, id: u64, output: &CheckOutput) -> Result<(), GithubError> {
        let route = self.route(&format!("check-runs/{id}"));
        let mut batches = output.annotation_batches();
        let first = batches.next().unwrap_or_default();
        let body = json!({
            "status": "completed",
            "conclusion": output.conclusion,
            "completed_at": chrono::Utc::now().to_rfc3339(),
            "output": { "title": output.title, "summary": output.summary, "annotations": first },
        });
        let _: serde_json::Value =
            self.client.patch(&route, Some(&body)).await.map_err(api(format!("complete check run {}", output.name)))?;
        for batch in batches {
            let body = json!({ "output": { "title": output.title, "summary": output.summary, "annotations": batch } });
            let _: serde_json::Value = self
                .client
                .patch(&route, Some(&body))
                .await
                .map_err(api(format!("annotate check run {}", output.name)))?;
        }
        Ok(())
    }

    async fn our_plan_comments(&self, number: u64) -> Result<Vec<(usize, IssueComment)>, GithubError> {
        let mut ours = Vec::new();
        for page in 1.. {
            let route = self.route(&format!("issues/{number}/comments?per_page=100&page={page}"));
            let comments: Vec<IssueComment> =
                self.client.get(route, None::<&()>).await.map_err(api("list comments"))?;
            let last = comments.len() < 100;
            for c in comments {
                // Only a bot's comment with our marker is ours: a person quoting the marker is left alone.
                if let Some((part, _)) = c.body.as_deref().and_then(plan_comment_part).filter(|_| c.user.kind == "Bot")
                {
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
                    let _: serde_json::Value = self
                        .client
                        .patch(self.route(&format!("issues/comments/{}", c.id)), Some(&json!({ "body": body })))
                        .await
                        .map_err(api("edit plan comment"))?;
                }
                None => {
                    let _: Created = self
                        .client
                        .post(self.route(&format!("issues/{number}/comments")), Some(&json!({ "body": body })))
                        .await
                        .map_err(api("create plan comment"))?;
                }
            }
        }
        for surplus in slots {
            self.client
                .issues(&self.owner, &self.name)
                .delete_comment(octocrab::models::CommentId(surplus.id))
                .await
                .map_err(api("delete surplus plan comment"))?;
        }
        Ok(())
    }
}
