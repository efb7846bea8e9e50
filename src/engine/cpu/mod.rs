//! The CPU engine: fast f32 kernels (im2col + GEMM, direct depthwise, rayon), and the naive
//! [`reference`] implementations they are tested against.

pub mod reference;
