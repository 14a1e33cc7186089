//! Renderers for ChangeSets and Plans: text tables for people, Markdown for PR comments and check
//! runs, JSON for scripts (a documented contract, see the README).

use std::fmt::Write;

use comfy_table::{presets, ContentArrangement, Table};
use serde_json::json;

use crate::diff::{Action, Change, ChangeSet};
use crate::markdown as md;
use crate::policy::Decision;

use super::Plan;

/// Field changes listed per row in Markdown; the rest are counted.
const MAX_FIELDS_PER_ROW: usize = 20;
/// Longest value shown in a Markdown cell.
const MAX_VALUE_CHARS: usize = 200;

fn clip(s: &str) -> String {
    if s.chars().count() <= MAX_VALUE_CHARS {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(MAX_VALUE_CHARS).collect::<String>())
    }
}

/// Beyond this many changes, Markdown folds the non-breaking ones into `<details>`.
const FOLD_AFTER: usize = 15;

fn short_rev(rev: &str) -> String {
    match rev.strip_prefix("dir:") {
        Some(d) => format!("dir:{}", &d[..d.len().min(8)]),
        None => crate::config::short_sha(rev).to_string(),
    }
}

fn summary_line(cs: &ChangeSet) -> String {
    let s = &cs.summary;
    format!("{} added, {} modified, {} removed, {} breaking", s.added, s.modified, s.removed, s.breaking)
}

fn value(v: &serde_json::Value) -> String {
    if v.is_null() {
        "(none)".into()
    } else {
        v.to_string()
    }
}

fn details_lines(change: &Change) -> Vec<String> {
    let mut lines: Vec<String> = change.breaking.iter().map(|b| format!("BREAKING {}: {}", b.code, b.reason)).collect();
    lines.extend(change.fields.iter().map(|f| format!("{}: {} -> {}", f.path, value(&f.from), value(&f.to))));
    lines
}

fn table(cs: &ChangeSet, width: u16) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(width)
        .set_header(["", "type", "id", "details"]);
    for c in cs.sorted_for_review() {
        let mark = match (c.action, c.breaking.is_empty()) {
            (_, false) => "!",
            (Action::Added, _) => "+",
            (Action::Removed, _) => "-",
            (Action::Modified, _) => "~",
        };
        let details = match c.action {
            Action::Added if c.breaking.is_empty() => "added".to_string(),
            Action::Removed if c.breaking.is_empty() => "removed".to_string(),
            _ => {
                let mut lines = details_lines(c);
                if c.action != Action::Modified {
                    lines.insert(0, c.action.as_str().to_string());
                }
                lines.join("\n")
            }
        };
        t.add_row([mark.to_string(), c.kind.to_string(), c.id.clone(), details]);
    }
    t
}

/// `honua diff --format text`.
pub fn diff_text(sets: &[ChangeSet], width: u16) -> String {
    let mut out = String::new();
    for cs in sets {
        let _ = writeln!(out, "== {} ==", cs.environment);
        if cs.is_empty() {
            let _ = writeln!(out, "no changes\n");
            continue;
        }
        let _ = writeln!(out, "{}", summary_line(cs));
        let _ = writeln!(out, "{}\n", table(cs, width));
    }
    out
}

/// `honua diff --format json`: `{"environments":[{environment, changes, summary}]}`.
pub fn diff_json(sets: &[ChangeSet]) -> String {
    serde_json::to_string_pretty(&json!({ "environments": sets })).expect("changes serialize")
}

fn md_rows(changes: &[&Change]) -> String {
    let mut out = String::from("| | Type | Id | Change |\n|---|---|---|---|\n");
    for c in changes {
        let mark = if !c.breaking.is_empty() {
            "⚠️"
        } else {
            match c.action {
                Action::Added => "➕",
                Action::Removed => "➖",
                Action::Modified => "✏️",
            }
        };
        // Every value from the repository goes through `markdown`: a title or id can never become a
        // mention, a link or HTML in the bot's comment.
        let mut cells: Vec<String> = c
            .breaking
            .iter()
            .map(|b| format!("**{}** {}", md::code_in_table(b.code), md::prose_in_table(&b.reason)))
            .collect();
        // A row stays readable (and far below GitHub's comment limit) however many values changed.
        cells.extend(c.fields.iter().take(MAX_FIELDS_PER_ROW).map(|f| {
            format!(
                "{}: {} → {}",
                md::code_in_table(&clip(&f.path)),
                md::code_in_table(&clip(&value(&f.from))),
                md::code_in_table(&clip(&value(&f.to)))
            )
        }));
        if c.fields.len() > MAX_FIELDS_PER_ROW {
            cells.push(format!("… and {} more (see `honua diff`)", c.fields.len() - MAX_FIELDS_PER_ROW));
        }
        if cells.is_empty() {
            cells.push(c.action.as_str().to_string());
        } else if c.action != Action::Modified {
            cells.insert(0, c.action.as_str().to_string());
        }
        let _ = writeln!(out, "| {mark} | {} | {} | {} |", c.kind, md::code_in_table(&clip(&c.id)), cells.join("<br>"));
    }
    out
}

