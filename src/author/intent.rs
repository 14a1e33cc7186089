//! What a request asks for, as a structured [`Intent`]: read from plain words by a deterministic parser,
//! or from an LLM's JSON answer, which must then fit the same shape exactly (anything else is refused).
//!
//! The parser covers the requests people make of a layer catalogue: add a layer from `schema.table`
//! (to a named service, in named environments), change a layer's cache TTL, set its title or
//! description, disable or remove it, and add a field the table has. Environments are the repository's
//! own names found as words in the request (`in staging and production`); none means the shared
//! `common/` layer, i.e. every environment.

use serde::{Deserialize, Serialize};

/// A request longer than this is refused before any parsing (and never sent to an LLM).
pub const MAX_REQUEST: usize = 2_000;
/// Longest title an intent or a proposal may carry.
pub const MAX_TITLE: usize = 120;
/// Longest description an intent or a proposal may carry.
pub const MAX_DESCRIPTION: usize = 1_000;

/// One change to the layer catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Intent {
    /// A layer over `table` (`schema.table`), introspected from the database.
    AddLayer {
        table: String,
        /// The layer's id; by default the table's name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        layer: Option<String>,
        /// The service (metadata) or data source's services (HCL) to add it to; by default the one
        /// whose data source holds the table, when there is one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<String>,
        /// A title from the request's own words (`a layer for bike lanes` → `Bike Lanes`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        environments: Vec<String>,
    },
    SetCacheTtl {
        layer: String,
        seconds: u32,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        environments: Vec<String>,
    },
    SetTitle {
        layer: String,
        title: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        environments: Vec<String>,
    },
    SetDescription {
        layer: String,
        description: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        environments: Vec<String>,
    },
    DisableLayer {
        layer: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        environments: Vec<String>,
    },
    RemoveLayer {
        layer: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        environments: Vec<String>,
    },
    AddField {
        layer: String,
        field: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        environments: Vec<String>,
    },
}

