//! Output for people: progress bars on stderr, Markdown tables, and the HTML report
//! ([`page`]: summary, per-layer SQNR, clip windows on histograms, bits, ablation).

pub mod charts;
pub mod page;
pub mod windows;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::calib::{self, Calibration};
use crate::engine::Backend;
use crate::error::Result;
use crate::io::dataset::Dataset;
use crate::qmodel::QuantModel;
use crate::quant::config::QuantPoint;

pub use page::{render, write, ReportInput};

/// A progress bar on stderr; hidden when `show` is false or stderr is not a terminal.
pub fn progress(len: u64, what: &str, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {elapsed_precise}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(what.to_string());
    bar
}

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
    let batches = calib::load_batches(&q.sim, data, 1, n, batch)?;
    calib::calibrate_batches(&q.sim, &points, &batches, backend, progress)
}
