//! The one requantization rule shared by every integer path (CPU integer kernels, the exact
//! simulation, and — replicated op for op in `shaders/conv_int.wgsl` — the GPU epilogue).
//!
//! For output channel c of a conv/linear layer with input scale s_x:
//! ```text
//! m[c]      = s_w[c] · s_x                               (f32, computed once on the host)
//! acc_real  = m[c] · f32(acc) + bias[c]                   (single:  one ×, then one +)
//! acc_real  = (m1[c] · f32(acc1) + m2[c] · f32(acc2)) + bias[c]   (dual tensors)
//! y         = act(acc_real)                               (ReLU: max(·,0); ReLU6: clamp(·,0,6))
//! q         = QParams::quantize(y)                        (the output point's quantizer)
//! ```
//! `f32(acc)` is the correctly rounded conversion of the exact integer accumulator (exact
//! while |acc| < 2^24). Every operation is a single correctly rounded IEEE f32 op, evaluated
//! in exactly this order and never contracted into an FMA (Rust does not contract; the WGSL
//! twin hides the product from the compiler's fusion with a bit-level identity). The logits
//! layer returns `y` without quantization. Elementwise ops between quantized tensors
//! dequantize, compute in f32 and requantize with the same [`QParams::quantize`]:
//! residual add `y = a.dequantize(qa) + b.dequantize(qb)` (left to right), the product of
//! two maps `y = a.dequantize(qa) · b.dequantize(qb)` ([`mul_codes`]), global average
//! pooling `y = (s · f32(Σ(q − z))) · f32(1/(H·W))` (the integer sum is exact and order-free),
//! and average pooling the same per window with the count of its in-bounds taps. Ops that
//! only move or select codes keep them when the input and output quantizers are equal and
//! otherwise requantize each code ([`requant_code`]): concatenation per input, max pooling
//! after the max of the codes (dequantization is monotone, so this equals
//! dequantize–max–requantize; a window entirely in padding takes code 0). A standalone
//! activation (ReLU after a residual add) is [`act_code`]: dequantize, activate, requantize.
//! Any other element-wise function f of codes (a standalone BatchNorm per channel, the
//! `Unary` functions) is a table built on the host by [`lut`]: entry q is
//! `out.quantize(f(in.dequantize(q)))`, so f (sigmoid's `exp` included) is evaluated once,
//! in f32 on the CPU, and every executor only indexes the table.
//! A conv's per-channel upper bound b_c (an equalized ReLU6) caps its output codes at
//! [`cap_code`] = quantize(b_c) after this epilogue (a table on codes).
//! LRN (window of n channels) reads the exact integer S = Σ_window (q − z)² and
//! `y = (s · f32(q − z)) · T[S]`, quantized ([`lrn_code`]), where the table
//! T[S] = f32((bias + α/n · s²·S)^(−β)) is built on the host ([`lrn_table`]) for every
//! S in 0..=n·max|q − z|², so no device evaluates a power or a division.

use rayon::prelude::*;

use crate::graph::Activation;
use crate::quant::QParams;

/// How [`QParams::quantize`] forms x/s: `true` for a true f32 division, `false` for a
/// product with the f32 reciprocal 1/s. The CPU paths call `QParams::quantize` itself; the
/// GPU epilogue follows this flag, and a unit test checks that the flag describes
/// `QParams::quantize`, so a change there fails loudly until this flag follows it.
pub const QUANTIZE_DIVIDES: bool = false;

/// The per-channel multipliers and bias of one layer's epilogue.
#[derive(Clone, Debug, PartialEq)]
pub struct Epilogue {
    /// s_w[c] · s_x per output channel.
    pub mult: Vec<f32>,
    /// s_w2[c] · s_x of the second tensor of a dual layer.
    pub mult2: Option<Vec<f32>>,
    pub bias: Vec<f32>,
    pub act: Activation,
    /// The output quantizer; `None` for the logits (f32 output).
    pub out: Option<QParams>,
}

