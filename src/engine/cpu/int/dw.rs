//! Integer depthwise convolution on channel-minor (NHWC) `u8` codes: for output pixel
//! `(oy, ox)` and channel `c`, `acc = Σ_{taps inside} (x[iy, ix, c] − z_x) · w[ky, kx, c]`
//! with centred `i16` weights `(q − z_w)`. Padding taps hold the real 0 (q_x = z_x) and add
//! exactly 0. Each product fits `i32`; the caller checks that the sum does.
//!
//! Three algorithms, the same integers:
//! - portable ([`Isa::Portable`]): per output row, taps `[kh·kw][C]`, loops over channels;
//! - quads ([`Isa::Vnni`] with weights that fit `i8`, [`Isa::Avx2`] with weights within
//!   ±64, e.g. W4; [`super::dwquad`]): four horizontal taps of raw `u8` codes per
//!   `vpdpbusd` lane (AVX2: `vpmaddubsw` + `vpmaddwd`), exact zero-point correction;
//! - pairs (wider weights; [`super::dwsimd`]): each
//!   needed input row is widened once per band of output rows into *pair rows* of centred
//!   `i16` codes, `P[u][c] = (x̃[u − pl][c], x̃[u − pl + dx][c])` (x̃ = q − z_x, 0 in the
//!   padding), so that horizontally adjacent taps (kx = 2j, 2j + 1) of `vpmaddwd` / `vpdpwssd` are one
//!   unaligned load; the weights are packed the same way, `[kh][⌈kw/2⌉][C][2]` (an odd last
//!   tap pairs with weight 0). Pair sums are ≤ 2·255² in magnitude: exact in `i32`.

pub use super::dw_data::{DwWeights, Plane};
use super::dwquad;
use super::dwsimd::{self, PairRows};
use super::isa::Isa;
use crate::graph::Conv2d;

/// Reusable buffers of [`band_acc`].
#[derive(Default)]
pub struct DwScratch {
    pairs: PairRows,
    acc: Vec<i32>,
    acc2: Vec<i32>,
    corr: Vec<i32>,
}

/// Accumulators of output rows `oy0..oy0 + n` (`ow · C` values each) for the weights `w`
/// and, for dual layers, `w2`: `sink(row, acc, acc2)` is called once per row, in order.
#[allow(clippy::too_many_arguments)]
pub fn band_acc(
    isa: Isa,
    x: Plane,
    w: &DwWeights,
    w2: Option<&DwWeights>,
    c: &Conv2d,
    (oy0, n): (usize, usize),
    ow: usize,
    s: &mut DwScratch,
    mut sink: impl FnMut(usize, &[i32], Option<&[i32]>),
) {
    let ch = w.c;
    s.acc.resize(ow * ch, 0);
    s.acc2.resize(if w2.is_some() { ow * ch } else { 0 }, 0);
    let fits = |w: &DwWeights| match isa {
        Isa::Vnni => w.quads.is_some(),
        Isa::Avx2 => w.run16 > 0,
        Isa::Portable => false,
    };
    let quad = fits(w) && w2.is_none_or(fits);
    s.pairs.start(w, c, ow, quad);
    for (r, oy) in (oy0..oy0 + n).enumerate() {
        if isa == Isa::Portable {
            row_generic(x, w, c, oy, ow, &mut s.acc);
            if let Some(w2) = w2 {
                row_generic(x, w2, c, oy, ow, &mut s.acc2);
            }
        } else {
            let rows = s.pairs.rows_for(isa, x, w, c, oy);
            let zx = x.zx;
            for (w, acc) in [(w, &mut s.acc)]
                .into_iter()
                .chain(w2.map(|w2| (w2, &mut s.acc2)))
            {
                if quad {
                    dwquad::row(isa, &rows, w, c, ow, zx, &mut s.corr, acc);
                } else {
                    dwsimd::row(isa, &rows, w, c, ow, acc);
                }
            }
        }
        sink(r, &s.acc, w2.map(|_| &s.acc2[..]));
    }
}

