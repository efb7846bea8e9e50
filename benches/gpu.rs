//! GPU kernel benches on real EfficientNet-Lite0 layer shapes at batch 16, named
//! `gpu/<kernel>/<layer>/b<batch>`. Time is GPU time: the device is idle before the clock
//! starts and `iters` dispatches are waited for (`iter_custom` + poll) before it stops; it
//! includes recording each dispatch (a params upload and a bind group), not host transfers.
//! Inputs are uploaded once per bench. `PTQ4_BENCH_QUICK=1`: short CI smoke run.
//! Figures from lavapipe (a CPU rasteriser) make no performance claim; the adapter is
//! printed first. The CPU side is benched in `benches/forward.rs`.
//!
//! Whole model: `gpu/forward/efficientnet-lite0/b<batch>` runs [`GpuGraph::forward`] (batch 1
//! and 16; batch 1 only in quick mode), reported as images/s; it includes the input upload
//! and the logits readback, as a caller of the whole-model API sees it.
//! `gpu/forward-int/efficientnet-lite0/b<batch>` is the same for the `deploy` W4A4 data-free
//! model on the integer kernels ([`GpuIntModel::forward`], `--exec int`), weights resident.

mod common;

use common::gpu_time;

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use ptq4::engine::device::{buffers, GpuContext};
use ptq4::engine::exec::int_model::{Exec, IntModel};
use ptq4::engine::exec::GpuGraph;
use ptq4::engine::gpu::{
    conv2d, eltwise, fake_quant, histogram, linear, lrn, mmse, mul, pool, shuffle,
};
use ptq4::engine::layout::ChannelLayout;
use ptq4::graph::passes;
use ptq4::graph::{Activation, Conv2d, Linear};
use ptq4::quant::config::{quant_points, Protocol, QuantConfig};
use ptq4::quant::plan::make_plan;
use ptq4::quant::stats::Binning;
use ptq4::quant::QParams;
use ptq4::Tensor;

const B: usize = 16;

fn values(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect()
}

fn conv(ci: usize, co: usize, k: usize, groups: usize) -> Conv2d {
    let p = k / 2;
    Conv2d {
        in_channels: ci,
        out_channels: co,
        kernel: [k, k],
        stride: [1, 1],
        dilation: [1, 1],
        padding: [p; 4],
        groups,
        bias: true,
        act: Activation::Relu6,
    }
}

fn bench_conv(c: &mut Criterion, ctx: &GpuContext, layer: &str, cv: &Conv2d, hw: usize) {
    let x = buffers::upload(ctx, "x", &values(B * cv.in_channels * hw * hw));
    let w = buffers::upload(ctx, "w", &values(cv.weight_shape().iter().product()));
    let b = buffers::upload(ctx, "b", &values(cv.out_channels));
    let y = buffers::zeroed(ctx, "y", (B * cv.out_channels * hw * hw * 4) as u64);
    gpu_time(c, ctx, &format!("gpu/conv2d/{layer}/b{B}"), |enc| {
        conv2d::conv2d_encode(ctx, enc, &x, &w, &b, &y, B, (hw, hw), cv)
    });
}

/// EfficientNet-Lite0, prepared, fetched into $PTQ4_HOME on first use.
fn lite0() -> Option<ptq4::Graph> {
    let fetched = ptq4::io::fetch::fetch_one("efficientnet-lite0", false);
    match fetched.and_then(|m| {
        let mut g = ptq4::io::model::load_graph(&m)?;
        passes::prepare(&mut g)?;
        Ok(g)
    }) {
        Ok(g) => Some(g),
        Err(e) => {
            eprintln!("SKIP gpu/forward bench: {e}");
            None
        }
    }
}

fn bench_forward(c: &mut Criterion, ctx: &GpuContext, quick: bool) {
    let Some(g) = lite0() else { return };
    let batches: &[usize] = if quick { &[1] } else { &[1, 16] };
    bench_forward_int(c, ctx, &g, batches);
    let gg = match GpuGraph::new(ctx, &g) {
        Ok(gg) => gg,
        Err(e) => {
            eprintln!("SKIP gpu/forward bench: {e}");
            return;
        }
    };
    let mut group = c.benchmark_group("gpu/forward/efficientnet-lite0");
    for &b in batches {
        let shape = [b, 3, 224, 224];
        let x = Tensor::from_vec(&shape, values(shape.iter().product())).expect("input shape");
        group.throughput(Throughput::Elements(b as u64));
        group.bench_with_input(BenchmarkId::from_parameter(format!("b{b}")), &x, |bn, x| {
            bn.iter_custom(|iters| {
                ctx.wait_idle().expect("device idle before timing");
                let start = Instant::now();
                for _ in 0..iters {
                    // forward returns after the logits are read back: the device is idle.
                    gg.forward(x).expect("forward");
                }
                start.elapsed()
            })
        });
    }
    group.finish();
}

