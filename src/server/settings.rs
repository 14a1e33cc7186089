//! `honua serve` settings: flags, `HONUA_*` environment variables, then an optional YAML file, then
//! defaults. Everything is checked before the service starts, with a sentence naming the setting.
//! Secrets (the webhook secrets, the App key) are never printed: `Debug` redacts them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::github::webhook::WebhookSecret;
pub use crate::settings::SettingError;
use crate::settings::{bad, check_url, layer, read_file, redact_url};

/// Settings as given (any source); `None` means "not given here".
#[derive(Debug, Default, Clone, Serialize, Deserialize, clap::Args)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "HONUA_LISTEN")]
    pub listen: Option<String>,
    /// `sqlite://PATH` (created if missing; the default is sqlite://honua.db) or `postgres://USER@HOST/DB`.
    #[arg(long, env = "HONUA_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Seconds a database statement (or waiting for a connection) may take before it is given up
    /// (default 30): a PostgreSQL that goes silent fails requests and jobs, to be retried, instead of
    /// holding them for the operating system's TCP timeouts (about 15 minutes).
    #[arg(long, env = "HONUA_DATABASE_TIMEOUT")]
    pub database_timeout: Option<u64>,
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
    /// Serve the web pages without a token (default: a viewer token, entered once, is needed).
    #[arg(long, env = "HONUA_PUBLIC_PAGES")]
    pub public_pages: Option<bool>,
    /// Seconds between polls of GitHub for open PRs whose webhook never arrived; 0 turns polling off.
    #[arg(long, env = "HONUA_POLL_INTERVAL")]
    pub poll_interval: Option<u64>,
    /// Jobs processed at once (default 8); with 2 or more, one worker takes only deployment work (pushes,
    /// merged PRs), so PR checks waiting on GitHub never hold back a deployment; 0 runs an ingest-only
    /// replica (webhooks are recorded, other replicas work).
    #[arg(long, env = "HONUA_WORKERS")]
    pub workers: Option<usize>,
    /// Seconds a claimed job belongs to a worker before another replica may take it over (default 120).
    #[arg(long, env = "HONUA_JOB_LEASE")]
    pub job_lease: Option<u64>,
    /// Days a job that ended (done, or failed for good) is kept, with the webhook delivery it ran, before
    /// an hourly sweep deletes it (default 30; 0 keeps every job forever). GitHub redelivers only the
    /// last three days' deliveries.
    #[arg(long, env = "HONUA_JOB_RETENTION_DAYS")]
    pub job_retention_days: Option<u64>,
    /// Seconds GitHub has to accept a connection, and then for each read and write of a request, before
    /// the request fails and its job is retried (default 30).
    #[arg(long, env = "HONUA_GITHUB_TIMEOUT")]
    pub github_timeout: Option<u64>,
    /// Seconds a client has to send its request headers, and that a kept-alive connection may stay idle,
    /// before the connection is closed (default 10).
    #[arg(long, env = "HONUA_HEADER_READ_TIMEOUT")]
    pub header_read_timeout: Option<u64>,
    /// Seconds a client has to send a whole request body, counted from the end of its headers (default 30).
    #[arg(long, env = "HONUA_BODY_READ_TIMEOUT")]
    pub body_read_timeout: Option<u64>,
    /// In GitHub mode, a rollback opens a revert pull request so Git matches what runs (default true).
    #[arg(long, env = "HONUA_ROLLBACK_REVERT_PULL_REQUEST")]
    pub rollback_revert_pull_request: Option<bool>,
    /// Slack-compatible incoming webhook for policy entries `{type: slack, channel: …}` without a URL.
    #[arg(long, env = "HONUA_SLACK_WEBHOOK_URL", hide_env_values = true)]
    pub slack_webhook_url: Option<String>,
    /// Plain-Git mode (no GitHub App): remotes to poll and deploy from, comma-separated,
    /// each `URL` or `URL#branch` (default branch `main`).
    #[arg(long, env = "HONUA_REPOSITORIES")]
    pub repositories: Option<String>,
}

/// Checked settings.
pub struct Settings {
    pub listen: SocketAddr,
    pub database_url: String,
    pub database_timeout: std::time::Duration,
    /// `None` in plain-Git mode.
    pub github: Option<GithubSettings>,
    pub repositories: Vec<crate::controller::DeploySource>,
    pub revert_pull_requests: bool,
    /// A secret (the URL is the credential): never printed.
    pub slack_webhook_url: Option<String>,
    pub webhook_secrets: Vec<WebhookSecret>,
    pub git_url: String,
    pub data_dir: PathBuf,
    pub public_url: Option<String>,
    /// The web pages need no token.
    pub public_pages: bool,
    pub workers: usize,
    pub job_lease: std::time::Duration,
    /// How long an ended job is kept; `None`: forever.
    pub job_retention: Option<std::time::Duration>,
    pub header_read_timeout: std::time::Duration,
    pub body_read_timeout: std::time::Duration,
    /// `None`: polling off.
    pub poll_interval: Option<std::time::Duration>,
}

