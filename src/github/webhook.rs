//! Webhook deliveries: `X-Hub-Signature-256` verification (HMAC-SHA256, constant time, several secrets
//! for rotation) and parsing of the payload into a small domain [`Event`]. Events the service does not
//! act on become [`Event::Ignored`]; a payload that does not have the shape of its event is an error
//! naming the JSON path that failed.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// A webhook secret. Never printed: `Debug` shows only its length.
#[derive(Clone)]
pub struct WebhookSecret(Vec<u8>);

impl WebhookSecret {
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        WebhookSecret(secret.into())
    }

    /// `HONUA_GITHUB_WEBHOOK_SECRET` holds several secrets separated by commas, so a secret can be
    /// rotated without dropping deliveries signed with the old one.
    pub fn parse_list(list: &str) -> Vec<WebhookSecret> {
        list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(WebhookSecret::new).collect()
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebhookSecret(<{} bytes>)", self.0.len())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Hub-Signature-256 header; configure the App's webhook secret")]
    Missing,
    #[error("malformed X-Hub-Signature-256 header (expected `sha256=<64 hex digits>`)")]
    Malformed,
    #[error("X-Hub-Signature-256 does not match any configured webhook secret")]
    Mismatch,
}

/// Verifies `header` (`sha256=<hex>`) over `body` against every secret; succeeds if one matches.
/// The comparison is constant-time (`Mac::verify_slice`).
pub fn verify_signature(secrets: &[WebhookSecret], body: &[u8], header: Option<&str>) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_sig = header.strip_prefix("sha256=").ok_or(SignatureError::Malformed)?;
    let signature = hex::decode(hex_sig).map_err(|_| SignatureError::Malformed)?;
    if signature.len() != 32 {
        return Err(SignatureError::Malformed);
    }
    let matched = secrets.iter().any(|secret| {
        let mut mac = Hmac::<Sha256>::new_from_slice(&secret.0).expect("HMAC accepts any key length");
        mac.update(body);
        mac.verify_slice(&signature).is_ok()
    });
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// `sha256=<hex>` for a body, as GitHub computes it (used by tests and webhook builders).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A repository as events name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoRef {
    pub owner: String,
    pub name: String,
    pub default_branch: String,
    /// The App installation that delivered the event (absent on deliveries not made through an App).
    pub installation: Option<u64>,
}

impl RepoRef {
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PullRequestAction {
    Opened,
    Synchronize,
    Reopened,
    Closed,
}

/// What the service acts on. Everything else is [`Event::Ignored`] with the event (and action) name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    PullRequest {
        repo: RepoRef,
        number: u64,
        action: PullRequestAction,
        head_sha: String,
        head_ref: String,
        base_sha: String,
        base_ref: String,
        author: String,
        merged: bool,
        /// Set when `merged`.
        merge_commit_sha: Option<String>,
        /// The head lives in another repository: checks run, but no credentials-bearing work.
        from_fork: bool,
    },
    Push {
        repo: RepoRef,
        git_ref: String,
        before: String,
        after: String,
        /// Who pushed (the delivery's sender), for the audit log.
        pusher: String,
        /// The branch was deleted: nothing to deploy.
        deleted: bool,
    },
    /// A comment created on an issue or pull request. An edit is never a command: an edited comment
    /// reaches the service only when it holds a command line, so it can be answered that it did nothing.
    Comment {
        repo: RepoRef,
        number: u64,
        on_pull_request: bool,
        comment_id: u64,
        body: String,
        author: String,
        author_is_bot: bool,
        edited: bool,
    },
    /// Checks asked for again: a check run rerequested / its action clicked, or a whole suite rerequested.
    ChecksRequested {
        repo: RepoRef,
        head_sha: String,
        pull_requests: Vec<u64>,
    },
    Installation {
        installation: u64,
        action: String,
        repositories: Vec<String>,
    },
    Ping {
        zen: String,
    },
    Ignored(String),
}

