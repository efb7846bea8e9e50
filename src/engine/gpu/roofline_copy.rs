//! `roofline_copy`: the adapter's memory bandwidth probe (`shaders/roofline_copy.wgsl`),
//! `dst = src` over `len` 16-byte words, one per invocation, 64 per workgroup. Reads and
//! writes `2 · 16 · len` bytes; `ptq4 bench device` divides that by its time.
//! Bindings: 0 src → 1 dst → 2 [`CopyParams`]. CPU twin: `copy_from_slice`.

use bytemuck::{Pod, Zeroable};

use crate::engine::device::buffers::{self, u32_of};
use crate::engine::device::context::{GpuContext, KernelSpec, Slot};
use crate::error::Result;

pub const SOURCE: &str = include_str!("../../../shaders/roofline_copy.wgsl");
const SLOTS: [Slot; 3] = [Slot::Input, Slot::Output, Slot::Params];

/// Uniform twin of the WGSL `Params` struct.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct CopyParams {
    pub total: u32,
    pub _pad: [u32; 3],
}

/// Records the copy of `len` 16-byte words from `src` to `dst`.
pub fn roofline_copy_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    len: usize,
) -> Result<()> {
    buffers::check_len("roofline_copy src", src, 4 * len)?;
    buffers::check_len("roofline_copy dst", dst, 4 * len)?;
    let p = CopyParams {
        total: u32_of("roofline_copy words", len)?,
        ..Default::default()
    };
    let spec = KernelSpec {
        name: "roofline_copy",
        source: SOURCE,
        entry: "roofline_copy",
        slots: &SLOTS,
        constants: &[],
        workgroup_bytes: 0,
    };
    buffers::launch(ctx, enc, &spec, &[src, dst], &p, (len as u64).div_ceil(64))
}
