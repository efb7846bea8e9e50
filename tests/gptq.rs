//! Second-order weight rounding (`--rounding gptq`, `quant::gptq`): on the calibration inputs
//! it saw, every layer's output error Σ‖(W − Ŵ)X‖² is at most nearest rounding's (and lower
//! in total); the codes keep the plan's quantizers, so integer execution equals the exact
//! simulation bit for bit (CPU and GPU); depthwise and grouped convs covered; bias correction
//! applies on top; input-aware bias correction zeroes each channel's mean output error; the
//! device calibration gives the same Hessians; GPTQ without images is refused, and data-free
//! input-aware bias correction uses the input means the data-free statistics predict.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::node;
use ptq4::calib::{calibrate_batches_with, Calibration};
use ptq4::engine::exec::int_model::{Exec, IntModel};
use ptq4::engine::{Backend, Hook};
use ptq4::graph::{passes, Activation, Conv2d, Graph, Linear, Node, Op, Preprocess};
use ptq4::quant::config::{
    quant_points, BiasMode, BitAlloc, ClipMethod, Protocol, QuantConfig, Rounding,
};
use ptq4::quant::plan::{make_plan_hessians, Plan};
use ptq4::quant::scheme::dequantize_weights;
use ptq4::quant::stats::TensorStats;
use ptq4::tensor::Tensor;

fn lcg(seed: &mut u64) -> f32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

fn rand_t(shape: &[usize], seed: &mut u64) -> Tensor {
    let n = shape.iter().product();
    Tensor {
        shape: shape.to_vec(),
        data: (0..n).map(|_| lcg(seed)).collect(),
    }
}

fn conv(cin: usize, cout: usize, k: usize, s: usize, groups: usize, pad: usize) -> Conv2d {
    Conv2d {
        in_channels: cin,
        out_channels: cout,
        kernel: [k, k],
        stride: [s, s],
        dilation: [1, 1],
        padding: [pad; 4],
        groups,
        bias: true,
        act: Activation::None,
    }
}

