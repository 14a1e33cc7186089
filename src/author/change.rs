//! An [`Intent`] written into the repository's own files, in the format each environment is written in,
//! where a person would write it, with every other byte of each file kept.
//!
//! Where a change lands: the environments the request names get it in their own file
//! (`environments/<env>/metadata.yaml` or `honua.hcl`), as an override of the entity when `common/`
//! defines it; no environment named means `common/`, i.e. every environment. A new layer goes after the
//! last layer of its service in that file (or at the end of its `layers:` list, or a new one).

use std::collections::BTreeMap;

use serde::Serialize;

use super::intent::Intent;
use super::introspect::TableInfo;
use super::text::{hcl_block_end, value_end, yaml_item_lines, yaml_scalar, Edits, Text};
use crate::config::node::{FileId, Node, Value};
use crate::config::source::{is_hcl_file, COMMON_ENV, ENVIRONMENTS_DIR};
use crate::config::{hcl, yaml, ConfigFormat, ConfigRepo, EnvName};

/// One file the change writes: its text before (none for a new file) and after.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileChange {
    pub path: String,
    #[serde(skip)]
    pub before: Option<String>,
    #[serde(skip)]
    pub after: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChangeError {
    #[error("{0}")]
    Refused(String),
    #[error("{path}: cannot be edited: {message}")]
    Unreadable { path: String, message: String },
}

pub(super) fn refuse<T>(message: impl Into<String>) -> Result<T, ChangeError> {
    Err(ChangeError::Refused(message.into()))
}

/// What the new layer is made of, besides the table.
#[derive(Debug, Clone, Default)]
pub struct LayerText {
    pub id: String,
    pub title: String,
    pub description: Option<String>,
    pub keywords: Vec<String>,
}

/// The repository's files being changed: the loaded tree for questions, the texts for edits.
pub struct Workspace<'a> {
    pub repo: &'a ConfigRepo,
    files: BTreeMap<String, String>,
    changed: BTreeMap<String, Option<String>>,
}

/// Where a change is written: `common/` or one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Common,
    Env(EnvName),
}

impl Scope {
    pub fn dir(&self) -> String {
        match self {
            Scope::Common => format!("{ENVIRONMENTS_DIR}/{COMMON_ENV}"),
            Scope::Env(env) => format!("{ENVIRONMENTS_DIR}/{env}"),
        }
    }

    pub fn of(intent: &Intent) -> Vec<Scope> {
        let envs = intent.environments();
        if envs.is_empty() || envs.iter().any(|e| e == COMMON_ENV) {
            vec![Scope::Common]
        } else {
            envs.iter().map(|e| Scope::Env(EnvName::new(e.clone()))).collect()
        }
    }
}

impl<'a> Workspace<'a> {
    pub fn new(repo: &'a ConfigRepo, files: &BTreeMap<String, Vec<u8>>) -> Self {
        let files = files.iter().filter_map(|(p, b)| Some((p.clone(), String::from_utf8(b.clone()).ok()?))).collect();
        Workspace { repo, files, changed: BTreeMap::new() }
    }

    /// The files written, in path order.
    pub fn changes(&self) -> Vec<FileChange> {
        self.changed
            .iter()
            .map(|(path, before)| FileChange {
                path: path.clone(),
                before: before.clone(),
                after: self.files[path].clone(),
            })
            .collect()
    }

    /// The repository's files with the change applied, as bytes (to load and plan).
    pub fn files(&self) -> BTreeMap<String, Vec<u8>> {
        self.files.iter().map(|(p, t)| (p.clone(), t.clone().into_bytes())).collect()
    }

    fn text(&self, path: &str) -> &str {
        self.files.get(path).map_or("", String::as_str)
    }

    fn write(&mut self, path: &str, after: String) {
        if self.files.get(path) == Some(&after) {
            return;
        }
        let before = self.files.get(path).cloned();
        self.changed.entry(path.to_string()).or_insert(before);
        self.files.insert(path.to_string(), after);
    }

    /// The format the scope is written in.
    fn format(&self, scope: &Scope) -> ConfigFormat {
        match scope {
            Scope::Env(env) => self.repo.format(env),
            Scope::Common => match self.repo.environments().next() {
                Some(env) => self.repo.format(env),
                None => ConfigFormat::Metadata,
            },
        }
    }

