//! NCHW entry points of the integer kernels (tests, benches and one-off layers): raw exact
//! accumulators Σ (q_w − z_w)(q_x − z_x) of a conv or linear layer on per-tensor quantized
//! activations. They transpose to the kernels' channel-minor layout, run
//! [`super::layer::CpuLayer`] and transpose back; `IntModel` keeps NHWC between layers and
//! calls the layer directly. The caller applies `engine::requant::Epilogue`.

use super::isa::Isa;
use super::layer::{linear_as_conv, CpuLayer};
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
    if c.groups == 0
        || !c.in_channels.is_multiple_of(c.groups)
        || !c.out_channels.is_multiple_of(c.groups)
    {
        return Err(Error::Engine(format!(
            "conv: groups {} must divide {} and {}",
            c.groups, c.in_channels, c.out_channels
        )));
    }
    c.out_hw(h, w)
        .ok_or_else(|| Error::Engine(format!("conv: window {:?} does not fit {h}×{w}", c.kernel)))
}

/// `[N, C, plane]` → `[N, plane, C]` (or back with the roles of `c` and `plane` swapped).
pub fn transpose<T: Copy + Default>(src: &[T], n: usize, c: usize, plane: usize) -> Vec<T> {
    let mut dst = vec![T::default(); src.len()];
    for (s, d) in src
        .chunks_exact(c * plane)
        .zip(dst.chunks_exact_mut(c * plane))
        .take(n)
    {
        for (ch, row) in s.chunks_exact(plane).enumerate() {
            for (p, &v) in row.iter().enumerate() {
                d[p * c + ch] = v;
            }
        }
    }
    dst
}

/// Raw accumulators `[N, CO, OH, OW]` of a conv on quantized input `x`.
pub fn conv2d_acc(x: &QTensor, w: &PackedWeights, c: &Conv2d) -> Result<Vec<i32>> {
    conv2d_acc_with(Isa::detect(), true, x, w, c)
}

/// [`conv2d_acc`] with a chosen instruction set, in parallel (rayon) or on this thread.
pub fn conv2d_acc_with(
    isa: Isa,
    par: bool,
    x: &QTensor,
    w: &PackedWeights,
    c: &Conv2d,
) -> Result<Vec<i32>> {
    let (n, ci, h, wd) = x.dims()?;
    let (oh, ow) = conv_out_hw(c, h, wd)?;
    let cig = c.in_channels / c.groups;
    if ci != c.in_channels || w.cout != c.out_channels || w.k != cig * c.kernel[0] * c.kernel[1] {
        return Err(Error::Engine(format!(
            "integer conv: input {:?} / weights {}×{} do not match {c:?}",
            x.shape, w.cout, w.k
        )));
    }
    let layer = CpuLayer::new(c, w, None);
    let xn = transpose(&x.codes, n, ci, h * wd);
    let co = c.out_channels;
    let mut out = vec![0i32; n * oh * ow * co];
    layer.run(
        isa,
        par,
        &xn,
        (n, h, wd),
        x.params.zero_point,
        (oh, ow),
        &mut out,
        &|a: &[i32], _: Option<&[i32]>, o: &mut [i32]| o.copy_from_slice(a),
    );
    Ok(transpose(&out, n, oh * ow, co))
}

/// Raw accumulators `[N, O]` of a linear layer on quantized `[N, F]` (or `[N, F, 1, 1]`) input.
pub fn linear_acc(x: &QTensor, w: &PackedWeights) -> Result<Vec<i32>> {
    linear_acc_with(Isa::detect(), true, x, w)
}

/// [`linear_acc`] with a chosen instruction set, in parallel or on this thread.
pub fn linear_acc_with(isa: Isa, par: bool, x: &QTensor, w: &PackedWeights) -> Result<Vec<i32>> {
    let n = x.shape.first().copied().unwrap_or(0);
    let f = x.codes.len().checked_div(n).unwrap_or(0);
    if f != w.k {
        return Err(Error::Engine(format!(
            "integer linear: {f} input features for weights of {} inputs",
            w.k
        )));
    }
    let c = linear_as_conv(w);
    let layer = CpuLayer::new(&c, w, None);
    let mut out = vec![0i32; n * w.cout];
    layer.run(
        isa,
        par,
        &x.codes,
        (n, 1, 1),
        x.params.zero_point,
        (1, 1),
        &mut out,
        &|a: &[i32], _: Option<&[i32]>, o: &mut [i32]| o.copy_from_slice(a),
    );
    Ok(out)
}
