//! The CPU engine: fast f32 kernels (im2col + GEMM, direct depthwise, rayon), and the naive
//! [`reference`] implementations they are tested against. `fake_quant`, `moments`,
//! `histogram` and `mmse` are the CPU twins of the GPU kernels of the same names and define
//! their exact semantics.

pub mod fake_quant;
pub mod histogram;
pub mod mmse;
pub mod moments;
pub mod reference;
