//! Graph passes run by `prepare`: fold BatchNorm into the preceding conv/linear, then fuse
//! ReLU/ReLU6 into the op that produces their input (marking that output half-range).
//!
//! Folding (docs/METHOD.md §1): with k = γ/√(var+eps), `W ← W·k` per output channel and
//! `b ← (b − mean)·k + β`, computed in f64 so the folded model matches the unfolded one to
//! f32 rounding.
//!
//! Both passes make one walk over the nodes in topological order with a name → index map,
//! reader counts and a renaming of removed values, so they run in time linear in the graph
//! (n·log n with the parameter map). A node absorbed into its producer hands its readers to
//! that producer, which is what re-running the search after each fold would see.

use std::collections::{HashMap, HashSet};

use super::{Activation, Graph, Op};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Folds BatchNorm and fuses activations; returns the validated graph's value shapes.
pub fn prepare(g: &mut Graph) -> Result<()> {
    g.validate()?;
    fold_batchnorm(g)?;
    fuse_activation(g)?;
    g.validate()?;
    Ok(())
}

/// One walk in topological order: node `i` is absorbed into the producer (index `p`) of its
/// first input when that value has no other reader and `merge(g, i, p)` accepts (updating
/// the producer); later readers of `i` then read the producer, which inherits its readers.
fn absorb(
    g: &mut Graph,
    mut merge: impl FnMut(&mut Graph, usize, usize) -> Result<bool>,
) -> Result<()> {
    let index: HashMap<String, usize> = g
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.clone(), i))
        .collect();
    let mut readers: HashMap<String, usize> = HashMap::new();
    for n in &g.nodes {
        for i in &n.inputs {
            *readers.entry(i.clone()).or_default() += 1;
        }
    }
    let mut renamed: HashMap<String, String> = HashMap::new();
    let mut removed: HashSet<usize> = HashSet::new();
    for i in 0..g.nodes.len() {
        for inp in &mut g.nodes[i].inputs {
            if let Some(to) = renamed.get(inp.as_str()) {
                *inp = to.clone();
            }
        }
        let Some(src) = g.nodes[i].inputs.first().cloned() else {
            continue;
        };
        let Some(&p) = index.get(&src) else { continue };
        if readers.get(&src) != Some(&1) || !merge(g, i, p)? {
            continue;
        }
        let name = g.nodes[i].name.clone();
        let r = readers.get(&name).copied().unwrap_or(0);
        readers.insert(src.clone(), r);
        renamed.insert(name, src);
        removed.insert(i);
    }
    if removed.is_empty() {
        return Ok(());
    }
    if let Some(to) = renamed.get(&g.output) {
        g.output = to.clone();
    }
    let mut i = 0;
    g.nodes.retain(|_| {
        i += 1;
        !removed.contains(&(i - 1))
    });
    Ok(())
}

/// Folds every BatchNorm whose input is a conv or linear layer read by nothing else.
/// BatchNorms that cannot be folded stay in the graph (the engine executes them).
pub fn fold_batchnorm(g: &mut Graph) -> Result<()> {
    absorb(g, |g, i, p| {
        let Op::BatchNorm {
            eps,
            act: Activation::None,
        } = g.nodes[i].op
        else {
            return Ok(false);
        };
        if !matches!(g.nodes[p].op, Op::Conv2d(_) | Op::Linear(_)) {
            return Ok(false);
        }
        let (bn, conv) = (g.nodes[i].name.clone(), g.nodes[p].name.clone());
        fold_one(g, &bn, &conv, eps)?;
        match &mut g.nodes[p].op {
            Op::Conv2d(c) => c.bias = true,
            Op::Linear(l) => l.bias = true,
            _ => {}
        }
        Ok(true)
    })
}

fn fold_one(g: &mut Graph, bn: &str, conv: &str, eps: f32) -> Result<()> {
    let mut take = |p: &str| {
        let key = format!("{bn}.{p}");
        g.params
            .remove(&key)
            .map(|t| t.data)
            .ok_or(Error::MissingParam(key))
    };
    let (gamma, beta, mean, var) = (
        take("weight")?,
        take("bias")?,
        take("running_mean")?,
        take("running_var")?,
    );
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
        .ok_or_else(|| Error::MissingParam(wkey.clone()))?;
    if out_ch == 0
        || w.numel() % out_ch != 0
        || [&beta, &mean, &var].iter().any(|v| v.len() != out_ch)
    {
        return Err(Error::Graph(format!(
            "node {bn}: {out_ch} BatchNorm channels do not match {wkey} of shape {:?}",
            w.shape
        )));
    }
    let per = w.numel() / out_ch;
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
    if old_b.len() != out_ch {
        return Err(Error::Graph(format!(
            "node {bn}: {bkey} has {} values, the BatchNorm {out_ch}",
            old_b.len()
        )));
    }
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
    Ok(())
}

/// Fuses a ReLU/ReLU6 into the conv, linear or standalone BatchNorm producing its input
/// when that node has no other reader and no activation yet (a BatchNorm → ReLU pair is
/// then one table on the integer paths: one quantization point, not two).
pub fn fuse_activation(g: &mut Graph) -> Result<()> {
    absorb(g, |g, i, p| {
        let act = match g.nodes[i].op {
            Op::Relu => Activation::Relu,
            Op::Relu6 => Activation::Relu6,
            _ => return Ok(false),
        };
        let slot = match &mut g.nodes[p].op {
            Op::Conv2d(c) => &mut c.act,
            Op::Linear(l) => &mut l.act,
            Op::BatchNorm { act, .. } => act,
            _ => return Ok(false),
        };
        if *slot != Activation::None {
            return Ok(false);
        }
        *slot = act;
        Ok(true)
    })
}
