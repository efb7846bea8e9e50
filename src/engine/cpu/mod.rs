//! The CPU engine: fast f32 kernels (im2col + GEMM, direct depthwise, rayon), and the naive
//! [`reference`] implementations they are tested against. `fake_quant` and `histogram` are
//! the CPU twins of the GPU kernels of the same names (their rules live in `quant/`).
//!
//! Parallelism: GEMMs run on matrixmultiply's own threads (see `gemm`), every other loop on
//! rayon; the two never overlap.

pub mod conv;
mod depthwise;
pub mod elementwise;
pub mod fake_quant;
pub(crate) mod gemm;
pub mod histogram;
mod im2col;
pub mod int;
mod isa_env;
pub mod linear;
pub mod lrn;
mod microkernel;
pub mod mul_shuffle;
mod plane;
pub mod pointwise;
pub mod pool;
pub mod precise;
pub mod reference;
pub mod stem;

pub use conv::{conv2d, conv2d_into};
pub use elementwise::{add, add_inplace, batch_norm, cap_channels, concat, relu, relu6, softmax};
pub use linear::linear;
pub use mul_shuffle::{channel_shuffle, mul};
pub use pool::{avg_pool, global_avg_pool, max_pool};
