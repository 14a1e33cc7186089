//! Config loading and validation: a repository of up to seven files (the input split at NUL bytes, in
//! the order of `SLOTS`) is loaded, validated, layered per environment, checked against its policy and
//! planned against the examples' repository, on a small stack (see `small_stack.rs`). None of it may
//! panic, overflow, hang or run away with memory, whatever a pull request puts in those files.
#![no_main]

#[path = "small_stack.rs"]
mod small_stack;

use std::sync::LazyLock;

use honua_gitops::config::source::RepoFiles;
use honua_gitops::config::ConfigRepo;
use libfuzzer_sys::fuzz_target;

const SLOTS: &[&str] = &[
    ".gitops/deployment-policy.yaml",
    "environments/common/base-metadata.yaml",
    "environments/development/metadata.yaml",
    "environments/development/datasources.yaml",
    "environments/development/config.yaml",
    "environments/production/metadata.yaml",
    "environments/production/datasources.yaml",
];

static BASE: LazyLock<ConfigRepo> = LazyLock::new(|| {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/honua-config");
    ConfigRepo::load_dir(&root).expect("the examples' config repository loads")
});

fn repo(data: &[u8]) -> ConfigRepo {
    let mut files = RepoFiles::default();
    for (slot, content) in SLOTS.iter().zip(data.split(|b| *b == 0)) {
        files.files.insert(slot.to_string(), content.to_vec());
        if let Some(env) = slot.strip_prefix("environments/").and_then(|p| p.split('/').next()) {
            if !files.env_dirs.iter().any(|e| e == env) {
                files.env_dirs.push(env.to_string());
            }
        }
    }
    ConfigRepo::from_files(files, "fuzz".into())
}

fuzz_target!(|data: &[u8]| {
    LazyLock::force(&BASE);
    let data = data.to_vec();
    small_stack::on_small_stack(move || {
        let repo = repo(&data);
        let _ = honua_gitops::validate::validate_repo(&repo, None);
        for env in repo.environments() {
            if let Some(effective) = repo.effective(env) {
                let _ = effective.metadata.to_json();
            }
        }
        let _ = honua_gitops::policy::Policy::of(&repo);
        let at = chrono::DateTime::from_timestamp(1_795_000_000, 0).unwrap();
        let set = honua_gitops::plan::build(&BASE, &repo, None, at);
        // What the service stores must read back (serde_json refuses nesting past 128).
        let json = honua_gitops::plan::render::plan_json(&set.plans);
        serde_json::from_str::<serde_json::Value>(&json).expect("a plan reads back");
        let _ = honua_gitops::plan::render::plan_markdown(&set.plans);
    });
});
