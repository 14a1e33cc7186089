//! The deployment policy (`.gitops/deployment-policy.yaml`) and its evaluation into a [`Decision`].
//!
//! A policy is always read from the base of a change (the PR's base branch, the `--from` side), never
//! from the change itself: a PR must not be able to loosen its own gate. An environment the policy does
//! not mention gets the safe default: approval required.

pub mod notifications;
pub mod rules;
pub mod window;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::dialect::place;
use crate::config::node::Node;
use crate::config::source::SourceMap;
use crate::diagnostic::{Diagnostic, Severity};
use crate::diff::ChangeSet;

pub use notifications::{NotificationEntry, NotificationEvent, Notifications};
pub use rules::ApprovalRule;
pub use window::{Schedule, Window};

/// What the policy says of a ChangeSet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", content = "reasons", rename_all = "snake_case")]
pub enum Decision {
    Auto,
    NeedsApproval(Vec<String>),
    Blocked(Vec<String>),
}

impl Decision {
    pub fn label(&self) -> &'static str {
        match self {
            Decision::Auto => "auto",
            Decision::NeedsApproval(_) => "needs_approval",
            Decision::Blocked(_) => "blocked",
        }
    }

    pub fn reasons(&self) -> &[String] {
        match self {
            Decision::Auto => &[],
            Decision::NeedsApproval(r) | Decision::Blocked(r) => r,
        }
    }
}

/// How a deployment reaches an environment's agents: all at once, or one after another (each waits for the
/// one before it to complete). Signed with the deployment ([`crate::plan::signing::ApplySafety`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Rollout {
    #[default]
    All,
    OneAtATime,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Safety {
    pub require_backup: bool,
    /// Seconds the agent waits for health and post-validation after a reload.
    pub health_check_timeout: u64,
    pub rollback_on_failure: bool,
    pub deployment_windows: Vec<Window>,
    pub blackout_periods: Vec<window::Blackout>,
}

impl Default for Safety {
    fn default() -> Self {
        Safety {
            require_backup: true,
            health_check_timeout: 120,
            rollback_on_failure: true,
            deployment_windows: Vec::new(),
            blackout_periods: Vec::new(),
        }
    }
}

/// The policy of one environment. Defaults are the cautious ones.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentPolicy {
    pub auto_approve: bool,
    pub requires_validation: bool,
    pub allow_breaking_changes: bool,
    pub approval_rules: Vec<ApprovalRule>,
    pub safety: Safety,
    /// What to send on which event; delivery is the service's job.
    pub notifications: Notifications,
    /// GitHub users or `org/team` slugs allowed to approve, besides writers of the repository.
    pub approvers: Vec<String>,
    pub prevent_self_approval: bool,
    pub self_heal: bool,
    pub rollout: Rollout,
    /// Seconds a deployment may wait for its approval before it expires (`approvalTimeout`); `None`: it
    /// waits until it is approved, rejected or superseded.
    pub approval_timeout: Option<u64>,
}