impl Epilogue {
    /// Builds the multipliers from per-channel weight scales and the input scale.
    pub fn new(
        w_scales: &[f32],
        w2_scales: Option<&[f32]>,
        s_x: f32,
        bias: &[f32],
        act: Activation,
        out: Option<QParams>,
    ) -> Self {
        Epilogue {
            mult: w_scales.iter().map(|&s| s * s_x).collect(),
            mult2: w2_scales.map(|s2| s2.iter().map(|&s| s * s_x).collect()),
            bias: bias.to_vec(),
            act,
            out,
        }
    }

    /// `act(acc_real)` of channel `c` from the accumulator value(s) as f32.
    #[inline]
    pub fn real(&self, c: usize, acc: f32, acc2: f32) -> f32 {
        let y = match &self.mult2 {
            None => self.mult[c] * acc + self.bias[c],
            Some(m2) => (self.mult[c] * acc + m2[c] * acc2) + self.bias[c],
        };
        self.act.apply(y)
    }

    /// The output code of channel `c` (panics never: without an output quantizer the code
    /// is that of a 0-bit quantizer, 0; callers use [`Epilogue::real`] for the logits).
    #[inline]
    pub fn code(&self, c: usize, acc: f32, acc2: f32) -> u8 {
        let y = self.real(c, acc, acc2);
        self.out.map_or(0, |q| q.quantize(y))
    }
}

impl Epilogue {
    /// Codes of an `[N, C, plane]` tensor of accumulators (C = number of channels here),
    /// one plane of one channel at a time (rayon over planes).
    pub fn codes(&self, acc: &[f32], acc2: Option<&[f32]>, plane: usize) -> Vec<u8> {
        let c = self.mult.len();
        let plane = plane.max(1);
        let mut out = vec![0u8; acc.len()];
        out.par_chunks_mut(plane)
            .zip(acc.par_chunks(plane))
            .enumerate()
            .for_each(|(i, (o, a))| {
                let a2 = acc2.map(|v| &v[i * plane..(i + 1) * plane]);
                self.plane_codes(i % c, a, a2, o);
            });
        out
    }

    /// One plane of channel `ch`. On x86-64 with AVX2 the same scalar code is compiled with
    /// AVX2/SSE4.1 enabled (vector division and `roundps` are exact IEEE operations, and no
    /// FMA contraction happens in Rust), so the codes are identical to the portable build.
    fn plane_codes(&self, ch: usize, a: &[f32], a2: Option<&[f32]>, o: &mut [u8]) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 (and so SSE4.1) is available, checked above.
                unsafe { self.plane_codes_avx2(ch, a, a2, o) };
                return;
            }
        }
        self.plane_codes_portable(ch, a, a2, o);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn plane_codes_avx2(&self, ch: usize, a: &[f32], a2: Option<&[f32]>, o: &mut [u8]) {
        self.plane_codes_portable(ch, a, a2, o);
    }

    #[inline(always)]
    fn plane_codes_portable(&self, ch: usize, a: &[f32], a2: Option<&[f32]>, o: &mut [u8]) {
        // The activation is matched outside the loops so each loop is straight-line.
        match self.act {
            Activation::None => self.plane_loop(ch, a, a2, o, |y| y),
            Activation::Relu => self.plane_loop(ch, a, a2, o, |y| Activation::Relu.apply(y)),
            Activation::Relu6 => self.plane_loop(ch, a, a2, o, |y| Activation::Relu6.apply(y)),
        }
    }

    #[inline(always)]
    fn plane_loop(
        &self,
        ch: usize,
        a: &[f32],
        a2: Option<&[f32]>,
        o: &mut [u8],
        act: impl Fn(f32) -> f32,
    ) {
        let Some(q) = self.out else {
            o.fill(0);
            return;
        };
        let (m, b) = (self.mult[ch], self.bias[ch]);
        match (a2, &self.mult2) {
            (Some(a2), Some(m2)) => {
                let m2 = m2[ch];
                for ((d, &v), &v2) in o.iter_mut().zip(a).zip(a2) {
                    *d = q.quantize(act((m * v + m2 * v2) + b));
                }
            }
            _ => {
                for (d, &v) in o.iter_mut().zip(a) {
                    *d = q.quantize(act(m * v + b));
                }
            }
        }
    }

    /// `act(acc_real)` of an `[N, C, plane]` tensor of accumulators (the logits).
    pub fn reals(&self, acc: &[f32], acc2: Option<&[f32]>, plane: usize) -> Vec<f32> {
        let c = self.mult.len();
        acc.chunks(plane.max(1))
            .enumerate()
            .flat_map(|(i, a)| {
                let a2 = acc2.map(|v| &v[i * plane..(i + 1) * plane]);
                a.iter()
                    .enumerate()
                    .map(move |(j, &v)| self.real(i % c, v, a2.map_or(0.0, |s| s[j])))
            })
            .collect()
    }
}

