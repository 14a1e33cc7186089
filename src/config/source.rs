//! The raw files of a config repository, read from a directory or a Git commit, and the source map
//! that turns a node's [`FileId`] back into a path and a line of text.
//!
//! The config repository is untrusted input: only the known layout is read, symbolic links are refused
//! (they could point at `/etc/passwd`), names that could leave the tree are refused, and every file is
//! size-checked before its content is read.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::diagnostic::{Diagnostic, Place};

use super::node::FileId;
use super::yaml::MAX_FILE_BYTES;

/// The repository-relative directory that holds one directory per environment.
pub const ENVIRONMENTS_DIR: &str = "environments";
/// The shared layer merged under every environment.
pub const COMMON_ENV: &str = "common";
pub const POLICY_DIR: &str = ".gitops";

/// Files of interest in a config repository, keyed by repository-relative path (`/`-separated),
/// plus the problems met while reading them (symlinks, oversized files), as diagnostics.
#[derive(Debug, Default, Clone)]
pub struct RepoFiles {
    pub files: BTreeMap<String, Vec<u8>>,
    /// Environment directories seen, even empty ones (an environment without metadata is reported).
    pub env_dirs: Vec<String>,
    pub problems: Vec<Diagnostic>,
}

/// Could not read the repository at all (as opposed to a problem in one of its files).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}: not a config repository: there is no `environments/` directory; point --path at the repository root, an environment directory or a metadata file")]
    NotARepository(PathBuf),
    #[error(transparent)]
    Git(#[from] super::commit::GitError),
}

/// A name that may be used as one path component of the repository: no separators, no `.`/`..`,
/// not hidden. Anything else is refused so no path built from it can leave the tree.
pub fn is_safe_component(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Whether `file_name` (inside an environment directory) is one the loader reads.
pub fn is_config_file(file_name: &str) -> bool {
    let Some((stem, ext)) = file_name.rsplit_once('.') else {
        return false;
    };
    is_hcl_file(file_name)
        || matches!(ext, "yaml" | "yml" | "json")
            && matches!(stem, "metadata" | "datasources" | "config" | "base-metadata")
}

/// Whether `file_name` is a Configuration 2.0 file (`.hcl`, `.honua`): every such file of an environment
/// directory is read, in name order, as Honua's HCL.
pub fn is_hcl_file(file_name: &str) -> bool {
    file_name.rsplit_once('.').is_some_and(|(stem, ext)| !stem.is_empty() && matches!(ext, "hcl" | "honua"))
}

fn is_policy_file(file_name: &str) -> bool {
    matches!(file_name, "deployment-policy.yaml" | "deployment-policy.yml" | "deployment-policy.json")
}

impl RepoFiles {
    fn refuse_symlink(&mut self, rel: &str, target: Option<PathBuf>) {
        let to = target.map(|t| format!(" (to {})", t.display())).unwrap_or_default();
        self.problems.push(Diagnostic::error(
            "file.symlink",
            Place::file(rel),
            format!("`{rel}` is a symbolic link{to}; links are refused because they can point outside the repository. Replace it with a regular file"),
        ));
    }

    fn refuse_too_large(&mut self, rel: &str, size: u64) {
        self.problems.push(Diagnostic::error(
            "file.too_large",
            Place::file(rel),
            format!(
                "`{rel}` is {} MiB, over the {} MiB limit for one config file; split the metadata across environments/common and the environment, or remove generated content",
                size / (1024 * 1024),
                MAX_FILE_BYTES / (1024 * 1024)
            ),
        ));
    }

    fn refuse_unsafe_name(&mut self, rel: &str) {
        self.problems.push(Diagnostic::error(
            "file.unsafe_name",
            Place::file(rel),
            format!("`{rel}`: environment names may use only letters, digits, `-`, `_` and `.`; rename the directory"),
        ));
    }

    fn refuse_not_a_file(&mut self, rel: &str, what: &str) {
        self.problems.push(Diagnostic::error(
            "file.not_a_file",
            Place::file(rel),
            format!("`{rel}` is {what}, where the loader expects a file; remove it or replace it with the file"),
        ));
    }

    /// Admits an entry where a config or policy file is expected: a directory, a submodule or a device
    /// of that name is a finding, not a failure to read the repository.
    pub fn admit_file(&mut self, rel: &str, name: &str, kind: EntryKind, size: u64) -> bool {
        match kind {
            EntryKind::Dir => {
                self.refuse_not_a_file(rel, "a directory");
                false
            }
            EntryKind::Other => {
                self.refuse_not_a_file(rel, "neither a file nor a directory (a submodule, a pipe or a device)");
                false
            }
            kind => self.admit(rel, name, kind, size),
        }
    }

    /// Admits one entry met while walking: the single place where symlinks, unsafe names and oversized
    /// files are refused, for directories and Git trees alike. Returns whether to read it.
    pub fn admit(&mut self, rel: &str, name: &str, kind: EntryKind, size: u64) -> bool {
        match kind {
            EntryKind::Symlink(target) => {
                self.refuse_symlink(rel, target);
                false
            }
            EntryKind::Other => false,
            EntryKind::Dir => {
                if is_safe_component(name) {
                    true
                } else {
                    if !name.starts_with('.') {
                        self.refuse_unsafe_name(rel);
                    }
                    false
                }
            }
            EntryKind::File if size > MAX_FILE_BYTES => {
                self.refuse_too_large(rel, size);
                false
            }
            EntryKind::File => true,
        }
    }
}

pub enum EntryKind {
    File,
    Dir,
    Symlink(Option<PathBuf>),
    Other,
}

/// Reads the known layout of a repository checked out at `root`.
pub fn read_dir(root: &Path) -> Result<RepoFiles, SourceError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SourceError::Io { path, source }
    };
    let mut out = RepoFiles::default();
    let envs = root.join(ENVIRONMENTS_DIR);
    let meta = fs::symlink_metadata(&envs).map_err(|_| SourceError::NotARepository(root.to_path_buf()))?;
    if meta.file_type().is_symlink() {
        out.refuse_symlink(ENVIRONMENTS_DIR, fs::read_link(&envs).ok());
        return Ok(out);
    }
    if !meta.is_dir() {
        return Err(SourceError::NotARepository(root.to_path_buf()));
    }
    for env in sorted_entries(&envs).map_err(io(&envs))? {
        let name = env.file_name().to_string_lossy().into_owned();
        let rel = format!("{ENVIRONMENTS_DIR}/{name}");
        if !out.admit(&rel, &name, entry_kind(&env.path()), 0) {
            continue;
        }
        out.env_dirs.push(name.clone());
        for file in sorted_entries(&env.path()).map_err(io(&env.path()))? {
            let file_name = file.file_name().to_string_lossy().into_owned();
            if !is_config_file(&file_name) {
                continue;
            }
            read_one(&mut out, &file.path(), format!("{rel}/{file_name}"), &file_name)?;
        }
    }
    let policy_dir = root.join(POLICY_DIR);
    if let Ok(meta) = fs::symlink_metadata(&policy_dir) {
        if meta.file_type().is_symlink() {
            out.refuse_symlink(POLICY_DIR, fs::read_link(&policy_dir).ok());
        } else if meta.is_dir() {
            for file in sorted_entries(&policy_dir).map_err(io(&policy_dir))? {
                let file_name = file.file_name().to_string_lossy().into_owned();
                if is_policy_file(&file_name) {
                    read_one(&mut out, &file.path(), format!("{POLICY_DIR}/{file_name}"), &file_name)?;
                }
            }
        }
    }
    Ok(out)
}

