//! Integer conv / depthwise / linear on the GPU (`shaders/conv_int.wgsl`), bit-exact twins
//! of `engine::cpu::int` + `engine::requant`. The layouts and the params struct below are
//! shared with the residual add and pooling on codes ([`super::eltwise_int`]).
//!
//! Layouts (all `u32` words):
//! - activations: NHWC codes, 4 `u8` per word, channels padded to a multiple of 8 with the
//!   tensor's zero point (real 0), so a pixel is `cw = 2·ceil(C/8)` words; `[N, F]` is the
//!   same with H = W = 1.
//! - weights, tensor t (t = 1: the second tensor of a dual layer), output channel c, tap
//!   (ky, kx): `ceil(CI/G / 8)` nibble words along the input channels (`quant::pack`,
//!   layout 3; `[t][c][tap][word]`), or for channels wider than 4 bits, `2·ceil(CI/G / 8)`
//!   words of 4 `i8` in the `wide` buffer (`[row][tap][word]`, layout 3's `i8` words).
//!   Padding channels hold code 0.
//! - channel table: `Chan { mult = s_w·s_x, bias, z_s, Σq_s, wide row }` per (t, c).
//!
//! Products: activations are shifted to signed (x_s = q_x − 128, one XOR per word) so all
//! dot products are `dot4I8Packed`; the exact sum Σ(q_s − z_s)(x_s − zx_s) is recovered as
//! Σq_s·x_s − zx_s·Σq_s − z_s·Σx_s + K·z_s·zx_s (wrapping `i32`, exact when the true sum fits
//! `i32`, which `IntModel::new` checks). Depthwise convs use scalar integer products.
//! Epilogue: `requant::Epilogue` op for op (product, then sum, the product kept out of FMA
//! contraction), then `QParams::quantize` (a true division or the reciprocal product, as
//! `requant::QUANTIZE_DIVIDES` says).
//!
//! Kernels: `conv_gemm`, a tiled implicit GEMM (workgroup-memory tiles of weights and
//! input patches, a 4 × 4 register block per invocation, tile shape [`GemmTile`] chosen per
//! adapter and layer as pipeline-overridable constants) for convs and linear layers with
//! groups = 1 and grouped convs whose group width is a multiple of 4 (so each output word
//! belongs to one group); `conv_int` (direct, four channels of one pixel per invocation)
//! for ungrouped layers with fewer than [`GEMM_MIN_PIXELS`] output pixels; `gconv_int` for other grouped convs, each output channel's sum
//! alone over its group's input channels, gathered at any byte offset (channels past the
//! group's read as the zero point); `dw_tiled` for depthwise convs (an 8 × 8 output tile per
//! workgroup and word of 4 channels, its input patch plus halo and the centred weights
//! staged in workgroup memory), or `dw_int` (direct) where the patch exceeds it. Integer
//! sums are exact in any order, so the tiling changes no code.

use bytemuck::{Pod, Zeroable};

use super::conv2d;
use crate::engine::cpu::int::{conv_out_hw, PackedWeights};
use crate::engine::device::buffers::{self, u32_of};
use crate::engine::device::context::{GpuContext, KernelSpec, Slot};
use crate::engine::requant::{Epilogue, QUANTIZE_DIVIDES};
use crate::error::{Error, Result};
use crate::graph::{Activation, Conv2d};
use crate::quant::pack::{pack_i4_words, pack_i8_words};
use crate::quant::QParams;

pub const SOURCE: &str = include_str!("../../../shaders/conv_int.wgsl");
const CONV_SLOTS: [Slot; 6] = [
    Slot::Input,
    Slot::Input,
    Slot::Input,
    Slot::Input,
    Slot::Output,
    Slot::Params,
];
const NONE: u32 = u32::MAX;

