//! Per-layer convolution timings through the engine's kernels.
//!
//! - integer (`bits` 4 or 8): W`bits` per-channel weights, A`bits` activation codes (`u8`),
//!   requantized to output codes. CPU: [`CpuLayer`] on NHWC codes, weights packed once,
//!   rayon across panels (as `IntModel` runs a layer); GPU: `conv_int` on NHWC words.
//! - f32 (`bits` 32): CPU `engine::cpu::{conv2d, linear}`; GPU `conv2d` / `linear`.
//!
//! Bytes moved: input, weights and output once each, as the kernel holds them (CPU `u8`
//! codes or f32; GPU buffers, channels padded to 8 for codes, nibble-word weights).

use serde::Serialize;

use super::device::DeviceFigures;
use super::{time_cpu, time_gpu, LayerShape, Spread, Target};
use crate::engine::cpu::int::{epi, transpose, CpuLayer, Isa, PackedWeights};
use crate::engine::device::{buffers, GpuContext};
use crate::engine::gpu::conv_int::{conv_int_encode, pack_nhwc, words_per_pixel, GpuIntLayer};
use crate::engine::gpu::{conv2d, linear};
use crate::engine::requant::Epilogue;
use crate::error::{Error, Result};
use crate::graph::Linear;
use crate::quant::QParams;
use crate::tensor::Tensor;

/// One layer at one bit-width on one backend.
#[derive(Clone, Debug, Serialize)]
pub struct ConvRow {
    pub layer: String,
    pub backend: Target,
    /// 4, 8 (integer weights and activation codes) or 32 (f32).
    pub bits: u8,
    /// `[N, C, H, W]` of the input.
    pub input: [usize; 4],
    /// `[K, C/groups, R, S]`.
    pub weight: [usize; 4],
    pub stride: usize,
    pub groups: usize,
    pub linear: bool,
    pub macs: u64,
    pub bytes: u64,
    pub time: Spread,
    /// 2·MACs / median time, 1e9 per second.
    pub gops: f64,
    /// bytes / median time, 1e9 per second.
    pub gbps: f64,
    /// f32 median time / this median time on the same backend (> 1: faster than f32).
    pub vs_f32: Option<f64>,
    /// GPU integer rows: `gops` / the measured `dot4I8Packed` peak.
    pub dot4_peak_fraction: Option<f64>,
    /// `gbps` / the measured copy bandwidth of the same backend.
    pub copy_bw_fraction: Option<f64>,
    /// GPU: dispatches recorded per timed submission.
    pub per_submit: Option<usize>,
}

/// Deterministic weight codes and per-channel quantizers of `bits` for `l`.
fn weights(l: &LayerShape, bits: u8) -> Result<(Vec<u8>, Vec<QParams>)> {
    let c = &l.conv;
    let k = c.in_channels / c.groups * c.kernel[0] * c.kernel[1];
    let qmax = (1usize << bits) - 1;
    let params = (0..c.out_channels)
        .map(|o| QParams::from_range(-0.5 - o as f32 * 1e-3, 0.6, bits))
        .collect::<Result<Vec<_>>>()?;
    let codes = (0..c.out_channels * k)
        .map(|i| (i * 7 % (qmax + 1)) as u8)
        .collect();
    Ok((codes, params))
}

/// Deterministic NCHW input codes of `bits` and their quantizer.
fn input_codes(l: &LayerShape, bits: u8) -> Result<(Vec<u8>, QParams)> {
    let qmax = (1usize << bits) - 1;
    let len = l.n * l.conv.in_channels * l.h * l.w;
    let codes = (0..len).map(|i| (i * 13 % (qmax + 1)) as u8).collect();
    Ok((codes, QParams::from_range(0.0, 6.0, bits)?))
}

/// The layer's epilogue: requantization to `bits` codes.
fn epilogue(l: &LayerShape, params: &[QParams], xp: QParams, bits: u8) -> Result<Epilogue> {
    let scales: Vec<f32> = params.iter().map(|p| p.scale).collect();
    let bias = vec![0.1; l.conv.out_channels];
    let out = QParams::from_range(0.0, 6.0, bits)?;
    Ok(Epilogue::new(
        &scales,
        None,
        xp.scale,
        &bias,
        l.conv.act,
        Some(out),
    ))
}

fn f32_data(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect()
}

