//! `ptq4 bench`: conv rows are consistent (positive times, GOP/s = 2·MACs / median time,
//! ratios to f32), bad `--shape` strings are usage errors, the whole-model bench runs the
//! three modes, and the GPU variants (lavapipe in CI) give a checked dot4 peak and rows as
//! fractions of it. GPU tests skip loudly without an adapter unless `REQUIRE_GPU=1`.

mod common;

use assert_cmd::Command;
use serde_json::Value;

fn ptq4() -> Command {
    Command::cargo_bin("ptq4").unwrap()
}

/// Runs `args` and parses stdout as one JSON object.
fn json(args: &[&str]) -> Value {
    let out = ptq4().args(args).assert().success().get_output().clone();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not one JSON object ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn f(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

/// Every row: positive spread in order, GOP/s and GB/s from MACs, bytes and the median.
fn check_rows(rows: &[Value]) {
    for r in rows {
        let t = &r["time"];
        let (min, q1, med, q3, max) = (
            f(t, "min_s"),
            f(t, "q1_s"),
            f(t, "median_s"),
            f(t, "q3_s"),
            f(t, "max_s"),
        );
        assert!(
            min > 0.0 && min <= q1 && q1 <= med && med <= q3 && q3 <= max,
            "{r}"
        );
        let gops = 2.0 * f(r, "macs") / med / 1e9;
        assert!((f(r, "gops") - gops).abs() <= 1e-9 * gops, "{r}");
        let gbps = f(r, "bytes") / med / 1e9;
        assert!((f(r, "gbps") - gbps).abs() <= 1e-9 * gbps, "{r}");
    }
}

/// Each (layer, backend) has a 32-bit row with ratio 1 and others with
/// f32 median / their median.
fn check_ratios(rows: &[Value]) {
    for r in rows {
        let f32_row = rows
            .iter()
            .find(|o| o["layer"] == r["layer"] && o["backend"] == r["backend"] && o["bits"] == 32)
            .expect("an f32 row per layer and backend");
        let want = f(&f32_row["time"], "median_s") / f(&r["time"], "median_s");
        assert!((f(r, "vs_f32") - want).abs() <= 1e-9 * want, "{r}");
    }
}

#[test]
fn conv_shapes_on_the_cpu_give_consistent_json() {
    let v = json(&[
        "bench",
        "conv",
        "--shape",
        "2,16,12,12,32,3,3",
        "--shape",
        "1,24,10,10,24,3,3,2,24",
        "--bits",
        "4,8,32",
        "--backend",
        "cpu",
        "--reps",
        "2",
        "--json",
    ]);
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 6, "{v}");
    check_rows(rows);
    check_ratios(rows);
    let first = &rows[0];
    assert_eq!(first["layer"], "2,16,12,12,32,3,3");
    assert_eq!(first["input"], serde_json::json!([2, 16, 12, 12]));
    assert_eq!(first["weight"], serde_json::json!([32, 16, 3, 3]));
    // 2 images · 12·12 outputs · 32 channels · 16·3·3 taps.
    assert_eq!(first["macs"].as_u64(), Some(2 * 144 * 32 * 144));
    let dw = &rows[3];
    assert_eq!(
        (dw["stride"].as_u64(), dw["groups"].as_u64()),
        (Some(2), Some(24))
    );
    // 5×5 outputs of 24 channels, 3·3 taps each.
    assert_eq!(dw["macs"].as_u64(), Some(25 * 24 * 9));
    let bits: Vec<u64> = rows.iter().map(|r| r["bits"].as_u64().unwrap()).collect();
    assert_eq!(bits, [4, 8, 32, 4, 8, 32]);
    // The CPU's copy bandwidth is measured and each row is a fraction of it.
    let dev = &v["devices"][0];
    assert_eq!(dev["backend"], "cpu");
    assert!(f(dev, "copy_gbps") > 0.0);
    for r in rows {
        let frac = f(r, "gbps") / f(dev, "copy_gbps");
        assert!(
            (f(r, "copy_bw_fraction") - frac).abs() <= 1e-9 * frac,
            "{r}"
        );
        assert!(r["dot4_peak_fraction"].is_null(), "{r}");
    }
}

#[test]
fn batch_overrides_the_shape_and_bits_select_rows() {
    let v = json(&[
        "bench",
        "conv",
        "--shape",
        "1,8,6,6,8,1,1",
        "--batch",
        "3",
        "--bits",
        "4",
        "--backend",
        "cpu",
        "--reps",
        "1",
        "--json",
    ]);
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["input"][0], 3);
    assert!(rows[0]["vs_f32"].is_null(), "no f32 row, no ratio");
}

#[test]
fn bad_shapes_and_bits_are_usage_errors() {
    for shape in [
        "1,2,3",
        "1,8,8,8,8,3,x",
        "1,8,8,8,8,3,3,1,3",
        "1,8,8,8,8,0,3",
        "1,8,8,8,8,3,3,1,2,7",
        "",
    ] {
        let out = ptq4()
            .args(["bench", "conv", "--backend", "cpu", "--shape", shape])
            .assert()
            .code(2)
            .get_output()
            .clone();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--shape"), "{shape:?}: {err}");
        assert!(!err.contains("panicked"), "{shape:?}: {err}");
    }
    ptq4()
        .args(["bench", "conv", "--shape", "1,8,8,8,8,3,3", "--bits", "16"])
        .assert()
        .code(2);
    // Neither --model nor --shape.
    ptq4().args(["bench", "conv"]).assert().code(2);
}

