//! The uniform asymmetric quantizer (docs/METHOD.md §1; Banner et al. 2019 §2 and the reference
//! code's GEMMLOWP quantizer).
//!
//! ```text
//! window  [lo, hi] widened to [min(lo,0), max(hi,0)]   (so real 0 is exactly representable)
//! levels  q ∈ [0, 2^M − 1]
//! scale   s = max((hi − lo) / (2^M − 1), 1e-8)          (step = range/(2^M−1), not range/2^M)
//! zero    z = round(−lo / s)                            (z ∈ [0, 2^M − 1])
//! code    q = clamp(round(x · (1/s)) + z, 0, 2^M − 1)   (f32: reciprocal once, then ×)
//! value   x̂ = (q − z) · s                               ((q − z) in i32, then × s in f32)
//! ```
//! `round` is round-half-to-even (`f32::round_ties_even`) everywhere. This is the one
//! quantizer rule of ptq4, shared bit for bit by the CPU and GPU fake-quant kernels
//! (`engine::cpu::fake_quant`, `shaders/fake_quant.wgsl`, whose table is `[s, 1/s, z, 2^M − 1]`
//! built from these parameters) and by the integer epilogues. Every step is one correctly
//! rounded f32 operation (no division, no `a·b + c` a compiler could fuse into an FMA):
//! `x·inv` with the f32 reciprocal `inv = 1/s` taken once on the host, rounded, then `+ z`
//! (an integer), clamped; then `(q − z)` (exact in i32 and in f32) `× s`. This differs from
//! the textbook `round(x/s + z)` only at exact ties with an odd `z` (the tie is broken on
//! x·(1/s), before adding z) and by the rounding of `x/s` itself; WGSL division is only
//! accurate to 2.5 ULP, so CPU and GPU share the multiply and agree code for code. Inputs
//! must be finite (NaN gives code 0 on the CPU, unspecified on a GPU). With 0 bits `2^M − 1 = 0`: the channel collapses to the constant `−z·s`.
//!
//! Choices the papers leave open, made here (docs/METHOD.md §1):
//! - The window is widened to contain 0 before the scale is computed, so a window lying
//!   entirely on one side of 0 (a signed ACIQ window of a channel with a large mean) still
//!   represents 0 exactly, at the cost of range. z is therefore always in [0, 2^M − 1].
//! - 0 bits: the only code is 0 and the channel collapses to one constant `c`. From a window
//!   alone, `c` = the midpoint (lo+hi)/2 of the window as given (before widening); where the
//!   values or statistics are at hand, `c` = the mean of the values quantized (the MSE-optimal
//!   constant): [`minmax_weights_per_channel`] uses the channel's mean, `aciq::aciq_params`
//!   the mean after the fused activation. Encoding: `s = max(|c|, 1e-8)`,
//!   `z = −sign(c)` ∈ {−1, 0, 1}, so the generic formulas give x̂ = (0 − z)·s = c (constants
//!   below the scale floor become 0). This z lies outside [0, qmax] on purpose.
//! - Bits above 8 are rejected: codes are `u8`.
//! - Signed view (for integer kernels with `i8`/signed-nibble codes): q_s = q − 2^(M−1),
//!   z_s = z − 2^(M−1), and x̂ = (q_s − z_s)·s unchanged. For M = 0 the offset is 0.
//!
//! Granularity: weights per output channel (axis 0, each channel a contiguous block of
//! `len / out_channels` values); activations per tensor or per channel (axis 1 of NCHW,
//! statistics over N·H·W).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Smallest scale (docs/METHOD.md §1).
pub const SCALE_FLOOR: f32 = 1e-8;
/// Widest code supported (codes are `u8`).
pub const MAX_BITS: u8 = 8;

/// Parameters of one quantizer (one tensor or one channel).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct QParams {
    pub scale: f32,
    pub zero_point: i32,
    pub bits: u8,
}

