//! The pull-request flow, as handlers with explicit dependencies (the pattern of bors's `handlers/`):
//! each takes the store, the mirrors and the repository's GitHub client it works with, and nothing else
//! of the service. A PR opened, pushed to or re-run gets its two check runs, the sticky plan comment
//! with its approvals table, and approvals given at an older head withdrawn; always for the head the PR
//! has when its job runs, whatever order the deliveries came in.

use std::sync::Arc;

use chrono::Utc;

use super::comments::REPLY_MARKER;
use super::{JobError, Mirrors};
use crate::config::ConfigRepo;
use crate::deployment::short_sha as short;
use crate::deployment::PrInvalidation;
use crate::github::checks::{
    diff_check, plan_comment, quarantined_check, validate_check, ApprovalLine, DIFF_CHECK, VALIDATE_CHECK,
};
use crate::github::client::GithubRepo;
use crate::github::webhook::RepoRef;
use crate::policy::{Decision, Policy};
use crate::store::Store;

/// What the pull-request handlers work with, for one repository.
pub(crate) struct PullRequests<'a> {
    pub store: &'a dyn Store,
    pub mirrors: &'a Mirrors,
    pub gh: &'a GithubRepo,
    /// Base of the service's public URL, for the check runs' `details_url`.
    pub public_url: Option<&'a str>,
}

/// A pull request planned against its base.
pub(crate) struct PlannedPr {
    pub diagnostics: Vec<crate::diagnostic::Diagnostic>,
    pub plans: Vec<crate::plan::Plan>,
    /// The base branch's config, whose policy judges the PR (and who may approve it).
    pub base: Arc<ConfigRepo>,
}

