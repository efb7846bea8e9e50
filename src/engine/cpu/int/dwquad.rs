//! Depthwise kernels on *quad rows* of raw `u8` codes: AVX-512 VNNI for weights whose
//! centred values all fit `i8`, AVX2 for weights within ±64 (`vpmaddubsw` sums two u8 × i8
//! products into an `i16`, saturating; |2·255·64| < 2^15 never does, and `vpmaddwd` with
//! ones adds the two pairs of a lane into `i32`, after up to `run16` quads' pair sums have
//! added in `i16`, see [`super::qgemm::run16`]): `Q[u][c] = (q[u − pl], q[u − pl + dx], q[u − pl + 2dx],
//! q[u − pl + 3dx])` of channel `c` (code z_x in the horizontal padding), so that four
//! horizontally adjacent taps are one `vpdpbusd` lane (u8 × i8). The zero point is an exact
//! correction: Σ (q − z_x)·w = Σ q·w − z_x·Σ w over the kernel rows inside the image (the
//! padded columns hold z_x and so add exactly z_x·w − z_x·w = 0); accumulators start at
//! `−z_x·Σ_{ky inside} rowsum[ky][c]`. All sums wrap in `i32`; the true result fits, so it
//! is exact. Per 16 channels and output pixel a 3×3 window takes 3 instructions (pairs: 6).

use super::dw_data::{cols, DwWeights, Plane, Rows};
use super::isa::Isa;
use crate::graph::Conv2d;

/// Quad row of input row `iy` into `dst` (`dst.len() / (4C)` columns).
pub fn build(isa: Isa, x: Plane, iy: usize, ch: usize, pl: usize, dx: usize, dst: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if isa != Isa::Portable {
        // SAFETY: the ISA was detected (`Isa::available`); both include AVX2.
        return unsafe { build_avx2(x, iy, ch, pl, dx, dst) };
    }
    let _ = isa;
    build_cols(x, iy, ch, pl, dx, dst);
}

