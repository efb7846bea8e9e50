//! Second-order weight rounding (OBQ/GPTQ: Frantar et al. 2022; docs/METHOD.md §13).
//!
//! Per conv/linear layer and group, with X the layer's input patches (one column per output
//! position and image: the im2col rows of the group's input channels, in weight order
//! `ci·kh·kw + ky·kw + kx`; padding contributes zeros):
//! ```text
//! H  = Σ x xᵀ                          (K × K, K = cin/groups · kh · kw; f64 accumulator)
//! H ← H + λ I,  λ = 0.01 · mean diag H (dead inputs, H_jj = 0, first get H_jj = 1)
//! H⁻¹ = Uᵀ U                           (U upper: the Cholesky factor of H⁻¹)
//! for j = 0 … K−1, every output row r of the group, with that row's own quantizer:
//!     q_rj = Q(w_rj);  e = (w_rj − deq q_rj) / U_jj;  w_rt ← w_rt − e · U_jt  (t > j)
//! ```
//! which greedily minimises the layer-output error Σ_r (w_r − ŵ_r)ᵀ H (w_r − ŵ_r) =
//! ‖(W − Ŵ) X‖², column by column, pushing each rounding error onto the weights not yet
//! quantized. U comes from one Cholesky and one triangular inverse: with J the index
//! reversal, J H J = L Lᵀ gives H⁻¹ = (J L⁻ᵀ J)(J L⁻¹ J), so U = J L⁻¹ J.
//!
//! Choices made here:
//! - The quantizers (scale, zero point, bits per output channel) are the plan's, chosen
//!   before (min-max, MMSE, bit allocation): only the codes change, so every executor runs a
//!   GPTQ plan unchanged.
//! - GPTQ is greedy and not guaranteed to beat rounding to nearest; per output row the
//!   rounding with the lower error (w − ŵ)ᵀ H (w − ŵ) on the undamped H is kept, so the
//!   layer-output error on the calibration inputs is never above nearest's.
//! - Columns in weight order (no activation ordering), no lazy block updates: rows are
//!   independent and processed whole (one pass over U per row), in parallel.
//! - A group whose damped H is not positive definite in f64 (not expected) keeps nearest.
//!
//! The same accumulator sums the patches (Σ x per group), whose mean x̄ gives input-aware
//! bias correction ([`input_bias_shift`]): b_c ← b_c − (ŵ_c − w_c)·x̄_g.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::scheme::{quantize_weights, QParams};
use crate::engine::cpu::gemm::{sgemm, MatRef};
use crate::error::{Error, Result};
use crate::graph::{Conv2d, Linear};

/// Dampening relative to the mean of H's diagonal (GPTQ's default).
pub const DAMP: f64 = 0.01;
/// Patch length up to which H is accumulated by dot products rather than a GEMM (the tiny
/// K × pos × K products of depthwise kernels are dominated by the GEMM's packing).
const SMALL_K: usize = 64;

/// The input-patch geometry of one layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Patches {
    pub in_channels: usize,
    pub groups: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    /// `[top, left, bottom, right]`.
    pub padding: [usize; 4],
}

impl Patches {
    pub fn conv(c: &Conv2d) -> Self {
        Patches {
            in_channels: c.in_channels,
            groups: c.groups,
            kernel: c.kernel,
            stride: c.stride,
            dilation: c.dilation,
            padding: c.padding,
        }
    }
    /// A linear layer: one "patch" of all features per row.
    pub fn linear(l: &Linear) -> Self {
        Patches {
            in_channels: l.in_features,
            groups: 1,
            kernel: [1, 1],
            stride: [1, 1],
            dilation: [1, 1],
            padding: [0; 4],
        }
    }
    /// Patch length per group (K).
    pub fn k(&self) -> usize {
        self.in_channels / self.groups.max(1) * self.kernel[0] * self.kernel[1]
    }
}

