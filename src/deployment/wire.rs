//! Every body of the API (`/api/v1`), as the service writes it and the CLI, the pages, `honua watch`
//! and the agent read it. One type per body: the OpenAPI document is generated from these, and a test
//! compares each route's documented schema with what it returns.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{AgentReport, AgentStatus, Approval, AuditEntry, Deployment, EnvironmentPause};
use super::{Cause, CommitSha, DeploymentId, DeploymentState, EnvName, EnvironmentStatus, Gate, Phase};
use crate::config::resource::ResourceKind;
use crate::diff::Action;
use crate::policy::window::Schedule;

/// Every error the API answers: a stable code and a sentence that says what to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// `unauthorized`, `forbidden`, `not_found`, `wrong_state`, `breaking_not_acknowledged`,
    /// `not_approvable`, `no_rollback_target`, `not_paused`, `bad_body`, `bad_state`, `store_unavailable`, `failed`.
    pub error: String,
    pub message: String,
}

/// A deployment in lists: everything but the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeploymentSummary {
    pub id: DeploymentId,
    /// GitHub `owner/name`, or the Git URL of a plain-Git repository.
    pub repository: String,
    pub environment: EnvName,
    /// Its place in the environment's sequence: agents apply only newer ones.
    pub sequence: i64,
    pub commit: CommitSha,
    /// What the environment ran before (absent for its first deployment).
    pub from_commit: Option<CommitSha>,
    pub state: DeploymentState,
    pub gate: Gate,
    pub reasons: Vec<String>,
    pub plan_digest: String,
    /// Evaluated when answered: an approved deployment outside its window says why it waits, and until when.
    pub schedule: Schedule,
    pub cause: Cause,
    /// Waiting for its approval past this, it expires (the environment's `approvalTimeout`).
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl DeploymentSummary {
    pub fn of(d: &Deployment, now: DateTime<Utc>) -> DeploymentSummary {
        DeploymentSummary {
            id: d.id.clone(),
            repository: d.repository.clone(),
            environment: d.environment.clone(),
            sequence: d.sequence,
            commit: d.commit.clone(),
            from_commit: d.from_commit.clone(),
            state: d.state,
            gate: d.gate,
            reasons: d.reasons.clone(),
            plan_digest: d.plan_digest.clone(),
            schedule: d.windows.at(now),
            cause: d.cause,
            expires_at: d.expires_at.and_then(DateTime::from_timestamp_millis),
            created_at: DateTime::from_timestamp_millis(d.created_at),
            updated_at: DateTime::from_timestamp_millis(d.updated_at),
        }
    }

    pub fn short_commit(&self) -> &str {
        self.commit.short()
    }

    /// When it expires, while it still waits for its approval.
    pub fn expires_while_waiting(&self) -> Option<DateTime<Utc>> {
        self.expires_at.filter(|_| DeploymentState::Expired.comes_from().contains(&self.state))
    }
}

/// A deployment with when it ran and who is behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeploymentView {
    #[serde(flatten)]
    pub summary: DeploymentSummary,
    /// Entering `applying`.
    pub started_at: Option<DateTime<Utc>>,
    /// Reaching an end (completed, failed, rolled back).
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    /// Its approvers (not the policy), else who caused it (the pusher, the operator who rolled back).
    pub by: Option<String>,
}

/// `GET /api/v1/deployments/{id}`: the deployment with its plan, approvals, transitions, signed record
/// and the agents' reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeploymentDetail {
    #[serde(flatten)]
    pub view: DeploymentView,
    /// The plan of this environment as `honua plan --format json` gives it, literal secrets masked (read
    /// it with [`PlanView::of`]).
    #[schema(value_type = PlanView)]
    pub plan: serde_json::Value,
    pub approvals: Vec<Approval>,
    /// The audit entries of this deployment, oldest first.
    pub transitions: Vec<AuditEntry>,
    /// The signed record and its signature, once approved.
    pub signed: Option<crate::plan::signing::Signed>,
    pub reports: Vec<AgentReport>,
}

