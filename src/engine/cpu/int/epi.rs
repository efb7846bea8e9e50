//! The shared requantization rule ([`Epilogue`]) on channel-minor (NHWC) rows of exact `i32`
//! accumulators: per element `q = quantize(act(m[c]·f32(acc) + b[c]))` (dual layers:
//! `(m[c]·f32(acc) + m2[c]·f32(acc2)) + b[c]`), the same single f32 operations in the same
//! order as `Epilogue::codes`, never contracted (Rust does not form FMAs). On x86-64 they
//! are written out in AVX-512 (16 channels, masked tails) and AVX2 (8 channels, scalar
//! tails) intrinsics: IEEE ops, round-to-nearest-even included, give the same bits; the
//! portable loops run over channels with the per-channel vectors.

// The AVX-512 intrinsics are stable from Rust 1.89 (the toolchain here is newer than the
// crate's declared 1.85 MSRV; they are only reached after run-time detection).

use super::isa::Isa;
use crate::engine::requant::Epilogue;
use crate::graph::Activation;
use crate::quant::QParams;

/// Codes of `rows` rows of `co` accumulators (row stride `co`) into `out` (stride `co`).
pub fn codes_rows(isa: Isa, ep: &Epilogue, acc: &[i32], acc2: Option<&[i32]>, out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    match isa {
        // SAFETY: the ISA was detected (`Isa::available`).
        Isa::Vnni => return unsafe { codes_avx512(ep, acc, acc2, out) },
        // SAFETY: as above.
        Isa::Avx2 => return unsafe { codes_avx2(ep, acc, acc2, out) },
        Isa::Portable => {}
    }
    let _ = isa;
    codes_generic(ep, acc, acc2, out, 0);
}

/// AVX-512: 16 channels at a time with masked tails. Each vector op is the IEEE op of the
/// scalar rule (`vroundps` to nearest-even is `round_ties_even`; `max`/`min` differ from
/// Rust's only on NaN, which finite accumulators never produce, and on the sign of a zero,
/// which no code depends on).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn codes_avx512(ep: &Epilogue, acc: &[i32], acc2: Option<&[i32]>, out: &mut [u8]) {
    use std::arch::x86_64::*;
    let Some(q) = ep.out else {
        out.fill(0);
        return;
    };
    let co = ep.mult.len();
    let rows = out.len() / co;
    assert!(acc.len() >= rows * co && acc2.is_none_or(|a| a.len() >= rows * co));
    assert!(ep.bias.len() >= co && ep.mult2.as_ref().is_none_or(|m| m.len() >= co));
    let m2 = match (acc2, &ep.mult2) {
        (Some(a2), Some(m2)) => Some((a2, m2)),
        _ => None,
    };
    let inv = _mm512_set1_ps(q.inv_scale());
    let z = _mm512_set1_ps(q.zero_point as f32);
    let hi = _mm512_set1_ps(q.qmax() as f32);
    let zero = _mm512_setzero_ps();
    let six = _mm512_set1_ps(6.0);
    for r in 0..rows {
        for c0 in (0..co).step_by(16) {
            let k: __mmask16 = if co - c0 >= 16 {
                0xffff
            } else {
                (1u16 << (co - c0)) - 1
            };
            let i = r * co + c0;
            // SAFETY: lanes selected by k lie inside rows·co elements (asserted above) and
            // inside the co per-channel vectors.
            unsafe {
                let a = _mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(k, acc.as_ptr().add(i)));
                let m = _mm512_maskz_loadu_ps(k, ep.mult.as_ptr().add(c0));
                let b = _mm512_maskz_loadu_ps(k, ep.bias.as_ptr().add(c0));
                let mut y = _mm512_mul_ps(m, a);
                if let Some((a2, m2)) = m2 {
                    let v2 = _mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(k, a2.as_ptr().add(i)));
                    let mm2 = _mm512_maskz_loadu_ps(k, m2.as_ptr().add(c0));
                    y = _mm512_add_ps(y, _mm512_mul_ps(mm2, v2));
                }
                y = _mm512_add_ps(y, b);
                y = match ep.act {
                    Activation::None => y,
                    Activation::Relu => _mm512_max_ps(y, zero),
                    Activation::Relu6 => _mm512_min_ps(_mm512_max_ps(y, zero), six),
                };
                let t = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                    _mm512_mul_ps(y, inv),
                );
                let t = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(t, z), zero), hi);
                _mm512_mask_cvtusepi32_storeu_epi8(
                    out.as_mut_ptr().add(i) as *mut _,
                    k,
                    _mm512_cvttps_epi32(t),
                );
            }
        }
    }
}

