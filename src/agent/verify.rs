//! Is Honua serving what was applied: reload, health, and every expected collection (and none of those
//! removed); and the checks `honua agent --check` runs before the first poll.

use std::path::Path;
use std::time::Duration;

use super::{honua, sha256_hex, Agent, CheckFailure, HonuaError, VerifyError, QUICKSTART_WITH_COMMAND, WATCHER_SETTLE};
use crate::git::mirror::Mirror;

impl Agent {
    /// Makes Honua load the live release (the reload request, or the operator's command), waits for it
    /// to be healthy, then checks each collection that must be served is, and each that must be gone
    /// is. Honua refuses to start without metadata: on a first install it is not running yet, so it is
    /// started with the restart command, or waited for (a supervisor restarting it now finds the file).
    /// Says how it went, for the report.
    pub(super) async fn reload_and_verify(
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
    pub(super) async fn verify_collections(
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

    pub(super) async fn healthy(&self) -> bool {
        self.honua.healthy(&self.config.health_url).await
    }

    /// The OGC collections the metadata of `release` publishes, by Honua's rule.
    pub(super) fn collections_in(&self, release: &Path) -> Vec<String> {
        if let Some(recorded) = self.recorded_collections(release) {
            return recorded;
        }
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

    /// The collections `release`'s manifest recorded when it was written, while its file is still the
    /// one written: a file edited by hand (drift) may serve others, and is parsed instead.
    fn recorded_collections(&self, release: &Path) -> Option<Vec<String>> {
        let manifest = self.load_manifest(release)?;
        let recorded = manifest.collections?;
        let (name, sha) = manifest
            .files
            .iter()
            .find(|(name, _)| **name == self.config.hcl_file || **name == self.config.metadata_file)?;
        let bytes = std::fs::read(release.join(name)).ok()?;
        (sha256_hex(&bytes) == *sha).then_some(recorded)
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
    pub(super) async fn check_admin(&self) -> Result<String, CheckFailure> {
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
}
