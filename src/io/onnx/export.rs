//! ONNX export, from plain data: a prepared graph, and for a quantized model its [`Plan`].
//!
//! - **FP32** (no plan): opset 13. Conv, Gemm (`transB = 1`), Relu, Clip(0, 6) for ReLU6,
//!   MaxPool, AveragePool (`count_include_pad` as the IR averages), GlobalAveragePool,
//!   Add (a chain of binary Adds for more inputs, in the IR's order), Concat (axis 1),
//!   Flatten, Softmax, LRN, BatchNormalization (only where `prepare` left one unfolded, its
//!   fused activation after it), the `Unary` functions (`Builder::unary`), Mul (a `[N, C]`
//!   gate reshaped to `[N, C, 1, 1]` first), channel shuffle as Reshape `[N, g, C/g, H, W]` →
//!   Transpose (0, 2, 1, 3, 4) → Reshape `[N, C, H, W]`. Fused activations become their own
//!   node after the conv/linear; a conv's per-channel bounds (an equalized ReLU6,
//!   `Graph::act_max`) become `Min(x, bounds[C, 1, 1])` before its `Relu` (Clip's bounds are
//!   scalars).
//! - **QDQ** (a plan): opset 21. Each conv/linear weight is `DequantizeLinear(axis 0)` of
//!   the plan's codes, per output channel, with the corrected scales and the corrected bias
//!   (f32). Codes are stored in the signed view: INT4 (`q − 8`, `z − 8`) when every channel
//!   has at most 4 bits, else the whole tensor as INT8 (`q − 128`, `z − 128`; listed in
//!   [`Exported::int8_layers`]). `(q − z)` is unchanged by the offset, so the dequantized
//!   weights are those of `quant::plan::dequantize_layer` bit for bit. A 0-bit channel
//!   (`z ∈ {−1, 0, 1}`, code 0) is written as the code/zero point pair of the same value
//!   that fits the type (`(1, 0)` for `z = −1`). A dual layer's second tensor is a second
//!   DequantizeLinear, added. Every activation quantizer of the plan becomes
//!   `QuantizeLinear → DequantizeLinear` on its value (after the fused activation), UINT4 at
//!   4 bits and UINT8 at 8 bits, per tensor or per channel (axis 1). ReLU6 is written as
//!   `Max(x, 0)`, `Min(·, 6)` (onnxruntime 1.20.1 fails to load a Clip that feeds a UINT4
//!   QuantizeLinear with its default optimisations).
//!
//! Refused, naming the value or layer: activation quantizers of other bit-widths or of mixed
//! bit-widths across channels (a UINT4/UINT8 clamp saturates at 15/255, not at 2^M − 1), and
//! Softmax over a feature map. What QDQ cannot reproduce bit for bit is said where it
//! matters: ONNX quantizes `round(x / s)`, ptq4 `round(x · (1/s))` (`quant::scheme`), which
//! can differ by one code where `x / s` is within an ulp of a tie.

use prost::Message as _;

use super::onnx::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto,
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};
use crate::error::{Error, Result};
use crate::graph::{Activation, Graph, Op, Unary};
use crate::quant::pack::pack_i4;
use crate::quant::plan::{ActQuant, LayerQuant, Plan};
use crate::quant::scheme::QParams;

/// Opset of FP32 exports.
pub const OPSET_FP32: i64 = 13;
/// Opset of QDQ exports (the first with INT4/UINT4 QuantizeLinear/DequantizeLinear).
pub const OPSET_QDQ: i64 = 21;

/// An exported model.
pub struct Exported {
    pub model: ModelProto,
    /// QDQ: layers whose weights are INT8 because a channel has more than 4 bits.
    pub int8_layers: Vec<String>,
}

impl Exported {
    /// The protobuf bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.model.encode_to_vec()
    }

    /// Writes the model atomically.
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        crate::io::model::write_atomic(path, &self.to_bytes())
    }

    /// Node count.
    pub fn node_count(&self) -> usize {
        self.model.graph.as_ref().map_or(0, |g| g.node.len())
    }
}

