//! `ptq4 quantize`: the plan table ([`super::plan`]) and one line on time, size and output
//! file; or one JSON object with the same figures and the plan.

use std::path::Path;

use crate::quant::plan::Plan;

/// What one quantize run produced.
pub struct Summary<'a> {
    /// The model file written.
    pub output: &'a Path,
    /// Statistics and planning time.
    pub seconds: f64,
    /// Bytes of the quantized weights as stored.
    pub weight_bytes: usize,
    /// Bytes of the FP32 weights (BatchNorm folded).
    pub fp32_weight_bytes: usize,
}

/// The run as one JSON object.
pub fn json(plan: &Plan, s: &Summary) -> serde_json::Value {
    serde_json::json!({"output": s.output.display().to_string(), "seconds": s.seconds,
        "weight_bytes": s.weight_bytes, "fp32_weight_bytes": s.fp32_weight_bytes,
        "plan": super::plan::json(plan)})
}

/// The run for people.
pub fn text(plan: &Plan, s: &Summary) -> String {
    format!(
        "{}quantized in {:.2} s; weights {} bytes ({:.1} % of FP32 {}) -> {}\n",
        super::plan::text(plan),
        s.seconds,
        s.weight_bytes,
        100.0 * s.weight_bytes as f64 / s.fp32_weight_bytes as f64,
        s.fp32_weight_bytes,
        s.output.display()
    )
}
