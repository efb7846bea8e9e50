//! ResNet-50 (torchvision's v1.5: the stride on the 3×3 conv of a bottleneck) built in code
//! with random weights from a seed: a large CNN for streaming and throughput benches
//! (`ptq4 bench model --model resnet50-random`) without a 100 MB weight file.
//!
//! Layers: stem conv 7×7/2 → 64, BN, ReLU, max pool 3×3/2 (pad 1); four stages of bottleneck
//! blocks (3, 4, 6, 3 blocks; widths 64, 128, 256, 512; expansion 4) where a block is
//! `1×1 → BN → ReLU → 3×3/s → BN → ReLU → 1×1 (×4) → BN`, plus the input (through a
//! 1×1/s conv + BN on the first block of a stage), then ReLU; global average pool, linear
//! 2048 → 1000. 224×224 input, torchvision preprocessing, 25 557 032 parameters. Names follow
//! torchvision's state dict.
//!
//! Weights: He-uniform convs, BN γ ∈ [0.5, 1] (the last BN of a block's branch scaled by
//! 0.2 so the random residual sums stay bounded over 16 blocks), β and running means small,
//! running variances ∈ [0.5, 1.5]: real BatchNorm statistics for data-free quantization.
//! The values only have to be deterministic; speed does not depend on them.

use std::collections::BTreeMap;

use crate::graph::{Activation, Conv2d, Graph, Linear, Node, Op, Pool, Preprocess};
use crate::tensor::Tensor;

/// The name `ptq4 bench` knows this model by.
pub const NAME: &str = "resnet50-random";
/// Seed of [`NAME`]'s weights.
pub const SEED: u64 = 50;
/// (blocks, width) of the four stages; a block's output has 4 × width channels.
pub const STAGES: [(usize, usize); 4] = [(3, 64), (4, 128), (6, 256), (3, 512)];
pub const NUM_CLASSES: usize = 1000;
const INPUT_SIZE: usize = 224;
const BN_EPS: f32 = 1e-5;

/// SplitMix64: uniform f32 in [lo, hi) from a seed, fast enough for 25 M weights.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        lo + (hi - lo) * ((z >> 40) as f32 / (1u64 << 24) as f32)
    }

    fn tensor(&mut self, shape: &[usize], lo: f32, hi: f32) -> Tensor {
        let n = shape.iter().product();
        Tensor {
            shape: shape.to_vec(),
            data: (0..n).map(|_| self.uniform(lo, hi)).collect(),
        }
    }
}

struct Builder {
    nodes: Vec<Node>,
    params: BTreeMap<String, Tensor>,
    rng: Rng,
    last: String,
    channels: usize,
}

impl Builder {
    fn push(&mut self, name: &str, op: Op, inputs: Vec<String>) {
        self.nodes.push(Node {
            name: name.to_string(),
            op,
            inputs,
        });
        self.last = name.to_string();
    }

    /// A bias-free k×k/stride conv with padding k/2 after `input`.
    fn conv(&mut self, name: &str, input: String, cin: usize, out: usize, k: usize, s: usize) {
        let c = Conv2d {
            in_channels: cin,
            out_channels: out,
            kernel: [k, k],
            stride: [s, s],
            dilation: [1, 1],
            padding: [k / 2; 4],
            groups: 1,
            bias: false,
            act: Activation::None,
        };
        let bound = (6.0 / (cin * k * k) as f32).sqrt();
        let w = self.rng.tensor(&c.weight_shape(), -bound, bound);
        self.params.insert(format!("{name}.weight"), w);
        self.channels = out;
        self.push(name, Op::Conv2d(c), vec![input]);
    }

