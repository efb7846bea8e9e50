//! The model file: safetensors, with the graph, the preprocessing and (for quantized models)
//! the plan stored as JSON strings in the header's `__metadata__`. Tensors are named
//! `<node>.<param>`. Writing is atomic: a temporary file beside the target, then rename.
//!
//! Metadata keys: `ptq4.format` (= [`FORMAT_VERSION`]), `ptq4.kind` (`fp32` | `quant`),
//! `ptq4.graph` (the graph without parameters), `ptq4.preprocess`, and for quantized models
//! `ptq4.plan`.
//!
//! Writing is deterministic: the header is laid out here (not through the safetensors
//! crate, which takes metadata as a `HashMap` and so orders keys at random) following the
//! safetensors format exactly: a u64 little-endian header length, then the JSON header
//! (`__metadata__` with its keys sorted, then each tensor's `dtype`, `shape` and
//! `data_offsets`, tensors ordered by descending dtype alignment then name, as the crate
//! orders them) padded with spaces to a multiple of 8 bytes, then the data. Reading goes
//! through the safetensors crate. Files above [`MAX_MODEL_FILE_BYTES`] and anything that
//! is not a regular file are refused before reading.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, View};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::graph::{Graph, Node, Preprocess};
use crate::limits::MAX_MODEL_FILE_BYTES;
use crate::tensor::Tensor;

pub const FORMAT_VERSION: &str = "1";
pub const KEY_FORMAT: &str = "ptq4.format";
pub const KEY_KIND: &str = "ptq4.kind";
pub const KEY_GRAPH: &str = "ptq4.graph";
pub const KEY_PREPROCESS: &str = "ptq4.preprocess";

/// Tensor payload of a model file.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    U8(Vec<u8>),
    I32(Vec<i32>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct RawTensor {
    pub shape: Vec<usize>,
    pub data: Data,
}

impl RawTensor {
    pub fn f32(shape: Vec<usize>, data: Vec<f32>) -> Self {
        RawTensor {
            shape,
            data: Data::F32(data),
        }
    }
    /// Number of values held.
    pub fn element_count(&self) -> usize {
        match &self.data {
            Data::F32(v) => v.len(),
            Data::U8(v) => v.len(),
            Data::I32(v) => v.len(),
        }
    }
    pub fn byte_len(&self) -> usize {
        match &self.data {
            Data::F32(v) => v.len() * 4,
            Data::U8(v) => v.len(),
            Data::I32(v) => v.len() * 4,
        }
    }
}

impl View for &RawTensor {
    fn dtype(&self) -> Dtype {
        match self.data {
            Data::F32(_) => Dtype::F32,
            Data::U8(_) => Dtype::U8,
            Data::I32(_) => Dtype::I32,
        }
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        match &self.data {
            Data::F32(v) => Cow::Owned(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            Data::U8(v) => Cow::Borrowed(v),
            Data::I32(v) => Cow::Owned(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        }
    }
    fn data_len(&self) -> usize {
        self.byte_len()
    }
}

/// A safetensors file held in memory: string metadata and named tensors.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelFile {
    pub metadata: BTreeMap<String, String>,
    pub tensors: BTreeMap<String, RawTensor>,
}

impl ModelFile {
    /// Reads a model file: a regular file of at most [`MAX_MODEL_FILE_BYTES`]; an `.onnx`
    /// file is imported in memory ([`crate::io::onnx::import_default`]).
    pub fn read(path: &Path) -> Result<Self> {
        if crate::io::onnx::is_onnx(path) {
            return graph_to_file(&crate::io::onnx::import_default(path)?);
        }
        let bytes = read_capped(path)?;
        Self::from_bytes(&bytes).map_err(|msg| Error::ModelFile {
            path: path.to_path_buf(),
            msg,
        })
    }

    pub fn from_bytes(bytes: &[u8]) -> std::result::Result<Self, String> {
        let st =
            SafeTensors::deserialize(bytes).map_err(|e| format!("not a safetensors file: {e}"))?;
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| e.to_string())?;
        let metadata = meta
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let mut tensors = BTreeMap::new();
        for (name, view) in st.iter() {
            let raw = view.data();
            let data = match view.dtype() {
                Dtype::F32 => Data::F32(
                    raw.chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect(),
                ),
                Dtype::I32 => Data::I32(
                    raw.chunks_exact(4)
                        .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect(),
                ),
                Dtype::U8 => Data::U8(raw.to_vec()),
                d => return Err(format!("tensor {name}: unsupported dtype {d:?}")),
            };
            tensors.insert(
                name.to_string(),
                RawTensor {
                    shape: view.shape().to_vec(),
                    data,
                },
            );
        }
        Ok(ModelFile { metadata, tensors })
    }

    /// The file's bytes: the same model always gives the same bytes (module docs).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut order: Vec<(&String, &RawTensor)> = self.tensors.iter().collect();
        order.sort_by(|(ln, l), (rn, r)| r.dtype().cmp(&l.dtype()).then(ln.cmp(rn)));
        let mut header = String::from("{\"__metadata__\":");
        header.push_str(&serde_json::to_string(&self.metadata)?);
        let mut offset = 0usize;
        for (name, t) in &order {
            let expected = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            if expected != Some(t.element_count()) {
                return Err(Error::ModelFile {
                    path: "<memory>".into(),
                    msg: format!(
                        "tensor {name}: shape {:?} does not match its {} values",
                        t.shape,
                        t.element_count()
                    ),
                });
            }
            let end = offset + t.byte_len();
            header.push(',');
            header.push_str(&serde_json::to_string(name.as_str())?);
            header.push_str(&format!(
                ":{{\"dtype\":{},\"shape\":{},\"data_offsets\":[{offset},{end}]}}",
                serde_json::to_string(&t.dtype())?,
                serde_json::to_string(&t.shape)?
            ));
            offset = end;
        }
        header.push('}');
        let mut header = header.into_bytes();
        header.resize(header.len().next_multiple_of(8), b' ');
        let mut out = Vec::with_capacity(8 + header.len() + offset);
        out.extend_from_slice(&(header.len() as u64).to_le_bytes());
        out.extend_from_slice(&header);
        for (_, t) in order {
            match &t.data {
                Data::F32(v) => v
                    .iter()
                    .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
                Data::U8(v) => out.extend_from_slice(v),
                Data::I32(v) => v
                    .iter()
                    .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            }
        }
        Ok(out)
    }

    /// Writes atomically: a temporary file in the same directory, then rename.
    pub fn write(&self, path: &Path) -> Result<()> {
        let bytes = self.to_bytes()?;
        write_atomic(path, &bytes)
    }

    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(String::as_str)
    }

    /// Removes and returns an f32 tensor.
    pub fn take_f32(&mut self, name: &str) -> std::result::Result<Tensor, String> {
        match self.tensors.remove(name) {
            Some(RawTensor {
                shape,
                data: Data::F32(v),
            }) => Ok(Tensor { shape, data: v }),
            Some(_) => Err(format!("tensor {name} is not f32")),
            None => Err(format!("tensor {name} is missing")),
        }
    }
}

