//! Applying one signed record: render it, snapshot Honua when the policy asks, write the release,
//! swap, reload and verify, and roll back on any failure; every step journaled first and reported.

use std::time::Duration;

use super::{
    apply_err, resolve_hcl_secrets, resolve_secrets, Agent, AgentError, CommandError, HonuaError, Journal,
    JournalPhase, PollOutcome,
};
use crate::config::{ConfigRepo, EnvName};
use crate::deployment::{short_sha, Phase};
use crate::git::mirror::Mirror;
use crate::plan::signing::{self, SignedRecord};

pub(super) struct Rendered {
    pub(super) metadata: String,
    pub(super) server_config: Option<String>,
    /// The `service::layer` collections Honua must serve after the reload (its rule: enabled services
    /// with an `ogc` block whose `collectionsEnabled` is not false).
    pub(super) collections: Vec<String>,
    /// A Configuration 2.0 environment: `metadata` is Honua's HCL file, installed in place.
    pub(super) hcl: bool,
}

impl Agent {
    /// Applies `record` and remembers it whatever the outcome (applied, rolled back or refused: never
    /// again), except after an injected crash, where the journal decides on the next start.
    pub(super) async fn apply_once(
        &self,
        record: &SignedRecord,
        etag: Option<String>,
    ) -> Result<PollOutcome, AgentError> {
        let outcome = self.apply(record).await;
        if matches!(outcome, Err(AgentError::Crashed(_))) {
            return outcome;
        }
        self.applied(record, etag)?;
        outcome
    }

    /// Remembers that `record` was dealt with (applied, rolled back or refused): never again.
    pub(super) fn applied(&self, record: &SignedRecord, etag: Option<String>) -> Result<(), AgentError> {
        // Re-read: the apply recorded its result in the state meanwhile.
        let mut state = self.load_state();
        state.sequence = state.sequence.max(record.sequence);
        state.deployment = Some(record.deployment.clone());
        if etag.is_some() {
            state.etag = etag;
        }
        self.save_state(&state)
    }

    pub(super) async fn apply(&self, record: &SignedRecord) -> Result<PollOutcome, AgentError> {
        let id = record.deployment.clone();
        self.report(&id, Phase::Fetching, &format!("commit {}", short_sha(&record.commit))).await;
        let fetched_and_rendered = async {
            self.fetch().await?;
            self.report(&id, Phase::Rendering, "validating and rendering the environment").await;
            self.render_fetched(record).await
        };
        let rendered = match fetched_and_rendered.await {
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
        let served_after: std::collections::HashSet<String> =
            rendered.collections.iter().map(|c| c.to_ascii_lowercase()).collect();
        let gone = served_before.into_iter().filter(|c| !served_after.contains(&c.to_ascii_lowercase())).collect();
        let mut journal = Journal {
            deployment: id.clone(),
            sequence: record.sequence,
            phase: JournalPhase::Writing,
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
        journal.phase = JournalPhase::Swapping;
        self.journal(Some(&journal))?;
        self.report(&id, Phase::Swapping, "current → new release").await;
        self.swap(&release).map_err(|e| apply_err(format!("swap: {e}")))?;
        journal.phase = JournalPhase::Swapped;
        self.journal(Some(&journal))?;
        self.finish(&journal).await
    }

    /// Reload (or restart) and verify the new release; on failure roll back to the previous one unless
    /// the policy says `rollbackOnFailure: false`. The journal is removed once the outcome is reported.
    pub(super) async fn finish(&self, journal: &Journal) -> Result<PollOutcome, AgentError> {
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

    pub(super) fn reload_how(&self, restart: bool) -> String {
        match (restart, &self.config.restart_command, &self.config.reload_command) {
            (true, Some(_), _) => "the server configuration changed: restarting Honua".into(),
            (true, None, _) => "the server configuration changed but no restart command is set: reloading only (set HONUA_AGENT_RESTART_COMMAND)".into(),
            (false, _, Some(_)) => "running the reload command".into(),
            (false, _, None) => format!("POST {}", self.config.reload_url),
        }
    }

    /// Fetches the config repository's branches into the agent's mirror, then renders `record`'s commit.
    pub(super) async fn render(&self, record: &SignedRecord) -> Result<Rendered, AgentError> {
        self.fetch().await?;
        self.render_fetched(record).await
    }

    /// Fetches the config repository's branches into the agent's mirror.
    async fn fetch(&self) -> Result<(), AgentError> {
        let (dir, url, token) = (self.mirror_root(), self.config.git_url.clone(), self.config.git_token.clone());
        tokio::task::spawn_blocking(move || -> Result<(), AgentError> {
            let mirror = Mirror::open(&dir, &url).map_err(apply_err)?;
            mirror.fetch(&["refs/heads/*"], token.as_deref()).map(|_| ()).map_err(apply_err)
        })
        .await
        .map_err(|e| apply_err(format!("fetch task: {e}")))?
    }

    /// Loads `record`'s commit from the mirror a [`fetch`](Self::fetch) brought it into, validates the
    /// environment and renders what Honua reads, secrets resolved.
    async fn render_fetched(&self, record: &SignedRecord) -> Result<Rendered, AgentError> {
        let (dir, url, commit, env) =
            (self.mirror_root(), self.config.git_url.clone(), record.commit.clone(), EnvName::new(&record.environment));
        let rendered =
            tokio::task::spawn_blocking(move || -> Result<(String, Option<String>, Vec<String>, bool), AgentError> {
                let mirror = Mirror::open(&dir, &url).map_err(apply_err)?;
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

    /// Runs an operator's command (`sh -c`); its exit status decides.
    pub(super) async fn run_command(what: &'static str, command: &str) -> Result<(), CommandError> {
        let output = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            // An agent the operator's command starts is an agent, not a child doing this work.
            .env_remove(super::isolate::ISOLATED_WORK_ENV)
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
    pub(super) async fn backup(&self, record: &SignedRecord, live: bool) -> Result<String, HonuaError> {
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

    /// The policy's health timeout, or the agent's own for records signed without one.
    pub(super) fn health_timeout(&self, safety: Option<&signing::ApplySafety>) -> Duration {
        safety.map_or(self.config.health_timeout, |s| Duration::from_secs(s.health_check_timeout))
    }
}
