//! ONNX graph → ptq4 IR. One walk over the live nodes in file order (ONNX requires
//! topological order): a node whose inputs are all constants is folded ([`fold::eval`]);
//! any other node becomes IR nodes, or is recorded as not importable (with the reason) and
//! poisons its outputs, so that one error lists every offender.
//!
//! Shapes are tracked at batch 1 with the ONNX shape of every value (`Shape` of a feature
//! map folds to it). A feature map also carries the IR shape of the value holding its data:
//! Reshape/Squeeze/Unsqueeze only relabel the (row-major, unchanged) data, so they change
//! the ONNX shape and keep the IR value; ops that need `[C, H, W]` check that both agree,
//! and Gemm/MatMul/Softmax on a feature map get an IR Flatten first.
//!
//! A Transpose of a feature map is either ShuffleNet's channel shuffle (IR `ChannelShuffle`)
//! or, on a graph input declared NHWC `[1, H, W, C]` whose readers all transpose it with
//! perm (0, 3, 1, 2), absorbed: the IR input is NCHW and a note says so. `Mul` of two
//! computed tensors is IR `Mul` (equal shapes, or a map times a `[1, C, 1, 1]` gate).
//!
//! Folds at import: Pad (constant zero) into the next Conv's padding; Add of a constant to
//! a Conv/Linear output read nowhere else into its bias; other per-channel Add/Sub/Mul/Div
//! by constants into a BatchNorm node with mean 0 and variance `1 − eps` (so
//! `√(var + eps) = 1` up to rounding), which `passes::prepare` folds into a preceding conv.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use super::attr::{self, Attrs};
use super::fold;
use super::onnx::{GraphProto, NodeProto};
use super::tensor::Const;
use crate::error::{Error, Result};
use crate::graph::{
    same_padding, Activation, Conv2d, Graph, Linear, Node, Op, Pool, Preprocess, Unary,
};
use crate::limits::MAX_SPATIAL;
use crate::tensor::Tensor;

/// A feature map (or vector) computed by the network.
#[derive(Clone, Debug)]
struct Dyn {
    /// The IR value holding the data.
    ir: String,
    /// ONNX shape, batch axis (1) included.
    shape: Vec<usize>,
    /// Per-sample shape of the IR value.
    ir_shape: Vec<usize>,
    /// Zero padding `[top, left, bottom, right]` pending for the next Conv.
    pad: Option<[usize; 4]>,
}

#[derive(Clone, Debug)]
enum Val {
    Const(Const),
    Dyn(Dyn),
    /// Output of a node that could not be imported.
    Poison,
}

/// Ops translated on feature maps (see [`Tr::node`]).
pub const SUPPORTED: &[&str] = &[
    "Identity",
    "Dropout",
    "Cast",
    "Shape",
    "Size",
    "Reshape",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Transpose",
    "Pad",
    "Conv",
    "BatchNormalization",
    "Relu",
    "Clip",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "LeakyRelu",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "ReduceMean",
    "Concat",
    "Add",
    "Sum",
    "Sub",
    "Mul",
    "Div",
    "Gemm",
    "MatMul",
    "Softmax",
    "LRN",
];

/// Eps of the BatchNorm nodes that carry per-channel affine constants.
const AFFINE_EPS: f32 = 1e-5;

pub struct Translated {
    pub graph: Graph,
    /// ONNX shape of the output at batch 1.
    pub output_shape: Vec<usize>,
}

struct Tr {
    opset: i64,
    vals: HashMap<String, Val>,
    nodes: Vec<Node>,
    params: BTreeMap<String, Tensor>,
    names: HashSet<String>,
    /// IR node index by IR value name.
    producer: HashMap<String, usize>,
    /// ONNX readers (plus graph outputs) of each ONNX value.
    onnx_readers: HashMap<String, usize>,
    /// Readers of each IR value, counted through every ONNX name aliasing it (a bias is
    /// folded into a producer only when the adding node is its one reader).
    ir_reads: HashMap<String, usize>,
    problems: Vec<String>,
    /// The graph input's ONNX name when it is declared NHWC and only read by Transposes
    /// to NCHW (the IR input is then NCHW).
    nhwc_input: Option<String>,
}

fn tensor(shape: Vec<usize>, data: Vec<f32>) -> Tensor {
    Tensor { shape, data }
}

fn no(m: impl Into<String>) -> Error {
    Error::Import(m.into())
}

