//! Feature-map `Mul` and channel shuffle on every path, from the ONNX fixtures of
//! tools/onnx/make_fixtures.py (`mul_shuffle`): `mul_gate` (a squeeze-excitation gate, a
//! product of two branches, a Gemm gate reshaped to `[N, C, 1, 1]`) and `shuffle_nhwc` (an
//! NHWC input transposed to NCHW, two ShuffleNet channel shuffles). FP32 CPU and GPU against
//! onnxruntime; `deploy` plans (calibrated on the CPU and on the GPU, and data-free) give the
//! same logits bits on the integer kernels and the exact simulation, CPU and GPU; `paper`
//! runs on both; the QDQ export runs in onnxruntime (with `PTQ4_ONNX_PYTHON`). Also
//! `light_shufflenet` with random weights (~/.cache/ptq4/onnx-light-random), deploy, on the
//! four integer executors.

mod common;

use common::onnx::{four_executors, none, ort_check, python, read_pb, rel_err};

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use prost::Message as _;
use ptq4::calib;
use ptq4::engine::exec::int_model::Exec;
use ptq4::engine::{Backend, Executable, Forward};
use ptq4::graph::{Graph, Op};
use ptq4::io::onnx::export::export;
use ptq4::io::onnx::{self as ox};
use ptq4::model::Fp32Model;
use ptq4::pipeline;
use ptq4::qmodel::QuantModel;
use ptq4::quant::config::{quant_points, BitAlloc, Protocol, QuantConfig};
use ptq4::Tensor;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/onnx")
        .join(name)
}

