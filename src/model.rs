//! A model loaded from a file, whatever its kind: an FP32 graph (prepared for execution:
//! BatchNorm folded, activations fused), or a quantized model.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::json;

use crate::engine::device::GpuContext;
use crate::engine::exec::int_gpu::GpuIntModel;
use crate::engine::exec::int_model::Exec;
use crate::engine::exec::GpuGraph;
use crate::engine::{self, Backend};
use crate::error::Error;
use crate::error::Result;
use crate::eval::Model;
use crate::graph::{passes, Graph, Op, Preprocess};
use crate::io::model::{self as mfile, ModelFile, KEY_KIND};
use crate::qmodel::QuantModel;
use crate::tensor::Tensor;

pub enum LoadedModel {
    Fp32 {
        /// As stored in the file.
        stored: Graph,
        /// Folded and fused, ready to run.
        prepared: Graph,
    },
    Quant(QuantModel),
}

impl LoadedModel {
    pub fn load(path: &Path) -> Result<Self> {
        let mut f = ModelFile::read(path)?;
        match f.meta(KEY_KIND) {
            Some("fp32") | None => {
                let stored = mfile::graph_from_file(&mut f, path)?;
                let mut prepared = stored.clone();
                passes::prepare(&mut prepared)?;
                Ok(LoadedModel::Fp32 { stored, prepared })
            }
            Some("quant") => Ok(LoadedModel::Quant(QuantModel::from_file(&mut f, path)?)),
            Some(k) => Err(crate::Error::ModelFile {
                path: path.to_path_buf(),
                msg: format!("unknown model kind {k}"),
            }),
        }
    }

    pub fn graph(&self) -> &Graph {
        match self {
            LoadedModel::Fp32 { prepared, .. } => prepared,
            LoadedModel::Quant(q) => q.graph(),
        }
    }

    fn stored(&self) -> &Graph {
        match self {
            LoadedModel::Fp32 { stored, .. } => stored,
            LoadedModel::Quant(q) => q.graph(),
        }
    }

    /// The FP32 graph as stored, for quantization.
    pub fn fp32(&self) -> Option<&Graph> {
        match self {
            LoadedModel::Fp32 { stored, .. } => Some(stored),
            LoadedModel::Quant(_) => None,
        }
    }

    /// Nodes, shapes and parameter counts as a JSON value.
    pub fn inspect_json(&self) -> Result<serde_json::Value> {
        let mut v = self.graph_json()?;
        if let LoadedModel::Quant(q) = self {
            v["kind"] = "quant".into();
            v["plan"] = q.plan_json();
            v["weight_bytes"] = q.weight_bytes()?.into();
        }
        Ok(v)
    }

    fn graph_json(&self) -> Result<serde_json::Value> {
        let g = self.stored();
        let shapes = g.validate()?;
        let nodes: Vec<_> = g
            .nodes
            .iter()
            .map(|n| {
                let params: usize =
                    n.op.param_names()
                        .iter()
                        .filter_map(|p| g.param_opt(&n.name, p))
                        .map(|t| t.numel())
                        .sum();
                json!({"name": n.name, "op": n.op.kind(), "inputs": n.inputs,
                       "shape": shapes[&n.name], "params": params})
            })
            .collect();
        Ok(
            json!({"name": g.name, "kind": "fp32", "input_shape": g.input_shape,
                  "parameters": g.param_count(), "tensors": g.params.len(),
                  "preprocess": g.preprocess, "nodes": nodes}),
        )
    }

    /// A human-readable table of the graph.
    pub fn inspect_text(&self) -> Result<String> {
        let mut s = self.graph_text()?;
        if let LoadedModel::Quant(q) = self {
            s.push_str(&q.plan_text());
            let _ = writeln!(
                s,
                "weight bytes (codes, scales, zero points, bits, biases): {}",
                q.weight_bytes()?
            );
        }
        Ok(s)
    }

    fn graph_text(&self) -> Result<String> {
        let g = self.stored();
        let shapes = g.validate()?;
        let mut s = String::new();
        let kind = if matches!(self, LoadedModel::Quant(_)) {
            "quantized; prepared graph"
        } else {
            "fp32"
        };
        let _ = writeln!(s, "model {} ({kind}), input {:?}", g.name, g.input_shape);
        let _ = writeln!(
            s,
            "{:<36} {:<16} {:<18} {:>10}",
            "node", "op", "shape", "params"
        );
        for n in &g.nodes {
            let params: usize =
                n.op.param_names()
                    .iter()
                    .filter_map(|p| g.param_opt(&n.name, p))
                    .map(|t| t.numel())
                    .sum();
            let op = match &n.op {
                Op::Conv2d(c) if c.is_depthwise() => {
                    format!("dwconv{}x{}/{}", c.kernel[0], c.kernel[1], c.stride[0])
                }
                Op::Conv2d(c) => format!("conv{}x{}/{}", c.kernel[0], c.kernel[1], c.stride[0]),
                op => op.kind().to_string(),
            };
            let _ = writeln!(
                s,
                "{:<36} {:<16} {:<18} {:>10}",
                n.name,
                op,
                format!("{:?}", shapes[&n.name]),
                params
            );
        }
        let _ = writeln!(
            s,
            "{} nodes, {} parameter tensors, {} parameters",
            g.nodes.len(),
            g.params.len(),
            g.param_count()
        );
        Ok(s)
    }
}

