//! Validation agrees with Honua's JSON-era server (REAL-SERVER.md §4): each rule the server enforces
//! at load has a failing example (an error with the server's own sentence, at the line and column of
//! what is wrong) and a passing one; what the server accepts but a strict reading would not is a
//! warning that says so; keys Honua does not read are warnings at the key.

mod common;

use honua_gitops::diagnostic::{Diagnostic, Severity};
use honua_gitops::validate::validate_repo;

/// A catalogue the server loads: no finding at all.
const BASE: &str = r##"catalog: {id: city}
folders: [{id: f}]
dataSources: [{id: db, provider: postgis, connectionString: "Host=db;Password=${DB_PASSWORD}"}]
services:
  - id: transport
    folderId: f
    serviceType: feature
    dataSourceId: db
    ogc: {collectionsEnabled: true}
styles:
  - id: roads-simple
    renderer: simple
    geometryType: line
    simple: {strokeColor: "#333333", strokeWidth: 1.5}
layers:
  - id: roads
    serviceId: transport
    title: Roads
    geometryType: LineString
    idField: road_id
    geometryField: geom
    minScale: 50000
    maxScale: 1000
    fields:
      - {name: road_id, type: int}
      - {name: status, type: string}
    storage: {table: public.roads}
    caching: {enabled: true, ttl: 3600}
    styles: {defaultStyleId: roads-simple}
"##;

const FILE: &str = "environments/production/metadata.yaml";

fn validate(doc: &str) -> Vec<Diagnostic> {
    validate_repo(&common::repo(&[(FILE, doc)]), None)
}

/// `BASE` with one text replaced (which must be there).
fn with(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "BASE has no {from:?}");
    BASE.replacen(from, to, 1)
}

/// `BASE` with text added after a line that starts with `after`.
fn adding(after: &str, text: &str) -> String {
    let at = BASE.find(after).unwrap_or_else(|| panic!("BASE has no {after:?}"));
    let end = at + BASE[at..].find('\n').unwrap() + 1;
    format!("{}{text}{}", &BASE[..end], &BASE[end..])
}

/// 1-based line and column of the first `needle` in `doc`.
fn pos(doc: &str, needle: &str) -> (u32, u32) {
    let at = doc.find(needle).unwrap_or_else(|| panic!("no {needle:?} in the document"));
    line_column(doc, at)
}

fn line_column(doc: &str, at: usize) -> (u32, u32) {
    let line = doc[..at].matches('\n').count() + 1;
    let column = at - doc[..at].rfind('\n').map_or(0, |i| i + 1) + 1;
    (line as u32, column as u32)
}

/// 1-based line and column of the first `needle` after the first `anchor`.
fn pos_in(doc: &str, anchor: &str, needle: &str) -> (u32, u32) {
    let from = doc.find(anchor).unwrap_or_else(|| panic!("no {anchor:?} in the document"));
    let at = from + doc[from..].find(needle).unwrap_or_else(|| panic!("no {needle:?} after {anchor:?}"));
    line_column(doc, at)
}

/// The one finding with `code`, asserting its severity, position and words.
#[track_caller]
fn finding(doc: &str, code: &str, severity: Severity, at: (u32, u32), words: &str) -> Diagnostic {
    let found = validate(doc);
    let matching: Vec<&Diagnostic> = found.iter().filter(|d| d.code == code && d.message.contains(words)).collect();
    assert_eq!(matching.len(), 1, "one {code} with {words:?} expected in:\n{found:#?}");
    let d = matching[0].clone();
    assert_eq!((d.line, d.column), at, "{d:#?}");
    assert_eq!(d.severity, severity, "{d:#?}");
    assert_eq!(d.file, FILE);
    d
}

#[track_caller]
fn no_errors(doc: &str) -> Vec<Diagnostic> {
    let found = validate(doc);
    assert!(found.iter().all(|d| d.severity == Severity::Warning), "{found:#?}");
    found
}

#[test]
fn the_base_catalogue_has_no_finding() {
    assert_eq!(validate(BASE), Vec::<Diagnostic>::new());
}

