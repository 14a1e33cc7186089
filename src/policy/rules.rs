//! Approval rules: `{name, condition, reason}` or the short form `{resourcesModified: "> 10"}`.
//!
//! Conditions are evaluated with `evalexpr`. Aggregate variables: `resourcesAdded`, `resourcesModified`,
//! `resourcesRemoved` (integers), `breakingChanges` (boolean). Per-change variables: `type`, `action`, `id`;
//! a condition that uses them matches when any change matches.

use evalexpr::{ContextWithMutableVariables, DefaultNumericTypes, HashMapContext, Node as Expr, Value as EV};
use serde::Serialize;

use crate::config::dialect::place;
use crate::config::node::{Node, Value};
use crate::config::source::SourceMap;
use crate::diagnostic::Diagnostic;
use crate::diff::{Change, ChangeSet};

const AGGREGATES: [&str; 4] = ["resourcesAdded", "resourcesModified", "resourcesRemoved", "breakingChanges"];
const PER_CHANGE: [&str; 3] = ["type", "action", "id"];

#[derive(Debug, Clone, Serialize)]
pub struct ApprovalRule {
    pub name: String,
    pub condition: String,
    pub reason: String,
    /// What a plan shows when the rule matches: `name: reason`, or the reason alone for the short form.
    #[serde(skip)]
    pub label: String,
    #[serde(skip)]
    expr: Expr<DefaultNumericTypes>,
    #[serde(skip)]
    per_change: bool,
}

impl ApprovalRule {
    pub fn load(node: &Node, sources: &SourceMap, out: &mut Vec<Diagnostic>) -> Option<ApprovalRule> {
        let Some(map) = node.as_map() else {
            out.push(super::type_error(sources, node, "an approval rule", "a mapping"));
            return None;
        };
        let (name, condition, reason, at) = if let Some(cond) = map.get("condition") {
            let Some(text) = cond.as_str().map(str::to_string).or_else(|| scalar_text(cond)) else {
                out.push(super::type_error(sources, cond, "`condition`", "an expression string"));
                return None;
            };
            let name = map.get("name").and_then(Node::as_str).unwrap_or("rule").to_string();
            let reason = map
                .get("reason")
                .and_then(Node::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| format!("condition `{text}` matched"));
            (name, text, reason, cond)
        } else {
            // Short form: exactly one aggregate key.
            let Some(entry) = map.entries.first() else {
                out.push(super::type_error(
                    sources,
                    node,
                    "an approval rule",
                    "`{condition: …}` or e.g. `{resourcesRemoved: true}`",
                ));
                return None;
            };
            let key = entry.key.as_str();
            if !AGGREGATES.contains(&key) {
                out.push(Diagnostic::error(
                    "policy.condition_invalid",
                    place(sources, entry.key_loc),
                    format!(
                        "unknown approval rule `{key}`; use one of {} or the `{{name, condition, reason}}` form",
                        AGGREGATES.join(", ")
                    ),
                ));
                return None;
            }
            let text = match (&entry.value.value, key) {
                (Value::Bool(true), "breakingChanges") => "breakingChanges == true".to_string(),
                (Value::Bool(false), "breakingChanges") => "false".to_string(),
                (Value::Bool(true), _) => format!("{key} > 0"),
                (Value::Bool(false), _) => "false".to_string(),
                (Value::Int(n), _) => format!("{key} >= {n}"),
                (Value::Str(s), _) => format!("{key} {s}"),
                _ => {
                    out.push(super::type_error(
                        sources,
                        &entry.value,
                        &format!("`{key}`"),
                        "true, a number or a comparison such as \"> 10\"",
                    ));
                    return None;
                }
            };
            let reason = format!("approval rule `{key}: {}` matched", render_short(&entry.value));
            (key.to_string(), text, reason, &entry.value)
        };
        match compile(&condition) {
            Ok((expr, per_change)) => {
                let label = if map.get("condition").is_some() { format!("{name}: {reason}") } else { reason.clone() };
                Some(ApprovalRule { name, condition, reason, label, expr, per_change })
            }
            Err(message) => {
                out.push(Diagnostic::error(
                    "policy.condition_invalid",
                    place(sources, at.loc),
                    format!("approval rule `{name}`: condition `{condition}` does not parse: {message}"),
                ));
                None
            }
        }
    }

    /// Whether this rule asks for approval of `changes`.
    pub fn matches(&self, changes: &ChangeSet) -> bool {
        let mut ctx = aggregate_context(changes);
        if !self.per_change {
            return self.expr.eval_boolean_with_context(&ctx).unwrap_or(true);
        }
        changes.changes.iter().any(|change| {
            set_change(&mut ctx, change);
            // A rule that fails at run time asks for approval rather than waving a change through.
            self.expr.eval_boolean_with_context(&ctx).unwrap_or(true)
        })
    }
}

fn scalar_text(node: &Node) -> Option<String> {
    match node.value {
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn render_short(node: &Node) -> String {
    match &node.value {
        Value::Str(s) => s.to_string(),
        _ => node.to_string(),
    }
}

/// Parses and type-checks a condition against sample values, so a condition that could never evaluate
/// (unknown variable, `"a" > 1`) is reported when the policy is loaded, not when a deployment waits.
fn compile(text: &str) -> Result<(Expr<DefaultNumericTypes>, bool), String> {
    let expr = evalexpr::build_operator_tree::<DefaultNumericTypes>(text).map_err(|e| e.to_string())?;
    let mut per_change = false;
    for var in expr.iter_variable_identifiers() {
        if PER_CHANGE.contains(&var) {
            per_change = true;
        } else if !AGGREGATES.contains(&var) {
            return Err(format!(
                "unknown variable `{var}` (known: {}, {})",
                AGGREGATES.join(", "),
                PER_CHANGE.join(", ")
            ));
        }
    }
    let mut ctx = aggregate_context(&ChangeSet::default());
    ctx.set_value("type".into(), EV::from("layer")).expect("mutable context");
    ctx.set_value("action".into(), EV::from("modified")).expect("mutable context");
    ctx.set_value("id".into(), EV::from("x")).expect("mutable context");
    expr.eval_boolean_with_context(&ctx).map_err(|e| format!("it does not evaluate to true or false: {e}"))?;
    Ok((expr, per_change))
}

fn aggregate_context(changes: &ChangeSet) -> HashMapContext<DefaultNumericTypes> {
    let mut ctx = HashMapContext::<DefaultNumericTypes>::new();
    let s = &changes.summary;
    for (k, v) in [("resourcesAdded", s.added), ("resourcesModified", s.modified), ("resourcesRemoved", s.removed)] {
        ctx.set_value(k.into(), EV::from_int(v as i64)).expect("mutable context");
    }
    ctx.set_value("breakingChanges".into(), EV::from(s.breaking > 0)).expect("mutable context");
    ctx
}

fn set_change(ctx: &mut HashMapContext<DefaultNumericTypes>, change: &Change) {
    ctx.set_value("type".into(), EV::from(change.kind.as_str())).expect("mutable context");
    ctx.set_value("action".into(), EV::from(change.action.as_str())).expect("mutable context");
    ctx.set_value("id".into(), EV::from(change.id.as_str())).expect("mutable context");
}
