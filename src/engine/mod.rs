//! Execution backends. The engine runs graphs; it never chooses bits or ranges.

mod buffer_pool;
pub mod cpu;
pub mod exec;
pub mod gpu;
pub mod layout;

pub use exec::{forward, run, Hook, NoHook};
