//! Notifications from the policy's `notifications` block (`onApprovalRequired`, `onDeploymentCompleted`,
//! `onDeploymentFailed`). Messages go through an outbox in the store: queued when a deployment reaches
//! a state that calls for them, delivered afterwards with retries and backoff, never in the way of the
//! deployment itself. Slack-compatible entries post to the entry's `webhookUrl` (or the service's
//! `HONUA_SLACK_WEBHOOK_URL`, with the entry's `channel`), `webhook` entries post JSON to their `url`;
//! `${VAR}` in a URL is read from the service's environment. Entries without a transport here (e-mail,
//! PagerDuty) are recorded as undeliverable, with the reason, instead of being dropped.

use std::time::Duration;

use serde_json::{json, Value};

use super::JobError;
use crate::policy::{NotificationEntry, NotificationEvent};
use crate::store::{Deployment, DeploymentState, NewAudit, NewNotification, NotificationOutcome, Store};

/// Attempts before a message is marked failed; waits double from 10 s up to an hour.
const MAX_ATTEMPTS: i64 = 8;

fn retry_wait(attempts: i64) -> Duration {
    Duration::from_secs((10u64 << attempts.clamp(0, 12)).min(3600))
}

fn event_of(state: DeploymentState) -> Option<NotificationEvent> {
    match state {
        DeploymentState::AwaitingApproval | DeploymentState::Blocked => Some(NotificationEvent::ApprovalRequired),
        DeploymentState::Completed => Some(NotificationEvent::DeploymentCompleted),
        DeploymentState::Failed | DeploymentState::RolledBack => Some(NotificationEvent::DeploymentFailed),
        _ => None,
    }
}

/// Why a notification URL's placeholders could not be filled in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceholderError {
    #[error("`${{{0}}}` is not set in the service's environment")]
    Unset(String),
    #[error("the URL has an unclosed `${{` (a placeholder without its `}}`)")]
    Unclosed,
}

/// `${VAR}` placeholders from the environment; the first missing one, or an unclosed `${`, otherwise.
pub fn resolve_placeholders(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<String, PlaceholderError> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            return Err(PlaceholderError::Unclosed);
        };
        let name = &rest[start + 2..start + end];
        out.push_str(&env(name).ok_or_else(|| PlaceholderError::Unset(name.to_string()))?);
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A Slack message: reasons quote the repository's content, so everything but our own markup is escaped.
/// `github`: the service runs as a GitHub App, so a pull request can be approved by comment; in plain-Git
/// mode only the CLI (or the API) approves.
fn text(d: &Deployment, event: NotificationEvent, github: bool) -> String {
    use crate::markdown::slack_text;
    let head = format!(
        "*{}* deployment `{}` of {} at `{}`",
        slack_text(&d.environment),
        d.id,
        slack_text(&d.repository),
        d.commit.short()
    );
    match event {
        NotificationEvent::ApprovalRequired => {
            let breaking = if d.gate == crate::deployment::Gate::Breaking { " --breaking" } else { "" };
            let how = if github {
                format!(
                    "`/honua approve {}{breaking}` on the pull request or `honua deployment approve {}{breaking}`",
                    d.environment, d.id
                )
            } else {
                format!("`honua deployment approve {}{breaking}`", d.id)
            };
            format!(
                "🟡 {head} {}: {}. Approve with {how}.",
                if d.state == DeploymentState::Blocked { "is blocked" } else { "awaits approval" },
                slack_text(&d.reasons.join("; ")),
            )
        }
        NotificationEvent::DeploymentCompleted => format!("✅ {head} completed."),
        NotificationEvent::DeploymentFailed => format!("❌ {head} {}.", d.state.as_str().replace('_', " ")),
    }
}

/// Queues and delivers notifications; what it needs besides the store.
pub struct Notifier {
    http: reqwest::Client,
    /// Slack-compatible incoming webhook for `type: slack` entries that name only a channel.
    slack_webhook: Option<String>,
    /// Whether decisions are taken on pull requests (GitHub mode) or by API: the hints name the way.
    github_mode: bool,
}

