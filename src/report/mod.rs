//! Output for people: Markdown tables, and the HTML report
//! ([`page`]: summary, per-layer SQNR, clip windows on histograms, bits, ablation).

pub mod charts;
pub mod page;
pub mod windows;

use crate::calib::{self, Calibration};
use crate::engine::Backend;
use crate::error::Result;
use crate::io::dataset::Dataset;
use crate::qmodel::QuantModel;
use crate::quant::config::QuantPoint;

pub use page::{render, write, ReportInput};

/// Statistics of the plan's activation points, recomputed on `n` inputs of `data` through
/// the dequantized weights of `q` (a quantized file keeps no FP32 weights, so these are
/// the activations of the quantized-weight model before activation quantization).
pub fn recalibrate(
    q: &QuantModel,
    data: &Dataset,
    n: usize,
    batch: usize,
    backend: &Backend,
    progress: bool,
) -> Result<Calibration> {
    let points: Vec<QuantPoint> = q
        .plan
        .acts
        .iter()
        .map(|a| QuantPoint {
            value: a.value.clone(),
            bits: a.params.iter().map(|p| p.bits).max().unwrap_or(0),
            per_channel: a.per_channel,
            act: a.act,
        })
        .collect();
    let batches = calib::load_batches(&q.dequantized, data, 1, n, batch)?;
    calib::calibrate_batches(&q.dequantized, &points, &batches, backend, progress)
}
