//! Helpers of the ONNX test binaries: the committed fixtures (`tools/onnx/make_fixtures.py`)
//! and their serialized reference tensors, the relative error they are judged by, and the
//! onnxruntime check (`tools/onnx/check_export.py` through `PTQ4_ONNX_PYTHON`, loud skip
//! without it).

use std::path::{Path, PathBuf};

use prost::Message as _;
use ptq4::io::onnx::{self as ox, PreprocessArgs, Preset};
use ptq4::Tensor;

/// The committed fixture folder.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx")
}

/// Reads a serialized TensorProto (`numpy_helper.from_array(..).SerializeToString()`).
pub fn read_pb(path: &Path) -> Tensor {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let t = ox::onnx::TensorProto::decode(bytes.as_slice()).unwrap();
    let c = ox::tensor::decode(&t, Path::new(".")).unwrap();
    Tensor {
        shape: c.shape.clone(),
        data: c.floats(),
    }
}

/// No input normalisation (fixtures take their inputs as they are).
pub fn none() -> PreprocessArgs {
    PreprocessArgs {
        preset: Some(Preset::None),
        ..Default::default()
    }
}

/// Largest |a − b| relative to the largest |b|.
pub fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
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

/// The Python with onnx and onnxruntime (`PTQ4_ONNX_PYTHON`; an empty value counts as
/// unset, as `env VAR= ...` clears it), or a loud skip.
pub fn python() -> Option<PathBuf> {
    match std::env::var_os("PTQ4_ONNX_PYTHON").filter(|p| !p.is_empty()) {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            super::skip_missing_data(
                "SKIP: onnxruntime checks: set PTQ4_ONNX_PYTHON to a Python with the packages of tools/onnx/requirements.txt",
            );
            None
        }
    }
}

/// A little-endian f32 `.npy` file.
pub fn write_npy(path: &Path, shape: &[usize], data: &[f32]) {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {tuple}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend((header.len() as u16).to_le_bytes());
    b.extend(header.as_bytes());
    b.extend(data.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(path, b).unwrap();
}

/// Runs tools/onnx/check_export.py on the serialized `model` (`mode` fp32 or qdq) against
/// ptq4's `reference` logits for `x` (`step`: what one output step is worth per logit;
/// `extra`: more flags, e.g. `--min-top1`). Fails the test if the check fails; returns the
/// script's JSON figures.
pub fn ort_check(
    py: &Path,
    model: &[u8],
    x: &Tensor,
    reference: &Tensor,
    mode: &str,
    step: Option<&[f32]>,
    extra: &[&str],
) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m.onnx");
    std::fs::write(&m, model).unwrap();
    let (xi, ri, si) = (
        dir.path().join("x.npy"),
        dir.path().join("ref.npy"),
        dir.path().join("step.npy"),
    );
    write_npy(&xi, &x.shape, &x.data);
    let k = reference.data.len() / x.shape[0];
    write_npy(&ri, &[x.shape[0], k], &reference.data);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/onnx/check_export.py");
    let mut cmd = std::process::Command::new(py);
    cmd.arg(&script)
        .arg(&m)
        .arg(&xi)
        .arg(&ri)
        .args(["--mode", mode]);
    if let Some(s) = step {
        write_npy(&si, &[s.len()], s);
        cmd.arg("--step").arg(&si);
    }
    cmd.args(extra);
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{mode}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{mode}: {stdout}");
    serde_json::from_str(stdout.trim()).unwrap()
}

/// The deploy plan of `q` on the four integer executors (integer kernels and exact
/// simulation, on the CPU and on the GPU where there is one): identical logits bits, all
/// finite. Returns them.
pub fn four_executors(q: &ptq4::qmodel::QuantModel, x: &Tensor, what: &str) -> Tensor {
    use ptq4::engine::exec::int_model::Exec;
    let im = q.int_model().unwrap();
    let bits = |t: &Tensor| t.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    let int = im.forward(x, Exec::Int).unwrap();
    let exact = im.forward(x, Exec::Exact).unwrap();
    assert_eq!(int.shape, exact.shape, "{what}");
    assert_eq!(bits(&int), bits(&exact), "{what}: int CPU vs exact CPU");
    if let Some(ctx) = super::gpu() {
        for exec in [Exec::Int, Exec::Exact] {
            let y = im.forward_gpu(ctx, x, exec).unwrap();
            assert_eq!(bits(&y), bits(&int), "{what}: {exec:?} GPU vs int CPU");
        }
    }
    assert!(int.data.iter().all(|v| v.is_finite()), "{what}: {int:?}");
    int
}
