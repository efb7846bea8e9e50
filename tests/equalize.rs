//! Cross-layer equalization (`quantize --equalize`, `quant::equalize`): the equalized FP32
//! model is the same function (ReLU6 kept exact through per-channel bounds) on the CPU and
//! on the GPU, and the bounds bind (dropping them changes the outputs); every pair's
//! per-channel weight ranges match afterwards; skipped what is not a clean chain (a value
//! read twice, a residual add); calibration on either backend measures the bounded values;
//! deploy plans of the equalized model (calibrated, data-free, with GPTQ and input-aware
//! bias correction) give identical logits bits on the four integer executors, survive the
//! quantized file, and stay close to FP32; the ONNX exports (FP32 and QDQ) run in
//! onnxruntime with ptq4's outputs.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::node;
use common::onnx::{four_executors, ort_check, python, rel_err};
use ptq4::calib::{calibrate_batches_with, Calibration};
use ptq4::engine::exec::float_gpu::GpuGraph;
use ptq4::engine::exec::int_model::{Exec, UNCAPPED};
use ptq4::engine::{Backend, Executable, Forward};
use ptq4::graph::{Activation, Conv2d, Graph, Linear, Op, Preprocess, ACT_MAX};
use ptq4::io::onnx::export::export;
use ptq4::model::{Fp32Model, LoadedModel};
use ptq4::pipeline::{self, StatsSource};
use ptq4::qmodel::QuantModel;
use ptq4::quant::config::{quant_points, BitAlloc, ClipMethod, Protocol, QuantConfig};
use ptq4::quant::equalize::{equalize, pair_ranges, pairs};
use ptq4::tensor::Tensor;

fn lcg(seed: &mut u64) -> f32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

fn rand_t(shape: &[usize], seed: &mut u64, scale: f32) -> Tensor {
    let n = shape.iter().product();
    Tensor {
        shape: shape.to_vec(),
        data: (0..n).map(|_| scale * lcg(seed)).collect(),
    }
}

fn conv(cin: usize, cout: usize, k: usize, s: usize, groups: usize, bias: bool) -> Conv2d {
    Conv2d {
        in_channels: cin,
        out_channels: cout,
        kernel: [k, k],
        stride: [s, s],
        dilation: [1, 1],
        padding: [k / 2; 4],
        groups,
        bias,
        act: Activation::None,
    }
}

