//! `ptq4 eval`: accuracy, agreement with a reference, speed, and (with `--compare`) the
//! largest GPU-vs-CPU difference per layer; as aligned lines or one JSON object (the
//! [`EvalReport`] with a `compare` field).

use std::fmt::Write as _;

use crate::engine::LayerDiff;
use crate::error::Result;
use crate::eval::EvalReport;

/// The report as JSON; `compare` adds the per-layer differences.
pub fn json(r: &EvalReport, compare: Option<&[LayerDiff]>) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(r)?;
    if let Some(d) = compare {
        v["compare"] = serde_json::to_value(d)?;
    }
    Ok(v)
}

/// The report for people; `model` and `data` as the user named them.
pub fn text(model: &str, data: &str, r: &EvalReport, compare: Option<&[LayerDiff]>) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "model      {model}");
    let _ = writeln!(o, "data       {data} (n = {}, views = {})", r.n, r.views);
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.2} %", 100.0 * v));
    let _ = writeln!(o, "top-1      {}", pct(r.top1));
    let _ = writeln!(o, "top-5      {}", pct(r.top5));
    if let (Some(a1), Some(a5), Some(kl)) = (r.agreement_top1, r.agreement_top5, r.kl_mean) {
        let _ = writeln!(
            o,
            "agreement  top-1 {:.2} %, top-5 {:.2} %, KL {kl:.4}",
            100.0 * a1,
            100.0 * a5
        );
    }
    let _ = writeln!(
        o,
        "speed      {:.1} images/s on {}",
        r.images_per_s, r.backend
    );
    if let Some(d) = compare {
        let _ = writeln!(
            o,
            "\n{:<36} {:>12} {:>12}",
            "layer (GPU vs CPU, first batch)", "max |diff|", "max rel"
        );
        for l in d {
            let _ = writeln!(
                o,
                "{:<36} {:>12.3e} {:>12.3e}",
                l.node, l.max_abs, l.max_rel
            );
        }
    }
    o
}
