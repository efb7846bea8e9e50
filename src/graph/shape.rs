//! Shape inference and parameter checks. Shapes are per sample. Every size read from a
//! file is checked against [`limits`] before it is used in arithmetic, so a crafted file
//! yields an error naming the node, never an overflow, a division by zero or a huge
//! allocation.

use std::collections::HashMap;

use super::{Graph, Node, Op, Unary};
use crate::error::{Error, Result};
use crate::limits::{self, check_size, MAX_CHANNELS, MAX_SPATIAL};

/// Checks the attributes of `node`'s op: sizes in range, groups dividing the channels,
/// padding within bounds, BatchNorm eps finite and positive.
fn check_attrs(node: &Node) -> Result<()> {
    let at = |what: &str| format!("node {} ({}): {what}", node.name, node.op.kind());
    let window = |k: [usize; 2], s: [usize; 2], d: [usize; 2], p: [usize; 4]| -> Result<()> {
        for i in 0..2 {
            check_size(k[i], MAX_SPATIAL, &at("kernel size"))?;
            check_size(s[i], MAX_SPATIAL, &at("stride"))?;
            check_size(d[i], MAX_SPATIAL, &at("dilation"))?;
        }
        if let Some(&pad) = p.iter().find(|&&x| x > MAX_SPATIAL) {
            return Err(Error::Graph(at(&format!(
                "padding {pad} exceeds {MAX_SPATIAL}"
            ))));
        }
        Ok(())
    };
    match &node.op {
        Op::Conv2d(c) => {
            check_size(c.in_channels, MAX_CHANNELS, &at("in_channels"))?;
            check_size(c.out_channels, MAX_CHANNELS, &at("out_channels"))?;
            if c.groups == 0 || c.in_channels % c.groups != 0 || c.out_channels % c.groups != 0 {
                return Err(Error::Graph(at(&format!(
                    "groups {} must be at least 1 and divide in {} and out {} channels",
                    c.groups, c.in_channels, c.out_channels
                ))));
            }
            window(c.kernel, c.stride, c.dilation, c.padding)?;
            limits::checked_numel(&c.weight_shape(), &at("weight"))?;
        }
        Op::MaxPool(p) | Op::AvgPool(p) => {
            window(p.kernel, p.stride, [1, 1], p.padding)?;
            // A window lying wholly in the padding would average nothing.
            let k = [p.kernel[0], p.kernel[1], p.kernel[0], p.kernel[1]];
            if p.padding.iter().zip(k).any(|(&pad, k)| pad >= k) {
                return Err(Error::Graph(at(&format!(
                    "padding {:?} must be smaller than the kernel {:?}",
                    p.padding, p.kernel
                ))));
            }
        }
        Op::Linear(l) => {
            check_size(l.in_features, limits::MAX_ELEMENTS, &at("in_features"))?;
            check_size(l.out_features, MAX_CHANNELS, &at("out_features"))?;
            limits::checked_numel(&[l.out_features, l.in_features], &at("weight"))?;
        }
        Op::ChannelShuffle { groups } => check_size(*groups, MAX_CHANNELS, &at("groups"))?,
        Op::Lrn {
            size,
            alpha,
            beta,
            bias,
        } => {
            check_size(*size, MAX_CHANNELS, &at("size"))?;
            // alpha ≥ 0 and bias > 0 keep the base of the power positive.
            let ok = [alpha, beta, bias].iter().all(|v| v.is_finite()) && *alpha >= 0.0;
            if !ok || *bias <= 0.0 {
                return Err(Error::Graph(at(&format!(
                    "alpha {alpha}, beta {beta}, bias {bias}: need finite values, alpha ≥ 0, bias > 0"
                ))));
            }
        }
        Op::BatchNorm { eps, .. } if !eps.is_finite() || *eps <= 0.0 => {
            return Err(Error::Graph(at(&format!(
                "eps {eps} must be finite and positive"
            ))));
        }
        Op::Unary(u) => {
            let ok = match *u {
                Unary::HardSigmoid { alpha, beta } => alpha.is_finite() && beta.is_finite(),
                Unary::LeakyRelu { alpha } => alpha.is_finite(),
                // An infinite bound is a one-sided clip; NaN bounds and min > max are not.
                Unary::Clip { min, max } => min <= max && min < f32::INFINITY,
                _ => true,
            };
            if !ok {
                return Err(Error::Graph(at(&format!("invalid parameters {u:?}"))));
            }
        }
        _ => {}
    }
    Ok(())
}

