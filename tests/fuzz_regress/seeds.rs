//! The fuzz seeds, built by the library itself: a small FP32 model touching every operator,
//! the same model quantized (`paper` and `deploy` protocols, one with a dual layer), a
//! BatchNorm-like legacy torch state dict (the opcodes `torch.save` emits), and small PNG and
//! JPEG images (RGB, grey, RGBA, 16-bit). `PTQ4_FUZZ_WRITE_SEEDS=1` writes them to
//! `fuzz/corpus/<target>/seed-*` (see `fuzz/README.md`).

use std::collections::BTreeMap;
use std::io::Cursor;

use image::{DynamicImage, ImageBuffer, ImageFormat, Luma, Rgb, Rgba};
use ptq4::engine::Backend;
use ptq4::graph::{Activation, Graph, Linear, Op, Pool, Preprocess};
use ptq4::io::model::graph_to_file;
use ptq4::io::pickle::MAGIC;
use ptq4::model::Fp32Model;
use ptq4::pipeline::{quantize, StatsSource};
use ptq4::quant::config::{Protocol, QuantConfig};
use ptq4::Tensor;

use crate::common::{conv, node, rand};
use crate::pickle_writer::W;

/// `(target, file name, bytes)` of every seed.
pub fn all() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = vec![("model", "seed-fp32".to_string(), fp32())];
    for (name, protocol, dual) in [
        ("seed-quant-paper", Protocol::Paper, 0),
        ("seed-quant-deploy", Protocol::Deploy, 0),
        ("seed-quant-dual", Protocol::Paper, 1),
    ] {
        let q = quant(protocol, dual);
        out.push(("model", name.to_string(), q.clone()));
        out.push(("qmodel", name.to_string(), q));
    }
    out.push(("pickle", "seed-bn".to_string(), pickle()));
    for (name, bytes) in images() {
        out.push(("image", name, bytes));
    }
    out
}

/// conv → BN → ReLU6 → depthwise conv → BN → ReLU → (+ skip) → max pool ‖ avg pool → concat
/// → GAP → flatten → linear → softmax, on a 3 × 8 × 8 input. With `integer`, the pools,
/// concat and softmax are left out (what the `deploy` integer kernels ran when the seeds
/// were made; the seeds stay as they are).
fn graph(integer: bool) -> Graph {
    let seed = &mut 7u64;
    let mut params = BTreeMap::new();
    let mut bn = |name: &str, c: usize, params: &mut BTreeMap<String, Tensor>| {
        params.insert(format!("{name}.weight"), rand(&[c], seed));
        params.insert(format!("{name}.bias"), rand(&[c], seed));
        params.insert(format!("{name}.running_mean"), rand(&[c], seed));
        let v = rand(&[c], seed);
        let data = v.data.iter().map(|x| x.abs() + 0.1).collect();
        let var = Tensor {
            shape: v.shape,
            data,
        };
        params.insert(format!("{name}.running_var"), var);
    };
    bn("bn1", 4, &mut params);
    bn("bn2", 4, &mut params);
    let seed = &mut 11u64;
    params.insert("c1.weight".into(), rand(&[4, 3, 3, 3], seed));
    params.insert("dw.weight".into(), rand(&[4, 1, 3, 3], seed));
    let features = if integer { 4 } else { 8 };
    params.insert("fc.weight".into(), rand(&[5, features], seed));
    params.insert("fc.bias".into(), rand(&[5], seed));
    let pool = Pool {
        kernel: [3, 3],
        stride: [2, 2],
        padding: [1, 1, 1, 1],
        count_include_pad: false,
    };
    let fc = Linear {
        in_features: features,
        out_features: 5,
        bias: true,
        act: Activation::None,
    };
    let mut g = Graph {
        name: "fuzz-seed".into(),
        input_shape: vec![3, 8, 8],
        nodes: vec![
            node("c1", Op::Conv2d(conv(3, 4, 3, 1, 1)), &["input"]),
            node(
                "bn1",
                Op::BatchNorm {
                    eps: 1e-3,
                    act: Default::default(),
                },
                &["c1"],
            ),
            node("r1", Op::Relu6, &["bn1"]),
            node("dw", Op::Conv2d(conv(4, 4, 3, 1, 4)), &["r1"]),
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
            node("mp", Op::MaxPool(pool.clone()), &["add"]),
            node("ap", Op::AvgPool(pool), &["add"]),
            node("cat", Op::Concat, &["mp", "ap"]),
            node("gap", Op::GlobalAvgPool, &["cat"]),
            node("flat", Op::Flatten, &["gap"]),
            node("fc", Op::Linear(fc), &["flat"]),
            node("prob", Op::Softmax, &["fc"]),
        ],
        output: "prob".into(),
        params,
        preprocess: Preprocess::efficientnet(8),
    };
    if integer {
        g.nodes
            .retain(|n| !matches!(n.name.as_str(), "mp" | "ap" | "cat" | "prob"));
        for n in g.nodes.iter_mut().filter(|n| n.name == "gap") {
            n.inputs = vec!["add".into()];
        }
        g.output = "fc".into();
    }
    g
}

fn fp32() -> Vec<u8> {
    graph_to_file(&graph(false)).unwrap().to_bytes().unwrap()
}

