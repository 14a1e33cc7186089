//! Honua GitOps: safe, reviewed, audited changes to the configuration of Honua geospatial servers.
//!
//! The offline core: `config` loads a config repository, `validate` finds problems with real positions
//! (as Honua's server would refuse them), `diff` computes semantic changes and breaking changes,
//! `policy` decides, `plan` binds it all into a digest-stamped plan. The online half: `github` (the
//! edge to GitHub), `store` (SQLite or PostgreSQL), `controller` (the handlers of events, deployments,
//! approvals), `server` (HTTP: webhooks, API, pages), `git` (mirrors and the ledger), `agent` (the edge
//! agent beside Honua), `cli`; `standin` is a faithful stand-in Honua for the demo and the tests.

pub mod agent;
pub mod author;
pub mod cli;
pub mod config;
pub mod controller;
pub mod deployment;
pub mod diagnostic;
pub mod diff;
pub mod git;
pub mod github;
pub mod markdown;
pub mod plan;
pub mod policy;
pub mod server;
pub mod settings;
pub mod standin;
pub mod store;
pub mod validate;
