//! Validation: the server's JSON schema and the semantic rules it enforces, plus ours (literal secrets,
//! policy sanity, environments without metadata), all as located [`Diagnostic`]s.

pub mod hcl;
pub mod instant;
pub mod model;
pub mod report;
pub mod rules;
pub mod schema;
pub mod server;

use crate::config::node::{Node, Value};
use crate::config::source::SourceMap;
use crate::config::{ConfigRepo, EnvName, SingleFile};
use crate::diagnostic::{self, Diagnostic, Severity};
use crate::policy::Policy;

/// Every finding on one effective metadata document (the server's view of an environment): what Honua
/// refuses (errors), what it reads differently from what was written (warnings), and Honua's schema
/// as advice (warnings, dropped where an error already stands at the same place).
pub fn check_metadata(root: &Node, sources: &SourceMap, out: &mut Vec<Diagnostic>) {
    if !matches!(root.value, Value::Map(_)) {
        return;
    }
    // The schema check is the costliest single pass; it runs beside the other rules.
    let (found, schema_findings) = std::thread::scope(|s| {
        let schema = s.spawn(|| {
            let mut found = Vec::new();
            schema::check(root, sources, &mut found);
            found
        });
        let mut found = Vec::new();
        model::check(root, sources, &mut found);
        server::check(root, sources, &mut found);
        rules::references(root, sources, &mut found);
        rules::cors(root, sources, &mut found);
        rules::layer_fields(root, sources, &mut found);
        (found, schema.join().expect("schema thread"))
    });
    let errors: std::collections::HashSet<(&str, u32, u32)> =
        found.iter().filter(|d| d.is_error()).map(|d| (d.file.as_str(), d.line, d.column)).collect();
    let advice: Vec<Diagnostic> =
        schema_findings.into_iter().filter(|d| !errors.contains(&(d.file.as_str(), d.line, d.column))).collect();
    out.extend(found);
    out.extend(advice);
}

/// Whether Honua's JSON-era server refuses a file with this finding (and keeps its previous metadata):
/// every error except those about what it loads but serves wrongly or does not read at all. The
/// stand-in refuses a reload on exactly these.
pub fn refused_by_honua(d: &Diagnostic) -> bool {
    d.is_error() && !matches!(d.code.as_str(), "layer.geometry_type" | "value.invalid" | "honua.stored_query")
}

/// Validates a repository: load problems, each environment's effective config (or only `only`),
/// per-file rules (unique ids, literal secrets) and the policy. Sorted and deduplicated.
pub fn validate_repo(repo: &ConfigRepo, only: Option<&EnvName>) -> Vec<Diagnostic> {
    let mut out = repo.diagnostics.clone();
    // File-by-file rules and the per-environment checks are independent; on large catalogues they
    // each take a core.
    let per_file = std::thread::scope(|s| {
        let per_file = s.spawn(|| {
            let mut found = Vec::new();
            for (path, doc) in repo.documents() {
                if only.is_some_and(|env| !repo.concerns(path, env)) {
                    continue;
                }
                rules::unique_ids(&doc.root, &repo.sources, &mut found);
                // In a repository a literal secret would be committed: an error.
                rules::literal_secrets(&doc.root, &repo.sources, Severity::Error, &mut found);
            }
            found
        });
        for env in repo.environments().filter(|e| only.is_none_or(|o| o == *e)) {
            if repo.is_unreadable(env) {
                continue;
            }
            let Some(effective) = repo.effective(env) else {
                continue;
            };
            // A finding on the merged document names its environment: the same common file can be
            // right in one environment and wrong in another (normalize merges the names).
            let mut found = Vec::new();
            match effective.format {
                crate::config::ConfigFormat::Metadata => check_metadata(&effective.metadata, &repo.sources, &mut found),
                crate::config::ConfigFormat::Hcl => hcl::check(&effective.metadata, &repo.sources, &mut found),
            }
            if let Some(config) = &effective.config {
                rules::cors(config, &repo.sources, &mut found);
            }
            out.extend(found.into_iter().map(|d| d.in_environment(env.as_str())));
        }
        per_file.join().expect("per-file rules thread")
    });
    out.extend(per_file);
    if let Some(policy) = &repo.policy {
        let envs: Vec<String> = repo.environments().map(|e| e.to_string()).collect();
        Policy::load(&policy.root, &repo.sources, &envs, &mut out);
    }
    diagnostic::normalize(&mut out);
    out
}

/// Validates one metadata file on its own. A literal secret is only a warning here: the file may be
/// a local copy that is never committed.
pub fn validate_single(file: &SingleFile) -> Vec<Diagnostic> {
    let mut out = file.diagnostics.clone();
    if let (Some(root), crate::config::ConfigFormat::Hcl) = (&file.metadata, file.format) {
        hcl::check(root, &file.sources, &mut out);
        rules::literal_secrets(root, &file.sources, Severity::Warning, &mut out);
    } else if let Some(root) = &file.metadata {
        if !matches!(root.value, Value::Map(_)) {
            out.push(Diagnostic::error(
                "file.not_a_mapping",
                crate::config::dialect::place(&file.sources, root.loc),
                format!("a metadata file must hold a mapping (`catalog:`, `layers:` …), not a {}", root.kind()),
            ));
        }
        check_metadata(root, &file.sources, &mut out);
        rules::unique_ids(root, &file.sources, &mut out);
        rules::literal_secrets(root, &file.sources, Severity::Warning, &mut out);
    }
    diagnostic::normalize(&mut out);
    out
}

/// A JSON pointer in human form, naming list items by their id: `/layers/3/caching/ttl` →
/// `layers[parcels].caching.ttl`.
pub fn describe_path(root: &Node, pointer: &str) -> String {
    let mut out = String::new();
    let mut node = Some(root);
    for raw in pointer.split('/').skip(1) {
        let segment = raw.replace("~1", "/").replace("~0", "~");
        match node.map(|n| &n.value) {
            Some(Value::Seq(items)) => {
                let item = segment.parse::<usize>().ok().and_then(|i| items.get(i));
                let label = item
                    .and_then(|i| i.get_str("id").or_else(|| i.get_str("name")))
                    .map_or(segment.clone(), str::to_string);
                out.push_str(&format!("[{label}]"));
                node = item;
            }
            _ => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&segment);
                node = node.and_then(|n| n.get(&segment));
            }
        }
    }
    out
}
