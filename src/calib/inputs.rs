//! Calibration inputs as a sequence of batches a pass walks through in order.
//!
//! [`CalibInputs`] decodes each batch when a pass asks for it and drops it after the
//! forward, so memory does not grow with the number of calibration images (the two passes
//! decode every image twice: cheaper than holding ~0.6 MB per input). Batch `i` always
//! holds the same samples in the same order, so both passes, and both backends, see the
//! same tensors as batches decoded once up front ([`super::load_batches`]).

use std::borrow::Cow;
use std::ops::Range;

use rayon::prelude::*;

use super::spread_indices;
use crate::error::{Error, Result};
use crate::graph::{Graph, Preprocess};
use crate::io::dataset::Dataset;
use crate::io::preprocess;
use crate::tensor::Tensor;

/// Batches of calibration inputs, in a fixed order.
pub trait Batches: Sync {
    /// Number of batches.
    fn count(&self) -> usize;
    /// Number of inputs over all batches.
    fn inputs(&self) -> usize;
    /// Batch `i` (`i < count()`), `[n, C, H, W]`.
    fn batch(&self, i: usize) -> Result<Cow<'_, Tensor>>;
}

impl Batches for [Tensor] {
    fn count(&self) -> usize {
        self.len()
    }
    fn inputs(&self) -> usize {
        self.iter().map(|b| b.shape[0]).sum()
    }
    fn batch(&self, i: usize) -> Result<Cow<'_, Tensor>> {
        self.get(i)
            .map(Cow::Borrowed)
            .ok_or_else(|| Error::Engine(format!("batch {i} of {}", self.len())))
    }
}

impl Batches for Vec<Tensor> {
    fn count(&self) -> usize {
        self.as_slice().count()
    }
    fn inputs(&self) -> usize {
        self.as_slice().inputs()
    }
    fn batch(&self, i: usize) -> Result<Cow<'_, Tensor>> {
        self.as_slice().batch(i)
    }
}

/// `n` inputs (after view expansion) of a dataset spread over it, `batch` at a time,
/// decoded on demand (module docs).
pub struct CalibInputs<'a> {
    data: &'a Dataset,
    pre: &'a Preprocess,
    views: usize,
    /// Sample indices of each batch.
    batches: Vec<Vec<usize>>,
}

impl<'a> CalibInputs<'a> {
    /// Checks the model's preprocessing and the views, and picks the samples; decodes
    /// nothing.
    pub fn new(
        g: &'a Graph,
        data: &'a Dataset,
        views: usize,
        n: usize,
        batch: usize,
    ) -> Result<Self> {
        g.preprocess.validate(&g.name)?;
        preprocess::views(views)?;
        let idx = spread_indices(data.len_views(views), n);
        if idx.is_empty() {
            return Err(Error::Dataset(format!(
                "{}: no calibration images",
                data.root.display()
            )));
        }
        Ok(CalibInputs {
            data,
            pre: &g.preprocess,
            views,
            batches: idx.chunks(batch.max(1)).map(<[usize]>::to_vec).collect(),
        })
    }
}

/// Maximal runs of consecutive indices, e.g. `[3, 4, 5, 9]` → `[3..6, 9..10]`.
fn runs(idx: &[usize]) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> = Vec::new();
    for &i in idx {
        match out.last_mut() {
            Some(r) if r.end == i => r.end += 1,
            _ => out.push(i..i + 1),
        }
    }
    out
}

impl Batches for CalibInputs<'_> {
    fn count(&self) -> usize {
        self.batches.len()
    }
    fn inputs(&self) -> usize {
        self.batches.iter().map(Vec::len).sum()
    }
    /// Each run of consecutive samples is one [`Dataset::load_batch`] (an image decoded
    /// once for all its views in the run); runs load in parallel and stack in order.
    fn batch(&self, i: usize) -> Result<Cow<'_, Tensor>> {
        let idx = self.batches.get(i).ok_or_else(|| {
            Error::Engine(format!("calibration batch {i} of {}", self.batches.len()))
        })?;
        let parts = runs(idx)
            .into_par_iter()
            .map(|r| Ok(self.data.load_batch(r, self.pre, self.views)?.0))
            .collect::<Result<Vec<Tensor>>>()?;
        Ok(Cow::Owned(stack(parts)?))
    }
}

/// Concatenates batches along N.
fn stack(parts: Vec<Tensor>) -> Result<Tensor> {
    let first = parts
        .first()
        .ok_or_else(|| Error::Engine("empty batch".into()))?;
    let mut shape = first.shape.clone();
    shape[0] = parts.iter().map(|t| t.shape[0]).sum();
    let data = parts.into_iter().flat_map(|t| t.data).collect();
    Tensor::from_vec(&shape, data)
}

#[cfg(test)]
mod tests {
    use super::runs;

    #[test]
    fn runs_split_at_gaps() {
        assert_eq!(runs(&[3, 4, 5, 9]), vec![3..6, 9..10]);
        assert_eq!(runs(&[0, 2, 4]), vec![0..1, 2..3, 4..5]);
        assert!(runs(&[]).is_empty());
    }
}