/// Exports the prepared graph `g`: FP32 without a plan, QDQ with one (`g` is then the
/// quantized model's graph; its conv/linear weights and biases are taken from the plan).
pub fn export(g: &Graph, plan: Option<&Plan>) -> Result<Exported> {
    let shapes = g.validate_structure()?;
    let mut b = Builder {
        nodes: Vec::new(),
        inits: Vec::new(),
        names: std::collections::HashMap::new(),
        relu6: false,
        qdq: plan.is_some(),
    };
    let acts: std::collections::HashMap<&str, &ActQuant> = plan
        .map(|p| p.acts.iter().map(|a| (a.value.as_str(), a)).collect())
        .unwrap_or_default();
    let layers: std::collections::HashMap<&str, &LayerQuant> = plan
        .map(|p| p.layers.iter().map(|l| (l.node.as_str(), l)).collect())
        .unwrap_or_default();
    let mut int8_layers = Vec::new();
    b.names.insert(Graph::INPUT.into(), Graph::INPUT.into());
    if let Some(a) = acts.get(Graph::INPUT) {
        b.quantize_value(Graph::INPUT, a)?;
    }
    for n in &g.nodes {
        let ins: Vec<String> = n.inputs.iter().map(|i| b.name(i)).collect();
        let out = n.name.clone();
        match &n.op {
            Op::Conv2d(c) => {
                let (w, bias) = match layers.get(n.name.as_str()) {
                    Some(l) => {
                        if b.layer_weights(l, &c.weight_shape())? {
                            int8_layers.push(n.name.clone());
                        }
                        (format!("{}.weight", n.name), Some(b.bias(&n.name, &l.bias)))
                    }
                    None => b.fp32_params(g, &n.name, c.bias)?,
                };
                let mut inputs = vec![ins[0].clone(), w];
                inputs.extend(bias);
                let pre = act_input(&out, c.act);
                b.node(
                    "Conv",
                    &n.name,
                    inputs,
                    &pre,
                    vec![
                        ints("kernel_shape", &c.kernel),
                        ints("strides", &c.stride),
                        ints("dilations", &c.dilation),
                        ints("pads", &c.padding),
                        int("group", c.groups as i64),
                    ],
                );
                match g.act_max(&n.name) {
                    // ONNX Clip takes scalar bounds: Min with a [C, 1, 1] constant, then the
                    // ReLU (they commute for positive bounds).
                    Some(m) => {
                        let (k, capped) = (format!("{}.act_max", n.name), format!("{out}.capped"));
                        b.f32_init(&k, vec![m.len(), 1, 1], m);
                        b.node("Min", &format!("{out}.cap"), vec![pre, k], &capped, vec![]);
                        b.activation(c.act, &capped, &out);
                    }
                    None => b.activation(c.act, &pre, &out),
                }
            }
            Op::Linear(l) => {
                let (w, bias) = match layers.get(n.name.as_str()) {
                    Some(lq) => {
                        if b.layer_weights(lq, &[l.out_features, l.in_features])? {
                            int8_layers.push(n.name.clone());
                        }
                        (
                            format!("{}.weight", n.name),
                            Some(b.bias(&n.name, &lq.bias)),
                        )
                    }
                    None => b.fp32_params(g, &n.name, l.bias)?,
                };
                let mut x = ins[0].clone();
                if shapes[&n.inputs[0]].len() > 1 {
                    let f = format!("{}.flatten", n.name);
                    b.node("Flatten", &f, vec![x], &f, vec![int("axis", 1)]);
                    x = f;
                }
                let mut inputs = vec![x, w];
                inputs.extend(bias);
                let pre = act_input(&out, l.act);
                b.node("Gemm", &n.name, inputs, &pre, vec![int("transB", 1)]);
                b.activation(l.act, &pre, &out);
            }
            Op::BatchNorm { eps, act } => {
                let mut inputs = vec![ins[0].clone()];
                for s in ["weight", "bias", "running_mean", "running_var"] {
                    let t = g.param(&n.name, s)?;
                    let name = format!("{}.{s}", n.name);
                    b.f32_init(&name, t.shape.clone(), &t.data);
                    inputs.push(name);
                }
                let pre = act_input(&out, *act);
                b.node(
                    "BatchNormalization",
                    &n.name,
                    inputs,
                    &pre,
                    vec![float("epsilon", *eps)],
                );
                b.activation(*act, &pre, &out);
            }
            Op::Unary(u) => b.unary(*u, &n.name, &ins[0], &out),
            Op::Relu => b.activation_node(Activation::Relu, &n.name, &ins[0], &out),
            Op::Relu6 => b.activation_node(Activation::Relu6, &n.name, &ins[0], &out),
            Op::MaxPool(p) | Op::AvgPool(p) => {
                let avg = matches!(n.op, Op::AvgPool(_));
                let mut attrs = vec![
                    ints("kernel_shape", &p.kernel),
                    ints("strides", &p.stride),
                    ints("pads", &p.padding),
                ];
                if avg {
                    attrs.push(int("count_include_pad", i64::from(p.count_include_pad)));
                }
                let op = if avg { "AveragePool" } else { "MaxPool" };
                b.node(op, &n.name, ins, &out, attrs);
            }
            Op::GlobalAvgPool => b.node("GlobalAveragePool", &n.name, ins, &out, vec![]),
            Op::Lrn {
                size,
                alpha,
                beta,
                bias,
            } => b.node(
                "LRN",
                &n.name,
                ins,
                &out,
                vec![
                    int("size", *size as i64),
                    float("alpha", *alpha),
                    float("beta", *beta),
                    float("bias", *bias),
                ],
            ),
            Op::Add => {
                // (a + b) + c ...: the IR's summation order.
                let mut acc = ins[0].clone();
                for (k, x) in ins.iter().enumerate().skip(1) {
                    let o = if k + 1 == ins.len() {
                        out.clone()
                    } else {
                        format!("{}.sum{k}", n.name)
                    };
                    b.node("Add", &o, vec![acc, x.clone()], &o, vec![]);
                    acc = o;
                }
            }
            Op::Concat => b.node("Concat", &n.name, ins, &out, vec![int("axis", 1)]),
            Op::Flatten => b.node("Flatten", &n.name, ins, &out, vec![int("axis", 1)]),
            Op::Mul => {
                let mut ins = ins;
                if shapes[&n.inputs[1]].len() == 1 {
                    // A gate of [N, C] broadcasts over [N, C, H, W] as [N, C, 1, 1].
                    let r = format!("{}.gate", n.name);
                    b.reshape(&r, ins[1].clone(), &[0, -1, 1, 1]);
                    ins[1] = r;
                }
                b.node("Mul", &n.name, ins, &out, vec![]);
            }
            Op::ChannelShuffle { groups } => {
                let s = &shapes[&n.inputs[0]];
                let (c, h, w) = (s[0] as i64, s[1] as i64, s[2] as i64);
                let g = *groups as i64;
                let (r1, t) = (format!("{}.split", n.name), format!("{}.t", n.name));
                b.reshape(&r1, ins[0].clone(), &[-1, g, c / g, h, w]);
                b.node(
                    "Transpose",
                    &t,
                    vec![r1],
                    &t,
                    vec![ints("perm", &[0, 2, 1, 3, 4])],
                );
                b.reshape(&out, t, &[-1, c, h, w]);
            }
            Op::Softmax => {
                if shapes[&n.inputs[0]].len() != 1 {
                    return Err(Error::Usage(format!(
                        "ONNX export: node {} is a softmax over a feature map {:?}; only softmax over a vector is exported",
                        n.name, shapes[&n.inputs[0]]
                    )));
                }
                b.node("Softmax", &n.name, ins, &out, vec![int("axis", 1)]);
            }
        }
        b.names.insert(n.name.clone(), out.clone());
        if let Some(a) = acts.get(n.name.as_str()) {
            b.quantize_value(&n.name, a)?;
        }
    }
    let output = b.name(&g.output);
    let opset = if plan.is_some() {
        OPSET_QDQ
    } else {
        OPSET_FP32
    };
    let graph = GraphProto {
        node: b.nodes,
        name: Some(g.name.clone()),
        initializer: b.inits,
        input: vec![value_info(Graph::INPUT, &g.input_shape)],
        output: vec![value_info(&output, &shapes[&g.output])],
        ..Default::default()
    };
    let model = ModelProto {
        // IR 10 is the first with INT4/UINT4; 7 reads opset 13.
        ir_version: Some(if plan.is_some() { 10 } else { 7 }),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(opset),
        }],
        producer_name: Some("ptq4".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        graph: Some(graph),
        ..Default::default()
    };
    Ok(Exported { model, int8_layers })
}

