//! MMSE clipping (OMSE, Choukroun et al. 2019 §3.1–3.2; docs/METHOD.md §5): choose the clip window
//! [lo, hi] minimising the mean squared error ‖X − Q(X)‖²/n of the §1 quantizer
//! ([`QParams::from_range`], so the window is widened to include 0 and z is rounded exactly
//! as deployed).
//!
//! - Activations: on a collected [`Histogram`], per tensor (or per channel). Values are taken
//!   as uniform within each bin and the squared error is integrated exactly over every
//!   (bin ∩ code cell) piece: ∫_u^v (x − r)² dx = (v−u)·((v−r)² + (v−r)(u−r) + (u−r)²)/3.
//!   A fused ReLU/ReLU6 is applied to the values before quantization (mass below 0 becomes
//!   0, above 6 becomes 6), since the histogram is of the pre-activation tensor.
//! - Weights: on the raw values of each output kernel (one scale per output channel, so
//!   integer accumulation stays valid).
//!
//! Search (choice left open by the paper): with m = min(min, 0), M = max(max, 0) the window is
//! [u·m, v·M], u, v ∈ [0, 1]. A coarse 16 × 16 grid of u, v ∈ {1/16, …, 1} (which includes
//! the min-max window), then 3 rounds of coordinate-wise golden-section search within ±1/16
//! of the best point (20 iterations each). The best window seen is kept, so the result is
//! never worse than min-max or any grid point. Deterministic: fixed evaluation order.
//!
//! Evaluation and choice are separate: an [`MseEval`] returns the histogram objective of a
//! batch of candidate quantizers (the grid is one batch of 257, each golden-section step a
//! batch of one), each with an absolute error bound; the search here makes every decision.
//! [`ExactEval`] is [`mse_on_histogram`] itself (bound 0); a device evaluator (the GPU one
//! is `engine::gpu::mmse`) computes the same integrals in f32 with a derived bound. A
//! comparison whose two intervals `[mse ± err]` are disjoint is decided by the estimates;
//! otherwise both candidates are re-evaluated exactly here and compared, and the window
//! returned carries its exact objective. So, as long as the bounds hold, every backend takes
//! the same decisions as the exact search and plans are bit-identical across backends.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::scheme::{weight_rows, QParams};
use super::stats::Histogram;
use crate::error::{Error, Result};
use crate::graph::Activation;

const GRID: usize = 16;
const ROUNDS: usize = 3;
const GOLDEN_ITERS: usize = 20;

/// A clip window and its mean squared error.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClipSearch {
    pub lo: f64,
    pub hi: f64,
    pub mse: f64,
}

/// The range of the values actually quantized after a fused activation.
pub(crate) fn activation_range(act: Activation, min: f64, max: f64) -> (f64, f64) {
    match act {
        Activation::None => (min, max),
        Activation::Relu => (min.max(0.0), max.max(0.0)),
        Activation::Relu6 => (min.clamp(0.0, 6.0), max.clamp(0.0, 6.0)),
    }
}

/// ∫_a^b (act(x) − Q(act(x)))² dx for a ≤ b.
fn integral(p: &QParams, act: Activation, a: f64, b: f64) -> f64 {
    let (cl, ch) = match act {
        Activation::None => (f64::NEG_INFINITY, f64::INFINITY),
        Activation::Relu => (0.0, f64::INFINITY),
        Activation::Relu6 => (0.0, 6.0),
    };
    let point = |x: f64| {
        let e = x - p.fake_quant(x as f32) as f64;
        e * e
    };
    let mut sum = 0.0;
    if a < cl {
        sum += (b.min(cl) - a) * point(cl);
    }
    if b > ch {
        sum += (b - a.max(ch)) * point(ch);
    }
    let (a, b) = (a.max(cl), b.min(ch));
    if b <= a {
        return sum;
    }
    let (s, z, qmax) = (p.scale as f64, p.zero_point as f64, p.qmax() as i64);
    let code = |x: f64| ((x / s + z).round_ties_even().clamp(0.0, qmax as f64)) as i64;
    for q in code(a)..=code(b) {
        let lo_q = if q == 0 {
            f64::NEG_INFINITY
        } else {
            (q as f64 - 0.5 - z) * s
        };
        let hi_q = if q == qmax {
            f64::INFINITY
        } else {
            (q as f64 + 0.5 - z) * s
        };
        let (u, v) = (a.max(lo_q), b.min(hi_q));
        if v > u {
            let r = p.dequantize(q as u8) as f64;
            let (du, dv) = (u - r, v - r);
            sum += (v - u) * (dv * dv + dv * du + du * du) / 3.0;
        }
    }
    sum
}

