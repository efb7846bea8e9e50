//! [`IntModel`] under the exact simulation on the GPU (`Exec::Exact`, kernels of
//! [`conv_exact`](super::conv_exact)): every value of a batch stays on the device as an f32
//! NCHW tensor of centred codes; one command buffer per chunk of images runs the whole
//! graph; only the logits come back. Same logits as `IntModel::forward(x, Exec::Exact)` and
//! `Exec::Int`, bit for bit. Code tables (standalone BatchNorm, `Unary`) are the host's
//! `Lut` read from a buffer (`gpu::lut`, `lut_exact`).
//!
//! The batch is split into chunks whose largest value (f32, 4× the integer path's codes)
//! fits the storage binding limit; freed values and accumulators are reused through a
//! [`BufferPool`] within a chunk's encoder; chunk i's logits are read after chunk i+1 is
//! submitted.

use std::collections::HashMap;

use crate::engine::cpu::int::{conv_out_hw, QTensor};
use crate::engine::device::buffers::{self, BufferPool};
use crate::engine::device::context::GpuContext;
use crate::engine::exec::int_model::{pool_out_hw, IntLayer, IntModel, IntOutput, StepKind};
use crate::engine::gpu::conv_exact::{
    acc_encode, act_exact_encode, add_exact_encode, concat_exact_encode, gap_exact_encode,
    pool_exact_encode, requant_encode, upload_tensor, GpuExactLayer,
};
use crate::engine::gpu::lrn::lrn_exact_encode;
use crate::engine::gpu::lut::{lut_exact_encode, upload_lut};
use crate::engine::gpu::mul::mul_exact_encode;
use crate::engine::gpu::shuffle::shuffle_encode;
use crate::error::{Error, Result};
use crate::graph::{Activation, Conv2d, Graph};
use crate::quant::QParams;
use crate::tensor::Tensor;

/// Centred f32 values of codes.
fn centred(q: &QTensor) -> Vec<f32> {
    let z = q.params.zero_point;
    q.codes.iter().map(|&c| (c as i32 - z) as f32).collect()
}

/// The quantizer of each step's first input.
fn input_params(model: &IntModel) -> Result<Vec<QParams>> {
    let mut params: HashMap<&str, QParams> = HashMap::from([(Graph::INPUT, model.input)]);
    let mut out = Vec::with_capacity(model.steps.len());
    for s in &model.steps {
        let first = s
            .inputs
            .first()
            .and_then(|i| params.get(i.as_str()).copied())
            .ok_or_else(|| Error::Engine(format!("step {}: input is not quantized", s.name)))?;
        out.push(first);
        let produced = match s.kind {
            StepKind::Flatten | StepKind::Shuffle(_) => Some(first),
            _ => s.out,
        };
        if let Some(p) = produced {
            params.insert(s.name.as_str(), p);
        }
    }
    Ok(out)
}

/// Uploads every conv/linear step's plan codes for the simulation.
pub fn upload(ctx: &GpuContext, model: &IntModel) -> Result<Vec<Option<ExactStep>>> {
    let ins = input_params(model)?;
    model
        .steps
        .iter()
        .zip(&ins)
        .map(|(s, x)| match &s.kind {
            StepKind::Layer(l) => upload_layer(ctx, l, x).map(Some),
            _ => Ok(None),
        })
        .collect()
}

type Dims = (usize, usize, usize);

/// Per-image (C, H, W) of every step's output for an input of `dims`.
pub(super) fn step_dims(model: &IntModel, dims: Dims) -> Result<Vec<Dims>> {
    let mut by_name: HashMap<&str, Dims> = HashMap::from([(Graph::INPUT, dims)]);
    let mut out = Vec::with_capacity(model.steps.len());
    for s in &model.steps {
        let (c, h, w) = s
            .inputs
            .first()
            .and_then(|i| by_name.get(i.as_str()).copied())
            .ok_or_else(|| Error::Engine(format!("step {}: input is not available", s.name)))?;
        let d = match &s.kind {
            StepKind::Layer(l) => {
                let conv = l.as_conv();
                let (oh, ow) = conv_out_hw(&conv, h, w)?;
                (conv.out_channels, oh, ow)
            }
            StepKind::GlobalAvgPool => (c, 1, 1),
            StepKind::Flatten => (c * h * w, 1, 1),
            StepKind::MaxPool(p) | StepKind::AvgPool(p) => {
                let (oh, ow) = pool_out_hw(p, h, w, &s.name)?;
                (c, oh, ow)
            }
            StepKind::Concat => {
                let mut co = 0;
                for i in &s.inputs {
                    let d = by_name.get(i.as_str()).copied().ok_or_else(|| {
                        Error::Engine(format!("step {}: input is not available", s.name))
                    })?;
                    if (d.1, d.2) != (h, w) {
                        return Err(Error::Engine(format!(
                            "step {}: concat inputs differ in size",
                            s.name
                        )));
                    }
                    co += d.0;
                }
                (co, h, w)
            }
            _ => (c, h, w),
        };
        by_name.insert(s.name.as_str(), d);
        out.push(d);
    }
    Ok(out)
}