impl QParams {
    /// The quantizer for the clip window `[lo, hi]` at `bits` (0..=8); see the module docs
    /// for the widening to include 0 and for the 0-bit constant.
    pub fn from_range(lo: f32, hi: f32, bits: u8) -> Result<Self> {
        if !lo.is_finite() || !hi.is_finite() || lo > hi {
            return Err(Error::Quant(format!(
                "clip window [{lo}, {hi}] must be finite with lo <= hi"
            )));
        }
        check_bits(bits)?;
        if bits == 0 {
            return Ok(Self::constant(lo * 0.5 + hi * 0.5));
        }
        let (lo, hi) = (lo.min(0.0), hi.max(0.0));
        let qmax = ((1u32 << bits) - 1) as f32;
        let scale = ((hi - lo) / qmax).max(SCALE_FLOOR);
        let zero = (-lo / scale).round_ties_even().clamp(0.0, qmax) as i32;
        Ok(QParams {
            scale,
            zero_point: zero,
            bits,
        })
    }

    /// The 0-bit quantizer whose only value is `c` (module docs).
    pub fn constant(c: f32) -> Self {
        let scale = c.abs().max(SCALE_FLOOR);
        let zero_point = if c.abs() < SCALE_FLOOR {
            0
        } else if c > 0.0 {
            -1
        } else {
            1
        };
        QParams {
            scale,
            zero_point,
            bits: 0,
        }
    }

    /// Largest code, 2^M − 1.
    pub fn qmax(&self) -> i32 {
        (1i32 << self.bits) - 1
    }

    /// `1/s` in f32, the only reciprocal taken (CPU and GPU alike).
    #[inline]
    pub fn inv_scale(&self) -> f32 {
        1.0 / self.scale
    }

    /// Code of `x`: clamp(round_ties_even(x · (1/s)) + z, 0, 2^M − 1) (module docs).
    #[inline]
    pub fn quantize(&self, x: f32) -> u8 {
        self.quantize_with(x, self.inv_scale())
    }

    /// [`quantize`](Self::quantize) with `inv = self.inv_scale()` hoisted out of a loop.
    #[inline]
    pub fn quantize_with(&self, x: f32, inv: f32) -> u8 {
        let t = (x * inv).round_ties_even() + self.zero_point as f32;
        // NaN maps to 0 through `max`.
        t.max(0.0).min(self.qmax() as f32) as u8
    }

    /// Value of code `q`: (q − z) · s.
    #[inline]
    pub fn dequantize(&self, q: u8) -> f32 {
        (q as i32 - self.zero_point) as f32 * self.scale
    }

    /// dequantize(quantize(x)).
    #[inline]
    pub fn fake_quant(&self, x: f32) -> f32 {
        self.dequantize(self.quantize(x))
    }

    /// [`fake_quant`](Self::fake_quant) of every value of `xs`, in place and bit for bit the
    /// same, in a form that vectorises on baseline x86-64: `round_ties_even` is a libm call
    /// there, so the rounding adds and subtracts 1.5·2²³ (exact ties-to-even for |y| ≤ 2²²;
    /// larger |y| are first clamped to ±2²², which the code clamp maps to the same end code).
    pub fn fake_quant_slice(&self, xs: &mut [f32]) {
        const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23
        const LIMIT: f32 = 4_194_304.0; // 2^22
        let inv = self.inv_scale();
        let z = self.zero_point as f32;
        let qmax = self.qmax() as f32;
        let s = self.scale;
        for v in xs {
            let y = (*v * inv).clamp(-LIMIT, LIMIT);
            // NaN stays NaN through the clamp and the rounding, and `max` maps it to code 0.
            let q = (((y + MAGIC) - MAGIC) + z).max(0.0).min(qmax);
            *v = (q - z) * s;
        }
    }

    /// The real values of codes 0 and 2^M − 1 (the representable window).
    pub fn window(&self) -> (f32, f32) {
        (self.dequantize(0), self.dequantize(self.qmax() as u8))
    }

    /// Zero point in the signed view: z − 2^(M−1).
    pub fn signed_zero_point(&self) -> i32 {
        self.zero_point - signed_offset(self.bits)
    }
}

fn check_bits(bits: u8) -> Result<()> {
    if bits > MAX_BITS {
        return Err(Error::Quant(format!(
            "{bits} bits requested; at most {MAX_BITS} are supported"
        )));
    }
    Ok(())
}

/// 2^(M−1), the shift from unsigned to signed codes (0 for M = 0).
pub fn signed_offset(bits: u8) -> i32 {
    if bits == 0 {
        0
    } else {
        1i32 << (bits - 1)
    }
}

