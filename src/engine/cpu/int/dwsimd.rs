//! SIMD depthwise kernels on pair rows (layout and math in [`super::dw`]).
//!
//! A pair row of input row `iy` holds `wp = (ow − 1)·sx + 2(np − 1)·dx + 1` columns of `C`
//! pairs; output pixel `ox`, pair `j` of kernel row `ky` reads column `ox·sx + 2j·dx`. Pair
//! rows are built once per band and kept in `kh` slots tagged by input row. The kernels
//! keep the accumulators of 4 output pixels × one channel block in registers over all taps,
//! loading each weight vector once for the 4 pixels: AVX-512 VNNI `vpdpwssd` on 16
//! channels, AVX2 `vpmaddwd` + `vpaddd` on 8; the channels past the last full block run
//! scalar on the same pair rows.

use super::dw_data::{cols, DwWeights, Plane, Rows};
use super::dwquad;
use super::isa::Isa;
use crate::graph::Conv2d;

/// Pair rows (or the quad rows of [`super::dwquad`], viewed as bytes) of the input rows one
/// band of output rows needs.
#[derive(Default)]
pub struct PairRows {
    buf: Vec<i16>,
    quad: bool,
    /// `i16` values per row.
    len: usize,
    /// Input row held by each slot.
    tags: Vec<Option<usize>>,
    /// Slot of each kernel row for the current output row (`None`: outside the image).
    sel: Vec<Option<usize>>,
    need: Vec<Option<usize>>,
}

impl PairRows {
    /// Forgets the rows held (a new band, possibly of another image or layer).
    pub fn start(&mut self, w: &DwWeights, c: &Conv2d, ow: usize, quad: bool) {
        // Both kinds hold 4 bytes per channel and column.
        self.quad = quad;
        self.len = cols(w, c, ow, if quad { 4 } else { 2 }) * 2 * w.c;
        self.buf.resize(w.kh * self.len, 0);
        self.tags.clear();
        self.tags.resize(w.kh, None);
        self.sel.resize(w.kh, None);
        self.need.resize(w.kh, None);
    }

    /// The pair rows of output row `oy`, building those not held yet.
    pub fn rows_for(
        &mut self,
        isa: Isa,
        x: Plane,
        w: &DwWeights,
        c: &Conv2d,
        oy: usize,
    ) -> Rows<'_> {
        for (ky, n) in self.need.iter_mut().enumerate() {
            let iy = (oy * c.stride[0] + ky * c.dilation[0]) as isize - c.padding[0] as isize;
            *n = (iy >= 0 && iy < x.h as isize).then_some(iy as usize);
        }
        for ky in 0..w.kh {
            let Some(iy) = self.need[ky] else {
                self.sel[ky] = None;
                continue;
            };
            let s = match self.tags.iter().position(|&t| t == Some(iy)) {
                Some(s) => s,
                None => {
                    // A slot no kernel row of this output row needs (kh slots, ≤ kh needed).
                    let s = (0..w.kh)
                        .find(|&s| self.tags[s].is_none_or(|t| !self.need.contains(&Some(t))))
                        .unwrap_or(0);
                    self.tags[s] = Some(iy);
                    let dst = &mut self.buf[s * self.len..][..self.len];
                    let (pl, dx) = (c.padding[1], c.dilation[1]);
                    if self.quad {
                        dwquad::build(isa, x, iy, w.c, pl, dx, bytemuck::cast_slice_mut(dst));
                    } else {
                        build(isa, x, iy, w.c, pl, dx, dst);
                    }
                    s
                }
            };
            self.sel[ky] = Some(s);
        }
        Rows {
            buf: &self.buf,
            len: self.len,
            sel: &self.sel,
        }
    }
}

