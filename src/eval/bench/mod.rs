//! `ptq4 bench`: how fast the engine's own kernels run on this machine, as a user runs them.
//!
//! - [`conv`]: each conv/linear layer (a model's, from its prepared graph, or explicit
//!   shapes) through the integer kernels (int4 or int8 weights × `u8` activation codes,
//!   requantized to codes, as `deploy` runs them) and the f32 convolution, on the CPU and/or
//!   the GPU: time (median and spread over repetitions), GOP/s (2·MACs / time), effective
//!   GB/s (bytes of input, weights and output as the kernel holds them / time), ratio to f32.
//! - [`device`]: the limits a layer is compared against: memory-copy bandwidth (CPU, GPU) and
//!   the GPU's `dot4I8Packed` peak (8 ops per dot4: 4 multiplies, 4 adds).
//! - [`model`]: whole-model images/s for FP32, `paper` simulation and `deploy` integer
//!   execution.
//!
//! Timing: one untimed run first (pipelines built, caches warm), then `reps` timed runs. A GPU
//! run is recorded first, then timed from submission on an idle device until the device is
//! idle again; when one dispatch takes under [`GPU_MIN_SUBMIT_S`], several are recorded in
//! one submission and the time divided by their count, so submission overhead does not swamp
//! short kernels.
//! Inputs are deterministic patterns (timing does not depend on values).

pub mod conv;
pub mod device;
pub mod model;

use std::time::Instant;

use serde::Serialize;

use crate::engine::device::GpuContext;
use crate::error::{Error, Result};
use crate::graph::{Activation, Conv2d, Graph, Op};

/// A GPU timing submission shorter than this records more dispatches per submission.
pub const GPU_MIN_SUBMIT_S: f64 = 0.01;
/// Most dispatches recorded in one timing submission.
const GPU_MAX_PER_SUBMIT: usize = 4096;

/// Where a measurement ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Cpu,
    Gpu,
}

/// Median and spread of repeated timings, in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Spread {
    pub median_s: f64,
    pub min_s: f64,
    pub max_s: f64,
    /// First and third quartiles (linear interpolation).
    pub q1_s: f64,
    pub q3_s: f64,
    pub reps: usize,
}

impl Spread {
    /// The spread of `times` (at least one).
    pub fn of(times: &[f64]) -> Spread {
        let mut t = times.to_vec();
        t.sort_by(f64::total_cmp);
        let q = |f: f64| {
            let x = f * (t.len() - 1) as f64;
            let (lo, hi) = (x.floor() as usize, x.ceil() as usize);
            t[lo] + (t[hi] - t[lo]) * (x - lo as f64)
        };
        Spread {
            median_s: q(0.5),
            min_s: t[0],
            max_s: t[t.len() - 1],
            q1_s: q(0.25),
            q3_s: q(0.75),
            reps: t.len(),
        }
    }
}

/// Runs `f` once untimed, then `reps` times timed.
pub fn time_cpu(reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<Spread> {
    f()?;
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64());
    }
    Ok(Spread::of(&times))
}

/// GPU time of what `record` encodes: once untimed, then `reps` submissions of `k`
/// recordings each, from an idle device to an idle device (`k` grows until a submission takes
/// [`GPU_MIN_SUBMIT_S`]), each divided by `k`. Recording (params uploads, bind groups) happens
/// before the clock starts. Returns the spread and `k`.
pub fn time_gpu(
    ctx: &GpuContext,
    reps: usize,
    record: impl Fn(&mut wgpu::CommandEncoder) -> Result<()>,
) -> Result<(Spread, usize)> {
    let submit = |k: usize| -> Result<f64> {
        let mut enc = ctx.encoder("bench");
        for _ in 0..k {
            record(&mut enc)?;
        }
        ctx.wait_idle()?;
        let t = Instant::now();
        ctx.submit(enc)?;
        ctx.wait_idle()?;
        Ok(t.elapsed().as_secs_f64())
    };
    let mut t = submit(1)?;
    let mut k = 1;
    while t < GPU_MIN_SUBMIT_S && k < GPU_MAX_PER_SUBMIT {
        let want = (GPU_MIN_SUBMIT_S / t.max(1e-6) * k as f64).ceil() as usize;
        k = want.max(k * 2).min(GPU_MAX_PER_SUBMIT);
        t = submit(k)?;
    }
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        times.push(submit(k)? / k as f64);
    }
    Ok((Spread::of(&times), k))
}

/// One conv or linear layer as a kernel runs it: `n` images of `h × w`. A linear layer is
/// the 1×1 conv on a 1×1 map it equals (`linear`: it runs through the linear kernels).
#[derive(Clone, Debug, PartialEq)]
pub struct LayerShape {
    pub name: String,
    pub conv: Conv2d,
    pub linear: bool,
    pub n: usize,
    pub h: usize,
    pub w: usize,
}

impl LayerShape {
    /// Output height and width.
    pub fn out_hw(&self) -> (usize, usize) {
        self.conv.out_hw(self.h, self.w).unwrap_or((0, 0))
    }

