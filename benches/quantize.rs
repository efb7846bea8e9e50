//! Quantization time on EfficientNet-Lite0, excluding model loading: data-free, and with 32
//! calibration inputs (the photos set expanded by 12 views, 32 spread over it). Targets on
//! a 2-core machine: data-free under 1 s, 32 images under 10 s. `PTQ4_BENCH_QUICK=1` takes
//! few samples.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use ptq4::engine::Backend;
use ptq4::io::dataset::Dataset;
use ptq4::model::Fp32Model;
use ptq4::pipeline::{quantize, StatsSource};
use ptq4::quant::config::QuantConfig;

fn fetched(name: &str) -> Option<std::path::PathBuf> {
    ptq4::io::fetch::fetch_one(name, false)
        .map_err(|e| eprintln!("SKIP quantize bench: {e}"))
        .ok()
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
