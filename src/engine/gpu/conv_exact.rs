//! The exact simulation (`--exec sim`) on the GPU (`shaders/conv_exact.wgsl`): float
//! arithmetic on codes, independent of the integer kernels (`conv_int`), bit-identical to
//! `engine::sim` + `engine::intexec` on the CPU.
//!
//! Layouts: every value is an f32 NCHW tensor of centred codes v = q − z (exact small
//! integers; padding taps read 0, the real 0); weights are f32 `[CO, CI/G, KH, KW]` of
//! q_w − z_w per output channel (a linear layer is a 1×1 conv on a 1×1 input).
//!
//! Accumulator acc = Σ (q_w − z_w)(q_x − z_x) of one weight tensor:
//! - when `sim::exact_in_f32` (K·max|q_w − z_w|·max|q_x − z_x| < 2^24) every partial sum is
//!   an exact f32 integer in any order, so the f32 conv kernels (`conv2d`: implicit GEMM or
//!   depthwise, zero bias, no activation) compute it exactly;
//! - otherwise `acc_chunked` sums the reduction in chunks of L = ⌊(2^24 − 1)/(max|w|·max|x|)⌋
//!   terms in f32 (each exact), carries each chunk into an exact i32 total (|acc| < 2^31,
//!   checked by `IntModel::new`) and rounds it to f32 to nearest even in integer
//!   arithmetic: the value the CPU's f64 → f32 conversion gives.
//!
//! Then `requant` is `requant::Epilogue` op for op (products kept out of FMA contraction)
//! followed by `QParams::quantize` as a centred code, or the f32 logits; `add_exact` and
//! `gap_exact` are `requant::add_codes` and `requant::gap_code` on centred codes;
//! `avg_pool_exact` is `gap_code` per window (1/count from a host table), `max_pool_exact`
//! and `concat_exact` are `requant::requant_code` of the max code or of each code
//! (`concat_exact` with one input and an activation: `requant::act_code`).
//! Bindings of every entry: 0 a, 1 b, 2 chan → 3 y → 4 [`ExactParams`].

use bytemuck::{Pod, Zeroable};

use super::conv2d::conv2d_encode;
use crate::engine::cpu::int::conv_out_hw;
use crate::engine::device::buffers::{self, u32_of};
use crate::engine::device::context::{GpuContext, KernelSpec, Slot};
use crate::engine::exact::{chunk_len, exact_in_f32, max_centred};
use crate::engine::requant::{inv_count, QUANTIZE_DIVIDES};
use crate::error::{Error, Result};
use crate::graph::{Activation, Conv2d, Pool};
use crate::quant::QParams;

pub const SOURCE: &str = include_str!("../../../shaders/conv_exact.wgsl");
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
pub struct ExactParams {
    pub n: u32,
    pub ci: u32,
    pub h: u32,
    pub w: u32,
    pub co: u32,
    pub oh: u32,
    pub ow: u32,
    pub kh: u32,
    pub kw: u32,
    pub sh: u32,
    pub sw: u32,
    pub dh: u32,
    pub dw: u32,
    pub pt: u32,
    pub pl: u32,
    pub groups: u32,
    pub cig: u32,
    pub cog: u32,
    /// Terms per exact f32 partial sum.
    pub chunk: u32,
    pub total: u32,
    pub plane: u32,
    pub dual: u32,
    pub act: u32,
    pub logits: u32,
    pub out_zero: i32,
    pub out_qmax: f32,
    pub out_inv: f32,
    pub out_scale: f32,
    pub divides: u32,
    /// Always 0 (see the shader's `opaque`).
    pub opaque: u32,
    pub s_a: f32,
    pub s_b: f32,
    /// Max pooling: the input zero point (an empty window's code 0 is −z_a centred).
    pub z_a: i32,
    /// Concat: the input's channel offset in the output.
    pub c_off: u32,
    /// Max pooling and concat: 1 when input and output quantizers are equal (codes copied).
    pub copy: u32,
    pub pad: u32,
}
const _: () = assert!(std::mem::size_of::<ExactParams>() == 144);

