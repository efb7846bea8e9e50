//! LRN and average pooling with `count_include_pad = 1`, on every path: the fixtures of
//! tools/onnx/make_fixtures.py (`lrn_fixtures`) import and match onnxruntime on the CPU and
//! the GPU; `deploy` plans (data-free and calibrated on each backend, 4- and 8-bit
//! activations) give the same logits bit for bit on the integer kernels and the exact
//! simulation, CPU and GPU; `paper` plans run on both backends; the FP32 and QDQ exports run
//! in onnxruntime (`PTQ4_ONNX_PYTHON`, tools/onnx/check_export.py). The light Inception v1
//! with random weights (tools/onnx/randomize_light.py) quantizes and agrees on the four
//! integer executors too. GPU parts skip loudly without an adapter (`REQUIRE_GPU=1` fails).

mod common;

use common::onnx::{fixtures, four_executors, ort_check, python, read_pb, rel_err};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use prost::Message as _;
use ptq4::calib::calibrate_batches;
use ptq4::engine::exec::int_model::{Exec, StepKind};
use ptq4::engine::requant::{lrn_code, lrn_table};
use ptq4::engine::{Backend, BackendChoice, Executable, Forward};
use ptq4::graph::{Activation, Graph, Linear, Op, Pool, Preprocess};
use ptq4::io::onnx::export::export;
use ptq4::io::onnx::{self as ox, PreprocessArgs, Preset};
use ptq4::model::Fp32Model;
use ptq4::pipeline::{quantize, quantize_with, StatsSource};
use ptq4::quant::config::{quant_points, Protocol, QuantConfig};
use ptq4::quant::datafree::{lrn_moments, Moments};
use ptq4::quant::QParams;
use ptq4::Tensor;

const FIXTURES: [&str; 2] = ["lrn_net", "avg_include_pad_net"];

fn import(path: &Path) -> Fp32Model {
    let args = PreprocessArgs {
        preset: Some(Preset::None),
        ..Default::default()
    };
    Fp32Model::new(ox::import(path, &args).unwrap_or_else(|e| panic!("{path:?}: {e}"))).unwrap()
}

/// The GPU backend, once per test binary, or `None` (loud skip; `REQUIRE_GPU=1` panics).
fn gpu() -> Option<&'static Backend> {
    static B: OnceLock<Option<Backend>> = OnceLock::new();
    B.get_or_init(|| match BackendChoice::Gpu.resolve() {
        Ok(b) => Some(b),
        Err(e) if common::gpu_required() => panic!("REQUIRE_GPU=1 but no GPU: {e}"),
        Err(e) => {
            common::skip_loudly(&format!("SKIPPED GPU parts: no GPU ({e})"));
            None
        }
    })
    .as_ref()
}

fn run(b: &Backend, e: Executable, exec: Option<Exec>, x: &Tensor) -> Tensor {
    b.bind(e, exec).unwrap().forward(x.clone()).unwrap()
}

/// A fixed pseudo-random batch of `n` inputs shaped like `m`'s, values in about ±2.
fn batch(m: &Fp32Model, n: usize, seed: u64) -> Tensor {
    let mut shape = vec![n];
    shape.extend(&m.prepared.input_shape);
    let mut s = seed;
    let mut x = common::rand(&shape, &mut s);
    x.data.iter_mut().for_each(|v| *v *= 4.0);
    x
}

fn deploy(abits: u8) -> QuantConfig {
    QuantConfig {
        protocol: Protocol::Deploy,
        abits,
        ..QuantConfig::default()
    }
}

