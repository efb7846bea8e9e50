//! Real trained weights through ONNX: EfficientNet-Lite0 exported by torch.onnx from the
//! reference PyTorch implementation (`tools/onnx/export_lite0.py`, opsets 13 and 17, the
//! weight file `ptq4 fetch efficientnet-lite0` pins) imports to the same network as the
//! pickle importer: the same logits (1e-5 relative), the same quantized plans (deploy W4A4
//! calibrated and data-free, paper W4A4), and one integer logits hash.

mod common;

use common::onnx::rel_err;

use std::path::PathBuf;

use ptq4::engine::exec::int_model::Exec;
use ptq4::engine::{Backend, Executable, Forward};
use ptq4::io::dataset::Dataset;
use ptq4::io::onnx::{self as ox, PreprocessArgs, Preset};
use ptq4::model::{Fp32Model, LoadedModel};
use ptq4::pipeline::{quantize, StatsSource};
use ptq4::qmodel::QuantModel;
use ptq4::quant::config::{Protocol, QuantConfig};
use ptq4::Tensor;

fn exported(opset: u32) -> Option<PathBuf> {
    let dir = std::env::var_os("PTQ4_LITE0_ONNX")
        .map(PathBuf::from)
        .unwrap_or_else(|| ptq4::io::fetch::home().join("onnx-lite0"));
    let p = dir.join(format!("efficientnet-lite0-opset{opset}.onnx"));
    if p.exists() {
        return Some(p);
    }
    common::skip_missing_data(&format!(
        "SKIPPED torch-exported Lite0: {} missing (make it with tools/onnx/export_lite0.py)",
        p.display()
    ));
    None
}

fn pickle_model() -> Option<Fp32Model> {
    let path = common::fetched("efficientnet-lite0")?;
    match LoadedModel::load(&path).unwrap() {
        LoadedModel::Fp32(m) => Some(m),
        LoadedModel::Quant(_) => panic!("{}: not an FP32 model", path.display()),
    }
}

fn onnx_model(path: &std::path::Path) -> Fp32Model {
    let args = PreprocessArgs {
        preset: Some(Preset::Tf),
        ..Default::default()
    };
    let g = ox::import(path, &args).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Fp32Model::new(g).unwrap()
}

/// Two smooth synthetic images in the model's normalised input range.
fn input() -> Tensor {
    let mut s = 0x11e0u64;
    let mut x = common::rand(&[2, 3, 224, 224], &mut s);
    x.data.iter_mut().for_each(|v| *v = v.clamp(-1.0, 1.0));
    x
}

fn forward(e: Executable, exec: Option<Exec>, x: &Tensor) -> Tensor {
    Backend::Cpu
        .bind(e, exec)
        .unwrap()
        .forward(x.clone())
        .unwrap()
}

/// The plans agree layer by layer and point by point, names aside (the exporter names
/// nodes after PyTorch modules).
fn assert_same_plan(what: &str, a: &QuantModel, b: &QuantModel) {
    let (pa, pb) = (&a.plan, &b.plan);
    assert_eq!(pa.layers.len(), pb.layers.len(), "{what}: layer count");
    for (la, lb) in pa.layers.iter().zip(&pb.layers) {
        let at = format!("{what}: layers {} / {}", la.node, lb.node);
        assert_eq!(la.params, lb.params, "{at}: weight quantizers");
        assert_eq!(la.codes, lb.codes, "{at}: weight codes");
        assert_eq!(la.second, lb.second, "{at}: second tensor");
        assert_eq!(la.bias, lb.bias, "{at}: bias");
    }
    assert_eq!(pa.acts.len(), pb.acts.len(), "{what}: activation points");
    for (x, y) in pa.acts.iter().zip(&pb.acts) {
        let at = format!("{what}: activations {} / {}", x.value, y.value);
        assert_eq!(x.params, y.params, "{at}");
        assert_eq!((x.per_channel, x.act), (y.per_channel, y.act), "{at}");
    }
}

#[test]
fn torch_exported_lite0_equals_the_pickle_import() {
    let (Some(reference), Some(data)) = (pickle_model(), common::fetched("imagenet-samples"))
    else {
        return;
    };
    let data = Dataset::open(&data).unwrap();
    let x = input();
    let want = forward(Executable::Fp32(&reference.prepared), None, &x);
    let deploy = QuantConfig {
        protocol: Protocol::Deploy,
        ..QuantConfig::default()
    };
    let paper = QuantConfig::default();
    let calib = StatsSource::Images {
        data: &data,
        n: 4,
        views: 1,
        batch: 4,
    };
    let q = |m: &Fp32Model, cfg: &QuantConfig, src| {
        quantize(m, cfg, src, &Backend::Cpu, false).unwrap().0
    };
    let q_ref = [
        q(&reference, &deploy, calib),
        q(&reference, &deploy, StatsSource::DataFree),
        q(&reference, &paper, calib),
    ];
    let int_ref = forward(q_ref[0].executable().unwrap(), Some(Exec::Int), &x);
    for opset in [13, 17] {
        let Some(path) = exported(opset) else {
            return;
        };
        let m = onnx_model(&path);
        assert_eq!(
            m.prepared.nodes.len(),
            reference.prepared.nodes.len(),
            "opset {opset}: prepared node count"
        );
        let got = forward(Executable::Fp32(&m.prepared), None, &x);
        let e = rel_err(&got, &want);
        eprintln!("opset {opset}: FP32 logits relative error {e:.2e}");
        assert!(e <= 1e-5, "opset {opset}: relative error {e}");
        let q_onnx = [
            q(&m, &deploy, calib),
            q(&m, &deploy, StatsSource::DataFree),
            q(&m, &paper, calib),
        ];
        for (what, (a, b)) in ["deploy calibrated", "deploy data-free", "paper calibrated"]
            .iter()
            .zip(q_ref.iter().zip(&q_onnx))
        {
            assert_same_plan(&format!("opset {opset} {what}"), a, b);
        }
        let int = forward(q_onnx[0].executable().unwrap(), Some(Exec::Int), &x);
        assert_eq!(
            int.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            int_ref.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "opset {opset}: integer logits"
        );
    }
}
