//! Git-only mode: the `gitops:` block of Honua's own server configuration (see
//! `shared/honua/gitops-sample/gitops/README.md`) with no service. The agent polls the branch, plans the
//! head against what it applied with the policy of what runs (the first time: the head's own), and
//! applies only what that policy approves automatically, inside its deployment windows. Anything that
//! needs an approval waits, said once in the log: approvals need `honua serve`.
//!
//! With `DryRun` (Honua's `GitOps:DryRun`) every new head is planned and reported, what it changes and
//! whether the policy would apply it or wait, and nothing is ever written or reloaded.
//!
//! Nothing is signed in this mode: the agent trusts the branch exactly as far as its Git credentials
//! and the repository's branch protection make it trustworthy.

use chrono::Utc;

use super::{apply_err, Agent, AgentError, PollOutcome};
use crate::config::source::RepoFiles;
use crate::config::{ConfigRepo, EnvName};
use crate::git::mirror::Mirror;
use crate::plan::signing::{ApplySafety, RecordApproval, SignedRecord, RECORD_FORMAT};
use crate::policy::Decision;

/// Where the branch stands for this environment.
enum GitStep {
    /// Nothing new since the last poll.
    Unchanged,
    /// The head changes nothing here: remembered as applied.
    NothingToApply {
        head: String,
    },
    Apply(Box<SignedRecord>),
    Waiting {
        head: String,
        why: String,
    },
    /// A dry run's report of the head.
    DryRun {
        head: String,
        report: String,
    },
}

impl Agent {
    /// One Git-only poll: fetch, plan, apply what the policy approves.
    pub(super) async fn poll_git(&self, branch: &str) -> Result<PollOutcome, AgentError> {
        let state = self.load_state();
        let (dir, url, token, env, branch) = (
            self.mirror_root(),
            self.config.git_url.clone(),
            self.config.git_token.clone(),
            EnvName::new(&self.config.environment),
            branch.to_string(),
        );
        let dry_run = self.config.dry_run;
        let seen = if dry_run { state.dry_run_seen.clone() } else { state.seen.clone() };
        let (applied, sequence) = (state.commit.clone(), state.sequence);
        let step = tokio::task::spawn_blocking(move || -> Result<GitStep, AgentError> {
            let mirror = Mirror::open(&dir, &url).map_err(apply_err)?;
            let reference = format!("refs/heads/{branch}");
            mirror.fetch(&[&reference], token.as_deref()).map_err(apply_err)?;
            let repo = git2::Repository::open_bare(mirror.path()).map_err(|e| apply_err(e.message()))?;
            let head = repo
                .refname_to_id(&reference)
                .map_err(|_| apply_err(format!("branch `{branch}` does not exist at {url}")))?
                .to_string();
            if Some(&head) == applied.as_ref() || Some(&head) == seen.as_ref() {
                return Ok(GitStep::Unchanged);
            }
            let to = ConfigRepo::load_git(mirror.path(), &head).map_err(apply_err)?;
            let from = match &applied {
                Some(commit) => ConfigRepo::load_git(mirror.path(), commit).map_err(apply_err)?,
                None => ConfigRepo::from_files(RepoFiles::default(), String::new()),
            };
            let policy_source = if applied.is_some() { &from } else { &to };
            let now = Utc::now();
            let Some(plan) = crate::plan::build_with_policy(&from, &to, policy_source, Some(&env), now)
                .plans
                .into_iter()
                .find(|p| p.environment == env)
            else {
                return Ok(GitStep::Waiting { head, why: format!("`{env}` does not exist at this commit") });
            };
            if applied.is_some() && !plan.has_changes() {
                return Ok(GitStep::NothingToApply { head });
            }
            if dry_run {
                return Ok(GitStep::DryRun { report: dry_run_report(&plan, &head), head });
            }
            if let Decision::Auto = plan.decision {
            } else {
                let why = plan.decision.reasons().join("; ");
                return Ok(GitStep::Waiting {
                    head,
                    why: format!("it needs an approval ({why}); Git-only mode applies only what the policy approves by itself: run `honua serve` for approvals"),
                });
            }
            if !plan.schedule.allowed_now {
                // Not remembered as seen: the window opens later.
                let why = plan.schedule.reason.clone().unwrap_or_else(|| "outside its deployment windows".into());
                tracing::info!(commit = %head, "waiting: {why}");
                return Ok(GitStep::Unchanged);
            }
            let policy = crate::policy::Policy::of(policy_source).for_env(env.as_str()).0;
            let short = crate::deployment::short_sha(&head);
            Ok(GitStep::Apply(Box::new(SignedRecord {
                format: RECORD_FORMAT.into(),
                deployment: format!("{env}-git-{}-{short}", now.format("%Y%m%d%H%M%S")),
                environment: env.to_string(),
                repository: url,
                commit: head,
                plan_digest: plan.digest,
                approvals: vec![RecordApproval {
                    by: "policy".into(),
                    via: crate::plan::signing::Via::GitOnly,
                    at: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    breaking: false,
                }],
                sequence: sequence + 1,
                safety: Some(ApplySafety::of(&policy)),
            })))
        })
        .await
        .map_err(|e| apply_err(format!("Git task: {e}")))??;

        match step {
            GitStep::Unchanged => Ok(PollOutcome::Unchanged),
            GitStep::NothingToApply { head } => {
                let mut state = self.load_state();
                state.commit = Some(head);
                self.save_state(&state)?;
                Ok(PollOutcome::Unchanged)
            }
            GitStep::DryRun { head, report } => {
                tracing::info!(commit = %head, "dry run, nothing applied: {report}");
                let mut state = self.load_state();
                state.dry_run_seen = Some(head.clone());
                state.last_result = Some(format!("dry run: {report}"));
                self.save_state(&state)?;
                Ok(PollOutcome::DryRun { commit: head, report })
            }
            GitStep::Waiting { head, why } => {
                tracing::warn!(commit = %head, "not applied: {why}");
                let mut state = self.load_state();
                state.seen = Some(head);
                state.last_result = Some(format!("waiting: {why}"));
                self.save_state(&state)?;
                Ok(PollOutcome::Unchanged)
            }
            GitStep::Apply(record) => {
                tracing::info!(commit = %record.commit, deployment = %record.deployment, "applying the branch head");
                let outcome = self.apply_once(&record, None).await;
                if matches!(outcome, Err(AgentError::Crashed(_))) {
                    return outcome;
                }
                let mut state = self.load_state();
                // A rolled-back or refused head is not retried; the next commit is planned against
                // what really runs.
                if matches!(outcome, Ok(PollOutcome::Applied { .. })) {
                    state.commit = Some(record.commit.clone());
                } else {
                    state.seen = Some(record.commit.clone());
                }
                self.save_state(&state)?;
                outcome
            }
        }
    }
}

