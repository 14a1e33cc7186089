//! Plans: per environment, the ChangeSet between two revisions, the policy's Decision, the schedule
//! (windows, blackouts) and a digest that approvals bind to.

pub mod render;
pub mod signing;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{ConfigRepo, EnvName};
use crate::diagnostic::{count_errors, Diagnostic};
use crate::diff::{diff_repositories, values, ChangeSet};
use crate::policy::{decide, window, Decision, Policy, Schedule};
use crate::validate;

/// Validation of the target revision in one environment, as the plan reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ValidationSummary {
    pub errors: usize,
    pub warnings: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub environment: EnvName,
    pub from: String,
    pub to: String,
    pub validation: ValidationSummary,
    #[serde(flatten)]
    pub changes: ChangeSet,
    pub decision: Decision,
    pub schedule: Schedule,
    /// `sha256:<hex>` over the canonical encoding of revisions, environment, changes and decision.
    pub digest: String,
    /// Blocked only by breaking changes, which an approver may acknowledge (`--breaking`); a plan
    /// blocked by validation errors or unreadable files cannot be approved at all.
    #[serde(skip)]
    pub acknowledgeable: bool,
}

impl Plan {
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }
}

/// Everything a plan run produces: one plan per environment and the diagnostics of the target.
#[derive(Debug, Clone)]
pub struct PlanSet {
    pub plans: Vec<Plan>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Plans every environment present on either side (or only `only`). The policy comes from `from`,
/// the base: a change must never be judged by the policy it brings.
pub fn build(from: &ConfigRepo, to: &ConfigRepo, only: Option<&EnvName>, at: DateTime<Utc>) -> PlanSet {
    build_with_policy(from, to, from, only, at)
}

/// [`build`] with the policy read from `policy_source`: for a deployment, the commit the environment
/// runs; for an environment's first deployment, the merged commit itself (it reached the default
/// branch through review under the policy it carries).
pub fn build_with_policy(
    from: &ConfigRepo,
    to: &ConfigRepo,
    policy_source: &ConfigRepo,
    only: Option<&EnvName>,
    at: DateTime<Utc>,
) -> PlanSet {
    let policy = Policy::of(policy_source);
    let policy_changed = match (&policy_source.policy, &to.policy) {
        (Some(a), Some(b)) => !values::same(&a.root, &b.root),
        (None, None) => false,
        _ => true,
    };
    // Validation of the target and the diffs are independent: run them side by side.
    let (diagnostics, changesets) = std::thread::scope(|s| {
        let validation = s.spawn(|| validate::validate_repo(to, only));
        let changesets = diff_repositories(from, to, only);
        (validation.join().expect("validation thread"), changesets)
    });
    let plans = changesets
        .into_iter()
        .map(|changes| {
            let env = changes.environment.clone();
            let in_env = |d: &&Diagnostic| to.concerns(&d.file, &env);
            let validation = ValidationSummary {
                errors: count_errors(
                    &diagnostics
                        .iter()
                        .filter(in_env)
                        .cloned()
                        .collect::<Vec<_>>(),
                ),
                warnings: diagnostics
                    .iter()
                    .filter(in_env)
                    .filter(|d| !d.is_error())
                    .count(),
            };
            let (env_policy, known) = policy.for_env(env.as_str());
            let decision = if to.is_unreadable(&env) || from.is_unreadable(&env) {
                let side = if to.is_unreadable(&env) { "target" } else { "base" };
                Decision::Blocked(vec![format!(
                    "files of `{env}` could not be read on the {side} side; fix them (see the validation findings) before this can be planned"
                )])
            } else if changes.is_empty() && !policy_changed {
                Decision::Auto
            } else {
                decide(
                    &env_policy,
                    known,
                    &changes,
                    validation.errors,
                    policy_changed,
                )
            };
            let schedule = window::schedule(
                &env_policy.safety.deployment_windows,
                &env_policy.safety.blackout_periods,
                at,
            );
            let closed = to.is_unreadable(&env)
                || from.is_unreadable(&env)
                || (env_policy.requires_validation && validation.errors > 0);
            let acknowledgeable = matches!(decision, Decision::Blocked(_)) && !closed;
            let digest = digest(&env, &from.revision, &to.revision, &changes, &decision);
            Plan {
                environment: env,
                from: from.revision.clone(),
                to: to.revision.clone(),
                validation,
                changes,
                decision,
                schedule,
                digest,
                acknowledgeable,
            }
        })
        .collect();
    PlanSet { plans, diagnostics }
}

/// SHA-256 over a canonical JSON encoding (object keys sorted, no whitespace) of what an approver
/// approves. The schedule is left out: it depends on the clock, not on the change.
pub fn digest(env: &EnvName, from: &str, to: &str, changes: &ChangeSet, decision: &Decision) -> String {
    let value = serde_json::json!({
        "format": "honua-plan/1",
        "environment": env,
        "from": from,
        "to": to,
        "changes": changes.changes,
        "decision": decision,
    });
    let mut bytes = Vec::new();
    write_canonical(&value, &mut bytes);
    format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))
}