impl Tr {
    fn unique(&mut self, base: &str) -> String {
        let base = if base.is_empty() { "node" } else { base };
        let mut name = base.to_string();
        let mut k = 1;
        while name == Graph::INPUT || self.names.contains(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        self.names.insert(name.clone());
        name
    }

    /// Appends an IR node; returns its value name.
    fn emit(
        &mut self,
        base: &str,
        op: Op,
        inputs: Vec<String>,
        params: Vec<(&str, Tensor)>,
    ) -> String {
        let name = self.unique(base);
        for (p, t) in params {
            self.params.insert(format!("{name}.{p}"), t);
        }
        self.producer.insert(name.clone(), self.nodes.len());
        self.nodes.push(Node {
            name: name.clone(),
            op,
            inputs,
        });
        name
    }

    fn input(&self, node: &NodeProto, k: usize) -> Option<&Val> {
        node.input
            .get(k)
            .filter(|n| !n.is_empty())
            .and_then(|n| self.vals.get(n))
    }

    fn const_in(&self, node: &NodeProto, k: usize, what: &str) -> Result<Option<&Const>> {
        match self.input(node, k) {
            None => Ok(None),
            Some(Val::Const(c)) => Ok(Some(c)),
            Some(_) => Err(no(format!("{what} must be a constant"))),
        }
    }

    fn dyn_in(&self, node: &NodeProto, k: usize) -> Result<Dyn> {
        match self.input(node, k) {
            Some(Val::Dyn(d)) => Ok(d.clone()),
            _ => Err(no(format!("input {k} must be computed from the image"))),
        }
    }

    /// Binds an ONNX output to `d`, counting its readers against the IR value.
    fn bind(&mut self, out: &str, d: Dyn, fresh: bool) {
        let r = self.onnx_readers.get(out).copied().unwrap_or(0);
        let e = self.ir_reads.entry(d.ir.clone()).or_insert(0);
        if fresh {
            *e = r;
        } else {
            // The aliasing node consumed one read and hands on its own readers.
            *e = (*e + r).saturating_sub(1);
        }
        self.vals.insert(out.to_string(), Val::Dyn(d));
    }

    fn unused(&self, node: &NodeProto, from: usize) -> Result<()> {
        for o in node.output.iter().skip(from).filter(|o| !o.is_empty()) {
            if self.onnx_readers.get(o).copied().unwrap_or(0) > 0 {
                return Err(no(format!("output {o} (training/indices output) is used")));
            }
        }
        Ok(())
    }
}

/// `[C, H, W]` of a feature map whose ONNX and IR shapes agree; `pad_ok` lets a pending
/// Pad through (for Conv).
fn fmap(d: &Dyn, pad_ok: bool) -> Result<(usize, usize, usize)> {
    if d.pad.is_some() && !pad_ok {
        return Err(no("a zero Pad is only supported right before a Conv"));
    }
    match (&d.shape[..], &d.ir_shape[..]) {
        ([1, c, h, w], ir) if ir == [*c, *h, *w] || d.pad.is_some() => Ok((*c, *h, *w)),
        (s, ir) => Err(no(format!(
            "needs an NCHW feature map, got shape {s:?} (held as {ir:?})"
        ))),
    }
}

/// Two window sizes (kernel, stride, dilation), each at most [`MAX_SPATIAL`] so that the
/// arithmetic on them cannot overflow.
fn pair(v: Option<Vec<i64>>, default: usize, what: &str) -> Result<[usize; 2]> {
    let ok = |x: i64| (0..=MAX_SPATIAL as i64).contains(&x);
    match v.as_deref() {
        None => Ok([default; 2]),
        Some([a, b]) if ok(*a) && ok(*b) => Ok([*a as usize, *b as usize]),
        Some(x) => Err(no(format!(
            "{what} {x:?}: two non-negative values expected (2-D only)"
        ))),
    }
}

/// Explicit `[top, left, bottom, right]` padding from `pads` or `auto_pad`.
fn padding(
    a: &Attrs,
    hw: [usize; 2],
    k: [usize; 2],
    s: [usize; 2],
    d: [usize; 2],
) -> Result<[usize; 4]> {
    let auto = a.string("auto_pad").unwrap_or_else(|| "NOTSET".into());
    match auto.as_str() {
        "NOTSET" => match a.ints("pads").as_deref() {
            None => Ok([0; 4]),
            Some(p) if p.len() == 4 && p.iter().all(|&x| (0..=MAX_SPATIAL as i64).contains(&x)) => {
                Ok([p[0] as usize, p[1] as usize, p[2] as usize, p[3] as usize])
            }
            Some(p) => Err(no(format!("pads {p:?}"))),
        },
        "VALID" => Ok([0; 4]),
        "SAME_UPPER" | "SAME_LOWER" => {
            let (t, b) = same_padding(hw[0], k[0], s[0], d[0]);
            let (l, r) = same_padding(hw[1], k[1], s[1], d[1]);
            // same_padding puts the odd pixel at the end: SAME_UPPER; SAME_LOWER swaps.
            Ok(if auto == "SAME_UPPER" {
                [t, l, b, r]
            } else {
                [b, r, t, l]
            })
        }
        x => Err(no(format!("auto_pad {x}"))),
    }
}

/// Per-channel view of a constant against an NCHW feature map of `c` channels: the
/// constant broadcasts along C only. Returns `c` values.
fn per_channel(k: &Const, c: usize, rank: usize) -> Result<Vec<f32>> {
    let s = &k.shape;
    if s.len() > rank {
        return Err(no(format!("constant of shape {s:?}")));
    }
    let pad = rank - s.len();
    let dim = |i: usize| if i < pad { 1 } else { s[i - pad] };
    let ok = (0..rank).all(|i| dim(i) == 1 || (i == 1 && dim(i) == c));
    if !ok {
        return Err(no(format!(
            "constant of shape {s:?} is not per-channel for {c} channels"
        )));
    }
    let v = k.floats();
    Ok(if v.len() == 1 { vec![v[0]; c] } else { v })
}

impl Tr {
    fn node(&mut self, node: &NodeProto) -> Result<Vec<Val>> {
        let op = node.op_type();
        let a = Attrs(node);
        let base = if node.name().is_empty() {
            node.output
                .first()
                .map(String::as_str)
                .unwrap_or(op)
                .to_string()
        } else {
            node.name().to_string()
        };
        let x = || self.dyn_in(node, 0);
        let same = |d: Dyn| Ok(vec![Val::Dyn(d)]);
        match op {
            "Identity" => same(x()?),
            "Dropout" => {
                self.unused(node, 1)?;
                same(x()?)
            }
            "Cast" => {
                use super::onnx::tensor_proto::DataType as D;
                match D::try_from(a.int("to", 0) as i32) {
                    Ok(D::Float) => same(x()?),
                    _ => Err(no("a cast of a feature map to a non-float type")),
                }
            }
            "Shape" => Ok(vec![Val::Const(attr::shape_of(node, &x()?.shape))]),
            "Size" => {
                let n: usize = x()?.shape.iter().product();
                Ok(vec![Val::Const(Const::i(vec![], vec![n as i64]))])
            }
            "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" => {
                let mut d = x()?;
                if d.pad.is_some() {
                    return Err(no("a zero Pad is only supported right before a Conv"));
                }
                let shape = match op {
                    "Reshape" => {
                        let spec = match self.const_in(node, 1, "the target shape")? {
                            Some(c) => c.ints()?,
                            None => a.ints("shape").unwrap_or_default(),
                        };
                        attr::reshape(&d.shape, &spec, a.int("allowzero", 0) != 0)?
                    }
                    "Flatten" => attr::flatten(&d.shape, a.int("axis", 1))?,
                    _ => {
                        let axes = attr::axes(node, self.opset, self.const_in(node, 1, "axes")?)?;
                        if op == "Squeeze" {
                            attr::squeeze(&d.shape, axes.as_deref())?
                        } else {
                            attr::unsqueeze(&d.shape, &axes.ok_or_else(|| no("no axes"))?)?
                        }
                    }
                };
                if shape.first() != Some(&1) {
                    return Err(no(format!(
                        "{op} of {:?} to {shape:?} does not keep the batch axis first",
                        d.shape
                    )));
                }
                if op == "Flatten" && d.ir_shape.len() > 1 {
                    let n = self.emit(&base, Op::Flatten, vec![d.ir.clone()], vec![]);
                    d.ir = n;
                    d.ir_shape = vec![shape[1]];
                    d.shape = shape;
                    self.bind(&node.output[0], d, true);
                    return Ok(vec![]);
                }
                d.shape = shape;
                same(d)
            }
            "Transpose" => {
                let d = x()?;
                let perm = a.ints("perm").unwrap_or_default();
                let identity = perm.iter().enumerate().all(|(i, &v)| v == i as i64);
                self.transpose(&base, d, &perm, identity, node)
            }
            "Pad" => {
                let mut d = x()?;
                let mode = a.string("mode").unwrap_or_else(|| "constant".into());
                let (pads, value) = if self.opset < 11 {
                    (
                        a.ints("pads").or_else(|| a.ints("paddings")),
                        a.float("value", 0.0),
                    )
                } else {
                    if self.input(node, 3).is_some() {
                        return Err(no("Pad with axes"));
                    }
                    let p = self
                        .const_in(node, 1, "pads")?
                        .map(|c| c.ints())
                        .transpose()?;
                    let v = self
                        .const_in(node, 2, "the pad value")?
                        .and_then(|c| c.scalar_f())
                        .unwrap_or(0.0);
                    (p, v)
                };
                let p = pads.ok_or_else(|| no("no pads"))?;
                if mode != "constant" || value != 0.0 {
                    return Err(no(format!(
                        "Pad mode {mode} value {value}: only constant zero"
                    )));
                }
                let (c, h, w) = fmap(&d, true)?;
                if p.len() != 8
                    || p.iter().any(|&v| !(0..=MAX_SPATIAL as i64).contains(&v))
                    || p[0] != 0
                    || p[1] != 0
                    || p[4] != 0
                    || p[5] != 0
                {
                    return Err(no(format!("pads {p:?}: only non-negative H/W padding")));
                }
                let add = [p[2] as usize, p[3] as usize, p[6] as usize, p[7] as usize];
                let old = d.pad.unwrap_or([0; 4]);
                if old.iter().zip(&add).any(|(o, a)| o + a > MAX_SPATIAL) {
                    return Err(no("padding over the size limit"));
                }
                d.pad = Some(std::array::from_fn(|i| old[i] + add[i]));
                d.shape = vec![1, c, h + add[0] + add[2], w + add[1] + add[3]];
                same(d)
            }
            "Conv" => self.conv(node, &base),
            "BatchNormalization" => {
                let d = x()?;
                let (c, _, _) = fmap(&d, false)?;
                self.unused(node, 1)?;
                if a.int("spatial", 1) != 1 || a.int("training_mode", 0) != 0 {
                    return Err(no("training mode or non-spatial BatchNorm"));
                }
                let mut ps = Vec::new();
                for (k, p) in [
                    (1, "weight"),
                    (2, "bias"),
                    (3, "running_mean"),
                    (4, "running_var"),
                ] {
                    let t = self
                        .const_in(node, k, p)?
                        .ok_or_else(|| no(format!("no {p}")))?;
                    if t.numel() != c {
                        return Err(no(format!("{p} has {} values for {c} channels", t.numel())));
                    }
                    ps.push((p, tensor(vec![c], t.floats())));
                }
                let eps = a.float("epsilon", 1e-5);
                let n = self.emit(
                    &base,
                    Op::BatchNorm {
                        eps,
                        act: Activation::None,
                    },
                    vec![d.ir.clone()],
                    ps,
                );
                Ok(vec![Val::Dyn(Dyn { ir: n, ..d })])
            }
            "Relu" => self.unary_op(&base, Op::Relu, x()?),
            "Clip" => {
                let (lo, hi) = if self.opset < 11 {
                    (
                        a.float("min", f32::NEG_INFINITY),
                        a.float("max", f32::INFINITY),
                    )
                } else {
                    let bound = |k, dflt| -> Result<f32> {
                        Ok(self
                            .const_in(node, k, "a Clip bound")?
                            .map(|c| c.scalar_f().ok_or_else(|| no("Clip bound is not a scalar")))
                            .transpose()?
                            .unwrap_or(dflt))
                    };
                    (bound(1, f32::NEG_INFINITY)?, bound(2, f32::INFINITY)?)
                };
                let d = x()?;
                match (lo, hi) {
                    (0.0, 6.0) => self.unary_op(&base, Op::Relu6, d),
                    (0.0, f32::INFINITY) => self.unary_op(&base, Op::Relu, d),
                    _ if lo <= hi && lo < f32::INFINITY => {
                        self.unary_op(&base, Op::Unary(Unary::Clip { min: lo, max: hi }), d)
                    }
                    _ => Err(no(format!("Clip to [{lo}, {hi}]"))),
                }
            }
            "Sigmoid" => self.unary_op(&base, Op::Unary(Unary::Sigmoid), x()?),
            "HardSwish" => self.unary_op(&base, Op::Unary(Unary::HardSwish), x()?),
            "HardSigmoid" => {
                let (alpha, beta) = (a.float("alpha", 0.2), a.float("beta", 0.5));
                self.unary_op(&base, Op::Unary(Unary::HardSigmoid { alpha, beta }), x()?)
            }
            "LeakyRelu" => {
                let alpha = a.float("alpha", 0.01);
                self.unary_op(&base, Op::Unary(Unary::LeakyRelu { alpha }), x()?)
            }
            "MaxPool" | "AveragePool" => self.pool(node, &base),
            "LRN" => {
                let d = x()?;
                fmap(&d, false)?;
                let size = a.int("size", 0);
                if !(1..=crate::limits::MAX_CHANNELS as i64).contains(&size) {
                    return Err(no(format!("LRN size {size}: must be at least 1")));
                }
                let op = Op::Lrn {
                    size: size as usize,
                    alpha: a.float("alpha", 1e-4),
                    beta: a.float("beta", 0.75),
                    bias: a.float("bias", 1.0),
                };
                self.unary_op(&base, op, d)
            }
            "GlobalAveragePool" => {
                let d = x()?;
                let (c, _, _) = fmap(&d, false)?;
                let n = self.emit(&base, Op::GlobalAvgPool, vec![d.ir], vec![]);
                Ok(vec![Val::Dyn(Dyn {
                    ir: n,
                    shape: vec![1, c, 1, 1],
                    ir_shape: vec![c, 1, 1],
                    pad: None,
                })])
            }
            "ReduceMean" => {
                let d = x()?;
                let (c, _, _) = fmap(&d, false)?;
                let axes = if self.opset < 18 {
                    a.ints("axes")
                } else {
                    self.const_in(node, 1, "axes")?
                        .map(|c| c.ints())
                        .transpose()?
                };
                let mut ax: Vec<usize> = axes
                    .unwrap_or_default()
                    .iter()
                    .map(|&v| attr::axis(v, 4))
                    .collect::<Result<_>>()?;
                ax.sort_unstable();
                if ax != [2, 3] {
                    return Err(no(format!(
                        "ReduceMean over axes {ax:?}: only the spatial axes [2, 3]"
                    )));
                }
                let keep = a.int("keepdims", 1) != 0;
                let n = self.emit(&base, Op::GlobalAvgPool, vec![d.ir], vec![]);
                let shape = if keep { vec![1, c, 1, 1] } else { vec![1, c] };
                Ok(vec![Val::Dyn(Dyn {
                    ir: n,
                    shape,
                    ir_shape: vec![c, 1, 1],
                    pad: None,
                })])
            }
            "Concat" => {
                let ax = a.int("axis", 1);
                let mut ins = Vec::new();
                let mut c = 0;
                let mut hw = None;
                for k in 0..node.input.len() {
                    let d = self.dyn_in(node, k)?;
                    let (ci, h, w) = fmap(&d, false)?;
                    if ax != 1 && ax != -3 {
                        return Err(no(format!("Concat on axis {ax}: only channels (1)")));
                    }
                    if *hw.get_or_insert((h, w)) != (h, w) {
                        return Err(no("inputs differ in height or width"));
                    }
                    c += ci;
                    ins.push(d.ir);
                }
                let (h, w) = hw.ok_or_else(|| no("no inputs"))?;
                let n = self.emit(&base, Op::Concat, ins, vec![]);
                Ok(vec![Val::Dyn(Dyn {
                    ir: n,
                    shape: vec![1, c, h, w],
                    ir_shape: vec![c, h, w],
                    pad: None,
                })])
            }
            "Add" | "Sum" | "Sub" | "Mul" | "Div" => self.arith(node, &base),
            "Gemm" | "MatMul" => self.linear(node, &base),
            "Softmax" => {
                let d = x()?;
                let r = d.shape.len();
                let dflt = if self.opset < 13 { 1 } else { -1 };
                let ax = attr::axis(a.int("axis", dflt), r)?;
                let ok = if self.opset < 13 {
                    ax == 1
                } else {
                    (1..r).all(|i| i == ax || d.shape[i] == 1)
                };
                if !ok || d.pad.is_some() || r < 2 {
                    return Err(no(format!(
                        "Softmax on axis {ax} of {:?}: only over all features",
                        d.shape
                    )));
                }
                let mut ir = d.ir.clone();
                let feats: usize = d.ir_shape.iter().product();
                if d.ir_shape.len() > 1 {
                    ir = self.emit(&format!("{base}_flatten"), Op::Flatten, vec![ir], vec![]);
                }
                let n = self.emit(&base, Op::Softmax, vec![ir], vec![]);
                Ok(vec![Val::Dyn(Dyn {
                    ir: n,
                    shape: d.shape,
                    ir_shape: vec![feats],
                    pad: None,
                })])
            }
            _ => {
                debug_assert!(!SUPPORTED.contains(&op));
                Err(no("no ptq4 IR op for it"))
            }
        }
    }

