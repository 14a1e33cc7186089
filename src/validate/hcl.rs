//! Validation of a Configuration 2.0 environment, as `honua config validate` judges it: every rule of
//! Honua's `SyntaxValidator` and `SemanticValidator` (honua-io/Honua.Server `00710654`,
//! `src/Honua.Server.Core/Configuration/V2/Validation/`), each with its own code, Honua's wording and the
//! line:column of the value (or of the block that lacks it). Errors are what Honua's validator calls
//! errors, warnings what it calls warnings. Defaults are Honua's (`HonuaConfig.cs`): a `service`'s type is
//! its name, a layer introspects its fields, a geometry's SRID is 4326, a cache is `memory`, and so on.
//!
//! Ours on top: a `var.name` no variable defines (Honua's processor stops the load on it).

use crate::config::hcl::{reference_target, variable_references, GEOMETRY_TYPES};
use crate::config::node::{Loc, Node};
use crate::config::source::SourceMap;
use crate::diagnostic::{Diagnostic, Place, Severity};

const PROVIDERS: [&str; 5] = ["sqlite", "postgresql", "sqlserver", "mysql", "oracle"];
const FIELD_TYPES: [&str; 12] =
    ["int", "long", "string", "double", "float", "datetime", "date", "time", "bool", "boolean", "geometry", "binary"];
const LOG_LEVELS: [&str; 6] = ["trace", "debug", "information", "warning", "error", "critical"];
const CACHE_TYPES: [&str; 2] = ["redis", "memory"];

struct Check<'a> {
    sources: &'a SourceMap,
    out: &'a mut Vec<Diagnostic>,
}

impl Check<'_> {
    fn push(&mut self, severity: Severity, code: &str, loc: Loc, message: String) {
        let at = Place { file: self.sources.path(loc.file), line: loc.line, column: loc.column };
        self.out.push(Diagnostic::new(severity, code, at, message));
    }

    fn error(&mut self, code: &str, loc: Loc, message: impl Into<String>) {
        self.push(Severity::Error, code, loc, message.into());
    }

    fn warning(&mut self, code: &str, loc: Loc, message: impl Into<String>) {
        self.push(Severity::Warning, code, loc, message.into());
    }
}

/// The labeled blocks of one kind, in file order: `(label, label's place, body)`.
fn blocks<'n>(root: &'n Node, kind: &str) -> Vec<(&'n str, &'n Node)> {
    root.get(kind).and_then(Node::as_map).map(|m| m.iter().collect()).unwrap_or_default()
}

fn blank(value: Option<&str>) -> bool {
    value.is_none_or(|v| v.trim().is_empty())
}

/// Where a finding about `key` of `node` points: the value when written, else the block.
fn at(node: &Node, key: &str) -> Loc {
    node.get(key).map_or(node.loc, |n| n.loc)
}

fn enabled(node: &Node) -> bool {
    node.get("enabled").and_then(Node::as_bool).unwrap_or(true)
}

fn int(node: &Node, key: &str, default: i64) -> i64 {
    node.get(key).and_then(Node::as_i64).unwrap_or(default)
}

fn strings(node: &Node, key: &str) -> Vec<String> {
    node.get(key)
        .and_then(Node::as_seq)
        .unwrap_or_default()
        .iter()
        .filter_map(Node::as_str)
        .map(str::to_string)
        .collect()
}

/// Every finding of `honua config validate` on one effective Configuration 2.0 tree.
pub fn check(root: &Node, sources: &SourceMap, out: &mut Vec<Diagnostic>) {
    let mut c = Check { sources, out };
    syntax(root, &mut c);
    semantic(root, &mut c);
    variables(root, &mut c);
}