fn import(path: &Path) -> Graph {
    ox::import(path, &none()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// NHWC → NCHW.
fn nchw(x: &Tensor) -> Tensor {
    let [n, h, w, c] = x.shape[..] else {
        panic!("{:?}", x.shape)
    };
    let mut data = vec![0f32; x.data.len()];
    for i in 0..n {
        for y in 0..h {
            for xx in 0..w {
                for ch in 0..c {
                    data[((i * c + ch) * h + y) * w + xx] = x.data[((i * h + y) * w + xx) * c + ch];
                }
            }
        }
    }
    Tensor {
        shape: vec![n, c, h, w],
        data,
    }
}

/// The fixture's graph and its onnxruntime input (NCHW) and output.
fn fixture_case(name: &str) -> (Graph, Tensor, Tensor) {
    let g = import(&fixture(&format!("{name}.onnx")));
    let mut x = read_pb(&fixture(&format!("{name}_input.pb")));
    if x.shape[1..] != g.input_shape[..] {
        x = nchw(&x);
    }
    (g, x, read_pb(&fixture(&format!("{name}_output.pb"))))
}

fn gpu_backend() -> Option<&'static Backend> {
    static B: OnceLock<Option<Backend>> = OnceLock::new();
    B.get_or_init(|| common::test_context().map(|c| Backend::Gpu(Arc::new(c))))
        .as_ref()
}

fn run(b: &Backend, e: Executable, exec: Option<Exec>, x: &Tensor) -> Tensor {
    b.bind(e, exec).unwrap().forward(x.clone()).unwrap()
}

/// Deterministic inputs of the graph's shape.
fn inputs(g: &Graph, n: usize, seed: u64) -> Tensor {
    let mut s = seed;
    let mut shape = vec![n];
    shape.extend(&g.input_shape);
    let mut x = common::rand(&shape, &mut s);
    x.data.iter_mut().for_each(|v| *v *= 2.0);
    x
}

/// How the statistics are gathered.
#[derive(Clone, Copy, Debug)]
enum Stats {
    CpuImages,
    GpuImages,
    DataFree,
}

fn quantized(m: &Fp32Model, protocol: Protocol, stats: Stats) -> Option<QuantModel> {
    let cfg = QuantConfig {
        protocol,
        bit_alloc: BitAlloc::None,
        ..QuantConfig::default()
    };
    let points = quant_points(&m.prepared, &cfg);
    let backend = match stats {
        Stats::GpuImages => gpu_backend()?,
        _ => &Backend::Cpu,
    };
    let cal = match stats {
        Stats::DataFree => calib::data_free(&m.stored, &m.prepared, &points).unwrap(),
        _ => {
            let batches: Vec<Tensor> = (0..3).map(|k| inputs(&m.prepared, 4, 31 + k)).collect();
            calib::calibrate_batches(&m.prepared, &points, &batches, backend, false).unwrap()
        }
    };
    Some(pipeline::quantize_with(m, &cfg, &cal, backend).unwrap())
}

#[test]
fn import_makes_mul_shuffle_and_an_nchw_input() {
    let (g, _, _) = fixture_case("mul_gate");
    let muls = g.nodes.iter().filter(|n| matches!(n.op, Op::Mul)).count();
    assert_eq!(muls, 3, "{:#?}", g.nodes);
    // The gate came first in the ONNX Mul; the IR takes the map first.
    let se = g.node("se_mul").unwrap();
    assert_eq!(se.inputs[0], "relu1");
    let (g, _, _) = fixture_case("shuffle_nhwc");
    assert_eq!(g.input_shape, vec![3, 10, 10], "the IR input is NCHW");
    let groups: Vec<usize> = g
        .nodes
        .iter()
        .filter_map(|n| match n.op {
            Op::ChannelShuffle { groups } => Some(groups),
            _ => None,
        })
        .collect();
    assert_eq!(groups, vec![2, 4]);
}

#[test]
fn fp32_cpu_and_gpu_match_onnxruntime() {
    for name in ["mul_gate", "shuffle_nhwc"] {
        let (g, x, want) = fixture_case(name);
        let m = Fp32Model::new(g).unwrap();
        let cpu = run(&Backend::Cpu, Executable::Fp32(&m.prepared), None, &x);
        let e = rel_err(&cpu, &want);
        eprintln!("{name}: CPU relative error {e:.2e}");
        assert!(e <= 1e-5, "{name}: CPU relative error {e}");
        if let Some(gpu) = gpu_backend() {
            let y = run(gpu, Executable::Fp32(&m.prepared), None, &x);
            let e = rel_err(&y, &want);
            eprintln!("{name}: GPU relative error {e:.2e}");
            assert!(e <= 1e-5, "{name}: GPU relative error {e}");
        }
    }
}

#[test]
fn a_transpose_that_is_no_shuffle_is_refused_by_name() {
    use ptq4::io::onnx::onnx::ModelProto;
    let bytes = std::fs::read(fixture("shuffle_nhwc.onnx")).unwrap();
    let mut m = ModelProto::decode(bytes.as_slice()).unwrap();
    let g = m.graph.as_mut().unwrap();
    let t = g.node.iter_mut().find(|n| n.name() == "shuffle2").unwrap();
    t.attribute[0].ints = vec![0, 1, 2, 4, 3];
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.onnx");
    std::fs::write(&p, m.encode_to_vec()).unwrap();
    let err = ox::import(&p, &none()).unwrap_err().to_string();
    assert!(err.contains("\"shuffle2\" (Transpose)"), "{err}");
    assert!(!err.contains("shuffle1"), "{err}");
}

#[test]
fn a_mul_of_unmatched_maps_is_refused_by_name() {
    use ptq4::io::onnx::onnx::ModelProto;
    let bytes = std::fs::read(fixture("mul_gate.onnx")).unwrap();
    let mut m = ModelProto::decode(bytes.as_slice()).unwrap();
    let g = m.graph.as_mut().unwrap();
    let mul = g
        .node
        .iter_mut()
        .find(|n| n.name() == "branch_mul")
        .unwrap();
    // [1, 8, 12, 12] times the [1, 3, 12, 12] image.
    mul.input[1] = "x".into();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.onnx");
    std::fs::write(&p, m.encode_to_vec()).unwrap();
    let err = ox::import(&p, &none()).unwrap_err().to_string();
    assert!(err.contains("\"branch_mul\" (Mul)"), "{err}");
    assert!(err.contains("[1, 3, 12, 12]"), "{err}");
}

#[test]
fn deploy_plans_give_one_logits_bits_on_four_executors() {
    for name in ["mul_gate", "shuffle_nhwc"] {
        let (g, _, _) = fixture_case(name);
        let m = Fp32Model::new(g).unwrap();
        let x = inputs(&m.prepared, 5, 77);
        for stats in [Stats::CpuImages, Stats::GpuImages, Stats::DataFree] {
            let Some(q) = quantized(&m, Protocol::Deploy, stats) else {
                continue;
            };
            let y = four_executors(&q, &x, &format!("{name} {stats:?}"));
            // The quantized file holds the new ops: saved and loaded, the same logits.
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("q.ptq4");
            q.save(&path).unwrap();
            let ptq4::model::LoadedModel::Quant(back) =
                ptq4::model::LoadedModel::load(&path).unwrap()
            else {
                panic!("{name}: not loaded as a quantized model")
            };
            let z = run(
                &Backend::Cpu,
                back.executable().unwrap(),
                Some(Exec::Int),
                &x,
            );
            assert_eq!(z.data, y.data, "{name} {stats:?}: saved and loaded");
            // The plan is close to FP32 (W4A4 on a tiny net: same top-1 on most inputs).
            let f = run(&Backend::Cpu, Executable::Fp32(&m.prepared), None, &x);
            let top1 = |t: &Tensor, i: usize| {
                let row = &t.data[i * 10..(i + 1) * 10];
                (0..10).fold(0, |b, k| if row[k] > row[b] { k } else { b })
            };
            let same = (0..5).filter(|&i| top1(&y, i) == top1(&f, i)).count();
            eprintln!("{name} {stats:?}: deploy vs FP32 top-1 {same}/5");
        }
    }
}

#[test]
fn paper_runs_on_cpu_and_gpu() {
    for name in ["mul_gate", "shuffle_nhwc"] {
        let (g, _, _) = fixture_case(name);
        let m = Fp32Model::new(g).unwrap();
        let x = inputs(&m.prepared, 3, 5);
        let q = quantized(&m, Protocol::Paper, Stats::CpuImages).unwrap();
        let cpu = run(&Backend::Cpu, q.executable().unwrap(), None, &x);
        assert!(cpu.data.iter().all(|v| v.is_finite()));
        if let Some(gpu) = gpu_backend() {
            let y = run(gpu, q.executable().unwrap(), None, &x);
            let e = rel_err(&y, &cpu);
            assert!(e <= 1e-3, "{name}: paper GPU vs CPU {e}");
        }
    }
}

#[test]
fn exports_run_in_onnxruntime() {
    let Some(py) = python() else {
        return;
    };
    for name in ["mul_gate", "shuffle_nhwc"] {
        let (g, _, _) = fixture_case(name);
        let m = Fp32Model::new(g).unwrap();
        let x = inputs(&m.prepared, 16, 3);
        let fp32 = run(&Backend::Cpu, Executable::Fp32(&m.prepared), None, &x);
        let e = export(&m.prepared, None).unwrap();
        ort_check(&py, &e.to_bytes(), &x, &fp32, "fp32", None, &[]);
        let q = quantized(&m, Protocol::Deploy, Stats::CpuImages).unwrap();
        let e = export(q.graph(), Some(&q.plan)).unwrap();
        let sim = run(
            &Backend::Cpu,
            q.executable().unwrap(),
            Some(Exec::Exact),
            &x,
        );
        // The same top-1 as the exact simulation on most inputs (QDQ rounds x / s, ptq4
        // x · (1/s): a one-code difference now and then; see tests/onnx_export.rs).
        ort_check(
            &py,
            &e.to_bytes(),
            &x,
            &sim,
            "qdq",
            None,
            &["--min-top1", "0.9"],
        );
    }
}

/// light_shufflenet with random weights: deploy W4A4 (data-free, and calibrated on two
/// random inputs), two inputs, on the four integer executors (grouped convs of 6, 28, 34,
/// 68 and 136 input channels per group on the GPU). About 11 s in release with lavapipe.
#[test]
fn light_shufflenet_random_deploy_on_four_executors() {
    let dir = std::env::var_os("PTQ4_ONNX_LIGHT_RANDOM")
        .map(PathBuf::from)
        .unwrap_or_else(|| ptq4::io::fetch::home().join("onnx-light-random"));
    let path = dir.join("light_shufflenet.onnx");
    if !path.exists() {
        common::skip_missing_data(&format!(
            "SKIPPED light_shufflenet with random weights: not in {} (make it with tools/onnx/randomize_light.py)",
            dir.display()
        ));
        return;
    }
    let t0 = std::time::Instant::now();
    let m = Fp32Model::new(import(&path)).unwrap();
    let x = inputs(&m.prepared, 2, 13);
    let cfg = QuantConfig {
        protocol: Protocol::Deploy,
        bit_alloc: BitAlloc::None,
        ..QuantConfig::default()
    };
    let points = quant_points(&m.prepared, &cfg);
    let cal = calib::data_free(&m.stored, &m.prepared, &points).unwrap();
    let q = pipeline::quantize_with(&m, &cfg, &cal, &Backend::Cpu).unwrap();
    four_executors(&q, &x, "light_shufflenet data-free");
    let batches = vec![inputs(&m.prepared, 2, 17)];
    let cal =
        calib::calibrate_batches(&m.prepared, &points, &batches, &Backend::Cpu, false).unwrap();
    let q = pipeline::quantize_with(&m, &cfg, &cal, &Backend::Cpu).unwrap();
    four_executors(&q, &x, "light_shufflenet calibrated");
    eprintln!("light_shufflenet: {:.1} s", t0.elapsed().as_secs_f64());
}

/// The `mul` and `shuffle` kernels against their CPU twins, bit for bit (one f32 product
/// per value; a permutation): x·x, that times a gate (the plane's max, exact on both), a
/// shuffle of 4 groups and one of 2, through the FP32 executors.
#[test]
fn mul_and_shuffle_kernels_equal_their_cpu_twins() {
    use common::node;
    let plane = ptq4::graph::Pool {
        kernel: [5, 7],
        stride: [5, 7],
        padding: [0; 4],
        count_include_pad: false,
    };
    let g = Graph {
        name: "mul_shuffle".into(),
        input_shape: vec![8, 5, 7],
        nodes: vec![
            node("sq", Op::Mul, &["input", "input"]),
            node("max", Op::MaxPool(plane), &["input"]),
            node("gated", Op::Mul, &["sq", "max"]),
            node("s4", Op::ChannelShuffle { groups: 4 }, &["gated"]),
            node("s2", Op::ChannelShuffle { groups: 2 }, &["s4"]),
        ],
        output: "s2".into(),
        params: Default::default(),
        preprocess: ptq4::graph::Preprocess::efficientnet(5),
    };
    g.validate().unwrap();
    let x = common::rand(&[3, 8, 5, 7], &mut 5);
    let cpu = run(&Backend::Cpu, Executable::Fp32(&g), None, &x);
    // Channel o of the output holds channel (o % 2)·4 + o / 2 of the 4-group shuffle, which
    // holds channel (c % 4)·2 + c / 4 of `gated`.
    let (n, c, hw) = (3, 8, 35);
    for i in 0..n {
        for o in 0..c {
            let c4 = (o % 2) * 4 + o / 2;
            let src = (c4 % 4) * 2 + c4 / 4;
            let pl = &x.data[(i * c + src) * hw..][..hw];
            let max = pl.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            for (q, &v) in pl.iter().enumerate() {
                assert_eq!(cpu.data[(i * c + o) * hw + q], v * v * max);
            }
        }
    }
    if let Some(gpu) = gpu_backend() {
        let y = run(gpu, Executable::Fp32(&g), None, &x);
        assert_eq!(y.data, cpu.data, "GPU vs CPU");
    }
}
