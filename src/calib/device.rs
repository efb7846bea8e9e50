//! Calibration on the device: the same two passes and the same [`Calibration`] as
//! [`crate::calib::calibrate_batches`] on the CPU, with the statistics reduced where the
//! activations live and only small partials read back.
//!
//! The graph runs as a [`GpuGraph`] with the precise conv/linear/pooling kernels
//! ([`crate::engine::gpu::conv2d_precise`], the twins of the CPU calibration's), so the activations equal the
//! CPU's up to rare near-ties, with a [`DeviceHook`] that wants pre-activation values
//! (conv/linear run without their fused activation, are observed, then the activation is
//! applied on the device). For each quantization point (pre-activation for conv/linear,
//! the output otherwise, the graph input as is) and chunk of images:
//! - pass 1: `plane_moments` per (image, channel) plane → rows `[count, sum, sumsq, min,
//!   max]` rebuilt in f64 ([`PlaneMoments::row`]), merged image by image in input order
//!   with `merge_device_pass1` (the CPU adds the same planes in the same order);
//! - pass 2: `plane_abs_dev` (Σ|x − mean_c|, Σ|x − mean_t| per plane with the f64 means
//!   as f32 head + tail, summed in f64 in
//!   plane order) and the `histogram` kernel with the accumulator's own f32 binning
//!   (`lo`, `inv_width`) per channel and for the whole tensor, merged with
//!   `merge_device_pass2`. Counts equal the CPU's exactly; sums differ by f32 rounding.
//!
//! Post-activation channel means of values read by conv/linear layers come from the same
//! `plane_moments` partials of the node outputs in pass 1. When Hessians are asked for, pass
//! 1 also reads every layer input back whole and the host accumulates them
//! ([`crate::quant::gptq::Hessian`]): the simplest exact route, at the cost of the readback.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use indicatif::ProgressBar;

use super::accum::{accumulators, finish, Hessians};
use super::{Batches, Calibration};
use crate::engine::cpu::histogram::MAX_BINS;
use crate::engine::device::buffers;
use crate::engine::device::context::GpuContext;
use crate::engine::device::readback::Readback;
use crate::engine::exec::float_gpu::{DeviceHook, GpuGraph, Seen};
use crate::engine::gpu::histogram::{histogram_encode, range_table};
use crate::engine::gpu::plane_stats::{
    plane_abs_dev_encode, plane_moments_encode, split_means, PlaneMoments,
};
use crate::engine::layout::ChannelLayout;
use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::quant::config::QuantPoint;
use crate::quant::stats::StatsAccumulator;
use crate::tensor::Tensor;

/// Two-pass calibration of `g` (prepared) over `batches` on the device (module docs).
pub fn calibrate_gpu(
    ctx: &GpuContext,
    g: &Graph,
    points: &[QuantPoint],
    batches: &[Tensor],
) -> Result<Calibration> {
    calibrate_gpu_with(ctx, g, points, batches, false, &ProgressBar::hidden())
}

/// [`calibrate_gpu`] advancing `bar` by the images of each batch and pass.
pub(crate) fn calibrate_gpu_with<B: Batches + ?Sized>(
    ctx: &GpuContext,
    g: &Graph,
    points: &[QuantPoint],
    batches: &B,
    hessians: bool,
    bar: &ProgressBar,
) -> Result<Calibration> {
    let gg = GpuGraph::new(ctx, g)?;
    let (acc, mean_of) = accumulators(g, points)?;
    if let Some(a) = acc.values().next() {
        let cfg = a.config;
        if cfg.channel_bins.max(cfg.tensor_bins) > MAX_BINS as usize {
            return Err(Error::Gpu(format!(
                "histograms of {}/{} bins exceed the kernel's {MAX_BINS}; rerun with --backend cpu",
                cfg.channel_bins, cfg.tensor_bins
            )));
        }
    }
    let mut hook = CalibDevice {
        pass: 1,
        acc,
        mean_of,
        sums: BTreeMap::new(),
        tables: BTreeMap::new(),
        pending: Vec::new(),
        rb: Readback::default(),
        hessians: hessians.then(|| Hessians::new(g)).transpose()?,
    };
    for pass in [1u8, 2] {
        hook.pass = pass;
        if pass == 2 {
            for a in hook.acc.values_mut() {
                a.begin_pass2()?;
            }
            hook.build_tables(ctx)?;
        }
        for i in 0..batches.count() {
            let x = batches.batch(i)?;
            gg.run(&x, &[], &mut hook)?;
            bar.inc(x.shape[0] as u64);
        }
    }
    finish(&hook.acc, hook.sums, hook.hessians, batches.inputs())
}