fn syntax(root: &Node, c: &mut Check) {
    let empty = Node::map(root.loc);
    let honua = root.get("honua").unwrap_or(&empty);
    let version = honua.get_str("version").unwrap_or("1.0");
    if version.trim().is_empty() {
        c.error(
            "hcl.version_required",
            at(honua, "version"),
            "Honua version is required: write `version = \"1.0\"` in the `honua` block",
        );
    } else if !version.starts_with("1.") {
        c.warning(
            "hcl.version_unknown",
            at(honua, "version"),
            format!("Unknown version '{version}'. Expected version starting with '1.'"),
        );
    }
    if honua.get_str("environment").is_some_and(|e| e.trim().is_empty()) {
        c.error(
            "hcl.environment_required",
            at(honua, "environment"),
            "Environment is required: name it in the `honua` block (`environment = \"production\"`)",
        );
    }
    if let Some(level) = honua.get_str("log_level").filter(|l| !l.trim().is_empty()) {
        if !LOG_LEVELS.contains(&level.to_lowercase().as_str()) {
            let near = crate::config::nearest(level, &LOG_LEVELS)
                .map(|n| format!(" (did you mean `{n}`?)"))
                .unwrap_or_default();
            c.error(
                "hcl.log_level",
                at(honua, "log_level"),
                format!("Invalid log level '{level}'{near}. Valid values: {}", LOG_LEVELS.join(", ")),
            );
        }
    }
    if let Some(cors) = honua.get("cors") {
        let any = cors.get("allow_any_origin").and_then(Node::as_bool).unwrap_or(false);
        let credentials = cors.get("allow_credentials").and_then(Node::as_bool).unwrap_or(false);
        if any && credentials {
            c.error("hcl.cors_credentials", cors.loc, "CORS cannot allow credentials when allow_any_origin is true. Set allow_any_origin to false and specify explicit allowed_origins");
        }
        if !any && strings(cors, "allowed_origins").is_empty() {
            c.warning("hcl.cors_no_origins", at(cors, "allowed_origins"), "No CORS origins configured. API will reject browser requests. Add allowed origins or set allow_any_origin to true (not recommended for production)");
        }
    }

    let data_sources = blocks(root, "data_source");
    if data_sources.is_empty() {
        c.warning("hcl.no_data_sources", root.loc, "No data sources defined. Add at least one data source");
    }
    for (id, ds) in &data_sources {
        match ds.get_str("provider") {
            p if blank(p) => c.error(
                "hcl.provider_required",
                at(ds, "provider"),
                format!("Data source provider is required (data_source.{id}): one of {}", PROVIDERS.join(", ")),
            ),
            Some(p) if !PROVIDERS.contains(&p.to_lowercase().as_str()) => c.warning(
                "hcl.provider_unknown",
                at(ds, "provider"),
                format!("Unknown provider '{p}' (data_source.{id}). Expected one of: {}", PROVIDERS.join(", ")),
            ),
            _ => {}
        }
        if blank(ds.get_str("connection")) {
            c.error("hcl.connection_required", at(ds, "connection"), format!("Connection string is required (data_source.{id}); write `connection = \"${{env:DATABASE_URL}}\"` and give the agent that variable"));
        }
        if let Some(pool) = ds.get("pool") {
            let (min, max, timeout) = (int(pool, "min_size", 1), int(pool, "max_size", 10), int(pool, "timeout", 30));
            if min < 0 {
                c.error(
                    "hcl.pool",
                    at(pool, "min_size"),
                    format!("Pool min_size must be >= 0 (data_source.{id}.pool.min_size)"),
                );
            }
            if max < 1 {
                c.error(
                    "hcl.pool",
                    at(pool, "max_size"),
                    format!("Pool max_size must be >= 1 (data_source.{id}.pool.max_size)"),
                );
            }
            if min > max {
                c.error(
                    "hcl.pool",
                    pool.loc,
                    format!("Pool min_size ({min}) cannot be greater than max_size ({max}) (data_source.{id}.pool)"),
                );
            }
            if timeout < 0 {
                c.error(
                    "hcl.pool",
                    at(pool, "timeout"),
                    format!("Pool timeout must be >= 0 (data_source.{id}.pool.timeout)"),
                );
            }
        }
    }

    let services = blocks(root, "service");
    if services.is_empty() {
        c.warning(
            "hcl.no_services",
            root.loc,
            "No services defined. Add at least one service (odata, ogc_api, wfs, etc.)",
        );
    }
    for (id, service) in &services {
        let kind = service.get_str("type").unwrap_or(id);
        if kind.trim().is_empty() {
            c.error(
                "hcl.service_type_required",
                at(service, "type"),
                format!("Service type is required (service.{id})"),
            );
        }
        let limits: &[&str] = match kind.to_lowercase().as_str() {
            "odata" => &["max_page_size", "default_page_size"],
            "ogc_api" => &["item_limit"],
            _ => &[],
        };
        for key in limits {
            if service.get(key).and_then(Node::as_i64).is_some_and(|n| n < 1) {
                c.error("hcl.service_setting", at(service, key), format!("{key} must be >= 1 (service.{id}.{key})"));
            }
        }
    }

    let layers = blocks(root, "layer");
    if layers.is_empty() {
        c.warning("hcl.no_layers", root.loc, "No layers defined. Add at least one layer");
    }
    for (id, layer) in &layers {
        for (key, what) in
            [("title", "title"), ("data_source", "data source"), ("table", "table"), ("id_field", "id_field")]
        {
            if blank(layer.get_str(key)) {
                c.error("hcl.layer_required", at(layer, key), format!("Layer {what} is required (layer.{id}.{key})"));
            }
        }
        if let Some(geometry) = layer.get("geometry") {
            if blank(geometry.get_str("column")) {
                c.error(
                    "hcl.geometry_required",
                    at(geometry, "column"),
                    format!("Geometry column is required (layer.{id}.geometry.column)"),
                );
            }
            match geometry.get_str("type") {
                t if blank(t) => c.error(
                    "hcl.geometry_required",
                    at(geometry, "type"),
                    format!(
                        "Geometry type is required (layer.{id}.geometry.type): one of {}",
                        GEOMETRY_TYPES.join(", ")
                    ),
                ),
                Some(t) if !GEOMETRY_TYPES.contains(&t) => {
                    let near = crate::config::nearest(t, &GEOMETRY_TYPES)
                        .map(|n| format!(" (did you mean `{n}`? Honua compares the case too)"))
                        .unwrap_or_default();
                    c.error(
                        "hcl.geometry_type",
                        at(geometry, "type"),
                        format!(
                            "Invalid geometry type '{t}'{near} (layer.{id}.geometry.type). Valid types: {}",
                            GEOMETRY_TYPES.join(", ")
                        ),
                    )
                }
                _ => {}
            }
            let srid = int(geometry, "srid", 4326);
            if srid < 0 {
                c.error("hcl.srid", at(geometry, "srid"), format!("SRID must be >= 0 (layer.{id}.geometry.srid)"));
            } else if srid == 0 {
                c.warning("hcl.srid_undefined", at(geometry, "srid"), format!("SRID is 0 (undefined) (layer.{id}.geometry.srid). Consider setting to 4326 (WGS84) or appropriate SRID"));
            }
        }
        let fields = layer.get("fields").and_then(Node::as_map);
        let introspect = layer.get("introspect_fields").and_then(Node::as_bool).unwrap_or(true);
        if !introspect && fields.is_none_or(|f| f.is_empty()) {
            c.error("hcl.fields_required", at(layer, "fields"), format!("When introspect_fields is false, explicit fields must be defined (layer.{id}). Either set introspect_fields to true or define fields explicitly"));
        }
        for (name, field) in fields.map(|f| f.iter().collect::<Vec<_>>()).unwrap_or_default() {
            match field.get_str("type") {
                t if blank(t) => c.error(
                    "hcl.field_type_required",
                    at(field, "type"),
                    format!("Field type is required (layer.{id}.fields.{name}.type)"),
                ),
                Some(t) if !FIELD_TYPES.contains(&t.to_lowercase().as_str()) => c.warning(
                    "hcl.field_type_unknown",
                    at(field, "type"),
                    format!(
                        "Unknown field type '{t}' (layer.{id}.fields.{name}.type). Expected one of: {}",
                        FIELD_TYPES.join(", ")
                    ),
                ),
                _ => {}
            }
        }
        if strings(layer, "services").is_empty() {
            c.warning(
                "hcl.layer_unexposed",
                at(layer, "services"),
                format!("Layer is not exposed through any services (layer.{id}.services)"),
            );
        }
    }

    for (id, cache) in blocks(root, "cache") {
        let kind = cache.get_str("type").unwrap_or("memory");
        if kind.trim().is_empty() {
            c.error("hcl.cache_type_required", at(cache, "type"), format!("Cache type is required (cache.{id}.type)"));
        } else if !CACHE_TYPES.contains(&kind.to_lowercase().as_str()) {
            c.warning(
                "hcl.cache_type_unknown",
                at(cache, "type"),
                format!("Unknown cache type '{kind}' (cache.{id}.type). Expected one of: {}", CACHE_TYPES.join(", ")),
            );
        }
        if kind.eq_ignore_ascii_case("redis") && blank(cache.get_str("connection")) {
            c.error(
                "hcl.cache_connection_required",
                at(cache, "connection"),
                format!("Redis cache requires a connection string (cache.{id}.connection)"),
            );
        }
    }

    if let Some(limit) = root.get("rate_limit") {
        if limit.get_str("store").is_some_and(|s| s.trim().is_empty()) {
            c.error(
                "hcl.rate_limit_store",
                at(limit, "store"),
                "Rate limit store is required (rate_limit.store): `memory` or `redis`",
            );
        }
        let rules = limit.get("rules").and_then(Node::as_map);
        if rules.is_none_or(|r| r.is_empty()) {
            c.warning("hcl.rate_limit_no_rules", at(limit, "rules"), "No rate limit rules defined (rate_limit.rules)");
        }
        for (name, rule) in rules.map(|r| r.iter().collect::<Vec<_>>()).unwrap_or_default() {
            if int(rule, "requests", 1000) < 1 {
                c.error(
                    "hcl.rate_limit_rule",
                    at(rule, "requests"),
                    format!("Rate limit requests must be >= 1 (rate_limit.rules.{name}.requests)"),
                );
            }
            match rule.get_str("window") {
                w if w.is_some() && blank(w) => c.error("hcl.rate_limit_rule", at(rule, "window"), format!("Rate limit window is required (rate_limit.rules.{name}.window)")),
                Some(w) if !valid_window(w) => c.warning("hcl.rate_limit_window", at(rule, "window"), format!("Invalid time window format '{w}' (rate_limit.rules.{name}.window). Expected format: <number><unit>, e.g., '1m', '1h', '1d'")),
                _ => {}
            }
        }
    }
}

