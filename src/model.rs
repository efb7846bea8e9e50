//! The loaded model: a model file ([`ModelFile`], the bytes on disk) read into memory,
//! whatever its kind: an FP32 model ([`Fp32Model`]: the graph as stored and prepared for
//! execution), or a quantized model ([`QuantModel`]). Either is bound to a backend for
//! running through [`LoadedModel::executable`] and [`Backend::bind`](crate::engine::Backend::bind).

use std::fmt::Write as _;
use std::path::Path;

use serde_json::json;

use crate::engine::Executable;
use crate::error::Result;
use crate::graph::{passes, Graph, Op};
use crate::io::model::{self as mfile, ModelFile, KEY_KIND};
use crate::qmodel::QuantModel;

/// An FP32 model, prepared once per command: what quantization starts from and what FP32
/// evaluation runs.
pub struct Fp32Model {
    /// As stored in the file (BatchNorms unfolded: the data-free statistics read them).
    pub stored: Graph,
    /// BatchNorm folded, activations fused ([`passes::prepare`]), ready to run.
    pub prepared: Graph,
}

impl Fp32Model {
    /// Prepares `stored`.
    pub fn new(stored: Graph) -> Result<Self> {
        let mut prepared = stored.clone();
        passes::prepare(&mut prepared)?;
        Ok(Fp32Model { stored, prepared })
    }
}

pub enum LoadedModel {
    Fp32(Fp32Model),
    Quant(QuantModel),
}

impl LoadedModel {
    /// Reads and loads the model file at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        Self::from_file(&mut ModelFile::read(path)?, path)
    }

    /// Loads a model file already read (`path` names it in errors), by its kind.
    pub fn from_file(f: &mut ModelFile, path: &Path) -> Result<Self> {
        match f.meta(KEY_KIND) {
            Some("fp32") | None => Ok(LoadedModel::Fp32(Fp32Model::new(mfile::graph_from_file(
                f, path,
            )?)?)),
            Some("quant") => Ok(LoadedModel::Quant(QuantModel::from_file(f, path)?)),
            Some(k) => Err(crate::Error::ModelFile {
                path: path.to_path_buf(),
                msg: format!("unknown model kind {k}"),
            }),
        }
    }

    /// The graph that runs: the prepared FP32 graph, or the quantized model's graph with
    /// dequantized weights.
    pub fn graph(&self) -> &Graph {
        match self {
            LoadedModel::Fp32(m) => &m.prepared,
            LoadedModel::Quant(q) => q.graph(),
        }
    }

    /// The graph as the file describes it (for a quantized model, its prepared graph).
    fn stored(&self) -> &Graph {
        match self {
            LoadedModel::Fp32(m) => &m.stored,
            LoadedModel::Quant(q) => q.graph(),
        }
    }

    /// The model as the engine runs it, to bind to a backend.
    pub fn executable(&self) -> Result<Executable<'_>> {
        match self {
            LoadedModel::Fp32(m) => Ok(Executable::Fp32(&m.prepared)),
            LoadedModel::Quant(q) => q.executable(),
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
