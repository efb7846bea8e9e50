//! Shape inference and parameter checks. Shapes are per sample.

use std::collections::HashMap;

use super::{Graph, Node, Op};
use crate::error::{Error, Result};

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

pub(super) fn infer(g: &Graph) -> Result<HashMap<String, Vec<usize>>> {
    let mut shapes: HashMap<String, Vec<usize>> = HashMap::new();
    if g.input_shape.len() != 3 {
        return Err(Error::Graph(format!(
            "input shape must be [C, H, W], got {:?}",
            g.input_shape
        )));
    }
    shapes.insert(Graph::INPUT.to_string(), g.input_shape.clone());
    for node in &g.nodes {
        let ins: Vec<&Vec<usize>> = node.inputs.iter().map(|i| &shapes[i]).collect();
        let out = match &node.op {
            Op::Conv2d(c) => {
                arity(node, 1)?;
                let (ci, h, w) = chw(node, ins[0])?;
                if c.groups == 0 || c.in_channels % c.groups != 0 || c.out_channels % c.groups != 0
                {
                    return Err(Error::Graph(format!(
                        "node {}: groups {} must divide in {} and out {} channels",
                        node.name, c.groups, c.in_channels, c.out_channels
                    )));
                }
                if ci != c.in_channels {
                    return Err(shape_err(node, vec![c.in_channels, h, w], ins[0].clone()));
                }
                check_param(g, node, "weight", c.weight_shape())?;
                if c.bias {
                    check_param(g, node, "bias", vec![c.out_channels])?;
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
                let c = ins[0][0];
                for p in ["weight", "bias", "running_mean", "running_var"] {
                    check_param(g, node, p, vec![c])?;
                }
                ins[0].clone()
            }
            Op::Relu | Op::Relu6 | Op::Softmax => {
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
                let mut c = 0;
                for s in &ins {
                    let (ci, hi, wi) = chw(node, s)?;
                    if (hi, wi) != (h, w) {
                        return Err(shape_err(node, vec![ci, h, w], (*s).clone()));
                    }
                    c += ci;
                }
                vec![c, h, w]
            }
            Op::Flatten => {
                arity(node, 1)?;
                vec![ins[0].iter().product()]
            }
            Op::Linear(l) => {
                arity(node, 1)?;
                let f: usize = ins[0].iter().product();
                if f != l.in_features {
                    return Err(shape_err(node, vec![l.in_features], ins[0].clone()));
                }
                check_param(g, node, "weight", vec![l.out_features, l.in_features])?;
                if l.bias {
                    check_param(g, node, "bias", vec![l.out_features])?;
                }
                vec![l.out_features]
            }
        };
        shapes.insert(node.name.clone(), out);
    }
    Ok(shapes)
}
