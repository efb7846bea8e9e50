//! Streaming calibration statistics per channel (axis 1 of NCHW, over N·H·W) and per tensor,
//! with memory independent of the number of images (docs/METHOD.md §2: b = mean |x − mean|,
//! σ = standard deviation, both on the pre-activation tensor; §5: histograms for MMSE).
//!
//! Two passes over the same calibration data:
//! 1. [`StatsAccumulator::accumulate_pass1`]: per channel `[count, sum, sumsq, min, max]`.
//! 2. [`StatsAccumulator::begin_pass2`] fixes each channel's mean and histogram range from
//!    pass 1 (a [`Pass2Frame`]); [`StatsAccumulator::accumulate_pass2`] adds per channel
//!    Σ|x − mean_c| and a histogram of `channel_bins` (default 256) over the channel's
//!    [min, max], and for the whole tensor Σ|x − mean_t| and a histogram of `tensor_bins`
//!    (default 2048) over the tensor's [min, max].
//!
//! Partial-result layout (what a device twin produces and the host merges in a fixed order):
//! - pass 1: `moments[c] = [count, sum, sumsq, min, max]`, f64, one row per channel
//!   (`MOMENT_FIELDS` = 5); an empty row is `[0, 0, 0, +inf, −inf]`.
//! - pass 2: `abs_dev[0..C]` = Σ|x − mean_c| per channel, `abs_dev[C]` = Σ|x − mean_t| (f64);
//!   `channel_hist[c·channel_bins + i]` and `tensor_hist[i]` are counts (u32 per device batch,
//!   summed into u64 on the host by [`StatsAccumulator::merge_device_pass2`]).
//! - binning ([`Binning`], the one bin rule of ptq4, shared by this accumulator, the CPU twin
//!   `engine::cpu::histogram` and `shaders/histogram.wgsl`, whose range table is
//!   `(lo, inv_width)` per channel): exactly reproducible in f32, only correctly rounded
//!   − and ×, `bin = clamp(floor((x − lo) · inv_width), 0, bins − 1)` with `lo` = the f32 min
//!   and `inv_width = bins / (hi − lo)` computed in f32 on the host. Values below `lo` land in
//!   bin 0, values at or above `hi` in the last bin. A constant channel (hi = lo), or a range
//!   so narrow that `inv_width` overflows f32, has `inv_width = 0` and puts everything in
//!   bin 0 (so no device ever multiplies by ∞).
//!
//! Within one accumulator, values are summed per (image, channel) plane (in [`LANES`]
//! interleaved partial sums added in order, so the loops vectorize) and planes are added in
//! input order, so feeding the same data in different batch splits gives bit-identical
//! sums; merging parallel partials changes only the f64 association. Variance is
//! sumsq/n − mean² (clamped at 0), population (÷n).

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Channels per parallel task of the accumulators: about 64 Ki values per task, so small
/// tensors stay on one thread.
fn channels_per_task(c: usize, per_channel: usize) -> usize {
    (65_536 / per_channel.max(1)).clamp(1, c.max(1))
}

/// Default per-channel histogram bins.
pub const CHANNEL_BINS: usize = 256;
/// Default per-tensor histogram bins.
pub const TENSOR_BINS: usize = 2048;
/// Fields of one pass-1 row: count, sum, sumsq, min, max.
pub const MOMENT_FIELDS: usize = 5;
const EMPTY_ROW: [f64; MOMENT_FIELDS] = [0.0, 0.0, 0.0, f64::INFINITY, f64::NEG_INFINITY];

/// Histogram sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsConfig {
    pub channel_bins: usize,
    pub tensor_bins: usize,
}

impl Default for StatsConfig {
    fn default() -> Self {
        StatsConfig {
            channel_bins: CHANNEL_BINS,
            tensor_bins: TENSOR_BINS,
        }
    }
}

/// Equal-width histogram over [lo, hi]; bin i covers [lo + i·w, lo + (i+1)·w), w = (hi−lo)/bins.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    pub lo: f64,
    pub hi: f64,
    pub counts: Vec<u64>,
}

