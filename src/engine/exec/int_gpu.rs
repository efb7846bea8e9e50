//! [`IntModel`] on the GPU: every value lives on the device as NHWC code words
//! (`conv_int` layout); one command buffer per chunk of images (largest value within the
//! storage binding limit) runs the whole graph; only the logits come back, chunk i's read
//! after chunk i+1 is submitted. Weights and tables are uploaded once per model.
//! Same codes and logits as `IntModel::forward` on the CPU, bit for bit. `Exec::Exact` runs
//! the exact simulation's own kernels instead ([`exact_gpu`](super::exact_gpu)). Code tables
//! (standalone BatchNorm, `Unary`) are the host's `Lut` read from a buffer (`gpu::lut`).

use std::collections::HashMap;
use std::sync::OnceLock;

use super::exact_gpu;
use crate::engine::cpu::int::QTensor;
use crate::engine::device::buffers;
use crate::engine::device::context::GpuContext;
use crate::engine::exec::int_model::{pool_out_hw, Exec, IntLayer, IntModel, IntOutput, StepKind};
use crate::engine::gpu::conv_int::{
    conv_int_encode, pack_nhwc, unpack_nhwc, words_per_pixel, GpuIntLayer,
};
use crate::engine::gpu::eltwise_int::{
    act_int_encode, add_int_encode, concat_int_encode, gap_int_encode, pool_int_encode,
};
use crate::engine::gpu::flatten_int::flatten_int_encode;
use crate::engine::gpu::lrn::lrn_int_encode;
use crate::engine::gpu::lut::lut_int_encode;
use crate::engine::gpu::mul::mul_int_encode;
use crate::engine::gpu::shuffle::shuffle_int_encode;
use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::quant::QParams;
use crate::tensor::Tensor;

fn upload_layer(ctx: &GpuContext, l: &IntLayer) -> Result<GpuIntLayer> {
    let c = l.as_conv();
    let tensors: Vec<_> = std::iter::once(&l.w).chain(&l.w2).collect();
    GpuIntLayer::new(ctx, &tensors, &l.ep, c.kernel[0] * c.kernel[1])
}

/// Runs one integer layer on the device (uploads, runs, reads back).
pub fn layer_int(ctx: &GpuContext, x: &QTensor, l: &IntLayer) -> Result<IntOutput> {
    let (n, ci, h, w) = x.dims()?;
    let c = l.as_conv();
    let gl = upload_layer(ctx, l)?;
    let xb = buffers::upload(
        ctx,
        "int x",
        &pack_nhwc(&x.codes, (n, ci, h, w), x.params.zero_point as u8),
    );
    let (oh, ow) = crate::engine::cpu::int::conv_out_hw(&c, h, w)?;
    let len = match l.ep.out {
        Some(_) => n * oh * ow * words_per_pixel(c.out_channels),
        None => n * c.out_channels * oh * ow,
    };
    let yb = buffers::filled(ctx, "int y", len, buffers::SENTINEL_U32);
    let mut enc = ctx.encoder("conv_int");
    conv_int_encode(
        ctx,
        &mut enc,
        &xb,
        &gl,
        &yb,
        n,
        (h, w),
        &c,
        x.params.zero_point,
    )?;
    ctx.submit(enc)?;
    let words: Vec<u32> = buffers::read(ctx, &yb, len)?;
    let shape = match l.conv {
        Some(_) => vec![n, c.out_channels, oh, ow],
        None => vec![n, c.out_channels],
    };
    Ok(match l.ep.out {
        Some(q) => IntOutput::Codes(QTensor {
            codes: unpack_nhwc(&words, (n, c.out_channels, oh, ow)),
            shape,
            params: q,
        }),
        None => IntOutput::Logits(Tensor::from_vec(
            &shape,
            words.into_iter().map(f32::from_bits).collect(),
        )?),
    })
}

