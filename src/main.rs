//! `ptq4` binary: parse, run, map the result to an exit code. Everything else is the library.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = ptq4::cli::Cli::parse();
    match ptq4::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Best effort: a closed stderr must not turn an error into a panic.
            let _ = writeln!(std::io::stderr(), "error: {}", ptq4::cli::message(&e));
            ExitCode::from(ptq4::cli::exit_code(&e))
        }
    }
}