/// `IsValidTimeWindow`: a positive whole number and one of `s`, `m`, `h`, `d`.
fn valid_window(window: &str) -> bool {
    let Some(unit) = window.chars().last() else { return false };
    let number = &window[..window.len() - unit.len_utf8()];
    matches!(unit, 's' | 'm' | 'h' | 'd') && number.parse::<i32>().is_ok_and(|n| n > 0)
}

fn semantic(root: &Node, c: &mut Check) {
    let data_sources = blocks(root, "data_source");
    let services = blocks(root, "service");
    let layers = blocks(root, "layer");
    let caches = blocks(root, "cache");
    let ds_ids: Vec<&str> = data_sources.iter().map(|(id, _)| *id).collect();
    let service_ids: Vec<&str> = services.iter().map(|(id, _)| *id).collect();
    let list = |ids: &[&str]| if ids.is_empty() { "none".to_string() } else { ids.join(", ") };

    for (id, layer) in &layers {
        if let Some(reference) = layer.get_str("data_source").filter(|r| !r.trim().is_empty()) {
            let target = reference_target(reference);
            if !ds_ids.contains(&target) {
                c.error("hcl.reference_undefined", at(layer, "data_source"), format!("Layer references undefined data source '{target}' (layer.{id}.data_source). Available data sources: {}", list(&ds_ids)));
            }
        }
        for item in layer.get("services").and_then(Node::as_seq).unwrap_or_default() {
            let Some(reference) = item.as_str() else { continue };
            let target = reference_target(reference);
            if !service_ids.contains(&target) {
                let near = crate::config::nearest(target, &service_ids)
                    .map(|n| format!(" (did you mean `{n}`?)"))
                    .unwrap_or_default();
                c.error("hcl.reference_undefined", item.loc, format!("Layer references undefined service '{target}'{near} (layer.{id}.services). Available services: {}", list(&service_ids)));
            }
        }
        if let (Some(geometry), Some(fields)) = (layer.get("geometry"), layer.get("fields").and_then(Node::as_map)) {
            if !fields.is_empty() {
                let at_fields = at(layer, "fields");
                let column = geometry.get_str("column").unwrap_or("");
                if fields.get(column).is_none() {
                    c.warning("hcl.field_missing", at_fields, format!("Geometry column '{column}' is not defined in fields (layer.{id}.fields). Add geometry field or ensure introspect_fields is true"));
                }
                let id_field = layer.get_str("id_field").unwrap_or("");
                if fields.get(id_field).is_none() {
                    c.warning("hcl.field_missing", at_fields, format!("ID field '{id_field}' is not defined in fields (layer.{id}.fields). Add id field or ensure introspect_fields is true"));
                }
                if let Some(display) = layer.get_str("display_field").filter(|d| !d.trim().is_empty()) {
                    if fields.get(display).is_none() {
                        c.warning(
                            "hcl.field_missing",
                            at_fields,
                            format!("Display field '{display}' is not defined in fields (layer.{id}.fields)"),
                        );
                    }
                }
            }
        }
    }

    let used: Vec<&str> = layers
        .iter()
        .flat_map(|(_, l)| l.get("services").and_then(Node::as_seq).unwrap_or_default())
        .filter_map(|n| n.as_str().map(reference_target))
        .collect();
    for (id, service) in &services {
        if enabled(service) && !used.contains(id) {
            c.warning("hcl.service_unused", service.loc, format!("Service '{id}' is enabled but not used by any layers. Add layers that expose this service or disable it"));
        }
    }

    let environment =
        root.get_path(&["honua", "environment"]).and_then(Node::as_str).unwrap_or("development").to_lowercase();
    let rate_limit = root.get("rate_limit");
    if let Some(limit) = rate_limit {
        let store = limit.get_str("store").unwrap_or("memory");
        let redis_cache = caches
            .iter()
            .any(|(_, c)| c.get_str("type").unwrap_or("memory").eq_ignore_ascii_case("redis") && enabled(c));
        if store.eq_ignore_ascii_case("redis") && !redis_cache {
            c.warning("hcl.rate_limit_redis", at(limit, "store"), "Rate limiting uses Redis but no Redis cache is defined or enabled. Define a Redis cache or use 'memory' store");
        }
    }
    for (id, cache) in &caches {
        let required = strings(cache, "required_in").iter().any(|e| e.to_lowercase() == environment);
        if required && !enabled(cache) {
            c.error("hcl.cache_required", at(cache, "enabled"), format!("Cache '{id}' is required in '{environment}' environment but is disabled. Enable the cache or remove the environment from required_in"));
        }
    }

    // Ids are unique across block kinds, checked in Honua's order.
    let mut seen: std::collections::HashMap<&str, &str> = ds_ids.iter().map(|id| (*id, "data_source")).collect();
    for (kind, list) in [("service", &services), ("layer", &layers), ("cache", &caches)] {
        for (id, node) in list.iter() {
            match seen.get(id) {
                Some(first) => c.error("hcl.duplicate_id", node.loc, format!("Duplicate ID '{id}' found in {kind} (already used in {first}). Use unique IDs across all configuration blocks")),
                None => {
                    seen.insert(id, kind);
                }
            }
        }
    }

    for (id, layer) in &layers {
        let reachable = strings(layer, "services")
            .iter()
            .any(|s| services.iter().any(|(sid, service)| *sid == reference_target(s) && enabled(service)));
        if !reachable {
            c.warning("hcl.layer_unreachable", at(layer, "services"), format!("Layer '{id}' has no enabled services and will not be accessible. Enable at least one service or add more service references"));
        }
    }
    if environment == "production" {
        let honua = root.get("honua");
        if let Some(any) =
            honua.and_then(|h| h.get_path(&["cors", "allow_any_origin"])).filter(|n| n.as_bool() == Some(true))
        {
            c.warning("hcl.production_cors", any.loc, "CORS allow_any_origin is enabled in production environment. Set to false and specify explicit allowed_origins for better security");
        }
        if !caches.is_empty()
            && caches.iter().all(|(_, c)| c.get_str("type").unwrap_or("memory").eq_ignore_ascii_case("memory"))
        {
            c.warning("hcl.production_memory_cache", caches[0].1.loc, "Only in-memory caching is configured in production environment. Consider using Redis for distributed caching in production");
        }
        if rate_limit.is_none_or(|l| !enabled(l)) {
            let loc = rate_limit.map_or(honua.map_or(root.loc, |h| h.loc), |l| at(l, "enabled"));
            c.warning(
                "hcl.production_rate_limit",
                loc,
                "Rate limiting is not enabled in production environment. Enable rate limiting to protect against abuse",
            );
        }
    }
    if data_sources.len() > 1 {
        for (id, ds) in &data_sources {
            let used = layers.iter().any(|(_, l)| l.get_str("data_source").map(reference_target) == Some(id));
            if !used {
                c.warning("hcl.data_source_unused", ds.loc, format!("Data source '{id}' is defined but not used by any layers. Remove unused data source or add layers that use it"));
            }
        }
    }
}

