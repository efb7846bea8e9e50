//! Direct convolution for one input channel per group (depthwise, channel multiplier
//! `m = out/in ≥ 1`): output channel `o` reads input channel `o / m`,
//!
//! `y[n,o,y,x] = act(b[o] + Σ_{ky,kx} w[o,0,ky,kx] · Xpad[n, o/m, y·sy + ky·dy, x·sx + kx·dx])`.
//!
//! Each input plane becomes a [`Polyphase`] plane; on the wide output grid (`oh × ws`) every
//! tap is then a contiguous run, so the hot loop is `acc[0..CW] += w · src[off + j ..][..CW]`
//! over `CW`-wide register tiles: no padding logic inside, one load per FMA, `CW/8`
//! independent accumulator chains. On x86-64 the same loop is compiled again with AVX2+FMA
//! and with AVX-512F, picked at run time ([`Isa::detect`]). Parallel (rayon) over (image,
//! input channel) planes.

use rayon::prelude::*;

use super::elementwise::prepare_out;
use super::microkernel::Isa;
use super::plane::{copy_short, Polyphase};
use crate::graph::{Activation, Conv2d};
use crate::tensor::Tensor;

/// Register tile width in f32 (8 AVX2 registers).
const CW: usize = 64;
/// Tail tile width: the wide grid is padded to a multiple of this, not of `CW`, so small
/// maps (7×7 on an 11-wide grid) do not compute mostly padding.
const TW: usize = 16;

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
    let isa = Isa::detect();
    // Every plane has the same geometry: tap offsets and buffer sizes are computed once.
    let mut geo = Polyphase::default();
    geo.shape(h, wd, c.padding, c.stride);
    let ws = geo.ws();
    let wide_len = (oh * ws).div_ceil(TW) * TW;
    let offsets: Vec<usize> = (0..k2)
        .map(|t| geo.offset((t / kw) * c.dilation[0], (t % kw) * c.dilation[1]))
        .collect();
    let min_len = offsets.iter().copied().max().unwrap_or(0) + wide_len;
    out.data
        .par_chunks_mut(mult * ohw)
        .enumerate()
        .for_each_init(
            || (Polyphase::default(), vec![0.0f32; wide_len]),
            |(pp, wide), (plane_idx, dst)| {
                let src = &x.data[plane_idx * hw..(plane_idx + 1) * hw];
                pp.build(src, h, wd, c.padding, c.stride, 0.0, min_len);
                for (m, dplane) in dst.chunks_exact_mut(ohw).enumerate() {
                    let o = (plane_idx % ci) * mult + m;
                    let wts = &w.data[o * k2..(o + 1) * k2];
                    let bias = b.map_or(0.0, |b| b[o]);
                    let taps = Taps {
                        src: &pp.data,
                        offs: &offsets,
                        wts,
                        bias,
                        act: c.act,
                    };
                    plane(isa, &taps, wide, dplane, (ws, ow));
                }
            },
        );
}

/// One output plane's taps: `act(bias + Σ_t w_t · src[off_t + j])` on the wide grid.
struct Taps<'a> {
    src: &'a [f32],
    offs: &'a [usize],
    wts: &'a [f32],
    bias: f32,
    act: Activation,
}

