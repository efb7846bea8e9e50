//! IDX files (the MNIST / Fashion-MNIST format), plain or gzip-compressed (by content: a
//! file starting with the gzip magic `1f 8b` is inflated first).
//!
//! Layout: two zero bytes, a type byte (only `0x08`, unsigned bytes, is read), a dimension
//! count, one big-endian `u32` per dimension, then the data, row-major. Images are
//! `idx3` (`[n, rows, cols]`), labels `idx1` (`[n]`). Everything is checked before use and
//! is an error, never a panic: a bad magic or type, a dimension product that overflows or
//! exceeds [`MAX_ELEMENTS`], data shorter or longer than the dimensions say, a label file
//! whose count differs from the images'.
//!
//! A labels file is found beside its images file by the standard name: `images-idx3` →
//! `labels-idx1` in the file name (`t10k-images-idx3-ubyte.gz` →
//! `t10k-labels-idx1-ubyte.gz`), compressed or not.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::limits::MAX_ELEMENTS;

/// The type byte of unsigned 8-bit data, the only one MNIST-style files use.
const UBYTE: u8 = 0x08;

/// One decoded IDX file: its dimensions and its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Idx {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Grey images `[n, rows, cols]` with one label each (consistent by construction).
#[derive(Clone, PartialEq, Eq)]
pub struct IdxImages {
    rows: usize,
    cols: usize,
    pixels: Vec<u8>,
    labels: Vec<u8>,
}

impl std::fmt::Debug for IdxImages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IdxImages[{}, {}, {}]", self.len(), self.rows, self.cols)
    }
}

impl IdxImages {
    /// Image height.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Image width.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// One label per image.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The pixels of image `i` (`rows · cols` bytes, row-major).
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.rows * self.cols;
        &self.pixels[i * n..(i + 1) * n]
    }

    /// Reads an images file and the labels file beside it ([`labels_path`]).
    pub fn open(images: &Path) -> Result<IdxImages> {
        let labels = labels_path(images)?;
        let img = read(images)?;
        let lab = read(&labels)?;
        IdxImages::new(img, lab).map_err(|msg| {
            Error::Dataset(format!(
                "{} with {}: {msg}",
                images.display(),
                labels.display()
            ))
        })
    }

    /// Pairs decoded images (`idx3`) and labels (`idx1`).
    pub fn new(images: Idx, labels: Idx) -> std::result::Result<IdxImages, String> {
        let &[n, rows, cols] = images.dims.as_slice() else {
            return Err(format!(
                "images must have 3 dimensions (idx3), not {}",
                images.dims.len()
            ));
        };
        let &[m] = labels.dims.as_slice() else {
            return Err(format!(
                "labels must have 1 dimension (idx1), not {}",
                labels.dims.len()
            ));
        };
        if n != m {
            return Err(format!("{n} images but {m} labels"));
        }
        if rows == 0 || cols == 0 {
            return Err(format!("images of {rows}×{cols} pixels"));
        }
        if rows > u32::MAX as usize || cols > u32::MAX as usize {
            return Err(format!("images of {rows}×{cols} pixels"));
        }
        Ok(IdxImages {
            rows,
            cols,
            pixels: images.data,
            labels: labels.data,
        })
    }
}

/// Whether `path`'s file name marks an IDX images file (`…-images-idx3-ubyte[.gz]`).
pub fn is_images_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.contains("images-idx3-ubyte"))
}

/// The labels file beside `images`: `images-idx3` → `labels-idx1` in the name, the same
/// name with or without `.gz` if only that one exists.
pub fn labels_path(images: &Path) -> Result<PathBuf> {
    let name = images
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| n.contains("images-idx3"))
        .ok_or_else(|| {
            Error::Dataset(format!(
                "{}: an IDX images file is named …images-idx3-ubyte[.gz]",
                images.display()
            ))
        })?;
    let labels = name.replacen("images-idx3", "labels-idx1", 1);
    let other = match labels.strip_suffix(".gz") {
        Some(plain) => plain.to_string(),
        None => format!("{labels}.gz"),
    };
    let candidates = [images.with_file_name(&labels), images.with_file_name(other)];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            Error::Dataset(format!(
                "{}: no labels file beside it ({} or {})",
                images.display(),
                candidates[0].display(),
                candidates[1].display()
            ))
        })
}

/// Reads and decodes one IDX file (see [`parse`]).
pub fn read(path: &Path) -> Result<Idx> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse(&bytes).map_err(|msg| Error::Dataset(format!("{}: {msg}", path.display())))
}

/// Decodes IDX bytes, inflating gzip first; the error says what is wrong.
pub fn parse(bytes: &[u8]) -> std::result::Result<Idx, String> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        // Inflate at most one byte past the largest valid file, so a gzip bomb stops early
        // and is reported as too large.
        let cap = 4 + 4 * 255 + MAX_ELEMENTS as u64 + 1;
        let mut raw = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .take(cap)
            .read_to_end(&mut raw)
            .map_err(|e| format!("not a valid gzip stream: {e}"))?;
        return parse_raw(&raw);
    }
    parse_raw(bytes)
}

fn parse_raw(b: &[u8]) -> std::result::Result<Idx, String> {
    let Some(&[z0, z1, ty, ndim]) = b.get(..4) else {
        return Err(format!("{} bytes: too short for an IDX header", b.len()));
    };
    if z0 != 0 || z1 != 0 {
        return Err(format!(
            "bad magic {z0:02x}{z1:02x}{ty:02x}{ndim:02x}: not an IDX file"
        ));
    }
    if ty != UBYTE {
        return Err(format!(
            "data type 0x{ty:02x} is not supported (only 0x08, unsigned bytes)"
        ));
    }
    let ndim = ndim as usize;
    if ndim == 0 {
        return Err("no dimensions".into());
    }
    let head = 4 + 4 * ndim;
    let dims_bytes = b
        .get(4..head)
        .ok_or_else(|| format!("truncated header: {ndim} dimensions need {head} bytes"))?;
    let dims: Vec<usize> = dims_bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let n = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_ELEMENTS)
        .ok_or_else(|| format!("dimensions {dims:?} exceed {MAX_ELEMENTS} elements"))?;
    let data = &b[head..];
    if data.len() != n {
        let what = if data.len() < n {
            "truncated"
        } else {
            "trailing bytes"
        };
        return Err(format!(
            "{what}: dimensions {dims:?} need {n} data bytes, the file has {}",
            data.len()
        ));
    }
    Ok(Idx {
        dims,
        data: data.to_vec(),
    })
}
