//! Environment layering: effective config = common ⊕ environment.
//!
//! Entities merge by `id` (case-insensitive, as the server compares ids) within each kind: the
//! environment wins, mappings deep-merge, lists replace. Entities keep their first position, so adding an
//! entity in an environment appends it, and an override never shifts an Esri layer index.

use std::collections::HashMap;

use super::node::{Node, Value};

/// Top-level keys whose value is a list of entities with an `id`.
pub const ENTITY_LISTS: [&str; 6] = ["folders", "dataSources", "services", "layers", "styles", "rasterDatasets"];

/// Merges `over` into `base`: mappings deep-merge, entity lists merge by id, anything else is replaced.
pub fn merge_document(base: &mut Node, over: Node) {
    match (&mut base.value, over.value) {
        (Value::Map(b), Value::Map(o)) => {
            for entry in o.entries {
                match b.get_mut(&entry.key) {
                    Some(existing) if ENTITY_LISTS.contains(&entry.key.as_str()) => {
                        merge_entities(existing, entry.value);
                    }
                    Some(existing) => deep_merge(existing, entry.value),
                    None => b.entries.push(entry),
                }
            }
        }
        (_, value) => *base = Node { loc: over.loc, value },
    }
}

/// Mappings merge key by key (recursively); lists and scalars are replaced by the overriding value.
pub fn deep_merge(base: &mut Node, over: Node) {
    match (&mut base.value, over.value) {
        (Value::Map(b), Value::Map(o)) if b.entries.len() * o.entries.len() > 4096 => {
            // Thousands of labeled blocks on both sides: keys found by index, not by scanning.
            let mut index: HashMap<super::node::Text, usize> =
                b.entries.iter().enumerate().map(|(i, e)| (e.key.clone(), i)).collect();
            for entry in o.entries {
                match index.get(&entry.key) {
                    Some(&i) => deep_merge(&mut b.entries[i].value, entry.value),
                    None => {
                        index.insert(entry.key.clone(), b.entries.len());
                        b.entries.push(entry);
                    }
                }
            }
        }
        (Value::Map(b), Value::Map(o)) => {
            for entry in o.entries {
                match b.get_mut(&entry.key) {
                    Some(existing) => deep_merge(existing, entry.value),
                    None => b.entries.push(entry),
                }
            }
        }
        (_, value) => *base = Node { loc: over.loc, value },
    }
}

/// Merges a list of entities into another by case-insensitive `id`; entities without an id append.
pub fn merge_entities(base: &mut Node, over: Node) {
    let Value::Seq(over_items) = over.value else {
        *base = over;
        return;
    };
    let Value::Seq(items) = &mut base.value else {
        *base = Node { loc: over.loc, value: Value::Seq(over_items) };
        return;
    };
    // Only the base's entities are matched: two entities with one id inside the overriding file both
    // survive, so validation still sees (and reports) the duplicate.
    let index: HashMap<String, usize> =
        items.iter().enumerate().filter_map(|(i, n)| Some((entity_key(n)?, i))).collect();
    for item in over_items {
        match entity_key(&item).and_then(|k| index.get(&k).copied()) {
            Some(i) => deep_merge(&mut items[i], item),
            None => items.push(item),
        }
    }
}

/// The case-folded id an entity is matched by.
pub fn entity_key(node: &Node) -> Option<String> {
    node.get_str("id").map(str::to_lowercase)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::FileId;
    use crate::config::yaml::parse;

    #[test]
    fn environment_wins_maps_merge_lists_replace_and_order_is_kept() {
        let mut base = parse(
            "catalog: {id: c, title: Base}\nlayers:\n  - {id: a, crs: [X, Y], caching: {ttl: 60, enabled: true}}\n  - {id: b}\n",
            FileId(0),
        )
        .unwrap();
        let over = parse(
            "catalog: {title: Prod}\nlayers:\n  - {id: new}\n  - {id: A, crs: [Z], caching: {ttl: 3600}}\n",
            FileId(1),
        )
        .unwrap();
        merge_document(&mut base, over);
        let json = base.to_json();
        assert_eq!(json["catalog"], serde_json::json!({"id": "c", "title": "Prod"}));
        let layers = json["layers"].as_array().unwrap();
        let ids: Vec<_> = layers.iter().map(|l| l["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["A", "b", "new"], "matched without case; the environment's spelling wins");
        assert_eq!(layers[0]["crs"], serde_json::json!(["Z"]));
        assert_eq!(layers[0]["caching"], serde_json::json!({"ttl": 3600, "enabled": true}));
        // The overriding value keeps the location of the file that set it.
        let ttl = base.get("layers").unwrap().as_seq().unwrap()[0].get_path(&["caching", "ttl"]).unwrap();
        assert_eq!(ttl.loc.file, FileId(1));
    }
}
