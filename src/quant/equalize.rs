//! Cross-layer equalization (`quantize --equalize`; Nagel et al. 2019, docs/METHOD.md §14): a
//! transform of the prepared FP32 graph (BatchNorm folded, activations fused), before any
//! statistics, that leaves the model the same function.
//!
//! A pair is conv₁ → conv₂ where conv₁'s output is read by conv₂ alone (no residual add,
//! concatenation or second reader between them) and conv₁'s fused activation is none, ReLU or
//! ReLU6. Per channel c of conv₁'s output: r₁(c) = max|W₁[c, …]| (its kernel: for a depthwise
//! or grouped conv₁ too, output channel c is row c), r₂(c) = max|W₂[o, c mod (C/g₂), …]| over
//! the outputs o of the group of conv₂ that reads c, and s_c = √(r₁(c)/r₂(c)) (1 where either
//! range is 0). Then W₁[c] /= s_c, b₁[c] /= s_c, W₂[:, c] *= s_c, and both ranges become
//! √(r₁r₂) — unless that would raise conv₁'s activation range (below). ReLU is positively
//! homogeneous and stays; ReLU6 becomes ReLU with the per-channel
//! upper bound 6/s_c, stored as the parameter `<conv₁>.act_max` ([`ACT_MAX`], [`Graph::act_max`]: y =
//! min(max(x, 0), act_max[c])), so the function is exactly the same (up to f32 rounding of
//! the scaled weights). A conv in two pairs (the depthwise conv of an MBConv block: expand →
//! dw, dw → project) gets both scalings; the pass repeats over all pairs until no scale moves
//! by more than [`TOLERANCE`] (at most [`MAX_ROUNDS`] rounds), and returns each conv₁'s
//! accumulated output scale so the data-free statistics can rescale its BatchNorm moments.
//!
//! Activation ranges (ptq4's choice, not in the paper): conv₁'s output is quantized per
//! tensor in `deploy`, and s_c < 1 multiplies channel c (bias included) by 1/s_c. On
//! EfficientNet-Lite0 the unconstrained rule takes s_c down to 1.4·10⁻³, lifting ReLU6 bounds
//! to thousands and expand outputs' ranges from 6 to 95, which leaves 4-bit activations
//! nothing (5 % top-1 agreement at W4A4, docs/METHOD.md §14). So s_c is floored: at
//! b_c / max b for a bounded ReLU (no bound rises above the tensor's largest; ReLU6 starts
//! with every b_c = 6, so its first floor is 1), at 1 for an unbounded output (channels only
//! shrink). Where the floor binds, the pair's ranges stay unequal (r₁(c) < r₂(c)).

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::graph::{Activation, Graph, Op, ACT_MAX};
use crate::tensor::Tensor;

/// Rounds of equalization at most.
pub const MAX_ROUNDS: usize = 64;

/// The pass stops when every scale of a round is within this of 1.
pub const TOLERANCE: f32 = 1e-4;

/// What [`equalize`] did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Equalized {
    /// (conv₁, conv₂) of every pair, in graph order.
    pub pairs: Vec<(String, String)>,
    /// Per conv₁: the accumulated factor its output channels were divided by (∏ s_c).
    pub out_scale: BTreeMap<String, Vec<f32>>,
    /// Rounds run.
    pub rounds: usize,
}

/// The pairs of `g` (module docs), in graph order.
pub fn pairs(g: &Graph) -> Vec<(String, String)> {
    let mut readers: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, n) in g.nodes.iter().enumerate() {
        for v in &n.inputs {
            readers.entry(v.as_str()).or_default().push(i);
        }
    }
    let mut out = Vec::new();
    for n in &g.nodes {
        let Op::Conv2d(c1) = &n.op else { continue };
        if n.name == g.output || n.name == g.logits() {
            continue;
        }
        let (Some(r), Some(_)) = (readers.get(n.name.as_str()), g.param_opt(&n.name, "weight"))
        else {
            continue;
        };
        let [i2] = r[..] else { continue };
        let n2 = &g.nodes[i2];
        match &n2.op {
            Op::Conv2d(c2) if n2.inputs.len() == 1 && c2.in_channels == c1.out_channels => {
                out.push((n.name.clone(), n2.name.clone()))
            }
            _ => {}
        }
    }
    out
}

/// r₁(c) = max|W₁[c, …]| per output channel of a `[O, …]` weight.
fn out_ranges(w: &Tensor) -> Vec<f32> {
    let o = w.shape[0];
    let per = w.numel() / o.max(1);
    w.data
        .chunks(per.max(1))
        .map(|k| k.iter().fold(0f32, |m, v| m.max(v.abs())))
        .collect()
}

/// Calls `f(input channel, flat index)` for every weight of conv₂ (`[O, C/g, kh, kw]`,
/// `groups` groups) with the input channel it reads.
fn for_input_channels(shape: &[usize], groups: usize, mut f: impl FnMut(usize, usize)) {
    let (o, cig) = (shape[0], shape[1]);
    let taps = shape[2] * shape[3];
    let cog = o / groups.max(1);
    for oc in 0..o {
        let grp = oc / cog.max(1);
        for ic in 0..cig {
            let c = grp * cig + ic;
            let base = (oc * cig + ic) * taps;
            for t in 0..taps {
                f(c, base + t);
            }
        }
    }
}