fn shape_err(node: &Node, expected: Vec<usize>, actual: Vec<usize>) -> Error {
    Error::Shape {
        node: node.name.clone(),
        expected,
        actual,
    }
}

fn check_param(g: &Graph, node: &Node, param: &str, expected: Vec<usize>) -> Result<()> {
    let t = g.param(&node.name, param)?;
    if t.shape != expected {
        return Err(Error::Shape {
            node: format!("{}.{param}", node.name),
            expected,
            actual: t.shape.clone(),
        });
    }
    Ok(())
}

fn arity(node: &Node, n: usize) -> Result<()> {
    if node.inputs.len() != n {
        return Err(Error::Graph(format!(
            "node {} ({}) takes {n} input(s), has {}",
            node.name,
            node.op.kind(),
            node.inputs.len()
        )));
    }
    Ok(())
}

fn chw(node: &Node, s: &[usize]) -> Result<(usize, usize, usize)> {
    match *s {
        [c, h, w] => Ok((c, h, w)),
        _ => Err(Error::Graph(format!(
            "node {} ({}) needs a [C, H, W] input, got {s:?}",
            node.name,
            node.op.kind()
        ))),
    }
}

/// Per-channel activation bounds (checked with or without the other parameters: a quantized
/// file keeps them): one per output channel, positive and finite, on a fused ReLU.
fn check_act_max(g: &Graph, node: &Node, c: &crate::graph::Conv2d) -> Result<()> {
    check_param(g, node, crate::graph::ACT_MAX, vec![c.out_channels])?;
    let ok = g
        .act_max(&node.name)
        .is_some_and(|m| m.iter().all(|v| v.is_finite() && *v > 0.0));
    if !ok || c.act != crate::graph::Activation::Relu {
        return Err(Error::Graph(format!(
            "node {}: act_max needs a fused ReLU and positive finite bounds",
            node.name
        )));
    }
    Ok(())
}

