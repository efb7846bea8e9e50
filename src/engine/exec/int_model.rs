//! Executor of `deploy`-protocol plans on integer codes ([`IntModel`]), with two independent
//! arithmetic paths that agree code for code:
//! - [`Exec::Int`]: the integer kernels of `engine::cpu::int` (packed 4-bit / `i8` weights,
//!   `u8` activation codes, exact `i32` accumulation);
//! - [`Exec::Exact`]: the exact simulation of `engine::exec::exact_cpu` (float arithmetic
//!   on the plan's codes).
//!
//! Both finish every layer with the one rule of `engine::requant`. The f32 graph input is
//! quantized with the `input` point's quantizer; every value is then a per-tensor quantized
//! tensor, except the logits (the output conv/linear), which leave as f32 `act(acc_real)`;
//! a global average pool may be the logits too (`requant::gap_real`, shape `[N, C]`: the
//! flatten after it is implied). An output softmax (`Graph::logits`) is applied to them in
//! f32 by `engine::cpu::softmax` on the host, after every executor ([`IntModel::finish`]).
//! Residual adds and average pooling dequantize, compute in f32 and requantize
//! (`requant::add_codes`, `requant::gap_code`); max pooling takes the max of the codes and
//! concatenation (along channels) copies them, each requantized to the output quantizer
//! where it differs (`requant::requant_code`); a standalone ReLU/ReLU6 requantizes each
//! code through the activation (`requant::act_code`); a standalone BatchNorm (its fused
//! ReLU/ReLU6 included) and the `Unary` functions map each code through a host-built table
//! ([`Lut`], `requant::lut`: one per channel for BatchNorm, one shared otherwise), which
//! every executor only indexes; LRN reads a host table indexed by the exact window sum of
//! squared centred codes (`requant::lrn_code`); `Flatten` passes codes through and a
//! channel shuffle permutes them (both keep the input's quantizer); a product of two maps
//! (or a map and a per-image channel gate) dequantizes both, multiplies in f32 and
//! requantizes (`requant::mul_codes`). A conv with per-channel activation bounds (an
//! equalized ReLU6, `Graph::act_max`) is followed by a per-channel table that caps its codes
//! ([`cap_lut`]; the conv's own step is named `<node>#uncapped`).

use std::collections::HashMap;

use crate::engine::cpu::elementwise::batch_norm_coef;
use crate::engine::cpu::int::{self, CpuLayer, PackedWeights, QTensor};
use crate::engine::requant::{cap_code, lrn_table, lut, Epilogue, MAX_LRN_TABLE};
use crate::error::{Error, Result};
use crate::graph::{Activation, Conv2d, Graph, Op, Pool};
use crate::quant::plan::{LayerQuant, Plan};
use crate::quant::QParams;
use crate::tensor::Tensor;

/// Which arithmetic executes the integer model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exec {
    /// Integer kernels.
    Int,
    /// The exact simulation: float arithmetic on the codes, exact by construction
    /// (`engine::exact`); the CLI's `--exec sim`.
    Exact,
}

/// What an integer layer produced by itself (one-layer tests of each path), brought back to the host.
#[derive(Clone, Debug, PartialEq)]
pub enum IntOutput {
    /// NCHW codes and their quantizer.
    Codes(QTensor),
    /// f32 logits.
    Logits(Tensor),
}

/// One conv or linear layer ready for integer execution.
#[derive(Clone, Debug)]
pub struct IntLayer {
    /// `None` for a linear layer.
    pub conv: Option<Conv2d>,
    pub w: PackedWeights,
    pub w2: Option<PackedWeights>,
    pub ep: Epilogue,
    /// The plan's codes and quantizers (read by the simulation only).
    pub plan: LayerQuant,
}

impl IntLayer {
    /// The layer as a conv; a linear layer is a 1×1 conv on a 1×1 input.
    pub fn as_conv(&self) -> Conv2d {
        self.conv
            .clone()
            .unwrap_or_else(|| int::layer::linear_as_conv(&self.w))
    }
}

/// What a step computes.
#[derive(Clone, Debug)]
pub enum StepKind {
    Layer(Box<IntLayer>),
    Add,
    GlobalAvgPool,
    /// Max pooling over in-bounds taps (`engine::cpu::pool` semantics).
    MaxPool(Pool),
    /// Average pooling; the divisor is the count of in-bounds taps.
    AvgPool(Pool),
    /// Concatenation along channels, inputs in order.
    Concat,
    /// A standalone activation (not fused into a layer), code by code.
    Act(Activation),
    /// An element-wise function through code tables (standalone BatchNorm, `Unary`).
    Lut(Lut),
    /// LRN across `size` channels through the factor table of `requant::lrn_table`
    /// (indexed by the exact window sum S = Σ (q − z)²; `requant::lrn_code`).
    Lrn {
        size: usize,
        table: Vec<f32>,
    },
    Flatten,
    /// Product of a map and a same-shape map or a per-image channel gate
    /// (`requant::mul_codes`).
    Mul,
    /// Channel shuffle in `groups` groups: a permutation of the codes, which keep their
    /// quantizer (the output is no quantization point).
    Shuffle(usize),
}