struct Value {
    buf: wgpu::Buffer,
    params: QParams,
    dims: Dims,
}

/// The host-built tables of `Lut` (code tables) and `Lrn` (factor table) steps on the
/// device, by step: uploaded once per model, read by both GPU executors.
pub fn upload_luts(ctx: &GpuContext, model: &IntModel) -> Vec<Option<wgpu::Buffer>> {
    model
        .steps
        .iter()
        .map(|s| match &s.kind {
            StepKind::Lut(t) => Some(upload_lut(ctx, &t.tables)),
            StepKind::Lrn { table, .. } => Some(buffers::upload(ctx, "lrn table", table)),
            _ => None,
        })
        .collect()
}

/// Runs `model` on an f32 NCHW batch under the exact simulation; returns the logits. Chunk
/// i's logits are read after chunk i+1 is submitted (`buffers::Pending`).
pub fn forward(
    ctx: &GpuContext,
    model: &IntModel,
    layers: &[Option<ExactStep>],
    luts: &[Option<wgpu::Buffer>],
    x: &Tensor,
) -> Result<Tensor> {
    let (n, c, h, w) = match x.shape[..] {
        [n, c, h, w] => (n, c, h, w),
        _ => return Err(Error::Engine(format!("exact forward: input {:?}", x.shape))),
    };
    if n == 0 {
        return Err(Error::Engine("exact forward: empty batch".into()));
    }
    let dims = step_dims(model, (c, h, w))?;
    let item = dims
        .iter()
        .chain([&(c, h, w)])
        .map(|&(c, h, w)| (c * h * w * 4) as u64)
        .max()
        .unwrap_or(4);
    let per_in = c * h * w;
    let mut logits: Vec<f32> = Vec::new();
    let mut shape = Vec::new();
    let mut pending: Option<buffers::Pending<f32>> = None;
    for r in buffers::batch_chunks(ctx, n, item)? {
        let xr = Tensor::from_vec(
            &[r.len(), c, h, w],
            x.data[r.start * per_in..r.end * per_in].to_vec(),
        )?;
        let q = model.quantize_input(&xr)?;
        let input = Value {
            buf: buffers::upload(ctx, "exact input", &centred(&q)),
            params: q.params,
            dims: (c, h, w),
        };
        let (enc, staged, s) = run_chunk(ctx, model, layers, luts, input, r.len())?;
        let p = staged.submit(ctx, enc)?;
        if let Some(done) = pending.replace(p) {
            logits.extend_from_slice(&done.wait(ctx)?);
        }
        shape = s;
    }
    if let Some(done) = pending {
        logits.extend_from_slice(&done.wait(ctx)?);
    }
    shape[0] = n;
    Tensor::from_vec(&shape, logits)
}

