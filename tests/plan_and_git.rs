//! Plans from real Git repositories and directories: the README example, digests, the base branch's
//! policy, windows, exit codes.

mod common;

use std::fs;
use std::path::Path;

use chrono::{DateTime, Utc};
use git2::{Repository, Signature};

use honua_gitops::config::{ConfigRepo, EnvName};
use honua_gitops::plan::{self, Plan};
use honua_gitops::policy::Decision;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// A Git repository with `main` = the example and HEAD (branch `pr`) = the PR head.
fn example_git_repo() -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::init(dir.path()).unwrap();
    let base = common::commit_tree(&repo, &common::examples().join("honua-config"), "base");
    let base_commit = repo.find_commit(base).unwrap();
    repo.branch("main-base", &base_commit, true).unwrap();
    let head = common::commit_tree(
        &repo,
        &common::examples().join("honua-config-pr"),
        "PR: bike lanes, parcels TTL, drop owner_name",
    );
    (dir, base.to_string(), head.to_string())
}

fn plan_for<'a>(plans: &'a [Plan], env: &str) -> &'a Plan {
    plans.iter().find(|p| p.environment.as_str() == env).unwrap()
}

#[test]
fn the_readme_example_plans_as_documented() {
    let from = ConfigRepo::load_dir(&common::examples().join("honua-config")).unwrap();
    let to = ConfigRepo::load_dir(&common::examples().join("honua-config-pr")).unwrap();
    let set = plan::build(&from, &to, None, at("2026-11-25T10:00:00Z"));
    assert!(set.diagnostics.is_empty(), "{:#?}", set.diagnostics);
    let envs: Vec<&str> = set.plans.iter().map(|p| p.environment.as_str()).collect();
    assert_eq!(envs, ["development", "staging", "production"]);
    for env in ["development", "staging"] {
        assert_eq!(plan_for(&set.plans, env).decision, Decision::Auto, "{env}");
    }
    let prod = plan_for(&set.plans, "production");
    let Decision::Blocked(reasons) = &prod.decision else { panic!("{:?}", prod.decision) };
    assert!(reasons[0].contains("--breaking"), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.starts_with("breaking-changes:")), "{reasons:?}");
    let parcels = prod.changes.changes.iter().find(|c| c.id == "cadastre::parcels").unwrap();
    assert!(parcels.fields.iter().any(|f| f.path == "caching.ttl" && f.from == 3600 && f.to == 7200));
    assert_eq!(parcels.breaking[0].code, "field.removed");
    assert!(prod.changes.changes.iter().any(|c| c.id == "transportation::bike_lanes" && c.breaking.is_empty()));
    assert!(prod.schedule.allowed_now, "Wednesday 10:00 UTC is inside the window");
}

#[test]
fn digests_are_stable_and_change_with_the_plan() {
    let from = ConfigRepo::load_dir(&common::examples().join("honua-config")).unwrap();
    let to = ConfigRepo::load_dir(&common::examples().join("honua-config-pr")).unwrap();
    let a = plan::build(&from, &to, None, at("2026-11-25T10:00:00Z"));
    let b = plan::build(&from, &to, None, at("2026-11-28T23:00:00Z"));
    let digests = |s: &plan::PlanSet| s.plans.iter().map(|p| p.digest.clone()).collect::<Vec<_>>();
    assert_eq!(digests(&a), digests(&b), "the clock does not change a plan");
    // Pinned: the canonical encoding must not drift between versions or machines. (Changed on purpose
    // once, 2026-12-01: the reasons a decision carries name no command since hints fit the mode.)
    assert_eq!(
        plan_for(&a.plans, "production").digest,
        "sha256:68e97c4a7ffde6247a8f627c613b86c5b2f787541720f12675cfe1d4d8325388"
    );
    let mut changed = plan_for(&a.plans, "production").changes.clone();
    changed.changes[0].fields[0].to = serde_json::json!(7201);
    let p = plan_for(&a.plans, "production");
    assert_ne!(plan::digest(&p.environment, &p.from, &p.to, &changed, &p.decision), p.digest);
    assert_ne!(plan::digest(&p.environment, &p.from, "other", &p.changes, &p.decision), p.digest);
    assert_ne!(plan::digest(&EnvName::new("staging"), &p.from, &p.to, &p.changes, &p.decision), p.digest);
}

