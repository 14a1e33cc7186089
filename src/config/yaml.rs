//! Reads one YAML or JSON file into a [`Node`] tree with real line:column positions, within hard limits.
//!
//! The tree is built straight from saphyr-parser's event stream (the parser under serde-saphyr): going
//! through serde with a `Spanned` wrapper per node cost 2-3× the parse itself on large catalogues.
//! JSON is read by the same parser (JSON is YAML 1.2 flow syntax), so both formats get positions.
//! Scalars resolve by the YAML 1.2 core schema (`NO` and `on` stay strings). The limits keep hostile
//! input cheap: a file-size cap checked before reading, a node budget, a nesting limit, and a cap on the
//! nodes aliases may copy, so an alias bomb fails fast instead of expanding.

use std::collections::{HashMap, HashSet};
use std::fmt;

use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};

use super::node::{Entry, FileId, Loc, Map, Node, Text, Value};

/// Largest config file accepted. Real metadata for 10,000 layers is ~7-15 MB.
pub const MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;
/// Most YAML nodes (mappings, sequences, scalars) one file may hold: ~8× a 10,000-layer catalogue.
pub const MAX_NODES: usize = 4_000_000;
/// Most nodes aliases may copy across a file; configs use aliases sparingly, bombs use millions.
pub const MAX_ALIAS_REPLAY: usize = 200_000;
/// Deepest nesting accepted. Honua's metadata is under ten levels deep; the bound keeps every recursive
/// walk over a document (schema validation, layering, diff, rendering) shallow, and a plan that quotes
/// the deepest value still reads back through serde_json, which refuses nesting beyond 128.
pub const MAX_DEPTH: usize = 64;

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

/// A container being built.
enum Frame {
    Seq { loc: Loc, anchor: usize, items: Vec<Node> },
    Map(MapFrame),
}

struct MapFrame {
    loc: Loc,
    anchor: usize,
    entries: Vec<Entry>,
    /// The key read, waiting for its value; `merge` when it is the YAML merge key `<<`.
    key: Option<(Text, Loc, bool)>,
    /// Mappings merged in with `<<`; explicit keys win over them whatever the order.
    merges: Vec<Node>,
    /// Built once a mapping is large, so duplicate detection stays linear.
    index: Option<HashSet<Text>>,
}

impl MapFrame {
    fn contains(&mut self, key: &str) -> bool {
        if self.entries.len() < 32 {
            return self.entries.iter().any(|e| e.key == key);
        }
        let entries = &self.entries;
        self.index.get_or_insert_with(|| entries.iter().map(|e| e.key.clone()).collect()).contains(key)
    }

    fn push(&mut self, entry: Entry) {
        if let Some(index) = &mut self.index {
            index.insert(entry.key.clone());
        }
        self.entries.push(entry);
    }

    fn finish(mut self) -> Node {
        for merged in std::mem::take(&mut self.merges) {
            let sources: Vec<Node> = match merged.value {
                Value::Map(_) => vec![merged],
                Value::Seq(items) => items,
                _ => Vec::new(),
            };
            for source in sources {
                if let Value::Map(m) = source.value {
                    for e in m.entries {
                        if !self.contains(&e.key) {
                            self.push(e);
                        }
                    }
                }
            }
        }
        Node { loc: self.loc, value: Value::Map(Map { entries: self.entries }) }
    }
}

struct Builder {
    file: FileId,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    nodes: usize,
    replayed: usize,
}

fn err(at: Loc, message: impl Into<String>) -> ParseError {
    ParseError { line: at.line.max(1), column: at.column.max(1), message: message.into() }
}

impl Builder {
    fn loc(&self, span: &Span) -> Loc {
        Loc { file: self.file, line: span.start.line() as u32, column: span.start.col() as u32 + 1 }
    }

    fn count(&mut self, at: Loc, n: usize) -> Result<(), ParseError> {
        self.nodes += n;
        if self.nodes > MAX_NODES {
            return Err(err(at, format!("node budget exceeded: more than {MAX_NODES} YAML nodes")));
        }
        Ok(())
    }

