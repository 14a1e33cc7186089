//! Field-level differences between two versions of a resource: `caching.ttl: 3600 -> 7200`.
//!
//! Lists of mappings that carry a `name` or `id` (fields, links by id, …) are matched by that key, so a
//! field inserted in the middle shows as one added field, not as every later field changed.

use serde::Serialize;
use serde_json::Value as Json;

use crate::config::node::{Node, Value};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    pub path: String,
    /// `null` when the key did not exist before.
    pub from: Json,
    /// `null` when the key no longer exists.
    pub to: Json,
}

/// Structural equality that ignores where values were written and the order of mapping keys;
/// `1` and `1.0` are equal.
pub fn same(a: &Node, b: &Node) -> bool {
    match (&a.value, &b.value) {
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len() && x.entries.iter().all(|e| y.get(&e.key).is_some_and(|v| same(&e.value, v)))
        }
        (Value::Seq(x), Value::Seq(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q)),
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => a.as_f64() == b.as_f64(),
        (x, y) => x == y,
    }
}

/// Appends to `out` every difference between `old` and `new` under `path`.
pub fn diff(path: &str, old: Option<&Node>, new: Option<&Node>, out: &mut Vec<FieldChange>) {
    match (old, new) {
        (None, None) => {}
        (Some(o), Some(n)) if same(o, n) => {}
        (Some(o), Some(n)) => match (&o.value, &n.value) {
            (Value::Map(om), Value::Map(nm)) => {
                for e in &om.entries {
                    diff(&join(path, &e.key), Some(&e.value), nm.get(&e.key), out);
                }
                for e in nm.entries.iter().filter(|e| om.get(&e.key).is_none()) {
                    diff(&join(path, &e.key), None, Some(&e.value), out);
                }
            }
            (Value::Seq(os), Value::Seq(ns)) if keyed(os).is_some() && keyed(os) == keyed(ns) => {
                let key = keyed(os).expect("checked");
                let id = |n: &Node| n.get_str(key).map(str::to_lowercase);
                for item in os {
                    let label = item.get_str(key).unwrap_or_default();
                    let other = ns.iter().find(|n| id(n) == id(item));
                    diff(&format!("{path}[{label}]"), Some(item), other, out);
                }
                for item in ns.iter().filter(|n| !os.iter().any(|o| id(o) == id(n))) {
                    let label = item.get_str(key).unwrap_or_default();
                    diff(&format!("{path}[{label}]"), None, Some(item), out);
                }
            }
            _ => out.push(FieldChange { path: path.to_string(), from: o.to_json(), to: n.to_json() }),
        },
        (o, n) => out.push(FieldChange {
            path: path.to_string(),
            from: o.map_or(Json::Null, Node::to_json),
            to: n.map_or(Json::Null, Node::to_json),
        }),
    }
}

/// The key a list of mappings is matched by, when every item has a distinct one.
fn keyed(items: &[Node]) -> Option<&'static str> {
    if items.is_empty() {
        return None;
    }
    ["name", "id"].into_iter().find(|key| {
        let mut seen = std::collections::HashSet::new();
        items.iter().all(|i| i.get_str(key).is_some_and(|v| seen.insert(v.to_lowercase())))
    })
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::FileId;
    use crate::config::yaml::parse;

    fn changes(a: &str, b: &str) -> Vec<String> {
        let (a, b) = (parse(a, FileId(0)).unwrap(), parse(b, FileId(1)).unwrap());
        let mut out = Vec::new();
        diff("", Some(&a), Some(&b), &mut out);
        out.iter().map(|c| format!("{}: {} -> {}", c.path, c.from, c.to)).collect()
    }

    #[test]
    fn nested_keys_unknown_keys_and_keyed_lists() {
        let got = changes(
            "caching: {ttl: 3600}\nfields: [{name: a, type: int}, {name: b}]\ncrs: [X, Y]\n",
            "caching: {ttl: 7200, enabled: true}\nfields: [{name: z}, {name: a, type: string}, {name: b}]\ncrs: [X]\n",
        );
        assert_eq!(
            got,
            [
                "caching.ttl: 3600 -> 7200",
                "caching.enabled: null -> true",
                "fields[a].type: \"int\" -> \"string\"",
                "fields[z]: null -> {\"name\":\"z\"}",
                "crs: [\"X\",\"Y\"] -> [\"X\"]",
            ]
        );
    }

    #[test]
    fn locations_and_key_order_do_not_count() {
        assert!(changes("a: 1\nb: {c: 2, d: 3}\n", "b: {d: 3.0, c: 2}\na: 1\n").is_empty());
    }
}
