//! `fake_quant`: asymmetric uniform fake quantization on the GPU
//! (`shaders/fake_quant.wgsl`), per tensor or per channel with per-channel bit-widths.
//!
//! For element `i` of channel `c = (i / inner) % channels` ([`ChannelLayout`]):
//! `q = clamp(round_ties_even(x·inv_c) + z_c, 0, 2^M_c − 1)`, `code = q`, `x̂ = (q − z_c)·s_c`,
//! with `inv_c = 1/s_c` computed once on the host: [`QParams::quantize`] and
//! [`QParams::dequantize`], whose rule (and why it is bit-exact on any conforming device) is
//! documented once in `quant::scheme`; codes and values must equal the CPU twin
//! [`crate::engine::cpu::fake_quant`] exactly.
//! Layouts: x, codes (u32, one per element, unpacked), values (f32) share x's layout;
//! quantizers are `vec4(s, 1/s, z, 2^M − 1)` per channel.
//! Bindings: 0 x, 1 quantizers → 2 codes, 3 values → 4 [`FakeQuantParams`].

use bytemuck::{Pod, Zeroable};

use crate::engine::cpu::fake_quant::validate;
use crate::engine::device::buffers::{self, u32_of};
use crate::engine::device::context::{GpuContext, KernelSpec, Slot};
use crate::engine::layout::ChannelLayout;
use crate::error::Result;
use crate::quant::QParams;

pub const SOURCE: &str = include_str!("../../../shaders/fake_quant.wgsl");
const SLOTS: [Slot; 5] = [
    Slot::Input,
    Slot::Input,
    Slot::Output,
    Slot::Output,
    Slot::Params,
];

/// Uniform twin of the WGSL `Params` struct. `base` is the flat index of the chunk's first
/// element in the whole tensor (it decides the channel).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct FakeQuantParams {
    pub len: u32,
    pub channels: u32,
    pub inner: u32,
    pub base: u32,
}
const _: () = assert!(std::mem::size_of::<FakeQuantParams>() == 16);

/// The quantizer table the kernel binds: `[s, 1/s, z, 2^M − 1]` per channel (z and
/// 2^M − 1 are integers, exact in f32).
pub fn quant_table(q: &[QParams]) -> Vec<[f32; 4]> {
    q.iter()
        .map(|p| [p.scale, p.inv_scale(), p.zero_point as f32, p.qmax() as f32])
        .collect()
}

/// Records fake quantization of `len` elements starting at flat index `base` of a tensor
/// laid out as `layout`; `table` holds [`quant_table`].
#[allow(clippy::too_many_arguments)]
pub fn fake_quant_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    x: &wgpu::Buffer,
    table: &wgpu::Buffer,
    codes: &wgpu::Buffer,
    values: &wgpu::Buffer,
    len: usize,
    base: usize,
    layout: &ChannelLayout,
) -> Result<()> {
    buffers::check_len("fake_quant x", x, len)?;
    buffers::check_len("fake_quant table", table, 4 * layout.channels)?;
    buffers::check_len("fake_quant codes", codes, len)?;
    buffers::check_len("fake_quant values", values, len)?;
    let params = FakeQuantParams {
        len: u32_of("fake_quant length", len)?,
        channels: u32_of("channels", layout.channels.max(1))?,
        inner: u32_of("inner", layout.inner.max(1))?,
        base: u32_of("fake_quant base", base)?,
    };
    let spec = KernelSpec {
        name: "fake_quant",
        source: SOURCE,
        entry: "fake_quant",
        slots: &SLOTS,
        constants: &[],
        workgroup_bytes: 0,
    };
    let groups = len.div_ceil(256) as u64;
    buffers::launch(ctx, enc, &spec, &[x, table, codes, values], &params, groups)
}

/// Codes and dequantized values of host data `x` (chunked under the binding limit;
/// outputs start as sentinels).
pub fn fake_quant(
    ctx: &GpuContext,
    x: &[f32],
    layout: &ChannelLayout,
    q: &[QParams],
) -> Result<(Vec<u32>, Vec<f32>)> {
    layout.check(x.len(), "fake_quant input")?;
    validate(layout, q)?;
    u32_of("fake_quant length", x.len())?;
    let table = buffers::upload(ctx, "fake_quant table", &quant_table(q));
    let (mut codes, mut values) = (vec![0u32; x.len()], vec![0f32; x.len()]);
    for r in buffers::batch_chunks(ctx, x.len(), 4)? {
        let m = r.len();
        let xb = buffers::upload(ctx, "fake_quant x", &x[r.clone()]);
        let cb = buffers::filled(ctx, "fake_quant codes", m, buffers::SENTINEL_U32);
        let vb = buffers::filled(ctx, "fake_quant values", m, buffers::SENTINEL_F32);
        let mut enc = ctx.encoder("fake_quant");
        fake_quant_encode(ctx, &mut enc, &xb, &table, &cb, &vb, m, r.start, layout)?;
        ctx.submit(enc)?;
        codes[r.clone()].copy_from_slice(&buffers::read::<u32>(ctx, &cb, m)?);
        values[r].copy_from_slice(&buffers::read::<f32>(ctx, &vb, m)?);
    }
    Ok((codes, values))
}
