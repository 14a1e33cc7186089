//! What the agent tells the service, and what it writes down first. Reports of each phase are sent
//! at once, and kept on disk while the service does not answer; the journal, written before each step
//! that touches the release or the `current` link, lets a restart converge ([`Agent::recover`]).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{apply_err, sync_dir, write_synced, Agent, AgentError, PollOutcome, NETWORK_GRACE};
use crate::deployment::wire::PhaseReport;
use crate::deployment::Phase;
use crate::plan::signing;

named! {
    /// Where an apply stands, as the journal records it before each step.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum JournalPhase {
        /// The release directory is being written; `current` still points at the previous one.
        Writing,
        /// `current` is being switched to the new release (the rename may or may not have happened).
        Swapping,
        /// The new release is live; reload and verification follow.
        Swapped,
    }
}

/// Written (fsynced, renamed into place) before each step that touches the release or the `current`
/// link, so a restart knows exactly where an apply stopped.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Journal {
    pub(super) deployment: String,
    pub(super) sequence: i64,
    pub(super) phase: JournalPhase,
    pub(super) release: PathBuf,
    pub(super) previous: Option<PathBuf>,
    /// OGC collections Honua must serve after the reload, and those it must no longer serve.
    pub(super) expected: Vec<String>,
    #[serde(default)]
    pub(super) gone: Vec<String>,
    /// The server configuration changed: restart Honua instead of reloading it.
    #[serde(default)]
    pub(super) restart: bool,
    #[serde(default)]
    pub(super) safety: Option<signing::ApplySafety>,
    /// A Configuration 2.0 release: Honua picks it up by its file watcher, so verification waits for
    /// the collections to settle instead of checking once.
    #[serde(default)]
    pub(super) hcl: bool,
}

impl Agent {
    pub(super) fn pending_path(&self) -> PathBuf {
        self.config.state_dir.join("pending-reports.json")
    }

    pub(super) fn pending(&self) -> Vec<PhaseReport> {
        std::fs::read(self.pending_path()).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }

    pub(super) fn save_pending(&self, pending: &[PhaseReport]) {
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
    pub(super) async fn send_report(&self, body: &PhaseReport) -> bool {
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
    pub(super) async fn report(&self, deployment: &str, phase: Phase, message: &str) {
        if self.config.git_only.is_some() {
            tracing::info!(deployment, %phase, "{message}");
            return;
        }
        let body = PhaseReport { deployment: deployment.into(), phase: phase.into(), message: message.into() };
        let mut pending = self.pending();
        if pending.is_empty() && self.send_report(&body).await {
            return;
        }
        tracing::warn!(deployment, %phase, "report kept: the service is unreachable");
        pending.push(body);
        self.save_pending(&pending);
    }

    /// Re-sends kept reports, in order, until the service is unreachable again.
    pub(super) async fn flush_reports(&self) {
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

    pub(super) fn journal_path(&self) -> PathBuf {
        self.config.state_dir.join("journal.json")
    }

    /// Records (or, with `None`, clears) the journal durably; then honours `crash_after`.
    pub(super) fn journal(&self, entry: Option<&Journal>) -> Result<(), AgentError> {
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
            if j.phase == *crash {
                return Err(AgentError::Crashed(j.phase));
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
        if journal.phase == JournalPhase::Writing {
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
}