impl Histogram {
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Edges [a, b] of bin `i` (a = b for a constant channel).
    pub fn edges(&self, i: usize) -> (f64, f64) {
        let w = (self.hi - self.lo) / self.counts.len() as f64;
        (self.lo + i as f64 * w, self.lo + (i + 1) as f64 * w)
    }
}

/// The f32 bin rule shared with the device twins (module docs).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Binning {
    pub lo: f32,
    pub hi: f32,
    pub inv_width: f32,
    pub bins: u32,
}

impl Binning {
    pub fn new(lo: f32, hi: f32, bins: usize) -> Self {
        let k = bins as f32 / (hi - lo);
        let inv_width = if hi > lo && k.is_finite() { k } else { 0.0 };
        Binning {
            lo,
            hi,
            inv_width,
            bins: bins as u32,
        }
    }

    /// Bin of `x` (module docs).
    #[inline]
    pub fn bin(&self, x: f32) -> usize {
        bin_of((x - self.lo) * self.inv_width, (self.bins - 1) as f32) as usize
    }
}

/// `clamp(floor(t), 0, last)` as `trunc(clamp(t, 0, last))`: the same integer for every t
/// (truncation is floor on [0, last]; NaN clamps to 0), without a `floor` call, so the
/// pass-2 loop vectorizes.
#[inline(always)]
fn bin_of(t: f32, last: f32) -> u32 {
    // The largest f32 below 2³¹: a bound on `last` (a bin index) that keeps the cast sound
    // for any binning, equal to `last` for every real one.
    const I32_MAX_F32: f32 = 2_147_483_520.0;
    let t = t.max(0.0).min(last).min(I32_MAX_F32);
    // SAFETY: `t` is finite and in [0, 2³¹) (`max` returns 0 for NaN), so it truncates to an
    // `i32`. The checked `as` cast compiled to a scalar compare-and-convert per value (its
    // NaN and range cases), which bound the pass-2 loop; this one vectorizes (2.1× faster).
    unsafe { t.to_int_unchecked::<i32>() as u32 }
}

/// Lanes of the per-plane sums and extrema: each plane's result is a fixed function of the
/// plane (lane j takes elements j, j + LANES, …; lanes are then added in order), so results
/// stay bit-identical across batch splits and threads, and the loops vectorize.
const LANES: usize = 8;

/// (Σx, Σx², min, max) of one plane, sums in f64.
#[inline(always)]
fn plane_moments(plane: &[f32]) -> (f64, f64, f32, f32) {
    let (mut s, mut ss) = ([0f64; LANES], [0f64; LANES]);
    let (mut lo, mut hi) = ([f32::INFINITY; LANES], [f32::NEG_INFINITY; LANES]);
    let mut step = |j: usize, v: f32| {
        let d = v as f64;
        s[j] += d;
        ss[j] += d * d;
        // Comparisons, not f32::min: NaN leaves the extremum unchanged either way.
        lo[j] = if v < lo[j] { v } else { lo[j] };
        hi[j] = if v > hi[j] { v } else { hi[j] };
    };
    let mut chunks = plane.chunks_exact(LANES);
    for c in &mut chunks {
        for (j, &v) in c.iter().enumerate() {
            step(j, v);
        }
    }
    for (j, &v) in chunks.remainder().iter().enumerate() {
        step(j, v);
    }
    let fold = |a: [f64; LANES]| a.iter().fold(0.0, |t, &v| t + v);
    let lo = lo
        .iter()
        .fold(f32::INFINITY, |m, &v| if v < m { v } else { m });
    let hi = hi
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    (fold(s), fold(ss), lo, hi)
}

