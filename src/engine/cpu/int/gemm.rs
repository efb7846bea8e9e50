//! Integer GEMM: `out[m, p] = Σ_k a[m, k] · b[k, p]` with `i16` operands and exact `i32`
//! accumulation.
//!
//! Layouts: `a` is row-major `M × Kp` (Kp even, zero-padded), so each pair of consecutive
//! `i16` along k reads as one `i32`. `b` is packed by [`pack_b`] into panels of [`NR`]
//! columns, each panel `[k/2][NR][2]`: per k-pair, NR pairs of `b` values. One step multiplies
//! NR pairs of `b` by one broadcast pair of weights and adds both products per column — the
//! i16×i16→i32 pair sum of AVX2 `vpmaddwd` (`_mm256_madd_epi16`), used when the CPU has AVX2
//! (runtime check); otherwise a portable loop computes the same sums. Micro-tile: 4 rows × 16
//! columns of `i32` accumulators in registers over the whole K; rayon splits the rows.
//! Overflow: callers guarantee K · max|a| · max|b| < 2^31 (then every partial sum fits).

use rayon::prelude::*;

/// Rows of the micro-tile.
const MR: usize = 4;
/// Columns of a `b` panel and of the micro-tile.
pub const NR: usize = 16;

/// Packs a row-major `K × P` matrix into `NR`-column panels (K padded to even, P to a
/// multiple of NR, with zeros). Returns the padded K.
pub fn pack_b(src: &[i16], k: usize, p: usize, dst: &mut Vec<i16>) -> usize {
    pack_b_with(k, p, dst, |kr, p0, row| {
        row.copy_from_slice(&src[kr * p + p0..][..row.len()])
    })
}

/// Packs the `K × P` matrix whose row `kr`, columns `p0..p0 + row.len()`, `fill(kr, p0, row)`
/// writes (so callers can centre codes on the fly). Returns the padded K.
pub fn pack_b_with(
    k: usize,
    p: usize,
    dst: &mut Vec<i16>,
    fill: impl Fn(usize, usize, &mut [i16]) + Sync,
) -> usize {
    let kp = k.next_multiple_of(2);
    let panels = p.div_ceil(NR);
    dst.clear();
    dst.resize(panels * kp * NR, 0);
    dst.par_chunks_mut(kp * NR)
        .enumerate()
        .for_each(|(jb, panel)| {
            let p0 = jb * NR;
            let pw = NR.min(p - p0);
            let mut row = [0i16; NR];
            for kr in 0..k {
                fill(kr, p0, &mut row[..pw]);
                let base = (kr / 2) * 2 * NR + kr % 2;
                for (j, &v) in row[..pw].iter().enumerate() {
                    panel[base + 2 * j] = v;
                }
            }
        });
    kp
}

/// `out` (`M × P`, row-major) = `a · b` (`b` packed by [`pack_b`] for this P).
pub fn gemm_i16(a: &[i16], m: usize, kp: usize, b: &[i16], p: usize, out: &mut [i32]) {
    assert!(kp % 2 == 0 && a.len() >= m * kp && b.len() >= kp * p.div_ceil(NR) * NR);
    assert!(out.len() >= m * p);
    if m == 0 || p == 0 {
        return;
    }
    out[..m * p]
        .par_chunks_mut(MR * p)
        .enumerate()
        .for_each(|(blk, o)| {
            let rows = o.len() / p;
            let a = &a[blk * MR * kp..(blk * MR + rows) * kp];
            // A last block of fewer rows runs on zero-padded rows (a fixed-size micro-tile).
            let padded;
            let a = if rows < MR {
                let mut v = vec![0i16; MR * kp];
                v[..a.len()].copy_from_slice(a);
                padded = v;
                &padded[..]
            } else {
                a
            };
            let mut tile = [[0i32; NR]; MR];
            for (jb, panel) in b.chunks(kp * NR).take(p.div_ceil(NR)).enumerate() {
                micro(a, kp, panel, &mut tile);
                let p0 = jb * NR;
                let pw = NR.min(p - p0);
                for (r, t) in tile.iter().enumerate().take(rows) {
                    o[r * p + p0..r * p + p0 + pw].copy_from_slice(&t[..pw]);
                }
            }
        });
}

