//! Residual add and global average pooling on NHWC code words on the GPU
//! (`shaders/eltwise_int.wgsl`), bit-exact twins of `engine::requant::add_codes` and
//! `gap_code`: dequantize, compute in f32, requantize with the one rule. Word layout and
//! params struct as in [`super::conv_int`].
//! Bindings: 0 a, 1 b (pooling: x twice) → 2 y → 3 [`IntParams`].

use super::conv_int::{launch, out_fields, words_per_pixel, IntParams};
use crate::engine::device::buffers::u32_of;
use crate::engine::device::context::{GpuContext, KernelSpec, Slot};
use crate::error::Result;
use crate::quant::QParams;

pub const SOURCE: &str = include_str!("../../../shaders/eltwise_int.wgsl");
const SLOTS: [Slot; 4] = [Slot::Input, Slot::Input, Slot::Output, Slot::Params];

/// Records the residual add of two NHWC-word tensors of `words` words.
pub fn add_int_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    (a, pa): (&wgpu::Buffer, QParams),
    (b, pb): (&wgpu::Buffer, QParams),
    y: &wgpu::Buffer,
    words: usize,
    out: QParams,
) -> Result<()> {
    let mut p = IntParams {
        total: u32_of("add_int words", words)?,
        s_a: pa.scale,
        z_a: pa.zero_point,
        s_b: pb.scale,
        z_b: pb.zero_point,
        ..Default::default()
    };
    out_fields(&mut p, Some(out));
    let spec = KernelSpec {
        name: "eltwise_int",
        source: SOURCE,
        entry: "add_int",
        slots: &SLOTS,
        constants: &[],
        workgroup_bytes: 0,
    };
    launch(ctx, enc, spec, &[a, b, y], &p)
}

/// Records global average pooling of `n` NHWC-word images of `h × w × c` into `[n, c]` words.
#[allow(clippy::too_many_arguments)]
pub fn gap_int_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    x: &wgpu::Buffer,
    px: QParams,
    y: &wgpu::Buffer,
    (n, c, h, w): (usize, usize, usize, usize),
    out: QParams,
) -> Result<()> {
    let cw = words_per_pixel(c);
    let mut p = IntParams {
        h: u32_of("height", h)?,
        w: u32_of("width", w)?,
        cw_in: cw as u32,
        total: u32_of("gap_int words", n * cw)?,
        s_a: px.scale,
        z_a: px.zero_point,
        s_b: 1.0 / (h * w) as f32,
        ..Default::default()
    };
    out_fields(&mut p, Some(out));
    let spec = KernelSpec {
        name: "eltwise_int",
        source: SOURCE,
        entry: "gap_int",
        slots: &SLOTS,
        constants: &[],
        workgroup_bytes: 0,
    };
    launch(ctx, enc, spec, &[x, x, y], &p)
}
