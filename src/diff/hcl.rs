//! Breaking changes of Configuration 2.0 blocks, for clients of the collections Honua's
//! `HclMetadataProvider` builds from them (honua-io/Honua.Server `00710654`,
//! `src/Honua.Server.Core/Metadata/HclMetadataProvider.cs`): a layer is served once per entry of its
//! `services`, as collection `service::layer` when it has one service and `service::layer_service`
//! when it has several. Codes are the JSON era's where the meaning is the same.

use super::breaking::{b, changed_ci, list, show, Breaking};
use crate::config::hcl::{layer_collections, reference_target};
use crate::config::node::Node;
use crate::config::resource::{Resource, ResourceKind};

fn collections(layer: &Resource) -> Vec<String> {
    layer_collections(&layer.id, layer.node).into_iter().map(|(service, id)| format!("{service}::{id}")).collect()
}

pub fn removed(old: &Resource) -> Vec<Breaking> {
    let id = &old.id;
    match old.kind {
        ResourceKind::Layer => {
            let served = collections(old);
            let whom = if served.is_empty() {
                "its clients get 404".to_string()
            } else {
                format!("clients of {} get 404", list(&served))
            };
            vec![b("layer.removed", format!("layer `{id}` is removed: {whom}"))]
        }
        ResourceKind::Service => {
            vec![b(
                "service.removed",
                format!("service `{id}` is removed: its endpoints and the collections of its layers return 404"),
            )]
        }
        ResourceKind::DataSource => {
            vec![b("datasource.removed", format!("data source `{id}` is removed: the layers that read from it fail"))]
        }
        _ => vec![],
    }
}

pub fn modified(old: &Resource, new: &Resource) -> Vec<Breaking> {
    match old.kind {
        ResourceKind::Layer => layer(old, new),
        ResourceKind::Service => {
            let mut out = Vec::new();
            let enabled = |n: &Node| n.get("enabled").and_then(Node::as_bool).unwrap_or(true);
            if enabled(old.node) && !enabled(new.node) {
                out.push(b(
                    "service.disabled",
                    format!(
                        "service `{}` is disabled: its endpoints and the collections of its layers stop answering",
                        old.id
                    ),
                ));
            }
            let kind = |r: &Resource| r.node.get_str("type").unwrap_or(&r.id).to_string();
            let (a, z) = (kind(old), kind(new));
            if !a.eq_ignore_ascii_case(&z) {
                out.push(b(
                    "service.type_changed",
                    format!("service `{}` changes type `{a}` -> `{z}`: its endpoints change", old.id),
                ));
            }
            out
        }
        ResourceKind::DataSource => super::breaking::provider_changed(old, new),
        _ => vec![],
    }
}

fn layer(old: &Resource, new: &Resource) -> Vec<Breaking> {
    let id = &old.id;
    let mut out = Vec::new();
    let before = layer_collections(&old.id, old.node);
    let after = layer_collections(&new.id, new.node);
    for (service, collection) in &before {
        if after.iter().any(|(s, c)| s == service && c == collection) {
            continue;
        }
        match after.iter().find(|(s, _)| s == service) {
            Some((_, renamed)) => out.push(b(
                "layer.collection_renamed",
                format!("collection `{service}::{collection}` becomes `{service}::{renamed}` (Honua names a layer `layer_service` when it has several services): clients of the old id get 404"),
            )),
            None => out.push(b(
                "layer.protocol_removed",
                format!("layer `{id}` is no longer served through `{service}`: clients of collection `{service}::{collection}` get 404"),
            )),
        }
    }
    let text = |n: &Node, path: &[&str]| n.get_path(path).and_then(Node::as_str).map(str::to_string);
    let checks: [(&[&str], &'static str, &str, &str); 4] = [
        (&["table"], "layer.storage_table_changed", "table", "features come from another table"),
        (&["geometry", "type"], "layer.geometry_type_changed", "geometry type", "clients that draw or edit it break"),
        (
            &["geometry", "column"],
            "layer.geometry_field_changed",
            "geometry column",
            "geometries come from another column",
        ),
        (&["id_field"], "layer.id_field_changed", "id field", "feature ids and links change"),
    ];
    for (path, code, what, consequence) in checks {
        let (a, z) = (text(old.node, path), text(new.node, path));
        if changed_ci(a.as_deref(), z.as_deref()) {
            out.push(b(
                code,
                format!("layer `{id}` {what} {} -> {}: {consequence}", show(a.as_deref()), show(z.as_deref())),
            ));
        }
    }
    // Honua serves a layer without a geometry block as EPSG:4326, and one without an SRID too.
    let srid = |n: &Node| n.get_path(&["geometry", "srid"]).and_then(Node::as_i64).unwrap_or(4326);
    let (a, z) = (srid(old.node), srid(new.node));
    if a != z {
        out.push(b("layer.srid_changed", format!("layer `{id}` SRID {a} -> {z}: coordinates clients receive change")));
    }
    fields(id, old.node, new.node, &mut out);
    let source = |n: &Node| n.get_str("data_source").map(|r| reference_target(r).to_string());
    let (a, z) = (source(old.node), source(new.node));
    if changed_ci(a.as_deref(), z.as_deref()) {
        out.push(b(
            "layer.datasource_changed",
            format!(
                "layer `{id}` reads from data source {} -> {}: it may serve other data",
                show(a.as_deref()),
                show(z.as_deref())
            ),
        ));
    }
    out
}

/// Declared fields (`fields = { name = { type, nullable } }`), as Honua serves them: one dropped, its
/// type or its nullability changed. Field names are matched as Honua's dictionary does, exactly.
fn fields(id: &str, old: &Node, new: &Node, out: &mut Vec<Breaking>) {
    let Some(before) = old.get("fields").and_then(Node::as_map) else { return };
    let after = new.get("fields").and_then(Node::as_map);
    for (name, f) in before.iter() {
        let Some(g) = after.and_then(|a| a.get(name)) else {
            out.push(b(
                "field.removed",
                format!("layer `{id}` drops field `{name}`: clients selecting or filtering on it fail"),
            ));
            continue;
        };
        let (a, z) = (f.get_str("type"), g.get_str("type"));
        if changed_ci(a, z) {
            out.push(b(
                "field.type_changed",
                format!("layer `{id}` field `{name}` type {} -> {}: clients parsing it fail", show(a), show(z)),
            ));
        }
        let nullable = |x: &Node| x.get("nullable").and_then(Node::as_bool).unwrap_or(true);
        if nullable(f) != nullable(g) {
            let (now, why) = if nullable(g) {
                ("nullable", "readers that assumed a value get nulls")
            } else {
                ("required", "edits without it are rejected")
            };
            out.push(b("field.nullability_changed", format!("layer `{id}` field `{name}` becomes {now}: {why}")));
        }
    }
}
