//! `honua convert --to hcl`: a JSON-era repository (metadata in YAML or JSON, `datasources`, `config`)
//! rewritten as Configuration 2.0, the only format Honua reads since 2025-11-11.
//!
//! Each environment's effective configuration is mapped to Configuration 2.0 blocks (below), then what
//! every environment shares is factored into `environments/common/honua.hcl` and the rest written to
//! `environments/<env>/honua.hcl`, so `common ⊕ environment` gives back each environment exactly. The
//! conversion is then proved: the files written are loaded again as a repository, and per environment
//! the data sources and every served collection (its table, geometry, id field, data source, fields) must
//! be what the metadata described, under the renamed collection ids. Whatever Configuration 2.0 cannot
//! say is listed, never dropped silently.
//!
//! The mapping, after `HclMetadataProvider` (Honua.Server `00710654`):
//! - data source `{id, provider, connectionString}` → `data_source "id" {provider, connection}`, the
//!   provider named as Configuration 2.0 names it (`postgis` → `postgresql`);
//! - a metadata service groups layers and says which protocols serve them (`ogc.collectionsEnabled`,
//!   `wfsEnabled`, …); in Configuration 2.0 a `service` *is* a protocol (`ogc_api`, `wfs`, …) and each
//!   layer lists the protocols it is served by. So each protocol an enabled service publishes becomes a
//!   `service` block, and each layer lists its service's protocols;
//! - a layer → `layer "id"` with `title`, `description`, `data_source` (its service's), `table`,
//!   `id_field`, `display_field`, `geometry = {column, type, srid}`, `fields` and `introspect_fields =
//!   true` (Honua uses declared fields only then). Its collection `service::layer` becomes
//!   `protocol::layer` (one protocol) or `protocol::layer_protocol` (several): the renamings listed;
//! - `config` `logging.level` → `honua.log_level`, `cors` → `honua.cors`.

use std::collections::BTreeMap;

use super::hcl;
use super::node::{Loc, Map, Node, Value};
use super::source::{COMMON_ENV, ENVIRONMENTS_DIR};
use super::{ConfigFormat, ConfigRepo, EffectiveConfig, EnvName};

/// The file each environment (and `common/`) gets.
pub const FILE_NAME: &str = "honua.hcl";

/// A collection whose id changes: Configuration 2.0 names collections by protocol.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Renaming {
    pub environment: String,
    pub from: String,
    pub to: Vec<String>,
}

/// Something the metadata says that Configuration 2.0 cannot.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Unconverted {
    pub environment: String,
    /// `layer parcels`, `service cadastre`, `catalog`, `config.yaml`.
    pub owner: String,
    pub keys: Vec<String>,
    pub why: String,
}

/// A difference the proof found between an environment before and after (none is expected).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Mismatch {
    pub environment: String,
    pub what: String,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct Conversion {
    /// Repository path → file text.
    pub files: BTreeMap<String, String>,
    pub renamings: Vec<Renaming>,
    pub unconverted: Vec<Unconverted>,
    /// Per environment: data sources and collections compared.
    pub proved: Vec<(String, usize, usize)>,
    pub mismatches: Vec<Mismatch>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("environment `{0}` is already Configuration 2.0; nothing to convert")]
    AlreadyHcl(String),
    #[error("environment `{0}` cannot be read (see `honua validate`); fix it before converting, so nothing is converted from a partial file")]
    Unreadable(String),
    #[error("the repository has no environments to convert")]
    Empty,
}

