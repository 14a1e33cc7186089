//! The metadata document as Honua's JSON-era server reads it: every key it knows and the type it
//! deserializes that key into.
//!
//! Followed: `src/Honua.Server.Core/Metadata/JsonMetadataProvider.cs` and `JsonMetadataLoader.cs` at
//! Honua.Server f210059 (the `*Document` classes and the `System.Text.Json` options:
//! `PropertyNameCaseInsensitive`, no number handling, so a string where an `int?` belongs fails the
//! whole load). Keys Honua's embedded JSON schema describes but this provider does not read
//! (`iso19115`, `stac`, `esri`, the OGC switches and `storedQueries`) are known too: they are Honua's
//! vocabulary, read by its other providers. A layer's `caching {enabled, ttl}` comes from Honua's GitOps
//! sample; the JSON-era server ignores it (README, "Validation").
//!
//! Two kinds of finding come from here:
//! - a value of the wrong type is an error: Honua refuses the file ("Metadata file contains invalid
//!   JSON");
//! - a key Honua does not read is a warning at the key: Honua ignores it, so a typo silently does
//!   nothing on the server, which is what a reviewer needs to be told.
//!
//! The walk follows this table, whose depth is fixed, so it never recurses deeper than the model.

use crate::config::dialect::place;
use crate::config::node::{Entry, Node, Value};
use crate::config::source::SourceMap;
use crate::diagnostic::Diagnostic;