/// One weight tensor of a layer on the device.
pub struct ExactTensor {
    /// Centred weights, f32 `[CO, CI/G, KH, KW]`.
    pub w: wgpu::Buffer,
    /// `None`: one exact f32 sum (the `conv2d` kernels); `Some(L)`: chunks of L terms.
    pub chunk: Option<u32>,
}

/// A conv/linear layer of the simulation on the device.
pub struct GpuExactLayer {
    /// The layer as a conv without activation (a linear layer: 1×1 on 1×1).
    pub conv: Conv2d,
    pub tensors: Vec<ExactTensor>,
    /// CO zeros: the bias of the `conv2d` kernels.
    pub zeros: wgpu::Buffer,
    /// Per output channel (mult, mult2, bias, 0) of `requant::Epilogue`.
    pub chan: wgpu::Buffer,
    pub act: Activation,
    /// Output quantizer; `None`: f32 logits.
    pub out: Option<QParams>,
}

/// Uploads one weight tensor (unsigned `codes`, per-channel `params`) centred, for input
/// quantizer `x`.
pub fn upload_tensor(
    ctx: &GpuContext,
    codes: &[u8],
    params: &[QParams],
    x: &QParams,
    co: usize,
) -> Result<ExactTensor> {
    if params.len() != co || !codes.len().is_multiple_of(co.max(1)) {
        return Err(Error::Gpu(
            "exact layer: inconsistent weight tensors".into(),
        ));
    }
    let k = codes.len() / co.max(1);
    let centred: Vec<i32> = codes
        .chunks(k.max(1))
        .zip(params)
        .flat_map(|(row, p)| row.iter().map(move |&q| q as i32 - p.zero_point))
        .collect();
    let wmax = centred.iter().map(|v| v.unsigned_abs()).max().unwrap_or(0) as u64;
    let chunk = (!exact_in_f32(codes, params, x)).then(|| chunk_len(wmax * max_centred(x)));
    let w: Vec<f32> = centred.into_iter().map(|v| v as f32).collect();
    Ok(ExactTensor {
        w: buffers::upload(ctx, "exact weights", &w),
        chunk,
    })
}

fn act_u32(a: Activation) -> u32 {
    match a {
        Activation::None => 0,
        Activation::Relu => 1,
        Activation::Relu6 => 2,
    }
}

fn out_fields(p: &mut ExactParams, out: Option<QParams>) {
    match out {
        Some(q) => {
            p.out_zero = q.zero_point;
            p.out_qmax = q.qmax() as f32;
            p.out_scale = q.scale;
            p.out_inv = q.inv_scale();
            p.divides = u32::from(QUANTIZE_DIVIDES);
        }
        None => p.logits = 1,
    }
}

fn launch(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    entry: &'static str,
    bufs: [&wgpu::Buffer; 4],
    p: &ExactParams,
) -> Result<()> {
    let spec = KernelSpec {
        name: "conv_exact",
        source: SOURCE,
        entry,
        slots: &SLOTS,
        constants: &[],
        workgroup_bytes: 0,
    };
    buffers::launch(ctx, enc, &spec, &bufs, p, (p.total as u64).div_ceil(64))
}

/// Records the accumulators (f32 NCHW, `n·CO·OH·OW`) of weight tensor `t` of `l` on `n`
/// centred images of `h × w` in `x`. Returns (OH, OW).
#[allow(clippy::too_many_arguments)]
pub fn acc_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    x: &wgpu::Buffer,
    l: &GpuExactLayer,
    t: usize,
    acc: &wgpu::Buffer,
    n: usize,
    (h, w): (usize, usize),
) -> Result<(usize, usize)> {
    let c = &l.conv;
    let (oh, ow) = conv_out_hw(c, h, w)?;
    let st = l
        .tensors
        .get(t)
        .ok_or_else(|| Error::Gpu(format!("exact layer has no weight tensor {t}")))?;
    let Some(chunk) = st.chunk else {
        conv2d_encode(ctx, enc, x, &st.w, &l.zeros, acc, n, (h, w), c)?;
        return Ok((oh, ow));
    };
    let total = n * c.out_channels * oh * ow;
    let (cig, cog) = (c.in_channels / c.groups, c.out_channels / c.groups);
    buffers::check_len("acc_chunked x", x, n * c.in_channels * h * w)?;
    buffers::check_len(
        "acc_chunked w",
        &st.w,
        c.out_channels * cig * c.kernel[0] * c.kernel[1],
    )?;
    buffers::check_len("acc_chunked acc", acc, total)?;
    let p = ExactParams {
        n: u32_of("batch", n)?,
        ci: u32_of("in_channels", c.in_channels)?,
        h: u32_of("height", h)?,
        w: u32_of("width", w)?,
        co: u32_of("out_channels", c.out_channels)?,
        oh: oh as u32,
        ow: ow as u32,
        kh: c.kernel[0] as u32,
        kw: c.kernel[1] as u32,
        sh: c.stride[0] as u32,
        sw: c.stride[1] as u32,
        dh: c.dilation[0] as u32,
        dw: c.dilation[1] as u32,
        pt: c.padding[0] as u32,
        pl: c.padding[1] as u32,
        groups: c.groups as u32,
        cig: cig as u32,
        cog: cog as u32,
        chunk,
        total: u32_of("acc_chunked outputs", total)?,
        ..Default::default()
    };
    launch(ctx, enc, "acc_chunked", [x, &st.w, &st.w, acc], &p)?;
    Ok((oh, ow))
}

