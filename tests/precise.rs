//! Calibration-precision kernels, one suite per kernel instantiated per device: the CPU
//! ones (f64 accumulation) and the GPU ones (compensated f32) against a direct f64 oracle
//! rounded once, and the GPU ones against the CPU ones too, bit for bit except in rare
//! near-ties. Inputs have a large common offset so sums cancel (as late depthwise outputs of
//! real networks do), which is where the fast f32 kernels of the two backends part by many
//! ulps.

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

/// Where the precise kernels run.
#[derive(Clone, Copy)]
enum Device {
    Cpu,
    Gpu(&'static GpuContext),
}

impl Device {
    fn name(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Gpu(_) => "gpu",
        }
    }

    /// Precise conv, then `c.act` (the CPU kernel leaves the activation to its caller).
    fn conv(self, x: &Tensor, w: &Tensor, b: &[f32], c: &Conv2d) -> Vec<f32> {
        match self {
            Device::Cpu => act(precise::conv2d(x, w, Some(b), c).unwrap().data, c.act),
            Device::Gpu(ctx) => gpu_conv(ctx, x, w, b, c),
        }
    }

    fn linear(self, x: &Tensor, w: &Tensor, b: &[f32], l: &Linear) -> Vec<f32> {
        let ctx = match self {
            Device::Cpu => return precise::linear(x, w, Some(b), l).unwrap().data,
            Device::Gpu(ctx) => ctx,
        };
        let n = x.shape[0];
        let o = l.out_features;
        let (xb, wb, bb) = (
            buffers::upload(ctx, "x", &x.data),
            buffers::upload(ctx, "w", &w.data),
            buffers::upload(ctx, "b", b),
        );
        let yb = buffers::filled(ctx, "y", n * o, buffers::SENTINEL_F32);
        let mut enc = ctx.encoder("precise linear");
        linear_precise_encode(ctx, &mut enc, &xb, &wb, &bb, &yb, n, l).unwrap();
        ctx.submit(enc).unwrap();
        buffers::read(ctx, &yb, n * o).unwrap()
    }

    fn global_avg_pool(self, x: &Tensor) -> Vec<f32> {
        let ctx = match self {
            Device::Cpu => return precise::global_avg_pool(x).unwrap().data,
            Device::Gpu(ctx) => ctx,
        };
        let (n, c, h, w) = x.dims4().unwrap();
        let xb = buffers::upload(ctx, "x", &x.data);
        let yb = buffers::filled(ctx, "y", n * c, buffers::SENTINEL_F32);
        let mut enc = ctx.encoder("precise pool");
        global_avg_pool_precise_encode(ctx, &mut enc, &xb, &yb, n * c, (h, w)).unwrap();
        ctx.submit(enc).unwrap();
        buffers::read(ctx, &yb, n * c).unwrap()
    }
}

/// `y` after the activation `a`.
fn act(mut y: Vec<f32>, a: Activation) -> Vec<f32> {
    y.iter_mut().for_each(|v| *v = a.apply(*v));
    y
}

/// Direct f64 `x·Wᵀ + b` rounded once (the oracle of `precise::linear`).
fn linear_f64(x: &Tensor, w: &Tensor, b: &[f32]) -> Vec<f32> {
    let k = x.shape[1];
    x.data
        .chunks(k)
        .flat_map(|row| {
            w.data.chunks(k).zip(b).map(move |(wr, &bo)| {
                let s: f64 = row.iter().zip(wr).map(|(&a, &c)| a as f64 * c as f64).sum();
                (s + bo as f64) as f32
            })
        })
        .collect()
}

/// Direct f64 plane sums rounded once, then one f32 division by the plane size (the oracle
/// of `precise::global_avg_pool`, whose division is in f32 on both backends).
fn global_avg_pool_f64(x: &Tensor) -> Vec<f32> {
    let hw = x.shape[2] * x.shape[3];
    x.data
        .chunks(hw)
        .map(|p| p.iter().map(|&v| v as f64).sum::<f64>() as f32 / hw as f32)
        .collect()
}

