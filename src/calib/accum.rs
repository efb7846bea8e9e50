//! The accumulators both calibration passes fill (one [`StatsAccumulator`] per quantization
//! point, per-channel sums for post-activation means, and on request the Hessians of every
//! layer's input patches, pass 1 only) and how they finish into a [`Calibration`].

use std::collections::{BTreeMap, BTreeSet};

use super::Calibration;
use crate::error::Result;
use crate::graph::{Graph, Op};
use crate::quant::config::QuantPoint;
use crate::quant::gptq::{Hessian, Patches};
use crate::quant::stats::{StatsAccumulator, StatsConfig};

/// Values read by conv/linear layers.
pub(super) fn layer_inputs(g: &Graph) -> BTreeSet<String> {
    g.nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Conv2d(_) | Op::Linear(_)))
        .flat_map(|n| n.inputs.iter().cloned())
        .collect()
}

/// The Hessian accumulators of every conv/linear layer (by layer name) and, per value, the
/// layers that read it (so a hook feeds each value it sees to its readers).
pub(super) struct Hessians {
    pub layers: BTreeMap<String, Hessian>,
    pub readers: BTreeMap<String, Vec<String>>,
    /// Per-image shape of each value read (the device reports spatial axes flattened).
    pub shapes: BTreeMap<String, Vec<usize>>,
}

impl Hessians {
    pub fn new(g: &Graph) -> Result<Self> {
        let all = g.validate()?;
        let mut shapes = BTreeMap::new();
        let mut layers = BTreeMap::new();
        let mut readers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for n in &g.nodes {
            let p = match &n.op {
                Op::Conv2d(c) => Patches::conv(c),
                Op::Linear(l) => Patches::linear(l),
                _ => continue,
            };
            layers.insert(n.name.clone(), Hessian::new(p)?);
            if let Some(s) = all.get(&n.inputs[0]) {
                shapes.insert(n.inputs[0].clone(), s.clone());
            }
            readers
                .entry(n.inputs[0].clone())
                .or_default()
                .push(n.name.clone());
        }
        Ok(Hessians {
            layers,
            readers,
            shapes,
        })
    }

    /// Adds a batch of `value` (f32, `shape` batch first) to the layers reading it.
    pub fn feed(&mut self, value: &str, x: &[f32], shape: &[usize]) -> Result<()> {
        let mut shape = shape.to_vec();
        if let Some(s) = self.shapes.get(value) {
            shape = [&shape[..1], &s[..]].concat();
        }
        let shape = &shape[..];
        for l in self.readers.get(value).into_iter().flatten() {
            if let Some(h) = self.layers.get_mut(l) {
                h.accumulate(x, shape)?;
            }
        }
        Ok(())
    }

    pub fn wants(&self, value: &str) -> bool {
        self.readers.contains_key(value)
    }
}

/// One accumulator per quantization point (channels from the value's shape) and the
/// values whose post-activation means bias correction needs.
pub(super) fn accumulators(
    g: &Graph,
    points: &[QuantPoint],
) -> Result<(BTreeMap<String, StatsAccumulator>, BTreeSet<String>)> {
    let shapes = g.validate()?;
    let mut acc = BTreeMap::new();
    for p in points {
        let c = shapes.get(&p.value).map_or(1, |s| s[0]);
        acc.insert(
            p.value.clone(),
            StatsAccumulator::new(c, StatsConfig::default())?,
        );
    }
    Ok((acc, layer_inputs(g)))
}

/// The calibration from finished accumulators and per-channel (sum, count) of the means.
pub(super) fn finish(
    acc: &BTreeMap<String, StatsAccumulator>,
    sums: BTreeMap<String, (Vec<f64>, u64)>,
    hessians: Option<Hessians>,
    images: usize,
) -> Result<Calibration> {
    let mut stats = BTreeMap::new();
    for (k, a) in acc {
        stats.insert(k.clone(), a.finalize()?);
    }
    let means = sums
        .into_iter()
        .map(|(k, (s, cnt))| (k, s.iter().map(|v| v / cnt.max(1) as f64).collect()))
        .collect();
    Ok(Calibration {
        stats,
        means,
        hessians: hessians.map(|h| h.layers).unwrap_or_default(),
        source: format!("{images} images"),
    })
}