/// Converts every environment of `repo`.
pub fn to_hcl(repo: &ConfigRepo) -> Result<Conversion, ConvertError> {
    let envs: Vec<EnvName> = repo.environments().cloned().collect();
    if envs.is_empty() {
        return Err(ConvertError::Empty);
    }
    let mut out = Conversion::default();
    let mut trees = Vec::new();
    let mut comments: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for env in &envs {
        if repo.format(env) == ConfigFormat::Hcl {
            return Err(ConvertError::AlreadyHcl(env.to_string()));
        }
        if repo.is_unreadable(env) {
            return Err(ConvertError::Unreadable(env.to_string()));
        }
        let effective = repo.effective(env).ok_or_else(|| ConvertError::Unreadable(env.to_string()))?;
        let mapped = map_environment(effective, &repo.sources);
        out.renamings.extend(mapped.renamings);
        out.unconverted.extend(mapped.unconverted);
        for (key, lines) in mapped.comments {
            comments.entry(key).or_insert(lines);
        }
        trees.push((env.clone(), mapped.tree));
    }
    let (common, rest) = factor(&trees);
    // A block's comment goes where the block is written first: `common/` when it is there.
    let in_common = |kind: &str, label: &str| common.get(kind).and_then(|k| k.get(label)).is_some();
    let for_common = |kind: &str, label: &str| comments.get(&(kind.to_string(), label.to_string())).cloned();
    let for_env = |kind: &str, label: &str| {
        if in_common(kind, label) {
            None
        } else {
            comments.get(&(kind.to_string(), label.to_string())).cloned()
        }
    };
    if common.as_map().is_some_and(|m| !m.is_empty()) {
        let text = header("every environment") + &hcl::render_with_comments(&common, &for_common);
        out.files.insert(format!("{ENVIRONMENTS_DIR}/{COMMON_ENV}/{FILE_NAME}"), text);
    }
    for (env, tree) in rest {
        let text = header(&format!("`{env}`, on top of environments/common/{FILE_NAME}"))
            + &hcl::render_with_comments(&tree, &for_env);
        out.files.insert(format!("{ENVIRONMENTS_DIR}/{env}/{FILE_NAME}"), text);
    }
    prove(repo, &envs, &mut out);
    Ok(out)
}

fn header(what: &str) -> String {
    format!("# Honua Configuration 2.0 for {what}.\n# Written by `honua convert --to hcl`; edit freely.\n\n")
}

/// Loads the written files as a repository and compares each environment with the metadata it came from.
fn prove(repo: &ConfigRepo, envs: &[EnvName], out: &mut Conversion) {
    let mut files = super::source::RepoFiles::default();
    for (path, text) in &out.files {
        files.files.insert(path.clone(), text.as_bytes().to_vec());
    }
    files.env_dirs = envs.iter().map(|e| e.to_string()).collect();
    let converted = ConfigRepo::from_files(files, "converted".into());
    for d in converted.diagnostics.iter().filter(|d| d.is_error()) {
        let what = format!("{}:{}:{}: {}", d.file, d.line, d.column, d.message);
        out.mismatches.push(Mismatch { environment: d.environments.join(", "), what });
    }
    for env in envs {
        let (Some(before), Some(after)) = (repo.effective(env), converted.effective(env)) else { continue };
        let renamed: BTreeMap<&str, &Vec<String>> =
            out.renamings.iter().filter(|r| r.environment == env.as_str()).map(|r| (r.from.as_str(), &r.to)).collect();
        let old = Served::of_metadata(before, &renamed);
        let new = Served::of_hcl(after);
        let mut what = Vec::new();
        compare("data source", &old.data_sources, &new.data_sources, &mut what);
        compare("collection", &old.collections, &new.collections, &mut what);
        out.proved.push((env.to_string(), new.data_sources.len(), new.collections.len()));
        out.mismatches.extend(what.into_iter().map(|what| Mismatch { environment: env.to_string(), what }));
    }
}

fn compare<T: PartialEq + std::fmt::Debug>(
    kind: &str,
    old: &BTreeMap<String, T>,
    new: &BTreeMap<String, T>,
    out: &mut Vec<String>,
) {
    for (id, a) in old {
        match new.get(id) {
            None => out.push(format!("{kind} `{id}` is missing after the conversion")),
            Some(z) if z != a => out.push(format!("{kind} `{id}` differs: {a:?} before, {z:?} after")),
            Some(_) => {}
        }
    }
    for id in new.keys().filter(|id| !old.contains_key(*id)) {
        out.push(format!("{kind} `{id}` appears only after the conversion"));
    }
}

/// What Honua serves, in terms both generations share.
#[derive(Debug, Default)]
struct Served {
    /// id → (provider, connection)
    data_sources: BTreeMap<String, (String, String)>,
    collections: BTreeMap<String, Collection>,
}

