//! `conv2d`: 2-D convolution on the GPU (`shaders/conv2d.wgsl`).
//!
//! Computes `y[n, o, oy, ox] = act(b[o] + Σ_{i, ky, kx} w[o, i, ky, kx] ·
//! x[n, g·CI/G + i, oy·sh + ky·dh − pad_t, ox·sw + kx·dw − pad_l])` with `g = o / (CO/G)`,
//! out-of-bounds taps reading 0 (per-side padding, stride, dilation, groups) and `act` the
//! fused ReLU/ReLU6 (a pipeline-overridable constant). Layouts: x `[N, CI, H, W]`,
//! w `[CO, CI/G, KH, KW]`, b `[CO]`, y `[N, CO, OH, OW]`, all f32 row-major.
//!
//! Entry points: `conv2d_gemm`, a tiled implicit GEMM per image and group (workgroup-memory
//! tiles of weights and input patches, a 4 × 4 register block per invocation, the tile
//! shape [`GemmTile`] chosen per adapter and layer as pipeline-overridable constants) for
//! any `groups`; `conv2d_dw_tiled` when groups = CI = CO (a 16 × 16 output tile per
//! workgroup and channel, 8 × 8 on small maps, its input patch plus halo and the taps staged in workgroup
//! memory), or the direct `conv2d_depthwise` (one invocation per output) where the patch
//! exceeds it. Bindings: 0 x, 1 w, 2 b → 3 y → 4 [`Conv2dParams`]. Accumulation is f32 in k
//! order, one product at a time, with the bias added last, whatever the tile: the tiled
//! kernels give the bits of the untiled order. The CPU oracle is
//! `engine::cpu::reference::conv2d`.

use bytemuck::{Pod, Zeroable};

use crate::engine::device::buffers::{self, u32_of};
use crate::engine::device::context::{GpuContext, KernelSpec, Slot};
use crate::error::{Error, Result};
use crate::graph::{Activation, Conv2d};
use crate::tensor::Tensor;

pub const SOURCE: &str = include_str!("../../../shaders/conv2d.wgsl");
const SLOTS: [Slot; 5] = [
    Slot::Input,
    Slot::Input,
    Slot::Input,
    Slot::Output,
    Slot::Params,
];
/// `conv2d_params`' default tiles (64 × 64; the calibration-precision kernels use them).
const TILE: usize = 64;
/// `conv2d_dw_tiled`: output tile side (`DT`, 256 invocations; 8 on adapters that run fewer)
/// and its arrays' sizes.
const DW_TILE: usize = 16;
const DW_PATCH: usize = 2048;
const DW_TAPS: usize = 256;

/// Uniform twin of the WGSL `Params` struct.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct Conv2dParams {
    pub n: u32,
    pub ci: u32,
    pub h: u32,
    pub w: u32,
    pub co: u32,
    pub oh: u32,
    pub ow: u32,
    pub kh: u32,
    pub kw: u32,
    pub stride_h: u32,
    pub stride_w: u32,
    pub dil_h: u32,
    pub dil_w: u32,
    pub pad_t: u32,
    pub pad_l: u32,
    pub groups: u32,
    pub cig: u32,
    pub cog: u32,
    pub tiles_p: u32,
    pub tiles_m: u32,
    pub total: u32,
    pub _pad: [u32; 3],
}
const _: () = assert!(std::mem::size_of::<Conv2dParams>() == 96);

/// The pipeline-overridable `ACT` value of an activation (shared with `linear`).
pub(crate) fn act_code(a: Activation) -> f64 {
    match a {
        Activation::None => 0.0,
        Activation::Relu => 1.0,
        Activation::Relu6 => 2.0,
    }
}