/// Residual add of codes: dequantize each, add in f32 left to right, requantize.
#[inline]
pub fn add_codes(ins: impl IntoIterator<Item = (QParams, u8)>, out: &QParams) -> u8 {
    let mut it = ins.into_iter();
    let first = it.next().map_or(0.0, |(p, q)| p.dequantize(q));
    out.quantize(it.fold(first, |y, (p, q)| y + p.dequantize(q)))
}

/// Product of two codes (a feature map times a map or a channel gate): dequantize each,
/// one f32 product, requantize. Products only (no sum), so a device cannot contract it.
#[inline]
pub fn mul_codes(pa: &QParams, qa: u8, pb: &QParams, qb: u8, out: &QParams) -> u8 {
    out.quantize(pa.dequantize(qa) * pb.dequantize(qb))
}

/// One code of quantizer `from` as a code of `to`: the code itself when the quantizers are
/// equal, else `to.quantize(from.dequantize(q))`.
#[inline]
pub fn requant_code(from: &QParams, q: u8, to: &QParams) -> u8 {
    if from == to {
        q
    } else {
        to.quantize(from.dequantize(q))
    }
}

/// A standalone activation on one code: `to.quantize(act(from.dequantize(q)))`; the code
/// itself when there is no activation and the quantizers are equal ([`requant_code`]).
#[inline]
pub fn act_code(from: &QParams, q: u8, act: Activation, to: &QParams) -> u8 {
    match act {
        Activation::None => requant_code(from, q, to),
        _ => to.quantize(act.apply(from.dequantize(q))),
    }
}

/// The code of a per-channel upper bound b (an equalized ReLU6, `Graph::act_max`) under the
/// output quantizer: codes above it are capped to it, which equals quantizing min(y, b)
/// because quantization is monotone.
#[inline]
pub fn cap_code(out: &QParams, bound: f32) -> u8 {
    out.quantize(bound)
}

/// The 256-entry code table of an element-wise function `f`: entry q is
/// `to.quantize(f(from.dequantize(q)))` (codes above `from`'s range never occur; their
/// entries are computed all the same).
pub fn lut(from: &QParams, to: &QParams, f: impl Fn(f32) -> f32) -> Vec<u8> {
    (0..=255u8)
        .map(|q| to.quantize(f(from.dequantize(q))))
        .collect()
}

/// Global (or windowed: average pooling, `count` = in-bounds taps, at least 1) average
/// pooling of one plane given its exact integer sum Σ(q − z).
#[inline]
pub fn gap_code(p: &QParams, centered_sum: i64, count: usize, out: &QParams) -> u8 {
    out.quantize(gap_real(p, centered_sum, count))
}

/// The f32 mean of a plane from its exact centred code sum: (s · f32(Σ)) · f32(1/count)
/// (products only, so a device without correctly rounded division agrees).
#[inline]
pub fn gap_real(p: &QParams, centered_sum: i64, count: usize) -> f32 {
    (p.scale * centered_sum as f32) * inv_count(count)
}

