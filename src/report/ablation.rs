//! `ptq4 ablate`: the ablation table in Markdown, printed as it is measured — the header
//! ([`TABLE_HEAD`]), one [`row`] per measurement, then the [`summary`] of what was measured
//! on what — or the whole [`Ablation`] as one JSON object.

use crate::error::Result;
use crate::eval::ablate::{Ablation, Row};

/// The header of the Markdown table of rows.
pub const TABLE_HEAD: &str = "| protocol | method | top-1 | top-5 | agree top-1 | agree top-5 | KL | quantize s | statistics |\n|---|---|---|---|---|---|---|---|---|\n";

/// One row of the table, as a line.
pub fn row(r: &Row) -> String {
    let pct = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.1}", 100.0 * v));
    format!(
        "| {:?} | {} | {} | {} | {:.1} | {:.1} | {:.4} | {:.2} | {} |\n",
        r.protocol,
        r.method,
        pct(r.top1),
        pct(r.top5),
        100.0 * r.agreement_top1,
        100.0 * r.agreement_top5,
        r.kl_mean,
        r.quantize_s,
        r.statistics
    )
}

/// What was measured on what, set off from the table by blank lines.
pub fn summary(a: &Ablation) -> String {
    format!(
        "\n{} W{}A{}: evaluated on n = {} inputs (views {}), calibrated on {}; kept at 8 bits: {}\n\n",
        a.model,
        a.wbits,
        a.abits,
        a.n_eval,
        a.views,
        a.calibration,
        a.kept_8bit.join(", ")
    )
}

/// The ablation as one JSON object, fields in declaration order (the input of
/// `ptq4 report --ablation`).
pub fn json(a: &Ablation) -> Result<String> {
    Ok(serde_json::to_string(a)?)
}
