//! Breaking-change classification for clients of OGC API Features, WFS and Esri FeatureServer.
//!
//! Each code is stable (policies, dashboards and people key on it) and comes with a one-line reason.
//! Not breaking: a layer added at the end, a field or CRS added, titles, descriptions, keywords, links,
//! extents, caching and style details.

use serde::Serialize;

use crate::config::node::Node;
use crate::config::resource::{Resource, ResourceKind};
use crate::config::ConfigFormat;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Breaking {
    pub code: &'static str,
    pub reason: String,
}

pub(super) fn b(code: &'static str, reason: String) -> Breaking {
    Breaking { code, reason }
}

/// What is known of the whole revision when classifying one resource (for "while referenced").
pub struct Context<'a> {
    pub old: &'a [Resource<'a>],
}

impl Context<'_> {
    fn referenced(&self, by: ResourceKind, test: impl Fn(&Node) -> bool) -> Vec<String> {
        self.old.iter().filter(|r| r.kind == by && test(r.node)).map(|r| r.display_id()).collect()
    }
}

/// Breaking codes of a removed resource.
pub fn removed(old: &Resource, ctx: &Context) -> Vec<Breaking> {
    if old.format == ConfigFormat::Hcl {
        return super::hcl::removed(old);
    }
    let id = old.display_id();
    match old.kind {
        ResourceKind::Service => {
            vec![b("service.removed", format!("service `{id}` is removed: its OGC, WFS and Esri endpoints return 404"))]
        }
        ResourceKind::Layer => {
            vec![b("layer.removed", format!("layer `{id}` is removed: clients of collection `{id}` get 404"))]
        }
        ResourceKind::Datasource => {
            vec![b("datasource.removed", format!("data source `{id}` is removed: services that read from it fail"))]
        }
        ResourceKind::Style => {
            let users =
                ctx.referenced(ResourceKind::Layer, |n| styles_of(n).iter().any(|s| s.eq_ignore_ascii_case(&old.id)));
            while_used(&users, "style.removed", |users| {
                format!("style `{id}` is removed while layer(s) {users} use it: map clients asking for it fail")
            })
        }
        ResourceKind::Folder => {
            let users = ctx.referenced(ResourceKind::Service, |n| {
                n.get_str("folderId").is_some_and(|f| f.eq_ignore_ascii_case(&old.id))
            });
            while_used(&users, "folder.removed", |users| {
                format!("folder `{id}` is removed while service(s) {users} are in it: their Esri URLs change")
            })
        }
        _ => vec![],
    }
}

/// A removal is breaking only while something still refers to what is removed: `code`, with the reason
/// naming `users`, unless there are none.
fn while_used(users: &[String], code: &'static str, reason: impl FnOnce(String) -> String) -> Vec<Breaking> {
    if users.is_empty() {
        vec![]
    } else {
        vec![b(code, reason(list(users)))]
    }
}

/// Breaking codes of a resource present in both revisions.
pub fn modified(old: &Resource, new: &Resource) -> Vec<Breaking> {
    if old.format == ConfigFormat::Hcl || new.format == ConfigFormat::Hcl {
        return super::hcl::modified(old, new);
    }
    match old.kind {
        ResourceKind::Service => service(old, new),
        ResourceKind::Layer => layer(old, new),
        ResourceKind::Datasource => provider_changed(old, new),
        _ => vec![],
    }
}

/// A data source's `provider` changed (both generations name it so).
pub(super) fn provider_changed(old: &Resource, new: &Resource) -> Vec<Breaking> {
    let (o, n) = (old.node.get_str("provider"), new.node.get_str("provider"));
    if !changed_ci(o, n) {
        return vec![];
    }
    let reason =
        format!("data source `{}` changes provider {} -> {}: queries and types may differ", old.id, show(o), show(n));
    vec![b("datasource.provider_changed", reason)]
}

/// A text attribute at `path` that changed (ignoring case), as `{subject} {what} old -> new: {consequence}`.
fn text_changed(
    old: &Node,
    new: &Node,
    path: &[&str],
    code: &'static str,
    subject: &str,
    what: &str,
    consequence: &str,
) -> Option<Breaking> {
    let (a, z) = (old.get_path(path).and_then(Node::as_str), new.get_path(path).and_then(Node::as_str));
    changed_ci(a, z).then(|| b(code, format!("{subject} {what} {} -> {}: {consequence}", show(a), show(z))))
}

