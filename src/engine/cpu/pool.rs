//! Pooling over NCHW planes (no dilation):
//!
//! - max: `y[y,x] = max over in-bounds taps of X[y·sy + ky − pt, x·sx + kx − pl]` (padding is
//!   −∞, so it never wins; a window entirely in padding gives −∞, as the reference does);
//! - avg: the sum over in-bounds taps divided by their count `cy(y)·cx(x)` (padding is not
//!   counted, TF "SAME" semantics);
//! - global average: the mean of each `H×W` plane, `[N, C, H, W] → [N, C, 1, 1]`.
//!
//! Windows use the [`Polyphase`] wide-grid layout of the depthwise kernel, so every tap is
//! a contiguous run. Parallel (rayon) over planes.

use rayon::prelude::*;

use super::elementwise::alloc_out;
use super::plane::Polyphase;
use crate::graph::Pool;
use crate::tensor::Tensor;

/// Max pooling; padded positions are ignored.
pub fn max_pool(x: &Tensor, p: &Pool) -> Tensor {
    pool(x, p, true)
}

/// Average pooling over in-bounds elements, divided by their count or by kh·kw
/// (`count_include_pad`).
pub fn avg_pool(x: &Tensor, p: &Pool) -> Tensor {
    pool(x, p, false)
}

/// Number of window positions `k` with `0 ≤ o·s + k − pad < len`, for each output `o`.
fn in_bounds_counts(out: usize, len: usize, k: usize, s: usize, pad: usize) -> Vec<f32> {
    (0..out)
        .map(|o| {
            let lo = (o * s).max(pad);
            let hi = (o * s + k).min(len + pad);
            hi.saturating_sub(lo) as f32
        })
        .collect()
}

fn pool(x: &Tensor, p: &Pool, max: bool) -> Tensor {
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let Some((oh, ow)) = p.out_hw(h, w) else {
        panic!("pool: window {:?} does not fit a {h}×{w} input", p.kernel);
    };
    let mut out = alloc_out(&[n, c, oh, ow]);
    let ohw = oh * ow;
    if out.data.is_empty() {
        return out;
    }
    let (kh, kw) = (p.kernel[0], p.kernel[1]);
    let (cy, cx) = if p.count_include_pad {
        (vec![kh as f32; oh], vec![kw as f32; ow])
    } else {
        (
            in_bounds_counts(oh, h, kh, p.stride[0], p.padding[0]),
            in_bounds_counts(ow, w, kw, p.stride[1], p.padding[1]),
        )
    };
    let fill = if max { f32::NEG_INFINITY } else { 0.0 };
    let hw = h * w;
    out.data.par_chunks_mut(ohw).enumerate().for_each_init(
        || (Polyphase::default(), Vec::new()),
        |(pp, wide), (idx, dst)| {
            pp.shape(h, w, p.padding, p.stride);
            let ws = pp.ws();
            let wide_len = oh * ws;
            let max_off = (0..kh)
                .flat_map(|ky| (0..kw).map(move |kx| (ky, kx)))
                .map(|(ky, kx)| pp.offset(ky, kx))
                .max()
                .unwrap_or(0);
            let src = &x.data[idx * hw..(idx + 1) * hw];
            pp.build(src, h, w, p.padding, p.stride, fill, max_off + wide_len);
            wide.clear();
            wide.resize(wide_len, fill);
            for ky in 0..kh {
                for kx in 0..kw {
                    let s = &pp.data[pp.offset(ky, kx)..][..wide_len];
                    if max {
                        wide.iter_mut().zip(s).for_each(|(a, v)| *a = a.max(*v));
                    } else {
                        wide.iter_mut().zip(s).for_each(|(a, v)| *a += *v);
                    }
                }
            }
            for (y, row) in dst.chunks_exact_mut(ow).enumerate() {
                let src = &wide[y * ws..y * ws + ow];
                if max {
                    row.copy_from_slice(src);
                } else {
                    let cnt_y = cy[y];
                    for ((d, s), cnt_x) in row.iter_mut().zip(src).zip(&cx) {
                        *d = s / (cnt_y * cnt_x).max(1.0);
                    }
                }
            }
        },
    );
    out
}

/// Mean over H×W; output `[N, C, 1, 1]`. Eight-lane f32 partial sums per plane.
pub fn global_avg_pool(x: &Tensor) -> Tensor {
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let hw = h * w;
    let mut out = alloc_out(&[n, c, 1, 1]);
    if hw == 0 {
        out.data.fill(0.0);
        return out;
    }
    out.data
        .par_iter_mut()
        .zip(x.data.par_chunks(hw))
        .with_min_len(64)
        .for_each(|(o, plane)| {
            let mut lanes = [0.0f32; 8];
            let mut chunks = plane.chunks_exact(8);
            for ch in &mut chunks {
                for (l, v) in lanes.iter_mut().zip(ch) {
                    *l += v;
                }
            }
            let tail: f32 = chunks.remainder().iter().sum();
            *o = (lanes.iter().sum::<f32>() + tail) / hw as f32;
        });
    out
}
