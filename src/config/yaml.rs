//! Reads one YAML or JSON file into a [`Node`] tree with real line:column positions, within hard limits.
//!
//! JSON is read by the same YAML parser (JSON is YAML 1.2 flow syntax), so both formats get positions.
//! The limits keep hostile input cheap: a file-size cap checked before reading, and serde-saphyr's
//! event/node budget and alias-replay cap, so an alias bomb fails fast instead of expanding.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Budget, DuplicateKeyPolicy, Options, Spanned};

use super::node::{Entry, FileId, Loc, Map, Node, Value};

/// Largest config file accepted. Real metadata for 10,000 layers is ~15 MB.
pub const MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;
/// Most YAML nodes (mappings, sequences, scalars) one file may hold: ~40× a 10,000-layer catalogue.
pub const MAX_NODES: usize = 4_000_000;
/// Most events an alias may replay across a file; configs use aliases sparingly, bombs use millions.
pub const MAX_ALIAS_REPLAY: usize = 200_000;
/// Deepest nesting accepted: metadata is a few levels deep, so this only stops stack attacks.
pub const MAX_DEPTH: usize = 200;

/// Why a file could not be read as a document; the loader turns it into a diagnostic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: u32,
    pub column: u32,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

/// Decodes file bytes: UTF-8 required, a leading BOM tolerated.
pub fn decode(bytes: &[u8]) -> Result<&str, ParseError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let (line, column) = line_col_of_byte(bytes, e.valid_up_to());
        ParseError {
            line,
            column,
            message: "the file is not UTF-8 text (binary content or another encoding); save it as UTF-8".into(),
        }
    })?;
    Ok(text.strip_prefix('\u{feff}').unwrap_or(text))
}

fn line_col_of_byte(bytes: &[u8], offset: usize) -> (u32, u32) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() as u32 + 1;
    let line_start = before.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
    let column = String::from_utf8_lossy(&before[line_start..]).chars().count() as u32 + 1;
    (line, column)
}

/// Parses one document. An empty file is an empty mapping's absence: `Value::Null` at 1:1.
pub fn parse(text: &str, file: FileId) -> Result<Node, ParseError> {
    if text.trim().is_empty() {
        return Ok(Node::new(Loc { file, line: 1, column: 1 }, Value::Null));
    }
    let options = Options {
        budget: Some(Budget {
            max_events: MAX_NODES * 2,
            max_nodes: MAX_NODES,
            max_depth: MAX_DEPTH,
            max_documents: 1,
            max_total_scalar_bytes: MAX_FILE_BYTES as usize,
            ..Budget::default()
        }),
        alias_limits: serde_saphyr::options::AliasLimits {
            max_total_replayed_events: MAX_ALIAS_REPLAY,
            ..Default::default()
        },
        duplicate_keys: DuplicateKeyPolicy::Error,
        // YAML 1.2 semantics: `NO` (Norway) and `on` stay strings.
        strict_booleans: true,
        with_snippet: false,
        ..Options::default()
    };
    let spanned: Spanned<Value> = serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        let (line, column) = e.location().map_or((1, 1), |l| (l.line() as u32, l.column() as u32));
        ParseError { line: line.max(1), column: column.max(1), message: clean_message(&e.to_string()) }
    })?;
    let mut node = located(spanned);
    node.set_file(file);
    Ok(node)
}

/// serde-saphyr prefixes messages with their position; ours is carried separately.
fn clean_message(message: &str) -> String {
    let first = message.lines().next().unwrap_or(message).trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    match first.rsplit_once(" at line ") {
        Some((msg, _)) => msg.to_string(),
        None => first.to_string(),
    }
}

