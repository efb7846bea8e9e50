//! Fake quantization (docs/METHOD.md §1), the CPU twin of `shaders/fake_quant.wgsl` and the
//! definition of its exact arithmetic. Per channel `c` (see [`ChannelLayout`]) with scale
//! `s`, integer-valued zero point `z` and `bits` M:
//!
//! ```text
//! inv   = 1 / s                            (f32, computed once on the host)
//! q     = clamp(round_ties_even(x·inv) + z, 0, 2^M − 1)
//! code  = q as u32        x̂ = (q − z)·s
//! ```
//!
//! Every step is one correctly rounded f32 operation (no division, no `a·b + c` that a GPU
//! compiler could fuse into an FMA), so GPU codes and values equal these bit for bit.
//! This differs from the textbook `round(x/s + z)` only at exact ties with an odd `z` (the
//! tie is broken on x·(1/s), before adding z); ptq4 uses this rule everywhere
//! (`QParams::quantize`). `x·(1/s)` replaces `x/s` because WGSL division is only accurate
//! to 2.5 ULP. `bits = 0` gives
//! `2^M − 1 = 0`: the channel collapses to the constant `−z·s`. Inputs must be finite.

use crate::engine::layout::ChannelLayout;
use crate::error::{Error, Result};

/// Largest supported bit-width (codes are stored as u32; f32 holds 2^16 − 1 exactly).
pub const MAX_BITS: u32 = 16;

/// Quantizer of one channel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChannelQuant {
    pub scale: f32,
    /// Zero point, an integer stored as f32.
    pub zero: f32,
    pub bits: u32,
}

impl ChannelQuant {
    /// Largest code, `2^bits − 1`, as f32.
    #[inline]
    pub fn qmax(&self) -> f32 {
        ((1u32 << self.bits) - 1) as f32
    }

    /// `1/s` in f32: the only reciprocal taken, on the host, for CPU and GPU alike.
    #[inline]
    pub fn inv_scale(&self) -> f32 {
        1.0 / self.scale
    }

    /// Code and dequantized value of `x`.
    #[inline]
    pub fn quantize(&self, x: f32) -> (u32, f32) {
        let t = (x * self.inv_scale()).round_ties_even();
        let q = (t + self.zero).clamp(0.0, self.qmax());
        (q as u32, (q - self.zero) * self.scale)
    }
}

/// Checks one quantizer per channel with a positive finite scale, an integer zero point
/// and at most [`MAX_BITS`] bits.
pub fn validate(layout: &ChannelLayout, q: &[ChannelQuant]) -> Result<()> {
    if q.len() != layout.channels {
        return Err(Error::Engine(format!(
            "fake_quant: {} quantizers for {} channels",
            q.len(),
            layout.channels
        )));
    }
    for (c, p) in q.iter().enumerate() {
        if !(p.scale.is_finite() && p.scale > 0.0) || p.zero.fract() != 0.0 || p.bits > MAX_BITS {
            return Err(Error::Engine(format!(
                "fake_quant: channel {c}: invalid quantizer {p:?} (scale > 0, integer zero, \
                 bits <= {MAX_BITS})"
            )));
        }
    }
    Ok(())
}

/// Codes and dequantized values of `x` laid out as `layout`.
pub fn fake_quant(
    x: &[f32],
    layout: &ChannelLayout,
    q: &[ChannelQuant],
) -> Result<(Vec<u32>, Vec<f32>)> {
    layout.check(x.len(), "fake_quant input")?;
    validate(layout, q)?;
    Ok(x.iter()
        .enumerate()
        .map(|(i, &v)| q[layout.channel_of(i)].quantize(v))
        .unzip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_round_to_even_and_clamp() {
        let q = ChannelQuant {
            scale: 1.0,
            zero: 0.0,
            bits: 4,
        };
        assert_eq!(q.quantize(2.5), (2, 2.0));
        assert_eq!(q.quantize(3.5), (4, 4.0));
        assert_eq!(q.quantize(-3.0), (0, 0.0));
        assert_eq!(q.quantize(1e9), (15, 15.0));
    }

    #[test]
    fn zero_bits_collapse_to_a_constant() {
        let q = ChannelQuant {
            scale: 0.5,
            zero: 3.0,
            bits: 0,
        };
        assert_eq!(q.quantize(7.0), (0, -1.5));
        assert_eq!(q.quantize(-7.0), (0, -1.5));
    }
}