/// Uniform twin of the WGSL `Params` struct (both shaders).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct IntParams {
    pub n: u32,
    pub h: u32,
    pub w: u32,
    pub cw_in: u32,
    pub oh: u32,
    pub ow: u32,
    pub co: u32,
    pub cw_out: u32,
    pub kh: u32,
    pub kw: u32,
    pub sh: u32,
    pub sw: u32,
    pub dh: u32,
    pub dw: u32,
    pub pt: u32,
    pub pl: u32,
    pub cw8: u32,
    pub ntensor: u32,
    pub zx: i32,
    pub kpad: i32,
    pub out_zero: i32,
    pub out_qmax: f32,
    pub out_scale: f32,
    pub opaque: u32,
    pub total: u32,
    pub act: u32,
    pub s_a: f32,
    pub z_a: i32,
    pub s_b: f32,
    pub z_b: i32,
    /// 1/s of the output quantizer (f32), used unless `divides`.
    pub out_inv: f32,
    /// 1: x/s is a true division (`requant::QUANTIZE_DIVIDES`).
    pub divides: u32,
    /// Concat: channels of the input being copied, and their offset in the output.
    pub c_in: u32,
    pub c_off: u32,
    /// Max pooling and concat: 1 when input and output quantizers are equal (codes copied).
    pub copy: u32,
    /// Concat: 1 for the last input (it also writes the output's padding channels).
    pub last: u32,
    /// Conv: input / output channels per group.
    pub cig: u32,
    pub cog: u32,
    /// Tiled conv: pixel tiles and channel tiles per group.
    pub tiles_p: u32,
    pub tiles_m: u32,
}
const _: () = assert!(std::mem::size_of::<IntParams>() == 160);

/// Twin of the WGSL `Chan` struct.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct Chan {
    pub mult: f32,
    pub bias: f32,
    pub zs: i32,
    pub sumq: i32,
    pub wide: u32,
    pub _pad: [u32; 3],
}

/// Words per pixel of a `C`-channel activation.
pub fn words_per_pixel(c: usize) -> usize {
    2 * c.div_ceil(8)
}

/// NCHW codes → NHWC words, channels padded with `zero`.
pub fn pack_nhwc(codes: &[u8], (n, c, h, w): (usize, usize, usize, usize), zero: u8) -> Vec<u32> {
    let cw = words_per_pixel(c);
    let mut out = vec![u32::from(zero) * 0x0101_0101; n * h * w * cw];
    for img in 0..n {
        for ch in 0..c {
            for q in 0..h * w {
                let code = codes[(img * c + ch) * h * w + q] as u32;
                let word = &mut out[(img * h * w + q) * cw + ch / 4];
                *word = (*word & !(0xff << (8 * (ch % 4)))) | code << (8 * (ch % 4));
            }
        }
    }
    out
}

/// NHWC words → NCHW codes.
pub fn unpack_nhwc(words: &[u32], (n, c, h, w): (usize, usize, usize, usize)) -> Vec<u8> {
    let cw = words_per_pixel(c);
    let mut out = vec![0u8; n * c * h * w];
    for img in 0..n {
        for ch in 0..c {
            for q in 0..h * w {
                out[(img * c + ch) * h * w + q] =
                    (words[(img * h * w + q) * cw + ch / 4] >> (8 * (ch % 4))) as u8;
            }
        }
    }
    out
}

/// A conv/linear layer's weights and epilogue on the device.
pub struct GpuIntLayer {
    pub nib: wgpu::Buffer,
    pub wide: wgpu::Buffer,
    pub chan: wgpu::Buffer,
    pub ntensor: u32,
    pub co: usize,
    /// Input channels per group.
    pub cig: usize,
    pub taps: usize,
    pub act: Activation,
    /// Output quantizer; `None`: f32 logits.
    pub out: Option<QParams>,
}