    /// The file a scope's change goes into: its metadata file, or its first Configuration 2.0 file
    /// (a new `honua.hcl` / `metadata.yaml` when it has none).
    fn target(&self, scope: &Scope) -> Result<String, ChangeError> {
        let dir = scope.dir();
        let in_dir = |p: &&String| p.rsplit_once('/').is_some_and(|(d, _)| d == dir);
        match self.format(scope) {
            ConfigFormat::Hcl => Ok(self
                .files
                .keys()
                .filter(in_dir)
                .find(|p| is_hcl_file(p.rsplit('/').next().unwrap_or_default()))
                .cloned()
                .unwrap_or_else(|| format!("{dir}/honua.hcl"))),
            ConfigFormat::Metadata => {
                let stems: &[&str] =
                    if *scope == Scope::Common { &["base-metadata", "metadata"] } else { &["metadata"] };
                let found = self.files.keys().filter(in_dir).find(|p| {
                    let name = p.rsplit('/').next().unwrap_or_default();
                    stems.iter().any(|s| name.rsplit_once('.').is_some_and(|(stem, _)| stem == *s))
                });
                match found {
                    Some(p) if p.ends_with(".json") => refuse(format!(
                        "{p} is JSON; this tool edits YAML metadata only (comments and layout kept). Make the change by hand, or convert the file to YAML"
                    )),
                    Some(p) => Ok(p.clone()),
                    None if *scope == Scope::Common => Ok(format!("{dir}/base-metadata.yaml")),
                    None => Ok(format!("{dir}/metadata.yaml")),
                }
            }
        }
    }

    /// The environments a scope reaches.
    fn reached(&self, scope: &Scope) -> Vec<EnvName> {
        match scope {
            Scope::Common => self.repo.environments().cloned().collect(),
            Scope::Env(env) => vec![env.clone()],
        }
    }

    /// A layer of an environment's effective configuration (metadata `layers[]`, or HCL `layer.<id>`).
    fn effective_layer(&self, env: &EnvName, id: &str) -> Option<Node> {
        let effective = self.repo.effective(env)?;
        match effective.format {
            ConfigFormat::Hcl => effective.metadata.get("layer")?.get(id).cloned(),
            ConfigFormat::Metadata => effective
                .metadata
                .get("layers")?
                .as_seq()?
                .iter()
                .find(|l| l.get_str("id").is_some_and(|i| i.eq_ignore_ascii_case(id)))
                .cloned(),
        }
    }

    /// Refuses a change to a layer some environment of the scope does not have.
    fn require_layer(&self, scope: &Scope, id: &str) -> Result<(), ChangeError> {
        let missing: Vec<EnvName> =
            self.reached(scope).into_iter().filter(|e| self.effective_layer(e, id).is_none()).collect();
        let Some(first) = missing.first() else { return Ok(()) };
        let known = self.layer_ids(first).unwrap_or_default();
        let names: Vec<String> = missing.iter().map(|e| e.to_string()).collect();
        refuse(format!(
            "there is no layer `{id}` in {}; layers there: {}",
            names.join(", "),
            if known.is_empty() { "(none)".into() } else { known.join(", ") }
        ))
    }

    fn layer_ids(&self, env: &EnvName) -> Option<Vec<String>> {
        let effective = self.repo.effective(env)?;
        Some(match effective.format {
            ConfigFormat::Hcl => {
                effective.metadata.get("layer")?.as_map()?.iter().map(|(k, _)| k.to_string()).collect()
            }
            ConfigFormat::Metadata => effective
                .metadata
                .get("layers")?
                .as_seq()?
                .iter()
                .filter_map(|l| l.get_str("id").map(String::from))
                .collect(),
        })
    }

    // ---- adding a layer -------------------------------------------------------------------------

    /// Writes a new layer over `table`. `service` is the metadata service (or, for Configuration 2.0,
    /// restricts the layer's protocol services to one); `data_source` the Configuration 2.0 data source.
    pub fn add_layer(
        &mut self,
        scope: &Scope,
        layer: &LayerText,
        table: &TableInfo,
        service: Option<&str>,
        data_source: Option<&str>,
    ) -> Result<Vec<String>, ChangeError> {
        for env in self.reached(scope) {
            if self.effective_layer(&env, &layer.id).is_some() {
                return refuse(format!(
                    "environment `{env}` already has a layer `{}`; name the new one (`… called ID`)",
                    layer.id
                ));
            }
        }
        let path = self.target(scope)?;
        match self.format(scope) {
            ConfigFormat::Metadata => {
                let service = service.ok_or_else(|| ChangeError::Refused("no service given".into()))?;
                self.add_yaml_layer(&path, scope, layer, table, service)
            }
            ConfigFormat::Hcl => {
                let data_source = data_source.ok_or_else(|| ChangeError::Refused("no data source given".into()))?;
                self.add_hcl_layer(&path, scope, layer, table, service, data_source)
            }
        }
    }