/// One environment's changes in Markdown: breaking first; beyond `FOLD_AFTER` rows the rest is folded.
pub fn changes_markdown(cs: &ChangeSet) -> String {
    if cs.is_empty() {
        return "No changes.\n".into();
    }
    let sorted = cs.sorted_for_review();
    let mut out = format!("{}\n\n", summary_line(cs));
    if sorted.len() <= FOLD_AFTER {
        out.push_str(&md_rows(&sorted));
        return out;
    }
    let (breaking, rest): (Vec<&Change>, Vec<&Change>) = sorted.into_iter().partition(|c| !c.breaking.is_empty());
    if !breaking.is_empty() {
        out.push_str(&md_rows(&breaking));
        out.push('\n');
    }
    let _ = write!(
        out,
        "<details><summary>{} non-breaking change(s)</summary>\n\n{}\n</details>\n",
        rest.len(),
        md_rows(&rest)
    );
    out
}

/// `honua diff --format markdown`.
pub fn diff_markdown(sets: &[ChangeSet]) -> String {
    let mut out = String::new();
    for cs in sets {
        let _ = writeln!(out, "### {}\n\n{}", cs.environment, changes_markdown(cs));
    }
    out
}

fn decision_text(d: &Decision) -> &'static str {
    match d {
        Decision::Auto => "auto-approved",
        Decision::NeedsApproval(_) => "needs approval",
        Decision::Blocked(_) => "BLOCKED",
    }
}

fn schedule_text(p: &Plan) -> Option<String> {
    if p.schedule.allowed_now || !p.has_changes() {
        return None;
    }
    let next = p.schedule.next_allowed.map_or("no opening in the next 400 days".into(), |t| {
        format!("may start {}", t.format("%a %Y-%m-%d %H:%M UTC"))
    });
    Some(format!("waits: {}; {next}", p.schedule.reason.clone().unwrap_or_default()))
}

/// `honua plan --format text`.
pub fn plan_text(plans: &[Plan], width: u16) -> String {
    let mut out = String::new();
    for p in plans {
        let _ = writeln!(out, "== {} ==  {} -> {}", p.environment, short_rev(&p.from), short_rev(&p.to));
        let _ = writeln!(out, "validation: {} error(s), {} warning(s)", p.validation.errors, p.validation.warnings);
        if p.has_changes() {
            let _ = writeln!(out, "changes:    {}", summary_line(&p.changes));
            let _ = writeln!(out, "{}", table(&p.changes, width));
        } else {
            let _ = writeln!(out, "changes:    none");
        }
        let _ = writeln!(
            out,
            "decision:   {}",
            if p.has_changes() { decision_text(&p.decision) } else { "nothing to deploy" }
        );
        for r in p.decision.reasons() {
            let _ = writeln!(out, "  - {r}");
        }
        if let Some(s) = schedule_text(p) {
            let _ = writeln!(out, "schedule:   {s}");
        }
        let _ = writeln!(out, "digest:     {}\n", p.digest);
    }
    out
}

/// The heading of the Markdown plan.
pub const PLAN_HEADING: &str = "## Honua deployment plan\n\n";

/// `honua plan --format markdown`: what the sticky PR comment shows.
pub fn plan_markdown(plans: &[Plan]) -> String {
    let mut out = String::from(PLAN_HEADING);
    for section in plan_sections(plans) {
        out.push_str(&section);
    }
    out
}

/// One self-contained Markdown section per environment (a PR comment over GitHub's size limit is
/// split between sections first).
pub fn plan_sections(plans: &[Plan]) -> Vec<String> {
    plans.iter().map(plan_section).collect()
}

fn plan_section(p: &Plan) -> String {
    let mut out = String::new();
    let icon = match (&p.decision, p.has_changes()) {
        (_, false) => "⚪",
        (Decision::Auto, _) => "✅",
        (Decision::NeedsApproval(_), _) => "🟡",
        (Decision::Blocked(_), _) => "⛔",
    };
    let state = if p.has_changes() { decision_text(&p.decision) } else { "no changes" };
    let _ = writeln!(out, "### {icon} {} — {state}\n", md::text(p.environment.as_str()));
    if !p.decision.reasons().is_empty() {
        for r in p.decision.reasons() {
            let _ = writeln!(out, "- {}", md::prose(r));
        }
        out.push('\n');
    }
    if let Some(s) = schedule_text(p) {
        let _ = writeln!(out, "⏳ {}\n", md::prose(&s));
    }
    if p.has_changes() {
        out.push_str(&changes_markdown(&p.changes));
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "<sub>validation: {} error(s), {} warning(s) · {} → {} · plan {}</sub>\n",
        p.validation.errors,
        p.validation.warnings,
        md::code(&short_rev(&p.from)),
        md::code(&short_rev(&p.to)),
        md::code(&p.digest)
    );
    out
}

/// `honua plan --format json`: `{"plans":[…]}`.
pub fn plan_json(plans: &[Plan]) -> String {
    serde_json::to_string_pretty(&json!({ "plans": plans })).expect("plans serialize")
}
