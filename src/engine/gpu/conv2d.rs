//! `conv2d`: 2-D convolution on the GPU (`shaders/conv2d.wgsl`).
//!
//! Computes `y[n, o, oy, ox] = act(b[o] + Σ_{i, ky, kx} w[o, i, ky, kx] ·
//! x[n, g·CI/G + i, oy·sh + ky·dh − pad_t, ox·sw + kx·dw − pad_l])` with `g = o / (CO/G)`,
//! out-of-bounds taps reading 0 (per-side padding, stride, dilation, groups) and `act` the
//! fused ReLU/ReLU6 (a pipeline-overridable constant). Layouts: x `[N, CI, H, W]`,
//! w `[CO, CI/G, KH, KW]`, b `[CO]`, y `[N, CO, OH, OW]`, all f32 row-major.
//!
//! Two entry points: `conv2d_gemm` (implicit GEMM per image and group, 64×64 output tiles,
//! K staged 16 at a time in 8 KiB of workgroup memory) for any `groups`, and
//! `conv2d_depthwise` (direct, one invocation per output) when groups = CI = CO.
//! Bindings: 0 x, 1 w, 2 b → 3 y → 4 [`Conv2dParams`]. Accumulation is f32 in k order
//! with the bias added last; the CPU oracle is `engine::cpu::reference::conv2d`.

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
const TILE: usize = 64;

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
    let (params, depthwise) = conv2d_params(x, w, b, y, n, (h, wd), c)?;
    let total = params.total as usize;
    let (oh, ow) = (params.oh as usize, params.ow as usize);
    let constants = [("ACT", act_code(c.act))];
    let spec = KernelSpec {
        name: "conv2d",
        source: SOURCE,
        entry: if depthwise {
            "conv2d_depthwise"
        } else {
            "conv2d_gemm"
        },
        slots: &SLOTS,
        constants: &constants,
        workgroup_bytes: if depthwise { 0 } else { 2 * 1024 * 4 },
    };
    let groups = if depthwise {
        (n * c.out_channels * oh * ow).div_ceil(256)
    } else {
        total
    };
    buffers::launch(ctx, enc, &spec, &[x, w, b, y], &params, groups as u64)
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
