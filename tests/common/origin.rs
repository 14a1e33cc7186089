//! A config repository "on GitHub" and the bodies of GitHub's deliveries for it. Free of the rest of
//! `common`, so the load driver (`examples/load.rs`) uses it too.

use std::path::{Path, PathBuf};

pub const REPO: &str = "city/gis-config";

/// A config repository "on GitHub": a bare Git repository at `{git_root}/city/gis-config.git` (bare, as
/// on GitHub, so the service can push its ledger to it), with its default branch (`main` unless made
/// [`Origin::on_branch`]) and PR heads published as `refs/pull/N/head`, as GitHub does.
pub struct Origin {
    pub repo: git2::Repository,
    _dir: tempfile::TempDir,
    pub git_root: PathBuf,
    /// The default branch: its HEAD, where merges land.
    pub branch: String,
}

/// Writes the files under `dir` as a tree of `repo` (no index, no work tree).
fn write_tree(repo: &git2::Repository, dir: &Path) -> git2::Oid {
    let mut builder = repo.treebuilder(None).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let path = entry.path();
        if path.is_dir() {
            builder.insert(&name, write_tree(repo, &path), 0o040000).unwrap();
        } else {
            let blob = repo.blob(&std::fs::read(&path).unwrap()).unwrap();
            builder.insert(&name, blob, 0o100644).unwrap();
        }
    }
    builder.write().unwrap()
}

impl Origin {
    pub fn new(base: &Path) -> Origin {
        Origin::on_branch(base, "main")
    }

    /// An origin whose default branch (its HEAD) is `branch`; it has no other branch.
    pub fn on_branch(base: &Path, branch: &str) -> Origin {
        let dir = tempfile::tempdir().unwrap();
        let git_root = dir.path().to_path_buf();
        let repo = git2::Repository::init_bare(git_root.join("city/gis-config.git")).unwrap();
        let origin = Origin { repo, _dir: dir, git_root, branch: branch.to_string() };
        let head = origin.head_ref();
        origin.commit(&head, None, base, "base");
        origin.repo.set_head(&head).unwrap();
        origin
    }

    fn head_ref(&self) -> String {
        format!("refs/heads/{}", self.branch)
    }

    fn commit(&self, refname: &str, parent: Option<git2::Oid>, tree: &Path, message: &str) -> String {
        let tree = self.repo.find_tree(write_tree(&self.repo, tree)).unwrap();
        let sig = git2::Signature::now("Test", "test@example.org").unwrap();
        let parent = parent.map(|p| self.repo.find_commit(p).unwrap());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        let oid = self.repo.commit(None, &sig, &sig, message, &tree, &parents).unwrap();
        self.repo.reference(refname, oid, true, message).unwrap();
        oid.to_string()
    }

    /// Commits `tree` on top of the PR's previous head (or of the default branch's tip) and publishes it
    /// as PR `number`.
    pub fn push_pr(&self, number: u64, tree: &Path) -> String {
        let refname = format!("refs/pull/{number}/head");
        let parent = self.repo.refname_to_id(&refname).or_else(|_| self.repo.refname_to_id(&self.head_ref())).ok();
        self.commit(&refname, parent, tree, &format!("PR {number}"))
    }

    /// Commits `tree` on the default branch (a merge, as far as the service can tell) and returns the new
    /// head.
    pub fn merge(&self, tree: &Path) -> String {
        let parent = self.repo.refname_to_id(&self.head_ref()).ok();
        self.commit(&self.head_ref(), parent, tree, "merge")
    }

    /// The head of the default branch (`main` unless the origin was made on another).
    pub fn main_sha(&self) -> String {
        self.repo.refname_to_id(&self.head_ref()).unwrap().to_string()
    }
}

/// The body of GitHub's `pull_request` delivery for `REPO`, installation 7.
pub fn pull_request_payload(action: &str, number: u64, head_sha: &str, base_sha: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "action": action,
        "number": number,
        "pull_request": {
            "head": {"sha": head_sha, "ref": format!("feature-{number}"), "repo": {"name": "gis-config", "full_name": REPO, "owner": {"login": "city"}}},
            "base": {"sha": base_sha, "ref": "main", "repo": {"name": "gis-config", "full_name": REPO, "owner": {"login": "city"}}},
            "user": {"login": "alice", "type": "User"},
            "merged": false
        },
        "repository": {"name": "gis-config", "full_name": REPO, "owner": {"login": "city"}, "default_branch": "main"},
        "installation": {"id": 7}
    }))
    .unwrap()
}

