//! What the PR flow shows on GitHub, computed from diagnostics and plans: the `honua/validate` and
//! `honua/diff` check-run outputs (conclusion, title, summary, annotations in batches of 50, GitHub's
//! per-request maximum) and the sticky plan comment (found again by a hidden marker, split under
//! GitHub's 65,536-character limit with `<details>` blocks kept balanced).

use std::fmt::Write;

use serde::Serialize;

use crate::diagnostic::Diagnostic;
use crate::markdown as md;
use crate::plan::render::{plan_sections, PLAN_HEADING};
use crate::plan::Plan;
use crate::policy::Decision;

pub const VALIDATE_CHECK: &str = "honua/validate";
pub const DIFF_CHECK: &str = "honua/diff";
/// GitHub accepts at most 50 annotations per create/update request.
pub const ANNOTATIONS_PER_REQUEST: usize = 50;
/// GitHub's limit on a check run's summary and on a comment body.
pub const MAX_SUMMARY_CHARS: usize = 65_535;
pub const MAX_COMMENT_CHARS: usize = 65_536;
/// Every plan comment starts with this marker, so the service edits its comment instead of adding one.
pub const PLAN_MARKER: &str = "<!-- honua-gitops:plan";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Conclusion {
    Success,
    Failure,
    Neutral,
    ActionRequired,
}

/// One check-run annotation (GitHub's field names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Annotation {
    pub path: String,
    pub start_line: u32,
    pub end_line: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_column: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_column: Option<u32>,
    pub annotation_level: &'static str,
    pub title: String,
    pub message: String,
}

/// A check run's final output; `annotations` go out [`ANNOTATIONS_PER_REQUEST`] at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutput {
    pub name: &'static str,
    pub conclusion: Conclusion,
    pub title: String,
    pub summary: String,
    pub annotations: Vec<Annotation>,
}

impl CheckOutput {
    /// The annotations in request-sized batches (the first goes with the completion, the rest follow).
    pub fn annotation_batches(&self) -> impl Iterator<Item = &[Annotation]> {
        self.annotations.chunks(ANNOTATIONS_PER_REQUEST)
    }
}

/// Annotations from diagnostics: a whole-file finding (line 0) is placed on line 1; columns are only
/// sent for single-line annotations, as GitHub requires.
pub fn annotations(diagnostics: &[Diagnostic]) -> Vec<Annotation> {
    diagnostics
        .iter()
        .map(|d| {
            let line = d.line.max(1);
            let column = (d.line > 0 && d.column > 0).then_some(d.column);
            Annotation {
                path: d.file.clone(),
                start_line: line,
                end_line: line,
                start_column: column,
                end_column: column,
                annotation_level: if d.is_error() { "failure" } else { "warning" },
                title: d.code.clone(),
                message: d.full_message(),
            }
        })
        .collect()
}

/// `honua/validate`: failure when any error, success otherwise; every diagnostic becomes an annotation.
pub fn validate_check(diagnostics: &[Diagnostic]) -> CheckOutput {
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = diagnostics.len() - errors;
    let title = match (errors, warnings) {
        (0, 0) => "Configuration is valid".to_string(),
        (0, w) => format!("Valid, with {w} warning(s)"),
        (e, w) => format!("{e} error(s), {w} warning(s)"),
    };
    let mut summary = format!("**{errors}** error(s), **{warnings}** warning(s).\n");
    if !diagnostics.is_empty() {
        let mut codes: Vec<(&str, usize)> = Vec::new();
        for d in diagnostics {
            match codes.iter_mut().find(|(c, _)| *c == d.code) {
                Some((_, n)) => *n += 1,
                None => codes.push((&d.code, 1)),
            }
        }
        summary.push_str("\n| code | count |\n|---|---|\n");
        for (code, n) in codes {
            let _ = writeln!(summary, "| {} | {n} |", crate::markdown::code_in_table(code));
        }
        summary.push_str("\nEach finding is annotated on its line in **Files changed**; `honua validate` prints the same list locally.\n");
    }
    CheckOutput {
        name: VALIDATE_CHECK,
        conclusion: if errors > 0 { Conclusion::Failure } else { Conclusion::Success },
        title,
        summary: truncate(summary, MAX_SUMMARY_CHARS),
        annotations: annotations(diagnostics),
    }
}

