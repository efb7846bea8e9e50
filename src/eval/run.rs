//! One evaluation run: batches of (preprocessed, optionally multi-view) images through a
//! runnable handle ([`Forward`]: a model bound to a backend), logits kept in dataset order,
//! metrics at the end.

use std::time::Instant;

use serde::Serialize;

use super::metrics::{accuracy, agreement, logits_sha256, topk};
use crate::engine::Forward;
use crate::error::{Error, Result};
use crate::graph::Preprocess;
use crate::io::dataset::Dataset;

#[derive(Clone, Debug)]
pub struct EvalOptions {
    pub batch: usize,
    pub limit: Option<usize>,
    pub views: usize,
    pub progress: bool,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            batch: 16,
            limit: None,
            views: 1,
            progress: false,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    pub n: usize,
    pub top1: Option<f64>,
    pub top5: Option<f64>,
    pub images_per_s: f64,
    pub backend: String,
    pub views: usize,
    pub predictions: Vec<usize>,
    pub logits_sha256: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agreement_top1: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agreement_top5: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kl_mean: Option<f64>,
    #[serde(skip)]
    pub logits: Vec<f32>,
}

/// A model's logits over a dataset, in dataset order.
pub struct Logits {
    /// `[n, classes]`, row-major.
    pub values: Vec<f32>,
    pub labels: Vec<Option<usize>>,
    pub classes: usize,
    /// Seconds spent in `forward`.
    pub secs: f64,
}

/// Most bytes of preprocessed images in one batch: a larger `--batch` is split (results do
/// not depend on the batch). A model with 8000×8000 inputs ran out of memory at batch 16.
pub const MAX_BATCH_INPUT_BYTES: usize = 256 << 20;

/// `batch` (at least 1), lowered so that one batch of `pre`'s crops stays within
/// [`MAX_BATCH_INPUT_BYTES`].
pub fn batch_cap(pre: &Preprocess, batch: usize) -> usize {
    let per_image = pre
        .channels
        .saturating_mul(pre.size)
        .saturating_mul(pre.size)
        .saturating_mul(4)
        .max(1);
    batch.clamp(1, (MAX_BATCH_INPUT_BYTES / per_image).max(1))
}

/// Logits of `model` over the dataset, in order, and the seconds spent in `forward`.
pub fn collect_logits(model: &dyn Forward, data: &Dataset, opts: &EvalOptions) -> Result<Logits> {
    let total = data
        .len_views(opts.views)
        .min(opts.limit.unwrap_or(usize::MAX));
    if total == 0 {
        return Err(Error::Dataset(format!(
            "{}: no images",
            data.root.display()
        )));
    }
    model.preprocess().validate(model.name())?;
    let bar = crate::progress::progress(total as u64, "eval", opts.progress);
    let mut logits = Vec::new();
    let mut labels = Vec::with_capacity(total);
    let mut classes = 0;
    let mut secs = 0.0;
    let mut start = 0;
    let batch = batch_cap(model.preprocess(), opts.batch);
    let group = model.concurrent_batches().max(1);
    while start < total {
        // Up to `group` batches loaded, then run side by side; results stay in order.
        let mut xs = Vec::with_capacity(group);
        let mut metas = Vec::with_capacity(group);
        while xs.len() < group && start < total {
            let end = (start + batch).min(total);
            let (x, l) = data.load_batch(start..end, model.preprocess(), opts.views)?;
            xs.push(x);
            metas.push((start..end, l));
            start = end;
        }
        let t = Instant::now();
        let ys: Vec<Result<crate::tensor::Tensor>> = if xs.len() == 1 {
            xs.into_iter().map(|x| model.forward(x)).collect()
        } else {
            use rayon::prelude::*;
            xs.into_par_iter()
                .with_max_len(1)
                .map(|x| model.forward(x))
                .collect()
        };
        secs += t.elapsed().as_secs_f64();
        for ((range, l), y) in metas.into_iter().zip(ys) {
            let y = y?;
            classes = y.numel() / range.len();
            data.check_labels(range.clone(), opts.views, classes)?;
            logits.extend_from_slice(&y.data);
            labels.extend(l);
            bar.inc(range.len() as u64);
        }
    }
    bar.finish_and_clear();
    Ok(Logits {
        values: logits,
        labels,
        classes,
        secs,
    })
}

/// Evaluates `model` (and, if given, a reference on the same inputs).
pub fn evaluate(
    model: &dyn Forward,
    reference: Option<&dyn Forward>,
    data: &Dataset,
    opts: &EvalOptions,
) -> Result<EvalReport> {
    let Logits {
        values: logits,
        labels,
        classes,
        secs,
    } = collect_logits(model, data, opts)?;
    let n = labels.len();
    let mut report = EvalReport {
        n,
        top1: accuracy(&logits, classes, &labels, 1),
        top5: accuracy(&logits, classes, &labels, 5),
        images_per_s: n as f64 / secs.max(1e-9),
        backend: model.describe(),
        views: opts.views,
        predictions: logits.chunks(classes).map(|r| topk(r, 1)[0]).collect(),
        logits_sha256: logits_sha256(&logits),
        agreement_top1: None,
        agreement_top5: None,
        kl_mean: None,
        logits,
    };
    if let Some(r) = reference {
        let Logits {
            values: rl,
            classes: rc,
            ..
        } = collect_logits(r, data, opts)?;
        if rc != classes {
            return Err(Error::Usage(format!(
                "reference model has {rc} classes, the model {classes}"
            )));
        }
        let a = agreement(&report.logits, &rl, classes);
        report.agreement_top1 = Some(a.agreement_top1);
        report.agreement_top5 = Some(a.agreement_top5);
        report.kl_mean = Some(a.kl_mean);
    }
    Ok(report)
}
