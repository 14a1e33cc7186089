//! A YAML/JSON document tree in which every node remembers where it was written.
//!
//! The config model stays generic (unknown keys must be preserved, rendered and diffed), so metadata is
//! kept as this tree rather than as typed structs; typed questions are answered by small accessors.
//! Locations survive layering, so a finding on the merged environment still points at the file that
//! defined the value.

use std::fmt;

/// Keys and scalar text. Most are short (`id`, `EPSG:4326`, `parcel_id`) and stored inline, so a large
/// catalogue does not cost one heap allocation per key and value.
pub type Text = compact_str::CompactString;

/// Index of a file in the [`SourceMap`](super::source::SourceMap) of one load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FileId(pub u32);

/// A 1-based line and column in one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Loc {
    pub file: FileId,
    pub line: u32,
    pub column: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub loc: Loc,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Text),
    Seq(Vec<Node>),
    Map(Map),
}

/// An ordered mapping: key order is kept so rendered files read like their sources.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Map {
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: Text,
    pub key_loc: Loc,
    pub value: Node,
}

impl Map {
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries.iter().find(|e| e.key == key).map(|e| &e.value)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        self.entries.iter_mut().find(|e| e.key == key).map(|e| &mut e.value)
    }

    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }

    /// Inserts or replaces `key`, keeping the position of an existing key.
    pub fn insert(&mut self, key: impl Into<Text>, key_loc: Loc, value: Node) {
        let key = key.into();
        match self.entries.iter_mut().find(|e| e.key == key) {
            Some(e) => e.value = value,
            None => self.entries.push(Entry { key, key_loc, value }),
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<Entry> {
        let i = self.entries.iter().position(|e| e.key == key)?;
        Some(self.entries.remove(i))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.entries.iter().map(|e| (e.key.as_str(), &e.value))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Node {
    pub fn new(loc: Loc, value: Value) -> Self {
        Node { loc, value }
    }

    pub fn str(loc: Loc, s: impl Into<Text>) -> Self {
        Node::new(loc, Value::Str(s.into()))
    }

    pub fn map(loc: Loc) -> Self {
        Node::new(loc, Value::Map(Map::default()))
    }

    pub fn as_map(&self) -> Option<&Map> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_map_mut(&mut self) -> Option<&mut Map> {
        match &mut self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.value {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self.value {
            Value::Int(i) => Some(i),
            Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(f as i64),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self.value {
            Value::Int(i) => Some(i as f64),
            Value::Float(f) => Some(f),
            _ => None,
        }
    }

    /// `self[key]` for a mapping; `None` for anything else.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?.get(key)
    }

    /// A string member, e.g. a layer's `id`.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key)?.as_str()
    }

    /// Follows a dotted path of mapping keys: `get_path(&["storage", "srid"])`.
    pub fn get_path(&self, path: &[&str]) -> Option<&Node> {
        path.iter().try_fold(self, |node, key| node.get(key))
    }

    /// A short name of the node's kind, for messages ("expected a list, found a string").
    pub fn kind(&self) -> &'static str {
        self.value.kind()
    }

    /// Total number of nodes in this subtree (this node included).
    pub fn count(&self) -> usize {
        1 + match &self.value {
            Value::Seq(items) => items.iter().map(Node::count).sum(),
            Value::Map(m) => m.entries.iter().map(|e| e.value.count()).sum(),
            _ => 0,
        }
    }

    pub fn set_file(&mut self, file: FileId) {
        self.loc.file = file;
        match &mut self.value {
            Value::Seq(items) => items.iter_mut().for_each(|n| n.set_file(file)),
            Value::Map(m) => m.entries.iter_mut().for_each(|e| {
                e.key_loc.file = file;
                e.value.set_file(file);
            }),
            _ => {}
        }
    }

    /// The JSON form Honua loads. Locations are dropped; key order is kept.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map(J::Number).unwrap_or(J::Null),
            Value::Str(s) => J::String(s.to_string()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(m) => J::Object(m.entries.iter().map(|e| (e.key.to_string(), e.value.to_json())).collect()),
        }
    }

    /// Builds a tree from JSON with every location set to `loc` (for generated or synthetic content).
    pub fn from_json(value: &serde_json::Value, loc: Loc) -> Node {
        use serde_json::Value as J;
        let value = match value {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(*b),
            J::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            J::String(s) => Value::Str(s.into()),
            J::Array(items) => Value::Seq(items.iter().map(|v| Node::from_json(v, loc)).collect()),
            J::Object(m) => Value::Map(Map {
                entries: m
                    .iter()
                    .map(|(k, v)| Entry { key: k.into(), key_loc: loc, value: Node::from_json(v, loc) })
                    .collect(),
            }),
        };
        Node { loc, value }
    }

    /// Resolves a JSON pointer (as produced by a schema validator), returning the deepest node that
    /// exists on the way: a "required key missing" error then points at the object that lacks it.
    pub fn deepest_at_pointer(&self, pointer: &str) -> &Node {
        let mut node = self;
        for raw in pointer.split('/').skip(1) {
            let segment = raw.replace("~1", "/").replace("~0", "~");
            let next = match &node.value {
                Value::Map(m) => m.get(&segment),
                Value::Seq(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        node
    }
}

impl Value {
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Float(_) => "number",
            Value::Str(_) => "string",
            Value::Seq(_) => "list",
            Value::Map(_) => "mapping",
        }
    }
}

/// Compact one-line rendering used in diffs and messages: `3600`, `"EPSG:4326"`, `[a, b]`, `{…}`.
impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_json())
    }
}