impl GpuIntLayer {
    /// Re-lays out packed weights (reduction order `[cig, kh, kw]`) for the device.
    pub fn new(
        ctx: &GpuContext,
        tensors: &[&PackedWeights],
        ep: &Epilogue,
        taps: usize,
    ) -> Result<Self> {
        let first = tensors
            .first()
            .ok_or_else(|| Error::Gpu("integer layer without weights".into()))?;
        let (co, k) = (first.cout, first.k);
        if taps == 0 || k % taps != 0 || tensors.iter().any(|t| t.cout != co || t.k != k) {
            return Err(Error::Gpu(
                "integer layer: inconsistent weight tensors".into(),
            ));
        }
        let cig = k / taps;
        let cw8 = cig.div_ceil(8);
        let mut nib = vec![0u32; tensors.len() * co * taps * cw8];
        let (mut wide, mut chan) = (Vec::new(), Vec::new());
        for (t, w) in tensors.iter().enumerate() {
            for c in 0..co {
                let wide_row = if w.bits[c] > 4 {
                    let r = wide.len() / (taps * cw8 * 2);
                    wide.resize(wide.len() + taps * cw8 * 2, 0u32);
                    r as u32
                } else {
                    NONE
                };
                let mut sumq = 0i32;
                for tap in 0..taps {
                    // Signed codes of this (channel, tap) along the input channels.
                    let col: Vec<i8> = (0..cig)
                        .map(|ci| w.signed(c, ci * taps + tap) as i8)
                        .collect();
                    sumq += col.iter().map(|&s| s as i32).sum::<i32>();
                    if wide_row == NONE {
                        let i = ((t * co + c) * taps + tap) * cw8;
                        nib[i..i + cw8].copy_from_slice(&pack_i4_words(&col));
                    } else {
                        let i = (wide_row as usize * taps + tap) * cw8 * 2;
                        let words = pack_i8_words(&col);
                        wide[i..i + words.len()].copy_from_slice(&words);
                    }
                }
                let mult = match t {
                    0 => ep.mult[c],
                    _ => ep.mult2.as_ref().map_or(0.0, |m| m[c]),
                };
                chan.push(Chan {
                    mult,
                    bias: ep.bias[c],
                    zs: w.zero[c],
                    sumq,
                    wide: wide_row,
                    _pad: [0; 3],
                });
            }
        }
        Ok(GpuIntLayer {
            nib: buffers::upload(ctx, "int weights", &nib),
            wide: buffers::upload(ctx, "int wide weights", &wide),
            chan: buffers::upload(ctx, "int channels", &chan),
            ntensor: tensors.len() as u32,
            co,
            cig,
            taps,
            act: ep.act,
            out: ep.out,
        })
    }
}

pub(super) fn act_u32(a: Activation) -> u32 {
    match a {
        Activation::None => 0,
        Activation::Relu => 1,
        Activation::Relu6 => 2,
    }
}

pub(super) fn out_fields(p: &mut IntParams, out: Option<QParams>) {
    if let Some(q) = out {
        p.out_zero = q.zero_point;
        p.out_qmax = q.qmax() as f32;
        p.out_scale = q.scale;
        p.out_inv = 1.0 / q.scale;
        p.divides = u32::from(QUANTIZE_DIVIDES);
    }
}

/// Tile shape of `conv_gemm` (pipeline-overridable constants): `wgx × wgy` invocations own
/// a `4·wgy × 4·wgx` (channels × pixels) output tile and stage `tk` word pairs (8 input
/// channels each) of the reduction at a time; the shader's tiles hold `tk · 4·wgx` and
/// `tk · 4·wgy` entries, at most 512 each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmTile {
    pub wgx: u32,
    pub wgy: u32,
    pub tk: u32,
}

impl GemmTile {
    /// Workgroup memory `conv_gemm` declares: two 512-entry tiles of `vec2<u32>` and 256
    /// `i32` partial sums (within WebGPU's guaranteed 16 KiB).
    pub const WORKGROUP_BYTES: u32 = 2 * 512 * 8 + 256 * 4;