struct Value {
    buf: wgpu::Buffer,
    params: QParams,
    dims: (usize, usize, usize, usize),
}

/// An [`IntModel`] whose layer weights are resident on one device (upload once, run many
/// batches): the packed integer weights for `Exec::Int`, the plan codes as f32 for
/// `Exec::Exact`, each uploaded on first use (or up front by [`IntModel::upload_for`]).
pub struct GpuIntModel<'m> {
    model: &'m IntModel,
    /// Per step: the device weights of a conv/linear step.
    layers: OnceLock<Vec<Option<GpuIntLayer>>>,
    exact: OnceLock<Vec<Option<exact_gpu::ExactStep>>>,
    /// Per step: the table of a `Lut` or `Lrn` step (both executors read it).
    luts: Vec<Option<wgpu::Buffer>>,
}

/// The cell's value, computed by `f` when empty (`OnceLock::get_or_try_init` is unstable).
fn get_or_try<T>(cell: &OnceLock<T>, f: impl FnOnce() -> Result<T>) -> Result<&T> {
    if let Some(v) = cell.get() {
        return Ok(v);
    }
    let v = f()?;
    Ok(cell.get_or_init(|| v))
}

impl IntModel {
    /// Uploads every layer's integer weights to `ctx`'s device.
    pub fn upload(&self, ctx: &GpuContext) -> Result<GpuIntModel<'_>> {
        self.upload_for(ctx, Exec::Int)
    }

    /// Uploads the weights `exec` runs on to `ctx`'s device.
    pub fn upload_for(&self, ctx: &GpuContext, exec: Exec) -> Result<GpuIntModel<'_>> {
        let m = GpuIntModel {
            model: self,
            layers: OnceLock::new(),
            exact: OnceLock::new(),
            luts: exact_gpu::upload_luts(ctx, self),
        };
        match exec {
            Exec::Int => drop(m.int_layers(ctx)?),
            Exec::Exact => drop(m.exact_layers(ctx)?),
        }
        Ok(m)
    }

    /// Uploads the weights and runs one batch ([`GpuIntModel::forward`]).
    pub fn forward_gpu(&self, ctx: &GpuContext, x: &Tensor, exec: Exec) -> Result<Tensor> {
        self.upload_for(ctx, exec)?.forward(ctx, x, exec)
    }
}