/// stem 3×3/2 → ReLU6 → depthwise 3×3 → ReLU6 → grouped 3×3 (2 groups of 6) → 1×1 →
/// ReLU → GAP → flatten → linear, with biases (no BatchNorm: the weights stay as drawn).
fn graph(seed: &mut u64) -> Graph {
    let mut params = BTreeMap::new();
    let mut w = |name: &str, shape: &[usize], seed: &mut u64| {
        params.insert(format!("{name}.weight"), rand_t(shape, seed));
        params.insert(format!("{name}.bias"), rand_t(&shape[..1], seed));
    };
    w("c1", &[12, 3, 3, 3], seed);
    w("dw", &[12, 1, 3, 3], seed);
    w("gc", &[12, 6, 3, 3], seed);
    w("pw", &[16, 12, 1, 1], seed);
    w("fc", &[5, 16], seed);
    let g = Graph {
        name: "gptq".into(),
        input_shape: vec![3, 14, 12],
        nodes: vec![
            node("c1", Op::Conv2d(conv(3, 12, 3, 2, 1, 1)), &["input"]),
            node("r1", Op::Relu6, &["c1"]),
            node("dw", Op::Conv2d(conv(12, 12, 3, 1, 12, 1)), &["r1"]),
            node("r2", Op::Relu6, &["dw"]),
            node("gc", Op::Conv2d(conv(12, 12, 3, 1, 2, 1)), &["r2"]),
            node("pw", Op::Conv2d(conv(12, 16, 1, 1, 1, 0)), &["gc"]),
            node("r3", Op::Relu, &["pw"]),
            node("gap", Op::GlobalAvgPool, &["r3"]),
            node("flat", Op::Flatten, &["gap"]),
            node(
                "fc",
                Op::Linear(Linear {
                    in_features: 16,
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
    };
    let mut g = g;
    passes::prepare(&mut g).unwrap();
    g
}

fn batches(seed: &mut u64) -> Vec<Tensor> {
    [3, 2, 3]
        .iter()
        .map(|&n| rand_t(&[n, 3, 14, 12], seed))
        .collect()
}

fn calibrate(g: &Graph, cfg: &QuantConfig, xs: &[Tensor], backend: &Backend) -> Calibration {
    let pts = quant_points(g, cfg);
    calibrate_batches_with(g, &pts, xs, backend, false, true).unwrap()
}

fn plan(g: &Graph, cfg: &QuantConfig, cal: &Calibration) -> Plan {
    let pts = quant_points(g, cfg);
    let stats: &BTreeMap<String, TensorStats> = &cal.stats;
    make_plan_hessians(
        g,
        cfg,
        &pts,
        stats,
        &cal.means,
        &cal.hessians,
        &cal.source,
        &mut ptq4::quant::mmse::ExactEval,
    )
    .unwrap()
}

/// Every node output (and the input) of the FP32 forward, batch by batch, from the
/// calibration's precise kernels.
struct Capture(BTreeMap<String, Vec<Tensor>>);
impl Hook for Capture {
    fn precise(&self) -> bool {
        true
    }
    fn input(&mut self, x: &mut Tensor) -> ptq4::Result<()> {
        self.0.entry("input".into()).or_default().push(x.clone());
        Ok(())
    }
    fn output(&mut self, n: &Node, x: &mut Tensor) -> ptq4::Result<()> {
        self.0.entry(n.name.clone()).or_default().push(x.clone());
        Ok(())
    }
}

/// Σ over images, output channels and positions of ((W − Ŵ) ∗ x)², in f64, straight from
/// the definition of the convolution (a linear layer is a 1×1 conv of a 1×1 map).
fn output_error(op: &Op, dw: &[f64], xs: &[Tensor]) -> f64 {
    output_sums(op, dw, xs).1
}

/// Per output channel the mean of (ΔW ∗ x) over images and positions, and Σ (ΔW ∗ x)².
fn output_sums(op: &Op, dw: &[f64], xs: &[Tensor]) -> (Vec<f64>, f64) {
    let c = match op {
        Op::Conv2d(c) => c.clone(),
        Op::Linear(l) => conv(l.in_features, l.out_features, 1, 1, 1, 0),
        _ => unreachable!(),
    };
    let (opg, ipg) = (c.out_channels / c.groups, c.in_channels / c.groups);
    let (kh, kw) = (c.kernel[0], c.kernel[1]);
    let mut total = 0.0;
    let mut sums = vec![0f64; c.out_channels];
    let mut count = 0usize;
    for x in xs {
        let (n, ih, iw) = match x.shape.len() {
            4 => (x.shape[0], x.shape[2], x.shape[3]),
            _ => (x.shape[0], 1, 1),
        };
        let (oh, ow) = c.out_hw(ih, iw).unwrap();
        count += n * oh * ow;
        for img in 0..n {
            for o in 0..c.out_channels {
                let g = o / opg;
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut s = 0.0f64;
                        for ci in 0..ipg {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let y =
                                        (oy * c.stride[0] + ky) as isize - c.padding[0] as isize;
                                    let xx =
                                        (ox * c.stride[1] + kx) as isize - c.padding[1] as isize;
                                    if y < 0 || xx < 0 || y >= ih as isize || xx >= iw as isize {
                                        continue;
                                    }
                                    let v = x.data[((img * c.in_channels + g * ipg + ci) * ih
                                        + y as usize)
                                        * iw
                                        + xx as usize];
                                    s += dw[((o * ipg + ci) * kh + ky) * kw + kx] * v as f64;
                                }
                            }
                        }
                        total += s * s;
                        sums[o] += s;
                    }
                }
            }
        }
    }
    (sums.iter().map(|v| v / count as f64).collect(), total)
}

fn deploy(wbits: u8, rounding: Rounding) -> QuantConfig {
    QuantConfig {
        protocol: Protocol::Deploy,
        wbits,
        abits: 8,
        clip: ClipMethod::Minmax,
        bit_alloc: BitAlloc::None,
        bias_correction: false,
        keep_8bit: Some(vec![]),
        rounding,
        ..QuantConfig::default()
    }
}