/// One environment's plan as it is stored with a deployment and answered by the API: what `honua plan
/// --format json` gives for the environment. Read leniently (every part has a default), so a plan stored by
/// an older version still reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct PlanView {
    pub environment: EnvName,
    /// The revisions compared: a commit, or `dir:<digest>` for a directory.
    pub from: String,
    pub to: String,
    pub validation: PlanValidation,
    pub changes: Vec<ChangeView>,
    pub summary: ChangeSummary,
    pub decision: DecisionView,
    pub digest: String,
}

impl PlanView {
    /// The plan in a stored or answered JSON value; an unreadable one reads as empty.
    pub fn of(plan: &serde_json::Value) -> PlanView {
        PlanView::deserialize(plan).unwrap_or_default()
    }

    /// Breaking changes first: what a reviewer must see.
    pub fn changes_for_review(&self) -> Vec<&ChangeView> {
        let mut changes: Vec<&ChangeView> = self.changes.iter().collect();
        changes.sort_by_key(|c| c.breaking.is_empty());
        changes
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct PlanValidation {
    pub errors: usize,
    pub warnings: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct ChangeSummary {
    pub added: usize,
    pub modified: usize,
    pub removed: usize,
    pub breaking: usize,
}

/// The policy's decision of a plan, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct DecisionView {
    pub decision: Verdict,
    pub reasons: Vec<String>,
}

named! {
    /// What the policy decided of a plan ([`crate::policy::Decision`] without its reasons).
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ToSchema)]
    pub enum Verdict {
        Auto,
        NeedsApproval,
        Blocked,
        /// A plan stored without one, or a name of another version.
        #[default]
        #[serde(other)]
        Unknown,
    }
}

/// One entity added, modified or removed.
// Each part has a default, given per field: a container default would document the kind's and the
// action's as `""`, which is neither.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChangeView {
    /// `layer`, `service`, `datasource`, …
    #[serde(rename = "type", default)]
    #[schema(value_type = ResourceKind)]
    pub kind: OrUnknown<ResourceKind>,
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    #[schema(value_type = Action)]
    pub action: OrUnknown<Action>,
    #[serde(default)]
    pub fields: Vec<FieldChange>,
    #[serde(default)]
    pub breaking: Vec<BreakingView>,
}

impl ChangeView {
    /// `!` breaking, `+` added, `-` removed, `~` otherwise.
    pub fn sign(&self) -> &'static str {
        match (self.breaking.is_empty(), self.action.known()) {
            (false, _) => "!",
            (_, Some(Action::Added)) => "+",
            (_, Some(Action::Removed)) => "-",
            _ => "~",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct FieldChange {
    pub path: String,
    /// Any JSON value; absent on one side when the field is added or removed.
    #[schema(value_type = Object)]
    pub from: serde_json::Value,
    #[schema(value_type = Object)]
    pub to: serde_json::Value,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct BreakingView {
    /// `field.removed`, `layer.collection_renamed`, …
    pub code: String,
    pub reason: String,
}

named! {
    /// Is Honua ready, as an agent last said (a stale agent is never healthy).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, ToSchema)]
    pub enum Health {
        Healthy,
        /// Honua is ready, but the agent's last deployment failed or was rolled back.
        Degraded,
        Unhealthy,
        /// The agent has not checked in for [`super::AGENT_STALE_AFTER_MS`].
        Stale,
        Unknown,
    }
}

named! {
    /// Does Honua run byte for byte the release its agent wrote.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, ToSchema)]
    pub enum Sync {
        Synced,
        Drifted,
        /// Also what any other name reads as (an agent of another version may say more).
        #[serde(other)]
        Unknown,
    }
}

named! {
    /// What Honua's readiness endpoint last told an agent. Anything an agent says other than `healthy`
    /// reads as unhealthy.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, ToSchema)]
    pub enum Readiness {
        Healthy,
        #[serde(other)]
        Unhealthy,
    }
}

/// An agent's heartbeat, sent on every poll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    pub deployment: Option<DeploymentId>,
    pub commit: Option<CommitSha>,
    pub sequence: Option<i64>,
    /// What Honua's health endpoint said.
    pub health: Readiness,
    /// The agent's version.
    pub version: String,
    /// Whether Honua runs byte-for-byte the release the agent wrote.
    pub sync: Sync,
    #[serde(default)]
    pub drifted: Vec<String>,
    /// Set when the agent restored a drifted release (`selfHeal`), or failed to.
    pub restored: Option<String>,
    pub last_result: Option<String>,
}

/// `POST /api/v1/agent/report`: one phase of a deployment of the agent's environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PhaseReport {
    pub deployment: DeploymentId,
    #[schema(value_type = Phase)]
    pub phase: ReportedPhase,
    #[serde(default)]
    pub message: String,
}

/// A phase as an agent sends it. An agent of another version may send a name this service does not
/// know: the service refuses that report naming the phase (`bad_report`), not as a malformed body.
pub type ReportedPhase = OrUnknown<Phase>;

/// A name of a closed set as another version may have written it: one this version knows, or the
/// name as written. It writes back the same string either way, so a reader never loses a whole body
/// (a stored plan, a report) to one name it does not know, and says which name it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OrUnknown<T> {
    Known(T),
    Unknown(String),
}

