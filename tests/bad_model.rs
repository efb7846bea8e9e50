//! Crafted bad model files, one per class of defect: each is refused with an error that
//! names the node, tensor or limit involved, and nothing panics, aborts or allocates
//! without bound. Quantized files: `bad_model/quant.rs`.

mod common;

#[path = "bad_model/quant.rs"]
mod quant;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use ptq4::graph::{Activation, Graph, Linear, Op, Preprocess};
use ptq4::io::model::{save_graph, ModelFile};
use ptq4::limits::MAX_MODEL_FILE_BYTES;
use ptq4::model::LoadedModel;
use ptq4::Tensor;

use common::{conv, node};

/// The shared small classifier with 5 classes.
pub fn small_graph() -> Graph {
    common::small_classifier("small", 5)
}

pub fn linear(i: usize, o: usize) -> Linear {
    Linear {
        in_features: i,
        out_features: o,
        bias: true,
        act: Activation::None,
    }
}

/// Saves `g` as written by ptq4 (no validation on the way out) and loads it as `eval` and
/// `inspect` do; the load must fail. Returns the message.
fn load_err(g: &Graph) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.safetensors");
    save_graph(g, &path).unwrap();
    match LoadedModel::load(&path) {
        Ok(_) => panic!("the bad model loaded"),
        Err(e) => e.to_string(),
    }
}

fn with_conv(f: impl Fn(&mut ptq4::graph::Conv2d)) -> Graph {
    let mut g = small_graph();
    if let Op::Conv2d(c) = &mut g.nodes[0].op {
        f(c);
    }
    g
}

fn assert_names(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "{msg:?} does not name {p:?}");
    }
}

#[test]
fn the_small_graph_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ok.safetensors");
    save_graph(&small_graph(), &path).unwrap();
    LoadedModel::load(&path).unwrap();
}

#[test]
fn zero_sizes_are_refused_naming_the_node() {
    let cases: Vec<(Graph, &[&str])> = vec![
        (
            with_conv(|c| c.kernel = [0, 3]),
            &["c1", "kernel size is 0"],
        ),
        (with_conv(|c| c.stride = [1, 0]), &["c1", "stride is 0"]),
        (with_conv(|c| c.dilation = [0, 1]), &["c1", "dilation is 0"]),
        (
            with_conv(|c| c.in_channels = 0),
            &["c1", "in_channels is 0"],
        ),
        (
            with_conv(|c| c.out_channels = 0),
            &["c1", "out_channels is 0"],
        ),
        (with_conv(|c| c.groups = 0), &["c1", "groups 0"]),
        (with_conv(|c| c.groups = 2), &["c1", "groups 2"]),
    ];
    for (g, parts) in cases {
        assert_names(&load_err(&g), parts);
    }
    // A linear layer with no weights, and one with no classes.
    for (i, o, what) in [(0, 5, "in_features is 0"), (4, 0, "out_features is 0")] {
        let mut g = small_graph();
        g.nodes[5].op = Op::Linear(linear(i, o));
        assert_names(&load_err(&g), &["fc", what]);
    }
    let mut g = small_graph();
    g.input_shape = vec![3, 0, 8];
    assert_names(&load_err(&g), &["input height is 0"]);
    let mut g = small_graph();
    g.nodes[1].op = Op::BatchNorm {
        eps: 0.0,
        act: Default::default(),
    };
    assert_names(&load_err(&g), &["bn1", "eps 0"]);
    let mut g = small_graph();
    g.nodes[3].op = Op::AvgPool(ptq4::graph::Pool {
        kernel: [2, 2],
        stride: [2, 2],
        padding: [2, 0, 0, 0],
        count_include_pad: false,
    });
    assert_names(&load_err(&g), &["gap", "padding"]);
}