/// A `var.name` left after interpolation names no variable: Honua's processor stops the load.
fn variables(root: &Node, c: &mut Check) {
    for (place, node) in crate::config::hcl::interpolated_strings(root) {
        for name in variable_references(node.as_str().unwrap_or_default()) {
            let loc = node.loc;
            c.error("hcl.variable_undefined", loc, format!("`var.{name}` in {place} names no variable: Honua stops loading (\"Variable '{name}' not found in configuration\"). Add `variable \"{name}\" = \"…\"` or fix the name"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::hcl;

    fn findings(text: &str) -> Vec<(String, Severity, u32)> {
        let mut sources = SourceMap::default();
        let file = sources.add("t.hcl", text);
        let mut root = hcl::parse(text, file, "t.hcl").unwrap().root;
        hcl::interpolate(&mut root);
        let mut out = Vec::new();
        check(&root, &sources, &mut out);
        out.into_iter().map(|d| (d.code, d.severity, d.line)).collect()
    }

    const VALID: &str = r#"honua {
  version     = "1.0"
  environment = "development"
}
data_source "db" {
  provider   = "postgresql"
  connection = "${env:DATABASE_URL}"
}
service "ogc_api" {
  enabled = true
}
layer "roads" {
  title       = "Roads"
  data_source = data_source.db
  table       = "public.roads"
  id_field    = "id"
  geometry    = {
    column = "geom"
    type   = "LineString"
  }
  services = [service.ogc_api]
}
"#;

    #[test]
    fn a_valid_file_is_clean() {
        assert_eq!(findings(VALID), []);
    }

    #[test]
    fn each_rule_has_its_code_and_place() {
        let has = |text: &str, code: &str, severity: Severity| {
            let f = findings(text);
            assert!(f.iter().any(|(c, s, _)| c == code && *s == severity), "{code} not in {f:?}");
        };
        has(&VALID.replace("\"LineString\"", "\"linestring\""), "hcl.geometry_type", Severity::Error);
        has(&VALID.replace("data_source.db\n", "data_source.nope\n"), "hcl.reference_undefined", Severity::Error);
        has(
            &VALID.replace("[service.ogc_api]", "[service.ogc_api, \"wfs\"]"),
            "hcl.reference_undefined",
            Severity::Error,
        );
        has(
            &VALID.replace("\"development\"", "\"development\"\n  log_level = \"info\""),
            "hcl.log_level",
            Severity::Error,
        );
        has(&VALID.replace("\"postgresql\"", "\"postgres\""), "hcl.provider_unknown", Severity::Warning);
        has(&VALID.replace("table       = \"public.roads\"\n", ""), "hcl.layer_required", Severity::Error);
        has(&VALID.replace("\"${env:DATABASE_URL}\"", "\"Host=var.host\""), "hcl.variable_undefined", Severity::Error);
        has(&format!("{VALID}cache \"c\" {{ type = \"redis\" }}\n"), "hcl.cache_connection_required", Severity::Error);
        has(&format!("{VALID}service \"wfs\" {{ enabled = true }}\n"), "hcl.service_unused", Severity::Warning);
        has(&format!("{VALID}cache \"db\" {{ }}\n"), "hcl.duplicate_id", Severity::Error);
        has(&VALID.replace("\"development\"", "\"production\""), "hcl.production_rate_limit", Severity::Warning);
        has(
            &format!("{VALID}rate_limit {{ rules = {{ r = {{ requests = 0 window = \"1x\" }} }} }}\n"),
            "hcl.rate_limit_rule",
            Severity::Error,
        );
        has(
            &format!("{VALID}rate_limit {{ rules = {{ r = {{ window = \"1x\" }} }} }}\n"),
            "hcl.rate_limit_window",
            Severity::Warning,
        );
        has(
            &VALID.replace("  services = [service.ogc_api]\n", "  introspect_fields = false\n"),
            "hcl.fields_required",
            Severity::Error,
        );
        has(
            &VALID.replace(
                "\"development\"",
                "\"development\"\n  cors = { allow_any_origin = true allow_credentials = true }",
            ),
            "hcl.cors_credentials",
            Severity::Error,
        );
        has(
            &VALID.replace(
                "connection = ",
                "health_check = \"SELECT 1\"\n  pool = { min_size = 5 max_size = 2 }\n  connection = ",
            ),
            "hcl.pool",
            Severity::Error,
        );
        let f = findings(&VALID.replace("\"LineString\"", "\"Line\""));
        assert_eq!(f.iter().find(|(c, ..)| c == "hcl.geometry_type").map(|(.., line)| *line), Some(19));
    }
}