/// Pass 2 of one plane: (Σ|x − m|, Σ|x − tm|) in f64, and each value counted in its
/// channel (`b`, `hist`) and tensor (`tb`, `thist`) bins.
#[inline(always)]
fn plane_pass2(
    plane: &[f32],
    (m, tm): (f64, f64),
    (b, tb): (Binning, Binning),
    hist: &mut [u64],
    thist: &mut [u64],
) -> (f64, f64) {
    let (mut dev, mut tdev) = ([0f64; LANES], [0f64; LANES]);
    let (last, tlast) = ((b.bins - 1) as f32, (tb.bins - 1) as f32);
    let (mut idx, mut tidx) = ([0u32; LANES], [0u32; LANES]);
    let mut chunks = plane.chunks_exact(LANES);
    for c in &mut chunks {
        for (j, &v) in c.iter().enumerate() {
            let d = v as f64;
            dev[j] += (d - m).abs();
            tdev[j] += (d - tm).abs();
            idx[j] = bin_of((v - b.lo) * b.inv_width, last);
            tidx[j] = bin_of((v - tb.lo) * tb.inv_width, tlast);
        }
        for j in 0..LANES {
            hist[idx[j] as usize] += 1;
            thist[tidx[j] as usize] += 1;
        }
    }
    for (j, &v) in chunks.remainder().iter().enumerate() {
        let d = v as f64;
        dev[j] += (d - m).abs();
        tdev[j] += (d - tm).abs();
        hist[b.bin(v)] += 1;
        thist[tb.bin(v)] += 1;
    }
    let fold = |a: [f64; LANES]| a.iter().fold(0.0, |t, &v| t + v);
    (fold(dev), fold(tdev))
}

/// Which build of the plane loops runs: [`plane_moments`] / [`plane_pass2`] compiled for
/// AVX2 where the CPU has it, the same operations in the same order (same bits). (An
/// AVX-512 build measured no faster: the histogram increments bound the pass.)
#[derive(Clone, Copy)]
enum Simd {
    Avx2,
    Baseline,
}

impl Simd {
    fn detect() -> Simd {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            return Simd::Avx2;
        }
        Simd::Baseline
    }

    fn moments(self, plane: &[f32]) -> (f64, f64, f32, f32) {
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2")]
            unsafe fn avx2(plane: &[f32]) -> (f64, f64, f32, f32) {
                plane_moments(plane)
            }
            if let Simd::Avx2 = self {
                // SAFETY: `detect` picks it only where the CPU has AVX2.
                return unsafe { avx2(plane) };
            }
        }
        plane_moments(plane)
    }

    fn pass2(
        self,
        plane: &[f32],
        means: (f64, f64),
        bins: (Binning, Binning),
        hist: &mut [u64],
        thist: &mut [u64],
    ) -> (f64, f64) {
        #[cfg(target_arch = "x86_64")]
        {
            type Args<'a> = (&'a [f32], (f64, f64), (Binning, Binning));
            #[target_feature(enable = "avx2")]
            unsafe fn avx2((p, m, b): Args, h: &mut [u64], t: &mut [u64]) -> (f64, f64) {
                plane_pass2(p, m, b, h, t)
            }
            if let Simd::Avx2 = self {
                // SAFETY: `detect` picks it only where the CPU has AVX2.
                return unsafe { avx2((plane, means, bins), hist, thist) };
            }
        }
        plane_pass2(plane, means, bins, hist, thist)
    }
}

/// What pass 2 needs from pass 1: per channel mean and binning, then the tensor's (last).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pass2Frame {
    /// C + 1 means (f64): channels, then the whole tensor.
    pub mean: Vec<f64>,
    /// C + 1 binnings: channels (`channel_bins`), then the tensor (`tensor_bins`).
    pub binning: Vec<Binning>,
}

/// Final statistics of one channel (or of a whole tensor).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChannelStats {
    /// Values seen; 0 for statistics synthesised from a model (data-free).
    pub count: u64,
    pub mean: f64,
    /// Population standard deviation σ.
    pub std: f64,
    /// Mean absolute deviation b = E|x − mean| (the Laplace scale estimate).
    pub mad: f64,
    pub min: f64,
    pub max: f64,
    pub hist: Option<Histogram>,
}

/// Per-channel statistics plus the same quantities over the whole tensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TensorStats {
    pub channels: Vec<ChannelStats>,
    pub tensor: ChannelStats,
}

