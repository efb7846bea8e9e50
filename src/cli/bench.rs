//! `ptq4 bench conv|model|device`: opens the backends `--backend` names, runs
//! `eval::bench`, and writes `report::bench`'s text (or one JSON object with `--json`);
//! progress and the software-rasterizer warning go to stderr. `--model resnet50-random` is
//! ResNet-50 built in code (`zoo::resnet`, seeded random weights).

use std::sync::Arc;

use anyhow::Context;

use super::args::{
    BenchArgs, BenchBackendArg, BenchCommand, BenchConvArgs, BenchDeviceArgs, BenchModelArgs,
};
use super::{emit, resolve};
use crate::engine::device::GpuContext;
use crate::engine::Backend;
use crate::error::{note, Error};
use crate::eval::bench::{self, conv, device, model, Target};
use crate::model::{Fp32Model, LoadedModel};
use crate::report;
use crate::zoo;

pub(super) fn cmd_bench(a: BenchArgs) -> anyhow::Result<()> {
    match a.what {
        BenchCommand::Conv(c) => bench_conv(c),
        BenchCommand::Model(m) => bench_model(m),
        BenchCommand::Device(d) => bench_device(d),
    }
}

/// Whether to run on the CPU, and the GPU context to run on.
fn open(b: BenchBackendArg) -> anyhow::Result<(bool, Option<Arc<GpuContext>>)> {
    let gpu = || -> anyhow::Result<Arc<GpuContext>> {
        // The error already says to rerun with --backend cpu.
        let name = if b == BenchBackendArg::Gpu {
            "gpu"
        } else {
            "both"
        };
        let ctx = GpuContext::new().with_context(|| format!("--backend {name}"))?;
        Ok(Arc::new(ctx))
    };
    let (cpu, ctx) = match b {
        BenchBackendArg::Cpu => (true, None),
        BenchBackendArg::Gpu => (false, Some(gpu()?)),
        BenchBackendArg::Both => (true, Some(gpu()?)),
        BenchBackendArg::Auto => match GpuContext::new() {
            Ok(ctx) if !bench::software_adapter(&ctx) => (true, Some(Arc::new(ctx))),
            Ok(ctx) => {
                note(format_args!(
                    "note: CPU only: the only adapter, {}, is a software rasterizer (--backend gpu or both runs on it anyway)",
                    bench::adapter_label(&ctx)
                ));
                (true, None)
            }
            Err(e) => {
                note(format_args!("note: CPU only: {e}"));
                (true, None)
            }
        },
    };
    if let Some(ctx) = &ctx {
        if bench::software_adapter(ctx) {
            note(format_args!(
                "warning: {} is a software rasterizer (it runs on the CPU): its GPU figures make no GPU performance claim",
                bench::adapter_label(ctx)
            ));
        }
    }
    Ok((cpu, ctx))
}

/// A progress bar of `len` steps; the returned closure marks the start of the next step.
fn ticker(len: usize, show: bool) -> (indicatif::ProgressBar, impl FnMut(&str)) {
    let bar = crate::progress::progress(len as u64, "bench", show);
    let b = bar.clone();
    let mut done = 0u64;
    (bar, move |_what: &str| {
        b.set_position(done);
        done += 1;
    })
}

fn bench_conv(a: BenchConvArgs) -> anyhow::Result<()> {
    let layers = match &a.model {
        Some(name) => bench::model_layers(load(name)?.graph(), a.batch.unwrap_or(1))?,
        None => a
            .shape
            .iter()
            .map(|s| match a.batch {
                Some(n) => s.clone().with_batch(n),
                None => s.clone(),
            })
            .collect(),
    };
    // In the order given, each once.
    let mut bits: Vec<u8> = Vec::new();
    for b in &a.bits {
        if !bits.contains(b) {
            bits.push(*b);
        }
    }
    let (cpu, ctx) = open(a.backend)?;
    let mut devices = Vec::new();
    if let Some(ctx) = &ctx {
        // Quick roofline figures first, so each GPU row is also a fraction of them.
        devices.push(device::gpu(ctx, 3)?);
    }
    if cpu {
        devices.push(device::cpu(3)?);
    }
    let backends = usize::from(cpu) + usize::from(ctx.is_some());
    let (bar, mut tick) = ticker(layers.len() * backends * bits.len(), !a.json);
    let plan = conv::ConvPlan {
        layers: &layers,
        bits: &bits,
        cpu,
        gpu: ctx.as_deref(),
        reps: a.reps,
        devices: &devices,
    };
    let rows = conv::bench_conv(&plan, &mut tick)?;
    bar.finish_and_clear();
    if a.json {
        let v = serde_json::json!({
            "model": a.model,
            "reps": a.reps,
            "devices": devices,
            "rows": rows,
        });
        emit(&format!("{v}\n"))?;
    } else {
        emit(&report::bench::conv_text(&devices, &rows))?;
    }
    Ok(())
}

/// `resnet50-random` (built in code), or a model file or name.
fn load(name: &str) -> anyhow::Result<LoadedModel> {
    if name == zoo::resnet::NAME {
        let g = zoo::resnet::resnet50(zoo::resnet::SEED);
        return Ok(LoadedModel::Fp32(Fp32Model::new(g)?));
    }
    let path = resolve(name)?;
    LoadedModel::load(&path).with_context(|| format!("loading {}", path.display()))
}

fn bench_model(a: BenchModelArgs) -> anyhow::Result<()> {
    let m = match load(&a.model)? {
        LoadedModel::Fp32(m) => m,
        LoadedModel::Quant(_) => {
            return Err(Error::Usage(format!(
                "{}: already quantized; give an FP32 model (bench model quantizes it both ways)",
                a.model
            ))
            .into())
        }
    };
    let (cpu, ctx) = open(a.backend)?;
    let ctx = match (ctx, a.max_binding_mib) {
        (Some(ctx), Some(mib)) => {
            let ctx = Arc::into_inner(ctx).context("the GPU context is shared")?;
            Some(Arc::new(ctx.with_max_binding_bytes(mib << 20)))
        }
        (ctx, _) => ctx,
    };
    let mut backends = Vec::new();
    if cpu {
        backends.push((Target::Cpu, Backend::Cpu));
    }
    if let Some(ctx) = ctx {
        backends.push((Target::Gpu, Backend::Gpu(ctx)));
    }
    let (bar, mut tick) = ticker(1 + 3 * backends.len(), !a.json);
    let r = model::bench_model(&a.model, &m, &backends, a.batch, a.reps, &mut tick)?;
    bar.finish_and_clear();
    if a.json {
        emit(&format!("{}\n", serde_json::to_string(&r)?))?;
    } else {
        emit(&report::bench::model_text(&r))?;
    }
    Ok(())
}

fn bench_device(a: BenchDeviceArgs) -> anyhow::Result<()> {
    let (cpu, ctx) = open(a.backend)?;
    let mut devices = Vec::new();
    if let Some(ctx) = &ctx {
        devices.push(device::gpu(ctx, a.reps)?);
    }
    if cpu {
        devices.push(device::cpu(a.reps)?);
    }
    if a.json {
        emit(&format!("{}\n", serde_json::json!({ "devices": devices })))?;
    } else {
        emit(&report::bench::device_text(&devices))?;
    }
    Ok(())
}