/// Records the epilogue of `l` on `[n, CO, plane]` accumulators (`acc2`: the second tensor
/// of a dual layer) into centred output codes, or f32 logits when `l` has no quantizer.
pub fn requant_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    (acc, acc2): (&wgpu::Buffer, Option<&wgpu::Buffer>),
    l: &GpuExactLayer,
    y: &wgpu::Buffer,
    n: usize,
    plane: usize,
) -> Result<()> {
    let co = l.conv.out_channels;
    let total = n * co * plane;
    buffers::check_len("requant acc", acc, total)?;
    buffers::check_len("requant y", y, total)?;
    if acc2.is_some() != (l.tensors.len() == 2) {
        return Err(Error::Gpu(
            "requant: dual accumulators do not match the layer".into(),
        ));
    }
    let mut p = ExactParams {
        co: u32_of("out_channels", co)?,
        plane: u32_of("plane", plane.max(1))?,
        total: u32_of("requant outputs", total)?,
        dual: u32::from(acc2.is_some()),
        act: act_u32(l.act),
        ..Default::default()
    };
    out_fields(&mut p, l.out);
    launch(
        ctx,
        enc,
        "requant",
        [acc, acc2.unwrap_or(acc), &l.chan, y],
        &p,
    )
}

/// Records the residual add of two centred tensors of `len` values.
pub fn add_exact_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    (a, pa): (&wgpu::Buffer, QParams),
    (b, pb): (&wgpu::Buffer, QParams),
    y: &wgpu::Buffer,
    len: usize,
    out: QParams,
) -> Result<()> {
    for (what, buf) in [("add a", a), ("add b", b), ("add y", y)] {
        buffers::check_len(what, buf, len)?;
    }
    let mut p = ExactParams {
        total: u32_of("add_exact values", len)?,
        s_a: pa.scale,
        s_b: pb.scale,
        ..Default::default()
    };
    out_fields(&mut p, Some(out));
    launch(ctx, enc, "add_exact", [a, b, a, y], &p)
}

/// Records global average pooling of a centred `[n, c, h, w]` tensor into `[n, c]`
/// (centred codes, or f32 logits when `out` is `None`).
pub fn gap_exact_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    (x, px): (&wgpu::Buffer, QParams),
    y: &wgpu::Buffer,
    (n, c, h, w): (usize, usize, usize, usize),
    out: Option<QParams>,
) -> Result<()> {
    buffers::check_len("gap x", x, n * c * h * w)?;
    buffers::check_len("gap y", y, n * c)?;
    let mut p = ExactParams {
        h: u32_of("height", h)?,
        w: u32_of("width", w)?,
        total: u32_of("gap_exact planes", n * c)?,
        chunk: chunk_len(max_centred(&px)),
        s_a: px.scale,
        s_b: inv_count(h * w),
        ..Default::default()
    };
    out_fields(&mut p, out);
    launch(ctx, enc, "gap_exact", [x, x, x, y], &p)
}