#[test]
fn gptq_output_error_never_above_nearest_on_the_calibration_inputs() {
    for (seed0, wbits, clip) in [
        (1u64, 4u8, ClipMethod::Minmax),
        (2, 3, ClipMethod::Mmse),
        (3, 4, ClipMethod::Mmse),
    ] {
        let mut seed = seed0;
        let g = graph(&mut seed);
        let xs = batches(&mut seed);
        let with = |r| QuantConfig {
            clip,
            ..deploy(wbits, r)
        };
        let cal = calibrate(&g, &with(Rounding::Gptq), &xs, &Backend::Cpu);
        let near = plan(&g, &with(Rounding::Nearest), &cal);
        let gptq = plan(&g, &with(Rounding::Gptq), &cal);
        let mut cap = Capture(BTreeMap::new());
        for x in &xs {
            ptq4::engine::run(&g, x.clone(), &mut cap).unwrap();
        }
        let (mut sum_near, mut sum_gptq) = (0.0, 0.0);
        for (ln, lg) in near.layers.iter().zip(&gptq.layers) {
            assert_eq!(ln.params, lg.params, "{}: the plan's quantizers", ln.node);
            let n = g.node(&ln.node).unwrap();
            let w = &g.param(&ln.node, "weight").unwrap().data;
            let err = |codes: &[u8]| {
                let wq = dequantize_weights(codes, &ln.params).unwrap();
                let d: Vec<f64> = w
                    .iter()
                    .zip(&wq)
                    .map(|(&a, &b)| a as f64 - b as f64)
                    .collect();
                output_error(&n.op, &d, &cap.0[&n.inputs[0]])
            };
            let (en, eg) = (err(&ln.codes), err(&lg.codes));
            eprintln!(
                "seed {seed0} W{wbits} {clip:?} {}: nearest {en:.4e} gptq {eg:.4e}",
                ln.node
            );
            assert!(
                eg <= en,
                "seed {seed0} {}: gptq {eg} > nearest {en}",
                ln.node
            );
            sum_near += en;
            sum_gptq += eg;
        }
        // Not a no-op: second-order rounding must buy something over the whole graph.
        assert!(
            sum_gptq < 0.8 * sum_near,
            "seed {seed0}: gptq {sum_gptq} vs nearest {sum_near}"
        );
    }
}

/// The deploy model of a GPTQ plan (weight bit allocation, weight-moment or input-aware bias
/// correction on top) runs the integer kernels and the exact simulation to the same logits,
/// on the CPU and on the GPU.
#[test]
fn gptq_plans_int_equal_sim_cpu_and_gpu() {
    for seed0 in [5u64, 6] {
        let mut seed = seed0;
        let g = graph(&mut seed);
        let xs = batches(&mut seed);
        let cfg = QuantConfig {
            protocol: Protocol::Deploy,
            abits: 4,
            bit_alloc: BitAlloc::W,
            bias_correction: true,
            bias_mode: [BiasMode::Weights, BiasMode::Input][seed0 as usize % 2],
            rounding: Rounding::Gptq,
            ..QuantConfig::default()
        };
        let cal = calibrate(&g, &cfg, &xs, &Backend::Cpu);
        let p = plan(&g, &cfg, &cal);
        assert!(p.layers.iter().all(|l| l.info.clip.ends_with("gptq")));
        let m = IntModel::new(&g, &p).unwrap();
        let x = &xs[0];
        let want = m.forward(x, Exec::Exact).unwrap();
        assert!(want.data.iter().all(|v| v.is_finite()));
        assert_eq!(
            m.forward(x, Exec::Int).unwrap().data,
            want.data,
            "seed {seed0}"
        );
        if let Some(ctx) = common::gpu() {
            for exec in [Exec::Int, Exec::Exact] {
                let got = m.forward_gpu(ctx, x, exec).unwrap();
                assert_eq!(got.data, want.data, "seed {seed0} GPU {exec:?}");
            }
        }
    }
}