/// One paragraph a dry run logs for a head: what it changes and what the policy would do with it.
fn dry_run_report(plan: &crate::plan::Plan, head: &str) -> String {
    let short = crate::deployment::short_sha(head);
    let sum = plan.changes.summary;
    let verdict = match &plan.decision {
        Decision::Auto if plan.schedule.allowed_now => "would apply it now".to_string(),
        Decision::Auto => format!(
            "would apply it when its window opens ({})",
            plan.schedule.reason.as_deref().unwrap_or("outside its deployment windows")
        ),
        other => format!("would wait for an approval ({})", other.reasons().join("; ")),
    };
    let mut changes: Vec<String> = plan
        .changes
        .sorted_for_review()
        .iter()
        .map(|c| {
            let breaking = if c.breaking.is_empty() { "" } else { " (breaking)" };
            format!("{} {} {}{breaking}", c.action.as_str(), c.kind.as_str(), c.id)
        })
        .collect();
    const SHOWN: usize = 20;
    if changes.len() > SHOWN {
        let more = changes.len() - SHOWN;
        changes.truncate(SHOWN);
        changes.push(format!("and {more} more"));
    }
    let validation = match (plan.validation.errors, plan.validation.warnings) {
        (0, 0) => String::new(),
        (0, w) => format!("; validation: {w} warning(s)"),
        (e, w) => format!("; validation: {e} error(s), {w} warning(s), so a real run would refuse it"),
    };
    format!(
        "{short} for `{}`: {} added, {} modified, {} removed, {} breaking{validation}; the policy {verdict}{}{}",
        plan.environment,
        sum.added,
        sum.modified,
        sum.removed,
        sum.breaking,
        if changes.is_empty() { "" } else { ": " },
        changes.join(", ")
    )
}