/// Signed code q − 2^(M−1) (e.g. 4 bits: [0, 15] → [−8, 7]).
#[inline]
pub fn to_signed(q: u8, bits: u8) -> i8 {
    (q as i32 - signed_offset(bits)) as i8
}

/// Signed view of a slice of codes quantized at `bits`.
pub fn signed_codes(codes: &[u8], bits: u8) -> Vec<i8> {
    codes.iter().map(|&q| to_signed(q, bits)).collect()
}

/// Codes of `x` under one quantizer.
pub fn quantize(p: &QParams, x: &[f32]) -> Vec<u8> {
    x.iter().map(|&v| p.quantize(v)).collect()
}

/// Values of `codes` under one quantizer.
pub fn dequantize(p: &QParams, codes: &[u8]) -> Vec<f32> {
    codes.iter().map(|&q| p.dequantize(q)).collect()
}

/// Fake-quantized copy of `x` under one quantizer.
pub fn fake_quant(p: &QParams, x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| p.fake_quant(v)).collect()
}

/// Smallest and largest value of a non-empty slice (NaN is an error).
pub fn min_max(x: &[f32]) -> Result<(f32, f32)> {
    if x.is_empty() {
        return Err(Error::Quant("min-max of an empty tensor".into()));
    }
    let mut lo = f32::INFINITY;
    let mut hi = f32::NEG_INFINITY;
    for &v in x {
        if v.is_nan() {
            return Err(Error::Quant("NaN in tensor to quantize".into()));
        }
        lo = lo.min(v);
        hi = hi.max(v);
    }
    Ok((lo, hi))
}

/// Splits a weight tensor into its `out_channels` contiguous rows (axis 0).
pub fn weight_rows(w: &[f32], out_channels: usize) -> Result<std::slice::Chunks<'_, f32>> {
    if out_channels == 0 || w.is_empty() || !w.len().is_multiple_of(out_channels) {
        return Err(Error::Quant(format!(
            "{} weights do not split into {out_channels} output channels",
            w.len()
        )));
    }
    Ok(w.chunks(w.len() / out_channels))
}

fn check_len<T>(what: &str, v: &[T], want: usize) -> Result<()> {
    if v.len() != want {
        return Err(Error::Quant(format!(
            "{what}: expected {want} entries, got {}",
            v.len()
        )));
    }
    Ok(())
}

/// Per-output-channel min-max quantizers for a weight tensor (axis 0), bits per channel
/// (a 0-bit channel becomes the constant of its mean).
pub fn minmax_weights_per_channel(
    w: &[f32],
    out_channels: usize,
    bits: &[u8],
) -> Result<Vec<QParams>> {
    check_len("bits per output channel", bits, out_channels)?;
    weight_rows(w, out_channels)?
        .zip(bits)
        .map(|(row, &b)| {
            let (lo, hi) = min_max(row)?;
            if b == 0 {
                let mean = row.iter().map(|&v| v as f64).sum::<f64>() / row.len() as f64;
                return Ok(QParams::constant(mean as f32));
            }
            QParams::from_range(lo, hi, b)
        })
        .collect()
}

/// Applies one quantizer per output channel (axis 0) and returns the fake-quantized weights.
pub fn fake_quant_weights(w: &[f32], params: &[QParams]) -> Result<Vec<f32>> {
    let rows = weight_rows(w, params.len())?;
    Ok(rows
        .zip(params)
        .flat_map(|(row, p)| row.iter().map(move |&v| p.fake_quant(v)))
        .collect())
}

/// Codes of a weight tensor, one quantizer per output channel (axis 0).
pub fn quantize_weights(w: &[f32], params: &[QParams]) -> Result<Vec<u8>> {
    let rows = weight_rows(w, params.len())?;
    Ok(rows
        .zip(params)
        .flat_map(|(row, p)| row.iter().map(move |&v| p.quantize(v)))
        .collect())
}