#[test]
fn fixtures_match_onnxruntime_on_cpu_and_gpu() {
    for name in FIXTURES {
        let m = import(&fixtures().join(format!("{name}.onnx")));
        let x = read_pb(&fixtures().join(format!("{name}_input.pb")));
        let want = read_pb(&fixtures().join(format!("{name}_output.pb")));
        let cpu = run(&Backend::Cpu, Executable::Fp32(&m.prepared), None, &x);
        let e = rel_err(&cpu, &want);
        eprintln!("{name}: CPU relative error {e:.2e}");
        assert!(e <= 1e-5, "{name} CPU: {e} ({cpu:?} vs {want:?})");
        if let Some(g) = gpu() {
            let y = run(g, Executable::Fp32(&m.prepared), None, &x);
            let e = rel_err(&y, &want);
            eprintln!("{name}: GPU relative error {e:.2e}");
            assert!(e <= 1e-5, "{name} GPU: {e} ({y:?} vs {want:?})");
        }
    }
    // The IR holds what the file says.
    let m = import(&fixtures().join("lrn_net.onnx"));
    let lrn: Vec<&Op> = m
        .prepared
        .nodes
        .iter()
        .map(|n| &n.op)
        .filter(|o| matches!(o, Op::Lrn { .. }))
        .collect();
    assert_eq!(
        lrn,
        [
            &Op::Lrn {
                size: 5,
                alpha: 1.0,
                beta: 0.75,
                bias: 2.0
            },
            &Op::Lrn {
                size: 3,
                alpha: 0.5,
                beta: 0.6,
                bias: 1.0
            }
        ]
    );
}

#[test]
fn deploy_plans_agree_bit_for_bit_on_the_four_integer_executors() {
    for name in FIXTURES {
        let m = import(&fixtures().join(format!("{name}.onnx")));
        let x = batch(&m, 3, 41);
        let calib: Vec<Tensor> = (0..2).map(|i| batch(&m, 4, 100 + i)).collect();
        let mut backends = vec![("cpu", &Backend::Cpu)];
        if let Some(g) = gpu() {
            backends.push(("gpu", g));
        }
        for abits in [4, 8] {
            let cfg = deploy(abits);
            let (q, _) = quantize(&m, &cfg, StatsSource::DataFree, &Backend::Cpu, false).unwrap();
            let im = q.int_model().unwrap();
            if name == "lrn_net" {
                let lrn = im
                    .steps
                    .iter()
                    .filter(|s| matches!(s.kind, StepKind::Lrn { .. }))
                    .count();
                assert_eq!(lrn, 2, "{name}: LRN steps");
            }
            let free = four_executors(&q, &x, &format!("{name} A{abits} data-free"));
            // The quantized file keeps the ops and their parameters: same logits read back.
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("q.ptq4");
            q.save(&path).unwrap();
            let ptq4::model::LoadedModel::Quant(back) =
                ptq4::model::LoadedModel::load(&path).unwrap()
            else {
                panic!("{name}: not read back as a quantized model")
            };
            assert_eq!(back.graph().nodes, q.graph().nodes, "{name}");
            let again = run(
                &Backend::Cpu,
                back.executable().unwrap(),
                Some(Exec::Int),
                &x,
            );
            assert_eq!(again.data, free.data, "{name} A{abits}: read back");
            let mut calibrated = Vec::new();
            for (bn, b) in &backends {
                let points = quant_points(&m.prepared, &cfg);
                let cal =
                    calibrate_batches(&m.prepared, &points, calib.as_slice(), b, false).unwrap();
                let q = quantize_with(&m, &cfg, &cal, b).unwrap();
                let what = format!("{name} A{abits} calibrated on {bn}");
                calibrated.push(four_executors(&q, &x, &what));
            }
            // The plan's codes do something: quantized logits follow the FP32 ones.
            let fp = run(&Backend::Cpu, Executable::Fp32(&m.prepared), None, &x);
            let e = rel_err(&calibrated[0], &fp);
            eprintln!(
                "{name} A{abits}: calibrated deploy vs FP32 relative error {e:.3}, data-free {:.3}",
                rel_err(&free, &fp)
            );
            if abits == 8 {
                assert!(e < 0.1, "{name} A8 calibrated: {e}");
            }
        }
    }
}

