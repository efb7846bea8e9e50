//! `ptq4 inspect`: a graph's nodes, output shapes and parameter counts, as a table and as
//! JSON, followed for a quantized model by its plan ([`super::plan`]) and the bytes of its
//! stored weights. An FP32 model is shown as stored; a quantized one as its prepared graph
//! (the only graph its file has).

use std::fmt::Write as _;

use serde_json::json;

use crate::error::Result;
use crate::graph::{Graph, Op};
use crate::quant::plan::Plan;

/// What `inspect` adds for a quantized model.
pub struct Quantized<'a> {
    pub plan: &'a Plan,
    /// Bytes of weight data as stored (codes, scales, zero points, bit-widths, biases).
    pub weight_bytes: usize,
}

/// Parameters (all tensors) of node `name`.
fn node_params(g: &Graph, name: &str, op: &Op) -> usize {
    op.param_names()
        .iter()
        .filter_map(|p| g.param_opt(name, p))
        .map(|t| t.numel())
        .sum()
}

/// Nodes, shapes and parameter counts as a JSON value (and the plan and weight bytes of a
/// quantized model).
pub fn json(g: &Graph, quant: Option<&Quantized>) -> Result<serde_json::Value> {
    let shapes = g.validate()?;
    let nodes: Vec<_> = g
        .nodes
        .iter()
        .map(|n| {
            json!({"name": n.name, "op": n.op.kind(), "inputs": n.inputs,
                   "shape": shapes[&n.name], "params": node_params(g, &n.name, &n.op)})
        })
        .collect();
    let mut v = json!({"name": g.name, "kind": "fp32", "input_shape": g.input_shape,
                       "parameters": g.param_count(), "tensors": g.params.len(),
                       "preprocess": g.preprocess, "nodes": nodes});
    if let Some(q) = quant {
        v["kind"] = "quant".into();
        v["plan"] = super::plan::json(q.plan);
        v["weight_bytes"] = q.weight_bytes.into();
    }
    Ok(v)
}

/// The graph as a table (and the plan table and weight bytes of a quantized model).
pub fn text(g: &Graph, quant: Option<&Quantized>) -> Result<String> {
    let shapes = g.validate()?;
    let mut s = String::new();
    let kind = if quant.is_some() {
        "quantized; prepared graph"
    } else {
        "fp32"
    };
    let _ = writeln!(s, "model {} ({kind}), input {:?}", g.name, g.input_shape);
    let _ = writeln!(
        s,
        "{:<36} {:<16} {:<18} {:>10}",
        "node", "op", "shape", "params"
    );
    for n in &g.nodes {
        let op = match &n.op {
            Op::Conv2d(c) if c.is_depthwise() => {
                format!("dwconv{}x{}/{}", c.kernel[0], c.kernel[1], c.stride[0])
            }
            Op::Conv2d(c) => format!("conv{}x{}/{}", c.kernel[0], c.kernel[1], c.stride[0]),
            op => op.kind().to_string(),
        };
        let _ = writeln!(
            s,
            "{:<36} {:<16} {:<18} {:>10}",
            n.name,
            op,
            format!("{:?}", shapes[&n.name]),
            node_params(g, &n.name, &n.op)
        );
    }
    let _ = writeln!(
        s,
        "{} nodes, {} parameter tensors, {} parameters",
        g.nodes.len(),
        g.params.len(),
        g.param_count()
    );
    if let Some(q) = quant {
        s.push_str(&super::plan::text(q.plan));
        let _ = writeln!(
            s,
            "weight bytes (codes, scales, zero points, bits, biases): {}",
            q.weight_bytes
        );
    }
    Ok(s)
}
