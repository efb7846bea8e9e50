//! `mmse`: the planner's MMSE clip objective on the GPU (`shaders/mmse.wgsl`), an
//! [`MseEval`] for `quant::mmse`'s search: the same candidate quantizers (built on the host
//! by `QParams::from_range`, so `s`, `1/s`, `z` and `2^M − 1` are the planner's own), the same
//! exact per-bin integrals of `(act(x) − Q(act(x)))²` over (bin ∩ code cell) pieces
//! ([`crate::quant::mmse::mse_of_quantizer`] is the oracle), in f32 where the CPU uses f64.
//! The engine evaluates; the planner decides (`quant::mmse` module docs).
//!
//! `mmse_curve`: one workgroup per candidate sums, over the bins (strided, then a
//! fixed-order tree), `n_i·mean_i(e²)` and `n_i·max_i|e|`; the host divides by `N = Σ n_i`
//! (exact, u64). Bindings: 0 counts `[bins]` f32, 1 candidates `vec4(s, 1/s, z, 2^M − 1)`
//! → 2 sums `vec2` per candidate → 3 [`MmseParams`].
//!
//! The histogram is uploaded once per search ([`MseEval::begin`]) and stays on the device
//! for all of that search's batches (the grid, then one candidate per golden-section step).
//! Calibration merges per-batch device counts into u64 on the host, so the finished
//! histograms live there; they are not kept device-resident across stages.
//!
//! Error bound ([`error_bound`]), with u = 2⁻²⁴, R = max(|lo|, |hi|), w the bin width,
//! δ = 16uR (the f32 bin edges `lo + i·w` are within 7uR of the exact ones, two edges per
//! bin), Ē = Σ n_i·max_i|e| / N and m̂ = the estimate:
//! - moving a bin's edges by δ in all changes the mean of e² over it by at most
//!   `3·V·δ/(w − δ)` with V ≤ 2(E + δ)(w + δ) its variation (|d e²/dx| = 2|e|; e² is
//!   continuous across cells): `6δ(Ē + δ)(w + δ)/(w − δ)`, valid for w > 2δ; narrower bins get
//!   an infinite bound (every comparison is then re-decided exactly);
//! - a reconstruction `r = (q − z)·s` fused into `u − r` (FMA) moves e by ≤ u(R + s):
//!   `4u(R + s)(Ē + u(R + s))`; a cell boundary off by ≤ u(R + s) costs
//!   `≤ s·(u(R + s))²` per cell: `2u²(R + s)²(1 + 2s/w)`;
//! - rounding: each piece `(v − u)(dv² + dv·du + du²)/3` to 18u relative (the bracket is
//!   ≥ a third of its absolute terms), ≤ 2^M + 2 pieces per bin, the division, the count
//!   and the product, then a sum of depth `⌈bins/256⌉ + 8` of positive terms:
//!   `(2^M + ⌈bins/256⌉ + 30)·u·m̂`; the CPU's own f64 rounding `(bins + 2^M + 64)·2⁻⁵³·m̂`.
//!
//! The bound is twice the sum of these (for the f32 evaluation of Ē itself and of the
//! bound). `tests/gpu_parity` checks it against the CPU curve.

use bytemuck::{Pod, Zeroable};

use crate::engine::device::buffers::{self, u32_of};
use crate::engine::device::context::{GpuContext, KernelSpec, Slot};
use crate::error::{Error, Result};
use crate::graph::Activation;
use crate::quant::mmse::{Bounded, MseEval};
use crate::quant::stats::Histogram;
use crate::quant::QParams;

pub const SOURCE: &str = include_str!("../../../shaders/mmse.wgsl");
const SLOTS: [Slot; 4] = [Slot::Input, Slot::Input, Slot::Output, Slot::Params];
/// f32 unit roundoff.
const U: f64 = f32::EPSILON as f64 / 2.0;

/// Uniform twin of the WGSL `Params` struct.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct MmseParams {
    pub bins: u32,
    pub cands: u32,
    /// 0 none, 1 ReLU, 2 ReLU6.
    pub act: u32,
    pub _pad: u32,
    pub lo: f32,
    /// `(hi − lo) / bins` in f32.
    pub width: f32,
    pub _pad2: [f32; 2],
}
const _: () = assert!(std::mem::size_of::<MmseParams>() == 32);

/// The candidate table the kernel binds: `[s, 1/s, z, 2^M − 1]` per quantizer.
pub fn cand_table(cands: &[QParams]) -> Vec<[f32; 4]> {
    cands
        .iter()
        .map(|p| [p.scale, p.inv_scale(), p.zero_point as f32, p.qmax() as f32])
        .collect()
}