/// SHA-256 over what a plan changes and decides in one environment, without the revisions: an approval
/// given on a pull request's head carries to the merge commit's deployment only when this matches.
pub fn change_digest(plan: &serde_json::Value) -> String {
    /// The parts of a plan, as written or as stored, that the digest covers, each as it stands.
    #[derive(Default, serde::Deserialize)]
    #[serde(default)]
    struct Covered {
        environment: serde_json::Value,
        changes: serde_json::Value,
        decision: serde_json::Value,
    }
    let covered = Covered::deserialize(plan).unwrap_or_default();
    let value = serde_json::json!({
        "format": "honua-change/1",
        "environment": covered.environment,
        "changes": covered.changes,
        "decision": covered.decision,
    });
    format!("sha256:{}", hex::encode(Sha256::digest(canonical_json(&value))))
}

/// The canonical JSON encoding (object keys sorted, no whitespace) that digests and signatures cover.
pub fn canonical_json(value: &serde_json::Value) -> Vec<u8> {
    let mut bytes = Vec::new();
    write_canonical(value, &mut bytes);
    bytes
}

fn write_canonical(value: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value as J;
    match value {
        J::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend(serde_json::to_vec(k).expect("string encodes"));
                out.push(b':');
                write_canonical(&map[*k], out);
            }
            out.push(b'}');
        }
        J::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => out.extend(serde_json::to_vec(scalar).expect("scalar encodes")),
    }
}

#[cfg(test)]
mod tests {
    /// Approvals stored with a change digest must keep matching: the digest is pinned, computed apart
    /// (Python's `json.dumps(sort_keys=True, separators=(",", ":"))` and SHA-256 over the same parts).
    #[test]
    fn a_change_digest_covers_environment_changes_and_decision_as_stored() {
        let plan = serde_json::json!({"environment": "production", "from": "a", "to": "b",
            "changes": [{"type": "layer", "id": "t::r", "action": "removed"}],
            "decision": {"decision": "needs_approval", "reasons": ["x"]}, "digest": "ignored"});
        let pinned = "sha256:61246d53f0f84407325eee1571e9ed0b9096db0bc6e10af601f2b4700930fe35";
        assert_eq!(super::change_digest(&plan), pinned);
        let mut moved = plan.clone();
        moved["from"] = "c".into();
        assert_eq!(super::change_digest(&moved), pinned, "the revisions are not covered");
        // What is not a plan digests as one with none of the parts, as it always did.
        let none = "sha256:24fedf483b14b0b12a2f6869e6b2130df106444897e710e41e538dc512d5d5cc";
        assert_eq!(super::change_digest(&serde_json::json!("not a plan")), none);
        assert_eq!(super::change_digest(&serde_json::json!({})), none);
    }
}
