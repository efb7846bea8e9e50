//! Integer vs f32 on EfficientNet-Lite0.
//!
//! Whole model, `int/model/<exec>/b<batch>` (images/s as criterion throughput), batch 16 and
//! 1 interleaved in one run: `cpu-int` (deploy W4A4 plan, data-free, `IntModel::forward` with
//! the integer kernels) vs `cpu-f32` (the FP32 model through `engine::forward`).
//!
//! Per layer, `int/<engine>/<layer>` at batch 1: `cpu-int` (the model's path: NHWC `u8`
//! codes, weights packed once, VNNI/AVX2/portable GEMM or the depthwise kernel, fused
//! requantization to codes), `cpu-acc` (`conv2d_acc`, the NCHW entry point: transposes and
//! raw accumulators), `cpu-f32` (`engine::cpu::conv2d`, the engine's f32 path in this
//! build), `cpu-sgemm` (im2col + `matrixmultiply::sgemm`, the fast f32 baseline), and on the
//! GPU `gpu-int` (`conv_int`) vs `gpu-f32` (`conv2d`) on the 1×1 shapes at batch 16 (GPU
//! time; see `benches/gpu.rs`). Figures from lavapipe (a CPU rasteriser) make no GPU
//! performance claim; the adapter is printed first. `PTQ4_BENCH_QUICK=1`: short run.

mod common;

use common::gpu_time;

use std::time::Duration;

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput};
use ptq4::engine::cpu::int::{conv2d_acc, epi, transpose, CpuLayer, Isa, PackedWeights, QTensor};
use ptq4::engine::device::{buffers, GpuContext};
use ptq4::engine::exec::int_model::{Exec, IntModel};
use ptq4::engine::gpu::conv2d;
use ptq4::engine::gpu::conv_int::{conv_int_encode, pack_nhwc, GpuIntLayer};
use ptq4::engine::requant::Epilogue;
use ptq4::graph::{passes, Activation, Conv2d};
use ptq4::quant::config::{quant_points, Protocol, QuantConfig};
use ptq4::quant::plan::make_plan;
use ptq4::quant::QParams;
use ptq4::tensor::Tensor;

fn conv(ci: usize, co: usize, k: usize, s: usize, groups: usize) -> Conv2d {
    let p = k / 2;
    Conv2d {
        in_channels: ci,
        out_channels: co,
        kernel: [k, k],
        stride: [s, s],
        dilation: [1, 1],
        padding: if s == 2 { [p - 1, p - 1, p, p] } else { [p; 4] },
        groups,
        bias: true,
        act: Activation::Relu6,
    }
}

/// (name, conv, input size) of Lite0 layers.
fn layers() -> Vec<(&'static str, Conv2d, usize)> {
    vec![
        ("stem", conv(3, 32, 3, 2, 1), 224),
        ("blocks.0.dw", conv(32, 32, 3, 1, 32), 112),
        ("blocks.0.project", conv(32, 16, 1, 1, 1), 112),
        ("blocks.3.expand", conv(24, 144, 1, 1, 1), 56),
        ("blocks.4.dw", conv(240, 240, 5, 1, 240), 28),
        ("blocks.4.project", conv(240, 40, 1, 1, 1), 28),
        ("blocks.15.expand", conv(192, 1152, 1, 1, 1), 7),
        ("head", conv(320, 1280, 1, 1, 1), 7),
    ]
}

struct Layer {
    x: QTensor,
    /// The input codes channel-minor, as the integer model holds them.
    x_nhwc: Vec<u8>,
    xf: Tensor,
    w: PackedWeights,
    wf: Tensor,
    ep: Epilogue,
}

fn make(cv: &Conv2d, n: usize, hw: usize) -> Layer {
    let shape = cv.weight_shape();
    let k: usize = shape[1..].iter().product();
    let params: Vec<QParams> = (0..cv.out_channels)
        .map(|c| QParams::from_range(-0.5 - c as f32 * 1e-3, 0.6, 4).unwrap())
        .collect();
    let codes: Vec<u8> = (0..cv.out_channels * k)
        .map(|i| (i * 7 % 16) as u8)
        .collect();
    let w = PackedWeights::new(&codes, &params).unwrap();
    let wf = Tensor {
        shape,
        data: codes
            .chunks(k)
            .zip(&params)
            .flat_map(|(r, p)| r.iter().map(|&q| p.dequantize(q)))
            .collect(),
    };
    let xp = QParams::from_range(0.0, 6.0, 4).unwrap();
    let len = n * cv.in_channels * hw * hw;
    let xc: Vec<u8> = (0..len).map(|i| (i * 13 % 16) as u8).collect();
    let xf = Tensor {
        shape: vec![n, cv.in_channels, hw, hw],
        data: xc.iter().map(|&q| xp.dequantize(q)).collect(),
    };
    let scales: Vec<f32> = params.iter().map(|p| p.scale).collect();
    let bias = vec![0.1; cv.out_channels];
    let out = QParams::from_range(0.0, 6.0, 4).unwrap();
    let ep = Epilogue::new(&scales, None, xp.scale, &bias, cv.act, Some(out));
    Layer {
        x_nhwc: transpose(&xc, n, cv.in_channels, hw * hw),
        x: QTensor {
            shape: xf.shape.clone(),
            codes: xc,
            params: xp,
        },
        xf,
        w,
        wf,
        ep,
    }
}

