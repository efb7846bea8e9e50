//! The command line contract: argument definitions, usage errors (exit 2), JSON output.

mod common;

use assert_cmd::Command;
use clap::CommandFactory;

#[test]
fn cli_definition_is_consistent() {
    ptq4::cli::Cli::command().debug_assert();
}

#[test]
fn usage_errors_exit_2() {
    Command::cargo_bin("ptq4")
        .unwrap()
        .args(["eval"])
        .assert()
        .code(2);
    Command::cargo_bin("ptq4")
        .unwrap()
        .args(["quantize", "--wbits", "9", "-o", "x.safetensors"])
        .assert()
        .code(2);
    // Neither --calib nor --data-free.
    Command::cargo_bin("ptq4")
        .unwrap()
        .args(["quantize", "--model", "Cargo.toml", "-o", "x.safetensors"])
        .assert()
        .code(2);
}

#[test]
fn missing_model_is_a_clear_error() {
    let out = Command::cargo_bin("ptq4")
        .unwrap()
        .args(["inspect", "/nonexistent/model.safetensors"])
        .assert()
        .code(2)
        .get_output()
        .stderr
        .clone();
    let msg = String::from_utf8_lossy(&out);
    assert!(
        msg.contains("/nonexistent/model.safetensors") && msg.contains("fetchable"),
        "{msg}"
    );
}

#[test]
fn quantize_then_eval_json() {
    let (Some(model), Some(data)) = (
        common::fetched("efficientnet-lite0"),
        common::fetched("imagenet-samples"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("q.safetensors");
    let out = Command::cargo_bin("ptq4")
        .unwrap()
        .args(["quantize", "--model"])
        .arg(&model)
        .args([
            "--data-free",
            "--wbits",
            "4",
            "--abits",
            "8",
            "--protocol",
            "deploy",
            "--json",
            "-o",
        ])
        .arg(&q)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["plan"]["protocol"], "deploy");
    assert_eq!(v["plan"]["statistics"], "data-free");
    // Codes, not floats: well under a third of the FP32 weights.
    let fp32 = std::fs::metadata(&model).unwrap().len();
    let qlen = std::fs::metadata(&q).unwrap().len();
    assert!(
        qlen * 3 < fp32,
        "quantized file {qlen} bytes vs FP32 {fp32}"
    );
    let out = Command::cargo_bin("ptq4")
        .unwrap()
        .args(["eval", "--model"])
        .arg(&q)
        .arg("--data")
        .arg(&data)
        .arg("--reference")
        .arg(&model)
        .arg("--json")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["n"], 20);
    assert_eq!(v["predictions"].as_array().unwrap().len(), 20);
    assert_eq!(v["logits_sha256"].as_str().unwrap().len(), 64);
    for k in [
        "agreement_top1",
        "agreement_top5",
        "kl_mean",
        "images_per_s",
        "top1",
        "top5",
    ] {
        assert!(v[k].is_number(), "{k} missing in {v}");
    }
}

/// `eval --exec sim --backend gpu` prints the logits of `--exec int --backend cpu`.
#[test]
fn eval_exec_sim_on_gpu_equals_int_on_cpu() {
    let (Some(model), Some(data)) = (
        common::fetched("efficientnet-lite0"),
        common::fetched("imagenet-samples"),
    ) else {
        return;
    };
    if common::test_context().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("w4a4.safetensors");
    Command::cargo_bin("ptq4")
        .unwrap()
        .args(["quantize", "--model"])
        .arg(&model)
        .args(["--data-free", "--wbits", "4", "--abits", "4"])
        .args(["--protocol", "deploy", "-o"])
        .arg(&q)
        .assert()
        .success();
    let eval = |exec: &str, backend: &str| {
        let out = Command::cargo_bin("ptq4")
            .unwrap()
            .args(["eval", "--model"])
            .arg(&q)
            .arg("--data")
            .arg(&data)
            .args([
                "--limit",
                "4",
                "--exec",
                exec,
                "--backend",
                backend,
                "--json",
            ])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["n"], 4);
        v["logits_sha256"].as_str().unwrap().to_string()
    };
    let int_cpu = eval("int", "cpu");
    assert_eq!(int_cpu.len(), 64);
    assert_eq!(eval("sim", "gpu"), int_cpu);
}
