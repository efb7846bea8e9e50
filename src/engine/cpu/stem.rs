//! Direct convolution for few input channels (the network stem: 3→32, 3×3, stride 2):
//!
//! `y[n,o,y,x] = act(b[o] + Σ_t w[o,t] · P_t[y·ws + x])`, over the taps `t = (i, ky, kx)` in
//! weight order, where `P_t` is the run of input channel `i`'s [`Polyphase`] plane that the
//! tap `(ky·dy, kx·dx)` reads on the wide output grid (pitch `ws`): every stride becomes
//! stride 1, and a tap of 16 consecutive output columns is one contiguous load.
//!
//! With `ci ≤ MAX_CI` the reduction (`ci·kh·kw`, 27 for the stem) is too short for a GEMM to
//! amortise its packing and im2col: here an `RB × XB` = 4 channels × 16 columns register tile
//! accumulates all taps (two loads, four weight broadcasts, eight FMAs per tap) and gets
//! bias + activation before its one store. Each output element is one FMA chain over the taps
//! in order, computed per image, so results do not depend on the batch or the tiling.
//! Builds: AVX2+FMA (run-time detected) and portable Rust loops (multiply, then add).

use rayon::prelude::*;

use super::elementwise::{apply_act, prepare_out};
pub use super::microkernel::Isa;
use super::plane::Polyphase;
use crate::graph::{Activation, Conv2d};
use crate::tensor::Tensor;

/// Most input channels (per group of one) for which this kernel is used.
pub const MAX_CI: usize = 4;
/// Output channels per register tile.
const RB: usize = 4;
/// Output columns per register tile (two AVX2 vectors).
const XB: usize = 16;
/// Columns per chunk: tiles run rows, chunks, channel blocks, then the chunk's tiles, so a
/// chunk's tap runs (`k·XC` floats) stay in L1 across the channel blocks and each output
/// row is written in runs of up to `XC`.
const XC: usize = 256;

/// A raw output pointer shared by tasks that write disjoint rows of it.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: tasks write disjoint (image, output row) sets of the output only.
unsafe impl Send for SharedOut {}
// SAFETY: as above.
unsafe impl Sync for SharedOut {}

impl SharedOut {
    fn ptr(self) -> *mut f32 {
        self.0
    }
}

/// Whether [`conv2d_into`] handles `c` (one group, at most `MAX_CI` input channels).
pub fn applies(c: &Conv2d) -> bool {
    c.groups == 1 && c.in_channels <= MAX_CI
}

/// Problem sizes shared by the tasks.
#[derive(Clone, Copy)]
struct Geo {
    k: usize,
    co: usize,
    ow: usize,
    ohw: usize,
    ws: usize,
    act: Activation,
}

