//! Local response normalization across channels (ONNX `LRN`) on an NCHW f32 tensor:
//! y = x · (bias + (alpha/size) · Σ x²)^(−beta), the sum over the channels of
//! [`lrn_window`] at each pixel, in channel order, in f32 (twin of `shaders/lrn.wgsl`'s
//! `lrn`). Integer paths use the table of `engine::requant::lrn_table` instead.

use rayon::prelude::*;

use crate::graph::op::lrn_window;
use crate::tensor::Tensor;

/// LRN of an `[N, C, H, W]` (or `[N, C]`) tensor.
pub fn lrn(x: &Tensor, size: usize, alpha: f32, beta: f32, bias: f32) -> Tensor {
    let (n, c) = (x.shape[0], x.shape.get(1).copied().unwrap_or(1));
    let plane = x.data.len() / (n * c).max(1);
    let k = alpha / size.max(1) as f32;
    let mut out = vec![0f32; x.data.len()];
    out.par_chunks_mut(plane.max(1))
        .enumerate()
        .for_each(|(i, o)| {
            let (img, ch) = (i / c, i % c);
            let (lo, hi) = lrn_window(ch, c, size);
            let base = img * c * plane;
            for (p, d) in o.iter_mut().enumerate() {
                let sq: f32 = (lo..hi)
                    .map(|j| {
                        let v = x.data[base + j * plane + p];
                        v * v
                    })
                    .sum();
                *d = x.data[base + ch * plane + p] * (bias + k * sq).powf(-beta);
            }
        });
    Tensor {
        shape: x.shape.clone(),
        data: out,
    }
}
