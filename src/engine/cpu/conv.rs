//! 2-D convolution (NCHW, weights `[out, in/groups, kh, kw]`, groups, stride, dilation,
//! per-side padding `[top, left, bottom, right]`, fused activation):
//!
//! `y[n,o,y,x] = act(b[o] + Σ_{i,ky,kx} w[o,i,ky,kx] · Xpad[n, g·cig + i, y·sy + ky·dy, x·sx + kx·dx])`
//!
//! Dispatch: convolutions with one input channel per group (depthwise, with any channel
//! multiplier) run the direct kernel in [`super::depthwise`]; single-group ones with at most
//! [`stem::MAX_CI`] input channels (the stem) the direct kernel of [`super::stem`]; single-group
//! 1×1 stride-1 unpadded ones with fewer than `PW_SMALL_MAX_K` input channels on maps of a
//! multiple of 16 pixels the direct short-reduction kernel of [`super::stem`], others with
//! at least `PW_MIN_K` the batched GEMM of [`super::pointwise`]; everything else is
//! `Y_g[cog, cols] = W_g[cog, cig·kh·kw] · B_g[cig·kh·kw, cols]` per group with
//! `matrixmultiply::sgemm`, where `B` comes from [`super::im2col`] or, for 1×1 stride-1
//! unpadded convolutions on large maps, is the input itself. Small maps batch several images
//! into one GEMM (`cols = nb·oh·ow ≥ TARGET_COLS`) so the weights are packed once per chunk
//! instead of once per image.

use std::cell::RefCell;

use rayon::prelude::*;

use super::depthwise;
use super::elementwise::{bias_act, copy_bias_act, prepare_out};
use super::gemm::{sgemm, sgemm_raw, MatRef, ST_LIMIT};
use super::im2col::{im2col, im2col_cols, is_pointwise};
use super::pointwise;
use super::stem;
use crate::graph::Conv2d;
use crate::tensor::Tensor;

/// GEMM width (columns) up to which images are batched together. matrixmultiply packs `A`
/// once per 1024-column block of `B`: narrower products re-pack the weights per image, and a
/// product just over 1024 columns re-packs them for a thin remainder.
const TARGET_COLS: usize = 1024;

/// Reduction length from which pointwise convolutions run [`pointwise`]'s batched GEMM;
/// shorter ones are faster in the blocked path, which writes the output in place.
const PW_MIN_K: usize = 40;

/// Reduction length below which pointwise convolutions on maps of a multiple of 16 pixels
/// run [`stem::conv1x1_small_into`]: these (16–40 input channels at 112²…28²) are
/// store-bound, and its register tiles write each output once with the epilogue fused,
/// without packing or a tile buffer.
const PW_SMALL_MAX_K: usize = 48;

/// Narrowest column block worth a task of its own in the blocked path.
const MIN_BLOCK: usize = 128;

/// Scratch larger than this (in f32) is released after the call instead of kept.
const KEEP_SCRATCH: usize = 1 << 24;