    /// Whether the innermost container is a mapping waiting for a key.
    fn expects_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map(m)) if m.key.is_none())
    }

    /// Attaches a finished value to its parent (or makes it the document).
    fn complete(&mut self, node: Node, anchor: usize) -> Result<(), ParseError> {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map(map)) => match map.key.take() {
                None => {
                    let key = match node.value {
                        Value::Str(s) => s,
                        Value::Int(i) => Text::from(i.to_string()),
                        Value::Float(f) => Text::from(f.to_string()),
                        Value::Bool(b) => Text::from(b.to_string()),
                        Value::Null => Text::from("null"),
                        Value::Seq(_) | Value::Map(_) => {
                            return Err(err(node.loc, "mapping keys must be plain strings, not lists or mappings"))
                        }
                    };
                    map.key = Some((key, node.loc, false));
                }
                Some((_, _, true)) => map.merges.push(node),
                Some((key, key_loc, false)) => {
                    if map.contains(&key) {
                        return Err(err(key_loc, format!("duplicate key `{key}` in this mapping; keep one of them")));
                    }
                    map.push(Entry { key, key_loc, value: node });
                }
            },
        }
        Ok(())
    }

    fn scalar(
        &mut self,
        text: &str,
        style: ScalarStyle,
        anchor: usize,
        tag: Option<&Tag>,
        at: Loc,
    ) -> Result<(), ParseError> {
        self.count(at, 1)?;
        if self.expects_key() {
            // Keys are names: kept as written, never resolved (`1:` is the key "1", `<<:` merges).
            if style == ScalarStyle::Plain && text == "<<" {
                if let Some(Frame::Map(map)) = self.stack.last_mut() {
                    map.key = Some((text.into(), at, true));
                }
                return Ok(());
            }
            return self.complete(Node { loc: at, value: Value::Str(text.into()) }, anchor);
        }
        let value = match tag.filter(|t| t.is_yaml_core_schema()).map(|t| t.suffix.as_str()) {
            Some("str") => Value::Str(text.into()),
            Some("binary") => return Err(err(at, "binary (!!binary) values are not supported in Honua configuration")),
            _ if style != ScalarStyle::Plain => Value::Str(text.into()),
            _ => resolve_plain(text),
        };
        self.complete(Node { loc: at, value }, anchor)
    }
}

/// YAML 1.2 core schema resolution of a plain scalar.
fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Value::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    let bytes = text.as_bytes();
    let first = bytes[0];
    if !(first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.')) {
        return Value::Str(text.into());
    }
    if let Some(hex) = text.strip_prefix("0x") {
        if let Ok(i) = i64::from_str_radix(hex, 16) {
            return Value::Int(i);
        }
    }
    if let Some(oct) = text.strip_prefix("0o") {
        if let Ok(i) = i64::from_str_radix(oct, 8) {
            return Value::Int(i);
        }
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<i64>() {
            Ok(i) => Value::Int(i),
            Err(_) => text.parse::<f64>().map(Value::Float).unwrap_or_else(|_| Value::Str(text.into())),
        };
    }
    // YAML floats: digits with a dot and/or an exponent; Rust's parser also takes "inf"/"nan", which
    // YAML spells differently, so those are excluded by the character check.
    if digits.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
        && digits.bytes().any(|b| b.is_ascii_digit())
    {
        if let Ok(f) = text.parse::<f64>() {
            return Value::Float(f);
        }
    }
    Value::Str(text.into())
}

