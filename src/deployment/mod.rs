//! The deployment model and its contract: the states a deployment moves through ([`DeploymentState`]),
//! what it takes to approve one ([`Gate`]), who may do what
//! ([`Role`]), the phases an agent reports ([`Phase`]), and (in [`wire`]) every body the API answers or
//! takes. The service builds these types, and the CLI, the pages, `honua watch` and the agent read the
//! same ones, so the compiler checks both ends of the contract; the store maps its rows to them.

mod ids;
pub mod status;
pub mod wire;

pub use ids::{CommitSha, DeploymentId, EnvName};
pub use status::{EnvironmentStatus, Status, Tone};

pub use crate::config::short_sha;
pub use crate::plan::signing::Via;

use serde::{Deserialize, Serialize};

/// An agent checks in at least every 30 s (its long-poll); three missed check-ins make it stale.
pub const AGENT_STALE_AFTER_MS: i64 = 3 * 60_000;

/// How long a deployment ran, for people: `2.3s`, `1m 05s`, `-` when it has not run.
pub fn duration_text(ms: Option<i64>) -> String {
    match ms {
        None => "-".into(),
        Some(ms) if ms < 60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        Some(ms) => format!("{}m {:02}s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

named! {
    /// The deployment state machine of DESIGN.md.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, utoipa::ToSchema)]
    pub enum DeploymentState {
        Pending,
        AwaitingApproval,
        Approved,
        Applying,
        Completed,
        Failed,
        RolledBack,
        Blocked,
        Rejected,
        Superseded,
        Expired,
    }
}

impl DeploymentState {
    /// Not yet picked up by an agent: a newer deployment of the environment supersedes these.
    pub const UNSTARTED: [DeploymentState; 4] = [
        DeploymentState::Pending,
        DeploymentState::AwaitingApproval,
        DeploymentState::Approved,
        DeploymentState::Blocked,
    ];

    /// The transition table, as data: the states a deployment may move into `self` from. The store moves
    /// a deployment only if it is in one of them (a compare-and-set under a row lock), so of two writers
    /// racing for one deployment (an approval and a newer merge, two agents) exactly one wins. A
    /// deployment is created in `pending`, `awaiting_approval`, `approved` or `blocked`; nothing moves
    /// into those later. One still waiting for its approval past its `expires_at` expires.
    pub fn comes_from(self) -> &'static [DeploymentState] {
        use DeploymentState::*;
        match self {
            Approved => &[AwaitingApproval, Blocked],
            Applying => &[Approved],
            Completed | Failed | RolledBack => &[Approved, Applying],
            Superseded | Rejected => &Self::UNSTARTED,
            Expired => &[AwaitingApproval, Blocked],
            Pending | AwaitingApproval | Blocked => &[],
        }
    }

    /// Nothing moves out of it (by the transition table): completed, failed, rolled back, rejected,
    /// superseded, expired.
    pub fn is_final(self) -> bool {
        DeploymentState::ALL.iter().all(|to| !to.comes_from().contains(&self))
    }

    pub fn is_unstarted(self) -> bool {
        Self::UNSTARTED.contains(&self)
    }
}

named! {
    /// Why a deployment exists.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
    pub enum Cause {
        /// A commit reached the deployment branch (webhook, poll, or a resumed environment).
        Push,
        /// Someone rolled the environment back to what ran before.
        Rollback,
    }
}

named! {
    /// What it takes to approve a deployment, fixed by the policy when the deployment is created.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
    pub enum Gate {
        /// The policy approved it.
        Auto,
        /// An approver's approval.
        Approval,
        /// An approver's approval that acknowledges its breaking changes (`--breaking`).
        Breaking,
        /// Nothing: it is blocked for a reason no approval lifts (validation errors, unreadable files).
        Closed,
    }
}

named! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    pub enum Role {
        /// Agents only read their own environment's desired state and report on it.
        Agent,
        Viewer,
        Approver,
        Admin,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Deployment {
    pub id: DeploymentId,
    pub repository: String,
    pub environment: EnvName,
    pub sequence: i64,
    pub commit: CommitSha,
    pub from_commit: Option<CommitSha>,
    pub plan_digest: String,
    /// The plan as JSON (the `honua plan --format json` entry of this environment).
    pub plan: serde_json::Value,
    pub state: DeploymentState,
    pub gate: Gate,
    pub reasons: Vec<String>,
    /// The environment's deployment windows and blackouts: when it may start.
    pub windows: crate::policy::window::Rules,
    /// How agents apply it (from the environment's policy); `None` for deployments made before it was kept.
    pub safety: Option<crate::plan::signing::ApplySafety>,
    pub cause: Cause,
    /// The signed record and its signature, once approved.
    pub signed: Option<crate::plan::signing::Signed>,
    /// Waiting for its approval past this (ms), it expires (the environment's `approvalTimeout`).
    pub expires_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Approval {
    pub actor: String,
    pub via: Via,
    pub plan_digest: String,
    /// Breaking changes acknowledged.
    pub breaking: bool,
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub repository: Option<String>,
    pub environment: Option<EnvName>,
    pub deployment: Option<DeploymentId>,
    /// A transition's states (an entry that is not a transition has none).
    pub from_state: Option<DeploymentState>,
    pub to_state: Option<DeploymentState>,
    pub message: String,
}

/// One phase of one deployment as an agent reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentReport {
    pub deployment: DeploymentId,
    pub agent: String,
    pub environment: EnvName,
    pub phase: Phase,
    pub message: String,
    pub at: i64,
}

/// An agent's last check-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentStatus {
    pub name: String,
    pub environment: EnvName,
    pub last_seen: i64,
    pub last_deployment: Option<DeploymentId>,
    pub last_phase: Option<Phase>,
    pub last_message: Option<String>,
    /// The last heartbeat: commit, health, version, sync, drifted paths.
    pub heartbeat: Option<wire::Heartbeat>,
}

/// A token as `honua token list` and `GET /api/v1/tokens` show it: never its secret or its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenInfo {
    pub name: String,
    #[schema(value_type = String)]
    pub role: Role,
    pub environment: Option<EnvName>,
    /// Milliseconds since the epoch, as every time of the store.
    pub created_at: i64,
    /// To the minute.
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// After a rotation: until when the previous secret is still accepted.
    pub previous_valid_until: Option<i64>,
}

/// Who an API token belongs to and what it may do.
#[derive(Debug, Clone)]
pub struct ApiToken {
    pub name: String,
    pub role: Role,
    pub environment: Option<EnvName>,
}

/// An approval given on an open pull request for one environment, bound to the plan of one head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrApproval {
    pub repository: String,
    pub number: u64,
    pub environment: EnvName,
    pub head_sha: CommitSha,
    pub plan_digest: String,
    /// Digest of the environment, changes and decision (no revisions): what must match at merge.
    pub change_digest: String,
    pub actor: String,
    pub breaking: bool,
    pub at: i64,
}

