//! im2col: lowers a convolution to a GEMM operand.
//!
//! For a chunk of `nb` images the column matrix is `B[ci·kh·kw, nb·oh·ow]` (row stride
//! `ldb`): row `(c·kh + ky)·kw + kx`, column `n·oh·ow + y·ow + x` holds
//! `Xpad[n][c][y·sy + ky·dy][x·sx + kx·dx]` (0 in the padding). Rows of one group are
//! contiguous, so group `g` is the row block `g·(ci/groups)·kh·kw ..`. Each row segment is a
//! contiguous copy out of a [`Polyphase`] plane, whatever the stride.

use rayon::prelude::*;

use super::plane::{gather, Polyphase};
use crate::graph::Conv2d;
use crate::tensor::Tensor;

/// True for 1×1, stride-1, unpadded convolutions: the input plane already is `B`.
pub(crate) fn is_pointwise(c: &Conv2d) -> bool {
    c.kernel == [1, 1] && c.stride == [1, 1] && c.padding == [0; 4]
}

/// Fills columns `[0, nb·oh·ow)` of `col` (row stride `ldb`) for images `n0 .. n0 + nb`.
/// Parallel over input channels (each owns `kh·kw` rows).
pub(crate) fn im2col(
    x: &Tensor,
    n0: usize,
    nb: usize,
    c: &Conv2d,
    (oh, ow): (usize, usize),
    col: &mut [f32],
    ldb: usize,
) {
    let (ci, h, w) = (x.shape[1], x.shape[2], x.shape[3]);
    let (kh, kw) = (c.kernel[0], c.kernel[1]);
    let k2 = kh * kw;
    let ohw = oh * ow;
    let hw = h * w;
    debug_assert!(col.len() >= ci * k2 * ldb && ldb >= nb * ohw);
    let pointwise = is_pointwise(c);
    col[..ci * k2 * ldb]
        .par_chunks_mut(k2 * ldb)
        .enumerate()
        .for_each_init(Polyphase::default, |pp, (ch, rows)| {
            for nl in 0..nb {
                let plane = &x.data[((n0 + nl) * ci + ch) * hw..][..hw];
                if pointwise {
                    rows[nl * ohw..(nl + 1) * ohw].copy_from_slice(plane);
                    continue;
                }
                pp.build(plane, h, w, c.padding, c.stride, 0.0, 0);
                let ws = pp.ws();
                for ky in 0..kh {
                    for kx in 0..kw {
                        let off = pp.offset(ky * c.dilation[0], kx * c.dilation[1]);
                        let row = &mut rows[(ky * kw + kx) * ldb + nl * ohw..][..ohw];
                        for (y, dst) in row.chunks_exact_mut(ow).enumerate() {
                            dst.copy_from_slice(&pp.data[off + y * ws..off + y * ws + ow]);
                        }
                    }
                }
            }
        });
}

/// Fills `dst` (`ci·kh·kw` rows of `j1 − j0`, row stride `ld`) with columns `j0..j1` of one
/// image's patch matrix; `ximg` is that image's `[ci, h, w]`. For the blocked GEMM path,
/// where each task lowers only the columns it multiplies.
#[allow(clippy::too_many_arguments)]
pub(crate) fn im2col_cols(
    ximg: &[f32],
    (h, w): (usize, usize),
    c: &Conv2d,
    (oh, ow): (usize, usize),
    (j0, j1): (usize, usize),
    dst: &mut [f32],
    ld: usize,
) {
    let ci = ximg.len() / (h * w).max(1);
    let (kh, kw) = (c.kernel[0], c.kernel[1]);
    let (sy, sx) = (c.stride[0], c.stride[1]);
    let (pt, pl) = (c.padding[0], c.padding[1]);
    debug_assert!(j1 <= oh * ow && ld >= j1 - j0);
    for ch in 0..ci {
        let plane = &ximg[ch * h * w..(ch + 1) * h * w];
        for ky in 0..kh {
            let dy = ky * c.dilation[0];
            for kx in 0..kw {
                let dx = kx * c.dilation[1];
                // Output columns x whose input column x·sx + dx − pl lies in [0, w).
                let xb = (w + pl).saturating_sub(dx).div_ceil(sx).min(ow);
                let xa = pl.saturating_sub(dx).div_ceil(sx).min(xb);
                let row = &mut dst[((ch * kh + ky) * kw + kx) * ld..][..j1 - j0];
                let mut j = j0;
                while j < j1 {
                    let (y, x0) = (j / ow, j % ow);
                    let x1 = ow.min(x0 + (j1 - j));
                    let seg = &mut row[j - j0..j - j0 + (x1 - x0)];
                    j += x1 - x0;
                    let iy = y * sy + dy;
                    if iy < pt || iy - pt >= h {
                        seg.fill(0.0);
                        continue;
                    }
                    let srow = &plane[(iy - pt) * w..(iy - pt + 1) * w];
                    let va = xa.clamp(x0, x1);
                    let vb = xb.clamp(va, x1);
                    seg[..va - x0].fill(0.0);
                    seg[vb - x0..].fill(0.0);
                    if vb > va {
                        gather(&mut seg[va - x0..vb - x0], &srow[va * sx + dx - pl..], sx);
                    }
                }
            }
        }
    }
}