    fn unary_op(&mut self, base: &str, op: Op, d: Dyn) -> Result<Vec<Val>> {
        if d.pad.is_some() {
            return Err(no("a zero Pad is only supported right before a Conv"));
        }
        let n = self.emit(base, op, vec![d.ir.clone()], vec![]);
        Ok(vec![Val::Dyn(Dyn { ir: n, ..d })])
    }

    fn conv(&mut self, node: &NodeProto, base: &str) -> Result<Vec<Val>> {
        let a = Attrs(node);
        let d = self.dyn_in(node, 0)?;
        let (c, h, w) = fmap(&d, true)?;
        let wt = self
            .const_in(node, 1, "the weight")?
            .ok_or_else(|| no("no weight"))?
            .clone();
        let [m, cg, kh, kw] = wt.shape[..] else {
            return Err(no(format!(
                "weight of shape {:?}: only 2-D convolution",
                wt.shape
            )));
        };
        let groups = a.int("group", 1);
        if groups < 1 || (cg as u64).checked_mul(groups as u64) != Some(c as u64) {
            return Err(no(format!(
                "weight {:?} with group {groups} on {c} channels",
                wt.shape
            )));
        }
        let kernel = pair(a.ints("kernel_shape"), 0, "kernel_shape")?;
        if a.has("kernel_shape") && kernel != [kh, kw] {
            return Err(no(format!(
                "kernel_shape {kernel:?} vs weight {:?}",
                wt.shape
            )));
        }
        let stride = pair(a.ints("strides"), 1, "strides")?;
        let dilation = pair(a.ints("dilations"), 1, "dilations")?;
        let mut padding = padding(&a, [h, w], [kh, kw], stride, dilation)?;
        let (h0, w0) = (h, w);
        if let Some(p) = d.pad {
            // `h, w` are padded sizes; SAME padding was computed on them, as ONNX does.
            padding = std::array::from_fn(|i| padding[i] + p[i]);
        }
        let bias = self.const_in(node, 2, "the bias")?.cloned();
        if let Some(b) = &bias {
            if b.numel() != m {
                return Err(no(format!("bias of {} values for {m} outputs", b.numel())));
            }
        }
        let conv = Conv2d {
            in_channels: c,
            out_channels: m,
            kernel: [kh, kw],
            stride,
            dilation,
            padding,
            groups: groups as usize,
            bias: bias.is_some(),
            act: Default::default(),
        };
        let (ih, iw) = match d.pad {
            Some(p) => (h0 - p[0] - p[2], w0 - p[1] - p[3]),
            None => (h, w),
        };
        let (oh, ow) = conv
            .out_hw(ih, iw)
            .ok_or_else(|| no(format!("kernel {:?} does not fit {ih}×{iw}", [kh, kw])))?;
        let mut ps = vec![("weight", tensor(wt.shape.clone(), wt.floats()))];
        if let Some(b) = bias {
            ps.push(("bias", tensor(vec![m], b.floats())));
        }
        let n = self.emit(base, Op::Conv2d(conv), vec![d.ir], ps);
        Ok(vec![Val::Dyn(Dyn {
            ir: n,
            shape: vec![1, m, oh, ow],
            ir_shape: vec![m, oh, ow],
            pad: None,
        })])
    }