fn located(spanned: Spanned<Value>) -> Node {
    let at = spanned.referenced;
    Node { loc: Loc { file: FileId(0), line: at.line() as u32, column: at.column() as u32 }, value: spanned.value }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Value, E> {
        Ok(i64::try_from(v).map(Value::Int).unwrap_or(Value::Float(v as f64)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v).map(Value::Int).unwrap_or(Value::Float(v as f64)))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Value, E> {
        Ok(i64::try_from(v).map(Value::Int).unwrap_or(Value::Float(v as f64)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Value, E> {
        Err(E::custom("binary (!!binary) values are not supported in Honua configuration"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element::<Spanned<Value>>()? {
            items.push(located(item));
        }
        Ok(Value::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries: Vec<Entry> = Vec::with_capacity(map.size_hint().unwrap_or(0).min(1024));
        while let Some(key) = map.next_key::<Spanned<Value>>()? {
            let key_node = located(key);
            let key = match key_node.value {
                Value::Str(s) => s,
                Value::Int(i) => i.to_string(),
                Value::Float(f) => f.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Null => "null".to_string(),
                Value::Seq(_) | Value::Map(_) => {
                    return Err(de::Error::custom("mapping keys must be plain strings, not lists or mappings"))
                }
            };
            let value = located(map.next_value::<Spanned<Value>>()?);
            entries.push(Entry { key, key_loc: key_node.loc, value });
        }
        Ok(Value::Map(Map { entries }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Node {
        parse(text, FileId(3)).expect("parses")
    }

    #[test]
    fn positions_are_one_based_and_point_at_values() {
        let n = p("catalog:\n  id: demo\nlayers:\n  - id: parcels\n    caching:\n      ttl: 3600\n");
        let layer = &n.get("layers").unwrap().as_seq().unwrap()[0];
        assert_eq!((layer.loc.line, layer.loc.column), (4, 5));
        let ttl = layer.get_path(&["caching", "ttl"]).unwrap();
        assert_eq!(ttl.as_i64(), Some(3600));
        assert_eq!((ttl.loc.line, ttl.loc.column), (6, 12));
        assert_eq!(ttl.loc.file, FileId(3));
        let entry = n.as_map().unwrap().entry("layers").unwrap();
        assert_eq!((entry.key_loc.line, entry.key_loc.column), (3, 1));
    }

    #[test]
    fn json_gets_positions_too() {
        let n = p("{\n  \"catalog\": {\n    \"id\": \"x\"\n  },\n  \"layers\": [\n    {\"id\": 1.5}\n  ]\n}\n");
        let id = n.get("catalog").unwrap().get("id").unwrap();
        assert_eq!((id.loc.line, id.loc.column), (3, 11));
        let layer = &n.get("layers").unwrap().as_seq().unwrap()[0];
        assert_eq!(layer.loc.line, 6);
        assert_eq!(layer.get("id").unwrap().as_f64(), Some(1.5));
    }

    #[test]
    fn json_with_tabs_parses() {
        let n = p("{\n\t\"a\": [1,\n\t\t2]\n}");
        assert_eq!(n.get("a").unwrap().as_seq().unwrap().len(), 2);
    }

    #[test]
    fn yaml_12_booleans() {
        let n = p("country: NO\nflag: true\nswitch: on\n");
        assert_eq!(n.get_str("country"), Some("NO"));
        assert_eq!(n.get("flag").unwrap().as_bool(), Some(true));
        assert_eq!(n.get_str("switch"), Some("on"));
    }

    #[test]
    fn bom_is_tolerated() {
        let text = decode(b"\xef\xbb\xbfcatalog:\n  id: x\n").unwrap();
        assert_eq!(p(text).get("catalog").unwrap().loc.line, 2);
    }

    #[test]
    fn binary_is_refused_with_position() {
        let err = decode(b"a: 1\nb: \xff\xfe\n").unwrap_err();
        assert_eq!((err.line, err.column), (2, 4));
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let err = parse("a:\n  b: [1, 2\n", FileId(0)).unwrap_err();
        assert!(err.line >= 2, "{err}");
        let err = parse("a: 1\na: 2\n", FileId(0)).unwrap_err();
        assert!(err.message.contains("duplicate"), "{err}");
    }

    #[test]
    fn alias_bomb_is_refused_quickly() {
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n",
                p = i - 1
            ));
        }
        let err = parse(&bomb, FileId(0)).unwrap_err();
        assert!(err.message.to_lowercase().contains("alias") || err.message.contains("budget"), "{err}");
    }

    #[test]
    fn empty_file_is_null() {
        assert_eq!(p("\n# only a comment\n").value, Value::Null);
    }
}
