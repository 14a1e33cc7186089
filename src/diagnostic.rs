//! Diagnostics: the findings of loading and validation, each tied to a real place in a file.
//!
//! Every diagnostic that comes from a file carries a 1-based line and column, because GitHub annotations
//! and editors are built from them. Diagnostics are plain data; rendering lives with the CLI.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// A validation finding. `file` is relative to the repository root (or the path given for a lone file);
/// `line`/`column` are 1-based, and 0 only when a finding concerns a file as a whole (e.g. a missing file).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Diagnostic {
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub severity: Severity,
    pub code: String,
    pub message: String,
    /// The environments whose merged configuration shows this finding; empty for a finding about a file
    /// on its own (a duplicate id, a literal secret) or a lone file.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub environments: Vec<String>,
}

impl Diagnostic {
    pub fn error(code: &str, at: Place<'_>, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, code, at, message)
    }

    pub fn warning(code: &str, at: Place<'_>, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, code, at, message)
    }

    pub fn new(severity: Severity, code: &str, at: Place<'_>, message: impl Into<String>) -> Self {
        Diagnostic {
            file: at.file.to_string(),
            line: at.line,
            column: at.column,
            severity,
            code: code.to_string(),
            message: message.into(),
            environments: Vec::new(),
        }
    }

    /// The same finding, seen in the merged configuration of `env`.
    pub fn in_environment(mut self, env: &str) -> Self {
        self.environments = vec![env.to_string()];
        self
    }

    /// The message with the environments it concerns: "… (in production, staging)".
    pub fn full_message(&self) -> String {
        match self.environments.len() {
            0 => self.message.clone(),
            1 => format!("{} (in environment {})", self.message, self.environments[0]),
            _ => format!("{} (in environments {})", self.message, self.environments.join(", ")),
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Where a diagnostic points: a file and a 1-based position.
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    pub file: &'a str,
    pub line: u32,
    pub column: u32,
}

impl<'a> Place<'a> {
    /// The whole file (no position): used for findings such as "this file is missing".
    pub fn file(file: &'a str) -> Self {
        Place { file, line: 0, column: 0 }
    }
}

/// Sorts by file and position and drops exact duplicates: the same common file is validated once per
/// environment, and its findings must be reported once.
/// The same finding seen in several environments is kept once, naming them all.
pub fn normalize(diagnostics: &mut Vec<Diagnostic>) {
    diagnostics.sort();
    diagnostics.dedup_by(|later, kept| {
        let same = later.file == kept.file
            && later.line == kept.line
            && later.column == kept.column
            && later.severity == kept.severity
            && later.code == kept.code
            && later.message == kept.message;
        if same {
            for env in later.environments.drain(..) {
                if !kept.environments.contains(&env) {
                    kept.environments.push(env);
                }
            }
            kept.environments.sort();
        }
        same
    });
}

pub fn count_errors(diagnostics: &[Diagnostic]) -> usize {
    diagnostics.iter().filter(|d| d.is_error()).count()
}