impl Notifier {
    pub fn new(slack_webhook: Option<String>, github_mode: bool) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .user_agent("honua-gitops")
            .build()
            .expect("the HTTP client builds");
        Notifier { http, slack_webhook, github_mode }
    }

    /// Queues the messages the policy asks for, for each deployment of `repository` whose state has
    /// not been considered yet.
    pub async fn queue(&self, store: &dyn Store, repository: &str) -> Result<(), JobError> {
        let now = crate::store::now_ms();
        for (d, block) in store.unnotified(repository, 200).await? {
            let mut messages = Vec::new();
            if let Some(event) = event_of(d.state) {
                // An entry of the wrong shape is kept (with nothing set), as undeliverable, rather than
                // dropped.
                for entry in block.entries(event) {
                    messages.push(self.message(&d, event, entry));
                }
            }
            for m in messages.iter().filter(|m| m.undeliverable.is_some()) {
                let entry = NewAudit {
                    actor: "service".into(),
                    action: "notification.undeliverable".into(),
                    repository: Some(d.repository.clone()),
                    environment: Some(d.environment.clone()),
                    deployment: Some(d.id.clone()),
                    message: format!("{} {}: {}", m.event, m.kind, m.undeliverable.as_deref().unwrap_or_default()),
                };
                store.record_audit(&entry, now).await?;
            }
            store.queue_notifications(&d.id, d.state, &messages, now).await?;
        }
        Ok(())
    }

    fn message(&self, d: &Deployment, event: NotificationEvent, entry: &NotificationEntry) -> NewNotification {
        let kind = entry.kind.clone().unwrap_or_else(|| "unknown".into());
        let text = text(d, event, self.github_mode);
        let mut message = NewNotification {
            event: event.as_str().into(),
            kind: kind.clone(),
            url: None,
            payload: Value::Null,
            undeliverable: None,
        };
        let url = entry.webhook_url.clone().or_else(|| entry.url.clone());
        let url = match (kind.as_str(), url) {
            ("slack", Some(url)) | ("webhook", Some(url)) => Some(url),
            ("slack", None) => self.slack_webhook.clone(),
            _ => None,
        };
        match (kind.as_str(), url) {
            ("slack" | "webhook", Some(url)) => match resolve_placeholders(&url, |name| std::env::var(name).ok()) {
                Ok(url) => {
                    message.url = Some(url);
                    message.payload = if kind == "slack" {
                        json!(SlackMessage { text: &text, channel: entry.channel.as_deref() })
                    } else {
                        json!({
                            "event": event.as_str(),
                            "text": text,
                            "deployment": {
                                "id": d.id, "repository": d.repository, "environment": d.environment,
                                "commit": d.commit, "state": d.state, "reasons": d.reasons,
                            },
                        })
                    };
                }
                Err(problem) => message.undeliverable = Some(format!("not delivered: {problem}")),
            },
            ("slack", None) => {
                message.undeliverable = Some(
                    "not delivered: no Slack webhook URL (give `webhookUrl` or set HONUA_SLACK_WEBHOOK_URL)".into(),
                )
            }
            ("webhook", None) => message.undeliverable = Some("not delivered: the webhook entry has no `url`".into()),
            (other, _) => message.undeliverable = Some(format!("not delivered: no transport configured for `{other}`")),
        }
        if message.payload.is_null() {
            message.payload = json!({ "text": text });
        }
        message
    }

    /// Sends the messages that are due; each failure is retried later, and after the last attempt the
    /// message is marked failed and audited. Returns how many were sent.
    pub async fn deliver(&self, store: &dyn Store) -> Result<usize, JobError> {
        let now = crate::store::now_ms();
        let due = store.claim_notifications(now, 60_000, 20).await?;
        let mut sent = 0;
        for n in due {
            let Some(url) = n.url.as_deref() else { continue };
            let body: Value = serde_json::from_str(&n.payload).unwrap_or(Value::Null);
            let result = self.http.post(url).json(&body).send().await;
            let error = match result {
                Ok(r) if r.status().is_success() => None,
                Ok(r) => Some(format!("HTTP {}", r.status().as_u16())),
                // Without the URL: it may hold a secret.
                Err(e) => Some(if e.is_timeout() { "timed out".into() } else { "connection failed".into() }),
            };
            let now = crate::store::now_ms();
            match error {
                None => {
                    sent += 1;
                    metrics::counter!("honua_notifications_total", "kind" => n.kind.clone(), "outcome" => "sent")
                        .increment(1);
                    store.notification_attempted(n.id, NotificationOutcome::Sent, now).await?;
                }
                Some(error) if n.attempts + 1 >= MAX_ATTEMPTS => {
                    metrics::counter!("honua_notifications_total", "kind" => n.kind.clone(), "outcome" => "failed")
                        .increment(1);
                    store.notification_attempted(n.id, NotificationOutcome::Failed { error: &error }, now).await?;
                    let entry = NewAudit {
                        actor: "service".into(),
                        action: "notification.failed".into(),
                        deployment: Some(n.deployment.as_str().into()),
                        message: format!("{} {} not delivered after {MAX_ATTEMPTS} attempts: {error}", n.event, n.kind),
                        ..NewAudit::default()
                    };
                    store.record_audit(&entry, now).await?;
                }
                Some(error) => {
                    metrics::counter!("honua_notifications_total", "kind" => n.kind.clone(), "outcome" => "retry")
                        .increment(1);
                    let at = now + retry_wait(n.attempts).as_millis() as i64;
                    store.notification_attempted(n.id, NotificationOutcome::Retry { at, error: &error }, now).await?;
                }
            }
        }
        Ok(sent)
    }
}

