//! `histogram`: per-channel histograms on the GPU (`shaders/histogram.wgsl`), counts equal
//! to the CPU twin [`crate::engine::cpu::histogram`] exactly: both bin by [`Binning`] (the
//! one bin rule, `quant::stats`), here with its host-computed `inv_width` in the table.
//!
//! Input `[outer, channels, inner]` ([`ChannelLayout`]; per tensor: one channel). One
//! workgroup per (image, channel, segment of ≤ [`SEG_LEN`] values) counts into
//! `bins ≤ MAX_BINS` u32 atomics in workgroup memory (8 KiB), then adds its non-zero bins to
//! the global counts with u32 atomics: integer sums, so the result is order-independent.
//! Bindings: 0 x, 1 ranges (`vec2(lo, inv_width)` per channel, [`range_table`]) → 2 counts (`[channels][bins]` u32,
//! zeroed by the host, accumulated across chunks) → 3 [`HistogramParams`].

use bytemuck::{Pod, Zeroable};

use crate::engine::cpu::histogram::{validate, MAX_BINS};
use crate::engine::device::buffers::{self, u32_of};
use crate::engine::device::context::{GpuContext, KernelSpec, Slot};
use crate::engine::layout::ChannelLayout;
use crate::error::Result;
use crate::quant::stats::Binning;

pub const SOURCE: &str = include_str!("../../../shaders/histogram.wgsl");
const SLOTS: [Slot; 4] = [Slot::Input, Slot::Input, Slot::Output, Slot::Params];
/// Values per workgroup.
pub const SEG_LEN: usize = 16384;

/// Uniform twin of the WGSL `Params` struct.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct HistogramParams {
    pub n_chunk: u32,
    pub channels: u32,
    pub hw: u32,
    pub bins: u32,
    pub segs: u32,
    pub seg_len: u32,
    pub _pad: [u32; 2],
}
const _: () = assert!(std::mem::size_of::<HistogramParams>() == 32);

/// The range table the kernel binds: `(lo, inv_width)` per channel.
pub fn range_table(binning: &[Binning]) -> Vec<[f32; 2]> {
    binning.iter().map(|b| [b.lo, b.inv_width]).collect()
}

/// Records the counting of `n` images (`x` holds `n·channels·inner` values) into `counts`.
#[allow(clippy::too_many_arguments)]
pub fn histogram_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    x: &wgpu::Buffer,
    table: &wgpu::Buffer,
    counts: &wgpu::Buffer,
    n: usize,
    layout: &ChannelLayout,
    bins: u32,
) -> Result<()> {
    buffers::check_len("histogram x", x, n * layout.channels * layout.inner)?;
    buffers::check_len("histogram ranges", table, 2 * layout.channels)?;
    buffers::check_len("histogram counts", counts, layout.channels * bins as usize)?;
    let segs = layout.inner.div_ceil(SEG_LEN).max(1);
    let params = HistogramParams {
        n_chunk: u32_of("chunk", n)?,
        channels: u32_of("channels", layout.channels)?,
        hw: u32_of("inner", layout.inner)?,
        bins,
        segs: segs as u32,
        seg_len: SEG_LEN as u32,
        _pad: [0; 2],
    };
    u32_of("histogram values", n * layout.channels * layout.inner)?;
    let spec = KernelSpec {
        name: "histogram",
        source: SOURCE,
        entry: "histogram",
        slots: &SLOTS,
        constants: &[],
        workgroup_bytes: MAX_BINS * 4,
    };
    let groups = (n * layout.channels * segs) as u64;
    buffers::launch(ctx, enc, &spec, &[x, table, counts], &params, groups)
}

/// Counts `[channels][bins]` of host data `x` over per-channel `ranges`.
pub fn histogram(
    ctx: &GpuContext,
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
    let table = buffers::upload(ctx, "histogram ranges", &range_table(&binning));
    let len = layout.channels * bins as usize;
    let counts = buffers::zeroed(ctx, "histogram counts", (len * 4) as u64);
    let item = layout.channels * layout.inner;
    let mut enc = ctx.encoder("histogram");
    let mut keep = Vec::new();
    for r in buffers::batch_chunks(ctx, layout.outer, (item * 4) as u64)? {
        let xb = buffers::upload(ctx, "histogram x", &x[r.start * item..r.end * item]);
        histogram_encode(ctx, &mut enc, &xb, &table, &counts, r.len(), layout, bins)?;
        keep.push(xb);
    }
    ctx.submit(enc)?;
    buffers::read(ctx, &counts, len)
}