#[test]
fn paper_plans_run_on_cpu_and_gpu() {
    for name in FIXTURES {
        let m = import(&fixtures().join(format!("{name}.onnx")));
        let x = batch(&m, 2, 7);
        let cfg = QuantConfig::default();
        assert_eq!(cfg.protocol, Protocol::Paper);
        let (q, _) = quantize(&m, &cfg, StatsSource::DataFree, &Backend::Cpu, false).unwrap();
        let cpu = run(&Backend::Cpu, q.executable().unwrap(), None, &x);
        assert_eq!(cpu.shape[0], 2);
        assert!(cpu.data.iter().all(|v| v.is_finite()), "{name}: {cpu:?}");
        if let Some(g) = gpu() {
            let y = run(g, q.executable().unwrap(), None, &x);
            assert_eq!(y.shape, cpu.shape);
            let e = rel_err(&y, &cpu);
            eprintln!("{name} paper: GPU vs CPU relative difference {e:.2e}");
            assert!(y.data.iter().all(|v| v.is_finite()), "{name}: {y:?}");
        }
    }
}

// ---- onnxruntime (PTQ4_ONNX_PYTHON) ----

#[test]
fn fp32_and_qdq_exports_run_in_onnxruntime() {
    let Some(py) = python() else {
        return;
    };
    for name in FIXTURES {
        let m = import(&fixtures().join(format!("{name}.onnx")));
        let x = batch(&m, 4, 3);
        let fp = export(&m.prepared, None).unwrap();
        let want = run(&Backend::Cpu, Executable::Fp32(&m.prepared), None, &x);
        ort_check(&py, &fp.model.encode_to_vec(), &x, &want, "fp32", None, &[]);
        let calib = [batch(&m, 8, 5)];
        for abits in [4, 8] {
            let cfg = deploy(abits);
            let points = quant_points(&m.prepared, &cfg);
            let cal =
                calibrate_batches(&m.prepared, &points, &calib[..], &Backend::Cpu, false).unwrap();
            let q = quantize_with(&m, &cfg, &cal, &Backend::Cpu).unwrap();
            let e = export(q.graph(), Some(&q.plan)).unwrap();
            let ops: Vec<&str> = e
                .model
                .graph
                .as_ref()
                .unwrap()
                .node
                .iter()
                .map(|n| n.op_type())
                .collect();
            let want_op = if name == "lrn_net" {
                "LRN"
            } else {
                "AveragePool"
            };
            assert!(ops.contains(&want_op), "{name}: {ops:?}");
            let sim = run(
                &Backend::Cpu,
                q.executable().unwrap(),
                Some(Exec::Exact),
                &x,
            );
            // The same top-1 on every input; logit differences are reported only (one code
            // moved by ONNX's x/s against ptq4's x·(1/s) moves logits by whole steps).
            let qdq = e.model.encode_to_vec();
            let r = ort_check(&py, &qdq, &x, &sim, "qdq", None, &["--min-top1", "1"]);
            eprintln!("{name} A{abits} qdq: {r}");
        }
    }
}

/// The light Inception v1 with random weights (224 × 224, three LRN-free inception blocks
/// behind two LRNs), deploy data-free on one input: the four integer executors agree.
#[test]
fn light_inception_v1_random_deploy_agrees_on_the_four_integer_executors() {
    let dir = std::env::var_os("PTQ4_ONNX_LIGHT_RANDOM")
        .map(PathBuf::from)
        .unwrap_or_else(|| ptq4::io::fetch::home().join("onnx-light-random"));
    let path = dir.join("light_inception_v1.onnx");
    if !path.exists() {
        common::skip_missing_data(&format!(
            "SKIPPED light_inception_v1 with random weights: not in {} (make it with tools/onnx/randomize_light.py)",
            dir.display()
        ));
        return;
    }
    let t = std::time::Instant::now();
    let m = import(&path);
    let x = read_pb(&dir.join("light_inception_v1_input.pb"));
    let (q, _) = quantize(&m, &deploy(8), StatsSource::DataFree, &Backend::Cpu, false).unwrap();
    let lrn = q
        .int_model()
        .unwrap()
        .steps
        .iter()
        .filter(|s| matches!(s.kind, StepKind::Lrn { .. }))
        .count();
    assert_eq!(lrn, 2);
    let y = four_executors(&q, &x, "light_inception_v1");
    assert_eq!(y.shape, [1, 1000]);
    eprintln!(
        "light_inception_v1 deploy A8 data-free, 4 executors: {:.1} s",
        t.elapsed().as_secs_f64()
    );
}