/// The body of GitHub's `push` delivery to `main` of `REPO`, installation 7.
pub fn push_payload(before: &str, after: &str, pusher: &str) -> Vec<u8> {
    push_payload_on("main", before, after, pusher)
}

/// The body of a `push` delivery to `branch`, the default branch of `REPO`.
pub fn push_payload_on(branch: &str, before: &str, after: &str, pusher: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "ref": format!("refs/heads/{branch}"),
        "before": before,
        "after": after,
        "deleted": false,
        "repository": {"name": "gis-config", "full_name": REPO, "owner": {"login": "city"}, "default_branch": branch},
        "installation": {"id": 7},
        "sender": {"login": pusher, "type": "User"}
    }))
    .unwrap()
}

/// The body of an `issue_comment` delivery on PR `number` of `REPO`.
pub fn comment_payload(action: &str, number: u64, comment_id: u64, body: &str, login: &str, kind: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "action": action,
        "issue": {"number": number, "pull_request": {"url": format!("https://api.github.com/repos/{REPO}/pulls/{number}")}},
        "comment": {"id": comment_id, "body": body, "user": {"login": login, "type": kind}},
        "repository": {"name": "gis-config", "full_name": REPO, "owner": {"login": "city"}, "default_branch": "main"},
        "installation": {"id": 7}
    }))
    .unwrap()
}

/// The body of a `pull_request` `closed` delivery of a merged PR.
pub fn merged_payload(number: u64, head_sha: &str, merge_sha: &str) -> Vec<u8> {
    let mut p: serde_json::Value =
        serde_json::from_slice(&pull_request_payload("closed", number, head_sha, "")).unwrap();
    p["pull_request"]["merged"] = true.into();
    p["pull_request"]["merge_commit_sha"] = merge_sha.into();
    serde_json::to_vec(&p).unwrap()
}

/// The body of a `check_suite` `rerequested` delivery for `head_sha`, naming PR `number`.
pub fn check_suite_rerequested(head_sha: &str, number: u64) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "action": "rerequested",
        "check_suite": {"head_sha": head_sha, "pull_requests": [{"number": number}]},
        "repository": {"name": "gis-config", "full_name": REPO, "owner": {"login": "city"}, "default_branch": "main"},
        "installation": {"id": 7}
    }))
    .unwrap()
}

/// A copy of the config tree `from` whose `env` metadata has its first title prefixed with `prefix`: a
/// change to that environment alone, for a newer commit that must plan something there.
pub fn retitled(from: &Path, env: &str, prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(from, dir.path());
    let meta = dir.path().join(format!("environments/{env}/metadata.yaml"));
    let text = std::fs::read_to_string(&meta).unwrap();
    std::fs::write(&meta, text.replacen("title:", &format!("title: {prefix} "), 1)).unwrap();
    dir
}

pub fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// `tree` without production's deployment windows and blackouts: a test must not depend on its hour.
/// The Configuration 2.0 example as its pull request changes it (the change `honua demo --format hcl`
/// makes, and two more): the `bike_lanes` layer added, the `owner_name` field of `parcels` dropped (a
/// breaking change), and production's rate limit raised from 1000 to 2000 requests a minute. Deployment
/// windows removed, as [`without_windows`] does.
pub fn hcl_pull_request() -> tempfile::TempDir {
    let dir = without_windows(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/honua-config-hcl"));
    let edit = |file: &str, from: &str, to: &str| {
        let path = dir.path().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches(from).count(), 1, "{file}: `{from}` once");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    };
    let common = "environments/common/honua.hcl";
    edit(common, "    owner_name = {\n      type     = \"string\"\n      nullable = true\n    }\n", "");
    let shared = dir.path().join(common);
    let text = std::fs::read_to_string(&shared).unwrap();
    std::fs::write(&shared, text + honua_gitops::cli::demo::BIKE_LANES_HCL).unwrap();
    edit("environments/production/honua.hcl", "requests = 1000", "requests = 2000");
    dir
}

pub fn without_windows(tree: &std::path::Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(tree, dir.path());
    let policy = dir.path().join(".gitops/deployment-policy.yaml");
    let text = std::fs::read_to_string(&policy).unwrap();
    let (from, to) = (text.find("      deploymentWindows:").unwrap(), text.find("    notifications:").unwrap());
    std::fs::write(&policy, format!("{}{}", &text[..from], &text[to..])).unwrap();
    dir
}
