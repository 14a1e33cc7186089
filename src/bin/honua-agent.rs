//! `honua-agent`: the edge agent as its own, smaller binary. It links the agent and the offline core it
//! renders with, and none of the service (database drivers, the HTTP server, the pages, the dashboard):
//! what a firewalled Honua server runs for days. `honua agent` in the full binary is the same command.

use std::process::ExitCode;

use clap::Parser;
use honua_gitops::cli::{agent_command, lean_allocator, AgentCli, EXIT_USAGE};

// The same allocator as `honua`, made lean at idle by `lean_allocator`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = AgentCli::parse();
    lean_allocator();
    match agent_command(cli.agent) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}