/// A recorded reduction waiting for its readback.
enum Pending {
    Moments {
        value: String,
        stats: bool,
        mean: bool,
        m: usize,
        c: usize,
        hw: usize,
    },
    Dev {
        value: String,
        c: usize,
    },
    /// A whole layer input, for the host's Hessians.
    Input {
        value: String,
        shape: Vec<usize>,
    },
}

/// Pass-2 inputs of one point: means `[m_c…, m_t]` (heads, then tails: `split_means`),
/// channel and tensor `(lo, inv_width)`.
struct Tables {
    means: wgpu::Buffer,
    channel: wgpu::Buffer,
    tensor: wgpu::Buffer,
}

struct CalibDevice {
    pass: u8,
    acc: BTreeMap<String, StatsAccumulator>,
    mean_of: BTreeSet<String>,
    sums: BTreeMap<String, (Vec<f64>, u64)>,
    tables: BTreeMap<String, Tables>,
    pending: Vec<Pending>,
    rb: Readback,
    hessians: Option<Hessians>,
}

/// (n, channels, spatial) of a batch shape.
fn ncs(shape: &[usize]) -> (usize, usize, usize) {
    let n = shape.first().copied().unwrap_or(1);
    let c = shape.get(1).copied().unwrap_or(1);
    (n, c, shape.iter().skip(2).product())
}

impl CalibDevice {
    fn build_tables(&mut self, ctx: &GpuContext) -> Result<()> {
        for (name, a) in &self.acc {
            let frame = a
                .frame
                .as_ref()
                .ok_or_else(|| Error::Quant(format!("{name}: pass 2 before begin_pass2")))?;
            let c = a.channels;
            self.tables.insert(
                name.clone(),
                Tables {
                    means: buffers::upload(ctx, "calib means", &split_means(&frame.mean)),
                    channel: buffers::upload(ctx, "calib bins", &range_table(&frame.binning[..c])),
                    tensor: buffers::upload(ctx, "calib bins", &range_table(&frame.binning[c..])),
                },
            );
        }
        Ok(())
    }

    fn record_pass2(
        &mut self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        value: &str,
        x: &wgpu::Buffer,
        (m, c, hw): (usize, usize, usize),
    ) -> Result<()> {
        let (Some(t), Some(a)) = (self.tables.get(value), self.acc.get(value)) else {
            return Err(Error::Quant(format!("{value}: no pass-2 tables")));
        };
        let (cb, tb) = (a.config.channel_bins, a.config.tensor_bins);
        let planes = m * c;
        let dev = buffers::zeroed(ctx, "calib abs dev", (16 * planes) as u64);
        plane_abs_dev_encode(ctx, enc, x, &t.means, &dev, planes, c, hw)?;
        let ch = buffers::zeroed(ctx, "calib channel hist", (4 * c * cb) as u64);
        let layout = ChannelLayout {
            outer: m,
            channels: c,
            inner: hw,
        };
        histogram_encode(ctx, enc, x, &t.channel, &ch, m, &layout, cb as u32)?;
        let th = buffers::zeroed(ctx, "calib tensor hist", (4 * tb) as u64);
        let whole = ChannelLayout {
            outer: m,
            channels: 1,
            inner: c * hw,
        };
        histogram_encode(ctx, enc, x, &t.tensor, &th, m, &whole, tb as u32)?;
        self.rb.stage(ctx, enc, &dev, (16 * planes) as u64)?;
        self.rb.stage(ctx, enc, &ch, (4 * c * cb) as u64)?;
        self.rb.stage(ctx, enc, &th, (4 * tb) as u64)?;
        self.pending.push(Pending::Dev {
            value: value.to_string(),
            c,
        });
        Ok(())
    }

    fn merge_moments(&mut self, p: &Pending, bytes: &[u8]) -> Result<()> {
        let Pending::Moments {
            value,
            stats,
            mean,
            m,
            c,
            hw,
        } = p
        else {
            return Ok(());
        };
        let v: Vec<[f32; 4]> = bytemuck::pod_collect_to_vec(bytes);
        let planes: Vec<PlaneMoments> = v
            .chunks_exact(2)
            .map(|q| PlaneMoments::from_device(&[q[0], q[1]]))
            .collect();
        if planes.len() != m * c {
            return Err(Error::Gpu(format!(
                "{value}: {} plane partials for {m}·{c} planes",
                planes.len()
            )));
        }
        if *stats {
            if let Some(a) = self.acc.get_mut(value) {
                for img in planes.chunks(*c) {
                    let rows: Vec<_> = img.iter().map(|p| p.row(*hw)).collect();
                    a.merge_device_pass1(&rows)?;
                }
            }
        }
        if *mean {
            let e = self
                .sums
                .entry(value.clone())
                .or_insert_with(|| (vec![0.0; *c], 0));
            for (i, p) in planes.iter().enumerate() {
                e.0[i % c] += p.sum(*hw);
            }
            e.1 += (m * hw) as u64;
        }
        Ok(())
    }