/// Where a node writes before its fused activation (the value itself when there is none).
fn act_input(out: &str, act: Activation) -> String {
    match act {
        Activation::None => out.to_string(),
        _ => format!("{out}.preact"),
    }
}

struct Builder {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    /// IR value → the ONNX value its readers read (its DequantizeLinear output if quantized).
    names: std::collections::HashMap<String, String>,
    /// Whether the Clip bounds 0 and 6 are in the initializers.
    relu6: bool,
    /// QDQ export: ReLU6 as Max/Min (see [`Builder::activation_node`]).
    qdq: bool,
}

impl Builder {
    fn name(&self, v: &str) -> String {
        self.names.get(v).cloned().unwrap_or_else(|| v.to_string())
    }

    fn node(
        &mut self,
        op: &str,
        name: &str,
        inputs: Vec<String>,
        out: &str,
        attribute: Vec<AttributeProto>,
    ) {
        self.nodes.push(NodeProto {
            input: inputs,
            output: vec![out.to_string()],
            name: Some(name.to_string()),
            op_type: Some(op.to_string()),
            attribute,
            ..Default::default()
        });
    }

    /// The fused activation `act` from `pre` to `out` (nothing when there is none).
    fn activation(&mut self, act: Activation, pre: &str, out: &str) {
        if act != Activation::None {
            self.activation_node(act, &format!("{out}.act"), pre, out);
        }
    }

