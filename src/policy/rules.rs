//! Approval rules: `{name, condition, reason}` or the short form `{resourcesModified: "> 10"}`.
//!
//! Conditions are evaluated with `evalexpr`. Aggregate variables: `resourcesAdded`, `resourcesModified`,
//! `resourcesRemoved` (integers), `breakingChanges` (boolean). Per-change variables: `type`, `action`, `id`;
//! a condition that uses them matches when any change matches.
//!
//! A condition is untrusted text (a pull request may bring one) and evalexpr's parser and evaluator
//! recurse once per nesting level, so [`check_bounds`] measures length and nesting with a flat scan
//! before evalexpr sees the text: a depth bomb is a finding, never a stack overflow.

use evalexpr::{ContextWithMutableVariables, DefaultNumericTypes, HashMapContext, Node as Expr, Value as EV};
use serde::Serialize;

use crate::config::dialect::place;
use crate::config::node::{Node, Value};
use crate::config::source::SourceMap;
use crate::diagnostic::Diagnostic;
use crate::diff::{Change, ChangeSet};

/// Longest condition accepted, in characters. Real conditions are a line (`(resourcesModified +
/// resourcesAdded) > 10` is 41); the bound keeps evalexpr's parse (quadratic in prefix operators) and its
/// recursion small.
pub const MAX_CONDITION_CHARS: usize = 1_000;
/// Deepest nesting accepted: parentheses plus a run of operators where an operand belongs (`!!x`, `- -x`).
pub const MAX_CONDITION_NESTING: usize = 32;
/// Most operators in one condition. Real ones have a handful; with this and the nesting limit the
/// expression tree evalexpr builds and walks stays under a hundred levels.
pub const MAX_CONDITION_OPERATORS: usize = 64;
/// Longest rule name and reason shown in a plan.
pub const MAX_RULE_TEXT_CHARS: usize = 1_000;

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
    /// `None` when the rule could not be read: it then asks for approval of every change, so a broken
    /// rule never waves a change through.
    #[serde(skip)]
    expr: Option<Expr<DefaultNumericTypes>>,
    #[serde(skip)]
    per_change: bool,
}

