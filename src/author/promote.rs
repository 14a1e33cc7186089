//! `honua promote FROM TO`: the entities whose effective configuration differs between two environments
//! are written into TO's files so that TO's effective configuration equals FROM's for them.
//!
//! Both environments sit on the same `common/` layer, so an entity's effective value is `common ⊕ the
//! environment's own override`. Copying FROM's override of the entity over TO's (or removing TO's
//! when FROM has none, or adding FROM's when TO has none) therefore makes them equal, and keeps FROM's
//! own text, comments included. The result is proved: the repository is loaded again and every promoted
//! entity compared.
//!
//! Never promoted, and listed as kept: data sources (connection strings, credentials), the server
//! settings (`config.yaml`; Configuration 2.0's `honua`, `rate_limit`, `cache` blocks and variables).

use serde::Serialize;

use super::change::{refuse, ChangeError, FileChange};
use super::text::{comments_above, hcl_block_end, last_line, yaml_item_lines, Text};
use crate::config::node::{FileId, Node};
use crate::config::source::{is_hcl_file, RepoFiles, ENVIRONMENTS_DIR};
use crate::config::{hcl, ConfigFormat, ConfigRepo, EnvName};
use crate::diff::values;

/// Metadata lists of entities keyed by `id` that a promotion carries.
const YAML_LISTS: [&str; 4] = ["services", "layers", "folders", "styles"];
/// Top-level metadata sections carried whole.
const YAML_SECTIONS: [&str; 1] = ["catalog"];
/// Configuration 2.0 block kinds a promotion carries.
const HCL_KINDS: [&str; 2] = ["service", "layer"];

