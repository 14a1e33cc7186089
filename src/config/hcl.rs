//! Honua's Configuration 2.0 files (`.hcl`, `.honua`), read as Honua's own parser reads them.
//!
//! Follows `src/Honua.Server.Core/Configuration/V2/HclParser.cs` and `ConfigurationProcessor.cs` of
//! honua-io/Honua.Server at `00710654` (2025-11). Honua does not read HCL as the HCL specification
//! defines it but a dialect of its own, and a general HCL crate gets both directions wrong: it refuses
//! what Honua's documentation and examples write (`"${env:DATABASE_URL}"`, single-quoted strings,
//! `variable "x" = "v"`) and accepts what Honua refuses (nested blocks such as `pool { … }`,
//! commas between attributes, fractional numbers); measured with hcl-edit 0.9 on 2026-12-01, it refused
//! the first three and accepted the last three. So this module reads exactly Honua's grammar:
//!
//! - top-level blocks `honua { }`, `data_source "id" { }`, `service "id" { }`, `layer "id" { }`,
//!   `cache "id" { }`, `rate_limit { }`, and `variable "name" = value` (or `var`);
//! - inside a block, `key = value` only, and only the keys Honua's parser knows (a `service` takes any
//!   key); an unknown key is what Honua refuses ("Unknown layer setting"), reported here with the
//!   nearest known key and the parse goes on, so one run names every such key;
//! - objects only as attribute values (`pool = { … }`, `geometry = { … }`, `fields = { name = { … } }`);
//! - strings in `"` or `'` with `\n`, `\r`, `\t` escapes; whole numbers (32-bit); `true`/`false`;
//!   flat lists; bare references (`data_source.city_gis`, `service.wfs`); `env("VAR")`.
//!
//! The grammar nests at most five levels, fixed by the block kinds, so no input can make this parser
//! recurse: it has no recursion at all. The tree it builds is the shape the rest of the crate reads:
//! `{honua: {…}, data_source: {id: {…}}, service: {…}, layer: {…}, cache: {…}, rate_limit: {…},
//! variable: {name: value}}`, every node with its line and column.

use crate::diagnostic::{Diagnostic, Place};

use super::node::{Entry, FileId, Loc, Map, Node, Value};
use super::yaml::MAX_NODES;

/// The block kinds Honua reads, in the order it documents them.
pub const BLOCKS: [&str; 7] = ["honua", "data_source", "service", "layer", "cache", "rate_limit", "variable"];

/// The geometry types `SyntaxValidator` accepts, spelled as it compares them (case included).
pub const GEOMETRY_TYPES: [&str; 8] = [
    "Point",
    "LineString",
    "Polygon",
    "MultiPoint",
    "MultiLineString",
    "MultiPolygon",
    "Geometry",
    "GeometryCollection",
];

/// Block kinds that carry a label (`layer "parcels" { … }`), keyed by it in the tree.
pub const LABELED: [&str; 4] = ["data_source", "service", "layer", "cache"];

/// What an attribute's value may be, as Honua's parser reads it.
#[derive(Clone, Copy)]
enum Kind {
    Str,
    /// A string, or `env("VAR")` / `var("x")` (`ReadStringOrExpression`).
    StrOrCall,
    /// A string or a bare reference such as `data_source.city_gis` (`ReadReference`).
    Ref,
    RefList,
    StrList,
    Bool,
    Int,
    /// A string, a list of strings, a boolean or a whole number (`ReadValue`).
    Any,
    Object(&'static [(&'static str, Kind)]),
    /// `name = { … }` entries, each an object of the given keys (`fields`, `rules`).
    Named(&'static [(&'static str, Kind)]),
}

const CORS: &[(&str, Kind)] =
    &[("allow_any_origin", Kind::Bool), ("allowed_origins", Kind::StrList), ("allow_credentials", Kind::Bool)];
const HONUA: &[(&str, Kind)] = &[
    ("version", Kind::Str),
    ("environment", Kind::Str),
    ("log_level", Kind::Str),
    ("allowed_hosts", Kind::StrList),
    ("cors", Kind::Object(CORS)),
];
const POOL: &[(&str, Kind)] = &[("min_size", Kind::Int), ("max_size", Kind::Int), ("timeout", Kind::Int)];
const DATA_SOURCE: &[(&str, Kind)] = &[
    ("provider", Kind::Str),
    ("connection", Kind::StrOrCall),
    ("health_check", Kind::Str),
    ("pool", Kind::Object(POOL)),
];
const GEOMETRY: &[(&str, Kind)] = &[("column", Kind::Str), ("type", Kind::Str), ("srid", Kind::Int)];
const FIELD: &[(&str, Kind)] = &[("type", Kind::Str), ("nullable", Kind::Bool)];
const LAYER: &[(&str, Kind)] = &[
    ("title", Kind::Str),
    ("data_source", Kind::Ref),
    ("table", Kind::Str),
    ("description", Kind::Str),
    ("id_field", Kind::Str),
    ("display_field", Kind::Str),
    ("introspect_fields", Kind::Bool),
    ("geometry", Kind::Object(GEOMETRY)),
    ("fields", Kind::Named(FIELD)),
    ("services", Kind::RefList),
];
const CACHE: &[(&str, Kind)] =
    &[("type", Kind::Str), ("enabled", Kind::Bool), ("connection", Kind::StrOrCall), ("required_in", Kind::StrList)];
