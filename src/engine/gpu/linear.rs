//! `linear`: fully connected layer on the GPU (`shaders/linear.wgsl`).
//!
//! `y[n, o] = act(b[o] + Σ_i x[n, i]·w[o, i])`, x `[N, IN]` (trailing dims flattened),
//! w `[OUT, IN]`, b `[OUT]`, y `[N, OUT]`, f32. One invocation per output with an f32 dot
//! product in `i` order, bias added last; ReLU/ReLU6 via the overridable `ACT`. In a CNN
//! the classifier is a small share of the work, so this kernel stays direct.
//! Bindings: 0 x, 1 w, 2 b → 3 y → 4 [`LinearParams`]. CPU oracle:
//! `engine::cpu::reference::linear`.

use bytemuck::{Pod, Zeroable};

use super::conv2d::act_code;
use crate::engine::device::buffers::{self, u32_of};
use crate::engine::device::context::{GpuContext, KernelSpec, Slot};
use crate::error::{Error, Result};
use crate::graph::Linear;
use crate::tensor::Tensor;

pub const SOURCE: &str = include_str!("../../../shaders/linear.wgsl");
const SLOTS: [Slot; 5] = [
    Slot::Input,
    Slot::Input,
    Slot::Input,
    Slot::Output,
    Slot::Params,
];

/// Uniform twin of the WGSL `Params` struct.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct LinearParams {
    pub n: u32,
    pub k: u32,
    pub o: u32,
    pub total: u32,
}
const _: () = assert!(std::mem::size_of::<LinearParams>() == 16);

/// Checks the buffers `[x, w, b, y]` of a linear layer on `n` rows and builds its uniform
/// (shared with the calibration-precision kernel).
pub(crate) fn linear_params(
    [x, w, b, y]: [&wgpu::Buffer; 4],
    n: usize,
    l: &Linear,
) -> Result<LinearParams> {
    let (k, o) = (l.in_features, l.out_features);
    buffers::check_len("linear x", x, n * k)?;
    buffers::check_len("linear w", w, o * k)?;
    buffers::check_len("linear b", b, o)?;
    buffers::check_len("linear y", y, n * o)?;
    Ok(LinearParams {
        n: u32_of("batch", n)?,
        k: u32_of("in_features", k)?,
        o: u32_of("out_features", o)?,
        total: u32_of("linear outputs", n * o)?,
    })
}

/// Records `y = act(x·Wᵀ + b)` for `n` rows held in buffers.
#[allow(clippy::too_many_arguments)]
pub fn linear_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    x: &wgpu::Buffer,
    w: &wgpu::Buffer,
    b: &wgpu::Buffer,
    y: &wgpu::Buffer,
    n: usize,
    l: &Linear,
) -> Result<()> {
    let params = linear_params([x, w, b, y], n, l)?;
    let o = params.o as usize;
    let constants = [("ACT", act_code(l.act))];
    let spec = KernelSpec {
        name: "linear",
        source: SOURCE,
        entry: "linear",
        slots: &SLOTS,
        constants: &constants,
        workgroup_bytes: 0,
    };
    let groups = (n * o).div_ceil(256) as u64;
    buffers::launch(ctx, enc, &spec, &[x, w, b, y], &params, groups)
}

/// Runs `linear` on host tensors (batch chunked under the binding limit).
pub fn linear(
    ctx: &GpuContext,
    x: &Tensor,
    w: &Tensor,
    b: Option<&[f32]>,
    l: &Linear,
) -> Result<Tensor> {
    let n = *x.shape.first().unwrap_or(&0);
    let (k, o) = (l.in_features, l.out_features);
    if x.numel() != n * k || w.shape != [o, k] || b.is_some_and(|b| b.len() != o) {
        return Err(Error::Shape {
            node: "linear".into(),
            expected: vec![n, k],
            actual: x.shape.clone(),
        });
    }
    let zeros = vec![0.0f32; o];
    let wb = buffers::upload(ctx, "linear w", &w.data);
    let bb = buffers::upload(ctx, "linear b", b.unwrap_or(&zeros));
    let mut out = Tensor::zeros(&[n, o]);
    for r in buffers::batch_chunks(ctx, n, (k.max(o) * 4) as u64)? {
        let m = r.len();
        let xb = buffers::upload(ctx, "linear x", &x.data[r.start * k..r.end * k]);
        let yb = buffers::filled(ctx, "linear y", m * o, buffers::SENTINEL_F32);
        let mut enc = ctx.encoder("linear");
        linear_encode(ctx, &mut enc, &xb, &wb, &bb, &yb, m, l)?;
        ctx.submit(enc)?;
        let y: Vec<f32> = buffers::read(ctx, &yb, m * o)?;
        out.data[r.start * o..r.end * o].copy_from_slice(&y);
    }
    Ok(out)
}