/// Bias correction after GPTQ: each channel of the deployed weights (corrected scale on the
/// GPTQ codes plus the shift) has the float channel's mean and std.
#[test]
fn bias_correction_applies_to_gptq_codes() {
    let mut seed = 9;
    let g = graph(&mut seed);
    let xs = batches(&mut seed);
    let cfg = QuantConfig {
        bias_correction: true,
        ..deploy(4, Rounding::Gptq)
    };
    let cal = calibrate(&g, &cfg, &xs, &Backend::Cpu);
    let p = plan(&g, &cfg, &cal);
    let uncorrected = plan(
        &g,
        &QuantConfig {
            bias_correction: false,
            ..cfg.clone()
        },
        &cal,
    );
    for (l, u) in p.layers.iter().zip(&uncorrected.layers) {
        assert!(l.info.bias_corrected && l.info.clip.ends_with("gptq"));
        assert_eq!(
            l.codes, u.codes,
            "{}: bias correction keeps the codes",
            l.node
        );
        let w = &g.param(&l.node, "weight").unwrap().data;
        let per = w.len() / l.params.len();
        let deq = dequantize_weights(&l.codes, &l.params).unwrap();
        for (c, (row, qrow)) in w.chunks(per).zip(deq.chunks(per)).enumerate() {
            let std = |v: &[f32]| {
                let m = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
                (v.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
            };
            let (sw, sq) = (std(row), std(qrow));
            if std(
                &dequantize_weights(&u.codes[c * per..(c + 1) * per], &u.params[c..c + 1]).unwrap(),
            ) > 0.0
            {
                assert!(
                    (sw - sq).abs() <= 1e-5 * sw,
                    "{} channel {c}: std {sq} vs {sw}",
                    l.node
                );
            }
        }
    }
}

/// The device calibration reads layer inputs back and gives the CPU's Hessians (to the
/// rounding of the precise kernels' rare near-ties).
#[test]
fn gpu_calibration_hessians_equal_cpu() {
    let Some(ctx) = common::test_context() else {
        return;
    };
    let mut seed = 11;
    let g = graph(&mut seed);
    let xs = batches(&mut seed);
    let cfg = deploy(4, Rounding::Gptq);
    let cpu = calibrate(&g, &cfg, &xs, &Backend::Cpu);
    let gpu = calibrate(&g, &cfg, &xs, &Backend::Gpu(Arc::new(ctx)));
    assert_eq!(cpu.hessians.len(), 5);
    for (name, h) in &cpu.hessians {
        let d = &gpu.hessians[name];
        assert_eq!(h.rows, d.rows, "{name}");
        let scale = h.h.iter().fold(0f64, |a, &v| a.max(v.abs()));
        for (a, b) in h.h.iter().zip(&d.h) {
            assert!((a - b).abs() <= 1e-5 * scale, "{name}: {a} vs {b}");
        }
    }
}

/// `--bias-correction input`: on the calibration inputs, every layer's mean output error per
/// channel, (Ŵ − W) ∗ x plus the bias change, is zero (after nearest and after GPTQ
/// rounding); without it the error is not.
#[test]
fn input_bias_correction_zeroes_the_mean_output_error() {
    for rounding in [Rounding::Nearest, Rounding::Gptq] {
        let mut seed = 21;
        let g = graph(&mut seed);
        let xs = batches(&mut seed);
        let cfg = QuantConfig {
            bias_correction: true,
            bias_mode: BiasMode::Input,
            bit_alloc: BitAlloc::W,
            ..deploy(4, rounding)
        };
        let cal = calibrate(&g, &cfg, &xs, &Backend::Cpu);
        let p = plan(&g, &cfg, &cal);
        let mut cap = Capture(BTreeMap::new());
        for x in &xs {
            ptq4::engine::run(&g, x.clone(), &mut cap).unwrap();
        }
        let mut largest_uncorrected = 0f64;
        for l in &p.layers {
            assert!(l.info.bias_corrected);
            let n = g.node(&l.node).unwrap();
            let w = &g.param(&l.node, "weight").unwrap().data;
            let b = &g.param(&l.node, "bias").unwrap().data;
            let wq = dequantize_weights(&l.codes, &l.params).unwrap();
            let d: Vec<f64> = wq
                .iter()
                .zip(w)
                .map(|(&a, &b)| a as f64 - b as f64)
                .collect();
            let (mean, _) = output_sums(&n.op, &d, &cap.0[&n.inputs[0]]);
            for (c, &m) in mean.iter().enumerate() {
                let db = l.bias[c] as f64 - b[c] as f64;
                let scale = m.abs() + b[c].abs() as f64 + l.bias[c].abs() as f64;
                let err = m + db;
                assert!(
                    err.abs() <= 1e-5 * scale,
                    "{rounding:?} {} channel {c}: mean output error {err} (uncorrected {m})",
                    l.node
                );
                largest_uncorrected = largest_uncorrected.max(m.abs());
            }
        }
        assert!(
            largest_uncorrected > 1e-3,
            "{rounding:?}: {largest_uncorrected}"
        );
    }
}

#[test]
fn gptq_needs_images() {
    let mut seed = 13;
    let raw = graph(&mut seed);
    let m = ptq4::model::Fp32Model::new(raw).unwrap();
    let e = ptq4::pipeline::quantize(
        &m,
        &deploy(4, Rounding::Gptq),
        ptq4::pipeline::StatsSource::DataFree,
        &Backend::Cpu,
        false,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("--rounding gptq") && e.contains("data-free"),
        "{e}"
    );
}

/// Data-free input-aware bias correction: each output channel's bias moves by
/// −Σ_{ci, taps} (ŵ − w)·E[x_ci], E[x_ci] the input means the data-free statistics predict.
#[test]
fn data_free_input_bias_correction_uses_the_predicted_input_means() {
    let mut seed = 17;
    let m = ptq4::model::Fp32Model::new(graph(&mut seed)).unwrap();
    let g = &m.prepared;
    let cfg = QuantConfig {
        bias_correction: true,
        bias_mode: BiasMode::Input,
        ..deploy(4, Rounding::Nearest)
    };
    let cal = ptq4::calib::data_free(&m.stored, g, &quant_points(g, &cfg)).unwrap();
    let p = plan(g, &cfg, &cal);
    let mut moved = 0;
    for l in &p.layers {
        assert!(l.info.bias_corrected, "{}", l.node);
        let n = g.node(&l.node).unwrap();
        let (groups, taps) = match &n.op {
            Op::Conv2d(c) => (c.groups, c.kernel[0] * c.kernel[1]),
            _ => (1, 1),
        };
        let w = &g.param(&l.node, "weight").unwrap().data;
        let b = g.param_opt(&l.node, "bias").map(|t| t.data.clone());
        let wq = dequantize_weights(&l.codes, &l.params).unwrap();
        let means = &cal.means[&n.inputs[0]];
        let (cout, ipg) = (l.bias.len(), means.len() / groups);
        let per = w.len() / cout;
        for c in 0..cout {
            let g0 = c / (cout / groups) * ipg;
            let want: f64 = (0..per)
                .map(|k| (wq[c * per + k] as f64 - w[c * per + k] as f64) * means[g0 + k / taps])
                .sum();
            let db = l.bias[c] as f64 - b.as_ref().map_or(0.0, |b| b[c] as f64);
            assert!(
                (db + want).abs() <= 1e-5 * (1.0 + want.abs()),
                "{} channel {c}: bias moved {db}, want {}",
                l.node,
                -want
            );
            moved += usize::from(db != 0.0);
        }
    }
    assert!(moved > 0);
}

/// `Plan::same_model` (what lets `ablate` reuse the logits of an identical model): true for
/// the same plan under another configuration, false once one code or bias differs.
#[test]
fn same_model_compares_what_executes() {
    let mut seed = 19;
    let g = graph(&mut seed);
    let xs = batches(&mut seed);
    let cfg = deploy(4, Rounding::Nearest);
    let cal = calibrate(&g, &cfg, &xs, &Backend::Cpu);
    let p = plan(&g, &cfg, &cal);
    let mut q = p.clone();
    q.config.dual = 7;
    q.config.bit_alloc = BitAlloc::W;
    assert!(p.same_model(&q));
    q.layers[0].codes[0] ^= 1;
    assert!(!p.same_model(&q));
    let mut r = p.clone();
    r.layers[1].bias[0] += 1.0;
    assert!(!p.same_model(&r));
    let mut s = p.clone();
    s.config.protocol = Protocol::Paper;
    assert!(!p.same_model(&s));
}
