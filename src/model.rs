//! The loaded model: a model file ([`ModelFile`], the bytes on disk) read into memory,
//! whatever its kind: an FP32 model ([`Fp32Model`]: the graph as stored and prepared for
//! execution), or a quantized model ([`QuantModel`]). Either is bound to a backend for
//! running through [`LoadedModel::executable`] and [`Backend::bind`](crate::engine::Backend::bind).

use std::path::Path;

use crate::engine::Executable;
use crate::error::Result;
use crate::graph::{passes, Graph};
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

    /// The model after cross-layer equalization (`quantize --equalize`, `quant::equalize`):
    /// the prepared graph equalized (the same function), and in the stored graph each
    /// BatchNorm folded into an equalized conv divides γ and β by that conv's output scales,
    /// so the data-free statistics (which read them) describe the equalized outputs.
    pub fn equalized(&self) -> Result<Self> {
        let mut prepared = self.prepared.clone();
        let eq = crate::quant::equalize::equalize(&mut prepared)?;
        let mut stored = self.stored.clone();
        let folded: Vec<(String, String)> = stored
            .nodes
            .iter()
            .filter(|n| matches!(n.op, crate::graph::Op::BatchNorm { .. }))
            .filter(|n| prepared.node(&n.name).is_none())
            .filter_map(|n| Some((n.inputs.first()?.clone(), n.name.clone())))
            .collect();
        for (conv, bn) in folded {
            let Some(s) = eq.out_scale.get(&conv) else {
                continue;
            };
            for p in ["weight", "bias"] {
                if let Some(t) = stored.params.get_mut(&format!("{bn}.{p}")) {
                    t.data.iter_mut().zip(s).for_each(|(v, &k)| *v /= k);
                }
            }
        }
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

    /// The model as the engine runs it, to bind to a backend.
    pub fn executable(&self) -> Result<Executable<'_>> {
        match self {
            LoadedModel::Fp32(m) => Ok(Executable::Fp32(&m.prepared)),
            LoadedModel::Quant(q) => q.executable(),
        }
    }
}
