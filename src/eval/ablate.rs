//! The paper's ablation for one model: for each protocol, FP32, the per-channel min-max
//! baseline, each method alone, the methods combined, OMSE, OMSE with dual tensors, the
//! methods beyond the papers alone (input-aware bias correction, GPTQ rounding, cross-layer
//! equalization) and in the recommended preset (with and without equalization), and the
//! combinations from data-free statistics — each measured against labels and against FP32.
//! Equalized rows take their statistics from the equalized model (calibrated once more).

use std::collections::BTreeSet;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::metrics::{accuracy, agreement};
use super::run::{collect_logits, EvalOptions};
use crate::calib::Calibration;
use crate::engine::{Backend, Executable};
use crate::error::Result;
use crate::io::dataset::Dataset;
use crate::model::Fp32Model;
use crate::pipeline;
use crate::quant::config::{
    quant_points, BiasMode, BitAlloc, ClipMethod, Protocol, QuantConfig, Rounding,
};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    pub protocol: Protocol,
    pub method: String,
    pub top1: Option<f64>,
    pub top5: Option<f64>,
    pub agreement_top1: f64,
    pub agreement_top5: f64,
    pub kl_mean: f64,
    /// Statistics + planning time (the shared calibration counted in every calibrated row).
    pub quantize_s: f64,
    pub statistics: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Ablation {
    pub model: String,
    pub wbits: u8,
    pub abits: u8,
    pub n_eval: usize,
    pub views: usize,
    pub calibration: String,
    pub kept_8bit: Vec<String>,
    pub rows: Vec<Row>,
}

pub struct AblateOptions {
    pub wbits: u8,
    pub abits: u8,
    pub calib_n: usize,
    pub eval: EvalOptions,
    pub protocols: Vec<Protocol>,
    pub backend: Backend,
}

/// The methods of the table, as configurations (the bool: data-free statistics).
pub fn methods(wbits: u8, abits: u8, protocol: Protocol) -> Vec<(&'static str, QuantConfig, bool)> {
    let base = QuantConfig::baseline(wbits, abits, protocol);
    let alloc = if protocol == Protocol::Paper {
        BitAlloc::Wa
    } else {
        BitAlloc::W
    };
    let combined = QuantConfig {
        clip: ClipMethod::Aciq,
        bit_alloc: alloc,
        bias_correction: true,
        ..base.clone()
    };
    let omse = QuantConfig {
        clip: ClipMethod::Mmse,
        ..base.clone()
    };
    vec![
        ("baseline (min-max)", base.clone(), false),
        (
            "aciq",
            QuantConfig {
                clip: ClipMethod::Aciq,
                ..base.clone()
            },
            false,
        ),
        (
            "bit allocation",
            QuantConfig {
                bit_alloc: alloc,
                ..base.clone()
            },
            false,
        ),
        (
            "bias correction",
            QuantConfig {
                bias_correction: true,
                ..base.clone()
            },
            false,
        ),
        ("aciq + alloc + bc", combined.clone(), false),
        ("omse", omse.clone(), false),
        ("omse + dual(3)", QuantConfig { dual: 3, ..omse }, false),
        (
            "bias correction (input)",
            QuantConfig {
                bias_correction: true,
                bias_mode: BiasMode::Input,
                ..base.clone()
            },
            false,
        ),
        (
            "gptq",
            QuantConfig {
                rounding: Rounding::Gptq,
                ..base
            },
            false,
        ),
        (
            "best (--preset best)",
            QuantConfig::best(wbits, abits, protocol, false),
            false,
        ),
        ("aciq + alloc + bc, data-free", combined, true),
        (
            "best (--preset best), data-free",
            QuantConfig::best(wbits, abits, protocol, true),
            true,
        ),
        (
            "equalize",
            QuantConfig {
                equalize: true,
                ..QuantConfig::baseline(wbits, abits, protocol)
            },
            false,
        ),
        (
            "equalize + best",
            QuantConfig {
                equalize: true,
                ..QuantConfig::best(wbits, abits, protocol, false)
            },
            false,
        ),
        (
            "equalize, data-free",
            QuantConfig {
                equalize: true,
                ..QuantConfig::baseline(wbits, abits, protocol)
            },
            true,
        ),
        (
            "equalize + best, data-free",
            QuantConfig {
                equalize: true,
                ..QuantConfig::best(wbits, abits, protocol, true)
            },
            true,
        ),
    ]
}

/// Runs the ablation. Calibration statistics are gathered once for the union of both
/// protocols' quantization points and shared by every calibrated row.
pub fn ablate(
    m: &Fp32Model,
    name: &str,
    calib: &Dataset,
    eval: &Dataset,
    o: &AblateOptions,
) -> Result<Ablation> {
    Ok(ablate_with(m, name, calib, eval, o, &mut |_| {})?.0)
}

