//! The command bodies: each `cmd_*` turns validated arguments into library calls and
//! writes human output to stdout (or one JSON object with `--json`), progress to stderr.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

use super::args::*;
use super::{check_outputs, emit, resolve};
use crate::calib;
use crate::engine::{BackendChoice, Forward};
use crate::error::Error;
use crate::eval::{self, EvalOptions};
use crate::io::dataset::Dataset;
use crate::io::{fetch, model as mfile};
use crate::model::{Fp32Model, LoadedModel};
use crate::pipeline::{self, StatsSource};
use crate::quant::config::{Protocol, QuantConfig};
use crate::report;

pub(super) fn cmd_fetch(a: FetchArgs) -> anyhow::Result<()> {
    for n in &a.names {
        if fetch::bundled(n).is_none() {
            fetch::lookup(n).map_err(|e| Error::Usage(e.to_string()))?;
        }
    }
    let got = fetch::fetch(
        &a.names,
        &fetch::home(),
        &crate::io::import::convert_pth,
        !a.json && std::io::IsTerminal::is_terminal(&std::io::stderr()),
    )?;
    if a.json {
        let obj: serde_json::Map<String, serde_json::Value> = got
            .iter()
            .map(|(k, v)| (k.clone(), v.display().to_string().into()))
            .collect();
        emit(&format!("{}\n", serde_json::Value::Object(obj)))?;
    } else {
        let mut out = String::new();
        for (k, v) in &got {
            writeln!(out, "{k}\t{}", v.display())?;
        }
        emit(&out)?;
    }
    Ok(())
}

pub(super) fn cmd_import(a: ImportArgs) -> anyhow::Result<()> {
    check_outputs(&[("FILE", &a.file)], &[("-o", &a.output)], &fetch::home())?;
    let g = crate::io::onnx::import_file(&a.file, a.arch.as_deref(), &a.pre.args())
        .with_context(|| format!("importing {}", a.file.display()))?;
    mfile::save_graph(&g, &a.output)?;
    emit(&format!(
        "{}: {} nodes, {} parameters -> {}\n",
        g.name,
        g.nodes.len(),
        g.param_count(),
        a.output.display()
    ))?;
    Ok(())
}

pub(super) fn cmd_inspect(a: InspectArgs) -> anyhow::Result<()> {
    let path = resolve(&a.model)?;
    let m = LoadedModel::load(&path).with_context(|| format!("loading {}", path.display()))?;
    // An FP32 model as stored; a quantized one as its prepared graph, with its plan.
    let (g, quant) = match &m {
        LoadedModel::Fp32(f) => (&f.stored, None),
        LoadedModel::Quant(q) => (
            q.graph(),
            Some(report::inspect::Quantized {
                plan: &q.plan,
                weight_bytes: q.weight_bytes()?,
            }),
        ),
    };
    if a.json {
        let v = report::inspect::json(g, quant.as_ref())?;
        emit(&format!("{}\n", serde_json::to_string(&v)?))?;
    } else {
        emit(&report::inspect::text(g, quant.as_ref())?)?;
    }
    Ok(())
}

pub(super) fn cmd_eval(a: EvalArgs) -> anyhow::Result<()> {
    let load = |name: &str| -> anyhow::Result<LoadedModel> {
        let path = resolve(name)?;
        LoadedModel::load(&path).with_context(|| format!("loading {}", path.display()))
    };
    let model = load(&a.model)?;
    let reference = match &a.reference {
        Some(r) => Some(load(r)?),
        None => None,
    };
    let data = Dataset::open(&resolve(&a.data)?)?;
    let opts = a.run.options(!a.json);
    let backend = a.run.backend.resolve()?;
    let bound = backend.bind(model.executable()?, a.exec)?;
    let ref_bound = match &reference {
        Some(r) => Some(backend.bind(r.executable()?, None)?),
        None => None,
    };
    let measured = eval::evaluate(
        &bound,
        ref_bound.as_ref().map(|r| r as &dyn Forward),
        &data,
        &opts,
    )?;
    let diffs = if a.compare {
        Some(compare_backends(&model, &data, &opts)?)
    } else {
        None
    };
    if a.json {
        let v = report::eval::json(&measured, diffs.as_deref())?;
        emit(&format!("{v}\n"))?;
    } else {
        emit(&report::eval::text(
            &a.model,
            &a.data,
            &measured,
            diffs.as_deref(),
        ))?;
    }
    Ok(())
}

