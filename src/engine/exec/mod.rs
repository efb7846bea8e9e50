//! Executors, one per execution mode and device:
//!
//! | mode                                   | CPU            | GPU            |
//! |----------------------------------------|----------------|----------------|
//! | f32 graphs and the `paper` fake-quant  | [`float_cpu`]  | [`float_gpu`]  |
//! | `deploy` plans on integer kernels      | [`int_cpu`]    | [`int_gpu`]    |
//! | `deploy` plans, exact simulation       | [`exact_cpu`]  | [`exact_gpu`]  |
//!
//! [`int_model`] binds a `deploy` plan to its graph once ([`IntModel`]); the integer and
//! exact executors all run that one structure and give the same codes and logits.

pub mod buffer_pool;
pub mod exact_cpu;
pub mod exact_gpu;
pub mod float_cpu;
pub mod float_gpu;
pub mod int_cpu;
pub mod int_gpu;
pub mod int_model;

pub use float_gpu::GpuGraph;
pub use int_model::{Exec, IntModel};

use crate::error::Result;
use crate::tensor::Tensor;

impl IntModel {
    /// Runs the model on the CPU on an f32 NCHW batch and returns the f32 logits: the
    /// integer kernels ([`int_cpu`], this machine's best instruction set) or the exact
    /// simulation ([`exact_cpu`]).
    pub fn forward(&self, x: &Tensor, exec: Exec) -> Result<Tensor> {
        match exec {
            Exec::Int => self.forward_int(x, crate::engine::cpu::int::Isa::detect()),
            Exec::Exact => self.forward_exact(x),
        }
    }
}
