//! Graph IR: shape inference errors, BatchNorm folding and activation fusion equivalence,
//! and the model file round trip.

mod common;

use std::collections::BTreeMap;

use ptq4::engine;
use ptq4::graph::{passes, Activation, Graph, Linear, Op, Preprocess};
use ptq4::io::model::{load_graph, save_graph};
use ptq4::{Error, Tensor};

use common::tol::Tol;
use common::{conv, node, rand};

/// conv → BN → ReLU6 → depthwise conv → BN → ReLU → (+ skip) → GAP → flatten → linear.
fn small_graph(seed: &mut u64) -> Graph {
    let mut params = BTreeMap::new();
    let bn = |name: &str, c: usize, params: &mut BTreeMap<String, Tensor>, seed: &mut u64| {
        params.insert(format!("{name}.weight"), rand(&[c], seed));
        params.insert(format!("{name}.bias"), rand(&[c], seed));
        params.insert(format!("{name}.running_mean"), rand(&[c], seed));
        let v = rand(&[c], seed);
        params.insert(
            format!("{name}.running_var"),
            Tensor {
                shape: v.shape,
                data: v.data.iter().map(|x| x.abs() + 0.1).collect(),
            },
        );
    };
    params.insert("c1.weight".into(), rand(&[6, 3, 3, 3], seed));
    bn("bn1", 6, &mut params, seed);
    params.insert("dw.weight".into(), rand(&[6, 1, 3, 3], seed));
    bn("bn2", 6, &mut params, seed);
    params.insert("fc.weight".into(), rand(&[4, 6], seed));
    params.insert("fc.bias".into(), rand(&[4], seed));
    Graph {
        name: "small".into(),
        input_shape: vec![3, 9, 7],
        nodes: vec![
            node("c1", Op::Conv2d(conv(3, 6, 3, 1, 1)), &["input"]),
            node(
                "bn1",
                Op::BatchNorm {
                    eps: 1e-3,
                    act: Default::default(),
                },
                &["c1"],
            ),
            node("r1", Op::Relu6, &["bn1"]),
            node("dw", Op::Conv2d(conv(6, 6, 3, 1, 6)), &["r1"]),
            node(
                "bn2",
                Op::BatchNorm {
                    eps: 1e-3,
                    act: Default::default(),
                },
                &["dw"],
            ),
            node("r2", Op::Relu, &["bn2"]),
            node("add", Op::Add, &["r2", "r1"]),
            node("gap", Op::GlobalAvgPool, &["add"]),
            node("flat", Op::Flatten, &["gap"]),
            node(
                "fc",
                Op::Linear(Linear {
                    in_features: 6,
                    out_features: 4,
                    bias: true,
                    act: Activation::None,
                }),
                &["flat"],
            ),
        ],
        output: "fc".into(),
        params,
        preprocess: Preprocess::efficientnet(7),
    }
}

#[test]
fn fold_and_fuse_preserve_outputs() {
    let mut seed = 7;
    let g = small_graph(&mut seed);
    g.validate().unwrap();
    let mut p = g.clone();
    passes::prepare(&mut p).unwrap();
    let kinds: Vec<&str> = p.nodes.iter().map(|n| n.op.kind()).collect();
    assert_eq!(
        kinds,
        [
            "conv2d",
            "conv2d",
            "add",
            "global_avg_pool",
            "flatten",
            "linear"
        ]
    );
    let Op::Conv2d(c1) = &p.nodes[0].op else {
        panic!()
    };
    assert_eq!(c1.act, Activation::Relu6);
    assert!(c1.bias);
    let x = rand(&[2, 3, 9, 7], &mut seed);
    let a = engine::forward(&g, x.clone()).unwrap();
    let b = engine::forward(&p, x).unwrap();
    let scale = a.data.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    for (u, v) in a.data.iter().zip(&b.data) {
        // Folding is exact algebra done in f64 and rounded once: a few f32 ulps.
        let tol = Tol::BN_FOLD.bound(f64::from(scale));
        assert!(f64::from((u - v).abs()) <= tol, "{u} vs {v}");
    }
}

#[test]
fn bn_with_two_readers_of_its_conv_is_not_folded() {
    let mut seed = 1;
    let mut g = small_graph(&mut seed);
    // Make c1 read by bn1 and by the add: folding bn1 into c1 would change the skip path.
    g.nodes[6].inputs[1] = "c1".into();
    g.validate().unwrap();
    passes::fold_batchnorm(&mut g).unwrap();
    assert!(g.node("bn1").is_some());
    assert!(g.node("bn2").is_none());
}

#[test]
fn shape_errors_name_the_node_and_both_shapes() {
    let mut seed = 3;
    let mut g = small_graph(&mut seed);
    g.params
        .insert("dw.weight".into(), rand(&[6, 2, 3, 3], &mut seed));
    match g.validate() {
        Err(Error::Shape {
            node,
            expected,
            actual,
        }) => {
            assert_eq!(node, "dw.weight");
            assert_eq!(expected, vec![6, 1, 3, 3]);
            assert_eq!(actual, vec![6, 2, 3, 3]);
        }
        other => panic!("expected a shape error, got {other:?}"),
    }
    let mut g = small_graph(&mut seed);
    g.input_shape = vec![4, 9, 7];
    let msg = g.validate().unwrap_err().to_string();
    assert!(
        msg.contains("c1") && msg.contains("[3, 9, 7]") && msg.contains("[4, 9, 7]"),
        "{msg}"
    );
}

#[test]
fn undefined_inputs_and_duplicates_are_rejected() {
    let mut seed = 5;
    let mut g = small_graph(&mut seed);
    g.nodes[3].inputs[0] = "nope".into();
    assert!(g.validate().unwrap_err().to_string().contains("nope"));
    let mut g = small_graph(&mut seed);
    g.nodes[2].name = "c1".into();
    assert!(g.validate().unwrap_err().to_string().contains("duplicate"));
}

#[test]
fn same_padding_matches_tf() {
    use ptq4::graph::same_padding;
    assert_eq!(same_padding(224, 3, 2, 1), (0, 1));
    assert_eq!(same_padding(112, 3, 1, 1), (1, 1));
    assert_eq!(same_padding(28, 5, 2, 1), (1, 2));
    assert_eq!(same_padding(7, 5, 1, 1), (2, 2));
    assert_eq!(same_padding(15, 3, 2, 1), (1, 1));
}

#[test]
fn model_file_round_trips() {
    let mut seed = 11;
    let g = small_graph(&mut seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    save_graph(&g, &path).unwrap();
    let back = load_graph(&path).unwrap();
    assert_eq!(back, g);
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1);
}

#[test]
fn non_model_files_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.safetensors");
    std::fs::write(&path, b"not a model").unwrap();
    let msg = load_graph(&path).unwrap_err().to_string();
    assert!(msg.contains("x.safetensors"), "{msg}");
    let msg = load_graph(&dir.path().join("missing.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("missing.safetensors"), "{msg}");
}