    /// BatchNorm after the last node; γ scaled by `gain`.
    fn bn(&mut self, name: &str, gain: f32) {
        let c = self.channels;
        let r = &mut self.rng;
        let p = [
            ("weight", r.tensor(&[c], 0.5 * gain, gain)),
            ("bias", r.tensor(&[c], -0.1, 0.1)),
            ("running_mean", r.tensor(&[c], -0.1, 0.1)),
            ("running_var", r.tensor(&[c], 0.5, 1.5)),
        ];
        for (k, t) in p {
            self.params.insert(format!("{name}.{k}"), t);
        }
        let input = self.last.clone();
        let op = Op::BatchNorm {
            eps: BN_EPS,
            act: Activation::None,
        };
        self.push(name, op, vec![input]);
    }

    fn relu(&mut self, name: &str) {
        let input = self.last.clone();
        self.push(name, Op::Relu, vec![input]);
    }

    fn bottleneck(&mut self, p: &str, width: usize, stride: usize) {
        let (input, cin) = (self.last.clone(), self.channels);
        let out = 4 * width;
        self.conv(&format!("{p}.conv1"), input.clone(), cin, width, 1, 1);
        self.bn(&format!("{p}.bn1"), 1.0);
        self.relu(&format!("{p}.relu1"));
        self.conv(
            &format!("{p}.conv2"),
            self.last.clone(),
            width,
            width,
            3,
            stride,
        );
        self.bn(&format!("{p}.bn2"), 1.0);
        self.relu(&format!("{p}.relu2"));
        self.conv(&format!("{p}.conv3"), self.last.clone(), width, out, 1, 1);
        self.bn(&format!("{p}.bn3"), 0.2);
        let branch = self.last.clone();
        let skip = if stride != 1 || cin != out {
            self.conv(&format!("{p}.downsample.0"), input, cin, out, 1, stride);
            self.bn(&format!("{p}.downsample.1"), 1.0);
            self.last.clone()
        } else {
            input
        };
        self.push(&format!("{p}.add"), Op::Add, vec![skip, branch]);
        self.relu(&format!("{p}.relu"));
    }
}

/// ResNet-50 with random weights drawn from `seed` (module docs); BatchNorm not folded.
pub fn resnet50(seed: u64) -> Graph {
    let mut b = Builder {
        nodes: Vec::new(),
        params: BTreeMap::new(),
        rng: Rng(seed),
        last: Graph::INPUT.to_string(),
        channels: 3,
    };
    b.conv("conv1", Graph::INPUT.to_string(), 3, 64, 7, 2);
    b.bn("bn1", 1.0);
    b.relu("relu");
    let pool = Pool {
        kernel: [3, 3],
        stride: [2, 2],
        padding: [1; 4],
        count_include_pad: false,
    };
    b.push("maxpool", Op::MaxPool(pool), vec!["relu".into()]);
    for (s, &(blocks, width)) in STAGES.iter().enumerate() {
        for i in 0..blocks {
            let stride = if s > 0 && i == 0 { 2 } else { 1 };
            b.bottleneck(&format!("layer{}.{i}", s + 1), width, stride);
        }
    }
    let input = b.last.clone();
    b.push("avgpool", Op::GlobalAvgPool, vec![input]);
    b.push("flatten", Op::Flatten, vec!["avgpool".into()]);
    let features = b.channels;
    let bound = (1.0 / features as f32).sqrt();
    let w = b.rng.tensor(&[NUM_CLASSES, features], -bound, bound);
    let bias = b.rng.tensor(&[NUM_CLASSES], -bound, bound);
    b.params.insert("fc.weight".into(), w);
    b.params.insert("fc.bias".into(), bias);
    let lin = Linear {
        in_features: features,
        out_features: NUM_CLASSES,
        bias: true,
        act: Activation::None,
    };
    b.push("fc", Op::Linear(lin), vec!["flatten".into()]);
    Graph {
        name: NAME.to_string(),
        input_shape: vec![3, INPUT_SIZE, INPUT_SIZE],
        nodes: b.nodes,
        output: b.last,
        params: b.params,
        // torchvision's normalisation; shorter side to 256, center crop 224.
        preprocess: Preprocess {
            size: INPUT_SIZE,
            resize: 256,
            mean: [123.675, 116.28, 103.53],
            std: [58.395, 57.12, 57.375],
            channels: 3,
        },
    }
}
