//! CPU integer kernels for `deploy` plans: packed 4-bit (and `i8`) weights, `u8` activation
//! codes with a per-tensor zero point, exact `i32` accumulation of Σ(q_w − z_w)(q_x − z_x).
//! Requantization is `engine::requant`, shared with the exact simulation and the GPU.

pub mod conv;
pub mod gemm;
pub mod weights;

pub use conv::{conv2d_acc, conv_out_hw, linear_acc, QTensor};
pub use weights::PackedWeights;
