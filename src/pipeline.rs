//! The quantization pipeline end to end, from an FP32 model prepared once ([`Fp32Model`]):
//! statistics (images or data-free) → plan → quantized model. The library entry point
//! behind `ptq4 quantize` and `ablate`.

use std::time::Instant;

use crate::calib::{self, Calibration};
use crate::engine::Backend;
use crate::error::{Error, Result};
use crate::io::dataset::Dataset;
use crate::model::Fp32Model;
use crate::qmodel::QuantModel;
use crate::quant::config::{quant_points, QuantConfig};
use crate::quant::plan::make_plan_hessians;

/// Where activation statistics come from.
#[derive(Clone, Copy)]
pub enum StatsSource<'a> {
    /// `n` calibration inputs (after view expansion), spread over the dataset.
    Images {
        data: &'a Dataset,
        n: usize,
        views: usize,
        batch: usize,
    },
    /// BatchNorm statistics and moment propagation (docs/METHOD.md §6).
    DataFree,
}

/// The equalized model when `cfg` asks for it (`quant::equalize`; deterministic, so
/// [`statistics`] and [`quantize_with`] each equalize and agree).
pub fn equalized(m: &Fp32Model, cfg: &QuantConfig) -> Result<Option<Fp32Model>> {
    cfg.equalize.then(|| m.equalized()).transpose()
}

/// Statistics for the quantization points `cfg` implies (with the layers' input Hessians
/// when `cfg` rounds with GPTQ or corrects biases from the inputs).
pub fn statistics(
    m: &Fp32Model,
    cfg: &QuantConfig,
    src: StatsSource,
    backend: &Backend,
    progress: bool,
) -> Result<Calibration> {
    let eq = equalized(m, cfg)?;
    let m = eq.as_ref().unwrap_or(m);
    let points = quant_points(&m.prepared, cfg);
    match src {
        StatsSource::Images {
            data,
            n,
            views,
            batch,
        } => {
            let inputs = calib::CalibInputs::new(&m.prepared, data, views, n, batch)?;
            let hessians = cfg.needs_layer_inputs();
            calib::calibrate_batches_with(
                &m.prepared,
                &points,
                &inputs,
                backend,
                progress,
                hessians,
            )
        }
        StatsSource::DataFree => calib::data_free(&m.stored, &m.prepared, &points),
    }
}

/// Plans and builds the quantized model from statistics. A `deploy` plan the integer
/// kernels cannot run is refused here, naming the node. On the GPU backend the MMSE clip
/// objective is evaluated on the device; the plan is the same (`quant::mmse`).
pub fn quantize_with(
    m: &Fp32Model,
    cfg: &QuantConfig,
    cal: &Calibration,
    backend: &Backend,
) -> Result<QuantModel> {
    let eq = equalized(m, cfg)?;
    let g = &eq.as_ref().unwrap_or(m).prepared;
    let points = quant_points(g, cfg);
    let mut mse = backend.mse_eval();
    let plan = make_plan_hessians(
        g,
        cfg,
        &points,
        &cal.stats,
        &cal.means,
        &cal.hessians,
        &cal.source,
        &mut *mse,
    )?;
    let q = QuantModel::new(g, plan)?;
    if let Some(Err(why)) = &q.int {
        return Err(Error::Quant(format!(
            "--protocol deploy: the integer kernels cannot run this model: {why}; \
             quantize with --protocol paper instead"
        )));
    }
    Ok(q)
}

/// Statistics, plan and model in one call; returns the model and the seconds it took
/// (excluding model loading).
pub fn quantize(
    m: &Fp32Model,
    cfg: &QuantConfig,
    src: StatsSource,
    backend: &Backend,
    progress: bool,
) -> Result<(QuantModel, f64)> {
    let t = Instant::now();
    let cal = statistics(m, cfg, src, backend, progress)?;
    let q = quantize_with(m, cfg, &cal, backend)?;
    Ok((q, t.elapsed().as_secs_f64()))
}