/// Equalizes every pair of the prepared graph `g` in place (module docs).
pub fn equalize(g: &mut Graph) -> Result<Equalized> {
    let pairs = pairs(g);
    let mut out_scale: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    let mut rounds = 0;
    while rounds < MAX_ROUNDS && !pairs.is_empty() {
        rounds += 1;
        let mut moved = 0f32;
        for (a, b) in &pairs {
            let s = equalize_pair(g, a, b)?;
            moved = s.iter().fold(moved, |m, &v| m.max((v - 1.0).abs()));
            let acc = out_scale
                .entry(a.clone())
                .or_insert_with(|| vec![1.0; s.len()]);
            acc.iter_mut().zip(&s).for_each(|(t, v)| *t *= v);
        }
        if moved <= TOLERANCE {
            break;
        }
    }
    g.validate()?;
    Ok(Equalized {
        pairs,
        out_scale,
        rounds,
    })
}

/// One pair: computes s_c, rescales both layers and conv₁'s activation bound; returns s.
fn equalize_pair(g: &mut Graph, a: &str, b: &str) -> Result<Vec<f32>> {
    let (r1, r2) = pair_ranges(g, a, b)?;
    // A dead channel on either side (range 0) keeps scale 1; so does a ratio that is not a
    // finite positive number.
    let floor = scale_floor(g, a, r1.len());
    let s: Vec<f32> = r1
        .iter()
        .zip(&r2)
        .zip(&floor)
        .map(|((&x, &y), &f)| {
            let s = (x as f64 / y as f64).sqrt() as f32;
            if x > 0.0 && y > 0.0 && s.is_finite() && s > 0.0 {
                s.max(f)
            } else {
                1.0
            }
        })
        .collect();
    let w1 = param_mut(g, a, "weight")?;
    let per = w1.numel() / s.len().max(1);
    for (k, &sc) in w1.data.chunks_mut(per.max(1)).zip(&s) {
        k.iter_mut().for_each(|v| *v /= sc);
    }
    if let Some(bias) = g.params.get_mut(&format!("{a}.bias")) {
        bias.data.iter_mut().zip(&s).for_each(|(v, &sc)| *v /= sc);
    }
    let key = format!("{a}.{ACT_MAX}");
    let idx = g.nodes.iter().position(|n| n.name == a);
    if let Some(Op::Conv2d(c)) = idx.map(|i| &mut g.nodes[i].op) {
        if c.act == Activation::Relu6 {
            c.act = Activation::Relu;
            g.params.insert(
                key.clone(),
                Tensor {
                    shape: vec![s.len()],
                    data: vec![6.0; s.len()],
                },
            );
        }
    }
    if let Some(cap) = g.params.get_mut(&key) {
        cap.data.iter_mut().zip(&s).for_each(|(v, &sc)| *v /= sc);
    }
    let groups2 = conv_groups(g, b)?;
    let w2 = param_mut(g, b, "weight")?;
    let shape = w2.shape.clone();
    for_input_channels(&shape, groups2, |c, i| w2.data[i] *= s[c]);
    Ok(s)
}

/// The smallest scale each output channel of conv₁ may take (module docs, "activation
/// ranges"): b_c / max b for a bounded ReLU (ReLU6: every b_c = 6 at first), so no bound
/// rises above the tensor's largest; 1 for an unbounded output, which may only shrink.
fn scale_floor(g: &Graph, a: &str, channels: usize) -> Vec<f32> {
    match g.act_max(a) {
        Some(b) => {
            let top = b.iter().fold(0f32, |m, &v| m.max(v));
            b.iter().map(|&v| v / top).collect()
        }
        None => vec![1.0; channels],
    }
}

fn param_mut<'g>(g: &'g mut Graph, node: &str, p: &str) -> Result<&'g mut Tensor> {
    let key = format!("{node}.{p}");
    g.params
        .get_mut(&key)
        .ok_or(Error::MissingParam(key.clone()))
}

/// Per-channel weight ranges of a pair after equalization: (r₁(c), r₂(c)) (tests, reports).
pub fn pair_ranges(g: &Graph, a: &str, b: &str) -> Result<(Vec<f32>, Vec<f32>)> {
    let groups2 = conv_groups(g, b)?;
    let r1 = out_ranges(g.param(a, "weight")?);
    let w2 = g.param(b, "weight")?;
    let mut r2 = vec![0f32; r1.len()];
    for_input_channels(&w2.shape, groups2, |c, i| {
        r2[c] = r2[c].max(w2.data[i].abs())
    });
    Ok((r1, r2))
}

fn conv_groups(g: &Graph, node: &str) -> Result<usize> {
    match g.node(node).map(|n| &n.op) {
        Some(Op::Conv2d(c)) => Ok(c.groups),
        _ => Err(Error::Quant(format!("equalization: {node} is not a conv"))),
    }
}