fn as_linear(l: &LayerShape) -> Linear {
    Linear {
        in_features: l.conv.in_channels,
        out_features: l.conv.out_channels,
        bias: true,
        act: l.conv.act,
    }
}

/// Integer layer on the CPU: (time, bytes moved).
pub fn cpu_int(l: &LayerShape, bits: u8, reps: usize) -> Result<(Spread, u64)> {
    let (codes, params) = weights(l, bits)?;
    let w = PackedWeights::new(&codes, &params)?;
    let (x, xp) = input_codes(l, bits)?;
    let ep = epilogue(l, &params, xp, bits)?;
    let c = &l.conv;
    let cl = CpuLayer::new(c, &w, None);
    let x = transpose(&x, l.n, c.in_channels, l.h * l.w);
    let (oh, ow) = l.out_hw();
    let isa = Isa::detect();
    let mut out = vec![0u8; l.n * oh * ow * c.out_channels];
    let sink = |a: &[i32], a2: Option<&[i32]>, o: &mut [u8]| epi::codes_rows(isa, &ep, a, a2, o);
    let t = time_cpu(reps, || {
        cl.run(
            isa,
            true,
            &x,
            (l.n, l.h, l.w),
            xp.zero_point,
            (oh, ow),
            &mut out,
            &sink,
        );
        Ok(())
    })?;
    Ok((t, (x.len() + w.code_bytes() + out.len()) as u64))
}

/// f32 layer on the CPU.
pub fn cpu_f32(l: &LayerShape, reps: usize) -> Result<(Spread, u64)> {
    let c = &l.conv;
    let wshape = c.weight_shape();
    let w = Tensor::from_vec(&wshape, f32_data(wshape.iter().product()))?;
    let b = vec![0.1; c.out_channels];
    let xlen = l.n * c.in_channels * l.h * l.w;
    let (oh, ow) = l.out_hw();
    let bytes = 4 * (xlen + w.numel() + l.n * c.out_channels * oh * ow) as u64;
    let t = if l.linear {
        let x = Tensor::from_vec(&[l.n, c.in_channels], f32_data(xlen))?;
        let w = Tensor::from_vec(&[c.out_channels, c.in_channels], w.data)?;
        let lin = as_linear(l);
        time_cpu(reps, || {
            std::hint::black_box(crate::engine::cpu::linear(&x, &w, Some(&b), &lin));
            Ok(())
        })?
    } else {
        let x = Tensor::from_vec(&[l.n, c.in_channels, l.h, l.w], f32_data(xlen))?;
        time_cpu(reps, || {
            std::hint::black_box(crate::engine::cpu::conv2d(&x, &w, Some(&b), c));
            Ok(())
        })?
    };
    Ok((t, bytes))
}

/// Integer layer on the GPU: (time, bytes moved, dispatches per submission).
pub fn gpu_int(
    ctx: &GpuContext,
    l: &LayerShape,
    bits: u8,
    reps: usize,
) -> Result<(Spread, u64, usize)> {
    let (codes, params) = weights(l, bits)?;
    let w = PackedWeights::new(&codes, &params)?;
    let (x, xp) = input_codes(l, bits)?;
    let ep = epilogue(l, &params, xp, bits)?;
    let c = &l.conv;
    let gl = GpuIntLayer::new(ctx, &[&w], &ep, c.kernel[0] * c.kernel[1])?;
    let dims = (l.n, c.in_channels, l.h, l.w);
    let xb = buffers::upload(ctx, "bench x", &pack_nhwc(&x, dims, xp.zero_point as u8));
    let (oh, ow) = l.out_hw();
    let ylen = l.n * oh * ow * words_per_pixel(c.out_channels);
    let yb = buffers::zeroed(ctx, "bench y", (ylen * 4) as u64);
    let bytes = xb.size() + gl.nib.size() + gl.wide.size() + yb.size();
    let (t, k) = time_gpu(ctx, reps, |enc| {
        conv_int_encode(ctx, enc, &xb, &gl, &yb, l.n, (l.h, l.w), c, xp.zero_point).map(|_| ())
    })?;
    Ok((t, bytes, k))
}

