//! MMSE clip search over histograms (Choukroun et al., docs/METHOD.md §5), the CPU twin of
//! `shaders/mmse.wgsl`, in f64.
//!
//! Channel `c` has a histogram of `bins` counts over `[lo, hi]` (which must contain 0, so
//! that clipping toward 0 keeps 0 inside) and a bit-width `M ≥ 1`. Candidate `j` scales the
//! window by `f_j` (the grid, e.g. [`clip_grid`]): `[a, b] = [lo·f_j, hi·f_j]`, quantized
//! with docs/METHOD.md §1's asymmetric quantizer:
//!
//! ```text
//! s = max((b − a)/(2^M − 1), 1e-8)    z = round(−a/s)
//! Q(x) = (clamp(round(x/s) + z, 0, 2^M − 1) − z)·s
//! x_i = lo + (i + ½)·(hi − lo)/bins       (bin centres stand for their bin)
//! mse_j = Σ_i n_i·(x_i − Q(x_i))² / Σ_i n_i        (0 for an empty histogram)
//! ```
//!
//! The best candidate is the first minimum of `mse_j` in grid order.

use crate::error::{Error, Result};

/// The grid `f_j = j/k`, `j = 1..=k`: from a window k times narrower up to the full range.
pub fn clip_grid(k: usize) -> Vec<f32> {
    (1..=k).map(|j| j as f32 / k as f32).collect()
}

/// The chosen clip of one channel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MmseChoice {
    /// Index into the grid.
    pub index: usize,
    pub lo: f32,
    pub hi: f32,
    /// Expected squared error per value at this clip.
    pub mse: f64,
}

/// Checks shapes, ranges containing 0, bits in 1..=16 and a non-empty positive grid.
pub fn validate(
    counts: &[u32],
    ranges: &[(f32, f32)],
    bins: u32,
    bits: &[u32],
    grid: &[f32],
) -> Result<()> {
    let c = ranges.len();
    if bins == 0 || counts.len() != c * bins as usize || bits.len() != c {
        return Err(Error::Engine(format!(
            "mmse: {} counts, {} bit-widths for {c} channels × {bins} bins",
            counts.len(),
            bits.len()
        )));
    }
    if let Some((ch, r)) = ranges
        .iter()
        .enumerate()
        .find(|(_, &(lo, hi))| !(lo <= 0.0 && hi >= 0.0 && lo.is_finite() && hi.is_finite()))
    {
        return Err(Error::Engine(format!(
            "mmse: channel {ch}: range {r:?} must be finite and contain 0"
        )));
    }
    if bits.iter().any(|&m| m == 0 || m > 16) {
        return Err(Error::Engine("mmse: bit-widths must be in 1..=16".into()));
    }
    if grid.is_empty() || grid.iter().any(|&f| !(f > 0.0 && f.is_finite())) {
        return Err(Error::Engine(
            "mmse: grid must be non-empty and positive".into(),
        ));
    }
    Ok(())
}

/// Expected squared error of every candidate, `[channels][grid.len()]`.
pub fn mse_curve(
    counts: &[u32],
    ranges: &[(f32, f32)],
    bins: u32,
    bits: &[u32],
    grid: &[f32],
) -> Result<Vec<f64>> {
    validate(counts, ranges, bins, bits, grid)?;
    let nb = bins as usize;
    let mut out = Vec::with_capacity(ranges.len() * grid.len());
    for (c, &(lo, hi)) in ranges.iter().enumerate() {
        let h = &counts[c * nb..(c + 1) * nb];
        let total: f64 = h.iter().map(|&n| n as f64).sum();
        let qmax = ((1u32 << bits[c]) - 1) as f64;
        let width = (hi as f64 - lo as f64) / nb as f64;
        for &f in grid {
            let (a, b) = (lo as f64 * f as f64, hi as f64 * f as f64);
            let s = ((b - a) / qmax).max(1e-8);
            let z = (-a / s).round_ties_even();
            let mut sum = 0.0;
            for (i, &n) in h.iter().enumerate() {
                let x = lo as f64 + (i as f64 + 0.5) * width;
                let q = ((x / s).round_ties_even() + z).clamp(0.0, qmax);
                let e = x - (q - z) * s;
                sum += n as f64 * e * e;
            }
            out.push(if total > 0.0 { sum / total } else { 0.0 });
        }
    }
    Ok(out)
}

/// First minimum of each channel's row of `curve` (`k` candidates per channel).
pub fn best_indices(curve: &[f64], k: usize) -> Vec<usize> {
    curve
        .chunks(k.max(1))
        .map(|row| {
            row.iter()
                .enumerate()
                .fold(
                    (0, f64::INFINITY),
                    |(bi, bv), (i, &v)| {
                        if v < bv {
                            (i, v)
                        } else {
                            (bi, bv)
                        }
                    },
                )
                .0
        })
        .collect()
}

/// The MMSE clip of every channel (one channel = per tensor).
pub fn mmse_search(
    counts: &[u32],
    ranges: &[(f32, f32)],
    bins: u32,
    bits: &[u32],
    grid: &[f32],
) -> Result<Vec<MmseChoice>> {
    let curve = mse_curve(counts, ranges, bins, bits, grid)?;
    Ok(choices(
        &curve,
        &best_indices(&curve, grid.len()),
        ranges,
        grid,
    ))
}

/// Assembles choices from a curve and chosen indices (shared with the GPU launcher).
pub fn choices(
    curve: &[f64],
    best: &[usize],
    ranges: &[(f32, f32)],
    grid: &[f32],
) -> Vec<MmseChoice> {
    best.iter()
        .zip(ranges)
        .enumerate()
        .map(|(c, (&j, &(lo, hi)))| MmseChoice {
            index: j,
            lo: lo * grid[j],
            hi: hi * grid[j],
            mse: curve[c * grid.len() + j],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outliers_pull_the_clip_inward() {
        // 1000 values spread over 0..10 and one outlier near 100: at 2 bits the full range
        // puts every level but one above the mass, so a narrower window wins.
        let bins = 100;
        let mut counts = vec![0u32; bins];
        counts[..10].fill(100);
        counts[99] = 1;
        let r = mmse_search(&counts, &[(0.0, 100.0)], bins as u32, &[2], &clip_grid(20)).unwrap();
        assert!(r[0].index < 19, "{r:?}");
        let full = mse_curve(&counts, &[(0.0, 100.0)], bins as u32, &[2], &[1.0]).unwrap();
        assert!(r[0].mse < full[0]);
    }
}
