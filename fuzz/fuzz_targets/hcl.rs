//! Configuration 2.0 loading: a repository of three `.hcl` files (the input split at NUL bytes:
//! `common/`, development, production) is loaded, validated, layered, rendered, parsed back and planned
//! against the HCL example, on a small stack (see `small_stack.rs`). None of it may panic, overflow,
//! hang or run away with memory; and what the agent would write must be a file Honua's parser reads
//! back as the same tree.
#![no_main]

#[path = "small_stack.rs"]
mod small_stack;

use std::sync::LazyLock;

use honua_gitops::config::node::FileId;
use honua_gitops::config::source::RepoFiles;
use honua_gitops::config::{hcl, ConfigRepo};
use libfuzzer_sys::fuzz_target;

const SLOTS: &[&str] =
    &["environments/common/honua.hcl", "environments/development/honua.hcl", "environments/production/honua.hcl"];

static BASE: LazyLock<ConfigRepo> = LazyLock::new(|| {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/honua-config-hcl");
    ConfigRepo::load_dir(&root).expect("the HCL example loads")
});

fuzz_target!(|data: &[u8]| {
    LazyLock::force(&BASE);
    let data = data.to_vec();
    small_stack::on_small_stack(move || {
        let mut files = RepoFiles::default();
        files.env_dirs = vec!["common".into(), "development".into(), "production".into()];
        for (slot, content) in SLOTS.iter().zip(data.split(|b| *b == 0)) {
            files.files.insert(slot.to_string(), content.to_vec());
        }
        let repo = ConfigRepo::from_files(files, "fuzz".into());
        let _ = honua_gitops::validate::validate_repo(&repo, None);
        for env in repo.environments() {
            let Some(effective) = repo.effective(env) else { continue };
            let text = hcl::render(&effective.metadata);
            let again = hcl::parse(&text, FileId(0), "rendered.hcl")
                .unwrap_or_else(|e| panic!("a rendered file does not read back: {e:?}\n{text}"));
            assert_eq!(hcl::render(&again.root), text, "rendering is stable");
            let _ = hcl::served_collections(&effective.metadata);
        }
        let at = chrono::DateTime::from_timestamp(1_795_000_000, 0).unwrap();
        let set = honua_gitops::plan::build(&BASE, &repo, None, at);
        let json = honua_gitops::plan::render::plan_json(&set.plans);
        serde_json::from_str::<serde_json::Value>(&json).expect("a plan reads back");
        let _ = honua_gitops::plan::render::plan_markdown(&set.plans);
    });
});
