//! Bias correction of quantized weights (Banner et al. 2019 §6, "Bias correction",
//! `w ← ξ_c(w + μ_c)`; docs/METHOD.md §4, the reference code's variance-then-mean correction).
//!
//! Per output channel c, with W_c the float weights and Q_c their quantized values:
//! ```text
//! f_c = std(W_c) / std(Q_c)                      (variance correction → channel scale)
//! m_c = mean(W_c) − f_c · mean(Q_c)               (mean correction → bias)
//! W_c^bc = f_c · Q_c + m_c  =  (Q_c − mean Q_c)·std W_c/std Q_c + mean W_c
//! ```
//! so mean(W^bc) = mean(W) and std(W^bc) = std(W) (population std, f64 arithmetic).
//!
//! Choices left open, made here:
//! - The reference code divides by std(Q_c) + 1e-8 (docs/METHOD.md §4); the epsilon only
//!   guards a zero denominator, which is handled explicitly: if Q_c is constant (0 bits, or
//!   every weight in one bin) the spread cannot be restored, f_c = 1 and only the mean is
//!   corrected (same values as the reference formula in exact arithmetic, without a 1e8
//!   factor). Otherwise no epsilon, so both
//!   moments match to f32 rounding.
//!
//! Deployment (so simulation equals the integer kernel): the factor goes into the channel's
//! scale, s_c ← f_c·s_c ([`corrected_params`]). The additive m_c cannot live in the codes;
//! since y_c = Σ (f_c·Q + m_c)·x + b_c = Σ f_c·Q·x + m_c·Σ_receptive x + b_c, the deployed model
//! replaces m_c·Σ_receptive x by its expectation and adds
//! `m_c · kh·kw · Σ_{ci ∈ group(c)} E[x_ci]` to the bias ([`bias_shift`]; E[x_ci] = mean of
//! the layer's input channel, after its activation; padding positions are ignored, i.e. the
//! interior value is used). A simulation meant to equal deployment uses the corrected params
//! and the shifted bias, not [`apply_bias_correction`].

use serde::{Deserialize, Serialize};

use super::scheme::{weight_rows, QParams};
use crate::error::{Error, Result};

/// Per-output-channel correction: W^bc = factor·Q + shift.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BiasCorrection {
    pub factor: Vec<f32>,
    pub shift: Vec<f32>,
}

fn mean_std(x: &[f32]) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = x
        .iter()
        .map(|&v| {
            let d = v as f64 - mean;
            d * d
        })
        .sum::<f64>()
        / n;
    (mean, var.sqrt())
}

/// The correction that maps quantized weights `wq` back to the per-channel mean and std of
/// `w` (both `[out_channels, ...]`, same layout).
pub fn bias_correction(w: &[f32], wq: &[f32], out_channels: usize) -> Result<BiasCorrection> {
    if w.len() != wq.len() {
        return Err(Error::Quant(format!(
            "bias correction: {} weights but {} quantized weights",
            w.len(),
            wq.len()
        )));
    }
    let mut factor = Vec::with_capacity(out_channels);
    let mut shift = Vec::with_capacity(out_channels);
    for (row, qrow) in weight_rows(w, out_channels)?.zip(weight_rows(wq, out_channels)?) {
        let (mw, sw) = mean_std(row);
        let (mq, sq) = mean_std(qrow);
        let f = if sq > 0.0 { sw / sq } else { 1.0 };
        factor.push(f as f32);
        // m from the f32 factor actually deployed.
        shift.push((mw - f as f32 as f64 * mq) as f32);
    }
    Ok(BiasCorrection { factor, shift })
}

/// factor·wq + shift per output channel (the corrected weights, for analysis and tests).
pub fn apply_bias_correction(wq: &[f32], bc: &BiasCorrection) -> Result<Vec<f32>> {
    if bc.factor.len() != bc.shift.len() {
        return Err(Error::Quant(
            "bias correction: factor/shift lengths differ".into(),
        ));
    }
    let rows = weight_rows(wq, bc.factor.len())?;
    Ok(rows
        .zip(bc.factor.iter().zip(&bc.shift))
        .flat_map(|(row, (&f, &m))| {
            row.iter()
                .map(move |&q| (f as f64 * q as f64 + m as f64) as f32)
        })
        .collect())
}

/// Quantizer parameters with the variance factor folded into each channel's scale.
pub fn corrected_params(params: &[QParams], bc: &BiasCorrection) -> Result<Vec<QParams>> {
    if params.len() != bc.factor.len() {
        return Err(Error::Quant(format!(
            "{} quantizers for {} corrected channels",
            params.len(),
            bc.factor.len()
        )));
    }
    Ok(params
        .iter()
        .zip(&bc.factor)
        .map(|(p, &f)| QParams {
            scale: p.scale * f,
            ..*p
        })
        .collect())
}