const RULE: &[(&str, Kind)] = &[("requests", Kind::Int), ("window", Kind::Str)];
const RATE_LIMIT: &[(&str, Kind)] = &[("enabled", Kind::Bool), ("store", Kind::Str), ("rules", Kind::Named(RULE))];

/// The keys Honua's parser knows at a dotted place (`layer`, `layer.geometry`, `data_source.pool`), for
/// validation and rendering; `None` where any key is taken (a service's settings).
pub fn known_keys(path: &[&str]) -> Option<Vec<&'static str>> {
    let mut keys = block_keys(path.first()?)?;
    for step in &path[1..] {
        keys = match keys.iter().find(|(k, _)| k == step)?.1 {
            Kind::Object(inner) | Kind::Named(inner) => inner,
            _ => return None,
        };
    }
    Some(keys.iter().map(|(k, _)| *k).collect())
}

fn block_keys(block: &str) -> Option<&'static [(&'static str, Kind)]> {
    Some(match block {
        "honua" => HONUA,
        "data_source" => DATA_SOURCE,
        "layer" => LAYER,
        "cache" => CACHE,
        "rate_limit" => RATE_LIMIT,
        _ => return None,
    })
}

/// A problem that stops the parse, as Honua's `ParseException` stops its load.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub line: u32,
    pub column: u32,
    pub message: String,
}

/// A parsed file: its tree, and the findings that did not stop the parse (unknown keys, repeated
/// blocks), which Honua would refuse or silently resolve.
#[derive(Debug)]
pub struct Parsed {
    pub root: Node,
    pub findings: Vec<Diagnostic>,
}

