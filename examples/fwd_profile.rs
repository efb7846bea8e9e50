//! Timing harness for the CPU forward pass of a prepared model file: min-of-N whole-forward
//! and CPU time at a batch size, the time between successive hook callbacks
//! of the whole-batch `run` (`--layers`), and whether `forward` on the batch equals `forward`
//! image by image bit for bit (`--check`). CPU time is the sum over the process's threads,
//! which stays meaningful on a loaded machine (`RAYON_NUM_THREADS=1 MATMUL_NUM_THREADS=1`
//! gives the single-core cost). Usage: `fwd_profile MODEL.safetensors BATCH REPS [--layers]
//! [--check]`.

use std::time::Instant;

use ptq4::engine::{self, Hook};
use ptq4::graph::{passes, Node};
use ptq4::Tensor;

/// Per layer: node name, op kind, output shape, seconds.
type LayerTimes = Vec<(String, String, Vec<usize>, f64)>;

struct Timer {
    last: Instant,
    rows: Vec<(String, String, Vec<usize>, f64)>,
}

impl Hook for Timer {
    fn output(&mut self, node: &Node, x: &mut Tensor) -> ptq4::Result<()> {
        let now = Instant::now();
        let kind = format!("{:?}", node.op)
            .chars()
            .take(40)
            .collect::<String>();
        self.rows.push((
            node.name.clone(),
            kind,
            x.shape.clone(),
            (now - self.last).as_secs_f64(),
        ));
        self.last = Instant::now();
        Ok(())
    }
}

/// CPU time of all threads of this process so far, in seconds (schedstat run time).
fn cpu_secs() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    dir.flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .sum::<f64>()
        * 1e-9
}

fn main() -> ptq4::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: fwd_profile MODEL.safetensors BATCH REPS [--layers] [--check]");
        std::process::exit(2);
    }
    let mut g = ptq4::io::model::load_graph(std::path::Path::new(&args[1]))?;
    passes::prepare(&mut g)?;
    let batch: usize = args[2].parse().unwrap_or(16);
    let reps: usize = args[3].parse().unwrap_or(5);
    let shape = [batch, 3, 224, 224];
    let x = Tensor {
        shape: shape.to_vec(),
        data: (0..shape.iter().product::<usize>())
            .map(|i| ((i % 255) as f32 - 127.0) / 128.0)
            .collect(),
    };
    let mut times = Vec::new();
    let mut cpus = Vec::new();
    for _ in 0..reps {
        let xc = x.clone();
        let c0 = cpu_secs();
        let t = Instant::now();
        let y = engine::forward(&g, xc)?;
        times.push(t.elapsed().as_secs_f64());
        cpus.push(cpu_secs() - c0);
        std::hint::black_box(y);
    }
    times.sort_by(f64::total_cmp);
    cpus.sort_by(f64::total_cmp);
    print!("cpu min {:.1} ms/img | ", cpus[0] * 1e3 / batch as f64);
    println!(
        "batch {batch}: min {:.1} ms ({:.1} img/s), median {:.1} ms ({:.1} img/s)",
        times[0] * 1e3,
        batch as f64 / times[0],
        times[reps / 2] * 1e3,
        batch as f64 / times[reps / 2]
    );
    if args.iter().any(|a| a == "--check") {
        let whole = engine::forward(&g, x.clone())?;
        let per = whole.data.len() / batch;
        let img = 3 * 224 * 224;
        for i in 0..batch {
            let xi = Tensor {
                shape: vec![1, 3, 224, 224],
                data: x.data[i * img..(i + 1) * img].to_vec(),
            };
            let yi = engine::forward(&g, xi)?;
            let same = yi
                .data
                .iter()
                .zip(&whole.data[i * per..])
                .all(|(a, b)| a.to_bits() == b.to_bits());
            println!("image {i}: bit-identical {same}");
        }
    }
    if args.iter().any(|a| a == "--layers") {
        let mut best: Option<LayerTimes> = None;
        for _ in 0..reps {
            let mut h = Timer {
                last: Instant::now(),
                rows: Vec::new(),
            };
            engine::run(&g, x.clone(), &mut h)?;
            best = Some(match best {
                None => h.rows,
                Some(mut b) => {
                    for (r, n) in b.iter_mut().zip(h.rows) {
                        r.3 = r.3.min(n.3);
                    }
                    b
                }
            });
        }
        let rows = best.unwrap_or_default();
        let total: f64 = rows.iter().map(|r| r.3).sum();
        for (name, kind, shape, t) in &rows {
            println!("{:8.2} ms  {name:40} {shape:?} {kind}", t * 1e3);
        }
        println!("sum of per-node minima: {:.1} ms", total * 1e3);
    }
    Ok(())
}
