//! Element-wise functions as code lookup tables (`requant::lut`, `StepKind::Lut`): the
//! `lut_ops` fixture (tools/onnx/make_fixtures.py: SiLU as Mul(x, Sigmoid(x)), HardSwish, a
//! standalone BatchNorm + ReLU after a Concat, LeakyRelu, HardSigmoid, a general Clip, a
//! standalone BatchNorm after it, Sigmoid) against onnxruntime in FP32 on the CPU and the
//! GPU; `deploy` plans (calibrated on both backends, and data-free) give identical logits
//! bits on the four integer executors; the `paper` protocol runs; the QDQ export runs in
//! onnxruntime; and DenseNet-121 (pre-activation BatchNorm after every Concat) quantizes
//! with `deploy` with identical logits on the four executors.

mod common;

use common::onnx::{fixtures, four_executors, ort_check, python, read_pb, rel_err};

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use ptq4::engine::device::context::GpuContext;
use ptq4::engine::exec::int_model::{Exec, StepKind};
use ptq4::engine::exec::GpuGraph;
use ptq4::engine::{Backend, Forward};
use ptq4::graph::{Activation, Graph, Op, Unary};
use ptq4::io::onnx::export::export;
use ptq4::io::onnx::{self as ox, PreprocessArgs, Preset};
use ptq4::model::Fp32Model;
use ptq4::pipeline::{quantize, quantize_with, StatsSource};
use ptq4::qmodel::QuantModel;
use ptq4::quant::config::{quant_points, Protocol, QuantConfig};
use ptq4::Tensor;

/// The fixture with the TF preset ((x − 127)/128: inputs in [−1, 1], which the data-free
/// input quantizer then covers).
fn lut_ops() -> Graph {
    let args = PreprocessArgs {
        preset: Some(Preset::Tf),
        ..Default::default()
    };
    ox::import(&fixtures().join("lut_ops.onnx"), &args).unwrap()
}

/// One GPU context for the binary, shared with the GPU backend.
fn gpu() -> Option<Arc<GpuContext>> {
    static CTX: OnceLock<Option<Arc<GpuContext>>> = OnceLock::new();
    CTX.get_or_init(|| common::test_context().map(Arc::new))
        .clone()
}

/// `n` inputs of the fixture's shape, uniform in [−1, 1].
fn inputs(n: usize, seed: u64) -> Tensor {
    let mut s = seed;
    let mut x = common::rand(&[n, 3, 12, 12], &mut s);
    let m = x.data.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    x.data.iter_mut().for_each(|v| *v /= m);
    x
}

#[test]
fn import_folds_silu_and_fuses_the_relu_into_the_standalone_batchnorm() {
    let m = Fp32Model::new(lut_ops()).unwrap();
    let g = &m.prepared;
    let unary: Vec<Unary> = g
        .nodes
        .iter()
        .filter_map(|n| match n.op {
            Op::Unary(u) => Some(u),
            _ => None,
        })
        .collect();
    assert_eq!(
        unary,
        [
            Unary::Silu,
            Unary::HardSwish,
            Unary::LeakyRelu { alpha: 0.1 },
            Unary::HardSigmoid {
                alpha: 0.3,
                beta: 0.45
            },
            Unary::Clip {
                min: -0.5,
                max: 1.5
            },
            Unary::Sigmoid,
        ]
    );
    let bns: Vec<Activation> = g
        .nodes
        .iter()
        .filter_map(|n| match n.op {
            Op::BatchNorm { act, .. } => Some(act),
            _ => None,
        })
        .collect();
    assert_eq!(bns, [Activation::Relu, Activation::None]);
    assert!(!g.nodes.iter().any(|n| matches!(n.op, Op::Relu)));
    // The IR round-trips through its JSON form.
    let json = serde_json::to_string(&g.nodes).unwrap();
    let back: Vec<ptq4::graph::Node> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, g.nodes);
}

