//! Integer GEMM on `u8` activation rows and `i8` weights, exact `i32` results:
//! `out[r, c] = Σ_k (a[c, k] − z_w'[c]) · (x[r, k] − z_x)` over the real k < K.
//!
//! Layouts: the activation matrix is `rows × K4` bytes with row stride `lda` (K4 = K rounded
//! up to 4; bytes past K are never read as products because their weights are 0). Weights are
//! packed once ([`QWeights`]) into blocks of [`NR`] = 16 output channels, each block
//! `[K4/4][16][4]` `i8`: per k-quad, 16 channels × 4 consecutive k — one 512-bit register,
//! the `b` operand of AVX-512 VNNI `vpdpbusd` (u8 × i8, four products summed per `i32`
//! lane) with the row's 4 bytes broadcast as `a`. A channel whose centred weights
//! (q_s − z_s) fit `i8` stores them (z_w' = 0); a wider one (8-bit asymmetric) stores q_s and
//! z_w' = z_s. Zero points are exact corrections of the raw sum S = Σ a·x:
//! `out = S − z_x·Σ_k a[c, k] − z_w'[c]·(Σ_{k<K} x[r, k] − K·z_x)`. Every operation is
//! wrapping `i32`; the true result fits `i32` (`IntModel` checks), so it is exact.
//! Kernels, all on the same packing: VNNI (8 rows × 32 channels of `zmm` accumulators that
//! start at both corrections, so 8-bit asymmetric layers such as the stem stay on it); AVX2
//! (4 rows × 16 channels of `ymm` accumulators starting at the corrections; `vpmaddubsw`
//! pair sums added in `i16` over runs of [`run16`] quads, then `vpmaddwd` with ones, when
//! every stored weight is within ±64, chosen per layer at pack time; otherwise an exact tile
//! of 4 rows × 8 channels on rows and weights widened to `i16`); portable (scalar).

// The AVX-512 intrinsics are stable from Rust 1.89 (the toolchain here is newer than the
// crate's declared 1.85 MSRV; they are only reached after run-time detection).

use super::isa::Isa;

/// Output channels per packed block.
pub const NR: usize = 16;
/// Rows of a micro-tile.
const MR: usize = 8;
/// Widest micro-tile, in channels.
const TN: usize = 2 * NR;

/// Weights of one GEMM (one conv group) packed for the kernels.
#[derive(Clone, Debug, PartialEq)]
pub struct QWeights {
    pub cout: usize,
    /// Real reduction length.
    pub k: usize,
    /// K4 / 4.
    pub kq: usize,
    /// `ceil(cout / 16)` blocks of `kq · 64` bytes.
    pub packed: Vec<i8>,
    /// Σ_k a[c, k].
    pub rowsum: Vec<i32>,
    /// z_w' per channel.
    pub off: Vec<i32>,
    pub any_off: bool,
    /// k-quads whose `vpmaddubsw` pair sums the AVX2 tile may add in `i16` before widening
    /// (0: some stored weight exceeds ±64, the AVX2 tile takes the exact widening path).
    pub run16: usize,
}

impl QWeights {
    /// Packs `cout` channels of length `k`: `centred(c, dst)` writes the centred weights
    /// (q_s − z_s) of channel `c` into `dst[..k]` in GEMM order; `zero[c]` is z_s.
    pub fn new(
        cout: usize,
        k: usize,
        mut centred: impl FnMut(usize, &mut [i32]),
        zero: &[i32],
    ) -> Self {
        let kq = k.div_ceil(4);
        let blocks = cout.div_ceil(NR);
        let mut packed = vec![0i8; blocks * kq * 64];
        let (mut rowsum, mut off) = (vec![0i32; cout], vec![0i32; cout]);
        let mut row = vec![0i32; k];
        for c in 0..cout {
            centred(c, &mut row);
            let fits = row.iter().all(|&v| (-128..=127).contains(&v));
            if !fits {
                // q_s = (q_s − z_s) + z_s lies in [−128, 127] for codes of at most 8 bits.
                off[c] = zero[c];
                row.iter_mut().for_each(|v| *v += zero[c]);
            }
            let (b, j) = (c / NR, c % NR);
            for (kk, &v) in row.iter().enumerate() {
                packed[(b * kq + kk / 4) * 64 + j * 4 + kk % 4] = v as i8;
            }
            rowsum[c] = row.iter().sum();
        }
        let any_off = off.iter().any(|&o| o != 0);
        let wmax = packed.iter().map(|&v| (v as i32).abs()).max().unwrap_or(0);
        QWeights {
            run16: run16(wmax),
            cout,
            k,
            kq,
            packed,
            rowsum,
            off,
            any_off,
        }
    }