/// The first characters of a long text, for messages that quote it.
fn excerpt(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

impl ApprovalRule {
    /// A rule that could not be read: it matches every change, with a label that says why.
    fn unreadable(name: &str, condition: &str) -> ApprovalRule {
        let name = excerpt(name, 80);
        ApprovalRule {
            label: format!(
                "approval rule `{name}` could not be read (see the validation findings): approval is required until it is fixed"
            ),
            name,
            condition: excerpt(condition, 80),
            reason: String::new(),
            expr: None,
            per_change: false,
        }
    }

    /// Reads one rule. A rule that does not load is reported in `out` and still returned, as a rule that
    /// asks for approval of everything.
    pub fn load(node: &Node, sources: &SourceMap, out: &mut Vec<Diagnostic>) -> ApprovalRule {
        let Some(map) = node.as_map() else {
            out.push(super::type_error(sources, node, "an approval rule", "a mapping"));
            return ApprovalRule::unreadable("rule", "");
        };
        let (name, condition, reason, at) = if let Some(cond) = map.get("condition") {
            let name = map.get("name").and_then(Node::as_str).unwrap_or("rule").to_string();
            let Some(text) = cond.as_str().map(str::to_string).or_else(|| scalar_text(cond)) else {
                out.push(super::type_error(sources, cond, "`condition`", "an expression string"));
                return ApprovalRule::unreadable(&name, "");
            };
            let reason = map
                .get("reason")
                .and_then(Node::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| format!("condition `{}` matched", excerpt(&text, 80)));
            for (key, value) in [("name", &name), ("reason", &reason)] {
                if value.chars().count() > MAX_RULE_TEXT_CHARS {
                    let at = map.get(key).map_or(node.loc, |n| n.loc);
                    out.push(Diagnostic::error(
                        "policy.rule_too_long",
                        place(sources, at),
                        format!("approval rule `{}`: its {key} is longer than {MAX_RULE_TEXT_CHARS} characters; a plan shows it on every pull request, so keep it to a sentence", excerpt(&name, 80)),
                    ));
                    return ApprovalRule::unreadable(&name, &text);
                }
            }
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
                return ApprovalRule::unreadable("rule", "");
            };
            let key = entry.key.as_str();
            if !AGGREGATES.contains(&key) {
                out.push(Diagnostic::error(
                    "policy.condition_invalid",
                    place(sources, entry.key_loc),
                    format!(
                        "unknown approval rule `{}`; use one of {} or the `{{name, condition, reason}}` form",
                        excerpt(key, 80),
                        AGGREGATES.join(", ")
                    ),
                ));
                return ApprovalRule::unreadable(key, "");
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
                    return ApprovalRule::unreadable(key, "");
                }
            };
            let reason = format!("approval rule `{key}: {}` matched", excerpt(&render_short(&entry.value), 80));
            (key.to_string(), text, reason, &entry.value)
        };
        match compile(&condition) {
            Ok((expr, per_change)) => {
                let label = if map.get("condition").is_some() { format!("{name}: {reason}") } else { reason.clone() };
                ApprovalRule { name, condition, reason, label, expr: Some(expr), per_change }
            }
            Err(message) => {
                out.push(Diagnostic::error(
                    message.code(),
                    place(sources, at.loc),
                    format!(
                        "approval rule `{}`: condition `{}` {message}",
                        excerpt(&name, 80),
                        excerpt(&condition, 80)
                    ),
                ));
                ApprovalRule::unreadable(&name, &condition)
            }
        }
    }

    /// Whether this rule asks for approval of `changes`.
    pub fn matches(&self, changes: &ChangeSet) -> bool {
        let Some(expr) = &self.expr else { return true };
        let mut ctx = aggregate_context(changes);
        if !self.per_change {
            return expr.eval_boolean_with_context(&ctx).unwrap_or(true);
        }
        changes.changes.iter().any(|change| {
            set_change(&mut ctx, change);
            // A rule that fails at run time asks for approval rather than waving a change through.
            expr.eval_boolean_with_context(&ctx).unwrap_or(true)
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

/// Why a condition was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConditionError {
    TooLong { chars: usize },
    TooDeep { depth: usize },
    TooComplex { operators: usize },
    Invalid(String),
}

impl ConditionError {
    pub fn code(&self) -> &'static str {
        match self {
            ConditionError::TooLong { .. } => "policy.condition_too_long",
            ConditionError::TooDeep { .. } => "policy.condition_too_deep",
            ConditionError::TooComplex { .. } => "policy.condition_too_complex",
            ConditionError::Invalid(_) => "policy.condition_invalid",
        }
    }
}

impl std::fmt::Display for ConditionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConditionError::TooLong { chars } => write!(
                f,
                "is {chars} characters long; a condition may have at most {MAX_CONDITION_CHARS}: split it into several rules"
            ),
            ConditionError::TooDeep { depth } => write!(
                f,
                "nests {depth} levels deep (parentheses and operators such as `!` or `-` where an operand belongs); a condition may nest at most {MAX_CONDITION_NESTING}: simplify it"
            ),
            ConditionError::TooComplex { operators } => write!(
                f,
                "has {operators} operators; a condition may have at most {MAX_CONDITION_OPERATORS}: split it into several rules"
            ),
            ConditionError::Invalid(why) => write!(f, "does not parse: {why}"),
        }
    }
}

/// Whether `a` and `b` form one of evalexpr's two-character operators.
fn two_char_operator(a: char, b: char) -> bool {
    matches!(
        (a, b),
        ('&', '&') | ('|', '|') | ('=', '=') | ('!', '=') | ('<', '=') | ('>', '=') | ('+', '=') | ('-', '=')
    ) || matches!((a, b), ('*', '=') | ('/', '=') | ('%', '=') | ('^', '='))
}

