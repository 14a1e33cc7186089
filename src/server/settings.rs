//! `honua serve` settings: flags, `HONUA_*` environment variables, then an optional YAML file, then
//! defaults. Everything is checked before the service starts, with a sentence naming the setting.
//! Secrets (the webhook secrets, the App key) are never printed: `Debug` redacts them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::github::webhook::WebhookSecret;

/// Settings as given (any source); `None` means "not given here".
#[derive(Debug, Default, Clone, Deserialize, clap::Args)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "HONUA_LISTEN")]
    pub listen: Option<String>,
    /// `sqlite://PATH` (created if missing; the default is sqlite://honua.db) or `postgres://USER@HOST/DB`.
    #[arg(long, env = "HONUA_DATABASE_URL")]
    pub database_url: Option<String>,
    /// The GitHub App's id.
    #[arg(long, env = "HONUA_GITHUB_APP_ID")]
    pub github_app_id: Option<u64>,
    /// The App's private key (PEM).
    #[arg(long, env = "HONUA_GITHUB_PRIVATE_KEY_PATH")]
    pub github_private_key_path: Option<PathBuf>,
    /// Webhook secret(s), comma-separated: several are accepted during a rotation.
    #[arg(long, env = "HONUA_GITHUB_WEBHOOK_SECRET", hide_env_values = true)]
    pub github_webhook_secret: Option<String>,
    /// GitHub API base (GitHub Enterprise: https://HOST/api/v3).
    #[arg(long, env = "HONUA_GITHUB_API_URL")]
    pub github_api_url: Option<String>,
    /// Base of clone URLs: `owner/name` is fetched from `{git_url}/owner/name.git`.
    #[arg(long, env = "HONUA_GIT_URL")]
    pub git_url: Option<String>,
    /// Where the service keeps its Git mirrors.
    #[arg(long, env = "HONUA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The service's public URL, linked from check runs.
    #[arg(long, env = "HONUA_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Seconds between polls of GitHub for open PRs whose webhook never arrived; 0 turns polling off.
    #[arg(long, env = "HONUA_POLL_INTERVAL")]
    pub poll_interval: Option<u64>,
    /// Jobs processed at once; 0 runs an ingest-only replica (webhooks are recorded, other replicas work).
    #[arg(long, env = "HONUA_WORKERS")]
    pub workers: Option<usize>,
}

impl ServeArgs {
    /// Fills what is not given here from `other` (flags and environment win over the file).
    fn or(self, other: ServeArgs) -> ServeArgs {
        ServeArgs {
            listen: self.listen.or(other.listen),
            database_url: self.database_url.or(other.database_url),
            github_app_id: self.github_app_id.or(other.github_app_id),
            github_private_key_path: self.github_private_key_path.or(other.github_private_key_path),
            github_webhook_secret: self.github_webhook_secret.or(other.github_webhook_secret),
            github_api_url: self.github_api_url.or(other.github_api_url),
            git_url: self.git_url.or(other.git_url),
            data_dir: self.data_dir.or(other.data_dir),
            public_url: self.public_url.or(other.public_url),
            workers: self.workers.or(other.workers),
            poll_interval: self.poll_interval.or(other.poll_interval),
        }
    }
}

/// Checked settings.
pub struct Settings {
    pub listen: SocketAddr,
    pub database_url: String,
    pub github: GithubSettings,
    pub webhook_secrets: Vec<WebhookSecret>,
    pub git_url: String,
    pub data_dir: PathBuf,
    pub public_url: Option<String>,
    pub workers: usize,
    /// `None`: polling off.
    pub poll_interval: Option<std::time::Duration>,
}