#[test]
fn diff_and_plan_read_git_commits_without_a_checkout() {
    let (dir, base, head) = example_git_repo();
    let repo = dir.path().to_str().unwrap();
    let out = common::honua(&["diff", "--repo", repo, "--from", "main-base", "--to", "HEAD", "--env", "production"]);
    assert_eq!(common::code(&out), 0);
    let text = common::stdout(&out);
    assert!(text.contains("caching.ttl: 3600 -> 7200"), "{text}");
    assert!(text.contains("field.removed"), "{text}");

    let out = common::honua(&["diff", "--repo", repo, "--from", &base, "--to", &head, "--fail-on-breaking"]);
    assert_eq!(common::code(&out), 1, "breaking changes with --fail-on-breaking");

    let out = common::honua(&["diff", "--repo", repo, "--from", &base, "--to", &head, "--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let prod = json["environments"].as_array().unwrap().iter().find(|e| e["environment"] == "production").unwrap();
    assert_eq!(prod["summary"], serde_json::json!({"added": 1, "modified": 1, "removed": 0, "breaking": 1}));
    let change = prod["changes"].as_array().unwrap().iter().find(|c| c["id"] == "cadastre::parcels").unwrap();
    assert_eq!(change["type"], "layer");
    assert_eq!(change["action"], "modified");
    assert_eq!(change["breaking"][0]["code"], "field.removed");
    assert!(change["fields"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f == &serde_json::json!({"path": "caching.ttl", "from": 3600, "to": 7200})));

    let out = common::honua(&[
        "plan",
        "--repo",
        repo,
        "--from",
        &base,
        "--to",
        &head,
        "--format",
        "json",
        "--at",
        "2026-11-25T10:00:00Z",
    ]);
    assert_eq!(common::code(&out), 0);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let prod = json["plans"].as_array().unwrap().iter().find(|p| p["environment"] == "production").unwrap();
    assert_eq!(prod["from"], base.as_str());
    assert_eq!(prod["to"], head.as_str());
    assert_eq!(prod["decision"]["decision"], "blocked");
    assert!(prod["digest"].as_str().unwrap().starts_with("sha256:"));

    let out = common::honua(&["diff", "--repo", repo, "--from", "no-such-branch", "--to", "HEAD"]);
    assert_eq!(common::code(&out), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-branch"));
}

#[test]
fn a_symlink_committed_to_git_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::init(dir.path()).unwrap();
    let env = dir.path().join("environments/production");
    fs::create_dir_all(&env).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", env.join("metadata.yaml")).unwrap();
    let mut index = repo.index().unwrap();
    index.add_path(Path::new("environments/production/metadata.yaml")).unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let sig = Signature::now("T", "t@example.org").unwrap();
    repo.commit(Some("HEAD"), &sig, &sig, "evil", &tree, &[]).unwrap();
    let loaded = ConfigRepo::load_git(dir.path(), "HEAD").unwrap();
    assert!(
        loaded.diagnostics.iter().any(|d| d.code == "file.symlink" && d.message.contains("/etc/passwd")),
        "{:#?}",
        loaded.diagnostics
    );
    assert!(loaded.sources.get("environments/production/metadata.yaml").is_none());
}

const POLICY_STRICT: &str = "environments:\n  production:\n    autoApprove: false\n    allowBreakingChanges: false\n";
const POLICY_LOOSE: &str = "environments:\n  production:\n    autoApprove: true\n    allowBreakingChanges: true\n";
const META: &str = "catalog: {id: c}\nfolders: []\ndataSources: []\nservices: []\nlayers: []\n";

#[test]
fn a_change_is_judged_by_the_base_policy_not_the_one_it_brings() {
    let from = common::repo(&[
        ("environments/production/metadata.yaml", META),
        (".gitops/deployment-policy.yaml", POLICY_STRICT),
    ]);
    let to = common::repo(&[
        ("environments/production/metadata.yaml", &META.replace("{id: c}", "{id: c, title: Loosened}")),
        (".gitops/deployment-policy.yaml", POLICY_LOOSE),
    ]);
    let set = plan::build(&from, &to, None, at("2026-11-25T10:00:00Z"));
    let Decision::NeedsApproval(reasons) = &set.plans[0].decision else { panic!("{:?}", set.plans[0].decision) };
    assert!(reasons.iter().any(|r| r.contains("autoApprove is false")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("deployment-policy.yaml")), "{reasons:?}");
}

#[test]
fn rule_forms_conditions_and_unknown_environments_are_checked() {
    let policy = "environments:\n  production:\n    autoApprove: true\n    approvalRules:\n      - resourcesAdded: true\n      - name: ds\n        condition: type == \"datasource\"\n        reason: Connections need approval\n      - name: broken\n        condition: (resourcesAdded + \n  prodution:\n    autoApprove: true\n";
    let repo =
        common::repo(&[("environments/production/metadata.yaml", META), (".gitops/deployment-policy.yaml", policy)]);
    let d = honua_gitops::validate::validate_repo(&repo, None);
    let cond = d.iter().find(|d| d.code == "policy.condition_invalid").expect("bad condition reported");
    assert_eq!((cond.file.as_str(), cond.line), (".gitops/deployment-policy.yaml", 10));
    let unknown = d.iter().find(|d| d.code == "policy.unknown_environment").expect("typo reported");
    assert_eq!((unknown.line, unknown.column), (11, 3));
    assert!(unknown.message.contains("prodution"));

    // With the broken rule and the typo gone, both rule forms ask for approval with their reasons.
    let policy = policy.split("      - name: broken").next().unwrap();
    let from =
        common::repo(&[("environments/production/metadata.yaml", META), (".gitops/deployment-policy.yaml", policy)]);
    assert!(honua_gitops::validate::validate_repo(&from, None).is_empty());
    let with_ds =
        META.replace("dataSources: []", "dataSources: [{id: db, provider: postgis, connectionString: \"Host=x\"}]");
    let to = common::repo(&[
        ("environments/production/metadata.yaml", &with_ds),
        (".gitops/deployment-policy.yaml", policy),
    ]);
    let set = plan::build(&from, &to, None, at("2026-11-25T10:00:00Z"));
    let Decision::NeedsApproval(reasons) = &set.plans[0].decision else { panic!("{:?}", set.plans[0].decision) };
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert_eq!(reasons[0], "approval rule `resourcesAdded: true` matched");
    assert_eq!(reasons[1], "ds: Connections need approval");
}

#[test]
fn an_environment_without_policy_needs_approval() {
    let from = common::repo(&[("environments/qa/metadata.yaml", META)]);
    let to = common::repo(&[("environments/qa/metadata.yaml", &META.replace("{id: c}", "{id: c, title: T}"))]);
    let set = plan::build(&from, &to, None, at("2026-11-25T10:00:00Z"));
    assert!(matches!(&set.plans[0].decision, Decision::NeedsApproval(r) if r[0].contains("no entry for `qa`")));
}

#[test]
fn outside_a_window_the_plan_says_when_it_may_start() {
    let from = ConfigRepo::load_dir(&common::examples().join("honua-config")).unwrap();
    let to = ConfigRepo::load_dir(&common::examples().join("honua-config-pr")).unwrap();
    let set = plan::build(&from, &to, Some(&EnvName::new("production")), at("2026-12-24T10:00:00Z"));
    let s = &set.plans[0].schedule;
    assert!(!s.allowed_now);
    assert!(s.reason.as_deref().unwrap().contains("Holiday Season"));
    assert_eq!(s.next_allowed, Some(at("2027-01-06T09:00:00Z")));
}

#[test]
fn the_example_change_is_exactly_the_documented_one() {
    // The PR tree must differ from the base only where the README says, or the demo drifts.
    let (a, b) = (common::examples().join("honua-config"), common::examples().join("honua-config-pr"));
    let mut differing = Vec::new();
    fn walk(root: &Path, rel: &Path, out: &mut Vec<String>, other: &Path) {
        for e in fs::read_dir(root.join(rel)).unwrap() {
            let e = e.unwrap();
            let r = rel.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                walk(root, &r, out, other);
            } else if fs::read(root.join(&r)).ok() != fs::read(other.join(&r)).ok() {
                out.push(r.display().to_string());
            }
        }
    }
    walk(&a, Path::new(""), &mut differing, &b);
    differing.sort();
    assert_eq!(differing, ["environments/common/base-metadata.yaml", "environments/production/metadata.yaml"]);
}

fn honua(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_honua")).args(args).current_dir(dir).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// CI as GitHub Actions makes it: a depth-1 clone of the PR branch, without the base branch. Every
/// documented command either works or names the exact fix; the shipped workflow's `run:` steps, run as
/// written, put the plan in the job summary before breaking changes fail the job.
#[test]
fn a_depth_one_clone_runs_the_shipped_workflow_and_names_the_fix() {
    let (_origin, work, ci) = common::ci_clone();

    // The base is not in the clone: the error says so and gives the command that fixes it.
    let (code, _, err) = honua(&ci, &["diff", "--from", "origin/main", "--to", "HEAD"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("shallow clone"), "{err}");
    let fix = "git fetch --no-tags origin main:refs/remotes/origin/main";
    assert!(err.contains(fix), "{err}");
    let (code, _, err) = honua(&ci, &["diff", "--from", "main", "--to", "HEAD"]);
    assert!(code == 2 && err.contains(fix), "{err}");

    // The shipped workflow, step by step (all but installing honua), as Actions would run them.
    let workflow = honua_gitops::settings::read_file(Path::new("deploy/github/honua-validate.yml")).unwrap();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_honua")).parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let summary = work.path().join("summary.md");
    let mut outcomes = Vec::new();
    for step in workflow["jobs"]["validate"]["steps"].as_array().unwrap() {
        let (Some(name), Some(run)) = (step["name"].as_str(), step["run"].as_str()) else { continue };
        if name.starts_with("Install") {
            continue;
        }
        let script = run.replace("${{ github.base_ref }}", "main");
        let out = std::process::Command::new("bash")
            .args(["-e", "-c", &script])
            .current_dir(&ci)
            .env("PATH", &path)
            .env("GITHUB_STEP_SUMMARY", &summary)
            .output()
            .unwrap();
        outcomes.push((name.to_string(), out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned()));
    }
    let (last, rest) = outcomes.split_last().unwrap();
    for (name, code, err) in rest {
        assert_eq!(*code, Some(0), "{name}: {err}");
    }
    // The example PR drops a field: breaking, so the last step fails the job, after the summary is written.
    assert_eq!(last.1, Some(1), "{}: {}", last.0, last.2);
    let written = fs::read_to_string(&summary).unwrap();
    assert!(written.contains("production") && written.contains("bike_lanes"), "{written}");

    // After that fetch: a branch that is not local reads as origin's, and the working tree compares too.
    let (code, out, err) = honua(&ci, &["diff", "--from", "main", "--to", "HEAD"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("bike_lanes"), "{out}");
    let (code, out, err) = honua(&ci, &["plan", "--from", "main", "--to-dir", "."]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("bike_lanes"), "{out}");
}
