//! A quantized model: the prepared graph plus its [`Plan`], stored as one safetensors file
//! of codes, and run as a simulation on the CPU engine.
//!
//! File layout (metadata `ptq4.kind = quant`): the prepared graph and preprocessing as for
//! FP32 models; `ptq4.plan` = JSON of the configuration, statistics source, kept layers,
//! per-layer info and activation quantizers. Tensors per conv/linear node `L`:
//! `L.weight.codes` (U8, channel by channel: channels of ≤ 4 bits as 4-bit codes two per
//! byte, low nibble first; wider channels one code per byte), `L.weight.scale` (F32, per output channel),
//! `L.weight.zero` (I32), `L.weight.bits` (U8), `L.bias` (F32, bias correction included),
//! and `L.weight2.*` for the second tensor of a dual layer. No f32 weights are stored.
//!
//! Simulation: weights are dequantized once; at every activation quantization point the
//! value is fake-quantized (quantize, then dequantize) after the producing node.
//!
//! Every model is checked ([`check::check_plan`]) when it is built and when it is read, and
//! [`QuantModel::save`] parses its own bytes back with the loader `eval` uses before the
//! file is put in place, so no file is written that cannot be read back.

mod check;
mod codes;

use codes::{graph_structure, put_codes, take_codes, weight_shape};

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::engine::exec::int_model::IntModel;
use crate::engine::Executable;
use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::io::model::{self as mfile, ModelFile, RawTensor};
use crate::quant::config::{Protocol, QuantConfig};
use crate::quant::plan::{dequantize_layer, ActQuant, LayerInfo, LayerQuant, Plan};
use crate::quant::QParams;
use crate::tensor::Tensor;

pub const KEY_PLAN: &str = "ptq4.plan";

#[derive(Serialize, Deserialize)]
struct PlanMeta {
    config: QuantConfig,
    source: String,
    kept_8bit: Vec<String>,
    layers: Vec<LayerInfo>,
    acts: Vec<ActQuant>,
}

pub struct QuantModel {
    pub plan: Plan,
    /// The prepared graph with dequantized weights and corrected biases: what the `paper`
    /// fake quantization runs, and the structure of the integer model.
    pub dequantized: Graph,
    acts: BTreeMap<String, ActQuant>,
    /// `deploy` plans: the integer model (and its exact simulation), or why the integer
    /// kernels cannot run this plan.
    pub int: Option<std::result::Result<IntModel, String>>,
}

