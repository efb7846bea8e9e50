//! `unary`: the element-wise functions of [`Unary`] on f32 values (`shaders/unary.wgsl`),
//! for the FP32 path only: the device's `exp` agrees with the CPU's [`Unary::apply`] within
//! a tolerance, not bit for bit (the integer paths read host-built code tables instead,
//! [`super::lut`]). Bindings: 0 x → 1 y → 2 [`UnaryParams`].

use bytemuck::{Pod, Zeroable};

use crate::engine::device::buffers::{self, u32_of};
use crate::engine::device::context::{GpuContext, KernelSpec, Slot};
use crate::error::Result;
use crate::graph::Unary;

pub const SOURCE: &str = include_str!("../../../shaders/unary.wgsl");
const SLOTS: [Slot; 3] = [Slot::Input, Slot::Output, Slot::Params];

/// Uniform twin of the WGSL `Params` struct.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct UnaryParams {
    pub total: u32,
    pub kind: u32,
    pub alpha: f32,
    pub beta: f32,
}
const _: () = assert!(std::mem::size_of::<UnaryParams>() == 16);

/// The shader's `kind` and its two parameters.
fn kind(u: Unary) -> (u32, f32, f32) {
    match u {
        Unary::Sigmoid => (0, 0.0, 0.0),
        Unary::HardSigmoid { alpha, beta } => (1, alpha, beta),
        Unary::HardSwish => (2, 0.0, 0.0),
        Unary::LeakyRelu { alpha } => (3, alpha, 0.0),
        Unary::Clip { min, max } => (4, min, max),
        Unary::Silu => (5, 0.0, 0.0),
    }
}

/// Records `y[i] = u(x[i])` over `len` values.
pub fn unary_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    len: usize,
    u: Unary,
) -> Result<()> {
    buffers::check_len("unary x", x, len)?;
    buffers::check_len("unary y", y, len)?;
    let (kind, alpha, beta) = kind(u);
    let p = UnaryParams {
        total: u32_of("unary length", len)?,
        kind,
        alpha,
        beta,
    };
    let spec = KernelSpec {
        name: "unary",
        source: SOURCE,
        entry: "unary",
        slots: &SLOTS,
        constants: &[],
        workgroup_bytes: 0,
    };
    buffers::launch(ctx, enc, &spec, &[x, y], &p, len.div_ceil(256) as u64)
}
