use std::process::ExitCode;

// Loading a large catalogue allocates one small string per YAML scalar; mimalloc makes that ~2x cheaper
// than glibc's allocator (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use honua_gitops::cli::{lean_allocator, run, Cli, EXIT_USAGE};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, honua_gitops::cli::Command::Agent(_)) {
        lean_allocator();
    }
    match run(cli) {
        Ok(code) => code,
        // The reader of standard output stopped early (`| head`): nothing went wrong.
        Err(e) if honua_gitops::cli::output::is_closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}
