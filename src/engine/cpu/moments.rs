//! Per-channel moments, the CPU twin of `shaders/moments.wgsl`: over all elements of a
//! channel (see [`ChannelLayout`]; for NCHW that is N·H·W values),
//! `min`, `max`, `mean = Σx/n`, `mad = Σ|x − mean|/n` (Laplace b, docs/METHOD.md §2) and
//! `std = √(Σ(x − mean)²/n)` (population σ). Two passes in f64: the mean first, then the
//! deviations from it, so a large common offset does not cancel the spread.

use crate::engine::layout::ChannelLayout;
use crate::error::{Error, Result};

/// Statistics of one channel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Moments {
    pub min: f32,
    pub max: f32,
    pub mean: f64,
    pub mad: f64,
    pub std: f64,
}

/// Moments of every channel of `x`.
pub fn moments(x: &[f32], layout: &ChannelLayout) -> Result<Vec<Moments>> {
    layout.check(x.len(), "moments input")?;
    let count = layout.outer * layout.inner;
    if count == 0 {
        return Err(Error::Engine(format!(
            "moments: channels of layout {layout:?} are empty"
        )));
    }
    let per = layout.channels * layout.inner;
    let values = |c: usize| {
        (0..layout.outer)
            .flat_map(move |o| x[o * per + c * layout.inner..][..layout.inner].iter())
            .copied()
    };
    Ok((0..layout.channels)
        .map(|c| {
            let (mut min, mut max, mut sum) = (f32::INFINITY, f32::NEG_INFINITY, 0.0f64);
            for v in values(c) {
                min = min.min(v);
                max = max.max(v);
                sum += v as f64;
            }
            let mean = sum / count as f64;
            let (mut sad, mut ssd) = (0.0f64, 0.0f64);
            for v in values(c) {
                let d = v as f64 - mean;
                sad += d.abs();
                ssd += d * d;
            }
            Moments {
                min,
                max,
                mean,
                mad: sad / count as f64,
                std: (ssd / count as f64).sqrt(),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_channels_of_an_nchw_tensor() {
        // N=2, C=2, HW=2: channel 0 = {1, 3, 5, 7}, channel 1 = {2, 2, 2, 2}.
        let x = [1.0, 3.0, 2.0, 2.0, 5.0, 7.0, 2.0, 2.0];
        let m = moments(&x, &ChannelLayout::nchw(&[2, 2, 1, 2]).unwrap()).unwrap();
        assert_eq!(
            (m[0].min, m[0].max, m[0].mean, m[0].mad),
            (1.0, 7.0, 4.0, 2.0)
        );
        assert_eq!(m[0].std, 5.0f64.sqrt());
        assert_eq!((m[1].mean, m[1].mad, m[1].std), (2.0, 0.0, 0.0));
    }
}