/// Mean squared error of quantizing the histogram's values (after `act`) with the window
/// [lo, hi] at `bits`.
pub fn mse_on_histogram(
    hist: &Histogram,
    window: (f64, f64),
    bits: u8,
    act: Activation,
) -> Result<f64> {
    let p = QParams::from_range(window.0 as f32, window.1 as f32, bits)?;
    mse_of_quantizer(hist, &p, act)
}

/// [`mse_on_histogram`] for a quantizer already built.
pub fn mse_of_quantizer(hist: &Histogram, p: &QParams, act: Activation) -> Result<f64> {
    let p = *p;
    let total = hist.total();
    if total == 0 {
        return Err(Error::Quant("MSE on an empty histogram".into()));
    }
    let mut err = 0.0;
    for (i, &n) in hist.counts.iter().enumerate() {
        if n == 0 {
            continue;
        }
        let (a, b) = hist.edges(i);
        let e = if b > a {
            integral(&p, act, a, b) / (b - a)
        } else {
            let x = act.apply(a as f32);
            let d = x as f64 - p.fake_quant(x) as f64;
            d * d
        };
        err += n as f64 * e;
    }
    Ok(err / total as f64)
}

/// Mean squared error of fake-quantizing `x` with the window [lo, hi] at `bits`.
pub fn mse_on_values(x: &[f32], window: (f64, f64), bits: u8) -> Result<f64> {
    if x.is_empty() {
        return Err(Error::Quant("MSE on an empty tensor".into()));
    }
    let p = QParams::from_range(window.0 as f32, window.1 as f32, bits)?;
    let err: f64 = x
        .iter()
        .map(|&v| {
            let d = v as f64 - p.fake_quant(v) as f64;
            d * d
        })
        .sum();
    Ok(err / x.len() as f64)
}

/// An objective value and an absolute bound on its error (0: exact).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bounded {
    pub mse: f64,
    pub err: f64,
}

/// Evaluates the histogram objective ([`mse_of_quantizer`]) for batches of candidates; the
/// search (module docs) decides. One search calls [`begin`](Self::begin) once, then
/// [`mse`](Self::mse) any number of times with the same histogram.
pub trait MseEval {
    /// Announces the histogram of the next [`mse`](Self::mse) calls (a device uploads it).
    fn begin(&mut self, hist: &Histogram) -> Result<()>;
    /// The objective of each quantizer on `hist` (after `act`), in order.
    fn mse(&mut self, hist: &Histogram, act: Activation, cands: &[QParams])
        -> Result<Vec<Bounded>>;
}

/// The exact objective, [`mse_of_quantizer`] in f64 on the CPU.
pub struct ExactEval;

impl MseEval for ExactEval {
    fn begin(&mut self, _: &Histogram) -> Result<()> {
        Ok(())
    }

    fn mse(
        &mut self,
        hist: &Histogram,
        act: Activation,
        cands: &[QParams],
    ) -> Result<Vec<Bounded>> {
        cands
            .iter()
            .map(|p| {
                Ok(Bounded {
                    mse: mse_of_quantizer(hist, p, act)?,
                    err: 0.0,
                })
            })
            .collect()
    }
}

/// A candidate window with its (possibly bounded) objective.
#[derive(Clone, Copy)]
struct Cand {
    lo: f64,
    hi: f64,
    est: Bounded,
}