impl QuantModel {
    /// Builds the quantized model of `plan` on the prepared graph `g`.
    pub fn new(g: &Graph, plan: Plan) -> Result<Self> {
        check::check_plan(g, &plan).map_err(Error::Quant)?;
        let mut dequantized = g.clone();
        let index: HashMap<String, usize> = dequantized
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
        for l in &plan.layers {
            let w = dequantize_layer(l)?;
            let key = format!("{}.weight", l.node);
            let t = dequantized
                .params
                .get_mut(&key)
                .ok_or_else(|| Error::MissingParam(key.clone()))?;
            t.data = w;
            dequantized.params.insert(
                format!("{}.bias", l.node),
                Tensor {
                    shape: vec![l.bias.len()],
                    data: l.bias.clone(),
                },
            );
            if let Some(&i) = index.get(&l.node) {
                match &mut dequantized.nodes[i].op {
                    crate::graph::Op::Conv2d(c) => c.bias = true,
                    crate::graph::Op::Linear(li) => li.bias = true,
                    _ => {}
                }
            }
        }
        dequantized.validate()?;
        let acts = plan
            .acts
            .iter()
            .map(|a| (a.value.clone(), a.clone()))
            .collect();
        let int = (plan.config.protocol == Protocol::Deploy)
            .then(|| IntModel::new(&dequantized, &plan).map_err(|e| e.to_string()));
        Ok(QuantModel {
            plan,
            dequantized,
            acts,
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

    pub fn to_file(&self) -> Result<ModelFile> {
        let mut structure = self.dequantized.clone();
        structure.params.clear();
        let mut f = mfile::graph_to_file(&structure)?;
        f.metadata.insert(mfile::KEY_KIND.into(), "quant".into());
        let meta = PlanMeta {
            config: self.plan.config.clone(),
            source: self.plan.source.clone(),
            kept_8bit: self.plan.kept_8bit.clone(),
            layers: self.plan.layers.iter().map(|l| l.info.clone()).collect(),
            acts: self.plan.acts.clone(),
        };
        f.metadata
            .insert(KEY_PLAN.into(), serde_json::to_string(&meta)?);
        for l in &self.plan.layers {
            let shape = self.dequantized.param(&l.node, "weight")?.shape.clone();
            put_codes(
                &mut f,
                &format!("{}.weight", l.node),
                &shape,
                &l.params,
                &l.codes,
            )?;
            if let Some((p2, c2)) = &l.second {
                put_codes(&mut f, &format!("{}.weight2", l.node), &shape, p2, c2)?;
            }
            f.tensors.insert(
                format!("{}.bias", l.node),
                RawTensor::f32(vec![l.bias.len()], l.bias.clone()),
            );
        }
        Ok(f)
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

    /// Loads a quantized model file (already read).
    pub fn from_file(f: &mut ModelFile, path: &Path) -> Result<Self> {
        let err = |msg: String| Error::ModelFile {
            path: path.to_path_buf(),
            msg,
        };
        let meta: PlanMeta =
            serde_json::from_str(f.meta(KEY_PLAN).ok_or_else(|| err("no plan".into()))?)
                .map_err(|e| err(format!("plan metadata: {e}")))?;
        // The structure: parameters are rebuilt from codes below.
        let mut g = graph_structure(f, path)?;
        let mut layers = Vec::new();
        for info in meta.layers {
            let shape = weight_shape(&g, &info.node).map_err(|e| err(e.to_string()))?;
            let (params, codes) =
                take_codes(f, &format!("{}.weight", info.node), &shape).map_err(err)?;
            let second = if info.dual {
                Some(take_codes(f, &format!("{}.weight2", info.node), &shape).map_err(err)?)
            } else {
                None
            };
            let bias = f
                .take_f32(&format!("{}.bias", info.node))
                .map_err(err)?
                .data;
            let cout = shape[0];
            g.params
                .insert(format!("{}.weight", info.node), Tensor::zeros(&shape));
            g.params
                .insert(format!("{}.bias", info.node), Tensor::zeros(&[cout]));
            layers.push(LayerQuant {
                node: info.node.clone(),
                params,
                codes,
                second,
                bias,
                info,
            });
        }
        let plan = Plan {
            config: meta.config,
            source: meta.source,
            kept_8bit: meta.kept_8bit,
            layers,
            acts: meta.acts,
        };
        check::check_plan(&g, &plan).map_err(err)?;
        QuantModel::new(&g, plan)
    }

    /// Bytes of weight data as stored (codes, scales, zero points, bit-widths, biases).
    pub fn weight_bytes(&self) -> Result<usize> {
        Ok(self.to_file()?.tensors.values().map(|t| t.byte_len()).sum())
    }
}

/// (min, mean, max) of per-channel bit-widths.
fn bits_summary(p: &[QParams]) -> (u8, f64, u8) {
    let min = p.iter().map(|q| q.bits).min().unwrap_or(0);
    let max = p.iter().map(|q| q.bits).max().unwrap_or(0);
    let mean = p.iter().map(|q| q.bits as f64).sum::<f64>() / p.len().max(1) as f64;
    (min, mean, max)
}

/// The widest clip window over channels.
fn window_summary(p: &[QParams]) -> (f32, f32) {
    p.iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), q| {
            let (a, b) = q.window();
            (lo.min(a.min(b)), hi.max(a.max(b)))
        })
}

impl QuantModel {
    /// The plan per layer as JSON: weight bits and SQNR, and the quantizer of the layer's
    /// output activation.
    pub fn plan_json(&self) -> serde_json::Value {
        let c = &self.plan.config;
        let layers: Vec<_> = self
            .plan
            .layers
            .iter()
            .map(|l| {
                let (bmin, bmean, bmax) = bits_summary(&l.params);
                let act = self.acts.get(&l.node).map(|a| {
                    let (amin, amean, amax) = bits_summary(&a.params);
                    let (lo, hi) = window_summary(&a.params);
                    serde_json::json!({"bits": [amin, amean, amax], "clip": a.clip, "per_channel": a.per_channel,
                                       "range": [lo, hi], "sqnr_db": a.sqnr_db})
                });
                serde_json::json!({"node": l.node, "weight_bits": [bmin, bmean, bmax], "weight_clip": l.info.clip,
                                   "bias_corrected": l.info.bias_corrected, "dual": l.info.dual,
                                   "kept_8bit": l.info.kept_8bit, "weight_sqnr_db": l.info.sqnr_db, "activation": act})
            })
            .collect();
        serde_json::json!({"protocol": c.protocol, "wbits": c.wbits, "abits": c.abits, "clip": c.clip,
                           "bit_alloc": c.bit_alloc, "bias_correction": c.bias_correction, "dual": c.dual,
                           "statistics": self.plan.source, "kept_8bit": self.plan.kept_8bit,
                           "activation_points": self.plan.acts.len(), "layers": layers})
    }

    /// The plan as a table for people.
    pub fn plan_text(&self) -> String {
        use std::fmt::Write as _;
        let c = &self.plan.config;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "plan: protocol {:?}, W{}A{}, clip {:?}, bit allocation {:?}, bias correction {}, dual {}; statistics: {}; kept at 8 bits: {}",
            c.protocol, c.wbits, c.abits, c.clip, c.bit_alloc, c.bias_correction, c.dual, self.plan.source,
            self.plan.kept_8bit.join(", ")
        );
        let _ = writeln!(
            s,
            "{:<30} {:>14} {:>8} {:<24} {:>14} {:>20} {:>8}",
            "layer", "w bits", "w SQNR", "out clip", "a bits", "a range", "a SQNR"
        );
        for l in &self.plan.layers {
            let (bmin, bmean, bmax) = bits_summary(&l.params);
            let flags = format!(
                "{}{}",
                if l.info.bias_corrected { "+bc" } else { "" },
                if l.info.dual { "+dual" } else { "" }
            );
            let (clip, abits, range, asq) = match self.acts.get(&l.node) {
                Some(a) => {
                    let (amin, amean, amax) = bits_summary(&a.params);
                    let (lo, hi) = window_summary(&a.params);
                    (
                        a.clip.clone(),
                        format!("{amin}/{amean:.2}/{amax}"),
                        format!("[{lo:.3}, {hi:.3}]"),
                        a.sqnr_db.map_or("-".into(), |v| format!("{v:.1}")),
                    )
                }
                None => ("(not quantized)".into(), "-".into(), "-".into(), "-".into()),
            };
            let _ = writeln!(
                s,
                "{:<30} {:>14} {:>8.1} {:<24} {:>14} {:>20} {:>8}",
                format!("{}{flags}", l.node),
                format!("{bmin}/{bmean:.2}/{bmax}"),
                l.info.sqnr_db,
                clip,
                abits,
                range,
                asq
            );
        }
        let _ = writeln!(s, "bits are min/mean/max over channels; SQNR in dB");
        s
    }
}