#[test]
fn fp32_cpu_and_gpu_match_onnxruntime() {
    let m = Fp32Model::new(lut_ops()).unwrap();
    let x = read_pb(&fixtures().join("lut_ops_input.pb"));
    let want = read_pb(&fixtures().join("lut_ops_output.pb"));
    let cpu = ptq4::engine::forward(&m.prepared, x.clone()).unwrap();
    let e = rel_err(&cpu, &want);
    eprintln!("lut_ops FP32 CPU vs onnxruntime: relative error {e:.2e}");
    assert!(e <= 1e-5, "CPU: relative error {e}");
    let Some(ctx) = gpu() else {
        return;
    };
    let gg = GpuGraph::new(&ctx, &m.prepared).unwrap();
    let y = gg.forward(&x).unwrap();
    let e = rel_err(&y, &want);
    eprintln!("lut_ops FP32 GPU vs onnxruntime: relative error {e:.2e}");
    // The device's exp (sigmoid, SiLU) is not correctly rounded: a few ulps per value.
    assert!(e <= 1e-5, "GPU: relative error {e}");
}

fn deploy_cfg() -> QuantConfig {
    QuantConfig {
        protocol: Protocol::Deploy,
        ..QuantConfig::default()
    }
}

/// The plan's tables: one per channel for each standalone BatchNorm, one shared for each
/// Unary function.
fn assert_tables(q: &QuantModel) {
    let im = q.int_model().unwrap();
    let tables: Vec<usize> = im
        .steps
        .iter()
        .filter_map(|s| match &s.kind {
            StepKind::Lut(t) => Some(t.tables.len() / 256),
            _ => None,
        })
        .collect();
    assert_eq!(tables, [1, 1, 16, 1, 1, 1, 8, 1], "{tables:?}");
}

#[test]
fn deploy_calibrated_on_both_backends_and_data_free_agree_on_every_executor() {
    let m = Fp32Model::new(lut_ops()).unwrap();
    let cfg = deploy_cfg();
    let x = inputs(6, 3);
    let mut backends = vec![Backend::Cpu];
    backends.extend(gpu().map(Backend::Gpu));
    for backend in &backends {
        let calib = vec![inputs(4, 7), inputs(4, 8)];
        let pts = quant_points(&m.prepared, &cfg);
        let cal =
            ptq4::calib::calibrate_batches(&m.prepared, &pts, &calib, backend, false).unwrap();
        let q = quantize_with(&m, &cfg, &cal, backend).unwrap();
        assert_tables(&q);
        let sim = four_executors(&q, &x, "calibrated");
        // The tables compute the float functions on codes: the integer model follows the
        // FP32 one (4-bit activations: agreement on top-1 is not asserted, only sanity).
        assert!(sim.data.iter().all(|v| v.is_finite()));
    }
    let (q, _) = quantize(&m, &cfg, StatsSource::DataFree, &Backend::Cpu, false).unwrap();
    assert_tables(&q);
    four_executors(&q, &x, "data-free");
}

#[test]
fn paper_runs_on_cpu_and_gpu() {
    let m = Fp32Model::new(lut_ops()).unwrap();
    let cfg = QuantConfig {
        protocol: Protocol::Paper,
        ..QuantConfig::default()
    };
    let (q, _) = quantize(&m, &cfg, StatsSource::DataFree, &Backend::Cpu, false).unwrap();
    let x = inputs(3, 5);
    let run = |b: &Backend| {
        b.bind(q.executable().unwrap(), None)
            .unwrap()
            .forward(x.clone())
            .unwrap()
    };
    let cpu = run(&Backend::Cpu);
    assert_eq!(cpu.shape, [3, 10]);
    assert!(cpu.data.iter().all(|v| v.is_finite()));
    if let Some(ctx) = gpu() {
        let y = run(&Backend::Gpu(ctx));
        let e = rel_err(&y, &cpu);
        eprintln!("paper GPU vs CPU: relative error {e:.2e}");
        assert!(e <= 1e-3, "paper GPU vs CPU: {e}");
    }
}