/// stem 3×3/2 → BN → ReLU6 (read twice: by the block and by its residual add) → MBConv
/// (expand 1×1 → BN → ReLU6 → depthwise 3×3 → BN → ReLU6 → project 1×1 → BN) + stem →
/// 1×1 → BN → ReLU → grouped 3×3 (2 groups) → BN → ReLU6 → 1×1 → ReLU → GAP → flatten →
/// linear. Output channels of every conv get spreads e^±2 apart, so the ranges are far from
/// equal, and BN shifts of up to 7 make the ReLU6 clip.
fn stored(seed: &mut u64) -> Graph {
    let mut params = BTreeMap::new();
    let mut w = |name: &str, shape: &[usize], seed: &mut u64| {
        let mut t = rand_t(shape, seed, 1.0);
        let per = t.numel() / shape[0];
        for k in t.data.chunks_mut(per) {
            let f = (2.0 * lcg(seed)).exp();
            k.iter_mut().for_each(|v| *v *= f);
        }
        params.insert(format!("{name}.weight"), t);
    };
    let specs: [(&str, &[usize]); 7] = [
        ("stem", &[8, 3, 3, 3]),
        ("ex", &[16, 8, 1, 1]),
        ("dw", &[16, 1, 3, 3]),
        ("pj", &[8, 16, 1, 1]),
        ("c5", &[12, 8, 1, 1]),
        ("gc", &[12, 6, 3, 3]),
        ("c7", &[10, 12, 1, 1]),
    ];
    for (n, s) in specs {
        w(n, s, seed);
    }
    params.insert("c7.bias".into(), rand_t(&[10], seed, 0.5));
    params.insert("fc.weight".into(), rand_t(&[5, 10], seed, 1.0));
    params.insert("fc.bias".into(), rand_t(&[5], seed, 0.1));
    for (bn, c) in [
        ("bn_s", 8),
        ("bn_e", 16),
        ("bn_d", 16),
        ("bn_p", 8),
        ("bn5", 12),
        ("bn6", 12),
    ] {
        let g: Vec<f32> = (0..c).map(|_| 1.25 + 0.75 * lcg(seed)).collect();
        let b: Vec<f32> = (0..c).map(|_| 2.5 + 4.5 * lcg(seed)).collect();
        let m: Vec<f32> = (0..c).map(|_| lcg(seed)).collect();
        let v: Vec<f32> = (0..c).map(|_| 1.25 + 0.75 * lcg(seed)).collect();
        for (p, d) in [
            ("weight", g),
            ("bias", b),
            ("running_mean", m),
            ("running_var", v),
        ] {
            params.insert(
                format!("{bn}.{p}"),
                Tensor {
                    shape: vec![c],
                    data: d,
                },
            );
        }
    }
    let bn = || Op::BatchNorm {
        eps: 1e-3,
        act: Activation::None,
    };
    Graph {
        name: "equalize".into(),
        input_shape: vec![3, 12, 12],
        nodes: vec![
            node("stem", Op::Conv2d(conv(3, 8, 3, 2, 1, false)), &["input"]),
            node("bn_s", bn(), &["stem"]),
            node("r_s", Op::Relu6, &["bn_s"]),
            node("ex", Op::Conv2d(conv(8, 16, 1, 1, 1, false)), &["r_s"]),
            node("bn_e", bn(), &["ex"]),
            node("r_e", Op::Relu6, &["bn_e"]),
            node("dw", Op::Conv2d(conv(16, 16, 3, 1, 16, false)), &["r_e"]),
            node("bn_d", bn(), &["dw"]),
            node("r_d", Op::Relu6, &["bn_d"]),
            node("pj", Op::Conv2d(conv(16, 8, 1, 1, 1, false)), &["r_d"]),
            node("bn_p", bn(), &["pj"]),
            node("add", Op::Add, &["bn_p", "r_s"]),
            node("c5", Op::Conv2d(conv(8, 12, 1, 1, 1, false)), &["add"]),
            node("bn5", bn(), &["c5"]),
            node("r5", Op::Relu, &["bn5"]),
            node("gc", Op::Conv2d(conv(12, 12, 3, 1, 2, false)), &["r5"]),
            node("bn6", bn(), &["gc"]),
            node("r6", Op::Relu6, &["bn6"]),
            node("c7", Op::Conv2d(conv(12, 10, 1, 1, 1, true)), &["r6"]),
            node("r7", Op::Relu, &["c7"]),
            node("gap", Op::GlobalAvgPool, &["r7"]),
            node("flat", Op::Flatten, &["gap"]),
            node(
                "fc",
                Op::Linear(Linear {
                    in_features: 10,
                    out_features: 5,
                    bias: true,
                    act: Activation::None,
                }),
                &["flat"],
            ),
        ],
        output: "fc".into(),
        params,
        preprocess: Preprocess::efficientnet(12),
    }
}

fn model(seed: u64) -> Fp32Model {
    let mut s = seed;
    Fp32Model::new(stored(&mut s)).unwrap()
}

fn input(n: usize, seed: u64) -> Tensor {
    let mut s = seed;
    rand_t(&[n, 3, 12, 12], &mut s, 1.0)
}

fn batches(seed: u64) -> Vec<Tensor> {
    (0..3).map(|i| input(4, seed + i)).collect()
}

const PAIRS: [(&str, &str); 4] = [("ex", "dw"), ("dw", "pj"), ("c5", "gc"), ("gc", "c7")];

#[test]
fn pairs_are_the_clean_chains() {
    let m = model(1);
    let found = pairs(&m.prepared);
    let want: Vec<(String, String)> = PAIRS
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    // stem: read by the block and the residual add; pj: read by the add; c7: by the pool.
    assert_eq!(found, want);
}

