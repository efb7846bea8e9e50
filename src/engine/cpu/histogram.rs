//! Per-channel histograms, the CPU twin of `shaders/histogram.wgsl` and the definition of
//! its bin rule. Channel `c` (see [`ChannelLayout`]) is binned over its own range
//! `[lo_c, hi_c]` into `bins` equal bins:
//!
//! ```text
//! k   = bins / (hi − lo)   if hi > lo, else 0   (f32, computed once on the host)
//! bin = clamp(floor((x − lo)·k), 0, bins − 1)   (f32 subtract, f32 multiply, then clamp)
//! ```
//!
//! Values below `lo` land in bin 0 and values at or above `hi` in the last bin; a
//! degenerate range puts everything in bin 0. Both steps are single correctly rounded f32
//! operations, so GPU counts equal these exactly. Inputs must be finite.

use crate::engine::layout::ChannelLayout;
use crate::error::{Error, Result};

/// Most bins a histogram may have: the GPU kernel keeps one workgroup-memory counter per
/// bin (`MAX_BINS` × 4 bytes = 8 KiB, under WebGPU's 16 KiB guarantee).
pub const MAX_BINS: u32 = 2048;

/// `bins / (hi − lo)`, or 0 for a degenerate range.
#[inline]
pub fn bin_scale(lo: f32, hi: f32, bins: u32) -> f32 {
    let k = bins as f32 / (hi - lo);
    if hi > lo && k.is_finite() {
        k
    } else {
        0.0
    }
}

/// Bin of `x` given `lo` and `k = bin_scale(lo, hi, bins)`.
#[inline]
pub fn bin_index(x: f32, lo: f32, k: f32, bins: u32) -> u32 {
    ((x - lo) * k).floor().clamp(0.0, (bins - 1) as f32) as u32
}

/// Checks `bins` and one finite range per channel.
pub fn validate(layout: &ChannelLayout, ranges: &[(f32, f32)], bins: u32) -> Result<()> {
    if bins == 0 || bins > MAX_BINS {
        return Err(Error::Engine(format!(
            "histogram: {bins} bins; expected 1..={MAX_BINS}"
        )));
    }
    if ranges.len() != layout.channels {
        return Err(Error::Engine(format!(
            "histogram: {} ranges for {} channels",
            ranges.len(),
            layout.channels
        )));
    }
    if let Some((c, r)) = ranges
        .iter()
        .enumerate()
        .find(|(_, (lo, hi))| !lo.is_finite() || !hi.is_finite())
    {
        return Err(Error::Engine(format!(
            "histogram: channel {c} has a non-finite range {r:?}"
        )));
    }
    Ok(())
}

/// Counts `[channels][bins]`, channel-major.
pub fn histogram(
    x: &[f32],
    layout: &ChannelLayout,
    ranges: &[(f32, f32)],
    bins: u32,
) -> Result<Vec<u32>> {
    layout.check(x.len(), "histogram input")?;
    validate(layout, ranges, bins)?;
    let scales: Vec<f32> = ranges
        .iter()
        .map(|&(lo, hi)| bin_scale(lo, hi, bins))
        .collect();
    let mut counts = vec![0u32; layout.channels * bins as usize];
    for (i, &v) in x.iter().enumerate() {
        let c = layout.channel_of(i);
        let b = bin_index(v, ranges[c].0, scales[c], bins);
        counts[c * bins as usize + b as usize] += 1;
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_and_outliers() {
        let (lo, hi, bins) = (0.0, 4.0, 4);
        let k = bin_scale(lo, hi, bins);
        let b = |x| bin_index(x, lo, k, bins);
        assert_eq!(
            [b(-1.0), b(0.0), b(0.99), b(1.0), b(3.99), b(4.0), b(1e30)],
            [0, 0, 0, 1, 3, 3, 3]
        );
        assert_eq!(bin_scale(1.0, 1.0, 8), 0.0);
    }
}
