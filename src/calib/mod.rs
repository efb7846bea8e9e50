//! Statistics for planning, at every activation quantization point.
//!
//! - From images: the engine runs over the calibration inputs twice (docs/METHOD.md §2; the
//!   two-pass design of [`crate::quant::stats`]): pass 1 gathers per-channel count, sum,
//!   sum of squares, min and max; pass 2 the mean absolute deviation and histograms. Only
//!   the accumulators are kept, never activations, so memory does not grow with the number
//!   of images. Statistics are taken on the pre-activation tensor of conv/linear outputs
//!   (after folded BN, before the fused ReLU), as ACIQ prescribes.
//! - Data-free (docs/METHOD.md §6): each conv followed by BatchNorm has pre-activation channels
//!   N(β_c, γ_c²); moments propagate through residual sums (independent channels: means and
//!   variances add), fused activations (exact clipped-Gaussian moments), pooling (mean kept;
//!   variance kept as an upper bound, since averaging only shrinks it), convs without
//!   BatchNorm (linear map of moments) and the graph input (uniform over the range the
//!   preprocessing can produce).
//!
//! The image path runs on either backend ([`calibrate_batches`]): the CPU engine with a
//! [`Hook`], or the device ([`crate::calib::device`]) reducing statistics where the
//! activations live; both share the accumulators and walk the same [`Batches`]: for
//! images, [`CalibInputs`] decodes each batch when a pass reaches it, so memory stays flat
//! in the number of images ([`inputs`]).
//! Both run the forward with the precise conv/linear/global-average-pool kernels
//! ([`crate::engine::cpu::precise`] and its GPU twin: each output the exact sum rounded
//! once), so the statistics do not depend on either backend's f32 summation order: clip
//! windows agree within 1e-5 between backends (the fast kernels' rounding moved some by
//! ~1e-4 on EfficientNet-Lite0). Costs ~3× the CPU forward (f64 GEMM), ~2× on lavapipe.
//!
//! Both also give the post-activation mean of every channel of every value read by a
//! conv/linear layer, which bias correction deploys into the bias.

pub mod device;
mod inputs;

use std::collections::{BTreeMap, BTreeSet};

pub use inputs::{Batches, CalibInputs};

use crate::engine::{self, Backend, Hook};
use crate::error::{Error, Result};
use crate::graph::{Activation, Graph, Node, Op};
use crate::io::dataset::Dataset;
use crate::quant::config::QuantPoint;
use crate::quant::datafree::{self, activation_moments, add_moments, Moments};
use crate::quant::stats::{StatsAccumulator, StatsConfig, TensorStats};
use crate::tensor::Tensor;

/// Everything the planner needs to know about activations.
#[derive(Clone, Debug, Default)]
pub struct Calibration {
    /// Pre-activation statistics per quantization point (by value name).
    pub stats: BTreeMap<String, TensorStats>,
    /// Post-activation channel means of the values read by conv/linear layers.
    pub means: BTreeMap<String, Vec<f64>>,
    /// "N images" or "data-free".
    pub source: String,
}

/// (n, channels, spatial) of an NCHW or `[N, F]` tensor.
fn ncs(x: &Tensor) -> (usize, usize, usize) {
    let n = x.shape[0];
    let c = x.shape.get(1).copied().unwrap_or(1);
    (n, c, x.numel() / (n * c).max(1))
}

/// Values read by conv/linear layers.
fn layer_inputs(g: &Graph) -> BTreeSet<String> {
    g.nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Conv2d(_) | Op::Linear(_)))
        .flat_map(|n| n.inputs.iter().cloned())
        .collect()
}

struct CalibHook<'a> {
    pass: u8,
    acc: BTreeMap<String, StatsAccumulator>,
    mean_of: &'a BTreeSet<String>,
    sums: BTreeMap<String, (Vec<f64>, u64)>,
}

impl CalibHook<'_> {
    fn feed(&mut self, name: &str, x: &Tensor) -> Result<()> {
        let (n, c, hw) = ncs(x);
        if let Some(a) = self.acc.get_mut(name) {
            if self.pass == 1 {
                a.accumulate_pass1(&x.data, n, c, hw)?;
            } else {
                a.accumulate_pass2(&x.data, n, c, hw)?;
            }
        }
        Ok(())
    }
    fn feed_mean(&mut self, name: &str, x: &Tensor) {
        if self.pass != 1 || !self.mean_of.contains(name) {
            return;
        }
        let (n, c, hw) = ncs(x);
        let e = self
            .sums
            .entry(name.to_string())
            .or_insert_with(|| (vec![0.0; c], 0));
        for (i, plane) in x.data.chunks(hw.max(1)).enumerate() {
            e.0[i % c] += plane.iter().map(|&v| v as f64).sum::<f64>();
        }
        e.1 += (n * hw) as u64;
    }
}