pub struct GithubSettings {
    pub app_id: u64,
    pub private_key: Vec<u8>,
    pub api_url: String,
    pub timeout: std::time::Duration,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("database_url", &redact_url(&self.database_url))
            .field("database_timeout", &self.database_timeout)
            .field("github_app_id", &self.github.as_ref().map(|g| g.app_id))
            .field("github_api_url", &self.github.as_ref().map(|g| g.api_url.as_str()))
            .field("repositories", &self.repositories.iter().map(|r| r.repository.as_str()).collect::<Vec<_>>())
            .field("webhook_secrets", &format!("<{} secret(s)>", self.webhook_secrets.len()))
            .field("git_url", &self.git_url)
            .field("data_dir", &self.data_dir)
            .field("workers", &self.workers)
            .field("poll_interval", &self.poll_interval)
            .field("job_retention", &self.job_retention)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("body_read_timeout", &self.body_read_timeout)
            .finish()
    }
}

impl Settings {
    /// Resolves flags/environment, then `config` (a YAML file with the same names in snake_case), then
    /// defaults, and checks everything.
    pub fn resolve(given: ServeArgs, config: Option<&Path>) -> Result<Settings, SettingError> {
        let from_file = match config {
            Some(path) => load_file(path)?,
            None => ServeArgs::default(),
        };
        let a = layer(given, from_file);
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
        let repositories = parse_repositories(a.repositories.as_deref().unwrap_or_default())?;
        let (github, webhook_secrets) = match a.github_app_id {
            Some(app_id) => {
                let key_path = a.github_private_key_path.ok_or_else(|| {
                    bad("HONUA_GITHUB_PRIVATE_KEY_PATH", "not set; give the path of the App's private key (PEM)")
                })?;
                let private_key = std::fs::read(&key_path).map_err(|e| {
                    bad("HONUA_GITHUB_PRIVATE_KEY_PATH", format!("cannot read {}: {e}", key_path.display()))
                })?;
                if jsonwebtoken::EncodingKey::from_rsa_pem(&private_key).is_err() {
                    return Err(bad(
                        "HONUA_GITHUB_PRIVATE_KEY_PATH",
                        format!("{} is not an RSA private key in PEM form", key_path.display()),
                    ));
                }
                let webhook_secrets =
                    WebhookSecret::parse_list(a.github_webhook_secret.as_deref().unwrap_or_default());
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
                let timeout = std::time::Duration::from_secs(a.github_timeout.unwrap_or(30).max(1));
                (Some(GithubSettings { app_id, private_key, api_url, timeout }), webhook_secrets)
            }
            None if repositories.is_empty() => {
                return Err(bad(
                    "HONUA_GITHUB_APP_ID",
                    "not set; register a GitHub App (see deploy/) and give its id, or run in plain-Git mode with HONUA_REPOSITORIES=URL[#branch],…",
                ))
            }
            // Plain-Git mode: no App, no webhooks (every delivery is refused as unsigned).
            None => (None, Vec::new()),
        };
        let git_url = check_url(
            "HONUA_GIT_URL",
            a.git_url.as_deref().unwrap_or("https://github.com"),
            &["https", "http", "file"],
        )?;
        let public_url = a.public_url.map(|u| check_url("HONUA_PUBLIC_URL", &u, &["https", "http"])).transpose()?;
        // Jobs mostly wait on GitHub and Git: with 2, two PR jobs waiting on a faulty GitHub held the
        // queue (20,000 jobs behind them under `benches/load.sh webhooks-faults`); with 8, none.
        let workers = a.workers.unwrap_or(8);
        if workers > 64 {
            return Err(bad("HONUA_WORKERS", format!("{workers}: give 0 (ingest only) to 64")));
        }
        let job_retention = match a.job_retention_days.unwrap_or(30) {
            0 => None,
            days @ 1..=36_500 => Some(std::time::Duration::from_secs(days * 86_400)),
            days => {
                return Err(bad(
                    "HONUA_JOB_RETENTION_DAYS",
                    format!("{days}: give 1 to 36500 days, or 0 to keep every job"),
                ))
            }
        };
        Ok(Settings {
            listen,
            database_url,
            database_timeout: std::time::Duration::from_secs(a.database_timeout.unwrap_or(30).max(1)),
            github,
            repositories,
            revert_pull_requests: a.rollback_revert_pull_request.unwrap_or(true),
            slack_webhook_url: a
                .slack_webhook_url
                .map(|u| check_url("HONUA_SLACK_WEBHOOK_URL", &u, &["https", "http"]))
                .transpose()?,
            webhook_secrets,
            git_url,
            data_dir: a.data_dir.unwrap_or_else(|| PathBuf::from("honua-data")),
            public_url,
            public_pages: a.public_pages.unwrap_or(false),
            workers,
            job_lease: std::time::Duration::from_secs(a.job_lease.unwrap_or(120).max(5)),
            job_retention,
            header_read_timeout: std::time::Duration::from_secs(a.header_read_timeout.unwrap_or(10).max(1)),
            body_read_timeout: std::time::Duration::from_secs(a.body_read_timeout.unwrap_or(30).max(1)),
            poll_interval: match a.poll_interval.unwrap_or(60) {
                0 => None,
                secs => Some(std::time::Duration::from_secs(secs)),
            },
        })
    }
}