fn service(old: &Resource, new: &Resource) -> Vec<Breaking> {
    let (o, n) = (old.node, new.node);
    let id = &old.id;
    let subject = format!("service `{id}`");
    let mut out: Vec<Breaking> = [
        (&["serviceType"], "service.type_changed", "type", "its endpoints change"),
        (&["folderId"], "service.folder_changed", "folder", "its Esri FeatureServer URL changes"),
        (&["dataSourceId"], "service.datasource_changed", "data source", "its layers may serve other data"),
    ]
    .into_iter()
    .filter_map(|(path, code, what, consequence)| text_changed(o, n, path, code, &subject, what, consequence))
    .collect();
    let enabled = |node: &Node| node.get("enabled").and_then(Node::as_bool).unwrap_or(true);
    if enabled(o) && !enabled(n) {
        out.push(b("service.disabled", format!("service `{id}` is disabled: all its endpoints stop answering")));
    }
    // Honua lists collections for a service with an `ogc` block whose `collectionsEnabled` is not false.
    let collections = |node: &Node| {
        node.get("ogc").is_some_and(|ogc| ogc.get("collectionsEnabled").and_then(Node::as_bool).unwrap_or(true))
    };
    if collections(o) && !collections(n) {
        out.push(b(
            "service.collections_disabled",
            format!("service `{id}` turns OGC API Features off: its /collections disappear"),
        ));
    }
    out
}

fn layer(old: &Resource, new: &Resource) -> Vec<Breaking> {
    let (o, n) = (old.node, new.node);
    let id = new.display_id();
    let mut out = Vec::new();
    if changed_ci(old.service_id(), new.service_id()) {
        out.push(b(
            "layer.service_changed",
            format!(
                "layer `{}` moves to service {}: its collection id and URLs change",
                old.display_id(),
                show(new.service_id())
            ),
        ));
    } else if let (Some(from), Some(to)) = (old.index, new.index) {
        // Honua's index: position after sorting by `catalog.ordering`, then title. A layer added, removed
        // or retitled can shift others; reordering the file alone shifts nothing.
        if from != to {
            out.push(b(
                "layer.reordered",
                format!(
                    "layer `{id}` moves from Esri index {from} to {to}: FeatureServer clients address layers by index (sorted by `catalog.ordering`, then title; pin it with `catalog.ordering`)"
                ),
            ));
        }
    }
    let subject = format!("layer `{id}`");
    let mut text_change = |path: &[&str], code: &'static str, what: &str, consequence: &str| {
        out.extend(text_changed(o, n, path, code, &subject, what, consequence));
    };
    text_change(
        &["geometryType"],
        "layer.geometry_type_changed",
        "geometry type",
        "clients expecting the old geometry fail",
    );
    text_change(&["idField"], "layer.id_field_changed", "id field", "feature ids and links change");
    text_change(
        &["geometryField"],
        "layer.geometry_field_changed",
        "geometry field",
        "spatial queries use another column",
    );
    text_change(
        &["storage", "table"],
        "layer.storage_table_changed",
        "storage table",
        "features come from another table",
    );
    text_change(&["storage", "primaryKey"], "layer.primary_key_changed", "primary key", "feature ids change");
    let removed_crs: Vec<String> = strings(o.get("crs"))
        .into_iter()
        .filter(|c| !strings(n.get("crs")).iter().any(|d| d.eq_ignore_ascii_case(c)))
        .collect();
    if !removed_crs.is_empty() {
        out.push(b(
            "layer.crs_removed",
            format!("layer `{id}` no longer offers {}: requests in those CRS fail", list(&removed_crs)),
        ));
    }
    let int = |node: &Node, path: &[&str]| node.get_path(path).and_then(Node::as_i64);
    let (srid_a, srid_z) = (int(o, &["storage", "srid"]), int(n, &["storage", "srid"]));
    if srid_a.is_some() && srid_a != srid_z {
        out.push(b(
            "layer.srid_changed",
            format!("layer `{id}` storage SRID {} -> {}: coordinates are reinterpreted", opt(srid_a), opt(srid_z)),
        ));
    }
    let (max_a, max_z) = (int(o, &["query", "maxRecordCount"]), int(n, &["query", "maxRecordCount"]));
    if let Some(z) = max_z {
        if max_a.is_none_or(|a| z < a) {
            out.push(b("layer.max_records_lowered", format!("layer `{id}` returns at most {z} records per request (was {}): clients paging with larger pages get fewer features", max_a.map_or("no limit".into(), |a| a.to_string()))));
        }
    }
    let filter = |node: &Node| {
        node.get_path(&["query", "autoFilter", "cql"])
            .and_then(Node::as_str)
            .filter(|f| !f.trim().is_empty())
            .map(str::to_string)
    };
    let (fa, fz) = (filter(o), filter(n));
    if fz.is_some() && fa != fz {
        out.push(b(
            "layer.filter_added",
            format!(
                "layer `{id}` gets a row filter `{}`: features clients saw before may disappear",
                fz.unwrap_or_default()
            ),
        ));
    }
    fields(&id, o, n, &mut out);
    out
}