/// Records the whole graph on `m` images: the encoder, the logits' staged copy and their
/// shape.
fn run_chunk(
    ctx: &GpuContext,
    model: &IntModel,
    layers: &[Option<ExactStep>],
    luts: &[Option<wgpu::Buffer>],
    input: Value,
    m: usize,
) -> Result<(wgpu::CommandEncoder, buffers::Staged<f32>, Vec<usize>)> {
    let mut values: HashMap<&str, Value> = HashMap::from([(Graph::INPUT, input)]);
    let mut remaining = model.reader_counts();
    let mut pool = BufferPool::default();
    let mut enc = ctx.encoder("exact model");
    for ((s, gl), lut) in model.steps.iter().zip(layers).zip(luts) {
        let fail = |why: &str| Error::Gpu(format!("exact node {}: {why}", s.name));
        let get = |i: &String| {
            values
                .get(i.as_str())
                .ok_or_else(|| fail("input not available"))
        };
        let a = get(&s.inputs[0])?;
        let (c, h, w) = a.dims;
        let out = match &s.kind {
            StepKind::Layer(l) => {
                let st = gl.as_ref().ok_or_else(|| fail("weights not uploaded"))?;
                let (y, (co, oh, ow)) =
                    encode_layer(ctx, &mut enc, Some(&mut pool), st, &a.buf, m, (h, w))?;
                let Some(oq) = st.parts[0].1.out else {
                    let shape = match l.conv {
                        Some(_) => vec![m, co, oh, ow],
                        None => vec![m, co],
                    };
                    let staged = buffers::stage_read(ctx, &mut enc, &y, m * co * oh * ow)?;
                    return Ok((enc, staged, shape));
                };
                Value {
                    buf: y,
                    params: oq,
                    dims: (co, oh, ow),
                }
            }
            StepKind::Add => {
                if s.inputs.len() != 2 {
                    return Err(fail("the GPU adds exactly two tensors"));
                }
                let b = get(&s.inputs[1])?;
                let oq = s.out.ok_or_else(|| fail("no output quantizer"))?;
                let len = m * c * h * w;
                let y = pool.take(ctx, len);
                add_exact_encode(
                    ctx,
                    &mut enc,
                    (&a.buf, a.params),
                    (&b.buf, b.params),
                    &y,
                    len,
                    oq,
                )?;
                Value {
                    buf: y,
                    params: oq,
                    dims: a.dims,
                }
            }
            StepKind::GlobalAvgPool => {
                let y = pool.take(ctx, m * c);
                gap_exact_encode(ctx, &mut enc, (&a.buf, a.params), &y, (m, c, h, w), s.out)?;
                let Some(oq) = s.out else {
                    let staged = buffers::stage_read(ctx, &mut enc, &y, m * c)?;
                    return Ok((enc, staged, vec![m, c]));
                };
                Value {
                    buf: y,
                    params: oq,
                    dims: (c, 1, 1),
                }
            }
            StepKind::MaxPool(win) | StepKind::AvgPool(win) => {
                let oq = s.out.ok_or_else(|| fail("no output quantizer"))?;
                let (oh, ow) = pool_out_hw(win, h, w, &s.name)?;
                let y = pool.take(ctx, m * c * oh * ow);
                let max = matches!(s.kind, StepKind::MaxPool(_));
                pool_exact_encode(
                    ctx,
                    &mut enc,
                    (&a.buf, a.params),
                    &y,
                    (m, c, h, w),
                    (oh, ow),
                    win,
                    max,
                    oq,
                )?;
                Value {
                    buf: y,
                    params: oq,
                    dims: (c, oh, ow),
                }
            }
            StepKind::Concat => {
                let oq = s.out.ok_or_else(|| fail("no output quantizer"))?;
                let ins = s.inputs.iter().map(get).collect::<Result<Vec<_>>>()?;
                if ins.iter().any(|v| (v.dims.1, v.dims.2) != (h, w)) {
                    return Err(fail("concat inputs differ in size"));
                }
                let co: usize = ins.iter().map(|v| v.dims.0).sum();
                let y = pool.take(ctx, m * co * h * w);
                let mut off = 0;
                for v in &ins {
                    concat_exact_encode(
                        ctx,
                        &mut enc,
                        (&v.buf, v.params),
                        &y,
                        (m, h * w),
                        (v.dims.0, off, co),
                        oq,
                    )?;
                    off += v.dims.0;
                }
                Value {
                    buf: y,
                    params: oq,
                    dims: (co, h, w),
                }
            }
            StepKind::Act(act) => {
                let oq = s.out.ok_or_else(|| fail("no output quantizer"))?;
                let y = pool.take(ctx, m * c * h * w);
                act_exact_encode(
                    ctx,
                    &mut enc,
                    (&a.buf, a.params),
                    &y,
                    (m, c, h * w),
                    *act,
                    oq,
                )?;
                Value {
                    buf: y,
                    params: oq,
                    dims: a.dims,
                }
            }
            StepKind::Mul => {
                let b = get(&s.inputs[1])?;
                let oq = s.out.ok_or_else(|| fail("no output quantizer"))?;
                let gate = b.dims != a.dims;
                if gate && b.dims.0 != c {
                    return Err(fail("mul inputs differ in shape"));
                }
                let len = m * c * h * w;
                let y = pool.take(ctx, len);
                mul_exact_encode(
                    ctx,
                    &mut enc,
                    (&a.buf, a.params),
                    (&b.buf, b.params),
                    &y,
                    len,
                    gate.then_some(h * w),
                    oq,
                )?;
                Value {
                    buf: y,
                    params: oq,
                    dims: a.dims,
                }
            }
            StepKind::Shuffle(groups) => {
                let y = pool.take(ctx, m * c * h * w);
                shuffle_encode(ctx, &mut enc, &a.buf, &y, (m, c, h * w), *groups)?;
                Value {
                    buf: y,
                    params: a.params,
                    dims: a.dims,
                }
            }
            StepKind::Lut(t) => {
                let oq = s.out.ok_or_else(|| fail("no output quantizer"))?;
                let y = pool.take(ctx, m * c * h * w);
                let table = lut
                    .as_ref()
                    .ok_or_else(|| fail("code table not uploaded"))?;
                lut_exact_encode(
                    ctx,
                    &mut enc,
                    (&a.buf, a.params),
                    table,
                    &y,
                    (m, c, h * w),
                    t.stride(),
                    oq,
                )?;
                Value {
                    buf: y,
                    params: oq,
                    dims: a.dims,
                }
            }
            StepKind::Lrn { size, .. } => {
                let oq = s.out.ok_or_else(|| fail("no output quantizer"))?;
                let table = lut
                    .as_ref()
                    .ok_or_else(|| fail("factor table not uploaded"))?;
                let y = pool.take(ctx, m * c * h * w);
                lrn_exact_encode(
                    ctx,
                    &mut enc,
                    (&a.buf, a.params),
                    &y,
                    (m, c, h * w),
                    *size,
                    table,
                    oq,
                )?;
                Value {
                    buf: y,
                    params: oq,
                    dims: a.dims,
                }
            }
            // NCHW [m, C, H, W] is already [m, C·H·W], a 1×1 map of C·H·W channels.
            StepKind::Flatten => Value {
                buf: a.buf.clone(),
                params: a.params,
                dims: (c * h * w, 1, 1),
            },
        };
        values.insert(s.name.as_str(), out);
        for i in &s.inputs {
            let Some(r) = remaining.get_mut(i.as_str()) else {
                continue;
            };
            *r -= 1;
            if *r == 0 {
                if let Some(v) = values.remove(i.as_str()) {
                    // A flattened alias may still hold the buffer.
                    if !values.values().any(|o| o.buf == v.buf) {
                        pool.give(v.buf);
                    }
                }
            }
        }
    }
    Err(Error::Engine(format!(
        "output {} was not produced",
        model.output
    )))
}

