//! ONNX import (and [`export`]): a `.onnx` file (opsets 7–21, initializers inline or in external-data files
//! beside it) becomes a validated FP32 [`Graph`] with the preprocessing the caller names.
//!
//! - [`onnx`](self::onnx): prost code generated from the official `onnx.proto` by
//!   `tools/onnx-proto` (committed, so no build needs `protoc`).
//! - [`tensor`]: `TensorProto` → constants (f32/f16/bf16/f64 → f32, integers → i64),
//!   external data confined to the model's folder.
//! - [`fold`]: constant folding of the shape/weight subgraphs exporters write.
//! - [`translate`]: the remaining nodes → IR ops; every node that cannot be imported is
//!   listed in one error.
//! - [`export`]: the other way, a prepared graph (FP32, opset 13) or a quantized model's
//!   plan (QDQ, opset 21) → ONNX.
//!
//! An ONNX file does not say how its input was normalised, so [`PreprocessArgs`] (presets
//! and explicit values) supplies it. BGR-trained models (`--bgr`, the `caffe` preset) are
//! made to take RGB by reversing the input channels of the convolutions that read the
//! image, since the IR's preprocessing is RGB only.

pub mod attr;
pub mod export;
pub mod fold;
#[allow(clippy::all, missing_docs)]
#[rustfmt::skip] // Kept byte for byte as tools/onnx-proto writes it.
pub mod onnx;
pub mod tensor;
pub mod translate;

use std::path::Path;
use std::str::FromStr;

use prost::Message as _;

use crate::error::{Error, Result};
use crate::graph::{Graph, Op, Preprocess};

/// Default-domain opsets read.
pub const OPSETS: std::ops::RangeInclusive<i64> = 7..=21;

/// Named input normalisations (pixels on the 0..255 scale).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// torchvision: mean (123.675, 116.28, 103.53), std (58.395, 57.12, 57.375); resize 256
    /// for a 224 crop.
    Imagenet,
    /// (x − 127) / 128; resize 256 for a 224 crop.
    Tf,
    /// Caffe: BGR, mean (103.939, 116.779, 123.68) in BGR order, std 1; resize 256 for 224.
    Caffe,
    /// Raw pixels: mean 0, std 1, no resize beyond the crop.
    None,
}

impl FromStr for Preset {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "imagenet" => Ok(Preset::Imagenet),
            "tf" => Ok(Preset::Tf),
            "caffe" => Ok(Preset::Caffe),
            "none" => Ok(Preset::None),
            _ => Err(Error::Usage(format!(
                "preprocess preset {s:?}: one of imagenet, tf, caffe, none"
            ))),
        }
    }
}

/// How the imported model's inputs are prepared: a preset and/or explicit values (which
/// override the preset's). `mean`/`std` are in the model's channel order (BGR with `bgr`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PreprocessArgs {
    pub preset: Option<Preset>,
    pub mean: Option<[f32; 3]>,
    pub std: Option<[f32; 3]>,
    /// Crop side; default: the model's input height (width must match).
    pub size: Option<usize>,
    /// Shorter side before the crop; default from the preset (256/224 of the crop).
    pub resize: Option<usize>,
    pub bgr: bool,
}

impl PreprocessArgs {
    /// Whether anything says how inputs are normalised.
    pub fn is_given(&self) -> bool {
        self.preset.is_some() || (self.mean.is_some() && self.std.is_some())
    }

    /// The preprocessing for a `[c, h, w]` input and whether channels are BGR.
    pub fn resolve(&self, input: &[usize]) -> Result<(Preprocess, bool)> {
        let (c, h, w) = (input[0], input[1], input[2]);
        let preset = self.preset.unwrap_or(Preset::None);
        let (mean, std) = match preset {
            Preset::Imagenet => ([123.675, 116.28, 103.53], [58.395, 57.12, 57.375]),
            Preset::Tf => ([127.0; 3], [128.0; 3]),
            Preset::Caffe => ([103.939, 116.779, 123.68], [1.0; 3]),
            Preset::None => ([0.0; 3], [1.0; 3]),
        };
        let bgr = self.bgr || preset == Preset::Caffe;
        let mut mean = self.mean.unwrap_or(mean);
        let mut std = self.std.unwrap_or(std);
        if bgr {
            if c != 3 {
                return Err(Error::Usage(format!(
                    "BGR input needs 3 channels, the model has {c}"
                )));
            }
            mean.reverse();
            std.reverse();
        }
        let size = match self.size {
            Some(s) => s,
            None if h == w => h,
            None => {
                return Err(Error::Usage(format!(
                    "the model's input is {h}×{w}: give --size (images are center-cropped square)"
                )))
            }
        };
        let resize = self.resize.unwrap_or(match preset {
            Preset::None => size,
            _ => (256 * size).div_ceil(224),
        });
        let p = Preprocess {
            size,
            resize,
            mean,
            std,
            channels: c,
        };
        Ok((p, bgr))
    }
}

