//! Feature-map product and channel shuffle, f32 NCHW (CPU twins of `shaders/mul.wgsl` and
//! `shaders/shuffle.wgsl`).
//!
//! `mul`: `y = a · b` with `b` of `a`'s shape, or one value per image and channel (a gate of
//! `[N, C, 1, 1]` or `[N, C]`) broadcast over the plane; one f32 product each, so every
//! device agrees bit for bit. `channel_shuffle`: output channel `o` is input channel
//! [`shuffle_source`]`(C, groups, o)` (a copy).

use rayon::prelude::*;

use crate::graph::shuffle_source;
use crate::tensor::Tensor;

/// `a · b`, `b` of `a`'s shape or `[N, C]` values broadcast over each `a` plane.
pub fn mul(a: &Tensor, b: &Tensor) -> Tensor {
    let n = a.shape[0].max(1);
    let c = a.shape.get(1).copied().unwrap_or(1).max(1);
    let plane = (a.numel() / (n * c)).max(1);
    let mut y = a.clone();
    if b.numel() == a.numel() {
        y.data
            .par_iter_mut()
            .zip(&b.data)
            .for_each(|(x, &g)| *x *= g);
    } else {
        debug_assert_eq!(b.numel(), n * c);
        y.data
            .par_chunks_mut(plane)
            .zip(&b.data)
            .for_each(|(p, &g)| p.iter_mut().for_each(|x| *x *= g));
    }
    y
}

/// Channel shuffle of an NCHW tensor in `groups` groups.
pub fn channel_shuffle(x: &Tensor, groups: usize) -> Tensor {
    let n = x.shape[0].max(1);
    let c = x.shape.get(1).copied().unwrap_or(1).max(1);
    let plane = (x.numel() / (n * c)).max(1);
    let mut y = x.clone();
    y.data.par_chunks_mut(plane).enumerate().for_each(|(i, p)| {
        let (img, o) = (i / c, i % c);
        let src = (img * c + shuffle_source(c, groups, o)) * plane;
        p.copy_from_slice(&x.data[src..src + plane]);
    });
    y
}
