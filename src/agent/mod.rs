//! The edge agent, one per Honua server, outbound connections only: asks the service for its environment's desired state, trusts only a
//! record whose signature verifies with the pinned key, for its own environment, newer than what it
//! applied; fetches the commit, renders the environment's effective metadata with the same code as
//! `validate` (an invalid render is refused before anything is touched), resolves `${VAR}` secrets
//! from its own environment, writes a new release directory (fsynced, owner-only), swaps the
//! `current` link atomically, asks Honua to reload, waits for health and checks that every expected
//! collection is served. On failure it swaps back, reloads and reports `rolled_back` with the cause.
//! Every phase is reported to the service.
//!
//! An on-disk journal, written before each step that touches the release or the link, lets a restart
//! converge (see [`Agent::recover`]).
//!
//! When the service is unreachable the agent reads the Git ledger (`refs/honua/ledger`) instead, and
//! keeps its reports on disk until the service answers again.
//!
//! Every poll also checks that what Honua is configured with is byte-for-byte the release the agent
//! wrote (a manifest of SHA-256 per file, kept outside Honua's directory): a hand edit is reported as
//! drift with the changed paths, and restored when the environment's policy says `selfHeal`. Each poll
//! sends a heartbeat (commit, health, version, sync status, last result).
//!
//! How a deployment is applied (health timeout, rollback on failure, backup, self-heal) comes from the
//! signed record, so it is what the policy said when the deployment was approved.
//!
//! Honua's admin API is spoken as Honua's source answers it ([`honua`]); without a service the agent
//! runs Git-only from Honua's own `gitops:` block or `GitOps` section (`git_only`), dry runs included.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::config::{ConfigRepo, EnvName};
use crate::deployment::wire::{DesiredState, Heartbeat, PhaseReport};
use crate::deployment::{short_sha, Phase};
use crate::git::mirror::Mirror;
use crate::plan::signing::{self, SignedRecord};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("service {url}: {message}")]
    Service { url: String, message: String },
    #[error("refused record: {0}")]
    Refused(String),
    #[error("{0}")]
    Apply(String),
    #[error("local state {path}: {message}")]
    State { path: PathBuf, message: String },
    /// Only with `crash_after` (tests): the process "died" after this journal phase.
    #[error("crashed after `{0}` (fault injection)")]
    Crashed(String),
}

/// An operator's reload or restart command that did not do its job.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{what} command could not start: {source}")]
    NotStarted { what: &'static str, source: std::io::Error },
    #[error("{what} command failed ({status}): {stderr}")]
    Failed { what: &'static str, status: std::process::ExitStatus, stderr: String },
}

/// Why Honua does not run a release correctly after the reload: what the report says.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    Honua(#[from] HonuaError),
    #[error("Honua was not running and did not start within {secs} s (it refuses to start without metadata, which is now in place): start it, or set HONUA_AGENT_RESTART_COMMAND")]
    NeverStarted { secs: u64 },
    #[error("not healthy within {secs} s")]
    Unhealthy { secs: u64 },
    #[error("post-validation: {0}")]
    Asking(HonuaError),
    #[error("post-validation: {} not served", .0.join(", "))]
    NotServed(Vec<String>),
    #[error("post-validation: {} still served after their removal", .0.join(", "))]
    StillServed(Vec<String>),
}

/// Why a drifted release could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum HealError {
    #[error(transparent)]
    Render(Box<AgentError>),
    #[error("could not write the restored release: {0}")]
    Write(std::io::Error),
    #[error("swap: {0}")]
    Swap(std::io::Error),
    #[error(transparent)]
    Verify(#[from] VerifyError),
}

/// One failed prerequisite of `honua agent --check`, in words that say what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CheckFailure(pub String);

impl From<String> for CheckFailure {
    fn from(problem: String) -> Self {
        CheckFailure(problem)
    }
}

impl From<&str> for CheckFailure {
    fn from(problem: &str) -> Self {
        CheckFailure(problem.to_string())
    }
}

mod git_only;
pub mod honua;
pub mod settings;

pub use honua::{AdminAuth, HonuaClient, HonuaError};

/// What a request to the service may take beyond any time the service holds it open on purpose.
pub const NETWORK_GRACE: Duration = Duration::from_secs(10);

/// How long Honua's `HclConfigurationWatcher` takes to re-read a replaced file: its 500 ms debounce and
/// a margin for the file system's notification.
pub const WATCHER_SETTLE: Duration = Duration::from_millis(1500);

/// What the agent needs to know. Every field has a flag and a `HONUA_AGENT_*` twin ([`settings`]).
#[derive(Clone)]
pub struct AgentConfig {
    pub server: String,
    pub token: String,
    pub environment: String,
    /// The service's public key, `ed25519:<hex>`, pinned at install time.
    pub public_key: String,
    /// The config repository's remote (read-only credentials in `git_token`).
    pub git_url: String,
    pub git_token: Option<String>,
    /// Honua's config directory: the agent owns `current` (a link to the live release) there.
    pub target_dir: PathBuf,
    pub metadata_file: String,
    /// A Configuration 2.0 environment's file in `target_dir` (Honua's `HONUA_CONFIG_PATH`): replaced in
    /// place on each deployment, because Honua's file watcher sees a file renamed over in its directory,
    /// never a parent link swapped.
    pub hcl_file: String,
    /// Honua's `POST /v1/admin/metadata/reload`.
    pub reload_url: String,
    /// Sent as `X-API-Key` with every admin request: any value passes Honua's CSRF check.
    pub api_key: Option<String>,
    /// How the agent authenticates to Honua's admin routes.
    pub admin: AdminAuth,
    /// Honua's local login (`POST /api/auth/local/login`), with [`AdminAuth::Login`].
    pub login_url: String,
    /// Run (`sh -c`) instead of the reload request when set.
    pub reload_command: Option<String>,
    /// Run (`sh -c`) instead of a reload when the server configuration (`config.yaml`) changed, and to
    /// start Honua when it is not running on a first install.
    pub restart_command: Option<String>,
    /// Honua's `POST /v1/admin/metadata/snapshots`, called before the swap when the policy says
    /// `requireBackup`.
    pub snapshot_url: Option<String>,
    /// The server configuration's file name in a release (written when the environment has a `config.yaml`).
    pub server_config_file: String,
    pub health_url: String,
    /// Honua's `/v1/ogc/collections`: each expected collection is asked for by id after a reload (and each
    /// removed one must be gone); post-validation is skipped without it.
    pub collections_url: Option<String>,
    /// Plan and report what would change, never apply (Honua's `GitOps:DryRun`; Git-only mode).
    pub dry_run: bool,
    /// Warnings from the settings (deprecated names, sections read and ignored), logged at start.
    pub notices: Vec<String>,
    /// Releases, mirror and the agent's own state.
    pub state_dir: PathBuf,
    /// Releases kept besides the live one and the one before it.
    pub keep_releases: usize,
    /// How often the Git ledger is read while the service answers (it is read at once when it does not).
    pub ledger_interval: Duration,
    /// How long the service may hold a poll open; the request is given this plus [`NETWORK_GRACE`].
    pub long_poll: Duration,
    /// Used when a record carries no `safety` (records signed before it existed).
    pub health_timeout: Duration,
    /// `KEY=VALUE` lines consulted before the agent's environment for `${VAR}` secrets.
    pub secrets_file: Option<PathBuf>,
    /// Git-only mode (the `gitops:` block, no service): the branch polled, and how often.
    pub git_only: Option<GitOnly>,
    /// Where the bare mirror of the config repository is kept (default: `<state_dir>/mirror`).
    pub mirror_dir: Option<PathBuf>,
    /// Fault injection for crash tests: stop dead (as a SIGKILL would) right after the journal
    /// records this phase (`writing`, `swapping` or `swapped`).
    pub crash_after: Option<String>,
}

