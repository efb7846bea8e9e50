//! The Fashion-MNIST zoo (`models/fmnist/`, trained by `tools/fmnist/train.py`): each
//! committed ONNX network, imported with the preprocessing recorded in `zoo.json`, reproduces
//! its recorded FP32 test accuracy (torch's count of correct images) exactly on the bundled
//! 10,000-image test set, on the CPU.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// The networks ptq4 imports today. The EfficientNet-style net (SiLU, Sigmoid, Mul) joins
/// when the importer has those ops.
const NETS: &[&str] = &["vgg", "vgg_bn", "resnet", "inception", "mobilenet_v2"];

fn zoo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/fmnist")
}

fn zoo() -> serde_json::Value {
    let text = std::fs::read_to_string(zoo_dir().join("zoo.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn ptq4(home: &Path) -> Command {
    let mut c = Command::cargo_bin("ptq4").unwrap();
    c.env("PTQ4_HOME", home);
    c
}

#[test]
fn each_net_reproduces_its_recorded_fp32_accuracy() {
    let zoo = zoo();
    let pre = &zoo["preprocess"];
    let (mean, std) = (
        pre["mean_255"].as_f64().unwrap(),
        pre["std_255"].as_f64().unwrap(),
    );
    assert_eq!(
        (pre["size"].as_u64(), pre["channels"].as_u64()),
        (Some(28), Some(1))
    );
    let d = tempfile::tempdir().unwrap();
    let home = d.path().join("home");
    for net in NETS {
        let rec = &zoo["nets"][net];
        let correct = rec["correct"]
            .as_u64()
            .unwrap_or_else(|| panic!("{net}: no record"));
        assert_eq!(rec["test_images"].as_u64(), Some(10_000), "{net}");
        let onnx = zoo_dir().join(format!("{net}.onnx"));
        assert!(
            std::fs::metadata(&onnx).unwrap().len() <= 5 << 20,
            "{net}: over 5 MB"
        );
        let model = d.path().join(format!("{net}.safetensors"));
        ptq4(&home)
            .arg("import")
            .arg(&onnx)
            .args(["--preprocess", "none", "--size", "28", "--resize", "28"])
            .args(["--mean", &mean.to_string(), "--std", &std.to_string(), "-o"])
            .arg(&model)
            .assert()
            .success();
        let out = ptq4(&home)
            .args(["eval", "--backend", "cpu", "--batch", "250", "--json"])
            .args(["--data", "fashion-mnist-test", "--model"])
            .arg(&model)
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let got: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(got["n"].as_u64(), Some(10_000), "{net}");
        let top1 = got["top1"].as_f64().unwrap();
        let got_correct = (top1 * 10_000.0).round() as u64;
        eprintln!("{net}: ptq4 {got_correct}/10000, torch {correct}/10000");
        assert_eq!(got_correct, correct, "{net}: ptq4 FP32 top-1 {top1}");
    }
}
