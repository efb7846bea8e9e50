//! Graph execution on the CPU engine, batch at a time, with an optional [`Hook`] that sees
//! (and may rewrite) values as they are produced: calibration collects statistics through it,
//! simulated quantization fake-quantizes through it. Intermediate values are freed as soon as
//! their last reader has run, so memory is bounded by the widest cut of the graph.

use std::collections::HashMap;

use crate::engine::cpu;
use crate::error::{Error, Result};
use crate::graph::{Activation, Graph, Node, Op};
use crate::tensor::Tensor;

/// Observer / rewriter of values during execution.
pub trait Hook {
    /// Whether [`Hook::pre_activation`] is wanted (calibration measures pre-activation tensors);
    /// costs one extra pass over fused conv/linear outputs.
    fn wants_pre_activation(&self) -> bool {
        false
    }
    /// The graph input batch, before any node reads it.
    fn input(&mut self, _x: &mut Tensor) -> Result<()> {
        Ok(())
    }
    /// A conv/linear output before its fused activation (only when wanted).
    fn pre_activation(&mut self, _node: &Node, _x: &Tensor) -> Result<()> {
        Ok(())
    }
    /// A node's output, after its fused activation.
    fn output(&mut self, _node: &Node, _x: &mut Tensor) -> Result<()> {
        Ok(())
    }
}

/// The hook that does nothing.
pub struct NoHook;
impl Hook for NoHook {}

/// Runs the graph on an NCHW batch and returns the output value.
pub fn run(g: &Graph, mut input: Tensor, hook: &mut dyn Hook) -> Result<Tensor> {
    let want = &g.input_shape;
    if input.rank() != 4 || input.shape[1..] != want[..] {
        return Err(Error::Shape {
            node: Graph::INPUT.into(),
            expected: [&[input.shape.first().copied().unwrap_or(1)][..], want].concat(),
            actual: input.shape.clone(),
        });
    }
    hook.input(&mut input)?;
    let mut remaining: HashMap<&str, usize> = HashMap::new();
    for n in &g.nodes {
        for i in &n.inputs {
            *remaining.entry(i.as_str()).or_default() += 1;
        }
    }
    *remaining.entry(g.output.as_str()).or_default() += 1;
    let mut values: HashMap<&str, Tensor> = HashMap::new();
    values.insert(Graph::INPUT, input);
    let pre = hook.wants_pre_activation();
    for node in &g.nodes {
        let ins: Vec<&Tensor> = node
            .inputs
            .iter()
            .map(|i| {
                values
                    .get(i.as_str())
                    .ok_or_else(|| Error::Engine(format!("value {i} is not available")))
            })
            .collect::<Result<_>>()?;
        let mut out = eval_node(g, node, &ins, pre, hook)?;
        hook.output(node, &mut out)?;
        for i in &node.inputs {
            if let Some(r) = remaining.get_mut(i.as_str()) {
                *r -= 1;
                if *r == 0 {
                    values.remove(i.as_str());
                }
            }
        }
        values.insert(node.name.as_str(), out);
    }
    values
        .remove(g.output.as_str())
        .ok_or_else(|| Error::Engine(format!("output {} was not produced", g.output)))
}

/// Runs the graph without a hook.
pub fn forward(g: &Graph, input: Tensor) -> Result<Tensor> {
    run(g, input, &mut NoHook)
}

fn apply_act(act: Activation, x: &mut Tensor) {
    match act {
        Activation::None => {}
        Activation::Relu => cpu::relu(x),
        Activation::Relu6 => cpu::relu6(x),
    }
}

fn eval_node(
    g: &Graph,
    node: &Node,
    ins: &[&Tensor],
    pre: bool,
    hook: &mut dyn Hook,
) -> Result<Tensor> {
    let name = node.name.as_str();
    Ok(match &node.op {
        Op::Conv2d(c) => {
            let w = g.param(name, "weight")?;
            let b = g.param_opt(name, "bias").map(|t| t.data.as_slice());
            if pre && c.act != Activation::None {
                let plain = crate::graph::Conv2d {
                    act: Activation::None,
                    ..c.clone()
                };
                let mut y = cpu::conv2d(ins[0], w, b, &plain);
                hook.pre_activation(node, &y)?;
                apply_act(c.act, &mut y);
                y
            } else {
                let y = cpu::conv2d(ins[0], w, b, c);
                if pre {
                    hook.pre_activation(node, &y)?;
                }
                y
            }
        }
        Op::Linear(l) => {
            let w = g.param(name, "weight")?;
            let b = g.param_opt(name, "bias").map(|t| t.data.as_slice());
            let plain = crate::graph::Linear {
                act: Activation::None,
                ..l.clone()
            };
            let mut y = cpu::linear(ins[0], w, b, if pre { &plain } else { l });
            if pre {
                hook.pre_activation(node, &y)?;
                apply_act(l.act, &mut y);
            }
            y
        }
        Op::BatchNorm { eps } => {
            let p = |k| g.param(name, k).map(|t| t.data.as_slice());
            cpu::batch_norm(
                ins[0],
                p("weight")?,
                p("bias")?,
                p("running_mean")?,
                p("running_var")?,
                *eps,
            )
        }
        Op::Relu => {
            let mut y = ins[0].clone();
            cpu::relu(&mut y);
            y
        }
        Op::Relu6 => {
            let mut y = ins[0].clone();
            cpu::relu6(&mut y);
            y
        }
        Op::MaxPool(p) => cpu::max_pool(ins[0], p),
        Op::AvgPool(p) => cpu::avg_pool(ins[0], p),
        Op::GlobalAvgPool => cpu::global_avg_pool(ins[0]),
        Op::Add => {
            let mut y = cpu::add(ins[0], ins[1]);
            for t in &ins[2..] {
                y = cpu::add(&y, t);
            }
            y
        }
        Op::Concat => cpu::concat(ins),
        Op::Flatten => {
            let n = ins[0].shape[0];
            let f = ins[0].numel() / n.max(1);
            Tensor {
                shape: vec![n, f],
                data: ins[0].data.clone(),
            }
        }
        Op::Softmax => cpu::softmax(ins[0]),
    })
}