/// One output plane: the taps on the wide grid `wide` (a multiple of `TW` long), then its
/// `oh` rows of `ow` (pitch `ws` there) into `dst`. The activation is applied in registers
/// and the rows are copied inside the ISA build (the plain-Rust closure around it compiled
/// to 128-bit moves and was 7 % of the FP32 forward). The AVX2 and AVX-512 builds are the
/// same FMA chains (the same bits), in 8- or 16-lane registers. The tap loops take the
/// slices as arguments: reading them through `&Taps` kept the accumulators on the stack.
fn plane(isa: Isa, t: &Taps, wide: &mut [f32], dst: &mut [f32], (ws, ow): (usize, usize)) {
    #[cfg(target_arch = "x86_64")]
    match isa {
        // SAFETY: `Isa::detect` picks these only where the CPU has their features.
        Isa::Avx512 => return unsafe { plane_avx512(t, wide, dst, (ws, ow)) },
        Isa::Avx2Fma => return unsafe { plane_avx2(t, wide, dst, (ws, ow)) },
        Isa::Portable => {}
    }
    let _ = isa;
    plane_impl::<false>(t, wide, dst, (ws, ow));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn plane_avx2(t: &Taps, wide: &mut [f32], dst: &mut [f32], geo: (usize, usize)) {
    plane_impl::<true>(t, wide, dst, geo);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn plane_avx512(t: &Taps, wide: &mut [f32], dst: &mut [f32], geo: (usize, usize)) {
    plane_impl::<true>(t, wide, dst, geo);
}

#[inline(always)]
fn plane_impl<const FMA: bool>(
    t: &Taps,
    wide: &mut [f32],
    dst: &mut [f32],
    (ws, ow): (usize, usize),
) {
    let (src, offs, wts, bias) = (t.src, t.offs, t.wts, t.bias);
    match t.act {
        Activation::None => taps_wide::<FMA, 0>(src, offs, wts, bias, wide),
        Activation::Relu => taps_wide::<FMA, 1>(src, offs, wts, bias, wide),
        Activation::Relu6 => taps_wide::<FMA, 2>(src, offs, wts, bias, wide),
    }
    for (y, row) in dst.chunks_exact_mut(ow).enumerate() {
        copy_short(row, &wide[y * ws..y * ws + ow]);
    }
}

/// The activation as a const parameter (0 none, 1 ReLU, 2 ReLU6), so that each tile's
/// clamp is straight-line code.
const fn act_of(a: u8) -> Activation {
    match a {
        0 => Activation::None,
        1 => Activation::Relu,
        _ => Activation::Relu6,
    }
}

#[inline(always)]
fn taps_wide<const FMA: bool, const ACT: u8>(
    src: &[f32],
    offs: &[usize],
    wts: &[f32],
    bias: f32,
    wide: &mut [f32],
) {
    let full = wide.len() / CW * CW;
    let (body, tail) = wide.split_at_mut(full);
    for (t, tile) in body.chunks_exact_mut(CW).enumerate() {
        tile_taps::<FMA, ACT, CW>(src, offs, wts, bias, t * CW, tile);
    }
    for (t, tile) in tail.chunks_exact_mut(TW).enumerate() {
        tile_taps::<FMA, ACT, TW>(src, offs, wts, bias, full + t * TW, tile);
    }
}

/// One register tile: `tile[i] = act(bias + Σ_t w_t · src[off_t + j0 + i])`, `i < W`.
#[inline(always)]
fn tile_taps<const FMA: bool, const ACT: u8, const W: usize>(
    src: &[f32],
    offs: &[usize],
    wts: &[f32],
    bias: f32,
    j0: usize,
    tile: &mut [f32],
) {
    let mut acc = [bias; W];
    for (&off, &wv) in offs.iter().zip(wts) {
        let s = &src[off + j0..off + j0 + W];
        for i in 0..W {
            acc[i] = if FMA {
                wv.mul_add(s[i], acc[i])
            } else {
                acc[i] + wv * s[i]
            };
        }
    }
    let act = act_of(ACT);
    for (d, a) in tile.iter_mut().zip(acc) {
        *d = act.apply(a);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every build of the tap loop this CPU runs against an f64 sum, over body and tail
    /// tiles, and the AVX-512 build's bits equal the AVX2 build's; the parity tests only
    /// reach the one this CPU picks.
    #[test]
    fn taps_wide_every_build_matches_f64() {
        let src: Vec<f32> = (0..400)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
            .collect();
        let offs = [0usize, 3, 17, 40, 41];
        let wts = [0.5f32, -1.25, 2.0, 0.75, -0.1];
        let len = CW + 2 * TW;
        let want: Vec<f64> = (0..len)
            .map(|j| {
                0.3 + offs
                    .iter()
                    .zip(&wts)
                    .map(|(&o, &w)| w as f64 * src[o + j] as f64)
                    .sum::<f64>()
            })
            .collect();
        let mut got = Vec::new();
        for act in [Activation::None, Activation::Relu6] {
            for isa in Isa::available() {
                let taps = Taps {
                    src: &src,
                    offs: &offs,
                    wts: &wts,
                    bias: 0.3,
                    act,
                };
                let (mut wide, mut out) = (vec![f32::NAN; len], vec![f32::NAN; len]);
                plane(isa, &taps, &mut wide, &mut out, (len, len));
                for (j, (g, w)) in out.iter().zip(&want).enumerate() {
                    let w = act.apply(*w as f32) as f64;
                    // Five terms of magnitude ≤ 4: a few f32 ulps of 10.
                    assert!(
                        (*g as f64 - w).abs() < 1e-5,
                        "{isa:?} {act:?} j={j}: {g} vs {w}"
                    );
                }
                got.push((isa, out));
            }
        }
        let bits = |isa| {
            got.iter()
                .filter(|(i, _)| *i == isa)
                .map(|(_, w)| w.iter().map(|v| v.to_bits()).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        };
        if Isa::available().contains(&Isa::Avx512) {
            assert_eq!(bits(Isa::Avx512), bits(Isa::Avx2Fma));
        }
    }
}