/// Asserts `got` (from `device`) is nearly `oracle`, and on the GPU nearly the CPU's `cpu`.
fn check(what: &str, device: Device, got: &[f32], oracle: &[f32], cpu: &[f32]) -> usize {
    let mut differ = assert_nearly_identical(&format!("{} {what}", device.name()), got, oracle);
    if let Device::Gpu(_) = device {
        differ += assert_nearly_identical(&format!("gpu {what} vs cpu"), got, cpu);
    }
    differ
}

/// (cin, cout, k, stride, groups, h, w): 3×3 stride 2, 5×5 depthwise, depthwise stride 2
/// with one and two padding columns (odd and even phase of the first input column), 1×1
/// with K = 96 (one full and one partial 16-deep K stage past 64), grouped, odd sizes for
/// the tiles.
const CASES: [(usize, usize, usize, usize, usize, usize, usize); 6] = [
    (3, 8, 3, 2, 1, 17, 15),
    (12, 12, 5, 1, 12, 11, 9),
    (12, 12, 3, 2, 12, 9, 10),
    (12, 12, 5, 2, 12, 11, 13),
    (96, 70, 1, 1, 1, 9, 8),
    (8, 6, 3, 1, 2, 7, 7),
];

/// The precise conv on `device`, without and with a fused ReLU6, is the f64 sum rounded once.
fn precise_conv_suite(device: Device) {
    let mut seed = 3;
    let mut differ = 0;
    for (ci, co, k, s, g, h, w) in CASES {
        for a in [Activation::None, Activation::Relu6] {
            let c = Conv2d {
                bias: true,
                act: a,
                ..conv(ci, co, k, s, g)
            };
            let x = offset_rand(&[2, ci, h, w], 2.0, &mut seed);
            let wt = rand(&c.weight_shape(), &mut seed);
            let b = rand(&[co], &mut seed).data;
            let got = device.conv(&x, &wt, &b, &c);
            let oracle = act(conv_f64(&x, &wt, &b, &c), a);
            differ += check(
                "conv",
                device,
                &got,
                &oracle,
                &Device::Cpu.conv(&x, &wt, &b, &c),
            );
        }
    }
    eprintln!(
        "{} precise conv: {differ} outputs one ulp apart",
        device.name()
    );
}

/// The precise linear (K = 1283) and global average pool (Lite0's 7×7 head, 23×29) on
/// `device` are the f64 results rounded once.
fn precise_linear_and_pool_suite(device: Device) {
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
    let got = device.linear(&x, &w, &b, &l);
    let cpu = Device::Cpu.linear(&x, &w, &b, &l);
    check("linear", device, &got, &linear_f64(&x, &w, &b), &cpu);
    for (h, w) in [(7, 7), (23, 29)] {
        let x = offset_rand(&[2, 5, h, w], 3.0, &mut seed);
        let got = device.global_avg_pool(&x);
        let cpu = Device::Cpu.global_avg_pool(&x);
        check("pool", device, &got, &global_avg_pool_f64(&x), &cpu);
    }
}

#[test]
fn cpu_precise_conv_is_the_rounded_f64_sum() {
    precise_conv_suite(Device::Cpu);
}

#[test]
fn gpu_precise_conv_is_the_rounded_f64_sum() {
    if let Some(ctx) = common::gpu() {
        precise_conv_suite(Device::Gpu(ctx));
    }
}

#[test]
fn cpu_precise_linear_and_pool_are_the_rounded_f64_results() {
    precise_linear_and_pool_suite(Device::Cpu);
}

#[test]
fn gpu_precise_linear_and_pool_are_the_rounded_f64_results() {
    if let Some(ctx) = common::gpu() {
        precise_linear_and_pool_suite(Device::Gpu(ctx));
    }
}
