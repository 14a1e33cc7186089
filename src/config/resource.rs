//! Resources: the addressable entities of an effective configuration, as diff and policy see them.

use super::node::Node;
use super::{ConfigFormat, EffectiveConfig};

named! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, utoipa::ToSchema)]
    pub enum ResourceKind {
        Catalog,
        Folder,
        Datasource,
        Service,
        Layer,
        Style,
        Raster,
        Config,
        Policy,
        /// Configuration 2.0 blocks: `data_source`, `cache`, the `honua` block (settings), `rate_limit`,
        /// `variable`. (Services and layers share the JSON era's kinds.)
        DataSource,
        Cache,
        Settings,
        RateLimit,
        Variable,
    }
}

impl ResourceKind {
    /// The kind of the entities held under a top-level metadata list.
    pub fn of_list(key: &str) -> Option<ResourceKind> {
        Some(match key {
            "folders" => ResourceKind::Folder,
            "dataSources" => ResourceKind::Datasource,
            "services" => ResourceKind::Service,
            "layers" => ResourceKind::Layer,
            "styles" => ResourceKind::Style,
            "rasterDatasets" => ResourceKind::Raster,
            _ => return None,
        })
    }
}

/// One entity of an effective config.
#[derive(Debug, Clone)]
pub struct Resource<'a> {
    pub kind: ResourceKind,
    /// The id as written (matching is case-insensitive, see [`Resource::key`]).
    pub id: String,
    pub node: &'a Node,
    /// For a layer of an enabled service: its Esri FeatureServer index, as Honua computes it (see
    /// [`super::served::esri_indexes`]).
    pub index: Option<usize>,
    pub format: ConfigFormat,
}

impl Resource<'_> {
    /// The key resources are matched by across revisions.
    pub fn key(&self) -> (ResourceKind, String) {
        (self.kind, self.id.to_lowercase())
    }

    /// A layer's service id, when it is a layer.
    pub fn service_id(&self) -> Option<&str> {
        (self.kind == ResourceKind::Layer).then(|| self.node.get_str("serviceId")).flatten()
    }

    /// The name people know a resource by: layers as `service::layer`, the OGC collection id.
    pub fn display_id(&self) -> String {
        match self.service_id() {
            Some(service) => format!("{service}::{}", self.id),
            None => self.id.clone(),
        }
    }
}

/// Every resource of an effective config: catalog, entities of each list, the metadata `server` block
/// and any other top-level key (unknown keys are preserved and must show up in diffs), and `config.yaml`.
pub fn resources(cfg: &EffectiveConfig) -> Vec<Resource<'_>> {
    let mut out = Vec::new();
    let Some(map) = cfg.metadata.as_map() else {
        return out;
    };
    if cfg.format == ConfigFormat::Hcl {
        return hcl_resources(map);
    }
    let esri = super::served::esri_indexes(&cfg.metadata);
    for (key, value) in map.iter() {
        if key == "catalog" {
            out.push(Resource {
                kind: ResourceKind::Catalog,
                id: "catalog".into(),
                node: value,
                index: None,
                format: ConfigFormat::Metadata,
            });
        } else if let Some(kind) = ResourceKind::of_list(key) {
            for item in value.as_seq().unwrap_or_default() {
                let Some(id) = item.get_str("id") else {
                    continue;
                };
                let index = (kind == ResourceKind::Layer)
                    .then(|| {
                        let service = item.get_str("serviceId").unwrap_or_default().to_lowercase();
                        esri.get(&(service, id.to_lowercase())).copied()
                    })
                    .flatten();
                out.push(Resource { kind, id: id.to_string(), node: item, index, format: ConfigFormat::Metadata });
            }
        } else {
            out.push(Resource {
                kind: ResourceKind::Config,
                id: format!("metadata.{key}"),
                node: value,
                index: None,
                format: ConfigFormat::Metadata,
            });
        }
    }
    if let Some(config) = &cfg.config {
        out.push(Resource {
            kind: ResourceKind::Config,
            id: "config.yaml".into(),
            node: config,
            index: None,
            format: ConfigFormat::Metadata,
        });
    }
    out
}

/// The blocks of a Configuration 2.0 tree: one resource per labeled block (`layer "parcels"` is layer
/// `parcels`), the `honua` block as `settings`, and `rate_limit`.
fn hcl_resources(map: &super::node::Map) -> Vec<Resource<'_>> {
    let mut out = Vec::new();
    let one =
        |kind, id: &str, node| Resource { kind, id: id.to_string(), node, index: None, format: ConfigFormat::Hcl };
    for (key, value) in map.iter() {
        let kind = match key {
            "honua" => {
                out.push(one(ResourceKind::Settings, "honua", value));
                continue;
            }
            "rate_limit" => {
                out.push(one(ResourceKind::RateLimit, "rate_limit", value));
                continue;
            }
            "data_source" => ResourceKind::DataSource,
            "service" => ResourceKind::Service,
            "layer" => ResourceKind::Layer,
            "cache" => ResourceKind::Cache,
            "variable" => ResourceKind::Variable,
            other => {
                out.push(one(ResourceKind::Config, other, value));
                continue;
            }
        };
        for (label, block) in value.as_map().map(|m| m.iter().collect::<Vec<_>>()).unwrap_or_default() {
            out.push(one(kind, label, block));
        }
    }
    out
}