/// A Slack-compatible incoming-webhook message; without a channel, the webhook's own.
#[derive(serde::Serialize)]
struct SlackMessage<'a> {
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_resolve_from_the_environment_and_name_what_is_missing() {
        let env = |name: &str| (name == "HOOK").then(|| "T00/B00/x".to_string());
        assert_eq!(
            resolve_placeholders("https://hooks.example/${HOOK}", env).unwrap(),
            "https://hooks.example/T00/B00/x"
        );
        let missing = resolve_placeholders("https://x/${NOPE}", env).unwrap_err();
        assert_eq!(missing, PlaceholderError::Unset("NOPE".into()));
        assert_eq!(missing.to_string(), "`${NOPE}` is not set in the service's environment");
        let unclosed = resolve_placeholders("https://x/${HOOK", env).unwrap_err();
        assert_eq!(unclosed, PlaceholderError::Unclosed, "not taken for a variable's name");
        assert_eq!(resolve_placeholders("plain", env).unwrap(), "plain");
    }

    #[test]
    fn the_approval_hint_names_a_command_of_the_mode_the_service_runs_in() {
        let d = Deployment {
            id: "prod-20261201101500-a1b2c3d".into(),
            repository: "https://git.example.org/gis-config.git".into(),
            environment: "production".into(),
            sequence: 3,
            commit: "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678".into(),
            from_commit: None,
            plan_digest: "sha256:0".into(),
            plan: Value::Null,
            state: DeploymentState::Blocked,
            gate: crate::deployment::Gate::Breaking,
            reasons: vec!["1 breaking change(s)".into()],
            windows: Default::default(),
            safety: None,
            cause: crate::deployment::Cause::Push,
            signed: None,
            expires_at: None,
            created_at: 0,
            updated_at: 0,
        };
        let plain = text(&d, NotificationEvent::ApprovalRequired, false);
        assert!(plain.contains("`honua deployment approve prod-20261201101500-a1b2c3d --breaking`"), "{plain}");
        assert!(!plain.contains("/honua") && !plain.contains("pull request"), "{plain}");
        let app = text(&d, NotificationEvent::ApprovalRequired, true);
        assert!(app.contains("`/honua approve production --breaking` on the pull request"), "{app}");
    }

    #[test]
    fn retries_back_off_up_to_an_hour() {
        assert_eq!(retry_wait(0), Duration::from_secs(10));
        assert_eq!(retry_wait(1), Duration::from_secs(20));
        assert_eq!(retry_wait(20), Duration::from_secs(3600));
    }
}
