//! EfficientNet-Lite family built in code: structure, parameter counts, and (when
//! `$PTQ4_TEST_PTH` names the real Lite0 weights) an import of the real file.

use std::path::PathBuf;

use ptq4::graph::Op;
use ptq4::io::import::import_pth;
use ptq4::io::pickle::{read_state_dict, Entry, StorageType};
use ptq4::zoo::efficientnet::{self, build, expected_params, LiteVariant};
use ptq4::Error;

/// Float tensors of the real Lite0 file (`efficientnet-lite0-57934424.pth`): conv, BN
/// (γ, β, running mean, running var) and linear parameters. The file's 4,694,073 elements
/// in 296 tensors add 49 `num_batches_tracked` int64 scalars, one per BatchNorm.
const LITE0_FLOAT_PARAMS: usize = 4_694_024;
const LITE0_FILE_ELEMENTS: usize = 4_694_073;
const LITE0_FILE_TENSORS: usize = 296;
const LITE0_BATCHNORMS: usize = 49;

fn blocks(g: &ptq4::Graph) -> usize {
    g.nodes
        .iter()
        .filter(|n| n.name.ends_with("._depthwise_conv"))
        .count()
}

#[test]
fn every_variant_validates_with_its_input_size() {
    for v in LiteVariant::ALL {
        let g = build(v);
        let shapes = g.validate().unwrap_or_else(|e| panic!("{v}: {e}"));
        let s = v.input_size();
        assert_eq!(g.input_shape, vec![3, s, s], "{v}");
        assert_eq!(shapes[&g.output], vec![1000], "{v}");
        assert_eq!(g.preprocess.size, s);
        assert_eq!(shapes["_conv_head"][0], 1280, "{v}: head is not scaled");
        assert_eq!(shapes["_conv_stem"][0], 32, "{v}: stem is not scaled");
        // Five stride-2 stages: the head sees ceil(size / 32).
        assert_eq!(shapes["_conv_head"][1], s.div_ceil(32), "{v}");
        assert_eq!(g.name, v.name());
        assert_eq!(v.name().parse::<LiteVariant>().unwrap(), v);
    }
}

#[test]
fn lite0_parameter_count_matches_the_file() {
    let g = build(LiteVariant::Lite0);
    assert_eq!(g.param_count(), LITE0_FLOAT_PARAMS);
    let exp = expected_params(LiteVariant::Lite0);
    assert_eq!(exp.len(), LITE0_FILE_TENSORS - LITE0_BATCHNORMS);
    let bns = g
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::BatchNorm { .. }))
        .count();
    assert_eq!(bns, LITE0_BATCHNORMS);
    assert_eq!(exp.first().unwrap().0, "_conv_stem.weight");
    assert_eq!(exp.last().unwrap().0, "_fc.bias");
}

#[test]
fn block_counts_follow_ceil_depth_scaling() {
    // Stages 2..6 scale: ceil(r·d) for r = 2, 2, 3, 3, 4; stages 1 and 7 stay at 1.
    let want = [16, 21, 21, 24, 30];
    for (v, n) in LiteVariant::ALL.into_iter().zip(want) {
        assert_eq!(blocks(&build(v)), n, "{v}");
    }
}

#[test]
fn trainable_parameters_match_the_published_table() {
    // Published EfficientNet-Lite sizes (TF model zoo README, millions of trainable
    // parameters, one decimal): these check the width and depth scaling of Lite1..4, for
    // which no weights file is at hand.
    let published_tenths = [47, 54, 61, 82, 130];
    for (v, want) in LiteVariant::ALL.into_iter().zip(published_tenths) {
        let g = build(v);
        let trainable: usize = g
            .params
            .iter()
            .filter(|(k, _)| !k.ends_with(".running_mean") && !k.ends_with(".running_var"))
            .map(|(_, t)| t.numel())
            .sum();
        assert_eq!(
            (trainable as f64 / 1e5).round() as usize,
            want,
            "{v}: {trainable}"
        );
    }
}

#[test]
fn channel_rounding_is_the_efficientnet_rule() {
    assert_eq!(efficientnet::round_filters(16, 1.4), 24);
    assert_eq!(efficientnet::round_filters(24, 1.1), 24);
    assert_eq!(efficientnet::round_filters(40, 1.1), 48);
    assert_eq!(efficientnet::round_filters(320, 1.4), 448);
    assert_eq!(efficientnet::round_filters(112, 1.2), 136);
    let chans: Vec<usize> = LiteVariant::Lite4
        .stages()
        .iter()
        .map(|s| s.out_channels)
        .collect();
    assert_eq!(chans, vec![24, 32, 56, 112, 160, 272, 448]);
}