/// By byte and word unpacks of the four source pixels (32 channels: 8 in-lane unpacks and
/// 4 lane swaps for 128 bytes; 16: 8 unpacks), the last `C mod 16` channels bytewise.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn build_avx2(x: Plane, iy: usize, ch: usize, pl: usize, dx: usize, dst: &mut [u8]) {
    use std::arch::x86_64::*;
    let src = &x.codes[iy * x.w * ch..][..x.w * ch];
    let cols = dst.len() / (4 * ch);
    // Taps in the padding read a pixel of z_x codes.
    let pad = vec![x.zx as u8; ch];
    let px = |v: usize| match v.checked_sub(pl).filter(|&i| i < x.w) {
        Some(i) => src[i * ch..][..ch].as_ptr(),
        None => pad.as_ptr(),
    };
    let (c32, c16) = (ch / 32 * 32, ch / 16 * 16);
    // Columns whose four taps all lie inside (pl ≤ u, u + 3dx < pl + w) take no branch.
    let lo = pl.min(cols);
    let hi = (pl + x.w).saturating_sub(3 * dx).clamp(lo, cols);
    let base = src.as_ptr();
    for u in 0..cols {
        let s: [*const u8; 4] = if (lo..hi).contains(&u) {
            // SAFETY: u − pl + t·dx < w for t ≤ 3: inside the source row.
            std::array::from_fn(|t| unsafe { base.add((u - pl + t * dx) * ch) })
        } else {
            std::array::from_fn(|t| px(u + t * dx))
        };
        // SAFETY: column u < cols of 4C bytes lies inside `dst`.
        let d = unsafe { dst.as_mut_ptr().add(u * 4 * ch) };
        // SAFETY: channels c0..c0 + 32 (or + 16) ≤ C of four source pixels and of the
        // destination column (4C bytes).
        unsafe {
            for c0 in (0..c32).step_by(32) {
                let v: [__m256i; 4] =
                    std::array::from_fn(|t| _mm256_loadu_si256(s[t].add(c0) as _));
                let (a, b) = (
                    _mm256_unpacklo_epi8(v[0], v[1]),
                    _mm256_unpackhi_epi8(v[0], v[1]),
                );
                let (e, f) = (
                    _mm256_unpacklo_epi8(v[2], v[3]),
                    _mm256_unpackhi_epi8(v[2], v[3]),
                );
                // Lanes: r0 = ch 0-3 | 16-19, r1 = 4-7 | 20-23, r2 = 8-11 | 24-27, r3 = 12-15 | 28-31.
                let r0 = _mm256_unpacklo_epi16(a, e);
                let r1 = _mm256_unpackhi_epi16(a, e);
                let r2 = _mm256_unpacklo_epi16(b, f);
                let r3 = _mm256_unpackhi_epi16(b, f);
                let o = d.add(c0 * 4);
                _mm256_storeu_si256(o as _, _mm256_permute2x128_si256(r0, r1, 0x20));
                _mm256_storeu_si256(o.add(32) as _, _mm256_permute2x128_si256(r2, r3, 0x20));
                _mm256_storeu_si256(o.add(64) as _, _mm256_permute2x128_si256(r0, r1, 0x31));
                _mm256_storeu_si256(o.add(96) as _, _mm256_permute2x128_si256(r2, r3, 0x31));
            }
            for c0 in (c32..c16).step_by(16) {
                let v: [__m128i; 4] = std::array::from_fn(|t| _mm_loadu_si128(s[t].add(c0) as _));
                let (a, b) = (_mm_unpacklo_epi8(v[0], v[1]), _mm_unpackhi_epi8(v[0], v[1]));
                let (e, f) = (_mm_unpacklo_epi8(v[2], v[3]), _mm_unpackhi_epi8(v[2], v[3]));
                let o = d.add(c0 * 4);
                _mm_storeu_si128(o as _, _mm_unpacklo_epi16(a, e));
                _mm_storeu_si128(o.add(16) as _, _mm_unpackhi_epi16(a, e));
                _mm_storeu_si128(o.add(32) as _, _mm_unpacklo_epi16(b, f));
                _mm_storeu_si128(o.add(48) as _, _mm_unpackhi_epi16(b, f));
            }
        }
        for k in c16..ch {
            // SAFETY: k < C.
            let q = unsafe { [*s[0].add(k), *s[1].add(k), *s[2].add(k), *s[3].add(k)] };
            // SAFETY: as above.
            unsafe { std::ptr::copy_nonoverlapping(q.as_ptr(), d.add(k * 4), 4) };
        }
    }
}

/// A quad row, portably.
fn build_cols(x: Plane, iy: usize, ch: usize, pl: usize, dx: usize, dst: &mut [u8]) {
    let src = &x.codes[iy * x.w * ch..][..x.w * ch];
    let zx = x.zx as u8;
    let inside = |u: usize| u >= pl && u - pl < x.w;
    for (u, d) in dst.chunks_exact_mut(4 * ch).enumerate() {
        for t in 0..4 {
            let v = u + t * dx;
            for (k, d) in d.chunks_exact_mut(4).enumerate() {
                d[t] = if inside(v) {
                    src[(v - pl) * ch + k]
                } else {
                    zx
                };
            }
        }
    }
}