#[derive(Debug, Clone, PartialEq)]
struct Collection {
    table: Option<String>,
    geometry_column: Option<String>,
    geometry_type: Option<String>,
    srid: Option<i64>,
    id_field: Option<String>,
    data_source: Option<String>,
    /// name → (type, nullable)
    fields: BTreeMap<String, (String, bool)>,
}

impl Served {
    fn of_metadata(effective: &EffectiveConfig, renamed: &BTreeMap<&str, &Vec<String>>) -> Served {
        let m = &effective.metadata;
        let mut out = Served::default();
        for ds in seq(m, "dataSources") {
            let Some(id) = ds.get_str("id") else { continue };
            let provider = provider(ds.get_str("provider").unwrap_or_default());
            out.data_sources
                .insert(id.to_string(), (provider, ds.get_str("connectionString").unwrap_or_default().into()));
        }
        let services: BTreeMap<String, &Node> =
            seq(m, "services").iter().filter_map(|s| Some((s.get_str("id")?.to_lowercase(), *s))).collect();
        for layer in seq(m, "layers") {
            let (Some(id), Some(service)) = (layer.get_str("id"), layer.get_str("serviceId")) else { continue };
            let Some(to) = renamed.get(format!("{service}::{id}").as_str()) else { continue };
            let data_source = services.get(&service.to_lowercase()).and_then(|s| s.get_str("dataSourceId"));
            let mapped = map_layer(layer, data_source.unwrap_or_default(), &[]);
            for collection in to.iter() {
                out.collections.insert(collection.clone(), Collection::of_hcl(&mapped));
            }
        }
        out
    }

    fn of_hcl(effective: &EffectiveConfig) -> Served {
        let root = &effective.metadata;
        let mut out = Served::default();
        for (id, ds) in labeled(root, "data_source") {
            let provider = ds.get_str("provider").unwrap_or_default().to_string();
            out.data_sources.insert(id.to_string(), (provider, ds.get_str("connection").unwrap_or_default().into()));
        }
        // `layer_protocol` for a layer with several protocols: the block that built each collection.
        let built: BTreeMap<String, &Node> = labeled(root, "layer")
            .into_iter()
            .flat_map(|(label, node)| {
                hcl::layer_collections(label, node).into_iter().map(move |(s, c)| (format!("{s}::{c}"), node))
            })
            .collect();
        for served in hcl::served_collections(root) {
            if let Some(node) = built.get(&served) {
                out.collections.insert(served.clone(), Collection::of_hcl(node));
            }
        }
        out
    }
}

