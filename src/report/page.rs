//! The HTML report: one self-contained page (inline CSS and SVG, no scripts, nothing
//! fetched) showing what quantization did to each layer of a [`QuantModel`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::charts;
use super::windows::{act_sqnr, point_windows, worst_points};
use crate::error::Result;
use crate::eval::ablate::Ablation;
use crate::qmodel::QuantModel;
use crate::quant::stats::TensorStats;

/// Activation points whose clip windows are drawn.
pub const WORST_POINTS: usize = 6;

/// Everything one report shows.
pub struct ReportInput<'a> {
    /// The model as the user named it.
    pub model: String,
    pub q: &'a QuantModel,
    /// Statistics of the activation points (with histograms when taken from images).
    pub stats: Option<&'a BTreeMap<String, TensorStats>>,
    /// Where `stats` come from, for the page.
    pub stats_note: String,
    pub ablation: Option<&'a Ablation>,
    /// Where statistics were computed ("cpu", "gpu (...)"), or "-".
    pub backend: String,
}

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const STYLE: &str = "body{font-family:sans-serif;margin:24px;color:#222;max-width:1160px}\
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:28px}\
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}\
th{background:#f0f0f0}.row{display:flex;flex-wrap:wrap;gap:12px}.note{color:#555;font-size:13px}\
pre{font-size:11px;overflow-x:auto}";

/// Renders the page.
pub fn render(r: &ReportInput) -> Result<String> {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>ptq4 report: {}</title><style>{STYLE}</style></head><body>\n<h1>ptq4 report: {}</h1>\n",
        esc(&r.model),
        esc(&r.model)
    );
    summary(&mut h, r)?;
    let asq = activation_sqnr(r)?;
    sqnr(&mut h, r, &asq)?;
    windows(&mut h, r, &asq.0)?;
    bits(&mut h, r)?;
    if let Some(a) = r.ablation {
        ablation(&mut h, a)?;
    }
    environment(&mut h, r);
    let _ = write!(
        h,
        "<h2>Plan</h2><details><summary>per-layer table</summary><pre>{}</pre></details>\n</body></html>\n",
        esc(&super::plan::text(&r.q.plan))
    );
    Ok(h)
}

/// Renders the page and writes it to `path` (atomically).
pub fn write(r: &ReportInput, path: &Path) -> Result<()> {
    crate::io::model::write_atomic(path, render(r)?.as_bytes())
}

fn summary(h: &mut String, r: &ReportInput) -> Result<()> {
    let q = r.q;
    let c = &q.plan.config;
    let fp32: usize = q.dequantized.params.values().map(|t| t.numel() * 4).sum();
    let bytes = q.weight_bytes()?;
    let rows = [
        (
            "model",
            format!("{} (graph {})", r.model, q.dequantized.name),
        ),
        ("protocol", format!("{:?}", c.protocol).to_lowercase()),
        ("bits", format!("W{} A{}", c.wbits, c.abits)),
        (
            "methods",
            format!(
                "clip {:?}, prior {:?}, bit allocation {:?}, bias correction {} ({:?}), dual {}, rounding {:?}, equalize {}",
                c.clip, c.prior, c.bit_alloc, c.bias_correction, c.bias_mode, c.dual, c.rounding, c.equalize
            )
            .to_lowercase(),
        ),
        ("statistics", q.plan.source.clone()),
        ("kept at 8 bits", q.plan.kept_8bit.join(", ")),
        (
            "layers",
            format!(
                "{} conv/linear, {} activation quantization points",
                q.plan.layers.len(),
                q.plan.acts.len()
            ),
        ),
        (
            "weight size",
            format!(
                "FP32 {:.2} MB (BatchNorm folded) → quantized {:.2} MB ({:.1} %)",
                fp32 as f64 / 1e6,
                bytes as f64 / 1e6,
                100.0 * bytes as f64 / fp32.max(1) as f64
            ),
        ),
    ];
    h.push_str("<h2>Model and plan</h2><table>");
    for (k, v) in rows {
        let _ = write!(h, "<tr><th>{k}</th><td>{}</td></tr>", esc(&v));
    }
    h.push_str("</table>\n");
    Ok(())
}