/// One entity: `layer parcels`, `catalog`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Entity {
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl std::fmt::Display for Entity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.id {
            Some(id) => write!(f, "{} {id}", self.kind),
            None => f.write_str(&self.kind),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Promotion {
    pub from: EnvName,
    pub to: EnvName,
    /// The entities written, with what happens to TO's text for each.
    pub promoted: Vec<(Entity, &'static str)>,
    /// What is never promoted and stays as TO has it.
    pub kept: Vec<String>,
    #[serde(skip)]
    pub changes: Vec<FileChange>,
    #[serde(skip)]
    pub files: std::collections::BTreeMap<String, Vec<u8>>,
}

/// Plans the promotion of `from` to `to` in `repo` (loaded from `files`); `only` restricts it to the
/// named entity ids (`parcels`, `catalog`).
pub fn promote(
    repo: &ConfigRepo,
    files: &RepoFiles,
    from: &EnvName,
    to: &EnvName,
    only: &[String],
) -> Result<Promotion, ChangeError> {
    for env in [from, to] {
        if !repo.has_environment(env.as_str()) {
            let known: Vec<String> = repo.environments().map(|e| e.to_string()).collect();
            return refuse(format!("there is no environment `{env}`; environments: {}", known.join(", ")));
        }
        if repo.is_unreadable(env) {
            return refuse(format!(
                "environment `{env}` has files that cannot be read (see `honua validate`); fix them first"
            ));
        }
    }
    if from == to {
        return refuse("FROM and TO are the same environment");
    }
    let format = repo.format(from);
    if repo.format(to) != format {
        return refuse(format!(
            "`{from}` is written as {} and `{to}` as {}; convert both to one format first (`honua convert --to hcl`)",
            format.as_str(),
            repo.format(to).as_str()
        ));
    }
    let a = &repo.effective(from).expect("checked").metadata;
    let b = &repo.effective(to).expect("checked").metadata;
    let mut differing = Vec::new();
    let mut kept = Vec::new();
    match format {
        ConfigFormat::Metadata => {
            for section in YAML_SECTIONS {
                if !same_opt(a.get(section), b.get(section)) {
                    differing.push(Entity { kind: section.into(), id: None });
                }
            }
            for list in YAML_LISTS {
                for id in ids(a.get(list)).into_iter().chain(ids(b.get(list))) {
                    let e = Entity { kind: singular(list).into(), id: Some(id.clone()) };
                    if !differing.contains(&e) && !same_opt(entity(a.get(list), &id), entity(b.get(list), &id)) {
                        differing.push(e);
                    }
                }
            }
            for ds in ids(b.get("dataSources")) {
                kept.push(format!("data source `{ds}` (its connection string stays as `{to}` has it)"));
            }
            kept.push(format!("server settings (`{ENVIRONMENTS_DIR}/{to}/config.yaml`)"));
        }
        ConfigFormat::Hcl => {
            for kind in HCL_KINDS {
                for id in labels(a.get(kind)).into_iter().chain(labels(b.get(kind))) {
                    let e = Entity { kind: kind.into(), id: Some(id.clone()) };
                    if !differing.contains(&e)
                        && !same_opt(a.get(kind).and_then(|m| m.get(&id)), b.get(kind).and_then(|m| m.get(&id)))
                    {
                        differing.push(e);
                    }
                }
            }
            for ds in labels(b.get("data_source")) {
                kept.push(format!("data source `{ds}` (its connection stays as `{to}` has it)"));
            }
            kept.push("server settings (`honua`, `rate_limit` and `cache` blocks, variables)".into());
        }
    }
    if !only.is_empty() {
        let unknown: Vec<&String> = only
            .iter()
            .filter(|o| !differing.iter().any(|e| e.id.as_deref().unwrap_or(&e.kind) == o.as_str()))
            .collect();
        if !unknown.is_empty() {
            let listed: Vec<String> =
                differing.iter().map(|e| e.id.clone().unwrap_or_else(|| e.kind.clone())).collect();
            return refuse(format!(
                "{} does not differ between `{from}` and `{to}` (or does not exist); what differs: {}",
                unknown.iter().map(|u| format!("`{u}`")).collect::<Vec<_>>().join(", "),
                if listed.is_empty() { "nothing".into() } else { listed.join(", ") }
            ));
        }
        differing.retain(|e| only.iter().any(|o| e.id.as_deref().unwrap_or(&e.kind) == o.as_str()));
    }

    let text_of = |env: &EnvName| -> Result<(String, String), ChangeError> {
        let dir = format!("{ENVIRONMENTS_DIR}/{env}/");
        let path = files
            .files
            .keys()
            .filter(|p| p.starts_with(&dir) && !p[dir.len()..].contains('/'))
            .find(|p| match format {
                ConfigFormat::Hcl => is_hcl_file(p),
                ConfigFormat::Metadata => p[dir.len()..].starts_with("metadata."),
            })
            .cloned()
            .unwrap_or_else(|| {
                format!("{dir}{}", if format == ConfigFormat::Hcl { "honua.hcl" } else { "metadata.yaml" })
            });
        if path.ends_with(".json") {
            return refuse(format!("{path} is JSON; this tool edits YAML metadata only"));
        }
        let text = files.files.get(&path).map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
        Ok((path, text))
    };
    let (_, from_text) = text_of(from)?;
    let (to_path, to_before) = text_of(to)?;
    let mut to_text = to_before.clone();
    let mut promoted = Vec::new();
    for e in &differing {
        let (next, what) = match format {
            ConfigFormat::Metadata => carry_yaml(&from_text, &to_text, e)?,
            ConfigFormat::Hcl => carry_hcl(&from_text, &to_text, &to_path, e)?,
        };
        to_text = next;
        promoted.push((e.clone(), what));
    }
    let mut new_files = files.files.clone();
    let mut changes = Vec::new();
    if to_text != to_before {
        new_files.insert(to_path.clone(), to_text.clone().into_bytes());
        changes.push(FileChange {
            path: to_path.clone(),
            before: files.files.contains_key(&to_path).then_some(to_before),
            after: to_text,
        });
    }
    // The proof: loaded again, TO has FROM's value of every promoted entity.
    let after = ConfigRepo::from_files(RepoFiles { files: new_files.clone(), ..files.clone() }, "promote".into());
    let a2 = &after.effective(from).expect("still there").metadata;
    let b2 = &after.effective(to).expect("still there").metadata;
    for (e, _) in &promoted {
        let (x, y) = match (&e.id, format) {
            (None, _) => (a2.get(&e.kind), b2.get(&e.kind)),
            (Some(id), ConfigFormat::Metadata) => {
                let list = plural(&e.kind);
                (entity(a2.get(list), id), entity(b2.get(list), id))
            }
            (Some(id), ConfigFormat::Hcl) => {
                (a2.get(&e.kind).and_then(|m| m.get(id)), b2.get(&e.kind).and_then(|m| m.get(id)))
            }
        };
        if !same_opt(x, y) {
            let show = |n: Option<&Node>| n.map_or("(none)".to_string(), |n| n.to_json().to_string());
            return refuse(format!(
                "after writing, {e} of `{to}` still differs from `{from}` (a layering this tool cannot express): {} against {}; promote it by hand",
                show(y),
                show(x)
            ));
        }
    }
    Ok(Promotion { from: from.clone(), to: to.clone(), promoted, kept, changes, files: new_files })
}

fn same_opt(a: Option<&Node>, b: Option<&Node>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => values::same(a, b),
        (None, None) => true,
        _ => false,
    }
}

fn singular(list: &str) -> &str {
    list.strip_suffix('s').unwrap_or(list)
}

fn plural(kind: &str) -> &'static str {
    YAML_LISTS.iter().find(|l| singular(l) == kind).copied().unwrap_or("layers")
}