/// Σ x xᵀ of a layer's input patches, one K × K block per group (memory independent of
/// the number of inputs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hessian {
    pub patches: Patches,
    /// `groups` row-major K × K blocks.
    pub h: Vec<f64>,
    /// Σ x per group (`groups` × K): the mean patch, for input-aware bias correction.
    pub sum: Vec<f64>,
    /// Patches accumulated per group.
    pub rows: u64,
}

impl Hessian {
    pub fn new(patches: Patches) -> Result<Self> {
        let (g, c) = (patches.groups, patches.in_channels);
        if g == 0 || c == 0 || !c.is_multiple_of(g) {
            return Err(Error::Quant(format!(
                "{c} input channels do not split into {g} groups"
            )));
        }
        let k = patches.k();
        Ok(Hessian {
            h: vec![0.0; g * k * k],
            sum: vec![0.0; g * k],
            patches,
            rows: 0,
        })
    }

    /// The mean patch of group `g` (zeros before any input).
    pub fn mean(&self, g: usize) -> Vec<f64> {
        let k = self.patches.k();
        let n = self.rows.max(1) as f64;
        self.sum[g * k..(g + 1) * k].iter().map(|s| s / n).collect()
    }

    /// The K × K block of group `g`.
    pub fn block(&self, g: usize) -> &[f64] {
        let k = self.patches.k();
        &self.h[g * k * k..(g + 1) * k * k]
    }

    /// Adds the patches of a batch: NCHW `[n, c, h, w]` for a conv, `[n, f]` (or any shape
    /// with `f` values per image) for a linear layer.
    pub fn accumulate(&mut self, x: &[f32], shape: &[usize]) -> Result<()> {
        let n = shape.first().copied().unwrap_or(0);
        let p = self.patches.clone();
        let per = x.len() / n.max(1);
        let (c, ih, iw) = if shape.len() == 4 {
            (shape[1], shape[2], shape[3])
        } else {
            (per, 1, 1)
        };
        if n == 0 || c != p.in_channels || per != c * ih * iw || x.len() != n * per {
            return Err(Error::Quant(format!(
                "Hessian of a layer with {} input channels fed shape {shape:?}",
                p.in_channels
            )));
        }
        let (kh, kw) = (p.kernel[0], p.kernel[1]);
        let span = |len: usize, k: usize, s: usize, d: usize, pad: usize| {
            crate::graph::op::window_out(len, k, s, d, pad)
                .ok_or_else(|| Error::Quant(format!("window {k} does not fit {len}")))
        };
        let oh = span(
            ih,
            kh,
            p.stride[0],
            p.dilation[0],
            p.padding[0] + p.padding[2],
        )?;
        let ow = span(
            iw,
            kw,
            p.stride[1],
            p.dilation[1],
            p.padding[1] + p.padding[3],
        )?;
        let (k, cg, pos) = (p.k(), c / p.groups, oh * ow);
        let direct = kh == 1 && kw == 1 && p.stride == [1, 1] && p.padding == [0; 4];
        // Small patches (depthwise, grouped): the upper triangle of B Bᵀ as dot products of
        // the im2col rows, groups in parallel; large ones: one GEMM (threaded itself).
        let small = k <= SMALL_K;
        if small {
            // B: K × (n·pos), row-major (row = patch element, column = image and position).
            let np = n * pos;
            let blocks = self.h.par_chunks_mut(k * k).zip(self.sum.par_chunks_mut(k));
            blocks.enumerate().for_each_init(
                || vec![0f32; k * np],
                |cols, (g, (blk, sum))| {
                    for (i, img) in x.chunks_exact(per).enumerate() {
                        let xg = &img[g * cg * ih * iw..(g + 1) * cg * ih * iw];
                        im2col(xg, cg, ih, iw, oh, ow, &p, &mut cols[i * pos..], np);
                    }
                    for (s, row) in sum.iter_mut().zip(cols.chunks_exact(np)) {
                        *s += sum_f32(row);
                    }
                    gram_add(cols, k, np, blk);
                },
            );
        } else {
            let bs = (k / 8).max(SMALL_K);
            let (mut cols, mut prod) = (
                vec![0f32; if direct { 0 } else { k * pos }],
                vec![0f32; k * k],
            );
            for img in x.chunks_exact(per) {
                for g in 0..p.groups {
                    let xg = &img[g * cg * ih * iw..(g + 1) * cg * ih * iw];
                    // B: K × pos, row-major (row = patch element, column = output position).
                    let b: &[f32] = if direct {
                        xg
                    } else {
                        im2col(xg, cg, ih, iw, oh, ow, &p, &mut cols, pos);
                        &cols
                    };
                    // B Bᵀ is symmetric: only the block rows' upper parts are multiplied
                    // (about half the work at 8 block rows), the lower triangle mirrored. Each
                    // entry is the same f32 dot product a full product gives.
                    for r0 in (0..k).step_by(bs) {
                        let rows = bs.min(k - r0);
                        let bv = MatRef {
                            data: &b[r0 * pos..],
                            rs: pos,
                            cs: 1,
                        };
                        let bt = MatRef {
                            data: &b[r0 * pos..],
                            rs: 1,
                            cs: pos,
                        };
                        sgemm(rows, pos, k - r0, bv, bt, &mut prod[r0 * k + r0..], k);
                        // Into f64 while this block row is still in cache.
                        let blk = &mut self.h[g * k * k..(g + 1) * k * k];
                        for i in r0..r0 + rows {
                            let (h, p) = (
                                &mut blk[i * k + r0..(i + 1) * k],
                                &prod[i * k + r0..(i + 1) * k],
                            );
                            h.iter_mut().zip(p).for_each(|(h, &v)| *h += v as f64);
                        }
                    }
                    for (s, row) in self.sum[g * k..(g + 1) * k]
                        .iter_mut()
                        .zip(b.chunks_exact(pos))
                    {
                        *s += sum_f32(row);
                    }
                }
            }
            // The lower block triangle, once per batch.
            for blk in self.h.chunks_exact_mut(k * k) {
                for i in 0..k {
                    for j in 0..i / bs * bs {
                        blk[i * k + j] = blk[j * k + i];
                    }
                }
            }
        }
        self.rows += (n * pos) as u64;
        Ok(())
    }
}

