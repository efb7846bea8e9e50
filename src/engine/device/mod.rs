//! GPU plumbing shared by every launcher and executor: the [`GpuContext`] (device, queue,
//! limits, pipeline cache), buffer helpers ([`buffers`]) and batched readback
//! ([`readback`]).

pub mod buffers;
pub mod context;
pub mod readback;

pub use context::{GpuContext, Kernel, KernelSpec, Slot};
