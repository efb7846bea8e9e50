//! Pointwise convolution (1×1, stride 1, unpadded, one group) as one GEMM over the whole
//! batch, without im2col or output copies:
//!
//! `Y[o, j] = act(b[o] + Σ_i W[o, i] · X[i, j])`, where column `j = n·hw + p` of the virtual
//! matrix `X[ci, N·hw]` is pixel `p` of image `n` (NCHW: `x[n][i][p]`), and likewise for `Y`.
//!
//! Blocking: rayon tasks own (row block of ≤ `MC` output channels, column block of ≤ `NC`
//! columns). A task packs its columns of `X`, `KC` rows at a time, into 16-column strips
//! `[kc][16]` (zero-padded), multiplies them with a 6×16 register micro-kernel (with
//! AVX-512, two strips at once: 6×32) that reads the weights in place (6 broadcast
//! streams), accumulating in a task-local tile buffer between K blocks, and after the last
//! K block writes `act(acc + b)` into the NCHW output. Each output element is one FMA chain over `i = 0..ci` in order (spilled to the tile buffer between K blocks, never
//! re-associated), so results do not depend on the tiling, the batch size or the thread
//! count. Tasks are single-threaded: no GEMM thread pool runs alongside rayon.
//!
//! Tiles of the last K block that hold 16 columns of one image are stored straight into the
//! output and get the epilogue there; the others (image boundaries, partial row panels) go
//! through the tile buffer. Both apply the same epilogue, so an element's value does not
//! depend on its path. The micro-kernels are in [`super::microkernel`].

use std::cell::RefCell;

use rayon::prelude::*;

use super::elementwise::{apply_act, prepare_out};
pub use super::microkernel::Isa;
use super::microkernel::{micro, micro_pair, MR, NR};
use super::plane::copy_short;
use crate::graph::Activation;
use crate::tensor::Tensor;

/// Reduction rows per packed block: a `[KC][NR]` strip (16 KiB) stays in L1.
const KC: usize = 256;
/// Largest row block of a task (multiple of `MR`): its weights (`MC·KC`) stay in L2.
const MC: usize = 192;
/// Largest column block of a task (multiple of `NR`).
const NC: usize = 256;
/// Smallest column block (strips) that the task split makes.
const MIN_STRIPS: usize = 4;
/// Smallest row block that the task split makes: a task re-packs its columns of `X` per row
/// block, so thin row blocks would spend more on packing than on products.
const MIN_ROWS: usize = 96;

