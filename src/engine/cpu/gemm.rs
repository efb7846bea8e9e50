//! Safe wrapper around `matrixmultiply::sgemm`: `C[m×n] = A[m×k] · B[k×n]`, row-major `C`
//! with row stride `ldc`, `A` and `B` with arbitrary (row, column) strides.
//!
//! Threading: the `matrixmultiply` dependency is built with its `threading` feature, so a
//! large call already splits the product over the physical cores (`MATMUL_NUM_THREADS`
//! overrides). Large products are called from outside rayon regions and use those threads;
//! rayon runs everything else. Products with `m·k + k·n < ST_LIMIT` stay on the calling
//! thread (matrixmultiply 0.3 threads only from 2¹⁵ on: `LoopThreadConfig::new_impl`), so the
//! convolution runs those as rayon tasks. Either way the two pools never run at once and the
//! 2-core machine is not oversubscribed.

/// `m·k + k·n` below which matrixmultiply keeps a product on the calling thread.
pub(crate) const ST_LIMIT: usize = 1 << 15;

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
    // SAFETY: the asserts above keep every index of C inside its exclusively borrowed slice,
    // and its rows do not overlap.
    unsafe { sgemm_raw(m, k, n, a, b, c.as_mut_ptr(), ldc) }
}

/// `C ← A·B` with `C` given as a pointer (for tasks writing disjoint column blocks of one
/// matrix). A and B are bounds-checked.
///
/// # Safety
/// `c + i·ldc + j` for `i < m, j < n` must be valid for writes, not accessed by anything else
/// during the call, and distinct (`m == 1 || ldc ≥ n`).
pub(crate) unsafe fn sgemm_raw(
    m: usize,
    k: usize,
    n: usize,
    a: MatRef,
    b: MatRef,
    c: *mut f32,
    ldc: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for i in 0..m {
            // SAFETY: row i of C is valid for n writes (caller's contract).
            unsafe { std::slice::from_raw_parts_mut(c.add(i * ldc), n).fill(0.0) };
        }
        return;
    }
    assert!(
        last_index(m, k, a.rs, a.cs) < a.data.len(),
        "A view out of bounds"
    );
    assert!(
        last_index(k, n, b.rs, b.cs) < b.data.len(),
        "B view out of bounds"
    );
    // SAFETY: every index of A and B is checked above; C is the caller's contract.
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
            c,
            ldc as isize,
            1,
        );
    }
}