pub struct GithubSettings {
    pub app_id: u64,
    pub private_key: Vec<u8>,
    pub api_url: String,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("database_url", &redact_url(&self.database_url))
            .field("github_app_id", &self.github.app_id)
            .field("github_api_url", &self.github.api_url)
            .field("webhook_secrets", &format!("<{} secret(s)>", self.webhook_secrets.len()))
            .field("git_url", &self.git_url)
            .field("data_dir", &self.data_dir)
            .field("workers", &self.workers)
            .field("poll_interval", &self.poll_interval)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{setting}: {problem}")]
pub struct SettingsError {
    pub setting: &'static str,
    pub problem: String,
}

fn bad(setting: &'static str, problem: impl Into<String>) -> SettingsError {
    SettingsError { setting, problem: problem.into() }
}

fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

fn check_url(setting: &'static str, value: &str, schemes: &[&str]) -> Result<String, SettingsError> {
    let parsed = url::Url::parse(value).map_err(|e| bad(setting, format!("`{value}` is not a URL ({e})")))?;
    if !schemes.contains(&parsed.scheme()) {
        return Err(bad(setting, format!("`{value}`: use one of {}", schemes.join(", "))));
    }
    Ok(value.trim_end_matches('/').to_string())
}

impl Settings {
    /// Resolves flags/environment, then `config` (a YAML file with the same names in snake_case), then
    /// defaults, and checks everything.
    pub fn resolve(given: ServeArgs, config: Option<&Path>) -> Result<Settings, SettingsError> {
        let from_file = match config {
            Some(path) => load_file(path)?,
            None => ServeArgs::default(),
        };
        let a = given.or(from_file);
        let listen_text = a.listen.unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen = listen_text
            .parse()
            .map_err(|_| bad("HONUA_LISTEN", format!("`{listen_text}` is not an address such as 127.0.0.1:8080")))?;
        let database_url = a.database_url.unwrap_or_else(|| "sqlite://honua.db".into());
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(bad(
                "HONUA_DATABASE_URL",
                format!("`{}`: use sqlite://PATH or postgres://USER@HOST/DB", redact_url(&database_url)),
            ));
        }
        let app_id = a.github_app_id.ok_or_else(|| {
            bad("HONUA_GITHUB_APP_ID", "not set; register a GitHub App (see deploy/) and give its id (plain-Git mode without an App is not available yet)")
        })?;
        let key_path = a.github_private_key_path.ok_or_else(|| {
            bad("HONUA_GITHUB_PRIVATE_KEY_PATH", "not set; give the path of the App's private key (PEM)")
        })?;
        let private_key = std::fs::read(&key_path)
            .map_err(|e| bad("HONUA_GITHUB_PRIVATE_KEY_PATH", format!("cannot read {}: {e}", key_path.display())))?;
        if jsonwebtoken::EncodingKey::from_rsa_pem(&private_key).is_err() {
            return Err(bad(
                "HONUA_GITHUB_PRIVATE_KEY_PATH",
                format!("{} is not an RSA private key in PEM form", key_path.display()),
            ));
        }
        let webhook_secrets = WebhookSecret::parse_list(a.github_webhook_secret.as_deref().unwrap_or_default());
        if webhook_secrets.is_empty() {
            return Err(bad(
                "HONUA_GITHUB_WEBHOOK_SECRET",
                "not set; give the App's webhook secret (comma-separated to accept several during a rotation)",
            ));
        }
        let api_url = check_url(
            "HONUA_GITHUB_API_URL",
            a.github_api_url.as_deref().unwrap_or("https://api.github.com"),
            &["https", "http"],
        )?;
        let git_url = check_url(
            "HONUA_GIT_URL",
            a.git_url.as_deref().unwrap_or("https://github.com"),
            &["https", "http", "file"],
        )?;
        let public_url = a.public_url.map(|u| check_url("HONUA_PUBLIC_URL", &u, &["https", "http"])).transpose()?;
        let workers = a.workers.unwrap_or(2);
        if workers > 64 {
            return Err(bad("HONUA_WORKERS", format!("{workers}: give 0 (ingest only) to 64")));
        }
        Ok(Settings {
            listen,
            database_url,
            github: GithubSettings { app_id, private_key, api_url },
            webhook_secrets,
            git_url,
            data_dir: a.data_dir.unwrap_or_else(|| PathBuf::from("honua-data")),
            public_url,
            workers,
            poll_interval: match a.poll_interval.unwrap_or(60) {
                0 => None,
                secs => Some(std::time::Duration::from_secs(secs)),
            },
        })
    }
}

fn load_file(path: &Path) -> Result<ServeArgs, SettingsError> {
    let bytes = std::fs::read(path).map_err(|e| bad("--config", format!("cannot read {}: {e}", path.display())))?;
    let text = crate::config::yaml::decode(&bytes).map_err(|e| bad("--config", format!("{}: {e}", path.display())))?;
    let node = crate::config::yaml::parse(text, crate::config::node::FileId(0))
        .map_err(|e| bad("--config", format!("{}:{e}", path.display())))?;
    serde_json::from_value(node.to_json()).map_err(|e| bad("--config", format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/test-app-key.pem")
    }

    #[test]
    fn flags_win_over_the_file_and_defaults_fill_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("server.yaml");
        std::fs::write(
            &file,
            format!(
                "listen: 0.0.0.0:9000\ngithub_app_id: 11\ngithub_private_key_path: {}\ngithub_webhook_secret: from-file\nworkers: 4\n",
                key_path().display()
            ),
        )
        .unwrap();
        let given =
            ServeArgs { workers: Some(1), github_webhook_secret: Some("new,old".into()), ..ServeArgs::default() };
        let s = Settings::resolve(given, Some(&file)).unwrap();
        assert_eq!(s.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(s.github.app_id, 11);
        assert_eq!(s.workers, 1, "the flag wins");
        assert_eq!(s.webhook_secrets.len(), 2, "the flag wins");
        assert_eq!(s.database_url, "sqlite://honua.db");
        assert_eq!(s.github.api_url, "https://api.github.com");
        assert_eq!(s.poll_interval, Some(std::time::Duration::from_secs(60)));
        let shown = format!("{s:?}");
        assert!(!shown.contains("new") && !shown.contains("BEGIN"), "secrets are not printed: {shown}");
    }

    #[test]
    fn an_unknown_key_in_the_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("server.yaml");
        std::fs::write(&file, "listn: 0.0.0.0:9000\n").unwrap();
        let err = Settings::resolve(ServeArgs::default(), Some(&file)).unwrap_err();
        assert!(err.to_string().contains("unknown field `listn`"), "{err}");
    }

    #[test]
    fn database_passwords_are_redacted() {
        assert_eq!(redact_url("postgres://honua:s3cret@db/honua"), "postgres://honua:***@db/honua");
    }
}