/// f32 layer on the GPU.
pub fn gpu_f32(ctx: &GpuContext, l: &LayerShape, reps: usize) -> Result<(Spread, u64, usize)> {
    let c = &l.conv;
    let xb = buffers::upload(ctx, "bench x", &f32_data(l.n * c.in_channels * l.h * l.w));
    let wb = buffers::upload(ctx, "bench w", &f32_data(c.weight_shape().iter().product()));
    let bb = buffers::upload(ctx, "bench b", &vec![0.1f32; c.out_channels]);
    let (oh, ow) = l.out_hw();
    let yb = buffers::zeroed(ctx, "bench y", (l.n * c.out_channels * oh * ow * 4) as u64);
    let bytes = xb.size() + wb.size() + yb.size();
    let lin = as_linear(l);
    let (t, k) = time_gpu(ctx, reps, |enc| {
        if l.linear {
            linear::linear_encode(ctx, enc, &xb, &wb, &bb, &yb, l.n, &lin)
        } else {
            conv2d::conv2d_encode(ctx, enc, &xb, &wb, &bb, &yb, l.n, (l.h, l.w), c)
        }
    })?;
    Ok((t, bytes, k))
}

/// What a conv bench runs.
pub struct ConvPlan<'a> {
    pub layers: &'a [LayerShape],
    pub bits: &'a [u8],
    pub cpu: bool,
    pub gpu: Option<&'a GpuContext>,
    pub reps: usize,
    /// Device limits to express each row as a fraction of (see [`DeviceFigures`]).
    pub devices: &'a [DeviceFigures],
}

/// Runs every (layer, backend, bits) of `plan`; `tick(what)` before each.
pub fn bench_conv(plan: &ConvPlan<'_>, tick: &mut dyn FnMut(&str)) -> Result<Vec<ConvRow>> {
    let mut rows = Vec::new();
    // Each backend with its GPU context (none: the CPU).
    let mut targets: Vec<(Target, Option<&GpuContext>)> = Vec::new();
    if plan.cpu {
        targets.push((Target::Cpu, None));
    }
    if let Some(ctx) = plan.gpu {
        targets.push((Target::Gpu, Some(ctx)));
    }
    for l in plan.layers {
        for &(target, gpu) in &targets {
            let first = rows.len();
            for &bits in plan.bits {
                tick(&format!("{} {target:?} {bits}-bit", l.name));
                let what = |e: Error| {
                    Error::Engine(format!("bench {} ({target:?}, {bits} bits): {e}", l.name))
                };
                let (time, bytes, per_submit) = match (gpu, bits) {
                    (None, 32) => cpu_f32(l, plan.reps).map(|(t, b)| (t, b, None)),
                    (None, b) => cpu_int(l, b, plan.reps).map(|(t, b)| (t, b, None)),
                    (Some(ctx), 32) => gpu_f32(ctx, l, plan.reps).map(|(t, b, k)| (t, b, Some(k))),
                    (Some(ctx), b) => {
                        gpu_int(ctx, l, b, plan.reps).map(|(t, b, k)| (t, b, Some(k)))
                    }
                }
                .map_err(what)?;
                rows.push(row(l, target, bits, time, bytes, per_submit, plan.devices));
            }
            // Ratios to f32 once the layer's rows on this backend are in.
            let f32_time = rows[first..]
                .iter()
                .find(|r| r.bits == 32)
                .map(|r| r.time.median_s);
            for r in &mut rows[first..] {
                r.vs_f32 = f32_time.map(|t| t / r.time.median_s);
            }
        }
    }
    Ok(rows)
}

fn row(
    l: &LayerShape,
    target: Target,
    bits: u8,
    time: Spread,
    bytes: u64,
    per_submit: Option<usize>,
    devices: &[DeviceFigures],
) -> ConvRow {
    let c = &l.conv;
    let macs = l.macs();
    let gops = 2.0 * macs as f64 / time.median_s / 1e9;
    let gbps = bytes as f64 / time.median_s / 1e9;
    let dev = devices.iter().find(|d| d.backend == target);
    ConvRow {
        layer: l.name.clone(),
        backend: target,
        bits,
        input: [l.n, c.in_channels, l.h, l.w],
        weight: [
            c.out_channels,
            c.in_channels / c.groups,
            c.kernel[0],
            c.kernel[1],
        ],
        stride: c.stride[0],
        groups: c.groups,
        linear: l.linear,
        macs,
        bytes,
        time,
        gops,
        gbps,
        vs_f32: None,
        dot4_peak_fraction: dev
            .and_then(|d| d.dot4_gops)
            .filter(|_| bits != 32)
            .map(|p| gops / p),
        copy_bw_fraction: dev.map(|d| gbps / d.copy_gbps),
        per_submit,
    }
}