    /// The tile for a layer of `m` output channels per group (padding included) and a
    /// reduction of `kdim` word pairs on this adapter: 64 pixels (32 where the adapter runs
    /// fewer than 256 invocations per workgroup) by as few channel rows as cover `m` (16, 32
    /// or 64), so narrow layers waste no rows; the slice as deep as the tiles allow, but no
    /// deeper than the reduction (rounded up to 4).
    pub fn choose(ctx: &GpuContext, m: usize, kdim: usize) -> Self {
        // The workgroup shape is the f32 GEMM's rule.
        let conv2d::GemmTile { wgx, wgy, .. } = conv2d::GemmTile::choose(ctx, m);
        let cap = 128 / wgx.max(wgy);
        let mut tk = 4;
        while (tk as usize) < kdim && tk * 2 <= cap {
            tk *= 2;
        }
        GemmTile { wgx, wgy, tk }
    }
}

/// Ungrouped layers with fewer output pixels (over the batch) run the direct `conv_int`
/// (four channels of one pixel per invocation): a linear layer at batch 1 would fill one
/// row of a 64-pixel tile and leave the rest idle.
const GEMM_MIN_PIXELS: usize = 32;

/// `dw_tiled`: output tile side (pipeline-overridable `DWT`; 64 invocations, within every
/// adapter's limits), and the shader's patch (code words) and centred-weight array sizes.
const DW_TILE: u32 = 8;
const DW_PATCH: usize = 1024;
const DW_TAPS: usize = 128;

/// One invocation per output word (`p.total`), 64 per workgroup.
pub(super) fn launch(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    spec: KernelSpec<'_>,
    bufs: &[&wgpu::Buffer],
    p: &IntParams,
) -> Result<()> {
    buffers::launch(ctx, enc, &spec, bufs, p, (p.total as u64).div_ceil(64))
}

