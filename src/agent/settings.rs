//! `honua agent` settings: flags, `HONUA_AGENT_*` environment variables, then an optional file, which is
//! one of: the agent's own YAML; Honua's server configuration with the `gitops:` block of Honua's GitOps
//! sample; or Honua's `appsettings.json` (or YAML) with its `GitOps` section, read as Honua's dormant
//! code reads it (keys case-insensitive). Secrets (the token, the Git token, the admin password) are
//! never printed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{AdminAuth, AgentConfig, GitOnly};
pub use crate::settings::SettingError;
use crate::settings::{bad, layer, read_file};

#[derive(Debug, Default, Clone, Serialize, Deserialize, clap::Args)]
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
    /// For a Configuration 2.0 environment: the file name, in the target directory, Honua reads its HCL
    /// from (`HONUA_CONFIG_PATH`; default `honua.config.hcl`, the name Honua looks for). The agent
    /// replaces that file in place, so Honua's file watcher sees each deployment.
    #[arg(long, env = "HONUA_AGENT_HCL_FILE")]
    pub hcl_file: Option<String>,
    /// Honua's address (default `http://127.0.0.1:5000`): the reload, snapshot, collections, health and
    /// login URLs default to Honua's own paths under it.
    #[arg(long, env = "HONUA_AGENT_HONUA_URL")]
    pub honua_url: Option<String>,
    /// `POST`ed to make Honua reload its metadata (default `<honua_url>/v1/admin/metadata/reload`).
    #[arg(long, env = "HONUA_AGENT_RELOAD_URL")]
    pub reload_url: Option<String>,
    /// Sent as `X-API-Key` with every admin request: any value passes Honua's CSRF check (default
    /// `honua-gitops-agent`; empty: not sent).
    #[arg(long, env = "HONUA_AGENT_API_KEY")]
    pub api_key: Option<String>,
    /// How to authenticate to Honua's admin routes: `token` (HONUA_AGENT_ADMIN_TOKEN), `basic` or `login`
    /// (HONUA_AGENT_ADMIN_USER and HONUA_AGENT_ADMIN_PASSWORD). Default: `token` when a token is set, else
    /// `basic` for an https Honua and `login` for http (Honua accepts Basic only over HTTPS).
    #[arg(long, env = "HONUA_AGENT_ADMIN_AUTH")]
    pub admin_auth: Option<String>,
    /// A bearer token for Honua's admin routes (from Honua's identity provider).
    #[arg(long, env = "HONUA_AGENT_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Deprecated name of HONUA_AGENT_ADMIN_TOKEN (still read, with a warning).
    #[arg(long, env = "HONUA_AGENT_RELOAD_TOKEN", hide = true, hide_env_values = true)]
    pub reload_token: Option<String>,
    /// A local Honua administrator, for the local login or HTTP Basic.
    #[arg(long, env = "HONUA_AGENT_ADMIN_USER")]
    pub admin_user: Option<String>,
    #[arg(long, env = "HONUA_AGENT_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// Honua's local login (default `<honua_url>/api/auth/local/login`).
    #[arg(long, env = "HONUA_AGENT_LOGIN_URL")]
    pub login_url: Option<String>,
    /// A command (`sh -c`) that reloads Honua, used instead of the reload URL (QuickStart mode).
    #[arg(long, env = "HONUA_AGENT_RELOAD_COMMAND")]
    pub reload_command: Option<String>,
    /// A command (`sh -c`) that restarts Honua, used when the server configuration (`config.yaml`)
    /// changes, and to start Honua on a first install.
    #[arg(long, env = "HONUA_AGENT_RESTART_COMMAND")]
    pub restart_command: Option<String>,
    /// Honua's snapshot API, `POST`ed before a deployment whose policy says `requireBackup` (default
    /// `<honua_url>/v1/admin/metadata/snapshots`; empty: none, the previous release is the backup).
    #[arg(long, env = "HONUA_AGENT_SNAPSHOT_URL")]
    pub snapshot_url: Option<String>,
    /// The server configuration's file name in a release (default `config.yaml`).
    #[arg(long, env = "HONUA_AGENT_SERVER_CONFIG_FILE")]
    pub server_config_file: Option<String>,
    /// Honua's readiness (default `<honua_url>/healthz/ready`).
    #[arg(long, env = "HONUA_AGENT_HEALTH_URL")]
    pub health_url: Option<String>,
    /// Honua's OGC collections, asked for one by one after a reload (default
    /// `<honua_url>/v1/ogc/collections`; empty: no post-validation).
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
    /// Plan and log what would change, never apply (Git-only mode).
    #[arg(long, env = "HONUA_AGENT_DRY_RUN")]
    pub dry_run: Option<bool>,
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

