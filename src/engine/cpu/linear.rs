//! Fully connected layer: `y[n, o] = act(b[o] + Σᵢ x[n, i] · W[o, i])`, `x` flattened to
//! `[N, in]` (any trailing shape), weights `[out, in]`.
//!
//! Both operands are read along contiguous rows, so every output is a dot product: `LANES`
//! interleaved partial sums over `i` (lane `l` sums `i ≡ l mod LANES`), reduced in a fixed
//! order, then the tail. A classifier at batch 1 is a matrix-vector product bound by reading
//! `W` once; rayon splits the outputs, and up to `ROWS` inputs share each load of `W`. Each
//! output's arithmetic is the same whatever the batch and the split. The loop is compiled a
//! second time with AVX2+FMA on x86-64 and picked at run time (see [`Isa`]).

use rayon::prelude::*;

use super::elementwise::{alloc_out, apply_act};
use super::pointwise::Isa;
use crate::graph::Linear;
use crate::tensor::Tensor;

/// Interleaved partial sums per dot product (two AVX2 vectors: enough independent chains).
const LANES: usize = 16;
/// Input rows that share each load of `W`.
const ROWS: usize = 4;
/// Outputs per rayon task.
const OUT_CHUNK: usize = 32;

/// Fast linear layer with the semantics of [`super::reference::linear`].
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&[f32]>, l: &Linear) -> Tensor {
    linear_with(x, w, b, l, Isa::detect())
}

/// [`linear`] with a chosen kernel build (tests force each one).
///
/// # Panics
/// If `x`, `w` or `b` do not match `l`'s sizes.
pub fn linear_with(x: &Tensor, w: &Tensor, b: Option<&[f32]>, l: &Linear, isa: Isa) -> Tensor {
    let n = x.shape[0];
    let (fi, fo) = (l.in_features, l.out_features);
    assert_eq!(x.data.len(), n * fi, "linear: input size");
    assert_eq!(w.data.len(), fo * fi, "linear: weight size");
    assert!(b.is_none_or(|b| b.len() == fo), "linear: bias size");
    let mut out = alloc_out(&[n, fo]);
    if out.data.is_empty() {
        return out;
    }
    // Task t computes outputs t·OUT_CHUNK.. for every input row, into its own [n, chunk] block.
    let chunks = fo.div_ceil(OUT_CHUNK);
    let blocks: Vec<Vec<f32>> = (0..chunks)
        .into_par_iter()
        .map(|t| {
            let (o0, o1) = (t * OUT_CHUNK, fo.min((t + 1) * OUT_CHUNK));
            let mut blk = vec![0.0f32; n * (o1 - o0)];
            for r0 in (0..n).step_by(ROWS) {
                let r1 = n.min(r0 + ROWS);
                for o in o0..o1 {
                    let wr = &w.data[o * fi..(o + 1) * fi];
                    let mut d = [0.0f32; ROWS];
                    dots(isa, wr, &x.data[r0 * fi..r1 * fi], &mut d[..r1 - r0]);
                    for (r, v) in (r0..r1).zip(d) {
                        blk[r * (o1 - o0) + o - o0] = v + b.map_or(0.0, |b| b[o]);
                    }
                }
            }
            blk
        })
        .collect();
    for (t, blk) in blocks.iter().enumerate() {
        let (o0, o1) = (t * OUT_CHUNK, fo.min((t + 1) * OUT_CHUNK));
        for (row, src) in out.data.chunks_exact_mut(fo).zip(blk.chunks_exact(o1 - o0)) {
            row[o0..o1].copy_from_slice(src);
        }
    }
    for row in out.data.chunks_exact_mut(fo) {
        apply_act(row, l.act);
    }
    out
}

/// `d[r] = Σᵢ w[i] · xs[r·len + i]` for the `d.len() ≤ ROWS` rows of `xs` (`len = w.len()`).
fn dots(isa: Isa, w: &[f32], xs: &[f32], d: &mut [f32]) {
    debug_assert!(d.len() <= ROWS && xs.len() == d.len() * w.len());
    #[cfg(target_arch = "x86_64")]
    if isa.avx2() {
        // SAFETY: `Avx2Fma` is only chosen when the CPU has AVX2 and FMA (`Isa::detect`).
        unsafe { dots_avx2(w, xs, d) };
        return;
    }
    let _ = isa;
    dots_impl::<false>(w, xs, d);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dots_avx2(w: &[f32], xs: &[f32], d: &mut [f32]) {
    dots_impl::<true>(w, xs, d);
}

#[inline(always)]
fn dots_impl<const FMA: bool>(w: &[f32], xs: &[f32], d: &mut [f32]) {
    let len = w.len();
    let full = len / LANES * LANES;
    let mut acc = [[0.0f32; LANES]; ROWS];
    for i in (0..full).step_by(LANES) {
        let wv = &w[i..i + LANES];
        for (r, a) in acc.iter_mut().enumerate().take(d.len()) {
            let xv = &xs[r * len + i..r * len + i + LANES];
            for l in 0..LANES {
                a[l] = if FMA {
                    wv[l].mul_add(xv[l], a[l])
                } else {
                    a[l] + wv[l] * xv[l]
                };
            }
        }
    }
    for (r, (a, dr)) in acc.iter().zip(d.iter_mut()).enumerate() {
        // Pairwise reduction of the lanes, then the tail in order.
        let mut s = *a;
        let mut width = LANES / 2;
        while width > 0 {
            for l in 0..width {
                s[l] += s[l + width];
            }
            width /= 2;
        }
        let mut v = s[0];
        for i in full..len {
            v += w[i] * xs[r * len + i];
        }
        *dr = v;
    }
}
