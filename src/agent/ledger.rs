//! The Git ledger (`refs/honua/ledger`): what the agent reads when the service does not answer, and
//! now and then while it does, so that a service that lost its database cannot roll an edge back.

use super::{apply_err, Agent, AgentError, PollOutcome};
use crate::git::mirror::Mirror;
use crate::plan::signing::{self, SignedRecord};

impl Agent {
    /// The desired state from the Git ledger: the highest-sequence record of this environment whose
    /// signature verifies and whose windows are open now. Used when the service is unreachable.
    pub(super) async fn desired_from_ledger(&self) -> Result<Option<SignedRecord>, AgentError> {
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
                let Ok(record) = signing::verify(&key, &e.signed) else {
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

    /// The Git ledger is the second source even while the service answers: every `ledger_interval`
    /// (with jitter) the agent reads it, and a verified record newer than anything it has seen wins, so
    /// a service that withholds an approved record cannot keep it from the agent for long.
    pub(super) async fn ledger_if_due(&self) -> Result<PollOutcome, AgentError> {
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
        let record = match self.read_ledger().await {
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
        self.apply_record(&record, None).await
    }
}
