//! When integer sums are exact in floating point: the rule both exact simulations (CPU
//! `exec::exact_cpu`, GPU `gpu::conv_exact`) use to decide how they sum. Every term
//! (q_w − z_w)·(q_x − z_x) is an integer; a sum of integers whose running magnitude stays
//! below 2^24 is exact in f32 in any order and with any FMA contraction.

use crate::quant::QParams;

/// Sums of f32 integers below this bound are exact.
pub const F32_EXACT: u64 = 1 << 24;

/// max |q − z| of a quantizer: the largest centred code.
pub fn max_centred(x: &QParams) -> u64 {
    x.zero_point.max(x.qmax() - x.zero_point).max(0) as u64
}

/// Whether sums of K products bounded by the weights' and the input's ranges are exact in f32.
pub fn exact_in_f32(codes: &[u8], params: &[QParams], x: &QParams) -> bool {
    let k = codes.len() / params.len().max(1);
    let wmax = codes
        .chunks(k.max(1))
        .zip(params)
        .flat_map(|(row, p)| row.iter().map(move |&q| (q as i32 - p.zero_point).abs()))
        .max()
        .unwrap_or(0);
    (k as f64) * (wmax as f64) * (max_centred(x) as f64) < F32_EXACT as f64
}

/// Terms per exact f32 partial sum when every term is at most `bound` in magnitude.
pub fn chunk_len(bound: u64) -> u32 {
    ((F32_EXACT - 1) / bound.max(1)).clamp(1, u32::MAX as u64) as u32
}
