//! What to quantize and how: the user's choices ([`QuantConfig`]) and where the two
//! protocols of docs/METHOD.md §7 put activation quantization points ([`quant_points`]).
//!
//! - `paper`: per-channel activation quantizers at every conv output (half-range where a
//!   ReLU/ReLU6 is fused); conv outputs that feed pooling stay at 8 bits; residual sums,
//!   pooling outputs, the graph input and the logits are not quantized. Weights of the kept
//!   layers (first conv, classifier) at 8 bits. Simulation only.
//! - `deploy`: per-tensor activation quantizers on every value except the logits (the
//!   output, less an output softmax and a flatten of a global average pool:
//!   `Graph::logits`), `Flatten` and `ChannelShuffle` outputs (a reshape or permutation of an
//!   already quantized value, which keeps its quantizer): the graph input, every
//!   conv/linear output, every residual sum, product and pooling output — so each conv/linear reads
//!   codes. A value read by a kept 8-bit layer is quantized at 8 bits. Per-channel bit-widths
//!   only for weights.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::aciq::PriorChoice;
use crate::graph::{Activation, Graph, Op};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Paper,
    Deploy,
}

/// How activation clip windows are chosen (weights: min-max per channel, or MMSE per
/// kernel when this is `mmse`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClipMethod {
    Minmax,
    Aciq,
    Mmse,
}

/// Which tensors get per-channel bit allocation (docs/METHOD.md §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BitAlloc {
    None,
    W,
    A,
    Wa,
}

impl BitAlloc {
    pub fn weights(self) -> bool {
        matches!(self, BitAlloc::W | BitAlloc::Wa)
    }
    pub fn activations(self) -> bool {
        matches!(self, BitAlloc::A | BitAlloc::Wa)
    }
}

/// How weights are rounded to the plan's quantizers (docs/METHOD.md §13).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rounding {
    /// Each weight to its nearest code.
    #[default]
    Nearest,
    /// Second-order rounding against the Hessian of the layer's calibration inputs
    /// (`quant::gptq`; needs images).
    Gptq,
}

/// What bias correction matches (when `bias_correction` is on).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BiasMode {
    /// The weights' per-channel mean and std (docs/METHOD.md §4).
    #[default]
    Weights,
    /// The layer's mean output on the calibration inputs, or data-free on the input means
    /// BatchNorm predicts (docs/METHOD.md §13).
    Input,
}

/// Activation bits from which `--preset best` keeps min-max windows instead of ACIQ's: with
/// 64+ levels the rounding noise ACIQ trades against clipping is already small, and on
/// EfficientNet-Lite0 (deploy, GPTQ + input bias correction) min-max kept more predictions
/// at 6 and 8 bits (W4A6 89.2 vs 87.5 %, W4A8 94.6 vs 89.6, W8A8 99.6 vs 98.8) while ACIQ
/// is indispensable at 4 (83.3 vs 40.8; docs/METHOD.md §13).
pub const MINMAX_FROM_ABITS: u8 = 6;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantConfig {
    pub wbits: u8,
    pub abits: u8,
    pub protocol: Protocol,
    pub clip: ClipMethod,
    pub prior: PriorChoice,
    pub bit_alloc: BitAlloc,
    pub bias_correction: bool,
    /// Give the K layers with the largest relative weight error a second 4-bit tensor.
    pub dual: usize,
    /// Layers kept at 8 bits (weights and the activations they read). `None`: the first
    /// conv and the last linear layer.
    pub keep_8bit: Option<Vec<String>>,
    /// Weight rounding (absent in older plan files: nearest).
    #[serde(default)]
    pub rounding: Rounding,
    /// What bias correction matches (absent in older plan files: the weights' moments).
    #[serde(default)]
    pub bias_mode: BiasMode,
    /// Cross-layer equalization before statistics (`quant::equalize`; absent in older plan
    /// files: off).
    #[serde(default)]
    pub equalize: bool,
}

impl QuantConfig {
    /// Whether planning needs the Hessians (and mean patches) of the layers' inputs.
    pub fn needs_layer_inputs(&self) -> bool {
        self.rounding == Rounding::Gptq
            || (self.bias_correction && self.bias_mode == BiasMode::Input)
    }
}

impl Default for QuantConfig {
    /// The paper's combination: ACIQ (Laplace), bit allocation on weights and activations,
    /// bias correction, W4A4, `paper` protocol.
    fn default() -> Self {
        QuantConfig {
            wbits: 4,
            abits: 4,
            protocol: Protocol::Paper,
            clip: ClipMethod::Aciq,
            prior: PriorChoice::Laplace,
            bit_alloc: BitAlloc::Wa,
            bias_correction: true,
            dual: 0,
            keep_8bit: None,
            rounding: Rounding::Nearest,
            bias_mode: BiasMode::Weights,
            equalize: false,
        }
    }
}

impl QuantConfig {
    /// The per-channel-min-max baseline at the same bit-widths and protocol.
    pub fn baseline(wbits: u8, abits: u8, protocol: Protocol) -> Self {
        QuantConfig {
            wbits,
            abits,
            protocol,
            clip: ClipMethod::Minmax,
            prior: PriorChoice::Laplace,
            bit_alloc: BitAlloc::None,
            bias_correction: false,
            dual: 0,
            keep_8bit: None,
            rounding: Rounding::Nearest,
            bias_mode: BiasMode::Weights,
            equalize: false,
        }
    }