/// Records the convolution of `n` images of `h × w` held in buffers. `b` must hold CO
/// values (zeros for no bias); `y` at least `n·CO·OH·OW`.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    x: &wgpu::Buffer,
    w: &wgpu::Buffer,
    b: &wgpu::Buffer,
    y: &wgpu::Buffer,
    n: usize,
    (h, wd): (usize, usize),
    c: &Conv2d,
) -> Result<()> {
    let (mut params, depthwise) = conv2d_params(x, w, b, y, n, (h, wd), c)?;
    let (oh, ow) = (params.oh as usize, params.ow as usize);
    let act = ("ACT", act_code(c.act));
    let spec = |entry, constants, workgroup_bytes| KernelSpec {
        name: "conv2d",
        source: SOURCE,
        entry,
        slots: &SLOTS,
        constants,
        workgroup_bytes,
    };
    let bufs = [x, w, b, y];
    if depthwise {
        // 8 × 8 on maps of at most 8 × 8 outputs (a 16 × 16 tile of a 7 × 7 map idles 80 %).
        let t = if wide_workgroups(ctx) && oh.max(ow) > 8 {
            DW_TILE
        } else {
            8
        };
        let (kh, kw) = (c.kernel[0], c.kernel[1]);
        let patch = ((t - 1) * c.stride[0] + (kh - 1) * c.dilation[0] + 1)
            * ((t - 1) * c.stride[1] + (kw - 1) * c.dilation[1] + 1);
        if patch <= DW_PATCH && kh * kw <= DW_TAPS {
            let (tiles_x, tiles_y) = (ow.div_ceil(t), oh.div_ceil(t));
            let groups = n * c.out_channels * tiles_y * tiles_x;
            params.tiles_p = u32_of("pixel tiles", tiles_x)?;
            params.tiles_m = u32_of("pixel tiles", tiles_y)?;
            params.total = u32_of("conv2d tiles", groups)?;
            let constants = [act, ("DT", t as f64)];
            let bytes = (4 * (DW_PATCH + DW_TAPS)) as u32;
            let spec = spec("conv2d_dw_tiled", &constants[..], bytes);
            return buffers::launch(ctx, enc, &spec, &bufs, &params, groups as u64);
        }
        let constants = [act];
        let spec = spec("conv2d_depthwise", &constants[..], 0);
        let groups = (n * c.out_channels * oh * ow).div_ceil(256);
        return buffers::launch(ctx, enc, &spec, &bufs, &params, groups as u64);
    }
    let t = GemmTile::choose(ctx, c.out_channels / c.groups);
    let (tn, tm) = (4 * t.wgx as usize, 4 * t.wgy as usize);
    let (tiles_p, tiles_m) = (
        (oh * ow).div_ceil(tn),
        (c.out_channels / c.groups).div_ceil(tm),
    );
    let groups = tiles_p * tiles_m * n * c.groups;
    params.tiles_p = u32_of("pixel tiles", tiles_p)?;
    params.tiles_m = u32_of("channel tiles", tiles_m)?;
    params.total = u32_of("conv2d tiles", groups)?;
    let constants = [
        act,
        ("WGX", f64::from(t.wgx)),
        ("WGY", f64::from(t.wgy)),
        ("TK", f64::from(t.tk)),
    ];
    let spec = spec("conv2d_gemm", &constants[..], 2 * 1024 * 4);
    buffers::launch(ctx, enc, &spec, &bufs, &params, groups as u64)
}

/// Whether the adapter runs 16 × 16 = 256 invocations per workgroup (WebGPU guarantees it;
/// the tiled kernels fall back to 8 × 8 elsewhere).
fn wide_workgroups(ctx: &GpuContext) -> bool {
    let l = ctx.limits();
    l.max_compute_invocations_per_workgroup >= 256
        && l.max_compute_workgroup_size_x >= 16
        && l.max_compute_workgroup_size_y >= 16
}

/// Tile shape of `conv2d_gemm` (pipeline-overridable constants): `wgx × wgy` invocations own
/// a `4·wgy × 4·wgx` (channels × pixels) output tile and stage `tk` reduction steps at a
/// time (the shader's tiles hold 1024 entries each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmTile {
    pub wgx: u32,
    pub wgy: u32,
    pub tk: u32,
}

impl GemmTile {
    /// The tile for `m` output channels per group on this adapter: 64 pixels (32 where the
    /// adapter runs fewer than 256 invocations per workgroup) by as few channel rows as
    /// cover `m` (16, 32 or 64), so narrow layers waste no rows; 16 reduction steps a stage.
    pub fn choose(ctx: &GpuContext, m: usize) -> Self {
        let top = if wide_workgroups(ctx) { 16 } else { 8 };
        let wgy = match m {
            0..=16 => 4,
            17..=32 => 8,
            _ => 16,
        }
        .min(top);
        GemmTile {
            wgx: top,
            wgy,
            tk: 16,
        }
    }
}

