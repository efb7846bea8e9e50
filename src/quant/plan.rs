//! The planner: from a prepared graph, its activation statistics and a [`QuantConfig`], the
//! complete quantization of every layer — per-channel weight codes and quantizers (with bias
//! correction folded into scales and biases, docs/METHOD.md §4), optional dual tensors (§5), and a
//! quantizer per activation quantization point (§2, §3, §5). A plan is a plain value: it can
//! be printed, saved and re-applied. Same inputs, same plan, bit for bit.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::aciq::{aciq_params_bounded, choose_prior};
use super::alloc::{allocate_bits, weight_spreads};
use super::bias::{bias_correction, bias_shift, corrected_params, input_bias_shift_from_means};
use super::config::{BiasMode, Rounding};
use super::config::{ClipMethod, Protocol, QuantConfig, QuantPoint};
use super::dual::{dual_quantize, relative_error, worst_k, DUAL_BITS};
use super::gptq::{gptq_codes, input_bias_shift, Hessian};
use super::mmse::{
    activation_range, mmse_histogram_with, mmse_weights, mse_on_histogram, ExactEval, MseEval,
};
use super::scheme::{dequantize_weights, minmax_weights_per_channel, quantize_weights, QParams};
use super::stats::{ChannelStats, TensorStats};
use crate::error::{Error, Result};
use crate::graph::{Activation, Graph, Op};

/// The quantized weights of one conv/linear layer.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerQuant {
    pub node: String,
    /// Per output channel; scales include the bias-correction factor.
    pub params: Vec<QParams>,
    /// One unsigned code per weight, weight layout.
    pub codes: Vec<u8>,
    /// The second 4-bit tensor of a dual layer (OMSE §3.3).
    pub second: Option<(Vec<QParams>, Vec<u8>)>,
    /// Final bias: the folded bias plus the bias-correction shift.
    pub bias: Vec<f32>,
    pub info: LayerInfo,
}

/// What the plan records about a layer for people (stored as JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerInfo {
    pub node: String,
    pub kept_8bit: bool,
    pub clip: String,
    pub bias_corrected: bool,
    pub dual: bool,
    /// Weight SQNR in dB of the deployed weights.
    pub sqnr_db: f64,
}

/// The quantizer of one activation quantization point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActQuant {
    pub value: String,
    pub per_channel: bool,
    pub act: Activation,
    /// One per channel, or one for the whole tensor.
    pub params: Vec<QParams>,
    pub clip: String,
    /// SQNR in dB on the calibration histogram (absent for data-free statistics and for a
    /// quantizer shared with another value).
    pub sqnr_db: Option<f64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub config: QuantConfig,
    /// "N images" or "data-free".
    pub source: String,
    pub kept_8bit: Vec<String>,
    pub layers: Vec<LayerQuant>,
    pub acts: Vec<ActQuant>,
}

impl Plan {
    /// Whether `other` quantizes to the same model: the same protocol, weight codes,
    /// quantizers, biases and activation quantizers (configuration and notes aside), so
    /// every executor gives both the same outputs.
    pub fn same_model(&self, other: &Plan) -> bool {
        fn layer(l: &LayerQuant) -> impl PartialEq + '_ {
            (&l.node, &l.params, &l.codes, &l.second, &l.bias)
        }
        fn act(a: &ActQuant) -> impl PartialEq + '_ {
            (&a.value, a.per_channel, a.act, &a.params)
        }
        self.config.protocol == other.config.protocol
            && self
                .layers
                .iter()
                .map(layer)
                .eq(other.layers.iter().map(layer))
            && self.acts.iter().map(act).eq(other.acts.iter().map(act))
    }
}

/// SQNR in dB with signal and error floored at 1e-30 so the value is always finite (plans
/// are JSON, which has no infinities): all-zero weights quantized exactly report 0 dB.
fn sqnr_db(w: &[f32], approx: &[f32]) -> f64 {
    let s: f64 = w.iter().map(|&v| (v as f64).powi(2)).sum();
    let e: f64 = w
        .iter()
        .zip(approx)
        .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
        .sum();
    10.0 * (s.max(1e-30) / e.max(1e-30)).log10()
}

/// Dequantized weights, with the second tensor added when present.
pub fn dequantize_layer(l: &LayerQuant) -> Result<Vec<f32>> {
    let mut w = dequantize_weights(&l.codes, &l.params)?;
    if let Some((p2, c2)) = &l.second {
        let w2 = dequantize_weights(c2, p2)?;
        w.iter_mut().zip(&w2).for_each(|(a, b)| *a += b);
    }
    Ok(w)
}