#[test]
fn rule_1_a_layer_needs_a_table() {
    let doc = with("    storage: {table: public.roads}\n", "");
    let d = finding(
        &doc,
        "honua.layer_storage",
        Severity::Error,
        pos(&doc, "id: roads\n"),
        "Layer 'roads' must have either Storage.Table or SqlView defined.",
    );
    assert!(d.message.contains("storage: {table:"), "{}", d.message);
    let blank = with("{table: public.roads}", "{table: \" \"}");
    finding(&blank, "honua.layer_storage", Severity::Error, pos(&blank, "\" \""), "Storage.Table");
    no_errors(&with("{table: public.roads}", "{table: roads, geometryColumn: geom, srid: 4326}"));
}

#[test]
fn rule_2_scales_are_not_negative_and_max_is_the_smaller() {
    let doc = with("maxScale: 1000", "maxScale: 100000");
    finding(
        &doc,
        "honua.layer_scale",
        Severity::Error,
        pos(&doc, "100000"),
        "Layer 'roads' maxScale (100000) cannot be greater than minScale (50000).",
    );
    let doc = with("minScale: 50000", "minScale: -1");
    finding(&doc, "honua.layer_scale", Severity::Error, pos(&doc, "-1"), "Layer 'roads' minScale cannot be negative.");
    // 0 means "no limit": no comparison.
    no_errors(&with("minScale: 50000", "minScale: 0"));
    no_errors(BASE);
}

const UNIQUE: &str = "  - id: roads-by-status\n    renderer: uniqueValue\n    uniqueValue:\n      field: status\n      classes:\n        - {value: open, symbol: {strokeColor: \"#00AA00\"}}\n";

#[test]
fn rule_3_styles_need_what_their_renderer_draws() {
    no_errors(&adding("    simple: {strokeColor", UNIQUE));

    let doc = adding(
        "    simple: {strokeColor",
        "  - id: roads-by-status\n    renderer: uniqueValue\n    uniqueValue: {field: status}\n",
    );
    finding(
        &doc,
        "honua.style",
        Severity::Error,
        pos(&doc, "{field: status}"),
        "Style 'roads-by-status' unique value renderer must include at least one class definition.",
    );
    let doc = adding("    simple: {strokeColor", &UNIQUE.replace("{value: open, ", "{"));
    finding(&doc, "honua.style", Severity::Error, pos(&doc, "{symbol:"), "contains a class without a value.");
    let doc = adding("    simple: {strokeColor", &UNIQUE.replace(", symbol: {strokeColor: \"#00AA00\"}", ""));
    finding(
        &doc,
        "honua.style",
        Severity::Error,
        pos(&doc, "{value: open"),
        "class 'open' is missing a symbol definition.",
    );

    let doc = with("renderer: simple", "renderer: heatmap");
    finding(
        &doc,
        "honua.style",
        Severity::Error,
        pos(&doc, "heatmap"),
        "Style 'roads-simple' specifies unsupported renderer 'heatmap'.",
    );
    // Honua's validator lets unique_value through; its snapshot refuses it.
    let doc = adding("    simple: {strokeColor", &UNIQUE.replace("uniqueValue\n", "unique_value\n"));
    let d =
        finding(&doc, "honua.style", Severity::Error, pos(&doc, "unique_value"), "unsupported renderer 'unique_value'");
    assert!(d.message.contains("write `renderer: uniqueValue`"), "{}", d.message);
    let doc = with("    simple: {strokeColor: \"#333333\", strokeWidth: 1.5}\n", "");
    finding(
        &doc,
        "honua.style",
        Severity::Error,
        pos(&doc, "id: roads-simple"),
        "Style 'roads-simple' with renderer 'simple' must include a simple symbol definition.",
    );
}