/// Decides `a < b` (module docs): by the estimates when their error intervals are
/// disjoint, else by exact values from `exact` (stored into the candidates).
fn less(a: &mut Cand, b: &mut Cand, exact: &mut dyn FnMut(&Cand) -> Result<f64>) -> Result<bool> {
    if a.est.err == 0.0 && b.est.err == 0.0 {
        return Ok(a.est.mse < b.est.mse);
    }
    if a.est.mse + a.est.err < b.est.mse - b.est.err {
        return Ok(true);
    }
    if a.est.mse - a.est.err >= b.est.mse + b.est.err {
        return Ok(false);
    }
    for c in [&mut *a, &mut *b] {
        if c.est.err != 0.0 {
            c.est = Bounded {
                mse: exact(c)?,
                err: 0.0,
            };
        }
    }
    Ok(a.est.mse < b.est.mse)
}

/// Grid + golden-section search over windows [u·m, v·M] (module docs). `eval` gives the
/// objective of a batch of windows, `exact` the exact objective of one.
fn search(
    min: f64,
    max: f64,
    mut eval: impl FnMut(&[(f64, f64)]) -> Result<Vec<Bounded>>,
    mut exact: impl FnMut(f64, f64) -> Result<f64>,
) -> Result<ClipSearch> {
    let (m, big_m) = (min.min(0.0), max.max(0.0));
    let window = |u: f64, v: f64| (u * m, v * big_m);
    let mut exact = |c: &Cand| exact(c.lo, c.hi);
    let mut batch = |uv: &[(f64, f64)]| -> Result<Vec<Cand>> {
        let w: Vec<(f64, f64)> = uv.iter().map(|&(u, v)| window(u, v)).collect();
        let est = eval(&w)?;
        if est.len() != w.len() {
            return Err(Error::Quant(format!(
                "MSE evaluator returned {} values for {} windows",
                est.len(),
                w.len()
            )));
        }
        Ok(w.iter()
            .zip(est)
            .map(|(&(lo, hi), est)| Cand { lo, hi, est })
            .collect())
    };
    let step = 1.0 / GRID as f64;
    let fractions = |free: bool| -> Vec<f64> {
        if free {
            (1..=GRID).map(|k| k as f64 * step).collect()
        } else {
            vec![1.0]
        }
    };
    let (free_u, free_v) = (m < 0.0, big_m > 0.0);
    // The min-max window, then the grid, in one batch.
    let mut uv = vec![(1.0, 1.0)];
    for &u in &fractions(free_u) {
        for &v in &fractions(free_v) {
            uv.push((u, v));
        }
    }
    let mut grid = batch(&uv)?.into_iter().zip(uv);
    let (mut best, _) = grid.next().expect("the min-max window");
    let (mut bu, mut bv) = (1.0, 1.0);
    for (mut c, (u, v)) in grid {
        if less(&mut c, &mut best, &mut exact)? {
            (best, bu, bv) = (c, u, v);
        }
    }
    for _ in 0..ROUNDS {
        for axis in [0, 1] {
            if (axis == 0 && !free_u) || (axis == 1 && !free_v) {
                continue;
            }
            let centre = if axis == 0 { bu } else { bv };
            let (mut a, mut b) = ((centre - step).max(0.0), (centre + step).min(1.0));
            let g = (5f64.sqrt() - 1.0) / 2.0;
            let mut at = |t: f64,
                          best: &mut Cand,
                          exact: &mut dyn FnMut(&Cand) -> Result<f64>|
             -> Result<Cand> {
                let (u, v) = if axis == 0 { (t, bv) } else { (bu, t) };
                let mut c = batch(&[(u, v)])?[0];
                if less(&mut c, best, exact)? {
                    *best = c;
                }
                Ok(c)
            };
            let (mut x1, mut x2) = (b - g * (b - a), a + g * (b - a));
            let mut f1 = at(x1, &mut best, &mut exact)?;
            let mut f2 = at(x2, &mut best, &mut exact)?;
            for _ in 0..GOLDEN_ITERS {
                if !less(&mut f2, &mut f1, &mut exact)? {
                    (b, x2, f2) = (x2, x1, f1);
                    x1 = b - g * (b - a);
                    f1 = at(x1, &mut best, &mut exact)?;
                } else {
                    (a, x1, f1) = (x1, x2, f2);
                    x2 = a + g * (b - a);
                    f2 = at(x2, &mut best, &mut exact)?;
                }
            }
            // Re-derive the best fractions from the best window (exact when m, M ≠ 0).
            bu = if free_u { best.lo / m } else { 1.0 };
            bv = if free_v { best.hi / big_m } else { 1.0 };
        }
    }
    let mse = if best.est.err == 0.0 {
        best.est.mse
    } else {
        exact(&best)?
    };
    Ok(ClipSearch {
        lo: best.lo,
        hi: best.hi,
        mse,
    })
}

