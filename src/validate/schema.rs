//! Validation against the JSON schema the Honua server embeds (`metadata-schema.json`, draft 2020-12).
//! The server ships the schema but does not hold a file to it at load, so a schema finding is advice:
//! a warning that says the server would accept the file.
//!
//! The schema ships with a flaw: `iso19115Metadata`, `iso19115Contact`, `iso19115ContactInfo`,
//! `stacMetadata` and `stacAsset` sit under `properties` while every `$ref` points at `#/$defs/…`. They are
//! moved to `$defs` before compiling, which is what the refs mean; nothing else is changed.

use std::sync::OnceLock;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::Validator;
use serde_json::Value as Json;

use crate::config::node::Node;
use crate::config::source::SourceMap;
use crate::diagnostic::Diagnostic;

use super::describe_path;
use crate::config::dialect::place;

pub const SCHEMA_JSON: &str = include_str!("metadata-schema.json");
const MISPLACED_DEFS: [&str; 5] =
    ["iso19115Metadata", "iso19115Contact", "iso19115ContactInfo", "stacMetadata", "stacAsset"];

fn validator() -> &'static Validator {
    static VALIDATOR: OnceLock<Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let mut schema: Json = serde_json::from_str(SCHEMA_JSON).expect("embedded schema is JSON");
        let moved: Vec<(String, Json)> = {
            let props = schema["properties"].as_object_mut().expect("schema has properties");
            MISPLACED_DEFS.iter().filter_map(|k| props.remove(*k).map(|v| (k.to_string(), v))).collect()
        };
        let defs = schema["$defs"].as_object_mut().expect("schema has $defs");
        defs.extend(moved);
        jsonschema::draft202012::new(&schema).expect("embedded schema compiles")
    })
}

/// What every schema finding adds: the server itself does not validate against this schema when it
/// loads metadata (what it does check is in `server.rs` and `model.rs`, as errors).
const STRICTER: &str = "Honua's JSON schema asks for this, but the server loads the file without it";

/// Validates an effective metadata document against Honua's schema. Every finding is a warning, located
/// at the node it concerns; `check_metadata` drops those where an error already stands.
pub fn check(root: &Node, sources: &SourceMap, out: &mut Vec<Diagnostic>) {
    let instance = root.to_json();
    for error in validator().iter_errors(&instance) {
        let pointer = error.instance_path().as_str().to_string();
        // Bounding boxes are checked by a precise rule (4 or 6 numbers); the schema's `oneOf` on them
        // only says "matches no alternative".
        if pointer.contains("/bbox") {
            continue;
        }
        let node = root.deepest_at_pointer(&pointer);
        let path = describe_path(root, &pointer);
        let (code, message) = describe(&path, error.kind(), &error.instance().clone(), &pointer);
        out.push(Diagnostic::warning(code, place(sources, node.loc), format!("{message}; {STRICTER}")));
    }
}

fn describe(path: &str, kind: &ValidationErrorKind, instance: &Json, pointer: &str) -> (&'static str, String) {
    let at = if path.is_empty() { "the metadata document".to_string() } else { format!("`{path}`") };
    match kind {
        ValidationErrorKind::Required { property } => {
            let prop = property.as_str().unwrap_or_default();
            let owner = owner_name(path, pointer);
            ("schema.required", format!("{owner} is missing required key `{prop}`{}", required_hint(pointer, prop)))
        }
        ValidationErrorKind::Type { kind } => {
            let expected = match kind {
                TypeKind::Single(t) => t.to_string(),
                TypeKind::Multiple(ts) => ts.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(" or "),
            };
            ("schema.type", format!("{at} must be {}, found {}", article(&expected), json_kind(instance)))
        }
        ValidationErrorKind::Enum { options } => {
            ("schema.enum", format!("{at} must be one of {options}, found {instance}"))
        }
        ValidationErrorKind::MinItems { limit } => (
            "schema.min_items",
            format!("{at} needs at least {limit} item(s), found {}", instance.as_array().map_or(0, Vec::len)),
        ),
        ValidationErrorKind::MinLength { .. } => ("schema.min_length", format!("{at} must not be empty")),
        ValidationErrorKind::Minimum { limit } => {
            ("schema.minimum", format!("{at} must be at least {limit}, found {instance}"))
        }
        ValidationErrorKind::FalseSchema | ValidationErrorKind::AdditionalItems { .. } => {
            ("schema.unexpected", format!("{at} is not allowed here (a temporal interval is exactly [start, end])"))
        }
        other => ("schema.invalid", format!("{at}: {}", other_message(other, instance))),
    }
}

fn other_message(kind: &ValidationErrorKind, instance: &Json) -> String {
    match kind {
        ValidationErrorKind::OneOfNotValid { .. } | ValidationErrorKind::AnyOf { .. } => {
            format!("{instance} does not match any of the allowed forms")
        }
        ValidationErrorKind::Format { format } => format!("{instance} is not a valid {format}"),
        ValidationErrorKind::Maximum { limit } => format!("must be at most {limit}"),
        _ => "does not match the Honua metadata schema".to_string(),
    }
}

/// "layer `parcels`" for `/layers/3`, "`catalog`" for `/catalog`, or the path itself.
fn owner_name(path: &str, pointer: &str) -> String {
    let segments: Vec<&str> = pointer.split('/').skip(1).collect();
    if segments.is_empty() {
        return "the metadata document".into();
    }
    let kind = match segments[0] {
        "layers" => "layer",
        "services" => "service",
        "folders" => "folder",
        "dataSources" => "data source",
        _ => "",
    };
    if segments.len() == 2 && !kind.is_empty() {
        if let Some(id) = path.split_once('[').and_then(|(_, rest)| rest.split_once(']')).map(|(id, _)| id) {
            if id.parse::<usize>().is_err() {
                return format!("{kind} `{id}`");
            }
        }
        return format!("{kind} #{}", segments[1].parse::<usize>().map_or(0, |i| i + 1));
    }
    format!("`{path}`")
}

fn required_hint(pointer: &str, prop: &str) -> &'static str {
    match (pointer.split('/').nth(1), prop) {
        (Some("layers"), "geometryType") => {
            " (the Honua server needs it to serve the layer, e.g. `geometryType: Polygon`)"
        }
        (Some("layers"), "idField") => " (the column that identifies features, e.g. `idField: parcel_id`)",
        (Some("layers"), "geometryField") => " (the geometry column, e.g. `geometryField: geom`)",
        (Some("services"), "folderId") => " (add a `folders:` entry and reference its id)",
        (Some("services"), "dataSourceId") => " (reference an entry of `dataSources:` or `datasources.yaml`)",
        (Some("services"), "serviceType") => " (Honua takes `feature` when it is missing)",
        (None, "catalog") => " (e.g. `catalog: {id: my-catalog, title: …}`)",
        (None, "folders" | "dataSources" | "services" | "layers") => " (an empty list `[]` is allowed)",
        _ => "",
    }
}

fn article(t: &str) -> String {
    match t.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => format!("an {t}"),
        _ => format!("a {t}"),
    }
}

fn json_kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "a mapping",
    }
}