    /// Bytes of an activation row the kernels read (K4).
    pub fn k4(&self) -> usize {
        self.kq * 4
    }
}

/// Quad runs the AVX2 tile may sum in `i16` for stored weights of magnitude ≤ `wmax`.
/// `vpmaddubsw` forms x₀·w₀ + x₁·w₁ (x ≤ 255) saturating to `i16`: exact while
/// 2·255·|w| ≤ 32767, i.e. |w| ≤ 64 (2·255·64 = 32640). `n` such pair sums added with
/// wrapping `vpaddw` stay exact while n·2·255·wmax ≤ 32767 (4-bit weights, |w| ≤ 8: n = 8).
/// Wider weights (8-bit kept layers, raw asymmetric codes up to 128) return 0: exact path.
pub fn run16(wmax: i32) -> usize {
    const MAX_RUN: usize = 16;
    if wmax > 64 {
        return 0;
    }
    (32767 / (510 * wmax.max(1)) as usize).clamp(1, MAX_RUN)
}

/// `out[r·ldc + c]` for rows `0..rows`, channels `0..cout` (see the module docs).
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    isa: Isa,
    x: &[u8],
    lda: usize,
    rows: usize,
    w: &QWeights,
    zx: i32,
    out: &mut [i32],
    ldc: usize,
) {
    if rows == 0 || w.cout == 0 {
        return;
    }
    let k4 = w.k4();
    assert!(lda >= k4 && x.len() >= (rows - 1) * lda + k4);
    assert!(ldc >= w.cout && out.len() >= (rows - 1) * ldc + w.cout);
    let blocks = w.cout.div_ceil(NR);
    let bstride = w.kq * 64;
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Vnni {
        // Accumulators start at the corrections −z_x·Σa − z_w'·(Σx − K·z_x) and go straight
        // to `out`.
        let mut corr = vec![0i32; blocks * NR];
        let mut off = vec![0i32; blocks * NR];
        for (d, &r) in corr.iter_mut().zip(&w.rowsum) {
            *d = zx.wrapping_mul(r).wrapping_neg();
        }
        off[..w.cout].copy_from_slice(&w.off);
        let kz = (w.k as i32).wrapping_mul(zx);
        let mut cs = [0i32; MR];
        for r0 in (0..rows).step_by(MR) {
            let mr = MR.min(rows - r0);
            let rp: [*const u8; MR] =
                std::array::from_fn(|i| x[(r0 + i.min(mr - 1)) * lda..][..k4].as_ptr());
            if w.any_off {
                for (i, d) in cs.iter_mut().enumerate() {
                    let r = &x[(r0 + i.min(mr - 1)) * lda..][..w.k];
                    *d = r
                        .iter()
                        .fold(0i32, |a, &v| a.wrapping_add(v as i32))
                        .wrapping_sub(kz);
                }
            }
            let mut b = 0;
            while b < blocks {
                let nb = if b + 1 < blocks { 2 } else { 1 };
                let c0 = b * NR;
                let cn = (nb * NR).min(w.cout - c0);
                let o = out[r0 * ldc + c0..].as_mut_ptr();
                let (wp, cp) = (w.packed[b * bstride..].as_ptr(), corr[c0..].as_ptr());
                let op = w.any_off.then(|| (off[c0..].as_ptr(), &cs));
                // SAFETY: VNNI was detected; rows hold k4 bytes, blocks b..b+nb lie inside
                // `packed`, `corr` and `off`, and rows r0..r0+mr, columns c0..c0+cn of `out` lie
                // inside it (asserted above: out.len() ≥ (rows−1)·ldc + cout).
                unsafe {
                    if nb == 2 {
                        tile_vnni_direct::<2>(&rp, wp, w.kq, (cp, op), o, ldc, mr, cn)
                    } else {
                        tile_vnni_direct::<1>(&rp, wp, w.kq, (cp, op), o, ldc, mr, cn)
                    }
                }
                b += nb;
            }
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx2 {
        // SAFETY: AVX2 was detected; the asserts above bound rows, weights and `out`.
        return unsafe { gemm_avx2(x, lda, rows, w, zx, out, ldc) };
    }
    let mut tile = [[0i32; TN]; MR];
    let mut colsum = [0i32; MR];
    let kz = (w.k as i32).wrapping_mul(zx);
    for r0 in (0..rows).step_by(MR) {
        let mr = MR.min(rows - r0);
        // Rows past the end repeat the last row (computed, never stored).
        let rp: [&[u8]; MR] = std::array::from_fn(|i| &x[(r0 + i.min(mr - 1)) * lda..][..k4]);
        if w.any_off {
            for (s, r) in colsum.iter_mut().zip(&rp) {
                *s = r[..w.k]
                    .iter()
                    .fold(0i32, |a, &v| a.wrapping_add(v as i32))
                    .wrapping_sub(kz);
            }
        }
        let mut b = 0;
        while b < blocks {
            let nb = if b + 1 < blocks { 2 } else { 1 };
            let wb = &w.packed[b * bstride..(b + nb) * bstride];
            tile_portable(&rp, wb, w.kq, nb, &mut tile);
            let c0 = b * NR;
            let cn = (nb * NR).min(w.cout - c0);
            for (i, t) in tile.iter().enumerate().take(mr) {
                let o = &mut out[(r0 + i) * ldc + c0..][..cn];
                let (rs, of) = (&w.rowsum[c0..c0 + cn], &w.off[c0..c0 + cn]);
                let cs = colsum[i];
                for (((d, &s), &rsum), &z) in o.iter_mut().zip(&t[..cn]).zip(rs).zip(of) {
                    *d = s
                        .wrapping_sub(zx.wrapping_mul(rsum))
                        .wrapping_sub(z.wrapping_mul(cs));
                }
            }
            b += nb;
        }
    }
}

/// Raw sums of one tile, portably: `tile[i][j] = Σ_k x_i[k] · a[j, k]` for `nb` blocks.
fn tile_portable(rp: &[&[u8]; MR], wb: &[i8], kq: usize, nb: usize, tile: &mut [[i32; TN]; MR]) {
    for (t, r) in tile.iter_mut().zip(rp) {
        for b in 0..nb {
            for j in 0..NR {
                let mut s = 0i32;
                for q in 0..kq {
                    let wq = &wb[(b * kq + q) * 64 + j * 4..][..4];
                    for (&xv, &wv) in r[q * 4..q * 4 + 4].iter().zip(wq) {
                        s = s.wrapping_add(xv as i32 * wv as i32);
                    }
                }
                t[b * NR + j] = s;
            }
        }
    }
}

/// The VNNI tile with accumulators starting at `corr` (minus `off[c]·cs[i]` for row i when
/// given) and masked stores of `mr` rows and `cn` columns to `out` (row stride `ldc`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512vnni,avx512vl,avx512bw,avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_vnni_direct<const NB: usize>(
    rp: &[*const u8; MR],
    w: *const i8,
    kq: usize,
    (corr, off): (*const i32, Option<(*const i32, &[i32; MR])>),
    out: *mut i32,
    ldc: usize,
    mr: usize,
    cn: usize,
) {
    use std::arch::x86_64::*;
    let mut init = [_mm512_setzero_si512(); NB];
    for (b, v) in init.iter_mut().enumerate() {
        // SAFETY: corr holds NB·16 values from here (caller).
        *v = unsafe { _mm512_loadu_si512(corr.add(b * NR) as *const _) };
    }
    let mut acc = [init; MR];
    if let Some((off, cs)) = off {
        for b in 0..NB {
            // SAFETY: off holds NB·16 values from here (caller).
            let o = unsafe { _mm512_loadu_si512(off.add(b * NR) as *const _) };
            for (a, &c) in acc.iter_mut().zip(cs) {
                a[b] = _mm512_sub_epi32(a[b], _mm512_mullo_epi32(o, _mm512_set1_epi32(c)));
            }
        }
    }
    for q in 0..kq {
        let mut wv = [_mm512_setzero_si512(); NB];
        for (b, v) in wv.iter_mut().enumerate() {
            // SAFETY: block b, quad q lies inside the packed weights (caller).
            *v = unsafe { _mm512_loadu_si512(w.add((b * kq + q) * 64) as *const _) };
        }
        for (a, &r) in acc.iter_mut().zip(rp) {
            // SAFETY: each row holds kq·4 bytes (caller).
            let xv = _mm512_set1_epi32(unsafe { (r.add(4 * q) as *const i32).read_unaligned() });
            for (ab, &wb) in a.iter_mut().zip(&wv) {
                *ab = _mm512_dpbusd_epi32(*ab, xv, wb);
            }
        }
    }
    for (i, a) in acc.iter().enumerate().take(mr) {
        for (b, &v) in a.iter().enumerate() {
            let left = cn.saturating_sub(b * NR).min(NR);
            let k: __mmask16 = if left == NR {
                0xffff
            } else {
                (1u16 << left) - 1
            };
            // SAFETY: only the `left` valid columns of row i are written (caller's bounds).
            unsafe { _mm512_mask_storeu_epi32(out.add(i * ldc + b * NR) as *mut _, k, v) };
        }
    }
}

/// Rows of an AVX2 tile.
const MR2: usize = 4;

/// AVX2 GEMM for weights within ±64 (`w.run16 > 0`): tiles of 4 rows × one packed block
/// (16 channels: two `ymm` of 8 channels × 4 k). Per k-quad each row's 4 codes are
/// broadcast and `vpmaddubsw` (u8 × i8) gives per channel two pair sums in `i16`; runs of
/// `w.run16` quads add in `i16` (exact, see [`run16`]), then `vpmaddwd` with ones widens
/// them into `i32` accumulators that start at the zero-point corrections, as on VNNI.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_avx2(
    x: &[u8],
    lda: usize,
    rows: usize,
    w: &QWeights,
    zx: i32,
    out: &mut [i32],
    ldc: usize,
) {
    let k4 = w.k4();
    let blocks = w.cout.div_ceil(NR);
    let bstride = w.kq * 64;
    let mut corr = vec![0i32; blocks * NR];
    let mut off = vec![0i32; blocks * NR];
    for (d, &r) in corr.iter_mut().zip(&w.rowsum) {
        *d = zx.wrapping_mul(r).wrapping_neg();
    }
    off[..w.cout].copy_from_slice(&w.off);
    let kz = (w.k as i32).wrapping_mul(zx);
    let mut cs = [0i32; MR2];
    // The tile's rows widened to i16 (wide weights only).
    let mut xw = vec![0i16; if w.run16 == 0 { MR2 * k4 } else { 0 }];
    for r0 in (0..rows).step_by(MR2) {
        let mr = MR2.min(rows - r0);
        // Rows past the end repeat the last row (computed, never stored).
        let rp: [*const u8; MR2] =
            std::array::from_fn(|i| x[(r0 + i.min(mr - 1)) * lda..][..k4].as_ptr());
        if w.any_off {
            for (i, d) in cs.iter_mut().enumerate() {
                let r = &x[(r0 + i.min(mr - 1)) * lda..][..w.k];
                *d = r
                    .iter()
                    .fold(0i32, |a, &v| a.wrapping_add(v as i32))
                    .wrapping_sub(kz);
            }
        }
        if w.run16 == 0 {
            for (d, &r) in xw.chunks_exact_mut(k4).zip(&rp) {
                // SAFETY: each row holds k4 bytes.
                let r = unsafe { std::slice::from_raw_parts(r, k4) };
                d.iter_mut().zip(r).for_each(|(d, &v)| *d = v as i16);
            }
            for h in 0..blocks * 2 {
                let c0 = h * 8;
                if c0 >= w.cout {
                    break;
                }
                let cn = 8.min(w.cout - c0);
                let o = out[r0 * ldc + c0..].as_mut_ptr();
                let wp = w.packed[(h / 2) * bstride + (h % 2) * 32..].as_ptr();
                let op = w.any_off.then(|| (off[c0..].as_ptr(), &cs));
                // SAFETY: `xw` holds 4 rows of k4 values, half-block h lies inside `packed`,
                // `corr` and `off` hold 8 values from c0, and rows r0..r0+mr, columns
                // c0..c0+cn of `out` lie inside it (asserted by `gemm`).
                unsafe { tile_avx2_wide(&xw, wp, w.kq, (corr[c0..].as_ptr(), op), o, ldc, mr, cn) };
            }
            continue;
        }
        for b in 0..blocks {
            let c0 = b * NR;
            let cn = NR.min(w.cout - c0);
            let o = out[r0 * ldc + c0..].as_mut_ptr();
            let (wp, cp) = (w.packed[b * bstride..].as_ptr(), corr[c0..].as_ptr());
            let op = w.any_off.then(|| (off[c0..].as_ptr(), &cs));
            // SAFETY: rows hold k4 bytes, block b lies inside `packed`, `corr` and `off`
            // hold 16 values from c0, and rows r0..r0+mr, columns c0..c0+cn of `out` lie
            // inside it (asserted by `gemm`).
            unsafe { tile_avx2_direct(&rp, wp, (w.kq, w.run16), (cp, op), o, ldc, mr, cn) };
        }
    }
}

