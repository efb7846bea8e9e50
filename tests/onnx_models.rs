//! The ONNX models end to end through the command line, as a user runs them: each of the
//! nine light_* structures that the onnx package ships (with random weights where
//! tools/onnx/randomize_light.py makes them, so that quantization has something to do;
//! VGG-19, 548 MB at random, with its constant weights) and the
//! torch-exported EfficientNet-Lite0 is quantized with `ptq4 quantize --model X.onnx`
//! (deploy: calibrated and data-free; paper: calibrated), and `ptq4 eval` of each deploy
//! file gives one `logits_sha256` with `--exec int` and `--exec sim` on the CPU and on the
//! GPU. One input image keeps the big networks (VGG-19: 20 GFLOP) affordable on lavapipe.

mod common;

use std::path::{Path, PathBuf};

const LIGHT: &[&str] = &[
    "light_bvlc_alexnet",
    "light_densenet121",
    "light_inception_v1",
    "light_inception_v2",
    "light_resnet50",
    "light_shufflenet",
    "light_squeezenet",
    "light_vgg19",
    "light_zfnet512",
];

fn ptq4(args: &[&str]) -> String {
    let out = assert_cmd::Command::cargo_bin("ptq4")
        .unwrap()
        .env("NO_COLOR", "1")
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "ptq4 {}: {}\n{text}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Quantizes `model` three ways and checks the four executors of each deploy file.
fn check(model: &Path, images: &Path, preset: &str, tmp: &Path, report: &mut String) {
    let name = model.file_stem().unwrap().to_str().unwrap();
    let gpu = common::gpu().is_some();
    // An ONNX file names no preprocessing: given directly, the commands import it with the
    // imagenet preset (and say so); the Lite0 export is imported first with its own.
    let source = if preset == "imagenet" {
        model.to_path_buf()
    } else {
        let imported = tmp.join(format!("{name}.safetensors"));
        ptq4(&[
            "import",
            s(model),
            "--preprocess",
            preset,
            "-o",
            s(&imported),
        ]);
        imported
    };
    let calib = ["--calib", s(images), "--calib-n", "2", "--backend", "cpu"];
    let mut runs = vec![
        ("deploy", &calib[..]),
        ("deploy data-free", &["--data-free", "--backend", "cpu"][..]),
        ("paper", &calib[..]),
    ];
    // VGG-19 (20 GFLOP per image, minutes on lavapipe) has constant weights here, so its
    // three plans give the same logits: the calibrated deploy plan stands for them.
    if name == "light_vgg19" {
        runs.truncate(1);
    }
    for (what, extra) in runs {
        let t = std::time::Instant::now();
        let q = tmp.join(format!("{name}-{}.safetensors", what.replace(' ', "-")));
        let protocol = what.split(' ').next().unwrap();
        let mut args = vec!["quantize", "--model", s(&source), "--protocol", protocol];
        args.extend(extra);
        args.extend(["-o", s(&q)]);
        ptq4(&args);
        let mut hashes = Vec::new();
        let backends: &[&str] = if gpu { &["cpu", "gpu"] } else { &["cpu"] };
        let execs: &[&str] = if protocol == "deploy" {
            &["int", "sim"]
        } else {
            &[""]
        };
        for b in backends {
            for e in execs {
                let mut a = vec![
                    "eval",
                    "--model",
                    s(&q),
                    "--data",
                    s(images),
                    "--limit",
                    "1",
                    "--backend",
                    b,
                    "--json",
                ];
                if !e.is_empty() {
                    a.extend(["--exec", e]);
                }
                let v: serde_json::Value = serde_json::from_str(&ptq4(&a)).unwrap();
                hashes.push((
                    format!("{b} {e}"),
                    v["logits_sha256"].as_str().unwrap().to_string(),
                ));
            }
        }
        if protocol == "deploy" {
            for (k, h) in &hashes[1..] {
                assert_eq!(h, &hashes[0].1, "{name} {what}: {k} vs {}", hashes[0].0);
            }
        }
        report.push_str(&format!(
            "{name} {what}: {} ({} runs, {:.1} s)\n",
            &hashes[0].1[..16],
            hashes.len(),
            t.elapsed().as_secs_f64()
        ));
    }
}

#[test]
fn onnx_models_quantize_and_every_executor_gives_one_hash() {
    let Some(images) = common::fetched("imagenet-samples") else {
        return;
    };
    if common::gpu().is_none() {
        common::skip_loudly("GPU runs of the ONNX models: no usable adapter (CPU only)");
    }
    let home = ptq4::io::fetch::home();
    let light = std::env::var_os("PTQ4_ONNX_LIGHT_RANDOM")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join("onnx-light-random"));
    let lite0 = std::env::var_os("PTQ4_LITE0_ONNX")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join("onnx-lite0"))
        .join("efficientnet-lite0-opset17.onnx");
    let constant = std::env::var_os("PTQ4_ONNX_LIGHT")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join("onnx-light"));
    let mut models: Vec<(PathBuf, &str)> = LIGHT
        .iter()
        .map(|n| {
            let random = light.join(format!("{n}.onnx"));
            let path = match random.exists() {
                true => random,
                false => constant.join(format!("{n}.onnx")),
            };
            (path, "imagenet")
        })
        .collect();
    models.push((lite0, "tf"));
    let missing: Vec<String> = models
        .iter()
        .filter(|(p, _)| !p.exists())
        .map(|(p, _)| p.display().to_string())
        .collect();
    if !missing.is_empty() {
        common::skip_missing_data(&format!(
            "SKIPPED ONNX models end to end: missing {} (tools/onnx/randomize_light.py, tools/onnx/export_lite0.py)",
            missing.join(", ")
        ));
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut report = String::new();
    for (m, preset) in &models {
        check(m, &images, preset, tmp.path(), &mut report);
    }
    eprintln!("{report}");
}