#[test]
fn equalization_keeps_the_fp32_function_with_relu6_exact() {
    for seed in [1u64, 2, 3] {
        let m = model(seed);
        let e = m.equalized().unwrap();
        // ReLU6 stays: as a ReLU with per-channel bounds 6/s_c (not 6: s_c ≠ 1).
        for n in ["ex", "dw", "gc"] {
            let b = e
                .prepared
                .act_max(n)
                .unwrap_or_else(|| panic!("{n}: no bounds"));
            assert!(b.iter().any(|&v| (v - 6.0).abs() > 0.1), "{n}: {b:?}");
        }
        assert!(e.prepared.act_max("c5").is_none(), "c5 is a plain ReLU");
        assert!(
            e.prepared.act_max("stem").is_none(),
            "stem is not in a pair"
        );
        let x = input(6, 100 + seed);
        let want = ptq4::engine::forward(&m.prepared, x.clone()).unwrap();
        let got = ptq4::engine::forward(&e.prepared, x.clone()).unwrap();
        let err = rel_err(&got, &want);
        assert!(err <= 1e-5, "seed {seed}: CPU relative error {err}");
        // The bounds bind: a plain ReLU in their place is another function.
        let mut unbounded = e.prepared.clone();
        unbounded.params.retain(|k, _| !k.ends_with(ACT_MAX));
        let loose = ptq4::engine::forward(&unbounded, x.clone()).unwrap();
        assert!(
            rel_err(&loose, &want) > 1e-2,
            "seed {seed}: the bounds never bind"
        );
        if let Some(ctx) = common::gpu() {
            let g0 = GpuGraph::new(ctx, &m.prepared)
                .unwrap()
                .forward(&x)
                .unwrap();
            let g1 = GpuGraph::new(ctx, &e.prepared)
                .unwrap()
                .forward(&x)
                .unwrap();
            let err = rel_err(&g1, &g0);
            assert!(err <= 1e-5, "seed {seed}: GPU relative error {err}");
            assert!(rel_err(&g1, &got) <= 1e-5, "seed {seed}: GPU vs CPU");
        }
    }
}

#[test]
fn equalization_matches_each_pairs_ranges() {
    let m = model(4);
    let mut unequal = 0f32;
    for (a, b) in PAIRS {
        let (r1, r2) = pair_ranges(&m.prepared, a, b).unwrap();
        for (x, y) in r1.iter().zip(&r2) {
            unequal = unequal.max(x / y).max(y / x);
        }
    }
    assert!(
        unequal > 4.0,
        "the test graph is already balanced ({unequal})"
    );
    let mut g = m.prepared.clone();
    let eq = equalize(&mut g).unwrap();
    assert!(eq.rounds > 1 && eq.rounds < ptq4::quant::equalize::MAX_ROUNDS);
    // Each channel's ranges match, or its scale sits on the floor that keeps conv₁'s
    // activation range from growing (then conv₁'s side is the smaller one).
    let (mut matched, mut floored) = (0, 0);
    for (a, b) in PAIRS {
        let (r1, r2) = pair_ranges(&g, a, b).unwrap();
        for (c, (x, y)) in r1.iter().zip(&r2).enumerate() {
            if (x - y).abs() <= 1e-3 * x.max(*y) {
                matched += 1;
            } else {
                assert!(x < y, "{a}→{b} channel {c}: {x} vs {y}");
                floored += 1;
            }
        }
    }
    eprintln!("{matched} channels matched, {floored} on the floor");
    assert!(
        3 * matched >= matched + floored,
        "{matched} matched, {floored} floored"
    );
    // No bound rose above 6, and the unbounded outputs (c5: ReLU) only shrank.
    for n in ["ex", "dw", "gc"] {
        assert!(g
            .act_max(n)
            .unwrap()
            .iter()
            .all(|&b| b <= 6.0 * (1.0 + 1e-6)));
    }
    assert!(eq.out_scale["c5"].iter().all(|&s| s >= 1.0));
    // The bounds are 6 over the accumulated scale of each output channel.
    for n in ["ex", "dw", "gc"] {
        let s = &eq.out_scale[n];
        for (b, s) in g.act_max(n).unwrap().iter().zip(s) {
            assert!((b * s - 6.0).abs() <= 1e-4, "{n}: bound {b} scale {s}");
        }
    }
    // Equalizing again changes nothing more than the tolerance.
    let before = g.clone();
    equalize(&mut g).unwrap();
    let w = |g: &Graph| g.param("dw", "weight").unwrap().data.clone();
    for (x, y) in w(&g).iter().zip(&w(&before)) {
        assert!((x - y).abs() <= 1e-3 * x.abs().max(1e-3), "{x} vs {y}");
    }
}

fn deploy_w8() -> QuantConfig {
    QuantConfig {
        protocol: Protocol::Deploy,
        wbits: 8,
        abits: 8,
        clip: ClipMethod::Minmax,
        bit_alloc: BitAlloc::None,
        bias_correction: false,
        equalize: true,
        ..QuantConfig::default()
    }
}

