//! The statuses people read (a deployment's state, an agent's phase, health, sync, an environment's
//! status) and how each reads at a glance. Decided once here, so the CLI's tables, `honua watch` and the
//! pages agree (each front end only maps a [`Tone`] to its own colour or CSS class), and a new state
//! cannot be added without saying how it reads.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::wire::{Health, Sync, Verdict};
use super::{DeploymentState, Phase};

/// How a status reads at a glance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Done and well: completed, in sync, healthy, synced.
    Good,
    /// Needs someone: failed, rolled back, rejected, expired, drifted, unhealthy.
    Bad,
    /// Under way or waiting for a decision.
    Waiting,
    /// Nothing to say: superseded, unknown.
    Plain,
}

/// A status as it is shown: its name (the wire name) and its tone.
pub trait Status: Copy + Into<&'static str> {
    fn tone(self) -> Tone;

    fn name(self) -> &'static str {
        self.into()
    }
}

impl Status for DeploymentState {
    fn tone(self) -> Tone {
        use DeploymentState::*;
        match self {
            Completed => Tone::Good,
            Failed | RolledBack | Rejected | Expired => Tone::Bad,
            Pending | AwaitingApproval | Blocked | Approved | Applying => Tone::Waiting,
            Superseded => Tone::Plain,
        }
    }
}

impl Status for Phase {
    fn tone(self) -> Tone {
        self.target_state().tone()
    }
}

impl Status for Health {
    fn tone(self) -> Tone {
        match self {
            Health::Healthy => Tone::Good,
            Health::Degraded | Health::Unhealthy | Health::Stale => Tone::Bad,
            Health::Unknown => Tone::Plain,
        }
    }
}

impl Status for Sync {
    fn tone(self) -> Tone {
        match self {
            Sync::Synced => Tone::Good,
            Sync::Drifted => Tone::Bad,
            Sync::Unknown => Tone::Plain,
        }
    }
}

impl Status for Verdict {
    fn tone(self) -> Tone {
        match self {
            Verdict::Auto => Tone::Good,
            // As the deployments they make: awaiting approval, or blocked until a fix or an acknowledgement.
            Verdict::NeedsApproval | Verdict::Blocked => Tone::Waiting,
            Verdict::Unknown => Tone::Plain,
        }
    }
}

/// An environment's status line: its pending deployment's state, else `in_sync` when the last one
/// completed, else the last one's state; `unknown` before any. On the wire, the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvironmentStatus {
    Deployment(DeploymentState),
    InSync,
    Unknown,
}

impl EnvironmentStatus {
    /// From an environment's pending and last deployments.
    pub fn of(pending: Option<DeploymentState>, last: Option<DeploymentState>) -> EnvironmentStatus {
        match (pending, last) {
            (Some(state), _) => EnvironmentStatus::Deployment(state),
            (None, Some(DeploymentState::Completed)) => EnvironmentStatus::InSync,
            (None, Some(state)) => EnvironmentStatus::Deployment(state),
            (None, None) => EnvironmentStatus::Unknown,
        }
    }

    /// A name as the service wrote it; one of another version reads as unknown.
    pub fn parse(name: &str) -> EnvironmentStatus {
        match name {
            "in_sync" => EnvironmentStatus::InSync,
            _ => DeploymentState::parse(name).map_or(EnvironmentStatus::Unknown, EnvironmentStatus::Deployment),
        }
    }
}

impl From<EnvironmentStatus> for &'static str {
    fn from(status: EnvironmentStatus) -> &'static str {
        match status {
            EnvironmentStatus::Deployment(state) => state.as_str(),
            EnvironmentStatus::InSync => "in_sync",
            EnvironmentStatus::Unknown => "unknown",
        }
    }
}

impl Status for EnvironmentStatus {
    fn tone(self) -> Tone {
        match self {
            EnvironmentStatus::Deployment(state) => state.tone(),
            EnvironmentStatus::InSync => Tone::Good,
            EnvironmentStatus::Unknown => Tone::Plain,
        }
    }
}

impl std::fmt::Display for EnvironmentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

impl Serialize for EnvironmentStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for EnvironmentStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(EnvironmentStatus::parse(&String::deserialize(deserializer)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_environment_status_is_its_pending_state_else_in_sync_and_reads_back_by_name() {
        use DeploymentState::*;
        let of = EnvironmentStatus::of;
        assert_eq!(of(Some(AwaitingApproval), Some(Completed)).name(), "awaiting_approval");
        assert_eq!(of(None, Some(Completed)).name(), "in_sync");
        assert_eq!(of(None, Some(Failed)).name(), "failed");
        assert_eq!(of(None, None).name(), "unknown");
        for status in DeploymentState::ALL.iter().map(|s| EnvironmentStatus::Deployment(*s)) {
            assert_eq!(EnvironmentStatus::parse(status.name()), status);
        }
        assert_eq!(EnvironmentStatus::parse("in_sync"), EnvironmentStatus::InSync);
        assert_eq!(EnvironmentStatus::parse("orbiting"), EnvironmentStatus::Unknown, "another version's name");
        let json = serde_json::to_string(&EnvironmentStatus::InSync).unwrap();
        assert_eq!((json.as_str(), serde_json::from_str(&json).unwrap()), ("\"in_sync\"", EnvironmentStatus::InSync));
        assert_eq!(format!("[{:<10}]", EnvironmentStatus::InSync), "[in_sync   ]", "pads as a string does");
    }

    #[test]
    fn what_needs_someone_reads_bad_and_what_is_under_way_reads_waiting() {
        assert_eq!(DeploymentState::Expired.tone(), Tone::Bad);
        assert_eq!(DeploymentState::Superseded.tone(), Tone::Plain);
        assert_eq!(Phase::Swapping.tone(), Tone::Waiting);
        assert_eq!(Phase::RolledBack.tone(), Tone::Bad);
        assert_eq!(Health::Degraded.tone(), Tone::Bad);
        assert_eq!(Sync::Unknown.tone(), Tone::Plain);
    }
}
