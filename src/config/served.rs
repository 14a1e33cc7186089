//! What Honua serves from a metadata document, computed as Honua's own source computes it (JSON era,
//! Honua.Server `f210059`), so the agent checks what Honua really publishes and the diff classifies what
//! really moves for clients:
//!
//! - **OGC API collections** (`Ogc/OgcSharedHandlers.Collections.cs`, `MetadataSchemaParser.BuildOgc`):
//!   a service publishes its layers as collections `service::layer` only when it is enabled (default
//!   true) and has an `ogc` block whose `collectionsEnabled` is not false (with the block it defaults to
//!   true; without it, to false).
//! - **Esri FeatureServer layer indexes** (`Catalog/CatalogProjectionService.cs`): within each enabled
//!   service, layers are sorted by `catalog.ordering` (absent sorts last), then by title (the id when
//!   there is none), case-insensitively; the position is the index in
//!   `/rest/services/{folder}/{service}/FeatureServer/{index}`. The sort is stable: ties keep the order
//!   of the file.

use std::collections::HashMap;

use super::node::Node;

/// Whether Honua lists `service`'s layers as OGC API collections.
pub fn publishes_collections(service: &Node) -> bool {
    let enabled = service.get("enabled").and_then(Node::as_bool).unwrap_or(true);
    let collections = match service.get("ogc") {
        Some(ogc) => ogc.get("collectionsEnabled").and_then(Node::as_bool).unwrap_or(true),
        None => false,
    };
    enabled && collections
}

/// Whether a service is enabled (Honua's default: yes).
pub fn enabled(service: &Node) -> bool {
    service.get("enabled").and_then(Node::as_bool).unwrap_or(true)
}

fn services(metadata: &Node) -> HashMap<String, &Node> {
    metadata
        .get("services")
        .and_then(Node::as_seq)
        .unwrap_or_default()
        .iter()
        .filter_map(|s| Some((s.get_str("id")?.to_lowercase(), s)))
        .collect()
}

fn layers(metadata: &Node) -> &[Node] {
    metadata.get("layers").and_then(Node::as_seq).unwrap_or_default()
}

/// The OGC collection ids (`service::layer`) Honua lists for `metadata`, in file order.
pub fn collections(metadata: &Node) -> Vec<String> {
    let services = services(metadata);
    layers(metadata)
        .iter()
        .filter_map(|layer| {
            let (id, service_id) = (layer.get_str("id")?, layer.get_str("serviceId")?);
            let service = services.get(&service_id.to_lowercase())?;
            publishes_collections(service).then(|| format!("{service_id}::{id}"))
        })
        .collect()
}

/// The Esri FeatureServer index of every layer of an enabled service: `(service, layer)` (lowercase) →
/// index. Layers of disabled services, or of services that do not exist, have none.
pub fn esri_indexes(metadata: &Node) -> HashMap<(String, String), usize> {
    let services = services(metadata);
    let mut per_service: HashMap<String, Vec<(Option<i64>, String, String)>> = HashMap::new();
    for layer in layers(metadata) {
        let (Some(id), Some(service_id)) = (layer.get_str("id"), layer.get_str("serviceId")) else { continue };
        let service_id = service_id.to_lowercase();
        if !services.get(&service_id).is_some_and(|s| enabled(s)) {
            continue;
        }
        let ordering = layer.get("catalog").and_then(|c| c.get("ordering")).and_then(Node::as_i64);
        let title = layer.get_str("title").unwrap_or(id).to_uppercase();
        per_service.entry(service_id).or_default().push((ordering, title, id.to_lowercase()));
    }
    let mut out = HashMap::new();
    for (service, mut list) in per_service {
        // Stable: equal keys keep file order, as LINQ's OrderBy/ThenBy do.
        list.sort_by(|a, b| {
            a.0.unwrap_or(i64::from(i32::MAX)).cmp(&b.0.unwrap_or(i64::from(i32::MAX))).then(a.1.cmp(&b.1))
        });
        for (index, (_, _, layer)) in list.into_iter().enumerate() {
            out.insert((service.clone(), layer), index);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::FileId;
    use crate::config::yaml::parse;

    fn doc(text: &str) -> Node {
        parse(text, FileId(0)).unwrap()
    }

    #[test]
    fn collections_follow_honuas_rule() {
        let m = doc("services:
  - {id: a, ogc: {}}
  - {id: b, ogc: {collectionsEnabled: false}}
  - {id: c}
  - {id: d, enabled: false, ogc: {collectionsEnabled: true}}
layers:
  - {id: x, serviceId: a}
  - {id: y, serviceId: b}
  - {id: z, serviceId: c}
  - {id: w, serviceId: d}
  - {id: v, serviceId: A}
");
        assert_eq!(collections(&m), ["a::x", "A::v"]);
    }

    #[test]
    fn esri_indexes_sort_by_ordering_then_title() {
        let m = doc("services: [{id: s}, {id: off, enabled: false}]
layers:
  - {id: roads, serviceId: s, title: Roads}
  - {id: parcels, serviceId: s, title: parcels}
  - {id: first, serviceId: s, title: Zebra, catalog: {ordering: 1}}
  - {id: untitled, serviceId: s}
  - {id: hidden, serviceId: off}
");
        let idx = esri_indexes(&m);
        let at = |l: &str| idx.get(&("s".to_string(), l.to_string())).copied();
        assert_eq!((at("first"), at("parcels"), at("roads"), at("untitled")), (Some(0), Some(1), Some(2), Some(3)));
        assert_eq!(idx.get(&("off".to_string(), "hidden".to_string())), None);
    }
}