/// Plans the whole graph (`g` prepared: BN folded, activations fused).
pub fn make_plan(
    g: &Graph,
    cfg: &QuantConfig,
    points: &[QuantPoint],
    stats: &BTreeMap<String, TensorStats>,
    means: &BTreeMap<String, Vec<f64>>,
    source: &str,
) -> Result<Plan> {
    make_plan_with(g, cfg, points, stats, means, source, &mut ExactEval)
}

/// [`make_plan`] with the MMSE activation objective evaluated by `mse` (e.g. on the GPU);
/// the plan is the same bit for bit (`quant::mmse` module docs).
pub fn make_plan_with(
    g: &Graph,
    cfg: &QuantConfig,
    points: &[QuantPoint],
    stats: &BTreeMap<String, TensorStats>,
    means: &BTreeMap<String, Vec<f64>>,
    source: &str,
    mse: &mut dyn MseEval,
) -> Result<Plan> {
    let none = BTreeMap::new();
    make_plan_hessians(g, cfg, points, stats, means, &none, source, mse)
}

/// [`make_plan_with`] given the Hessians of the layers' inputs by layer name, which
/// `--rounding gptq` needs (`quant::gptq`).
#[allow(clippy::too_many_arguments)]
pub fn make_plan_hessians(
    g: &Graph,
    cfg: &QuantConfig,
    points: &[QuantPoint],
    stats: &BTreeMap<String, TensorStats>,
    means: &BTreeMap<String, Vec<f64>>,
    hessians: &BTreeMap<String, Hessian>,
    source: &str,
    mse: &mut dyn MseEval,
) -> Result<Plan> {
    if !(2..=8).contains(&cfg.wbits) || !(2..=8).contains(&cfg.abits) {
        return Err(Error::Usage(format!(
            "bit-widths must be 2..8, got W{} A{}",
            cfg.wbits, cfg.abits
        )));
    }
    let kept = cfg.kept_layers(g);
    for k in &kept {
        if !g
            .node(k)
            .is_some_and(|n| matches!(n.op, Op::Conv2d(_) | Op::Linear(_)))
        {
            return Err(Error::Usage(format!(
                "--keep-8bit {k}: not a conv or linear layer of the model"
            )));
        }
    }
    // First quantization of every layer, then dual tensors for the K worst, then bias correction.
    let mut layers = Vec::new();
    for n in &g.nodes {
        let (cout, khw, groups) = match &n.op {
            Op::Conv2d(c) => (c.out_channels, c.kernel[0] * c.kernel[1], c.groups),
            Op::Linear(l) => (l.out_features, 1, 1),
            _ => continue,
        };
        let w = &g.param(&n.name, "weight")?.data;
        let is_kept = kept.contains(&n.name);
        let bits = if is_kept {
            vec![8; cout]
        } else if cfg.bit_alloc.weights() {
            allocate_bits(&weight_spreads(w, cout)?, cfg.wbits as f64)?.bits
        } else {
            vec![cfg.wbits; cout]
        };
        let (params, clip) = if cfg.clip == ClipMethod::Mmse {
            let found = mmse_weights(w, cout, &bits)?;
            let p = found
                .iter()
                .zip(&bits)
                .map(|(c, &b)| QParams::from_range(c.lo as f32, c.hi as f32, b))
                .collect::<Result<_>>()?;
            (p, "mmse per kernel")
        } else {
            (
                minmax_weights_per_channel(w, cout, &bits)?,
                "min-max per channel",
            )
        };
        let codes = quantize_weights(w, &params)?;
        let bias = g
            .param_opt(&n.name, "bias")
            .map_or_else(|| vec![0.0; cout], |t| t.data.clone());
        layers.push((
            LayerQuant {
                node: n.name.clone(),
                params,
                codes,
                second: None,
                bias,
                info: LayerInfo {
                    node: n.name.clone(),
                    kept_8bit: is_kept,
                    clip: clip.into(),
                    bias_corrected: false,
                    dual: false,
                    sqnr_db: 0.0,
                },
            },
            (cout, khw, groups, n.inputs[0].clone()),
        ));
    }
    if cfg.dual > 0 {
        let cand: Vec<usize> = (0..layers.len())
            .filter(|&i| !layers[i].0.info.kept_8bit)
            .collect();
        let mut errs = Vec::new();
        for &i in &cand {
            let l = &layers[i].0;
            errs.push(relative_error(
                &g.param(&l.node, "weight")?.data,
                &dequantize_layer(l)?,
            )?);
        }
        for j in worst_k(&errs, cfg.dual) {
            let l = &mut layers[cand[j]].0;
            let w = &g.param(&l.node, "weight")?.data;
            let d = dual_quantize(w, &l.params, DUAL_BITS)?;
            l.second = Some((d.second, d.second_codes));
            l.info.dual = true;
        }
    }
    // Second-order rounding to the quantizers chosen above (not for dual layers, whose
    // second tensor is the residual of nearest rounding), before bias correction.
    if cfg.rounding == Rounding::Gptq {
        for (l, _) in layers.iter_mut().filter(|(l, _)| l.second.is_none()) {
            let h = hessians.get(&l.node).ok_or_else(|| {
                Error::Usage(format!(
                    "--rounding gptq needs the Hessian of {}'s input from calibration \
                     images (data-free statistics have none)",
                    l.node
                ))
            })?;
            l.codes = gptq_codes(&g.param(&l.node, "weight")?.data, &l.params, h)?;
            l.info.clip.push_str(", gptq");
        }
    }
    let mut out = Vec::with_capacity(layers.len());
    for (mut l, (cout, khw, groups, input)) in layers {
        let w = &g.param(&l.node, "weight")?.data;
        if cfg.bias_correction && cfg.bias_mode == BiasMode::Input {
            let wq = dequantize_layer(&l)?;
            // Calibration images give the mean input patch; data-free statistics give each
            // input channel's mean (from BatchNorm), the same at every kernel tap.
            let shift = match hessians.get(&l.node) {
                Some(h) => input_bias_shift(w, &wq, h)?,
                None => {
                    let m = means.get(&input).ok_or_else(|| {
                        Error::Quant(format!(
                            "input bias correction of {} needs the mean of its input {input}",
                            l.node
                        ))
                    })?;
                    input_bias_shift_from_means(w, &wq, m, khw, groups)?
                }
            };
            l.bias.iter_mut().zip(&shift).for_each(|(b, s)| *b -= s);
            l.info.bias_corrected = true;
            l.info.sqnr_db = sqnr_db(w, &wq);
        } else if cfg.bias_correction && l.second.is_none() {
            let wq = dequantize_layer(&l)?;
            let bc = bias_correction(w, &wq, cout)?;
            let m = means.get(&input).ok_or_else(|| {
                Error::Quant(format!(
                    "bias correction of {} needs the mean of its input {input}",
                    l.node
                ))
            })?;
            let shift = bias_shift(&bc.shift, m, khw, groups)?;
            l.params = corrected_params(&l.params, &bc)?;
            l.bias.iter_mut().zip(&shift).for_each(|(b, s)| *b += s);
            l.info.bias_corrected = true;
            // Deployed weights: factor·Q plus the per-channel shift (carried by the bias).
            let per = w.len() / cout;
            let mut deq = dequantize_layer(&l)?;
            for (o, row) in deq.chunks_mut(per).enumerate() {
                row.iter_mut().for_each(|v| *v += bc.shift[o]);
            }
            l.info.sqnr_db = sqnr_db(w, &deq);
        } else {
            l.info.sqnr_db = sqnr_db(w, &dequantize_layer(&l)?);
        }
        out.push(l);
    }
    let mut acts = Vec::with_capacity(points.len());
    for p in points {
        let s = stats
            .get(&p.value)
            .ok_or_else(|| Error::Quant(format!("no statistics for {}", p.value)))?;
        acts.push(plan_activation(p, s, g.act_max(&p.value), cfg, mse)?);
    }
    if cfg.protocol == Protocol::Deploy {
        share_max_pool_quantizers(g, &mut acts);
    }
    Ok(Plan {
        config: cfg.clone(),
        source: source.into(),
        kept_8bit: kept,
        layers: out,
        acts,
    })
}

