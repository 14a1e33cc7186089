//! Honua GitOps: safe, reviewed, audited changes to the configuration of Honua geospatial servers.
//!
//! The offline heart lives here: `config` loads a config repository, `validate` finds problems with
//! real positions, `diff` computes semantic changes and breaking changes, `policy` decides, `plan`
//! binds it all into a digest-stamped plan.

pub mod agent;
pub mod cli;
pub mod config;
pub mod controller;
pub mod diagnostic;
pub mod diff;
pub mod git;
pub mod github;
pub mod markdown;
pub mod plan;
pub mod policy;
pub mod server;
pub mod standin;
pub mod store;
pub mod validate;
