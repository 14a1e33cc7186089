use std::process::ExitCode;

// Loading a large catalogue allocates one small string per YAML scalar; mimalloc makes that ~2x cheaper
// than glibc's allocator (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use honua_gitops::cli::{run, Cli, EXIT_USAGE};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, honua_gitops::cli::Command::Agent(_)) {
        lean_allocator();
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// The agent idles for days between deployments: mimalloc should give freed memory back at once and
/// commit arenas as they are used, not up front. Those options are read when the allocator starts, before
/// `main`, so the agent re-executes itself once with them set (an operator's own setting wins). Measured
/// with `benches/agent_idle.sh`: anonymous memory at idle 15 MB -> 5 MB.
fn lean_allocator() {
    #[cfg(unix)]
    if std::env::var_os("HONUA_AGENT_LEAN").is_none() {
        use std::os::unix::process::CommandExt;
        let Ok(exe) = std::env::current_exe() else { return };
        let mut again = std::process::Command::new(exe);
        again.args(std::env::args_os().skip(1)).env("HONUA_AGENT_LEAN", "1");
        for name in ["MIMALLOC_ARENA_EAGER_COMMIT", "MIMALLOC_PURGE_DELAY"] {
            if std::env::var_os(name).is_none() {
                again.env(name, "0");
            }
        }
        // Only returns if the exec failed; then the agent simply runs with the defaults.
        let error = again.exec();
        eprintln!("note: running with the allocator's defaults ({error})");
    }
}