/// The integer layer as the model runs it: NHWC codes in, requantized NHWC codes out.
fn run_int(l: &Layer, cl: &CpuLayer, isa: Isa, hw: usize) -> Vec<u8> {
    let cv = &cl.conv;
    let (oh, ow) = cv.out_hw(hw, hw).unwrap();
    let n = l.x.shape[0];
    let mut out = vec![0u8; n * oh * ow * cv.out_channels];
    let sink = |a: &[i32], a2: Option<&[i32]>, o: &mut [u8]| epi::codes_rows(isa, &l.ep, a, a2, o);
    let dims = (n, hw, hw);
    cl.run(
        isa,
        true,
        &l.x_nhwc,
        dims,
        l.x.params.zero_point,
        (oh, ow),
        &mut out,
        &sink,
    );
    out
}

/// Lite0 deploy W4A4 (data-free plan) and the prepared FP32 graph.
fn lite0() -> Option<(IntModel, ptq4::Graph)> {
    let m = match ptq4::io::fetch::fetch_one("efficientnet-lite0", false) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("SKIP whole-model int bench: {e}");
            return None;
        }
    };
    let raw = ptq4::io::model::load_graph(&m).ok()?;
    let mut g = raw.clone();
    passes::prepare(&mut g).ok()?;
    let cfg = QuantConfig {
        protocol: Protocol::Deploy,
        ..QuantConfig::default()
    };
    let pts = quant_points(&g, &cfg);
    let cal = ptq4::calib::data_free(&raw, &g, &pts).ok()?;
    let plan = make_plan(&g, &cfg, &pts, &cal.stats, &cal.means, &cal.source).ok()?;
    Some((IntModel::new(&g, &plan).ok()?, g))
}

fn whole_model(c: &mut Criterion) {
    let Some((m, g)) = lite0() else { return };
    eprintln!("integer kernels: {:?}", Isa::detect());
    let mut group = c.benchmark_group("int/model");
    for batch in [16usize, 1] {
        let shape = [batch, 3, 224, 224];
        let x = Tensor {
            shape: shape.to_vec(),
            data: (0..shape.iter().product::<usize>())
                .map(|i| ((i % 255) as f32 - 127.0) / 128.0)
                .collect(),
        };
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(
            BenchmarkId::new("cpu-int", format!("b{batch}")),
            &x,
            |b, x| b.iter(|| m.forward(x, Exec::Int).map(|y| y.data[0])),
        );
        group.bench_with_input(
            BenchmarkId::new("cpu-f32", format!("b{batch}")),
            &x,
            |b, x| b.iter(|| ptq4::engine::forward(&g, x.clone()).map(|y| y.data[0])),
        );
    }
    group.finish();
}