    fn pool(&mut self, node: &NodeProto, base: &str) -> Result<Vec<Val>> {
        let a = Attrs(node);
        let avg = node.op_type() == "AveragePool";
        let d = self.dyn_in(node, 0)?;
        let (c, h, w) = fmap(&d, false)?;
        self.unused(node, 1)?;
        let kernel = pair(a.ints("kernel_shape"), 0, "kernel_shape")?;
        let stride = pair(a.ints("strides"), 1, "strides")?;
        if pair(a.ints("dilations"), 1, "dilations")? != [1, 1] {
            return Err(no("dilated pooling"));
        }
        if kernel.contains(&0) || stride.contains(&0) {
            return Err(no(format!(
                "kernel {kernel:?} stride {stride:?}: sizes must be at least 1"
            )));
        }
        let mut padding = padding(&a, [h, w], kernel, stride, [1, 1])?;
        if a.int("ceil_mode", 0) != 0 {
            // Extra end padding that makes the floor formula give the ceil output; a last
            // window starting past the input and the begin padding is dropped (as
            // onnxruntime and PyTorch do).
            for (i, len) in [h, w].into_iter().enumerate() {
                let total = len + padding[i] + padding[i + 2];
                let span = total
                    .checked_sub(kernel[i])
                    .ok_or_else(|| no("window larger than the input"))?;
                let mut out = span.div_ceil(stride[i]) + 1;
                if (out - 1) * stride[i] >= len + padding[i] {
                    out -= 1;
                }
                padding[i + 2] += ((out - 1) * stride[i] + kernel[i]).saturating_sub(total);
            }
        }
        let p = Pool {
            kernel,
            stride,
            padding,
            count_include_pad: avg && a.int("count_include_pad", 0) != 0,
        };
        let (oh, ow) = p
            .out_hw(h, w)
            .ok_or_else(|| no(format!("window {kernel:?} does not fit {h}×{w}")))?;
        let op = if avg { Op::AvgPool(p) } else { Op::MaxPool(p) };
        let n = self.emit(base, op, vec![d.ir], vec![]);
        Ok(vec![Val::Dyn(Dyn {
            ir: n,
            shape: vec![1, c, oh, ow],
            ir_shape: vec![c, oh, ow],
            pad: None,
        })])
    }