/// Per-sample shapes of every value; `params`: also check parameter presence and shapes.
pub(super) fn infer(g: &Graph, params: bool) -> Result<HashMap<String, Vec<usize>>> {
    let expect_param = |node: &Node, param: &str, expected: Vec<usize>| {
        if params {
            check_param(g, node, param, expected)
        } else {
            Ok(())
        }
    };
    let mut shapes: HashMap<String, Vec<usize>> = HashMap::new();
    let [c, h, w] = g.input_shape[..] else {
        return Err(Error::Graph(format!(
            "input shape must be [C, H, W], got {:?}",
            g.input_shape
        )));
    };
    check_size(c, MAX_CHANNELS, "input channels")?;
    check_size(h, MAX_SPATIAL, "input height")?;
    check_size(w, MAX_SPATIAL, "input width")?;
    limits::checked_numel(&g.input_shape, "input")?;
    shapes.insert(Graph::INPUT.to_string(), g.input_shape.clone());
    for node in &g.nodes {
        check_attrs(node)?;
        let ins: Vec<&Vec<usize>> = node
            .inputs
            .iter()
            .map(|i| {
                shapes.get(i).ok_or_else(|| {
                    Error::Graph(format!(
                        "node {} reads {i}, which is not defined",
                        node.name
                    ))
                })
            })
            .collect::<Result<_>>()?;
        let out = match &node.op {
            Op::Conv2d(c) => {
                arity(node, 1)?;
                let (ci, h, w) = chw(node, ins[0])?;
                if ci != c.in_channels {
                    return Err(shape_err(node, vec![c.in_channels, h, w], ins[0].clone()));
                }
                expect_param(node, "weight", c.weight_shape())?;
                if c.bias {
                    expect_param(node, "bias", vec![c.out_channels])?;
                }
                if g.act_max(&node.name).is_some() {
                    check_act_max(g, node, c)?;
                }
                let (oh, ow) = c.out_hw(h, w).ok_or_else(|| {
                    Error::Graph(format!(
                        "node {}: window does not fit input {h}x{w}",
                        node.name
                    ))
                })?;
                vec![c.out_channels, oh, ow]
            }
            Op::BatchNorm { .. } => {
                arity(node, 1)?;
                let c = *ins[0].first().ok_or_else(|| {
                    Error::Graph(format!("node {}: input has no channel axis", node.name))
                })?;
                for p in ["weight", "bias", "running_mean", "running_var"] {
                    expect_param(node, p, vec![c])?;
                }
                ins[0].clone()
            }
            Op::Relu | Op::Relu6 | Op::Softmax | Op::Unary(_) => {
                arity(node, 1)?;
                ins[0].clone()
            }
            Op::MaxPool(p) | Op::AvgPool(p) => {
                arity(node, 1)?;
                let (c, h, w) = chw(node, ins[0])?;
                let (oh, ow) = p.out_hw(h, w).ok_or_else(|| {
                    Error::Graph(format!(
                        "node {}: window does not fit input {h}x{w}",
                        node.name
                    ))
                })?;
                vec![c, oh, ow]
            }
            Op::GlobalAvgPool => {
                arity(node, 1)?;
                let (c, _, _) = chw(node, ins[0])?;
                vec![c, 1, 1]
            }
            Op::Lrn { .. } => {
                arity(node, 1)?;
                chw(node, ins[0])?;
                ins[0].clone()
            }
            Op::Add => {
                if node.inputs.len() < 2 {
                    return Err(Error::Graph(format!(
                        "add node {} needs 2+ inputs",
                        node.name
                    )));
                }
                for s in &ins[1..] {
                    if *s != ins[0] {
                        return Err(shape_err(node, ins[0].clone(), (*s).clone()));
                    }
                }
                ins[0].clone()
            }
            Op::Concat => {
                if node.inputs.is_empty() {
                    return Err(Error::Graph(format!(
                        "concat node {} has no inputs",
                        node.name
                    )));
                }
                let (_, h, w) = chw(node, ins[0])?;
                let mut c: usize = 0;
                for s in &ins {
                    let (ci, hi, wi) = chw(node, s)?;
                    if (hi, wi) != (h, w) {
                        return Err(shape_err(node, vec![ci, h, w], (*s).clone()));
                    }
                    c = c.checked_add(ci).ok_or_else(|| {
                        Error::Graph(format!("node {}: channel count overflows", node.name))
                    })?;
                }
                vec![c, h, w]
            }
            Op::Mul => {
                arity(node, 2)?;
                let (c, _, _) = chw(node, ins[0])?;
                let gate = *ins[1] == [c, 1, 1] || *ins[1] == [c];
                if *ins[1] != *ins[0] && !gate {
                    return Err(shape_err(node, ins[0].clone(), ins[1].clone()));
                }
                ins[0].clone()
            }
            Op::ChannelShuffle { groups } => {
                arity(node, 1)?;
                let (c, _, _) = chw(node, ins[0])?;
                if !c.is_multiple_of(*groups) {
                    return Err(Error::Graph(format!(
                        "node {}: {groups} groups do not divide {c} channels",
                        node.name
                    )));
                }
                ins[0].clone()
            }
            Op::Flatten => {
                arity(node, 1)?;
                vec![limits::checked_numel(
                    ins[0],
                    &format!("node {}", node.name),
                )?]
            }
            Op::Linear(l) => {
                arity(node, 1)?;
                let f = limits::checked_numel(ins[0], &format!("node {}", node.name))?;
                if f != l.in_features {
                    return Err(shape_err(node, vec![l.in_features], ins[0].clone()));
                }
                expect_param(node, "weight", vec![l.out_features, l.in_features])?;
                if l.bias {
                    expect_param(node, "bias", vec![l.out_features])?;
                }
                vec![l.out_features]
            }
        };
        limits::checked_numel(&out, &format!("node {} output", node.name))?;
        shapes.insert(node.name.clone(), out);
    }
    Ok(shapes)
}