/// What a settings file gives besides [`AgentArgs`]: Git-only mode and where its mirror is kept.
#[derive(Default)]
struct FileExtras {
    git_only: Option<GitOnly>,
    mirror_dir: Option<PathBuf>,
    notices: Vec<String>,
}

impl GitopsBlock {
    /// The agent settings the block gives; Honua's config directory is the one the file is in.
    fn args(&self, file: &Path) -> Result<(AgentArgs, FileExtras), SettingError> {
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
        let args = AgentArgs {
            environment: self.environment.clone(),
            git_url: Some(self.repository.url.clone()),
            state_dir: self.state_store.as_ref().and_then(|s| s.path.clone()),
            target_dir: file
                .parent()
                .map(|p| if p.as_os_str().is_empty() { PathBuf::from(".") } else { p.to_path_buf() }),
            ..AgentArgs::default()
        };
        let extras = FileExtras {
            git_only: Some(GitOnly {
                branch: self.repository.branch.clone().unwrap_or_else(|| "main".into()),
                interval: Duration::from_secs(
                    self.polling.as_ref().and_then(|p| p.interval_seconds).unwrap_or(30).max(1),
                ),
            }),
            mirror_dir: self.repository.path.clone(),
            notices: Vec::new(),
        };
        Ok((args, extras))
    }
}

/// `key` of a JSON object, compared case-insensitively (as .NET configuration binds).
fn get_ci<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    value.as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v)
}