    /// The element-wise function `u` as node(s) `name…` from `x` to `out`: Sigmoid,
    /// HardSigmoid, LeakyRelu as themselves; HardSwish as `x · HardSigmoid(x; 1/6, 1/2)`
    /// and SiLU as `x · Sigmoid(x)` (HardSwish is not in opset 13); Clip as Clip (a missing
    /// bound for an infinite one), or as Max/Min under QDQ as ReLU6 is.
    fn unary(&mut self, u: Unary, name: &str, x: &str, out: &str) {
        let xs = vec![x.to_string()];
        match u {
            Unary::Sigmoid => self.node("Sigmoid", name, xs, out, vec![]),
            Unary::HardSigmoid { alpha, beta } => {
                let attrs = vec![float("alpha", alpha), float("beta", beta)];
                self.node("HardSigmoid", name, xs, out, attrs);
            }
            Unary::LeakyRelu { alpha } => {
                self.node("LeakyRelu", name, xs, out, vec![float("alpha", alpha)])
            }
            Unary::HardSwish | Unary::Silu => {
                let g = format!("{name}.gate");
                match u {
                    Unary::HardSwish => {
                        let attrs = vec![float("alpha", 1.0 / 6.0), float("beta", 0.5)];
                        self.node("HardSigmoid", &g, xs, &g, attrs);
                    }
                    _ => self.node("Sigmoid", &g, xs, &g, vec![]),
                }
                self.node("Mul", name, vec![x.to_string(), g], out, vec![]);
            }
            Unary::Clip { min, max } => {
                let bound = |b: &mut Self, k: &str, v: f32| {
                    if v.is_finite() {
                        let init = format!("{name}.{k}");
                        b.f32_init(&init, vec![], &[v]);
                        init
                    } else {
                        String::new()
                    }
                };
                let (lo, hi) = (bound(self, "lo", min), bound(self, "hi", max));
                if self.qdq {
                    let mut v = x.to_string();
                    for (op, b) in [("Max", lo), ("Min", hi)] {
                        if !b.is_empty() {
                            let o = format!("{name}.{}", op.to_lowercase());
                            self.node(op, &o, vec![v, b], &o, vec![]);
                            v = o;
                        }
                    }
                    self.node("Identity", name, vec![v], out, vec![]);
                } else {
                    self.node("Clip", name, vec![x.to_string(), lo, hi], out, vec![]);
                }
            }
        }
    }

    /// `act` as node `name` from `x` to `out`.
    fn activation_node(&mut self, act: Activation, name: &str, x: &str, out: &str) {
        match act {
            Activation::None => self.node("Identity", name, vec![x.to_string()], out, vec![]),
            Activation::Relu => self.node("Relu", name, vec![x.to_string()], out, vec![]),
            Activation::Relu6 => {
                if !self.relu6 {
                    self.f32_init("relu6.min", vec![], &[0.0]);
                    self.f32_init("relu6.max", vec![], &[6.0]);
                    self.relu6 = true;
                }
                let x = x.to_string();
                if self.qdq {
                    // Max then Min, the same clamp: onnxruntime 1.20's Clip → QuantizeLinear
                    // fusion rejects UINT4 zero points, and the model would not load with
                    // its default optimisations.
                    let m = format!("{name}.max");
                    self.node("Max", &m, vec![x, "relu6.min".into()], &m, vec![]);
                    self.node("Min", name, vec![m, "relu6.max".into()], out, vec![]);
                } else {
                    let ins = vec![x, "relu6.min".into(), "relu6.max".into()];
                    self.node("Clip", name, ins, out, vec![]);
                }
            }
        }
    }

