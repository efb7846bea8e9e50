//! ptq4: post-training 4-bit quantization of convolutional networks.
//!
//! The pipeline (see the README's ARCHITECTURE section):
//!
//! ```text
//! fetch / import → Model (graph IR + f32 weights, one .safetensors file)
//! prepare        → fold BatchNorm, fuse ReLU/ReLU6 (half-range outputs)
//! calibrate      → per-channel activation statistics (images, or data-free from BatchNorm)
//! plan           → bits per channel, clip ranges, bias correction, dual tensors
//! quantize       → QuantModel: packed integer codes + scales + zero points + the plan
//! evaluate       → FP32 vs simulated vs integer execution: accuracy, agreement, KL, images/s
//! ```
//!
//! `quant` is pure math and never touches a device; `engine` executes and never chooses
//! bits or ranges.

pub mod calib;
pub mod cli;
pub mod engine;
pub mod error;
pub mod eval;
pub mod graph;
pub mod io;
pub mod limits;
pub mod model;
pub mod pipeline;
pub mod progress;
pub mod qmodel;
pub mod quant;
pub mod report;
pub mod tensor;
pub mod zoo;

pub use error::{Error, Result};
pub use graph::Graph;
pub use tensor::Tensor;