#[test]
fn huge_sizes_are_refused_before_allocating() {
    let cases: Vec<(Graph, &[&str])> = vec![
        (
            with_conv(|c| c.out_channels = usize::MAX / 2),
            &["c1", "out_channels"],
        ),
        (
            with_conv(|c| c.kernel = [1 << 20, 1 << 20]),
            &["c1", "kernel"],
        ),
        (
            with_conv(|c| c.padding = [1 << 40, 0, 0, 0]),
            &["c1", "padding"],
        ),
        (
            with_conv(|c| c.dilation = [1 << 40, 1]),
            &["c1", "dilation"],
        ),
        (
            // Each size within its limit, the weight (2^16 × 2^16 × 3 × 3 values) not.
            with_conv(|c| {
                c.in_channels = 1 << 16;
                c.out_channels = 1 << 16;
            }),
            &["c1", "weight", "elements"],
        ),
    ];
    for (g, parts) in cases {
        assert_names(&load_err(&g), parts);
    }
    let mut g = small_graph();
    g.input_shape = vec![3, 1 << 40, 1 << 40];
    assert_names(&load_err(&g), &["input height"]);
    let mut g = small_graph();
    g.input_shape = vec![1 << 14, 1 << 14, 1 << 14];
    assert_names(&load_err(&g), &["input", "elements"]);
    let mut g = small_graph();
    g.nodes[5].op = Op::Linear(linear(4, usize::MAX));
    assert_names(&load_err(&g), &["fc", "out_features"]);
    let mut g = small_graph();
    g.preprocess.resize = 1 << 40;
    assert_names(&load_err(&g), &["preprocess resize"]);
    let mut g = small_graph();
    g.preprocess.size = 0;
    assert_names(&load_err(&g), &["preprocess size is 0"]);
    let mut g = small_graph();
    g.preprocess.std = [1.0, 0.0, 1.0];
    assert_names(&load_err(&g), &["preprocess", "std"]);
}

#[test]
fn bad_fp32_values_are_refused_naming_the_tensor() {
    let mut g = small_graph();
    g.params.get_mut("c1.weight").unwrap().data[5] = f32::NAN;
    assert_names(&load_err(&g), &["c1.weight", "not finite"]);
    let mut g = small_graph();
    g.params.get_mut("fc.bias").unwrap().data[0] = f32::INFINITY;
    assert_names(&load_err(&g), &["fc.bias", "not finite"]);
    let mut g = small_graph();
    g.params.get_mut("bn1.running_var").unwrap().data[2] = -1.0;
    assert_names(&load_err(&g), &["bn1.running_var", "negative"]);
}

/// A 20,000-node chain (conv → BN → ReLU, repeated) loads and is prepared: BN folding and
/// activation fusion are linear (they took minutes at 10,000 nodes when quadratic). No
/// time bound is asserted; a quadratic regression shows as a test that does not finish.
#[test]
fn a_long_chain_loads_and_prepares() {
    let blocks = 20_000 / 3;
    let mut g = small_graph();
    g.input_shape = vec![1, 2, 2];
    g.preprocess = Preprocess::efficientnet(2);
    g.nodes.clear();
    g.params.clear();
    let mut prev = "input".to_string();
    for i in 0..blocks {
        let (c, b, r) = (format!("c{i}"), format!("b{i}"), format!("r{i}"));
        g.nodes
            .push(node(&c, Op::Conv2d(conv(1, 1, 1, 1, 1)), &[&prev]));
        g.nodes.push(node(
            &b,
            Op::BatchNorm {
                eps: 1e-3,
                act: Default::default(),
            },
            &[&c],
        ));
        g.nodes.push(node(&r, Op::Relu6, &[&b]));
        g.params.insert(
            format!("{c}.weight"),
            Tensor::from_vec(&[1, 1, 1, 1], vec![1.0]).unwrap(),
        );
        for p in ["weight", "running_var"] {
            g.params.insert(
                format!("{b}.{p}"),
                Tensor::from_vec(&[1], vec![1.0]).unwrap(),
            );
        }
        for p in ["bias", "running_mean"] {
            g.params.insert(
                format!("{b}.{p}"),
                Tensor::from_vec(&[1], vec![0.0]).unwrap(),
            );
        }
        prev = r;
    }
    g.output = prev;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chain.safetensors");
    save_graph(&g, &path).unwrap();
    let m = LoadedModel::load(&path).unwrap();
    let prepared = m.graph();
    assert_eq!(prepared.nodes.len(), blocks);
    assert_eq!(prepared.output, format!("c{}", blocks - 1));
    for (i, n) in prepared.nodes.iter().enumerate() {
        let Op::Conv2d(c) = &n.op else {
            panic!("{} is not a conv", n.name)
        };
        assert!(c.bias && c.act == Activation::Relu6, "{}", n.name);
        let want = if i == 0 {
            "input".to_string()
        } else {
            format!("c{}", i - 1)
        };
        assert_eq!(n.inputs, vec![want]);
    }
}

#[test]
fn non_regular_and_oversized_files_are_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let msg = ModelFile::read(dir.path()).unwrap_err().to_string();
    assert_names(&msg, &["not a regular file"]);
    let msg = ModelFile::read(Path::new("/dev/zero"))
        .unwrap_err()
        .to_string();
    assert_names(&msg, &["/dev/zero", "not a regular file"]);
    // A sparse file one byte over the cap: refused from its size, never read.
    let big = dir.path().join("big.safetensors");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(MAX_MODEL_FILE_BYTES + 1)
        .unwrap();
    let msg = ModelFile::read(&big).unwrap_err().to_string();
    assert_names(
        &msg,
        &["big.safetensors", &MAX_MODEL_FILE_BYTES.to_string()],
    );
}