/// Parses one Configuration 2.0 file. `path` names the file in findings.
pub fn parse(text: &str, file: FileId, path: &str) -> Result<Parsed, ParseError> {
    let mut p = Parser {
        text,
        pos: 0,
        line: 1,
        column: 1,
        file,
        path,
        nodes: 0,
        findings: Vec::new(),
        labels: std::collections::HashMap::new(),
    };
    let root = p.document()?;
    Ok(Parsed { root, findings: p.findings })
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    line: u32,
    column: u32,
    file: FileId,
    path: &'a str,
    nodes: usize,
    findings: Vec<Diagnostic>,
    /// `(kind, label)` → position among the blocks of that kind.
    labels: std::collections::HashMap<(String, String), usize>,
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

impl<'a> Parser<'a> {
    fn loc(&self) -> Loc {
        Loc { file: self.file, line: self.line, column: self.column }
    }

    fn error<T>(&self, message: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError { line: self.line, column: self.column, message: message.into() })
    }

    fn error_at<T>(&self, at: Loc, message: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError { line: at.line, column: at.column, message: message.into() })
    }

    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn peek2(&self) -> Option<char> {
        self.text[self.pos..].chars().nth(1)
    }

    fn advance(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn node(&mut self, loc: Loc, value: Value) -> Result<Node, ParseError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return self.error(format!("node budget exceeded: more than {MAX_NODES} values in one file"));
        }
        Ok(Node { loc, value })
    }

    /// Whitespace, `#` and `//` line comments, `/* */` block comments (an unclosed one runs to the end,
    /// as in Honua's parser).
    fn skip(&mut self) {
        while let Some(c) = self.peek() {
            if c.is_whitespace() {
                self.advance();
            } else if c == '#' || (c == '/' && self.peek2() == Some('/')) {
                while self.peek().is_some_and(|c| c != '\n') {
                    self.advance();
                }
            } else if c == '/' && self.peek2() == Some('*') {
                self.advance();
                self.advance();
                while self.peek().is_some() {
                    if self.peek() == Some('*') && self.peek2() == Some('/') {
                        self.advance();
                        self.advance();
                        break;
                    }
                    self.advance();
                }
            } else {
                break;
            }
        }
    }

    fn at(&mut self, s: &str) -> bool {
        self.skip();
        self.text[self.pos..].starts_with(s)
    }

    fn expect(&mut self, s: &str, context: &str) -> Result<(), ParseError> {
        if !self.at(s) {
            let found = match self.peek() {
                None => "the end of the file".to_string(),
                Some(c) => format!("`{c}`"),
            };
            return self.error(format!("expected `{s}` {context}, found {found}"));
        }
        for _ in s.chars() {
            self.advance();
        }
        Ok(())
    }

    fn word(&mut self) -> (Loc, &'a str) {
        self.skip();
        let at = self.loc();
        let start = self.pos;
        while self.peek().is_some_and(is_word_char) {
            self.advance();
        }
        (at, &self.text[start..self.pos])
    }

    fn string(&mut self, what: &str) -> Result<(Loc, String), ParseError> {
        self.skip();
        let at = self.loc();
        let quote = match self.peek() {
            Some(q @ ('"' | '\'')) => q,
            _ => return self.error(format!("expected a quoted string {what}").trim_end().to_string()),
        };
        self.advance();
        let mut out = String::new();
        loop {
            match self.advance() {
                None => return self.error_at(at, "this string is not closed: add its closing quote"),
                Some(c) if c == quote => break,
                Some('\\') => match self.advance() {
                    Some('n') => out.push('\n'),
                    Some('r') => out.push('\r'),
                    Some('t') => out.push('\t'),
                    Some(c) => out.push(c),
                    None => return self.error_at(at, "this string is not closed: add its closing quote"),
                },
                Some(c) => out.push(c),
            }
        }
        Ok((at, out))
    }

    fn integer(&mut self) -> Result<Node, ParseError> {
        self.skip();
        let at = self.loc();
        let start = self.pos;
        if self.peek() == Some('-') {
            self.advance();
        }
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.advance();
        }
        let digits = &self.text[start..self.pos];
        if matches!(self.peek(), Some('.' | 'e' | 'E')) && !digits.is_empty() {
            return self.error("Honua reads whole numbers only (a 32-bit integer); write this without a fraction");
        }
        match digits.parse::<i32>() {
            Ok(n) => self.node(at, Value::Int(n.into())),
            Err(_) if digits.is_empty() || digits == "-" => self.error_at(at, "expected a whole number"),
            Err(_) => self.error_at(at, format!("`{digits}` is not a 32-bit integer, which is what Honua reads here")),
        }
    }

    fn boolean(&mut self) -> Result<Node, ParseError> {
        let (at, word) = self.word();
        match word.to_lowercase().as_str() {
            "true" => self.node(at, Value::Bool(true)),
            "false" => self.node(at, Value::Bool(false)),
            _ => self.error_at(at, format!("expected `true` or `false`, found `{word}`")),
        }
    }

    fn string_node(&mut self, what: &str) -> Result<Node, ParseError> {
        let (at, s) = self.string(what)?;
        self.node(at, Value::Str(s.into()))
    }

    fn reference(&mut self) -> Result<Node, ParseError> {
        self.skip();
        if matches!(self.peek(), Some('"' | '\'')) {
            return self.string_node("or a reference");
        }
        let at = self.loc();
        let start = self.pos;
        while self.peek().is_some_and(|c| is_word_char(c) || c == '.' || c == '-') {
            self.advance();
        }
        if start == self.pos {
            return self.error("expected a reference such as `data_source.main` or a quoted string");
        }
        let text = &self.text[start..self.pos];
        self.node(at, Value::Str(text.into()))
    }

    fn list(&mut self, item: fn(&mut Self) -> Result<Node, ParseError>) -> Result<Node, ParseError> {
        self.skip();
        let at = self.loc();
        self.expect("[", "to open a list")?;
        let mut items = Vec::new();
        while !self.at("]") {
            if self.peek().is_none() {
                return self.error_at(at, "this list is not closed: add `]`");
            }
            items.push(item(self)?);
            if self.at(",") {
                self.advance();
            }
        }
        self.advance();
        self.node(at, Value::Seq(items))
    }

    /// `env("VAR")` or `var("x")`, kept as written (with its quotes) for the processor; or a string.
    fn string_or_call(&mut self) -> Result<Node, ParseError> {
        self.skip();
        let at = self.loc();
        let save = (self.pos, self.line, self.column);
        let (_, word) = self.word();
        if word == "env" || word == "var" {
            self.expect("(", &format!("after `{word}`"))?;
            let (_, arg) = self.string(&format!("as the argument of `{word}(…)`"))?;
            self.expect(")", &format!("to close `{word}(…)`"))?;
            return self.node(at, Value::Str(format!("{word}(\"{arg}\")").into()));
        }
        (self.pos, self.line, self.column) = save;
        self.string_node("or `env(\"VAR\")`")
    }

    fn any(&mut self) -> Result<Node, ParseError> {
        self.skip();
        match self.peek() {
            Some('"' | '\'') => self.string_node(""),
            Some('[') => self.list(|p| p.string_node("in this list")),
            Some(c) if c.is_ascii_digit() || c == '-' => self.integer(),
            _ => {
                let save = (self.pos, self.line, self.column);
                let (_, word) = self.word();
                if word == "true" || word == "false" {
                    (self.pos, self.line, self.column) = save;
                    return self.boolean();
                }
                (self.pos, self.line, self.column) = save;
                self.error("expected a value: a quoted string, a list of strings, `true`/`false` or a whole number (Honua's parser reads no other value here)")
            }
        }
    }

    fn value(&mut self, kind: Kind, place: &str) -> Result<Node, ParseError> {
        match kind {
            Kind::Str => self.string_node(""),
            Kind::StrOrCall => self.string_or_call(),
            Kind::Ref => self.reference(),
            Kind::RefList => self.list(Self::reference),
            Kind::StrList => self.list(|p| p.string_node("in this list")),
            Kind::Bool => self.boolean(),
            Kind::Int => self.integer(),
            Kind::Any => self.any(),
            Kind::Object(keys) => {
                self.skip();
                let at = self.loc();
                self.expect("{", &format!("to open `{place}` (Honua reads `{place} = {{ … }}`)"))?;
                let map = self.body(keys, place, at)?;
                self.node(at, Value::Map(map))
            }
            Kind::Named(keys) => {
                self.skip();
                let at = self.loc();
                self.expect("{", &format!("to open `{place}` (Honua reads `{place} = {{ … }}`)"))?;
                let mut map = Map::default();
                while !self.at("}") {
                    if self.peek().is_none() {
                        return self.error_at(at, format!("`{place}` is not closed: add `}}`"));
                    }
                    let (key_loc, name) = self.word();
                    if name.is_empty() {
                        return self.error(format!("expected a name in `{place}`"));
                    }
                    self.expect("=", &format!("after `{name}`"))?;
                    self.skip();
                    let inner_at = self.loc();
                    let inner_place = format!("{place}.{name}");
                    self.expect("{", &format!("to open `{inner_place}`"))?;
                    let body = self.body(keys, &inner_place, inner_at)?;
                    let node = self.node(inner_at, Value::Map(body))?;
                    insert_last_wins(&mut map, name, key_loc, node);
                }
                self.advance();
                self.node(at, Value::Map(map))
            }
        }
    }

    /// The attributes of a block or object up to its closing `}`. `keys` empty = any key (a service).
    fn body(&mut self, keys: &[(&str, Kind)], place: &str, opened: Loc) -> Result<Map, ParseError> {
        let mut map = Map::default();
        loop {
            if self.at("}") {
                self.advance();
                return Ok(map);
            }
            if self.peek().is_none() {
                return self.error_at(opened, format!("`{place}` is not closed: add `}}` after its last attribute"));
            }
            let (key_loc, key) = self.word();
            if key.is_empty() {
                let found = self.peek().map_or("the end of the file".into(), |c| format!("`{c}`"));
                return self.error(format!("expected an attribute name or `}}` in `{place}`, found {found}"));
            }
            if !self.at("=") {
                let hint = if self.at("{") {
                    format!("; Honua's parser does not read nested blocks: write `{key} = {{ … }}`")
                } else {
                    String::new()
                };
                return self.error(format!("expected `=` after `{key}` in `{place}`{hint}"));
            }
            self.advance();
            let kind = if keys.is_empty() {
                Some(Kind::Any)
            } else {
                keys.iter().find(|(k, _)| *k == key).map(|(_, kind)| *kind)
            };
            match kind {
                Some(kind) => {
                    let value = self.value(kind, &format!("{place}.{key}"))?;
                    insert_last_wins(&mut map, key, key_loc, value);
                }
                None => {
                    let known: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
                    let hint = match super::nearest(key, &known) {
                        Some(near) => format!("did you mean `{near}`? "),
                        None => String::new(),
                    };
                    self.findings.push(Diagnostic::error(
                        "hcl.unknown_attribute",
                        Place { file: self.path, line: key_loc.line, column: key_loc.column },
                        format!(
                            "`{key}` is not a setting of `{place}`: Honua's parser refuses the file (\"Unknown setting '{key}'\"); {hint}known settings: {}",
                            known.join(", ")
                        ),
                    ));
                    self.skip_value()?;
                }
            }
        }
    }

    /// Skips one value of any shape after an unknown key, so the parse can report the next problem.
    /// Brackets are counted, never recursed into.
    fn skip_value(&mut self) -> Result<(), ParseError> {
        self.skip();
        let at = self.loc();
        let mut depth = 0usize;
        loop {
            self.skip();
            match self.peek() {
                None if depth > 0 => return self.error_at(at, "this value is not closed"),
                None => return Ok(()),
                Some('"' | '\'') => {
                    self.string("")?;
                }
                Some('{' | '[' | '(') => {
                    depth += 1;
                    self.advance();
                }
                Some('}' | ']' | ')') if depth > 0 => {
                    depth -= 1;
                    self.advance();
                }
                Some('}' | ']' | ')') => return Ok(()),
                Some(',') if depth > 0 => {
                    self.advance();
                }
                Some(_) => {
                    let start = self.pos;
                    while self.peek().is_some_and(|c| is_word_char(c) || matches!(c, '.' | '-' | ':')) {
                        self.advance();
                    }
                    if self.pos == start {
                        self.advance();
                    }
                }
            }
            if depth == 0 {
                return Ok(());
            }
        }
    }

    fn document(&mut self) -> Result<Node, ParseError> {
        let root_loc = Loc { file: self.file, line: 1, column: 1 };
        let mut root = Map::default();
        loop {
            self.skip();
            if self.peek().is_none() {
                break;
            }
            let (at, word) = self.word();
            match word {
                "honua" | "rate_limit" => {
                    self.skip();
                    let opened = self.loc();
                    self.expect("{", &format!("after `{word}`"))?;
                    let body = self.body(block_keys(word).expect("known block"), word, opened)?;
                    let node = self.node(at, Value::Map(body))?;
                    self.singleton(&mut root, word, at, node);
                }
                "data_source" | "service" | "layer" | "cache" => {
                    let (label_loc, label) =
                        self.string(&format!("as the name of this `{word}` (`{word} \"name\" {{`)"))?;
                    self.skip();
                    let opened = self.loc();
                    self.expect("{", &format!("after `{word} \"{label}\"`"))?;
                    let keys = block_keys(word).unwrap_or(&[]);
                    let place = format!("{word}.{label}");
                    let body = self.body(keys, &place, opened)?;
                    let node = self.node(at, Value::Map(body))?;
                    self.labeled(&mut root, word, at, &label, label_loc, node);
                }
                "variable" | "var" => {
                    let (label_loc, name) = self.string("as the variable's name (`variable \"name\" = value`)")?;
                    self.expect("=", &format!("after `{word} \"{name}\"` (Honua reads `variable \"name\" = value`)"))?;
                    let value = self.any()?;
                    self.labeled(&mut root, "variable", at, &name, label_loc, value);
                }
                "" => {
                    let c = self.peek().unwrap_or(' ');
                    return self.error(format!(
                        "unexpected `{c}`: a Configuration 2.0 file holds only `honua`, `data_source`, `service`, `layer`, `cache`, `rate_limit` and `variable` blocks"
                    ));
                }
                other => {
                    let hint =
                        super::nearest(other, &BLOCKS).map(|n| format!(" (did you mean `{n}`?)")).unwrap_or_default();
                    return self.error_at(at, format!(
                        "unexpected `{other}`{hint}: Honua's parser knows only `honua`, `data_source`, `service`, `layer`, `cache`, `rate_limit` and `variable` blocks and refuses the file"
                    ));
                }
            }
        }
        self.node(root_loc, Value::Map(root))
    }

    fn singleton(&mut self, root: &mut Map, kind: &str, at: Loc, node: Node) {
        if let Some(first) = root.entry(kind) {
            self.repeated(kind, first.key_loc, at);
        }
        root.insert(kind, at, node);
    }

    fn labeled(&mut self, root: &mut Map, kind: &str, at: Loc, label: &str, label_loc: Loc, node: Node) {
        if root.get(kind).is_none() {
            let map = Node { loc: at, value: Value::Map(Map::default()) };
            root.insert(kind, at, map);
        }
        let blocks = root.get_mut(kind).and_then(Node::as_map_mut).expect("just inserted");
        // Labels found by index: a file may hold tens of thousands of layers.
        let key = (kind.to_string(), label.to_string());
        match self.labels.get(&key) {
            Some(&i) => {
                let first = blocks.entries[i].key_loc;
                blocks.entries[i].value = node;
                self.repeated(&format!("{kind} \"{label}\""), first, at);
            }
            None => {
                self.labels.insert(key, blocks.entries.len());
                blocks.entries.push(Entry { key: label.into(), key_loc: label_loc, value: node });
            }
        }
    }

    fn repeated(&mut self, what: &str, first: Loc, again: Loc) {
        self.findings.push(Diagnostic::warning(
            "hcl.duplicate_block",
            Place { file: self.path, line: again.line, column: again.column },
            format!(
                "`{what}` is written twice in this file (first at line {}): Honua keeps only the last one and drops the first without a word; merge them into one block",
                first.line
            ),
        ));
    }
}

