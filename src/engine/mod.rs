//! Execution: runs graphs and quantized models on a device. The engine never chooses bits
//! or ranges (that is `quant/`); it evaluates what it is given.
//!
//! The map, lowest layer first (a module only imports from the layers above it in this
//! list; `tests/architecture.rs` checks that there is no import cycle):
//!
//! ```text
//! layout.rs, requant.rs  shared rules: how a tensor splits into channels; the one
//!                        requantization rule every integer path ends with
//! cpu/                   CPU kernels: fast f32 (im2col + GEMM, direct depthwise), naive
//!                        `reference` oracles, `precise` (calibration), `int/` (4-bit packed)
//! device/                GPU plumbing: context (device, queue, pipeline cache), buffers,
//!                        readback
//! gpu/                   one launcher per `shaders/<k>.wgsl`, named like it
//! exec/                  executors, by mode and device:
//!                          f32 / fake-quant  float_cpu.rs  float_gpu.rs
//!                          integer           int_cpu.rs    int_gpu.rs
//!                          exact simulation  exact_cpu.rs  exact_gpu.rs
//!                        and int_model.rs, the `deploy` plan bound for integer execution
//! backend.rs             the door: `--backend` resolved once to a [`Backend`]; a model
//!                        bound to it ([`Backend::bind`]) is one runnable handle ([`Forward`])
//! compare.rs, size.rs    diagnostics: CPU vs GPU per layer; bytes of weights in memory
//! ```

pub mod backend;
pub mod compare;
pub mod cpu;
pub mod device;
pub mod exact;
pub mod exec;
pub mod gpu;
pub mod layout;
pub mod requant;
pub mod size;

pub use backend::{Backend, BackendChoice, Bound, Executable, Forward};
pub use compare::{compare, LayerDiff};
pub use exec::float_cpu::{forward, run, Hook, NoHook};