    /// `Reshape` node `out` of `x` to `shape` (an int64 initializer `<out>.shape`).
    fn reshape(&mut self, out: &str, x: String, shape: &[i64]) {
        let sn = format!("{out}.shape");
        self.inits.push(TensorProto {
            dims: vec![shape.len() as i64],
            data_type: Some(DataType::Int64 as i32),
            name: Some(sn.clone()),
            raw_data: Some(shape.iter().flat_map(|x| x.to_le_bytes()).collect()),
            ..Default::default()
        });
        self.node("Reshape", out, vec![x, sn], out, vec![]);
    }

    fn f32_init(&mut self, name: &str, dims: Vec<usize>, v: &[f32]) {
        self.inits.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(DataType::Float as i32),
            name: Some(name.into()),
            raw_data: Some(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            ..Default::default()
        });
    }

    /// FP32 weight (and bias) initializers of `node`; returns their names.
    fn fp32_params(
        &mut self,
        g: &Graph,
        node: &str,
        has_bias: bool,
    ) -> Result<(String, Option<String>)> {
        let w = g.param(node, "weight")?;
        let wn = format!("{node}.weight");
        self.f32_init(&wn, w.shape.clone(), &w.data);
        let bias = if has_bias {
            let t = g.param(node, "bias")?;
            Some(self.bias(node, &t.data))
        } else {
            None
        };
        Ok((wn, bias))
    }

    fn bias(&mut self, node: &str, b: &[f32]) -> String {
        let name = format!("{node}.bias");
        self.f32_init(&name, vec![b.len()], b);
        name
    }

    /// `<node>.weight` as DequantizeLinear of the plan's codes (plus the second tensor of a
    /// dual layer). Returns whether the codes are INT8 (a channel wider than 4 bits).
    fn layer_weights(&mut self, l: &LayerQuant, shape: &[usize]) -> Result<bool> {
        let out = format!("{}.weight", l.node);
        let wide = l.params.iter().any(|p| p.bits > 4)
            || l.second
                .as_ref()
                .is_some_and(|(p, _)| p.iter().any(|p| p.bits > 4));
        match &l.second {
            None => self.dequantized_codes(&l.node, "", &l.params, &l.codes, shape, wide, &out)?,
            Some((p2, c2)) => {
                let (a, b) = (format!("{out}.first"), format!("{out}.second"));
                self.dequantized_codes(&l.node, "", &l.params, &l.codes, shape, wide, &a)?;
                self.dequantized_codes(&l.node, "2", p2, c2, shape, wide, &b)?;
                self.node("Add", &out, vec![a, b], &out, vec![]);
            }
        }
        Ok(wide)
    }

    #[allow(clippy::too_many_arguments)]
    fn dequantized_codes(
        &mut self,
        node: &str,
        tag: &str,
        params: &[QParams],
        codes: &[u8],
        shape: &[usize],
        wide: bool,
        out: &str,
    ) -> Result<()> {
        let o = params.len();
        let numel: usize = shape.iter().product();
        if o == 0 || shape.first() != Some(&o) || codes.len() != numel {
            return Err(Error::Quant(format!(
                "ONNX export: layer {node}: {} codes and {o} channels for weight shape {shape:?}",
                codes.len()
            )));
        }
        let per = numel / o;
        let offset: i32 = if wide { 128 } else { 8 };
        let mut q = Vec::with_capacity(numel);
        let mut zps = Vec::with_capacity(o);
        for (c, p) in params.iter().enumerate() {
            let ch = &codes[c * per..(c + 1) * per];
            // A 0-bit channel: code 0 with z ∈ {−1, 0, 1}; the same value (0 − z)·s as a
            // code/zero point pair in [0, 1] (module docs).
            let remap = p.bits == 0 && p.zero_point < 0;
            let z = if p.bits == 0 {
                p.zero_point.max(0)
            } else {
                p.zero_point
            };
            zps.push(z - offset);
            for &v in ch {
                let v = if remap { 1 } else { v as i32 };
                q.push(v - offset);
            }
        }
        let lim = if wide { -128..=127 } else { -8..=7 };
        if let Some(bad) = q.iter().chain(&zps).find(|v| !lim.contains(*v)) {
            return Err(Error::Quant(format!(
                "ONNX export: layer {node}: code or zero point {} outside the signed range {lim:?}",
                bad + offset
            )));
        }
        let ty = if wide { DataType::Int8 } else { DataType::Int4 };
        let pack = |v: &[i32]| -> Result<Vec<u8>> {
            if wide {
                Ok(v.iter().map(|&x| x as i8 as u8).collect())
            } else {
                pack_i4(&v.iter().map(|&x| x as i8).collect::<Vec<_>>())
            }
        };
        let (qn, sn, zn) = (
            format!("{node}.weight_q{tag}"),
            format!("{node}.weight_scale{tag}"),
            format!("{node}.weight_zero_point{tag}"),
        );
        self.raw_init(&qn, shape.to_vec(), ty, pack(&q)?);
        let scales: Vec<f32> = params.iter().map(|p| p.scale).collect();
        self.f32_init(&sn, vec![o], &scales);
        self.raw_init(&zn, vec![o], ty, pack(&zps)?);
        self.node(
            "DequantizeLinear",
            out,
            vec![qn, sn, zn],
            out,
            vec![int("axis", 0)],
        );
        Ok(())
    }

    fn raw_init(&mut self, name: &str, dims: Vec<usize>, ty: DataType, raw: Vec<u8>) {
        self.inits.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(ty as i32),
            name: Some(name.into()),
            raw_data: Some(raw),
            ..Default::default()
        });
    }

    /// QuantizeLinear → DequantizeLinear on `value`; its readers read the result.
    fn quantize_value(&mut self, value: &str, a: &ActQuant) -> Result<()> {
        let bits = a.params[0].bits;
        if a.params.iter().any(|p| p.bits != bits) || !(bits == 4 || bits == 8) {
            let mut b: Vec<u8> = a.params.iter().map(|p| p.bits).collect();
            b.sort_unstable();
            b.dedup();
            return Err(Error::Usage(format!(
                "ONNX export: the activation quantizer of {value} has {b:?}-bit channels; QDQ \
                 activations are UINT4 or UINT8 clamps, exact only at 4 or 8 bits for every \
                 channel: quantize with --abits 4 or 8 and --bit-alloc none or w"
            )));
        }
        let ty = if bits == 4 {
            DataType::Uint4
        } else {
            DataType::Uint8
        };
        let x = self.name(value);
        let (qn, dqn) = (format!("{value}.q"), format!("{value}.dq"));
        let (sn, zn) = (format!("{value}.scale"), format!("{value}.zero_point"));
        let dims = if a.per_channel {
            vec![a.params.len()]
        } else {
            vec![]
        };
        let scales: Vec<f32> = a.params.iter().map(|p| p.scale).collect();
        self.f32_init(&sn, dims.clone(), &scales);
        let zps: Vec<u8> = a.params.iter().map(|p| p.zero_point as u8).collect();
        let raw = if bits == 4 {
            crate::quant::pack::pack_u4(&zps)?
        } else {
            zps
        };
        self.raw_init(&zn, dims, ty, raw);
        let attrs = || {
            if a.per_channel {
                vec![int("axis", 1)]
            } else {
                vec![]
            }
        };
        self.node(
            "QuantizeLinear",
            &qn,
            vec![x, sn.clone(), zn.clone()],
            &qn,
            attrs(),
        );
        self.node("DequantizeLinear", &dqn, vec![qn, sn, zn], &dqn, attrs());
        self.names.insert(value.to_string(), dqn);
        Ok(())
    }
}

fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

fn float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(v),
        ..Default::default()
    }
}

fn ints(name: &str, v: &[usize]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: v.iter().map(|&x| x as i64).collect(),
        ..Default::default()
    }
}

/// A float tensor value `[N, shape...]` with a symbolic batch axis.
fn value_info(name: &str, shape: &[usize]) -> ValueInfoProto {
    let mut dim = vec![tensor_shape_proto::Dimension {
        denotation: None,
        value: Some(tensor_shape_proto::dimension::Value::DimParam("N".into())),
    }];
    dim.extend(shape.iter().map(|&d| tensor_shape_proto::Dimension {
        denotation: None,
        value: Some(tensor_shape_proto::dimension::Value::DimValue(d as i64)),
    }));
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            denotation: None,
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(DataType::Float as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
        }),
        ..Default::default()
    }
}
