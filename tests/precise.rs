//! Calibration-precision kernels: the CPU ones (f64 accumulation) against a direct f64
//! oracle, and the GPU ones (compensated f32) against the CPU ones, bit for bit except in
//! rare near-ties. Inputs have a large common offset so sums cancel (as late depthwise
//! outputs of real networks do), which is where the fast f32 kernels of the two backends
//! part by many ulps.

mod common;

use common::tol::Tol;
use common::{conv, rand};
use ptq4::engine::cpu::precise;
use ptq4::engine::device::{buffers, GpuContext};
use ptq4::engine::gpu::conv2d_precise::{
    conv2d_precise_encode, global_avg_pool_precise_encode, linear_precise_encode,
};
use ptq4::graph::{Activation, Conv2d, Linear};
use ptq4::Tensor;

/// Uniform values around `offset` with a common scale, so sums of products cancel.
fn offset_rand(shape: &[usize], offset: f32, seed: &mut u64) -> Tensor {
    let mut t = rand(shape, seed);
    t.data.iter_mut().for_each(|v| *v += offset);
    t
}

/// Asserts `got` equals `want` bitwise except a [`Tol::NEAR_TIE_FRACTION`] of outputs within
/// [`Tol::NEAR_TIE`].
fn assert_nearly_identical(what: &str, got: &[f32], want: &[f32]) -> usize {
    assert_eq!(got.len(), want.len(), "{what}");
    let mut differ = 0;
    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
        if a.to_bits() != b.to_bits() {
            differ += 1;
            assert!(
                common::tol::ulps(a, b) <= Tol::NEAR_TIE.ulps,
                "{what}[{i}]: {a} vs {b}"
            );
        }
    }
    let frac = differ as f64 / got.len() as f64;
    assert!(
        frac <= Tol::NEAR_TIE_FRACTION,
        "{what}: {differ} of {} differ",
        got.len()
    );
    differ
}

/// Direct f64 convolution rounded once (the oracle of `precise::conv2d`).
fn conv_f64(x: &Tensor, w: &Tensor, b: &[f32], c: &Conv2d) -> Vec<f32> {
    let (n, ci, h, wd) = x.dims4().unwrap();
    let (oh, ow) = c.out_hw(h, wd).unwrap();
    let (cig, cog) = (ci / c.groups, c.out_channels / c.groups);
    let (kh, kw) = (c.kernel[0], c.kernel[1]);
    let mut y = Vec::with_capacity(n * c.out_channels * oh * ow);
    for img in 0..n {
        for (o, &bo) in b.iter().enumerate() {
            let g = o / cog;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut s = bo as f64;
                    for i in 0..cig {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * c.stride[0] + ky) as isize - c.padding[0] as isize;
                                let ix = (ox * c.stride[1] + kx) as isize - c.padding[1] as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                    continue;
                                }
                                let xv = x.data[((img * ci + g * cig + i) * h + iy as usize) * wd
                                    + ix as usize];
                                let wv = w.data[((o * cig + i) * kh + ky) * kw + kx];
                                s += xv as f64 * wv as f64;
                            }
                        }
                    }
                    y.push(s as f32);
                }
            }
        }
    }
    y
}

fn gpu_conv(ctx: &GpuContext, x: &Tensor, w: &Tensor, b: &[f32], c: &Conv2d) -> Vec<f32> {
    let (n, _, h, wd) = x.dims4().unwrap();
    let (oh, ow) = c.out_hw(h, wd).unwrap();
    let len = n * c.out_channels * oh * ow;
    let (xb, wb, bb) = (
        buffers::upload(ctx, "x", &x.data),
        buffers::upload(ctx, "w", &w.data),
        buffers::upload(ctx, "b", b),
    );
    let yb = buffers::filled(ctx, "y", len, buffers::SENTINEL_F32);
    let mut enc = ctx.encoder("precise conv");
    conv2d_precise_encode(ctx, &mut enc, &xb, &wb, &bb, &yb, n, (h, wd), c).unwrap();
    ctx.submit(enc).unwrap();
    buffers::read(ctx, &yb, len).unwrap()
}

