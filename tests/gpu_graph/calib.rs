//! Device calibration against CPU calibration on a graph both backends compute exactly:
//! integer inputs, integer weights and biases and small fan-in keep every conv sum an
//! integer below 2²⁴, so every pre-activation value is bit-identical on both and any
//! difference comes from the device reductions themselves.

use std::collections::BTreeMap;

use super::{common, node, Tol};
use ptq4::calib::calibrate_batches;
use ptq4::calib::device::calibrate_gpu;
use ptq4::engine::gpu::mmse::GpuMse;
use ptq4::engine::Backend;
use ptq4::graph::{Activation, Conv2d, Graph, Linear, Op, Preprocess};
use ptq4::quant::config::{quant_points, ClipMethod, Protocol, QuantConfig};
use ptq4::quant::plan::{make_plan, make_plan_with};
use ptq4::Tensor;

fn ints(shape: &[usize], lo: i32, hi: i32, seed: &mut u64) -> Tensor {
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|_| {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (lo + ((*seed >> 33) % (hi - lo + 1) as u64) as i32) as f32
        })
        .collect();
    Tensor::from_vec(shape, data).unwrap()
}

fn conv(cin: usize, cout: usize, k: usize, s: usize, groups: usize, act: Activation) -> Conv2d {
    Conv2d {
        in_channels: cin,
        out_channels: cout,
        kernel: [k, k],
        stride: [s, s],
        dilation: [1, 1],
        padding: [k / 2; 4],
        groups,
        bias: true,
        act,
    }
}

/// Prepared form: conv s2 ReLU6 → depthwise ReLU6 → 1×1 conv → add → 1×1 conv ReLU →
/// GAP → flatten → linear; weights in {−2…2}, biases in {−3…3}.
fn exact_graph(seed: &mut u64) -> Graph {
    let mut params = BTreeMap::new();
    let mut put = |name: &str, shape: &[usize], lo, hi, seed: &mut u64| {
        params.insert(name.to_string(), ints(shape, lo, hi, seed));
    };
    put("c1.weight", &[8, 3, 3, 3], -2, 2, seed);
    put("c1.bias", &[8], -3, 3, seed);
    put("dw.weight", &[8, 1, 3, 3], -2, 2, seed);
    put("dw.bias", &[8], -3, 3, seed);
    put("pw.weight", &[8, 8, 1, 1], -2, 2, seed);
    put("pw.bias", &[8], -3, 3, seed);
    put("c2.weight", &[12, 8, 1, 1], -2, 2, seed);
    put("c2.bias", &[12], -3, 3, seed);
    put("fc.weight", &[4, 12], -2, 2, seed);
    put("fc.bias", &[4], -3, 3, seed);
    let g = Graph {
        name: "exact".into(),
        input_shape: vec![3, 21, 19],
        nodes: vec![
            node(
                "c1",
                Op::Conv2d(conv(3, 8, 3, 2, 1, Activation::Relu6)),
                &["input"],
            ),
            node(
                "dw",
                Op::Conv2d(conv(8, 8, 3, 1, 8, Activation::Relu6)),
                &["c1"],
            ),
            node(
                "pw",
                Op::Conv2d(conv(8, 8, 1, 1, 1, Activation::None)),
                &["dw"],
            ),
            node("add", Op::Add, &["pw", "c1"]),
            node(
                "c2",
                Op::Conv2d(conv(8, 12, 1, 1, 1, Activation::Relu)),
                &["add"],
            ),
            node("gap", Op::GlobalAvgPool, &["c2"]),
            node("flat", Op::Flatten, &["gap"]),
            node(
                "fc",
                Op::Linear(Linear {
                    in_features: 12,
                    out_features: 4,
                    bias: true,
                    act: Activation::None,
                }),
                &["flat"],
            ),
        ],
        output: "fc".into(),
        params,
        preprocess: Preprocess::efficientnet(19),
    };
    g.validate().unwrap();
    g
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= Tol::DEVICE_MOMENTS.bound(a.abs().max(b.abs()).max(1e-12))
}