/// Checks the buffers of a convolution of `n` images of `h × w` and builds its uniform;
/// also whether it is depthwise (shared with the calibration-precision kernels).
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv2d_params(
    x: &wgpu::Buffer,
    w: &wgpu::Buffer,
    b: &wgpu::Buffer,
    y: &wgpu::Buffer,
    n: usize,
    (h, wd): (usize, usize),
    c: &Conv2d,
) -> Result<(Conv2dParams, bool)> {
    let (oh, ow) = out_hw(c, h, wd)?;
    let (cig, cog) = (c.in_channels / c.groups, c.out_channels / c.groups);
    buffers::check_len("conv2d x", x, n * c.in_channels * h * wd)?;
    buffers::check_len(
        "conv2d w",
        w,
        c.out_channels * cig * c.kernel[0] * c.kernel[1],
    )?;
    buffers::check_len("conv2d b", b, c.out_channels)?;
    buffers::check_len("conv2d y", y, n * c.out_channels * oh * ow)?;
    let depthwise = c.is_depthwise();
    let tiles_p = (oh * ow).div_ceil(TILE);
    let tiles_m = cog.div_ceil(TILE);
    let total = tiles_p * tiles_m * n * c.groups;
    let params = Conv2dParams {
        n: u32_of("batch", n)?,
        ci: u32_of("in_channels", c.in_channels)?,
        h: u32_of("height", h)?,
        w: u32_of("width", wd)?,
        co: u32_of("out_channels", c.out_channels)?,
        oh: oh as u32,
        ow: ow as u32,
        kh: u32_of("kernel", c.kernel[0])?,
        kw: u32_of("kernel", c.kernel[1])?,
        stride_h: u32_of("stride", c.stride[0])?,
        stride_w: u32_of("stride", c.stride[1])?,
        dil_h: u32_of("dilation", c.dilation[0])?,
        dil_w: u32_of("dilation", c.dilation[1])?,
        pad_t: u32_of("padding", c.padding[0])?,
        pad_l: u32_of("padding", c.padding[1])?,
        groups: u32_of("groups", c.groups)?,
        cig: cig as u32,
        cog: cog as u32,
        tiles_p: u32_of("pixel tiles", tiles_p)?,
        tiles_m: u32_of("channel tiles", tiles_m)?,
        total: u32_of("conv2d tiles", total)?,
        _pad: [0; 3],
    };
    u32_of("conv2d outputs", n * c.out_channels * oh * ow)?;
    Ok((params, depthwise))
}

fn out_hw(c: &Conv2d, h: usize, w: usize) -> Result<(usize, usize)> {
    if c.groups == 0
        || !c.in_channels.is_multiple_of(c.groups)
        || !c.out_channels.is_multiple_of(c.groups)
    {
        return Err(Error::Engine(format!(
            "conv2d: groups {} must divide {} and {}",
            c.groups, c.in_channels, c.out_channels
        )));
    }
    c.out_hw(h, w).ok_or_else(|| {
        Error::Engine(format!(
            "conv2d: window {:?} does not fit {h}×{w}",
            c.kernel
        ))
    })
}

/// Runs `conv2d` on host tensors: uploads, chunks the batch under the binding limit,
/// fills outputs with [`buffers::SENTINEL_F32`] first, reads back.
pub fn conv2d(
    ctx: &GpuContext,
    x: &Tensor,
    w: &Tensor,
    b: Option<&[f32]>,
    c: &Conv2d,
) -> Result<Tensor> {
    let (n, ci, h, wd) = x.dims4()?;
    let (oh, ow) = out_hw(c, h, wd)?;
    if ci != c.in_channels || w.shape != c.weight_shape() {
        return Err(Error::Shape {
            node: "conv2d".into(),
            expected: c.weight_shape(),
            actual: w.shape.clone(),
        });
    }
    let zeros;
    let bias = match b {
        Some(b) if b.len() == c.out_channels => b,
        Some(b) => {
            return Err(Error::Engine(format!(
                "conv2d: {} bias values for {} channels",
                b.len(),
                c.out_channels
            )))
        }
        None => {
            zeros = vec![0.0f32; c.out_channels];
            &zeros
        }
    };
    let (in_item, out_item) = (ci * h * wd, c.out_channels * oh * ow);
    let wbuf = buffers::upload(ctx, "conv2d w", &w.data);
    let bbuf = buffers::upload(ctx, "conv2d b", bias);
    let mut out = Tensor::zeros(&[n, c.out_channels, oh, ow]);
    for r in buffers::batch_chunks(ctx, n, (in_item.max(out_item) * 4) as u64)? {
        let m = r.len();
        let xbuf = buffers::upload(ctx, "conv2d x", &x.data[r.start * in_item..r.end * in_item]);
        let ybuf = buffers::filled(ctx, "conv2d y", m * out_item, buffers::SENTINEL_F32);
        let mut enc = ctx.encoder("conv2d");
        conv2d_encode(ctx, &mut enc, &xbuf, &wbuf, &bbuf, &ybuf, m, (h, wd), c)?;
        ctx.submit(enc)?;
        let y: Vec<f32> = buffers::read(ctx, &ybuf, m * out_item)?;
        out.data[r.start * out_item..r.end * out_item].copy_from_slice(&y);
    }
    Ok(out)
}