#[test]
fn block0_has_no_expand_conv_and_block1_does() {
    let g = build(LiteVariant::Lite0);
    assert!(g.node("_blocks.0._expand_conv").is_none());
    assert!(g.param_opt("_blocks.0._expand_conv", "weight").is_none());
    assert_eq!(
        g.param("_blocks.0._depthwise_conv", "weight")
            .unwrap()
            .shape,
        vec![32, 1, 3, 3]
    );
    assert_eq!(
        g.param("_blocks.1._expand_conv", "weight").unwrap().shape,
        vec![96, 16, 1, 1]
    );
    // Residuals: only stride-1 blocks with in = out (block 0 is 32 → 16: none).
    assert!(g.node("_blocks.0._add").is_none());
    assert!(g.node("_blocks.1._add").is_none());
    assert!(g.node("_blocks.2._add").is_some());
}

#[test]
fn same_padding_is_per_layer() {
    let g = build(LiteVariant::Lite0);
    let pad = |n: &str| match &g.node(n).unwrap().op {
        Op::Conv2d(c) => c.padding,
        _ => panic!("{n} is not a conv"),
    };
    // 224, k3 s2: total 1 → 0 before, 1 after.
    assert_eq!(pad("_conv_stem"), [0, 0, 1, 1]);
    // 112, k3 s1: 1 each side.
    assert_eq!(pad("_blocks.0._depthwise_conv"), [1, 1, 1, 1]);
    // Block 3 (stage 3, k5 s2) sees 56: total 3 → 1 before, 2 after.
    assert_eq!(pad("_blocks.3._depthwise_conv"), [1, 1, 2, 2]);
    assert_eq!(pad("_conv_head"), [0, 0, 0, 0]);
}

#[test]
fn unknown_architecture_is_an_import_error() {
    let e = "efficientnet-lite5".parse::<LiteVariant>().unwrap_err();
    assert!(matches!(e, Error::Import(_)), "{e}");
}

#[test]
fn real_lite0_weights_import() {
    let Some(path) = std::env::var_os("PTQ4_TEST_PTH").map(PathBuf::from) else {
        eprintln!("note: PTQ4_TEST_PTH not set; skipping the real Lite0 weights check");
        return;
    };
    let bytes = std::fs::read(&path).unwrap();
    let sd = read_state_dict(&bytes).unwrap();
    assert_eq!(sd.len(), LITE0_FILE_TENSORS);
    assert_eq!(sd.numel(), LITE0_FILE_ELEMENTS);
    let longs: Vec<(&str, &Entry)> = sd
        .iter()
        .filter(|(_, e)| e.dtype() != StorageType::Float)
        .collect();
    assert_eq!(longs.len(), LITE0_BATCHNORMS);
    for (name, e) in longs {
        assert!(name.ends_with(".num_batches_tracked"), "{name}");
        assert_eq!(e.dtype(), StorageType::Long);
        assert!(e.shape().is_empty());
    }
    let g = import_pth(&path, "efficientnet-lite0").unwrap();
    g.validate().unwrap();
    assert_eq!(g.param_count(), LITE0_FLOAT_PARAMS);
    // Running variances are finite and non-negative (dead channels hold exactly 0).
    assert!(g
        .params
        .iter()
        .filter(|(k, _)| k.ends_with(".running_var"))
        .all(|(_, t)| t.data.iter().all(|&v| v.is_finite() && v >= 0.0)));
    // The stem weight is stored as a permuted view (stride [1, 32, 288, 96]); these values
    // were read from the file with Python's pickle module, independently of this reader.
    let stem = g.param("_conv_stem", "weight").unwrap();
    assert_eq!(stem.data[0], -1.110_336_1_f32); // [0,0,0,0] = storage[0]
    assert_eq!(stem.data[1], -1.308_770_4_f32); // [0,0,0,1] = storage[96]
    assert_eq!(stem.data[27], -0.296_026_83_f32); // [1,0,0,0] = storage[1]
                                                  // The wrong architecture names the first mismatching tensor with both shapes.
    let e = import_pth(&path, "efficientnet-lite1").unwrap_err();
    assert!(matches!(e, Error::Import(_)), "{e}");
    // Lite1 has 3 blocks in stage 2, so block 3 is a 3×3 24 → 24 block, not Lite0's 5×5 one.
    let msg = e.to_string();
    assert!(
        msg.contains(
            "weights do not match efficientnet-lite1 (235 problem(s)): tensor \
             _blocks.3._depthwise_conv.weight: efficientnet-lite1 expects shape [144, 1, 3, 3], \
             the weights have [144, 1, 5, 5];"
        ),
        "{msg}"
    );
    assert!(msg.contains("and 227 more"), "{msg}");
}
