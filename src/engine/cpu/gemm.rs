//! Safe wrapper around `matrixmultiply::sgemm`: `C[m×n] = A[m×k] · B[k×n]`, row-major `C`
//! with row stride `ldc`, `A` and `B` with arbitrary (row, column) strides.
//!
//! Threading: the `matrixmultiply` dependency is built with its `threading` feature, so each
//! call already splits the product over the physical cores (`MATMUL_NUM_THREADS` overrides).
//! The CPU engine therefore calls `sgemm` only from outside rayon regions and uses rayon for
//! everything else (im2col, depthwise, epilogues); the two pools never run at the same time,
//! so the 2-core machine is not oversubscribed.

/// A read-only strided matrix view over a slice.
#[derive(Clone, Copy)]
pub(crate) struct MatRef<'a> {
    pub data: &'a [f32],
    /// Row stride, in elements.
    pub rs: usize,
    /// Column stride, in elements.
    pub cs: usize,
}

/// Largest index touched by a `rows × cols` view with the given strides (`rows, cols > 0`).
fn last_index(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    (rows - 1) * rs + (cols - 1) * cs
}

/// `C ← A·B` (β = 0). Panics if a view does not cover its matrix.
pub(crate) fn sgemm(m: usize, k: usize, n: usize, a: MatRef, b: MatRef, c: &mut [f32], ldc: usize) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(m == 1 || ldc >= n, "C rows overlap");
    assert!(last_index(m, n, ldc, 1) < c.len(), "C view out of bounds");
    if k == 0 {
        for row in c.chunks_mut(ldc).take(m) {
            row[..n].fill(0.0);
        }
        return;
    }
    assert!(last_index(m, k, a.rs, a.cs) < a.data.len(), "A view out of bounds");
    assert!(last_index(k, n, b.rs, b.cs) < b.data.len(), "B view out of bounds");
    // SAFETY: the asserts above keep every index of A, B and C inside its slice; C is
    // exclusively borrowed and its rows (stride ldc ≥ n) do not alias.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.data.as_ptr(),
            a.rs as isize,
            a.cs as isize,
            b.data.as_ptr(),
            b.rs as isize,
            b.cs as isize,
            0.0,
            c.as_mut_ptr(),
            ldc as isize,
            1,
        );
    }
}
