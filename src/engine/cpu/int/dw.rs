//! Integer depthwise convolution on channel-minor (NHWC) `u8` codes, vectorized over
//! channels: for one output row, `acc[ox, c] = Σ_{taps inside} (x[iy, ix, c] − z_x) ·
//! w[ky, kx, c]` with centred `i16` weights `(q − z_w)` stored `[kh·kw][C]`. Padding taps
//! hold the real 0 (q_x = z_x) and are skipped. Each product fits `i32`; the caller checks
//! that the sum does. The channel loop is compiled again with AVX-512 BW / AVX2 enabled
//! (integer ops: identical results).

use super::isa::Isa;
use super::weights::PackedWeights;
use crate::graph::Conv2d;

/// Centred depthwise taps `[kh·kw][C]`.
#[derive(Clone, Debug, PartialEq)]
pub struct DwWeights {
    pub taps: Vec<i16>,
    pub c: usize,
}

impl DwWeights {
    pub fn new(w: &PackedWeights) -> Self {
        let (c, k) = (w.cout, w.k);
        let mut taps = vec![0i16; k * c];
        let mut row = vec![0i16; k];
        for ch in 0..c {
            w.centered_row(ch, &mut row);
            for (t, &v) in row.iter().enumerate() {
                taps[t * c + ch] = v;
            }
        }
        DwWeights { taps, c }
    }
}

/// One image's input map.
#[derive(Clone, Copy)]
pub struct Plane<'a> {
    pub codes: &'a [u8],
    pub h: usize,
    pub w: usize,
    pub zx: i32,
}

/// Accumulators of output row `oy` (`ow · C` values) into `acc`.
pub fn row_acc(
    isa: Isa,
    x: Plane,
    w: &DwWeights,
    c: &Conv2d,
    oy: usize,
    ow: usize,
    acc: &mut [i32],
) {
    #[cfg(target_arch = "x86_64")]
    match isa {
        // SAFETY: the ISA was detected (`Isa::available`).
        Isa::Vnni => return unsafe { row_avx512(x, w, c, oy, ow, acc) },
        // SAFETY: as above.
        Isa::Avx2 => return unsafe { row_avx2(x, w, c, oy, ow, acc) },
        Isa::Portable => {}
    }
    let _ = isa;
    row_generic(x, w, c, oy, ow, acc);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2")]
unsafe fn row_avx512(x: Plane, w: &DwWeights, c: &Conv2d, oy: usize, ow: usize, acc: &mut [i32]) {
    row_generic(x, w, c, oy, ow, acc);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn row_avx2(x: Plane, w: &DwWeights, c: &Conv2d, oy: usize, ow: usize, acc: &mut [i32]) {
    row_generic(x, w, c, oy, ow, acc);
}

#[inline(always)]
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
