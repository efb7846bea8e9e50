//! `--compare`: runs a graph on the CPU and on the GPU and reports, per node, the largest
//! difference of its output (after the fused activation).
//!
//! `max_abs = max_i |gpu_i − cpu_i|`; `max_rel = max_abs / max_i |cpu_i|`: relative to the
//! node's largest CPU magnitude, because an element-wise ratio explodes at the zero
//! crossings every conv output has (`inf` when the CPU output is all zeros and the GPU's
//! is not). Every GPU value is read back, so use a small batch.

use std::collections::HashMap;
use std::ops::Range;

use super::device::readback::Readback;
use super::device::GpuContext;
use super::exec::float_cpu::{self as exec, Hook};
use super::exec::float_gpu::{DeviceHook, GpuGraph, Seen};
use crate::error::{Error, Result};
use crate::graph::{Graph, Node};
use crate::tensor::Tensor;

/// The largest GPU-vs-CPU difference of one node's output.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LayerDiff {
    pub node: String,
    pub max_abs: f32,
    pub max_rel: f32,
}

/// Reads every node output back (appended chunk after chunk).
#[derive(Default)]
struct Collect {
    precise: bool,
    pending: Vec<String>,
    rb: Readback,
    values: HashMap<String, Vec<f32>>,
}

impl DeviceHook for Collect {
    fn precise(&self) -> bool {
        self.precise
    }
    fn observe(
        &mut self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        seen: Seen<'_>,
        buf: &wgpu::Buffer,
        shape: &[usize],
    ) -> Result<()> {
        if let Seen::Output { node, .. } = seen {
            let bytes = (shape.iter().product::<usize>() * 4) as u64;
            self.rb.stage(ctx, enc, buf, bytes)?;
            self.pending.push(node.to_string());
        }
        Ok(())
    }

    fn chunk_done(&mut self, ctx: &GpuContext, _images: Range<usize>) -> Result<()> {
        let got = std::mem::take(&mut self.rb).finish(ctx)?;
        for (name, bytes) in self.pending.drain(..).zip(got) {
            let v: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
            self.values.entry(name).or_default().extend(v);
        }
        Ok(())
    }
}

struct Diff {
    precise: bool,
    gpu: HashMap<String, Vec<f32>>,
    out: Vec<LayerDiff>,
}

impl Hook for Diff {
    fn precise(&self) -> bool {
        self.precise
    }
    fn output(&mut self, node: &Node, x: &mut Tensor) -> Result<()> {
        let g = self.gpu.remove(&node.name).ok_or_else(|| {
            Error::Engine(format!(
                "compare: the GPU produced no value for {}",
                node.name
            ))
        })?;
        if g.len() != x.data.len() {
            return Err(Error::Engine(format!(
                "compare: {}: GPU has {} values, CPU {}",
                node.name,
                g.len(),
                x.data.len()
            )));
        }
        let (mut abs, mut scale) = (0f32, 0f32);
        for (a, b) in g.iter().zip(&x.data) {
            // NaN on either side is the largest difference there is.
            let d = (a - b).abs();
            abs = if d.is_nan() {
                f32::INFINITY
            } else {
                abs.max(d)
            };
            scale = scale.max(b.abs());
        }
        let rel = if abs == 0.0 { 0.0 } else { abs / scale };
        self.out.push(LayerDiff {
            node: node.name.clone(),
            max_abs: abs,
            max_rel: rel,
        });
        Ok(())
    }
}

/// Runs `g` (prepared) on `x` on both backends; one [`LayerDiff`] per node, in graph order.
pub fn compare(ctx: &GpuContext, g: &Graph, x: &Tensor) -> Result<Vec<LayerDiff>> {
    compare_with(ctx, g, x, false)
}

/// [`compare`] with the calibration-precision kernels on both backends when `precise`
/// (then every difference is a near-tie of an exact sum: zero almost everywhere).
pub fn compare_with(
    ctx: &GpuContext,
    g: &Graph,
    x: &Tensor,
    precise: bool,
) -> Result<Vec<LayerDiff>> {
    let gg = GpuGraph::new(ctx, g)?;
    let mut collect = Collect {
        precise,
        ..Collect::default()
    };
    gg.run(x, &[], &mut collect)?;
    let mut diff = Diff {
        precise,
        gpu: collect.values,
        out: Vec::new(),
    };
    exec::run(g, x.clone(), &mut diff)?;
    Ok(diff.out)
}
