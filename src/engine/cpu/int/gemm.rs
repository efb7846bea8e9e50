//! Integer GEMM: `out[m, p] = Σ_k a[m, k] · b[k, p]` with `i16` operands and exact `i32`
//! accumulation.
//!
//! Layouts: `a` is row-major `M × Kp` (Kp even, zero-padded); `b` is pair-interleaved,
//! `b[(k/2)·P·2 + p·2 + (k mod 2)]`, so each step multiplies one pair of `b` values by one pair
//! of weights and adds both products — the i16×i16→i32 pair sum that SSE2/AVX2 `pmaddwd`
//! computes, which is what this loop auto-vectorises to. Blocking: 4 rows × 64 columns of
//! accumulators stay in L1 while the K pairs stream; rayon splits the rows.
//! Overflow: callers guarantee K · max|a| · max|b| < 2^31.

use rayon::prelude::*;

const MR: usize = 4;
const PT: usize = 64;

/// `out` (`M × P`, row-major) = `a · b` (layouts in the module docs).
pub fn gemm_i16(a: &[i16], m: usize, kp: usize, b: &[i16], p: usize, out: &mut [i32]) {
    debug_assert!(kp % 2 == 0 && a.len() >= m * kp && b.len() >= kp * p && out.len() >= m * p);
    if m == 0 || p == 0 {
        return;
    }
    out[..m * p]
        .par_chunks_mut(MR * p)
        .enumerate()
        .for_each(|(blk, o)| {
            let rows = o.len() / p;
            let a = &a[blk * MR * kp..(blk * MR + rows) * kp];
            block(a, rows, kp, b, p, o);
        });
}

fn block(a: &[i16], rows: usize, kp: usize, b: &[i16], p: usize, out: &mut [i32]) {
    let mut acc = [[0i32; PT]; MR];
    for p0 in (0..p).step_by(PT) {
        let pw = PT.min(p - p0);
        acc.iter_mut().for_each(|r| r.fill(0));
        for kk in 0..kp / 2 {
            let brow = &b[(kk * p + p0) * 2..(kk * p + p0 + pw) * 2];
            for (r, acc_r) in acc.iter_mut().enumerate().take(rows) {
                let w0 = a[r * kp + 2 * kk] as i32;
                let w1 = a[r * kp + 2 * kk + 1] as i32;
                if w0 == 0 && w1 == 0 {
                    continue;
                }
                for (o, bp) in acc_r[..pw].iter_mut().zip(brow.chunks_exact(2)) {
                    *o += bp[0] as i32 * w0 + bp[1] as i32 * w1;
                }
            }
        }
        for (r, acc_r) in acc.iter().enumerate().take(rows) {
            out[r * p + p0..r * p + p0 + pw].copy_from_slice(&acc_r[..pw]);
        }
    }
}

/// Pair-interleaves a row-major `K × P` matrix of `i16` into the layout of [`gemm_i16`]
/// (K padded to even with zeros). Returns the padded K.
pub fn interleave(src: &[i16], k: usize, p: usize, dst: &mut Vec<i16>) -> usize {
    let kp = k.next_multiple_of(2);
    dst.clear();
    dst.resize(kp * p, 0);
    for (kk, pair) in dst.chunks_mut(2 * p).enumerate() {
        for half in 0..2 {
            let kr = 2 * kk + half;
            if kr < k {
                let row = &src[kr * p..(kr + 1) * p];
                for (d, &s) in pair.iter_mut().skip(half).step_by(2).zip(row) {
                    *d = s;
                }
            }
        }
    }
    kp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_naive_product() {
        let (m, k, p) = (7, 13, 70);
        let a: Vec<i16> = (0..m * k).map(|i| ((i * 37 % 31) as i16) - 15).collect();
        let b: Vec<i16> = (0..k * p).map(|i| ((i * 53 % 511) as i16) - 255).collect();
        let mut bi = Vec::new();
        let kp = interleave(&b, k, p, &mut bi);
        let mut ap = vec![0i16; m * kp];
        for r in 0..m {
            ap[r * kp..r * kp + k].copy_from_slice(&a[r * k..(r + 1) * k]);
        }
        let mut out = vec![0; m * p];
        gemm_i16(&ap, m, kp, &bi, p, &mut out);
        for r in 0..m {
            for c in 0..p {
                let want: i32 = (0..k)
                    .map(|j| a[r * k + j] as i32 * b[j * p + c] as i32)
                    .sum();
                assert_eq!(out[r * p + c], want, "({r},{c})");
            }
        }
    }
}
