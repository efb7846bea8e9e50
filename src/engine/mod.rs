//! Execution backends. The engine runs graphs; it never chooses bits or ranges.

pub mod cpu;
pub mod gpu;
pub mod layout;
