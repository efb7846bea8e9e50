//! Whole graphs on the device: [`GpuGraph`] is built once from a prepared [`Graph`]
//! (weights and biases uploaded once) and runs every node with the activations resident in
//! device buffers; only the final output is read back.
//!
//! - Values are freed into a pool (keyed by byte size) once their last reader has been
//!   recorded and reused by later nodes; commands of one chunk go into one encoder, so
//!   wgpu orders the reuse after the reads.
//! - The batch is split into chunks of images whose largest value fits the adapter's
//!   storage binding limit ([`buffers::batch_chunks`]). Chunk i's output is read back after
//!   chunk i+1 is uploaded, recorded and submitted, so the host prepares one chunk while the
//!   device runs the other; the pool's buffers serve every chunk (wgpu orders a later
//!   submission's writes after an earlier one's reads). Quantizer tables for repeated runs
//!   are uploaded once ([`GpuGraph::quantizers`]).
//! - Ops: conv/depthwise (fused ReLU/ReLU6), linear, add (pairwise, left to right), concat,
//!   max/avg/global-average pooling, flatten (a copy), product with a map or a channel gate
//!   (`gpu::mul`), channel shuffle (`gpu::shuffle`). Standalone ReLU/ReLU6 and unfolded
//!   BatchNorm run as a 1×1 depthwise conv (`y = act(x·k + b)`; ReLU: k = 1, b = 0, exact).
//!   The `Unary` functions run `gpu::unary` (f32, within a tolerance of the CPU's `exp`).
//!   Softmax has no kernel and is refused at build time.
//! - [`GpuGraph::forward_fake_quant`]: each [`ActQuant`] fake-quantizes its value right
//!   after the producing node (after the fused activation) or the graph input, with the
//!   exact arithmetic of `QParams::fake_quant` (the `fake_quant` kernel; per channel = axis 1).
//! - A [`DeviceHook`] sees values as they are produced (input, pre-activation of conv/linear
//!   outputs, node outputs), records its own reductions into the chunk's encoder, and reads
//!   them back once the chunk is submitted: device calibration and `compare` use it. A hook
//!   may ask for the calibration-precision kernels (`DeviceHook::precise`).

mod steps;

use std::collections::HashMap;
use std::ops::Range;

use steps::{c_hw, pointwise, BufferPool};

use crate::engine::cpu::fake_quant::validate;
use crate::engine::device::buffers;
use crate::engine::device::context::GpuContext;
use crate::engine::gpu::fake_quant::quant_table;
use crate::engine::gpu::lrn::LrnAttrs;
use crate::engine::gpu::pool::PoolKind;
use crate::engine::layout::ChannelLayout;
use crate::error::{Error, Result};
use crate::graph::{Activation, Conv2d, Graph, Linear, Op, Pool, Unary};
use crate::quant::plan::ActQuant;
use crate::tensor::Tensor;

