//! Dual 4-bit tensors for poorly approximated layers (OMSE, Choukroun et al. 2019 §3.3;
//! docs/METHOD.md §5).
//!
//! ```text
//! W ≈ s₁Q₁ + s₂Q₂,   Q₁ = Q(W) with the caller's per-channel quantizers,
//!                    Q₂ = Q(R), R = W − deq(Q₁), per-output-channel min-max of R
//! relative error  e = ‖W − Ŵ‖₂ / ‖W‖₂   (0 when W = 0)
//! ```
//! (s·Q stands for the asymmetric (Q − z)·s of `scheme`.) The second tensor costs a second
//! integer pass over the same input; its per-channel zero point and scale are independent.
//! Layers are ranked by the relative error of their single quantization and the K worst get a
//! second tensor (`--dual K`); ties keep the lower layer index first.

use serde::{Deserialize, Serialize};

use super::scheme::{dequantize_weights, minmax_weights_per_channel, quantize_weights, QParams};
use crate::error::{Error, Result};

/// Bits of the dual tensors (docs/METHOD.md §5: a second 4-bit tensor).
pub const DUAL_BITS: u8 = 4;

/// Two per-output-channel quantizations whose values add up to the approximation of W.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DualQuant {
    pub first: Vec<QParams>,
    pub first_codes: Vec<u8>,
    pub second: Vec<QParams>,
    pub second_codes: Vec<u8>,
}

impl DualQuant {
    /// deq(Q₁) + deq(Q₂), element by element (f32 sum).
    pub fn reconstruct(&self) -> Result<Vec<f32>> {
        let a = dequantize_weights(&self.first_codes, &self.first)?;
        let b = dequantize_weights(&self.second_codes, &self.second)?;
        Ok(a.iter().zip(&b).map(|(x, y)| x + y).collect())
    }
}

/// Quantizes `w` (`[out_channels, ...]`) with `first`, then the residual per output channel
/// with min-max at `second_bits` (normally [`DUAL_BITS`]).
pub fn dual_quantize(w: &[f32], first: &[QParams], second_bits: u8) -> Result<DualQuant> {
    let cout = first.len();
    let first_codes = quantize_weights(w, first)?;
    let deq = dequantize_weights(&first_codes, first)?;
    let residual: Vec<f32> = w.iter().zip(&deq).map(|(x, y)| x - y).collect();
    let second = minmax_weights_per_channel(&residual, cout, &vec![second_bits; cout])?;
    let second_codes = quantize_weights(&residual, &second)?;
    Ok(DualQuant {
        first: first.to_vec(),
        first_codes,
        second,
        second_codes,
    })
}

/// ‖w − approx‖₂ / ‖w‖₂ in f64 (0 when w = 0 and approx = w).
pub fn relative_error(w: &[f32], approx: &[f32]) -> Result<f64> {
    if w.len() != approx.len() {
        return Err(Error::Quant(format!(
            "relative error of {} values against {}",
            w.len(),
            approx.len()
        )));
    }
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (&x, &y) in w.iter().zip(approx) {
        let d = x as f64 - y as f64;
        num += d * d;
        den += x as f64 * x as f64;
    }
    Ok(if den == 0.0 {
        if num == 0.0 {
            0.0
        } else {
            f64::INFINITY
        }
    } else {
        (num / den).sqrt()
    })
}

/// Relative error of quantizing `w` with `params` per output channel.
pub fn quantization_error(w: &[f32], params: &[QParams]) -> Result<f64> {
    let codes = quantize_weights(w, params)?;
    relative_error(w, &dequantize_weights(&codes, params)?)
}

/// Indices of the `k` largest errors, largest first; ties by lower index; NaN counts as
/// largest (a layer that cannot be measured is the first to get help).
pub fn worst_k(errors: &[f64], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..errors.len()).collect();
    let key = |i: usize| {
        if errors[i].is_nan() {
            f64::INFINITY
        } else {
            errors[i]
        }
    };
    idx.sort_by(|&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_k_orders_and_breaks_ties_by_index() {
        assert_eq!(worst_k(&[0.1, 0.5, 0.5, f64::NAN, 0.2], 3), vec![3, 1, 2]);
        assert_eq!(worst_k(&[0.1], 5), vec![0]);
    }
}
