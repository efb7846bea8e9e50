//! ONNX import: committed fixtures made by `tools/onnx/make_fixtures.py` (a tiny conv net
//! with onnxruntime reference outputs, constant-folded shape chains, external data,
//! auto_pad variants, unsupported ops) and, when cached, the nine structure-only models
//! the `onnx` package ships (`light_*.onnx`).

mod common;

use std::path::{Path, PathBuf};

use prost::Message as _;
use ptq4::graph::passes;
use ptq4::io::onnx::{self as ox, PreprocessArgs, Preset};
use ptq4::{Graph, Tensor};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx")
}

/// Reads a serialized TensorProto (`numpy_helper.from_array(..).SerializeToString()`).
fn read_pb(path: &Path) -> Tensor {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let t = ox::onnx::TensorProto::decode(bytes.as_slice()).unwrap();
    let c = ox::tensor::decode(&t, Path::new(".")).unwrap();
    Tensor {
        shape: c.shape.clone(),
        data: c.floats(),
    }
}

fn none() -> PreprocessArgs {
    PreprocessArgs {
        preset: Some(Preset::None),
        ..Default::default()
    }
}

/// FP32 output of `g` (prepared as every command prepares it) on `x` with a batch axis.
fn run(g: &Graph, x: Tensor) -> Tensor {
    let mut p = g.clone();
    passes::prepare(&mut p).unwrap();
    ptq4::engine::forward(&p, x).unwrap()
}

/// Largest |a − b| relative to the largest |b|.
fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(
        a.data.len(),
        b.data.len(),
        "shapes {:?} vs {:?}",
        a.shape,
        b.shape
    );
    let scale = b.data.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
    let d = a
        .data
        .iter()
        .zip(&b.data)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    d / scale
}

/// The dummy input the onnx backend tests feed the light models: arange(n)/n.
fn arange_input(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor {
        shape: shape.to_vec(),
        data: (0..n).map(|i| (i as f64 / n as f64) as f32).collect(),
    }
}

/// The light models that import with today's IR ops and match their reference outputs,
/// and for the others the op each needs (named in the import error).
const LIGHT: &[(&str, Option<&str>)] = &[
    ("light_bvlc_alexnet", Some("LRN")),
    ("light_densenet121", None),
    ("light_inception_v1", Some("LRN")),
    ("light_inception_v2", None),
    ("light_resnet50", None),
    ("light_shufflenet", Some("Transpose")),
    ("light_squeezenet", None),
    ("light_vgg19", None),
    ("light_zfnet512", Some("LRN")),
];

#[test]
fn light_models_import_and_match_reference_outputs() {
    let dir = std::env::var_os("PTQ4_ONNX_LIGHT")
        .map(PathBuf::from)
        .unwrap_or_else(|| ptq4::io::fetch::home().join("onnx-light"));
    if !dir.join("light_resnet50.onnx").exists() {
        common::skip_loudly(&format!(
            "SKIPPED light_* ONNX models: not in {} (copy onnx/backend/test/data/light/ from the onnx wheel there, or set PTQ4_ONNX_LIGHT)",
            dir.display()
        ));
        return;
    }
    let mut report = String::new();
    for &(name, needs) in LIGHT {
        let r = ox::import(&dir.join(format!("{name}.onnx")), &none());
        match (r, needs) {
            (Ok(g), None) => {
                let reference = read_pb(&dir.join(format!("{name}_output_0.pb")));
                let mut shape = vec![1];
                shape.extend(&g.input_shape);
                let y = run(&g, arange_input(&shape));
                let e = rel_err(&y, &reference);
                report.push_str(&format!(
                    "{name}: {} nodes, rel err {e:.2e}\n",
                    g.nodes.len()
                ));
                assert!(e <= 1e-4, "{name}: relative error {e}");
            }
            (Err(e), Some(op)) => {
                let m = e.to_string();
                report.push_str(&format!("{name}: {m}\n"));
                assert!(m.contains(&format!("({op})")), "{name}: {m}");
            }
            (Ok(_), Some(op)) => panic!("{name} imports: update LIGHT (it needed {op})"),
            (Err(e), None) => panic!("{name}: {e}"),
        }
    }
    eprintln!("{report}");
}
