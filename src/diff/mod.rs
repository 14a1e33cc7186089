//! Semantic diff of two revisions of one environment's effective config, with breaking-change
//! classification: the [`ChangeSet`] reviewers and policies act on.

pub mod breaking;
mod hcl;
pub mod values;

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use crate::config::resource::{resources, Resource, ResourceKind};
use crate::config::{ConfigRepo, EffectiveConfig, EnvName};
pub use breaking::Breaking;
pub use values::FieldChange;

named! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, utoipa::ToSchema)]
    pub enum Action {
        Added,
        Modified,
        Removed,
    }
}

/// One resource added, removed or modified.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    #[serde(rename = "type")]
    pub kind: ResourceKind,
    /// Layers as `service::layer`, everything else by its id.
    pub id: String,
    pub action: Action,
    pub fields: Vec<FieldChange>,
    pub breaking: Vec<Breaking>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub added: usize,
    pub modified: usize,
    pub removed: usize,
    /// Number of breaking findings (a change may carry several).
    pub breaking: usize,
}

/// The changes of one environment between two revisions.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChangeSet {
    pub environment: EnvName,
    pub changes: Vec<Change>,
    pub summary: Summary,
}

impl ChangeSet {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Breaking changes first (they are what a reviewer must see), then by kind and id.
    pub fn sorted_for_review(&self) -> Vec<&Change> {
        let mut v: Vec<&Change> = self.changes.iter().collect();
        v.sort_by_key(|c| (c.breaking.is_empty(), c.kind, c.id.to_lowercase()));
        v
    }
}

/// Diffs every environment present on either side (or only `only`), in promotion order.
pub fn diff_repositories(from: &ConfigRepo, to: &ConfigRepo, only: Option<&EnvName>) -> Vec<ChangeSet> {
    let names: BTreeSet<&EnvName> = from.environments().chain(to.environments()).collect();
    names
        .into_iter()
        .filter(|e| only.is_none_or(|o| o == *e))
        .map(|env| diff_environment(env, from.effective(env), to.effective(env)))
        .collect()
}

/// Diffs one environment. Either side may be missing (an environment added or removed).
pub fn diff_environment(env: &EnvName, old: Option<&EffectiveConfig>, new: Option<&EffectiveConfig>) -> ChangeSet {
    let old_res = old.map(resources).unwrap_or_default();
    let new_res = new.map(resources).unwrap_or_default();
    let ctx = breaking::Context { old: &old_res };
    let old_by_key: HashMap<_, &Resource> = old_res.iter().map(|r| (r.key(), r)).collect();
    let new_by_key: HashMap<_, &Resource> = new_res.iter().map(|r| (r.key(), r)).collect();
    let mut changes = Vec::new();
    for n in &new_res {
        match old_by_key.get(&n.key()) {
            Some(o) => {
                let mut fields = Vec::new();
                values::diff("", Some(o.node), Some(n.node), &mut fields);
                let breaking = breaking::modified(o, n);
                if !fields.is_empty() || !breaking.is_empty() {
                    changes.push(Change {
                        kind: n.kind,
                        id: n.display_id(),
                        action: Action::Modified,
                        fields,
                        breaking,
                    });
                }
            }
            None => changes.push(Change {
                kind: n.kind,
                id: n.display_id(),
                action: Action::Added,
                fields: Vec::new(),
                breaking: Vec::new(),
            }),
        }
    }
    for o in old_res.iter().filter(|o| !new_by_key.contains_key(&o.key())) {
        changes.push(Change {
            kind: o.kind,
            id: o.display_id(),
            action: Action::Removed,
            fields: Vec::new(),
            breaking: breaking::removed(o, &ctx),
        });
    }
    changes.sort_by_key(|c| (c.kind, c.id.to_lowercase()));
    let summary = Summary {
        added: changes.iter().filter(|c| c.action == Action::Added).count(),
        modified: changes.iter().filter(|c| c.action == Action::Modified).count(),
        removed: changes.iter().filter(|c| c.action == Action::Removed).count(),
        breaking: changes.iter().map(|c| c.breaking.len()).sum(),
    };
    ChangeSet { environment: env.clone(), changes, summary }
}
