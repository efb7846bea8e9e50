//! The Fashion-MNIST zoo (`models/fmnist/`, trained by `tools/fmnist/train.py`): each
//! committed ptq4 model file is what ptq4's ONNX importer makes of the committed ONNX export
//! (byte for byte, with the preprocessing recorded in `zoo.json`), is at most 5 MB, and
//! reproduces its recorded FP32 test accuracy (torch's count of correct images) exactly on the
//! bundled 10,000-image test set, on the CPU. The bundled calibration images are the training
//! images `calibration.json` lists.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// (file stem in models/fmnist/, bundled model NAME)
const NETS: &[(&str, &str)] = &[
    ("vgg", "fmnist-vgg"),
    ("vgg_bn", "fmnist-vgg-bn"),
    ("resnet", "fmnist-resnet"),
    ("inception", "fmnist-inception"),
    ("mobilenet_v2", "fmnist-mobilenet-v2"),
    ("efficientnet", "fmnist-efficientnet"),
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn zoo_dir() -> PathBuf {
    root().join("models/fmnist")
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
fn each_committed_model_is_its_onnx_import() {
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
    for (net, _) in NETS {
        let committed = zoo_dir().join(format!("{net}.safetensors"));
        let size = std::fs::metadata(&committed)
            .unwrap_or_else(|e| panic!("{}: {e}", committed.display()))
            .len();
        assert!(size <= 5 << 20, "{net}: {size} bytes, over 5 MB");
        let model = d.path().join(format!("{net}.safetensors"));
        ptq4(&d.path().join("home"))
            .arg("import")
            .arg(zoo_dir().join(format!("{net}.onnx")))
            .args(["--preprocess", "none", "--size", "28", "--resize", "28"])
            .args(["--mean", &mean.to_string(), "--std", &std.to_string(), "-o"])
            .arg(&model)
            .assert()
            .success();
        assert!(
            std::fs::read(&model).unwrap() == std::fs::read(&committed).unwrap(),
            "{net}: the committed model differs from the import of {net}.onnx \
             (regenerate with tools/fmnist/import.sh)"
        );
    }
}

#[test]
fn each_net_reproduces_its_recorded_fp32_accuracy() {
    let zoo = zoo();
    let d = tempfile::tempdir().unwrap();
    for (net, name) in NETS {
        let rec = &zoo["nets"][net];
        let correct = rec["correct"]
            .as_u64()
            .unwrap_or_else(|| panic!("{net}: no record"));
        assert_eq!(rec["test_images"].as_u64(), Some(10_000), "{net}");
        let out = ptq4(d.path())
            .args(["eval", "--backend", "cpu", "--batch", "250", "--json"])
            .args(["--data", "fashion-mnist-test", "--model", name])
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

/// One IDX file's payload (after its header of `4 + 4·dims` bytes).
fn idx_payload(path: &Path, dims: usize) -> Vec<u8> {
    use std::io::Read;
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut bytes)
        .unwrap();
    bytes.split_off(4 + 4 * dims)
}

#[test]
fn bundled_calibration_images_are_the_listed_training_images() {
    let home = ptq4::io::fetch::home();
    let train = home.join("data/fashion-mnist");
    if !train.join("train-images-idx3-ubyte.gz").exists() {
        let fetched = ptq4(&home)
            .args(["fetch", "fashion-mnist"])
            .output()
            .unwrap();
        if !fetched.status.success() {
            let why = String::from_utf8_lossy(&fetched.stderr);
            if std::env::var("PTQ4_REQUIRE_DATA").as_deref() == Ok("1") {
                panic!("PTQ4_REQUIRE_DATA=1 but fashion-mnist could not be fetched: {why}");
            }
            eprintln!("SKIP: fashion-mnist not fetched ({why}); set PTQ4_REQUIRE_DATA=1 to fail");
            return;
        }
    }
    let listed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(zoo_dir().join("calibration.json")).unwrap())
            .unwrap();
    let indices: Vec<usize> = listed["indices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(indices.len(), 64);
    let calib = root().join("data/fashion-mnist-calib");
    let images = idx_payload(&calib.join("calib-images-idx3-ubyte.gz"), 3);
    let labels = idx_payload(&calib.join("calib-labels-idx1-ubyte.gz"), 1);
    let train_images = idx_payload(&train.join("train-images-idx3-ubyte.gz"), 3);
    let train_labels = idx_payload(&train.join("train-labels-idx1-ubyte.gz"), 1);
    assert_eq!((images.len(), labels.len()), (64 * 784, 64));
    for (k, &i) in indices.iter().enumerate() {
        assert_eq!(
            images[k * 784..(k + 1) * 784],
            train_images[i * 784..(i + 1) * 784],
            "calibration image {k} (training index {i})"
        );
        assert_eq!(labels[k], train_labels[i], "calibration label {k}");
    }
}