/// Activation SQNR per point: the plan's, or recomputed from the report's histograms; and
/// whether any was recomputed.
fn activation_sqnr(r: &ReportInput) -> Result<(Vec<Option<f64>>, bool)> {
    let mut recomputed = false;
    let mut out = Vec::with_capacity(r.q.plan.acts.len());
    for a in &r.q.plan.acts {
        let v = match (a.sqnr_db, r.stats.and_then(|s| s.get(&a.value))) {
            (Some(v), _) => Some(v),
            (None, Some(s)) => {
                let v = act_sqnr(a, s)?;
                recomputed |= v.is_some();
                v
            }
            (None, None) => None,
        };
        out.push(v);
    }
    Ok((out, recomputed))
}

fn sqnr(h: &mut String, r: &ReportInput, asq: &(Vec<Option<f64>>, bool)) -> Result<()> {
    let q = r.q;
    h.push_str("<h2>Per layer: signal-to-quantization-noise ratio and clip windows</h2><p class=\"note\">SQNR: higher is better; every 6 dB is about one bit. Weights: the deployed weights against FP32. Activations: the quantizer on the calibration histogram. Clip windows: the range each activation quantization point keeps (per-channel points: the widest channel).</p><div class=\"row\">");
    let names: Vec<String> = q.plan.layers.iter().map(|l| l.node.clone()).collect();
    let w: Vec<Option<f64>> = q.plan.layers.iter().map(|l| Some(l.info.sqnr_db)).collect();
    h.push_str(&charts::hbars("weight SQNR", "dB", &names, &w)?);
    if asq.0.iter().any(Option::is_some) {
        let names: Vec<String> = q.plan.acts.iter().map(|a| a.value.clone()).collect();
        let title = if asq.1 {
            "activation SQNR (on the report's histograms)"
        } else {
            "activation SQNR"
        };
        h.push_str(&charts::hbars(title, "dB", &names, &asq.0)?);
    }
    h.push_str(&window_spans(r)?);
    h.push_str("</div>\n");
    if asq.0.iter().all(Option::is_none) {
        let _ = writeln!(
            h,
            "<p class=\"note\">No activation SQNR: the plan's statistics ({}) have no histograms.</p>",
            esc(&q.plan.source)
        );
    }
    Ok(())
}

/// The chosen clip window of every activation point, as one chart.
fn window_spans(r: &ReportInput) -> Result<String> {
    let acts = &r.q.plan.acts;
    let labels: Vec<String> = acts
        .iter()
        .map(|a| {
            let lo = a.params.iter().map(|p| p.bits).min().unwrap_or(0);
            let hi = a.params.iter().map(|p| p.bits).max().unwrap_or(0);
            if lo == hi {
                format!("{} ({hi} bits)", a.value)
            } else {
                format!("{} ({lo}..{hi} bits)", a.value)
            }
        })
        .collect();
    let spans: Vec<Option<(f64, f64)>> = acts
        .iter()
        .map(|a| {
            let w = a
                .params
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |w, p| {
                    let (lo, hi) = p.window();
                    (w.0.min(lo as f64), w.1.max(hi as f64))
                });
            w.0.is_finite().then_some(w)
        })
        .collect();
    charts::hspans("activation clip windows", "value", &labels, &spans)
}

