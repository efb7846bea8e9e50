//! Integer execution of `deploy` plans: the integer kernels (CPU and GPU) and the exact
//! simulation agree code for code, and both equal an exact i64 oracle.

mod common;

use std::collections::BTreeMap;

use proptest::prelude::*;
use ptq4::engine::cpu::int::{self, PackedWeights, QTensor};
use ptq4::engine::intexec::{Exec, IntModel};
use ptq4::engine::requant::Epilogue;
use ptq4::engine::sim;
use ptq4::graph::{passes, Activation, Conv2d, Graph, Linear, Node, Op, Preprocess};
use ptq4::quant::config::{quant_points, BitAlloc, Protocol, QuantConfig};
use ptq4::quant::plan::make_plan;
use ptq4::quant::QParams;
use ptq4::tensor::Tensor;

fn lcg(seed: &mut u64) -> u32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (*seed >> 33) as u32
}

fn unif(seed: &mut u64) -> f32 {
    (lcg(seed) >> 7) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
}

/// Random per-channel weight quantizers (bits 0..=8 when `wide`, else 0..=4) and codes.
fn rand_weights(cout: usize, k: usize, wide: bool, seed: &mut u64) -> (Vec<u8>, Vec<QParams>) {
    let params: Vec<QParams> = (0..cout)
        .map(|_| {
            let bits = (lcg(seed) % if wide { 9 } else { 5 }) as u8;
            let lo = -unif(seed).abs() - 0.01;
            let hi = unif(seed).abs() + 0.01;
            QParams::from_range(lo, hi, bits).unwrap()
        })
        .collect();
    let codes = params
        .iter()
        .flat_map(|p| {
            let m = p.qmax().max(0) as u32 + 1;
            (0..k).map(|_| (lcg(seed) % m) as u8).collect::<Vec<_>>()
        })
        .collect();
    (codes, params)
}

fn rand_input(shape: &[usize], bits: u8, seed: &mut u64) -> QTensor {
    let params =
        QParams::from_range(-unif(seed).abs() * 3.0, unif(seed).abs() * 3.0 + 0.1, bits).unwrap();
    let n: usize = shape.iter().product();
    QTensor {
        shape: shape.to_vec(),
        codes: (0..n)
            .map(|_| (lcg(seed) % (params.qmax() as u32 + 1)) as u8)
            .collect(),
        params,
    }
}

/// Exact i64 oracle of Σ (q_w − z_w)(q_x − z_x) for a conv.
fn oracle_conv(x: &QTensor, codes: &[u8], p: &[QParams], c: &Conv2d) -> Vec<i64> {
    let [n, ci, h, w] = x.shape[..] else { panic!() };
    let (oh, ow) = c.out_hw(h, w).unwrap();
    let (cig, cog) = (ci / c.groups, c.out_channels / c.groups);
    let (kh, kw) = (c.kernel[0], c.kernel[1]);
    let mut out = vec![0i64; n * c.out_channels * oh * ow];
    for img in 0..n {
        for o in 0..c.out_channels {
            let g = o / cog;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut s = 0i64;
                    for i in 0..cig {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * c.stride[0] + ky * c.dilation[0]) as i64
                                    - c.padding[0] as i64;
                                let ix = (ox * c.stride[1] + kx * c.dilation[1]) as i64
                                    - c.padding[1] as i64;
                                if iy < 0 || ix < 0 || iy >= h as i64 || ix >= w as i64 {
                                    continue;
                                }
                                let q = x.codes[((img * ci + g * cig + i) * h + iy as usize) * w
                                    + ix as usize];
                                let wq = codes[((o * cig + i) * kh + ky) * kw + kx];
                                s += (wq as i64 - p[o].zero_point as i64)
                                    * (q as i64 - x.params.zero_point as i64);
                            }
                        }
                    }
                    out[((img * c.out_channels + o) * oh + oy) * ow + ox] = s;
                }
            }
        }
    }
    out
}