#[derive(Clone, Copy)]
pub enum Ty {
    Str,
    Bool,
    /// A C# `int?`: a whole number within 32 bits.
    Int,
    /// An `int` counting seconds or items: whole and not negative.
    Count,
    /// A C# `double?`.
    Num,
    List(&'static Ty),
    Obj(&'static Object),
    /// `Dictionary<string, string?>`: any keys, string (or null) values.
    StrMap,
    /// Honua vocabulary the JSON-era server does not deserialize (ISO 19115, STAC, Esri): not looked into.
    Opaque,
    /// Honua vocabulary the JSON-era server skips (a layer's `caching`, the OGC switches): checked, but a
    /// wrong value there does not make Honua refuse the file (code `value.invalid`).
    Unread(&'static Ty),
}

/// A mapping Honua reads, named for messages ("a layer's `caching`").
pub struct Object {
    pub what: &'static str,
    pub keys: &'static [(&'static str, Ty)],
}

const STR_LIST: Ty = Ty::List(&Ty::Str);
const NUM_LIST: Ty = Ty::List(&Ty::Num);

const LINK: Object =
    Object { what: "a link", keys: &[("href", Ty::Str), ("rel", Ty::Str), ("type", Ty::Str), ("title", Ty::Str)] };
const LINKS: Ty = Ty::List(&Ty::Obj(&LINK));

const CONTACT: Object = Object {
    what: "a contact",
    keys: &[
        ("name", Ty::Str),
        ("email", Ty::Str),
        ("organization", Ty::Str),
        ("phone", Ty::Str),
        ("url", Ty::Str),
        ("role", Ty::Str),
    ],
};
const LICENSE: Object = Object { what: "a license", keys: &[("name", Ty::Str), ("url", Ty::Str)] };
/// `List<double[]>`: a list of boxes.
const BBOXES: Ty = Ty::List(&NUM_LIST);
/// `List<string?[]>`: a list of [start, end] pairs.
const INTERVALS: Ty = Ty::List(&STR_LIST);
const SPATIAL_EXTENT: Object = Object { what: "a spatial extent", keys: &[("bbox", BBOXES), ("crs", Ty::Str)] };
const TEMPORAL_COLLECTION: Object =
    Object { what: "a temporal extent", keys: &[("interval", INTERVALS), ("trs", Ty::Str)] };
const CATALOG_EXTENT: Object = Object {
    what: "the catalog's `extents`",
    keys: &[("spatial", Ty::Obj(&SPATIAL_EXTENT)), ("temporal", Ty::Obj(&TEMPORAL_COLLECTION))],
};
const TEMPORAL_RANGE: Object = Object { what: "a temporal extent", keys: &[("start", Ty::Str), ("end", Ty::Str)] };
const CATALOG_ENTRY: Object = Object {
    what: "a catalog entry",
    keys: &[
        ("summary", Ty::Str),
        ("keywords", STR_LIST),
        ("themes", STR_LIST),
        ("contacts", Ty::List(&Ty::Obj(&CONTACT))),
        ("links", LINKS),
        ("thumbnail", Ty::Str),
        ("ordering", Ty::Int),
        ("spatialExtent", Ty::Obj(&SPATIAL_EXTENT)),
        ("temporalExtent", Ty::Obj(&TEMPORAL_RANGE)),
    ],
};

const CORS: Object = Object {
    what: "the CORS settings",
    keys: &[
        ("enabled", Ty::Bool),
        ("allowedOrigins", STR_LIST),
        ("allowedMethods", STR_LIST),
        ("allowedHeaders", STR_LIST),
        ("exposedHeaders", STR_LIST),
        ("allowCredentials", Ty::Bool),
        ("maxAgeSeconds", Ty::Int),
    ],
};
const RBAC_ROLE: Object =
    Object { what: "a role", keys: &[("id", Ty::Str), ("name", Ty::Str), ("permissions", STR_LIST)] };
const SERVER: Object = Object {
    what: "`server`",
    keys: &[
        ("allowedHosts", STR_LIST),
        ("cors", Ty::Obj(&CORS)),
        ("security", Ty::Obj(&Object { what: "`server.security`", keys: &[("allowedRasterDirectories", STR_LIST)] })),
        (
            "rbac",
            Ty::Obj(&Object {
                what: "`server.rbac`",
                keys: &[("enabled", Ty::Bool), ("roles", Ty::List(&Ty::Obj(&RBAC_ROLE)))],
            }),
        ),
    ],
};

const CATALOG: Object = Object {
    what: "`catalog`",
    keys: &[
        ("id", Ty::Str),
        ("title", Ty::Str),
        ("description", Ty::Str),
        ("version", Ty::Str),
        ("publisher", Ty::Str),
        ("keywords", STR_LIST),
        ("themeCategories", STR_LIST),
        ("links", LINKS),
        ("contact", Ty::Obj(&CONTACT)),
        ("license", Ty::Obj(&LICENSE)),
        ("extents", Ty::Obj(&CATALOG_EXTENT)),
    ],
};

const FOLDER: Object = Object { what: "a folder", keys: &[("id", Ty::Str), ("title", Ty::Str), ("order", Ty::Int)] };

const DATA_SOURCE: Object =
    Object { what: "a data source", keys: &[("id", Ty::Str), ("provider", Ty::Str), ("connectionString", Ty::Str)] };

const STORED_QUERY: Object = Object {
    what: "a stored query",
    keys: &[
        ("id", Ty::Str),
        ("title", Ty::Str),
        ("abstract", Ty::Str),
        ("layerId", Ty::Str),
        ("filterCql", Ty::Str),
        // Parameters are checked by the server rule (name, type, title), not key by key.
        ("parameters", Ty::List(&Ty::Opaque)),
    ],
};
const OGC_SERVICE: Object = Object {
    what: "a service's `ogc`",
    keys: &[
        ("collectionsEnabled", Ty::Bool),
        ("itemLimit", Ty::Int),
        ("defaultCrs", Ty::Str),
        ("additionalCrs", STR_LIST),
        ("conformanceClasses", STR_LIST),
        // In Honua's schema, not in the JSON-era document:
        ("wfsEnabled", Ty::Unread(&Ty::Bool)),
        ("wmsEnabled", Ty::Unread(&Ty::Bool)),
        ("wmtsEnabled", Ty::Unread(&Ty::Bool)),
        ("wcsEnabled", Ty::Unread(&Ty::Bool)),
        ("cswEnabled", Ty::Unread(&Ty::Bool)),
        ("storedQueries", Ty::Unread(&Ty::List(&Ty::Obj(&STORED_QUERY)))),
    ],
};
const SERVICE: Object = Object {
    what: "a service",
    keys: &[
        ("id", Ty::Str),
        ("title", Ty::Str),
        ("folderId", Ty::Str),
        ("serviceType", Ty::Str),
        ("dataSourceId", Ty::Str),
        ("enabled", Ty::Bool),
        ("description", Ty::Str),
        ("keywords", STR_LIST),
        ("links", LINKS),
        ("catalog", Ty::Obj(&CATALOG_ENTRY)),
        ("ogc", Ty::Obj(&OGC_SERVICE)),
        ("esri", Ty::Opaque),
    ],
};

const LAYER_EXTENT: Object = Object {
    what: "a layer's `extent`",
    keys: &[("bbox", BBOXES), ("crs", Ty::Str), ("temporal", Ty::Obj(&TEMPORAL_COLLECTION))],
};
const LAYER_QUERY: Object = Object {
    what: "a layer's `query`",
    keys: &[
        ("maxRecordCount", Ty::Int),
        ("supportedParameters", STR_LIST),
        ("autoFilter", Ty::Obj(&Object { what: "`query.autoFilter`", keys: &[("cql", Ty::Str)] })),
    ],
};
const LAYER_STORAGE: Object = Object {
    what: "a layer's `storage`",
    keys: &[
        ("table", Ty::Str),
        ("geometryColumn", Ty::Str),
        ("primaryKey", Ty::Str),
        ("temporalColumn", Ty::Str),
        ("srid", Ty::Int),
        ("crs", Ty::Str),
    ],
};
const FIELD: Object = Object {
    what: "a field",
    keys: &[
        ("name", Ty::Str),
        ("alias", Ty::Str),
        ("type", Ty::Str),
        ("storageType", Ty::Str),
        ("nullable", Ty::Bool),
        ("editable", Ty::Bool),
        ("maxLength", Ty::Int),
        ("precision", Ty::Int),
        ("scale", Ty::Int),
    ],
};
const STYLE_REFS: Object =
    Object { what: "a layer's `styles`", keys: &[("defaultStyleId", Ty::Str), ("styleIds", STR_LIST)] };
const EDITING: Object = Object {
    what: "a layer's `editing`",
    keys: &[
        (
            "capabilities",
            Ty::Obj(&Object {
                what: "`editing.capabilities`",
                keys: &[
                    ("allowAdd", Ty::Bool),
                    ("allowUpdate", Ty::Bool),
                    ("allowDelete", Ty::Bool),
                    ("requireAuthentication", Ty::Bool),
                    ("allowedRoles", STR_LIST),
                ],
            }),
        ),
        (
            "constraints",
            Ty::Obj(&Object {
                what: "`editing.constraints`",
                keys: &[("immutableFields", STR_LIST), ("requiredFields", STR_LIST), ("defaultValues", Ty::StrMap)],
            }),
        ),
    ],
};
const ATTACHMENTS: Object = Object {
    what: "a layer's `attachments`",
    keys: &[
        ("enabled", Ty::Bool),
        ("storageProfileId", Ty::Str),
        ("maxSizeMiB", Ty::Int),
        ("allowedContentTypes", STR_LIST),
        ("disallowedContentTypes", STR_LIST),
        ("requireGlobalIds", Ty::Bool),
        ("returnPresignedUrls", Ty::Bool),
        ("exposeOgcLinks", Ty::Bool),
    ],
};
const RELATIONSHIP: Object = Object {
    what: "a relationship",
    keys: &[
        ("id", Ty::Int),
        ("role", Ty::Str),
        ("cardinality", Ty::Str),
        ("relatedLayerId", Ty::Str),
        ("relatedTableId", Ty::Str),
        ("keyField", Ty::Str),
        ("relatedKeyField", Ty::Str),
        ("composite", Ty::Bool),
        ("returnGeometry", Ty::Bool),
        ("semantics", Ty::Str),
    ],
};
/// Honua's GitOps sample: `caching: {enabled: true, ttl: 3600}` (seconds).
const CACHING: Object = Object { what: "a layer's `caching`", keys: &[("enabled", Ty::Bool), ("ttl", Ty::Count)] };
const LAYER: Object = Object {
    what: "a layer",
    keys: &[
        ("id", Ty::Str),
        ("serviceId", Ty::Str),
        ("title", Ty::Str),
        ("description", Ty::Str),
        ("geometryType", Ty::Str),
        ("idField", Ty::Str),
        ("displayField", Ty::Str),
        ("geometryField", Ty::Str),
        ("crs", STR_LIST),
        ("keywords", STR_LIST),
        ("links", LINKS),
        ("catalog", Ty::Obj(&CATALOG_ENTRY)),
        ("extent", Ty::Obj(&LAYER_EXTENT)),
        ("query", Ty::Obj(&LAYER_QUERY)),
        ("storage", Ty::Obj(&LAYER_STORAGE)),
        ("fields", Ty::List(&Ty::Obj(&FIELD))),
        ("itemType", Ty::Str),
        ("styles", Ty::Obj(&STYLE_REFS)),
        ("editing", Ty::Obj(&EDITING)),
        ("attachments", Ty::Obj(&ATTACHMENTS)),
        ("relationships", Ty::List(&Ty::Obj(&RELATIONSHIP))),
        ("minScale", Ty::Num),
        ("maxScale", Ty::Num),
        ("caching", Ty::Unread(&Ty::Obj(&CACHING))),
        ("iso19115", Ty::Opaque),
        ("stac", Ty::Opaque),
    ],
};

const RASTER_SOURCE: Object = Object {
    what: "a raster's `source`",
    keys: &[
        ("type", Ty::Str),
        ("uri", Ty::Str),
        ("mediaType", Ty::Str),
        ("credentialsId", Ty::Str),
        ("disableHttpRangeRequests", Ty::Bool),
    ],
};
const RASTER: Object = Object {
    what: "a raster dataset",
    keys: &[
        ("id", Ty::Str),
        ("title", Ty::Str),
        ("description", Ty::Str),
        ("serviceId", Ty::Str),
        ("layerId", Ty::Str),
        ("keywords", STR_LIST),
        ("crs", STR_LIST),
        ("catalog", Ty::Obj(&CATALOG_ENTRY)),
        ("extent", Ty::Obj(&LAYER_EXTENT)),
        ("source", Ty::Obj(&RASTER_SOURCE)),
        ("styles", Ty::Obj(&STYLE_REFS)),
        (
            "cache",
            Ty::Obj(&Object {
                what: "a raster's `cache`",
                keys: &[("enabled", Ty::Bool), ("preseed", Ty::Bool), ("zoomLevels", Ty::List(&Ty::Int))],
            }),
        ),
        ("stac", Ty::Opaque),
    ],
};

const SYMBOL: Object = Object {
    what: "a symbol",
    keys: &[
        ("label", Ty::Str),
        ("description", Ty::Str),
        ("symbolType", Ty::Str),
        ("fillColor", Ty::Str),
        ("strokeColor", Ty::Str),
        ("strokeWidth", Ty::Num),
        ("strokeStyle", Ty::Str),
        ("iconHref", Ty::Str),
        ("size", Ty::Num),
        ("opacity", Ty::Num),
    ],
};
const STYLE_RULE: Object = Object {
    what: "a style rule",
    keys: &[
        ("id", Ty::Str),
        ("default", Ty::Bool),
        ("label", Ty::Str),
        ("minScale", Ty::Num),
        ("maxScale", Ty::Num),
        ("filter", Ty::Obj(&Object { what: "a rule's `filter`", keys: &[("field", Ty::Str), ("value", Ty::Str)] })),
        ("symbolizer", Ty::Obj(&SYMBOL)),
    ],
};
const UNIQUE_VALUE: Object = Object {
    what: "`uniqueValue`",
    keys: &[
        ("field", Ty::Str),
        ("defaultSymbol", Ty::Obj(&SYMBOL)),
        (
            "classes",
            Ty::List(&Ty::Obj(&Object {
                what: "a unique-value class",
                keys: &[("value", Ty::Str), ("symbol", Ty::Obj(&SYMBOL))],
            })),
        ),
    ],
};
const STYLE: Object = Object {
    what: "a style",
    keys: &[
        ("id", Ty::Str),
        ("title", Ty::Str),
        ("renderer", Ty::Str),
        ("format", Ty::Str),
        ("geometryType", Ty::Str),
        ("rules", Ty::List(&Ty::Obj(&STYLE_RULE))),
        ("simple", Ty::Obj(&SYMBOL)),
        ("uniqueValue", Ty::Obj(&UNIQUE_VALUE)),
    ],
};

/// The whole document (`MetadataDocument`).
pub const DOCUMENT: Object = Object {
    what: "the metadata document",
    keys: &[
        ("server", Ty::Obj(&SERVER)),
        ("catalog", Ty::Obj(&CATALOG)),
        ("folders", Ty::List(&Ty::Obj(&FOLDER))),
        ("services", Ty::List(&Ty::Obj(&SERVICE))),
        ("layers", Ty::List(&Ty::Obj(&LAYER))),
        ("dataSources", Ty::List(&Ty::Obj(&DATA_SOURCE))),
        ("rasterDatasets", Ty::List(&Ty::Obj(&RASTER))),
        ("styles", Ty::List(&Ty::Obj(&STYLE))),
    ],
};

/// One step from the root, for naming a place: `layers[parcels].caching.ttl`.
#[derive(Clone, Copy)]
enum Step<'a> {
    Key(&'a str),
    Item(usize, &'a Node),
}

/// Checks `root` against [`DOCUMENT`]: wrong types are errors, keys Honua does not read are warnings.
pub fn check(root: &Node, sources: &SourceMap, out: &mut Vec<Diagnostic>) {
    let mut path = Vec::with_capacity(8);
    check_node(root, &Ty::Obj(&DOCUMENT), false, &mut path, sources, out);
}

fn check_node<'a>(
    node: &'a Node,
    ty: &Ty,
    unread: bool,
    path: &mut Vec<Step<'a>>,
    sources: &SourceMap,
    out: &mut Vec<Diagnostic>,
) {
    // Null is what C# reads for every nullable property and reference type: the property stays unset.
    if matches!(node.value, Value::Null) {
        return;
    }
    let wrong = |expected: &str, hint: &str| {
        let (code, consequence) = if unread {
            ("value.invalid", "the JSON-era server skips this key, so the setting cannot take effect as written")
        } else {
            ("type.mismatch", "Honua would refuse the whole file (\"Metadata file contains invalid JSON\")")
        };
        Diagnostic::error(
            code,
            place(sources, node.loc),
            format!("{} must be {expected}, found {}; {consequence}{hint}", describe(path), found(node)),
        )
    };
    match (ty, &node.value) {
        (Ty::Opaque, _) => {}
        (Ty::Unread(inner), _) => check_node(node, inner, true, path, sources, out),
        (Ty::Str, Value::Str(_)) | (Ty::Bool, Value::Bool(_)) | (Ty::Num, Value::Int(_) | Value::Float(_)) => {}
        (Ty::Str, Value::Int(_) | Value::Float(_) | Value::Bool(_)) => {
            out.push(wrong("a string", "; quote the value"));
        }
        (Ty::Bool, Value::Str(s)) if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") => {
            out.push(wrong("true or false", "; write it without quotes"));
        }
        (Ty::Int, Value::Int(i)) if i32::try_from(*i).is_ok() => {}
        (Ty::Count, Value::Int(i)) if (0..=i64::from(i32::MAX)).contains(i) => {}
        (Ty::Count, Value::Int(_)) => out.push(wrong("a whole number from 0 to 2147483647", "")),
        (Ty::Int, Value::Int(_)) => out.push(wrong("a whole number that fits in 32 bits", "")),
        (Ty::Int | Ty::Count, _) => out.push(wrong("a whole number", "")),
        // `bbox: [-180, -90, 180, 90]` where Honua reads a list of boxes: one finding, not one per number.
        (Ty::List(Ty::List(_)), Value::Seq(items))
            if !items.is_empty()
                && items.iter().all(|i| !matches!(i.value, Value::Seq(_) | Value::Map(_) | Value::Null)) =>
        {
            out.push(wrong("a list of lists", list_hint(path)));
        }
        (Ty::List(item), Value::Seq(items)) => {
            for (i, child) in items.iter().enumerate() {
                path.push(Step::Item(i, child));
                check_node(child, item, unread, path, sources, out);
                path.pop();
            }
        }
        (Ty::Obj(object), Value::Map(map)) => {
            for entry in &map.entries {
                path.push(Step::Key(&entry.key));
                match lookup(object, &entry.key) {
                    Some((name, child_ty)) => {
                        if name != entry.key.as_str() {
                            out.push(Diagnostic::warning(
                                "key.case",
                                place(sources, entry.key_loc),
                                format!(
                                    "`{}` is read by Honua as `{name}` (it ignores case), but this project compares keys as written: write `{name}`",
                                    entry.key
                                ),
                            ));
                        }
                        check_node(&entry.value, child_ty, unread, path, sources, out);
                    }
                    None => out.push(unknown_key(object, entry, path, sources)),
                }
                path.pop();
            }
        }
        (Ty::StrMap, Value::Map(map)) => {
            for entry in &map.entries {
                path.push(Step::Key(&entry.key));
                check_node(&entry.value, &Ty::Str, unread, path, sources, out);
                path.pop();
            }
        }
        (Ty::Str | Ty::Bool | Ty::Num, _) => {
            let expected = match ty {
                Ty::Str => "a string",
                Ty::Bool => "true or false",
                _ => "a number",
            };
            out.push(wrong(expected, ""));
        }
        (Ty::List(_), _) => out.push(wrong("a list", list_hint(path))),
        (Ty::Obj(object), _) => {
            out.push(wrong(&format!("a mapping ({})", object.what), ""));
        }
        (Ty::StrMap, _) => out.push(wrong("a mapping of names to strings", "")),
    }
}