/// Streaming two-pass accumulator for one NCHW tensor (module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct StatsAccumulator {
    pub channels: usize,
    pub config: StatsConfig,
    pub moments: Vec<[f64; MOMENT_FIELDS]>,
    pub frame: Option<Pass2Frame>,
    pub abs_dev: Vec<f64>,
    pub channel_hist: Vec<u64>,
    pub tensor_hist: Vec<u64>,
}

fn check_shape(x: &[f32], n: usize, c: usize, hw: usize, channels: usize) -> Result<()> {
    if c != channels || x.len() != n * c * hw {
        return Err(Error::Quant(format!(
            "statistics for {channels} channels fed {} values as N·C·HW = {n}·{c}·{hw}",
            x.len()
        )));
    }
    Ok(())
}

impl StatsAccumulator {
    pub fn new(channels: usize, config: StatsConfig) -> Result<Self> {
        if channels == 0 || config.channel_bins == 0 || config.tensor_bins == 0 {
            return Err(Error::Quant(
                "statistics need at least one channel and one bin".into(),
            ));
        }
        Ok(StatsAccumulator {
            channels,
            config,
            moments: vec![EMPTY_ROW; channels],
            frame: None,
            abs_dev: vec![0.0; channels + 1],
            channel_hist: vec![0; channels * config.channel_bins],
            tensor_hist: vec![0; config.tensor_bins],
        })
    }

    /// An empty accumulator with the same shape and pass-2 frame: the starting point of a
    /// parallel partial, merged back with [`merge`](Self::merge).
    pub fn partial(&self) -> Self {
        StatsAccumulator {
            channels: self.channels,
            config: self.config,
            moments: vec![EMPTY_ROW; self.channels],
            frame: self.frame.clone(),
            abs_dev: vec![0.0; self.channels + 1],
            channel_hist: vec![0; self.channel_hist.len()],
            tensor_hist: vec![0; self.tensor_hist.len()],
        }
    }

    /// Pass 1 over one NCHW batch: count, sum, sumsq, min, max per channel.
    pub fn accumulate_pass1(&mut self, x: &[f32], n: usize, c: usize, hw: usize) -> Result<()> {
        if self.frame.is_some() {
            return Err(Error::Quant("pass 1 fed after pass 2 began".into()));
        }
        check_shape(x, n, c, hw, self.channels)?;
        if hw == 0 {
            return Ok(());
        }
        let simd = Simd::detect();
        // Channels in parallel, each row fed its planes in input order: the same sums as
        // one thread feeding plane after plane.
        self.moments[..c]
            .par_iter_mut()
            .with_min_len(channels_per_task(c, n * hw))
            .enumerate()
            .for_each(|(ch, row)| {
                for img in 0..n {
                    let plane = &x[(img * c + ch) * hw..][..hw];
                    let (s, ss, lo, hi) = simd.moments(plane);
                    row[0] += plane.len() as f64;
                    row[1] += s;
                    row[2] += ss;
                    row[3] = row[3].min(lo as f64);
                    row[4] = row[4].max(hi as f64);
                }
            });
        Ok(())
    }

    /// Adds device pass-1 partials (layout in the module docs), in the order given.
    pub fn merge_device_pass1(&mut self, moments: &[[f64; MOMENT_FIELDS]]) -> Result<()> {
        if moments.len() != self.channels {
            return Err(Error::Quant(format!(
                "pass-1 partial has {} rows for {} channels",
                moments.len(),
                self.channels
            )));
        }
        for (row, p) in self.moments.iter_mut().zip(moments) {
            merge_row(row, p);
        }
        Ok(())
    }

