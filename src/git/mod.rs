//! Git beyond reading one commit (which `config::commit` does): the mirrors the service and the agent
//! fetch into, and the ledger of signed deployment records.

pub mod ledger;
pub mod mirror;

pub use crate::config::commit::{read_commit, GitError, ResolvedCommit};