impl<T> OrUnknown<T> {
    pub fn known(&self) -> Option<&T> {
        match self {
            OrUnknown::Known(value) => Some(value),
            OrUnknown::Unknown(_) => None,
        }
    }
}

impl<T> From<T> for OrUnknown<T> {
    fn from(value: T) -> OrUnknown<T> {
        OrUnknown::Known(value)
    }
}

/// An empty name: what a part missing from a stored body reads as.
impl<T> Default for OrUnknown<T> {
    fn default() -> OrUnknown<T> {
        OrUnknown::Unknown(String::new())
    }
}

impl<T: std::fmt::Display> std::fmt::Display for OrUnknown<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OrUnknown::Known(value) => value.fmt(f),
            OrUnknown::Unknown(name) => f.pad(name),
        }
    }
}

/// An agent as the API shows it. Health and sync are separate axes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AgentView {
    /// The agent token's name.
    pub name: String,
    pub environment: EnvName,
    pub last_seen: Option<DateTime<Utc>>,
    pub last_deployment: Option<DeploymentId>,
    pub last_phase: Option<Phase>,
    pub last_message: Option<String>,
    pub stale: bool,
    pub healthy: bool,
    pub health: Health,
    pub sync: Sync,
    /// Paths that differ from the release the agent wrote (`null` before the first heartbeat).
    pub drifted: Option<Vec<String>>,
    pub commit: Option<CommitSha>,
    pub deployment: Option<DeploymentId>,
    pub version: Option<String>,
    pub last_result: Option<String>,
}

impl AgentView {
    /// The agent as of `now` (ms): stale after [`super::AGENT_STALE_AFTER_MS`]
    /// without a check-in, and never healthy then, whatever it last said.
    pub fn of(a: &AgentStatus, now: i64) -> AgentView {
        let stale = now - a.last_seen > super::AGENT_STALE_AFTER_MS;
        let beat = a.heartbeat.as_ref();
        let ended_badly = matches!(a.last_phase, Some(Phase::Failed | Phase::RolledBack));
        let health = match (stale, beat.map(|b| b.health)) {
            (true, _) => Health::Stale,
            (false, Some(Readiness::Healthy)) if !ended_badly => Health::Healthy,
            (false, Some(Readiness::Healthy)) => Health::Degraded,
            (false, Some(Readiness::Unhealthy)) => Health::Unhealthy,
            (false, None) => Health::Unknown,
        };
        let sync = match beat.map(|b| b.sync) {
            _ if stale => Sync::Unknown,
            Some(sync) => sync,
            None => Sync::Unknown,
        };
        AgentView {
            name: a.name.clone(),
            environment: a.environment.clone(),
            last_seen: DateTime::from_timestamp_millis(a.last_seen),
            last_deployment: a.last_deployment.clone(),
            last_phase: a.last_phase,
            last_message: a.last_message.clone(),
            stale,
            healthy: health == Health::Healthy,
            health,
            sync,
            drifted: beat.map(|b| b.drifted.clone()),
            commit: beat.and_then(|b| b.commit.clone()),
            deployment: beat.and_then(|b| b.deployment.clone()),
            version: beat.map(|b| b.version.clone()),
            last_result: beat.and_then(|b| b.last_result.clone()),
        }
    }
}