/// `deploy`: a max pool's output takes its input's per-tensor quantizer when both have the
/// same bit-width, so integer execution takes the max of the codes as they are (max
/// commutes with a monotone quantizer, and the pooled range lies within the input's);
/// otherwise the pool keeps its own quantizer and its codes are requantized.
fn share_max_pool_quantizers(g: &Graph, acts: &mut [ActQuant]) {
    for n in &g.nodes {
        let (Op::MaxPool(_), [input]) = (&n.op, &n.inputs[..]) else {
            continue;
        };
        let pos = |v: &str| acts.iter().position(|a| a.value == v);
        let (Some(i), Some(o)) = (pos(input), pos(&n.name)) else {
            continue;
        };
        let (a, b) = (&acts[i], &acts[o]);
        if a.per_channel || b.per_channel || a.params.len() != 1 || b.params.len() != 1 {
            continue;
        }
        if a.params[0].bits == b.params[0].bits {
            acts[o].params = acts[i].params.clone();
            acts[o].clip = format!("shared with {input}");
            acts[o].sqnr_db = None;
        }
    }
}

/// `bounds`: an equalized ReLU6's per-channel bounds at this point (`Graph::act_max`).
fn plan_activation(
    p: &QuantPoint,
    s: &TensorStats,
    bounds: Option<&[f32]>,
    cfg: &QuantConfig,
    mse: &mut dyn MseEval,
) -> Result<ActQuant> {
    let chans: Vec<ChannelStats> = if p.per_channel {
        s.channels.clone()
    } else {
        vec![s.tensor.clone()]
    };
    // Per-channel activation bit-widths only in the paper protocol (deploy: one per tensor).
    let bits = if p.per_channel
        && cfg.protocol == Protocol::Paper
        && cfg.bit_alloc.activations()
        && p.bits == cfg.abits
    {
        let spread: Vec<f64> = chans.iter().map(|c| c.std).collect();
        allocate_bits(&spread, p.bits as f64)?.bits
    } else {
        vec![p.bits; chans.len()]
    };
    let has_hist = chans.iter().all(|c| c.hist.is_some());
    let (params, clip) = match cfg.clip {
        ClipMethod::Minmax => {
            let ps = chans
                .iter()
                .zip(&bits)
                .map(|(c, &b)| {
                    let (lo, hi) = activation_range(p.act, c.min, c.max);
                    QParams::from_range(lo as f32, hi as f32, b)
                })
                .collect::<Result<_>>()?;
            (ps, "min-max".to_string())
        }
        ClipMethod::Mmse if has_hist => {
            let mut ps = Vec::with_capacity(chans.len());
            for (c, &b) in chans.iter().zip(&bits) {
                let Some(h) = &c.hist else {
                    unreachable!("checked above")
                };
                let found = mmse_histogram_with(h, b, p.act, mse)?;
                ps.push(QParams::from_range(found.lo as f32, found.hi as f32, b)?);
            }
            (ps, "mmse".to_string())
        }
        ClipMethod::Aciq | ClipMethod::Mmse => {
            let prior = choose_prior(cfg.prior, &chans, &bits, p.act)?;
            let label = if cfg.clip == ClipMethod::Mmse {
                "aciq (no histogram for mmse)"
            } else {
                "aciq"
            };
            // ACIQ's window is capped at what the values can reach: 6 for ReLU6 (in
            // `aciq_window`), the bound(s) for an equalized ReLU6 (the channel's own per
            // channel, the largest per tensor).
            let upper: Vec<f64> = match bounds {
                Some(b) if p.per_channel => b.iter().map(|&v| v as f64).collect(),
                Some(b) => vec![b.iter().fold(0f32, |m, &v| m.max(v)) as f64],
                None => vec![f64::INFINITY; chans.len()],
            };
            (
                aciq_params_bounded(&chans, &bits, prior, p.act, &upper)?,
                format!("{label} {prior:?}").to_lowercase(),
            )
        }
    };
    let sqnr_db = if has_hist {
        Some(hist_sqnr(&chans, &params, p.act)?)
    } else {
        None
    };
    Ok(ActQuant {
        value: p.value.clone(),
        per_channel: p.per_channel,
        act: p.act,
        params,
        clip,
        sqnr_db,
    })
}

/// SQNR (dB) of the quantizers on the post-activation values the histograms describe.
fn hist_sqnr(chans: &[ChannelStats], params: &[QParams], act: Activation) -> Result<f64> {
    let (mut sig, mut err) = (0.0f64, 0.0f64);
    for (c, q) in chans.iter().zip(params) {
        let Some(h) = &c.hist else { continue };
        for (i, &cnt) in h.counts.iter().enumerate() {
            let (a, b) = h.edges(i);
            let x = act.apply((0.5 * (a + b)) as f32) as f64;
            sig += cnt as f64 * x * x;
        }
        let (lo, hi) = q.window();
        if q.bits > 0 {
            err += h.total() as f64 * mse_on_histogram(h, (lo as f64, hi as f64), q.bits, act)?;
        }
    }
    // Floored as in `sqnr_db`, so an activation that is always 0 reports a finite value.
    Ok(10.0 * (sig.max(1e-30) / err.max(1e-30)).log10())
}
