//! Whole graphs on the wgpu backend against the CPU engine: a small random graph, fake
//! quantization (codes exact), EfficientNet-Lite0 on the labelled images, device
//! calibration against CPU calibration, and the `plane_stats` kernel against its CPU twin.
//! On lavapipe; skips loudly without an adapter unless `REQUIRE_GPU=1`.

mod common;

use std::collections::BTreeMap;

use ptq4::engine::compare::compare_with;
use ptq4::engine::exec::GpuGraph;
use ptq4::engine::gpu::plane_stats;
use ptq4::engine::{self, compare, Backend, BackendChoice};
use ptq4::graph::{passes, Activation, Graph, Linear, Op, Preprocess};
use ptq4::Tensor;

pub(crate) use common::tol::Tol;
pub(crate) use common::{conv, node, rand};

fn bn(name: &str, c: usize, params: &mut BTreeMap<String, Tensor>, seed: &mut u64) {
    params.insert(format!("{name}.weight"), rand(&[c], seed));
    params.insert(format!("{name}.bias"), rand(&[c], seed));
    params.insert(format!("{name}.running_mean"), rand(&[c], seed));
    let v = rand(&[c], seed);
    let v = Tensor::from_vec(&v.shape, v.data.iter().map(|x| x.abs() + 0.1).collect()).unwrap();
    params.insert(format!("{name}.running_var"), v);
}

/// Prepared: conv s2 (+BN, ReLU6) → depthwise (+BN, ReLU6) → 1×1 conv (+BN) → add
/// (skip from the first conv) → GAP → flatten → linear. Odd sizes hit the kernels' tails.
pub(crate) fn small_graph(seed: &mut u64) -> Graph {
    let mut params = BTreeMap::new();
    params.insert("c1.weight".into(), rand(&[6, 3, 3, 3], seed));
    bn("bn1", 6, &mut params, seed);
    params.insert("dw.weight".into(), rand(&[6, 1, 3, 3], seed));
    bn("bn2", 6, &mut params, seed);
    params.insert("pw.weight".into(), rand(&[6, 6, 1, 1], seed));
    bn("bn3", 6, &mut params, seed);
    params.insert("fc.weight".into(), rand(&[5, 6], seed));
    params.insert("fc.bias".into(), rand(&[5], seed));
    let mut g = Graph {
        name: "small".into(),
        input_shape: vec![3, 13, 11],
        nodes: vec![
            node("c1", Op::Conv2d(conv(3, 6, 3, 2, 1)), &["input"]),
            node(
                "bn1",
                Op::BatchNorm {
                    eps: 1e-3,
                    act: Default::default(),
                },
                &["c1"],
            ),
            node("r1", Op::Relu6, &["bn1"]),
            node("dw", Op::Conv2d(conv(6, 6, 3, 1, 6)), &["r1"]),
            node(
                "bn2",
                Op::BatchNorm {
                    eps: 1e-3,
                    act: Default::default(),
                },
                &["dw"],
            ),
            node("r2", Op::Relu6, &["bn2"]),
            node("pw", Op::Conv2d(conv(6, 6, 1, 1, 1)), &["r2"]),
            node(
                "bn3",
                Op::BatchNorm {
                    eps: 1e-3,
                    act: Default::default(),
                },
                &["pw"],
            ),
            node("add", Op::Add, &["bn3", "r1"]),
            node("gap", Op::GlobalAvgPool, &["add"]),
            node("flat", Op::Flatten, &["gap"]),
            node(
                "fc",
                Op::Linear(Linear {
                    in_features: 6,
                    out_features: 5,
                    bias: true,
                    act: Activation::None,
                }),
                &["flat"],
            ),
        ],
        output: "fc".into(),
        params,
        preprocess: Preprocess::efficientnet(11),
    };
    passes::prepare(&mut g).unwrap();
    g
}

#[test]
fn graph_small_gpu_matches_cpu() {
    let Some(ctx) = common::test_context() else {
        return;
    };
    let mut seed = 11;
    let g = small_graph(&mut seed);
    let x = rand(&[3, 3, 13, 11], &mut seed);
    let diffs = compare(&ctx, &g, &x).unwrap();
    assert_eq!(diffs.len(), g.nodes.len());
    for d in &diffs {
        assert!(f64::from(d.max_rel) <= Tol::SMALL_GRAPH.rel, "{d:?}");
    }
    let worst = diffs.iter().fold(0f32, |m, d| m.max(d.max_rel));
    eprintln!("small graph: worst per-node |Δ| / max|cpu| = {worst:.2e}");
    let gg = GpuGraph::new(&ctx, &g).unwrap();
    let gpu = gg.forward(&x).unwrap();
    let cpu = engine::forward(&g, x.clone()).unwrap();
    assert_eq!(gpu.shape, cpu.shape);
    let scale = cpu.data.iter().fold(0f32, |m, v| m.max(v.abs()));
    for (a, b) in gpu.data.iter().zip(&cpu.data) {
        let tol = Tol::SMALL_GRAPH.bound(f64::from(scale));
        assert!(f64::from((a - b).abs()) <= tol, "{a} vs {b}");
    }
}

