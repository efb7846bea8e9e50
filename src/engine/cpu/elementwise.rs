//! Elementwise and data-movement ops: residual `add`, channel `concat`, in-place `relu` /
//! `relu6`, inference `batch_norm` and row-wise `softmax`, plus the epilogue helpers the
//! other kernels share (bias + fused activation, output allocation).
//!
//! Layouts: NCHW. `concat` joins along axis 1 (any rank ≥ 2: each input is `[N, Cᵢ·inner]`).
//! `softmax` normalises over the last axis: `yᵢ = exp(xᵢ − max x) / Σⱼ exp(xⱼ − max x)`.

use rayon::prelude::*;

use crate::graph::Activation;
use crate::tensor::Tensor;

/// Chunk length for rayon over flat buffers: big enough that splitting costs nothing.
const PAR_CHUNK: usize = 1 << 15;

/// A fresh output tensor (see [`prepare_out`]).
pub(crate) fn alloc_out(shape: &[usize]) -> Tensor {
    let mut t = Tensor {
        shape: Vec::new(),
        data: Vec::new(),
    };
    prepare_out(&mut t, shape);
    t
}

/// Reshapes `out` for a kernel that writes every element, reusing its allocation. Debug
/// builds fill it with a NaN sentinel so that a kernel that forgets an element fails its
/// parity test; release builds leave the old contents (new memory is zeroed).
pub(crate) fn prepare_out(out: &mut Tensor, shape: &[usize]) {
    let n: usize = shape.iter().product();
    out.shape.clear();
    out.shape.extend_from_slice(shape);
    if cfg!(debug_assertions) {
        out.data.clear();
        out.data.resize(n, f32::NAN);
    } else {
        out.data.resize(n, 0.0);
    }
}

/// Applies `act` in place (the match is hoisted so each loop vectorises).
#[inline]
pub(crate) fn apply_act(v: &mut [f32], act: Activation) {
    match act {
        Activation::None => {}
        Activation::Relu => v.iter_mut().for_each(|x| *x = Activation::Relu.apply(*x)),
        Activation::Relu6 => v.iter_mut().for_each(|x| *x = Activation::Relu6.apply(*x)),
    }
}

/// `dst = act(src + bias)`.
#[inline]
pub(crate) fn copy_bias_act(dst: &mut [f32], src: &[f32], bias: f32, act: Activation) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = *s + bias;
    }
    apply_act(dst, act);
}

/// `v = act(v + bias)` in place.
#[inline]
pub(crate) fn bias_act(v: &mut [f32], bias: f32, act: Activation) {
    if bias != 0.0 {
        v.iter_mut().for_each(|x| *x += bias);
    }
    apply_act(v, act);
}

/// Elementwise sum of two tensors of the same shape (residual connections).
pub fn add(a: &Tensor, b: &Tensor) -> Tensor {
    debug_assert_eq!(a.shape, b.shape);
    let mut out = alloc_out(&a.shape);
    out.data
        .par_chunks_mut(PAR_CHUNK)
        .zip(
            a.data
                .par_chunks(PAR_CHUNK)
                .zip(b.data.par_chunks(PAR_CHUNK)),
        )
        .for_each(|(o, (x, y))| {
            for ((o, x), y) in o.iter_mut().zip(x).zip(y) {
                *o = x + y;
            }
        });
    out
}

/// `a += b` elementwise (a residual add that reuses `a`'s buffer).
pub fn add_inplace(a: &mut Tensor, b: &Tensor) {
    debug_assert_eq!(a.shape, b.shape);
    a.data
        .par_chunks_mut(PAR_CHUNK)
        .zip(b.data.par_chunks(PAR_CHUNK))
        .for_each(|(x, y)| x.iter_mut().zip(y).for_each(|(x, y)| *x += y));
}