/// Convolution with the semantics of [`super::reference::conv2d`] for a single-group
/// convolution of `x` (`[n, ci, h, w]`, `ci ≤ MAX_CI`) with `w` (`[co, ci, kh, kw]`,
/// row-major) into `out` (`[n, co, oh, ow]`), with the given kernel build.
///
/// # Panics
/// If `c` has more than one group, `x` does not have `c.in_channels` channels, the window
/// does not fit the padded input, or `w` / `b` are shorter than the convolution needs.
pub fn conv2d_into(
    x: &Tensor,
    w: &[f32],
    b: Option<&[f32]>,
    c: &Conv2d,
    out: &mut Tensor,
    isa: Isa,
) {
    let (n, ci, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    assert!(c.groups == 1 && ci == c.in_channels, "stem conv: one group");
    let Some((oh, ow)) = c.out_hw(h, wd) else {
        panic!("stem conv: window {:?} does not fit {h}×{wd}", c.kernel);
    };
    let (co, [kh, kw]) = (c.out_channels, c.kernel);
    let k = ci * kh * kw;
    assert!(w.len() >= co * k, "stem conv: weights too short");
    assert!(b.is_none_or(|b| b.len() >= co), "stem conv: bias too short");
    prepare_out(out, &[n, co, oh, ow]);
    if out.data.is_empty() {
        return;
    }
    let bias: Vec<f32> = b.map_or_else(|| vec![0.0; co], |b| b[..co].to_vec());
    // About two tasks per thread; an image's rows split only when the batch is small.
    let nblk = (2 * rayon::current_num_threads()).div_ceil(n).clamp(1, oh);
    let rows_per = oh.div_ceil(nblk);
    let nblk = oh.div_ceil(rows_per);
    let dst = SharedOut(out.data.as_mut_ptr());
    (0..n * nblk).into_par_iter().with_max_len(1).for_each_init(
        || (Vec::<Polyphase>::new(), Vec::<*const f32>::new()),
        |(pps, taps), t| {
            let (img, blk) = (t / nblk, t % nblk);
            let ys = blk * rows_per..oh.min((blk + 1) * rows_per);
            pps.resize_with(ci, Polyphase::default);
            let ws = build_rows(x.item(img), (h, wd), c, (ys.clone(), ow), pps, taps);
            let g = Geo {
                k,
                co,
                ow,
                ohw: oh * ow,
                ws,
                act: c.act,
            };
            // SAFETY: `build_rows` makes every tap run hold ys.len() − 1 rows of `ws`
            // plus `ow` rounded up to XB; this task writes rows `ys` of image `img` only.
            unsafe {
                let d = dst.ptr().add((img * co * oh + ys.start) * ow);
                rows(isa, g, taps, w, &bias, 0..ys.len(), d);
            }
        },
    );
}

/// Pixel count that [`conv1x1_small_into`] needs the maps to be a multiple of (tile runs
/// then never cross the end of a channel).
pub const PW_ALIGN: usize = XB;

/// `out = act(W · x + b)` for a 1×1 stride-1 unpadded single-group convolution with a short
/// reduction, with the same register tiles (the taps are the input channels): `x` is
/// `[n, ci, h, w]` with `h·w` a multiple of [`PW_ALIGN`], `w` is `[co, ci]` (row-major), `out`
/// becomes `[n, co, h, w]`.
///
/// # Panics
/// If `h·w` is not a multiple of `PW_ALIGN`, or `w` / `b` are shorter than `co·ci` / `co`.
#[allow(clippy::too_many_arguments)]
pub fn conv1x1_small_into(
    x: &Tensor,
    w: &[f32],
    b: Option<&[f32]>,
    co: usize,
    act: Activation,
    out: &mut Tensor,
    isa: Isa,
) {
    let (n, ci, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let hw = h * wd;
    assert!(
        hw % PW_ALIGN == 0,
        "conv1x1_small: map not a multiple of {PW_ALIGN}"
    );
    assert!(w.len() >= co * ci, "conv1x1_small: weights too short");
    assert!(
        b.is_none_or(|b| b.len() >= co),
        "conv1x1_small: bias too short"
    );
    prepare_out(out, &[n, co, h, wd]);
    if out.data.is_empty() {
        return;
    }
    let bias: Vec<f32> = b.map_or_else(|| vec![0.0; co], |b| b[..co].to_vec());
    let nblk = (2 * rayon::current_num_threads())
        .div_ceil(n)
        .clamp(1, hw / XB);
    let per = (hw / XB).div_ceil(nblk) * XB;
    let nblk = hw.div_ceil(per);
    let dst = SharedOut(out.data.as_mut_ptr());
    (0..n * nblk).into_par_iter().with_max_len(1).for_each_init(
        Vec::<*const f32>::new,
        |taps, t| {
            let (img, blk) = (t / nblk, t % nblk);
            let (p0, p1) = (blk * per, hw.min((blk + 1) * per));
            let ximg = x.item(img);
            taps.clear();
            taps.extend((0..ci).map(|i| ximg[i * hw + p0..].as_ptr()));
            // One "row" of p1 − p0 pixels; channels lie hw apart.
            let g = Geo {
                k: ci,
                co,
                ow: p1 - p0,
                ohw: hw,
                ws: 0,
                act,
            };
            // SAFETY: p1 − p0 is a multiple of XB, so every run stays inside its channel;
            // this task writes pixels p0..p1 of image `img` only.
            unsafe {
                rows(
                    isa,
                    g,
                    taps,
                    w,
                    &bias,
                    0..1,
                    dst.ptr().add(img * co * hw + p0),
                )
            };
        },
    );
}

/// Builds the polyphase planes of the padded input rows that output rows `ys` read (one per
/// input channel, as if those rows were the whole input), sets `taps` to each tap's run for
/// output row `ys.start` (channel-major, weight order), and returns the row pitch `ws`.
fn build_rows(
    ximg: &[f32],
    (h, wd): (usize, usize),
    c: &Conv2d,
    (ys, ow): (std::ops::Range<usize>, usize),
    pps: &mut [Polyphase],
    taps: &mut Vec<*const f32>,
) -> usize {
    let [pt, pl, _, pr] = c.padding;
    let (sy, dy) = (c.stride[0], c.dilation[0]);
    let [kh, kw] = c.kernel;
    // Padded rows p0..p1; input rows i0..i1 among them, after `top` padding rows.
    let p0 = ys.start * sy;
    let p1 = (ys.end - 1) * sy + (kh - 1) * dy + 1;
    let (i0, i1) = (p0.saturating_sub(pt).min(h), p1.saturating_sub(pt).min(h));
    let top = pt.saturating_sub(p0).min(p1 - p0);
    let pad = [top, pl, p1 - p0 - top - (i1 - i0), pr];
    let mut geo = Polyphase::default();
    geo.shape(i1 - i0, wd, pad, c.stride);
    let offsets: Vec<usize> = (0..kh * kw)
        .map(|t| geo.offset((t / kw) * dy, (t % kw) * c.dilation[1]))
        .collect();
    let ws = geo.ws();
    // Tiles read whole XB-column runs: the planes extend past the last output column.
    let min_len =
        offsets.iter().max().unwrap_or(&0) + (ys.len() - 1) * ws + ow.next_multiple_of(XB);
    taps.clear();
    for (i, pp) in pps.iter_mut().enumerate() {
        let src = &ximg[(i * h + i0) * wd..(i * h + i1) * wd];
        pp.build(src, i1 - i0, wd, pad, c.stride, 0.0, min_len);
        taps.extend(offsets.iter().map(|&o| pp.data[o..].as_ptr()));
    }
    ws
}

/// Output rows `ys` of one image (`d` = its `[co, oh, ow]` output).
///
/// # Safety
/// Each `taps[t]` must be readable for `(ys.end − 1)·ws + ow.next_multiple_of(XB)` elements,
/// `d` writable at rows `ys` of every channel, and the CPU must run `isa`.
unsafe fn rows(
    isa: Isa,
    g: Geo,
    taps: &[*const f32],
    w: &[f32],
    bias: &[f32],
    ys: std::ops::Range<usize>,
    d: *mut f32,
) {
    #[cfg(target_arch = "x86_64")]
    if isa.avx2() {
        // SAFETY: the caller's contract.
        unsafe { rows_avx2(g, taps, w, bias, ys, d) };
        return;
    }
    let _ = isa;
    for y in ys {
        for c0 in (0..g.ow).step_by(XC) {
            for o0 in (0..g.co).step_by(RB) {
                let wr: [&[f32]; RB] =
                    std::array::from_fn(|r| &w[(o0 + r).min(g.co - 1) * g.k..][..g.k]);
                for x0 in (c0..g.ow.min(c0 + XC)).step_by(XB) {
                    let j = y * g.ws + x0;
                    let mut acc = [[0.0f32; XB]; RB];
                    for (t, &tp) in taps.iter().enumerate() {
                        let mut run = [0.0f32; XB];
                        // SAFETY: the caller's contract.
                        run.copy_from_slice(unsafe { std::slice::from_raw_parts(tp.add(j), XB) });
                        for (ar, wrow) in acc.iter_mut().zip(&wr) {
                            let wv = wrow[t];
                            for (a, v) in ar.iter_mut().zip(&run) {
                                *a += wv * v;
                            }
                        }
                    }
                    // SAFETY: the caller's contract.
                    unsafe { store(g, &mut acc, bias, (o0, y, x0), d) };
                }
            }
        }
    }
}

/// Writes the valid part of a tile (channels `o0..`, row `y`, columns `x0..`) with the
/// epilogue.
///
/// # Safety
/// As for [`rows`].
unsafe fn store(
    g: Geo,
    acc: &mut [[f32; XB]; RB],
    bias: &[f32],
    (o0, y, x0): (usize, usize, usize),
    d: *mut f32,
) {
    let len = XB.min(g.ow - x0);
    for (r, ar) in acc.iter_mut().enumerate().take(g.co - o0) {
        let v = &mut ar[..len];
        v.iter_mut().for_each(|a| *a += bias[o0 + r]);
        apply_act(v, g.act);
        // SAFETY: channel o0 + r < co, row y, columns x0..x0 + len < ow: the caller's rows.
        let out =
            unsafe { std::slice::from_raw_parts_mut(d.add((o0 + r) * g.ohw + y * g.ow + x0), len) };
        out.copy_from_slice(v);
    }
}

/// [`rows`] with AVX2+FMA: the tile lives in eight registers; full tiles get the epilogue in
/// registers and are stored directly.
///
/// # Safety
/// As for [`rows`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows_avx2(
    g: Geo,
    taps: &[*const f32],
    w: &[f32],
    bias: &[f32],
    ys: std::ops::Range<usize>,
    d: *mut f32,
) {
    use std::arch::x86_64::*;
    let (zero, six) = (_mm256_setzero_ps(), _mm256_set1_ps(6.0));
    // SAFETY (all blocks below): tap reads stay within the runs and weight reads within
    // `w` (rows clamped to co − 1, t < k); stores as in `store`.
    for y in ys {
        for c0 in (0..g.ow).step_by(XC) {
            for o0 in (0..g.co).step_by(RB) {
                for x0 in (c0..g.ow.min(c0 + XC)).step_by(XB) {
                    let j = y * g.ws + x0;
                    let wr: [*const f32; RB] =
                        std::array::from_fn(|r| w[(o0 + r).min(g.co - 1) * g.k..].as_ptr());
                    let mut acc = [[zero; 2]; RB];
                    for (t, &tp) in taps.iter().enumerate() {
                        let (b0, b1) =
                            unsafe { (_mm256_loadu_ps(tp.add(j)), _mm256_loadu_ps(tp.add(j + 8))) };
                        for r in 0..RB {
                            let a = unsafe { _mm256_broadcast_ss(&*wr[r].add(t)) };
                            acc[r][0] = _mm256_fmadd_ps(a, b0, acc[r][0]);
                            acc[r][1] = _mm256_fmadd_ps(a, b1, acc[r][1]);
                        }
                    }
                    if x0 + XB > g.ow || o0 + RB > g.co {
                        let mut tile = [[0.0f32; XB]; RB];
                        for (tr, ar) in tile.iter_mut().zip(&acc) {
                            unsafe {
                                _mm256_storeu_ps(tr.as_mut_ptr(), ar[0]);
                                _mm256_storeu_ps(tr.as_mut_ptr().add(8), ar[1]);
                            }
                        }
                        unsafe { store(g, &mut tile, bias, (o0, y, x0), d) };
                        continue;
                    }
                    for (r, ar) in acc.iter().enumerate() {
                        let bv = _mm256_set1_ps(bias[o0 + r]);
                        let mut v = [_mm256_add_ps(ar[0], bv), _mm256_add_ps(ar[1], bv)];
                        for e in &mut v {
                            *e = match g.act {
                                Activation::None => *e,
                                Activation::Relu => _mm256_max_ps(*e, zero),
                                Activation::Relu6 => _mm256_min_ps(_mm256_max_ps(*e, zero), six),
                            };
                        }
                        unsafe {
                            let p = d.add((o0 + r) * g.ohw + y * g.ow + x0);
                            _mm256_storeu_ps(p, v[0]);
                            _mm256_storeu_ps(p.add(8), v[1]);
                        }
                    }
                }
            }
        }
    }
}
