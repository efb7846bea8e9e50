//! What each fuzz target does with its bytes: the loader's whole parse-and-validate path, as
//! the CLI runs it, without inference. Each function returns `Ok` when the input was accepted
//! all the way and `Err` (the loader's message) when it was rejected; a panic, an abort or a
//! hang is the bug a fuzzer looks for. Shared by the libFuzzer targets in `fuzz_targets/` and
//! by `tests/fuzz_regress.rs` (included there with `#[path]`), so both run the same code.

use std::io::Cursor;
use std::path::Path;

use ptq4::graph::Preprocess;
use ptq4::io::model::ModelFile;
use ptq4::io::{pickle, preprocess};
use ptq4::model::LoadedModel;
use ptq4::qmodel::QuantModel;
use ptq4::report;
use ptq4::zoo::efficientnet::LiteVariant;

/// The path loaders put in their messages (nothing is read from it).
const PATH: &str = "fuzz-input";

/// The image target's decoder allocation limit.
pub const IMAGE_MAX_ALLOC: u64 = 64 << 10;

/// A model file as `LoadedModel::load` reads it (from bytes instead of a path): the
/// safetensors container, then `LoadedModel::from_file`: by its kind, the FP32 graph
/// (validated and prepared) or the quantized model; an accepted model is also inspected
/// (`ptq4 inspect`, JSON and text).
pub fn model(bytes: &[u8]) -> Result<(), String> {
    let path = Path::new(PATH);
    let mut f = ModelFile::from_bytes(bytes)?;
    let m = LoadedModel::from_file(&mut f, path).map_err(|e| e.to_string())?;
    inspect(&m)
}

/// A quantized model file, whatever its `ptq4.kind` says: the container, then
/// `QuantModel::from_file` (plan, codes, scales, the dequantized graph and, for `deploy`
/// plans, the integer model), then inspection.
pub fn qmodel(bytes: &[u8]) -> Result<(), String> {
    let mut f = ModelFile::from_bytes(bytes)?;
    let q = QuantModel::from_file(&mut f, Path::new(PATH)).map_err(|e| e.to_string())?;
    inspect(&LoadedModel::Quant(q))
}

/// What `ptq4 inspect` renders: an FP32 model as stored, a quantized one as its prepared
/// graph with its plan and weight bytes.
fn inspect(m: &LoadedModel) -> Result<(), String> {
    let (g, quant) = match m {
        LoadedModel::Fp32(f) => (&f.stored, None),
        LoadedModel::Quant(q) => (
            q.graph(),
            Some(report::inspect::Quantized {
                plan: &q.plan,
                weight_bytes: q.weight_bytes().map_err(|e| e.to_string())?,
            }),
        ),
    };
    report::inspect::json(g, quant.as_ref()).map_err(|e| e.to_string())?;
    report::inspect::text(g, quant.as_ref()).map_err(|e| e.to_string())?;
    Ok(())
}

/// A legacy `torch.save` file as `ptq4 import` reads it: the pickle reader, then (when it
/// parses) the EfficientNet-Lite0 import of the state dict.
pub fn pickle(bytes: &[u8]) -> Result<(), String> {
    let sd = pickle::read_state_dict(bytes).map_err(|e| e.to_string())?;
    ptq4::io::import::graph_from_state_dict(sd, LiteVariant::Lite0).map_err(|e| e.to_string())?;
    Ok(())
}

/// An image as the dataset reads it: format guessed from the content and decoded (as
/// `preprocess::decode` does with a file), then preprocessed to RGB with the 12 test-time
/// views and to grey with the standard view. To keep one execution cheap the output size is
/// small and the decoder may allocate at most [`IMAGE_MAX_ALLOC`] (`decode` keeps the image
/// crate's default of 512 MiB: a corrupt JPEG header claiming 8000 × 8000 pixels decodes,
/// slowly, to a mostly blank image); the code paths are those real models use.
pub fn image(bytes: &[u8]) -> Result<(), String> {
    let mut reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(IMAGE_MAX_ALLOC);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| e.to_string())?;
    let rgb = Preprocess {
        size: 3,
        resize: 4,
        mean: [127.0; 3],
        std: [128.0; 3],
        channels: 3,
    };
    let views = preprocess::views(12).map_err(|e| e.to_string())?;
    preprocess::preprocess_views(&img, &rgb, views).map_err(|e| e.to_string())?;
    let grey = Preprocess { channels: 1, ..rgb };
    preprocess::preprocess(&img, &grey).map_err(|e| e.to_string())?;
    Ok(())
}
