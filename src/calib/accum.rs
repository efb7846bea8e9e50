//! The accumulators both calibration passes fill (one [`StatsAccumulator`] per quantization
//! point, plus per-channel sums for post-activation means) and how they finish into a
//! [`Calibration`].

use std::collections::{BTreeMap, BTreeSet};

use super::Calibration;
use crate::error::Result;
use crate::graph::{Graph, Op};
use crate::quant::config::QuantPoint;
use crate::quant::stats::{StatsAccumulator, StatsConfig};

/// Values read by conv/linear layers.
pub(super) fn layer_inputs(g: &Graph) -> BTreeSet<String> {
    g.nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Conv2d(_) | Op::Linear(_)))
        .flat_map(|n| n.inputs.iter().cloned())
        .collect()
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
        source: format!("{images} images"),
    })
}