    /// Multiply-accumulates of one run.
    pub fn macs(&self) -> u64 {
        let c = &self.conv;
        let (oh, ow) = self.out_hw();
        (self.n * oh * ow * c.out_channels) as u64
            * (c.in_channels / c.groups * c.kernel[0] * c.kernel[1]) as u64
    }

    /// The same layer on `n` images.
    pub fn with_batch(mut self, n: usize) -> Self {
        self.n = n;
        self
    }
}

/// `N,C,H,W,K,R,S[,stride,groups]`: N images of C×H×W, K output channels, an R×S kernel
/// (padding ⌊R/2⌋, ⌊S/2⌋ on each side), stride and groups 1 unless given.
pub fn parse_shape(s: &str) -> std::result::Result<LayerShape, String> {
    let v: Vec<usize> = s
        .split(',')
        .map(|x| {
            x.trim()
                .parse::<usize>()
                .map_err(|e| format!("{x:?} in {s:?}: {e}"))
        })
        .collect::<std::result::Result<_, _>>()?;
    let (n, c, h, w, k, r, sk, stride, groups) = match v[..] {
        [n, c, h, w, k, r, sk] => (n, c, h, w, k, r, sk, 1, 1),
        [n, c, h, w, k, r, sk, st] => (n, c, h, w, k, r, sk, st, 1),
        [n, c, h, w, k, r, sk, st, g] => (n, c, h, w, k, r, sk, st, g),
        _ => {
            return Err(format!(
                "{s:?}: give N,C,H,W,K,R,S[,stride,groups] ({} numbers given)",
                v.len()
            ))
        }
    };
    if v.contains(&0) {
        return Err(format!("{s:?}: every number must be at least 1"));
    }
    if !c.is_multiple_of(groups) || !k.is_multiple_of(groups) {
        return Err(format!(
            "{s:?}: groups {groups} must divide C={c} and K={k}"
        ));
    }
    let conv = Conv2d {
        in_channels: c,
        out_channels: k,
        kernel: [r, sk],
        stride: [stride, stride],
        dilation: [1, 1],
        padding: [r / 2, sk / 2, r / 2, sk / 2],
        groups,
        bias: true,
        act: Activation::None,
    };
    if conv.out_hw(h, w).is_none_or(|(oh, ow)| oh == 0 || ow == 0) {
        return Err(format!(
            "{s:?}: an {r}×{sk} kernel does not fit a {h}×{w} input"
        ));
    }
    // Sizes past these do not fit a kernel's u32 indices anyway.
    let elems = [n * c * h * w, k * (c / groups) * r * sk, n * k * h * w];
    if elems.iter().any(|&e| e > u32::MAX as usize / 4) {
        return Err(format!("{s:?}: tensors too large to bench"));
    }
    Ok(LayerShape {
        name: s.to_string(),
        conv,
        linear: false,
        n,
        h,
        w,
    })
}

/// Every conv and linear layer of a prepared graph, in graph order, on `n` images.
pub fn model_layers(g: &Graph, n: usize) -> Result<Vec<LayerShape>> {
    let shapes = g.validate()?;
    let mut out = Vec::new();
    for node in &g.nodes {
        let input = || {
            node.inputs
                .first()
                .and_then(|i| shapes.get(i))
                .ok_or_else(|| Error::Engine(format!("{}: input shape unknown", node.name)))
        };
        match &node.op {
            Op::Conv2d(c) => {
                let input = input()?;
                let [_, h, w] = input[..] else {
                    return Err(Error::Engine(format!(
                        "{}: input {input:?} is not C×H×W",
                        node.name
                    )));
                };
                out.push(LayerShape {
                    name: node.name.clone(),
                    conv: c.clone(),
                    linear: false,
                    n,
                    h,
                    w,
                });
            }
            Op::Linear(l) => out.push(LayerShape {
                name: node.name.clone(),
                conv: Conv2d {
                    in_channels: l.in_features,
                    out_channels: l.out_features,
                    kernel: [1, 1],
                    stride: [1, 1],
                    dilation: [1, 1],
                    padding: [0; 4],
                    groups: 1,
                    bias: l.bias,
                    act: l.act,
                },
                linear: true,
                n,
                h: 1,
                w: 1,
            }),
            _ => {}
        }
    }
    if out.is_empty() {
        return Err(Error::Usage(format!(
            "{}: no conv or linear layers to bench",
            g.name
        )));
    }
    Ok(out)
}

/// Whether the adapter is a software rasterizer (Mesa's lavapipe/llvmpipe, or any adapter
/// wgpu reports as a CPU): its figures say nothing about GPU performance.
pub fn software_adapter(ctx: &GpuContext) -> bool {
    let name = ctx.adapter_name().to_lowercase();
    ctx.info().device_type == wgpu::DeviceType::Cpu
        || name.contains("llvmpipe")
        || name.contains("lavapipe")
}

/// "name (api)", as reports name an adapter.
pub fn adapter_label(ctx: &GpuContext) -> String {
    format!("{} ({:?})", ctx.adapter_name(), ctx.backend())
}