/// Where a value seen by a [`DeviceHook`] comes from.
#[derive(Clone, Copy, Debug)]
pub enum Seen<'a> {
    /// The graph input (after its fake quantizer, if any).
    Input,
    /// A conv/linear output before its fused activation (only when wanted).
    PreActivation(&'a str),
    /// A node's output, after its activation (and its fake quantizer, if any); `layer` for
    /// conv/linear nodes.
    Output { node: &'a str, layer: bool },
}

/// Observer of device values during [`GpuGraph::run`].
pub trait DeviceHook {
    /// Whether [`Seen::PreActivation`] values are wanted (costs one extra pointwise pass per
    /// conv/linear with a fused activation).
    fn wants_pre_activation(&self) -> bool {
        false
    }
    /// Whether conv, linear and global average pooling run the calibration-precision
    /// kernels ([`crate::engine::gpu::conv2d_precise`], the twins of the CPU's) instead of the
    /// fast ones.
    fn precise(&self) -> bool {
        false
    }
    /// A value of the current chunk: `buf` holds `shape` (batch axis first, f32). Work is
    /// recorded into `enc`; nothing has run yet.
    fn observe(
        &mut self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        seen: Seen<'_>,
        buf: &wgpu::Buffer,
        shape: &[usize],
    ) -> Result<()>;
    /// The chunk covering `images` of the batch has been submitted.
    fn chunk_done(&mut self, ctx: &GpuContext, images: Range<usize>) -> Result<()>;
}

struct NoDeviceHook;
impl DeviceHook for NoDeviceHook {
    fn observe(
        &mut self,
        _: &GpuContext,
        _: &mut wgpu::CommandEncoder,
        _: Seen<'_>,
        _: &wgpu::Buffer,
        _: &[usize],
    ) -> Result<()> {
        Ok(())
    }
    fn chunk_done(&mut self, _: &GpuContext, _: Range<usize>) -> Result<()> {
        Ok(())
    }
}

enum Step {
    /// Blocks of output channels (first channel, count, weights, bias): one, or several where
    /// an ungrouped conv's weights exceed the storage binding limit (each block's outputs are
    /// copied into place).
    Conv {
        c: Conv2d,
        parts: Vec<(usize, usize, wgpu::Buffer, wgpu::Buffer)>,
        /// Per-channel bounds of an equalized ReLU6 (`Graph::act_max`).
        cap: Option<wgpu::Buffer>,
    },
    /// Blocks of output features (first feature, count, weights, bias): one, or several where the
    /// weights exceed the storage binding limit (VGG's first classifier layer: 411 MB).
    Linear {
        l: Linear,
        parts: Vec<(usize, usize, wgpu::Buffer, wgpu::Buffer)>,
    },
    /// 1×1 depthwise `act(x·k + b)` over `[C, rest]` (standalone ReLU/ReLU6/BatchNorm).
    Pointwise {
        c: Conv2d,
        w: wgpu::Buffer,
        b: wgpu::Buffer,
    },
    Pool(PoolKind, Pool),
    Lrn(LrnAttrs),
    Add,
    Concat,
    Flatten,
    /// Product with a same-shape map or a per-image channel gate.
    Mul,
    ChannelShuffle(usize),
    /// An element-wise function on f32 (`gpu::unary`).
    Unary(Unary),
}

/// Activation quantizer tables on the device, by value index, and whether per channel
/// ([`GpuGraph::quantizers`]).
pub struct Quantizers(HashMap<usize, (wgpu::Buffer, bool)>);

/// One node: its kernel step, input value indices and output value index.
struct NodeStep {
    name: String,
    step: Step,
    inputs: Vec<usize>,
    out: usize,
}

/// A prepared graph resident on one device (module docs).
pub struct GpuGraph<'a> {
    ctx: &'a GpuContext,
    input_shape: Vec<usize>,
    names: Vec<String>,
    /// Per-sample shape of each value (index 0: the graph input).
    shapes: Vec<Vec<usize>>,
    /// Readers of each value (+1 for the graph output).
    readers: Vec<usize>,
    steps: Vec<NodeStep>,
    output: usize,
    ones: wgpu::Buffer,
    zeros: wgpu::Buffer,
    item_bytes: u64,
    /// Whether the graph output is a softmax, applied on the host.
    softmax: bool,
}

/// Node `node`'s weights and bias (zeros when it has none) on the device, as blocks of
/// `rows` output rows (first row, count, weights, bias): one block, or with `split` as many
/// as keep each block's weights within the storage binding limit.
fn blocks(
    ctx: &GpuContext,
    g: &Graph,
    node: &str,
    rows: usize,
    split: bool,
) -> Result<Vec<(usize, usize, wgpu::Buffer, wgpu::Buffer)>> {
    let w = g.param(node, "weight")?;
    let b = g.param_opt(node, "bias");
    let per = w.data.len() / rows.max(1);
    let block = match split {
        true => (ctx.max_binding_bytes() as usize / (4 * per.max(1))).clamp(1, rows.max(1)),
        false => rows.max(1),
    };
    Ok((0..rows)
        .step_by(block)
        .map(|r0| {
            let r1 = (r0 + block).min(rows);
            let bias = match b {
                Some(t) => t.data[r0..r1].to_vec(),
                None => vec![0f32; r1 - r0],
            };
            (
                r0,
                r1 - r0,
                buffers::upload(ctx, &format!("{node}.weight"), &w.data[r0 * per..r1 * per]),
                buffers::upload(ctx, &format!("{node}.bias"), &bias),
            )
        })
        .collect())
}

