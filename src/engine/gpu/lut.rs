//! `lut`: codes through host-built tables on the GPU (`shaders/lut.wgsl`), the device side of
//! `engine::exec::int_model::Lut` (standalone BatchNorm and the `Unary` functions on the integer paths). The device
//! only indexes: the tables were built on the host by `requant::lut`, so the codes equal the
//! CPU's whatever the device's floating point. `lut_int` reads and writes NHWC code words
//! (the `conv_int` layout), `lut_exact` f32 centred codes (the `conv_exact` layout).
//! Bindings: 0 x, 1 table → 2 y → 3 [`LutParams`].

use bytemuck::{Pod, Zeroable};

use super::conv_int::words_per_pixel;
use crate::engine::device::buffers::{self, u32_of};
use crate::engine::device::context::{GpuContext, KernelSpec, Slot};
use crate::error::Result;
use crate::quant::QParams;

pub const SOURCE: &str = include_str!("../../../shaders/lut.wgsl");
const SLOTS: [Slot; 4] = [Slot::Input, Slot::Input, Slot::Output, Slot::Params];

/// Uniform twin of the WGSL `Params` struct.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct LutParams {
    pub total: u32,
    pub c: u32,
    pub cw: u32,
    pub plane: u32,
    pub stride: u32,
    pub z_in: i32,
    pub z_out: i32,
    pub pad: u32,
}
const _: () = assert!(std::mem::size_of::<LutParams>() == 32);

/// The tables (`tables[ch * stride + q]`) as one u32 per entry.
pub fn upload_lut(ctx: &GpuContext, tables: &[u8]) -> wgpu::Buffer {
    let words: Vec<u32> = tables.iter().map(|&q| u32::from(q)).collect();
    buffers::upload(ctx, "code tables", &words)
}

fn launch(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    entry: &'static str,
    bufs: &[&wgpu::Buffer],
    p: &LutParams,
) -> Result<()> {
    let spec = KernelSpec {
        name: "lut",
        source: SOURCE,
        entry,
        slots: &SLOTS,
        constants: &[],
        workgroup_bytes: 0,
    };
    buffers::launch(ctx, enc, &spec, bufs, p, (p.total as u64).div_ceil(64))
}

/// Records `pixels` NHWC pixels of `c` channels (code words in `x`) through the uploaded
/// tables (`stride` entries apart, 0: one shared table) into `y`; padding channels take `out`'s zero point.
#[allow(clippy::too_many_arguments)]
pub fn lut_int_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    x: &wgpu::Buffer,
    table: &wgpu::Buffer,
    y: &wgpu::Buffer,
    (pixels, c): (usize, usize),
    stride: usize,
    out: QParams,
) -> Result<()> {
    let cw = words_per_pixel(c);
    let p = LutParams {
        total: u32_of("lut_int words", pixels * cw)?,
        c: u32_of("lut channels", c)?,
        cw: cw as u32,
        plane: 1,
        stride: u32_of("lut stride", stride)?,
        z_in: 0,
        z_out: out.zero_point,
        pad: 0,
    };
    launch(ctx, enc, "lut_int", &[x, table, y], &p)
}

/// Records a centred `[n, c, plane]` f32 tensor (codes of `px`) through the uploaded tables
/// (`stride` entries apart) into centred codes of `out` in `y`.
#[allow(clippy::too_many_arguments)]
pub fn lut_exact_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    (x, px): (&wgpu::Buffer, QParams),
    table: &wgpu::Buffer,
    y: &wgpu::Buffer,
    (n, c, plane): (usize, usize, usize),
    stride: usize,
    out: QParams,
) -> Result<()> {
    let len = n * c * plane;
    buffers::check_len("lut x", x, len)?;
    buffers::check_len("lut y", y, len)?;
    let p = LutParams {
        total: u32_of("lut_exact values", len)?,
        c: u32_of("lut channels", c.max(1))?,
        cw: 0,
        plane: u32_of("lut plane", plane.max(1))?,
        stride: u32_of("lut stride", stride)?,
        z_in: px.zero_point,
        z_out: out.zero_point,
        pad: 0,
    };
    launch(ctx, enc, "lut_exact", &[x, table, y], &p)
}