thread_local! {
    /// im2col and GEMM-output buffers, reused across calls (fresh large allocations cost a
    /// page fault per 4 KiB on first touch).
    static SCRATCH: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Fast convolution with the semantics of [`super::reference::conv2d`].
///
/// # Panics
/// If the window does not fit the padded input (shape inference rejects such graphs).
pub fn conv2d(x: &Tensor, w: &Tensor, b: Option<&[f32]>, c: &Conv2d) -> Tensor {
    let mut out = Tensor {
        shape: Vec::new(),
        data: Vec::new(),
    };
    conv2d_into(x, w, b, c, &mut out);
    out
}

/// [`conv2d`] into a caller-owned tensor whose allocation is reused (an executor that
/// recycles activation buffers avoids the page faults of fresh multi-MiB outputs).
pub fn conv2d_into(x: &Tensor, w: &Tensor, b: Option<&[f32]>, c: &Conv2d, out: &mut Tensor) {
    let (n, ci, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let Some((oh, ow)) = c.out_hw(h, wd) else {
        panic!(
            "conv2d: window {:?} does not fit a {h}×{wd} input",
            c.kernel
        );
    };
    debug_assert_eq!(ci, c.in_channels);
    debug_assert_eq!(w.shape, c.weight_shape());
    debug_assert!(b.is_none_or(|b| b.len() == c.out_channels));
    if c.groups > 1 && ci == c.groups {
        return depthwise::conv2d_into(x, w, b, c, (oh, ow), out);
    }
    if stem::applies(c) {
        let isa = stem::Isa::detect();
        return stem::conv2d_into(x, &w.data, b, c, out, isa);
    }
    if c.groups == 1 && is_pointwise(c) && ci < PW_SMALL_MAX_K && (h * wd) % stem::PW_ALIGN == 0 {
        let isa = stem::Isa::detect();
        return stem::conv1x1_small_into(x, &w.data, b, c.out_channels, c.act, out, isa);
    }
    if c.groups == 1 && is_pointwise(c) && ci >= PW_MIN_K {
        let isa = pointwise::Isa::detect();
        return pointwise::conv1x1_into(x, &w.data, b, c.out_channels, c.act, out, isa);
    }
    let co = c.out_channels;
    prepare_out(out, &[n, co, oh, ow]);
    if out.data.is_empty() {
        return;
    }
    let (cig, cog) = (ci / c.groups, co / c.groups);
    let klen = cig * c.kernel[0] * c.kernel[1];
    // Widest column block that matrixmultiply keeps on one thread.
    let block = (ST_LIMIT - 1).saturating_sub(cog * klen) / klen.max(1);
    if block >= MIN_BLOCK {
        return blocked_conv(x, w, b, c, (oh, ow), out, block);
    }
    SCRATCH.with_borrow_mut(|(col, tmp)| {
        gemm_conv(x, w, b, c, (oh, ow), out, col, tmp);
        for v in [col, tmp] {
            if v.capacity() > KEEP_SCRATCH {
                *v = Vec::new();
            }
        }
    });
}

/// A raw output pointer shared by tasks that write disjoint parts of it.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: only used by `blocked_conv`, whose tasks write disjoint elements.
unsafe impl Send for SharedOut {}
// SAFETY: as above.
unsafe impl Sync for SharedOut {}

impl SharedOut {
    fn ptr(self) -> *mut f32 {
        self.0
    }
}

/// Small-weight GEMMs (early layers: few channels, large maps): rayon tasks of one
/// (image, column block) each, lowering their own columns, multiplying on one thread and
/// running the bias + activation epilogue while the block is still in L2.
#[allow(clippy::too_many_arguments)]
fn blocked_conv(
    x: &Tensor,
    w: &Tensor,
    b: Option<&[f32]>,
    c: &Conv2d,
    (oh, ow): (usize, usize),
    out: &mut Tensor,
    block: usize,
) {
    let (n, ci, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let co = c.out_channels;
    let (cig, cog) = (ci / c.groups, co / c.groups);
    let klen = cig * c.kernel[0] * c.kernel[1];
    let ohw = oh * ow;
    let nblk = ohw.div_ceil(block);
    let bw = ohw.div_ceil(nblk);
    let pointwise = is_pointwise(c);
    debug_assert_eq!(out.data.len(), n * co * ohw);
    let dst = SharedOut(out.data.as_mut_ptr());
    (0..n * nblk)
        .into_par_iter()
        .for_each_init(Vec::new, |col: &mut Vec<f32>, t| {
            let (img, blk) = (t / nblk, t % nblk);
            let (j0, j1) = (blk * bw, ohw.min((blk + 1) * bw));
            let len = j1 - j0;
            let ximg = x.item(img);
            let (bdata, ldb, boff) = if pointwise {
                (ximg, ohw, j0)
            } else {
                col.resize(c.groups * klen * len, 0.0);
                im2col_cols(ximg, (h, wd), c, (oh, ow), (j0, j1), col, len);
                (&col[..], len, 0)
            };
            let base = img * co * ohw + j0;
            for g in 0..c.groups {
                let a = MatRef {
                    data: &w.data[g * cog * klen..(g + 1) * cog * klen],
                    rs: klen,
                    cs: 1,
                };
                let bm = MatRef {
                    data: &bdata[g * klen * ldb + boff..],
                    rs: ldb,
                    cs: 1,
                };
                // SAFETY: rows g·cog.. of image `img`, columns j0..j1 of the output lie inside
                // `out` and are written by this task only (tasks own disjoint (image, block)s).
                unsafe {
                    sgemm_raw(
                        cog,
                        klen,
                        len,
                        a,
                        bm,
                        dst.ptr().add(base + g * cog * ohw),
                        ohw,
                    )
                };
            }
            for o in 0..co {
                // SAFETY: as above; the sgemm calls have returned.
                let row =
                    unsafe { std::slice::from_raw_parts_mut(dst.ptr().add(base + o * ohw), len) };
                bias_act(row, b.map_or(0.0, |b| b[o]), c.act);
            }
        });
}

/// The im2col + GEMM path, chunk by chunk of `nb` images.
#[allow(clippy::too_many_arguments)]
fn gemm_conv(
    x: &Tensor,
    w: &Tensor,
    b: Option<&[f32]>,
    c: &Conv2d,
    (oh, ow): (usize, usize),
    out: &mut Tensor,
    col: &mut Vec<f32>,
    tmp: &mut Vec<f32>,
) {
    let (n, ci) = (x.shape[0], x.shape[1]);
    let co = c.out_channels;
    let ohw = oh * ow;
    let groups = c.groups;
    let (cig, cog) = (ci / groups, co / groups);
    let klen = cig * c.kernel[0] * c.kernel[1];
    let pointwise = is_pointwise(c);
    // Images per chunk: as many as fit TARGET_COLS, balanced over the chunks.
    let chunks = n.div_ceil((TARGET_COLS / ohw).clamp(1, n));
    let nb = n.div_ceil(chunks);
    let bias = |o: usize| b.map_or(0.0, |b| b[o]);
    for n0 in (0..n).step_by(nb) {
        let nbc = nb.min(n - n0);
        let cols = nbc * ohw;
        // B: the input itself for a single-image pointwise chunk, else an im2col buffer.
        let bmat: &[f32] = if pointwise && nbc == 1 {
            x.item(n0)
        } else {
            col.resize(groups * klen * cols, 0.0);
            im2col(x, n0, nbc, c, (oh, ow), col, cols);
            col
        };
        // C: the output item itself for one image, else a [co, cols] buffer scattered below.
        let cmat: &mut [f32] = if nbc == 1 {
            &mut out.data[n0 * co * ohw..(n0 + 1) * co * ohw]
        } else {
            tmp.resize(co * cols, 0.0);
            tmp
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
            let tmp = &tmp[..];
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
}