/// One environment of one repository: its status, what runs, what waits, and its agents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EnvironmentView {
    pub repository: String,
    pub environment: EnvName,
    /// The pending deployment's state, else `in_sync` when the last one completed, else the last one's
    /// state (`unknown` without any).
    #[schema(value_type = String)]
    pub status: EnvironmentStatus,
    /// One drifted agent makes the environment drifted; synced when every agent is.
    pub sync: Sync,
    /// Healthy when every agent is; unknown without agents.
    pub health: Health,
    /// The deployment that runs (the newest completed).
    pub current: Option<DeploymentView>,
    /// The newest one not yet picked up by an agent.
    pub pending: Option<DeploymentView>,
    pub last: Option<DeploymentView>,
    /// The ten most recent.
    pub recent: Vec<DeploymentSummary>,
    pub agents: Vec<AgentView>,
    /// Set after a rollback: automatic deployments wait until a newer commit lands or someone runs
    /// `honua resume`.
    #[serde(default)]
    pub paused: Option<EnvironmentPause>,
}

impl EnvironmentView {
    /// Sync and health of an environment from its agents.
    pub fn sync_and_health(agents: &[AgentView]) -> (Sync, Health) {
        let sync = if agents.iter().any(|a| a.sync == Sync::Drifted) {
            Sync::Drifted
        } else if !agents.is_empty() && agents.iter().all(|a| a.sync == Sync::Synced) {
            Sync::Synced
        } else {
            Sync::Unknown
        };
        let health = if agents.is_empty() {
            Health::Unknown
        } else if agents.iter().all(|a| a.health == Health::Healthy) {
            Health::Healthy
        } else {
            Health::Unhealthy
        };
        (sync, health)
    }
}

/// `GET /api/v1/environments/{env}/rollback`: what a rollback would do, before anyone asks for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RollbackPreview {
    pub repository: String,
    pub environment: EnvName,
    /// What runs now.
    pub current: DeploymentSummary,
    /// What the rollback restores.
    pub target: DeploymentSummary,
    /// The change back, as `honua plan` prints it.
    pub plan: String,
    /// The change back has breaking changes (a rollback acknowledges them: it restores what ran).
    pub breaking: bool,
}

/// `POST /api/v1/environments/{env}/resume`: the pause lifted, and the deployment of the branch head it
/// planned (none when the head changes nothing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Resumed {
    pub paused: EnvironmentPause,
    pub deployment: Option<DeploymentSummary>,
}

/// `GET /api/v1/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Tokens {
    pub tokens: Vec<super::TokenInfo>,
}

/// `POST /api/v1/tokens/{name}/rotate`: the new secret, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RotatedToken {
    pub name: String,
    pub token: String,
    /// Milliseconds since the epoch: until then the previous secret still works.
    pub previous_valid_until: i64,
}

/// `GET /api/v1/environments`, and each `environments` event of `GET /api/v1/events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Environments {
    pub environments: Vec<EnvironmentView>,
}

/// `GET /api/v1/environments/{env}`: the environment per repository that deploys it, and its agents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EnvironmentDetail {
    pub environment: EnvName,
    pub repositories: Vec<EnvironmentView>,
    pub agents: Vec<AgentView>,
}

/// `GET /api/v1/deployments`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Deployments {
    pub deployments: Vec<DeploymentView>,
}

/// `GET /api/v1/agents`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Agents {
    pub agents: Vec<AgentView>,
}

/// `GET /api/v1/audit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditLog {
    pub entries: Vec<AuditEntry>,
}

/// `GET /api/v1/signing-key`: the key agents pin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SigningKey {
    /// Always `ed25519`.
    pub algorithm: String,
    /// `ed25519:<hex>`.
    pub public_key: String,
}

