//! Standard output for what a command prints. A reader that stops early (`honua render | head`) closes
//! the pipe: the command then ends quietly with exit 0, as Unix tools do, instead of panicking as
//! `println!` does.

use std::io::{ErrorKind, Write};

/// Writes to standard output; a closed pipe ends the process quietly.
pub fn write(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        stop(e)
    }
}

/// Writes bytes to standard output (generated text that is not formatted here).
pub fn write_bytes(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        stop(e)
    }
}

/// Whether `error` comes from standard output's reader having gone away.
pub fn is_closed_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == ErrorKind::BrokenPipe))
}

fn stop(error: std::io::Error) -> ! {
    if error.kind() == ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    // Nothing can be printed to standard output any more; say why where it can be read.
    let _ = writeln!(std::io::stderr(), "error: cannot write to standard output: {error}");
    std::process::exit(2);
}

/// `print!` that ends quietly on a closed pipe.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::write(format_args!($($arg)*))
    };
}

/// `println!` that ends quietly on a closed pipe.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::cli::output::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::output::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}
