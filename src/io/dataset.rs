//! Image datasets read from a folder (JPEG and PNG, by extension, case-insensitive), or from
//! an IDX images file with its labels file beside it ([`super::idx`]).
//!
//! IDX: `path` is the images file (`…-images-idx3-ubyte[.gz]`), or a folder holding no
//! JPEG/PNG images and IDX images files: the only one, else the test split (`t10k-…`,
//! MNIST's name for it; the training split is opened by its file). Item `i` is image `i` of
//! the file (every item's `path` is the images file), labelled from the labels file; its
//! pixels are used as a decoded 8-bit grey image.
//!
//! Labels, decided once for the whole folder:
//! - flat folder whose every image is named `<anything>_<integer>.<ext>`: the integer
//!   (`imagenet_03_990.jpg` → 990);
//! - ImageFolder style (no images directly in the folder, one subfolder per class, images
//!   anywhere below it): the subfolder name when every name is an integer, otherwise the
//!   index of the subfolder among the sorted names;
//! - anything else: unlabelled.
//!
//! Listing follows symbolic links but enters each folder (by canonical path) once, so a
//! link loop terminates and no image is listed twice through it. Every non-folder entry
//! with an image extension is listed, so a broken link or an unreadable file is reported
//! by name when it is loaded rather than skipped.
//!
//! Items are sorted by path. Batches index the expanded set of `len() · views` samples,
//! image-major: sample `i` is view `i % views` (order in [`preprocess::VIEWS_12`]) of image
//! `i / views`, and carries that image's label. Output: NCHW f32, one row per sample.

use std::collections::HashSet;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::{DynamicImage, GrayImage};
use rayon::prelude::*;

use super::idx::{self, IdxImages};
use super::preprocess::{self, decode, preprocess_views};
use crate::error::{Error, Result};
use crate::graph::Preprocess;
use crate::tensor::Tensor;

/// One image file and its label, if the dataset has labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub path: PathBuf,
    pub label: Option<usize>,
}

/// Where the labels came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Labels {
    /// The last `_` field of each file name.
    FileNames,
    /// The IDX labels file beside the images file.
    Idx,
    /// ImageFolder style; `classes[k]` is the subfolder of class index `k` when the names
    /// are not integers (then empty: the names are the labels).
    Folders {
        classes: Vec<String>,
    },
    Unlabelled,
}

#[derive(Clone, Debug)]
pub struct Dataset {
    pub root: PathBuf,
    pub items: Vec<Item>,
    pub labels: Labels,
    /// The pixels of an IDX dataset (item `i` is image `i`); `None` for image files.
    pub idx: Option<Arc<IdxImages>>,
}

