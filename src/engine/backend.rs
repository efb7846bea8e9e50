//! The door to a device. `--backend auto|gpu|cpu` resolves to a [`Backend`] once; callers
//! bind a model ([`Executable`]: FP32 graph, `paper` fake quantization, `deploy` integer
//! model) to it and get one runnable handle ([`Bound`], seen as a [`Forward`]), so stages
//! and the CLI never name a device type.
//!
//! `auto` uses the GPU when a hardware adapter can be opened and otherwise falls back to the
//! CPU with a one-line warning on stderr naming the reason; `gpu` fails instead. A software
//! adapter (Mesa's lavapipe) counts as no GPU for `auto`: on such machines the CPU engine is
//! far faster, and `--backend gpu` still selects it explicitly (as the tests do).

use std::collections::HashMap;
use std::sync::Arc;

use super::compare::LayerDiff;
use super::device::GpuContext;
use super::exec::float_cpu::{self, FakeQuantHook};
use super::exec::float_gpu::{GpuGraph, Quantizers};
use super::exec::int_gpu::GpuIntModel;
use super::exec::int_model::{Exec, IntModel};
use super::gpu::mmse::GpuMse;
use crate::error::{Error, Result};
use crate::graph::{Graph, Preprocess};
use crate::quant::mmse::{ExactEval, MseEval};
use crate::quant::plan::ActQuant;
use crate::tensor::Tensor;

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
    /// Runs `g` on the CPU and on this backend's device on the batch `x` and reports the
    /// largest difference per layer ([`super::compare`], `eval --compare`).
    pub fn compare_layers(&self, g: &Graph, x: &Tensor) -> Result<Vec<LayerDiff>> {
        match self {
            Backend::Gpu(ctx) => super::compare::compare(ctx, g, x),
            Backend::Cpu => Err(Error::Usage("--compare needs a GPU adapter".into())),
        }
    }

    /// The evaluator of the MMSE clip objective on this backend: the device evaluates it
    /// over uploaded histograms, the CPU exactly; the planner decides either way
    /// (`quant::mmse`), so plans do not depend on the backend.
    pub fn mse_eval(&self) -> Box<dyn MseEval + '_> {
        match self {
            Backend::Cpu => Box::new(ExactEval),
            Backend::Gpu(ctx) => Box::new(GpuMse::new(ctx)),
        }
    }

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

/// The runnable handle: a model bound to a backend. What evaluation runs.
pub trait Forward: Sync {
    /// The model's name, for errors about its metadata.
    fn name(&self) -> &str;
    fn preprocess(&self) -> &Preprocess;
    /// An f32 NCHW batch to f32 logits.
    fn forward(&self, x: Tensor) -> Result<Tensor>;
    /// Where and how it runs, e.g. `cpu (simulated)` or `gpu (llvmpipe, Vulkan) (integer)`.
    fn describe(&self) -> String;
    /// How many batches evaluation may run through [`Forward::forward`] at once (1: one
    /// after the other).
    fn concurrent_batches(&self) -> usize {
        1
    }
}

/// A model as the engine runs it: an FP32 graph, a `paper` plan (its dequantized graph,
/// activations fake-quantized at the plan's points), or a `deploy` plan's integer model.
#[derive(Clone, Copy)]
pub enum Executable<'a> {
    /// A prepared FP32 graph.
    Fp32(&'a Graph),
    /// Fake quantization: the graph with dequantized weights and the activation quantizers.
    FakeQuant {
        dequantized: &'a Graph,
        acts: &'a [ActQuant],
    },
    /// Integer execution (`--exec int`) or its exact simulation (`--exec sim`);
    /// `dequantized` gives the name and preprocessing.
    Integer {
        dequantized: &'a Graph,
        model: &'a IntModel,
    },
}

impl<'a> Executable<'a> {
    fn graph(self) -> &'a Graph {
        match self {
            Executable::Fp32(g) => g,
            Executable::FakeQuant { dequantized, .. } | Executable::Integer { dequantized, .. } => {
                dequantized
            }
        }
    }
}