#[test]
fn exports_run_in_onnxruntime() {
    let m = Fp32Model::new(lut_ops()).unwrap();
    let x = inputs(16, 11);
    // FP32 (every op ptq4 reads back too): ptq4's importer gives the same graph's logits.
    let fp = export(&m.prepared, None).unwrap();
    let want = ptq4::engine::forward(&m.prepared, x.clone()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fp32.onnx");
    fp.save(&path).unwrap();
    let none = PreprocessArgs {
        preset: Some(Preset::None),
        ..Default::default()
    };
    let back = ox::import(&path, &none).unwrap();
    let again = ptq4::engine::forward(&Fp32Model::new(back).unwrap().prepared, x.clone());
    let e = rel_err(&again.unwrap(), &want);
    assert!(e <= 1e-6, "FP32 export read back: relative error {e}");
    // QDQ of a deploy plan (calibrated on the CPU), against the exact simulation.
    let cfg = deploy_cfg();
    let pts = quant_points(&m.prepared, &cfg);
    let calib = vec![inputs(8, 7)];
    let cal =
        ptq4::calib::calibrate_batches(&m.prepared, &pts, &calib, &Backend::Cpu, false).unwrap();
    let q = quantize_with(&m, &cfg, &cal, &Backend::Cpu).unwrap();
    let qdq = export(q.graph(), Some(&q.plan)).unwrap();
    let Some(py) = python() else {
        return;
    };
    ort_check(&py, &fp.to_bytes(), &x, &want, "fp32", None, &[]);
    let sim = Backend::Cpu
        .bind(q.executable().unwrap(), Some(Exec::Exact))
        .unwrap()
        .forward(x.clone())
        .unwrap();
    // Most inputs: ONNX quantizes round(x / s), ptq4 round(x · (1/s)) (a one-code
    // difference near ties), which 4-bit codes can carry to the logits. Measured
    // (onnxruntime 1.20.1): 16/16 the same top-1, largest logit difference 2.4e-7, with
    // its optimisations off and on.
    let args = ["--min-top1", "0.9", "--max-steps", "inf"];
    ort_check(&py, &qdq.to_bytes(), &x, &sim, "qdq", None, &args);
    let optimized = ["--min-top1", "0.9", "--max-steps", "inf", "--optimize"];
    ort_check(&py, &qdq.to_bytes(), &x, &sim, "qdq", None, &optimized);
}

/// DenseNet-121 (random weights) at 224×224: a BatchNorm + ReLU after every Concat, each
/// one table per channel; one calibration image; int and exact on the CPU and the GPU give
/// the same logits bits.
#[test]
fn densenet121_deploy_gives_identical_logits_on_every_executor() {
    let dir = std::env::var_os("PTQ4_ONNX_LIGHT_RANDOM")
        .map(PathBuf::from)
        .unwrap_or_else(|| ptq4::io::fetch::home().join("onnx-light-random"));
    let path = dir.join("light_densenet121.onnx");
    if !path.exists() {
        common::skip_missing_data(&format!(
            "SKIPPED DenseNet-121: {} is missing (make it with tools/onnx/randomize_light.py)",
            path.display()
        ));
        return;
    }
    let args = PreprocessArgs {
        preset: Some(Preset::Imagenet),
        ..Default::default()
    };
    let m = Fp32Model::new(ox::import(&path, &args).unwrap()).unwrap();
    let standalone = m
        .prepared
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::BatchNorm { .. }))
        .count();
    assert!(standalone > 50, "{standalone} standalone BatchNorms");
    let cfg = deploy_cfg();
    let pts = quant_points(&m.prepared, &cfg);
    let mut s = 21;
    let x = common::rand(&[1, 3, 224, 224], &mut s);
    let cal =
        ptq4::calib::calibrate_batches(&m.prepared, &pts, &vec![x.clone()], &Backend::Cpu, false)
            .unwrap();
    let q = quantize_with(&m, &cfg, &cal, &Backend::Cpu).unwrap();
    let sim = four_executors(&q, &x, "DenseNet-121");
    assert_eq!(sim.data.len(), 1000);
}