/// The deploy W4A4 data-free integer model of the prepared `g` on the integer kernels.
fn bench_forward_int(c: &mut Criterion, ctx: &GpuContext, g: &ptq4::Graph, batches: &[usize]) {
    let cfg = QuantConfig {
        protocol: Protocol::Deploy,
        ..QuantConfig::default()
    };
    let model = (|| -> ptq4::Result<IntModel> {
        let raw =
            ptq4::io::model::load_graph(&ptq4::io::fetch::fetch_one("efficientnet-lite0", false)?)?;
        let pts = quant_points(g, &cfg);
        let cal = ptq4::calib::data_free(&raw, g, &pts)?;
        let plan = make_plan(g, &cfg, &pts, &cal.stats, &cal.means, &cal.source)?;
        IntModel::new(g, &plan)
    })();
    let dev = match model
        .as_ref()
        .map_err(|e| e.to_string())
        .and_then(|m| m.upload(ctx).map_err(|e| e.to_string()))
    {
        Ok(d) => d,
        Err(e) => {
            eprintln!("SKIP gpu/forward-int bench: {e}");
            return;
        }
    };
    let mut group = c.benchmark_group("gpu/forward-int/efficientnet-lite0");
    for &b in batches {
        let shape = [b, 3, 224, 224];
        let x = Tensor::from_vec(&shape, values(shape.iter().product())).expect("input shape");
        group.throughput(Throughput::Elements(b as u64));
        group.bench_with_input(BenchmarkId::from_parameter(format!("b{b}")), &x, |bn, x| {
            bn.iter_custom(|iters| {
                ctx.wait_idle().expect("device idle before timing");
                let start = Instant::now();
                for _ in 0..iters {
                    dev.forward(ctx, x, Exec::Int).expect("forward");
                }
                start.elapsed()
            })
        });
    }
    group.finish();
}