/// A configuration value as .NET binds it: strings, numbers and booleans all arrive as text.
fn text_ci(value: &Value, key: &str) -> Option<String> {
    match get_ci(value, key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn bool_ci(value: &Value, key: &str, setting: &'static str) -> Result<Option<bool>, SettingError> {
    text_ci(value, key)
        .map(|t| match t.to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(bad(setting, format!("`{other}` is not true or false"))),
        })
        .transpose()
}

/// Honua's own `GitOps` appsettings section (`Enterprise/GitOps/GitOpsServiceCollectionExtensions.cs`,
/// `GitWatcher.cs`, dormant in the server): `RepositoryPath` (a local clone; its `origin` is the remote),
/// `StateDirectory`, `DryRun`, `Watcher{Branch, Environment, PollIntervalSeconds}`,
/// `Credentials{Username, Password}`; `Notifications` and `Approvals` are read and ignored. Honua's
/// metadata path (`honua:metadata:path`, which must go through `current`) gives the target directory.
fn honua_gitops_section(root: &Value, section: &Value, file: &Path) -> Result<(AgentArgs, FileExtras), SettingError> {
    if bool_ci(section, "Enabled", "GitOps:Enabled")? == Some(false) {
        return Err(bad(
            "GitOps:Enabled",
            format!("is false in {}: set it to true to let the agent manage this server", file.display()),
        ));
    }
    let repository = text_ci(section, "RepositoryPath").ok_or_else(|| {
        bad(
            "GitOps:RepositoryPath",
            format!("not set in {}: the path of a local clone of the config repository", file.display()),
        )
    })?;
    let clone = PathBuf::from(&repository);
    let origin = git2::Repository::open(&clone)
        .map_err(|e| {
            bad(
                "GitOps:RepositoryPath",
                format!("`{repository}` is not a Git clone ({}); clone the config repository there", e.message()),
            )
        })?
        .find_remote("origin")
        .ok()
        .and_then(|r| r.url().map(str::to_string));
    // Without an `origin`, the clone itself is the remote the agent fetches from.
    let mut git_url =
        origin.unwrap_or_else(|| format!("file://{}", std::fs::canonicalize(&clone).unwrap_or(clone).display()));
    let credentials = get_ci(section, "Credentials");
    let username = credentials.and_then(|c| text_ci(c, "Username")).filter(|u| !u.is_empty());
    let password = credentials.and_then(|c| text_ci(c, "Password")).filter(|p| !p.is_empty());
    if let (Some(user), Ok(mut url)) = (&username, url::Url::parse(&git_url)) {
        if url.scheme().starts_with("http") && url.set_username(user).is_ok() {
            git_url = url.to_string();
        }
    }
    let watcher = get_ci(section, "Watcher");
    let interval = watcher
        .and_then(|w| text_ci(w, "PollIntervalSeconds"))
        .map(|t| {
            t.parse::<u64>()
                .map_err(|_| bad("GitOps:Watcher:PollIntervalSeconds", format!("`{t}` is not a number of seconds")))
        })
        .transpose()?
        .unwrap_or(30);
    let metadata_path = get_ci(root, "honua").and_then(|h| get_ci(h, "metadata")).and_then(|m| text_ci(m, "path"));
    let (target_dir, metadata_file) = match metadata_path.map(PathBuf::from) {
        Some(path) => {
            let release = path.parent().filter(|p| p.file_name().is_some_and(|n| n == "current"));
            let target = release.and_then(Path::parent).map(Path::to_path_buf).ok_or_else(|| {
                bad(
                    "honua:metadata:path",
                    format!("`{}` does not go through a `current` directory: point it at `<dir>/current/metadata.json`, which the agent swaps atomically", path.display()),
                )
            })?;
            (Some(target), path.file_name().map(|n| n.to_string_lossy().into_owned()))
        }
        None => (None, None),
    };
    let mut notices = Vec::new();
    for ignored in ["Notifications", "Approvals"] {
        if get_ci(section, ignored).is_some() {
            notices.push(format!(
                "GitOps:{ignored} in {} is read and ignored: {}",
                file.display(),
                if ignored == "Notifications" {
                    "notifications come from the deployment policy's `notifications` block, sent by `honua serve`"
                } else {
                    "approvals come from the deployment policy, given through `honua serve`"
                }
            ));
        }
    }
    let args = AgentArgs {
        environment: watcher.and_then(|w| text_ci(w, "Environment")).or_else(|| Some("production".into())),
        git_url: Some(git_url),
        git_token: password,
        state_dir: text_ci(section, "StateDirectory").map(PathBuf::from),
        dry_run: bool_ci(section, "DryRun", "GitOps:DryRun")?,
        target_dir,
        metadata_file,
        ..AgentArgs::default()
    };
    let extras = FileExtras {
        git_only: Some(GitOnly {
            branch: watcher.and_then(|w| text_ci(w, "Branch")).unwrap_or_else(|| "main".into()),
            interval: Duration::from_secs(interval.max(1)),
        }),
        mirror_dir: None,
        notices,
    };
    if args.state_dir.is_none() {
        return Err(bad(
            "GitOps:StateDirectory",
            format!("not set in {}: where the agent keeps its releases and state", file.display()),
        ));
    }
    Ok((args, extras))
}

fn url(setting: &'static str, value: Option<String>, default: Option<&str>) -> Result<String, SettingError> {
    let value = value.or(default.map(str::to_string)).ok_or_else(|| bad(setting, "not set"))?;
    let parsed = url::Url::parse(&value).map_err(|e| bad(setting, format!("`{value}` is not a URL ({e})")))?;
    if !["http", "https", "file"].contains(&parsed.scheme()) {
        return Err(bad(setting, format!("`{value}`: use an http(s) URL")));
    }
    Ok(value)
}

/// An optional URL: unset takes `default`, an empty value turns the feature off.
fn optional_url(setting: &'static str, value: Option<String>, default: &str) -> Result<Option<String>, SettingError> {
    match value {
        Some(v) if v.trim().is_empty() => Ok(None),
        v => url(setting, v, Some(default)).map(Some),
    }
}

/// A plain file name: a release never writes outside its own directory.
fn file_name(setting: &'static str, value: Option<String>, default: &str) -> Result<String, SettingError> {
    let name = value.unwrap_or_else(|| default.to_string());
    let plain = !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0']);
    if plain {
        Ok(name)
    } else {
        Err(bad(setting, format!("`{name}` is not a plain file name (no directories)")))
    }
}

/// Honua's admin credentials from the settings, and the notices they give.
fn admin_auth(a: &AgentArgs, honua_is_https: bool, notices: &mut Vec<String>) -> Result<AdminAuth, SettingError> {
    let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
    let mut token = nonempty(&a.admin_token);
    if token.is_none() {
        if let Some(old) = nonempty(&a.reload_token) {
            notices.push("HONUA_AGENT_RELOAD_TOKEN (reload_token) is deprecated: it is Honua's admin token for every admin request; rename it HONUA_AGENT_ADMIN_TOKEN (admin_token)".into());
            token = Some(old);
        }
    }
    let user = nonempty(&a.admin_user);
    let password = nonempty(&a.admin_password);
    let credentials = || match (&user, &password) {
        (Some(user), Some(password)) => Ok((user.clone(), password.clone())),
        _ => Err(bad(
            "HONUA_AGENT_ADMIN_USER",
            "both HONUA_AGENT_ADMIN_USER and HONUA_AGENT_ADMIN_PASSWORD are needed: a local Honua administrator",
        )),
    };
    Ok(match a.admin_auth.as_deref().map(str::trim) {
        Some("token") => AdminAuth::Bearer(
            token.ok_or_else(|| bad("HONUA_AGENT_ADMIN_TOKEN", "not set, and HONUA_AGENT_ADMIN_AUTH is `token`"))?,
        ),
        Some("basic") => {
            let (user, password) = credentials()?;
            AdminAuth::Basic { user, password }
        }
        Some("login") => {
            let (user, password) = credentials()?;
            AdminAuth::Login { user, password }
        }
        Some(other) => return Err(bad("HONUA_AGENT_ADMIN_AUTH", format!("`{other}`: use token, basic or login"))),
        None => match (token, user.is_some() || password.is_some()) {
            (Some(_), true) => return Err(bad(
                "HONUA_AGENT_ADMIN_AUTH",
                "both an admin token and an admin user are set: choose with HONUA_AGENT_ADMIN_AUTH=token|basic|login",
            )),
            (Some(token), false) => AdminAuth::Bearer(token),
            (None, true) => {
                let (user, password) = credentials()?;
                if honua_is_https {
                    AdminAuth::Basic { user, password }
                } else {
                    AdminAuth::Login { user, password }
                }
            }
            (None, false) => AdminAuth::None,
        },
    })
}

impl AgentArgs {
    /// Reads a settings file: the agent's own, Honua's server configuration with a `gitops:` block, or
    /// Honua's appsettings with a `GitOps` section.
    fn from_file(path: &Path) -> Result<(AgentArgs, FileExtras), SettingError> {
        let value = read_file(path)?;
        // The sample's lowercase block, or Honua's own section (PascalCase, case-insensitive).
        if let Some(block) = value.get("gitops").filter(|b| get_ci(b, "RepositoryPath").is_none()) {
            let block: GitopsBlock = serde_json::from_value(block.clone())
                .map_err(|e| bad("--config", format!("{}: the `gitops:` block: {e}", path.display())))?;
            return block.args(path);
        }
        if let Some(section) = get_ci(&value, "GitOps") {
            return honua_gitops_section(&value, section, path);
        }
        let args = serde_json::from_value(value).map_err(|e| bad("--config", format!("{}: {e}", path.display())))?;
        Ok((args, FileExtras::default()))
    }

    /// Every setting checked, each problem named with what to do.
    pub fn resolve(self, file: Option<&Path>) -> Result<AgentConfig, SettingError> {
        let (from_file, extras) = match file {
            Some(path) => AgentArgs::from_file(path)?,
            None => (AgentArgs::default(), FileExtras::default()),
        };
        // A service makes it the service's agent; without one, a Git-only file runs Git-only.
        let git_only = extras.git_only.filter(|_| self.server.is_none());
        let mut notices = extras.notices;
        let a = layer(self, from_file);
        let environment = a
            .environment
            .clone()
            .ok_or_else(|| bad("HONUA_AGENT_ENVIRONMENT", "not set; the environment this agent serves"))?;
        let (server, token, public_key) = if git_only.is_some() {
            // Nothing is signed without a service: a placeholder key that verifies nothing anyone sends.
            let placeholder =
                || crate::plan::signing::Signer::from_secret(&[1u8; 32]).expect("32 bytes make a key").public_key();
            (String::new(), String::new(), a.public_key.clone().unwrap_or_else(placeholder))
        } else {
            let public_key = a
                .public_key
                .clone()
                .ok_or_else(|| bad("HONUA_AGENT_PUBLIC_KEY", "not set; pin the key `GET /api/v1/signing-key` shows"))?;
            crate::plan::signing::parse_public_key(&public_key)
                .map_err(|e| bad("HONUA_AGENT_PUBLIC_KEY", e.to_string()))?;
            let token = a.token.clone().filter(|t| !t.trim().is_empty()).ok_or_else(|| {
                bad(
                    "HONUA_AGENT_TOKEN",
                    format!("not set; create one with `honua token create --role agent --environment {environment}`"),
                )
            })?;
            (url("HONUA_AGENT_SERVER", a.server.clone(), None)?.trim_end_matches('/').to_string(), token, public_key)
        };
        let dry_run = a.dry_run.unwrap_or(false);
        if dry_run && git_only.is_none() {
            return Err(bad(
                "HONUA_AGENT_DRY_RUN",
                "a dry run is for Git-only mode (Honua's GitOps section); an agent of the service applies what was approved, so try changes in a staging environment instead",
            ));
        }
        let target_dir = a
            .target_dir
            .clone()
            .ok_or_else(|| bad("HONUA_AGENT_TARGET_DIR", "not set; Honua's configuration directory"))?;
        let state_dir = a.state_dir.clone().unwrap_or_else(|| PathBuf::from("/var/lib/honua-agent"));
        let git_url = url("HONUA_AGENT_GIT_URL", a.git_url.clone(), None)?;
        let honua =
            url("HONUA_AGENT_HONUA_URL", a.honua_url.clone(), Some(DEFAULT_HONUA))?.trim_end_matches('/').to_string();
        let d =
            AgentConfig::new(server, token, &environment, public_key, git_url, target_dir, state_dir).on_honua(&honua);
        let reload_url = url("HONUA_AGENT_RELOAD_URL", a.reload_url.clone(), Some(&d.reload_url))?;
        let admin = admin_auth(&a, reload_url.starts_with("https://"), &mut notices)?;
        let api_key = match a.api_key.clone() {
            Some(key) if key.trim().is_empty() => {
                notices.push("HONUA_AGENT_API_KEY is empty: no X-API-Key header is sent, and Honua's CSRF check refuses every admin POST (403)".into());
                None
            }
            Some(key) => Some(key),
            None => d.api_key.clone(),
        };
        Ok(AgentConfig {
            git_only,
            mirror_dir: extras.mirror_dir,
            git_token: a.git_token,
            metadata_file: file_name("HONUA_AGENT_METADATA_FILE", a.metadata_file, &d.metadata_file)?,
            hcl_file: file_name("HONUA_AGENT_HCL_FILE", a.hcl_file, &d.hcl_file)?,
            reload_url,
            api_key,
            admin,
            login_url: url("HONUA_AGENT_LOGIN_URL", a.login_url, Some(&d.login_url))?,
            reload_command: a.reload_command.filter(|c| !c.trim().is_empty()),
            restart_command: a.restart_command.filter(|c| !c.trim().is_empty()),
            snapshot_url: optional_url(
                "HONUA_AGENT_SNAPSHOT_URL",
                a.snapshot_url,
                d.snapshot_url.as_deref().unwrap_or_default(),
            )?,
            server_config_file: file_name(
                "HONUA_AGENT_SERVER_CONFIG_FILE",
                a.server_config_file,
                &d.server_config_file,
            )?,
            keep_releases: a.keep_releases.unwrap_or(d.keep_releases),
            ledger_interval: a.ledger_interval.map_or(d.ledger_interval, Duration::from_secs),
            long_poll: a.long_poll.map_or(d.long_poll, |s| Duration::from_secs(s.min(300))),
            health_url: url("HONUA_AGENT_HEALTH_URL", a.health_url, Some(&d.health_url))?,
            collections_url: optional_url(
                "HONUA_AGENT_COLLECTIONS_URL",
                a.collections_url,
                d.collections_url.as_deref().unwrap_or_default(),
            )?,
            health_timeout: a.health_timeout.map_or(d.health_timeout, Duration::from_secs),
            secrets_file: a.secrets_file,
            dry_run,
            notices,
            ..d
        })
    }
}

/// Where the agent looks for Honua unless told: Kestrel's default port on the same server.
pub const DEFAULT_HONUA: &str = "http://127.0.0.1:5000";

/// The `X-API-Key` sent unless told otherwise: Honua's CSRF check wants the header, not a value.
pub const DEFAULT_API_KEY: &str = "honua-gitops-agent";

impl AgentConfig {
    /// An agent with `honua agent`'s defaults for everything but who it is, what it serves and where:
    /// Honua on `127.0.0.1:5000` (see [`AgentConfig::on_honua`]), `metadata.json` and `config.yaml` in a
    /// release, five releases kept, the ledger read every 5 minutes, 120 s for health when a record says
    /// nothing.
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
            hcl_file: "honua.config.hcl".into(),
            reload_url: String::new(),
            api_key: Some(DEFAULT_API_KEY.into()),
            admin: AdminAuth::None,
            login_url: String::new(),
            reload_command: None,
            restart_command: None,
            snapshot_url: None,
            server_config_file: "config.yaml".into(),
            health_url: String::new(),
            collections_url: None,
            state_dir,
            keep_releases: 5,
            ledger_interval: Duration::from_secs(300),
            long_poll: Duration::from_secs(30),
            health_timeout: Duration::from_secs(120),
            secrets_file: None,
            git_only: None,
            mirror_dir: None,
            dry_run: false,
            notices: Vec::new(),
            crash_after: None,
        }
        .on_honua(DEFAULT_HONUA)
    }

    /// Honua's own paths under `base` (the JSON-era server; REAL-SERVER.md §1-3): reload, snapshots and
    /// collections under `/v1`, readiness at `/healthz/ready`, the local login at `/api/auth/local/login`.
    pub fn on_honua(self, base: &str) -> AgentConfig {
        let base = base.trim_end_matches('/');
        AgentConfig {
            reload_url: format!("{base}/v1/admin/metadata/reload"),
            snapshot_url: Some(format!("{base}/v1/admin/metadata/snapshots")),
            collections_url: Some(format!("{base}/v1/ogc/collections")),
            health_url: format!("{base}/healthz/ready"),
            login_url: format!("{base}/api/auth/local/login"),
            ..self
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
            .field("reload_url", &self.reload_url)
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod gitops_block_tests {
    use super::*;

    fn resolve(yaml: &str) -> Result<AgentConfig, SettingError> {
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

    /// Honua's appsettings.json, comments and all, with the `GitOps` section its dormant code reads.
    fn appsettings(dir: &Path, gitops: &str) -> PathBuf {
        let file = dir.join("appsettings.json");
        let text = format!(
            "{{\n  // Honua's server settings\n  \"honua\": {{ \"metadata\": {{ \"provider\": \"json\", \"path\": \"{}/current/metadata.json\" }} }},\n  /* the section Honua's GitOps code binds */\n  \"GitOps\": {gitops}\n}}\n",
            dir.join("honua").display()
        );
        std::fs::write(&file, text).unwrap();
        file
    }

    fn clone_with_origin(dir: &Path, origin: Option<&str>) -> PathBuf {
        let clone = dir.join("config-repo");
        let repo = git2::Repository::init(&clone).unwrap();
        if let Some(url) = origin {
            repo.remote("origin", url).unwrap();
        }
        clone
    }

    #[test]
    fn honuas_gitops_section_is_read_as_its_code_binds_it() {
        let dir = tempfile::tempdir().unwrap();
        let clone = clone_with_origin(dir.path(), Some("https://git.example.org/gis/honua-config.git"));
        let section = format!(
            r#"{{ "enabled": true, "repositoryPath": "{}", "STATEDIRECTORY": "{}", "DryRun": "True",
                "Watcher": {{ "Branch": "release", "Environment": "staging", "PollIntervalSeconds": 45 }},
                "Credentials": {{ "Username": "deploy-bot", "Password": "pat-123" }},
                "Notifications": {{ "Slack": {{ "WebhookUrl": "https://hooks.example/x" }} }},
                "Approvals": {{ "Required": true }} }}"#,
            clone.display(),
            dir.path().join("state").display()
        );
        let config = AgentArgs::default().resolve(Some(&appsettings(dir.path(), &section))).unwrap();
        let git_only = config.git_only.as_ref().expect("a GitOps section without a service runs Git-only");
        assert_eq!((git_only.branch.as_str(), git_only.interval.as_secs()), ("release", 45));
        assert_eq!(config.environment, "staging");
        assert_eq!(config.git_url, "https://deploy-bot@git.example.org/gis/honua-config.git", "origin, with the user");
        assert_eq!(config.git_token.as_deref(), Some("pat-123"));
        assert_eq!(config.state_dir, dir.path().join("state"));
        assert_eq!(config.target_dir, dir.path().join("honua"), "through `current`");
        assert_eq!(config.metadata_file, "metadata.json");
        assert!(config.dry_run);
        assert_eq!(config.notices.len(), 2, "{:?}", config.notices);
        assert!(config.notices[0].starts_with("GitOps:Notifications in") && config.notices[0].contains("ignored"));
        assert!(config.notices[1].starts_with("GitOps:Approvals in") && config.notices[1].contains("honua serve"));
        assert!(
            !format!("{config:?}").contains("pat-123") && !config.notices.concat().contains("pat-123"),
            "the password is never shown"
        );
    }

    #[test]
    fn honuas_gitops_section_mistakes_are_named_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let resolve_section = |section: String| {
            AgentArgs::default().resolve(Some(&appsettings(dir.path(), &section))).map_err(|e| e.to_string())
        };

        // A clone without `origin` is its own remote.
        let clone = clone_with_origin(dir.path(), None);
        let plain =
            format!(r#"{{ "RepositoryPath": "{}", "StateDirectory": "{}" }}"#, clone.display(), state.display());
        let config = resolve_section(plain.clone()).unwrap();
        assert!(config.git_url.starts_with("file://") && config.git_url.ends_with("config-repo"), "{}", config.git_url);
        assert_eq!((config.environment.as_str(), config.dry_run), ("production", false), "Honua's defaults");
        assert!(config.notices.is_empty());

        let off = resolve_section(plain.replacen('{', r#"{ "Enabled": false,"#, 1)).unwrap_err();
        assert!(off.starts_with("GitOps:Enabled: is false in") && off.contains("set it to true"), "{off}");
        let no_clone = resolve_section(format!(r#"{{ "StateDirectory": "{}" }}"#, state.display())).unwrap_err();
        assert!(
            no_clone.starts_with("GitOps:RepositoryPath: not set") && no_clone.contains("local clone"),
            "{no_clone}"
        );
        let not_git = resolve_section(plain.replace(&clone.display().to_string(), &state.display().to_string()));
        assert!(not_git.unwrap_err().contains("is not a Git clone"));
        let no_state = resolve_section(format!(r#"{{ "RepositoryPath": "{}" }}"#, clone.display())).unwrap_err();
        assert!(no_state.starts_with("GitOps:StateDirectory: not set"), "{no_state}");
        let dry = resolve_section(plain.replacen('{', r#"{ "DryRun": "maybe","#, 1)).unwrap_err();
        assert_eq!(dry, "GitOps:DryRun: `maybe` is not true or false");
        let interval = resolve_section(plain.replacen('{', r#"{ "Watcher": { "PollIntervalSeconds": "often" },"#, 1));
        assert!(interval.unwrap_err().contains("`often` is not a number of seconds"));

        // Honua's metadata path must go through the `current` link the agent swaps.
        let file = appsettings(dir.path(), &plain);
        let text = std::fs::read_to_string(&file).unwrap().replace("/current/metadata.json", "/metadata.json");
        std::fs::write(&file, text).unwrap();
        let err = AgentArgs::default().resolve(Some(&file)).unwrap_err().to_string();
        assert!(err.starts_with("honua:metadata:path:") && err.contains("<dir>/current/metadata.json"), "{err}");
    }

    #[test]
    fn a_dry_run_belongs_to_git_only_mode() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agent.yaml");
        let key = crate::plan::signing::Signer::from_secret(&[7u8; 32]).unwrap().public_key();
        let settings = format!(
            "server: http://127.0.0.1:1\ntoken: t\nenvironment: dev\npublic_key: {key}\ngit_url: https://example.org/r.git\ntarget_dir: /tmp/x\n"
        );
        std::fs::write(&file, &settings).unwrap();
        assert!(AgentArgs::default().resolve(Some(&file)).is_ok());
        std::fs::write(&file, format!("{settings}dry_run: true\n")).unwrap();
        let err = AgentArgs::default().resolve(Some(&file)).unwrap_err().to_string();
        assert!(err.starts_with("HONUA_AGENT_DRY_RUN: a dry run is for Git-only mode"), "{err}");
    }
}
