//! The main job on its embedded default, offline: `ptq4 ablate` with no argument runs the
//! ablation of the bundled Fashion-MNIST ResNet, calibrated on the bundled 64 training images
//! and evaluated on all 10,000 bundled test images, with an empty cache and every way to a
//! registry broken (pip and apt-get replaced by failing stubs, proxies pointing nowhere).

use std::path::Path;

use assert_cmd::Command;

/// A folder of executables named like the registry clients, each failing loudly.
fn unreachable_registry_path(dir: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    for tool in [
        "python3", "python", "pip", "pip3", "apt-get", "apt", "curl", "wget",
    ] {
        let p = dir.join(tool);
        std::fs::write(
            &p,
            "#!/bin/sh\necho \"$0: no network in this test\" >&2\nexit 1\n",
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let rest = std::env::var("PATH").unwrap_or_default();
    format!("{}:{rest}", dir.display())
}

#[test]
fn default_ablate_runs_offline_on_the_bundled_resnet() {
    let d = tempfile::tempdir().unwrap();
    let home = d.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let stubs = d.path().join("bin");
    std::fs::create_dir(&stubs).unwrap();
    let out = Command::cargo_bin("ptq4")
        .unwrap()
        .args(["ablate", "--json"])
        .env("PTQ4_HOME", &home)
        .env("PATH", unreachable_registry_path(&stubs))
        .env("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
        .env("PIP_NO_INDEX", "1")
        .env("http_proxy", "http://127.0.0.1:9")
        .env("https_proxy", "http://127.0.0.1:9")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let a: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(a["model"], "fmnist-resnet");
    assert_eq!(
        (a["wbits"].as_u64(), a["abits"].as_u64()),
        (Some(4), Some(4))
    );
    assert_eq!(a["n_eval"].as_u64(), Some(10_000));
    assert_eq!(a["calibration"], "64 images");
    let rows = a["rows"].as_array().unwrap();
    let zoo: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("models/fmnist/zoo.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let fp32 = zoo["nets"]["resnet"]["fp32_top1"].as_f64().unwrap();
    for protocol in ["paper", "deploy"] {
        let of: Vec<&serde_json::Value> =
            rows.iter().filter(|r| r["protocol"] == protocol).collect();
        let methods: Vec<&str> = of.iter().map(|r| r["method"].as_str().unwrap()).collect();
        for want in [
            "fp32",
            "baseline (min-max)",
            "aciq",
            "bit allocation",
            "bias correction",
            "aciq + alloc + bc",
            "aciq + alloc + bc, data-free",
            "equalize",
            "equalize + best",
            "equalize, data-free",
            "equalize + best, data-free",
        ] {
            assert!(methods.contains(&want), "{protocol}: no {want:?} row");
        }
        for r in &of {
            let top1 = r["top1"].as_f64().unwrap();
            if r["method"] == "fp32" {
                assert_eq!(top1, fp32, "{protocol} fp32 row");
            } else {
                // Every quantized row measured a 4-bit model: it changes some of the 10,000
                // predictions, and is not reduced to chance (10 classes) on this easy task.
                let agree = r["agreement_top1"].as_f64().unwrap();
                assert!(
                    agree < 1.0 && top1 > 0.2,
                    "{protocol} {}: {top1}",
                    r["method"]
                );
            }
        }
    }
    // Nothing was fetched.
    assert_eq!(std::fs::read_dir(&home).unwrap().count(), 0);
}