/// Concatenation along the channel axis (axis 1).
pub fn concat(xs: &[&Tensor]) -> Tensor {
    let Some(first) = xs.first() else {
        return Tensor::zeros(&[0]);
    };
    let n = first.shape[0];
    let mut shape = first.shape.clone();
    shape[1] = xs.iter().map(|t| t.shape[1]).sum();
    debug_assert!(xs
        .iter()
        .all(|t| t.shape[0] == n && t.shape[2..] == first.shape[2..]));
    let mut out = alloc_out(&shape);
    let per_out = out.data.len() / n.max(1);
    if per_out == 0 {
        return out;
    }
    out.data
        .par_chunks_mut(per_out)
        .enumerate()
        .for_each(|(i, dst)| {
            let mut at = 0;
            for t in xs {
                let src = t.item(i);
                dst[at..at + src.len()].copy_from_slice(src);
                at += src.len();
            }
        });
    out
}

/// `x = max(x, 0)` in place.
pub fn relu(x: &mut Tensor) {
    x.data
        .par_chunks_mut(PAR_CHUNK)
        .for_each(|c| apply_act(c, Activation::Relu));
}

/// `x = min(x, cap[c])` in place on an `[N, C, …]` tensor: the per-channel upper bounds of
/// an equalized ReLU6 (`Graph::act_max`; the ReLU itself is the producer's fused one, and
/// min and max(·, 0) commute for positive bounds).
pub fn cap_channels(x: &mut Tensor, cap: &[f32]) {
    let c = cap.len().max(1);
    let plane = x.numel() / x.shape.first().copied().unwrap_or(1).max(1) / c;
    x.data
        .par_chunks_mut(plane.max(1))
        .enumerate()
        .for_each(|(i, p)| {
            let m = cap[i % c];
            p.iter_mut().for_each(|v| *v = v.min(m));
        });
}

/// `x = min(max(x, 0), 6)` in place.
pub fn relu6(x: &mut Tensor) {
    x.data
        .par_chunks_mut(PAR_CHUNK)
        .for_each(|c| apply_act(c, Activation::Relu6));
}

/// Per channel (k, b) of an inference BatchNorm `y = x·k + b` (k = γ/√(var + eps) and
/// b = β − mean·k in f64, each rounded once to f32): the FP32 executors and the code tables
/// of a standalone BatchNorm on the integer paths share it.
pub fn batch_norm_coef(
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f32,
) -> Vec<(f32, f32)> {
    (0..gamma.len())
        .map(|ch| {
            let k = gamma[ch] as f64 / (var[ch] as f64 + eps as f64).sqrt();
            (k as f32, (beta[ch] as f64 - mean[ch] as f64 * k) as f32)
        })
        .collect()
}

/// Inference BatchNorm: `y = x·k + (β − mean·k)` with `k = γ/√(var + eps)` per channel
/// (the per-channel constants are formed in f64).
pub fn batch_norm(
    x: &Tensor,
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f32,
) -> Tensor {
    let c = x.shape[1];
    let plane: usize = x.shape[2..].iter().product();
    debug_assert!([gamma, beta, mean, var].iter().all(|p| p.len() == c));
    let coef = batch_norm_coef(gamma, beta, mean, var, eps);
    let mut out = alloc_out(&x.shape);
    if plane == 0 {
        return out;
    }
    out.data
        .par_chunks_mut(plane)
        .zip(x.data.par_chunks(plane))
        .enumerate()
        .for_each(|(i, (o, s))| {
            let (k, b) = coef[i % c];
            for (o, s) in o.iter_mut().zip(s) {
                *o = s * k + b;
            }
        });
    out
}

/// Softmax over the last axis, per row, shifted by the row maximum for stability.
pub fn softmax(x: &Tensor) -> Tensor {
    let row = x.shape.last().copied().unwrap_or(1);
    let mut out = alloc_out(&x.shape);
    if row == 0 {
        return out;
    }
    out.data
        .par_chunks_mut(row)
        .zip(x.data.par_chunks(row))
        .for_each(|(o, s)| {
            let m = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0f32;
            for (o, s) in o.iter_mut().zip(s) {
                *o = (s - m).exp();
                sum += *o;
            }
            let inv = 1.0 / sum;
            o.iter_mut().for_each(|v| *v *= inv);
        });
    out
}
