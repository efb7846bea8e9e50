//! Graph execution on the CPU engine, with an optional [`Hook`] that sees (and may rewrite)
//! values as they are produced: calibration collects statistics through it, simulated
//! quantization fake-quantizes through it. Intermediate values are freed as soon as their
//! last reader has run, so memory is bounded by the widest cut of the graph, and their
//! buffers go to a [`BufferPool`] that later outputs reuse (no page faults on fresh memory).
//!
//! [`run`] executes node by node on the whole batch, so a hook sees whole-batch tensors.
//! [`forward`] (no hook) runs the leading large-activation nodes image group by image group
//! (`MICRO_BATCH` images, all those nodes for one group before the next, so a group's
//! activations stay in cache), then joins the values live at that point along the batch axis
//! and runs the remaining small-map nodes on the whole batch (wide GEMMs that pack each weight
//! matrix once). Every kernel computes an image's outputs with the same arithmetic whatever
//! the batch around it, so both paths give bit-identical results for any batch size.

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

/// Images per group in the leading part of [`forward`]: one image's largest activation
/// (EfficientNet-Lite0: 96×112×112 f32, 4.8 MB) already fills much of the last-level cache.
const MICRO_BATCH: usize = 1;

/// Per-image output size (f32 elements) from which a node counts as large: [`forward`] runs
/// every node up to the last large one group by group. Later maps are small enough that the
/// whole batch stays in cache and batching amortises the weight packing of their GEMMs.
const LARGE_NUMEL: usize = 28 * 28 * 144;

/// Runs the graph on an NCHW batch and returns the output value.
pub fn run(g: &Graph, mut input: Tensor, hook: &mut dyn Hook) -> Result<Tensor> {
    check_input(g, &input)?;
    hook.input(&mut input)?;
    let mut ex = Executor::new(g, hook);
    let mut values = HashMap::new();
    values.insert(Graph::INPUT, input);
    let mut remaining = ex.readers.clone();
    ex.run_nodes(&g.nodes, &mut values, &mut remaining)?;
    take_output(g, &mut values)
}

/// Runs the graph without a hook (see the module docs for the batch splitting).
pub fn forward(g: &Graph, input: Tensor) -> Result<Tensor> {
    check_input(g, &input)?;
    let n = input.shape[0];
    let cut = if n > MICRO_BATCH { split_point(g)? } else { 0 };
    let mut hook = NoHook;
    let mut ex = Executor::new(g, &mut hook);
    let mut remaining = ex.readers.clone();
    let mut values: HashMap<&str, Tensor> = HashMap::new();
    if cut == 0 {
        values.insert(Graph::INPUT, input);
    } else {
        let per = input.numel() / n;
        // Values live after the prefix, in graph order, each gathered over the groups.
        let mut joined: Vec<(&str, Tensor)> = Vec::new();
        let mut left = remaining.clone();
        for n0 in (0..n).step_by(MICRO_BATCH) {
            let nb = MICRO_BATCH.min(n - n0);
            let mut part = Tensor {
                shape: [&[nb][..], &input.shape[1..]].concat(),
                data: ex.pool.take(nb * per),
            };
            part.data.clear();
            part.data.clear();
            part.data
                .extend_from_slice(&input.data[n0 * per..(n0 + nb) * per]);
            let mut vals = HashMap::new();
            vals.insert(Graph::INPUT, part);
            left = remaining.clone();
            ex.run_nodes(&g.nodes[..cut], &mut vals, &mut left)?;
            if joined.is_empty() {
                joined = live_in_order(g, &vals)
                    .into_iter()
                    .map(|k| {
                        let t = &vals[k];
                        let shape = [&[n][..], &t.shape[1..]].concat();
                        let data = Vec::with_capacity(t.numel() / nb * n);
                        (k, Tensor { shape, data })
                    })
                    .collect();
            }
            for (k, whole) in &mut joined {
                let t = vals
                    .remove(*k)
                    .ok_or_else(|| Error::Engine(format!("value {k} is not available")))?;
                whole.data.extend_from_slice(&t.data);
                ex.pool.put(t.data);
            }
            for (_, t) in vals.drain() {
                ex.pool.put(t.data);
            }
        }
        remaining = left;
        values.extend(joined);
    }
    ex.run_nodes(&g.nodes[cut..], &mut values, &mut remaining)?;
    take_output(g, &mut values)
}