/// Why a request or an answer was not turned into an intent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IntentError {
    #[error("the request is {0} characters; at most {MAX_REQUEST} are read")]
    TooLong(usize),
    #[error("could not tell what to change from {0:?}. Say it as one of:\n  add a layer from schema.table [to service S] [in ENV…]\n  set the cache ttl of LAYER to N seconds|minutes|hours [in ENV…]\n  set the title of LAYER to \"…\"   /   set the description of LAYER to \"…\"\n  disable LAYER   /   remove LAYER\n  add field COLUMN to LAYER\n(or configure an LLM: ANTHROPIC_API_KEY, AZURE_OPENAI_API_KEY + AZURE_OPENAI_ENDPOINT, OPENAI_API_KEY or OLLAMA_HOST)")]
    NotUnderstood(String),
    #[error("{what} {value:?} is not a name Honua accepts: letters, digits, `_` and `-`, starting with a letter or `_`, at most 63 characters")]
    BadName { what: &'static str, value: String },
    #[error("the table must be written `schema.table` (got {0:?})")]
    BadTable(String),
    #[error("{what} is {len} characters; at most {max}")]
    TooLongValue { what: &'static str, len: usize, max: usize },
    #[error("{0} holds a control character; write it on one line of plain text")]
    ControlCharacter(&'static str),
    #[error("the answer names environment `{0}`, which the repository does not have (it has: {1})")]
    UnknownEnvironment(String, String),
    #[error("the answer is not an intent of the expected shape: {0}")]
    Shape(String),
    #[error("the answer asks for table `{got}` but the request names `{asked}`; refused")]
    OtherTable { asked: String, got: String },
}

/// Every variant's `environments`, by reference or by mutable reference as `$intent` is.
macro_rules! environments_of {
    ($intent:expr) => {
        match $intent {
            Intent::AddLayer { environments, .. }
            | Intent::SetCacheTtl { environments, .. }
            | Intent::SetTitle { environments, .. }
            | Intent::SetDescription { environments, .. }
            | Intent::DisableLayer { environments, .. }
            | Intent::RemoveLayer { environments, .. }
            | Intent::AddField { environments, .. } => environments,
        }
    };
}

impl Intent {
    /// The environments the change is written for; empty means `common/` (every environment).
    pub fn environments(&self) -> &[String] {
        environments_of!(self)
    }

    pub fn environments_mut(&mut self) -> &mut Vec<String> {
        environments_of!(self)
    }

    /// The table named by an add-layer intent.
    pub fn table(&self) -> Option<&str> {
        match self {
            Intent::AddLayer { table, .. } => Some(table),
            _ => None,
        }
    }

    /// A short description, for a branch name and a commit message: `add layer bike_lanes`.
    pub fn summary(&self) -> String {
        match self {
            Intent::AddLayer { table, layer, .. } => {
                format!("add layer {}", layer.as_deref().unwrap_or_else(|| table_name(table)))
            }
            Intent::SetCacheTtl { layer, seconds, .. } => format!("set cache ttl of {layer} to {seconds}s"),
            Intent::SetTitle { layer, .. } => format!("set title of {layer}"),
            Intent::SetDescription { layer, .. } => format!("set description of {layer}"),
            Intent::DisableLayer { layer, .. } => format!("disable layer {layer}"),
            Intent::RemoveLayer { layer, .. } => format!("remove layer {layer}"),
            Intent::AddField { layer, field, .. } => format!("add field {field} to {layer}"),
        }
    }

    /// Every name and text checked: names are identifiers, texts are bounded single lines (a
    /// description may not hold control characters either), environments exist in `known`.
    pub fn check(&self, known: &[String]) -> Result<(), IntentError> {
        let name = |what, value: &str| check_name(what, value);
        match self {
            Intent::AddLayer { table, layer, service, title, .. } => {
                split_table(table)?;
                if let Some(l) = layer {
                    name("the layer id", l)?;
                }
                if let Some(s) = service {
                    name("the service", s)?;
                }
                if let Some(t) = title {
                    check_text("the title", t, MAX_TITLE)?;
                }
            }
            Intent::SetCacheTtl { layer, .. }
            | Intent::DisableLayer { layer, .. }
            | Intent::RemoveLayer { layer, .. } => name("the layer", layer)?,
            Intent::SetTitle { layer, title, .. } => {
                name("the layer", layer)?;
                check_text("the title", title, MAX_TITLE)?;
            }
            Intent::SetDescription { layer, description, .. } => {
                name("the layer", layer)?;
                check_text("the description", description, MAX_DESCRIPTION)?;
            }
            Intent::AddField { layer, field, .. } => {
                name("the layer", layer)?;
                name("the field", field)?;
            }
        }
        for env in self.environments() {
            if env != "common" && !known.iter().any(|k| k == env) {
                return Err(IntentError::UnknownEnvironment(env.clone(), known.join(", ")));
            }
        }
        Ok(())
    }
}

/// `schema.table` split in two, both checked as names.
pub fn split_table(table: &str) -> Result<(&str, &str), IntentError> {
    let Some((schema, name)) = table.split_once('.') else { return Err(IntentError::BadTable(table.to_string())) };
    if check_name("the schema", schema).is_err() || check_name("the table", name).is_err() || name.contains('-') {
        return Err(IntentError::BadTable(table.to_string()));
    }
    Ok((schema, name))
}

fn table_name(table: &str) -> &str {
    table.rsplit_once('.').map_or(table, |(_, t)| t)
}

/// An identifier Honua and PostgreSQL both take unquoted-safe: a letter or `_` first, then letters,
/// digits, `_` and `-`, at most 63 characters (PostgreSQL's limit).
pub fn check_name(what: &'static str, value: &str) -> Result<(), IntentError> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(IntentError::BadName { what, value: value.to_string() })
    }
}

/// A bounded line of text without control characters.
pub fn check_text(what: &'static str, value: &str, max: usize) -> Result<(), IntentError> {
    let len = value.chars().count();
    if len > max {
        return Err(IntentError::TooLongValue { what, len, max });
    }
    if value.chars().any(char::is_control) {
        return Err(IntentError::ControlCharacter(what));
    }
    Ok(())
}

/// Reads an LLM's answer (a JSON object) as an intent: the exact shape or nothing. `request_table` is
/// the `schema.table` the request itself names, if any: an answer about another table is refused.
pub fn from_answer(answer: &str, known: &[String], request_table: Option<&str>) -> Result<Intent, IntentError> {
    let json = extract_json_object(answer).ok_or_else(|| IntentError::Shape("no JSON object in the answer".into()))?;
    let intent: Intent = serde_json::from_str(json).map_err(|e| IntentError::Shape(e.to_string()))?;
    intent.check(known)?;
    if let (Some(asked), Some(got)) = (request_table, intent.table()) {
        if !asked.eq_ignore_ascii_case(got) {
            return Err(IntentError::OtherTable { asked: asked.to_string(), got: got.to_string() });
        }
    }
    if let (Some(asked), None) = (request_table, intent.table()) {
        // The request named a table to add; an answer that does something else with it is not what
        // was asked.
        return Err(IntentError::Shape(format!(
            "the request names table `{asked}` but the answer is `{}`",
            intent.summary()
        )));
    }
    Ok(intent)
}

/// The JSON object of an answer: the whole text, or the one inside a ```json fence (models add them
/// though told not to).
pub fn extract_json_object(answer: &str) -> Option<&str> {
    let text = answer.trim();
    if text.starts_with('{') {
        return Some(text);
    }
    let start = text.find("```")?;
    let body = &text[start + 3..];
    let body = body.strip_prefix("json").unwrap_or(body);
    let end = body.find("```")?;
    let inner = body[..end].trim();
    inner.starts_with('{').then_some(inner)
}

/// The deterministic reading of a request. `known` are the repository's environments.
pub fn parse(request: &str, known: &[String]) -> Result<Intent, IntentError> {
    let len = request.chars().count();
    if len > MAX_REQUEST {
        return Err(IntentError::TooLong(len));
    }
    let text = request.trim().trim_end_matches(['.', '!']).trim();
    let environments = environments_named(text, known);
    let intent = parse_action(text, environments).ok_or_else(|| IntentError::NotUnderstood(text.to_string()))?;
    intent.check(known)?;
    Ok(intent)
}

/// The `schema.table` a request names, if any (to hold an LLM's answer to it).
pub fn table_named(request: &str) -> Option<String> {
    regex(r"(?i)\b([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)\b")
        .captures_iter(request)
        .map(|c| format!("{}.{}", &c[1], &c[2]))
        .find(|t| split_table(t).is_ok())
}

fn regex(pattern: &str) -> regex::Regex {
    regex::Regex::new(pattern).expect("the parser's patterns are valid")
}

/// The repository's environment names (and `common`) that appear as words, outside quoted text.
fn environments_named(text: &str, known: &[String]) -> Vec<String> {
    let unquoted = regex(r#""[^"]*"|'[^']*'|“[^”]*”"#).replace_all(text, " ");
    let mut found = Vec::new();
    for word in unquoted.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')) {
        if word.contains('.') {
            continue;
        }
        let word = word.to_lowercase();
        if let Some(env) = known.iter().find(|k| k.to_lowercase() == word) {
            if !found.contains(env) {
                found.push(env.clone());
            }
        }
    }
    found
}

/// Removes a trailing environment clause (`in staging and production`, `for production only`).
fn strip_environment_clause(value: &str, environments: &[String]) -> String {
    if environments.is_empty() {
        return value.trim().to_string();
    }
    let names = environments.iter().map(|e| regex::escape(e)).collect::<Vec<_>>().join("|");
    let clause = regex(&format!(
        r"(?i)\s+(?:in|for|on)\s+(?:the\s+)?(?:(?:{names})(?:\s*(?:,|and|&)\s*)?)+(?:\s+(?:environments?|only))*\s*$"
    ));
    clause.replace(value, "").trim().to_string()
}

/// A quoted value (`"…"`, `'…'`, `“…”`), or the rest of the text without its environment clause.
fn value_text(rest: &str, environments: &[String]) -> String {
    let quoted = regex(r#"^\s*(?:"([^"]*)"|'([^']*)'|“([^”]*)”)"#);
    if let Some(c) = quoted.captures(rest) {
        return c.get(1).or(c.get(2)).or(c.get(3)).map_or("", |m| m.as_str()).to_string();
    }
    strip_environment_clause(rest, environments)
}

const LAYER_WORD: &str = r"(?:the\s+)?(?:layer\s+)?";
const NAME: &str = r"([A-Za-z_][A-Za-z0-9_-]*)";

fn parse_action(text: &str, environments: Vec<String>) -> Option<Intent> {
    // Add a layer: `add a new layer for bike lanes from table public.bike_lanes [to the transportation
    // service] [called bike_lanes] [in staging]`.
    if let Some(c) = regex(r"(?i)^(?:please\s+)?(?:add|create|publish|serve)\s+(?:a\s+|an\s+)?(?:new\s+)?layer\b(.*)$")
        .captures(text)
    {
        let rest = c.get(1).map_or("", |m| m.as_str());
        let table = regex(
            r"(?i)\b(?:from|of|on|over)\s+(?:the\s+)?(?:table\s+)?([A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*)\b",
        )
        .captures(rest)
        .or_else(|| regex(r"(?i)\btable\s+([A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*)\b").captures(rest))
        .map(|c| c[1].to_string())?;
        let layer =
            regex(&format!(r"(?i)\b(?:called|named|with\s+id|id)\s+{NAME}")).captures(rest).map(|c| c[1].to_string());
        let service = regex(&format!(r"(?i)\b(?:to|in|into|under)\s+(?:the\s+)?{NAME}\s+service\b"))
            .captures(rest)
            .or_else(|| regex(&format!(r"(?i)\bservice\s+{NAME}")).captures(rest))
            .map(|c| c[1].to_string());
        let title = regex(r"(?i)^\s*(?:for|of|showing|with)\s+(?:the\s+)?(.+?)\s+(?:from|of|on|over)\s+(?:the\s+)?(?:table\s+)?[A-Za-z_]")
            .captures(rest)
            .map(|c| title_case(&c[1]))
            .filter(|t| !t.is_empty() && t.len() <= MAX_TITLE);
        return Some(Intent::AddLayer { table, layer, service, title, environments });
    }
    // Add a field the table has: `add field surface to bike_lanes`.
    if let Some(c) = regex(&format!(
        r"(?i)^(?:please\s+)?add\s+(?:the\s+|a\s+)?(?:field|column|attribute)\s+{NAME}\s+(?:to|on)\s+{LAYER_WORD}{NAME}"
    ))
    .captures(text)
    {
        return Some(Intent::AddField { field: c[1].to_string(), layer: c[2].to_string(), environments });
    }
    // Cache TTL: `set the cache ttl of parcels to 10 minutes`, `change parcels cache ttl to 600`.
    let ttl = regex(r"(?i)\bto\s+(\d{1,9})\s*(s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?)?\b");
    if regex(r"(?i)\b(?:cache\s*ttl|ttl|cache\s+time|caching\s+time|cache\s+duration)\b").is_match(text) {
        let layer = regex(&format!(r"(?i)\b(?:ttl|time|duration)\s+(?:of|for|on)\s+{LAYER_WORD}{NAME}"))
            .captures(text)
            .or_else(|| {
                regex(&format!(r"(?i)^(?:set|change|update|make)\s+(?:the\s+)?(?:layer\s+)?{NAME}(?:'s)?\s+cache"))
                    .captures(text)
            })
            .map(|c| c[1].to_string())?;
        let c = ttl.captures(text)?;
        let n: u64 = c[1].parse().ok()?;
        let unit = c.get(2).map_or("s", |m| m.as_str()).to_lowercase();
        let seconds = match unit.chars().next() {
            Some('m') => n * 60,
            Some('h') => n * 3600,
            _ => n,
        };
        return Some(Intent::SetCacheTtl { layer, seconds: u32::try_from(seconds).ok()?, environments });
    }
    // Title and description.
    for (word, is_title) in [("title", true), ("description", false)] {
        let pattern = format!(
            r"(?i)^(?:please\s+)?(?:set|change|update|make)\s+(?:the\s+)?{word}\s+(?:of|for)\s+{LAYER_WORD}{NAME}\s+(?:to|as)\s+(.+)$"
        );
        if let Some(c) = regex(&pattern).captures(text) {
            let layer = c[1].to_string();
            let value = value_text(&c[2], &environments);
            if value.is_empty() {
                return None;
            }
            return Some(if is_title {
                Intent::SetTitle { layer, title: value, environments }
            } else {
                Intent::SetDescription { layer, description: value, environments }
            });
        }
    }
    if let Some(c) =
        regex(&format!(r"(?i)^(?:please\s+)?(?:disable|turn\s+off|unpublish|hide)\s+{LAYER_WORD}{NAME}")).captures(text)
    {
        return Some(Intent::DisableLayer { layer: c[1].to_string(), environments });
    }
    if let Some(c) = regex(&format!(r"(?i)^(?:please\s+)?(?:remove|delete|drop)\s+{LAYER_WORD}{NAME}")).captures(text) {
        return Some(Intent::RemoveLayer { layer: c[1].to_string(), environments });
    }
    None
}

/// `bike lanes` → `Bike Lanes`.
fn title_case(words: &str) -> String {
    words
        .split_whitespace()
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(first) => first.to_uppercase().chain(c).collect(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envs() -> Vec<String> {
        ["development", "staging", "production"].map(String::from).to_vec()
    }

    #[test]
    fn the_products_example() {
        let intent = parse("Add a new layer for bike lanes from table public.bike_lanes", &envs()).unwrap();
        assert_eq!(
            intent,
            Intent::AddLayer {
                table: "public.bike_lanes".into(),
                layer: None,
                service: None,
                title: Some("Bike Lanes".into()),
                environments: vec![],
            }
        );
    }

    #[test]
    fn add_layer_with_service_id_and_environments() {
        let intent = parse(
            "add a layer called lanes from public.bike_lanes to the transportation service in staging and production",
            &envs(),
        )
        .unwrap();
        assert_eq!(
            intent,
            Intent::AddLayer {
                table: "public.bike_lanes".into(),
                layer: Some("lanes".into()),
                service: Some("transportation".into()),
                title: None,
                environments: vec!["staging".into(), "production".into()],
            }
        );
    }

    #[test]
    fn cache_ttl_in_units() {
        let got = parse("Change the cache TTL of parcels to 10 minutes in staging", &envs()).unwrap();
        assert_eq!(
            got,
            Intent::SetCacheTtl { layer: "parcels".into(), seconds: 600, environments: vec!["staging".into()] }
        );
        let got = parse("set roads cache ttl to 2 hours", &envs()).unwrap();
        assert_eq!(got, Intent::SetCacheTtl { layer: "roads".into(), seconds: 7200, environments: vec![] });
    }

    #[test]
    fn title_description_disable_remove_field() {
        let production = || vec!["production".to_string()];
        let cases = [
            (
                "set the title of layer roads to \"Streets (in production)\" in production",
                Intent::SetTitle {
                    layer: "roads".into(),
                    title: "Streets (in production)".into(),
                    environments: production(),
                },
            ),
            (
                "set the description of hydrants to Fire hydrants of the city in staging",
                Intent::SetDescription {
                    layer: "hydrants".into(),
                    description: "Fire hydrants of the city".into(),
                    environments: vec!["staging".into()],
                },
            ),
            ("disable the layer zoning", Intent::DisableLayer { layer: "zoning".into(), environments: vec![] }),
            (
                "Remove layer tree_canopy from production",
                Intent::RemoveLayer { layer: "tree_canopy".into(), environments: production() },
            ),
            (
                "add field surface to bike_lanes",
                Intent::AddField { layer: "bike_lanes".into(), field: "surface".into(), environments: vec![] },
            ),
        ];
        for (request, expected) in cases {
            assert_eq!(parse(request, &envs()).unwrap(), expected, "{request}");
        }
    }

    #[test]
    fn refusals_say_what_is_understood() {
        let err = parse("make it better", &envs()).unwrap_err();
        assert!(err.to_string().contains("add a layer from schema.table"), "{err}");
        assert_eq!(parse(&"x".repeat(MAX_REQUEST + 1), &envs()).unwrap_err(), IntentError::TooLong(MAX_REQUEST + 1));
        let Intent::AddLayer { layer, .. } =
            parse("add a layer from table public.bike_lanes called a;drop", &envs()).unwrap()
        else {
            panic!("an add-layer intent")
        };
        assert_eq!(layer.as_deref(), Some("a"), "only a name is taken from the words");
        assert!(parse("set the title of roads to \"a\u{1b}[2Jb\"", &envs()).is_err());
    }

    proptest::proptest! {
        /// Any text is read in linear time without a panic, and what comes out passed its checks.
        #[test]
        fn any_request_is_read_or_refused(request in "\\PC{0,300}") {
            if let Ok(intent) = parse(&request, &envs()) {
                proptest::prop_assert!(intent.check(&envs()).is_ok());
            }
        }
    }

    #[test]
    fn answers_must_have_the_exact_shape() {
        let known = envs();
        let ok =
            from_answer(r#"{"action":"add_layer","table":"public.bike_lanes"}"#, &known, Some("public.bike_lanes"));
        assert!(ok.is_ok(), "{ok:?}");
        let fenced = "Here you go:\n```json\n{\"action\":\"remove_layer\",\"layer\":\"roads\"}\n```";
        assert!(from_answer(fenced, &known, None).is_ok());
        for bad in [
            r#"{"action":"add_layer","table":"public.bike_lanes","sql":"DROP TABLE x"}"#,
            r#"{"action":"run_shell","cmd":"rm -rf /"}"#,
            r#"not json"#,
            r#"{"action":"add_layer","table":"public.bike_lanes","environments":["moon"]}"#,
            r#"{"action":"set_title","layer":"roads","title":"a\nb"}"#,
        ] {
            assert!(from_answer(bad, &known, None).is_err(), "{bad}");
        }
        let other =
            from_answer(r#"{"action":"add_layer","table":"public.parcels"}"#, &known, Some("public.bike_lanes"));
        assert!(matches!(other, Err(IntentError::OtherTable { .. })), "{other:?}");
        let sidestep = from_answer(r#"{"action":"remove_layer","layer":"parcels"}"#, &known, Some("public.bike_lanes"));
        assert!(sidestep.is_err());
    }
}