/// The largest GPU-vs-CPU difference per layer on the first batch (FP32 graphs; for a
/// quantized model, its dequantized graph without fake quantization).
fn compare_backends(
    model: &LoadedModel,
    data: &Dataset,
    opts: &EvalOptions,
) -> anyhow::Result<Vec<crate::engine::LayerDiff>> {
    let gpu = BackendChoice::Gpu.resolve()?;
    let n = opts.batch.min(data.len_views(opts.views));
    let (x, _) = data.load_batch(0..n, &model.graph().preprocess, opts.views)?;
    Ok(gpu.compare_layers(model.graph(), &x)?)
}

fn load_fp32(name: &str) -> anyhow::Result<Fp32Model> {
    let path = resolve(name)?;
    match LoadedModel::load(&path).with_context(|| format!("loading {}", path.display()))? {
        LoadedModel::Fp32(m) => Ok(m),
        LoadedModel::Quant(_) => {
            Err(Error::Usage(format!("{name} is already quantized: give an FP32 model")).into())
        }
    }
}

pub(super) fn cmd_quantize(a: QuantizeArgs) -> anyhow::Result<()> {
    if a.calib.is_none() && !a.data_free {
        return Err(
            Error::Usage("give --calib DIR (calibration images) or --data-free".into()).into(),
        );
    }
    if a.method.protocol == ProtocolArg::Deploy && a.method.bit_alloc == BitAllocArg::A {
        return Err(Error::Usage(
            "--bit-alloc a needs --protocol paper: deployed activations have one bit-width \
             per tensor (use --bit-alloc none or w with --protocol deploy)"
                .into(),
        )
        .into());
    }
    let mut outputs = vec![("-o", a.output.as_path())];
    if let Some(r) = &a.report {
        outputs.push(("--report", r.as_path()));
    }
    if let Some(r) = &a.report_html {
        outputs.push(("--report-html", r.as_path()));
    }
    let mut inputs = vec![("--model", Path::new(&a.model))];
    if let Some(c) = &a.calib {
        inputs.push(("--calib", Path::new(c)));
    }
    check_outputs(&inputs, &outputs, &fetch::home())?;
    let m = load_fp32(&a.model)?;
    let cfg = a.method.config(a.data_free);
    check_dual(&m, &cfg)?;
    let data = match &a.calib {
        Some(c) => Some(Dataset::open(&resolve(c)?)?),
        None => None,
    };
    let src = match &data {
        Some(d) => StatsSource::Images {
            data: d,
            n: a.calib_n,
            views: a.views,
            batch: a.batch,
        },
        None => StatsSource::DataFree,
    };
    let backend = a.backend.resolve()?;
    let t = std::time::Instant::now();
    let cal = pipeline::statistics(&m, &cfg, src, &backend, !a.json)?;
    let q = pipeline::quantize_with(&m, &cfg, &cal, &backend)?;
    let secs = t.elapsed().as_secs_f64();
    // The report first: a report path that cannot be written leaves no model behind, and a
    // model that cannot be saved takes a report it created with it.
    if let Some(r) = &a.report {
        let existed = r.exists();
        let plan = report::plan::json(&q.plan);
        mfile::write_atomic(r, serde_json::to_string_pretty(&plan)?.as_bytes())?;
        if let Err(e) = q.save(&a.output) {
            if !existed {
                let _ = std::fs::remove_file(r);
            }
            return Err(e.into());
        }
    } else {
        q.save(&a.output)?;
    }
    if let Some(path) = &a.report_html {
        let input = report::ReportInput {
            model: a.model.clone(),
            q: &q,
            stats: Some(&cal.stats),
            stats_note: format!("{}, through the FP32 weights", cal.source),
            ablation: None,
            backend: backend.describe(),
        };
        report::write(&input, path)?;
    }
    let summary = report::quantize::Summary {
        output: &a.output,
        seconds: secs,
        weight_bytes: q.weight_bytes()?,
        fp32_weight_bytes: m.prepared.params.values().map(|t| t.numel() * 4).sum(),
    };
    if a.json {
        emit(&format!("{}\n", report::quantize::json(&q.plan, &summary)))?;
    } else {
        emit(&report::quantize::text(&q.plan, &summary))?;
    }
    Ok(())
}

