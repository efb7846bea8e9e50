//! Keeping the cache honest: a present entry is re-verified before it is used, and work
//! folders of interrupted fetches are removed.
//!
//! An image folder is checked file by file against the catalogue's sha256. A model is the
//! output of a conversion, which the catalogue cannot pin; after it is built, a stamp
//! `<model>.sha256` (`<hex> <size>`) records what was verified, and later uses compare the
//! file with it. A model without a stamp (an interrupted or older fetch) counts as damaged.

use std::path::{Path, PathBuf};

use super::{sha256_hex, Entry, Kind};
use crate::error::{Error, Result};

/// The stamp file of a cached model.
pub fn stamp_path(model: &Path) -> PathBuf {
    let mut s = model.as_os_str().to_os_string();
    s.push(".sha256");
    PathBuf::from(s)
}

/// The stamp text for the model bytes `bytes`.
pub fn stamp_of(bytes: &[u8]) -> String {
    format!("{} {}\n", sha256_hex(bytes), bytes.len())
}

/// Why the cache entry `target` of `entry` cannot be trusted, or `None` when it verifies.
pub fn damage(entry: &Entry, target: &Path) -> Option<String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let check = || -> std::result::Result<(), String> {
        match entry.kind {
            Kind::Images => {
                for m in entry.files {
                    let base = Path::new(m.path).file_name().unwrap_or_default();
                    let file = target.join(base);
                    if !sha256_hex(&read(&file)?).eq_ignore_ascii_case(m.sha256) {
                        return Err(format!("{} differs from its pinned sha256", file.display()));
                    }
                }
            }
            Kind::Model { .. } => {
                let stamp_file = stamp_path(target);
                let stamp =
                    read(&stamp_file).map_err(|e| format!("no verification stamp ({e})"))?;
                let bytes = read(target)?;
                if stamp_of(&bytes).as_bytes() != stamp.as_slice() {
                    return Err(format!(
                        "{} was changed or truncated since it was fetched",
                        target.display()
                    ));
                }
            }
        }
        Ok(())
    };
    check().err()
}

/// Removes a damaged entry (and a model's stamp) so that it can be fetched again.
pub fn remove(target: &Path) -> Result<()> {
    let r = if target.is_dir() {
        std::fs::remove_dir_all(target)
    } else {
        std::fs::remove_file(target)
    };
    match r {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(target, e)),
        _ => {
            let _ = std::fs::remove_file(stamp_path(target));
            Ok(())
        }
    }
}

/// Removes work folders `<home>/tmp/<name>.<pid>.<nanos>` whose process is gone (Linux
/// `/proc`; elsewhere nothing is removed). Best effort.
pub fn remove_stale_work(home: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(home.join("tmp")) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.rsplit('.').nth(1)) else {
            continue;
        };
        let is_pid = !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit());
        if is_pid && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}
