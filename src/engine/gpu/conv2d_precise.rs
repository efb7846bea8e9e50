//! Calibration-precision conv2d, linear and global average pooling on the GPU
//! (`shaders/conv2d_precise.wgsl`), the twins of [`crate::engine::cpu::precise`].
//!
//! Each output is `round_f32(b + Σ w·x)` of the exact sum of the f32 products, up to an
//! error of O(K·2⁻⁴⁸)·Σ|w·x| before that one rounding: products are error-free by Dekker's
//! algorithm on 12-bit halves (split by integer arithmetic on the bits, so no `fma` is
//! needed and contracting any multiply-add cannot change a value, since every partial
//! product is exact), accumulated with TwoSum into a running f32 sum and an f32 sum of
//! the errors (Ogita–Rump–Oishi Dot2). The CPU twin accumulates the exact f64 products in
//! f64; both round the (nearly) exact value once, so the two backends agree bit for bit
//! except where the exact sum lies within ~2⁻²⁴ of a rounding boundary (one output in
//! thousands at worst, by one ulp). Global average pooling rounds the compensated sum to
//! f32 and divides by the count in f32 as the CPU does (WGSL allows 2.5 ulp for `/`;
//! IEEE devices, lavapipe included, divide correctly).
//!
//! Same layouts, bindings (0 x, 1 w, 2 b → 3 y → 4 params) and uniform
//! ([`Conv2dParams`]) as `conv2d`; `linear_precise` reads `n` rows, `ci` inputs and `co`
//! outputs from it, `global_avg_pool_precise` `n` planes of `h × w`. Costs ~17 f32 operations
//! per multiply-add instead of one: used only by calibration's forward, never by inference.

use super::conv2d::{act_code, conv2d_params, Conv2dParams};
use crate::engine::device::buffers::{self, u32_of};
use crate::engine::device::context::{GpuContext, KernelSpec, Slot};
use crate::error::Result;
use crate::graph::{Conv2d, Linear};

pub const SOURCE: &str = include_str!("../../../shaders/conv2d_precise.wgsl");
const SLOTS: [Slot; 5] = [
    Slot::Input,
    Slot::Input,
    Slot::Input,
    Slot::Output,
    Slot::Params,
];

#[allow(clippy::too_many_arguments)]
fn launch(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    entry: &'static str,
    act: f64,
    workgroup_bytes: u32,
    bufs: [&wgpu::Buffer; 4],
    params: &Conv2dParams,
    groups: u64,
) -> Result<()> {
    let constants = [("ACT", act)];
    let spec = KernelSpec {
        name: "conv2d_precise",
        source: SOURCE,
        entry,
        slots: &SLOTS,
        constants: &constants,
        workgroup_bytes,
    };
    buffers::launch(ctx, enc, &spec, &bufs, params, groups)
}

/// Records the precise convolution of `n` images of `h × w` (buffers as `conv2d_encode`).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_precise_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    x: &wgpu::Buffer,
    w: &wgpu::Buffer,
    b: &wgpu::Buffer,
    y: &wgpu::Buffer,
    n: usize,
    hw: (usize, usize),
    c: &Conv2d,
) -> Result<()> {
    let (mut params, depthwise) = conv2d_params(x, w, b, y, n, hw, c)?;
    let act = act_code(c.act);
    if depthwise {
        let outputs = n * c.out_channels * (params.oh * params.ow) as usize;
        params.total = u32_of("conv2d outputs", outputs)?;
        let groups = outputs.div_ceil(256) as u64;
        launch(
            ctx,
            enc,
            "conv2d_precise_depthwise",
            act,
            0,
            [x, w, b, y],
            &params,
            groups,
        )
    } else {
        let groups = params.total as u64;
        let wg = 4 * 1024 * 4;
        launch(
            ctx,
            enc,
            "conv2d_precise_gemm",
            act,
            wg,
            [x, w, b, y],
            &params,
            groups,
        )
    }
}

/// Records the precise `y = act(x·Wᵀ + b)` for `n` rows (buffers as `linear_encode`).
#[allow(clippy::too_many_arguments)]
pub fn linear_precise_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    x: &wgpu::Buffer,
    w: &wgpu::Buffer,
    b: &wgpu::Buffer,
    y: &wgpu::Buffer,
    n: usize,
    l: &Linear,
) -> Result<()> {
    let lp = super::linear::linear_params([x, w, b, y], n, l)?;
    let params = Conv2dParams {
        n: lp.n,
        ci: lp.k,
        co: lp.o,
        total: lp.total,
        ..Conv2dParams::default()
    };
    let groups = (lp.total as u64).div_ceil(256);
    let act = act_code(l.act);
    launch(
        ctx,
        enc,
        "linear_precise",
        act,
        0,
        [x, w, b, y],
        &params,
        groups,
    )
}

/// Records the precise mean of each of `planes` planes of `h × w` values of `x` into `y`.
pub fn global_avg_pool_precise_encode(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    planes: usize,
    (h, w): (usize, usize),
) -> Result<()> {
    buffers::check_len("pool x", x, planes * h * w)?;
    buffers::check_len("pool y", y, planes)?;
    let params = Conv2dParams {
        n: u32_of("planes", planes)?,
        h: u32_of("height", h)?,
        w: u32_of("width", w)?,
        ..Conv2dParams::default()
    };
    u32_of("pool inputs", planes * h * w)?;
    // Bindings 1 and 2 (weights, bias) are unused here: bind x read-only in their place.
    let groups = planes.div_ceil(64) as u64;
    launch(
        ctx,
        enc,
        "global_avg_pool_precise",
        0.0,
        0,
        [x, x, x, y],
        &params,
        groups,
    )
}
