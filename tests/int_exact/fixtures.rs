//! Shared fixtures of the integer-execution tests: random codes and quantizers, an exact
//! i64 conv oracle, small graphs with every Lite0 op kind and with pooling and concat,
//! deploy plans, Lite0 inputs.

use std::collections::BTreeMap;

use proptest::prelude::*;
use ptq4::engine::cpu::int::QTensor;
use ptq4::engine::exec::int_model::IntModel;
use ptq4::graph::{passes, Activation, Conv2d, Graph, Linear, Node, Op, Pool, Preprocess};
use ptq4::quant::config::{quant_points, Protocol, QuantConfig};
use ptq4::quant::plan::make_plan;
use ptq4::quant::QParams;
use ptq4::tensor::Tensor;

use super::common;

pub fn lcg(seed: &mut u64) -> u32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (*seed >> 33) as u32
}

pub fn unif(seed: &mut u64) -> f32 {
    (lcg(seed) >> 7) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
}

/// Random per-channel weight quantizers (bits 0..=8 when `wide`, else 0..=4) and codes.
pub fn rand_weights(cout: usize, k: usize, wide: bool, seed: &mut u64) -> (Vec<u8>, Vec<QParams>) {
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

pub fn rand_input(shape: &[usize], bits: u8, seed: &mut u64) -> QTensor {
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

/// Exact i64 oracle of Σ (q_w − z_w)(q_x − z_x) for a linear layer (`x` is `[n, f]`).
pub fn oracle_linear(x: &QTensor, codes: &[u8], p: &[QParams]) -> Vec<i64> {
    let f = x.shape[1];
    let mut out = Vec::with_capacity(x.shape[0] * p.len());
    for row in x.codes.chunks(f) {
        for (r, pr) in p.iter().enumerate() {
            out.push(
                (0..f)
                    .map(|j| {
                        (codes[r * f + j] as i64 - pr.zero_point as i64)
                            * (row[j] as i64 - x.params.zero_point as i64)
                    })
                    .sum(),
            );
        }
    }
    out
}

/// Exact i64 oracle of Σ (q_w − z_w)(q_x − z_x) for a conv.
pub fn oracle_conv(x: &QTensor, codes: &[u8], p: &[QParams], c: &Conv2d) -> Vec<i64> {
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

pub fn conv_strategy() -> impl Strategy<Value = (Conv2d, [usize; 3], u64, u8)> {
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

/// Convs for the wide kernels: depthwise with 1..40 channels (full SIMD blocks and scalar
/// tails) or ungrouped with 1..12 input channels (im2col runs of up to 60 bytes), windows up
/// to 5×5, any strides, dilations and paddings.
pub fn wide_conv_strategy() -> impl Strategy<Value = (Conv2d, [usize; 3], u64, u8)> {
    (
        (any::<bool>(), 1usize..41, 1usize..13, 1usize..20),
        (
            prop::array::uniform2(1usize..6),
            prop::array::uniform2(1usize..3),
        ),
        (
            prop::array::uniform2(1usize..3),
            prop::array::uniform4(0usize..3),
        ),
        (1usize..3, 1usize..12, 1usize..12),
        (any::<u64>(), 1u8..9),
    )
        .prop_map(
            |(
                (dw, ch, ci, co),
                (kernel, stride),
                (dilation, padding),
                (n, h, w),
                (seed, xbits),
            )| {
                let (ci, co, groups) = if dw { (ch, ch, ch) } else { (ci, co, 1) };
                let c = Conv2d {
                    in_channels: ci,
                    out_channels: co,
                    kernel,
                    stride,
                    dilation,
                    padding,
                    groups,
                    bias: false,
                    act: Activation::None,
                };
                let h = h.max(dilation[0] * (kernel[0] - 1) + 1);
                let w = w.max(dilation[1] * (kernel[1] - 1) + 1);
                (c, [n, h, w], seed, xbits)
            },
        )
}

pub fn node(name: &str, op: Op, inputs: &[&str]) -> Node {
    Node {
        name: name.into(),
        op,
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
    }
}

pub fn rand_t(shape: &[usize], seed: &mut u64) -> Tensor {
    let n = shape.iter().product();
    Tensor {
        shape: shape.to_vec(),
        data: (0..n).map(|_| unif(seed)).collect(),
    }
}

pub fn conv(cin: usize, cout: usize, k: usize, s: usize, groups: usize, pad: [usize; 4]) -> Conv2d {
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
            node(
                "bn1",
                Op::BatchNorm {
                    eps: 1e-3,
                    act: Default::default(),
                },
                &["c1"],
            ),
            node("r1", Op::Relu6, &["bn1"]),
            node("dw", Op::Conv2d(conv(8, 8, 3, 1, 8, [1, 1, 1, 1])), &["r1"]),
            node(
                "bn2",
                Op::BatchNorm {
                    eps: 1e-3,
                    act: Default::default(),
                },
                &["dw"],
            ),
            node("r2", Op::Relu6, &["bn2"]),
            node("pw", Op::Conv2d(conv(8, 8, 1, 1, 1, [0; 4])), &["r2"]),
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

/// conv → BN → ReLU6 → max pool 3×3/2 (padded) → {1×1 → BN → max pool 2×2/1 (bottom/right
/// padding, signed values); avg pool 3×3/1 (padded: border windows count fewer taps)} →
/// add → standalone ReLU → concat(max pool 2×2, ReLU, max pool 3×3) (3 × 8 channels; the
/// GPU's part-filled words are left to `pool_ops`) → 1×1 → GAP → flatten → linear →
/// softmax (applied to the integer logits in f32): the ops of the ResNet/Inception family
/// beyond Lite0, on the same 3×10×12 input and 5 outputs as [`small_graph`].
pub fn pool_graph(seed: &mut u64) -> Graph {
    let mut params = BTreeMap::new();
    for (name, c) in [("bn1", 8), ("bn2", 8)] {
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
    }
    params.insert("c1.weight".into(), rand_t(&[8, 3, 3, 3], seed));
    params.insert("pw.weight".into(), rand_t(&[8, 8, 1, 1], seed));
    params.insert("c2.weight".into(), rand_t(&[8, 24, 1, 1], seed));
    params.insert("fc.weight".into(), rand_t(&[5, 8], seed));
    params.insert("fc.bias".into(), rand_t(&[5], seed));
    let pool = |k: usize, s: usize, padding: [usize; 4]| Pool {
        kernel: [k, k],
        stride: [s, s],
        padding,
        count_include_pad: false,
    };
    Graph {
        name: "pools".into(),
        input_shape: vec![3, 10, 12],
        nodes: vec![
            node(
                "c1",
                Op::Conv2d(conv(3, 8, 3, 1, 1, [1, 1, 1, 1])),
                &["input"],
            ),
            node(
                "bn1",
                Op::BatchNorm {
                    eps: 1e-3,
                    act: Default::default(),
                },
                &["c1"],
            ),
            node("r1", Op::Relu6, &["bn1"]),
            node("mp", Op::MaxPool(pool(3, 2, [1, 1, 1, 1])), &["r1"]),
            node("pw", Op::Conv2d(conv(8, 8, 1, 1, 1, [0; 4])), &["mp"]),
            node(
                "bn2",
                Op::BatchNorm {
                    eps: 1e-3,
                    act: Default::default(),
                },
                &["pw"],
            ),
            node("mp2", Op::MaxPool(pool(2, 1, [0, 0, 1, 1])), &["bn2"]),
            node("ap", Op::AvgPool(pool(3, 1, [1, 1, 1, 1])), &["mp"]),
            node("sum", Op::Add, &["ap", "mp2"]),
            node("ra", Op::Relu, &["sum"]),
            node("cat", Op::Concat, &["mp2", "ra", "mp"]),
            node("c2", Op::Conv2d(conv(24, 8, 1, 1, 1, [0; 4])), &["cat"]),
            node("gap", Op::GlobalAvgPool, &["c2"]),
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
            node("sm", Op::Softmax, &["fc"]),
        ],
        output: "sm".into(),
        params,
        preprocess: Preprocess::efficientnet(12),
    }
}

/// [`pool_graph`] with SqueezeNet's head: the last 1×1 has 5 channels and the global
/// average pool is the logits (… → 1×1 → GAP → flatten → softmax, no linear layer).
pub fn gap_head_graph(seed: &mut u64) -> Graph {
    let mut g = pool_graph(seed);
    g.name = "gap-head".into();
    g.params.retain(|k, _| !k.starts_with("fc."));
    g.params
        .insert("c2.weight".into(), rand_t(&[5, 24, 1, 1], seed));
    g.nodes.retain(|n| n.name != "fc");
    for n in &mut g.nodes {
        match n.name.as_str() {
            "c2" => n.op = Op::Conv2d(conv(24, 5, 1, 1, 1, [0; 4])),
            "sm" => n.inputs = vec!["flat".into()],
            _ => {}
        }
    }
    g
}

pub fn deploy_model(raw: &Graph, cfg: &QuantConfig) -> (Graph, IntModel) {
    let mut g = raw.clone();
    passes::prepare(&mut g).unwrap();
    let pts = quant_points(&g, cfg);
    let cal = ptq4::calib::data_free(raw, &g, &pts).unwrap();
    let plan = make_plan(&g, cfg, &pts, &cal.stats, &cal.means, &cal.source).unwrap();
    let m = IntModel::new(&g, &plan).unwrap();
    (g, m)
}

pub fn lite0() -> Option<(IntModel, Tensor, Vec<Option<usize>>)> {
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