    fn add_yaml_layer(
        &mut self,
        path: &str,
        scope: &Scope,
        layer: &LayerText,
        table: &TableInfo,
        service: &str,
    ) -> Result<Vec<String>, ChangeError> {
        let mut notes = Vec::new();
        // Esri indexes follow `catalog.ordering`: the new layer goes last in its service, so the
        // indexes of the others do not move.
        let orderings: Vec<i64> = self
            .reached(scope)
            .iter()
            .filter_map(|e| self.repo.effective(e))
            .flat_map(|eff| eff.metadata.get("layers").and_then(Node::as_seq).unwrap_or_default().to_vec())
            .filter(|l| l.get_str("serviceId") == Some(service))
            .filter_map(|l| l.get_path(&["catalog", "ordering"]).and_then(Node::as_i64))
            .collect();
        let ordering = orderings.iter().max().map(|m| m + 1);
        if let Some(o) = ordering {
            notes.push(format!(
                "`catalog.ordering: {o}` puts it after the other layers of `{service}`, so their Esri indexes stay"
            ));
        }
        let text = self.text(path).to_string();
        let root = parse_yaml(path, &text)?;
        let t = Text::new(&text);
        let layers = root.as_ref().and_then(|r| r.get("layers")).and_then(Node::as_seq).filter(|s| !s.is_empty());
        let mut edits = Edits::default();
        match layers {
            Some(items) => {
                let after = items
                    .iter()
                    .rev()
                    .find(|l| l.get_str("serviceId") == Some(service))
                    .unwrap_or(&items[items.len() - 1]);
                if t.text[t.offset(after.loc)..].starts_with('{') || !t.line(after.loc.line).contains('-') {
                    return refuse(format!("{path}: its layers are written in flow style; add the layer by hand"));
                }
                let dash = t.line(after.loc.line).find('-').unwrap_or(0);
                let (_, last) = yaml_item_lines(&t, after);
                let at = t.line_end(last);
                let block = render_yaml_layer(dash, layer, table, service, ordering);
                edits.insert(at, ensure_newline_before(&text, at, block));
            }
            None => {
                if root.as_ref().and_then(|r| r.get("layers")).is_some() {
                    return refuse(format!(
                        "{path}: `layers:` is there but empty or not a list; add the layer by hand"
                    ));
                }
                let mut block = String::new();
                if !text.is_empty() && !text.ends_with('\n') {
                    block.push('\n');
                }
                if !text.is_empty() {
                    block.push('\n');
                }
                block.push_str("layers:\n");
                block.push_str(&render_yaml_layer(2, layer, table, service, ordering));
                edits.insert(text.len(), block);
            }
        }
        self.write(path, edits.apply(&text));
        Ok(notes)
    }

    fn add_hcl_layer(
        &mut self,
        path: &str,
        scope: &Scope,
        layer: &LayerText,
        table: &TableInfo,
        service: Option<&str>,
        data_source: &str,
    ) -> Result<Vec<String>, ChangeError> {
        let mut notes = Vec::new();
        // Served by the protocols its data source's layers are served by (or every enabled service).
        let env = self.reached(scope).into_iter().next();
        let effective = env.as_ref().and_then(|e| self.repo.effective(e));
        let services: Vec<String> = match service {
            Some(s) => vec![format!("service.{s}")],
            None => {
                let from_layers = effective.and_then(|e| e.metadata.get("layer")?.as_map().cloned()).and_then(|m| {
                    m.iter()
                        .filter(|(_, l)| {
                            l.get_str("data_source")
                                .is_some_and(|d| d.ends_with(&format!(".{data_source}")) || d == data_source)
                        })
                        .find_map(|(_, l)| {
                            l.get("services")
                                .and_then(Node::as_seq)
                                .map(|s| s.iter().filter_map(|n| n.as_str().map(String::from)).collect::<Vec<_>>())
                        })
                });
                from_layers.unwrap_or_else(|| {
                    effective
                        .and_then(|e| e.metadata.get("service")?.as_map().cloned())
                        .map(|m| {
                            m.iter()
                                .filter(|(_, s)| s.get("enabled").and_then(Node::as_bool).unwrap_or(true))
                                .map(|(k, _)| format!("service.{k}"))
                                .collect()
                        })
                        .unwrap_or_default()
                })
            }
        };
        if services.is_empty() {
            notes.push("no service serves it yet: add `services = [service.…]` to publish it".into());
        }
        let block = render_hcl_layer(layer, table, &services, data_source);
        let text = self.text(path).to_string();
        let parsed = parse_hcl(path, &text)?;
        let t = Text::new(&text);
        let last_layer = parsed
            .as_ref()
            .and_then(|r| r.get("layer"))
            .and_then(Node::as_map)
            .and_then(|m| m.iter().map(|(_, body)| body.loc).max_by_key(|l| (l.line, l.column)));
        let mut edits = Edits::default();
        match last_layer.and_then(|loc| hcl_block_end(&text, t.offset(loc))) {
            Some(end) => {
                let line_end = text[end..].find('\n').map_or(text.len(), |i| end + i + 1);
                let lead = if line_end == text.len() && !text.ends_with('\n') { "\n\n" } else { "\n" };
                edits.insert(line_end, format!("{lead}{block}"));
            }
            None => {
                let lead = match (text.is_empty(), text.ends_with('\n')) {
                    (true, _) => "",
                    (false, true) => "\n",
                    (false, false) => "\n\n",
                };
                edits.insert(text.len(), format!("{lead}{block}"));
            }
        }
        self.write(path, edits.apply(&text));
        Ok(notes)
    }