/// Reads a model or weight file whole: refuses anything that is not a regular file (a
/// directory, `/dev/zero`, a pipe) and files above [`MAX_MODEL_FILE_BYTES`], before reading.
pub fn read_capped(path: &Path) -> Result<Vec<u8>> {
    let err = |msg: String| Error::ModelFile {
        path: path.to_path_buf(),
        msg,
    };
    // Checked before opening too: opening a FIFO blocks until a writer comes.
    let not_regular =
        || err("not a regular file (a directory, device or pipe cannot be a model)".into());
    if !std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .is_file()
    {
        return Err(not_regular());
    }
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(not_regular());
    }
    if meta.len() > MAX_MODEL_FILE_BYTES {
        return Err(err(format!(
            "{} bytes; model files of at most {MAX_MODEL_FILE_BYTES} bytes are read",
            meta.len()
        )));
    }
    // The cap holds even if the file grows while it is read.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_MODEL_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > MAX_MODEL_FILE_BYTES {
        return Err(err(format!(
            "grew past {MAX_MODEL_FILE_BYTES} bytes while being read"
        )));
    }
    Ok(bytes)
}

/// Writes `bytes` to `path` through a temporary file (`.NAME.tmpPID`, synced) and a rename,
/// so readers never see a half-written file. A read-only or non-file target is refused and
/// left as it is; the temporary file is removed on any error (errors name `path`); stale
/// temporary files of `path` left by dead processes are removed first.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Error::Usage(format!("{}: not a file name", path.display())))?;
    if let Ok(meta) = std::fs::metadata(path) {
        let why = if !meta.is_file() {
            Some("exists and is not a regular file")
        } else if meta.permissions().readonly() {
            Some("is read-only")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(Error::io(
                path,
                std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!("{why}; not replaced (choose another output path)"),
                ),
            ));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| {
        let why = format!("creating its folder {}: {e}", dir.display());
        Error::io(path, std::io::Error::new(e.kind(), why))
    })?;
    remove_stale_temps(dir, &name);
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    written
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io(path, e)
        })
}

