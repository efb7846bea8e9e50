//! GPU launchers: one module per `shaders/<k>.wgsl`, named like it, each with the
//! shader's `//!` contract, its `#[repr(C)]` params and its `*_encode` launchers. Every
//! kernel has a CPU twin that is its test oracle: the reference kernels, `engine::cpu::<k>`,
//! or for `mmse` the planner's own objective in `quant::mmse`. Device plumbing is in `engine::device`; executors that chain launchers into
//! whole graphs are in `engine::exec`.

pub mod conv2d;
pub mod conv2d_precise;
pub mod conv_exact;
pub mod conv_int;
pub mod eltwise;
pub mod eltwise_int;
pub mod fake_quant;
pub mod flatten_int;
pub mod histogram;
pub mod linear;
pub mod lrn;
pub mod lut;
pub mod mmse;
pub mod mul;
pub mod plane_stats;
pub mod pool;
pub mod roofline_copy;
pub mod roofline_dot4;
pub mod shuffle;
pub mod unary;