/// AVX2: 8 channels at a time, the same IEEE ops as [`codes_avx512`] (`vroundps` to
/// nearest-even; separate `vmulps`/`vaddps`, never FMA), packed to bytes by saturating
/// packs of values already clamped to [0, qmax]; the channels past the last full 8 take
/// the scalar rule.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn codes_avx2(ep: &Epilogue, acc: &[i32], acc2: Option<&[i32]>, out: &mut [u8]) {
    use std::arch::x86_64::*;
    let Some(q) = ep.out else {
        out.fill(0);
        return;
    };
    let co = ep.mult.len();
    let rows = out.len() / co;
    assert!(acc.len() >= rows * co && acc2.is_none_or(|a| a.len() >= rows * co));
    assert!(ep.bias.len() >= co && ep.mult2.as_ref().is_none_or(|m| m.len() >= co));
    let m2 = match (acc2, &ep.mult2) {
        (Some(a2), Some(m2)) => Some((a2, m2)),
        _ => None,
    };
    let full = co / 8 * 8;
    let inv = _mm256_set1_ps(q.inv_scale());
    let z = _mm256_set1_ps(q.zero_point as f32);
    let hi = _mm256_set1_ps(q.qmax() as f32);
    let zero = _mm256_setzero_ps();
    let six = _mm256_set1_ps(6.0);
    for r in 0..rows {
        for c0 in (0..full).step_by(8) {
            let i = r * co + c0;
            // SAFETY: c0 + 8 ≤ co, so lanes lie inside rows·co elements (asserted above)
            // and inside the co per-channel vectors; 8 bytes of `out` from i (out holds
            // rows·co).
            unsafe {
                let a = _mm256_cvtepi32_ps(_mm256_loadu_si256(acc.as_ptr().add(i) as *const _));
                let m = _mm256_loadu_ps(ep.mult.as_ptr().add(c0));
                let b = _mm256_loadu_ps(ep.bias.as_ptr().add(c0));
                let mut y = _mm256_mul_ps(m, a);
                if let Some((a2, m2)) = m2 {
                    let v2 = _mm256_cvtepi32_ps(_mm256_loadu_si256(a2.as_ptr().add(i) as *const _));
                    let mm2 = _mm256_loadu_ps(m2.as_ptr().add(c0));
                    y = _mm256_add_ps(y, _mm256_mul_ps(mm2, v2));
                }
                y = _mm256_add_ps(y, b);
                y = match ep.act {
                    Activation::None => y,
                    Activation::Relu => _mm256_max_ps(y, zero),
                    Activation::Relu6 => _mm256_min_ps(_mm256_max_ps(y, zero), six),
                };
                let t = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                    _mm256_mul_ps(y, inv),
                );
                let t = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(t, z), zero), hi);
                let v = _mm256_cvttps_epi32(t);
                let w = _mm_packus_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
                _mm_storel_epi64(out.as_mut_ptr().add(i) as *mut _, _mm_packus_epi16(w, w));
            }
        }
    }
    if full < co {
        codes_generic(ep, acc, acc2, out, full);
    }
}

