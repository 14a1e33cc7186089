//! The rules Honua's JSON-era server enforces when it loads metadata, in its own words.
//!
//! Followed, at Honua.Server f210059: `Metadata/MetadataValidator.cs` (the document checks),
//! `Metadata/MetadataSnapshot.cs` (the checks on the built snapshot), `Metadata/MetadataSchemaParser.cs`
//! and `Metadata/LayerConfigurationBuilder.cs` (what the builders drop or default before those run),
//! `Query/Filter/CqlFilterParserUtils.cs` (how `autoFilter` names a field). Any one of these makes Honua
//! refuse the whole file (a reload answers 500 and keeps the previous metadata), so each is an error
//! whose message starts with the server's own sentence. Where the builders quietly drop or default
//! something (a style rule without an id, a rule filter missing its value), the finding is a warning
//! that says what Honua will do instead.

use std::collections::HashSet;

use crate::config::dialect::place;
use crate::config::node::{Loc, Node, Value};
use crate::config::source::SourceMap;
use crate::diagnostic::Diagnostic;

/// `RasterDatasets` source types (`MetadataValidator.SupportedRasterTypes`, compared without case).
pub const RASTER_SOURCE_TYPES: [&str; 4] = ["cloud-optimized-geotiff", "cog", "geotiff", "vector"];

/// The geometry type names Honua knows (`Data/GeometryTypeHelper.NormalizeGeometryTypeName`), without
/// case. Anything else loads, but Esri clients are told `esriGeometryPolygon` whatever the data holds.
pub const GEOMETRY_TYPES: [&str; 10] = [
    "Point",
    "LineString",
    "Polyline",
    "Line",
    "Polygon",
    "MultiPoint",
    "MultiLineString",
    "MultiPolyline",
    "MultiPolygon",
    "GeometryCollection",
];

/// A style's `geometryType` (`MetadataSchemaParser.NormalizeStyleGeometryType`); others become polygon.
const STYLE_GEOMETRY_TYPES: [&str; 5] = ["point", "line", "polyline", "polygon", "raster"];

/// Bounds on an `autoFilter` expression, checked by a flat scan before the CQL2 parser sees it. The
/// parser (pest) recurses per bracket and per operator, deeply: measured in a debug build, one bracket
/// level costs ~64 KiB of stack and one operator ~4 KiB. So the parser runs on a thread of its own with
/// `PARSER_STACK`, where the worst text within these bounds (16 levels, 1,000 negations) needs ~5 MiB;
/// the stack of whoever validates never matters. Honua's own filters are one line.
pub const MAX_CQL_CHARS: usize = 1_000;
pub const MAX_CQL_NESTING: usize = 16;
const PARSER_STACK: usize = 16 * 1024 * 1024;

pub fn check(root: &Node, sources: &SourceMap, out: &mut Vec<Diagnostic>) {
    let mut rules = Rules { sources, out, filters: Vec::new() };
    rules.catalog(root);
    for folder in items(root, "folders") {
        rules.require(folder, "id", "Folders must include an 'id'.", "");
    }
    for source in items(root, "dataSources") {
        if rules.require(source, "id", "Data sources must include an 'id'.", "") {
            let id = text(source, "id");
            rules.require(
                source,
                "provider",
                &format!("Data source '{id}' is missing provider."),
                " (e.g. `provider: postgis`)",
            );
            rules.require(
                source,
                "connectionString",
                &format!("Data source '{id}' is missing connectionString."),
                " (a `${VAR}` placeholder the agent fills in)",
            );
        }
    }
    for style in items(root, "styles") {
        if rules.require(style, "id", "Styles must include an 'id'.", "") {
            rules.style(style);
        }
    }
    for service in items(root, "services") {
        if rules.require(service, "id", "Services must include an 'id'.", "") {
            let id = text(service, "id");
            rules.require(
                service,
                "folderId",
                &format!("Service '{id}' is missing folderId."),
                " (add a `folders:` entry and reference its id)",
            );
            rules.require(
                service,
                "dataSourceId",
                &format!("Service '{id}' is missing dataSourceId."),
                " (reference an entry of `dataSources:`)",
            );
            rules.stored_queries(service);
        }
    }
    for layer in items(root, "layers") {
        if rules.require(layer, "id", "Layers must include an 'id'.", "") {
            rules.layer(layer);
        }
    }
    for raster in items(root, "rasterDatasets") {
        if rules.require(raster, "id", "Raster datasets must include an 'id'.", "") {
            rules.raster(raster);
        }
    }
    let filters = std::mem::take(&mut rules.filters);
    if !filters.is_empty() {
        let parsed = parse_filters(filters.iter().map(|f| f.cql.clone()).collect());
        for (filter, result) in filters.iter().zip(parsed) {
            rules.filter_findings(filter, result);
        }
    }
}

