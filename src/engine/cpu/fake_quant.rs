//! Fake quantization (docs/METHOD.md §1), the CPU twin of `shaders/fake_quant.wgsl`: per
//! channel `c` (see [`ChannelLayout`]) the channel's [`QParams`] gives the code
//! ([`QParams::quantize`]) and the value ([`QParams::dequantize`]); the exact arithmetic, and
//! why the GPU reproduces it bit for bit, is documented once in `quant::scheme`. Codes come
//! back as `u32`, one per element, as the kernel writes them. Inputs must be finite.

use crate::engine::layout::ChannelLayout;
use crate::error::{Error, Result};
use crate::quant::scheme::MAX_BITS;
use crate::quant::QParams;

/// Checks one quantizer per channel with a positive finite scale and at most
/// [`MAX_BITS`] bits.
pub fn validate(layout: &ChannelLayout, q: &[QParams]) -> Result<()> {
    if q.len() != layout.channels {
        return Err(Error::Engine(format!(
            "fake_quant: {} quantizers for {} channels",
            q.len(),
            layout.channels
        )));
    }
    for (c, p) in q.iter().enumerate() {
        if !(p.scale.is_finite() && p.scale > 0.0) || p.bits > MAX_BITS {
            return Err(Error::Engine(format!(
                "fake_quant: channel {c}: invalid quantizer {p:?} (scale > 0, bits <= {MAX_BITS})"
            )));
        }
    }
    Ok(())
}

/// Codes and dequantized values of `x` laid out as `layout`.
pub fn fake_quant(
    x: &[f32],
    layout: &ChannelLayout,
    q: &[QParams],
) -> Result<(Vec<u32>, Vec<f32>)> {
    layout.check(x.len(), "fake_quant input")?;
    validate(layout, q)?;
    Ok(x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let p = &q[layout.channel_of(i)];
            let code = p.quantize(v);
            (code as u32, p.dequantize(code))
        })
        .unzip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(scale: f32, zero_point: i32, bits: u8) -> QParams {
        QParams {
            scale,
            zero_point,
            bits,
        }
    }

    fn both(p: &QParams, x: f32) -> (u8, f32) {
        (p.quantize(x), p.fake_quant(x))
    }

    #[test]
    fn ties_round_to_even_and_clamp() {
        let q = q(1.0, 0, 4);
        assert_eq!(both(&q, 2.5), (2, 2.0));
        assert_eq!(both(&q, 3.5), (4, 4.0));
        assert_eq!(both(&q, -3.0), (0, 0.0));
        assert_eq!(both(&q, 1e9), (15, 15.0));
    }

    #[test]
    fn zero_bits_collapse_to_a_constant() {
        let q = q(0.5, 3, 0);
        assert_eq!(both(&q, 7.0), (0, -1.5));
        assert_eq!(both(&q, -7.0), (0, -1.5));
    }
}
