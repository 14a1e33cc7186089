//! Comment commands: any text a PR comment can hold (GitHub allows 65,536 characters) is parsed; quoted,
//! fenced and commented-out commands must stay inert, and nothing may panic.
#![no_main]

use honua_gitops::github::commands::{has_command, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else { return };
    let found = parse(body);
    // `has_command` decides whether an edited comment is answered: it must agree with `parse`.
    assert_eq!(found.is_some(), has_command(body), "parse and has_command disagree on {body:?}");
    // Quoting a comment (GitHub's "Quote reply") never makes a command of it.
    let quoted: Vec<String> = body.lines().map(|line| format!("> {line}")).collect();
    let quoted = quoted.join("\n");
    assert_eq!(parse(&quoted), None, "a quoted comment gave a command: {quoted:?}");
});