/// Accumulators of one output row (`ow · C` values) into `acc` from its quad rows; `corr`
/// is scratch for the per-channel correction. Channels past the last full block (16 for
/// VNNI, 8 for AVX2; all of them for the portable ISA) run scalar.
#[allow(clippy::too_many_arguments)]
pub fn row(
    isa: Isa,
    rows: &Rows,
    w: &DwWeights,
    c: &Conv2d,
    ow: usize,
    zx: i32,
    corr: &mut Vec<i32>,
    acc: &mut [i32],
) {
    let Some((q, sums)) = &w.quads else {
        unreachable!("the quad kernel runs only on weights that fit i8")
    };
    let (ch, nq) = (w.c, w.nq());
    corr.clear();
    corr.resize(ch, 0);
    for ky in (0..w.kh).filter(|&ky| rows.bytes(ky).is_some()) {
        for (d, &s) in corr.iter_mut().zip(&sums[ky * ch..][..ch]) {
            *d = d.wrapping_sub(zx.wrapping_mul(s));
        }
    }
    assert!(rows.byte_len() >= cols(w, c, ow, 4) * 4 * ch && acc.len() >= ow * ch);
    assert_eq!(q.len(), w.kh * nq * ch * 4);
    let (sx, dx) = (c.stride[1], c.dilation[1]);
    let done = match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the ISA was detected (`Isa::available`); the asserts above bound every
        // access (rows of `cols` columns × 4C bytes, acc ow·C, weights kh·nq·4C, corr C).
        Isa::Vnni => unsafe { row_avx512(rows, q, corr, (ch, nq, sx, dx), w.kh, ow, acc) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above; `band_acc` picks this kernel only for weights within ±64.
        Isa::Avx2 if w.run16 > 0 => unsafe {
            row_avx2(rows, q, corr, (ch, nq, sx, dx), (w.kh, w.run16), ow, acc)
        },
        _ => 0,
    };
    for ox in (0..ow).filter(|_| done < ch) {
        for (k, d) in acc[ox * ch..][..ch].iter_mut().enumerate().skip(done) {
            let mut s = corr[k];
            for ky in 0..w.kh {
                let Some(r) = rows.bytes(ky) else { continue };
                for j in 0..nq {
                    let p = &r[((ox * sx + 4 * j * dx) * ch + k) * 4..][..4];
                    let t = &q[((ky * nq + j) * ch + k) * 4..][..4];
                    for (&a, &b) in p.iter().zip(t) {
                        s = s.wrapping_add(a as i32 * b as i32);
                    }
                }
            }
            *d = s;
        }
    }
}

/// Pixels per register block.
const PX: usize = 4;

/// Full 16-channel blocks; returns the channels done.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512vnni,avx512f,avx512bw,avx512vl")]
unsafe fn row_avx512(
    rows: &Rows,
    q: &[i8],
    corr: &[i32],
    dims: (usize, usize, usize, usize),
    kh: usize,
    ow: usize,
    acc: &mut [i32],
) -> usize {
    use std::arch::x86_64::*;
    #[inline(always)]
    unsafe fn block<const N: usize>(
        r: &[Option<*const u8>],
        (wp, cp): (*const i8, *const i32),
        (ch, nq, sx, dx): (usize, usize, usize, usize),
        ox0: usize,
        c0: usize,
        acc: *mut i32,
    ) {
        // SAFETY (whole block): bounds asserted by `row`.
        let init = unsafe { _mm512_loadu_si512(cp.add(c0) as _) };
        let mut a = [init; N];
        for (ky, p) in r.iter().enumerate() {
            let Some(p) = *p else { continue };
            for j in 0..nq {
                let wv = unsafe { _mm512_loadu_si512(wp.add(((ky * nq + j) * ch + c0) * 4) as _) };
                for (i, a) in a.iter_mut().enumerate() {
                    let col = (ox0 + i) * sx + 4 * j * dx;
                    let xv = unsafe { _mm512_loadu_si512(p.add((col * ch + c0) * 4) as _) };
                    *a = _mm512_dpbusd_epi32(*a, xv, wv);
                }
            }
        }
        for (i, &a) in a.iter().enumerate() {
            unsafe { _mm512_storeu_si512(acc.add((ox0 + i) * ch + c0) as _, a) };
        }
    }
    let ch = dims.0;
    let full = ch / 16 * 16;
    let r: Vec<Option<*const u8>> = (0..kh).map(|k| rows.bytes(k).map(|p| p.as_ptr())).collect();
    let ptrs = (q.as_ptr(), corr.as_ptr());
    let ap = acc.as_mut_ptr();
    let mut ox0 = 0;
    while ox0 < ow {
        let n = (ow - ox0).min(PX);
        for c0 in (0..full).step_by(16) {
            // SAFETY: pixels ox0..ox0 + n < ow, channels c0..c0 + 16 ≤ C.
            unsafe {
                if n == PX {
                    block::<PX>(&r, ptrs, dims, ox0, c0, ap);
                } else {
                    for o in ox0..ox0 + n {
                        block::<1>(&r, ptrs, dims, o, c0, ap);
                    }
                }
            }
        }
        ox0 += n;
    }
    full
}