#[test]
fn rule_3_style_rules_as_the_server_builds_them() {
    let rules = |rule: &str| adding("    simple: {strokeColor", &format!("    rules:\n{rule}"));
    no_errors(&rules("      - {id: open, filter: {field: status, value: open}, symbolizer: {strokeColor: \"#0A0\"}, minScale: 1000, maxScale: 5000}\n"));

    let doc = rules("      - {id: open, filter: {field: status, value: \" \"}, symbolizer: {}}\n");
    finding(
        &doc,
        "honua.style",
        Severity::Error,
        pos(&doc, "{field: status"),
        "Style 'roads-simple' rule 'open' filter must include both field and value.",
    );
    let doc = rules("      - {id: open, symbolizer: {}, minScale: 5000, maxScale: 1000}\n");
    finding(
        &doc,
        "honua.style",
        Severity::Error,
        pos(&doc, "5000"),
        "Style 'roads-simple' rule 'open' has minScale greater than maxScale.",
    );
    // What the builder drops or defaults is a warning saying so, never a refusal.
    let doc = rules("      - {label: no id, symbolizer: {}}\n");
    finding(&doc, "style.rule_dropped", Severity::Warning, pos(&doc, "{label: no id"), "drops the rule");
    let doc = rules("      - {id: open, filter: {field: status}, symbolizer: {}}\n");
    finding(&doc, "style.rule_filter_dropped", Severity::Warning, pos(&doc, "{field: status}"), "ignores this filter");
    no_errors(&doc);
}

#[test]
fn rule_4_the_auto_filter_is_cql2_over_the_layers_fields() {
    let filter = |cql: &str| {
        adding("    storage: {table: public.roads}", &format!("    query: {{autoFilter: {{cql: \"{cql}\"}}}}\n"))
    };
    no_errors(&filter("status = 'open' AND road_id > 10"));
    // The id and geometry fields are always known.
    no_errors(&filter("S_INTERSECTS(geom, BBOX(-180, -90, 180, 90)) AND road_id <> 3"));

    let doc = filter("status = = 'open'");
    let d = finding(
        &doc,
        "honua.auto_filter",
        Severity::Error,
        pos(&doc, "\"status = ="),
        "Layer 'roads' autoFilter is invalid:",
    );
    assert!(d.message.contains("not CQL2 text (at 1:"), "{}", d.message);
    let doc = filter("speed > 50");
    let d = finding(
        &doc,
        "honua.auto_filter",
        Severity::Error,
        pos(&doc, "\"speed"),
        "Layer 'roads' autoFilter is invalid: Field 'speed' is not defined for layer 'roads'.",
    );
    assert!(
        d.message.contains("`road_id`, `geom`, `road_id`, `status`") || d.message.contains("`status`"),
        "{}",
        d.message
    );
    // A depth bomb is refused by a flat scan before the parser runs.
    let deep = format!("{}status = 'x'{}", "(".repeat(100), ")".repeat(100));
    let doc = filter(&deep);
    finding(&doc, "honua.auto_filter", Severity::Error, pos(&doc, "\"((("), "nests 100 levels");
}

#[test]
fn rule_5_attachments() {
    let attach = |a: &str| adding("    storage: {table: public.roads}", &format!("    attachments: {a}\n"));
    no_errors(&attach("{enabled: true, storageProfileId: s3-photos, maxSizeMiB: 10, allowedContentTypes: [image/jpeg], exposeOgcLinks: true}"));
    no_errors(&attach("{enabled: false}"));

    let doc = attach("{enabled: true}");
    finding(
        &doc,
        "honua.attachments",
        Severity::Error,
        pos_in(&doc, "attachments:", "true}"),
        "Layer 'roads' has attachments enabled but is missing storageProfileId.",
    );
    let doc = attach("{enabled: true, storageProfileId: s3, maxSizeMiB: 0}");
    finding(
        &doc,
        "honua.attachments",
        Severity::Error,
        pos_in(&doc, "attachments:", "0}"),
        "Layer 'roads' attachments maxSizeMiB must be greater than zero.",
    );
    let doc = attach("{enabled: true, storageProfileId: s3, disallowedContentTypes: [\"\"]}");
    finding(
        &doc,
        "honua.attachments",
        Severity::Error,
        pos(&doc, "\"\"]"),
        "Layer 'roads' attachments disallowedContentTypes contains an empty value.",
    );
    let doc = attach("{exposeOgcLinks: true}");
    finding(
        &doc,
        "honua.attachments",
        Severity::Error,
        pos_in(&doc, "attachments:", "true}"),
        "Layer 'roads' cannot expose attachment links for OGC because attachments are disabled.",
    );
}

