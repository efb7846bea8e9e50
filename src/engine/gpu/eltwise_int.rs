//! Residual add, global/windowed average pooling, max pooling and concatenation on NHWC
//! code words on the GPU (`shaders/eltwise_int.wgsl`), bit-exact twins of
//! `engine::requant::{add_codes, gap_code, requant_code}`: dequantize, compute in f32,
//! requantize with the one rule (codes copied where `requant_code` copies). Word layout and
//! params struct as in [`super::conv_int`].
//! Bindings: 0 a, 1 b (x twice, or x and the table of 1/count for average pooling) → 2 y
//! → 3 [`IntParams`].

use super::conv_int::{act_u32, launch, out_fields, words_per_pixel, IntParams};
use crate::engine::device::buffers::{self, u32_of};
use crate::engine::device::context::{GpuContext, KernelSpec, Slot};
use crate::engine::requant::inv_count;
use crate::error::Result;
use crate::graph::{Activation, Pool};
use crate::quant::QParams;

pub const SOURCE: &str = include_str!("../../../shaders/eltwise_int.wgsl");
const SLOTS: [Slot; 4] = [Slot::Input, Slot::Input, Slot::Output, Slot::Params];

/// Records the residual add of two NHWC-word tensors of `words` words.
pub fn add_int_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    (a, pa): (&wgpu::Buffer, QParams),
    (b, pb): (&wgpu::Buffer, QParams),
    y: &wgpu::Buffer,
    words: usize,
    out: QParams,
) -> Result<()> {
    let mut p = IntParams {
        total: u32_of("add_int words", words)?,
        s_a: pa.scale,
        z_a: pa.zero_point,
        s_b: pb.scale,
        z_b: pb.zero_point,
        ..Default::default()
    };
    out_fields(&mut p, Some(out));
    let spec = KernelSpec {
        name: "eltwise_int",
        source: SOURCE,
        entry: "add_int",
        slots: &SLOTS,
        constants: &[],
        workgroup_bytes: 0,
    };
    launch(ctx, enc, spec, &[a, b, y], &p)
}

/// Records global average pooling of `n` NHWC-word images of `h × w × c` into `[n, c]`
/// words, or into `[n, c]` f32 logits when `out` is `None`.
#[allow(clippy::too_many_arguments)]
pub fn gap_int_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    x: &wgpu::Buffer,
    px: QParams,
    y: &wgpu::Buffer,
    (n, c, h, w): (usize, usize, usize, usize),
    out: Option<QParams>,
) -> Result<()> {
    let cw = words_per_pixel(c);
    let mut p = IntParams {
        h: u32_of("height", h)?,
        w: u32_of("width", w)?,
        cw_in: cw as u32,
        total: u32_of("gap_int words", n * cw)?,
        s_a: px.scale,
        z_a: px.zero_point,
        s_b: inv_count(h * w),
        ..Default::default()
    };
    out_fields(&mut p, out);
    p.co = u32_of("channels", c)?;
    let spec = KernelSpec {
        name: "eltwise_int",
        source: SOURCE,
        entry: if out.is_some() {
            "gap_int"
        } else {
            "gap_int_logits"
        },
        slots: &SLOTS,
        constants: &[],
        workgroup_bytes: 0,
    };
    launch(ctx, enc, spec, &[x, x, y], &p)
}

fn spec(entry: &'static str) -> KernelSpec<'static> {
    KernelSpec {
        name: "eltwise_int",
        source: SOURCE,
        entry,
        slots: &SLOTS,
        constants: &[],
        workgroup_bytes: 0,
    }
}

/// Records max (`max`) or average pooling `p` of `n` NHWC-word images of `h × w × c` into
/// `[n, oh, ow, c]` words (`requant_code` of the max code, or `gap_code` of each window).
#[allow(clippy::too_many_arguments)]
pub fn pool_int_encode(
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
    let cw = words_per_pixel(c);
    let mut p = IntParams {
        h: u32_of("height", h)?,
        w: u32_of("width", w)?,
        cw_in: cw as u32,
        oh: u32_of("pool height", oh)?,
        ow: u32_of("pool width", ow)?,
        co: u32_of("channels", c)?,
        cw_out: cw as u32,
        kh: u32_of("pool kernel", pool.kernel[0])?,
        kw: u32_of("pool kernel", pool.kernel[1])?,
        sh: u32_of("pool stride", pool.stride[0])?,
        sw: u32_of("pool stride", pool.stride[1])?,
        pt: u32_of("pool padding", pool.padding[0])?,
        pl: u32_of("pool padding", pool.padding[1])?,
        total: u32_of("pool_int words", n * oh * ow * cw)?,
        s_a: px.scale,
        z_a: px.zero_point,
        copy: u32::from(px == out),
        ..Default::default()
    };
    out_fields(&mut p, Some(out));
    if max {
        launch(ctx, enc, spec("max_pool_int"), &[x, x, y], &p)
    } else {
        // f32 bits of 1/max(divisor, 1) per in-bounds count (host division, correctly
        // rounded as in `gap_real`; kh·kw for every count with `count_include_pad`).
        let inv: Vec<u32> = (0..=pool.kernel[0] * pool.kernel[1])
            .map(|k| inv_count(pool.divisor(k)).to_bits())
            .collect();
        let table = buffers::param_table(ctx, "pool 1/count", &inv);
        launch(ctx, enc, spec("avg_pool_int"), &[x, &table, y], &p)
    }
}

/// Records one input of a channel concatenation: its `c_in` channels (NHWC words of
/// `pixels` pixels in `x`) go to channels `c_off..` of `y`, which has `co` channels; the
/// `last` input also writes the output's padding channels.
#[allow(clippy::too_many_arguments)]
pub fn concat_int_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    (x, px): (&wgpu::Buffer, QParams),
    y: &wgpu::Buffer,
    pixels: usize,
    (c_in, c_off, co): (usize, usize, usize),
    last: bool,
    out: QParams,
) -> Result<()> {
    map_int_encode(
        ctx,
        enc,
        (x, px),
        y,
        pixels,
        (c_in, c_off, co),
        last,
        Activation::None,
        out,
    )
}

/// Records a standalone activation (`requant::act_code`) of `pixels` pixels of `c` channels.
pub fn act_int_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    (x, px): (&wgpu::Buffer, QParams),
    y: &wgpu::Buffer,
    (pixels, c): (usize, usize),
    act: Activation,
    out: QParams,
) -> Result<()> {
    map_int_encode(ctx, enc, (x, px), y, pixels, (c, 0, c), true, act, out)
}

/// The `concat_int` entry: channels `c_off..c_off + c_in` of `y` from `x` through
/// `act_code`.
#[allow(clippy::too_many_arguments)]
fn map_int_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    (x, px): (&wgpu::Buffer, QParams),
    y: &wgpu::Buffer,
    pixels: usize,
    (c_in, c_off, co): (usize, usize, usize),
    last: bool,
    act: Activation,
    out: QParams,
) -> Result<()> {
    let mut p = IntParams {
        cw_in: words_per_pixel(c_in) as u32,
        co: u32_of("concat channels", co)?,
        cw_out: words_per_pixel(co) as u32,
        total: u32_of("concat_int words", pixels * words_per_pixel(co))?,
        s_a: px.scale,
        z_a: px.zero_point,
        c_in: c_in as u32,
        c_off: c_off as u32,
        act: act_u32(act),
        copy: u32::from(px == out && act == Activation::None),
        last: u32::from(last),
        ..Default::default()
    };
    out_fields(&mut p, Some(out));
    launch(ctx, enc, spec("concat_int"), &[x, x, y], &p)
}