/// One AVX2 tile (see [`gemm_avx2`]): masked to `mr` rows and `cn` columns of `out`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_avx2_direct(
    rp: &[*const u8; MR2],
    w: *const i8,
    (kq, run): (usize, usize),
    (corr, off): (*const i32, Option<(*const i32, &[i32; MR2])>),
    out: *mut i32,
    ldc: usize,
    mr: usize,
    cn: usize,
) {
    use std::arch::x86_64::*;
    // SAFETY (whole function): bounds as stated by the caller.
    let init = unsafe {
        [
            _mm256_loadu_si256(corr as *const _),
            _mm256_loadu_si256(corr.add(8) as *const _),
        ]
    };
    let mut acc = [init; MR2];
    if let Some((off, cs)) = off {
        for h in 0..2 {
            let o = unsafe { _mm256_loadu_si256(off.add(8 * h) as *const _) };
            for (a, &c) in acc.iter_mut().zip(cs) {
                a[h] = _mm256_sub_epi32(a[h], _mm256_mullo_epi32(o, _mm256_set1_epi32(c)));
            }
        }
    }
    let ones = _mm256_set1_epi16(1);
    let mut q0 = 0;
    while q0 < kq {
        let q1 = (q0 + run).min(kq);
        let mut t = [[_mm256_setzero_si256(); 2]; MR2];
        for q in q0..q1 {
            let wp = unsafe { w.add(q * 64) };
            let w0 = unsafe { _mm256_loadu_si256(wp as *const _) };
            let w1 = unsafe { _mm256_loadu_si256(wp.add(32) as *const _) };
            for (ti, &r) in t.iter_mut().zip(rp) {
                let xv =
                    _mm256_set1_epi32(unsafe { (r.add(4 * q) as *const i32).read_unaligned() });
                ti[0] = _mm256_add_epi16(ti[0], _mm256_maddubs_epi16(xv, w0));
                ti[1] = _mm256_add_epi16(ti[1], _mm256_maddubs_epi16(xv, w1));
            }
        }
        for (a, ti) in acc.iter_mut().zip(&t) {
            for h in 0..2 {
                a[h] = _mm256_add_epi32(a[h], _mm256_madd_epi16(ti[h], ones));
            }
        }
        q0 = q1;
    }
    for (i, a) in acc.iter().enumerate().take(mr) {
        let o = unsafe { out.add(i * ldc) };
        if cn == NR {
            unsafe {
                _mm256_storeu_si256(o as *mut _, a[0]);
                _mm256_storeu_si256(o.add(8) as *mut _, a[1]);
            }
        } else {
            let mut s = [0i32; NR];
            unsafe {
                _mm256_storeu_si256(s.as_mut_ptr() as *mut _, a[0]);
                _mm256_storeu_si256(s.as_mut_ptr().add(8) as *mut _, a[1]);
                std::ptr::copy_nonoverlapping(s.as_ptr(), o, cn);
            }
        }
    }
}