#[derive(Debug, Clone)]
pub struct GitOnly {
    pub branch: String,
    pub interval: Duration,
}

/// Written (fsynced, renamed into place) before each step that touches the release or the `current`
/// link, so a restart knows exactly where an apply stopped.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Journal {
    deployment: String,
    sequence: i64,
    phase: String,
    release: PathBuf,
    previous: Option<PathBuf>,
    /// OGC collections Honua must serve after the reload, and those it must no longer serve.
    expected: Vec<String>,
    #[serde(default)]
    gone: Vec<String>,
    /// The server configuration changed: restart Honua instead of reloading it.
    #[serde(default)]
    restart: bool,
    #[serde(default)]
    safety: Option<signing::ApplySafety>,
    /// A Configuration 2.0 release: Honua picks it up by its file watcher, so verification waits for
    /// the collections to settle instead of checking once.
    #[serde(default)]
    hcl: bool,
}

/// What a release holds, kept outside Honua's reach: the record it renders and each file's SHA-256.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Manifest {
    record: SignedRecord,
    files: std::collections::BTreeMap<String, String>,
}

/// What the agent remembers between polls.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    /// The highest sequence applied (or refused) for the environment: older or replayed records are ignored.
    sequence: i64,
    deployment: Option<String>,
    etag: Option<String>,
    /// The outcome of the last apply or restore, for heartbeats.
    #[serde(default)]
    last_result: Option<String>,
    /// Git-only mode: the commit that runs, and the last head that was not applied (not retried).
    #[serde(default)]
    commit: Option<String>,
    #[serde(default)]
    seen: Option<String>,
    /// Git-only dry run: the last head reported. Kept apart from `seen`, so that turning the dry run off
    /// applies the head it reported.
    #[serde(default)]
    dry_run_seen: Option<String>,
    /// When the Git ledger is next read while the service answers (ms since the epoch).
    #[serde(default)]
    ledger_due: i64,
}

const QUICKSTART_WITH_COMMAND: &str = "QuickStart mode (the admin API is closed): reloads run HONUA_AGENT_RELOAD_COMMAND; a policy with requireBackup cannot snapshot, so set HONUA_AGENT_SNAPSHOT_URL empty to rely on the agent's previous release";

/// What one poll did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollOutcome {
    Unchanged,
    Applied {
        deployment: String,
    },
    RolledBack {
        deployment: String,
        cause: String,
    },
    /// Git-only dry run (Honua's `GitOps:DryRun`): what the head would do, planned and reported only.
    DryRun {
        commit: String,
        report: String,
    },
}

pub struct Agent {
    config: AgentConfig,
    key: VerifyingKey,
    http: reqwest::Client,
    honua: HonuaClient,
    /// The last poll could not reach the service (and read the Git ledger instead): the loop backs off
    /// as after a failure, rather than re-reading the ledger at the long-poll's pace.
    service_out_of_reach: std::sync::atomic::AtomicBool,
}

fn apply_err(what: impl std::fmt::Display) -> AgentError {
    AgentError::Apply(what.to_string())
}

/// Writes `bytes` to `path` owner-only and fsyncs it.
fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

/// `${VAR}` from the secrets file, then the agent's environment; a missing one refuses the deployment,
/// named (never a value).
/// `${VAR}` placeholders of a rendered file, from the secrets file, then the agent's environment. The
/// rendered files are JSON and placeholders sit inside its strings, so each value is JSON-escaped: a quote
/// or a backslash in a password cannot change the document. Errors name the placeholder, never the
/// rendered text (it holds the secrets resolved so far).
fn resolve_secrets(text: &str, secrets_file: Option<&Path>) -> Result<String, AgentError> {
    resolve_secrets_in(text, secrets_file, |value| {
        let quoted = serde_json::to_string(value).expect("strings encode");
        quoted[1..quoted.len() - 1].to_string()
    })
}

/// [`resolve_secrets`] for a rendered Configuration 2.0 file: values escaped as Honua's HCL reader
/// reads a quoted string back.
fn resolve_hcl_secrets(text: &str, secrets_file: Option<&Path>) -> Result<String, AgentError> {
    resolve_secrets_in(text, secrets_file, |value| {
        let quoted = crate::config::hcl::quote(value);
        quoted[1..quoted.len() - 1].to_string()
    })
}

fn resolve_secrets_in(
    text: &str,
    secrets_file: Option<&Path>,
    escape: impl Fn(&str) -> String,
) -> Result<String, AgentError> {
    let file: Vec<(String, String)> = match secrets_file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| AgentError::State { path: path.to_path_buf(), message: e.to_string() })?
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.trim().to_string(), v.to_string())))
            .collect(),
        None => Vec::new(),
    };
    let lookup =
        |name: &str| file.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).or_else(|| std::env::var(name).ok());
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find(['}', '"']).filter(|&i| after.as_bytes()[i] == b'}') else {
            let shown: String = after.chars().take_while(|c| *c != '"').take(40).collect();
            return Err(AgentError::Refused(format!(
                "a placeholder is not closed: `${{{shown}` has no `}}`; close it in the repository, then deploy again"
            )));
        };
        let name = &after[..end];
        let value = lookup(name).ok_or_else(|| {
            AgentError::Refused(format!(
                "`${{{name}}}` is set neither in the secrets file nor in the agent's environment: the deployment is refused (set it, then deploy again)"
            ))
        })?;
        out.push_str(&escape(&value));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