impl PullRequests<'_> {
    /// Where the check runs link to: the plan page of this head on the service.
    pub fn details_url(&self, repo: &RepoRef, number: u64, head_sha: &str) -> Option<String> {
        self.public_url.map(|base| {
            format!("{}/plans/{}/{}/{number}/{head_sha}", base.trim_end_matches('/'), repo.owner, repo.name)
        })
    }

    /// The PR flow: both checks go `in_progress` at once, then complete with the validation of the
    /// head and the plan base → head; the plan comment is edited in place. `retry`: an earlier attempt
    /// of this job (its worker died, maybe after completing the checks) may have made runs, which are
    /// reused; a new request (a push, a re-run from the Checks tab) gets runs of its own.
    pub async fn check(
        &self,
        repo: &RepoRef,
        number: u64,
        head_sha: &str,
        base_ref: &str,
        retry: bool,
    ) -> Result<(), JobError> {
        let gh = self.gh;
        let (current, known) = self.fetch(repo, number, base_ref, head_sha).await?;
        // GitHub does not promise the order of its deliveries: a push that arrives after a newer one
        // would put an older plan in the comment and withdraw the approvals of the newer head. What the
        // PR holds now is checked instead (reusing runs its own delivery may have made already).
        let (head_sha, retry) = match current != head_sha && known {
            true => {
                tracing::info!(repository = %repo.full_name(), number, delivered = %head_sha, head = %current, "the PR has moved on from this head; its head is checked instead");
                metrics::counter!("honua_pr_heads_coalesced_total").increment(1);
                (current.as_str(), true)
            }
            false => (head_sha, retry),
        };
        let details = self.details_url(repo, number, head_sha);
        let validate_id = gh.create_check_run(VALIDATE_CHECK, head_sha, details.as_deref(), retry).await?;
        let diff_id = gh.create_check_run(DIFF_CHECK, head_sha, details.as_deref(), retry).await?;
        let planned = self.plan_fetched(repo, head_sha, base_ref).await?;

        gh.complete_check_run(validate_id, &validate_check(&planned.diagnostics)).await?;
        gh.complete_check_run(diff_id, &diff_check(&planned.plans)).await?;
        let approvals = approval_lines(self.store, &repo.full_name(), number, head_sha, &planned).await?;
        gh.upsert_plan_comment(number, &plan_comment(&planned.plans, details.as_deref(), &approvals)).await?;
        self.invalidate_stale_approvals(repo, number, head_sha).await?;
        Ok(())
    }

    /// "Re-run" on a check run or suite: plan again every open PR whose head is that commit.
    pub async fn recheck(
        &self,
        repo: &RepoRef,
        head_sha: &str,
        pull_requests: &[u64],
        retry: bool,
    ) -> Result<(), JobError> {
        for &number in pull_requests {
            let pr = self.gh.pull_request(number).await?;
            if pr.open && pr.head_sha == head_sha {
                self.check(repo, number, head_sha, &pr.base_ref, retry).await?;
            } else {
                tracing::info!(repository = %repo.full_name(), number, "re-run skipped: the PR moved on or is closed");
            }
        }
        Ok(())
    }

    /// Fetches the PR's base branch and head into the mirror and plans head against base, with the
    /// base's policy.
    pub async fn plan(
        &self,
        repo: &RepoRef,
        number: u64,
        head_sha: &str,
        base_ref: &str,
    ) -> Result<PlannedPr, JobError> {
        self.fetch(repo, number, base_ref, head_sha).await?;
        self.plan_fetched(repo, head_sha, base_ref).await
    }

    /// Fetches the PR's base branch and head into the mirror. Returns the PR's head as fetched, and
    /// whether the mirror has `head_sha` (a commit the fetch did not bring is newer than GitHub's
    /// `refs/pull/N/head` showed, or gone).
    async fn fetch(
        &self,
        repo: &RepoRef,
        number: u64,
        base_ref: &str,
        head_sha: &str,
    ) -> Result<(String, bool), JobError> {
        let token = self.gh.git_token().await.ok();
        let _held = self.mirrors.lock(&repo.full_name()).await;
        let (head, base_ref, head_sha) =
            (format!("refs/pull/{number}/head"), format!("refs/heads/{base_ref}"), head_sha.to_string());
        self.mirrors
            .run(&self.mirrors.url_of(&repo.full_name()), move |mirror| {
                mirror.fetch(&[&base_ref, &head], token.as_deref())?;
                Ok((mirror.resolve(&head)?, mirror.resolve(&head_sha).is_ok()))
            })
            .await
    }

    /// Plans `head_sha` against the base branch as the mirror has it (nothing is fetched).
    async fn plan_fetched(&self, repo: &RepoRef, head_sha: &str, base_ref: &str) -> Result<PlannedPr, JobError> {
        let _held = self.mirrors.lock(&repo.full_name()).await;
        let (base_ref, head_sha) = (format!("refs/heads/{base_ref}"), head_sha.to_string());
        self.mirrors
            .run(&self.mirrors.url_of(&repo.full_name()), move |mirror| {
                let base_sha = mirror.resolve(&base_ref)?;
                // The policy comes from the base: `from` is the base branch as it is now.
                let from = ConfigRepo::load_git(mirror.path(), &base_sha)?;
                let to = ConfigRepo::load_git(mirror.path(), &head_sha)?;
                let set = crate::plan::build(&from, &to, None, Utc::now());
                Ok(PlannedPr { diagnostics: set.diagnostics, plans: set.plans, base: Arc::new(from) })
            })
            .await
    }

    /// After a push to an open PR: approvals given at an older head no longer hold; say so on the PR.
    async fn invalidate_stale_approvals(&self, repo: &RepoRef, number: u64, head_sha: &str) -> Result<(), JobError> {
        let now = Utc::now().timestamp_millis();
        let pushed = PrInvalidation::Pushed { head: head_sha };
        let stale = self.store.invalidate_pr_approvals(&repo.full_name(), number, pushed, now).await?;
        if stale.is_empty() {
            return Ok(());
        }
        let lines: Vec<String> =
            stale.iter().map(|a| format!("- `{}` by @{} at {}", a.environment, a.actor, a.head_sha.short())).collect();
        self.gh
            .comment(
                number,
                &format!(
                    "{REPLY_MARKER}\nNew commits were pushed ({}): these approvals no longer hold. Review the new plan and approve again.\n{}",
                    short(head_sha),
                    lines.join("\n")
                ),
            )
            .await?;
        Ok(())
    }

    /// A job that stopped its worker twice: the PR's checks are completed as neutral with the reason.
    pub async fn report_quarantine(
        &self,
        repo: &RepoRef,
        number: u64,
        head_sha: &str,
        reason: &str,
    ) -> Result<(), JobError> {
        let details = self.details_url(repo, number, head_sha);
        for name in [VALIDATE_CHECK, DIFF_CHECK] {
            // The runs the crashed attempts left in progress are completed, not doubled.
            let id = self.gh.create_check_run(name, head_sha, details.as_deref(), true).await?;
            self.gh.complete_check_run(id, &quarantined_check(name, reason)).await?;
        }
        Ok(())
    }
}

/// The plan comment's approvals table: for each environment that needs an approval, who approved its
/// plan at `head_sha` on the pull request, and who may, by the base branch's policy.
pub(crate) async fn approval_lines(
    store: &dyn Store,
    repository: &str,
    number: u64,
    head_sha: &str,
    planned: &PlannedPr,
) -> Result<Vec<ApprovalLine>, JobError> {
    let given = store.pr_approvals(repository, number).await?;
    let policy = Policy::of(&planned.base);
    Ok(planned
        .plans
        .iter()
        .filter(|p| p.has_changes() && p.decision != Decision::Auto)
        .map(|p| {
            let env = p.environment.as_str();
            let (env_policy, _) = policy.for_env(env);
            ApprovalLine {
                environment: env.to_string(),
                approved: given
                    .iter()
                    .filter(|a| a.environment == env && a.head_sha == head_sha)
                    .map(|a| (a.actor.clone(), a.plan_digest.clone(), a.breaking))
                    .collect(),
                approvers: env_policy.approvers,
                prevent_self_approval: env_policy.prevent_self_approval,
            }
        })
        .collect())
}