fn calibrated(m: &Fp32Model, cfg: &QuantConfig, backend: &Backend) -> (Calibration, QuantModel) {
    let e = pipeline::equalized(m, cfg).unwrap().unwrap();
    let pts = quant_points(&e.prepared, cfg);
    let cal = calibrate_batches_with(
        &e.prepared,
        &pts,
        &batches(50),
        backend,
        false,
        cfg.needs_layer_inputs(),
    )
    .unwrap();
    let q = pipeline::quantize_with(m, cfg, &cal, backend).unwrap();
    (cal, q)
}

fn calibrated0(m: &Fp32Model, cfg: &QuantConfig) -> QuantModel {
    let pts = quant_points(&m.prepared, cfg);
    let cal = calibrate_batches_with(&m.prepared, &pts, &batches(50), &Backend::Cpu, false, false)
        .unwrap();
    pipeline::quantize_with(m, cfg, &cal, &Backend::Cpu).unwrap()
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.data.iter().map(|v| v.to_bits()).collect()
}

/// Calibration measures min(x, bound) at a bounded conv's point (its window is that value's
/// ReLU), on the CPU and on the device alike.
#[test]
fn calibration_measures_the_bounded_values() {
    let m = model(5);
    let cfg = deploy_w8();
    let (cal, _) = calibrated(&m, &cfg, &Backend::Cpu);
    let e = m.equalized().unwrap();
    for n in ["ex", "dw", "gc"] {
        let bound = e.prepared.act_max(n).unwrap();
        let top = bound.iter().fold(0f32, |a, &b| a.max(b)) as f64;
        let st = &cal.stats[n];
        assert!(
            st.tensor.max <= top + 1e-6,
            "{n}: max {} > {top}",
            st.tensor.max
        );
        assert!(st.tensor.max >= 0.5 * top, "{n}: max {}", st.tensor.max);
    }
    // ACIQ's windows stop at the largest bound, as ReLU6's stop at 6 (W4A4, deploy).
    let aciq = QuantConfig {
        protocol: Protocol::Deploy,
        equalize: true,
        ..QuantConfig::default()
    };
    let (_, q) = calibrated(&m, &aciq, &Backend::Cpu);
    for n in ["ex", "dw", "gc"] {
        let top = e
            .prepared
            .act_max(n)
            .unwrap()
            .iter()
            .fold(0f32, |a, &b| a.max(b));
        let a = q.plan.acts.iter().find(|a| a.value == n).unwrap();
        let p = a.params[0];
        let hi = (p.qmax() - p.zero_point) as f32 * p.scale;
        assert!(
            hi <= top * (1.0 + 1e-5),
            "{n}: window top {hi} > bound {top}"
        );
    }
    let Some(ctx) = common::test_context() else {
        return;
    };
    let (dev, _) = calibrated(&m, &cfg, &Backend::Gpu(Arc::new(ctx)));
    for (v, s) in &cal.stats {
        let d = &dev.stats[v];
        let scale = s.tensor.max.abs().max(s.tensor.min.abs()).max(1e-6);
        for (a, b) in [
            (s.tensor.max, d.tensor.max),
            (s.tensor.min, d.tensor.min),
            (s.tensor.mean, d.tensor.mean),
        ] {
            assert!((a - b).abs() <= 1e-4 * scale, "{v}: CPU {a} vs device {b}");
        }
    }
}