impl Model for LoadedModel {
    fn name(&self) -> &str {
        &self.graph().name
    }
    fn preprocess(&self) -> &Preprocess {
        &self.graph().preprocess
    }
    fn forward(&self, x: Tensor) -> Result<Tensor> {
        match self {
            LoadedModel::Fp32 { prepared, .. } => engine::forward(prepared, x),
            LoadedModel::Quant(q) => q.forward(x),
        }
    }
    fn backend(&self) -> String {
        match self {
            LoadedModel::Fp32 { .. } => "cpu".into(),
            LoadedModel::Quant(_) => "cpu (simulated)".into(),
        }
    }
}

/// What a [`Runner`] runs: an FP32 graph or a quantized model's simulation.
#[derive(Clone, Copy)]
pub enum Source<'a> {
    Fp32(&'a Graph),
    Quant(&'a QuantModel),
}

impl<'a> Source<'a> {
    pub fn of(m: &'a LoadedModel) -> Self {
        match m {
            LoadedModel::Fp32 { prepared, .. } => Source::Fp32(prepared),
            LoadedModel::Quant(q) => Source::Quant(q),
        }
    }
    fn graph(self) -> &'a Graph {
        match self {
            Source::Fp32(g) => g,
            Source::Quant(q) => q.graph(),
        }
    }
}

/// A model bound to a backend: the CPU engine, or the device (FP32 graphs and `paper`
/// simulations as a [`GpuGraph`]; `deploy` models on the integer kernels or the exact simulation).
pub struct Runner<'a> {
    source: Source<'a>,
    exec: Option<Exec>,
    gpu: Option<GpuGraph<'a>>,
    gpu_int: Option<(GpuIntModel<'a>, &'a GpuContext)>,
    label: String,
}

impl<'a> Runner<'a> {
    /// `exec`: for `deploy` models, integer kernels or their exact simulation (default
    /// integer); other models reject it.
    pub fn new(source: Source<'a>, backend: &'a Backend, exec: Option<Exec>) -> Result<Self> {
        let int = match source {
            Source::Quant(q) if q.int.is_some() => Some(q.int_model()?),
            _ => None,
        };
        if exec.is_some() && int.is_none() {
            return Err(Error::Usage(
                "--exec applies to deploy-protocol quantized models".into(),
            ));
        }
        let mode = match (int.is_some(), exec.unwrap_or(Exec::Int)) {
            (true, Exec::Int) => " (integer)",
            (true, Exec::Sim) => " (exact simulation)",
            (false, _) if matches!(source, Source::Quant(_)) => " (simulated)",
            (false, _) => "",
        };
        let (mut gpu, mut gpu_int) = (None, None);
        if let Backend::Gpu(ctx) = backend {
            match int {
                Some(m) => gpu_int = Some((m.upload_for(ctx, exec.unwrap_or(Exec::Int))?, &**ctx)),
                None => gpu = Some(GpuGraph::new(ctx, source.graph())?),
            }
        }
        let label = format!("{}{mode}", backend.describe());
        Ok(Runner {
            source,
            exec,
            gpu,
            gpu_int,
            label,
        })
    }
}

impl Model for Runner<'_> {
    fn name(&self) -> &str {
        &self.source.graph().name
    }
    fn preprocess(&self) -> &Preprocess {
        &self.source.graph().preprocess
    }
    fn forward(&self, x: Tensor) -> Result<Tensor> {
        if let Some((m, ctx)) = &self.gpu_int {
            return m.forward(ctx, &x, self.exec.unwrap_or(Exec::Int));
        }
        match (&self.gpu, self.source) {
            (None, Source::Fp32(g)) => engine::forward(g, x),
            (None, Source::Quant(q)) => q.forward_exec(x, self.exec),
            (Some(g), Source::Fp32(_)) => g.forward(&x),
            (Some(g), Source::Quant(q)) => g.forward_fake_quant(&x, &q.plan.acts),
        }
    }
    fn backend(&self) -> String {
        self.label.clone()
    }
}
