//! Execution backends. The engine runs graphs; it never chooses bits or ranges.

pub mod backend;
mod buffer_pool;
pub mod compare;
pub mod cpu;
pub mod exec;
pub mod gpu;
pub mod intexec;
mod intfwd;
pub mod layout;
pub mod requant;
pub mod sim;
pub mod size;

pub use backend::{Backend, BackendChoice};
pub use compare::{compare, LayerDiff};
pub use exec::{forward, run, Hook, NoHook};