fn check_input(g: &Graph, input: &Tensor) -> Result<()> {
    let want = &g.input_shape;
    if input.rank() != 4 || input.shape[1..] != want[..] {
        return Err(Error::Shape {
            node: Graph::INPUT.into(),
            expected: [&[input.shape.first().copied().unwrap_or(1)][..], want].concat(),
            actual: input.shape.clone(),
        });
    }
    Ok(())
}

fn take_output(g: &Graph, values: &mut HashMap<&str, Tensor>) -> Result<Tensor> {
    values
        .remove(g.output.as_str())
        .ok_or_else(|| Error::Engine(format!("output {} was not produced", g.output)))
}

/// Number of leading nodes that [`forward`] runs group by group: up to and including the
/// last node with a large per-image output (0 when there is none).
fn split_point(g: &Graph) -> Result<usize> {
    let shapes = g.validate()?;
    let numel = |name: &str| shapes.get(name).map_or(0, |s| s.iter().product::<usize>());
    Ok(g.nodes
        .iter()
        .rposition(|n| numel(&n.name) >= LARGE_NUMEL)
        .map_or(0, |i| i + 1))
}

/// The keys of `values`, in graph order (input first), so that joining is deterministic.
fn live_in_order<'g>(g: &'g Graph, values: &HashMap<&'g str, Tensor>) -> Vec<&'g str> {
    std::iter::once(Graph::INPUT)
        .chain(g.nodes.iter().map(|n| n.name.as_str()))
        .filter(|k| values.contains_key(k))
        .collect()
}

/// Freed activation buffers, reused for later outputs of any size up to their capacity.
#[derive(Default)]
pub(crate) struct BufferPool {
    free: Vec<Vec<f32>>,
}

impl BufferPool {
    /// Buffers kept at most (the widest cut of a CNN holds a handful of values).
    const KEEP: usize = 8;

    /// A vector with capacity for `len` elements: the smallest free buffer that fits, with
    /// its old contents (kernels that write every element resize it without a clearing
    /// pass), or a new empty one.
    pub fn take(&mut self, len: usize) -> Vec<f32> {
        let best = (self.free.iter().enumerate())
            .filter(|(_, v)| v.capacity() >= len)
            .min_by_key(|(_, v)| v.capacity())
            .map(|(i, _)| i);
        match best {
            Some(i) => self.free.swap_remove(i),
            None => Vec::with_capacity(len),
        }
    }

    /// Returns a buffer; beyond `KEEP`, the smallest one is dropped.
    pub fn put(&mut self, v: Vec<f32>) {
        if v.capacity() == 0 {
            return;
        }
        self.free.push(v);
        if self.free.len() > Self::KEEP {
            if let Some(i) = (0..self.free.len()).min_by_key(|&i| self.free[i].capacity()) {
                self.free.swap_remove(i);
            }
        }
    }
}

/// Per-call execution state.
struct Executor<'g, 'h> {
    g: &'g Graph,
    hook: &'h mut dyn Hook,
    pre: bool,
    pool: BufferPool,
    /// Number of reads of each value (the graph output counts as one).
    readers: HashMap<&'g str, usize>,
}

impl<'g, 'h> Executor<'g, 'h> {
    fn new(g: &'g Graph, hook: &'h mut dyn Hook) -> Self {
        let mut readers: HashMap<&str, usize> = HashMap::new();
        for n in &g.nodes {
            for i in &n.inputs {
                *readers.entry(i.as_str()).or_default() += 1;
            }
        }
        *readers.entry(g.output.as_str()).or_default() += 1;
        let pre = hook.wants_pre_activation();
        Executor {
            g,
            hook,
            pre,
            pool: BufferPool::default(),
            readers,
        }
    }

