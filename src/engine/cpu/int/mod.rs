//! CPU integer kernels for `deploy` plans: packed 4-bit (and `i8`) weights, `u8` activation
//! codes with a per-tensor zero point, exact `i32` accumulation of Σ(q_w − z_w)(q_x − z_x).
//! Activations are channel-minor (NHWC) inside the kernels; GEMMs use AVX-512 VNNI where the
//! CPU has it, else AVX2, else portable loops ([`Isa`], detected at run time).
//! Requantization is `engine::requant`, shared with the exact simulation and the GPU.

pub mod conv;
pub mod dw;
pub mod dw_data;
pub mod dwquad;
pub mod dwsimd;
pub mod epi;
pub mod isa;
pub mod layer;
pub mod qgemm;
pub mod weights;

pub use conv::{
    conv2d_acc, conv2d_acc_with, conv_out_hw, linear_acc, linear_acc_with, transpose, QTensor,
};
pub use isa::Isa;
pub use layer::CpuLayer;
pub use weights::PackedWeights;