/// Accumulators of output row `oy` (`ow · C` values) into `acc`, the portable way.
fn row_generic(x: Plane, w: &DwWeights, c: &Conv2d, oy: usize, ow: usize, acc: &mut [i32]) {
    let ch = w.c;
    let (kh, kw) = (c.kernel[0], c.kernel[1]);
    let (sx, pl) = (c.stride[1], c.padding[1] as isize);
    let acc = &mut acc[..ow * ch];
    acc.fill(0);
    let zx = x.zx as i16;
    for ky in 0..kh {
        let iy = (oy * c.stride[0] + ky * c.dilation[0]) as isize - c.padding[0] as isize;
        if iy < 0 || iy >= x.h as isize {
            continue;
        }
        let src = &x.codes[iy as usize * x.w * ch..][..x.w * ch];
        for kx in 0..kw {
            let tap = &w.taps[(ky * kw + kx) * ch..][..ch];
            // Output columns whose input column ix = ox·sx + kx·dx − pl lies inside.
            let off = (kx * c.dilation[1]) as isize - pl;
            let lo = if off >= 0 {
                0
            } else {
                ((-off) as usize).div_ceil(sx)
            };
            let hi = if (x.w as isize) <= off {
                0
            } else {
                ((x.w as isize - off) as usize).div_ceil(sx).min(ow)
            };
            for ox in lo..hi.max(lo) {
                let ix = (ox * sx) as isize + off;
                let xs = &src[ix as usize * ch..][..ch];
                let a = &mut acc[ox * ch..][..ch];
                for ((d, &q), &t) in a.iter_mut().zip(xs).zip(tap) {
                    // (q − z) and t are within ±255: the product fits i32.
                    *d += ((q as i16 - zx) as i32) * (t as i32);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::cpu::int::PackedWeights;
    use crate::graph::Activation;
    use crate::quant::QParams;

    /// Dual weights (`w2`) on partial bands, narrow (quad kernel) and wide (pair kernel)
    /// weights, full SIMD blocks plus tails: every ISA equals a naive sum.
    #[test]
    fn dual_bands_match_naive_on_every_isa() {
        let mut seed = 5u64;
        let mut next = |m: u32| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as u32 % m
        };
        for (ch, k, s, bits) in [(37, 3, 1, 4), (37, 5, 2, 8), (16, 5, 1, 3), (33, 3, 2, 8)] {
            let (h, wd) = (9, 11);
            let c = Conv2d {
                in_channels: ch,
                out_channels: ch,
                kernel: [k, k],
                stride: [s, s],
                dilation: [1, 1],
                padding: [k / 2, k / 2, k / 2 + 1, k / 2],
                groups: ch,
                bias: false,
                act: Activation::None,
            };
            let (oh, ow) = c.out_hw(h, wd).unwrap();
            let mut pack = || {
                let p: Vec<QParams> = (0..ch)
                    .map(|i| QParams::from_range(-1.0 - i as f32 * 0.1, 0.5, bits).unwrap())
                    .collect();
                let q: Vec<u8> = (0..ch * k * k).map(|_| next(1 << bits) as u8).collect();
                (PackedWeights::new(&q, &p).unwrap(), q, p)
            };
            let (pw, q1, p1) = pack();
            let (pw2, q2, p2) = pack();
            let (w1, w2) = (
                DwWeights::new(&pw, c.kernel),
                DwWeights::new(&pw2, c.kernel),
            );
            assert_eq!(w1.quads.is_some(), bits < 8);
            let codes: Vec<u8> = (0..h * wd * ch).map(|_| next(256) as u8).collect();
            let x = Plane {
                codes: &codes,
                h,
                w: wd,
                zx: 131,
            };
            let naive = |q: &[u8], p: &[QParams], oy: usize, ox: usize, o: usize| {
                let mut t = 0i64;
                for ky in 0..k {
                    for kx in 0..k {
                        let iy = (oy * s + ky) as isize - c.padding[0] as isize;
                        let ix = (ox * s + kx) as isize - c.padding[1] as isize;
                        if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                            let v = codes[(iy as usize * wd + ix as usize) * ch + o] as i64;
                            let wq = q[o * k * k + ky * k + kx] as i64 - p[o].zero_point as i64;
                            t += (v - 131) * wq;
                        }
                    }
                }
                t
            };
            for isa in Isa::available() {
                let mut s = DwScratch::default();
                for (oy0, n) in [(0, oh), (1, oh - 1)] {
                    let mut seen = 0;
                    band_acc(
                        isa,
                        x,
                        &w1,
                        Some(&w2),
                        &c,
                        (oy0, n),
                        ow,
                        &mut s,
                        |r, a, a2| {
                            let a2 = a2.unwrap();
                            for (i, (&v, &v2)) in a.iter().zip(a2).take(ow * ch).enumerate() {
                                let (ox, o) = (i / ch, i % ch);
                                assert_eq!(v as i64, naive(&q1, &p1, oy0 + r, ox, o), "{isa:?}");
                                assert_eq!(v2 as i64, naive(&q2, &p2, oy0 + r, ox, o), "{isa:?}");
                            }
                            seen += 1;
                        },
                    );
                    assert_eq!(seen, n);
                }
            }
        }
    }

    /// The AVX2 quad kernel's `i16` runs at their bounds: 4-bit weights at −8 (runs of 8; a
    /// 5×5 window's 10 quads flush mid-window) and 7-bit ones at −64 (runs of 1), 8-bit
    /// ones past ±64 (the pair kernel), on activations all 255, all 0 and random.
    #[test]
    fn quad_runs_at_their_bounds_match_naive_on_every_isa() {
        let (h, wd) = (6, 9);
        for (bits, k, run) in [(4u8, 5, 8), (4, 3, 8), (7, 5, 1), (8, 3, 0)] {
            let ch = 19;
            let c = Conv2d {
                in_channels: ch,
                out_channels: ch,
                kernel: [k, k],
                stride: [1, 1],
                dilation: [1, 1],
                padding: [k / 2; 4],
                groups: ch,
                bias: false,
                act: Activation::None,
            };
            let (oh, ow) = c.out_hw(h, wd).unwrap();
            let p: Vec<QParams> = (0..ch)
                .map(|_| {
                    // Scale 1, zero point 2^(bits−1): centred weights −2^(bits−1)..2^(bits−1)−1.
                    let half = (1u32 << (bits - 1)) as f32;
                    QParams::from_range(-half, half - 1.0, bits).unwrap()
                })
                .collect();
            // Code 0 is the most negative centred weight (−8, −64, −128); 8-bit mixes in qmax.
            let qmax = (1u32 << bits) as usize - 1;
            let q: Vec<u8> = (0..ch * k * k)
                .map(|i| {
                    if bits == 8 && i % 3 == 0 {
                        qmax as u8
                    } else {
                        0
                    }
                })
                .collect();
            let w = DwWeights::new(&PackedWeights::new(&q, &p).unwrap(), c.kernel);
            assert_eq!(w.run16, run);
            for fill in [Some(255u8), Some(0), None] {
                let codes: Vec<u8> = (0..h * wd * ch)
                    .map(|i| fill.unwrap_or((i * 97 % 256) as u8))
                    .collect();
                let x = Plane {
                    codes: &codes,
                    h,
                    w: wd,
                    zx: 3,
                };
                for isa in Isa::available() {
                    let mut s = DwScratch::default();
                    band_acc(isa, x, &w, None, &c, (0, oh), ow, &mut s, |oy, a, _| {
                        for (i, &v) in a.iter().take(ow * ch).enumerate() {
                            let (ox, o) = (i / ch, i % ch);
                            let mut t = 0i64;
                            for ky in 0..k {
                                for kx in 0..k {
                                    let iy = (oy + ky) as isize - (k / 2) as isize;
                                    let ix = (ox + kx) as isize - (k / 2) as isize;
                                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd
                                    {
                                        let v = codes[(iy as usize * wd + ix as usize) * ch + o];
                                        let wq = q[o * k * k + ky * k + kx] as i64
                                            - p[o].zero_point as i64;
                                        t += (v as i64 - 3) * wq;
                                    }
                                }
                            }
                            assert_eq!(v as i64, t, "{isa:?} bits {bits} k {k} ({oy}, {ox}, {o})");
                        }
                    });
                }
            }
        }
    }
}
