//! Which configuration values are secrets, and how they are shown. A password or token written
//! literally in a repository is a validation finding (`secret.literal`); wherever the value itself
//! would be shown (diff, plan, PR comment, `render`, API, pages) it is masked instead: `••••`, its length
//! class and a short hash, so a reviewer sees that it changed without seeing it.
//!
//! A value is a secret when its key names one (`password`, `DB_PASSWORD`, `apiKey`, `clientSecret`,
//! `private-key`, …), or everything below such a key, or the password part of a connection string or
//! URL. `${VAR}` placeholders are not secrets: they are what a repository should hold.

use sha2::{Digest, Sha256};

/// Words that mark a key as holding a secret, compared lowercase with `-` and `_` removed.
const SECRET_WORDS: [&[u8]; 7] = [b"password", b"passwd", b"pwd", b"secret", b"token", b"apikey", b"privatekey"];

/// Whether a key names a secret (`password`, `DB_PASSWORD`, `apiKey`, `private-key`, …). Runs on every
/// key of large catalogues, so it normalizes into a stack buffer instead of allocating.
pub fn is_secret_key(key: &str) -> bool {
    let mut buf = [0u8; 64];
    let mut n = 0;
    for b in key.bytes().filter(|b| !matches!(b, b'-' | b'_')) {
        if n == buf.len() {
            break;
        }
        buf[n] = b.to_ascii_lowercase();
        n += 1;
    }
    let norm = &buf[..n];
    SECRET_WORDS.iter().any(|w| norm.windows(w.len()).any(|win| win == *w))
}

/// Keys whose value is a connection string or URL that may carry a password.
pub fn is_connection_key(key: &str) -> bool {
    ["connectionString", "connection", "url"].iter().any(|k| key.eq_ignore_ascii_case(k))
}

/// A value [`mask`] made: masking it again would hide which version it was.
fn is_mask(value: &str) -> bool {
    value.starts_with("•••• (") && value.ends_with(')')
}

/// `${VAR}`: a reference the agent resolves on the server, not a secret.
pub fn is_placeholder(value: &str) -> bool {
    let v = value.trim();
    v.starts_with("${") && v.ends_with('}') && v.len() > 3 && !v[2..v.len() - 1].contains(['{', '}'])
}

/// The byte range of every literal password in a connection string: `Password=…;` pairs (ADO/Npgsql
/// style) and the password of a `scheme://user:password@host` URL.
fn connection_passwords(value: &str) -> Vec<std::ops::Range<usize>> {
    let mut found = Vec::new();
    let mut start = 0;
    for pair in value.split(';') {
        if let Some((k, v)) = pair.split_once('=') {
            let key = k.trim().to_ascii_lowercase();
            let literal = !v.trim().is_empty() && !is_placeholder(v) && !is_mask(v);
            if matches!(key.as_str(), "password" | "pwd" | "passwd") && literal {
                let at = start + k.len() + 1;
                found.push(at..at + v.len());
            }
        }
        start += pair.len() + 1;
    }
    if let Some(scheme_end) = value.find("://") {
        let rest_at = scheme_end + 3;
        let rest = &value[rest_at..];
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        if let Some(at) = authority.rfind('@') {
            let userinfo = &authority[..at];
            if let Some(colon) = userinfo.find(':') {
                let password = &userinfo[colon + 1..];
                if !password.is_empty() && !is_placeholder(password) && !is_mask(password) {
                    let from = rest_at + colon + 1;
                    found.push(from..from + password.len());
                }
            }
        }
    }
    found
}

/// What a connection string holds literally, for the validation finding: `Some("the connection
/// string's `Password=`")`.
pub fn connection_string_secret(value: &str) -> Option<String> {
    let range = connection_passwords(value).into_iter().next()?;
    let before = &value[..range.start];
    match before.strip_suffix('=') {
        Some(pair) => {
            let key = pair.rsplit(';').next().unwrap_or_default().trim();
            Some(format!("the connection string's `{key}=`"))
        }
        None => Some("the connection URL's password".into()),
    }
}

/// How a secret is shown: `•••• (8-15 chars, sha256:3fa2)`. The hash prefix is 16 bits of SHA-256, enough
/// to tell two versions apart in a diff and too little to confirm a guess against.
pub fn mask(secret: &str) -> String {
    let class = match secret.chars().count() {
        0..=7 => "under 8 chars",
        8..=15 => "8-15 chars",
        16..=31 => "16-31 chars",
        _ => "32+ chars",
    };
    let hash = Sha256::new().chain_update(b"honua-gitops secret\0").chain_update(secret.as_bytes()).finalize();
    format!("•••• ({class}, sha256:{})", hex::encode(&hash[..2]))
}