struct Rules<'a> {
    sources: &'a SourceMap,
    out: &'a mut Vec<Diagnostic>,
    /// `autoFilter`s to parse, all on one parser thread once the walk is done.
    filters: Vec<PendingFilter>,
}

struct PendingFilter {
    layer: String,
    at: Loc,
    cql: String,
    known: Vec<String>,
}

impl Rules<'_> {
    fn refuse(&mut self, code: &str, at: Loc, server_says: &str, what_to_do: &str) {
        self.out.push(Diagnostic::error(
            code,
            place(self.sources, at),
            format!("{server_says} Honua refuses the whole file on this{what_to_do}"),
        ));
    }

    /// Rule 7 is enforced on the snapshot, which the JSON-era file provider never fills with stored
    /// queries (its document has no `storedQueries`); the providers that read them refuse the file.
    fn refuse_stored_query(&mut self, at: Loc, server_says: &str, what_to_do: &str) {
        self.out.push(Diagnostic::error(
            "honua.stored_query",
            place(self.sources, at),
            format!(
                "{server_says} Honua refuses metadata with this stored query (the JSON-era file provider skips `storedQueries`; the providers that read them refuse the file){what_to_do}"
            ),
        ));
    }

    fn warn(&mut self, code: &str, at: Loc, message: String) {
        self.out.push(Diagnostic::warning(code, place(self.sources, at), message));
    }

    /// A key the server needs with a non-blank value; placed at the entry (or at the blank value).
    fn require(&mut self, owner: &Node, key: &str, server_says: &str, hint: &str) -> bool {
        match owner.get(key) {
            Some(value) if !is_blank(value) => true,
            Some(value) if value.as_str().is_some() || matches!(value.value, Value::Null) => {
                self.refuse("honua.required", value.loc, server_says, &format!("; give `{key}` a value{hint}"));
                false
            }
            // A value of the wrong type is reported by the type check.
            Some(_) => false,
            None => {
                self.refuse("honua.required", owner.loc, server_says, &format!("; add `{key}:`{hint}"));
                false
            }
        }
    }

    fn catalog(&mut self, root: &Node) {
        match root.get("catalog") {
            Some(catalog) if catalog.as_map().is_some() => {
                self.require(catalog, "id", "Metadata catalog must include an 'id'.", " (e.g. `id: my-catalog`)");
            }
            Some(_) => {}
            None => self.refuse(
                "honua.required",
                root.loc,
                "Metadata catalog must include an 'id'.",
                "; add `catalog: {id: my-catalog, title: …}`",
            ),
        }
    }

    fn layer(&mut self, layer: &Node) {
        let id = text(layer, "id");
        self.require(layer, "serviceId", &format!("Layer '{id}' is missing serviceId."), "");
        if self.require(
            layer,
            "geometryType",
            &format!("Layer '{id}' is missing geometryType."),
            " (e.g. `geometryType: Polygon`)",
        ) {
            self.geometry_type(layer, &id);
        }
        self.require(
            layer,
            "idField",
            &format!("Layer '{id}' is missing idField."),
            " (the column that identifies features)",
        );
        self.require(
            layer,
            "geometryField",
            &format!("Layer '{id}' is missing geometryField."),
            " (the geometry column, e.g. `geom`)",
        );
        for field in layer.get("fields").and_then(Node::as_seq).unwrap_or_default() {
            if field.as_map().is_some() && field.get("name").is_none_or(is_blank) {
                let at = field.get("name").map_or(field.loc, |n| n.loc);
                self.refuse(
                    "honua.required",
                    at,
                    &format!("Layer '{id}' contains a field without a name."),
                    "; give the field a `name:`",
                );
            }
        }
        // Rule 1: the JSON document has no SQL view, so a table is the only source.
        let storage = layer.get("storage");
        if storage.and_then(|s| s.get("table")).is_none_or(is_blank) {
            let at = storage.and_then(|s| s.get("table")).or(storage).map_or(layer.loc, |n| n.loc);
            self.refuse(
                "honua.layer_storage",
                at,
                &format!("Layer '{id}' must have either Storage.Table or SqlView defined."),
                "; add `storage: {table: schema.table_name}` (metadata files cannot define SQL views)",
            );
        }
        self.scales(layer, &id);
        self.extent(layer, &id, "Layer");
        self.auto_filter(layer, &id);
        self.attachments(layer, &id);
    }

    fn geometry_type(&mut self, layer: &Node, id: &str) {
        let Some(node) = layer.get("geometryType") else { return };
        let Some(value) = node.as_str() else { return };
        if GEOMETRY_TYPES.iter().any(|g| g.eq_ignore_ascii_case(value.trim()))
            || value.trim().eq_ignore_ascii_case("collection")
        {
            return;
        }
        let suggestion = GEOMETRY_TYPES
            .iter()
            .map(|g| (strsim::damerau_levenshtein(&value.to_lowercase(), &g.to_lowercase()), *g))
            .min_by_key(|(d, _)| *d)
            .filter(|(d, _)| *d <= 3)
            .map(|(_, g)| format!("did you mean `{g}`? "))
            .unwrap_or_default();
        self.out.push(Diagnostic::error(
            "layer.geometry_type",
            place(self.sources, node.loc),
            format!(
                "layer `{id}` has `geometryType: {value}`, which is not a geometry type Honua knows; {suggestion}Honua loads it but serves the layer wrongly (Esri clients are told `esriGeometryPolygon`, OGC clients `{value}`). Use one of: {}",
                GEOMETRY_TYPES.join(", ")
            ),
        ));
    }

    /// Rule 2 (`MetadataSnapshot`): scales are denominators; the larger one is the most zoomed out.
    fn scales(&mut self, layer: &Node, id: &str) {
        let min = layer.get("minScale").and_then(|n| n.as_f64().map(|v| (n, v)));
        let max = layer.get("maxScale").and_then(|n| n.as_f64().map(|v| (n, v)));
        for (name, scale) in [("minScale", min), ("maxScale", max)] {
            if let Some((node, v)) = scale {
                if v < 0.0 {
                    self.refuse(
                        "honua.layer_scale",
                        node.loc,
                        &format!("Layer '{id}' {name} cannot be negative."),
                        "; use 0 for no limit",
                    );
                }
            }
        }
        if let (Some((_, min)), Some((max_node, max))) = (min, max) {
            if min > 0.0 && max > 0.0 && max > min {
                self.refuse(
                    "honua.layer_scale",
                    max_node.loc,
                    &format!(
                        "Layer '{id}' maxScale ({}) cannot be greater than minScale ({}).",
                        number(max),
                        number(min)
                    ),
                    "; scales are denominators: `minScale` is the most zoomed-out (larger) one, so swap the two",
                );
            }
        }
    }

    /// The layer builder refuses a box with fewer than 4 numbers; our stricter reading (exactly 4 or 6)
    /// is a warning, and temporal boundaries go through `DateTimeOffset.TryParse`.
    fn extent(&mut self, owner: &Node, id: &str, kind: &str) {
        let Some(extent) = owner.get("extent") else { return };
        for bbox in extent.get("bbox").and_then(Node::as_seq).unwrap_or_default() {
            let Some(coords) = bbox.as_seq() else { continue };
            if coords.iter().any(|c| c.as_f64().is_none()) {
                continue; // the type check reports it
            }
            if coords.len() < 4 {
                self.refuse(
                    "honua.extent",
                    bbox.loc,
                    &format!("{kind} '{id}' extent contains an invalid bounding box."),
                    &format!(
                        "; this box has {} number(s), a box needs [minx, miny, maxx, maxy] (or 6 with z)",
                        coords.len()
                    ),
                );
            } else if coords.len() != 4 && coords.len() != 6 {
                self.warn(
                    "bbox.unusual",
                    bbox.loc,
                    format!(
                        "{kind} `{id}`: this bounding box has {} numbers; Honua accepts it (it reads the first 4 or 6), but a box is [minx, miny, maxx, maxy] or with min and max z",
                        coords.len()
                    ),
                );
            }
        }
        let intervals = extent.get_path(&["temporal", "interval"]).and_then(Node::as_seq).unwrap_or_default();
        for interval in intervals {
            let Some(ends) = interval.as_seq() else { continue };
            if ends.len() < 2 {
                self.refuse(
                    "honua.temporal",
                    interval.loc,
                    &format!("Layer '{id}' temporal extent entry is invalid."),
                    "; an interval is [start, end], with `..` or null for an open end",
                );
                continue;
            }
            let mut parsed = [None, None];
            for (slot, end) in ends.iter().take(2).enumerate() {
                let Some(value) = end.as_str() else { continue };
                if value.trim().is_empty() || value == ".." {
                    continue;
                }
                match super::instant::parse(value) {
                    Some((t, super::instant::Form::Iso)) => parsed[slot] = Some(t),
                    Some((t, super::instant::Form::Lenient)) => {
                        parsed[slot] = Some(t);
                        self.warn(
                            "temporal.not_iso",
                            end.loc,
                            format!(
                                "`{value}` is not an ISO-8601 date-time; Honua accepts it (.NET's DateTimeOffset reads it, as UTC), but OGC clients expect e.g. `2024-01-01T00:00:00Z`"
                            ),
                        );
                    }
                    None => self.refuse(
                        "honua.temporal",
                        end.loc,
                        &format!("Layer '{id}' temporal extent boundary '{value}' is not a valid date/time value."),
                        "; write e.g. `2024-01-01T00:00:00Z`, or `..` for an open end",
                    ),
                }
            }
            if let [Some(start), Some(end)] = parsed {
                if start > end {
                    self.warn(
                        "temporal.reversed",
                        interval.loc,
                        format!("layer `{id}`: this temporal interval starts after it ends; Honua loads it, but no time filter will ever match it. Swap start and end"),
                    );
                }
            }
        }
    }

    /// Rule 4: Honua parses the filter at load, against the layer's fields (`LayerConfigurationBuilder`).
    fn auto_filter(&mut self, layer: &Node, id: &str) {
        let Some(node) = layer.get_path(&["query", "autoFilter", "cql"]) else { return };
        let Some(cql) = node.as_str() else { return };
        if cql.trim().is_empty() {
            return;
        }
        let prefix = format!("Layer '{id}' autoFilter is invalid:");
        if let Some(why) = too_complex(cql) {
            self.refuse("honua.auto_filter", node.loc, &format!("{prefix} {why}."), "; simplify the filter");
            return;
        }
        let mut known: Vec<String> =
            ["idField", "geometryField"].iter().filter_map(|k| layer.get_str(k).map(str::to_string)).collect();
        known.extend(
            layer
                .get("fields")
                .and_then(Node::as_seq)
                .unwrap_or_default()
                .iter()
                .filter_map(|f| f.get_str("name").map(str::to_string)),
        );
        self.filters.push(PendingFilter { layer: id.to_string(), at: node.loc, cql: cql.to_string(), known });
    }

    fn filter_findings(&mut self, filter: &PendingFilter, parsed: Result<Vec<String>, FilterError>) {
        let (id, known) = (&filter.layer, &filter.known);
        let prefix = format!("Layer '{id}' autoFilter is invalid:");
        let names = match parsed {
            Ok(names) => names,
            Err(why) => {
                self.refuse(
                    "honua.auto_filter",
                    filter.at,
                    &format!("{prefix} it is not CQL2 text ({why})."),
                    "; e.g. `status = 'active' AND area > 100`",
                );
                return;
            }
        };
        let mut reported = HashSet::new();
        for name in names {
            // `CqlFilterParserUtils.ExtractTerminalName`: the part after the last '/'.
            let terminal = name.rsplit('/').find(|p| !p.trim().is_empty()).unwrap_or(&name).trim().to_string();
            if known.iter().any(|k| k.eq_ignore_ascii_case(&terminal)) || !reported.insert(terminal.to_lowercase()) {
                continue;
            }
            let mut distinct: Vec<&String> = Vec::new();
            for k in known.iter() {
                if !distinct.iter().any(|d| d.eq_ignore_ascii_case(k)) {
                    distinct.push(k);
                }
            }
            let listing: Vec<String> = distinct.iter().take(12).map(|k| format!("`{k}`")).collect();
            self.refuse(
                "honua.auto_filter",
                filter.at,
                &format!("{prefix} Field '{terminal}' is not defined for layer '{id}'."),
                &format!(
                    "; the filter may name {}, or add the field to `fields`",
                    if listing.is_empty() { "no field yet".to_string() } else { listing.join(", ") }
                ),
            );
        }
    }

    /// Rule 5 (`MetadataValidator.ValidateLayerAttachments`).
    fn attachments(&mut self, layer: &Node, id: &str) {
        let Some(a) = layer.get("attachments") else { return };
        if a.as_map().is_none() {
            return;
        }
        let enabled = a.get("enabled").and_then(Node::as_bool) == Some(true);
        if enabled && a.get("storageProfileId").is_none_or(is_blank) {
            self.refuse(
                "honua.attachments",
                a.get("enabled").map_or(a.loc, |n| n.loc),
                &format!("Layer '{id}' has attachments enabled but is missing storageProfileId."),
                "; add `storageProfileId:` naming an attachment storage profile of the server",
            );
        }
        if let Some(size) = a.get("maxSizeMiB").filter(|n| n.as_i64().is_some_and(|v| v <= 0)) {
            self.refuse(
                "honua.attachments",
                size.loc,
                &format!("Layer '{id}' attachments maxSizeMiB must be greater than zero."),
                "; give a size in MiB, or remove the key for the server's default",
            );
        }
        for list in ["allowedContentTypes", "disallowedContentTypes"] {
            for entry in a.get(list).and_then(Node::as_seq).unwrap_or_default() {
                if is_blank(entry) {
                    self.refuse(
                        "honua.attachments",
                        entry.loc,
                        &format!("Layer '{id}' attachments {list} contains an empty value."),
                        "; remove the empty entry",
                    );
                }
            }
        }
        if let Some(expose) = a.get("exposeOgcLinks").filter(|n| n.as_bool() == Some(true)) {
            if !enabled {
                self.refuse(
                    "honua.attachments",
                    expose.loc,
                    &format!("Layer '{id}' cannot expose attachment links for OGC because attachments are disabled."),
                    "; set `enabled: true` (with a `storageProfileId`) or remove `exposeOgcLinks`",
                );
            }
        }
    }

    /// Rule 6 (`MetadataValidator.ValidateRasterDatasets`).
    fn raster(&mut self, raster: &Node) {
        let id = text(raster, "id");
        self.extent(raster, &id, "Raster dataset");
        let Some(source) = raster.get("source").filter(|s| s.as_map().is_some()) else {
            if raster.get("source").is_none_or(|s| matches!(s.value, Value::Null)) {
                self.refuse(
                    "honua.raster_source",
                    raster.loc,
                    &format!("Raster dataset '{id}' must include a source definition."),
                    "; add `source: {type: cog, uri: …}`",
                );
            }
            return;
        };
        match source.get("type") {
            None => self.refuse(
                "honua.raster_source",
                source.loc,
                &format!("Raster dataset '{id}' source is missing type."),
                &format!("; add `type:` ({})", RASTER_SOURCE_TYPES.join(", ")),
            ),
            Some(t) if is_blank(t) => self.refuse(
                "honua.raster_source",
                t.loc,
                &format!("Raster dataset '{id}' source is missing type."),
                &format!("; use one of {}", RASTER_SOURCE_TYPES.join(", ")),
            ),
            Some(t) => {
                if let Some(value) = t.as_str() {
                    if !RASTER_SOURCE_TYPES.iter().any(|s| s.eq_ignore_ascii_case(value)) {
                        self.refuse(
                            "honua.raster_source",
                            t.loc,
                            &format!(
                                "Raster dataset '{id}' source type '{value}' is not supported. Supported types: {}.",
                                RASTER_SOURCE_TYPES.join(", ")
                            ),
                            "",
                        );
                    }
                }
            }
        }
        self.require(
            source,
            "uri",
            &format!("Raster dataset '{id}' source is missing uri."),
            " (the file or URL of the raster)",
        );
    }

    /// Rule 3 (`MetadataValidator.ValidateStyleDocument`, `MetadataSnapshot.ValidateStyleDefinition`,
    /// after `MetadataSchemaParser` dropped rules without an id and filters missing a half).
    fn style(&mut self, style: &Node) {
        let id = text(style, "id");
        let renderer_node = style.get("renderer");
        let renderer = renderer_node.and_then(Node::as_str).map(str::trim).unwrap_or("");
        match renderer.to_lowercase().as_str() {
            "" | "simple" => {
                if style.get("simple").is_none_or(|n| matches!(n.value, Value::Null)) {
                    self.refuse(
                        "honua.style",
                        style.loc,
                        &format!("Style '{id}' with renderer 'simple' must include a simple symbol definition."),
                        "; add `simple: {fillColor: …, strokeColor: …}`",
                    );
                }
            }
            "uniquevalue" | "unique-value" => self.unique_value(style, &id),
            _ => {
                let hint = if renderer.eq_ignore_ascii_case("unique_value") {
                    "; write `renderer: uniqueValue` (Honua's validator lets `unique_value` through, its snapshot does not)"
                } else {
                    "; Honua draws `simple` and `uniqueValue`"
                };
                self.refuse(
                    "honua.style",
                    renderer_node.map_or(style.loc, |n| n.loc),
                    &format!("Style '{id}' specifies unsupported renderer '{renderer}'."),
                    hint,
                );
            }
        }
        if let Some(g) = style.get("geometryType").and_then(|n| n.as_str().map(|s| (n, s))) {
            if !g.1.trim().is_empty() && !STYLE_GEOMETRY_TYPES.iter().any(|t| t.eq_ignore_ascii_case(g.1.trim())) {
                self.warn(
                    "style.geometry_type",
                    g.0.loc,
                    format!(
                        "style `{id}` has `geometryType: {}`; Honua loads it but draws the style as `polygon`. A style's geometry type is one of {}",
                        g.1,
                        STYLE_GEOMETRY_TYPES.join(", ")
                    ),
                );
            }
        }
        for rule in style.get("rules").and_then(Node::as_seq).unwrap_or_default() {
            if rule.as_map().is_none() {
                continue;
            }
            if rule.get("id").is_none_or(is_blank) {
                self.warn(
                    "style.rule_dropped",
                    rule.loc,
                    format!("style `{id}` has a rule without an `id`; Honua loads the file but drops the rule. Give it an id"),
                );
                continue;
            }
            let rule_id = text(rule, "id");
            if rule.get("symbolizer").is_none_or(|n| matches!(n.value, Value::Null)) {
                self.warn(
                    "style.rule_symbolizer",
                    rule.loc,
                    format!("style `{id}` rule `{rule_id}` has no `symbolizer`; Honua loads it and draws the rule with a default symbol"),
                );
            }
            if let Some(filter) = rule.get("filter").filter(|f| f.as_map().is_some()) {
                let (field, value) = (filter.get("field"), filter.get("value"));
                let present = |n: Option<&Node>| n.is_some_and(|n| !matches!(n.value, Value::Null));
                if !present(field) || !present(value) {
                    self.warn(
                        "style.rule_filter_dropped",
                        filter.loc,
                        format!("style `{id}` rule `{rule_id}`: a filter needs both `field` and `value`; Honua loads the file but ignores this filter, so the rule matches every feature"),
                    );
                } else if field.is_some_and(is_blank) || value.is_some_and(is_blank) {
                    self.refuse(
                        "honua.style",
                        filter.loc,
                        &format!("Style '{id}' rule '{rule_id}' filter must include both field and value."),
                        "; fill in the blank one",
                    );
                }
            }
            let scale = |k: &str| rule.get(k).and_then(Node::as_f64);
            if let (Some(min), Some(max)) = (scale("minScale"), scale("maxScale")) {
                if min > max {
                    self.refuse(
                        "honua.style",
                        rule.get("minScale").map_or(rule.loc, |n| n.loc),
                        &format!("Style '{id}' rule '{rule_id}' has minScale greater than maxScale."),
                        "; swap the two",
                    );
                }
            }
        }
    }

    fn unique_value(&mut self, style: &Node, id: &str) {
        let Some(uv) = style.get("uniqueValue").filter(|n| n.as_map().is_some()) else {
            self.refuse(
                "honua.style",
                style.get("renderer").map_or(style.loc, |n| n.loc),
                &format!("Style '{id}' with renderer 'uniqueValue' must include unique value configuration."),
                "; add `uniqueValue: {field: …, classes: [{value: …, symbol: {…}}]}`",
            );
            return;
        };
        if uv.get("field").is_none_or(is_blank) {
            self.refuse(
                "honua.style",
                uv.get("field").map_or(uv.loc, |n| n.loc),
                &format!("Style '{id}' unique value renderer must specify a field."),
                "; add `field:` naming the attribute whose values pick the symbol",
            );
        }
        let classes = uv.get("classes").and_then(Node::as_seq).unwrap_or_default();
        if classes.is_empty() {
            self.refuse(
                "honua.style",
                uv.get("classes").map_or(uv.loc, |n| n.loc),
                &format!("Style '{id}' unique value renderer must include at least one class definition."),
                "; add `classes: [{value: …, symbol: {…}}]`",
            );
        }
        for class in classes {
            if !matches!(class.value, Value::Null | Value::Map(_)) {
                continue; // the type check reports it
            }
            if class.get("value").is_none_or(is_blank) {
                self.refuse(
                    "honua.style",
                    class.get("value").map_or(class.loc, |n| n.loc),
                    &format!("Style '{id}' unique value renderer contains a class without a value."),
                    "; add `value:`",
                );
            } else if class.get("symbol").is_none_or(|n| matches!(n.value, Value::Null)) {
                let value = text(class, "value");
                self.refuse(
                    "honua.style",
                    class.loc,
                    &format!("Style '{id}' unique value renderer class '{value}' is missing a symbol definition."),
                    "; add `symbol: {fillColor: …}`",
                );
            }
        }
    }

    /// Rule 7 (`MetadataSnapshot.ValidateStoredQueries`).
    fn stored_queries(&mut self, service: &Node) {
        let sid = text(service, "id");
        let queries = service.get_path(&["ogc", "storedQueries"]).and_then(Node::as_seq).unwrap_or_default();
        self.each_keyed(queries, &format!("Service '{sid}'"), &STORED_QUERIES, |this, query, qid| {
            let owner = format!("Service '{sid}' stored query '{qid}'");
            this.require_stored_query_keys(
                query,
                &owner,
                &[
                    ("title", "must have a title."),
                    ("layerId", "must specify a layerId."),
                    ("filterCql", "must specify a filterCql expression."),
                ],
            );
            let parameters = query.get("parameters").and_then(Node::as_seq).unwrap_or_default();
            this.each_keyed(parameters, &owner, &PARAMETERS, |this, param, name| {
                this.require_stored_query_keys(
                    param,
                    &format!("{owner} parameter '{name}'"),
                    &[("type", "must have a type."), ("title", "must have a title.")],
                );
            });
        });
    }

    /// Checks a stored-query list's entries as Honua does, in order: a null entry, one without its key and
    /// one whose key an earlier entry has (compared without case) are refused. `check` then goes on with
    /// each entry that has a key (a duplicate too, as Honua goes on checking it).
    fn each_keyed(
        &mut self,
        entries: &[Node],
        owner: &str,
        list: &KeyedList,
        mut check: impl FnMut(&mut Self, &Node, &str),
    ) {
        let (what, key) = (list.what, list.key);
        let mut seen = HashSet::new();
        for entry in entries {
            if entry.as_map().is_none() {
                if matches!(entry.value, Value::Null) {
                    let says = format!("{owner} contains a null {what}.");
                    self.refuse_stored_query(entry.loc, &says, "; remove the empty entry");
                }
                continue;
            }
            if entry.get(key).is_none_or(is_blank) {
                let says = format!("{owner} contains a {what} without {}.", list.without);
                self.refuse_stored_query(entry.loc, &says, &format!("; add `{key}:`"));
                continue;
            }
            let name = text(entry, key);
            if !seen.insert(name.to_lowercase()) {
                let says = format!("{owner} has duplicate {} '{name}'.", list.duplicate);
                self.refuse_stored_query(entry.get(key).map_or(entry.loc, |n| n.loc), &says, list.duplicate_hint);
            }
            check(self, entry, &name);
        }
    }

    /// Each of `keys` with a non-blank value in a stored query or parameter, or refused as `{owner} {says}`.
    fn require_stored_query_keys(&mut self, entry: &Node, owner: &str, keys: &[(&str, &str)]) {
        for (key, says) in keys {
            if entry.get(key).is_none_or(is_blank) {
                let at = entry.get(key).map_or(entry.loc, |n| n.loc);
                self.refuse_stored_query(at, &format!("{owner} {says}"), &format!("; add `{key}:`"));
            }
        }
    }
}