    fn merge_dev(&mut self, value: &str, c: usize, parts: &[Vec<u8>]) -> Result<()> {
        let dev: Vec<[f32; 4]> = bytemuck::pod_collect_to_vec(&parts[0]);
        let ch: Vec<u32> = bytemuck::pod_collect_to_vec(&parts[1]);
        let th: Vec<u32> = bytemuck::pod_collect_to_vec(&parts[2]);
        let mut abs = vec![0f64; c + 1];
        for (i, d) in dev.iter().enumerate() {
            abs[i % c] += d[0] as f64;
            abs[c] += d[1] as f64;
        }
        self.acc
            .get_mut(value)
            .ok_or_else(|| Error::Quant(format!("{value}: no accumulator")))?
            .merge_device_pass2(&abs, &ch, &th)
    }
}

impl DeviceHook for CalibDevice {
    fn wants_pre_activation(&self) -> bool {
        true
    }
    /// The statistics must not depend on this backend's summation order (module docs).
    fn precise(&self) -> bool {
        true
    }

    fn observe(
        &mut self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        seen: Seen<'_>,
        buf: &wgpu::Buffer,
        shape: &[usize],
    ) -> Result<()> {
        // As the CPU hook: statistics of the input, of conv/linear pre-activations and of
        // other nodes' outputs; means of post-activation values.
        let (value, stats, mean) = match seen {
            Seen::Input => (Graph::INPUT, true, true),
            Seen::PreActivation(n) => (n, true, false),
            Seen::Output { node, layer } => (node, !layer, true),
        };
        // Layer inputs are post-activation values: inputs and outputs, not pre-activations.
        let post = !matches!(seen, Seen::PreActivation(_));
        if post && self.pass == 1 && self.hessians.as_ref().is_some_and(|h| h.wants(value)) {
            let bytes = 4 * shape.iter().product::<usize>() as u64;
            self.rb.stage(ctx, enc, buf, bytes)?;
            self.pending.push(Pending::Input {
                value: value.to_string(),
                shape: shape.to_vec(),
            });
        }
        let stats = stats && self.acc.contains_key(value);
        let mean = mean && self.pass == 1 && self.mean_of.contains(value);
        let (m, c, hw) = ncs(shape);
        if self.pass == 2 {
            return if stats {
                self.record_pass2(ctx, enc, value, buf, (m, c, hw))
            } else {
                Ok(())
            };
        }
        if !(stats || mean) {
            return Ok(());
        }
        let planes = m * c;
        let out = buffers::zeroed(ctx, "calib moments", (32 * planes) as u64);
        plane_moments_encode(ctx, enc, buf, &out, planes, hw)?;
        self.rb.stage(ctx, enc, &out, (32 * planes) as u64)?;
        self.pending.push(Pending::Moments {
            value: value.to_string(),
            stats,
            mean,
            m,
            c,
            hw,
        });
        Ok(())
    }

    fn chunk_done(&mut self, ctx: &GpuContext, _images: Range<usize>) -> Result<()> {
        let got = std::mem::take(&mut self.rb).finish(ctx)?;
        let mut parts = got.into_iter();
        for p in std::mem::take(&mut self.pending) {
            match &p {
                Pending::Moments { .. } => {
                    let b = parts
                        .next()
                        .ok_or_else(|| Error::Gpu("missing readback".into()))?;
                    self.merge_moments(&p, &b)?;
                }
                Pending::Dev { value, c } => {
                    let three: Vec<Vec<u8>> = parts.by_ref().take(3).collect();
                    if three.len() != 3 {
                        return Err(Error::Gpu("missing readback".into()));
                    }
                    self.merge_dev(value, *c, &three)?;
                }
                Pending::Input { value, shape } => {
                    let b = parts
                        .next()
                        .ok_or_else(|| Error::Gpu("missing readback".into()))?;
                    let x: Vec<f32> = bytemuck::pod_collect_to_vec(&b);
                    if let Some(h) = &mut self.hessians {
                        h.feed(value, &x, shape)?;
                    }
                }
            }
        }
        Ok(())
    }
}
