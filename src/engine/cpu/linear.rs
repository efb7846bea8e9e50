//! Fully connected layer: `y[n, o] = act(b[o] + Σᵢ x[n, i] · W[o, i])`, `x` flattened to
//! `[N, in]` (any trailing shape), weights `[out, in]`. One `sgemm` with `B = Wᵀ` read through
//! strides (no transpose copy), then the bias + activation epilogue.

use super::elementwise::{alloc_out, apply_act};
use super::gemm::{sgemm, MatRef};
use crate::graph::Linear;
use crate::tensor::Tensor;

/// Fast linear layer with the semantics of [`super::reference::linear`].
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&[f32]>, l: &Linear) -> Tensor {
    let n = x.shape[0];
    let (fi, fo) = (l.in_features, l.out_features);
    debug_assert_eq!(x.data.len(), n * fi);
    debug_assert_eq!(w.data.len(), fo * fi);
    let mut out = alloc_out(&[n, fo]);
    if out.data.is_empty() {
        return out;
    }
    sgemm(
        n,
        fi,
        fo,
        MatRef {
            data: &x.data,
            rs: fi,
            cs: 1,
        },
        MatRef {
            data: &w.data,
            rs: 1,
            cs: fi,
        },
        &mut out.data,
        fo,
    );
    for row in out.data.chunks_exact_mut(fo) {
        if let Some(b) = b {
            row.iter_mut().zip(b).for_each(|(v, bo)| *v += bo);
        }
        apply_act(row, l.act);
    }
    out
}
