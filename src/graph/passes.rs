//! Graph passes run by `prepare`: fold BatchNorm into the preceding conv/linear, then fuse
//! ReLU/ReLU6 into the op that produces their input (marking that output half-range).
//!
//! Folding (METHOD.md §1): with k = γ/√(var+eps), `W ← W·k` per output channel and
//! `b ← (b − mean)·k + β`, computed in f64 so the folded model matches the unfolded one to
//! f32 rounding.

use super::{Activation, Graph, Op};
use crate::error::Result;
use crate::tensor::Tensor;

/// Folds BatchNorm and fuses activations; returns the validated graph's value shapes.
pub fn prepare(g: &mut Graph) -> Result<()> {
    fold_batchnorm(g)?;
    fuse_activation(g);
    g.validate()?;
    Ok(())
}

/// Folds every BatchNorm whose input is a conv or linear layer read by nothing else.
/// BatchNorms that cannot be folded stay in the graph (the engine executes them).
pub fn fold_batchnorm(g: &mut Graph) -> Result<()> {
    loop {
        let consumers = g.consumers();
        let candidate = g.nodes.iter().find_map(|n| {
            let Op::BatchNorm { eps } = n.op else {
                return None;
            };
            let src = n.inputs.first()?;
            let producer = g.node(src)?;
            let foldable = matches!(producer.op, Op::Conv2d(_) | Op::Linear(_))
                && consumers.get(src.as_str()).is_some_and(|c| c.len() == 1);
            foldable.then(|| (n.name.clone(), src.clone(), eps))
        });
        let Some((bn, conv, eps)) = candidate else {
            return Ok(());
        };
        fold_one(g, &bn, &conv, eps)?;
    }
}

fn fold_one(g: &mut Graph, bn: &str, conv: &str, eps: f32) -> Result<()> {
    let gamma = g.param(bn, "weight")?.data.clone();
    let beta = g.param(bn, "bias")?.data.clone();
    let mean = g.param(bn, "running_mean")?.data.clone();
    let var = g.param(bn, "running_var")?.data.clone();
    let k: Vec<f64> = gamma
        .iter()
        .zip(&var)
        .map(|(&ga, &v)| ga as f64 / (v as f64 + eps as f64).sqrt())
        .collect();
    let out_ch = k.len();
    let wkey = format!("{conv}.weight");
    let bkey = format!("{conv}.bias");
    let w = g
        .params
        .get_mut(&wkey)
        .ok_or_else(|| crate::Error::MissingParam(wkey.clone()))?;
    let per = w.numel() / out_ch.max(1);
    for (o, chunk) in w.data.chunks_mut(per).enumerate() {
        for x in chunk {
            *x = (*x as f64 * k[o]) as f32;
        }
    }
    let old_b = g
        .params
        .get(&bkey)
        .map(|t| t.data.clone())
        .unwrap_or_else(|| vec![0.0; out_ch]);
    let new_b: Vec<f32> = (0..out_ch)
        .map(|o| ((old_b[o] as f64 - mean[o] as f64) * k[o] + beta[o] as f64) as f32)
        .collect();
    g.params.insert(
        bkey,
        Tensor {
            shape: vec![out_ch],
            data: new_b,
        },
    );
    for n in &mut g.nodes {
        if n.name == conv {
            match &mut n.op {
                Op::Conv2d(c) => c.bias = true,
                Op::Linear(l) => l.bias = true,
                _ => {}
            }
        }
    }
    g.nodes.retain(|n| n.name != bn);
    let prefix = format!("{bn}.");
    g.params.retain(|key, _| !key.starts_with(&prefix));
    g.rewire(bn, conv);
    Ok(())
}

/// Fuses a ReLU/ReLU6 into the conv or linear layer producing its input when that layer
/// has no other reader and no activation yet.
pub fn fuse_activation(g: &mut Graph) {
    loop {
        let consumers = g.consumers();
        let candidate = g.nodes.iter().find_map(|n| {
            let act = match n.op {
                Op::Relu => Activation::Relu,
                Op::Relu6 => Activation::Relu6,
                _ => return None,
            };
            let src = n.inputs.first()?;
            let producer = g.node(src)?;
            let free = match &producer.op {
                Op::Conv2d(c) => c.act == Activation::None,
                Op::Linear(l) => l.act == Activation::None,
                _ => false,
            };
            (free && consumers.get(src.as_str()).is_some_and(|c| c.len() == 1))
                .then(|| (n.name.clone(), src.clone(), act))
        });
        let Some((relu, prod, act)) = candidate else {
            return;
        };
        for n in &mut g.nodes {
            if n.name == prod {
                match &mut n.op {
                    Op::Conv2d(c) => c.act = act,
                    Op::Linear(l) => l.act = act,
                    _ => {}
                }
            }
        }
        g.nodes.retain(|n| n.name != relu);
        g.rewire(&relu, &prod);
    }
}
