//! `conv2d_…`, `pool_…`, `linear_…`: GPU kernels vs `engine::cpu::reference`.

use proptest::prelude::*;
use ptq4::engine::cpu::reference;
use ptq4::engine::gpu::{conv2d, linear, pool};
use ptq4::graph::{Activation, Conv2d, Linear, Pool};
use ptq4::Tensor;

use super::common::kernels;
use super::{ctx, runner, Tol};

pub use super::common::kernels::splitmix as data;

fn check_conv(c: &Conv2d, n: usize, h: usize, w: usize, seed: u64, scale: f32, const_ch: bool) {
    let Some(ctx) = ctx() else { return };
    let mut x = Tensor::from_vec(
        &[n, c.in_channels, h, w],
        data(n * c.in_channels * h * w, seed, scale),
    )
    .unwrap();
    if const_ch {
        for ni in 0..n {
            x.data[ni * c.in_channels * h * w..][..h * w].fill(0.75 * scale);
        }
    }
    let ws = c.weight_shape();
    let wt = Tensor::from_vec(&ws, data(ws.iter().product(), seed ^ 1, 1.0)).unwrap();
    let b = c.bias.then(|| data(c.out_channels, seed ^ 2, scale));
    let gpu = conv2d::conv2d(ctx, &x, &wt, b.as_deref(), c).unwrap();
    let tol = Tol::f32_dot(ws[1] * ws[2] * ws[3]);
    kernels::assert_conv2d("conv2d", &gpu, (&x, &wt, b.as_deref()), c, tol);
}

fn conv_strategy() -> impl Strategy<Value = (Conv2d, usize, usize, usize, u64, f32, bool)> {
    (
        (0usize..3, 1usize..=5, 1usize..=5, 1usize..=6),
        (1usize..=5, 1usize..=5, 1usize..=2, 1usize..=2, 1usize..=2),
        (prop::array::uniform4(0usize..=2), 0usize..3, any::<bool>()),
        (
            1usize..=2,
            0usize..=12,
            0usize..=12,
            any::<u64>(),
            prop::sample::select(vec![1.0f32, 1e4]),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (kind, cig, cog, dwc),
                (kh, kw, s, dh, dw),
                (padding, act, bias),
                (n, eh, ew, seed, scale, cc),
            )| {
                let (groups, ci, co) = match kind {
                    0 => (1, cig, cog),
                    1 => (dwc, dwc, dwc),
                    _ => (2, 2 * cig, 2 * cog),
                };
                let c = Conv2d {
                    in_channels: ci,
                    out_channels: co,
                    kernel: [kh, kw],
                    stride: [s, 3 - s],
                    dilation: [dh, dw],
                    padding,
                    groups,
                    bias,
                    act: [Activation::None, Activation::Relu, Activation::Relu6][act],
                };
                let (h, w) = (dh * (kh - 1) + 1 + eh, dw * (kw - 1) + 1 + ew);
                (c, n, h, w, seed, scale, cc)
            },
        )
}

#[test]
fn conv2d_matches_reference() {
    if ctx().is_none() {
        return;
    }
    runner(48)
        .run(&conv_strategy(), |(c, n, h, w, seed, scale, cc)| {
            check_conv(&c, n, h, w, seed, scale, cc);
            Ok(())
        })
        .unwrap();
}

fn conv(
    ci: usize,
    co: usize,
    k: usize,
    s: usize,
    groups: usize,
    pad: [usize; 4],
    act: Activation,
) -> Conv2d {
    Conv2d {
        in_channels: ci,
        out_channels: co,
        kernel: [k, k],
        stride: [s, s],
        dilation: [1, 1],
        padding: pad,
        groups,
        bias: true,
        act,
    }
}

#[test]
fn conv2d_gemm_spans_several_tiles() {
    // 72 output channels (2 channel tiles), 11×13 = 143 pixels (3 pixel tiles),
    // K = 24·9 = 216 (not a multiple of 16).
    check_conv(
        &conv(24, 72, 3, 1, 1, [1, 1, 1, 1], Activation::Relu6),
        2,
        11,
        13,
        11,
        1.0,
        false,
    );
}