/// Removes `.NAME.tmpPID` files in `dir` whose process is gone (Linux `/proc`; elsewhere
/// nothing is removed). Best effort: a file that cannot be removed stays.
fn remove_stale_temps(dir: &Path, name: &str) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let prefix = format!(".{name}.tmp");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let file = e.file_name();
        let Some(pid) = file.to_str().and_then(|f| f.strip_prefix(&prefix)) else {
            continue;
        };
        let alive = Path::new("/proc").join(pid).exists();
        if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) && !alive {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// The graph as stored in metadata (parameters live in the tensors).
#[derive(Serialize, Deserialize)]
struct GraphMeta {
    name: String,
    input_shape: Vec<usize>,
    output: String,
    nodes: Vec<Node>,
}

/// Stores an f32 graph: metadata (graph, preprocessing) plus its parameters.
pub fn graph_to_file(g: &Graph) -> Result<ModelFile> {
    let mut f = ModelFile::default();
    f.metadata.insert(KEY_FORMAT.into(), FORMAT_VERSION.into());
    f.metadata.insert(KEY_KIND.into(), "fp32".into());
    let gm = GraphMeta {
        name: g.name.clone(),
        input_shape: g.input_shape.clone(),
        output: g.output.clone(),
        nodes: g.nodes.clone(),
    };
    f.metadata
        .insert(KEY_GRAPH.into(), serde_json::to_string(&gm)?);
    f.metadata
        .insert(KEY_PREPROCESS.into(), serde_json::to_string(&g.preprocess)?);
    for (k, t) in &g.params {
        f.tensors
            .insert(k.clone(), RawTensor::f32(t.shape.clone(), t.data.clone()));
    }
    Ok(f)
}

/// Rebuilds a graph from a model file, taking its f32 parameters (other tensors stay in
/// `f`), and validates it.
pub fn graph_from_file(f: &mut ModelFile, path: &Path) -> Result<Graph> {
    let mut g = structure_from_file(f, path)?;
    for n in &g.nodes {
        for p in n.op.param_names() {
            let key = format!("{}.{p}", n.name);
            let t = f.take_f32(&key).map_err(|msg| file_err(path, msg))?;
            g.params.insert(key, t);
        }
    }
    check_read(&g, path, true)?;
    g.check_values()?;
    Ok(g)
}

fn file_err(path: &Path, msg: String) -> Error {
    Error::ModelFile {
        path: path.to_path_buf(),
        msg,
    }
}

/// The graph a model file describes, without parameters and not yet validated: format
/// version, graph and preprocessing metadata. [`check_read`] validates it.
pub fn structure_from_file(f: &ModelFile, path: &Path) -> Result<Graph> {
    let err = |msg: String| file_err(path, msg);
    match f.meta(KEY_FORMAT) {
        Some(FORMAT_VERSION) => {}
        Some(v) => {
            return Err(err(format!(
                "format version {v}, this ptq4 reads {FORMAT_VERSION}"
            )))
        }
        None => {
            return Err(err(
                "no ptq4 metadata: not a ptq4 model file (use `ptq4 import`)".into(),
            ))
        }
    }
    let gm: GraphMeta =
        serde_json::from_str(f.meta(KEY_GRAPH).ok_or_else(|| err("no graph".into()))?)
            .map_err(|e| err(format!("graph metadata: {e}")))?;
    let preprocess: Preprocess = serde_json::from_str(
        f.meta(KEY_PREPROCESS)
            .ok_or_else(|| err("no preprocessing".into()))?,
    )
    .map_err(|e| err(format!("preprocess metadata: {e}")))?;
    Ok(Graph {
        name: gm.name,
        input_shape: gm.input_shape,
        nodes: gm.nodes,
        output: gm.output,
        params: BTreeMap::new(),
        preprocess,
    })
}

/// Validates a graph read from a file: its preprocessing, its structure and (`params`) its
/// parameters' presence and shapes, and a crop that fits the input.
pub fn check_read(g: &Graph, path: &Path, params: bool) -> Result<()> {
    g.preprocess
        .validate(&g.name)
        .map_err(|e| file_err(path, e.to_string()))?;
    if params {
        g.validate()?;
    } else {
        g.validate_structure()?;
    }
    // Images are cropped to size × size before they meet the graph: a crop larger than the
    // graph's input is a forged file, and would allocate batches of images it cannot take.
    let size = g.preprocess.size;
    if g.input_shape[1..].iter().all(|&d| size > d) {
        return Err(file_err(
            path,
            format!(
                "preprocess crops {size}×{size} images, larger than the graph's input {:?}",
                g.input_shape
            ),
        ));
    }
    Ok(())
}

/// Saves an f32 model atomically.
pub fn save_graph(g: &Graph, path: &Path) -> Result<()> {
    graph_to_file(g)?.write(path)
}

/// Loads and validates an f32 model.
pub fn load_graph(path: &Path) -> Result<Graph> {
    let mut f = ModelFile::read(path)?;
    graph_from_file(&mut f, path)
}
