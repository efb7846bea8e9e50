//! The tiled GPU convolutions at their tile edges: shapes that are not multiples of the
//! tiles (odd channel counts, more than one channel or pixel tile, a 1×1 map, stride 2,
//! groups, reductions longer than one staged slice), on both GPU executors, code for code
//! against the CPU's integer kernels and exact simulation (through `check_layer`).

use ptq4::engine::exec::int_model::Exec;
use ptq4::graph::{Activation, Conv2d};

use super::common::gpu;
use super::fixtures::*;
use super::gpu::{check_layer, rand_layer};

/// `(in, out, kernel, stride, padding, groups, [n, h, w])`.
type Shape = (usize, usize, usize, usize, usize, usize, [usize; 3]);

const SHAPES: &[Shape] = &[
    // 1×1: K of 10 word pairs (two slices), two channel tiles, three pixel tiles.
    (75, 70, 1, 1, 0, 1, [2, 9, 9]),
    // 3×3 stride 2, odd channels, output channels past one tile.
    (13, 67, 3, 2, 1, 1, [1, 11, 11]),
    // a 1×1 map through a padded 3×3 window; 130 input channels.
    (130, 5, 3, 1, 1, 1, [3, 1, 1]),
    // 4 output channels: the output's padding word is written as the zero point.
    (9, 4, 1, 1, 0, 1, [1, 5, 7]),
    // 24 output channels (a 32-row tile), 3×3 stride 2: K of 27 word pairs.
    (21, 24, 3, 2, 1, 1, [2, 8, 8]),
    // 5×5 stride 2 with uneven padding of the map's edge.
    (24, 33, 5, 2, 2, 1, [2, 9, 6]),
    // groups of width 8 (tiled), of width 12 (last group covers the padding word).
    (40, 32, 3, 1, 1, 4, [1, 6, 6]),
    (30, 36, 1, 1, 0, 3, [2, 5, 5]),
    // groups of width 6 (per-channel kernel).
    (12, 12, 3, 2, 1, 2, [1, 7, 7]),
    // depthwise, stride 2, 5×5; and 3×3 past one spatial tile.
    (37, 37, 5, 2, 2, 37, [1, 13, 11]),
    (20, 20, 3, 1, 1, 20, [2, 19, 21]),
];

#[test]
fn tiled_convs_at_tile_edges_equal_cpu() {
    let Some(ctx) = gpu() else { return };
    for (i, &(ci, co, k, s, pad, groups, nhw)) in SHAPES.iter().enumerate() {
        for exec in [Exec::Int, Exec::Exact] {
            for (dual, logits) in [(false, false), (true, false), (false, true), (true, true)] {
                // The integer kernels run no depthwise logits layer.
                if logits && groups == ci && groups > 1 && exec == Exec::Int {
                    continue;
                }
                let mut seed = 0x7115 + i as u64 * 97 + u64::from(dual) * 7 + u64::from(logits);
                let c = Conv2d {
                    in_channels: ci,
                    out_channels: co,
                    kernel: [k, k],
                    stride: [s, s],
                    dilation: [1, 1],
                    padding: [pad; 4],
                    groups,
                    bias: true,
                    act: Activation::Relu6,
                };
                let x = rand_input(&[nhw[0], ci, nhw[1], nhw[2]], 8, &mut seed);
                let l = rand_layer(
                    Some(c.clone()),
                    co,
                    ci / groups * k * k,
                    dual,
                    logits,
                    x.params.scale,
                    &mut seed,
                );
                check_layer(ctx, &x, &l, exec)
                    .unwrap_or_else(|e| panic!("{c:?} {nhw:?} {exec:?} dual {dual}: {e}"));
            }
        }
    }
}