/// The patches of one image's group (`cg` channels of `ih × iw`) as K rows of oh·ow
/// values, row `r` at `out[r·ld..]`, converted to `T` (exactly, for f32 and f64; also the
/// im2col of the precise f64 convolution, `engine::cpu::precise`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn im2col<T: Copy + From<f32>>(
    x: &[f32],
    cg: usize,
    ih: usize,
    iw: usize,
    oh: usize,
    ow: usize,
    p: &Patches,
    out: &mut [T],
    ld: usize,
) {
    let zero = T::from(0.0);
    let (kh, kw) = (p.kernel[0], p.kernel[1]);
    let pos = oh * ow;
    for ci in 0..cg {
        let plane = &x[ci * ih * iw..(ci + 1) * ih * iw];
        for ky in 0..kh {
            for kx in 0..kw {
                let row = &mut out[((ci * kh + ky) * kw + kx) * ld..][..pos];
                // Output columns whose input column lies inside the plane: [ox0, ox1).
                let off = kx * p.dilation[1];
                let ox0 = p.padding[1]
                    .saturating_sub(off)
                    .div_ceil(p.stride[1])
                    .min(ow);
                let ox1 = (iw + p.padding[1])
                    .saturating_sub(off)
                    .div_ceil(p.stride[1])
                    .clamp(ox0, ow);
                for (oy, dst) in row.chunks_exact_mut(ow).enumerate() {
                    let y = (oy * p.stride[0] + ky * p.dilation[0]).wrapping_sub(p.padding[0]);
                    if y >= ih {
                        dst.fill(zero);
                        continue;
                    }
                    dst[..ox0].fill(zero);
                    dst[ox1..].fill(zero);
                    let src = &plane[y * iw..(y + 1) * iw];
                    let x0 = ox0 * p.stride[1] + off - p.padding[1];
                    if p.stride[1] == 1 {
                        for (d, &v) in dst[ox0..ox1].iter_mut().zip(&src[x0..]) {
                            *d = T::from(v);
                        }
                    } else {
                        for (d, &v) in dst[ox0..ox1]
                            .iter_mut()
                            .zip(src[x0..].iter().step_by(p.stride[1]))
                        {
                            *d = T::from(v);
                        }
                    }
                }
            }
        }
    }
}