    // ---- changing a layer -----------------------------------------------------------------------

    /// Sets `key` (a path below the layer: `["title"]`, `["caching", "ttl"]`) to `value` in the scope's
    /// file, editing the layer's definition or override there, or adding an override.
    pub fn set_layer_value(&mut self, scope: &Scope, id: &str, key: &[&str], value: Scalar) -> Result<(), ChangeError> {
        self.require_layer(scope, id)?;
        let path = self.target(scope)?;
        let text = self.text(&path).to_string();
        let after = match self.format(scope) {
            ConfigFormat::Metadata => set_yaml(&path, &text, id, key, &value)?,
            ConfigFormat::Hcl => set_hcl(&path, &text, id, key, &value)?,
        };
        self.write(&path, after);
        Ok(())
    }

    pub fn set_cache_ttl(&mut self, scope: &Scope, id: &str, seconds: u32) -> Result<(), ChangeError> {
        if self.format(scope) == ConfigFormat::Hcl {
            return refuse(format!(
                "Configuration 2.0 has no per-layer cache TTL (Honua's `layer` block reads title, description, data_source, table, id_field, display_field, introspect_fields, geometry, fields and services); caching is set by `cache` blocks. Layer `{id}` is unchanged"
            ));
        }
        self.require_layer(scope, id)?;
        let path = self.target(scope)?;
        let text = self.text(&path).to_string();
        let mut after = set_yaml(&path, &text, id, &["caching", "ttl"], &Scalar::Int(seconds.into()))?;
        // A TTL on a cache that is off does nothing: switch it on where it is not said.
        let on = self.reached(scope).iter().all(|e| {
            self.effective_layer(e, id).and_then(|l| l.get_path(&["caching", "enabled"]).and_then(Node::as_bool))
                == Some(true)
        });
        if !on {
            after = set_yaml(&path, &after, id, &["caching", "enabled"], &Scalar::Bool(true))?;
        }
        self.write(&path, after);
        Ok(())
    }

    pub fn disable_layer(&mut self, scope: &Scope, id: &str) -> Result<(), ChangeError> {
        if self.format(scope) == ConfigFormat::Metadata {
            return refuse(format!(
                "a layer of Honua's metadata has no on/off switch; `remove {id}` takes it out (or disable its service with `enabled: false`)"
            ));
        }
        self.set_layer_value(scope, id, &["services"], Scalar::Raw("[]".into()))
    }