/// Length, nesting and operators of a condition, measured by one flat pass (no recursion, linear time)
/// so that no recursive code ever sees an expression beyond the limits. Nesting counts open parentheses
/// plus the run of operators met where an operand belongs (prefixes such as `!!!x` and `- -x`, and
/// operand-less ones such as `<<<<`, which evalexpr's tree builder nests); every operator counts towards
/// [`MAX_CONDITION_OPERATORS`], so the tree stays shallow whatever evalexpr's algorithm. String literals
/// are skipped.
pub fn check_bounds(text: &str) -> Result<(), ConditionError> {
    // Four bytes per character at most: a text this many bytes long is too long whatever it holds.
    if text.len() > MAX_CONDITION_CHARS * 4 {
        return Err(ConditionError::TooLong { chars: text.chars().count() });
    }
    let chars = text.chars().count();
    if chars > MAX_CONDITION_CHARS {
        return Err(ConditionError::TooLong { chars });
    }
    let (mut parens, mut run, mut deepest, mut operators) = (0usize, 0usize, 0usize, 0usize);
    // Whether the next token takes an operand's place (an operator there nests one level deeper).
    let mut expect_operand = true;
    let mut it = text.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            c if c.is_whitespace() => continue,
            '"' => {
                // A string literal: skip to its closing quote (`\"` escapes one).
                while let Some(s) = it.next() {
                    match s {
                        '\\' => {
                            it.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
                run = 0;
                expect_operand = false;
            }
            '(' => {
                parens += 1;
                run = 0;
                expect_operand = true;
            }
            ')' => {
                parens = parens.saturating_sub(1);
                expect_operand = false;
            }
            c if c.is_alphanumeric() || matches!(c, '_' | '.' | ':') => {
                while it.next_if(|n| n.is_alphanumeric() || matches!(n, '_' | '.' | ':')).is_some() {}
                run = 0;
                expect_operand = false;
            }
            c => {
                if it.peek().is_some_and(|&n| two_char_operator(c, n)) {
                    it.next();
                }
                operators += 1;
                run = if expect_operand { run + 1 } else { 0 };
                expect_operand = true;
            }
        }
        deepest = deepest.max(parens + run);
    }
    if deepest > MAX_CONDITION_NESTING {
        return Err(ConditionError::TooDeep { depth: deepest });
    }
    if operators > MAX_CONDITION_OPERATORS {
        return Err(ConditionError::TooComplex { operators });
    }
    Ok(())
}

/// Parses and type-checks a condition against sample values, so a condition that could never evaluate
/// (unknown variable, `"a" > 1`) is reported when the policy is loaded, not when a deployment waits.
fn compile(text: &str) -> Result<(Expr<DefaultNumericTypes>, bool), ConditionError> {
    check_bounds(text)?;
    let invalid = ConditionError::Invalid;
    let expr = evalexpr::build_operator_tree::<DefaultNumericTypes>(text).map_err(|e| invalid(e.to_string()))?;
    let mut per_change = false;
    for var in expr.iter_variable_identifiers() {
        if PER_CHANGE.contains(&var) {
            per_change = true;
        } else if !AGGREGATES.contains(&var) {
            return Err(invalid(format!(
                "unknown variable `{}` (known: {}, {})",
                excerpt(var, 40),
                AGGREGATES.join(", "),
                PER_CHANGE.join(", ")
            )));
        }
    }
    let mut ctx = aggregate_context(&ChangeSet::default());
    ctx.set_value("type".into(), EV::from("layer")).expect("mutable context");
    ctx.set_value("action".into(), EV::from("modified")).expect("mutable context");
    ctx.set_value("id".into(), EV::from("x")).expect("mutable context");
    expr.eval_boolean_with_context(&ctx).map_err(|e| invalid(format!("it does not evaluate to true or false: {e}")))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bombs_are_refused_by_the_flat_scan() {
        let parens = format!("{}resourcesAdded > 0{}", "(".repeat(100_000), ")".repeat(100_000));
        assert_eq!(check_bounds(&parens), Err(ConditionError::TooLong { chars: 200_018 }));
        let bangs = format!("{}breakingChanges", "!".repeat(50_000));
        assert_eq!(check_bounds(&bangs), Err(ConditionError::TooLong { chars: 50_015 }));
        let deep = format!("{}resourcesAdded > 0{}", "(".repeat(300), ")".repeat(300));
        assert_eq!(check_bounds(&deep), Err(ConditionError::TooDeep { depth: 300 }));
        let prefixes = format!("{}breakingChanges", "!".repeat(40));
        assert_eq!(check_bounds(&prefixes), Err(ConditionError::TooDeep { depth: 40 }));
        let minus = format!("resourcesAdded > {}1", "- ".repeat(40));
        assert!(matches!(check_bounds(&minus), Err(ConditionError::TooDeep { .. })));
        // The fuzzer's find on the old code: operand-less operators, which evalexpr nests.
        assert_eq!(check_bounds(&"<".repeat(1_778)), Err(ConditionError::TooLong { chars: 1_778 }));
        assert_eq!(check_bounds(&"<".repeat(100)), Err(ConditionError::TooDeep { depth: 100 }));
        let sum = format!("resourcesAdded{} > 0", " + 1".repeat(100));
        assert_eq!(check_bounds(&sum), Err(ConditionError::TooComplex { operators: 101 }));
        // Subtraction is not a prefix, `<=` is one operator, a parenthesis in a string is not nesting.
        assert_eq!(check_bounds(&format!("resourcesAdded{} <= 3", " - 1".repeat(60))), Ok(()));
        assert_eq!(check_bounds(&format!("id == \"{}\"", "(".repeat(500))), Ok(()));
        assert_eq!(check_bounds("(resourcesModified + resourcesAdded) > 10 && !breakingChanges"), Ok(()));
    }

    /// The worst conditions the bounds let through parse and evaluate on a 256 KiB stack (a tokio worker
    /// has 2 MiB): evalexpr's recursion stays far from an overflow whatever a policy holds. Each is at
    /// one of the limits; the fuzzer found the operand-less `<` run.
    #[test]
    fn the_worst_accepted_conditions_run_on_a_small_stack() {
        let (n, ops) = (MAX_CONDITION_NESTING, MAX_CONDITION_OPERATORS);
        let nested = format!("{}resourcesAdded > 0{}", "(".repeat(n - 1), ")".repeat(n - 1));
        let negated = format!("{}breakingChanges", "!".repeat(n));
        let mixed = format!("{}breakingChanges{}", "(!".repeat(n / 2), ")".repeat(n / 2));
        let sum = format!("resourcesAdded{} > 0", " + 1".repeat(ops - 1));
        let ands = format!("true{}", " && true".repeat(ops));
        let lesser = "<".repeat(n);
        let powers = format!("(1{}) > 0", "^1".repeat(ops - 1));
        let deep_sum = format!("{}1{} > 0", "(".repeat(n - 1), " + 1)".repeat(n - 1));
        let worst = [nested, negated, mixed, sum, ands, lesser, powers, deep_sum];
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                for text in &worst {
                    assert_eq!(check_bounds(text), Ok(()), "{text}");
                    if let Ok((expr, _)) = compile(text) {
                        let ctx = aggregate_context(&ChangeSet::default());
                        let _ = expr.eval_boolean_with_context(&ctx);
                    }
                }
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn an_unreadable_rule_asks_for_approval_of_everything() {
        let rule = ApprovalRule::unreadable("broken", "(((");
        assert!(rule.matches(&ChangeSet::default()));
        assert!(rule.label.contains("could not be read"), "{}", rule.label);
    }
}
