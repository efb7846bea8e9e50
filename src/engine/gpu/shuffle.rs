//! `shuffle`: channel shuffle on the GPU (`shaders/shuffle.wgsl`), a permutation of
//! channels (`graph::shuffle_source`) and so bit-exact: [`shuffle_encode`] on NCHW 32-bit
//! values (f32, or the exact simulation's centred codes), [`shuffle_int_encode`] on NHWC
//! code words (`conv_int` layout; padding channels get the zero point).
//! Bindings: 0 x → 1 y → 2 [`ShuffleParams`].

use bytemuck::{Pod, Zeroable};

use super::conv_int::words_per_pixel;
use crate::engine::device::buffers::{self, u32_of};
use crate::engine::device::context::{GpuContext, KernelSpec, Slot};
use crate::error::{Error, Result};

pub const SOURCE: &str = include_str!("../../../shaders/shuffle.wgsl");
const SLOTS: [Slot; 3] = [Slot::Input, Slot::Output, Slot::Params];

/// Uniform twin of the WGSL `Params` struct.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct ShuffleParams {
    pub total: u32,
    pub c: u32,
    pub groups: u32,
    pub plane: u32,
    pub cw: u32,
    pub zero: u32,
    pub _pad: [u32; 2],
}
const _: () = assert!(std::mem::size_of::<ShuffleParams>() == 32);

fn launch(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    entry: &'static str,
    bufs: [&wgpu::Buffer; 2],
    p: &ShuffleParams,
) -> Result<()> {
    if p.groups == 0 || !p.c.is_multiple_of(p.groups) {
        return Err(Error::Engine(format!(
            "channel shuffle: {} groups do not divide {} channels",
            p.groups, p.c
        )));
    }
    let spec = KernelSpec {
        name: "shuffle",
        source: SOURCE,
        entry,
        slots: &SLOTS,
        constants: &[],
        workgroup_bytes: 0,
    };
    buffers::launch(ctx, enc, &spec, &bufs, p, (p.total as u64).div_ceil(64))
}

/// Records the shuffle of `n` NCHW images of `c` channels of `plane` 32-bit values.
pub fn shuffle_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    (n, c, plane): (usize, usize, usize),
    groups: usize,
) -> Result<()> {
    let len = n * c * plane;
    buffers::check_len("shuffle x", x, len)?;
    buffers::check_len("shuffle y", y, len)?;
    let p = ShuffleParams {
        total: u32_of("shuffle length", len)?,
        c: u32_of("shuffle channels", c)?,
        groups: u32_of("shuffle groups", groups)?,
        plane: u32_of("shuffle plane", plane.max(1))?,
        ..Default::default()
    };
    launch(ctx, enc, "shuffle", [x, y], &p)
}

/// Records the shuffle of NHWC code words of `pixels` pixels of `c` channels whose
/// quantizer has zero point `zero`.
pub fn shuffle_int_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    (pixels, c): (usize, usize),
    groups: usize,
    zero: u8,
) -> Result<()> {
    let cw = words_per_pixel(c);
    let p = ShuffleParams {
        total: u32_of("shuffle_int words", pixels * cw)?,
        c: u32_of("shuffle channels", c)?,
        groups: u32_of("shuffle groups", groups)?,
        plane: 1,
        cw: cw as u32,
        zero: u32::from(zero),
        ..Default::default()
    };
    launch(ctx, enc, "shuffle_int", [x, y], &p)
}
