//! The quantized model file: a prepared graph's structure plus its [`Plan`] as codes.
//!
//! Layout (metadata `ptq4.kind = quant`): the prepared graph and preprocessing as for FP32
//! models (`io::model`), without parameters; `ptq4.plan` = JSON of the configuration,
//! statistics source, kept layers, per-layer info and activation quantizers. Tensors per
//! conv/linear node `L`: `L.weight.codes` (U8, channel by channel: channels of ≤ 4 bits as
//! 4-bit codes two per byte, low nibble first; wider channels one code per byte),
//! `L.weight.scale` (F32, per output channel), `L.weight.zero` (I32), `L.weight.bits` (U8),
//! `L.bias` (F32, bias correction included), and `L.weight2.*` for the second tensor of a
//! dual layer. No f32 weights are stored; a standalone BatchNorm (one that did not fold)
//! keeps its four f32 parameters `B.weight`, `B.bias`, `B.running_mean`, `B.running_var`
//! (the `paper` simulation runs it in float, `deploy` builds its code tables from them), and
//! an equalized conv keeps its per-channel activation bounds `L.act_max` (F32).
//!
//! Reading takes the graph structure straight from the metadata (no placeholder weights)
//! and checks it before any allocation ([`codes::check_layers`]), then the codes, then the
//! plan against the graph ([`check_plan`], also run on every model built in memory).

mod check;
mod codes;

pub use check::{check_plan, check_qparams};

use std::path::Path;

use serde::{Deserialize, Serialize};

use codes::{check_layers, put_codes, take_codes};

use crate::error::{Error, Result};
use crate::graph::{Graph, Op, ACT_MAX};
use crate::io::model::{self as mfile, ModelFile, RawTensor};
use crate::quant::config::QuantConfig;
use crate::quant::plan::{ActQuant, LayerInfo, LayerQuant, Plan};

pub const KEY_PLAN: &str = "ptq4.plan";

/// The plan as stored in [`KEY_PLAN`]: everything but the codes and biases (tensors).
#[derive(Serialize, Deserialize)]
struct PlanMeta {
    config: QuantConfig,
    source: String,
    kept_8bit: Vec<String>,
    layers: Vec<LayerInfo>,
    acts: Vec<ActQuant>,
}

/// Names of the f32 parameters a quantized file keeps: those of standalone BatchNorms, and
/// the per-channel activation bounds of equalized convs (`L.act_max`).
fn standalone_params(g: &Graph) -> Vec<String> {
    g.nodes
        .iter()
        .filter(|n| matches!(n.op, Op::BatchNorm { .. }))
        .flat_map(|n| n.op.param_names().iter().map(|p| format!("{}.{p}", n.name)))
        .chain(
            g.params
                .keys()
                .filter(|k| k.rsplit_once('.').is_some_and(|(_, p)| p == ACT_MAX))
                .cloned(),
        )
        .collect()
}

/// The weight shape of conv/linear node `node` of `g`.
fn weight_shape(g: &Graph, node: &str) -> Result<Vec<usize>> {
    g.nodes
        .iter()
        .find(|n| n.name == node)
        .and_then(|n| n.op.weight_shape())
        .ok_or_else(|| Error::MissingParam(format!("{node}.weight")))
}

/// The file of `plan` on the prepared graph `g` (its parameters are not stored).
pub fn to_file(g: &Graph, plan: &Plan) -> Result<ModelFile> {
    let mut structure = g.clone();
    let kept = standalone_params(g);
    structure.params.retain(|k, _| kept.contains(k));
    let mut f = mfile::graph_to_file(&structure)?;
    f.metadata.insert(mfile::KEY_KIND.into(), "quant".into());
    let meta = PlanMeta {
        config: plan.config.clone(),
        source: plan.source.clone(),
        kept_8bit: plan.kept_8bit.clone(),
        layers: plan.layers.iter().map(|l| l.info.clone()).collect(),
        acts: plan.acts.clone(),
    };
    f.metadata
        .insert(KEY_PLAN.into(), serde_json::to_string(&meta)?);
    for l in &plan.layers {
        let shape = weight_shape(g, &l.node)?;
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

/// Reads a quantized model file (already read from `path`): the prepared graph's structure
/// (no parameters) and the plan, checked against each other.
pub fn from_file(f: &mut ModelFile, path: &Path) -> Result<(Graph, Plan)> {
    let err = |msg: String| Error::ModelFile {
        path: path.to_path_buf(),
        msg,
    };
    let meta: PlanMeta =
        serde_json::from_str(f.meta(KEY_PLAN).ok_or_else(|| err("no plan".into()))?)
            .map_err(|e| err(format!("plan metadata: {e}")))?;
    let mut g = mfile::structure_from_file(f, path)?;
    check_layers(&g, f, path)?;
    // The structure alone does not say which convs have bounds: the file's tensors do.
    let bounds: Vec<String> = (g.nodes.iter())
        .filter(|n| matches!(n.op, Op::Conv2d(_)))
        .map(|n| format!("{}.{ACT_MAX}", n.name))
        .filter(|k| f.tensors.contains_key(k))
        .collect();
    for k in standalone_params(&g).into_iter().chain(bounds) {
        let t = f.take_f32(&k).map_err(err)?;
        g.params.insert(k, t);
    }
    mfile::check_read(&g, path, false)?;
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
    check_plan(&g, &plan).map_err(err)?;
    Ok((g, plan))
}