    pub fn remove_layer(&mut self, scope: &Scope, id: &str) -> Result<Vec<String>, ChangeError> {
        self.require_layer(scope, id)?;
        let format = self.format(scope);
        let mut paths: Vec<String> = match scope {
            // From common: every file that defines or overrides it, else environments keep a partial layer.
            Scope::Common => {
                self.files.keys().filter(|p| p.starts_with(&format!("{ENVIRONMENTS_DIR}/"))).cloned().collect()
            }
            Scope::Env(_) => vec![self.target(scope)?],
        };
        paths.retain(|p| is_hcl_file(p) == (format == ConfigFormat::Hcl));
        let mut removed = Vec::new();
        for path in paths {
            let text = self.text(&path).to_string();
            let after = match format {
                ConfigFormat::Metadata => remove_yaml(&path, &text, id)?,
                ConfigFormat::Hcl => remove_hcl(&path, &text, id)?,
            };
            if let Some(after) = after {
                self.write(&path, after);
                removed.push(path);
            }
        }
        if removed.is_empty() {
            let common = Scope::Common.dir();
            return refuse(format!(
                "layer `{id}` is defined in `{common}/`, which every environment shares; an environment cannot take out what `common/` defines. Remove it everywhere (leave out the environment), or move it out of `common/` first"
            ));
        }
        Ok(removed)
    }

    /// Appends a field for `column` to the layer's `fields`, in the file that lists them.
    pub fn add_field(&mut self, id: &str, column: &super::introspect::Column) -> Result<String, ChangeError> {
        let paths: Vec<String> =
            self.files.keys().filter(|p| p.starts_with(&format!("{ENVIRONMENTS_DIR}/"))).cloned().collect();
        for path in paths {
            let text = self.text(&path).to_string();
            let after = if is_hcl_file(&path) {
                add_hcl_field(&path, &text, id, column)?
            } else {
                add_yaml_field(&path, &text, id, column)?
            };
            if let Some(after) = after {
                self.write(&path, after);
                return Ok(path);
            }
        }
        refuse(format!("layer `{id}` lists no `fields` in any file; Honua then reads them from the table itself, so there is nothing to add"))
    }
}

/// A value written by an edit.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Str(String),
    Int(i64),
    Bool(bool),
    /// Written as is (`[]`).
    Raw(String),
}

impl Scalar {
    fn yaml(&self) -> String {
        match self {
            Scalar::Str(s) => yaml_scalar(s),
            Scalar::Int(n) => n.to_string(),
            Scalar::Bool(b) => b.to_string(),
            Scalar::Raw(r) => r.clone(),
        }
    }

    fn hcl(&self) -> String {
        match self {
            Scalar::Str(s) => hcl::quote(s),
            Scalar::Int(n) => n.to_string(),
            Scalar::Bool(b) => b.to_string(),
            Scalar::Raw(r) => r.clone(),
        }
    }
}

pub(super) fn parse_yaml(path: &str, text: &str) -> Result<Option<Node>, ChangeError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    yaml::parse(text, FileId(0))
        .map(|n| Some(n).filter(|n| matches!(n.value, Value::Map(_))))
        .map_err(|e| ChangeError::Unreadable { path: path.into(), message: e.to_string() })
}

fn parse_hcl(path: &str, text: &str) -> Result<Option<Node>, ChangeError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    hcl::parse(text, FileId(0), path).map(|p| Some(p.root)).map_err(|e| ChangeError::Unreadable {
        path: path.into(),
        message: format!("{}:{}: {}", e.line, e.column, e.message),
    })
}

fn yaml_layer<'n>(root: Option<&'n Node>, id: &str) -> Option<&'n Node> {
    root?.get("layers")?.as_seq()?.iter().find(|l| l.get_str("id").is_some_and(|i| i.eq_ignore_ascii_case(id)))
}

/// The column (0-based) the keys of a block mapping start at (its position is its first key's).
fn key_indent(map: &Node) -> usize {
    map.loc.column.saturating_sub(1) as usize
}