/// `URL[#branch],…` → the remotes of plain-Git mode. A remote is known by its URL without credentials.
fn parse_repositories(text: &str) -> Result<Vec<crate::controller::DeploySource>, SettingError> {
    let mut out = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (url, branch) = entry.split_once('#').unwrap_or((entry, "main"));
        let mut parsed = url::Url::parse(url)
            .map_err(|e| bad("HONUA_REPOSITORIES", format!("`{}` is not a URL ({e})", redact_url(url))))?;
        if !["https", "http", "file"].contains(&parsed.scheme()) {
            return Err(bad(
                "HONUA_REPOSITORIES",
                format!("`{}`: use an https://, http:// or file:// URL", redact_url(url)),
            ));
        }
        if branch.is_empty() || branch.contains("..") || branch.starts_with('-') || branch.contains(char::is_whitespace)
        {
            return Err(bad("HONUA_REPOSITORIES", format!("`{branch}` is not a branch name")));
        }
        let _ = parsed.set_password(None);
        let _ = parsed.set_username("");
        out.push(crate::controller::DeploySource {
            repository: parsed.to_string().trim_end_matches('/').to_string(),
            url: url.to_string(),
            branch: branch.to_string(),
        });
    }
    Ok(out)
}

fn load_file(path: &Path) -> Result<ServeArgs, SettingError> {
    serde_json::from_value(read_file(path)?).map_err(|e| bad("--config", format!("{}: {e}", path.display())))
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
                "listen: 0.0.0.0:9000\ngithub_app_id: 11\ngithub_private_key_path: {}\ngithub_webhook_secret: from-file\nworkers: 4\ndatabase_timeout: 5\n",
                key_path().display()
            ),
        )
        .unwrap();
        let given =
            ServeArgs { workers: Some(1), github_webhook_secret: Some("new,old".into()), ..ServeArgs::default() };
        let s = Settings::resolve(given, Some(&file)).unwrap();
        assert_eq!(s.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(s.github.as_ref().unwrap().app_id, 11);
        assert_eq!(s.workers, 1, "the flag wins");
        assert_eq!(s.webhook_secrets.len(), 2, "the flag wins");
        assert_eq!(s.database_url, "sqlite://honua.db");
        assert_eq!(s.database_timeout, std::time::Duration::from_secs(5), "from the file");
        assert_eq!(s.github.as_ref().unwrap().api_url, "https://api.github.com");
        assert_eq!(s.poll_interval, Some(std::time::Duration::from_secs(60)));
        assert_eq!(s.job_retention, Some(std::time::Duration::from_secs(30 * 86_400)), "30 days by default");
        let shown = format!("{s:?}");
        assert!(!shown.contains("new") && !shown.contains("BEGIN"), "secrets are not printed: {shown}");
    }

    #[test]
    fn job_retention_is_days_and_zero_keeps_every_job() {
        let github = |days| ServeArgs {
            github_app_id: Some(1),
            github_private_key_path: Some(key_path()),
            github_webhook_secret: Some("s".into()),
            job_retention_days: Some(days),
            ..ServeArgs::default()
        };
        let resolved = |days| Settings::resolve(github(days), None).map(|s| s.job_retention);
        assert_eq!(resolved(7).unwrap(), Some(std::time::Duration::from_secs(7 * 86_400)));
        assert_eq!(resolved(0).unwrap(), None);
        let err = resolved(36_501).unwrap_err().to_string();
        assert!(err.contains("HONUA_JOB_RETENTION_DAYS") && err.contains("0 to keep every job"), "{err}");
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
    fn plain_git_mode_needs_no_app_and_names_remotes_without_credentials() {
        let given = ServeArgs {
            repositories: Some(
                "https://bot:t0ken@git.example.org/gis/config.git#release, file:///srv/config.git".into(),
            ),
            ..ServeArgs::default()
        };
        let s = Settings::resolve(given, None).unwrap();
        assert!(s.github.is_none());
        assert_eq!(s.database_timeout, std::time::Duration::from_secs(30), "the default");
        assert_eq!(s.repositories.len(), 2);
        assert_eq!(s.repositories[0].repository, "https://git.example.org/gis/config.git");
        assert_eq!(s.repositories[0].branch, "release");
        assert_eq!(s.repositories[1].branch, "main");
        assert!(!format!("{s:?}").contains("t0ken"));
        let err = Settings::resolve(ServeArgs { repositories: Some("ssh://x/y".into()), ..ServeArgs::default() }, None)
            .err()
            .unwrap();
        assert!(err.to_string().starts_with("HONUA_REPOSITORIES:"), "{err}");
    }

    #[test]
    fn database_passwords_are_redacted() {
        assert_eq!(redact_url("postgres://honua:s3cret@db/honua"), "postgres://honua:***@db/honua");
    }
}