    /// `Mul(x, Sigmoid(x))` (either order) where the Sigmoid's output has no other reader:
    /// the Sigmoid node becomes one SiLU node, which is the Mul's value. The same for
    /// `Mul(x, HardSigmoid(x; 1/6, 1/2))`, HardSwish (as ptq4's FP32 export writes it).
    fn fold_gate(&mut self, node: &NodeProto) -> Option<Vec<Val>> {
        let (Some(Val::Dyn(a)), Some(Val::Dyn(b))) = (self.input(node, 0), self.input(node, 1))
        else {
            return None;
        };
        if node.input.len() != 2 || a.pad.is_some() || b.pad.is_some() {
            return None;
        }
        let sig = [(a, b), (b, a)].into_iter().find_map(|(s, x)| {
            let &i = self.producer.get(&s.ir)?;
            let n = &self.nodes[i];
            let one_reader = self.ir_reads.get(&s.ir).copied() == Some(1);
            let gated = match n.op {
                Op::Unary(Unary::Sigmoid) => Unary::Silu,
                Op::Unary(Unary::HardSigmoid { alpha, beta })
                    if alpha == 1.0 / 6.0 && beta == 0.5 =>
                {
                    Unary::HardSwish
                }
                _ => return None,
            };
            (n.inputs == [x.ir.clone()] && one_reader).then(|| (i, gated, s.clone()))
        })?;
        self.nodes[sig.0].op = Op::Unary(sig.1);
        Some(vec![Val::Dyn(sig.2)])
    }

