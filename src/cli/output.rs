//! Standard output for what a command prints. A reader that stops early (`honua render | head`) closes
//! the pipe: the command then ends quietly with exit 0, as Unix tools do, instead of panicking as
//! `println!` does. And what a command prints quotes the repository (titles, ids, reasons), which a pull
//! request controls: control characters are made visible, so a title cannot move the cursor, set the
//! window title or write the clipboard (OSC 52) in a reviewer's terminal. Colour (SGR) sequences pass.

use std::io::{ErrorKind, Write};

/// Writes to standard output, control characters made visible; a closed pipe ends the process quietly.
pub fn write(args: std::fmt::Arguments<'_>) {
    let text = std::fmt::format(args);
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(terminal_safe(&text).as_bytes()).and_then(|()| out.flush()) {
        stop(e)
    }
}

/// The colour sequences this program writes (its own marks and comfy-table's cells): reset, bold, red,
/// green, yellow, cyan, in the 16- and 256-colour forms. Anything else (conceal, reverse, backgrounds,
/// black or white text) could hide text from the reader and is shown instead.
fn only_colour(params: &str) -> bool {
    matches!(
        params,
        "" | "0"
            | "1"
            | "22"
            | "39"
            | "31"
            | "32"
            | "33"
            | "36"
            | "1;36"
            | "38;5;1"
            | "38;5;2"
            | "38;5;3"
            | "38;5;9"
            | "38;5;10"
            | "38;5;11"
    )
}

/// `text` with every control character but newline and tab shown as its Unicode control picture (or
/// `\u{..}`), except the colour sequences of `only_colour`.
pub fn terminal_safe(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| (c.is_control() && c != '\n' && c != '\t') || matches!(c, '\u{2028}' | '\u{2029}');
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c == '\u{1b}' {
            // A colour sequence: ESC [ then digits and semicolons, ending in m.
            let body = &rest[1..];
            if let Some(params) = body.strip_prefix('[') {
                let len = params.find(|ch: char| !(ch.is_ascii_digit() || ch == ';')).unwrap_or(params.len());
                if params[len..].starts_with('m') && only_colour(&params[..len]) {
                    out.push_str(&rest[..2 + len + 1]);
                    rest = &rest[2 + len + 1..];
                    continue;
                }
            }
        }
        if unsafe_char(c) {
            match u32::from(c) {
                n @ 0..=0x1f => out.push(char::from_u32(0x2400 + n).unwrap_or('\u{fffd}')),
                0x7f => out.push('\u{2421}'),
                n => out.push_str(&format!("\\u{{{n:x}}}")),
            }
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    std::borrow::Cow::Owned(out)
}

/// Writes bytes to standard output (generated text that is not formatted here).
pub fn write_bytes(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        stop(e)
    }
}

/// Whether `error` comes from standard output's reader having gone away.
pub fn is_closed_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == ErrorKind::BrokenPipe))
}

fn stop(error: std::io::Error) -> ! {
    if error.kind() == ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    // Nothing can be printed to standard output any more; say why where it can be read.
    let _ = writeln!(std::io::stderr(), "error: cannot write to standard output: {error}");
    std::process::exit(2);
}

/// `print!` that ends quietly on a closed pipe.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::write(format_args!($($arg)*))
    };
}

/// `println!` that ends quietly on a closed pipe.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::cli::output::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::output::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

#[cfg(test)]
mod tests {
    use super::terminal_safe;

    #[test]
    fn control_sequences_from_a_repository_are_shown_not_obeyed() {
        assert_eq!(terminal_safe("plain\ttext\n"), "plain\ttext\n");
        assert_eq!(terminal_safe("\x1b[32m✓\x1b[0m ok"), "\x1b[32m✓\x1b[0m ok", "colour passes");
        let hostile = "Parcels\x1b]52;c;ZXZpbA==\x07\x1b[2J\r\u{9b}31m";
        let shown = terminal_safe(hostile);
        assert!(!shown.contains('\x1b'), "{shown:?}");
        assert_eq!(shown, "Parcels␛]52;c;ZXZpbA==␇␛[2J␍\\u{9b}31m");
        assert_eq!(terminal_safe("a\x1b[8mhidden\x1b[0m"), "a␛[8mhidden\x1b[0m", "conceal is shown, not obeyed");
        assert_eq!(terminal_safe("\x1b[38;5;10mok\x1b[0m"), "\x1b[38;5;10mok\x1b[0m");
    }
}