/// Values of per-output-channel codes.
pub fn dequantize_weights(codes: &[u8], params: &[QParams]) -> Result<Vec<f32>> {
    if params.is_empty() || !codes.len().is_multiple_of(params.len()) {
        return Err(Error::Quant(format!(
            "{} codes do not split into {} output channels",
            codes.len(),
            params.len()
        )));
    }
    let per = codes.len() / params.len();
    Ok(codes
        .chunks(per)
        .zip(params)
        .flat_map(|(row, p)| row.iter().map(move |&q| p.dequantize(q)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unsigned code q_s + 2^(M−1).
    #[inline]
    fn from_signed(q: i8, bits: u8) -> u8 {
        (q as i32 + signed_offset(bits)) as u8
    }

    #[test]
    fn zero_bit_constant_encodes_its_value() {
        for c in [0.37f32, -2.5, 0.0, 1e-9] {
            let p = QParams::constant(c);
            let want = if c.abs() < SCALE_FLOOR { 0.0 } else { c };
            assert_eq!(p.fake_quant(123.0), want);
            assert_eq!(p.fake_quant(-123.0), want);
        }
        let p = QParams::from_range(1.0, 3.0, 0).unwrap();
        assert_eq!(p.fake_quant(0.0), 2.0);
        let p = minmax_weights_per_channel(&[1.0, 1.0, 4.0, 0.0, 1.0], 1, &[0]).unwrap();
        assert_eq!(p[0].fake_quant(9.0), 1.4);
    }

    #[test]
    fn slice_fake_quant_equals_the_scalar_rule() {
        let mut xs: Vec<f32> = vec![
            f32::NAN,
            f32::INFINITY,
            -f32::INFINITY,
            0.0,
            -0.0,
            3e9,
            -3e9,
        ];
        // Exact ties of x·(1/s) with even and odd integer parts, and their neighbours.
        for k in -40..40 {
            let t = k as f32 + 0.5;
            xs.extend([
                t * 0.25,
                f32::from_bits((t * 0.25).to_bits() + 1),
                t * 0.1,
                t,
            ]);
        }
        let mut seed = 12u32;
        xs.extend((0..4000).map(|_| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1 << 24) as f32 * 40.0 - 20.0
        }));
        let quantizers = [
            QParams::from_range(-1.0, 1.0, 4).unwrap(),
            QParams::from_range(0.0, 6.0, 4).unwrap(),
            QParams::from_range(-3.3, 0.7, 3).unwrap(),
            QParams::from_range(-9.0, 9.0, 8).unwrap(),
            QParams {
                scale: 0.25,
                zero_point: 7,
                bits: 4,
            },
            QParams {
                scale: 0.1,
                zero_point: 3,
                bits: 2,
            },
            QParams::constant(0.37),
            QParams::constant(-2.5),
        ];
        for p in quantizers {
            let mut got = xs.clone();
            p.fake_quant_slice(&mut got);
            for (x, g) in xs.iter().zip(&got) {
                assert_eq!(g.to_bits(), p.fake_quant(*x).to_bits(), "{p:?} at {x}");
            }
        }
    }

    #[test]
    fn window_is_widened_to_include_zero() {
        let p = QParams::from_range(2.0, 5.0, 4).unwrap();
        assert_eq!(p.zero_point, 0);
        assert_eq!(p.fake_quant(0.0), 0.0);
        let p = QParams::from_range(-5.0, -2.0, 4).unwrap();
        assert_eq!(p.zero_point, 15);
        assert_eq!(p.fake_quant(0.0), 0.0);
    }

    #[test]
    fn signed_view_round_trips() {
        for q in 0u8..16 {
            let s = to_signed(q, 4);
            assert!((-8..=7).contains(&s));
            assert_eq!(from_signed(s, 4), q);
        }
        let p = QParams::from_range(-1.0, 2.0, 4).unwrap();
        for q in 0u8..16 {
            let s = to_signed(q, 4) as i32;
            assert_eq!(
                (s - p.signed_zero_point()) as f32 * p.scale,
                p.dequantize(q)
            );
        }
    }

    #[test]
    fn rejects_bad_input() {
        assert!(QParams::from_range(1.0, 0.0, 4).is_err());
        assert!(QParams::from_range(0.0, f32::NAN, 4).is_err());
        assert!(QParams::from_range(0.0, 1.0, 9).is_err());
        assert!(minmax_weights_per_channel(&[1.0; 10], 3, &[4; 3]).is_err());
    }
}
