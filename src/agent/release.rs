//! Releases on disk: each rendered environment in its own directory (fsynced, owner-only), the
//! `current` link swapped atomically (or, for Configuration 2.0, Honua's one file replaced in place),
//! a manifest of every file's SHA-256 kept outside Honua's reach, and old releases pruned.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Agent, Rendered};
use crate::plan::signing::SignedRecord;

/// What a release holds, kept outside Honua's reach: the record it renders and each file's SHA-256.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Manifest {
    pub(super) record: SignedRecord,
    pub(super) files: std::collections::BTreeMap<String, String>,
    /// The collections the release serves by Honua's rule, worked out when it was rendered: the next
    /// apply checks they are gone without parsing the live file again (~40 ms for 1,000 layers).
    /// Absent from manifests written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) collections: Option<Vec<String>>,
}

/// Writes `bytes` to `path` owner-only and fsyncs it.
pub(super) fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

pub(super) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

pub(super) fn sync_dir(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

impl Agent {
    pub(super) fn current(&self) -> PathBuf {
        self.config.target_dir.join("current")
    }

    /// Points `current` at `release` atomically: a new link beside it, renamed over it.
    pub(super) fn swap(&self, release: &Path) -> std::io::Result<()> {
        let tmp = self.config.target_dir.join(".current.tmp");
        let _ = std::fs::remove_file(&tmp);
        #[cfg(unix)]
        std::os::unix::fs::symlink(release, &tmp)?;
        std::fs::rename(&tmp, self.current())?;
        sync_dir(&self.config.target_dir)?;
        self.install_hcl(release)
    }

    /// A Configuration 2.0 release's file copied over Honua's in place: written beside it, fsynced,
    /// renamed over it, the directory fsynced. Honua's watcher sees the rename in its directory; a
    /// reader never sees half a file. Metadata releases have no such file and are left to the link.
    pub(super) fn install_hcl(&self, release: &Path) -> std::io::Result<()> {
        let source = release.join(&self.config.hcl_file);
        let bytes = match std::fs::read(&source) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let target = self.config.target_dir.join(&self.config.hcl_file);
        let tmp = self.config.target_dir.join(format!(".{}.tmp", self.config.hcl_file));
        let _ = std::fs::remove_file(&tmp);
        write_synced(&tmp, &bytes)?;
        // It holds resolved secrets: the agent's user and its group (Honua's, if it runs as another user).
        #[cfg(unix)]
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o640))?;
        std::fs::rename(&tmp, &target)?;
        sync_dir(&self.config.target_dir)
    }

    /// Writes `rendered` as the release directory `release` (owner-only, fsynced) and its manifest.
    /// Whatever was at that path before (a partial attempt, a planted link) is removed, not followed.
    pub(super) fn write_release(
        &self,
        release: &Path,
        record: &SignedRecord,
        rendered: &Rendered,
    ) -> std::io::Result<()> {
        let name = if rendered.hcl { &self.config.hcl_file } else { &self.config.metadata_file };
        let mut files = vec![(name, rendered.metadata.as_bytes())];
        if let Some(config) = &rendered.server_config {
            files.push((&self.config.server_config_file, config.as_bytes()));
        }
        let _ = std::fs::remove_dir_all(release);
        std::fs::create_dir_all(release)?;
        #[cfg(unix)]
        std::fs::set_permissions(release, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        for (name, bytes) in &files {
            write_synced(&release.join(name), bytes)?;
        }
        sync_dir(release)?;
        let manifest = Manifest {
            record: record.clone(),
            files: files.iter().map(|(name, bytes)| (name.to_string(), sha256_hex(bytes))).collect(),
            collections: Some(rendered.collections.clone()),
        };
        self.save_manifest(release, &manifest)
    }

    pub(super) fn manifest_path(&self, release: &Path) -> PathBuf {
        let name = release.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        self.config.state_dir.join("manifests").join(format!("{name}.json"))
    }

    pub(super) fn save_manifest(&self, release: &Path, manifest: &Manifest) -> std::io::Result<()> {
        let path = self.manifest_path(release);
        let dir = path.parent().expect("manifests live in a directory");
        std::fs::create_dir_all(dir)?;
        let tmp = path.with_extension("json.tmp");
        let _ = std::fs::remove_file(&tmp);
        write_synced(&tmp, &serde_json::to_vec(manifest).expect("manifests encode"))?;
        std::fs::rename(&tmp, &path)?;
        sync_dir(dir)
    }

    pub(super) fn load_manifest(&self, release: &Path) -> Option<Manifest> {
        std::fs::read(self.manifest_path(release)).ok().and_then(|b| serde_json::from_slice(&b).ok())
    }

    /// Keeps the live release, the one before it and the newest `keep_releases` others; removes the rest
    /// (and their manifests). Only directories under the agent's own `releases` are ever removed.
    pub(super) fn prune_releases(&self, previous: Option<&Path>) {
        let root = self.config.state_dir.join("releases");
        let live = std::fs::read_link(self.current()).ok();
        let Ok(entries) = std::fs::read_dir(&root) else { return };
        let mut releases: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect();
        releases.sort();
        releases.reverse();
        let mut kept = 0;
        for release in releases {
            if Some(&release) == live.as_ref() || Some(release.as_path()) == previous {
                continue;
            }
            if kept < self.config.keep_releases {
                kept += 1;
                continue;
            }
            if std::fs::remove_dir_all(&release).is_ok() {
                let _ = std::fs::remove_file(self.manifest_path(&release));
            }
        }
    }
}