    /// The recommended combination beyond the papers (`quantize --preset best`; README,
    /// docs/METHOD.md §13): ACIQ clipping below [`MINMAX_FROM_ABITS`] activation bits and
    /// min-max from there on, bit allocation (weights; and activations in the `paper`
    /// protocol), second-order (GPTQ) rounding and input-aware bias correction.
    /// Data-free statistics carry no layer-input Hessians, so there the rounding is nearest
    /// and the bias correction uses the input means BatchNorm predicts (the weights' moments
    /// with 8-bit weights).
    pub fn best(wbits: u8, abits: u8, protocol: Protocol, data_free: bool) -> Self {
        QuantConfig {
            clip: if abits >= MINMAX_FROM_ABITS {
                ClipMethod::Minmax
            } else {
                ClipMethod::Aciq
            },
            bit_alloc: if protocol == Protocol::Paper {
                BitAlloc::Wa
            } else {
                BitAlloc::W
            },
            bias_correction: true,
            // Data-free with 8-bit weights, the shift the input form corrects is small and the
            // BatchNorm-predicted means it rests on cost more than they fix (Lite0 W8A4
            // deploy: 84.2 % input form, 87.5 weight moments, 86.7 none; at W4A4 the input
            // form is what keeps the model: 81.7 vs 56.2).
            bias_mode: if data_free && wbits >= 8 {
                BiasMode::Weights
            } else {
                BiasMode::Input
            },
            rounding: if data_free {
                Rounding::Nearest
            } else {
                Rounding::Gptq
            },
            ..QuantConfig::baseline(wbits, abits, protocol)
        }
    }

    /// The names of the layers kept at 8 bits in `g`.
    pub fn kept_layers(&self, g: &Graph) -> Vec<String> {
        if let Some(k) = &self.keep_8bit {
            return k.clone();
        }
        let layers: Vec<&str> = g
            .nodes
            .iter()
            .filter(|n| matches!(n.op, Op::Conv2d(_) | Op::Linear(_)))
            .map(|n| n.name.as_str())
            .collect();
        let mut kept = Vec::new();
        if let Some(f) = layers.first() {
            kept.push(f.to_string());
        }
        if let Some(l) = layers.last().filter(|l| Some(*l) != layers.first()) {
            kept.push(l.to_string());
        }
        kept
    }
}

/// One activation quantization point: a value (node output or the graph input).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantPoint {
    pub value: String,
    pub bits: u8,
    pub per_channel: bool,
    /// Activation fused into the producer: statistics are taken before it, the window after.
    pub act: Activation,
}

/// The activation quantization points of `g` (prepared) under `cfg`, in graph order.
pub fn quant_points(g: &Graph, cfg: &QuantConfig) -> Vec<QuantPoint> {
    let kept = cfg.kept_layers(g);
    let mut readers: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    let mut reader_names: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for n in &g.nodes {
        for i in &n.inputs {
            readers.entry(i.as_str()).or_default().push(&n.op);
            reader_names
                .entry(i.as_str())
                .or_default()
                .push(n.name.as_str());
        }
    }
    // Flatten is a reshape and a channel shuffle a permutation: what reads one reads its input.
    let through_flatten = |v: &str| -> Vec<&str> {
        let mut out = Vec::new();
        for (r, op) in reader_names
            .get(v)
            .into_iter()
            .flatten()
            .zip(readers.get(v).into_iter().flatten())
        {
            if matches!(op, Op::Flatten | Op::ChannelShuffle { .. }) {
                out.extend(reader_names.get(r).into_iter().flatten().copied());
            } else {
                out.push(*r);
            }
        }
        out
    };
    let read_by_kept = |v: &str| {
        through_flatten(v)
            .iter()
            .any(|r| kept.iter().any(|k| k == r))
    };
    let feeds_pool = |v: &str| {
        readers.get(v).is_some_and(|ops| {
            ops.iter()
                .any(|o| matches!(o, Op::GlobalAvgPool | Op::AvgPool(_) | Op::MaxPool(_)))
        })
    };
    let mut pts = Vec::new();
    match cfg.protocol {
        Protocol::Paper => {
            for n in &g.nodes {
                if let Op::Conv2d(c) = &n.op {
                    if n.name == g.output {
                        continue;
                    }
                    let bits = if feeds_pool(&n.name) || read_by_kept(&n.name) {
                        8
                    } else {
                        cfg.abits
                    };
                    pts.push(QuantPoint {
                        value: n.name.clone(),
                        bits,
                        per_channel: true,
                        act: c.act,
                    });
                }
            }
        }
        Protocol::Deploy => {
            let bits_for = |v: &str| if read_by_kept(v) { 8 } else { cfg.abits };
            pts.push(QuantPoint {
                value: Graph::INPUT.into(),
                bits: bits_for(Graph::INPUT),
                per_channel: false,
                act: Activation::None,
            });
            for n in &g.nodes {
                if n.name == g.output
                    || n.name == g.logits()
                    || matches!(n.op, Op::Flatten | Op::Softmax | Op::ChannelShuffle { .. })
                {
                    continue;
                }
                let act = match &n.op {
                    Op::Conv2d(c) => c.act,
                    Op::Linear(l) => l.act,
                    Op::BatchNorm { act, .. } => *act,
                    _ => Activation::None,
                };
                pts.push(QuantPoint {
                    value: n.name.clone(),
                    bits: bits_for(&n.name),
                    per_channel: false,
                    act,
                });
            }
        }
    }
    pts
}
