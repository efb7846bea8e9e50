//! Execution backends. The engine runs graphs; it never chooses bits or ranges.

pub mod cpu;
pub mod exec;
pub mod gpu;
pub mod intexec;
pub mod layout;
pub mod requant;
pub mod sim;
pub mod size;

pub use exec::{forward, run, Hook, NoHook};
