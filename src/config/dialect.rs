//! Dialects that are read into Honua's server metadata format.
//!
//! - `kind: ServiceCollection` (Honua's own early GitOps sample): services with nested `layers`,
//!   `name`, `datasource`, `table`, `idColumn`, `geometryColumn`, `properties`. Normalized, with a warning
//!   that explains the migration. Nothing is invented that the server needs and the file does not say
//!   (no folders, no geometry types): validation reports those gaps at the layer or service that lacks them.
//! - `kind: DatasourceConfiguration` / a `datasources:` map in `datasources.yaml`: entries keyed by id
//!   with `type` become `dataSources` entries with `provider`.

use crate::diagnostic::{Diagnostic, Place};

use super::node::{Entry, Loc, Map, Node, Value};
use super::source::SourceMap;

pub const SERVICE_COLLECTION: &str = "ServiceCollection";
const ENVELOPE_KEYS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// Normalizes a metadata document in place; returns the warnings to report.
pub fn normalize_metadata(doc: &mut Node, sources: &SourceMap) -> Vec<Diagnostic> {
    let Some(map) = doc.as_map_mut() else {
        return Vec::new();
    };
    let Some(kind_entry) = map.entry("kind") else {
        return Vec::new();
    };
    if kind_entry.value.as_str() != Some(SERVICE_COLLECTION) {
        return Vec::new();
    }
    let kind_loc = kind_entry.value.loc;
    let mut diagnostics = vec![Diagnostic::warning(
        "dialect.service_collection",
        place(sources, kind_loc),
        "this file uses the older `kind: ServiceCollection` dialect; it was read as Honua's server format: \
         each service's nested `layers` became top-level `layers` with `serviceId`, `name` became `id`, \
         `idColumn` became `idField` and `storage.primaryKey`, `geometryColumn` became `geometryField` and \
         `storage.geometryColumn`, `table` became `storage.table`, `properties` became `fields`, and a layer's \
         `datasource` became its service's `dataSourceId`. Migrate by writing the file in that form \
         (`honua render --path <repo> --env <env>` prints the result)",
    )];
    for key in ENVELOPE_KEYS {
        map.remove(key);
    }
    let Some(services_entry) = map.remove("services") else {
        return diagnostics;
    };
    let services_key_loc = services_entry.key_loc;
    let mut services = Vec::new();
    let mut layers = Vec::new();
    for mut service in into_seq(services_entry.value) {
        let service_loc = service.loc;
        let Some(svc) = service.as_map_mut() else {
            services.push(service);
            continue;
        };
        rename(svc, "name", "id");
        let service_id = svc.get("id").cloned();
        let nested = svc.remove("layers");
        if svc.get("serviceType").is_none() {
            // The dialect only ever described feature services (tables with geometry).
            let at = svc.entry("id").map_or(service_loc, |e| e.key_loc);
            svc.insert("serviceType", at, Node::str(at, "feature"));
        }
        let mut service_datasource: Option<Node> = svc.get("dataSourceId").cloned();
        for mut layer in nested.map(|e| into_seq(e.value)).unwrap_or_default() {
            if let Some(l) = layer.as_map_mut() {
                normalize_layer(l, service_id.as_ref());
                if let Some(ds) = l.remove("datasource") {
                    match &service_datasource {
                        None => service_datasource = Some(ds.value),
                        Some(existing) if existing.as_str() != ds.value.as_str() => {
                            diagnostics.push(Diagnostic::error(
                                "dialect.mixed_datasources",
                                place(sources, ds.value.loc),
                                format!(
                                    "this layer reads from datasource `{}` but its service already uses `{}`; in Honua's format a service has one `dataSourceId`, so move this layer to a service of its own",
                                    ds.value, existing
                                ),
                            ));
                        }
                        Some(_) => {}
                    }
                }
            }
            layers.push(layer);
        }
        if let Some(ds) = service_datasource {
            if svc.get("dataSourceId").is_none() {
                svc.insert("dataSourceId", ds.loc, ds);
            }
        }
        services.push(service);
    }
    map.insert("services", services_key_loc, Node::new(services_key_loc, Value::Seq(services)));
    if !layers.is_empty() || map.get("layers").is_none() {
        let existing = map.remove("layers").map(|e| into_seq(e.value)).unwrap_or_default();
        let mut all = existing;
        all.extend(layers);
        map.insert("layers", services_key_loc, Node::new(services_key_loc, Value::Seq(all)));
    }
    diagnostics
}

fn normalize_layer(layer: &mut Map, service_id: Option<&Node>) {
    rename(layer, "name", "id");
    if let (None, Some(sid)) = (layer.get("serviceId"), service_id) {
        layer.insert("serviceId", sid.loc, sid.clone());
    }
    if let Some(e) = layer.remove("idColumn") {
        set_if_absent(layer, "idField", &e);
        storage(layer, e.key_loc).insert("primaryKey", e.key_loc, e.value);
    }
    if let Some(e) = layer.remove("geometryColumn") {
        set_if_absent(layer, "geometryField", &e);
        storage(layer, e.key_loc).insert("geometryColumn", e.key_loc, e.value);
    }
    for (from, to) in [("table", "table"), ("srid", "srid")] {
        if let Some(e) = layer.remove(from) {
            storage(layer, e.key_loc).insert(to, e.key_loc, e.value);
        }
    }
    rename(layer, "properties", "fields");
}

fn storage(layer: &mut Map, at: Loc) -> &mut Map {
    if layer.get("storage").and_then(Node::as_map).is_none() {
        layer.insert("storage", at, Node::map(at));
    }
    layer.get_mut("storage").and_then(Node::as_map_mut).expect("inserted above")
}

fn set_if_absent(map: &mut Map, key: &str, from: &Entry) {
    if map.get(key).is_none() {
        map.insert(key, from.key_loc, from.value.clone());
    }
}

fn rename(map: &mut Map, from: &str, to: &str) {
    if map.get(to).is_some() {
        return;
    }
    if let Some(e) = map.entries.iter_mut().find(|e| e.key == from) {
        e.key = to.into();
    }
}

fn into_seq(node: Node) -> Vec<Node> {
    match node.value {
        Value::Seq(items) => items,
        _ => Vec::new(),
    }
}

/// Normalizes a `datasources.yaml` document into a list of `dataSources` entries.
/// Accepts `datasources: {id: {type|provider, connectionString, …}}` and `dataSources: [{id, …}]`.
pub fn normalize_datasources(doc: &Node) -> Vec<Node> {
    if let Some(list) = doc.get("dataSources").and_then(Node::as_seq) {
        return list.to_vec();
    }
    let Some(map) = doc.get("datasources").and_then(Node::as_map) else {
        return Vec::new();
    };
    map.entries
        .iter()
        .map(|e| {
            let mut entry = match &e.value.value {
                Value::Map(m) => m.clone(),
                _ => Map::default(),
            };
            rename(&mut entry, "type", "provider");
            let mut out = Map::default();
            out.insert("id", e.key_loc, Node::str(e.key_loc, e.key.clone()));
            out.entries.extend(entry.entries);
            Node::new(e.value.loc, Value::Map(out))
        })
        .collect()
}

pub fn place(sources: &SourceMap, loc: Loc) -> Place<'_> {
    Place { file: sources.path(loc.file), line: loc.line, column: loc.column }
}