fn unsupported(node: &str, op: &Op) -> Error {
    Error::Gpu(format!(
        "node {node}: {} has no GPU kernel; rerun with --backend cpu",
        op.kind()
    ))
}

impl<'a> GpuGraph<'a> {
    /// Validates `g` (prepared: BatchNorm folded, activations fused) and uploads its weights.
    pub fn new(ctx: &'a GpuContext, g: &Graph) -> Result<Self> {
        let shapes_of = g.validate()?;
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut names = vec![Graph::INPUT.to_string()];
        let mut shapes = vec![g.input_shape.clone()];
        index.insert(Graph::INPUT, 0);
        for n in &g.nodes {
            index.insert(n.name.as_str(), names.len());
            names.push(n.name.clone());
            shapes.push(
                shapes_of
                    .get(&n.name)
                    .cloned()
                    .ok_or_else(|| Error::Graph(format!("no shape inferred for {}", n.name)))?,
            );
        }
        let mut readers = vec![0usize; names.len()];
        let mut steps = Vec::with_capacity(g.nodes.len());
        let mut widest = 1usize;
        let mut softmax = false;
        for n in &g.nodes {
            let inputs: Vec<usize> =
                n.inputs
                    .iter()
                    .map(|i| {
                        index.get(i.as_str()).copied().ok_or_else(|| {
                            Error::Graph(format!("node {} reads unknown {i}", n.name))
                        })
                    })
                    .collect::<Result<_>>()?;
            inputs.iter().for_each(|&i| readers[i] += 1);
            let out = index[n.name.as_str()];
            let (c, _) = c_hw(&shapes[inputs.first().copied().unwrap_or(0)]);
            widest = widest.max(c).max(c_hw(&shapes[out]).0);
            let spatial = matches!(
                n.op,
                Op::Conv2d(_) | Op::MaxPool(_) | Op::AvgPool(_) | Op::GlobalAvgPool
            );
            if spatial && shapes[inputs[0]].len() != 3 {
                return Err(Error::Graph(format!(
                    "node {}: needs a [C, H, W] input, got {:?}",
                    n.name, shapes[inputs[0]]
                )));
            }
            let step = match &n.op {
                Op::Conv2d(cv) => Step::Conv {
                    c: cv.clone(),
                    // Grouped convs keep one block (their weights are small).
                    parts: blocks(ctx, g, &n.name, cv.out_channels, cv.groups == 1)?,
                    cap: g
                        .act_max(&n.name)
                        .map(|m| buffers::upload(ctx, "act_max", m)),
                },
                Op::Linear(l) => Step::Linear {
                    l: l.clone(),
                    parts: blocks(ctx, g, &n.name, l.out_features, true)?,
                },
                Op::Relu | Op::Relu6 => {
                    let act = if matches!(n.op, Op::Relu) {
                        Activation::Relu
                    } else {
                        Activation::Relu6
                    };
                    Step::Pointwise {
                        c: pointwise(c, act),
                        w: buffers::upload(ctx, "ones", &vec![1f32; c]),
                        b: buffers::upload(ctx, "zeros", &vec![0f32; c]),
                    }
                }
                Op::BatchNorm { eps, act } => {
                    let p = |k| g.param(&n.name, k).map(|t| t.data.as_slice());
                    let (ga, be, mu, var) = (
                        p("weight")?,
                        p("bias")?,
                        p("running_mean")?,
                        p("running_var")?,
                    );
                    let k: Vec<f64> = ga
                        .iter()
                        .zip(var)
                        .map(|(&a, &v)| a as f64 / (v as f64 + *eps as f64).sqrt())
                        .collect();
                    let b: Vec<f32> = (0..c)
                        .map(|i| (be[i] as f64 - mu[i] as f64 * k[i]) as f32)
                        .collect();
                    let k: Vec<f32> = k.iter().map(|&v| v as f32).collect();
                    Step::Pointwise {
                        c: pointwise(c, *act),
                        w: buffers::upload(ctx, "bn scale", &k),
                        b: buffers::upload(ctx, "bn shift", &b),
                    }
                }
                Op::MaxPool(p) => Step::Pool(PoolKind::Max, p.clone()),
                Op::AvgPool(p) => Step::Pool(PoolKind::Avg, p.clone()),
                Op::GlobalAvgPool => Step::Pool(
                    PoolKind::GlobalAvg,
                    Pool {
                        kernel: [1, 1],
                        stride: [1, 1],
                        padding: [0; 4],
                        count_include_pad: false,
                    },
                ),
                Op::Add => Step::Add,
                Op::Concat => Step::Concat,
                Op::Flatten => Step::Flatten,
                Op::Mul => Step::Mul,
                Op::ChannelShuffle { groups } => Step::ChannelShuffle(*groups),
                // The output softmax runs on the host after the read-back (as on the CPU).
                Op::Softmax if n.name == g.output => {
                    softmax = true;
                    Step::Flatten
                }
                Op::Unary(u) => Step::Unary(*u),
                Op::Softmax => return Err(unsupported(&n.name, &n.op)),
                Op::Lrn {
                    size,
                    alpha,
                    beta,
                    bias,
                } => Step::Lrn(LrnAttrs {
                    size: *size,
                    alpha: *alpha,
                    beta: *beta,
                    bias: *bias,
                }),
            };
            steps.push(NodeStep {
                name: n.name.clone(),
                step,
                inputs,
                out,
            });
        }
        let output = *index
            .get(g.output.as_str())
            .ok_or_else(|| Error::Graph(format!("output {} is not a node", g.output)))?;
        readers[output] += 1;
        let item = shapes.iter().map(|s| s.iter().product::<usize>()).max();
        Ok(GpuGraph {
            ctx,
            input_shape: g.input_shape.clone(),
            names,
            shapes,
            readers,
            steps,
            output,
            ones: buffers::upload(ctx, "ones", &vec![1f32; widest]),
            zeros: buffers::upload(ctx, "zeros", &vec![0f32; widest]),
            item_bytes: (item.unwrap_or(1) * 4) as u64,
            softmax,
        })
    }