/// Records max (`max`) or average pooling `pool` of a centred `[n, c, h, w]` tensor into
/// `[n, c, oh, ow]`.
#[allow(clippy::too_many_arguments)]
pub fn pool_exact_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    (x, px): (&wgpu::Buffer, QParams),
    y: &wgpu::Buffer,
    (n, c, h, w): (usize, usize, usize, usize),
    (oh, ow): (usize, usize),
    pool: &Pool,
    max: bool,
    out: QParams,
) -> Result<()> {
    buffers::check_len("pool x", x, n * c * h * w)?;
    buffers::check_len("pool y", y, n * c * oh * ow)?;
    let mut p = ExactParams {
        h: u32_of("height", h)?,
        w: u32_of("width", w)?,
        oh: u32_of("pool height", oh)?,
        ow: u32_of("pool width", ow)?,
        kh: u32_of("pool kernel", pool.kernel[0])?,
        kw: u32_of("pool kernel", pool.kernel[1])?,
        sh: u32_of("pool stride", pool.stride[0])?,
        sw: u32_of("pool stride", pool.stride[1])?,
        pt: u32_of("pool padding", pool.padding[0])?,
        pl: u32_of("pool padding", pool.padding[1])?,
        total: u32_of("pool_exact values", n * c * oh * ow)?,
        s_a: px.scale,
        z_a: px.zero_point,
        copy: u32::from(px == out),
        ..Default::default()
    };
    out_fields(&mut p, Some(out));
    if max {
        launch(ctx, enc, "max_pool_exact", [x, x, x, y], &p)
    } else {
        // 1/max(divisor, 1) per count of in-bounds taps (host division, as `gap_real`;
        // kh·kw for every count with `count_include_pad`).
        let inv: Vec<f32> = (0..=pool.kernel[0] * pool.kernel[1])
            .map(|k| inv_count(pool.divisor(k)))
            .collect();
        let table = buffers::param_table(ctx, "pool 1/count", &inv);
        launch(ctx, enc, "avg_pool_exact", [x, x, &table, y], &p)
    }
}

/// Records one input of a channel concatenation: its `[n, c_in, plane]` centred values go
/// to channels `c_off..c_off + c_in` of `y` (`[n, co, plane]`).
#[allow(clippy::too_many_arguments)]
pub fn concat_exact_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    (x, px): (&wgpu::Buffer, QParams),
    y: &wgpu::Buffer,
    (n, plane): (usize, usize),
    (c_in, c_off, co): (usize, usize, usize),
    out: QParams,
) -> Result<()> {
    map_exact_encode(
        ctx,
        enc,
        (x, px),
        y,
        (n, plane),
        (c_in, c_off, co),
        Activation::None,
        out,
    )
}

/// Records a standalone activation (`requant::act_code`) of a centred `[n, c, plane]` tensor.
pub fn act_exact_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    (x, px): (&wgpu::Buffer, QParams),
    y: &wgpu::Buffer,
    (n, c, plane): (usize, usize, usize),
    act: Activation,
    out: QParams,
) -> Result<()> {
    map_exact_encode(ctx, enc, (x, px), y, (n, plane), (c, 0, c), act, out)
}

/// The `concat_exact` entry: channels `c_off..c_off + c_in` of `y` from `x` through
/// `act_code`.
#[allow(clippy::too_many_arguments)]
fn map_exact_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    (x, px): (&wgpu::Buffer, QParams),
    y: &wgpu::Buffer,
    (n, plane): (usize, usize),
    (c_in, c_off, co): (usize, usize, usize),
    act: Activation,
    out: QParams,
) -> Result<()> {
    buffers::check_len("concat x", x, n * c_in * plane)?;
    buffers::check_len("concat y", y, n * co * plane)?;
    let mut p = ExactParams {
        ci: u32_of("concat channels", c_in)?,
        co: u32_of("concat channels", co)?,
        plane: u32_of("concat plane", plane)?,
        total: u32_of("concat_exact values", n * c_in * plane)?,
        s_a: px.scale,
        c_off: c_off as u32,
        act: act_u32(act),
        copy: u32::from(px == out && act == Activation::None),
        ..Default::default()
    };
    out_fields(&mut p, Some(out));
    launch(ctx, enc, "concat_exact", [x, x, x, y], &p)
}