/// Code tables of an element-wise function: the output code of input code q in channel ch
/// is `tables[ch * stride + q]` ([`Lut::stride`]: 256 with one table per channel, 0 when one
/// table serves every channel). Built by `requant::lut`.
#[derive(Clone, Debug)]
pub struct Lut {
    pub tables: Vec<u8>,
}

impl Lut {
    /// 256 with a table per channel, 0 with one shared table.
    pub fn stride(&self) -> usize {
        if self.tables.len() > 256 {
            256
        } else {
            0
        }
    }

    /// The output code of input code `q` in channel `ch`.
    #[inline]
    pub fn code(&self, ch: usize, q: u8) -> u8 {
        self.tables[ch * self.stride() + q as usize]
    }
}

/// One node of the graph, in execution order.
#[derive(Clone, Debug)]
pub struct Step {
    pub name: String,
    pub inputs: Vec<String>,
    pub kind: StepKind,
    /// Output quantizer (`None` for the logits).
    pub out: Option<QParams>,
}

/// A `deploy` plan bound to its prepared graph, executable on integer codes.
#[derive(Clone, Debug)]
pub struct IntModel {
    pub input: QParams,
    pub input_shape: Vec<usize>,
    pub steps: Vec<Step>,
    /// The logits step.
    pub output: String,
    /// Whether the graph ends with a softmax of the logits.
    pub softmax: bool,
    /// Per step: the layer's weights packed for the CPU integer kernels.
    pub cpu: Vec<Option<CpuLayer>>,
}

fn per_tensor(plan: &Plan, value: &str) -> Result<QParams> {
    let a = plan.acts.iter().find(|a| a.value == value).ok_or_else(|| {
        Error::Engine(format!(
            "integer execution: value {value} has no activation quantizer (use --protocol deploy)"
        ))
    })?;
    match a.params[..] {
        [p] if !a.per_channel && p.bits > 0 => Ok(p),
        _ => Err(Error::Engine(format!(
            "integer execution: value {value} needs one per-tensor quantizer of 1..8 bits"
        ))),
    }
}

