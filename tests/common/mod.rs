//! Shared test helpers: fetched models and data, the GPU test device and the CPU's
//! instruction sets, with loud skips; the numeric budgets ([`tol::Tol`]); the fixed-seed
//! proptest configuration.
#![allow(dead_code)]

pub mod kernels;
pub mod onnx;
pub mod tol;

use proptest::test_runner::{Config, RngAlgorithm, RngSeed, TestRunner};
use ptq4::engine::device::GpuContext;

use std::path::PathBuf;

/// The cached path of a fetchable item, fetching it if needed. Without a registry this
/// skips (returns None, printing why) unless `PTQ4_REQUIRE_DATA=1`, as in CI.
pub fn fetched(name: &str) -> Option<PathBuf> {
    match ptq4::io::fetch::fetch_one(name, false) {
        Ok(p) => Some(p),
        Err(e) => {
            if std::env::var("PTQ4_REQUIRE_DATA").as_deref() == Ok("1") {
                panic!("PTQ4_REQUIRE_DATA=1 but {name} could not be fetched: {e}");
            }
            eprintln!("SKIP: {name} not available ({e}); set PTQ4_REQUIRE_DATA=1 to fail instead");
            None
        }
    }
}

/// Whether CI demands a GPU adapter (`REQUIRE_GPU=1`).
pub fn gpu_required() -> bool {
    std::env::var("REQUIRE_GPU").is_ok_and(|v| v == "1")
}

/// The GPU context for tests. Without an adapter: prints why and returns `None` (the
/// test then skips), or panics when `REQUIRE_GPU=1`.
pub fn test_context() -> Option<GpuContext> {
    match GpuContext::new() {
        Ok(ctx) => Some(ctx),
        Err(e) if gpu_required() => panic!("REQUIRE_GPU=1 but no GPU context: {e}"),
        Err(e) => {
            skip_loudly(&format!(
                "SKIPPED GPU tests: no GPU context ({e}); set REQUIRE_GPU=1 to make this fail"
            ));
            None
        }
    }
}

/// One GPU context for the whole test binary (device creation on lavapipe is slow), or
/// `None` as [`test_context`] decides.
pub fn gpu() -> Option<&'static GpuContext> {
    static CTX: std::sync::OnceLock<Option<GpuContext>> = std::sync::OnceLock::new();
    CTX.get_or_init(test_context).as_ref()
}

/// Says why tests skip, once per test binary and message, on the process's stderr: the test
/// harness captures `eprintln!` of passing tests, so a skip through it would be silent.
pub fn skip_loudly(msg: &str) {
    use std::io::Write;
    static SAID: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
    if !said.iter().any(|m| m == msg) {
        said.push(msg.to_string());
        let _ = writeln!(std::io::stderr(), "{msg}");
    }
}

/// A missing model, data set or tool: fails when `PTQ4_REQUIRE_DATA=1` (CI sets it up),
/// else skips loudly.
pub fn skip_missing_data(msg: &str) {
    if std::env::var("PTQ4_REQUIRE_DATA").as_deref() == Ok("1") {
        panic!("PTQ4_REQUIRE_DATA=1 but {msg}");
    }
    skip_loudly(msg);
}

/// `isa` if this CPU runs it (it is in `available`); otherwise says so loudly and returns
/// `None`, and the test instantiated for that instruction set skips.
pub fn isa_or_skip<I: PartialEq + std::fmt::Debug>(isa: I, available: &[I]) -> Option<I> {
    if available.contains(&isa) {
        Some(isa)
    } else {
        skip_loudly(&format!(
            "SKIPPED {isa:?} tests: this CPU lacks the {isa:?} instruction set"
        ));
        None
    }
}

/// The seed of every property test, so that a failure reproduces on any machine.
pub const PROPTEST_SEED: u64 = 0x7074_7134_7465_7374;

/// A deterministic proptest configuration: `cases` cases drawn by ChaCha from
/// [`PROPTEST_SEED`], and no failure-persistence files (the seed alone reproduces a case).
pub fn proptest_config(cases: u32) -> Config {
    proptest_config_seeded(cases, PROPTEST_SEED)
}

/// [`proptest_config`] with another fixed seed (suites that keep their historical cases).
pub fn proptest_config_seeded(cases: u32, seed: u64) -> Config {
    Config {
        cases,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..Config::default()
    }
}

/// A runner of [`proptest_config`], for suites that drive proptest by hand.
pub fn proptest_runner(cases: u32) -> TestRunner {
    TestRunner::new(proptest_config(cases))
}

/// A fixed-seed uniform value in [−1, 1) (64-bit LCG), for synthetic test tensors.
pub fn lcg(seed: &mut u64) -> f32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

/// A tensor of [`lcg`] values.
pub fn rand(shape: &[usize], seed: &mut u64) -> ptq4::Tensor {
    let n = shape.iter().product();
    ptq4::Tensor {
        shape: shape.to_vec(),
        data: (0..n).map(|_| lcg(seed)).collect(),
    }
}

/// A square conv with "half" padding, no bias, no fused activation.
pub fn conv(cin: usize, cout: usize, k: usize, s: usize, groups: usize) -> ptq4::graph::Conv2d {
    ptq4::graph::Conv2d {
        in_channels: cin,
        out_channels: cout,
        kernel: [k, k],
        stride: [s, s],
        dilation: [1, 1],
        padding: [k / 2; 4],
        groups,
        bias: false,
        act: ptq4::graph::Activation::None,
    }
}

/// A graph node reading `inputs`.
pub fn node(name: &str, op: ptq4::graph::Op, inputs: &[&str]) -> ptq4::graph::Node {
    ptq4::graph::Node {
        name: name.into(),
        op,
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
    }
}

/// conv c1 (3→4, 3×3) → BatchNorm bn1 → ReLU r1 → global pool → flatten → linear fc
/// (4→`classes`), on a 3 × 8 × 8 input: the smallest model with every stage of the pipeline.
pub fn small_classifier(name: &str, classes: usize) -> ptq4::graph::Graph {
    use ptq4::graph::{Graph, Linear, Op, Preprocess};
    let mut seed = 7;
    let mut params = std::collections::BTreeMap::new();
    params.insert("c1.weight".to_string(), rand(&[4, 3, 3, 3], &mut seed));
    for p in ["weight", "bias", "running_mean"] {
        params.insert(format!("bn1.{p}"), rand(&[4], &mut seed));
    }
    params.insert(
        "bn1.running_var".into(),
        ptq4::Tensor {
            shape: vec![4],
            data: vec![0.5, 1.0, 1.5, 2.0],
        },
    );
    params.insert("fc.weight".into(), rand(&[classes, 4], &mut seed));
    params.insert("fc.bias".into(), rand(&[classes], &mut seed));
    let fc = Linear {
        in_features: 4,
        out_features: classes,
        bias: true,
        act: ptq4::graph::Activation::None,
    };
    Graph {
        name: name.into(),
        input_shape: vec![3, 8, 8],
        nodes: vec![
            node("c1", Op::Conv2d(conv(3, 4, 3, 1, 1)), &["input"]),
            node(
                "bn1",
                Op::BatchNorm {
                    eps: 1e-3,
                    act: Default::default(),
                },
                &["c1"],
            ),
            node("r1", Op::Relu, &["bn1"]),
            node("gap", Op::GlobalAvgPool, &["r1"]),
            node("flat", Op::Flatten, &["gap"]),
            node("fc", Op::Linear(fc), &["flat"]),
        ],
        output: "fc".into(),
        params,
        preprocess: Preprocess::efficientnet(8),
    }
}
