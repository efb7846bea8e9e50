//! `pool`: max, average and global-average pooling on the GPU (`shaders/pool.wgsl`).
//!
//! Layout x `[N, C, H, W]` → y `[N, C, OH, OW]` (global: `[N, C, 1, 1]`), f32.
//! `max_pool`: max over the in-bounds part of each window (padding ignored; −∞ for a window
//! entirely in padding). `avg_pool`: f32 sum of the in-bounds elements in row-major window
//! order divided by their count (TF "SAME" semantics; 0 for an empty window), or by kh·kw
//! with `Pool::count_include_pad` (`PoolParams::divisor`).
//! `global_avg_pool`: for planes of more than [`GLOBAL_SMALL_HW`] values one workgroup per
//! plane, strided per-invocation partial sums, a fixed-order tree over 256 partials, then
//! `/ (H·W)`; smaller planes (the 7×7 head) one invocation per plane summing in index
//! order (a 256-wide workgroup per 49 values wastes most of it). Deterministic either way.
//! Bindings: 0 x → 1 y → 2 [`PoolParams`]. CPU oracle: `engine::cpu::reference`.

use bytemuck::{Pod, Zeroable};

use crate::engine::device::buffers::{self, u32_of};
use crate::engine::device::context::{GpuContext, KernelSpec, Slot};
use crate::error::{Error, Result};
use crate::graph::Pool;
use crate::tensor::Tensor;

pub const SOURCE: &str = include_str!("../../../shaders/pool.wgsl");
const SLOTS: [Slot; 3] = [Slot::Input, Slot::Output, Slot::Params];
/// Largest H·W summed by one invocation in `global_avg_pool`.
pub const GLOBAL_SMALL_HW: usize = 256;

/// Uniform twin of the WGSL `Params` struct.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct PoolParams {
    pub planes: u32,
    pub h: u32,
    pub w: u32,
    pub oh: u32,
    pub ow: u32,
    pub kh: u32,
    pub kw: u32,
    pub stride_h: u32,
    pub stride_w: u32,
    pub pad_t: u32,
    pub pad_l: u32,
    pub total: u32,
    /// Average pooling: 0 to divide by the in-bounds count, else by this (kh·kw,
    /// `count_include_pad`).
    pub divisor: u32,
    pub pad: [u32; 3],
}
const _: () = assert!(std::mem::size_of::<PoolParams>() == 64);

/// Which pooling an entry point computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    Avg,
    GlobalAvg,
}

impl PoolKind {
    fn entry(self, hw: usize) -> &'static str {
        match self {
            PoolKind::Max => "max_pool",
            PoolKind::Avg => "avg_pool",
            PoolKind::GlobalAvg if hw <= GLOBAL_SMALL_HW => "global_avg_pool_small",
            PoolKind::GlobalAvg => "global_avg_pool",
        }
    }
}

#[allow(clippy::too_many_arguments)]
/// Records pooling of `planes = N·C` planes of `h × w` (`p` is ignored for `GlobalAvg`).
pub fn pool_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    kind: PoolKind,
    planes: usize,
    (h, w): (usize, usize),
    p: &Pool,
) -> Result<()> {
    let (oh, ow) = out_hw(kind, p, h, w)?;
    buffers::check_len("pool x", x, planes * h * w)?;
    buffers::check_len("pool y", y, planes * oh * ow)?;
    let total = planes * oh * ow;
    let params = PoolParams {
        planes: u32_of("planes", planes)?,
        h: u32_of("height", h)?,
        w: u32_of("width", w)?,
        oh: oh as u32,
        ow: ow as u32,
        kh: u32_of("kernel", p.kernel[0])?,
        kw: u32_of("kernel", p.kernel[1])?,
        stride_h: u32_of("stride", p.stride[0])?,
        stride_w: u32_of("stride", p.stride[1])?,
        pad_t: u32_of("padding", p.padding[0])?,
        pad_l: u32_of("padding", p.padding[1])?,
        total: u32_of("pool outputs", total)?,
        divisor: if p.count_include_pad && kind == PoolKind::Avg {
            u32_of("kernel area", p.kernel[0] * p.kernel[1])?
        } else {
            0
        },
        pad: [0; 3],
    };
    let entry = kind.entry(h * w);
    let spec = KernelSpec {
        name: "pool",
        source: SOURCE,
        entry,
        slots: &SLOTS,
        constants: &[],
        workgroup_bytes: if entry == "global_avg_pool" { 1024 } else { 0 },
    };
    let groups = match entry {
        "global_avg_pool" => planes,
        "global_avg_pool_small" => planes.div_ceil(64),
        _ => total.div_ceil(256),
    };
    buffers::launch(ctx, enc, &spec, &[x, y], &params, groups as u64)
}

fn out_hw(kind: PoolKind, p: &Pool, h: usize, w: usize) -> Result<(usize, usize)> {
    if kind == PoolKind::GlobalAvg {
        return Ok((1, 1));
    }
    p.out_hw(h, w)
        .ok_or_else(|| Error::Engine(format!("pool: window {:?} does not fit {h}×{w}", p.kernel)))
}

fn run(ctx: &GpuContext, x: &Tensor, kind: PoolKind, p: &Pool) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (oh, ow) = out_hw(kind, p, h, w)?;
    let (in_item, out_item) = (c * h * w, c * oh * ow);
    let mut out = Tensor::zeros(&[n, c, oh, ow]);
    for r in buffers::batch_chunks(ctx, n, (in_item.max(out_item) * 4) as u64)? {
        let m = r.len();
        let xb = buffers::upload(ctx, "pool x", &x.data[r.start * in_item..r.end * in_item]);
        let yb = buffers::filled(ctx, "pool y", m * out_item, buffers::SENTINEL_F32);
        let mut enc = ctx.encoder("pool");
        pool_encode(ctx, &mut enc, &xb, &yb, kind, m * c, (h, w), p)?;
        ctx.submit(enc)?;
        let y: Vec<f32> = buffers::read(ctx, &yb, m * out_item)?;
        out.data[r.start * out_item..r.end * out_item].copy_from_slice(&y);
    }
    Ok(out)
}

/// Max pooling of an NCHW tensor.
pub fn max_pool(ctx: &GpuContext, x: &Tensor, p: &Pool) -> Result<Tensor> {
    run(ctx, x, PoolKind::Max, p)
}

/// Average pooling (in-bounds elements only) of an NCHW tensor.
pub fn avg_pool(ctx: &GpuContext, x: &Tensor, p: &Pool) -> Result<Tensor> {
    run(ctx, x, PoolKind::Avg, p)
}

/// Mean over H×W: `[N, C, 1, 1]`.
pub fn global_avg_pool(ctx: &GpuContext, x: &Tensor) -> Result<Tensor> {
    let unit = Pool {
        kernel: [1, 1],
        stride: [1, 1],
        padding: [0; 4],
        count_include_pad: false,
    };
    run(ctx, x, PoolKind::GlobalAvg, &unit)
}
