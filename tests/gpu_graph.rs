//! Whole graphs on the wgpu backend against the CPU engine: a small random graph, fake
//! quantization (codes exact), EfficientNet-Lite0 on the labelled images, device
//! calibration against CPU calibration, and the `plane_stats` kernel against its CPU twin.
//! On lavapipe; skips loudly without an adapter unless `REQUIRE_GPU=1`.

mod common;

use std::collections::BTreeMap;

use ptq4::engine::gpu::graph::{DeviceHook, Seen};
use ptq4::engine::gpu::{plane_stats, GpuContext, GpuGraph};
use ptq4::engine::{self, compare, Backend, BackendChoice, Hook};
use ptq4::graph::{passes, Activation, Conv2d, Graph, Linear, Node, Op, Pool, Preprocess};
use ptq4::quant::plan::ActQuant;
use ptq4::quant::scheme::QParams;
use ptq4::Tensor;

/// Largest GPU-vs-CPU difference of any node of the small graph, relative to the node's
/// largest CPU magnitude. Each output is an f32 sum of K ≤ 54 products in another order:
/// |Δ| ≤ γ_K·Σ|w·x| with γ_K = K·2⁻²⁴ ≈ 3.2e-6, Σ|w·x| a few times max|y|, compounded over
/// four layers: 2e-5.
const SMALL_REL_TOL: f32 = 2e-5;
/// Lite0 logits: 49 layers of such sums (K up to 1280); measured worst on lavapipe 1.1e-6
/// of the largest logit; budget 1e-4 of it, the budget for BatchNorm folding.
const LITE0_LOGIT_REL_TOL: f32 = 1e-4;
/// `plane_stats` f32 sums of n ≤ 3000 values (≤ 12 per invocation, then an 8-level tree)
/// against the f64 twin: |Δ| ≤ (12 + 8)·2⁻²⁴·Σ|term| ≈ 1.2e-6 of Σ|term|; budget 1e-5.
const PLANE_REL_TOL: f64 = 1e-5;
/// Quantizer scales from device vs CPU statistics of the same data (the budget).
const SCALE_REL_TOL: f32 = 1e-5;
/// Lite0 scales: the two backends' activations themselves differ (float sums in another
/// order: `compare` measures up to 7e-5 absolute on depthwise outputs), and a scale is
/// α*·b of a channel whose spread b can be ~1e-2, or the post-ReLU mean of a nearly dead
/// 0-bit channel: the data move scales by up to 7.9e-5 (measured, 3 photos). Budget 2e-4;
/// the reductions themselves are held to SCALE_REL_TOL on identical data (`calib_…`).
const LITE0_SCALE_REL_TOL: f32 = 2e-4;

fn lcg(seed: &mut u64) -> f32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

fn rand(shape: &[usize], seed: &mut u64) -> Tensor {
    let n = shape.iter().product();
    Tensor {
        shape: shape.to_vec(),
        data: (0..n).map(|_| lcg(seed)).collect(),
    }
}

fn conv(cin: usize, cout: usize, k: usize, s: usize, groups: usize) -> Conv2d {
    Conv2d {
        in_channels: cin,
        out_channels: cout,
        kernel: [k, k],
        stride: [s, s],
        dilation: [1, 1],
        padding: [k / 2; 4],
        groups,
        bias: false,
        act: Activation::None,
    }
}

pub(crate) fn node(name: &str, op: Op, inputs: &[&str]) -> Node {
    Node {
        name: name.into(),
        op,
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
    }
}

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
fn small_graph(seed: &mut u64) -> Graph {
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
            node("bn1", Op::BatchNorm { eps: 1e-3 }, &["c1"]),
            node("r1", Op::Relu6, &["bn1"]),
            node("dw", Op::Conv2d(conv(6, 6, 3, 1, 6)), &["r1"]),
            node("bn2", Op::BatchNorm { eps: 1e-3 }, &["dw"]),
            node("r2", Op::Relu6, &["bn2"]),
            node("pw", Op::Conv2d(conv(6, 6, 1, 1, 1)), &["r2"]),
            node("bn3", Op::BatchNorm { eps: 1e-3 }, &["pw"]),
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
        assert!(d.max_rel <= SMALL_REL_TOL, "{d:?}");
    }
    let worst = diffs.iter().fold(0f32, |m, d| m.max(d.max_rel));
    eprintln!("small graph: worst per-node |Δ| / max|cpu| = {worst:.2e}");
    let gg = GpuGraph::new(&ctx, &g).unwrap();
    let gpu = gg.forward(&x).unwrap();
    let cpu = engine::forward(&g, x.clone()).unwrap();
    assert_eq!(gpu.shape, cpu.shape);
    let scale = cpu.data.iter().fold(0f32, |m, v| m.max(v.abs()));
    for (a, b) in gpu.data.iter().zip(&cpu.data) {
        assert!((a - b).abs() <= SMALL_REL_TOL * scale, "{a} vs {b}");
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

/// Fake quantization on the CPU with `QParams::fake_quant`, after each producing node.
struct CpuFakeQuant<'a>(&'a [ActQuant]);

