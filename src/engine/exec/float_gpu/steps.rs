//! The per-node recording of [`GpuGraph`]: one node's kernels, the fake quantizer after a
//! value and channel concatenation.

use std::collections::HashMap;

use super::{DeviceHook, GpuGraph, NodeStep, Seen, Step};
pub(super) use crate::engine::device::buffers::BufferPool;
use crate::engine::gpu::conv2d::conv2d_encode;
use crate::engine::gpu::conv2d_precise::{
    conv2d_precise_encode, global_avg_pool_precise_encode, linear_precise_encode,
};
use crate::engine::gpu::eltwise::{cap_encode, eltwise_encode};
use crate::engine::gpu::fake_quant::fake_quant_encode;
use crate::engine::gpu::linear::linear_encode;
use crate::engine::gpu::lrn::lrn_encode;
use crate::engine::gpu::mul::mul_encode;
use crate::engine::gpu::pool::{pool_encode, PoolKind};
use crate::engine::gpu::shuffle::shuffle_encode;
use crate::engine::gpu::unary::unary_encode;
use crate::engine::layout::ChannelLayout;
use crate::error::Result;
use crate::graph::{Activation, Conv2d, Linear};

/// `[C, rest…]` → (C, ∏rest).
pub(super) fn c_hw(shape: &[usize]) -> (usize, usize) {
    let c = shape.first().copied().unwrap_or(1);
    (c, shape.iter().skip(1).product())
}

/// The 1×1 depthwise conv over `c` channels with fused `act`.
pub(super) fn pointwise(c: usize, act: Activation) -> Conv2d {
    Conv2d {
        in_channels: c,
        out_channels: c,
        kernel: [1, 1],
        stride: [1, 1],
        dilation: [1, 1],
        padding: [0; 4],
        groups: c,
        bias: true,
        act,
    }
}

