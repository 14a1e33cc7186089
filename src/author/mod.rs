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

/// Validation errors the change brings: those among `after` (the findings of the changed repository,
/// as a plan already computed them) that `before` does not have (a repository with an old error can
/// still take a good change).
pub fn new_errors(before: &ConfigRepo, after: &[Diagnostic]) -> Vec<Diagnostic> {
    let key = |d: &Diagnostic| (d.code.to_string(), d.message.clone());
    let old: BTreeSet<_> = crate::validate::validate_repo(before, None)
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(key)
        .collect();
    after.iter().filter(|d| d.severity == Severity::Error && !old.contains(&key(d))).cloned().collect()
}

/// A unified diff of one file, for `--dry-run`.
pub fn patch(path: &str, before: Option<&str>, after: &str) -> String {
    let before_text = before.unwrap_or("");
    let diff = similar::TextDiff::from_lines(before_text, after);
    let from = if before.is_some() { format!("a/{path}") } else { "/dev/null".to_string() };
    diff.unified_diff().context_radius(3).header(&from, &format!("b/{path}")).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::source::RepoFiles;

    fn repo(common: &str) -> ConfigRepo {
        let mut files = RepoFiles { env_dirs: vec!["common".into(), "staging".into()], ..Default::default() };
        files.files.insert("environments/common/base-metadata.yaml".into(), common.as_bytes().to_vec());
        files.files.insert("environments/staging/metadata.yaml".into(), b"catalog:\n  id: c\n".to_vec());
        ConfigRepo::from_files(files, "x".into())
    }

    #[test]
    fn only_the_errors_a_change_brings_refuse_it() {
        let base = "catalog: {id: c, title: C}\nfolders: [{id: f, title: F}]\nservices:\n  - {id: s, title: S, folderId: f, serviceType: feature, dataSourceId: d, enabled: true}\nlayers:\n  - {id: old, serviceId: s, title: Old, geometryType: Point, idField: id, geometryField: geom}\n";
        let before = repo(base);
        let findings = |r: &ConfigRepo| crate::validate::validate_repo(r, None);
        assert!(new_errors(&before, &findings(&before)).is_empty());
        // A layer without its geometry type: Honua refuses the file.
        let broken = format!("{base}  - {{id: new, serviceId: s, title: New, idField: id, geometryField: geom}}\n");
        let errors = new_errors(&before, &findings(&repo(&broken)));
        assert!(!errors.is_empty(), "the new layer's error is found");
        assert!(errors.iter().all(|d| d.message.contains("new")), "{errors:#?}");
        // An error the base already has is not the change's.
        assert!(new_errors(&repo(&broken), &findings(&repo(&broken))).is_empty());
    }

    #[test]
    fn patches_are_unified_diffs() {
        let p = patch("environments/a.yaml", Some("a: 1\nb: 2\n"), "a: 1\nb: 3\n");
        assert!(p.starts_with("--- a/environments/a.yaml\n+++ b/environments/a.yaml\n"), "{p}");
        assert!(p.contains("-b: 2\n+b: 3\n"), "{p}");
        assert!(patch("n.hcl", None, "x\n").starts_with("--- /dev/null\n+++ b/n.hcl\n"));
    }
}