/// Reads and decodes an ONNX model file.
pub fn read_model(path: &Path) -> Result<onnx::ModelProto> {
    let bytes = crate::io::model::read_capped(path)?;
    onnx::ModelProto::decode(bytes.as_slice()).map_err(|e| Error::ModelFile {
        path: path.to_path_buf(),
        msg: format!("not an ONNX model: {e}"),
    })
}

/// Imports `path` as an FP32 graph (unfolded: BatchNorm nodes kept, as the pickle importer
/// returns them), validated through the IR's shape inference.
pub fn import(path: &Path, pre: &PreprocessArgs) -> Result<Graph> {
    let m = read_model(path)?;
    let opset = m
        .opset_import
        .iter()
        .find(|o| o.domain().is_empty() || o.domain() == "ai.onnx")
        .map(|o| o.version())
        .ok_or_else(|| Error::Import("no default-domain opset".into()))?;
    if !OPSETS.contains(&opset) {
        return Err(Error::Import(format!(
            "opset {opset}; opsets {}..={} are supported",
            OPSETS.start(),
            OPSETS.end()
        )));
    }
    let g = m
        .graph
        .as_ref()
        .ok_or_else(|| Error::Import("no graph".into()))?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = match g.name() {
        "" => path
            .file_stem()
            .map_or("onnx".into(), |s| s.to_string_lossy().into_owned()),
        n => n.to_string(),
    };
    let t = translate::translate(g, opset, dir, &name, pre.size)?;
    let mut graph = t.graph;
    let (p, bgr) = pre.resolve(&graph.input_shape)?;
    graph.preprocess = p;
    if bgr {
        rgb_input(&mut graph)?;
    }
    graph.prune();
    graph.preprocess.validate(&graph.name)?;
    let shapes = graph.validate()?;
    let got: usize = shapes[&graph.output].iter().product();
    let want: usize = t.output_shape.iter().product();
    if got != want {
        return Err(Error::Import(format!(
            "the IR output has {got} values per sample, the ONNX output {:?}",
            t.output_shape
        )));
    }
    graph.check_values()?;
    Ok(graph)
}

/// Makes a BGR model take RGB: reverses the input-channel axis of every convolution that
/// reads the image (exact: a permutation of weights).
fn rgb_input(g: &mut Graph) -> Result<()> {
    for n in &g.nodes {
        if !n.inputs.iter().any(|i| i == Graph::INPUT) {
            continue;
        }
        let Op::Conv2d(c) = &n.op else {
            return Err(Error::Import(format!(
                "BGR input: node {} ({}) reads the image; only convolutions (groups 1) can take the channel reversal",
                n.name,
                n.op.kind()
            )));
        };
        if c.groups != 1 {
            return Err(Error::Import(format!(
                "BGR input: node {} is a grouped convolution",
                n.name
            )));
        }
        let w = g
            .params
            .get_mut(&format!("{}.weight", n.name))
            .ok_or_else(|| Error::MissingParam(format!("{}.weight", n.name)))?;
        let [o, i, kh, kw] = w.shape[..] else {
            unreachable!("conv weight is 4-D")
        };
        let k = kh * kw;
        let old = w.data.clone();
        for oc in 0..o {
            for ic in 0..i {
                let src = (oc * i + (i - 1 - ic)) * k;
                let dst = (oc * i + ic) * k;
                w.data[dst..dst + k].copy_from_slice(&old[src..src + k]);
            }
        }
    }
    Ok(())
}

/// Whether `path` names an ONNX file (by its extension).
pub fn is_onnx(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
}

/// `ptq4 import FILE`: an ONNX model with its preprocessing flags (required: a preset, or
/// both `--mean` and `--std`), or a legacy `.pth` with `--arch`.
pub fn import_file(file: &Path, arch: Option<&str>, args: &PreprocessArgs) -> Result<Graph> {
    if is_onnx(file) {
        if arch.is_some() {
            return Err(Error::Usage(
                "--arch is for .pth state dicts, not ONNX models".into(),
            ));
        }
        if !args.is_given() {
            return Err(Error::Usage(
                "an ONNX model does not say how its inputs are normalised: give --preprocess imagenet|tf|caffe|none, or --mean and --std".into(),
            ));
        }
        return import(file, args);
    }
    if *args != PreprocessArgs::default() {
        return Err(Error::Usage(
            "--preprocess, --mean, --std, --size, --resize and --bgr are for ONNX models".into(),
        ));
    }
    let arch = arch.ok_or_else(|| Error::Usage("--arch is needed for a .pth state dict".into()))?;
    crate::io::import::import_pth(file, arch)
}

/// An ONNX model given directly as `--model`: imported in memory with the `imagenet`
/// preset (said on stderr; `ptq4 import` chooses another and stores it).
pub fn import_default(path: &Path) -> Result<Graph> {
    crate::error::note(format_args!(
        "{}: importing ONNX in memory with the imagenet preprocessing; use `ptq4 import --preprocess ...` to choose another",
        path.display()
    ));
    import(
        path,
        &PreprocessArgs {
            preset: Some(Preset::Imagenet),
            ..Default::default()
        },
    )
}
