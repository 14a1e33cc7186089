//! Drift and self-heal: every poll compares what Honua is configured with to the manifest of the
//! release the agent wrote, reports changed paths, and restores the release when the policy says
//! `selfHeal`; then it sends the heartbeat.

use std::path::{Path, PathBuf};

use super::{sha256_hex, Agent, HealError, Manifest, NETWORK_GRACE};
use crate::deployment::wire::{self, Heartbeat, Readiness};

impl Agent {
    /// What differs between the live release and its manifest: changed, added or removed files, or a
    /// `current` link that no longer points at a release the agent wrote. Empty when in sync; `None`
    /// before the agent applied anything.
    pub(super) fn drift(&self) -> Option<(PathBuf, Manifest, Vec<String>)> {
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
    pub(super) async fn heal(&self, edited: &Path, manifest: &Manifest) -> Result<(), HealError> {
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
    pub(super) async fn heartbeat(&self) {
        let state = self.load_state();
        let (sync, drifted, record, mut restored) = match self.drift() {
            None => (wire::Sync::Unknown, Vec::new(), None, None),
            Some((_, manifest, paths)) if paths.is_empty() => (wire::Sync::Synced, paths, Some(manifest.record), None),
            Some((live, manifest, paths)) => {
                tracing::warn!(paths = ?paths, "the live configuration was edited by hand (drift)");
                let heal = manifest.record.safety.as_ref().is_some_and(|s| s.self_heal);
                let restored = if heal { Some(self.heal(&live, &manifest).await) } else { None };
                (wire::Sync::Drifted, paths, Some(manifest.record), restored)
            }
        };
        let sync = match &restored {
            Some(Ok(())) => wire::Sync::Synced,
            _ => sync,
        };
        let restored_text = restored.take().map(|r| match r {
            Ok(()) => "restored (selfHeal)".to_string(),
            Err(e) => format!("restoring failed: {e}"),
        });
        let body = Heartbeat {
            deployment: record.as_ref().map(|r| r.deployment.clone()).or(state.deployment.clone()).map(Into::into),
            commit: record.as_ref().map(|r| r.commit.as_str().into()),
            sequence: record.as_ref().map(|r| r.sequence),
            health: if self.healthy().await { Readiness::Healthy } else { Readiness::Unhealthy },
            version: env!("CARGO_PKG_VERSION").into(),
            sync,
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
}