/// `honua/diff`: neutral when no environment changes, action required when a plan is blocked,
/// success otherwise; the summary is the Markdown plan.
pub fn diff_check(plans: &[Plan]) -> CheckOutput {
    let changed: Vec<&Plan> = plans.iter().filter(|p| p.has_changes()).collect();
    let blocked: Vec<&str> =
        changed.iter().filter(|p| matches!(p.decision, Decision::Blocked(_))).map(|p| p.environment.as_str()).collect();
    let breaking: usize = changed.iter().map(|p| p.changes.summary.breaking).sum();
    let (conclusion, title) = if changed.is_empty() {
        (Conclusion::Neutral, "No changes to any environment".to_string())
    } else if !blocked.is_empty() {
        (Conclusion::ActionRequired, format!("Blocked in {}: see the plan for what is needed", blocked.join(", ")))
    } else {
        (Conclusion::Success, format!("{} environment(s) change, {breaking} breaking change(s)", changed.len()))
    };
    let mut summary = String::new();
    if !blocked.is_empty() {
        summary.push_str(
            "> A blocked plan needs an explicit decision: fix validation errors, or acknowledge breaking changes with `/honua approve <environment> --breaking`.\n\n",
        );
    }
    for section in plan_sections(plans) {
        summary.push_str(&section);
    }
    CheckOutput {
        name: DIFF_CHECK,
        conclusion,
        title,
        summary: truncate(summary, MAX_SUMMARY_CHARS),
        annotations: Vec::new(),
    }
}

/// A check that was not run because its job was quarantined: neutral (it neither passes nor blocks on
/// its own) with the reason (the service's own words) and what to do.
pub fn quarantined_check(name: &'static str, reason: &str) -> CheckOutput {
    CheckOutput {
        name,
        conclusion: Conclusion::Neutral,
        title: "Not checked: the job was quarantined".into(),
        summary: format!(
            "**{}.**\n\nThe service did not check this head, so nothing of it was planned or approved. Push a \
             new commit, or re-run this check, once the cause is fixed; the service's log names the job's \
             delivery.\n",
            reason
        ),
        annotations: Vec::new(),
    }
}

fn truncate(s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let note = "\n\n… (truncated: GitHub limits this text; `honua plan` shows everything)\n";
    let mut cut = max - note.len();
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{note}", &s[..cut])
}

/// The plan comment, as one body or several parts when it exceeds GitHub's limit. Each part starts
/// with the marker (`<!-- honua-gitops:plan part=2/3 -->`), splits fall between environments where
/// possible, and a `<details>` block or table cut in two is closed and reopened so every part renders.
pub fn plan_comment(plans: &[Plan], details_url: Option<&str>, approvals: &[ApprovalLine]) -> Vec<String> {
    plan_comment_with_limit(plans, details_url, approvals, MAX_COMMENT_CHARS)
}

/// Who approved an environment's plan on the pull request (at its current head), and who may.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalLine {
    pub environment: String,
    /// `(actor, plan digest, breaking changes acknowledged)`.
    pub approved: Vec<(String, String, bool)>,
    /// The policy's `approvers`, besides the repository's writers.
    pub approvers: Vec<String>,
    pub prevent_self_approval: bool,
}

