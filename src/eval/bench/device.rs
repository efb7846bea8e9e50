//! The limits a layer's figures are compared against (`ptq4 bench device`).
//!
//! - CPU: memory-copy bandwidth, a [`CPU_COPY_BYTES`] buffer copied by rayon's threads in
//!   chunks (read + write counted).
//! - GPU: the `roofline_copy` kernel's bandwidth over a buffer of up to [`GPU_COPY_BYTES`]
//!   (read + write), and the `roofline_dot4` kernel's `dot4I8Packed` peak in GOP/s (8 ops
//!   per dot4). The dot4 kernel's output is checked against its CPU twin on a few
//!   invocations first, so a figure comes from a kernel that computed what it counts.

use rayon::prelude::*;
use serde::Serialize;

use super::{adapter_label, software_adapter, time_cpu, time_gpu, Spread, Target};
use crate::engine::device::{buffers, GpuContext};
use crate::engine::gpu::{roofline_copy, roofline_dot4};
use crate::error::{Error, Result};

/// Bytes the CPU copy moves per run (source size).
pub const CPU_COPY_BYTES: usize = 64 << 20;
/// Largest GPU copy buffer (bounded by the adapter's binding limit).
pub const GPU_COPY_BYTES: u64 = 64 << 20;
/// Invocations and steps of one dot4 dispatch.
const DOT4_INVOCATIONS: usize = 64 * 4096;
const DOT4_ITERS: u32 = 64;

/// Measured limits of one backend.
#[derive(Clone, Debug, Serialize)]
pub struct DeviceFigures {
    pub backend: Target,
    /// "cpu (<isa>, <threads> threads)" or "<adapter> (<api>)".
    pub name: String,
    /// A software rasterizer: its figures make no GPU performance claim.
    pub software: bool,
    /// Bytes read plus written by one copy.
    pub copy_bytes: u64,
    pub copy_time: Spread,
    pub copy_gbps: f64,
    /// GPU: integer ops of one dot4 dispatch, its time and the rate.
    pub dot4_ops: Option<u64>,
    pub dot4_time: Option<Spread>,
    pub dot4_gops: Option<f64>,
}

/// "cpu (<integer-kernel isa>, <threads> threads)".
pub fn cpu_name() -> String {
    format!(
        "cpu ({:?}, {} threads)",
        crate::engine::cpu::int::Isa::detect(),
        rayon::current_num_threads()
    )
}

/// The CPU's copy bandwidth.
pub fn cpu(reps: usize) -> Result<DeviceFigures> {
    let src: Vec<u8> = (0..CPU_COPY_BYTES).map(|i| i as u8).collect();
    let mut dst = vec![0u8; CPU_COPY_BYTES];
    let chunk = CPU_COPY_BYTES.div_ceil(rayon::current_num_threads().max(1) * 4);
    let t = time_cpu(reps, || {
        dst.par_chunks_mut(chunk)
            .zip(src.par_chunks(chunk))
            .for_each(|(d, s)| d.copy_from_slice(s));
        std::hint::black_box(&dst);
        Ok(())
    })?;
    let bytes = 2 * CPU_COPY_BYTES as u64;
    Ok(DeviceFigures {
        backend: Target::Cpu,
        name: cpu_name(),
        software: false,
        copy_bytes: bytes,
        copy_time: t,
        copy_gbps: bytes as f64 / t.median_s / 1e9,
        dot4_ops: None,
        dot4_time: None,
        dot4_gops: None,
    })
}

/// The GPU's copy bandwidth and dot4 peak.
pub fn gpu(ctx: &GpuContext, reps: usize) -> Result<DeviceFigures> {
    let limit = ctx
        .max_binding_bytes()
        .min(ctx.limits().max_buffer_size)
        .min(GPU_COPY_BYTES);
    let words = (limit / 16) as usize;
    let src = buffers::filled(ctx, "copy src", 4 * words, 0x5a5a_5a5au32);
    let dst = buffers::zeroed(ctx, "copy dst", 16 * words as u64);
    let (copy_time, _) = time_gpu(ctx, reps, |enc| {
        roofline_copy::roofline_copy_encode(ctx, enc, &src, &dst, words)
    })?;
    let copy_bytes = 32 * words as u64;

    let seed = [0x0102_03f4u32, 0x1357_9bdf];
    let seed_b = buffers::upload(ctx, "dot4 seed", &seed);
    let res = buffers::zeroed(ctx, "dot4 res", 4 * DOT4_INVOCATIONS as u64);
    // Check a few invocations against the CPU twin (a short run), then time the long one.
    let mut enc = ctx.encoder("dot4 check");
    roofline_dot4::roofline_dot4_encode(ctx, &mut enc, &seed_b, &res, 256, 5)?;
    ctx.submit(enc)?;
    let got: Vec<u32> = buffers::read(ctx, &res, 256)?;
    if let Some(i) = (0..256u32).find(|&i| got[i as usize] != roofline_dot4::reference(seed, i, 5))
    {
        return Err(Error::Gpu(format!(
            "roofline_dot4 on {}: invocation {i} differs from its CPU twin",
            ctx.adapter_name()
        )));
    }
    let (dot4_time, _) = time_gpu(ctx, reps, |enc| {
        roofline_dot4::roofline_dot4_encode(ctx, enc, &seed_b, &res, DOT4_INVOCATIONS, DOT4_ITERS)
    })?;
    let ops = roofline_dot4::ops(DOT4_INVOCATIONS, DOT4_ITERS);
    Ok(DeviceFigures {
        backend: Target::Gpu,
        name: adapter_label(ctx),
        software: software_adapter(ctx),
        copy_bytes,
        copy_time,
        copy_gbps: copy_bytes as f64 / copy_time.median_s / 1e9,
        dot4_ops: Some(ops),
        dot4_time: Some(dot4_time),
        dot4_gops: Some(ops as f64 / dot4_time.median_s / 1e9),
    })
}
