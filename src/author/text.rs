//! Edits to a file's text at places the parsed tree points at, leaving every other byte as it was: the
//! parsers give line:column positions, so comments, blank lines and formatting around an edit survive.

use crate::config::node::{Loc, Node, Value};

/// A file's text with its line starts, for turning positions into byte offsets.
pub struct Text<'a> {
    pub text: &'a str,
    starts: Vec<usize>,
}

impl<'a> Text<'a> {
    pub fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Text { text, starts }
    }

    pub fn lines(&self) -> usize {
        self.starts.len()
    }

    /// Byte offset of a 1-based line's start (the end of the text past the last line).
    pub fn line_start(&self, line: u32) -> usize {
        self.starts.get(line.saturating_sub(1) as usize).copied().unwrap_or(self.text.len())
    }

    /// Byte offset just past a 1-based line's newline (the end of the text for the last line).
    pub fn line_end(&self, line: u32) -> usize {
        self.starts.get(line as usize).copied().unwrap_or(self.text.len())
    }

    /// The text of a 1-based line, without its newline.
    pub fn line(&self, line: u32) -> &'a str {
        let s = &self.text[self.line_start(line)..self.line_end(line)];
        s.strip_suffix('\n').map(|s| s.strip_suffix('\r').unwrap_or(s)).unwrap_or(s)
    }

    /// Byte offset of a position (1-based line, 1-based column in characters).
    pub fn offset(&self, loc: Loc) -> usize {
        let start = self.line_start(loc.line);
        let line = self.line(loc.line);
        start + line.char_indices().nth(loc.column.saturating_sub(1) as usize).map_or(line.len(), |(i, _)| i)
    }

    /// The indentation (in spaces) of a 1-based line.
    pub fn indent(&self, line: u32) -> usize {
        self.line(line).chars().take_while(|c| *c == ' ').count()
    }
}

/// The first of the comment lines right above `line` (or `line` itself): they describe what follows.
pub fn comments_above(t: &Text, line: u32) -> u32 {
    let mut top = line;
    while top > 1 && t.line(top - 1).trim_start().starts_with('#') {
        top -= 1;
    }
    top
}

/// Replacements by byte range, applied together.
#[derive(Debug, Default)]
pub struct Edits {
    pieces: Vec<(usize, usize, String)>,
}

impl Edits {
    pub fn replace(&mut self, start: usize, end: usize, with: impl Into<String>) {
        self.pieces.push((start, end, with.into()));
    }

    pub fn insert(&mut self, at: usize, text: impl Into<String>) {
        self.replace(at, at, text);
    }

    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    pub fn apply(mut self, text: &str) -> String {
        self.pieces.sort_by_key(|(s, e, _)| (*s, *e));
        let mut out = String::with_capacity(text.len() + 256);
        let mut at = 0;
        for (start, end, with) in self.pieces {
            let start = start.max(at);
            out.push_str(&text[at..start]);
            out.push_str(&with);
            at = end.max(start);
        }
        out.push_str(&text[at..]);
        out
    }
}

/// The last line any part of a tree was written on.
pub fn last_line(node: &Node) -> u32 {
    let mut last = node.loc.line;
    let mut stack = vec![node];
    while let Some(n) = stack.pop() {
        last = last.max(n.loc.line);
        match &n.value {
            Value::Seq(items) => stack.extend(items.iter()),
            Value::Map(map) => {
                for e in &map.entries {
                    last = last.max(e.key_loc.line);
                    stack.push(&e.value);
                }
            }
            _ => {}
        }
    }
    last
}

/// The lines of a YAML block-sequence item: from its `-` line (with the comment lines right above it)
/// to its last line (block scalars included: every following line indented deeper than the dash).
pub fn yaml_item_lines(text: &Text, item: &Node) -> (u32, u32) {
    let first = item.loc.line;
    let dash = text.line(first).find('-').unwrap_or(0);
    let mut last = last_line(item);
    while (last as usize) < text.lines() {
        let next = text.line(last + 1);
        if next.trim().is_empty() || next.chars().take_while(|c| *c == ' ').count() <= dash {
            break;
        }
        last += 1;
    }
    let mut top = first;
    while top > 1 && text.line(top - 1).trim_start().starts_with('#') && text.indent(top - 1) >= dash {
        top -= 1;
    }
    (top, last)
}

