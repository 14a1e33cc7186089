//! Comment commands on pull requests. The commenter is authorised by the collaborator-permission API
//! (write, maintain or admin) or by the environment's `approvers` in the policy that judges the change
//! (the base branch for an open PR, what the environment runs for a deployment). On an open PR an
//! approval binds to the plan of its head: a push invalidates it, and at merge it carries to the
//! deployment of the merge commit only when that deployment changes and decides exactly the same.
//! Every command is answered with a reaction and a reply that says what happened or why not.
//!
//! The handler takes what it works with explicitly ([`Comments`]), as the pull-request handlers do.

use chrono::Utc;

use super::decisions::{AfterDecision, Decisions};
use super::pulls::PullRequests;
use super::{JobError, Mirrors};
use crate::config::ConfigRepo;
use crate::deployment::short_sha as short;
use crate::deployment::{PrInvalidation, Via};
use crate::github::checks::plan_comment;
use crate::github::client::{GithubRepo, PullRequestHeads};
use crate::github::commands::{CommentCommand, HELP};
use crate::github::webhook::RepoRef;
use crate::markdown;
use crate::policy::{Decision, EnvironmentPolicy, Policy};
use crate::store::{Deployment, DeploymentFilter, DeploymentState, NewAudit, PrApproval, Store};

/// Marks the service's replies (never a command: commands start a line with `/honua`).
pub const REPLY_MARKER: &str = "<!-- honua-gitops:reply -->";

pub(super) struct CommentEvent {
    pub repo: RepoRef,
    pub number: u64,
    pub on_pull_request: bool,
    pub comment_id: u64,
    pub author: String,
    pub author_is_bot: bool,
    pub edited: bool,
}

/// One line of a reply, per environment.
struct Outcome {
    ok: bool,
    line: String,
}

impl Outcome {
    fn done(line: String) -> Self {
        Outcome { ok: true, line: format!("✅ {line}") }
    }
    fn refused(line: String) -> Self {
        Outcome { ok: false, line: format!("❌ {line}") }
    }
    fn note(line: String) -> Self {
        Outcome { ok: false, line: format!("ℹ️ {line}") }
    }
}

/// Why a commenter may not decide for an environment, in words for the PR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum Refusal {
    #[error("bots cannot approve or reject deployments")]
    Bot,
    #[error("you opened this pull request, and `{env}` has `preventSelfApproval`: another approver must decide")]
    SelfApproval { env: String },
    #[error("your role on {repo} is `{role}`; deciding for `{env}` needs write, maintain or admin, or a place in its `approvers`")]
    Role { repo: String, role: String, env: String },
}

/// What the comment commands work with, for the repository `gh` speaks to.
pub(crate) struct Comments<'a> {
    pub store: &'a dyn Store,
    /// The policy a deployment is judged by is read from the mirror; a promotion is made on it.
    pub mirrors: &'a Mirrors,
    pub gh: &'a GithubRepo,
    /// Base of the service's public URL, for the plan comment's links.
    pub public_url: Option<&'a str>,
    pub decisions: Decisions<'a>,
    pub after: &'a dyn AfterDecision,
}

