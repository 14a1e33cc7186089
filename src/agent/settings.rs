//! `honua agent` settings: flags, `HONUA_AGENT_*` environment variables, then an optional YAML file.
//! Secrets (the token, the Git token) are never printed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::AgentConfig;

#[derive(Debug, Default, Clone, Deserialize, clap::Args)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct AgentArgs {
    /// The service's URL (`https://gitops.example.org`).
    #[arg(long, env = "HONUA_AGENT_SERVER")]
    pub server: Option<String>,
    /// The agent token (`honua token create --role agent --environment ENV`).
    #[arg(long, env = "HONUA_AGENT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[arg(long, env = "HONUA_AGENT_ENVIRONMENT")]
    pub environment: Option<String>,
    /// The service's signing key, `ed25519:<hex>` (`GET /api/v1/signing-key`), pinned at install.
    #[arg(long, env = "HONUA_AGENT_PUBLIC_KEY")]
    pub public_key: Option<String>,
    /// The config repository (read-only access is enough).
    #[arg(long, env = "HONUA_AGENT_GIT_URL")]
    pub git_url: Option<String>,
    #[arg(long, env = "HONUA_AGENT_GIT_TOKEN", hide_env_values = true)]
    pub git_token: Option<String>,
    /// Honua's configuration directory; the agent maintains the `current` link in it.
    #[arg(long, env = "HONUA_AGENT_TARGET_DIR")]
    pub target_dir: Option<PathBuf>,
    #[arg(long, env = "HONUA_AGENT_METADATA_FILE")]
    pub metadata_file: Option<String>,
    /// `POST`ed to make Honua reload its metadata (default `http://127.0.0.1:5000/admin/metadata/reload`).
    #[arg(long, env = "HONUA_AGENT_RELOAD_URL")]
    pub reload_url: Option<String>,
    /// Bearer token for Honua's admin endpoints (reload, snapshot, collections).
    #[arg(long, env = "HONUA_AGENT_RELOAD_TOKEN", hide_env_values = true)]
    pub reload_token: Option<String>,
    /// A command (`sh -c`) that reloads Honua, used instead of the reload URL.
    #[arg(long, env = "HONUA_AGENT_RELOAD_COMMAND")]
    pub reload_command: Option<String>,
    /// A command (`sh -c`) that restarts Honua, used when the server configuration (`config.yaml`) changes.
    #[arg(long, env = "HONUA_AGENT_RESTART_COMMAND")]
    pub restart_command: Option<String>,
    /// Honua's snapshot API, `POST`ed before a deployment whose policy says `requireBackup`.
    #[arg(long, env = "HONUA_AGENT_SNAPSHOT_URL")]
    pub snapshot_url: Option<String>,
    /// The server configuration's file name in a release (default `config.yaml`).
    #[arg(long, env = "HONUA_AGENT_SERVER_CONFIG_FILE")]
    pub server_config_file: Option<String>,
    #[arg(long, env = "HONUA_AGENT_HEALTH_URL")]
    pub health_url: Option<String>,
    #[arg(long, env = "HONUA_AGENT_COLLECTIONS_URL")]
    pub collections_url: Option<String>,
    #[arg(long, env = "HONUA_AGENT_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Releases kept besides the live one and the one before it (default 5).
    #[arg(long, env = "HONUA_AGENT_KEEP_RELEASES")]
    pub keep_releases: Option<usize>,
    /// Seconds between reads of the Git ledger while the service answers (default 300; 0: every poll).
    #[arg(long, env = "HONUA_AGENT_LEDGER_INTERVAL")]
    pub ledger_interval: Option<u64>,
    /// Seconds the service may hold a poll open while nothing changes (default 30); lower it below any
    /// idle-connection timeout of a proxy or NAT between the agent and the service.
    #[arg(long, env = "HONUA_AGENT_LONG_POLL")]
    pub long_poll: Option<u64>,
    /// Seconds to wait for health and post-validation after a reload.
    #[arg(long, env = "HONUA_AGENT_HEALTH_TIMEOUT")]
    pub health_timeout: Option<u64>,
    /// `KEY=VALUE` lines for `${VAR}` secrets (the agent's environment is read after it).
    #[arg(long, env = "HONUA_AGENT_SECRETS_FILE")]
    pub secrets_file: Option<PathBuf>,
}

