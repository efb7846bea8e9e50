//! Whole-model and per-step timing of the CPU integer path of EfficientNet-Lite0 deploy W4A4
//! (data-free plan) against the f32 engine on the FP32 model, interleaved in one process.
//! Usage: `int_profile MODEL.safetensors BATCH REPS [--steps]`; `--steps` prints the time per
//! step kind (and the 12 slowest steps) of the integer forward at this batch size.

use std::collections::BTreeMap;
use std::time::Instant;

use ptq4::engine::cpu::int::Isa;
use ptq4::engine::exec::int_model::{IntModel, StepKind};
use ptq4::graph::passes;
use ptq4::quant::config::{quant_points, Protocol, QuantConfig};
use ptq4::quant::plan::make_plan;
use ptq4::Tensor;

fn main() -> ptq4::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: int_profile MODEL.safetensors BATCH REPS [--steps]");
        std::process::exit(2);
    }
    let raw = ptq4::io::model::load_graph(std::path::Path::new(&args[1]))?;
    let mut g = raw.clone();
    passes::prepare(&mut g)?;
    let cfg = QuantConfig {
        protocol: Protocol::Deploy,
        ..QuantConfig::default()
    };
    let pts = quant_points(&g, &cfg);
    let cal = ptq4::calib::data_free(&raw, &g, &pts)?;
    let plan = make_plan(&g, &cfg, &pts, &cal.stats, &cal.means, &cal.source)?;
    let m = IntModel::new(&g, &plan)?;
    let batch: usize = args[2].parse().unwrap_or(16);
    let reps: usize = args[3].parse().unwrap_or(5);
    let shape = [batch, 3, 224, 224];
    let x = Tensor {
        shape: shape.to_vec(),
        data: (0..shape.iter().product::<usize>())
            .map(|i| ((i % 255) as f32 - 127.0) / 128.0)
            .collect(),
    };
    let isa = Isa::detect();
    let (mut ti, mut tf) = (f64::MAX, f64::MAX);
    let mut steps = vec![f64::MAX; m.steps.len()];
    for _ in 0..reps {
        let t = Instant::now();
        let (y, st) = m.forward_int_profiled(&x, isa)?;
        ti = ti.min(t.elapsed().as_secs_f64());
        steps.iter_mut().zip(st).for_each(|(a, b)| *a = a.min(b));
        std::hint::black_box(y);
        let t = Instant::now();
        std::hint::black_box(ptq4::engine::forward(&g, x.clone())?);
        tf = tf.min(t.elapsed().as_secs_f64());
    }
    let b = batch as f64;
    println!(
        "batch {batch} ({isa:?}): int {:.1} img/s, f32 {:.1} img/s, int/f32 speed {:.2}",
        b / ti,
        b / tf,
        tf / ti
    );
    if args.iter().any(|a| a == "--steps") {
        let mut kinds: BTreeMap<String, f64> = BTreeMap::new();
        let mut rows = Vec::new();
        for (s, &t) in m.steps.iter().zip(&steps) {
            let kind = match &s.kind {
                StepKind::Layer(l) => match &l.conv {
                    None => "linear".to_string(),
                    Some(c) if c.is_depthwise() => format!("dw{}x{}", c.kernel[0], c.kernel[1]),
                    Some(c) => format!("conv{}x{}", c.kernel[0], c.kernel[1]),
                },
                k => format!("{k:?}").chars().take(12).collect(),
            };
            *kinds.entry(kind.clone()).or_default() += t;
            rows.push((t, s.name.clone(), kind));
        }
        let total: f64 = steps.iter().sum();
        for (k, t) in &kinds {
            println!(
                "{k:>12}: {:7.2} ms/img ({:4.1} %)",
                t * 1e3 / b,
                100.0 * t / total
            );
        }
        rows.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (t, name, kind) in rows.iter().take(12) {
            println!("{:7.3} ms/img  {name} {kind}", t * 1e3 / b);
        }
    }
    Ok(())
}