/// (cin, cout, k, stride, groups, h, w): 3×3 stride 2, 5×5 depthwise, 1×1 with K = 96
/// (one full and one partial 16-deep K stage past 64), grouped, odd sizes for the tiles.
const CASES: [(usize, usize, usize, usize, usize, usize, usize); 5] = [
    (3, 8, 3, 2, 1, 17, 15),
    (12, 12, 5, 1, 12, 11, 9),
    (12, 12, 3, 2, 12, 9, 10),
    (96, 70, 1, 1, 1, 9, 8),
    (8, 6, 3, 1, 2, 7, 7),
];

#[test]
fn cpu_precise_conv_is_the_rounded_f64_sum() {
    let mut seed = 3;
    for (ci, co, k, s, g, h, w) in CASES {
        let c = Conv2d {
            bias: true,
            ..conv(ci, co, k, s, g)
        };
        let x = offset_rand(&[2, ci, h, w], 2.0, &mut seed);
        let wt = rand(&c.weight_shape(), &mut seed);
        let b = rand(&[co], &mut seed).data;
        let got = precise::conv2d(&x, &wt, Some(&b), &c).unwrap();
        assert_nearly_identical("cpu conv", &got.data, &conv_f64(&x, &wt, &b, &c));
    }
}

#[test]
fn gpu_precise_conv_equals_cpu_precise() {
    let Some(ctx) = common::gpu() else {
        return;
    };
    let mut seed = 7;
    let mut differ = 0;
    for (ci, co, k, s, g, h, w) in CASES {
        for act in [Activation::None, Activation::Relu6] {
            let c = Conv2d {
                bias: true,
                act,
                ..conv(ci, co, k, s, g)
            };
            let x = offset_rand(&[2, ci, h, w], 2.0, &mut seed);
            let wt = rand(&c.weight_shape(), &mut seed);
            let b = rand(&[co], &mut seed).data;
            let mut want = precise::conv2d(&x, &wt, Some(&b), &c).unwrap().data;
            if act == Activation::Relu6 {
                want.iter_mut().for_each(|v| *v = v.clamp(0.0, 6.0));
            }
            let got = gpu_conv(&ctx, &x, &wt, &b, &c);
            differ += assert_nearly_identical("gpu conv", &got, &want);
        }
    }
    eprintln!("precise conv: {differ} outputs one ulp apart");
}

#[test]
fn gpu_precise_linear_and_pool_equal_cpu_precise() {
    let Some(ctx) = common::gpu() else {
        return;
    };
    let mut seed = 13;
    let (n, k, o) = (3, 1283, 37);
    let l = Linear {
        in_features: k,
        out_features: o,
        bias: true,
        act: Activation::None,
    };
    let x = offset_rand(&[n, k], 1.0, &mut seed);
    let w = rand(&[o, k], &mut seed);
    let b = rand(&[o], &mut seed).data;
    let want = precise::linear(&x, &w, Some(&b), &l).unwrap();
    let (xb, wb, bb) = (
        buffers::upload(&ctx, "x", &x.data),
        buffers::upload(&ctx, "w", &w.data),
        buffers::upload(&ctx, "b", &b),
    );
    let yb = buffers::filled(&ctx, "y", n * o, buffers::SENTINEL_F32);
    let mut enc = ctx.encoder("precise linear");
    linear_precise_encode(&ctx, &mut enc, &xb, &wb, &bb, &yb, n, &l).unwrap();
    ctx.submit(enc).unwrap();
    let got: Vec<f32> = buffers::read(&ctx, &yb, n * o).unwrap();
    assert_nearly_identical("gpu linear", &got, &want.data);

    // Planes of 7×7 (Lite0's head) and 23×29, values with a common offset.
    for (h, w) in [(7, 7), (23, 29)] {
        let x = offset_rand(&[2, 5, h, w], 3.0, &mut seed);
        let want = precise::global_avg_pool(&x).unwrap();
        let xb = buffers::upload(&ctx, "x", &x.data);
        let yb = buffers::filled(&ctx, "y", 10, buffers::SENTINEL_F32);
        let mut enc = ctx.encoder("precise pool");
        global_avg_pool_precise_encode(&ctx, &mut enc, &xb, &yb, 10, (h, w)).unwrap();
        ctx.submit(enc).unwrap();
        let got: Vec<f32> = buffers::read(&ctx, &yb, 10).unwrap();
        assert_nearly_identical("gpu pool", &got, &want.data);
    }
}