/// Pair row of input row `iy` into `dst` (`dst.len() / (2C)` columns).
fn build(isa: Isa, x: Plane, iy: usize, ch: usize, pl: usize, dx: usize, dst: &mut [i16]) {
    #[cfg(target_arch = "x86_64")]
    match isa {
        // SAFETY: the ISA was detected (`Isa::available`).
        Isa::Vnni => return unsafe { build_avx512(x, iy, ch, pl, dx, dst) },
        // SAFETY: as above.
        Isa::Avx2 => return unsafe { build_avx2(x, iy, ch, pl, dx, dst) },
        Isa::Portable => {}
    }
    let _ = isa;
    build_generic(x, iy, ch, pl, dx, dst);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2")]
unsafe fn build_avx512(x: Plane, iy: usize, ch: usize, pl: usize, dx: usize, dst: &mut [i16]) {
    build_generic(x, iy, ch, pl, dx, dst);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn build_avx2(x: Plane, iy: usize, ch: usize, pl: usize, dx: usize, dst: &mut [i16]) {
    build_generic(x, iy, ch, pl, dx, dst);
}

#[inline(always)]
fn build_generic(x: Plane, iy: usize, ch: usize, pl: usize, dx: usize, dst: &mut [i16]) {
    let src = &x.codes[iy * x.w * ch..][..x.w * ch];
    let zx = x.zx as i16;
    let col = |u: usize| {
        u.checked_sub(pl)
            .filter(|&i| i < x.w)
            .map(|i| &src[i * ch..][..ch])
    };
    for (u, d) in dst.chunks_exact_mut(2 * ch).enumerate() {
        match (col(u), col(u + dx)) {
            (Some(a), Some(b)) => {
                for ((d, &a), &b) in d.chunks_exact_mut(2).zip(a).zip(b) {
                    d[0] = a as i16 - zx;
                    d[1] = b as i16 - zx;
                }
            }
            (Some(a), None) => {
                for (d, &a) in d.chunks_exact_mut(2).zip(a) {
                    d[0] = a as i16 - zx;
                    d[1] = 0;
                }
            }
            (None, Some(b)) => {
                for (d, &b) in d.chunks_exact_mut(2).zip(b) {
                    d[0] = 0;
                    d[1] = b as i16 - zx;
                }
            }
            (None, None) => d.fill(0),
        }
    }
}

/// Accumulators of one output row (`ow · C` values) into `acc` from its pair rows.
pub fn row(isa: Isa, rows: &Rows, w: &DwWeights, c: &Conv2d, ow: usize, acc: &mut [i32]) {
    let ch = w.c;
    let need = cols(w, c, ow, 2) * 2 * ch;
    assert!(rows.len >= need && acc.len() >= ow * ch);
    assert_eq!(w.pairs.len(), w.kh * w.np() * ch * 2);
    let done = match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the ISA was detected (`Isa::available`); the asserts above bound every
        // access: pair rows hold `cols` columns of 2C values, `acc` ow·C, weights kh·np·2C.
        Isa::Vnni => unsafe { row_avx512(rows, w, c, ow, acc) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 => unsafe { row_avx2(rows, w, c, ow, acc) },
        _ => 0,
    };
    row_scalar(rows, w, c, ow, done, acc);
}

/// Channels `from..C` of one output row, scalar.
fn row_scalar(rows: &Rows, w: &DwWeights, c: &Conv2d, ow: usize, from: usize, acc: &mut [i32]) {
    let (ch, np) = (w.c, w.np());
    let (sx, dx) = (c.stride[1], c.dilation[1]);
    for ox in (0..ow).filter(|_| from < ch) {
        for (k, d) in acc[ox * ch..][..ch].iter_mut().enumerate().skip(from) {
            let mut s = 0i32;
            for ky in 0..w.kh {
                let Some(r) = rows.get(ky) else { continue };
                for j in 0..np {
                    let p = &r[((ox * sx + 2 * j * dx) * ch + k) * 2..][..2];
                    let t = &w.pairs[((ky * np + j) * ch + k) * 2..][..2];
                    s += p[0] as i32 * t[0] as i32 + p[1] as i32 * t[1] as i32;
                }
            }
            *d = s;
        }
    }
}

/// Pixels per register block.
const PX: usize = 4;

/// Full 16-channel blocks with `vpdpwssd`; returns the channels done.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512vnni,avx512f,avx512bw,avx512vl")]
unsafe fn row_avx512(rows: &Rows, w: &DwWeights, c: &Conv2d, ow: usize, acc: &mut [i32]) -> usize {
    use std::arch::x86_64::*;
    #[inline(always)]
    unsafe fn block<const N: usize>(
        r: &[Option<*const i16>],
        wp: *const i16,
        (ch, np, sx, dx): (usize, usize, usize, usize),
        ox0: usize,
        c0: usize,
        acc: *mut i32,
    ) {
        let mut a = [_mm512_setzero_si512(); N];
        for (ky, p) in r.iter().enumerate() {
            let Some(p) = *p else { continue };
            for j in 0..np {
                // SAFETY (whole block): bounds asserted by `row`.
                let wv = unsafe { _mm512_loadu_si512(wp.add(((ky * np + j) * ch + c0) * 2) as _) };
                for (i, a) in a.iter_mut().enumerate() {
                    let col = (ox0 + i) * sx + 2 * j * dx;
                    let xv = unsafe { _mm512_loadu_si512(p.add((col * ch + c0) * 2) as _) };
                    *a = _mm512_dpwssd_epi32(*a, xv, wv);
                }
            }
        }
        for (i, &a) in a.iter().enumerate() {
            unsafe { _mm512_storeu_si512(acc.add((ox0 + i) * ch + c0) as _, a) };
        }
    }
    let ch = w.c;
    let full = ch / 16 * 16;
    let r: Vec<Option<*const i16>> = (0..w.kh).map(|k| rows.get(k).map(|p| p.as_ptr())).collect();
    let dims = (ch, w.np(), c.stride[1], c.dilation[1]);
    let (wp, ap) = (w.pairs.as_ptr(), acc.as_mut_ptr());
    let mut ox0 = 0;
    while ox0 < ow {
        let n = (ow - ox0).min(PX);
        for c0 in (0..full).step_by(16) {
            // SAFETY: pixels ox0..ox0 + n < ow, channels c0..c0 + 16 ≤ C.
            unsafe {
                if n == PX {
                    block::<PX>(&r, wp, dims, ox0, c0, ap);
                } else {
                    for o in ox0..ox0 + n {
                        block::<1>(&r, wp, dims, o, c0, ap);
                    }
                }
            }
        }
        ox0 += n;
    }
    full
}

/// Full 8-channel blocks with `vpmaddwd` + `vpaddd`; returns the channels done.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn row_avx2(rows: &Rows, w: &DwWeights, c: &Conv2d, ow: usize, acc: &mut [i32]) -> usize {
    use std::arch::x86_64::*;
    #[inline(always)]
    unsafe fn block<const N: usize>(
        r: &[Option<*const i16>],
        wp: *const i16,
        (ch, np, sx, dx): (usize, usize, usize, usize),
        ox0: usize,
        c0: usize,
        acc: *mut i32,
    ) {
        let mut a = [_mm256_setzero_si256(); N];
        for (ky, p) in r.iter().enumerate() {
            let Some(p) = *p else { continue };
            for j in 0..np {
                // SAFETY (whole block): bounds asserted by `row`.
                let wv = unsafe { _mm256_loadu_si256(wp.add(((ky * np + j) * ch + c0) * 2) as _) };
                for (i, a) in a.iter_mut().enumerate() {
                    let col = (ox0 + i) * sx + 2 * j * dx;
                    let xv = unsafe { _mm256_loadu_si256(p.add((col * ch + c0) * 2) as _) };
                    *a = _mm256_add_epi32(*a, _mm256_madd_epi16(xv, wv));
                }
            }
        }
        for (i, &a) in a.iter().enumerate() {
            unsafe { _mm256_storeu_si256(acc.add((ox0 + i) * ch + c0) as _, a) };
        }
    }
    let ch = w.c;
    let full = ch / 8 * 8;
    let r: Vec<Option<*const i16>> = (0..w.kh).map(|k| rows.get(k).map(|p| p.as_ptr())).collect();
    let dims = (ch, w.np(), c.stride[1], c.dilation[1]);
    let (wp, ap) = (w.pairs.as_ptr(), acc.as_mut_ptr());
    let mut ox0 = 0;
    while ox0 < ow {
        let n = (ow - ox0).min(PX);
        for c0 in (0..full).step_by(8) {
            // SAFETY: pixels ox0..ox0 + n < ow, channels c0..c0 + 8 ≤ C.
            unsafe {
                if n == PX {
                    block::<PX>(&r, wp, dims, ox0, c0, ap);
                } else {
                    for o in ox0..ox0 + n {
                        block::<1>(&r, wp, dims, o, c0, ap);
                    }
                }
            }
        }
        ox0 += n;
    }
    full
}
