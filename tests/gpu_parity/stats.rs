//! `histogram_…` (exact counts), plus the
//! chunking of bindings under a forced small limit.

use proptest::prelude::*;
use ptq4::engine::cpu::{fake_quant as cpu_fq, histogram as cpu_hist, reference};
use ptq4::engine::device::{buffers, GpuContext};
use ptq4::engine::gpu::{conv2d, fake_quant, histogram};
use ptq4::engine::layout::ChannelLayout;
use ptq4::graph::{Activation, Conv2d};
use ptq4::quant::QParams;
use ptq4::{Error, Tensor};

use super::conv::data;
use super::{ctx, runner, Tol};

/// Data `[outer, channels, inner]` scaled by `scale`, shifted by `offset` (cancellation in
/// a one-pass variance), channel 0 constant when `constant`.
fn activations(
    layout: &ChannelLayout,
    seed: u64,
    scale: f32,
    offset: f32,
    constant: bool,
) -> Vec<f32> {
    let mut x: Vec<f32> = data(layout.len(), seed, scale)
        .into_iter()
        .map(|v| v + offset)
        .collect();
    if constant {
        for i in (0..x.len()).filter(|&i| layout.channel_of(i) == 0) {
            x[i] = offset + 0.3;
        }
    }
    x
}

fn hist_strategy() -> impl Strategy<Value = (ChannelLayout, Vec<f32>, Vec<(f32, f32)>, u32)> {
    (
        1usize..=3,
        1usize..=4,
        1usize..=700,
        any::<u64>(),
        prop::sample::select(vec![1.0f32, 1e6]),
        prop::sample::select(vec![1u32, 7, 256, 301, 2048]),
        0usize..3,
        any::<bool>(),
    )
        .prop_map(|(outer, channels, inner, seed, scale, bins, mode, grid)| {
            let layout = ChannelLayout {
                outer,
                channels,
                inner,
            };
            let mut x = activations(&layout, seed, scale, 0.0, true);
            if grid {
                // Values on bin edges of the [−scale, scale] range.
                x.iter_mut()
                    .for_each(|v| *v = (*v / scale * 8.0).round() / 8.0 * scale);
            }
            let ranges = (0..channels)
                .map(|c| {
                    let vals = x
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| layout.channel_of(*i) == c)
                        .map(|(_, &v)| v);
                    let (lo, hi) = vals.fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| {
                        (a.min(v), b.max(v))
                    });
                    match mode {
                        0 => (lo, hi),
                        1 => (lo * 0.5, hi * 0.5), // outliers on both sides
                        _ => (-scale, scale),
                    }
                })
                .collect();
            (layout, x, ranges, bins)
        })
}

#[test]
fn histogram_counts_are_exact() {
    let Some(ctx) = ctx() else { return };
    runner(48)
        .run(&hist_strategy(), |(layout, x, ranges, bins)| {
            let g = histogram::histogram(ctx, &x, &layout, &ranges, bins).unwrap();
            let c = cpu_hist::histogram(&x, &layout, &ranges, bins).unwrap();
            assert_eq!(g, c);
            assert_eq!(g.iter().map(|&n| n as usize).sum::<usize>(), x.len());
            Ok(())
        })
        .unwrap();
}

#[test]
fn histogram_per_tensor_spans_segments() {
    let Some(ctx) = ctx() else { return };
    let layout = ChannelLayout::per_tensor(histogram::SEG_LEN * 2 + 5);
    let x = activations(&layout, 4, 3.0, 0.0, false);
    let ranges = [(-2.0, 2.5)];
    assert_eq!(
        histogram::histogram(ctx, &x, &layout, &ranges, 1000).unwrap(),
        cpu_hist::histogram(&x, &layout, &ranges, 1000).unwrap()
    );
}

/// A context whose storage bindings are capped at 4 KiB, so every launcher must chunk.
#[test]
fn chunked_bindings_match_unchunked() {
    if ctx().is_none() {
        return;
    }
    let small = GpuContext::new()
        .expect("a second context on the same adapter")
        .with_max_binding_bytes(4096);
    assert_eq!(small.max_binding_bytes(), 4096);
    // conv2d: 2304 output bytes per image → one image per chunk.
    let c = Conv2d {
        in_channels: 3,
        out_channels: 4,
        kernel: [3, 3],
        stride: [1, 1],
        dilation: [1, 1],
        padding: [1; 4],
        groups: 1,
        bias: true,
        act: Activation::Relu,
    };
    let x = Tensor::from_vec(&[5, 3, 12, 12], data(5 * 3 * 144, 1, 1.0)).unwrap();
    let w = Tensor::from_vec(&c.weight_shape(), data(108, 2, 1.0)).unwrap();
    let b = data(4, 3, 1.0);
    let got = conv2d::conv2d(&small, &x, &w, Some(&b), &c).unwrap();
    let want = reference::conv2d(&x, &w, Some(&b), &c);
    Tol::SMALL_CONV_ABS.assert_all("chunked conv2d", &got.data, &want.data, |_| 0.0);
    // One image over the limit is an error, not a silent truncation.
    let big = Tensor::from_vec(&[1, 3, 40, 40], vec![0.0; 4800]).unwrap();
    assert!(matches!(
        conv2d::conv2d(&small, &big, &w, Some(&b), &c),
        Err(Error::Gpu(_))
    ));
    // histogram: 2 KiB per image → 2 images per chunk, 3 chunks.
    let layout = ChannelLayout {
        outer: 6,
        channels: 2,
        inner: 256,
    };
    let xs = activations(&layout, 5, 1.0, 2.0, false);
    let ranges = [(-1.0, 3.0), (0.0, 2.5)];
    assert_eq!(
        histogram::histogram(&small, &xs, &layout, &ranges, 64).unwrap(),
        cpu_hist::histogram(&xs, &layout, &ranges, 64).unwrap()
    );
    // fake_quant: 1024-element chunks crossing channel boundaries (inner = 300).
    let fl = ChannelLayout {
        outer: 2,
        channels: 5,
        inner: 300,
    };
    let q: Vec<_> = (0..5)
        .map(|c| QParams {
            scale: 0.01 * (c + 1) as f32,
            zero_point: c,
            bits: 4,
        })
        .collect();
    let xq = data(fl.len(), 6, 1.0);
    assert_eq!(
        fake_quant::fake_quant(&small, &xq, &fl, &q).unwrap(),
        cpu_fq::fake_quant(&xq, &fl, &q).unwrap()
    );
    let _ = buffers::SENTINEL_U32;
}