/// `--dual K` must not exceed the layers that are quantized below 8 bits.
fn check_dual(m: &Fp32Model, cfg: &QuantConfig) -> anyhow::Result<()> {
    use crate::graph::Op;
    let kept = cfg.kept_layers(&m.prepared);
    let n = m
        .prepared
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Conv2d(_) | Op::Linear(_)) && !kept.contains(&n.name))
        .count();
    if cfg.dual > n {
        return Err(Error::Usage(format!(
            "--dual {}: the model has only {n} conv/linear layers below 8 bits (--keep-8bit \
             layers excluded); give --dual 0..={n}",
            cfg.dual
        ))
        .into());
    }
    Ok(())
}

/// `ablate`'s default calibration and evaluation sets for `m`: the bundled Fashion-MNIST
/// sets for a 1×28×28 model, else the fetched photos and ImageNet samples.
fn ablate_sets(m: &Fp32Model) -> (&'static str, &'static str) {
    if m.prepared.input_shape == [1, 28, 28] {
        ("fashion-mnist-calib", "fashion-mnist-test")
    } else {
        ("photos", "imagenet-samples")
    }
}

pub(super) fn cmd_ablate(a: AblateArgs) -> anyhow::Result<()> {
    if let Some(html) = &a.html {
        let mut inputs = vec![("--model", Path::new(&a.model))];
        inputs.extend(a.calib.as_deref().map(|c| ("--calib", Path::new(c))));
        inputs.extend(a.eval.as_deref().map(|e| ("--eval", Path::new(e))));
        check_outputs(&inputs, &[("--html", html.as_path())], &fetch::home())?;
    }
    let m = load_fp32(&a.model)?;
    let (calib_default, eval_default) = ablate_sets(&m);
    let calib_path = resolve(a.calib.as_deref().unwrap_or(calib_default))?;
    let eval_path = resolve(a.eval.as_deref().unwrap_or(eval_default))?;
    if calib_path.canonicalize().ok() == eval_path.canonicalize().ok() {
        return Err(Error::Usage("--calib and --eval must be different image sets".into()).into());
    }
    let calib = Dataset::open(&calib_path)?;
    let eval_set = Dataset::open(&eval_path)?;
    let opts = eval::ablate::AblateOptions {
        wbits: a.bits.wbits,
        abits: a.bits.abits,
        calib_n: a.calib_n.unwrap_or(usize::MAX),
        eval: a.run.options(!a.json),
        protocols: a
            .protocol
            .map_or(vec![Protocol::Paper, Protocol::Deploy], |p| vec![p.into()]),
        backend: a.run.backend.resolve()?,
    };
    if !a.json {
        emit(report::ablation::TABLE_HEAD)?;
    }
    // A stdout error here shows again, and is returned, at the summary below.
    let mut on_row = |r: &eval::ablate::Row| {
        if !a.json {
            let _ = emit(&report::ablation::row(r));
        }
    };
    let (r, cal) = eval::ablate::ablate_with(&m, &a.model, &calib, &eval_set, &opts, &mut on_row)?;
    if a.json {
        emit(&format!("{}\n", report::ablation::json(&r)?))?;
    } else {
        emit(&report::ablation::summary(&r))?;
    }
    if let Some(path) = &a.html {
        let p = opts.protocols[0];
        let (method, cfg, _) = eval::ablate::methods(a.bits.wbits, a.bits.abits, p)
            .into_iter()
            .find(|(name, _, free)| name.starts_with("aciq + alloc") && !free)
            .ok_or_else(|| Error::Report("the ablation has no combined method".into()))?;
        let q = pipeline::quantize_with(&m, &cfg, &cal, &opts.backend)?;
        let input = report::ReportInput {
            model: format!("{} ({method}, {p:?})", a.model),
            q: &q,
            stats: Some(&cal.stats),
            stats_note: format!("{}, through the FP32 weights", cal.source),
            ablation: Some(&r),
            backend: opts.backend.describe(),
        };
        report::write(&input, path)?;
    }
    Ok(())
}