thread_local! {
    /// Packed `X` strips and the task's accumulator tile buffer, reused across tasks.
    static SCRATCH: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// A raw output pointer shared by tasks that write disjoint parts of it.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: tasks write disjoint (row, column) blocks of the output only.
unsafe impl Send for SharedOut {}
// SAFETY: as above.
unsafe impl Sync for SharedOut {}

impl SharedOut {
    fn ptr(self) -> *mut f32 {
        self.0
    }
}

/// `out = act(W · x + b)` for a 1×1 stride-1 unpadded single-group convolution: `x` is
/// `[n, ci, h, w]`, `w` is `[co, ci]` (row-major), `out` becomes `[n, co, h, w]`.
///
/// # Panics
/// If `w` or `b` are shorter than `co·ci` / `co`, or `x` is not rank 4.
pub fn conv1x1_into(
    x: &Tensor,
    w: &[f32],
    b: Option<&[f32]>,
    co: usize,
    act: Activation,
    out: &mut Tensor,
    isa: Isa,
) {
    let (n, ci, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    assert!(w.len() >= co * ci, "conv1x1: weights too short");
    assert!(b.is_none_or(|b| b.len() >= co), "conv1x1: bias too short");
    prepare_out(out, &[n, co, h, wd]);
    let hw = h * wd;
    let cols = n * hw;
    if cols == 0 || co == 0 {
        return;
    }
    let strips = cols.div_ceil(NR);
    // Tasks: about 4 per thread. Columns split first (each column block packs its part of
    // `X` once per row block), down to MIN_STRIPS strips; then rows, down to MIN_ROWS.
    let want = 4 * rayon::current_num_threads();
    let col_blocks = want
        .min(strips.div_ceil(MIN_STRIPS))
        .max(strips.div_ceil(NC / NR));
    let spb = strips.div_ceil(col_blocks);
    let col_blocks = strips.div_ceil(spb);
    let mc = co
        .div_ceil(want.div_ceil(col_blocks))
        .next_multiple_of(MR)
        .clamp(MIN_ROWS.min(co.next_multiple_of(MR)), MC);
    let row_blocks = co.div_ceil(mc);
    let dst = SharedOut(out.data.as_mut_ptr());
    let geo = Geo { ci, co, hw, cols };
    (0..row_blocks * col_blocks)
        .into_par_iter()
        .with_max_len(1)
        .for_each(|t| {
            let (rb, cb) = (t / col_blocks, t % col_blocks);
            let rows = (rb * mc)..co.min((rb + 1) * mc);
            let strip_range = (cb * spb)..strips.min((cb + 1) * spb);
            SCRATCH.with_borrow_mut(|(bp, cbuf)| {
                // SAFETY: this task writes only output channels `rows` at columns of
                // `strip_range`; tasks own disjoint (row block, column block) pairs.
                unsafe { task(x, w, b, act, geo, rows, strip_range, bp, cbuf, dst, isa) };
            });
        });
}

/// Problem sizes shared by the tasks.
#[derive(Clone, Copy)]
struct Geo {
    ci: usize,
    co: usize,
    hw: usize,
    cols: usize,
}

/// One (row block, column block) of the product, epilogue included.
///
/// # Safety
/// `dst` must be the `[n, co, hw]` output, and no other thread may access the elements of
/// channels `rows` at columns of `strips` during the call.
#[allow(clippy::too_many_arguments)]
unsafe fn task(
    x: &Tensor,
    w: &[f32],
    b: Option<&[f32]>,
    act: Activation,
    g: Geo,
    rows: std::ops::Range<usize>,
    strips: std::ops::Range<usize>,
    bp: &mut Vec<f32>,
    cbuf: &mut Vec<f32>,
    dst: SharedOut,
    isa: Isa,
) {
    let (j0, j1) = (strips.start * NR, g.cols.min(strips.end * NR));
    let ncp = strips.len() * NR;
    let nrows = rows.len();
    let panels = nrows.div_ceil(MR);
    let bias = |o: usize| b.map_or(0.0, |b| b[o]);
    if g.ci == 0 {
        cbuf.clear();
        cbuf.resize(panels * MR * ncp, 0.0);
        for p in 0..panels {
            // SAFETY: the caller's contract.
            unsafe { scatter(cbuf, ncp, g, &rows, p, (j0, j0, j1), &bias, act, dst) };
        }
        return;
    }
    cbuf.resize(panels * MR * ncp, 0.0);
    bp.resize(KC.min(g.ci) * ncp, 0.0);
    let last_pc = (g.ci - 1) / KC * KC;
    for pc in (0..g.ci).step_by(KC) {
        let kc = KC.min(g.ci - pc);
        let last = pc == last_pc;
        pack_b(&x.data, g, pc, kc, (j0, j1), ncp, bp);
        // Strips go in pairs where the ISA has a pair kernel (`micro_pair`), else one by one.
        let step = if isa == Isa::Avx512 { 2 } else { 1 };
        let cb = cbuf.as_mut_ptr();
        for s0 in (0..strips.len()).step_by(step) {
            let ns = step.min(strips.len() - s0);
            for p in 0..panels {
                // Rows past the block repeat its last row; their results are never stored.
                let a: [&[f32]; MR] = std::array::from_fn(|r| {
                    let o = (rows.start + p * MR + r).min(rows.end - 1);
                    &w[o * g.ci + pc..o * g.ci + pc + kc]
                });
                let o0 = rows.start + p * MR;
                let tile = |s: usize| {
                    let jt = j0 + s * NR;
                    // SAFETY: tile (p, s) starts inside `cbuf` (panels·MR rows of ncp).
                    let ct = unsafe { cb.add(p * MR * ncp + s * NR) };
                    // A last-block tile of NR columns of one image, all MR rows in the
                    // block, goes straight to the output.
                    let direct =
                        last && jt + NR <= j1 && jt % g.hw + NR <= g.hw && (p + 1) * MR <= nrows;
                    let dst = if direct {
                        let (img, pix) = (jt / g.hw, jt % g.hw);
                        // SAFETY: rows o0..o0 + MR of image `img`, pixels pix..pix + NR:
                        // inside the output, owned by this task (caller's contract).
                        (
                            unsafe { dst.ptr().add((img * g.co + o0) * g.hw + pix) },
                            g.hw,
                        )
                    } else {
                        (ct, ncp)
                    };
                    StripTile {
                        b: &bp[s * kc * NR..(s + 1) * kc * NR],
                        jt,
                        src: (pc > 0).then_some((ct.cast_const(), ncp)),
                        dst,
                        direct,
                    }
                };
                let tiles: [Option<StripTile>; 2] =
                    [Some(tile(s0)), (ns == 2).then(|| tile(s0 + 1))];
                // SAFETY: each destination is the task's own output tile (above) or a tile
                // of `cbuf` (panels·MR rows of ncp), as is each source.
                unsafe {
                    match &tiles {
                        [Some(t0), Some(t1)] => {
                            micro_pair(isa, kc, a, [t0.b, t1.b], [t0.src, t1.src], [t0.dst, t1.dst])
                        }
                        [Some(t), None] => micro(isa, kc, a, t.b, t.src, t.dst),
                        _ => unreachable!("the first strip is always there"),
                    }
                }
                for t in tiles.iter().flatten() {
                    if t.direct {
                        for r in 0..MR {
                            // SAFETY: as for the destination above.
                            let row = unsafe {
                                std::slice::from_raw_parts_mut(t.dst.0.add(r * g.hw), NR)
                            };
                            epilogue(row, bias(o0 + r), act);
                        }
                    } else if last {
                        let cols = (j0, t.jt, j1.min(t.jt + NR));
                        // SAFETY: the caller's contract.
                        unsafe { scatter(cbuf, ncp, g, &rows, p, cols, &bias, act, dst) };
                    }
                }
            }
        }
    }
}

/// One strip's part of a micro-kernel call in [`task`].
struct StripTile<'a> {
    /// The packed `[kc][NR]` strip.
    b: &'a [f32],
    /// Its first column of the virtual matrix.
    jt: usize,
    /// The partial sums of earlier K blocks (`cbuf`), if any.
    src: Option<(*const f32, usize)>,
    /// The output tile (direct) or its `cbuf` tile.
    dst: (*mut f32, usize),
    direct: bool,
}

/// `v = act(v + bias)`: the one epilogue of both store paths, so that an output element's
/// value does not depend on which path stored it.
#[inline]
fn epilogue(v: &mut [f32], bias: f32, act: Activation) {
    v.iter_mut().for_each(|x| *x += bias);
    apply_act(v, act);
}

/// Writes panel `p` of `cbuf` (rows `p·MR..` of the block), columns `c0..c1` of the virtual
/// matrix, into the NCHW output with the epilogue; `cbuf`'s rows hold the columns from `jb`
/// on.
///
/// # Safety
/// As for [`task`]: those output elements belong to the calling task.
#[allow(clippy::too_many_arguments)]
unsafe fn scatter(
    cbuf: &[f32],
    ncp: usize,
    g: Geo,
    rows: &std::ops::Range<usize>,
    p: usize,
    (jb, c0, c1): (usize, usize, usize),
    bias: &dyn Fn(usize) -> f32,
    act: Activation,
    dst: SharedOut,
) {
    let r_end = rows.len().min((p + 1) * MR);
    for r in p * MR..r_end {
        let o = rows.start + r;
        let mut j = c0;
        while j < c1 {
            let (img, px) = (j / g.hw, j % g.hw);
            let len = (g.hw - px).min(c1 - j);
            // SAFETY: channel `o` of image `img`, pixels px..px + len: inside the output and
            // owned by this task (caller's contract).
            let d = unsafe {
                std::slice::from_raw_parts_mut(dst.ptr().add((img * g.co + o) * g.hw + px), len)
            };
            d.copy_from_slice(&cbuf[r * ncp + (j - jb)..][..len]);
            epilogue(d, bias(o), act);
            j += len;
        }
    }
}

/// Packs rows `pc..pc + kc` of columns `j0..j1` of the virtual `X` into strips:
/// `bp[s·kc·NR + k·NR + l]` = column `j0 + s·NR + l`; columns past `j1` are zero.
fn pack_b(
    x: &[f32],
    g: Geo,
    pc: usize,
    kc: usize,
    (j0, j1): (usize, usize),
    ncp: usize,
    bp: &mut [f32],
) {
    let mut j = j0;
    while j < j1 {
        let (img, p) = (j / g.hw, j % g.hw);
        let len = (g.hw - p).min(j1 - j);
        let base = img * g.ci * g.hw + p;
        for k in 0..kc {
            let src = &x[base + (pc + k) * g.hw..][..len];
            let mut c = j - j0;
            let mut done = 0;
            while done < len {
                let (s, l) = (c / NR, c % NR);
                let run = (NR - l).min(len - done);
                copy_short(
                    &mut bp[s * kc * NR + k * NR + l..][..run],
                    &src[done..done + run],
                );
                c += run;
                done += run;
            }
        }
        j += len;
    }
    let c = j1 - j0;
    if c < ncp {
        let (s, l) = (c / NR, c % NR);
        for k in 0..kc {
            bp[s * kc * NR + k * NR + l..s * kc * NR + (k + 1) * NR].fill(0.0);
        }
    }
}
