//! Statistics for planning, at every activation quantization point.
//!
//! - From images: the engine runs over the calibration inputs twice (docs/METHOD.md §2; the
//!   two-pass design of [`crate::quant::stats`]): pass 1 gathers per-channel count, sum,
//!   sum of squares, min and max; pass 2 the mean absolute deviation and histograms. Only
//!   the accumulators are kept, never activations, so memory does not grow with the number
//!   of images. Statistics are taken on the pre-activation tensor of conv/linear outputs
//!   (after folded BN, before the fused ReLU), as ACIQ prescribes.
//! - Data-free (docs/METHOD.md §6): each conv followed by BatchNorm has pre-activation channels
//!   N(β_c, γ_c²); moments propagate through residual sums (independent channels: means and
//!   variances add), fused activations (exact clipped-Gaussian moments), pooling (mean kept;
//!   variance kept as an upper bound, since averaging only shrinks it), convs without
//!   BatchNorm (linear map of moments) and the graph input (uniform over the range the
//!   preprocessing can produce).
//!
//! The image path runs on either backend ([`calibrate_batches`]): the CPU engine with a
//! [`Hook`], or the device ([`crate::calib::device`]) reducing statistics where the
//! activations live; both share the accumulators and walk the same [`Batches`]: for
//! images, [`CalibInputs`] decodes each batch when a pass reaches it, so memory stays flat
//! in the number of images ([`inputs`]).
//! Both run the forward with the precise conv/linear/global-average-pool kernels
//! ([`crate::engine::cpu::precise`] and its GPU twin: each output the exact sum rounded
//! once), so the statistics do not depend on either backend's f32 summation order: clip
//! windows agree within 1e-5 between backends (the fast kernels' rounding moved some by
//! ~1e-4 on EfficientNet-Lite0). On the CPU a precise pass with its statistics costs about 8×
//! the fast FP32 forward on Lite0 (README, "Side by side"), ~2× on lavapipe; the statistics
//! are reduced channels in parallel, each sum in input order.
//!
//! Both also give the post-activation mean of every channel of every value read by a
//! conv/linear layer, which bias correction deploys into the bias, and on request
//! ([`calibrate_batches_with`]) the Hessian Σ x xᵀ and the sum Σ x of every layer's input
//! patches for second-order rounding and input-aware bias correction ([`crate::quant::gptq`]): f64 K × K accumulators, flat in the
//! number of images, computed on the host (the device pass reads the layer inputs back).
//! They are the FP32 model's inputs of each layer (the activation quantizers are chosen
//! from these same statistics, after the pass).
//!
//! Files: `accum.rs` (the accumulators both passes fill and how they finish), `cpu.rs` (the
//! CPU pass: a hook on the engine's graph executor), `device.rs` (the device pass),
//! `datafree.rs` (moment propagation), `inputs.rs` (batches of calibration inputs).

mod accum;
mod cpu;
mod datafree;
pub mod device;
mod inputs;

use std::collections::BTreeMap;

pub use datafree::data_free;
pub use inputs::{Batches, CalibInputs};

use crate::engine::Backend;
use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::io::dataset::Dataset;
use crate::quant::config::QuantPoint;
use crate::quant::gptq::Hessian;
use crate::quant::plan::ActQuant;
use crate::quant::stats::TensorStats;
use crate::tensor::Tensor;

/// Everything the planner needs to know about activations.
#[derive(Clone, Debug, Default)]
pub struct Calibration {
    /// Pre-activation statistics per quantization point (by value name).
    pub stats: BTreeMap<String, TensorStats>,
    /// Post-activation channel means of the values read by conv/linear layers.
    pub means: BTreeMap<String, Vec<f64>>,
    /// Hessians Σ x xᵀ of every conv/linear layer's input patches, by layer name (only when
    /// asked for: `--rounding gptq`).
    pub hessians: BTreeMap<String, Hessian>,
    /// "N images" or "data-free".
    pub source: String,
}

/// Indices of `n` inputs spread evenly over `total` (all of them when n ≥ total), so a
/// small budget still sees every image rather than all views of the first few.
pub fn spread_indices(total: usize, n: usize) -> Vec<usize> {
    if n >= total {
        return (0..total).collect();
    }
    (0..n).map(|i| i * total / n).collect()
}

/// Calibrates from images: `n` inputs (after view expansion) of `data`, on the CPU.
pub fn calibrate(
    g: &Graph,
    points: &[QuantPoint],
    data: &Dataset,
    views: usize,
    n: usize,
    batch: usize,
    progress: bool,
) -> Result<Calibration> {
    g.validate()?;
    let inputs = CalibInputs::new(g, data, views, n, batch)?;
    calibrate_batches(g, points, &inputs, &Backend::Cpu, progress)
}

/// Statistics of a plan's activation points `acts`, recomputed on `n` inputs of `data`
/// through `g` (for a quantized model, the graph with its dequantized weights: its file
/// keeps no FP32 weights, so these are the activations of the quantized-weight model before
/// activation quantization).
pub fn recalibrate(
    g: &Graph,
    acts: &[ActQuant],
    data: &Dataset,
    n: usize,
    batch: usize,
    backend: &Backend,
    progress: bool,
) -> Result<Calibration> {
    let points: Vec<QuantPoint> = acts
        .iter()
        .map(|a| QuantPoint {
            value: a.value.clone(),
            bits: a.params.iter().map(|p| p.bits).max().unwrap_or(0),
            per_channel: a.per_channel,
            act: a.act,
        })
        .collect();
    let batches = load_batches(g, data, 1, n, batch)?;
    calibrate_batches(g, &points, &batches, backend, progress)
}

/// All the calibration inputs [`CalibInputs`] would decode batch by batch, decoded at once
/// (for callers that reuse them; memory grows with `n`).
pub fn load_batches(
    g: &Graph,
    data: &Dataset,
    views: usize,
    n: usize,
    batch: usize,
) -> Result<Vec<Tensor>> {
    let inputs = CalibInputs::new(g, data, views, n, batch)?;
    (0..inputs.count())
        .map(|i| Ok(inputs.batch(i)?.into_owned()))
        .collect()
}

/// Two-pass calibration over `batches` (decoded tensors or [`CalibInputs`]) on `backend`
/// (the GPU path is [`crate::calib::device::calibrate_gpu`]).
pub fn calibrate_batches<B: Batches + ?Sized>(
    g: &Graph,
    points: &[QuantPoint],
    batches: &B,
    backend: &Backend,
    progress: bool,
) -> Result<Calibration> {
    calibrate_batches_with(g, points, batches, backend, progress, false)
}

/// [`calibrate_batches`], with the Hessians of every layer's input patches accumulated in
/// pass 1 when `hessians` (on the device backend, from layer inputs read back to the host).
pub fn calibrate_batches_with<B: Batches + ?Sized>(
    g: &Graph,
    points: &[QuantPoint],
    batches: &B,
    backend: &Backend,
    progress: bool,
    hessians: bool,
) -> Result<Calibration> {
    let images = batches.inputs();
    if images == 0 {
        return Err(Error::Dataset("no calibration images".into()));
    }
    let bar = crate::progress::progress(2 * images as u64, "calibrate", progress);
    let cal = match backend {
        Backend::Cpu => cpu::calibrate_cpu(g, points, batches, hessians, &bar),
        Backend::Gpu(ctx) => {
            crate::calib::device::calibrate_gpu_with(ctx, g, points, batches, hessians, &bar)
        }
    };
    bar.finish_and_clear();
    cal
}