/// [`ablate`], calling `on_row` with each row as soon as it is measured, and returning the
/// image calibration too (for a report of the combined method).
pub fn ablate_with(
    m: &Fp32Model,
    name: &str,
    calib: &Dataset,
    eval: &Dataset,
    o: &AblateOptions,
    on_row: &mut dyn FnMut(&Row),
) -> Result<(Ablation, Calibration)> {
    let super::run::Logits {
        values: fp,
        labels,
        classes,
        ..
    } = collect_logits(
        &o.backend.bind(Executable::Fp32(&m.prepared), None)?,
        eval,
        &o.eval,
    )?;
    let all: Vec<(&str, QuantConfig, bool)> = (o.protocols.iter())
        .flat_map(|&p| methods(o.wbits, o.abits, p))
        .collect();
    // Statistics per model (FP32 as is, and equalized when a row asks for it), each once:
    // (calibrated, its seconds, data-free, its seconds).
    let stats_for = |fm: &Fp32Model,
                     equalize: bool|
     -> Result<(Calibration, f64, Calibration, f64)> {
        let mut union = BTreeSet::new();
        let mut points = Vec::new();
        for &p in &o.protocols {
            let cfg = QuantConfig::baseline(o.wbits, o.abits, p);
            for pt in quant_points(&fm.prepared, &cfg) {
                if union.insert(pt.value.clone()) {
                    points.push(pt);
                }
            }
        }
        let t = Instant::now();
        let inputs = crate::calib::CalibInputs::new(
            &fm.prepared,
            calib,
            o.eval.views,
            o.calib_n,
            o.eval.batch,
        )?;
        let hessians = (all.iter())
            .any(|(_, cfg, free)| !free && cfg.equalize == equalize && cfg.needs_layer_inputs());
        let cal_images = crate::calib::calibrate_batches_with(
            &fm.prepared,
            &points,
            &inputs,
            &o.backend,
            o.eval.progress,
            hessians,
        )?;
        let t_images = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let cal_free = crate::calib::data_free(&fm.stored, &fm.prepared, &points)?;
        Ok((cal_images, t_images, cal_free, t.elapsed().as_secs_f64()))
    };
    let (cal_images, t_images, cal_free, t_free) = stats_for(m, false)?;
    let eq = if all.iter().any(|(_, cfg, _)| cfg.equalize) {
        let t = Instant::now();
        let e = m.equalized()?;
        let secs = t.elapsed().as_secs_f64();
        let (ci, ti, cf, tf) = stats_for(&e, true)?;
        Some((ci, ti + secs, cf, tf + secs))
    } else {
        None
    };
    let mut rows = Vec::new();
    // Logits of the models measured so far: a row whose plan quantizes to one of them (bit
    // allocation that gives every channel the mean bits, say) reuses its logits.
    let mut measured: Vec<(crate::quant::plan::Plan, Vec<f32>)> = Vec::new();
    for &p in &o.protocols {
        let fp_row = Row {
            protocol: p,
            method: "fp32".into(),
            top1: accuracy(&fp, classes, &labels, 1),
            top5: accuracy(&fp, classes, &labels, 5),
            agreement_top1: 1.0,
            agreement_top5: 1.0,
            kl_mean: 0.0,
            quantize_s: 0.0,
            statistics: "-".into(),
        };
        on_row(&fp_row);
        rows.push(fp_row);
        for (method, cfg, free) in methods(o.wbits, o.abits, p) {
            let (cal, t_stats): (&Calibration, f64) = match (&eq, cfg.equalize, free) {
                (Some((_, _, cf, tf)), true, true) => (cf, *tf),
                (Some((ci, ti, _, _)), true, false) => (ci, *ti),
                (_, _, true) => (&cal_free, t_free),
                (_, _, false) => (&cal_images, t_images),
            };
            let t = Instant::now();
            let q = pipeline::quantize_with(m, &cfg, cal, &o.backend)?;
            let secs = t_stats + t.elapsed().as_secs_f64();
            let ql = match measured.iter().find(|(plan, _)| plan.same_model(&q.plan)) {
                Some((_, l)) => l.clone(),
                None => {
                    let l = collect_logits(&o.backend.bind(q.executable()?, None)?, eval, &o.eval)?
                        .values;
                    measured.push((q.plan.clone(), l.clone()));
                    l
                }
            };
            let a = agreement(&ql, &fp, classes);
            let row = Row {
                protocol: p,
                method: method.into(),
                top1: accuracy(&ql, classes, &labels, 1),
                top5: accuracy(&ql, classes, &labels, 5),
                agreement_top1: a.agreement_top1,
                agreement_top5: a.agreement_top5,
                kl_mean: a.kl_mean,
                quantize_s: secs,
                statistics: cal.source.clone(),
            };
            on_row(&row);
            rows.push(row);
        }
    }
    let ablation = Ablation {
        model: name.into(),
        wbits: o.wbits,
        abits: o.abits,
        n_eval: labels.len(),
        views: o.eval.views,
        calibration: cal_images.source.clone(),
        kept_8bit: QuantConfig::baseline(o.wbits, o.abits, Protocol::Paper)
            .kept_layers(&m.prepared),
        rows,
    };
    Ok((ablation, cal_images))
}