/// f32(1/count), the factor of every mean on codes (computed on the host: the GPU kernels
/// read it from a table, so no device division is involved); count 0 (a window entirely
/// in padding, whose sum is 0) gives 1.
#[inline]
pub fn inv_count(count: usize) -> f32 {
    1.0 / count.max(1) as f32
}

/// Largest LRN table ([`lrn_table`]): every S stays an exact f32 integer, so the exact
/// simulation may sum the squares in f32.
pub const MAX_LRN_TABLE: usize = 1 << 24;

/// The LRN factor table of input quantizer `p` (module docs): entry S is
/// (bias + alpha/size · s²·S)^(−beta), evaluated in f64 and rounded to f32, for S in
/// 0..=size·max|q − z|²; `None` when that exceeds [`MAX_LRN_TABLE`] entries.
pub fn lrn_table(p: &QParams, size: usize, alpha: f32, beta: f32, bias: f32) -> Option<Vec<f32>> {
    let m = p.zero_point.max(p.qmax() - p.zero_point).max(0) as usize;
    let len = size.checked_mul(m * m)?.checked_add(1)?;
    if len > MAX_LRN_TABLE {
        return None;
    }
    let (k, s2) = (
        alpha as f64 / size.max(1) as f64,
        p.scale as f64 * p.scale as f64,
    );
    Some(
        (0..len)
            .map(|sq| (bias as f64 + k * (s2 * sq as f64)).powf(-(beta as f64)) as f32)
            .collect(),
    )
}

/// LRN of one code given its centred value `v = q − z` and the table entry `factor` =
/// T[S] of its window: `out.quantize((s · f32(v)) · factor)`.
#[inline]
pub fn lrn_code(p: &QParams, v: i32, factor: f32, out: &QParams) -> u8 {
    out.quantize((p.scale * v as f32) * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The quantizer rule as the GPU evaluates it (see [`QUANTIZE_DIVIDES`]).
    fn quantize_as_gpu(q: &QParams, y: f32) -> u8 {
        let r = if QUANTIZE_DIVIDES {
            y / q.scale
        } else {
            y * (1.0 / q.scale)
        };
        let t = r.round_ties_even() + q.zero_point as f32;
        t.max(0.0).min(q.qmax() as f32) as u8
    }

    /// A table of an activation is `act_code` code for code; of the identity between equal
    /// quantizers, the codes themselves.
    #[test]
    fn lut_is_the_shared_rule_code_by_code() {
        let from = QParams::from_range(-1.3, 2.1, 4).unwrap();
        let to = QParams::from_range(0.0, 1.7, 4).unwrap();
        for act in [Activation::None, Activation::Relu, Activation::Relu6] {
            let t = lut(&from, &to, |x| act.apply(x));
            for q in 0..=from.qmax() as u8 {
                assert_eq!(t[q as usize], act_code(&from, q, act, &to), "{act:?} {q}");
            }
        }
        let id = lut(&from, &from, |x| x);
        assert!((0..=from.qmax() as u8).all(|q| id[q as usize] == q));
    }

    /// The flag the GPU follows describes `QParams::quantize` (many scales, ties included).
    #[test]
    fn gpu_quantize_rule_matches_qparams() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 40) as f32 / (1u64 << 24) as f32
        };
        for _ in 0..2000 {
            let (lo, hi) = (-next() * 7.0, next() * 9.0 + 1e-3);
            let q = QParams::from_range(lo, hi, 1 + (next() * 8.0) as u8 % 8).unwrap_or(QParams {
                scale: 0.1,
                zero_point: 3,
                bits: 4,
            });
            for _ in 0..50 {
                let y = (next() * 2.0 - 1.0) * 12.0;
                assert_eq!(q.quantize(y), quantize_as_gpu(&q, y), "{q:?} {y}");
                // Values on code boundaries (ties) as well.
                let k = (next() * 20.0) as i32 - 5;
                let tie = (k as f32 + 0.5 - q.zero_point as f32) * q.scale;
                assert_eq!(q.quantize(tie), quantize_as_gpu(&q, tie), "{q:?} {tie}");
            }
        }
    }
}
