//! ptq4: post-training 4-bit quantization of convolutional networks.
//!
//! The pipeline (see the README's ARCHITECTURE section):
//!
//! ```text
//! fetch / import → model file (graph IR + f32 weights, one .safetensors file)
//! load, prepare  → model::Fp32Model: fold BatchNorm, fuse ReLU/ReLU6 (once per command)
//! calibrate      → per-channel activation statistics (images, or data-free from BatchNorm)
//! plan           → bits per channel, clip ranges, bias correction, dual tensors
//! quantize       → QuantModel: packed integer codes + scales + zero points + the plan,
//!                  saved as a quantized model file (io::qfile)
//! evaluate       → a loaded model bound to a backend (engine::Backend::bind, the one
//!                  runnable handle): FP32 vs `paper` fake quantization vs integer kernels
//!                  (or their exact simulation); accuracy, agreement, KL, images/s
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