fn windows(h: &mut String, r: &ReportInput, asq: &[Option<f64>]) -> Result<()> {
    let acts = &r.q.plan.acts;
    h.push_str("<h2>The worst activation points: candidate clip windows</h2>");
    let Some(stats) = r.stats else {
        h.push_str("<p class=\"note\">No statistics: the quantized file stores the chosen windows, not the calibration histograms. Run <code>ptq4 report --model Q --calib DIR</code> (or <code>ptq4 quantize --report-html</code>) to draw them.</p>\n");
        return Ok(());
    };
    let pts = worst_points(acts, asq, |v| stats.contains_key(v), WORST_POINTS);
    let hist = pts
        .iter()
        .all(|&i| stats[&acts[i].value].tensor.hist.is_some());
    let _ = write!(
        h,
        "<p class=\"note\">Statistics: {}. Each chart: the tensor's pre-activation values, the candidate windows at the point's bit-width (thick: the plan's method) and, shaded, the widest window the plan uses. {}</p><div class=\"row\">",
        esc(&r.stats_note),
        if hist {
            "The points with the lowest activation SQNR."
        } else {
            "No histograms: the curve is the Gaussian the data-free statistics assume; points in graph order."
        }
    );
    for i in pts {
        let a = &acts[i];
        let w = point_windows(a, &stats[&a.value])?;
        h.push_str(&charts::window_chart(&w)?);
    }
    h.push_str("</div>\n");
    Ok(())
}

fn bits(h: &mut String, r: &ReportInput) -> Result<()> {
    let q = r.q;
    h.push_str("<h2>Allocated bits over channels</h2>");
    let w: Vec<Vec<u8>> = q
        .plan
        .layers
        .iter()
        .map(|l| l.params.iter().map(|p| p.bits).collect())
        .collect();
    h.push_str(&charts::bit_stacks(
        "weights: channels per bit-width, each layer",
        "layer (graph order)",
        &w,
    )?);
    let a: Vec<Vec<u8>> = q
        .plan
        .acts
        .iter()
        .map(|a| a.params.iter().map(|p| p.bits).collect())
        .collect();
    if a.iter().any(|b| b.len() > 1) {
        h.push_str(&charts::bit_stacks(
            "activations: channels per bit-width, each quantization point",
            "activation quantization point (graph order)",
            &a,
        )?);
    }
    h.push('\n');
    Ok(())
}

fn ablation(h: &mut String, a: &Ablation) -> Result<()> {
    let _ = write!(
        h,
        "<h2>Ablation</h2><p class=\"note\">{} W{}A{}: evaluated on n = {} inputs (views {}), calibrated on {}.</p><table><tr><th>protocol</th><th>method</th><th>top-1 %</th><th>top-5 %</th><th>agree top-1 %</th><th>agree top-5 %</th><th>KL</th><th>quantize s</th><th>statistics</th></tr>",
        esc(&a.model), a.wbits, a.abits, a.n_eval, a.views, esc(&a.calibration)
    );
    let pct = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.1}", 100.0 * v));
    for r in &a.rows {
        let _ = write!(
            h,
            "<tr><td>{:?}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{:.4}</td><td>{:.2}</td><td>{}</td></tr>",
            r.protocol,
            esc(&r.method),
            pct(r.top1),
            pct(r.top5),
            100.0 * r.agreement_top1,
            100.0 * r.agreement_top5,
            r.kl_mean,
            r.quantize_s,
            esc(&r.statistics)
        );
    }
    h.push_str("</table>");
    let labels: Vec<String> = a
        .rows
        .iter()
        .map(|r| format!("{:?}: {}", r.protocol, r.method).to_lowercase())
        .collect();
    let v: Vec<Option<f64>> = a
        .rows
        .iter()
        .map(|r| Some(100.0 * r.agreement_top1))
        .collect();
    h.push_str(&charts::hbars(
        "top-1 agreement with FP32",
        "%",
        &labels,
        &v,
    )?);
    h.push('\n');
    Ok(())
}

fn environment(h: &mut String, r: &ReportInput) {
    let rows = [
        ("ptq4", env!("CARGO_PKG_VERSION").to_string()),
        (
            "system",
            format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
        ),
        ("CPU threads", rayon::current_num_threads().to_string()),
        ("statistics computed on", r.backend.clone()),
    ];
    h.push_str("<h2>Environment</h2><table>");
    for (k, v) in rows {
        let _ = write!(h, "<tr><th>{k}</th><td>{}</td></tr>", esc(&v));
    }
    h.push_str("</table>\n");
}