/// The seed graph quantized data-free (BatchNorm statistics), W4A4.
fn quant(protocol: Protocol, dual: usize) -> Vec<u8> {
    let m = Fp32Model::new(graph(protocol == Protocol::Deploy)).unwrap();
    let cfg = QuantConfig {
        protocol,
        dual,
        ..QuantConfig::default()
    };
    let (q, _) = quantize(&m, &cfg, StatsSource::DataFree, &Backend::Cpu, false).unwrap();
    q.to_file().unwrap().to_bytes().unwrap()
}

/// A state-dict entry: name, storage class, storage key, storage size, offset, shape, stride.
type TensorRef = (
    &'static str,
    &'static str,
    &'static str,
    u16,
    u16,
    &'static [u16],
    &'static [u16],
);

/// `{"conv.weight": f32 [2, 3], "conv.bias": f32 [2] (a view at offset 1 of a 3-element
/// storage), "bn.num_batches_tracked": i64 []}`: magic, protocol, system info, the
/// state-dict pickle (memoized globals, as torch writes it), the storage keys, the storages.
fn pickle() -> Vec<u8> {
    let mut w = W::default();
    w.proto().op(0x8a).op(10);
    w.0.extend_from_slice(&MAGIC.to_le_bytes()[..10]);
    w.op(b'.').proto().int(1001).op(b'.');
    w.proto()
        .op(b'}')
        .op(b'(')
        .str("protocol_version")
        .int(1001);
    w.str("little_endian")
        .op(0x88)
        .str("type_sizes")
        .op(b'}')
        .op(b'(');
    w.str("short").int(2).str("int").int(4).str("long").int(4);
    w.op(b'u').op(b'u').op(b'.');
    let ts: [TensorRef; 3] = [
        ("conv.weight", "FloatStorage", "k0", 6, 0, &[2, 3], &[3, 1]),
        ("conv.bias", "FloatStorage", "k1", 3, 1, &[2], &[1]),
        (
            "bn.num_batches_tracked",
            "LongStorage",
            "k2",
            1,
            0,
            &[],
            &[],
        ),
    ];
    w.proto().global("collections", "OrderedDict").put(0);
    w.op(b')').op(b'R').put(1).op(b'(');
    for (i, (name, class, key, size, offset, shape, stride)) in ts.iter().enumerate() {
        w.str(name);
        if i == 0 {
            w.global("torch._utils", "_rebuild_tensor_v2").put(2);
        } else {
            w.get(2);
        }
        w.op(b'(').op(b'(').str("storage").global("torch", class);
        w.str(key)
            .str("cpu")
            .int(*size as usize)
            .op(b'N')
            .op(b't')
            .op(b'Q');
        w.int(*offset as usize);
        for dims in [shape, stride] {
            match dims.len() {
                0 => w.op(b')'),
                1 => w.int(dims[0] as usize).op(0x85),
                _ => {
                    w.op(b'(');
                    dims.iter().for_each(|&d| {
                        w.int(d as usize);
                    });
                    w.op(b't')
                }
            };
        }
        w.op(0x89).get(0).op(b')').op(b'R').op(b't').op(b'R');
    }
    w.op(b'u')
        .op(b'}')
        .str("_metadata")
        .get(0)
        .op(b')')
        .op(b'R');
    w.op(b's').op(b'b').op(b'.');
    w.proto().op(b']').put(0).op(b'(');
    w.str("k0").str("k1").str("k2").op(b'e').op(b'.');
    let mut out = w.0;
    let f32s = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    for (count, data) in [
        (6i64, f32s(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])),
        (3, f32s(&[0.5, -0.5, 7.0])),
        (1, 42i64.to_le_bytes().to_vec()),
    ] {
        out.extend_from_slice(&count.to_le_bytes());
        out.extend(data);
    }
    out
}

fn images() -> Vec<(String, Vec<u8>)> {
    let rgb = ImageBuffer::from_fn(7, 5, |x, y| Rgb([(x * 30) as u8, (y * 40) as u8, 200]));
    let grey = ImageBuffer::from_fn(4, 9, |x, y| Luma([(x * 50 + y * 5) as u8]));
    let rgba = ImageBuffer::from_fn(3, 3, |x, y| Rgba([(x * 80) as u8, 9, (y * 80) as u8, 128]));
    let deep = ImageBuffer::from_fn(5, 2, |x, y| Luma([(x * 9000 + y * 100) as u16]));
    let mut out = Vec::new();
    for (name, img, format) in [
        (
            "seed-rgb.png",
            DynamicImage::from(rgb.clone()),
            ImageFormat::Png,
        ),
        ("seed-grey.png", grey.clone().into(), ImageFormat::Png),
        ("seed-rgba.png", rgba.into(), ImageFormat::Png),
        ("seed-grey16.png", deep.into(), ImageFormat::Png),
        ("seed-rgb.jpg", rgb.into(), ImageFormat::Jpeg),
        ("seed-grey.jpg", grey.into(), ImageFormat::Jpeg),
    ] {
        let mut bytes = Cursor::new(Vec::new());
        img.write_to(&mut bytes, format).unwrap();
        out.push((name.to_string(), bytes.into_inner()));
    }
    out
}
