//! `mmse`: MMSE clip search over per-channel histograms on the GPU (`shaders/mmse.wgsl`);
//! the candidate windows, quantizer and expected-MSE formula are those of the CPU twin
//! [`crate::engine::cpu::mmse`] (there in f64, here in f32).
//!
//! `mmse_curve`: one workgroup per (channel, candidate) sums `n_i·(x_i − Q(x_i))²` and
//! `n_i` over the bins (strided, then a fixed-order tree) → `curve[c][j]`.
//! `mmse_select`: per channel, the first minimum in grid order → `best[c]`.
//! Per tensor = a one-channel histogram. Bindings: 0 counts `[C][bins]` u32, 1 ranges
//! `vec2(lo, hi)`, 2 bits u32, 3 grid f32 → 4 curve `[C][K]` f32, 5 best `[C]` u32 →
//! 6 [`MmseParams`].

use bytemuck::{Pod, Zeroable};

use crate::engine::cpu::mmse::{choices, validate, MmseChoice};
use crate::engine::device::buffers::{self, u32_of};
use crate::engine::device::context::{GpuContext, KernelSpec, Slot};
use crate::error::Result;

pub const SOURCE: &str = include_str!("../../../shaders/mmse.wgsl");
const SLOTS: [Slot; 7] = [
    Slot::Input,
    Slot::Input,
    Slot::Input,
    Slot::Input,
    Slot::Output,
    Slot::Output,
    Slot::Params,
];

/// Uniform twin of the WGSL `Params` struct.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct MmseParams {
    pub channels: u32,
    pub bins: u32,
    pub k: u32,
    pub _pad: u32,
}
const _: () = assert!(std::mem::size_of::<MmseParams>() == 16);

/// The curve of every candidate and the chosen clip per channel.
#[derive(Clone, Debug, PartialEq)]
pub struct MmseResult {
    /// `[channels][grid.len()]` expected squared error per value.
    pub curve: Vec<f32>,
    pub choices: Vec<MmseChoice>,
}

/// Records the curve and selection passes. `inputs` = counts, ranges, bits, grid.
pub fn mmse_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    inputs: [&wgpu::Buffer; 4],
    curve: &wgpu::Buffer,
    best: &wgpu::Buffer,
    params: MmseParams,
) -> Result<()> {
    let (c, b, k) = (
        params.channels as usize,
        params.bins as usize,
        params.k as usize,
    );
    buffers::check_len("mmse counts", inputs[0], c * b)?;
    buffers::check_len("mmse ranges", inputs[1], 2 * c)?;
    buffers::check_len("mmse bits", inputs[2], c)?;
    buffers::check_len("mmse grid", inputs[3], k)?;
    buffers::check_len("mmse curve", curve, c * k)?;
    buffers::check_len("mmse best", best, c)?;
    let pbuf = buffers::uniform(ctx, "mmse params", &params);
    for (entry, groups) in [
        ("mmse_curve", buffers::fold(ctx, (c * k) as u64)?),
        ("mmse_select", buffers::fold(ctx, c.div_ceil(64) as u64)?),
    ] {
        let kernel = ctx.kernel(&KernelSpec {
            name: "mmse",
            source: SOURCE,
            entry,
            slots: &SLOTS,
            constants: &[],
            workgroup_bytes: 256 * 8,
        })?;
        let [counts, ranges, bits, grid] = inputs;
        let bg = buffers::bind(
            ctx,
            &kernel,
            &[counts, ranges, bits, grid, curve, best, &pbuf],
        )?;
        buffers::dispatch(enc, &kernel, &bg, groups);
    }
    Ok(())
}

/// MMSE search over host histograms (`counts` `[C][bins]` over `ranges`), bit-widths per
/// channel and a grid of clip fractions.
pub fn mmse_search(
    ctx: &GpuContext,
    counts: &[u32],
    ranges: &[(f32, f32)],
    bins: u32,
    bits: &[u32],
    grid: &[f32],
) -> Result<MmseResult> {
    validate(counts, ranges, bins, bits, grid)?;
    let c = ranges.len();
    let params = MmseParams {
        channels: u32_of("channels", c)?,
        bins,
        k: u32_of("grid", grid.len())?,
        _pad: 0,
    };
    let table: Vec<[f32; 2]> = ranges.iter().map(|&(lo, hi)| [lo, hi]).collect();
    let inputs = [
        buffers::upload(ctx, "mmse counts", counts),
        buffers::upload(ctx, "mmse ranges", &table),
        buffers::upload(ctx, "mmse bits", bits),
        buffers::upload(ctx, "mmse grid", grid),
    ];
    let curve = buffers::filled(ctx, "mmse curve", c * grid.len(), buffers::SENTINEL_F32);
    let best = buffers::filled(ctx, "mmse best", c, buffers::SENTINEL_U32);
    let mut enc = ctx.encoder("mmse");
    let [a, b, d, e] = &inputs;
    mmse_encode(ctx, &mut enc, [a, b, d, e], &curve, &best, params)?;
    ctx.submit(enc)?;
    let curve: Vec<f32> = buffers::read(ctx, &curve, c * grid.len())?;
    let best: Vec<u32> = buffers::read(ctx, &best, c)?;
    let best: Vec<usize> = best.iter().map(|&j| j as usize).collect();
    if let Some(&j) = best.iter().find(|&&j| j >= grid.len()) {
        return Err(crate::Error::Gpu(format!(
            "mmse_select wrote index {j} of {}",
            grid.len()
        )));
    }
    let wide: Vec<f64> = curve.iter().map(|&v| v as f64).collect();
    Ok(MmseResult {
        choices: choices(&wide, &best, ranges, grid),
        curve,
    })
}