fn ids(list: Option<&Node>) -> Vec<String> {
    list.and_then(Node::as_seq).unwrap_or_default().iter().filter_map(|n| n.get_str("id").map(String::from)).collect()
}

fn labels(map: Option<&Node>) -> Vec<String> {
    map.and_then(Node::as_map).map(|m| m.iter().map(|(k, _)| k.to_string()).collect()).unwrap_or_default()
}

fn entity<'n>(list: Option<&'n Node>, id: &str) -> Option<&'n Node> {
    list?.as_seq()?.iter().find(|n| n.get_str("id").is_some_and(|i| i.eq_ignore_ascii_case(id)))
}

/// A metadata file's tree (the repository loaded it already, so a file that does not parse is none).
fn parse_yaml(text: &str) -> Option<Node> {
    super::change::parse_yaml("", text).ok().flatten()
}

/// The lines of `e` in a metadata file: `(first, last, dash indent)`.
fn yaml_lines(text: &str, root: Option<&Node>, e: &Entity, removal: bool) -> Option<(u32, u32, usize)> {
    let root = root?;
    let t = Text::new(text);
    match &e.id {
        None => {
            // Without the comments above: at the top of a file they are the file's header.
            let entry = root.as_map()?.entry(&e.kind)?;
            Some((entry.key_loc.line, last_line(&entry.value).max(entry.key_loc.line), 0))
        }
        Some(id) => {
            let list = root.as_map()?.entry(plural(&e.kind))?;
            let item = entity(Some(&list.value), id)?;
            let (mut top, last) = yaml_item_lines(&t, item);
            let dash = t.line(item.loc.line).find('-').unwrap_or(0);
            // The only item goes with its key: an empty `layers:` would override the shared list with nothing.
            if removal && list.value.as_seq().is_some_and(|s| s.len() == 1) {
                top = comments_above(&t, list.key_loc.line);
            }
            Some((top, last, dash))
        }
    }
}

/// Re-indents lines by `delta` spaces.
fn reindent(block: &str, from: usize, to: usize) -> String {
    if from == to {
        return block.to_string();
    }
    block
        .split_inclusive('\n')
        .map(|line| {
            if line.trim().is_empty() {
                return line.to_string();
            }
            if to > from {
                format!("{}{line}", " ".repeat(to - from))
            } else {
                let strip = line.chars().take_while(|c| *c == ' ').count().min(from - to);
                line[strip..].to_string()
            }
        })
        .collect()
}