impl Collection {
    fn of_hcl(layer: &Node) -> Collection {
        let text = |path: &[&str]| layer.get_path(path).and_then(Node::as_str).map(str::to_string);
        let fields = layer
            .get("fields")
            .and_then(Node::as_map)
            .map(|m| {
                m.iter()
                    // The geometry column is a declared field in Configuration 2.0 only.
                    .filter(|(name, f)| {
                        f.get_str("type") != Some("geometry")
                            || layer.get_path(&["geometry", "column"]).and_then(Node::as_str) != Some(name)
                    })
                    .map(|(name, f)| {
                        let kind = f.get_str("type").unwrap_or_default().to_string();
                        (name.to_string(), (kind, f.get("nullable").and_then(Node::as_bool).unwrap_or(true)))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Collection {
            table: text(&["table"]),
            geometry_column: text(&["geometry", "column"]),
            geometry_type: text(&["geometry", "type"]),
            srid: layer.get_path(&["geometry", "srid"]).and_then(Node::as_i64),
            id_field: text(&["id_field"]),
            data_source: text(&["data_source"]).map(|r| hcl::reference_target(&r).to_string()),
            fields,
        }
    }
}

fn seq<'n>(node: &'n Node, key: &str) -> Vec<&'n Node> {
    node.get(key).and_then(Node::as_seq).map(|s| s.iter().collect()).unwrap_or_default()
}

fn labeled<'n>(root: &'n Node, kind: &str) -> Vec<(&'n str, &'n Node)> {
    root.get(kind).and_then(Node::as_map).map(|m| m.iter().collect()).unwrap_or_default()
}

/// One environment mapped to a Configuration 2.0 tree.
struct Mapped {
    tree: Node,
    renamings: Vec<Renaming>,
    unconverted: Vec<Unconverted>,
    /// `(kind, label)` → the comment lines written right above the entity in its source file.
    comments: BTreeMap<(String, String), Vec<String>>,
}

/// The comment lines directly above where `entity` starts in the file that first defines it (layering
/// keeps an entity where its base wrote it), without their `#`, preceded by where they come from; a
/// blank line ends the run.
fn comments_above(entity: &Node, sources: &super::source::SourceMap) -> Vec<String> {
    let at = entity.loc;
    if at.file.0 == u32::MAX || at.line < 2 {
        return Vec::new();
    }
    let path = sources.path(at.file);
    let mut lines = Vec::new();
    let mut line = at.line - 1;
    while line >= 1 {
        match sources.line(path, line).map(str::trim_start) {
            Some(text) if text.starts_with('#') => lines.push(text.trim_start_matches('#').trim().to_string()),
            _ => break,
        }
        line -= 1;
    }
    if lines.is_empty() {
        return lines;
    }
    lines.reverse();
    lines.insert(0, format!("(from {path})"));
    lines
}

const PROTOCOLS: [(&str, &str); 6] = [
    ("collectionsEnabled", "ogc_api"),
    ("wfsEnabled", "wfs"),
    ("wmsEnabled", "wms"),
    ("wmtsEnabled", "wmts"),
    ("cswEnabled", "csw"),
    ("wcsEnabled", "wcs"),
];

/// The protocols a metadata service publishes (its `ogc` switches; collections are on by default).
fn protocols(service: &Node) -> Vec<&'static str> {
    if service.get("enabled").and_then(Node::as_bool) == Some(false) {
        return Vec::new();
    }
    let ogc = service.get("ogc");
    PROTOCOLS
        .iter()
        .filter(|(key, _)| {
            let default = *key == "collectionsEnabled" && ogc.is_some();
            ogc.and_then(|o| o.get(key)).and_then(Node::as_bool).unwrap_or(default)
        })
        .map(|(_, protocol)| *protocol)
        .collect()
}

