//! The CPU calibration pass: the engine's graph executor with a [`Hook`] that feeds every
//! quantization point's pre-activation tensor (and the post-activation means, and on request
//! every layer input to its Hessian) to the accumulators, twice over the batches (module
//! docs of [`super`]).

use std::collections::{BTreeMap, BTreeSet};

use rayon::prelude::*;

use super::accum::{accumulators, finish, Hessians};
use super::{Batches, Calibration};
use crate::engine::{self, Hook};
use crate::error::Result;
use crate::graph::{Graph, Node, Op};
use crate::quant::config::QuantPoint;
use crate::quant::stats::StatsAccumulator;
use crate::tensor::Tensor;

/// (n, channels, spatial) of an NCHW or `[N, F]` tensor.
fn ncs(x: &Tensor) -> (usize, usize, usize) {
    let n = x.shape[0];
    let c = x.shape.get(1).copied().unwrap_or(1);
    (n, c, x.numel() / (n * c).max(1))
}

struct CalibHook<'a> {
    pass: u8,
    acc: BTreeMap<String, StatsAccumulator>,
    mean_of: &'a BTreeSet<String>,
    sums: BTreeMap<String, (Vec<f64>, u64)>,
    hessians: Option<Hessians>,
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
    fn feed_hessian(&mut self, name: &str, x: &Tensor) -> Result<()> {
        match &mut self.hessians {
            Some(h) if self.pass == 1 => h.feed(name, &x.data, &x.shape),
            _ => Ok(()),
        }
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
        // Channels in parallel, each summing its planes in input order (the same sums as
        // plane after plane on one thread).
        if hw > 0 {
            e.0.par_iter_mut()
                .with_min_len((65_536 / (n * hw).max(1)).max(1))
                .enumerate()
                .for_each(|(ch, sum)| {
                    let plane = |img: usize| &x.data[(img * c + ch) * hw..][..hw];
                    // Four images' plane sums side by side: four independent chains (one
                    // f64 add chain was latency-bound), each the same sequence of adds as
                    // alone, added to the channel's sum in image order.
                    let mut img = 0;
                    while img + 4 <= n {
                        let mut acc = [0f64; 4];
                        let planes = plane(img).iter().zip(plane(img + 1));
                        let planes = planes.zip(plane(img + 2)).zip(plane(img + 3));
                        for (((&v0, &v1), &v2), &v3) in planes {
                            acc[0] += v0 as f64;
                            acc[1] += v1 as f64;
                            acc[2] += v2 as f64;
                            acc[3] += v3 as f64;
                        }
                        acc.iter().for_each(|a| *sum += a);
                        img += 4;
                    }
                    for img in img..n {
                        *sum += plane(img).iter().fold(0f64, |a, &v| a + v as f64);
                    }
                });
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
        self.feed_hessian(Graph::INPUT, x)
    }
    fn pre_activation(&mut self, node: &Node, x: &Tensor) -> Result<()> {
        self.feed(&node.name, x)
    }
    fn output(&mut self, node: &Node, x: &mut Tensor) -> Result<()> {
        if !matches!(node.op, Op::Conv2d(_) | Op::Linear(_)) {
            self.feed(&node.name, x)?;
        }
        self.feed_mean(&node.name, x);
        self.feed_hessian(&node.name, x)
    }
}

pub(super) fn calibrate_cpu<B: Batches + ?Sized>(
    g: &Graph,
    points: &[QuantPoint],
    batches: &B,
    hessians: bool,
    bar: &indicatif::ProgressBar,
) -> Result<Calibration> {
    let (acc, mean_of) = accumulators(g, points)?;
    let mut hook = CalibHook {
        pass: 1,
        acc,
        mean_of: &mean_of,
        sums: BTreeMap::new(),
        hessians: hessians.then(|| Hessians::new(g)).transpose()?,
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
    finish(&hook.acc, hook.sums, hook.hessians, batches.inputs())
}
