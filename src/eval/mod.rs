//! Evaluation: run a model over a dataset and measure accuracy against labels, agreement
//! with a reference model, and throughput; plus the ablation of quantization methods and the
//! kernel and model benchmarks of `ptq4 bench`.

pub mod ablate;
pub mod bench;
pub mod metrics;
pub mod run;

pub use run::{evaluate, EvalOptions, EvalReport};
