use std::process::ExitCode;

use clap::Parser;
use honua_gitops::cli::{run, Cli, EXIT_USAGE};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}