fn fields(id: &str, o: &Node, n: &Node, out: &mut Vec<Breaking>) {
    let list = |node: &Node| node.get("fields").and_then(Node::as_seq).map(<[Node]>::to_vec).unwrap_or_default();
    let (old_fields, new_fields) = (list(o), list(n));
    if old_fields.is_empty() {
        return;
    }
    let name = |f: &Node| f.get_str("name").map(str::to_lowercase);
    for f in &old_fields {
        let Some(fname) = f.get_str("name") else {
            continue;
        };
        let Some(g) = new_fields.iter().find(|g| name(g) == name(f)) else {
            out.push(b(
                "field.removed",
                format!("layer `{id}` drops field `{fname}`: clients selecting or filtering on it fail"),
            ));
            continue;
        };
        let ty = |x: &Node| x.get_str("type").or_else(|| x.get_str("dataType")).map(str::to_string);
        if ty(f).is_some() && changed_ci(ty(f).as_deref(), ty(g).as_deref()) {
            out.push(b(
                "field.type_changed",
                format!(
                    "layer `{id}` field `{fname}` type {} -> {}: clients parsing it fail",
                    show(ty(f).as_deref()),
                    show(ty(g).as_deref())
                ),
            ));
        }
        let nullable = |x: &Node| x.get("nullable").and_then(Node::as_bool).unwrap_or(true);
        if nullable(f) != nullable(g) {
            out.push(b(
                "field.nullability_changed",
                format!(
                    "layer `{id}` field `{fname}` becomes {}: {}",
                    if nullable(g) { "nullable" } else { "required" },
                    if nullable(g) {
                        "readers that assumed a value get nulls"
                    } else {
                        "edits without it are rejected"
                    }
                ),
            ));
        }
    }
}

/// Style ids a layer uses (`styles.defaultStyleId`, `styles.styleIds`).
fn styles_of(layer: &Node) -> Vec<String> {
    let mut out = strings(layer.get_path(&["styles", "styleIds"]));
    out.extend(layer.get_path(&["styles", "defaultStyleId"]).and_then(Node::as_str).map(str::to_string));
    out
}

fn strings(node: Option<&Node>) -> Vec<String> {
    node.and_then(Node::as_seq).unwrap_or_default().iter().filter_map(|n| n.as_str().map(str::to_string)).collect()
}

/// Differs, ignoring case (ids and type names are case-insensitive in Honua).
pub(super) fn changed_ci(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => !x.eq_ignore_ascii_case(y),
        (None, None) => false,
        _ => true,
    }
}

pub(super) fn show(v: Option<&str>) -> String {
    v.map_or("(none)".into(), |s| format!("`{s}`"))
}

fn opt(v: Option<i64>) -> String {
    v.map_or("(none)".into(), |s| s.to_string())
}

pub(super) fn list(items: &[String]) -> String {
    items.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", ")
}
