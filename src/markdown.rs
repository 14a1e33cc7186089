//! Values placed in GitHub-flavoured Markdown (PR comments, check-run summaries, replies) and in
//! Slack messages, escaped for where they go. Anything from a config repository is untrusted: a layer
//! title, an id or a field name must never become a mention, a link, an image or HTML in a comment the
//! bot posts.
//!
//! Two contexts:
//! - [`code`]: a code span that holds any text literally. It is fenced with one more backtick than the
//!   longest run inside, so no value can close it. Mentions, links and HTML never render in code.
//! - [`text`]: prose outside code, on one line. The characters that open markup inline are
//!   backslash-escaped (code, emphasis, links and images, HTML and autolinks, entities, table cells,
//!   strikethrough, math), and the things GitHub links after rendering (`@user`, `#123`, `https://…`,
//!   `www.`) are broken with an invisible word joiner, because a backslash escape does not stop them.
//!   Punctuation that means nothing inline (`.,;:-/()`) is left as it is, so the text stays readable.
//!
//! [`prose`] renders one of our own sentences, where values are quoted in backticks: quoted parts become
//! code spans, the rest text. It is safe whatever the sentence holds (a value with a backtick in it is
//! shown garbled, never interpreted).

/// U+2060 WORD JOINER: invisible, and it keeps GitHub from linking what it separates.
const JOINER: char = '\u{2060}';

/// A code span holding `value` literally (newlines become spaces: a span is one line).
pub fn code(value: &str) -> String {
    let value = one_line(value);
    if value.is_empty() {
        return "` `".into();
    }
    let longest = longest_run(&value, '`');
    let fence = "`".repeat(longest + 1);
    // CommonMark strips one space from each end when both are there; a value that starts or ends with
    // a backtick or a space gets padding so it survives exactly.
    let pad = value.starts_with(['`', ' ']) || value.ends_with(['`', ' ']);
    let space = if pad { " " } else { "" };
    format!("{fence}{space}{value}{space}{fence}")
}

/// [`code`] for a table cell: GFM splits cells at `|` even inside code spans, unless it is escaped
/// (the table parser removes the backslash again).
pub fn code_in_table(value: &str) -> String {
    code(value).replace('|', "\\|")
}

/// `value` as plain prose: shown as written, interpreted as nothing.
pub fn text(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' | '\r' => out.push(' '),
            '@' | '#' => {
                // `@team` and `#12` are linked by GitHub after rendering, escaped or not.
                out.push('\\');
                out.push(c);
                out.push(JOINER);
            }
            ':' if chars.peek() == Some(&'/') => {
                out.push_str("\\:");
                out.push(JOINER);
            }
            '.' if out.ends_with("www") || out.ends_with("WWW") => {
                out.push(JOINER);
                out.push_str("\\.");
            }
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '&' | '|' | '~' | '$' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// One of our sentences, whose values are quoted in backticks: each quoted part becomes a [`code`]
/// span, the rest [`text`]. An unpaired backtick is text.
pub fn prose(sentence: &str) -> String {
    render_prose(sentence, code)
}

/// [`prose`] for a table cell.
pub fn prose_in_table(sentence: &str) -> String {
    render_prose(sentence, code_in_table)
}

fn render_prose(sentence: &str, code_span: fn(&str) -> String) -> String {
    let parts: Vec<&str> = sentence.split('`').collect();
    // With an even number of parts the last backtick is unpaired: the last two parts stay text.
    let paired = if parts.len().is_multiple_of(2) { parts.len() - 2 } else { parts.len() };
    let mut out = String::with_capacity(sentence.len() + 16);
    for (i, part) in parts.iter().enumerate() {
        if i >= paired {
            if i > paired {
                out.push_str("\\`");
            }
            out.push_str(&text(part));
        } else if i % 2 == 1 {
            out.push_str(&code_span(part));
        } else {
            out.push_str(&text(part));
        }
    }
    out
}

/// Text for a Slack message (mrkdwn): `&`, `<` and `>` are what Slack interprets (`<!channel>`,
/// `<https://…|label>`, `<@U123>`); `@` is broken as in [`text`] for clients that link plain names.
pub fn slack_text(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '@' => {
                out.push('@');
                out.push(JOINER);
            }
            c => out.push(c),
        }
    }
    out
}

fn one_line(value: &str) -> String {
    if value.contains(['\n', '\r']) {
        value.replace("\r\n", " ").replace(['\n', '\r'], " ")
    } else {
        value.to_string()
    }
}

fn longest_run(value: &str, of: char) -> usize {
    let (mut longest, mut run) = (0, 0);
    for c in value.chars() {
        if c == of {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    longest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_spans_are_fenced_longer_than_any_run_inside() {
        assert_eq!(code("parcels"), "`parcels`");
        assert_eq!(code("a ` b"), "``a ` b``");
        assert_eq!(code("``x"), "``` ``x ```");
        assert_eq!(code("two\nlines"), "`two lines`");
        assert_eq!(code(""), "` `");
        assert_eq!(code_in_table("a|b"), "`a\\|b`");
    }

    #[test]
    fn text_escapes_markup_and_breaks_github_links() {
        assert_eq!(text("*bold* [x](y) ![i](j) <b>"), "\\*bold\\* \\[x\\](y) !\\[i\\](j) \\<b\\>");
        assert_eq!(text("a, b; c-d/e (f)."), "a, b; c-d/e (f).");
        assert_eq!(text("@org/team"), "\\@\u{2060}org/team");
        assert_eq!(text("see #12"), "see \\#\u{2060}12");
        assert_eq!(text("https://x.io"), "https\\:\u{2060}//x.io");
        assert_eq!(text("www.x.io"), "www\u{2060}\\.x.io");
    }

    #[test]
    fn prose_makes_quoted_values_code_and_the_rest_text() {
        assert_eq!(prose("layer `a::b` drops field `c`"), "layer `a::b` drops field `c`");
        assert_eq!(prose("odd ` one"), "odd \\` one");
        assert_eq!(prose("x `a` y ` z"), "x `a` y \\` z");
        assert_eq!(prose("@me `@you`"), "\\@\u{2060}me `@you`");
    }

    #[test]
    fn slack_text_escapes_its_control_characters() {
        assert_eq!(slack_text("<!channel> & <http://x|y>"), "&lt;!channel&gt; &amp; &lt;http://x|y&gt;");
    }
}
