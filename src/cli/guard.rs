//! What the command line does before and after the work: refusing output paths that would
//! overwrite an input, another output or the fetch cache; writing to stdout without
//! panicking (a closed pipe ends output quietly, a full disk is an error); and the one-line
//! error message with each cause printed once.

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::error::Error;

/// Writes `text` to stdout and flushes it. A closed reader (`ptq4 inspect M | head -1`) is
/// not an error: the rest of the output is dropped. Any other failure (`> /dev/full`) is
/// [`Error::Stdout`].
pub fn emit(text: &str) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        r => r.map_err(Error::Stdout),
    }
}

/// `e` and its causes on one line, `: `-separated, skipping a cause whose text the message
/// already ends with (an error that prints its source itself).
pub fn message(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if msg.is_empty() {
            msg = text;
        } else if !msg.ends_with(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
    }
    msg
}

/// The absolute, symlink-free form of `p`, also for a path that does not exist yet: its
/// components are resolved one by one from the root, existing ones through the file system,
/// the rest lexically (`missing/..` is the folder itself, as `create_dir_all` would make it).
pub fn canonical(p: &Path) -> PathBuf {
    use std::path::Component;
    if let Ok(c) = p.canonicalize() {
        return c;
    }
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut cur = PathBuf::new();
    for comp in abs.components() {
        match comp {
            Component::CurDir => {}
            Component::ParentDir => {
                cur.pop();
            }
            Component::Normal(name) => {
                cur.push(name);
                if let Ok(c) = cur.canonicalize() {
                    cur = c;
                }
            }
            other => cur.push(other.as_os_str()),
        }
    }
    cur
}

/// Whether two existing paths are one file (hard links included; Unix only).
fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return x.dev() == y.dev() && x.ino() == y.ino();
        }
    }
    let _ = (a, b);
    false
}

/// Refuses, as a usage error and before any work, outputs that equal an input or another
/// output, or that lie inside the fetch cache `cache`. `inputs` and `outputs` are
/// `(option, path)`; inputs that do not exist as paths (fetchable names) are skipped.
pub fn check_outputs(
    inputs: &[(&str, &Path)],
    outputs: &[(&str, &Path)],
    cache: &Path,
) -> Result<(), Error> {
    let cache = canonical(cache);
    let ins: Vec<(&str, PathBuf)> = inputs
        .iter()
        .filter(|(_, p)| p.exists())
        .map(|(o, p)| (*o, canonical(p)))
        .collect();
    let mut seen: Vec<(&str, PathBuf)> = Vec::new();
    for (opt, p) in outputs {
        let c = canonical(p);
        if let Some((iopt, _)) = ins.iter().find(|(_, i)| *i == c || same_file(i, &c)) {
            return Err(Error::Usage(format!(
                "{opt} {}: is the {iopt} input; writing there would destroy it (choose another \
                 output path)",
                p.display()
            )));
        }
        if let Some((iopt, i)) = ins.iter().find(|(_, i)| i.is_dir() && c.starts_with(i)) {
            return Err(Error::Usage(format!(
                "{opt} {}: is inside the {iopt} folder {}; writing there would change or \
                 overwrite its files (choose a path outside it)",
                p.display(),
                i.display()
            )));
        }
        if let Some((oopt, _)) = seen.iter().find(|(_, o)| *o == c) {
            return Err(Error::Usage(format!(
                "{opt} {}: is also the {oopt} output; give each output its own path",
                p.display()
            )));
        }
        if c.starts_with(&cache) {
            return Err(Error::Usage(format!(
                "{opt} {}: is inside the ptq4 cache {} (managed by `ptq4 fetch`, $PTQ4_HOME); \
                 write it elsewhere",
                p.display(),
                cache.display()
            )));
        }
        seen.push((opt, c));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_of_missing_paths_and_clashes() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().canonicalize().unwrap();
        let input = d.path().join("m.safetensors");
        std::fs::write(&input, b"x").unwrap();
        assert_eq!(canonical(&d.path().join("a/b/c")), base.join("a/b/c"));
        assert_eq!(canonical(&d.path().join("a/../x")), base.join("x"));
        let dotted = d.path().join("missing/../m.safetensors");
        assert_eq!(canonical(&dotted), base.join("m.safetensors"));
        let cache = d.path().join("cache");
        let ins = [("--model", input.as_path())];
        let msg = check_outputs(&ins, &[("-o", &dotted)], &cache)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("--model") && msg.contains("-o"), "{msg}");
        let out = d.path().join("q.safetensors");
        let msg = check_outputs(&ins, &[("-o", &out), ("--report", &out)], &cache)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("--report") && msg.contains("-o output"),
            "{msg}"
        );
        let inside = cache.join("models/q.safetensors");
        let msg = check_outputs(&ins, &[("-o", &inside)], &cache)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("ptq4 cache"), "{msg}");
        check_outputs(&ins, &[("-o", &out)], &cache).unwrap();
        let folder = d.path().join("images");
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(folder.join("a.jpg"), b"x").unwrap();
        for o in [folder.join("a.jpg"), folder.join("new.safetensors")] {
            let msg = check_outputs(&[("--calib", &folder)], &[("-o", &o)], &cache)
                .unwrap_err()
                .to_string();
            assert!(msg.contains("inside the --calib folder"), "{msg}");
        }
        #[cfg(unix)]
        {
            let link = d.path().join("link.safetensors");
            std::fs::hard_link(&input, &link).unwrap();
            let msg = check_outputs(&ins, &[("-o", &link)], &cache)
                .unwrap_err()
                .to_string();
            assert!(msg.contains("--model input"), "{msg}");
        }
    }

    #[test]
    fn message_prints_each_cause_once() {
        let io = std::io::Error::new(ErrorKind::NotFound, "gone");
        let e = anyhow::Error::new(Error::io("/x/y", io)).context("loading /x/y");
        assert_eq!(message(&e), "loading /x/y: /x/y: gone");
    }
}