impl Hook for CalibHook<'_> {
    fn wants_pre_activation(&self) -> bool {
        true
    }
    /// The statistics must not depend on this backend's summation order (module docs).
    fn precise(&self) -> bool {
        true
    }
    fn input(&mut self, x: &mut Tensor) -> Result<()> {
        self.feed(Graph::INPUT, x)?;
        self.feed_mean(Graph::INPUT, x);
        Ok(())
    }
    fn pre_activation(&mut self, node: &Node, x: &Tensor) -> Result<()> {
        self.feed(&node.name, x)
    }
    fn output(&mut self, node: &Node, x: &mut Tensor) -> Result<()> {
        if !matches!(node.op, Op::Conv2d(_) | Op::Linear(_)) {
            self.feed(&node.name, x)?;
        }
        self.feed_mean(&node.name, x);
        Ok(())
    }
}

/// Indices of `n` inputs spread evenly over `total` (all of them when n ≥ total), so a
/// small budget still sees every image rather than all views of the first few.
pub fn spread_indices(total: usize, n: usize) -> Vec<usize> {
    if n >= total {
        return (0..total).collect();
    }
    (0..n).map(|i| i * total / n).collect()
}

/// Calibrates from images: `n` inputs (after view expansion) of `data`, on the CPU.
pub fn calibrate(
    g: &Graph,
    points: &[QuantPoint],
    data: &Dataset,
    views: usize,
    n: usize,
    batch: usize,
    progress: bool,
) -> Result<Calibration> {
    g.validate()?;
    let inputs = CalibInputs::new(g, data, views, n, batch)?;
    calibrate_batches(g, points, &inputs, &Backend::Cpu, progress)
}

/// All the calibration inputs [`CalibInputs`] would decode batch by batch, decoded at once
/// (for callers that reuse them; memory grows with `n`).
pub fn load_batches(
    g: &Graph,
    data: &Dataset,
    views: usize,
    n: usize,
    batch: usize,
) -> Result<Vec<Tensor>> {
    let inputs = CalibInputs::new(g, data, views, n, batch)?;
    (0..inputs.count())
        .map(|i| Ok(inputs.batch(i)?.into_owned()))
        .collect()
}

/// One accumulator per quantization point (channels from the value's shape) and the
/// values whose post-activation means bias correction needs.
pub(crate) fn accumulators(
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
pub(crate) fn finish(
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

/// Two-pass calibration over `batches` (decoded tensors or [`CalibInputs`]) on `backend`
/// (the GPU path is [`crate::calib::device::calibrate_gpu`]).
pub fn calibrate_batches<B: Batches + ?Sized>(
    g: &Graph,
    points: &[QuantPoint],
    batches: &B,
    backend: &Backend,
    progress: bool,
) -> Result<Calibration> {
    let images = batches.inputs();
    if images == 0 {
        return Err(Error::Dataset("no calibration images".into()));
    }
    let bar = crate::progress::progress(2 * images as u64, "calibrate", progress);
    let cal = match backend {
        Backend::Cpu => calibrate_cpu(g, points, batches, &bar),
        Backend::Gpu(ctx) => {
            crate::calib::device::calibrate_gpu_with(ctx, g, points, batches, &bar)
        }
    };
    bar.finish_and_clear();
    cal
}

fn calibrate_cpu<B: Batches + ?Sized>(
    g: &Graph,
    points: &[QuantPoint],
    batches: &B,
    bar: &indicatif::ProgressBar,
) -> Result<Calibration> {
    let (acc, mean_of) = accumulators(g, points)?;
    let mut hook = CalibHook {
        pass: 1,
        acc,
        mean_of: &mean_of,
        sums: BTreeMap::new(),
    };
    for pass in [1u8, 2] {
        hook.pass = pass;
        if pass == 2 {
            for a in hook.acc.values_mut() {
                a.begin_pass2()?;
            }
        }
        for i in 0..batches.count() {
            let x = batches.batch(i)?.into_owned();
            let n = x.shape[0] as u64;
            engine::run(g, x, &mut hook)?;
            bar.inc(n);
        }
    }
    finish(&hook.acc, hook.sums, batches.inputs())
}

/// Data-free statistics from the BatchNorm parameters of `raw` (the unfolded graph) for the
/// points of `g` (its prepared form), by moment propagation (module docs).
pub fn data_free(raw: &Graph, g: &Graph, points: &[QuantPoint]) -> Result<Calibration> {
    let shapes = g.validate()?;
    // conv name -> the BatchNorm that was folded into it.
    let mut bn_of: BTreeMap<&str, &str> = BTreeMap::new();
    for n in &raw.nodes {
        if let (Op::BatchNorm { .. }, Some(src)) = (&n.op, n.inputs.first()) {
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
            Op::MaxPool(_)
            | Op::AvgPool(_)
            | Op::GlobalAvgPool
            | Op::Softmax
            | Op::BatchNorm { .. } => (inp(0)?.clone(), Activation::None),
        };
        post.insert(
            n.name.as_str(),
            before.iter().map(|m| activation_moments(*m, act)).collect(),
        );
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
        source: "data-free".into(),
    })
}