#[test]
fn calib_gpu_equals_cpu_on_exact_data() {
    let Some(ctx) = common::test_context() else {
        return;
    };
    let mut seed = 17;
    let g = exact_graph(&mut seed);
    // Three batches (2, 2, 1 images) so accumulation across batches is exercised.
    let batches: Vec<Tensor> = [2, 2, 1]
        .iter()
        .map(|&n| ints(&[n, 3, 21, 19], -4, 4, &mut seed))
        .collect();
    for protocol in [Protocol::Paper, Protocol::Deploy] {
        let cfg = QuantConfig {
            protocol,
            ..QuantConfig::default()
        };
        let points = quant_points(&g, &cfg);
        let cpu = calibrate_batches(&g, &points, &batches, &Backend::Cpu, false).unwrap();
        let gpu = calibrate_gpu(&ctx, &g, &points, &batches).unwrap();
        assert_eq!(cpu.source, gpu.source);
        assert_eq!(cpu.stats.len(), points.len());
        for (k, s) in &cpu.stats {
            let t = &gpu.stats[k];
            for (a, b) in s
                .channels
                .iter()
                .chain([&s.tensor])
                .zip(t.channels.iter().chain([&t.tensor]))
            {
                assert_eq!((a.count, a.min, a.max), (b.count, b.min, b.max), "{k}");
                assert_eq!(a.hist, b.hist, "{k}: histograms");
                assert!(close(a.mean, b.mean), "{k}: mean {} vs {}", a.mean, b.mean);
                assert!(close(a.mad, b.mad), "{k}: mad {} vs {}", a.mad, b.mad);
                assert!(close(a.std, b.std), "{k}: std {} vs {}", a.std, b.std);
            }
        }
        assert_eq!(
            cpu.means.keys().collect::<Vec<_>>(),
            gpu.means.keys().collect::<Vec<_>>()
        );
        for (k, m) in &cpu.means {
            for (a, b) in m.iter().zip(&gpu.means[k]) {
                assert!(close(*a, *b), "{k}: mean {a} vs {b}");
            }
        }
        let pc = make_plan(&g, &cfg, &points, &cpu.stats, &cpu.means, &cpu.source).unwrap();
        let pg = make_plan(&g, &cfg, &points, &gpu.stats, &gpu.means, &gpu.source).unwrap();
        for (a, b) in pc.acts.iter().zip(&pg.acts) {
            for (p, q) in a.params.iter().zip(&b.params) {
                assert_eq!(
                    (p.bits, p.zero_point),
                    (q.bits, q.zero_point),
                    "{}",
                    a.value
                );
                let rel = (p.scale - q.scale).abs() / p.scale;
                assert!(
                    f64::from(rel) <= Tol::CALIB_SCALE.rel,
                    "{}: {} vs {}",
                    a.value,
                    p.scale,
                    q.scale
                );
            }
        }
        for (a, b) in pc.layers.iter().zip(&pg.layers) {
            assert_eq!(a.params, b.params, "{}", a.node);
        }
    }
}

/// `--clip mmse` on the GPU backend: with the device evaluating the MMSE objective on the
/// device calibration's histograms, the plan equals the all-CPU plan from the same
/// statistics, bit for bit (both protocols: per-channel and per-tensor histograms).
#[test]
fn mmse_plan_with_device_objective_equals_cpu_plan() {
    let Some(ctx) = common::test_context() else {
        return;
    };
    let mut seed = 23;
    let g = exact_graph(&mut seed);
    let batches: Vec<Tensor> = [2, 1]
        .iter()
        .map(|&n| ints(&[n, 3, 21, 19], -4, 4, &mut seed))
        .collect();
    for protocol in [Protocol::Paper, Protocol::Deploy] {
        let cfg = QuantConfig {
            protocol,
            clip: ClipMethod::Mmse,
            ..QuantConfig::default()
        };
        let points = quant_points(&g, &cfg);
        let cal = calibrate_gpu(&ctx, &g, &points, &batches).unwrap();
        let (st, means, src) = (&cal.stats, &cal.means, &cal.source);
        let cpu = make_plan(&g, &cfg, &points, st, means, src).unwrap();
        let gpu =
            make_plan_with(&g, &cfg, &points, st, means, src, &mut GpuMse::new(&ctx)).unwrap();
        assert!(cpu.acts.iter().all(|a| a.clip == "mmse"), "{protocol:?}");
        assert_eq!(cpu, gpu, "{protocol:?}");
    }
}
