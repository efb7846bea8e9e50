//! Whole-model throughput (`ptq4 bench model`): images/s of one forward of a batch, as
//! [`Forward::forward`] runs it (on the GPU: input upload and logits readback included),
//! for the FP32 model, its W4A4 `paper` simulation and its W4A4 `deploy` integer model
//! (the default method of `ptq4 quantize`).
//!
//! On the GPU each row also gives the device memory the bound model keeps between batches
//! and the peak while it runs, both above what the device held before binding
//! ([`GpuContext::device_bytes`](crate::engine::device::GpuContext::device_bytes)).
//!
//! Statistics: data-free when the stored graph has BatchNorm layers (their statistics stand
//! in for images), else [`SYNTHETIC_IMAGES`] synthetic images (a deterministic pattern over
//! the 0..255 pixel range, normalised as the model's preprocessing says). Timing does not
//! depend on the quality of the statistics.

use serde::Serialize;

use super::{time_cpu, Spread, Target};
use crate::calib;
use crate::engine::{Backend, Forward};
use crate::error::Result;
use crate::graph::{Graph, Op};
use crate::model::Fp32Model;
use crate::pipeline::{self, StatsSource};
use crate::quant::config::{quant_points, Protocol, QuantConfig};
use crate::tensor::Tensor;

/// Calibration images for a model without BatchNorm.
pub const SYNTHETIC_IMAGES: usize = 8;

/// One mode on one backend.
#[derive(Clone, Debug, Serialize)]
pub struct ModelRow {
    pub backend: Target,
    /// "fp32", "paper" or "deploy".
    pub mode: &'static str,
    /// The bound model's own description (device, execution mode).
    pub runs_on: String,
    pub batch: usize,
    pub time: Spread,
    /// batch / median time.
    pub images_per_s: f64,
    /// FP32 median time / this median time on the same backend.
    pub vs_fp32: f64,
    /// GPU: device memory the bound model holds between batches (its weights, uploaded
    /// once), from the device allocator; `None` on the CPU or where the backend does not
    /// report it.
    pub resident_device_bytes: Option<u64>,
    /// GPU: the most device memory in use at any submission while the timed batches ran
    /// (weights + the chunks' activations, uniforms and staging).
    pub peak_device_bytes: Option<u64>,
}

/// The whole-model bench's result.
#[derive(Clone, Debug, Serialize)]
pub struct ModelBench {
    pub model: String,
    /// "data-free" or "N synthetic images".
    pub statistics: String,
    pub rows: Vec<ModelRow>,
}

/// A deterministic `[n, C, H, W]` batch over the pixel range, normalised by `g`'s
/// preprocessing.
pub fn synthetic_batch(g: &Graph, n: usize) -> Result<Tensor> {
    let [c, h, w] = g.input_shape[..] else {
        return Tensor::from_vec(&[0], Vec::new());
    };
    let pre = &g.preprocess;
    let data = (0..n * c * h * w)
        .map(|i| {
            let ch = (i / (h * w) % c).min(2);
            let pixel = ((i * 7919 + i / 97) % 256) as f32;
            (pixel - pre.mean[ch]) / pre.std[ch]
        })
        .collect();
    Tensor::from_vec(&[n, c, h, w], data)
}

/// Quantizes `m` for `protocol` with the default method.
fn quantize(m: &Fp32Model, protocol: Protocol) -> Result<(crate::qmodel::QuantModel, String)> {
    let cfg = QuantConfig {
        protocol,
        ..QuantConfig::default()
    };
    let has_bn = m
        .stored
        .nodes
        .iter()
        .any(|n| matches!(n.op, Op::BatchNorm { .. }));
    let cal = if has_bn {
        pipeline::statistics(m, &cfg, StatsSource::DataFree, &Backend::Cpu, false)?
    } else {
        let points = quant_points(&m.prepared, &cfg);
        let x = vec![synthetic_batch(&m.prepared, SYNTHETIC_IMAGES)?];
        calib::calibrate_batches(&m.prepared, &points, &x, &Backend::Cpu, false)?
    };
    let source = if has_bn {
        "data-free".to_string()
    } else {
        format!("{SYNTHETIC_IMAGES} synthetic images")
    };
    Ok((
        pipeline::quantize_with(m, &cfg, &cal, &Backend::Cpu)?,
        source,
    ))
}

/// Images/s of FP32, `paper` and `deploy` on each of `backends`; `tick(what)` before each.
pub fn bench_model(
    name: &str,
    m: &Fp32Model,
    backends: &[(Target, Backend)],
    batch: usize,
    reps: usize,
    tick: &mut dyn FnMut(&str),
) -> Result<ModelBench> {
    tick("quantize");
    let (paper, statistics) = quantize(m, Protocol::Paper)?;
    let (deploy, _) = quantize(m, Protocol::Deploy)?;
    let x = synthetic_batch(&m.prepared, batch)?;
    let mut rows = Vec::new();
    for (target, backend) in backends {
        let modes = [
            ("fp32", crate::engine::Executable::Fp32(&m.prepared)),
            ("paper", paper.executable()?),
            ("deploy", deploy.executable()?),
        ];
        let mut fp32_time = None;
        for (mode, exe) in modes {
            tick(&format!("{mode} {target:?}"));
            let ctx = match backend {
                Backend::Gpu(ctx) => Some(ctx),
                Backend::Cpu => None,
            };
            // Earlier modes' buffers are reclaimed by the wait in `reset_peak`.
            let before = match ctx {
                Some(c) => c.reset_peak().map(|_| c.device_bytes())?,
                None => None,
            };
            let bound = backend.bind(exe, None)?;
            let resident = match ctx {
                Some(c) => c.reset_peak().map(|_| c.device_bytes())?,
                None => None,
            };
            let time = time_cpu(reps, || bound.forward(x.clone()).map(|_| ()))?;
            let peak = ctx.and_then(|c| c.peak_device_bytes());
            let since = |b: Option<u64>| Some(b?.saturating_sub(before?));
            let base = *fp32_time.get_or_insert(time.median_s);
            rows.push(ModelRow {
                backend: *target,
                mode,
                runs_on: bound.describe(),
                batch,
                time,
                images_per_s: batch as f64 / time.median_s,
                vs_fp32: base / time.median_s,
                resident_device_bytes: since(resident),
                peak_device_bytes: since(peak),
            });
        }
    }
    Ok(ModelBench {
        model: name.to_string(),
        statistics,
        rows,
    })
}