/// One micro-tile over the whole K: `tile[r][j] = Σ_k a[r, k] · panel[k, j]`.
fn micro(a: &[i16], kp: usize, panel: &[i16], tile: &mut [[i32; NR]; MR]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is available (checked above); slice bounds are checked inside.
            unsafe { micro_avx2(a, kp, panel, tile) };
            return;
        }
    }
    micro_portable(a, MR, kp, panel, tile);
}

fn micro_portable(a: &[i16], rows: usize, kp: usize, panel: &[i16], tile: &mut [[i32; NR]; MR]) {
    for (r, t) in tile.iter_mut().enumerate() {
        t.fill(0);
        if r >= rows {
            continue;
        }
        let ar = &a[r * kp..(r + 1) * kp];
        for (w, bk) in ar.chunks_exact(2).zip(panel.chunks_exact(2 * NR)) {
            let (w0, w1) = (w[0] as i32, w[1] as i32);
            for (acc, bp) in t.iter_mut().zip(bk.chunks_exact(2)) {
                *acc += bp[0] as i32 * w0 + bp[1] as i32 * w1;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn micro_avx2(a: &[i16], kp: usize, panel: &[i16], tile: &mut [[i32; NR]; MR]) {
    use std::arch::x86_64::*;
    assert!(panel.len() >= kp * NR && a.len() >= MR * kp);
    let mut acc = [_mm256_setzero_si256(); 2 * MR];
    let bp = panel.as_ptr();
    for kk in 0..kp / 2 {
        // SAFETY: kk < kp/2, so the 2·NR values at (kk·2·NR) lie inside the panel.
        let b0 = _mm256_loadu_si256(bp.add(kk * 2 * NR) as *const __m256i);
        let b1 = _mm256_loadu_si256(bp.add(kk * 2 * NR + NR) as *const __m256i);
        for r in 0..MR {
            // The pair (a[r, 2kk], a[r, 2kk+1]) read as one i32, broadcast.
            let w = (a.as_ptr().add(r * kp + 2 * kk) as *const i32).read_unaligned();
            let wv = _mm256_set1_epi32(w);
            acc[2 * r] = _mm256_add_epi32(acc[2 * r], _mm256_madd_epi16(b0, wv));
            acc[2 * r + 1] = _mm256_add_epi32(acc[2 * r + 1], _mm256_madd_epi16(b1, wv));
        }
    }
    for (r, t) in tile.iter_mut().enumerate() {
        _mm256_storeu_si256(t.as_mut_ptr() as *mut __m256i, acc[2 * r]);
        _mm256_storeu_si256(t.as_mut_ptr().add(8) as *mut __m256i, acc[2 * r + 1]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_naive_product_both_paths() {
        for (m, k, p) in [(7, 13, 70), (4, 2, 16), (9, 40, 5)] {
            let a: Vec<i16> = (0..m * k).map(|i| ((i * 37 % 511) as i16) - 255).collect();
            let b: Vec<i16> = (0..k * p).map(|i| ((i * 53 % 511) as i16) - 255).collect();
            let mut bp = Vec::new();
            let kp = pack_b(&b, k, p, &mut bp);
            let mut ap = vec![0i16; m * kp];
            for r in 0..m {
                ap[r * kp..r * kp + k].copy_from_slice(&a[r * k..(r + 1) * k]);
            }
            let mut out = vec![0; m * p];
            gemm_i16(&ap, m, kp, &bp, p, &mut out);
            for r in 0..m {
                for c in 0..p {
                    let want: i32 = (0..k)
                        .map(|j| a[r * k + j] as i32 * b[j * p + c] as i32)
                        .sum();
                    assert_eq!(out[r * p + c], want, "({r},{c})");
                }
            }
            // The portable micro-kernel agrees with whichever path ran.
            let rows = m.min(MR);
            let mut t = [[0i32; NR]; MR];
            micro_portable(&ap, rows, kp, &bp[..kp * NR], &mut t);
            for (r, tr) in t.iter().enumerate().take(rows) {
                for (c, &v) in tr.iter().enumerate().take(p.min(NR)) {
                    assert_eq!(v, out[r * p + c]);
                }
            }
        }
    }
}