/// im2col + sgemm per image and group (f32 baseline).
fn run_sgemm(l: &Layer, cv: &Conv2d) -> Vec<f32> {
    let [n, ci, h, w] = l.xf.shape[..] else {
        unreachable!()
    };
    let (oh, ow) = cv.out_hw(h, w).unwrap();
    let (g, kh, kw) = (cv.groups, cv.kernel[0], cv.kernel[1]);
    let (cig, cog, p) = (ci / g, cv.out_channels / g, oh * ow);
    let k = cig * kh * kw;
    let mut cols = vec![0f32; k * p];
    let mut out = vec![0f32; n * cv.out_channels * p];
    for img in 0..n {
        for gi in 0..g {
            for (r, col) in cols.chunks_mut(p).enumerate() {
                let (i, ky, kx) = (r / (kh * kw), r / kw % kh, r % kw);
                let plane = &l.xf.data[((img * ci) + gi * cig + i) * h * w..][..h * w];
                for oy in 0..oh {
                    let iy = (oy * cv.stride[0] + ky) as isize - cv.padding[0] as isize;
                    for ox in 0..ow {
                        let ix = (ox * cv.stride[1] + kx) as isize - cv.padding[1] as isize;
                        col[oy * ow + ox] =
                            if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                plane[iy as usize * w + ix as usize]
                            } else {
                                0.0
                            };
                    }
                }
            }
            let o = &mut out[(img * cv.out_channels + gi * cog) * p..];
            // SAFETY: a is cog×k, cols k×p, o at least cog×p, all row-major.
            unsafe {
                matrixmultiply::sgemm(
                    cog,
                    k,
                    p,
                    1.0,
                    l.wf.data[gi * cog * k..].as_ptr(),
                    k as isize,
                    1,
                    cols.as_ptr(),
                    p as isize,
                    1,
                    0.0,
                    o.as_mut_ptr(),
                    p as isize,
                    1,
                );
            }
        }
    }
    out
}

fn main() {
    let quick = std::env::var("PTQ4_BENCH_QUICK").is_ok_and(|v| v == "1");
    let mut c = Criterion::default().configure_from_args();
    c = if quick {
        c.sample_size(10)
            .warm_up_time(Duration::from_millis(100))
            .measurement_time(Duration::from_millis(500))
    } else {
        c.sample_size(10).measurement_time(Duration::from_secs(3))
    };
    whole_model(&mut c);
    let isa = Isa::detect();
    for (name, cv, hw) in layers() {
        let l = make(&cv, 1, hw);
        let cl = CpuLayer::new(&cv, &l.w, None);
        c.bench_function(&format!("int/cpu-int/{name}"), |b| {
            b.iter(|| black_box(run_int(&l, &cl, isa, hw)))
        });
        c.bench_function(&format!("int/cpu-acc/{name}"), |b| {
            b.iter(|| black_box(conv2d_acc(&l.x, &l.w, &cv).unwrap()))
        });
        c.bench_function(&format!("int/cpu-sgemm/{name}"), |b| {
            b.iter(|| black_box(run_sgemm(&l, &cv)))
        });
        c.bench_function(&format!("int/cpu-f32/{name}"), |b| {
            b.iter(|| {
                black_box(ptq4::engine::cpu::conv2d(
                    &l.xf,
                    &l.wf,
                    Some(&l.ep.bias),
                    &cv,
                ))
            })
        });
    }
    let ctx = match GpuContext::new() {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("SKIPPED gpu int benches: {e}");
            return;
        }
    };
    let lavapipe = ctx.adapter_name().contains("llvmpipe");
    eprintln!(
        "adapter: {} ({:?}){}",
        ctx.adapter_name(),
        ctx.backend(),
        if lavapipe {
            "; lavapipe: no performance claim"
        } else {
            ""
        }
    );
    const B: usize = 16;
    for (name, cv, hw) in layers()
        .into_iter()
        .filter(|(_, cv, _)| cv.kernel == [1, 1])
    {
        let l = make(&cv, B, hw);
        let gl = GpuIntLayer::new(&ctx, &[&l.w], &l.ep, 1).unwrap();
        let dims = (B, cv.in_channels, hw, hw);
        let xi = buffers::upload(
            &ctx,
            "x",
            &pack_nhwc(&l.x.codes, dims, l.x.params.zero_point as u8),
        );
        let yi = buffers::zeroed(
            &ctx,
            "y",
            (B * hw * hw * cv.out_channels.div_ceil(8) * 8) as u64,
        );
        gpu_time(&mut c, &ctx, &format!("int/gpu-int/{name}/b{B}"), |enc| {
            conv_int_encode(
                &ctx,
                enc,
                &xi,
                &gl,
                &yi,
                B,
                (hw, hw),
                &cv,
                l.x.params.zero_point,
            )
            .map(|_| ())
        });
        let xf = buffers::upload(&ctx, "xf", &l.xf.data);
        let wf = buffers::upload(&ctx, "wf", &l.wf.data);
        let bf = buffers::upload(&ctx, "bf", &l.ep.bias);
        let yf = buffers::zeroed(&ctx, "yf", (B * cv.out_channels * hw * hw * 4) as u64);
        gpu_time(&mut c, &ctx, &format!("int/gpu-f32/{name}/b{B}"), |enc| {
            conv2d::conv2d_encode(&ctx, enc, &xf, &wf, &bf, &yf, B, (hw, hw), &cv)
        });
    }
}