/// Input-aware bias correction from per-channel input means (the data-free form of
/// `gptq::input_bias_shift`): the bias decrement of output channel c is
/// `Σ_{ci ∈ group(c)} Σ_taps (ŵ − w)[c, ci, tap] · E[x_ci]`, every tap seeing its channel's
/// mean (zero padding at the borders is ignored). `w`, `wq`: `[cout, cin/groups, kh·kw]`.
pub fn input_bias_shift_from_means(
    w: &[f32],
    wq: &[f32],
    input_means: &[f64],
    kernel_hw: usize,
    groups: usize,
) -> Result<Vec<f32>> {
    let cin = input_means.len();
    if groups == 0 || kernel_hw == 0 || !cin.is_multiple_of(groups) || w.len() != wq.len() {
        return Err(Error::Quant(format!(
            "input bias shift: {} weights ({} deployed), {cin} input channels, {groups} groups",
            w.len(),
            wq.len()
        )));
    }
    let ipg = cin / groups;
    let per = ipg * kernel_hw;
    if per == 0 || !w.len().is_multiple_of(per) || !(w.len() / per).is_multiple_of(groups) {
        return Err(Error::Quant(format!(
            "input bias shift: {} weights do not split into rows of {ipg}×{kernel_hw}",
            w.len()
        )));
    }
    let cout = w.len() / per;
    let opg = cout / groups;
    Ok((0..cout)
        .map(|c| {
            let m = &input_means[(c / opg) * ipg..(c / opg + 1) * ipg];
            let row = c * per..(c + 1) * per;
            let d: f64 = w[row.clone()]
                .chunks(kernel_hw)
                .zip(wq[row].chunks(kernel_hw))
                .zip(m)
                .map(|((a, b), &x)| {
                    x * a
                        .iter()
                        .zip(b)
                        .map(|(&a, &b)| b as f64 - a as f64)
                        .sum::<f64>()
                })
                .sum();
            d as f32
        })
        .collect())
}

/// The bias increment per output channel that deploys the mean shift:
/// `shift[c] · kernel_hw · Σ_{ci ∈ group(c)} input_means[ci]` (module docs). `kernel_hw` = kh·kw
/// (1 for linear layers); `groups` as in the convolution (1 for linear, C for depthwise).
pub fn bias_shift(
    shift: &[f32],
    input_means: &[f64],
    kernel_hw: usize,
    groups: usize,
) -> Result<Vec<f32>> {
    let (cout, cin) = (shift.len(), input_means.len());
    if groups == 0 || cout % groups != 0 || cin % groups != 0 || cout == 0 {
        return Err(Error::Quant(format!(
            "bias shift: {cout} output and {cin} input channels do not split into {groups} groups"
        )));
    }
    let (opg, ipg) = (cout / groups, cin / groups);
    Ok(shift
        .iter()
        .enumerate()
        .map(|(c, &m)| {
            let g = c / opg;
            let s: f64 = input_means[g * ipg..(g + 1) * ipg].iter().sum();
            (m as f64 * kernel_hw as f64 * s) as f32
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_quantized_channel_gets_mean_only() {
        let bc = bias_correction(&[1.0, 2.0, 3.0], &[0.5, 0.5, 0.5], 1).unwrap();
        assert_eq!(bc.factor, vec![1.0]);
        assert_eq!(
            apply_bias_correction(&[0.5, 0.5, 0.5], &bc).unwrap(),
            vec![2.0; 3]
        );
    }

    #[test]
    fn input_bias_shift_from_means_weighs_each_channels_error_by_its_mean() {
        // 2 output channels, 2 input channels, 2 taps, 1 group.
        let w = [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0];
        let wq = [1.5, 1.0, 0.0, 1.0, 0.0, 0.25, 0.0, -0.5];
        let s = input_bias_shift_from_means(&w, &wq, &[2.0, 3.0], 2, 1).unwrap();
        assert_eq!(s, vec![0.5 * 2.0 - 3.0, 0.25 * 2.0 - 0.5 * 3.0]);
        // Depthwise: each output channel sees only its own input's mean.
        let s = input_bias_shift_from_means(&[0.0; 4], &[1.0, 1.0, 2.0, 0.0], &[3.0, 5.0], 2, 2)
            .unwrap();
        assert_eq!(s, vec![6.0, 10.0]);
        assert!(input_bias_shift_from_means(&[0.0; 3], &[0.0; 3], &[1.0, 1.0], 1, 1).is_err());
    }

    #[test]
    fn depthwise_bias_shift_uses_its_own_channel() {
        let s = bias_shift(&[1.0, 2.0], &[3.0, 5.0], 9, 2).unwrap();
        assert_eq!(s, vec![27.0, 90.0]);
        let s = bias_shift(&[1.0], &[3.0, 5.0], 1, 1).unwrap();
        assert_eq!(s, vec![8.0]);
        assert!(bias_shift(&[1.0, 2.0, 3.0], &[1.0, 1.0], 1, 2).is_err());
    }
}
