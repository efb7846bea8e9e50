//! Criterion benches of the CPU engine's convolution kernels on the real EfficientNet-Lite0
//! layer shapes (224×224, batch 16), plus the other ops of one Lite0 forward pass (residual
//! adds, global average pool, classifier) so that the closing table can estimate whole-model
//! throughput as the sum of layer times.
//!
//! Names: `cpu/conv2d/lite0.blocks.5.project/16x240x14x14-k1s1` (first block with that
//! shape; later identical layers are counted, not re-timed). `PTQ4_BENCH_QUICK=1` takes few,
//! short samples (CI smoke run).
//!
//! Convolutions are timed through `conv2d_into` with a reused output buffer, as an executor
//! that recycles activations runs them; `cpu/conv2d_alloc/…` shows what a fresh allocation
//! per call adds (page faults on first touch) and is not part of the estimate. The table
//! also gives process CPU time per batch: on a shared machine, wall time is inflated by other
//! load and `CPU time / 2 cores` is the better estimate of what the two cores can do.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use ptq4::engine::cpu;
use ptq4::graph::{same_padding, Activation, Conv2d, Linear};
use ptq4::Tensor;

/// Batch size: 16, or `PTQ4_BENCH_BATCH` (e.g. 1, to see what cache-resident single images
/// cost next to batch 16, whose early activations live in DRAM).
fn batch() -> usize {
    static B: OnceLock<usize> = OnceLock::new();
    *B.get_or_init(|| {
        std::env::var("PTQ4_BENCH_BATCH")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&b| b > 0)
            .unwrap_or(16)
    })
}

/// One op of the model: its bench id, how often the shape occurs, its FLOPs per batch and
/// the closure to time.
struct Layer {
    group: &'static str,
    name: String,
    shape: String,
    count: usize,
    flops: u64,
    run: Box<dyn FnMut()>,
}

/// Per bench: (iterations, wall seconds, CPU ticks) summed over every sample criterion took
/// (criterion keeps its own statistics; these feed the closing table).
static TIMES: Mutex<Vec<(String, u64, f64, u64)>> = Mutex::new(Vec::new());

/// User + system CPU time of this process in clock ticks (`/proc/self/stat`; 0 elsewhere).
fn cpu_ticks() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0;
    };
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
const TICKS_PER_S: f64 = 100.0;

fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn tensor(shape: &[usize], seed: u64) -> Tensor {
    Tensor {
        shape: shape.to_vec(),
        data: values(shape.iter().product(), seed),
    }
}

/// A TF-"SAME" convolution layer on a `size × size` map.
/// `(ci, co, size)`, `(kernel, stride)`; depthwise when `dw`.
fn conv_layer(
    name: String,
    (ci, co, size): (usize, usize, usize),
    (k, s): (usize, usize),
    dw: bool,
    act: Activation,
) -> Layer {
    let (b, a) = same_padding(size, k, s, 1);
    let c = Conv2d {
        in_channels: ci,
        out_channels: co,
        kernel: [k, k],
        stride: [s, s],
        dilation: [1, 1],
        padding: [b, b, a, a],
        groups: if dw { ci } else { 1 },
        bias: true,
        act,
    };
    let (oh, ow) = c.out_hw(size, size).unwrap_or((0, 0));
    let flops = 2 * (batch() * co * oh * ow * (ci / c.groups) * k * k) as u64;
    let x = tensor(&[batch(), ci, size, size], 1);
    let w = tensor(&c.weight_shape(), 2);
    let bias = values(co, 3);
    let mut out = Tensor::zeros(&[0]);
    Layer {
        group: "cpu/conv2d",
        name,
        shape: format!("{}x{ci}x{size}x{size}-k{k}s{s}-o{co}", batch()),
        count: 1,
        flops,
        run: Box::new(move || {
            cpu::conv2d_into(&x, &w, Some(&bias), &c, &mut out);
            std::hint::black_box(&out);
        }),
    }
}