#[test]
fn graph_small_precise_gpu_equals_cpu_bitwise() {
    let Some(ctx) = common::test_context() else {
        return;
    };
    let mut seed = 11;
    let g = small_graph(&mut seed);
    let x = rand(&[3, 3, 13, 11], &mut seed);
    // The calibration-precision kernels round (nearly) exact sums once on both backends:
    // every node, conv, depthwise, add, pooling and linear, agrees bit for bit here.
    for d in compare_with(&ctx, &g, &x, true).unwrap() {
        assert_eq!(d.max_abs, 0.0, "{d:?}");
    }
}

#[test]
fn graph_chunked_batch_equals_whole_batch() {
    let (Some(ctx), Some(small)) = (common::test_context(), common::test_context()) else {
        return;
    };
    // The widest value is 6·7·6 f32 = 1008 bytes per image: a 2 KiB binding limit makes
    // chunks of 2 images (and a last chunk of 1).
    let small = small.with_max_binding_bytes(2048);
    let mut seed = 5;
    let g = small_graph(&mut seed);
    let x = rand(&[5, 3, 13, 11], &mut seed);
    let whole = GpuGraph::new(&ctx, &g).unwrap().forward(&x).unwrap();
    let chunked = GpuGraph::new(&small, &g).unwrap().forward(&x).unwrap();
    assert_eq!(whole.data, chunked.data);
}

#[test]
fn backend_choice_resolves() {
    assert!(matches!(
        BackendChoice::Cpu.resolve().unwrap(),
        Backend::Cpu
    ));
    let auto = BackendChoice::Auto.resolve().unwrap();
    if common::gpu_required() {
        let Backend::Gpu(ctx) = BackendChoice::Gpu.resolve().unwrap() else {
            panic!("REQUIRE_GPU=1 but --backend gpu resolved to the CPU");
        };
        // `auto` takes hardware adapters and leaves software ones (lavapipe) to `--backend gpu`.
        let software = ctx.info().device_type == wgpu::DeviceType::Cpu;
        assert_eq!(
            matches!(auto, Backend::Cpu),
            software,
            "{}",
            auto.describe()
        );
    }
}

#[test]
fn plane_stats_matches_cpu_twin() {
    let Some(ctx) = common::test_context() else {
        return;
    };
    let mut seed = 9;
    // hw = 1 (linear outputs), 257 (one past the workgroup), 2999; a constant plane and a
    // plane with |mean| ≫ σ (the pivot keeps Σd² accurate).
    for (planes, hw) in [(7usize, 1usize), (6, 257), (3, 2999)] {
        let mut x = rand(&[planes * hw], &mut seed).data;
        x[..hw].iter_mut().for_each(|v| *v = 0.75);
        x[hw..2 * hw]
            .iter_mut()
            .for_each(|v| *v = 1000.0 + *v * 1e-2);
        let got = plane_stats::plane_moments(&ctx, &x, hw).unwrap();
        let want = plane_stats::plane_moments_cpu(&x, hw).unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let pl = &x[i * hw..(i + 1) * hw];
            let s1: f64 = pl.iter().map(|&v| (v as f64 - w.pivot).abs()).sum();
            let s2: f64 = pl.iter().map(|&v| (v as f64 - w.pivot).powi(2)).sum();
            assert_eq!((g.pivot, g.min, g.max), (w.pivot, w.min, w.max));
            assert!(
                (g.sum_d - w.sum_d).abs() <= Tol::PLANE_SUMS.bound(s1),
                "{g:?} {w:?}"
            );
            assert!(
                (g.sum_d2 - w.sum_d2).abs() <= Tol::PLANE_SUMS.bound(s2),
                "{g:?} {w:?}"
            );
        }
        let c = if planes % 3 == 0 { 3 } else { planes };
        let mut means: Vec<f64> = (0..c).map(|i| i as f64 * 0.1).collect();
        means.push(0.05);
        let got = plane_stats::plane_abs_dev(&ctx, &x, hw, &means).unwrap();
        let want = plane_stats::plane_abs_dev_cpu(&x, hw, &means).unwrap();
        for (g, w) in got.iter().zip(&want) {
            for k in 0..2 {
                let tol = Tol::PLANE_SUMS.bound(w[k].abs().max(1e-30));
                assert!((g[k] - w[k]).abs() <= tol);
            }
        }
    }
}

#[path = "gpu_graph/calib.rs"]
mod calib;
#[path = "gpu_graph/fake_quant.rs"]
mod fake_quant;
#[path = "gpu_graph/lite0.rs"]
mod lite0;