#[inline(always)]
/// Channels `from..` of every row.
fn codes_generic(ep: &Epilogue, acc: &[i32], acc2: Option<&[i32]>, out: &mut [u8], from: usize) {
    match ep.act {
        Activation::None => codes_loop(ep, acc, acc2, out, from, |y| y),
        Activation::Relu => codes_loop(ep, acc, acc2, out, from, |y| Activation::Relu.apply(y)),
        Activation::Relu6 => codes_loop(ep, acc, acc2, out, from, |y| Activation::Relu6.apply(y)),
    }
}

#[inline(always)]
fn codes_loop(
    ep: &Epilogue,
    acc: &[i32],
    acc2: Option<&[i32]>,
    out: &mut [u8],
    from: usize,
    act: impl Fn(f32) -> f32,
) {
    let Some(q) = ep.out else {
        out.fill(0);
        return;
    };
    let co = ep.mult.len();
    let inv = q.inv_scale();
    let quant = |y: f32| q.quantize_with(y, inv);
    let (m, b) = (&ep.mult[..co], &ep.bias[..co]);
    match (acc2, &ep.mult2) {
        (Some(acc2), Some(m2)) => {
            let m2 = &m2[..co];
            for ((o, a), a2) in out
                .chunks_exact_mut(co)
                .zip(acc.chunks_exact(co))
                .zip(acc2.chunks_exact(co))
            {
                for c in from..co {
                    let y = (m[c] * a[c] as f32 + m2[c] * a2[c] as f32) + b[c];
                    o[c] = quant(act(y));
                }
            }
        }
        _ => {
            for (o, a) in out.chunks_exact_mut(co).zip(acc.chunks_exact(co)) {
                for c in from..co {
                    o[c] = quant(act(m[c] * a[c] as f32 + b[c]));
                }
            }
        }
    }
}

/// `act(acc_real)` (the logits) of rows of `co` accumulators.
pub fn reals_rows(ep: &Epilogue, acc: &[i32], acc2: Option<&[i32]>, out: &mut [f32]) {
    let co = ep.mult.len();
    for (r, o) in out.chunks_exact_mut(co).enumerate() {
        for (c, d) in o.iter_mut().enumerate() {
            let a2 = acc2.map_or(0.0, |v| v[r * co + c] as f32);
            *d = ep.real(c, acc[r * co + c] as f32, a2);
        }
    }
}

/// `QParams::quantize` of every value of `x` into `out` (the graph input).
pub fn quantize_slice(isa: Isa, q: &QParams, x: &[f32], out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Vnni {
        // SAFETY: AVX-512 F/BW/VL were detected with the ISA.
        return unsafe { quantize_avx512(q, x, out) };
    }
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx2 {
        // SAFETY: AVX2 was detected with the ISA.
        return unsafe { quantize_avx2(q, x, out) };
    }
    let _ = isa;
    let inv = q.inv_scale();
    for (d, &v) in out.iter_mut().zip(x) {
        *d = q.quantize_with(v, inv);
    }
}

/// As [`codes_avx512`]; NaN inputs take the scalar rule (`max` maps NaN to 0 there).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn quantize_avx512(q: &QParams, x: &[f32], out: &mut [u8]) {
    use std::arch::x86_64::*;
    let inv = q.inv_scale();
    let n = x.len().min(out.len());
    let (vinv, z) = (_mm512_set1_ps(inv), _mm512_set1_ps(q.zero_point as f32));
    let (zero, hi) = (_mm512_setzero_ps(), _mm512_set1_ps(q.qmax() as f32));
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: i + 16 ≤ n ≤ both lengths.
        unsafe {
            let v = _mm512_loadu_ps(x.as_ptr().add(i));
            if _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v) != 0 {
                break;
            }
            let t = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                _mm512_mul_ps(v, vinv),
            );
            let t = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(t, z), zero), hi);
            _mm512_mask_cvtusepi32_storeu_epi8(
                out.as_mut_ptr().add(i) as *mut _,
                0xffff,
                _mm512_cvttps_epi32(t),
            );
        }
        i += 16;
    }
    for (d, &v) in out[i..n].iter_mut().zip(&x[i..n]) {
        *d = q.quantize_with(v, inv);
    }
}