#[test]
fn rule_6_raster_sources() {
    let raster = |r: &str| format!("{BASE}rasterDatasets:\n  - id: dem\n    serviceId: transport\n{r}");
    no_errors(&raster("    source: {type: cog, uri: \"s3://rasters/dem.tif\"}\n"));
    no_errors(&raster("    source: {type: GeoTIFF, uri: /data/dem.tif}\n"));

    let doc = raster("    title: Elevation\n");
    finding(
        &doc,
        "honua.raster_source",
        Severity::Error,
        pos(&doc, "id: dem"),
        "Raster dataset 'dem' must include a source definition.",
    );
    let doc = raster("    source: {type: png, uri: /data/dem.png}\n");
    finding(
        &doc,
        "honua.raster_source",
        Severity::Error,
        pos(&doc, "png,"),
        "Raster dataset 'dem' source type 'png' is not supported. Supported types: cloud-optimized-geotiff, cog, geotiff, vector.",
    );
    let doc = raster("    source: {type: cog}\n");
    finding(
        &doc,
        "honua.required",
        Severity::Error,
        pos(&doc, "{type: cog}"),
        "Raster dataset 'dem' source is missing uri.",
    );
}

#[test]
fn rule_7_stored_queries() {
    let queries =
        |q: &str| with("    ogc: {collectionsEnabled: true}\n", &format!("    ogc:\n      storedQueries:\n{q}"));
    no_errors(&queries(
        "        - {id: by-status, title: By status, layerId: roads, filterCql: \"status = 'open'\", parameters: [{name: s, type: string, title: Status}]}\n",
    ));

    let doc = queries("        - {id: q, title: Q, layerId: roads, filterCql: x}\n        - {id: Q, title: Q2, layerId: roads, filterCql: y}\n");
    finding(
        &doc,
        "honua.stored_query",
        Severity::Error,
        pos(&doc, "Q, title: Q2"),
        "Service 'transport' has duplicate stored query id 'Q'.",
    );
    let doc = queries("        - {id: q, title: Q, layerId: roads}\n");
    finding(
        &doc,
        "honua.stored_query",
        Severity::Error,
        pos(&doc, "{id: q"),
        "Service 'transport' stored query 'q' must specify a filterCql expression.",
    );
    let doc = queries("        - {id: q, title: Q, layerId: roads, filterCql: x, parameters: [{name: s, title: S}]}\n");
    finding(
        &doc,
        "honua.stored_query",
        Severity::Error,
        pos(&doc, "{name: s"),
        "Service 'transport' stored query 'q' parameter 's' must have a type.",
    );

    // Empty entries, missing keys and duplicate parameters, each with what to do.
    let doc = queries(
        "        - null\n        - {title: T, layerId: roads, filterCql: x}\n        - {id: p, title: P, layerId: roads, filterCql: x, parameters: [null, {type: string, title: N}, {name: s, type: string, title: S}, {name: S, type: string, title: S2}]}\n",
    );
    let said = |at: (u32, u32), words: &str, what_to_do: &str| {
        let d = finding(&doc, "honua.stored_query", Severity::Error, at, words);
        assert!(d.message.ends_with(what_to_do), "{d:#?}");
    };
    said(pos(&doc, "null"), "Service 'transport' contains a null stored query.", "; remove the empty entry");
    said(pos(&doc, "{title: T"), "Service 'transport' contains a stored query without an id.", "; add `id:`");
    said(
        pos_in(&doc, "parameters:", "null"),
        "Service 'transport' stored query 'p' contains a null parameter.",
        "; remove the empty entry",
    );
    said(
        pos(&doc, "{type: string, title: N}"),
        "Service 'transport' stored query 'p' contains a parameter without a name.",
        "; add `name:`",
    );
    said(
        pos(&doc, "S, type: string, title: S2"),
        "Service 'transport' stored query 'p' has duplicate parameter 'S'.",
        "; parameter names are compared without case",
    );
    let doc = queries("        - {id: q, title: Q, layerId: roads, filterCql: x}\n        - {id: Q, title: Q2, layerId: roads, filterCql: y}\n");
    let d =
        finding(&doc, "honua.stored_query", Severity::Error, pos(&doc, "Q, title: Q2"), "duplicate stored query id");
    assert!(d.message.ends_with("; give each stored query its own id (compared without case)"), "{d:#?}");
}