fn read_one(out: &mut RepoFiles, path: &Path, rel: String, name: &str) -> Result<(), SourceError> {
    let kind = entry_kind(path);
    let size = fs::symlink_metadata(path).map(|m| m.len()).unwrap_or(0);
    if out.admit_file(&rel, name, kind, size) {
        let bytes = fs::read(path).map_err(|source| SourceError::Io { path: path.to_path_buf(), source })?;
        out.files.insert(rel, bytes);
    }
    Ok(())
}

fn entry_kind(path: &Path) -> EntryKind {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => EntryKind::Symlink(fs::read_link(path).ok()),
        Ok(m) if m.is_dir() => EntryKind::Dir,
        Ok(m) if m.is_file() => EntryKind::File,
        _ => EntryKind::Other,
    }
}

fn sorted_entries(dir: &Path) -> std::io::Result<Vec<fs::DirEntry>> {
    let mut entries = fs::read_dir(dir)?.collect::<Result<Vec<_>, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    Ok(entries)
}

/// The files one load read, indexed by [`FileId`]; used to name files and show source lines.
#[derive(Debug, Default, Clone)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: String,
    pub text: String,
}

impl SourceMap {
    pub fn add(&mut self, path: impl Into<String>, text: impl Into<String>) -> FileId {
        self.files.push(SourceFile { path: path.into(), text: text.into() });
        FileId(self.files.len() as u32 - 1)
    }

    pub fn path(&self, id: FileId) -> &str {
        self.files.get(id.0 as usize).map_or("<unknown>", |f| f.path.as_str())
    }

    pub fn get(&self, path: &str) -> Option<&SourceFile> {
        self.files.iter().find(|f| f.path == path)
    }

    /// The text of a 1-based line, for showing the source under a diagnostic.
    pub fn line(&self, path: &str, line: u32) -> Option<&str> {
        if line == 0 {
            return None;
        }
        self.get(path)?.text.lines().nth(line as usize - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_components_are_refused() {
        for bad in ["", ".", "..", "../etc", "a/b", "a\\b", ".hidden", "prod uction"] {
            assert!(!is_safe_component(bad), "{bad:?}");
        }
        for good in ["production", "eu-west_1", "v1.2"] {
            assert!(is_safe_component(good), "{good:?}");
        }
    }

    #[test]
    fn symlinks_are_refused_and_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let env = dir.path().join("environments/production");
        fs::create_dir_all(&env).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", env.join("metadata.yaml")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("environments/staging")).unwrap();
        let files = read_dir(dir.path()).unwrap();
        assert!(files.files.is_empty());
        let codes: Vec<_> = files.problems.iter().map(|d| (d.code.as_str(), d.file.as_str())).collect();
        assert!(codes.contains(&("file.symlink", "environments/production/metadata.yaml")), "{codes:?}");
        assert!(codes.contains(&("file.symlink", "environments/staging")), "{codes:?}");
        assert!(files.problems[0].message.contains("/etc"));
    }

    #[test]
    fn a_directory_named_like_a_config_file_is_a_finding() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("environments/production/metadata.yaml")).unwrap();
        fs::create_dir_all(dir.path().join(".gitops/deployment-policy.yaml")).unwrap();
        let files = read_dir(dir.path()).unwrap();
        let found: Vec<_> = files.problems.iter().map(|d| (d.code.as_str(), d.file.as_str())).collect();
        assert_eq!(
            found,
            [
                ("file.not_a_file", "environments/production/metadata.yaml"),
                ("file.not_a_file", ".gitops/deployment-policy.yaml")
            ]
        );
    }
}
