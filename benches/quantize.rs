//! Quantization time on EfficientNet-Lite0, excluding model loading: data-free, and with 32
//! calibration inputs (the photos set expanded by 12 views, 32 spread over it). Targets on
//! a 2-core machine: data-free under 1 s, 32 images under 10 s. `PTQ4_BENCH_QUICK=1` takes
//! few samples.
//!
//! First, one timed run per configuration (too long for criterion's ten samples): the cost
//! of the second-order pass (`--preset best`, deploy W4A8) at 64 and 256 calibration crops
//! (the `photos` and `imagenet-samples` images in one folder, 12 views: 408 crops to spread over),
//! split into statistics (the calibration forward, with and without the layers' input
//! Hessians) and planning (with and without GPTQ), with the peak RSS of each run (Linux:
//! the high-water mark is reset through `/proc/self/clear_refs` before each). Target: the
//! second-order pass (Hessians + GPTQ) under 10 s at 256 crops, memory flat in the crops.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use ptq4::engine::Backend;
use ptq4::io::dataset::Dataset;
use ptq4::model::Fp32Model;
use ptq4::pipeline::{quantize, quantize_with, statistics, StatsSource};
use ptq4::quant::config::{BiasMode, Protocol, QuantConfig, Rounding};

fn fetched(name: &str) -> Option<std::path::PathBuf> {
    ptq4::io::fetch::fetch_one(name, false)
        .map_err(|e| eprintln!("SKIP quantize bench: {e}"))
        .ok()
}

/// Resets the peak resident set size (Linux ≥ 4.0); false where it cannot.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The peak resident set size since the last reset, in MiB.
fn peak_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// One run of statistics + planning; (statistics s, planning s, peak RSS MiB).
fn one_run(m: &Fp32Model, cfg: &QuantConfig, src: StatsSource) -> Option<(f64, f64, f64)> {
    let reset = reset_peak();
    let t = Instant::now();
    let cal = statistics(m, cfg, src, &Backend::Cpu, false).ok()?;
    let stats = t.elapsed().as_secs_f64();
    let t = Instant::now();
    quantize_with(m, cfg, &cal, &Backend::Cpu).ok()?;
    let plan = t.elapsed().as_secs_f64();
    let peak = if reset { peak_mib()? } else { f64::NAN };
    Some((stats, plan, peak))
}

/// The second-order pass's cost: `--preset best` against the same preset without GPTQ
/// (nearest rounding) and without the layers' inputs at all (weight-moment bias correction).
fn second_order_cost(m: &Fp32Model, data: &Dataset) {
    assert!(data.len_views(12) >= 256, "fewer than 256 crops");
    let best = QuantConfig::best(4, 8, Protocol::Deploy, false);
    let nearest = QuantConfig {
        rounding: Rounding::Nearest,
        ..best.clone()
    };
    let no_inputs = QuantConfig {
        bias_mode: BiasMode::Weights,
        ..nearest.clone()
    };
    println!("second-order pass, EfficientNet-Lite0, deploy W4A8, CPU (one run each):");
    for n in [64, 256] {
        let src = StatsSource::Images {
            data,
            n,
            views: 12,
            batch: 16,
        };
        let runs: Vec<_> = [&no_inputs, &nearest, &best]
            .iter()
            .map(|cfg| one_run(m, cfg, src))
            .collect();
        let [Some(a), Some(b), Some(c)] = runs[..] else {
            eprintln!("SKIP second-order cost at {n} crops: a run failed");
            continue;
        };
        for (what, r) in [
            ("aciq + alloc, bc weights", a),
            ("+ bc input (Hessians)", b),
            ("+ gptq (--preset best)", c),
        ] {
            println!(
                "  {n:>4} crops  {what:<26} statistics {:>6.2} s  plan {:>6.2} s  peak RSS {:>6.0} MiB",
                r.0, r.1, r.2
            );
        }
        println!(
            "  {n:>4} crops  second-order pass: Hessians {:.2} s + GPTQ {:.2} s = {:.2} s",
            c.0 - a.0,
            c.1 - b.1,
            (c.0 - a.0) + (c.1 - a.1)
        );
    }
}

/// `photos` and `imagenet-samples` copied into one folder (under target/), 34 images.
fn both_sets(photos: &std::path::Path) -> Option<Dataset> {
    let samples = fetched("imagenet-samples")?;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-calib-34");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).ok()?;
    for src in [photos, samples.as_path()] {
        for e in std::fs::read_dir(src).ok()?.flatten() {
            std::fs::copy(e.path(), dir.join(e.file_name())).ok()?;
        }
    }
    Dataset::open(&dir).ok()
}

fn bench(c: &mut Criterion) {
    let (Some(model), Some(photos)) = (fetched("efficientnet-lite0"), fetched("photos")) else {
        return;
    };
    let Ok(raw) = ptq4::io::model::load_graph(&model) else {
        return;
    };
    let Ok(m) = Fp32Model::new(raw) else { return };
    let Ok(data) = Dataset::open(&photos) else {
        return;
    };
    let quick = std::env::var("PTQ4_BENCH_QUICK").is_ok();
    if !quick {
        match both_sets(&photos) {
            Some(both) => second_order_cost(&m, &both),
            None => eprintln!("SKIP second-order cost: imagenet-samples not fetched"),
        }
    }
    let mut g = c.benchmark_group("cpu/quantize/efficientnet-lite0");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(if quick { 5 } else { 30 }));
    let cfg = QuantConfig::default();
    g.bench_function("data-free", |b| {
        b.iter(|| quantize(&m, &cfg, StatsSource::DataFree, &Backend::Cpu, false).map(|q| q.1))
    });
    let src = StatsSource::Images {
        data: &data,
        n: 32,
        views: 12,
        batch: 16,
    };
    g.bench_function("calib-32", |b| {
        b.iter(|| quantize(&m, &cfg, src, &Backend::Cpu, false).map(|q| q.1))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