// ---- IR-level: windows onnxruntime does not take (even LRN sizes), pooling edge cases ----

/// input [c, 5, 5] → `op` (the graph output).
fn one_op(c: usize, hw: usize, op: Op) -> Graph {
    Graph {
        name: "one_op".into(),
        input_shape: vec![c, hw, hw],
        nodes: vec![common::node("op", op, &["input"])],
        output: "op".into(),
        params: BTreeMap::new(),
        preprocess: Preprocess::efficientnet(hw),
    }
}

/// ONNX's LRN in f64, straight from its definition.
fn lrn_oracle(x: &Tensor, size: usize, alpha: f64, beta: f64, bias: f64) -> Vec<f64> {
    let (n, c, plane) = (x.shape[0], x.shape[1], x.shape[2] * x.shape[3]);
    let mut y = vec![0f64; x.data.len()];
    for img in 0..n {
        for ch in 0..c {
            let lo = ch as isize - ((size as isize - 1) / 2);
            let hi = ch as isize + (size as isize - 1 + 1) / 2; // ceil((size − 1)/2)
            for p in 0..plane {
                let mut sq = 0f64;
                for j in lo.max(0)..=hi.min(c as isize - 1) {
                    let v = x.data[(img * c + j as usize) * plane + p] as f64;
                    sq += v * v;
                }
                let i = (img * c + ch) * plane + p;
                y[i] = x.data[i] as f64 * (bias + alpha / size as f64 * sq).powf(-beta);
            }
        }
    }
    y
}

#[test]
fn lrn_of_every_window_size_matches_the_onnx_definition_on_cpu_and_gpu() {
    let mut seed = 3;
    for c in [1, 2, 5, 7] {
        for size in 1..=6 {
            let op = Op::Lrn {
                size,
                alpha: 0.9,
                beta: 0.75,
                bias: 1.5,
            };
            let g = one_op(c, 4, op);
            let mut x = common::rand(&[2, c, 4, 4], &mut seed);
            x.data.iter_mut().for_each(|v| *v *= 3.0);
            let want = lrn_oracle(&x, size, 0.9, 0.75, 1.5);
            let mut backends = vec![("CPU", &Backend::Cpu)];
            if let Some(gb) = gpu() {
                backends.push(("GPU", gb));
            }
            for (bn, b) in backends {
                let y = run(b, Executable::Fp32(&g), None, &x);
                for (i, (&a, &w)) in y.data.iter().zip(&want).enumerate() {
                    let e = (a as f64 - w).abs() / w.abs().max(1e-3);
                    assert!(e < 2e-6, "{bn} c {c} size {size} [{i}]: {a} vs {w}");
                }
            }
        }
    }
}