/// MMSE window for the values summarised by `hist` (activations; `act` = fused activation).
pub fn mmse_histogram(hist: &Histogram, bits: u8, act: Activation) -> Result<ClipSearch> {
    mmse_histogram_with(hist, bits, act, &mut ExactEval)
}

/// [`mmse_histogram`] with the objective evaluated by `eval` (module docs: the same window
/// whenever `eval`'s bounds hold).
pub fn mmse_histogram_with(
    hist: &Histogram,
    bits: u8,
    act: Activation,
    eval: &mut dyn MseEval,
) -> Result<ClipSearch> {
    let (min, max) = activation_range(act, hist.lo, hist.hi);
    eval.begin(hist)?;
    search(
        min,
        max,
        |windows| {
            let cands = windows
                .iter()
                .map(|&(lo, hi)| QParams::from_range(lo as f32, hi as f32, bits))
                .collect::<Result<Vec<_>>>()?;
            eval.mse(hist, act, &cands)
        },
        |lo, hi| mse_on_histogram(hist, (lo, hi), bits, act),
    )
}

/// MMSE window for raw values (one weight kernel).
pub fn mmse_values(x: &[f32], bits: u8) -> Result<ClipSearch> {
    let (min, max) = super::scheme::min_max(x)?;
    search(
        min as f64,
        max as f64,
        |windows| {
            windows
                .iter()
                .map(|&w| {
                    Ok(Bounded {
                        mse: mse_on_values(x, w, bits)?,
                        err: 0.0,
                    })
                })
                .collect()
        },
        |lo, hi| mse_on_values(x, (lo, hi), bits),
    )
}

/// MMSE window per output channel (axis 0) of a weight tensor, bits per channel; channels
/// run in parallel, each independently, so the result does not depend on the thread count.
pub fn mmse_weights(w: &[f32], out_channels: usize, bits: &[u8]) -> Result<Vec<ClipSearch>> {
    if bits.len() != out_channels {
        return Err(Error::Quant(format!(
            "{} bit-widths for {out_channels} output channels",
            bits.len()
        )));
    }
    let rows: Vec<&[f32]> = weight_rows(w, out_channels)?.collect();
    rows.par_iter()
        .zip(bits.par_iter())
        .map(|(row, &b)| mmse_values(row, b))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_mse_of_uniform_bins_matches_step_squared_over_12() {
        // Values uniform on [0, 15], quantizer with step 1 and levels at the integers:
        // interior error is 1/12 per value; the half cells at both ends contribute 1/12 too.
        let hist = Histogram {
            lo: 0.0,
            hi: 15.0,
            counts: vec![10; 150],
        };
        let mse = mse_on_histogram(&hist, (0.0, 15.0), 4, Activation::None).unwrap();
        assert!((mse - 1.0 / 12.0).abs() < 1e-12, "{mse}");
    }

    #[test]
    fn relu_mass_below_zero_costs_nothing() {
        let hist = Histogram {
            lo: -4.0,
            hi: 0.0,
            counts: vec![5; 8],
        };
        let mse = mse_on_histogram(&hist, (0.0, 1.0), 2, Activation::Relu).unwrap();
        assert_eq!(mse, 0.0);
    }
}