/// Runs one layer of the simulation on the device (uploads, runs, reads back): the GPU twin
/// of `engine::exec::exact_cpu` + the shared epilogue on one layer.
pub fn layer_exact(ctx: &GpuContext, x: &QTensor, l: &IntLayer) -> Result<IntOutput> {
    let gl = upload_layer(ctx, l, &x.params)?;
    let (n, rest) = x
        .shape
        .split_first()
        .ok_or_else(|| Error::Engine("exact layer: empty input shape".into()))?;
    let (n, (h, w)) = match rest {
        [_] => (*n, (1, 1)),
        [_, h, w] => (*n, (*h, *w)),
        _ => return Err(Error::Engine(format!("exact layer: input {:?}", x.shape))),
    };
    let xb = buffers::upload(ctx, "exact x", &centred(x));
    let mut enc = ctx.encoder("exact layer");
    let (y, (co, oh, ow)) = encode_layer(ctx, &mut enc, None, &gl, &xb, n, (h, w))?;
    let len = n * co * oh * ow;
    ctx.submit(enc)?;
    let vals: Vec<f32> = buffers::read(ctx, &y, len)?;
    let out = gl.parts[0].1.out;
    if let Some(q) = out {
        // Every value written, and a centred code of the output quantizer.
        let ok = |v: f32| v.fract() == 0.0 && (0..=q.qmax()).contains(&(v as i32 + q.zero_point));
        if let Some(v) = vals.iter().find(|&&v| !ok(v)) {
            return Err(Error::Gpu(format!(
                "exact layer: {v} is not a centred code of {q:?}"
            )));
        }
    }
    let shape = match l.conv {
        Some(_) => vec![n, co, oh, ow],
        None => vec![n, co],
    };
    Ok(match out {
        Some(q) => IntOutput::Codes(QTensor {
            shape,
            codes: vals
                .iter()
                .map(|&v| (v as i32 + q.zero_point) as u8)
                .collect(),
            params: q,
        }),
        None => IntOutput::Logits(Tensor::from_vec(&shape, vals)?),
    })
}

