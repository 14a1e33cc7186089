//! The semantic rules the Honua server enforces beyond its schema, and ours (literal secrets).

use std::collections::HashMap;

use crate::config::dialect::place;
use crate::config::layering::ENTITY_LISTS;
use crate::config::node::{Node, Value};
use crate::config::secrets::{connection_string_secret, is_connection_key, is_placeholder, is_secret_key};
use crate::config::source::SourceMap;
use crate::diagnostic::{Diagnostic, Severity};

/// Ids must be unique per kind, compared without case (the server's dictionaries ignore case); layer ids
/// are unique across services. Checked per file, because layering merges equal ids on purpose.
pub fn unique_ids(doc: &Node, sources: &SourceMap, out: &mut Vec<Diagnostic>) {
    for list in ENTITY_LISTS {
        let Some(items) = doc.get(list).and_then(Node::as_seq) else {
            continue;
        };
        let mut seen: HashMap<String, &Node> = HashMap::new();
        for item in items {
            let Some(id_node) = item.get("id") else {
                continue;
            };
            let Some(id) = id_node.as_str() else { continue };
            match seen.get(&id.to_lowercase()) {
                Some(first) => out.push(Diagnostic::error(
                    "duplicate_id",
                    place(sources, id_node.loc),
                    format!(
                        "duplicate id: {} id `{id}` is already used at line {} (ids are compared without case{}); give this entry its own id",
                        singular(list),
                        first.loc.line,
                        if list == "layers" { ", and layer ids must be unique across services" } else { "" }
                    ),
                )),
                None => {
                    seen.insert(id.to_lowercase(), id_node);
                }
            }
        }
    }
}

fn singular(list: &str) -> &'static str {
    match list {
        "folders" => "folder",
        "dataSources" => "data source",
        "services" => "service",
        "layers" => "layer",
        "styles" => "style",
        _ => "raster dataset",
    }
}

fn ids(doc: &Node, list: &str) -> Vec<String> {
    doc.get(list)
        .and_then(Node::as_seq)
        .unwrap_or_default()
        .iter()
        .filter_map(|n| n.get_str("id").map(str::to_string))
        .collect()
}