/// A connection string with every literal password masked (the rest stays readable).
pub fn mask_connection(value: &str) -> String {
    let ranges = connection_passwords(value);
    if ranges.is_empty() {
        return value.to_string();
    }
    let mut out = String::with_capacity(value.len() + 32);
    let mut at = 0;
    for r in ranges {
        if r.start < at {
            continue;
        }
        out.push_str(&value[at..r.start]);
        out.push_str(&mask(&value[r.clone()]));
        at = r.end;
    }
    out.push_str(&value[at..]);
    out
}

/// The masked form of a scalar text found under `key` (`secret`: a key above it named a secret), or
/// `None` when it is shown as it is.
pub fn masked_text(key: &str, value: &str, secret: bool) -> Option<String> {
    if value.is_empty() || is_placeholder(value) || is_mask(value) {
        return None;
    }
    if secret || is_secret_key(key) {
        return Some(mask(value));
    }
    if is_connection_key(key) {
        let masked = mask_connection(value);
        return (masked != value).then_some(masked);
    }
    None
}

/// Masks, in place, every secret in a JSON value that was found under `key` (`secret`: under a key that
/// names one). Walks with an explicit stack: the value may come from a repository or the database.
pub fn mask_json(key: &str, value: &mut serde_json::Value, secret: bool) {
    use serde_json::Value as J;
    let mut stack: Vec<(String, &mut J, bool)> = vec![(key.to_string(), value, secret)];
    while let Some((key, value, secret)) = stack.pop() {
        let secret = secret || is_secret_key(&key);
        match value {
            J::Object(map) => stack.extend(map.iter_mut().map(|(k, v)| (k.clone(), v, secret))),
            J::Array(items) => stack.extend(items.iter_mut().map(|v| (key.clone(), v, secret))),
            J::String(s) => {
                if let Some(masked) = masked_text(&key, s, secret) {
                    *s = masked;
                }
            }
            J::Number(n) if secret => *value = J::String(mask(&n.to_string())),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_connection_strings() {
        assert!(is_placeholder("${DB_PASSWORD}"));
        assert!(!is_placeholder("secret"));
        assert!(!is_placeholder("${}"));
        assert!(connection_string_secret("Host=x;Password=${DB_PASSWORD};SslMode=Require").is_none());
        assert_eq!(
            connection_string_secret("Host=x;Username=u;Password=secret").as_deref(),
            Some("the connection string's `Password=`")
        );
        assert!(connection_string_secret("Host=x;pwd=hunter2").is_some());
        assert!(connection_string_secret("postgres://u:hunter2@db/x").is_some());
        assert!(connection_string_secret("postgres://u:${PW}@db/x").is_none());
        assert!(connection_string_secret("Data Source=/data/cache.db").is_none());
    }

    #[test]
    fn secret_keys() {
        for k in ["password", "DB_PASSWORD", "apiKey", "api_key", "private-key", "clientSecret", "pwd", "authToken"] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in ["tokenUrl", "title", "passage", "keywords", "id", "tokenizer_mode_is_long_but_fine_x"] {
            assert_eq!(is_secret_key(k), k.starts_with("token"), "{k}");
        }
    }

    #[test]
    fn masks_hide_the_value_and_tell_versions_apart() {
        let a = mask("hunter2-very-secret");
        assert!(a.starts_with("•••• (16-31 chars, sha256:"), "{a}");
        assert!(!a.contains("hunter2"));
        assert_ne!(a, mask("hunter3-very-secret"));
        assert_eq!(
            mask_connection("Host=db;Password=hunter2;SslMode=Require"),
            format!("Host=db;Password={};SslMode=Require", mask("hunter2"))
        );
        assert_eq!(mask_connection("postgres://u:hunter2@db/x"), format!("postgres://u:{}@db/x", mask("hunter2")));
        assert_eq!(mask_connection("Host=db;Password=${PW}"), "Host=db;Password=${PW}");
        // Masking is idempotent: a stored plan masked again still tells its versions apart.
        let once = mask_connection("postgres://u:hunter2@db/x");
        assert_eq!(mask_connection(&once), once);
        assert_eq!(masked_text("password", &a, false), None);
    }

    #[test]
    fn json_is_masked_below_secret_keys_and_in_connection_strings() {
        let mut v = serde_json::json!({
            "id": "db",
            "connectionString": "Host=x;Password=hunter2",
            "auth": {"apiKey": "k-123", "user": "gis"},
            "secrets": [{"name": "a", "value": "s3cr3t"}, 1234],
            "title": "password reset service",
        });
        mask_json("", &mut v, false);
        let text = v.to_string();
        for leaked in ["hunter2", "k-123", "s3cr3t", "1234"] {
            assert!(!text.contains(leaked), "{leaked} in {text}");
        }
        assert_eq!(v["auth"]["user"], "gis");
        assert_eq!(v["title"], "password reset service");
        assert_eq!(v["id"], "db");
    }
}
