//! Explicit backend choice: `--backend auto|gpu|cpu` resolves to a [`Backend`] once.
//! `auto` uses the GPU when a hardware adapter can be opened and otherwise falls back to the
//! CPU with a one-line warning on stderr naming the reason; `gpu` fails instead. A software
//! adapter (Mesa's lavapipe) counts as no GPU for `auto`: on such machines the CPU engine is
//! far faster, and `--backend gpu` still selects it explicitly (as the tests do).

use std::sync::Arc;

use super::device::GpuContext;
use crate::error::Result;

/// What the user asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendChoice {
    /// The GPU if one can be opened, else the CPU (with a warning).
    #[default]
    Auto,
    Gpu,
    Cpu,
}

/// The backend a command runs on.
#[derive(Clone, Debug)]
pub enum Backend {
    Cpu,
    Gpu(Arc<GpuContext>),
}

impl Backend {
    /// "cpu", or "gpu (<adapter>, <api>)".
    pub fn describe(&self) -> String {
        match self {
            Backend::Cpu => "cpu".into(),
            Backend::Gpu(ctx) => format!("gpu ({}, {:?})", ctx.adapter_name(), ctx.backend()),
        }
    }
}

impl BackendChoice {
    /// Resolves the choice (opens the GPU context for `auto` and `gpu`).
    pub fn resolve(self) -> Result<Backend> {
        match self {
            BackendChoice::Cpu => Ok(Backend::Cpu),
            BackendChoice::Gpu => Ok(Backend::Gpu(Arc::new(GpuContext::new()?))),
            BackendChoice::Auto => match GpuContext::new() {
                Ok(ctx) if ctx.info().device_type == wgpu::DeviceType::Cpu => {
                    crate::error::note(format_args!(
                        "warning: falling back to the CPU backend: the only adapter, {}, is a software rasterizer (use --backend gpu to run on it anyway)",
                        ctx.adapter_name()
                    ));
                    Ok(Backend::Cpu)
                }
                Ok(ctx) => Ok(Backend::Gpu(Arc::new(ctx))),
                Err(e) => {
                    crate::error::note(format_args!(
                        "warning: falling back to the CPU backend: {e}"
                    ));
                    Ok(Backend::Cpu)
                }
            },
        }
    }
}
