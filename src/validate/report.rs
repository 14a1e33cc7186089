//! Renders diagnostics: rustc-like text with the source line, JSON for scripts, GitHub workflow
//! annotations for CI.

use std::fmt::Write;

use crate::config::source::SourceMap;
use crate::diagnostic::Diagnostic;

/// The code of the finding that marks a literal secret; its position is where the secret starts.
const SECRET_LITERAL: &str = "secret.literal";

/// A source line as the report shows it: a literal secret on it (found by the `secret.literal` rule at
/// one of `secret_columns`) is masked, so CI logs never carry it.
fn masked_line(line: &str, secret_columns: &[u32]) -> String {
    let masked = crate::config::secrets::mask_connection(line);
    if masked != line {
        return masked;
    }
    match secret_columns.iter().min() {
        Some(&column) => {
            let keep: String = line.chars().take(column.saturating_sub(1) as usize).collect();
            format!("{keep}•••• (hidden)")
        }
        None => line.to_string(),
    }
}

/// `file:line:col: error[code]: message`, the source line and a caret under the column.
pub fn text(diagnostics: &[Diagnostic], sources: &SourceMap, prefix: &str) -> String {
    let secrets: Vec<(&str, u32, u32)> =
        diagnostics.iter().filter(|d| d.code == SECRET_LITERAL).map(|d| (d.file.as_str(), d.line, d.column)).collect();
    let mut out = String::new();
    for d in diagnostics {
        let file = display_path(prefix, &d.file);
        if d.line == 0 {
            let _ = writeln!(out, "{file}: {}[{}]: {}", d.severity, d.code, d.full_message());
            continue;
        }
        let _ = writeln!(out, "{file}:{}:{}: {}[{}]: {}", d.line, d.column, d.severity, d.code, d.full_message());
        if let Some(line) = sources.line(&d.file, d.line) {
            let gutter = d.line.to_string().len();
            let columns: Vec<u32> =
                secrets.iter().filter(|(f, l, _)| *f == d.file && *l == d.line).map(|(_, _, c)| *c).collect();
            let shown: String = masked_line(line, &columns).chars().take(160).collect();
            let _ = writeln!(out, "{:>gutter$} |", "");
            let _ = writeln!(out, "{} | {}", d.line, shown);
            // Tabs are kept so the caret lines up however the terminal renders them.
            let shown_indent: String = shown
                .chars()
                .take(d.column.saturating_sub(1) as usize)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            let _ = writeln!(out, "{:>gutter$} | {}^", "", shown_indent);
        }
    }
    out
}

/// A list of `{file, line, column, severity, code, message}`.
pub fn json(diagnostics: &[Diagnostic], prefix: &str) -> String {
    let list: Vec<Diagnostic> =
        diagnostics.iter().map(|d| Diagnostic { file: display_path(prefix, &d.file), ..d.clone() }).collect();
    serde_json::to_string_pretty(&list).expect("diagnostics serialize")
}

/// GitHub workflow commands: `::error file=…,line=…,col=…,title=…::message`.
pub fn github(diagnostics: &[Diagnostic], prefix: &str) -> String {
    let mut out = String::new();
    for d in diagnostics {
        let level = if d.is_error() { "error" } else { "warning" };
        let file = escape_property(&display_path(prefix, &d.file));
        let title = escape_property(&d.code);
        if d.line == 0 {
            let _ = writeln!(out, "::{level} file={file},title={title}::{}", escape_data(&d.full_message()));
        } else {
            let _ = writeln!(
                out,
                "::{level} file={file},line={},col={},title={title}::{}",
                d.line,
                d.column,
                escape_data(&d.full_message())
            );
        }
    }
    out
}

/// Counts as one short line: "2 errors, 1 warning".
pub fn summary(diagnostics: &[Diagnostic]) -> String {
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = diagnostics.len() - errors;
    format!("{} error{}, {} warning{}", errors, plural(errors), warnings, plural(warnings))
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Paths are reported relative to where the user pointed (`examples/honua-config/environments/…`),
/// so they can be clicked in a terminal and match the workspace in CI.
pub fn display_path(prefix: &str, file: &str) -> String {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() || prefix == "." || file.starts_with('/') {
        file.to_string()
    } else {
        format!("{prefix}/{file}")
    }
}

fn escape_data(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::{Diagnostic, Place};

    #[test]
    fn text_shows_the_line_and_a_caret() {
        let mut sources = SourceMap::default();
        sources.add("environments/production/metadata.yaml", "layers:\n  - id: parcels\n    geometryType: 7\n");
        let d = Diagnostic::error(
            "schema.type",
            Place { file: "environments/production/metadata.yaml", line: 3, column: 19 },
            "must be a string",
        );
        let out = text(&[d], &sources, "repo");
        assert_eq!(
            out,
            "repo/environments/production/metadata.yaml:3:19: error[schema.type]: must be a string\n  |\n3 |     geometryType: 7\n  |                   ^\n"
        );
    }

    #[test]
    fn github_annotations_escape_properties() {
        let d = Diagnostic::error("a,b", Place { file: "x:y.yaml", line: 2, column: 3 }, "50%\nnext");
        assert_eq!(github(&[d], ""), "::error file=x%3Ay.yaml,line=2,col=3,title=a%2Cb::50%25%0Anext\n");
    }
}