/// Keys are compared without case, as Honua's deserializer does.
fn lookup<'t>(object: &'t Object, key: &str) -> Option<(&'t str, &'t Ty)> {
    object.keys.iter().find(|(name, _)| name.eq_ignore_ascii_case(key)).map(|(name, ty)| (*name, ty))
}

fn unknown_key(object: &Object, entry: &Entry, path: &[Step<'_>], sources: &SourceMap) -> Diagnostic {
    let key = entry.key.as_str();
    let owner = describe(&path[..path.len() - 1]);
    // `extent: {spatial: {bbox: …}}` where Honua reads `extent: {bbox: …}`: the keys belong one level up.
    let belongs_above: Vec<String> = entry
        .value
        .as_map()
        .map(|m| {
            m.entries.iter().filter(|e| lookup(object, &e.key).is_some()).map(|e| format!("`{}`", e.key)).collect()
        })
        .unwrap_or_default();
    let message = if let Some(near) = nearest(object, key) {
        format!(
            "`{key}` is not a key Honua reads; did you mean `{near}`? (in {owner}; Honua ignores unknown keys, so this setting would do nothing)"
        )
    } else if !belongs_above.is_empty() {
        format!(
            "`{key}` is not a key Honua reads in {} ({owner}), so Honua ignores {} under it; write them directly in {owner}",
            object.what,
            belongs_above.join(", ")
        )
    } else {
        let known: Vec<String> = object.keys.iter().map(|(k, _)| format!("`{k}`")).collect();
        format!(
            "`{key}` is not a key Honua reads in {} ({owner}); Honua ignores it, so it would do nothing. Keys Honua reads here: {}",
            object.what,
            known.join(", ")
        )
    };
    Diagnostic::warning("key.unknown", place(sources, entry.key_loc), message)
}

/// The known key closest to a typo, when it is close enough to be what was meant.
fn nearest(object: &Object, key: &str) -> Option<&'static str> {
    let known: Vec<&'static str> = object.keys.iter().map(|(name, _)| *name).collect();
    crate::config::nearest(key, &known)
}