impl CpuFakeQuant<'_> {
    fn apply(&self, name: &str, x: &mut Tensor) {
        let Some(a) = self.0.iter().find(|a| a.value == name) else {
            return;
        };
        let (c, hw) = (x.shape[1], x.shape[2..].iter().product::<usize>());
        for (i, v) in x.data.iter_mut().enumerate() {
            let p = if a.per_channel {
                a.params[(i / hw) % c]
            } else {
                a.params[0]
            };
            *v = p.fake_quant(*v);
        }
    }
}

impl Hook for CpuFakeQuant<'_> {
    fn input(&mut self, x: &mut Tensor) -> ptq4::Result<()> {
        self.apply(Graph::INPUT, x);
        Ok(())
    }
    fn output(&mut self, node: &Node, x: &mut Tensor) -> ptq4::Result<()> {
        self.apply(&node.name, x);
        Ok(())
    }
}

fn act(value: &str, per_channel: bool, params: Vec<QParams>) -> ActQuant {
    ActQuant {
        value: value.into(),
        per_channel,
        act: Activation::None,
        params,
        clip: "test".into(),
        sqnr_db: None,
    }
}

/// Max pooling, ReLU6, add and concat compute exactly the same floats on both backends, so
/// with fake quantizers after each of them every code, hence every output, is identical.
#[test]
fn fake_quant_graph_codes_equal_cpu() {
    let Some(ctx) = common::test_context() else {
        return;
    };
    let pool = Pool {
        kernel: [2, 2],
        stride: [2, 2],
        padding: [0; 4],
    };
    let g = Graph {
        name: "exact".into(),
        input_shape: vec![3, 9, 7],
        nodes: vec![
            node("mp", Op::MaxPool(pool), &["input"]),
            node("r6", Op::Relu6, &["mp"]),
            node("add", Op::Add, &["r6", "mp"]),
            node("cat", Op::Concat, &["add", "mp"]),
        ],
        output: "cat".into(),
        params: BTreeMap::new(),
        preprocess: Preprocess::efficientnet(7),
    };
    g.validate().unwrap();
    let mut seed = 3;
    let mut x = rand(&[2, 3, 9, 7], &mut seed);
    x.data.iter_mut().for_each(|v| *v *= 8.0);
    // Quantizers with odd zero points and scales whose reciprocal is inexact; 4-, 3- and
    // 0-bit channels.
    let per_ch = |bits: [u8; 3]| -> Vec<QParams> {
        bits.iter()
            .enumerate()
            .map(|(c, &b)| QParams::from_range(-3.3 - c as f32, 5.7 + c as f32, b).unwrap())
            .collect()
    };
    let acts = vec![
        act(
            "input",
            false,
            vec![QParams::from_range(-7.1, 6.3, 4).unwrap()],
        ),
        act("mp", true, per_ch([4, 3, 0])),
        act("r6", false, vec![QParams::from_range(0.0, 6.0, 3).unwrap()]),
        act("add", true, per_ch([2, 4, 8])),
    ];
    let gpu = GpuGraph::new(&ctx, &g)
        .unwrap()
        .forward_fake_quant(&x, &acts)
        .unwrap();
    // The CPU engine has no concat kernel: quantize on the CPU up to `add`, concat by hand.
    let mut g_add = g.clone();
    g_add.nodes.pop();
    g_add.output = "add".into();
    let mut g_mp = g_add.clone();
    g_mp.nodes.truncate(1);
    g_mp.output = "mp".into();
    let a = engine::run(&g_add, x.clone(), &mut CpuFakeQuant(&acts)).unwrap();
    let m = engine::run(&g_mp, x.clone(), &mut CpuFakeQuant(&acts)).unwrap();
    let (n, hw) = (2, a.shape[2] * a.shape[3]);
    let mut want = Vec::new();
    for i in 0..n {
        want.extend_from_slice(&a.data[i * 3 * hw..(i + 1) * 3 * hw]);
        want.extend_from_slice(&m.data[i * 3 * hw..(i + 1) * 3 * hw]);
    }
    assert_eq!(gpu.shape, [2, 6, a.shape[2], a.shape[3]]);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&gpu.data), bits(&want));
    // Not a vacuous pass: many distinct levels, including clamped and 0-bit channels.
    let mut levels: Vec<u32> = bits(&want);
    levels.sort_unstable();
    levels.dedup();
    assert!(levels.len() > 10, "{} distinct values", levels.len());
}

/// Collects every quantized (post-quantizer) value the device produces.
#[derive(Default)]
struct Grab {
    rb: ptq4::engine::gpu::readback::Readback,
    names: Vec<String>,
    got: BTreeMap<String, Vec<f32>>,
}