/// What a [`Bound`] runs, per backend.
enum Run<'a> {
    CpuGraph(&'a Graph),
    CpuFakeQuant(&'a Graph, HashMap<&'a str, &'a ActQuant>),
    CpuInt(&'a IntModel, Exec),
    GpuGraph(GpuGraph<'a>),
    /// The graph and its activation quantizer tables, uploaded once.
    GpuFakeQuant(GpuGraph<'a>, Quantizers),
    GpuInt(GpuIntModel<'a>, &'a GpuContext, Exec),
}

/// An [`Executable`] bound to a [`Backend`] (weights uploaded once for the device).
pub struct Bound<'a> {
    graph: &'a Graph,
    run: Run<'a>,
    label: String,
    concurrent: usize,
}

impl Backend {
    /// Binds `m` to this backend. `exec` selects, for integer models, the integer kernels or
    /// their exact simulation (default integer); other models reject it.
    pub fn bind<'a>(&'a self, m: Executable<'a>, exec: Option<Exec>) -> Result<Bound<'a>> {
        let mode = match (m, exec.unwrap_or(Exec::Int)) {
            (Executable::Integer { .. }, Exec::Int) => " (integer)",
            (Executable::Integer { .. }, Exec::Exact) => " (exact simulation)",
            (_, _) if exec.is_some() => {
                return Err(Error::Usage(
                    "--exec applies to deploy-protocol quantized models".into(),
                ))
            }
            (Executable::FakeQuant { .. }, _) => " (simulated)",
            (Executable::Fp32(_), _) => "",
        };
        let exec = exec.unwrap_or(Exec::Int);
        let run = match (self, m) {
            (Backend::Cpu, Executable::Fp32(g)) => Run::CpuGraph(g),
            (Backend::Cpu, Executable::FakeQuant { dequantized, acts }) => Run::CpuFakeQuant(
                dequantized,
                acts.iter().map(|a| (a.value.as_str(), a)).collect(),
            ),
            (Backend::Cpu, Executable::Integer { model, .. }) => Run::CpuInt(model, exec),
            (Backend::Gpu(ctx), Executable::Fp32(g)) => Run::GpuGraph(GpuGraph::new(ctx, g)?),
            (Backend::Gpu(ctx), Executable::FakeQuant { dequantized, acts }) => {
                let g = GpuGraph::new(ctx, dequantized)?;
                let q = g.quantizers(acts)?;
                Run::GpuFakeQuant(g, q)
            }
            (Backend::Gpu(ctx), Executable::Integer { model, .. }) => {
                Run::GpuInt(model.upload_for(ctx, exec)?, ctx, exec)
            }
        };
        // Small-map networks (28×28 digits) leave the threads idle inside each kernel call
        // (a fork-join per 49-value plane): the CPU runs whole batches side by side instead.
        // Large maps already run image-parallel inside `forward`; GPU queues stay serial.
        let concurrent = match (self, float_cpu::small_maps(m.graph())) {
            (Backend::Cpu, true) => rayon::current_num_threads(),
            _ => 1,
        };
        Ok(Bound {
            graph: m.graph(),
            run,
            label: format!("{}{mode}", self.describe()),
            concurrent,
        })
    }
}

impl Forward for Bound<'_> {
    fn name(&self) -> &str {
        &self.graph.name
    }
    fn preprocess(&self) -> &Preprocess {
        &self.graph.preprocess
    }
    fn forward(&self, x: Tensor) -> Result<Tensor> {
        match &self.run {
            Run::CpuGraph(g) => float_cpu::forward(g, x),
            Run::CpuFakeQuant(g, acts) => float_cpu::run(g, x, &mut FakeQuantHook::new(acts)),
            Run::CpuInt(m, exec) => m.forward(&x, *exec),
            Run::GpuGraph(g) => g.forward(&x),
            Run::GpuFakeQuant(g, q) => g.forward_with(&x, q),
            Run::GpuInt(m, ctx, exec) => m.forward(ctx, &x, *exec),
        }
    }
    fn describe(&self) -> String {
        self.label.clone()
    }
    fn concurrent_batches(&self) -> usize {
        self.concurrent
    }
}