/// Every op of an EfficientNet-Lite0 forward pass, identical shapes merged (counted).
fn lite0() -> Vec<Layer> {
    // (repeats, kernel, stride, expansion, out channels) per MBConv stage.
    let stages = [
        (1, 3, 1, 1, 16),
        (2, 3, 2, 6, 24),
        (2, 5, 2, 6, 40),
        (3, 3, 2, 6, 80),
        (3, 5, 1, 6, 112),
        (4, 5, 2, 6, 192),
        (1, 3, 1, 6, 320),
    ];
    let r6 = Activation::Relu6;
    let mut v = vec![conv_layer(
        "lite0.stem".into(),
        (3, 32, 224),
        (3, 2),
        false,
        r6,
    )];
    let (mut ci, mut size, mut block) = (32, 112, 0);
    for (repeats, k, stride, e, co) in stages {
        for r in 0..repeats {
            let s = if r == 0 { stride } else { 1 };
            let mid = ci * e;
            let p = format!("lite0.blocks.{block}");
            if e != 1 {
                v.push(conv_layer(
                    format!("{p}.expand"),
                    (ci, mid, size),
                    (1, 1),
                    false,
                    r6,
                ));
            }
            v.push(conv_layer(
                format!("{p}.depthwise"),
                (mid, mid, size),
                (k, s),
                true,
                r6,
            ));
            size = size.div_ceil(s);
            v.push(conv_layer(
                format!("{p}.project"),
                (mid, co, size),
                (1, 1),
                false,
                Activation::None,
            ));
            if s == 1 && ci == co {
                let (mut a, b) = (
                    tensor(&[batch(), co, size, size], 4),
                    tensor(&[batch(), co, size, size], 5),
                );
                v.push(Layer {
                    group: "cpu/add_inplace",
                    name: p.clone(),
                    shape: format!("{}x{co}x{size}x{size}", batch()),
                    count: 1,
                    flops: (batch() * co * size * size) as u64,
                    run: Box::new(move || {
                        cpu::add_inplace(&mut a, &b);
                        std::hint::black_box(&a);
                    }),
                });
            }
            ci = co;
            block += 1;
        }
    }
    v.push(conv_layer(
        "lite0.head".into(),
        (ci, 1280, size),
        (1, 1),
        false,
        r6,
    ));
    let x = tensor(&[batch(), 1280, size, size], 6);
    v.push(Layer {
        group: "cpu/global_avg_pool",
        name: "lite0.pool".into(),
        shape: format!("{}x1280x{size}x{size}", batch()),
        count: 1,
        flops: (batch() * 1280 * size * size) as u64,
        run: Box::new(move || {
            std::hint::black_box(cpu::global_avg_pool(&x));
        }),
    });
    let l = Linear {
        in_features: 1280,
        out_features: 1000,
        bias: true,
        act: Activation::None,
    };
    let (x, w, b) = (
        tensor(&[batch(), 1280], 7),
        tensor(&[1000, 1280], 8),
        values(1000, 9),
    );
    v.push(Layer {
        group: "cpu/linear",
        name: "lite0.fc".into(),
        shape: format!("{}x1280", batch()),
        count: 1,
        flops: 2 * (batch() * 1280 * 1000) as u64,
        run: Box::new(move || {
            std::hint::black_box(cpu::linear(&x, &w, Some(&b), &l));
        }),
    });
    // Merge identical shapes into the first occurrence.
    let mut merged: Vec<Layer> = Vec::new();
    for layer in v {
        match merged
            .iter_mut()
            .find(|m| m.group == layer.group && m.shape == layer.shape)
        {
            Some(m) => m.count += 1,
            None => merged.push(layer),
        }
    }
    merged
}

