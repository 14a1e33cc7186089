//! Helpers shared by the integration tests: in-memory repositories and the real binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use honua_gitops::config::source::RepoFiles;
use honua_gitops::config::ConfigRepo;

/// `../shared/honua` from the crate root.
pub fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/honua")
}

pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// A repository built from `(path, content)` pairs, as if read from disk.
pub fn repo(files: &[(&str, &str)]) -> ConfigRepo {
    let mut rf = RepoFiles::default();
    for (path, content) in files {
        rf.files.insert(path.to_string(), content.as_bytes().to_vec());
        if let Some(env) = path.strip_prefix("environments/").and_then(|p| p.split('/').next()) {
            if !rf.env_dirs.iter().any(|e| e == env) {
                rf.env_dirs.push(env.to_string());
            }
        }
    }
    ConfigRepo::from_files(rf, "test".into())
}

/// Runs the `honua` binary.
pub fn honua(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_honua")).args(args).env("COLUMNS", "200").output().expect("runs honua")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn code(o: &Output) -> i32 {
    o.status.code().expect("exited")
}