impl GpuGraph<'_> {
    /// Fake-quantizes value `v` (in `x`) when it has a quantizer; returns the buffer holding
    /// the value afterwards.
    pub(super) fn quantize(
        &self,
        enc: &mut wgpu::CommandEncoder,
        pool: &mut BufferPool,
        tables: &HashMap<usize, (wgpu::Buffer, bool)>,
        v: usize,
        x: wgpu::Buffer,
        m: usize,
    ) -> Result<wgpu::Buffer> {
        let Some((table, per_channel)) = tables.get(&v) else {
            return Ok(x);
        };
        let (c, hw) = c_hw(&self.shapes[v]);
        let len = m * c * hw;
        let layout = if *per_channel {
            ChannelLayout {
                outer: m,
                channels: c,
                inner: hw,
            }
        } else {
            ChannelLayout::per_tensor(len)
        };
        let codes = pool.take(self.ctx, len);
        let y = pool.take(self.ctx, len);
        fake_quant_encode(self.ctx, enc, &x, table, &codes, &y, len, 0, &layout)?;
        pool.give(codes);
        pool.give(x);
        Ok(y)
    }

    /// Records one node; returns its (post-activation) output buffer.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn encode(
        &self,
        enc: &mut wgpu::CommandEncoder,
        pool: &mut BufferPool,
        s: &NodeStep,
        ins: &[&wgpu::Buffer],
        m: usize,
        pre: bool,
        hook: &mut dyn DeviceHook,
    ) -> Result<wgpu::Buffer> {
        let ctx = self.ctx;
        let in_shape = &self.shapes[s.inputs[0]];
        let (oc, ohw) = c_hw(&self.shapes[s.out]);
        let len = m * oc * ohw;
        let mut y = pool.take(ctx, len);
        let precise = hook.precise();
        let act = match &s.step {
            Step::Conv { c, parts, cap } => {
                let (h, wd) = (in_shape[1], in_shape[2]);
                let plane = ohw;
                for &(c0, cp, ref w, ref b) in parts {
                    let plain = Conv2d {
                        act: if pre { Activation::None } else { c.act },
                        out_channels: cp,
                        ..c.clone()
                    };
                    let yp = (parts.len() > 1).then(|| pool.take(ctx, m * cp * plane));
                    let target = yp.as_ref().unwrap_or(&y);
                    if precise {
                        conv2d_precise_encode(ctx, enc, ins[0], w, b, target, m, (h, wd), &plain)?;
                    } else {
                        conv2d_encode(ctx, enc, ins[0], w, b, target, m, (h, wd), &plain)?;
                    }
                    if let Some(yp) = yp {
                        // This block's channels of every image, into place.
                        let at = |v: usize| (v * plane * 4) as u64;
                        for i in 0..m {
                            enc.copy_buffer_to_buffer(&yp, at(i * cp), &y, at(i * oc + c0), at(cp));
                        }
                        pool.give(yp);
                    }
                }
                if let Some(bounds) = cap {
                    // Before the hook, as on the CPU: calibration measures min(x, bound).
                    let z = pool.take(ctx, len);
                    cap_encode(ctx, enc, &y, bounds, &z, len, (oc, ohw))?;
                    pool.give(std::mem::replace(&mut y, z));
                }
                c.act
            }
            Step::Linear { l, parts } => {
                let o = l.out_features;
                for &(r0, rows, ref w, ref b) in parts {
                    let plain = Linear {
                        act: if pre { Activation::None } else { l.act },
                        out_features: rows,
                        ..l.clone()
                    };
                    let yp = if parts.len() == 1 {
                        None
                    } else {
                        Some(pool.take(ctx, m * rows))
                    };
                    let target = yp.as_ref().unwrap_or(&y);
                    if precise {
                        linear_precise_encode(ctx, enc, ins[0], w, b, target, m, &plain)?;
                    } else {
                        linear_encode(ctx, enc, ins[0], w, b, target, m, &plain)?;
                    }
                    if let Some(yp) = yp {
                        // This block's features of every row, into place.
                        for i in 0..m {
                            let at = |v: usize| (v * 4) as u64;
                            enc.copy_buffer_to_buffer(
                                &yp,
                                at(i * rows),
                                &y,
                                at(i * o + r0),
                                at(rows),
                            );
                        }
                        pool.give(yp);
                    }
                }
                l.act
            }
            Step::Pool(PoolKind::GlobalAvg, _) if precise => {
                let (h, wd) = (in_shape[1], in_shape[2]);
                global_avg_pool_precise_encode(ctx, enc, ins[0], &y, m * oc, (h, wd))?;
                return Ok(y);
            }
            Step::Pointwise { c, w, b } => {
                conv2d_encode(ctx, enc, ins[0], w, b, &y, m, (ohw, 1), c)?;
                return Ok(y);
            }
            Step::Pool(kind, p) => {
                let (h, wd) = (in_shape[1], in_shape[2]);
                pool_encode(ctx, enc, ins[0], &y, *kind, m * oc, (h, wd), p)?;
                return Ok(y);
            }
            Step::Lrn(a) => {
                let (c, hw) = c_hw(in_shape);
                lrn_encode(ctx, enc, ins[0], &y, (m, c, hw), *a)?;
                return Ok(y);
            }
            Step::Add => {
                eltwise_encode(ctx, enc, ins[0], ins[1], &y, len, None)?;
                let mut acc = y;
                for b in &ins[2..] {
                    let next = pool.take(ctx, len);
                    eltwise_encode(ctx, enc, &acc, b, &next, len, None)?;
                    pool.give(std::mem::replace(&mut acc, next));
                }
                return Ok(acc);
            }
            Step::Concat => {
                pool.give(y);
                return self.concat(enc, pool, s, ins, m);
            }
            Step::Mul => {
                let per: usize = self.shapes[s.inputs[1]].iter().product();
                let gate = (per != oc * ohw).then_some(ohw);
                mul_encode(ctx, enc, ins[0], ins[1], &y, len, gate)?;
                return Ok(y);
            }
            Step::ChannelShuffle(groups) => {
                shuffle_encode(ctx, enc, ins[0], &y, (m, oc, ohw), *groups)?;
                return Ok(y);
            }
            Step::Flatten => {
                enc.copy_buffer_to_buffer(ins[0], 0, &y, 0, (len * 4) as u64);
                return Ok(y);
            }
            Step::Unary(u) => {
                unary_encode(ctx, enc, ins[0], &y, len, *u)?;
                return Ok(y);
            }
        };
        if !pre {
            return Ok(y);
        }
        hook.observe(ctx, enc, Seen::PreActivation(&s.name), &y, &[m, oc, ohw])?;
        if act == Activation::None {
            return Ok(y);
        }
        // The fused activation, applied after the hook saw the pre-activation value:
        // act(y·1 + 0) is exactly act(y).
        let z = pool.take(ctx, len);
        let pw = pointwise(oc, act);
        conv2d_encode(ctx, enc, &y, &self.ones, &self.zeros, &z, m, (ohw, 1), &pw)?;
        pool.give(y);
        Ok(z)
    }

    /// Channel concatenation of all inputs, pairwise left to right.
    fn concat(
        &self,
        enc: &mut wgpu::CommandEncoder,
        pool: &mut BufferPool,
        s: &NodeStep,
        ins: &[&wgpu::Buffer],
        m: usize,
    ) -> Result<wgpu::Buffer> {
        let (_, hw) = c_hw(&self.shapes[s.out]);
        let mut ca = c_hw(&self.shapes[s.inputs[0]]).0;
        let mut acc: Option<wgpu::Buffer> = None;
        for (k, b) in ins.iter().enumerate().skip(1) {
            let cb = c_hw(&self.shapes[s.inputs[k]]).0;
            let len = m * (ca + cb) * hw;
            let y = pool.take(self.ctx, len);
            let a = acc.as_ref().unwrap_or(ins[0]);
            eltwise_encode(self.ctx, enc, a, b, &y, len, Some((m, ca, cb, hw)))?;
            if let Some(old) = acc.replace(y) {
                pool.give(old);
            }
            ca += cb;
        }
        match acc {
            Some(y) => Ok(y),
            None => {
                let len = m * ca * hw;
                let y = pool.take(self.ctx, len);
                enc.copy_buffer_to_buffer(ins[0], 0, &y, 0, (len * 4) as u64);
                Ok(y)
            }
        }
    }
}
