//! The policy's `notifications` block: which messages an environment's deployments send, per event.
//!
//! Only delivery reads it (`controller::notify`), long after the policy was loaded: the block travels
//! with each deployment in the store. An entry of the wrong shape is kept, as an entry with nothing set,
//! so that delivery records it as undeliverable instead of dropping it without a word; a block or an
//! event that is not what the policy format says reads as empty (there is nothing to send).

use serde::{Deserialize, Deserializer, Serialize};

/// The events a policy can ask to be told about, by their names in the policy file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationEvent {
    /// A deployment awaits an approval, or is blocked until one acknowledges its breaking changes.
    ApprovalRequired,
    DeploymentCompleted,
    /// Failed, or rolled back by its agent.
    DeploymentFailed,
}

impl NotificationEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationEvent::ApprovalRequired => "onApprovalRequired",
            NotificationEvent::DeploymentCompleted => "onDeploymentCompleted",
            NotificationEvent::DeploymentFailed => "onDeploymentFailed",
        }
    }
}

/// One environment's `notifications` block.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Notifications {
    #[serde(deserialize_with = "entries", skip_serializing_if = "Vec::is_empty")]
    pub on_approval_required: Vec<NotificationEntry>,
    #[serde(deserialize_with = "entries", skip_serializing_if = "Vec::is_empty")]
    pub on_deployment_completed: Vec<NotificationEntry>,
    #[serde(deserialize_with = "entries", skip_serializing_if = "Vec::is_empty")]
    pub on_deployment_failed: Vec<NotificationEntry>,
}

impl Notifications {
    /// The block as the policy file or the store has it; anything but a mapping is an empty block.
    pub fn from_json(value: serde_json::Value) -> Notifications {
        // serde would also read a struct from a list, by position: the format has no such form.
        if !value.is_object() {
            return Notifications::default();
        }
        serde_json::from_value(value).unwrap_or_default()
    }

    pub fn entries(&self, event: NotificationEvent) -> &[NotificationEntry] {
        match event {
            NotificationEvent::ApprovalRequired => &self.on_approval_required,
            NotificationEvent::DeploymentCompleted => &self.on_deployment_completed,
            NotificationEvent::DeploymentFailed => &self.on_deployment_failed,
        }
    }
}

/// One entry of an event's list, as the policy file writes it (`{type: slack, channel: "#ops"}`);
/// what else an entry says (an e-mail's recipients) is for transports this service does not have.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationEntry {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

/// An event's list: anything but a list is none; an entry that is not an entry is an empty one.
fn entries<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<NotificationEntry>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Array(items) => {
            items.into_iter().map(|item| serde_json::from_value(item).unwrap_or_default()).collect()
        }
        _ => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn entries_are_read_by_event_and_misshapen_ones_are_kept_empty() {
        let block = Notifications::from_json(json!({
            "onApprovalRequired": [
                {"type": "email", "recipients": ["ops@example.com"]},
                {"type": "slack", "channel": "#deployments"},
                "not an entry",
                {"type": 5},
            ],
            "onDeploymentCompleted": {"type": "slack"},
            "onDeploymentStarted": [{"type": "slack"}],
        }));
        let required = block.entries(NotificationEvent::ApprovalRequired);
        assert_eq!(required.len(), 4, "every entry is kept: {required:?}");
        assert_eq!(required[0].kind.as_deref(), Some("email"));
        assert_eq!(required[1].channel.as_deref(), Some("#deployments"));
        assert_eq!(required[2], NotificationEntry::default());
        assert_eq!(required[3], NotificationEntry::default());
        assert!(block.entries(NotificationEvent::DeploymentCompleted).is_empty(), "not a list");
        assert!(block.entries(NotificationEvent::DeploymentFailed).is_empty());
    }

    #[test]
    fn a_block_that_is_not_a_mapping_is_empty_and_a_stored_block_reads_back_the_same() {
        for odd in [json!(null), json!("slack"), json!([[{"type": "slack"}]]), json!({"onApprovalRequired": null})] {
            assert_eq!(Notifications::from_json(odd.clone()), Notifications::default(), "{odd}");
        }
        let block = Notifications::from_json(json!({
            "onDeploymentFailed": [{"type": "webhook", "url": "https://hooks.example.org/${TOKEN}"}, 7],
        }));
        let stored = serde_json::to_value(&block).unwrap();
        assert_eq!(
            stored,
            json!({"onDeploymentFailed": [{"type": "webhook", "url": "https://hooks.example.org/${TOKEN}"}, {}]})
        );
        assert_eq!(Notifications::from_json(stored), block);
    }
}