/// AVX2 tile for any `i8` weights (`w.run16 == 0`), 4 rows × 8 channels (half a packed
/// block): per k-quad the 8 channels' weights widen to `i16` (`[c][k0..k3]`, two `ymm`) and
/// `vpmaddwd` with the row's 4 codes (widened, repeated) gives per channel the pair sums of
/// k0,k1 and k2,k3 (each ≤ 2·255·128 in magnitude: exact), added by one `vphaddd` at the end,
/// then the corrections. `xw` holds the 4 rows widened, `k4` values each.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_avx2_wide(
    xw: &[i16],
    w: *const i8,
    kq: usize,
    (corr, off): (*const i32, Option<(*const i32, &[i32; MR2])>),
    out: *mut i32,
    ldc: usize,
    mr: usize,
    cn: usize,
) {
    use std::arch::x86_64::*;
    let k4 = kq * 4;
    assert!(xw.len() >= MR2 * k4);
    let mut acc = [[_mm256_setzero_si256(); 2]; MR2];
    for q in 0..kq {
        // SAFETY (whole function): 32 bytes at quad q of the half-block, 8 values of `corr`
        // and `off`, and `cn` columns of `mr` rows of `out` lie inside them (caller).
        let p = unsafe { w.add(q * 64) };
        let w0 = _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(p as *const _) });
        let w1 = _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(p.add(16) as *const _) });
        for (i, a) in acc.iter_mut().enumerate() {
            // SAFETY: 4 values at i·k4 + 4q lie inside `xw` (asserted).
            let x4 = unsafe { (xw.as_ptr().add(i * k4 + 4 * q) as *const i64).read_unaligned() };
            let xv = _mm256_set1_epi64x(x4);
            a[0] = _mm256_add_epi32(a[0], _mm256_madd_epi16(w0, xv));
            a[1] = _mm256_add_epi32(a[1], _mm256_madd_epi16(w1, xv));
        }
    }
    let c = unsafe { _mm256_loadu_si256(corr as *const _) };
    for (i, a) in acc.iter().enumerate().take(mr) {
        // hadd: [c0 c1 c4 c5 | c2 c3 c6 c7]; the 64-bit permute restores channel order.
        let s = _mm256_permute4x64_epi64::<0xD8>(_mm256_hadd_epi32(a[0], a[1]));
        let mut v = _mm256_add_epi32(s, c);
        if let Some((off, cs)) = off {
            let o = unsafe { _mm256_loadu_si256(off as *const _) };
            v = _mm256_sub_epi32(v, _mm256_mullo_epi32(o, _mm256_set1_epi32(cs[i])));
        }
        let o = unsafe { out.add(i * ldc) };
        if cn == 8 {
            unsafe { _mm256_storeu_si256(o as *mut _, v) };
        } else {
            let mut t = [0i32; 8];
            unsafe {
                _mm256_storeu_si256(t.as_mut_ptr() as *mut _, v);
                std::ptr::copy_nonoverlapping(t.as_ptr(), o, cn);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_isas_match_naive_with_both_zero_point_forms() {
        let mut seed = 17u64;
        let mut next = |m: u32| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) as u32 % m) as i32
        };
        for (rows, k, cout) in [(1, 1, 1), (9, 7, 33), (17, 40, 16), (8, 13, 50)] {
            let zero: Vec<i32> = (0..cout).map(|_| next(256) - 128).collect();
            // Channel c: centred values, wide (up to ±255) on odd channels.
            let cen: Vec<i32> = (0..cout * k)
                .map(|i| {
                    let c = i / k;
                    let q = next(256) - 128; // q_s in i8
                    if c % 2 == 1 {
                        q - zero[c]
                    } else {
                        next(31) - 15
                    }
                })
                .collect();
            let x: Vec<u8> = (0..rows * (k + 5)).map(|_| next(256) as u8).collect();
            let zx = next(256);
            let w = QWeights::new(cout, k, |c, d| d.copy_from_slice(&cen[c * k..][..k]), &zero);
            for isa in Isa::available() {
                let mut out = vec![0i32; rows * (cout + 3)];
                gemm(isa, &x, k + 5, rows, &w, zx, &mut out, cout + 3);
                for r in 0..rows {
                    for c in 0..cout {
                        let want: i64 = (0..k)
                            .map(|j| {
                                cen[c * k + j] as i64 * (x[r * (k + 5) + j] as i64 - zx as i64)
                            })
                            .sum();
                        assert_eq!(out[r * (cout + 3) + c] as i64, want, "{isa:?} {r} {c}");
                    }
                }
            }
        }
    }

    #[test]
    fn run16_keeps_i16_sums_exact() {
        assert_eq!(
            (run16(0), run16(8), run16(15), run16(64), run16(65)),
            (16, 8, 4, 1, 0)
        );
        for wmax in 1..=64 {
            let n = run16(wmax);
            assert!(n as i32 * 2 * 255 * wmax <= i16::MAX as i32, "{wmax}");
            assert!(
                n == 16 || (n as i32 + 1) * 2 * 255 * wmax > i16::MAX as i32,
                "{wmax}"
            );
        }
    }

    /// Every ISA against an i64 oracle at the AVX2 tiles' edges: K = 1..130 (odd, not a
    /// multiple of 4 or 32), rows and channels around the 4-row / 8- and 16-channel tiles,
    /// weights at ±8 (i16 runs of 8), at the ±64 bound (runs of 1), at ±65 and raw 8-bit
    /// codes with a weight zero point (the exact widening tile), activations 0 and 255.
    #[test]
    fn avx2_tiles_match_naive_at_the_edges() {
        let mut seed = 99u64;
        let mut next = |m: u32| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) as u32 % m) as i32
        };
        // (weights of channel c at k, zero point, expected run16)
        type Gen = fn(usize, usize, i32) -> (i32, i32);
        let cases: [(Gen, usize); 6] = [
            (|c, k, _| (if (c + k) % 2 == 0 { 8 } else { -8 }, 0), 8),
            (
                |c, k, r| {
                    (
                        if (c * 7 + k + r as usize).is_multiple_of(3) {
                            64
                        } else {
                            -64
                        },
                        0,
                    )
                },
                1,
            ),
            (|_, k, r| (if k == 0 { 64 } else { r % 129 - 64 }, 0), 1),
            (|c, k, _| (if (c + k) % 2 == 0 { 65 } else { -65 }, 0), 0),
            // Raw 8-bit codes: centred q − z does not fit i8, so z becomes the offset.
            (
                |_, k, r| ((if k == 0 { -128 } else { r % 256 - 128 }) - 120, 120),
                0,
            ),
            // Small raw codes with an offset: the i16-run tile with a weight zero point.
            (
                |_, k, r| ((if k == 0 { -20 } else { r % 41 - 20 }) - 120, 120),
                3,
            ),
        ];
        for (gen, want_run) in cases {
            for (rows, k, cout) in [
                (1, 1, 1),
                (4, 3, 8),
                (5, 31, 17),
                (7, 33, 16),
                (9, 64, 33),
                (3, 65, 15),
                (8, 130, 9),
            ] {
                let mut zero = vec![0i32; cout];
                let mut cen = vec![0i32; cout * k];
                for c in 0..cout {
                    for j in 0..k {
                        let (v, z) = gen(c, j, next(1 << 16));
                        cen[c * k + j] = v;
                        zero[c] = z;
                    }
                }
                let lda = k.div_ceil(4) * 4 + 4;
                for fill in [Some(0u8), Some(255), None] {
                    let x: Vec<u8> = (0..rows * lda)
                        .map(|_| fill.unwrap_or_else(|| next(256) as u8))
                        .collect();
                    let zx = next(256);
                    let w =
                        QWeights::new(cout, k, |c, d| d.copy_from_slice(&cen[c * k..][..k]), &zero);
                    assert_eq!((w.run16, w.any_off), (want_run, zero[0] != 0));
                    for isa in Isa::available() {
                        let ldc = cout + 2;
                        let mut out = vec![7i32; rows * ldc];
                        gemm(isa, &x, lda, rows, &w, zx, &mut out, ldc);
                        for r in 0..rows {
                            for c in 0..cout {
                                let want: i64 = (0..k)
                                    .map(|j| {
                                        cen[c * k + j] as i64 * (x[r * lda + j] as i64 - zx as i64)
                                    })
                                    .sum();
                                assert_eq!(out[r * ldc + c] as i64, want, "{isa:?} {r} {c} k {k}");
                            }
                            assert_eq!(out[r * ldc + cout..][..2], [7, 7], "{isa:?} row {r} tail");
                        }
                    }
                }
            }
        }
    }
}