/// As [`quantize_avx512`], 8 values at a time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_avx2(q: &QParams, x: &[f32], out: &mut [u8]) {
    use std::arch::x86_64::*;
    let inv = q.inv_scale();
    let n = x.len().min(out.len());
    let (vinv, z) = (_mm256_set1_ps(inv), _mm256_set1_ps(q.zero_point as f32));
    let (zero, hi) = (_mm256_setzero_ps(), _mm256_set1_ps(q.qmax() as f32));
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 ≤ n ≤ both lengths.
        unsafe {
            let v = _mm256_loadu_ps(x.as_ptr().add(i));
            if _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_UNORD_Q>(v, v)) != 0 {
                break;
            }
            let t = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                _mm256_mul_ps(v, vinv),
            );
            let t = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(t, z), zero), hi);
            let v = _mm256_cvttps_epi32(t);
            let w = _mm_packus_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
            _mm_storel_epi64(out.as_mut_ptr().add(i) as *mut _, _mm_packus_epi16(w, w));
        }
        i += 8;
    }
    for (d, &v) in out[i..n].iter_mut().zip(&x[i..n]) {
        *d = q.quantize_with(v, inv);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every ISA gives `Epilogue::code` bit for bit: 4- and 8-bit outputs, every activation,
    /// single and dual layers, channel counts with and without SIMD tails, accumulators
    /// that clamp at both ends; and the input quantization (NaN included) gives
    /// `QParams::quantize`.
    #[test]
    fn codes_and_input_quantization_match_the_rule_on_every_isa() {
        let mut seed = 3u64;
        let mut next = |m: u32| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as u32 % m
        };
        for (co, bits, dual) in [(8, 4, false), (19, 4, true), (33, 8, false), (3, 8, true)] {
            for act in [Activation::None, Activation::Relu, Activation::Relu6] {
                let rows = 5;
                let ws: Vec<f32> = (0..co).map(|c| 0.01 + c as f32 * 0.003).collect();
                let bias: Vec<f32> = (0..co).map(|c| c as f32 * 0.1 - 1.0).collect();
                let out = QParams::from_range(-3.0, 5.0, bits).unwrap();
                let ep = Epilogue::new(&ws, dual.then_some(&ws[..]), 0.5, &bias, act, Some(out));
                let acc: Vec<i32> = (0..rows * co)
                    .map(|i| match i % 7 {
                        0 => i32::MAX / 4,
                        1 => -(i32::MAX / 4),
                        _ => next(4001) as i32 - 2000,
                    })
                    .collect();
                let acc2: Vec<i32> = acc.iter().map(|&v| v / 3 + 7).collect();
                let a2 = dual.then_some(&acc2[..]);
                let want: Vec<u8> = (0..rows * co)
                    .map(|i| ep.code(i % co, acc[i] as f32, a2.map_or(0.0, |a| a[i] as f32)))
                    .collect();
                for isa in Isa::available() {
                    let mut got = vec![0u8; rows * co];
                    codes_rows(isa, &ep, &acc, a2, &mut got);
                    assert_eq!(got, want, "{isa:?} co {co} bits {bits} {act:?}");
                }
            }
        }
        let q = QParams::from_range(-1.0, 2.0, 8).unwrap();
        let x: Vec<f32> = (0..37)
            .map(|i| {
                if i == 20 {
                    f32::NAN
                } else {
                    i as f32 * 0.11 - 1.5 + q.scale * 0.5
                }
            })
            .collect();
        let want: Vec<u8> = x.iter().map(|&v| q.quantize(v)).collect();
        for isa in Isa::available() {
            let mut got = vec![0u8; x.len()];
            quantize_slice(isa, &q, &x, &mut got);
            assert_eq!(got, want, "{isa:?}");
        }
    }
}
