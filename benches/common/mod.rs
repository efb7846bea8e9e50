//! Shared bench helpers.

use std::time::Instant;

use criterion::Criterion;
use ptq4::engine::device::GpuContext;

/// Times `iters` submissions of what `record` encodes, from an idle device to an idle device.
pub fn gpu_time(
    c: &mut Criterion,
    ctx: &GpuContext,
    name: &str,
    record: impl Fn(&mut wgpu::CommandEncoder) -> ptq4::Result<()>,
) {
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            ctx.wait_idle().expect("device idle before timing");
            let start = Instant::now();
            for _ in 0..iters {
                let mut enc = ctx.encoder(name);
                record(&mut enc).expect("record dispatch");
                ctx.submit(enc).expect("submit");
            }
            ctx.wait_idle().expect("device idle after timing");
            start.elapsed()
        })
    });
}
