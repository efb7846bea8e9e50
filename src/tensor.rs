//! Host tensor: a shape and contiguous row-major f32 data. Activations are NCHW.

use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    /// A tensor of zeros. The shape must come from a validated graph (see
    /// `limits`); sizes read from files go through [`Tensor::checked_zeros`].
    pub fn zeros(shape: &[usize]) -> Self {
        Tensor {
            shape: shape.to_vec(),
            data: vec![0.0; shape.iter().product()],
        }
    }

    /// A tensor of zeros, refusing shapes whose size overflows or exceeds
    /// [`MAX_ELEMENTS`](crate::limits::MAX_ELEMENTS) before allocating.
    pub fn checked_zeros(shape: &[usize]) -> Result<Self> {
        let n = crate::limits::checked_numel(shape, "tensor")?;
        Ok(Tensor {
            shape: shape.to_vec(),
            data: vec![0.0; n],
        })
    }

    /// Wraps `data`, checking that its length matches the shape.
    pub fn from_vec(shape: &[usize], data: Vec<f32>) -> Result<Self> {
        let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if n != Some(data.len()) {
            return Err(Error::Engine(format!(
                "tensor of shape {shape:?} does not hold {} values",
                data.len()
            )));
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            data,
        })
    }

    pub fn numel(&self) -> usize {
        self.data.len()
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// (N, C, H, W) of a rank-4 tensor.
    pub fn dims4(&self) -> Result<(usize, usize, usize, usize)> {
        match self.shape[..] {
            [n, c, h, w] => Ok((n, c, h, w)),
            _ => Err(Error::Engine(format!(
                "expected a rank-4 NCHW tensor, got shape {:?}",
                self.shape
            ))),
        }
    }

    /// The batch item `i` (first axis) as a slice.
    pub fn item(&self, i: usize) -> &[f32] {
        let per = self.data.len() / self.shape[0].max(1);
        &self.data[i * per..(i + 1) * per]
    }
}
