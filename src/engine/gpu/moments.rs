//! `moments`: per-channel min, max, mean, mean absolute deviation and std on the GPU
//! (`shaders/moments.wgsl`); semantics of the CPU twin [`crate::engine::cpu::moments`]
//! (population std, mad = mean |x − mean|).
//!
//! Input `[outer, channels, inner]` ([`ChannelLayout`]; NCHW: N, C, H·W). Deterministic
//! two-pass reduction, no float atomics:
//! 1. `moments_pass1`: one workgroup per (image, channel, segment of ≤ [`SEG_LEN`] values):
//!    strided per-invocation min/max/sum, then a fixed-order 256-way tree → a partial.
//! 2. `moments_final1`: per channel, partials in (image, segment) order → min, max, mean.
//! 3. `moments_pass2` / `moments_final2`: the same for Σ|x − mean| and Σ(x − mean)².
//!
//! Sums are f32; [`crate::engine::cpu::moments`] is f64. Bindings: 0 x → 1 partials
//! (`vec4` per (channel, image, segment)), 2 stats (`[channels][5]`: min, max, mean, mad,
//! std) → 3 [`MomentsParams`]. Batches over the binding limit are bound in chunks of
//! images; partials are indexed by the global image.

use bytemuck::{Pod, Zeroable};

use crate::engine::cpu::moments::Moments;
use crate::engine::device::buffers::{self, u32_of};
use crate::engine::device::context::{GpuContext, KernelSpec, Slot};
use crate::engine::layout::ChannelLayout;
use crate::error::{Error, Result};

pub const SOURCE: &str = include_str!("../../../shaders/moments.wgsl");
const SLOTS: [Slot; 4] = [Slot::Input, Slot::Output, Slot::Output, Slot::Params];
/// Values per workgroup in the partial passes.
pub const SEG_LEN: usize = 16384;

/// Uniform twin of the WGSL `Params` struct.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct MomentsParams {
    pub n_chunk: u32,
    pub channels: u32,
    pub hw: u32,
    pub n_offset: u32,
    pub n_total: u32,
    pub segs: u32,
    pub seg_len: u32,
    pub _pad: u32,
}
const _: () = assert!(std::mem::size_of::<MomentsParams>() == 32);

/// One bound chunk of images: the buffer, the first image and the image count.
pub type Chunk<'a> = (&'a wgpu::Buffer, usize, usize);

/// Records both passes over `chunks` (covering all `layout.outer` images in order).
/// `partials` needs `16·channels·outer·⌈inner/SEG_LEN⌉` bytes, `stats` `5·channels` f32.
pub fn moments_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    chunks: &[Chunk<'_>],
    partials: &wgpu::Buffer,
    stats: &wgpu::Buffer,
    layout: &ChannelLayout,
) -> Result<()> {
    if layout.is_empty() {
        return Err(Error::Engine(format!("moments: empty layout {layout:?}")));
    }
    let segs = layout.inner.div_ceil(SEG_LEN);
    buffers::check_len(
        "moments partials",
        partials,
        4 * layout.channels * layout.outer * segs,
    )?;
    buffers::check_len("moments stats", stats, 5 * layout.channels)?;
    let first = chunks
        .first()
        .ok_or_else(|| Error::Engine("moments: no input chunks".into()))?
        .0;
    let base = MomentsParams {
        n_chunk: 0,
        channels: u32_of("channels", layout.channels)?,
        hw: u32_of("inner", layout.inner)?,
        n_offset: 0,
        n_total: u32_of("outer", layout.outer)?,
        segs: segs as u32,
        seg_len: SEG_LEN as u32,
        _pad: 0,
    };
    u32_of("moments values", layout.len())?;
    let kernel = |entry| {
        ctx.kernel(&KernelSpec {
            name: "moments",
            source: SOURCE,
            entry,
            slots: &SLOTS,
            constants: &[],
            workgroup_bytes: 256 * 16,
        })
    };
    let finals = buffers::fold(ctx, layout.channels.div_ceil(64) as u64)?;
    for (pass, fin) in [
        ("moments_pass1", "moments_final1"),
        ("moments_pass2", "moments_final2"),
    ] {
        let k = kernel(pass)?;
        for &(x, start, n) in chunks {
            buffers::check_len("moments x", x, n * layout.channels * layout.inner)?;
            let params = MomentsParams {
                n_chunk: u32_of("chunk", n)?,
                n_offset: start as u32,
                ..base
            };
            let pbuf = buffers::uniform(ctx, "moments params", &params);
            let bg = buffers::bind(ctx, &k, &[x, partials, stats, &pbuf])?;
            let groups = buffers::fold(ctx, (n * layout.channels * segs) as u64)?;
            buffers::dispatch(enc, &k, &bg, groups);
        }
        let k = kernel(fin)?;
        let pbuf = buffers::uniform(ctx, "moments params", &base);
        let bg = buffers::bind(ctx, &k, &[first, partials, stats, &pbuf])?;
        buffers::dispatch(enc, &k, &bg, finals);
    }
    Ok(())
}

/// Per-channel moments of host data `x` laid out as `layout`.
pub fn moments(ctx: &GpuContext, x: &[f32], layout: &ChannelLayout) -> Result<Vec<Moments>> {
    layout.check(x.len(), "moments input")?;
    let item = layout.channels * layout.inner;
    let ranges = buffers::batch_chunks(ctx, layout.outer, (item * 4) as u64)?;
    let bufs: Vec<wgpu::Buffer> = ranges
        .iter()
        .map(|r| buffers::upload(ctx, "moments x", &x[r.start * item..r.end * item]))
        .collect();
    let chunks: Vec<Chunk<'_>> = bufs
        .iter()
        .zip(&ranges)
        .map(|(b, r)| (b, r.start, r.len()))
        .collect();
    let segs = layout.inner.div_ceil(SEG_LEN);
    let partials = buffers::zeroed(
        ctx,
        "moments partials",
        (16 * layout.channels * layout.outer * segs) as u64,
    );
    let stats = buffers::filled(
        ctx,
        "moments stats",
        5 * layout.channels,
        buffers::SENTINEL_F32,
    );
    let mut enc = ctx.encoder("moments");
    moments_encode(ctx, &mut enc, &chunks, &partials, &stats, layout)?;
    ctx.submit(enc)?;
    let s: Vec<f32> = buffers::read(ctx, &stats, 5 * layout.channels)?;
    Ok(s.chunks(5)
        .map(|m| Moments {
            min: m[0],
            max: m[1],
            mean: m[2] as f64,
            mad: m[3] as f64,
            std: m[4] as f64,
        })
        .collect())
}