    pub fn context(&self) -> &GpuContext {
        self.ctx
    }

    /// Runs the graph on an NCHW batch and returns the output value.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, &[], &mut NoDeviceHook)
    }

    /// Runs the graph with `acts` fake-quantizing their values on the device (module docs).
    pub fn forward_fake_quant(&self, x: &Tensor, acts: &[ActQuant]) -> Result<Tensor> {
        self.run(x, acts, &mut NoDeviceHook)
    }

    /// [`GpuGraph::forward_fake_quant`] with quantizer tables already on the device.
    pub fn forward_with(&self, x: &Tensor, quantizers: &Quantizers) -> Result<Tensor> {
        self.run_with(x, quantizers, &mut NoDeviceHook)
    }

    /// The quantizer tables of `acts` on the device (upload once, run many batches with
    /// [`GpuGraph::run_with`]).
    pub fn quantizers(&self, acts: &[ActQuant]) -> Result<Quantizers> {
        self.tables(acts).map(Quantizers)
    }

    /// The quantizer tables of `acts`, by value index.
    fn tables(&self, acts: &[ActQuant]) -> Result<HashMap<usize, (wgpu::Buffer, bool)>> {
        let mut t = HashMap::new();
        for a in acts {
            let v = self
                .names
                .iter()
                .position(|n| *n == a.value)
                .ok_or_else(|| {
                    Error::Quant(format!(
                        "activation quantizer for unknown value {}",
                        a.value
                    ))
                })?;
            let (c, _) = c_hw(&self.shapes[v]);
            let want = if a.per_channel { c } else { 1 };
            let layout = ChannelLayout {
                outer: 1,
                channels: want,
                inner: 1,
            };
            validate(&layout, &a.params).map_err(|e| Error::Quant(format!("{}: {e}", a.value)))?;
            let label = format!("{} quantizers", a.value);
            t.insert(
                v,
                (
                    buffers::upload(self.ctx, &label, &quant_table(&a.params)),
                    a.per_channel,
                ),
            );
        }
        Ok(t)
    }

    /// Runs the graph on `x` (NCHW), fake-quantizing with `acts`, showing values to `hook`.
    pub fn run(&self, x: &Tensor, acts: &[ActQuant], hook: &mut dyn DeviceHook) -> Result<Tensor> {
        self.run_with(x, &self.quantizers(acts)?, hook)
    }

    /// [`GpuGraph::run`] with quantizer tables already on the device.
    pub fn run_with(
        &self,
        x: &Tensor,
        quantizers: &Quantizers,
        hook: &mut dyn DeviceHook,
    ) -> Result<Tensor> {
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
        let ctx = self.ctx;
        let n = x.shape[0];
        let tables = &quantizers.0;
        let out_item: usize = self.shapes[self.output].iter().product();
        let in_item: usize = self.input_shape.iter().product();
        let mut out_shape = vec![n];
        out_shape.extend_from_slice(&self.shapes[self.output]);
        let mut out = Tensor::zeros(&out_shape);
        let mut pool = BufferPool::default();
        let pre = hook.wants_pre_activation();
        // Chunk i's output is read after chunk i+1 is submitted (`buffers::Pending`).
        let mut pending: Option<(Range<usize>, buffers::Pending<f32>)> = None;
        let mut finish = |(r, p): (Range<usize>, buffers::Pending<f32>)| -> Result<()> {
            let y = p.wait(ctx)?;
            out.data[r.start * out_item..r.end * out_item].copy_from_slice(&y);
            Ok(())
        };
        for r in buffers::batch_chunks(ctx, n, self.item_bytes)? {
            let m = r.len();
            let shape_of = |v: usize| -> Vec<usize> { [&[m][..], &self.shapes[v]].concat() };
            let mut enc = ctx.encoder("graph");
            let mut live: Vec<Option<wgpu::Buffer>> = (0..self.names.len()).map(|_| None).collect();
            let mut remaining = self.readers.clone();
            let xb = buffers::upload(ctx, "input", &x.data[r.start * in_item..r.end * in_item]);
            let xb = self.quantize(&mut enc, &mut pool, tables, 0, xb, m)?;
            hook.observe(ctx, &mut enc, Seen::Input, &xb, &shape_of(0))?;
            live[0] = Some(xb);
            for s in &self.steps {
                let ins: Vec<&wgpu::Buffer> = s
                    .inputs
                    .iter()
                    .map(|&i| {
                        live[i].as_ref().ok_or_else(|| {
                            Error::Engine(format!("value {} is not available", self.names[i]))
                        })
                    })
                    .collect::<Result<_>>()?;
                let y = self.encode(&mut enc, &mut pool, s, &ins, m, pre, hook)?;
                let y = self.quantize(&mut enc, &mut pool, tables, s.out, y, m)?;
                let layer = matches!(s.step, Step::Conv { .. } | Step::Linear { .. });
                let seen = Seen::Output {
                    node: &s.name,
                    layer,
                };
                hook.observe(ctx, &mut enc, seen, &y, &shape_of(s.out))?;
                for &i in &s.inputs {
                    remaining[i] -= 1;
                    if remaining[i] == 0 {
                        if let Some(b) = live[i].take() {
                            pool.give(b);
                        }
                    }
                }
                live[s.out] = Some(y);
            }
            let yb = live[self.output]
                .take()
                .ok_or_else(|| Error::Engine("graph output was not produced".into()))?;
            let staged = buffers::stage_read::<f32>(ctx, &mut enc, &yb, m * out_item)?;
            // Later chunks reuse the pool's buffers: wgpu orders their writes after this
            // chunk's reads.
            pool.give(yb);
            let p = staged.submit(ctx, enc)?;
            hook.chunk_done(ctx, r.clone())?;
            if let Some(done) = pending.replace((r, p)) {
                finish(done)?;
            }
        }
        if let Some(done) = pending {
            finish(done)?;
        }
        Ok(if self.softmax {
            crate::engine::cpu::softmax(&out)
        } else {
            out
        })
    }
}