/// How Honua names a keyed list's entries in its stored-query messages.
struct KeyedList {
    what: &'static str,
    key: &'static str,
    /// The key with its article: "without an id".
    without: &'static str,
    /// "has duplicate stored query id 'x'".
    duplicate: &'static str,
    duplicate_hint: &'static str,
}

const STORED_QUERIES: KeyedList = KeyedList {
    what: "stored query",
    key: "id",
    without: "an id",
    duplicate: "stored query id",
    duplicate_hint: "; give each stored query its own id (compared without case)",
};

const PARAMETERS: KeyedList = KeyedList {
    what: "parameter",
    key: "name",
    without: "a name",
    duplicate: "parameter",
    duplicate_hint: "; parameter names are compared without case",
};

fn items<'a>(root: &'a Node, list: &str) -> impl Iterator<Item = &'a Node> {
    root.get(list).and_then(Node::as_seq).unwrap_or_default().iter().filter(|n| n.as_map().is_some())
}

/// C#'s `IsNullOrWhiteSpace` on a string property: absent, null or only whitespace. A non-string
/// value is not blank here (the type check reports it).
fn is_blank(node: &Node) -> bool {
    match &node.value {
        Value::Null => true,
        Value::Str(s) => s.trim().is_empty(),
        _ => false,
    }
}