/// Records the objective sums of `cands.len()` candidates (`table`, [`cand_table`]) over the
/// histogram `counts` into `sums` (2 f32 per candidate).
pub fn mmse_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    counts: &wgpu::Buffer,
    table: &wgpu::Buffer,
    sums: &wgpu::Buffer,
    params: MmseParams,
) -> Result<()> {
    let (b, k) = (params.bins as usize, params.cands as usize);
    buffers::check_len("mmse counts", counts, b)?;
    buffers::check_len("mmse candidates", table, 4 * k)?;
    buffers::check_len("mmse sums", sums, 2 * k)?;
    let spec = KernelSpec {
        name: "mmse",
        source: SOURCE,
        entry: "mmse_curve",
        slots: &SLOTS,
        constants: &[],
        workgroup_bytes: 256 * 8,
    };
    buffers::launch(ctx, enc, &spec, &[counts, table, sums], &params, k as u64)
}

/// Absolute bound on `|GPU objective − CPU objective|` for one candidate (module docs).
/// `sums` are the kernel's two sums, `total` = Σ n_i.
pub fn error_bound(hist: &Histogram, p: &QParams, sums: [f32; 2], total: f64) -> f64 {
    let bins = hist.counts.len() as f64;
    let r = hist.lo.abs().max(hist.hi.abs());
    let w = (hist.hi - hist.lo) / bins;
    let s = p.scale as f64;
    let est = sums[0] as f64 / total;
    let ebar = sums[1] as f64 / total;
    let delta = 16.0 * U * r;
    let edges = if hist.hi == hist.lo {
        0.0
    } else if w > 2.0 * delta {
        6.0 * delta * (ebar + delta) * (w + delta) / (w - delta)
    } else {
        return f64::INFINITY;
    };
    let rs = U * (r + s);
    let fma = 4.0 * rs * (ebar + rs);
    let split = if w > 0.0 {
        2.0 * rs * rs * (1.0 + 2.0 * s / w)
    } else {
        0.0
    };
    let levels = (p.qmax().max(0) + 1) as f64;
    let depth = bins / 256.0 + 9.0;
    let rounding = (levels + depth + 30.0) * U * est;
    let f64_rounding = (bins + levels + 64.0) * f64::EPSILON / 2.0 * est;
    2.0 * (edges + fma + split + rounding) + f64_rounding
}

/// The objective of every candidate on one histogram already on the device: estimates
/// with their bounds.
pub fn mmse_curve(
    ctx: &GpuContext,
    hist: &Histogram,
    counts: &wgpu::Buffer,
    act: Activation,
    cands: &[QParams],
) -> Result<Vec<Bounded>> {
    let total = hist.total();
    if total == 0 {
        return Err(Error::Quant("MSE on an empty histogram".into()));
    }
    let k = cands.len();
    let params = MmseParams {
        bins: u32_of("mmse bins", hist.counts.len())?,
        cands: u32_of("mmse candidates", k)?,
        act: match act {
            Activation::None => 0,
            Activation::Relu => 1,
            Activation::Relu6 => 2,
        },
        _pad: 0,
        lo: hist.lo as f32,
        width: (hist.hi as f32 - hist.lo as f32) / hist.counts.len() as f32,
        _pad2: [0.0; 2],
    };
    let table = buffers::upload(ctx, "mmse candidates", &cand_table(cands));
    let sums = buffers::filled(ctx, "mmse sums", 2 * k, buffers::SENTINEL_F32);
    let mut enc = ctx.encoder("mmse");
    mmse_encode(ctx, &mut enc, counts, &table, &sums, params)?;
    ctx.submit(enc)?;
    let sums: Vec<[f32; 2]> = buffers::read(ctx, &sums, 2 * k)?
        .chunks(2)
        .map(|c: &[f32]| [c[0], c[1]])
        .collect();
    let total = total as f64;
    sums.iter()
        .zip(cands)
        .map(|(&s, p)| {
            if !(s[0].is_finite() && s[1].is_finite()) {
                return Err(Error::Gpu(format!("mmse_curve wrote {s:?}")));
            }
            Ok(Bounded {
                mse: s[0] as f64 / total,
                err: error_bound(hist, p, s, total),
            })
        })
        .collect()
}

/// [`MseEval`] on the GPU: uploads each search's histogram once, then evaluates batches.
pub struct GpuMse<'a> {
    ctx: &'a GpuContext,
    counts: Option<wgpu::Buffer>,
}

impl<'a> GpuMse<'a> {
    pub fn new(ctx: &'a GpuContext) -> Self {
        GpuMse { ctx, counts: None }
    }
}

impl MseEval for GpuMse<'_> {
    fn begin(&mut self, hist: &Histogram) -> Result<()> {
        // Counts as f32 (exact below 2^24, else within u relative: in the bound).
        let counts: Vec<f32> = hist.counts.iter().map(|&n| n as f32).collect();
        self.counts = Some(buffers::upload(self.ctx, "mmse counts", &counts));
        Ok(())
    }

    fn mse(
        &mut self,
        hist: &Histogram,
        act: Activation,
        cands: &[QParams],
    ) -> Result<Vec<Bounded>> {
        let counts = self
            .counts
            .as_ref()
            .ok_or_else(|| Error::Gpu("mmse: no histogram uploaded (begin)".into()))?;
        mmse_curve(self.ctx, hist, counts, act, cands)
    }
}
