//! The graph executor's results do not depend on how a batch is split: `forward` on a batch
//! equals the concatenation of `forward` on its single images bit for bit (evaluation
//! digests are compared across runs with different batch sizes), and `run` (whole-batch,
//! hook path) equals `forward`.

mod common;

use std::collections::BTreeMap;

use ptq4::engine::{self, Hook};
use ptq4::graph::{passes, Activation, Conv2d, Graph, Linear, Node, Op, Preprocess};
use ptq4::Tensor;

use common::{node, rand};

fn conv(cin: usize, cout: usize, k: usize, s: usize, groups: usize, act: Activation) -> Conv2d {
    Conv2d {
        in_channels: cin,
        out_channels: cout,
        kernel: [k, k],
        stride: [s, s],
        dilation: [1, 1],
        padding: [k / 2, k / 2, k / 2, k / 2],
        groups,
        bias: true,
        act,
    }
}

/// A miniature inverted-residual network whose first maps are large enough (≥ 28·28·144
/// values per image) for `forward` to run them image by image and whose tail is batched:
/// blocked and im2col GEMM convolutions, depthwise, residual adds, pooling, linear.
fn mini_net(seed: &mut u64) -> Graph {
    let layers: [(&str, Conv2d, &str); 7] = [
        ("stem", conv(3, 16, 3, 1, 1, Activation::Relu6), "input"),
        ("dw1", conv(16, 16, 3, 1, 16, Activation::Relu6), "stem"),
        ("pw1", conv(16, 16, 1, 1, 1, Activation::None), "dw1"),
        ("down", conv(16, 64, 3, 2, 1, Activation::Relu), "add1"),
        ("exp2", conv(64, 256, 1, 1, 1, Activation::Relu6), "down"),
        ("dw2", conv(256, 256, 5, 2, 256, Activation::Relu6), "exp2"),
        ("pw2", conv(256, 64, 1, 1, 1, Activation::None), "dw2"),
    ];
    let mut params = BTreeMap::new();
    let mut nodes = Vec::new();
    for (name, c, input) in layers {
        params.insert(format!("{name}.weight"), rand(&c.weight_shape(), seed));
        params.insert(format!("{name}.bias"), rand(&[c.out_channels], seed));
        nodes.push(node(name, Op::Conv2d(c), &[input]));
        if name == "pw1" {
            nodes.push(node("add1", Op::Add, &["pw1", "stem"]));
        }
    }
    nodes.push(node("gap", Op::GlobalAvgPool, &["pw2"]));
    nodes.push(node("flat", Op::Flatten, &["gap"]));
    params.insert("fc.weight".into(), rand(&[10, 64], seed));
    params.insert("fc.bias".into(), rand(&[10], seed));
    let fc = Linear {
        in_features: 64,
        out_features: 10,
        bias: true,
        act: Activation::None,
    };
    nodes.push(node("fc", Op::Linear(fc), &["flat"]));
    Graph {
        name: "mini".into(),
        input_shape: vec![3, 84, 84],
        nodes,
        output: "fc".into(),
        params,
        preprocess: Preprocess::efficientnet(84),
    }
}

fn image(x: &Tensor, i: usize) -> Tensor {
    Tensor {
        shape: [&[1][..], &x.shape[1..]].concat(),
        data: x.item(i).to_vec(),
    }
}

fn assert_bits_eq(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (j, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(x.to_bits(), y.to_bits(), "{what}: element {j}: {x} vs {y}");
    }
}

/// `forward` on the batch, `forward` image by image, and `run` without a hook agree bit
/// for bit.
fn check_batch_invariance(g: &Graph, x: &Tensor) {
    let n = x.shape[0];
    let whole = engine::forward(g, x.clone()).unwrap();
    assert_eq!(whole.shape[0], n);
    let per = whole.numel() / n;
    for i in 0..n {
        let yi = engine::forward(g, image(x, i)).unwrap();
        assert_bits_eq(
            &yi.data,
            &whole.data[i * per..(i + 1) * per],
            &format!("image {i}"),
        );
    }
    let hooked = engine::run(g, x.clone(), &mut engine::NoHook).unwrap();
    assert_eq!(hooked.shape, whole.shape);
    assert_bits_eq(&hooked.data, &whole.data, "run vs forward");
}

#[test]
fn forward_is_batch_invariant_on_a_mini_net() {
    let mut seed = 7;
    let g = mini_net(&mut seed);
    g.validate().unwrap();
    for n in [2, 5] {
        let x = rand(&[n, 3, 84, 84], &mut seed);
        check_batch_invariance(&g, &x);
    }
}

/// Counts hook calls and checks that every value the hook sees is a whole batch.
struct BatchShapes {
    n: usize,
    outputs: usize,
}

impl Hook for BatchShapes {
    fn output(&mut self, node: &Node, x: &mut Tensor) -> ptq4::Result<()> {
        assert_eq!(
            x.shape[0], self.n,
            "{} seen with a partial batch",
            node.name
        );
        self.outputs += 1;
        Ok(())
    }
}

#[test]
fn run_hooks_see_whole_batches_once_per_node() {
    let mut seed = 11;
    let g = mini_net(&mut seed);
    let x = rand(&[3, 3, 84, 84], &mut seed);
    let mut hook = BatchShapes { n: 3, outputs: 0 };
    engine::run(&g, x, &mut hook).unwrap();
    assert_eq!(hook.outputs, g.nodes.len());
}

#[test]
fn lite0_forward_is_batch_invariant() {
    let Some(path) = common::fetched("efficientnet-lite0") else {
        return;
    };
    let mut g = ptq4::io::model::load_graph(&path).unwrap();
    passes::prepare(&mut g).unwrap();
    let mut seed = 3;
    let x = rand(&[3, 3, 224, 224], &mut seed);
    check_batch_invariance(&g, &x);
}