impl Dataset {
    /// Lists the images of a folder (or a single image file) and their labels.
    pub fn open(path: &Path) -> Result<Dataset> {
        if path.is_file() {
            if idx::is_images_file(path) {
                return open_idx(path);
            }
            if !is_image(path) {
                return Err(Error::Dataset(format!(
                    "{} is not a .jpg, .jpeg or .png file, nor an IDX images file",
                    path.display()
                )));
            }
            let label = file_label(path);
            let labels = label.map_or(Labels::Unlabelled, |_| Labels::FileNames);
            let items = vec![Item {
                path: path.to_path_buf(),
                label,
            }];
            return Ok(Dataset {
                root: path.to_path_buf(),
                items,
                labels,
                idx: None,
            });
        }
        let mut seen = Seen::default();
        let (files, dirs) = list(path, &mut seen)?;
        let idx_files: Vec<&PathBuf> = files.iter().filter(|p| idx::is_images_file(p)).collect();
        let images: Vec<PathBuf> = files.iter().filter(|p| is_image(p)).cloned().collect();
        if images.is_empty() && !idx_files.is_empty() {
            return open_idx(pick_idx(path, &idx_files)?);
        }
        let ds = if !images.is_empty() {
            if let Some(d) = dirs.iter().find(|d| has_images(d, &seen)) {
                return Err(Error::Dataset(format!(
                    "{} mixes images with image subfolders ({}); use one layout",
                    path.display(),
                    d.display()
                )));
            }
            flat(path, images)
        } else {
            folders(path, &dirs, &mut seen)?
        };
        if ds.items.is_empty() {
            return Err(Error::Dataset(format!(
                "no .jpg, .jpeg or .png images in {}",
                path.display()
            )));
        }
        Ok(ds)
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn is_labelled(&self) -> bool {
        self.labels != Labels::Unlabelled
    }

    /// Number of samples with `views` views per image.
    pub fn len_views(&self, views: usize) -> usize {
        self.items.len() * views
    }

    /// Keeps the first `n` items (in sorted order).
    pub fn limit(mut self, n: usize) -> Dataset {
        self.items.truncate(n);
        self
    }

    /// Consecutive sample ranges of at most `batch` over the expanded set.
    pub fn batches(&self, batch: usize, views: usize) -> Vec<Range<usize>> {
        let n = self.len_views(views);
        let b = batch.max(1);
        (0..n).step_by(b).map(|s| s..(s + b).min(n)).collect()
    }

    /// Samples `range` of the expanded set (see module docs) as an `[n, C, size, size]`
    /// tensor and their labels. Images are decoded in parallel; the output order is fixed.
    pub fn load_batch(
        &self,
        range: Range<usize>,
        pre: &Preprocess,
        views: usize,
    ) -> Result<(Tensor, Vec<Option<usize>>)> {
        pre.validate("the model")?;
        let all = preprocess::views(views)?;
        let total = self.len_views(views);
        if range.start > range.end || range.end > total {
            return Err(Error::Dataset(format!(
                "batch {range:?} out of range: {total} samples ({} images × {views} views)",
                self.len()
            )));
        }
        if range.is_empty() {
            return Ok((
                Tensor::zeros(&[0, pre.channels, pre.size, pre.size]),
                vec![],
            ));
        }
        let first = range.start / views;
        let last = (range.end - 1) / views;
        let chunks: Vec<Vec<f32>> = (first..=last)
            .into_par_iter()
            .map(|i| {
                let item = &self.items[i];
                let img = match &self.idx {
                    Some(x) => idx_image(x, i)?,
                    None => decode(&item.path)?,
                };
                let lo = range.start.max(i * views) - i * views;
                let hi = range.end.min((i + 1) * views) - i * views;
                preprocess_views(&img, pre, &all[lo..hi]).map_err(|e| name_file(e, item))
            })
            .collect::<Result<_>>()?;
        let data: Vec<f32> = chunks.concat();
        let labels = range.clone().map(|s| self.items[s / views].label).collect();
        let t = Tensor::from_vec(&[range.len(), pre.channels, pre.size, pre.size], data)?;
        Ok((t, labels))
    }

    /// Checks that the labels of the images holding samples `samples` (with `views` views)
    /// are classes of a model with `classes` outputs; the error names the first file
    /// whose label is not, its label and the class count.
    pub fn check_labels(&self, samples: Range<usize>, views: usize, classes: usize) -> Result<()> {
        let v = views.max(1);
        let items = self.items.get(samples.start / v..samples.end.div_ceil(v));
        let bad = items
            .into_iter()
            .flatten()
            .find_map(|it| it.label.filter(|&l| l >= classes).map(|l| (it, l)));
        match bad {
            Some((it, l)) => Err(Error::Image {
                path: it.path.clone(),
                msg: format!(
                    "label {l} is not a class of the model, which has {classes} classes \
                     (labels 0..={})",
                    classes.saturating_sub(1)
                ),
            }),
            None => Ok(()),
        }
    }
}

/// Errors without a file name get the item's path.
fn name_file(e: Error, item: &Item) -> Error {
    match e {
        Error::Dataset(msg) => Error::Image {
            path: item.path.clone(),
            msg,
        },
        other => other,
    }
}

fn flat(root: &Path, images: Vec<PathBuf>) -> Dataset {
    let labels: Vec<Option<usize>> = images.iter().map(|p| file_label(p)).collect();
    let all = labels.iter().all(Option::is_some);
    let items = images
        .into_iter()
        .zip(labels)
        .map(|(path, label)| Item {
            path,
            // All or nothing: one unparsable name makes the folder unlabelled.
            label: if all { label } else { None },
        })
        .collect();
    Dataset {
        root: root.to_path_buf(),
        items,
        labels: if all {
            Labels::FileNames
        } else {
            Labels::Unlabelled
        },
        idx: None,
    }
}

fn folders(root: &Path, dirs: &[PathBuf], seen: &mut Seen) -> Result<Dataset> {
    let names: Vec<String> = dirs
        .iter()
        .map(|d| {
            d.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect();
    let numeric: Option<Vec<usize>> = names.iter().map(|n| n.parse().ok()).collect();
    let mut items = Vec::new();
    for (k, dir) in dirs.iter().enumerate() {
        let label = numeric.as_ref().map_or(k, |ns| ns[k]);
        for path in images_below(dir, seen)? {
            items.push(Item {
                path,
                label: Some(label),
            });
        }
    }
    items.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Dataset {
        root: root.to_path_buf(),
        items,
        labels: Labels::Folders {
            classes: if numeric.is_some() { vec![] } else { names },
        },
        idx: None,
    })
}

/// The IDX images file `images` with its labels (see the module docs).
fn open_idx(images: &Path) -> Result<Dataset> {
    let x = IdxImages::open(images)?;
    if x.is_empty() {
        return Err(Error::Dataset(format!("{}: no images", images.display())));
    }
    let items = x
        .labels()
        .iter()
        .map(|&l| Item {
            path: images.to_path_buf(),
            label: Some(l as usize),
        })
        .collect();
    Ok(Dataset {
        root: images.to_path_buf(),
        items,
        labels: Labels::Idx,
        idx: Some(Arc::new(x)),
    })
}

/// The IDX images file a folder stands for: the only one, else the single `t10k-` one.
fn pick_idx<'a>(dir: &Path, files: &[&'a PathBuf]) -> Result<&'a Path> {
    let test: Vec<&PathBuf> = files
        .iter()
        .copied()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("t10k-"))
        })
        .collect();
    match (files, test.as_slice()) {
        ([one], _) | (_, [one]) => Ok(one.as_path()),
        _ => Err(Error::Dataset(format!(
            "{} holds several IDX images files ({}); name one",
            dir.display(),
            files
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Image `i` of an IDX dataset as an 8-bit grey image (the reader checked its size; a
/// mismatch is still an error, not a panic).
fn idx_image(x: &IdxImages, i: usize) -> Result<DynamicImage> {
    let (w, h) = (x.cols(), x.rows());
    let size = |v: usize| u32::try_from(v).ok();
    let img = size(w)
        .zip(size(h))
        .and_then(|(w, h)| GrayImage::from_raw(w, h, x.image(i).to_vec()))
        .ok_or_else(|| Error::Dataset(format!("IDX image {i}: not {h} × {w} bytes")))?;
    Ok(DynamicImage::ImageLuma8(img))
}

/// The integer after the last `_` of the file stem.
pub fn file_label(path: &Path) -> Option<usize> {
    let stem = path.file_stem()?.to_str()?;
    let (_, last) = stem.rsplit_once('_')?;
    last.parse().ok()
}

/// Whether `path` has a .jpg, .jpeg or .png extension (any case).
pub fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
}

/// Canonical paths of the folders already listed.
type Seen = HashSet<PathBuf>;

/// Sorted (files, subfolders) of `dir`, hidden entries skipped; empty when `dir` was
/// already listed (a link back to it). Files are all entries that are not folders.
fn list(dir: &Path, seen: &mut Seen) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let canonical = std::fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
    if !seen.insert(canonical) {
        return Ok((vec![], vec![]));
    }
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    for entry in rd {
        let p = entry.map_err(|e| Error::io(dir, e))?.path();
        let hidden = p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        if p.is_dir() {
            dirs.push(p);
        } else {
            files.push(p);
        }
    }
    files.sort();
    dirs.sort();
    Ok((files, dirs))
}

fn images_below(dir: &Path, seen: &mut Seen) -> Result<Vec<PathBuf>> {
    let (files, dirs) = list(dir, seen)?;
    let mut out: Vec<PathBuf> = files.into_iter().filter(|p| is_image(p)).collect();
    for d in dirs {
        out.extend(images_below(&d, seen)?);
    }
    Ok(out)
}

/// Whether images lie below `dir` (not counting folders listed in `seen`).
fn has_images(dir: &Path, seen: &Seen) -> bool {
    images_below(dir, &mut seen.clone()).is_ok_and(|v| !v.is_empty())
}
