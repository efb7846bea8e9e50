//! Evaluation: run a model over a dataset and measure accuracy against labels, agreement
//! with a reference model, and throughput; plus the ablation of quantization methods.

pub mod ablate;
pub mod metrics;
pub mod run;

pub use run::{evaluate, EvalOptions, EvalReport};