impl Agent {
    pub fn new(config: AgentConfig) -> Result<Agent, AgentError> {
        let key = signing::parse_public_key(&config.public_key).map_err(|e| AgentError::Refused(e.to_string()))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(90))
            .user_agent("honua-agent")
            .build()
            .map_err(|e| apply_err(format!("HTTP client: {e}")))?;
        for dir in [&config.state_dir, &config.state_dir.join("releases")] {
            std::fs::create_dir_all(dir)
                .map_err(|e| AgentError::State { path: dir.clone(), message: e.to_string() })?;
        }
        for notice in &config.notices {
            tracing::warn!("{notice}");
        }
        let honua = HonuaClient::new(config.api_key.clone(), config.admin.clone(), config.login_url.clone())
            .map_err(|e| apply_err(format!("HTTP client: {e}")))?;
        Ok(Agent { config, key, http, honua, service_out_of_reach: Default::default() })
    }

    fn mirror_root(&self) -> PathBuf {
        self.config.mirror_dir.clone().unwrap_or_else(|| self.config.state_dir.join("mirror"))
    }

    fn state_path(&self) -> PathBuf {
        self.config.state_dir.join("state.json")
    }

    fn load_state(&self) -> State {
        std::fs::read(self.state_path()).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }

    /// Replaces the state file atomically (write, fsync, rename).
    fn save_state(&self, state: &State) -> Result<(), AgentError> {
        let path = self.state_path();
        let tmp = path.with_extension("json.tmp");
        let err = |e: std::io::Error| AgentError::State { path: path.clone(), message: e.to_string() };
        let _ = std::fs::remove_file(&tmp);
        write_synced(&tmp, &serde_json::to_vec(state).expect("state encodes")).map_err(err)?;
        std::fs::rename(&tmp, &path).map_err(err)?;
        sync_dir(&self.config.state_dir).map_err(err)
    }

    fn pending_path(&self) -> PathBuf {
        self.config.state_dir.join("pending-reports.json")
    }

    fn pending(&self) -> Vec<PhaseReport> {
        std::fs::read(self.pending_path()).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }

    fn save_pending(&self, pending: &[PhaseReport]) {
        let path = self.pending_path();
        let tmp = path.with_extension("json.tmp");
        let _ = std::fs::remove_file(&tmp);
        let saved = write_synced(&tmp, &serde_json::to_vec(pending).expect("reports encode"))
            .and_then(|_| std::fs::rename(&tmp, &path));
        if let Err(e) = saved {
            tracing::warn!(error = %e, "could not keep a pending report");
        }
    }

    /// `true` when the service took it (or refused it for good); `false` when it was unreachable.
    async fn send_report(&self, body: &PhaseReport) -> bool {
        let url = format!("{}/api/v1/agent/report", self.config.server.trim_end_matches('/'));
        match self.http.post(&url).bearer_auth(&self.config.token).json(body).timeout(NETWORK_GRACE).send().await {
            Ok(r) if r.status().is_success() => true,
            Ok(r) if r.status().is_server_error() => false,
            Ok(r) => {
                tracing::warn!(deployment = %body.deployment, phase = %body.phase, status = r.status().as_u16(), "report refused");
                true
            }
            Err(_) => false,
        }
    }

    /// Reports a phase; when the service is unreachable the report is kept on disk and re-sent by the
    /// next poll (the service takes reports idempotently).
    async fn report(&self, deployment: &str, phase: Phase, message: &str) {
        if self.config.git_only.is_some() {
            tracing::info!(deployment, %phase, "{message}");
            return;
        }
        let body = PhaseReport { deployment: deployment.into(), phase: phase.as_str().into(), message: message.into() };
        let mut pending = self.pending();
        if pending.is_empty() && self.send_report(&body).await {
            return;
        }
        tracing::warn!(deployment, %phase, "report kept: the service is unreachable");
        pending.push(body);
        self.save_pending(&pending);
    }

    /// Re-sends kept reports, in order, until the service is unreachable again.
    async fn flush_reports(&self) {
        let mut pending = self.pending();
        let mut sent = 0;
        for body in &pending {
            if !self.send_report(body).await {
                break;
            }
            sent += 1;
        }
        if sent > 0 {
            pending.drain(..sent);
            self.save_pending(&pending);
        }
    }

    /// The desired state from the Git ledger: the highest-sequence record of this environment whose
    /// signature verifies and whose windows are open now. Used when the service is unreachable.
    async fn desired_from_ledger(&self) -> Result<Option<SignedRecord>, AgentError> {
        let (dir, url, token, key, env) = (
            self.mirror_root(),
            self.config.git_url.clone(),
            self.config.git_token.clone(),
            self.key,
            self.config.environment.clone(),
        );
        tokio::task::spawn_blocking(move || -> Result<Option<SignedRecord>, AgentError> {
            let mirror = Mirror::open(&dir, &url).map_err(apply_err)?;
            mirror.fetch(&[crate::git::ledger::LEDGER_REF], token.as_deref()).map_err(apply_err)?;
            let repo = git2::Repository::open_bare(mirror.path()).map_err(|e| apply_err(e.message()))?;
            let Ok(head) = repo.refname_to_id(crate::git::ledger::LEDGER_REF) else { return Ok(None) };
            let entries = crate::git::ledger::read(&repo, head).map_err(|e| apply_err(e.message()))?;
            let now = chrono::Utc::now();
            let mut best: Option<SignedRecord> = None;
            for e in entries.iter().filter(|e| e.environment == env) {
                // A forged or altered entry fails here, whoever could write the ref.
                let Ok(record) = signing::verify(&key, &e.record, &e.signature) else {
                    tracing::warn!(entry = %e.path(), "ledger entry does not verify; ignored");
                    continue;
                };
                if record.environment != env || !e.windows.at(now).allowed_now {
                    continue;
                }
                if best.as_ref().is_none_or(|b| record.sequence > b.sequence) {
                    best = Some(record);
                }
            }
            Ok(best)
        })
        .await
        .map_err(|e| apply_err(format!("ledger task: {e}")))?
    }

    /// One look at the desired state, applying it if it is new. `wait` seconds of long-polling.
    pub async fn poll_once(&self, wait: u64) -> Result<PollOutcome, AgentError> {
        if let Some(outcome) = self.recover().await? {
            return Ok(outcome);
        }
        if let Some(git_only) = &self.config.git_only {
            self.heartbeat().await;
            return self.poll_git(&git_only.branch.clone()).await;
        }
        self.flush_reports().await;
        self.heartbeat().await;
        let mut state = self.load_state();
        let url = format!(
            "{}/api/v1/agent/desired?environment={}&wait={wait}",
            self.config.server.trim_end_matches('/'),
            self.config.environment
        );
        let service = |message: String| AgentError::Service { url: self.config.server.clone(), message };
        // A connection that went silent (a dropped NAT entry, a blackholed route) fails here in bounded
        // time and the loop polls again, rather than waiting on it for good.
        let mut request =
            self.http.get(&url).bearer_auth(&self.config.token).timeout(Duration::from_secs(wait) + NETWORK_GRACE);
        if let Some(etag) = &state.etag {
            request = request.header("If-None-Match", etag);
        }
        let sent = request.send().await;
        let reached = matches!(&sent, Ok(r) if !r.status().is_server_error());
        self.service_out_of_reach.store(!reached, std::sync::atomic::Ordering::Relaxed);
        let response = match sent {
            Ok(r) if reached => r,
            _ => {
                // The service is down: the Git ledger is the other source of approved records.
                let Some(record) = self.desired_from_ledger().await? else {
                    return Err(service("unreachable, and the Git ledger holds nothing newer".into()));
                };
                if record.sequence <= state.sequence {
                    return Ok(PollOutcome::Unchanged);
                }
                tracing::info!(deployment = %record.deployment, "service unreachable: applying from the Git ledger");
                return self.apply_once(&record, None).await;
            }
        };
        let etag = response.headers().get("etag").and_then(|v| v.to_str().ok()).map(str::to_string);
        match response.status().as_u16() {
            304 => return self.ledger_if_due().await,
            204 => {
                // Nothing approved yet: the ETag makes the next request wait for a change.
                if etag.is_some() && etag != state.etag {
                    state.etag = etag;
                    self.save_state(&state)?;
                }
                return self.ledger_if_due().await;
            }
            200 => {}
            status => return Err(service(format!("HTTP {status}"))),
        }
        let body: DesiredState = response.json().await.map_err(|e| service(format!("bad answer: {e}")))?;
        let (Some(record), Some(signature)) = (body.record.as_deref(), body.signature.as_deref()) else {
            return Err(AgentError::Refused("the desired state carries no signed record".into()));
        };
        let record = signing::verify(&self.key, record, signature).map_err(|e| AgentError::Refused(e.to_string()))?;
        if record.environment != self.config.environment {
            return Err(AgentError::Refused(format!(
                "a record for `{}`; this agent serves `{}`",
                record.environment, self.config.environment
            )));
        }
        if record.sequence <= state.sequence {
            // Already applied, or older: a replay changes nothing.
            state.etag = etag;
            self.save_state(&state)?;
            return self.ledger_if_due().await;
        }
        self.apply_once(&record, etag).await
    }

    /// The Git ledger is the second source even while the service answers: every `ledger_interval`
    /// (with jitter) the agent reads it, and a verified record newer than anything it has seen wins, so
    /// a service that withholds an approved record cannot keep it from the agent for long.
    async fn ledger_if_due(&self) -> Result<PollOutcome, AgentError> {
        let mut state = self.load_state();
        let now = chrono::Utc::now().timestamp_millis();
        if now < state.ledger_due {
            return Ok(PollOutcome::Unchanged);
        }
        let interval = self.config.ledger_interval.as_millis() as i64;
        // Up to a tenth of the interval of jitter, so a fleet does not fetch in step.
        let jitter = if interval > 0 { i64::from(std::process::id()) % (interval / 10 + 1) } else { 0 };
        state.ledger_due = now + interval + jitter;
        self.save_state(&state)?;
        let record = match self.desired_from_ledger().await {
            // A one-at-a-time rollout is the service's to pace while it answers.
            Ok(Some(record)) if record.safety.as_ref().is_some_and(|s| s.one_at_a_time()) => {
                return Ok(PollOutcome::Unchanged)
            }
            Ok(Some(record)) if record.sequence > state.sequence => record,
            Ok(_) => return Ok(PollOutcome::Unchanged),
            Err(e) => {
                tracing::warn!(error = %e, "the Git ledger could not be read; the next check retries");
                return Ok(PollOutcome::Unchanged);
            }
        };
        tracing::warn!(deployment = %record.deployment, "the Git ledger holds a newer record than the service offered: applying it");
        self.apply_once(&record, None).await
    }

    /// Applies `record` and remembers it whatever the outcome (applied, rolled back or refused: never
    /// again), except after an injected crash, where the journal decides on the next start.
    async fn apply_once(&self, record: &SignedRecord, etag: Option<String>) -> Result<PollOutcome, AgentError> {
        let outcome = self.apply(record).await;
        if matches!(outcome, Err(AgentError::Crashed(_))) {
            return outcome;
        }
        self.applied(record, etag)?;
        outcome
    }

    /// Remembers that `record` was dealt with (applied, rolled back or refused): never again.
    fn applied(&self, record: &SignedRecord, etag: Option<String>) -> Result<(), AgentError> {
        // Re-read: the apply recorded its result in the state meanwhile.
        let mut state = self.load_state();
        state.sequence = state.sequence.max(record.sequence);
        state.deployment = Some(record.deployment.clone());
        if etag.is_some() {
            state.etag = etag;
        }
        self.save_state(&state)
    }

    async fn apply(&self, record: &SignedRecord) -> Result<PollOutcome, AgentError> {
        let id = record.deployment.clone();
        self.report(&id, Phase::Fetching, &format!("commit {}", short_sha(&record.commit))).await;
        let rendered = match self.render(record).await {
            Ok(r) => r,
            Err(e) => {
                // Nothing was touched: Honua keeps what it runs.
                self.report(&id, Phase::Failed, &e.to_string()).await;
                return Err(e);
            }
        };
        let safety = record.safety.clone();
        let previous = std::fs::read_link(self.current()).ok();
        let backup = if safety.as_ref().is_some_and(|s| s.require_backup) && rendered.hcl {
            "; backup: the previous release is kept (Configuration 2.0 has no snapshot store: Honua removed it)"
                .to_string()
        } else if safety.as_ref().is_some_and(|s| s.require_backup) {
            match self.backup(record, previous.is_some()).await {
                Ok(how) => format!("; backup: {how}"),
                Err(e) => {
                    let message = format!("requireBackup: {e}; nothing was changed");
                    self.report(&id, Phase::Failed, &message).await;
                    return Err(apply_err(message));
                }
            }
        } else {
            String::new()
        };
        let release = self.config.state_dir.join("releases").join(format!("{:010}-{id}", record.sequence));
        let old_server_config =
            previous.as_ref().and_then(|p| std::fs::read(p.join(&self.config.server_config_file)).ok());
        let restart = old_server_config.as_deref() != rendered.server_config.as_ref().map(|c| c.as_bytes())
            && (previous.is_some() || rendered.server_config.is_some());
        // What the live release publishes and the new one does not: it must be gone after the reload.
        let served_before = previous.as_deref().map(|p| self.collections_in(p)).unwrap_or_default();
        let gone = served_before
            .into_iter()
            .filter(|c| !rendered.collections.iter().any(|n| n.eq_ignore_ascii_case(c)))
            .collect();
        let mut journal = Journal {
            deployment: id.clone(),
            sequence: record.sequence,
            phase: "writing".into(),
            release: release.clone(),
            previous,
            expected: rendered.collections.clone(),
            gone,
            restart,
            safety,
            hcl: rendered.hcl,
        };
        self.journal(Some(&journal))?;
        self.report(&id, Phase::Writing, &format!("release directory{backup}")).await;
        let written = self.write_release(&release, record, &rendered);
        if let Err(e) = written {
            let message = format!("could not write the release: {e}");
            self.report(&id, Phase::Failed, &message).await;
            return Err(apply_err(message));
        }
        journal.phase = "swapping".into();
        self.journal(Some(&journal))?;
        self.report(&id, Phase::Swapping, "current → new release").await;
        self.swap(&release).map_err(|e| apply_err(format!("swap: {e}")))?;
        journal.phase = "swapped".into();
        self.journal(Some(&journal))?;
        self.finish(&journal).await
    }

    /// Reload (or restart) and verify the new release; on failure roll back to the previous one unless
    /// the policy says `rollbackOnFailure: false`. The journal is removed once the outcome is reported.
    async fn finish(&self, journal: &Journal) -> Result<PollOutcome, AgentError> {
        let (id, previous) = (journal.deployment.clone(), journal.previous.clone());
        let timeout = self.health_timeout(journal.safety.as_ref());
        let rollback = journal.safety.as_ref().is_none_or(|s| s.rollback_on_failure);
        self.report(&id, Phase::Reloading, &self.reload_how(journal.restart)).await;
        let outcome = match self
            .reload_and_verify(&journal.expected, &journal.gone, journal.restart, journal.hcl, timeout)
            .await
        {
            Ok(how) => {
                self.report(&id, Phase::Completed, &how).await;
                Ok(PollOutcome::Applied { deployment: id.clone() })
            }
            Err(cause) if !rollback => {
                let message = format!("{cause}; left in place: the policy says rollbackOnFailure: false");
                self.report(&id, Phase::Failed, &message).await;
                Err(apply_err(message))
            }
            Err(cause) => {
                let failed_too = "restoring the previous release failed too";
                let message = match &previous {
                    Some(prev) => match self.swap(prev) {
                        Ok(()) => match self.reload_and_verify(&[], &[], journal.restart, journal.hcl, timeout).await {
                            Ok(_) => format!("{cause}; previous release restored"),
                            Err(e) => format!("{cause}; {failed_too}: {e}"),
                        },
                        Err(e) => format!("{cause}; {failed_too}: swap back: {e}"),
                    },
                    None => format!("{cause}; no previous release to restore"),
                };
                self.report(&id, Phase::RolledBack, &message).await;
                Ok(PollOutcome::RolledBack { deployment: id.clone(), cause: message })
            }
        };
        let mut state = self.load_state();
        state.last_result = Some(match &outcome {
            Ok(PollOutcome::RolledBack { cause, .. }) => format!("{id} rolled back: {cause}"),
            Ok(_) => format!("{id} completed"),
            Err(e) => format!("{id} failed: {e}"),
        });
        self.save_state(&state)?;
        self.journal(None)?;
        self.prune_releases(journal.previous.as_deref());
        outcome
    }

    fn reload_how(&self, restart: bool) -> String {
        match (restart, &self.config.restart_command, &self.config.reload_command) {
            (true, Some(_), _) => "the server configuration changed: restarting Honua".into(),
            (true, None, _) => "the server configuration changed but no restart command is set: reloading only (set HONUA_AGENT_RESTART_COMMAND)".into(),
            (false, _, Some(_)) => "running the reload command".into(),
            (false, _, None) => format!("POST {}", self.config.reload_url),
        }
    }

    fn journal_path(&self) -> PathBuf {
        self.config.state_dir.join("journal.json")
    }

    /// Records (or, with `None`, clears) the journal durably; then honours `crash_after`.
    fn journal(&self, entry: Option<&Journal>) -> Result<(), AgentError> {
        let path = self.journal_path();
        let err = |e: std::io::Error| AgentError::State { path: path.clone(), message: e.to_string() };
        match entry {
            Some(j) => {
                let tmp = path.with_extension("json.tmp");
                let _ = std::fs::remove_file(&tmp);
                write_synced(&tmp, &serde_json::to_vec(j).expect("journal encodes")).map_err(err)?;
                std::fs::rename(&tmp, &path).map_err(err)?;
            }
            None => match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(err(e)),
            },
        }
        sync_dir(&self.config.state_dir).map_err(err)?;
        if let (Some(j), Some(crash)) = (entry, &self.config.crash_after) {
            if &j.phase == crash {
                return Err(AgentError::Crashed(j.phase.clone()));
            }
        }
        Ok(())
    }

    /// After a restart: converge from wherever the journal says the last apply stopped. Before the
    /// swap, the partial release is discarded and the deployment applied again from scratch; after it
    /// (or during it), the live release is verified, and restored to the previous one if it fails.
    pub async fn recover(&self) -> Result<Option<PollOutcome>, AgentError> {
        let Ok(bytes) = std::fs::read(self.journal_path()) else { return Ok(None) };
        let journal: Journal = serde_json::from_slice(&bytes)
            .map_err(|e| AgentError::State { path: self.journal_path(), message: e.to_string() })?;
        tracing::warn!(deployment = %journal.deployment, phase = %journal.phase, "recovering an interrupted apply");
        if journal.phase == "writing" {
            let _ = std::fs::remove_dir_all(&journal.release);
            self.journal(None)?;
            return Ok(None);
        }
        // `swapping`: the rename may or may not have happened; make sure the new release is live, then
        // verify it exactly as the interrupted apply would have.
        if std::fs::read_link(self.current()).ok().as_deref() != Some(journal.release.as_path()) {
            self.swap(&journal.release).map_err(|e| apply_err(format!("swap: {e}")))?;
        }
        let outcome = self.finish(&journal).await?;
        let mut state = self.load_state();
        state.sequence = state.sequence.max(journal.sequence);
        state.deployment = Some(journal.deployment.clone());
        self.save_state(&state)?;
        Ok(Some(outcome))
    }

    /// `honua agent --check`: one line per prerequisite, `Err` with what to do.
    pub async fn check(&self) -> Vec<(String, Result<String, CheckFailure>)> {
        let c = &self.config;
        let mut out = vec![("signing key".to_string(), Ok(c.public_key.clone()))];
        let url = format!("{}/api/v1/agent/desired?environment={}&wait=0", c.server, c.environment);
        let service = match self.http.get(&url).bearer_auth(&c.token).send().await {
            Ok(r) => match r.status().as_u16() {
                200 | 204 | 304 => Ok(format!("{} answers; the token serves `{}`", c.server, c.environment)),
                401 => {
                    Err("the token is refused (unknown or revoked): create one with `honua token create --role agent`"
                        .into())
                }
                403 => Err(format!("the token is not an agent token of `{}`", c.environment).into()),
                status => Err(format!("{} answered HTTP {status}", c.server).into()),
            },
            Err(_) => Err(format!("{} is unreachable", c.server).into()),
        };
        let service = match &c.git_only {
            Some(g) => Ok(format!(
                "none (Git-only mode: branch `{}` every {} s; only what the policy approves by itself is applied)",
                g.branch,
                g.interval.as_secs()
            )),
            None => service,
        };
        out.push(("service".into(), service));
        let (dir, git_url, token) = (self.mirror_root(), c.git_url.clone(), c.git_token.clone());
        let git = tokio::task::spawn_blocking(move || {
            Mirror::open(&dir, &git_url)
                .and_then(|m| m.fetch(&["refs/heads/*"], token.as_deref()))
                .map(|_| "the config repository can be fetched".to_string())
                .map_err(|e| CheckFailure(e.to_string()))
        })
        .await
        .unwrap_or_else(|e| Err(CheckFailure(e.to_string())));
        out.push(("git".into(), git));
        for (name, dir) in [("target directory", &c.target_dir), ("state directory", &c.state_dir)] {
            let probe = dir.join(".honua-agent-check");
            let writable = std::fs::write(&probe, b"").and_then(|_| std::fs::remove_file(&probe));
            out.push((
                name.into(),
                writable
                    .map(|_| format!("{} is writable", dir.display()))
                    .map_err(|e| CheckFailure(format!("{}: {e}", dir.display()))),
            ));
        }
        let honua = match self.http.get(&c.health_url).send().await {
            Ok(r) => Ok(format!("{} answers HTTP {}", c.health_url, r.status().as_u16())),
            Err(_) => Err(format!("{} is unreachable: is Honua running?", c.health_url).into()),
        };
        out.push(("honua".into(), honua));
        out.push(("honua admin".into(), self.check_admin().await));
        out
    }

    /// Honua's admin API as a deployment will use it, probed without changing anything: a `GET` of the
    /// snapshot list needs the same administrator a reload does, and tells QuickStart from wrong
    /// credentials.
    async fn check_admin(&self) -> Result<String, CheckFailure> {
        let c = &self.config;
        let uses_api = c.reload_command.is_none();
        if uses_api && c.api_key.is_none() {
            return Err("HONUA_AGENT_API_KEY is empty: Honua's CSRF check refuses every admin POST without an `X-API-Key` header (403); set it to any non-empty value".into());
        }
        let Some(url) = &c.snapshot_url else {
            return Ok(if uses_api {
                format!(
                    "not probed (HONUA_AGENT_SNAPSHOT_URL is empty); the first reload at {} tests the credentials",
                    c.reload_url
                )
            } else {
                "not used: reloads run HONUA_AGENT_RELOAD_COMMAND, and no snapshot URL is set".into()
            });
        };
        match self.honua.probe_admin(url).await {
            Ok(()) => Ok(format!("{url} accepts the agent ({:?}, with an X-API-Key)", self.honua.auth())),
            // QuickStart closes the admin routes and the local login (503) alike.
            Err(honua::HonuaError::QuickStart { .. }) if !uses_api => Ok(QUICKSTART_WITH_COMMAND.into()),
            Err(honua::HonuaError::Login { message, .. }) if !uses_api && message.contains("HTTP 503") => {
                Ok(QUICKSTART_WITH_COMMAND.into())
            }
            // Honua at HEAD (Configuration 2.0) removed the snapshot store and its routes.
            Err(honua::HonuaError::Status { status: 404, .. }) => Ok(format!(
                "{url} answered 404: no snapshot store, as in a Configuration 2.0 Honua (it reads {} by its file \
                 watcher; the first deployment's reload tests the credentials); for a JSON-era Honua, the URL is wrong",
                c.target_dir.join(&c.hcl_file).display()
            )),
            Err(e) => Err(CheckFailure(e.to_string())),
        }
    }

    /// Polls until `stop` turns true, long-polling the service; failures back off (1 s … 60 s, with
    /// jitter) and never stop the loop: Honua keeps serving what it runs meanwhile.
    pub async fn run(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut failures: u32 = 0;
        loop {
            // A stop ends the long-poll at once; one that lands mid-apply is as a crash, which the
            // journal makes safe (the next start converges).
            let polled = tokio::select! {
                polled = self.poll_once(self.config.long_poll.as_secs()) => polled,
                _ = stop.changed() => return,
            };
            let out_of_reach = self.service_out_of_reach.load(std::sync::atomic::Ordering::Relaxed);
            let wait = match polled {
                Ok(outcome) if !out_of_reach || outcome != PollOutcome::Unchanged => {
                    failures = 0;
                    if outcome != PollOutcome::Unchanged {
                        tracing::info!(?outcome, "apply finished");
                    }
                    // The service's long-poll does the waiting; Git-only mode polls at its interval.
                    self.config.git_only.as_ref().map_or(Duration::from_millis(100), |g| g.interval)
                }
                // The service is out of reach and the ledger held nothing new: as a failure.
                Ok(_) => {
                    backoff(&mut failures, "the service is unreachable; Honua runs the newest record of the Git ledger")
                }
                Err(e) => backoff(&mut failures, &e.to_string()),
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
        }
    }

    fn current(&self) -> PathBuf {
        self.config.target_dir.join("current")
    }

    /// Points `current` at `release` atomically: a new link beside it, renamed over it.
    fn swap(&self, release: &Path) -> std::io::Result<()> {
        let tmp = self.config.target_dir.join(".current.tmp");
        let _ = std::fs::remove_file(&tmp);
        #[cfg(unix)]
        std::os::unix::fs::symlink(release, &tmp)?;
        std::fs::rename(&tmp, self.current())?;
        sync_dir(&self.config.target_dir)?;
        self.install_hcl(release)
    }

    /// A Configuration 2.0 release's file copied over Honua's in place: written beside it, fsynced,
    /// renamed over it, the directory fsynced. Honua's watcher sees the rename in its directory; a
    /// reader never sees half a file. Metadata releases have no such file and are left to the link.
    fn install_hcl(&self, release: &Path) -> std::io::Result<()> {
        let source = release.join(&self.config.hcl_file);
        let bytes = match std::fs::read(&source) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let target = self.config.target_dir.join(&self.config.hcl_file);
        let tmp = self.config.target_dir.join(format!(".{}.tmp", self.config.hcl_file));
        let _ = std::fs::remove_file(&tmp);
        write_synced(&tmp, &bytes)?;
        // It holds resolved secrets: the agent's user and its group (Honua's, if it runs as another user).
        #[cfg(unix)]
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o640))?;
        std::fs::rename(&tmp, &target)?;
        sync_dir(&self.config.target_dir)
    }

    /// Runs an operator's command (`sh -c`); its exit status decides.
    async fn run_command(what: &'static str, command: &str) -> Result<(), CommandError> {
        let output = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|source| CommandError::NotStarted { what, source })?;
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr).trim().chars().take(500).collect();
        Err(CommandError::Failed { what, status: output.status, stderr })
    }

    /// `requireBackup`: Honua's own snapshot of what it runs, on top of the agent's previous release,
    /// which is always kept. Honua writes it next to its metadata path, so through `current` into the
    /// live release (`current/<file stem>-snapshots/<label>/`), where it stays with that release.
    async fn backup(&self, record: &SignedRecord, live: bool) -> Result<String, HonuaError> {
        let Some(url) = &self.config.snapshot_url else {
            return Ok("the previous release is kept (no snapshot URL is set)".into());
        };
        let notes = format!("honua-gitops {} {}", record.environment, record.commit);
        match self.honua.snapshot(url, &record.deployment, &notes).await {
            Ok(label) => Ok(format!("Honua snapshot `{label}`, and the previous release")),
            // A first install: Honua does not run without metadata, or has no file yet to copy (its own
            // 404 "Metadata file not found."), so there is nothing to back up.
            Err(HonuaError::NotRunning { .. }) if !live => Ok("nothing runs yet, so no snapshot".into()),
            Err(HonuaError::NoSnapshotStore { detail, .. }) if !live && detail.contains("Metadata file not found") => {
                Ok("Honua has no metadata yet, so no snapshot".into())
            }
            Err(e) => Err(e),
        }
    }

    /// The OGC collections the metadata of `release` publishes, by Honua's rule.
    fn collections_in(&self, release: &Path) -> Vec<String> {
        if let Ok(text) = std::fs::read_to_string(release.join(&self.config.hcl_file)) {
            let file = crate::config::node::FileId(0);
            return crate::config::hcl::parse(&text, file, &self.config.hcl_file)
                .map(|p| crate::config::hcl::served_collections(&p.root))
                .unwrap_or_default();
        }
        let Ok(bytes) = std::fs::read(release.join(&self.config.metadata_file)) else { return Vec::new() };
        let node = crate::config::yaml::decode(&bytes)
            .ok()
            .and_then(|text| crate::config::yaml::parse(text, crate::config::node::FileId(0)).ok());
        node.map(|n| crate::config::served::collections(&n)).unwrap_or_default()
    }

    /// Makes Honua load the live release (the reload request, or the operator's command), waits for it
    /// to be healthy, then checks each collection that must be served is, and each that must be gone
    /// is. Honua refuses to start without metadata: on a first install it is not running yet, so it is
    /// started with the restart command, or waited for (a supervisor restarting it now finds the file).
    /// Says how it went, for the report.
    async fn reload_and_verify(
        &self,
        expected: &[String],
        gone: &[String],
        restart: bool,
        settle: bool,
        timeout: Duration,
    ) -> Result<String, VerifyError> {
        let mut how = if restart { "restarted" } else { "reloaded" }.to_string();
        let mut started = false;
        match (restart, &self.config.restart_command, &self.config.reload_command) {
            (true, Some(command), _) => Self::run_command("restart", command).await?,
            (_, _, Some(command)) => Self::run_command("reload", command).await?,
            _ => match self.honua.reload(&self.config.reload_url).await {
                Ok(()) => {}
                Err(HonuaError::NotRunning { url }) => {
                    started = true;
                    match &self.config.restart_command {
                        Some(command) => {
                            tracing::info!(url, "Honua is not running: starting it with the restart command");
                            Self::run_command("restart", command).await?;
                            how = "Honua was not running: started with the restart command".into();
                        }
                        None => {
                            tracing::info!(url, "Honua is not running: waiting for it to start on the new release");
                            how = "Honua was not running: it started on the new release".into();
                        }
                    }
                }
                Err(e) => return Err(e.into()),
            },
        }
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.honua.healthy(&self.config.health_url).await {
            if tokio::time::Instant::now() >= deadline {
                let secs = timeout.as_secs();
                return Err(if started { VerifyError::NeverStarted { secs } } else { VerifyError::Unhealthy { secs } });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let Some(url) = self.config.collections_url.clone() else {
            return Ok(format!("{how}; healthy (post-validation is off: no collections URL)"));
        };
        let url = url.as_str();
        // Configuration 2.0: Honua's reload rebuilds from what it holds and its file watcher re-reads
        // the file after a 500 ms quiet period. A change that adds or removes no collection shows
        // nowhere, so the agent first gives the watcher that period and a margin; then the collections
        // are asked for again until they match or the health timeout runs out.
        if settle {
            tokio::time::sleep(WATCHER_SETTLE).await;
        }
        loop {
            match self.verify_collections(url, expected, gone, &how).await {
                Err(VerifyError::NotServed(_) | VerifyError::StillServed(_))
                    if settle && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                outcome => return outcome,
            }
        }
    }

    /// Each expected collection must be served and each gone one must not: one round of asking.
    async fn verify_collections(
        &self,
        url: &str,
        expected: &[String],
        gone: &[String],
        how: &str,
    ) -> Result<String, VerifyError> {
        // Each collection asked for by id (not cached by Honua), eight at a time.
        let asks: Vec<(&String, bool)> =
            expected.iter().map(|id| (id, true)).chain(gone.iter().map(|id| (id, false))).collect();
        let mut answers = Vec::with_capacity(asks.len());
        for chunk in asks.chunks(8) {
            let asked =
                chunk.iter().map(|(id, want)| async move { (*id, *want, self.honua.serves_collection(url, id).await) });
            answers.extend(futures_util::future::join_all(asked).await);
        }
        let mut missing = Vec::new();
        let mut still = Vec::new();
        for (id, want, served) in answers {
            match served {
                Ok(served) if served == want => {}
                Ok(_) if want => missing.push(format!("`{id}`")),
                Ok(_) => still.push(format!("`{id}`")),
                Err(e) => return Err(VerifyError::Asking(e)),
            }
        }
        missing.sort();
        still.sort();
        match (missing.is_empty(), still.is_empty()) {
            (true, true) => Ok(format!(
                "{how}; healthy, {} expected collection(s) served{}",
                expected.len(),
                if gone.is_empty() { String::new() } else { format!(", {} removed one(s) gone", gone.len()) }
            )),
            (false, _) => Err(VerifyError::NotServed(missing)),
            (true, false) => Err(VerifyError::StillServed(still)),
        }
    }

    async fn healthy(&self) -> bool {
        self.honua.healthy(&self.config.health_url).await
    }

    /// Writes `rendered` as the release directory `release` (owner-only, fsynced) and its manifest.
    /// Whatever was at that path before (a partial attempt, a planted link) is removed, not followed.
    fn write_release(&self, release: &Path, record: &SignedRecord, rendered: &Rendered) -> std::io::Result<()> {
        let name = if rendered.hcl { &self.config.hcl_file } else { &self.config.metadata_file };
        let mut files = vec![(name, rendered.metadata.as_bytes())];
        if let Some(config) = &rendered.server_config {
            files.push((&self.config.server_config_file, config.as_bytes()));
        }
        let _ = std::fs::remove_dir_all(release);
        std::fs::create_dir_all(release)?;
        #[cfg(unix)]
        std::fs::set_permissions(release, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        for (name, bytes) in &files {
            write_synced(&release.join(name), bytes)?;
        }
        sync_dir(release)?;
        let manifest = Manifest {
            record: record.clone(),
            files: files.iter().map(|(name, bytes)| (name.to_string(), sha256_hex(bytes))).collect(),
        };
        self.save_manifest(release, &manifest)
    }

    /// The policy's health timeout, or the agent's own for records signed without one.
    fn health_timeout(&self, safety: Option<&signing::ApplySafety>) -> Duration {
        safety.map_or(self.config.health_timeout, |s| Duration::from_secs(s.health_check_timeout))
    }

    fn manifest_path(&self, release: &Path) -> PathBuf {
        let name = release.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        self.config.state_dir.join("manifests").join(format!("{name}.json"))
    }

    fn save_manifest(&self, release: &Path, manifest: &Manifest) -> std::io::Result<()> {
        let path = self.manifest_path(release);
        let dir = path.parent().expect("manifests live in a directory");
        std::fs::create_dir_all(dir)?;
        let tmp = path.with_extension("json.tmp");
        let _ = std::fs::remove_file(&tmp);
        write_synced(&tmp, &serde_json::to_vec(manifest).expect("manifests encode"))?;
        std::fs::rename(&tmp, &path)?;
        sync_dir(dir)
    }

    fn load_manifest(&self, release: &Path) -> Option<Manifest> {
        std::fs::read(self.manifest_path(release)).ok().and_then(|b| serde_json::from_slice(&b).ok())
    }

    /// Keeps the live release, the one before it and the newest `keep_releases` others; removes the rest
    /// (and their manifests). Only directories under the agent's own `releases` are ever removed.
    fn prune_releases(&self, previous: Option<&Path>) {
        let root = self.config.state_dir.join("releases");
        let live = std::fs::read_link(self.current()).ok();
        let Ok(entries) = std::fs::read_dir(&root) else { return };
        let mut releases: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect();
        releases.sort();
        releases.reverse();
        let mut kept = 0;
        for release in releases {
            if Some(&release) == live.as_ref() || Some(release.as_path()) == previous {
                continue;
            }
            if kept < self.config.keep_releases {
                kept += 1;
                continue;
            }
            if std::fs::remove_dir_all(&release).is_ok() {
                let _ = std::fs::remove_file(self.manifest_path(&release));
            }
        }
    }

    /// What differs between the live release and its manifest: changed, added or removed files, or a
    /// `current` link that no longer points at a release the agent wrote. Empty when in sync; `None`
    /// before the agent applied anything.
    fn drift(&self) -> Option<(PathBuf, Manifest, Vec<String>)> {
        let live = std::fs::read_link(self.current()).ok()?;
        let releases = self.config.state_dir.join("releases");
        let Some(manifest) = live.starts_with(&releases).then(|| self.load_manifest(&live)).flatten() else {
            let state = self.load_state();
            // The link was replaced by hand: compare against the release the agent last applied.
            let name = state.deployment.as_ref()?;
            let ours = std::fs::read_dir(&releases)
                .ok()?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().ends_with(&format!("-{name}"))));
            let release = ours.max()?;
            let manifest = self.load_manifest(&release)?;
            return Some((release, manifest, vec!["current".into()]));
        };
        let mut drifted = Vec::new();
        // Honua reads a Configuration 2.0 file where it is, not through the link: that copy is compared.
        if let Some(hash) = manifest.files.get(&self.config.hcl_file) {
            match std::fs::read(self.config.target_dir.join(&self.config.hcl_file)) {
                Ok(bytes) if &sha256_hex(&bytes) == hash => {}
                Ok(_) => drifted.push(format!("{} (edited in place)", self.config.hcl_file)),
                Err(_) => drifted.push(format!("{} (removed)", self.config.hcl_file)),
            }
        }
        for (name, hash) in &manifest.files {
            match std::fs::read(live.join(name)) {
                Ok(bytes) if &sha256_hex(&bytes) == hash => {}
                Ok(_) => drifted.push(name.clone()),
                Err(_) => drifted.push(format!("{name} (removed)")),
            }
        }
        // Honua's own snapshots of the metadata land next to it, in the live release: not an edit.
        let stem = Path::new(&self.config.metadata_file).file_stem().map(|s| s.to_string_lossy().into_owned());
        let snapshots = stem.map(|s| format!("{s}-snapshots")).unwrap_or_default();
        if let Ok(entries) = std::fs::read_dir(&live) {
            for e in entries.filter_map(Result::ok) {
                let name = e.file_name().to_string_lossy().into_owned();
                if !manifest.files.contains_key(&name) && name != snapshots {
                    drifted.push(format!("{name} (added)"));
                }
            }
        }
        Some((live, manifest, drifted))
    }

    /// Writes the release of `manifest.record` afresh and makes it live, as an apply would (reload,
    /// health, post-validation); if the restored release does not verify, the edited one goes back.
    async fn heal(&self, edited: &Path, manifest: &Manifest) -> Result<(), HealError> {
        let record = &manifest.record;
        let rendered = self.render(record).await.map_err(|e| HealError::Render(Box::new(e)))?;
        let stamp = chrono::Utc::now().format("%Y%m%d%H%M%S%3f");
        let release = self
            .config
            .state_dir
            .join("releases")
            .join(format!("{:010}-{}-restored-{stamp}", record.sequence, record.deployment));
        self.write_release(&release, record, &rendered).map_err(HealError::Write)?;
        self.swap(&release).map_err(HealError::Swap)?;
        let timeout = self.health_timeout(record.safety.as_ref());
        if let Err(cause) = self.reload_and_verify(&rendered.collections, &[], false, rendered.hcl, timeout).await {
            let _ = self.swap(edited);
            let _ = self.reload_and_verify(&[], &[], false, rendered.hcl, timeout).await;
            return Err(cause.into());
        }
        self.prune_releases(None);
        Ok(())
    }

    /// Checks drift (restoring the release when the record says `selfHeal`) and tells the service how
    /// this agent is: commit, health, version, sync status, last result.
    async fn heartbeat(&self) {
        let state = self.load_state();
        let (sync, drifted, record, mut restored) = match self.drift() {
            None => ("unknown", Vec::new(), None, None),
            Some((_, manifest, paths)) if paths.is_empty() => ("synced", paths, Some(manifest.record), None),
            Some((live, manifest, paths)) => {
                tracing::warn!(paths = ?paths, "the live configuration was edited by hand (drift)");
                let heal = manifest.record.safety.as_ref().is_some_and(|s| s.self_heal);
                let restored = if heal { Some(self.heal(&live, &manifest).await) } else { None };
                ("drifted", paths, Some(manifest.record), restored)
            }
        };
        let sync = match &restored {
            Some(Ok(())) => "synced",
            _ => sync,
        };
        let restored_text = restored.take().map(|r| match r {
            Ok(()) => "restored (selfHeal)".to_string(),
            Err(e) => format!("restoring failed: {e}"),
        });
        let body = Heartbeat {
            deployment: record.as_ref().map(|r| r.deployment.clone()).or(state.deployment.clone()),
            commit: record.as_ref().map(|r| r.commit.clone()),
            sequence: record.as_ref().map(|r| r.sequence),
            health: if self.healthy().await { "healthy" } else { "unhealthy" }.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            sync: sync.into(),
            drifted,
            restored: restored_text,
            last_result: state.last_result,
        };
        if self.config.git_only.is_some() {
            return;
        }
        let url = format!("{}/api/v1/agent/heartbeat", self.config.server.trim_end_matches('/'));
        if let Err(e) =
            self.http.post(&url).bearer_auth(&self.config.token).json(&body).timeout(NETWORK_GRACE).send().await
        {
            tracing::debug!(error = %e, "heartbeat not delivered");
        }
    }

    async fn render(&self, record: &SignedRecord) -> Result<Rendered, AgentError> {
        let (dir, url, token, commit, env) = (
            self.mirror_root(),
            self.config.git_url.clone(),
            self.config.git_token.clone(),
            record.commit.clone(),
            EnvName::new(&record.environment),
        );
        let rendered =
            tokio::task::spawn_blocking(move || -> Result<(String, Option<String>, Vec<String>, bool), AgentError> {
                let mirror = Mirror::open(&dir, &url).map_err(apply_err)?;
                mirror.fetch(&["refs/heads/*"], token.as_deref()).map_err(apply_err)?;
                let repo = ConfigRepo::load_git(mirror.path(), &commit).map_err(apply_err)?;
                let errors: Vec<String> = crate::validate::validate_repo(&repo, Some(&env))
                    .into_iter()
                    .filter(|d| d.is_error() && repo.concerns(&d.file, &env))
                    .map(|d| format!("{}:{}: {}", d.file, d.line, d.message))
                    .collect();
                if !errors.is_empty() {
                    return Err(AgentError::Refused(format!(
                        "the rendered configuration is invalid: {}",
                        errors.join("; ")
                    )));
                }
                let effective = repo
                    .effective(&env)
                    .ok_or_else(|| AgentError::Refused(format!("`{env}` does not exist at {commit}")))?;
                if effective.format == crate::config::ConfigFormat::Hcl {
                    let text = crate::config::hcl::render(&effective.metadata);
                    let collections = crate::config::hcl::served_collections(&effective.metadata);
                    return Ok((text, None, collections, true));
                }
                let metadata = effective.metadata.to_json();
                let collections = crate::config::served::collections(&effective.metadata);
                // JSON is YAML too: the server configuration is written as JSON under its YAML name.
                let server_config = effective
                    .config
                    .as_ref()
                    .map(|c| serde_json::to_string_pretty(&c.to_json()).expect("JSON encodes"));
                Ok((serde_json::to_string_pretty(&metadata).expect("JSON encodes"), server_config, collections, false))
            })
            .await
            .map_err(|e| apply_err(format!("render task: {e}")))??;
        let secrets = self.config.secrets_file.as_deref();
        let hcl = rendered.3;
        Ok(Rendered {
            metadata: if hcl {
                resolve_hcl_secrets(&rendered.0, secrets)?
            } else {
                resolve_secrets(&rendered.0, secrets)?
            },
            server_config: rendered.1.map(|c| resolve_secrets(&c, secrets)).transpose()?,
            collections: rendered.2,
            hcl,
        })
    }
}