    /// Runs `nodes` in order on `values`, freeing each value after its last reader.
    fn run_nodes(
        &mut self,
        nodes: &'g [Node],
        values: &mut HashMap<&'g str, Tensor>,
        remaining: &mut HashMap<&'g str, usize>,
    ) -> Result<()> {
        for node in nodes {
            // Elementwise ops overwrite their first input when this node is its last reader.
            let first = node.inputs.first().map(String::as_str);
            let in_place = matches!(node.op, Op::Add | Op::Relu | Op::Relu6 | Op::Flatten)
                && first.is_some_and(|f| {
                    remaining.get(f) == Some(&1) && node.inputs[1..].iter().all(|i| i != f)
                });
            let owned = match (in_place, first) {
                (true, Some(f)) => values.remove(f),
                _ => None,
            };
            let ins: Vec<&Tensor> = node.inputs[usize::from(owned.is_some())..]
                .iter()
                .map(|i| {
                    values
                        .get(i.as_str())
                        .ok_or_else(|| Error::Engine(format!("value {i} is not available")))
                })
                .collect::<Result<_>>()?;
            let mut out = match owned {
                Some(x) => eval_in_place(node, x, &ins),
                None => self.eval_node(node, &ins)?,
            };
            self.hook.output(node, &mut out)?;
            for i in &node.inputs {
                if let Some(r) = remaining.get_mut(i.as_str()) {
                    *r -= 1;
                    if *r == 0 {
                        if let Some(t) = values.remove(i.as_str()) {
                            self.pool.put(t.data);
                        }
                    }
                }
            }
            values.insert(node.name.as_str(), out);
        }
        Ok(())
    }

    fn eval_node(&mut self, node: &Node, ins: &[&Tensor]) -> Result<Tensor> {
        let g = self.g;
        let name = node.name.as_str();
        Ok(match &node.op {
            Op::Conv2d(c) => {
                let w = g.param(name, "weight")?;
                let b = g.param_opt(name, "bias").map(|t| t.data.as_slice());
                let len = ins[0].shape[0] * c.out_channels * out_plane(c, ins[0]);
                let mut y = Tensor {
                    shape: Vec::new(),
                    data: self.pool.take(len),
                };
                if self.pre && c.act != Activation::None {
                    let plain = crate::graph::Conv2d {
                        act: Activation::None,
                        ..c.clone()
                    };
                    cpu::conv2d_into(ins[0], w, b, &plain, &mut y);
                    self.hook.pre_activation(node, &y)?;
                    apply_act(c.act, &mut y);
                } else {
                    cpu::conv2d_into(ins[0], w, b, c, &mut y);
                    if self.pre {
                        self.hook.pre_activation(node, &y)?;
                    }
                }
                y
            }
            Op::Linear(l) => {
                let w = g.param(name, "weight")?;
                let b = g.param_opt(name, "bias").map(|t| t.data.as_slice());
                let plain = crate::graph::Linear {
                    act: Activation::None,
                    ..l.clone()
                };
                let mut y = cpu::linear(ins[0], w, b, if self.pre { &plain } else { l });
                if self.pre {
                    self.hook.pre_activation(node, &y)?;
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
            Op::Relu | Op::Relu6 | Op::Flatten => eval_in_place(node, ins[0].clone(), &[]),
            Op::Add => eval_in_place(node, ins[0].clone(), &ins[1..]),
            Op::MaxPool(p) => cpu::max_pool(ins[0], p),
            Op::AvgPool(p) => cpu::avg_pool(ins[0], p),
            Op::GlobalAvgPool => cpu::global_avg_pool(ins[0]),
            Op::Concat => cpu::concat(ins),
            Op::Softmax => cpu::softmax(ins[0]),
        })
    }
}

/// Output plane size `oh·ow` of a convolution (0 when the window does not fit: the kernel
/// reports that).
fn out_plane(c: &crate::graph::Conv2d, x: &Tensor) -> usize {
    c.out_hw(x.shape[2], x.shape[3]).map_or(0, |(h, w)| h * w)
}

/// Ops that rewrite their first input `x`; `rest` are the other inputs.
fn eval_in_place(node: &Node, mut x: Tensor, rest: &[&Tensor]) -> Tensor {
    match node.op {
        Op::Relu => cpu::relu(&mut x),
        Op::Relu6 => cpu::relu6(&mut x),
        Op::Add => rest.iter().for_each(|t| cpu::add_inplace(&mut x, t)),
        Op::Flatten => {
            let n = x.shape[0];
            let f = x.numel() / n.max(1);
            x.shape = vec![n, f];
        }
        _ => unreachable!("eval_in_place on {}", node.op.kind()),
    }
    x
}

fn apply_act(act: Activation, x: &mut Tensor) {
    match act {
        Activation::None => {}
        Activation::Relu => cpu::relu(x),
        Activation::Relu6 => cpu::relu6(x),
    }
}
