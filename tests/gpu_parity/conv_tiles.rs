//! `conv2d_tiled_…`: the tiled f32 kernels (tile shape chosen per adapter and layer, the
//! depthwise patch staged in workgroup memory) give the bits of the untiled design they
//! replaced: `tests/fixtures/conv2d_untiled.wgsl`, the former `shaders/conv2d.wgsl` (fixed
//! 64 × 64 GEMM tiles, direct depthwise), kept here only as this reference. Shapes hit the
//! tile edges: odd channel counts, narrow layers (16- and 32-row tiles), reductions not a
//! multiple of the slice, a 1×1 map, stride 2, groups, depthwise patches with halos.

use ptq4::engine::device::buffers;
use ptq4::engine::device::{KernelSpec, Slot};
use ptq4::engine::gpu::conv2d::{self, Conv2dParams};
use ptq4::graph::{Activation, Conv2d};
use ptq4::Tensor;

use super::conv::data;
use super::ctx;

const UNTILED: &str = include_str!("../fixtures/conv2d_untiled.wgsl");

/// The untiled kernels on `x`, as the former launcher ran them.
fn untiled(
    ctx: &ptq4::engine::device::GpuContext,
    x: &Tensor,
    w: &Tensor,
    b: &[f32],
    c: &Conv2d,
) -> Vec<f32> {
    let (n, _, h, wd) = x.dims4().unwrap();
    let (oh, ow) = c.out_hw(h, wd).unwrap();
    let (cig, cog) = (c.in_channels / c.groups, c.out_channels / c.groups);
    let (tiles_p, tiles_m) = ((oh * ow).div_ceil(64), cog.div_ceil(64));
    let total = tiles_p * tiles_m * n * c.groups;
    let u = |v: usize| v as u32;
    let p = Conv2dParams {
        n: u(n),
        ci: u(c.in_channels),
        h: u(h),
        w: u(wd),
        co: u(c.out_channels),
        oh: u(oh),
        ow: u(ow),
        kh: u(c.kernel[0]),
        kw: u(c.kernel[1]),
        stride_h: u(c.stride[0]),
        stride_w: u(c.stride[1]),
        dil_h: u(c.dilation[0]),
        dil_w: u(c.dilation[1]),
        pad_t: u(c.padding[0]),
        pad_l: u(c.padding[1]),
        groups: u(c.groups),
        cig: u(cig),
        cog: u(cog),
        tiles_p: u(tiles_p),
        tiles_m: u(tiles_m),
        total: u(total),
        _pad: [0; 3],
    };
    let dw = c.is_depthwise();
    let act = [Activation::None, Activation::Relu, Activation::Relu6]
        .iter()
        .position(|&a| a == c.act)
        .unwrap() as f64;
    let constants = [("ACT", act)];
    let spec = KernelSpec {
        name: "conv2d_untiled",
        source: UNTILED,
        entry: if dw {
            "conv2d_depthwise"
        } else {
            "conv2d_gemm"
        },
        slots: &[
            Slot::Input,
            Slot::Input,
            Slot::Input,
            Slot::Output,
            Slot::Params,
        ],
        constants: &constants,
        workgroup_bytes: if dw { 0 } else { 8192 },
    };
    let len = n * c.out_channels * oh * ow;
    let groups = if dw { len.div_ceil(256) } else { total };
    let (xb, wb, bb) = (
        buffers::upload(ctx, "x", &x.data),
        buffers::upload(ctx, "w", &w.data),
        buffers::upload(ctx, "b", b),
    );
    let yb = buffers::filled(ctx, "y", len, buffers::SENTINEL_F32);
    let mut enc = ctx.encoder("untiled");
    buffers::launch(
        ctx,
        &mut enc,
        &spec,
        &[&xb, &wb, &bb, &yb],
        &p,
        groups as u64,
    )
    .unwrap();
    ctx.submit(enc).unwrap();
    buffers::read(ctx, &yb, len).unwrap()
}

/// `(in, out, kernel, stride, padding, groups, [n, h, w])`.
type Shape = (usize, usize, usize, usize, usize, usize, [usize; 3]);

const SHAPES: &[Shape] = &[
    (75, 70, 1, 1, 0, 1, [2, 9, 9]),
    (32, 16, 1, 1, 0, 1, [1, 20, 20]),
    (13, 24, 3, 2, 1, 1, [1, 11, 11]),
    (130, 5, 3, 1, 1, 1, [3, 1, 1]),
    (3, 32, 3, 2, 1, 1, [1, 33, 31]),
    (40, 66, 3, 1, 1, 2, [2, 6, 6]),
    (37, 37, 5, 2, 2, 37, [1, 13, 11]),
    (20, 20, 3, 1, 1, 20, [2, 35, 21]),
    (8, 8, 3, 1, 1, 8, [1, 1, 1]),
];

#[test]
fn conv2d_tiled_bits_equal_untiled() {
    let Some(ctx) = ctx() else { return };
    for (i, &(ci, co, k, s, pad, groups, [n, h, w])) in SHAPES.iter().enumerate() {
        let c = Conv2d {
            in_channels: ci,
            out_channels: co,
            kernel: [k, k],
            stride: [s, s],
            dilation: [1, 1],
            padding: [pad; 4],
            groups,
            bias: true,
            act: [Activation::None, Activation::Relu, Activation::Relu6][i % 3],
        };
        let seed = 0x5eed + i as u64;
        let x = Tensor::from_vec(&[n, ci, h, w], data(n * ci * h * w, seed, 3.0)).unwrap();
        let ws = c.weight_shape();
        let wt = Tensor::from_vec(&ws, data(ws.iter().product(), seed ^ 1, 1.0)).unwrap();
        let b = data(co, seed ^ 2, 1.0);
        let tiled = conv2d::conv2d(ctx, &x, &wt, Some(&b), &c).unwrap();
        let want = untiled(ctx, &x, &wt, &b, &c);
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
        assert_eq!(bits(&tiled.data), bits(&want), "{c:?} {n}×{h}×{w}");
    }
}
