//! `roofline_dot4`: the adapter's `dot4I8Packed` throughput probe
//! (`shaders/roofline_dot4.wgsl`). Each of `total` invocations (64 per workgroup) runs
//! [`CHAINS`] independent chains of `iters` steps `a = dot4I8Packed(a, b) + a` (the operand
//! is the previous result, so no step can be hoisted) and writes their XOR to `res`. One step
//! counts 8 integer ops (4 multiplies, 4 adds), as a GPU's int8 dot-product peak is quoted.
//! Bindings: 0 seed (2 words) → 1 res (`total` words) → 2 [`Dot4Params`].
//! CPU twin: [`reference`], the same chains in Rust (wrapping `i32`).

use bytemuck::{Pod, Zeroable};

use crate::engine::device::buffers::{self, u32_of};
use crate::engine::device::context::{GpuContext, KernelSpec, Slot};
use crate::error::Result;

pub const SOURCE: &str = include_str!("../../../shaders/roofline_dot4.wgsl");
const SLOTS: [Slot; 3] = [Slot::Input, Slot::Output, Slot::Params];
/// Independent chains per invocation.
pub const CHAINS: u64 = 8;
/// Integer ops per dot4 step.
pub const OPS_PER_DOT4: u64 = 8;

/// Uniform twin of the WGSL `Params` struct.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct Dot4Params {
    pub total: u32,
    pub iters: u32,
    pub _pad: [u32; 2],
}

/// Integer ops one dispatch of `total` invocations × `iters` steps performs.
pub fn ops(total: usize, iters: u32) -> u64 {
    total as u64 * iters as u64 * CHAINS * OPS_PER_DOT4
}

/// Records one dispatch of `total` invocations of `iters` steps each.
pub fn roofline_dot4_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    seed: &wgpu::Buffer,
    res: &wgpu::Buffer,
    total: usize,
    iters: u32,
) -> Result<()> {
    buffers::check_len("roofline_dot4 seed", seed, 2)?;
    buffers::check_len("roofline_dot4 res", res, total)?;
    let p = Dot4Params {
        total: u32_of("roofline_dot4 invocations", total)?,
        iters,
        ..Default::default()
    };
    let spec = KernelSpec {
        name: "roofline_dot4",
        source: SOURCE,
        entry: "roofline_dot4",
        slots: &SLOTS,
        constants: &[],
        workgroup_bytes: 0,
    };
    buffers::launch(
        ctx,
        enc,
        &spec,
        &[seed, res],
        &p,
        (total as u64).div_ceil(64),
    )
}

/// The value invocation `i` writes (the kernel's oracle).
pub fn reference(seed: [u32; 2], i: u32, iters: u32) -> u32 {
    let b = seed[0] ^ i;
    let dot4 = |a: u32, b: u32| -> i32 {
        (0..4)
            .map(|k| (a >> (8 * k)) as u8 as i8 as i32 * ((b >> (8 * k)) as u8 as i8 as i32))
            .sum()
    };
    (0..CHAINS as u32)
        .map(|c| {
            let mut a = seed[1].wrapping_add(i).wrapping_add(c);
            for _ in 0..iters {
                a = dot4(a, b).wrapping_add(a as i32) as u32;
            }
            a
        })
        .fold(0, |x, a| x ^ a)
}
