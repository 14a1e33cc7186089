//! Field-level differences between two versions of a resource: `caching.ttl: 3600 -> 7200`.
//!
//! Lists of mappings that carry a `name` or `id` (fields, links by id, …) are matched by that key, so a
//! field inserted in the middle shows as one added field, not as every later field changed.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::config::node::{Node, Value};
use crate::config::secrets::{is_secret_key, mask_json};

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

/// Appends to `out` every difference between `old` and `new` under `path`. Secrets are masked (see
/// [`crate::config::secrets`]): a diff is shown in PR comments, the API and pages.
pub fn diff(path: &str, old: Option<&Node>, new: Option<&Node>, out: &mut Vec<FieldChange>) {
    diff_under(path, "", false, old, new, out);
}

/// [`diff`] of the value of `key`; `secret` when a key above it names a secret.
fn diff_under(path: &str, key: &str, secret: bool, old: Option<&Node>, new: Option<&Node>, out: &mut Vec<FieldChange>) {
    let secret = secret || is_secret_key(key);
    let change = |from: Option<&Node>, to: Option<&Node>| FieldChange {
        path: path.to_string(),
        from: shown(key, from, secret),
        to: shown(key, to, secret),
    };
    match (old, new) {
        (None, None) => {}
        (Some(o), Some(n)) if same(o, n) => {}
        (Some(o), Some(n)) => match (&o.value, &n.value) {
            (Value::Map(om), Value::Map(nm)) => {
                for e in &om.entries {
                    diff_under(&join(path, &e.key), &e.key, secret, Some(&e.value), nm.get(&e.key), out);
                }
                for e in nm.entries.iter().filter(|e| om.get(&e.key).is_none()) {
                    diff_under(&join(path, &e.key), &e.key, secret, None, Some(&e.value), out);
                }
            }
            (Value::Seq(os), Value::Seq(ns)) if keyed(os).is_some() && keyed(os) == keyed(ns) => {
                let by = keyed(os).expect("checked");
                let id = |n: &Node| n.get_str(by).map(str::to_lowercase);
                for item in os {
                    let label = item.get_str(by).unwrap_or_default();
                    let other = ns.iter().find(|n| id(n) == id(item));
                    diff_under(&format!("{path}[{label}]"), key, secret, Some(item), other, out);
                }
                for item in ns.iter().filter(|n| !os.iter().any(|o| id(o) == id(n))) {
                    let label = item.get_str(by).unwrap_or_default();
                    diff_under(&format!("{path}[{label}]"), key, secret, None, Some(item), out);
                }
            }
            _ => out.push(change(Some(o), Some(n))),
        },
        (o, n) => out.push(change(o, n)),
    }
}

/// Masks the secrets in the `changes` of a plan as stored (plans made before masking existed keep
/// literals in the database; they are masked when shown). The key is the last segment of each path.
/// A change that does not read as one is left as it is; every other part of a change is kept.
pub fn mask_stored_changes(changes: &mut Json) {
    for change in changes.as_array_mut().into_iter().flatten() {
        let Ok(mut stored) = StoredChange::deserialize(&*change) else { continue };
        for field in &mut stored.fields {
            let last = field.path.rsplit('.').next().unwrap_or_default();
            let key = last.split('[').next().unwrap_or_default().to_string();
            let secret = field.path.split(['.', '[']).any(is_secret_key);
            mask_json(&key, &mut field.from, secret);
            mask_json(&key, &mut field.to, secret);
        }
        *change = serde_json::to_value(stored).expect("a stored change encodes");
    }
}

/// A change as stored with a plan: its fields, and whatever else it carries, untouched.
#[derive(Serialize, Deserialize)]
struct StoredChange {
    #[serde(default)]
    fields: Vec<StoredField>,
    #[serde(flatten)]
    rest: serde_json::Map<String, Json>,
}

#[derive(Serialize, Deserialize)]
struct StoredField {
    #[serde(default)]
    path: String,
    #[serde(default)]
    from: Json,
    #[serde(default)]
    to: Json,
    #[serde(flatten)]
    rest: serde_json::Map<String, Json>,
}

/// A value as a diff shows it: JSON, with secrets masked.
fn shown(key: &str, node: Option<&Node>, secret: bool) -> Json {
    let Some(node) = node else { return Json::Null };
    let mut value = node.to_json();
    mask_json(key, &mut value, secret);
    value
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
    fn secrets_are_masked_in_changed_values() {
        let got = changes(
            "connectionString: \"Host=db;Password=old-one\"\nauth: {password: p1, user: u}\n",
            "connectionString: \"Host=db;Password=new-one\"\nauth: {password: p2, user: v}\nextra: {apiKey: k}\n",
        );
        let all = got.join("\n");
        for leaked in ["old-one", "new-one", "p1", "p2", "\"k\""] {
            assert!(!all.contains(leaked), "{leaked} shown in {all}");
        }
        assert!(all.contains("Host=db;Password=•••• (under 8 chars, sha256:"), "{all}");
        assert!(all.contains("auth.user: \"u\" -> \"v\""), "{all}");
        // Two versions of a secret are told apart.
        let password = got.iter().find(|c| c.starts_with("auth.password")).unwrap();
        let (from, to) = password.split_once(" -> ").unwrap();
        assert_ne!(from.trim_start_matches("auth.password: "), to);
    }

    #[test]
    fn locations_and_key_order_do_not_count() {
        assert!(changes("a: 1\nb: {c: 2, d: 3}\n", "b: {d: 3.0, c: 2}\na: 1\n").is_empty());
    }

    #[test]
    fn stored_changes_are_masked_and_keep_every_other_part() {
        let mut stored = serde_json::json!([
            {"type": "datasource", "id": "db", "action": "modified", "later": 1, "fields": [
                {"path": "password", "from": "hunter2-old", "to": "hunter2-new"},
                {"path": "title", "from": "A", "to": "B", "note": "kept"}]},
            "not a change",
            {"type": "datasource", "id": "db2", "fields": [{"path": "auth.token", "to": "s3cr3t-token"}]},
        ]);
        mask_stored_changes(&mut stored);
        let text = stored.to_string();
        for leaked in ["hunter2", "s3cr3t"] {
            assert!(!text.contains(leaked), "{text}");
        }
        assert_eq!(
            stored[0]["fields"][1],
            serde_json::json!({"path": "title", "from": "A", "to": "B", "note": "kept"})
        );
        assert_eq!(
            (stored[0]["later"].clone(), stored[0]["action"].clone()),
            (serde_json::json!(1), "modified".into())
        );
        assert_eq!(stored[1], "not a change");
        assert!(stored[2]["fields"][0]["to"].as_str().unwrap().starts_with("•••• ("), "{stored}");
    }
}
