//! What `honua serve` and `honua agent` share in reading their settings: the layering (flags and
//! environment variables, which clap reads together, then a file, then each command's defaults), reading
//! the file with positions, and checks whose errors name the setting and say what to do.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A setting that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {problem}")]
pub struct SettingError {
    /// The flag or environment variable (`HONUA_PUBLIC_URL`), or `--config` for the file itself.
    pub setting: &'static str,
    pub problem: String,
}

pub fn bad(setting: &'static str, problem: impl Into<String>) -> SettingError {
    SettingError { setting, problem: problem.into() }
}

/// Each setting given in `given` (flags and environment), else the file's. Both are the same
/// all-`Option` struct; a setting is "not given" when it is `None`.
pub fn layer<T: Serialize + DeserializeOwned>(given: T, file: T) -> T {
    let (serde_json::Value::Object(given), serde_json::Value::Object(mut merged)) =
        (serde_json::to_value(given).expect("settings encode"), serde_json::to_value(file).expect("settings encode"))
    else {
        unreachable!("settings are structs of options")
    };
    for (key, value) in given {
        if !value.is_null() {
            merged.insert(key, value);
        }
    }
    serde_json::from_value(serde_json::Value::Object(merged)).expect("settings decode as they encoded")
}

/// A settings file as JSON: YAML, or JSON (comments allowed, as .NET's configuration allows them, when
/// the name ends in `.json`). Errors name the file and the line and column.
pub fn read_file(path: &Path) -> Result<serde_json::Value, SettingError> {
    let bytes = std::fs::read(path).map_err(|e| bad("--config", format!("cannot read {}: {e}", path.display())))?;
    let text = crate::config::yaml::decode(&bytes).map_err(|e| bad("--config", format!("{}: {e}", path.display())))?;
    let text = if path.extension().is_some_and(|e| e == "json") { strip_json_comments(text) } else { text.to_string() };
    let node = crate::config::yaml::parse(&text, crate::config::node::FileId(0))
        .map_err(|e| bad("--config", format!("{}:{e}", path.display())))?;
    Ok(node.to_json())
}

/// `value` if it is a URL with one of `schemes`, without a trailing `/`.
pub fn check_url(setting: &'static str, value: &str, schemes: &[&str]) -> Result<String, SettingError> {
    let parsed = url::Url::parse(value).map_err(|e| bad(setting, format!("`{value}` is not a URL ({e})")))?;
    if !schemes.contains(&parsed.scheme()) {
        return Err(bad(setting, format!("`{value}`: use one of {}", schemes.join(", "))));
    }
    Ok(value.trim_end_matches('/').to_string())
}

/// A URL to show: its password replaced by `***`.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// Comments out of a JSON text (`//` and `/* */`, outside strings), as .NET's configuration allows them.
pub fn strip_json_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                '\\' => out.extend(chars.next()),
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('/', Some('/')) => while chars.next_if(|&n| n != '\n').is_some() {},
            ('/', Some('*')) => {
                chars.next();
                let mut last = ' ';
                for n in chars.by_ref() {
                    if last == '*' && n == '/' {
                        break;
                    }
                    last = n;
                }
                out.push(' ');
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, PartialEq, Serialize, serde::Deserialize)]
    struct Args {
        listen: Option<String>,
        workers: Option<usize>,
        public: Option<bool>,
    }

    #[test]
    fn what_is_given_wins_and_the_file_fills_the_rest() {
        let given = Args { listen: Some("0.0.0.0:80".into()), ..Default::default() };
        let file = Args { listen: Some("127.0.0.1:8080".into()), workers: Some(4), public: Some(false) };
        assert_eq!(
            layer(given, file),
            Args { listen: Some("0.0.0.0:80".into()), workers: Some(4), public: Some(false) }
        );
    }

    #[test]
    fn json_comments_go_and_strings_stay() {
        let text = "{\"a\": \"//x\", // note\n \"b\": /* c */ 1}";
        let value: serde_json::Value = serde_json::from_str(&strip_json_comments(text)).unwrap();
        assert_eq!(value, serde_json::json!({"a": "//x", "b": 1}));
    }
}