/// Which of a pull request's standing approvals stop holding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrInvalidation<'a> {
    /// A push to the PR: every approval given at another head than `head`.
    Pushed { head: &'a str },
    /// `/honua reject ENV` on the PR: the environment's approvals, at any head.
    Rejected { environment: &'a str },
}

impl PrInvalidation<'_> {
    /// Recorded with each approval it ends.
    pub fn why(&self) -> &'static str {
        match self {
            PrInvalidation::Pushed { .. } => "push",
            PrInvalidation::Rejected { .. } => "rejected",
        }
    }
}

/// A merged pull request: its merge commit and the head it was merged at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrMerge {
    pub number: u64,
    pub merge_sha: CommitSha,
    pub head_sha: CommitSha,
}

/// Automatic deployments of an environment are paused after a rollback, until the branch moves past
/// `commit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EnvironmentPause {
    pub repository: String,
    pub environment: EnvName,
    pub commit: CommitSha,
    pub deployment: DeploymentId,
    pub actor: String,
    pub at: i64,
}

/// The audit message of the policy's decision on a new deployment.
pub fn decision_message(reasons: &[String]) -> String {
    if reasons.is_empty() {
        "the policy approves it automatically".to_string()
    } else {
        reasons.join("; ")
    }
}

/// The audit message of a deployment that a newer one replaced before it started.
pub fn superseded_message(by: &str, commit: &str) -> String {
    format!("superseded by {by} (commit {})", short_sha(commit))
}

