//! Graph execution on the CPU engine, with an optional [`Hook`] that sees (and may rewrite)
//! values as they are produced: calibration collects statistics through it, the `paper`
//! fake quantization quantizes and dequantizes through it ([`FakeQuantHook`]). Intermediate
//! values are freed as soon as their last reader has run, so memory is bounded by the widest
//! cut of the graph, and their buffers go to a [`BufferPool`] that later outputs reuse (fresh
//! multi-MiB buffers cost a page fault per 4 KiB), and residual adds overwrite their dying
//! first input.
//!
//! [`run`] executes node by node on the whole batch, so a hook sees whole-batch tensors; a
//! hook whose [`Hook::precise`] is true (calibration) gets conv, linear and global average
//! pooling from the precise kernels ([`cpu::precise`]) instead of the fast ones.
//! [`forward`] (no hook) runs the leading nodes that touch large activations image by image
//! (all of them for one image before the next, so the image's activations stay in cache;
//! images run in parallel as rayon tasks, which removes a fork-join per small kernel call),
//! writes the values live at that point into whole-batch tensors, and runs the remaining
//! small-map nodes on the whole batch (wide GEMMs that pack each weight matrix once).
//! Every kernel computes an image's outputs with the same arithmetic whatever the batch
//! around it and whatever the thread count, so both paths give bit-identical results for any
//! batch size (`tests/exec_batch.rs`).

use std::collections::HashMap;

use rayon::prelude::*;

use crate::engine::cpu;
use crate::engine::exec::buffer_pool::BufferPool;
use crate::error::{Error, Result};
use crate::graph::{Activation, Graph, Node, Op};
use crate::quant::plan::ActQuant;
use crate::tensor::Tensor;

