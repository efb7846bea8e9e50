//! Integer convolution and linear layers on per-tensor quantized activations.
//!
//! Activations are NCHW `u8` codes with one quantizer (scale s_x, zero point z_x). Both
//! operands are centred before the product — weights (q_w − z_w) per channel, activations
//! (q_x − z_x) — as `i16`, so padding taps contribute exactly 0 (the real 0 of the input) and
//! the accumulator is the exact `i32` value of Σ (q_w − z_w)(q_x − z_x). Standard and grouped
//! convs: per image and group, a centred `i16` im2col packed into the panels of [`super::gemm`],
//! then the integer GEMM. Depthwise: a direct tap loop over a zero-padded
//! centred plane, rayon over planes. Linear: the same GEMM with the batch as columns.
//! These return raw accumulators; the caller applies `engine::requant::Epilogue`.

use rayon::prelude::*;

use super::gemm::{gemm_i16, pack_b, pack_b_with};
use super::weights::PackedWeights;
use crate::error::{Error, Result};
use crate::graph::Conv2d;
use crate::quant::QParams;

/// A per-tensor quantized activation: codes in NCHW (or `[N, F]`) order.
#[derive(Clone, Debug, PartialEq)]
pub struct QTensor {
    pub shape: Vec<usize>,
    pub codes: Vec<u8>,
    pub params: QParams,
}

impl QTensor {
    /// `(n, c, h, w)` of a rank-4 tensor, or `(n, f, 1, 1)` of a rank-2 one.
    pub fn dims(&self) -> Result<(usize, usize, usize, usize)> {
        match self.shape[..] {
            [n, c, h, w] => Ok((n, c, h, w)),
            [n, f] => Ok((n, f, 1, 1)),
            _ => Err(Error::Engine(format!(
                "quantized tensor of shape {:?} is neither NCHW nor [N, F]",
                self.shape
            ))),
        }
    }
}

/// Output size of `c` on an `h × w` input, or an error naming the shapes.
pub fn conv_out_hw(c: &Conv2d, h: usize, w: usize) -> Result<(usize, usize)> {
    if c.groups == 0 || c.in_channels % c.groups != 0 || c.out_channels % c.groups != 0 {
        return Err(Error::Engine(format!(
            "conv: groups {} must divide {} and {}",
            c.groups, c.in_channels, c.out_channels
        )));
    }
    c.out_hw(h, w)
        .ok_or_else(|| Error::Engine(format!("conv: window {:?} does not fit {h}×{w}", c.kernel)))
}

/// Centred weight rows `[rows, kp]` (kp = k rounded up to even) for channels `c0..c0+rows`.
pub fn centered_rows(w: &PackedWeights, c0: usize, rows: usize) -> (Vec<i16>, usize) {
    let kp = w.k.next_multiple_of(2);
    let mut a = vec![0i16; rows * kp];
    for (r, row) in a.chunks_mut(kp).enumerate() {
        w.centered_row(c0 + r, row);
    }
    (a, kp)
}

/// Raw accumulators `[N, CO, OH, OW]` of a conv on quantized input `x`.
pub fn conv2d_acc(x: &QTensor, w: &PackedWeights, c: &Conv2d) -> Result<Vec<i32>> {
    let (n, ci, h, wd) = x.dims()?;
    let (oh, ow) = conv_out_hw(c, h, wd)?;
    let (cig, cog) = (c.in_channels / c.groups, c.out_channels / c.groups);
    if ci != c.in_channels || w.cout != c.out_channels || w.k != cig * c.kernel[0] * c.kernel[1] {
        return Err(Error::Engine(format!(
            "integer conv: input {:?} / weights {}×{} do not match {c:?}",
            x.shape, w.cout, w.k
        )));
    }
    if c.is_depthwise() {
        return Ok(depthwise_acc(x, w, c, (oh, ow)));
    }
    let p = oh * ow;
    let mut out = vec![0i32; n * c.out_channels * p];
    let rows: Vec<(Vec<i16>, usize)> = (0..c.groups)
        .map(|g| centered_rows(w, g * cog, cog))
        .collect();
    let (mut cols, mut inter) = (Vec::new(), Vec::new());
    let pointwise =
        c.kernel == [1, 1] && c.stride == [1, 1] && c.padding == [0; 4] && (oh, ow) == (h, wd);
    for img in 0..n {
        for (g, (a, kp)) in rows.iter().enumerate() {
            let kp2 = if pointwise {
                // 1×1, stride 1, no padding: the input plane is the matrix; centre while packing.
                let z = x.params.zero_point;
                let base = (img * ci + g * cig) * p;
                pack_b_with(w.k, p, &mut inter, |kr, p0, row| {
                    let src = &x.codes[base + kr * p + p0..][..row.len()];
                    row.iter_mut()
                        .zip(src)
                        .for_each(|(d, &q)| *d = (q as i32 - z) as i16);
                })
            } else {
                im2col(x, img, g * cig, cig, c, (oh, ow), &mut cols);
                pack_b(&cols, w.k, p, &mut inter)
            };
            debug_assert_eq!(kp2, *kp);
            let o = &mut out[(img * c.out_channels + g * cog) * p..][..cog * p];
            gemm_i16(a, cog, *kp, &inter, p, o);
        }
    }
    Ok(out)
}