/// The `gitops:` block of Honua's server configuration, as Honua's GitOps sample documents it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GitopsBlock {
    enabled: Option<bool>,
    repository: GitopsRepository,
    environment: Option<String>,
    polling: Option<GitopsPolling>,
    state_store: Option<GitopsStateStore>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct GitopsRepository {
    url: String,
    branch: Option<String>,
    /// Where the repository is kept on the server: the agent's bare mirror lives there.
    path: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GitopsPolling {
    interval_seconds: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct GitopsStateStore {
    #[serde(rename = "type")]
    kind: Option<String>,
    path: Option<PathBuf>,
}

impl GitopsBlock {
    /// The agent settings the block gives; Honua's config directory is the one the file is in.
    fn args(&self, file: &Path) -> Result<AgentArgs, AgentSettingsError> {
        if self.enabled == Some(false) {
            return Err(bad(
                "gitops.enabled",
                format!("is false in {}: set it to true to let the agent manage this server", file.display()),
            ));
        }
        if let Some(kind) = self.state_store.as_ref().and_then(|s| s.kind.as_deref()) {
            if kind != "file" {
                return Err(bad("gitops.stateStore.type", format!("`{kind}`: only `file` is supported")));
            }
        }
        Ok(AgentArgs {
            environment: self.environment.clone(),
            git_url: Some(self.repository.url.clone()),
            state_dir: self.state_store.as_ref().and_then(|s| s.path.clone()),
            target_dir: file
                .parent()
                .map(|p| if p.as_os_str().is_empty() { PathBuf::from(".") } else { p.to_path_buf() }),
            ..AgentArgs::default()
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{setting}: {problem}")]
pub struct AgentSettingsError {
    pub setting: &'static str,
    pub problem: String,
}

fn bad(setting: &'static str, problem: impl Into<String>) -> AgentSettingsError {
    AgentSettingsError { setting, problem: problem.into() }
}

fn url(setting: &'static str, value: Option<String>, default: Option<&str>) -> Result<String, AgentSettingsError> {
    let value = value.or(default.map(str::to_string)).ok_or_else(|| bad(setting, "not set"))?;
    let parsed = url::Url::parse(&value).map_err(|e| bad(setting, format!("`{value}` is not a URL ({e})")))?;
    if !["http", "https", "file"].contains(&parsed.scheme()) {
        return Err(bad(setting, format!("`{value}`: use an http(s) URL")));
    }
    Ok(value)
}

/// A plain file name: a release never writes outside its own directory.
fn file_name(setting: &'static str, value: Option<String>, default: &str) -> Result<String, AgentSettingsError> {
    let name = value.unwrap_or_else(|| default.to_string());
    let plain = !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0']);
    if plain {
        Ok(name)
    } else {
        Err(bad(setting, format!("`{name}` is not a plain file name (no directories)")))
    }
}

impl AgentArgs {
    fn or(self, o: AgentArgs) -> AgentArgs {
        AgentArgs {
            server: self.server.or(o.server),
            token: self.token.or(o.token),
            environment: self.environment.or(o.environment),
            public_key: self.public_key.or(o.public_key),
            git_url: self.git_url.or(o.git_url),
            git_token: self.git_token.or(o.git_token),
            target_dir: self.target_dir.or(o.target_dir),
            metadata_file: self.metadata_file.or(o.metadata_file),
            reload_url: self.reload_url.or(o.reload_url),
            reload_token: self.reload_token.or(o.reload_token),
            reload_command: self.reload_command.or(o.reload_command),
            restart_command: self.restart_command.or(o.restart_command),
            snapshot_url: self.snapshot_url.or(o.snapshot_url),
            server_config_file: self.server_config_file.or(o.server_config_file),
            keep_releases: self.keep_releases.or(o.keep_releases),
            ledger_interval: self.ledger_interval.or(o.ledger_interval),
            long_poll: self.long_poll.or(o.long_poll),
            health_url: self.health_url.or(o.health_url),
            collections_url: self.collections_url.or(o.collections_url),
            state_dir: self.state_dir.or(o.state_dir),
            health_timeout: self.health_timeout.or(o.health_timeout),
            secrets_file: self.secrets_file.or(o.secrets_file),
        }
    }

    /// Every setting checked, each problem named with what to do.
    pub fn resolve(self, file: Option<&Path>) -> Result<AgentConfig, AgentSettingsError> {
        let (from_file, gitops) = match file {
            Some(path) => {
                let bytes =
                    std::fs::read(path).map_err(|e| bad("--config", format!("cannot read {}: {e}", path.display())))?;
                let text = crate::config::yaml::decode(&bytes)
                    .map_err(|e| bad("--config", format!("{}: {e}", path.display())))?;
                let node = crate::config::yaml::parse(text, crate::config::node::FileId(0))
                    .map_err(|e| bad("--config", format!("{}:{e}", path.display())))?;
                let value = node.to_json();
                match value.get("gitops") {
                    // Honua's own server configuration: only its `gitops:` block is ours.
                    Some(block) => {
                        let block: GitopsBlock = serde_json::from_value(block.clone())
                            .map_err(|e| bad("--config", format!("{}: the `gitops:` block: {e}", path.display())))?;
                        (block.args(path)?, Some(block))
                    }
                    None => (
                        serde_json::from_value(value)
                            .map_err(|e| bad("--config", format!("{}: {e}", path.display())))?,
                        None,
                    ),
                }
            }
            None => (AgentArgs::default(), None),
        };
        let git_only = match &gitops {
            Some(block) if self.server.is_none() => Some(super::GitOnly {
                branch: block.repository.branch.clone().unwrap_or_else(|| "main".into()),
                interval: Duration::from_secs(
                    block.polling.as_ref().and_then(|p| p.interval_seconds).unwrap_or(30).max(1),
                ),
            }),
            _ => None,
        };
        let mirror_dir = gitops.as_ref().and_then(|b| b.repository.path.clone());
        let a = self.or(from_file);
        let environment = a
            .environment
            .ok_or_else(|| bad("HONUA_AGENT_ENVIRONMENT", "not set; the environment this agent serves"))?;
        let (server, token, public_key) = if git_only.is_some() {
            // Nothing is signed without a service: a placeholder key that verifies nothing anyone sends.
            let placeholder =
                || crate::plan::signing::Signer::from_secret(&[1u8; 32]).expect("32 bytes make a key").public_key();
            (String::new(), String::new(), a.public_key.unwrap_or_else(placeholder))
        } else {
            let public_key = a
                .public_key
                .ok_or_else(|| bad("HONUA_AGENT_PUBLIC_KEY", "not set; pin the key `GET /api/v1/signing-key` shows"))?;
            crate::plan::signing::parse_public_key(&public_key)
                .map_err(|e| bad("HONUA_AGENT_PUBLIC_KEY", e.to_string()))?;
            let token = a.token.filter(|t| !t.trim().is_empty()).ok_or_else(|| {
                bad(
                    "HONUA_AGENT_TOKEN",
                    format!("not set; create one with `honua token create --role agent --environment {environment}`"),
                )
            })?;
            (url("HONUA_AGENT_SERVER", a.server, None)?.trim_end_matches('/').to_string(), token, public_key)
        };
        let target_dir =
            a.target_dir.ok_or_else(|| bad("HONUA_AGENT_TARGET_DIR", "not set; Honua's configuration directory"))?;
        let state_dir = a.state_dir.unwrap_or_else(|| PathBuf::from("/var/lib/honua-agent"));
        let git_url = url("HONUA_AGENT_GIT_URL", a.git_url, None)?;
        let d = AgentConfig::new(server, token, &environment, public_key, git_url, target_dir, state_dir);
        Ok(AgentConfig {
            git_only,
            mirror_dir,
            git_token: a.git_token,
            metadata_file: file_name("HONUA_AGENT_METADATA_FILE", a.metadata_file, &d.metadata_file)?,
            reload_url: url("HONUA_AGENT_RELOAD_URL", a.reload_url, Some(&d.reload_url))?,
            reload_token: a.reload_token,
            reload_command: a.reload_command.filter(|c| !c.trim().is_empty()),
            restart_command: a.restart_command.filter(|c| !c.trim().is_empty()),
            snapshot_url: a.snapshot_url.map(|u| url("HONUA_AGENT_SNAPSHOT_URL", Some(u), None)).transpose()?,
            server_config_file: file_name(
                "HONUA_AGENT_SERVER_CONFIG_FILE",
                a.server_config_file,
                &d.server_config_file,
            )?,
            keep_releases: a.keep_releases.unwrap_or(d.keep_releases),
            ledger_interval: a.ledger_interval.map_or(d.ledger_interval, Duration::from_secs),
            long_poll: a.long_poll.map_or(d.long_poll, |s| Duration::from_secs(s.min(300))),
            health_url: url("HONUA_AGENT_HEALTH_URL", a.health_url, Some(&d.health_url))?,
            collections_url: a
                .collections_url
                .map(|u| url("HONUA_AGENT_COLLECTIONS_URL", Some(u), None))
                .transpose()?,
            health_timeout: a.health_timeout.map_or(d.health_timeout, Duration::from_secs),
            secrets_file: a.secrets_file,
            ..d
        })
    }
}

impl AgentConfig {
    /// An agent with `honua agent`'s defaults for everything but who it is, what it serves and where:
    /// Honua on `127.0.0.1:5000` (reload, readiness), `metadata.json` and `config.yaml` in a release,
    /// five releases kept, the ledger read every 5 minutes, 120 s for health when a record says nothing.
    pub fn new(
        server: String,
        token: String,
        environment: &str,
        public_key: String,
        git_url: String,
        target_dir: PathBuf,
        state_dir: PathBuf,
    ) -> AgentConfig {
        AgentConfig {
            server,
            token,
            environment: environment.to_string(),
            public_key,
            git_url,
            git_token: None,
            target_dir,
            metadata_file: "metadata.json".into(),
            reload_url: "http://127.0.0.1:5000/admin/metadata/reload".into(),
            reload_token: None,
            reload_command: None,
            restart_command: None,
            snapshot_url: None,
            server_config_file: "config.yaml".into(),
            health_url: "http://127.0.0.1:5000/healthz/ready".into(),
            collections_url: None,
            state_dir,
            keep_releases: 5,
            ledger_interval: Duration::from_secs(300),
            long_poll: Duration::from_secs(30),
            health_timeout: Duration::from_secs(120),
            secrets_file: None,
            git_only: None,
            mirror_dir: None,
            crash_after: None,
        }
    }
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("server", &self.server)
            .field("environment", &self.environment)
            .field("public_key", &self.public_key)
            .field("git_url", &self.git_url)
            .field("target_dir", &self.target_dir)
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod gitops_block_tests {
    use super::*;

    fn resolve(yaml: &str) -> Result<AgentConfig, AgentSettingsError> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("honua.yaml");
        std::fs::write(&file, yaml).unwrap();
        AgentArgs::default().resolve(Some(&file))
    }

    #[test]
    fn the_sample_block_gives_a_git_only_agent_and_its_mistakes_are_named() {
        let block = "gitops:\n  enabled: true\n  repository:\n    url: https://github.com/your-org/honua-config.git\n    branch: main\n    path: /etc/honua/config-repo\n  environment: production\n  polling:\n    intervalSeconds: 30\n  stateStore:\n    type: file\n    path: /var/lib/honua/gitops-state\n";
        let config = resolve(&format!("server:\n  port: 5000\n{block}")).unwrap();
        let git_only = config.git_only.expect("no service: Git-only");
        assert_eq!((git_only.branch.as_str(), git_only.interval.as_secs()), ("main", 30));
        assert_eq!(config.environment, "production");
        assert_eq!(config.state_dir, PathBuf::from("/var/lib/honua/gitops-state"));
        assert_eq!(config.mirror_dir, Some(PathBuf::from("/etc/honua/config-repo")));

        let off = resolve(&block.replace("enabled: true", "enabled: false")).unwrap_err().to_string();
        assert!(off.starts_with("gitops.enabled: is false in") && off.contains("set it to true"), "{off}");
        let redis = resolve(&block.replace("type: file", "type: redis")).unwrap_err().to_string();
        assert_eq!(redis, "gitops.stateStore.type: `redis`: only `file` is supported");
        let typo = resolve(&block.replace("intervalSeconds", "intervalSecs")).unwrap_err().to_string();
        assert!(typo.contains("the `gitops:` block") && typo.contains("intervalSecs"), "{typo}");
    }
}