/// Σ a_i b_i in f64 with eight independent partial sums (so the loop vectorizes; the
/// order is fixed, so results are deterministic).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        return unsafe { dot_avx2(a, b) };
    }
    dot_lanes(a, b)
}

// The same lane-wise sums compiled for wider vectors: each lane is an independent
// accumulator and no FMA is enabled, so the results equal the baseline build's bit for bit.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_avx2(a: &[f64], b: &[f64]) -> f64 {
    dot_lanes(a, b)
}

/// `blk[i·k + j] += Σ_t row_i[t]·row_j[t]` (and the mirrored entry) for every pair of the
/// `k` rows of length `np` in `cols`: per pair, 16 f32 lane sums of the full 16-column
/// chunks, then the tail in f64 and the lanes folded in f64; bit for bit the pairwise dot
/// products this replaced, but over column
/// blocks that stay in L1 with every pair's 16 lane sums kept across blocks: each lane adds
/// the same products in the same order, and the rows are read once per block instead of
/// once per pair (the pairwise dots streamed them from memory k times).
fn gram_add(cols: &[f32], k: usize, np: usize, blk: &mut [f64]) {
    // The same lane-wise sums compiled for wider vectors: no FMA, so the same bits.
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { gram_add_avx512(cols, k, np, blk) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { gram_add_avx2(cols, k, np, blk) };
        }
    }
    gram_add_lanes(cols, k, np, blk)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn gram_add_avx2(cols: &[f32], k: usize, np: usize, blk: &mut [f64]) {
    gram_add_lanes(cols, k, np, blk)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2")]
unsafe fn gram_add_avx512(cols: &[f32], k: usize, np: usize, blk: &mut [f64]) {
    gram_add_lanes(cols, k, np, blk)
}

#[inline(always)]
fn gram_add_lanes(cols: &[f32], k: usize, np: usize, blk: &mut [f64]) {
    /// Columns per block: k ≤ `SMALL_K` rows of 1 KiB.
    const BLOCK: usize = 256;
    let full = np / 16 * 16;
    let row = |i: usize| &cols[i * np..(i + 1) * np];
    let mut acc = vec![[0f32; 16]; k * (k + 1) / 2];
    for c0 in (0..full).step_by(BLOCK) {
        let c1 = (c0 + BLOCK).min(full);
        let mut pair = 0;
        for i in 0..k {
            let a = &row(i)[c0..c1];
            // Pairs (i, j) four at a time: four independent lane chains share a's loads.
            let mut j = i;
            while j + 4 <= k {
                let b = std::array::from_fn(|t| &row(j + t)[c0..c1]);
                gram_lanes::<4>(a, b, &mut acc[pair..pair + 4]);
                (j, pair) = (j + 4, pair + 4);
            }
            while j < k {
                gram_lanes::<1>(a, [&row(j)[c0..c1]], &mut acc[pair..pair + 1]);
                (j, pair) = (j + 1, pair + 1);
            }
        }
    }
    let mut pair = 0;
    for i in 0..k {
        for j in i..k {
            let tail: f64 = row(i)[full..]
                .iter()
                .zip(&row(j)[full..])
                .map(|(&x, &y)| x as f64 * y as f64)
                .sum();
            let v = acc[pair].iter().map(|&v| v as f64).sum::<f64>() + tail;
            blk[i * k + j] += v;
            if j != i {
                blk[j * k + i] += v;
            }
            pair += 1;
        }
    }
}

/// `acc[t][l] += Σ_c a[16c + l] · b[t][16c + l]` over the 16-column chunks in order.
#[inline(always)]
fn gram_lanes<const N: usize>(a: &[f32], b: [&[f32]; N], acc: &mut [[f32; 16]]) {
    let mut t: [[f32; 16]; N] = std::array::from_fn(|q| acc[q]);
    for (c, x) in a.chunks_exact(16).enumerate() {
        for q in 0..N {
            let y = &b[q][c * 16..c * 16 + 16];
            for l in 0..16 {
                t[q][l] += x[l] * y[l];
            }
        }
    }
    acc[..N].copy_from_slice(&t);
}

/// Σ v in f64 over 8 lanes (a fixed order, so the loop vectorizes; sequential f64 adds
/// were a latency-bound third of the Hessians' cost on Lite0).
fn sum_f32(v: &[f32]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        return unsafe { sum_f32_avx2(v) };
    }
    sum_f32_lanes(v)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sum_f32_avx2(v: &[f32]) -> f64 {
    sum_f32_lanes(v)
}

#[inline(always)]
fn sum_f32_lanes(v: &[f32]) -> f64 {
    let mut acc = [0f64; 8];
    let c = v.chunks_exact(8);
    let tail: f64 = c.remainder().iter().map(|&x| x as f64).sum();
    for x in c {
        for i in 0..8 {
            acc[i] += x[i] as f64;
        }
    }
    acc.iter().sum::<f64>() + tail
}

#[inline(always)]
fn dot_lanes(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// Input-aware bias correction: per output channel c of group g, the bias decrement
/// Σ_t (ŵ_ct − w_ct) · x̄_gt with x̄_g the mean patch of the calibration inputs, so that the
/// layer's mean output over those inputs (every image and position, padding included) is the
/// float layer's (docs/METHOD.md §13). `wq`: the deployed weights, same layout as `w`.
pub fn input_bias_shift(w: &[f32], wq: &[f32], hess: &Hessian) -> Result<Vec<f32>> {
    let (groups, k) = (hess.patches.groups, hess.patches.k());
    if w.len() != wq.len() || k == 0 || !w.len().is_multiple_of(k * groups) {
        return Err(Error::Quant(format!(
            "input bias correction: {} weights, {} deployed, patch length {k}",
            w.len(),
            wq.len()
        )));
    }
    let cout = w.len() / k;
    let opg = cout / groups;
    let means: Vec<Vec<f64>> = (0..groups).map(|g| hess.mean(g)).collect();
    Ok((0..cout)
        .map(|c| {
            let m = &means[c / opg];
            let d: f64 = w[c * k..(c + 1) * k]
                .iter()
                .zip(&wq[c * k..(c + 1) * k])
                .zip(m)
                .map(|((&a, &b), &x)| (b as f64 - a as f64) * x)
                .sum();
            d as f32
        })
        .collect())
}

/// Σ_r (w_r − ŵ_r)ᵀ H (w_r − ŵ_r) of one row's error `e` (length K) under the K × K `h`.
pub fn quadratic(h: &[f64], e: &[f64]) -> f64 {
    let k = e.len();
    h.chunks_exact(k)
        .zip(e)
        .map(|(row, &ei)| ei * dot(row, e))
        .sum()
}

/// U upper with H⁻¹ = Uᵀ U for the damped `h` (module docs), row-major; `None` if the
/// damped matrix is not positive definite.
fn inverse_cholesky_upper(h: &[f64], k: usize) -> Option<Vec<f64>> {
    // M = J H J, lower Cholesky M = L Lᵀ (row-major L).
    let mut l = vec![0f64; k * k];
    for i in 0..k {
        for j in 0..=i {
            let m = h[(k - 1 - i) * k + (k - 1 - j)];
            let s = dot(&l[i * k..i * k + j], &l[j * k..j * k + j]);
            if i == j {
                let d = m - s;
                if d.is_nan() || d <= 0.0 {
                    return None;
                }
                l[i * k + i] = d.sqrt();
            } else {
                l[i * k + j] = (m - s) / l[j * k + j];
            }
        }
    }
    // L⁻¹ column by column (forward substitution), stored transposed: inv_t[j][i] = L⁻¹_ij.
    let mut inv_t = vec![0f64; k * k];
    for j in 0..k {
        let col = &mut inv_t[j * k..(j + 1) * k];
        col[j] = 1.0 / l[j * k + j];
        for i in j + 1..k {
            let s = dot(&l[i * k + j..i * k + i], &col[j..i]);
            col[i] = -s / l[i * k + i];
        }
    }
    // U_ab = (L⁻¹)_{K−1−a, K−1−b}.
    let mut u = vec![0f64; k * k];
    for a in 0..k {
        for b in a..k {
            u[a * k + b] = inv_t[(k - 1 - b) * k + (k - 1 - a)];
        }
    }
    Some(u)
}

/// The codes of weights `w` (`[cout, K·groups]` rows, weight layout) under the plan's
/// per-output-channel `params`, rounded by GPTQ against `hess` (module docs). Same length
/// and quantizers as `scheme::quantize_weights`.
pub fn gptq_codes(w: &[f32], params: &[QParams], hess: &Hessian) -> Result<Vec<u8>> {
    let (cout, groups, k) = (params.len(), hess.patches.groups, hess.patches.k());
    if cout == 0 || !cout.is_multiple_of(groups) || w.len() != cout * k {
        return Err(Error::Quant(format!(
            "GPTQ: {} weights, {cout} output channels, {groups} groups of patch length {k}",
            w.len()
        )));
    }
    let nearest = quantize_weights(w, params)?;
    let opg = cout / groups;
    let mut codes = nearest.clone();
    for g in 0..groups {
        let h0 = hess.block(g);
        let mut h = h0.to_vec();
        for j in 0..k {
            if h[j * k + j] == 0.0 {
                h[j * k + j] = 1.0;
            }
        }
        let damp = DAMP * (0..k).map(|j| h[j * k + j]).sum::<f64>() / k as f64;
        (0..k).for_each(|j| h[j * k + j] += damp);
        let Some(u) = inverse_cholesky_upper(&h, k) else {
            continue;
        };
        let rows = g * opg..(g + 1) * opg;
        let out: Vec<Vec<u8>> = rows
            .clone()
            .into_par_iter()
            .map(|r| {
                let p = &params[r];
                let inv = p.inv_scale();
                let orig = &w[r * k..(r + 1) * k];
                let mut wr: Vec<f64> = orig.iter().map(|&v| v as f64).collect();
                let mut q = vec![0u8; k];
                for j in 0..k {
                    q[j] = p.quantize_with(wr[j] as f32, inv);
                    let e = (wr[j] - p.dequantize(q[j]) as f64) / u[j * k + j];
                    let urow = &u[j * k + j + 1..(j + 1) * k];
                    wr[j + 1..]
                        .iter_mut()
                        .zip(urow)
                        .for_each(|(x, &uj)| *x -= e * uj);
                }
                let err = |c: &[u8]| -> f64 {
                    let e: Vec<f64> = orig
                        .iter()
                        .zip(c)
                        .map(|(&v, &c)| v as f64 - p.dequantize(c) as f64)
                        .collect();
                    quadratic(h0, &e)
                };
                let near = &nearest[r * k..(r + 1) * k];
                if err(&q) < err(near) {
                    q
                } else {
                    near.to_vec()
                }
            })
            .collect();
        for (r, q) in rows.zip(out) {
            codes[r * k..(r + 1) * k].copy_from_slice(&q);
        }
    }
    Ok(codes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pairwise dot product [`gram_add`] replaced: 16 f32 lane sums in order, the tail
    /// and the fold in f64.
    fn dot_f32_lanes(a: &[f32], b: &[f32]) -> f64 {
        let mut acc = [0f32; 16];
        let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
        let tail: f64 = ca
            .remainder()
            .iter()
            .zip(cb.remainder())
            .map(|(&x, &y)| x as f64 * y as f64)
            .sum();
        for (x, y) in ca.zip(cb) {
            for i in 0..16 {
                acc[i] += x[i] * y[i];
            }
        }
        acc.iter().map(|&v| v as f64).sum::<f64>() + tail
    }

    /// The blocked Gram product gives each pair's dot product bit for bit, over one and
    /// several column blocks, with and without a tail, adding to what the block held.
    #[test]
    fn gram_add_equals_the_pairwise_dots() {
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 3.0
        };
        for (k, np) in [(9, 5), (9, 16), (9, 597), (25, 256), (25, 1000), (1, 33)] {
            let cols: Vec<f32> = (0..k * np).map(|_| next()).collect();
            let start: Vec<f64> = (0..k * k).map(|i| i as f64 * 0.25).collect();
            let mut got = start.clone();
            gram_add(&cols, k, np, &mut got);
            for i in 0..k {
                for j in 0..k {
                    let d = dot_f32_lanes(&cols[i * np..(i + 1) * np], &cols[j * np..(j + 1) * np]);
                    let want = start[i * k + j] + d;
                    assert_eq!(
                        got[i * k + j].to_bits(),
                        want.to_bits(),
                        "k {k} np {np} ({i}, {j})"
                    );
                }
            }
        }
    }

    #[test]
    fn inverse_cholesky_factor_reproduces_the_inverse() {
        // H = A Aᵀ + I for a fixed A: check Uᵀ U H = I.
        let k = 5;
        let a: Vec<f64> = (0..k * k)
            .map(|i| ((i * 7919) % 13) as f64 / 6.0 - 1.0)
            .collect();
        let mut h = vec![0f64; k * k];
        for i in 0..k {
            for j in 0..k {
                h[i * k + j] = (0..k).map(|t| a[i * k + t] * a[j * k + t]).sum::<f64>()
                    + if i == j { 1.0 } else { 0.0 };
            }
        }
        let u = inverse_cholesky_upper(&h, k).unwrap();
        for i in 0..k {
            for j in 0..i {
                assert_eq!(u[i * k + j], 0.0);
            }
        }
        for i in 0..k {
            for j in 0..k {
                let v: f64 = (0..k)
                    .map(|t| {
                        let hinv_it: f64 = (0..k).map(|s| u[s * k + i] * u[s * k + t]).sum();
                        hinv_it * h[t * k + j]
                    })
                    .sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((v - want).abs() < 1e-9, "({i},{j}): {v}");
            }
        }
    }

    #[test]
    fn large_patch_hessians_equal_the_definition_over_batches() {
        // K = 150 (past SMALL_K: the blocked GEMM path, 3 block rows of 64, the last
        // partial), 2 groups, two batches of two images.
        let p = Patches {
            in_channels: 12,
            groups: 2,
            kernel: [5, 5],
            stride: [2, 1],
            dilation: [1, 1],
            padding: [2, 1, 1, 2],
        };
        let (ih, iw, k) = (9, 7, p.k());
        assert!(k > SMALL_K + 2 * 40);
        let oh = crate::graph::op::window_out(ih, 5, 2, 1, 3).unwrap();
        let ow = crate::graph::op::window_out(iw, 5, 1, 1, 3).unwrap();
        let mut h = Hessian::new(p.clone()).unwrap();
        let mut want = vec![0f64; 2 * k * k];
        let mut seed = 7u64;
        for _ in 0..2 {
            let x: Vec<f32> = (0..2 * 12 * ih * iw)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((seed >> 40) as f32 / (1u64 << 24) as f32) - 0.3
                })
                .collect();
            h.accumulate(&x, &[2, 12, ih, iw]).unwrap();
            for img in x.chunks_exact(12 * ih * iw) {
                for g in 0..2 {
                    let mut cols = vec![0f32; k * oh * ow];
                    let xg = &img[g * 6 * ih * iw..(g + 1) * 6 * ih * iw];
                    im2col(xg, 6, ih, iw, oh, ow, &p, &mut cols, oh * ow);
                    for i in 0..k {
                        for j in 0..k {
                            want[(g * k + i) * k + j] += (0..oh * ow)
                                .map(|t| {
                                    cols[i * oh * ow + t] as f64 * cols[j * oh * ow + t] as f64
                                })
                                .sum::<f64>();
                        }
                    }
                }
            }
        }
        for g in 0..2 {
            let blk = h.block(g);
            for i in 0..k {
                for j in 0..k {
                    assert_eq!(blk[i * k + j], blk[j * k + i], "symmetric ({i},{j})");
                    let w = want[(g * k + i) * k + j];
                    // f32 sums over ≤ oh·ow = 35 products of values below 1.
                    assert!(
                        (blk[i * k + j] - w).abs() < 1e-4,
                        "({g},{i},{j}) {} vs {w}",
                        blk[i * k + j]
                    );
                }
            }
        }
    }

    #[test]
    fn im2col_matches_a_direct_patch_read() {
        // 1 group of 2 channels 3×3, kernel 2×2, stride 1, padding 1 on top/left only.
        let p = Patches {
            in_channels: 2,
            groups: 1,
            kernel: [2, 2],
            stride: [1, 1],
            dilation: [1, 1],
            padding: [1, 1, 0, 0],
        };
        let x: Vec<f32> = (0..18).map(|v| v as f32).collect();
        let mut out = vec![0f32; 8 * 9];
        im2col(&x, 2, 3, 3, 3, 3, &p, &mut out, 9);
        // Output position (0, 0), channel 1, tap (1, 1) reads x[1][0][0] = 9.
        assert_eq!(out[(4 + 3) * 9], 9.0);
        // Tap (0, 0) at position (0, 0) is padding.
        assert_eq!(out[0], 0.0);
        // Channel 0, tap (0, 1) at position (2, 2) reads x[0][1][2] = 5.
        assert_eq!(out[9 + 8], 5.0);
    }

    #[test]
    fn im2col_equals_the_definition_for_strides_dilations_and_padding() {
        for (stride, dil, pad) in [
            ([2, 2], [1, 1], [1, 1, 1, 1]),
            ([1, 2], [2, 1], [0, 2, 1, 0]),
            ([3, 1], [1, 1], [2, 0, 0, 2]),
        ] {
            let p = Patches {
                in_channels: 2,
                groups: 1,
                kernel: [3, 2],
                stride,
                dilation: dil,
                padding: pad,
            };
            let (ih, iw) = (7, 6);
            let oh =
                crate::graph::op::window_out(ih, 3, stride[0], dil[0], pad[0] + pad[2]).unwrap();
            let ow =
                crate::graph::op::window_out(iw, 2, stride[1], dil[1], pad[1] + pad[3]).unwrap();
            let x: Vec<f32> = (0..2 * ih * iw).map(|v| v as f32 + 1.0).collect();
            let mut out = vec![f32::NAN; 2 * 6 * oh * ow];
            im2col(&x, 2, ih, iw, oh, ow, &p, &mut out, oh * ow);
            for ci in 0..2 {
                for ky in 0..3 {
                    for kx in 0..2 {
                        for oy in 0..oh {
                            for ox in 0..ow {
                                let y = (oy * stride[0] + ky * dil[0]) as isize - pad[0] as isize;
                                let xx = (ox * stride[1] + kx * dil[1]) as isize - pad[1] as isize;
                                let want =
                                    if y < 0 || xx < 0 || y >= ih as isize || xx >= iw as isize {
                                        0.0
                                    } else {
                                        x[ci * ih * iw + y as usize * iw + xx as usize]
                                    };
                                let r = (ci * 3 + ky) * 2 + kx;
                                assert_eq!(out[r * oh * ow + oy * ow + ox], want);
                            }
                        }
                    }
                }
            }
        }
    }
}