/// Centred im2col of channels `c0..c0+cig` of image `img`: row-major `[cig·kh·kw, OH·OW]`.
fn im2col(
    x: &QTensor,
    img: usize,
    c0: usize,
    cig: usize,
    c: &Conv2d,
    (oh, ow): (usize, usize),
    cols: &mut Vec<i16>,
) {
    let (_, ci, h, w) = x.dims().unwrap_or((0, 0, 0, 0));
    let z = x.params.zero_point;
    let (kh, kw) = (c.kernel[0], c.kernel[1]);
    let p = oh * ow;
    cols.clear();
    cols.resize(cig * kh * kw * p, 0);
    cols.par_chunks_mut(kh * kw * p)
        .enumerate()
        .for_each(|(i, dst)| {
            let plane = &x.codes[((img * ci) + c0 + i) * h * w..][..h * w];
            for ky in 0..kh {
                for kx in 0..kw {
                    let row = &mut dst[(ky * kw + kx) * p..][..p];
                    for oy in 0..oh {
                        let iy = (oy * c.stride[0] + ky * c.dilation[0]) as isize
                            - c.padding[0] as isize;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        let src = &plane[iy as usize * w..][..w];
                        for (ox, d) in row[oy * ow..(oy + 1) * ow].iter_mut().enumerate() {
                            let ix = (ox * c.stride[1] + kx * c.dilation[1]) as isize
                                - c.padding[1] as isize;
                            if ix >= 0 && ix < w as isize {
                                *d = (src[ix as usize] as i32 - z) as i16;
                            }
                        }
                    }
                }
            }
        });
}

/// Depthwise conv: direct tap loop over a zero-padded centred plane per (image, channel).
fn depthwise_acc(x: &QTensor, w: &PackedWeights, c: &Conv2d, (oh, ow): (usize, usize)) -> Vec<i32> {
    let (n, ch, h, wd) = x.dims().unwrap_or((0, 0, 0, 0));
    let (kh, kw) = (c.kernel[0], c.kernel[1]);
    let [pt, pl, pb, pr] = c.padding;
    let (ph, pw) = (h + pt + pb, wd + pl + pr);
    let z = x.params.zero_point;
    let mut out = vec![0i32; n * ch * oh * ow];
    out.par_chunks_mut(oh * ow)
        .enumerate()
        .for_each(|(plane_i, o)| {
            let chan = plane_i % ch;
            let src = &x.codes[plane_i * h * wd..][..h * wd];
            let mut pad = vec![0i16; ph * pw];
            for (y, row) in src.chunks(wd).enumerate() {
                for (d, &q) in pad[(y + pt) * pw + pl..][..wd].iter_mut().zip(row) {
                    *d = (q as i32 - z) as i16;
                }
            }
            let mut taps = vec![0i16; kh * kw];
            w.centered_row(chan, &mut taps);
            let (sh, sw) = (c.stride[0], c.stride[1]);
            for oy in 0..oh {
                let orow = &mut o[oy * ow..(oy + 1) * ow];
                for ky in 0..kh {
                    let prow = &pad[(oy * sh + ky * c.dilation[0]) * pw..][..pw];
                    for kx in 0..kw {
                        let t = taps[ky * kw + kx] as i32;
                        let off = kx * c.dilation[1];
                        if sw == 1 {
                            for (d, &v) in orow.iter_mut().zip(&prow[off..off + ow]) {
                                *d += t * v as i32;
                            }
                        } else {
                            for (ox, d) in orow.iter_mut().enumerate() {
                                *d += t * prow[off + ox * sw] as i32;
                            }
                        }
                    }
                }
            }
        });
    out
}

/// Raw accumulators `[N, O]` of a linear layer on quantized `[N, F]` (or `[N, F, 1, 1]`) input.
pub fn linear_acc(x: &QTensor, w: &PackedWeights) -> Result<Vec<i32>> {
    let n = x.shape.first().copied().unwrap_or(0);
    let f = x.codes.len().checked_div(n).unwrap_or(0);
    if f != w.k {
        return Err(Error::Engine(format!(
            "integer linear: {f} input features for weights of {} inputs",
            w.k
        )));
    }
    let z = x.params.zero_point;
    // Columns are the batch: b[k, n] = x[n, k] − z.
    let mut cols = vec![0i16; f * n];
    for (i, row) in x.codes.chunks(f).enumerate() {
        for (k, &q) in row.iter().enumerate() {
            cols[k * n + i] = (q as i32 - z) as i16;
        }
    }
    let mut inter = Vec::new();
    let kp = pack_b(&cols, f, n, &mut inter);
    let (a, _) = centered_rows(w, 0, w.cout);
    let mut on = vec![0i32; w.cout * n];
    gemm_i16(&a, w.cout, kp, &inter, n, &mut on);
    let mut out = vec![0i32; n * w.cout];
    for o in 0..w.cout {
        for i in 0..n {
            out[i * w.cout + o] = on[o * n + i];
        }
    }
    Ok(out)
}
