//! Honua GitOps: safe, reviewed, audited changes to the configuration of Honua geospatial servers.
//!
//! The offline core: `config` loads a config repository, `validate` finds problems with real positions
//! (as Honua's server would refuse them), `diff` computes semantic changes and breaking changes,
//! `policy` decides, `plan` binds it all into a digest-stamped plan. The online half: `github` (the
//! edge to GitHub), `store` (SQLite or PostgreSQL), `controller` (the handlers of events, deployments,
//! approvals), `server` (HTTP: webhooks, API, pages), `git` (mirrors and the ledger), `agent` (the edge
//! agent beside Honua), `cli`; `standin` is a faithful stand-in Honua for the demo and the tests.

/// An enum whose variants travel as fixed names (in the API, the store, agents' reports, plans): one
/// `snake_case` rule gives serde's names and strum's, and from strum's derives come the inherent `ALL`
/// (in the order declared), `as_str`, `parse` and `Display`. Other derives are the caller's.
macro_rules! named {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($body:tt)* }) => {
        $(#[$meta])*
        #[derive(serde::Serialize, serde::Deserialize)]
        #[derive(strum::IntoStaticStr, strum::EnumString, strum::Display, strum::VariantArray)]
        #[serde(rename_all = "snake_case")]
        #[strum(serialize_all = "snake_case")]
        $vis enum $name { $($body)* }

        impl $name {
            /// Every variant, in the order declared.
            pub const ALL: &'static [$name] = <$name as strum::VariantArray>::VARIANTS;

            pub fn as_str(self) -> &'static str {
                self.into()
            }

            pub fn parse(s: &str) -> Option<$name> {
                s.parse().ok()
            }
        }
    };
}

pub mod agent;
pub mod author;
pub mod cli;
pub mod config;
pub mod controller;
pub mod deployment;
pub mod diagnostic;
pub mod diff;
pub mod git;
pub mod github;
pub mod markdown;
pub mod plan;
pub mod policy;
pub mod server;
pub mod settings;
pub mod standin;
pub mod store;
pub mod validate;

#[cfg(test)]
mod named_tests {
    use std::fmt::Debug;

    /// serde's name of every variant is strum's (what `as_str`, `parse` and `Display` use).
    fn agree<T: Copy + PartialEq + Debug + std::fmt::Display + serde::Serialize>(
        all: &[T],
        as_str: fn(T) -> &'static str,
        parse: fn(&str) -> Option<T>,
    ) {
        for &v in all {
            assert_eq!(serde_json::to_value(v).unwrap(), as_str(v), "{v:?}");
            assert_eq!(parse(as_str(v)), Some(v));
            assert_eq!(v.to_string(), as_str(v));
            assert_eq!(format!("{v:<40}"), format!("{:<40}", as_str(v)), "{v:?} pads in a column");
        }
    }

    #[test]
    fn serde_and_strum_give_every_variant_the_same_name() {
        use crate::deployment::{wire, DeploymentState, Gate, Phase, Role};
        agree(DeploymentState::ALL, DeploymentState::as_str, DeploymentState::parse);
        agree(Gate::ALL, Gate::as_str, Gate::parse);
        agree(crate::deployment::Cause::ALL, crate::deployment::Cause::as_str, crate::deployment::Cause::parse);
        agree(Role::ALL, Role::as_str, Role::parse);
        agree(Phase::ALL, Phase::as_str, Phase::parse);
        agree(crate::deployment::Via::ALL, crate::deployment::Via::as_str, crate::deployment::Via::parse);
        agree(wire::Health::ALL, wire::Health::as_str, wire::Health::parse);
        agree(wire::Sync::ALL, wire::Sync::as_str, wire::Sync::parse);
        agree(wire::Readiness::ALL, wire::Readiness::as_str, wire::Readiness::parse);
        agree(wire::Verdict::ALL, wire::Verdict::as_str, wire::Verdict::parse);
        // The plan's view reads the decision the policy wrote, by the same names.
        use crate::policy::Decision;
        for (decision, verdict) in [
            (Decision::Auto, wire::Verdict::Auto),
            (Decision::NeedsApproval(vec!["production".into()]), wire::Verdict::NeedsApproval),
            (Decision::Blocked(vec!["breaking".into()]), wire::Verdict::Blocked),
        ] {
            let view: wire::DecisionView = serde_json::from_value(serde_json::to_value(&decision).unwrap()).unwrap();
            assert_eq!((view.decision, view.reasons.as_slice()), (verdict, decision.reasons()));
        }
        use crate::agent::JournalPhase;
        agree(JournalPhase::ALL, JournalPhase::as_str, JournalPhase::parse);
        agree(crate::diff::Action::ALL, crate::diff::Action::as_str, crate::diff::Action::parse);
        agree(
            crate::config::ConfigFormat::ALL,
            crate::config::ConfigFormat::as_str,
            crate::config::ConfigFormat::parse,
        );
        use crate::config::resource::ResourceKind;
        agree(ResourceKind::ALL, ResourceKind::as_str, ResourceKind::parse);
        assert_eq!(DeploymentState::AwaitingApproval.as_str(), "awaiting_approval");
        assert_eq!(crate::deployment::Via::GitOnly.as_str(), "git-only", "the name records have always carried");
        assert_eq!(ResourceKind::DataSource.as_str(), "data_source");
        assert_eq!(ResourceKind::Datasource.as_str(), "datasource");
        assert_eq!(DeploymentState::parse("Approved"), None, "names are exact");
    }
}