    fn arith(&mut self, node: &NodeProto, base: &str) -> Result<Vec<Val>> {
        let op = node.op_type();
        if op == "Mul" {
            if let Some(v) = self.fold_gate(node) {
                return Ok(v);
            }
        }
        let ins: Vec<Val> = (0..node.input.len())
            .map(|k| {
                self.input(node, k)
                    .cloned()
                    .ok_or_else(|| no(format!("input {k} missing")))
            })
            .collect::<Result<_>>()?;
        let dyns: Vec<&Dyn> = ins
            .iter()
            .filter_map(|v| if let Val::Dyn(d) = v { Some(d) } else { None })
            .collect();
        if dyns.len() == ins.len() {
            if op == "Mul" && dyns.len() == 2 {
                return self.mul(base, dyns[0].clone(), dyns[1].clone());
            }
            if op != "Add" && op != "Sum" {
                return Err(no(format!("{op} of two feature maps has no IR op yet")));
            }
            if dyns.len() == 1 {
                return Ok(vec![Val::Dyn(dyns[0].clone())]);
            }
            for d in &dyns {
                if d.pad.is_some() || d.shape != dyns[0].shape || d.ir_shape != dyns[0].ir_shape {
                    return Err(no(format!(
                        "inputs of shapes {:?} and {:?}: only equal shapes",
                        dyns[0].shape, d.shape
                    )));
                }
            }
            let irs = dyns.iter().map(|d| d.ir.clone()).collect();
            let first = dyns[0].clone();
            let n = self.emit(base, Op::Add, irs, vec![]);
            return Ok(vec![Val::Dyn(Dyn { ir: n, ..first })]);
        }
        // One feature map and one constant: y = x·s + t per channel.
        let (d, k, dyn_first) = match (&ins[..], op) {
            ([Val::Dyn(d), Val::Const(k)], _) => (d.clone(), k.clone(), true),
            ([Val::Const(k), Val::Dyn(d)], "Add" | "Mul" | "Sub") => (d.clone(), k.clone(), false),
            _ => return Err(no(format!("{op} of these operands"))),
        };
        if d.pad.is_some() {
            return Err(no("a zero Pad is only supported right before a Conv"));
        }
        let vector = d.shape.len() == 2;
        let c = if vector {
            d.shape[1]
        } else {
            fmap(&d, false)?.0
        };
        let v = per_channel(&k, c, d.shape.len())?;
        let (s, t): (Vec<f32>, Vec<f32>) = match (op, dyn_first) {
            ("Add" | "Sum", _) => (vec![1.0; c], v),
            ("Sub", true) => (vec![1.0; c], v.iter().map(|x| -x).collect()),
            ("Sub", false) => (vec![-1.0; c], v),
            ("Mul", _) => (v, vec![0.0; c]),
            _ => (v.iter().map(|x| 1.0 / x).collect(), vec![0.0; c]),
        };
        let shift_only = s.iter().all(|&x| x == 1.0);
        // A bias for the Conv/Linear that produced x, if nothing else reads it.
        if let Some(&p) = self.producer.get(&d.ir) {
            let alone = self.ir_reads.get(&d.ir) == Some(&1);
            let owner = self.nodes[p].name.clone();
            match &mut self.nodes[p].op {
                Op::Conv2d(cv) if alone && shift_only => {
                    cv.bias = true;
                    let b = self
                        .params
                        .entry(format!("{owner}.bias"))
                        .or_insert_with(|| tensor(vec![c], vec![0.0; c]));
                    b.data
                        .iter_mut()
                        .zip(&t)
                        .for_each(|(b, t)| *b = (*b as f64 + *t as f64) as f32);
                    return Ok(vec![Val::Dyn(d)]);
                }
                Op::Linear(l) if alone && shift_only => {
                    l.bias = true;
                    let b = self
                        .params
                        .entry(format!("{owner}.bias"))
                        .or_insert_with(|| tensor(vec![c], vec![0.0; c]));
                    b.data
                        .iter_mut()
                        .zip(&t)
                        .for_each(|(b, t)| *b = (*b as f64 + *t as f64) as f32);
                    return Ok(vec![Val::Dyn(d)]);
                }
                _ => {}
            }
        }
        if vector {
            return Err(no(format!(
                "{op} of a constant to a vector not produced by Gemm/MatMul"
            )));
        }
        let ps = vec![
            ("weight", tensor(vec![c], s)),
            ("bias", tensor(vec![c], t)),
            ("running_mean", tensor(vec![c], vec![0.0; c])),
            ("running_var", tensor(vec![c], vec![1.0 - AFFINE_EPS; c])),
        ];
        let n = self.emit(
            base,
            Op::BatchNorm {
                eps: AFFINE_EPS,
                act: Activation::None,
            },
            vec![d.ir.clone()],
            ps,
        );
        Ok(vec![Val::Dyn(Dyn { ir: n, ..d })])
    }

    /// Product of two computed tensors: feature maps of one shape, or a feature map and a
    /// per-channel gate of ONNX shape `[1, C, 1, 1]` (held as `[C, 1, 1]` or `[C]`), in
    /// either order; the IR takes the map first (f32 products commute exactly).
    fn mul(&mut self, base: &str, a: Dyn, b: Dyn) -> Result<Vec<Val>> {
        if a.pad.is_some() || b.pad.is_some() {
            return Err(no("a zero Pad is only supported right before a Conv"));
        }
        let is_gate = |g: &Dyn, c: usize| {
            g.shape == [1, c, 1, 1] && (g.ir_shape == [c, 1, 1] || g.ir_shape == [c])
        };
        let (x, g) = match (fmap(&a, false), fmap(&b, false)) {
            (Ok(_), Ok(_)) if a.shape == b.shape => (a, b),
            (Ok((c, _, _)), _) if is_gate(&b, c) => (a, b),
            (_, Ok((c, _, _))) if is_gate(&a, c) => (b, a),
            _ => {
                return Err(no(format!(
                    "Mul of shapes {:?} and {:?}: only equal NCHW shapes or a map times a [1, C, 1, 1] channel gate",
                    a.shape, b.shape
                )))
            }
        };
        let n = self.emit(base, Op::Mul, vec![x.ir.clone(), g.ir], vec![]);
        Ok(vec![Val::Dyn(Dyn { ir: n, ..x })])
    }

    /// A Transpose of a computed tensor: the identity; ShuffleNet's channel shuffle (perm
    /// (0, 2, 1, 3, 4) of a feature map reshaped to `[1, g, C/g, H, W]`) → one
    /// `ChannelShuffle` whose IR value is the shuffled `[C, H, W]` map, so the Reshape back
    /// to `[1, C, H, W]` only relabels it; or perm (0, 3, 1, 2) of an NHWC graph input (see
    /// [`translate`]), which the IR input already holds as NCHW. Any other is an error.
    fn transpose(
        &mut self,
        base: &str,
        d: Dyn,
        perm: &[i64],
        identity: bool,
        node: &NodeProto,
    ) -> Result<Vec<Val>> {
        if identity {
            return Ok(vec![Val::Dyn(d)]);
        }
        if d.pad.is_some() {
            return Err(no("a zero Pad is only supported right before a Conv"));
        }
        if perm == [0, 3, 1, 2]
            && self.nhwc_input.as_deref() == node.input.first().map(|s| s.as_str())
        {
            let [c, h, w] = d.ir_shape[..] else {
                return Err(no("NHWC input of an unexpected shape"));
            };
            return Ok(vec![Val::Dyn(Dyn {
                shape: vec![1, c, h, w],
                ..d
            })]);
        }
        if let ([1, g, cg, h, w], [0, 2, 1, 3, 4]) = (&d.shape[..], perm) {
            let (g, cg, h, w) = (*g, *cg, *h, *w);
            if d.ir_shape == [g * cg, h, w] && g > 0 {
                let n = self.emit(base, Op::ChannelShuffle { groups: g }, vec![d.ir], vec![]);
                return Ok(vec![Val::Dyn(Dyn {
                    ir: n,
                    shape: vec![1, cg, g, h, w],
                    ir_shape: vec![g * cg, h, w],
                    pad: None,
                })]);
            }
        }
        Err(no(format!(
            "Transpose perm {perm:?} of {:?}: only a channel shuffle (perm [0, 2, 1, 3, 4] of a map reshaped to [1, g, C/g, H, W]) or an NHWC graph input's perm [0, 3, 1, 2]",
            d.shape
        )))
    }