    /// Ends pass 1: fixes means and histogram ranges (per channel and for the tensor).
    pub fn begin_pass2(&mut self) -> Result<()> {
        let mut t = EMPTY_ROW;
        let mut mean = Vec::with_capacity(self.channels + 1);
        let mut binning = Vec::with_capacity(self.channels + 1);
        for (ch, row) in self.moments.iter().enumerate() {
            if row[0] == 0.0 {
                return Err(Error::Quant(format!("channel {ch}: pass 1 saw no values")));
            }
            if !row[1].is_finite() || !row[2].is_finite() {
                return Err(Error::Quant(format!("channel {ch}: non-finite values")));
            }
            merge_row(&mut t, row);
            mean.push(row[1] / row[0]);
            binning.push(Binning::new(
                row[3] as f32,
                row[4] as f32,
                self.config.channel_bins,
            ));
        }
        mean.push(t[1] / t[0]);
        binning.push(Binning::new(
            t[3] as f32,
            t[4] as f32,
            self.config.tensor_bins,
        ));
        self.frame = Some(Pass2Frame { mean, binning });
        Ok(())
    }

    /// Pass 2 over one NCHW batch (the same data as pass 1): Σ|x − mean| and histograms.
    pub fn accumulate_pass2(&mut self, x: &[f32], n: usize, c: usize, hw: usize) -> Result<()> {
        check_shape(x, n, c, hw, self.channels)?;
        let Some(frame) = self.frame.as_ref() else {
            return Err(Error::Quant("pass 2 fed before begin_pass2".into()));
        };
        if hw == 0 {
            return Ok(());
        }
        let bins = self.config.channel_bins;
        let tbins = self.tensor_hist.len();
        let (tmean, tbin) = (frame.mean[c], frame.binning[c]);
        let simd = Simd::detect();
        // Tasks own runs of channels: their histograms and deviation sums directly (each fed
        // its planes in input order), the tensor's histogram as a partial (integer counts,
        // so merging is exact), and each plane's deviation from the tensor mean, which is
        // then added in input order below.
        let per = channels_per_task(c, n * hw);
        let parts: Vec<(Vec<u64>, Vec<f64>)> = self.channel_hist[..c * bins]
            .par_chunks_mut(per * bins)
            .zip(self.abs_dev[..c].par_chunks_mut(per))
            .enumerate()
            .map(|(t, (hists, devs))| {
                let mut thist = vec![0u64; tbins];
                let mut pdevs = vec![0f64; devs.len() * n];
                for (k, (hist, dev)) in hists.chunks_mut(bins).zip(devs.iter_mut()).enumerate() {
                    let ch = t * per + k;
                    let args = ((frame.mean[ch], tmean), (frame.binning[ch], tbin));
                    for img in 0..n {
                        let plane = &x[(img * c + ch) * hw..][..hw];
                        let (d, pd) = simd.pass2(plane, args.0, args.1, hist, &mut thist);
                        *dev += d;
                        pdevs[k * n + img] = pd;
                    }
                }
                (thist, pdevs)
            })
            .collect();
        for (th, _) in &parts {
            self.tensor_hist
                .iter_mut()
                .zip(th)
                .for_each(|(a, &b)| *a += b);
        }
        // Each plane straight into the tensor's sum, in input order, like the channels'
        // (a per-batch subtotal would make the sum depend on the batch split).
        for img in 0..n {
            for ch in 0..c {
                self.abs_dev[c] += parts[ch / per].1[(ch % per) * n + img];
            }
        }
        Ok(())
    }

    /// Adds device pass-2 partials (layout in the module docs).
    pub fn merge_device_pass2(
        &mut self,
        abs_dev: &[f64],
        channel_hist: &[u32],
        tensor_hist: &[u32],
    ) -> Result<()> {
        if abs_dev.len() != self.abs_dev.len()
            || channel_hist.len() != self.channel_hist.len()
            || tensor_hist.len() != self.tensor_hist.len()
        {
            return Err(Error::Quant(format!(
                "pass-2 partial sizes {}/{}/{} do not match {}/{}/{}",
                abs_dev.len(),
                channel_hist.len(),
                tensor_hist.len(),
                self.abs_dev.len(),
                self.channel_hist.len(),
                self.tensor_hist.len()
            )));
        }
        add_f64(&mut self.abs_dev, abs_dev);
        for (a, &b) in self.channel_hist.iter_mut().zip(channel_hist) {
            *a += b as u64;
        }
        for (a, &b) in self.tensor_hist.iter_mut().zip(tensor_hist) {
            *a += b as u64;
        }
        Ok(())
    }

