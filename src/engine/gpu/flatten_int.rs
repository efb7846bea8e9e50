//! `flatten_int`: Flatten of NHWC code words (`conv_int` layout) into the NCHW order of a
//! `[N, C·H·W]` vector, held as a 1×1 map of C·H·W channels (`shaders/flatten_int.wgsl`),
//! so a linear layer after a spatial map reads the features ONNX and the CPU integer
//! kernels (`exec::int_cpu`'s flatten) order them in. Codes are moved, never changed; the
//! output's padding channels take the zero point.
//! Bindings: 0 x → 1 y → 2 [`FlattenParams`].

use bytemuck::{Pod, Zeroable};

use super::conv_int::words_per_pixel;
use crate::engine::device::buffers::{self, u32_of};
use crate::engine::device::context::{GpuContext, KernelSpec, Slot};
use crate::error::Result;

pub const SOURCE: &str = include_str!("../../../shaders/flatten_int.wgsl");
const SLOTS: [Slot; 3] = [Slot::Input, Slot::Output, Slot::Params];

/// Uniform twin of the WGSL `Params` struct.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct FlattenParams {
    pub total: u32,
    pub c: u32,
    pub hw: u32,
    pub cw_in: u32,
    pub cw_out: u32,
    pub zero: u32,
    pub pad: [u32; 2],
}
const _: () = assert!(std::mem::size_of::<FlattenParams>() == 32);

/// Records the flattening of `n` NHWC-word images of `h × w × c` with zero point `zero`
/// into `y`: `n · words_per_pixel(c·h·w)` words.
pub fn flatten_int_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    (n, c, h, w): (usize, usize, usize, usize),
    zero: u8,
) -> Result<()> {
    let f = c * h * w;
    let cw_out = words_per_pixel(f);
    let total = n * cw_out;
    buffers::check_len("flatten x", x, n * h * w * words_per_pixel(c))?;
    buffers::check_len("flatten y", y, total)?;
    let p = FlattenParams {
        total: u32_of("flatten_int words", total)?,
        c: u32_of("channels", c)?,
        hw: u32_of("plane", h * w)?,
        cw_in: words_per_pixel(c) as u32,
        cw_out: cw_out as u32,
        zero: zero as u32,
        pad: [0; 2],
    };
    let spec = KernelSpec {
        name: "flatten_int",
        source: SOURCE,
        entry: "flatten_int",
        slots: &SLOTS,
        constants: &[],
        workgroup_bytes: 0,
    };
    buffers::launch(ctx, enc, &spec, &[x, y], &p, (total as u64).div_ceil(64))
}