/// Honua's dictionaries keep the last value written for a key; so does the tree (at the first key's place).
fn insert_last_wins(map: &mut Map, key: &str, key_loc: Loc, value: Node) {
    match map.entries.iter_mut().find(|e| e.key == key) {
        Some(e) => e.value = value,
        None => map.entries.push(Entry { key: key.into(), key_loc, value }),
    }
}

/// Whether Honua's `ConfigurationProcessor` interpolates attribute `attr` of a `kind` block: a data
/// source's `connection` and `health_check`, every setting of a service, a cache's `connection`, and
/// `rate_limit.store`.
fn is_interpolated(kind: &str, attr: &str) -> bool {
    match kind {
        "data_source" => matches!(attr, "connection" | "health_check"),
        "service" => !matches!(attr, "enabled" | "type"),
        "cache" => attr == "connection",
        "rate_limit" => attr == "store",
        _ => false,
    }
}

/// The bodies whose attributes Honua may interpolate, with their dotted place: each labeled block of
/// `data_source`, `service` and `cache` (`service.wfs`), and `rate_limit`.
fn interpolated_bodies(root: &Node) -> Vec<(&str, String, &Node)> {
    let mut out = Vec::new();
    for (kind, node) in root.as_map().map(|m| m.iter().collect::<Vec<_>>()).unwrap_or_default() {
        match kind {
            "rate_limit" => out.push((kind, kind.to_string(), node)),
            "data_source" | "service" | "cache" => {
                for (label, body) in node.as_map().map(|m| m.iter().collect::<Vec<_>>()).unwrap_or_default() {
                    out.push((kind, format!("{kind}.{label}"), body));
                }
            }
            _ => {}
        }
    }
    out
}