impl Comments<'_> {
    /// The pull-request handlers, over the same store, mirrors and repository.
    fn pull_requests(&self) -> PullRequests<'_> {
        PullRequests { store: self.store, mirrors: self.mirrors, gh: self.gh, public_url: self.public_url }
    }

    /// Runs `command`, parsed from the comment `c`, and answers it.
    pub async fn handle(&self, c: CommentEvent, command: CommentCommand) -> Result<(), JobError> {
        let gh = self.gh;
        if c.edited {
            return self
                .answer(
                    &c,
                    "confused",
                    "an edited comment is never a command: nothing was done. Post the command as a new comment.",
                )
                .await;
        }
        if !c.on_pull_request {
            return self.answer(&c, "confused", "Honua commands work on pull requests of the config repository.").await;
        }
        match command {
            CommentCommand::Help => self.answer(&c, "+1", HELP).await,
            CommentCommand::Invalid(why) => {
                self.answer(&c, "confused", &format!("{}.\n\n{HELP}", markdown::prose(&why))).await
            }
            CommentCommand::Plan => {
                let pr = gh.pull_request(c.number).await?;
                if !pr.open {
                    return self.answer(&c, "confused", "this pull request is closed: there is nothing to plan.").await;
                }
                gh.react(c.comment_id, "eyes").await?;
                let retry = super::worker::retrying();
                self.pull_requests().check(&c.repo, c.number, &pr.head_sha, &pr.base_ref, retry).await?;
                gh.react(c.comment_id, "+1").await?;
                Ok(())
            }
            CommentCommand::Approve { environments, breaking } => {
                let pr = gh.pull_request(c.number).await?;
                let outcomes = if pr.open {
                    self.approve_open_pr(&c, &pr, &environments, breaking).await?
                } else if pr.merged {
                    self.decide_merged_pr(&c, &pr, &environments, Decide::Approve { breaking }).await?
                } else {
                    vec![Outcome::note(
                        "this pull request was closed without merging: there is nothing to approve.".into(),
                    )]
                };
                self.after.decided(&c.repo.full_name()).await;
                self.answer_outcomes(&c, outcomes).await
            }
            CommentCommand::Promote { from, to } => {
                let pr = gh.pull_request(c.number).await?;
                if !pr.merged {
                    return self
                        .answer(&c, "confused", "`/honua promote` runs on a merged pull request: merge this one first, or run `honua promote FROM TO` locally.")
                        .await;
                }
                if c.author_is_bot {
                    return self.answer(&c, "-1", "bots cannot promote environments.").await;
                }
                let permission = gh.permission(&c.author).await?;
                if !permission.can_approve() {
                    let role =
                        if permission.role_name.is_empty() { &permission.permission } else { &permission.role_name };
                    let text = format!(
                        "your role on {} is `{}`; a promotion needs write, maintain or admin.",
                        c.repo.full_name(),
                        role
                    );
                    return self.answer(&c, "-1", &markdown::prose(&text)).await;
                }
                gh.react(c.comment_id, "eyes").await?;
                let reply = match self.promote_by_comment(&c, &pr.base_ref, &from, &to).await? {
                    super::promote::Promoted::Opened { number, url, branch } => {
                        self.audit(
                            &c,
                            "promote",
                            &to,
                            None,
                            &format!("promoted {from} to {to}: PR #{number} from {branch}"),
                        )
                        .await;
                        format!("✅ opened #{number} to promote `{from}` to `{to}`: {url}")
                    }
                    super::promote::Promoted::Refused(why) => format!("❌ {}", markdown::prose(&why)),
                };
                let reaction = if reply.starts_with('✅') { "+1" } else { "-1" };
                self.answer(&c, reaction, &reply).await
            }
            CommentCommand::Reject { environment, reason } => {
                let pr = gh.pull_request(c.number).await?;
                let outcomes = if pr.open {
                    self.withdraw_on_open_pr(&c, &pr, &environment).await?
                } else if pr.merged {
                    self.decide_merged_pr(&c, &pr, std::slice::from_ref(&environment), Decide::Reject { reason })
                        .await?
                } else {
                    vec![Outcome::note(
                        "this pull request was closed without merging: there is nothing to reject.".into(),
                    )]
                };
                self.after.decided(&c.repo.full_name()).await;
                self.answer_outcomes(&c, outcomes).await
            }
        }
    }

    async fn answer(&self, c: &CommentEvent, reaction: &str, text: &str) -> Result<(), JobError> {
        let gh = self.gh;
        gh.react(c.comment_id, reaction).await?;
        gh.comment(c.number, &format!("{REPLY_MARKER}\n@{}: {text}", c.author)).await?;
        Ok(())
    }

    async fn answer_outcomes(&self, c: &CommentEvent, outcomes: Vec<Outcome>) -> Result<(), JobError> {
        let reaction = if outcomes.iter().any(|o| o.ok) { "+1" } else { "-1" };
        // Outcome lines quote environments, reasons and errors, some from the repository or the comment.
        let lines: Vec<String> = outcomes.into_iter().map(|o| format!("- {}", markdown::prose(&o.line))).collect();
        self.answer(c, reaction, &format!("\n{}", lines.join("\n"))).await
    }

    async fn audit(&self, c: &CommentEvent, action: &str, environment: &str, deployment: Option<&str>, message: &str) {
        let entry = NewAudit {
            actor: c.author.clone(),
            action: action.into(),
            repository: Some(c.repo.full_name()),
            environment: Some(environment.into()),
            deployment: deployment.map(Into::into),
            message: format!("PR #{}: {message}", c.number),
        };
        if let Err(e) = self.store.record_audit(&entry, Utc::now().timestamp_millis()).await {
            tracing::warn!(error = %e, "could not write an audit entry");
        }
    }

    /// May `c.author` approve or reject `env`? The inner `Err` says why not, in words for the PR.
    async fn authorise(
        &self,
        c: &CommentEvent,
        env: &str,
        policy: &EnvironmentPolicy,
        pr_author: &str,
    ) -> Result<Result<(), Refusal>, JobError> {
        if c.author_is_bot {
            return Ok(Err(Refusal::Bot));
        }
        if policy.prevent_self_approval && c.author.eq_ignore_ascii_case(pr_author) {
            return Ok(Err(Refusal::SelfApproval { env: env.to_string() }));
        }
        let gh = self.gh;
        let permission = gh.permission(&c.author).await?;
        if permission.can_approve() {
            return Ok(Ok(()));
        }
        for approver in &policy.approvers {
            let listed = match approver.split_once('/') {
                Some((org, team)) => gh.team_member(org, team, &c.author).await?,
                None => approver.eq_ignore_ascii_case(&c.author),
            };
            if listed {
                return Ok(Ok(()));
            }
        }
        let role = if permission.role_name.is_empty() { &permission.permission } else { &permission.role_name };
        Ok(Err(Refusal::Role { repo: c.repo.full_name(), role: role.to_string(), env: env.to_string() }))
    }

    async fn approve_open_pr(
        &self,
        c: &CommentEvent,
        pr: &PullRequestHeads,
        environments: &[String],
        breaking: bool,
    ) -> Result<Vec<Outcome>, JobError> {
        let planned = self.pull_requests().plan(&c.repo, c.number, &pr.head_sha, &pr.base_ref).await?;
        let policy = Policy::of(&planned.base);
        let targets: Vec<String> = if environments.is_empty() {
            planned.plans.iter().filter(|p| p.decision != Decision::Auto).map(|p| p.environment.to_string()).collect()
        } else {
            environments.to_vec()
        };
        if targets.is_empty() {
            return Ok(vec![Outcome::note("no environment of this pull request needs approval.".into())]);
        }
        let mut out = Vec::new();
        let mut approved_any = false;
        for env in targets {
            let Some(plan) = planned.plans.iter().find(|p| p.environment.as_str() == env) else {
                out.push(Outcome::refused(format!("`{env}` is not an environment of this repository")));
                continue;
            };
            let (env_policy, _) = policy.for_env(&env);
            if let Err(why) = self.authorise(c, &env, &env_policy, &pr.author).await? {
                self.audit(c, "approve.refused", &env, None, &why.to_string()).await;
                out.push(Outcome::refused(format!("`{env}`: {why}")));
                continue;
            }
            let outcome = match &plan.decision {
                Decision::Auto => Outcome::note(format!("`{env}` needs no approval: its policy deploys this plan by itself")),
                Decision::Blocked(reasons) if !plan.acknowledgeable => {
                    Outcome::refused(format!("`{env}` is blocked and no approval lifts it: {}", reasons.join("; ")))
                }
                Decision::Blocked(_) if !breaking => Outcome::refused(format!(
                    "`{env}` has breaking changes its policy does not allow: approve with `/honua approve {env} --breaking` to acknowledge them"
                )),
                _ => {
                    let plan_json = serde_json::to_value(plan).expect("plans encode");
                    let approval = PrApproval {
                        repository: c.repo.full_name(),
                        number: c.number,
                        environment: env.as_str().into(),
                        head_sha: pr.head_sha.as_str().into(),
                        plan_digest: plan.digest.clone(),
                        change_digest: crate::plan::change_digest(&plan_json),
                        actor: c.author.clone(),
                        breaking,
                        at: Utc::now().timestamp_millis(),
                    };
                    self.store.add_pr_approval(&approval).await?;
                    approved_any = true;
                    Outcome::done(format!(
                        "`{env}` approved at {} (plan `{}`). A push to this pull request withdraws it; at merge it carries to `{env}`'s deployment if that plan is the same.",
                        short(&pr.head_sha),
                        plan.digest
                    ))
                }
            };
            let action = if outcome.ok { "pr.approve" } else { "approve.refused" };
            self.audit(c, action, &env, None, &outcome.line).await;
            out.push(outcome);
        }
        // The sticky plan comment shows who approved what: it is rendered again with the new approvals.
        if approved_any {
            let approvals =
                super::pulls::approval_lines(self.store, &c.repo.full_name(), c.number, &pr.head_sha, &planned).await?;
            let details = self.pull_requests().details_url(&c.repo, c.number, &pr.head_sha);
            self.gh
                .upsert_plan_comment(c.number, &plan_comment(&planned.plans, details.as_deref(), &approvals))
                .await?;
        }
        Ok(out)
    }

    async fn withdraw_on_open_pr(
        &self,
        c: &CommentEvent,
        pr: &PullRequestHeads,
        env: &str,
    ) -> Result<Vec<Outcome>, JobError> {
        let base = self.base_policy(&c.repo, c.number, pr).await?;
        if let Err(why) = self.authorise(c, env, &base.for_env(env).0, &pr.author).await? {
            self.audit(c, "reject.refused", env, None, &why.to_string()).await;
            return Ok(vec![Outcome::refused(format!("`{env}`: {why}"))]);
        }
        let now = Utc::now().timestamp_millis();
        let rejected = PrInvalidation::Rejected { environment: env };
        let withdrawn = self.store.invalidate_pr_approvals(&c.repo.full_name(), c.number, rejected, now).await?;
        self.audit(c, "pr.reject", env, None, &format!("{} approval(s) withdrawn", withdrawn.len())).await;
        Ok(vec![Outcome::done(format!(
            "`{env}`: {} approval(s) of this pull request withdrawn; nothing of it is deployed until it is approved again after merge",
            withdrawn.len()
        ))])
    }

    async fn base_policy(&self, repo: &RepoRef, number: u64, pr: &PullRequestHeads) -> Result<Policy, JobError> {
        let planned = self.pull_requests().plan(repo, number, &pr.head_sha, &pr.base_ref).await?;
        Ok(Policy::of(&planned.base))
    }

    /// The policy a deployment is judged by: that of the commit its environment runs (its first
    /// deployment: its own commit's).
    async fn deployment_policy(&self, d: &Deployment, url: &str) -> Result<Policy, JobError> {
        let rev = d.from_commit.clone().unwrap_or_else(|| d.commit.clone());
        self.mirrors.run(url, move |mirror| Ok(Policy::of(&ConfigRepo::load_git(mirror.path(), &rev)?))).await
    }

    async fn decide_merged_pr(
        &self,
        c: &CommentEvent,
        pr: &PullRequestHeads,
        environments: &[String],
        decide: Decide,
    ) -> Result<Vec<Outcome>, JobError> {
        let Some(merge_sha) = pr.merge_commit_sha.clone() else {
            return Ok(vec![Outcome::note(
                "GitHub does not name this pull request's merge commit yet; try again shortly.".into(),
            )]);
        };
        let all = self
            .store
            .deployments(&DeploymentFilter { repository: Some(c.repo.full_name()), limit: 1000, ..Default::default() })
            .await?;
        let of_merge: Vec<&Deployment> = all.iter().filter(|d| d.commit == merge_sha).collect();
        let targets: Vec<&Deployment> = if environments.is_empty() {
            of_merge
                .iter()
                .copied()
                .filter(|d| matches!(d.state, DeploymentState::AwaitingApproval | DeploymentState::Blocked))
                .collect()
        } else {
            let mut picked = Vec::new();
            for env in environments {
                match of_merge.iter().find(|d| &d.environment == env) {
                    Some(d) => picked.push(*d),
                    None => {
                        return Ok(vec![Outcome::note(format!(
                            "no deployment of `{env}` comes from this pull request's merge commit {}: it changes nothing there, or the push is still being processed",
                            short(&merge_sha)
                        ))])
                    }
                }
            }
            picked
        };
        if targets.is_empty() {
            return Ok(vec![Outcome::note(format!(
                "no deployment of the merge commit {} awaits a decision",
                short(&merge_sha)
            ))]);
        }
        let url = self.mirrors.url_of(&c.repo.full_name());
        let mut out = Vec::new();
        for d in targets {
            let policy = self.deployment_policy(d, &url).await?;
            let env = d.environment.as_str();
            if let Err(why) = self.authorise(c, env, &policy.for_env(env).0, &pr.author).await? {
                self.audit(c, &format!("{}.refused", decide.verb()), env, Some(&d.id), &why.to_string()).await;
                out.push(Outcome::refused(format!("`{env}` ({}): {why}", d.id)));
                continue;
            }
            let now = Utc::now();
            let result = match &decide {
                Decide::Approve { breaking } => {
                    self.decisions.approve(&d.id, &c.author, Via::Comment, *breaking, now).await
                }
                Decide::Reject { reason } => self.decisions.reject(&d.id, &c.author, reason, now).await,
            };
            out.push(match result {
                Ok(d) => Outcome::done(format!("`{env}`: deployment {} is {}", d.id, d.state)),
                Err(e) => Outcome::refused(format!("`{env}`: {e}")),
            });
        }
        Ok(out)
    }
}

enum Decide {
    Approve { breaking: bool },
    Reject { reason: String },
}

impl Decide {
    fn verb(&self) -> &'static str {
        match self {
            Decide::Approve { .. } => "approve",
            Decide::Reject { .. } => "reject",
        }
    }
}
