//! `eltwise`: residual add and channel concatenation on the GPU (`shaders/eltwise.wgsl`).
//!
//! `add`: `y[i] = a[i] + b[i]` over equal shapes (one f32 addition: bit-exact vs the CPU).
//! `concat`: `[N, CA, H, W] ⧺ [N, CB, H, W] → [N, CA + CB, H, W]` along channels (a copy:
//! bit-exact); more inputs are concatenated pairwise left to right.
//! `cap`: `y[n, c, i] = min(a[n, c, i], b[c])`, the per-channel bounds of an equalized ReLU6
//! (`Graph::act_max`; one f32 min: bit-exact).
//! Bindings: 0 a, 1 b → 2 y → 3 [`EltwiseParams`].

use bytemuck::{Pod, Zeroable};

use crate::engine::device::buffers::{self, u32_of};
use crate::engine::device::context::{GpuContext, KernelSpec, Slot};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

pub const SOURCE: &str = include_str!("../../../shaders/eltwise.wgsl");
const SLOTS: [Slot; 4] = [Slot::Input, Slot::Input, Slot::Output, Slot::Params];

/// Uniform twin of the WGSL `Params` struct.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct EltwiseParams {
    pub total: u32,
    pub hw: u32,
    pub ca: u32,
    pub cb: u32,
}
const _: () = assert!(std::mem::size_of::<EltwiseParams>() == 16);

/// Records `y = a + b` over `len` elements, or (with `concat = Some((n, ca, cb, hw))`)
/// the channel concatenation of `a` and `b`.
pub fn eltwise_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    y: &wgpu::Buffer,
    len: usize,
    concat: Option<(usize, usize, usize, usize)>,
) -> Result<()> {
    let params = match concat {
        None => {
            buffers::check_len("add a", a, len)?;
            buffers::check_len("add b", b, len)?;
            EltwiseParams {
                total: u32_of("add length", len)?,
                ..Default::default()
            }
        }
        Some((n, ca, cb, hw)) => {
            buffers::check_len("concat a", a, n * ca * hw)?;
            buffers::check_len("concat b", b, n * cb * hw)?;
            if len != n * (ca + cb) * hw {
                return Err(Error::Engine(format!(
                    "concat: output length {len} for {n}×({ca}+{cb})×{hw}"
                )));
            }
            EltwiseParams {
                total: u32_of("concat length", len)?,
                hw: u32_of("concat plane", hw)?,
                ca: ca as u32,
                cb: cb as u32,
            }
        }
    };
    buffers::check_len("eltwise y", y, len)?;
    let spec = KernelSpec {
        name: "eltwise",
        source: SOURCE,
        entry: if concat.is_some() { "concat" } else { "add" },
        slots: &SLOTS,
        constants: &[],
        workgroup_bytes: 0,
    };
    let groups = len.div_ceil(256) as u64;
    buffers::launch(ctx, enc, &spec, &[a, b, y], &params, groups)
}

/// Records `y = min(a, bounds[c])` over an `[N, C, hw]` tensor of `len` elements
/// (`bounds`: C values).
pub fn cap_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    a: &wgpu::Buffer,
    bounds: &wgpu::Buffer,
    y: &wgpu::Buffer,
    len: usize,
    (c, hw): (usize, usize),
) -> Result<()> {
    buffers::check_len("cap a", a, len)?;
    buffers::check_len("cap bounds", bounds, c)?;
    buffers::check_len("cap y", y, len)?;
    let params = EltwiseParams {
        total: u32_of("cap length", len)?,
        hw: u32_of("cap plane", hw.max(1))?,
        ca: u32_of("cap channels", c.max(1))?,
        cb: 0,
    };
    let spec = KernelSpec {
        name: "eltwise",
        source: SOURCE,
        entry: "cap",
        slots: &SLOTS,
        constants: &[],
        workgroup_bytes: 0,
    };
    let groups = len.div_ceil(256) as u64;
    buffers::launch(ctx, enc, &spec, &[a, bounds, y], &params, groups)
}

/// `a + b` for tensors of equal shape (batch chunked under the binding limit).
pub fn add(ctx: &GpuContext, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.shape != b.shape || a.shape.is_empty() {
        return Err(Error::Shape {
            node: "add".into(),
            expected: a.shape.clone(),
            actual: b.shape.clone(),
        });
    }
    let n = a.shape[0];
    let item = a.numel() / n.max(1);
    let mut out = Tensor::zeros(&a.shape);
    for r in buffers::batch_chunks(ctx, n, (item * 4) as u64)? {
        let s = r.start * item..r.end * item;
        let (ab, bb) = (
            buffers::upload(ctx, "add a", &a.data[s.clone()]),
            buffers::upload(ctx, "add b", &b.data[s.clone()]),
        );
        let yb = buffers::filled(ctx, "add y", s.len(), buffers::SENTINEL_F32);
        let mut enc = ctx.encoder("add");
        eltwise_encode(ctx, &mut enc, &ab, &bb, &yb, s.len(), None)?;
        ctx.submit(enc)?;
        out.data[s.clone()].copy_from_slice(&buffers::read::<f32>(ctx, &yb, s.len())?);
    }
    Ok(out)
}

/// Concatenation of NCHW tensors along channels.
pub fn concat(ctx: &GpuContext, xs: &[&Tensor]) -> Result<Tensor> {
    let (first, rest) = xs
        .split_first()
        .ok_or_else(|| Error::Engine("concat of no tensors".into()))?;
    let mut acc = (*first).clone();
    for b in rest {
        acc = concat2(ctx, &acc, b)?;
    }
    Ok(acc)
}

fn concat2(ctx: &GpuContext, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (n, ca, h, w) = a.dims4()?;
    let (nb, cb, hb, wb) = b.dims4()?;
    if (n, h, w) != (nb, hb, wb) {
        return Err(Error::Shape {
            node: "concat".into(),
            expected: a.shape.clone(),
            actual: b.shape.clone(),
        });
    }
    let hw = h * w;
    let mut out = Tensor::zeros(&[n, ca + cb, h, w]);
    let item = (ca + cb) * hw;
    for r in buffers::batch_chunks(ctx, n, (item * 4) as u64)? {
        let m = r.len();
        let ab = buffers::upload(ctx, "concat a", &a.data[r.start * ca * hw..r.end * ca * hw]);
        let bb = buffers::upload(ctx, "concat b", &b.data[r.start * cb * hw..r.end * cb * hw]);
        let yb = buffers::filled(ctx, "concat y", m * item, buffers::SENTINEL_F32);
        let mut enc = ctx.encoder("concat");
        eltwise_encode(
            ctx,
            &mut enc,
            &ab,
            &bb,
            &yb,
            m * item,
            Some((m, ca, cb, hw)),
        )?;
        ctx.submit(enc)?;
        out.data[r.start * item..r.end * item].copy_from_slice(&buffers::read::<f32>(
            ctx,
            &yb,
            m * item,
        )?);
    }
    Ok(out)
}
