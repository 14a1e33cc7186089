//! The config repository: its files, documents with positions, dialect normalization, environment
//! layering and the effective configuration Honua loads.

pub mod commit;
pub mod convert;
pub mod dialect;
pub mod hcl;
pub mod layering;
pub mod node;
pub mod resource;
pub mod secrets;
pub mod served;
pub mod source;
#[doc(hidden)]
pub mod synthetic;
pub mod yaml;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::diagnostic::{Diagnostic, Place};
use node::{FileId, Loc, Node, Value};
use source::{RepoFiles, SourceError, SourceMap, COMMON_ENV, ENVIRONMENTS_DIR};

/// The 7-character abbreviation of a commit, as Git shows it (the whole text when shorter).
pub fn short_sha(sha: &str) -> &str {
    match sha.char_indices().nth(7) {
        Some((end, _)) => &sha[..end],
        None => sha,
    }
}

/// The known name closest to a typo (`titel` → `title`), when it is close enough to be what was meant;
/// else a known name the typed one extends (`dataType` → `type`).
pub fn nearest<'a>(typed: &str, known: &[&'a str]) -> Option<&'a str> {
    let typed = typed.to_lowercase();
    known
        .iter()
        .map(|name| (strsim::damerau_levenshtein(&typed, &name.to_lowercase()), *name))
        .filter(|(distance, name)| *distance <= (name.len().max(typed.len()) / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
        .or_else(|| {
            known
                .iter()
                .copied()
                .filter(|name| name.len() >= 4 && typed.len() > name.len())
                .filter(|name| typed.ends_with(&name.to_lowercase()) || typed.starts_with(&name.to_lowercase()))
                .max_by_key(|name| name.len())
        })
}

/// The name of an environment (`production`), as discovered from `environments/<name>/`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String)]
pub struct EnvName(String);

/// Environments sort in promotion order (development, test, staging, production), then by name, so
/// every listing reads the way changes travel.
impl Ord for EnvName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.rank(), &self.0).cmp(&(other.rank(), &other.0))
    }
}