fn list_hint(path: &[Step<'_>]) -> &'static str {
    match path.last() {
        Some(Step::Key(k)) if k.eq_ignore_ascii_case("bbox") => {
            "; Honua reads `bbox` as a list of boxes, e.g. `[[-180, -90, 180, 90]]`"
        }
        Some(Step::Key(k)) if k.eq_ignore_ascii_case("interval") => {
            "; Honua reads `interval` as a list of [start, end] pairs, e.g. `[[\"2024-01-01T00:00:00Z\", null]]`"
        }
        _ => "",
    }
}

/// `layers[parcels].caching.ttl`, or "the metadata document" at the root.
fn describe(path: &[Step<'_>]) -> String {
    if path.is_empty() {
        return "the metadata document".into();
    }
    let mut out = String::from("`");
    for step in path {
        match step {
            Step::Key(k) => {
                if out.len() > 1 {
                    out.push('.');
                }
                out.push_str(k);
            }
            Step::Item(i, node) => {
                match node.get_str("id").or_else(|| node.get_str("name")) {
                    Some(id) => out.push_str(&format!("[{id}]")),
                    None => out.push_str(&format!("[{i}]")),
                };
            }
        }
    }
    out.push('`');
    out
}

fn found(node: &Node) -> String {
    match &node.value {
        Value::Str(s) => {
            let shown: String = s.chars().take(40).collect();
            format!("the string \"{shown}\"")
        }
        Value::Int(i) => format!("the number {i}"),
        Value::Float(f) => format!("the number {f}"),
        Value::Bool(b) => format!("`{b}`"),
        _ => format!("a {}", node.kind()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_find_their_key() {
        assert_eq!(nearest(&CACHING, "tll"), Some("ttl"));
        assert_eq!(nearest(&LAYER, "geometryTyp"), Some("geometryType"));
        assert_eq!(nearest(&LAYER, "idfeild"), Some("idField"));
        assert_eq!(nearest(&CACHING, "colour"), None);
        assert_eq!(nearest(&FIELD, "dataType"), Some("type"));
    }
}
