//! Whole-model throughput: EfficientNet-Lite0 FP32 forward on the CPU engine at batch 1 and
//! 16, reported by criterion as elements (images) per second. The model is fetched into
//! $PTQ4_HOME on first use. `PTQ4_BENCH_QUICK=1` takes few samples (CI smoke runs).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ptq4::engine;
use ptq4::graph::passes;
use ptq4::Tensor;

fn lite0() -> Option<ptq4::Graph> {
    match ptq4::io::fetch::fetch_one("efficientnet-lite0", false) {
        Ok(m) => {
            let mut g = ptq4::io::model::load_graph(&m).ok()?;
            passes::prepare(&mut g).ok()?;
            Some(g)
        }
        Err(e) => {
            eprintln!("SKIP forward bench: {e}");
            None
        }
    }
}

fn forward(c: &mut Criterion) {
    let Some(g) = lite0() else { return };
    let quick = std::env::var("PTQ4_BENCH_QUICK").is_ok();
    let mut group = c.benchmark_group("cpu/forward/efficientnet-lite0");
    if quick {
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(2))
            .warm_up_time(Duration::from_millis(300));
    } else {
        group
            .sample_size(20)
            .measurement_time(Duration::from_secs(10));
    }
    for batch in [1usize, 16] {
        let shape = [batch, 3, 224, 224];
        let x = Tensor {
            shape: shape.to_vec(),
            data: (0..shape.iter().product::<usize>())
                .map(|i| ((i % 255) as f32 - 127.0) / 128.0)
                .collect(),
        };
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::new("f32", format!("b{batch}")), &x, |b, x| {
            b.iter(|| engine::forward(&g, x.clone()).map(|y| y.data[0]))
        });
    }
    group.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