named! {
    /// A phase an agent reports for a deployment. The last three end it; any other moves it to `applying`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, utoipa::ToSchema)]
    pub enum Phase {
        Fetching,
        Rendering,
        Writing,
        Swapping,
        Reloading,
        Verifying,
        Applying,
        Completed,
        Failed,
        RolledBack,
    }
}

impl Phase {
    /// The state a deployment moves to when an agent reports this phase.
    pub fn target_state(self) -> DeploymentState {
        match self {
            Phase::Completed => DeploymentState::Completed,
            Phase::Failed => DeploymentState::Failed,
            Phase::RolledBack => DeploymentState::RolledBack,
            _ => DeploymentState::Applying,
        }
    }
}

/// What a deployment's `repository` names: a GitHub repository (`owner/name`), whose App the service
/// talks to, or a plain Git remote (a URL, in plain-Git mode), which it only fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoId<'a> {
    GitHub { owner: &'a str, name: &'a str },
    Git(&'a str),
}

impl<'a> RepoId<'a> {
    /// `owner/name` (one `/`, both parts present, no scheme) is GitHub; anything else is a Git remote.
    pub fn parse(repository: &'a str) -> RepoId<'a> {
        match repository.split_once('/') {
            Some((owner, name))
                if !repository.contains(':') && !owner.is_empty() && !name.is_empty() && !name.contains('/') =>
            {
                RepoId::GitHub { owner, name }
            }
            _ => RepoId::Git(repository),
        }
    }

    /// `(owner, name)` of a GitHub repository.
    pub fn github(self) -> Option<(&'a str, &'a str)> {
        match self {
            RepoId::GitHub { owner, name } => Some((owner, name)),
            RepoId::Git(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repository_is_github_only_as_owner_slash_name() {
        assert_eq!(RepoId::parse("city/gis-config").github(), Some(("city", "gis-config")));
        for git in
            ["file:///srv/git/gis.git", "https://git.example.org/city/gis.git", "/srv/git/gis.git", "a/b/c", "gis"]
        {
            assert_eq!(RepoId::parse(git), RepoId::Git(git), "{git}");
        }
    }

    #[test]
    fn phases_and_states_read_back_as_they_are_written() {
        for &phase in Phase::ALL {
            assert_eq!(Phase::parse(phase.as_str()), Some(phase));
            assert_eq!(serde_json::to_value(phase).unwrap(), phase.as_str());
        }
        assert_eq!(Phase::parse("done"), None);
        assert_eq!(Phase::RolledBack.target_state(), DeploymentState::RolledBack);
        assert_eq!(Phase::Verifying.target_state(), DeploymentState::Applying);
    }

    #[test]
    fn the_transition_table_ends_in_final_states_and_never_loops() {
        use DeploymentState::*;
        let all = DeploymentState::ALL;
        for &to in all {
            assert!(!to.comes_from().contains(&to), "{to} never moves to itself");
        }
        // Nothing leaves a final state; the agent's reports move only approved or applying deployments.
        for finished in [Completed, Failed, RolledBack, Rejected, Superseded, Expired] {
            assert!(all.iter().all(|to| !to.comes_from().contains(&finished)), "{finished} is final");
        }
        for &phase in Phase::ALL {
            assert!(phase.target_state().comes_from().iter().all(|s| [Approved, Applying].contains(s)), "{phase:?}");
        }
        // Only what no agent has started can be superseded or rejected; an approval needs a decision.
        assert_eq!(Superseded.comes_from(), DeploymentState::UNSTARTED);
        assert_eq!(Approved.comes_from(), [AwaitingApproval, Blocked]);
        assert_eq!(Expired.comes_from(), Approved.comes_from(), "what may still be approved may expire");
    }

    #[test]
    fn a_short_sha_is_seven_characters_or_the_whole_text() {
        assert_eq!(short_sha("a1b2c3d4e5f6"), "a1b2c3d");
        assert_eq!(short_sha("abc"), "abc");
        assert_eq!(short_sha("ééééééééé"), "ééééééé", "never cut inside a character");
    }
}
