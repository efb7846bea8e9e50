//! The float kernels' parity check, written once for every device (the CPU kernels of each
//! instruction set, the GPU): deterministic data, the f64 oracle `engine::cpu::reference`,
//! the magnitude `Σ|terms|` of every output (the oracle run on `|x|, |w|, |b|` without the
//! activation; ReLU and ReLU6 are 1-Lipschitz) and the [`Tol`] the device's summation order
//! earns, supplied by the caller.

use ptq4::engine::cpu::reference;
use ptq4::graph::{Activation, Conv2d, Linear, Pool};
use ptq4::Tensor;

use super::tol::Tol;

/// Deterministic values in `[-scale, scale)` (splitmix64).
pub fn splitmix(len: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// Elementwise `|t|`.
pub fn abs(t: &Tensor) -> Tensor {
    Tensor {
        shape: t.shape.clone(),
        data: t.data.iter().map(|v| v.abs()).collect(),
    }
}

fn abs_bias(b: Option<&[f32]>) -> Option<Vec<f32>> {
    b.map(|b| b.iter().map(|v| v.abs()).collect())
}

/// A device's conv2d output `got` against the oracle, within `tol` of `Σ|terms|`.
#[track_caller]
pub fn assert_conv2d(
    what: &str,
    got: &Tensor,
    (x, w, b): (&Tensor, &Tensor, Option<&[f32]>),
    c: &Conv2d,
    tol: Tol,
) {
    let want = reference::conv2d(x, w, b, c);
    let lin = Conv2d {
        act: Activation::None,
        ..c.clone()
    };
    let mag = reference::conv2d(&abs(x), &abs(w), abs_bias(b).as_deref(), &lin);
    assert_eq!(got.shape, want.shape, "{what}: shape");
    tol.assert_all(what, &got.data, &want.data, |i| f64::from(mag.data[i]));
}

/// A device's linear output `got` against the oracle, within `tol` of `Σ|terms|`.
#[track_caller]
pub fn assert_linear(
    what: &str,
    got: &Tensor,
    (x, w, b): (&Tensor, &Tensor, Option<&[f32]>),
    l: &Linear,
    tol: Tol,
) {
    let want = reference::linear(x, w, b, l);
    let lin = Linear {
        act: Activation::None,
        ..l.clone()
    };
    let mag = reference::linear(&abs(x), &abs(w), abs_bias(b).as_deref(), &lin);
    assert_eq!(got.shape, want.shape, "{what}: shape");
    tol.assert_all(what, &got.data, &want.data, |i| f64::from(mag.data[i]));
}

/// A device's average pool `got` against the oracle, within `tol` of the mean of `|x|`.
#[track_caller]
pub fn assert_avg_pool(what: &str, got: &Tensor, x: &Tensor, p: &Pool, tol: Tol) {
    let want = reference::avg_pool(x, p);
    let mag = reference::avg_pool(&abs(x), p);
    assert_eq!(got.shape, want.shape, "{what}: shape");
    tol.assert_all(what, &got.data, &want.data, |i| f64::from(mag.data[i]));
}

/// A device's global average pool `got` against the oracle, within `tol` of the mean of `|x|`.
#[track_caller]
pub fn assert_global_avg_pool(what: &str, got: &Tensor, x: &Tensor, tol: Tol) {
    let want = reference::global_avg_pool(x);
    let mag = reference::global_avg_pool(&abs(x));
    assert_eq!(got.shape, want.shape, "{what}: shape");
    tol.assert_all(what, &got.data, &want.data, |i| f64::from(mag.data[i]));
}
