//! A quantization plan for people: one row per conv/linear layer (weight bits and SQNR, the
//! quantizer of the layer's output activation), as a fixed-width table and as JSON. The
//! table is what `quantize` and `inspect` print and the HTML report embeds; the JSON is
//! `quantize --report`, `quantize --json`'s `plan` and `inspect --json`'s `plan`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::json;

use crate::quant::plan::{ActQuant, Plan};
use crate::quant::QParams;

/// (min, mean, max) of per-channel bit-widths.
fn bits_summary(p: &[QParams]) -> (u8, f64, u8) {
    let min = p.iter().map(|q| q.bits).min().unwrap_or(0);
    let max = p.iter().map(|q| q.bits).max().unwrap_or(0);
    let mean = p.iter().map(|q| q.bits as f64).sum::<f64>() / p.len().max(1) as f64;
    (min, mean, max)
}

/// The widest clip window over channels.
fn window_summary(p: &[QParams]) -> (f32, f32) {
    p.iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), q| {
            let (a, b) = q.window();
            (lo.min(a.min(b)), hi.max(a.max(b)))
        })
}

/// The activation quantizers by value name (a layer's output is its node's name).
fn acts_by_value(plan: &Plan) -> BTreeMap<&str, &ActQuant> {
    plan.acts.iter().map(|a| (a.value.as_str(), a)).collect()
}

/// The plan per layer as JSON: weight bits and SQNR, and the quantizer of the layer's
/// output activation.
pub fn json(plan: &Plan) -> serde_json::Value {
    let c = &plan.config;
    let acts = acts_by_value(plan);
    let layers: Vec<_> = plan
        .layers
        .iter()
        .map(|l| {
            let (bmin, bmean, bmax) = bits_summary(&l.params);
            let act = acts.get(l.node.as_str()).map(|a| {
                let (amin, amean, amax) = bits_summary(&a.params);
                let (lo, hi) = window_summary(&a.params);
                json!({"bits": [amin, amean, amax], "clip": a.clip, "per_channel": a.per_channel,
                       "range": [lo, hi], "sqnr_db": a.sqnr_db})
            });
            json!({"node": l.node, "weight_bits": [bmin, bmean, bmax], "weight_clip": l.info.clip,
                   "bias_corrected": l.info.bias_corrected, "dual": l.info.dual,
                   "kept_8bit": l.info.kept_8bit, "weight_sqnr_db": l.info.sqnr_db, "activation": act})
        })
        .collect();
    json!({"protocol": c.protocol, "wbits": c.wbits, "abits": c.abits, "clip": c.clip,
           "bit_alloc": c.bit_alloc, "bias_correction": c.bias_correction, "dual": c.dual,
           "rounding": c.rounding, "bias_mode": c.bias_mode, "equalize": c.equalize,
           "statistics": plan.source, "kept_8bit": plan.kept_8bit,
           "activation_points": plan.acts.len(), "layers": layers})
}

/// The plan as a table: a configuration line, one row per layer, a line on units.
pub fn text(plan: &Plan) -> String {
    let c = &plan.config;
    let acts = acts_by_value(plan);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "plan: protocol {:?}, W{}A{}, clip {:?}, bit allocation {:?}, bias correction {} ({:?}), dual {}, rounding {:?}, equalize {}; statistics: {}; kept at 8 bits: {}",
        c.protocol, c.wbits, c.abits, c.clip, c.bit_alloc, c.bias_correction, c.bias_mode, c.dual, c.rounding, c.equalize, plan.source,
        plan.kept_8bit.join(", ")
    );
    let _ = writeln!(
        s,
        "{:<30} {:>14} {:>8} {:<24} {:>14} {:>20} {:>8}",
        "layer", "w bits", "w SQNR", "out clip", "a bits", "a range", "a SQNR"
    );
    for l in &plan.layers {
        let (bmin, bmean, bmax) = bits_summary(&l.params);
        let flags = format!(
            "{}{}",
            if l.info.bias_corrected { "+bc" } else { "" },
            if l.info.dual { "+dual" } else { "" }
        );
        let (clip, abits, range, asq) = match acts.get(l.node.as_str()) {
            Some(a) => {
                let (amin, amean, amax) = bits_summary(&a.params);
                let (lo, hi) = window_summary(&a.params);
                (
                    a.clip.clone(),
                    format!("{amin}/{amean:.2}/{amax}"),
                    format!("[{lo:.3}, {hi:.3}]"),
                    a.sqnr_db.map_or("-".into(), |v| format!("{v:.1}")),
                )
            }
            None => ("(not quantized)".into(), "-".into(), "-".into(), "-".into()),
        };
        let _ = writeln!(
            s,
            "{:<30} {:>14} {:>8.1} {:<24} {:>14} {:>20} {:>8}",
            format!("{}{flags}", l.node),
            format!("{bmin}/{bmean:.2}/{bmax}"),
            l.info.sqnr_db,
            clip,
            abits,
            range,
            asq
        );
    }
    let _ = writeln!(s, "bits are min/mean/max over channels; SQNR in dB");
    s
}
