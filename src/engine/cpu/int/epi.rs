//! The shared requantization rule ([`Epilogue`]) on channel-minor (NHWC) rows of exact `i32`
//! accumulators: per element `q = quantize(act(m[c]·f32(acc) + b[c]))` (dual layers:
//! `(m[c]·f32(acc) + m2[c]·f32(acc2)) + b[c]`), the same single f32 operations in the same
//! order as `Epilogue::codes`, never contracted (Rust does not form FMAs). The loops run over
//! channels with the per-channel vectors, so they vectorize; on x86-64 they are compiled
//! again with AVX-512 / AVX2 enabled (IEEE ops, `roundeven` included, give the same bits).

use super::isa::Isa;
use crate::engine::requant::Epilogue;
use crate::graph::Activation;

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
    codes_generic(ep, acc, acc2, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn codes_avx512(ep: &Epilogue, acc: &[i32], acc2: Option<&[i32]>, out: &mut [u8]) {
    codes_generic(ep, acc, acc2, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn codes_avx2(ep: &Epilogue, acc: &[i32], acc2: Option<&[i32]>, out: &mut [u8]) {
    codes_generic(ep, acc, acc2, out);
}

#[inline(always)]
fn codes_generic(ep: &Epilogue, acc: &[i32], acc2: Option<&[i32]>, out: &mut [u8]) {
    match ep.act {
        Activation::None => codes_loop(ep, acc, acc2, out, |y| y),
        Activation::Relu => codes_loop(ep, acc, acc2, out, |y| Activation::Relu.apply(y)),
        Activation::Relu6 => codes_loop(ep, acc, acc2, out, |y| Activation::Relu6.apply(y)),
    }
}

#[inline(always)]
fn codes_loop(
    ep: &Epilogue,
    acc: &[i32],
    acc2: Option<&[i32]>,
    out: &mut [u8],
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
                for c in 0..co {
                    let y = (m[c] * a[c] as f32 + m2[c] * a2[c] as f32) + b[c];
                    o[c] = quant(act(y));
                }
            }
        }
        _ => {
            for (o, a) in out.chunks_exact_mut(co).zip(acc.chunks_exact(co)) {
                for c in 0..co {
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