pub(super) fn cmd_report(a: ReportArgs) -> anyhow::Result<()> {
    let mut inputs = vec![("--model", Path::new(&a.model))];
    if let Some(p) = &a.ablation {
        inputs.push(("--ablation", p.as_path()));
    }
    check_outputs(&inputs, &[("-o", a.output.as_path())], &fetch::home())?;
    let path = resolve(&a.model)?;
    let LoadedModel::Quant(q) = LoadedModel::load(&path)? else {
        return Err(Error::Usage(format!(
            "{}: an FP32 model; give a quantized one (ptq4 quantize -o FILE)",
            a.model
        ))
        .into());
    };
    let ablation: Option<eval::ablate::Ablation> = match &a.ablation {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
            Some(serde_json::from_str(&text).map_err(|e| {
                Error::Usage(format!(
                    "{}: not an ablation table (ptq4 ablate --json): {e}",
                    p.display()
                ))
            })?)
        }
        None => None,
    };
    let (cal, backend) = match &a.calib {
        Some(c) => {
            let data = Dataset::open(&resolve(c)?)?;
            let backend = a.backend.resolve()?;
            let cal = calib::recalibrate(
                &q.dequantized,
                &q.plan.acts,
                &data,
                a.calib_n,
                16,
                &backend,
                !a.json,
            )?;
            (Some(cal), backend.describe())
        }
        None => (None, "-".to_string()),
    };
    let input = report::ReportInput {
        model: a.model.clone(),
        q: &q,
        stats: cal.as_ref().map(|c| &c.stats),
        stats_note: cal.as_ref().map_or(String::new(), |c| {
            format!(
                "recomputed on {} through the quantized weights (the file keeps no FP32 weights)",
                c.source
            )
        }),
        ablation: ablation.as_ref(),
        backend,
    };
    report::write(&input, &a.output)?;
    if a.json {
        emit(&format!(
            "{}\n",
            serde_json::json!({"output": a.output.display().to_string()})
        ))?;
    } else {
        emit(&format!("report -> {}\n", a.output.display()))?;
    }
    Ok(())
}

pub(super) fn cmd_export(a: ExportArgs) -> anyhow::Result<()> {
    let path = resolve(&a.model)?;
    check_outputs(&[("MODEL", &path)], &[("-o", &a.output)], &fetch::home())?;
    let m = LoadedModel::load(&path).with_context(|| format!("loading {}", path.display()))?;
    let (e, kind) = match &m {
        LoadedModel::Fp32(f) => (crate::io::onnx::export::export(&f.prepared, None)?, "FP32"),
        LoadedModel::Quant(q) => (
            crate::io::onnx::export::export(q.graph(), Some(&q.plan))?,
            "QDQ",
        ),
    };
    e.save(&a.output)?;
    let mut out = format!(
        "{}: {kind} ONNX, opset {}, {} nodes -> {}\n",
        m.graph().name,
        e.model.opset_import[0].version(),
        e.node_count(),
        a.output.display()
    );
    if !e.int8_layers.is_empty() {
        writeln!(
            out,
            "weights as INT8 (a channel has more than 4 bits): {}",
            e.int8_layers.join(", ")
        )?;
    }
    emit(&out)?;
    Ok(())
}