impl DeviceHook for Grab {
    fn observe(
        &mut self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        seen: Seen<'_>,
        buf: &wgpu::Buffer,
        shape: &[usize],
    ) -> ptq4::Result<()> {
        let name = match seen {
            Seen::Input => Graph::INPUT,
            Seen::Output { node, .. } => node,
            Seen::PreActivation(_) => return Ok(()),
        };
        self.rb
            .stage(ctx, enc, buf, (shape.iter().product::<usize>() * 4) as u64)?;
        self.names.push(name.to_string());
        Ok(())
    }
    fn chunk_done(&mut self, ctx: &GpuContext, _: std::ops::Range<usize>) -> ptq4::Result<()> {
        let got = std::mem::take(&mut self.rb).finish(ctx)?;
        for (n, b) in self.names.drain(..).zip(got) {
            self.got.insert(n, bytemuck::pod_collect_to_vec(&b));
        }
        Ok(())
    }
}

/// Fake quantization inside the float graph: the quantizer inputs differ by f32 rounding
/// only, so codes agree except where a value lies within that rounding of a decision
/// boundary; such a code may move by one step. Budget: at most 1 % of the codes of any point
/// (the expected rate is ~1e-5), never more than one step.
#[test]
fn fake_quant_small_graph_codes_match_cpu() {
    let Some(ctx) = common::test_context() else {
        return;
    };
    const MAX_FLIP_FRACTION: f64 = 0.01;
    let mut seed = 21;
    let g = small_graph(&mut seed);
    let x = rand(&[2, 3, 13, 11], &mut seed);
    let mut acts = vec![act(
        "input",
        false,
        vec![QParams::from_range(-1.0, 1.0, 4).unwrap()],
    )];
    for n in &g.nodes[..g.nodes.len() - 1] {
        if matches!(n.op, Op::Conv2d(_) | Op::Add) {
            let p: Vec<QParams> = (0..6)
                .map(|c| QParams::from_range(-2.0 - c as f32 * 0.1, 4.0, 4).unwrap())
                .collect();
            acts.push(act(&n.name, true, p));
        }
    }
    let gg = GpuGraph::new(&ctx, &g).unwrap();
    let mut grab = Grab::default();
    gg.run(&x, &acts, &mut grab).unwrap();
    let mut cpu: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    struct Tap<'a>(CpuFakeQuant<'a>, &'a mut BTreeMap<String, Vec<f32>>);
    impl Hook for Tap<'_> {
        fn input(&mut self, x: &mut Tensor) -> ptq4::Result<()> {
            self.0.input(x)?;
            self.1.insert(Graph::INPUT.into(), x.data.clone());
            Ok(())
        }
        fn output(&mut self, node: &Node, x: &mut Tensor) -> ptq4::Result<()> {
            self.0.output(node, x)?;
            self.1.insert(node.name.clone(), x.data.clone());
            Ok(())
        }
    }
    engine::run(&g, x.clone(), &mut Tap(CpuFakeQuant(&acts), &mut cpu)).unwrap();
    for a in &acts {
        let (d, c) = (&grab.got[&a.value], &cpu[&a.value]);
        let step = a.params.iter().fold(0f32, |m, p| m.max(p.scale));
        let flips = d.iter().zip(c).filter(|(p, q)| p != q).count();
        for (p, q) in d.iter().zip(c) {
            assert!((p - q).abs() <= step * 1.0001, "{}: {p} vs {q}", a.value);
        }
        eprintln!("{}: {flips} of {} codes differ", a.value, d.len());
        assert!(
            flips as f64 <= MAX_FLIP_FRACTION * d.len() as f64,
            "{}: {flips} of {} codes differ",
            a.value,
            d.len()
        );
    }
    assert_eq!(
        grab.got["input"], cpu["input"],
        "identical inputs, identical codes"
    );
}

#[test]
fn backend_choice_resolves() {
    assert!(matches!(
        BackendChoice::Cpu.resolve().unwrap(),
        Backend::Cpu
    ));
    let auto = BackendChoice::Auto.resolve().unwrap();
    if common::gpu_required() {
        assert!(matches!(auto, Backend::Gpu(_)), "{}", auto.describe());
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
                (g.sum_d - w.sum_d).abs() <= PLANE_REL_TOL * s1,
                "{g:?} {w:?}"
            );
            assert!(
                (g.sum_d2 - w.sum_d2).abs() <= PLANE_REL_TOL * s2,
                "{g:?} {w:?}"
            );
        }
        let c = if planes % 3 == 0 { 3 } else { planes };
        let mut means: Vec<f32> = (0..c).map(|i| i as f32 * 0.1).collect();
        means.push(0.05);
        let got = plane_stats::plane_abs_dev(&ctx, &x, hw, &means).unwrap();
        let want = plane_stats::plane_abs_dev_cpu(&x, hw, &means).unwrap();
        for (g, w) in got.iter().zip(&want) {
            for k in 0..2 {
                assert!((g[k] - w[k]).abs() <= PLANE_REL_TOL * w[k].abs().max(1e-30));
            }
        }
    }
}

#[path = "gpu_graph/calib.rs"]
mod calib;
#[path = "gpu_graph/lite0.rs"]
mod lite0;