/// The strings Honua's `ConfigurationProcessor` interpolates (`is_interpolated`), with their dotted
/// place (`data_source.main.connection`).
pub fn interpolated_strings(root: &Node) -> Vec<(String, &Node)> {
    let mut out = Vec::new();
    for (kind, place, body) in interpolated_bodies(root) {
        for (attr, value) in body.as_map().map(|m| m.iter().collect::<Vec<_>>()).unwrap_or_default() {
            if is_interpolated(kind, attr) && value.as_str().is_some() {
                out.push((format!("{place}.{attr}"), value));
            }
        }
    }
    out
}

/// Honua's `ConfigurationProcessor`, as far as it can run before the server: in the strings it
/// interpolates ([`interpolated_strings`]), `${env:VAR}` and `env("VAR")` become the `${VAR}` placeholders
/// the agent resolves beside Honua (so the same repository serves every environment and no secret is
/// committed), and `var.name` becomes the variable's value. Everything else stays as written, as Honua
/// leaves it. A `var.name` with no variable stays too: validation reports it.
pub fn interpolate(root: &mut Node) {
    let variables: Vec<(String, String)> = root
        .get("variable")
        .and_then(Node::as_map)
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.to_string(), variable_text(v)?))).collect())
        .unwrap_or_default();
    let lookup = |name: &str| variables.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let Some(root) = root.as_map_mut() else { return };
    for entry in root.entries.iter_mut() {
        let kind = entry.key.to_string();
        let bodies: Vec<&mut Node> = match kind.as_str() {
            "rate_limit" => vec![&mut entry.value],
            "data_source" | "service" | "cache" => match entry.value.as_map_mut() {
                Some(blocks) => blocks.entries.iter_mut().map(|b| &mut b.value).collect(),
                None => continue,
            },
            _ => continue,
        };
        for attr in bodies.into_iter().filter_map(Node::as_map_mut).flat_map(|m| m.entries.iter_mut()) {
            let Some(text) = attr.value.as_str().filter(|_| is_interpolated(&kind, &attr.key)) else { continue };
            if text.contains("env") || text.contains("var.") {
                let text = replace_vars(&replace_env(text), &lookup);
                attr.value.value = Value::Str(text.into());
            }
        }
    }
}

