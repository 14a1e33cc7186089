//! GitHub: webhook verification and parsing into domain events at the edge. Only this module knows
//! GitHub's JSON; everything after it works with [`webhook::Event`].

pub mod checks;
pub mod client;
pub mod commands;
pub mod webhook;
