//! The wgpu backend: one [`GpuContext`] (device, queue, limits, pipeline cache), buffer
//! plumbing in [`buffers`], and one module per kernel family, each pairing a
//! `shaders/<k>.wgsl` file with its `//!` contract, `#[repr(C)]` params and launchers.
//! Every kernel has a CPU twin (the reference kernels or `engine::cpu::<k>`) that is its
//! test oracle.

pub mod buffers;
pub mod calib;
pub mod context;
pub mod conv2d;
pub mod conv_int;
pub mod conv_sim;
pub mod eltwise;
pub mod fake_quant;
pub mod graph;
pub mod histogram;
pub mod int_model;
pub mod linear;
pub mod mmse;
pub mod moments;
pub mod plane_stats;
pub mod pool;
pub mod precise;
pub mod readback;
pub mod sim_model;

pub use context::{GpuContext, Kernel, KernelSpec, Slot};
pub use graph::GpuGraph;