/// Observer / rewriter of values during execution.
pub trait Hook {
    /// Whether [`Hook::pre_activation`] is wanted (calibration measures pre-activation tensors);
    /// costs one extra pass over fused conv/linear outputs.
    fn wants_pre_activation(&self) -> bool {
        false
    }
    /// Whether conv, linear and global average pooling run the calibration-precision
    /// kernels ([`cpu::precise`]: nearly correctly rounded f32 of the exact sums, the
    /// values the GPU's precise kernels give too) instead of the fast ones.
    fn precise(&self) -> bool {
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

/// Per-image value size (f32 elements) from which a node's output or input counts as
/// large: [`forward`] runs every node up to the last one that touches a large value image by
/// image. Later maps are small enough that the whole batch stays in cache and batching
/// amortises the weight packing of their GEMMs.
const LARGE_NUMEL: usize = 28 * 28 * 144;

/// Whether no value of the graph reaches [`LARGE_NUMEL`] per image (then [`forward`] runs
/// whole batches node by node; an invalid graph counts as large).
pub fn small_maps(g: &Graph) -> bool {
    g.validate().is_ok_and(|shapes| {
        shapes
            .values()
            .all(|s| s.iter().product::<usize>() < LARGE_NUMEL)
            && g.input_shape.iter().product::<usize>() < LARGE_NUMEL
    })
}

/// Runs the graph on an NCHW batch and returns the output value.
pub fn run(g: &Graph, mut input: Tensor, hook: &mut dyn Hook) -> Result<Tensor> {
    check_input(g, &input)?;
    hook.input(&mut input)?;
    let mut remaining = readers(g);
    let mut ex = Executor::new(g, hook);
    let mut values = HashMap::new();
    values.insert(Graph::INPUT, input);
    ex.run_nodes(&g.nodes, &mut values, &mut remaining)?;
    take_output(g, &mut values)
}

/// Runs the graph without a hook. Batches of several images run the leading large-map nodes
/// image by image, one image per rayon task (see the module docs).
pub fn forward(g: &Graph, input: Tensor) -> Result<Tensor> {
    check_input(g, &input)?;
    let n = input.shape[0];
    let readers = readers(g);
    let split = if n > 1 {
        Split::plan(g, &readers)?
    } else {
        None
    };
    let mut values: HashMap<&str, Tensor> = HashMap::new();
    let mut remaining = readers.clone();
    let mut nodes = &g.nodes[..];
    if let Some(split) = split {
        values = split.run_prefix(g, &readers, &input)?;
        remaining = split.remaining;
        nodes = &g.nodes[split.cut..];
    } else {
        values.insert(Graph::INPUT, input);
    }
    let mut hook = NoHook;
    Executor::new(g, &mut hook).run_nodes(nodes, &mut values, &mut remaining)?;
    take_output(g, &mut values)
}

/// How [`forward`] splits a graph: nodes `..cut` run image by image, and `live` (with their
/// per-image shapes) are the values they hand to the rest.
struct Split<'g> {
    cut: usize,
    live: Vec<(&'g str, Vec<usize>)>,
    /// Reader counts left after the prefix.
    remaining: HashMap<&'g str, usize>,
}

impl<'g> Split<'g> {
    /// `None` when no node touches a large value.
    fn plan(g: &'g Graph, readers: &HashMap<&'g str, usize>) -> Result<Option<Self>> {
        let shapes = g.validate()?;
        let large =
            |name: &str| shapes.get(name).map_or(0, |s| s.iter().product::<usize>()) >= LARGE_NUMEL;
        let Some(last) = g
            .nodes
            .iter()
            .rposition(|n| large(&n.name) || n.inputs.iter().any(|i| large(i)))
        else {
            return Ok(None);
        };
        let cut = last + 1;
        let mut remaining = readers.clone();
        for i in g.nodes[..cut].iter().flat_map(|n| &n.inputs) {
            if let Some(r) = remaining.get_mut(i.as_str()) {
                *r -= 1;
            }
        }
        let live = std::iter::once(Graph::INPUT)
            .chain(g.nodes[..cut].iter().map(|n| n.name.as_str()))
            .filter(|k| remaining.get(k).is_some_and(|&r| r > 0))
            .map(|k| {
                let shape = shapes
                    .get(k)
                    .cloned()
                    .unwrap_or_else(|| g.input_shape.clone());
                (k, shape)
            })
            .collect();
        Ok(Some(Split {
            cut,
            live,
            remaining,
        }))
    }

    /// Runs the prefix on every image of `input` (in parallel, each image on one rayon task
    /// with its own buffer pool) and returns the live values joined along the batch axis.
    fn run_prefix(
        &self,
        g: &'g Graph,
        readers: &HashMap<&'g str, usize>,
        input: &Tensor,
    ) -> Result<HashMap<&'g str, Tensor>> {
        let n = input.shape[0];
        let mut joined: Vec<Tensor> = (self.live.iter())
            .map(|(_, s)| Tensor::zeros(&[&[n][..], s].concat()))
            .collect();
        // slots[i][k]: image i's part of live value k.
        let mut slots: Vec<Vec<&mut [f32]>> = (0..n).map(|_| Vec::new()).collect();
        for t in &mut joined {
            let per = t.numel() / n;
            let mut rest = &mut t.data[..];
            for slot in &mut slots {
                let (part, tail) = std::mem::take(&mut rest).split_at_mut(per);
                slot.push(part);
                rest = tail;
            }
        }
        slots
            .into_par_iter()
            .enumerate()
            .with_max_len(1)
            .try_for_each_init(BufferPool::default, |pool, (i, mut outs)| {
                let mut hook = NoHook;
                let mut ex = Executor::new(g, &mut hook);
                ex.pool = std::mem::take(pool);
                let x = input.item(i);
                let mut data = ex.pool.take(x.len());
                data.clear();
                data.extend_from_slice(x);
                let shape = [&[1][..], &input.shape[1..]].concat();
                let mut vals = HashMap::new();
                vals.insert(Graph::INPUT, Tensor { shape, data });
                let mut left = readers.clone();
                ex.run_nodes(&g.nodes[..self.cut], &mut vals, &mut left)?;
                for ((k, _), dst) in self.live.iter().zip(&mut outs) {
                    let t = vals
                        .remove(k)
                        .ok_or_else(|| Error::Engine(format!("value {k} is not available")))?;
                    dst.copy_from_slice(&t.data);
                    ex.pool.put(t.data);
                }
                for (_, t) in vals.drain() {
                    ex.pool.put(t.data);
                }
                *pool = std::mem::take(&mut ex.pool);
                Ok::<_, Error>(())
            })?;
        Ok(self.live.iter().map(|(k, _)| *k).zip(joined).collect())
    }
}

/// Number of reads of each value (the graph output counts as one).
fn readers(g: &Graph) -> HashMap<&str, usize> {
    let mut readers: HashMap<&str, usize> = HashMap::new();
    for n in &g.nodes {
        for i in &n.inputs {
            *readers.entry(i.as_str()).or_default() += 1;
        }
    }
    *readers.entry(g.output.as_str()).or_default() += 1;
    readers
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

/// Per-call execution state.
struct Executor<'g, 'h> {
    g: &'g Graph,
    hook: &'h mut dyn Hook,
    pre: bool,
    precise: bool,
    pool: BufferPool,
}

impl<'g, 'h> Executor<'g, 'h> {
    fn new(g: &'g Graph, hook: &'h mut dyn Hook) -> Self {
        let pre = hook.wants_pre_activation();
        let precise = hook.precise();
        Executor {
            g,
            hook,
            pre,
            precise,
            pool: BufferPool::default(),
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
            let in_place = matches!(
                node.op,
                Op::Add | Op::Relu | Op::Relu6 | Op::Flatten | Op::Unary(_)
            ) && first.is_some_and(|f| {
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
            Op::Conv2d(c) if self.precise => {
                let w = g.param(name, "weight")?;
                let b = g.param_opt(name, "bias").map(|t| t.data.as_slice());
                let len = ins[0].shape[0] * c.out_channels * out_plane(c, ins[0]);
                let mut y = Tensor {
                    shape: Vec::new(),
                    data: self.pool.take(len),
                };
                cpu::precise::conv2d_into(ins[0], w, b, c, &mut y)?;
                cap(g, name, &mut y);
                if self.pre {
                    self.hook.pre_activation(node, &y)?;
                }
                apply_act(c.act, &mut y);
                y
            }
            Op::Linear(l) if self.precise => {
                let w = g.param(name, "weight")?;
                let b = g.param_opt(name, "bias").map(|t| t.data.as_slice());
                let mut y = cpu::precise::linear(ins[0], w, b, l)?;
                if self.pre {
                    self.hook.pre_activation(node, &y)?;
                }
                apply_act(l.act, &mut y);
                y
            }
            Op::GlobalAvgPool if self.precise => cpu::precise::global_avg_pool(ins[0])?,
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
                    cap(g, name, &mut y);
                    self.hook.pre_activation(node, &y)?;
                    apply_act(c.act, &mut y);
                } else {
                    cpu::conv2d_into(ins[0], w, b, c, &mut y);
                    cap(g, name, &mut y);
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
            Op::BatchNorm { eps, act } => {
                let p = |k| g.param(name, k).map(|t| t.data.as_slice());
                let mut y = cpu::batch_norm(
                    ins[0],
                    p("weight")?,
                    p("bias")?,
                    p("running_mean")?,
                    p("running_var")?,
                    *eps,
                );
                apply_act(*act, &mut y);
                y
            }
            Op::Relu | Op::Relu6 | Op::Flatten | Op::Unary(_) => {
                eval_in_place(node, ins[0].clone(), &[])
            }
            Op::Add => eval_in_place(node, ins[0].clone(), &ins[1..]),
            Op::MaxPool(p) => cpu::max_pool(ins[0], p),
            Op::AvgPool(p) => cpu::avg_pool(ins[0], p),
            Op::GlobalAvgPool => cpu::global_avg_pool(ins[0]),
            Op::Concat => cpu::concat(ins),
            Op::Softmax => cpu::softmax(ins[0]),
            Op::Mul => cpu::mul(ins[0], ins[1]),
            Op::ChannelShuffle { groups } => cpu::channel_shuffle(ins[0], *groups),
            Op::Lrn {
                size,
                alpha,
                beta,
                bias,
            } => cpu::lrn::lrn(ins[0], *size, *alpha, *beta, *bias),
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
        Op::Unary(u) => x.data.par_iter_mut().for_each(|v| *v = u.apply(*v)),
        Op::Flatten => {
            let n = x.shape[0];
            let f = x.numel() / n.max(1);
            x.shape = vec![n, f];
        }
        _ => unreachable!("eval_in_place on {}", node.op.kind()),
    }
    x
}

/// The per-channel bounds of an equalized ReLU6 ([`Graph::act_max`]). Applied before the
/// fused ReLU when a hook watches the pre-activation value, so calibration measures
/// min(x, bound) — the values whose ReLU the conv's output quantizer sees — and the point's
/// activation is the ReLU alone.
fn cap(g: &Graph, node: &str, y: &mut Tensor) {
    if let Some(m) = g.act_max(node) {
        cpu::cap_channels(y, m);
    }
}

fn apply_act(act: Activation, x: &mut Tensor) {
    match act {
        Activation::None => {}
        Activation::Relu => cpu::relu(x),
        Activation::Relu6 => cpu::relu6(x),
    }
}

/// `paper` fake quantization on the CPU: fake-quantizes (quantize, then dequantize) the
/// input and every node output that has an activation quantizer, keyed by value name.
pub struct FakeQuantHook<'a> {
    acts: &'a HashMap<&'a str, &'a ActQuant>,
}

impl<'a> FakeQuantHook<'a> {
    pub fn new(acts: &'a HashMap<&'a str, &'a ActQuant>) -> Self {
        FakeQuantHook { acts }
    }
}

/// Fake-quantizes `x` channel by channel (per-tensor quantizers: one channel), one rayon
/// task per image (per channel would be a task per 49 values on a 7×7 map).
fn fake_quant(a: &ActQuant, x: &mut Tensor) {
    let c = if a.per_channel { a.params.len() } else { 1 };
    let n = x.shape[0].max(1);
    let per_image = (x.numel() / n).max(1);
    let plane = (per_image / c).max(1);
    x.data.par_chunks_mut(per_image).for_each(|image| {
        for (i, chunk) in image.chunks_mut(plane).enumerate() {
            a.params[i % c].fake_quant_slice(chunk);
        }
    });
}

impl Hook for FakeQuantHook<'_> {
    fn input(&mut self, x: &mut Tensor) -> Result<()> {
        if let Some(a) = self.acts.get(Graph::INPUT) {
            fake_quant(a, x);
        }
        Ok(())
    }
    fn output(&mut self, node: &Node, x: &mut Tensor) -> Result<()> {
        if let Some(a) = self.acts.get(node.name.as_str()) {
            fake_quant(a, x);
        }
        Ok(())
    }
}