impl PartialOrd for EnvName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl EnvName {
    pub fn new(name: impl Into<String>) -> Self {
        EnvName(name.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn rank(&self) -> u8 {
        match self.0.as_str() {
            "development" | "dev" => 0,
            "test" | "testing" | "qa" => 1,
            "staging" | "stage" => 2,
            "production" | "prod" => 4,
            _ => 3,
        }
    }

    /// The short form used in deployment ids: production→prod, staging→stage, development→dev.
    pub fn short(&self) -> &str {
        match self.0.as_str() {
            "production" => "prod",
            "staging" => "stage",
            "development" => "dev",
            other => other,
        }
    }
}

impl fmt::Display for EnvName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// One parsed file of the repository.
#[derive(Debug, Clone)]
pub struct Document {
    pub file: FileId,
    pub root: Node,
}

named! {
    /// Which configuration generation an environment is written in.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
    pub enum ConfigFormat {
        /// JSON-era metadata (`metadata.yaml`/`.json`, `datasources`, `config`), Honua before 2025-11.
        #[default]
        Metadata,
        /// Configuration 2.0: `.hcl`/`.honua` files, what Honua reads since 2025-11-11.
        Hcl,
    }
}

#[derive(Debug, Clone, Default)]
struct EnvironmentDocs {
    /// A file of this environment exists but could not be read; its effective config is not trusted.
    unreadable: bool,
    metadata: Option<Document>,
    datasources: Option<Document>,
    config: Option<Document>,
    /// Configuration 2.0 files, in path order.
    hcl: Vec<Document>,
    /// Built on first use and shared: validation and diff of one revision both need it.
    effective: std::sync::OnceLock<EffectiveConfig>,
}

/// A loaded config repository at one revision.
#[derive(Debug, Clone)]
pub struct ConfigRepo {
    pub sources: SourceMap,
    /// The commit SHA, or for a directory a content digest (`dir:<sha256>`) so plans stay reproducible.
    pub revision: String,
    common: Option<Document>,
    /// Configuration 2.0 files of the common layer, in path order.
    common_hcl: Vec<Document>,
    /// The common layer exists but could not be read: every environment is then unreadable.
    common_unreadable: bool,
    environments: BTreeMap<EnvName, EnvironmentDocs>,
    pub policy: Option<Document>,
    /// Problems met while loading: unreadable files, syntax errors, refused links, dialect warnings.
    pub diagnostics: Vec<Diagnostic>,
}

/// What Honua loads for one environment: metadata (server format, layered) and server config; or, for
/// Configuration 2.0, the layered HCL tree (see [`hcl`]) in `metadata` and no `config`.
#[derive(Debug, Clone)]
pub struct EffectiveConfig {
    pub environment: EnvName,
    pub format: ConfigFormat,
    pub metadata: Node,
    pub config: Option<Node>,
}

impl ConfigRepo {
    /// Loads a checked-out repository from a directory.
    pub fn load_dir(root: &Path) -> Result<Self, SourceError> {
        let files = source::read_dir(root)?;
        let revision = format!("dir:{}", content_digest(&files));
        Ok(Self::from_files(files, revision))
    }

    /// Loads the repository as it is at `rev` in the Git repository at `repo`, without a work tree.
    pub fn load_git(repo: &Path, rev: &str) -> Result<Self, SourceError> {
        let (commit, files) = commit::read_commit(repo, rev)?;
        Ok(Self::from_files(files, commit.sha))
    }

    /// Parses and normalizes every file; problems become diagnostics, never failures.
    pub fn from_files(files: RepoFiles, revision: String) -> Self {
        let mut repo = ConfigRepo {
            sources: SourceMap::default(),
            revision,
            common: None,
            common_hcl: Vec::new(),
            common_unreadable: false,
            environments: BTreeMap::new(),
            policy: None,
            diagnostics: files.problems,
        };
        for dir in &files.env_dirs {
            if dir != COMMON_ENV {
                repo.environments.entry(EnvName::new(dir.clone())).or_default();
            }
        }
        // A file refused unread (a link, a directory, oversized) leaves its environment partial: it is
        // planned as unreadable, never deployed without the file.
        let refused: Vec<String> =
            repo.diagnostics.iter().filter_map(|d| d.file.rsplit_once('/').map(|(dir, _)| dir.to_string())).collect();
        for dir in refused {
            repo.mark_unreadable(&dir);
        }
        // Ambiguity (metadata.yaml and metadata.json side by side) is an error, not a silent pick.
        let mut seen: BTreeMap<(String, String), String> = BTreeMap::new();
        for (path, bytes) in files.files {
            let (dir, file_name) = path.rsplit_once('/').expect("repository paths have a directory");
            let stem = file_name.rsplit_once('.').map_or(file_name, |(s, _)| s).to_string();
            if source::is_hcl_file(file_name) {
                match repo.parse_file(&path, &bytes) {
                    Some(doc) => repo.place_hcl(dir, doc),
                    None => repo.mark_unreadable(dir),
                }
                continue;
            }
            if let Some(first) = seen.insert((dir.to_string(), stem.clone()), path.clone()) {
                repo.diagnostics.push(Diagnostic::error(
                    "file.ambiguous",
                    Place::file(&path),
                    format!("both `{first}` and `{path}` exist; keep one of them (Honua reads one {stem} file per directory)"),
                ));
                continue;
            }
            match repo.parse_file(&path, &bytes) {
                Some(doc) => repo.place_document(dir, &stem, &path, doc),
                None => repo.mark_unreadable(dir),
            }
        }
        repo.check_formats();
        for (name, docs) in &repo.environments {
            if docs.metadata.is_none() && docs.hcl.is_empty() && repo.common_hcl.is_empty() && !docs.unreadable {
                let dir = format!("{ENVIRONMENTS_DIR}/{name}");
                repo.diagnostics.push(Diagnostic::error(
                    "environment.missing_metadata",
                    Place::file(&dir),
                    format!("environment `{name}` has no metadata file; add `{dir}/metadata.yaml` (or .yml/.json), or remove the directory"),
                ));
            }
        }
        repo
    }

    fn parse_file(&mut self, path: &str, bytes: &[u8]) -> Option<Document> {
        match parse_document(&mut self.sources, path, bytes) {
            Ok((doc, findings)) => {
                self.diagnostics.extend(findings);
                Some(doc)
            }
            Err(d) => {
                self.diagnostics.push(d);
                None
            }
        }
    }

    fn place_hcl(&mut self, dir: &str, doc: Document) {
        match dir.strip_prefix(&format!("{ENVIRONMENTS_DIR}/")) {
            Some(COMMON_ENV) => self.common_hcl.push(doc),
            Some(env) => self.environments.entry(EnvName::new(env)).or_default().hcl.push(doc),
            None => {}
        }
    }

    /// One generation per environment: an environment (with `common/`) written partly as metadata and
    /// partly as Configuration 2.0 would deploy neither whole, so it is an error and not planned.
    fn check_formats(&mut self) {
        let common_yaml = self.common.is_some();
        let common_hcl = !self.common_hcl.is_empty();
        let common_dir = format!("{ENVIRONMENTS_DIR}/{COMMON_ENV}");
        let mut found = Vec::new();
        if common_yaml && common_hcl {
            found.push((
                common_dir.clone(),
                None::<EnvName>,
                "`common/` holds both a metadata file and Configuration 2.0 (`.hcl`/`.honua`) files".to_string(),
            ));
        }
        for (name, docs) in &self.environments {
            let yaml = docs.metadata.is_some() || docs.datasources.is_some() || docs.config.is_some();
            let hcl = !docs.hcl.is_empty();
            let dir = format!("{ENVIRONMENTS_DIR}/{name}");
            if yaml && hcl {
                found.push((
                    dir,
                    Some(name.clone()),
                    format!(
                        "environment `{name}` holds both metadata files and Configuration 2.0 (`.hcl`/`.honua`) files"
                    ),
                ));
            } else if yaml && common_hcl && !common_yaml {
                found.push((dir, Some(name.clone()), format!("environment `{name}` is written as metadata but `common/` as Configuration 2.0 (`.hcl`/`.honua`)")));
            } else if hcl && common_yaml && !common_hcl {
                found.push((dir, Some(name.clone()), format!("environment `{name}` is written as Configuration 2.0 (`.hcl`/`.honua`) but `common/` as metadata")));
            }
        }
        for (dir, env, what) in found {
            self.diagnostics.push(Diagnostic::error(
                "environment.mixed_formats",
                Place::file(&dir),
                format!("{what}; Honua reads one generation, so this environment is not planned. Finish the migration: `honua convert --to hcl` writes the Configuration 2.0 files, then delete `metadata.*`, `datasources.*` and `config.*` (or delete the `.hcl` files to stay on metadata)"),
            ));
            match env {
                Some(env) => self.environments.entry(env).or_default().unreadable = true,
                None => self.common_unreadable = true,
            }
        }
    }

    /// The generation an environment is written in (with its `common/` layer).
    pub fn format(&self, env: &EnvName) -> ConfigFormat {
        let own = self.environments.get(env).is_some_and(|d| !d.hcl.is_empty());
        let own_yaml = self.environments.get(env).is_some_and(|d| d.metadata.is_some());
        if own || (!own_yaml && !self.common_hcl.is_empty()) {
            ConfigFormat::Hcl
        } else {
            ConfigFormat::Metadata
        }
    }

    fn mark_unreadable(&mut self, dir: &str) {
        match dir.strip_prefix(&format!("{ENVIRONMENTS_DIR}/")) {
            Some(COMMON_ENV) => self.common_unreadable = true,
            Some(env) => self.environments.entry(EnvName::new(env)).or_default().unreadable = true,
            None => {}
        }
    }

    /// Whether a file of `env` (or of the common layer) exists but could not be read. Its effective
    /// config would be partial, so it is neither validated as a whole nor deployed.
    pub fn is_unreadable(&self, env: &EnvName) -> bool {
        self.common_unreadable || self.environments.get(env).is_some_and(|d| d.unreadable)
    }

    fn place_document(&mut self, dir: &str, stem: &str, path: &str, mut doc: Document) {
        if dir == source::POLICY_DIR {
            self.policy = Some(doc);
            return;
        }
        let env = dir.strip_prefix(&format!("{ENVIRONMENTS_DIR}/")).unwrap_or(dir);
        if !matches!(doc.root.value, Value::Map(_) | Value::Null) {
            self.diagnostics.push(Diagnostic::error(
                "file.not_a_mapping",
                Place { file: path, line: doc.root.loc.line, column: doc.root.loc.column },
                format!(
                    "`{path}` must hold a mapping of keys (such as `catalog:`, `layers:`), not a {}",
                    doc.root.kind()
                ),
            ));
            return;
        }
        if stem == "metadata" || stem == "base-metadata" {
            let warnings = dialect::normalize_metadata(&mut doc.root, &self.sources);
            self.diagnostics.extend(warnings);
        }
        if env == COMMON_ENV {
            if stem == "base-metadata" || stem == "metadata" {
                self.common = Some(doc);
            }
            return;
        }
        let docs = self.environments.entry(EnvName::new(env)).or_default();
        match stem {
            "metadata" => docs.metadata = Some(doc),
            "datasources" => docs.datasources = Some(doc),
            "config" => docs.config = Some(doc),
            _ => {}
        }
    }

    /// Environments discovered from `environments/*/` (never `common`), sorted by name.
    pub fn environments(&self) -> impl Iterator<Item = &EnvName> {
        self.environments.keys()
    }

    pub fn has_environment(&self, env: &str) -> bool {
        self.environments.contains_key(&EnvName::new(env))
    }

    /// The layered configuration of one environment, or `None` if the environment does not exist.
    pub fn effective(&self, env: &EnvName) -> Option<&EffectiveConfig> {
        let docs = self.environments.get(env)?;
        Some(docs.effective.get_or_init(|| self.build_effective(env, docs)))
    }

    fn build_effective(&self, env: &EnvName, docs: &EnvironmentDocs) -> EffectiveConfig {
        if self.format(env) == ConfigFormat::Hcl {
            let file = docs.hcl.first().or(self.common_hcl.first()).map_or(FileId(u32::MAX), |d| d.file);
            let mut root = Node::map(Loc { file, line: 1, column: 1 });
            for doc in self.common_hcl.iter().chain(&docs.hcl) {
                layering::deep_merge(&mut root, doc.root.clone());
            }
            hcl::interpolate(&mut root);
            return EffectiveConfig {
                environment: env.clone(),
                format: ConfigFormat::Hcl,
                metadata: root,
                config: None,
            };
        }
        let root_loc =
            docs.metadata.as_ref().map(|d| d.root.loc).unwrap_or(Loc { file: FileId(u32::MAX), line: 0, column: 0 });
        let mut metadata = match &self.common {
            Some(common) => common.root.clone(),
            None => Node::map(root_loc),
        };
        if let Some(doc) = &docs.metadata {
            layering::merge_document(&mut metadata, doc.root.clone());
        }
        if matches!(metadata.value, Value::Null) {
            metadata = Node::map(root_loc);
        }
        if let Some(ds) = &docs.datasources {
            let entries = dialect::normalize_datasources(&ds.root);
            if !entries.is_empty() {
                let list = Node::new(ds.root.loc, Value::Seq(entries));
                let map = metadata.as_map_mut().expect("metadata is a mapping");
                match map.get_mut("dataSources") {
                    Some(existing) => layering::merge_entities(existing, list),
                    None => map.insert("dataSources", ds.root.loc, list),
                }
            }
        }
        EffectiveConfig {
            environment: env.clone(),
            format: ConfigFormat::Metadata,
            metadata,
            config: docs.config.as_ref().map(|d| d.root.clone()),
        }
    }

    /// Whether a repository path (a file, or an environment directory) bears on `env`: its own files,
    /// the common layer and the policy.
    pub fn concerns(&self, path: &str, env: &EnvName) -> bool {
        let own = format!("{ENVIRONMENTS_DIR}/{env}");
        path == own
            || path.strip_prefix(&own).is_some_and(|rest| rest.starts_with('/'))
            || path.starts_with(&format!("{ENVIRONMENTS_DIR}/{COMMON_ENV}/"))
            || path.starts_with(&format!("{}/", source::POLICY_DIR))
    }

    /// Every parsed document of the repository, with its path (for checks that apply file by file).
    pub fn documents(&self) -> impl Iterator<Item = (&str, &Document)> {
        let env_docs = self
            .environments
            .values()
            .flat_map(|d| [&d.metadata, &d.datasources, &d.config].into_iter().flatten().chain(d.hcl.iter()));
        self.common
            .iter()
            .chain(self.common_hcl.iter())
            .chain(env_docs)
            .chain(self.policy.iter())
            .map(|d| (self.sources.path(d.file), d))
    }
}

/// Decodes and parses one file into `sources`; a failure is returned as the diagnostic to report.
/// Configuration 2.0 files also return the findings their parse met without stopping.
fn parse_document(
    sources: &mut SourceMap,
    path: &str,
    bytes: &[u8],
) -> Result<(Document, Vec<Diagnostic>), Diagnostic> {
    let text = yaml::decode(bytes).map_err(|e| {
        Diagnostic::error("file.encoding", Place { file: path, line: e.line, column: e.column }, e.message)
    })?;
    let file = sources.add(path, text);
    let text = &sources.get(path).expect("just added").text;
    if source::is_hcl_file(path) {
        return match hcl::parse(text, file, path) {
            Ok(parsed) => Ok((Document { file, root: parsed.root }, parsed.findings)),
            Err(e) => Err(Diagnostic::error(
                "hcl.syntax",
                Place { file: path, line: e.line, column: e.column },
                format!("Honua cannot load this file: {}", e.message),
            )),
        };
    }
    let root = yaml::parse(text, file).map_err(|e| {
        let at = Place { file: path, line: e.line, column: e.column };
        if e.message.contains("limit") || e.message.contains("budget") {
            Diagnostic::error(
                "yaml.limit",
                at,
                format!("this file exceeds a safety limit ({}); Honua config never needs this many aliases, nodes or nesting levels, so it is refused", e.message),
            )
        } else {
            Diagnostic::error(
                "yaml.syntax",
                at,
                format!("cannot parse this file: {}; fix the syntax (the position is where the parser stopped)", e.message),
            )
        }
    })?;
    Ok((Document { file, root }, Vec::new()))
}

/// One metadata file validated on its own, outside a repository.
#[derive(Debug)]
pub struct SingleFile {
    pub sources: SourceMap,
    pub format: ConfigFormat,
    /// The metadata document, or for a `.hcl`/`.honua` file its interpolated Configuration 2.0 tree.
    pub metadata: Option<Node>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Reads one metadata file on its own, normalized like a repository file. Its path is kept as given.
pub fn load_single_file(path: &Path) -> Result<SingleFile, SourceError> {
    let display = path.display().to_string();
    let io = |source| SourceError::Io { path: path.to_path_buf(), source };
    let meta = std::fs::symlink_metadata(path).map_err(io)?;
    let kind = if meta.file_type().is_symlink() {
        source::EntryKind::Symlink(std::fs::read_link(path).ok())
    } else {
        source::EntryKind::File
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut admitted = RepoFiles::default();
    let format = if source::is_hcl_file(&name) { ConfigFormat::Hcl } else { ConfigFormat::Metadata };
    let mut out = SingleFile { sources: SourceMap::default(), format, metadata: None, diagnostics: Vec::new() };
    if admitted.admit(&display, &name, kind, meta.len()) {
        let bytes = std::fs::read(path).map_err(io)?;
        match parse_document(&mut out.sources, &display, &bytes) {
            Ok((mut doc, findings)) if format == ConfigFormat::Hcl => {
                out.diagnostics = findings;
                hcl::interpolate(&mut doc.root);
                out.metadata = Some(doc.root);
            }
            Ok((mut doc, _)) => {
                out.diagnostics = dialect::normalize_metadata(&mut doc.root, &out.sources);
                out.metadata = Some(doc.root);
            }
            Err(d) => out.diagnostics.push(d),
        }
    }
    out.diagnostics.extend(admitted.problems);
    Ok(out)
}

/// SHA-256 over the files read (path and content, in path order): a revision for directory loads.
fn content_digest(files: &RepoFiles) -> String {
    let mut h = Sha256::new();
    for (path, bytes) in &files.files {
        h.update((path.len() as u64).to_be_bytes());
        h.update(path.as_bytes());
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    }
    hex::encode(h.finalize())
}
