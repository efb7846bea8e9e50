//! Data-free statistics (docs/METHOD.md §6): BatchNorm parameters give each folded conv's
//! pre-activation channels, and moments propagate through the graph (module docs of
//! [`super`]); the per-op moment rules are pure math in [`crate::quant::datafree`]. A
//! standalone BatchNorm maps its input moments affinely (then its fused activation), and
//! a `Unary` function pushes Gaussian moments through itself by quadrature
//! (`datafree::function_moments`). An equalized ReLU6 (`Graph::act_max`) clamps each
//! channel's moments to its own bound.

use std::collections::BTreeMap;

use super::accum::layer_inputs;
use super::Calibration;
use crate::engine::cpu::elementwise::batch_norm_coef;
use crate::error::{Error, Result};
use crate::graph::{shuffle_source, Activation, Graph, Op};
use crate::quant::config::QuantPoint;
use crate::quant::datafree::{
    self, activation_moments, add_moments, affine_moments, clamp_moments, function_moments,
    mul_moments, Moments,
};

/// Data-free statistics from the BatchNorm parameters of `raw` (the unfolded graph) for the
/// points of `g` (its prepared form), by moment propagation (module docs).
pub fn data_free(raw: &Graph, g: &Graph, points: &[QuantPoint]) -> Result<Calibration> {
    let shapes = g.validate()?;
    // conv name -> the BatchNorm that was folded into it.
    let mut bn_of: BTreeMap<&str, &str> = BTreeMap::new();
    for n in &raw.nodes {
        // A BatchNorm still in `g` did not fold: it is propagated through as an affine map.
        let folded = g.node(&n.name).is_none();
        if let (Op::BatchNorm { .. }, Some(src), true) = (&n.op, n.inputs.first(), folded) {
            bn_of.insert(src.as_str(), n.name.as_str());
        }
    }
    let pre = &g.preprocess;
    let input_m: Vec<Moments> = (0..g.input_shape[0])
        .map(|c| {
            let ch = c.min(2);
            let (lo, hi) = (
                -pre.mean[ch] / pre.std[ch],
                (255.0 - pre.mean[ch]) / pre.std[ch],
            );
            let (lo, hi) = (lo as f64, hi as f64);
            Moments {
                mean: 0.5 * (lo + hi),
                var: (hi - lo) * (hi - lo) / 12.0,
            }
        })
        .collect();
    let mut post: BTreeMap<&str, Vec<Moments>> = BTreeMap::new();
    let mut pre_m: BTreeMap<&str, Vec<Moments>> = BTreeMap::new();
    post.insert(Graph::INPUT, input_m.clone());
    pre_m.insert(Graph::INPUT, input_m);
    for n in &g.nodes {
        let inp = |i: usize| -> Result<&Vec<Moments>> {
            post.get(n.inputs[i].as_str())
                .ok_or_else(|| Error::Quant(format!("no moments for {}", n.inputs[i])))
        };
        let (before, act) = match &n.op {
            Op::Conv2d(c) => {
                let m = match bn_of.get(n.name.as_str()) {
                    Some(bn) => datafree::batchnorm_moments(
                        &raw.param(bn, "weight")?.data,
                        &raw.param(bn, "bias")?.data,
                    )?,
                    None => datafree::conv_moments(
                        &g.param(&n.name, "weight")?.data,
                        c.out_channels,
                        c.groups,
                        inp(0)?,
                        g.param_opt(&n.name, "bias").map(|t| t.data.as_slice()),
                    )?,
                };
                (m, c.act)
            }
            Op::Linear(l) => {
                let m = match bn_of.get(n.name.as_str()) {
                    Some(bn) => datafree::batchnorm_moments(
                        &raw.param(bn, "weight")?.data,
                        &raw.param(bn, "bias")?.data,
                    )?,
                    None => datafree::linear_moments(
                        &g.param(&n.name, "weight")?.data,
                        l.out_features,
                        inp(0)?,
                        g.param_opt(&n.name, "bias").map(|t| t.data.as_slice()),
                    )?,
                };
                (m, l.act)
            }
            Op::Add => {
                let mut m = inp(0)?.clone();
                for i in 1..n.inputs.len() {
                    m = add_moments(&m, inp(i)?)?;
                }
                (m, Activation::None)
            }
            Op::Concat => {
                let mut m = Vec::new();
                for i in 0..n.inputs.len() {
                    m.extend_from_slice(inp(i)?);
                }
                (m, Activation::None)
            }
            // Independence of the map and the gate is assumed (a gate computed from the
            // map's own global average is only approximately so).
            Op::Mul => (mul_moments(inp(0)?, inp(1)?)?, Activation::None),
            Op::ChannelShuffle { groups } => {
                let m = inp(0)?;
                let c = m.len();
                (
                    (0..c).map(|o| m[shuffle_source(c, *groups, o)]).collect(),
                    Activation::None,
                )
            }
            Op::Relu => (inp(0)?.clone(), Activation::Relu),
            Op::Relu6 => (inp(0)?.clone(), Activation::Relu6),
            Op::Flatten => {
                let s = &shapes[&n.inputs[0]];
                let per = s[1..].iter().product::<usize>().max(1);
                (
                    inp(0)?
                        .iter()
                        .flat_map(|m| std::iter::repeat_n(*m, per))
                        .collect(),
                    Activation::None,
                )
            }
            Op::BatchNorm { eps, act } => {
                let p = |k| g.param(&n.name, k).map(|t| t.data.as_slice());
                let coef = batch_norm_coef(
                    p("weight")?,
                    p("bias")?,
                    p("running_mean")?,
                    p("running_var")?,
                    *eps,
                );
                let m = inp(0)?
                    .iter()
                    .zip(&coef)
                    .map(|(m, &(k, b))| affine_moments(*m, k as f64, b as f64))
                    .collect();
                (m, *act)
            }
            Op::Unary(u) => {
                let f = |x: f64| u.apply(x as f32) as f64;
                let m = inp(0)?.iter().map(|m| function_moments(*m, f)).collect();
                (m, Activation::None)
            }
            Op::Lrn {
                size,
                alpha,
                beta,
                bias,
            } => (
                datafree::lrn_moments(inp(0)?, *size, *alpha, *beta, *bias),
                Activation::None,
            ),
            Op::MaxPool(_) | Op::AvgPool(_) | Op::GlobalAvgPool | Op::Softmax => {
                (inp(0)?.clone(), Activation::None)
            }
        };
        // An equalized ReLU6 (bounds b_c): the point measures min(x, b_c), the value is
        // clamp(x, 0, b_c), both from the Gaussian moments of x.
        let capped = match &n.op {
            Op::Conv2d(_) => g.act_max(&n.name),
            _ => None,
        };
        let (before, after): (Vec<Moments>, Vec<Moments>) = match capped {
            Some(cap) => before
                .iter()
                .zip(cap)
                .map(|(m, &b)| {
                    (
                        clamp_moments(*m, f64::NEG_INFINITY, b as f64),
                        clamp_moments(*m, 0.0, b as f64),
                    )
                })
                .unzip(),
            None => {
                let after = before.iter().map(|m| activation_moments(*m, act)).collect();
                (before, after)
            }
        };
        post.insert(n.name.as_str(), after);
        pre_m.insert(n.name.as_str(), before);
    }
    let mut stats = BTreeMap::new();
    for p in points {
        let m = pre_m
            .get(p.value.as_str())
            .ok_or_else(|| Error::Quant(format!("no moments for {}", p.value)))?;
        let mut s = datafree::stats_from_moments(m, datafree::RANGE_SIGMAS)?;
        if p.value == Graph::INPUT {
            // The preprocessing bounds the input exactly.
            for (c, ch) in s.channels.iter_mut().enumerate() {
                let k = c.min(2);
                ch.min = (-pre.mean[k] / pre.std[k]) as f64;
                ch.max = ((255.0 - pre.mean[k]) / pre.std[k]) as f64;
            }
            s.tensor.min = s
                .channels
                .iter()
                .map(|c| c.min)
                .fold(f64::INFINITY, f64::min);
            s.tensor.max = s
                .channels
                .iter()
                .map(|c| c.max)
                .fold(f64::NEG_INFINITY, f64::max);
        }
        if let Some(cap) = g.act_max(&p.value) {
            // min(x, b_c) never exceeds b_c.
            for (ch, &b) in s.channels.iter_mut().zip(cap) {
                ch.max = ch.max.min(b as f64);
                ch.min = ch.min.min(ch.max);
            }
            s.tensor.max = s
                .channels
                .iter()
                .map(|c| c.max)
                .fold(f64::NEG_INFINITY, f64::max);
            s.tensor.min = s.tensor.min.min(s.tensor.max);
        }
        stats.insert(p.value.clone(), s);
    }
    let means = layer_inputs(g)
        .into_iter()
        .filter_map(|v| {
            post.get(v.as_str())
                .map(|m| (v.clone(), m.iter().map(|x| x.mean).collect()))
        })
        .collect();
    Ok(Calibration {
        stats,
        means,
        hessians: Default::default(),
        source: "data-free".into(),
    })
}