/// conv (3→`c`) → LRN of window `size` → global pool (or none: `spatial`) → flatten →
/// linear: deploy plans agree on the four integer executors for even windows, windows wider
/// than the channels, and a flatten of a 6×6 map (AlexNet's and ZFNet's classifier input).
#[test]
fn deploy_lrn_of_even_and_wide_windows_agrees_on_the_four_integer_executors() {
    for (c, size, spatial) in [(6, 4, false), (3, 8, false), (8, 1, false), (5, 5, true)] {
        let feats = if spatial { c * 36 } else { c };
        let mut seed = 17;
        let mut params = BTreeMap::new();
        params.insert(
            "c1.weight".to_string(),
            common::rand(&[c, 3, 3, 3], &mut seed),
        );
        params.insert(
            "fc.weight".to_string(),
            common::rand(&[3, feats], &mut seed),
        );
        params.insert("fc.bias".to_string(), common::rand(&[3], &mut seed));
        let fc = Linear {
            in_features: feats,
            out_features: 3,
            bias: true,
            act: Activation::None,
        };
        let lrn = Op::Lrn {
            size,
            alpha: 2.0,
            beta: 0.75,
            bias: 1.0,
        };
        let mut nodes = vec![
            common::node("c1", Op::Conv2d(common::conv(3, c, 3, 1, 1)), &["input"]),
            common::node("n1", lrn, &["c1"]),
        ];
        if !spatial {
            nodes.push(common::node("gap", Op::GlobalAvgPool, &["n1"]));
        }
        let flat_in = if spatial { "n1" } else { "gap" };
        nodes.push(common::node("flat", Op::Flatten, &[flat_in]));
        nodes.push(common::node("fc", Op::Linear(fc), &["flat"]));
        let g = Graph {
            name: "lrn_wide".into(),
            input_shape: vec![3, 6, 6],
            nodes,
            output: "fc".into(),
            params,
            preprocess: Preprocess::efficientnet(6),
        };
        let m = Fp32Model::new(g).unwrap();
        let x = batch(&m, 2, 9);
        for abits in [4, 8] {
            let (q, _) = quantize(
                &m,
                &deploy(abits),
                StatsSource::DataFree,
                &Backend::Cpu,
                false,
            )
            .unwrap();
            four_executors(&q, &x, &format!("c {c} size {size} A{abits}"));
        }
    }
}

#[test]
fn data_free_lrn_moments_scale_by_the_expected_denominator() {
    let m = |mean: f64, var: f64| Moments { mean, var };
    let x = [m(1.0, 4.0), m(-2.0, 1.0), m(0.5, 0.25)];
    // alpha 0: the constant bias^(−beta).
    let k0 = 2f64.powf(-0.75);
    let y = lrn_moments(&x, 3, 0.0, 0.75, 2.0);
    for (a, b) in x.iter().zip(&y) {
        assert!((b.mean - k0 * a.mean).abs() < 1e-12 && (b.var - k0 * k0 * a.var).abs() < 1e-12);
    }
    // Channel 0's window (size 3) is channels 0..=1: E[x²] = 5 + 5.
    let y = lrn_moments(&x, 3, 0.3, 0.75, 2.0);
    let k = (2.0f64 + 0.3f32 as f64 / 3.0 * 10.0).powf(-0.75);
    assert!((y[0].mean - k * 1.0).abs() < 1e-12, "{:?}", y[0]);
    assert!((y[0].var - k * k * 4.0).abs() < 1e-12, "{:?}", y[0]);
}

#[test]
fn lrn_tables_cover_every_window_sum_and_oversized_ones_are_refused() {
    let p = QParams {
        scale: 0.05,
        zero_point: 200,
        bits: 8,
    };
    let t = lrn_table(&p, 5, 1e-4, 0.75, 2.0).unwrap();
    // max |q − z| = 200: S up to 5·200².
    assert_eq!(t.len(), 5 * 200 * 200 + 1);
    assert_eq!(t[0], 2f64.powf(-0.75) as f32);
    let last = (2.0 + 1e-4 / 5.0 * 0.05f64.powi(2) * (5 * 200 * 200) as f64).powf(-0.75);
    assert_eq!(t[t.len() - 1], last as f32);
    assert!(t.windows(2).all(|w| w[1] <= w[0]));
    // The per-element rule: (s · (q − z)) · T[S], quantized.
    let out = QParams {
        scale: 0.04,
        zero_point: 128,
        bits: 8,
    };
    let v = 37;
    assert_eq!(
        lrn_code(&p, v, t[1369], &out),
        out.quantize((0.05 * 37.0) * t[1369])
    );
    // More than MAX_LRN_TABLE entries: refused (2^24 / 255² ≈ 258 channels at 8 bits).
    assert!(lrn_table(&p, 1000, 1e-4, 0.75, 2.0).is_none());
    assert!(lrn_table(&p, 5 * 2 * 2, 1e-4, 0.75, 2.0).is_some());
}

