//! Direct convolution for one input channel per group (depthwise, channel multiplier
//! `m = out/in ≥ 1`): output channel `o` reads input channel `o / m`,
//!
//! `y[n,o,y,x] = act(b[o] + Σ_{ky,kx} w[o,0,ky,kx] · Xpad[n, o/m, y·sy + ky·dy, x·sx + kx·dx])`.
//!
//! Each input plane becomes a [`Polyphase`] plane; on the wide output grid (`oh × ws`) every
//! tap is then a contiguous run, so the hot loop is `acc[0..CW] += w · src[off + j ..][..CW]`
//! over `CW`-wide register tiles: no padding logic inside, one load per FMA, `CW/8`
//! independent accumulator chains. On x86-64 the same loop is compiled a second time with
//! AVX2+FMA and picked at run time. Parallel (rayon) over (image, input channel) planes.

use rayon::prelude::*;

use super::elementwise::{apply_act, prepare_out};
use super::plane::Polyphase;
use crate::graph::Conv2d;
use crate::tensor::Tensor;

/// Register tile width in f32 (8 AVX2 registers).
const CW: usize = 64;

/// Direct depthwise convolution into `out`; `c.groups == in_channels`, output `(oh, ow)`
/// precomputed.
pub(crate) fn conv2d_into(
    x: &Tensor,
    w: &Tensor,
    b: Option<&[f32]>,
    c: &Conv2d,
    (oh, ow): (usize, usize),
    out: &mut Tensor,
) {
    let (n, ci, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let co = c.out_channels;
    let mult = co / ci;
    let (kh, kw) = (c.kernel[0], c.kernel[1]);
    let k2 = kh * kw;
    prepare_out(out, &[n, co, oh, ow]);
    let ohw = oh * ow;
    if out.data.is_empty() {
        return;
    }
    let hw = h * wd;
    let fma = fma_available();
    out.data
        .par_chunks_mut(mult * ohw)
        .enumerate()
        .for_each_init(
            || (Polyphase::default(), Vec::new(), Vec::new(), Vec::new()),
            |(pp, wide, taps, offsets), (plane_idx, dst)| {
                let ch = plane_idx % ci;
                pp.shape(h, wd, c.padding, c.stride);
                let ws = pp.ws();
                let wide_len = (oh * ws).div_ceil(CW) * CW;
                offsets.clear();
                for ky in 0..kh {
                    for kx in 0..kw {
                        offsets.push(pp.offset(ky * c.dilation[0], kx * c.dilation[1]));
                    }
                }
                let max_off = offsets.iter().copied().max().unwrap_or(0);
                let src = &x.data[plane_idx * hw..(plane_idx + 1) * hw];
                pp.build(src, h, wd, c.padding, c.stride, 0.0, max_off + wide_len);
                wide.resize(wide_len, 0.0);
                for (m, dplane) in dst.chunks_exact_mut(ohw).enumerate() {
                    let o = ch * mult + m;
                    let wts = &w.data[o * k2..(o + 1) * k2];
                    taps.clear();
                    taps.extend(offsets.iter().copied().zip(wts.iter().copied()));
                    let bias = b.map_or(0.0, |b| b[o]);
                    taps_wide(fma, &pp.data, taps, bias, wide);
                    for (y, row) in dplane.chunks_exact_mut(ow).enumerate() {
                        row.copy_from_slice(&wide[y * ws..y * ws + ow]);
                        apply_act(row, c.act);
                    }
                }
            },
        );
}

fn fma_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `wide[j] = bias + Σ_t w_t · src[off_t + j]` for `j < wide.len()` (a multiple of `CW`).
fn taps_wide(fma: bool, src: &[f32], taps: &[(usize, f32)], bias: f32, wide: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if fma {
        // SAFETY: `fma` is true only when the CPU reports AVX2 and FMA.
        unsafe { taps_wide_avx2(src, taps, bias, wide) };
        return;
    }
    let _ = fma;
    taps_wide_impl::<false>(src, taps, bias, wide);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn taps_wide_avx2(src: &[f32], taps: &[(usize, f32)], bias: f32, wide: &mut [f32]) {
    taps_wide_impl::<true>(src, taps, bias, wide);
}

#[inline(always)]
fn taps_wide_impl<const FMA: bool>(
    src: &[f32],
    taps: &[(usize, f32)],
    bias: f32,
    wide: &mut [f32],
) {
    for (t, tile) in wide.chunks_exact_mut(CW).enumerate() {
        let j0 = t * CW;
        let mut acc = [bias; CW];
        for &(off, wv) in taps {
            let s = &src[off + j0..off + j0 + CW];
            for i in 0..CW {
                acc[i] = if FMA {
                    wv.mul_add(s[i], acc[i])
                } else {
                    acc[i] + wv * s[i]
                };
            }
        }
        tile.copy_from_slice(&acc);
    }
}
