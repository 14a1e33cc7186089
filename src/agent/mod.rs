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
//!
//! By concern: the poll loop and the agent's state here; applying a record (`apply`), releases on disk
//! (`release`), verifying Honua and the startup checks (`verify`), drift and self-heal with the
//! heartbeat (`drift`), the Git ledger (`ledger`), reports and the journal (`reports`), secrets
//! (`secrets`), Honua's admin API (`honua`), Git-only mode (`git_only`) and settings (`settings`).

use std::path::PathBuf;
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::deployment::wire::DesiredState;
use crate::plan::signing;

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
    Crashed(JournalPhase),
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

mod apply;
mod drift;
mod git_only;
pub mod honua;
pub mod isolate;
mod ledger;
mod release;
mod reports;
pub(crate) mod secrets;
pub mod settings;
mod verify;

use apply::Rendered;
use release::{sha256_hex, sync_dir, write_synced, Manifest};
use reports::Journal;
pub use reports::JournalPhase;
use secrets::{resolve_hcl_secrets, resolve_secrets};

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
    /// records this phase.
    pub crash_after: Option<JournalPhase>,
}

#[derive(Debug, Clone)]
pub struct GitOnly {
    pub branch: String,
    pub interval: Duration,
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Set by the command: Git and applies run in a child process ([`isolate`]).
    isolation: Option<isolate::Isolation>,
}

fn apply_err(what: impl std::fmt::Display) -> AgentError {
    AgentError::Apply(what.to_string())
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
        Ok(Agent { config, key, http, honua, service_out_of_reach: Default::default(), isolation: None })
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
                let Some(record) = self.read_ledger().await? else {
                    return Err(service("unreachable, and the Git ledger holds nothing newer".into()));
                };
                if record.sequence <= state.sequence {
                    return Ok(PollOutcome::Unchanged);
                }
                tracing::info!(deployment = %record.deployment, "service unreachable: applying from the Git ledger");
                return self.apply_record(&record, None).await;
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
        let (Some(record), Some(signature)) = (body.record, body.signature) else {
            return Err(AgentError::Refused("the desired state carries no signed record".into()));
        };
        let signed = signing::Signed { record, signature };
        let record = signing::verify(&self.key, &signed).map_err(|e| AgentError::Refused(e.to_string()))?;
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
        self.apply_record(&record, etag).await
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
