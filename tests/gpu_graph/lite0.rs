//! EfficientNet-Lite0 (real weights, real images) on the device against the CPU engine:
//! forward on the 20 labelled images, and calibration on a few photos.

use super::{common, Tol};
use ptq4::calib::device::calibrate_gpu;
use ptq4::calib::{calibrate_batches, load_batches};
use ptq4::engine::exec::GpuGraph;
use ptq4::engine::{self, Backend};
use ptq4::graph::{passes, Graph};
use ptq4::io::dataset::Dataset;
use ptq4::quant::config::{quant_points, QuantConfig};
use ptq4::quant::plan::make_plan;
use ptq4::Tensor;

/// Images per forward on lavapipe (a CPU rasteriser: keep batches small).
const BATCH: usize = 4;

fn lite0() -> Option<Graph> {
    let path = common::fetched("efficientnet-lite0")?;
    let mut g = ptq4::io::model::load_graph(&path).unwrap();
    passes::prepare(&mut g).unwrap();
    Some(g)
}

fn argmax(row: &[f32]) -> usize {
    (0..row.len()).fold(0, |b, i| if row[i] > row[b] { i } else { b })
}

fn slice(x: &Tensor, r: std::ops::Range<usize>) -> Tensor {
    let item = x.numel() / x.shape[0];
    let mut shape = x.shape.clone();
    shape[0] = r.len();
    Tensor::from_vec(&shape, x.data[r.start * item..r.end * item].to_vec()).unwrap()
}

#[test]
fn lite0_gpu_top1_and_logits_match_cpu() {
    let Some(ctx) = common::test_context() else {
        return;
    };
    let (Some(g), Some(data)) = (lite0(), common::fetched("imagenet-samples")) else {
        return;
    };
    let d = Dataset::open(&data).unwrap();
    let (x, _) = d.load_batch(0..20, &g.preprocess, 1).unwrap();
    let gg = GpuGraph::new(&ctx, &g).unwrap();
    let mut worst = 0f32;
    for s in (0..20).step_by(BATCH) {
        let xb = slice(&x, s..s + BATCH);
        let gpu = gg.forward(&xb).unwrap();
        let cpu = engine::forward(&g, xb).unwrap();
        let k = cpu.shape[1];
        for (i, (a, b)) in gpu.data.chunks(k).zip(cpu.data.chunks(k)).enumerate() {
            assert_eq!(argmax(a), argmax(b), "image {}: top-1 differs", s + i);
            let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = a.iter().zip(b).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
            worst = worst.max(d / scale);
        }
    }
    eprintln!(
        "lite0 logits: worst |Δ| / max|logit| = {worst:.2e} on {}",
        ctx.adapter_name()
    );
    // 49 layers of f32 sums (K up to 1280) in another order; measured 1.1e-6 on lavapipe.
    assert!(f64::from(worst) <= Tol::BN_FOLD.rel, "{worst}");
}

#[test]
fn lite0_calibration_gpu_matches_cpu() {
    let Some(ctx) = common::test_context() else {
        return;
    };
    let (Some(g), Some(photos)) = (lite0(), common::fetched("photos")) else {
        return;
    };
    let d = Dataset::open(&photos).unwrap();
    let batches = load_batches(&g, &d, 1, 3, 2).unwrap();
    let cfg = QuantConfig::default();
    let points = quant_points(&g, &cfg);
    let cpu = calibrate_batches(&g, &points, &batches, &Backend::Cpu, false).unwrap();
    let gpu = calibrate_gpu(&ctx, &g, &points, &batches).unwrap();
    assert_eq!(cpu.source, gpu.source);
    assert_eq!(
        cpu.stats.keys().collect::<Vec<_>>(),
        gpu.stats.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        cpu.means.keys().collect::<Vec<_>>(),
        gpu.means.keys().collect::<Vec<_>>()
    );
    for (k, s) in &cpu.stats {
        let t = &gpu.stats[k];
        for (a, b) in s.channels.iter().zip(&t.channels) {
            assert_eq!(a.count, b.count, "{k}");
        }
    }
    let pc = make_plan(&g, &cfg, &points, &cpu.stats, &cpu.means, &cpu.source).unwrap();
    let pg = make_plan(&g, &cfg, &points, &gpu.stats, &gpu.means, &gpu.source).unwrap();
    assert_eq!(pc.acts.len(), pg.acts.len());
    let mut worst = 0f32;
    let mut over = Vec::new();
    for (a, b) in pc.acts.iter().zip(&pg.acts) {
        let bits =
            |q: &ptq4::quant::plan::ActQuant| q.params.iter().map(|p| p.bits).collect::<Vec<_>>();
        assert_eq!(bits(a), bits(b), "{}: per-channel bits", a.value);
        let w = a
            .params
            .iter()
            .zip(&b.params)
            .fold(0f32, |m, (p, q)| m.max((p.scale - q.scale).abs() / p.scale));
        worst = worst.max(w);
        // Calibration's forward runs the precise kernels on both backends.
        if f64::from(w) > Tol::CALIB_SCALE.rel {
            over.push((a.value.clone(), w));
        }
    }
    for (a, b) in pc.layers.iter().zip(&pg.layers) {
        let bits =
            |l: &ptq4::quant::plan::LayerQuant| l.params.iter().map(|p| p.bits).collect::<Vec<_>>();
        assert_eq!(bits(a), bits(b), "{}: weight bits", a.node);
    }
    eprintln!("lite0 calibration: worst activation scale |Δ|/s = {worst:.2e}");
    assert!(
        over.is_empty(),
        "scales over {}: {over:?}",
        Tol::CALIB_SCALE.rel
    );
}