/// A variable's value as Honua's processor writes it into a string (`value.ToString()` in C#).
fn variable_text(value: &Node) -> Option<String> {
    match &value.value {
        Value::Str(s) => Some(s.to_string()),
        Value::Int(n) => Some(n.to_string()),
        Value::Bool(true) => Some("True".into()),
        Value::Bool(false) => Some("False".into()),
        _ => None,
    }
}

/// `${env:VAR}` (`\$\{env:([^}]+)\}`) and `env("VAR")` (`env\(["']([^"']+)["']\)`) → `${VAR}`.
fn replace_env(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("${env:") {
            if let Some(end) = after.find('}').filter(|&e| e > 0) {
                out.push_str(&format!("${{{}}}", &after[..end]));
                rest = &after[end + 1..];
                continue;
            }
        }
        if let Some(after) = rest.strip_prefix("env(") {
            // `env("VAR")` or `env('VAR')`: a quote, a name without quotes, a quote, `)`.
            if let Some(inner) = after.strip_prefix(['"', '\'']) {
                if let Some(end) = inner.find(['"', '\'']).filter(|&e| e > 0) {
                    if inner[end + 1..].starts_with(')') {
                        out.push_str(&format!("${{{}}}", &inner[..end]));
                        rest = &inner[end + 2..];
                        continue;
                    }
                }
            }
        }
        let c = rest.chars().next().expect("not empty");
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Every `var.name` (`var\.(\w+)`) replaced by `lookup(name)`; unknown names are left as written.
pub fn replace_vars(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("var.") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 4..];
        let len = after.find(|c: char| !is_word_char(c)).unwrap_or(after.len());
        match (len > 0).then(|| lookup(&after[..len])).flatten() {
            Some(value) => out.push_str(&value),
            None => out.push_str(&rest[at..at + 4 + len]),
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

/// The `var.name` references of a string (after [`interpolate`], the ones no variable defines).
pub fn variable_references(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("var.") {
        let after = &rest[at + 4..];
        let len = after.find(|c: char| !is_word_char(c)).unwrap_or(after.len());
        if len > 0 {
            out.push(&after[..len]);
        }
        rest = &after[len..];
    }
    out
}

/// The last part of a reference, as Honua's `ExtractReference` reads it: `data_source.main` → `main`,
/// `service.wfs` → `wfs`, `wfs` → `wfs`.
pub fn reference_target(reference: &str) -> &str {
    reference.rsplit('.').next().unwrap_or(reference)
}

/// The collections Honua serves for one layer block (`HclMetadataProvider.BuildLayers`): one per entry
/// of its `services`, named `layer` when there is one service and `layer_service` when there are
/// several, under the service: `(service, layer id)`.
pub fn layer_collections(label: &str, layer: &Node) -> Vec<(String, String)> {
    let services: Vec<&str> =
        layer.get("services").and_then(Node::as_seq).unwrap_or_default().iter().filter_map(Node::as_str).collect();
    services
        .iter()
        .map(|s| {
            let service = reference_target(s).to_string();
            let id = if services.len() == 1 { label.to_string() } else { format!("{label}_{service}") };
            (service, id)
        })
        .collect()
}

/// The OGC collections Honua serves from a Configuration 2.0 tree (`HclMetadataProvider`): for each
/// enabled service whose `collections_enabled` is not false, each layer that lists it, as
/// `service::layer id` ([`layer_collections`]).
pub fn served_collections(root: &Node) -> Vec<String> {
    let services = root.get("service").and_then(Node::as_map);
    let publishes = |service: &str| {
        services.and_then(|m| m.get(service)).is_some_and(|s| {
            s.get("enabled").and_then(Node::as_bool).unwrap_or(true)
                && s.get("collections_enabled").and_then(Node::as_bool).unwrap_or(true)
        })
    };
    let mut out = Vec::new();
    for (label, layer) in
        root.get("layer").and_then(Node::as_map).map(|m| m.iter().collect::<Vec<_>>()).unwrap_or_default()
    {
        for (service, id) in layer_collections(label, layer) {
            if publishes(&service) {
                out.push(format!("{service}::{id}"));
            }
        }
    }
    out
}

/// Renders a Configuration 2.0 tree as one file Honua's parser reads, laid out as `hcl fmt` lays out
/// HCL: two-space indents, the `=` of consecutive one-line attributes aligned, a blank line between
/// blocks. References (`data_source.main`, `service.wfs`) are written bare, as people write them.
pub fn render(root: &Node) -> String {
    render_with_comments(root, &|_, _| None)
}

/// [`render`], with comment lines (without their `#`) written above the labeled blocks `comments`
/// gives them for: `(kind, label)`.
pub fn render_with_comments(root: &Node, comments: &dyn Fn(&str, &str) -> Option<Vec<String>>) -> String {
    let mut out = String::new();
    let Some(map) = root.as_map() else { return out };
    let mut first = true;
    let mut gap = |out: &mut String| {
        if !std::mem::take(&mut first) {
            out.push('\n');
        }
    };
    if let Some(vars) = map.get("variable").and_then(Node::as_map) {
        if !vars.is_empty() {
            gap(&mut out);
            for (name, value) in vars.iter() {
                out.push_str(&format!("variable {} = {}\n", quote(name), inline(value, false)));
            }
        }
    }
    for kind in ["honua", "data_source", "service", "layer", "cache", "rate_limit"] {
        let Some(node) = map.get(kind) else { continue };
        if LABELED.contains(&kind) {
            for (label, body) in node.as_map().map(|m| m.iter().collect::<Vec<_>>()).unwrap_or_default() {
                gap(&mut out);
                for line in comments(kind, label).unwrap_or_default() {
                    // One comment line per line: nothing in a comment can end it early.
                    for part in line.split(['\n', '\r']) {
                        out.push_str(&format!("#{}{part}\n", if part.is_empty() { "" } else { " " }));
                    }
                }
                out.push_str(&format!("{kind} {} {{\n", quote(label)));
                attributes(&mut out, body, 1, kind == "layer");
                out.push_str("}\n");
            }
        } else {
            gap(&mut out);
            out.push_str(&format!("{kind} {{\n"));
            attributes(&mut out, node, 1, false);
            out.push_str("}\n");
        }
    }
    out
}

/// The attributes of a block or object, aligned in runs of one-line values.
fn attributes(out: &mut String, body: &Node, depth: usize, references: bool) {
    let Some(map) = body.as_map() else { return };
    let indent = "  ".repeat(depth);
    let entries: Vec<(&str, &Node)> = map.iter().collect();
    let mut i = 0;
    while i < entries.len() {
        if let Value::Map(_) = entries[i].1.value {
            let (key, node) = entries[i];
            out.push_str(&format!("{indent}{key} = {{\n"));
            attributes(out, node, depth + 1, false);
            out.push_str(&format!("{indent}}}\n"));
            i += 1;
            continue;
        }
        let run_end =
            entries[i..].iter().position(|(_, n)| matches!(n.value, Value::Map(_))).map_or(entries.len(), |p| i + p);
        let width = entries[i..run_end].iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
        for (key, node) in &entries[i..run_end] {
            let bare = references && matches!(*key, "data_source" | "services");
            let pad = " ".repeat(width - key.chars().count());
            out.push_str(&format!("{indent}{key}{pad} = {}\n", inline(node, bare)));
        }
        i = run_end;
    }
}

/// A one-line value: strings quoted and escaped for Honua's reader, lists flat.
fn inline(node: &Node, bare_references: bool) -> String {
    match &node.value {
        Value::Str(s) if bare_references && is_reference(s) => s.to_string(),
        Value::Str(s) => quote(s),
        Value::Bool(b) => b.to_string(),
        Value::Int(n) => n.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Null => "\"\"".into(),
        Value::Seq(items) => {
            let items: Vec<String> = items.iter().map(|n| inline(n, bare_references)).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Map(_) => "{}".into(),
    }
}

/// `data_source.main`, `service.wfs`: what Honua's `ReadReference` reads without quotes.
fn is_reference(s: &str) -> bool {
    (s.starts_with("data_source.") || s.starts_with("service."))
        && s.chars().all(|c| is_word_char(c) || c == '.' || c == '-')
}

/// A string as Honua's `ReadString` reads it back: `\` and `"` escaped, and the three escapes it knows.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Parsed {
        parse(text, FileId(0), "t.hcl").unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn honuas_grammar_with_positions() {
        let p = ok(r#"
# comment
honua {
  version = "1.0"
  environment = 'production'
  cors = { allow_any_origin = false }
}
data_source "db" {
  provider = "postgresql"
  connection = env("DATABASE_URL") // trailing
  pool = { min_size = 1 max_size = -5 }
}
layer "roads" {
  data_source = data_source.db
  services = [service.ogc_api, "wfs",]
  geometry = { column = "geom" type = "Point" srid = 4326 }
  fields = { id = { type = "int" nullable = FALSE } }
}
service "ogc_api" { enabled = true item_limit = 10 tags = ["a"] }
variable "region" = "eu"
"#);
        // `, }` in the cors object: Honua reads `,` as an attribute name and refuses; so do we.
        assert!(parse("honua { cors = { a = 1, } }", FileId(0), "t").is_err());
        let _ = p;
    }

    #[test]
    fn the_parsed_tree_has_the_shape_and_places() {
        let p = ok("layer \"roads\" {\n  title = \"R\"\n  data_source = data_source.db\n  services = [service.ogc_api, \"wfs\"]\n  geometry = { column = \"geom\" srid = 4326 }\n}\ndata_source \"db\" { connection = env(\"X\") }\nvariable \"v\" = 3\n");
        let j = p.root.to_json();
        assert_eq!(j["layer"]["roads"]["data_source"], "data_source.db");
        assert_eq!(j["layer"]["roads"]["services"], serde_json::json!(["service.ogc_api", "wfs"]));
        assert_eq!(j["layer"]["roads"]["geometry"]["srid"], 4326);
        assert_eq!(j["data_source"]["db"]["connection"], "env(\"X\")");
        assert_eq!(j["variable"]["v"], 3);
        let title = p.root.get_path(&["layer", "roads", "title"]).unwrap();
        assert_eq!((title.loc.line, title.loc.column), (2, 11));
        assert!(p.findings.is_empty());
    }

    #[test]
    fn what_honua_refuses_is_refused_where_it_stands() {
        let err = |t: &str| parse(t, FileId(0), "t").unwrap_err();
        let e = err("data_source \"d\" {\n  pool {\n    min_size = 1\n  }\n}\n");
        assert_eq!((e.line, e.column), (2, 8));
        assert!(e.message.contains("write `pool = { … }`"), "{}", e.message);
        assert!(err("service \"s\" { ratio = 1.5 }").message.contains("whole numbers"));
        assert!(err("servce \"s\" {}").message.contains("did you mean `service`"));
        assert!(err("layer \"x\" {\n title = \"a\"\n").message.contains("not closed"));
        assert!(err("layer \"x\" { title = \"a }").message.contains("not closed"));
        assert!(err("service \"s\" { n = 99999999999 }").message.contains("32-bit"));
        assert!(err("honua { cors = { allow_any_origin = yes } }").message.contains("`true` or `false`"));
    }

    #[test]
    fn unknown_attributes_are_each_reported_and_the_parse_goes_on() {
        let p = ok("layer \"x\" {\n  titel = \"a\"\n  permissions = { allow = [1, {x = 2}] }\n  table = \"t\"\n}\n");
        let codes: Vec<_> = p.findings.iter().map(|d| (d.code.as_str(), d.line, d.column)).collect();
        assert_eq!(codes, [("hcl.unknown_attribute", 2, 3), ("hcl.unknown_attribute", 3, 3)]);
        assert!(p.findings[0].message.contains("did you mean `title`"), "{}", p.findings[0].message);
        assert_eq!(p.root.get_path(&["layer", "x", "table"]).unwrap().as_str(), Some("t"));
    }

    #[test]
    fn a_block_written_twice_keeps_the_last_as_honua_does() {
        let p = ok("layer \"x\" { title = \"a\" }\nlayer \"x\" { table = \"t\" }\n");
        assert_eq!(p.findings[0].code, "hcl.duplicate_block");
        let x = p.root.get_path(&["layer", "x"]).unwrap();
        assert!(x.get("title").is_none() && x.get("table").is_some());
    }

    #[test]
    fn no_input_nests_deeper_than_the_grammar() {
        let bomb = format!("service \"s\" {{ x = {} }}", "[".repeat(100_000));
        assert!(parse(&bomb, FileId(0), "t").is_err());
        let bomb = format!("layer \"s\" {{ zz = {} }}", "{".repeat(100_000));
        assert!(parse(&bomb, FileId(0), "t").is_err());
    }

    #[test]
    fn interpolation_as_honuas_processor_does_it() {
        let mut p = ok("variable \"host\" = \"db.internal\"\nvariable \"ssl\" = true\ndata_source \"d\" {\n  connection = \"Host=var.host;Ssl=var.ssl;Password=${env:DB_PASSWORD};x=var.nope\"\n  health_check = \"${env:HC}\"\n}\nlayer \"l\" { title = \"${env:NOT_HERE} var.host\" }\ndata_source \"e\" { connection = env(\"DATABASE_URL\") }\n").root;
        interpolate(&mut p);
        let j = p.to_json();
        assert_eq!(j["data_source"]["d"]["connection"], "Host=db.internal;Ssl=True;Password=${DB_PASSWORD};x=var.nope");
        assert_eq!(j["data_source"]["d"]["health_check"], "${HC}");
        assert_eq!(j["data_source"]["e"]["connection"], "${DATABASE_URL}");
        assert_eq!(j["layer"]["l"]["title"], "${env:NOT_HERE} var.host", "a title is not interpolated by Honua");
        assert_eq!(variable_references("x=var.nope;y=var."), ["nope"]);
    }

    #[test]
    fn collections_are_named_as_honua_names_them() {
        let p = ok("layer \"roads\" { services = [service.ogc_api] }\nlayer \"parcels\" { services = [\"wfs\", service.ogc_api] }\n").root;
        let one = layer_collections("roads", p.get_path(&["layer", "roads"]).unwrap());
        assert_eq!(one, [("ogc_api".to_string(), "roads".to_string())]);
        let two = layer_collections("parcels", p.get_path(&["layer", "parcels"]).unwrap());
        assert_eq!(two[1], ("ogc_api".to_string(), "parcels_ogc_api".to_string()));
    }

    #[test]
    fn a_rendered_tree_reads_back_the_same() {
        let text = "variable \"v\" = 3\nhonua {\n  version = \"1.0\"\n  cors = { allowed_origins = [\"https://a\"] }\n}\ndata_source \"d\" {\n  provider = \"postgresql\"\n  connection = \"Host=x;Note=\\\"q\\\" \\\\ end\\n\"\n  pool = { min_size = 1 max_size = 5 }\n}\nlayer \"l\" {\n  title = 'T'\n  data_source = data_source.d\n  services = [service.wfs, \"ogc_api\"]\n  fields = { id = { type = \"int\" } }\n}\nservice \"wfs\" { enabled = false }\nrate_limit { rules = { default = { requests = 10 window = \"1m\" } } }\n";
        let first = ok(text).root;
        let rendered = render(&first);
        let again = parse(&rendered, FileId(0), "r.hcl").unwrap_or_else(|e| panic!("{e:?}\n{rendered}"));
        assert_eq!(first.to_json(), again.root.to_json(), "{rendered}");
        assert!(rendered.contains("  provider   = \"postgresql\"\n  connection = "), "{rendered}");
        assert!(rendered.contains("  data_source = data_source.d\n"), "{rendered}");
        assert!(rendered.contains("  services    = [service.wfs, \"ogc_api\"]\n"), "{rendered}");
        assert_eq!(render(&again.root), rendered, "rendering is stable");
    }
}