#[test]
fn writing_is_deterministic_and_readable_by_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    save_graph(&small_graph(), &a).unwrap();
    save_graph(&small_graph(), &b).unwrap();
    let (ba, bb) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert_eq!(ba, bb);
    let n = u64::from_le_bytes(ba[..8].try_into().unwrap()) as usize;
    assert_eq!(n % 8, 0);
    let st = safetensors::SafeTensors::deserialize(&ba).unwrap();
    assert_eq!(st.tensor("c1.weight").unwrap().shape(), &[4, 3, 3, 3]);
    let (_, meta) = safetensors::SafeTensors::read_metadata(&ba).unwrap();
    assert_eq!(meta.metadata().as_ref().unwrap()["ptq4.kind"], "fp32");
}

/// The binary on crafted files: exit 1, no panic, the message names the item.
#[test]
fn the_binary_reports_bad_files_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let kernel0 = dir.path().join("kernel0.safetensors");
    save_graph(&with_conv(|c| c.kernel = [0, 0]), &kernel0).unwrap();
    let huge = dir.path().join("huge.safetensors");
    let mut g = small_graph();
    g.input_shape = vec![3, 1 << 40, 1 << 40];
    save_graph(&g, &huge).unwrap();
    let cases: [(PathBuf, &[&str]); 3] = [
        ("/dev/zero".into(), &["not a regular file"]),
        (kernel0, &["c1", "kernel size is 0"]),
        (huge, &["input height"]),
    ];
    for (path, parts) in cases {
        let out = Command::cargo_bin("ptq4")
            .unwrap()
            .arg("inspect")
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{path:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{err}");
        assert_names(&err, parts);
    }
}

/// A FIFO is refused from its type before it is opened (opening one blocks until a writer
/// comes: `ptq4 inspect fifo` hung).
#[cfg(unix)]
#[test]
fn a_fifo_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("model.safetensors");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let (tx, rx) = std::sync::mpsc::channel();
    let p = fifo.clone();
    std::thread::spawn(move || {
        let _ = tx.send(ModelFile::read(&p).map(|_| ()).map_err(|e| e.to_string()));
    });
    let res = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("reading a FIFO blocked");
    assert_names(
        &res.unwrap_err(),
        &["model.safetensors", "not a regular file"],
    );
}

/// Preprocessing sizes within MAX_SPATIAL but not what the graph takes: a crop larger than
/// the input (12000² images for a 8×8 graph ran out of memory) and a resized image above
/// the element limit are refused at load.
#[test]
fn preprocess_larger_than_the_input_is_refused() {
    let mut g = small_graph();
    g.preprocess.size = 12_000;
    g.preprocess.resize = 12_000;
    assert_names(&load_err(&g), &["preprocessing metadata", "resize 12000"]);
    // Within the resize limit (2000² px ≤ MAX_RESIZED_PIXELS) but far larger than the input.
    let mut g = small_graph();
    g.preprocess.size = 2_000;
    g.preprocess.resize = 2_000;
    assert_names(&load_err(&g), &["preprocess crops 2000×2000", "[3, 8, 8]"]);
    // A crop as large as the input's larger side still loads.
    let mut g = small_graph();
    g.input_shape = vec![3, 6, 8];
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ok.safetensors");
    save_graph(&g, &p).unwrap();
    LoadedModel::load(&p).unwrap();
}

/// Inputs within every limit can still be too large to batch: evaluation splits batches so
/// that one holds at most MAX_BATCH_INPUT_BYTES of images (8000×8000 inputs at batch 16
/// ran out of memory under a 4 GiB limit).
#[test]
fn huge_inputs_are_evaluated_in_smaller_batches() {
    use ptq4::eval::run::{batch_cap, MAX_BATCH_INPUT_BYTES};
    assert_eq!(batch_cap(&Preprocess::efficientnet(8000), 16), 1);
    assert_eq!(batch_cap(&Preprocess::efficientnet(224), 16), 16);
    assert_eq!(batch_cap(&Preprocess::efficientnet(224), 0), 1);
    let per_image = 3 * 2000 * 2000 * 4;
    let b = batch_cap(&Preprocess::efficientnet(2000), 1 << 40);
    assert!(b >= 1 && b * per_image <= MAX_BATCH_INPUT_BYTES, "{b}");
}
