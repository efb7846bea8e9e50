//! `fake_quant_…` (codes and values bit-exact) and `mmse_…` (curve within a named bound,
//! choice optimal within it).

use proptest::prelude::*;
use ptq4::engine::cpu::{fake_quant as cpu_fq, histogram as cpu_hist, mmse as cpu_mmse};
use ptq4::engine::gpu::{fake_quant, mmse};
use ptq4::engine::layout::ChannelLayout;

use super::conv::data;
use super::{ctx, runner, Tol};

/// Scales: powers of two make `x·(1/s)` exact, so half-integer data hits exact ties.
const SCALES: [f32; 5] = [0.25, 0.5, 2.0, 0.037_1, 1.3e-3];

fn fq_strategy() -> impl Strategy<Value = (ChannelLayout, Vec<cpu_fq::ChannelQuant>, Vec<f32>)> {
    (
        1usize..=3,
        1usize..=5,
        1usize..=300,
        any::<bool>(),
        any::<u64>(),
        prop::sample::select(vec![1.0f32, 1e6]),
        any::<bool>(),
    )
        .prop_flat_map(|(outer, channels, inner, per_tensor, seed, mag, ties)| {
            let layout = if per_tensor {
                ChannelLayout::per_tensor(outer * channels * inner)
            } else {
                ChannelLayout {
                    outer,
                    channels,
                    inner,
                }
            };
            let q = prop::collection::vec(
                (0usize..SCALES.len(), -5i32..=20, 0u32..=8),
                layout.channels,
            )
            .prop_map(|v| {
                v.into_iter()
                    .map(|(s, z, bits)| cpu_fq::ChannelQuant {
                        scale: SCALES[s],
                        zero: z as f32,
                        bits,
                    })
                    .collect::<Vec<_>>()
            });
            let mut x = data(layout.len(), seed, 8.0 * mag);
            if ties {
                // Half-integer multiples of the scale: round-half-to-even decides them.
                for (i, v) in x.iter_mut().enumerate() {
                    *v = (v.trunc() + 0.5) * if i % 2 == 0 { 0.25 } else { 0.5 };
                }
            }
            (Just(layout), q, Just(x))
        })
}

#[test]
fn fake_quant_codes_and_values_are_exact() {
    let Some(ctx) = ctx() else { return };
    runner(64)
        .run(&fq_strategy(), |(layout, q, x)| {
            let (gc, gv) = fake_quant::fake_quant(ctx, &x, &layout, &q).unwrap();
            let (cc, cv) = cpu_fq::fake_quant(&x, &layout, &q).unwrap();
            assert_eq!(gc, cc, "codes");
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&gv), bits(&cv), "dequantized values");
            Ok(())
        })
        .unwrap();
}

#[test]
fn fake_quant_ties_go_to_even() {
    let Some(ctx) = ctx() else { return };
    let q = [cpu_fq::ChannelQuant {
        scale: 1.0,
        zero: 0.0,
        bits: 8,
    }];
    let x = [0.5f32, 1.5, 2.5, 3.5, 254.5, 255.5, -0.5];
    let (codes, _) =
        fake_quant::fake_quant(ctx, &x, &ChannelLayout::per_tensor(x.len()), &q).unwrap();
    assert_eq!(codes, [0, 2, 2, 4, 254, 255, 0]);
}

#[test]
fn mmse_curve_and_choice_match_cpu() {
    let Some(ctx) = ctx() else { return };
    let strategy = (
        1usize..=4,
        1usize..=600,
        1u32..=8,
        1usize..=40,
        any::<u64>(),
        prop::sample::select(vec![1.0f32, 1e4]),
        any::<bool>(),
    );
    runner(48)
        .run(&strategy, |(channels, bins, bits, k, seed, scale, relu)| {
            let bins = bins as u32;
            let inner = 257;
            let layout = ChannelLayout {
                outer: 1,
                channels,
                inner,
            };
            let mut x = data(layout.len(), seed, scale);
            // A heavy tail: every 50th value is 20× larger.
            for v in x.iter_mut().step_by(50) {
                *v *= 20.0;
            }
            if relu {
                x.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            let ranges: Vec<(f32, f32)> = (0..channels)
                .map(|c| {
                    let ch = &x[c * inner..(c + 1) * inner];
                    (
                        ch.iter().fold(0.0f32, |a, &b| a.min(b)),
                        ch.iter().fold(0.0f32, |a, &b| a.max(b)),
                    )
                })
                .collect();
            let counts = cpu_hist::histogram(&x, &layout, &ranges, bins).unwrap();
            let bits: Vec<u32> = (0..channels as u32).map(|c| 1 + (bits + c) % 8).collect();
            let grid = cpu_mmse::clip_grid(k);
            let gpu = mmse::mmse_search(ctx, &counts, &ranges, bins, &bits, &grid).unwrap();
            let cpu = cpu_mmse::mse_curve(&counts, &ranges, bins, &bits, &grid).unwrap();
            for c in 0..channels {
                let r = f64::from(ranges[c].0.abs().max(ranges[c].1.abs()));
                let tol = Tol::mse_curve(bins).bound(r * r);
                let (g, cp) = (&gpu.curve[c * k..(c + 1) * k], &cpu[c * k..(c + 1) * k]);
                for j in 0..k {
                    let d = (g[j] as f64 - cp[j]).abs();
                    assert!(
                        d <= tol,
                        "channel {c} candidate {j}: gpu {} cpu {} tol {tol}",
                        g[j],
                        cp[j]
                    );
                }
                let best = cpu_mmse::best_indices(cp, k)[0];
                let chosen = gpu.choices[c].index;
                assert!(
                    cp[chosen] <= cp[best] + 2.0 * tol,
                    "channel {c}: gpu chose {chosen}, cpu {best}"
                );
                assert_eq!(gpu.choices[c].hi, ranges[c].1 * grid[chosen]);
            }
            Ok(())
        })
        .unwrap();
}