/// Deploy plans of the equalized model: identical logits bits on the four executors
/// (calibrated and data-free; minmax, the paper's combination, and the best preset with
/// GPTQ and input-aware bias correction), the same after the quantized file, and at W8A8
/// close to FP32 when calibrated (the code caps are the FP32 bounds) and no further from it
/// than without equalization when data-free.
#[test]
fn equalized_deploy_plans_int_equal_sim_on_four_executors() {
    let m = model(6);
    let x = input(4, 7);
    let fp = ptq4::engine::forward(&m.prepared, x.clone()).unwrap();
    let paper_default = QuantConfig {
        protocol: Protocol::Deploy,
        bit_alloc: BitAlloc::W,
        equalize: true,
        ..QuantConfig::default()
    };
    let best = |free| QuantConfig {
        equalize: true,
        ..QuantConfig::best(4, 4, Protocol::Deploy, free)
    };
    let mut capped = 0;
    let dir = tempfile::tempdir().unwrap();
    for (what, cfg, free) in [
        ("W8A8 minmax", deploy_w8(), false),
        ("W8A8 minmax, data-free", deploy_w8(), true),
        ("W4A4 aciq + alloc + bc", paper_default.clone(), false),
        ("W4A4 aciq + alloc + bc, data-free", paper_default, true),
        ("best (gptq + bc input)", best(false), false),
        ("best, data-free", best(true), true),
    ] {
        let q = if free {
            pipeline::quantize(&m, &cfg, StatsSource::DataFree, &Backend::Cpu, false)
                .unwrap()
                .0
        } else {
            calibrated(&m, &cfg, &Backend::Cpu).1
        };
        assert!(q.plan.config.equalize, "{what}");
        let im = q.int_model().unwrap();
        capped += im
            .steps
            .iter()
            .filter(|s| s.name.ends_with(UNCAPPED))
            .count();
        let y = four_executors(&q, &x, what);
        let path = dir.path().join("q.ptq4");
        q.save(&path).unwrap();
        let LoadedModel::Quant(back) = LoadedModel::load(&path).unwrap() else {
            panic!("{what}: not a quantized model")
        };
        assert!(back.plan.config.equalize);
        assert_eq!(
            bits(&four_executors(&back, &x, what)),
            bits(&y),
            "{what}: file"
        );
        if cfg.wbits == 8 {
            let err = rel_err(&y, &fp);
            let plain = QuantConfig {
                equalize: false,
                ..cfg.clone()
            };
            let q0 = if free {
                pipeline::quantize(&m, &plain, StatsSource::DataFree, &Backend::Cpu, false)
                    .unwrap()
                    .0
            } else {
                calibrated0(&m, &plain)
            };
            let y0 = four_executors(&q0, &x, what);
            let err0 = rel_err(&y0, &fp);
            eprintln!("{what}: {err} from FP32, {err0} without equalization");
            // Data-free ranges from moments are loose on this toy graph: there, only no worse.
            let bound = if free { 1.1 * err0 } else { 0.05 };
            assert!(err < bound, "{what}: {err} from FP32 ({err0} without)");
        }
    }
    assert!(capped > 0, "no plan capped any codes");
}

/// The `paper` protocol on the equalized model runs on the CPU and the GPU (fake
/// quantization after the bounds) to nearby outputs.
#[test]
fn equalized_paper_plans_run_on_cpu_and_gpu() {
    let m = model(8);
    let x = input(4, 9);
    let cfg = QuantConfig {
        wbits: 8,
        abits: 8,
        equalize: true,
        ..QuantConfig::default()
    };
    let (_, q) = calibrated(&m, &cfg, &Backend::Cpu);
    let run = |b: &Backend| {
        b.bind(q.executable().unwrap(), None)
            .unwrap()
            .forward(x.clone())
            .unwrap()
    };
    let cpu = run(&Backend::Cpu);
    let fp = ptq4::engine::forward(&m.prepared, x.clone()).unwrap();
    assert!(rel_err(&cpu, &fp) < 0.05, "{}", rel_err(&cpu, &fp));
    if let Some(ctx) = common::test_context() {
        let gpu = run(&Backend::Gpu(Arc::new(ctx)));
        assert!(rel_err(&gpu, &cpu) < 0.02, "{}", rel_err(&gpu, &cpu));
    }
}

/// ONNX: the FP32 export of the equalized model (Min with the [C, 1, 1] bounds, then Relu)
/// and the QDQ export of its deploy plan run in onnxruntime to ptq4's outputs.
#[test]
fn onnxruntime_runs_equalized_exports() {
    let m = model(10);
    let e = m.equalized().unwrap();
    let fx = export(&e.prepared, None).unwrap();
    let g = fx.model.graph.as_ref().unwrap();
    let mins = g.node.iter().filter(|n| n.op_type() == "Min").count();
    assert_eq!(mins, 3, "one Min per bounded conv");
    let Some(py) = python() else {
        return;
    };
    let x = input(8, 11);
    let want = Backend::Cpu
        .bind(Executable::Fp32(&e.prepared), None)
        .unwrap()
        .forward(x.clone())
        .unwrap();
    ort_check(&py, &fx.to_bytes(), &x, &want, "fp32", None, &[]);
    let cfg = QuantConfig {
        protocol: Protocol::Deploy,
        bit_alloc: BitAlloc::None,
        equalize: true,
        ..QuantConfig::default()
    };
    let (_, q) = calibrated(&m, &cfg, &Backend::Cpu);
    let qx = export(q.graph(), Some(&q.plan)).unwrap();
    let sim = Backend::Cpu
        .bind(q.executable().unwrap(), Some(Exec::Exact))
        .unwrap()
        .forward(x.clone())
        .unwrap();
    ort_check(&py, &qx.to_bytes(), &x, &sim, "qdq", None, &[]);
}