impl IntModel {
    /// Binds `plan` to the prepared graph `g`; the error names the first node that integer
    /// execution does not support.
    pub fn new(g: &Graph, plan: &Plan) -> Result<Self> {
        let mut params: HashMap<&str, QParams> = HashMap::new();
        let input = per_tensor(plan, Graph::INPUT)?;
        params.insert(Graph::INPUT, input);
        let mut steps = Vec::with_capacity(g.nodes.len());
        let logits = g.logits();
        let softmax = g
            .node(&g.output)
            .is_some_and(|n| matches!(n.op, Op::Softmax));
        for n in &g.nodes {
            let unsupported = |why: &str| {
                Error::Engine(format!(
                    "integer execution: node {} ({}): {why}",
                    n.name,
                    n.op.kind()
                ))
            };
            let ins: Vec<QParams> = n
                .inputs
                .iter()
                .map(|i| {
                    params
                        .get(i.as_str())
                        .copied()
                        .ok_or_else(|| unsupported(&format!("input {i} is not quantized")))
                })
                .collect::<Result<_>>()?;
            let is_out = n.name == logits;
            // Named before its quantizer is looked up: an op without integer kernels has none.
            let has_kernel = matches!(
                n.op,
                Op::Conv2d(_)
                    | Op::Linear(_)
                    | Op::Add
                    | Op::GlobalAvgPool
                    | Op::MaxPool(_)
                    | Op::AvgPool(_)
                    | Op::Concat
                    | Op::Relu
                    | Op::Relu6
                    | Op::Flatten
                    | Op::Mul
                    | Op::ChannelShuffle { .. }
                    | Op::BatchNorm { .. }
                    | Op::Unary(_)
                    | Op::Lrn { .. }
            );
            if !has_kernel && !is_out {
                return Err(unsupported("no integer kernel for this op"));
            }
            let out = if is_out || matches!(n.op, Op::Flatten | Op::ChannelShuffle { .. }) {
                None
            } else {
                Some(per_tensor(plan, &n.name)?)
            };
            let mut kind = match &n.op {
                Op::Conv2d(_) | Op::Linear(_) => {
                    StepKind::Layer(Box::new(bind_layer(n, plan, ins[0], out)?))
                }
                Op::Add if !is_out && ins.len() >= 2 => StepKind::Add,
                Op::GlobalAvgPool => StepKind::GlobalAvgPool,
                Op::MaxPool(p) if !is_out => StepKind::MaxPool(p.clone()),
                Op::AvgPool(p) if !is_out => StepKind::AvgPool(p.clone()),
                Op::Concat if !is_out => StepKind::Concat,
                Op::Relu if !is_out => StepKind::Act(Activation::Relu),
                Op::Relu6 if !is_out => StepKind::Act(Activation::Relu6),
                Op::Flatten if !is_out => StepKind::Flatten,
                Op::Mul if !is_out => StepKind::Mul,
                Op::ChannelShuffle { groups } if !is_out => StepKind::Shuffle(*groups),
                Op::BatchNorm { eps, act } if !is_out => {
                    StepKind::Lut(batch_norm_lut(g, &n.name, *eps, *act, ins[0], out)?)
                }
                Op::Unary(u) if !is_out => StepKind::Lut(Lut {
                    tables: lut(&ins[0], &out.unwrap_or(ins[0]), |x| u.apply(x)),
                }),
                Op::Lrn {
                    size,
                    alpha,
                    beta,
                    bias,
                } if !is_out => StepKind::Lrn {
                    size: *size,
                    table: lrn_table(&ins[0], *size, *alpha, *beta, *bias).ok_or_else(|| {
                        unsupported(&format!(
                            "window {size} on {}-bit codes needs more than {MAX_LRN_TABLE} table entries",
                            ins[0].bits
                        ))
                    })?,
                },
                _ if is_out => {
                    return Err(unsupported(
                        "the logits must be a conv, linear or global average pooling layer",
                    ))
                }
                _ => return Err(unsupported("no integer kernel for this op")),
            };
            let produced = match kind {
                StepKind::Flatten | StepKind::Shuffle(_) => Some(ins[0]),
                _ => out,
            };
            if let Some(p) = produced {
                params.insert(n.name.as_str(), p);
            }
            let mut inputs = n.inputs.clone();
            if let (Some(bounds), Some(q)) = (g.act_max(&n.name), out) {
                if is_out {
                    return Err(unsupported("the logits layer has per-channel bounds"));
                }
                if let Some(lut) = cap_lut(bounds, &q) {
                    let pre = format!("{}{UNCAPPED}", n.name);
                    if g.node(&pre).is_some() {
                        return Err(unsupported(&format!("a node is named {pre}")));
                    }
                    steps.push(Step {
                        name: pre.clone(),
                        inputs,
                        kind,
                        out,
                    });
                    (inputs, kind) = (vec![pre], StepKind::Lut(lut));
                }
            }
            steps.push(Step {
                name: n.name.clone(),
                inputs,
                kind,
                out,
            });
            // What follows the logits (softmax, flatten) is applied by `finish` or implied.
            if is_out {
                break;
            }
        }
        let cpu = steps
            .iter()
            .map(|s| match &s.kind {
                StepKind::Layer(l) => Some(CpuLayer::new(&l.as_conv(), &l.w, l.w2.as_ref())),
                _ => None,
            })
            .collect();
        Ok(IntModel {
            input,
            input_shape: g.input_shape.clone(),
            steps,
            output: logits.to_string(),
            softmax,
            cpu,
        })
    }

    /// The model's result from the logits every executor computes: the logits, or their
    /// softmax when the graph ends with one.
    pub fn finish(&self, logits: Tensor) -> Tensor {
        if self.softmax {
            crate::engine::cpu::softmax(&logits)
        } else {
            logits
        }
    }

    /// Quantizes an f32 NCHW batch with the input quantizer.
    pub fn quantize_input(&self, x: &Tensor) -> Result<QTensor> {
        self.check_input(x)?;
        Ok(QTensor {
            shape: x.shape.clone(),
            codes: x.data.iter().map(|&v| self.input.quantize(v)).collect(),
            params: self.input,
        })
    }

    /// The error of [`IntModel::quantize_input`] for a batch of the wrong shape.
    pub fn check_input(&self, x: &Tensor) -> Result<()> {
        if x.rank() != 4 || x.shape[1..] != self.input_shape[..] {
            return Err(Error::Shape {
                node: Graph::INPUT.into(),
                expected: [
                    &[x.shape.first().copied().unwrap_or(1)][..],
                    &self.input_shape,
                ]
                .concat(),
                actual: x.shape.clone(),
            });
        }
        Ok(())
    }

    /// How many steps read each value.
    pub fn reader_counts(&self) -> HashMap<&str, usize> {
        let mut r: HashMap<&str, usize> = HashMap::new();
        for s in &self.steps {
            for i in &s.inputs {
                *r.entry(i.as_str()).or_default() += 1;
            }
        }
        r
    }
}

