//! `mul`: the product of a feature map and a same-shape map or a per-image channel gate on
//! the GPU (`shaders/mul.wgsl`), for the three representations of a value:
//! - [`mul_encode`]: f32 NCHW, `y = a · b` (one f32 product: bit-exact vs `cpu::mul`);
//! - [`mul_exact_encode`]: the exact simulation's centred f32 codes;
//! - [`mul_int_encode`]: NHWC code words (`conv_int` layout);
//!
//! the last two requantize with `requant::mul_codes` op for op (products only, so nothing
//! can be contracted into an FMA). A gate (`Some(plane)`) holds one value per image and
//! channel and is broadcast over the plane.
//! Bindings: 0 a, 1 b → 2 y → 3 [`MulParams`].

use bytemuck::{Pod, Zeroable};

use super::conv_int::words_per_pixel;
use crate::engine::device::buffers::{self, u32_of};
use crate::engine::device::context::{GpuContext, KernelSpec, Slot};
use crate::engine::requant::QUANTIZE_DIVIDES;
use crate::error::Result;
use crate::quant::QParams;

pub const SOURCE: &str = include_str!("../../../shaders/mul.wgsl");
const SLOTS: [Slot; 4] = [Slot::Input, Slot::Input, Slot::Output, Slot::Params];

/// Uniform twin of the WGSL `Params` struct.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct MulParams {
    pub total: u32,
    /// 1: `b` is a gate, read at `(i / plane) · cw + i % cw`.
    pub gate: u32,
    pub plane: u32,
    pub cw: u32,
    pub s_a: f32,
    pub z_a: i32,
    pub s_b: f32,
    pub z_b: i32,
    pub out_inv: f32,
    pub out_scale: f32,
    pub out_zero: i32,
    pub out_qmax: f32,
    pub divides: u32,
    pub _pad: [u32; 3],
}
const _: () = assert!(std::mem::size_of::<MulParams>() == 64);

fn launch(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    entry: &'static str,
    bufs: [&wgpu::Buffer; 3],
    p: &MulParams,
) -> Result<()> {
    let spec = KernelSpec {
        name: "mul",
        source: SOURCE,
        entry,
        slots: &SLOTS,
        constants: &[],
        workgroup_bytes: 0,
    };
    buffers::launch(ctx, enc, &spec, &bufs, p, (p.total as u64).div_ceil(64))
}

/// The quantizers' fields: `a`, `b` and the output.
fn quant_fields(p: &mut MulParams, pa: QParams, pb: QParams, out: QParams) {
    p.s_a = pa.scale;
    p.z_a = pa.zero_point;
    p.s_b = pb.scale;
    p.z_b = pb.zero_point;
    p.out_inv = 1.0 / out.scale;
    p.out_scale = out.scale;
    p.out_zero = out.zero_point;
    p.out_qmax = out.qmax() as f32;
    p.divides = u32::from(QUANTIZE_DIVIDES);
}

/// Records `y = a · b` over `len` f32 values; `gate = Some(plane)`: `b` has one value per
/// `plane` values of `a`.
pub fn mul_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    y: &wgpu::Buffer,
    len: usize,
    gate: Option<usize>,
) -> Result<()> {
    buffers::check_len("mul a", a, len)?;
    buffers::check_len("mul y", y, len)?;
    let plane = gate.unwrap_or(1).max(1);
    buffers::check_len("mul b", b, len / plane)?;
    let p = MulParams {
        total: u32_of("mul length", len)?,
        gate: u32::from(gate.is_some()),
        plane: u32_of("mul plane", plane)?,
        cw: 1,
        ..Default::default()
    };
    launch(ctx, enc, "mul", [a, b, y], &p)
}

/// Records the exact simulation's product of centred code tensors of `len` values (`b`
/// a gate with one value per `plane` values of `a` when `gate = Some(plane)`).
#[allow(clippy::too_many_arguments)]
pub fn mul_exact_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    (a, pa): (&wgpu::Buffer, QParams),
    (b, pb): (&wgpu::Buffer, QParams),
    y: &wgpu::Buffer,
    len: usize,
    gate: Option<usize>,
    out: QParams,
) -> Result<()> {
    buffers::check_len("mul a", a, len)?;
    buffers::check_len("mul y", y, len)?;
    let plane = gate.unwrap_or(1).max(1);
    buffers::check_len("mul b", b, len / plane)?;
    let mut p = MulParams {
        total: u32_of("mul_exact values", len)?,
        gate: u32::from(gate.is_some()),
        plane: u32_of("mul plane", plane)?,
        cw: 1,
        ..Default::default()
    };
    quant_fields(&mut p, pa, pb, out);
    launch(ctx, enc, "mul_exact", [a, b, y], &p)
}

/// Records the product of NHWC-word code maps of `n` images of `pixels` pixels and `c`
/// channels; `gate`: `b` holds one pixel per image.
#[allow(clippy::too_many_arguments)]
pub fn mul_int_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    (a, pa): (&wgpu::Buffer, QParams),
    (b, pb): (&wgpu::Buffer, QParams),
    y: &wgpu::Buffer,
    (n, pixels, c): (usize, usize, usize),
    gate: bool,
    out: QParams,
) -> Result<()> {
    let cw = words_per_pixel(c);
    let words = n * pixels * cw;
    let mut p = MulParams {
        total: u32_of("mul_int words", words)?,
        gate: u32::from(gate),
        plane: u32_of("mul_int image words", (pixels * cw).max(1))?,
        cw: cw as u32,
        ..Default::default()
    };
    quant_fields(&mut p, pa, pb, out);
    launch(ctx, enc, "mul_int", [a, b, y], &p)
}
