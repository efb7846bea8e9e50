//! Debian packages: `apt-get download` of one pinned `NAME=VER` into a fresh folder (no root
//! needed: only the package lists, which `apt-get update` fills, are read), and unpacking
//! with `dpkg-deb -x` after the `.deb` itself is checked against its pinned sha256 (a `.deb`
//! of an `all`-architecture package is the same file on every machine).

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::pip::tail_lines;
use super::{verify_sha256, Entry};
use crate::error::{Error, Result};

/// Downloads `package=version` into `dir` (which should be empty) and returns the `.deb`.
pub fn apt_download(package: &str, version: &str, dir: &Path) -> Result<PathBuf> {
    let spec = format!("{package}={version}");
    let out = Command::new("apt-get")
        .args(["download", "-q", &spec])
        .current_dir(dir)
        .output()
        .map_err(|e| match e.kind() {
            ErrorKind::NotFound => Error::Fetch(format!(
                "apt-get was not found; fetching {spec} needs a Debian-based system \
                 (or download the .deb by hand and unpack it with dpkg-deb -x)"
            )),
            _ => Error::Fetch(format!("could not run apt-get: {e}")),
        })?;
    if !out.status.success() {
        let tail = tail_lines(&String::from_utf8_lossy(&out.stderr), 6);
        return Err(Error::Fetch(format!(
            "could not download {spec} with apt-get: the package archive could not be \
             reached, or the package lists lack this version (apt-get update); apt-get \
             said:\n{tail}"
        )));
    }
    let debs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|d| d.ok().map(|d| d.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    match debs.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(Error::Fetch(format!(
            "apt-get reported success for {spec} but left {} .deb files in {}",
            debs.len(),
            dir.display()
        ))),
    }
}

/// Verifies the `.deb` against `deb_sha256`, unpacks it into `work` with `dpkg-deb -x` and
/// returns the unpacked tree (members are paths relative to it).
pub fn unpack(deb: &Path, entry: &Entry, deb_sha256: &str, work: &Path) -> Result<PathBuf> {
    let bytes = std::fs::read(deb).map_err(|e| Error::io(deb, e))?;
    verify_sha256(&deb.display().to_string(), &bytes, deb_sha256)?;
    let tree = work.join("unpacked");
    std::fs::create_dir_all(&tree).map_err(|e| Error::io(&tree, e))?;
    let out = Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(&tree)
        .output()
        .map_err(|e| match e.kind() {
            ErrorKind::NotFound => Error::Fetch(format!(
                "{}: dpkg-deb was not found; unpacking a .deb needs it (package dpkg)",
                entry.name
            )),
            _ => Error::Fetch(format!("could not run dpkg-deb: {e}")),
        })?;
    if !out.status.success() {
        return Err(Error::Fetch(format!(
            "dpkg-deb -x {} failed:\n{}",
            deb.display(),
            tail_lines(&String::from_utf8_lossy(&out.stderr), 6)
        )));
    }
    Ok(tree)
}