#[test]
fn what_a_person_obviously_got_wrong_is_reported_at_its_line_and_column() {
    let doc = with("ttl: 3600", "ttl: \"soon\"");
    let d = finding(
        &doc,
        "value.invalid",
        Severity::Error,
        pos(&doc, "\"soon\""),
        "`layers[roads].caching.ttl` must be a whole number",
    );
    assert!(d.message.contains("found the string \"soon\""), "{}", d.message);

    let doc = with("geometryType: LineString", "geometryType: Polygn");
    let d = finding(&doc, "layer.geometry_type", Severity::Error, pos(&doc, "Polygn"), "did you mean `Polygon`?");
    assert!(d.message.contains("Honua loads it but serves the layer wrongly"), "{}", d.message);

    let doc = with("ttl: 3600", "tll: 3600");
    finding(
        &doc,
        "key.unknown",
        Severity::Warning,
        pos(&doc, "tll"),
        "`tll` is not a key Honua reads; did you mean `ttl`?",
    );

    // Types Honua deserializes strictly: a quoted boolean or number makes it refuse the file.
    let doc = with("collectionsEnabled: true", "collectionsEnabled: \"true\"");
    let d = finding(&doc, "type.mismatch", Severity::Error, pos(&doc, "\"true\""), "must be true or false");
    assert!(d.message.contains("Honua would refuse the whole file"), "{}", d.message);
    let doc = with("minScale: 50000", "minScale: \"50000\"");
    finding(&doc, "type.mismatch", Severity::Error, pos(&doc, "\"50000\""), "must be a number");

    // From the command line: exit 1, with the position.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metadata.yaml");
    std::fs::write(&path, with("ttl: 3600", "ttl: \"soon\"")).unwrap();
    let out = common::honua(&["validate", "--path", path.to_str().unwrap()]);
    assert_eq!(common::code(&out), 1);
    let (line, column) = pos(&with("ttl: 3600", "ttl: \"soon\""), "\"soon\"");
    assert!(
        common::stdout(&out).contains(&format!("metadata.yaml:{line}:{column}: error[value.invalid]")),
        "{}",
        common::stdout(&out)
    );
}

#[test]
fn what_the_server_accepts_is_never_refused() {
    // Bounding boxes: the server needs at least 4 numbers; 5 or 8 are unusual, not wrong for Honua.
    let extent = |e: &str| adding("    storage: {table: public.roads}", &format!("    extent: {e}\n"));
    let doc = extent("{bbox: [[-123, 45, -122, 46, 0, 100, 7, 8]]}");
    let d = finding(&doc, "bbox.unusual", Severity::Warning, pos(&doc, "[-123"), "Honua accepts it");
    assert!(d.message.contains("8 numbers"), "{}", d.message);
    let doc = extent("{bbox: [[-123, 45, -122]]}");
    finding(
        &doc,
        "honua.extent",
        Severity::Error,
        pos(&doc, "[-123"),
        "Layer 'roads' extent contains an invalid bounding box.",
    );
    // A flat box is not the list of boxes Honua deserializes.
    let doc = extent("{bbox: [-123, 45, -122, 46]}");
    let d = finding(&doc, "type.mismatch", Severity::Error, pos(&doc, "[-123"), "must be a list of lists");
    assert!(d.message.contains("`[[-180, -90, 180, 90]]`"), "{}", d.message);

    // Dates: what .NET's DateTimeOffset reads loads; only the unreadable is refused.
    let doc = extent("{temporal: {interval: [[\"01/02/2024\", null]]}}");
    finding(&doc, "temporal.not_iso", Severity::Warning, pos(&doc, "\"01/02"), "Honua accepts it");
    no_errors(&doc);
    let doc = extent("{temporal: {interval: [[\"2024-01-01T00:00:00Z\", \"..\"]]}}");
    assert_eq!(validate(&doc), Vec::<Diagnostic>::new());
    let doc = extent("{temporal: {interval: [[\"soon\", null]]}}");
    finding(
        &doc,
        "honua.temporal",
        Severity::Error,
        pos(&doc, "\"soon\""),
        "Layer 'roads' temporal extent boundary 'soon' is not a valid date/time value.",
    );

    // idField missing from fields, serviceType missing: Honua checks neither.
    let doc = with("      - {name: road_id, type: int}\n", "");
    finding(&doc, "field.missing_id_field", Severity::Warning, pos(&doc, "road_id\n"), "Honua accepts it");
    let doc = with("    serviceType: feature\n", "");
    let d = finding(&doc, "schema.required", Severity::Warning, pos(&doc, "id: transport"), "`serviceType`");
    assert!(d.message.contains("the server loads the file without it"), "{}", d.message);
}