/// The lines to cut for removing lines `top..=last`, with the blank line after them when one is
/// also before them, so blocks stay one blank line apart.
pub fn removal_lines(text: &Text, top: u32, last: u32) -> (u32, u32) {
    let blank = |line: u32| line >= 1 && (line as usize) < text.lines() && text.line(line).trim().is_empty();
    if top > 1 && blank(top - 1) && blank(last + 1) {
        (top, last + 1)
    } else {
        (top, last)
    }
}

/// Byte range of an HCL block or object starting at `from`: from `from` to just past its closing `}`
/// (strings and comments skipped), or `None` when it does not close.
pub fn hcl_block_end(text: &str, from: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = from;
    let mut depth = 0usize;
    let mut opened = false;
    while i < bytes.len() {
        match bytes[i] {
            b'"' | b'\'' => {
                let quote = bytes[i];
                i += 1;
                while i < bytes.len() && bytes[i] != quote && bytes[i] != b'\n' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < bytes.len() && !(bytes[i] == b'*' && bytes[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            b'{' => {
                depth += 1;
                opened = true;
            }
            b'}' => {
                depth = depth.checked_sub(1)?;
                if opened && depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Byte range of a one-line value starting at `start` (a quoted string, or up to a comment or the end
/// of the line), for replacing it.
pub fn value_end(text: &str, start: usize) -> usize {
    let bytes = text.as_bytes();
    if let Some(&quote @ (b'"' | b'\'')) = bytes.get(start) {
        let mut i = start + 1;
        while i < bytes.len() && bytes[i] != quote && bytes[i] != b'\n' {
            if bytes[i] == b'\\' && quote == b'"' {
                i += 1;
            }
            i += 1;
        }
        return (i + 1).min(text.len());
    }
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let body = &text[start..line_end];
    let cut = body.find(" #").unwrap_or(body.len());
    start + body[..cut].trim_end().len()
}

/// A string as a YAML scalar: plain when it reads back as the same string, else double-quoted (JSON's
/// escapes are YAML's).
pub fn yaml_scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '_' | '.' | '(' | ')' | '/' | '-' | ',' | '&' | '\''))
        && s.chars().next().is_some_and(|c| c.is_alphabetic())
        && !s.ends_with(' ')
        && !matches!(s.to_lowercase().as_str(), "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n");
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).expect("strings encode")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_keep_everything_else() {
        let text = "a: 1 # one\nb: 2\n";
        let t = Text::new(text);
        let mut e = Edits::default();
        let start = t.offset(Loc { line: 1, column: 4, ..Default::default() });
        e.replace(start, value_end(text, start), "10");
        e.insert(t.line_end(2), "c: 3\n");
        assert_eq!(e.apply(text), "a: 10 # one\nb: 2\nc: 3\n");
    }

    #[test]
    fn blocks_close_past_strings_and_comments() {
        let text = "layer \"a\" {\n  title = \"}\" # }\n  x = { y = 1 }\n}\nlayer \"b\" {}\n";
        let end = hcl_block_end(text, 0).unwrap();
        assert_eq!(&text[..end], "layer \"a\" {\n  title = \"}\" # }\n  x = { y = 1 }\n}");
    }

    #[test]
    fn scalars_quote_when_needed() {
        assert_eq!(yaml_scalar("Bike Lanes"), "Bike Lanes");
        assert_eq!(yaml_scalar("yes"), "\"yes\"");
        assert_eq!(yaml_scalar("a: b"), "\"a: b\"");
        assert_eq!(yaml_scalar("@team"), "\"@team\"");
        assert_eq!(yaml_scalar("50"), "\"50\"");
    }
}