struct Rendered {
    metadata: String,
    server_config: Option<String>,
    /// The `service::layer` collections Honua must serve after the reload (its rule: enabled services
    /// with an `ogc` block whose `collectionsEnabled` is not false).
    collections: Vec<String>,
    /// A Configuration 2.0 environment: `metadata` is Honua's HCL file, installed in place.
    hcl: bool,
}

/// 1 s, 2 s, 4 s … 60 s after consecutive failures, with a per-process jitter so a fleet that lost its
/// service does not return in step.
fn backoff(failures: &mut u32, why: &str) -> Duration {
    *failures = failures.saturating_add(1);
    let base = Duration::from_secs((1u64 << (*failures).min(6)).min(60));
    let jitter = Duration::from_millis(u64::from(std::process::id() % 1000));
    tracing::warn!(error = why, retry_in_s = base.as_secs(), "poll failed");
    base + jitter
}

#[cfg(test)]
mod secret_tests {
    use super::*;

    #[test]
    fn secrets_are_escaped_for_the_json_they_land_in() {
        std::env::set_var("HONUA_TEST_PW_QUOTED", r#"p"w\x"#);
        let text = r#"{"connectionString": "Host=db;Password=${HONUA_TEST_PW_QUOTED}"}"#;
        let resolved = resolve_secrets(text, None).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&resolved).expect("still JSON");
        assert_eq!(parsed["connectionString"], r#"Host=db;Password=p"w\x"#);
    }

    #[test]
    fn a_missing_and_an_unclosed_placeholder_say_which_never_the_document() {
        let missing = resolve_secrets(r#"{"a": "s3cret ${NOT_SET_ANYWHERE_42}"}"#, None).unwrap_err().to_string();
        assert!(missing.contains("`${NOT_SET_ANYWHERE_42}` is set neither"), "{missing}");
        assert!(!missing.contains("s3cret"), "{missing}");
        let unclosed =
            resolve_secrets(r#"{"a": "s3cret", "b": "${DB_PASS", "c": "x}"}"#, None).unwrap_err().to_string();
        assert!(unclosed.contains("`${DB_PASS` has no `}`"), "{unclosed}");
        assert!(!unclosed.contains("s3cret"), "{unclosed}");
    }
}