/// `${VAR}` placeholders written as Honua's processor reads them, `${env:VAR}`: the file stays one Honua
/// itself could load, and this crate reads them back as the same placeholders.
fn env_syntax(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        match after.find('}') {
            Some(end) if !after.starts_with("env:") && end > 0 && !after[..end].contains('{') => {
                out.push_str(&format!("${{env:{}}}", &after[..end]));
                rest = &after[end + 1..];
            }
            _ => {
                out.push_str("${");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// A provider as Configuration 2.0 names it.
fn provider(name: &str) -> String {
    match name.to_lowercase().as_str() {
        "postgis" | "postgres" | "postgresql" | "npgsql" => "postgresql".into(),
        "sqlite" | "spatialite" | "geopackage" | "gpkg" => "sqlite".into(),
        "sqlserver" | "mssql" => "sqlserver".into(),
        "mysql" | "mariadb" => "mysql".into(),
        "oracle" => "oracle".into(),
        other => other.to_string(),
    }
}

/// A field type among those `SyntaxValidator` knows.
pub fn field_type(name: &str) -> String {
    match name.to_lowercase().as_str() {
        "int" | "integer" | "int32" | "smallint" | "int16" => "int".into(),
        "long" | "bigint" | "int64" => "long".into(),
        "double" | "float64" | "number" | "decimal" | "numeric" => "double".into(),
        "float" | "float32" | "single" | "real" => "float".into(),
        "bool" | "boolean" => "boolean".into(),
        "datetime" | "timestamp" | "datetimeoffset" => "datetime".into(),
        "date" => "date".into(),
        "time" => "time".into(),
        "binary" | "blob" | "bytea" => "binary".into(),
        "geometry" => "geometry".into(),
        _ => "string".into(),
    }
}

/// A geometry type spelled as `SyntaxValidator` wants it (it compares the case).
fn geometry_type(name: &str) -> String {
    let plain = name.trim_start_matches("esriGeometry").to_lowercase();
    let plain = match plain.as_str() {
        "polyline" | "line" => "linestring".to_string(),
        "multipolyline" => "multilinestring".to_string(),
        other => other.to_string(),
    };
    hcl::GEOMETRY_TYPES.iter().find(|t| t.to_lowercase() == plain).map_or(name.to_string(), |t| t.to_string())
}

const LAYER_KEYS: [&str; 10] = [
    "id",
    "serviceId",
    "title",
    "description",
    "geometryType",
    "idField",
    "displayField",
    "geometryField",
    "storage",
    "fields",
];
/// The keys of `node` (a mapping; anything else has none) that `known` does not take, each written
/// `{prefix}{key}`: what a conversion leaves behind.
fn keys_besides(node: Option<&Node>, prefix: &str, known: impl Fn(&str) -> bool) -> Vec<String> {
    let Some(map) = node.and_then(Node::as_map) else { return Vec::new() };
    map.iter().map(|(k, _)| k).filter(|k| !known(k)).map(|k| format!("{prefix}{k}")).collect()
}

const STORAGE_KEYS: [&str; 4] = ["table", "geometryColumn", "primaryKey", "srid"];
const SERVICE_KEYS: [&str; 4] = ["id", "enabled", "dataSourceId", "ogc"];

fn s(loc: Loc, text: &str) -> Node {
    Node::str(loc, text)
}

fn put(map: &mut Map, key: &str, value: Node) {
    map.insert(key, value.loc, value);
}

/// A metadata layer as a Configuration 2.0 `layer` body.
fn map_layer(layer: &Node, data_source: &str, services: &[&str]) -> Node {
    let loc = layer.loc;
    let mut body = Map::default();
    let text = |path: &[&str]| layer.get_path(path).and_then(Node::as_str);
    if let Some(title) = text(&["title"]) {
        put(&mut body, "title", s(loc, title));
    }
    if let Some(description) = text(&["description"]) {
        put(&mut body, "description", s(loc, description));
    }
    put(&mut body, "data_source", s(loc, &format!("data_source.{data_source}")));
    if let Some(table) = text(&["storage", "table"]) {
        put(&mut body, "table", s(loc, table));
    }
    if let Some(id) = text(&["idField"]).or(text(&["storage", "primaryKey"])) {
        put(&mut body, "id_field", s(loc, id));
    }
    if let Some(display) = text(&["displayField"]) {
        put(&mut body, "display_field", s(loc, display));
    }
    put(&mut body, "introspect_fields", Node::new(loc, Value::Bool(true)));
    let mut geometry = Map::default();
    if let Some(column) = text(&["storage", "geometryColumn"]).or(text(&["geometryField"])) {
        put(&mut geometry, "column", s(loc, column));
    }
    if let Some(kind) = text(&["geometryType"]) {
        put(&mut geometry, "type", s(loc, &geometry_type(kind)));
    }
    let srid = layer.get_path(&["storage", "srid"]).and_then(Node::as_i64).or_else(|| {
        let first = layer.get("crs").and_then(Node::as_seq).and_then(|c| c.first()).and_then(Node::as_str)?;
        first.strip_prefix("EPSG:")?.parse().ok()
    });
    if let Some(srid) = srid {
        put(&mut geometry, "srid", Node::new(loc, Value::Int(srid)));
    }
    if !geometry.is_empty() {
        put(&mut body, "geometry", Node::new(loc, Value::Map(geometry)));
    }
    let mut fields = Map::default();
    for field in seq(layer, "fields") {
        let Some(name) = field.get_str("name") else { continue };
        let mut f = Map::default();
        put(&mut f, "type", s(field.loc, &field_type(field.get_str("type").unwrap_or("string"))));
        if let Some(nullable) = field.get("nullable").and_then(Node::as_bool) {
            put(&mut f, "nullable", Node::new(field.loc, Value::Bool(nullable)));
        }
        put(&mut fields, name, Node::new(field.loc, Value::Map(f)));
    }
    // Declared fields name the geometry column too (`SemanticValidator` warns otherwise, and Honua
    // serves it as `esriFieldTypeGeometry`, as Esri clients expect).
    let column = text(&["storage", "geometryColumn"]).or(text(&["geometryField"]));
    if let Some(column) = column.filter(|c| !fields.is_empty() && fields.get(c).is_none()) {
        let mut f = Map::default();
        put(&mut f, "type", s(loc, "geometry"));
        put(&mut fields, column, Node::new(loc, Value::Map(f)));
    }
    if !fields.is_empty() {
        put(&mut body, "fields", Node::new(loc, Value::Map(fields)));
    }
    let list = services.iter().map(|p| s(loc, &format!("service.{p}"))).collect();
    put(&mut body, "services", Node::new(loc, Value::Seq(list)));
    Node::new(loc, Value::Map(body))
}

fn map_environment(effective: &EffectiveConfig, sources: &super::source::SourceMap) -> Mapped {
    let env = effective.environment.to_string();
    let m = &effective.metadata;
    let loc = m.loc;
    let mut root = Map::default();
    let mut renamings = Vec::new();
    let mut unconverted = Vec::new();
    let mut comments = BTreeMap::new();
    let mut lost = |owner: String, keys: Vec<String>, why: &str| {
        if !keys.is_empty() {
            unconverted.push(Unconverted { environment: env.clone(), owner, keys, why: why.into() });
        }
    };

    let mut honua = Map::default();
    put(&mut honua, "version", s(loc, "1.0"));
    put(&mut honua, "environment", s(loc, &env));
    let config = effective.config.as_ref();
    if let Some(level) = config.and_then(|c| c.get_path(&["logging", "level"])).and_then(Node::as_str) {
        let level = match level.to_lowercase().as_str() {
            "info" => "information".to_string(),
            "warn" => "warning".to_string(),
            "fatal" => "critical".to_string(),
            other => other.to_string(),
        };
        put(&mut honua, "log_level", s(loc, &level));
    }
    let cors = config.and_then(|c| c.get("cors")).or_else(|| m.get_path(&["server", "cors"]));
    if let Some(cors) = cors.filter(|c| c.get("enabled").and_then(Node::as_bool) != Some(false)) {
        let mut c = Map::default();
        for (from, to) in [
            ("allowAnyOrigin", "allow_any_origin"),
            ("allowedOrigins", "allowed_origins"),
            ("allowCredentials", "allow_credentials"),
        ] {
            if let Some(value) = cors.get(from) {
                put(&mut c, to, value.clone());
            }
        }
        put(&mut honua, "cors", Node::new(loc, Value::Map(c)));
        let extra = keys_besides(Some(cors), "", |k| {
            matches!(k, "enabled" | "allowAnyOrigin" | "allowedOrigins" | "allowCredentials")
        });
        lost(
            "cors".into(),
            extra,
            "Configuration 2.0's `cors` has allow_any_origin, allowed_origins and allow_credentials only",
        );
    }
    if let Some(config) = config.and_then(Node::as_map) {
        let extra: Vec<String> = config
            .iter()
            .filter(|(k, v)| match *k {
                "cors" => false,
                "logging" => v.as_map().is_some_and(|l| l.iter().any(|(k, _)| k != "level")),
                _ => true,
            })
            .map(|(k, _)| k.to_string())
            .collect();
        lost(
            "config.yaml".into(),
            extra,
            "the server configuration has no Configuration 2.0 block (keep it in appsettings)",
        );
    }
    put(&mut root, "honua", Node::new(loc, Value::Map(honua)));

    let mut data_sources = Map::default();
    for ds in seq(m, "dataSources") {
        let Some(id) = ds.get_str("id") else { continue };
        comments.insert(("data_source".to_string(), id.to_string()), comments_above(ds, sources));
        let mut body = Map::default();
        put(&mut body, "provider", s(ds.loc, &provider(ds.get_str("provider").unwrap_or_default())));
        put(&mut body, "connection", s(ds.loc, &env_syntax(ds.get_str("connectionString").unwrap_or_default())));
        put(&mut data_sources, id, Node::new(ds.loc, Value::Map(body)));
        let extra = keys_besides(Some(ds), "", |k| matches!(k, "id" | "provider" | "connectionString"));
        lost(
            format!("data source {id}"),
            extra,
            "a Configuration 2.0 data source has provider, connection, pool and health_check",
        );
    }
    put(&mut root, "data_source", Node::new(loc, Value::Map(data_sources)));

    let services: Vec<&Node> = seq(m, "services");
    let mut used: Vec<&'static str> = Vec::new();
    let mut item_limits: Vec<i64> = Vec::new();
    for service in &services {
        for p in protocols(service) {
            if !used.contains(&p) {
                used.push(p);
            }
        }
        if let Some(limit) = service.get_path(&["ogc", "itemLimit"]).and_then(Node::as_i64) {
            item_limits.push(limit);
        }
        let id = service.get_str("id").unwrap_or_default();
        let mut extra = keys_besides(Some(service), "", |k| SERVICE_KEYS.contains(&k));
        extra.extend(keys_besides(service.get("ogc"), "ogc.", |k| {
            k == "itemLimit" || PROTOCOLS.iter().any(|(p, _)| *p == k)
        }));
        lost(
            format!("service {id}"),
            extra,
            "Configuration 2.0 services are protocols (ogc_api, wfs, …), not groups of layers",
        );
        if service.get("enabled").and_then(Node::as_bool) == Some(false) {
            lost(
                format!("service {id}"),
                vec!["enabled: false".into()],
                "its layers are written with no protocol, so nothing serves them, as before",
            );
        }
    }
    let mut service_blocks = Map::default();
    for p in &used {
        let mut body = Map::default();
        put(&mut body, "enabled", Node::new(loc, Value::Bool(true)));
        if *p == "ogc_api" && !item_limits.is_empty() {
            let agree = item_limits.iter().all(|l| *l == item_limits[0]);
            let limit = if agree { item_limits[0] } else { *item_limits.iter().min().expect("not empty") };
            put(&mut body, "item_limit", Node::new(loc, Value::Int(limit)));
            if !agree {
                lost(
                    "services".into(),
                    vec![format!("ogc.itemLimit {item_limits:?}")],
                    "Configuration 2.0 has one item_limit for all of OGC API; the smallest is kept",
                );
            }
        }
        put(&mut service_blocks, p, Node::new(loc, Value::Map(body)));
    }
    put(&mut root, "service", Node::new(loc, Value::Map(service_blocks)));

    let by_id: BTreeMap<String, &Node> =
        services.iter().filter_map(|s| Some((s.get_str("id")?.to_lowercase(), *s))).collect();
    let mut layers = Map::default();
    let all_layers = seq(m, "layers");
    let served: std::collections::HashSet<String> =
        super::served::collections(m).into_iter().map(|c| c.to_lowercase()).collect();
    let mut uses: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for id in all_layers.iter().filter_map(|l| l.get_str("id")) {
        *uses.entry(id.to_lowercase()).or_default() += 1;
    }
    for layer in &all_layers {
        let (Some(id), Some(service_id)) = (layer.get_str("id"), layer.get_str("serviceId")) else { continue };
        let service = by_id.get(&service_id.to_lowercase());
        let data_source = service.and_then(|s| s.get_str("dataSourceId")).unwrap_or_default();
        let protocols = service.map(|s| protocols(s)).unwrap_or_default();
        // Labels are unique across a Configuration 2.0 file; metadata ids only within a service.
        let clash = uses.get(&id.to_lowercase()).is_some_and(|n| *n > 1);
        let label = if clash { format!("{service_id}_{id}") } else { id.to_string() };
        comments.insert(("layer".to_string(), label.clone()), comments_above(layer, sources));
        put(&mut layers, &label, map_layer(layer, data_source, &protocols));
        let old = format!("{service_id}::{id}");
        if served.contains(&old.to_lowercase()) {
            let body = layers.get(&label).expect("just put");
            let to = hcl::layer_collections(&label, body).into_iter().map(|(p, c)| format!("{p}::{c}")).collect();
            renamings.push(Renaming { environment: env.clone(), from: old, to });
        }
        let mut extra = keys_besides(Some(layer), "", |k| LAYER_KEYS.contains(&k));
        extra.extend(keys_besides(layer.get("storage"), "storage.", |k| STORAGE_KEYS.contains(&k)));
        lost(format!("layer {service_id}::{id}"), extra, "Configuration 2.0 layers have no such setting");
    }
    put(&mut root, "layer", Node::new(loc, Value::Map(layers)));
    for (key, _) in m.as_map().map(|m| m.iter().collect::<Vec<_>>()).unwrap_or_default() {
        if !matches!(key, "dataSources" | "services" | "layers") {
            lost(key.to_string(), vec![key.to_string()], "Configuration 2.0 has no such block");
        }
    }
    comments.retain(|_, lines: &mut Vec<String>| !lines.is_empty());
    Mapped { tree: Node::new(loc, Value::Map(root)), renamings, unconverted, comments }
}

/// Splits environment trees into what all share (for `common/`) and what each adds or overrides, such
/// that layering them back (`layering::deep_merge`) gives each tree: a value goes to `common` when every
/// environment has it equal; objects are split key by key; lists and scalars move whole.
fn factor(trees: &[(EnvName, Node)]) -> (Node, Vec<(EnvName, Node)>) {
    let loc = trees.first().map_or(Loc::default(), |(_, t)| t.loc);
    if trees.len() < 2 {
        return (Node::map(loc), trees.to_vec());
    }
    let nodes: Vec<&Node> = trees.iter().map(|(_, t)| t).collect();
    let common = intersect(&nodes).unwrap_or_else(|| Node::map(loc));
    let rest = trees
        .iter()
        .map(|(env, tree)| (env.clone(), subtract(tree, &common).unwrap_or_else(|| Node::map(loc))))
        .collect();
    (common, rest)
}

/// What every node shares: equal values whole; maps key by key (only keys present in all).
fn intersect(nodes: &[&Node]) -> Option<Node> {
    let first = nodes[0];
    match &first.value {
        Value::Map(m) => {
            let mut out = Map::default();
            for entry in &m.entries {
                let values: Option<Vec<&Node>> = nodes.iter().map(|n| n.get(&entry.key)).collect();
                if let Some(shared) = values.and_then(|v| intersect(&v)) {
                    out.entries.push(super::node::Entry {
                        key: entry.key.clone(),
                        key_loc: entry.key_loc,
                        value: shared,
                    });
                }
            }
            (!out.is_empty()).then(|| Node::new(first.loc, Value::Map(out)))
        }
        _ => nodes.iter().all(|n| same(n, first)).then(|| first.clone()),
    }
}

/// `node` without what `common` already gives it.
fn subtract(node: &Node, common: &Node) -> Option<Node> {
    match (&node.value, &common.value) {
        (Value::Map(m), Value::Map(c)) => {
            let mut out = Map::default();
            for entry in &m.entries {
                let rest = match c.get(&entry.key) {
                    Some(shared) => subtract(&entry.value, shared),
                    None => Some(entry.value.clone()),
                };
                if let Some(value) = rest {
                    out.entries.push(super::node::Entry { key: entry.key.clone(), key_loc: entry.key_loc, value });
                }
            }
            (!out.is_empty()).then(|| Node::new(node.loc, Value::Map(out)))
        }
        _ if same(node, common) => None,
        _ => Some(node.clone()),
    }
}

/// Equal values, wherever they were written.
fn same(a: &Node, b: &Node) -> bool {
    a.to_json() == b.to_json()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keys_a_conversion_leaves_behind_are_named_with_their_prefix() {
        let node = crate::config::yaml::parse(
            "table: a\nsrid: 4326\nschema: gis\nindex: true\n",
            super::super::node::FileId(0),
        )
        .unwrap();
        assert_eq!(
            keys_besides(Some(&node), "storage.", |k| STORAGE_KEYS.contains(&k)),
            ["storage.schema", "storage.index"]
        );
        assert!(keys_besides(None, "ogc.", |_| false).is_empty(), "no mapping, no keys");
        let scalar = crate::config::yaml::parse("7\n", super::super::node::FileId(0)).unwrap();
        assert!(keys_besides(Some(&scalar), "", |_| false).is_empty());
    }
}