/// Records an integer conv (`c`; a linear layer is a 1×1 conv on a 1×1 input) of `n`
/// images of `h × w` held as NHWC words in `x` with input zero point `zx`. Writes NHWC
/// words, or f32 NCHW logits when the layer has no output quantizer. Returns (OH, OW).
#[allow(clippy::too_many_arguments)]
pub fn conv_int_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    x: &wgpu::Buffer,
    l: &GpuIntLayer,
    y: &wgpu::Buffer,
    n: usize,
    (h, w): (usize, usize),
    c: &Conv2d,
    zx: i32,
) -> Result<(usize, usize)> {
    let (oh, ow) = conv_out_hw(c, h, w)?;
    let depthwise = c.is_depthwise();
    let (cig, cog) = (c.in_channels / c.groups, c.out_channels / c.groups);
    let cw_in = words_per_pixel(c.in_channels);
    let cw_out = words_per_pixel(c.out_channels);
    let logits = l.out.is_none();
    // One invocation per output word of four channels; logits are written as NCHW f32.
    let total = n * oh * ow * cw_out;
    buffers::check_len("conv_int x", x, n * h * w * cw_in)?;
    let y_len = if logits {
        n * c.out_channels * oh * ow
    } else {
        total
    };
    buffers::check_len("conv_int y", y, y_len)?;
    let cw8 = l.cig.div_ceil(8);
    let mut p = IntParams {
        n: u32_of("batch", n)?,
        h: h as u32,
        w: w as u32,
        cw_in: cw_in as u32,
        oh: oh as u32,
        ow: ow as u32,
        co: u32_of("out_channels", c.out_channels)?,
        cw_out: cw_out as u32,
        kh: c.kernel[0] as u32,
        kw: c.kernel[1] as u32,
        sh: c.stride[0] as u32,
        sw: c.stride[1] as u32,
        dh: c.dilation[0] as u32,
        dw: c.dilation[1] as u32,
        pt: c.padding[0] as u32,
        pl: c.padding[1] as u32,
        cw8: cw8 as u32,
        ntensor: l.ntensor,
        zx,
        kpad: (l.taps * cw8 * 8) as i32,
        total: u32_of("conv_int outputs", total)?,
        act: act_u32(l.act),
        cig: u32_of("channels per group", cig)?,
        cog: u32_of("channels per group", cog)?,
        ..Default::default()
    };
    out_fields(&mut p, l.out);
    if depthwise && logits {
        return Err(Error::Gpu("a depthwise conv as the logits layer".into()));
    }
    let logits_c = if logits { 1.0 } else { 0.0 };
    let bufs = [x, &l.nib, &l.wide, &l.chan, y];
    let few_pixels = n * oh * ow < GEMM_MIN_PIXELS;
    if !depthwise && (c.groups == 1 || cog % 4 == 0) && !(few_pixels && c.groups == 1) {
        // The tiled implicit GEMM: one workgroup per (group, channel tile, pixel tile); the
        // last group's tiles also cover the output's padding channels (codes).
        let m_last = if logits {
            cog
        } else {
            4 * cw_out - (c.groups - 1) * cog
        };
        let t = GemmTile::choose(ctx, m_last, l.taps * cw8);
        let (tn, tm) = (4 * t.wgx as usize, 4 * t.wgy as usize);
        let (tiles_p, tiles_m) = ((n * oh * ow).div_ceil(tn), m_last.div_ceil(tm));
        p.tiles_p = u32_of("conv_int pixel tiles", tiles_p)?;
        p.tiles_m = u32_of("conv_int channel tiles", tiles_m)?;
        let groups = tiles_p * tiles_m * c.groups;
        p.total = u32_of("conv_int tiles", groups)?;
        let constants = [
            ("LOGITS", logits_c),
            ("WGX", f64::from(t.wgx)),
            ("WGY", f64::from(t.wgy)),
            ("TK", f64::from(t.tk)),
        ];
        let spec = KernelSpec {
            name: "conv_int",
            source: SOURCE,
            entry: "conv_gemm",
            slots: &CONV_SLOTS,
            constants: &constants,
            workgroup_bytes: GemmTile::WORKGROUP_BYTES,
        };
        buffers::launch(ctx, enc, &spec, &bufs, &p, groups as u64)?;
        return Ok((oh, ow));
    }
    if depthwise {
        // The tiled depthwise kernel where its patch and taps fit its workgroup arrays.
        let t = DW_TILE as usize;
        let (kh, kw) = (c.kernel[0], c.kernel[1]);
        let patch = ((t - 1) * c.stride[0] + (kh - 1) * c.dilation[0] + 1)
            * ((t - 1) * c.stride[1] + (kw - 1) * c.dilation[1] + 1);
        if patch <= DW_PATCH && l.ntensor as usize * kh * kw <= DW_TAPS {
            let (tiles_x, tiles_y) = (ow.div_ceil(t), oh.div_ceil(t));
            p.tiles_p = tiles_x as u32;
            p.tiles_m = tiles_y as u32;
            let groups = n * cw_out * tiles_y * tiles_x;
            p.total = u32_of("conv_int tiles", groups)?;
            let constants = [("DWT", f64::from(DW_TILE))];
            let spec = KernelSpec {
                name: "conv_int",
                source: SOURCE,
                entry: "dw_tiled",
                slots: &CONV_SLOTS,
                constants: &constants,
                workgroup_bytes: (DW_PATCH * 4 + DW_TAPS * 16) as u32,
            };
            buffers::launch(ctx, enc, &spec, &bufs, &p, groups as u64)?;
            return Ok((oh, ow));
        }
    }
    let constants = [("LOGITS", logits_c)];
    let spec = KernelSpec {
        name: "conv_int",
        source: SOURCE,
        entry: if depthwise {
            "dw_int"
        } else if c.groups == 1 {
            "conv_int"
        } else {
            "gconv_int"
        },
        slots: &CONV_SLOTS,
        constants: &constants,
        workgroup_bytes: 0,
    };
    launch(ctx, enc, spec, &bufs, &p)?;
    Ok((oh, ow))
}