#[test]
fn conv2d_depthwise_same_padding_stride2() {
    // EfficientNet-Lite style depthwise 5×5, stride 2 on an even size: pad 1 before, 2 after.
    check_conv(
        &conv(40, 40, 5, 2, 40, [1, 1, 2, 2], Activation::Relu6),
        2,
        14,
        14,
        12,
        1.0,
        true,
    );
}

fn pool_strategy() -> impl Strategy<Value = (Pool, [usize; 4], u64, f32)> {
    (
        1usize..=4,
        1usize..=3,
        prop::array::uniform4(0usize..=1),
        1usize..=2,
        1usize..=3,
        0usize..=9,
        any::<u64>(),
        prop::sample::select(vec![1.0f32, 1e4]),
    )
        .prop_map(|(k, s, padding, n, c, e, seed, scale)| {
            (
                Pool {
                    kernel: [k, k],
                    stride: [s, s],
                    padding,
                    count_include_pad: false,
                },
                [n, c, k + e, k + e + 1],
                seed,
                scale,
            )
        })
}

#[test]
fn pool_max_and_avg_match_reference() {
    let Some(ctx) = ctx() else { return };
    runner(48)
        .run(&pool_strategy(), |(p, shape, seed, scale)| {
            let x = Tensor::from_vec(&shape, data(shape.iter().product(), seed, scale)).unwrap();
            let g = pool::max_pool(ctx, &x, &p).unwrap();
            assert_eq!(
                g.data,
                reference::max_pool(&x, &p).data,
                "max pool is exact"
            );
            let g = pool::avg_pool(ctx, &x, &p).unwrap();
            // A sum of k² terms, then one division (2.5 ULP in WGSL): k² + 3 roundings.
            let tol = Tol::f32_dot(p.kernel[0] * p.kernel[1] + 1);
            kernels::assert_avg_pool("avg_pool", &g, &x, &p, tol);
            Ok(())
        })
        .unwrap();
}

#[test]
fn pool_global_avg_matches_reference() {
    let Some(ctx) = ctx() else { return };
    for (shape, seed) in [
        ([1, 1, 1, 1], 1),
        ([2, 3, 7, 9], 2),
        ([1, 5, 33, 31], 3),
        ([2, 2, 56, 56], 4),
    ] {
        let x = Tensor::from_vec(&shape, data(shape.iter().product(), seed, 3.0)).unwrap();
        let g = pool::global_avg_pool(ctx, &x).unwrap();
        // Small planes: one sequential sum and a division. Larger: per-thread sums of
        // ⌈HW/256⌉ terms, an 8-level tree, one division.
        let hw = shape[2] * shape[3];
        let depth = if hw <= pool::GLOBAL_SMALL_HW {
            hw + 1
        } else {
            hw.div_ceil(256) + 8 + 1
        };
        kernels::assert_global_avg_pool("global_avg_pool", &g, &x, Tol::f32_dot(depth));
    }
}

#[test]
fn linear_matches_reference() {
    let Some(ctx) = ctx() else { return };
    let strategy = (
        1usize..=3,
        1usize..=70,
        1usize..=40,
        0usize..3,
        any::<bool>(),
        any::<u64>(),
        prop::sample::select(vec![1.0f32, 1e4]),
    );
    runner(48)
        .run(&strategy, |(n, fin, fout, act, bias, seed, scale)| {
            let l = Linear {
                in_features: fin,
                out_features: fout,
                bias,
                act: [Activation::None, Activation::Relu, Activation::Relu6][act],
            };
            let x = Tensor::from_vec(&[n, fin], data(n * fin, seed, scale)).unwrap();
            let w = Tensor::from_vec(&[fout, fin], data(fout * fin, seed ^ 5, 1.0)).unwrap();
            let b = bias.then(|| data(fout, seed ^ 6, scale));
            let g = linear::linear(ctx, &x, &w, b.as_deref(), &l).unwrap();
            kernels::assert_linear("linear", &g, (&x, &w, b.as_deref()), &l, Tol::f32_dot(fin));
            Ok(())
        })
        .unwrap();
}
