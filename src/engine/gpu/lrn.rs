//! `lrn`: local response normalization across channels on the GPU (`shaders/lrn.wgsl`).
//!
//! - `lrn`: f32 `[N, C, plane]` → f32, x · pow(bias + (alpha/size) · Σ x², −beta), the sum
//!   in channel order over `graph::op::lrn_window` (CPU twin: `engine::cpu::lrn`; `pow` on
//!   the device, so equal within f32 tolerance, not bit for bit).
//! - `lrn_int`: NHWC code words (`conv_int` layout) → words; `lrn_exact`: f32 centred codes
//!   (`conv_exact` layout) → centred codes. Both are `requant::lrn_code` bit for bit: the
//!   exact sum S = Σ (q − z)² (i32, or f32 of exact integers) indexes the host table of
//!   `requant::lrn_table`, so no power or division runs on the device.
//!
//! Bindings: 0 x → 1 table (f32; `lrn` binds x) → 2 y → 3 [`LrnParams`].

use bytemuck::{Pod, Zeroable};

use super::conv_int::words_per_pixel;
use crate::engine::device::buffers::{self, u32_of};
use crate::engine::device::context::{GpuContext, KernelSpec, Slot};
use crate::engine::requant::QUANTIZE_DIVIDES;
use crate::error::Result;
use crate::quant::QParams;

pub const SOURCE: &str = include_str!("../../../shaders/lrn.wgsl");
const SLOTS: [Slot; 4] = [Slot::Input, Slot::Input, Slot::Output, Slot::Params];

/// Uniform twin of the WGSL `Params` struct.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct LrnParams {
    pub total: u32,
    pub c: u32,
    pub plane: u32,
    pub size: u32,
    /// ⌊(size − 1)/2⌋: window channels before the centre.
    pub before: u32,
    /// Words per pixel (`lrn_int`).
    pub cw: u32,
    pub z_a: i32,
    /// Always 0: ORed into a product's bits to keep it out of FMA contraction.
    pub opaque: u32,
    pub s_a: f32,
    /// alpha / size (`lrn`).
    pub k: f32,
    pub beta: f32,
    pub bias: f32,
    pub out_zero: i32,
    pub out_qmax: f32,
    pub out_inv: f32,
    pub out_scale: f32,
    pub divides: u32,
    pub pad: [u32; 3],
}
const _: () = assert!(std::mem::size_of::<LrnParams>() == 80);

/// The LRN attributes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LrnAttrs {
    pub size: usize,
    pub alpha: f32,
    pub beta: f32,
    pub bias: f32,
}

fn window_fields(p: &mut LrnParams, c: usize, size: usize) -> Result<()> {
    p.c = u32_of("channels", c)?;
    p.size = u32_of("LRN size", size)?;
    p.before = ((size.max(1) - 1) / 2) as u32;
    Ok(())
}

fn code_fields(p: &mut LrnParams, x: QParams, out: QParams) {
    p.s_a = x.scale;
    p.z_a = x.zero_point;
    p.out_zero = out.zero_point;
    p.out_qmax = out.qmax() as f32;
    p.out_inv = out.inv_scale();
    p.out_scale = out.scale;
    p.divides = u32::from(QUANTIZE_DIVIDES);
}

fn launch(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    entry: &'static str,
    bufs: [&wgpu::Buffer; 3],
    p: &LrnParams,
) -> Result<()> {
    let spec = KernelSpec {
        name: "lrn",
        source: SOURCE,
        entry,
        slots: &SLOTS,
        constants: &[],
        workgroup_bytes: 0,
    };
    buffers::launch(ctx, enc, &spec, &bufs, p, (p.total as u64).div_ceil(64))
}

/// Records f32 LRN of `[n, c, plane]` `x` into `y`.
pub fn lrn_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    (n, c, plane): (usize, usize, usize),
    a: LrnAttrs,
) -> Result<()> {
    let total = n * c * plane;
    buffers::check_len("lrn x", x, total)?;
    buffers::check_len("lrn y", y, total)?;
    let mut p = LrnParams {
        total: u32_of("lrn values", total)?,
        plane: u32_of("plane", plane.max(1))?,
        k: a.alpha / a.size.max(1) as f32,
        beta: a.beta,
        bias: a.bias,
        ..Default::default()
    };
    window_fields(&mut p, c, a.size)?;
    launch(ctx, enc, "lrn", [x, x, y], &p)
}

/// Records LRN of `n·pixels` NHWC-word pixels of `c` channels (`requant::lrn_code` with the
/// host `table`) into words of the output quantizer.
#[allow(clippy::too_many_arguments)]
pub fn lrn_int_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    (x, px): (&wgpu::Buffer, QParams),
    y: &wgpu::Buffer,
    (pixels, c): (usize, usize),
    size: usize,
    table: &wgpu::Buffer,
    out: QParams,
) -> Result<()> {
    let cw = words_per_pixel(c);
    let mut p = LrnParams {
        total: u32_of("lrn_int words", pixels * cw)?,
        cw: cw as u32,
        ..Default::default()
    };
    window_fields(&mut p, c, size)?;
    code_fields(&mut p, px, out);
    launch(ctx, enc, "lrn_int", [x, table, y], &p)
}

/// Records LRN of centred `[n, c, plane]` codes (the exact simulation's layout).
#[allow(clippy::too_many_arguments)]
pub fn lrn_exact_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    (x, px): (&wgpu::Buffer, QParams),
    y: &wgpu::Buffer,
    (n, c, plane): (usize, usize, usize),
    size: usize,
    table: &wgpu::Buffer,
    out: QParams,
) -> Result<()> {
    let total = n * c * plane;
    buffers::check_len("lrn x", x, total)?;
    buffers::check_len("lrn y", y, total)?;
    let mut p = LrnParams {
        total: u32_of("lrn_exact values", total)?,
        plane: u32_of("plane", plane.max(1))?,
        ..Default::default()
    };
    window_fields(&mut p, c, size)?;
    code_fields(&mut p, px, out);
    launch(ctx, enc, "lrn_exact", [x, table, y], &p)
}