/// Full 8-channel blocks (weights within ±64); returns the channels done. The pair sums
/// of up to `run` quads add in `i16` before `vpmaddwd` widens them (exact: see
/// [`super::qgemm::run16`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn row_avx2(
    rows: &Rows,
    q: &[i8],
    corr: &[i32],
    dims: (usize, usize, usize, usize),
    (kh, run): (usize, usize),
    ow: usize,
    acc: &mut [i32],
) -> usize {
    use std::arch::x86_64::*;
    #[inline(always)]
    unsafe fn block<const N: usize>(
        r: &[Option<*const u8>],
        (wp, cp, run): (*const i8, *const i32, usize),
        (ch, nq, sx, dx): (usize, usize, usize, usize),
        ox0: usize,
        c0: usize,
        acc: *mut i32,
    ) {
        // SAFETY (whole block): bounds asserted by `row`.
        let init = unsafe { _mm256_loadu_si256(cp.add(c0) as _) };
        let mut a = [init; N];
        let mut t = [_mm256_setzero_si256(); N];
        let mut used = 0;
        let ones = _mm256_set1_epi16(1);
        for (ky, p) in r.iter().enumerate() {
            let Some(p) = *p else { continue };
            for j in 0..nq {
                if used == run {
                    for (a, t) in a.iter_mut().zip(t.iter_mut()) {
                        *a = _mm256_add_epi32(*a, _mm256_madd_epi16(*t, ones));
                        *t = _mm256_setzero_si256();
                    }
                    used = 0;
                }
                let wv = unsafe { _mm256_loadu_si256(wp.add(((ky * nq + j) * ch + c0) * 4) as _) };
                for (i, t) in t.iter_mut().enumerate() {
                    let col = (ox0 + i) * sx + 4 * j * dx;
                    let xv = unsafe { _mm256_loadu_si256(p.add((col * ch + c0) * 4) as _) };
                    *t = _mm256_add_epi16(*t, _mm256_maddubs_epi16(xv, wv));
                }
                used += 1;
            }
        }
        for (i, (&a, &t)) in a.iter().zip(&t).enumerate() {
            let v = _mm256_add_epi32(a, _mm256_madd_epi16(t, ones));
            unsafe { _mm256_storeu_si256(acc.add((ox0 + i) * ch + c0) as _, v) };
        }
    }
    let ch = dims.0;
    let full = ch / 8 * 8;
    let r: Vec<Option<*const u8>> = (0..kh).map(|k| rows.bytes(k).map(|p| p.as_ptr())).collect();
    let ptrs = (q.as_ptr(), corr.as_ptr(), run);
    let ap = acc.as_mut_ptr();
    let mut ox0 = 0;
    while ox0 < ow {
        let n = (ow - ox0).min(PX);
        for c0 in (0..full).step_by(8) {
            // SAFETY: pixels ox0..ox0 + n < ow, channels c0..c0 + 8 ≤ C.
            unsafe {
                if n == PX {
                    block::<PX>(&r, ptrs, dims, ox0, c0, ap);
                } else {
                    for o in ox0..ox0 + n {
                        block::<1>(&r, ptrs, dims, o, c0, ap);
                    }
                }
            }
        }
        ox0 += n;
    }
    full
}