/// Parses one document. An empty file is `Value::Null` at 1:1.
pub fn parse(text: &str, file: FileId) -> Result<Node, ParseError> {
    let mut b = Builder { file, stack: Vec::new(), anchors: HashMap::new(), root: None, nodes: 0, replayed: 0 };
    let mut documents = 0;
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| {
            // From the parser's character index, counting lines at `\n` as every other position and the
            // quoted source do: the parser's own line counts a lone `\r` too, and could point past the end.
            let byte = text.char_indices().nth(e.marker().index()).map_or(text.len(), |(at, _)| at);
            let (line, column) = line_col_of_byte(text.as_bytes(), byte);
            ParseError { line, column, message: e.info().to_string() }
        })?;
        let at = b.loc(&span);
        match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(err(
                        at,
                        "this file holds more than one YAML document (`---`); keep one document per file",
                    ));
                }
            }
            Event::Scalar(value, style, anchor, tag) => b.scalar(&value, style, anchor, tag.as_deref(), at)?,
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                b.count(at, 1)?;
                if b.stack.len() >= MAX_DEPTH {
                    return Err(err(at, format!("nesting limit exceeded: more than {MAX_DEPTH} levels")));
                }
                b.stack.push(if matches!(event, Event::SequenceStart(..)) {
                    Frame::Seq { loc: at, anchor, items: Vec::new() }
                } else {
                    Frame::Map(MapFrame {
                        loc: at,
                        anchor,
                        entries: Vec::new(),
                        key: None,
                        merges: Vec::new(),
                        index: None,
                    })
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match b.stack.pop() {
                    Some(Frame::Seq { loc, anchor, items }) => (Node { loc, value: Value::Seq(items) }, anchor),
                    Some(Frame::Map(m)) => {
                        let anchor = m.anchor;
                        (m.finish(), anchor)
                    }
                    None => return Err(err(at, "unbalanced YAML structure")),
                };
                b.complete(node, anchor)?;
            }
            Event::Alias(id) => {
                let Some(size) = b.anchors.get(&id).map(Node::count) else {
                    return Err(err(at, "alias to an unknown anchor"));
                };
                b.replayed += size;
                if b.replayed > MAX_ALIAS_REPLAY {
                    return Err(err(
                        at,
                        format!("alias replay limit exceeded: aliases would copy more than {MAX_ALIAS_REPLAY} nodes"),
                    ));
                }
                b.count(at, size)?;
                let mut copy = b.anchors[&id].clone();
                copy.loc = at;
                b.complete(copy, 0)?;
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
    }
    Ok(b.root.unwrap_or(Node { loc: Loc { file, line: 1, column: 1 }, value: Value::Null }))
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
    fn core_schema_scalars() {
        let n = p("a: 12\nb: -3\nc: 1.5\nd: 1e3\ne: ~\nf: 0x1F\ng: .inf\nh: \"12\"\ni: 1.2.3\nj: 99999999999999999999\nk: !!str 7\nl: '-'\nm: +5\n");
        let v = n.to_json();
        assert_eq!(v["a"], 12);
        assert_eq!(v["b"], -3);
        assert_eq!(v["c"], 1.5);
        assert_eq!(v["d"], 1000.0);
        assert!(v["e"].is_null());
        assert_eq!(v["f"], 31);
        assert!(n.get("g").unwrap().as_f64().unwrap().is_infinite());
        assert_eq!(v["h"], "12");
        assert_eq!(v["i"], "1.2.3");
        assert_eq!(v["j"], 1e20);
        assert_eq!(v["k"], "7");
        assert_eq!(v["l"], "-");
        assert_eq!(v["m"], 5);
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let n = p("base: &b {ttl: 60, enabled: true}\nlayer:\n  <<: *b\n  ttl: 3600\ncopy: *b\n1: numeric key\n");
        let v = n.to_json();
        assert_eq!(v["layer"], serde_json::json!({"ttl": 3600, "enabled": true}));
        assert_eq!(v["copy"], serde_json::json!({"ttl": 60, "enabled": true}));
        assert_eq!(v["1"], "numeric key");
        assert_eq!(n.get("copy").unwrap().loc.line, 5, "an alias is located where it is used");
    }

    #[test]
    fn several_documents_and_deep_nesting_are_refused() {
        assert!(parse("a: 1\n---\nb: 2\n", FileId(0)).unwrap_err().message.contains("more than one"));
        let deep = "[".repeat(MAX_DEPTH + 5) + &"]".repeat(MAX_DEPTH + 5);
        assert!(parse(&deep, FileId(0)).unwrap_err().message.contains("nesting"));
    }

    #[test]
    fn empty_file_is_null() {
        assert_eq!(p("\n# only a comment\n").value, Value::Null);
    }
}