/// service→folder, service→dataSource, layer→service, layer→styles, raster→service/layer.
pub fn references(doc: &Node, sources: &SourceMap, out: &mut Vec<Diagnostic>) {
    let defined: HashMap<&str, Vec<String>> =
        ["folders", "dataSources", "services", "layers", "styles"].iter().map(|l| (*l, ids(doc, l))).collect();
    let mut check = |owner: &str, node: &Node, target_list: &str, code: &str| {
        let Some(id) = node.as_str() else { return };
        let known = &defined[target_list];
        if known.iter().any(|k| k.eq_ignore_ascii_case(id)) {
            return;
        }
        let listing = if known.is_empty() {
            format!("no {} are defined", target_list)
        } else {
            format!("defined: {}", known.iter().take(10).map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "))
        };
        out.push(Diagnostic::error(
            code,
            place(sources, node.loc),
            format!(
                "broken reference: {owner} refers to {} `{id}`, which is not defined ({listing}); define it under `{target_list}:` or fix the id",
                singular(target_list)
            ),
        ));
    };
    for service in doc.get("services").and_then(Node::as_seq).unwrap_or_default() {
        let owner = format!("service `{}`", service.get_str("id").unwrap_or("?"));
        if let Some(n) = service.get("folderId") {
            check(&owner, n, "folders", "reference.unknown_folder");
        }
        if let Some(n) = service.get("dataSourceId") {
            check(&owner, n, "dataSources", "reference.unknown_datasource");
        }
    }
    for (list, kind) in [("layers", "layer"), ("rasterDatasets", "raster dataset")] {
        for item in doc.get(list).and_then(Node::as_seq).unwrap_or_default() {
            let owner = format!("{kind} `{}`", item.get_str("id").unwrap_or("?"));
            if let Some(n) = item.get("serviceId") {
                check(&owner, n, "services", "reference.unknown_service");
            }
            if list == "rasterDatasets" {
                if let Some(n) = item.get("layerId") {
                    check(&owner, n, "layers", "reference.unknown_layer");
                }
            }
            if let Some(styles) = item.get("styles") {
                if let Some(n) = styles.get("defaultStyleId") {
                    check(&owner, n, "styles", "reference.unknown_style");
                }
                for n in styles.get("styleIds").and_then(Node::as_seq).unwrap_or_default() {
                    check(&owner, n, "styles", "reference.unknown_style");
                }
            }
        }
    }
}

/// Browsers refuse credentials with a wildcard origin, and Honua refuses the combination at start.
pub fn cors(root: &Node, sources: &SourceMap, out: &mut Vec<Diagnostic>) {
    for cors in [root.get_path(&["server", "cors"]), root.get("cors")].into_iter().flatten() {
        let Some(creds) = cors.get("allowCredentials") else {
            continue;
        };
        let wildcard = cors
            .get("allowedOrigins")
            .and_then(Node::as_seq)
            .unwrap_or_default()
            .iter()
            .any(|o| o.as_str().is_some_and(|s| s.trim() == "*"));
        if creds.as_bool() == Some(true) && wildcard {
            out.push(Diagnostic::error(
                "cors.credentials_with_wildcard",
                place(sources, creds.loc),
                "invalid CORS config: `allowCredentials: true` with the origin `*` is refused by browsers and by Honua; list the exact origins in `allowedOrigins`, or set `allowCredentials: false`",
            ));
        }
    }
}

/// A layer's field list names each field once and contains its `idField`: warnings, Honua checks neither.
pub fn layer_fields(root: &Node, sources: &SourceMap, out: &mut Vec<Diagnostic>) {
    for layer in root.get("layers").and_then(Node::as_seq).unwrap_or_default() {
        let Some(fields) = layer.get("fields").and_then(Node::as_seq) else {
            continue;
        };
        let layer_id = layer.get_str("id").unwrap_or("?");
        let mut seen: HashMap<String, u32> = HashMap::new();
        for field in fields {
            let Some(name_node) = field.get("name") else {
                continue;
            };
            let Some(name) = name_node.as_str() else {
                continue;
            };
            if let Some(line) = seen.insert(name.to_lowercase(), name_node.loc.line) {
                out.push(Diagnostic::warning(
                    "field.duplicate_name",
                    place(sources, name_node.loc),
                    format!("layer `{layer_id}` lists field `{name}` twice (first at line {line}); Honua loads it, but a filter naming `{name}` fails (it looks a field up expecting one match). Remove one"),
                ));
            }
        }
        if fields.is_empty() {
            continue;
        }
        if let Some(id_field) = layer.get("idField") {
            if let Some(name) = id_field.as_str() {
                if !seen.contains_key(&name.to_lowercase()) {
                    out.push(Diagnostic::warning(
                        "field.missing_id_field",
                        place(sources, id_field.loc),
                        format!("layer `{layer_id}` has `idField: {name}` but its `fields` list has no field `{name}`; Honua accepts it (it does not check), but clients describing the layer will not see the id field. Add it to `fields` or fix `idField`"),
                    ));
                }
            }
        }
    }
}

/// Passwords and secrets must be `${VAR}` placeholders: a literal would be committed to Git and shipped
/// through the service. `severity` is an error in a repository, a warning for a lone file.
pub fn literal_secrets(root: &Node, sources: &SourceMap, severity: Severity, out: &mut Vec<Diagnostic>) {
    walk_keys(root, "", &mut |_, key, node| {
        let Some(value) = node.as_str() else { return };
        let finding = if is_connection_key(key) {
            connection_string_secret(value)
        } else if is_secret_key(key) && !value.is_empty() && !is_placeholder(value) {
            Some(format!("`{key}`"))
        } else {
            None
        };
        if let Some(what) = finding {
            out.push(Diagnostic::new(
                severity,
                "secret.literal",
                place(sources, node.loc),
                format!(
                    "a secret is written literally in {what}; it would be committed to Git and copied to every server. Use a placeholder such as `${{DB_PASSWORD}}` and give the agent that variable"
                ),
            ));
        }
    });
}

/// Visits every mapping entry in the tree with its JSON pointer.
fn walk_keys<'a>(node: &'a Node, pointer: &str, visit: &mut dyn FnMut(&str, &str, &'a Node)) {
    let mut buffer = String::from(pointer);
    walk(node, &mut buffer, visit);
}

/// One pointer buffer for the whole walk: pushed and truncated, never allocated per node (these walks
/// run over every node of 10,000-layer catalogues).
fn walk<'a>(node: &'a Node, pointer: &mut String, visit: &mut dyn FnMut(&str, &str, &'a Node)) {
    use std::fmt::Write;
    let len = pointer.len();
    match &node.value {
        Value::Map(m) => {
            for e in &m.entries {
                pointer.push('/');
                if e.key.contains(['~', '/']) {
                    pointer.push_str(&e.key.replace('~', "~0").replace('/', "~1"));
                } else {
                    pointer.push_str(&e.key);
                }
                visit(pointer, &e.key, &e.value);
                walk(&e.value, pointer, visit);
                pointer.truncate(len);
            }
        }
        Value::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                let _ = write!(pointer, "/{i}");
                walk(item, pointer, visit);
                pointer.truncate(len);
            }
        }
        _ => {}
    }
}
