//! `plane_stats`: per-plane partial statistics for device calibration
//! (`shaders/plane_stats.wgsl`), the small partials that `quant::stats::StatsAccumulator`
//! merges on the host (`merge_device_pass1` / `merge_device_pass2`).
//!
//! A plane is one (image, channel) slice of `hw` contiguous values (NCHW: `planes = N·C`;
//! `[N, F]`: `hw = 1`). One workgroup per plane, strided per-invocation f32 partials, then a
//! fixed-order 256-way tree: deterministic, no float atomics.
//! - `plane_moments` (pass 1): with the pivot `p = x[plane·hw]` (the plane's first value)
//!   and `d = x − p`: `(Σd, Σd², min, max)` and `(p, 0, 0, 0)`, two `vec4` per plane. The
//!   shift keeps Σd² accurate when |mean| ≫ σ; the host rebuilds
//!   `sum = hw·p + Σd`, `sumsq = Σd² + 2p·Σd + hw·p²` in f64 ([`PlaneMoments::row`]).
//! - `plane_abs_dev` (pass 2): `(Σ|x − m_c|, Σ|x − m_t|, 0, 0)` per plane, channel
//!   `c = plane % channels`, means `[m_0 … m_{C−1}, m_t]` bound at 1 as f32 heads
//!   followed by f32 tails (`m = head + tail`, [`split_means`]); each term is
//!   `|(x − head) − tail|`, so the means are not rounded to f32 (that would shift every
//!   deviation of a channel the same way: up to 6e-8·|m|, much of b when |m| ≫ b).
//!
//! Bindings: 0 x, 1 means → 2 out → 3 [`PlaneStatsParams`]. The CPU twins
//! ([`plane_moments_cpu`], [`plane_abs_dev_cpu`]) compute the same quantities in f64: the
//! device sums are f32, equal to them within f32 summation error.

use bytemuck::{Pod, Zeroable};

use crate::engine::device::buffers::{self, u32_of};
use crate::engine::device::context::{GpuContext, KernelSpec, Slot};
use crate::error::{Error, Result};
use crate::quant::stats::MOMENT_FIELDS;

pub const SOURCE: &str = include_str!("../../../shaders/plane_stats.wgsl");
const SLOTS: [Slot; 4] = [Slot::Input, Slot::Input, Slot::Output, Slot::Params];

/// Uniform twin of the WGSL `Params` struct.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct PlaneStatsParams {
    pub planes: u32,
    pub hw: u32,
    pub channels: u32,
    pub _pad: u32,
}
const _: () = assert!(std::mem::size_of::<PlaneStatsParams>() == 16);

/// Pass-1 partial of one plane (module docs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlaneMoments {
    pub pivot: f64,
    pub sum_d: f64,
    pub sum_d2: f64,
    pub min: f64,
    pub max: f64,
}

impl PlaneMoments {
    /// From the kernel's two `vec4`.
    pub fn from_device(v: &[[f32; 4]; 2]) -> Self {
        PlaneMoments {
            sum_d: v[0][0] as f64,
            sum_d2: v[0][1] as f64,
            min: v[0][2] as f64,
            max: v[0][3] as f64,
            pivot: v[1][0] as f64,
        }
    }

    /// Σx over the plane's `hw` values.
    pub fn sum(&self, hw: usize) -> f64 {
        hw as f64 * self.pivot + self.sum_d
    }

    /// The pass-1 row `[count, sum, sumsq, min, max]` of `quant::stats`.
    pub fn row(&self, hw: usize) -> [f64; MOMENT_FIELDS] {
        let n = hw as f64;
        let p = self.pivot;
        [
            n,
            self.sum(hw),
            self.sum_d2 + 2.0 * p * self.sum_d + n * p * p,
            self.min,
            self.max,
        ]
    }
}

fn check(what: &str, x: &[f32], hw: usize) -> Result<usize> {
    if hw == 0 || x.is_empty() || !x.len().is_multiple_of(hw) {
        return Err(Error::Engine(format!(
            "{what}: {} values do not split into planes of {hw}",
            x.len()
        )));
    }
    Ok(x.len() / hw)
}

/// CPU twin of `plane_moments` (f64 sums).
pub fn plane_moments_cpu(x: &[f32], hw: usize) -> Result<Vec<PlaneMoments>> {
    check("plane_moments", x, hw)?;
    Ok(x.chunks(hw)
        .map(|pl| {
            let p = pl[0] as f64;
            let mut m = PlaneMoments {
                pivot: p,
                sum_d: 0.0,
                sum_d2: 0.0,
                min: f64::INFINITY,
                max: f64::NEG_INFINITY,
            };
            for &v in pl {
                let d = v as f64 - p;
                m.sum_d += d;
                m.sum_d2 += d * d;
                m.min = m.min.min(v as f64);
                m.max = m.max.max(v as f64);
            }
            m
        })
        .collect())
}

/// CPU twin of `plane_abs_dev`: per plane (Σ|x − m_c|, Σ|x − m_t|) in f64 with the f32
/// means the kernel binds.
pub fn plane_abs_dev_cpu(x: &[f32], hw: usize, means: &[f64]) -> Result<Vec<[f64; 2]>> {
    check("plane_abs_dev", x, hw)?;
    let c = channels_of(means)?;
    let mt = means[c];
    Ok(x.chunks(hw)
        .enumerate()
        .map(|(i, pl)| {
            let mc = means[i % c];
            pl.iter().fold([0.0, 0.0], |[a, b], &v| {
                [a + (v as f64 - mc).abs(), b + (v as f64 - mt).abs()]
            })
        })
        .collect())
}

