//! The quantized model: a [`Plan`] (per-channel codes, quantizers, corrected biases,
//! activation quantizers) on its prepared graph, with the graph's weights dequantized for
//! the `paper` fake quantization and, for `deploy` plans, the integer model. It is run by
//! binding [`QuantModel::executable`] to a backend, and stored as a quantized model file
//! ([`crate::io::qfile`]: its layout and the checks on read).
//!
//! Every model is checked ([`qfile::check_plan`]) when it is built and when it is read, and
//! [`QuantModel::save`] parses its own bytes back with the loader `eval` uses before the
//! file is put in place, so no file is written that cannot be read back.

use std::collections::HashMap;
use std::path::Path;

use crate::engine::exec::int_model::IntModel;
use crate::engine::Executable;
use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::io::model::{self as mfile, ModelFile};
use crate::io::qfile;
use crate::quant::config::Protocol;
use crate::quant::plan::{dequantize_layer, Plan};
use crate::tensor::Tensor;

pub struct QuantModel {
    pub plan: Plan,
    /// The prepared graph with dequantized weights and corrected biases: what the `paper`
    /// fake quantization runs, and the structure of the integer model.
    pub dequantized: Graph,
    /// `deploy` plans: the integer model (and its exact simulation), or why the integer
    /// kernels cannot run this plan.
    pub int: Option<std::result::Result<IntModel, String>>,
}

impl QuantModel {
    /// Builds the quantized model of `plan` on the prepared graph `g` (with its FP32
    /// weights, or only its structure as read from a file: the weights come from the codes).
    pub fn new(g: &Graph, plan: Plan) -> Result<Self> {
        qfile::check_plan(g, &plan).map_err(Error::Quant)?;
        let mut dequantized = g.clone();
        let index: HashMap<String, usize> = dequantized
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
        for l in &plan.layers {
            let w = dequantize_layer(l)?;
            let i = index[&l.node];
            let shape = dequantized.nodes[i]
                .op
                .weight_shape()
                .ok_or_else(|| Error::MissingParam(format!("{}.weight", l.node)))?;
            dequantized
                .params
                .insert(format!("{}.weight", l.node), Tensor { shape, data: w });
            dequantized.params.insert(
                format!("{}.bias", l.node),
                Tensor {
                    shape: vec![l.bias.len()],
                    data: l.bias.clone(),
                },
            );
            match &mut dequantized.nodes[i].op {
                crate::graph::Op::Conv2d(c) => c.bias = true,
                crate::graph::Op::Linear(li) => li.bias = true,
                _ => {}
            }
        }
        dequantized.validate()?;
        let int = (plan.config.protocol == Protocol::Deploy)
            .then(|| IntModel::new(&dequantized, &plan).map_err(|e| e.to_string()));
        Ok(QuantModel {
            plan,
            dequantized,
            int,
        })
    }

    /// The model as the engine runs it, to bind to a backend: `deploy` plans as their
    /// integer model (integer kernels or their exact simulation), `paper` plans as fake
    /// quantization on the dequantized graph.
    pub fn executable(&self) -> Result<Executable<'_>> {
        Ok(match &self.int {
            Some(_) => Executable::Integer {
                dequantized: &self.dequantized,
                model: self.int_model()?,
            },
            None => Executable::FakeQuant {
                dequantized: &self.dequantized,
                acts: &self.plan.acts,
            },
        })
    }

    /// The integer model of a `deploy` plan.
    pub fn int_model(&self) -> Result<&IntModel> {
        match &self.int {
            Some(Ok(m)) => Ok(m),
            Some(Err(why)) => Err(Error::Engine(format!(
                "the integer kernels cannot run this plan: {why}"
            ))),
            None => Err(Error::Usage(
                "integer execution needs a deploy-protocol model".into(),
            )),
        }
    }

    /// The graph structure (weights are the dequantized ones).
    pub fn graph(&self) -> &Graph {
        &self.dequantized
    }

    /// The quantized model file ([`qfile`] layout).
    pub fn to_file(&self) -> Result<ModelFile> {
        qfile::to_file(&self.dequantized, &self.plan)
    }

    /// Writes the model atomically, after parsing the bytes back with the loader `eval`
    /// uses ([`QuantModel::from_file`] and its checks): a file that could not be read back
    /// is never written. `deploy` models the integer kernels cannot run are refused.
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(Err(why)) = &self.int {
            return Err(Error::Quant(format!(
                "--protocol deploy: the integer kernels cannot run this model: {why}"
            )));
        }
        let bytes = self.to_file()?.to_bytes()?;
        let mut back = ModelFile::from_bytes(&bytes).map_err(|msg| Error::ModelFile {
            path: path.to_path_buf(),
            msg: format!("the file about to be written does not parse: {msg}"),
        })?;
        QuantModel::from_file(&mut back, path).map_err(|e| {
            Error::Quant(format!(
                "refusing to write {}: it would not load back: {e}",
                path.display()
            ))
        })?;
        mfile::write_atomic(path, &bytes)
    }

    /// Loads a quantized model file (already read; `path` names it in errors).
    pub fn from_file(f: &mut ModelFile, path: &Path) -> Result<Self> {
        let (structure, plan) = qfile::from_file(f, path)?;
        QuantModel::new(&structure, plan)
    }

    /// Bytes of weight data as stored (codes, scales, zero points, bit-widths, biases).
    pub fn weight_bytes(&self) -> Result<usize> {
        Ok(self.to_file()?.tensors.values().map(|t| t.byte_len()).sum())
    }
}
