//! 2-D convolution (NCHW, weights `[out, in/groups, kh, kw]`, groups, stride, dilation,
//! per-side padding `[top, left, bottom, right]`, fused activation):
//!
//! `y[n,o,y,x] = act(b[o] + Σ_{i,ky,kx} w[o,i,ky,kx] · Xpad[n, g·cig + i, y·sy + ky·dy, x·sx + kx·dx])`
//!
//! Dispatch: convolutions with one input channel per group (depthwise, with any channel
//! multiplier) run the direct kernel in [`super::depthwise`]; everything else is
//! `Y_g[cog, cols] = W_g[cog, cig·kh·kw] · B_g[cig·kh·kw, cols]` per group with
//! `matrixmultiply::sgemm`, where `B` comes from [`super::im2col`] or, for 1×1 stride-1
//! unpadded convolutions on large maps, is the input itself. Small maps batch several images
//! into one GEMM (`cols = nb·oh·ow ≥ TARGET_COLS`) so the weights are packed once per chunk
//! instead of once per image.

use rayon::prelude::*;

use super::depthwise;
use super::elementwise::{alloc_out, bias_act, copy_bias_act};
use super::gemm::{sgemm, MatRef};
use super::im2col::{im2col, is_pointwise};
use crate::graph::Conv2d;
use crate::tensor::Tensor;

/// Minimum GEMM width (columns) before images are batched together. matrixmultiply packs
/// `A` once per 1024-column block of `B`, so narrower products re-pack the weights per image.
const TARGET_COLS: usize = 1024;

/// Fast convolution with the semantics of [`super::reference::conv2d`].
///
/// # Panics
/// If the window does not fit the padded input (shape inference rejects such graphs).
pub fn conv2d(x: &Tensor, w: &Tensor, b: Option<&[f32]>, c: &Conv2d) -> Tensor {
    let (n, ci, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let Some((oh, ow)) = c.out_hw(h, wd) else {
        panic!("conv2d: window {:?} does not fit a {h}×{wd} input", c.kernel);
    };
    debug_assert_eq!(ci, c.in_channels);
    debug_assert_eq!(w.shape, c.weight_shape());
    debug_assert!(b.is_none_or(|b| b.len() == c.out_channels));
    if c.groups > 1 && ci == c.groups {
        return depthwise::conv2d(x, w, b, c, (oh, ow));
    }
    let co = c.out_channels;
    let mut out = alloc_out(&[n, co, oh, ow]);
    let ohw = oh * ow;
    if n == 0 || ohw == 0 || co == 0 {
        return out;
    }
    let groups = c.groups;
    let (cig, cog) = (ci / groups, co / groups);
    let klen = cig * c.kernel[0] * c.kernel[1];
    let pointwise = is_pointwise(c);
    let nb = TARGET_COLS.div_ceil(ohw).clamp(1, n);
    let bias = |o: usize| b.map_or(0.0, |b| b[o]);
    let mut col = Vec::new();
    let mut tmp = Vec::new();
    for n0 in (0..n).step_by(nb) {
        let nbc = nb.min(n - n0);
        let cols = nbc * ohw;
        // B: the input itself for a single-image pointwise chunk, else an im2col buffer.
        let bmat: &[f32] = if pointwise && nbc == 1 {
            x.item(n0)
        } else {
            col.resize(ci * c.kernel[0] * c.kernel[1] * cols, 0.0);
            im2col(x, n0, nbc, c, (oh, ow), &mut col, cols);
            &col
        };
        // C: the output item itself for one image, else a [co, cols] buffer scattered below.
        let cmat: &mut [f32] = if nbc == 1 {
            &mut out.data[n0 * co * ohw..(n0 + 1) * co * ohw]
        } else {
            tmp.resize(co * cols, 0.0);
            &mut tmp
        };
        for g in 0..groups {
            sgemm(
                cog,
                klen,
                cols,
                MatRef {
                    data: &w.data[g * cog * klen..(g + 1) * cog * klen],
                    rs: klen,
                    cs: 1,
                },
                MatRef {
                    data: &bmat[g * klen * cols..(g + 1) * klen * cols],
                    rs: cols,
                    cs: 1,
                },
                &mut cmat[g * cog * cols..(g + 1) * cog * cols],
                cols,
            );
        }
        let chunk = &mut out.data[n0 * co * ohw..(n0 + nbc) * co * ohw];
        if nbc == 1 {
            chunk
                .par_chunks_mut(ohw)
                .enumerate()
                .for_each(|(o, row)| bias_act(row, bias(o), c.act));
        } else {
            chunk
                .par_chunks_mut(ohw)
                .enumerate()
                .with_min_len(4096usize.div_ceil(ohw))
                .for_each(|(r, row)| {
                    let (nl, o) = (r / co, r % co);
                    copy_bias_act(row, &tmp[o * cols + nl * ohw..][..ohw], bias(o), c.act);
                });
        }
    }
    out
}