/// The device layout of f64 means: all f32 heads, then all f32 tails (`m − head`).
pub fn split_means(means: &[f64]) -> Vec<f32> {
    let heads: Vec<f32> = means.iter().map(|&m| m as f32).collect();
    let tails = means
        .iter()
        .zip(&heads)
        .map(|(&m, &h)| (m - h as f64) as f32);
    heads.iter().copied().chain(tails).collect()
}

/// `C` from the `C + 1` means (at least one channel).
fn channels_of<T>(means: &[T]) -> Result<usize> {
    match means.len() {
        0 | 1 => Err(Error::Engine(format!(
            "plane_abs_dev: {} means; need the channel means and the tensor mean",
            means.len()
        ))),
        n => Ok(n - 1),
    }
}

fn kernel(
    ctx: &GpuContext,
    entry: &'static str,
) -> Result<std::sync::Arc<crate::engine::device::Kernel>> {
    ctx.kernel(&KernelSpec {
        name: "plane_stats",
        source: SOURCE,
        entry,
        slots: &SLOTS,
        constants: &[],
        workgroup_bytes: 256 * 16,
    })
}

/// Records `plane_moments` over `planes` planes of `hw` values; `out` needs `32·planes`
/// bytes.
pub fn plane_moments_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    x: &wgpu::Buffer,
    out: &wgpu::Buffer,
    planes: usize,
    hw: usize,
) -> Result<()> {
    buffers::check_len("plane_moments x", x, planes * hw)?;
    buffers::check_len("plane_moments out", out, 8 * planes)?;
    let params = PlaneStatsParams {
        planes: u32_of("planes", planes)?,
        hw: u32_of("plane size", hw)?,
        channels: 1,
        _pad: 0,
    };
    u32_of("plane_moments values", planes * hw)?;
    let k = kernel(ctx, "plane_moments")?;
    let pbuf = buffers::uniform(ctx, "plane_stats params", &params);
    // Binding 1 is unused by this entry point: x stands in (both bindings read-only).
    let bg = buffers::bind(ctx, &k, &[x, x, out, &pbuf])?;
    buffers::dispatch(enc, &k, &bg, buffers::fold(ctx, planes as u64)?);
    Ok(())
}

/// Records `plane_abs_dev`; `means` holds `channels + 1` f32, `out` needs `16·planes` bytes.
#[allow(clippy::too_many_arguments)]
pub fn plane_abs_dev_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    x: &wgpu::Buffer,
    means: &wgpu::Buffer,
    out: &wgpu::Buffer,
    planes: usize,
    channels: usize,
    hw: usize,
) -> Result<()> {
    buffers::check_len("plane_abs_dev x", x, planes * hw)?;
    buffers::check_len("plane_abs_dev means", means, 2 * (channels + 1))?;
    buffers::check_len("plane_abs_dev out", out, 4 * planes)?;
    let params = PlaneStatsParams {
        planes: u32_of("planes", planes)?,
        hw: u32_of("plane size", hw)?,
        channels: u32_of("channels", channels.max(1))?,
        _pad: 0,
    };
    u32_of("plane_abs_dev values", planes * hw)?;
    let k = kernel(ctx, "plane_abs_dev")?;
    let pbuf = buffers::uniform(ctx, "plane_stats params", &params);
    let bg = buffers::bind(ctx, &k, &[x, means, out, &pbuf])?;
    buffers::dispatch(enc, &k, &bg, buffers::fold(ctx, planes as u64)?);
    Ok(())
}

/// `plane_moments` of host data (one binding: for tests and small inputs).
pub fn plane_moments(ctx: &GpuContext, x: &[f32], hw: usize) -> Result<Vec<PlaneMoments>> {
    let planes = check("plane_moments", x, hw)?;
    let xb = buffers::upload(ctx, "plane_moments x", x);
    let out = buffers::filled(ctx, "plane_moments out", 8 * planes, buffers::SENTINEL_F32);
    let mut enc = ctx.encoder("plane_moments");
    plane_moments_encode(ctx, &mut enc, &xb, &out, planes, hw)?;
    ctx.submit(enc)?;
    let v: Vec<[f32; 4]> = buffers::read(ctx, &out, 2 * planes)?;
    Ok(v.chunks(2)
        .map(|p| PlaneMoments::from_device(&[p[0], p[1]]))
        .collect())
}

/// `plane_abs_dev` of host data (one binding: for tests and small inputs).
pub fn plane_abs_dev(
    ctx: &GpuContext,
    x: &[f32],
    hw: usize,
    means: &[f64],
) -> Result<Vec<[f64; 2]>> {
    let planes = check("plane_abs_dev", x, hw)?;
    let channels = channels_of(means)?;
    let xb = buffers::upload(ctx, "plane_abs_dev x", x);
    let mb = buffers::upload(ctx, "plane_abs_dev means", &split_means(means));
    let out = buffers::filled(ctx, "plane_abs_dev out", 4 * planes, buffers::SENTINEL_F32);
    let mut enc = ctx.encoder("plane_abs_dev");
    plane_abs_dev_encode(ctx, &mut enc, &xb, &mb, &out, planes, channels, hw)?;
    ctx.submit(enc)?;
    let v: Vec<[f32; 4]> = buffers::read(ctx, &out, planes)?;
    Ok(v.iter().map(|p| [p[0] as f64, p[1] as f64]).collect())
}