fn set_yaml(path: &str, text: &str, id: &str, key: &[&str], value: &Scalar) -> Result<String, ChangeError> {
    let root = parse_yaml(path, text)?;
    let t = Text::new(text);
    let mut edits = Edits::default();
    match yaml_layer(root.as_ref(), id) {
        Some(item) => {
            if t.text[t.offset(item.loc)..].starts_with('{') {
                return refuse(format!(
                    "{path}:{}: layer `{id}` is written in flow style (`{{…}}`); change it by hand",
                    item.loc.line
                ));
            }
            // Walk down the existing keys; write the rest as new lines under the deepest one found.
            let mut node = item;
            let mut depth = 0;
            while depth < key.len() {
                match node.get(key[depth]) {
                    Some(child) if depth + 1 == key.len() || matches!(child.value, Value::Map(_)) => {
                        if depth + 1 < key.len() && t.text[t.offset(child.loc)..].starts_with('{') {
                            return refuse(format!(
                                "{path}:{}: `{}` of layer `{id}` is written in flow style; change it by hand",
                                child.loc.line, key[depth]
                            ));
                        }
                        node = child;
                        depth += 1;
                    }
                    _ => break,
                }
            }
            if depth == key.len() {
                let start = t.offset(node.loc);
                edits.replace(start, value_end(text, start), value.yaml());
            } else {
                let indent = key_indent(node);
                let mut lines = String::new();
                for (i, k) in key[depth..].iter().enumerate() {
                    let pad = " ".repeat(indent + 2 * i);
                    if depth + i + 1 == key.len() {
                        lines.push_str(&format!("{pad}{k}: {}\n", value.yaml()));
                    } else {
                        lines.push_str(&format!("{pad}{k}:\n"));
                    }
                }
                let last = if depth == 0 { yaml_item_lines(&t, item).1 } else { super::text::last_line(node) };
                edits.insert(t.line_end(last), ensure_newline_before(text, t.line_end(last), lines));
            }
        }
        None => {
            // An override of the layer, in this file's `layers:` list (or a new one).
            let mut block = String::new();
            let layers = root.as_ref().and_then(|r| r.get("layers")).and_then(Node::as_seq).filter(|s| !s.is_empty());
            let dash = layers.map_or(2, |items| t.line(items[0].loc.line).find('-').unwrap_or(2));
            let pad = " ".repeat(dash);
            block.push_str(&format!("{pad}- id: {}\n", yaml_scalar(id)));
            for (i, k) in key.iter().enumerate() {
                let pad = " ".repeat(dash + 2 + 2 * i);
                if i + 1 == key.len() {
                    block.push_str(&format!("{pad}{k}: {}\n", value.yaml()));
                } else {
                    block.push_str(&format!("{pad}{k}:\n"));
                }
            }
            match layers {
                Some(items) => {
                    let (_, last) = yaml_item_lines(&t, &items[items.len() - 1]);
                    edits.insert(t.line_end(last), ensure_newline_before(text, t.line_end(last), block));
                }
                None => {
                    if root.as_ref().and_then(|r| r.get("layers")).is_some() {
                        return refuse(format!(
                            "{path}: `layers:` is there but empty or not a list; change it by hand"
                        ));
                    }
                    let lead = if text.is_empty() {
                        ""
                    } else if text.ends_with('\n') {
                        "\n"
                    } else {
                        "\n\n"
                    };
                    edits.insert(text.len(), format!("{lead}layers:\n{block}"));
                }
            }
        }
    }
    Ok(edits.apply(text))
}

/// A newline first when the insertion point is the end of a file without one.
fn ensure_newline_before(text: &str, at: usize, block: String) -> String {
    if at == text.len() && !text.is_empty() && !text.ends_with('\n') {
        format!("\n{block}")
    } else {
        block
    }
}

fn remove_yaml(path: &str, text: &str, id: &str) -> Result<Option<String>, ChangeError> {
    let root = parse_yaml(path, text)?;
    let Some(item) = yaml_layer(root.as_ref(), id) else { return Ok(None) };
    let t = Text::new(text);
    if !t.line(item.loc.line).contains('-') {
        return refuse(format!("{path}:{}: layer `{id}` is written in flow style; remove it by hand", item.loc.line));
    }
    let (mut top, last) = yaml_item_lines(&t, item);
    // The only layer of an environment's file goes with its key: an empty `layers:` would override
    // the shared list with nothing.
    let list = root.as_ref().and_then(|r| r.as_map()).and_then(|m| m.entry("layers"));
    if let Some(list) = list.filter(|l| l.value.as_seq().is_some_and(|s| s.len() == 1)) {
        top = super::text::comments_above(&t, list.key_loc.line);
    }
    let (top, last) = super::text::removal_lines(&t, top, last);
    let mut edits = Edits::default();
    edits.replace(t.line_start(top), t.line_end(last), "");
    Ok(Some(edits.apply(text)))
}

fn add_yaml_field(
    path: &str,
    text: &str,
    id: &str,
    column: &super::introspect::Column,
) -> Result<Option<String>, ChangeError> {
    let root = parse_yaml(path, text)?;
    let Some(fields) = yaml_layer(root.as_ref(), id).and_then(|l| l.get("fields")).and_then(Node::as_seq) else {
        return Ok(None);
    };
    if fields.iter().any(|f| f.get_str("name").is_some_and(|n| n.eq_ignore_ascii_case(&column.name))) {
        return refuse(format!("{path}: layer `{id}` already lists field `{}`", column.name));
    }
    let Some(last_field) = fields.last() else { return Ok(None) };
    let t = Text::new(text);
    let dash = t.line(last_field.loc.line).find('-').unwrap_or(0);
    let (_, last) = yaml_item_lines(&t, last_field);
    let flow = t.text[t.offset(last_field.loc)..].starts_with('{');
    let line = yaml_field(dash, column, flow);
    let mut edits = Edits::default();
    edits.insert(t.line_end(last), ensure_newline_before(text, t.line_end(last), line));
    Ok(Some(edits.apply(text)))
}

