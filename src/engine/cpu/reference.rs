//! Naive direct implementations of the engine's ops: the oracle that every fast kernel
//! (CPU and GPU) is tested against. Written for obviousness, not speed; f64 accumulation.
//! Layouts: activations NCHW, conv weights `[out, in/groups, kh, kw]`, linear `[out, in]`.
//! Test support: callers pass shapes that fit (as graph shape inference guarantees); a
//! window that does not fit the input panics rather than returning an error.

use crate::graph::{Conv2d, Linear, Pool};
use crate::tensor::Tensor;

/// Direct convolution with groups, stride, dilation, per-side padding and fused activation.
pub fn conv2d(x: &Tensor, w: &Tensor, b: Option<&[f32]>, c: &Conv2d) -> Tensor {
    let (n, ci, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let (oh, ow) = c.out_hw(h, wd).expect("window fits");
    let co = c.out_channels;
    let cig = ci / c.groups;
    let cog = co / c.groups;
    let mut out = Tensor::zeros(&[n, co, oh, ow]);
    for ni in 0..n {
        for o in 0..co {
            let g = o / cog;
            for y in 0..oh {
                for xo in 0..ow {
                    let mut acc = b.map_or(0.0, |b| b[o] as f64);
                    for i in 0..cig {
                        let ic = g * cig + i;
                        for ky in 0..c.kernel[0] {
                            for kx in 0..c.kernel[1] {
                                let iy = (y * c.stride[0] + ky * c.dilation[0]) as isize
                                    - c.padding[0] as isize;
                                let ix = (xo * c.stride[1] + kx * c.dilation[1]) as isize
                                    - c.padding[1] as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                    continue;
                                }
                                let xv =
                                    x.data[((ni * ci + ic) * h + iy as usize) * wd + ix as usize];
                                let wv =
                                    w.data[((o * cig + i) * c.kernel[0] + ky) * c.kernel[1] + kx];
                                acc += xv as f64 * wv as f64;
                            }
                        }
                    }
                    out.data[((ni * co + o) * oh + y) * ow + xo] = c.act.apply(acc as f32);
                }
            }
        }
    }
    out
}

fn pool(x: &Tensor, p: &Pool, max: bool) -> Tensor {
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let (oh, ow) = p.out_hw(h, w).expect("window fits");
    let mut out = Tensor::zeros(&[n, c, oh, ow]);
    for nc in 0..n * c {
        for y in 0..oh {
            for xo in 0..ow {
                let mut best = f64::NEG_INFINITY;
                let mut sum = 0.0f64;
                let mut cnt = 0usize;
                for ky in 0..p.kernel[0] {
                    for kx in 0..p.kernel[1] {
                        let iy = (y * p.stride[0] + ky) as isize - p.padding[0] as isize;
                        let ix = (xo * p.stride[1] + kx) as isize - p.padding[1] as isize;
                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                            continue;
                        }
                        let v = x.data[(nc * h + iy as usize) * w + ix as usize] as f64;
                        best = best.max(v);
                        sum += v;
                        cnt += 1;
                    }
                }
                out.data[(nc * oh + y) * ow + xo] = if max {
                    best as f32
                } else {
                    (sum / p.divisor(cnt).max(1) as f64) as f32
                };
            }
        }
    }
    out
}

/// Max pooling; padded positions are ignored.
pub fn max_pool(x: &Tensor, p: &Pool) -> Tensor {
    pool(x, p, true)
}

/// Average pooling over in-bounds elements, divided by `Pool::divisor`.
pub fn avg_pool(x: &Tensor, p: &Pool) -> Tensor {
    pool(x, p, false)
}

/// Mean over H×W; output `[N, C, 1, 1]`.
pub fn global_avg_pool(x: &Tensor) -> Tensor {
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let data = x
        .data
        .chunks(h * w)
        .map(|ch| (ch.iter().map(|&v| v as f64).sum::<f64>() / (h * w) as f64) as f32)
        .collect();
    Tensor {
        shape: vec![n, c, 1, 1],
        data,
    }
}

/// `y = x·Wᵀ + b` on `[N, in]` (any trailing shape is flattened), fused activation.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&[f32]>, l: &Linear) -> Tensor {
    let n = x.shape[0];
    let f = l.in_features;
    let mut out = Tensor::zeros(&[n, l.out_features]);
    for ni in 0..n {
        for o in 0..l.out_features {
            let mut acc = b.map_or(0.0, |b| b[o] as f64);
            for i in 0..f {
                acc += x.data[ni * f + i] as f64 * w.data[o * f + i] as f64;
            }
            out.data[ni * l.out_features + o] = l.act.apply(acc as f32);
        }
    }
    out
}

/// Inference BatchNorm: `(x − mean)/√(var+eps)·γ + β` per channel.
pub fn batch_norm(
    x: &Tensor,
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f32,
) -> Tensor {
    let (_, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let mut out = x.clone();
    for (i, v) in out.data.iter_mut().enumerate() {
        let ch = (i / (h * w)) % c;
        let k = gamma[ch] as f64 / (var[ch] as f64 + eps as f64).sqrt();
        *v = ((*v as f64 - mean[ch] as f64) * k + beta[ch] as f64) as f32;
    }
    out
}