fn carry_yaml(from_text: &str, to_text: &str, e: &Entity) -> Result<(String, &'static str), ChangeError> {
    let from_root = parse_yaml(from_text);
    let to_root = parse_yaml(to_text);
    let ft = Text::new(from_text);
    let tt = Text::new(to_text);
    let from_block = yaml_lines(from_text, from_root.as_ref(), e, false).map(|(a, b, dash)| {
        let mut s = from_text[ft.line_start(a)..ft.line_end(b)].to_string();
        if !s.ends_with('\n') {
            s.push('\n');
        }
        (s, dash)
    });
    let to_lines = yaml_lines(to_text, to_root.as_ref(), e, false);
    let mut out = String::with_capacity(to_text.len() + 256);
    let what = match (from_block, to_lines) {
        (Some((block, from_dash)), Some((a, b, to_dash))) => {
            out.push_str(&to_text[..tt.line_start(a)]);
            out.push_str(&reindent(&block, from_dash, to_dash));
            out.push_str(&to_text[tt.line_end(b)..]);
            "replaced by the source's override"
        }
        (None, Some(_)) => {
            let (a, b, _) = yaml_lines(to_text, to_root.as_ref(), e, true).expect("found above");
            let (a, b) = super::text::removal_lines(&tt, a, b);
            out.push_str(&to_text[..tt.line_start(a)]);
            out.push_str(&to_text[tt.line_end(b)..]);
            "its own override removed (the shared definition applies)"
        }
        (Some((block, from_dash)), None) => {
            let list = to_root.as_ref().and_then(|r| r.get(plural(&e.kind)));
            match (&e.id, list.and_then(Node::as_seq).filter(|s| !s.is_empty())) {
                // After the last item of TO's list, at its indentation.
                (Some(_), Some(items)) => {
                    let last = &items[items.len() - 1];
                    let (_, end) = yaml_item_lines(&tt, last);
                    let dash = tt.line(last.loc.line).find('-').unwrap_or(0);
                    out.push_str(&to_text[..tt.line_end(end)]);
                    if !out.ends_with('\n') {
                        out.push('\n');
                    }
                    out.push_str(&reindent(&block, from_dash, dash));
                    out.push_str(&to_text[tt.line_end(end)..]);
                }
                (Some(_), None) if list.is_some() => {
                    return refuse(format!(
                        "`{}:` of the target is empty or not a list; promote {e} by hand",
                        plural(&e.kind)
                    ));
                }
                // At the end of the file: a section as it is, an item under a new list.
                (id, _) => {
                    out.push_str(to_text);
                    if !out.is_empty() && !out.ends_with('\n') {
                        out.push('\n');
                    }
                    if id.is_some() {
                        out.push_str(&format!("\n{}:\n", plural(&e.kind)));
                        out.push_str(&reindent(&block, from_dash, 2));
                    } else {
                        out.push_str(&block);
                    }
                }
            }
            "added from the source's override"
        }
        (None, None) => {
            return refuse(format!("{e} differs but neither environment's own file defines it; promote it by hand"))
        }
    };
    Ok((out, what))
}

fn hcl_range(text: &str, e: &Entity, path: &str) -> Result<Option<(usize, usize)>, ChangeError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let root = hcl::parse(text, FileId(0), path)
        .map_err(|err| ChangeError::Unreadable { path: path.into(), message: err.message })?
        .root;
    let Some(block) = root.get(&e.kind).and_then(|m| m.get(e.id.as_deref().unwrap_or_default())) else {
        return Ok(None);
    };
    let t = Text::new(text);
    let top = comments_above(&t, block.loc.line);
    let start = t.offset(block.loc);
    let end = hcl_block_end(text, start).ok_or_else(|| ChangeError::Unreadable {
        path: path.into(),
        message: format!("the block of {e} does not close"),
    })?;
    let end = text[end..].find('\n').map_or(text.len(), |i| end + i + 1);
    Ok(Some((t.line_start(top), end)))
}

fn carry_hcl(from_text: &str, to_text: &str, to_path: &str, e: &Entity) -> Result<(String, &'static str), ChangeError> {
    let from = hcl_range(from_text, e, "source")?;
    let to = hcl_range(to_text, e, to_path)?;
    Ok(match (from, to) {
        (Some((a, b)), Some((c, d))) => {
            (format!("{}{}{}", &to_text[..c], &from_text[a..b], &to_text[d..]), "replaced by the source's block")
        }
        (None, Some((c, mut d))) => {
            if to_text[d..].starts_with('\n') {
                d += 1;
            }
            (format!("{}{}", &to_text[..c], &to_text[d..]), "its own block removed (the shared definition applies)")
        }
        (Some((a, b)), None) => {
            let lead = if to_text.is_empty() {
                ""
            } else if to_text.ends_with('\n') {
                "\n"
            } else {
                "\n\n"
            };
            (format!("{to_text}{lead}{}", &from_text[a..b]), "added from the source's block")
        }
        (None, None) => {
            return refuse(format!("{e} differs but neither environment's own file defines it; promote it by hand"))
        }
    })
}
