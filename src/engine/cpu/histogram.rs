//! Per-channel histograms, the CPU twin of `shaders/histogram.wgsl`. Channel `c` (see
//! [`ChannelLayout`]) is binned over its own range `[lo_c, hi_c]` into `bins` equal bins by
//! the one bin rule of ptq4, [`Binning`] (documented in `quant::stats`); every step is a
//! single correctly rounded f32 operation, so GPU counts equal these exactly. Inputs must be
//! finite.

use crate::engine::layout::ChannelLayout;
use crate::error::{Error, Result};
use crate::quant::stats::Binning;

/// Most bins a histogram may have: the GPU kernel keeps one workgroup-memory counter per
/// bin (`MAX_BINS` × 4 bytes = 8 KiB, under WebGPU's 16 KiB guarantee).
pub const MAX_BINS: u32 = 2048;

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
    let binning: Vec<Binning> = ranges
        .iter()
        .map(|&(lo, hi)| Binning::new(lo, hi, bins as usize))
        .collect();
    let mut counts = vec![0u32; layout.channels * bins as usize];
    for (i, &v) in x.iter().enumerate() {
        let c = layout.channel_of(i);
        counts[c * bins as usize + binning[c].bin(v)] += 1;
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_and_outliers() {
        let binning = Binning::new(0.0, 4.0, 4);
        let b = |x| binning.bin(x);
        assert_eq!(
            [b(-1.0), b(0.0), b(0.99), b(1.0), b(3.99), b(4.0), b(1e30)],
            [0, 0, 0, 1, 3, 3, 3]
        );
        assert_eq!(Binning::new(1.0, 1.0, 8).inv_width, 0.0);
        assert_eq!(Binning::new(0.0, 1e-40, 8).inv_width, 0.0);
    }
}
