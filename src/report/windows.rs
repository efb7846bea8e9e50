//! The clip windows a planner could have chosen for one activation quantization point —
//! min-max, ACIQ (Laplace and Gauss) and MMSE on the histogram — computed from the point's
//! tensor-level statistics at the point's bit-width, next to the window the plan chose.

use crate::error::Result;
use crate::graph::Activation;
use crate::quant::aciq::{aciq_window, Prior};
use crate::quant::mmse::{activation_range, mmse_histogram, mse_on_histogram};
use crate::quant::plan::ActQuant;
use crate::quant::stats::{Histogram, TensorStats};

/// Bins of the displayed histogram (the 2048 calibration bins summed in groups).
pub const DISPLAY_BINS: usize = 128;

/// One candidate window.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub name: &'static str,
    pub lo: f64,
    pub hi: f64,
    /// Whether the plan's clip method is this one.
    pub chosen: bool,
}

/// What the report draws for one quantization point.
#[derive(Clone, Debug)]
pub struct PointWindows {
    pub value: String,
    pub act: Activation,
    pub bits: u8,
    /// The plan's method, as stored ("aciq laplace", "mmse", "min-max", ...).
    pub clip: String,
    /// The widest window the plan uses over the point's channels.
    pub plan_window: (f64, f64),
    /// The pre-activation histogram (from images), rebinned for display.
    pub hist: Option<Histogram>,
    /// Mean and standard deviation of the whole tensor (data-free: the assumed Gaussian).
    pub mean_std: (f64, f64),
    pub candidates: Vec<Candidate>,
}

/// Sums `h` into at most `bins` bins over the same range.
pub fn rebin(h: &Histogram, bins: usize) -> Histogram {
    let group = h.counts.len().div_ceil(bins.max(1)).max(1);
    Histogram {
        lo: h.lo,
        hi: h.lo
            + (h.hi - h.lo) * (h.counts.len().div_ceil(group) * group) as f64
                / h.counts.len().max(1) as f64,
        counts: h.counts.chunks(group).map(|c| c.iter().sum()).collect(),
    }
}

/// The method the plan's clip label names (`"aciq laplace"` → "ACIQ Laplace").
fn chosen_name(clip: &str) -> &'static str {
    if clip.starts_with("mmse") {
        "MMSE"
    } else if clip.contains("gauss") {
        "ACIQ Gauss"
    } else if clip.contains("laplace") {
        "ACIQ Laplace"
    } else {
        "min-max"
    }
}

/// Candidate windows for `a` from its statistics `s` (tensor level, at the point's widest
/// bit-width; per-channel points choose per channel, the plan window is the widest of them).
pub fn point_windows(a: &ActQuant, s: &TensorStats) -> Result<PointWindows> {
    let bits = a.params.iter().map(|p| p.bits).max().unwrap_or(0).max(1);
    let t = &s.tensor;
    let chosen = chosen_name(&a.clip);
    let mut candidates = Vec::new();
    let (lo, hi) = activation_range(a.act, t.min, t.max);
    candidates.push(("min-max", lo, hi));
    for (name, prior) in [
        ("ACIQ Laplace", Prior::Laplace),
        ("ACIQ Gauss", Prior::Gauss),
    ] {
        let (lo, hi) = aciq_window(t, bits, prior, a.act)?;
        candidates.push((name, lo, hi));
    }
    if let Some(h) = &t.hist {
        let m = mmse_histogram(h, bits, a.act)?;
        candidates.push(("MMSE", m.lo, m.hi));
    }
    let plan_window = a
        .params
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |w, p| {
            let (lo, hi) = p.window();
            (w.0.min(lo.min(hi) as f64), w.1.max(lo.max(hi) as f64))
        });
    Ok(PointWindows {
        value: a.value.clone(),
        act: a.act,
        bits,
        clip: a.clip.clone(),
        plan_window,
        hist: t.hist.as_ref().map(|h| rebin(h, DISPLAY_BINS)),
        mean_std: (t.mean, t.std),
        candidates: candidates
            .into_iter()
            .map(|(name, lo, hi)| Candidate {
                name,
                lo,
                hi,
                chosen: name == chosen,
            })
            .collect(),
    })
}

/// SQNR (dB) of the plan's quantizers of `a` on the histograms of `s` (the post-activation
/// values they describe); `None` without histograms.
pub fn act_sqnr(a: &ActQuant, s: &TensorStats) -> Result<Option<f64>> {
    let chans = if a.per_channel {
        &s.channels[..]
    } else {
        std::slice::from_ref(&s.tensor)
    };
    if chans.len() != a.params.len() || chans.iter().any(|c| c.hist.is_none()) {
        return Ok(None);
    }
    let (mut sig, mut err) = (0.0f64, 0.0f64);
    for (c, q) in chans.iter().zip(&a.params) {
        let Some(h) = &c.hist else { continue };
        for (i, &cnt) in h.counts.iter().enumerate() {
            let (lo, hi) = h.edges(i);
            let x = a.act.apply((0.5 * (lo + hi)) as f32) as f64;
            sig += cnt as f64 * x * x;
        }
        if q.bits > 0 {
            let (lo, hi) = q.window();
            err += h.total() as f64 * mse_on_histogram(h, (lo as f64, hi as f64), q.bits, a.act)?;
        }
    }
    Ok(Some(10.0 * (sig / err.max(1e-30)).log10()))
}

/// Indices of the activation points to draw: the `k` with the lowest SQNR (`sqnr`, one
/// per point, when any is known), else the first `k` in graph order; only points for which
/// `has_stats` holds.
pub fn worst_points(
    acts: &[ActQuant],
    sqnr: &[Option<f64>],
    has_stats: impl Fn(&str) -> bool,
    k: usize,
) -> Vec<usize> {
    let mut pts: Vec<usize> = (0..acts.len())
        .filter(|&i| has_stats(&acts[i].value))
        .collect();
    if sqnr.iter().any(Option::is_some) {
        let key = |i: usize| sqnr.get(i).copied().flatten().unwrap_or(f64::INFINITY);
        pts.sort_by(|&a, &b| key(a).total_cmp(&key(b)));
    }
    pts.truncate(k);
    pts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebin_keeps_the_total_and_the_range_start() {
        let h = Histogram {
            lo: -1.0,
            hi: 1.0,
            counts: (0..2048).map(|i| i as u64 % 7).collect(),
        };
        let r = rebin(&h, DISPLAY_BINS);
        assert_eq!(r.counts.len(), DISPLAY_BINS);
        assert_eq!(r.total(), h.total());
        assert_eq!((r.lo, r.hi), (-1.0, 1.0));
    }

    #[test]
    fn chosen_name_follows_the_plan_label() {
        assert_eq!(chosen_name("aciq laplace"), "ACIQ Laplace");
        assert_eq!(
            chosen_name("aciq (no histogram for mmse) gauss"),
            "ACIQ Gauss"
        );
        assert_eq!(chosen_name("mmse"), "MMSE");
        assert_eq!(chosen_name("min-max"), "min-max");
    }
}