#[test]
fn honuas_own_valid_samples_have_no_errors() {
    for entry in std::fs::read_dir(common::shared().join("metadata/valid")).unwrap() {
        let path = entry.unwrap().path();
        let file = honua_gitops::config::load_single_file(&path).unwrap();
        let errors: Vec<_> =
            honua_gitops::validate::validate_single(&file).into_iter().filter(|d| d.is_error()).collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
    }
}

const COMMON: &str = r##"catalog: {id: city}
folders: [{id: f}]
dataSources: [{id: db, provider: postgis, connectionString: "Host=db;Password=${DB_PASSWORD}"}]
services: [{id: transport, folderId: f, serviceType: feature, dataSourceId: db}]
layers:
  - id: roads
    serviceId: transport
    geometryType: LineString
    idField: road_id
    geometryField: geom
    storage: {table: public.roads}
    caching: {enabled: true, ttl: 60}
"##;

#[test]
fn findings_on_a_merged_environment_name_it_in_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let write = |rel: &str, text: &str| {
        let p = dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write("environments/common/metadata.yaml", &COMMON.replace("geometryType: LineString", "geometryType: Linestrng"));
    write("environments/staging/metadata.yaml", "layers:\n  - id: roads\n    caching: {ttl: 120}\n");
    write("environments/production/metadata.yaml", "layers:\n  - id: roads\n    caching: {ttl: \"an hour\"}\n");
    let root = dir.path().to_str().unwrap();

    let out = common::honua(&["validate", "--path", root, "--format", "json"]);
    assert_eq!(common::code(&out), 1);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let by_code = |code: &str| list.as_array().unwrap().iter().find(|d| d["code"] == code).cloned().unwrap();
    // The common file's mistake is seen in both environments, reported once naming both.
    let common_finding = by_code("layer.geometry_type");
    assert_eq!(common_finding["environments"], serde_json::json!(["production", "staging"]));
    assert!(common_finding["file"].as_str().unwrap().ends_with("environments/common/metadata.yaml"));
    // The overlay's mistake belongs to production alone, at the overlay's line.
    let overlay = by_code("value.invalid");
    assert_eq!(overlay["environments"], serde_json::json!(["production"]));
    assert_eq!((overlay["line"].as_u64(), overlay["column"].as_u64()), (Some(3), Some(20)));

    let text = common::stdout(&common::honua(&["validate", "--path", root]));
    assert!(text.contains("(in environments production, staging)"), "{text}");
    assert!(text.contains("environments/production/metadata.yaml:3:20: error[value.invalid]"), "{text}");
    assert!(text.contains("(in environment production)"), "{text}");

    // One overlay file is validated as its environment merged with common/: no false "missing" errors.
    write("environments/common/metadata.yaml", COMMON);
    let overlay = dir.path().join("environments/staging/metadata.yaml");
    let out = common::honua(&["validate", "--path", overlay.to_str().unwrap()]);
    let text = common::stdout(&out);
    assert_eq!(common::code(&out), 0, "{text}");
    assert!(text.contains("validating environment `staging` as merged with environments/common/"), "{text}");
    assert!(text.contains("valid (0 errors, 0 warnings)"), "{text}");
    let out = common::honua(&[
        "validate",
        "--path",
        dir.path().join("environments/production/metadata.yaml").to_str().unwrap(),
    ]);
    assert_eq!(common::code(&out), 1);
    assert!(!common::stdout(&out).contains("staging"), "{}", common::stdout(&out));
}