impl Event {
    /// The repository an event concerns, for logs and job routing.
    pub fn repository(&self) -> Option<String> {
        match self {
            Event::PullRequest { repo, .. }
            | Event::Push { repo, .. }
            | Event::Comment { repo, .. }
            | Event::ChecksRequested { repo, .. } => Some(repo.full_name()),
            _ => None,
        }
    }

    /// Whether the event leads to work (and so to a stored delivery and a job).
    pub fn is_actionable(&self) -> bool {
        !matches!(self, Event::Ignored(_) | Event::Ping { .. })
    }

    /// Whether its job is deployment work, which `honua serve` keeps a worker for: a commit on the
    /// default branch to plan, or a merged pull request whose approvals carry to its merge commit.
    pub fn deploys(&self) -> bool {
        match self {
            Event::Push { repo, git_ref, deleted, .. } => {
                !deleted && git_ref.strip_prefix("refs/heads/") == Some(repo.default_branch.as_str())
            }
            Event::PullRequest { action: PullRequestAction::Closed, merged, .. } => *merged,
            _ => false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("`{event}` payload does not have the expected shape at `{path}`: {message}")]
pub struct PayloadError {
    pub event: String,
    pub path: String,
    pub message: String,
}

// GitHub's JSON, only the parts we read. Unknown fields are ignored: GitHub adds fields over time.
#[derive(Deserialize)]
struct Account {
    login: String,
    #[serde(rename = "type", default)]
    kind: String,
}

#[derive(Deserialize)]
struct Repository {
    name: String,
    owner: Account,
    #[serde(default)]
    default_branch: Option<String>,
    #[serde(default)]
    full_name: Option<String>,
}

#[derive(Deserialize)]
struct Installation {
    id: u64,
}

#[derive(Deserialize)]
struct BranchRef {
    sha: String,
    #[serde(rename = "ref")]
    git_ref: String,
    repo: Option<Repository>,
}

#[derive(Deserialize)]
struct PullRequestBody {
    head: BranchRef,
    base: BranchRef,
    user: Account,
    #[serde(default)]
    merged: Option<bool>,
    #[serde(default)]
    merge_commit_sha: Option<String>,
}

#[derive(Deserialize)]
struct PullRequestPayload {
    action: String,
    number: u64,
    pull_request: PullRequestBody,
    repository: Repository,
    installation: Option<Installation>,
}

#[derive(Deserialize)]
struct PushPayload {
    #[serde(rename = "ref")]
    git_ref: String,
    before: String,
    after: String,
    repository: Repository,
    installation: Option<Installation>,
    #[serde(default)]
    sender: Option<Sender>,
    #[serde(default)]
    deleted: bool,
}

#[derive(Deserialize)]
struct Sender {
    login: String,
}

#[derive(Deserialize)]
struct Issue {
    number: u64,
    #[serde(default)]
    pull_request: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Comment {
    id: u64,
    #[serde(default)]
    body: Option<String>,
    user: Account,
}

#[derive(Deserialize)]
struct CommentPayload {
    action: String,
    issue: Issue,
    comment: Comment,
    repository: Repository,
    installation: Option<Installation>,
}

#[derive(Deserialize)]
struct PrNumber {
    number: u64,
}

#[derive(Deserialize)]
struct CheckRun {
    head_sha: String,
    #[serde(default)]
    pull_requests: Vec<PrNumber>,
}

#[derive(Deserialize)]
struct CheckRunPayload {
    action: String,
    check_run: CheckRun,
    repository: Repository,
    installation: Option<Installation>,
}

#[derive(Deserialize)]
struct CheckSuitePayload {
    action: String,
    check_suite: CheckRun,
    repository: Repository,
    installation: Option<Installation>,
}

#[derive(Deserialize)]
struct RepoName {
    full_name: String,
}

#[derive(Deserialize)]
struct InstallationPayload {
    action: String,
    installation: Installation,
    #[serde(default)]
    repositories: Option<Vec<RepoName>>,
    #[serde(default)]
    repositories_added: Option<Vec<RepoName>>,
}

#[derive(Deserialize)]
struct PingPayload {
    #[serde(default)]
    zen: String,
}

#[derive(Deserialize)]
struct ActionOnly {
    #[serde(default)]
    action: Option<String>,
}

fn repo_ref(r: Repository, installation: Option<Installation>) -> RepoRef {
    RepoRef {
        owner: r.owner.login,
        name: r.name,
        default_branch: r.default_branch.unwrap_or_else(|| "main".into()),
        installation: installation.map(|i| i.id),
    }
}

fn decode<'de, T: Deserialize<'de>>(event: &str, body: &'de [u8]) -> Result<T, PayloadError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| PayloadError {
        event: event.to_string(),
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })
}

/// The job kind of an [`Event`] the service found itself (the poller's missed pushes and pull requests),
/// queued as the event, not as GitHub JSON made up for it: `polled.push`, `polled.pull_request`.
pub const POLLED: &str = "polled.";

/// A polled event as a job: its kind and its payload.
pub fn polled_job(kind: &str, event: &Event) -> (String, Vec<u8>) {
    (format!("{POLLED}{kind}"), serde_json::to_vec(event).expect("events encode"))
}

/// Reads a queued job: a GitHub delivery (see [`parse_event`]), or an event the service queued itself.
/// Only the worker reads polled jobs; a webhook that names such a kind is GitHub's, and ignored.
pub fn parse_job(kind: &str, body: &[u8]) -> Result<Event, PayloadError> {
    match kind.strip_prefix(POLLED) {
        Some(_) => decode(kind, body),
        None => parse_event(kind, body),
    }
}

/// Parses a delivery (`X-GitHub-Event` name and body) into an [`Event`].
pub fn parse_event(event: &str, body: &[u8]) -> Result<Event, PayloadError> {
    let ignored = |action: &str| Ok(Event::Ignored(format!("{event}.{action}")));
    match event {
        "pull_request" => {
            let p: PullRequestPayload = decode(event, body)?;
            let action = match p.action.as_str() {
                "opened" => PullRequestAction::Opened,
                "synchronize" => PullRequestAction::Synchronize,
                "reopened" => PullRequestAction::Reopened,
                "closed" => PullRequestAction::Closed,
                other => return ignored(other),
            };
            let base_repo = p.repository.full_name.clone().unwrap_or_default();
            let from_fork =
                p.pull_request.head.repo.as_ref().and_then(|r| r.full_name.clone()).is_none_or(|h| h != base_repo);
            Ok(Event::PullRequest {
                number: p.number,
                action,
                head_sha: p.pull_request.head.sha,
                head_ref: p.pull_request.head.git_ref,
                base_sha: p.pull_request.base.sha,
                base_ref: p.pull_request.base.git_ref,
                author: p.pull_request.user.login,
                merged: p.pull_request.merged.unwrap_or(false),
                merge_commit_sha: p.pull_request.merge_commit_sha.filter(|_| p.pull_request.merged == Some(true)),
                from_fork,
                repo: repo_ref(p.repository, p.installation),
            })
        }
        "push" => {
            let p: PushPayload = decode(event, body)?;
            Ok(Event::Push {
                git_ref: p.git_ref,
                before: p.before,
                after: p.after,
                pusher: p.sender.map(|s| s.login).unwrap_or_default(),
                deleted: p.deleted,
                repo: repo_ref(p.repository, p.installation),
            })
        }
        "issue_comment" => {
            let p: CommentPayload = decode(event, body)?;
            let edited = p.action == "edited";
            let command_edited = edited && p.comment.body.as_deref().is_some_and(super::commands::has_command);
            if p.action != "created" && !command_edited {
                return ignored(&p.action);
            }
            Ok(Event::Comment {
                number: p.issue.number,
                on_pull_request: p.issue.pull_request.is_some(),
                comment_id: p.comment.id,
                body: p.comment.body.unwrap_or_default(),
                author_is_bot: p.comment.user.kind == "Bot" || p.comment.user.login.ends_with("[bot]"),
                author: p.comment.user.login,
                edited,
                repo: repo_ref(p.repository, p.installation),
            })
        }
        "check_run" => {
            let p: CheckRunPayload = decode(event, body)?;
            if !matches!(p.action.as_str(), "rerequested" | "requested_action") {
                return ignored(&p.action);
            }
            Ok(Event::ChecksRequested {
                head_sha: p.check_run.head_sha,
                pull_requests: p.check_run.pull_requests.into_iter().map(|pr| pr.number).collect(),
                repo: repo_ref(p.repository, p.installation),
            })
        }
        "check_suite" => {
            let p: CheckSuitePayload = decode(event, body)?;
            if p.action != "rerequested" {
                return ignored(&p.action);
            }
            Ok(Event::ChecksRequested {
                head_sha: p.check_suite.head_sha,
                pull_requests: p.check_suite.pull_requests.into_iter().map(|pr| pr.number).collect(),
                repo: repo_ref(p.repository, p.installation),
            })
        }
        "installation" | "installation_repositories" => {
            let p: InstallationPayload = decode(event, body)?;
            let repositories =
                p.repositories.or(p.repositories_added).unwrap_or_default().into_iter().map(|r| r.full_name).collect();
            Ok(Event::Installation { installation: p.installation.id, action: p.action, repositories })
        }
        "ping" => {
            let p: PingPayload = decode(event, body)?;
            Ok(Event::Ping { zen: p.zen })
        }
        other => {
            // Still reject a body that is not JSON: a malformed delivery is an error whatever its event.
            let p: ActionOnly = decode(other, body)?;
            Ok(Event::Ignored(match p.action {
                Some(a) => format!("{other}.{a}"),
                None => other.to_string(),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn githubs_documented_test_vector_verifies() {
        let secrets = [WebhookSecret::new("It's a Secret to Everybody")];
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(verify_signature(&secrets, b"Hello, World!", Some(sig)), Ok(()));
        assert_eq!(sign(b"It's a Secret to Everybody", b"Hello, World!"), sig);
        assert_eq!(verify_signature(&secrets, b"Hello, World?", Some(sig)), Err(SignatureError::Mismatch));
    }

    #[test]
    fn any_configured_secret_verifies_for_rotation() {
        let secrets = WebhookSecret::parse_list("old-secret, new-secret");
        assert_eq!(secrets.len(), 2);
        assert_eq!(verify_signature(&secrets, b"{}", Some(&sign(b"new-secret", b"{}"))), Ok(()));
        assert_eq!(verify_signature(&secrets, b"{}", Some(&sign(b"old-secret", b"{}"))), Ok(()));
        assert_eq!(verify_signature(&secrets, b"{}", Some(&sign(b"other", b"{}"))), Err(SignatureError::Mismatch));
    }

    #[test]
    fn malformed_and_missing_signatures_are_refused() {
        let s = [WebhookSecret::new("x")];
        assert_eq!(verify_signature(&s, b"", None), Err(SignatureError::Missing));
        assert_eq!(verify_signature(&s, b"", Some("sha1=abcd")), Err(SignatureError::Malformed));
        assert_eq!(verify_signature(&s, b"", Some("sha256=zz")), Err(SignatureError::Malformed));
        assert_eq!(verify_signature(&s, b"", Some("sha256=abcd")), Err(SignatureError::Malformed));
        assert_eq!(verify_signature(&[], b"", Some(&sign(b"x", b""))), Err(SignatureError::Mismatch));
    }

    #[test]
    fn secrets_never_print() {
        assert_eq!(format!("{:?}", WebhookSecret::new("hunter2")), "WebhookSecret(<7 bytes>)");
    }

    #[test]
    fn a_polled_event_is_queued_as_itself_and_a_webhook_cannot_pass_for_one() {
        let push = Event::Push {
            repo: RepoRef {
                owner: "o".into(),
                name: "r".into(),
                default_branch: "trunk".into(),
                installation: Some(7),
            },
            git_ref: "refs/heads/trunk".into(),
            before: String::new(),
            after: "a".repeat(40),
            pusher: "poller".into(),
            deleted: false,
        };
        let (kind, payload) = polled_job("push", &push);
        assert_eq!(kind, "polled.push");
        assert_eq!(parse_job(&kind, &payload).unwrap(), push, "the worker reads back the same event");
        // GitHub's deliveries go through `parse_event`, which knows no such kind: a signed delivery
        // naming it is ignored, never taken for the service's own event.
        assert!(matches!(parse_event(&kind, &payload).unwrap(), Event::Ignored(_)));
        assert!(parse_job("polled.push", b"{\"ref\": 5}").is_err());
    }

    #[test]
    fn edited_comments_only_reach_the_service_to_be_told_they_do_nothing() {
        let body = br#"{"action":"edited","issue":{"number":1},"comment":{"id":2,"body":"/honua approve","user":{"login":"a","type":"User"}},"repository":{"name":"r","owner":{"login":"o"}}}"#;
        assert!(matches!(parse_event("issue_comment", body).unwrap(), Event::Comment { edited: true, .. }));
        let prose = br#"{"action":"edited","issue":{"number":1},"comment":{"id":2,"body":"typo fixed","user":{"login":"a","type":"User"}},"repository":{"name":"r","owner":{"login":"o"}}}"#;
        assert_eq!(parse_event("issue_comment", prose).unwrap(), Event::Ignored("issue_comment.edited".into()));
        let deleted = br#"{"action":"deleted","issue":{"number":1},"comment":{"id":2,"body":"/honua approve","user":{"login":"a","type":"User"}},"repository":{"name":"r","owner":{"login":"o"}}}"#;
        assert_eq!(parse_event("issue_comment", deleted).unwrap(), Event::Ignored("issue_comment.deleted".into()));
        assert_eq!(parse_event("star", br#"{"action":"created"}"#).unwrap(), Event::Ignored("star.created".into()));
    }

    #[test]
    fn deployment_work_is_a_default_branch_commit_or_a_merged_pull_request() {
        let repo = r#""repository":{"name":"r","owner":{"login":"o"},"default_branch":"trunk"}"#;
        let push = |r: &str, deleted: bool| {
            let body = format!(
                r#"{{"ref":"{r}","before":"","after":"a","deleted":{deleted},"pusher":{{"name":"p"}},{repo}}}"#
            );
            parse_event("push", body.as_bytes()).unwrap()
        };
        assert!(push("refs/heads/trunk", false).deploys());
        assert!(!push("refs/heads/trunk", true).deploys(), "a deleted branch plans nothing");
        assert!(!push("refs/heads/feature", false).deploys());
        assert!(!push("refs/tags/trunk", false).deploys());
        let pull = |action: &str, merged: bool| {
            let body = format!(
                r#"{{"action":"{action}","number":1,"pull_request":{{"merged":{merged},"merge_commit_sha":"m","head":{{"sha":"h","ref":"f"}},"base":{{"sha":"b","ref":"trunk"}},"user":{{"login":"u"}}}},{repo}}}"#
            );
            parse_event("pull_request", body.as_bytes()).unwrap()
        };
        assert!(pull("closed", true).deploys());
        assert!(!pull("closed", false).deploys());
        assert!(!pull("opened", false).deploys());
    }

    #[test]
    fn a_wrong_shape_names_the_path() {
        let err = parse_event("push", br#"{"ref": 5}"#).unwrap_err();
        assert_eq!(err.path, "ref");
        assert!(parse_event("star", b"not json").is_err());
    }
}