fn main() {
    let quick = std::env::var("PTQ4_BENCH_QUICK").is_ok_and(|v| v == "1");
    let mut c = Criterion::default().configure_from_args();
    c = if quick {
        c.sample_size(10)
            .warm_up_time(Duration::from_millis(100))
            .measurement_time(Duration::from_millis(500))
    } else {
        c.sample_size(10).measurement_time(Duration::from_secs(5))
    };
    let ctx = match GpuContext::new() {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("SKIPPED gpu benches: {e}");
            return;
        }
    };
    eprintln!(
        "adapter: {} ({:?}){}",
        ctx.adapter_name(),
        ctx.backend(),
        if ctx.adapter_name().contains("llvmpipe") {
            "; lavapipe: no performance claim"
        } else {
            ""
        }
    );

    bench_conv(
        &mut c,
        &ctx,
        "lite0.blocks.3.expand",
        &conv(24, 144, 1, 1),
        56,
    );
    bench_conv(
        &mut c,
        &ctx,
        "lite0.blocks.4.dw",
        &conv(240, 240, 5, 240),
        28,
    );
    bench_conv(
        &mut c,
        &ctx,
        "lite0.blocks.4.project",
        &Conv2d {
            act: Activation::None,
            ..conv(240, 40, 1, 1)
        },
        28,
    );

    // Statistics over the blocks.3 expand output, 16×144×56×56 (28.9 MB).
    let layout = ChannelLayout {
        outer: B,
        channels: 144,
        inner: 56 * 56,
    };
    let act = buffers::upload(&ctx, "act", &values(layout.len()));
    let ranges = vec![Binning::new(-1.0, 1.0, 2048); 144];
    let table = buffers::upload(&ctx, "ranges", &histogram::range_table(&ranges));
    let counts = buffers::zeroed(&ctx, "counts", 144 * 2048 * 4);
    gpu_time(
        &mut c,
        &ctx,
        &format!("gpu/histogram/lite0.blocks.3.expand/b{B}"),
        |enc| {
            enc.clear_buffer(&counts, 0, None);
            histogram::histogram_encode(&ctx, enc, &act, &table, &counts, B, &layout, 2048)
        },
    );
    let q: Vec<QParams> = (0..144)
        .map(|i| QParams {
            scale: 0.01 + i as f32 * 1e-4,
            zero_point: 8,
            bits: 4,
        })
        .collect();
    let qt = buffers::upload(&ctx, "quant", &fake_quant::quant_table(&q));
    let codes = buffers::zeroed(&ctx, "codes", (layout.len() * 4) as u64);
    let deq = buffers::zeroed(&ctx, "deq", (layout.len() * 4) as u64);
    gpu_time(
        &mut c,
        &ctx,
        &format!("gpu/fake_quant/lite0.blocks.3.expand/b{B}"),
        |enc| {
            fake_quant::fake_quant_encode(
                &ctx,
                enc,
                &act,
                &qt,
                &codes,
                &deq,
                layout.len(),
                0,
                &layout,
            )
        },
    );
    // The MMSE objective of 257 candidates (a grid batch) on one 2048-bin histogram.
    let hist: Vec<f32> = (0..2048).map(|i| (i % 97) as f32).collect();
    let cands: Vec<QParams> = (1..=257)
        .map(|j| QParams::from_range(-j as f32 / 257.0, j as f32 / 257.0, 4).unwrap())
        .collect();
    let (counts, table) = (
        buffers::upload(&ctx, "counts", &hist),
        buffers::upload(&ctx, "candidates", &mmse::cand_table(&cands)),
    );
    let sums = buffers::zeroed(&ctx, "sums", 257 * 8);
    let params = mmse::MmseParams {
        bins: 2048,
        cands: 257,
        lo: -1.0,
        width: 2.0 / 2048.0,
        ..Default::default()
    };
    gpu_time(&mut c, &ctx, "gpu/mmse/bins2048_cands257", |enc| {
        mmse::mmse_encode(&ctx, enc, &counts, &table, &sums, params)
    });

    // Residual add of blocks.4 (16×40×28×28), head pooling and classifier.
    let n = B * 40 * 28 * 28;
    let (a, b2, y) = (
        buffers::upload(&ctx, "a", &values(n)),
        buffers::upload(&ctx, "b", &values(n)),
        buffers::zeroed(&ctx, "y", (n * 4) as u64),
    );
    gpu_time(
        &mut c,
        &ctx,
        &format!("gpu/eltwise/lite0.blocks.4.add/b{B}"),
        |enc| eltwise::eltwise_encode(&ctx, enc, &a, &b2, &y, n, None),
    );
    // The same tensors as a product of two maps and as a channel shuffle (4 groups).
    gpu_time(
        &mut c,
        &ctx,
        &format!("gpu/mul/lite0.blocks.4.add/b{B}"),
        |enc| mul::mul_encode(&ctx, enc, &a, &b2, &y, n, None),
    );
    gpu_time(
        &mut c,
        &ctx,
        &format!("gpu/shuffle/lite0.blocks.4.add/b{B}"),
        |enc| shuffle::shuffle_encode(&ctx, enc, &a, &y, (B, 40, 28 * 28), 4),
    );
    let head = buffers::upload(&ctx, "head", &values(B * 1280 * 49));
    let pooled = buffers::zeroed(&ctx, "pooled", (B * 1280 * 4) as u64);
    let unit = ptq4::graph::Pool {
        kernel: [1, 1],
        stride: [1, 1],
        padding: [0; 4],
        count_include_pad: false,
    };
    gpu_time(
        &mut c,
        &ctx,
        &format!("gpu/pool/lite0.head.global_avg/b{B}"),
        |enc| {
            pool::pool_encode(
                &ctx,
                enc,
                &head,
                &pooled,
                pool::PoolKind::GlobalAvg,
                B * 1280,
                (7, 7),
                &unit,
            )
        },
    );
    let l = Linear {
        in_features: 1280,
        out_features: 1000,
        bias: true,
        act: Activation::None,
    };
    let (w, bias, logits) = (
        buffers::upload(&ctx, "w", &values(1000 * 1280)),
        buffers::upload(&ctx, "b", &values(1000)),
        buffers::zeroed(&ctx, "logits", (B * 1000 * 4) as u64),
    );
    gpu_time(
        &mut c,
        &ctx,
        &format!("gpu/linear/lite0.classifier/b{B}"),
        |enc| linear::linear_encode(&ctx, enc, &pooled, &w, &bias, &logits, B, &l),
    );
    // AlexNet's first LRN (96×55×55, window 5).
    let n = B * 96 * 55 * 55;
    let (x, y) = (
        buffers::upload(&ctx, "lrn x", &values(n)),
        buffers::zeroed(&ctx, "lrn y", (n * 4) as u64),
    );
    let attrs = lrn::LrnAttrs {
        size: 5,
        alpha: 1e-4,
        beta: 0.75,
        bias: 1.0,
    };
    gpu_time(
        &mut c,
        &ctx,
        &format!("gpu/lrn/alexnet.norm1/b{B}"),
        |enc| lrn::lrn_encode(&ctx, enc, &x, &y, (B, 96, 55 * 55), attrs),
    );

    bench_forward(&mut c, &ctx, quick);

    c.final_summary();
}