#[test]
fn average_pooling_with_count_include_pad_divides_by_the_kernel_area() {
    let mut seed = 23;
    // Kernel 3 stride 2 with padding 1, and the ceil-mode end padding of a 9-wide input.
    for (padding, hw) in [([1, 1, 1, 1], 9), ([0, 0, 1, 1], 8), ([1, 0, 2, 1], 7)] {
        let p = Pool {
            kernel: [3, 3],
            stride: [2, 2],
            padding,
            count_include_pad: true,
        };
        let g = one_op(2, hw, Op::AvgPool(p.clone()));
        let x = common::rand(&[2, 2, hw, hw], &mut seed);
        let oracle = ptq4::engine::cpu::reference::avg_pool(&x, &p);
        let cpu = run(&Backend::Cpu, Executable::Fp32(&g), None, &x);
        assert!(rel_err(&cpu, &oracle) < 1e-6, "{padding:?}");
        if let Some(gb) = gpu() {
            let y = run(gb, Executable::Fp32(&g), None, &x);
            assert!(rel_err(&y, &oracle) < 1e-6, "GPU {padding:?}");
        }
        // Ones: every output is (in-bounds taps)/9, at the corner (2·2)/9 with padding 1.
        let ones = Tensor {
            shape: x.shape.clone(),
            data: vec![1.0; x.data.len()],
        };
        let y = run(&Backend::Cpu, Executable::Fp32(&g), None, &ones);
        if padding[0] == 1 && padding[1] == 1 {
            assert_eq!(y.data[0], 4.0 / 9.0, "{padding:?}");
        }
        assert!(y.data.iter().all(|&v| v <= 1.0 && v > 0.0), "{y:?}");
        // Without the flag: the mean of the in-bounds ones is 1 everywhere.
        let g = one_op(
            2,
            hw,
            Op::AvgPool(Pool {
                count_include_pad: false,
                ..p
            }),
        );
        let y = run(&Backend::Cpu, Executable::Fp32(&g), None, &ones);
        assert!(y.data.iter().all(|&v| v == 1.0), "{y:?}");
    }
}

/// AlexNet's shape in small: conv → LRN → two-group conv → LRN → flatten of the map →
/// linear. The integer GPU kernels run the grouped conv per group (`gconv_int`); the four
/// executors agree.
#[test]
fn deploy_grouped_conv_between_lrns_agrees_on_the_four_integer_executors() {
    let mut seed = 29;
    let mut params = BTreeMap::new();
    params.insert(
        "c1.weight".to_string(),
        common::rand(&[8, 3, 3, 3], &mut seed),
    );
    params.insert(
        "c2.weight".to_string(),
        common::rand(&[6, 4, 3, 3], &mut seed),
    );
    params.insert(
        "fc.weight".to_string(),
        common::rand(&[4, 6 * 25], &mut seed),
    );
    params.insert("fc.bias".to_string(), common::rand(&[4], &mut seed));
    let lrn = Op::Lrn {
        size: 5,
        alpha: 1e-2,
        beta: 0.75,
        bias: 1.0,
    };
    let fc = Linear {
        in_features: 6 * 25,
        out_features: 4,
        bias: true,
        act: Activation::None,
    };
    let g = Graph {
        name: "grouped".into(),
        input_shape: vec![3, 5, 5],
        nodes: vec![
            common::node("c1", Op::Conv2d(common::conv(3, 8, 3, 1, 1)), &["input"]),
            common::node("r1", Op::Relu, &["c1"]),
            common::node("n1", lrn.clone(), &["r1"]),
            common::node("c2", Op::Conv2d(common::conv(8, 6, 3, 1, 2)), &["n1"]),
            common::node("n2", lrn, &["c2"]),
            common::node("flat", Op::Flatten, &["n2"]),
            common::node("fc", Op::Linear(fc), &["flat"]),
        ],
        output: "fc".into(),
        params,
        preprocess: Preprocess::efficientnet(5),
    };
    let m = Fp32Model::new(g).unwrap();
    let x = batch(&m, 3, 31);
    for abits in [4, 8] {
        let (q, _) = quantize(
            &m,
            &deploy(abits),
            StatsSource::DataFree,
            &Backend::Cpu,
            false,
        )
        .unwrap();
        four_executors(&q, &x, &format!("grouped A{abits}"));
    }
}
