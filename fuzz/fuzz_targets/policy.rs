//! Policy conditions: any text as an approval rule's condition, in a policy file, is loaded, validated
//! and evaluated against a change set, on a small stack (see `small_stack.rs`). A condition past the
//! bounds must be refused by the flat pre-scan, one within them must parse and evaluate without
//! overflowing, and a rule that cannot be read must still ask for approval.
#![no_main]

#[path = "small_stack.rs"]
mod small_stack;

use honua_gitops::config::source::RepoFiles;
use honua_gitops::config::ConfigRepo;
use honua_gitops::diff::ChangeSet;
use honua_gitops::policy::{decide, rules::check_bounds, Decision, Policy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(condition) = std::str::from_utf8(data) else { return };
    let condition = condition.to_string();
    small_stack::on_small_stack(move || {
        let bounded = check_bounds(&condition).is_ok();
        // A JSON string is a YAML double-quoted scalar: the condition arrives in the policy unchanged.
        let quoted = serde_json::to_string(&condition).expect("strings encode");
        let policy = format!(
            "environments:\n  production:\n    autoApprove: true\n    approvalRules:\n      - name: fuzz\n        condition: {quoted}\n        reason: fuzzed\n"
        );
        let mut files = RepoFiles::default();
        files.env_dirs.push("production".into());
        files.files.insert(".gitops/deployment-policy.yaml".into(), policy.into_bytes());
        files.files.insert("environments/production/metadata.yaml".into(), b"catalog: {id: c}\n".to_vec());
        let repo = ConfigRepo::from_files(files, "fuzz".into());
        let findings = honua_gitops::validate::validate_repo(&repo, None);
        if !bounded {
            assert!(
                findings.iter().any(|d| d.code.starts_with("policy.condition_too")),
                "a condition past the bounds was not refused: {findings:?}"
            );
        }
        let (env, known) = Policy::of(&repo).for_env("production");
        let loaded = findings.iter().all(|d| !d.code.starts_with("policy."));
        let decision = decide(&env, known, &ChangeSet::default(), 0, false);
        if !loaded {
            // A rule that did not load asks for approval of everything.
            assert!(matches!(decision, Decision::NeedsApproval(_)), "{decision:?} with {findings:?}");
        }
    });
});