/// The approvals table of the plan comment: one row per environment that needs an approval. Names are
/// code spans, so nobody is mentioned (and notified) by the bot.
fn approvals_section(lines: &[ApprovalLine]) -> String {
    if lines.is_empty() {
        return String::new();
    }
    let mut out = String::from("### Approvals\n\n| Environment | Approved by | May approve |\n|---|---|---|\n");
    for line in lines {
        let approved = if line.approved.is_empty() {
            "none yet".to_string()
        } else {
            line.approved
                .iter()
                .map(|(actor, digest, breaking)| {
                    let short: String = digest.chars().take(19).collect();
                    format!(
                        "{} for plan {}{}",
                        md::code_in_table(actor),
                        md::code_in_table(&format!("{short}…")),
                        if *breaking { " (breaking changes acknowledged)" } else { "" }
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        let mut who = vec!["repository writers".to_string()];
        who.extend(line.approvers.iter().map(|a| md::code_in_table(a)));
        let author = if line.prevent_self_approval { "; not the PR's author" } else { "" };
        let _ = writeln!(out, "| {} | {approved} | {}{author} |", md::code_in_table(&line.environment), who.join(", "));
    }
    out.push('\n');
    out
}

pub fn plan_comment_with_limit(
    plans: &[Plan],
    details_url: Option<&str>,
    approvals: &[ApprovalLine],
    limit: usize,
) -> Vec<String> {
    let footer = match details_url {
        Some(url) => format!("\n<sub>[Plan details]({url}) · updated on every push · approve with `/honua approve <environment>`</sub>\n"),
        None => "\n<sub>Updated on every push · approve with `/honua approve <environment>`</sub>\n".to_string(),
    };
    // Room for the marker line of each part (the part numbers are filled in at the end).
    let budget = limit.saturating_sub(footer.len() + PLAN_HEADING.len() + 64).max(1024);
    let mut parts: Vec<String> = vec![String::new()];
    let mut sections = plan_sections(plans);
    let approvals = approvals_section(approvals);
    if !approvals.is_empty() {
        sections.push(approvals);
    }
    for section in sections {
        let current = parts.last_mut().expect("one part at least");
        if current.len() + section.len() <= budget {
            current.push_str(&section);
            continue;
        }
        if !current.is_empty() {
            parts.push(String::new());
        }
        for piece in split_balanced(&section, budget) {
            let current = parts.last_mut().expect("one part at least");
            if !current.is_empty() && current.len() + piece.len() > budget {
                parts.push(String::new());
            }
            parts.last_mut().expect("one part at least").push_str(&piece);
        }
    }
    let n = parts.len();
    parts
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            let marker =
                if n == 1 { format!("{PLAN_MARKER} -->\n") } else { format!("{PLAN_MARKER} part={}/{n} -->\n", i + 1) };
            let heading = if i == 0 {
                PLAN_HEADING.to_string()
            } else {
                format!("## Honua deployment plan (part {}/{n})\n\n", i + 1)
            };
            format!("{marker}{heading}{body}{footer}")
        })
        .collect()
}

/// Which part a comment body is, when it is one of our plan comments: `Some((part, of))`.
pub fn plan_comment_part(body: &str) -> Option<(usize, usize)> {
    let rest = body.strip_prefix(PLAN_MARKER)?;
    let rest = rest.trim_start();
    if rest.starts_with("-->") {
        return Some((1, 1));
    }
    let spec = rest.strip_prefix("part=")?.split_whitespace().next()?;
    let (a, b) = spec.split_once('/')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Splits one section at line boundaries into pieces of at most `budget` bytes, closing open
/// `<details>` blocks at each cut and reopening them (and the table header, when cut inside a table)
/// in the next piece.
fn split_balanced(section: &str, budget: usize) -> Vec<String> {
    const TABLE_HEAD: &str = "| | Type | Id | Change |\n|---|---|---|---|\n";
    let mut pieces = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    let mut in_table = false;
    for line in section.split_inclusive('\n') {
        let closing = "</details>\n".repeat(depth);
        if !current.is_empty() && current.len() + line.len() + closing.len() > budget {
            current.push_str(&closing);
            pieces.push(std::mem::take(&mut current));
            current.push_str(&"<details><summary>(continued)</summary>\n\n".repeat(depth));
            if in_table && line.starts_with('|') && !line.starts_with("|---") {
                current.push_str(TABLE_HEAD);
            }
        }
        // A single line longer than the budget is cut (rows are already capped, so this is rare).
        if line.len() > budget {
            let mut end = budget.saturating_sub(16);
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            current.push_str(&line[..end]);
            current.push_str(" …\n");
        } else {
            current.push_str(line);
        }
        depth += line.matches("<details>").count();
        depth = depth.saturating_sub(line.matches("</details>").count());
        in_table = line.starts_with('|');
    }
    if !current.is_empty() {
        pieces.push(current);
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::{Diagnostic, Place};

    #[test]
    fn whole_file_findings_land_on_line_one_without_columns() {
        let d = Diagnostic::error("environment.missing_metadata", Place::file("environments/qa"), "missing");
        let a = &annotations(&[d])[0];
        assert_eq!((a.start_line, a.start_column, a.annotation_level), (1, None, "failure"));
    }

    #[test]
    fn annotations_go_out_fifty_at_a_time() {
        let diags: Vec<Diagnostic> =
            (1..=120).map(|i| Diagnostic::warning("w", Place { file: "f.yaml", line: i, column: 1 }, "w")).collect();
        let out = validate_check(&diags);
        let sizes: Vec<usize> = out.annotation_batches().map(<[Annotation]>::len).collect();
        assert_eq!(sizes, [50, 50, 20]);
        assert_eq!(out.conclusion, Conclusion::Success);
        assert_eq!(out.title, "Valid, with 120 warning(s)");
    }

    #[test]
    fn markers_identify_parts() {
        assert_eq!(plan_comment_part("<!-- honua-gitops:plan -->\n## x"), Some((1, 1)));
        assert_eq!(plan_comment_part("<!-- honua-gitops:plan part=2/3 -->\n"), Some((2, 3)));
        assert_eq!(plan_comment_part("## Honua deployment plan"), None);
    }
}
