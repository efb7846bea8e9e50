//! [`IntModel`] under the exact simulation on the GPU (`Exec::Exact`, kernels of
//! [`conv_exact`](super::conv_exact)): every value of a batch stays on the device as an f32
//! NCHW tensor of centred codes; one command buffer per chunk of images runs the whole
//! graph; only the logits come back. Same logits as `IntModel::forward(x, Exec::Exact)` and
//! `Exec::Int`, bit for bit.
//!
//! The batch is split into chunks whose largest value (f32, 4× the integer path's codes)
//! fits the storage binding limit; freed values and accumulators are reused through a
//! [`BufferPool`] within a chunk's encoder.

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
            StepKind::Flatten => Some(first),
            _ => s.out,
        };
        if let Some(p) = produced {
            params.insert(s.name.as_str(), p);
        }
    }
    Ok(out)
}

/// Uploads every conv/linear step's plan codes for the simulation.
pub fn upload(ctx: &GpuContext, model: &IntModel) -> Result<Vec<Option<GpuExactLayer>>> {
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
fn step_dims(model: &IntModel, layers: &[Option<GpuExactLayer>], dims: Dims) -> Result<Vec<Dims>> {
    let mut by_name: HashMap<&str, Dims> = HashMap::from([(Graph::INPUT, dims)]);
    let mut out = Vec::with_capacity(model.steps.len());
    for (s, gl) in model.steps.iter().zip(layers) {
        let (c, h, w) = s
            .inputs
            .first()
            .and_then(|i| by_name.get(i.as_str()).copied())
            .ok_or_else(|| Error::Engine(format!("step {}: input is not available", s.name)))?;
        let d = match (&s.kind, gl) {
            (StepKind::Layer(_), Some(gl)) => {
                let (oh, ow) = conv_out_hw(&gl.conv, h, w)?;
                (gl.conv.out_channels, oh, ow)
            }
            (StepKind::Layer(_), None) => {
                return Err(Error::Gpu(format!(
                    "exact node {}: weights not uploaded",
                    s.name
                )))
            }
            (StepKind::GlobalAvgPool, _) => (c, 1, 1),
            (StepKind::Flatten, _) => (c * h * w, 1, 1),
            (StepKind::MaxPool(p) | StepKind::AvgPool(p), _) => {
                let (oh, ow) = pool_out_hw(p, h, w, &s.name)?;
                (c, oh, ow)
            }
            (StepKind::Concat, _) => {
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

/// Runs `model` on an f32 NCHW batch under the exact simulation; returns the logits.
pub fn forward(
    ctx: &GpuContext,
    model: &IntModel,
    layers: &[Option<GpuExactLayer>],
    x: &Tensor,
) -> Result<Tensor> {
    let q = model.quantize_input(x)?;
    let (n, c, h, w) = q.dims()?;
    if n == 0 {
        return Err(Error::Engine("exact forward: empty batch".into()));
    }
    let dims = step_dims(model, layers, (c, h, w))?;
    let item = dims
        .iter()
        .chain([&(c, h, w)])
        .map(|&(c, h, w)| (c * h * w * 4) as u64)
        .max()
        .unwrap_or(4);
    let xs = centred(&q);
    let per_in = c * h * w;
    let mut logits: Vec<f32> = Vec::new();
    let mut shape = Vec::new();
    for r in buffers::batch_chunks(ctx, n, item)? {
        let input = Value {
            buf: buffers::upload(ctx, "exact input", &xs[r.start * per_in..r.end * per_in]),
            params: q.params,
            dims: (c, h, w),
        };
        let (y, s) = run_chunk(ctx, model, layers, input, r.len())?;
        logits.extend_from_slice(&y);
        shape = s;
    }
    shape[0] = n;
    Tensor::from_vec(&shape, logits)
}

/// Records and runs the whole graph on `m` images; returns the logits and their shape.
fn run_chunk(
    ctx: &GpuContext,
    model: &IntModel,
    layers: &[Option<GpuExactLayer>],
    input: Value,
    m: usize,
) -> Result<(Vec<f32>, Vec<usize>)> {
    let mut values: HashMap<&str, Value> = HashMap::from([(Graph::INPUT, input)]);
    let mut remaining = model.reader_counts();
    let mut pool = BufferPool::default();
    let mut enc = ctx.encoder("exact model");
    for (s, gl) in model.steps.iter().zip(layers) {
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
                let gl = gl.as_ref().ok_or_else(|| fail("weights not uploaded"))?;
                let (co, (oh, ow)) = (gl.conv.out_channels, conv_out_hw(&gl.conv, h, w)?);
                let len = m * co * oh * ow;
                let accs = (0..gl.tensors.len())
                    .map(|t| {
                        let acc = pool.take(ctx, len);
                        acc_encode(ctx, &mut enc, &a.buf, gl, t, &acc, m, (h, w)).map(|_| acc)
                    })
                    .collect::<Result<Vec<_>>>()?;
                let y = pool.take(ctx, len);
                requant_encode(ctx, &mut enc, (&accs[0], accs.get(1)), gl, &y, m, oh * ow)?;
                accs.into_iter().for_each(|b| pool.give(b));
                let Some(oq) = gl.out else {
                    ctx.submit(enc)?;
                    let shape = match l.conv {
                        Some(_) => vec![m, co, oh, ow],
                        None => vec![m, co],
                    };
                    return Ok((buffers::read(ctx, &y, len)?, shape));
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
                    ctx.submit(enc)?;
                    return Ok((buffers::read(ctx, &y, m * c)?, vec![m, c]));
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
            StepKind::Lrn { size, table } => {
                let oq = s.out.ok_or_else(|| fail("no output quantizer"))?;
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
    let (co, (oh, ow)) = (gl.conv.out_channels, conv_out_hw(&gl.conv, h, w)?);
    let len = n * co * oh * ow;
    let xb = buffers::upload(ctx, "exact x", &centred(x));
    let accs: Vec<wgpu::Buffer> = (0..gl.tensors.len())
        .map(|_| buffers::filled(ctx, "exact acc", len, buffers::SENTINEL_F32))
        .collect();
    let y = buffers::filled(ctx, "exact y", len, buffers::SENTINEL_F32);
    let mut enc = ctx.encoder("exact layer");
    for (t, acc) in accs.iter().enumerate() {
        acc_encode(ctx, &mut enc, &xb, &gl, t, acc, n, (h, w))?;
    }
    requant_encode(ctx, &mut enc, (&accs[0], accs.get(1)), &gl, &y, n, oh * ow)?;
    ctx.submit(enc)?;
    let vals: Vec<f32> = buffers::read(ctx, &y, len)?;
    if let Some(q) = gl.out {
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
    Ok(match gl.out {
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

/// Uploads `l`'s plan codes (not its packed integer weights) for input quantizer `x`.
pub fn upload_layer(ctx: &GpuContext, l: &IntLayer, x: &QParams) -> Result<GpuExactLayer> {
    let co = l.plan.params.len();
    let conv = Conv2d {
        act: Activation::None,
        ..l.as_conv()
    };
    let tensors = std::iter::once((&l.plan.codes, &l.plan.params))
        .chain(l.plan.second.as_ref().map(|(p2, c2)| (c2, p2)))
        .map(|(codes, params)| upload_tensor(ctx, codes, params, x, co))
        .collect::<Result<Vec<_>>>()?;
    let ep = &l.ep;
    let chan: Vec<f32> = (0..co)
        .flat_map(|c| {
            let m2 = ep.mult2.as_ref().map_or(0.0, |m| m[c]);
            [ep.mult[c], m2, ep.bias[c], 0.0]
        })
        .collect();
    if ep.mult.len() != co || ep.bias.len() != co {
        return Err(Error::Gpu(
            "exact layer: epilogue does not match weights".into(),
        ));
    }
    Ok(GpuExactLayer {
        conv,
        tensors,
        zeros: buffers::upload(ctx, "exact zeros", &vec![0f32; co]),
        chan: buffers::upload(ctx, "exact channels", &chan),
        act: ep.act,
        out: ep.out,
    })
}
