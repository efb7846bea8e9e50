//! The command line. [`args`]: the clap definitions and their mapping to library types;
//! [`commands`]: one body per command (`ptq4 bench`'s in [`bench`]); [`guard`]: output that
//! never panics and outputs that never overwrite an input. Arguments are validated once in
//! `args` and turned into library calls in `commands`.

pub mod args;
mod bench;
mod commands;
mod guard;

use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::io::fetch;
use commands::*;

pub use args::{Cli, Command};
pub use guard::{check_outputs, emit, message};

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Fetch(a) => cmd_fetch(a),
        Command::Import(a) => cmd_import(a),
        Command::Inspect(a) => cmd_inspect(a),
        Command::Eval(a) => cmd_eval(a),
        Command::Quantize(a) => cmd_quantize(a),
        Command::Ablate(a) => cmd_ablate(a),
        Command::Report(a) => cmd_report(a),
        Command::Export(a) => cmd_export(a),
        Command::Bench(a) => bench::cmd_bench(a),
    }
}

/// Maps an error to the process exit code: 2 for usage errors, 1 otherwise.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    match e.downcast_ref::<Error>() {
        Some(Error::Usage(_)) => 2,
        _ => 1,
    }
}

/// A path that exists, a bundled name (its folder in the source tree), or a fetchable name:
/// its cache entry, verified (and fetched now if missing or damaged).
pub fn resolve(name_or_path: &str) -> anyhow::Result<PathBuf> {
    let p = Path::new(name_or_path);
    if p.exists() {
        return Ok(p.to_path_buf());
    }
    if let Some(b) = fetch::bundled(name_or_path) {
        return Ok(b);
    }
    if fetch::lookup(name_or_path).is_ok() {
        // Quiet when already cached: the entry is only re-verified.
        let progress = fetch::resolve(name_or_path).is_none();
        let got = fetch::fetch(
            &[name_or_path.to_string()],
            &fetch::home(),
            &crate::io::import::convert_pth,
            progress && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        )?;
        if let Some(p) = got.get(name_or_path) {
            return Ok(p.clone());
        }
    }
    Err(Error::Usage(format!(
        "{name_or_path}: no such file, and not a fetchable name ({})",
        fetch::known_names().join(", ")
    ))
    .into())
}
