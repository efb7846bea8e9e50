//! EfficientNet-Lite0..4 built in code from the family's scaling rules (ImageNet, 1000
//! classes), with node and parameter names that follow EfficientNet-PyTorch's state dict.
//!
//! Base network (Lite0): stem conv 3×3/2 → 32, BN, ReLU6; seven MBConv stages
//! (repeats, kernel, stride, expansion, in → out) given in [`STAGES`]; head conv 1×1 → 1280,
//! BN, ReLU6, global average pool, linear → 1000. An MBConv block is
//! `[expand 1×1 → BN → ReLU6]` (absent when expansion is 1) → depthwise k×k/s → BN → ReLU6 →
//! project 1×1 → BN, plus the block input when stride is 1 and in = out. No
//! squeeze-excitation, BN eps 1e-3, convs without bias, TF "SAME" padding per layer.
//!
//! Scaling (Lite1..4): channels `round_filters(c·width)` (multiples of 8, never below 90 % of
//! the scaled value), repeats `ceil(r·depth)`; the stem (32), the head (1280), the first
//! stage's input and the first and last stages' repeats are not scaled.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::graph::{same_padding, Activation, Conv2d, Graph, Linear, Node, Op, Preprocess};
use crate::tensor::Tensor;

/// One MBConv stage of the base network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stage {
    pub repeats: usize,
    pub kernel: usize,
    pub stride: usize,
    pub expansion: usize,
    pub in_channels: usize,
    pub out_channels: usize,
}

const fn stage(
    repeats: usize,
    kernel: usize,
    stride: usize,
    expansion: usize,
    cin: usize,
    cout: usize,
) -> Stage {
    Stage {
        repeats,
        kernel,
        stride,
        expansion,
        in_channels: cin,
        out_channels: cout,
    }
}

/// The base (Lite0) stages.
pub const STAGES: [Stage; 7] = [
    stage(1, 3, 1, 1, 32, 16),
    stage(2, 3, 2, 6, 16, 24),
    stage(2, 5, 2, 6, 24, 40),
    stage(3, 3, 2, 6, 40, 80),
    stage(3, 5, 1, 6, 80, 112),
    stage(4, 5, 2, 6, 112, 192),
    stage(1, 3, 1, 6, 192, 320),
];

pub const STEM_CHANNELS: usize = 32;
pub const HEAD_CHANNELS: usize = 1280;
pub const NUM_CLASSES: usize = 1000;
pub const BN_EPS: f32 = 1e-3;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LiteVariant {
    Lite0,
    Lite1,
    Lite2,
    Lite3,
    Lite4,
}

impl LiteVariant {
    pub const ALL: [LiteVariant; 5] = [
        LiteVariant::Lite0,
        LiteVariant::Lite1,
        LiteVariant::Lite2,
        LiteVariant::Lite3,
        LiteVariant::Lite4,
    ];

    /// `efficientnet-lite0` .. `efficientnet-lite4`.
    pub fn name(self) -> &'static str {
        match self {
            LiteVariant::Lite0 => "efficientnet-lite0",
            LiteVariant::Lite1 => "efficientnet-lite1",
            LiteVariant::Lite2 => "efficientnet-lite2",
            LiteVariant::Lite3 => "efficientnet-lite3",
            LiteVariant::Lite4 => "efficientnet-lite4",
        }
    }

    /// (width multiplier, depth multiplier, input size).
    pub fn scaling(self) -> (f64, f64, usize) {
        match self {
            LiteVariant::Lite0 => (1.0, 1.0, 224),
            LiteVariant::Lite1 => (1.0, 1.1, 240),
            LiteVariant::Lite2 => (1.1, 1.2, 260),
            LiteVariant::Lite3 => (1.2, 1.4, 280),
            LiteVariant::Lite4 => (1.4, 1.8, 300),
        }
    }

    pub fn input_size(self) -> usize {
        self.scaling().2
    }

    /// The MBConv stages after width and depth scaling.
    pub fn stages(self) -> Vec<Stage> {
        let (width, depth, _) = self.scaling();
        let last = STAGES.len() - 1;
        STAGES
            .iter()
            .enumerate()
            .map(|(i, s)| Stage {
                repeats: if i == 0 || i == last {
                    s.repeats
                } else {
                    round_repeats(s.repeats, depth)
                },
                in_channels: if i == 0 {
                    s.in_channels
                } else {
                    round_filters(s.in_channels, width)
                },
                out_channels: round_filters(s.out_channels, width),
                ..*s
            })
            .collect()
    }
}

impl FromStr for LiteVariant {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        LiteVariant::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| {
                Error::Import(format!(
                    "unknown architecture {s:?}; expected one of efficientnet-lite0 .. efficientnet-lite4"
                ))
            })
    }
}

impl fmt::Display for LiteVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// EfficientNet channel rounding: `c·width` to the nearest multiple of 8 (at least 8), one
/// step up if that lost more than 10 %.
pub fn round_filters(channels: usize, width: f64) -> usize {
    let scaled = channels as f64 * width;
    let mut c = ((scaled + 4.0) as usize / 8 * 8).max(8);
    if (c as f64) < 0.9 * scaled {
        c += 8;
    }
    c
}

/// `ceil(repeats·depth)`; the small slack keeps an exact product from rounding up.
pub fn round_repeats(repeats: usize, depth: f64) -> usize {
    (repeats as f64 * depth - 1e-9).ceil() as usize
}