fn text(node: &Node, key: &str) -> String {
    node.get(key).map_or(String::new(), |n| match &n.value {
        Value::Str(s) => s.to_string(),
        Value::Null => String::new(),
        _ => n.to_string(),
    })
}

/// As .NET prints a double: `5000`, `1500.5`.
fn number(v: f64) -> String {
    format!("{v}")
}

/// A flat scan, before any parser runs: length and bracket nesting.
fn too_complex(cql: &str) -> Option<String> {
    if cql.len() > MAX_CQL_CHARS {
        return Some(format!("it is {} characters long; the limit here is {MAX_CQL_CHARS}", cql.len()));
    }
    let (mut depth, mut deepest, mut quoted) = (0usize, 0usize, false);
    for c in cql.chars() {
        match c {
            '\'' => quoted = !quoted,
            '(' | '[' | '{' if !quoted => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ')' | ']' | '}' if !quoted => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    (deepest > MAX_CQL_NESTING)
        .then(|| format!("it nests {deepest} levels of brackets; the limit here is {MAX_CQL_NESTING}"))
}

/// Parses each filter (bounded by [`too_complex`]) on one thread with [`PARSER_STACK`], returning the
/// properties each names or why it does not parse. The trees are dropped there too: drop recursion is
/// as deep as the parse.
/// Why an `autoFilter.cql` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum FilterError {
    /// The parser's own words: where, and what it expected.
    #[error("{0}")]
    Parse(String),
    /// The parser thread could not run (never a verdict on the filter).
    #[error("could not be checked: {0}")]
    Unchecked(String),
}

fn parse_filters(filters: Vec<String>) -> Vec<Result<Vec<String>, FilterError>> {
    let count = filters.len();
    let parse = move || {
        filters
            .iter()
            .map(|cql| {
                cql2::parse_text(cql).map_err(|e| FilterError::Parse(parse_error(&e))).map(|expr| {
                    let mut names = Vec::new();
                    properties(&expr, &mut names);
                    names
                })
            })
            .collect::<Vec<_>>()
    };
    let parsed = std::thread::Builder::new()
        .name("cql2-parser".into())
        .stack_size(PARSER_STACK)
        .spawn(parse)
        .map_err(|e| e.to_string())
        .and_then(|thread| thread.join().map_err(|_| "the CQL2 parser failed".to_string()));
    match parsed {
        Ok(results) => results,
        Err(why) => (0..count).map(|_| Err(FilterError::Unchecked(why.clone()))).collect(),
    }
}

/// One line out of the parser's error: where and what it expected.
fn parse_error(e: &cql2::Error) -> String {
    let full = e.to_string();
    let at = full.lines().find_map(|l| l.trim().strip_prefix("--> ")).map(|p| format!("at {p}"));
    let expected = full.lines().find_map(|l| l.trim().strip_prefix("= ")).map(str::to_string);
    match (at, expected) {
        (Some(at), Some(expected)) => format!("{at}: {expected}"),
        (Some(at), None) => at,
        _ => full.lines().next().unwrap_or("unreadable").chars().take(200).collect(),
    }
}

/// Every property a parsed filter names. The tree comes from input bounded by [`too_complex`].
fn properties(expr: &cql2::Expr, out: &mut Vec<String>) {
    use cql2::Expr;
    match expr {
        Expr::Property { property } => out.push(property.clone()),
        Expr::Operation { args, .. } => args.iter().for_each(|a| properties(a, out)),
        Expr::Interval { interval: items } | Expr::BBox { bbox: items } | Expr::Array(items) => {
            items.iter().for_each(|a| properties(a, out))
        }
        Expr::Timestamp { timestamp: inner } | Expr::Date { date: inner } => properties(inner, out),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_name_their_properties() {
        let expr = cql2::parse_text("status = 'active' AND (area > 100 OR \"Owner Name\" LIKE 'A%')").unwrap();
        let mut names = Vec::new();
        properties(&expr, &mut names);
        names.sort();
        assert_eq!(names, ["Owner Name", "area", "status"]);
    }

    #[test]
    fn deep_filters_are_refused_before_parsing() {
        let deep = format!("{}a = 1{}", "(".repeat(17), ")".repeat(17));
        assert!(too_complex(&deep).unwrap().contains("17 levels"));
        let quoted = format!("a = '{}'", "(".repeat(100));
        assert_eq!(too_complex(&quoted), None);
        assert!(too_complex(&"a".repeat(MAX_CQL_CHARS + 1)).is_some());
    }
}

#[cfg(test)]
mod stack_tests {
    use super::*;

    /// The worst filters within the bounds parse whatever the caller's stack (here 256 KiB, where the
    /// first case alone overflows when parsed in place on a debug build).
    #[test]
    fn the_longest_filters_allowed_parse_on_a_small_stack() {
        let cases = vec![
            format!("{}a = 1{}", "(".repeat(MAX_CQL_NESTING), ")".repeat(MAX_CQL_NESTING)),
            "a = 1 AND ".repeat(MAX_CQL_CHARS / 10 - 1) + "a = 1",
            "NOT ".repeat(MAX_CQL_CHARS / 4 - 2) + "a",
            "a = ".to_string() + &"- ".repeat(MAX_CQL_CHARS / 2 - 4) + "1",
            "a + ".repeat(MAX_CQL_CHARS / 4 - 4) + "a = 1",
            "a = ".to_string() + &"-".repeat(MAX_CQL_CHARS - 5) + "1",
            format!(
                "{}a = {}1{}",
                "(".repeat(MAX_CQL_NESTING),
                "-".repeat(MAX_CQL_CHARS - 5 - 2 * MAX_CQL_NESTING),
                ")".repeat(MAX_CQL_NESTING)
            ),
        ];
        for cql in &cases {
            assert!(cql.len() <= MAX_CQL_CHARS, "{}", cql.len());
            assert_eq!(too_complex(cql), None);
        }
        let results = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || parse_filters(cases))
            .unwrap()
            .join()
            .unwrap();
        assert!(results[0].is_ok() && results[1].is_ok(), "{results:?}");
    }
}