impl GpuIntModel<'_> {
    fn int_layers(&self, ctx: &GpuContext) -> Result<&[Option<GpuIntLayer>]> {
        let model = self.model;
        get_or_try(&self.layers, || {
            model
                .steps
                .iter()
                .map(|s| match &s.kind {
                    StepKind::Layer(l) => upload_layer(ctx, l).map(Some),
                    _ => Ok(None),
                })
                .collect()
        })
        .map(Vec::as_slice)
    }

    fn exact_layers(&self, ctx: &GpuContext) -> Result<&[Option<exact_gpu::ExactStep>]> {
        get_or_try(&self.exact, || exact_gpu::upload(ctx, self.model)).map(Vec::as_slice)
    }

    /// Runs the model on the GPU and returns the f32 logits: `Exec::Int` on the integer
    /// kernels, `Exec::Exact` on the exact simulation's float kernels (same logits). The
    /// batch runs in chunks whose largest value fits the storage binding limit; chunk i's
    /// logits are read after chunk i+1 is submitted (`buffers::Pending`).
    pub fn forward(&self, ctx: &GpuContext, x: &Tensor, exec: Exec) -> Result<Tensor> {
        let model = self.model;
        let layers = match exec {
            Exec::Int => self.int_layers(ctx)?,
            Exec::Exact => {
                return exact_gpu::forward(ctx, model, self.exact_layers(ctx)?, &self.luts, x)
                    .map(|t| model.finish(t))
            }
        };
        let (n, c, h, w) = match x.shape[..] {
            [n, c, h, w] if n > 0 => (n, c, h, w),
            _ => return Err(Error::Engine(format!("int forward: input {:?}", x.shape))),
        };
        // Code words of every value (f32 for the logits), per image.
        let dims = exact_gpu::step_dims(model, (c, h, w))?;
        let item = dims
            .iter()
            .chain([&(c, h, w)])
            .map(|&(c, h, w)| h * w * words_per_pixel(c) * 4)
            .chain(dims.last().map(|&(c, h, w)| c * h * w * 4))
            .max()
            .unwrap_or(4) as u64;
        let per_in = c * h * w;
        let mut logits: Vec<f32> = Vec::new();
        let mut shape = Vec::new();
        let mut pending: Option<buffers::Pending<f32>> = None;
        for r in buffers::batch_chunks(ctx, n, item)? {
            let xr = Tensor::from_vec(
                &[r.len(), c, h, w],
                x.data[r.start * per_in..r.end * per_in].to_vec(),
            )?;
            let (enc, staged, s) = self.record(ctx, layers, &xr)?;
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
        Tensor::from_vec(&shape, logits).map(|t| model.finish(t))
    }

    /// Records the whole graph on the images of `x`: the encoder, the logits' staged copy
    /// and their shape.
    fn record(
        &self,
        ctx: &GpuContext,
        layers: &[Option<GpuIntLayer>],
        x: &Tensor,
    ) -> Result<(wgpu::CommandEncoder, buffers::Staged<f32>, Vec<usize>)> {
        let model = self.model;
        let q = model.quantize_input(x)?;
        let dims = q.dims()?;
        let mut values: HashMap<&str, Value> = HashMap::new();
        values.insert(
            Graph::INPUT,
            Value {
                buf: buffers::upload(
                    ctx,
                    "int input",
                    &pack_nhwc(&q.codes, dims, q.params.zero_point as u8),
                ),
                params: q.params,
                dims,
            },
        );
        let mut remaining = model.reader_counts();
        let mut enc = ctx.encoder("int model");
        let mut logits = None;
        for (si, s) in model.steps.iter().enumerate() {
            let get = |i: &String| {
                values
                    .get(i.as_str())
                    .ok_or_else(|| Error::Engine(format!("value {i} is not available")))
            };
            let fail = |why: &str| Error::Gpu(format!("integer node {}: {why}", s.name));
            let a = get(&s.inputs[0])?;
            let (n, c, h, w) = a.dims;
            let out = match &s.kind {
                StepKind::Layer(l) => {
                    let conv = l.as_conv();
                    let gl = layers[si]
                        .as_ref()
                        .ok_or_else(|| fail("weights not uploaded"))?;
                    let (oh, ow) = crate::engine::cpu::int::conv_out_hw(&conv, h, w)?;
                    let Some(oq) = l.ep.out else {
                        let len = n * conv.out_channels * oh * ow;
                        let yb = buffers::filled(ctx, "int logits", len, buffers::SENTINEL_F32);
                        conv_int_encode(
                            ctx,
                            &mut enc,
                            &a.buf,
                            gl,
                            &yb,
                            n,
                            (h, w),
                            &conv,
                            a.params.zero_point,
                        )?;
                        let shape = match l.conv {
                            Some(_) => vec![n, conv.out_channels, oh, ow],
                            None => vec![n, conv.out_channels],
                        };
                        logits = Some((yb, len, shape));
                        continue;
                    };
                    let d = (n, conv.out_channels, oh, ow);
                    let yb = buffers::zeroed(
                        ctx,
                        "int y",
                        (n * oh * ow * words_per_pixel(d.1) * 4) as u64,
                    );
                    conv_int_encode(
                        ctx,
                        &mut enc,
                        &a.buf,
                        gl,
                        &yb,
                        n,
                        (h, w),
                        &conv,
                        a.params.zero_point,
                    )?;
                    Value {
                        buf: yb,
                        params: oq,
                        dims: d,
                    }
                }
                StepKind::Add => {
                    if s.inputs.len() != 2 {
                        return Err(fail("the GPU adds exactly two tensors"));
                    }
                    let b = get(&s.inputs[1])?;
                    let oq = s.out.ok_or_else(|| fail("no output quantizer"))?;
                    let words = n * h * w * words_per_pixel(c);
                    let yb = buffers::zeroed(ctx, "int add", (words * 4) as u64);
                    add_int_encode(
                        ctx,
                        &mut enc,
                        (&a.buf, a.params),
                        (&b.buf, b.params),
                        &yb,
                        words,
                        oq,
                    )?;
                    Value {
                        buf: yb,
                        params: oq,
                        dims: a.dims,
                    }
                }
                StepKind::GlobalAvgPool => {
                    let Some(oq) = s.out else {
                        let yb = buffers::filled(ctx, "int logits", n * c, buffers::SENTINEL_F32);
                        gap_int_encode(ctx, &mut enc, &a.buf, a.params, &yb, a.dims, None)?;
                        logits = Some((yb, n * c, vec![n, c]));
                        continue;
                    };
                    let yb = buffers::zeroed(ctx, "int gap", (n * words_per_pixel(c) * 4) as u64);
                    gap_int_encode(ctx, &mut enc, &a.buf, a.params, &yb, a.dims, Some(oq))?;
                    Value {
                        buf: yb,
                        params: oq,
                        dims: (n, c, 1, 1),
                    }
                }
                StepKind::MaxPool(pool) | StepKind::AvgPool(pool) => {
                    let oq = s.out.ok_or_else(|| fail("no output quantizer"))?;
                    let (oh, ow) = pool_out_hw(pool, h, w, &s.name)?;
                    let words = n * oh * ow * words_per_pixel(c);
                    let yb = buffers::zeroed(ctx, "int pool", (words * 4) as u64);
                    let max = matches!(s.kind, StepKind::MaxPool(_));
                    pool_int_encode(
                        ctx,
                        &mut enc,
                        (&a.buf, a.params),
                        &yb,
                        a.dims,
                        (oh, ow),
                        pool,
                        max,
                        oq,
                    )?;
                    Value {
                        buf: yb,
                        params: oq,
                        dims: (n, c, oh, ow),
                    }
                }
                StepKind::Concat => {
                    let oq = s.out.ok_or_else(|| fail("no output quantizer"))?;
                    let ins = s.inputs.iter().map(get).collect::<Result<Vec<_>>>()?;
                    if ins
                        .iter()
                        .any(|v| (v.dims.0, v.dims.2, v.dims.3) != (n, h, w))
                    {
                        return Err(fail("concat inputs differ in size"));
                    }
                    let co: usize = ins.iter().map(|v| v.dims.1).sum();
                    let words = n * h * w * words_per_pixel(co);
                    let yb = buffers::zeroed(ctx, "int concat", (words * 4) as u64);
                    let mut off = 0;
                    for (k, v) in ins.iter().enumerate() {
                        concat_int_encode(
                            ctx,
                            &mut enc,
                            (&v.buf, v.params),
                            &yb,
                            n * h * w,
                            (v.dims.1, off, co),
                            k + 1 == ins.len(),
                            oq,
                        )?;
                        off += v.dims.1;
                    }
                    Value {
                        buf: yb,
                        params: oq,
                        dims: (n, co, h, w),
                    }
                }
                StepKind::Act(act) => {
                    let oq = s.out.ok_or_else(|| fail("no output quantizer"))?;
                    let words = n * h * w * words_per_pixel(c);
                    let yb = buffers::zeroed(ctx, "int act", (words * 4) as u64);
                    act_int_encode(
                        ctx,
                        &mut enc,
                        (&a.buf, a.params),
                        &yb,
                        (n * h * w, c),
                        *act,
                        oq,
                    )?;
                    Value {
                        buf: yb,
                        params: oq,
                        dims: a.dims,
                    }
                }
                StepKind::Mul => {
                    let b = get(&s.inputs[1])?;
                    let oq = s.out.ok_or_else(|| fail("no output quantizer"))?;
                    let gate = b.dims != a.dims;
                    if gate && b.dims != (n, c, 1, 1) {
                        return Err(fail("mul inputs differ in shape"));
                    }
                    let words = n * h * w * words_per_pixel(c);
                    let yb = buffers::zeroed(ctx, "int mul", (words * 4) as u64);
                    mul_int_encode(
                        ctx,
                        &mut enc,
                        (&a.buf, a.params),
                        (&b.buf, b.params),
                        &yb,
                        (n, h * w, c),
                        gate,
                        oq,
                    )?;
                    Value {
                        buf: yb,
                        params: oq,
                        dims: a.dims,
                    }
                }
                StepKind::Shuffle(groups) => {
                    let words = n * h * w * words_per_pixel(c);
                    let yb = buffers::zeroed(ctx, "int shuffle", (words * 4) as u64);
                    let zero = a.params.zero_point as u8;
                    shuffle_int_encode(ctx, &mut enc, &a.buf, &yb, (n * h * w, c), *groups, zero)?;
                    Value {
                        buf: yb,
                        params: a.params,
                        dims: a.dims,
                    }
                }
                StepKind::Lut(t) => {
                    let oq = s.out.ok_or_else(|| fail("no output quantizer"))?;
                    let words = n * h * w * words_per_pixel(c);
                    let yb = buffers::zeroed(ctx, "int lut", (words * 4) as u64);
                    let table = self.luts[si]
                        .as_ref()
                        .ok_or_else(|| fail("code table not uploaded"))?;
                    let px = (n * h * w, c);
                    lut_int_encode(ctx, &mut enc, &a.buf, table, &yb, px, t.stride(), oq)?;
                    Value {
                        buf: yb,
                        params: oq,
                        dims: a.dims,
                    }
                }
                StepKind::Lrn { size, .. } => {
                    let oq = s.out.ok_or_else(|| fail("no output quantizer"))?;
                    let table = self.luts[si]
                        .as_ref()
                        .ok_or_else(|| fail("factor table not uploaded"))?;
                    let words = n * h * w * words_per_pixel(c);
                    let yb = buffers::zeroed(ctx, "int lrn", (words * 4) as u64);
                    lrn_int_encode(
                        ctx,
                        &mut enc,
                        (&a.buf, a.params),
                        &yb,
                        (n * h * w, c),
                        *size,
                        table,
                        oq,
                    )?;
                    Value {
                        buf: yb,
                        params: oq,
                        dims: a.dims,
                    }
                }
                StepKind::Flatten if h * w == 1 => Value {
                    buf: a.buf.clone(),
                    params: a.params,
                    dims: a.dims,
                },
                // A spatial map: its codes reordered into NCHW feature order.
                StepKind::Flatten => {
                    let f = c * h * w;
                    let words = n * words_per_pixel(f);
                    let yb = buffers::zeroed(ctx, "int flatten", (words * 4) as u64);
                    let z = a.params.zero_point as u8;
                    flatten_int_encode(ctx, &mut enc, &a.buf, &yb, a.dims, z)?;
                    Value {
                        buf: yb,
                        params: a.params,
                        dims: (n, f, 1, 1),
                    }
                }
            };
            for i in &s.inputs {
                if let Some(r) = remaining.get_mut(i.as_str()) {
                    *r -= 1;
                    if *r == 0 {
                        values.remove(i.as_str());
                    }
                }
            }
            values.insert(s.name.as_str(), out);
        }
        let (yb, len, shape) = logits
            .ok_or_else(|| Error::Engine(format!("output {} was not produced", model.output)))?;
        let staged = buffers::stage_read(ctx, &mut enc, &yb, len)?;
        Ok((enc, staged, shape))
    }
}