/// Nodes and parameter shapes of a variant, in state-dict order.
struct Builder {
    nodes: Vec<Node>,
    params: Vec<(String, Vec<usize>)>,
    last: String,
    channels: usize,
    size: usize,
}

impl Builder {
    fn push(&mut self, name: String, op: Op, inputs: Vec<String>) {
        self.nodes.push(Node {
            name: name.clone(),
            op,
            inputs,
        });
        self.last = name;
    }

    fn conv(&mut self, name: String, out: usize, k: usize, stride: usize, groups: usize) {
        let (before, after) = same_padding(self.size, k, stride, 1);
        let c = Conv2d {
            in_channels: self.channels,
            out_channels: out,
            kernel: [k, k],
            stride: [stride, stride],
            dilation: [1, 1],
            padding: [before, before, after, after],
            groups,
            bias: false,
            act: Default::default(),
        };
        self.params
            .push((format!("{name}.weight"), c.weight_shape()));
        self.size = self.size.div_ceil(stride);
        self.channels = out;
        let input = self.last.clone();
        self.push(name, Op::Conv2d(c), vec![input]);
    }

    fn bn(&mut self, name: String) {
        for p in ["weight", "bias", "running_mean", "running_var"] {
            self.params
                .push((format!("{name}.{p}"), vec![self.channels]));
        }
        let input = self.last.clone();
        self.push(
            name,
            Op::BatchNorm {
                eps: BN_EPS,
                act: Activation::None,
            },
            vec![input],
        );
    }

    fn unary(&mut self, name: String, op: Op) {
        let input = self.last.clone();
        self.push(name, op, vec![input]);
    }

    fn block(&mut self, n: usize, cout: usize, k: usize, stride: usize, expansion: usize) {
        let p = format!("_blocks.{n}");
        let (input, cin) = (self.last.clone(), self.channels);
        if expansion != 1 {
            self.conv(format!("{p}._expand_conv"), cin * expansion, 1, 1, 1);
            self.bn(format!("{p}._bn0"));
            self.unary(format!("{p}._expand_relu6"), Op::Relu6);
        }
        let mid = self.channels;
        self.conv(format!("{p}._depthwise_conv"), mid, k, stride, mid);
        self.bn(format!("{p}._bn1"));
        self.unary(format!("{p}._depthwise_relu6"), Op::Relu6);
        self.conv(format!("{p}._project_conv"), cout, 1, 1, 1);
        self.bn(format!("{p}._bn2"));
        if stride == 1 && cin == cout {
            let last = self.last.clone();
            self.push(format!("{p}._add"), Op::Add, vec![input, last]);
        }
    }

    fn new(v: LiteVariant) -> Builder {
        let mut b = Builder {
            nodes: Vec::new(),
            params: Vec::new(),
            last: Graph::INPUT.to_string(),
            channels: 3,
            size: v.input_size(),
        };
        b.conv("_conv_stem".into(), STEM_CHANNELS, 3, 2, 1);
        b.bn("_bn0".into());
        b.unary("_stem_relu6".into(), Op::Relu6);
        let mut n = 0;
        for s in v.stages() {
            for r in 0..s.repeats {
                let stride = if r == 0 { s.stride } else { 1 };
                b.block(n, s.out_channels, s.kernel, stride, s.expansion);
                n += 1;
            }
        }
        b.conv("_conv_head".into(), HEAD_CHANNELS, 1, 1, 1);
        b.bn("_bn1".into());
        b.unary("_head_relu6".into(), Op::Relu6);
        b.unary("_avg_pool".into(), Op::GlobalAvgPool);
        b.unary("_flatten".into(), Op::Flatten);
        let lin = Linear {
            in_features: HEAD_CHANNELS,
            out_features: NUM_CLASSES,
            bias: true,
            act: Default::default(),
        };
        b.params
            .push(("_fc.weight".into(), vec![NUM_CLASSES, HEAD_CHANNELS]));
        b.params.push(("_fc.bias".into(), vec![NUM_CLASSES]));
        b.unary("_fc".into(), Op::Linear(lin));
        b
    }

    fn graph(self, v: LiteVariant, params: BTreeMap<String, Tensor>) -> Graph {
        let size = v.input_size();
        Graph {
            name: v.name().to_string(),
            input_shape: vec![3, size, size],
            nodes: self.nodes,
            output: self.last,
            params,
            preprocess: Preprocess::efficientnet(size),
        }
    }
}

/// Parameter names and shapes of a variant, in the order of the torch state dict
/// (without BatchNorm's `num_batches_tracked`).
pub fn expected_params(v: LiteVariant) -> Vec<(String, Vec<usize>)> {
    Builder::new(v).params
}

/// The graph of a variant with every parameter zero (for structure, shapes and tests).
pub fn build(v: LiteVariant) -> Graph {
    let b = Builder::new(v);
    let params = b
        .params
        .iter()
        .map(|(k, s)| (k.clone(), Tensor::zeros(s)))
        .collect();
    b.graph(v, params)
}

/// The graph of a variant with the given weights, after checking that exactly the expected
/// tensors are present with the expected shapes; the result is validated, BN not folded.
pub fn build_with_params(v: LiteVariant, params: BTreeMap<String, Tensor>) -> Result<Graph> {
    let b = Builder::new(v);
    super::check_params(
        v.name(),
        &b.params,
        params.iter().map(|(k, t)| (k.as_str(), t.shape.as_slice())),
    )?;
    let g = b.graph(v, params);
    g.validate()?;
    Ok(g)
}