/// Records conv/linear step `st` on `m` centred images of `h × w` in `x`: per block, the
/// accumulators and the epilogue, then (several blocks) the block's channels of each image
/// copied into place. Buffers from `pool`, or fresh ones filled with the sentinel (`None`:
/// one-layer runs check that every output was written). Returns the output and its (C, H, W).
fn encode_layer(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    mut pool: Option<&mut BufferPool>,
    st: &ExactStep,
    x: &wgpu::Buffer,
    m: usize,
    (h, w): (usize, usize),
) -> Result<(wgpu::Buffer, Dims)> {
    let take = |pool: &mut Option<&mut BufferPool>, len: usize| match pool {
        Some(p) => p.take(ctx, len),
        None => buffers::filled(ctx, "exact", len, buffers::SENTINEL_F32),
    };
    let give = |pool: &mut Option<&mut BufferPool>, b: wgpu::Buffer| {
        if let Some(p) = pool {
            p.give(b);
        }
    };
    let (oh, ow) = conv_out_hw(&st.parts[0].1.conv, h, w)?;
    let (co, plane) = (st.co, oh * ow);
    let y = take(&mut pool, m * co * plane);
    for (c0, part) in &st.parts {
        let cp = part.conv.out_channels;
        let accs = (0..part.tensors.len())
            .map(|t| {
                let acc = take(&mut pool, m * cp * plane);
                acc_encode(ctx, enc, x, part, t, &acc, m, (h, w)).map(|_| acc)
            })
            .collect::<Result<Vec<_>>>()?;
        if st.parts.len() == 1 {
            requant_encode(ctx, enc, (&accs[0], accs.get(1)), part, &y, m, plane)?;
        } else {
            let yp = take(&mut pool, m * cp * plane);
            requant_encode(ctx, enc, (&accs[0], accs.get(1)), part, &yp, m, plane)?;
            let bytes = |v: usize| (v * plane * 4) as u64;
            for i in 0..m {
                enc.copy_buffer_to_buffer(&yp, bytes(i * cp), &y, bytes(i * co + c0), bytes(cp));
            }
            give(&mut pool, yp);
        }
        accs.into_iter().for_each(|b| give(&mut pool, b));
    }
    Ok((y, (co, oh, ow)))
}

/// A conv/linear step of the simulation on the device: one [`GpuExactLayer`] per block of
/// output channels, with the block's first channel. Several blocks only where the layer's
/// f32 weights exceed the storage binding limit (VGG's first classifier layer: 411 MB,
/// over lavapipe's 128 MiB); each block's outputs are copied into place.
pub struct ExactStep {
    /// Output channels of the whole layer.
    pub co: usize,
    pub parts: Vec<(usize, GpuExactLayer)>,
}

/// Uploads `l`'s plan codes (not its packed integer weights) for input quantizer `x`.
pub fn upload_layer(ctx: &GpuContext, l: &IntLayer, x: &QParams) -> Result<ExactStep> {
    let co = l.plan.params.len();
    let conv = Conv2d {
        act: Activation::None,
        ..l.as_conv()
    };
    let ep = &l.ep;
    if ep.mult.len() != co || ep.bias.len() != co || co == 0 || conv.out_channels != co {
        return Err(Error::Gpu(
            "exact layer: epilogue does not match weights".into(),
        ));
    }
    let per_channel = (l.plan.codes.len() / co).max(1);
    // Grouped convs keep one block (their weights are small); the limit is in bytes of f32.
    let block = if conv.groups == 1 {
        (ctx.max_binding_bytes() as usize / (4 * per_channel)).clamp(1, co)
    } else {
        co
    };
    let parts = (0..co)
        .step_by(block)
        .map(|c0| {
            let c1 = (c0 + block).min(co);
            let rows = |codes: &[u8]| codes[c0 * per_channel..c1 * per_channel].to_vec();
            let tensors = std::iter::once((&l.plan.codes, &l.plan.params))
                .chain(l.plan.second.as_ref().map(|(p2, c2)| (c2, p2)))
                .map(|(codes, params)| {
                    upload_tensor(ctx, &rows(codes), &params[c0..c1], x, c1 - c0)
                })
                .collect::<Result<Vec<_>>>()?;
            let chan: Vec<f32> = (c0..c1)
                .flat_map(|c| {
                    let m2 = ep.mult2.as_ref().map_or(0.0, |m| m[c]);
                    [ep.mult[c], m2, ep.bias[c], 0.0]
                })
                .collect();
            let layer = GpuExactLayer {
                conv: Conv2d {
                    out_channels: c1 - c0,
                    ..conv.clone()
                },
                tensors,
                zeros: buffers::upload(ctx, "exact zeros", &vec![0f32; c1 - c0]),
                chan: buffers::upload(ctx, "exact channels", &chan),
                act: ep.act,
                out: ep.out,
            };
            Ok((c0, layer))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ExactStep { co, parts })
}