fn conv_strategy() -> impl Strategy<Value = (Conv2d, [usize; 3], u64, u8)> {
    (
        (
            1usize..4,
            1usize..4,
            prop_oneof![Just(1usize), Just(2), Just(0)],
        ),
        (1usize..4, 1usize..3, 1usize..3),
        prop_oneof![Just([0usize; 4]), prop::array::uniform4(0usize..3)],
        (1usize..3, 3usize..9, 3usize..9),
        (any::<u64>(), 1u8..9),
        any::<bool>(),
    )
        .prop_map(
            |((cig, cog, gsel), (k, s, d), pad, (n, h, w), (seed, xbits), relu)| {
                // gsel 0: depthwise (groups = channels, one in and out per group).
                let (groups, cig, cog) = if gsel == 0 {
                    (cig + 1, 1, 1)
                } else {
                    (gsel, cig, cog)
                };
                let c = Conv2d {
                    in_channels: cig * groups,
                    out_channels: cog * groups,
                    kernel: [k, k.max(2) - 1],
                    stride: [s, 1],
                    dilation: [d, 1],
                    padding: pad,
                    groups,
                    bias: true,
                    act: if relu {
                        Activation::Relu6
                    } else {
                        Activation::None
                    },
                };
                let h = h.max(d * (k - 1) + 1);
                (c, [n, h, w], seed, xbits)
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_conv_int_equals_sim_and_oracle((c, [n, h, w], seed, xbits) in conv_strategy()) {
        let mut seed = seed;
        let x = rand_input(&[n, c.in_channels, h, w], xbits, &mut seed);
        let k = c.in_channels / c.groups * c.kernel[0] * c.kernel[1];
        let (codes, params) = rand_weights(c.out_channels, k, true, &mut seed);
        let packed = PackedWeights::new(&codes, &params).unwrap();
        let got = int::conv2d_acc(&x, &packed, &c).unwrap();
        let simv = sim::conv2d_acc(&x, &codes, &params, &c).unwrap();
        let want = oracle_conv(&x, &codes, &params, &c);
        for ((&a, &s), &o) in got.iter().zip(&simv).zip(&want) {
            prop_assert_eq!(a as i64, o);
            prop_assert_eq!(s, o as f32);
        }
        // The shared epilogue on both accumulators gives the same codes.
        let bias: Vec<f32> = (0..c.out_channels).map(|_| unif(&mut seed)).collect();
        let out = QParams::from_range(-1.0, 2.0, 4).unwrap();
        let scales: Vec<f32> = params.iter().map(|p| p.scale).collect();
        let ep = Epilogue::new(&scales, None, x.params.scale, &bias, c.act, Some(out));
        let plane = got.len() / (n * c.out_channels);
        for (i, (&a, &s)) in got.iter().zip(&simv).enumerate() {
            let ch = i / plane % c.out_channels;
            prop_assert_eq!(ep.code(ch, a as f32, 0.0), ep.code(ch, s, 0.0));
        }
    }

    #[test]
    fn random_linear_int_equals_sim(n in 1usize..5, f in 1usize..40, o in 1usize..9, seed in any::<u64>(), xbits in 1u8..9) {
        let mut seed = seed;
        let x = rand_input(&[n, f], xbits, &mut seed);
        let (codes, params) = rand_weights(o, f, true, &mut seed);
        let packed = PackedWeights::new(&codes, &params).unwrap();
        let got = int::linear_acc(&x, &packed).unwrap();
        let simv = sim::linear_acc(&x, &codes, &params).unwrap();
        for i in 0..n {
            for r in 0..o {
                let want: i64 = (0..f)
                    .map(|j| (codes[r * f + j] as i64 - params[r].zero_point as i64)
                        * (x.codes[i * f + j] as i64 - x.params.zero_point as i64))
                    .sum();
                prop_assert_eq!(got[i * o + r] as i64, want);
                prop_assert_eq!(simv[i * o + r], want as f32);
            }
        }
    }
}

fn node(name: &str, op: Op, inputs: &[&str]) -> Node {
    Node {
        name: name.into(),
        op,
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
    }
}

fn rand_t(shape: &[usize], seed: &mut u64) -> Tensor {
    let n = shape.iter().product();
    Tensor {
        shape: shape.to_vec(),
        data: (0..n).map(|_| unif(seed)).collect(),
    }
}

fn conv(cin: usize, cout: usize, k: usize, s: usize, groups: usize, pad: [usize; 4]) -> Conv2d {
    Conv2d {
        in_channels: cin,
        out_channels: cout,
        kernel: [k, k],
        stride: [s, s],
        dilation: [1, 1],
        padding: pad,
        groups,
        bias: false,
        act: Activation::None,
    }
}

/// stem (stride 2, TF padding) → BN → ReLU6 → depthwise → BN → ReLU6 → 1×1 → BN →
/// (+ stem) → GAP → flatten → linear: every op kind of EfficientNet-Lite.
pub fn small_graph(seed: &mut u64) -> Graph {
    let mut params = BTreeMap::new();
    let mut bn = |name: &str, c: usize, seed: &mut u64| {
        params.insert(format!("{name}.weight"), rand_t(&[c], seed));
        params.insert(format!("{name}.bias"), rand_t(&[c], seed));
        params.insert(format!("{name}.running_mean"), rand_t(&[c], seed));
        let v = rand_t(&[c], seed);
        params.insert(
            format!("{name}.running_var"),
            Tensor {
                shape: v.shape,
                data: v.data.iter().map(|x| x.abs() + 0.1).collect(),
            },
        );
    };
    bn("bn1", 8, seed);
    bn("bn2", 8, seed);
    bn("bn3", 8, seed);
    params.insert("c1.weight".into(), rand_t(&[8, 3, 3, 3], seed));
    params.insert("dw.weight".into(), rand_t(&[8, 1, 3, 3], seed));
    params.insert("pw.weight".into(), rand_t(&[8, 8, 1, 1], seed));
    params.insert("fc.weight".into(), rand_t(&[5, 8], seed));
    params.insert("fc.bias".into(), rand_t(&[5], seed));
    Graph {
        name: "small".into(),
        input_shape: vec![3, 10, 12],
        nodes: vec![
            node(
                "c1",
                Op::Conv2d(conv(3, 8, 3, 2, 1, [0, 0, 1, 1])),
                &["input"],
            ),
            node("bn1", Op::BatchNorm { eps: 1e-3 }, &["c1"]),
            node("r1", Op::Relu6, &["bn1"]),
            node("dw", Op::Conv2d(conv(8, 8, 3, 1, 8, [1, 1, 1, 1])), &["r1"]),
            node("bn2", Op::BatchNorm { eps: 1e-3 }, &["dw"]),
            node("r2", Op::Relu6, &["bn2"]),
            node("pw", Op::Conv2d(conv(8, 8, 1, 1, 1, [0; 4])), &["r2"]),
            node("bn3", Op::BatchNorm { eps: 1e-3 }, &["pw"]),
            node("add", Op::Add, &["bn3", "r1"]),
            node("gap", Op::GlobalAvgPool, &["add"]),
            node("flat", Op::Flatten, &["gap"]),
            node(
                "fc",
                Op::Linear(Linear {
                    in_features: 8,
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

fn deploy_model(raw: &Graph, cfg: &QuantConfig) -> (Graph, IntModel) {
    let mut g = raw.clone();
    passes::prepare(&mut g).unwrap();
    let pts = quant_points(&g, cfg);
    let cal = ptq4::calib::data_free(raw, &g, &pts).unwrap();
    let plan = make_plan(&g, cfg, &pts, &cal.stats, &cal.means, &cal.source).unwrap();
    let m = IntModel::new(&g, &plan).unwrap();
    (g, m)
}

#[test]
fn random_deploy_plan_int_equals_sim_on_small_graph() {
    for seed0 in 0..6u64 {
        let mut seed = seed0;
        let raw = small_graph(&mut seed);
        let cfg = QuantConfig {
            protocol: Protocol::Deploy,
            bit_alloc: if seed0 % 2 == 0 {
                BitAlloc::W
            } else {
                BitAlloc::None
            },
            dual: (seed0 % 3) as usize,
            bias_correction: seed0 % 3 != 0,
            ..QuantConfig::default()
        };
        let (_, m) = deploy_model(&raw, &cfg);
        let x = Tensor {
            shape: vec![2, 3, 10, 12],
            data: rand_t(&[2 * 3 * 10 * 12], &mut seed).data,
        };
        let a = m.forward(&x, Exec::Int).unwrap();
        let b = m.forward(&x, Exec::Sim).unwrap();
        assert_eq!(a.shape, vec![2, 5]);
        assert_eq!(a.data, b.data, "seed {seed0}");
        assert!(a.data.iter().all(|v| v.is_finite()));
    }
}

#[test]
fn unsupported_plans_name_the_layer() {
    let mut seed = 7;
    let raw = small_graph(&mut seed);
    let mut g = raw.clone();
    passes::prepare(&mut g).unwrap();
    let cfg = QuantConfig {
        protocol: Protocol::Paper,
        ..QuantConfig::default()
    };
    let pts = quant_points(&g, &cfg);
    let cal = ptq4::calib::data_free(&raw, &g, &pts).unwrap();
    let plan = make_plan(&g, &cfg, &pts, &cal.stats, &cal.means, &cal.source).unwrap();
    let e = IntModel::new(&g, &plan).unwrap_err().to_string();
    assert!(e.contains("input") || e.contains("c1"), "{e}");
}

/// The Lite0 deploy W4A4 model (data-free) and the 20 labelled images.
fn lite0() -> Option<(IntModel, Tensor, Vec<Option<usize>>)> {
    let (Some(model), Some(data)) = (
        common::fetched("efficientnet-lite0"),
        common::fetched("imagenet-samples"),
    ) else {
        return None;
    };
    let raw = ptq4::io::model::load_graph(&model).unwrap();
    let cfg = QuantConfig {
        protocol: Protocol::Deploy,
        ..QuantConfig::default()
    };
    let (_, m) = deploy_model(&raw, &cfg);
    let d = ptq4::io::dataset::Dataset::open(&data).unwrap();
    let (x, labels) = d.load_batch(0..d.len(), &raw.preprocess, 1).unwrap();
    assert_eq!(x.shape[0], 20);
    Some((m, x, labels))
}

#[test]
fn lite0_deploy_w4a4_int_equals_sim_cpu() {
    let Some((m, x, labels)) = lite0() else {
        return;
    };
    let t = std::time::Instant::now();
    let a = m.forward(&x, Exec::Int).unwrap();
    let ti = t.elapsed();
    let t = std::time::Instant::now();
    let b = m.forward(&x, Exec::Sim).unwrap();
    let ts = t.elapsed();
    let (ha, hb) = (
        ptq4::eval::metrics::logits_sha256(&a.data),
        ptq4::eval::metrics::logits_sha256(&b.data),
    );
    let top1 = ptq4::eval::metrics::accuracy(&a.data, 1000, &labels, 1);
    let top5 = ptq4::eval::metrics::accuracy(&a.data, 1000, &labels, 5);
    eprintln!(
        "lite0 deploy W4A4 data-free, 20 images: int {ti:?} sim {ts:?}; top-1 {top1:?} top-5 {top5:?}; logits sha256 {ha}"
    );
    assert_eq!(a.shape, vec![20, 1000]);
    assert_eq!(ha, hb);
    assert_eq!(a.data, b.data);
}

// ---------------------------------------------------------------- GPU

use ptq4::engine::gpu::int_model::{layer_int, IntOutput};
use ptq4::engine::gpu::GpuContext;
use ptq4::engine::intexec::IntLayer;
use ptq4::quant::plan::{LayerInfo, LayerQuant};

fn gpu() -> Option<&'static GpuContext> {
    static CTX: std::sync::OnceLock<Option<GpuContext>> = std::sync::OnceLock::new();
    CTX.get_or_init(common::test_context).as_ref()
}

/// A random integer layer (optionally dual, optionally the logits layer) on input scale `sx`.
fn rand_layer(
    c: Option<Conv2d>,
    cout: usize,
    k: usize,
    dual: bool,
    logits: bool,
    sx: f32,
    seed: &mut u64,
) -> IntLayer {
    let (codes, params) = rand_weights(cout, k, true, seed);
    let second = dual.then(|| {
        let (c2, p2) = rand_weights(cout, k, false, seed);
        (p2, c2)
    });
    let bias: Vec<f32> = (0..cout).map(|_| unif(seed)).collect();
    let act = c.as_ref().map_or(Activation::Relu, |c| c.act);
    let out = (!logits).then(|| {
        QParams::from_range(
            -unif(seed).abs() * 2.0,
            unif(seed).abs() * 4.0 + 0.1,
            1 + (lcg(seed) % 8) as u8,
        )
        .unwrap()
    });
    let s1: Vec<f32> = params.iter().map(|p| p.scale).collect();
    let s2: Option<Vec<f32>> = second
        .as_ref()
        .map(|(p2, _)| p2.iter().map(|p| p.scale).collect());
    let ep = Epilogue::new(&s1, s2.as_deref(), sx, &bias, act, out);
    let w = PackedWeights::new(&codes, &params).unwrap();
    let w2 = second
        .as_ref()
        .map(|(p2, c2)| PackedWeights::new(c2, p2).unwrap());
    let plan = LayerQuant {
        node: "l".into(),
        params,
        codes,
        second,
        bias,
        info: LayerInfo {
            node: "l".into(),
            kept_8bit: false,
            clip: "test".into(),
            bias_corrected: false,
            dual,
            sqnr_db: 0.0,
        },
    };
    IntLayer {
        conv: c,
        w,
        w2,
        ep,
        plan,
    }
}

/// CPU reference outputs of a layer through the shared epilogue.
fn cpu_layer(x: &QTensor, l: &IntLayer) -> IntOutput {
    let (acc, acc2) = match &l.conv {
        Some(c) => (
            int::conv2d_acc(x, &l.w, c).unwrap(),
            l.w2.as_ref().map(|w2| int::conv2d_acc(x, w2, c).unwrap()),
        ),
        None => (
            int::linear_acc(x, &l.w).unwrap(),
            l.w2.as_ref().map(|w2| int::linear_acc(x, w2).unwrap()),
        ),
    };
    let n = x.shape[0];
    let co = l.w.cout;
    let plane = acc.len() / (n * co);
    let shape = match &l.conv {
        Some(c) => {
            let (oh, ow) = int::conv_out_hw(c, x.shape[2], x.shape[3]).unwrap();
            vec![n, co, oh, ow]
        }
        None => vec![n, co],
    };
    let vals = acc.iter().enumerate().map(|(i, &a)| {
        (
            i / plane % co,
            a as f32,
            acc2.as_ref().map_or(0.0, |v| v[i] as f32),
        )
    });
    match l.ep.out {
        Some(q) => IntOutput::Codes(QTensor {
            shape,
            codes: vals.map(|(c, a, b)| l.ep.code(c, a, b)).collect(),
            params: q,
        }),
        None => IntOutput::Logits(Tensor {
            shape,
            data: vals.map(|(c, a, b)| l.ep.real(c, a, b)).collect(),
        }),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn random_conv_gpu_equals_cpu((c, [n, h, w], seed, xbits) in conv_strategy(), dual in any::<bool>(), logits in any::<bool>(), cin_extra in 0usize..12) {
        let Some(ctx) = gpu() else { return Ok(()) };
        let mut seed = seed;
        // The GPU runs groups = 1 and depthwise: widen groups = 1 convs past one word of channels.
        let mut c = c;
        if c.groups > 1 && !c.is_depthwise() {
            c.in_channels /= c.groups;
            c.out_channels /= c.groups;
            c.groups = 1;
        }
        if c.groups == 1 {
            c.in_channels += cin_extra;
        }
        let logits = logits && !c.is_depthwise();
        let x = rand_input(&[n, c.in_channels, h, w], xbits, &mut seed);
        let k = c.in_channels / c.groups * c.kernel[0] * c.kernel[1];
        let l = rand_layer(Some(c.clone()), c.out_channels, k, dual, logits, x.params.scale, &mut seed);
        let got = layer_int(ctx, &x, &l).unwrap();
        prop_assert_eq!(got, cpu_layer(&x, &l));
    }

    #[test]
    fn random_linear_gpu_equals_cpu(n in 1usize..4, f in 1usize..40, o in 1usize..12, seed in any::<u64>(), xbits in 1u8..9, dual in any::<bool>(), logits in any::<bool>()) {
        let Some(ctx) = gpu() else { return Ok(()) };
        let mut seed = seed;
        let x = rand_input(&[n, f], xbits, &mut seed);
        let l = rand_layer(None, o, f, dual, logits, x.params.scale, &mut seed);
        prop_assert_eq!(layer_int(ctx, &x, &l).unwrap(), cpu_layer(&x, &l));
    }
}

#[test]
fn random_deploy_plan_gpu_equals_cpu_on_small_graph() {
    let Some(ctx) = gpu() else { return };
    for seed0 in 0..6u64 {
        let mut seed = seed0;
        let raw = small_graph(&mut seed);
        let cfg = QuantConfig {
            protocol: Protocol::Deploy,
            bit_alloc: if seed0 % 2 == 0 {
                BitAlloc::W
            } else {
                BitAlloc::None
            },
            dual: (seed0 % 3) as usize,
            ..QuantConfig::default()
        };
        let (_, m) = deploy_model(&raw, &cfg);
        let x = Tensor {
            shape: vec![3, 3, 10, 12],
            data: rand_t(&[3 * 3 * 10 * 12], &mut seed).data,
        };
        let a = m.forward(&x, Exec::Sim).unwrap();
        let b = m.forward_gpu(ctx, &x, Exec::Int).unwrap();
        assert_eq!(a.data, b.data, "seed {seed0}");
    }
}

#[test]
fn lite0_deploy_w4a4_gpu_equals_cpu() {
    let Some(ctx) = gpu() else { return };
    let Some((m, x, _)) = lite0() else { return };
    let a = m.forward(&x, Exec::Sim).unwrap();
    let t = std::time::Instant::now();
    let dev = m.upload(ctx).unwrap();
    let b = dev.forward(ctx, &x, Exec::Int).unwrap();
    eprintln!(
        "lite0 deploy W4A4 on {} ({:?}): {:?}",
        ctx.adapter_name(),
        ctx.backend(),
        t.elapsed()
    );
    assert_eq!(
        ptq4::eval::metrics::logits_sha256(&a.data),
        ptq4::eval::metrics::logits_sha256(&b.data)
    );
    assert_eq!(a.data, b.data);
    // Resident weights serve another batch (the first 3 images) with the same results.
    let x3 = Tensor {
        shape: vec![3, 3, 224, 224],
        data: x.data[..3 * 3 * 224 * 224].to_vec(),
    };
    let b3 = dev.forward(ctx, &x3, Exec::Int).unwrap();
    assert_eq!(b3.data, a.data[..3 * 1000]);
    assert!(dev.forward(ctx, &x3, Exec::Sim).is_err());
}

#[test]
fn lite0_weight_bytes_fp32_w8_w4() {
    let Some(model) = common::fetched("efficientnet-lite0") else {
        return;
    };
    let raw = ptq4::io::model::load_graph(&model).unwrap();
    let mut g = raw.clone();
    passes::prepare(&mut g).unwrap();
    let fp32 = ptq4::engine::size::fp32_weight_bytes(&g);
    let bytes = |wbits: u8, bit_alloc: BitAlloc| {
        let cfg = QuantConfig {
            protocol: Protocol::Deploy,
            wbits,
            bit_alloc,
            ..QuantConfig::default()
        };
        ptq4::engine::size::int_weight_bytes(&deploy_model(&raw, &cfg).1)
    };
    let (w8, w4, w4a) = (
        bytes(8, BitAlloc::None),
        bytes(4, BitAlloc::None),
        bytes(4, BitAlloc::Wa),
    );
    eprintln!(
        "lite0 weight bytes: fp32 {fp32:?} = {}; W8 {w8:?} = {}; W4 {w4:?} = {}; W4 + bit allocation {w4a:?} = {}",
        fp32.total(), w8.total(), w4.total(), w4a.total()
    );
    // W8: one byte per weight. W4: rows of ceil(k/8) words, except the layers kept at 8 bits.
    let kept = QuantConfig::default().kept_layers(&g);
    let mut want4 = 0;
    for n in &g.nodes {
        let (cout, per) = match &n.op {
            Op::Conv2d(c) => (
                c.out_channels,
                c.in_channels / c.groups * c.kernel[0] * c.kernel[1],
            ),
            Op::Linear(l) => (l.out_features, l.in_features),
            _ => continue,
        };
        want4 += if kept.contains(&n.name) {
            cout * per
        } else {
            cout * per.div_ceil(8) * 4
        };
    }
    assert_eq!(w8.codes, fp32.codes / 4);
    assert_eq!(w4.codes, want4);
    assert_eq!(w8.quantizers, w4.quantizers);
    assert!(w4.total() < w8.total() && w8.total() * 3 < fp32.total());
}