impl Default for EnvironmentPolicy {
    fn default() -> Self {
        EnvironmentPolicy {
            auto_approve: false,
            requires_validation: true,
            allow_breaking_changes: true,
            approval_rules: Vec::new(),
            safety: Safety::default(),
            notifications: Notifications::default(),
            approvers: Vec::new(),
            prevent_self_approval: false,
            self_heal: false,
            rollout: Rollout::All,
            approval_timeout: None,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Policy {
    pub environments: BTreeMap<String, EnvironmentPolicy>,
}

const ENV_KEYS: [&str; 11] = [
    "autoApprove",
    "requiresValidation",
    "allowBreakingChanges",
    "approvalRules",
    "safety",
    "notifications",
    "approvers",
    "preventSelfApproval",
    "selfHeal",
    "rollout",
    "approvalTimeout",
];

impl Policy {
    /// Reads a policy document. Problems (bad types, rules that do not parse, unknown environments)
    /// are diagnostics with positions; a problematic entry falls back to the cautious default.
    pub fn load(doc: &Node, sources: &SourceMap, known_envs: &[String], out: &mut Vec<Diagnostic>) -> Policy {
        let mut policy = Policy::default();
        let Some(envs) = doc.get("environments").and_then(Node::as_map) else {
            out.push(Diagnostic::error(
                "policy.invalid",
                place(sources, doc.loc),
                "the deployment policy has no `environments:` mapping; add one entry per environment (see the README)",
            ));
            return policy;
        };
        for entry in &envs.entries {
            let name = &entry.key;
            if !known_envs.is_empty() && !known_envs.iter().any(|e| e == name) {
                out.push(Diagnostic::error(
                    "policy.unknown_environment",
                    place(sources, entry.key_loc),
                    format!(
                        "the policy names environment `{name}`, but there is no `environments/{name}/` directory (environments: {}); fix the name or add the environment",
                        known_envs.join(", ")
                    ),
                ));
            }
            policy.environments.insert(name.to_string(), load_environment(&entry.value, sources, out));
        }
        policy
    }

    /// The policy of `env`; the cautious default when the policy does not mention it.
    /// The policy a loaded repository carries (the cautious default when it has none). Problems in it
    /// are `validate`'s to report; here an entry that does not load falls back to the default.
    pub fn of(repo: &crate::config::ConfigRepo) -> Policy {
        let envs: Vec<String> = repo.environments().map(|e| e.to_string()).collect();
        repo.policy.as_ref().map(|p| Policy::load(&p.root, &repo.sources, &envs, &mut Vec::new())).unwrap_or_default()
    }

    pub fn for_env(&self, env: &str) -> (EnvironmentPolicy, bool) {
        match self.environments.get(env) {
            Some(p) => (p.clone(), true),
            None => (EnvironmentPolicy::default(), false),
        }
    }
}

fn load_environment(node: &Node, sources: &SourceMap, out: &mut Vec<Diagnostic>) -> EnvironmentPolicy {
    let mut p = EnvironmentPolicy::default();
    let Some(map) = node.as_map() else {
        out.push(type_error(sources, node, "this environment's policy", "a mapping"));
        return p;
    };
    for e in &map.entries {
        if !ENV_KEYS.contains(&e.key.as_str()) {
            out.push(Diagnostic::warning(
                "policy.unknown_key",
                place(sources, e.key_loc),
                format!("unknown policy key `{}` is ignored; known keys: {}", e.key, ENV_KEYS.join(", ")),
            ));
        }
    }
    let mut flag = |key: &str, slot: &mut bool| {
        if let Some(n) = map.get(key) {
            match n.as_bool() {
                Some(b) => *slot = b,
                None => out.push(type_error(sources, n, &format!("`{key}`"), "true or false")),
            }
        }
    };
    flag("autoApprove", &mut p.auto_approve);
    flag("requiresValidation", &mut p.requires_validation);
    flag("allowBreakingChanges", &mut p.allow_breaking_changes);
    flag("preventSelfApproval", &mut p.prevent_self_approval);
    flag("selfHeal", &mut p.self_heal);
    if let Some(rules) = map.get("approvalRules") {
        match rules.as_seq() {
            Some(items) => p.approval_rules = items.iter().map(|r| ApprovalRule::load(r, sources, out)).collect(),
            None => out.push(type_error(sources, rules, "`approvalRules`", "a list")),
        }
    }
    if let Some(safety) = map.get("safety") {
        p.safety = load_safety(safety, sources, out);
    }
    if let Some(n) = map.get("notifications") {
        p.notifications = Notifications::from_json(n.to_json());
    }
    if let Some(n) = map.get("approvers") {
        p.approvers = n.as_seq().unwrap_or_default().iter().filter_map(|a| a.as_str().map(str::to_string)).collect();
    }
    if let Some(n) = map.get("approvalTimeout") {
        match duration_seconds(n) {
            Some(secs) => p.approval_timeout = Some(secs),
            None => out.push(type_error(
                sources,
                n,
                "`approvalTimeout`",
                "a duration: seconds, or a whole number with s, m, h or d (`24h`)",
            )),
        }
    }
    if let Some(n) = map.get("rollout") {
        p.rollout = match n.as_str() {
            Some("all") => Rollout::All,
            Some("one-at-a-time") => Rollout::OneAtATime,
            _ => {
                out.push(type_error(sources, n, "`rollout`", "`all` or `one-at-a-time`"));
                Rollout::All
            }
        };
    }
    p
}

fn load_safety(node: &Node, sources: &SourceMap, out: &mut Vec<Diagnostic>) -> Safety {
    let mut s = Safety::default();
    let Some(map) = node.as_map() else {
        out.push(type_error(sources, node, "`safety`", "a mapping"));
        return s;
    };
    for (key, slot) in [("requireBackup", &mut s.require_backup), ("rollbackOnFailure", &mut s.rollback_on_failure)] {
        if let Some(n) = map.get(key) {
            match n.as_bool() {
                Some(b) => *slot = b,
                None => out.push(type_error(sources, n, &format!("`{key}`"), "true or false")),
            }
        }
    }
    if let Some(n) = map.get("healthCheckTimeout") {
        match n.as_i64() {
            Some(secs) if secs > 0 => s.health_check_timeout = secs as u64,
            _ => out.push(type_error(sources, n, "`healthCheckTimeout`", "a positive number of seconds")),
        }
    }
    if let Some(n) = map.get("deploymentWindows") {
        s.deployment_windows =
            n.as_seq().unwrap_or_default().iter().filter_map(|w| Window::load(w, sources, out)).collect();
    }
    if let Some(n) = map.get("blackoutPeriods") {
        s.blackout_periods =
            n.as_seq().unwrap_or_default().iter().filter_map(|b| window::Blackout::load(b, sources, out)).collect();
    }
    s
}

/// A positive duration in seconds: a number of seconds, or a whole number with a unit (`90s`, `30m`, `24h`,
/// `7d`). At most ten years, so a deadline computed from it never overflows.
fn duration_seconds(node: &Node) -> Option<u64> {
    let secs = match node.as_i64() {
        Some(secs) => u64::try_from(secs).ok()?,
        None => {
            let text = node.as_str()?.trim();
            let unit = match text.chars().last()? {
                's' => 1,
                'm' => 60,
                'h' => 3_600,
                'd' => 86_400,
                _ => return None,
            };
            let number = &text[..text.len() - 1];
            if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            number.parse::<u64>().ok()?.checked_mul(unit)?
        }
    };
    (1..=10 * 365 * 86_400).contains(&secs).then_some(secs)
}

pub(crate) fn type_error(sources: &SourceMap, node: &Node, what: &str, expected: &str) -> Diagnostic {
    Diagnostic::new(
        Severity::Error,
        "policy.invalid",
        place(sources, node.loc),
        format!(
            "{what} must be {expected}, found {} `{node}`; the cautious default is used until this is fixed",
            node.kind()
        ),
    )
}

/// The decision for one environment's ChangeSet.
///
/// `validation_errors` are the errors of the target revision in this environment; `policy_changed`
/// says whether the change itself edits the deployment policy (always a reason for approval).
pub fn decide(
    policy: &EnvironmentPolicy,
    known: bool,
    changes: &ChangeSet,
    validation_errors: usize,
    policy_changed: bool,
) -> Decision {
    let mut blocked = Vec::new();
    let mut approval = Vec::new();
    if policy.requires_validation && validation_errors > 0 {
        blocked.push(format!(
            "{validation_errors} validation error(s) in the new configuration; fix them (requiresValidation is on)"
        ));
    }
    let breaking = changes.summary.breaking;
    if breaking > 0 && !policy.allow_breaking_changes {
        blocked.push(format!(
            "{breaking} breaking change(s) and allowBreakingChanges is false: an approver must acknowledge them (approve with --breaking)"
        ));
    }
    if !known {
        approval
            .push(format!("the policy has no entry for `{}`: approval is required by default", changes.environment));
    } else if !policy.auto_approve {
        approval.push("autoApprove is false for this environment".to_string());
    }
    if policy_changed {
        approval.push("this change edits .gitops/deployment-policy.yaml; policy changes always need approval".into());
    }
    for rule in &policy.approval_rules {
        if rule.matches(changes) {
            approval.push(rule.label.clone());
        }
    }
    if !blocked.is_empty() {
        blocked.extend(approval);
        Decision::Blocked(blocked)
    } else if !approval.is_empty() {
        Decision::NeedsApproval(approval)
    } else {
        Decision::Auto
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::source::RepoFiles;
    use crate::config::ConfigRepo;

    /// The production policy written as `lines` (indented under `production:`), loaded with its diagnostics.
    fn production(lines: &str) -> (EnvironmentPolicy, Vec<Diagnostic>) {
        let mut files = RepoFiles::default();
        let policy = format!("environments:\n  production:\n{lines}");
        files.files.insert(".gitops/deployment-policy.yaml".into(), policy.into_bytes());
        files.files.insert("environments/production/metadata.yaml".into(), b"layers: []\n".to_vec());
        files.env_dirs.push("production".into());
        let repo = ConfigRepo::from_files(files, "test".into());
        let mut out = Vec::new();
        let doc = &repo.policy.as_ref().expect("the policy file is read").root;
        let policy = Policy::load(doc, &repo.sources, &["production".into()], &mut out);
        (policy.for_env("production").0, out)
    }

    #[test]
    fn an_approval_timeout_is_seconds_or_a_whole_number_with_a_unit() {
        for (written, seconds) in [("3600", 3_600), ("90s", 90), ("30m", 1_800), ("24h", 86_400), ("\"7d\"", 604_800)] {
            let (p, out) = production(&format!("    approvalTimeout: {written}\n"));
            assert_eq!((p.approval_timeout, out.len()), (Some(seconds), 0), "{written}: {out:?}");
        }
        assert_eq!(production("    autoApprove: false\n").0.approval_timeout, None, "no timeout unless written");
        for wrong in ["0", "-5", "1.5h", "h", "24 h", "2w", "true", "[1]", "99999999999d", "3651d"] {
            let (p, out) = production(&format!("    approvalTimeout: {wrong}\n"));
            assert_eq!(p.approval_timeout, None, "{wrong}");
            assert_eq!(out.len(), 1, "{wrong}: {out:?}");
            assert_eq!(out[0].code, "policy.invalid");
            assert!(out[0].message.contains("`approvalTimeout` must be a duration"), "{}", out[0].message);
            assert_eq!((out[0].file.as_str(), out[0].line, out[0].column), (".gitops/deployment-policy.yaml", 3, 22));
        }
    }
}