fn yaml_field(dash: usize, c: &super::introspect::Column, flow: bool) -> String {
    let pad = " ".repeat(dash);
    let mut parts = vec![
        format!("name: {}", yaml_scalar(&c.name)),
        format!("type: {}", c.field_type),
        format!("nullable: {}", c.nullable),
    ];
    if let Some(n) = c.max_length {
        parts.push(format!("maxLength: {n}"));
    }
    if let Some(p) = c.precision {
        parts.push(format!("precision: {p}"));
    }
    if let Some(s) = c.scale {
        parts.push(format!("scale: {s}"));
    }
    if flow {
        format!("{pad}- {{{}}}\n", parts.join(", "))
    } else {
        let mut out = format!("{pad}- {}\n", parts[0]);
        for p in &parts[1..] {
            out.push_str(&format!("{pad}  {p}\n"));
        }
        out
    }
}

fn render_yaml_layer(
    dash: usize,
    layer: &LayerText,
    table: &TableInfo,
    service: &str,
    ordering: Option<i64>,
) -> String {
    let p = " ".repeat(dash);
    let k = " ".repeat(dash + 2);
    let mut out = format!("{p}- id: {}\n", yaml_scalar(&layer.id));
    out.push_str(&format!("{k}serviceId: {}\n", yaml_scalar(service)));
    out.push_str(&format!("{k}title: {}\n", yaml_scalar(&layer.title)));
    if let Some(d) = &layer.description {
        out.push_str(&format!("{k}description: {}\n", yaml_scalar(d)));
    }
    if !layer.keywords.is_empty() {
        let words: Vec<String> = layer.keywords.iter().map(|w| yaml_scalar(w)).collect();
        out.push_str(&format!("{k}keywords: [{}]\n", words.join(", ")));
    }
    if let Some(o) = ordering {
        out.push_str(&format!("{k}catalog: {{ordering: {o}}}\n"));
    }
    let g = &table.geometry;
    out.push_str(&format!("{k}geometryType: {}\n", g.geometry_type));
    out.push_str(&format!("{k}idField: {}\n", yaml_scalar(&table.primary_key)));
    out.push_str(&format!("{k}displayField: {}\n", yaml_scalar(table.display_field())));
    out.push_str(&format!("{k}geometryField: {}\n", yaml_scalar(&g.column)));
    let mut crs = vec!["\"EPSG:4326\"".to_string()];
    if g.srid > 0 && g.srid != 4326 {
        crs.push(format!("\"EPSG:{}\"", g.srid));
    }
    out.push_str(&format!("{k}crs: [{}]\n", crs.join(", ")));
    if let Some([x0, y0, x1, y1]) = table.extent {
        out.push_str(&format!("{k}extent:\n{k}  bbox: [[{x0}, {y0}, {x1}, {y1}]]\n{k}  crs: http://www.opengis.net/def/crs/OGC/1.3/CRS84\n"));
    }
    out.push_str(&format!(
        "{k}storage:\n{k}  table: {}\n{k}  geometryColumn: {}\n{k}  primaryKey: {}\n{k}  srid: {}\n",
        yaml_scalar(&table.qualified()),
        yaml_scalar(&g.column),
        yaml_scalar(&table.primary_key),
        g.srid
    ));
    out.push_str(&format!("{k}fields:\n"));
    for c in &table.columns {
        out.push_str(&yaml_field(dash + 4, c, true));
    }
    out
}

fn hcl_layer<'n>(root: Option<&'n Node>, id: &str) -> Option<&'n Node> {
    root?.get("layer")?.get(id)
}