fn main() {
    let quick = std::env::var("PTQ4_BENCH_QUICK").is_ok_and(|v| v == "1");
    let mut c = Criterion::default()
        .sample_size(if quick { 10 } else { 20 })
        .warm_up_time(Duration::from_millis(if quick { 100 } else { 1000 }))
        .measurement_time(Duration::from_millis(if quick { 300 } else { 3000 }))
        .configure_from_args();
    let mut layers = lite0();
    layers.push(alloc_layer());
    for layer in &mut layers {
        let id = format!("{}/{}", layer.name, layer.shape);
        let run = &mut layer.run;
        let mut g = c.benchmark_group(layer.group);
        g.throughput(Throughput::Elements(layer.flops));
        g.bench_function(BenchmarkId::from_parameter(&id), |b| {
            b.iter_custom(|iters| {
                let t0 = Instant::now();
                let c0 = cpu_ticks();
                for _ in 0..iters {
                    run();
                }
                let dt = t0.elapsed();
                record(
                    &format!("{}/{id}", layer.group),
                    iters,
                    dt.as_secs_f64(),
                    cpu_ticks() - c0,
                );
                dt
            })
        });
        g.finish();
    }
    c.final_summary();
    report(&layers);
}

fn record(key: &str, iters: u64, wall: f64, ticks: u64) {
    let mut t = TIMES.lock().unwrap_or_else(|e| e.into_inner());
    match t.iter_mut().find(|e| e.0 == key) {
        Some(e) => {
            e.1 += iters;
            e.2 += wall;
            e.3 += ticks;
        }
        None => t.push((key.to_string(), iters, wall, ticks)),
    }
}

/// The largest layer through the allocating `conv2d` (fresh output every call).
fn alloc_layer() -> Layer {
    let c = Conv2d {
        in_channels: 16,
        out_channels: 96,
        kernel: [1, 1],
        stride: [1, 1],
        dilation: [1, 1],
        padding: [0; 4],
        groups: 1,
        bias: true,
        act: Activation::Relu6,
    };
    let (x, w, b) = (
        tensor(&[batch(), 16, 112, 112], 1),
        tensor(&c.weight_shape(), 2),
        values(96, 3),
    );
    Layer {
        group: "cpu/conv2d_alloc",
        name: "lite0.blocks.1.expand".into(),
        shape: format!("{}x16x112x112-k1s1-o96", batch()),
        count: 1,
        flops: 2 * (batch() * 96 * 112 * 112 * 16) as u64,
        run: Box::new(move || {
            std::hint::black_box(cpu::conv2d(&x, &w, Some(&b), &c));
        }),
    }
}

/// Mean time per layer, GFLOP/s, and the whole-model estimate (sum of layer times).
fn report(layers: &[Layer]) {
    let t = TIMES.lock().unwrap_or_else(|e| e.into_inner());
    println!(
        "\n{:<66} {:>5} {:>9} {:>8} {:>9}",
        format!("layer (batch {}; GFLOP/s from wall time)", batch()),
        "count",
        "ms/batch",
        "GFLOP/s",
        "cpu ms"
    );
    let (mut wall, mut cpu, mut flops, mut missing) = (0.0, 0.0, 0u64, 0);
    for layer in layers.iter().filter(|l| l.group != "cpu/conv2d_alloc") {
        let key = format!("{}/{}/{}", layer.group, layer.name, layer.shape);
        let Some(&(_, iters, w, ticks)) = t.iter().find(|e| e.0 == key) else {
            missing += 1;
            continue;
        };
        let per = w / iters as f64;
        let cpu_per = ticks as f64 / TICKS_PER_S / iters as f64;
        wall += per * layer.count as f64;
        cpu += cpu_per * layer.count as f64;
        flops += layer.flops * layer.count as u64;
        println!(
            "{key:<66} {:>5} {:>9.3} {:>8.1} {:>9.3}",
            layer.count,
            per * 1e3,
            layer.flops as f64 / per / 1e9,
            cpu_per * 1e3
        );
    }
    if missing > 0 {
        println!("({missing} layers filtered out: no whole-model estimate)");
    } else if wall > 0.0 {
        println!(
            "EfficientNet-Lite0, batch {}, {:.3} GFLOP/image: wall {:.1} ms/batch = {:.1} GFLOP/s, ~{:.0} images/s; \
             CPU {:.1} ms/batch → ~{:.0} images/s on 2 unshared cores (sum of layer times)",
            batch(),
            flops as f64 / batch() as f64 / 1e9,
            wall * 1e3,
            flops as f64 / wall / 1e9,
            batch() as f64 / wall,
            cpu * 1e3,
            2.0 * batch() as f64 / cpu
        );
    }
}