#[test]
fn model_layers_and_whole_model_on_the_cpu() {
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/models/fmnist/resnet.onnx");
    let v = json(&[
        "bench",
        "conv",
        "--model",
        model,
        "--bits",
        "4,32",
        "--backend",
        "cpu",
        "--reps",
        "1",
        "--json",
    ]);
    let rows = v["rows"].as_array().unwrap();
    check_rows(rows);
    check_ratios(rows);
    // Every conv and linear layer of the net, the classifier a linear layer, batch 1.
    assert!(rows.len() >= 2 * 8, "{}", rows.len());
    assert!(rows.iter().any(|r| r["linear"] == true));
    assert!(rows.iter().all(|r| r["input"][0] == 1));

    let v = json(&[
        "bench",
        "model",
        "--model",
        model,
        "--backend",
        "cpu",
        "--batch",
        "2",
        "--reps",
        "2",
        "--json",
    ]);
    assert_eq!(v["statistics"], "data-free", "the ResNet has BatchNorm");
    let rows = v["rows"].as_array().unwrap();
    let modes: Vec<&str> = rows.iter().map(|r| r["mode"].as_str().unwrap()).collect();
    assert_eq!(modes, ["fp32", "paper", "deploy"]);
    for r in rows {
        let med = f(&r["time"], "median_s");
        assert!(med > 0.0);
        assert!((f(r, "images_per_s") - 2.0 / med).abs() <= 1e-9 * f(r, "images_per_s"));
    }
    assert!(
        rows[2]["runs_on"].as_str().unwrap().contains("integer"),
        "{v}"
    );
}

#[test]
fn whole_model_without_batchnorm_calibrates_on_synthetic_images() {
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/models/fmnist/vgg.onnx");
    let v = json(&[
        "bench",
        "model",
        "--model",
        model,
        "--backend",
        "cpu",
        "--reps",
        "1",
        "--json",
    ]);
    assert_eq!(v["statistics"], "8 synthetic images");
    assert_eq!(v["rows"].as_array().unwrap().len(), 3);
}

#[test]
fn gpu_conv_rows_are_fractions_of_the_measured_peak() {
    if common::gpu().is_none() {
        return;
    }
    let v = json(&[
        "bench",
        "conv",
        "--shape",
        "1,16,8,8,16,1,1",
        "--shape",
        "1,16,8,8,16,3,3,1,16",
        "--backend",
        "gpu",
        "--reps",
        "2",
        "--json",
    ]);
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 6);
    check_rows(rows);
    check_ratios(rows);
    let dev = &v["devices"][0];
    assert_eq!(dev["backend"], "gpu");
    let peak = f(dev, "dot4_gops");
    assert!(peak > 0.0 && f(dev, "copy_gbps") > 0.0, "{dev}");
    for r in rows {
        assert_eq!(r["backend"], "gpu");
        assert!(r["per_submit"].as_u64().unwrap() >= 1);
        if r["bits"] == 32 {
            assert!(r["dot4_peak_fraction"].is_null());
        } else {
            let frac = f(r, "gops") / peak;
            assert!(
                (f(r, "dot4_peak_fraction") - frac).abs() <= 1e-9 * frac,
                "{r}"
            );
        }
    }
}

#[test]
fn device_bench_reports_both_backends_and_warns_on_software() {
    let Some(ctx) = common::gpu() else { return };
    let out = ptq4()
        .args([
            "bench",
            "device",
            "--backend",
            "both",
            "--reps",
            "2",
            "--json",
        ])
        .assert()
        .success()
        .get_output()
        .clone();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let devs = v["devices"].as_array().unwrap();
    assert_eq!(devs.len(), 2);
    let gpu = devs.iter().find(|d| d["backend"] == "gpu").unwrap();
    let ops = f(gpu, "dot4_ops");
    let want = ops / f(&gpu["dot4_time"], "median_s") / 1e9;
    assert!((f(gpu, "dot4_gops") - want).abs() <= 1e-9 * want);
    let software = ptq4::eval::bench::software_adapter(ctx);
    assert_eq!(gpu["software"], software);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.contains("no GPU performance claim"), software, "{err}");
}

#[test]
fn dot4_probe_matches_its_cpu_twin() {
    use ptq4::engine::device::buffers;
    use ptq4::engine::gpu::roofline_dot4;
    let Some(ctx) = common::gpu() else { return };
    let seed = [0xdead_beefu32, 0x0123_4567];
    let seed_b = buffers::upload(ctx, "seed", &seed);
    let res = buffers::zeroed(ctx, "res", 4 * 100);
    let mut enc = ctx.encoder("dot4");
    roofline_dot4::roofline_dot4_encode(ctx, &mut enc, &seed_b, &res, 100, 17).unwrap();
    ctx.submit(enc).unwrap();
    let got: Vec<u32> = buffers::read(ctx, &res, 100).unwrap();
    let want: Vec<u32> = (0..100)
        .map(|i| roofline_dot4::reference(seed, i, 17))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn without_an_adapter_gpu_fails_clearly_and_auto_runs_on_the_cpu() {
    // The Vulkan loader sees no driver; WGPU_BACKEND keeps wgpu on Vulkan.
    let hidden = [
        ("VK_DRIVER_FILES", "/nonexistent"),
        ("WGPU_BACKEND", "vulkan"),
    ];
    let out = ptq4()
        .envs(hidden)
        .args(["bench", "device", "--backend", "gpu"])
        .assert()
        .code(1)
        .get_output()
        .clone();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--backend gpu") && err.contains("--backend cpu"),
        "{err}"
    );
    let out = ptq4()
        .envs(hidden)
        .args([
            "bench",
            "conv",
            "--shape",
            "1,8,4,4,8,1,1",
            "--reps",
            "1",
            "--json",
        ])
        .assert()
        .success()
        .get_output()
        .clone();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["backend"] == "cpu"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CPU only"));
}
