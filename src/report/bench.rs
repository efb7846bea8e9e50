//! `ptq4 bench` as text: one table per command, times in milliseconds as median
//! [min–max], and a line saying when a GPU is a software rasterizer.

use std::fmt::Write as _;

use crate::eval::bench::conv::ConvRow;
use crate::eval::bench::device::DeviceFigures;
use crate::eval::bench::model::ModelBench;
use crate::eval::bench::{Spread, Target};

fn ms(t: &Spread) -> String {
    format!(
        "{:.3} [{:.3}–{:.3}]",
        t.median_s * 1e3,
        t.min_s * 1e3,
        t.max_s * 1e3
    )
}

fn target(t: Target) -> &'static str {
    match t {
        Target::Cpu => "cpu",
        Target::Gpu => "gpu",
    }
}

fn opt(v: Option<f64>, scale: f64, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{:.*}", digits, v * scale))
}

/// The devices' lines (name, copy bandwidth, dot4 peak).
pub fn device_text(devices: &[DeviceFigures]) -> String {
    let mut out = String::new();
    for d in devices {
        let _ = write!(
            out,
            "{}: {}: copy {:.1} GB/s ({} ms, {} reps)",
            target(d.backend),
            d.name,
            d.copy_gbps,
            ms(&d.copy_time),
            d.copy_time.reps
        );
        if let (Some(g), Some(t)) = (d.dot4_gops, &d.dot4_time) {
            let _ = write!(out, "; dot4I8Packed {g:.1} GOP/s ({} ms)", ms(t));
        }
        out.push('\n');
        if d.software {
            out.push_str("  software rasterizer: no GPU performance claim\n");
        }
    }
    out
}

/// The per-layer table, after the devices' lines.
pub fn conv_text(devices: &[DeviceFigures], rows: &[ConvRow]) -> String {
    let mut out = device_text(devices);
    let _ = writeln!(
        out,
        "{:<36} {:<3} {:>4} {:>28} {:>8} {:>7} {:>7} {:>6} {:>6}",
        "layer", "on", "bits", "ms: median [min–max]", "GOP/s", "GB/s", "vs f32", "%dot4", "%copy"
    );
    for r in rows {
        let chars: Vec<char> = r.layer.chars().collect();
        let name: String = match chars.len() {
            0..=36 => r.layer.clone(),
            n => std::iter::once('…')
                .chain(chars[n - 35..].iter().copied())
                .collect(),
        };
        let _ = writeln!(
            out,
            "{:<36} {:<3} {:>4} {:>28} {:>8.2} {:>7.2} {:>7} {:>6} {:>6}",
            name,
            target(r.backend),
            r.bits,
            ms(&r.time),
            r.gops,
            r.gbps,
            opt(r.vs_f32, 1.0, 2),
            opt(r.dot4_peak_fraction, 100.0, 1),
            opt(r.copy_bw_fraction, 100.0, 1),
        );
    }
    out
}

const MIB: f64 = (1u64 << 20) as f64;

/// The whole-model table; device memory in MiB ("held": between batches, "peak": while
/// running; "-" on the CPU).
pub fn model_text(r: &ModelBench) -> String {
    let mut out = format!("{} (W4A4 statistics: {})\n", r.model, r.statistics);
    let _ = writeln!(
        out,
        "{:<4} {:<7} {:>5} {:>28} {:>10} {:>8} {:>9} {:>9}  runs on",
        "on",
        "mode",
        "batch",
        "ms: median [min–max]",
        "images/s",
        "vs fp32",
        "held MiB",
        "peak MiB"
    );
    let mib = |b: Option<u64>| b.map_or("-".to_string(), |b| format!("{:.1}", b as f64 / MIB));
    for row in &r.rows {
        let _ = writeln!(
            out,
            "{:<4} {:<7} {:>5} {:>28} {:>10.1} {:>8.2} {:>9} {:>9}  {}",
            target(row.backend),
            row.mode,
            row.batch,
            ms(&row.time),
            row.images_per_s,
            row.vs_fp32,
            mib(row.resident_device_bytes),
            mib(row.peak_device_bytes),
            row.runs_on
        );
    }
    out
}