fn set_hcl(path: &str, text: &str, id: &str, key: &[&str], value: &Scalar) -> Result<String, ChangeError> {
    let root = parse_hcl(path, text)?;
    let t = Text::new(text);
    let mut edits = Edits::default();
    let [key] = key else { return refuse("a nested Configuration 2.0 setting is changed by hand") };
    match hcl_layer(root.as_ref(), id) {
        Some(block) => match block.get(key) {
            Some(existing) => {
                let start = t.offset(existing.loc);
                let end = if text[start..].starts_with('[') {
                    text[start..].find(']').map_or(start, |i| start + i + 1)
                } else {
                    value_end(text, start)
                };
                edits.replace(start, end, value.hcl());
            }
            None => {
                let open = t.line_end(block.loc.line);
                edits.insert(open, format!("  {key} = {}\n", value.hcl()));
            }
        },
        None => {
            let lead = if text.is_empty() {
                ""
            } else if text.ends_with('\n') {
                "\n"
            } else {
                "\n\n"
            };
            edits.insert(text.len(), format!("{lead}layer {} {{\n  {key} = {}\n}}\n", hcl::quote(id), value.hcl()));
        }
    }
    Ok(edits.apply(text))
}

fn remove_hcl(path: &str, text: &str, id: &str) -> Result<Option<String>, ChangeError> {
    let root = parse_hcl(path, text)?;
    let Some(block) = hcl_layer(root.as_ref(), id) else { return Ok(None) };
    let t = Text::new(text);
    let start = t.offset(block.loc);
    let Some(end) = hcl_block_end(text, start) else {
        return refuse(format!("{path}:{}: the block of layer `{id}` does not close", block.loc.line));
    };
    let top = super::text::comments_above(&t, block.loc.line);
    let mut cut_end = text[end..].find('\n').map_or(text.len(), |i| end + i + 1);
    // One blank line after the block goes with it, so blocks stay one blank line apart.
    if text[cut_end..].starts_with('\n') {
        cut_end += 1;
    }
    let mut edits = Edits::default();
    edits.replace(t.line_start(top), cut_end, "");
    Ok(Some(edits.apply(text)))
}

fn add_hcl_field(
    path: &str,
    text: &str,
    id: &str,
    column: &super::introspect::Column,
) -> Result<Option<String>, ChangeError> {
    let root = parse_hcl(path, text)?;
    let Some(fields) = hcl_layer(root.as_ref(), id).and_then(|b| b.get("fields")) else { return Ok(None) };
    let Some(map) = fields.as_map() else { return Ok(None) };
    if map.get(&column.name).is_some() {
        return refuse(format!("{path}: layer `{id}` already lists field `{}`", column.name));
    }
    let t = Text::new(text);
    let start = t.offset(fields.loc);
    let Some(end) = hcl_block_end(text, start) else { return Ok(None) };
    let indent = map.entries.first().map_or(4, |e| e.key_loc.column.saturating_sub(1) as usize);
    let pad = " ".repeat(indent);
    let field_type = crate::config::convert::field_type(&column.field_type);
    let entry = format!(
        "{pad}{} = {{\n{pad}  type     = {}\n{pad}  nullable = {}\n{pad}}}\n",
        column.name,
        hcl::quote(&field_type),
        column.nullable
    );
    // Before the line holding the closing brace.
    let close_line = text[..end].rfind('\n').map_or(0, |i| i + 1);
    let mut edits = Edits::default();
    edits.insert(close_line, entry);
    Ok(Some(edits.apply(text)))
}

fn render_hcl_layer(layer: &LayerText, table: &TableInfo, services: &[String], data_source: &str) -> String {
    use serde_json::{json, Map as JsonMap, Value as Json};
    let g = &table.geometry;
    let mut body = JsonMap::new();
    body.insert("title".into(), json!(layer.title));
    if let Some(d) = &layer.description {
        body.insert("description".into(), json!(d));
    }
    body.insert("data_source".into(), json!(format!("data_source.{data_source}")));
    body.insert("table".into(), json!(table.qualified()));
    body.insert("id_field".into(), json!(table.primary_key));
    body.insert("display_field".into(), json!(table.display_field()));
    body.insert("introspect_fields".into(), json!(true));
    body.insert("geometry".into(), json!({"column": g.column, "type": g.geometry_type, "srid": g.srid}));
    let mut fields = JsonMap::new();
    for c in &table.columns {
        fields.insert(
            c.name.clone(),
            json!({"type": crate::config::convert::field_type(&c.field_type), "nullable": c.nullable}),
        );
    }
    fields.insert(g.column.clone(), json!({"type": "geometry"}));
    body.insert("fields".into(), Json::Object(fields));
    body.insert("services".into(), json!(services));
    let tree = json!({"layer": {layer.id.clone(): Json::Object(body)}});
    hcl::render(&Node::from_json(&tree, Default::default()))
}
