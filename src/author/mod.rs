//! Changes the tool writes itself: `honua ai` (a request in plain words, a layer from a PostGIS table)
//! and `honua promote` (one environment's configuration carried to the next). Both end the same way:
//! files edited in place with every other byte kept, the result validated and planned locally, and a
//! branch with one commit and a pull request whose body is the plan.

pub mod change;
pub mod intent;
pub mod introspect;
pub mod llm;
pub mod promote;
pub mod publish;
pub mod text;

use std::collections::BTreeSet;

use crate::config::ConfigRepo;
use crate::diagnostic::{Diagnostic, Severity};

/// Validation errors the change brings: those of `after` that `before` does not have (a repository
/// with an old error can still take a good change).
pub fn new_errors(before: &ConfigRepo, after: &ConfigRepo) -> Vec<Diagnostic> {
    let key = |d: &Diagnostic| (d.code.to_string(), d.message.clone());
    let old: BTreeSet<_> = crate::validate::validate_repo(before, None)
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(key)
        .collect();
    crate::validate::validate_repo(after, None)
        .into_iter()
        .filter(|d| d.severity == Severity::Error && !old.contains(&key(d)))
        .collect()
}

/// A unified diff of one file, for `--dry-run`.
pub fn patch(path: &str, before: Option<&str>, after: &str) -> String {
    let before_text = before.unwrap_or("");
    let diff = similar::TextDiff::from_lines(before_text, after);
    let from = if before.is_some() { format!("a/{path}") } else { "/dev/null".to_string() };
    diff.unified_diff().context_radius(3).header(&from, &format!("b/{path}")).to_string()
}
