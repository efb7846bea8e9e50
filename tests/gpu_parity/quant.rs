//! `fake_quant_…` (codes and values bit-exact against `QParams`) and `mmse_…` (the planner's
//! objective within the launcher's derived bound, the same first minimum where there is no
//! near-tie, and the whole search bit-identical to the CPU's).

use std::cell::Cell;

use proptest::prelude::*;
use ptq4::engine::cpu::{fake_quant as cpu_fq, histogram as cpu_hist};
use ptq4::engine::gpu::fake_quant;
use ptq4::engine::gpu::mmse::GpuMse;
use ptq4::engine::layout::ChannelLayout;
use ptq4::graph::Activation;
use ptq4::quant::mmse::{mmse_histogram, mmse_histogram_with, mse_of_quantizer, MseEval};
use ptq4::quant::stats::Histogram;
use ptq4::quant::QParams;

use super::conv::data;
use super::{ctx, runner};

/// Scales: powers of two make `x·(1/s)` exact, so half-integer data hits exact ties.
const SCALES: [f32; 5] = [0.25, 0.5, 2.0, 0.037_1, 1.3e-3];

fn fq_strategy() -> impl Strategy<Value = (ChannelLayout, Vec<QParams>, Vec<f32>)> {
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
            let q =
                prop::collection::vec((0usize..SCALES.len(), -5i32..=20, 0u8..=8), layout.channels)
                    .prop_map(|v| {
                        v.into_iter()
                            .map(|(s, z, bits)| QParams {
                                scale: SCALES[s],
                                zero_point: z,
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
    let q = [QParams {
        scale: 1.0,
        zero_point: 0,
        bits: 8,
    }];
    let x = [0.5f32, 1.5, 2.5, 3.5, 254.5, 255.5, -0.5];
    let (codes, _) =
        fake_quant::fake_quant(ctx, &x, &ChannelLayout::per_tensor(x.len()), &q).unwrap();
    assert_eq!(codes, [0, 2, 2, 4, 254, 255, 0]);
}

/// A histogram of `channels·257` heavy-tailed values (every 50th value 20× larger), after
/// an optional ReLU, over its own [min, max] (or a constant one).
fn mmse_hist(bins: usize, seed: u64, scale: f32, relu: bool, constant: bool) -> Histogram {
    let mut x = data(257, seed, scale);
    for v in x.iter_mut().step_by(50) {
        *v *= 20.0;
    }
    if relu {
        x.iter_mut().for_each(|v| *v = v.max(0.0));
    }
    if constant {
        x.iter_mut().for_each(|v| *v = 0.75 * scale);
    }
    let lo = x.iter().fold(f32::INFINITY, |a, &b| a.min(b));
    let hi = x.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let layout = ChannelLayout::per_tensor(x.len());
    let counts = cpu_hist::histogram(&x, &layout, &[(lo, hi)], bins as u32).unwrap();
    Histogram {
        lo: lo as f64,
        hi: hi as f64,
        counts: counts.into_iter().map(u64::from).collect(),
    }
}

const ACTS: [Activation; 3] = [Activation::None, Activation::Relu, Activation::Relu6];

/// The planner's grid batch: the min-max window, then [u·m, v·M] for u, v ∈ {1/16, …, 1}.
fn grid_candidates(h: &Histogram, act: Activation, bits: u8) -> Vec<QParams> {
    let (lo, hi) = match act {
        Activation::None => (h.lo, h.hi),
        Activation::Relu => (h.lo.max(0.0), h.hi.max(0.0)),
        Activation::Relu6 => (h.lo.clamp(0.0, 6.0), h.hi.clamp(0.0, 6.0)),
    };
    let (m, big_m) = (lo.min(0.0), hi.max(0.0));
    let mut uv = vec![(1.0, 1.0)];
    for i in 1..=16 {
        for j in 1..=16 {
            uv.push((i as f64 / 16.0, j as f64 / 16.0));
        }
    }
    uv.iter()
        .map(|&(u, v)| QParams::from_range((u * m) as f32, (v * big_m) as f32, bits).unwrap())
        .collect()
}

/// The GPU objective of the planner's grid candidates is within its derived bound
/// (`engine::gpu::mmse::error_bound`) of the exact CPU objective (`mse_of_quantizer`), and
/// the GPU's first minimum is the CPU's wherever the CPU's best beats every other candidate
/// by more than both bounds.
#[test]
fn mmse_curve_matches_cpu_within_its_bound() {
    let Some(ctx) = ctx() else { return };
    let strategy = (
        1usize..=2048,
        0u8..=8,
        any::<u64>(),
        prop::sample::select(vec![1.0f32, 1e-3, 1e4]),
        0usize..3,
        any::<bool>(),
        prop::sample::select(vec![false, false, false, true]),
    );
    let (worst, decided, cases) = (Cell::new(0.0f64), Cell::new(0), Cell::new(0));
    let (rel_diff, rel_bound) = (Cell::new(0.0f64), std::cell::RefCell::new(Vec::new()));
    runner(32)
        .run(
            &strategy,
            |(bins, bits, seed, scale, act, relu, constant)| {
                let h = mmse_hist(bins, seed, scale, relu, constant);
                let act = ACTS[act];
                let cands = grid_candidates(&h, act, bits);
                let mut gpu = GpuMse::new(ctx);
                gpu.begin(&h).unwrap();
                let g = gpu.mse(&h, act, &cands).unwrap();
                let c: Vec<f64> = cands
                    .iter()
                    .map(|p| mse_of_quantizer(&h, p, act).unwrap())
                    .collect();
                for (j, (g, &c)) in g.iter().zip(&c).enumerate() {
                    let d = (g.mse - c).abs();
                    assert!(
                        d <= g.err,
                        "candidate {j} ({:?}): gpu {} cpu {c} bound {}",
                        cands[j],
                        g.mse,
                        g.err
                    );
                    if g.err > 0.0 && g.err.is_finite() {
                        worst.set(worst.get().max(d / g.err));
                    }
                    if c > 0.0 {
                        rel_diff.set(rel_diff.get().max(d / c));
                        rel_bound.borrow_mut().push(g.err / c);
                    }
                }
                let first_min =
                    |v: &[f64]| (1..v.len()).fold(0, |b, j| if v[j] < v[b] { j } else { b });
                let best = first_min(&c);
                let clear = (0..c.len())
                    .filter(|&j| j != best)
                    .all(|j| c[j] - c[best] > g[j].err + g[best].err);
                cases.set(cases.get() + 1);
                if clear {
                    decided.set(decided.get() + 1);
                    let est: Vec<f64> = g.iter().map(|b| b.mse).collect();
                    assert_eq!(first_min(&est), best, "GPU and CPU choose differently");
                }
                Ok(())
            },
        )
        .unwrap();
    let mut rb = rel_bound.into_inner();
    rb.sort_by(f64::total_cmp);
    eprintln!(
        "mmse: worst |gpu − cpu| / bound = {:.3e}, worst |gpu − cpu| / cpu = {:.3e}, median \
         bound / cpu = {:.3e}; {} of {} cases without near-ties",
        worst.get(),
        rel_diff.get(),
        rb.get(rb.len() / 2).copied().unwrap_or(0.0),
        decided.get(),
        cases.get()
    );
}

/// The whole MMSE search with the GPU evaluating returns the CPU search's window and exact
/// objective, bit for bit (near-ties re-decided exactly, `quant::mmse`).
#[test]
fn mmse_search_on_the_gpu_equals_the_cpu_search() {
    let Some(ctx) = ctx() else { return };
    let strategy = (
        prop::sample::select(vec![1usize, 7, 256, 2048]),
        1u8..=8,
        any::<u64>(),
        prop::sample::select(vec![1.0f32, 1e4]),
        0usize..3,
        any::<bool>(),
    );
    runner(12)
        .run(&strategy, |(bins, bits, seed, scale, act, relu)| {
            let h = mmse_hist(bins, seed, scale, relu, false);
            let act = ACTS[act];
            let gpu = mmse_histogram_with(&h, bits, act, &mut GpuMse::new(ctx)).unwrap();
            let cpu = mmse_histogram(&h, bits, act).unwrap();
            assert_eq!(
                (gpu.lo.to_bits(), gpu.hi.to_bits(), gpu.mse.to_bits()),
                (cpu.lo.to_bits(), cpu.hi.to_bits(), cpu.mse.to_bits()),
                "{gpu:?} vs {cpu:?}"
            );
            Ok(())
        })
        .unwrap();
}
