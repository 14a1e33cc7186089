//! `${VAR}` placeholders of a rendered file, resolved from the secrets file, then the agent's
//! environment, each value escaped for the format it lands in.

use std::path::Path;

use super::AgentError;

/// `${VAR}` placeholders of a rendered file, from the secrets file, then the agent's environment. The
/// rendered files are JSON and placeholders sit inside its strings, so each value is JSON-escaped: a quote
/// or a backslash in a password cannot change the document. Errors name the placeholder, never the
/// rendered text (it holds the secrets resolved so far).
pub(super) fn resolve_secrets(text: &str, secrets_file: Option<&Path>) -> Result<String, AgentError> {
    resolve_secrets_in(text, secrets_file, |value| {
        let quoted = serde_json::to_string(value).expect("strings encode");
        quoted[1..quoted.len() - 1].to_string()
    })
}

/// [`resolve_secrets`] for a rendered Configuration 2.0 file: values escaped as Honua's HCL reader
/// reads a quoted string back.
pub(super) fn resolve_hcl_secrets(text: &str, secrets_file: Option<&Path>) -> Result<String, AgentError> {
    resolve_secrets_in(text, secrets_file, |value| {
        let quoted = crate::config::hcl::quote(value);
        quoted[1..quoted.len() - 1].to_string()
    })
}

pub(crate) fn resolve_secrets_in(
    text: &str,
    secrets_file: Option<&Path>,
    escape: impl Fn(&str) -> String,
) -> Result<String, AgentError> {
    let file: Vec<(String, String)> = match secrets_file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| AgentError::State { path: path.to_path_buf(), message: e.to_string() })?
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.trim().to_string(), v.to_string())))
            .collect(),
        None => Vec::new(),
    };
    let lookup =
        |name: &str| file.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).or_else(|| std::env::var(name).ok());
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find(['}', '"']).filter(|&i| after.as_bytes()[i] == b'}') else {
            let shown: String = after.chars().take_while(|c| *c != '"').take(40).collect();
            return Err(AgentError::Refused(format!(
                "a placeholder is not closed: `${{{shown}` has no `}}`; close it in the repository, then deploy again"
            )));
        };
        let name = &after[..end];
        let value = lookup(name).ok_or_else(|| {
            AgentError::Refused(format!(
                "`${{{name}}}` is set neither in the secrets file nor in the agent's environment: the deployment is refused (set it, then deploy again)"
            ))
        })?;
        out.push_str(&escape(&value));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod secret_tests {
    use super::*;

    #[test]
    fn secrets_are_escaped_for_the_json_they_land_in() {
        std::env::set_var("HONUA_TEST_PW_QUOTED", r#"p"w\x"#);
        let text = r#"{"connectionString": "Host=db;Password=${HONUA_TEST_PW_QUOTED}"}"#;
        let resolved = resolve_secrets(text, None).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&resolved).expect("still JSON");
        assert_eq!(parsed["connectionString"], r#"Host=db;Password=p"w\x"#);
    }

    #[test]
    fn a_missing_and_an_unclosed_placeholder_say_which_never_the_document() {
        let missing = resolve_secrets(r#"{"a": "s3cret ${NOT_SET_ANYWHERE_42}"}"#, None).unwrap_err().to_string();
        assert!(missing.contains("`${NOT_SET_ANYWHERE_42}` is set neither"), "{missing}");
        assert!(!missing.contains("s3cret"), "{missing}");
        let unclosed =
            resolve_secrets(r#"{"a": "s3cret", "b": "${DB_PASS", "c": "x}"}"#, None).unwrap_err().to_string();
        assert!(unclosed.contains("`${DB_PASS` has no `}`"), "{unclosed}");
        assert!(!unclosed.contains("s3cret"), "{unclosed}");
    }
}