/// EfficientNet-Lite0 (when fetched): the equalized model gives FP32 logits within 1e-5
/// relative of the original on real images, every MBConv block's expand → dw → project
/// chain is paired, and the pass converges.
#[test]
fn lite0_equalized_is_the_same_function() {
    let (Some(model), Some(data)) = (
        common::fetched("efficientnet-lite0"),
        common::fetched("imagenet-samples"),
    ) else {
        return;
    };
    let m = Fp32Model::new(ptq4::io::model::load_graph(&model).unwrap()).unwrap();
    let mut g = m.prepared.clone();
    let eq = equalize(&mut g).unwrap();
    let (lo, hi) = eq
        .out_scale
        .values()
        .flatten()
        .fold((f32::INFINITY, 0f32), |(a, b), &s| (a.min(s), b.max(s)));
    eprintln!(
        "lite0: {} pairs, {} rounds, accumulated scales {lo:.3e}..{hi:.3e}",
        eq.pairs.len(),
        eq.rounds
    );
    assert!(
        eq.rounds < ptq4::quant::equalize::MAX_ROUNDS,
        "no convergence"
    );
    let dws = (g.nodes.iter())
        .filter(|n| matches!(&n.op, Op::Conv2d(c) if c.is_depthwise()))
        .count();
    assert!(
        eq.pairs.len() >= 2 * dws - 1,
        "{} pairs for {dws} dw",
        eq.pairs.len()
    );
    let d = ptq4::io::dataset::Dataset::open(&data).unwrap();
    let (x, _) = d.load_batch(0..4, &g.preprocess, 1).unwrap();
    let a = ptq4::engine::forward(&m.prepared, x.clone()).unwrap();
    let b = ptq4::engine::forward(&g, x).unwrap();
    let err = rel_err(&b, &a);
    assert!(err <= 1e-5, "lite0: relative error {err}");
}

/// The command line on the bundled Fashion-MNIST MobileNet-V2 (offline): `quantize
/// --equalize` (data-free and calibrated, with `--preset best`, deploy) writes a model whose
/// plan records the flag; `eval --exec int` and `--exec sim` give one logits hash on the CPU
/// (and the GPU where there is one); `export` writes its QDQ ONNX.
#[test]
fn cli_quantize_equalize_then_eval_and_export() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = root.join("models/fmnist/mobilenet_v2.safetensors");
    let d = tempfile::tempdir().unwrap();
    let ptq4 = || {
        let mut c = assert_cmd::Command::cargo_bin("ptq4").unwrap();
        c.env("PTQ4_HOME", d.path().join("home"));
        c
    };
    let json = |out: &[u8]| -> serde_json::Value { serde_json::from_slice(out).unwrap() };
    for (i, stats) in [
        vec!["--data-free"],
        vec!["--calib", "fashion-mnist-calib", "--calib-n", "32"],
    ]
    .into_iter()
    .enumerate()
    {
        let q = d.path().join(format!("q{i}.ptq4"));
        let out = ptq4()
            .arg("quantize")
            .arg("--model")
            .arg(&model)
            .args(&stats)
            .args(["--protocol", "deploy", "--preset", "best", "--equalize"])
            .args([
                "--wbits",
                "4",
                "--abits",
                "8",
                "--backend",
                "cpu",
                "--json",
                "-o",
            ])
            .arg(&q)
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        assert_eq!(json(&out)["plan"]["equalize"], true, "{stats:?}");
        let mut backends = vec!["cpu"];
        if common::gpu().is_some() {
            backends.push("gpu");
        }
        let mut hashes = Vec::new();
        for b in backends {
            for exec in ["int", "sim"] {
                let out = ptq4()
                    .arg("eval")
                    .arg("--model")
                    .arg(&q)
                    .args(["--data", "fashion-mnist-test", "--limit", "64"])
                    .args(["--backend", b, "--exec", exec, "--json"])
                    .assert()
                    .success()
                    .get_output()
                    .stdout
                    .clone();
                hashes.push(json(&out)["logits_sha256"].as_str().unwrap().to_string());
            }
        }
        assert!(
            hashes.iter().all(|h| h == &hashes[0]),
            "{stats:?}: {hashes:?}"
        );
        ptq4()
            .arg("export")
            .arg(&q)
            .arg("-o")
            .arg(d.path().join(format!("q{i}.onnx")))
            .assert()
            .success();
    }
}
