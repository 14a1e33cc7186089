//! The deployment ledger: a dedicated ref of the config repository, `refs/honua/ledger`, holding one
//! commit per signed decision with the signed record as a file (`<environment>/<sequence>-<id>.json`).
//! Agents read it when the service is unreachable; they trust a record only if its signature verifies
//! with the key they pinned, so write access to the ref grants nothing by itself.

use git2::{FileMode, Oid, Repository, Signature};
use serde::{Deserialize, Serialize};

use super::mirror::Mirror;
use super::GitError;

pub const LEDGER_REF: &str = "refs/honua/ledger";

/// One signed record as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub environment: String,
    pub sequence: i64,
    pub deployment: String,
    /// The record and its signature, as the fields `record` and `signature` of the file.
    #[serde(flatten)]
    pub signed: crate::plan::signing::Signed,
    /// The environment's deployment windows and blackouts when it was approved (not signed: they only
    /// ever delay a deployment), so an agent reading the ledger still waits for its window.
    #[serde(default)]
    pub windows: crate::policy::window::Rules,
}

impl LedgerEntry {
    pub fn path(&self) -> String {
        format!("{}/{:010}-{}.json", self.environment, self.sequence, self.deployment)
    }
}

fn read_err(mirror: &Mirror, what: &str, e: git2::Error) -> GitError {
    GitError::Read {
        path: mirror.path().to_path_buf(),
        rev: LEDGER_REF.into(),
        what: what.into(),
        message: e.message().to_string(),
    }
}

/// Adds `entries` (those not in the ledger yet) on top of the local ledger ref; returns the new head,
/// or `None` when every entry was there already.
fn append(mirror: &Mirror, entries: &[LedgerEntry]) -> Result<Option<Oid>, GitError> {
    let repo: &Repository = mirror.repo();
    let err = |what: &'static str| move |e: git2::Error| read_err(mirror, what, e);
    let parent = match repo.refname_to_id(LEDGER_REF) {
        Ok(oid) => Some(repo.find_commit(oid).map_err(err("ledger head"))?),
        Err(_) => None,
    };
    let base_tree = parent.as_ref().map(|c| c.tree()).transpose().map_err(err("ledger tree"))?;
    let missing: Vec<&LedgerEntry> = entries
        .iter()
        .filter(|e| base_tree.as_ref().is_none_or(|t| t.get_path(std::path::Path::new(&e.path())).is_err()))
        .collect();
    if missing.is_empty() {
        return Ok(None);
    }
    let mut root = repo.treebuilder(base_tree.as_ref()).map_err(err("ledger tree"))?;
    let mut by_env: std::collections::BTreeMap<&str, Vec<&LedgerEntry>> = Default::default();
    for e in &missing {
        by_env.entry(e.environment.as_str()).or_default().push(e);
    }
    for (env, list) in by_env {
        let existing = root
            .get(env)
            .map_err(err("ledger tree"))?
            .map(|entry| repo.find_tree(entry.id()))
            .transpose()
            .map_err(err("ledger tree"))?;
        let mut dir = repo.treebuilder(existing.as_ref()).map_err(err("ledger tree"))?;
        for e in list {
            let file = serde_json::to_vec_pretty(e).expect("entries encode");
            let blob = repo.blob(&file).map_err(err("ledger blob"))?;
            let name = e.path().rsplit_once('/').map(|(_, n)| n.to_string()).unwrap_or_default();
            dir.insert(name, blob, FileMode::Blob.into()).map_err(err("ledger tree"))?;
        }
        let dir_id = dir.write().map_err(err("ledger tree"))?;
        root.insert(env, dir_id, FileMode::Tree.into()).map_err(err("ledger tree"))?;
    }
    let tree = repo.find_tree(root.write().map_err(err("ledger tree"))?).map_err(err("ledger tree"))?;
    let who = Signature::now("Honua GitOps", "gitops@honua.invalid").map_err(err("ledger signature"))?;
    let message = missing
        .iter()
        .map(|e| format!("{}: {} approved (sequence {})", e.environment, e.deployment, e.sequence))
        .collect::<Vec<_>>()
        .join("\n");
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    let oid = repo.commit(Some(LEDGER_REF), &who, &who, &message, &tree, &parents).map_err(err("ledger commit"))?;
    Ok(Some(oid))
}

/// Publishes `entries` to the remote's ledger ref: fetch it, add what is missing, push (never
/// forced). When another writer pushed first, the ledger is fetched again and the entries re-added
/// on top, a few times.
pub fn publish(mirror: &Mirror, entries: &[LedgerEntry], token: Option<&str>) -> Result<(), GitError> {
    for _attempt in 0..5 {
        // A remote without the ref yet is fine: the first commit starts it.
        let _ = mirror.fetch(&[LEDGER_REF], token);
        if append(mirror, entries)?.is_none() && remote_has_local_head(mirror, token)? {
            return Ok(());
        }
        if mirror.push(&format!("{LEDGER_REF}:{LEDGER_REF}"), token)? {
            return Ok(());
        }
    }
    Err(GitError::Read {
        path: mirror.path().to_path_buf(),
        rev: LEDGER_REF.into(),
        what: format!("push to {}", mirror.url()),
        message: "the ledger kept moving under concurrent writers; the next decision retries".into(),
    })
}

/// Whether the remote's ledger is the local one (after a fetch, a local head that is not pushed yet
/// differs from it).
fn remote_has_local_head(mirror: &Mirror, token: Option<&str>) -> Result<bool, GitError> {
    let local = mirror.repo().refname_to_id(LEDGER_REF).ok();
    super::mirror::bound_network_time();
    let mut remote = mirror.repo().remote_anonymous(mirror.url()).map_err(|e| read_err(mirror, "ledger remote", e))?;
    let callbacks = super::mirror::credentials(token);
    let connection = remote
        .connect_auth(git2::Direction::Fetch, Some(callbacks), None)
        .map_err(|e| read_err(mirror, "ledger remote", e))?;
    let heads = connection.list().map_err(|e| read_err(mirror, "ledger remote", e))?;
    Ok(heads.iter().any(|h| h.name() == LEDGER_REF && Some(h.oid()) == local))
}

/// Every entry of the ledger at `commit` (what an agent reads).
pub fn read(repo: &Repository, commit: Oid) -> Result<Vec<LedgerEntry>, git2::Error> {
    let tree = repo.find_commit(commit)?.tree()?;
    let mut out = Vec::new();
    let mut failed = None;
    tree.walk(git2::TreeWalkMode::PreOrder, |_, entry| {
        if entry.kind() == Some(git2::ObjectType::Blob) {
            match repo.find_blob(entry.id()) {
                Ok(blob) => {
                    if let Ok(e) = serde_json::from_slice::<LedgerEntry>(blob.content()) {
                        out.push(e);
                    }
                }
                Err(e) => failed = Some(e),
            }
        }
        git2::TreeWalkResult::Ok
    })?;
    match failed {
        Some(e) => Err(e),
        None => Ok(out),
    }
}