    fn linear(&mut self, node: &NodeProto, base: &str) -> Result<Vec<Val>> {
        let a = Attrs(node);
        let d = self.dyn_in(node, 0)?;
        if d.pad.is_some() {
            return Err(no("a zero Pad is only supported right before a Conv"));
        }
        let [1, k] = d.shape[..] else {
            return Err(no(format!(
                "input of shape {:?}: only [batch, features]",
                d.shape
            )));
        };
        let b = self
            .const_in(node, 1, "the weight")?
            .ok_or_else(|| no("no weight"))?
            .clone();
        let gemm = node.op_type() == "Gemm";
        if gemm && a.int("transA", 0) != 0 {
            return Err(no("Gemm with transA=1 on a feature map"));
        }
        let trans_b = gemm && a.int("transB", 0) != 0;
        // IR weight layout [out, in].
        let w = match (&b.shape[..], trans_b) {
            ([kk, _], false) if *kk == k => fold::transpose(&b, &[1, 0]),
            ([_, kk], true) if *kk == k => b.clone(),
            (s, _) => return Err(no(format!("weight {s:?} for {k} input features"))),
        };
        let m = w.shape[0];
        let alpha = if gemm { a.float("alpha", 1.0) } else { 1.0 };
        let beta = if gemm { a.float("beta", 1.0) } else { 1.0 };
        let mut wv = w.floats();
        if alpha != 1.0 {
            wv.iter_mut()
                .for_each(|x| *x = (*x as f64 * alpha as f64) as f32);
        }
        let mut ps = vec![("weight", tensor(vec![m, k], wv))];
        let cterm = if gemm {
            self.const_in(node, 2, "C")?.cloned()
        } else {
            None
        };
        if gemm && cterm.is_none() && self.input(node, 2).is_some() {
            return Err(no("C must be a constant"));
        }
        if let Some(cc) = cterm {
            let v = per_channel(&cc, m, 2)
                .map_err(|_| no(format!("C of shape {:?} for {m} outputs", cc.shape)))?;
            ps.push((
                "bias",
                tensor(
                    vec![m],
                    v.iter().map(|&x| (x as f64 * beta as f64) as f32).collect(),
                ),
            ));
        }
        let l = Linear {
            in_features: k,
            out_features: m,
            bias: ps.len() == 2,
            act: Default::default(),
        };
        // The quantizer reads a linear layer's input as a vector: flatten a feature map first
        // (the FP32 engine would flatten it anyway).
        let mut input = d.ir;
        if d.ir_shape.len() > 1 {
            input = self.emit(&format!("{base}_flatten"), Op::Flatten, vec![input], vec![]);
        }
        let n = self.emit(base, Op::Linear(l), vec![input], ps);
        Ok(vec![Val::Dyn(Dyn {
            ir: n,
            shape: vec![1, m],
            ir_shape: vec![m],
            pad: None,
        })])
    }
}

/// Translates `g` (default-domain opset `opset`). `size` gives the input's height and width
/// where the file leaves them symbolic.
pub fn translate(
    g: &GraphProto,
    opset: i64,
    dir: &Path,
    name: &str,
    size: Option<usize>,
) -> Result<Translated> {
    let out_name = match &g.output[..] {
        [o] => o.name().to_string(),
        o => {
            return Err(no(format!(
                "{} graph outputs; one (the logits) is supported",
                o.len()
            )))
        }
    };
    // Live nodes: those the output depends on.
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in g.node.iter().enumerate() {
        for o in &n.output {
            producer.insert(o.as_str(), i);
        }
    }
    let mut live = vec![false; g.node.len()];
    let mut stack = vec![out_name.as_str()];
    while let Some(v) = stack.pop() {
        if let Some(&i) = producer.get(v) {
            if !live[i] {
                live[i] = true;
                stack.extend(
                    g.node[i]
                        .input
                        .iter()
                        .map(String::as_str)
                        .filter(|s| !s.is_empty()),
                );
            }
        }
    }
    let mut onnx_readers: HashMap<String, usize> = HashMap::new();
    for (i, n) in g.node.iter().enumerate() {
        if live[i] {
            for inp in &n.input {
                *onnx_readers.entry(inp.clone()).or_default() += 1;
            }
        }
    }
    *onnx_readers.entry(out_name.clone()).or_default() += 1;

    let mut tr = Tr {
        opset,
        vals: HashMap::new(),
        nodes: Vec::new(),
        params: BTreeMap::new(),
        names: HashSet::new(),
        producer: HashMap::new(),
        onnx_readers,
        ir_reads: HashMap::new(),
        problems: Vec::new(),
        nhwc_input: None,
    };
    for t in &g.initializer {
        tr.vals.insert(
            t.name().to_string(),
            Val::Const(super::tensor::decode(t, dir)?),
        );
    }
    // The image input: the one graph input without an initializer that a live node reads.
    let inputs: Vec<_> = g
        .input
        .iter()
        .filter(|i| !tr.vals.contains_key(i.name()) && tr.onnx_readers.contains_key(i.name()))
        .collect();
    let [input] = inputs[..] else {
        return Err(no(format!(
            "{} graph inputs besides the weights; one image input is supported",
            inputs.len()
        )));
    };
    let dims: Vec<Option<usize>> = match input.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(super::onnx::type_proto::Value::TensorType(t)) => {
            use super::onnx::tensor_shape_proto::dimension::Value as V;
            if t.elem_type() != 1 {
                return Err(no(format!("input {} is not float32", input.name())));
            }
            t.shape
                .as_ref()
                .map(|s| {
                    s.dim
                        .iter()
                        .map(|d| match d.value {
                            Some(V::DimValue(v)) if v > 0 => Some(v as usize),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default()
        }
        _ => return Err(no(format!("input {} is not a tensor", input.name()))),
    };
    // A TensorFlow-style NHWC input [1, H, W, C] whose every reader is a Transpose
    // (0, 3, 1, 2) to NCHW: the IR input is NCHW and those Transposes become identities.
    let nhwc = dims.len() == 4 && {
        let readers: Vec<&NodeProto> = g
            .node
            .iter()
            .enumerate()
            .filter(|(i, n)| live[*i] && n.input.iter().any(|x| x == input.name()))
            .map(|(_, n)| n)
            .collect();
        !readers.is_empty()
            && readers.iter().all(|n| {
                n.op_type() == "Transpose"
                    && n.input.len() == 1
                    && Attrs(n).ints("perm").as_deref() == Some(&[0, 3, 1, 2][..])
            })
    };
    let dims = if nhwc {
        vec![dims[0], dims[3], dims[1], dims[2]]
    } else {
        dims
    };
    let [n, Some(c), h, w] = dims[..] else {
        return Err(no(format!(
            "input {} has shape {dims:?}; an NCHW image batch with a known channel count is needed",
            input.name()
        )));
    };
    if n.is_some_and(|n| n != 1) {
        return Err(no(format!(
            "input batch size fixed at {}; export with batch 1 or a dynamic batch axis",
            n.unwrap()
        )));
    }
    let hw = |v: Option<usize>| {
        v.or(size)
            .ok_or_else(|| no("the input's height/width are symbolic: give --size".to_string()))
    };
    let (h, w) = (hw(h)?, hw(w)?);
    use crate::limits::{check_size, MAX_CHANNELS};
    check_size(c, MAX_CHANNELS, "input channels")?;
    check_size(h, MAX_SPATIAL, "input height")?;
    check_size(w, MAX_SPATIAL, "input width")?;
    let input_shape = vec![c, h, w];
    tr.ir_reads.insert(Graph::INPUT.into(), 0);
    if nhwc {
        crate::error::note(format_args!(
            "{name}: input {} is NHWC [1, {h}, {w}, {c}]; its Transpose to NCHW is absorbed: the imported model takes NCHW [{c}, {h}, {w}]",
            input.name()
        ));
        tr.nhwc_input = Some(input.name().to_string());
    }
    tr.bind(
        input.name(),
        Dyn {
            ir: Graph::INPUT.into(),
            shape: if nhwc {
                vec![1, h, w, c]
            } else {
                vec![1, c, h, w]
            },
            ir_shape: input_shape.clone(),
            pad: None,
        },
        true,
    );

    for (i, node) in g.node.iter().enumerate() {
        if !live[i] {
            continue;
        }
        let label = format!("node {:?} ({})", node.name(), node.op_type());
        if !node.domain().is_empty() && node.domain() != "ai.onnx" {
            tr.problems.push(format!(
                "{label}: operator domain {:?} is not supported",
                node.domain()
            ));
            node.output
                .iter()
                .for_each(|o| drop(tr.vals.insert(o.clone(), Val::Poison)));
            continue;
        }
        let ins: Vec<Option<&Val>> = node
            .input
            .iter()
            .map(|n| (!n.is_empty()).then(|| tr.vals.get(n)).flatten())
            .collect();
        if let Some(k) = node
            .input
            .iter()
            .zip(&ins)
            .position(|(n, v)| !n.is_empty() && v.is_none())
        {
            return Err(no(format!(
                "{label} reads {:?}, which is not defined before it",
                node.input[k]
            )));
        }
        let poisoned = ins.iter().any(|v| matches!(v, Some(Val::Poison)));
        let all_const = ins.iter().all(|v| !matches!(v, Some(Val::Dyn(_))));
        let in_irs: Vec<String> = ins
            .iter()
            .filter_map(|v| match v {
                Some(Val::Dyn(d)) => Some(d.ir.clone()),
                _ => None,
            })
            .collect();
        let result = if poisoned {
            // Not tried on a poisoned input, but an op the IR lacks is still listed.
            if !SUPPORTED.contains(&node.op_type()) && !fold::FOLDABLE.contains(&node.op_type()) {
                tr.problems.push(format!("{label}: no ptq4 IR op for it"));
            }
            node.output
                .iter()
                .for_each(|o| drop(tr.vals.insert(o.clone(), Val::Poison)));
            continue;
        } else if all_const && fold::FOLDABLE.contains(&node.op_type()) {
            let cs: Vec<Option<&Const>> = ins
                .iter()
                .map(|v| match v {
                    Some(Val::Const(c)) => Some(c),
                    _ => None,
                })
                .collect();
            fold::eval(node, opset, &cs, dir).and_then(|c| {
                c.map(|c| vec![Val::Const(c)])
                    .ok_or_else(|| no("listed as foldable but not folded"))
            })
        } else if all_const {
            Err(no("folding it on constants is not supported"))
        } else {
            tr.node(node)
        };
        match result {
            Ok(outs) => {
                for (o, v) in node.output.iter().zip(outs) {
                    match v {
                        Val::Dyn(d) => {
                            let fresh = !in_irs.contains(&d.ir);
                            tr.bind(o, d, fresh);
                        }
                        v => drop(tr.vals.insert(o.clone(), v)),
                    }
                }
            }
            Err(e) => {
                let m = e.to_string();
                let m = m.strip_prefix("import: ").unwrap_or(&m).to_string();
                tr.problems.push(format!("{label}: {m}"));
                node.output
                    .iter()
                    .for_each(|o| drop(tr.vals.insert(o.clone(), Val::Poison)));
            }
        }
    }
    if !tr.problems.is_empty() {
        return Err(Error::Import(format!(
            "{} node(s) cannot be imported:\n  {}",
            tr.problems.len(),
            tr.problems.join("\n  ")
        )));
    }
    let d = match tr.vals.get(&out_name) {
        Some(Val::Dyn(d)) => d.clone(),
        Some(_) => return Err(no("the output does not depend on the input")),
        None => return Err(no(format!("output {out_name} is not produced by any node"))),
    };
    if d.pad.is_some() {
        return Err(no("the output is a Pad"));
    }
    let graph = Graph {
        name: name.to_string(),
        input_shape,
        nodes: tr.nodes,
        output: d.ir,
        params: tr.params,
        preprocess: Preprocess::efficientnet(h.min(w)),
    };
    Ok(Translated {
        graph,
        output_shape: d.shape,
    })
}
