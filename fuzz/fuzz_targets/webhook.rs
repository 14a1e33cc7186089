//! Webhook parsing at the edge: the signature header check and the payload of each event GitHub sends.
//! The first input byte picks the event, the first line is the `X-Hub-Signature-256` header, the rest
//! is the body.
#![no_main]

use honua_gitops::github::webhook::{parse_event, sign, verify_signature, WebhookSecret};
use libfuzzer_sys::fuzz_target;

const EVENTS: &[&str] = &[
    "pull_request",
    "push",
    "issue_comment",
    "check_suite",
    "check_run",
    "installation",
    "installation_repositories",
    "ping",
    "pull_request_review",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let event = EVENTS[usize::from(pick) % EVENTS.len()];
    let (header, body) = match rest.iter().position(|b| *b == b'\n') {
        Some(end) => (&rest[..end], &rest[end + 1..]),
        None => (&rest[..0], rest),
    };
    let secrets = [WebhookSecret::new("fuzz-secret")];
    let _ = verify_signature(&secrets, body, std::str::from_utf8(header).ok());
    let signed = sign(b"fuzz-secret", body);
    assert!(verify_signature(&secrets, body, Some(&signed)).is_ok(), "a correctly signed body was refused");
    if let Ok(event) = parse_event(event, body) {
        let _ = event.repository();
        let _ = event.is_actionable();
    }
});