    /// Adds a partial with the same shape and frame (e.g. from [`partial`](Self::partial)).
    /// Merge partials in a fixed order for bit-identical results.
    pub fn merge(&mut self, other: &Self) -> Result<()> {
        if other.channels != self.channels
            || other.config != self.config
            || other.frame != self.frame
        {
            return Err(Error::Quant(
                "merging statistics of different shapes or pass-2 frames".into(),
            ));
        }
        for (row, p) in self.moments.iter_mut().zip(&other.moments) {
            merge_row(row, p);
        }
        add_f64(&mut self.abs_dev, &other.abs_dev);
        for (a, b) in self.channel_hist.iter_mut().zip(&other.channel_hist) {
            *a += b;
        }
        for (a, b) in self.tensor_hist.iter_mut().zip(&other.tensor_hist) {
            *a += b;
        }
        Ok(())
    }

    /// Final statistics; fails unless pass 2 saw exactly as many values as pass 1.
    pub fn finalize(&self) -> Result<TensorStats> {
        let Some(frame) = self.frame.as_ref() else {
            return Err(Error::Quant("finalize before pass 2".into()));
        };
        let bins = self.config.channel_bins;
        let mut t = EMPTY_ROW;
        let mut channels = Vec::with_capacity(self.channels);
        for (ch, row) in self.moments.iter().enumerate() {
            merge_row(&mut t, row);
            let counts = self.channel_hist[ch * bins..(ch + 1) * bins].to_vec();
            channels.push(finish(
                ch,
                row,
                self.abs_dev[ch],
                &frame.binning[ch],
                counts,
            )?);
        }
        let c = self.channels;
        let tensor = finish(
            c,
            &t,
            self.abs_dev[c],
            &frame.binning[c],
            self.tensor_hist.clone(),
        )?;
        Ok(TensorStats { channels, tensor })
    }
}

fn merge_row(row: &mut [f64; MOMENT_FIELDS], p: &[f64; MOMENT_FIELDS]) {
    row[0] += p[0];
    row[1] += p[1];
    row[2] += p[2];
    row[3] = row[3].min(p[3]);
    row[4] = row[4].max(p[4]);
}

fn add_f64(a: &mut [f64], b: &[f64]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

fn finish(
    ch: usize,
    row: &[f64; MOMENT_FIELDS],
    abs_dev: f64,
    binning: &Binning,
    counts: Vec<u64>,
) -> Result<ChannelStats> {
    let n = row[0];
    let seen: u64 = counts.iter().sum();
    if n == 0.0 || seen as f64 != n {
        return Err(Error::Quant(format!(
            "channel {ch}: pass 1 saw {n} values, pass 2 saw {seen}; feed both passes the same data"
        )));
    }
    let mean = row[1] / n;
    Ok(ChannelStats {
        count: n as u64,
        mean,
        std: (row[2] / n - mean * mean).max(0.0).sqrt(),
        mad: abs_dev / n,
        min: row[3],
        max: row[4],
        hist: Some(Histogram {
            lo: binning.lo as f64,
            hi: binning.hi as f64,
            counts,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `bin_of` is `clamp(floor(t), 0, last)` with NaN in bin 0, for every kind of `t`, and
    /// stays in range for a binning too wide for `i32`.
    #[test]
    fn bin_of_is_the_clamped_floor() {
        let ts = [
            f32::NAN,
            f32::NEG_INFINITY,
            -1e30,
            -0.5,
            -0.0,
            0.0,
            0.25,
            1.0,
            254.999,
            255.0,
            255.5,
            2047.0,
            1e9,
            f32::INFINITY,
        ];
        for last in [0.0f32, 1.0, 255.0, 2047.0] {
            for &t in &ts {
                let want = if t.is_nan() {
                    0
                } else {
                    t.floor().clamp(0.0, last) as u32
                };
                assert_eq!(bin_of(t, last), want, "t = {t}, last = {last}");
            }
        }
        assert_eq!(bin_of(f32::INFINITY, u32::MAX as f32), 2_147_483_520);
    }
}