/// The (OH, OW) of pooling `p` on an `h × w` map, or the error naming `node`.
pub fn pool_out_hw(p: &Pool, h: usize, w: usize, node: &str) -> Result<(usize, usize)> {
    p.out_hw(h, w).ok_or_else(|| {
        Error::Engine(format!(
            "integer pooling {node}: window {:?} does not fit {h}×{w}",
            p.kernel
        ))
    })
}

/// For each of `out` positions along one axis: the in-bounds tap range `lo..hi` (input
/// coordinates) of a window of `k` taps at stride `s` with leading padding `pad`.
pub fn pool_taps(out: usize, len: usize, k: usize, s: usize, pad: usize) -> Vec<(usize, usize)> {
    (0..out)
        .map(|o| {
            let lo = (o * s).max(pad) - pad;
            let hi = (o * s + k).min(len + pad).saturating_sub(pad);
            (lo, hi.max(lo))
        })
        .collect()
}

fn bind_layer(
    n: &crate::graph::Node,
    plan: &Plan,
    x: QParams,
    out: Option<QParams>,
) -> Result<IntLayer> {
    let l = plan
        .layers
        .iter()
        .find(|l| l.node == n.name)
        .ok_or_else(|| {
            Error::Engine(format!(
                "integer execution: layer {} is not in the plan",
                n.name
            ))
        })?;
    let (conv, act) = match &n.op {
        Op::Conv2d(c) => (Some(c.clone()), c.act),
        Op::Linear(li) => (None, li.act),
        _ => unreachable!("bind_layer is called for conv and linear nodes"),
    };
    let w = PackedWeights::new(&l.codes, &l.params)?;
    let w2 = match &l.second {
        Some((p2, c2)) => Some(PackedWeights::new(c2, p2)?),
        None => None,
    };
    // i32 accumulation must not overflow: K·max|q_w − z_w|·max|q_x − z_x| < 2^31.
    let xmax = x.zero_point.max(x.qmax() - x.zero_point) as i64;
    for t in std::iter::once(&w).chain(&w2) {
        if t.k as i64 * t.max_abs_centered() as i64 * xmax >= 1i64 << 31 {
            return Err(Error::Engine(format!(
                "integer execution: layer {} could overflow its i32 accumulator",
                n.name
            )));
        }
    }
    let s2: Option<Vec<f32>> = l
        .second
        .as_ref()
        .map(|(p2, _)| p2.iter().map(|p| p.scale).collect());
    let ep = Epilogue::new(&w.scale, s2.as_deref(), x.scale, &l.bias, act, out);
    Ok(IntLayer {
        conv,
        w,
        w2,
        ep,
        plan: l.clone(),
    })
}

/// Suffix of the value a conv with per-channel bounds produces before its [`cap_lut`] step.
pub const UNCAPPED: &str = "#uncapped";

/// The code tables of an equalized ReLU6's per-channel bounds b_c ([`Graph::act_max`]) on
/// the conv's output codes: q ↦ min(q, cap_c) with cap_c = `requant::cap_code`. The float
/// paths clamp y to b_c before quantizing; quantization is monotone, so
/// quantize(min(y, b_c)) = min(quantize(y), quantize(b_c)) and the code cap after the
/// ordinary epilogue is exact (no kernel changes; every executor indexes the table).
/// `None` when no bound falls below the quantizer's range (the tables are the identity).
fn cap_lut(bounds: &[f32], q: &QParams) -> Option<Lut> {
    let caps: Vec<u8> = bounds.iter().map(|&b| cap_code(q, b)).collect();
    caps.iter().any(|&c| (c as i32) < q.qmax()).then(|| Lut {
        tables: caps
            .iter()
            .flat_map(|&c| (0..=255u8).map(move |v| v.min(c)))
            .collect(),
    })
}

/// The per-channel tables of a standalone BatchNorm with its fused activation:
/// `act(x·k + b)` with the FP32 executors' (k, b) (`batch_norm_coef`).
fn batch_norm_lut(
    g: &Graph,
    node: &str,
    eps: f32,
    act: Activation,
    x: QParams,
    out: Option<QParams>,
) -> Result<Lut> {
    let out = out.ok_or_else(|| Error::Engine(format!("{node}: no output quantizer")))?;
    let p = |k| g.param(node, k).map(|t| t.data.as_slice());
    let coef = batch_norm_coef(
        p("weight")?,
        p("bias")?,
        p("running_mean")?,
        p("running_var")?,
        eps,
    );
    Ok(Lut {
        tables: coef
            .iter()
            .flat_map(|&(k, b)| lut(&x, &out, |v| act.apply(v * k + b)))
            .collect(),
    })
}