/// `GET /api/v1/agent/desired`: what the agent's environment should run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DesiredState {
    pub deployment: DeploymentId,
    pub repository: String,
    pub environment: EnvName,
    pub commit: CommitSha,
    pub sequence: i64,
    pub state: DeploymentState,
    /// The signed record, canonical JSON as signed.
    pub record: Option<String>,
    /// Its Ed25519 signature, hex.
    pub signature: Option<String>,
}

/// One approval given on a pull request and still standing (a push invalidates it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PullApproval {
    pub actor: String,
    /// The head it was given at.
    pub head_sha: CommitSha,
    /// The plan it binds to: at merge it carries only to a deployment that changes and decides the same.
    pub plan_digest: String,
    /// Breaking changes acknowledged.
    pub breaking: bool,
    /// Milliseconds since the epoch.
    pub at: i64,
}

/// A pull request's approvals for one environment, and who may still give one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EnvironmentApprovals {
    pub environment: EnvName,
    pub approvals: Vec<PullApproval>,
    /// The base branch's policy `approvers` (users and `org/team`s); anyone with write access to the
    /// repository may approve as well.
    pub approvers: Vec<String>,
    /// The PR's author may not approve it.
    pub prevent_self_approval: bool,
}

/// `GET /api/v1/pulls/{owner}/{repo}/{number}`: who approved which plan of a pull request, per
/// environment, and who may still approve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PullApprovals {
    /// `owner/name`.
    pub repository: String,
    pub number: u64,
    /// The newest head the service has seen for it.
    pub head: Option<CommitSha>,
    pub environments: Vec<EnvironmentApprovals>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_reads_what_any_agent_says_of_health_and_sync() {
        let beat = |health: &str, sync: &str| {
            let body = serde_json::json!({"deployment": null, "commit": null, "sequence": null, "health": health,
                "version": "0.1.0", "sync": sync, "restored": null, "last_result": null});
            let beat: Heartbeat = serde_json::from_value(body).unwrap();
            (beat.health, beat.sync)
        };
        assert_eq!(beat("healthy", "synced"), (Readiness::Healthy, Sync::Synced));
        assert_eq!(beat("unhealthy", "drifted"), (Readiness::Unhealthy, Sync::Drifted));
        // What this version does not know: unhealthy, and unknown sync, as the views always read them.
        assert_eq!(beat("starting", "partly"), (Readiness::Unhealthy, Sync::Unknown));
        assert_eq!(beat("Healthy", "unknown"), (Readiness::Unhealthy, Sync::Unknown), "names are exact");
    }

    #[test]
    fn a_stored_plan_with_a_kind_or_action_of_another_version_still_reads_whole() {
        let plan = serde_json::json!({"environment": "production", "changes": [
            {"type": "layer", "id": "transport::roads", "action": "removed", "breaking": [
                {"code": "layer.removed", "reason": "gone"}]},
            {"type": "data_source", "id": "db", "action": "added"},
            {"type": "tile_matrix", "id": "web", "action": "renamed"}]});
        let view = PlanView::of(&plan);
        assert_eq!(view.environment, "production");
        let read: Vec<_> = view.changes.iter().map(|c| (c.kind.known().copied(), c.action.known().copied())).collect();
        assert_eq!(
            read,
            [
                (Some(ResourceKind::Layer), Some(Action::Removed)),
                (Some(ResourceKind::DataSource), Some(Action::Added)),
                (None, None)
            ]
        );
        let signs: Vec<_> = view.changes.iter().map(ChangeView::sign).collect();
        assert_eq!(signs, ["!", "+", "~"]);
        // The names this version does not know show and write back as they were written.
        assert_eq!(format!("{} {}", view.changes[2].kind, view.changes[2].action), "tile_matrix renamed");
        assert_eq!(format!("[{:<8}]", view.changes[1].action), "[added   ]");
        assert_eq!(serde_json::to_value(&view.changes[2]).unwrap()["type"], "tile_matrix");
    }
}
